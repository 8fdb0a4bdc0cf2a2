//! What a wait may spend polling before it sleeps ([`WaitMode`]).

use std::time::Duration;

/// How a client waits for the server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WaitMode {
    /// Poll the ring for up to `spin`, then sleep on the doorbell. Any budget is
    /// accepted, `Duration::MAX` included: a spinning wait still notices the server's
    /// death within a millisecond.
    SpinThenBlock {
        /// Spin budget of a call's wait (it spins once, however often it wakes).
        spin: Duration,
    },
    /// Sleep on the doorbell at once.
    Block,
    /// The default: spin up to `max_spin` while waits have recently ended within their
    /// spin, sleep at once while they have not (the rule is in SPEC §2.9).
    /// A busy client with a quick server gets spinning latency; an idle one, or one
    /// whose server is slow, uses no CPU waiting.
    Adaptive {
        /// Spin budget of a wait that spins.
        max_spin: Duration,
    },
}

impl Default for WaitMode {
    fn default() -> Self {
        WaitMode::Adaptive {
            max_spin: Duration::from_micros(50),
        }
    }
}

impl WaitMode {
    /// The largest spin budget (zero for `Block`).
    pub(crate) fn spin(self) -> Duration {
        match self {
            WaitMode::SpinThenBlock { spin } => spin,
            WaitMode::Block => Duration::ZERO,
            WaitMode::Adaptive { max_spin } => max_spin,
        }
    }
}
