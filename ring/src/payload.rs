//! The payload of one grant: a byte range of the data area, accessed soundly.
//!
//! The peer can write the payload bytes at any moment (a hostile consumer can scribble
//! over a producer's reservation, a hostile producer over a published message), so no
//! safe method hands out a `&[u8]` or `&mut [u8]` into them: that would be a data race
//! in Rust's model, and a reader could see bytes change under a slice it already
//! validated. Safe access copies in and out through the atomic word accesses of
//! [`DataArea`](crate::sync::DataArea); the slice views are `unsafe` and say that the
//! peer must be trusted.

use crate::sync::DataArea;

/// `len` payload bytes at data-area offset `offset`.
///
/// Invariant: `offset + len` lies inside `data`, and this side may access those bytes
/// (owned free space for a producer, a validated published frame for the consumer).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Payload {
    pub(crate) data: DataArea,
    pub(crate) offset: usize,
    pub(crate) len: usize,
}

impl Payload {
    /// The bytes from `n` on (none when `n` is past the end).
    #[inline]
    pub(crate) fn after(self, n: usize) -> Payload {
        let n = n.min(self.len);
        Payload {
            data: self.data,
            offset: self.offset + n,
            len: self.len - n,
        }
    }

    /// Panics unless `at..at + n` lies inside the payload (a caller bug).
    #[inline]
    fn check(&self, at: usize, n: usize, what: &str) {
        let end = at.checked_add(n);
        assert!(
            end.is_some_and(|e| e <= self.len),
            "{what} past the payload"
        );
    }

    /// Copies `src` into the payload at byte `at`.
    #[inline]
    pub(crate) fn write_at(&self, at: usize, src: &[u8]) {
        self.check(at, src.len(), "write");
        // SAFETY: inside the payload (checked), hence inside the data area (invariant).
        unsafe { self.data.write(self.offset + at, src) };
    }

    /// Sets every payload byte to `byte`.
    #[inline]
    pub(crate) fn fill(&self, byte: u8) {
        // SAFETY: the whole payload, inside the data area (invariant).
        unsafe { self.data.fill(self.offset, self.len, byte) };
    }

    /// [`read_at`](Self::read_at) when `at..at + dst.len()` lies inside the payload
    /// and inside one word of the area (a field, a byte): one load, and true;
    /// otherwise nothing is copied (false), out-of-range requests included, which
    /// `read_at` then reports.
    #[inline(always)]
    pub(crate) fn read_in_word(&self, at: usize, dst: &mut [u8]) -> bool {
        let inside = at <= self.len && dst.len() <= self.len - at;
        // SAFETY: inside the payload (checked), hence inside the data area (invariant).
        inside && unsafe { self.data.read_in_word(self.offset + at, dst) }
    }

    /// Copies payload bytes from `at` into `dst`.
    #[inline]
    pub(crate) fn read_at(&self, at: usize, dst: &mut [u8]) {
        self.check(at, dst.len(), "read");
        // SAFETY: inside the payload (checked), hence inside the data area (invariant).
        unsafe { self.data.read(self.offset + at, dst) };
    }

    /// Copies `len` bytes of `src` from its byte `src_at` into this payload at `at`:
    /// straight from area to area where the bulk copy applies, else through a stack
    /// buffer with the word accesses.
    pub(crate) fn copy_from(&self, at: usize, src: &Payload, src_at: usize, len: usize) {
        self.check(at, len, "write");
        src.check(src_at, len, "read");
        // SAFETY: both ranges inside their payloads (checked), hence inside their
        // areas (invariant).
        if unsafe {
            src.data
                .copy_bulk(src.offset + src_at, &self.data, self.offset + at, len)
        } {
            return;
        }
        let mut buf = [0u8; 256];
        let mut done = 0;
        while done < len {
            let n = (len - done).min(buf.len());
            src.read_at(src_at + done, &mut buf[..n]);
            self.write_at(at + done, &buf[..n]);
            done += n;
        }
    }

    /// The payload as a slice.
    ///
    /// # Safety
    /// Nothing may write the bytes while the slice lives (the peer is trusted).
    #[cfg(not(loom))]
    #[inline]
    pub(crate) unsafe fn slice<'a>(&self) -> &'a [u8] {
        // SAFETY: inside the data area (invariant), valid while the handle that owns
        // the grant lives (the caller ties the lifetime to the grant's borrow); not
        // written meanwhile (caller contract), so a shared slice is sound.
        unsafe { core::slice::from_raw_parts(self.data.ptr_at(self.offset), self.len) }
    }

    /// The payload as a mutable slice.
    ///
    /// # Safety
    /// Nothing else may read or write the bytes while the slice lives (the peer is
    /// trusted), and only one such slice may exist at a time.
    #[cfg(not(loom))]
    #[inline]
    #[allow(clippy::mut_from_ref)]
    pub(crate) unsafe fn slice_mut<'a>(&self) -> &'a mut [u8] {
        // SAFETY: as for `slice`, with exclusive access promised by the caller.
        unsafe { core::slice::from_raw_parts_mut(self.data.ptr_at(self.offset), self.len) }
    }
}
