//! What a publishing or releasing call tells its caller: whether to ring the peer's
//! doorbell, whether to sleep, and flow-control transitions.
//!
//! # The sleep/wake protocol
//!
//! The "sleeping" flag of a side is bit 0 (`SLEEP_BIT`) of the index
//! word its *peer* publishes: the consumer's flag sits in `tail`, the producer's in
//! `head`. A side about to sleep announces it with a compare-and-swap that sets the bit
//! only if the index still holds the value it just found wanting (no data / no space).
//! The peer publishes with a `swap`, and the old value it gets back says whether the bit
//! was set. Both are read-modify-writes of one location, so they are totally ordered
//! (its modification order): either the announce comes first and the publisher sees the
//! bit (and rings the doorbell), or the publish comes first and the announce's CAS fails
//! and the sleeper sees the new index. A lost wake-up would need both to miss each
//! other, which one location's modification order forbids. The `swap` also clears the
//! bit, so several publishes during one sleep ring the doorbell once.
//!
//! ## Space held by frames that deliver nothing (MPSC)
//!
//! The argument above covers deliveries: a publish that carries a message rings a
//! sleeping consumer. An [`MpscGrant`](crate::MpscGrant) dropped uncommitted is
//! published as SKIP frames, which the consumer must step over to free, yet its `Drop`
//! cannot ring. If the consumer sleeps and a producer then sleeps for space that only
//! those frames hold, neither wakes the other (ring audit H1). What closes it:
//!
//! 1. The drop's tail update is one `fetch_add` from the tail's position (only the
//!    turn holder moves it) to the claim's end. It keeps the consumer's flag in the
//!    same read-modify-write, so the flag is never clear in between (with a `swap`
//!    then `fetch_or` a producer could read the flag clear in that window), and its old
//!    value says whether the consumer sleeps. If so, the drop sets the group's private
//!    `owed_wake` (Release) after the `fetch_add`.
//! 2. A later publish that delivers `swap`s the tail, finds the kept flag and rings:
//!    the consumer wakes and steps over the SKIPs too.
//! 3. A producer whose `prepare_sleep_for_space` / `_for_flow_off` answers `sleep`
//!    takes `owed_wake` (`swap`, Acquire). If it was set, the Release/Acquire pair
//!    makes the tail load that follows see the drop's `fetch_add` or a later value. The
//!    flag still set there means no delivering publish woke the consumer since and it
//!    did not cancel: the answer is `wake_peer: Needed`, and the caller rings it before
//!    sleeping. (Flag clear: the consumer was rung by a publisher, or is awake.)
//! 4. The woken consumer frees the space: it steps over the SKIPs (`try_peek` /
//!    `try_recv` release them when the producer's flag is clear, and otherwise leave
//!    them to the next `release`), and before it sleeps again `prepare_sleep` releases
//!    everything consumed with the `head` swap. That swap finds the producer's flag set
//!    by its announce (the producer announced before taking `owed_wake`, so before the
//!    ring), and returns `Wake::Needed` to the consumer, which rings the producer:
//!    the ordinary argument above, with the roles exchanged.
//!
//! What remains open: a drop whose `owed_wake` store comes after the sleeping
//! producer took it (the drop runs concurrently with that producer's announce). The
//! consumer's flag then stays set and the wake owed, and the group's next publish or
//! sleeping `prepare_sleep_*` pays it, but if no thread of the group calls again
//! nobody rings (a sleep until the embedder's timeout, if any). A drop has no way to
//! ring; [`MpscGrant::abandon`](crate::MpscGrant::abandon) is the same give-up with the
//! wake returned to its caller, and never leaves one owed.
//!
//! The announcing CAS is `Relaxed`: the argument above needs only the single location's
//! modification order, and what the sleeper reads after waking it reads through an
//! `Acquire` load of the index (the doorbell orders that load after the waker's swap).
//! The loom suite passes with it, and weakening either index `swap` or the index loads
//! to `Relaxed` fails it (SPEC.md §1.6).

use core::cell::Cell;

use crate::error::Corruption;
use crate::index::SLEEP_BIT;
use crate::sync::{AtomicU64, Ordering};

/// How many times an announce CAS is retried before answering "not ready, retry".
pub(crate) const ANNOUNCE_ATTEMPTS: u32 = 8;

/// The announce step of the protocol above, for every handle: `word` is the index
/// word the peer publishes (it carries our flag). Each attempt takes `before()` (state
/// that must be read before the index), loads the index (`Acquire`), and asks
/// `ready(raw, before)` to validate it and say whether the awaited condition already
/// holds; if not, it sets the flag with a CAS on the value just read, which fails if
/// the peer published meanwhile (then the next attempt looks again). Returns whether
/// the caller may sleep (`false`: ready, or the peer kept moving; retry).
#[inline]
pub(crate) fn announce<S>(
    word: &AtomicU64,
    mut before: impl FnMut() -> S,
    mut ready: impl FnMut(u64, S) -> Result<bool, Corruption>,
) -> Result<bool, Corruption> {
    for _ in 0..ANNOUNCE_ATTEMPTS {
        let state = before();
        let raw = word.load(Ordering::Acquire);
        if ready(raw, state)? {
            return Ok(false);
        }
        if raw & SLEEP_BIT != 0
            || word
                .compare_exchange(raw, raw | SLEEP_BIT, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Withdraws a sleep announcement made on `word`.
#[inline]
pub(crate) fn cancel(word: &AtomicU64) {
    word.fetch_and(!SLEEP_BIT, Ordering::Relaxed);
}

/// The announce step of an asymmetric ring (`fence.rs`): a new odd epoch in `flag`
/// (ours; `epoch` is our private copy of it), the heavy barrier, then the peer's
/// `index` (`Acquire`) for `ready` to validate and judge. Returns whether the caller may
/// sleep; when not (ready, or the barrier refused), the announcement is withdrawn.
#[cold]
pub(crate) fn announce_asymmetric(
    flag: &AtomicU64,
    epoch: &Cell<u64>,
    index: &AtomicU64,
    mut ready: impl FnMut(u64, ()) -> Result<bool, Corruption>,
) -> Result<bool, Corruption> {
    // The next odd value: every announcement is one the peer has not rung for yet.
    let announced = epoch.get().wrapping_add(1) | 1;
    epoch.set(announced);
    flag.store(announced, Ordering::Relaxed);
    let outcome = if crate::fence::heavy() {
        ready(index.load(Ordering::Acquire), ()).map(|r| !r)
    } else {
        Ok(false)
    };
    if outcome != Ok(true) {
        cancel_asymmetric(flag, epoch);
    }
    outcome
}

/// A publisher's decision in an asymmetric ring after its index store and
/// `fence::light`: the peer's `epoch` is an announcement (odd) not yet rung for (`rung`,
/// updated).
#[inline(always)]
pub(crate) fn wake_for(epoch: u64, rung: &mut u64) -> Wake {
    if epoch & 1 == 1 && epoch != *rung {
        *rung = epoch;
        Wake::Needed
    } else {
        Wake::NotNeeded
    }
}

/// Withdraws an asymmetric announcement: the next even epoch (nothing if none stands).
#[inline]
pub(crate) fn cancel_asymmetric(flag: &AtomicU64, epoch: &Cell<u64>) {
    let now = epoch.get();
    if now & 1 == 1 {
        epoch.set(now.wrapping_add(1));
        flag.store(now.wrapping_add(1), Ordering::Relaxed);
    }
}

/// Whether the peer must be woken (its doorbell rung) after a publish or release.
#[must_use = "if the peer sleeps it must be woken, or it may sleep forever"]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wake {
    /// The peer announced it sleeps: ring its doorbell.
    Needed,
    /// The peer is awake (or the ring was not published to).
    NotNeeded,
}

impl Wake {
    /// True when the doorbell must be rung.
    #[inline]
    pub fn is_needed(self) -> bool {
        self == Wake::Needed
    }

    #[inline]
    pub(crate) fn from_old_index(old: u64) -> Self {
        if old & crate::index::SLEEP_BIT != 0 {
            Wake::Needed
        } else {
            Wake::NotNeeded
        }
    }

    /// `Needed` if either is.
    #[inline]
    pub fn or(self, other: Wake) -> Wake {
        if self.is_needed() || other.is_needed() {
            Wake::Needed
        } else {
            Wake::NotNeeded
        }
    }
}

/// A flow-control transition, decided by the producer with hysteresis.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FlowChange {
    /// Occupancy reached the high watermark: the producer should hold back.
    On,
    /// Occupancy fell to the low watermark: the producer may go on.
    Off,
}

/// What a producer's publish reports.
#[must_use = "a sleeping consumer must be woken"]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Published {
    /// Ring the consumer's doorbell?
    pub wake: Wake,
    /// A flow-control transition this publish caused, if any.
    pub flow: Option<FlowChange>,
}

/// The outcome of announcing sleep.
#[must_use = "the caller must either sleep or retry"]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SleepCheck {
    /// `true`: the announcement stands and nothing is ready; sleep on the doorbell.
    /// `false`: something became ready; do not sleep (the announcement is withdrawn).
    pub sleep: bool,
    /// The announcing side published pending work first and the peer must be woken
    /// (ring its doorbell before sleeping).
    pub wake_peer: Wake,
    /// A flow-control transition caused by that publish (a producer's
    /// `prepare_sleep_*` publishes staged messages first, as [`Published::flow`]);
    /// `None` where nothing is published (the consumer, an MPSC producer).
    pub flow: Option<FlowChange>,
}
