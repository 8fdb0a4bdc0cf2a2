//! `coroipc`: shared-memory IPC in the manner of corosync's coroipc, for Linux.
//!
//! A server registers services under `u16` ids; clients connect to one service, get
//! three rings in a sealed memfd (requests, responses, dispatch) plus eventfd doorbells,
//! and talk through them without a system call per message while both sides are busy.
//!
//! * Server: [`ServerBuilder`], [`Service`], [`Server::run`] or [`PollHooks`] +
//!   [`Server::handle_ready`] for any event loop; responses ([`Responder`],
//!   [`DeferredResponse`]) and dispatch ([`Connection`]) from any thread.
//! * Client: [`Client::connect`], [`Client::request`] (copy),
//!   [`Client::request_in_place`] (zero copy), [`Client::send_request`] /
//!   [`Client::wait_response`] (pipelined), [`Client::dispatch_recv`], `AsFd`,
//!   [`Client::flow_control`].
//!
//! `SPEC.md` in the repository gives the handshake, headers, error codes, state
//! machine and threat model.
#![deny(unsafe_op_in_unsafe_fn)]
#![deny(missing_docs)]
#![warn(clippy::missing_errors_doc)]

#[cfg(not(target_os = "linux"))]
compile_error!(
    "coroipc runs on Linux only: it is built on memfd_create with seals, eventfd, epoll, \
     SO_PEERCRED and abstract Unix sockets. The ring alone (crate coroipc-ring) is portable."
);

mod client;
mod connection;
mod deadline;
mod error;
pub mod os;
mod outbox;
pub mod protocol;
mod region;
mod respond;
mod server;
mod service;
mod stats;

pub use client::{Client, ConnectOptions, DispatchMsg, Response, ResponseRef, WaitMode};
pub use connection::{Connection, DisconnectReason, DispatchGrant, OverflowPolicy};
pub use error::{ClientError, ConnectError, ProtocolError, RingKind, SendError, Violation};
pub use os::{PeerCred, SocketName};
pub use respond::{DeferredResponse, Request, Responder, ResponseGrant};
pub use server::{Limits, PollHooks, Server, ServerBuilder, StopHandle, Token};
pub use service::{HandlerError, Service};
pub use stats::{ClientStats, ConnStats, Refusals, ServerStats, ServerStatsHandle};

/// The README's examples, compiled (and the in-process one run) as doctests so they
/// stay true.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct ReadmeDoctests;
