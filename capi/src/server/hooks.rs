//! The daemon's poll callbacks as the Rust server's [`PollHooks`]: the listener goes
//! to `poll_accept_add`, every other fd to `poll_dispatch_add` with its [`Token`] as the
//! opaque `context`, removals to `poll_dispatch_destroy`. The fds handed out are
//! remembered so that `coroipcs_ipc_exit` can hand back those the server never
//! removes itself (the listener and two internal doorbells).

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use ipc::{PollHooks, Server, Token};

use super::callbacks::Callbacks;

/// The fds the daemon watches, by token.
#[derive(Default)]
pub(crate) struct Watched {
    fds: HashMap<u64, RawFd>,
    /// Set by `coroipcs_ipc_exit` once everything was handed back.
    closed: bool,
}

#[derive(Clone)]
pub(crate) struct CHooks {
    pub(crate) callbacks: Arc<Callbacks>,
    pub(crate) watched: Arc<Mutex<Watched>>,
}

fn context(token: Token) -> Option<u64> {
    (token != Server::LISTENER_TOKEN).then_some(token.0)
}

impl CHooks {
    fn watched(&self) -> MutexGuard<'_, Watched> {
        self.watched.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether `context` is a token the daemon was given.
    pub(crate) fn knows(&self, context: u64) -> bool {
        self.watched().fds.contains_key(&context)
    }

    /// Hands every watched fd back (`poll_dispatch_destroy`); later removals are
    /// ignored.
    pub(crate) fn shutdown(&self) {
        let fds = {
            let mut w = self.watched();
            w.closed = true;
            std::mem::take(&mut w.fds)
        };
        for (token, fd) in fds {
            self.callbacks.poll_destroy(fd, context(Token(token)));
        }
    }
}

impl PollHooks for CHooks {
    fn add(&mut self, fd: BorrowedFd<'_>, token: Token) -> io::Result<()> {
        let raw = fd.as_raw_fd();
        if !self.callbacks.poll_add(raw, context(token)) {
            return Err(io::Error::other("the daemon's poll_*_add refused the fd"));
        }
        self.watched().fds.insert(token.0, raw);
        Ok(())
    }

    fn remove(&mut self, fd: BorrowedFd<'_>, token: Token) {
        let known = {
            let mut w = self.watched();
            !w.closed && w.fds.remove(&token.0).is_some()
        };
        if known {
            self.callbacks.poll_destroy(fd.as_raw_fd(), context(token));
        }
    }
}
