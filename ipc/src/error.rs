//! Typed errors of the client and server APIs.

use std::io;

use crate::protocol::HandshakeError;

/// Connecting failed.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The server has no service under this id.
    #[error("the server has no service {0}")]
    NoSuchService(u16),
    /// The server's security callback refused our credentials.
    #[error("access denied by the server's security policy")]
    AccessDenied,
    /// The service's connect callback refused, with its code.
    #[error("the service refused the connection (code {0})")]
    Refused(i32),
    /// The server could not allocate the connection (memory for its shared memory
    /// or doorbells).
    #[error("the server is out of memory for a new connection")]
    NoResources,
    /// The server has as many connections as its `Limits::max_connections` allows.
    #[error("the server's connection limit is reached")]
    ConnectionLimit,
    /// The server is out of file descriptors.
    #[error("the server is out of file descriptors")]
    OutOfFds,
    /// No answer within the timeout.
    #[error("connect timed out")]
    Timeout,
    /// The server closed the socket during the handshake.
    #[error("the server closed the connection during the handshake")]
    Disconnected,
    /// The server's answer was malformed or its shared memory unusable.
    #[error("handshake protocol error: {0}")]
    Protocol(String),
    /// An operating-system call failed (e.g. no server listens under that name).
    #[error(transparent)]
    Io(#[from] io::Error),
}

impl From<HandshakeError> for ConnectError {
    fn from(e: HandshakeError) -> Self {
        ConnectError::Protocol(e.to_string())
    }
}

/// A client call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server is gone (closed, crashed or killed) or dropped this connection.
    #[error("disconnected from the server")]
    Disconnected,
    /// The call's timeout expired.
    #[error("timed out")]
    Timeout,
    /// The message exceeds what the ring carries.
    #[error("message of {len} bytes exceeds the maximum of {max}")]
    TooLarge {
        /// Length given.
        len: usize,
        /// Largest allowed.
        max: usize,
    },
    /// The caller's buffer is shorter than the response. The response is kept:
    /// [`Client::wait_response`](crate::Client::wait_response)`(id)` (or
    /// `receive_response`) returns it.
    #[error("buffer too small: the response to request {id} has {needed} bytes")]
    BufferTooSmall {
        /// The request whose response is kept.
        id: u64,
        /// Response length.
        needed: usize,
    },
    /// The service's admission control asked to retry later.
    #[error("the server asks to try again later")]
    TryAgain,
    /// The service does not handle this command.
    #[error("the service does not handle this command")]
    UnknownCommand,
    /// The server rejected the request as malformed.
    #[error("the server rejected the request as malformed")]
    BadRequest,
    /// The service dropped the request without answering.
    #[error("the service abandoned the request")]
    Abandoned,
    /// The service's response did not fit the response ring (connect with a larger
    /// `response_ring`); the request was handled but its answer is lost.
    #[error("the service's response does not fit the response ring")]
    ResponseTooLarge,
    /// The server wrote invalid data into shared memory; the connection is closed.
    #[error("the server corrupted the shared memory: {0}")]
    Corrupt(String),
    /// The id is not an outstanding request of this connection.
    #[error("no outstanding request with id {0}")]
    UnknownRequest(u64),
    /// An operating-system call failed.
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// Sending a response or a dispatch message failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// The connection is closed.
    #[error("the connection is closed")]
    Disconnected,
    /// The message exceeds what the ring carries.
    #[error("message of {len} bytes exceeds the maximum of {max}")]
    TooLarge {
        /// Length given.
        len: usize,
        /// Largest allowed.
        max: usize,
    },
    /// The ring and the bounded queue behind it are full (policy `TryAgain`), or a
    /// zero-copy reservation found no room in the ring.
    #[error("the client is not keeping up: try again later")]
    TryAgain,
    /// A response was already sent for this request.
    #[error("a response was already sent for this request")]
    AlreadyResponded,
}
