//! The library's own timer. The seed's API has no timer callback, so without one a
//! client that connects and never finishes its handshake would stay until some other
//! fd woke the daemon's loop. The server therefore hands the daemon one more fd, a
//! `timerfd` (through `poll_dispatch_add`, context [`TIMER_TOKEN`]), armed after
//! every entry point for the server's next deadline (handshake timeouts, accept
//! retries).

use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::time::{Duration, Instant};

use nix::sys::time::TimeSpec;
use nix::sys::timer::Expiration;
use nix::sys::timerfd::{ClockId, TimerFd, TimerFlags, TimerSetTimeFlags};

/// The timer's context in `poll_dispatch_add` (never a server token: those are
/// `id << 2 | kind` with small ids).
pub(crate) const TIMER_TOKEN: u64 = u64::MAX;

pub(crate) struct Timer {
    fd: TimerFd,
}

impl Timer {
    pub(crate) fn new() -> io::Result<Timer> {
        let flags = TimerFlags::TFD_NONBLOCK | TimerFlags::TFD_CLOEXEC;
        Ok(Timer {
            fd: TimerFd::new(ClockId::CLOCK_MONOTONIC, flags)?,
        })
    }

    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Consumes an expiration, if any (the fd is level-triggered for the daemon).
    pub(crate) fn drain(&self) {
        // Nonblocking: EAGAIN when it has not expired, which is fine.
        let _ = self.fd.wait();
    }

    /// Fires at `at` (at least a millisecond from now), or never.
    pub(crate) fn arm(&self, at: Option<Instant>) -> io::Result<()> {
        match at {
            None => self.fd.unset()?,
            Some(at) => {
                let after = at
                    .saturating_duration_since(Instant::now())
                    .max(Duration::from_millis(1));
                let when = Expiration::OneShot(TimeSpec::from(after));
                self.fd.set(when, TimerSetTimeFlags::empty())?;
            }
        }
        Ok(())
    }
}
