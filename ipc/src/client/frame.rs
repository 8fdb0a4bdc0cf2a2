//! A response frame at the head of the response ring, checked where it enters.
//!
//! Threat answered: the server is untrusted and may write a response frame at any
//! time, so its length and header are read out of shared memory once, into a
//! [`ResponseFrame`], and everything after (matching an id, stashing the payload,
//! handing it out in place) works on that value. [`ResponseFrame::peek`] is the only
//! place a response's length is checked; a frame let go of ([`ResponseFrame::leave`])
//! and taken again keeps the header and bounds checked then, and is not read again.

use coroipc_ring::{Bytes, Consumer, Peeked, ReadGrant};

use crate::error::{RingKind, Violation};
use crate::protocol::{ResponseHeader, RESPONSE_HEADER_LEN};

/// The response at the head of the ring, with its decoded header.
pub(crate) struct ResponseFrame<'r> {
    pub(crate) header: ResponseHeader,
    /// The frame, at least [`RESPONSE_HEADER_LEN`] bytes long, with its header
    /// skipped: the grant's view is the payload.
    grant: ReadGrant<'r>,
}

/// A response frame left at the head of its ring, with its decoded header: what
/// [`Pending::locate`](super::pending::Pending::locate) found, taken by the caller.
#[derive(Clone, Copy, Debug)]
pub(crate) struct LeftResponse {
    pub(crate) header: ResponseHeader,
    peeked: Peeked,
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
        let mut grant = grant;
        grant.skip_prefix(RESPONSE_HEADER_LEN);
        Ok(Some(ResponseFrame {
            header: ResponseHeader::from_bytes(&raw),
            grant,
        }))
    }

    /// Lets go of the frame's borrow of the ring, leaving it there: [`take`](Self::take)
    /// makes it this frame again, with the header already read.
    pub(crate) fn leave(self) -> LeftResponse {
        LeftResponse {
            header: self.header,
            peeked: self.grant.leave(),
        }
    }

    /// The frame `left` let go of, if it is still at the head of `ring` (nothing
    /// read from shared memory: the header is the one checked when it was peeked).
    pub(crate) fn take(ring: &'r mut Consumer, left: LeftResponse) -> Option<Self> {
        Some(ResponseFrame {
            header: left.header,
            grant: ring.take(left.peeked)?,
        })
    }

    /// The payload (the frame after its header).
    pub(crate) fn payload(&self) -> &Bytes<'r> {
        &self.grant
    }

    /// The frame's grant, to release (or consume) it.
    pub(crate) fn into_grant(self) -> ReadGrant<'r> {
        self.grant
    }
}
