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

    /// `timeout` after `start`; never if that is not representable.
    pub(crate) fn at(start: Instant, timeout: Duration) -> Deadline {
        Deadline(start.checked_add(timeout))
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
}
