//! A connection as C sees it: a `void *conn` token naming a [`ConnEntry`] in a handle
//! table. The entry lives from the service's connect until the disconnect *and* the
//! last `coroipcs_refcount_dec`; its private data is freed when the entry goes.

use std::collections::VecDeque;
use std::ffi::{c_void, CStr};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use ipc::{Connection, DeferredResponse};

use super::callbacks::Callbacks;
use crate::error::CapiError;
use crate::handle::{Registry, Tag};

pub(crate) static CONNS: Registry<ConnEntry> = Registry::new(Tag::Conn);

/// Private data allocated with the daemon's allocator, freed with its deallocator.
struct PrivateData {
    ptr: *mut c_void,
    callbacks: Arc<Callbacks>,
}

// SAFETY: the library never reads or writes the memory; it only hands the pointer to
// C and frees it once (in `drop`). The daemon synchronises its own use of it.
unsafe impl Send for PrivateData {}
// SAFETY: as for `Send`.
unsafe impl Sync for PrivateData {}

impl Drop for PrivateData {
    fn drop(&mut self) {
        self.callbacks.release(self.ptr);
    }
}

#[derive(Default)]
struct ConnState {
    /// The request whose handler is running, until answered or the handler returns.
    current: Option<DeferredResponse>,
    /// Requests whose handler returned without answering, oldest first.
    deferred: VecDeque<DeferredResponse>,
    /// `coroipcs_refcount_inc` minus `dec`.
    refs: u32,
    /// The connection ended.
    gone: bool,
}

/// One connection of a C service.
pub(crate) struct ConnEntry {
    pub(crate) conn: Connection,
    private: PrivateData,
    state: Mutex<ConnState>,
    /// The daemon's statistics handle (`stats_create_connection`; 0 without one).
    stats: u64,
}

impl ConnEntry {
    fn state(&self) -> MutexGuard<'_, ConnState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn private_data(&self) -> *mut c_void {
        self.private.ptr
    }

    /// Counts one `name` event in the daemon's statistics for this connection.
    pub(crate) fn count(&self, name: &CStr) {
        self.private.callbacks.stats_increment(self.stats, name);
    }

    /// Sets the statistic `name` of this connection.
    pub(crate) fn set_stat(&self, name: &CStr, value: u32) {
        self.private.callbacks.stats_update(self.stats, name, value);
    }

    /// A handler starts on request `d`: a response sent meanwhile answers it.
    pub(crate) fn handler_starts(&self, d: DeferredResponse) {
        self.state().current = Some(d);
    }

    /// The handler returned: its request, if unanswered, waits behind the older ones.
    pub(crate) fn handler_returned(&self) {
        let mut s = self.state();
        if let Some(d) = s.current.take() {
            s.deferred.push_back(d);
        }
    }

    /// The request a response answers: the one being handled, else the oldest
    /// unanswered one.
    pub(crate) fn pop_deferred(&self) -> Result<DeferredResponse, CapiError> {
        let mut s = self.state();
        if s.gone {
            return Err(ipc::SendError::Disconnected.into());
        }
        match s.current.take() {
            Some(d) => Ok(d),
            None => s
                .deferred
                .pop_front()
                .ok_or(CapiError::NotExist("no request awaits a response")),
        }
    }
}

/// Registers a new connection with `size` bytes of private data; returns its handle.
pub(crate) fn open(
    conn: &Connection,
    callbacks: &Arc<Callbacks>,
    size: usize,
) -> Result<u64, CapiError> {
    let ptr = if size == 0 {
        std::ptr::null_mut()
    } else {
        callbacks.alloc(size)
    };
    if size != 0 && ptr.is_null() {
        return Err(CapiError::Io(std::io::ErrorKind::OutOfMemory.into()));
    }
    let pid = conn.credentials().pid;
    let name = format!(
        "{}:{}:{}:{}",
        process_name(pid).unwrap_or_else(|| "proc".to_owned()),
        conn.service(),
        pid,
        conn.id()
    );
    let fd = i32::try_from(conn.id()).unwrap_or(-1);
    let stats = callbacks.stats_create(&name, pid, fd);
    let entry = ConnEntry {
        conn: conn.clone(),
        private: PrivateData {
            ptr,
            callbacks: callbacks.clone(),
        },
        state: Mutex::default(),
        stats,
    };
    entry.set_stat(c"service_id", u32::from(conn.service()));
    Ok(CONNS.insert(Arc::new(entry)))
}

/// The command name of process `pid` (`/proc/<pid>/comm`), for the statistics.
fn process_name(pid: i32) -> Option<String> {
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
    let name = comm.trim_end();
    (!name.is_empty()).then(|| name.to_owned())
}

/// Whether a connection of `service` is still registered (connected, or gone and
/// still referenced).
pub(crate) fn service_has_connections(service: u16) -> bool {
    CONNS.any(|e| e.conn.service() == service)
}

/// The connection ended: unanswered requests are dropped, and the entry goes unless
/// the daemon holds references. Idempotent.
pub(crate) fn close(handle: u64) {
    let Some(entry) = CONNS.get(handle) else {
        return;
    };
    let unanswered = {
        let mut s = entry.state();
        s.gone = true;
        if s.refs == 0 {
            CONNS.remove(handle);
        }
        (s.current.take(), std::mem::take(&mut s.deferred))
    };
    drop(unanswered);
    entry.private.callbacks.stats_destroy(entry.stats);
}

impl ConnState {
    /// One more reference; `BadHandle` once the entry is gone for good (closed with no
    /// reference left: it has left the table, or is leaving it under this lock).
    fn add_ref(&mut self) -> Result<(), CapiError> {
        if self.gone && self.refs == 0 {
            return Err(CapiError::BadHandle);
        }
        self.refs = self
            .refs
            .checked_add(1)
            .ok_or(CapiError::InvalidParam("reference count overflow"))?;
        Ok(())
    }
}

/// `coroipcs_refcount_inc`.
///
/// A thread other than the loop may race the disconnect: it takes the entry from the
/// table, then `close` (or the last `refcount_dec`) marks it gone with no reference
/// and removes it, then this thread locks its state. Counting a reference there would
/// keep an entry no handle reaches (`private_data_get` NULL, `dec` ignored: the
/// reference lost, C API audit finding 5), so a gone, unreferenced entry refuses it,
/// as if the handle had already been stale; the other order (the reference counted
/// first) keeps the entry, as `close` sees `refs > 0`.
pub(crate) fn refcount_inc(handle: u64) -> Result<(), CapiError> {
    let entry = CONNS.get(handle).ok_or(CapiError::BadHandle)?;
    let mut s = entry.state();
    s.add_ref()
}

/// `coroipcs_refcount_dec`: the last reference of a closed connection frees it.
pub(crate) fn refcount_dec(handle: u64) -> Result<(), CapiError> {
    let entry = CONNS.get(handle).ok_or(CapiError::BadHandle)?;
    let mut s = entry.state();
    s.refs = s
        .refs
        .checked_sub(1)
        .ok_or(CapiError::InvalidParam("reference count is already 0"))?;
    if s.refs == 0 && s.gone {
        CONNS.remove(handle);
    }
    Ok(())
}

/// The entry behind a C `conn` token.
pub(crate) fn lookup(conn: *mut c_void) -> Result<Arc<ConnEntry>, CapiError> {
    CONNS.get(conn as u64).ok_or(CapiError::BadHandle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_gone_unreferenced_entry_takes_no_reference() {
        // What `refcount_inc` finds when it lost the race with `close`.
        let mut s = ConnState {
            gone: true,
            ..ConnState::default()
        };
        assert!(matches!(s.add_ref(), Err(CapiError::BadHandle)));
        assert_eq!(s.refs, 0);
        // Gone but still referenced (the table still holds it): one more is fine.
        s.refs = 1;
        assert!(s.add_ref().is_ok());
        assert_eq!(s.refs, 2);
        // Connected: counted; the count does not wrap.
        let mut live = ConnState::default();
        assert!(live.add_ref().is_ok());
        live.refs = u32::MAX;
        assert!(matches!(live.add_ref(), Err(CapiError::InvalidParam(_))));
    }
}
