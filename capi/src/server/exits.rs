//! Disconnects whose `exit_fn` asked to be called again. corosync's coroipcs retried
//! an `exit_fn` that returned -1 until it returned something else: cpg's returns -1
//! while totem's queue is full, before it sends the process's leave and drops the
//! reference its `init_fn` took. Such a connection stays registered (its token and
//! private data valid, `coroipcs_ipc_service_exit` counting it as left) and its
//! `exit_fn` is called again after every entry point and from the library's timer,
//! every [`RETRY_EVERY`], until it is done; then it closes.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use super::callbacks::Callbacks;
use super::service::ConnKey;

/// How often a busy `exit_fn` is called again when nothing else wakes the library.
pub(crate) const RETRY_EVERY: Duration = Duration::from_millis(10);

/// A connection whose `exit_fn` returned -1.
struct Exiting {
    service: u16,
    key: ConnKey,
    callbacks: Arc<Callbacks>,
}

static EXITING: Mutex<Vec<Exiting>> = Mutex::new(Vec::new());

fn exiting() -> std::sync::MutexGuard<'static, Vec<Exiting>> {
    // Only whole entries are pushed or taken: usable after a panic elsewhere.
    EXITING.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Calls `exit_fn` once; true when it is done (anything but -1, or no `exit_fn`).
fn call(callbacks: &Callbacks, service: u16, key: &ConnKey) -> bool {
    let Some(exit) = callbacks.exit_fn(service) else {
        return true;
    };
    // SAFETY: the daemon's disconnect function (init contract); the token is live
    // (the key is not dropped before it is done).
    let result = callbacks.serialized(|| unsafe { exit(key.token()) });
    result != -1
}

/// A connection ended: its `exit_fn` runs now, and again later while it says -1;
/// the connection closes (the key drops) once it is done.
pub(crate) fn exit(callbacks: &Arc<Callbacks>, service: u16, key: ConnKey) {
    if !call(callbacks, service, &key) {
        exiting().push(Exiting {
            service,
            key,
            callbacks: callbacks.clone(),
        });
    }
}

/// Calls every busy `exit_fn` again; true while some still are. The list is not
/// locked while the daemon's code runs.
pub(crate) fn retry() -> bool {
    let busy = std::mem::take(&mut *exiting());
    if busy.is_empty() {
        return false;
    }
    let still: Vec<Exiting> = busy
        .into_iter()
        .filter(|e| !call(&e.callbacks, e.service, &e.key))
        .collect();
    let mut list = exiting();
    list.extend(still);
    !list.is_empty()
}

/// Gives up on the busy `exit_fn`s (the server stops): their connections close.
pub(crate) fn abandon() -> usize {
    let busy = std::mem::take(&mut *exiting());
    busy.len()
}
