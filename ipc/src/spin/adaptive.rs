//! The adaptive wait's memory ([`Adaptive`]) and one call's wait ([`WaitState`]).

use std::time::Duration;

use super::mode::WaitMode;

/// The adaptive wait's memory: a score of recent waits. A wait (one call's whole wait,
/// however many times it slept and woke) that ended without its spin running out
/// raises it; one whose spin ran out lowers it; one that timed out is not counted. At
/// zero the client sleeps at once, except that one wait in [`Adaptive::PROBE_EVERY`]
/// spins again to notice that the server became quick. No clock read: only outcomes
/// are counted.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Adaptive {
    /// 0..=MAX_SCORE; spin while above zero.
    score: u8,
    /// Waits begun at score zero (for the probe).
    idle_waits: u8,
    /// How the wait in progress (or the last one) has gone so far.
    current: Outcome,
}

/// The outcome of one wait, applied to the score when the next begins.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    /// No wait yet.
    None,
    /// Ended (so far) without its spin running out.
    Quick,
    /// Its spin ran out.
    Slow,
    /// Timed out: says nothing of the server.
    Unscored,
}

impl Adaptive {
    const MAX_SCORE: u8 = 8;
    const PROBE_EVERY: u8 = 16;

    pub(crate) fn new() -> Adaptive {
        Adaptive {
            score: Self::MAX_SCORE,
            idle_waits: 0,
            current: Outcome::None,
        }
    }

    /// A memory that starts at zero: no spin until a probe finds the peer quick (the
    /// server's, so that a connection that sends one request and leaves costs no
    /// poll).
    pub(crate) fn idle() -> Adaptive {
        Adaptive {
            score: 0,
            idle_waits: 0,
            current: Outcome::None,
        }
    }

    /// A new wait begins under `mode`: scores the last one, returns the spin budget.
    pub(crate) fn begin(&mut self, mode: WaitMode) -> Duration {
        match std::mem::replace(&mut self.current, Outcome::Quick) {
            Outcome::Quick => self.score = (self.score + 1).min(Self::MAX_SCORE),
            Outcome::Slow => self.score = self.score.saturating_sub(1),
            Outcome::None | Outcome::Unscored => {}
        }
        let WaitMode::Adaptive { max_spin } = mode else {
            return mode.spin();
        };
        if self.score > 0 {
            return max_spin;
        }
        self.idle_waits = self.idle_waits.wrapping_add(1);
        if self.idle_waits % Self::PROBE_EVERY == 0 {
            max_spin
        } else {
            Duration::ZERO
        }
    }

    /// The spin budget after the wait in progress woke up without what it waits for.
    /// A call spins once: after its spin ran out, every later wake of the same call
    /// sleeps at once, so a peer ringing the doorbell without publishing (a trickle,
    /// one `send` every 50 µs) cannot buy a whole spin budget of this client's CPU
    /// per ring (client audit of 2026-12-06, finding 5).
    pub(crate) fn again(&self, mode: WaitMode) -> Duration {
        if self.current == Outcome::Slow {
            return Duration::ZERO;
        }
        match mode {
            WaitMode::Adaptive { max_spin } if self.score > 0 => max_spin,
            WaitMode::Adaptive { .. } => Duration::ZERO,
            other => other.spin(),
        }
    }

    /// The wait's spin ran out.
    pub(crate) fn spun_out(&mut self) {
        if self.current == Outcome::Quick {
            self.current = Outcome::Slow;
        }
    }

    /// The wait timed out: not counted.
    pub(crate) fn timed_out(&mut self) {
        self.current = Outcome::Unscored;
    }
}

/// One call's wait: its spin and whether it has begun (for [`Adaptive`]).
#[derive(Debug, Default)]
pub(crate) struct WaitState {
    pub(crate) spin: Option<super::budget::Spin>,
    pub(crate) begun: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spin::WaitMode;

    const MODE: WaitMode = WaitMode::Adaptive {
        max_spin: Duration::from_micros(50),
    };

    #[test]
    fn slow_waits_turn_spinning_off_and_quick_ones_back_on() {
        let mut a = Adaptive::new();
        assert_eq!(a.begin(MODE), MODE.spin(), "starts spinning");
        // Waits whose spin runs out (however often they wake): after MAX_SCORE of
        // them, sleep at once.
        for _ in 0..Adaptive::MAX_SCORE {
            a.spun_out();
            a.spun_out();
            a.begin(MODE);
        }
        a.spun_out();
        let budgets: Vec<Duration> = (0..Adaptive::PROBE_EVERY)
            .map(|_| {
                let b = a.begin(MODE);
                a.spun_out();
                b
            })
            .collect();
        assert_eq!(
            budgets.iter().filter(|b| !b.is_zero()).count(),
            1,
            "one probe in PROBE_EVERY waits: {budgets:?}"
        );
        assert_eq!(
            a.again(MODE),
            Duration::ZERO,
            "no spin after a wake-up at zero"
        );
        // A probe that ends without spinning out raises the score: spin again.
        while a.begin(MODE).is_zero() {
            a.spun_out();
        }
        assert_eq!(a.begin(MODE), MODE.spin());
        assert_eq!(a.again(MODE), MODE.spin());
        // Timeouts are not counted either way.
        a.timed_out();
        assert_eq!(a.begin(MODE), MODE.spin());
        // The other modes are what they say.
        assert_eq!(a.begin(WaitMode::Block), Duration::ZERO);
        assert_eq!(a.again(WaitMode::Block), Duration::ZERO);
    }

    #[test]
    fn a_call_spins_once_however_often_it_wakes() {
        let fixed = WaitMode::SpinThenBlock {
            spin: Duration::from_micros(50),
        };
        for mode in [MODE, fixed] {
            let mut a = Adaptive::new();
            assert_eq!(a.begin(mode), mode.spin());
            assert_eq!(a.again(mode), mode.spin(), "not spun out yet");
            a.spun_out();
            assert_eq!(a.again(mode), Duration::ZERO, "{mode:?}: one spin per call");
            a.spun_out();
            assert_eq!(a.again(mode), Duration::ZERO);
            assert_eq!(a.begin(mode), mode.spin(), "{mode:?}: the next call spins");
        }
    }
}
