//! `struct coroipcs_init_state` (the daemon's callbacks) and the library's view of
//! it, `Callbacks`: each callback called through one method that supplies the
//! internal version when the field is NULL.

#![allow(non_camel_case_types)]

use std::ffi::{c_char, c_int, c_uint, c_void, CStr, CString};
use std::os::fd::RawFd;

/// A service's connect function (`init_fn`): called with the new connection once
/// its private data exists. Its return value is ignored, as in corosync (an engine
/// that refuses a client disconnects it from its handlers).
///
/// `conn` is an opaque token (a number, never a pointer to dereference). It is valid
/// from this call until the connection's `exit_fn` returned (or, after
/// `coroipcs_refcount_inc`, until the last `coroipcs_refcount_dec`); from then on every
/// function given it fails (`coroipcs_private_data_get`: NULL).
pub type coroipcs_init_fn_lvalue = Option<unsafe extern "C" fn(conn: *mut c_void) -> c_int>;

/// A service's disconnect function (`exit_fn`): called for each connection, whatever
/// ended it, while `conn` and its private data are still valid, between
/// `serialize_lock` and `serialize_unlock`. -1 means "busy, call me again" (corosync's
/// cpg returns it while totem's queue is full): it is called again after every entry
/// point and every 10 ms until it returns something else.
pub type coroipcs_exit_fn_lvalue = Option<unsafe extern "C" fn(conn: *mut c_void) -> c_int>;

/// A command handler: `msg` starts with a `coroipc_request_header_t` whose `size`
/// (checked) is the message length; it is 8-byte aligned and valid until the handler
/// returns. Answer with `coroipcs_response_send`: during the handler it answers this
/// request; a request the handler returned without answering is answered later (from
/// any thread) in the order the requests came.
pub type coroipcs_handler_fn_lvalue =
    Option<unsafe extern "C" fn(conn: *mut c_void, msg: *const c_void)>;

type LogPrintf = Option<unsafe extern "C" fn(format: *const c_char, ...)>;
type Malloc = Option<unsafe extern "C" fn(size: usize) -> *mut c_void>;
type Free = Option<unsafe extern "C" fn(ptr: *mut c_void)>;
type ServiceFn = Option<unsafe extern "C" fn(service: c_uint) -> c_int>;
type Security = Option<unsafe extern "C" fn(uid: c_int, gid: c_int) -> c_int>;
type Lock = Option<unsafe extern "C" fn()>;
type SendingAllowed = Option<
    unsafe extern "C" fn(
        service: c_uint,
        id: c_uint,
        msg: *const c_void,
        sending_allowed_private_data: *mut c_void,
    ) -> c_int,
>;
type SendingAllowedRelease =
    Option<unsafe extern "C" fn(sending_allowed_private_data: *mut c_void)>;
type PollAcceptAdd = Option<unsafe extern "C" fn(fd: c_int)>;
type PollDispatchAdd = Option<unsafe extern "C" fn(fd: c_int, context: *mut c_void)>;
type PollDispatchModify = Option<unsafe extern "C" fn(fd: c_int, events: c_int)>;
type PollDispatchDestroy = Option<unsafe extern "C" fn(fd: c_int, context: *mut c_void)>;
type FatalError = Option<unsafe extern "C" fn(error_msg: *const c_char)>;
type InitFnGet = Option<unsafe extern "C" fn(service: c_uint) -> coroipcs_init_fn_lvalue>;
type ExitFnGet = Option<unsafe extern "C" fn(service: c_uint) -> coroipcs_exit_fn_lvalue>;
type HandlerFnGet =
    Option<unsafe extern "C" fn(service: c_uint, id: c_uint) -> coroipcs_handler_fn_lvalue>;
type StatsCreate =
    Option<unsafe extern "C" fn(name: *const c_char, pid: libc::pid_t, fd: c_int) -> u64>;
type StatsDestroy = Option<unsafe extern "C" fn(handle: u64)>;
type StatsUpdate = Option<
    unsafe extern "C" fn(handle: u64, name: *const c_char, value: *const c_void, len: usize),
>;
type StatsStep = Option<unsafe extern "C" fn(handle: u64, name: *const c_char)>;
type LogsysPrintf = Option<
    unsafe extern "C" fn(
        rec_ident: c_uint,
        function_name: *const c_char,
        file_name: *const c_char,
        file_line: c_int,
        format: *const c_char,
        ...
    ),
>;

/// corosync 1.4's `struct coroipcs_init_state` (v1), field for field; what each
/// field means is in `include/corosync/coroipcs.h`.
#[repr(C)]
#[derive(Clone, Copy)]
#[allow(missing_docs)]
pub struct coroipcs_init_state {
    pub socket_name: *const c_char,
    pub sched_policy: c_int,
    pub sched_param: *const c_void,
    pub malloc: Malloc,
    pub free: Free,
    pub log_printf: LogPrintf,
    pub service_available: ServiceFn,
    pub private_data_size_get: ServiceFn,
    pub security_valid: Security,
    pub serialize_lock: Lock,
    pub serialize_unlock: Lock,
    pub sending_allowed: SendingAllowed,
    pub sending_allowed_release: SendingAllowedRelease,
    pub poll_accept_add: PollAcceptAdd,
    pub poll_dispatch_add: PollDispatchAdd,
    pub poll_dispatch_modify: PollDispatchModify,
    pub poll_dispatch_destroy: PollDispatchDestroy,
    pub fatal_error: FatalError,
    pub init_fn_get: InitFnGet,
    pub exit_fn_get: ExitFnGet,
    pub handler_fn_get: HandlerFnGet,
}

/// corosync 1.4's `struct coroipcs_init_state_v2`: v1 (with `log_printf` named
/// `old_log_printf`), then statistics and logsys-style logging.
#[repr(C)]
#[derive(Clone, Copy)]
#[allow(missing_docs)]
pub struct coroipcs_init_state_v2 {
    pub socket_name: *const c_char,
    pub sched_policy: c_int,
    pub sched_param: *const c_void,
    pub malloc: Malloc,
    pub free: Free,
    pub old_log_printf: LogPrintf,
    pub service_available: ServiceFn,
    pub private_data_size_get: ServiceFn,
    pub security_valid: Security,
    pub serialize_lock: Lock,
    pub serialize_unlock: Lock,
    pub sending_allowed: SendingAllowed,
    pub sending_allowed_release: SendingAllowedRelease,
    pub poll_accept_add: PollAcceptAdd,
    pub poll_dispatch_add: PollDispatchAdd,
    pub poll_dispatch_modify: PollDispatchModify,
    pub poll_dispatch_destroy: PollDispatchDestroy,
    pub fatal_error: FatalError,
    pub init_fn_get: InitFnGet,
    pub exit_fn_get: ExitFnGet,
    pub handler_fn_get: HandlerFnGet,
    pub stats_create_connection: StatsCreate,
    pub stats_destroy_connection: StatsDestroy,
    pub stats_update_value: StatsUpdate,
    pub stats_increment_value: StatsStep,
    pub log_printf: LogsysPrintf,
    pub log_subsys_id: c_int,
    pub stats_decrement_value: StatsStep,
}

impl From<&coroipcs_init_state> for coroipcs_init_state_v2 {
    fn from(v1: &coroipcs_init_state) -> Self {
        coroipcs_init_state_v2 {
            socket_name: v1.socket_name,
            sched_policy: v1.sched_policy,
            sched_param: v1.sched_param,
            malloc: v1.malloc,
            free: v1.free,
            old_log_printf: v1.log_printf,
            service_available: v1.service_available,
            private_data_size_get: v1.private_data_size_get,
            security_valid: v1.security_valid,
            serialize_lock: v1.serialize_lock,
            serialize_unlock: v1.serialize_unlock,
            sending_allowed: v1.sending_allowed,
            sending_allowed_release: v1.sending_allowed_release,
            poll_accept_add: v1.poll_accept_add,
            poll_dispatch_add: v1.poll_dispatch_add,
            poll_dispatch_modify: v1.poll_dispatch_modify,
            poll_dispatch_destroy: v1.poll_dispatch_destroy,
            fatal_error: v1.fatal_error,
            init_fn_get: v1.init_fn_get,
            exit_fn_get: v1.exit_fn_get,
            handler_fn_get: v1.handler_fn_get,
            stats_create_connection: None,
            stats_destroy_connection: None,
            stats_update_value: None,
            stats_increment_value: None,
            log_printf: None,
            log_subsys_id: 0,
            stats_decrement_value: None,
        }
    }
}

/// The daemon's callbacks as the library keeps them (`socket_name` and
/// `sched_param` dropped; a v1 state as v2 without its v2 fields).
pub(crate) struct Callbacks(coroipcs_init_state_v2);

// SAFETY: only function pointers are kept (`socket_name` is set to NULL); the daemon
// promises they may be called from the threads that call the library's entry points.
unsafe impl Send for Callbacks {}
// SAFETY: as for `Send`; nothing is mutated after construction.
unsafe impl Sync for Callbacks {}

/// What `sending_allowed` said about a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Allowed {
    /// Non-zero (not -1): run the handler.
    Yes,
    /// 0: overloaded, the client is told `CS_ERR_TRY_AGAIN`.
    No,
    /// -1: an invalid request, the client is told `CS_ERR_INVALID_PARAM`.
    Invalid,
}

/// Scratch given to `sending_allowed`: 512 bytes (corosync's coroipcs gave
/// `char *[64]`), 8-aligned, zeroed.
pub(crate) type AllowedScratch = [u64; 64];

impl Callbacks {
    /// Keeps the callbacks of `state`.
    pub(crate) fn new(state: &coroipcs_init_state_v2) -> Callbacks {
        Callbacks(coroipcs_init_state_v2 {
            socket_name: std::ptr::null(),
            sched_param: std::ptr::null(),
            ..*state
        })
    }

    /// The first required callback that is missing, if any.
    pub(crate) fn missing(&self) -> Option<&'static str> {
        let s = &self.0;
        [
            (s.poll_accept_add.is_none(), "poll_accept_add"),
            (s.poll_dispatch_add.is_none(), "poll_dispatch_add"),
            (s.poll_dispatch_destroy.is_none(), "poll_dispatch_destroy"),
            (s.init_fn_get.is_none(), "init_fn_get"),
            (s.exit_fn_get.is_none(), "exit_fn_get"),
            (s.handler_fn_get.is_none(), "handler_fn_get"),
        ]
        .into_iter()
        .find_map(|(missing, name)| missing.then_some(name))
    }

    /// Logs `msg` at `level` (syslog's numbers: 3 error, 4 warning, 6 info): through
    /// the v2 logsys function when set, else the v1 one, else standard error.
    pub(crate) fn log_at(&self, level: c_uint, msg: &str) {
        let text = CString::new(msg.replace('\0', " ")).unwrap_or_default();
        if let Some(f) = self.0.log_printf {
            let rec_ident = logsys_rec_ident(level, self.0.log_subsys_id);
            // SAFETY: the daemon's log function (valid until exit, init contract),
            // called with NUL-terminated strings and a constant "%s" format.
            unsafe {
                f(
                    rec_ident,
                    c"coroipcs".as_ptr(),
                    c"libcoroipc".as_ptr(),
                    0,
                    c"%s\n".as_ptr(),
                    text.as_ptr(),
                )
            };
            return;
        }
        match self.0.old_log_printf {
            // SAFETY: as above, the v1 signature.
            Some(f) => unsafe { f(c"%s\n".as_ptr(), text.as_ptr()) },
            None => {
                // Not `eprintln!`, which panics when the write fails (this file is also
                // compiled alone by the header test, hence not `crate::panic::to_stderr`).
                use std::io::Write;
                let _ = writeln!(std::io::stderr(), "coroipcs: {msg}");
            }
        }
    }

    /// Logs at the error level.
    pub(crate) fn log(&self, msg: &str) {
        self.log_at(LOG_ERR, msg);
    }

    /// `serialize_lock`, if set.
    pub(crate) fn serialize_lock(&self) {
        if let Some(f) = self.0.serialize_lock {
            // SAFETY: the daemon's callback (init contract), no arguments.
            unsafe { f() }
        }
    }

    /// `serialize_unlock`, if set.
    pub(crate) fn serialize_unlock(&self) {
        if let Some(f) = self.0.serialize_unlock {
            // SAFETY: the daemon's callback (init contract), no arguments.
            unsafe { f() }
        }
    }

    /// Runs `f` between `serialize_lock` and `serialize_unlock`.
    pub(crate) fn serialized<R>(&self, f: impl FnOnce() -> R) -> R {
        struct Unlock<'a>(&'a Callbacks);
        impl Drop for Unlock<'_> {
            fn drop(&mut self) {
                self.0.serialize_unlock();
            }
        }
        self.serialize_lock();
        let _unlock = Unlock(self);
        f()
    }

    /// `stats_create_connection` (0 when not set).
    pub(crate) fn stats_create(&self, name: &str, pid: libc::pid_t, fd: RawFd) -> u64 {
        let Some(f) = self.0.stats_create_connection else {
            return 0;
        };
        let name = CString::new(name.replace('\0', " ")).unwrap_or_default();
        // SAFETY: the daemon's callback (init contract); a NUL-terminated name.
        unsafe { f(name.as_ptr(), pid, fd) }
    }

    /// `stats_destroy_connection`, if set.
    pub(crate) fn stats_destroy(&self, handle: u64) {
        if let Some(f) = self.0.stats_destroy_connection {
            // SAFETY: the daemon's callback (init contract), its own handle.
            unsafe { f(handle) }
        }
    }

    /// `stats_update_value` with a 32-bit value, if set.
    pub(crate) fn stats_update(&self, handle: u64, name: &CStr, value: u32) {
        if let Some(f) = self.0.stats_update_value {
            // SAFETY: the daemon's callback (init contract); `value` lives for the call.
            unsafe { f(handle, name.as_ptr(), (&raw const value).cast(), 4) }
        }
    }

    /// `stats_increment_value`, if set.
    pub(crate) fn stats_increment(&self, handle: u64, name: &CStr) {
        if let Some(f) = self.0.stats_increment_value {
            // SAFETY: the daemon's callback (init contract), a NUL-terminated name.
            unsafe { f(handle, name.as_ptr()) }
        }
    }

    /// `fatal_error` (corosync's exits the process), else an error log.
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

    /// The daemon's admission control for one request.
    pub(crate) fn sending_allowed(
        &self,
        service: u16,
        id: u16,
        msg: *const c_void,
        scratch: &mut AllowedScratch,
    ) -> Allowed {
        let Some(f) = self.0.sending_allowed else {
            return Allowed::Yes;
        };
        // SAFETY: the daemon's callback (init contract); `msg` is valid for the call,
        // `scratch` 64 writable bytes.
        let verdict = unsafe {
            f(
                c_uint::from(service),
                c_uint::from(id),
                msg,
                scratch.as_mut_ptr().cast(),
            )
        };
        match verdict {
            -1 => Allowed::Invalid,
            0 => Allowed::No,
            _ => Allowed::Yes,
        }
    }

    pub(crate) fn sending_allowed_release(&self, scratch: &mut AllowedScratch) {
        if let Some(f) = self.0.sending_allowed_release {
            // SAFETY: the daemon's callback (init contract), the same scratch.
            unsafe { f(scratch.as_mut_ptr().cast()) }
        }
    }

    /// `poll_accept_add` or `poll_dispatch_add` (they cannot refuse); false if the
    /// callback is missing.
    pub(crate) fn poll_add(&self, fd: RawFd, context: Option<u64>) -> bool {
        match (context, self.0.poll_accept_add, self.0.poll_dispatch_add) {
            // SAFETY: the daemon's callback (init contract); a plain fd.
            (None, Some(f), _) => unsafe { f(fd) },
            // SAFETY: the daemon's callback (init contract); the context is an integer
            // token it only hands back.
            (Some(token), _, Some(f)) => unsafe { f(fd, token as *mut c_void) },
            _ => return false,
        }
        true
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

/// syslog's error level.
pub(crate) const LOG_ERR: c_uint = 3;

/// corosync's `LOGSYS_ENCODE_RECID(level, subsys, LOGSYS_RECID_LOG)`: the record id
/// in the bits above 10, the subsystem in bits 3..10, the level in bits 0..3.
fn logsys_rec_ident(level: c_uint, subsys: c_int) -> c_uint {
    const LEVEL_END: u32 = 3;
    const SUBSYSID_END: u32 = LEVEL_END + 7;
    const RECID_LOG: c_uint = (c_uint::MAX >> SUBSYSID_END) - 1;
    (RECID_LOG << SUBSYSID_END) | (((subsys as c_uint) & 0x7f) << LEVEL_END) | (level & 7)
}

fn nix_euid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}
