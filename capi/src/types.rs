//! The C types both headers share (corosync's `corotypes.h`, `hdb.h`,
//! `coroipc_types.h`): `cs_error_t`, `hdb_handle_t` and the
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
    /// Not returned by libcoroipc (corosync's value).
    CS_ERR_VERSION = 3,
    /// Not returned by libcoroipc (corosync's value).
    CS_ERR_INIT = 4,
    /// A time limit passed (connecting).
    CS_ERR_TIMEOUT = 5,
    /// Not now: the server's admission control refused, or a ring and its queue are full.
    CS_ERR_TRY_AGAIN = 6,
    /// A NULL or otherwise invalid argument, or a message whose header lies about its
    /// size or carries an id outside `0..=65535`.
    CS_ERR_INVALID_PARAM = 7,
    /// Out of memory (a zero-copy buffer could not be allocated).
    CS_ERR_NO_MEMORY = 8,
    /// A handle or context that is not (or no longer) valid: never created, freed, or
    /// belonging to the other kind of object.
    CS_ERR_BAD_HANDLE = 9,
    /// The call would re-enter the server from one of its own callbacks.
    CS_ERR_BUSY = 10,
    /// The server's security callback or the service refused the client.
    CS_ERR_ACCESS = 11,
    /// No such service, no server under the name, or nothing to answer.
    CS_ERR_NOT_EXIST = 12,
    /// Not returned by libcoroipc (corosync's value).
    CS_ERR_NAME_TOO_LONG = 13,
    /// The server is already initialised.
    CS_ERR_EXIST = 14,
    /// Not returned by libcoroipc (corosync's value).
    CS_ERR_NO_SPACE = 15,
    /// Not returned by libcoroipc (corosync's value).
    CS_ERR_INTERRUPT = 16,
    /// Not returned by libcoroipc (corosync's value).
    CS_ERR_NAME_NOT_FOUND = 17,
    /// Out of memory, file descriptors or connections.
    CS_ERR_NO_RESOURCES = 18,
    /// Not returned by libcoroipc (corosync's value).
    CS_ERR_NOT_SUPPORTED = 19,
    /// Not returned by libcoroipc (corosync's value).
    CS_ERR_BAD_OPERATION = 20,
    /// Not returned by libcoroipc (corosync's value).
    CS_ERR_FAILED_OPERATION = 21,
    /// The peer sent a message without a valid seed header.
    CS_ERR_MESSAGE_ERROR = 22,
    /// Not returned by libcoroipc (corosync's value).
    CS_ERR_QUEUE_FULL = 23,
    /// Not returned by libcoroipc (corosync's value).
    CS_ERR_QUEUE_NOT_AVAILABLE = 24,
    /// Not returned by libcoroipc (corosync's value).
    CS_ERR_BAD_FLAGS = 25,
    /// A message larger than the ring.
    CS_ERR_TOO_BIG = 26,
    /// Not returned by libcoroipc (corosync's value).
    CS_ERR_NO_SECTIONS = 27,
    /// Not returned by libcoroipc (corosync's value).
    CS_ERR_CONTEXT_NOT_FOUND = 28,
    /// Not returned by libcoroipc (corosync's value).
    CS_ERR_TOO_MANY_GROUPS = 30,
    /// Not returned by libcoroipc (corosync's value).
    CS_ERR_IN_SHUTDOWN = 31,
    /// The peer broke the protocol or corrupted its shared memory; the connection is
    /// closed.
    CS_ERR_SECURITY = 100,
}

/// A client connection handle (`coroipcc_*`): an opaque number, never a pointer.
/// 0 is never a valid handle.
pub type hdb_handle_t = u64;

/// The first bytes of every request (corosync's `coroipc_types.h`, each field
/// 8-aligned): `size` is the whole message's length in bytes, header included; `id`
/// the command id (`0..=65535`).
#[repr(C, align(8))]
#[derive(Clone, Copy, Debug)]
pub struct coroipc_request_header_t {
    /// Length of the whole message, this header included.
    pub size: c_int,
    _pad_size: c_int,
    /// Command id, `0..=65535`.
    pub id: c_int,
    _pad_id: c_int,
}

/// The first bytes of every response and dispatch message (each field 8-aligned).
#[repr(C, align(8))]
#[derive(Clone, Copy, Debug)]
pub struct coroipc_response_header_t {
    /// Length of the whole message, this header included.
    pub size: c_int,
    _pad_size: c_int,
    /// Service-defined message id.
    pub id: c_int,
    _pad_id: c_int,
    /// The service's status for this response (a `cs_error_t` value).
    pub error: c_int,
    _pad_error: c_int,
}

/// Where `size` is in either header.
pub(crate) const SIZE_AT: usize = std::mem::offset_of!(coroipc_request_header_t, size);
/// Where `id` is in either header.
pub(crate) const ID_AT: usize = std::mem::offset_of!(coroipc_request_header_t, id);
/// Where `error` is in a response header.
pub(crate) const ERROR_AT: usize = std::mem::offset_of!(coroipc_response_header_t, error);

/// `sizeof(coroipc_request_header_t)`.
pub(crate) const REQUEST_HEADER_SIZE: usize = std::mem::size_of::<coroipc_request_header_t>();
/// `sizeof(coroipc_response_header_t)`.
pub(crate) const RESPONSE_HEADER_SIZE: usize = std::mem::size_of::<coroipc_response_header_t>();

/// A response header the library writes itself (admission refused, invalid
/// request): `size` 24, `id` 0, `error` the status, as corosync's coroipcs wrote it.
pub(crate) fn response_header(error: cs_error_t) -> [u8; RESPONSE_HEADER_SIZE] {
    let mut h = [0u8; RESPONSE_HEADER_SIZE];
    h[SIZE_AT..SIZE_AT + 4].copy_from_slice(&(RESPONSE_HEADER_SIZE as c_int).to_ne_bytes());
    h[ERROR_AT..ERROR_AT + 4].copy_from_slice(&(error as c_int).to_ne_bytes());
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_sizes_are_the_c_ones() {
        // corosync 1.4's layout: every field 8-aligned.
        assert_eq!(REQUEST_HEADER_SIZE, 16);
        assert_eq!(RESPONSE_HEADER_SIZE, 24);
        assert_eq!((SIZE_AT, ID_AT, ERROR_AT), (0, 8, 16));
        assert_eq!(std::mem::align_of::<coroipc_response_header_t>(), 8);
        let h = response_header(cs_error_t::CS_ERR_TRY_AGAIN);
        assert_eq!(h[0..4], 24i32.to_ne_bytes());
        assert_eq!(h[16..20], 6i32.to_ne_bytes());
        assert_eq!(std::mem::size_of::<cs_error_t>(), 4);
    }
}
