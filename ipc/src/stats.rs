//! Statistics at libqb's level, read without blocking the server thread: relaxed
//! atomic counters written where the event happens and copied out on demand.
//!
//! * per connection ([`ConnStats`], from [`Connection::stats`](crate::Connection::stats)):
//!   requests, responses and dispatch messages with their bytes, sends that had to queue
//!   behind a full ring (libqb's "send retries"), dispatch messages refused with
//!   `TryAgain`, flow-control entries, and the queues;
//! * per server ([`ServerStats`], from [`Server::stats`](crate::Server::stats) or a
//!   [`ServerStatsHandle`] on any thread): connections active, handshaking, accepted
//!   and closed in all, refusals by reason, handshake timeouts;
//! * per client ([`ClientStats`], from [`Client::stats`](crate::Client::stats)).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::protocol::status;

/// One connection's counters, as last read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConnStats {
    /// Requests received.
    pub requests: u64,
    /// Request payload bytes received.
    pub request_bytes: u64,
    /// Responses sent (into the ring or queued), the library's own answers included.
    pub responses: u64,
    /// Response payload bytes sent.
    pub response_bytes: u64,
    /// Dispatch messages sent (into the ring or queued).
    pub dispatched: u64,
    /// Dispatch payload bytes sent.
    pub dispatch_bytes: u64,
    /// Sends that were queued behind the ring, because it was full or messages were
    /// already queued ("send retries").
    pub queued_sends: u64,
    /// `dispatch_send` calls refused with `SendError::TryAgain` (ring and queue full;
    /// a `dispatch_reserve` that finds no room is not counted: its caller falls back
    /// to `dispatch_send`).
    pub dispatch_refused: u64,
    /// Flow-control transitions to "on".
    pub flow_control_events: u64,
    /// Dispatch messages waiting in the queue behind the ring.
    pub dispatch_queue_len: usize,
    /// Bytes waiting in that queue.
    pub dispatch_queue_bytes: usize,
    /// Responses waiting in the queue behind the response ring.
    pub response_queue_len: usize,
}

/// Where a sent message went (an outbox's answer, which the counters keep).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Sent {
    /// Into the ring.
    Ring,
    /// Into the queue behind the ring.
    Queued,
}

/// The live counters of one connection.
#[derive(Debug, Default)]
pub(crate) struct ConnCounters {
    /// Written by the server thread only (requests are handled there): see [`bump`].
    requests: AtomicU64,
    /// As `requests`.
    request_bytes: AtomicU64,
    responses: AtomicU64,
    response_bytes: AtomicU64,
    dispatched: AtomicU64,
    dispatch_bytes: AtomicU64,
    queued_sends: AtomicU64,
    dispatch_refused: AtomicU64,
    /// Written by the server thread only (it alone reports flow control).
    flow_control_events: AtomicU64,
}

fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

/// [`add`] for a counter with one writer: a load and a store, no read-modify-write
/// (a locked instruction on the request path costs more than the counting; two of
/// them sat between a request's arrival and its handler). Readers see each value whole.
fn bump(counter: &AtomicU64, n: u64) {
    counter.store(
        counter.load(Ordering::Relaxed).wrapping_add(n),
        Ordering::Relaxed,
    );
}

impl ConnCounters {
    /// A request handled (server thread only: the counters have that one writer).
    pub(crate) fn request(&self, bytes: usize) {
        bump(&self.requests, 1);
        bump(&self.request_bytes, bytes as u64);
    }

    pub(crate) fn response(&self, bytes: usize, sent: Sent) {
        add(&self.responses, 1);
        add(&self.response_bytes, bytes as u64);
        if sent == Sent::Queued {
            add(&self.queued_sends, 1);
        }
    }

    pub(crate) fn dispatch(&self, bytes: usize, sent: Sent) {
        add(&self.dispatched, 1);
        add(&self.dispatch_bytes, bytes as u64);
        if sent == Sent::Queued {
            add(&self.queued_sends, 1);
        }
    }

    /// `n` messages of `bytes` in all, into the ring.
    pub(crate) fn dispatch_many(&self, n: usize, bytes: usize) {
        if n > 0 {
            add(&self.dispatched, n as u64);
            add(&self.dispatch_bytes, bytes as u64);
        }
    }

    pub(crate) fn dispatch_refused(&self) {
        add(&self.dispatch_refused, 1);
    }

    /// Flow control turned on (server thread only, as [`Self::request`]).
    pub(crate) fn flow_on(&self) {
        bump(&self.flow_control_events, 1);
    }

    /// The counters, with the queue figures the caller read.
    pub(crate) fn read(&self, dispatch_queue: (usize, usize), response_queue: usize) -> ConnStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        ConnStats {
            requests: get(&self.requests),
            request_bytes: get(&self.request_bytes),
            responses: get(&self.responses),
            response_bytes: get(&self.response_bytes),
            dispatched: get(&self.dispatched),
            dispatch_bytes: get(&self.dispatch_bytes),
            queued_sends: get(&self.queued_sends),
            dispatch_refused: get(&self.dispatch_refused),
            flow_control_events: get(&self.flow_control_events),
            dispatch_queue_len: dispatch_queue.0,
            dispatch_queue_bytes: dispatch_queue.1,
            response_queue_len: response_queue,
        }
    }
}

/// Connection attempts refused, by reason.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Refusals {
    /// `max_connections` reached.
    pub connection_limit: u64,
    /// Out of file descriptors.
    pub out_of_fds: u64,
    /// Out of memory for the region or doorbells.
    pub no_resources: u64,
    /// The security callback said no.
    pub access_denied: u64,
    /// No such service.
    pub no_such_service: u64,
    /// `on_connect` refused.
    pub by_service: u64,
    /// A malformed or wrong-version handshake.
    pub bad_handshake: u64,
}

/// Server totals, as last read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServerStats {
    /// Connections now connected.
    pub active: u64,
    /// Handshakes now in progress.
    pub handshaking: u64,
    /// Connections accepted since start (handshake completed, `on_connect` accepted).
    pub connected: u64,
    /// Connections closed since start (`on_disconnect` ran).
    pub closed: u64,
    /// Handshakes dropped at their timeout.
    pub handshake_timeouts: u64,
    /// Attempts refused, by reason.
    pub refused: Refusals,
}

/// The live server totals (shared with [`ServerStatsHandle`]s).
#[derive(Debug, Default)]
pub(crate) struct ServerCounters {
    active: AtomicU64,
    handshaking: AtomicU64,
    connected: AtomicU64,
    closed: AtomicU64,
    handshake_timeouts: AtomicU64,
    refused: [AtomicU64; 7],
}

/// Index into `ServerCounters::refused` for a refusal status.
fn refusal_slot(code: i32) -> usize {
    match code {
        status::CONNECTION_LIMIT => 0,
        status::OUT_OF_FDS => 1,
        status::NO_RESOURCES => 2,
        status::ACCESS_DENIED => 3,
        status::NO_SUCH_SERVICE => 4,
        status::BAD_REQUEST | status::BAD_VERSION => 6,
        _ => 5,
    }
}

impl ServerCounters {
    pub(crate) fn refused(&self, code: i32) {
        add(&self.refused[refusal_slot(code)], 1);
    }

    pub(crate) fn handshake_timeout(&self) {
        add(&self.handshake_timeouts, 1);
    }

    pub(crate) fn connected(&self) {
        add(&self.connected, 1);
    }

    pub(crate) fn closed(&self) {
        add(&self.closed, 1);
    }

    /// Records the current sizes (the server thread owns the tables).
    pub(crate) fn set_sizes(&self, active: usize, handshaking: usize) {
        self.active.store(active as u64, Ordering::Relaxed);
        self.handshaking
            .store(handshaking as u64, Ordering::Relaxed);
    }

    pub(crate) fn read(&self) -> ServerStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let r = &self.refused;
        ServerStats {
            active: get(&self.active),
            handshaking: get(&self.handshaking),
            connected: get(&self.connected),
            closed: get(&self.closed),
            handshake_timeouts: get(&self.handshake_timeouts),
            refused: Refusals {
                connection_limit: get(&r[0]),
                out_of_fds: get(&r[1]),
                no_resources: get(&r[2]),
                access_denied: get(&r[3]),
                no_such_service: get(&r[4]),
                by_service: get(&r[5]),
                bad_handshake: get(&r[6]),
            },
        }
    }
}

/// Reads a server's totals from any thread, without blocking its loop. Cheap to clone.
#[derive(Clone, Debug)]
pub struct ServerStatsHandle {
    pub(crate) counters: Arc<ServerCounters>,
}

impl ServerStatsHandle {
    /// The totals now.
    pub fn get(&self) -> ServerStats {
        self.counters.read()
    }
}

/// A client's counters, as last read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClientStats {
    /// Requests sent.
    pub requests: u64,
    /// Request payload bytes sent.
    pub request_bytes: u64,
    /// Responses received (errors included).
    pub responses: u64,
    /// Dispatch messages received.
    pub dispatch_received: u64,
    /// Waits that slept on the doorbell (after spinning, in spin mode).
    pub sleeps: u64,
    /// Sends that found the request ring full and waited for space.
    pub send_waits: u64,
}
