//! One client context: the Rust [`Client`] (when no request has it out: `slot.rs`),
//! the buffers C holds pointers into, and the zero-copy buffers (`coroipcc_zcb_*`) it
//! owns.
//!
//! Messages C keeps a pointer to (a dispatch message between `coroipcc_dispatch_get`
//! and `_put`, a response between `_in_buf_get` and `_put`) are copied out of the
//! ring into a buffer of the context, 8-aligned, so the ring slot is released at
//! once: a request made while a dispatch message is held (corosync's libraries call
//! the application's callbacks with it held, and callbacks send) cannot invalidate
//! it, and no borrow of the client outlives a call. One copy of a message that is
//! typically a few hundred bytes buys that.
//!
//! Dispatch messages nest: a `coroipcc_dispatch_get` by the thread that holds one (a
//! callback of `cpg_dispatch(CS_DISPATCH_ALL)` calling `cpg_dispatch(CS_DISPATCH_ONE)`)
//! copies the next message into a buffer of its own and keeps the held one, which the
//! outer callback still reads (corosync's pointer stayed valid until its put: the read
//! index moved only then). Each put releases the innermost. A held buffer is never
//! reused or freed before its put or the disconnect.

use std::alloc::{alloc_zeroed, dealloc, Layout};
use std::collections::HashMap;
use std::ptr::NonNull;
use std::sync::Arc;
use std::thread::ThreadId;
use std::time::Duration;

use ipc::{Client, ClientError};

use crate::error::CapiError;
use crate::message::check_incoming_response;
#[cfg(test)]
use crate::types::cs_error_t;
use crate::types::RESPONSE_HEADER_SIZE;

/// Which kind of buffer a call is about.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Kind {
    /// A response kept for `_in_buf_get`.
    Response,
    /// A dispatch message kept for `coroipcc_dispatch_get`.
    Dispatch,
}

/// A message C holds a pointer into, copied out of the ring.
#[derive(Default)]
pub(super) struct Held {
    /// The message, in 8-byte words (so its start is 8-aligned); its first `len`
    /// bytes are the message.
    words: Vec<u64>,
    /// The thread that took it, while it is held.
    holder: Option<ThreadId>,
}

impl Held {
    /// Room for `len` bytes, as a byte slice to fill.
    pub(super) fn fill(&mut self, len: usize) -> &mut [u8] {
        self.words.clear();
        self.words.resize(len.div_ceil(8), 0);
        let bytes = self.words.as_mut_ptr().cast::<u8>();
        // SAFETY: `words` holds at least `len` bytes, initialised (zeroed), borrowed
        // mutably through `self` for the slice's life.
        unsafe { std::slice::from_raw_parts_mut(bytes, len) }
    }

    fn take(&mut self) -> *const u8 {
        self.holder = Some(std::thread::current().id());
        self.words.as_ptr().cast()
    }
}

/// The most dispatch messages one thread may hold at once (gets nested without puts);
/// beyond it a get is `CS_ERR_NO_RESOURCES`, so a get loop that never puts cannot
/// grow the context without bound.
const MAX_HELD_DISPATCH: usize = 64;

/// The dispatch messages C holds, all taken by one thread.
#[derive(Default)]
struct Dispatches {
    /// Taken and not yet put, outermost first. Moving a `Held` here moves its `Vec`,
    /// not the words C points into.
    held: Vec<Held>,
    /// The buffer of the last message put (or dropped), reused by the next get: C
    /// holds no pointer into it.
    spare: Held,
}

impl Dispatches {
    /// The thread holding the messages, if any.
    fn holder(&self) -> Option<ThreadId> {
        self.held.last().and_then(|h| h.holder)
    }

    /// `Err` when one more message may not be held.
    fn check_room(&self) -> Result<(), CapiError> {
        if self.held.len() >= MAX_HELD_DISPATCH {
            return Err(CapiError::TooManyHeld(self.held.len()));
        }
        Ok(())
    }

    /// A buffer no pointer of C's reaches, to copy the next message into.
    fn fresh(&mut self) -> Held {
        std::mem::take(&mut self.spare)
    }

    /// Holds `buf` (a message copied in) for the calling thread, innermost; a pointer
    /// to the message.
    fn hold(&mut self, mut buf: Held) -> *const u8 {
        let ptr = buf.take();
        self.held.push(buf);
        ptr
    }

    /// Takes back a buffer of [`fresh`](Self::fresh) that is not held (its message was
    /// dropped).
    fn give_back(&mut self, buf: Held) {
        self.spare = buf;
    }

    /// Releases the innermost message, if `me` holds the messages. Nothing happens
    /// otherwise: a put from a thread that holds none (a stray put, or one without its
    /// get) must not free a message another thread is reading (C API audit finding 9).
    fn put(&mut self, me: ThreadId) {
        if self.holder() != Some(me) {
            return;
        }
        if let Some(mut buf) = self.held.pop() {
            buf.holder = None;
            self.spare = buf;
        }
    }

    /// Frees every message (the context is closing).
    fn clear(&mut self) {
        *self = Dispatches::default();
    }
}

/// A buffer of `coroipcc_zcb_alloc`: zeroed, 8-aligned memory C writes a request
/// into. The library only reads it, in `coroipcc_zcb_msg_send_reply_receive`, which
/// holds its own reference: a `coroipcc_zcb_free` from another thread during the send
/// frees it after the send, not under it.
pub(super) struct Zcb {
    ptr: NonNull<u8>,
    layout: Layout,
}

// SAFETY: plain heap memory owned by the `Zcb`; the library only reads it (C writes
// it between the calls that hand it out and take it back, on whatever thread).
unsafe impl Send for Zcb {}
// SAFETY: as for `Send`: shared references only read it.
unsafe impl Sync for Zcb {}

impl Zcb {
    /// The buffer's bytes.
    ///
    /// # Safety
    ///
    /// C does not write the buffer while the slice lives.
    pub(super) unsafe fn bytes(&self) -> &[u8] {
        // SAFETY: `layout.size()` initialised bytes (zeroed at allocation, then
        // written by C), not written meanwhile (contract).
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.layout.size()) }
    }
}

impl Drop for Zcb {
    fn drop(&mut self) {
        // SAFETY: allocated in `zcb_alloc` with this layout, freed once, here.
        unsafe { dealloc(self.ptr.as_ptr(), self.layout) };
    }
}

/// A client context (what an `hdb_handle_t` names).
pub(crate) struct ClientCtx {
    /// The client; `None` while a thread has it out for a request
    /// ([`Slot::checkout`](super::slot::Slot::checkout)).
    pub(super) client: Option<Client>,
    /// Dispatchers waiting for the client to come back (`slot.rs`): a request that
    /// comes back for it lets them go first.
    pub(super) waiting_for_client: usize,
    /// Set by `coroipcc_service_disconnect`: every later call is `CS_ERR_BAD_HANDLE`.
    /// (The client itself lives until the last thread using it leaves.)
    pub(crate) closed: bool,
    dispatch: Dispatches,
    /// `_in_buf_get` responses, one per thread that holds one: a thread that never
    /// calls `_in_buf_put` (corosync's confdb skips it on an allocation failure)
    /// blocks nobody. Not capped: an entry goes at its thread's put, is reused by its
    /// next get, and otherwise (the thread exited holding it) stays until the
    /// disconnect; so the map is bounded by the threads that used the context, each
    /// entry by the largest response (the documented bound, C API audit finding 10).
    responses: HashMap<ThreadId, Held>,
    zcbs: Vec<Arc<Zcb>>,
}

impl ClientCtx {
    /// A context for `client`.
    pub(crate) fn new(client: Client) -> ClientCtx {
        ClientCtx {
            client: Some(client),
            waiting_for_client: 0,
            closed: false,
            dispatch: Dispatches::default(),
            responses: HashMap::new(),
            zcbs: Vec::new(),
        }
    }

    /// Whether a thread other than `me` holds dispatch messages (responses are per
    /// thread: nobody waits for another's).
    pub(crate) fn dispatch_held_by_other(&self, me: ThreadId) -> bool {
        self.dispatch.holder().is_some_and(|h| h != me)
    }

    /// Releases the calling thread's buffer of `kind` (none held by it: nothing
    /// happens); for dispatch messages, the innermost one it holds.
    pub(crate) fn release(&mut self, kind: Kind) {
        let me = std::thread::current().id();
        match kind {
            Kind::Response => {
                self.responses.remove(&me);
            }
            Kind::Dispatch => self.dispatch.put(me),
        }
    }

    /// Releases every thread's buffers (the context is closing).
    pub(crate) fn release_all(&mut self) {
        self.responses.clear();
        self.dispatch.clear();
    }

    /// Takes the calling thread's `_in_buf_get` buffer to fill with its next
    /// response (the pointer C had into it is invalid from here on).
    pub(super) fn take_response_buffer(&mut self, me: ThreadId) -> Held {
        self.responses.remove(&me).unwrap_or_default()
    }

    /// Holds `held` (a response copied in) for thread `me`; a pointer to it, valid
    /// until that thread's `release(Kind::Response)` or next `_in_buf_get`.
    pub(super) fn hold_response(&mut self, me: ThreadId, mut held: Held) -> *const u8 {
        let ptr = held.take();
        self.responses.insert(me, held);
        ptr
    }

    /// Receives the next dispatch message (waiting up to `timeout`, `None`: as long
    /// as the server lives) into a buffer of the context, held by the calling thread
    /// on top of any it holds already; a pointer to it, or NULL when none came (then
    /// nothing is released). Called with the client in the context
    /// ([`Turn::Dispatch`](super::slot::Turn::Dispatch)); without it, `TryAgain`.
    pub(crate) fn dispatch_get(
        &mut self,
        timeout: Option<Duration>,
    ) -> Result<*const u8, CapiError> {
        self.dispatch.check_room()?;
        let client = self.client.as_mut().ok_or(ClientError::TryAgain)?;
        let Some(msg) = client.dispatch_recv(timeout)? else {
            return Ok(std::ptr::null());
        };
        let len = msg.len();
        let mut buf = self.dispatch.fresh();
        let bytes = buf.fill(len);
        msg.read_into(bytes);
        drop(msg);
        if let Err(e) = check_incoming_response(&bytes[..len.min(RESPONSE_HEADER_SIZE)], len) {
            self.dispatch.give_back(buf);
            return Err(e);
        }
        Ok(self.dispatch.hold(buf))
    }

    /// A zeroed, 8-aligned buffer of `len` bytes, at most `limit`, owned by the
    /// context.
    pub(crate) fn zcb_alloc(&mut self, len: usize, limit: usize) -> Result<*mut u8, CapiError> {
        if len == 0 || len > limit {
            return Err(CapiError::InvalidParam(
                "zcb size is 0 or larger than the largest request",
            ));
        }
        let layout = Layout::from_size_align(len, 8)
            .map_err(|_| CapiError::InvalidParam("zcb size too large"))?;
        // SAFETY: `layout` has a non-zero size.
        let ptr = NonNull::new(unsafe { alloc_zeroed(layout) }).ok_or(CapiError::NoMemory)?;
        self.zcbs.push(Arc::new(Zcb { ptr, layout }));
        Ok(ptr.as_ptr())
    }

    fn zcb_index(&self, ptr: *const u8) -> Result<usize, CapiError> {
        self.zcbs
            .iter()
            .position(|z| z.ptr.as_ptr().cast_const() == ptr)
            .ok_or(CapiError::InvalidParam(
                "not a buffer of coroipcc_zcb_alloc on this handle",
            ))
    }

    /// The buffer of [`zcb_alloc`](Self::zcb_alloc) at `ptr`, for a send.
    pub(super) fn zcb(&self, ptr: *const u8) -> Result<Arc<Zcb>, CapiError> {
        Ok(self.zcbs[self.zcb_index(ptr)?].clone())
    }

    /// Frees a buffer of [`zcb_alloc`](Self::zcb_alloc) (once no send reads it).
    pub(crate) fn zcb_free(&mut self, ptr: *const u8) -> Result<(), CapiError> {
        let i = self.zcb_index(ptr)?;
        self.zcbs.swap_remove(i);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn held_copies_are_8_aligned_and_sized() {
        let mut h = Held::default();
        let b = h.fill(13);
        assert_eq!(b.len(), 13);
        b[12] = 7;
        let p = h.take();
        assert_eq!(p.align_offset(8), 0);
        assert_eq!(h.words.len(), 2);
    }

    /// Fills a fresh buffer of `d` with `len` bytes of `byte` and holds it.
    fn hold(d: &mut Dispatches, len: usize, byte: u8) -> *const u8 {
        let mut buf = d.fresh();
        buf.fill(len).fill(byte);
        d.hold(buf)
    }

    /// The `len` bytes at `ptr`, still held in `d`.
    fn bytes_of(d: &Dispatches, ptr: *const u8, len: usize) -> Vec<u8> {
        let held = d.held.iter().find(|h| h.words.as_ptr().cast() == ptr);
        let held = held.expect("a held buffer");
        assert!(held.words.len() * 8 >= len);
        // SAFETY: `ptr` is the start of `held.words`, at least `len` initialised bytes.
        unsafe { std::slice::from_raw_parts(ptr, len) }.to_vec()
    }

    #[test]
    fn nested_dispatch_messages_are_kept_until_their_put() {
        let me = std::thread::current().id();
        let mut d = Dispatches::default();
        let outer = hold(&mut d, 48, 0x11);
        for (len, byte) in [(32, 0x22), (4096, 0x33)] {
            // A nested message, smaller (the old code overwrote the outer one) or
            // larger (it reallocated it): the outer one stays as it was.
            let inner = hold(&mut d, len, byte);
            assert_ne!(inner, outer);
            assert_eq!(bytes_of(&d, inner, len), vec![byte; len]);
            assert_eq!(d.held.len(), 2);
            d.put(me);
            assert_eq!(bytes_of(&d, outer, 48), vec![0x11; 48]);
        }
        assert_eq!(d.holder(), Some(me));
        d.put(me);
        assert!(d.held.is_empty() && d.holder().is_none());
        d.put(me); // none held: nothing happens
        assert!(d.check_room().is_ok());
    }

    #[test]
    fn a_thread_holds_at_most_max_held_dispatch_messages() {
        let me = std::thread::current().id();
        let mut d = Dispatches::default();
        for _ in 0..MAX_HELD_DISPATCH {
            assert!(d.check_room().is_ok());
            hold(&mut d, 24, 1);
        }
        let full = d.check_room();
        assert!(matches!(
            full,
            Err(CapiError::TooManyHeld(MAX_HELD_DISPATCH))
        ));
        let code = full.err().map(|e| e.code());
        assert_eq!(code, Some(cs_error_t::CS_ERR_NO_RESOURCES));
        d.put(me);
        assert!(d.check_room().is_ok());
        d.clear();
        assert!(d.held.is_empty());
    }

    #[test]
    fn a_put_from_another_thread_releases_nothing() {
        let me = std::thread::current().id();
        let other = std::thread::spawn(|| std::thread::current().id())
            .join()
            .unwrap();
        let mut d = Dispatches::default();
        let mine = hold(&mut d, 40, 0x44);
        d.put(other);
        assert_eq!(d.held.len(), 1, "still held");
        assert_eq!(bytes_of(&d, mine, 40), vec![0x44; 40]);
        d.put(me);
        assert!(d.held.is_empty());
    }

    #[test]
    fn the_client_is_send() {
        fn send<T: Send>() {}
        send::<ipc::Client>();
    }
}
