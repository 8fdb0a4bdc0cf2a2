//! The bytes of a grant, as one pair of view types every grant derefs to: [`Bytes`]
//! (a published message, read) and [`BytesMut`] (reserved space, written).
//!
//! Threat answered: the peer can write these bytes at any moment (a hostile consumer
//! can scribble over a producer's reservation, a hostile producer over a published
//! message), so no safe method hands out a `&[u8]` or `&mut [u8]` into them: that
//! would be a data race in Rust's model, and a reader could see bytes change under a
//! slice it already validated. Safe access copies in and out with the atomic word
//! accesses of the data area; the slice views are `unsafe` and say that the peer must
//! be trusted.
//!
//! One type per direction, so that the code forwarding bytes lives once: the ring's
//! grants ([`ReadGrant`](crate::ReadGrant), [`WriteGrant`](crate::WriteGrant),
//! [`MpscGrant`](crate::MpscGrant)) deref to these, and so does every guard a layer
//! above builds on them. A grant can hide a header it has read or written
//! (`skip_prefix`): the view is then the payload after it.

use core::marker::PhantomData;

use crate::payload::Payload;

/// Read access to the bytes of a received message, in place in shared memory.
///
/// Borrowed from a [`ReadGrant`](crate::ReadGrant) (by deref). The copies are made
/// with atomic word loads: a hostile producer rewriting the bytes meanwhile changes
/// what is copied, never the soundness of this process. Parse the copy, which cannot
/// change under you.
pub struct Bytes<'a> {
    payload: Payload,
    _grant: PhantomData<&'a ()>,
}

// SAFETY: a `Bytes` reads its bytes only with atomic loads, or through the `unsafe`
// trusted slice whose caller vouches for the peer; the memory lives for `'a` (the
// borrow of the handle that keeps the region alive). Sharing or moving it between
// threads adds no access a single thread could not make.
unsafe impl Send for Bytes<'_> {}
// SAFETY: as above; every method takes `&self` and only reads.
unsafe impl Sync for Bytes<'_> {}

impl core::fmt::Debug for Bytes<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Bytes").field("len", &self.len()).finish()
    }
}

impl Bytes<'_> {
    /// A view of `payload`, which this side may read for `'a` (grant invariant).
    #[inline]
    pub(crate) fn new(payload: Payload) -> Self {
        Bytes {
            payload,
            _grant: PhantomData,
        }
    }

    #[inline]
    pub(crate) fn payload(&self) -> &Payload {
        &self.payload
    }

    /// Hides the first `n` bytes (at most all of them).
    #[inline]
    pub(crate) fn skip(&mut self, n: usize) {
        self.payload = self.payload.after(n);
    }

    /// Length in bytes.
    #[inline]
    pub fn len(&self) -> usize {
        self.payload.len
    }

    /// True for zero bytes.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.payload.len == 0
    }

    /// Copies bytes `at..at + dst.len()` into `dst`.
    ///
    /// A read inside one word (a field, a byte) is inlined; the rest is a call. The
    /// whole copy inlined into the benchmark's consumer loop measured 25% fewer 64 B
    /// single messages per second (8 alternating runs; the same with the call), and
    /// the call cost ~50 instructions for one byte.
    ///
    /// # Panics
    /// If the range exceeds the bytes (a caller bug; see [`len`](Self::len)).
    #[inline]
    pub fn read_at(&self, at: usize, dst: &mut [u8]) {
        if !self.payload.read_in_word(at, dst) {
            self.read_at_copy(at, dst);
        }
    }

    /// [`read_at`](Self::read_at) beyond one word, out of line.
    #[inline(never)]
    fn read_at_copy(&self, at: usize, dst: &mut [u8]) {
        self.payload.read_at(at, dst);
    }

    /// Copies the bytes (or their first `dst.len()`) into `dst`; returns how many.
    pub fn read_into(&self, dst: &mut [u8]) -> usize {
        let n = dst.len().min(self.len());
        self.payload.read_at(0, &mut dst[..n]);
        n
    }

    /// The bytes, copied into a new `Vec`.
    #[cfg(feature = "alloc")]
    pub fn to_vec(&self) -> alloc::vec::Vec<u8> {
        let mut out = alloc::vec![0; self.len()];
        self.read_into(&mut out);
        out
    }

    /// The bytes in place, in shared memory (zero copy).
    ///
    /// # Safety
    /// The producer must be trusted not to write these bytes while the slice lives
    /// (the protocol says it does not, until the message is released; a hostile or
    /// buggy producer could, which would be a data race: undefined behaviour, and a
    /// slice whose contents change after you checked them). With an untrusted
    /// producer use [`read_into`](Self::read_into), [`read_at`](Self::read_at) or
    /// `to_vec`.
    #[cfg(not(loom))]
    pub unsafe fn as_slice_trusted(&self) -> &[u8] {
        // SAFETY: a validated frame inside the data area, which lives as long as the
        // borrow of `self` (no longer than the grant's); not written meanwhile
        // (contract).
        unsafe { self.payload.slice() }
    }
}

/// Write access to reserved space, in place in shared memory.
///
/// Borrowed from a [`WriteGrant`](crate::WriteGrant) or an
/// [`MpscGrant`](crate::MpscGrant) (by deref). The writes are atomic word stores:
/// sound even if a hostile consumer writes the same bytes.
pub struct BytesMut<'a> {
    payload: Payload,
    /// Bytes of the message before `payload`, hidden by `skip`: the message is
    /// `skipped + payload.len` long.
    skipped: usize,
    _grant: PhantomData<&'a mut ()>,
}

// SAFETY: as for `Bytes`: stores are atomic, the trusted slice is `unsafe` with the
// caller vouching for the peer, and writes need `&mut self`, so sharing a `&BytesMut`
// gives only its length.
unsafe impl Send for BytesMut<'_> {}
// SAFETY: as above.
unsafe impl Sync for BytesMut<'_> {}

impl core::fmt::Debug for BytesMut<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("BytesMut")
            .field("len", &self.len())
            .finish()
    }
}

impl BytesMut<'_> {
    /// A view of `payload`, which this side owns for `'a` (grant invariant).
    #[inline]
    pub(crate) fn new(payload: Payload) -> Self {
        BytesMut {
            payload,
            skipped: 0,
            _grant: PhantomData,
        }
    }

    /// Hides the first `n` bytes (at most all of them); the message keeps them.
    #[inline]
    pub(crate) fn skip(&mut self, n: usize) {
        let n = n.min(self.payload.len);
        self.skipped += n;
        self.payload = self.payload.after(n);
    }

    /// The whole message's length: the hidden bytes and the view.
    #[inline]
    pub(crate) fn message_len(&self) -> usize {
        self.skipped + self.payload.len
    }

    /// The whole message's length if this is still the view made for `own` (the
    /// payload its grant reserved): same data area, same start, no longer. A view
    /// swapped in from another grant through `DerefMut` (`mem::swap(&mut *g1, &mut
    /// *g2)`) is not, and committing its length would write a frame for space the
    /// grant never reserved (ring audit M2): `None`.
    #[inline]
    pub(crate) fn message_len_in(&self, own: &Payload) -> Option<usize> {
        let len = self.message_len();
        let ours = self.payload.data == own.data
            && self.payload.offset.wrapping_sub(self.skipped) == own.offset
            && len <= own.len;
        ours.then_some(len)
    }

    /// Shortens the view to `len` bytes (no-op if not shorter).
    #[inline]
    pub(crate) fn truncate(&mut self, len: usize) {
        self.payload.len = self.payload.len.min(len);
    }

    /// Length in bytes.
    #[inline]
    pub fn len(&self) -> usize {
        self.payload.len
    }

    /// True for zero bytes.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.payload.len == 0
    }

    /// Copies `src` into the bytes at `at`.
    ///
    /// # Panics
    /// If `at + src.len()` exceeds the length (a caller bug).
    pub fn write_at(&mut self, at: usize, src: &[u8]) {
        self.payload.write_at(at, src);
    }

    /// Sets every byte to `byte`.
    pub fn fill(&mut self, byte: u8) {
        self.payload.fill(byte);
    }

    /// Copies `len` bytes of a received message, from its byte `src_at`, into these
    /// bytes at `at`: shared memory to shared memory with no copy in between
    /// (forwarding, echoing). Sound against hostile peers on both rings, as
    /// [`write_at`](Self::write_at) and [`Bytes::read_at`] are.
    ///
    /// # Panics
    /// If either range exceeds its bytes (a caller bug).
    pub fn copy_from(&mut self, at: usize, src: &Bytes<'_>, src_at: usize, len: usize) {
        self.payload.copy_from(at, src.payload(), src_at, len);
    }

    /// The bytes as a mutable slice of shared memory (zero copy).
    ///
    /// # Safety
    /// The consumer must be trusted not to read or write these bytes while the slice
    /// lives (the protocol says it does not touch them before they are published; a
    /// hostile or buggy consumer could, which would be a data race: undefined
    /// behaviour). With an untrusted consumer use [`write_at`](Self::write_at) or
    /// [`fill`](Self::fill). Nor may another view write these bytes: views swapped
    /// between two MPSC grants (`mem::swap` through `DerefMut`) are found out at
    /// commit, which then publishes a SKIP, but the other grant's view still reaches
    /// space it no longer owns, which another producer may claim and fill meanwhile.
    /// Never swap grant views.
    #[cfg(not(loom))]
    pub unsafe fn as_mut_slice_trusted(&mut self) -> &mut [u8] {
        // SAFETY: space this side owns until it publishes (grant invariant), inside a
        // region that outlives the borrow of `self`; `&mut self` makes the slice
        // unique; the consumer keeps off it (contract).
        unsafe { self.payload.slice_mut() }
    }
}
