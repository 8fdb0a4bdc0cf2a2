//! A C request on a context: `coroipcc_msg_send_reply_receive` and its `_in_buf_get`
//! and zcb forms.
//!
//! One request at a time per context ([`Slot::requests`]), as corosync's coroipcc held
//! its mutex across the send and the reply. The client is out of the context for the
//! call ([`Slot::checkout`]) and the response is waited for in slices of [`SLICE`]:
//! between two, the client goes back to the context, and a dispatcher that waits for
//! it takes its turn (`slot.rs`). A slice that ends without the response leaves the
//! request in flight ([`Client::wait_response_in_place`](ipc::Client::wait_response_in_place)),
//! so nothing is lost and nothing is sent twice. A response that comes within the
//! first slice, as nearly all do, costs a lock and a wake more than a call that kept
//! the client. Waiting for room in a full request ring is not sliced (the client stays
//! out until the request is sent; dispatchers still return within their timeout).

use std::sync::PoisonError;

use ipc::ClientError;

use super::ctx::Zcb;
use super::slot::{Slot, Turn, SLICE};
use crate::error::CapiError;
use crate::message::{check_incoming_response, request_command, Outgoing, Parts};
use crate::types::{cs_error_t, ERROR_AT, REQUEST_HEADER_SIZE, RESPONSE_HEADER_SIZE, SIZE_AT};

/// Sends the request in `parts` and runs `f` on the checked response (still in the
/// ring) and its length.
fn request<R>(
    slot: &Slot,
    parts: &Parts<'_>,
    f: impl FnOnce(&ipc::ResponseRef<'_>, usize) -> R,
) -> Result<R, CapiError> {
    let Outgoing { command, size } = request_command(parts)?;
    if size > slot.request_limit {
        return Err(CapiError::InvalidParam(
            "request larger than the request_size given at connect or the server's grant",
        ));
    }
    let joined;
    let payload: &[u8] = match parts.parts.as_slice() {
        [one] if one.len() == size => one,
        many => {
            let mut all = many.concat();
            all.resize(size, 0);
            joined = all;
            &joined
        }
    };
    let _turn = slot.requests.lock().unwrap_or_else(PoisonError::into_inner);
    let mut client = slot.checkout()?;
    let id = client.send_request(command, payload)?;
    loop {
        match client.wait_response_in_place(id, Some(SLICE)) {
            Ok(response) => {
                let len = response.len();
                let mut head = [0u8; RESPONSE_HEADER_SIZE];
                let n = response.read_into(&mut head);
                check_incoming_response(&head[..n], len)?;
                return Ok(f(&response, len));
            }
            Err(ClientError::Timeout) => {}
            Err(e) => return Err(e.into()),
        }
        drop(client);
        client = slot.checkout()?;
    }
}

/// Sends a request; copies its response into the `max` bytes at `out` (cut at
/// `max`, the rest zeroed when shorter). `CS_ERR_TRY_AGAIN` when the response
/// header says so (the server's admission control), as corosync's coroipcc.
///
/// # Safety
///
/// `out` points to `max` (at most `isize::MAX`) writable bytes, which may overlap
/// the request's buffers: they are only written once the request is sent.
pub(super) unsafe fn request_copy(
    slot: &Slot,
    parts: &Parts<'_>,
    out: *mut u8,
    max: usize,
) -> Result<(), CapiError> {
    let try_again = request(slot, parts, |r, len| {
        let mut head = [0u8; RESPONSE_HEADER_SIZE];
        r.read_into(&mut head);
        if error_of(&head) == cs_error_t::CS_ERR_TRY_AGAIN as i32 {
            return true;
        }
        // SAFETY: `max` writable bytes (contract); the request's slices, which may
        // overlap them, are not used from here on.
        let out = unsafe { std::slice::from_raw_parts_mut(out, max) };
        let n = r.read_into(out);
        out[n.min(len)..].fill(0);
        false
    })?;
    if try_again {
        return Err(ClientError::TryAgain.into());
    }
    Ok(())
}

/// Sends a request; keeps a copy of its response in the calling thread's buffer of
/// the context and returns a pointer to it, valid until that thread's
/// `release(Kind::Response)` or next `request_in_buf`.
pub(super) fn request_in_buf(slot: &Slot, parts: &Parts<'_>) -> Result<*const u8, CapiError> {
    let me = std::thread::current().id();
    let mut held = slot.with(Turn::Context, None, |c| Ok(c.take_response_buffer(me)))?;
    request(slot, parts, |r, len| {
        r.read_into(held.fill(len));
    })?;
    slot.with(Turn::Context, None, |c| Ok(c.hold_response(me, held)))
}

/// Sends the request written in the zcb buffer at `ptr` (its header's `size` bytes,
/// which must fit the buffer); copies the response as [`request_copy`].
///
/// # Safety
///
/// As `request_copy` for `out`; C does not write the buffer during the call.
pub(super) unsafe fn zcb_send(
    slot: &Slot,
    ptr: *const u8,
    out: *mut u8,
    max: usize,
) -> Result<(), CapiError> {
    let zcb: std::sync::Arc<Zcb> = slot.with(Turn::Context, None, |c| c.zcb(ptr))?;
    // SAFETY: C does not write the buffer during the call (contract); `zcb` keeps it
    // allocated even if another thread frees it meanwhile.
    let whole = unsafe { zcb.bytes() };
    if whole.len() < REQUEST_HEADER_SIZE {
        return Err(CapiError::InvalidParam("zcb buffer shorter than a header"));
    }
    let mut size = [0u8; 4];
    size.copy_from_slice(&whole[SIZE_AT..SIZE_AT + 4]);
    let len = usize::try_from(i32::from_ne_bytes(size))
        .ok()
        .filter(|&n| n <= whole.len())
        .ok_or(CapiError::InvalidParam(
            "zcb header size is negative or larger than the buffer",
        ))?;
    let parts = Parts {
        parts: vec![&whole[..len]],
        total: len,
    };
    // SAFETY: forwarded contract.
    unsafe { request_copy(slot, &parts, out, max) }
}

/// The `error` field of a response header.
fn error_of(head: &[u8; RESPONSE_HEADER_SIZE]) -> i32 {
    let mut word = [0u8; 4];
    word.copy_from_slice(&head[ERROR_AT..ERROR_AT + 4]);
    i32::from_ne_bytes(word)
}
