//! The spin engine ([`Spin`]), both sides': poll until a budget is spent or a
//! deadline passes, reading the clock rarely. The client's waits back off and look at
//! the peer's liveness now and then ([`Spin::new`]); the server's poll of a request
//! ring keeps one pause per poll, for latency ([`Spin::steady`], driven by
//! [`PassSpin`](super::PassSpin)).

use std::time::{Duration, Instant};

use crate::deadline::Deadline;

/// How often a spinning wait looks at its peer's liveness (one system call).
const LIVENESS_EVERY: Duration = Duration::from_millis(1);

/// A spin budget: poll shared memory until the budget is spent or the caller's
/// deadline passes, looking every millisecond (not at once: a wait that ends quickly
/// makes no system call) at whether the peer is still alive, so that even a budget of
/// `Duration::MAX` ends within a millisecond when the peer dies.
///
/// Each step pauses: 1 `pause` at first, doubling every [`BACKOFF_EVERY`] steps up to
/// 32 (with back-off), so a quick answer is seen at once and a long spin leaves the
/// core (and a hyper-thread sibling, perhaps the peer) mostly alone; a steady spin
/// pauses once per step. The clock is read once every [`PAUSES_PER_CLOCK`] pauses,
/// counted from the start, so a wait that ends within the first steps (a fast round
/// trip) never reads it, and the budget is overrun by at most that many pauses. Once
/// spent (or past its deadline), a spin stays so.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Spin {
    budget: Duration,
    /// The caller's own deadline, checked at each clock read.
    deadline: Deadline,
    /// From the first clock read: its instant, the end of the budget (`None`: never)
    /// and the next liveness check.
    started: Option<Started>,
    /// Steps taken.
    polls: u32,
    /// Pauses since the last clock read.
    paused: u32,
    /// Whether the pauses per step grow.
    backoff: bool,
    /// `Done` or `Expired` once the spin has ended (sticky).
    ended: Option<SpinStep>,
}

/// What a [`Spin`] learnt at its first clock read.
#[derive(Clone, Copy, Debug)]
struct Started {
    at: Instant,
    until: Option<Instant>,
    next_check: Instant,
}

/// Steps between two doublings of the pauses per step.
const BACKOFF_EVERY: u32 = 32;

/// Pauses between two clock reads of a [`Spin`].
const PAUSES_PER_CLOCK: u32 = 64;

/// What a spinning wait does next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SpinStep {
    /// Poll again.
    Spin,
    /// Look at the peer's liveness, then poll again.
    CheckLiveness,
    /// The budget is spent: sleep.
    Done,
    /// The caller's deadline passed.
    Expired,
}

impl Spin {
    /// A budget of `budget`, counted from the first clock read (`Duration::MAX`: spin
    /// until the wait ends; `ZERO`: the first step is `Done`), within `deadline`.
    pub(crate) fn new(budget: Duration, deadline: Deadline) -> Spin {
        Spin {
            budget,
            deadline,
            started: None,
            polls: 0,
            paused: 0,
            backoff: true,
            ended: budget.is_zero().then_some(SpinStep::Done),
        }
    }

    /// As [`new`](Self::new), without back-off: one pause per step, so the clock is
    /// read every [`PAUSES_PER_CLOCK`] steps.
    pub(crate) fn steady(budget: Duration, deadline: Deadline) -> Spin {
        Spin {
            backoff: false,
            ..Spin::new(budget, deadline)
        }
    }

    /// Bounds the spin by `deadline` too, if it has no deadline yet.
    pub(crate) fn bound(&mut self, deadline: Deadline) {
        if self.deadline.instant().is_none() {
            self.deadline = deadline;
        }
    }

    /// The instant of the first clock read, once there was one.
    pub(crate) fn started_at(&self) -> Option<Instant> {
        self.started.map(|s| s.at)
    }

    /// The next step (pausing first).
    pub(crate) fn step(&mut self) -> SpinStep {
        if let Some(ended) = self.ended {
            return ended;
        }
        self.polls = self.polls.wrapping_add(1);
        let pauses = if self.backoff {
            1u32 << (self.polls / BACKOFF_EVERY).min(5)
        } else {
            1
        };
        for _ in 0..pauses {
            std::hint::spin_loop();
        }
        self.paused += pauses;
        if self.paused < PAUSES_PER_CLOCK {
            return SpinStep::Spin;
        }
        self.paused = 0;
        self.look_at_the_clock()
    }

    #[cold]
    fn look_at_the_clock(&mut self) -> SpinStep {
        let now = Instant::now();
        let budget = self.budget;
        let started = self.started.get_or_insert_with(|| Started {
            at: now,
            until: now.checked_add(budget),
            next_check: now.checked_add(LIVENESS_EVERY).unwrap_or(now),
        });
        if self.deadline.instant().is_some_and(|d| now >= d) {
            self.ended = Some(SpinStep::Expired);
            return SpinStep::Expired;
        }
        if started.until.is_some_and(|until| now >= until) {
            self.ended = Some(SpinStep::Done);
            return SpinStep::Done;
        }
        if now >= started.next_check {
            started.next_check = now.checked_add(LIVENESS_EVERY).unwrap_or(now);
            return SpinStep::CheckLiveness;
        }
        SpinStep::Spin
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Steps until one is not `Spin` (at most `limit`), returning it.
    fn until_not_spin(s: &mut Spin, limit: u32) -> SpinStep {
        (0..limit)
            .map(|_| s.step())
            .find(|&x| x != SpinStep::Spin)
            .unwrap_or(SpinStep::Spin)
    }

    #[test]
    fn spin_budget_max_spins_with_liveness_checks() {
        let mut s = Spin::new(Duration::MAX, Deadline::NEVER);
        assert!(
            (0..PAUSES_PER_CLOCK - 1).all(|_| s.step() == SpinStep::Spin),
            "no system call at the start"
        );
        std::thread::sleep(LIVENESS_EVERY * 2);
        // The clock is read every PAUSES_PER_CLOCK pauses: the check comes within them.
        assert_eq!(
            until_not_spin(&mut s, PAUSES_PER_CLOCK),
            SpinStep::CheckLiveness
        );
        assert!(
            (0..PAUSES_PER_CLOCK).all(|_| s.step() == SpinStep::Spin),
            "then not again within a millisecond"
        );
        assert_eq!(
            Spin::new(Duration::ZERO, Deadline::NEVER).step(),
            SpinStep::Done
        );
    }

    #[test]
    fn a_spent_budget_is_seen_within_a_clock_period_and_stays_spent() {
        let mut s = Spin::new(Duration::from_micros(1), Deadline::NEVER);
        assert_eq!(s.step(), SpinStep::Spin);
        std::thread::sleep(Duration::from_millis(1));
        assert_eq!(until_not_spin(&mut s, 2 * PAUSES_PER_CLOCK), SpinStep::Done);
        assert!((0..100).all(|_| s.step() == SpinStep::Done), "sticky");
    }

    #[test]
    fn the_callers_deadline_ends_a_spin_of_any_budget() {
        let deadline = Deadline::after(Some(Duration::from_millis(1)));
        let mut s = Spin::new(Duration::MAX, deadline);
        std::thread::sleep(Duration::from_millis(2));
        assert_eq!(
            until_not_spin(&mut s, 2 * PAUSES_PER_CLOCK),
            SpinStep::Expired
        );
    }

    #[test]
    fn pauses_back_off_and_polls_wrap_harmlessly() {
        let mut s = Spin::new(Duration::MAX, Deadline::NEVER);
        s.polls = u32::MAX - 1;
        assert_ne!(s.step(), SpinStep::Done);
        assert_ne!(s.step(), SpinStep::Done);
        assert_eq!(s.polls, 0);
    }
}
