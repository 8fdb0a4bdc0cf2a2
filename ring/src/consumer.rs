//! The single consumer of a ring (SPSC or MPSC: the consumer side is the same).
//!
//! The consumer owns `head`, caches the producer's `tail` and re-reads it (Acquire)
//! only when it has consumed everything it knew of. Every frame header is read once
//! into private memory and checked by [`crate::frame::decode`] against the private
//! geometry and the validated tail before any payload byte is touched. Releasing is a
//! Release `swap` of `head` whose old value carries the producer's sleep flag.
//!
//! On a linked ring ([`FLAG_LINKED`](crate::FLAG_LINKED), SPEC §1.3a) a consumer that
//! found nothing new at the tail waits by *probing* the word at its position with
//! Acquire (`probe`) instead of reading the tail again. Every producer stores a frame's
//! header with Release after the frame (an MPSC claim's first word in its turn) and
//! keeps the word after its newest frame zero, so that word is 0 (nothing yet) or the
//! header of a whole frame, which `decode` checks against `head + capacity` (the most
//! the producer may have written) instead of the tail. A waiting reader then misses on
//! the frame's line only, not on the tail's line first and the frame's after it; one
//! streaming behind the writer reads the tail (`poll`). The tail is still read where it
//! decides something: before a sleep (the wake protocol is the tail's, unchanged) and
//! in [`pending_bytes`](Consumer::pending_bytes). Any other word is left to the tail,
//! read at once: once the tail says a frame is there, the ordinary path reads it and
//! reports the corruption.

use crate::bytes::Bytes;
use crate::error::{AttachError, Corruption, PopError};
use crate::frame::{decode, tag_of, Frame, TAG_SKIP};
use crate::index::{check_tail_known, SLEEP_BIT};
use crate::layout::{RawRegion, RingPtrs};
use crate::sync::Ordering;
use crate::wake::{self, SleepCheck, Wake};
use crate::{fence, Config, Fences, Keepalive};
use core::cell::Cell;

/// How far past the frame being read [`Consumer::prefetch_ahead`] requests lines.
const PREFETCH_DISTANCE: u64 = 2048;
/// The largest frame after which [`Consumer::prefetch_ahead`] hints lines.
const PREFETCH_MAX_FRAME: u64 = 256;

/// The consuming side of a ring. `Send`, not `Sync`.
///
/// # Example
///
/// The sleep protocol: announce, and the producer's next publish says to wake you.
///
/// ```
/// use coroipc_ring::{heap, Config};
///
/// let (mut tx, mut rx) = heap::channel(&Config::new(1024))?;
/// assert!(rx.try_peek()?.is_none());
/// let check = rx.prepare_sleep()?;
/// assert!(check.sleep, "nothing to read: sleep on your doorbell");
/// // The producer's publish sees the announcement: it must ring the doorbell.
/// assert!(tx.try_send(b"wake up")?.wake.is_needed());
/// // Woken (or timed out): withdraw the announcement and read.
/// rx.cancel_sleep();
/// let (msg, _wake) = rx.try_recv_vec()?.expect("a message");
/// assert_eq!(msg, b"wake up");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Consumer {
    ring: RingPtrs,
    /// Position of the next frame to read. Frames in `head..pos` are consumed but not
    /// yet released. Invariant: `head <= pos <= cached_tail` (modulo 2^64, see
    /// `index.rs`), all 8-aligned.
    pos: u64,
    /// The last value stored into the shared head.
    head: u64,
    /// The end of the frames known published: the last tail read from shared memory
    /// that passed [`check_tail_known`], or the end of a frame a probe found past it.
    /// Invariant: `tail_seen <= cached_tail`, `cached_tail - head <= capacity`.
    cached_tail: u64,
    /// The last tail read from shared memory that passed [`check_tail_known`] (behind
    /// `cached_tail` while probes run ahead of the producer's tail store).
    tail_seen: u64,
    /// The ring is linked (`FLAG_LINKED` seen, never cleared): wait by probing headers.
    linked: bool,
    /// The line-aligned position up to which lines were hinted for prefetch (private,
    /// a hint only: nothing depends on it for safety).
    prefetched: u64,
    /// True when the last look at the tail found nothing new: the reader is waiting
    /// for a message (a round trip), not streaming behind the writer.
    waiting: bool,
    /// A linked ring's reader waits by probing headers (`poll`): set when a look at the
    /// tail found nothing new, cleared when two looks in a row found frames by probing.
    probing: bool,
    /// Set by the first corruption seen; every later call reports it.
    poisoned: Option<Corruption>,
    /// Abandoned-reservation frames are corruption ([`Consumer::refuse_abandoned`]):
    /// the producer is an SPSC [`Producer`](crate::Producer), which never writes one.
    refuse_abandoned: bool,
    /// Asymmetric rings: the producer's last sleep epoch this consumer rang for
    /// (`wake::wake_for`).
    producer_rung: u64,
    /// Asymmetric rings: this consumer's sleep epoch as last stored (odd: announced).
    /// A `Cell` because `cancel_sleep` takes `&self`; the handle is not `Sync`.
    epoch: Cell<u64>,
    _keep: Keepalive,
}

// SAFETY: every access to the shared region is atomic (the data area's through
// `sync::DataArea`), so any thread may make it; the private state moves with the value.
unsafe impl Send for Consumer {}

impl core::fmt::Debug for Consumer {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Consumer")
            .field("capacity", &self.ring.geometry.capacity)
            .field("pos", &self.pos)
            .field("head", &self.head)
            .field("cached_tail", &self.cached_tail)
            .field("poisoned", &self.poisoned)
            .finish()
    }
}

/// What [`Consumer::try_recv`] received.
#[must_use = "a sleeping producer must be woken"]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Received {
    /// Bytes copied into the caller's buffer.
    pub len: usize,
    /// Ring the producer's doorbell?
    pub wake: Wake,
}

impl Consumer {
    /// Initialises a fresh ring in `region` and returns its consumer.
    ///
    /// # Safety
    /// `region` satisfies [`RawRegion::new`]'s contract and nobody uses it yet; it
    /// must outlive the consumer (see [`Consumer::keep_alive`]). One consumer per ring.
    ///
    /// # Errors
    ///
    /// [`AttachError`]: the region is misaligned or too small, or `config` is invalid.
    pub unsafe fn create(region: RawRegion, config: &Config) -> Result<Self, AttachError> {
        // SAFETY: forwarded contract.
        unsafe { Self::create_with(region, config, Fences::Locked) }
    }

    /// [`create`](Self::create) with the protocol `fences` (see
    /// [`Producer::create_with`](crate::Producer::create_with)).
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
        Ok(Self::from_ring(ring, 0, 0))
    }

    /// Attaches to a ring another side created and returns its consumer.
    ///
    /// # Safety
    /// As for [`Consumer::create`], except that the region was initialised by the
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
        Ok(Self::from_ring(ring, head, tail))
    }

    pub(crate) fn from_ring(ring: RingPtrs, head: u64, tail: u64) -> Self {
        Consumer {
            ring,
            pos: head,
            head,
            cached_tail: tail,
            tail_seen: tail,
            linked: ring.is_linked(),
            prefetched: head & !63,
            waiting: false,
            probing: false,
            poisoned: None,
            refuse_abandoned: false,
            producer_rung: 0,
            epoch: Cell::new(0),
            _keep: Keepalive::default(),
        }
    }

    /// Keeps `owner` (typically the mapping holding the region) alive as long as this
    /// consumer.
    /// Owners accumulate: each call adds one, and none is dropped before the handle
    /// (the heap constructors already hold the region this way).
    #[cfg(feature = "alloc")]
    #[must_use]
    pub fn keep_alive(mut self, owner: alloc::sync::Arc<dyn core::any::Any + Send + Sync>) -> Self {
        crate::keep_also(&mut self._keep, owner);
        self
    }

    /// Treats an abandoned-reservation frame as corruption
    /// ([`Corruption::BadFrameTag`]), for a ring whose producer is an SPSC
    /// [`Producer`](crate::Producer), which never writes one.
    ///
    /// Threat answered: each such frame is 8 bytes the consumer steps over inside one
    /// call, so a hostile producer that fills the ring with them and moves the tail
    /// one lap at a time makes every `try_peek` walk `capacity / 8` frames (a million
    /// for an 8 MiB ring) for one store of its own. With them refused, a call steps
    /// over at most one padding frame (padding only ever runs to the end of the data
    /// area) before a message.
    #[must_use]
    pub fn refuse_abandoned(mut self) -> Self {
        self.refuse_abandoned = true;
        self
    }

    /// The configuration (private copy) this consumer runs with.
    pub fn config(&self) -> Config {
        self.ring.config()
    }

    /// The largest payload this ring carries.
    pub fn max_message_len(&self) -> usize {
        self.ring.geometry.max_payload
    }

    /// The position of the next frame this consumer reads: a byte count modulo 2^64
    /// (for diagnostics and tests; it only moves forward).
    pub fn position(&self) -> u64 {
        self.pos
    }

    /// The corruption that killed this ring, if one was seen.
    pub fn corruption(&self) -> Option<Corruption> {
        self.poisoned
    }

    /// The flow-control state the producer published (informational: a hostile
    /// producer can write anything there).
    pub fn flow_control(&self) -> bool {
        self.ring.flow_control()
    }

    /// A [`FlowWatch`](crate::FlowWatch) of this ring: its flow-control word, read
    /// from any thread while this consumer is busy on another. `owner` is what keeps
    /// the region mapped (the mapping, or the heap region), held by the watch.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use coroipc_ring::{heap::HeapRegion, Config, Consumer, Producer};
    ///
    /// let config = Config::new(4096);
    /// let region = Arc::new(HeapRegion::new(&config)?);
    /// // SAFETY: a fresh region, used by these two handles only, which keep it alive.
    /// let _tx = unsafe { Producer::create(region.raw(), &config) }?.keep_alive(region.clone());
    /// // SAFETY: initialised just above; kept alive as well.
    /// let rx = unsafe { Consumer::attach(region.raw()) }?.keep_alive(region.clone());
    /// // SAFETY: `region` owns the memory the ring lies in.
    /// let watch = unsafe { rx.flow_watch(region) };
    /// std::thread::spawn(move || assert!(!watch.flow_control())).join().unwrap();
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Safety
    ///
    /// `owner` keeps this ring's region mapped for as long as it lives: the watch may
    /// outlive the consumer, and reads the region while it lives.
    #[cfg(feature = "alloc")]
    pub unsafe fn flow_watch(
        &self,
        owner: alloc::sync::Arc<dyn core::any::Any + Send + Sync>,
    ) -> crate::FlowWatch {
        crate::FlowWatch::new(self.ring, owner)
    }

    /// Bytes published and not yet released, re-reading the tail.
    ///
    /// # Errors
    ///
    /// [`PopError::Corrupt`] once the producer corrupted the region (sticky).
    pub fn pending_bytes(&mut self) -> Result<usize, PopError> {
        self.check_poison()?;
        let raw = self.load_tail();
        self.accept_tail(raw)?;
        Ok(self.cached_tail.wrapping_sub(self.head) as usize)
    }

    #[inline]
    fn check_poison(&self) -> Result<(), PopError> {
        match self.poisoned {
            None => Ok(()),
            Some(c) => Err(PopError::Corrupt(c)),
        }
    }

    #[cold]
    fn poison(&mut self, c: Corruption) -> PopError {
        self.poisoned = Some(c);
        PopError::Corrupt(c)
    }

    /// Reads the shared tail (Acquire: frames before it were fully written).
    #[inline(always)]
    fn load_tail(&self) -> u64 {
        self.ring.header().tail.0.tail.load(Ordering::Acquire)
    }

    /// Validates a tail word just read and caches it.
    #[inline(always)]
    fn accept_tail(&mut self, raw: u64) -> Result<(), PopError> {
        match check_tail_known(
            raw,
            self.tail_seen,
            self.cached_tail,
            self.head,
            self.ring.geometry.capacity,
        ) {
            Ok((seen, known)) => {
                (self.tail_seen, self.cached_tail) = (seen, known);
                Ok(())
            }
            Err(c) => Err(self.poison(c)),
        }
    }

    /// Finds the next message frame, skipping padding and abandoned frames:
    /// `Some((frame_pos, len, end))`.
    ///
    /// The fast path (a message frame at `pos`, known or newly published) is straight
    /// line code inlined into [`try_peek`](Consumer::try_peek) and
    /// [`try_recv`](Consumer::try_recv); the loop over skipped frames is out of line.
    /// Measured (2026-12-06, ring ping-pong, six alternating runs against the build
    /// before): 64 B 486 -> 349 ns median per round trip, 1.50x -> 1.15x rtrb's in the
    /// same runs; 56 B and 8 B messages did not move (README). Neither half alone (the
    /// skip loop out of line, `try_recv` inlined) gave anything. Handing every
    /// non-message frame to the slow path (which decodes it again) then took 8 B from
    /// 418 to 386 ns, 64 B unchanged.
    #[inline(always)]
    fn next_frame(&mut self) -> Result<Option<(u64, usize, u64)>, PopError> {
        self.check_poison()?;
        if self.pos == self.cached_tail && !self.poll()? {
            return Ok(None);
        }
        let geo = self.ring.geometry;
        // SAFETY: `pos` is 8-aligned and below the validated tail, so its offset
        // is a whole word inside the data area, published to us.
        let word = unsafe { self.ring.data.load_word(geo.offset(self.pos)) };
        match decode(&geo, word, self.pos, self.cached_tail) {
            Ok(Frame::Message { len, end }) => {
                self.prefetch_ahead(end);
                Ok(Some((self.pos, len, end)))
            }
            // A skip or a corrupt frame: the slow path decodes it again and decides.
            _ => self.next_frame_slow(),
        }
    }

    /// [`next_frame`](Consumer::next_frame) when the frame at `pos` is not a message:
    /// the loop over padding and abandoned frames, and corruption, out of the hot path.
    /// Finding no message after them, it releases them if it can
    /// ([`release_skipped`](Consumer::release_skipped)).
    #[cold]
    #[inline(never)]
    fn next_frame_slow(&mut self) -> Result<Option<(u64, usize, u64)>, PopError> {
        let geo = self.ring.geometry;
        let entry = self.pos;
        loop {
            if self.pos == self.cached_tail && !self.poll()? {
                // Only skipped frames are pending (nothing consumed before them).
                if self.pos != entry && self.head == entry {
                    self.release_skipped();
                }
                return Ok(None);
            }
            // SAFETY: as in `next_frame`.
            let word = unsafe { self.ring.data.load_word(geo.offset(self.pos)) };
            match decode(&geo, word, self.pos, self.cached_tail) {
                Ok(Frame::Message { len, end }) => return Ok(Some((self.pos, len, end))),
                Ok(Frame::Skip { .. }) if self.refuse_abandoned && tag_of(word) == TAG_SKIP => {
                    return Err(self.poison(Corruption::BadFrameTag(TAG_SKIP)))
                }
                // Each skip strictly advances `pos` towards the tail: the loop ends.
                Ok(Frame::Skip { end }) => self.pos = end,
                Err(c) => return Err(self.poison(c)),
            }
        }
    }

    /// Releases the frames a look stepped over and found no message after, so that a
    /// consumer that only polls does not keep their space from the producer (ring
    /// audit M1). A compare-and-swap of the shared head from our last release: it
    /// succeeds only while the word holds exactly that, i.e. the producer's sleep flag
    /// is clear, so no wake-up is due and none is lost. If the producer announced sleep
    /// the CAS fails, and the bytes wait for [`release`](Consumer::release) or
    /// [`prepare_sleep`](Consumer::prepare_sleep), whose swap returns the flag (the
    /// `Wake` the caller acts on). Release on success, as `release`'s swap: our reads of
    /// the frames before the producer overwrites them.
    #[cold]
    #[inline(never)]
    fn release_skipped(&mut self) {
        // An asymmetric ring's producer is SPSC: it writes padding only before a
        // message, published with it, so an honest one never leaves skipped frames
        // alone at the tail; a hostile one's stay until `release` (its own space).
        if self.ring.fences == Fences::Asymmetric {
            return;
        }
        let released = self.ring.header().head.0.head.compare_exchange(
            self.head,
            self.pos,
            Ordering::Release,
            Ordering::Relaxed,
        );
        if released.is_ok() {
            self.head = self.pos;
        }
    }

    /// With everything known consumed (`pos == cached_tail`): says whether a frame
    /// was published at `pos`. A reader streaming behind the writer reads the tail: it
    /// learns of many frames from one load, and hints their lines ahead
    /// (`prefetch_ahead`); probing alone took 64 B batched from 100 to 69-77 M msg/s.
    /// On a linked ring, once a look at the tail found nothing new, the reader waits by
    /// probing the next frame's header instead (`probing`), so it misses on that
    /// frame's line only, and stays so while each frame it finds is the one it waited
    /// for (a round trip); two found in a row mean the writer is ahead, and it goes
    /// back to the tail. Switching after the first look that found nothing, not later:
    /// after 16 looks at the tail the ping-pong gain was gone (64 B 474-501 ns, against
    /// 386 switching at once and 469-492 without probes), the consumer holding the
    /// tail's line when the producer's `swap` wants it. Staying in probing after a
    /// frame, rather than reading the tail first at the next look: ipc round trip 64 B
    /// 591 -> 576 ns (medians of six alternating runs, each pair in its favour).
    #[inline(always)]
    fn poll(&mut self) -> Result<bool, PopError> {
        let linked = self.linked || self.became_linked();
        if !linked {
            return self.poll_tail();
        }
        if !self.probing {
            // On a miss this sets `waiting`.
            if self.poll_tail()? {
                return Ok(true);
            }
            self.probing = true;
            return self.probe();
        }
        let was_waiting = self.waiting;
        let found = self.probe()?;
        // Two frames found in a row by their headers: the writer is ahead, so the next
        // look reads the tail again (many frames at once, and their hints).
        if found && !was_waiting {
            self.probing = false;
        }
        Ok(found)
    }

    /// Looks again at the ring's flag (one load of the meta line, which nothing writes
    /// after creation but the producer's linking and, on an asymmetric ring, the sleep
    /// epochs): a producer that attaches links the ring after its consumer started.
    #[inline(always)]
    fn became_linked(&mut self) -> bool {
        self.linked = self.ring.is_linked();
        self.linked
    }

    /// A linked ring's wait: the Acquire load of the word at `pos`. 0 is nothing yet;
    /// a header that decodes inside `pos..=head + capacity` is a whole published frame
    /// (module doc), and its end becomes the known bound. Any other word is not judged
    /// here: the tail decides whether it is published, and the ordinary path then
    /// reports it (an honest producer never leaves one there).
    #[inline(always)]
    fn probe(&mut self) -> Result<bool, PopError> {
        let geo = self.ring.geometry;
        // SAFETY: `pos` is 8-aligned, so its offset is a whole word inside the data
        // area; the load is atomic whoever writes there.
        let word = unsafe { self.ring.data.load_header_acquire(geo.offset(self.pos)) };
        if word == 0 {
            self.waiting = true;
            return Ok(false);
        }
        let bound = self.head.wrapping_add(geo.capacity);
        let end = match decode(&geo, word, self.pos, bound) {
            Ok(Frame::Message { end, .. } | Frame::Skip { end }) => end,
            Err(_) => return self.poll_tail(),
        };
        self.cached_tail = end;
        self.fetch_frame_lines();
        Ok(true)
    }

    /// With everything known consumed (`pos == cached_tail`): re-reads the tail and
    /// says whether it moved. An unchanged tail needs no validation (it equals the
    /// validated one, sleep bit aside), so a poll that finds nothing is one load and
    /// one compare.
    #[inline(always)]
    fn poll_tail(&mut self) -> Result<bool, PopError> {
        let raw = self.load_tail();
        if raw & !SLEEP_BIT == self.tail_seen {
            self.waiting = true;
            return Ok(false);
        }
        self.accept_tail(raw)?;
        if self.pos == self.cached_tail {
            // A tail that moved within what probes had found: nothing new.
            self.waiting = true;
            return Ok(false);
        }
        self.fetch_frame_lines();
        Ok(true)
    }

    /// A frame just found at `pos` after waiting for it: if it is a lone small frame
    /// (at most 192 bytes: a request or a response) that spans more than one line,
    /// fetch its other lines together with the header's, so their misses overlap the
    /// first (ping-pong 64 B: 279 -> 218 ns). Every line, and frames of a line or less
    /// too when they straddle two: a 40-byte frame (the ipc round trip at 16 B) does
    /// at four of the eight offsets it takes in turn, a 56-byte one (32 B) at six, and
    /// an 88-byte one (64 B) spans three lines at two. Six round-robin rounds of
    /// `__rtt` (medians): round trip 16 B 499 -> 452 ns, 32 B 535 -> 496, where sizes
    /// whose frames the change does not touch moved 5-25 ns (the build's layout); the
    /// third line alone, 64 B 552 -> 525 ns against 12-17 ns for those sizes. Not for
    /// a reader streaming behind the writer: it gains nothing and would pull lines
    /// the writer is still filling (1 KiB frames lost a third, 8 B frames an eighth).
    #[inline(always)]
    fn fetch_frame_lines(&mut self) {
        // `pos..cached_tail` is published: a frame a probe decoded, or up to the
        // validated tail (then possibly several frames, or a range that wraps).
        let known = self.cached_tail.wrapping_sub(self.pos);
        if core::mem::replace(&mut self.waiting, false) && (1..=192).contains(&known) {
            let offset = self.ring.geometry.offset(self.pos);
            // At most three lines; `prefetch` ignores offsets past the data area, so
            // the part of a wrapped range at its start goes unhinted.
            let last = offset + known as usize - 1;
            let mut line = (offset & !63) + 64;
            while line <= last {
                self.ring.data.prefetch(line);
                line += 64;
            }
        }
    }

    /// Keeps the published lines up to [`PREFETCH_DISTANCE`] bytes past `end` (the
    /// frame being returned) requested from the producer's cache.
    ///
    /// Why: the next frame's position is read from this frame's header, so without it
    /// a reader behind the writer misses on one line per message *in sequence*, each
    /// waiting for the one before (the header's length gives the next address). Hints
    /// for lines already published make those misses overlap. Only published lines
    /// (below the validated tail, less the line the writer may still be filling) are
    /// requested, each once (`prefetched`); a round trip (one frame published) requests
    /// nothing. Measured (`coroipc-bench __ring 64 32`, three alternating runs):
    /// 31.5 -> 100 M msg/s; 64 B single messages 11.7 -> 52.7 M msg/s (SPEC §1.3).
    #[inline(always)]
    fn prefetch_ahead(&mut self, end: u64) {
        // A large frame's own lines are read independently of each other (the copy
        // overlaps their misses); hinting the lines after it only adds traffic for a
        // reader that skips its middle (`__ring 1024 32`: 25 -> 18 M msg/s with it).
        if end.wrapping_sub(self.pos) > PREFETCH_MAX_FRAME {
            return;
        }
        let want = end.wrapping_add(PREFETCH_DISTANCE);
        // `want` at least a line before the tail (positions are modulo 2^64; the
        // difference is small and positive exactly when it is before).
        if self.cached_tail.wrapping_sub(want).wrapping_sub(64) > self.ring.geometry.capacity {
            return;
        }
        self.prefetch_lines(end, want);
    }

    /// Requests each line from `max(prefetched, end)` to `want`.
    #[inline(always)]
    fn prefetch_lines(&mut self, end: u64, want: u64) {
        let geo = self.ring.geometry;
        // `prefetched` behind `end` (a jump, or the first frame): start at `end`.
        let mut line = if self.prefetched.wrapping_sub(end) > PREFETCH_DISTANCE + 64 {
            end & !63
        } else {
            self.prefetched
        };
        let mut budget = PREFETCH_DISTANCE / 64;
        while want.wrapping_sub(line) <= PREFETCH_DISTANCE && budget > 0 {
            self.ring.data.prefetch(geo.offset(line));
            line = line.wrapping_add(64);
            budget -= 1;
        }
        self.prefetched = line;
    }

    /// Looks at the next message in place. Dropping the grant leaves the message in the
    /// ring; [`ReadGrant::release`] consumes it.
    ///
    /// Padding and abandoned (SKIP) frames before the next message are stepped over.
    /// When there is no message after them (`Ok(None)`), they are released here if no
    /// wake-up is due; if the producer announced sleep (waiting for that space), they
    /// stay consumed but unreleased. A consumer that sleeps releases them in
    /// [`prepare_sleep`](Self::prepare_sleep); one that never sleeps must call
    /// [`release`](Self::release) after `None` and ring the producer's doorbell when
    /// its [`Wake`] says so, or a sleeping producer waits forever.
    ///
    /// # Errors
    ///
    /// [`PopError::Corrupt`] once the producer corrupted the region (sticky).
    #[inline(always)]
    pub fn try_peek(&mut self) -> Result<Option<ReadGrant<'_>>, PopError> {
        Ok(self.next_frame()?.map(|(frame_pos, len, end)| {
            let bytes = Bytes::new(self.ring.payload(frame_pos, len));
            ReadGrant {
                consumer: self,
                bytes,
                end,
            }
        }))
    }

    /// Copies the next message into `buf` and releases it. A message longer than `buf`
    /// stays in the ring and [`PopError::BufferTooSmall`] says how long it is.
    ///
    /// Skipped frames before it are handled as in [`try_peek`](Self::try_peek): after
    /// `Ok(None)`, a consumer that never sleeps must call [`release`](Self::release)
    /// and act on its [`Wake`].
    ///
    /// # Errors
    ///
    /// [`PopError::BufferTooSmall`] when `buf` is shorter than the next message (it
    /// stays in the ring); [`PopError::Corrupt`] once the producer corrupted the region
    /// (sticky).
    #[inline(always)]
    pub fn try_recv(&mut self, buf: &mut [u8]) -> Result<Option<Received>, PopError> {
        let Some(grant) = self.try_peek()? else {
            return Ok(None);
        };
        if grant.len() > buf.len() {
            return Err(PopError::BufferTooSmall {
                needed: grant.len(),
            });
        }
        let len = grant.len();
        grant.read_into(&mut buf[..len]);
        Ok(Some(Received {
            len,
            wake: grant.release(),
        }))
    }

    /// Receives the next message into a new `Vec` and releases it.
    ///
    /// # Errors
    ///
    /// [`PopError::Corrupt`] once the producer corrupted the region (sticky).
    #[cfg(feature = "alloc")]
    pub fn try_recv_vec(&mut self) -> Result<Option<(alloc::vec::Vec<u8>, Wake)>, PopError> {
        let Some(grant) = self.try_peek()? else {
            return Ok(None);
        };
        let out = grant.to_vec();
        Ok(Some((out, grant.release())))
    }

    /// Publishes every consumed message with one Release `swap` of the shared head.
    #[inline]
    pub fn release(&mut self) -> Wake {
        if self.pos == self.head {
            return Wake::NotNeeded;
        }
        if self.ring.fences == Fences::Asymmetric {
            return self.release_asymmetric();
        }
        let old = self
            .ring
            .header()
            .head
            .0
            .head
            .swap(self.pos, Ordering::Release);
        self.head = self.pos;
        Wake::from_old_index(old)
    }

    /// The publisher's half of the asymmetric protocol (`fence.rs`) for the head.
    #[inline(always)]
    fn release_asymmetric(&mut self) -> Wake {
        let header = self.ring.header();
        header.head.0.head.store(self.pos, Ordering::Release);
        self.head = self.pos;
        fence::light();
        let epoch = header.meta.0.producer_sleep.load(Ordering::Relaxed);
        wake::wake_for(epoch, &mut self.producer_rung)
    }

    /// Bytes consumed and not yet released.
    pub fn consumed_bytes(&self) -> usize {
        self.pos.wrapping_sub(self.head) as usize
    }

    /// Announces that this consumer is about to sleep until a message arrives.
    /// Consumed messages are released first. If `sleep` comes back true, wait on the
    /// doorbell, then call [`cancel_sleep`](Consumer::cancel_sleep) and retry.
    ///
    /// # Errors
    ///
    /// [`PopError::Corrupt`] once the producer corrupted the region (sticky).
    pub fn prepare_sleep(&mut self) -> Result<SleepCheck, PopError> {
        self.check_poison()?;
        let wake_peer = self.release();
        let (head, pos, capacity) = (self.head, self.pos, self.ring.geometry.capacity);
        let (mut seen, mut cached) = (self.tail_seen, self.cached_tail);
        let header = self.ring.header();
        let check = |raw, ()| {
            (seen, cached) = check_tail_known(raw, seen, cached, head, capacity)?;
            Ok(cached != pos)
        };
        let (tail, flag) = (&header.tail.0.tail, &header.meta.0.consumer_sleep);
        let sleep = match self.ring.fences {
            Fences::Locked => wake::announce(tail, || (), check),
            Fences::Asymmetric => wake::announce_asymmetric(flag, &self.epoch, tail, check),
        };
        (self.tail_seen, self.cached_tail) = (seen, cached);
        let sleep = sleep.map_err(|c| self.poison(c))?;
        Ok(SleepCheck {
            sleep,
            wake_peer,
            flow: None,
        })
    }

    /// Withdraws a sleep announcement (after waking, or instead of sleeping).
    pub fn cancel_sleep(&self) {
        let header = self.ring.header();
        match self.ring.fences {
            Fences::Locked => wake::cancel(&header.tail.0.tail),
            Fences::Asymmetric => {
                wake::cancel_asymmetric(&header.meta.0.consumer_sleep, &self.epoch);
            }
        }
    }
}

/// One message, borrowed in place from the ring; read it through [`Bytes`], which it
/// derefs to.
///
/// [`release`](ReadGrant::release) consumes it and publishes; [`consume`](ReadGrant::consume)
/// consumes it and defers publication to [`Consumer::release`]. Dropping it leaves the
/// message in the ring.
#[must_use = "a peeked message stays in the ring unless released or consumed"]
pub struct ReadGrant<'c> {
    consumer: &'c mut Consumer,
    /// The payload. Invariant: the frame was validated by `decode` and lies inside
    /// the data area and below the validated tail; the view is that frame's payload,
    /// less a prefix the caller skipped.
    bytes: Bytes<'c>,
    end: u64,
}

impl<'c> core::ops::Deref for ReadGrant<'c> {
    type Target = Bytes<'c>;

    #[inline]
    fn deref(&self) -> &Bytes<'c> {
        &self.bytes
    }
}

impl ReadGrant<'_> {
    /// Hides the first `n` bytes of the message (a header the caller has read): the
    /// view is the rest from then on. `n` past the end leaves nothing.
    #[inline]
    pub fn skip_prefix(&mut self, n: usize) {
        self.bytes.skip(n);
    }

    /// Consumes the message and releases it (with everything consumed before it).
    #[inline]
    pub fn release(self) -> Wake {
        self.consumer.pos = self.end;
        self.consumer.release()
    }

    /// Consumes the message without releasing it (batch with [`Consumer::release`]).
    #[inline]
    pub fn consume(self) {
        self.consumer.pos = self.end;
    }

    /// Lets go of the grant, leaving the message in the ring, and returns a token
    /// that [`Consumer::take`] turns back into this grant (its skipped prefix
    /// included) without finding and checking the frame again: for a caller that
    /// must end the grant's borrow of the consumer (to wait, or to look elsewhere)
    /// and then take the message it chose.
    #[inline]
    pub fn leave(self) -> Peeked {
        Peeked {
            pos: self.consumer.pos,
            end: self.end,
            payload: *self.bytes.payload(),
        }
    }
}

/// A message left in the ring by [`ReadGrant::leave`], to take again with
/// [`Consumer::take`].
///
/// It holds what the grant held: the frame's position and end, and the view of its
/// payload inside the data area the frame was validated in. Nothing in it is read
/// from shared memory again.
#[derive(Clone, Copy, Debug)]
#[must_use = "a token does nothing unless taken"]
pub struct Peeked {
    /// The frame's position: the token is good while the consumer is still there
    /// (so the frame is unconsumed, and no producer may overwrite it).
    pos: u64,
    end: u64,
    /// Invariant: inside the data area it names (the grant's view).
    payload: crate::payload::Payload,
}

impl Consumer {
    /// The message `peeked` left in the ring, as a grant again; `None` if this
    /// consumer has moved past it (it was consumed), it is another ring's, or the
    /// ring was found corrupt since. No shared memory is read.
    #[inline]
    pub fn take(&mut self, peeked: Peeked) -> Option<ReadGrant<'_>> {
        // The same data area (base and length) keeps the view inside this mapping
        // whatever region the token came from; the same position means the frame
        // this consumer validated is still its next one.
        if peeked.pos != self.pos
            || peeked.payload.data != self.ring.data
            || self.poisoned.is_some()
        {
            return None;
        }
        Some(ReadGrant {
            consumer: self,
            bytes: Bytes::new(peeked.payload),
            end: peeked.end,
        })
    }
}

#[cfg(all(test, feature = "alloc", not(loom)))]
mod tests {
    use crate::{heap, Config};

    /// Every line hinted lies wholly below the tail the consumer validated: the line
    /// the writer may still be filling is never requested.
    #[test]
    fn hints_stay_below_the_published_tail() {
        let (mut tx, mut rx) = heap::channel(&Config::new(8192)).expect("ring");
        let mut hinted = false;
        for round in 0..40u8 {
            // A batch of varying size, so the tail lands at every offset in a line.
            for i in 0..(usize::from(round) % 30 + 1) {
                tx.try_stage(&[round; 200][..i * 7 % 200])
                    .expect("room: the reader empties the ring every round");
            }
            let _ = tx.publish();
            while let Some(g) = rx.try_peek().expect("sound") {
                g.consume();
                // `prefetched` is the end of the last line hinted; behind `pos` it is
                // stale (nothing hinted lately) and the next hint restarts at `pos`.
                let lead = rx.prefetched.wrapping_sub(rx.pos);
                if lead <= 8192 {
                    assert!(
                        rx.cached_tail.wrapping_sub(rx.prefetched) <= 8192,
                        "hinted past the tail: prefetched {} tail {}",
                        rx.prefetched,
                        rx.cached_tail
                    );
                    hinted |= lead > 64;
                }
            }
            let _ = rx.release();
        }
        assert!(hinted, "a reader behind the writer hints lines ahead");
    }

    /// A linked ring's waiting consumer finds a frame by its header, ahead of the
    /// tail; a word at its position that does not decode is not judged by the probe
    /// (nothing yet), and becomes corruption once the tail says it is published.
    #[test]
    fn a_probe_finds_whole_frames_and_leaves_garbage_to_the_tail() {
        let (mut tx, mut rx) = heap::channel(&Config::new(256)).expect("ring");
        assert!(rx.linked, "an SPSC producer links the ring it creates");
        assert!(rx.try_peek().expect("sound").is_none());
        tx.try_stage(b"early").expect("room");
        let g = rx.try_peek().expect("sound").expect("found by its header");
        assert_eq!(g.to_vec(), b"early");
        let _ = g.release();
        assert_eq!(rx.tail_seen, 0, "the tail was not needed");
        let _ = tx.publish();
        assert!(rx.try_peek().expect("sound").is_none(), "each frame once");
        // The tail, read now, lies within what the probe found: no news, no error.
        assert_eq!(rx.pending_bytes().expect("sound"), 0);
        assert_eq!(rx.tail_seen, rx.pos, "a tail within what probes found");
        // A hostile word where the next header goes: not a frame, not yet an error.
        let at = rx.ring.geometry.offset(rx.pos);
        // SAFETY: `at` is a whole word inside the data area.
        unsafe { rx.ring.data.store_word(at, crate::frame::encode(0xdead, 8)) };
        assert!(rx.try_peek().expect("not judged by the probe").is_none());
        // The tail moves over it: the ordinary path reads it and reports it.
        let tail = &rx.ring.header().tail.0.tail;
        tail.store(rx.pos + 16, crate::sync::Ordering::Release);
        assert!(rx.try_peek().is_err());
        assert!(rx.corruption().is_some());
    }

    /// A grant left and taken again is the same message, its skipped prefix kept;
    /// a token is refused once its message is consumed, by another ring's consumer,
    /// and once the ring is found corrupt.
    #[test]
    fn a_left_grant_is_taken_again_while_it_is_next() {
        let (mut tx, mut rx) = heap::channel(&Config::new(256)).expect("ring");
        let (mut tx2, mut rx2) = heap::channel(&Config::new(256)).expect("ring");
        let _ = tx.try_send(b"hdr:first").expect("room");
        let _ = tx.try_send(b"second").expect("room");
        let _ = tx2.try_send(b"hdr:other").expect("room");
        let mut g = rx.try_peek().expect("sound").expect("a message");
        g.skip_prefix(4);
        let token = g.leave();
        assert!(rx2.take(token).is_none(), "another ring's token");
        assert!(rx2.try_peek().expect("sound").is_some(), "rx2 untouched");
        // A hostile producer rewrites the header after the look: the token keeps the
        // bounds checked then, and nothing is read again.
        let at = rx.ring.geometry.offset(rx.pos);
        // SAFETY: `at` is a whole word inside the data area.
        unsafe {
            rx.ring
                .data
                .store_word(at, crate::frame::encode(crate::frame::TAG_MSG, 200))
        };
        let g = rx.take(token).expect("still next");
        assert_eq!(
            g.to_vec(),
            b"first",
            "the prefix stays skipped, the length kept"
        );
        g.consume();
        assert!(rx.take(token).is_none(), "consumed: the token is stale");
        let g = rx.try_peek().expect("sound").expect("the next message");
        assert_eq!(g.to_vec(), b"second");
        let token = g.leave();
        let _ = rx.poison(crate::Corruption::Earlier);
        assert!(rx.take(token).is_none(), "a corrupt ring hands out nothing");
    }

    /// A round trip (one frame published at a time) hints nothing.
    #[test]
    fn a_lone_frame_hints_nothing() {
        let (mut tx, mut rx) = heap::channel(&Config::new(4096)).expect("ring");
        let start = rx.prefetched;
        for i in 0..200u8 {
            let _ = tx.try_send(&[i; 64]).expect("room");
            let g = rx.try_peek().expect("sound").expect("a message");
            let _ = g.release();
        }
        assert_eq!(rx.prefetched, start);
    }
}
