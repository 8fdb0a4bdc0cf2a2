//! The seed's message headers at the boundary: gathering a C `iovec` array, and the
//! checks that a header's `size` is the real length and its `id` a command id; and
//! the typed pointers C hands over (out-pointers, the `iovec` array, the server's init
//! state), each checked non-NULL where it must be and aligned for its type: a
//! misaligned one (a field of a packed struct, a pointer into a `char` buffer) is
//! `CS_ERR_INVALID_PARAM`, never a misaligned Rust reference (C API audit finding
//! 7). Byte buffers have no alignment to check.

use std::ffi::{c_uint, c_void};

use crate::error::CapiError;
use crate::types::{ID_AT, REQUEST_HEADER_SIZE, RESPONSE_HEADER_SIZE, SIZE_AT};

/// The most `iovec`s one call takes (Linux's `IOV_MAX`).
pub(crate) const MAX_IOV: c_uint = 1024;

/// A message given as parts (an `iovec` array or one buffer).
pub(crate) struct Parts<'a> {
    pub(crate) parts: Vec<&'a [u8]>,
    pub(crate) total: usize,
}

impl<'a> Parts<'a> {
    /// One buffer.
    ///
    /// # Safety
    ///
    /// `msg` is NULL (refused) or points to `len` readable bytes that stay valid and
    /// unchanged for `'a`.
    pub(crate) unsafe fn one(msg: *const c_void, len: usize) -> Result<Parts<'a>, CapiError> {
        // SAFETY: forwarded contract.
        let part = unsafe { bytes(msg.cast(), len) }?;
        Ok(Parts {
            parts: vec![part],
            total: len,
        })
    }

    /// An `iovec` array.
    ///
    /// # Safety
    ///
    /// `iov` is NULL (refused) or points to `iov_len` `struct iovec`s, each of whose
    /// `iov_base` is NULL with `iov_len` 0, or points to `iov_len` readable bytes; all
    /// stay valid and unchanged for `'a`.
    pub(crate) unsafe fn gather(
        iov: *const libc::iovec,
        iov_len: c_uint,
    ) -> Result<Parts<'a>, CapiError> {
        if iov.is_null() {
            return Err(CapiError::InvalidParam("iov is NULL"));
        }
        if iov_len == 0 || iov_len > MAX_IOV {
            return Err(CapiError::InvalidParam("iov_len is 0 or above IOV_MAX"));
        }
        if !iov.is_aligned() {
            return Err(MISALIGNED);
        }
        // SAFETY: the caller promises `iov_len` iovecs at `iov` (non-NULL and aligned,
        // checked).
        let vecs = unsafe { std::slice::from_raw_parts(iov, iov_len as usize) };
        let mut parts = Vec::with_capacity(vecs.len());
        let mut total = 0usize;
        for v in vecs {
            // SAFETY: the caller promises each iovec describes readable bytes.
            let part = unsafe { bytes(v.iov_base.cast_const().cast(), v.iov_len) }?;
            total = total
                .checked_add(part.len())
                .ok_or(CapiError::InvalidParam("iovec lengths overflow"))?;
            parts.push(part);
        }
        Ok(Parts { parts, total })
    }

    /// The first `N` bytes of the concatenation, if it is that long.
    pub(crate) fn prefix<const N: usize>(&self) -> Option<[u8; N]> {
        let mut out = [0u8; N];
        let mut at = 0;
        for part in &self.parts {
            let n = part.len().min(N - at);
            out[at..at + n].copy_from_slice(&part[..n]);
            at += n;
            if at == N {
                return Some(out);
            }
        }
        None
    }
}

/// `len` bytes at `ptr` as a slice; NULL is refused unless `len` is 0.
///
/// # Safety
///
/// A non-NULL `ptr` points to `len` readable bytes valid and unchanged for `'a`.
unsafe fn bytes<'a>(ptr: *const u8, len: usize) -> Result<&'a [u8], CapiError> {
    if len == 0 {
        return Ok(&[]);
    }
    if ptr.is_null() {
        return Err(CapiError::InvalidParam(
            "NULL buffer with a non-zero length",
        ));
    }
    if len > isize::MAX as usize {
        return Err(CapiError::InvalidParam("length above isize::MAX"));
    }
    // SAFETY: non-NULL, length bounded, readable and stable for 'a (caller contract).
    Ok(unsafe { std::slice::from_raw_parts(ptr, len) })
}

fn int_at(b: &[u8], at: usize) -> i32 {
    let mut word = [0u8; 4];
    word.copy_from_slice(&b[at..at + 4]);
    i32::from_ne_bytes(word)
}

/// A request about to be sent, as its header describes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Outgoing {
    /// The header's `id`: the command.
    pub(crate) command: u16,
    /// The header's `size`: at least the bytes given; more when the caller's header
    /// claims a longer message than it handed over (corosync 1.4's
    /// `cpg_membership_get` sends a bare header whose `size` is its whole request
    /// structure); the message is then padded with zeros to `size`, which is what
    /// the handler reads.
    pub(crate) size: usize,
}

/// Checks a request about to be sent: its header's `size` is at least
/// `parts.total` and its `id` a command id.
pub(crate) fn request_command(parts: &Parts<'_>) -> Result<Outgoing, CapiError> {
    let head: [u8; REQUEST_HEADER_SIZE] = parts.prefix().ok_or(CapiError::InvalidParam(
        "shorter than coroipc_request_header_t",
    ))?;
    let size = usize::try_from(int_at(&head, SIZE_AT))
        .ok()
        .filter(|&n| n >= parts.total)
        .ok_or(CapiError::InvalidParam(
            "header size is negative or less than the message length",
        ))?;
    let command = u16::try_from(int_at(&head, ID_AT))
        .map_err(|_| CapiError::InvalidParam("id outside 0..=65535"))?;
    Ok(Outgoing { command, size })
}

/// Checks a request received by the server for `command`: `Err` with why when the
/// header is missing, lies about the length or names another command.
pub(crate) fn check_received_request(payload: &[u8], command: u16) -> Result<(), &'static str> {
    if payload.len() < REQUEST_HEADER_SIZE {
        return Err("shorter than coroipc_request_header_t");
    }
    if usize::try_from(int_at(payload, SIZE_AT)).ok() != Some(payload.len()) {
        return Err("header size is not the message length");
    }
    if int_at(payload, ID_AT) != i32::from(command) {
        return Err("header id is not the command id");
    }
    Ok(())
}

/// Checks a response or dispatch message about to be sent: it starts with a
/// `coroipc_response_header_t` whose `size` is `parts.total`.
pub(crate) fn check_outgoing_response(parts: &Parts<'_>) -> Result<(), CapiError> {
    let head: [u8; RESPONSE_HEADER_SIZE] = parts.prefix().ok_or(CapiError::InvalidParam(
        "shorter than coroipc_response_header_t",
    ))?;
    if usize::try_from(int_at(&head, SIZE_AT)).ok() != Some(parts.total) {
        return Err(CapiError::InvalidParam(
            "header size is not the message length",
        ));
    }
    Ok(())
}

/// Checks a response or dispatch message received (its first bytes `head`, its
/// length `len`).
pub(crate) fn check_incoming_response(head: &[u8], len: usize) -> Result<(), CapiError> {
    if len < RESPONSE_HEADER_SIZE || head.len() < RESPONSE_HEADER_SIZE {
        return Err(CapiError::Message("shorter than coroipc_response_header_t"));
    }
    if usize::try_from(int_at(head, SIZE_AT)).ok() != Some(len) {
        return Err(CapiError::Message("header size is not the message length"));
    }
    Ok(())
}

/// A socket name from C: a string starting with `/` is a filesystem path (created
/// with mode `0666`: the security callback decides who may connect, as with abstract
/// names); anything else is a Linux abstract name.
///
/// # Safety
///
/// `name` is NULL (refused) or a NUL-terminated string.
pub(crate) unsafe fn socket_name(
    name: *const std::ffi::c_char,
) -> Result<ipc::SocketName, CapiError> {
    if name.is_null() {
        return Err(CapiError::InvalidParam("socket_name is NULL"));
    }
    // SAFETY: non-NULL and NUL-terminated (caller contract).
    let name = unsafe { std::ffi::CStr::from_ptr(name) };
    let name = name
        .to_str()
        .map_err(|_| CapiError::InvalidParam("socket_name is not UTF-8"))?;
    if name.is_empty() {
        return Err(CapiError::InvalidParam("socket_name is empty"));
    }
    Ok(if name.starts_with('/') {
        ipc::SocketName::path(name, 0o666)
    } else {
        ipc::SocketName::abstract_name(name)
    })
}

/// The error for a typed pointer from C that is not aligned for its type.
const MISALIGNED: CapiError = CapiError::InvalidParam("a pointer not aligned for its type");

/// An out-pointer, checked non-NULL (else `InvalidParam(what)`) and aligned for `T`.
///
/// # Safety
///
/// `ptr` is NULL or points to a writable `T` (at any alignment) for `'a`.
pub(crate) unsafe fn out<'a, T>(ptr: *mut T, what: &'static str) -> Result<&'a mut T, CapiError> {
    if !ptr.is_aligned() {
        return Err(MISALIGNED);
    }
    // SAFETY: aligned (checked); NULL or writable for 'a (forwarded contract).
    unsafe { ptr.as_mut() }.ok_or(CapiError::InvalidParam(what))
}

/// A pointer to a `T` C hands over to be read: `None` for NULL; `Err` when it is not
/// aligned for `T`.
///
/// # Safety
///
/// `ptr` is NULL or points to a valid `T` (at any alignment), unchanged for `'a`.
pub(crate) unsafe fn in_ref<'a, T>(ptr: *const T) -> Result<Option<&'a T>, CapiError> {
    if !ptr.is_aligned() {
        return Err(MISALIGNED);
    }
    // SAFETY: aligned (checked); NULL or valid for 'a (forwarded contract).
    Ok(unsafe { ptr.as_ref() })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A header (`size` at 0, `id` at 8, 8-aligned fields) and `extra` bytes: a
    /// request header is 16 bytes, a response header 24.
    fn msg(size: i32, id: i32, header: usize, extra: usize) -> Vec<u8> {
        let mut v = vec![0u8; header + extra];
        v[0..4].copy_from_slice(&size.to_ne_bytes());
        v[8..12].copy_from_slice(&id.to_ne_bytes());
        v
    }

    fn req(size: i32, id: i32, extra: usize) -> Vec<u8> {
        msg(size, id, REQUEST_HEADER_SIZE, extra)
    }

    #[test]
    fn request_headers_are_checked() {
        let m = req(20, 3, 4);
        let (a, b) = m.split_at(3);
        let parts = Parts {
            parts: vec![a, b],
            total: 20,
        };
        assert_eq!(
            request_command(&parts).ok(),
            Some(Outgoing {
                command: 3,
                size: 20
            })
        );
        // A header claiming more than was given: padded to its size (corosync's
        // cpg_membership_get does this).
        let long = req(100, 3, 4);
        let parts = Parts {
            parts: vec![&long],
            total: 20,
        };
        assert_eq!(request_command(&parts).ok().map(|o| o.size), Some(100));
        let short = req(8, 3, 4);
        let parts = Parts {
            parts: vec![&short],
            total: 20,
        };
        assert!(
            request_command(&parts).is_err(),
            "less than the bytes given"
        );
        let big_id = req(16, 70000, 0);
        let parts = Parts {
            parts: vec![&big_id],
            total: 16,
        };
        assert!(request_command(&parts).is_err());
        let short = [1u8, 2, 3];
        let parts = Parts {
            parts: vec![&short],
            total: 3,
        };
        assert!(request_command(&parts).is_err());
        assert!(check_received_request(&req(20, 3, 4), 3).is_ok());
        assert!(check_received_request(&req(20, 4, 4), 3).is_err());
        assert!(check_received_request(&req(-1, 3, 4), 3).is_err());
        assert!(check_received_request(&[0, 0], 3).is_err());
    }

    #[test]
    fn misaligned_pointers_are_refused() {
        let mut words = [0u64; 2];
        let base = words.as_mut_ptr().cast::<u8>();
        // SAFETY: one byte into a 16-byte buffer.
        let odd = unsafe { base.add(1) }.cast::<u64>();
        // SAFETY: NULL and misaligned pointers are refused before any access; the
        // aligned one points to a writable u64.
        unsafe {
            assert!(matches!(out(odd, "x"), Err(CapiError::InvalidParam(_))));
            assert!(matches!(
                in_ref(odd.cast_const()),
                Err(CapiError::InvalidParam(_))
            ));
            assert!(out(std::ptr::null_mut::<u64>(), "x").is_err());
            assert!(matches!(in_ref(std::ptr::null::<u64>()), Ok(None)));
            *out(words.as_mut_ptr(), "x").unwrap() = 7;
            let iov = base.add(1).cast::<libc::iovec>();
            assert!(Parts::gather(iov, 1).is_err());
        }
        assert_eq!(words[0], 7);
    }

    #[test]
    fn response_headers_are_checked() {
        let m = msg(28, 0, RESPONSE_HEADER_SIZE, 4);
        assert!(check_incoming_response(&m, 28).is_ok());
        assert!(check_incoming_response(&m, 29).is_err());
        assert!(check_incoming_response(&m[..16], 16).is_err());
    }
}
