//! `coroipcs.h`: the server functions. One server per process (as in the seed), kept
//! behind a mutex; its entry points (`coroipcs_ipc_init`, `coroipcs_handler_accept`,
//! `coroipcs_handler_dispatch`, `coroipcs_ipc_exit`) run the daemon's callbacks on the
//! calling thread and refuse to be re-entered from them (`CS_ERR_BUSY`). The functions
//! on a connection (`coroipcs_response_send`, `coroipcs_dispatch_send`, private data,
//! reference counts) take no server lock: call them from callbacks or any thread.
//!
//! Poll mapping: the C hooks are the Rust [`ipc::PollHooks`] (module `hooks`); the
//! daemon's loop calls `coroipcs_handler_accept` for the listening fd and
//! `coroipcs_handler_dispatch(fd, revents, context)` for every other fd, which is
//! `Server::handle_ready(Token(context))` followed by `Server::handle_timeouts`.

pub mod callbacks;
mod conn;
mod hooks;
mod service;
mod timer;

use std::cell::Cell;
use std::ffi::{c_int, c_uint, c_void};
use std::io;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Mutex, PoisonError};

use ipc::{PollHooks, Server, ServerBuilder, Token};

use crate::error::CapiError;
use crate::message::{check_outgoing_response, socket_name, Parts};
use crate::panic::{boundary, boundary_or, describe};
use crate::types::cs_error_t;
use callbacks::{coroipcs_init_state, Callbacks};
use hooks::CHooks;
use service::CService;
use timer::{Timer, TIMER_TOKEN};

/// The one server of the process.
struct ServerState {
    server: Server,
    hooks: CHooks,
    callbacks: Arc<Callbacks>,
    timer: Timer,
}

static SERVER: Mutex<Option<ServerState>> = Mutex::new(None);

thread_local! {
    /// Set while this thread runs a server entry point (and so its callbacks).
    static INSIDE: Cell<bool> = const { Cell::new(false) };
}

/// Marks this thread as inside the server until dropped.
struct Inside;

impl Inside {
    fn enter() -> Result<Inside, CapiError> {
        if INSIDE.with(|i| i.replace(true)) {
            return Err(CapiError::Reentered);
        }
        Ok(Inside)
    }
}

impl Drop for Inside {
    fn drop(&mut self) {
        INSIDE.with(|i| i.set(false));
    }
}

/// Runs `f` on the server; a panic inside is reported to the daemon's `fatal_error`.
fn drive(f: impl FnOnce(&mut ServerState) -> Result<(), CapiError>) -> Result<(), CapiError> {
    let _inside = Inside::enter()?;
    let mut guard = SERVER.lock().unwrap_or_else(PoisonError::into_inner);
    let state = guard.as_mut().ok_or(CapiError::BadHandle)?;
    // AssertUnwindSafe: after a panic the server is still memory-safe; the daemon is
    // told through `fatal_error` and decides.
    match catch_unwind(AssertUnwindSafe(|| f(state))) {
        Ok(r) => {
            if let Err(e) = state.timer.arm(state.server.next_deadline()) {
                state.callbacks.log(&format!("cannot arm the timer: {e}"));
            }
            r
        }
        Err(payload) => {
            let msg = describe(payload.as_ref());
            state.callbacks.fatal(&msg);
            Err(CapiError::Panic(msg))
        }
    }
}

/// Builds the server: every service `service_available` reports, the security
/// callback, the daemon's poll hooks.
fn build(name: ipc::SocketName, callbacks: &Arc<Callbacks>, hooks: CHooks) -> io::Result<Server> {
    let security = callbacks.clone();
    let mut builder =
        ServerBuilder::new(name).security(move |cred| security.security_valid(cred.uid, cred.gid));
    for id in 0..=u16::MAX {
        if callbacks.service_available(id) {
            builder = builder.service(
                id,
                CService {
                    id,
                    callbacks: callbacks.clone(),
                    scratch: Vec::new(),
                },
            );
        }
    }
    builder.build_with_hooks(hooks)
}

/// Starts the server: listens under `init_state->socket_name` and hands the listening
/// fd to `poll_accept_add`, and its other fds (internal doorbells, a timer for
/// handshake timeouts) to `poll_dispatch_add`. `init_state` is copied; its callbacks must stay callable
/// until `coroipcs_ipc_exit` returns (see `struct coroipcs_init_state`).
///
/// Returns `CS_OK`; `CS_ERR_INVALID_PARAM` (NULL, no socket name, a required poll
/// callback missing); `CS_ERR_EXIST` (already initialised, or the name is in use);
/// `CS_ERR_LIBRARY` (cannot listen, or the daemon's poll callback refused).
///
/// # Safety
///
/// `init_state` is NULL or points to a valid `struct coroipcs_init_state` whose
/// `socket_name` is NULL or NUL-terminated and whose callbacks are NULL or valid
/// functions of the declared types.
#[no_mangle]
pub unsafe extern "C" fn coroipcs_ipc_init(init_state: *const coroipcs_init_state) -> cs_error_t {
    boundary(|| {
        // SAFETY: NULL or a valid struct (contract).
        let state =
            unsafe { init_state.as_ref() }.ok_or(CapiError::InvalidParam("init_state is NULL"))?;
        // SAFETY: NULL or NUL-terminated (contract).
        let name = unsafe { socket_name(state.socket_name) }?;
        let callbacks = Arc::new(Callbacks::new(state));
        if !callbacks.has_poll() {
            return Err(CapiError::InvalidParam(
                "poll_accept_add, poll_dispatch_add and poll_dispatch_destroy are required",
            ));
        }
        let _inside = Inside::enter()?;
        let mut guard = SERVER.lock().unwrap_or_else(PoisonError::into_inner);
        if guard.is_some() {
            return Err(CapiError::Exists);
        }
        let hooks = CHooks {
            callbacks: callbacks.clone(),
            watched: Arc::default(),
        };
        let started = build(name, &callbacks, hooks.clone()).and_then(|server| {
            let timer = Timer::new()?;
            hooks.clone().add(timer.fd(), Token(TIMER_TOKEN))?;
            Ok((server, timer))
        });
        let (server, timer) = started.inspect_err(|_| hooks.shutdown())?;
        *guard = Some(ServerState {
            server,
            hooks,
            callbacks,
            timer,
        });
        Ok(())
    })
}

/// Stops the server: hands every watched fd back through `poll_dispatch_destroy`,
/// disconnects every client (each accepted connection's `exit_fn` runs), and stops
/// listening. Connections the daemon still holds references on stay valid (private
/// data included) until their last `coroipcs_refcount_dec`.
///
/// Returns `CS_OK`; `CS_ERR_BAD_HANDLE` when not initialised; `CS_ERR_BUSY` from a
/// callback.
#[no_mangle]
pub extern "C" fn coroipcs_ipc_exit() -> cs_error_t {
    boundary(|| {
        let _inside = Inside::enter()?;
        let mut guard = SERVER.lock().unwrap_or_else(PoisonError::into_inner);
        let state = guard.take().ok_or(CapiError::BadHandle)?;
        state.hooks.shutdown();
        drop(state);
        Ok(())
    })
}

/// To be called by the daemon's loop when the fd given to `poll_accept_add` is
/// readable: accepts every waiting client. `fd`, `revents` and `context` are not used.
#[no_mangle]
pub extern "C" fn coroipcs_handler_accept(
    fd: c_int,
    revents: c_int,
    context: *mut c_void,
) -> cs_error_t {
    let _ = (fd, revents, context);
    boundary(|| {
        drive(|s| {
            s.server.handle_accept();
            s.server.handle_timeouts();
            Ok(())
        })
    })
}

/// To be called by the daemon's loop when an fd given to `poll_dispatch_add` is
/// readable (or in error), with the `context` given there: serves that connection
/// (requests, a disconnect, a handshake step). `fd` and `revents` are not used: the
/// context says which fd it is (NULL names the listening fd, as for
/// `coroipcs_handler_accept`; one of the contexts is the library's timer, which drops
/// clients that do not finish their handshake in time). It may call
/// `poll_dispatch_destroy` for fds of the connection before returning.
///
/// Returns `CS_OK`; `CS_ERR_BAD_HANDLE` for a context the library did not give (or
/// already took back) or when not initialised; `CS_ERR_BUSY` from a callback.
#[no_mangle]
pub extern "C" fn coroipcs_handler_dispatch(
    fd: c_int,
    revents: c_int,
    context: *mut c_void,
) -> cs_error_t {
    let _ = (fd, revents);
    boundary(|| {
        drive(|s| {
            let token = context as u64;
            if !s.hooks.knows(token) {
                return Err(CapiError::BadHandle);
            }
            if token == TIMER_TOKEN {
                s.timer.drain();
            } else {
                s.server.handle_ready(Token(token));
            }
            s.server.handle_timeouts();
            Ok(())
        })
    })
}

/// The private data of `conn` (`private_data_size_get` bytes, zeroed at connect), or
/// NULL for an invalid `conn` or a service without private data. Valid until the
/// connection's `exit_fn` returned and its last reference was dropped.
#[no_mangle]
pub extern "C" fn coroipcs_private_data_get(conn: *mut c_void) -> *mut c_void {
    boundary_or(std::ptr::null_mut(), || {
        conn::lookup(conn).map_or(std::ptr::null_mut(), |e| e.private_data())
    })
}

/// Answers a request of `conn` with the `mlen` bytes at `msg`, which start with a
/// `coroipc_response_header_t` whose `size` is `mlen`: during a handler on `conn`, the
/// request being handled; otherwise the oldest one whose handler returned without
/// answering. From any thread. `msg` is copied before the call returns.
///
/// Returns `CS_OK`; `CS_ERR_INVALID_PARAM` (NULL, too short, lying `size`);
/// `CS_ERR_NOT_EXIST` (no request awaits an answer); `CS_ERR_TOO_BIG` (larger than
/// the client's response ring: the client gets an error instead); `CS_ERR_LIBRARY`
/// (the client is gone); `CS_ERR_BAD_HANDLE`.
///
/// # Safety
///
/// `msg` is NULL or points to `mlen` readable bytes.
#[no_mangle]
pub unsafe extern "C" fn coroipcs_response_send(
    conn: *mut c_void,
    msg: *const c_void,
    mlen: usize,
) -> cs_error_t {
    // SAFETY: forwarded contract.
    boundary(|| respond(conn, unsafe { Parts::one(msg, mlen) }?))
}

/// As `coroipcs_response_send`, with the message gathered from `iov_len` iovecs.
///
/// # Safety
///
/// `iov` is NULL or points to `iov_len` `struct iovec`s describing readable bytes.
#[no_mangle]
pub unsafe extern "C" fn coroipcs_response_iov_send(
    conn: *mut c_void,
    iov: *const libc::iovec,
    iov_len: c_uint,
) -> cs_error_t {
    // SAFETY: forwarded contract.
    boundary(|| respond(conn, unsafe { Parts::gather(iov, iov_len) }?))
}

fn respond(conn: *mut c_void, parts: Parts<'_>) -> Result<(), CapiError> {
    let entry = conn::lookup(conn)?;
    check_outgoing_response(&parts)?;
    let deferred = entry.pop_deferred()?;
    deferred.respond_vectored(0, &parts.parts)?;
    Ok(())
}

/// Sends the `mlen` bytes at `msg` (starting with a `coroipc_response_header_t`
/// whose `size` is `mlen`) to `conn`'s dispatch channel. From any thread. `msg` is
/// copied before the call returns.
///
/// Returns `CS_OK`; `CS_ERR_TRY_AGAIN` when the client's dispatch ring and the queue
/// behind it are full; `CS_ERR_TOO_BIG`; `CS_ERR_INVALID_PARAM`; `CS_ERR_LIBRARY`
/// (the client is gone); `CS_ERR_BAD_HANDLE`.
///
/// # Safety
///
/// `msg` is NULL or points to `mlen` readable bytes.
#[no_mangle]
pub unsafe extern "C" fn coroipcs_dispatch_send(
    conn: *mut c_void,
    msg: *const c_void,
    mlen: usize,
) -> cs_error_t {
    // SAFETY: forwarded contract.
    boundary(|| dispatch(conn, unsafe { Parts::one(msg, mlen) }?))
}

/// As `coroipcs_dispatch_send`, with the message gathered from `iov_len` iovecs.
///
/// # Safety
///
/// `iov` is NULL or points to `iov_len` `struct iovec`s describing readable bytes.
#[no_mangle]
pub unsafe extern "C" fn coroipcs_dispatch_iov_send(
    conn: *mut c_void,
    iov: *const libc::iovec,
    iov_len: c_uint,
) -> cs_error_t {
    // SAFETY: forwarded contract.
    boundary(|| dispatch(conn, unsafe { Parts::gather(iov, iov_len) }?))
}

fn dispatch(conn: *mut c_void, parts: Parts<'_>) -> Result<(), CapiError> {
    let entry = conn::lookup(conn)?;
    check_outgoing_response(&parts)?;
    entry.conn.dispatch_send_vectored(&parts.parts)?;
    Ok(())
}

/// Keeps `conn` (its token and private data) valid past its disconnect, until the
/// matching `coroipcs_refcount_dec`. Sends on a disconnected `conn` return
/// `CS_ERR_LIBRARY`.
#[no_mangle]
pub extern "C" fn coroipcs_refcount_inc(conn: *mut c_void) -> cs_error_t {
    boundary(|| conn::refcount_inc(conn as u64))
}

/// Drops a reference taken with `coroipcs_refcount_inc`; the last one of a
/// disconnected connection frees it (`conn` is invalid from then on).
/// `CS_ERR_INVALID_PARAM` when no reference is held.
#[no_mangle]
pub extern "C" fn coroipcs_refcount_dec(conn: *mut c_void) -> cs_error_t {
    boundary(|| conn::refcount_dec(conn as u64))
}
