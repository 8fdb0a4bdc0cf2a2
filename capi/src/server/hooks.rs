//! The daemon's poll callbacks as the Rust server's [`PollHooks`]: the listener goes
//! to `poll_accept_add`, every other fd to `poll_dispatch_add` with its [`Token`] as the
//! opaque `context`, removals to `poll_dispatch_destroy`. The server hands back every
//! fd it added (at the latest when it is dropped, by `coroipcs_ipc_exit`), and says
//! which tokens it watches now ([`Server::watches`](ipc::Server::watches)), so nothing
//! is tracked here.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::sync::Arc;

use ipc::{PollHooks, Server, Token};

use super::callbacks::Callbacks;

pub(crate) struct CHooks {
    pub(crate) callbacks: Arc<Callbacks>,
}

/// The `context` the daemon is given for `token` (none for the listener: it goes to
/// `poll_accept_add`, and `poll_dispatch_destroy` gets NULL for it).
pub(crate) fn context(token: Token) -> Option<u64> {
    (token != Server::LISTENER_TOKEN).then_some(token.0)
}

impl PollHooks for CHooks {
    fn add(&mut self, fd: BorrowedFd<'_>, token: Token) -> io::Result<()> {
        if !self.callbacks.poll_add(fd.as_raw_fd(), context(token)) {
            return Err(io::Error::other(
                "the daemon's poll_*_add callback is missing",
            ));
        }
        Ok(())
    }

    fn remove(&mut self, fd: BorrowedFd<'_>, token: Token) {
        self.callbacks.poll_destroy(fd.as_raw_fd(), context(token));
    }
}
