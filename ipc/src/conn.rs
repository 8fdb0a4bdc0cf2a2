//! Server-side connection state shared between the server thread and any thread that
//! sends responses or dispatch messages: [`ConnHandle`], [`Responder`] and
//! [`DeferredResponse`].

use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use coroipc_ring::MpscProducer;

use crate::error::{RingKind, SendError, Violation};
use crate::os::{Doorbell, PeerCred};
use crate::outbox::{Outbox, OutboxError, OutboxGrant, Sent};
use crate::protocol::{status, ResponseHeader, RESPONSE_HEADER_LEN};
use crate::server::Limits;
use crate::service::HandlerError;

/// What to do when a client's dispatch ring and the queue behind it are full.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum OverflowPolicy {
    /// Refuse the message with [`SendError::TryAgain`]; the client stays connected.
    #[default]
    TryAgain,
    /// Disconnect the slow client.
    Disconnect,
}

/// Why a connection ended (given to the disconnect callback).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DisconnectReason {
    /// The client closed its end (exit, crash, `kill -9`, or dropping the connection).
    ClientClosed,
    /// The client broke the protocol or corrupted its shared memory.
    ProtocolViolation(Violation),
    /// The client did not keep up with dispatch and the policy is `Disconnect`.
    SlowClient,
    /// The service (through a [`ConnHandle`]) asked for the disconnect.
    Requested,
    /// The server is shutting down.
    ServerShutdown,
}

/// Per-connection counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ConnStats {
    /// Requests received.
    pub requests: u64,
    /// Responses sent (into the ring or queued).
    pub responses: u64,
    /// Dispatch messages sent (into the ring or queued).
    pub dispatched: u64,
    /// Flow-control transitions to "on".
    pub flow_control_events: u64,
    /// Dispatch messages waiting in the queue behind the ring.
    pub dispatch_queue_len: usize,
    /// Bytes waiting in that queue.
    pub dispatch_queue_bytes: usize,
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) requests: AtomicU64,
    pub(crate) responses: AtomicU64,
    pub(crate) dispatched: AtomicU64,
    pub(crate) flow_control_events: AtomicU64,
}

/// State shared by the server thread and the handles of one connection.
#[derive(Debug)]
pub(crate) struct ConnShared {
    pub(crate) id: u64,
    pub(crate) service: u16,
    pub(crate) cred: PeerCred,
    pub(crate) response: Outbox,
    pub(crate) dispatch: Outbox,
    /// Wakes the server thread for this connection.
    pub(crate) server_bell: Doorbell,
    /// Wakes the client: a response, request space or a dispatch message (the two
    /// outboxes hold it too).
    pub(crate) client_bell: Arc<Doorbell>,
    /// Set by a handle or the overflow policy; the server thread disconnects.
    pub(crate) closing: AtomicBool,
    /// Set when the connection is gone; every send fails from then on.
    pub(crate) closed: AtomicBool,
    pub(crate) slow: AtomicBool,
    /// The protocol violation that closed the connection, if one did.
    pub(crate) fault: OnceLock<Violation>,
    pub(crate) overflow: OverflowPolicy,
    pub(crate) counters: Counters,
}

impl ConnShared {
    /// The shared state of a new connection: its two outboxes over the given rings,
    /// and its two doorbells.
    pub(crate) fn new(
        id: u64,
        service: u16,
        cred: PeerCred,
        responses: MpscProducer,
        dispatch: MpscProducer,
        limits: &Limits,
        overflow: OverflowPolicy,
    ) -> io::Result<Arc<ConnShared>> {
        let client_bell = Arc::new(Doorbell::new()?);
        let response = Outbox::new(
            responses,
            client_bell.clone(),
            limits.max_queued_response_bytes,
        );
        let dispatch = Outbox::new(
            dispatch,
            client_bell.clone(),
            limits.max_queued_dispatch_bytes,
        );
        Ok(Arc::new(ConnShared {
            id,
            service,
            cred,
            response,
            dispatch,
            server_bell: Doorbell::new()?,
            client_bell,
            closing: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            slow: AtomicBool::new(false),
            fault: OnceLock::new(),
            overflow,
            counters: Counters::default(),
        }))
    }

    fn wake_server(&self) {
        if let Err(e) = self.server_bell.ring() {
            tracing::debug!(error = %e, conn = self.id, "ringing the server doorbell failed");
        }
    }

    fn check_open(&self) -> Result<(), SendError> {
        if self.closed.load(Ordering::Acquire) || self.closing.load(Ordering::Acquire) {
            Err(SendError::Disconnected)
        } else {
            Ok(())
        }
    }

    /// The one overflow decision: what a failed send into `ring` means. Responses are
    /// never refused for space (a client pipelining past the response ring and its
    /// queue is disconnected); dispatch follows the service's [`OverflowPolicy`]. A
    /// corrupt ring closes the connection, recording why.
    fn overflow(&self, ring: RingKind, e: OutboxError) -> SendError {
        let policy = match ring {
            RingKind::Dispatch => self.overflow,
            _ => OverflowPolicy::Disconnect,
        };
        match e {
            OutboxError::TooLarge { len, max } => SendError::TooLarge { len, max },
            OutboxError::QueueFull if policy == OverflowPolicy::TryAgain => SendError::TryAgain,
            OutboxError::QueueFull => {
                self.slow.store(true, Ordering::Release);
                self.close_soon();
                SendError::Disconnected
            }
            OutboxError::Corrupt(cause) => {
                let _ = self.fault.set(Violation::Ring { ring, cause });
                self.close_soon();
                SendError::Disconnected
            }
        }
    }

    /// Asks the server thread to disconnect this client.
    pub(crate) fn close_soon(&self) {
        self.closing.store(true, Ordering::Release);
        self.wake_server();
    }

    /// Why the connection is closing, once the server thread looks.
    pub(crate) fn closing_reason(&self) -> DisconnectReason {
        if self.slow.load(Ordering::Acquire) {
            DisconnectReason::SlowClient
        } else if let Some(v) = self.fault.get() {
            DisconnectReason::ProtocolViolation(*v)
        } else {
            DisconnectReason::Requested
        }
    }

    fn after_send(&self, sent: Sent) {
        match sent {
            // The server thread must flush later, and tell the service of flow changes.
            Sent::Queued | Sent::Ring(Some(_)) => self.wake_server(),
            Sent::Ring(None) => {}
        }
    }

    pub(crate) fn send_response(
        &self,
        id: u64,
        status: i32,
        parts: &[&[u8]],
    ) -> Result<(), SendError> {
        self.check_open()?;
        let header = ResponseHeader { id, status }.encode();
        let mut all: Vec<&[u8]> = Vec::with_capacity(parts.len() + 1);
        all.push(&header);
        all.extend_from_slice(parts);
        // Responses are never refused for space: a client that pipelines past the
        // response ring and the queue is disconnected.
        let sent = self
            .response
            .send(&all)
            .map_err(|e| self.overflow(RingKind::Response, e))?;
        self.counters.responses.fetch_add(1, Ordering::Relaxed);
        self.after_send(sent);
        Ok(())
    }

    pub(crate) fn send_dispatch(&self, parts: &[&[u8]]) -> Result<(), SendError> {
        self.check_open()?;
        let sent = self
            .dispatch
            .send(parts)
            .map_err(|e| self.overflow(RingKind::Dispatch, e))?;
        self.counters.dispatched.fetch_add(1, Ordering::Relaxed);
        self.after_send(sent);
        Ok(())
    }
}

/// A handle on one server-side connection, usable from any thread: send dispatch
/// messages, read flow control and statistics, ask for a disconnect. Cheap to clone.
#[derive(Clone, Debug)]
pub struct ConnHandle {
    pub(crate) shared: Arc<ConnShared>,
}

impl ConnHandle {
    /// The server's id for this connection.
    pub fn id(&self) -> u64 {
        self.shared.id
    }

    /// The service the client connected to.
    pub fn service(&self) -> u16 {
        self.shared.service
    }

    /// The client's credentials (from `SO_PEERCRED`).
    pub fn credentials(&self) -> PeerCred {
        self.shared.cred
    }

    /// True until the connection is closed or a disconnect was requested.
    pub fn is_connected(&self) -> bool {
        self.shared.check_open().is_ok()
    }

    /// Sends a dispatch (asynchronous, server → client) message.
    pub fn dispatch_send(&self, msg: &[u8]) -> Result<(), SendError> {
        self.shared.send_dispatch(&[msg])
    }

    /// Sends the concatenation of `parts` as one dispatch message.
    pub fn dispatch_send_vectored(&self, parts: &[&[u8]]) -> Result<(), SendError> {
        self.shared.send_dispatch(parts)
    }

    /// Reserves `len` bytes in the dispatch ring to fill in place. Fails with
    /// [`SendError::TryAgain`] when the ring has no room now or messages are queued
    /// (fall back to [`dispatch_send`](ConnHandle::dispatch_send) then).
    pub fn dispatch_reserve(&self, len: usize) -> Result<DispatchGrant<'_>, SendError> {
        self.shared.check_open()?;
        match self.shared.dispatch.reserve(len) {
            Ok(Some(grant)) => Ok(DispatchGrant {
                grant,
                shared: &self.shared,
            }),
            Ok(None) => Err(SendError::TryAgain),
            Err(e) => Err(self.shared.overflow(RingKind::Dispatch, e)),
        }
    }

    /// The largest dispatch message this connection carries.
    pub fn max_dispatch_len(&self) -> usize {
        self.shared.dispatch.max_message_len()
    }

    /// Whether the client's dispatch ring is in flow control.
    pub fn flow_control(&self) -> bool {
        self.shared.dispatch.ring.flow_control()
    }

    /// Current counters.
    pub fn stats(&self) -> ConnStats {
        let c = &self.shared.counters;
        let (len, bytes) = self.shared.dispatch.backlog();
        ConnStats {
            requests: c.requests.load(Ordering::Relaxed),
            responses: c.responses.load(Ordering::Relaxed),
            dispatched: c.dispatched.load(Ordering::Relaxed),
            flow_control_events: c.flow_control_events.load(Ordering::Relaxed),
            dispatch_queue_len: len,
            dispatch_queue_bytes: bytes,
        }
    }

    /// Asks the server thread to disconnect this client.
    pub fn disconnect(&self) {
        self.shared.close_soon();
    }
}

/// Zero-copy space in a client's dispatch ring.
pub struct DispatchGrant<'a> {
    grant: OutboxGrant<'a>,
    shared: &'a ConnShared,
}

impl DispatchGrant<'_> {
    /// Message length.
    pub fn len(&self) -> usize {
        self.grant.len()
    }

    /// True for an empty message.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Writes `src` at byte `at` of the message (atomic word stores: sound whatever
    /// the client does to the memory meanwhile).
    ///
    /// # Panics
    /// If `at + src.len()` exceeds the reserved length (a caller bug).
    pub fn write_at(&mut self, at: usize, src: &[u8]) {
        self.grant.write_at(at, src);
    }

    /// Sets every byte of the message to `byte`.
    pub fn fill(&mut self, byte: u8) {
        self.grant.fill(byte);
    }

    /// The message bytes as a slice of shared memory.
    ///
    /// # Safety
    ///
    /// The client must be trusted not to touch these bytes while the slice lives (a
    /// well-behaved client never reads or writes unpublished space); a hostile client
    /// doing so makes this a data race.
    pub unsafe fn as_mut_slice_trusted(&mut self) -> &mut [u8] {
        // SAFETY: forwarded contract.
        unsafe { self.grant.as_mut_slice_trusted() }
    }

    /// Shrinks the message.
    pub fn truncate(&mut self, len: usize) {
        self.grant.truncate(len);
    }

    /// Publishes the message.
    pub fn commit(self) {
        let flow = self.grant.commit();
        self.shared
            .counters
            .dispatched
            .fetch_add(1, Ordering::Relaxed);
        self.shared.after_send(Sent::Ring(flow));
    }
}

/// A request being handled on the server thread.
#[derive(Debug)]
pub struct Request<'a> {
    /// The client's id for this request (echoed in the response).
    pub id: u64,
    /// Command id.
    pub command: u16,
    /// The payload, in shared memory. A hostile client can change these bytes while
    /// the handler runs: parse them once, or copy first if that matters.
    pub payload: &'a [u8],
}

/// Answers one request: exactly once, now or later ([`Responder::defer`]).
///
/// If the handler returns without answering or deferring, the library answers: an
/// empty success response, `UNKNOWN_COMMAND` if the handler said so, or
/// `RESPONSE_TOO_LARGE` if the handler's last attempt failed with
/// [`SendError::TooLarge`]. A failed attempt does not count as the answer: the handler
/// may still send another (an error reply, say).
pub struct Responder<'a> {
    pub(crate) shared: &'a Arc<ConnShared>,
    pub(crate) id: u64,
    /// Set once a response is in the ring or its queue, or the answer was deferred;
    /// from then on nothing more is sent for this request. A failed attempt leaves it
    /// false.
    pub(crate) answered: bool,
    /// Why the last attempt to answer failed, if one did.
    pub(crate) failed: Option<SendError>,
}

/// The status the library answers with when the service did not: `RESPONSE_TOO_LARGE`
/// after a response that did not fit, else `otherwise`.
fn fallback_status(failed: Option<&SendError>, otherwise: i32) -> i32 {
    match failed {
        Some(SendError::TooLarge { .. }) => status::RESPONSE_TOO_LARGE,
        _ => otherwise,
    }
}

impl<'a> Responder<'a> {
    /// The connection this request came on.
    pub fn connection(&self) -> ConnHandle {
        ConnHandle {
            shared: self.shared.clone(),
        }
    }

    /// The request id being answered.
    pub fn request_id(&self) -> u64 {
        self.id
    }

    /// The largest response payload the response ring carries.
    pub fn max_response_len(&self) -> usize {
        self.shared
            .response
            .max_message_len()
            .saturating_sub(RESPONSE_HEADER_LEN)
    }

    /// A request for the server thread's loop.
    pub(crate) fn new(shared: &'a Arc<ConnShared>, id: u64) -> Self {
        Responder {
            shared,
            id,
            answered: false,
            failed: None,
        }
    }

    fn check_unanswered(&self) -> Result<(), SendError> {
        if self.answered {
            Err(SendError::AlreadyResponded)
        } else {
            Ok(())
        }
    }

    /// Records the outcome of an attempt to answer.
    fn record(&mut self, outcome: Result<(), SendError>) -> Result<(), SendError> {
        match &outcome {
            Ok(()) => self.answered = true,
            Err(e) => self.failed = Some(*e),
        }
        outcome
    }

    /// After the handler: answers the request if nobody did (see the type's doc).
    pub(crate) fn finish(self, handled: Result<(), HandlerError>) {
        if self.answered {
            return;
        }
        let code = match handled {
            Err(HandlerError::UnknownCommand) => status::UNKNOWN_COMMAND,
            Ok(()) => status::OK,
        };
        let code = fallback_status(self.failed.as_ref(), code);
        // A failure here is a closed or misbehaving connection, which the server
        // thread notices and disconnects.
        let _ = self.shared.send_response(self.id, code, &[]);
    }

    /// Sends the response: `status` 0 for success, a positive service code otherwise.
    pub fn respond(&mut self, status: i32, payload: &[u8]) -> Result<(), SendError> {
        self.respond_vectored(status, &[payload])
    }

    /// Sends the concatenation of `parts` as the response.
    ///
    /// # Errors
    ///
    /// [`SendError::AlreadyResponded`] after an answer; [`SendError::TooLarge`] when it
    /// does not fit the response ring ([`max_response_len`](Responder::max_response_len));
    /// [`SendError::Disconnected`]. After a failure the request is still unanswered.
    pub fn respond_vectored(&mut self, status: i32, parts: &[&[u8]]) -> Result<(), SendError> {
        self.check_unanswered()?;
        let sent = self.shared.send_response(self.id, status, parts);
        self.record(sent)
    }

    /// Reserves `len` bytes of response payload in the response ring, to fill in place.
    /// Fails with [`SendError::TryAgain`] when the ring has no room now (use
    /// [`respond`](Responder::respond) then).
    /// The request counts as answered when the grant is committed; a grant dropped
    /// uncommitted leaves it unanswered.
    pub fn reserve(&mut self, status: i32, len: usize) -> Result<ResponseGrant<'_>, SendError> {
        self.check_unanswered()?;
        self.shared.check_open()?;
        let total = len.saturating_add(RESPONSE_HEADER_LEN);
        let reserved = self.shared.response.reserve(total);
        let Responder {
            shared,
            id,
            answered,
            failed,
        } = self;
        match reserved {
            Ok(Some(mut grant)) => {
                grant.write_at(0, &ResponseHeader { id: *id, status }.encode());
                Ok(ResponseGrant {
                    grant,
                    shared,
                    answered,
                })
            }
            Ok(None) => Err(SendError::TryAgain),
            Err(e) => {
                let e = shared.overflow(RingKind::Response, e);
                *failed = Some(e);
                Err(e)
            }
        }
    }

    /// Answers later, from any thread, through the returned value.
    pub fn defer(&mut self) -> Result<DeferredResponse, SendError> {
        self.check_unanswered()?;
        self.answered = true;
        Ok(DeferredResponse {
            shared: self.shared.clone(),
            id: self.id,
            answered: false,
            failed: None,
        })
    }
}

/// A zero-copy response being filled in the response ring.
pub struct ResponseGrant<'a> {
    grant: OutboxGrant<'a>,
    shared: &'a ConnShared,
    /// The responder's flag, set on commit.
    answered: &'a mut bool,
}

impl ResponseGrant<'_> {
    /// Payload length.
    pub fn len(&self) -> usize {
        self.grant.len() - RESPONSE_HEADER_LEN
    }

    /// True for an empty payload.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Writes `src` at byte `at` of the payload (as [`DispatchGrant::write_at`]).
    ///
    /// # Panics
    /// If `at + src.len()` exceeds the reserved length (a caller bug).
    pub fn write_at(&mut self, at: usize, src: &[u8]) {
        self.grant.write_at(RESPONSE_HEADER_LEN + at, src);
    }

    /// Sets every payload byte to `byte`.
    pub fn fill(&mut self, byte: u8) {
        let len = self.len();
        // One pass of word stores over the payload, in chunks.
        let chunk = [byte; 256];
        let mut at = 0;
        while at < len {
            let n = (len - at).min(chunk.len());
            self.write_at(at, &chunk[..n]);
            at += n;
        }
    }

    /// The payload as a slice of shared memory.
    ///
    /// # Safety
    ///
    /// As [`DispatchGrant::as_mut_slice_trusted`]: the client must be trusted not to
    /// touch these bytes while the slice lives.
    pub unsafe fn as_mut_slice_trusted(&mut self) -> &mut [u8] {
        // SAFETY: forwarded contract.
        let all = unsafe { self.grant.as_mut_slice_trusted() };
        &mut all[RESPONSE_HEADER_LEN..]
    }

    /// Shrinks the payload.
    pub fn truncate(&mut self, len: usize) {
        self.grant.truncate(len.saturating_add(RESPONSE_HEADER_LEN));
    }

    /// Publishes the response.
    pub fn commit(self) {
        let flow = self.grant.commit();
        *self.answered = true;
        self.shared
            .counters
            .responses
            .fetch_add(1, Ordering::Relaxed);
        self.shared.after_send(Sent::Ring(flow));
    }
}

/// A response promised by [`Responder::defer`]; send it from any thread. Dropping it
/// unanswered, or a [`respond`](DeferredResponse::respond) that fails, sends an error
/// (`ABANDONED`, or `RESPONSE_TOO_LARGE` when the response did not fit) so the client
/// never waits forever.
#[derive(Debug)]
pub struct DeferredResponse {
    shared: Arc<ConnShared>,
    id: u64,
    /// Set once the response is in the ring or its queue.
    answered: bool,
    /// Why the attempt to answer failed, if it did.
    failed: Option<SendError>,
}

impl DeferredResponse {
    /// The request id being answered.
    pub fn request_id(&self) -> u64 {
        self.id
    }

    /// The largest response payload the response ring carries.
    pub fn max_response_len(&self) -> usize {
        self.shared
            .response
            .max_message_len()
            .saturating_sub(RESPONSE_HEADER_LEN)
    }

    /// Sends the response.
    ///
    /// # Errors
    ///
    /// As [`Responder::respond_vectored`]; on failure the client gets an error
    /// response instead (see the type's doc).
    pub fn respond(self, status: i32, payload: &[u8]) -> Result<(), SendError> {
        self.respond_vectored(status, &[payload])
    }

    /// Sends the concatenation of `parts` as the response.
    ///
    /// # Errors
    ///
    /// As [`respond`](DeferredResponse::respond).
    pub fn respond_vectored(mut self, status: i32, parts: &[&[u8]]) -> Result<(), SendError> {
        let sent = self.shared.send_response(self.id, status, parts);
        match &sent {
            Ok(()) => self.answered = true,
            Err(e) => self.failed = Some(*e),
        }
        sent
    }
}

impl Drop for DeferredResponse {
    fn drop(&mut self) {
        if !self.answered {
            let code = fallback_status(self.failed.as_ref(), status::ABANDONED);
            let _ = self.shared.send_response(self.id, code, &[]);
        }
    }
}
