//! A zero-copy request: reserved in the request ring, written in place, committed.
//!
//! [`Client::reserve_request`] waits for room like [`Client::send_request`] and hands
//! out the space; the caller writes the payload where it will be read (no buffer and
//! no copy in between) and [`RequestGrant::commit`] publishes it and returns its id.
//! Threat answered: the space is in memory the server maps too, so, as for the
//! response guards, writes go through the ring's sound copies and a slice is only
//! given by the `unsafe` [`BytesMut::as_mut_slice_trusted`] it derefs to.

use coroipc_ring::{BytesMut, PushError, WriteGrant};

use super::pending::Pending;
use super::waiter::Waiter;
use super::{Client, WaitFor, WaitState};
use crate::deadline::Deadline;
use crate::error::{ClientError, RingKind, Violation};
use crate::protocol::{RequestHeader, REQUEST_HEADER_LEN};
use crate::stats::ClientStats;

/// A request being written in place in the request ring, through the [`BytesMut`] it
/// derefs to (the request header is out of its view); nothing is sent until
/// [`commit`](RequestGrant::commit). Dropping it sends nothing.
pub struct RequestGrant<'c> {
    /// The frame: the request header (written, with the id the commit will record,
    /// and skipped), then the payload, which is the grant's view.
    grant: WriteGrant<'c>,
    command: u16,
    pending: &'c mut Pending,
    stats: &'c mut ClientStats,
    waiter: &'c Waiter,
    want_space: &'c mut Option<usize>,
}

impl std::fmt::Debug for RequestGrant<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestGrant")
            .field("command", &self.command)
            .field("len", &self.len())
            .finish()
    }
}

impl<'c> std::ops::Deref for RequestGrant<'c> {
    type Target = BytesMut<'c>;

    fn deref(&self) -> &BytesMut<'c> {
        &self.grant
    }
}

impl std::ops::DerefMut for RequestGrant<'_> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.grant
    }
}

impl RequestGrant<'_> {
    /// Shrinks the payload to `len` bytes (no effect if larger).
    pub fn truncate(&mut self, len: usize) {
        self.grant.truncate(len);
    }

    /// Publishes the request; returns its id (for
    /// [`wait_response`](Client::wait_response)).
    ///
    /// # Errors
    ///
    /// `Disconnected` if the server's doorbell cannot be rung (the request is in the
    /// ring, and its id in flight).
    pub fn commit(self) -> Result<u64, ClientError> {
        let RequestGrant {
            grant,
            command,
            pending,
            stats,
            waiter,
            want_space,
        } = self;
        // The header went in at the reservation, with this id: nothing else could
        // be sent meanwhile (the grant borrows the client).
        let id = pending.next_id();
        let len = grant.len();
        let published = grant.commit();
        *want_space = None;
        pending.sent(command);
        stats.requests += 1;
        stats.request_bytes += len as u64;
        waiter.ring_server(published.wake)?;
        Ok(id)
    }
}

impl Client {
    /// Reserves a request of `len` payload bytes in the request ring, waiting for room
    /// as [`send_request`](Client::send_request) does; write it in place and
    /// [`commit`](RequestGrant::commit) it (zero copy: the server reads it where it is
    /// written).
    ///
    /// # Errors
    ///
    /// As [`send_request`](Client::send_request).
    pub fn reserve_request(
        &mut self,
        command: u16,
        len: usize,
    ) -> Result<RequestGrant<'_>, ClientError> {
        self.alive()?;
        let frame = len.saturating_add(REQUEST_HEADER_LEN);
        let deadline = Deadline::after(self.options.request_timeout);
        let mut spinning = WaitState::default();
        let mut waited = false;
        // Look for room without keeping the grant (a grant returned from inside the
        // loop would hold `self` borrowed for the error paths too).
        while !self.has_request_room(frame)? {
            if !waited {
                waited = true;
                self.stats.send_waits += 1;
            }
            self.wait(WaitFor::RequestSpace(frame), &mut spinning, deadline)?;
        }
        let Client {
            requests,
            pending,
            stats,
            waiter,
            want_space,
            ..
        } = self;
        // Only this client produces into the ring and the server only frees space, so
        // the room just found is still there: no error is possible here.
        let grant = requests
            .try_reserve(frame)
            .map_err(|e| ClientError::Corrupt(Violation::pushing(RingKind::Request, e)))?;
        let mut grant = grant;
        let id = pending.next_id();
        grant.write_at(0, &RequestHeader { id, command }.encode());
        grant.skip_prefix(REQUEST_HEADER_LEN);
        Ok(RequestGrant {
            grant,
            command,
            pending,
            stats,
            waiter,
            want_space,
        })
    }

    /// Whether a request frame of `frame` bytes fits the request ring now.
    fn has_request_room(&mut self, frame: usize) -> Result<bool, ClientError> {
        match self.requests.try_reserve(frame) {
            // Dropped unpublished: nothing is sent.
            Ok(_) => Ok(true),
            Err(PushError::Full) => Ok(false),
            Err(PushError::TooLarge { len, max }) => Err(ClientError::TooLarge {
                len: len - REQUEST_HEADER_LEN,
                max: max.saturating_sub(REQUEST_HEADER_LEN),
            }),
            Err(e) => Err(self.fail(Violation::pushing(RingKind::Request, e))),
        }
    }
}
