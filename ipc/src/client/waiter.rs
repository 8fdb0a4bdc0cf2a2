//! How a client waits: one [`Waiter`] owning the socket, the doorbells and the epoll
//! instances that watch them.
//!
//! Every blocking wait sleeps on one epoll holding the client doorbell
//! edge-triggered (each ring is one event; the caller drains the doorbell before it
//! announces sleep, so its buffer never fills) and the socket (the
//! server never writes to it after the handshake, so readable or hung up means it is
//! gone: a dead server ends the wait at once, with no timed slices). The caller has
//! announced sleep on the ring it waits for and re-checks that ring after waking; a
//! ring meant for another of its rings is a spurious wake, never a lost one.
//!
//! The notification fd handed to event loops is a second, level-triggered epoll over
//! the same two fds and the client's notice (an eventfd of its own, for its own
//! reports), created at connect and kept for the client's life (an event loop
//! registers it once). Blocking waits use their own edge-triggered epoll; the drain
//! before one may consume the notification fd's readiness, which the wait gives back
//! (it rings the notice after it, when the fd was armed).

use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use coroipc_ring::Wake;

use crate::deadline::Deadline;
use crate::os::{self, Doorbell, Epoll, Interest, PeerBell};

/// How a blocking wait ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Woke {
    /// The doorbell rang (re-check the ring).
    Bell,
    /// The server is gone.
    ServerGone,
    /// The deadline passed.
    Timeout,
}

/// The socket, the doorbells and the epolls of one client.
pub(crate) struct Waiter {
    /// The liveness link (nothing is read from it after the handshake).
    stream: UnixStream,
    /// Rung by the server for a response, request space or a dispatch message
    /// (`ring_peer` wakes the server for this connection).
    bell: PeerBell,
    /// Set, for good, once a doorbell operation found the pair shut down or hung up
    /// ([`os::means_hang_up`]): the server is gone even though its socket may still
    /// be open, and the level-triggered notification fd stays readable for ever, so
    /// the client must say so on every later call rather than once. (Atomic only to
    /// be set through `&self`; one thread uses a waiter at a time.)
    hung_up: AtomicBool,
    /// What a blocking wait sleeps on; created on first block.
    blocker: Option<Epoll>,
    /// The client's own reports to its notification fd (arming's "something waits",
    /// a blocking wait giving back readiness it may have drained): an eventfd of this
    /// process alone, apart from `bell`, so that the drain before a blocking sleep
    /// (which must empty `bell`) never takes a report the caller's poll has not seen.
    notice: Doorbell,
    /// The notification fd (level-triggered: readable while the doorbell or the
    /// notice holds a ring or the socket is readable or hung up); the same fd for the
    /// client's life.
    poll: Epoll,
}

impl Waiter {
    /// Creates the notification fd over `bell` and `stream`.
    ///
    /// # Errors
    ///
    /// The OS error of `epoll_create1` or `epoll_ctl` (`EMFILE` at the fd limit).
    pub(crate) fn new(stream: UnixStream, bell: PeerBell) -> io::Result<Waiter> {
        let poll = Epoll::new()?;
        let notice = Doorbell::new()?;
        poll.add(bell.as_fd(), 0, Interest::READABLE)?;
        poll.add(stream.as_fd(), 1, Interest::READABLE)?;
        poll.add(notice.as_fd(), 2, Interest::READABLE)?;
        Ok(Waiter {
            stream,
            bell,
            hung_up: AtomicBool::new(false),
            blocker: None,
            notice,
            poll,
        })
    }

    /// Rings the server's doorbell if the ring operation said so.
    pub(crate) fn ring_server(&self, wake: Wake) -> io::Result<()> {
        if wake.is_needed() {
            self.noting_hang_up(self.bell.ring_peer())?;
        }
        Ok(())
    }

    /// Whether a doorbell operation found the pair shut down (see `hung_up`).
    pub(crate) fn hung_up(&self) -> bool {
        self.hung_up.load(Ordering::Relaxed)
    }

    /// Passes a doorbell operation's result on, remembering a hang-up.
    fn noting_hang_up<T>(&self, r: io::Result<T>) -> io::Result<T> {
        if let Err(e) = &r {
            if os::means_hang_up(e) {
                self.hung_up.store(true, Ordering::Relaxed);
            }
        }
        r
    }

    /// The doorbells, for guards that release into a ring (they ring the server).
    pub(crate) fn server_bell(&self) -> &PeerBell {
        &self.bell
    }

    /// Looks, without waiting, whether the server is gone.
    pub(crate) fn server_gone(&self) -> io::Result<bool> {
        let look = os::wait_readable(&[self.stream.as_fd()], Some(Duration::ZERO))?;
        Ok(look.readable(0) || look.hangup(0))
    }

    /// Rings this client's own doorbell: makes the pollable fd readable for something
    /// already waiting in a ring.
    pub(crate) fn ring_self(&self) -> io::Result<()> {
        self.notice.ring()
    }

    /// Empties the doorbell and the notice (before arming the pollable fd, which
    /// then reports what waits afresh).
    pub(crate) fn drain(&self) -> io::Result<()> {
        self.notice.drain()?;
        self.noting_hang_up(self.bell.drain()).map(drop)
    }

    /// Empties the doorbell alone (before a blocking wait announces sleep: its buffer
    /// must not fill, and the notice keeps what the notification fd reports).
    pub(crate) fn drain_bell(&self) -> io::Result<()> {
        self.noting_hang_up(self.bell.drain()).map(drop)
    }

    /// Sleeps until the doorbell rings, the server dies, or `deadline`.
    pub(crate) fn block(&mut self, deadline: Deadline) -> io::Result<Woke> {
        let blocker = match self.blocker.take() {
            Some(b) => b,
            None => {
                let b = Epoll::new()?;
                b.add_edge_triggered(self.bell.as_fd(), 0, Interest::READABLE)?;
                b.add(self.stream.as_fd(), 1, Interest::READABLE)?;
                b
            }
        };
        let mut events = Vec::with_capacity(2);
        let waited = blocker.wait(&mut events, deadline.remaining());
        self.blocker = Some(blocker);
        Ok(match waited? {
            0 => Woke::Timeout,
            _ if events.iter().any(|e| e.token == 1) => Woke::ServerGone,
            _ => Woke::Bell,
        })
    }

    /// A second handle on the socket, for [`Closer`](super::Closer).
    pub(crate) fn socket_clone(&self) -> io::Result<UnixStream> {
        self.stream.try_clone()
    }

    /// The notification fd: readable after the doorbell rang or when the server is
    /// gone.
    pub(crate) fn poll_fd(&self) -> BorrowedFd<'_> {
        self.poll.as_fd()
    }
}
