//! Typed errors of the client and server APIs. Each carries its cause as a value
//! (the ring's [`Corruption`], the OS error, the handshake field), never as a string.

use std::fmt;
use std::io;

use coroipc_ring::{AttachError, Corruption, PopError, PushError};

use crate::os::{ShmError, SocketName};
use crate::protocol::HandshakeError;

/// One of a connection's three rings.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RingKind {
    /// Client → server requests.
    Request,
    /// Server → client responses.
    Response,
    /// Server → client dispatch messages.
    Dispatch,
}

impl fmt::Display for RingKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RingKind::Request => "request",
            RingKind::Response => "response",
            RingKind::Dispatch => "dispatch",
        })
    }
}

/// How a peer broke the protocol after the handshake (the connection is closed).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Violation {
    /// The peer corrupted a ring's indices or frame headers.
    #[error("{ring} ring: {cause}")]
    Ring {
        /// Which ring.
        ring: RingKind,
        /// What the ring found.
        cause: Corruption,
    },
    /// A frame shorter than the header it must start with.
    #[error("{0} ring: a frame shorter than its header")]
    ShortFrame(RingKind),
    /// A response to a request id that was not sent (or already answered).
    #[error("a response to request {0}, which is not outstanding")]
    UnknownResponse(u64),
    /// The client wrote on the socket after the handshake.
    #[error("data on the socket after the handshake")]
    SocketData,
    /// The peer shut the connection's doorbells down (or they failed).
    #[error("the doorbells were shut down")]
    Doorbell,
}

impl Violation {
    /// What a failed pop of `ring` stands for: its corruption, or (any other pop
    /// error, which a ring used by this crate cannot report) a malformed frame.
    pub(crate) fn popping(ring: RingKind, e: PopError) -> Violation {
        match e {
            PopError::Corrupt(cause) => Violation::Ring { ring, cause },
            _ => Violation::ShortFrame(ring),
        }
    }

    /// What a push error other than `Full`/`TooLarge` on `ring` stands for.
    pub(crate) fn pushing(ring: RingKind, e: PushError) -> Violation {
        match e {
            PushError::Corrupt(cause) => Violation::Ring { ring, cause },
            _ => Violation::ShortFrame(ring),
        }
    }
}

/// The corruption a failed push on an outbox's ring stands for where the caller has
/// ruled out `Full` and `TooLarge` (a flow-control poll, a sleep announcement, a
/// flush of messages checked when queued): the ring's own cause, else (what such a
/// call cannot report) `Earlier`.
pub(crate) fn push_corruption(e: PushError) -> Corruption {
    match e {
        PushError::Corrupt(c) => c,
        _ => Corruption::Earlier,
    }
}

/// The server's handshake reply or its shared memory was unusable.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProtocolError {
    /// The reply was malformed.
    #[error("malformed handshake reply: {0}")]
    Handshake(#[from] HandshakeError),
    /// The server rejected the handshake itself (bad version or request), or
    /// answered a status this library does not know.
    #[error("the server answered the handshake with status {0}")]
    Status(i32),
    /// The reply came with the wrong number of descriptors.
    #[error("{got} descriptors received with the reply, {expected} expected")]
    FdCount {
        /// Received.
        got: usize,
        /// Expected.
        expected: usize,
    },
    /// The announced region length does not match the granted ring sizes.
    #[error("region length {got} does not match the ring sizes ({expected})")]
    RegionLength {
        /// Announced.
        got: u64,
        /// Computed from the granted sizes.
        expected: u64,
    },
    /// The server granted a ring larger than both the request and
    /// [`ConnectOptions::max_ring`](crate::ConnectOptions::max_ring).
    #[error("the server granted a {ring} ring of {granted} bytes, above the {ceiling} accepted")]
    Grant {
        /// Which ring.
        ring: RingKind,
        /// The capacity granted.
        granted: u32,
        /// The largest capacity the client accepts for it.
        ceiling: u32,
    },
    /// The memfd is not a sealed memfd of the right size.
    #[error("shared memory: {0}")]
    SharedMemory(#[from] ShmError),
    /// A ring in the region does not attach (magic, version, geometry).
    #[error("{ring} ring: {cause}")]
    Ring {
        /// Which ring.
        ring: RingKind,
        /// Why.
        cause: AttachError,
    },
    /// A doorbell descriptor is unusable.
    #[error("doorbell: {0}")]
    Doorbell(io::Error),
    /// The rings broke the protocol before the client's first call (found while
    /// arming the notification fd).
    #[error("the server broke the protocol: {0}")]
    Violation(Violation),
}

/// Connecting failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
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
    Protocol(#[from] ProtocolError),
    /// An operating-system call failed: which step, for which server.
    /// `step: Connect` with `ConnectionRefused` or `NotFound` means no server listens
    /// under the name.
    #[error("{step} {name}: {source}")]
    Os {
        /// The server's name.
        name: SocketName,
        /// What the client was doing.
        step: ConnectStep,
        /// The OS error.
        source: io::Error,
    },
}

/// The step of [`Client::connect`](crate::Client::connect) an OS error happened in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConnectStep {
    /// Reaching the listening socket.
    Connect,
    /// Sending the request, reading the reply and its descriptors.
    Handshake,
    /// Verifying and mapping the shared memory.
    Map,
    /// Creating the client's notification fd (an epoll).
    Notify,
}

impl fmt::Display for ConnectStep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ConnectStep::Connect => "connecting to",
            ConnectStep::Handshake => "handshake with",
            ConnectStep::Map => "mapping the shared memory of",
            ConnectStep::Notify => "creating the notification fd for",
        })
    }
}

impl From<HandshakeError> for ConnectError {
    fn from(e: HandshakeError) -> Self {
        ConnectError::Protocol(e.into())
    }
}

/// A client call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
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
    #[error("the service does not handle command {command}")]
    UnknownCommand {
        /// The command id sent.
        command: u16,
    },
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
    /// The server broke the protocol (corrupt shared memory, a response nobody
    /// asked for); the connection is closed.
    #[error("the server broke the protocol: {0}")]
    Corrupt(Violation),
    /// The id is not an outstanding request of this connection.
    #[error("no outstanding request with id {0}")]
    UnknownRequest(u64),
    /// An operating-system call failed.
    #[error(transparent)]
    Io(io::Error),
}

impl From<io::Error> for ClientError {
    /// A doorbell shut down or hung up is the server gone ([`Disconnected`]), as the
    /// client's every later call reports it; any other OS error is [`Io`].
    ///
    /// [`Disconnected`]: ClientError::Disconnected
    /// [`Io`]: ClientError::Io
    fn from(e: io::Error) -> ClientError {
        if crate::os::means_hang_up(&e) {
            ClientError::Disconnected
        } else {
            ClientError::Io(e)
        }
    }
}

/// Sending a response or a dispatch message failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
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

/// The handler returned an error instead of answering.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HandlerError {
    /// This service does not handle the command: the client gets an
    /// "unknown command" error and the connection stays up.
    #[error("unknown command")]
    UnknownCommand,
    /// The payload is malformed for this command: the client gets
    /// [`ClientError::BadRequest`](crate::ClientError::BadRequest) and the connection
    /// stays up.
    #[error("invalid request")]
    InvalidRequest,
}
