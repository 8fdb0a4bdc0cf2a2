//! The ids of requests sent and not yet answered, without hashing.
//!
//! A client issues request ids in increasing order, and a server answers most of them
//! in that order. So the table is a [`VecDeque`] of `(id, state)` sorted by id: `send`
//! appends, a lookup tries the front (the in-order answer) and falls back to a binary
//! search, and an answered entry becomes a tombstone that is popped once it reaches the
//! front. This replaced two `HashMap`s (outstanding and abandoned), whose hashing and
//! probing was ~6 % of the CPU time of a 64 B round trip (`perf record` of
//! `coroipc-bench __rtt 64 default`).
//!
//! Bounded memory: an entry that is never answered (a server that drops one request)
//! holds every later tombstone behind it; once tombstones are more than half the
//! table (and past a small floor), one `retain` pass drops them all, so the table is
//! at most about twice the live entries: O(1) amortised per answer.
//!
//! A hostile server only makes lookups (any `u64` id): an id not in the table is
//! "not expected", whatever its value.

use std::collections::VecDeque;

/// The state of one id the client issued.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Slot {
    /// Sent, its response still to come; the request's command id.
    Outstanding(u16),
    /// Sent, then given up by the caller: its response is discarded on arrival.
    Abandoned,
    /// Answered (or its abandoned response discarded): a tombstone.
    Settled,
}

/// Tombstones tolerated before a compaction, whatever the table's size.
const TOMBSTONE_FLOOR: usize = 32;

/// Ids sent and not settled.
///
/// Invariants: ids strictly increase from front to back; the front entry is never
/// `Settled` (it is popped); `tombstones` counts the `Settled` entries and
/// `outstanding` the `Outstanding` ones.
#[derive(Debug, Default)]
pub(crate) struct InFlight {
    entries: VecDeque<(u64, Slot)>,
    tombstones: usize,
    outstanding: usize,
}

impl InFlight {
    /// Records a request sent under `id`, larger than every id recorded before.
    pub(crate) fn send(&mut self, id: u64, command: u16) {
        debug_assert!(self.entries.back().is_none_or(|&(last, _)| last < id));
        self.entries.push_back((id, Slot::Outstanding(command)));
        self.outstanding += 1;
    }

    /// Requests sent, neither answered nor abandoned.
    pub(crate) fn outstanding(&self) -> usize {
        self.outstanding
    }

    /// The state of `id` (`Settled` also for an id never recorded or long gone).
    #[inline]
    pub(crate) fn get(&self, id: u64) -> Slot {
        self.index(id).map_or(Slot::Settled, |i| self.entries[i].1)
    }

    /// Whether `id`'s response is still to come.
    #[inline]
    pub(crate) fn is_outstanding(&self, id: u64) -> bool {
        matches!(self.get(id), Slot::Outstanding(_))
    }

    /// Whether a response to `id` may legitimately arrive (outstanding or abandoned).
    #[inline]
    pub(crate) fn expects(&self, id: u64) -> bool {
        !matches!(self.get(id), Slot::Settled)
    }

    /// Settles `id`; returns the state it had.
    pub(crate) fn settle(&mut self, id: u64) -> Slot {
        let Some(i) = self.index(id) else {
            return Slot::Settled;
        };
        let old = std::mem::replace(&mut self.entries[i].1, Slot::Settled);
        match old {
            Slot::Outstanding(_) => self.outstanding -= 1,
            Slot::Abandoned => {}
            Slot::Settled => return old,
        }
        self.tombstones += 1;
        self.trim();
        old
    }

    /// Marks an outstanding `id` abandoned; returns whether it was outstanding.
    pub(crate) fn abandon(&mut self, id: u64) -> bool {
        let Some(i) = self.index(id) else {
            return false;
        };
        if !matches!(self.entries[i].1, Slot::Outstanding(_)) {
            return false;
        }
        self.entries[i].1 = Slot::Abandoned;
        self.outstanding -= 1;
        true
    }

    /// Where `id` is in `entries`, if recorded and not popped.
    #[inline]
    fn index(&self, id: u64) -> Option<usize> {
        match self.entries.front() {
            Some(&(front, _)) if front == id => Some(0),
            Some(&(front, _)) if front < id => {
                self.entries.binary_search_by_key(&id, |&(k, _)| k).ok()
            }
            _ => None,
        }
    }

    /// Pops tombstones off the front, and compacts once they dominate the table.
    fn trim(&mut self) {
        while let Some(&(_, Slot::Settled)) = self.entries.front() {
            self.entries.pop_front();
            self.tombstones -= 1;
        }
        if self.tombstones > TOMBSTONE_FLOOR && self.tombstones * 2 > self.entries.len() {
            self.entries.retain(|&(_, slot)| slot != Slot::Settled);
            self.tombstones = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_order_answers_leave_the_table_empty() {
        let mut t = InFlight::default();
        for id in 1..=5 {
            t.send(id, id as u16 * 10);
        }
        assert_eq!(t.outstanding(), 5);
        for id in 1..=5 {
            assert!(t.expects(id));
            assert_eq!(t.settle(id), Slot::Outstanding(id as u16 * 10));
        }
        assert_eq!(t.outstanding(), 0);
        assert!(t.entries.is_empty());
        assert_eq!(t.tombstones, 0);
    }

    #[test]
    fn out_of_order_answers_are_found_and_settled_once() {
        let mut t = InFlight::default();
        for id in 1..=4 {
            t.send(id, 7);
        }
        assert_eq!(t.settle(3), Slot::Outstanding(7));
        assert_eq!(
            t.settle(3),
            Slot::Settled,
            "a second answer is not expected"
        );
        assert!(!t.expects(3));
        assert!(t.is_outstanding(4));
        assert_eq!(t.settle(1), Slot::Outstanding(7));
        assert_eq!(t.entries.front().map(|e| e.0), Some(2));
        assert_eq!(t.outstanding(), 2);
    }

    #[test]
    fn ids_never_issued_are_not_expected() {
        let mut t = InFlight::default();
        assert!(!t.expects(0));
        t.send(10, 1);
        for id in [0, 9, 11, u64::MAX] {
            assert!(!t.expects(id), "{id}");
            assert_eq!(t.settle(id), Slot::Settled);
            assert!(!t.abandon(id));
        }
        assert_eq!(t.outstanding(), 1);
    }

    #[test]
    fn an_abandoned_id_is_expected_until_its_answer_comes() {
        let mut t = InFlight::default();
        t.send(1, 5);
        t.send(2, 6);
        assert!(t.abandon(1));
        assert!(!t.abandon(1), "already abandoned");
        assert_eq!(t.outstanding(), 1);
        assert!(t.expects(1));
        assert!(!t.is_outstanding(1));
        assert_eq!(t.settle(1), Slot::Abandoned);
        assert!(!t.expects(1));
        assert_eq!(t.outstanding(), 1);
    }

    #[test]
    fn an_unanswered_id_does_not_let_the_table_grow_without_bound() {
        let mut t = InFlight::default();
        t.send(1, 0); // never answered
        for id in 2..100_000 {
            t.send(id, 0);
            assert_eq!(t.settle(id), Slot::Outstanding(0));
            assert!(
                t.entries.len() <= 2 * TOMBSTONE_FLOOR + 2,
                "{id}: {}",
                t.entries.len()
            );
        }
        assert!(t.is_outstanding(1));
        assert_eq!(t.outstanding(), 1);
        assert_eq!(t.settle(1), Slot::Outstanding(0));
        assert!(t.entries.is_empty());
    }
}
