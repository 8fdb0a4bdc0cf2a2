//! One client context: the Rust [`Client`] and the zero-copy buffer handed to C
//! (a response or a dispatch message still in shared memory), if any.
//!
//! The buffer borrows the client. The pair is kept in one place: the client lives
//! behind a raw pointer (from `Box::leak`) and the guard is stored with its
//! lifetime extended to `'static`. The rule that makes this sound: the guard is
//! dropped before the client is used in any other way (every access goes through
//! [`ClientCtx::client`], which drops it first) and before the client is freed.

use std::os::fd::{AsRawFd, RawFd};
use std::ptr::NonNull;
use std::thread::ThreadId;
use std::time::Duration;

use ipc::{Client, DispatchMsg, ResponseRef};

use crate::error::CapiError;
use crate::message::{check_incoming_response, request_command, Parts};
use crate::types::RESPONSE_HEADER_SIZE;

/// What C currently holds a pointer into.
enum Held {
    // The guards are only dropped, never read, once stored: the pointer C got is
    // the use.
    Response(#[allow(dead_code)] ResponseRef<'static>),
    Dispatch(#[allow(dead_code)] DispatchMsg<'static>),
}

/// Which kind of buffer a release call is for.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Response,
    Dispatch,
}

/// A client context (what an `hdb_handle_t` names).
pub(crate) struct ClientCtx {
    /// Declared first: dropped before `client` (see the module doc).
    held: Option<Held>,
    /// The thread that got the held buffer: calls from other threads wait until it
    /// is released.
    holder: Option<ThreadId>,
    /// Set by `coroipcc_service_disconnect`: every later call is `CS_ERR_BAD_HANDLE`.
    /// (The client itself lives until the last thread using it leaves.)
    pub(crate) closed: bool,
    client: NonNull<Client>,
    /// The pollable fd, fixed at connect.
    fd: RawFd,
    /// Flow-control state seen by the last look at the client, just before the held
    /// buffer was taken (read live when nothing is held).
    flow: bool,
}

// SAFETY: `Client` is `Send`, and so are the guards' parts (`&mut` of the client's
// consumers, `&` of its `Sync` doorbell); the guards borrow only that client and move
// with it. The context is only used under its mutex, one thread at a time (a guard
// taken on one thread may be dropped on another, which these types allow).
unsafe impl Send for ClientCtx {}

impl ClientCtx {
    pub(crate) fn new(client: Client) -> ClientCtx {
        let fd = client.as_raw_fd();
        let flow = client.flow_control();
        ClientCtx {
            held: None,
            holder: None,
            closed: false,
            client: NonNull::from(Box::leak(Box::new(client))),
            fd,
            flow,
        }
    }

    /// Releases the buffer C holds, if any.
    pub(crate) fn release(&mut self) {
        self.held = None;
        self.holder = None;
    }

    /// Releases the held buffer if it is of kind `kind`.
    pub(crate) fn release_kind(&mut self, kind: Kind) {
        let matches = match &self.held {
            Some(Held::Response(_)) => kind == Kind::Response,
            Some(Held::Dispatch(_)) => kind == Kind::Dispatch,
            None => false,
        };
        if matches {
            self.release();
        }
    }

    /// Whether another thread than `me` holds a buffer.
    pub(crate) fn held_by_other(&self, me: ThreadId) -> bool {
        self.held.is_some() && self.holder != Some(me)
    }

    fn hold(&mut self, held: Held) {
        self.held = Some(held);
        self.holder = Some(std::thread::current().id());
    }

    /// The client, after releasing the held buffer.
    fn client(&mut self) -> &mut Client {
        self.release();
        // SAFETY: the pointer came from `Box::leak` and is freed only in `drop`;
        // nothing borrows the client now (the guard was just dropped), and `&mut self`
        // makes this the only access.
        unsafe { self.client.as_mut() }
    }

    /// The client for a guard that will be stored in `held`.
    fn client_for_guard(&mut self) -> &'static mut Client {
        self.release();
        // SAFETY: as in `client`; the `'static` is a lie kept honest by the module
        // rule: the guard made from this borrow is dropped before any other use of
        // the client and before it is freed.
        unsafe { &mut *self.client.as_ptr() }
    }

    pub(crate) fn fd(&self) -> RawFd {
        self.fd
    }

    /// The dispatch flow-control state: live, or as last seen while C holds a buffer.
    pub(crate) fn flow_control(&mut self) -> bool {
        if self.held.is_none() {
            let live = self.client().flow_control();
            self.flow = live;
        }
        self.flow
    }

    /// Sends the request in `parts` and runs `f` on the checked response (still in
    /// shared memory); returns it with `f`'s result.
    fn request<R>(
        &mut self,
        parts: &Parts<'_>,
        f: impl FnOnce(&ResponseRef<'static>, usize) -> Result<R, CapiError>,
    ) -> Result<(ResponseRef<'static>, R), CapiError> {
        let command = request_command(parts)?;
        let joined;
        let payload: &[u8] = match parts.parts.as_slice() {
            [one] => one,
            many => {
                joined = many.concat();
                &joined
            }
        };
        let client = self.client_for_guard();
        self.flow = client.flow_control();
        let response = client.request_in_place(command, payload)?;
        let len = response.len();
        let mut head = [0u8; RESPONSE_HEADER_SIZE];
        let n = response.read_into(&mut head);
        check_incoming_response(&head[..n], len)?;
        let r = f(&response, len)?;
        Ok((response, r))
    }

    /// Sends a request; copies the response to the `max` bytes at `out`; returns its
    /// length.
    ///
    /// # Safety
    ///
    /// `out` points to `max` (at most `isize::MAX`) writable bytes, which may overlap
    /// the request's buffers: they are only borrowed once the request is sent.
    pub(crate) unsafe fn request_copy(
        &mut self,
        parts: &Parts<'_>,
        out: *mut u8,
        max: usize,
    ) -> Result<usize, CapiError> {
        let (_released, len) = self.request(parts, |r, len| {
            if len > max {
                return Err(CapiError::BufferTooSmall { len, max });
            }
            // SAFETY: `max` writable bytes (contract); the request's slices, which may
            // overlap them, are not used from here on.
            let out = unsafe { std::slice::from_raw_parts_mut(out, max) };
            Ok(r.read_into(out))
        })?;
        Ok(len)
    }

    /// Sends a request; keeps the response in shared memory and returns a pointer
    /// to it, valid until [`release`](Self::release) or the next use of the context.
    pub(crate) fn request_in_place(&mut self, parts: &Parts<'_>) -> Result<*const u8, CapiError> {
        let (response, ptr) = self.request(parts, |r, _| {
            // SAFETY: the server is trusted not to write a response it handed over
            // (the seed's contract for zero-copy receive); the slice itself is only
            // turned into a pointer.
            Ok(unsafe { r.as_slice_trusted() }.as_ptr())
        })?;
        self.hold(Held::Response(response));
        Ok(ptr)
    }

    /// Receives the next dispatch message (waiting up to `timeout`, `None`:
    /// forever); keeps it in shared memory and returns a pointer to it, or NULL when
    /// none came.
    pub(crate) fn dispatch_get(
        &mut self,
        timeout: Option<Duration>,
    ) -> Result<*const u8, CapiError> {
        let client = self.client_for_guard();
        self.flow = client.flow_control();
        let Some(msg) = client.dispatch_recv(timeout)? else {
            return Ok(std::ptr::null());
        };
        let mut head = [0u8; RESPONSE_HEADER_SIZE];
        let n = msg.read_into(&mut head);
        check_incoming_response(&head[..n], msg.len())?;
        // SAFETY: as in `request_in_place`.
        let ptr = unsafe { msg.as_slice_trusted() }.as_ptr();
        self.hold(Held::Dispatch(msg));
        Ok(ptr)
    }
}

impl Drop for ClientCtx {
    fn drop(&mut self) {
        self.held = None;
        // SAFETY: from `Box::leak` in `new`, freed once, here; the guard that could
        // borrow it is gone.
        drop(unsafe { Box::from_raw(self.client.as_ptr()) });
    }
}

#[cfg(test)]
mod tests {
    /// The claim behind `unsafe impl Send for ClientCtx`: its parts are `Send`.
    #[test]
    fn the_parts_are_send() {
        fn send<T: Send>() {}
        send::<ipc::Client>();
        send::<ipc::ResponseRef<'static>>();
        send::<ipc::DispatchMsg<'static>>();
    }
}
