//! What a client is configured with ([`ConnectOptions`]; how it waits is
//! [`WaitMode`](crate::WaitMode), in `spin`) and what a request returns
//! ([`Response`]); the one mapping from a response status to an error.

use std::time::Duration;

use crate::error::ClientError;
use crate::protocol::status;
use crate::spin::WaitMode;

/// Options for [`Client::connect`](crate::Client::connect). Ring sizes are requests;
/// the server caps them. Every timeout accepts `Duration::MAX` (forever) and
/// `Duration::ZERO` (just look).
#[derive(Clone, Debug)]
pub struct ConnectOptions {
    /// Request ring capacity asked for (0: server default).
    pub request_ring: u32,
    /// Response ring capacity asked for (0: server default).
    pub response_ring: u32,
    /// Dispatch ring capacity asked for (0: server default).
    pub dispatch_ring: u32,
    /// The largest ring the client accepts without having asked for it: a grant
    /// above both this and the ring's request (rounded up to a power of two, as a
    /// server rounds it) refuses the connection
    /// ([`ProtocolError::Grant`](crate::ProtocolError::Grant)). A server may round a
    /// request up (to its `min_ring_size`); this bounds what it can impose, and so
    /// what one response or dispatch message can make the client allocate (half a
    /// ring). Default 256 MiB.
    pub max_ring: u32,
    /// Bound on the whole handshake.
    pub connect_timeout: Duration,
    /// Bound on each synchronous request (None: wait as long as the server lives).
    pub request_timeout: Option<Duration>,
    /// How to wait.
    pub wait: WaitMode,
}

/// [`ConnectOptions::max_ring`]'s default: 256 MiB, 32 times a default server's
/// largest grant.
pub(crate) const DEFAULT_MAX_RING: u32 = 256 << 20;

impl ConnectOptions {
    /// The largest capacity the client accepts for a ring it asked `requested` for.
    pub(crate) fn ring_ceiling(&self, requested: u32) -> u32 {
        // A server rounds a request up to a power of two.
        let rounded = requested.checked_next_power_of_two().unwrap_or(u32::MAX);
        rounded.max(self.max_ring)
    }
}

impl Default for ConnectOptions {
    fn default() -> Self {
        ConnectOptions {
            request_ring: 0,
            response_ring: 0,
            dispatch_ring: 0,
            max_ring: DEFAULT_MAX_RING,
            connect_timeout: Duration::from_secs(5),
            request_timeout: None,
            wait: WaitMode::default(),
        }
    }
}

/// A successful response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    /// 0 or a positive service-defined status.
    pub status: i32,
    /// The payload.
    pub data: Vec<u8>,
}

/// A response to a pipelined request ([`Client::receive_response`](crate::Client::receive_response)):
/// the request's id, and the response or the error its status stands for.
pub type Reply = (u64, Result<Response, ClientError>);

/// The error a response status to `command` stands for (`None` for 0 and service
/// codes).
pub(crate) fn status_error(code: i32, command: u16) -> Option<ClientError> {
    match code {
        c if c >= 0 => None,
        status::TRY_AGAIN => Some(ClientError::TryAgain),
        status::UNKNOWN_COMMAND => Some(ClientError::UnknownCommand { command }),
        status::ABANDONED => Some(ClientError::Abandoned),
        status::RESPONSE_TOO_LARGE => Some(ClientError::ResponseTooLarge),
        _ => Some(ClientError::BadRequest),
    }
}
