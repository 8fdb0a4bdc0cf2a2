//! mio support (cargo feature `mio`): [`mio::event::Source`] for [`Client`] and
//! [`Server`], by their single fd.
//!
//! mio registers edge-triggered. Both fds are made for that: the client's
//! notification fd is armed from connect and re-armed by every non-blocking call that
//! finds nothing (call them until they do: `try_response`, `try_receive_response`,
//! `try_send_request`, `dispatch_recv(Some(ZERO))`). Arming reports whatever still
//! waits, so a loop that leaves a response or a dispatch message unread gets an event
//! for it every round, as it would for unread data on a socket. The server's epoll is
//! level-triggered inside, so call [`Server::run_once`] with a zero timeout until it
//! handles nothing, and again by [`Server::next_deadline`].

use std::io;
use std::os::fd::AsRawFd;

use mio::event::Source;
use mio::unix::SourceFd;
use mio::{Interest, Registry, Token};

use crate::client::Client;
use crate::server::Server;

/// `mio::event::Source` by one raw fd: `$fd` computes it from `self` (an `io::Result`).
macro_rules! source_by_fd {
    ($ty:ty, $fd:expr) => {
        impl Source for $ty {
            fn register(
                &mut self,
                registry: &Registry,
                token: Token,
                interests: Interest,
            ) -> io::Result<()> {
                SourceFd(&$fd(self)?).register(registry, token, interests)
            }

            fn reregister(
                &mut self,
                registry: &Registry,
                token: Token,
                interests: Interest,
            ) -> io::Result<()> {
                SourceFd(&$fd(self)?).reregister(registry, token, interests)
            }

            fn deregister(&mut self, registry: &Registry) -> io::Result<()> {
                SourceFd(&$fd(self)?).deregister(registry)
            }
        }
    };
}

/// The client's notification fd.
fn client_fd(client: &Client) -> io::Result<std::os::fd::RawFd> {
    Ok(client.as_raw_fd())
}

/// The server's poll fd, or `Unsupported` for a server built with poll hooks.
fn server_fd(server: &Server) -> io::Result<std::os::fd::RawFd> {
    server
        .poll_fd()
        .map(|fd| fd.as_raw_fd())
        .ok_or_else(|| io::Error::new(io::ErrorKind::Unsupported, "server uses poll hooks"))
}

source_by_fd!(Client, client_fd);
source_by_fd!(Server, server_fd);
