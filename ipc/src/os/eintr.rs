//! Restarting a system call interrupted by a signal: the one place `EINTR` is retried
//! (every blocking call of `os` without a deadline goes through it).

use std::io;

use nix::errno::Errno;

/// Runs `f` until it returns something other than `EINTR`, converting the error.
///
/// Only for calls without a deadline: a timed wait must recompute its remaining
/// time before it restarts.
pub(super) fn retry_eintr<T>(mut f: impl FnMut() -> nix::Result<T>) -> io::Result<T> {
    loop {
        match f() {
            Err(Errno::EINTR) => continue,
            other => return other.map_err(io::Error::from),
        }
    }
}
