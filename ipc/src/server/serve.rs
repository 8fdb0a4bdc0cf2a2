//! Serving one connection when its doorbell rings (SPEC §2.7, §2.8), in three steps
//! that hand their results down as values: [`flush_output`] (queued output into the
//! rings), [`handle_requests`] (unless responses are backed up), [`arm`] (announce
//! sleep on the rings the server waits on). Flow-control changes are reported to the
//! service by [`report_flow`], from the one place that tracks them (the outbox).
//!
//! A request's payload is copied out of shared memory into the server's scratch
//! buffer before the handler sees it: the client may rewrite the ring at any time, and
//! the handler gets bytes that cannot change under it (one `memcpy` per request) —
//! unless the service takes it in place (`Service::in_place`), when the handler reads
//! it from the ring through copies ([`RequestPayload`]). After requests, [`Poll`]
//! decides whether to poll the idle ring before announcing sleep.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use coroipc_ring::{Corruption, ReadGrant, Wake};

use super::config::Limits;
use super::session::Session;
use crate::connection::{ConnShared, DisconnectReason};
use crate::deadline::Deadline;
use crate::error::{RingKind, Violation};
use crate::protocol::{status, RequestHeader, REQUEST_HEADER_LEN};
use crate::respond::{Request, RequestPayload, Responder};
use crate::service::{ErasedPrivate, ErasedService};
use crate::spin::{Adaptive, PassSpin, PassStep};

/// Whether the connection needs another pass (the server re-rings its doorbell).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum More {
    Yes,
    No,
}

impl More {
    fn or(self, other: More) -> More {
        if self == More::Yes || other == More::Yes {
            More::Yes
        } else {
            More::No
        }
    }
}

fn ring_fault(ring: RingKind) -> impl Fn(Corruption) -> DisconnectReason {
    move |cause| DisconnectReason::ProtocolViolation(Violation::Ring { ring, cause })
}

/// One pass over a connection. `scratch` is the server's buffer for request payloads.
/// `turn` is when the caller's turn ends ([`Deadline::NEVER`] but on a runtime): the
/// pass handles no request after it, and polls the idle ring no later.
pub(crate) fn serve(
    conn: &mut Session,
    service: &mut dyn ErasedService,
    limits: &Limits,
    turn: Deadline,
    scratch: &mut Vec<u8>,
) -> Result<More, DisconnectReason> {
    if conn.private.is_none() {
        return Ok(More::No);
    }
    let responses_queued = flush_output(&conn.handle.shared)?;
    report_flow(conn, service)?;
    let mut more = More::No;
    // Backpressure: while responses are queued, requests wait in their ring.
    if !responses_queued {
        more = handle_requests(conn, service, Poll::new(limits, turn), limits, scratch)?;
    }
    Ok(more.or(arm(&conn.handle.shared)?))
}

/// Moves queued output into the rings; true if responses are still queued.
fn flush_output(shared: &ConnShared) -> Result<bool, DisconnectReason> {
    let responses = shared
        .response
        .flush()
        .map_err(ring_fault(RingKind::Response))?;
    shared
        .dispatch
        .flush()
        .map_err(ring_fault(RingKind::Dispatch))?;
    Ok(responses)
}

/// Tells the service of a flow-control transition of the dispatch ring, if any.
pub(crate) fn report_flow(
    conn: &mut Session,
    service: &mut dyn ErasedService,
) -> Result<(), DisconnectReason> {
    let Some(on) = conn
        .handle
        .shared
        .dispatch
        .flow_transition()
        .map_err(ring_fault(RingKind::Dispatch))?
    else {
        return Ok(());
    };
    if on {
        conn.handle.shared.counters.flow_on();
    }
    if let Some(private) = conn.private.as_mut() {
        service.flow(private, &conn.handle, on);
    }
    Ok(())
}

/// Handles requests until the ring is empty (and the server announced sleep on it),
/// `limits.batch` were handled, the turn `poll` knows of is over, or responses back
/// up.
fn handle_requests(
    conn: &mut Session,
    service: &mut dyn ErasedService,
    mut poll: Poll,
    limits: &Limits,
    scratch: &mut Vec<u8>,
) -> Result<More, DisconnectReason> {
    let shared = conn.handle.shared.clone();
    let request_fault =
        |e| DisconnectReason::ProtocolViolation(Violation::popping(RingKind::Request, e));
    let mut handled = 0usize;
    // Rounds that found the ring empty but could not sleep (the client published
    // meanwhile, perhaps only skip frames): bounded like requests, so no client can
    // hold the server thread past its turn.
    let mut busy_rounds = 0usize;
    let mut release_wake = Wake::NotNeeded;
    let more = loop {
        let mut grant = match conn.requests.try_peek() {
            Ok(Some(grant)) => grant,
            Ok(None) => {
                if handled > 0 {
                    // The client waits for the responses: their lines go to it first.
                    shared.response.hand_off();
                }
                release_wake = release_wake.or(conn.requests.release());
                if handled > 0 {
                    // A client asleep for room is woken before the poll, not after.
                    if release_wake.is_needed() {
                        let _ = shared.bell.ring_peer();
                        release_wake = Wake::NotNeeded;
                    }
                    let closing = shared.closing.load(Ordering::Acquire);
                    if !closing && poll.again(&mut conn.adapt) {
                        continue;
                    }
                }
                let check = conn.requests.prepare_sleep().map_err(request_fault)?;
                release_wake = release_wake.or(check.wake_peer);
                if check.sleep {
                    break More::No;
                }
                busy_rounds += 1;
                if busy_rounds > limits.batch {
                    break More::Yes;
                }
                continue;
            }
            Err(e) => return Err(request_fault(e)),
        };
        let header = request_header(&grant)?;
        grant.skip_prefix(REQUEST_HEADER_LEN);
        let request = |payload, in_ring| Request {
            id: header.id,
            command: header.command,
            payload,
            in_ring,
        };
        let private = &mut conn.private;
        if service.in_place(header.command, grant.len()) {
            let in_ring = Some(RequestPayload::new(&grant));
            handle_one(private, &shared, service, request(&[], in_ring));
            grant.consume();
        } else {
            copy_payload(&grant, scratch);
            grant.consume();
            handle_one(private, &shared, service, request(scratch, None));
        }
        // The handler may have moved the dispatch ring into flow control.
        report_flow(conn, service)?;
        handled += 1;
        poll.request_handled();
        if shared.closing.load(Ordering::Acquire)
            || handled >= limits.batch
            || shared.response.has_backlog()
            || poll.turn_over()
        {
            break More::Yes;
        }
    };
    release_wake = release_wake.or(conn.requests.release());
    // The client may be waiting for request space: it sleeps on its doorbell.
    if release_wake.is_needed() {
        let _ = shared.bell.ring_peer();
    }
    Ok(more)
}

fn short(ring: RingKind) -> DisconnectReason {
    DisconnectReason::ProtocolViolation(Violation::ShortFrame(ring))
}

/// The header of a request frame: the one check of a request's length (the client
/// is untrusted), then one copy of the header out of shared memory.
fn request_header(grant: &ReadGrant<'_>) -> Result<RequestHeader, DisconnectReason> {
    if grant.len() < REQUEST_HEADER_LEN {
        return Err(short(RingKind::Request));
    }
    let mut raw = [0u8; REQUEST_HEADER_LEN];
    grant.read_into(&mut raw);
    Ok(RequestHeader::from_bytes(&raw))
}

/// Copies a request's payload (the grant, its header skipped) out of the ring into
/// `scratch` (resized to fit).
fn copy_payload(grant: &ReadGrant<'_>, scratch: &mut Vec<u8>) {
    // Zero-fills only when the buffer grows; the copy overwrites the rest.
    let len = grant.len();
    if scratch.len() < len {
        scratch.resize(len, 0);
    } else {
        scratch.truncate(len);
    }
    grant.read_at(0, scratch);
}

/// Runs admission and the handler for one request, and answers it exactly once.
fn handle_one(
    private: &mut Option<ErasedPrivate>,
    shared: &Arc<ConnShared>,
    service: &mut dyn ErasedService,
    request: Request<'_>,
) {
    shared.counters.request(request.len());
    let Some(private) = private.as_mut() else {
        return;
    };
    let mut responder = Responder::new(shared, request.id);
    let result = if service.admit(private, request.command) {
        service.handle(private, request, &mut responder)
    } else {
        // A failure here is a closed or misbehaving connection, handled by the caller.
        let _ = responder.respond(status::TRY_AGAIN, &[]);
        Ok(())
    };
    responder.finish(result);
}

/// Arms the client's wake-ups for what the server waits for on the two outboxes
/// (space for queued output, the end of dispatch flow control); `More::Yes` if one
/// of them has already arrived.
fn arm(shared: &ConnShared) -> Result<More, DisconnectReason> {
    let mut more = More::No;
    for (ring, outbox) in [
        (RingKind::Response, &shared.response),
        (RingKind::Dispatch, &shared.dispatch),
    ] {
        if !outbox.arm().map_err(ring_fault(ring))? {
            more = More::Yes;
        }
    }
    Ok(more)
}

/// The server's poll of an idle request ring during one pass over a connection
/// (SPEC §2.7): each wait for the next request gets a budget from the connection's
/// adaptive score ([`Limits::request_wait`]), and all the waits of the pass together
/// poll at most `Limits::MAX_SPIN` (so one connection holds the server thread no
/// longer than that beyond the requests it sends).
struct Poll {
    mode: crate::WaitMode,
    /// The wait in progress, begun when the ring was first found empty after a request.
    spin: Option<PassSpin>,
    /// When the pass's polling ends (`MAX_SPIN` after its first clock read, or the
    /// end of the caller's turn).
    pass_until: Option<Deadline>,
    /// The end of the caller's turn (`NEVER` but when served on a runtime).
    turn: Deadline,
}

impl Poll {
    /// The poll of one pass; a finite `turn` (at most `MAX_SPIN` away: a runtime's
    /// turn) bounds its polling instead of `MAX_SPIN` from its first clock read.
    fn new(limits: &Limits, turn: Deadline) -> Poll {
        Poll {
            mode: limits.request_wait(),
            spin: None,
            pass_until: turn.instant().map(|_| turn),
            turn,
        }
    }

    /// Whether the caller's turn is over (no clock read without one).
    fn turn_over(&self) -> bool {
        self.turn.passed()
    }

    /// A request was handled: the next empty ring begins a new wait.
    fn request_handled(&mut self) {
        self.spin = None;
    }

    /// True to look at the ring again; scores a wait that runs out.
    fn again(&mut self, adapt: &mut Adaptive) -> bool {
        // (A finite turn bounds the polling through `pass_until`, read with the
        // clock every 64 polls.)
        let mode = self.mode;
        let spin = self
            .spin
            .get_or_insert_with(|| PassSpin::new(adapt.begin(mode)));
        let step = spin.poll(&mut self.pass_until);
        match step {
            PassStep::Again => true,
            PassStep::RanOut => {
                adapt.spun_out();
                false
            }
            PassStep::Over => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::spin::{Adaptive, PassSpin, PassStep};
    use crate::{Limits, WaitMode};
    use std::time::Duration;

    #[test]
    fn limits_choose_the_request_wait() {
        let d = Limits::default();
        assert_eq!(
            d.request_wait(),
            WaitMode::Adaptive {
                max_spin: Duration::from_micros(50)
            }
        );
        let fixed = Limits {
            spin: Duration::from_secs(1),
            ..Limits::default()
        };
        assert_eq!(
            fixed.request_wait(),
            WaitMode::SpinThenBlock {
                spin: Limits::MAX_SPIN
            }
        );
        let none = Limits {
            adaptive_spin: Duration::ZERO,
            ..Limits::default()
        };
        assert_eq!(none.request_wait(), WaitMode::Block);
    }

    #[test]
    fn a_spin_runs_out_once_and_a_zero_spin_counts_as_run_out() {
        let mut pass = None;
        let mut zero = PassSpin::new(Duration::ZERO);
        assert!(matches!(zero.poll(&mut pass), PassStep::RanOut));
        assert!(matches!(zero.poll(&mut pass), PassStep::Over));
        let mut short = PassSpin::new(Duration::from_micros(1));
        let mut again = 0;
        let ran_out = loop {
            match short.poll(&mut pass) {
                PassStep::Again => again += 1,
                other => break other,
            }
        };
        assert!(matches!(ran_out, PassStep::RanOut));
        assert!(again >= 63, "the first clock read comes after 64 polls");
        assert!(matches!(short.poll(&mut pass), PassStep::Over));
    }

    /// All the waits of one pass poll at most `MAX_SPIN` in all: once the pass's time
    /// is spent, a new wait of the same pass stops at its first clock read.
    #[test]
    fn a_pass_polls_at_most_max_spin() {
        let limits = Limits {
            spin: Limits::MAX_SPIN,
            ..Limits::default()
        };
        let mut poll = super::Poll::new(&limits, crate::deadline::Deadline::NEVER);
        let mut adapt = Adaptive::new();
        let started = std::time::Instant::now();
        while poll.again(&mut adapt) {}
        assert!(started.elapsed() >= Limits::MAX_SPIN);
        poll.request_handled();
        let mut second = 0;
        while poll.again(&mut adapt) {
            second += 1;
        }
        assert!(second < 64, "the second wait polled {second} times");
    }

    /// The server's use of the adaptive rule: polls that run out stop the polling,
    /// and a connection that sleeps does not score itself back into polling.
    #[test]
    fn a_slow_client_stops_the_server_polling() {
        let mode = WaitMode::Adaptive {
            max_spin: Duration::from_micros(50),
        };
        let mut adapt = Adaptive::new();
        let mut budgets = Vec::new();
        for _ in 0..40 {
            let budget = adapt.begin(mode);
            budgets.push(budget);
            // Nothing arrives within the poll (or there was none).
            let mut spin = PassSpin::new(budget);
            if budget.is_zero() {
                assert!(matches!(spin.poll(&mut None), PassStep::RanOut));
            }
            adapt.spun_out();
        }
        let polling = budgets.iter().filter(|b| !b.is_zero()).count();
        assert!(polling <= 8 + 2, "polled {polling} of 40 wake-ups");
        assert!(budgets[30..].iter().filter(|b| !b.is_zero()).count() <= 1);
    }
}
