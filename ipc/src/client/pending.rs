//! The pipelined-request table: ids sent and not answered, and responses read while
//! looking for another id.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use coroipc_ring::{Consumer, Wake};

use super::frame::{LeftResponse, ResponseFrame};
use super::in_flight::{InFlight, Slot};
use crate::error::Violation;

/// Hashes request ids with one multiplication and a fold (Fibonacci hashing) instead of
/// SipHash:
/// the stash holds only ids this client issued (sequential), so there is no key an
/// attacker could choose; a hostile server's ids are only looked up.
#[derive(Default)]
pub(crate) struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        // The product's entropy is in its high bits, and the table picks buckets with
        // the low ones: fold them down, or ids chosen by their low bits (a hostile
        // server answering only some) would share one bucket chain.
        self.0 ^ (self.0 >> 32)
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }

    fn write_u64(&mut self, id: u64) {
        self.0 = id.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

type IdMap<V> = HashMap<u64, V, BuildHasherDefault<IdHasher>>;

/// Where the response looked for is.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Found {
    /// In the stash, under this id.
    Stashed(u64),
    /// At the head of the response ring, left there with its decoded header.
    Ring(LeftResponse),
}

/// Requests in flight and responses that arrived out of order.
///
/// Invariant: an id is outstanding or abandoned in `in_flight`, or in `stash`, or
/// neither; ids are issued in increasing order from `next_id`.
#[derive(Debug)]
pub(crate) struct Pending {
    next_id: u64,
    /// Ids sent: outstanding (with their command id) or abandoned.
    in_flight: InFlight,
    stash: IdMap<Stashed>,
    /// Responses moved from the ring into the stash (counted as received).
    received: u64,
}

/// A response read while looking for another.
#[derive(Debug)]
pub(crate) struct Stashed {
    pub(crate) command: u16,
    pub(crate) status: i32,
    pub(crate) data: Vec<u8>,
}

impl Pending {
    pub(crate) fn new() -> Pending {
        Pending {
            next_id: 1,
            in_flight: InFlight::default(),
            stash: IdMap::default(),
            received: 0,
        }
    }

    /// The id the next request gets.
    pub(crate) fn next_id(&self) -> u64 {
        self.next_id
    }

    /// Records that the request with [`next_id`](Self::next_id) was published.
    pub(crate) fn sent(&mut self, command: u16) {
        self.in_flight.send(self.next_id, command);
        self.next_id += 1;
    }

    /// Responses read off the ring into the stash, in all.
    pub(crate) fn received(&self) -> u64 {
        self.received
    }

    /// Requests sent and not answered (stashed responses not counted).
    pub(crate) fn outstanding(&self) -> usize {
        self.in_flight.outstanding()
    }

    /// Whether a response to `id` is still to come or waits in the stash.
    pub(crate) fn knows(&self, id: u64) -> bool {
        self.in_flight.is_outstanding(id) || self.is_stashed(id)
    }

    /// Whether anything is in flight or stashed.
    pub(crate) fn is_empty(&self) -> bool {
        self.in_flight.outstanding() == 0 && self.stash.is_empty()
    }

    /// Whether any response waits in the stash.
    pub(crate) fn has_stashed(&self) -> bool {
        !self.stash.is_empty()
    }

    /// Whether a response to `id` waits in the stash (no hashing while it is empty,
    /// as it is unless responses arrive out of the order they are asked for).
    #[inline]
    fn is_stashed(&self, id: u64) -> bool {
        !self.stash.is_empty() && self.stash.contains_key(&id)
    }

    /// Keeps a response for a later call (the caller took it off the ring).
    pub(crate) fn stash(&mut self, id: u64, response: Stashed) {
        self.in_flight.settle(id);
        self.stash.insert(id, response);
    }

    /// Gives up on `id`: a stashed response is dropped, one still to come will be
    /// discarded on arrival. Returns whether `id` was in flight or stashed.
    pub(crate) fn abandon(&mut self, id: u64) -> bool {
        if self.stash.remove(&id).is_some() {
            return true;
        }
        self.in_flight.abandon(id)
    }

    /// Takes a stashed response.
    pub(crate) fn take_stashed(&mut self, id: u64) -> Option<Stashed> {
        self.stash.remove(&id)
    }

    /// Marks `id` answered (its response is being handed out); returns its command.
    pub(crate) fn answered(&mut self, id: u64) -> u16 {
        match self.in_flight.settle(id) {
            Slot::Outstanding(command) => command,
            Slot::Abandoned | Slot::Settled => 0,
        }
    }

    /// Moves every response now in `ring` into the stash; returns whether the server
    /// must be woken for the space freed.
    pub(crate) fn stash_available(&mut self, ring: &mut Consumer) -> Result<Wake, Violation> {
        let mut wake = Wake::NotNeeded;
        while let Some(frame) = ResponseFrame::peek(ring)? {
            if !self.in_flight.expects(frame.header.id) {
                return Err(Violation::UnknownResponse(frame.header.id));
            }
            wake = wake.or(self.stash_frame(frame));
        }
        Ok(wake)
    }

    /// Copies `frame` into the stash and releases it (an abandoned one is released
    /// unread).
    fn stash_frame(&mut self, frame: ResponseFrame<'_>) -> Wake {
        let id = frame.header.id;
        // One lookup settles the id and says what it was.
        let command = match self.in_flight.settle(id) {
            Slot::Abandoned => return frame.into_grant().release(),
            Slot::Outstanding(command) => command,
            Slot::Settled => 0,
        };
        let status = frame.header.status;
        let data = frame.payload().to_vec();
        let wake = frame.into_grant().release();
        self.received += 1;
        self.stash.insert(
            id,
            Stashed {
                command,
                status,
                data,
            },
        );
        wake
    }

    /// Finds the response to `want` (or to any request when `None`): in the stash, or
    /// at the head of `ring` after moving responses to other requests into the stash.
    /// Returns where it is (`None`: not arrived yet) and whether the server must be
    /// woken for the space freed.
    pub(crate) fn locate(
        &mut self,
        ring: &mut Consumer,
        want: Option<u64>,
    ) -> Result<(Option<Found>, Wake), Violation> {
        let stashed = match want {
            Some(id) => self.is_stashed(id).then_some(id),
            None => self.stash.keys().next().copied(),
        };
        if let Some(id) = stashed {
            return Ok((Some(Found::Stashed(id)), Wake::NotNeeded));
        }
        let mut wake = Wake::NotNeeded;
        while let Some(frame) = ResponseFrame::peek(ring)? {
            let header = frame.header;
            let slot = self.in_flight.get(header.id);
            if slot == Slot::Settled {
                return Err(Violation::UnknownResponse(header.id));
            }
            if slot != Slot::Abandoned && want.is_none_or(|w| w == header.id) {
                // Left at the head for the caller to take (the frame borrows the
                // ring, which the caller's wait goes on using): taking it reads
                // nothing again.
                return Ok((Some(Found::Ring(frame.leave())), wake));
            }
            wake = wake.or(self.stash_frame(frame));
        }
        Ok((None, wake))
    }
}
