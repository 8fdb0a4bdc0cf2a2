//! A doorbell: an eventfd one side rings (only when the ring protocol says the other
//! side sleeps) and the other waits on with poll/epoll. An eventfd remembers a ring
//! that happens before the wait, which is what makes announce-then-sleep safe.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use nix::errno::Errno;
use nix::sys::eventfd::{EfdFlags, EventFd};

/// An eventfd used as a doorbell.
#[derive(Debug)]
pub struct Doorbell {
    fd: OwnedFd,
}

impl Doorbell {
    /// A new, unrung doorbell (non-blocking, close-on-exec).
    pub fn new() -> io::Result<Self> {
        let fd = EventFd::from_value_and_flags(0, EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK)
            .map_err(io::Error::from)?;
        Ok(Doorbell { fd: fd.into() })
    }

    /// Adopts an eventfd received from the peer.
    /// A descriptor that is not an eventfd makes `ring`/`drain` fail or misbehave
    /// harmlessly (a hostile server only hurts its own connection).
    pub fn from_fd(fd: OwnedFd) -> Self {
        Doorbell { fd }
    }

    /// Rings: adds 1 to the counter. A full counter (EAGAIN) already means "rung".
    pub fn ring(&self) -> io::Result<()> {
        loop {
            match nix::unistd::write(&self.fd, &1u64.to_ne_bytes()) {
                Ok(_) | Err(Errno::EAGAIN) => return Ok(()),
                Err(Errno::EINTR) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Resets the counter; true if it had been rung.
    pub fn drain(&self) -> io::Result<bool> {
        loop {
            let mut buf = [0u8; 8];
            match nix::unistd::read(self.fd.as_raw_fd(), &mut buf) {
                Ok(_) => return Ok(true),
                Err(Errno::EAGAIN) => return Ok(false),
                Err(Errno::EINTR) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }
}

impl AsFd for Doorbell {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}
