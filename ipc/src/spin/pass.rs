//! The server's poll of an idle request ring during one pass over a connection
//! ([`PassSpin`]; SPEC §2.7).

use std::time::Duration;

use crate::deadline::Deadline;

/// The longest one pass over a connection polls its request ring, all its waits
/// together (the server's `Limits::MAX_SPIN`).
pub(crate) const PASS_LIMIT: Duration = Duration::from_millis(1);

/// One wait's poll: the clock is read every 64 polls (the budget counts from the
/// first read; the pass's deadline is set then too, if it is not yet), and once the
/// budget or the pass's time is spent the poll stays over.
pub(crate) struct PassSpin {
    until: Option<Deadline>,
    budget: std::time::Duration,
    polls: u32,
    over: bool,
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
    pub(crate) fn new(budget: std::time::Duration) -> PassSpin {
        PassSpin {
            until: None,
            budget,
            polls: 0,
            over: false,
        }
    }

    pub(crate) fn poll(&mut self, pass_until: &mut Option<Deadline>) -> PassStep {
        if self.over {
            return PassStep::Over;
        }
        if self.budget.is_zero() {
            // No poll at all counts as one that ran out (as the client's zero spin):
            // else a sleeping connection would score itself back into polling.
            self.over = true;
            return PassStep::RanOut;
        }
        self.polls += 1;
        if self.polls % 64 != 0 {
            std::hint::spin_loop();
            return PassStep::Again;
        }
        // First clock read after 64 polls: a request arriving within them costs none.
        let budget = self.budget;
        let until = *self
            .until
            .get_or_insert_with(|| Deadline::after(Some(budget)));
        let pass = *pass_until.get_or_insert_with(|| Deadline::after(Some(PASS_LIMIT)));
        if until.passed() || pass.passed() {
            self.over = true;
            return PassStep::RanOut;
        }
        std::hint::spin_loop();
        PassStep::Again
    }
}
