//! `coroipc`: shared-memory IPC in the manner of corosync's coroipc, for Linux.
//!
//! A server registers services under `u16` ids; clients connect to one service, get
//! three rings in a sealed memfd (requests, responses, dispatch) plus doorbells (a
//! socketpair),
//! and talk through them without a system call per message while both sides are busy.
//!
//! * Server: [`ServerBuilder`], [`Service`], [`Server::run`] or [`PollHooks`] +
//!   [`Server::handle_ready`] for any event loop; responses ([`Responder`],
//!   [`DeferredResponse`]) and dispatch ([`Connection`]) from any thread.
//! * Event loops: one notification fd per client and one poll fd per server, with
//!   non-blocking calls ([`Client::try_response`], [`Client::try_send_request`],
//!   [`Client::connect_start`], [`Server::run_once`]); features `tokio` (an async
//!   client, serving a server) and `mio` (`event::Source`).
//! * Client: [`Client::connect`], [`Client::request`] (copy),
//!   [`Client::request_in_place`] (zero copy), [`Client::send_request`] /
//!   [`Client::wait_response`] (pipelined), [`Client::dispatch_recv`], `AsFd`,
//!   [`Client::flow_control`].
//!
//! `SPEC.md` in the repository gives the handshake, headers, error codes, state
//! machine and threat model.
//!
//! # Example
//!
//! A service that echoes command 1 and counts requests per connection (its private
//! data), served by the built-in loop on a thread, and a client:
//!
//! ```
//! use coroipc::{
//!     Client, ConnectOptions, Connection, HandlerError, Request, Responder, ServerBuilder,
//!     Service, SocketName,
//! };
//!
//! struct Echo;
//!
//! impl Service for Echo {
//!     type Private = u64; // requests seen on this connection
//!
//!     fn on_connect(&mut self, _conn: &Connection) -> Result<u64, i32> {
//!         Ok(0)
//!     }
//!
//!     fn handle(
//!         &mut self,
//!         seen: &mut u64,
//!         req: Request<'_>,
//!         resp: &mut Responder<'_>,
//!     ) -> Result<(), HandlerError> {
//!         *seen += 1;
//!         match req.command {
//!             1 => {
//!                 let _ = resp.respond(0, req.payload);
//!                 Ok(())
//!             }
//!             _ => Err(HandlerError::UnknownCommand),
//!         }
//!     }
//! }
//!
//! let name = SocketName::abstract_name(format!("coroipc-doc-{}", std::process::id()));
//! let mut server = ServerBuilder::new(name.clone()).service(1, Echo).build()?;
//! let stop = server.stop_handle();
//! let thread = std::thread::spawn(move || server.run());
//!
//! let mut client = Client::connect(&name, 1, &ConnectOptions::default())?;
//! assert_eq!(client.request(1, b"ping")?.data, b"ping");
//! assert!(matches!(
//!     client.request(9, b""),
//!     Err(coroipc::ClientError::UnknownCommand { command: 9 })
//! ));
//!
//! stop.stop();
//! thread.join().expect("server thread")?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
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
mod flow;
#[cfg(feature = "mio")]
mod mio_source;
mod os;
mod outbox;
pub mod protocol;
mod region;
mod releasable;
mod respond;
mod server;
mod service;
mod spin;
mod stats;
#[cfg(feature = "tokio")]
pub mod tokio;

pub use client::{
    Client, Closer, ConnectOptions, Connecting, DispatchMsg, Finish, Reply, RequestGrant, Response,
    ResponseRef,
};
pub use connection::{Connection, DisconnectReason, DispatchGrant, OverflowPolicy};
/// The dispatch ring's flow word for any thread ([`Client::flow_watch`]).
pub use coroipc_ring::FlowWatch;
pub use error::{
    ClientError, ConnectError, ConnectStep, HandlerError, ProtocolError, RingKind, SendError,
    Violation,
};
pub use os::{PeerCred, SocketName};

/// The Linux plumbing under the crate, for a peer built by hand: the hostile-client
/// tests, the fuzz targets and the benchmarks speak the handshake and map the region
/// themselves with it. Not part of the supported API: it exists only with the
/// `raw-peer` feature, which nothing but those needs.
#[cfg(feature = "raw-peer")]
#[doc(hidden)]
pub mod raw {
    pub use crate::os::{
        connect, listen, raise_nofile, recv_with_fds, send_with_fds, try_connect, unconnected,
        wait_readable, FdReadiness, PeerBell, Readiness, SharedMemory,
    };
}
pub use respond::{DeferredResponse, Request, RequestPayload, Responder, ResponseGrant};
pub use server::{Limits, PollHooks, Server, ServerBuilder, StopHandle, Token};
pub use service::Service;
pub use spin::WaitMode;
pub use stats::{ClientStats, ConnStats, Refusals, ServerStats, ServerStatsHandle};

/// The README's examples, compiled (and the in-process one run) as doctests so they
/// stay true (with the `tokio` feature, which the README's test command enables
/// through the workspace: its tokio example needs it).
#[cfg(all(doctest, feature = "tokio"))]
#[doc = include_str!("../../README.md")]
struct ReadmeDoctests;
