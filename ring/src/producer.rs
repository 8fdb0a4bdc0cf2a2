//! The single producer of an SPSC ring.
//!
//! Algorithm: a bounded byte ring in the manner of rtrb / Lamport's queue, with
//! variable-length frames. The producer owns `tail`, caches the consumer's `head` and
//! re-reads it (Acquire) only when the cached value says the ring is full, so while both
//! sides are busy each side touches the other's line only when it must. Frames are
//! written with plain stores into space the producer owns and made visible by the
//! Release `swap` of `tail`; the old value of that swap carries the consumer's sleep
//! flag (see [`crate::wake`]).
//!
//! Linked headers (SPEC §1.3a), so that a consumer waiting for a frame reads the line
//! the frame is in and not the tail's as well: the producer zeroes the word after each
//! frame (its `end`; at creation, position 0), then stores the frame's header with
//! Release after its payload. So the word after the newest frame is always 0, and a
//! consumer whose Acquire load of the word at its position finds a header has the
//! whole frame, and the word after it is that zero or the next frame's header, never a
//! stale byte of an earlier lap. The word after the newest frame must be free space,
//! so a frame needs `FRAME_HEADER` bytes of room beyond its end (`Geometry::fits`): the
//! ring never fills its last 8 bytes. A staged frame is therefore visible to a probing
//! consumer before [`Producer::publish`] (which is what stores the tail and wakes a
//! sleeper): the consumer may release it early, so the head is bounded by `tail`, not
//! by `published`. (Deferring the first header of each batch to the publish kept
//! staged frames hidden, but its store to a line the consumer had just read stalled
//! the tail's `swap`: 64 B batched 100 -> 77 M msg/s.)

use crate::bytes::BytesMut;
use crate::error::{AttachError, Corruption, PushError};
use crate::frame::{encode, TAG_MSG, TAG_PAD};
use crate::handoff;
use crate::index::{ahead, check_head};
use crate::layout::{Config, RawRegion, RingPtrs, FRAME_HEADER};
use crate::sync::Ordering;
use crate::wake::{self, FlowChange, Published, SleepCheck, Wake};
use crate::{fence, Fences, Keepalive};
use core::cell::Cell;

/// The producing side of an SPSC ring.
///
/// `Send` but not `Sync`: exactly one thread produces at a time, which the `&mut self`
/// receivers enforce.
pub struct Producer {
    ring: RingPtrs,
    /// Next write position. Frames in `published..tail` are staged (written, not yet
    /// in the tail; a probing consumer may read them, module doc). Invariant:
    /// `tail - cached_head <= capacity - 8`, `tail - published <= capacity - 8`,
    /// `tail % 8 == 0` (positions and their differences are modulo 2^64, see
    /// `index.rs`).
    tail: u64,
    /// The last value stored into the shared tail. Invariant:
    /// `cached_head <= published <= tail`.
    published: u64,
    /// `published` as the last [`hand_off`](Self::hand_off) left it, which demotes
    /// the lines of `handed_off..=published` (kept out of `publish`: a store there
    /// cost 8 B single-message streams a fifth). A hint's bound only. Invariant:
    /// `handed_off <= published`.
    handed_off: u64,
    /// The last head read from shared memory that passed [`check_head`].
    cached_head: u64,
    /// Flow-control state as this side decided it (hysteresis on the watermarks).
    flow_on: bool,
    /// Set by the first corruption seen; every later call reports it.
    poisoned: Option<Corruption>,
    /// Asymmetric rings: the consumer's last sleep epoch this producer rang for, so
    /// that one announcement is rung once (`wake::wake_for`).
    consumer_rung: u64,
    /// Asymmetric rings: this producer's sleep epoch as last stored (odd: announced).
    /// A `Cell` because `cancel_sleep` takes `&self`; the handle is not `Sync`.
    epoch: Cell<u64>,
    _keep: Keepalive,
}

// SAFETY: the producer owns its private state; every access to the shared region is
// atomic (the data area's through `sync::DataArea`), so any single thread may make it.
unsafe impl Send for Producer {}

impl core::fmt::Debug for Producer {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Producer")
            .field("capacity", &self.ring.geometry.capacity)
            .field("tail", &self.tail)
            .field("published", &self.published)
            .field("cached_head", &self.cached_head)
            .field("flow_on", &self.flow_on)
            .field("poisoned", &self.poisoned)
            .finish()
    }
}

impl Producer {
    /// Initialises a fresh ring in `region` and returns its producer.
    ///
    /// # Safety
    /// `region` satisfies [`RawRegion::new`]'s contract and nobody uses it yet; the
    /// region must outlive the producer (see [`Producer::keep_alive`]). Only one
    /// producer may exist for the region on this side.
    ///
    /// # Errors
    ///
    /// [`AttachError`]: the region is misaligned or too small, or `config` is invalid.
    pub unsafe fn create(region: RawRegion, config: &Config) -> Result<Self, AttachError> {
        // SAFETY: forwarded contract.
        unsafe { Self::create_with(region, config, Fences::Locked) }
    }

    /// [`create`](Self::create) with the protocol `fences`: with
    /// [`Fences::Asymmetric`] a publish is a plain store and a side about to sleep pays
    /// a `membarrier` (the crate's `fence` module); the consumer learns it at attach.
    ///
    /// # Safety
    /// As for [`create`](Self::create).
    ///
    /// # Errors
    ///
    /// As [`create`](Self::create); [`AttachError::Unsupported`] where this process
    /// cannot register for `membarrier`.
    pub unsafe fn create_with(
        region: RawRegion,
        config: &Config,
        fences: Fences,
    ) -> Result<Self, AttachError> {
        // SAFETY: forwarded contract.
        let ring = unsafe { RingPtrs::create(region, config, fences) }?;
        ring.link(0);
        Ok(Self::from_ring(ring, 0, 0))
    }

    /// Attaches to a ring another side created and returns its producer.
    ///
    /// # Safety
    /// As for [`Producer::create`], except that the region was initialised by the
    /// peer; whatever it contains, an error (not undefined behaviour) results.
    ///
    /// # Errors
    ///
    /// [`AttachError`]: the region is misaligned or too small, or the header found
    /// there has the wrong magic, version or geometry, or indices that cannot start a
    /// ring.
    pub unsafe fn attach(region: RawRegion) -> Result<Self, AttachError> {
        // SAFETY: forwarded contract.
        let (ring, head, tail) = unsafe { RingPtrs::attach_at_start(region) }?;
        // With frames unreleased the word at `tail` may still be a consumer's (a full
        // ring): the invariant is declared only from an empty ring on (a fresh
        // connection's case). Either way this producer keeps it from here.
        if head == tail {
            ring.link(tail);
        }
        Ok(Self::from_ring(ring, head, tail))
    }

    fn from_ring(ring: RingPtrs, head: u64, tail: u64) -> Self {
        Producer {
            ring,
            tail,
            published: tail,
            handed_off: tail,
            cached_head: head,
            flow_on: false,
            poisoned: None,
            consumer_rung: 0,
            epoch: Cell::new(0),
            _keep: Keepalive::default(),
        }
    }

    /// Keeps `owner` (typically the mapping that holds the region) alive as long as
    /// this producer.
    /// Owners accumulate: each call adds one, and none is dropped before the handle
    /// (the heap constructors already hold the region this way).
    #[cfg(feature = "alloc")]
    #[must_use]
    pub fn keep_alive(mut self, owner: alloc::sync::Arc<dyn core::any::Any + Send + Sync>) -> Self {
        crate::keep_also(&mut self._keep, owner);
        self
    }

    /// The configuration (private copy) this producer runs with.
    pub fn config(&self) -> Config {
        self.ring.config()
    }

    /// The largest payload this ring carries (`capacity / 2 - 8`).
    pub fn max_message_len(&self) -> usize {
        self.ring.geometry.max_payload
    }

    /// The position after the last frame this producer wrote (staged or published): a
    /// byte count modulo 2^64 (for diagnostics and tests; it only moves forward).
    pub fn position(&self) -> u64 {
        self.tail
    }

    /// The corruption that killed this ring, if one was seen.
    pub fn corruption(&self) -> Option<Corruption> {
        self.poisoned
    }

    /// Bytes occupied as of the last head this producer read (an over-estimate).
    pub fn used_bytes(&self) -> usize {
        self.tail.wrapping_sub(self.cached_head) as usize
    }

    /// Whether this producer is in flow control (occupancy reached the high watermark
    /// and has not yet fallen to the low one).
    pub fn flow_control(&self) -> bool {
        self.flow_on
    }

    #[inline]
    fn check_poison(&self) -> Result<(), PushError> {
        match self.poisoned {
            None => Ok(()),
            Some(c) => Err(PushError::Corrupt(c)),
        }
    }

    #[inline]
    fn poison(&mut self, c: Corruption) -> PushError {
        self.poisoned = Some(c);
        PushError::Corrupt(c)
    }

    /// Re-reads the consumer's head (Acquire: the consumer's reads of released frames
    /// happen before we overwrite them). Out of line: the cached head usually suffices.
    #[cold]
    #[inline(never)]
    fn refresh_head(&mut self) -> Result<u64, PushError> {
        let raw = self.ring.header().head.0.head.load(Ordering::Acquire);
        // Bounded by `tail`: a probing consumer may release staged frames.
        match check_head(raw, self.cached_head, self.tail) {
            Ok(head) => {
                self.cached_head = head;
                Ok(head)
            }
            Err(c) => Err(self.poison(c)),
        }
    }

    /// Claims space for a frame of `len` payload bytes at the write position: checks,
    /// and returns `(frame_pos, end)` (`frame_pos != tail` when the message wraps, the
    /// padding frame written by [`commit_frame`](Self::commit_frame)).
    #[inline(always)]
    fn place_frame(&mut self, len: usize) -> Result<(u64, u64), PushError> {
        if let Some(c) = self.poisoned {
            return Err(PushError::Corrupt(c));
        }
        let geo = self.ring.geometry;
        if len > geo.max_payload {
            return Err(PushError::TooLarge {
                len,
                max: geo.max_payload,
            });
        }
        let (frame_pos, end) = geo.place(self.tail, len);
        // Room past the head, and within a capacity of the published tail: a probing
        // consumer may release staged frames (SPEC §1.3a), and staged bytes must stay
        // within the capacity (publish, then retry). Two tests that are each almost
        // always true, not one against the older of the two positions, which moves
        // between them and mispredicted (64 B batched 87 -> 67 M msg/s).
        if !geo.fits(end, self.cached_head) {
            let head = self.refresh_head()?;
            if !geo.fits(end, head) {
                return Err(PushError::Full);
            }
        }
        if !geo.fits(end, self.published) {
            return Err(PushError::Full);
        }
        Ok((frame_pos, end))
    }

    /// Commits the message of `len` bytes whose payload is written in the frame
    /// `frame_pos..end` (placed by [`place_frame`](Self::place_frame) at the write
    /// position): zeroes the word at `end`, stores the header with Release, then the
    /// padding frame before it if it wraps, and moves the write position to `end`.
    /// The order is the linked-header invariant (module doc): a probing consumer finds
    /// the padding only once the message after it is whole, and a reservation dropped
    /// uncommitted leaves no trace (the word at the write position stays 0).
    #[inline(always)]
    fn commit_frame(&mut self, frame_pos: u64, end: u64, len: usize) {
        let geo = self.ring.geometry;
        // SAFETY: `tail..end + 8` is free space this producer owns (`Geometry::fits`
        // kept a word of room past every frame), inside the data area apart from the
        // padding (a frame never crosses its end; the word at `end` is at offset 0 when
        // it ends there), and every position is 8-aligned.
        unsafe {
            self.ring.data.store_word(geo.offset(end), 0);
            let header = encode(TAG_MSG, len as u32);
            self.ring
                .data
                .store_header_release(geo.offset(frame_pos), header);
            if frame_pos != self.tail {
                let pad = frame_pos.wrapping_sub(self.tail) as usize - FRAME_HEADER;
                let pad = encode(TAG_PAD, pad as u32);
                self.ring
                    .data
                    .store_header_release(geo.offset(self.tail), pad);
            }
        }
        self.tail = end;
    }

    /// Reserves space for a message of `len` bytes, to be filled in place and then
    /// committed. Nothing is visible to the consumer until the grant is committed (a
    /// probing consumer may read a committed frame before it is published; a sleeping
    /// one is woken only by the publish); dropping the grant abandons it.
    ///
    /// # Errors
    ///
    /// [`PushError::Full`] when there is no room now (retry after the consumer
    /// releases); [`PushError::TooLarge`] beyond
    /// [`max_message_len`](Self::max_message_len), never waited for;
    /// [`PushError::Corrupt`] once the consumer corrupted the region (sticky).
    #[inline]
    pub fn try_reserve(&mut self, len: usize) -> Result<WriteGrant<'_>, PushError> {
        let (frame_pos, _) = self.place_frame(len)?;
        let bytes = BytesMut::new(self.ring.payload(frame_pos, len));
        Ok(WriteGrant {
            producer: self,
            frame_pos,
            reserved: len,
            bytes,
        })
    }

    /// Copies `msg` into the ring and publishes it.
    ///
    /// # Errors
    ///
    /// [`PushError::Full`] when there is no room now (retry after the consumer
    /// releases); [`PushError::TooLarge`] beyond
    /// [`max_message_len`](Self::max_message_len), never waited for;
    /// [`PushError::Corrupt`] once the consumer corrupted the region (sticky).
    #[inline]
    pub fn try_send(&mut self, msg: &[u8]) -> Result<Published, PushError> {
        self.try_stage(msg)?;
        Ok(self.publish())
    }

    /// Copies the concatenation of `parts` into the ring as one message and publishes it.
    ///
    /// # Errors
    ///
    /// [`PushError::Full`] when there is no room now (retry after the consumer
    /// releases); [`PushError::TooLarge`] beyond
    /// [`max_message_len`](Self::max_message_len), never waited for;
    /// [`PushError::Corrupt`] once the consumer corrupted the region (sticky).
    pub fn try_send_vectored(&mut self, parts: &[&[u8]]) -> Result<Published, PushError> {
        let len = parts
            .iter()
            .map(|p| p.len())
            .fold(0usize, usize::saturating_add);
        let mut grant = self.try_reserve(len)?;
        let mut at = 0;
        for part in parts {
            grant.write_at(at, part);
            at += part.len();
        }
        Ok(grant.commit())
    }

    /// Copies `msg` into the ring without publishing it: a batch is made visible by one
    /// [`publish`](Producer::publish) (one index store for many messages, and the wake
    /// of a sleeping consumer). A consumer waiting by probing headers on a linked ring
    /// (SPEC §1.3a) may read a staged message before that.
    ///
    /// # Errors
    ///
    /// [`PushError::Full`] when there is no room now (retry after the consumer
    /// releases); [`PushError::TooLarge`] beyond
    /// [`max_message_len`](Self::max_message_len), never waited for;
    /// [`PushError::Corrupt`] once the consumer corrupted the region (sticky).
    #[inline]
    pub fn try_stage(&mut self, msg: &[u8]) -> Result<(), PushError> {
        let (frame_pos, end) = self.place_frame(msg.len())?;
        let offset = self.ring.geometry.offset(frame_pos);
        // SAFETY: `frame_pos..end` lies inside the data area, contiguous
        // (`place_frame`), and holds the header word and `msg`; it is free space this
        // producer owns, so a correct consumer does not read it yet.
        unsafe { self.ring.data.write(offset + FRAME_HEADER, msg) };
        self.commit_frame(frame_pos, end, msg.len());
        Ok(())
    }

    /// Bytes staged and not yet published.
    pub fn staged_bytes(&self) -> usize {
        self.tail.wrapping_sub(self.published) as usize
    }

    /// Publishes every staged message with one Release `swap` of the shared tail and
    /// reports whether the consumer sleeps and whether flow control changed.
    #[inline]
    pub fn publish(&mut self) -> Published {
        let wake = if self.tail == self.published {
            Wake::NotNeeded
        } else if self.ring.fences == Fences::Asymmetric {
            self.publish_asymmetric()
        } else {
            let old = self
                .ring
                .header()
                .tail
                .0
                .tail
                .swap(self.tail, Ordering::Release);
            self.published = self.tail;
            Wake::from_old_index(old)
        };
        let geo = self.ring.geometry;
        let mut flow = None;
        let cached_used = ahead(self.published, self.cached_head);
        // The cached head over-estimates occupancy, so a transition to "on" is only
        // possible when the cached value says so; "off" needs a fresh head.
        if self.flow_on || cached_used >= geo.high {
            flow = self.evaluate_flow();
        }
        Published { wake, flow }
    }

    /// Hands what was published since the last call to the consumer: pushes its
    /// lines (the first 64) and the next header's out of this core's caches to the
    /// shared last level, so that the consumer's reads of them do not have to snoop
    /// this core (`cldemote`; nothing on a CPU without it). Call it after a publish
    /// when about to wait for the consumer's answer (a round trip's request, a reply
    /// with no further request queued), not in a stream: the demote costs this
    /// thread time, and a line demoted and then written again has to come back
    /// (SPEC §1.3b). Nothing when nothing was published since the last call.
    ///
    /// ```
    /// use coroipc_ring::{heap, Config};
    ///
    /// let (mut tx, mut rx) = heap::channel(&Config::new(4096))?;
    /// let _ = tx.try_send(&[7u8; 100])?; // a request
    /// tx.hand_off(); // about to wait for the reply
    /// let (msg, _wake) = rx.try_recv_vec()?.expect("a message");
    /// assert_eq!(msg, [7u8; 100]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[inline]
    pub fn hand_off(&mut self) {
        handoff::demote(&self.ring, self.handed_off, self.published);
        self.handed_off = self.published;
    }

    /// The publisher's half of the asymmetric protocol (`fence.rs`): a plain store of
    /// the tail, then the consumer's epoch.
    #[inline(always)]
    fn publish_asymmetric(&mut self) -> Wake {
        let header = self.ring.header();
        header.tail.0.tail.store(self.tail, Ordering::Release);
        self.published = self.tail;
        fence::light();
        let epoch = header.meta.0.consumer_sleep.load(Ordering::Relaxed);
        wake::wake_for(epoch, &mut self.consumer_rung)
    }

    /// Nothing on a poisoned ring: a transition read from a ring found corrupt is not
    /// reported (ring audit L2), and `flow_on` keeps its last sound value.
    #[cold]
    #[inline(never)]
    fn evaluate_flow(&mut self) -> Option<FlowChange> {
        if self.poisoned.is_some() {
            return None;
        }
        let head = self.refresh_head().ok()?;
        let change = self
            .ring
            .geometry
            .flow_transition(self.flow_on, ahead(self.published, head))?;
        self.flow_on = change == FlowChange::On;
        self.ring
            .header()
            .tail
            .0
            .flow
            .store(u32::from(self.flow_on), Ordering::Relaxed);
        Some(change)
    }

    /// Re-reads the consumer's head and reports a flow-control transition, if the
    /// consumer's progress caused one (call it when woken while in flow control).
    ///
    /// # Errors
    ///
    /// [`PushError::Corrupt`] once the consumer corrupted the region (sticky).
    pub fn poll_flow(&mut self) -> Result<Option<FlowChange>, PushError> {
        self.check_poison()?;
        let change = self.evaluate_flow();
        self.check_poison()?;
        Ok(change)
    }

    /// Announces that this producer is about to sleep until a message of `len` bytes
    /// fits. Staged messages are published first. If `sleep` comes back true, wait on
    /// the doorbell, then call [`cancel_sleep`](Producer::cancel_sleep) and retry.
    ///
    /// # Errors
    ///
    /// [`PushError::TooLarge`] for a length that can never fit; [`PushError::Corrupt`]
    /// (sticky).
    pub fn prepare_sleep_for_space(&mut self, len: usize) -> Result<SleepCheck, PushError> {
        self.check_poison()?;
        let geo = self.ring.geometry;
        if len > geo.max_payload {
            return Err(PushError::TooLarge {
                len,
                max: geo.max_payload,
            });
        }
        let published = self.publish();
        let (_, end) = geo.place(self.tail, len);
        self.announce(published, |head| geo.fits(end, head))
    }

    /// Announces that this producer is about to sleep until occupancy falls to the low
    /// watermark (flow control off). Staged messages are published first.
    ///
    /// # Errors
    ///
    /// [`PushError::Corrupt`] once the consumer corrupted the region (sticky).
    pub fn prepare_sleep_for_flow_off(&mut self) -> Result<SleepCheck, PushError> {
        self.check_poison()?;
        let outcome = self.publish();
        let (published, low) = (self.published, self.ring.geometry.low);
        self.announce(outcome, |head| ahead(published, head) <= low)
    }

    /// The announce step after `published` (the publish of anything staged): its wake
    /// and flow change are reported in the [`SleepCheck`].
    fn announce(
        &mut self,
        published: Published,
        ready: impl Fn(u64) -> bool,
    ) -> Result<SleepCheck, PushError> {
        let bound = self.tail;
        let mut cached = self.cached_head;
        let header = self.ring.header();
        let check = |raw, ()| {
            cached = check_head(raw, cached, bound)?;
            Ok(ready(cached))
        };
        let (head, flag) = (&header.head.0.head, &header.meta.0.producer_sleep);
        let sleep = match self.ring.fences {
            Fences::Locked => wake::announce(head, || (), check),
            Fences::Asymmetric => wake::announce_asymmetric(flag, &self.epoch, head, check),
        };
        self.cached_head = cached;
        let sleep = sleep.map_err(|c| self.poison(c))?;
        Ok(SleepCheck {
            sleep,
            wake_peer: published.wake,
            flow: published.flow,
        })
    }

    /// Withdraws a sleep announcement (after waking, or instead of sleeping).
    pub fn cancel_sleep(&self) {
        let header = self.ring.header();
        match self.ring.fences {
            Fences::Locked => wake::cancel(&header.head.0.head),
            Fences::Asymmetric => {
                wake::cancel_asymmetric(&header.meta.0.producer_sleep, &self.epoch);
            }
        }
    }
}

/// Space reserved in the ring for one message, filled in place.
///
/// Commit it ([`commit`](WriteGrant::commit) publishes; [`stage`](WriteGrant::stage)
/// defers publication to [`Producer::publish`]). Dropping it abandons the reservation.
#[must_use = "a reservation is abandoned unless committed or staged"]
pub struct WriteGrant<'p> {
    producer: &'p mut Producer,
    /// Position of the frame header. Invariant: `frame_pos..frame_pos + 8 +
    /// padded(message length)` is free space owned by the producer, contiguous in
    /// the data area.
    frame_pos: u64,
    /// The payload length reserved. Private, unlike the view: the committed frame is
    /// never longer (the view can be swapped with another grant's through `DerefMut`).
    reserved: usize,
    /// The message, less a prefix the caller skipped. Checked against `frame_pos` and
    /// `reserved` before it is committed.
    bytes: BytesMut<'p>,
}

impl<'p> core::ops::Deref for WriteGrant<'p> {
    type Target = BytesMut<'p>;

    #[inline]
    fn deref(&self) -> &BytesMut<'p> {
        &self.bytes
    }
}

impl core::ops::DerefMut for WriteGrant<'_> {
    #[inline]
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.bytes
    }
}

impl WriteGrant<'_> {
    /// Hides the first `n` bytes of the message (a header the caller has written):
    /// the view is the rest from then on, and the message still carries them. `n`
    /// past the end leaves nothing.
    #[inline]
    pub fn skip_prefix(&mut self, n: usize) {
        self.bytes.skip(n);
    }

    /// Shrinks the message to `len` bytes after the skipped prefix (no-op if `len`
    /// is not smaller).
    #[inline]
    pub fn truncate(&mut self, len: usize) {
        self.bytes.truncate(len);
    }

    /// Writes the frame header and moves the private tail past the frame. A view that
    /// is no longer this grant's (swapped with another's) commits nothing: the
    /// reservation is abandoned.
    #[inline]
    fn finish(&mut self) {
        let geo = self.producer.ring.geometry;
        let own = self.producer.ring.payload(self.frame_pos, self.reserved);
        let Some(len) = self.bytes.message_len_in(&own) else {
            return;
        };
        // The frame was placed at `frame_pos` and is no longer than reserved, so its
        // end has the room `place_frame` checked.
        let end = geo.place(self.frame_pos, len).1;
        self.producer.commit_frame(self.frame_pos, end, len);
    }

    /// Commits the message without publishing it (see [`Producer::publish`]). A view
    /// swapped with another grant's (`mem::swap` through `DerefMut`) is not this
    /// grant's: nothing is committed, as if the grant were dropped (the same for
    /// [`commit`](Self::commit)).
    #[inline]
    pub fn stage(mut self) {
        self.finish();
    }

    /// Commits and publishes the message (with anything staged before it).
    #[inline]
    pub fn commit(mut self) -> Published {
        self.finish();
        self.producer.publish()
    }
}
