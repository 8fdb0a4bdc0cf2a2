//! The tasks waiting on one client's notification fd, and who holds tokio's
//! registration.
//!
//! `AsyncFd::poll_read_ready` keeps one waker: the last task that polled it. Several
//! tasks wait on one client (pipelined requests, a dispatch stream), so every waiting
//! task also leaves its waker here, and one task at a time — the *holder* — is the
//! one tokio will wake. The protocol that loses no task:
//!
//! 1. A task that finds nothing to do registers here, then polls the fd; if that is
//!    pending it becomes the holder (the last to poll is the one tokio wakes).
//! 2. A task that sees the fd ready clears the readiness, wakes every other waiter
//!    (the event may be theirs) and looks again.
//! 3. A task that leaves (done or dropped) while it is the holder wakes every other
//!    waiter: one of them polls the fd again and becomes the holder.
//! 4. A task whose look moved responses into the client's stash wakes every other
//!    waiter (the stash is not on the fd).
//!
//! Invariant: while any task waits, either the holder's waker is registered with
//! tokio, or a wake-up (rules 2–4) is on its way to a task that will register it.
//! All of this happens under the client's lock, so the holder cannot change between
//! a task's poll of the fd and its recording as holder.

use std::task::Waker;

/// Registry of waiting tasks (a small slab of wakers).
#[derive(Debug, Default)]
pub(crate) struct Wakers {
    /// Slot → the waker of a waiting task (`None`: free).
    slots: Vec<Option<Waker>>,
    /// Free slots.
    free: Vec<usize>,
    /// The slot whose waker tokio holds (rule 1).
    holder: Option<usize>,
}

impl Wakers {
    /// Records `waker` for the task owning `slot` (allocating the slot on first use).
    pub(crate) fn register(&mut self, slot: &mut Option<usize>, waker: &Waker) {
        let index = match *slot {
            Some(i) => i,
            None => {
                let i = match self.free.pop() {
                    Some(i) => i,
                    None => {
                        self.slots.push(None);
                        self.slots.len() - 1
                    }
                };
                *slot = Some(i);
                i
            }
        };
        match &mut self.slots[index] {
            Some(w) if w.will_wake(waker) => {}
            entry => *entry = Some(waker.clone()),
        }
    }

    /// The task owning `slot` polled the fd and got `Pending`: tokio will wake it.
    pub(crate) fn set_holder(&mut self, slot: Option<usize>) {
        self.holder = slot;
    }

    /// The task owning `slot` stops waiting (done or dropped); hands tokio's
    /// registration on if it held it (rule 3).
    pub(crate) fn leave(&mut self, slot: &mut Option<usize>) {
        let Some(index) = slot.take() else {
            return;
        };
        self.slots[index] = None;
        self.free.push(index);
        if self.holder == Some(index) {
            self.holder = None;
            self.wake_others(None);
        }
    }

    /// Wakes every waiting task but the one owning `except` (rules 2 and 4).
    pub(crate) fn wake_others(&self, except: Option<usize>) {
        for (i, w) in self.slots.iter().enumerate() {
            if Some(i) != except {
                if let Some(w) = w {
                    w.wake_by_ref();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::task::Wake;

    struct Count(AtomicUsize);
    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn waker() -> (Arc<Count>, Waker) {
        let c = Arc::new(Count(AtomicUsize::new(0)));
        (c.clone(), Waker::from(c))
    }

    #[test]
    fn the_holder_leaving_wakes_the_others_and_only_then() {
        let mut w = Wakers::default();
        let (a_count, a) = waker();
        let (b_count, b) = waker();
        let (mut sa, mut sb) = (None, None);
        w.register(&mut sa, &a);
        w.register(&mut sb, &b);
        w.set_holder(sb);
        // A non-holder leaving wakes nobody.
        w.leave(&mut sa);
        assert_eq!(a_count.0.load(Ordering::SeqCst), 0);
        assert_eq!(b_count.0.load(Ordering::SeqCst), 0);
        w.register(&mut sa, &a);
        // The holder leaving wakes the rest.
        w.leave(&mut sb);
        assert_eq!(a_count.0.load(Ordering::SeqCst), 1);
        assert_eq!(b_count.0.load(Ordering::SeqCst), 0);
        // Slots are reused.
        w.register(&mut sb, &b);
        assert_eq!(w.slots.len(), 2);
        w.wake_others(sa);
        assert_eq!(b_count.0.load(Ordering::SeqCst), 1);
        assert_eq!(a_count.0.load(Ordering::SeqCst), 1);
    }
}
