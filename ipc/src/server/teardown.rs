//! Closed connections whose memory and descriptors are released a little later: at
//! the end of the batch of events after the one they closed in, or [`DELAY`] after
//! they closed, whichever comes first.
//!
//! Releasing a connection (`munmap` of its region, which frees the memfd's pages with
//! the last reference, and closing its socket and doorbells) is a third of the
//! server's work for a client that connects and goes. Done at once, it sits in front
//! of whatever comes next, and what comes next is often the same program connecting
//! again: a client that reconnects, a connection storm after a restart. Deferred, it
//! runs after that handshake's reply.
//!
//! Only a connection whose client closed it is deferred: nobody can see its socket
//! still open. A connection the server ends (a violation, a slow client, a request)
//! closes its socket at once, since that hang-up is how the client learns it.
//!
//! Bounds: at most [`MAX_DEFERRED`] connections wait (a further one releases the
//! oldest at once), and the server releases them all before it lets descriptors run
//! out at `accept` ([`Teardown::release_all`]).

use std::time::{Duration, Instant};

/// How long a closed connection waits at most.
pub(crate) const DELAY: Duration = Duration::from_millis(1);

/// How many closed connections wait at most.
pub(crate) const MAX_DEFERRED: usize = 8;

/// One closed connection waiting for release.
struct Closed<T> {
    /// Held only to be dropped (released) later.
    _held: T,
    /// The batch it closed in.
    batch: u64,
    /// When it is released at the latest.
    due: Instant,
}

/// The closed connections waiting for release, oldest first.
pub(crate) struct Teardown<T> {
    /// Oldest first, so `batch` and `due` never decrease along it.
    closed: Vec<Closed<T>>,
    /// The batch of events being handled now.
    batch: u64,
}

impl<T> Default for Teardown<T> {
    fn default() -> Self {
        Teardown {
            closed: Vec::new(),
            batch: 0,
        }
    }
}

impl<T> Teardown<T> {
    /// Defers the release of `what`, closed in the current batch.
    pub(crate) fn defer(&mut self, what: T) {
        if self.closed.len() >= MAX_DEFERRED {
            drop(self.closed.remove(0));
        }
        // `None` only for an instant not representable: then release it next batch.
        let now = Instant::now();
        self.closed.push(Closed {
            _held: what,
            batch: self.batch,
            due: now.checked_add(DELAY).unwrap_or(now),
        });
    }

    /// When the oldest waiting connection is due.
    pub(crate) fn due(&self) -> Option<Instant> {
        self.closed.first().map(|c| c.due)
    }

    /// The end of a batch of events: releases what closed in an earlier batch or is
    /// due, and starts the next batch.
    pub(crate) fn end_batch(&mut self) {
        let now = Instant::now();
        let keep = self
            .closed
            .iter()
            .position(|c| c.batch == self.batch && c.due > now)
            .unwrap_or(self.closed.len());
        drop(self.closed.drain(..keep));
        self.batch = self.batch.wrapping_add(1);
    }

    /// Releases everything now; true if anything was waiting.
    pub(crate) fn release_all(&mut self) -> bool {
        let any = !self.closed.is_empty();
        self.closed.clear();
        any
    }

    /// How many connections wait.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.closed.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::rc::Rc;

    /// Counts how many of its clones are alive.
    fn tracked() -> Rc<()> {
        Rc::new(())
    }

    #[test]
    fn released_at_the_end_of_the_next_batch() {
        let alive = tracked();
        let mut t = Teardown::default();
        t.defer(alive.clone());
        t.end_batch();
        assert_eq!(Rc::strong_count(&alive), 2, "kept through its own batch");
        t.end_batch();
        assert_eq!(Rc::strong_count(&alive), 1, "released after the next one");
        assert_eq!(t.len(), 0);
        assert_eq!(t.due(), None);
    }

    #[test]
    fn released_when_due_even_in_its_own_batch() {
        let alive = tracked();
        let mut t = Teardown::default();
        let before = Instant::now();
        t.defer(alive.clone());
        let due = t.due().unwrap();
        assert!(due >= before + DELAY);
        std::thread::sleep(DELAY + Duration::from_millis(1));
        t.end_batch();
        assert_eq!(Rc::strong_count(&alive), 1);
    }

    #[test]
    fn only_earlier_batches_go() {
        let (old, new) = (tracked(), tracked());
        let mut t = Teardown::default();
        t.defer(old.clone());
        t.end_batch();
        t.defer(new.clone());
        t.end_batch();
        assert_eq!(Rc::strong_count(&old), 1);
        assert_eq!(Rc::strong_count(&new), 2);
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn bounded_by_releasing_the_oldest() {
        let first = tracked();
        let mut t = Teardown::default();
        t.defer(first.clone());
        for _ in 1..MAX_DEFERRED {
            t.defer(tracked());
        }
        assert_eq!(Rc::strong_count(&first), 2);
        t.defer(tracked());
        assert_eq!(Rc::strong_count(&first), 1, "the oldest made room");
        assert_eq!(t.len(), MAX_DEFERRED);
    }

    #[test]
    fn release_all_says_whether_anything_waited() {
        let alive = tracked();
        let mut t = Teardown::default();
        assert!(!t.release_all());
        t.defer(alive.clone());
        assert!(t.release_all());
        assert_eq!(Rc::strong_count(&alive), 1);
        assert!(!t.release_all());
    }
}
