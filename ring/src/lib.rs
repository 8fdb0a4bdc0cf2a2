//! `coroipc-ring`: message rings over a raw shared region.
//!
//! A ring carries variable-length byte messages from a producer to a consumer through
//! a region of memory both can map (a sealed memfd between processes, or the heap).
//! It is the transport of the `coroipc` IPC library and is usable on its own.
//!
//! * **Frames**: 8-byte aligned, an 8-byte header then a contiguous payload; a padding
//!   frame fills the end of the data area when a message does not fit before it. The
//!   largest message is `capacity / 2 - 8` ([`max_message_len`]).
//! * **Zero copy**: [`Producer::try_reserve`] → fill → [`WriteGrant::commit`];
//!   [`Consumer::try_peek`] → read → [`ReadGrant::release`]. Batched forms
//!   ([`WriteGrant::stage`] + [`Producer::publish`], [`ReadGrant::consume`] +
//!   [`Consumer::release`]) publish many messages with one index store.
//! * **Linked headers** ([`FLAG_LINKED`]): every producer stores a frame's header with
//!   Release after its payload and keeps the word after its newest frame zero, so a
//!   consumer waiting for the next frame polls that frame's line, not the tail's (a
//!   staged frame may be read before it is published; the ring keeps its last 8 bytes
//!   free). SPEC §1.3a.
//! * **Hand-off** ([`Producer::hand_off`]): a producer about to wait for the
//!   consumer's answer pushes what it published to the shared last-level cache, so the
//!   consumer does not miss on each line in this core's (SPEC §1.3b).
//! * **Hostile peers**: each side keeps its geometry and its own index in private
//!   memory and validates every index and frame header it reads; corruption is an
//!   error ([`Corruption`]), never a panic, an out-of-bounds access or UB.
//! * **Sleep/wake**: [`Consumer::prepare_sleep`] / [`Producer::prepare_sleep_for_space`]
//!   announce sleep; publishing and releasing return [`Wake`], which says when the
//!   peer's doorbell must be rung (never while the peer is awake). See [`wake`].
//! * **Flow control**: high/low watermarks with hysteresis ([`FlowChange`]).
//! * **MPSC**: [`MpscProducer`] lets several threads of one process produce; a thread
//!   waiting to publish behind a preempted one parks on a futex (on Linux) instead of
//!   spinning or yielding.
//!
//! The byte layout, every atomic ordering and its reason, and the validation rules are
//! in the repository's `SPEC.md`.
//!
//! # Example
//!
//! Two threads over a heap region, zero copy on both sides, with the wake-up answer
//! each operation returns (here nobody sleeps, so no doorbell is needed):
//!
//! ```
//! use coroipc_ring::{heap, Config};
//!
//! let (mut tx, mut rx) = heap::channel(&Config::new(4096))?;
//! let consumer = std::thread::spawn(move || {
//!     let mut got = Vec::new();
//!     while got.len() < 100 {
//!         match rx.try_peek().expect("a sound producer") {
//!             Some(msg) => {
//!                 let mut n = [0u8; 4];
//!                 msg.read_into(&mut n); // copied out: sound even if the peer is hostile
//!                 got.push(u32::from_le_bytes(n));
//!                 let _wake = msg.release();
//!             }
//!             None => std::hint::spin_loop(),
//!         }
//!     }
//!     got
//! });
//! for i in 0..100u32 {
//!     loop {
//!         match tx.try_reserve(4) {
//!             Ok(mut grant) => {
//!                 grant.write_at(0, &i.to_le_bytes());
//!                 let _published = grant.commit();
//!                 break;
//!             }
//!             Err(coroipc_ring::PushError::Full) => std::hint::spin_loop(),
//!             Err(e) => panic!("{e}"),
//!         }
//!     }
//! }
//! assert_eq!(consumer.join().expect("consumer"), (0..100).collect::<Vec<_>>());
//! # Ok::<(), coroipc_ring::AttachError>(())
//! ```
#![cfg_attr(not(any(feature = "std", test)), no_std)]
#![deny(unsafe_op_in_unsafe_fn)]
#![deny(missing_docs)]
#![warn(clippy::missing_errors_doc)]

#[cfg(feature = "alloc")]
extern crate alloc;

mod bytes;
mod consumer;
mod error;
mod fence;
mod frame;
mod handoff;
#[cfg(feature = "alloc")]
pub mod heap;
mod index;
mod layout;
mod mpsc;
mod payload;
mod producer;
mod sync;
mod turn;
pub mod wake;
#[cfg(feature = "alloc")]
mod watch;

pub use bytes::{Bytes, BytesMut};
pub use consumer::{Consumer, Peeked, ReadGrant, Received};
pub use error::{AttachError, ConfigError, Corruption, PopError, PushError};
pub use fence::Fences;
pub use layout::{
    max_message_len, region_size, Config, RawRegion, FLAG_LINKED, FRAME_HEADER, MAGIC,
    MAX_CAPACITY, MIN_CAPACITY, REGION_ALIGN, VERSION, VERSION_ASYMMETRIC,
};
pub use mpsc::{BatchSent, MpscGrant, MpscProducer};
pub use producer::{Producer, WriteGrant};
pub use wake::{FlowChange, Published, SleepCheck, Wake};
#[cfg(feature = "alloc")]
pub use watch::FlowWatch;

/// What a handle keeps alive: the owner of the region it points into.
#[cfg(feature = "alloc")]
pub(crate) type Keepalive = Option<alloc::sync::Arc<dyn core::any::Any + Send + Sync>>;
#[cfg(not(feature = "alloc"))]
pub(crate) type Keepalive = ();

/// Adds `owner` to what `keep` holds alive. Never drops a previous owner: the heap
/// constructors keep the region alive only through this field, so replacing it freed
/// the region under a live handle (a use-after-free from safe code). Both are held by
/// one `Arc` of the pair, itself `Any + Send + Sync`; this runs once per handle at
/// setup, never on a data path.
#[cfg(feature = "alloc")]
pub(crate) fn keep_also(
    keep: &mut Keepalive,
    owner: alloc::sync::Arc<dyn core::any::Any + Send + Sync>,
) {
    *keep = Some(match keep.take() {
        None => owner,
        Some(old) => alloc::sync::Arc::new((old, owner)),
    });
}

/// Byte offsets of the shared header's fields (production layout; see `SPEC.md`).
#[cfg(not(loom))]
pub mod offsets {
    /// `magic: u64`.
    pub const MAGIC: usize = 0x000;
    /// `version: u32`.
    pub const VERSION: usize = 0x008;
    /// `flags: u32` ([`FLAG_LINKED`](crate::FLAG_LINKED)).
    pub const FLAGS: usize = 0x00c;
    /// `capacity: u64`.
    pub const CAPACITY: usize = 0x010;
    /// `high_watermark: u64`.
    pub const HIGH_WATERMARK: usize = 0x018;
    /// `low_watermark: u64`.
    pub const LOW_WATERMARK: usize = 0x020;
    /// `producer_sleep: u64`, the producer's sleep epoch (asymmetric rings only).
    pub const PRODUCER_SLEEP: usize = 0x028;
    /// `consumer_sleep: u64`, the consumer's sleep epoch (asymmetric rings only).
    pub const CONSUMER_SLEEP: usize = 0x040;
    /// `tail: u64` (bit 0: consumer sleeping).
    pub const TAIL: usize = 0x080;
    /// `flow: u32`.
    pub const FLOW: usize = 0x088;
    /// `head: u64` (bit 0: producer sleeping).
    pub const HEAD: usize = 0x100;
    /// Start of the data area.
    pub const DATA: usize = 0x180;
    const _: () = assert!(DATA == crate::layout::HEADER_SIZE);
}
