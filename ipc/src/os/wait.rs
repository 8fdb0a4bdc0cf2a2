//! Waiting on several fds at once with a deadline, `EINTR`-safe: a client blocks on
//! "doorbell or socket hang-up", so a dead peer wakes it at once (no timed slices).
//! Also a small epoll wrapper for the server's built-in loop and the client's pollable
//! fd.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::epoll::{Epoll as NixEpoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};

/// Outcome of [`wait_readable`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Readiness {
    /// The deadline passed.
    Timeout,
    /// Per fd, in order: `(readable, hung_up)`.
    Ready(Vec<(bool, bool)>),
}

fn poll_timeout(remaining: Option<Duration>) -> PollTimeout {
    match remaining {
        None => PollTimeout::NONE,
        // Round up so a sub-millisecond remainder does not spin.
        Some(d) => {
            let ms = d.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32;
            PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX)
        }
    }
}

/// Waits until one of `fds` is readable or hung up, or `timeout` passes. `EINTR`
/// restarts the wait with the remaining time.
pub fn wait_readable(fds: &[BorrowedFd<'_>], timeout: Option<Duration>) -> io::Result<Readiness> {
    let deadline = timeout.map(|t| Instant::now() + t);
    loop {
        let mut pfds: Vec<PollFd<'_>> = fds
            .iter()
            .map(|fd| PollFd::new(*fd, PollFlags::POLLIN))
            .collect();
        let remaining = deadline.map(|d| d.saturating_duration_since(Instant::now()));
        match poll(&mut pfds, poll_timeout(remaining)) {
            Ok(0) => {
                if deadline.is_none_or(|d| Instant::now() >= d) {
                    return Ok(Readiness::Timeout);
                }
            }
            Ok(_) => {
                let hup = PollFlags::POLLHUP | PollFlags::POLLERR | PollFlags::POLLNVAL;
                return Ok(Readiness::Ready(
                    pfds.iter()
                        .map(|p| {
                            let r = p.revents().unwrap_or(PollFlags::empty());
                            (r.contains(PollFlags::POLLIN), r.intersects(hup))
                        })
                        .collect(),
                ));
            }
            Err(Errno::EINTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
}

/// What to watch an fd for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Interest {
    /// Readable.
    pub readable: bool,
    /// Writable.
    pub writable: bool,
}

impl Interest {
    /// Readability only.
    pub const READABLE: Interest = Interest {
        readable: true,
        writable: false,
    };
}

/// One readiness event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Event {
    /// The token given to [`Epoll::add`].
    pub token: u64,
    /// Readable.
    pub readable: bool,
    /// Writable.
    pub writable: bool,
    /// Hung up or in error.
    pub hangup: bool,
}

/// An epoll instance (level-triggered).
#[derive(Debug)]
pub struct Epoll {
    epoll: NixEpoll,
}

impl Epoll {
    /// A new epoll instance (close-on-exec).
    pub fn new() -> io::Result<Self> {
        Ok(Epoll {
            epoll: NixEpoll::new(EpollCreateFlags::EPOLL_CLOEXEC).map_err(io::Error::from)?,
        })
    }

    fn flags(interest: Interest) -> EpollFlags {
        let mut f = EpollFlags::EPOLLRDHUP;
        if interest.readable {
            f |= EpollFlags::EPOLLIN;
        }
        if interest.writable {
            f |= EpollFlags::EPOLLOUT;
        }
        f
    }

    /// Watches `fd`, reporting `token`.
    pub fn add(&self, fd: BorrowedFd<'_>, token: u64, interest: Interest) -> io::Result<()> {
        self.epoll
            .add(fd, EpollEvent::new(Self::flags(interest), token))
            .map_err(io::Error::from)
    }

    /// Watches `fd` for readability, edge-triggered: each new readiness (for an
    /// eventfd: each write) is reported once, so a doorbell needs no draining `read`.
    pub fn add_edge_triggered(&self, fd: BorrowedFd<'_>, token: u64) -> io::Result<()> {
        let flags = EpollFlags::EPOLLIN | EpollFlags::EPOLLET;
        self.epoll
            .add(fd, EpollEvent::new(flags, token))
            .map_err(io::Error::from)
    }

    /// Changes what `fd` is watched for.
    pub fn modify(&self, fd: BorrowedFd<'_>, token: u64, interest: Interest) -> io::Result<()> {
        let mut ev = EpollEvent::new(Self::flags(interest), token);
        self.epoll.modify(fd, &mut ev).map_err(io::Error::from)
    }

    /// Stops watching `fd`.
    pub fn delete(&self, fd: BorrowedFd<'_>) -> io::Result<()> {
        self.epoll.delete(fd).map_err(io::Error::from)
    }

    /// Waits for events (appended to `events`, which is cleared first); `EINTR`
    /// restarts with the remaining time.
    pub fn wait(&self, events: &mut Vec<Event>, timeout: Option<Duration>) -> io::Result<usize> {
        events.clear();
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut buf = [EpollEvent::empty(); 64];
        loop {
            let remaining = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            let t = match remaining {
                None => EpollTimeout::NONE,
                Some(d) => {
                    let ms = d.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32;
                    EpollTimeout::try_from(ms).unwrap_or(EpollTimeout::MAX)
                }
            };
            match self.epoll.wait(&mut buf, t) {
                Ok(n) => {
                    for ev in &buf[..n] {
                        let f = ev.events();
                        events.push(Event {
                            token: ev.data(),
                            readable: f.contains(EpollFlags::EPOLLIN),
                            writable: f.contains(EpollFlags::EPOLLOUT),
                            hangup: f.intersects(
                                EpollFlags::EPOLLHUP
                                    | EpollFlags::EPOLLERR
                                    | EpollFlags::EPOLLRDHUP,
                            ),
                        });
                    }
                    return Ok(n);
                }
                Err(Errno::EINTR) => {
                    if deadline.is_some_and(|d| Instant::now() >= d) {
                        return Ok(0);
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
}

impl AsFd for Epoll {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.epoll.0.as_fd()
    }
}

impl AsRawFd for Epoll {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.epoll.0.as_raw_fd()
    }
}
