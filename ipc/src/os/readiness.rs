//! Waiting for fds to become ready, with a deadline, `EINTR`-safe.
//!
//! [`wait_readable`] is how a client blocks: on its doorbell eventfd *and* its socket
//! at once, so that a peer that dies wakes it immediately through the socket's
//! hang-up, with no timed slices to notice it. [`Epoll`] is a small wrapper for event
//! loops (the server's built-in loop, the client's single pollable fd).
//!
//! A signal that interrupts a wait never surfaces: the wait restarts with the time
//! that remains until a deadline taken from the monotonic clock, so a stream of
//! signals can neither end the wait early with an error nor stretch it.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::ptr;
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::epoll::{Epoll as NixEpoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use nix::sys::time::TimeSpec;

use super::eintr::retry_eintr;
use crate::deadline::Deadline;

/// The longest a single system call waits; longer waits loop (the deadline decides).
const MAX_SLICE: Duration = Duration::from_secs(24 * 60 * 60);

/// Most events one [`Epoll::wait`] call returns.
const MAX_EVENTS: usize = 256;

/// How one fd given to [`wait_readable`] was found.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FdReadiness {
    /// Data (or, for an eventfd, a ring) is there to read (`POLLIN`).
    pub readable: bool,
    /// The peer hung up or the fd is in error (`POLLHUP`, `POLLRDHUP`, `POLLERR`,
    /// `POLLNVAL`). A socket can be readable and hung up at once: the peer wrote
    /// before it went away.
    pub hangup: bool,
}

/// Outcome of [`wait_readable`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Readiness {
    /// The timeout passed and no fd was ready.
    Timeout,
    /// At least one fd is readable or hung up; one entry per fd, in the order given.
    Ready(Vec<FdReadiness>),
}

impl Readiness {
    /// True for [`Readiness::Timeout`].
    #[cfg(any(test, feature = "raw-peer"))]
    pub fn is_timeout(&self) -> bool {
        matches!(self, Readiness::Timeout)
    }

    /// The state of the fd at `index` (nothing ready after a timeout, or for an index
    /// out of range).
    pub fn get(&self, index: usize) -> FdReadiness {
        match self {
            Readiness::Timeout => FdReadiness::default(),
            Readiness::Ready(v) => v.get(index).copied().unwrap_or_default(),
        }
    }

    /// Whether the fd at `index` is readable.
    pub fn readable(&self, index: usize) -> bool {
        self.get(index).readable
    }

    /// Whether the fd at `index` hung up or is in error.
    pub fn hangup(&self, index: usize) -> bool {
        self.get(index).hangup
    }
}

/// Waits until at least one of `fds` is readable or hung up, or until `timeout` has
/// passed (`None`: no timeout; `Some(Duration::ZERO)`: just look).
///
/// Uses `ppoll` (nanosecond timeout, no signal-mask change). `EINTR` restarts the wait
/// with the time remaining until the deadline, so signals never end it early.
/// `POLLHUP`, `POLLRDHUP` and `POLLERR` all count as a hang-up.
///
/// An empty `fds` with no timeout would sleep forever and is refused (`InvalidInput`);
/// with a timeout it just sleeps.
///
/// # Errors
///
/// `InvalidInput` for no fds and no timeout, or too many fds; the OS error of `ppoll`
/// (never `EINTR`).
pub fn wait_readable(fds: &[BorrowedFd<'_>], timeout: Option<Duration>) -> io::Result<Readiness> {
    if fds.is_empty() && timeout.is_none() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "waiting on no fds without a timeout would never return",
        ));
    }
    let deadline = Deadline::after(timeout);
    // Raw `pollfd`s rather than nix's `PollFd`: nix 0.29 neither names `POLLRDHUP`
    // nor reports `revents` that contain it.
    let mut pfds: Vec<libc::pollfd> = fds
        .iter()
        .map(|fd| libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN | libc::POLLRDHUP,
            revents: 0,
        })
        .collect();
    let nfds = libc::nfds_t::try_from(pfds.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "too many fds"))?;
    loop {
        let ts = deadline
            .remaining()
            .map(|r| TimeSpec::from_duration(r.min(MAX_SLICE)));
        let ts_ptr = ts
            .as_ref()
            .map_or(ptr::null(), |t| t.as_ref() as *const libc::timespec);
        // SAFETY: `pfds` holds `nfds` initialised `pollfd`s, each naming an fd that a
        // `BorrowedFd` keeps open for the whole call; `ts_ptr` is null or points to
        // `ts`, alive until the call returns; the null signal mask means "unchanged".
        let ret = unsafe { libc::ppoll(pfds.as_mut_ptr(), nfds, ts_ptr, ptr::null()) };
        match Errno::result(ret) {
            Ok(0) => {
                if deadline.passed() {
                    return Ok(Readiness::Timeout);
                }
                // A capped slice ended (or the kernel woke early): wait on.
            }
            Ok(_) => {
                let hangup = libc::POLLHUP | libc::POLLRDHUP | libc::POLLERR | libc::POLLNVAL;
                return Ok(Readiness::Ready(
                    pfds.iter()
                        .map(|p| FdReadiness {
                            readable: p.revents & libc::POLLIN != 0,
                            hangup: p.revents & hangup != 0,
                        })
                        .collect(),
                ));
            }
            Err(Errno::EINTR) => {
                if deadline.passed() {
                    return Ok(Readiness::Timeout);
                }
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// What an [`Epoll`] registration watches for. Hang-ups and errors are always
/// reported, even with neither flag set (that watches for hang-up only).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Interest {
    /// Readable (`EPOLLIN`).
    pub readable: bool,
    /// Writable (`EPOLLOUT`).
    pub writable: bool,
}

impl Interest {
    /// Readable only.
    pub const READABLE: Interest = Interest {
        readable: true,
        writable: false,
    };

    fn flags(self, edge_triggered: bool) -> EpollFlags {
        let mut f = EpollFlags::EPOLLRDHUP;
        if self.readable {
            f |= EpollFlags::EPOLLIN;
        }
        if self.writable {
            f |= EpollFlags::EPOLLOUT;
        }
        if edge_triggered {
            f |= EpollFlags::EPOLLET;
        }
        f
    }
}

/// One readiness event from [`Epoll::wait`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Event {
    /// The token the fd was registered with.
    pub token: u64,
    /// Readable (`EPOLLIN`).
    pub readable: bool,
    /// Writable (`EPOLLOUT`).
    pub writable: bool,
    /// Hung up or in error (`EPOLLHUP`, `EPOLLRDHUP`, `EPOLLERR`).
    pub hangup: bool,
}

impl Event {
    fn from_raw(ev: &EpollEvent) -> Event {
        let f = ev.events();
        Event {
            token: ev.data(),
            readable: f.contains(EpollFlags::EPOLLIN),
            writable: f.contains(EpollFlags::EPOLLOUT),
            hangup: f
                .intersects(EpollFlags::EPOLLHUP | EpollFlags::EPOLLRDHUP | EpollFlags::EPOLLERR),
        }
    }
}

/// An epoll instance (close-on-exec). Registrations are level-triggered unless added
/// with [`add_edge_triggered`](Epoll::add_edge_triggered).
///
/// The epoll fd itself becomes readable when an event is pending, so an `Epoll` can
/// be nested in another event loop ([`AsFd`]).
#[derive(Debug)]
pub struct Epoll {
    epoll: NixEpoll,
}

impl Epoll {
    /// A new, empty epoll instance.
    ///
    /// # Errors
    ///
    /// The OS error of `epoll_create1`.
    pub fn new() -> io::Result<Epoll> {
        let epoll = NixEpoll::new(EpollCreateFlags::EPOLL_CLOEXEC).map_err(io::Error::from)?;
        Ok(Epoll { epoll })
    }

    /// Watches `fd` (level-triggered) and reports it with `token`.
    ///
    /// # Errors
    ///
    /// The OS error of `epoll_ctl` (`AlreadyExists` if `fd` is registered).
    pub fn add(&self, fd: BorrowedFd<'_>, token: u64, interest: Interest) -> io::Result<()> {
        let ev = EpollEvent::new(interest.flags(false), token);
        retry_eintr(|| self.epoll.add(fd, ev))
    }

    /// Watches `fd` edge-triggered: each new readiness is reported once (for an
    /// eventfd, each write; for a socket, each arrival).
    ///
    /// # Errors
    ///
    /// As [`add`](Epoll::add).
    pub fn add_edge_triggered(
        &self,
        fd: BorrowedFd<'_>,
        token: u64,
        interest: Interest,
    ) -> io::Result<()> {
        let ev = EpollEvent::new(interest.flags(true), token);
        retry_eintr(|| self.epoll.add(fd, ev))
    }

    /// Stops watching `fd`. (Closing an fd also removes it, once no duplicate of it
    /// remains open.)
    ///
    /// # Errors
    ///
    /// The OS error of `epoll_ctl`.
    pub fn delete(&self, fd: BorrowedFd<'_>) -> io::Result<()> {
        retry_eintr(|| self.epoll.delete(fd))
    }

    /// Waits until at least one event is pending or `timeout` has passed (`None`: no
    /// timeout), then replaces the contents of `events` with the pending events (at
    /// most 256 per call) and returns how many there are (0 on timeout).
    ///
    /// `EINTR` restarts the wait with the time remaining until the deadline. The
    /// timeout has millisecond resolution, rounded up.
    ///
    /// # Errors
    ///
    /// The OS error of `epoll_wait` (never `EINTR`).
    pub fn wait(&self, events: &mut Vec<Event>, timeout: Option<Duration>) -> io::Result<usize> {
        events.clear();
        let deadline = Deadline::after(timeout);
        let mut buf = [EpollEvent::empty(); MAX_EVENTS];
        loop {
            let t = match deadline.remaining() {
                None => EpollTimeout::NONE,
                Some(r) => millis_ceil(r.min(MAX_SLICE)),
            };
            match self.epoll.wait(&mut buf, t) {
                Ok(0) => {
                    if deadline.passed() {
                        return Ok(0);
                    }
                }
                Ok(n) => {
                    events.extend(buf.iter().take(n).map(Event::from_raw));
                    return Ok(events.len());
                }
                Err(Errno::EINTR) => {
                    if deadline.passed() {
                        return Ok(0);
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
}

/// `d` in whole milliseconds, rounded up (so a wait never ends before `d`).
fn millis_ceil(d: Duration) -> EpollTimeout {
    EpollTimeout::try_from(d.as_nanos().div_ceil(1_000_000)).unwrap_or(EpollTimeout::MAX)
}

impl AsFd for Epoll {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.epoll.0.as_fd()
    }
}

impl AsRawFd for Epoll {
    fn as_raw_fd(&self) -> RawFd {
        self.epoll.0.as_raw_fd()
    }
}

#[cfg(test)]
#[path = "readiness_tests.rs"]
mod tests;
