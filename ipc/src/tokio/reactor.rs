//! The reactor side of the tokio support: registering a borrowed fd with tokio's
//! `AsyncFd`, and driving a non-blocking connect on the socket's readiness. Shared by
//! the async client and `serve`.

use std::io;
use std::os::fd::AsRawFd;
use std::time::Duration;

use ::tokio::io::unix::AsyncFd;
use ::tokio::io::Interest;

use crate::client::{Client, Connecting, Finish};
use crate::error::ConnectError;

/// A raw fd registered with tokio, owned elsewhere (and outliving the registration).
pub(crate) struct Borrowed(pub(crate) std::os::fd::RawFd);

impl AsRawFd for Borrowed {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.0
    }
}

/// Registers `fd` for readability with the current runtime's reactor.
///
/// # Safety
///
/// `fd` must stay open, naming the same file description, until the returned
/// `AsyncFd` is dropped (tokio's requirement for `register_with_interest`).
///
/// # Errors
///
/// `Other` outside a tokio runtime; the OS error of `epoll_ctl`.
pub(crate) unsafe fn register(fd: std::os::fd::RawFd) -> io::Result<AsyncFd<Borrowed>> {
    if ::tokio::runtime::Handle::try_current().is_err() {
        return Err(io::Error::other("not inside a tokio runtime"));
    }
    // SAFETY: the caller keeps `fd` open until the `AsyncFd` is dropped; `Borrowed`
    // always returns the same fd.
    let registered = unsafe { AsyncFd::register_with_interest(Borrowed(fd), Interest::READABLE) };
    registered.map_err(|e| e.into())
}

/// Drives a [`Connecting`] to its end on the socket's readiness.
///
/// The socket is registered only while waiting: `finish` consumes the handshake and
/// closes the socket on an error, which must never happen while tokio holds it. (An
/// `epoll_ctl` add reports an fd that is already readable, so re-registering loses
/// nothing.)
pub(crate) async fn finish_connect(mut connecting: Connecting) -> Result<Client, ConnectError> {
    loop {
        connecting = match connecting.finish()? {
            Finish::Connected(client) => return Ok(client),
            Finish::Pending(c) => c,
        };
        if connecting.backlog_full() {
            // No readiness announces room in the server's backlog: try again shortly.
            ::tokio::time::sleep(Duration::from_millis(1)).await;
            continue;
        }
        let os_error = |source| ConnectError::Os {
            name: connecting.name().clone(),
            step: crate::error::ConnectStep::Handshake,
            source,
        };
        // SAFETY: `connecting` owns the socket and is neither moved nor dropped until
        // `fd` is, at the end of this iteration.
        let fd = unsafe { register(connecting.as_raw_fd()) }.map_err(os_error)?;
        // Readiness is consumed by dropping the registration (the next one starts
        // from the socket's state).
        let ready = fd.readable().await.map_err(os_error)?;
        drop(ready);
        drop(fd);
    }
}
