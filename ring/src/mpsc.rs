//! Several producer threads of one process feeding one ring (the consumer side is the
//! ordinary [`Consumer`](crate::Consumer), possibly in another process).
//!
//! Algorithm: producers claim space with a CAS on a private `claim` cursor (as in
//! Vyukov's bounded MPMC queue and the LMAX Disruptor's multi-producer sequencer), fill
//! their frames concurrently, and publish in claim order: a producer waits for the
//! private `turn` cursor to reach the start of its claim, then stores `published`,
//! swaps the shared `tail` and advances `turn`. The consumer therefore sees exactly the
//! SPSC protocol. Every cursor the producers trust is in private memory; the shared
//! `head` is validated against `published` (stored before the shared swap, so it bounds
//! anything the consumer can have seen) before it frees any space.
//!
//! Linked headers (SPEC §1.3a): a claim's first word (its first frame's header, or the
//! padding before it) is stored only in its turn, with Release, after the 0 stored
//! into the word at the claim's end: the word the next claim starts with, which its
//! owner therefore cannot have written yet. Every other header of the claim is written
//! when the claim is filled. So the word after the newest published frame is 0, as an
//! SPSC producer keeps it, and a consumer probing headers finds claims in order, whole.
//! A ring this group creates is linked; one it attaches to keeps its flag.
//!
//! Progress: a grant that is held blocks the publication of later ones (not of their
//! filling); keep grants short, hold at most one per thread, and never forget one
//! (publication waits until the turn comes: a grant that never publishes blocks every
//! later one forever). A grant dropped without commit is published as a SKIP
//! frame so later claims are not blocked; its space is freed when the consumer steps
//! over it, and if the consumer sleeps, the wake a drop cannot ring is kept owed (the
//! consumer's flag stays set, and a producer that sleeps for space reports it; see
//! `wake.rs`). [`MpscGrant::abandon`] gives a claim up and returns that wake.

use crate::bytes::BytesMut;
use crate::error::{AttachError, Corruption, PushError};
use crate::frame::{encode, TAG_MSG, TAG_PAD, TAG_SKIP};
use crate::handoff;
use crate::index::SLEEP_BIT;
use crate::index::{ahead, check_head, is_before};
use crate::layout::{Config, RawRegion, RingPtrs, FRAME_HEADER};
use crate::sync::{AtomicU32, AtomicU64, Ordering};
use crate::turn::TurnWait;
use crate::wake::{self, FlowChange, Published, SleepCheck, Wake};
use crate::Keepalive;

/// The producing side of a ring shared by several threads (`Sync`; share it with an
/// `Arc` or by reference).
pub struct MpscProducer {
    ring: RingPtrs,
    /// Next position to claim. Invariant (modulo 2^64, see `index.rs`): `turn <= claim`,
    /// `claim - cached_head <= capacity`.
    claim: AtomicU64,
    /// Start of the next claim allowed to publish; claims publish in order.
    turn: AtomicU64,
    /// Upper bound of any tail published (stored before the shared swap).
    /// Invariant: `cached_head <= published <= claim`.
    published: AtomicU64,
    /// `published` as the last [`hand_off`](Self::hand_off) saw it (Relaxed; a hint's
    /// bound only: racing hand-offs may see a stale pair, which `handoff::demote`
    /// ignores or demotes lines for nothing).
    handed_off: AtomicU64,
    /// Largest head read from shared memory that passed [`check_head`].
    cached_head: AtomicU64,
    /// 1 while in flow control.
    flow_on: AtomicU32,
    /// 1 once corruption was seen.
    poisoned: AtomicU32,
    /// 1 while a wake of the consumer is owed: a grant was dropped (its SKIP frames
    /// published) while the consumer's sleep flag was set, and its `Drop` could not
    /// ring. Set (Release) after the tail update that kept the flag; taken (Acquire) by
    /// the next `prepare_sleep_*` that sleeps, which reports it (`wake.rs`, "Space held
    /// by frames that deliver nothing").
    owed_wake: AtomicU32,
    /// How a claim waits for its turn to publish.
    turn_wait: TurnWait,
    _keep: Keepalive,
}

// SAFETY: producers coordinate through the private atomics above; every access to the
// shared region is atomic, and each producer writes only the words it claimed with a
// successful CAS (frames are 8-aligned), so no two producers write the same word.
unsafe impl Send for MpscProducer {}
// SAFETY: as above; all methods take `&self` and synchronise through atomics.
unsafe impl Sync for MpscProducer {}

impl core::fmt::Debug for MpscProducer {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("MpscProducer")
            .field("capacity", &self.ring.geometry.capacity)
            .field("claim", &self.claim.load(Ordering::Relaxed))
            .field("published", &self.published.load(Ordering::Relaxed))
            .finish()
    }
}

impl MpscProducer {
    /// Initialises a fresh ring in `region` and returns its producer group.
    ///
    /// # Safety
    /// As for [`Producer::create`](crate::Producer::create).
    ///
    /// # Errors
    ///
    /// [`AttachError`]: the region is misaligned or too small, or `config` is invalid.
    pub unsafe fn create(region: RawRegion, config: &Config) -> Result<Self, AttachError> {
        // SAFETY: forwarded contract.
        let ring = unsafe { RingPtrs::create(region, config, crate::Fences::Locked) }?;
        ring.link(0);
        Ok(Self::from_ring(ring, 0, 0))
    }

    /// Attaches to a ring another side created.
    ///
    /// # Safety
    /// As for [`Producer::attach`](crate::Producer::attach).
    ///
    /// # Errors
    ///
    /// [`AttachError`]: the region is misaligned or too small, or the header found
    /// there has the wrong magic, version or geometry, or indices that cannot start a
    /// ring; [`AttachError::Unsupported`] for a ring with
    /// [`Fences::Asymmetric`](crate::Fences::Asymmetric).
    pub unsafe fn attach(region: RawRegion) -> Result<Self, AttachError> {
        // SAFETY: forwarded contract.
        let (ring, head, tail) = unsafe { RingPtrs::attach_at_start(region) }?;
        // Its publishes order against the consumer's flag in the index word: the
        // asymmetric protocol has none there (`fence.rs`).
        if ring.fences != crate::Fences::Locked {
            return Err(AttachError::Unsupported);
        }
        Ok(Self::from_ring(ring, head, tail))
    }

    fn from_ring(ring: RingPtrs, head: u64, tail: u64) -> Self {
        MpscProducer {
            ring,
            claim: AtomicU64::new(tail),
            turn: AtomicU64::new(tail),
            published: AtomicU64::new(tail),
            handed_off: AtomicU64::new(tail),
            cached_head: AtomicU64::new(head),
            flow_on: AtomicU32::new(0),
            poisoned: AtomicU32::new(0),
            owed_wake: AtomicU32::new(0),
            turn_wait: TurnWait::new(),
            _keep: Keepalive::default(),
        }
    }

    /// Keeps `owner` alive as long as this producer group.
    /// Owners accumulate: each call adds one, and none is dropped before the handle
    /// (the heap constructors already hold the region this way).
    #[cfg(feature = "alloc")]
    #[must_use]
    pub fn keep_alive(mut self, owner: alloc::sync::Arc<dyn core::any::Any + Send + Sync>) -> Self {
        crate::keep_also(&mut self._keep, owner);
        self
    }

    /// The configuration (private copy) this producer group runs with.
    pub fn config(&self) -> Config {
        self.ring.config()
    }

    /// The largest payload this ring carries.
    pub fn max_message_len(&self) -> usize {
        self.ring.geometry.max_payload
    }

    /// Whether the group is in flow control.
    pub fn flow_control(&self) -> bool {
        self.flow_on.load(Ordering::Relaxed) != 0
    }

    /// The position after the last frame claimed by the group: a byte count modulo
    /// 2^64 (for diagnostics and tests; it only moves forward).
    pub fn position(&self) -> u64 {
        self.claim.load(Ordering::Relaxed)
    }

    /// True once any call found the ring corrupt.
    pub fn is_corrupt(&self) -> bool {
        self.poisoned.load(Ordering::Relaxed) != 0
    }

    fn poison(&self, c: Corruption) -> PushError {
        self.poisoned.store(1, Ordering::Relaxed);
        PushError::Corrupt(c)
    }

    fn refresh_head(&self) -> Result<u64, PushError> {
        self.refresh_head_and_bound().map(|(head, _)| head)
    }

    /// [`refresh_head`](Self::refresh_head), also returning the `published` it loaded
    /// after the head: a bound as new as the head, for occupancy decisions (one
    /// loaded before the head can be older than a head released past it since, which
    /// made flow control report `Off` too early: ring audit L1).
    fn refresh_head_and_bound(&self) -> Result<(u64, u64), PushError> {
        // Acquire: the head this value came from was read by another producer, so our
        // read of the head below cannot be older (no false "went backwards").
        let previous = self.cached_head.load(Ordering::Acquire);
        let raw = self.ring.header().head.0.head.load(Ordering::Acquire);
        // Loaded after the head: bounds every tail the consumer can have seen. Relaxed
        // suffices (SPEC §1.7): the Acquire head load above already happens after the
        // store of any `published` the consumer's tail came from.
        let published = self.published.load(Ordering::Relaxed);
        match check_head(raw, previous, published) {
            Ok(head) => {
                self.raise_cached_head(head);
                Ok((head, published))
            }
            Err(c) => Err(self.poison(c)),
        }
    }

    /// Moves the shared cached head forward to `head` (a modular `fetch_max`: positions
    /// wrap, so the numeric maximum would be wrong). Each failed CAS saw the value move
    /// forward, so the loop is bounded. Release on success: a producer that loads
    /// the new value (Acquire) then also happens after the consumer's release we read;
    /// the values compared carry nothing to this thread, so the loads are Relaxed.
    fn raise_cached_head(&self, head: u64) {
        let mut current = self.cached_head.load(Ordering::Relaxed);
        while is_before(current, head) {
            match self.cached_head.compare_exchange(
                current,
                head,
                Ordering::Release,
                Ordering::Relaxed,
            ) {
                Ok(_) => break,
                Err(now) => current = now,
            }
        }
    }

    /// Reserves space for a message of `len` bytes. Commit it soon: later claims
    /// publish only after it.
    ///
    /// # Deadlocks
    ///
    /// Publication (in [`MpscGrant::commit`], [`MpscGrant::abandon`] and the grant's
    /// `Drop`) waits (spinning, then parked: `turn.rs`) until every earlier claim of the
    /// group is published, so a grant whose publication waits for a claim that is never
    /// published blocks its thread and every later claim forever. Therefore:
    ///
    /// * hold at most one live grant per thread (two on one thread publish in claim
    ///   order only if you commit them in that order, and an early return with `?` or a
    ///   panic drops the later one first: it then waits for the earlier one, held by
    ///   the same thread);
    /// * do not wait (on a lock, a channel, another thread's grant) while holding one;
    /// * never `mem::forget` one (or leak it in an `Rc` cycle): its claim is never
    ///   published, and every later publication of the group waits forever.
    ///
    /// # Errors
    ///
    /// [`PushError::Full`] when there is no room now (retry after the consumer
    /// releases); [`PushError::TooLarge`] beyond
    /// [`max_message_len`](Self::max_message_len), never waited for;
    /// [`PushError::Corrupt`] once the consumer corrupted the region (sticky).
    pub fn try_reserve(&self, len: usize) -> Result<MpscGrant<'_>, PushError> {
        if self.is_corrupt() {
            return Err(PushError::Corrupt(Corruption::Earlier));
        }
        let geo = self.ring.geometry;
        if len > geo.max_payload {
            return Err(PushError::TooLarge {
                len,
                max: geo.max_payload,
            });
        }
        let mut claim = self.claim.load(Ordering::Relaxed);
        let mut refreshed = false;
        loop {
            let (frame_pos, end) = geo.place(claim, len);
            let head = self.cached_head.load(Ordering::Acquire);
            // A stale `claim` can be behind a head released since: reload and retry.
            if is_before(claim, head) || !geo.fits(end, head) {
                let fresh = self.claim.load(Ordering::Relaxed);
                if fresh != claim {
                    claim = fresh;
                    continue;
                }
                if refreshed {
                    return Err(PushError::Full);
                }
                self.refresh_head()?;
                refreshed = true;
                continue;
            }
            match self
                .claim
                .compare_exchange(claim, end, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => {
                    // The padding before a wrapped message, if any, is the claim's
                    // first word: stored in its turn (`seal`, `publish`).
                    let bytes = BytesMut::new(self.ring.payload(frame_pos, len));
                    return Ok(MpscGrant {
                        producer: self,
                        start: claim,
                        frame_pos,
                        reserved: len,
                        bytes,
                        end,
                        done: false,
                    });
                }
                Err(current) => claim = current,
            }
        }
    }

    /// Copies `msg` into the ring and publishes it.
    ///
    /// # Errors
    ///
    /// [`PushError::Full`] when there is no room now (retry after the consumer
    /// releases); [`PushError::TooLarge`] beyond
    /// [`max_message_len`](Self::max_message_len), never waited for;
    /// [`PushError::Corrupt`] once the consumer corrupted the region (sticky).
    pub fn try_send(&self, msg: &[u8]) -> Result<Published, PushError> {
        let mut grant = self.try_reserve(msg.len())?;
        grant.write_at(0, msg);
        Ok(grant.commit())
    }

    /// Copies the concatenation of `parts` into the ring as one message.
    ///
    /// # Errors
    ///
    /// [`PushError::Full`] when there is no room now (retry after the consumer
    /// releases); [`PushError::TooLarge`] beyond
    /// [`max_message_len`](Self::max_message_len), never waited for;
    /// [`PushError::Corrupt`] once the consumer corrupted the region (sticky).
    pub fn try_send_vectored(&self, parts: &[&[u8]]) -> Result<Published, PushError> {
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

    /// Copies each of `msgs` into the ring, in order, and publishes them together: one
    /// tail swap, so at most one wake-up and one transfer of the tail's cache line to
    /// the consumer for the whole batch. Stops at the first message that does not fit
    /// now or fails, and says why ([`BatchSent::stopped`]); what was written before it
    /// is published.
    ///
    /// # Safety
    ///
    /// No other thread may claim space in this ring (`try_reserve`, `try_send*`,
    /// `try_send_batch`) until this returns, and no grant of this ring may be held:
    /// the batch's claims must be contiguous to be published as one (SPEC §1.7).
    /// Every other claim's publication must happen before this call or after it
    /// returns (a happens-before order, as one lock around all producers gives): a
    /// claim that waited for this one's turn would not be woken (`turn.rs`).
    /// Callers that serialize their producers, e.g. behind one lock, meet this.
    pub unsafe fn try_send_batch(&self, msgs: &[&[u8]]) -> BatchSent {
        let nothing = Published {
            wake: Wake::NotNeeded,
            flow: None,
        };
        if self.is_corrupt() {
            return BatchSent {
                sent: 0,
                published: nothing,
                stopped: Some(PushError::Corrupt(Corruption::Earlier)),
            };
        }
        // One claim for the whole batch: no other producer claims meanwhile (contract),
        // so the frames are placed one after another from `claim` and claimed with one
        // store at the end (no compare-and-swap per message).
        let start = self.claim.load(Ordering::Relaxed);
        let mut room = Room {
            head: self.cached_head.load(Ordering::Acquire),
            refreshed: false,
        };
        let (mut end, mut sent, mut stopped) = (start, 0, None);
        let mut first = 0;
        for msg in msgs {
            let at = (end, start);
            match self.place_in_batch(at, core::slice::from_ref(msg), &mut room, &mut first) {
                Ok(next) => end = next,
                Err(e) => {
                    stopped = Some(e);
                    break;
                }
            }
            sent += 1;
        }
        if sent == 0 {
            return BatchSent {
                sent,
                published: nothing,
                stopped,
            };
        }
        BatchSent {
            sent,
            published: self.publish_exclusive(start, end, first),
            stopped,
        }
    }

    /// Claims `start..end` with a store and publishes it, for the exclusive paths (no
    /// other thread claims or holds a grant meanwhile: the callers' contract).
    fn publish_exclusive(&self, start: u64, end: u64, first: u64) -> Published {
        self.claim.store(end, Ordering::Relaxed);
        let claim = Claim {
            start,
            end,
            first,
            alone: true,
        };
        self.publish(claim, true)
    }

    /// [`try_send_vectored`](Self::try_send_vectored) for a producer that is alone:
    /// the frame is claimed with one store, no compare-and-swap and no wait for an
    /// earlier claim's turn (the batch path with one message of `parts`).
    ///
    /// # Errors
    ///
    /// As [`try_send_vectored`](Self::try_send_vectored).
    ///
    /// # Safety
    ///
    /// As [`try_send_batch`](Self::try_send_batch): no other thread claims space in
    /// this ring until this returns, and no grant of this ring is held.
    pub unsafe fn try_send_vectored_exclusive(
        &self,
        parts: &[&[u8]],
    ) -> Result<Published, PushError> {
        if self.is_corrupt() {
            return Err(PushError::Corrupt(Corruption::Earlier));
        }
        let start = self.claim.load(Ordering::Relaxed);
        let mut room = Room {
            head: self.cached_head.load(Ordering::Acquire),
            refreshed: false,
        };
        let mut first = 0;
        let end = self.place_in_batch((start, start), parts, &mut room, &mut first)?;
        Ok(self.publish_exclusive(start, end, first))
    }

    /// Writes the concatenation of `parts` as a frame at `pos` (after a padding frame
    /// if it wraps) when it fits before the head; returns the end of its frame. `at`
    /// is `(pos, start)`, `start` the batch claim's: the word there is the claim's
    /// first, kept in `first` for [`publish`](Self::publish) to store in its turn.
    fn place_in_batch(
        &self,
        at: (u64, u64),
        parts: &[&[u8]],
        room: &mut Room,
        first: &mut u64,
    ) -> Result<u64, PushError> {
        let (pos, start) = at;
        let geo = self.ring.geometry;
        let len = parts
            .iter()
            .map(|p| p.len())
            .fold(0usize, usize::saturating_add);
        if len > geo.max_payload {
            return Err(PushError::TooLarge {
                len,
                max: geo.max_payload,
            });
        }
        let (frame_pos, end) = geo.place(pos, len);
        if !geo.fits(end, room.head) {
            if room.refreshed {
                return Err(PushError::Full);
            }
            room.head = self.refresh_head()?;
            room.refreshed = true;
            if !geo.fits(end, room.head) {
                return Err(PushError::Full);
            }
        }
        // SAFETY: `pos..end` is free (checked against the head) and ours (the batch's
        // claim, exclusive by the caller's contract; published only after this); every
        // offset below is inside it, hence inside the data area.
        unsafe {
            let mut put = |pos: u64, word: u64| {
                if pos == start {
                    *first = word;
                } else {
                    self.ring.data.store_word(geo.offset(pos), word);
                }
            };
            if frame_pos != pos {
                let pad = frame_pos.wrapping_sub(pos) as usize - FRAME_HEADER;
                put(pos, encode(TAG_PAD, pad as u32));
            }
            // The header first: the batch is visible only once its first word is
            // stored, so the order of writes within it is free; a header store queued
            // behind a long bulk copy waited for all of it (22 % of a 1 KiB stream's
            // sender samples).
            put(frame_pos, encode(TAG_MSG, len as u32));
            let mut at = geo.offset(frame_pos) + FRAME_HEADER;
            for part in parts {
                self.ring.data.write(at, part);
                at += part.len();
            }
        }
        Ok(end)
    }

    /// Publishes `claim` once every earlier claim is published: in its turn, the 0
    /// at its end, then its first word (Release), then the tail (module doc, linked
    /// headers).
    ///
    /// `can_ring` is false for a claim published by a grant's `Drop`, whose caller
    /// cannot ring the doorbell: the consumer's sleep flag is kept for the next
    /// publisher (and the wake recorded as owed, see [`Self::publish_keeping_flag`]).
    fn publish(&self, claim: Claim, can_ring: bool) -> Published {
        let Claim {
            start,
            end,
            first,
            alone,
        } = claim;
        self.turn_wait.wait_for(&self.turn, start);
        // Relaxed: only a bound for head validation, made visible to the other
        // producers through the tail swap (or the first word) and the consumer's
        // release (SPEC §1.7).
        self.published.store(end, Ordering::Relaxed);
        let geo = self.ring.geometry;
        // SAFETY: `start..end + 8` is this claim's (won CAS or exclusive) and free
        // space (`Geometry::fits`), inside the data area (the word at `end` is at
        // offset 0 when the claim ends there); the word at `end` is the next claim's
        // first, which its owner writes only after this turn.
        unsafe {
            self.ring.data.store_word(geo.offset(end), 0);
            self.ring
                .data
                .store_header_release(geo.offset(start), first);
        }
        let wake = if can_ring {
            let old = self.ring.header().tail.0.tail.swap(end, Ordering::Release);
            Wake::from_old_index(old)
        } else {
            self.publish_keeping_flag(start, end);
            Wake::NotNeeded
        };
        if alone {
            self.turn_wait.pass_alone(&self.turn, end);
        } else {
            self.turn_wait.pass(&self.turn, end);
        }
        Published {
            wake,
            flow: self.evaluate_flow(false),
        }
    }

    /// The tail update of a publication nobody can ring for: moves the tail from
    /// `start` (where the previous turn left it) to `end` with one `fetch_add`, which
    /// keeps the consumer's sleep flag in the same read-modify-write (a `swap` and a
    /// later `fetch_or` left a window in which the flag was clear, so a producer
    /// announcing sleep then saw no sleeping consumer). Release, as the publishing
    /// swap: the SKIP headers before the index. If the flag was set, the wake is owed:
    /// `owed_wake` is set after the tail update (Release), for the next
    /// `prepare_sleep_*` that sleeps to report. Only the turn holder moves the tail's
    /// position, so it is `start` here; a hostile consumer that rewrote it gets a
    /// garbled tail back, which no producer reads.
    #[cold]
    #[inline(never)]
    fn publish_keeping_flag(&self, start: u64, end: u64) {
        let tail_word = &self.ring.header().tail.0.tail;
        let old = tail_word.fetch_add(end.wrapping_sub(start), Ordering::Release);
        if old & SLEEP_BIT != 0 {
            self.owed_wake.store(1, Ordering::Release);
        }
    }

    /// Hands what was published since the last call to the consumer, as
    /// [`Producer::hand_off`](crate::Producer::hand_off): demotes its lines (the first
    /// 64) and the next header's to the shared last-level cache. For a thread about
    /// to wait for the consumer's answer, not for a stream (SPEC §1.3b). With several
    /// threads publishing and handing off, what each call covers is whatever it sees
    /// published: a hint, never a correctness matter.
    #[inline]
    pub fn hand_off(&self) {
        let to = self.published.load(Ordering::Relaxed);
        // A load and a store, not a `swap`: two racing calls may both demote the same
        // lines, which costs a hint; a locked instruction here cost the server thread
        // 5 % of its samples (`perf record` of `__rtt 64`, draining its stores).
        let from = self.handed_off.load(Ordering::Relaxed);
        self.handed_off.store(to, Ordering::Relaxed);
        handoff::demote(&self.ring, from, to);
    }

    /// Takes the wake a dropped grant owes the consumer: `Needed` when a grant dropped
    /// uncommitted (a drop cannot ring) left the consumer asleep over space only it
    /// can free, and its flag is still set (a delivering publish since has cleared it
    /// and rung; a consumer that cancelled is awake). `prepare_sleep_for_space` and
    /// `prepare_sleep_for_flow_off` report it as `wake_peer`; a producer that waits
    /// for space by polling instead (retrying a `Full` send) must call this when it
    /// finds the ring full and ring the consumer on `Needed`, or both may wait for
    /// good. ([`MpscGrant::abandon`] instead of a drop returns the wake at once.)
    ///
    /// Acquire pairs with the Release store of `owed_wake`, so the tail load sees the
    /// `fetch_add` that kept the flag, or a later value.
    #[cold]
    #[inline(never)]
    pub fn take_owed_wake(&self) -> Wake {
        if self.owed_wake.swap(0, Ordering::Acquire) == 0 {
            return Wake::NotNeeded;
        }
        Wake::from_old_index(self.ring.header().tail.0.tail.load(Ordering::Relaxed))
    }

    fn evaluate_flow(&self, force_refresh: bool) -> Option<FlowChange> {
        let geo = self.ring.geometry;
        let on = self.flow_on.load(Ordering::Relaxed) != 0;
        // Both only decide whether to re-read the head (SPEC §1.7): Relaxed.
        let published = self.published.load(Ordering::Relaxed);
        let cached = self.cached_head.load(Ordering::Relaxed);
        if !on && !force_refresh && ahead(published, cached) < geo.high {
            return None;
        }
        // Nothing from a ring found corrupt (ring audit L2); after the early return
        // above, so a publish below the watermark does not pay for the load.
        if self.is_corrupt() {
            return None;
        }
        // The occupancy from a `published` loaded after the head (not the one above).
        let (head, published) = self.refresh_head_and_bound().ok()?;
        let change = geo.flow_transition(on, ahead(published, head))?;
        let (from, to) = if change == FlowChange::On {
            (0, 1)
        } else {
            (1, 0)
        };
        self.flow_on
            .compare_exchange(from, to, Ordering::Relaxed, Ordering::Relaxed)
            .ok()?;
        self.mirror_flow();
        Some(change)
    }

    /// Copies the group's flow state into the header's informational `flow` word
    /// after a transition. Two transitions of different threads (on, then off) could
    /// store in reverse order and leave the word saying "on" while the group is off
    /// (ring audit L1), so each stores the state it loads with a `swap` (AcqRel) and
    /// stores again if the state moved meanwhile. The last swap in the word's
    /// modification order synchronizes with every earlier one (a release sequence of
    /// read-modify-writes), so the state load after it sees every transition whose
    /// thread swapped before: the last swapper stores the final state. Bounded: a
    /// retry needs another transition meanwhile, and after `FLOW_MIRROR_ATTEMPTS`
    /// the word (only informational, never trusted) is left as it is.
    #[cold]
    #[inline(never)]
    fn mirror_flow(&self) {
        let word = &self.ring.header().tail.0.flow;
        for _ in 0..FLOW_MIRROR_ATTEMPTS {
            let state = self.flow_on.load(Ordering::Relaxed);
            word.swap(state, Ordering::AcqRel);
            if self.flow_on.load(Ordering::Relaxed) == state {
                return;
            }
        }
    }

    /// Re-reads the consumer's head and reports a flow-control transition, if any.
    ///
    /// # Errors
    ///
    /// [`PushError::Corrupt`] once the consumer corrupted the region (sticky).
    pub fn poll_flow(&self) -> Result<Option<FlowChange>, PushError> {
        if self.is_corrupt() {
            return Err(PushError::Corrupt(Corruption::Earlier));
        }
        let change = self.evaluate_flow(true);
        if self.is_corrupt() {
            return Err(PushError::Corrupt(Corruption::Earlier));
        }
        Ok(change)
    }

    /// Announces that the calling thread is about to sleep until a message of `len`
    /// bytes fits; see [`Producer::prepare_sleep_for_space`](crate::Producer::prepare_sleep_for_space).
    ///
    /// # Errors
    ///
    /// [`PushError::TooLarge`] for a length that can never fit; [`PushError::Corrupt`]
    /// (sticky).
    pub fn prepare_sleep_for_space(&self, len: usize) -> Result<SleepCheck, PushError> {
        if self.is_corrupt() {
            return Err(PushError::Corrupt(Corruption::Earlier));
        }
        let geo = self.ring.geometry;
        if len > geo.max_payload {
            return Err(PushError::TooLarge {
                len,
                max: geo.max_payload,
            });
        }
        let claim = self.claim.load(Ordering::Relaxed);
        let (_, end) = geo.place(claim, len);
        self.announce(|head| !is_before(head, end) || geo.fits(end, head))
    }

    /// Announces sleep until occupancy falls to the low watermark.
    ///
    /// # Errors
    ///
    /// [`PushError::Corrupt`] once the consumer corrupted the region (sticky).
    pub fn prepare_sleep_for_flow_off(&self) -> Result<SleepCheck, PushError> {
        let low = self.ring.geometry.low;
        let published = self.published.load(Ordering::Relaxed);
        self.announce(|head| ahead(published, head) <= low)
    }

    fn announce(&self, ready: impl Fn(u64) -> bool) -> Result<SleepCheck, PushError> {
        if self.is_corrupt() {
            return Err(PushError::Corrupt(Corruption::Earlier));
        }
        let sleep = wake::announce(
            &self.ring.header().head.0.head,
            // Read before the index: a head below it would look like going backwards.
            || self.cached_head.load(Ordering::Acquire),
            |raw, previous| {
                // After the Acquire head load: Relaxed, as in `refresh_head`.
                let published = self.published.load(Ordering::Relaxed);
                let head = check_head(raw, previous, published)?;
                self.raise_cached_head(head);
                Ok(ready(head))
            },
        )
        .map_err(|c| self.poison(c))?;
        // A producer that sleeps waits for the consumer to free space; if only a
        // dropped grant's SKIP frames hold it and the consumer sleeps, nobody else
        // will wake it (H1 of the ring audit): report the owed wake.
        let wake_peer = if sleep {
            self.take_owed_wake()
        } else {
            Wake::NotNeeded
        };
        Ok(SleepCheck {
            sleep,
            wake_peer,
            flow: None,
        })
    }

    /// Withdraws a sleep announcement. The flag is one per ring, shared by the group:
    /// do not call this after a wake-up caused by the consumer (the flag is already
    /// clear, and another thread may have set it again since); call it when giving up
    /// waiting for another reason (a timeout) and no other thread of the group sleeps.
    pub fn cancel_sleep(&self) {
        wake::cancel(&self.ring.header().head.0.head);
    }
}

/// How many times [`MpscProducer::mirror_flow`] stores the group's flow state.
const FLOW_MIRROR_ATTEMPTS: u32 = 4;

/// A claim ready to publish: `start..end`, and the word at `start` (its first frame's
/// header, or the padding before it), which only its turn stores.
#[derive(Clone, Copy)]
struct Claim {
    start: u64,
    end: u64,
    first: u64,
    /// No other thread claims space or holds a grant until this claim is published
    /// (the exclusive paths' contract), so none can wait for the turn it passes on.
    alone: bool,
}

/// The head a batch checks its frames against (refreshed once at most).
struct Room {
    head: u64,
    refreshed: bool,
}

/// What [`MpscProducer::try_send_batch`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchSent {
    /// Messages written and published (a prefix of the batch).
    pub sent: usize,
    /// The publication's outcome (nothing to do when `sent` is 0).
    pub published: Published,
    /// Why the batch stopped before its end (`None`: every message went):
    /// [`PushError::Full`], [`PushError::TooLarge`] for the next message, or
    /// [`PushError::Corrupt`].
    pub stopped: Option<PushError>,
}

/// Space claimed by one producer thread. Commit it; dropping it publishes a SKIP frame.
///
/// Publication waits for every earlier claim of the group (claims publish in order):
/// hold at most one live grant per thread, publish it without waiting for anything,
/// and never `mem::forget` one, or threads deadlock (see
/// [`MpscProducer::try_reserve`], "Deadlocks").
#[must_use = "dropping a grant publishes an empty skip frame"]
pub struct MpscGrant<'p> {
    producer: &'p MpscProducer,
    /// Start of the claim (a padding frame may precede the message frame).
    start: u64,
    /// Invariant: `frame_pos..end` is exclusively ours (won CAS), free, contiguous,
    /// and holds a frame of the message's length.
    frame_pos: u64,
    /// The payload length claimed. Private, unlike the view: the committed frame is
    /// never longer (the view can be swapped with another grant's through `DerefMut`).
    reserved: usize,
    /// The message, less a prefix the caller skipped. Checked against `frame_pos` and
    /// `reserved` before it is committed.
    bytes: BytesMut<'p>,
    end: u64,
    done: bool,
}

impl<'p> core::ops::Deref for MpscGrant<'p> {
    type Target = BytesMut<'p>;

    #[inline]
    fn deref(&self) -> &BytesMut<'p> {
        &self.bytes
    }
}

impl core::ops::DerefMut for MpscGrant<'_> {
    #[inline]
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.bytes
    }
}

impl MpscGrant<'_> {
    /// Hides the first `n` bytes of the message (a header the caller has written):
    /// the view is the rest from then on, and the message still carries them. `n`
    /// past the end leaves nothing.
    #[inline]
    pub fn skip_prefix(&mut self, n: usize) {
        self.bytes.skip(n);
    }

    /// Shrinks the message to `len` bytes after the skipped prefix (the rest of the
    /// claim is still published, as the same frame's padding).
    #[inline]
    pub fn truncate(&mut self, len: usize) {
        self.bytes.truncate(len);
    }

    /// Publishes the claim: the message (`TAG_MSG`, if the view is still this grant's;
    /// else, as for `TAG_SKIP`, an empty SKIP frame and a SKIP of the rest).
    fn finish(&mut self, tag: u32, can_ring: bool) -> Published {
        let own = self.producer.ring.payload(self.frame_pos, self.reserved);
        let (tag, len) = match self.bytes.message_len_in(&own) {
            Some(len) if tag == TAG_MSG => (TAG_MSG, len),
            _ => (TAG_SKIP, 0),
        };
        let claim = self.seal(tag, len);
        self.producer.publish(claim, can_ring)
    }

    /// Writes the frame header(s) of the claim, for a frame of `len <= reserved` bytes,
    /// without publishing it; returns the claim, with its first word (the header, or
    /// the padding before it) for the caller to publish.
    fn seal(&mut self, tag: u32, len: usize) -> Claim {
        self.done = true;
        let geo = self.producer.ring.geometry;
        // A truncated message keeps its frame: the length says how much is payload and
        // the consumer skips to `end`, which must then match. So a truncated frame is
        // published as the message followed by a SKIP of the rest, if any.
        let msg_end = geo.place(self.frame_pos, len).1;
        let header = encode(tag, len as u32);
        // SAFETY: header words of frames inside our exclusive claim.
        let first = unsafe {
            if msg_end != self.end {
                let rest = self.end.wrapping_sub(msg_end) as usize - FRAME_HEADER;
                self.producer
                    .ring
                    .data
                    .store_word(geo.offset(msg_end), encode(TAG_SKIP, rest as u32));
            }
            if self.frame_pos == self.start {
                header
            } else {
                self.producer
                    .ring
                    .data
                    .store_word(geo.offset(self.frame_pos), header);
                let pad = self.frame_pos.wrapping_sub(self.start) as usize - FRAME_HEADER;
                encode(TAG_PAD, pad as u32)
            }
        };
        Claim {
            start: self.start,
            end: self.end,
            first,
            alone: false,
        }
    }

    /// Commits and publishes the message (after every earlier claim). A view swapped
    /// with another grant's (`mem::swap` through `DerefMut`) is not this grant's: the
    /// claim is then published as SKIP frames, as if the grant were dropped (but with
    /// the wake returned, as [`abandon`](Self::abandon)).
    pub fn commit(mut self) -> Published {
        self.finish(TAG_MSG, true)
    }

    /// Gives the claim up: publishes it as SKIP frames (after every earlier claim),
    /// as dropping the grant does, but returns the wake-up. `wake` is `Needed` when
    /// the consumer sleeps: nothing is delivered, but only the consumer can free the
    /// space, and a producer may be waiting for it. Prefer this to a drop where the
    /// consumer may sleep: a drop cannot ring, so it leaves the consumer's flag set
    /// for the group's next publish and records the wake as owed, which a producer
    /// that then sleeps for space reports (`SleepCheck::wake_peer`); if no producer
    /// calls the group again, nobody rings. A drop also loses the flow-control
    /// transition its publication may cause (`Published::flow`), which this returns.
    pub fn abandon(mut self) -> Published {
        self.finish(TAG_SKIP, true)
    }
}

impl Drop for MpscGrant<'_> {
    fn drop(&mut self) {
        if !self.done {
            // The claimed space must still be published, or later claims wait forever.
            // Nobody to ring: `publish` keeps a sleeping consumer's flag for the next
            // publisher and records the owed wake.
            let _ = self.finish(TAG_SKIP, false);
        }
    }
}
