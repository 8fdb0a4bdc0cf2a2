//! A blocking connect with a deadline, for peers built by hand (the `raw-peer`
//! feature: hostile-client tests, fuzz targets, benchmarks) and this crate's tests. The
//! client itself connects without blocking ([`super::try_connect`]), so the library
//! proper never needs this.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::socket::{connect as nix_connect, setsockopt, sockopt};
use nix::sys::time::{TimeVal, TimeValLike};

use super::eintr::retry_eintr;
use super::socket::{new_socket, SocketName};
use crate::deadline::Deadline;

/// The longest single `SO_SNDTIMEO` wait in [`connect`]; longer timeouts loop.
const MAX_SLICE: Duration = Duration::from_secs(24 * 60 * 60);

/// Connects to the server listening under `name`.
///
/// A Unix stream connect completes as soon as the server's backlog has room (before
/// the server accepts); it only waits while the backlog is full. `timeout` bounds that
/// wait (`TimedOut` when it passes; `None` waits as long as it takes). A name nobody
/// listens on fails at once (`ConnectionRefused` or `NotFound`). `EINTR` is retried
/// with the remaining time.
///
/// The returned stream is blocking and close-on-exec, with no read or write timeout
/// set.
///
/// # Errors
///
/// `InvalidInput` for a bad name; `TimedOut` when the server's backlog stays full past
/// `timeout`; the OS error of `connect` (`ConnectionRefused` or `NotFound` when no
/// server listens).
pub fn connect(name: &SocketName, timeout: Option<Duration>) -> io::Result<UnixStream> {
    let addr = name.addr()?;
    let sock = new_socket(false)?;
    let deadline = Deadline::after(timeout);
    let mut first = true;
    loop {
        if let Some(remaining) = deadline.remaining() {
            if remaining.is_zero() && !first {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("connecting to {name} timed out (server backlog full)"),
                ));
            }
            set_send_timeout(&sock, remaining.min(MAX_SLICE))?;
        }
        first = false;
        match nix_connect(sock.as_raw_fd(), &addr) {
            Ok(()) => break,
            // Interrupted before the connection was made (the socket is still
            // unconnected), or a timed wait ended: try again with the time left.
            Err(Errno::EINTR) => continue,
            Err(Errno::EAGAIN) if deadline != Deadline::NEVER => continue,
            Err(e) => return Err(e.into()),
        }
    }
    if deadline != Deadline::NEVER {
        // Zero means "no timeout": leave a plain blocking stream behind.
        retry_eintr(|| setsockopt(&sock, sockopt::SendTimeout, &TimeVal::zero()))?;
    }
    Ok(UnixStream::from(sock))
}

/// Sets `SO_SNDTIMEO`, which on a Unix stream socket also bounds `connect`'s wait for
/// room in the server's backlog. Rounded up to whole microseconds, and at least one
/// (zero would mean "forever").
fn set_send_timeout(sock: &OwnedFd, d: Duration) -> io::Result<()> {
    let micros = d.as_nanos().div_ceil(1000).max(1);
    let micros = i64::try_from(micros).unwrap_or(i64::MAX);
    let tv = TimeVal::microseconds(micros);
    retry_eintr(|| setsockopt(sock, sockopt::SendTimeout, &tv))
}
