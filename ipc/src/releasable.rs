//! What a connection holds of the operating system on the server side, made
//! releasable while handles to the connection live on: its doorbells (two
//! descriptors, [`ConnBells`]) and its shared region (a mapping of the client's
//! memfd, [`ConnRegion`]).
//!
//! Threat answered (server audit of 2026-12-06, finding 5): a [`Connection`] or a
//! [`DeferredResponse`] kept by a service after its client left kept both alive,
//! outside `max_connections` and the descriptor budget. A client looping "connect,
//! send a request the service defers, close" made the server run out of
//! descriptors, after which every new client was refused. Now the server thread
//! releases both when it lets the connection go (`Session`'s drop), whoever still
//! holds a handle:
//!
//! * the outboxes are closed first, under their locks: every send through a late
//!   handle fails with `Disconnected`, and a sender or zero-copy grant in the rings
//!   is waited for, so that afterwards nothing writes the region;
//! * the doorbells sit behind a lock that ringing takes for reading (around one
//!   non-blocking `send`), so the close waits at most for the rings in flight; after
//!   it a ring finds nothing and does nothing: nobody is left to wake;
//! * the region's pages are let go in place ([`SharedMemory::forget_pages`]): the
//!   range becomes an inaccessible mapping backed by nothing, reserved so that no
//!   other allocation takes it while ring handles still point into it, and the
//!   memfd's memory is freed with the client's last mapping, also in a daemon that
//!   locks its memory (`mlockall`: an inaccessible mapping is never filled in).
//!
//! What a late handle pins is then its struct (a few hundred bytes: the queues are
//! freed too) and one reserved, empty address range, which counts against the
//! process's mapping limit (`vm.max_map_count`) until the handle goes.
//!
//! [`Connection`]: crate::Connection
//! [`DeferredResponse`]: crate::DeferredResponse

use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard};

use crate::os::{PeerBell, SharedMemory};

/// A connection's doorbells on the server side, closable by the server thread while
/// other threads may ring them.
#[derive(Debug)]
pub(crate) struct ConnBells {
    /// `Some` until [`close`](Self::close). Held for reading around each ring and
    /// drain (one non-blocking system call), for writing only to close.
    ends: RwLock<Option<PeerBell>>,
}

impl ConnBells {
    pub(crate) fn new(bell: PeerBell) -> ConnBells {
        ConnBells {
            ends: RwLock::new(Some(bell)),
        }
    }

    fn read(&self) -> RwLockReadGuard<'_, Option<PeerBell>> {
        // The value is never left half-changed (it is only ever taken whole), so a
        // panic in a holder (the server's poll hooks run under it in `with_fd`) leaves
        // nothing to repair: recover it.
        self.ends.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// Wakes the client (nothing once closed: nobody is left to wake).
    ///
    /// # Errors
    ///
    /// As [`PeerBell::ring_peer`].
    pub(crate) fn ring_peer(&self) -> io::Result<()> {
        self.read().as_ref().map_or(Ok(()), PeerBell::ring_peer)
    }

    /// Wakes the server thread for this connection (nothing once closed).
    ///
    /// # Errors
    ///
    /// As [`PeerBell::ring_self`].
    pub(crate) fn ring_self(&self) -> io::Result<()> {
        self.read().as_ref().map_or(Ok(()), PeerBell::ring_self)
    }

    /// Takes the rings for the server thread (none once closed).
    ///
    /// # Errors
    ///
    /// As [`PeerBell::drain`].
    pub(crate) fn drain(&self) -> io::Result<bool> {
        self.read().as_ref().map_or(Ok(false), PeerBell::drain)
    }

    /// Calls `f` with the two ends as the handshake sends them (`None` once closed).
    pub(crate) fn with_ends<R>(&self, f: impl FnOnce([BorrowedFd<'_>; 2]) -> R) -> Option<R> {
        self.read().as_ref().map(|bell| f(bell.ends()))
    }

    /// Calls `f` with the fd the server thread watches (`None` once closed).
    pub(crate) fn with_fd<R>(&self, f: impl FnOnce(BorrowedFd<'_>) -> R) -> Option<R> {
        self.read().as_ref().map(|bell| f(bell.as_fd()))
    }

    /// Closes both ends (server thread, once the connection is gone).
    pub(crate) fn close(&self) {
        let taken = self
            .ends
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        drop(taken);
    }
}

/// A connection's shared region as the server holds it beside its ring handles
/// (which keep the mapping itself alive).
#[derive(Debug)]
pub(crate) struct ConnRegion(pub(crate) Arc<SharedMemory>);

impl ConnRegion {
    /// Lets go of the client's memory (server thread, once the connection is gone);
    /// a failure is logged and leaves the mapping as it was.
    ///
    /// # Safety
    ///
    /// Nothing may access the region any more: both outboxes are closed (so no
    /// sender is in or will enter their rings) and the server thread has done with
    /// the request ring.
    pub(crate) unsafe fn release(&self) {
        // SAFETY: nothing accesses the region any more (caller contract).
        if let Err(e) = unsafe { self.0.forget_pages() } {
            tracing::debug!(error = %e, "cannot let go of a closed connection's pages");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_closed_bell_rings_nothing_and_holds_no_descriptor() {
        let bells = ConnBells::new(PeerBell::new().expect("pair"));
        let fd = bells
            .with_fd(|fd| fd.try_clone_to_owned())
            .expect("open")
            .expect("dup");
        bells.ring_self().expect("ring");
        assert!(bells.drain().expect("drain"), "rung while open");
        bells.close();
        assert!(bells.with_fd(|_| ()).is_none() && bells.with_ends(|_| ()).is_none());
        bells.ring_self().expect("a ring after close is no error");
        bells.ring_peer().expect("a ring after close is no error");
        assert!(!bells.drain().expect("drain"), "nothing after close");
        // Our duplicate of the server end sees end-of-file: the pair's other end closed.
        let peer = PeerBell::adopt(
            fd,
            PeerBell::new().expect("pair").ends()[1]
                .try_clone_to_owned()
                .expect("dup"),
        )
        .expect("adopt");
        assert_eq!(
            peer.drain().expect_err("closed").kind(),
            io::ErrorKind::UnexpectedEof
        );
    }
}
