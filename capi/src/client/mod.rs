//! `coroipcc.h`: corosync 1.4's client functions. Contexts are `hdb_handle_t`
//! numbers from a handle table (module `handle`). Who waits for whom on one context
//! is decided in module `slot`: requests take turns for their whole call (as
//! corosync's), while the dispatch side never waits out a request
//! (`coroipcc_dispatch_get` waits at most its timeout or 15 ms, whichever is longer;
//! `_fd_get` and `_flow_control_get` not at all); a dispatch message held by one
//! thread makes other threads' `coroipcc_dispatch_get` wait until it is released,
//! within their timeout (the holder's own gets nest: module `ctx`; `_in_buf_get`
//! responses are per thread); a blocking `coroipcc_dispatch_get` waits on the
//! context's fd without holding it. So a dispatch thread and request threads can
//! share one context, as corosync clients do. Module `request` is the request path.

mod ctx;
mod request;
mod slot;

use std::ffi::{c_char, c_int, c_uint, c_void};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ipc::{Client, ClientError, ConnectOptions};

use crate::error::CapiError;
use crate::handle::{Registry, Tag};
use crate::message::{out, socket_name, Parts};
use crate::panic::boundary;
use crate::types::{cs_error_t, hdb_handle_t};
use ctx::{ClientCtx, Kind};
use slot::{Slot, Turn};

static CLIENTS: Registry<Slot> = Registry::new(Tag::Client);

/// The slot behind `handle`.
fn slot_of(handle: hdb_handle_t) -> Result<Arc<Slot>, CapiError> {
    CLIENTS.get(handle).ok_or(CapiError::BadHandle)
}

/// Runs `f` on the context behind `handle` (its buffers only: it never waits for a
/// request on another thread).
fn with_ctx<R>(
    handle: hdb_handle_t,
    f: impl FnOnce(&mut ClientCtx) -> Result<R, CapiError>,
) -> Result<R, CapiError> {
    slot_of(handle)?.with(Turn::Context, None, f)
}

/// The ring capacity to ask for so that a message of `size` bytes fits: twice the
/// size, a power of two (the server caps it at its `Limits::max_ring_size`).
fn ring_for(size: usize) -> Result<u32, CapiError> {
    if size == 0 {
        return Err(CapiError::InvalidParam("a ring size of 0"));
    }
    size.checked_mul(2)
        .and_then(usize::checked_next_power_of_two)
        .and_then(|n| u32::try_from(n).ok())
        .ok_or(CapiError::InvalidParam("a ring size above 2 GiB"))
}

/// corosync 1.4's `coroipcc_service_connect`: connects to `service` of the server
/// listening under `socket_name` (a string starting with `/` is a socket file,
/// anything else a Linux abstract name) and stores the new context in `*handle`. The
/// sizes bound the largest request and response and size the dispatch ring (the
/// server may cap them).
///
/// Threads: a context may be used from any thread. Requests on one context take
/// turns; `coroipcc_dispatch_get` beside a request waits for it at most its own
/// timeout or 15 ms, whichever is longer, and `coroipcc_fd_get` and `coroipcc_dispatch_flow_control_get` not at
/// all; while a thread holds a dispatch message of the context, other threads'
/// `coroipcc_dispatch_get` wait until it releases it, within their timeout
/// (`_in_buf_get` responses are per thread); a waiting `coroipcc_dispatch_get` does
/// not hold the context.
///
/// Returns `CS_OK`; `CS_ERR_TRY_AGAIN` (nobody listens under the name, as
/// corosync's); `CS_ERR_NOT_EXIST` (no such service); `CS_ERR_ACCESS` (refused by
/// the server's security callback or the service); `CS_ERR_NO_RESOURCES`;
/// `CS_ERR_TIMEOUT`; `CS_ERR_SECURITY` (the server's answer or memory is malformed);
/// `CS_ERR_INVALID_PARAM` (NULL argument, service above 65535, a size of 0);
/// `CS_ERR_LIBRARY`.
///
/// # Safety
///
/// `socket_name` is NULL or a NUL-terminated string; `handle` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn coroipcc_service_connect(
    socket_name: *const c_char,
    service: c_uint,
    request_size: usize,
    response_size: usize,
    dispatch_size: usize,
    handle: *mut hdb_handle_t,
) -> cs_error_t {
    boundary(|| {
        // SAFETY: `handle` is NULL or writable (this function's contract).
        let handle = unsafe { out(handle, "handle is NULL") }?;
        // SAFETY: forwarded contract.
        let name = unsafe { self::socket_name(socket_name) }?;
        let service =
            u16::try_from(service).map_err(|_| CapiError::InvalidParam("service above 65535"))?;
        let options = ConnectOptions {
            request_ring: ring_for(request_size)?,
            response_ring: ring_for(response_size)?,
            dispatch_ring: ring_for(dispatch_size)?,
            ..ConnectOptions::default()
        };
        let client = Client::connect(&name, service, &options)?;
        *handle = CLIENTS.insert(Arc::new(Slot::new(client, request_size)?));
        Ok(())
    })
}

/// Disconnects and frees the context. From now on `handle` is invalid
/// (`CS_ERR_BAD_HANDLE` everywhere, a second disconnect included), and every pointer
/// obtained through it (`res_msg` of `_in_buf_get`, `buf` of `coroipcc_dispatch_get`,
/// zcb buffers, the fd of `coroipcc_fd_get`) is dangling. The connection is shut down
/// first, so a call blocked on another thread ends at once: a request with
/// `CS_ERR_LIBRARY`, a `coroipcc_dispatch_get` with `CS_ERR_BAD_HANDLE` (as corosync's
/// `shutdown` of the socket ended them).
#[no_mangle]
pub extern "C" fn coroipcc_service_disconnect(handle: hdb_handle_t) -> cs_error_t {
    boundary(|| {
        let slot = CLIENTS.remove(handle).ok_or(CapiError::BadHandle)?;
        // A thread blocked in a request on this context returns (`CS_ERR_LIBRARY`)
        // and lets go of it; one woken from waiting on the fd sees the handle gone.
        slot.close();
        // The client is freed here, or when a call still running on another thread
        // (waiting on its fd) ends.
        drop(slot);
        Ok(())
    })
}

/// Stores in `*fd` a descriptor to `poll(2)` for readability: readable when a
/// dispatch message (or a response) waits or the server is gone. It becomes readable
/// for a new message after a `coroipcc_dispatch_get(handle, &buf, 0)` found none
/// (before the first such call it may poll readable once, to say "call it"). The fd
/// belongs to the context: do not close it; it is valid until
/// `coroipcc_service_disconnect`.
///
/// # Safety
///
/// `fd` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn coroipcc_fd_get(handle: hdb_handle_t, fd: *mut c_int) -> cs_error_t {
    boundary(|| {
        // SAFETY: `fd` is NULL or writable (this function's contract).
        let fd = unsafe { out(fd, "fd is NULL") }?;
        *fd = slot_of(handle)?.fd;
        Ok(())
    })
}

/// corosync 1.4's `coroipcc_msg_send_reply_receive`: sends the request gathered from
/// `iov` (it must start with a `coroipc_request_header_t` whose `size` is the total
/// length and whose `id`, in `0..=65535`, is the command) and copies its response
/// (which starts with a `coroipc_response_header_t`) into `res_msg`: cut at `res_len`,
/// the rest of `res_msg` zeroed when shorter.
///
/// Returns `CS_OK` when a response arrived (the service's status is in its header's
/// `error`); `CS_ERR_TRY_AGAIN` when the server's admission control refused it (the
/// response header says so, as corosync's coroipcc reported); `CS_ERR_INVALID_PARAM`
/// (NULL, lying `size`, bad id, a request above `request_size` or the server's grant,
/// checked before anything is copied, a command the service does not have);
/// `CS_ERR_MESSAGE_ERROR` (a response without a valid header); `CS_ERR_LIBRARY` (the
/// server is gone); `CS_ERR_BAD_HANDLE`.
///
/// # Safety
///
/// `iov` is NULL or points to `iov_len` `struct iovec`s describing readable bytes;
/// `res_msg` is NULL or points to `res_len` writable bytes (it may be the request's own
/// buffer). Both are only used during the call.
#[no_mangle]
pub unsafe extern "C" fn coroipcc_msg_send_reply_receive(
    handle: hdb_handle_t,
    iov: *const libc::iovec,
    iov_len: c_uint,
    res_msg: *mut c_void,
    res_len: usize,
) -> cs_error_t {
    boundary(|| {
        // SAFETY: forwarded contract.
        let parts = unsafe { Parts::gather(iov, iov_len) }?;
        let res_msg = result_buffer(res_msg, res_len)?;
        // SAFETY: non-NULL, `res_len` writable bytes (caller contract), bounded.
        unsafe { request::request_copy(&*slot_of(handle)?, &parts, res_msg, res_len) }
    })
}

/// `res_msg` checked: non-NULL, a non-zero length up to `isize::MAX`.
fn result_buffer(res_msg: *mut c_void, res_len: usize) -> Result<*mut u8, CapiError> {
    if res_msg.is_null() || res_len == 0 || res_len > isize::MAX as usize {
        return Err(CapiError::InvalidParam("res_msg is NULL or res_len is 0"));
    }
    Ok(res_msg.cast())
}

/// corosync 1.4's `coroipcc_msg_send_reply_receive_in_buf_get`: as
/// `coroipcc_msg_send_reply_receive`, keeping the response in the context: stores in
/// `*res_msg` a pointer to it (8-aligned; it starts with a
/// `coroipc_response_header_t` whose `size` is its length; a refusal by admission
/// control is a response whose `error` is `CS_ERR_TRY_AGAIN`).
///
/// Lifetime of `*res_msg`: until this thread's
/// `coroipcc_msg_send_reply_receive_in_buf_put(handle)` or next `_in_buf_get` on
/// `handle`, or `coroipcc_service_disconnect(handle)`. Each thread has its own (one
/// that never puts blocks nobody). Read it only.
///
/// Memory: one response per thread holding one, each at most the largest response
/// the server granted. A thread that exits without its put leaves its response until
/// the disconnect (nothing tells the library it exited): the bound is one response per
/// such thread, freed at `coroipcc_service_disconnect`.
///
/// # Safety
///
/// As `coroipcc_msg_send_reply_receive` for `iov`; `res_msg` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn coroipcc_msg_send_reply_receive_in_buf_get(
    handle: hdb_handle_t,
    iov: *const libc::iovec,
    iov_len: c_uint,
    res_msg: *mut *mut c_void,
) -> cs_error_t {
    boundary(|| {
        // SAFETY: `res_msg` is NULL or writable (this function's contract).
        let res_msg = unsafe { out(res_msg, "res_msg is NULL") }?;
        *res_msg = std::ptr::null_mut();
        // SAFETY: forwarded contract.
        let parts = unsafe { Parts::gather(iov, iov_len) }?;
        let ptr = request::request_in_buf(&*slot_of(handle)?, &parts)?;
        *res_msg = ptr.cast_mut().cast();
        Ok(())
    })
}

/// corosync 1.4's `coroipcc_msg_send_reply_receive_in_buf_put`: releases the response
/// of this thread's last `_in_buf_get` (its pointer becomes invalid). None held:
/// `CS_OK`.
#[no_mangle]
pub extern "C" fn coroipcc_msg_send_reply_receive_in_buf_put(handle: hdb_handle_t) -> cs_error_t {
    boundary(|| slot_of(handle)?.release(Kind::Response))
}

/// corosync 1.4's `coroipcc_dispatch_get`: the next dispatch message. Stores in
/// `*buf` a pointer to it (8-aligned; it starts with a `coroipc_response_header_t`
/// whose `size` is its length), waiting up to `timeout` milliseconds (0: just look,
/// which also arms the fd of `coroipcc_fd_get`; negative: as long as the server
/// lives). While it waits, the context is free for other threads. Beside a request
/// on another thread it looks between the request's slices of waiting (module
/// `slot`): a message that comes during a slow request is delivered within about a
/// slice (10 ms), and the request keeps it at most its timeout or 15 ms, whichever
/// is longer (`CS_ERR_TRY_AGAIN`).
///
/// Lifetime of `*buf`: until its `coroipcc_dispatch_put(handle)` or
/// `coroipcc_service_disconnect(handle)`; meanwhile other threads'
/// `coroipcc_dispatch_get` on `handle` wait for it, within their own timeout
/// (`CS_ERR_TRY_AGAIN` when it passes). Read it only.
///
/// Nesting: a get by the thread that holds a message (a callback of
/// `cpg_dispatch(CS_DISPATCH_ALL)` calling `cpg_dispatch(CS_DISPATCH_ONE)`) gets the
/// next message and keeps the held one valid (corosync's stayed valid until its put);
/// each put releases the innermost message held, so gets and puts pair like brackets.
/// A get that finds nothing releases nothing. A thread holds at most 64 at once.
///
/// Returns `CS_OK` with `*buf` set; `CS_ERR_TRY_AGAIN` with `*buf` NULL when none
/// came in time or the wait was interrupted (corosync's libraries take this as "no
/// message"); `CS_ERR_LIBRARY` once the server is gone; `CS_ERR_MESSAGE_ERROR` for a
/// message without a valid header (it is dropped); `CS_ERR_NO_RESOURCES` when this
/// thread already holds 64 (nothing is taken); `CS_ERR_SECURITY`;
/// `CS_ERR_BAD_HANDLE`; `CS_ERR_INVALID_PARAM`.
///
/// # Safety
///
/// `buf` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn coroipcc_dispatch_get(
    handle: hdb_handle_t,
    buf: *mut *mut c_void,
    timeout: c_int,
) -> cs_error_t {
    boundary(|| {
        // SAFETY: `buf` is NULL or writable (this function's contract).
        let buf = unsafe { out(buf, "buf is NULL") }?;
        *buf = std::ptr::null_mut();
        let slot = slot_of(handle)?;
        let deadline = u64::try_from(timeout)
            .ok()
            .map(|ms| Instant::now().checked_add(Duration::from_millis(ms)));
        // A message another thread holds is waited for within the timeout too (an
        // unbounded wait there hung a `dispatch_get(h, &b, 0)`: audit of 2026-12-06).
        let until = deadline.flatten();
        loop {
            // Look without waiting (this arms the fd), then wait on the fd without
            // holding the context.
            let ptr = slot.with(Turn::Dispatch, until, |c| {
                c.dispatch_get(Some(Duration::ZERO))
            })?;
            if !ptr.is_null() {
                *buf = ptr.cast_mut().cast();
                return Ok(());
            }
            let wait = match deadline {
                None | Some(None) => -1,
                Some(Some(at)) => match at.checked_duration_since(Instant::now()) {
                    Some(left) if !left.is_zero() => poll_ms(left),
                    _ => return Err(ClientError::TryAgain.into()),
                },
            };
            if !wait_readable(slot.fd, wait)? {
                return Err(ClientError::TryAgain.into());
            }
        }
    })
}

/// corosync 1.4's `coroipcc_dispatch_put`: releases the innermost dispatch message
/// the calling thread holds (that of its last `coroipcc_dispatch_get` not yet put;
/// its pointer becomes invalid, those of outer ones stay valid). None held by this
/// thread: `CS_OK` and nothing happens, so a stray put cannot release a message
/// another thread is reading (only the thread that got it can put it).
#[no_mangle]
pub extern "C" fn coroipcc_dispatch_put(handle: hdb_handle_t) -> cs_error_t {
    boundary(|| slot_of(handle)?.release(Kind::Dispatch))
}

/// corosync 1.4's `coroipcc_dispatch_flow_control_get`: stores in
/// `*flow_control_state` 1 while the server reports this connection's dispatch ring
/// in flow control (above its high watermark, until it drains below the low one),
/// else 0.
///
/// # Safety
///
/// `flow_control_state` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn coroipcc_dispatch_flow_control_get(
    handle: hdb_handle_t,
    flow_control_state: *mut c_uint,
) -> cs_error_t {
    boundary(|| {
        // SAFETY: `flow_control_state` is NULL or writable (this function's contract).
        let state = unsafe { out(flow_control_state, "flow_control_state is NULL") }?;
        *state = c_uint::from(slot_of(handle)?.flow.flow_control());
        Ok(())
    })
}

/// corosync 1.4's `coroipcc_zcb_alloc`: stores in `*buffer` a pointer to
/// `header_size + size` zeroed, 8-aligned bytes owned by `handle` (until
/// `coroipcc_zcb_free` or the disconnect), to write a whole request into and send
/// with `coroipcc_zcb_msg_send_reply_receive`. The library's own memory, not shared
/// with the server: the request is copied into the ring when sent.
///
/// Returns `CS_OK`; `CS_ERR_INVALID_PARAM` (NULL, a total of 0 or above the
/// `request_size` of the connect or the largest request the server granted);
/// `CS_ERR_NO_MEMORY`; `CS_ERR_BAD_HANDLE`.
///
/// # Safety
///
/// `buffer` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn coroipcc_zcb_alloc(
    handle: hdb_handle_t,
    buffer: *mut *mut c_void,
    size: usize,
    header_size: usize,
) -> cs_error_t {
    boundary(|| {
        // SAFETY: `buffer` is NULL or writable (this function's contract).
        let buffer = unsafe { out(buffer, "buffer is NULL") }?;
        *buffer = std::ptr::null_mut();
        let total = size
            .checked_add(header_size)
            .ok_or(CapiError::InvalidParam("size + header_size overflows"))?;
        let slot = slot_of(handle)?;
        let limit = slot.request_limit;
        *buffer = slot
            .with(Turn::Context, None, |c| c.zcb_alloc(total, limit))?
            .cast();
        Ok(())
    })
}

/// corosync 1.4's `coroipcc_zcb_free`: frees a buffer of `coroipcc_zcb_alloc` on the
/// same handle. Any other pointer: `CS_ERR_INVALID_PARAM`, nothing freed.
#[no_mangle]
pub extern "C" fn coroipcc_zcb_free(handle: hdb_handle_t, buffer: *mut c_void) -> cs_error_t {
    boundary(|| with_ctx(handle, |c| c.zcb_free(buffer.cast_const().cast())))
}

/// corosync 1.4's `coroipcc_zcb_msg_send_reply_receive`: sends the request written in
/// the zcb buffer `msg` (its header's `size` bytes) and copies the response into
/// `res_msg` as `coroipcc_msg_send_reply_receive`. A pointer that is not a zcb buffer
/// of `handle`, or a header `size` larger than the buffer: `CS_ERR_INVALID_PARAM`.
///
/// # Safety
///
/// `res_msg` is NULL or points to `res_len` writable bytes; the zcb buffer is not
/// written during the call.
#[no_mangle]
pub unsafe extern "C" fn coroipcc_zcb_msg_send_reply_receive(
    handle: hdb_handle_t,
    msg: *mut c_void,
    res_msg: *mut c_void,
    res_len: usize,
) -> cs_error_t {
    boundary(|| {
        let res_msg = result_buffer(res_msg, res_len)?;
        let slot = slot_of(handle)?;
        // SAFETY: `res_len` writable bytes (contract, checked non-NULL); the zcb
        // buffer is left alone by C during the call (contract).
        unsafe { request::zcb_send(&slot, msg.cast_const().cast(), res_msg, res_len) }
    })
}

/// `left` in whole milliseconds for `poll(2)`, rounded up, capped.
fn poll_ms(left: Duration) -> c_int {
    let ms = left.as_nanos().div_ceil(1_000_000);
    c_int::try_from(ms).unwrap_or(c_int::MAX)
}

/// Waits until `fd` polls readable or `ms` milliseconds pass (-1: no limit); false
/// when interrupted (`EINTR`: corosync's coroipcc reported `CS_ERR_TRY_AGAIN`).
fn wait_readable(fd: c_int, ms: c_int) -> Result<bool, CapiError> {
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid `pollfd`; `fd` is the context's pollable fd, kept open by the
    // `Slot` the caller holds.
    let n = unsafe { libc::poll(&mut p, 1, ms) };
    if n < 0 {
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(e.into());
        }
        return Ok(false);
    }
    // The fd was closed under us (against the header's rule): an error, not a ready
    // fd to poll again at once for ever (C API audit of 2026-12-06).
    if n > 0 && p.revents & libc::POLLNVAL != 0 {
        return Err(CapiError::from(ClientError::Disconnected));
    }
    Ok(true)
}
