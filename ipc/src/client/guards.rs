//! Zero-copy guards: a response or a dispatch message still in shared memory,
//! released (and the server woken if it waits for the space) when dropped.
//!
//! Threat answered: the bytes are in memory the server can write at any time. Handing
//! out `&[u8]` over them would be a data race in Rust's model (and a parse of them
//! could change under the caller, the double-fetch pattern). So the guards copy out
//! (`read_into`, `read_at`, `to_vec`: atomic word loads, one pass), and a borrowed
//! slice is only given by the `unsafe` [`ResponseRef::as_slice_trusted`], whose caller
//! promises that the server does not write the bytes while the slice lives.

use std::mem::ManuallyDrop;

use coroipc_ring::{Bytes, ReadGrant};

use super::frame::ResponseFrame;
use crate::os::PeerBell;

/// Releases `grant` into its ring, ringing the server if it waits for space.
fn release(grant: ReadGrant<'_>, server_bell: &PeerBell) {
    if grant.release().is_needed() {
        if let Err(e) = server_bell.ring_peer() {
            tracing::debug!(error = %e, "ringing the server doorbell failed");
        }
    }
}

/// Where a response's payload is.
pub(crate) enum Body<'a> {
    /// Still in the response ring, after the response header.
    Ring {
        frame: Option<ResponseFrame<'a>>,
        server_bell: &'a PeerBell,
    },
    /// Copied out earlier (a response stashed while waiting for another).
    Owned(Vec<u8>),
}

/// A response, possibly still in shared memory; released when dropped.
pub struct ResponseRef<'a> {
    pub(crate) id: u64,
    pub(crate) command: u16,
    pub(crate) status: i32,
    pub(crate) body: Body<'a>,
}

impl ResponseRef<'_> {
    /// The request id answered.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The command of the request answered.
    pub fn command(&self) -> u16 {
        self.command
    }

    /// 0 or a service status.
    pub fn status(&self) -> i32 {
        self.status
    }

    /// Payload length.
    pub fn len(&self) -> usize {
        match &self.body {
            Body::Ring { frame: Some(f), .. } => f.payload().len(),
            Body::Ring { frame: None, .. } => 0,
            Body::Owned(v) => v.len(),
        }
    }

    /// True for an empty payload.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Copies payload bytes `at..at + dst.len()` into `dst`.
    ///
    /// # Panics
    /// If the range exceeds the payload (a caller bug; see [`len`](Self::len)).
    pub fn read_at(&self, at: usize, dst: &mut [u8]) {
        if dst.is_empty() && at <= self.len() {
            return;
        }
        match &self.body {
            Body::Ring { frame: Some(f), .. } => f.payload().read_at(at, dst),
            Body::Ring { frame: None, .. } => panic!("read past the payload"),
            Body::Owned(v) => {
                let range = at.checked_add(dst.len()).and_then(|end| v.get(at..end));
                dst.copy_from_slice(range.expect("read past the payload"));
            }
        }
    }

    /// Copies the payload (or its first `dst.len()` bytes) into `dst`; returns how
    /// many bytes were copied.
    pub fn read_into(&self, dst: &mut [u8]) -> usize {
        let n = dst.len().min(self.len());
        self.read_at(0, &mut dst[..n]);
        n
    }

    /// The payload, copied into a new `Vec`.
    pub fn to_vec(&self) -> Vec<u8> {
        let mut out = vec![0u8; self.len()];
        self.read_at(0, &mut out);
        out
    }

    /// The payload as a `Vec`: a stashed one moved out (it was copied once already,
    /// when stashed), one in the ring copied. The view is empty afterwards.
    pub(crate) fn take_vec(&mut self) -> Vec<u8> {
        match &mut self.body {
            Body::Owned(data) => std::mem::take(data),
            Body::Ring { .. } => self.to_vec(),
        }
    }

    /// The payload in place, without a copy.
    ///
    /// # Safety
    ///
    /// The server must be trusted not to write these bytes while the slice lives (a
    /// well-behaved server never does: the space is the client's until released).
    /// A hostile server writing them makes this a data race.
    pub unsafe fn as_slice_trusted(&self) -> &[u8] {
        match &self.body {
            // SAFETY: the caller trusts the server (this function's contract).
            Body::Ring { frame: Some(f), .. } => unsafe { f.payload().as_slice_trusted() },
            Body::Ring { frame: None, .. } => &[],
            Body::Owned(v) => v,
        }
    }
}

impl std::fmt::Debug for ResponseRef<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseRef")
            .field("id", &self.id)
            .field("status", &self.status)
            .field("len", &self.len())
            .finish()
    }
}

impl Drop for ResponseRef<'_> {
    fn drop(&mut self) {
        if let Body::Ring { frame, server_bell } = &mut self.body {
            if let Some(f) = frame.take() {
                release(f.into_grant(), server_bell);
            }
        }
    }
}

/// A dispatch message in shared memory, read through the [`Bytes`] it derefs to
/// (`len`, `read_at`, `read_into`, `to_vec`: copies with atomic word loads; `unsafe
/// as_slice_trusted`); released when dropped.
pub struct DispatchMsg<'a> {
    /// Taken only by `drop`.
    grant: ManuallyDrop<ReadGrant<'a>>,
    server_bell: &'a PeerBell,
    /// What `drop` does: release the message (and ring the server if it waits for
    /// the space), or only consume it, for a batch released together.
    release: bool,
}

impl<'a> DispatchMsg<'a> {
    /// A message the guard releases when dropped.
    pub(crate) fn new(grant: ReadGrant<'a>, server_bell: &'a PeerBell) -> Self {
        DispatchMsg {
            grant: ManuallyDrop::new(grant),
            server_bell,
            release: true,
        }
    }

    /// A message of a batch: dropping it only consumes it; the caller releases the
    /// batch.
    pub(crate) fn in_batch(grant: ReadGrant<'a>, server_bell: &'a PeerBell) -> Self {
        DispatchMsg {
            grant: ManuallyDrop::new(grant),
            server_bell,
            release: false,
        }
    }
}

impl<'a> std::ops::Deref for DispatchMsg<'a> {
    type Target = Bytes<'a>;

    fn deref(&self) -> &Bytes<'a> {
        &self.grant
    }
}

impl std::fmt::Debug for DispatchMsg<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DispatchMsg")
            .field("len", &self.len())
            .finish()
    }
}

impl Drop for DispatchMsg<'_> {
    fn drop(&mut self) {
        // SAFETY: taken once, here, and `self.grant` is not used after.
        let grant = unsafe { ManuallyDrop::take(&mut self.grant) };
        if self.release {
            release(grant, self.server_bell);
        } else {
            grant.consume();
        }
    }
}
