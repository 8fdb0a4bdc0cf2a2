//! Deadlines on the monotonic clock: the one place a caller's timeout becomes an
//! instant.
//!
//! Threat answered: a caller's `Duration` is safe input, and `Instant + Duration`
//! panics when the sum is not representable (`Duration::MAX`, "wait forever"). Every
//! timeout the API takes goes through [`Deadline::after`], which uses checked
//! arithmetic: a deadline too far away to represent is "never". `Duration::ZERO` is a
//! deadline that has already passed ("just look").

use std::time::{Duration, Instant};

/// An absolute point on the monotonic clock, or never.
///
/// Invariant: `None` means "no deadline"; `Some(t)` was computed without overflow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Deadline(Option<Instant>);

impl Deadline {
    /// No deadline.
    pub(crate) const NEVER: Deadline = Deadline(None);

    /// `timeout` from now; `None`, or a timeout too large to represent, is never.
    pub(crate) fn after(timeout: Option<Duration>) -> Deadline {
        Deadline(timeout.and_then(|t| Instant::now().checked_add(t)))
    }

    /// Time left (zero once passed); `None` for never.
    pub(crate) fn remaining(self) -> Option<Duration> {
        self.0.map(|d| d.saturating_duration_since(Instant::now()))
    }

    /// True once a finite deadline has passed.
    pub(crate) fn passed(self) -> bool {
        self.0.is_some_and(|d| Instant::now() >= d)
    }

    /// The instant, if finite.
    pub(crate) fn instant(self) -> Option<Instant> {
        self.0
    }
}

/// How often a spinning wait looks at its peer's liveness (one system call).
const LIVENESS_EVERY: Duration = Duration::from_millis(1);

/// A spin budget: poll shared memory until the budget is spent, looking every
/// millisecond (not at once: a wait that ends quickly makes no system call) at whether
/// the peer is still alive, so that even a budget of `Duration::MAX` ends within a
/// millisecond when the peer dies. Each step pauses (1 `pause` at first, doubling every
/// [`POLLS_PER_CLOCK`] steps up to 32). The clock is read once every
/// [`POLLS_PER_CLOCK`] steps, so an early poll costs a ring check and one `pause`, not
/// a clock read: the gap
/// between the peer's publish and our next look stays short, and a wait that ends
/// within the first steps never reads the clock (the budget counts from the first
/// read).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Spin {
    budget: Duration,
    /// From the first step: end of the budget (`None`: never) and the next liveness
    /// check.
    started: Option<(Option<Instant>, Instant)>,
    /// Steps taken.
    polls: u32,
}

/// Steps between two clock reads of a [`Spin`].
const POLLS_PER_CLOCK: u32 = 32;

/// What a spinning wait does next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SpinStep {
    /// Poll again.
    Spin,
    /// Look at the peer's liveness, then poll again.
    CheckLiveness,
    /// The budget is spent: sleep.
    Done,
}

impl Spin {
    /// A budget of `budget`, counted from the first clock read (`Duration::MAX`: spin
    /// until the wait ends; `ZERO`: the first step is `Done`).
    pub(crate) fn new(budget: Duration) -> Spin {
        Spin {
            budget,
            started: None,
            polls: 0,
        }
    }

    /// The next step; reads the clock every [`POLLS_PER_CLOCK`] steps.
    pub(crate) fn step(&mut self) -> SpinStep {
        if self.budget.is_zero() {
            return SpinStep::Done;
        }
        self.polls = self.polls.wrapping_add(1);
        // Back off: 1 `pause` between the first polls, doubling every POLLS_PER_CLOCK
        // polls up to 32, so a quick answer is seen at once and a long spin leaves the
        // core (and its hyper-thread sibling, perhaps the peer) mostly alone.
        let shift = (self.polls / POLLS_PER_CLOCK).min(5);
        for _ in 0..1u32 << shift {
            std::hint::spin_loop();
        }
        // The first clock read comes after POLLS_PER_CLOCK polls too: a wait that ends
        // within them (a fast round trip) never reads the clock. The budget counts
        // from there.
        if self.polls % POLLS_PER_CLOCK != 0 {
            return SpinStep::Spin;
        }
        let now = Instant::now();
        let budget = self.budget;
        let (until, next_check) = self.started.get_or_insert_with(|| {
            (
                now.checked_add(budget),
                now.checked_add(LIVENESS_EVERY).unwrap_or(now),
            )
        });
        if until.is_some_and(|until| now >= until) {
            return SpinStep::Done;
        }
        if now >= *next_check {
            *next_check = now.checked_add(LIVENESS_EVERY).unwrap_or(now);
            return SpinStep::CheckLiveness;
        }
        SpinStep::Spin
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_is_never_and_zero_has_passed() {
        let never = Deadline::after(Some(Duration::MAX));
        assert_eq!(never, Deadline::NEVER);
        assert!(!never.passed());
        assert_eq!(never.remaining(), None);
        let now = Deadline::after(Some(Duration::ZERO));
        assert!(now.passed());
        assert_eq!(now.remaining(), Some(Duration::ZERO));
        assert_eq!(Deadline::after(None), Deadline::NEVER);
    }

    #[test]
    fn finite_deadline_counts_down() {
        let d = Deadline::after(Some(Duration::from_secs(60)));
        assert!(!d.passed());
        let left = d.remaining().expect("finite");
        assert!(left <= Duration::from_secs(60) && left > Duration::from_secs(59));
        assert!(d.instant().is_some());
    }

    #[test]
    fn spin_budget_max_spins_with_liveness_checks() {
        let mut s = Spin::new(Duration::MAX);
        assert!(
            (0..POLLS_PER_CLOCK).all(|_| s.step() == SpinStep::Spin),
            "no system call at the start"
        );
        std::thread::sleep(LIVENESS_EVERY * 2);
        // The clock is read every POLLS_PER_CLOCK steps: the check comes within them.
        let steps: Vec<SpinStep> = (0..POLLS_PER_CLOCK).map(|_| s.step()).collect();
        assert_eq!(
            steps
                .iter()
                .filter(|&&x| x == SpinStep::CheckLiveness)
                .count(),
            1,
            "{steps:?}"
        );
        assert!(
            (0..POLLS_PER_CLOCK).all(|_| s.step() == SpinStep::Spin),
            "then not again within a millisecond"
        );
        assert_eq!(Spin::new(Duration::ZERO).step(), SpinStep::Done);
    }

    #[test]
    fn a_spent_budget_is_seen_within_polls_per_clock_steps() {
        let mut s = Spin::new(Duration::from_micros(1));
        assert!((0..POLLS_PER_CLOCK).all(|_| s.step() == SpinStep::Spin));
        std::thread::sleep(Duration::from_millis(1));
        assert!((0..POLLS_PER_CLOCK).any(|_| s.step() == SpinStep::Done));
    }
}
