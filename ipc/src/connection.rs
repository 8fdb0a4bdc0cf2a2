//! A connection as the service sees it: [`Connection`], a cheap handle usable from any
//! thread (dispatch, flow-control state, statistics, disconnect), over the state the
//! server thread shares with those threads (`ConnShared`: the two outboxes, the
//! doorbells, the closing flags). Why a connection ends: [`DisconnectReason`].

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use coroipc_ring::{BytesMut, MpscProducer};

use crate::error::{RingKind, SendError, Violation};
use crate::os::{Doorbell, PeerCred};
use crate::outbox::{Bells, Outbox, OutboxError, OutboxGrant};
use crate::protocol::{ResponseHeader, RESPONSE_HEADER_LEN};
use crate::releasable::ConnRegion;
use crate::stats::{ConnCounters, ConnStats, Sent};

/// What to do when a client's dispatch ring and the queue behind it are full.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum OverflowPolicy {
    /// Refuse the message with [`SendError::TryAgain`]; the client stays connected.
    #[default]
    TryAgain,
    /// Disconnect the slow client.
    Disconnect,
}

/// Why a connection ended (given to the disconnect callback).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DisconnectReason {
    /// The client closed its end (exit, crash, `kill -9`, or dropping the connection).
    ClientClosed,
    /// The client broke the protocol or corrupted its shared memory.
    ProtocolViolation(Violation),
    /// The client did not keep up with dispatch and the policy is `Disconnect`.
    SlowClient,
    /// The service (through a [`Connection`]) asked for the disconnect.
    Requested,
    /// The server is shutting down.
    ServerShutdown,
}

/// State shared by the server thread and the handles of one connection.
#[derive(Debug)]
pub(crate) struct ConnShared {
    pub(crate) id: u64,
    pub(crate) service: u16,
    pub(crate) cred: PeerCred,
    pub(crate) response: Outbox,
    pub(crate) dispatch: Outbox,
    /// The connection's doorbells (the outboxes hold them too): `ring_self` wakes the
    /// server thread for this connection, `ring_peer` the client (a response, request
    /// space or a dispatch message).
    pub(crate) bell: Bells,
    /// The mapping under the outboxes' rings (they keep it alive), released with the
    /// doorbells when the connection ends ([`ConnShared::release`]).
    pub(crate) region: ConnRegion,
    /// Set by a handle or the overflow policy; the server thread disconnects.
    pub(crate) closing: AtomicBool,
    /// Set when the connection is gone; every send fails from then on.
    pub(crate) closed: AtomicBool,
    pub(crate) slow: AtomicBool,
    /// The protocol violation that closed the connection, if one did.
    pub(crate) fault: OnceLock<Violation>,
    pub(crate) overflow: OverflowPolicy,
    /// The server's own wake-up for `close_soon` (a descriptor the client cannot
    /// write, unlike `bell`).
    pub(crate) work: Arc<WorkQueue>,
    pub(crate) counters: ConnCounters,
}

/// What a new connection sends through: its response and dispatch rings and the
/// doorbells their outboxes ring.
pub(crate) struct Outgoing {
    pub(crate) region: ConnRegion,
    pub(crate) responses: MpscProducer,
    pub(crate) dispatch: MpscProducer,
    pub(crate) bells: Bells,
}

/// How many bytes of each kind may wait behind a full ring of one connection (the
/// server's `Limits::max_queued_response_bytes` / `max_queued_dispatch_bytes`).
#[derive(Clone, Copy, Debug)]
pub(crate) struct QueueBounds {
    pub(crate) responses: usize,
    pub(crate) dispatch: usize,
}

impl ConnShared {
    /// The shared state of a new connection: its two outboxes over its outgoing rings,
    /// ringing its two doorbells.
    pub(crate) fn new(
        id: u64,
        service: u16,
        cred: PeerCred,
        Outgoing {
            region,
            responses,
            dispatch,
            bells,
        }: Outgoing,
        queued: QueueBounds,
        overflow: OverflowPolicy,
        work: Arc<WorkQueue>,
    ) -> Arc<ConnShared> {
        // Only dispatch flow control is reported to the service.
        let response = Outbox::new(responses, bells.clone(), queued.responses, false);
        let dispatch = Outbox::new(dispatch, bells.clone(), queued.dispatch, true);
        Arc::new(ConnShared {
            id,
            service,
            cred,
            response,
            dispatch,
            bell: bells,
            region,
            closing: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            slow: AtomicBool::new(false),
            fault: OnceLock::new(),
            overflow,
            work,
            counters: ConnCounters::default(),
        })
    }

    /// The largest response payload the response ring carries.
    pub(crate) fn max_response_len(&self) -> usize {
        self.response
            .max_message_len()
            .saturating_sub(RESPONSE_HEADER_LEN)
    }

    /// The server lets the connection go (server thread; its session dropped, or its
    /// `on_connect` refused): every send fails from now on, and when handles to it
    /// live on besides `shared` (a service keeps a [`Connection`] or a
    /// `DeferredResponse`), its descriptors and the client's memory are released now
    /// rather than with the last of them (see `crate::releasable`). The one place
    /// that decides whether to release.
    pub(crate) fn let_go(shared: &Arc<ConnShared>) {
        shared.closed.store(true, Ordering::Release);
        if Arc::strong_count(shared) > 1 {
            shared.release();
        }
    }

    /// Releases what [`let_go`](Self::let_go) says: the outboxes refuse every send
    /// (under their locks, so no writer is left in the ring), then the doorbells close
    /// and the region's pages go.
    fn release(&self) {
        self.response.close();
        self.dispatch.close();
        self.bell.close();
        // SAFETY: both outboxes are closed: every writer of the response and dispatch
        // rings checks that under the outbox's lock, and `close` took the lock after
        // any sender or grant in them. The request ring is the server thread's, which
        // calls this once done with the session (its drop, or a refused connect that
        // never had one). Nothing else reads the region: the producers' flow state and
        // sizes are private copies.
        unsafe { self.region.release() };
    }

    pub(crate) fn check_open(&self) -> Result<(), SendError> {
        if self.closed.load(Ordering::Acquire) || self.closing.load(Ordering::Acquire) {
            Err(SendError::Disconnected)
        } else {
            Ok(())
        }
    }

    /// The one overflow decision: what a failed send into `ring` means. Responses are
    /// never refused for space (a client pipelining past the response ring and its
    /// queue is disconnected); dispatch follows the service's [`OverflowPolicy`]. A
    /// corrupt ring closes the connection, recording why.
    pub(crate) fn overflow(&self, ring: RingKind, e: OutboxError) -> SendError {
        let policy = match ring {
            RingKind::Dispatch => self.overflow,
            _ => OverflowPolicy::Disconnect,
        };
        match e {
            OutboxError::TooLarge { len, max } => SendError::TooLarge { len, max },
            OutboxError::QueueFull if policy == OverflowPolicy::TryAgain => SendError::TryAgain,
            OutboxError::QueueFull => {
                self.slow.store(true, Ordering::Release);
                self.close_soon();
                SendError::Disconnected
            }
            OutboxError::Corrupt(cause) => {
                let _ = self.fault.set(Violation::Ring { ring, cause });
                self.close_soon();
                SendError::Disconnected
            }
            OutboxError::Closed => SendError::Disconnected,
        }
    }

    /// Asks the server thread to disconnect this client.
    pub(crate) fn close_soon(&self) {
        self.closing.store(true, Ordering::Release);
        self.work.push(self.id);
    }

    /// Why the connection is closing, once the server thread looks.
    pub(crate) fn closing_reason(&self) -> DisconnectReason {
        if self.slow.load(Ordering::Acquire) {
            DisconnectReason::SlowClient
        } else if let Some(v) = self.fault.get() {
            DisconnectReason::ProtocolViolation(*v)
        } else {
            DisconnectReason::Requested
        }
    }

    pub(crate) fn send_response(
        &self,
        id: u64,
        status: i32,
        parts: &[&[u8]],
    ) -> Result<(), SendError> {
        self.check_open()?;
        let header = ResponseHeader { id, status }.encode();
        // The header and the parts, on the stack for the usual one or two parts.
        let sent = match *parts {
            [] => self.response.send(&[&header]),
            [a] => self.response.send(&[&header, a]),
            [a, b] => self.response.send(&[&header, a, b]),
            _ => {
                let mut all: Vec<&[u8]> = Vec::with_capacity(parts.len() + 1);
                all.push(&header);
                all.extend_from_slice(parts);
                self.response.send(&all)
            }
        };
        // Responses are never refused for space: a client that pipelines past the
        // response ring and the queue is disconnected.
        let sent = sent.map_err(|e| self.overflow(RingKind::Response, e))?;
        self.counters.response(payload_len(parts), sent);
        Ok(())
    }

    pub(crate) fn send_dispatch(&self, parts: &[&[u8]]) -> Result<(), SendError> {
        self.check_open()?;
        let sent = self.dispatch.send(parts).map_err(|e| {
            let e = self.overflow(RingKind::Dispatch, e);
            if e == SendError::TryAgain {
                self.counters.dispatch_refused();
            }
            e
        })?;
        self.counters.dispatch(payload_len(parts), sent);
        Ok(())
    }
}

impl ConnShared {
    /// Sends `msgs` in order: what fits into the ring with one publication, the rest
    /// into the queue (one lock, at most one doorbell and one wake of the server).
    /// Returns how many were accepted; an error only when none was. A refusal that
    /// closes the connection (policy `Disconnect`, corruption) is acted on here even
    /// when some were accepted: later sends say `Disconnected`.
    pub(crate) fn send_dispatch_batch(&self, msgs: &[&[u8]]) -> Result<usize, SendError> {
        self.check_open()?;
        let out = self.dispatch.send_batch(msgs);
        let in_ring = &msgs[..out.ring];
        self.counters
            .dispatch_many(out.ring, in_ring.iter().map(|m| m.len()).sum());
        for msg in &msgs[out.ring..out.ring + out.queued] {
            self.counters.dispatch(msg.len(), Sent::Queued);
        }
        let accepted = out.ring + out.queued;
        let Some(e) = out.error else {
            return Ok(accepted);
        };
        let e = self.overflow(RingKind::Dispatch, e);
        if e == SendError::TryAgain {
            self.counters.dispatch_refused();
        }
        if accepted == 0 {
            Err(e)
        } else {
            Ok(accepted)
        }
    }
}

/// Connections the server thread must look at, and the server-owned doorbell that
/// says so. Threat answered: `bell` is shared with the client, which can
/// saturate its counter (every later `ring` then fails with `EAGAIN` and no event
/// fires); a disconnect request must not depend on a descriptor the client controls.
#[derive(Debug)]
pub(crate) struct WorkQueue {
    pub(crate) bell: Doorbell,
    ids: std::sync::Mutex<Vec<u64>>,
}

impl WorkQueue {
    pub(crate) fn new() -> io::Result<WorkQueue> {
        Ok(WorkQueue {
            bell: Doorbell::new()?,
            ids: std::sync::Mutex::new(Vec::new()),
        })
    }

    /// Asks the server thread to look at connection `id`.
    pub(crate) fn push(&self, id: u64) {
        self.ids
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(id);
        if let Err(e) = self.bell.ring() {
            tracing::warn!(error = %e, "cannot wake the server thread");
        }
    }

    /// The ids pushed since the last call (the server thread drains the bell first).
    pub(crate) fn take(&self) -> Vec<u64> {
        std::mem::take(
            &mut *self
                .ids
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }
}

/// Total length of a vectored message.
pub(crate) fn payload_len(parts: &[&[u8]]) -> usize {
    parts.iter().map(|p| p.len()).fold(0, usize::saturating_add)
}

/// A connection as the service sees it: given to every callback, and usable from any
/// thread (clone it): the client's id, service and credentials; dispatch messages;
/// flow-control state and statistics; a disconnect request. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Connection {
    pub(crate) shared: Arc<ConnShared>,
}

impl Connection {
    /// The server's id for this connection.
    pub fn id(&self) -> u64 {
        self.shared.id
    }

    /// The service the client connected to.
    pub fn service(&self) -> u16 {
        self.shared.service
    }

    /// The client's credentials (from `SO_PEERCRED`).
    pub fn credentials(&self) -> PeerCred {
        self.shared.cred
    }

    /// True until the connection is closed or a disconnect was requested.
    pub fn is_connected(&self) -> bool {
        self.shared.check_open().is_ok()
    }

    /// Sends a dispatch (asynchronous, server → client) message.
    ///
    /// # Errors
    ///
    /// [`SendError::Disconnected`] once the connection is closing or closed;
    /// [`SendError::TooLarge`] beyond
    /// [`max_dispatch_len`](Connection::max_dispatch_len); [`SendError::TryAgain`] when
    /// the ring and the queue behind it are full and the service's policy is `TryAgain`
    /// (with `Disconnect` the client is dropped and the error is `Disconnected`).
    pub fn dispatch_send(&self, msg: &[u8]) -> Result<(), SendError> {
        self.shared.send_dispatch(&[msg])
    }

    /// Sends several dispatch messages, in order, with one publication for as many as
    /// the ring takes now (one index update and at most one doorbell, instead of one
    /// per message: the way to stream). Messages that do not fit are queued or refused
    /// as [`dispatch_send`](Connection::dispatch_send) does. Returns how many were
    /// accepted, in order: fewer than `msgs.len()` when one was refused (send the rest
    /// again later; sent alone, the first of them reports why). The client sees a
    /// batch only once all of it is written: batch small messages (a few KiB in all),
    /// not large ones.
    ///
    /// # Errors
    ///
    /// As [`dispatch_send`](Connection::dispatch_send), when not even the first
    /// message was accepted.
    pub fn dispatch_send_batch(&self, msgs: &[&[u8]]) -> Result<usize, SendError> {
        self.shared.send_dispatch_batch(msgs)
    }

    /// Sends the concatenation of `parts` as one dispatch message.
    ///
    /// # Errors
    ///
    /// As [`dispatch_send`](Connection::dispatch_send).
    pub fn dispatch_send_vectored(&self, parts: &[&[u8]]) -> Result<(), SendError> {
        self.shared.send_dispatch(parts)
    }

    /// Reserves `len` bytes in the dispatch ring to fill in place. Fails with
    /// [`SendError::TryAgain`] when the ring has no room now or messages are queued
    /// (fall back to [`dispatch_send`](Connection::dispatch_send) then).
    ///
    /// # Errors
    ///
    /// [`SendError::TryAgain`] when the ring has no room now or messages are queued;
    /// otherwise as [`dispatch_send`](Connection::dispatch_send).
    pub fn dispatch_reserve(&self, len: usize) -> Result<DispatchGrant<'_>, SendError> {
        self.shared.check_open()?;
        match self.shared.dispatch.reserve(len) {
            Ok(Some(grant)) => Ok(DispatchGrant {
                grant,
                shared: &self.shared,
            }),
            Ok(None) => Err(SendError::TryAgain),
            Err(e) => Err(self.shared.overflow(RingKind::Dispatch, e)),
        }
    }

    /// The largest dispatch message this connection carries.
    pub fn max_dispatch_len(&self) -> usize {
        self.shared.dispatch.max_message_len()
    }

    /// Whether the client's dispatch ring is in flow control.
    pub fn flow_control(&self) -> bool {
        self.shared.dispatch.flow_control()
    }

    /// Current counters (relaxed reads: cheap, never blocks the server thread
    /// beyond the queue locks held for a moment).
    pub fn stats(&self) -> ConnStats {
        let response_queue = self.shared.response.backlog().0;
        self.shared
            .counters
            .read(self.shared.dispatch.backlog(), response_queue)
    }

    /// Asks the server thread to disconnect this client.
    pub fn disconnect(&self) {
        self.shared.close_soon();
    }
}

/// Zero-copy space in a client's dispatch ring: write it through the [`BytesMut`] it
/// derefs to (`write_at`, `fill`, `copy_from`: atomic word stores, sound whatever the
/// client does to the memory meanwhile; `unsafe as_mut_slice_trusted`), then commit.
///
/// While it lives, other sends into this connection's dispatch ring wait for it (it
/// keeps the ring's order): fill and commit it promptly, and do not send on the same
/// connection's dispatch from the thread that holds it (that would wait forever).
pub struct DispatchGrant<'a> {
    grant: OutboxGrant<'a>,
    shared: &'a ConnShared,
}

impl<'a> std::ops::Deref for DispatchGrant<'a> {
    type Target = BytesMut<'a>;

    fn deref(&self) -> &BytesMut<'a> {
        &self.grant
    }
}

impl std::ops::DerefMut for DispatchGrant<'_> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.grant
    }
}

impl DispatchGrant<'_> {
    /// Shrinks the message.
    pub fn truncate(&mut self, len: usize) {
        self.grant.truncate(len);
    }

    /// Publishes the message.
    pub fn commit(self) {
        let len = self.grant.len();
        self.grant.commit();
        self.shared.counters.dispatch(len, Sent::Ring);
    }
}
