//! The server's poll of an idle request ring during one pass over a connection
//! ([`PassSpin`]; SPEC §2.7): the policy over the one spin engine ([`Spin`]).
//!
//! Each wait for the next request spins [`steady`](Spin::steady)ly (latency first:
//! no back-off) on its own budget; all the waits of one pass together spin at most
//! [`PASS_LIMIT`], counted from the first clock read of the pass's first wait, so one
//! connection holds the server thread no longer than that beyond the requests it
//! sends. A wait that runs out says so once (the adaptive score counts it).

use std::time::Duration;

use super::budget::{Spin, SpinStep};
use crate::deadline::Deadline;

/// The longest one pass over a connection polls its request ring, all its waits
/// together (the server's `Limits::MAX_SPIN`).
pub(crate) const PASS_LIMIT: Duration = Duration::from_millis(1);

/// One wait's poll.
pub(crate) struct PassSpin {
    spin: Spin,
    /// The run-out was reported.
    reported: bool,
}

/// What a [`PassSpin`] says to do.
#[derive(Debug)]
pub(crate) enum PassStep {
    /// Poll the ring again.
    Again,
    /// The budget just ran out, or there was none (once per spin: the adaptive score
    /// counts it).
    RanOut,
    /// Do not poll (it ran out before).
    Over,
}

impl PassSpin {
    pub(crate) fn new(budget: Duration) -> PassSpin {
        PassSpin {
            spin: Spin::steady(budget, Deadline::after(None)),
            reported: false,
        }
    }

    /// One poll. `pass_until` is the pass's end: bounds this wait once set, and is
    /// set from this wait's first clock read if it is not yet.
    pub(crate) fn poll(&mut self, pass_until: &mut Option<Deadline>) -> PassStep {
        if let Some(until) = *pass_until {
            self.spin.bound(until);
        }
        match self.spin.step() {
            SpinStep::Spin | SpinStep::CheckLiveness => {
                if pass_until.is_none() {
                    *pass_until = self
                        .spin
                        .started_at()
                        .map(|at| Deadline::at(at, PASS_LIMIT));
                }
                PassStep::Again
            }
            SpinStep::Done | SpinStep::Expired if !self.reported => {
                self.reported = true;
                PassStep::RanOut
            }
            SpinStep::Done | SpinStep::Expired => PassStep::Over,
        }
    }
}
