//! A response frame at the head of the response ring, checked where it enters.
//!
//! Threat answered: the server is untrusted and may write a response frame at any
//! time, so its length and header are read out of shared memory once, into a
//! [`ResponseFrame`], and everything after (matching an id, stashing the payload,
//! handing it out in place) works on that value. [`ResponseFrame::peek`] is the only
//! place a response's length is checked.

use coroipc_ring::{Consumer, ReadGrant};

use crate::error::{RingKind, Violation};
use crate::protocol::{ResponseHeader, RESPONSE_HEADER_LEN};

/// The response at the head of the ring, with its decoded header.
pub(crate) struct ResponseFrame<'r> {
    pub(crate) header: ResponseHeader,
    /// Invariant: at least [`RESPONSE_HEADER_LEN`] bytes long.
    grant: ReadGrant<'r>,
}

impl<'r> ResponseFrame<'r> {
    /// The response at the head of `ring`, if one is there: a frame too short for a
    /// header, or a corrupt ring, is the server's violation.
    pub(crate) fn peek(ring: &'r mut Consumer) -> Result<Option<Self>, Violation> {
        let grant = match ring.try_peek() {
            Ok(None) => return Ok(None),
            Ok(Some(g)) => g,
            Err(e) => return Err(Violation::popping(RingKind::Response, e)),
        };
        if grant.len() < RESPONSE_HEADER_LEN {
            return Err(Violation::ShortFrame(RingKind::Response));
        }
        let mut raw = [0u8; RESPONSE_HEADER_LEN];
        grant.read_into(&mut raw);
        Ok(Some(ResponseFrame {
            header: ResponseHeader::from_bytes(&raw),
            grant,
        }))
    }

    /// Payload length (the frame less its header).
    pub(crate) fn payload_len(&self) -> usize {
        self.grant.len() - RESPONSE_HEADER_LEN
    }

    /// Copies payload bytes `at..at + dst.len()` into `dst`.
    ///
    /// # Panics
    /// If the range exceeds the payload (a caller bug).
    pub(crate) fn read_payload_at(&self, at: usize, dst: &mut [u8]) {
        // Saturating: an absurd `at` reaches the ring's range check, not an overflow.
        self.grant
            .read_at(RESPONSE_HEADER_LEN.saturating_add(at), dst);
    }

    /// The payload, copied into a new `Vec`.
    pub(crate) fn payload_to_vec(&self) -> Vec<u8> {
        let mut data = vec![0u8; self.payload_len()];
        self.read_payload_at(0, &mut data);
        data
    }

    /// The payload in place.
    ///
    /// # Safety
    ///
    /// As [`ReadGrant::as_slice_trusted`]: the server must be trusted not to write
    /// these bytes while the slice lives.
    pub(crate) unsafe fn payload_trusted(&self) -> &[u8] {
        // SAFETY: forwarded contract.
        let all = unsafe { self.grant.as_slice_trusted() };
        &all[RESPONSE_HEADER_LEN..]
    }

    /// The frame's grant, to release (or consume) it.
    pub(crate) fn into_grant(self) -> ReadGrant<'r> {
        self.grant
    }
}
