//! Where a server listens, and how a client reaches it: a Unix stream socket, named
//! either in the Linux abstract namespace (the default: no file to leak, to clean up
//! or to race on; it disappears with the listening socket) or by a filesystem path
//! with explicit permissions.
//!
//! The socket carries the handshake (its framing belongs to the caller) and then
//! stays open for the connection's lifetime as the liveness link: when either process
//! dies, the other sees a hang-up on it.
//!
//! Sockets are created with `SOCK_CLOEXEC` from the start (no window in which a
//! concurrent `exec` could inherit them). A path socket is bound, then `chmod`ed, and
//! only then listened on, so nobody can connect while it still has the umask's
//! permissions. The directory holding a path socket must be trusted: whoever can
//! write to it can replace the socket.

use std::fmt;
use std::fs;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::sys::socket::{
    bind, connect as nix_connect, listen as nix_listen, socket, AddressFamily, Backlog, SockFlag,
    SockType, UnixAddr,
};

use super::eintr::retry_eintr;

/// The name a server listens under.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum SocketName {
    /// A name in the Linux abstract socket namespace (1 to 107 bytes, any bytes).
    /// Nothing is created in the filesystem; the name is freed when the listening
    /// socket closes, even after a crash. Note that abstract sockets are scoped by
    /// network namespace, not by filesystem permissions: rely on the peer-credential
    /// check to decide who may connect.
    Abstract(String),
    /// A socket file at `path` (at most 107 bytes), given the permission bits `mode`
    /// (e.g. `0o660`) before any client can connect.
    Path {
        /// Where the socket file goes.
        path: PathBuf,
        /// Permission bits for the socket file.
        mode: u32,
    },
}

impl SocketName {
    /// An abstract name.
    pub fn abstract_name(name: impl Into<String>) -> SocketName {
        SocketName::Abstract(name.into())
    }

    /// A filesystem path with permission bits `mode`.
    pub fn path(path: impl Into<PathBuf>, mode: u32) -> SocketName {
        SocketName::Path {
            path: path.into(),
            mode,
        }
    }

    /// The socket address, after checking the name's length.
    pub(super) fn addr(&self) -> io::Result<UnixAddr> {
        match self {
            SocketName::Abstract(name) => {
                if name.is_empty() {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidInput,
                        "abstract socket name must not be empty",
                    ));
                }
                UnixAddr::new_abstract(name.as_bytes()).map_err(|e| name_error(e, self))
            }
            SocketName::Path { path, .. } => {
                UnixAddr::new(path.as_path()).map_err(|e| name_error(e, self))
            }
        }
    }
}

impl fmt::Display for SocketName {
    /// `@name` for an abstract name (as `ss` and `/proc/net/unix` show it), the path
    /// otherwise.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SocketName::Abstract(name) => write!(f, "@{name}"),
            SocketName::Path { path, .. } => write!(f, "{}", path.display()),
        }
    }
}

fn name_error(e: Errno, name: &SocketName) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("invalid socket name {name}: {e}"),
    )
}

/// Creates a Unix stream socket (close-on-exec, optionally non-blocking).
pub(super) fn new_socket(nonblocking: bool) -> io::Result<OwnedFd> {
    let mut flags = SockFlag::SOCK_CLOEXEC;
    if nonblocking {
        flags |= SockFlag::SOCK_NONBLOCK;
    }
    socket(AddressFamily::Unix, SockType::Stream, flags, None).map_err(io::Error::from)
}

/// Binds to `name` and listens, with room for `backlog` connections not yet accepted
/// (-1, and values above the system's `SOMAXCONN`, mean `SOMAXCONN`; other negative
/// values are `InvalidInput`).
///
/// The listener is non-blocking and close-on-exec. For a [`SocketName::Path`]: a
/// socket file already at the path is taken over if no server answers on it (a stale
/// leftover of a crash), while a live server gives `AddrInUse` and a file that is not
/// a socket gives `AlreadyExists`; both are left untouched. The new socket file gets
/// `mode` before the socket starts listening. The caller removes the file when done
/// (dropping the listener does not).
///
/// # Errors
///
/// `InvalidInput` for a bad name or backlog; the OS error of `socket`, `bind`, `chmod`
/// or `listen` (`AddrInUse` when a server already listens under the name).
pub fn listen(name: &SocketName, backlog: i32) -> io::Result<UnixListener> {
    let backlog = if backlog >= i32::from(Backlog::MAXCONN) {
        Backlog::MAXCONN
    } else {
        Backlog::new(backlog).map_err(|_| {
            io::Error::new(io::ErrorKind::InvalidInput, "listen backlog must be >= -1")
        })?
    };
    let addr = name.addr()?;
    let sock = new_socket(true)?;
    match name {
        SocketName::Abstract(_) => {
            retry_eintr(|| bind(sock.as_raw_fd(), &addr))?;
        }
        SocketName::Path { path, mode } => {
            remove_stale_socket(path, &addr)?;
            retry_eintr(|| bind(sock.as_raw_fd(), &addr))?;
            // From here on the file is ours: remove it again if we fail.
            let ready = fs::set_permissions(path, fs::Permissions::from_mode(*mode))
                .and_then(|()| retry_eintr(|| nix_listen(&sock, backlog)));
            if let Err(e) = ready {
                let _ = fs::remove_file(path);
                return Err(e);
            }
            return Ok(UnixListener::from(sock));
        }
    }
    retry_eintr(|| nix_listen(&sock, backlog))?;
    Ok(UnixListener::from(sock))
}

/// Makes room at `path` for a new socket: nothing there is fine; a socket nobody
/// listens on is removed; a live socket or any other kind of file is an error.
fn remove_stale_socket(path: &Path, addr: &UnixAddr) -> io::Result<()> {
    let meta = match fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    if !meta.file_type().is_socket() {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!("{} exists and is not a socket", path.display()),
        ));
    }
    // A non-blocking probe: a live server accepts it or has a full backlog (EAGAIN);
    // a stale socket file refuses (ECONNREFUSED).
    let probe = new_socket(true)?;
    match retry_eintr(|| nix_connect(probe.as_raw_fd(), addr)) {
        Ok(()) => Err(in_use(path)),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Err(in_use(path)),
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => match fs::remove_file(path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        },
        Err(e) => Err(e),
    }
}

fn in_use(path: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::AddrInUse,
        format!("a server is already listening on {}", path.display()),
    )
}

/// The next client queued on `listener` (itself non-blocking), as a non-blocking,
/// close-on-exec stream: `accept4` with both flags, one system call where `accept`
/// and `set_nonblocking` make two.
///
/// # Errors
///
/// The OS error of `accept4` (`WouldBlock` when no client waits).
pub(crate) fn accept_nonblocking(listener: &UnixListener) -> io::Result<UnixStream> {
    let fd = nix::sys::socket::accept4(
        listener.as_raw_fd(),
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
    )?;
    // SAFETY: `accept4` just returned this descriptor: it is open and nothing else
    // owns it.
    Ok(UnixStream::from(unsafe {
        <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd)
    }))
}

/// A new non-blocking, close-on-exec Unix stream socket, not connected yet (for
/// [`try_connect`]).
///
/// # Errors
///
/// The OS error of `socket` (`EMFILE` at the fd limit).
pub fn unconnected() -> io::Result<UnixStream> {
    new_socket(true).map(UnixStream::from)
}

/// One non-blocking attempt to connect `sock` (from [`unconnected`]) to `name`: true
/// when connected, false when the server's backlog is full (try again later on the
/// same socket: a Unix socket offers no readiness to wait for here).
///
/// # Errors
///
/// As [`connect`], never `TimedOut`.
pub fn try_connect(name: &SocketName, sock: &UnixStream) -> io::Result<bool> {
    let addr = name.addr()?;
    loop {
        match nix_connect(sock.as_raw_fd(), &addr) {
            Ok(()) => return Ok(true),
            Err(Errno::EINTR) => continue,
            Err(Errno::EAGAIN) => return Ok(false),
            Err(e) => return Err(e.into()),
        }
    }
}

#[cfg(test)]
#[path = "socket_tests.rs"]
mod tests;
