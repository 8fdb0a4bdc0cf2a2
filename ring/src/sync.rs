//! The one switch between production atomics and loom's model-checked ones.
//!
//! Every atomic the ring touches and every access to the data area goes through this
//! module, so a `--cfg loom` build checks the very code that ships (the approach of
//! tokio's and thingbuf's `loom` shims). The one wait that differs between the builds,
//! an MPSC claim's for its turn, is `turn.rs`.
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

/// A `SeqCst` fence (loom's under loom): the stand-in for `membarrier` in the models
/// (`fence.rs`).
#[cfg(any(loom, miri))]
#[inline]
pub(crate) fn fence_seq_cst() {
    #[cfg(loom)]
    loom::sync::atomic::fence(Ordering::SeqCst);
    #[cfg(not(loom))]
    core::sync::atomic::fence(Ordering::SeqCst);
}

pub(crate) use data::DataArea;

#[cfg(not(loom))]
mod data {
    use core::ptr::NonNull;
    use core::sync::atomic::{AtomicU64, Ordering};

    /// Bulk copies in and out of the data area at `memcpy` speed, where that is sound.
    ///
    /// The word loop below makes one `Relaxed` 8-byte atomic access per word, which the
    /// compiler may not merge or vectorise: it copies at about 0.6x `memcpy` (measured
    /// in `coroipc-bench`'s floors). On x86-64 a copy of at least 256 bytes is
    /// one `rep movsb` instead (fast with ERMS/FSRM; glibc's `memcpy` uses the same
    /// instruction from a few KiB), and one of 8 to 255 bytes unaligned `mov`s or SSE2
    /// `movdqu`s (`fast_copy::copy_prefix`). Why that is sound where a plain
    /// `copy_nonoverlapping` is not: the inline assembly is opaque to the compiler, which must assume it reads
    /// and writes the bytes once, as the hardware does, so it cannot fetch twice or
    /// assume the values stable (the double-fetch that makes a racing plain copy UB).
    /// What the block does is expressible in Rust without UB, and in the same kind of
    /// access as the rest of this module: every byte it touches lies in an aligned
    /// 8-byte word of the area (8-aligned base, length a multiple of 8), a byte it
    /// reads behaves as a `Relaxed` load of that `AtomicU64` (keeping one byte), and a
    /// byte it writes as a compare-and-swap loop on that word replacing only that
    /// byte. So no access of another size races with the peer's 8-byte atomics (Rust
    /// forbids mixed-size atomic races), and x86-64, whose byte accesses are
    /// single-copy atomic, shows no outcome those word operations could not give: a
    /// concurrent write by the peer changes which bytes are copied, nothing else;
    /// callers never decide anything from payload bytes. String stores are ordered
    /// before later stores (x86 TSO), so the `Release` publish after a copy still
    /// publishes it. Miri (which cannot run assembly and checks the word model) and
    /// other targets use the word loop.
    pub(super) mod fast_copy {
        /// Below this the word loop is as fast (no `rep` start-up cost).
        #[cfg(all(target_arch = "x86_64", not(miri)))]
        const MIN_LEN: usize = 256;

        /// Copies `len` bytes from `src` to `dst` with `rep movsb` and returns true
        /// when the bulk copy applies here (x86-64 outside Miri, `len >= MIN_LEN`);
        /// otherwise copies nothing and returns false (the caller uses the word loop):
        /// for copies that must be whole (area to area); [`copy_prefix`] builds on it.
        ///
        /// # Safety
        /// `src` is valid for reads and `dst` for writes of `len` bytes, and every
        /// access the Rust side makes to those bytes meanwhile is atomic (the data
        /// area's rule) or ordered with this copy. The ranges may overlap (a corrupt
        /// ring could make them): `rep movsb` then copies byte by byte forward, which
        /// is defined, if useless.
        #[inline(always)]
        pub(crate) unsafe fn copy_if_bulk(src: *const u8, dst: *mut u8, len: usize) -> bool {
            #[cfg(all(target_arch = "x86_64", not(miri)))]
            if len >= MIN_LEN {
                // SAFETY: forwarded contract.
                unsafe { rep_movsb(src, dst, len) };
                return true;
            }
            let _ = (src, dst, len);
            false
        }

        /// From this length up to [`MIN_LEN`] (where `rep movsb` is faster) the copy
        /// is 16-byte blocks, one SSE2 load and store each, the last block ending at
        /// the end; from 8 bytes, two 8-byte moves. A 64-byte payload so takes four
        /// stores instead of eight word stores, and a 16-byte ipc header one.
        #[cfg(all(target_arch = "x86_64", not(miri)))]
        const MIN_WIDE: usize = 16;

        /// Copies the longest prefix of the `len` bytes that a fast path takes and
        /// returns its length: all of them with `rep movsb` from [`MIN_LEN`] on, all of
        /// them in 16-byte blocks from [`MIN_WIDE`] on, all of them in two 8-byte moves
        /// from 8 on, else none (0). The caller's word loop copies the rest. The one
        /// place that decides for copies between the area and local memory.
        ///
        /// Why not the word loop for these: its split into a partial head word, whole
        /// words and a partial tail, and the byte merges of the partial words, took
        /// ~60 instructions for a 16-byte header and ~150 for an ipc response's
        /// header and 8 payload bytes (`valgrind --tool=callgrind`, 2026-12-07).
        ///
        /// When `len` is not a multiple of the move, the last move ends at the end and
        /// overlaps the one before: some bytes inside the range are read or written
        /// twice. A read copies the second value seen and a write stores the same
        /// bytes again, outcomes the word loop could give as well (a peer writing
        /// meanwhile only changes which of its values are copied or overwritten).
        ///
        /// # Safety
        /// As [`copy_if_bulk`].
        #[inline(always)]
        pub(crate) unsafe fn copy_prefix(src: *const u8, dst: *mut u8, len: usize) -> usize {
            // SAFETY: forwarded contract.
            if unsafe { copy_if_bulk(src, dst, len) } {
                return len;
            }
            #[cfg(all(target_arch = "x86_64", not(miri)))]
            {
                if (MIN_WIDE..=64).contains(&len) {
                    // SAFETY: forwarded contract; `16 <= len <= 64`.
                    unsafe { copy_up_to_64(src, dst, len) };
                    return len;
                }
                if len >= MIN_WIDE {
                    let blocks = len & !15;
                    // SAFETY: forwarded contract; `blocks` is a non-zero multiple of
                    // 16 no larger than `len`, and the last block `len - 16..len`
                    // lies inside both ranges (`len >= 16`).
                    unsafe {
                        copy_blocks(src, dst, blocks);
                        if blocks != len {
                            copy_blocks(src.add(len - 16), dst.add(len - 16), 16);
                        }
                    }
                    return len;
                }
                if len >= 8 {
                    // SAFETY: forwarded contract; `0..8` and `len - 8..len` lie inside
                    // both ranges (`8 <= len < 16`).
                    unsafe { copy_two_words(src, dst, len) };
                    return len;
                }
            }
            let _ = (src, dst, len);
            0
        }

        /// Copies the first `$w` bytes and the last `$w` of `$len` (`$w <= $len <=
        /// 2 * $w`) with two loads of the instruction `$mov` into registers of
        /// `$class`, then two stores: all loads before all stores, so the ranges may
        /// overlap as `rep movsb` allows. The caller's `unsafe` block vouches that both
        /// ranges hold `$len` bytes; the assembly touches only its declared registers
        /// and the two ranges.
        #[cfg(all(target_arch = "x86_64", not(miri)))]
        macro_rules! copy_ends {
            ($mov:literal, $w:literal, $class:ident, $src:expr, $dst:expr, $len:expr) => {
                core::arch::asm!(
                    concat!($mov, " {a}, [{s}]"),
                    concat!($mov, " {b}, [{s} + {n} - ", $w, "]"),
                    concat!($mov, " [{d}], {a}"),
                    concat!($mov, " [{d} + {n} - ", $w, "], {b}"),
                    s = in(reg) $src,
                    d = in(reg) $dst,
                    n = in(reg) $len,
                    a = out($class) _,
                    b = out($class) _,
                    options(nostack, preserves_flags),
                )
            };
        }

        /// Copies `len` bytes, `16 <= len <= 64`, without a loop: up to 32 the first and
        /// last 16 bytes, above 32 the first two and last two blocks (overlapping where
        /// `len` is not 32 or 64). All loads come before all stores, so the ranges may
        /// overlap as `rep movsb` allows. A 64-byte payload so takes 8 moves, where the
        /// block loop took 27 instructions (`__ring1` under callgrind).
        ///
        /// # Safety
        /// As [`copy_if_bulk`], and `16 <= len <= 64`.
        #[cfg(all(target_arch = "x86_64", not(miri)))]
        #[inline(always)]
        unsafe fn copy_up_to_64(src: *const u8, dst: *mut u8, len: usize) {
            if len <= 32 {
                // SAFETY: `0..16` and `len - 16..len` lie inside both ranges
                // (`16 <= len`, caller contract).
                unsafe { copy_ends!("movdqu", 16, xmm_reg, src, dst, len) };
                return;
            }
            // SAFETY: `0..32` and `len - 32..len` lie inside both ranges (`32 < len`,
            // caller contract); as above.
            unsafe {
                core::arch::asm!(
                    "movdqu {a}, [{s}]",
                    "movdqu {b}, [{s} + 16]",
                    "movdqu {c}, [{s} + {n} - 32]",
                    "movdqu {e}, [{s} + {n} - 16]",
                    "movdqu [{d}], {a}",
                    "movdqu [{d} + 16], {b}",
                    "movdqu [{d} + {n} - 32], {c}",
                    "movdqu [{d} + {n} - 16], {e}",
                    s = in(reg) src,
                    d = in(reg) dst,
                    n = in(reg) len,
                    a = out(xmm_reg) _,
                    b = out(xmm_reg) _,
                    c = out(xmm_reg) _,
                    e = out(xmm_reg) _,
                    options(nostack, preserves_flags),
                );
            }
        }

        /// Copies `len` bytes, `8 <= len <= 16`, as two unaligned 8-byte moves: the
        /// first 8 bytes and the last 8 (overlapping unless `len` is 16). Both loads
        /// come before both stores, so the ranges may overlap as `rep movsb` allows.
        ///
        /// # Safety
        /// As [`copy_if_bulk`], and `8 <= len <= 16`.
        #[cfg(all(target_arch = "x86_64", not(miri)))]
        #[inline(always)]
        unsafe fn copy_two_words(src: *const u8, dst: *mut u8, len: usize) {
            // SAFETY: `src..src + len` and `dst..dst + len` are valid (caller
            // contract) and hold both 8-byte ranges (`8 <= len`).
            unsafe { copy_ends!("mov", 8, reg, src, dst, len) };
        }

        /// Copies `len` bytes, a non-zero multiple of 16, with unaligned SSE2 moves
        /// (baseline on x86-64), forward. Inlined into the ring's copy: as a call it
        /// cost 2 of the 18 ns a 64-byte message took on one thread (`__ring1`).
        ///
        /// # Safety
        /// As [`copy_if_bulk`], and `len` is a non-zero multiple of 16.
        #[cfg(all(target_arch = "x86_64", not(miri)))]
        #[inline(always)]
        unsafe fn copy_blocks(src: *const u8, dst: *mut u8, len: usize) {
            // SAFETY: the ranges are valid (caller contract) and `len` counts down to
            // exactly zero in steps of 16; the block touches only its declared
            // registers, the flags (not preserved) and the two ranges.
            unsafe {
                core::arch::asm!(
                    "2:",
                    "movdqu {x}, [{s}]",
                    "movdqu [{d}], {x}",
                    "add {s}, 16",
                    "add {d}, 16",
                    "sub {n}, 16",
                    "jnz 2b",
                    s = inout(reg) src => _,
                    d = inout(reg) dst => _,
                    n = inout(reg) len => _,
                    x = out(xmm_reg) _,
                    options(nostack),
                );
            }
        }

        /// # Safety
        /// As [`copy_if_bulk`].
        #[cfg(all(target_arch = "x86_64", not(miri)))]
        // Out of line: inlined, it made the callers' small-message paths slower (64 B
        // batched ring messages 34 -> 27 M/s from code layout alone).
        #[inline(never)]
        unsafe fn rep_movsb(src: *const u8, dst: *mut u8, len: usize) {
            // SAFETY: the ranges are valid (caller contract); `rep movsb` copies
            // forward with the direction flag clear (the ABI guarantees it at every
            // call boundary and nothing here sets it), and touches nothing but
            // `rsi`/`rdi`/`rcx` (declared clobbered) and the two ranges.
            unsafe {
                core::arch::asm!(
                    "rep movsb",
                    inout("rcx") len => _,
                    inout("rsi") src => _,
                    inout("rdi") dst => _,
                    options(nostack, preserves_flags),
                );
            }
        }
    }

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
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
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
            // with the atomic ones: this module only makes 8-byte atomic accesses (the
            // bulk copy's assembly included, modelled as such: `fast_copy`), and
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

        /// Reads the frame header at `offset` with Acquire: a linked consumer's probe
        /// (`consumer.rs`), which finds a published frame without the tail.
        ///
        /// # Safety
        /// As for [`load_word`](Self::load_word).
        #[inline(always)]
        pub(crate) unsafe fn load_header_acquire(&self, offset: usize) -> u64 {
            // SAFETY: forwarded contract.
            unsafe { self.word(offset) }.load(Ordering::Acquire)
        }

        /// Writes the frame header at `offset` with Release: the store that publishes
        /// a frame (and everything written before it) to a linked consumer's probe.
        ///
        /// # Safety
        /// As for [`store_word`](Self::store_word).
        #[inline(always)]
        pub(crate) unsafe fn store_header_release(&self, offset: usize, value: u64) {
            // SAFETY: forwarded contract.
            unsafe { self.word(offset) }.store(value, Ordering::Release);
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
        #[inline(always)]
        pub(crate) unsafe fn write(&self, offset: usize, src: &[u8]) {
            // SAFETY: `offset + src.len() <= len` (caller contract): the destination
            // lies inside the area; `src` is a live slice.
            let done = unsafe {
                fast_copy::copy_prefix(src.as_ptr(), self.base.as_ptr().add(offset), src.len())
            };
            let (offset, src) = (offset + done, &src[done..]);
            if src.is_empty() {
                return;
            }
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
            // As in `read_partial`: merged by shifts, not a variable-length `memcpy`.
            let (mut mask, mut value) = (0u64, 0u64);
            for (i, b) in src.iter().enumerate() {
                let shift = 8 * (first + i);
                mask |= 0xff << shift;
                value |= u64::from(*b) << shift;
            }
            let old = u64::from_le_bytes(word.load(Ordering::Relaxed).to_ne_bytes());
            let new = (old & !mask) | value;
            word.store(u64::from_ne_bytes(new.to_le_bytes()), Ordering::Relaxed);
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

        /// Copies `dst.len()` bytes at `offset` when they lie inside one word (a field
        /// of a header, a byte): one load; returns false, copying nothing, otherwise.
        ///
        /// # Safety
        /// `offset + dst.len() <= len`.
        #[inline(always)]
        pub(crate) unsafe fn read_in_word(&self, offset: usize, dst: &mut [u8]) -> bool {
            if offset % 8 + dst.len() > 8 {
                return false;
            }
            // SAFETY: the range does not leave the word containing `offset`, which is
            // inside the area when the range is not empty (caller contract); an empty
            // range reads nothing.
            unsafe { self.read_partial(offset, dst) };
            true
        }

        /// Copies bytes at `offset` out of the area into `dst`: whole words with one
        /// 8-byte atomic load each (the hot loop), partial words at either end. A
        /// concurrent hostile write changes the values copied, nothing else.
        ///
        /// # Safety
        /// `offset + dst.len() <= len`.
        #[inline(always)]
        pub(crate) unsafe fn read(&self, offset: usize, dst: &mut [u8]) {
            // SAFETY: forwarded contract.
            if unsafe { self.read_in_word(offset, dst) } {
                return;
            }
            // SAFETY: `offset + dst.len() <= len` (caller contract): the source lies
            // inside the area; `dst` is a live exclusive slice.
            let done = unsafe {
                fast_copy::copy_prefix(self.base.as_ptr().add(offset), dst.as_mut_ptr(), dst.len())
            };
            let (offset, dst) = (offset + done, &mut dst[done..]);
            if dst.is_empty() {
                return;
            }
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

        /// Copies `len` bytes from this area at `offset` straight into `dst` at
        /// `dst_offset` when the bulk copy applies (returns true); otherwise copies
        /// nothing and returns false (the caller bounces through a buffer).
        ///
        /// # Safety
        /// `offset + len <= self.len` and `dst_offset + len <= dst.len`.
        #[inline]
        pub(crate) unsafe fn copy_bulk(
            &self,
            offset: usize,
            dst: &DataArea,
            dst_offset: usize,
            len: usize,
        ) -> bool {
            debug_assert!(offset + len <= self.len && dst_offset + len <= dst.len);
            // SAFETY: both ranges inside their areas (caller contract).
            unsafe {
                fast_copy::copy_if_bulk(
                    self.base.as_ptr().add(offset),
                    dst.base.as_ptr().add(dst_offset),
                    len,
                )
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
            let word = unsafe { self.word(offset - first) }.load(Ordering::Relaxed);
            // Byte `i` of the word in memory order is bits `8 i..` of `value`. Shifted
            // out byte by byte, not sliced: a slice copy of a variable length below 8
            // is a `memcpy` call, the larger part of reading one byte.
            let value = u64::from_le_bytes(word.to_ne_bytes());
            for (i, d) in dst.iter_mut().enumerate() {
                *d = (value >> (8 * (first + i))) as u8;
            }
        }

        /// Hints the CPU to fetch the cache line holding byte `offset` (nothing if it is
        /// outside the area). A hint, not an access: it reads nothing the program sees,
        /// so it cannot race. Used by the consumer on the other lines of a frame, so
        /// that their misses overlap the header's instead of following it.
        #[inline(always)]
        pub(crate) fn prefetch(&self, offset: usize) {
            #[cfg(all(target_arch = "x86_64", not(miri)))]
            if offset < self.len {
                // SAFETY: `offset < len`: the pointer is inside the area (type
                // invariant); a prefetch never faults and accesses nothing.
                unsafe {
                    core::arch::x86_64::_mm_prefetch(
                        self.base.as_ptr().add(offset).cast::<i8>().cast_const(),
                        core::arch::x86_64::_MM_HINT_T0,
                    );
                }
            }
            #[cfg(not(all(target_arch = "x86_64", not(miri))))]
            let _ = offset;
        }

        /// Hints the CPU to move the cache line holding byte `offset` from this core's
        /// caches to the shared last level (`cldemote`; a `nop` on a CPU without it),
        /// so that the peer's read of it hits there instead of snooping this core.
        #[inline(always)]
        pub(crate) fn demote(&self, offset: usize) {
            #[cfg(all(target_arch = "x86_64", not(miri)))]
            if offset < self.len {
                // SAFETY: `offset < len`: the pointer is inside the area (type
                // invariant); `cldemote` is a hint that never faults, reads or writes
                // nothing the program sees, and is a `nop` where unsupported.
                unsafe {
                    core::arch::asm!(
                        "cldemote [{p}]",
                        p = in(reg) self.base.as_ptr().add(offset),
                        options(nostack, preserves_flags, readonly)
                    );
                }
            }
            #[cfg(not(all(target_arch = "x86_64", not(miri))))]
            let _ = offset;
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

    use loom::sync::atomic::{AtomicU64, Ordering};

    /// One 8-byte data word as loom sees it: a tracked cell for payload bytes, and an
    /// atomic for the word read and written as a frame header. In production the two
    /// are the same memory; here a header is kept apart from the payload bytes once
    /// written in the same place (a lap before), so the models check the ordering of
    /// headers and payload (a header read racing its write is a loom error only if
    /// the header is a cell) but not the stale-payload argument of `consumer.rs`
    /// (`probe`), which rests on the zeroed word after the newest frame.
    pub(crate) struct Word {
        bytes: UnsafeCell<u64>,
        header: AtomicU64,
    }

    impl Word {
        fn new(value: u64) -> Self {
            Word {
                bytes: UnsafeCell::new(value),
                header: AtomicU64::new(value),
            }
        }
    }

    /// Bytes of region memory per 8-byte data word (a tracked loom cell and atomic).
    pub(crate) const WORD_STRIDE: usize = core::mem::size_of::<Word>();

    /// The data area of a ring as loom sees it: one [`Word`] per 8-byte word.
    ///
    /// Invariant: `base` points to `len / 8` words, initialised by [`DataArea::init`].
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
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
            self.word(offset / 8).header.load(Ordering::Relaxed)
        }

        /// # Safety
        /// `offset` 8-aligned and in bounds.
        pub(crate) unsafe fn store_word(&self, offset: usize, value: u64) {
            self.word(offset / 8).header.store(value, Ordering::Relaxed);
        }

        /// # Safety
        /// `offset` 8-aligned and in bounds.
        pub(crate) unsafe fn load_header_acquire(&self, offset: usize) -> u64 {
            self.word(offset / 8).header.load(Ordering::Acquire)
        }

        /// # Safety
        /// `offset` 8-aligned and in bounds.
        pub(crate) unsafe fn store_header_release(&self, offset: usize, value: u64) {
            self.word(offset / 8).header.store(value, Ordering::Release);
        }

        /// # Safety
        /// In bounds.
        pub(crate) unsafe fn write(&self, offset: usize, src: &[u8]) {
            for (i, byte) in src.iter().enumerate() {
                let at = offset + i;
                // SAFETY: loom tracks the access; the byte is inside the word.
                self.word(at / 8)
                    .bytes
                    .with_mut(|p| unsafe { *p.cast::<u8>().add(at % 8) = *byte });
            }
        }

        /// No hint under loom.
        pub(crate) fn prefetch(&self, _offset: usize) {}

        /// No hint under loom.
        pub(crate) fn demote(&self, _offset: usize) {}

        /// Never copies directly (loom tracks the bounce copy's accesses instead).
        ///
        /// # Safety
        /// None beyond the production version's.
        pub(crate) unsafe fn copy_bulk(
            &self,
            _offset: usize,
            _dst: &DataArea,
            _dst_offset: usize,
            _len: usize,
        ) -> bool {
            false
        }

        /// # Safety
        /// In bounds.
        pub(crate) unsafe fn fill(&self, offset: usize, len: usize, byte: u8) {
            for at in offset..offset + len {
                // SAFETY: loom tracks the access; the byte is inside the word.
                self.word(at / 8)
                    .bytes
                    .with_mut(|p| unsafe { *p.cast::<u8>().add(at % 8) = byte });
            }
        }

        /// The one-word read of the real area: here every read is byte by byte.
        ///
        /// # Safety
        /// In bounds.
        pub(crate) unsafe fn read_in_word(&self, offset: usize, dst: &mut [u8]) -> bool {
            // SAFETY: forwarded contract.
            unsafe { self.read(offset, dst) };
            true
        }

        /// # Safety
        /// In bounds.
        pub(crate) unsafe fn read(&self, offset: usize, dst: &mut [u8]) {
            for (i, byte) in dst.iter_mut().enumerate() {
                let at = offset + i;
                // SAFETY: loom tracks the access; the byte is inside the word.
                *byte = self
                    .word(at / 8)
                    .bytes
                    .with(|p| unsafe { *p.cast::<u8>().add(at % 8) });
            }
        }
    }
}

pub(crate) use data::WORD_STRIDE;

#[cfg(all(test, not(loom)))]
mod tests {
    use super::DataArea;
    use core::ptr::NonNull;

    /// Copies in and out at every alignment, on both sides of the bulk-copy threshold:
    /// the bytes land where asked, and nothing outside the range changes.
    #[test]
    fn copies_in_and_out_exactly() {
        const LEN: usize = 2048;
        let mut words = vec![0u64; LEN / 8];
        let base = NonNull::new(words.as_mut_ptr().cast::<u8>()).expect("non-null");
        // SAFETY: `words` is 8-aligned, `LEN` bytes, and outlives `area`.
        let area = unsafe { DataArea::new(base, LEN) };
        // Miri runs the word loop only, slowly: a few sizes there.
        let lens: &[usize] = if cfg!(miri) {
            &[0, 9, 300]
        } else {
            &[
                0, 1, 7, 8, 9, 12, 15, 16, 17, 24, 31, 32, 33, 48, 63, 64, 65, 80, 100, 255, 256,
                257, 1000, 1500,
            ]
        };
        for &len in lens {
            for offset in 0..9 {
                let marker = 0xa5u8;
                // SAFETY: inside the area.
                unsafe { area.fill(0, LEN, marker) };
                let src: Vec<u8> = (0..len).map(|i| (i * 7 + offset) as u8).collect();
                // SAFETY: `offset + len <= LEN`.
                unsafe { area.write(offset, &src) };
                let mut all = vec![0u8; LEN];
                // SAFETY: the whole area.
                unsafe { area.read(0, &mut all) };
                assert_eq!(
                    &all[offset..offset + len],
                    &src[..],
                    "len {len} at {offset}"
                );
                assert!(all[..offset].iter().all(|&b| b == marker));
                assert!(all[offset + len..].iter().all(|&b| b == marker));
                let mut back = vec![0u8; len];
                // SAFETY: `offset + len <= LEN`.
                unsafe { area.read(offset, &mut back) };
                assert_eq!(back, src);
            }
        }
    }
}
