//! Answering a request: the [`Request`] a handler gets, the [`Responder`] that answers
//! it exactly once (now, zero-copy with a [`ResponseGrant`], or later from any thread
//! through a [`DeferredResponse`]), and the one rule for the library's own answer when
//! the service gives none (SPEC §2.7).

use std::sync::Arc;

use coroipc_ring::{Bytes, BytesMut};

use crate::connection::{ConnShared, Connection};
use crate::error::HandlerError;
use crate::error::{RingKind, SendError};
use crate::outbox::OutboxGrant;
use crate::protocol::{status, ResponseHeader, RESPONSE_HEADER_LEN};
use crate::stats::Sent;

/// A request being handled on the server thread.
#[derive(Debug)]
pub struct Request<'a> {
    /// The client's id for this request (echoed in the response).
    pub id: u64,
    /// Command id.
    pub command: u16,
    /// The payload: the server's private copy, taken out of the request ring before
    /// the handler runs, so the client cannot change it under the handler. Empty
    /// when the service took the request in place ([`Service::in_place`](crate::Service::in_place)).
    pub payload: &'a [u8],
    /// The payload in the request ring, when the service took the request in place;
    /// `None` otherwise.
    pub in_ring: Option<RequestPayload<'a>>,
}

impl Request<'_> {
    /// The payload length, wherever the payload is.
    pub fn len(&self) -> usize {
        self.in_ring
            .as_ref()
            .map_or(self.payload.len(), |p| p.len())
    }

    /// True for an empty payload.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A request payload in place, in the request ring (no copy made), for a handler of a
/// service that asked for it ([`Service::in_place`](crate::Service::in_place)); read it
/// through the [`Bytes`] it derefs to.
///
/// The client can rewrite these bytes at any time (it is untrusted), so read them with
/// copies that cannot tear the server's memory ([`read_at`](Bytes::read_at),
/// [`read_into`](Bytes::read_into), [`to_vec`](Bytes::to_vec)), or move them into a
/// response without a copy in between ([`Responder::respond_from`],
/// [`copy_from`](coroipc_ring::BytesMut::copy_from) on a [`ResponseGrant`]). What a
/// hostile client can do is change the bytes you read, so parse a copy. (The
/// `unsafe` [`as_slice_trusted`](Bytes::as_slice_trusted) is for a client you trust.)
#[derive(Clone, Copy)]
pub struct RequestPayload<'a> {
    /// The payload of the request's frame (its header skipped).
    bytes: &'a Bytes<'a>,
}

impl std::fmt::Debug for RequestPayload<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestPayload")
            .field("len", &self.len())
            .finish()
    }
}

impl<'a> RequestPayload<'a> {
    /// The payload of a request frame whose header was skipped.
    pub(crate) fn new(bytes: &'a Bytes<'a>) -> Self {
        RequestPayload { bytes }
    }
}

impl<'a> std::ops::Deref for RequestPayload<'a> {
    type Target = Bytes<'a>;

    fn deref(&self) -> &Bytes<'a> {
        self.bytes
    }
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
    pub fn connection(&self) -> Connection {
        Connection {
            shared: self.shared.clone(),
        }
    }

    /// The request id being answered.
    pub fn request_id(&self) -> u64 {
        self.id
    }

    /// The largest response payload the response ring carries.
    pub fn max_response_len(&self) -> usize {
        self.shared.max_response_len()
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
            Err(HandlerError::InvalidRequest) => status::BAD_REQUEST,
            Ok(()) => status::OK,
        };
        let code = fallback_status(self.failed.as_ref(), code);
        // A failure here is a closed or misbehaving connection, which the server
        // thread notices and disconnects.
        let _ = self.shared.send_response(self.id, code, &[]);
    }

    /// Sends the response: `status` 0 for success, a positive service code otherwise.
    ///
    /// # Errors
    ///
    /// As [`respond_vectored`](Responder::respond_vectored).
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
    ///
    /// # Errors
    ///
    /// [`SendError::AlreadyResponded`]; [`SendError::TryAgain`] when the ring has no
    /// room now; [`SendError::TooLarge`]; [`SendError::Disconnected`].
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
                grant.skip_prefix(RESPONSE_HEADER_LEN);
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

    /// Sends `payload` (a request taken in place) back as the response, copied from
    /// the request ring into the response ring with no copy in between; when the
    /// response ring has no room now, through a copy into the response queue (as
    /// [`respond`](Responder::respond)).
    ///
    /// # Errors
    ///
    /// As [`respond_vectored`](Responder::respond_vectored).
    pub fn respond_from(
        &mut self,
        status: i32,
        payload: &RequestPayload<'_>,
    ) -> Result<(), SendError> {
        match self.reserve(status, payload.len()) {
            Ok(mut grant) => {
                grant.copy_from(0, payload, 0, payload.len());
                grant.commit();
                return Ok(());
            }
            Err(SendError::TryAgain) => {}
            Err(e) => return Err(e),
        }
        self.respond(status, &payload.to_vec())
    }

    /// Answers later, from any thread, through the returned value.
    ///
    /// # Errors
    ///
    /// [`SendError::AlreadyResponded`] after an answer or an earlier `defer`.
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

/// A zero-copy response being filled in the response ring: write its payload through
/// the [`BytesMut`] it derefs to (the response header is out of its view), then commit.
///
/// While it lives, other responses of this connection wait for it (it keeps the
/// ring's order): do not answer or drop another request's `DeferredResponse` of the
/// same connection from the thread that holds it.
pub struct ResponseGrant<'a> {
    grant: OutboxGrant<'a>,
    shared: &'a ConnShared,
    /// The responder's flag, set on commit.
    answered: &'a mut bool,
}

impl<'a> std::ops::Deref for ResponseGrant<'a> {
    type Target = BytesMut<'a>;

    fn deref(&self) -> &BytesMut<'a> {
        &self.grant
    }
}

impl std::ops::DerefMut for ResponseGrant<'_> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.grant
    }
}

impl ResponseGrant<'_> {
    /// Shrinks the payload to `len` bytes (no effect if larger).
    pub fn truncate(&mut self, len: usize) {
        self.grant.truncate(len);
    }

    /// Publishes the response.
    pub fn commit(self) {
        let len = self.len();
        self.grant.commit();
        *self.answered = true;
        self.shared.counters.response(len, Sent::Ring);
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
        self.shared.max_response_len()
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
