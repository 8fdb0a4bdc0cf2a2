//! `struct coroipcs_init_state` (the daemon's callbacks) and the library's view of
//! it, `Callbacks`: each callback called through one method that supplies the
//! internal version when the field is NULL.

#![allow(non_camel_case_types)]

use std::ffi::{c_char, c_int, c_uint, c_void, CString};
use std::os::fd::RawFd;

/// A service's connect function (the seed's `init_fn`): called with the new
/// connection once its private data exists; a non-zero return refuses the client
/// (a positive `cs_error_t` value reaches the client as that code, anything else as
/// `CS_ERR_ACCESS`).
///
/// `conn` is an opaque token (a number, never a pointer to dereference). It is valid
/// from this call until the connection's `exit_fn` returned (or, after
/// `coroipcs_refcount_inc`, until the last `coroipcs_refcount_dec`); from then on every
/// function given it returns `CS_ERR_BAD_HANDLE` (`coroipcs_private_data_get`: NULL).
pub type coroipcs_init_fn_lvalue = Option<unsafe extern "C" fn(conn: *mut c_void) -> c_int>;

/// A service's disconnect function (the seed's `exit_fn`): called once per
/// connection that `init_fn` accepted, whatever ended it, while `conn` and its
/// private data are still valid. Its return value is ignored.
pub type coroipcs_exit_fn_lvalue = Option<unsafe extern "C" fn(conn: *mut c_void) -> c_int>;

/// A command handler: `msg` starts with a `coroipc_request_header_t` whose `size`
/// (checked) is the message length; it is the server's private copy, 8-byte aligned,
/// valid until the handler returns. Answer with `coroipcs_response_send`: during the
/// handler it answers this request; a request the handler returned without answering
/// is answered later (from any thread) in the order the requests came.
pub type coroipcs_handler_fn_lvalue =
    Option<unsafe extern "C" fn(conn: *mut c_void, msg: *const c_void)>;

/// The daemon's configuration and callbacks, after corosync 1.x `coroipcs.h`. Every
/// callback may be NULL except the three poll functions that add and remove fds
/// (`poll_accept_add`, `poll_dispatch_add`, `poll_dispatch_destroy`): the library owns
/// no thread and no loop, the daemon's loop drives it. Callbacks are called on the
/// thread that called `coroipcs_ipc_init`, `coroipcs_handler_accept`,
/// `coroipcs_handler_dispatch` or `coroipcs_ipc_exit`. The structure is copied by
/// `coroipcs_ipc_init`; the function pointers must stay callable until
/// `coroipcs_ipc_exit` returns.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct coroipcs_init_state {
    /// Where to listen: starting with `/` a socket file (mode 0666), otherwise a
    /// Linux abstract name. Read during `coroipcs_ipc_init` only.
    pub socket_name: *const c_char,
    /// Allocates connection private data (NULL: `malloc`). The memory is zeroed.
    pub malloc: Option<unsafe extern "C" fn(size: usize) -> *mut c_void>,
    /// Frees what `malloc` returned (NULL: `free`).
    pub free: Option<unsafe extern "C" fn(ptr: *mut c_void)>,
    /// Log sink, called as `log_printf("%s", message)` (NULL: standard error).
    pub log_printf: Option<unsafe extern "C" fn(format: *const c_char, ...)>,
    /// Called with a message when the library caught an internal error (a panic)
    /// while serving; it may return (NULL: log it). The entry point then returns
    /// `CS_ERR_LIBRARY`.
    pub fatal_error: Option<unsafe extern "C" fn(error_msg: *const c_char)>,
    /// Decides, from the client's credentials (`SO_PEERCRED`), before anything is
    /// allocated, whether it may connect: non-zero accepts (NULL: root and the
    /// server's own effective uid).
    pub security_valid: Option<unsafe extern "C" fn(uid: c_int, gid: c_int) -> c_int>,
    /// Non-zero if `service` exists. Asked for every id at `coroipcs_ipc_init` (only
    /// services available then can ever be connected to) and again at each connect
    /// (NULL: every service exists).
    pub service_available: Option<unsafe extern "C" fn(service: c_uint) -> c_int>,
    /// Bytes of private data per connection of `service` (NULL or <= 0: none, and
    /// `coroipcs_private_data_get` returns NULL).
    pub private_data_size_get: Option<unsafe extern "C" fn(service: c_uint) -> c_int>,
    /// Admission control before the handler: zero answers the client
    /// `CS_ERR_TRY_AGAIN` without running the handler (NULL: always allowed).
    /// `sending_allowed_private_data` is 64 bytes of zeroed, 8-aligned scratch valid
    /// until `sending_allowed_release` returns.
    pub sending_allowed: Option<
        unsafe extern "C" fn(
            service: c_uint,
            id: c_uint,
            msg: *const c_void,
            sending_allowed_private_data: *mut c_void,
        ) -> c_int,
    >,
    /// Called after the handler of an allowed request, with the same scratch.
    pub sending_allowed_release:
        Option<unsafe extern "C" fn(sending_allowed_private_data: *mut c_void)>,
    /// Watch the listening fd for `POLLIN`; call `coroipcs_handler_accept` when it
    /// is readable. Non-zero refuses (then `coroipcs_ipc_init` fails). Required.
    pub poll_accept_add: Option<unsafe extern "C" fn(fd: c_int) -> c_int>,
    /// Watch `fd` for `POLLIN`; when readable call
    /// `coroipcs_handler_dispatch(fd, revents, context)` with this `context` (an
    /// opaque token, never dereferenced). Non-zero refuses (the client is dropped).
    /// Required.
    pub poll_dispatch_add: Option<unsafe extern "C" fn(fd: c_int, context: *mut c_void) -> c_int>,
    /// Never called: the library only ever needs `POLLIN`. Kept for the seed's shape.
    pub poll_dispatch_modify: Option<unsafe extern "C" fn(fd: c_int, events: c_int) -> c_int>,
    /// Stop watching `fd` (called before it is closed). `context` is the one given to
    /// `poll_dispatch_add`, or NULL for the listening fd. Required.
    pub poll_dispatch_destroy:
        Option<unsafe extern "C" fn(fd: c_int, context: *mut c_void) -> c_int>,
    /// The connect function of `service` (NULL, or returning NULL: accept).
    pub init_fn_get: Option<unsafe extern "C" fn(service: c_uint) -> coroipcs_init_fn_lvalue>,
    /// The disconnect function of `service` (NULL, or returning NULL: none).
    pub exit_fn_get: Option<unsafe extern "C" fn(service: c_uint) -> coroipcs_exit_fn_lvalue>,
    /// The seed's selector: the handler of command `id` of `service` (NULL, or
    /// returning NULL: the client gets `CS_ERR_INVALID_PARAM` for an unknown command).
    pub handler_fn_get:
        Option<unsafe extern "C" fn(service: c_uint, id: c_uint) -> coroipcs_handler_fn_lvalue>,
}

/// The daemon's callbacks as the library keeps them (`socket_name` dropped).
pub(crate) struct Callbacks(coroipcs_init_state);

// SAFETY: only function pointers are kept (`socket_name` is set to NULL); the daemon
// promises they may be called from the threads that call the library's entry points.
unsafe impl Send for Callbacks {}
// SAFETY: as for `Send`; nothing is mutated after construction.
unsafe impl Sync for Callbacks {}

/// Scratch given to `sending_allowed`: 64 bytes, 8-aligned, zeroed.
pub(crate) type AllowedScratch = [u64; 8];

impl Callbacks {
    /// Keeps the callbacks of `state`.
    pub(crate) fn new(state: &coroipcs_init_state) -> Callbacks {
        Callbacks(coroipcs_init_state {
            socket_name: std::ptr::null(),
            ..*state
        })
    }

    /// Whether the required poll callbacks are there.
    pub(crate) fn has_poll(&self) -> bool {
        self.0.poll_accept_add.is_some()
            && self.0.poll_dispatch_add.is_some()
            && self.0.poll_dispatch_destroy.is_some()
    }

    pub(crate) fn log(&self, msg: &str) {
        match self.0.log_printf {
            Some(f) => {
                let text = CString::new(msg.replace('\0', " ")).unwrap_or_default();
                // SAFETY: the daemon's log function (valid until exit, init contract),
                // called with a constant "%s" format and one NUL-terminated string.
                unsafe { f(c"%s".as_ptr(), text.as_ptr()) }
            }
            None => eprintln!("coroipcs: {msg}"),
        }
    }

    pub(crate) fn fatal(&self, msg: &str) {
        match self.0.fatal_error {
            Some(f) => {
                let text = CString::new(msg.replace('\0', " ")).unwrap_or_default();
                // SAFETY: the daemon's callback (init contract), a NUL-terminated string.
                unsafe { f(text.as_ptr()) }
            }
            None => self.log(&format!("fatal: {msg}")),
        }
    }

    pub(crate) fn security_valid(&self, uid: u32, gid: u32) -> bool {
        match self.0.security_valid {
            // SAFETY: the daemon's callback (init contract); plain integers.
            // Ids above i32::MAX wrap as in the seed's `int` fields.
            Some(f) => unsafe { f(uid as c_int, gid as c_int) != 0 },
            None => uid == 0 || uid == nix_euid(),
        }
    }

    pub(crate) fn service_available(&self, service: u16) -> bool {
        match self.0.service_available {
            // SAFETY: the daemon's callback (init contract); a plain integer.
            Some(f) => unsafe { f(c_uint::from(service)) != 0 },
            None => true,
        }
    }

    pub(crate) fn private_size(&self, service: u16) -> usize {
        match self.0.private_data_size_get {
            // SAFETY: the daemon's callback (init contract); a plain integer.
            Some(f) => usize::try_from(unsafe { f(c_uint::from(service)) }).unwrap_or(0),
            None => 0,
        }
    }

    /// Zeroed memory from the daemon's allocator; NULL when it fails.
    pub(crate) fn alloc(&self, size: usize) -> *mut c_void {
        let ptr = match self.0.malloc {
            // SAFETY: the daemon's allocator (init contract).
            Some(f) => unsafe { f(size) },
            // SAFETY: plain C allocation.
            None => unsafe { libc::malloc(size) },
        };
        if !ptr.is_null() {
            // SAFETY: a successful allocation of `size` bytes.
            unsafe { std::ptr::write_bytes(ptr.cast::<u8>(), 0, size) };
        }
        ptr
    }

    /// Frees what `alloc` returned.
    pub(crate) fn release(&self, ptr: *mut c_void) {
        if ptr.is_null() {
            return;
        }
        match self.0.free {
            // SAFETY: the daemon's deallocator, given what its allocator returned.
            Some(f) => unsafe { f(ptr) },
            // SAFETY: from `libc::malloc` in `alloc`, freed once.
            None => unsafe { libc::free(ptr) },
        }
    }

    pub(crate) fn sending_allowed(
        &self,
        service: u16,
        id: u16,
        msg: *const c_void,
        scratch: &mut AllowedScratch,
    ) -> bool {
        match self.0.sending_allowed {
            // SAFETY: the daemon's callback (init contract); `msg` is valid for the
            // call, `scratch` 64 writable bytes.
            Some(f) => unsafe {
                f(
                    c_uint::from(service),
                    c_uint::from(id),
                    msg,
                    scratch.as_mut_ptr().cast(),
                ) != 0
            },
            None => true,
        }
    }

    pub(crate) fn sending_allowed_release(&self, scratch: &mut AllowedScratch) {
        if let Some(f) = self.0.sending_allowed_release {
            // SAFETY: the daemon's callback (init contract), the same scratch.
            unsafe { f(scratch.as_mut_ptr().cast()) }
        }
    }

    /// `poll_accept_add` or `poll_dispatch_add`; true if the daemon accepted.
    pub(crate) fn poll_add(&self, fd: RawFd, context: Option<u64>) -> bool {
        match (context, self.0.poll_accept_add, self.0.poll_dispatch_add) {
            // SAFETY: the daemon's callback (init contract); a plain fd.
            (None, Some(f), _) => unsafe { f(fd) == 0 },
            // SAFETY: the daemon's callback (init contract); the context is an integer
            // token it only hands back.
            (Some(token), _, Some(f)) => unsafe { f(fd, token as *mut c_void) == 0 },
            _ => false,
        }
    }

    /// `poll_dispatch_destroy` (context NULL for the listening fd).
    pub(crate) fn poll_destroy(&self, fd: RawFd, context: Option<u64>) {
        if let Some(f) = self.0.poll_dispatch_destroy {
            let context = context.unwrap_or(0) as *mut c_void;
            // SAFETY: the daemon's callback (init contract).
            unsafe { f(fd, context) };
        }
    }

    pub(crate) fn init_fn(&self, service: u16) -> coroipcs_init_fn_lvalue {
        // SAFETY: the daemon's callback (init contract).
        self.0
            .init_fn_get
            .and_then(|f| unsafe { f(c_uint::from(service)) })
    }

    pub(crate) fn exit_fn(&self, service: u16) -> coroipcs_exit_fn_lvalue {
        // SAFETY: the daemon's callback (init contract).
        self.0
            .exit_fn_get
            .and_then(|f| unsafe { f(c_uint::from(service)) })
    }

    pub(crate) fn handler_fn(&self, service: u16, id: u16) -> coroipcs_handler_fn_lvalue {
        self.0
            .handler_fn_get
            // SAFETY: the daemon's callback (init contract).
            .and_then(|f| unsafe { f(c_uint::from(service), c_uint::from(id)) })
    }
}

fn nix_euid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}
