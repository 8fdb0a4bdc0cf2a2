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

use super::retry_eintr;
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
    /// Writable only.
    pub const WRITABLE: Interest = Interest {
        readable: false,
        writable: true,
    };
    /// Readable and writable.
    pub const BOTH: Interest = Interest {
        readable: true,
        writable: true,
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
    /// eventfd, each write), so a doorbell needs no draining read.
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

    /// Changes what a registered `fd` is watched for, and its token (level-triggered).
    ///
    /// # Errors
    ///
    /// The OS error of `epoll_ctl` (`NotFound` if `fd` is not registered).
    pub fn modify(&self, fd: BorrowedFd<'_>, token: u64, interest: Interest) -> io::Result<()> {
        let mut ev = EpollEvent::new(interest.flags(false), token);
        retry_eintr(|| self.epoll.modify(fd, &mut ev))
    }

    /// Like [`modify`](Self::modify), edge-triggered.
    ///
    /// # Errors
    ///
    /// As [`modify`](Epoll::modify).
    pub fn modify_edge_triggered(
        &self,
        fd: BorrowedFd<'_>,
        token: u64,
        interest: Interest,
    ) -> io::Result<()> {
        let mut ev = EpollEvent::new(interest.flags(true), token);
        retry_eintr(|| self.epoll.modify(fd, &mut ev))
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
mod tests {
    use super::*;
    use crate::os::test_util::{pester_current_thread, signals_handled};
    use crate::os::Doorbell;
    use std::io::Write;
    use std::os::unix::net::UnixStream;
    use std::time::Instant;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn wakes_on_doorbell_rung_from_another_thread() {
        let bell = std::sync::Arc::new(Doorbell::new().expect("bell"));
        let (sock, _peer) = UnixStream::pair().expect("pair");
        let ringer = {
            let bell = bell.clone();
            std::thread::spawn(move || {
                std::thread::sleep(50 * MS);
                bell.ring().expect("ring");
            })
        };
        let start = Instant::now();
        let r = wait_readable(&[sock.as_fd(), bell.as_fd()], Some(Duration::from_secs(10)))
            .expect("wait");
        let took = start.elapsed();
        ringer.join().expect("ringer");
        assert_eq!(
            r,
            Readiness::Ready(vec![
                FdReadiness::default(),
                FdReadiness {
                    readable: true,
                    hangup: false
                }
            ])
        );
        assert!(took >= 40 * MS && took < Duration::from_secs(5), "{took:?}");
        assert!(bell.drain().expect("drain"));
    }

    #[test]
    fn already_rung_doorbell_returns_at_once() {
        let bell = Doorbell::new().expect("bell");
        bell.ring().expect("ring");
        let r = wait_readable(&[bell.as_fd()], None).expect("wait");
        assert!(r.readable(0) && !r.hangup(0));
        assert!(!r.is_timeout());
    }

    #[test]
    fn reports_hangup_when_peer_is_dropped() {
        let bell = Doorbell::new().expect("bell");
        let (sock, peer) = UnixStream::pair().expect("pair");
        let dropper = std::thread::spawn(move || {
            std::thread::sleep(50 * MS);
            drop(peer);
        });
        // No timeout: only the hang-up can end this wait.
        let r = wait_readable(&[bell.as_fd(), sock.as_fd()], None).expect("wait");
        dropper.join().expect("dropper");
        assert!(!r.readable(0) && !r.hangup(0), "{r:?}");
        assert!(r.hangup(1), "{r:?}");
    }

    #[test]
    fn hangup_with_unread_data_is_readable_and_hung_up() {
        let (sock, mut peer) = UnixStream::pair().expect("pair");
        peer.write_all(b"bye").expect("write");
        drop(peer);
        let r = wait_readable(&[sock.as_fd()], Some(Duration::ZERO)).expect("wait");
        assert_eq!(
            r.get(0),
            FdReadiness {
                readable: true,
                hangup: true
            }
        );
    }

    #[test]
    fn peer_shutting_down_writes_is_a_hangup() {
        let (sock, peer) = UnixStream::pair().expect("pair");
        peer.shutdown(std::net::Shutdown::Write).expect("shutdown");
        // The peer is alive and could still read: only POLLRDHUP reports this.
        let r = wait_readable(&[sock.as_fd()], Some(Duration::ZERO)).expect("wait");
        assert!(r.hangup(0), "{r:?}");
        assert!(r.readable(0), "end of stream is readable: {r:?}");
    }

    #[test]
    fn times_out() {
        let bell = Doorbell::new().expect("bell");
        let (sock, _peer) = UnixStream::pair().expect("pair");
        let start = Instant::now();
        let r = wait_readable(&[bell.as_fd(), sock.as_fd()], Some(120 * MS)).expect("wait");
        let took = start.elapsed();
        assert!(r.is_timeout(), "{r:?}");
        assert!(took >= 120 * MS, "returned early: {took:?}");
        assert!(took < 2000 * MS, "returned late: {took:?}");

        let start = Instant::now();
        let r = wait_readable(&[bell.as_fd()], Some(Duration::ZERO)).expect("poll");
        assert!(r.is_timeout());
        assert!(start.elapsed() < 500 * MS);
        assert_eq!(r.get(0), FdReadiness::default());
    }

    #[test]
    fn no_fds_needs_a_timeout() {
        let err = wait_readable(&[], None).expect_err("forever");
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        let start = Instant::now();
        assert!(wait_readable(&[], Some(20 * MS))
            .expect("sleep")
            .is_timeout());
        assert!(start.elapsed() >= 20 * MS);
    }

    #[test]
    fn signals_neither_fail_nor_shorten_nor_stretch_the_wait() {
        let bell = Doorbell::new().expect("bell");
        let before = signals_handled();
        // A signal every 40 ms (no SA_RESTART) for 800 ms, across a 300 ms wait: a
        // wait that restarted with its full timeout would last past 1000 ms.
        let pester = pester_current_thread(20, 40 * MS);
        let start = Instant::now();
        let r = wait_readable(&[bell.as_fd()], Some(300 * MS));
        let took = start.elapsed();
        let during = signals_handled() - before;
        drop(pester);
        let r = r.expect("EINTR must not surface");
        assert!(r.is_timeout(), "{r:?}");
        assert!(took >= 300 * MS, "returned early: {took:?}");
        assert!(took < 1000 * MS, "deadline not kept: {took:?}");
        // About 7 land in the wait; standard signals can coalesce under load.
        assert!(during >= 4, "only {during} signals hit the wait");
    }

    #[test]
    fn epoll_reports_tokens_readiness_and_hangup() {
        let ep = Epoll::new().expect("epoll");
        let bell = Doorbell::new().expect("bell");
        let (sock, peer) = UnixStream::pair().expect("pair");
        ep.add(bell.as_fd(), 7, Interest::READABLE)
            .expect("add bell");
        ep.add(sock.as_fd(), 9, Interest::READABLE)
            .expect("add sock");

        let mut events = Vec::new();
        assert_eq!(ep.wait(&mut events, Some(Duration::ZERO)).expect("wait"), 0);
        assert!(events.is_empty());

        bell.ring().expect("ring");
        assert_eq!(
            ep.wait(&mut events, Some(Duration::from_secs(5)))
                .expect("wait"),
            1
        );
        assert_eq!(
            events,
            vec![Event {
                token: 7,
                readable: true,
                writable: false,
                hangup: false
            }]
        );
        // Level-triggered: still there until drained.
        assert_eq!(ep.wait(&mut events, Some(Duration::ZERO)).expect("wait"), 1);
        assert!(bell.drain().expect("drain"));
        assert_eq!(ep.wait(&mut events, Some(Duration::ZERO)).expect("wait"), 0);

        drop(peer);
        assert_eq!(ep.wait(&mut events, None).expect("wait"), 1);
        assert_eq!(events[0].token, 9);
        assert!(events[0].hangup, "{events:?}");

        ep.delete(sock.as_fd()).expect("delete");
        assert_eq!(ep.wait(&mut events, Some(Duration::ZERO)).expect("wait"), 0);
        // Deleting twice is an error (ENOENT), not a panic.
        assert!(ep.delete(sock.as_fd()).is_err());
    }

    #[test]
    fn epoll_modify_and_writable() {
        let ep = Epoll::new().expect("epoll");
        let (sock, _peer) = UnixStream::pair().expect("pair");
        ep.add(sock.as_fd(), 1, Interest::default())
            .expect("add hangup-only");
        let mut events = Vec::new();
        assert_eq!(ep.wait(&mut events, Some(10 * MS)).expect("wait"), 0);
        ep.modify(sock.as_fd(), 2, Interest::BOTH).expect("modify");
        assert_eq!(ep.wait(&mut events, Some(Duration::ZERO)).expect("wait"), 1);
        assert_eq!(
            events[0],
            Event {
                token: 2,
                readable: false,
                writable: true,
                hangup: false
            }
        );
    }

    #[test]
    fn epoll_edge_triggered_doorbell_needs_no_drain() {
        let ep = Epoll::new().expect("epoll");
        let bell = Doorbell::new().expect("bell");
        ep.add_edge_triggered(bell.as_fd(), 3, Interest::READABLE)
            .expect("add");
        let mut events = Vec::new();
        bell.ring().expect("ring");
        assert_eq!(ep.wait(&mut events, Some(Duration::ZERO)).expect("wait"), 1);
        assert_eq!(ep.wait(&mut events, Some(Duration::ZERO)).expect("wait"), 0);
        bell.ring().expect("ring again");
        assert_eq!(ep.wait(&mut events, Some(Duration::ZERO)).expect("wait"), 1);
        assert_eq!(events[0].token, 3);
    }

    #[test]
    fn epoll_wait_times_out_despite_signals() {
        let ep = Epoll::new().expect("epoll");
        let bell = Doorbell::new().expect("bell");
        ep.add(bell.as_fd(), 1, Interest::READABLE).expect("add");
        let before = signals_handled();
        let pester = pester_current_thread(20, 40 * MS);
        let mut events = Vec::new();
        let start = Instant::now();
        let n = ep.wait(&mut events, Some(300 * MS));
        let took = start.elapsed();
        let during = signals_handled() - before;
        drop(pester);
        assert_eq!(n.expect("EINTR must not surface"), 0);
        assert!(took >= 300 * MS, "returned early: {took:?}");
        assert!(took < 1000 * MS, "deadline not kept: {took:?}");
        assert!(during >= 4, "only {during} signals hit the wait");
    }

    #[test]
    fn millis_round_up() {
        assert_eq!(millis_ceil(Duration::ZERO), EpollTimeout::ZERO);
        assert_eq!(
            millis_ceil(Duration::from_nanos(1)),
            EpollTimeout::from(1u8)
        );
        assert_eq!(
            millis_ceil(Duration::from_micros(1500)),
            EpollTimeout::from(2u8)
        );
        assert_eq!(
            millis_ceil(Duration::from_secs(u64::MAX)),
            EpollTimeout::MAX
        );
    }
}
