//! Peer credentials of a Unix socket (`SO_PEERCRED`), taken by the kernel at connect
//! time: the basis of the security callback.

use std::io;
use std::os::fd::BorrowedFd;

use nix::sys::socket::{getsockopt, sockopt::PeerCredentials};

/// Process id, user id and group id of the peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PeerCred {
    /// Process id.
    pub pid: i32,
    /// User id.
    pub uid: u32,
    /// Group id.
    pub gid: u32,
}

/// Reads the credentials of the process at the other end of `sock`.
pub fn peer_cred(sock: BorrowedFd<'_>) -> io::Result<PeerCred> {
    let c = getsockopt(&sock, PeerCredentials).map_err(io::Error::from)?;
    Ok(PeerCred {
        pid: c.pid(),
        uid: c.uid(),
        gid: c.gid(),
    })
}
