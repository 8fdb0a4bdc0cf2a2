//! The MPSC turn: how a claim waits until every earlier claim is published, and how a
//! publication passes the turn on (`mpsc.rs`, SPEC §1.7 step 3).
//!
//! A waiter first spins on `turn` ([`TURN_SPINS`] `pause`s, about 10 µs here): the
//! wait usually lasts as long as an earlier producer takes to fill its frame. If that
//! producer was preempted between its claim and its publication, only giving it the
//! CPU ends the wait, so the waiter then parks on a futex until a publication wakes it.
//!
//! Why not `sched_yield` (what this module replaced): under Linux's EEVDF scheduler
//! (6.6 on) a yield pushes the caller's virtual deadline one slice later and changes
//! nothing else, so a thread that has yielded many times loses every pick to one that
//! yielded fewer, even after its turn has come. On this 2-CPU VM three producers that
//! yielded here crawled at about 150 messages/s for minutes: `/proc/<tid>/sched` showed
//! the producer whose turn had come runnable, with 176 799 yields behind it, while its
//! CPU's other producer, with 1 201, was picked each time. Why not sleeping for a
//! while instead (tried): nobody ends a nap early, so once one waiter napped the
//! next claim's owner waited for it and napped too, a convoy of one publication per
//! nap (150 000 messages took 7 s instead of 0.07 s).
//!
//! Protocol (Dekker's, with `SeqCst` fences between each side's write and read):
//!
//! * a parking waiter increments `sleepers`, then loops: load `epoch` as `e`
//!   (Acquire), fence, load `turn` (done if it is its start), `futex_wait(epoch, e)`;
//!   it decrements `sleepers` once done;
//! * a publication that may have waiters ([`TurnWait::pass`]) stores `turn`
//!   (Release), fences, then loads `sleepers`; if it is not 0 it increments `epoch`
//!   (Release) and wakes every waiter of it. Woken waiters whose turn has not come
//!   park again.
//!
//! No wake-up is lost. Take a waiter's last check before it parks, and the
//! publication whose store makes `turn` its start. The two fences are ordered in the
//! single total order of `SeqCst` operations. If the waiter's comes first, the
//! publisher's `sleepers` load, after its fence, sees the increment made before the
//! waiter's fence (C++20 [atomics.order] p4), so the publisher bumps `epoch` and
//! wakes. If the publisher's comes first, the waiter's `turn` load, after its fence,
//! sees the store made before the publisher's (no later store of `turn` can exist
//! before this waiter publishes): the waiter does not park. In the first case the
//! waiter's load of `e` cannot have read the bump or any later value: every write of
//! `epoch` is a read-modify-write, so a later value is in the bump's release sequence,
//! the bump would then happen before that load (Release/Acquire), and so would the
//! store of `turn` before it, which the waiter's later `turn` load would then see. So the
//! waiter's `futex_wait` finds `epoch` changed and returns at once, or the kernel has
//! queued it (it checks the value and queues under the futex bucket's lock, which the
//! wake takes) and the wake finds it. A waiter re-checks after every return, so a
//! spurious or stale wake costs a loop.
//!
//! Costs: a publication that cannot have waiters (the exclusive paths: no other thread
//! claims or holds a grant meanwhile, so no thread waits for a turn)
//! passes the turn with a plain `Release` store ([`TurnWait::pass_alone`]); the
//! others pay a fence (an `mfence` on x86-64, after the tail's `swap` has already
//! drained the store buffer) and a load of a line the group owns: a 64 B `try_send`
//! and `try_recv` on one thread took 37.6 ns against 35.9 ns before (best of five
//! runs of 5 M, three alternating runs each, 2026-12-08). The futex calls happen
//! only while a waiter is counted in `sleepers`.
//!
//! Under loom the wait is the model's own, as before this module: the waiter blocks
//! on a modelled mutex and condvar until `turn` is its start, and every publication
//! notifies. Loom cannot bound two threads spinning at once, and modelling the parking
//! itself (a waiter parking at its first miss, a modelled futex) grew the
//! three-producer model past what the suite can afford: a first form of this protocol
//! (the waiters' flag in `turn`, set by a compare-and-swap) ran for 15 minutes without
//! finishing, against about a minute. So loom checks the orderings of `turn`,
//! `published` and `tail` that the MPSC publication relies on, and the parking
//! protocol rests on the argument above (Dekker's pattern with fences as C++20
//! states it, and the futex's check-and-queue), checked in production by
//! `ring/tests/turn.rs` (producers parked in reverse claim order all woken, in
//! order, without burning CPU) and the multi-producer stress tests. Under Miri, and
//! off Linux, the waiter only spins (`spin_loop` is a yield point of Miri's
//! scheduler; with `std`, off Linux, it yields after the spins).

#[cfg(not(loom))]
use crate::sync::AtomicU32;
use crate::sync::{AtomicU64, Ordering};

/// Parks and wakes the producers of one MPSC group waiting for their turn to publish.
#[cfg(not(loom))]
#[derive(Debug, Default)]
pub(crate) struct TurnWait {
    /// Waiters parked or about to park. Invariant: a thread counts itself here before
    /// its first `SeqCst` fence of a park and stops counting once its turn came.
    sleepers: AtomicU32,
    /// The futex word parked waiters sleep on: bumped (Release) by a publication
    /// that found `sleepers` non-zero, before it wakes them.
    #[cfg(all(target_os = "linux", not(miri)))]
    epoch: AtomicU32,
}

/// `pause`s a waiter spins before it parks: about 10 µs at the ~9.5 ns a `pause` takes
/// on this VM's CPU, longer than a producer takes to fill a 64 KiB frame.
#[cfg(not(loom))]
const TURN_SPINS: u32 = 1024;

#[cfg(not(loom))]
impl TurnWait {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Returns once `turn` (loaded with Acquire) is the claim's at `start`.
    #[inline]
    pub(crate) fn wait_for(&self, turn: &AtomicU64, start: u64) {
        if turn.load(Ordering::Acquire) != start {
            self.wait_slow(turn, start);
        }
    }

    #[cold]
    #[inline(never)]
    fn wait_slow(&self, turn: &AtomicU64, start: u64) {
        for _ in 0..TURN_SPINS {
            core::hint::spin_loop();
            if turn.load(Ordering::Acquire) == start {
                return;
            }
        }
        self.block(turn, start);
    }

    /// Passes the turn on to the claim starting at `end`, waking the parked waiters:
    /// the publisher's half of Dekker's pattern (module doc).
    #[inline]
    pub(crate) fn pass(&self, turn: &AtomicU64, end: u64) {
        turn.store(end, Ordering::Release);
        core::sync::atomic::fence(Ordering::SeqCst);
        if self.sleepers.load(Ordering::Relaxed) != 0 {
            self.wake_all();
        }
    }

    /// Passes the turn on where no thread can be waiting for it: no other thread
    /// claimed space or held a grant during this publication (the exclusive paths'
    /// contract), so every later claim starts at `end` or after and finds it.
    #[inline]
    pub(crate) fn pass_alone(&self, turn: &AtomicU64, end: u64) {
        turn.store(end, Ordering::Release);
    }
}

#[cfg(all(target_os = "linux", not(miri), not(loom)))]
impl TurnWait {
    /// The waiter's half of the protocol (module doc).
    fn block(&self, turn: &AtomicU64, start: u64) {
        use core::sync::atomic::fence;
        self.sleepers.fetch_add(1, Ordering::Relaxed);
        loop {
            let epoch = self.epoch.load(Ordering::Acquire);
            fence(Ordering::SeqCst);
            if turn.load(Ordering::Acquire) == start {
                break;
            }
            // EAGAIN (the epoch moved), EINTR: the loop re-checks either way.
            let _ = rustix::thread::futex::wait(
                &self.epoch,
                rustix::thread::futex::Flags::PRIVATE,
                epoch,
                None,
            );
        }
        self.sleepers.fetch_sub(1, Ordering::Relaxed);
    }

    #[cold]
    #[inline(never)]
    fn wake_all(&self) {
        self.epoch.fetch_add(1, Ordering::Release);
        // The count is an `int` to the kernel: `u32::MAX` would read as -1 and wake one
        // waiter only. Cannot fail on a valid, aligned word of this process.
        let _ = rustix::thread::futex::wake(
            &self.epoch,
            rustix::thread::futex::Flags::PRIVATE,
            i32::MAX.unsigned_abs(),
        );
    }
}

/// The wait where nothing parks: spin (Miri), yielding with `std` (off Linux).
#[cfg(all(not(loom), any(miri, not(target_os = "linux"))))]
impl TurnWait {
    fn block(&self, turn: &AtomicU64, start: u64) {
        while turn.load(Ordering::Acquire) != start {
            #[cfg(all(feature = "std", not(miri)))]
            std::thread::yield_now();
            #[cfg(any(not(feature = "std"), miri))]
            core::hint::spin_loop();
        }
    }

    fn wake_all(&self) {}
}

/// The model's wait (module doc, "Under loom").
#[cfg(loom)]
#[derive(Debug, Default)]
pub(crate) struct TurnWait {
    lock: loom::sync::Mutex<()>,
    cond: loom::sync::Condvar,
}

#[cfg(loom)]
impl TurnWait {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    pub(crate) fn wait_for(&self, turn: &AtomicU64, start: u64) {
        let mut guard = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        while turn.load(Ordering::Acquire) != start {
            guard = self.cond.wait(guard).unwrap_or_else(|e| e.into_inner());
        }
    }

    pub(crate) fn pass(&self, turn: &AtomicU64, end: u64) {
        self.pass_alone(turn, end);
    }

    pub(crate) fn pass_alone(&self, turn: &AtomicU64, end: u64) {
        turn.store(end, Ordering::Release);
        let _guard = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        self.cond.notify_all();
    }
}
