//! [`FlowWatch`]: a ring's flow-control word, read from any thread.
//!
//! The word is the producer's report of its watermarks (§1.8 of SPEC), informational:
//! a hostile producer can write anything there, and a reader acts on it only as
//! advice. A [`Consumer`] is `Send`, not `Sync`, and its owner may be blocked in a call
//! on it (corosync's clients ask for the dispatch ring's flow state from one thread
//! while another waits for a response); a watch reads the same word, with the same
//! `Relaxed` load, without the consumer.
//!
//! What keeps the region mapped: the owner the caller hands
//! [`Consumer::flow_watch`] (the mapping, the heap region), held by the watch. The
//! ring cannot tell whether that owner really holds the region, so the constructor is
//! `unsafe` and says so.

use alloc::sync::Arc;
use core::any::Any;

use crate::layout::RingPtrs;
#[cfg(doc)]
use crate::Consumer;

/// Reads one ring's flow-control word from any thread (see the module doc); from
/// [`Consumer::flow_watch`].
#[derive(Clone)]
pub struct FlowWatch {
    /// Invariant: points into a region `_owner` keeps mapped.
    ring: RingPtrs,
    _owner: Arc<dyn Any + Send + Sync>,
}

// SAFETY: the watch only loads one atomic word of the shared header (the region is
// shared memory, written by another process anyway), and `_owner` is `Send + Sync`.
unsafe impl Send for FlowWatch {}
// SAFETY: as for `Send`: `flow_control` takes `&self` and performs one atomic load.
unsafe impl Sync for FlowWatch {}

impl core::fmt::Debug for FlowWatch {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("FlowWatch")
            .field("flow_control", &self.flow_control())
            .finish()
    }
}

impl FlowWatch {
    /// A watch over `ring`, kept mapped by `owner` (the caller's contract:
    /// [`Consumer::flow_watch`]).
    pub(crate) fn new(ring: RingPtrs, owner: Arc<dyn Any + Send + Sync>) -> FlowWatch {
        FlowWatch {
            ring,
            _owner: owner,
        }
    }

    /// The flow-control state the producer published, as
    /// [`Consumer::flow_control`] reads it.
    pub fn flow_control(&self) -> bool {
        self.ring.flow_control()
    }
}
