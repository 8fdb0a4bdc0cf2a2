//! Where a server listens: a Linux abstract socket name (default: nothing in the
//! filesystem) or a filesystem path with a mode.

use std::io;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::{SocketAddr, UnixListener, UnixStream};
use std::path::PathBuf;
use std::time::Duration;

/// A server's socket name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SocketName {
    /// A name in the Linux abstract namespace (no file; gone with the server).
    Abstract(String),
    /// A filesystem path, created with `mode` permissions.
    Path {
        /// Socket file path.
        path: PathBuf,
        /// Permission bits (e.g. `0o660`).
        mode: u32,
    },
}

impl SocketName {
    /// An abstract name.
    pub fn abstract_name(name: impl Into<String>) -> Self {
        SocketName::Abstract(name.into())
    }

    fn addr(&self) -> io::Result<SocketAddr> {
        match self {
            SocketName::Abstract(name) => SocketAddr::from_abstract_name(name.as_bytes()),
            SocketName::Path { path, .. } => SocketAddr::from_pathname(path),
        }
    }
}

/// Binds and listens (non-blocking, close-on-exec). A stale socket file at a path is
/// replaced; any other file there is an error.
pub fn listen(name: &SocketName, _backlog: i32) -> io::Result<UnixListener> {
    if let SocketName::Path { path, .. } = name {
        if let Ok(meta) = std::fs::symlink_metadata(path) {
            if meta.file_type().is_socket() {
                std::fs::remove_file(path)?;
            }
        }
    }
    let listener = UnixListener::bind_addr(&name.addr()?)?;
    if let SocketName::Path { path, mode } = name {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(*mode))?;
    }
    listener.set_nonblocking(true)?;
    Ok(listener)
}

/// Connects (blocking). `timeout` bounds the later handshake reads, not the connect,
/// which on a Unix socket completes or fails at once.
pub fn connect(name: &SocketName, timeout: Option<Duration>) -> io::Result<UnixStream> {
    let stream = UnixStream::connect_addr(&name.addr()?)?;
    stream.set_read_timeout(timeout)?;
    Ok(stream)
}
