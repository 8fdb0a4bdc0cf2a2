//! Credentials of the process at the other end of a Unix socket (`SO_PEERCRED`).
//!
//! The kernel records them when the connection is made (for a socketpair: when the
//! pair is created), so the peer cannot forge them; this is what the server hands to
//! the security callback, before it allocates anything for the connection.

use std::io;
use std::os::fd::BorrowedFd;

use nix::sys::socket::{getsockopt, sockopt::PeerCredentials};

use super::eintr::retry_eintr;

/// Process id, effective user id and effective group id of a socket's peer, as they
/// were when it connected.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PeerCred {
    /// Process id (in the caller's pid namespace; 0 if the peer is in a pid
    /// namespace the caller cannot see into).
    pub pid: i32,
    /// Effective user id.
    pub uid: u32,
    /// Effective group id.
    pub gid: u32,
}

/// Reads the credentials of the peer of the connected Unix socket `sock`.
///
/// # Errors
///
/// The OS error of `getsockopt(SO_PEERCRED)` (for instance, `fd` is not a Unix socket).
pub fn peer_cred(sock: BorrowedFd<'_>) -> io::Result<PeerCred> {
    let c = retry_eintr(|| getsockopt(&sock, PeerCredentials))?;
    Ok(PeerCred {
        pid: c.pid(),
        uid: c.uid(),
        gid: c.gid(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;
    use std::os::unix::net::UnixStream;

    #[test]
    fn socketpair_peer_is_ourselves() {
        let (a, b) = UnixStream::pair().expect("pair");
        let expected = PeerCred {
            pid: std::process::id() as i32,
            uid: nix::unistd::geteuid().as_raw(),
            gid: nix::unistd::getegid().as_raw(),
        };
        assert_eq!(peer_cred(a.as_fd()).expect("cred a"), expected);
        assert_eq!(peer_cred(b.as_fd()).expect("cred b"), expected);
    }

    #[test]
    fn connected_socket_peer_is_ourselves() {
        let name =
            crate::os::SocketName::Abstract(format!("coroipc-test-cred-{}", std::process::id()));
        let listener = crate::os::listen(&name, 4).expect("listen");
        let client = crate::os::connect(&name, None).expect("connect");
        let (server_side, _) = loop {
            match listener.accept() {
                Ok(s) => break s,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => std::thread::yield_now(),
                Err(e) => panic!("accept: {e}"),
            }
        };
        let me = peer_cred(client.as_fd()).expect("client side");
        assert_eq!(me.pid, std::process::id() as i32);
        assert_eq!(peer_cred(server_side.as_fd()).expect("server side"), me);
    }

    #[test]
    fn not_a_socket_is_an_error() {
        let efd = nix::sys::eventfd::EventFd::new().expect("eventfd");
        let err = peer_cred(efd.as_fd()).expect_err("not a socket");
        assert_eq!(err.raw_os_error(), Some(libc::ENOTSOCK));
    }
}
