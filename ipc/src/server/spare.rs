//! A connection's OS resources built before a client asks for them: the region (a
//! sealed memfd holding the three rings, mapped) and the doorbells (one socketpair).
//!
//! Building them is most of the server's work in a handshake (`memfd_create`,
//! `ftruncate`, the seals, `mmap`, the ring headers' first page faults, a
//! socketpair). The server builds the next connection's set right after it has sent
//! a reply, while that client is still attaching, so the next client's handshake
//! waits only for `accept`, the credentials, the request and the reply.
//!
//! One set is kept, laid out as the last connection was granted (a client of the same
//! program asks for the same sizes); a client granted other sizes gets a set built for
//! it then, and the spare is rebuilt for those sizes after its reply. The spare was
//! never sent to anyone: a closed connection's memory or doorbells are never reused
//! (its client may still hold them).
//! It holds three descriptors ([`FDS_SPARE`]); building it fails quietly (logged)
//! when descriptors or memory run out, and the next handshake builds its own.

use std::io;
use std::os::fd::OwnedFd;
use std::sync::Arc;

use crate::connection::Outgoing;
use crate::os::PeerBell;
use crate::outbox::Bells;
use crate::protocol::RegionLayout;
use crate::region::{self, ServerRings};
use crate::releasable::ConnBells;

/// Descriptors a spare holds: the memfd and the doorbells' two ends.
pub(crate) const FDS_SPARE: usize = 3;

/// What a new connection needs from the OS.
pub(crate) struct Resources {
    /// The layout the region was built for.
    pub(crate) layout: RegionLayout,
    /// Sent to the client, then closed (the mapping keeps the memory).
    pub(crate) memfd: OwnedFd,
    /// The server's handles on the three rings.
    pub(crate) rings: ServerRings,
    pub(crate) bells: Bells,
}

impl Resources {
    /// Creates the region and the doorbells for `layout`.
    ///
    /// # Errors
    ///
    /// The OS error of the memfd, its mapping or the socketpair (out of descriptors or
    /// memory).
    pub(crate) fn create(layout: &RegionLayout) -> io::Result<Resources> {
        let (memfd, rings) = region::create(layout)?;
        let bells: Bells = Arc::new(ConnBells::new(PeerBell::new()?));
        Ok(Resources {
            layout: *layout,
            memfd,
            rings,
            bells,
        })
    }

    /// Splits off what the connection's outboxes take.
    pub(crate) fn into_parts(self) -> (OwnedFd, coroipc_ring::Consumer, Outgoing) {
        let ServerRings {
            region,
            requests,
            responses,
            dispatch,
        } = self.rings;
        let outgoing = Outgoing {
            region,
            responses,
            dispatch,
            bells: self.bells,
        };
        (self.memfd, requests, outgoing)
    }
}

/// The one set of resources built ahead (see the module doc).
#[derive(Default)]
pub(crate) struct Spare {
    /// Built for `ready.layout`; never sent to anyone.
    ready: Option<Resources>,
}

impl Spare {
    /// Resources for a connection granted `layout`: the spare if it was built for
    /// that layout, else a new set (a spare of another layout is kept until
    /// [`refill`](Spare::refill), off this client's path).
    ///
    /// # Errors
    ///
    /// As [`Resources::create`].
    pub(crate) fn take(&mut self, layout: &RegionLayout) -> io::Result<Resources> {
        match self.ready.take_if(|spare| spare.layout == *layout) {
            Some(spare) => Ok(spare),
            None => Resources::create(layout),
        }
    }

    /// Builds the next connection's set for `layout` unless one for it is ready (a
    /// spare of another layout is dropped first). A failure is logged and leaves no
    /// spare.
    pub(crate) fn refill(&mut self, layout: &RegionLayout) {
        if self
            .ready
            .as_ref()
            .is_some_and(|spare| spare.layout == *layout)
        {
            return;
        }
        self.ready = None;
        match Resources::create(layout) {
            Ok(set) => self.ready = Some(set),
            Err(e) => tracing::debug!(error = %e, "cannot build a spare connection"),
        }
    }

    /// Whether a set is ready.
    #[cfg(test)]
    pub(crate) fn is_ready(&self) -> bool {
        self.ready.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout(request: u32) -> RegionLayout {
        RegionLayout::new([request, 4096, 4096]).unwrap()
    }

    #[test]
    fn the_spare_serves_its_layout_once() {
        let mut spare = Spare::default();
        assert!(!spare.is_ready());
        spare.refill(&layout(4096));
        assert!(spare.is_ready());
        let first = spare.take(&layout(4096)).unwrap();
        assert!(!spare.is_ready(), "taken, not copied");
        assert_eq!(first.layout, layout(4096));
        // The next take builds a fresh set: never the same memory twice.
        let second = spare.take(&layout(4096)).unwrap();
        assert!(!Arc::ptr_eq(&first.bells, &second.bells));
    }

    #[test]
    fn another_layout_gets_its_own_set_and_the_spare_follows() {
        let mut spare = Spare::default();
        spare.refill(&layout(4096));
        let other = spare.take(&layout(8192)).unwrap();
        assert_eq!(other.layout, layout(8192));
        assert_eq!(other.rings.requests.config().capacity, 8192);
        // Kept through the other client's handshake, rebuilt for its sizes after.
        assert!(spare.is_ready());
        spare.refill(&layout(8192));
        let next = spare.take(&layout(8192)).unwrap();
        assert_eq!(next.layout, layout(8192));
        assert!(!spare.is_ready());
    }

    #[test]
    fn refill_keeps_a_ready_spare_of_the_same_layout() {
        let mut spare = Spare::default();
        spare.refill(&layout(4096));
        let before = spare.ready.as_ref().map(|s| Arc::as_ptr(&s.bells));
        spare.refill(&layout(4096));
        let after = spare.ready.as_ref().map(|s| Arc::as_ptr(&s.bells));
        assert_eq!(before, after, "not rebuilt");
    }
}
