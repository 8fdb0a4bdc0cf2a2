//! The C types both headers share (`corotypes.h`): `cs_error_t`, `hdb_handle_t` and the
//! seed's message headers. Nothing here is read from C memory as a Rust enum: header
//! fields are decoded from bytes (module `message`), so a C program writing any
//! integer into `error` cannot make an invalid Rust value.

#![allow(non_camel_case_types)]

use std::ffi::c_int;

/// corosync's status codes (values as in `corotypes.h`). Every function of
/// `libcoroipc` that reports a status returns one of these.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum cs_error_t {
    /// Success.
    CS_OK = 1,
    /// The library failed: the peer is gone (connection closed, process killed), an
    /// operating-system call failed, or the library caught an internal panic.
    CS_ERR_LIBRARY = 2,
    /// A time limit passed (connecting).
    CS_ERR_TIMEOUT = 5,
    /// Not now: the server's admission control refused, or a ring and its queue are full.
    CS_ERR_TRY_AGAIN = 6,
    /// A NULL or otherwise invalid argument, or a message whose header lies about its
    /// size or carries an id outside `0..=65535`.
    CS_ERR_INVALID_PARAM = 7,
    /// A handle or context that is not (or no longer) valid: never created, freed, or
    /// belonging to the other kind of object.
    CS_ERR_BAD_HANDLE = 9,
    /// The call would re-enter the server from one of its own callbacks.
    CS_ERR_BUSY = 10,
    /// The server's security callback or the service refused the client.
    CS_ERR_ACCESS = 11,
    /// No such service, no server under the name, or nothing to answer.
    CS_ERR_NOT_EXIST = 12,
    /// The server is already initialised.
    CS_ERR_EXIST = 14,
    /// Out of memory, file descriptors or connections.
    CS_ERR_NO_RESOURCES = 18,
    /// The peer sent a message without a valid seed header.
    CS_ERR_MESSAGE_ERROR = 22,
    /// A message larger than the ring (or than the caller's buffer).
    CS_ERR_TOO_BIG = 26,
    /// The peer broke the protocol or corrupted its shared memory; the connection is
    /// closed.
    CS_ERR_SECURITY = 100,
}

/// A client connection handle (`coroipcc_*`): an opaque number, never a pointer.
/// 0 is never a valid handle.
pub type hdb_handle_t = u64;

/// The first bytes of every request (the seed's header). `size` is the whole
/// message's length in bytes, header included; `id` the command id (`0..=65535`).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct coroipc_request_header_t {
    /// Length of the whole message, this header included.
    pub size: c_int,
    /// Command id, `0..=65535`.
    pub id: c_int,
}

/// The first bytes of every response and dispatch message (the seed's header).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct coroipc_response_header_t {
    /// Length of the whole message, this header included.
    pub size: c_int,
    /// Service-defined message id.
    pub id: c_int,
    /// The service's status for this response.
    pub error: cs_error_t,
}

/// `sizeof(coroipc_request_header_t)`.
pub(crate) const REQUEST_HEADER_SIZE: usize = std::mem::size_of::<coroipc_request_header_t>();
/// `sizeof(coroipc_response_header_t)`.
pub(crate) const RESPONSE_HEADER_SIZE: usize = std::mem::size_of::<coroipc_response_header_t>();

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_sizes_are_the_c_ones() {
        assert_eq!(REQUEST_HEADER_SIZE, 8);
        assert_eq!(RESPONSE_HEADER_SIZE, 12);
        assert_eq!(std::mem::size_of::<cs_error_t>(), 4);
    }
}
