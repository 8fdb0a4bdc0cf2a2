//! A server-to-client channel: an MPSC ring, the client's doorbell (shared by the
//! connection's two outboxes), and a bounded queue behind the ring.
//!
//! Any thread may send. While the queue is empty a message goes straight into the ring;
//! when the ring is full it is queued (up to `max_queued_bytes`), and everything after
//! it queues too, so order is kept. The server thread flushes the queue when the client
//! frees space (it announces sleep on the ring, and the client's release rings the
//! server's doorbell).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use coroipc_ring::{FlowChange, MpscGrant, MpscProducer, PushError, Wake};

use crate::os::Doorbell;

/// Messages waiting behind a full ring. Invariant: `bytes` is the sum of the lengths.
#[derive(Debug, Default)]
pub(crate) struct Backlog {
    items: VecDeque<Vec<u8>>,
    bytes: usize,
}

/// Why a send did not complete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OutboxError {
    TooLarge { len: usize, max: usize },
    QueueFull,
    Corrupt,
}

/// Where a sent message went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Sent {
    /// Into the ring; a flow-control transition it caused, if any.
    Ring(Option<FlowChange>),
    /// Into the backlog.
    Queued,
}

#[derive(Debug)]
pub(crate) struct Outbox {
    pub(crate) ring: MpscProducer,
    /// The client's doorbell (one per connection, for both outboxes).
    bell: Arc<Doorbell>,
    backlog: Mutex<Backlog>,
    max_queued_bytes: usize,
}

impl Outbox {
    pub(crate) fn new(ring: MpscProducer, bell: Arc<Doorbell>, max_queued_bytes: usize) -> Self {
        Outbox {
            ring,
            bell,
            backlog: Mutex::new(Backlog::default()),
            max_queued_bytes,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Backlog> {
        // A panic while holding the lock cannot leave the backlog inconsistent (every
        // update is a single push/pop plus its byte count), so recover the guard.
        self.backlog.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn ring_bell(&self, wake: Wake) {
        if wake.is_needed() {
            if let Err(e) = self.bell.ring() {
                tracing::debug!(error = %e, "ringing a client doorbell failed");
            }
        }
    }

    /// Length of the first queued message, if any.
    pub(crate) fn backlog_front(&self) -> Option<usize> {
        self.lock().items.front().map(Vec::len)
    }

    pub(crate) fn max_message_len(&self) -> usize {
        self.ring.max_message_len()
    }

    /// Sends the concatenation of `parts`.
    pub(crate) fn send(&self, parts: &[&[u8]]) -> Result<Sent, OutboxError> {
        let len = parts
            .iter()
            .map(|p| p.len())
            .fold(0usize, usize::saturating_add);
        let max = self.ring.max_message_len();
        if len > max {
            return Err(OutboxError::TooLarge { len, max });
        }
        let mut backlog = self.lock();
        if backlog.items.is_empty() {
            match self.ring.try_send_vectored(parts) {
                Ok(published) => {
                    drop(backlog);
                    self.ring_bell(published.wake);
                    return Ok(Sent::Ring(published.flow));
                }
                Err(PushError::Full) => {}
                Err(PushError::TooLarge { len, max }) => {
                    return Err(OutboxError::TooLarge { len, max })
                }
                Err(PushError::Corrupt(_)) => return Err(OutboxError::Corrupt),
            }
        }
        if backlog.bytes.saturating_add(len) > self.max_queued_bytes {
            return Err(OutboxError::QueueFull);
        }
        backlog.items.push_back(parts.concat());
        backlog.bytes += len;
        Ok(Sent::Queued)
    }

    /// Reserves space in the ring for zero-copy filling; `None` when the ring has no
    /// room now or messages are queued (which must go first).
    pub(crate) fn reserve(&self, len: usize) -> Result<Option<OutboxGrant<'_>>, OutboxError> {
        let max = self.ring.max_message_len();
        if len > max {
            return Err(OutboxError::TooLarge { len, max });
        }
        let backlog = self.lock();
        if !backlog.items.is_empty() {
            return Ok(None);
        }
        match self.ring.try_reserve(len) {
            Ok(grant) => Ok(Some(OutboxGrant {
                grant,
                _backlog: backlog,
                outbox: self,
            })),
            Err(PushError::Full) => Ok(None),
            Err(PushError::TooLarge { len, max }) => Err(OutboxError::TooLarge { len, max }),
            Err(PushError::Corrupt(_)) => Err(OutboxError::Corrupt),
        }
    }

    /// Moves queued messages into the ring while they fit. Returns the length of the
    /// first message still queued (`None` when the backlog is empty) and any flow
    /// change.
    pub(crate) fn flush(&self) -> Result<(Option<usize>, Option<FlowChange>), OutboxError> {
        let mut backlog = self.lock();
        let mut wake = Wake::NotNeeded;
        let mut flow = None;
        while let Some(front) = backlog.items.front() {
            match self.ring.try_send(front) {
                Ok(published) => {
                    wake = wake.or(published.wake);
                    flow = published.flow.or(flow);
                    let len = front.len();
                    backlog.items.pop_front();
                    backlog.bytes -= len;
                }
                Err(PushError::Full) => break,
                Err(_) => return Err(OutboxError::Corrupt),
            }
        }
        let front = backlog.items.front().map(Vec::len);
        drop(backlog);
        self.ring_bell(wake);
        Ok((front, flow))
    }

    /// Messages and bytes queued.
    pub(crate) fn backlog(&self) -> (usize, usize) {
        let b = self.lock();
        (b.items.len(), b.bytes)
    }

    /// Drops everything queued (the connection is gone).
    pub(crate) fn clear(&self) {
        let mut b = self.lock();
        b.items.clear();
        b.bytes = 0;
    }
}

/// Zero-copy space in an outbox's ring. Holds the backlog lock so nothing overtakes it.
pub(crate) struct OutboxGrant<'a> {
    grant: MpscGrant<'a>,
    _backlog: MutexGuard<'a, Backlog>,
    outbox: &'a Outbox,
}

impl OutboxGrant<'_> {
    pub(crate) fn as_mut_slice(&mut self) -> &mut [u8] {
        self.grant.as_mut_slice()
    }

    pub(crate) fn truncate(&mut self, len: usize) {
        self.grant.truncate(len);
    }

    pub(crate) fn commit(self) -> Option<FlowChange> {
        let OutboxGrant {
            grant,
            _backlog,
            outbox,
        } = self;
        let published = grant.commit();
        drop(_backlog);
        outbox.ring_bell(published.wake);
        published.flow
    }
}
