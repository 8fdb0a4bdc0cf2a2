//! Running out of file descriptors: a reserve descriptor, and the process's limit.
//!
//! Threat answered: a server at its descriptor limit must neither spin nor go silent.
//! `accept` failing with `EMFILE` leaves the connection queued and the listener
//! readable, so a level-triggered loop would wake again at once, forever (a 100 % CPU
//! loop, and the client times out instead of hearing why). [`FdReserve`] keeps one
//! descriptor (of `/dev/null`) in hand: out of descriptors, the server closes it,
//! accepts the waiting client, tells it "out of descriptors", closes it and takes the
//! reserve back (the technique of libev, nginx and others). [`is_exhaustion`] names
//! the errors that mean "no descriptor or no memory for one".
//!
//! [`raise_nofile`] answers the quieter failure: a `max_connections` that the
//! process's `RLIMIT_NOFILE` cannot carry. Like most servers, it raises the soft limit
//! up to the hard one when that is needed, and says so; the caller logs what remains
//! short.

use std::fs::File;
use std::io;
use std::os::fd::OwnedFd;

use nix::errno::Errno;
use nix::sys::resource::{getrlimit, setrlimit, Resource};

/// One descriptor held in reserve.
#[derive(Debug)]
pub struct FdReserve {
    /// `None` while released (or when it could not be opened).
    fd: Option<OwnedFd>,
}

impl FdReserve {
    /// Opens the reserve (`/dev/null`, close-on-exec). At the limit already, the
    /// reserve is empty and [`restore`](Self::restore) tries again later.
    pub fn new() -> FdReserve {
        let mut r = FdReserve { fd: None };
        r.restore();
        r
    }

    /// Whether a descriptor is held.
    pub fn is_held(&self) -> bool {
        self.fd.is_some()
    }

    /// Closes the reserve, freeing one descriptor for the caller's next call.
    pub fn release(&mut self) {
        self.fd = None;
    }

    /// Takes a descriptor back into reserve; false if none is available.
    pub fn restore(&mut self) -> bool {
        if self.fd.is_none() {
            self.fd = File::open("/dev/null").ok().map(OwnedFd::from);
        }
        self.fd.is_some()
    }
}

impl Default for FdReserve {
    fn default() -> Self {
        FdReserve::new()
    }
}

/// Whether `e` means the process or the system is out of descriptors (`EMFILE`,
/// `ENFILE`).
pub fn is_fd_exhaustion(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error().map(Errno::from_raw),
        Some(Errno::EMFILE | Errno::ENFILE)
    )
}

/// Whether `e` means out of descriptors or of kernel memory for one (`EMFILE`,
/// `ENFILE`, `ENOBUFS`, `ENOMEM`): retrying at once cannot succeed.
pub fn is_exhaustion(e: &io::Error) -> bool {
    is_fd_exhaustion(e)
        || matches!(
            e.raw_os_error().map(Errno::from_raw),
            Some(Errno::ENOBUFS | Errno::ENOMEM)
        )
}

/// The descriptor limit after trying to make room for `wanted` descriptors: the soft
/// `RLIMIT_NOFILE` is raised towards `wanted`, never above the hard limit and never
/// lowered. Returns `(before, after)`.
///
/// # Errors
///
/// The OS error of `getrlimit` or `setrlimit`.
pub fn raise_nofile(wanted: u64) -> io::Result<(u64, u64)> {
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).map_err(io::Error::from)?;
    if soft >= wanted {
        return Ok((soft, soft));
    }
    let target = wanted.min(hard);
    if target <= soft {
        return Ok((soft, soft));
    }
    setrlimit(Resource::RLIMIT_NOFILE, target, hard).map_err(io::Error::from)?;
    Ok((soft, target))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserve_releases_and_restores() {
        let mut r = FdReserve::new();
        assert!(r.is_held());
        r.release();
        assert!(!r.is_held());
        assert!(r.restore());
        assert!(r.is_held());
    }

    #[test]
    fn exhaustion_errors_are_named() {
        assert!(is_fd_exhaustion(&io::Error::from_raw_os_error(
            libc::EMFILE
        )));
        assert!(is_fd_exhaustion(&io::Error::from_raw_os_error(
            libc::ENFILE
        )));
        assert!(!is_fd_exhaustion(&io::Error::from_raw_os_error(
            libc::ENOMEM
        )));
        assert!(is_exhaustion(&io::Error::from_raw_os_error(libc::ENOMEM)));
        assert!(!is_exhaustion(&io::Error::from_raw_os_error(libc::EAGAIN)));
    }

    #[test]
    fn raising_never_lowers() {
        let (soft, _) = getrlimit(Resource::RLIMIT_NOFILE).expect("getrlimit");
        assert_eq!(raise_nofile(1).expect("raise"), (soft, soft));
        let (before, after) = raise_nofile(soft + 1).expect("raise");
        assert_eq!(before, soft);
        assert!(after >= soft);
    }
}
