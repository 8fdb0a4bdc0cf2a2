//! `coroipcs.h`: corosync 1.4's server functions. One server per process (as in
//! corosync), kept behind a mutex; its entry points (`coroipcs_ipc_init(_v2)`,
//! `coroipcs_handler_accept`, `coroipcs_handler_dispatch`, `coroipcs_ipc_service_exit`,
//! `coroipcs_ipc_exit`) run the daemon's callbacks on the calling thread and refuse to
//! be re-entered from them (logged; -1 or nothing). The functions on a connection
//! (`coroipcs_response_send`, `coroipcs_dispatch_send`, private data, reference
//! counts) take no server lock: call them from callbacks or any thread, holding the
//! daemon's `serialize_lock` or not.
//!
//! Lock order: the server lock, then `serialize_lock` (taken around handlers and
//! `exit_fn` inside an entry point). A daemon thread that holds `serialize_lock` only
//! ever needs the connection functions, which take neither.
//!
//! Poll mapping: the C hooks are the Rust [`ipc::PollHooks`] (module `hooks`); the
//! daemon's loop calls `coroipcs_handler_accept` for the listening fd and
//! `coroipcs_handler_dispatch(fd, revent, context)` for every other fd, which is
//! `Server::handle_ready(Token(context))` followed by `Server::handle_timeouts` (or the
//! library's timer, whose context is a token the server never uses).

pub mod callbacks;
mod conn;
mod exits;
mod hooks;
mod service;
mod timer;

use std::cell::Cell;
use std::ffi::{c_int, c_uint, c_void};
use std::io;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Mutex, PoisonError};

use ipc::{Server, ServerBuilder, Token};

use crate::error::CapiError;
use crate::message::{check_outgoing_response, in_ref, socket_name, Parts};
use crate::panic::{boundary, boundary_or, describe};
use crate::types::cs_error_t;
use callbacks::{coroipcs_init_state, coroipcs_init_state_v2, Callbacks};
use hooks::CHooks;
use service::CService;
use timer::{Timer, TIMER_TOKEN};

/// The largest service id a client may ask for (`COROIPCS_SERVICE_MAX` in
/// `coroipcs.h`; corosync's `SERVICE_HANDLER_MAXIMUM_COUNT` is 64).
pub const COROIPCS_SERVICE_MAX: u16 = 63;

/// The one server of the process.
struct ServerState {
    server: Server,
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
            let mut next = state.server.next_deadline();
            if exits::retry() {
                let retry = std::time::Instant::now().checked_add(exits::RETRY_EVERY);
                next = next.into_iter().chain(retry).min();
            }
            if let Err(e) = state.timer.arm(next) {
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
    let mut builder = ServerBuilder::new(name)
        .limits(c_limits())
        .security(move |cred| security.security_valid(cred.uid, cred.gid));
    // Every id a client may ask for: whether the service exists is asked at each
    // connect (corosync loads and unloads engines at run time), and ids above the
    // bound never reach the daemon's `service_available` (corosync's indexes a
    // 64-entry table with it).
    for id in 0..=COROIPCS_SERVICE_MAX {
        builder = builder.service(
            id,
            CService {
                id,
                callbacks: callbacks.clone(),
                scratch: Vec::new(),
            },
        );
    }
    builder.build_with_hooks(hooks)
}

/// The limits of a C server: the defaults, without the adaptive poll of busy request
/// rings. The daemon's loop runs everything else too (corosync's totem): a poll
/// inside `coroipcs_handler_dispatch` would take that time from it.
fn c_limits() -> ipc::Limits {
    ipc::Limits {
        adaptive_spin: std::time::Duration::ZERO,
        ..ipc::Limits::default()
    }
}

/// Starts the server from the daemon's v2 state (the shared body of both inits).
fn init(state: &coroipcs_init_state_v2) -> Result<(), (Option<Arc<Callbacks>>, CapiError)> {
    let callbacks = Arc::new(Callbacks::new(state));
    let fail = |e| (Some(callbacks.clone()), e);
    // SAFETY: NULL or NUL-terminated (the init contract).
    let name = unsafe { socket_name(state.socket_name) }.map_err(fail)?;
    if let Some(missing) = callbacks.missing() {
        return Err(fail(CapiError::Missing(missing)));
    }
    let _inside = Inside::enter().map_err(fail)?;
    let mut guard = SERVER.lock().unwrap_or_else(PoisonError::into_inner);
    if guard.is_some() {
        return Err(fail(CapiError::Exists));
    }
    let hooks = CHooks {
        callbacks: callbacks.clone(),
    };
    // A failed build hands back what it added; a failure after it drops the server,
    // which hands back everything.
    let started = build(name, &callbacks, hooks).and_then(|server| {
        let timer = Timer::new()?;
        timer.watch(&callbacks)?;
        Ok((server, timer))
    });
    let (server, timer) = started.map_err(|e| fail(e.into()))?;
    *guard = Some(ServerState {
        server,
        callbacks,
        timer,
    });
    Ok(())
}

/// Reports a failed init through the daemon's `fatal_error` (as corosync's coroipcs
/// did; corosync's exits), or standard error when there are no callbacks.
fn init_failed(callbacks: Option<Arc<Callbacks>>, e: &CapiError) {
    let msg = format!("coroipcs_ipc_init: {e}");
    match callbacks {
        Some(c) => c.fatal(&msg),
        None => crate::panic::to_stderr(format_args!("{msg}")),
    }
}

/// corosync 1.4's `coroipcs_ipc_init` (v1 state): starts the server, listening under
/// `init_state->socket_name` and handing the listening fd to `poll_accept_add`, its
/// other fds (internal doorbells, a timer for handshake timeouts) to
/// `poll_dispatch_add`. The state is copied; its callbacks must stay callable until
/// `coroipcs_ipc_exit` returns. A failure (a required callback missing, already
/// started, the name in use) goes to `fatal_error`; a state that is NULL or not
/// aligned for its type is not read, and the failure goes to standard error.
///
/// # Safety
///
/// `init_state` is NULL or points to a valid `struct coroipcs_init_state` whose
/// `socket_name` is NULL or NUL-terminated and whose callbacks are NULL or valid
/// functions of the declared types.
#[no_mangle]
pub unsafe extern "C" fn coroipcs_ipc_init(init_state: *mut coroipcs_init_state) {
    boundary_or((), || {
        // SAFETY: NULL or a valid struct (contract); a misaligned one is refused.
        let v1 = match unsafe { in_ref(init_state.cast_const()) } {
            Ok(Some(state)) => state,
            Ok(None) => return init_failed(None, &CapiError::InvalidParam("init_state is NULL")),
            Err(e) => return init_failed(None, &e),
        };
        if let Err((callbacks, e)) = init(&coroipcs_init_state_v2::from(v1)) {
            init_failed(callbacks, &e);
        }
    })
}

/// corosync 1.4's `coroipcs_ipc_init_v2`: as [`coroipcs_ipc_init`], with per-connection
/// statistics and logsys-style logging when those callbacks are set.
///
/// # Safety
///
/// As [`coroipcs_ipc_init`], for a `struct coroipcs_init_state_v2`.
#[no_mangle]
pub unsafe extern "C" fn coroipcs_ipc_init_v2(init_state_v2: *mut coroipcs_init_state_v2) {
    boundary_or((), || {
        // SAFETY: NULL or a valid struct (contract); a misaligned one is refused.
        let v2 = match unsafe { in_ref(init_state_v2.cast_const()) } {
            Ok(Some(state)) => state,
            Ok(None) => {
                return init_failed(None, &CapiError::InvalidParam("init_state_v2 is NULL"))
            }
            Err(e) => return init_failed(None, &e),
        };
        if let Err((callbacks, e)) = init(v2) {
            init_failed(callbacks, &e);
        }
    })
}

/// Logs a failed entry point through the server's callbacks (standard error when
/// there is no server).
fn report(what: &str, e: &CapiError) {
    let callbacks = SERVER
        .try_lock()
        .ok()
        .and_then(|g| g.as_ref().map(|s| s.callbacks.clone()));
    match callbacks {
        Some(c) => c.log(&format!("{what}: {e}")),
        None => crate::panic::to_stderr(format_args!("coroipcs: {what}: {e}")),
    }
}

/// Stops the server: hands every watched fd back through `poll_dispatch_destroy`,
/// disconnects every client (each connection's `exit_fn` runs), and stops listening.
/// Connections the daemon still holds references on stay valid (private data
/// included) until their last `coroipcs_refcount_dec`. Not initialised, or called
/// from a callback: nothing happens (logged).
#[no_mangle]
pub extern "C" fn coroipcs_ipc_exit() {
    let stopped = boundary(|| {
        let _inside = Inside::enter()?;
        let mut guard = SERVER.lock().unwrap_or_else(PoisonError::into_inner);
        let ServerState {
            server,
            callbacks,
            timer,
        } = guard.take().ok_or(CapiError::BadHandle)?;
        // The server disconnects every client and hands back every fd it watches.
        drop(server);
        timer.unwatch(&callbacks);
        // One more call for a busy `exit_fn`, then the library stops waiting for it.
        if exits::retry() {
            let n = exits::abandon();
            callbacks.log(&format!(
                "{n} exit_fn still busy at coroipcs_ipc_exit: closed"
            ));
        }
        Ok(())
    });
    if stopped != cs_error_t::CS_OK {
        crate::panic::to_stderr(format_args!("coroipcs_ipc_exit: not running ({stopped:?})"));
    }
}

/// corosync 1.4's `coroipcs_ipc_service_exit`: disconnects every client of `service`
/// (their `exit_fn`s run). Returns 0 when no connection of the service is left, -1
/// while some are still held by references (call again later, as corosync's
/// service unloading does), or when this is called from one of its callbacks. Not
/// running: 0 once no reference is held on a connection of the service.
#[no_mangle]
pub extern "C" fn coroipcs_ipc_service_exit(service: c_uint) -> c_int {
    let Ok(service) = u16::try_from(service) else {
        return 0;
    };
    let mut left = true;
    let done = boundary(|| {
        drive(|s| {
            for c in s.server.connections().filter(|c| c.service() == service) {
                c.disconnect();
            }
            left = conn::service_has_connections(service);
            Ok(())
        })
    });
    match done {
        cs_error_t::CS_OK if !left => 0,
        // Not running: nothing to disconnect; done once no reference is held on a
        // connection of the service (an unconditional -1 made corosync's unload,
        // which calls again on -1, retry for ever: C API audit of 2026-12-06).
        cs_error_t::CS_ERR_BAD_HANDLE if !conn::service_has_connections(service) => 0,
        _ => -1,
    }
}

/// To be called by the daemon's loop when the fd given to `poll_accept_add` is
/// readable: accepts every waiting client. `fd`, `revent` and `context` are not
/// used. Returns 0.
#[no_mangle]
pub extern "C" fn coroipcs_handler_accept(fd: c_int, revent: c_int, context: *mut c_void) -> c_int {
    let _ = (fd, revent, context);
    let r = boundary(|| {
        drive(|s| {
            s.server.handle_accept();
            s.server.handle_timeouts();
            Ok(())
        })
    });
    if r != cs_error_t::CS_OK {
        report("coroipcs_handler_accept", &CapiError::Status(r));
    }
    0
}

/// To be called by the daemon's loop when an fd given to `poll_dispatch_add` is
/// readable (or in error), with the `context` given there: serves that connection
/// (requests, a disconnect, a handshake step). `fd` and `revent` are not used: the
/// context says which fd it is (one of the contexts is the library's timer, which
/// drops clients that do not finish their handshake in time). It may call
/// `poll_dispatch_destroy` for fds of the connection before returning.
///
/// Returns 0; -1 for a context the library did not give (or already took back),
/// which tells corosync's loop to stop watching that fd.
#[no_mangle]
pub extern "C" fn coroipcs_handler_dispatch(
    fd: c_int,
    revent: c_int,
    context: *mut c_void,
) -> c_int {
    let _ = (fd, revent);
    let r = boundary(|| {
        drive(|s| {
            let token = Token(context as u64);
            if token == TIMER_TOKEN {
                s.timer.drain();
            } else if s.server.watches(token) {
                s.server.handle_ready(token);
            } else {
                return Err(CapiError::BadHandle);
            }
            s.server.handle_timeouts();
            Ok(())
        })
    });
    match r {
        cs_error_t::CS_OK => 0,
        cs_error_t::CS_ERR_BAD_HANDLE => -1,
        other => {
            report("coroipcs_handler_dispatch", &CapiError::Status(other));
            0
        }
    }
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
/// Returns 0; -1 for NULL, a short or lying header, no request awaiting an answer, a
/// response larger than the client's response ring (the client gets an error
/// instead), a client that is gone, or an unknown `conn`.
///
/// # Safety
///
/// `msg` is NULL or points to `mlen` readable bytes.
#[no_mangle]
pub unsafe extern "C" fn coroipcs_response_send(
    conn: *mut c_void,
    msg: *const c_void,
    mlen: usize,
) -> c_int {
    status(boundary(|| {
        // SAFETY: forwarded contract.
        let parts = unsafe { Parts::one(msg, mlen) }?;
        respond(conn, parts)
    }))
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
) -> c_int {
    status(boundary(|| {
        // SAFETY: forwarded contract.
        let parts = unsafe { Parts::gather(iov, iov_len) }?;
        respond(conn, parts)
    }))
}

/// corosync's int results: 0 for success, -1 for any failure.
fn status(code: cs_error_t) -> c_int {
    if code == cs_error_t::CS_OK {
        0
    } else {
        -1
    }
}

fn respond(conn: *mut c_void, parts: Parts<'_>) -> Result<(), CapiError> {
    let entry = conn::lookup(conn)?;
    check_outgoing_response(&parts)?;
    let deferred = entry.pop_deferred()?;
    deferred.respond_vectored(0, &parts.parts)?;
    entry.count(c"responses");
    Ok(())
}

/// Sends the `mlen` bytes at `msg` (starting with a `coroipc_response_header_t`
/// whose `size` is `mlen`) to `conn`'s dispatch channel. From any thread. `msg` is
/// copied before the call returns.
///
/// Returns 0; -1 when the client's dispatch ring and the queue behind it are full,
/// for a message larger than the ring, a short or lying header, a client that is
/// gone, or an unknown `conn`.
///
/// # Safety
///
/// `msg` is NULL or points to `mlen` readable bytes.
#[no_mangle]
pub unsafe extern "C" fn coroipcs_dispatch_send(
    conn: *mut c_void,
    msg: *const c_void,
    mlen: usize,
) -> c_int {
    status(boundary(|| {
        // SAFETY: forwarded contract.
        let parts = unsafe { Parts::one(msg, mlen) }?;
        dispatch(conn, parts)
    }))
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
) -> c_int {
    status(boundary(|| {
        // SAFETY: forwarded contract.
        let parts = unsafe { Parts::gather(iov, iov_len) }?;
        dispatch(conn, parts)
    }))
}

fn dispatch(conn: *mut c_void, parts: Parts<'_>) -> Result<(), CapiError> {
    let entry = conn::lookup(conn)?;
    check_outgoing_response(&parts)?;
    entry.conn.dispatch_send_vectored(&parts.parts)?;
    entry.count(c"dispatched");
    Ok(())
}

/// Keeps `conn` (its token and private data) valid past its disconnect, until the
/// matching `coroipcs_refcount_dec`. Sends on a disconnected `conn` fail (-1). An
/// unknown `conn` is ignored, and so is one whose disconnect, racing this call on
/// another thread, already let it go (closed with no reference left).
#[no_mangle]
pub extern "C" fn coroipcs_refcount_inc(conn: *mut c_void) {
    let _ = boundary(|| conn::refcount_inc(conn as u64));
}

/// Drops a reference taken with `coroipcs_refcount_inc`; the last one of a
/// disconnected connection frees it (`conn` is invalid from then on). With no
/// reference held, or an unknown `conn`, nothing happens.
#[no_mangle]
pub extern "C" fn coroipcs_refcount_dec(conn: *mut c_void) {
    let _ = boundary(|| conn::refcount_dec(conn as u64));
}
