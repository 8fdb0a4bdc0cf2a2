//! A doorbell within one process: an eventfd that one thread rings and another waits
//! on (the server's stop and work doorbells). Never passed to a peer: a passed
//! eventfd shares its `O_NONBLOCK` flag with the peer, which could then make `ring`
//! and `drain` block; a connection's doorbells are a [`PeerBell`](super::PeerBell).
//!
//! The ring protocol decides *when* to ring (only when the other side announced that
//! it is going to sleep); this is only the kernel object. An eventfd remembers a ring
//! that happens before the wait starts, which is what makes "announce, re-check,
//! sleep" free of lost wake-ups. It is created non-blocking, so neither [`ring`]
//! nor [`drain`] can ever block, and it can be watched with `poll`/`epoll`
//! ([`wait_readable`](super::wait_readable), [`Epoll`](super::Epoll)).
//!
//! [`ring`]: Doorbell::ring
//! [`drain`]: Doorbell::drain

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use nix::errno::Errno;
use nix::sys::eventfd::{EfdFlags, EventFd};

use super::eintr::retry_eintr;

/// An eventfd used as a doorbell (close-on-exec, non-blocking).
#[derive(Debug)]
pub struct Doorbell {
    fd: OwnedFd,
}

impl Doorbell {
    /// A new doorbell that has not been rung.
    ///
    /// # Errors
    ///
    /// The OS error of `eventfd` (out of descriptors or memory).
    pub fn new() -> io::Result<Doorbell> {
        let fd = EventFd::from_value_and_flags(0, EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK)
            .map_err(io::Error::from)?;
        Ok(Doorbell { fd: fd.into() })
    }

    /// Rings: adds 1 to the eventfd counter, making the fd readable.
    ///
    /// A counter that is full (`EAGAIN`, after 2^64 - 2 unanswered rings) is already
    /// rung, so that is success too. `EINTR` is retried.
    ///
    /// # Errors
    ///
    /// The OS error of `write(2)` (never `EAGAIN`: a full counter already means
    /// "rung").
    pub fn ring(&self) -> io::Result<()> {
        match retry_eintr(|| nix::unistd::write(&self.fd, &1u64.to_ne_bytes())) {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Resets the counter without blocking; true if the doorbell had been rung since
    /// the last drain.
    ///
    /// # Errors
    ///
    /// The OS error of `read(2)`, other than `EAGAIN` (nothing to drain).
    pub fn drain(&self) -> io::Result<bool> {
        let mut buf = [0u8; 8];
        loop {
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

#[cfg(test)]
mod tests {
    use super::*;
    use nix::fcntl::{fcntl, FcntlArg, OFlag};

    #[test]
    fn ring_then_drain() {
        let bell = Doorbell::new().expect("new");
        assert!(!bell.drain().expect("drain"), "fresh doorbell is silent");
        bell.ring().expect("ring");
        bell.ring().expect("ring twice");
        assert!(bell.drain().expect("drain"), "rung");
        assert!(!bell.drain().expect("drain"), "one drain resets every ring");
    }

    #[test]
    fn flags_are_cloexec_and_nonblocking() {
        let bell = Doorbell::new().expect("new");
        let fd = bell.as_fd().as_raw_fd();
        let fl = OFlag::from_bits_truncate(fcntl(fd, FcntlArg::F_GETFL).expect("getfl"));
        assert!(fl.contains(OFlag::O_NONBLOCK));
        let fdfl = fcntl(fd, FcntlArg::F_GETFD).expect("getfd");
        assert_ne!(fdfl & libc::FD_CLOEXEC, 0);
    }

    #[test]
    fn full_counter_counts_as_rung() {
        let bell = Doorbell::new().expect("new");
        // Fill the counter to its maximum, 2^64 - 2.
        nix::unistd::write(&bell.fd, &(u64::MAX - 1).to_ne_bytes()).expect("fill");
        bell.ring().expect("ring on a full counter is fine");
        assert!(bell.drain().expect("drain"));
    }
}
