//! The one switch between production atomics and loom's model-checked ones.
//!
//! Every atomic the ring touches, every spin, and every access to the data area goes
//! through this module, so a `--cfg loom` build checks the very code that ships
//! (the approach of tokio's and thingbuf's `loom` shims).
//!
//! The data area is the one place where the two builds differ in representation:
//! production sees plain bytes (so zero-copy slices and `memcpy` work), while loom
//! sees one tracked [`loom::cell::UnsafeCell`] per 8-byte word, so a payload read
//! that is not ordered after its write is reported as a causality violation.

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicU32, AtomicU64, Ordering};

#[cfg(not(loom))]
pub(crate) use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// Waits for an MPSC claim's turn to publish (every earlier claim published).
///
/// Production spins on the atomic (pause, then `yield` with `std`): the wait lasts as
/// long as an earlier producer takes to fill its frame. Under loom the waiter blocks on
/// a modelled condvar instead: loom cannot bound two threads spinning at once (it
/// explores arbitrarily long alternations of them), while the ordering logic it checks
/// (the loads and stores of `turn`, `published` and `tail`) is the same in both builds.
#[derive(Debug, Default)]
pub(crate) struct TurnWait {
    #[cfg(loom)]
    lock: loom::sync::Mutex<()>,
    #[cfg(loom)]
    cond: loom::sync::Condvar,
}

impl TurnWait {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Returns once `turn` (loaded with Acquire) equals `start`.
    #[inline]
    pub(crate) fn wait_for(&self, turn: &AtomicU64, start: u64) {
        #[cfg(loom)]
        {
            let mut guard = self.lock.lock().unwrap_or_else(|e| e.into_inner());
            while turn.load(Ordering::Acquire) != start {
                guard = self.cond.wait(guard).unwrap_or_else(|e| e.into_inner());
            }
        }
        #[cfg(not(loom))]
        {
            let mut spins = 0u32;
            while turn.load(Ordering::Acquire) != start {
                spin_backoff(spins);
                spins = spins.saturating_add(1);
            }
        }
    }

    /// Called after `turn` advanced.
    #[inline]
    pub(crate) fn advanced(&self) {
        #[cfg(loom)]
        {
            let _guard = self.lock.lock().unwrap_or_else(|e| e.into_inner());
            self.cond.notify_all();
        }
    }
}

#[cfg(not(loom))]
#[inline]
fn spin_backoff(iteration: u32) {
    #[cfg(feature = "std")]
    {
        if iteration < 64 {
            core::hint::spin_loop();
        } else {
            std::thread::yield_now();
        }
    }
    #[cfg(not(feature = "std"))]
    {
        let _ = iteration;
        core::hint::spin_loop();
    }
}

pub(crate) use data::DataArea;

#[cfg(not(loom))]
mod data {
    use core::ptr::NonNull;
    use core::sync::atomic::{AtomicU64, Ordering};

    /// Bytes of region memory per 8-byte data word.
    pub(crate) const WORD_STRIDE: usize = 8;

    /// The data area of a ring: `len` bytes at `base`, 8-byte aligned.
    ///
    /// Invariant: `base` is valid for reads and writes of `len` bytes for as long as
    /// the owning handle lives (guaranteed by the unsafe constructors of the handles),
    /// and is 8-byte aligned.
    #[derive(Clone, Copy, Debug)]
    pub(crate) struct DataArea {
        base: NonNull<u8>,
        len: usize,
    }

    impl DataArea {
        /// # Safety
        /// `base` must be 8-byte aligned and valid for reads and writes of `len` bytes
        /// for the lifetime of every copy of the returned value.
        pub(crate) unsafe fn new(base: NonNull<u8>, len: usize) -> Self {
            Self { base, len }
        }

        /// Prepares fresh memory (nothing to do for plain bytes).
        ///
        /// # Safety
        /// As for [`DataArea::new`]; no other party may use the area yet.
        pub(crate) unsafe fn init(&self) {}

        fn word_ptr(&self, offset: usize) -> *mut u64 {
            debug_assert!(offset % 8 == 0 && offset + 8 <= self.len);
            // SAFETY: the callers keep `offset + 8 <= len` (checked in debug builds),
            // so the result stays inside the area.
            unsafe { self.base.as_ptr().add(offset).cast::<u64>() }
        }

        /// Reads the 8-byte word at `offset` (a frame header) atomically, so that a
        /// hostile peer writing it at the same moment cannot cause a data race.
        ///
        /// # Safety
        /// `offset` is 8-aligned and `offset + 8 <= len`.
        #[inline]
        pub(crate) unsafe fn load_word(&self, offset: usize) -> u64 {
            // SAFETY: the pointer is in bounds and 8-aligned (caller contract, region
            // alignment), and the memory is only ever accessed as plain bytes or
            // through atomics, never through a `&mut`.
            unsafe { AtomicU64::from_ptr(self.word_ptr(offset)) }.load(Ordering::Relaxed)
        }

        /// Writes the 8-byte word at `offset` (a frame header).
        ///
        /// # Safety
        /// `offset` is 8-aligned, `offset + 8 <= len`, and the word is in space this
        /// side owns (free space reserved by a producer).
        #[inline]
        pub(crate) unsafe fn store_word(&self, offset: usize, value: u64) {
            // SAFETY: as in `load_word`.
            unsafe { AtomicU64::from_ptr(self.word_ptr(offset)) }.store(value, Ordering::Relaxed);
        }

        /// Copies `src` into the area at `offset`.
        ///
        /// # Safety
        /// `offset + src.len() <= len`, and the bytes are space this side owns.
        #[inline]
        pub(crate) unsafe fn write(&self, offset: usize, src: &[u8]) {
            debug_assert!(offset + src.len() <= self.len);
            // SAFETY: in bounds by the caller's contract; `src` is private memory and
            // cannot overlap the shared area.
            unsafe {
                core::ptr::copy_nonoverlapping(
                    src.as_ptr(),
                    self.base.as_ptr().add(offset),
                    src.len(),
                );
            }
        }

        /// Copies bytes at `offset` out of the area into `dst`.
        ///
        /// # Safety
        /// `offset + dst.len() <= len`, and the bytes were published to this side.
        #[inline]
        pub(crate) unsafe fn read(&self, offset: usize, dst: &mut [u8]) {
            debug_assert!(offset + dst.len() <= self.len);
            // SAFETY: in bounds by the caller's contract; `dst` is private memory.
            unsafe {
                core::ptr::copy_nonoverlapping(
                    self.base.as_ptr().add(offset),
                    dst.as_mut_ptr(),
                    dst.len(),
                );
            }
        }

        /// A raw pointer to `offset`, for zero-copy grants.
        ///
        /// # Safety
        /// `offset <= len`.
        #[inline]
        pub(crate) unsafe fn ptr_at(&self, offset: usize) -> *mut u8 {
            debug_assert!(offset <= self.len);
            // SAFETY: in bounds by the caller's contract.
            unsafe { self.base.as_ptr().add(offset) }
        }
    }
}

#[cfg(loom)]
mod data {
    use core::ptr::NonNull;
    use loom::cell::UnsafeCell;

    type Word = UnsafeCell<u64>;

    /// Bytes of region memory per 8-byte data word (a tracked loom cell).
    pub(crate) const WORD_STRIDE: usize = core::mem::size_of::<Word>();

    /// The data area of a ring as loom sees it: one tracked cell per 8-byte word.
    ///
    /// Invariant: `base` points to `len / 8` cells, initialised by [`DataArea::init`].
    #[derive(Clone, Copy, Debug)]
    pub(crate) struct DataArea {
        base: NonNull<Word>,
        len: usize,
    }

    impl DataArea {
        /// # Safety
        /// `base` must be aligned for a loom cell and valid for `len / 8` of them.
        pub(crate) unsafe fn new(base: NonNull<u8>, len: usize) -> Self {
            Self {
                base: base.cast(),
                len,
            }
        }

        fn word(&self, index: usize) -> &Word {
            assert!(index < self.len / 8, "loom data word out of range");
            // SAFETY: in range (asserted), initialised by `init`.
            unsafe { &*self.base.as_ptr().add(index) }
        }

        /// Constructs every word in place.
        ///
        /// # Safety
        /// As for [`DataArea::new`]; no other party may use the area yet.
        pub(crate) unsafe fn init(&self) {
            for i in 0..self.len / 8 {
                // SAFETY: in bounds; nothing is there yet.
                unsafe { self.base.as_ptr().add(i).write(Word::new(0)) };
            }
        }

        /// Drops every word.
        ///
        /// # Safety
        /// As for [`DataArea::new`]; no other party may use the area any more.
        pub(crate) unsafe fn destroy(&self) {
            for i in 0..self.len / 8 {
                // SAFETY: initialised by `init`, dropped once.
                unsafe { core::ptr::drop_in_place(self.base.as_ptr().add(i)) };
            }
        }

        /// # Safety
        /// `offset` 8-aligned and in bounds.
        pub(crate) unsafe fn load_word(&self, offset: usize) -> u64 {
            // SAFETY: loom tracks the access; the pointer is valid.
            self.word(offset / 8).with(|p| unsafe { *p })
        }

        /// # Safety
        /// `offset` 8-aligned and in bounds.
        pub(crate) unsafe fn store_word(&self, offset: usize, value: u64) {
            // SAFETY: loom tracks the access; the pointer is valid.
            self.word(offset / 8).with_mut(|p| unsafe { *p = value });
        }

        /// # Safety
        /// In bounds.
        pub(crate) unsafe fn write(&self, offset: usize, src: &[u8]) {
            for (i, byte) in src.iter().enumerate() {
                let at = offset + i;
                // SAFETY: loom tracks the access; the byte is inside the word.
                self.word(at / 8)
                    .with_mut(|p| unsafe { *p.cast::<u8>().add(at % 8) = *byte });
            }
        }

        /// # Safety
        /// In bounds.
        pub(crate) unsafe fn read(&self, offset: usize, dst: &mut [u8]) {
            for (i, byte) in dst.iter_mut().enumerate() {
                let at = offset + i;
                // SAFETY: loom tracks the access; the byte is inside the word.
                *byte = self
                    .word(at / 8)
                    .with(|p| unsafe { *p.cast::<u8>().add(at % 8) });
            }
        }
    }
}

pub(crate) use data::WORD_STRIDE;
