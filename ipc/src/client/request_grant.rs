//! A zero-copy request: reserved in the request ring, written in place, committed.
//!
//! [`Client::reserve_request`] waits for room like [`Client::send_request`] and hands
//! out the space; the caller writes the payload where it will be read (no buffer and
//! no copy in between) and [`RequestGrant::commit`] publishes it and returns its id.
//! Threat answered: the space is in memory the server maps too, so, as for the
//! response guards, writes go through the ring's sound copies and a slice is only
//! given by the `unsafe` [`RequestGrant::as_mut_slice_trusted`].

use coroipc_ring::{PushError, WriteGrant};

use super::pending::Pending;
use super::waiter::Waiter;
use super::{Client, WaitFor, WaitState};
use crate::deadline::Deadline;
use crate::error::{ClientError, RingKind, Violation};
use crate::protocol::{RequestHeader, REQUEST_HEADER_LEN};
use crate::stats::ClientStats;

/// A request being written in place in the request ring; nothing is sent until
/// [`commit`](RequestGrant::commit). Dropping it sends nothing.
pub struct RequestGrant<'c> {
    /// The frame: the request header, then the payload.
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

impl RequestGrant<'_> {
    /// Payload length.
    pub fn len(&self) -> usize {
        self.grant.len() - REQUEST_HEADER_LEN
    }

    /// True for an empty payload.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Writes `src` at byte `at` of the payload.
    ///
    /// # Panics
    /// If `at + src.len()` exceeds the reserved length (a caller bug).
    pub fn write_at(&mut self, at: usize, src: &[u8]) {
        self.grant
            .write_at(REQUEST_HEADER_LEN.saturating_add(at), src);
    }

    /// Sets every payload byte to `byte`.
    pub fn fill(&mut self, byte: u8) {
        // The whole frame: `commit` writes the header over its first bytes.
        self.grant.fill(byte);
    }

    /// The payload as a slice of shared memory.
    ///
    /// # Safety
    ///
    /// The server must be trusted not to touch these bytes while the slice lives (it
    /// does not read them before the commit; a hostile one could write them, a data
    /// race).
    pub unsafe fn as_mut_slice_trusted(&mut self) -> &mut [u8] {
        // SAFETY: forwarded contract.
        let all = unsafe { self.grant.as_mut_slice_trusted() };
        &mut all[REQUEST_HEADER_LEN..]
    }

    /// Shrinks the payload to `len` bytes (no effect if larger).
    pub fn truncate(&mut self, len: usize) {
        self.grant.truncate(len.saturating_add(REQUEST_HEADER_LEN));
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
            mut grant,
            command,
            pending,
            stats,
            waiter,
            want_space,
        } = self;
        let id = pending.next_id();
        let len = grant.len() - REQUEST_HEADER_LEN;
        grant.write_at(0, &RequestHeader { id, command }.encode());
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
