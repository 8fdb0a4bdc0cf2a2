//! The doorbells of one connection, shared by the server and its client: one Unix
//! stream socketpair, each ring a byte sent into it.
//!
//! Threat answered: a descriptor passed over `SCM_RIGHTS` shares its *open file
//! description* with the sender, and `O_NONBLOCK` lives there. An eventfd doorbell
//! was made blocking for both processes by one `fcntl(F_SETFL, 0)` from the client;
//! with its counter filled to the maximum, the server's next ring (a `write(2)`)
//! slept for good, and with it every connection of the server. Here no system call
//! depends on that flag: every `send` and `recv` carries `MSG_DONTWAIT` (and
//! `MSG_NOSIGNAL`), which the peer cannot take away, so neither side's ring or drain
//! can block whatever the other does to the sockets.
//!
//! The pair's two ends are `server_end` and `client_end`; both sides hold both (the
//! server sends both to the client in the handshake, in that order). A byte sent into
//! one end arrives at the other, so each side reads its own end (`mine`) and:
//! * rings the peer by sending into `mine` (it arrives at the peer's end);
//! * rings itself by sending into `theirs` (a server thread waking the server thread;
//!   the client reports to its notification fd through an eventfd of its own).
//!
//! What a hostile peer can still do is confined to its own connection: read the rings
//! meant for the other side (it only misses its own wake-ups), fill the buffer (a
//! full buffer already holds an unread ring, so `EAGAIN` counts as rung; a peer that
//! keeps it full itself only loses its own wake-ups), or shut an end down (a drain
//! then sees end-of-file, which [`PeerBell::drain`] reports as an error, and the
//! connection is closed; a shutdown right after a ring may go unseen by an
//! edge-triggered watcher, which stalls only that connection). Readiness works as with an eventfd:
//! readable while an unread ring is buffered; an edge for every ring. A drain reads
//! what one `recv` returns (up to [`DRAIN_BYTES`] rings): a peer sending without
//! pause cannot keep the drainer in a loop, and what is left keeps the fd readable.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use nix::errno::Errno;
use nix::sys::socket::{
    getsockname, getsockopt, recv, send, socketpair, sockopt, AddressFamily, MsgFlags, SockFlag,
    SockType, SockaddrLike, SockaddrStorage,
};

/// Rings one drain takes at most.
pub const DRAIN_BYTES: usize = 256;

/// One side's handle on a connection's doorbells.
#[derive(Debug)]
pub struct PeerBell {
    /// Where this side's rings arrive: watched, drained; rings sent into it reach the
    /// peer.
    mine: OwnedFd,
    /// Where the peer's rings arrive; rings sent into it reach this side.
    theirs: OwnedFd,
}

impl PeerBell {
    /// A new pair, held as the server holds it (close-on-exec; non-blocking too,
    /// though nothing relies on that).
    ///
    /// # Errors
    ///
    /// The OS error of `socketpair` (out of descriptors or memory).
    pub fn new() -> io::Result<PeerBell> {
        let (server_end, client_end) = socketpair(
            AddressFamily::Unix,
            SockType::Stream,
            None,
            SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
        )
        .map_err(io::Error::from)?;
        Ok(PeerBell {
            mine: server_end,
            theirs: client_end,
        })
    }

    /// The two ends as the handshake sends them to the client: the server's end,
    /// then the client's (the server keeps both).
    pub fn ends(&self) -> [BorrowedFd<'_>; 2] {
        [self.mine.as_fd(), self.theirs.as_fd()]
    }

    /// Adopts the two ends the server sent: `mine` is the client end.
    ///
    /// Both must be Unix-domain stream sockets (else `InvalidInput`): a TCP socket with
    /// a long `SO_LINGER` whose peer never reads would make the client's close wait
    /// for it. Whether they are the two ends of one pair is not checked: if not, rings
    /// go nowhere useful, which only harms the connection they came with.
    ///
    /// # Errors
    ///
    /// `InvalidInput` for something other than a Unix stream socket; the OS error of
    /// `getsockopt` or `getsockname` otherwise.
    pub fn adopt(mine: OwnedFd, theirs: OwnedFd) -> io::Result<PeerBell> {
        let refused = || {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "doorbell fd is not a Unix stream socket",
            )
        };
        for fd in [&mine, &theirs] {
            match getsockopt(fd, sockopt::SockType) {
                Ok(SockType::Stream) => {}
                Ok(_) | Err(Errno::ENOTSOCK) => return Err(refused()),
                Err(e) => return Err(e.into()),
            }
            let addr: SockaddrStorage = getsockname(fd.as_raw_fd())?;
            if addr.family() != Some(AddressFamily::Unix) {
                return Err(refused());
            }
        }
        Ok(PeerBell { mine, theirs })
    }

    /// Rings the peer.
    ///
    /// # Errors
    ///
    /// As [`ring_self`](Self::ring_self).
    pub fn ring_peer(&self) -> io::Result<()> {
        ring(&self.mine)
    }

    /// Rings this side (makes [`as_fd`](AsFd::as_fd) readable).
    ///
    /// # Errors
    ///
    /// The OS error of `send`: `EPIPE` once the peer shut the pair down. A full buffer
    /// (`EAGAIN`) already holds an unread ring, so that is success.
    pub fn ring_self(&self) -> io::Result<()> {
        ring(&self.theirs)
    }

    /// Takes the rings that arrived (up to [`DRAIN_BYTES`]) without blocking; true if
    /// there were any.
    ///
    /// # Errors
    ///
    /// `UnexpectedEof` once the peer shut its end down (the fd stays readable: the
    /// connection must end); the OS error of `recv` otherwise.
    pub fn drain(&self) -> io::Result<bool> {
        let mut buf = [0u8; DRAIN_BYTES];
        loop {
            let flags = MsgFlags::MSG_DONTWAIT;
            match recv(self.mine.as_raw_fd(), &mut buf, flags) {
                Ok(0) => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the doorbell was shut down",
                    ))
                }
                Ok(_) => return Ok(true),
                Err(Errno::EAGAIN) => return Ok(false),
                Err(Errno::EINTR) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }
}

/// Whether a doorbell operation's error means the peer shut the pair down or went
/// away (end of file on a drain, `EPIPE`, `ECONNRESET` or `ENOTCONN` on a ring): the
/// connection is over, not a passing failure to retry.
pub(crate) fn means_hang_up(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::UnexpectedEof
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::NotConnected
    )
}

/// Sends one ring into `fd`.
fn ring(fd: &OwnedFd) -> io::Result<()> {
    loop {
        let flags = MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_NOSIGNAL;
        match send(fd.as_raw_fd(), &[1u8], flags) {
            Ok(_) | Err(Errno::EAGAIN) => return Ok(()),
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

impl AsFd for PeerBell {
    /// The fd to watch: readable while a ring for this side is unread.
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.mine.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::fcntl::{fcntl, FcntlArg, OFlag};

    fn pair() -> (PeerBell, PeerBell) {
        let server = PeerBell::new().expect("pair");
        let [server_end, client_end] = server.ends().map(|fd| fd.try_clone_to_owned().unwrap());
        let client = PeerBell::adopt(client_end, server_end).expect("adopt");
        (server, client)
    }

    #[test]
    fn each_side_hears_the_other_and_itself() {
        let (server, client) = pair();
        assert!(
            !server.drain().unwrap() && !client.drain().unwrap(),
            "silent"
        );
        server.ring_peer().unwrap();
        assert!(!server.drain().unwrap(), "not for the server");
        assert!(client.drain().unwrap(), "the client hears the server");
        client.ring_peer().unwrap();
        client.ring_peer().unwrap();
        assert!(server.drain().unwrap(), "the server hears the client");
        assert!(!server.drain().unwrap(), "one drain takes both rings");
        server.ring_self().unwrap();
        assert!(server.drain().unwrap() && !client.drain().unwrap());
        client.ring_self().unwrap();
        assert!(client.drain().unwrap() && !server.drain().unwrap());
    }

    /// The attack on the eventfd doorbell: the peer clears `O_NONBLOCK` on the shared
    /// descriptions and fills the buffers. Nothing blocks; a full buffer is "rung".
    #[test]
    fn a_peer_making_the_fds_blocking_and_full_blocks_nothing() {
        let (server, client) = pair();
        for fd in [&client.mine, &client.theirs] {
            fcntl(fd.as_raw_fd(), FcntlArg::F_SETFL(OFlag::empty())).unwrap();
        }
        let mut sent = 0;
        for fd in [&client.mine, &client.theirs] {
            while send(fd.as_raw_fd(), &[0u8; 4096], MsgFlags::MSG_DONTWAIT).is_ok() {
                sent += 1;
                assert!(sent < 100_000, "never full");
            }
        }
        server.ring_peer().unwrap();
        server.ring_self().unwrap();
        assert!(server.drain().unwrap());
        // The client drained nothing: emptying the server's side must not block either.
        while server.drain().unwrap() {}
        assert!(!server.drain().unwrap());
    }

    #[test]
    fn a_shut_down_pair_is_an_error_not_a_busy_fd() {
        let (server, client) = pair();
        nix::sys::socket::shutdown(client.theirs.as_raw_fd(), nix::sys::socket::Shutdown::Both)
            .unwrap();
        let e = server.drain().unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
        assert!(server.ring_self().is_err(), "EPIPE, no SIGPIPE");
    }

    #[test]
    fn adopt_refuses_what_is_not_a_stream_socket() {
        let efd = nix::sys::eventfd::EventFd::new().unwrap();
        let p = PeerBell::new().unwrap();
        let e = PeerBell::adopt(efd.into(), p.theirs).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
    }

    #[test]
    fn adopt_refuses_a_tcp_stream() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let tcp = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let p = PeerBell::new().unwrap();
        let e = PeerBell::adopt(OwnedFd::from(tcp), p.theirs).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
        let p = PeerBell::new().unwrap();
        assert!(
            PeerBell::adopt(p.theirs, p.mine).is_ok(),
            "a Unix pair is adopted"
        );
    }
}
