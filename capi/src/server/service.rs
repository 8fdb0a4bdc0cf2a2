//! A C service as a Rust [`Service`]: connect and disconnect call the daemon's
//! `init_fn` / `exit_fn`, each request goes through `sending_allowed` to the handler
//! the daemon's selector (`handler_fn_get`, asked only once `sending_allowed` said
//! yes) names, and the answer comes later through `coroipcs_response_send` (every
//! request is deferred).
//!
//! Locking, as corosync's coroipcs: `sending_allowed`, `handler_fn_get`, the handler,
//! the release, and `exit_fn` run between the daemon's `serialize_lock` and
//! `serialize_unlock`; `init_fn` runs outside it. A request the daemon refuses
//! (`sending_allowed` 0, or -1 for an invalid one) is answered by the library with a
//! bare `coroipc_response_header_t` carrying `CS_ERR_TRY_AGAIN` (or
//! `CS_ERR_INVALID_PARAM`), as corosync's did.

use std::ffi::c_void;
use std::sync::Arc;

use ipc::{Connection, DisconnectReason, HandlerError, Request, Responder, Service};

use super::callbacks::{Allowed, AllowedScratch, Callbacks};
use super::{conn, exits};
use crate::message::check_received_request;
use crate::types::{cs_error_t, response_header};

/// One service id of the daemon.
pub(crate) struct CService {
    pub(crate) id: u16,
    pub(crate) callbacks: Arc<Callbacks>,
    /// An 8-aligned copy of a request whose payload is not aligned.
    pub(crate) scratch: Vec<u64>,
}

/// A connection's handle; closing it (drop) ends the entry's connected life.
pub(crate) struct ConnKey(u64);

impl ConnKey {
    pub(crate) fn token(&self) -> *mut c_void {
        self.0 as *mut c_void
    }
}

impl Drop for ConnKey {
    fn drop(&mut self) {
        conn::close(self.0);
    }
}

impl CService {
    /// A pointer to `payload` that is 8-aligned (the payload itself, or a copy).
    fn aligned(&mut self, payload: &[u8]) -> *const c_void {
        if payload.as_ptr().align_offset(8) == 0 {
            return payload.as_ptr().cast();
        }
        self.scratch.clear();
        self.scratch.resize(payload.len().div_ceil(8), 0);
        let dst = self.scratch.as_mut_ptr().cast::<u8>();
        // SAFETY: `scratch` holds at least `payload.len()` bytes; distinct buffers.
        unsafe { std::ptr::copy_nonoverlapping(payload.as_ptr(), dst, payload.len()) };
        dst.cast_const().cast()
    }

    /// Answers with a bare header carrying `error` (what corosync's coroipcs did for
    /// refused requests).
    fn answer_status(resp: &mut Responder<'_>, error: cs_error_t) {
        let _ = resp.respond(0, &response_header(error));
    }

    /// Runs the handler of an admitted request, under `serialize_lock` (the caller
    /// holds it). The handler is asked for here, once `sending_allowed` said yes and
    /// inside the lock, as corosync 1.4.10's coroipcs did (exec/coroipcs.c,
    /// `pthread_ipc_consumer`): corosync's `handler_fn_get` indexes its handler table
    /// unchecked, and reads it under the lock. None: a bare header carrying
    /// `CS_ERR_INVALID_PARAM` (corosync's called NULL).
    fn run_handler(
        &self,
        entry: &conn::ConnEntry,
        key: &ConnKey,
        command: u16,
        msg: *const c_void,
        resp: &mut Responder<'_>,
    ) {
        let Some(handler) = self.callbacks.handler_fn(self.id, command) else {
            entry.count(c"invalid_request");
            Self::answer_status(resp, cs_error_t::CS_ERR_INVALID_PARAM);
            return;
        };
        entry.count(c"requests");
        // A fresh responder cannot have answered already.
        if let Ok(deferred) = resp.defer() {
            entry.handler_starts(deferred);
            // SAFETY: the daemon's handler; `msg` is valid and 8-aligned until it
            // returns, the token live.
            unsafe { handler(key.token(), msg) };
            entry.handler_returned();
        }
    }
}

impl Service for CService {
    type Private = ConnKey;

    fn on_connect(&mut self, conn: &Connection) -> Result<ConnKey, i32> {
        if !self.callbacks.service_available(self.id) {
            return Err(cs_error_t::CS_ERR_NOT_EXIST as i32);
        }
        let size = self.callbacks.private_size(self.id);
        let key = match conn::open(conn, &self.callbacks, size) {
            Ok(handle) => ConnKey(handle),
            Err(e) => {
                self.callbacks.log(&format!("connection refused: {e}"));
                return Err(cs_error_t::CS_ERR_NO_RESOURCES as i32);
            }
        };
        match self.callbacks.init_fn(self.id) {
            // SAFETY: the daemon's connect function; `conn` is a live token. Its
            // result is ignored, as corosync's coroipcs did.
            Some(init) => drop(unsafe { init(key.token()) }),
            // corosync refuses a service without a connect function.
            None => return Err(cs_error_t::CS_ERR_NOT_EXIST as i32),
        }
        Ok(key)
    }

    fn on_disconnect(&mut self, key: ConnKey, _conn: &Connection, reason: &DisconnectReason) {
        if let DisconnectReason::ProtocolViolation(why) = reason {
            self.callbacks.log(&format!("client disconnected: {why}"));
        }
        // Closed (the key dropped) once `exit_fn` is done, which may take retries.
        exits::exit(&self.callbacks, self.id, key);
    }

    fn on_flow_control(&mut self, key: &mut ConnKey, _conn: &Connection, on: bool) {
        if let Ok(entry) = conn::lookup(key.token()) {
            entry.set_stat(c"flow_control", u32::from(on));
            if on {
                entry.count(c"flow_control_count");
            }
        }
    }

    fn handle(
        &mut self,
        key: &mut ConnKey,
        req: Request<'_>,
        resp: &mut Responder<'_>,
    ) -> Result<(), HandlerError> {
        if let Err(why) = check_received_request(req.payload, req.command) {
            self.callbacks.log(&format!("request refused: {why}"));
            return Err(HandlerError::InvalidRequest);
        }
        let entry = conn::lookup(key.token()).map_err(|_| HandlerError::InvalidRequest)?;
        let msg = self.aligned(req.payload);
        let mut scratch: AllowedScratch = [0; 64];
        let callbacks = self.callbacks.clone();
        callbacks.serialized(|| {
            match callbacks.sending_allowed(self.id, req.command, msg, &mut scratch) {
                Allowed::Yes => self.run_handler(&entry, key, req.command, msg, resp),
                Allowed::No => {
                    entry.count(c"overload");
                    Self::answer_status(resp, cs_error_t::CS_ERR_TRY_AGAIN);
                }
                Allowed::Invalid => {
                    entry.count(c"invalid_request");
                    Self::answer_status(resp, cs_error_t::CS_ERR_INVALID_PARAM);
                }
            }
            callbacks.sending_allowed_release(&mut scratch);
        });
        Ok(())
    }
}
