//! Linux plumbing: sealed memfd mappings, fd passing, credentials, eventfd doorbells,
//! EINTR-safe waiting, and socket naming. Each submodule does one job.

mod cred;
mod doorbell;
mod fdpass;
mod shm;
mod socket;
mod wait;

pub use cred::{peer_cred, PeerCred};
pub use doorbell::Doorbell;
pub use fdpass::{recv_with_fds, send_with_fds};
pub use shm::{SharedMemory, ShmError};
pub use socket::{connect, listen, SocketName};
pub use wait::{wait_readable, Epoll, Event, Interest, Readiness};
