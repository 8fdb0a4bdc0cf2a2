//! A connection's shared region: one sealed memfd holding the request, response and
//! dispatch rings at the offsets of [`RegionLayout`] (SPEC §2.2).

use std::io;
use std::os::fd::OwnedFd;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use coroipc_ring::{Consumer, MpscProducer, RawRegion};

use crate::conn::{ConnShared, Counters, OverflowPolicy};
use crate::os::{Doorbell, PeerCred, SharedMemory};
use crate::outbox::Outbox;
use crate::protocol::{RegionLayout, DISPATCH, REQUEST, RESPONSE};
use crate::server::Limits;

/// Creates the shared memory and rings of a new connection.
pub(crate) fn build_rings(
    id: u64,
    service: u16,
    cred: PeerCred,
    layout: RegionLayout,
    limits: &Limits,
    overflow: OverflowPolicy,
) -> io::Result<(OwnedFd, Consumer, Arc<ConnShared>, RegionLayout)> {
    let mut shm = SharedMemory::create("coroipc", layout.len)?;
    let memfd = shm
        .take_fd()
        .ok_or_else(|| io::Error::other("memfd already taken"))?;
    let shm = Arc::new(shm);
    let base = shm.as_ptr();
    let keep: Arc<dyn std::any::Any + Send + Sync> = shm.clone();
    let region = |i: usize| -> io::Result<RawRegion> {
        let ptr = std::ptr::NonNull::new(base.wrapping_add(layout.offsets[i]))
            .ok_or_else(|| io::Error::other("null mapping"))?;
        // SAFETY: the ring lies inside the mapping (RegionLayout sums the sizes), the
        // mapping outlives the handles (kept alive by `keep`), and it is shared only
        // with the client this connection is for.
        unsafe { RawRegion::new(ptr, layout.rings[i].region_size()) }
            .map_err(|e| io::Error::other(e.to_string()))
    };
    let ring_err = |e: coroipc_ring::AttachError| io::Error::other(e.to_string());
    // SAFETY: fresh memory; each region is used by exactly one ring handle here.
    let requests = unsafe { Consumer::create(region(REQUEST)?, &layout.rings[REQUEST]) }
        .map_err(ring_err)?
        .keep_alive(keep.clone());
    // SAFETY: as above.
    let responses = unsafe { MpscProducer::create(region(RESPONSE)?, &layout.rings[RESPONSE]) }
        .map_err(ring_err)?
        .keep_alive(keep.clone());
    // SAFETY: as above.
    let dispatch = unsafe { MpscProducer::create(region(DISPATCH)?, &layout.rings[DISPATCH]) }
        .map_err(ring_err)?
        .keep_alive(keep);
    let client_bell = Arc::new(Doorbell::new()?);
    let shared = Arc::new(ConnShared {
        id,
        service,
        cred,
        response: Outbox::new(
            responses,
            client_bell.clone(),
            limits.max_queued_response_bytes,
        ),
        dispatch: Outbox::new(
            dispatch,
            client_bell.clone(),
            limits.max_queued_dispatch_bytes,
        ),
        server_bell: Doorbell::new()?,
        client_bell,
        closing: AtomicBool::new(false),
        closed: AtomicBool::new(false),
        slow: AtomicBool::new(false),
        overflow,
        counters: Counters::default(),
    });
    Ok((memfd, requests, shared, layout))
}
