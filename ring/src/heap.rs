//! Rings in heap memory, for use inside one process (and for tests and benchmarks).

use alloc::alloc::{alloc_zeroed, dealloc, Layout};
use alloc::sync::Arc;
use core::ptr::NonNull;

use crate::error::AttachError;
use crate::layout::{Config, RawRegion, HEADER_SIZE, REGION_ALIGN};
use crate::{Consumer, Fences, MpscProducer, Producer};

/// An owned, zeroed, [`REGION_ALIGN`]-aligned heap allocation holding one ring.
///
/// Invariant: `base` was allocated with `layout` and is freed only in `Drop`; when
/// `initialised`, a ring header and data area were constructed in it.
#[derive(Debug)]
pub struct HeapRegion {
    base: NonNull<u8>,
    layout: Layout,
    capacity: usize,
}

// SAFETY: the allocation is plain memory; the ring handles synchronise access to it.
unsafe impl Send for HeapRegion {}
// SAFETY: as above; `HeapRegion` itself offers no access to the bytes.
unsafe impl Sync for HeapRegion {}

impl HeapRegion {
    /// Allocates a zeroed region big enough for `config`.
    ///
    /// # Panics
    /// On allocation failure (like `Vec`).
    ///
    /// # Errors
    ///
    /// [`AttachError::Config`] for an invalid `config`.
    pub fn new(config: &Config) -> Result<Self, AttachError> {
        config.validate().map_err(AttachError::Config)?;
        let layout = Layout::from_size_align(config.region_size(), REGION_ALIGN).map_err(|_| {
            AttachError::TooSmall {
                needed: config.region_size(),
                len: 0,
            }
        })?;
        // SAFETY: the layout has a non-zero size (at least the header).
        let ptr = unsafe { alloc_zeroed(layout) };
        let Some(base) = NonNull::new(ptr) else {
            alloc::alloc::handle_alloc_error(layout)
        };
        Ok(HeapRegion {
            base,
            layout,
            capacity: config.capacity,
        })
    }

    /// The region as a [`RawRegion`].
    pub fn raw(&self) -> RawRegion {
        // SAFETY: the allocation is valid for `layout.size()` bytes until `Drop`, and
        // aligned to REGION_ALIGN; callers keep the `HeapRegion` alive (the channel
        // constructors below hand it to the handles' keep-alive).
        match unsafe { RawRegion::new(self.base, self.layout.size()) } {
            Ok(r) => r,
            // Unreachable: the layout is REGION_ALIGN-aligned.
            Err(_) => unreachable!("heap region misaligned"),
        }
    }
}

impl Drop for HeapRegion {
    fn drop(&mut self) {
        #[cfg(loom)]
        {
            // Loom objects were constructed in place: drop them (magic set means the
            // header was constructed).
            let raw = self.raw();
            // SAFETY: the handles are gone (they hold this region alive), so nothing
            // else uses it; the header was written by `RingPtrs::create` whenever a
            // channel was made, which is the only way a loom region is used.
            unsafe {
                core::ptr::drop_in_place(raw.base().cast::<crate::layout::Header>().as_ptr());
                let data = crate::sync::DataArea::new(raw.base().add(HEADER_SIZE), self.capacity);
                data.destroy();
            }
        }
        #[cfg(not(loom))]
        let _ = (HEADER_SIZE, self.capacity);
        // SAFETY: allocated in `new` with this layout, freed once.
        unsafe { dealloc(self.base.as_ptr(), self.layout) };
    }
}

/// A heap-backed SPSC ring: `(producer, consumer)`.
///
/// ```
/// use coroipc_ring::{heap, Config, FlowChange};
///
/// let config = Config::new(256).with_watermarks(192, 64);
/// let (mut tx, mut rx) = heap::channel(&config)?;
/// // Flow control: the publish that crosses the high watermark reports it.
/// let mut entered = None;
/// while entered.is_none() {
///     entered = tx.try_send(&[7; 24]).expect("room").flow;
/// }
/// assert_eq!(entered, Some(FlowChange::On));
/// assert!(tx.flow_control());
/// let (first, _wake) = rx.try_recv_vec().expect("sound").expect("a message");
/// assert_eq!(first, [7; 24]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// # Errors
///
/// As [`HeapRegion::new`].
pub fn channel(config: &Config) -> Result<(Producer, Consumer), AttachError> {
    channel_with(config, Fences::Locked)
}

/// [`channel`] with the protocol `fences` ([`Fences::Asymmetric`]: plain-store publishes,
/// a `membarrier` before each sleep; see the crate's `fence` module).
///
/// # Errors
///
/// As [`HeapRegion::new`]; [`AttachError::Unsupported`] where this process cannot
/// register for `membarrier`.
pub fn channel_with(config: &Config, fences: Fences) -> Result<(Producer, Consumer), AttachError> {
    let region = Arc::new(HeapRegion::new(config)?);
    // SAFETY: fresh allocation, kept alive by both handles through `keep_alive`.
    let producer =
        unsafe { Producer::create_with(region.raw(), config, fences) }?.keep_alive(region.clone());
    // SAFETY: initialised just above; kept alive as well.
    let consumer = unsafe { Consumer::attach(region.raw()) }?.keep_alive(region);
    Ok((producer, consumer))
}

/// A heap-backed MPSC ring: `(producers, consumer)`; share the producer with an `Arc`.
///
/// # Errors
///
/// As [`HeapRegion::new`].
pub fn mpsc_channel(config: &Config) -> Result<(MpscProducer, Consumer), AttachError> {
    let region = Arc::new(HeapRegion::new(config)?);
    // SAFETY: fresh allocation, kept alive by both handles.
    let producer =
        unsafe { MpscProducer::create(region.raw(), config) }?.keep_alive(region.clone());
    // SAFETY: initialised just above; kept alive as well.
    let consumer = unsafe { Consumer::attach(region.raw()) }?.keep_alive(region);
    Ok((producer, consumer))
}
