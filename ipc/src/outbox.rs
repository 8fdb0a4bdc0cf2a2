//! A server-to-client channel: an MPSC ring, the two doorbells of its connection, a
//! bounded queue behind the ring, and (for dispatch) the flow-control report.
//!
//! Any thread may send. While the queue is empty a message goes straight into the ring;
//! when the ring is full it is queued (up to `max_queued_bytes`), and everything after
//! it queues too, so order is kept. The server thread flushes the queue when the
//! client frees space (it announces sleep on the ring, and the client's release rings
//! the server's doorbell).
//!
//! Each message's length is checked once: by the ring on the direct path, by
//! [`Outbox::check_len`] on every other (a queued message must fit the ring when it is
//! flushed; a reservation refused because messages are queued must still say when it
//! could never fit).
//!
//! Whether the server thread must look is decided here, once, for every way of
//! sending (a copy, a batch, a committed grant): when a message was queued (it must
//! be flushed) or, on an outbox with a [`FlowReport`], when a publication crossed a
//! watermark (the service must be told). The outbox rings the server's doorbell
//! itself; callers only count. Everyone asks the outbox about flow control, never its
//! ring (see [`crate::flow`]).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use coroipc_ring::{BytesMut, Corruption, MpscGrant, MpscProducer, Published, PushError, Wake};

use crate::error::push_corruption;
use crate::flow::FlowReport;
use crate::releasable::ConnBells;
use crate::stats::Sent;

/// Messages waiting behind a full ring. Invariant: `bytes` is the sum of the lengths.
#[derive(Debug, Default)]
pub(crate) struct Backlog {
    items: VecDeque<Vec<u8>>,
    /// Payload bytes of `items` (what the statistics report).
    bytes: usize,
    /// Set once the connection is gone ([`Outbox::close`]); never cleared. Every
    /// writer of the ring looks at it under the lock, so once it is set (under the
    /// lock) nothing writes the ring any more and its memory may be let go.
    closed: bool,
}

/// What a queued message costs beyond its payload against the queue's bound: its
/// `Vec` in the deque and its allocation. Counted so that the bound bounds memory: by
/// payload alone, empty messages to a client that never reads queued without limit,
/// and 1-byte ones took ~50 times the bound (audit of 2026-12-06).
pub(crate) const QUEUED_ITEM_COST: usize = 64;

impl Backlog {
    /// What the queue holds against its bound, `len` more bytes as one more message
    /// included.
    fn charged_with(&self, len: usize) -> usize {
        (self.items.len() + 1)
            .saturating_mul(QUEUED_ITEM_COST)
            .saturating_add(self.bytes)
            .saturating_add(len)
    }
}

/// Why a send did not complete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OutboxError {
    TooLarge {
        len: usize,
        max: usize,
    },
    QueueFull,
    Corrupt(Corruption),
    /// The connection is gone ([`Outbox::close`]).
    Closed,
}

impl From<PushError> for OutboxError {
    fn from(e: PushError) -> Self {
        match e {
            PushError::TooLarge { len, max } => OutboxError::TooLarge { len, max },
            PushError::Corrupt(c) => OutboxError::Corrupt(c),
            // Callers handle `Full` themselves; a full ring is not an error here.
            PushError::Full => OutboxError::QueueFull,
            _ => OutboxError::Corrupt(Corruption::Earlier),
        }
    }
}

/// What [`Outbox::send_batch`] did: `ring` messages into the ring, then `queued` into
/// the queue, then `error` for the next one (if any).
#[derive(Debug, Default)]
pub(crate) struct BatchOutcome {
    pub(crate) ring: usize,
    pub(crate) queued: usize,
    pub(crate) error: Option<OutboxError>,
}

/// The doorbells of a connection, which both its outboxes ring: the peer (the client:
/// a message was published) and this side (the server thread: a message was queued,
/// or flow control changed).
pub(crate) type Bells = Arc<ConnBells>;

#[derive(Debug)]
pub(crate) struct Outbox {
    ring: MpscProducer,
    bells: Bells,
    backlog: Mutex<Backlog>,
    /// `backlog.items.len()` and `backlog.bytes`, readable without the lock (written
    /// under it): statistics and the server's "anything queued?" never wait.
    queued: AtomicUsize,
    queued_bytes: AtomicUsize,
    max_queued_bytes: usize,
    /// What the service was last told of this ring's flow control; `None` for a ring
    /// nobody is told about (responses).
    flow: Option<FlowReport>,
}

impl Outbox {
    /// An outbox over `ring`; `reports_flow` gives it a [`FlowReport`].
    pub(crate) fn new(
        ring: MpscProducer,
        bells: Bells,
        max_queued_bytes: usize,
        reports_flow: bool,
    ) -> Self {
        Outbox {
            ring,
            bells,
            backlog: Mutex::new(Backlog::default()),
            queued: AtomicUsize::new(0),
            queued_bytes: AtomicUsize::new(0),
            max_queued_bytes,
            flow: reports_flow.then(FlowReport::default),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Backlog> {
        // A panic while holding the lock cannot leave the backlog inconsistent (every
        // update is a single push/pop plus its byte count), so recover the guard.
        self.backlog.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The lock for the server thread once it has seen messages queued (`has_backlog`):
    /// then no zero-copy grant holds it (a grant exists only over an empty queue, and
    /// nothing can queue while it lives; only the server thread empties the queue), so
    /// whoever holds it is a sender, for the moment of one send. (A `try_lock` here
    /// read "nothing queued" when a sender held it, which skipped the backpressure on
    /// requests, and a dispatch queue behind a refused send was left unarmed: audit
    /// and review of 2026-12-06.)
    fn lock_queued(&self) -> MutexGuard<'_, Backlog> {
        self.lock()
    }

    /// Publishes the backlog's size for lock-free readers (under the lock).
    fn publish_size(&self, backlog: &Backlog) {
        self.queued.store(backlog.items.len(), Ordering::Release);
        self.queued_bytes.store(backlog.bytes, Ordering::Relaxed);
    }

    fn ring_bell(&self, wake: Wake) {
        if wake.is_needed() {
            if let Err(e) = self.bells.ring_peer() {
                tracing::debug!(error = %e, "ringing a client doorbell failed");
            }
        }
    }

    fn wake_server(&self) {
        if let Err(e) = self.bells.ring_self() {
            tracing::debug!(error = %e, "ringing the server doorbell failed");
        }
    }

    /// After a publication (the backlog lock released): wakes the client if it
    /// sleeps, and the server thread if the service is to hear of a flow change.
    fn published(&self, published: Published) {
        self.ring_bell(published.wake);
        if published.flow.is_some() && self.flow.is_some() {
            self.wake_server();
        }
    }

    pub(crate) fn max_message_len(&self) -> usize {
        self.ring.max_message_len()
    }

    /// Whether a message of `len` bytes can ever go into the ring: the check for the
    /// paths that do not hand the message to the ring now.
    fn check_len(&self, len: usize) -> Result<(), OutboxError> {
        let max = self.ring.max_message_len();
        if len > max {
            return Err(OutboxError::TooLarge { len, max });
        }
        Ok(())
    }

    /// Whether messages wait behind the ring (a lock-free look).
    pub(crate) fn has_backlog(&self) -> bool {
        self.queued.load(Ordering::Acquire) > 0
    }

    /// Sends the concatenation of `parts`.
    pub(crate) fn send(&self, parts: &[&[u8]]) -> Result<Sent, OutboxError> {
        let mut backlog = self.lock();
        if backlog.closed {
            return Err(OutboxError::Closed);
        }
        if backlog.items.is_empty() {
            // The exclusive claim (one store, no compare-and-swap), which the lock
            // allows: 64 B round trips 388 -> 362 ns (near CPU placement; far 1018 ->
            // 981 ns), pipelined 64 B unchanged in default mode and 3.8 -> 3.6 M req/s
            // in block mode (2026-12-04, alternating runs, `coroipc-bench __phases`
            // style floors around each). An earlier "halved in block mode" was the
            // VM's two CPU placements (2.6 against 3.7 M req/s), not this path.
            // SAFETY: every claim in this ring is made under the backlog lock (`send`,
            // `send_batch`, `reserve` — whose grant holds the lock until committed —
            // and `flush`), and we hold it: no other claim and no grant exists.
            match unsafe { self.ring.try_send_vectored_exclusive(parts) } {
                Ok(published) => {
                    drop(backlog);
                    self.published(published);
                    return Ok(Sent::Ring);
                }
                Err(PushError::Full) => {}
                Err(e) => return Err(e.into()),
            }
        }
        self.enqueue(&mut backlog, parts)?;
        self.publish_size(&backlog);
        drop(backlog);
        self.wake_server();
        Ok(Sent::Queued)
    }

    /// Queues the concatenation of `parts` if it fits the ring and the queue's bound
    /// (the one place a queued message's length is checked); the caller publishes the
    /// backlog's size.
    fn enqueue(&self, backlog: &mut Backlog, parts: &[&[u8]]) -> Result<(), OutboxError> {
        let len = parts
            .iter()
            .map(|p| p.len())
            .fold(0usize, usize::saturating_add);
        self.check_len(len)?;
        if backlog.charged_with(len) > self.max_queued_bytes {
            return Err(OutboxError::QueueFull);
        }
        backlog.items.push_back(parts.concat());
        backlog.bytes += len;
        Ok(())
    }

    /// Sends `msgs` in order, under one lock: as many as the ring takes with one
    /// publication (one tail swap, at most one doorbell), then, when the ring is full
    /// (or messages are already queued, which go first), the rest into the queue while
    /// they fit its bound. Stops at the first message refused, and says why.
    pub(crate) fn send_batch(&self, msgs: &[&[u8]]) -> BatchOutcome {
        let mut backlog = self.lock();
        let mut out = BatchOutcome::default();
        if backlog.closed {
            out.error = Some(OutboxError::Closed);
            return out;
        }
        let mut published = Published {
            wake: Wake::NotNeeded,
            flow: None,
        };
        let stopped = if backlog.items.is_empty() {
            // SAFETY: every claim in this ring is made under the backlog lock (`send`,
            // `reserve` — whose grant holds the lock until committed — and `flush`),
            // and we hold it: no other claim and no grant exists until we return.
            let batch = unsafe { self.ring.try_send_batch(msgs) };
            out.ring = batch.sent;
            published = batch.published;
            batch.stopped
        } else {
            Some(PushError::Full)
        };
        match stopped {
            None => {}
            Some(PushError::Full) => out.error = self.queue_rest(&mut backlog, msgs, &mut out),
            Some(e) => out.error = Some(e.into()),
        }
        drop(backlog);
        self.published(published);
        if out.queued > 0 {
            self.wake_server();
        }
        out
    }

    /// Queues `msgs[out.ring..]` while they fit the bound; the refusal, if any.
    fn queue_rest(
        &self,
        backlog: &mut Backlog,
        msgs: &[&[u8]],
        out: &mut BatchOutcome,
    ) -> Option<OutboxError> {
        let mut refused = None;
        for msg in &msgs[out.ring..] {
            if let Err(e) = self.enqueue(backlog, &[msg]) {
                refused = Some(e);
                break;
            }
            out.queued += 1;
        }
        if out.queued > 0 {
            self.publish_size(backlog);
        }
        refused
    }

    /// Reserves space in the ring for zero-copy filling; `None` when the ring has no
    /// room now or messages are queued (which must go first).
    pub(crate) fn reserve(&self, len: usize) -> Result<Option<OutboxGrant<'_>>, OutboxError> {
        let backlog = self.lock();
        if backlog.closed {
            return Err(OutboxError::Closed);
        }
        if !backlog.items.is_empty() {
            self.check_len(len)?;
            return Ok(None);
        }
        match self.ring.try_reserve(len) {
            Ok(grant) => Ok(Some(OutboxGrant::new(grant, backlog, self))),
            Err(PushError::Full) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Moves queued messages into the ring while they fit (server thread). Returns
    /// whether messages are still queued.
    pub(crate) fn flush(&self) -> Result<bool, Corruption> {
        if !self.has_backlog() {
            return Ok(false);
        }
        let mut backlog = self.lock_queued();
        let mut wake = Wake::NotNeeded;
        while let Some(front) = backlog.items.front() {
            match self.ring.try_send(front) {
                Ok(published) => {
                    wake = wake.or(published.wake);
                    let len = front.len();
                    backlog.items.pop_front();
                    backlog.bytes -= len;
                }
                Err(PushError::Full) => break,
                // `TooLarge` was checked when queued: cannot happen.
                Err(e) => return Err(push_corruption(e)),
            }
        }
        self.publish_size(&backlog);
        let queued = !backlog.items.is_empty();
        drop(backlog);
        self.ring_bell(wake);
        Ok(queued)
    }

    /// The server thread found no further request: hands what it last published to
    /// the client, which is waiting for it (`MpscProducer::hand_off`, SPEC §1.3b).
    pub(crate) fn hand_off(&self) {
        self.ring.hand_off();
    }

    /// Whether the ring is in flow control now (the ring's own word).
    pub(crate) fn flow_control(&self) -> bool {
        self.ring.flow_control()
    }

    /// The flow-control transition to report to the service, if any (server thread
    /// only; always `None` on an outbox without a report).
    pub(crate) fn flow_transition(&self) -> Result<Option<bool>, Corruption> {
        match &self.flow {
            Some(report) => report.transition(&self.ring),
            None => Ok(None),
        }
    }

    /// Before the server thread sleeps: asks the client to ring when what the server
    /// waits for here arrives, which is space for the first queued message or, with
    /// nothing queued and a report to make, the end of flow control. `Ok(false)` when
    /// it has already arrived (serve again instead of sleeping).
    pub(crate) fn arm(&self) -> Result<bool, Corruption> {
        let check = if let Some(len) = self.backlog_front() {
            self.ring.prepare_sleep_for_space(len)
        } else if self.flow.is_some() && self.ring.flow_control() {
            self.ring.prepare_sleep_for_flow_off()
        } else {
            return Ok(true);
        };
        // A producer about to sleep for space while the client sleeps over space
        // only it can free (a grant given up meanwhile) is told to ring it.
        let check = check.map_err(push_corruption)?;
        self.ring_bell(check.wake_peer);
        Ok(check.sleep)
    }

    /// Messages and bytes queued (lock-free: a snapshot).
    pub(crate) fn backlog(&self) -> (usize, usize) {
        (
            self.queued.load(Ordering::Acquire),
            self.queued_bytes.load(Ordering::Relaxed),
        )
    }

    /// Length of the first queued message, if any.
    pub(crate) fn backlog_front(&self) -> Option<usize> {
        if !self.has_backlog() {
            return None;
        }
        self.lock_queued().items.front().map(Vec::len)
    }

    /// The connection is gone: drops everything queued (its memory too) and refuses
    /// every later send with [`OutboxError::Closed`]. Waits for a zero-copy grant
    /// being filled; once it returns nothing writes the ring any more.
    pub(crate) fn close(&self) {
        let mut b = self.lock();
        *b = Backlog {
            closed: true,
            ..Backlog::default()
        };
        self.publish_size(&b);
    }
}

/// Zero-copy space in an outbox's ring, written through the [`BytesMut`] it derefs
/// to. Holds the backlog lock so nothing overtakes it. Dropped without a commit, the
/// claim is given up ([`MpscGrant::abandon`]) and the client is rung if it sleeps: a
/// dropped ring grant cannot ring, and the skipped space is the client's to free, so
/// a server waiting for that space with the client asleep would wait for good.
pub(crate) struct OutboxGrant<'a> {
    /// `Some` until published: taken once, by `commit` or by the drop.
    grant: Option<MpscGrant<'a>>,
    /// Held until the grant is published.
    backlog: Option<MutexGuard<'a, Backlog>>,
    outbox: &'a Outbox,
}

impl<'a> OutboxGrant<'a> {
    fn new(grant: MpscGrant<'a>, backlog: MutexGuard<'a, Backlog>, outbox: &'a Outbox) -> Self {
        OutboxGrant {
            grant: Some(grant),
            backlog: Some(backlog),
            outbox,
        }
    }

    fn grant(&self) -> &MpscGrant<'a> {
        match &self.grant {
            Some(grant) => grant,
            None => unreachable!("an outbox grant is used after it was published"),
        }
    }

    fn grant_mut(&mut self) -> &mut MpscGrant<'a> {
        match &mut self.grant {
            Some(grant) => grant,
            None => unreachable!("an outbox grant is used after it was published"),
        }
    }

    /// Publishes the claim (the message, or SKIP frames), then, with the lock
    /// released, rings whom the publication says.
    fn finish(&mut self, commit: bool) {
        let Some(grant) = self.grant.take() else {
            return;
        };
        let published = if commit {
            grant.commit()
        } else {
            grant.abandon()
        };
        drop(self.backlog.take());
        self.outbox.published(published);
    }
}

impl<'a> std::ops::Deref for OutboxGrant<'a> {
    type Target = BytesMut<'a>;

    fn deref(&self) -> &BytesMut<'a> {
        self.grant()
    }
}

impl std::ops::DerefMut for OutboxGrant<'_> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        self.grant_mut()
    }
}

impl OutboxGrant<'_> {
    /// As [`MpscGrant::skip_prefix`]: the view is the payload after a header.
    pub(crate) fn skip_prefix(&mut self, n: usize) {
        self.grant_mut().skip_prefix(n);
    }

    /// As [`MpscGrant::truncate`] (after the skipped prefix).
    pub(crate) fn truncate(&mut self, len: usize) {
        self.grant_mut().truncate(len);
    }

    pub(crate) fn commit(mut self) {
        self.finish(true);
    }
}

impl Drop for OutboxGrant<'_> {
    fn drop(&mut self) {
        self.finish(false);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use coroipc_ring::heap::mpsc_channel;
    use coroipc_ring::Config;

    /// Empty messages behind a full ring used to cost nothing against the bound, so a
    /// client that never reads could have them queued without limit.
    #[test]
    fn the_queue_bound_counts_each_message_not_only_its_bytes() {
        let (ring, _reader) = mpsc_channel(&Config::new(64)).expect("ring");
        let bells = Arc::new(ConnBells::new(crate::os::PeerBell::new().expect("bells")));
        let outbox = Outbox::new(ring, bells, 4096, false);
        let mut queued = 0;
        let refused = loop {
            match outbox.send(&[]) {
                Ok(Sent::Queued) => queued += 1,
                Ok(_) => {}
                Err(e) => break e,
            }
            assert!(queued <= 4096, "empty messages queued without limit");
        };
        assert_eq!(refused, OutboxError::QueueFull);
        assert_eq!(queued, 4096 / QUEUED_ITEM_COST, "{queued}");
        assert_eq!(
            outbox.backlog(),
            (queued, 0),
            "the statistics count payload"
        );
    }

    fn outbox_of(ring_bytes: usize) -> (Outbox, coroipc_ring::Consumer) {
        let (ring, reader) = mpsc_channel(&Config::new(ring_bytes)).expect("ring");
        let bells = Arc::new(ConnBells::new(crate::os::PeerBell::new().expect("bells")));
        (Outbox::new(ring, bells, 1 << 20, false), reader)
    }

    /// A sender holding the lock while messages are queued: the server's flush must
    /// still see them queued (a `try_lock` there read "nothing queued" and served
    /// requests past the backpressure rule): it waits for the sender instead.
    #[test]
    fn a_flush_behind_a_busy_lock_still_sees_the_queue() {
        let (outbox, _reader) = outbox_of(64);
        assert!(!outbox.flush().expect("flush"), "nothing queued yet");
        let mut sent = 0;
        while outbox.send(&[&[0u8; 8]]).expect("send") == Sent::Ring {
            sent += 1;
            assert!(sent < 64, "the ring never filled");
        }
        std::thread::scope(|s| {
            let held = outbox.lock();
            let flushing = s.spawn(|| outbox.flush().expect("flush"));
            std::thread::sleep(std::time::Duration::from_millis(20));
            drop(held);
            assert!(
                flushing.join().expect("flush thread"),
                "queued behind a busy lock"
            );
        });
        assert!(
            outbox.flush().expect("flush"),
            "still queued: nobody read the ring"
        );
    }

    /// A closed outbox refuses every way of sending, drops its queue, and waits for a
    /// grant being filled before it returns (after it, nothing writes the ring).
    #[test]
    fn a_closed_outbox_refuses_every_send_and_waits_for_a_grant() {
        let (outbox, mut reader) = outbox_of(4096);
        outbox.send(&[b"before"]).expect("send");
        let filled = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|s| {
            let mut grant = outbox.reserve(4).expect("reserve").expect("room");
            let closing = s.spawn(|| {
                outbox.close();
                filled.load(Ordering::SeqCst)
            });
            std::thread::sleep(std::time::Duration::from_millis(20));
            grant.write_at(0, b"late");
            filled.store(true, Ordering::SeqCst);
            grant.commit();
            assert!(
                closing.join().expect("close thread"),
                "close waited for the grant"
            );
        });
        assert_eq!(outbox.send(&[b"x"]), Err(OutboxError::Closed));
        assert_eq!(outbox.send_batch(&[b"x"]).error, Some(OutboxError::Closed));
        assert!(matches!(outbox.reserve(1), Err(OutboxError::Closed)));
        assert_eq!(outbox.backlog(), (0, 0));
        let mut buf = [0u8; 16];
        let got = |r: &mut coroipc_ring::Consumer, buf: &mut [u8]| {
            r.try_recv(buf).expect("recv").map(|m| m.len)
        };
        assert_eq!(got(&mut reader, &mut buf), Some(6), "what was sent before");
        assert_eq!(
            got(&mut reader, &mut buf),
            Some(4),
            "the grant committed first"
        );
        assert_eq!(got(&mut reader, &mut buf), None, "nothing after the close");
    }

    /// Rings that arrived at the client's end of the doorbells.
    fn client_rings(bells: &ConnBells) -> usize {
        use std::os::fd::AsRawFd;
        bells
            .with_ends(|[_, client]| {
                let mut buf = [0u8; 64];
                nix::sys::socket::recv(
                    client.as_raw_fd(),
                    &mut buf,
                    nix::sys::socket::MsgFlags::MSG_DONTWAIT,
                )
                .unwrap_or(0)
            })
            .unwrap_or(0)
    }

    /// A grant given up while the client sleeps over a ring only it can free: the
    /// drop rings it (a ring grant's own drop cannot), and the woken client's release
    /// lets the queued message in.
    #[test]
    fn a_grant_dropped_while_the_client_sleeps_rings_it() {
        let (ring, mut reader) = mpsc_channel(&Config::new(64)).expect("ring");
        let bells = Arc::new(ConnBells::new(crate::os::PeerBell::new().expect("bells")));
        let outbox = Outbox::new(ring, bells.clone(), 4096, false);
        assert!(
            reader.prepare_sleep().expect("sound").sleep,
            "the client sleeps"
        );
        drop(outbox.reserve(24).expect("open").expect("room"));
        assert_eq!(client_rings(&bells), 1, "the dropped grant rang the client");
        // The rest of the ring (less the word the ring keeps free, coroipc-ring SPEC
        // §1.3a), given up too: the next message must wait for space.
        drop(outbox.reserve(16).expect("open").expect("room"));
        assert!(matches!(outbox.send(&[b"x"]), Ok(Sent::Queued)));
        let _ = client_rings(&bells);
        // The client, woken, frees the skipped space and wakes the server.
        reader.cancel_sleep();
        assert!(reader.try_peek().expect("sound").is_none());
        let _ = reader.prepare_sleep().expect("sound");
        assert!(
            !outbox.flush().expect("sound"),
            "the queued message went in"
        );
    }
}
