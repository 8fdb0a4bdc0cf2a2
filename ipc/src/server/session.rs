//! A connected client on the server thread: what the thread holds for it. How its
//! doorbell is served and how it ends are in `events`.

use std::os::unix::net::UnixStream;

use coroipc_ring::Consumer;

use crate::connection::Connection;
use crate::service::ErasedPrivate;
use crate::spin::Adaptive;

/// A connected client, as the server thread holds it.
pub(crate) struct Session {
    pub(crate) stream: UnixStream,
    /// The request ring; only the server thread reads it.
    pub(crate) requests: Consumer,
    pub(crate) private: Option<ErasedPrivate>,
    /// The connection as the service sees it (id, service, credentials).
    pub(crate) handle: Connection,
    /// Entered around everything the server does (and logs) for this connection.
    pub(crate) span: tracing::Span,
    /// Whether this client's requests have recently come back to back: the server's
    /// adaptive poll of its request ring (`Limits::adaptive_spin`).
    pub(crate) adapt: Adaptive,
    /// Which of its descriptors the server's poller watches (removed at the
    /// disconnect: only these).
    pub(crate) watched: Watched,
}

/// The descriptors of a connection added to the server's poller.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Watched {
    /// The doorbell (the server's end).
    pub(crate) bell: bool,
    /// The socket (its hang-up).
    pub(crate) socket: bool,
}

impl Drop for Session {
    /// The server lets the connection go: what a handle the service kept would pin
    /// of it (descriptors, the client's memory) is released now.
    fn drop(&mut self) {
        crate::connection::ConnShared::let_go(&self.handle.shared);
    }
}

/// The tracing span of a connection: its id, the client's pid and uid, the service.
pub(crate) fn span(handle: &Connection) -> tracing::Span {
    let cred = handle.credentials();
    tracing::info_span!(
        "conn",
        id = handle.id(),
        pid = cred.pid,
        uid = cred.uid,
        service = handle.service()
    )
}
