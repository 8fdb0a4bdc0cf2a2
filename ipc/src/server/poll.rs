//! How the server's fds reach an event loop: [`Token`]s, the application's
//! [`PollHooks`] or the built-in epoll ([`Poller`]), and the [`StopHandle`] of the
//! built-in loop.

use std::io;
use std::os::fd::BorrowedFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::os::{Doorbell, Epoll, Interest};

/// Identifies an fd registered through [`PollHooks`]; hand it back to
/// [`Server::handle_ready`](crate::Server::handle_ready).
///
/// The server's tokens never have the top bit set; tokens that do
/// ([`Token::foreign`]) are free for the event loop's own fds beside the server's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Token(pub u64);

/// The bit no server token has (its connection ids stay below 2^61: a new id each
/// connection, from 1).
const FOREIGN_BIT: u64 = 1 << 63;

impl Token {
    /// Token `n` of the range the server never uses (`n` below 2^63).
    pub const fn foreign(n: u64) -> Token {
        Token(FOREIGN_BIT | (n & !FOREIGN_BIT))
    }

    /// Whether this token is in the range the server never uses.
    pub const fn is_foreign(self) -> bool {
        self.0 & FOREIGN_BIT != 0
    }
}

pub(crate) const LISTENER: Token = Token(0);
pub(crate) const STOP: Token = Token(1);
/// The server-owned work doorbell (connections to close); connection tokens have
/// ids from 1, so `Token(2)` (id 0) is free.
pub(crate) const WORK: Token = Token(2);
pub(crate) const KIND_PENDING: u64 = 1;
pub(crate) const KIND_BELL: u64 = 2;
pub(crate) const KIND_SOCKET: u64 = 3;

pub(crate) fn token(id: u64, kind: u64) -> Token {
    Token(id << 2 | kind)
}

/// Where the server's fds go: implemented by the application's event loop.
pub trait PollHooks: Send {
    /// Start watching `fd` for readability; report it with `token`.
    ///
    /// # Errors
    ///
    /// Whatever the loop cannot register; the server drops the fd's client (or, for
    /// the listener, fails to build).
    fn add(&mut self, fd: BorrowedFd<'_>, token: Token) -> io::Result<()>;
    /// Stop watching `fd` (called before the fd is closed). The server removes every
    /// fd it added, by the time it is dropped at the latest, and when building it
    /// fails after adding some.
    fn remove(&mut self, fd: BorrowedFd<'_>, token: Token);
}

pub(crate) enum Poller {
    Builtin(Epoll),
    Hooks(Box<dyn PollHooks>),
}

impl Poller {
    /// Watches a doorbell. The built-in loop watches it edge-triggered (each ring is
    /// one event); hooks get it like any fd. The server drains it at every event.
    pub(crate) fn add_bell(&mut self, fd: BorrowedFd<'_>, token: Token) -> io::Result<()> {
        match self {
            Poller::Builtin(epoll) => epoll.add_edge_triggered(fd, token.0, Interest::READABLE),
            Poller::Hooks(hooks) => hooks.add(fd, token),
        }
    }

    pub(crate) fn add(&mut self, fd: BorrowedFd<'_>, token: Token) -> io::Result<()> {
        match self {
            Poller::Builtin(epoll) => epoll.add(fd, token.0, Interest::READABLE),
            Poller::Hooks(hooks) => hooks.add(fd, token),
        }
    }

    pub(crate) fn remove(&mut self, fd: BorrowedFd<'_>, token: Token) {
        match self {
            Poller::Builtin(epoll) => {
                if let Err(e) = epoll.delete(fd) {
                    tracing::debug!(error = %e, "epoll delete failed");
                }
            }
            Poller::Hooks(hooks) => hooks.remove(fd, token),
        }
    }
}

pub(crate) struct StopInner {
    pub(crate) flag: AtomicBool,
    pub(crate) bell: Doorbell,
}

/// Stops [`Server::run`](crate::Server::run) from any thread.
#[derive(Clone)]
pub struct StopHandle {
    pub(crate) inner: Arc<StopInner>,
}

impl StopHandle {
    /// Makes `run` return after the current event; a stop made while `run` is not
    /// running makes the next `run` return at once.
    pub fn stop(&self) {
        self.inner.flag.store(true, Ordering::Release);
        if let Err(e) = self.inner.bell.ring() {
            tracing::warn!(error = %e, "could not wake the server to stop it");
        }
    }
}
