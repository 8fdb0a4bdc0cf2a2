//! Flow control: telling a service that a client is falling behind on dispatch.
//!
//! The state is the dispatch ring's: its producer compares occupancy with the ring's
//! watermarks as it publishes and keeps the answer in the ring's `flow` word (SPEC
//! §1.5), which the client reads too. What this module adds is the one thing the ring
//! cannot know, what the service was last *told*, and the one decision built on it:
//! whether there is a transition to report.
//!
//! Ownership: a [`FlowReport`] lives inside the dispatch [`Outbox`](crate::outbox),
//! and every caller asks that outbox (`flow_control`, `flow_transition`), never the
//! ring. A send whose publication crosses a watermark makes the outbox wake the
//! server thread; the server thread alone calls [`FlowReport::transition`] and hands
//! the service the result. Response rings have no report: nobody is told about them,
//! so their watermarks wake nobody.

use std::sync::atomic::{AtomicBool, Ordering};

use coroipc_ring::{Corruption, MpscProducer};

use crate::error::push_corruption;

/// What the service was last told about one ring's flow control.
#[derive(Debug, Default)]
pub(crate) struct FlowReport {
    /// The state in the last transition handed out. Invariant: read and written by
    /// the server thread only (so plain loads and stores suffice, no read-modify-write).
    told: AtomicBool,
}

impl FlowReport {
    /// The transition to report, if `ring`'s state differs from what was last told
    /// (`Some(true)`: it entered flow control). While the ring is in flow control it
    /// first re-reads the consumer's progress, which may have ended it.
    pub(crate) fn transition(&self, ring: &MpscProducer) -> Result<Option<bool>, Corruption> {
        if ring.flow_control() {
            ring.poll_flow().map_err(push_corruption)?;
        }
        let on = ring.flow_control();
        if self.told.load(Ordering::Relaxed) == on {
            return Ok(None);
        }
        self.told.store(on, Ordering::Relaxed);
        Ok(Some(on))
    }
}
