//! The shared header, the ring geometry, and creating/attaching a region.
//!
//! Byte layout (production build; `SPEC.md` §1 is the normative text):
//!
//! ```text
//! 0x000  meta line   magic u64 | version u32 | flags u32 | capacity u64 | high u64 | low u64
//!                    | producer_sleep u64 (0x028) | consumer_sleep u64 (0x040): asymmetric rings
//! 0x080  tail line   tail u64 (bit 0: CONSUMER_SLEEPING) | flow u32
//! 0x100  head line   head u64 (bit 0: PRODUCER_SLEEPING)
//! 0x180  data area   `capacity` bytes of 8-byte aligned frames
//! ```
//!
//! Each index lives on its own 128-byte line (two 64-byte lines, so adjacent-line
//! prefetch cannot couple them). Indices are byte positions modulo 2^64 (see
//! `index.rs`); `position & (capacity - 1)` is the offset in the data area.

use core::ptr::NonNull;

use crate::error::{AttachError, ConfigError};
use crate::fence::Fences;
use crate::sync::{AtomicU32, AtomicU64, DataArea, Ordering, WORD_STRIDE};

/// "CORORING" in ASCII, little-endian.
pub const MAGIC: u64 = u64::from_le_bytes(*b"CORORING");
/// Version of the layout described in `SPEC.md`, for a ring with
/// [`Fences::Locked`](crate::Fences::Locked).
pub const VERSION: u32 = 1;
/// The same layout with [`Fences::Asymmetric`](crate::Fences::Asymmetric) (the sleep
/// epochs in use, the index words never carrying a flag).
pub const VERSION_ASYMMETRIC: u32 = 2;
/// Bit of the header's `flags`: the producer stores each frame's header (an MPSC
/// claim's first word) with Release after the frame and keeps the word after its
/// newest frame zero, so the consumer may find frames without reading the tail (SPEC
/// §1.3a).
pub const FLAG_LINKED: u32 = 1;
/// Bytes in one frame header.
pub const FRAME_HEADER: usize = 8;
/// Smallest data-area capacity accepted.
pub const MIN_CAPACITY: usize = 32;
/// Largest data-area capacity accepted (frame lengths are 32-bit).
pub const MAX_CAPACITY: usize = 1 << 31;
/// Alignment the region base must have.
pub const REGION_ALIGN: usize = 128;

/// One 128-byte line.
#[repr(C, align(128))]
pub(crate) struct Line<T>(pub(crate) T);

/// Immutable geometry, written once by the creating side.
#[repr(C)]
pub(crate) struct Meta {
    /// [`MAGIC`], stored last (Release) at creation so a reader that sees it sees the rest.
    pub(crate) magic: AtomicU64,
    pub(crate) version: AtomicU32,
    /// [`FLAG_LINKED`] once a producer keeps the linked-header invariant
    /// (`producer.rs`, `mpsc.rs`); set only by a producer, never cleared. Informational
    /// for the consumer (a hostile producer may set it: its frames are its own).
    pub(crate) flags: AtomicU32,
    /// Data-area bytes; a power of two in `MIN_CAPACITY..=MAX_CAPACITY`.
    pub(crate) capacity: AtomicU64,
    pub(crate) high_watermark: AtomicU64,
    pub(crate) low_watermark: AtomicU64,
    /// The producer's sleep epoch (odd: announced), written only by the producer, in an
    /// asymmetric ring (`fence.rs`); 0 and unused in a locked one. Not on the head line,
    /// which the consumer stores to just before it loads this: a load from a line whose
    /// ownership the same core is still acquiring waits for it (8 B single messages,
    /// epoch on the index lines: 22-32 M msg/s against 44-66 with plain stores alone).
    /// The meta line is otherwise read only at attach.
    pub(crate) producer_sleep: AtomicU64,
    pub(crate) _gap: [u64; 2],
    /// The consumer's sleep epoch, as `producer_sleep` for the producer, in the other
    /// 64-byte half of the meta line.
    pub(crate) consumer_sleep: AtomicU64,
}

/// Written by the producer (tail), and by the consumer only to set `SLEEP_BIT`.
#[repr(C)]
pub(crate) struct TailLine {
    /// Position one past the last published frame, `| SLEEP_BIT` while the consumer
    /// sleeps. Only the producer's own private copy is trusted by the producer.
    pub(crate) tail: AtomicU64,
    /// 1 while the producer considers the ring in flow control (informational for the
    /// consumer; never trusted by the producer).
    pub(crate) flow: AtomicU32,
}

/// Written by the consumer (head), and by the producer only to set `SLEEP_BIT`.
#[repr(C)]
pub(crate) struct HeadLine {
    /// Position one past the last released frame, `| SLEEP_BIT` while the producer sleeps.
    pub(crate) head: AtomicU64,
}

/// The shared header at the start of a region.
#[repr(C)]
pub(crate) struct Header {
    pub(crate) meta: Line<Meta>,
    pub(crate) tail: Line<TailLine>,
    pub(crate) head: Line<HeadLine>,
}

#[cfg(not(loom))]
const _: () = assert!(core::mem::size_of::<Header>() == 0x180);
#[cfg(not(loom))]
const _: () =
    assert!(core::mem::offset_of!(Meta, producer_sleep) == crate::offsets::PRODUCER_SLEEP);
#[cfg(not(loom))]
const _: () =
    assert!(core::mem::offset_of!(Meta, consumer_sleep) == crate::offsets::CONSUMER_SLEEP);

/// Bytes from the region base to the data area.
pub(crate) const HEADER_SIZE: usize = core::mem::size_of::<Header>();

impl Header {
    fn new(config: &Config, fences: Fences) -> Self {
        Header {
            meta: Line(Meta {
                magic: AtomicU64::new(0),
                version: AtomicU32::new(match fences {
                    Fences::Locked => VERSION,
                    Fences::Asymmetric => VERSION_ASYMMETRIC,
                }),
                flags: AtomicU32::new(0),
                capacity: AtomicU64::new(config.capacity as u64),
                high_watermark: AtomicU64::new(config.high_watermark as u64),
                low_watermark: AtomicU64::new(config.low_watermark as u64),
                producer_sleep: AtomicU64::new(0),
                _gap: [0; 2],
                consumer_sleep: AtomicU64::new(0),
            }),
            tail: Line(TailLine {
                tail: AtomicU64::new(0),
                flow: AtomicU32::new(0),
            }),
            head: Line(HeadLine {
                head: AtomicU64::new(0),
            }),
        }
    }
}

/// How a ring is created: capacity and flow-control watermarks, in bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    /// Data-area bytes: a power of two in [`MIN_CAPACITY`]`..=`[`MAX_CAPACITY`].
    pub capacity: usize,
    /// Occupancy (bytes) at or above which the producer reports flow control on.
    pub high_watermark: usize,
    /// Occupancy (bytes) at or below which the producer reports flow control off.
    pub low_watermark: usize,
}

impl Config {
    /// A ring of `capacity` bytes with watermarks at 3/4 and 1/4 of it.
    pub const fn new(capacity: usize) -> Self {
        Config {
            capacity,
            high_watermark: capacity / 4 * 3,
            low_watermark: capacity / 4,
        }
    }

    /// Replaces the watermarks (bytes of occupancy; `low < high <= capacity`).
    #[must_use]
    pub const fn with_watermarks(mut self, high: usize, low: usize) -> Self {
        self.high_watermark = high;
        self.low_watermark = low;
        self
    }

    /// Checks the configuration.
    ///
    /// # Errors
    ///
    /// [`ConfigError`]: the capacity is not a power of two in range, or the watermarks
    /// do not satisfy `low < high <= capacity`.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !self.capacity.is_power_of_two()
            || self.capacity < MIN_CAPACITY
            || self.capacity > MAX_CAPACITY
        {
            return Err(ConfigError::BadCapacity(self.capacity));
        }
        if self.low_watermark >= self.high_watermark || self.high_watermark > self.capacity {
            return Err(ConfigError::BadWatermarks {
                high: self.high_watermark,
                low: self.low_watermark,
            });
        }
        Ok(())
    }

    /// Bytes of region this configuration needs (header + data area).
    pub fn region_size(&self) -> usize {
        region_size(self.capacity)
    }

    /// The largest payload a ring of this capacity carries.
    pub const fn max_message_len(&self) -> usize {
        max_message_len(self.capacity)
    }
}

/// Bytes of region needed for a data area of `capacity` bytes.
///
/// Defined for every `capacity`, validated or not (ring audit L3): a size beyond
/// `usize` saturates at `usize::MAX`, which no region has, so attaching with it fails
/// (`AttachError::TooSmall`) instead of an overflow (a panic in debug builds).
pub const fn region_size(capacity: usize) -> usize {
    HEADER_SIZE.saturating_add((capacity / 8).saturating_mul(WORD_STRIDE))
}

/// The largest payload of a ring of `capacity` bytes: `capacity / 2 - 8`.
///
/// Half the ring is the bound under which a frame always fits an empty ring whatever
/// the offset of the index (either the space before the end or the space before the
/// index is at least half), so a legal message can never wait forever.
///
/// Defined for every `capacity`, validated or not (ring audit L3): 0 below 16 bytes
/// (no valid ring is that small, [`MIN_CAPACITY`]) instead of an underflow (a panic in
/// debug builds).
pub const fn max_message_len(capacity: usize) -> usize {
    (capacity / 2).saturating_sub(FRAME_HEADER)
}

/// Rounds a payload length up to the 8-byte frame granule.
#[inline]
pub(crate) const fn padded(len: usize) -> usize {
    (len + 7) & !7
}

/// The geometry each side keeps in private memory after creating or attaching.
///
/// Invariant: `capacity` is a power of two in range, `mask == capacity - 1`,
/// `max_payload == max_message_len(capacity)`, `low < high <= capacity`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Geometry {
    pub(crate) capacity: u64,
    pub(crate) mask: u64,
    pub(crate) max_payload: usize,
    pub(crate) high: u64,
    pub(crate) low: u64,
}

impl Geometry {
    fn from_config(config: &Config) -> Self {
        Geometry {
            capacity: config.capacity as u64,
            mask: config.capacity as u64 - 1,
            max_payload: max_message_len(config.capacity),
            high: config.high_watermark as u64,
            low: config.low_watermark as u64,
        }
    }

    /// Whether a frame ending at `end` fits while the consumer's head is at `head`:
    /// the one room rule of every producer. The word after the newest frame stays free
    /// (it holds the 0 of the linked-header invariant, SPEC §1.3a), so at most
    /// `capacity - 8` bytes are in use.
    #[inline(always)]
    pub(crate) fn fits(&self, end: u64, head: u64) -> bool {
        end.wrapping_sub(head) <= self.capacity - FRAME_HEADER as u64
    }

    #[inline]
    pub(crate) fn offset(&self, position: u64) -> usize {
        (position & self.mask) as usize
    }

    /// Where a frame of payload `len` goes when the write position is `position`:
    /// `(frame_position, end)`, with a padding frame at `position` when
    /// `frame_position != position`. `end - position` is the space it needs.
    #[inline]
    pub(crate) fn place(&self, position: u64, len: usize) -> (u64, u64) {
        let frame = (FRAME_HEADER + padded(len)) as u64;
        let to_end = self.capacity - (position & self.mask);
        if frame <= to_end {
            (position, position.wrapping_add(frame))
        } else {
            let at = position.wrapping_add(to_end);
            (at, at.wrapping_add(frame))
        }
    }
}

/// A region of memory holding one ring: a base pointer and a length.
///
/// Invariant: `base` is [`REGION_ALIGN`]-aligned and valid for `len` bytes for as long
/// as any handle built on it lives (the contract of the unsafe constructors).
#[derive(Clone, Copy, Debug)]
pub struct RawRegion {
    base: NonNull<u8>,
    len: usize,
}

impl RawRegion {
    /// Describes `len` bytes at `base`.
    ///
    /// # Safety
    /// `base` must be valid for reads and writes of `len` bytes, shared only with the
    /// peer side of the ring, for as long as any handle built on this region lives.
    /// The peer may write anything there at any time; this crate copes with that.
    ///
    /// # Errors
    ///
    /// [`AttachError::Misaligned`] when `base` is not `REGION_ALIGN`-aligned.
    pub unsafe fn new(base: NonNull<u8>, len: usize) -> Result<Self, AttachError> {
        if base.as_ptr().align_offset(REGION_ALIGN) != 0 {
            return Err(AttachError::Misaligned);
        }
        Ok(RawRegion { base, len })
    }

    /// Base pointer.
    pub fn base(&self) -> NonNull<u8> {
        self.base
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True if the region has no bytes.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// Pointers into one region plus private geometry: what every handle holds.
///
/// Invariant: `header` and `data` point into a live region laid out for `geometry`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RingPtrs {
    pub(crate) header: NonNull<Header>,
    pub(crate) data: DataArea,
    pub(crate) geometry: Geometry,
    /// The protocol, as found at create or attach time (private: the peer may rewrite
    /// the header's version later, which changes nothing here).
    pub(crate) fences: Fences,
}

impl RingPtrs {
    #[inline]
    pub(crate) fn header(&self) -> &Header {
        // SAFETY: the handle constructors guarantee the region outlives the handle and
        // holds an initialised header; the header is only accessed through atomics.
        unsafe { self.header.as_ref() }
    }

    /// The flow-control state the producer published (informational: a hostile
    /// producer can write anything there). `Relaxed`: it orders nothing.
    #[inline]
    pub(crate) fn flow_control(&self) -> bool {
        self.header().tail.0.flow.load(Ordering::Relaxed) != 0
    }

    /// Writes a fresh header and data area into `region`.
    ///
    /// # Safety
    /// `region` is valid (see [`RawRegion::new`]) and nobody else uses it yet.
    pub(crate) unsafe fn create(
        region: RawRegion,
        config: &Config,
        fences: Fences,
    ) -> Result<Self, AttachError> {
        config.validate().map_err(AttachError::Config)?;
        if fences == Fences::Asymmetric {
            crate::fence::register()?;
        }
        if region.len < config.region_size() {
            return Err(AttachError::TooSmall {
                needed: config.region_size(),
                len: region.len,
            });
        }
        let header = region.base.cast::<Header>();
        // SAFETY: the region is aligned for `Header` (REGION_ALIGN) and large enough;
        // nobody else uses it yet, so writing a fresh value is sound.
        unsafe { header.as_ptr().write(Header::new(config, fences)) };
        // SAFETY: HEADER_SIZE is within the region (checked size).
        let data_base = unsafe { region.base.add(HEADER_SIZE) };
        // SAFETY: the data area lies inside the region, 8-aligned (HEADER_SIZE is a
        // multiple of 128), and lives as long as the region.
        let data = unsafe { DataArea::new(data_base, config.capacity) };
        // SAFETY: nobody else uses the area yet; offset 0 is a whole word inside it.
        // The first frame's header goes at 0: a word there that no producer wrote would
        // look like one to a probing consumer (SPEC §1.3a), and the region is not
        // zeroed by the caller's contract.
        unsafe {
            data.init();
            data.store_word(0, 0);
        }
        let ptrs = RingPtrs {
            header,
            data,
            geometry: Geometry::from_config(config),
            fences,
        };
        ptrs.header().meta.0.magic.store(MAGIC, Ordering::Release);
        Ok(ptrs)
    }

    /// Checks and adopts a header another side created.
    ///
    /// # Safety
    /// `region` is valid (see [`RawRegion::new`]) and was initialised by `create`
    /// (by this or another process); if it was not, an error is returned as long as the
    /// memory is readable.
    pub(crate) unsafe fn attach(region: RawRegion) -> Result<Self, AttachError> {
        if region.len < HEADER_SIZE + MIN_CAPACITY {
            return Err(AttachError::TooSmall {
                needed: HEADER_SIZE + MIN_CAPACITY,
                len: region.len,
            });
        }
        let header_ptr = region.base.cast::<Header>();
        // SAFETY: aligned and large enough for a header; only atomics are read.
        let header = unsafe { header_ptr.as_ref() };
        let meta = &header.meta.0;
        if meta.magic.load(Ordering::Acquire) != MAGIC {
            return Err(AttachError::BadMagic);
        }
        let fences = match meta.version.load(Ordering::Relaxed) {
            VERSION => Fences::Locked,
            VERSION_ASYMMETRIC => {
                crate::fence::register()?;
                Fences::Asymmetric
            }
            version => return Err(AttachError::BadVersion(version)),
        };
        let config = Config {
            capacity: usize::try_from(meta.capacity.load(Ordering::Relaxed)).unwrap_or(0),
            high_watermark: usize::try_from(meta.high_watermark.load(Ordering::Relaxed))
                .unwrap_or(0),
            low_watermark: usize::try_from(meta.low_watermark.load(Ordering::Relaxed)).unwrap_or(0),
        };
        config.validate().map_err(AttachError::Config)?;
        if region.len < config.region_size() {
            return Err(AttachError::TooSmall {
                needed: config.region_size(),
                len: region.len,
            });
        }
        // SAFETY: HEADER_SIZE is within the region (checked size).
        let data_base = unsafe { region.base.add(HEADER_SIZE) };
        // SAFETY: inside the region, 8-aligned, lives as long as the region.
        let data = unsafe { DataArea::new(data_base, config.capacity) };
        Ok(RingPtrs {
            header: header_ptr,
            data,
            geometry: Geometry::from_config(&config),
            fences,
        })
    }

    /// Attaches (as [`attach`](Self::attach)) and validates the indices found there
    /// (`check_start`): the one attach path of every handle. Returns the ring and the
    /// starting head and tail.
    ///
    /// # Safety
    /// As for [`attach`](Self::attach).
    pub(crate) unsafe fn attach_at_start(
        region: RawRegion,
    ) -> Result<(Self, u64, u64), AttachError> {
        // SAFETY: forwarded contract.
        let ring = unsafe { Self::attach(region) }?;
        let header = ring.header();
        let (head, tail) = crate::index::check_start(
            header.head.0.head.load(Ordering::Acquire),
            header.tail.0.tail.load(Ordering::Acquire),
            ring.geometry.capacity,
        )
        .map_err(|_| AttachError::Mismatch)?;
        Ok((ring, head, tail))
    }

    /// The payload of the frame at `frame_pos`: its `len` bytes after the frame
    /// header. The one place a grant's bytes are located; the caller vouches that the
    /// frame lies inside the data area (placed or validated).
    #[inline(always)]
    pub(crate) fn payload(&self, frame_pos: u64, len: usize) -> crate::payload::Payload {
        crate::payload::Payload {
            data: self.data,
            offset: self.geometry.offset(frame_pos) + FRAME_HEADER,
            len,
        }
    }

    /// Declares the linked-header invariant from `tail` on (the producer's private
    /// tail, with nothing unreleased: `tail == head`): zeroes the word there, then sets
    /// [`FLAG_LINKED`] with Release, so a consumer that sees the flag sees the zero.
    pub(crate) fn link(&self, tail: u64) {
        // SAFETY: `offset` is 8-aligned and a whole word inside the data area; with
        // nothing unreleased the word is free space of the producer calling this.
        unsafe { self.data.store_word(self.geometry.offset(tail), 0) };
        self.header()
            .meta
            .0
            .flags
            .fetch_or(FLAG_LINKED, Ordering::Release);
    }

    /// Whether the producer declared the linked-header invariant (Acquire: the zeroed
    /// word [`link`](Self::link) wrote before the flag is visible after it).
    #[inline]
    pub(crate) fn is_linked(&self) -> bool {
        self.header().meta.0.flags.load(Ordering::Acquire) & FLAG_LINKED != 0
    }

    /// The configuration this side runs with.
    pub(crate) fn config(&self) -> Config {
        Config {
            capacity: self.geometry.capacity as usize,
            high_watermark: self.geometry.high as usize,
            low_watermark: self.geometry.low as usize,
        }
    }
}

impl Geometry {
    /// The hysteresis rule: with flow control `on` and `used` bytes occupied, which
    /// transition (if any) happens. On at `used >= high`, off at `used <= low`.
    #[inline]
    pub(crate) fn flow_transition(&self, on: bool, used: u64) -> Option<crate::FlowChange> {
        match on {
            false if used >= self.high => Some(crate::FlowChange::On),
            true if used <= self.low => Some(crate::FlowChange::Off),
            _ => None,
        }
    }
}
