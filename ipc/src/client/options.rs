//! What a client is configured with ([`ConnectOptions`], [`WaitMode`]) and what a
//! request returns ([`Response`]); the one mapping from a response status to an error.

use std::time::Duration;

use crate::error::ClientError;
use crate::protocol::status;

/// How a client waits for the server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WaitMode {
    /// Poll the ring for up to `spin`, then sleep on the doorbell. Any budget is
    /// accepted, `Duration::MAX` included: a spinning wait still notices the server's
    /// death within a millisecond.
    SpinThenBlock {
        /// Spin budget per wait.
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

/// The adaptive wait's memory: a score of recent waits. A wait that ended while
/// spinning raises it, one whose spin ran out (and slept) lowers it; at zero the client
/// sleeps at once, except that one wait in [`Adaptive::PROBE_EVERY`] spins again to
/// notice that the server became quick. No clock read: only outcomes are counted.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Adaptive {
    /// 0..=MAX_SCORE; spin while above zero.
    score: u8,
    /// Waits begun at score zero (for the probe).
    idle_waits: u8,
    /// A wait has begun and not slept yet.
    open: bool,
}

impl Adaptive {
    const MAX_SCORE: u8 = 8;
    const PROBE_EVERY: u8 = 16;

    pub(crate) fn new() -> Adaptive {
        Adaptive {
            score: Self::MAX_SCORE,
            idle_waits: 0,
            open: false,
        }
    }

    /// The spin budget for a wait beginning now, under `mode`.
    pub(crate) fn budget(&mut self, mode: WaitMode) -> Duration {
        let WaitMode::Adaptive { max_spin } = mode else {
            return mode.spin();
        };
        if std::mem::replace(&mut self.open, true) {
            // The previous wait ended without sleeping: it was quick.
            self.score = (self.score + 1).min(Self::MAX_SCORE);
        }
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

    /// The wait's spin ran out: it sleeps.
    pub(crate) fn slept(&mut self) {
        if std::mem::replace(&mut self.open, false) {
            self.score = self.score.saturating_sub(1);
        }
    }
}

/// Options for [`Client::connect`](crate::Client::connect). Ring sizes are requests;
/// the server caps them. Every timeout accepts `Duration::MAX` (forever) and
/// `Duration::ZERO` (just look).
#[derive(Clone, Debug)]
pub struct ConnectOptions {
    /// Request ring capacity asked for (0: server default).
    pub request_ring: u32,
    /// Response ring capacity asked for (0: server default).
    pub response_ring: u32,
    /// Dispatch ring capacity asked for (0: server default).
    pub dispatch_ring: u32,
    /// Bound on the whole handshake.
    pub connect_timeout: Duration,
    /// Bound on each synchronous request (None: wait as long as the server lives).
    pub request_timeout: Option<Duration>,
    /// How to wait.
    pub wait: WaitMode,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        ConnectOptions {
            request_ring: 0,
            response_ring: 0,
            dispatch_ring: 0,
            connect_timeout: Duration::from_secs(5),
            request_timeout: None,
            wait: WaitMode::default(),
        }
    }
}

/// A successful response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    /// 0 or a positive service-defined status.
    pub status: i32,
    /// The payload.
    pub data: Vec<u8>,
}

/// A response to a pipelined request ([`Client::receive_response`](crate::Client::receive_response)):
/// the request's id, and the response or the error its status stands for.
pub type Reply = (u64, Result<Response, ClientError>);

/// The error a response status to `command` stands for (`None` for 0 and service
/// codes).
pub(crate) fn status_error(code: i32, command: u16) -> Option<ClientError> {
    match code {
        c if c >= 0 => None,
        status::TRY_AGAIN => Some(ClientError::TryAgain),
        status::UNKNOWN_COMMAND => Some(ClientError::UnknownCommand { command }),
        status::ABANDONED => Some(ClientError::Abandoned),
        status::RESPONSE_TOO_LARGE => Some(ClientError::ResponseTooLarge),
        _ => Some(ClientError::BadRequest),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MODE: WaitMode = WaitMode::Adaptive {
        max_spin: Duration::from_micros(50),
    };

    #[test]
    fn slow_waits_turn_spinning_off_and_quick_ones_back_on() {
        let mut a = Adaptive::new();
        assert_eq!(a.budget(MODE), MODE.spin(), "starts spinning");
        // Waits that spin out and sleep: after MAX_SCORE of them, sleep at once.
        for _ in 0..Adaptive::MAX_SCORE {
            a.slept();
            a.budget(MODE);
        }
        a.slept();
        let budgets: Vec<Duration> = (0..Adaptive::PROBE_EVERY)
            .map(|_| {
                let b = a.budget(MODE);
                a.slept();
                b
            })
            .collect();
        assert_eq!(
            budgets.iter().filter(|b| !b.is_zero()).count(),
            1,
            "one probe in PROBE_EVERY waits: {budgets:?}"
        );
        // A probe that ends while spinning (no `slept`) raises the score: spin again.
        while a.budget(MODE).is_zero() {
            a.slept();
        }
        assert_eq!(a.budget(MODE), MODE.spin());
        assert_eq!(a.budget(MODE), MODE.spin());
        // The other modes are what they say.
        assert_eq!(a.budget(WaitMode::Block), Duration::ZERO);
    }
}
