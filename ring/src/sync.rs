//! The one switch between production atomics and loom's model-checked ones.
//!
//! Every atomic the ring touches, every spin, and every access to the data area goes
//! through this module, so a `--cfg loom` build checks the very code that ships
//! (the approach of tokio's and thingbuf's `loom` shims).
//!
//! The data area is the one place where the two builds differ in representation:
//! production sees 8-byte words, every one accessed only through a `Relaxed`
//! `AtomicU64` (a hostile peer writing them concurrently cannot cause a data race),
//! while loom sees one tracked [`loom::cell::UnsafeCell`] per 8-byte word, so a payload
//! read that is not ordered after its write is reported as a causality violation.

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
    /// is 8-byte aligned, and `len` is a multiple of 8.
    ///
    /// # Every access is an 8-byte atomic
    ///
    /// The peer may write any byte of the area at any moment (it is hostile, or merely
    /// buggy), so this side must never make a non-atomic access to it: that would be a
    /// data race, and the compiler may fetch a plain load twice or not at all (the
    /// double-fetch pattern). Every access this module makes, to frame headers and
    /// payload bytes alike, is therefore a `Relaxed` load or store of the aligned
    /// `AtomicU64` that contains the bytes; a partial word is read whole, or read,
    /// merged and stored whole (only in words this side owns). One kind and size of
    /// access on every word also suits Miri's weak-memory emulation (which failed on
    /// the earlier mix of atomic header stores and plain payload copies).
    /// The only non-atomic views are the `unsafe` `*_trusted` slices of the grants,
    /// whose callers promise that the peer does not write those bytes meanwhile.
    /// What is read is then only ever a value the peer chose: the ring validates
    /// headers and never decides anything from payload bytes.
    #[derive(Clone, Copy, Debug)]
    pub(crate) struct DataArea {
        base: NonNull<u8>,
        len: usize,
    }

    impl DataArea {
        /// # Safety
        /// `base` must be 8-byte aligned and valid for reads and writes of `len` bytes
        /// (a multiple of 8) for the lifetime of every copy of the returned value.
        pub(crate) unsafe fn new(base: NonNull<u8>, len: usize) -> Self {
            Self { base, len }
        }

        /// Prepares fresh memory (nothing to do for plain bytes).
        ///
        /// # Safety
        /// As for [`DataArea::new`]; no other party may use the area yet.
        pub(crate) unsafe fn init(&self) {}

        /// The atomic word at `offset`.
        ///
        /// # Safety
        /// `offset` is 8-aligned and `offset + 8 <= len`.
        #[inline(always)]
        unsafe fn word(&self, offset: usize) -> &AtomicU64 {
            debug_assert!(offset % 8 == 0 && offset + 8 <= self.len);
            // SAFETY: `offset + 8 <= len` (caller contract) keeps the pointer inside
            // the area, valid while `self` lives (type invariant); `base` and `offset`
            // are 8-aligned. `from_ptr` also requires that no non-atomic access races
            // with the atomic ones: this module only makes 8-byte atomic accesses, and
            // the `*_trusted` slices exist only under their callers' promise that
            // nothing else touches those bytes meanwhile. (The peer's writes come from
            // another process or an untrusted thread: they only choose the values.)
            unsafe { AtomicU64::from_ptr(self.base.as_ptr().add(offset).cast::<u64>()) }
        }

        /// Reads the 8-byte word at `offset` (a frame header).
        ///
        /// # Safety
        /// `offset` is 8-aligned and `offset + 8 <= len`.
        #[inline]
        pub(crate) unsafe fn load_word(&self, offset: usize) -> u64 {
            // SAFETY: forwarded contract.
            unsafe { self.word(offset) }.load(Ordering::Relaxed)
        }

        /// Writes the 8-byte word at `offset` (a frame header).
        ///
        /// # Safety
        /// `offset` is 8-aligned and `offset + 8 <= len`. The word should be in space
        /// this side owns (protocol correctness, not memory safety).
        #[inline]
        pub(crate) unsafe fn store_word(&self, offset: usize, value: u64) {
            // SAFETY: forwarded contract.
            unsafe { self.word(offset) }.store(value, Ordering::Relaxed);
        }

        /// The whole words `offset..offset + 8 * n` as a slice of atomics.
        ///
        /// # Safety
        /// `n == 0`, or `offset` is 8-aligned and `offset + 8 * n <= len`.
        #[inline(always)]
        unsafe fn words(&self, offset: usize, n: usize) -> &[AtomicU64] {
            if n == 0 {
                // `from_raw_parts` wants an aligned pointer even for no elements, and
                // `offset` need not be aligned when there is nothing to cover.
                return &[];
            }
            debug_assert!(offset % 8 == 0 && offset + 8 * n <= self.len);
            // SAFETY: as for `word`, for `n` consecutive aligned words inside the area
            // (caller contract); a shared slice of atomics permits concurrent atomic
            // writes by others, which is all the peer's writes can be to us.
            unsafe {
                core::slice::from_raw_parts(
                    self.base
                        .as_ptr()
                        .add(offset)
                        .cast::<AtomicU64>()
                        .cast_const(),
                    n,
                )
            }
        }

        /// Splits `offset..offset + len` into a partial head word, whole words, and a
        /// partial tail word: `(head bytes, whole words)`; the tail is the rest.
        #[inline(always)]
        fn split(offset: usize, len: usize) -> (usize, usize) {
            let head = ((8 - offset % 8) % 8).min(len);
            (head, (len - head) / 8)
        }

        /// Copies `src` into the area at `offset`: whole words with one 8-byte atomic
        /// store each (the hot loop), a partial word at either end merged with the
        /// bytes already there.
        ///
        /// # Safety
        /// `offset + src.len() <= len`. The words covering the range should be space
        /// this side owns (protocol correctness, not memory safety).
        #[inline]
        pub(crate) unsafe fn write(&self, offset: usize, src: &[u8]) {
            let (head, whole) = Self::split(offset, src.len());
            let (head_src, rest) = src.split_at(head);
            let (middle, tail) = rest.split_at(whole * 8);
            // SAFETY: every range below is inside `offset..offset + src.len()`, within
            // the area (caller contract); the middle starts 8-aligned.
            unsafe {
                self.write_partial(offset, head_src);
                let words = self.words(offset + head, whole);
                for (word, chunk) in words.iter().zip(middle.chunks_exact(8)) {
                    let mut bytes = [0; 8];
                    bytes.copy_from_slice(chunk);
                    word.store(u64::from_ne_bytes(bytes), Ordering::Relaxed);
                }
                self.write_partial(offset + head + whole * 8, tail);
            }
        }

        /// Merges `src` (at most one word's worth, not crossing a word) at `offset`.
        ///
        /// # Safety
        /// As for [`DataArea::write`].
        #[inline(always)]
        unsafe fn write_partial(&self, offset: usize, src: &[u8]) {
            if src.is_empty() {
                return;
            }
            let first = offset % 8;
            // SAFETY: the word containing `offset` is inside the area (caller contract).
            let word = unsafe { self.word(offset - first) };
            let mut bytes = word.load(Ordering::Relaxed).to_ne_bytes();
            bytes[first..first + src.len()].copy_from_slice(src);
            word.store(u64::from_ne_bytes(bytes), Ordering::Relaxed);
        }

        /// Sets `len` bytes at `offset` to `byte`.
        ///
        /// # Safety
        /// As for [`DataArea::write`].
        #[inline]
        pub(crate) unsafe fn fill(&self, offset: usize, len: usize, byte: u8) {
            let (head, whole) = Self::split(offset, len);
            let tail = len - head - whole * 8;
            let pattern = [byte; 8];
            // SAFETY: as in `write`.
            unsafe {
                self.write_partial(offset, &pattern[..head]);
                for word in self.words(offset + head, whole) {
                    word.store(u64::from_ne_bytes(pattern), Ordering::Relaxed);
                }
                self.write_partial(offset + head + whole * 8, &pattern[..tail]);
            }
        }

        /// Copies bytes at `offset` out of the area into `dst`: whole words with one
        /// 8-byte atomic load each (the hot loop), partial words at either end. A
        /// concurrent hostile write changes the values copied, nothing else.
        ///
        /// # Safety
        /// `offset + dst.len() <= len`.
        #[inline]
        pub(crate) unsafe fn read(&self, offset: usize, dst: &mut [u8]) {
            let (head, whole) = Self::split(offset, dst.len());
            let (head_dst, rest) = dst.split_at_mut(head);
            let (middle, tail) = rest.split_at_mut(whole * 8);
            // SAFETY: as in `write`.
            unsafe {
                self.read_partial(offset, head_dst);
                let words = self.words(offset + head, whole);
                for (word, chunk) in words.iter().zip(middle.chunks_exact_mut(8)) {
                    chunk.copy_from_slice(&word.load(Ordering::Relaxed).to_ne_bytes());
                }
                self.read_partial(offset + head + whole * 8, tail);
            }
        }

        /// Copies out `dst.len()` bytes (not crossing a word) at `offset`.
        ///
        /// # Safety
        /// As for [`DataArea::read`].
        #[inline(always)]
        unsafe fn read_partial(&self, offset: usize, dst: &mut [u8]) {
            if dst.is_empty() {
                return;
            }
            let first = offset % 8;
            // SAFETY: the word containing `offset` is inside the area (caller contract).
            let bytes = unsafe { self.word(offset - first) }
                .load(Ordering::Relaxed)
                .to_ne_bytes();
            dst.copy_from_slice(&bytes[first..first + dst.len()]);
        }

        /// A raw pointer to `offset`, for the `*_trusted` slices of the grants.
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
        pub(crate) unsafe fn fill(&self, offset: usize, len: usize, byte: u8) {
            for at in offset..offset + len {
                // SAFETY: loom tracks the access; the byte is inside the word.
                self.word(at / 8)
                    .with_mut(|p| unsafe { *p.cast::<u8>().add(at % 8) = byte });
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
