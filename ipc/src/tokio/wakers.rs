//! The tasks waiting on one client's notification fd.
//!
//! `AsyncFd::poll_read_ready` keeps one waker, but several tasks wait on one client
//! (pipelined requests, a dispatch stream). So every waiting task leaves its waker
//! here, and tokio is always given the same waker: this [`FanOut`], which wakes every
//! task registered. Nobody depends on one particular task being polled again (a task
//! may keep a future it does not poll, e.g. a stream in a `select!` loop). The rules:
//!
//! 1. A task that finds nothing to do registers here, then polls the fd with the
//!    fan-out waker.
//! 2. A task that sees the fd ready clears the readiness, wakes every other waiter
//!    (the event may be theirs) and looks again.
//! 3. A task whose look made a report another task may need — moved responses into
//!    the client's stash, or found a dispatch message (`Client::notice_mark` moved) —
//!    wakes every other waiter: those reports are not kept on the fd (the client uses
//!    `Reporting::Marked`), so a later look's arming cannot drain them unseen.
//! 4. A task that leaves (done or dropped) just takes its waker out.
//!
//! Lock order: the client's lock, then this one; tokio's reactor takes only this one
//! (through [`FanOut::wake`]), and no waker called here calls back into the client.

use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Wake, Waker};

/// Registry of waiting tasks (a small slab of wakers); the waker tokio holds.
#[derive(Debug, Default)]
pub(crate) struct FanOut {
    slots: Mutex<Slots>,
}

#[derive(Debug, Default)]
struct Slots {
    /// Slot → the waker of a waiting task (`None`: free).
    wakers: Vec<Option<Waker>>,
    /// Free slots.
    free: Vec<usize>,
}

impl FanOut {
    fn lock(&self) -> MutexGuard<'_, Slots> {
        // Only wakers live here: a panic elsewhere cannot leave them inconsistent.
        self.slots.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records `waker` for the task owning `slot` (allocating the slot on first use).
    pub(crate) fn register(&self, slot: &mut Option<usize>, waker: &Waker) {
        let mut slots = self.lock();
        let index = match *slot {
            Some(i) => i,
            None => {
                let i = match slots.free.pop() {
                    Some(i) => i,
                    None => {
                        slots.wakers.push(None);
                        slots.wakers.len() - 1
                    }
                };
                *slot = Some(i);
                i
            }
        };
        match &mut slots.wakers[index] {
            Some(w) if w.will_wake(waker) => {}
            entry => *entry = Some(waker.clone()),
        }
    }

    /// The task owning `slot` stops waiting (done or dropped).
    pub(crate) fn leave(&self, slot: &mut Option<usize>) {
        let Some(index) = slot.take() else {
            return;
        };
        let mut slots = self.lock();
        slots.wakers[index] = None;
        slots.free.push(index);
    }

    /// Wakes every waiting task but the one owning `except`.
    pub(crate) fn wake_others(&self, except: Option<usize>) {
        let slots = self.lock();
        for (i, w) in slots.wakers.iter().enumerate() {
            if Some(i) != except {
                if let Some(w) = w {
                    w.wake_by_ref();
                }
            }
        }
    }
}

impl Wake for FanOut {
    fn wake(self: Arc<Self>) {
        self.wake_others(None);
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.wake_others(None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

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
    fn the_fan_out_wakes_every_waiter_and_forgets_those_that_left() {
        let fan = Arc::new(FanOut::default());
        let tokio_holds = Waker::from(fan.clone());
        let (a_count, a) = waker();
        let (b_count, b) = waker();
        let (mut sa, mut sb) = (None, None);
        fan.register(&mut sa, &a);
        fan.register(&mut sb, &b);
        tokio_holds.wake_by_ref();
        assert_eq!(a_count.0.load(Ordering::SeqCst), 1);
        assert_eq!(b_count.0.load(Ordering::SeqCst), 1);
        fan.leave(&mut sa);
        tokio_holds.wake_by_ref();
        assert_eq!(a_count.0.load(Ordering::SeqCst), 1, "left");
        assert_eq!(b_count.0.load(Ordering::SeqCst), 2);
        // Slots are reused; `except` spares the caller.
        fan.register(&mut sa, &a);
        assert_eq!(fan.lock().wakers.len(), 2);
        fan.wake_others(sb);
        assert_eq!(a_count.0.load(Ordering::SeqCst), 2);
        assert_eq!(b_count.0.load(Ordering::SeqCst), 2);
    }
}
