//! The library's own timer. The seed's API has no timer callback, so without one a
//! client that connects and never finishes its handshake would stay until some other
//! fd woke the daemon's loop. The server therefore hands the daemon one more fd, a
//! `timerfd` (through `poll_dispatch_add`, context [`TIMER_TOKEN`]), armed after
//! every entry point for the server's next deadline (handshake timeouts, accept
//! retries).

use std::io;
use std::os::fd::{AsFd, AsRawFd};
use std::time::{Duration, Instant};

use nix::sys::time::TimeSpec;

use super::callbacks::Callbacks;
use nix::sys::timer::Expiration;
use nix::sys::timerfd::{ClockId, TimerFd, TimerFlags, TimerSetTimeFlags};

/// The timer's token, and its context in `poll_dispatch_add`: the first of the
/// range the server never uses for its own fds.
pub(crate) const TIMER_TOKEN: ipc::Token = ipc::Token::foreign(0);

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

    /// Watched by the daemon's loop (context [`TIMER_TOKEN`]).
    pub(crate) fn watch(&self, callbacks: &Callbacks) -> io::Result<()> {
        if callbacks.poll_add(self.fd.as_fd().as_raw_fd(), Some(TIMER_TOKEN.0)) {
            Ok(())
        } else {
            Err(io::Error::other(
                "the daemon's poll_dispatch_add callback is missing",
            ))
        }
    }

    /// No longer watched (before it closes).
    pub(crate) fn unwatch(&self, callbacks: &Callbacks) {
        callbacks.poll_destroy(self.fd.as_fd().as_raw_fd(), Some(TIMER_TOKEN.0));
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
