//! `coroipcc.h`: the client functions. Contexts are `hdb_handle_t` numbers from a
//! handle table (module `handle`). Each context is used under its own mutex, so calls
//! from several threads take turns; a buffer held by one thread (zero-copy response or
//! dispatch message) makes the other threads' calls wait until it is released, and a
//! blocking `coroipcc_dispatch_get` waits on the context's fd without holding it, so a
//! dispatch thread and a request thread can share one context (as in the seed).

mod ctx;

use std::ffi::{c_char, c_int, c_uint, c_void};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use ipc::{Client, ConnectOptions};

use crate::error::CapiError;
use crate::handle::{Registry, Tag};
use crate::message::{out, socket_name, Parts};
use crate::panic::boundary;
use crate::types::{cs_error_t, hdb_handle_t};
use ctx::{ClientCtx, Kind};

/// A context and the condition its waiting threads wait on.
struct Slot {
    ctx: Mutex<ClientCtx>,
    released: Condvar,
}

static CLIENTS: Registry<Slot> = Registry::new(Tag::Client);

impl Slot {
    /// The context, once no other thread holds a buffer of it.
    fn enter(&self) -> Result<MutexGuard<'_, ClientCtx>, CapiError> {
        let me = std::thread::current().id();
        let mut ctx = self.ctx.lock().unwrap_or_else(PoisonError::into_inner);
        while !ctx.closed && ctx.held_by_other(me) {
            ctx = self
                .released
                .wait(ctx)
                .unwrap_or_else(PoisonError::into_inner);
        }
        if ctx.closed {
            return Err(CapiError::BadHandle);
        }
        Ok(ctx)
    }

    /// Runs `f` on the context; wakes the threads waiting for a release.
    fn with<R>(
        &self,
        f: impl FnOnce(&mut ClientCtx) -> Result<R, CapiError>,
    ) -> Result<R, CapiError> {
        let r = f(&mut *self.enter()?);
        self.released.notify_all();
        r
    }
}

/// Runs `f` on the context behind `handle`.
fn with_ctx<R>(
    handle: hdb_handle_t,
    f: impl FnOnce(&mut ClientCtx) -> Result<R, CapiError>,
) -> Result<R, CapiError> {
    CLIENTS.get(handle).ok_or(CapiError::BadHandle)?.with(f)
}

/// Connects to `service` of the server listening under `socket_name` and stores the
/// new context in `*handle`.
///
/// `socket_name`: a string starting with `/` is a socket file; anything else a Linux
/// abstract name. It is only read during the call.
///
/// Threads: a context may be used from any thread. Calls on one context take turns;
/// while a thread holds a buffer of the context (`coroipcc_msg_send_reply_receive_in_buf`,
/// `coroipcc_dispatch_get`), calls from other threads wait until it releases it (its
/// next call, `coroipcc_msg_reply_release` / `coroipcc_dispatch_put`); a waiting
/// `coroipcc_dispatch_get` does not hold the context. So one thread may dispatch while
/// another sends requests, as in the seed.
///
/// Returns `CS_OK`; `CS_ERR_NOT_EXIST` (no server under the name, or no such
/// service), `CS_ERR_ACCESS` (refused by the server's security callback or the
/// service), `CS_ERR_NO_RESOURCES`, `CS_ERR_TIMEOUT`, `CS_ERR_SECURITY` (the server's
/// answer or memory is malformed), `CS_ERR_INVALID_PARAM` (NULL argument, service above
/// 65535), `CS_ERR_LIBRARY`.
///
/// # Safety
///
/// `socket_name` is NULL or a NUL-terminated string; `handle` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn coroipcc_service_connect(
    socket_name: *const c_char,
    service: c_uint,
    handle: *mut hdb_handle_t,
) -> cs_error_t {
    boundary(|| {
        // SAFETY: `handle` is NULL or writable (this function's contract).
        let handle = unsafe { out(handle, "handle is NULL") }?;
        // SAFETY: forwarded contract.
        let name = unsafe { self::socket_name(socket_name) }?;
        let service =
            u16::try_from(service).map_err(|_| CapiError::InvalidParam("service above 65535"))?;
        let client = Client::connect(&name, service, &ConnectOptions::default())?;
        *handle = CLIENTS.insert(Arc::new(Slot {
            ctx: Mutex::new(ClientCtx::new(client)),
            released: Condvar::new(),
        }));
        Ok(())
    })
}

/// Disconnects and frees the context. From now on `handle` is invalid
/// (`CS_ERR_BAD_HANDLE` everywhere, a second disconnect included), and every pointer
/// obtained through it (`res_msg` of `coroipcc_msg_send_reply_receive_in_buf`, `buf`
/// of `coroipcc_dispatch_get`, the fd of `coroipcc_fd_get`) is dangling. A call
/// running on another thread finishes first (one waiting in `coroipcc_dispatch_get`
/// returns `CS_ERR_BAD_HANDLE` when its wait ends: a message, the server's death, or
/// its timeout).
#[no_mangle]
pub extern "C" fn coroipcc_service_disconnect(handle: hdb_handle_t) -> cs_error_t {
    boundary(|| {
        let slot = CLIENTS.remove(handle).ok_or(CapiError::BadHandle)?;
        {
            let mut ctx = slot.ctx.lock().unwrap_or_else(PoisonError::into_inner);
            ctx.release();
            ctx.closed = true;
        }
        slot.released.notify_all();
        // The client is freed here, or when a call still running on another thread
        // (waiting on its fd) ends.
        drop(slot);
        Ok(())
    })
}

/// Stores in `*fd` a descriptor to `poll(2)` for readability: readable when a
/// dispatch message (or a response) waits or the server is gone. It becomes readable
/// for a new message after a non-blocking `coroipcc_dispatch_get(handle, &buf, 0)` found
/// none (before the first such call it may poll readable once, to say "call it"). The
/// fd belongs to the context: do not close it; it is valid until
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
        *fd = with_ctx(handle, |c| Ok(c.fd()))?;
        Ok(())
    })
}

/// Sends the request gathered from `iov` (it must start with a
/// `coroipc_request_header_t` whose `size` is the total length and whose `id`, in
/// `0..=65535`, is the command) and copies the response (which starts with a
/// `coroipc_response_header_t`) into `res_msg`. Releases any buffer this thread holds
/// on `handle`.
///
/// Returns `CS_OK` when a response arrived (the service's status is in its header's
/// `error`); `CS_ERR_TOO_BIG` when the response is longer than `res_len` (it is
/// discarded) or the request longer than the ring; `CS_ERR_TRY_AGAIN` (refused by
/// `sending_allowed`); `CS_ERR_INVALID_PARAM` (NULL, lying `size`, bad id, a command
/// the service does not have); `CS_ERR_MESSAGE_ERROR` (a response without a valid
/// header); `CS_ERR_LIBRARY` (the server is gone); `CS_ERR_BAD_HANDLE`.
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
        if res_msg.is_null() || res_len == 0 || res_len > isize::MAX as usize {
            return Err(CapiError::InvalidParam("res_msg is NULL or res_len is 0"));
        }
        with_ctx(handle, |c| {
            // SAFETY: non-NULL, `res_len` writable bytes (caller contract), bounded.
            unsafe { c.request_copy(&parts, res_msg.cast(), res_len) }.map(|_| ())
        })
    })
}

/// As `coroipcc_msg_send_reply_receive`, without copying the response: stores in
/// `*res_msg` a pointer to it in shared memory (it starts with a
/// `coroipc_response_header_t`; its `size` is its length).
///
/// Lifetime of `*res_msg`: valid until `coroipcc_msg_reply_release(handle)`, this
/// thread's next `coroipcc_msg_send_reply_receive*` or `coroipcc_dispatch_get` on
/// `handle`, or `coroipcc_service_disconnect(handle)`, whichever comes first. Read it
/// only: the memory is shared with the server (trusted, as in the seed, not to change
/// it while it is yours). While it is held the server cannot reuse its space, and
/// other threads' calls on `handle` wait.
///
/// # Safety
///
/// As `coroipcc_msg_send_reply_receive` for `iov`; `res_msg` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn coroipcc_msg_send_reply_receive_in_buf(
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
        let ptr = with_ctx(handle, |c| c.request_in_place(&parts))?;
        *res_msg = ptr.cast_mut().cast();
        Ok(())
    })
}

/// Releases the response held since `coroipcc_msg_send_reply_receive_in_buf` (its
/// pointer becomes invalid). Releasing when no response is held is not an error (a
/// held dispatch message stays held).
#[no_mangle]
pub extern "C" fn coroipcc_msg_reply_release(handle: hdb_handle_t) -> cs_error_t {
    boundary(|| {
        with_ctx(handle, |c| {
            c.release_kind(Kind::Response);
            Ok(())
        })
    })
}

/// Receives the next dispatch message: stores in `*buf` a pointer to it in shared
/// memory (it starts with a `coroipc_response_header_t`), or NULL when none arrived
/// within `timeout` milliseconds (0: just look, and arm the fd of `coroipcc_fd_get`;
/// negative: wait as long as the server lives). Releases any buffer this thread holds
/// on `handle`. While it waits, the context is free for other threads.
///
/// Lifetime of `*buf`: until `coroipcc_dispatch_put(handle)`, this thread's next
/// `coroipcc_dispatch_get` or `coroipcc_msg_send_reply_receive*` on `handle`, or
/// `coroipcc_service_disconnect(handle)`. Read it only (shared with the server).
/// While it is held, other threads' calls on `handle` wait.
///
/// Returns `CS_OK` (message or NULL); `CS_ERR_LIBRARY` once the server is gone;
/// `CS_ERR_MESSAGE_ERROR` for a message without a valid header (it is dropped);
/// `CS_ERR_SECURITY`; `CS_ERR_BAD_HANDLE`; `CS_ERR_INVALID_PARAM`.
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
        let slot = CLIENTS.get(handle).ok_or(CapiError::BadHandle)?;
        let deadline = u64::try_from(timeout)
            .ok()
            .map(|ms| Instant::now().checked_add(Duration::from_millis(ms)));
        loop {
            // Look without waiting (this arms the fd), then wait on the fd without
            // holding the context.
            let (ptr, fd) = slot.with(|c| Ok((c.dispatch_get(Some(Duration::ZERO))?, c.fd())))?;
            if !ptr.is_null() {
                *buf = ptr.cast_mut().cast();
                return Ok(());
            }
            let wait = match deadline {
                None | Some(None) => -1,
                Some(Some(at)) => match at.checked_duration_since(Instant::now()) {
                    Some(left) if !left.is_zero() => poll_ms(left),
                    _ => return Ok(()),
                },
            };
            wait_readable(fd, wait)?;
        }
    })
}

/// Releases the dispatch message of the last `coroipcc_dispatch_get` (its pointer
/// becomes invalid; its space goes back to the server). Releasing when no dispatch
/// message is held is not an error (a held response stays held).
#[no_mangle]
pub extern "C" fn coroipcc_dispatch_put(handle: hdb_handle_t) -> cs_error_t {
    boundary(|| {
        with_ctx(handle, |c| {
            c.release_kind(Kind::Dispatch);
            Ok(())
        })
    })
}

/// Stores in `*flow_control_state` 1 while the server reports this connection's
/// dispatch ring in flow control (above its high watermark, until it drains below
/// the low one), else 0. While a buffer is held on `handle` the state is the one
/// seen when it was taken.
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
        *state = c_uint::from(with_ctx(handle, |c| Ok(c.flow_control()))?);
        Ok(())
    })
}

/// `left` in whole milliseconds for `poll(2)`, rounded up, capped.
fn poll_ms(left: Duration) -> c_int {
    let ms = left.as_nanos().div_ceil(1_000_000);
    c_int::try_from(ms).unwrap_or(c_int::MAX)
}

/// Waits until `fd` polls readable or `ms` milliseconds pass (-1: no limit). `EINTR`
/// counts as a wake-up (the caller looks again).
fn wait_readable(fd: c_int, ms: c_int) -> Result<(), CapiError> {
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
    }
    Ok(())
}
