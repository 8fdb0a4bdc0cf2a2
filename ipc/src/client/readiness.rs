//! The client's notification fd: what it reports, and *arming* it — the one place
//! that decides when the fd reads ready.
//!
//! The fd is a level-triggered epoll over the client's doorbell (its end of the
//! connection's socketpair), its notice (an eventfd of its own, which the client
//! rings to report what waits) and the
//! socket ([`Waiter`](super::waiter::Waiter)). The server rings the doorbell when it
//! puts something into a ring the client announced sleep on; the non-blocking calls,
//! when they find nothing, *arm* the fd: drain the doorbell, move the responses that
//! arrived into the stash (discarding those of abandoned requests), announce sleep on
//! the response and the dispatch ring, and ring the client's own doorbell if something
//! already waits.
//!
//! The threat this answers is the lost event. Draining is how the fd stops reading
//! ready once everything is handled, but every arming drains — also a ring the
//! caller's poll has not seen yet (a loop makes several non-blocking calls per round,
//! and a server ring or an earlier call's report may land between two of them). So
//! arming never trusts the doorbell to remember anything: it re-derives readiness from
//! the state itself, every time. With [`Reporting::Level`] (every [`Client`]'s) that
//! state is "a response waits, in its ring or set aside in the stash; a dispatch
//! message waits unread; there is room for the request a non-blocking send found no
//! room for, until the next send". A loop that polls the fd and calls the
//! non-blocking calls until they return nothing therefore never loses an event,
//! whatever the order of its calls (the tests
//! `a_stashed_response_stays_an_event_through_later_looks`,
//! `a_dispatch_message_is_not_lost_to_the_looks_after_it` and
//! `room_freed_is_reported_even_after_other_calls_drained_the_doorbell` in
//! `tests/event_loops.rs` are three orders that lost one before).
//!
//! The price of level readiness is that a caller leaving a message unread is told
//! about it at every arming, as a socket with unread data is. The async client has
//! tasks that may legitimately leave one unread (a stream kept and not polled), and
//! it wakes its waiters itself: it uses [`Reporting::Marked`], where arming does not
//! report the stash, and reports a waiting dispatch message and freed room once, each
//! such report counted in [`Client::notice_mark`] so that the waiters are woken
//! directly — a report that a later arming drains is then not lost either.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};

use coroipc_ring::SleepCheck;

use super::Client;
use crate::error::{ClientError, RingKind, Violation};

/// How the notification fd reports what waits besides the response ring (always
/// level).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum Reporting {
    /// After every arming the fd reads ready while a stashed response or an unread
    /// dispatch message waits, or room waits for a send that found none (until the
    /// next send).
    #[default]
    Level,
    /// Arming does not report stashed responses; it reports a waiting dispatch
    /// message once until one is taken, and freed room once; each report moves
    /// [`Client::notice_mark`], for a caller that wakes its own waiters.
    #[cfg_attr(not(feature = "tokio"), allow(dead_code))]
    Marked,
}

/// The reporting state of one client: its single owner is arming.
#[derive(Debug, Default)]
pub(crate) struct Reports {
    pub(crate) mode: Reporting,
    /// [`Reporting::Marked`] only: true once arming reported the dispatch message now
    /// waiting; cleared when one is taken.
    dispatch_reported: bool,
    /// [`Reporting::Marked`] only: how many dispatch and room reports arming has
    /// made.
    marked_reports: u64,
}

impl Reports {
    /// A dispatch message was taken: the next one is reported again.
    pub(crate) fn dispatch_taken(&mut self) {
        self.dispatch_reported = false;
    }

    /// Whether arming reports a dispatch message that waits.
    fn report_dispatch(&mut self) -> bool {
        match self.mode {
            Reporting::Level => true,
            Reporting::Marked if self.dispatch_reported => false,
            Reporting::Marked => {
                self.dispatch_reported = true;
                self.marked_reports += 1;
                true
            }
        }
    }

    /// Arming found room for the send that found none; returns whether that report
    /// is made once (the send's interest forgotten) rather than at every arming.
    fn room_reported(&mut self) -> bool {
        match self.mode {
            Reporting::Level => false,
            Reporting::Marked => {
                self.marked_reports += 1;
                true
            }
        }
    }
}

/// What arming the pollable fd found already there.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Armed {
    pub(crate) dispatch: bool,
    pub(crate) responses: bool,
}

impl Client {
    /// Arms the pollable fd: drains the doorbell, then announces sleep on the
    /// dispatch ring and the response ring, so the server rings when either gets
    /// something. If something already waits (see [`Reporting`]), the client rings
    /// its own doorbell: the fd is readable for what is there (no lost edge, whatever
    /// the caller polls next). Returns which rings hold something.
    pub(crate) fn arm_poll_fd(&mut self) -> Result<Armed, ClientError> {
        self.waiter.drain()?;
        let dispatch = match self.dispatch.prepare_sleep() {
            Ok(check) => check,
            Err(e) => return Err(self.fail(Violation::popping(RingKind::Dispatch, e))),
        };
        self.waiter.ring_server(dispatch.wake_peer)?;
        let stashed_now = self.take_responses()?;
        // Armed even with nothing in flight: a request sent before the next poll is
        // answered into an armed ring. Not when responses were just stashed: the
        // caller looks again, and the fd is made readable (below), so whoever polls
        // it comes back and arms afresh. Announcing here would leave the bit set
        // under a caller that found its answer, and make the server ring the
        // doorbell for the next one (a `send`, and a drain here): async round trips
        // took 2.1 -> 2.7 µs.
        let responses = if stashed_now {
            SleepCheck {
                sleep: false,
                // What the stash stepped over is released as a sleep would (a
                // server may wait for that room).
                wake_peer: self.responses.release(),
                flow: None,
            }
        } else {
            match self.responses.prepare_sleep() {
                Ok(check) => check,
                Err(e) => return Err(self.fail(Violation::popping(RingKind::Response, e))),
            }
        };
        self.waiter.ring_server(responses.wake_peer)?;
        if self.waiter.server_gone()? {
            return Err(self.gone());
        }
        let armed = Armed {
            dispatch: !dispatch.sleep,
            responses: !responses.sleep,
        };
        self.armed = true;
        let stashed = self.reports.mode == Reporting::Level && self.pending.has_stashed();
        let report_dispatch = armed.dispatch && self.reports.report_dispatch();
        if !responses.sleep || stashed || report_dispatch || self.space_now()? {
            self.waiter.ring_self()?;
        }
        Ok(armed)
    }

    /// Moves every response in the ring into the stash (an abandoned request's is
    /// discarded, an id never in flight is the server's violation), ringing the
    /// server for the room freed; returns whether anything was stashed. A frame
    /// left in the ring would make every arming ring the notice for it while no
    /// call takes it: a waiter for something else (a dispatch stream beside a
    /// request given up on) would be woken for it for ever.
    fn take_responses(&mut self) -> Result<bool, ClientError> {
        let received = self.pending.received();
        let wake = match self.pending.stash_available(&mut self.responses) {
            Ok(wake) => wake,
            Err(v) => return Err(self.fail(v)),
        };
        self.waiter.ring_server(wake)?;
        Ok(self.pending.received() != received)
    }

    /// Counts the reports a caller using [`Reporting::Marked`] must pass on to its
    /// waiters itself: responses moved into the stash, dispatch messages and freed
    /// room reported once. It moves when a call made one.
    #[cfg_attr(not(feature = "tokio"), allow(dead_code))]
    pub(crate) fn notice_mark(&self) -> u64 {
        self.pending
            .received()
            .wrapping_add(self.reports.marked_reports)
    }

    /// Chooses how the fd reports stashed responses and dispatch messages.
    #[cfg_attr(not(feature = "tokio"), allow(dead_code))]
    pub(crate) fn set_reporting(&mut self, mode: Reporting) {
        self.reports.mode = mode;
    }

    /// Whether a non-blocking send that found no room would find it now (the ring
    /// announcing it may have been drained by this arming): re-announces interest in
    /// space, true if there is room already. The interest lasts until the next send
    /// ([`Reporting::Level`]) or this report ([`Reporting::Marked`]).
    fn space_now(&mut self) -> Result<bool, ClientError> {
        let Some(len) = self.want_space else {
            return Ok(false);
        };
        match self.requests.prepare_sleep_for_space(len) {
            Ok(check) => {
                self.waiter.ring_server(check.wake_peer)?;
                if !check.sleep {
                    self.requests.cancel_sleep();
                    if self.reports.room_reported() {
                        self.want_space = None;
                    }
                }
                Ok(!check.sleep)
            }
            Err(e) => Err(self.fail(Violation::pushing(RingKind::Request, e))),
        }
    }
}

impl AsFd for Client {
    /// The notification fd: created at connect, the same for the client's life (an
    /// event loop registers it once). Readable when a response or a dispatch message
    /// waits, when request space freed after a non-blocking send found none, or when
    /// the server is gone; it may also be readable with nothing to do (call the
    /// non-blocking calls until they return nothing: that re-arms it). See SPEC §2.9.
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.waiter.poll_fd()
    }
}

impl AsRawFd for Client {
    fn as_raw_fd(&self) -> RawFd {
        self.as_fd().as_raw_fd()
    }
}
