//! The one mapping from every coroipc error to a `cs_error_t` ([`CapiError::code`]).
//!
//! Each extern function computes a `Result<_, CapiError>`; the boundary
//! ([`crate::panic::boundary`]) turns the error into its code. The table:
//!
//! | error | `cs_error_t` |
//! |---|---|
//! | `ConnectError::NoSuchService` | `CS_ERR_NOT_EXIST` |
//! | `ConnectError::Os { Connect, NotFound / ConnectionRefused }` (nobody listens) | `CS_ERR_TRY_AGAIN` (corosync's coroipcc) |
//! | `ConnectError::AccessDenied` | `CS_ERR_ACCESS` |
//! | `ConnectError::Refused(code)` | `code` when it is a `cs_error_t` value, else `CS_ERR_ACCESS` |
//! | `ConnectError::NoResources`, `ConnectionLimit`, `OutOfFds` | `CS_ERR_NO_RESOURCES` |
//! | `ConnectError::Timeout`, `ClientError::Timeout` | `CS_ERR_TIMEOUT` |
//! | `ConnectError::Disconnected`, `Os` (other), `ClientError::Disconnected`, `Io`, `SendError::Disconnected`, `std::io::Error` | `CS_ERR_LIBRARY` |
//! | `ConnectError::Protocol`, `ClientError::Corrupt` | `CS_ERR_SECURITY` |
//! | `ClientError::TooLarge` (a request above the ring's limit) | `CS_ERR_INVALID_PARAM` (corosync's coroipcc) |
//! | `ClientError::BufferTooSmall`, `ResponseTooLarge`, `SendError::TooLarge` | `CS_ERR_TOO_BIG` |
//! | `ClientError::TryAgain`, `SendError::TryAgain` | `CS_ERR_TRY_AGAIN` |
//! | `ClientError::UnknownCommand`, `BadRequest` | `CS_ERR_INVALID_PARAM` |
//! | `ClientError::Abandoned`, `UnknownRequest`, `SendError::AlreadyResponded` | `CS_ERR_LIBRARY` |
//! | boundary: NULL / invalid argument, a typed pointer not aligned for its type, lying `size`, id out of range | `CS_ERR_INVALID_PARAM` |
//! | boundary: stale, freed or foreign handle | `CS_ERR_BAD_HANDLE` |
//! | boundary: the peer's message has no valid seed header | `CS_ERR_MESSAGE_ERROR` |
//! | boundary: a request above the `request_size` given at connect or the server's grant | `CS_ERR_INVALID_PARAM` |
//! | boundary: nothing to answer | `CS_ERR_NOT_EXIST` |
//! | boundary: a zero-copy buffer cannot be allocated | `CS_ERR_NO_MEMORY` |
//! | boundary: a thread holds the most nested dispatch messages | `CS_ERR_NO_RESOURCES` |
//! | boundary: a required callback missing from the init state | `CS_ERR_INVALID_PARAM` |
//! | boundary: a status passed on (`Status`) | that status |
//! | boundary: a server already initialised; `std::io::Error` `AddrInUse` (another server has the name) | `CS_ERR_EXIST` |
//! | boundary: re-entering the server from its own callback | `CS_ERR_BUSY` |
//! | boundary: a panic caught | `CS_ERR_LIBRARY` |

use std::io;

use ipc::{ClientError, ConnectError, ConnectStep, SendError};

use crate::types::cs_error_t;

/// Why a call of the C API failed: a coroipc error, or a rule of the boundary.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CapiError {
    #[error(transparent)]
    Connect(#[from] ConnectError),
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error(transparent)]
    Send(#[from] SendError),
    #[error(transparent)]
    Io(#[from] io::Error),
    /// A NULL or invalid argument.
    #[error("invalid argument: {0}")]
    InvalidParam(&'static str),
    /// A stale, freed or foreign handle.
    #[error("bad handle")]
    BadHandle,
    /// The peer's message does not start with a valid seed header.
    #[error("malformed message from the peer: {0}")]
    Message(&'static str),
    /// Nothing to act on (no request awaiting a response).
    #[error("{0}")]
    NotExist(&'static str),
    /// The server is already initialised.
    #[error("the server is already initialised")]
    Exists,
    /// A server entry point called from one of the server's callbacks.
    #[error("re-entering the server from its own callback")]
    Reentered,
    /// A panic was caught at the boundary.
    #[error("internal error (panic caught): {0}")]
    Panic(String),
    /// A required callback is NULL in the daemon's init state.
    #[error("the init state has no {0}")]
    Missing(&'static str),
    /// Out of memory for a buffer the caller asked for.
    #[error("out of memory")]
    NoMemory,
    /// A thread already holds the most dispatch messages it may (nested gets).
    #[error("{0} dispatch messages held without a put")]
    TooManyHeld(usize),
    /// A status already decided (an entry point's result passed on to a log).
    #[error("{0:?}")]
    Status(cs_error_t),
}

impl CapiError {
    /// The `cs_error_t` this error stands for (the table in the module doc).
    pub(crate) fn code(&self) -> cs_error_t {
        use cs_error_t::*;
        match self {
            CapiError::Connect(e) => connect_code(e),
            CapiError::Client(e) => client_code(e),
            CapiError::Send(e) => match e {
                SendError::TooLarge { .. } => CS_ERR_TOO_BIG,
                SendError::TryAgain => CS_ERR_TRY_AGAIN,
                _ => CS_ERR_LIBRARY,
            },
            CapiError::Io(e) if e.kind() == io::ErrorKind::AddrInUse => CS_ERR_EXIST,
            CapiError::Io(_) | CapiError::Panic(_) => CS_ERR_LIBRARY,
            CapiError::InvalidParam(_) => CS_ERR_INVALID_PARAM,
            CapiError::BadHandle => CS_ERR_BAD_HANDLE,
            CapiError::Message(_) => CS_ERR_MESSAGE_ERROR,
            CapiError::NotExist(_) => CS_ERR_NOT_EXIST,
            CapiError::Exists => CS_ERR_EXIST,
            CapiError::Reentered => CS_ERR_BUSY,
            CapiError::Missing(_) => CS_ERR_INVALID_PARAM,
            CapiError::NoMemory => CS_ERR_NO_MEMORY,
            CapiError::TooManyHeld(_) => CS_ERR_NO_RESOURCES,
            CapiError::Status(code) => *code,
        }
    }
}

fn connect_code(e: &ConnectError) -> cs_error_t {
    use cs_error_t::*;
    match e {
        ConnectError::NoSuchService(_) => CS_ERR_NOT_EXIST,
        ConnectError::AccessDenied => CS_ERR_ACCESS,
        ConnectError::Refused(code) => from_raw(*code).unwrap_or(CS_ERR_ACCESS),
        ConnectError::NoResources | ConnectError::ConnectionLimit | ConnectError::OutOfFds => {
            CS_ERR_NO_RESOURCES
        }
        ConnectError::Timeout => CS_ERR_TIMEOUT,
        ConnectError::Protocol(_) => CS_ERR_SECURITY,
        ConnectError::Os {
            step: ConnectStep::Connect,
            source,
            ..
        } if matches!(
            source.kind(),
            io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused
        ) =>
        {
            CS_ERR_TRY_AGAIN
        }
        _ => CS_ERR_LIBRARY,
    }
}

fn client_code(e: &ClientError) -> cs_error_t {
    use cs_error_t::*;
    match e {
        ClientError::Timeout => CS_ERR_TIMEOUT,
        ClientError::TooLarge { .. } => CS_ERR_INVALID_PARAM,
        ClientError::BufferTooSmall { .. } | ClientError::ResponseTooLarge => CS_ERR_TOO_BIG,
        ClientError::TryAgain => CS_ERR_TRY_AGAIN,
        ClientError::UnknownCommand { .. } | ClientError::BadRequest => CS_ERR_INVALID_PARAM,
        ClientError::Corrupt(_) => CS_ERR_SECURITY,
        _ => CS_ERR_LIBRARY,
    }
}

/// The `cs_error_t` with value `raw`, if there is one (a refusal code chosen by a
/// service).
pub(crate) fn from_raw(raw: i32) -> Option<cs_error_t> {
    use cs_error_t::*;
    [
        CS_OK,
        CS_ERR_LIBRARY,
        CS_ERR_TIMEOUT,
        CS_ERR_TRY_AGAIN,
        CS_ERR_INVALID_PARAM,
        CS_ERR_BAD_HANDLE,
        CS_ERR_BUSY,
        CS_ERR_ACCESS,
        CS_ERR_NOT_EXIST,
        CS_ERR_EXIST,
        CS_ERR_NO_RESOURCES,
        CS_ERR_MESSAGE_ERROR,
        CS_ERR_TOO_BIG,
        CS_ERR_SECURITY,
    ]
    .into_iter()
    .find(|c| *c as i32 == raw && *c != CS_OK)
}

#[cfg(test)]
mod tests {
    use super::*;
    use cs_error_t::*;

    #[test]
    fn refusal_codes_pass_through_when_they_are_cs_errors() {
        assert_eq!(
            CapiError::from(ConnectError::Refused(12)).code(),
            CS_ERR_NOT_EXIST
        );
        assert_eq!(
            CapiError::from(ConnectError::Refused(1)).code(),
            CS_ERR_ACCESS
        );
        assert_eq!(
            CapiError::from(ConnectError::Refused(-3)).code(),
            CS_ERR_ACCESS
        );
        assert_eq!(
            CapiError::from(ConnectError::Refused(4242)).code(),
            CS_ERR_ACCESS
        );
    }

    #[test]
    fn client_and_send_errors_map() {
        assert_eq!(
            CapiError::from(ClientError::Disconnected).code(),
            CS_ERR_LIBRARY
        );
        assert_eq!(
            CapiError::from(ClientError::TryAgain).code(),
            CS_ERR_TRY_AGAIN
        );
        assert_eq!(
            CapiError::from(ClientError::UnknownCommand { command: 3 }).code(),
            CS_ERR_INVALID_PARAM
        );
        assert_eq!(
            CapiError::from(SendError::TryAgain).code(),
            CS_ERR_TRY_AGAIN
        );
        assert_eq!(
            CapiError::from(SendError::TooLarge { len: 2, max: 1 }).code(),
            CS_ERR_TOO_BIG
        );
        assert_eq!(CapiError::BadHandle.code(), CS_ERR_BAD_HANDLE);
        assert_eq!(CapiError::Panic("x".into()).code(), CS_ERR_LIBRARY);
        let in_use = io::Error::from(io::ErrorKind::AddrInUse);
        assert_eq!(CapiError::from(in_use).code(), CS_ERR_EXIST);
        let other = io::Error::from(io::ErrorKind::PermissionDenied);
        assert_eq!(CapiError::from(other).code(), CS_ERR_LIBRARY);
    }

    #[test]
    fn no_server_is_try_again_as_in_corosync() {
        let e = ConnectError::Os {
            name: ipc::SocketName::abstract_name("x"),
            step: ConnectStep::Connect,
            source: io::Error::from(io::ErrorKind::ConnectionRefused),
        };
        assert_eq!(CapiError::from(e).code(), CS_ERR_TRY_AGAIN);
        assert_eq!(
            CapiError::from(ConnectError::NoSuchService(3)).code(),
            CS_ERR_NOT_EXIST
        );
    }
}
