//! A connection's shared region: one sealed memfd holding the request, response and
//! dispatch rings at the offsets of [`RegionLayout`] (SPEC §2.2). The server
//! [`create`]s it, the client [`attach`]es to it; both map ring `i` through the one
//! function [`ring_region`], from a layout each side computes itself from the granted
//! capacities (never from an offset the peer sent).

use std::any::Any;
use std::io;
use std::os::fd::OwnedFd;
use std::ptr::NonNull;
use std::sync::Arc;

use coroipc_ring::{AttachError, Consumer, FlowWatch, MpscProducer, Producer, RawRegion};

use crate::error::{ProtocolError, RingKind};
use crate::os::SharedMemory;
use crate::protocol::{RegionLayout, DISPATCH, REQUEST, RESPONSE};
use crate::releasable::ConnRegion;

/// The server's handles on a new connection's rings.
pub(crate) struct ServerRings {
    /// The mapping the three handles keep alive, to release its pages when the
    /// connection ends (see `crate::releasable`).
    pub(crate) region: ConnRegion,
    pub(crate) requests: Consumer,
    pub(crate) responses: MpscProducer,
    pub(crate) dispatch: MpscProducer,
}

/// The client's handles on its connection's rings.
pub(crate) struct ClientRings {
    pub(crate) requests: Producer,
    pub(crate) responses: Consumer,
    pub(crate) dispatch: Consumer,
    /// The dispatch ring's flow word, readable from any thread (it holds the mapping).
    pub(crate) dispatch_flow: FlowWatch,
}

/// The kind of ring `i` of a layout.
fn kind(i: usize) -> RingKind {
    match i {
        REQUEST => RingKind::Request,
        RESPONSE => RingKind::Response,
        _ => RingKind::Dispatch,
    }
}

/// Ring `i` of `layout` inside `shm`.
fn ring_region(
    shm: &SharedMemory,
    layout: &RegionLayout,
    i: usize,
) -> Result<RawRegion, AttachError> {
    let ptr = NonNull::new(shm.as_ptr().wrapping_add(layout.offsets[i]))
        .ok_or(AttachError::Misaligned)?;
    // SAFETY: `layout` was computed by this process from the granted capacities and
    // the mapping is `layout.len` bytes (checked at creation or adoption), so the ring
    // lies inside it; the mapping outlives every ring handle (each keeps `shm` alive).
    // The peer may write anything there, which the ring handles validate.
    unsafe { RawRegion::new(ptr, layout.rings[i].region_size()) }
}

/// Creates the memfd and the three rings of a new connection; returns the memfd to
/// send (and then close) and the server's handles.
pub(crate) fn create(layout: &RegionLayout) -> io::Result<(OwnedFd, ServerRings)> {
    let mut shm = SharedMemory::create("coroipc", layout.len)?;
    let memfd = shm
        .take_fd()
        .ok_or_else(|| io::Error::other("memfd already taken"))?;
    let shm = Arc::new(shm);
    let keep: Arc<dyn Any + Send + Sync> = shm.clone();
    let err = |e: AttachError| io::Error::new(io::ErrorKind::InvalidInput, e.to_string());
    let region = |i| ring_region(&shm, layout, i).map_err(err);
    // The client's request producer is SPSC: an abandoned-reservation frame there is
    // hostile (each one a step the server would take for free).
    // SAFETY: fresh memory, shared only with this connection's client; each region is
    // used by exactly one ring handle in this process.
    let requests = unsafe { Consumer::create(region(REQUEST)?, &layout.rings[REQUEST]) }
        .map_err(err)?
        .refuse_abandoned()
        .keep_alive(keep.clone());
    // SAFETY: as above.
    let responses = unsafe { MpscProducer::create(region(RESPONSE)?, &layout.rings[RESPONSE]) }
        .map_err(err)?
        .keep_alive(keep.clone());
    // SAFETY: as above.
    let dispatch = unsafe { MpscProducer::create(region(DISPATCH)?, &layout.rings[DISPATCH]) }
        .map_err(err)?
        .keep_alive(keep);
    Ok((
        memfd,
        ServerRings {
            region: ConnRegion(shm),
            requests,
            responses,
            dispatch,
        },
    ))
}

/// Verifies the server's memfd (sealed, the layout's size), maps it (closing the fd)
/// and attaches to the three rings, checking each has the granted capacity.
pub(crate) fn attach(memfd: OwnedFd, layout: &RegionLayout) -> Result<ClientRings, ProtocolError> {
    let shm = Arc::new(SharedMemory::from_fd_verified(memfd, layout.len)?);
    let keep: Arc<dyn Any + Send + Sync> = shm.clone();
    let fail = |i: usize| {
        move |cause| ProtocolError::Ring {
            ring: kind(i),
            cause,
        }
    };
    let granted = |i: usize, capacity: usize| {
        if capacity == layout.rings[i].capacity {
            Ok(())
        } else {
            Err(fail(i)(AttachError::Mismatch))
        }
    };
    let region = |i| ring_region(&shm, layout, i).map_err(fail(i));
    // SAFETY: the region is inside the verified, sealed mapping, kept alive by the
    // handle; one handle per ring in this process; the server may write anything
    // there, which the handles validate.
    let requests = unsafe { Producer::attach(region(REQUEST)?) }
        .map_err(fail(REQUEST))?
        .keep_alive(keep.clone());
    granted(REQUEST, requests.config().capacity)?;
    // SAFETY: as above.
    let responses = unsafe { Consumer::attach(region(RESPONSE)?) }
        .map_err(fail(RESPONSE))?
        .keep_alive(keep.clone());
    granted(RESPONSE, responses.config().capacity)?;
    // SAFETY: as above.
    let dispatch = unsafe { Consumer::attach(region(DISPATCH)?) }
        .map_err(fail(DISPATCH))?
        .keep_alive(keep);
    granted(DISPATCH, dispatch.config().capacity)?;
    // SAFETY: `shm` is the mapping the dispatch ring lies in; the watch holds it.
    let dispatch_flow = unsafe { dispatch.flow_watch(shm) };
    Ok(ClientRings {
        requests,
        responses,
        dispatch,
        dispatch_flow,
    })
}
