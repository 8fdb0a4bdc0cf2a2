//! A reference model of an SPSC ring and drivers that run operation sequences against
//! both the real ring and the model, shared by the property tests (`tests/`) and the
//! fuzz targets (`fuzz/`).
//!
//! The model is a `VecDeque<Vec<u8>>` of published messages plus the byte positions
//! the protocol defines (write position, published tail, read position, released head),
//! so it predicts not only contents and order but exactly when `Full` happens.
//!
//! The rings it drives are linked (an SPSC producer, SPEC §1.3a): the consumer finds a
//! staged message as soon as it is written (by probing its header once the tail shows
//! nothing new), and a frame needs 8 bytes of room past its end.
#![deny(missing_docs)]

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use coroipc_ring::heap::HeapRegion;
use coroipc_ring::{
    max_message_len, offsets, Config, Consumer, FlowChange, MpscProducer, PopError, Producer,
    Published, PushError, SleepCheck, Wake, FRAME_HEADER,
};

/// One operation on a ring.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// `try_send` of `len` bytes.
    Send(usize),
    /// `try_send_vectored` of parts with these lengths.
    SendVectored(Vec<usize>),
    /// `try_reserve(len)`, fill, `truncate(keep)`, `commit`.
    ReserveCommit(usize, usize),
    /// `try_reserve(len)` then drop.
    ReserveDrop(usize),
    /// `try_stage` of `len` bytes.
    Stage(usize),
    /// `publish`.
    Publish,
    /// `try_peek` + `release`.
    PeekRelease,
    /// `try_peek` + `consume`.
    PeekConsume,
    /// `try_peek` then drop.
    PeekDrop,
    /// `try_peek`, `leave`, `Consumer::take` (the same message), `consume`.
    PeekLeaveTake,
    /// `Consumer::release`.
    Release,
    /// `try_recv` into a buffer of `len` bytes.
    Recv(usize),
    /// `Consumer::prepare_sleep` (the announcement stays until cancelled or woken).
    ConsumerSleep,
    /// `Consumer::cancel_sleep`.
    ConsumerCancel,
    /// `Producer::prepare_sleep_for_space(len)`.
    ProducerSleep(usize),
    /// `Producer::prepare_sleep_for_flow_off`.
    ProducerSleepFlowOff,
    /// `Producer::cancel_sleep`.
    ProducerCancel,
    /// `Producer::poll_flow`.
    PollFlow,
}

impl Op {
    /// Decodes operations from arbitrary bytes (for fuzzing): 3 bytes per operation.
    pub fn from_bytes(data: &[u8], max: usize) -> Vec<Op> {
        let len = |a: u8, b: u8| (usize::from(a) << 8 | usize::from(b)) % (max + 2);
        data.chunks(3)
            .map(|c| {
                let (k, a, b) = (
                    c[0],
                    c.get(1).copied().unwrap_or(0),
                    c.get(2).copied().unwrap_or(0),
                );
                match k % 18 {
                    0 => Op::Send(len(a, b)),
                    1 => Op::SendVectored(vec![len(0, a) / 2, 0, len(0, b) / 2]),
                    2 => Op::ReserveCommit(len(a, b), len(b, a)),
                    3 => Op::ReserveDrop(len(a, b)),
                    4 => Op::Stage(len(a, b)),
                    5 => Op::Publish,
                    6 => Op::PeekRelease,
                    7 => Op::PeekConsume,
                    8 => Op::PeekDrop,
                    9 => Op::Release,
                    10 => Op::Recv(len(a, b)),
                    11 => Op::ConsumerSleep,
                    12 => Op::ConsumerCancel,
                    13 => Op::ProducerSleep(len(a, b)),
                    14 => Op::ProducerSleepFlowOff,
                    15 => Op::ProducerCancel,
                    16 => Op::PeekLeaveTake,
                    _ => Op::PollFlow,
                }
            })
            .collect()
    }
}

/// Takes a sleep flag: `Needed` if it was set.
fn wake(flag: &mut bool) -> Wake {
    if std::mem::take(flag) {
        Wake::Needed
    } else {
        Wake::NotNeeded
    }
}

fn payload(seed: usize, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (seed.wrapping_mul(131).wrapping_add(i * 7) % 251) as u8)
        .collect()
}

/// The reference model.
#[derive(Debug)]
struct Model {
    cap: u64,
    max: usize,
    /// Messages written (staged or published) and not yet consumed, with the positions
    /// where each frame starts (after any padding) and ends.
    queue: VecDeque<(Vec<u8>, u64, u64)>,
    /// Write position (includes staged frames).
    tail: u64,
    /// Published tail.
    published: u64,
    /// Read position (consumed).
    pos: u64,
    /// Released head.
    head: u64,
    /// The end of the frames the consumer has learned of (from the tail, or by probing
    /// a staged frame's header).
    known: u64,
    /// Position of the ring at the start (positions above are relative to it).
    base: u64,
    /// CONSUMER_SLEEPING / PRODUCER_SLEEPING as the protocol leaves them.
    consumer_sleeping: bool,
    producer_sleeping: bool,
    /// Flow control, with the ring's watermarks.
    flow_on: bool,
    high: u64,
    low: u64,
}

impl Model {
    /// `(frame start, frame end)` of a message of `len` bytes written now.
    fn place(&self, len: usize) -> (u64, u64) {
        let frame = (FRAME_HEADER + len.div_ceil(8) * 8) as u64;
        let to_end = self.cap - self.base.wrapping_add(self.tail) % self.cap;
        let start = if frame <= to_end {
            self.tail
        } else {
            self.tail + to_end
        };
        (start, start + frame)
    }

    fn frame_end(&self, len: usize) -> u64 {
        self.place(len).1
    }

    /// Whether a message of `len` bytes fits now: its frame, and the word after it,
    /// counted from the head, or from the published tail where the consumer released
    /// staged frames past it (staged bytes never exceed the capacity).
    fn room_for(&self, len: usize) -> bool {
        let base = self.head.min(self.published);
        self.frame_end(len) - base <= self.cap - FRAME_HEADER as u64
    }

    /// A reservation of `reserved` bytes committed with `data` (shorter after
    /// `truncate`): placed for the reserved length, sized for the committed one.
    fn write_reserved(&mut self, reserved: usize, data: Vec<u8>) {
        let (start, _) = self.place(reserved);
        let end = start + (FRAME_HEADER + data.len().div_ceil(8) * 8) as u64;
        self.tail = end;
        self.queue.push_back((data, start, end));
    }

    /// What reserving `len` bytes must return (before anything is written).
    fn reserve(&self, len: usize) -> Result<(), PushError> {
        if len > self.max {
            Err(PushError::TooLarge { len, max: self.max })
        } else if !self.room_for(len) {
            Err(PushError::Full)
        } else {
            Ok(())
        }
    }

    /// What a write of `len` bytes must return.
    fn write(&mut self, data: Vec<u8>) -> Result<(), PushError> {
        if data.len() > self.max {
            return Err(PushError::TooLarge {
                len: data.len(),
                max: self.max,
            });
        }
        let (start, end) = self.place(data.len());
        if !self.room_for(data.len()) {
            return Err(PushError::Full);
        }
        self.tail = end;
        self.queue.push_back((data, start, end));
        Ok(())
    }

    /// A publish: wakes a consumer that announced sleep (once), then the flow rule.
    fn publish(&mut self) -> Published {
        let wake = if self.tail != self.published {
            self.published = self.tail;
            wake(&mut self.consumer_sleeping)
        } else {
            Wake::NotNeeded
        };
        Published {
            wake,
            flow: self.flow(),
        }
    }

    /// The hysteresis rule on the exact occupancy (the producer re-reads the head
    /// whenever its cached one could allow a transition).
    fn flow(&mut self) -> Option<FlowChange> {
        // The consumer may have released staged frames: the head can pass the tail.
        let used = self.published.saturating_sub(self.head);
        let change = match self.flow_on {
            false if used >= self.high => FlowChange::On,
            true if used <= self.low => FlowChange::Off,
            _ => return None,
        };
        self.flow_on = change == FlowChange::On;
        Some(change)
    }

    /// A release: wakes a producer that announced sleep (once).
    fn release(&mut self) -> Wake {
        if self.pos == self.head {
            return Wake::NotNeeded;
        }
        self.head = self.pos;
        wake(&mut self.producer_sleeping)
    }

    /// An announcement: sleep unless `ready`, setting `flag`; `published` is what the
    /// publish made first reported (a producer's; the consumer's has no flow change).
    fn announce(ready: bool, flag: &mut bool, published: Published) -> SleepCheck {
        *flag |= !ready;
        SleepCheck {
            sleep: !ready,
            wake_peer: published.wake,
            flow: published.flow,
        }
    }

    /// The next message a look finds (written, published or not, and not consumed),
    /// which the consumer then knows of.
    fn front(&mut self) -> Option<(Vec<u8>, u64, u64)> {
        let front = self.queue.front().cloned();
        if let Some((_, _, end)) = &front {
            self.known = self.known.max(*end);
        }
        front
    }
}

/// Runs `ops` on a fresh ring of `capacity` bytes and on the model; `Err` describes
/// the first divergence.
pub fn run_model(capacity: usize, ops: &[Op]) -> Result<(), String> {
    run_model_at(capacity, 0, ops)
}

/// As [`run_model`], on a ring whose creator started its positions at `start` (both
/// sides attach), so that positions cross 2^64 when `start` is near it.
pub fn run_model_at(capacity: usize, start: u64, ops: &[Op]) -> Result<(), String> {
    let cfg = Config::new(capacity);
    let region = Arc::new(HeapRegion::new(&cfg).map_err(|e| e.to_string())?);
    // SAFETY: fresh region; the creating handle is dropped at once.
    drop(unsafe { Producer::create(region.raw(), &cfg) }.map_err(|e| e.to_string())?);
    for at in [offsets::HEAD, offsets::TAIL] {
        // SAFETY: inside the region, 8-aligned; no handle is attached yet.
        unsafe { AtomicU64::from_ptr(region.raw().base().as_ptr().add(at).cast()) }
            .store(start & !7, Ordering::Relaxed);
    }
    // SAFETY: live region, kept alive by the handles.
    let mut p = unsafe { Producer::attach(region.raw()) }
        .map_err(|e| e.to_string())?
        .keep_alive(region.clone());
    // SAFETY: as above.
    let mut c = unsafe { Consumer::attach(region.raw()) }
        .map_err(|e| e.to_string())?
        .keep_alive(region.clone());
    let mut m = Model {
        cap: capacity as u64,
        max: max_message_len(capacity),
        queue: VecDeque::new(),
        tail: 0,
        published: 0,
        pos: 0,
        head: 0,
        known: 0,
        base: start & !7,
        consumer_sleeping: false,
        producer_sleeping: false,
        flow_on: false,
        high: cfg.high_watermark as u64,
        low: cfg.low_watermark as u64,
    };
    for (step, op) in ops.iter().enumerate() {
        let ctx = |what: &str| format!("step {step} {op:?}: {what}");
        let differ = |real: &dyn std::fmt::Debug, want: &dyn std::fmt::Debug| {
            Err(ctx(&format!("ring {real:?}, model {want:?}")))
        };
        match op {
            Op::Send(len) | Op::Stage(len) => {
                let data = payload(step, *len);
                let real = if matches!(op, Op::Send(_)) {
                    p.try_send(&data).map(Some)
                } else {
                    p.try_stage(&data).map(|()| None)
                };
                let want = m
                    .write(data)
                    .map(|()| matches!(op, Op::Send(_)).then(|| m.publish()));
                if real != want {
                    return differ(&real, &want);
                }
            }
            Op::SendVectored(lens) => {
                let parts: Vec<Vec<u8>> = lens
                    .iter()
                    .enumerate()
                    .map(|(i, l)| payload(step + i, *l))
                    .collect();
                let refs: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
                let real = p.try_send_vectored(&refs);
                let want = m.write(parts.concat()).map(|()| m.publish());
                if real != want {
                    return differ(&real, &want);
                }
            }
            Op::ReserveCommit(len, keep) => {
                let data = payload(step, *len);
                let real = p.try_reserve(*len).map(|mut g| {
                    g.write_at(0, &data);
                    g.truncate(*keep);
                    g.commit()
                });
                let kept = data[..(*keep).min(*len.min(&data.len()))].to_vec();
                // The reservation is checked for `len`; the frame committed is `keep`.
                let want = m.reserve(*len).map(|()| {
                    m.write_reserved(*len, kept);
                    m.publish()
                });
                if real != want {
                    return differ(&real, &want);
                }
            }
            Op::ReserveDrop(len) => {
                let real = p.try_reserve(*len).map(drop);
                let want = m.reserve(*len);
                if real != want {
                    return differ(&real, &want);
                }
            }
            Op::Publish => {
                let (real, want) = (p.publish(), m.publish());
                if real != want {
                    return differ(&real, &want);
                }
            }
            Op::PeekRelease | Op::PeekConsume | Op::PeekDrop | Op::PeekLeaveTake => {
                // `PeekLeaveTake` lets go of the grant and takes it back before it looks.
                let mut left = None;
                let got = if matches!(op, Op::PeekLeaveTake) {
                    match c
                        .try_peek()
                        .map_err(|e| ctx(&e.to_string()))?
                        .map(|g| g.leave())
                    {
                        Some(token) => {
                            left = Some(token);
                            let taken = c.take(token);
                            Some(taken.ok_or_else(|| ctx("a token left was refused"))?)
                        }
                        None => None,
                    }
                } else {
                    c.try_peek().map_err(|e| ctx(&e.to_string()))?
                };
                let want = m.front();
                match (got, want) {
                    (None, None) => {}
                    (Some(g), Some((data, start, end))) => {
                        if g.to_vec() != data {
                            return Err(ctx("contents differ"));
                        }
                        // Finding the message moved the reader past any padding.
                        m.pos = m.pos.max(start);
                        match op {
                            Op::PeekRelease => {
                                m.queue.pop_front();
                                m.pos = end;
                                let (real, want) = (g.release(), m.release());
                                if real != want {
                                    return differ(&real, &want);
                                }
                            }
                            Op::PeekConsume | Op::PeekLeaveTake => {
                                g.consume();
                                if left.is_some_and(|token| c.take(token).is_some()) {
                                    return Err(ctx("a consumed message's token was taken again"));
                                }
                                m.queue.pop_front();
                                m.pos = end;
                            }
                            _ => {}
                        }
                    }
                    (g, w) => {
                        return Err(ctx(&format!(
                            "ring has message: {}, model: {}",
                            g.is_some(),
                            w.is_some()
                        )))
                    }
                }
            }
            Op::Release => {
                let (real, want) = (c.release(), m.release());
                if real != want {
                    return differ(&real, &want);
                }
            }
            Op::Recv(buf_len) => {
                let mut buf = vec![0u8; *buf_len];
                let real = c.try_recv(&mut buf);
                match (real, m.front()) {
                    (Ok(None), None) => {}
                    (Ok(Some(r)), Some((data, _, end))) if data.len() <= *buf_len => {
                        if buf[..r.len] != data[..] {
                            return Err(ctx("contents differ"));
                        }
                        m.queue.pop_front();
                        m.pos = end;
                        let want = m.release();
                        if r.wake != want {
                            return differ(&r.wake, &want);
                        }
                    }
                    (Err(PopError::BufferTooSmall { needed }), Some((data, start, _)))
                        if needed == data.len() =>
                    {
                        m.pos = m.pos.max(start);
                    }
                    (r, w) => return differ(&r, &w),
                }
            }
            Op::ConsumerSleep => {
                let real = c.prepare_sleep().map_err(|e| ctx(&e.to_string()))?;
                let released = Published {
                    wake: m.release(),
                    flow: None,
                };
                // The tail, or frames found past it, beyond the read position.
                m.known = m.known.max(m.published);
                let ready = m.known != m.pos;
                let want = Model::announce(ready, &mut m.consumer_sleeping, released);
                if real != want {
                    return differ(&real, &want);
                }
            }
            Op::ConsumerCancel => {
                c.cancel_sleep();
                m.consumer_sleeping = false;
            }
            Op::ProducerSleep(len) => {
                let real = p.prepare_sleep_for_space(*len);
                let want = if *len > m.max {
                    Err(PushError::TooLarge {
                        len: *len,
                        max: m.max,
                    })
                } else {
                    let published = m.publish();
                    let ready = m.room_for(*len);
                    Ok(Model::announce(ready, &mut m.producer_sleeping, published))
                };
                if real != want {
                    return differ(&real, &want);
                }
            }
            Op::ProducerSleepFlowOff => {
                let real = p.prepare_sleep_for_flow_off();
                let published = m.publish();
                let ready = m.published.saturating_sub(m.head) <= m.low;
                let want = Ok(Model::announce(ready, &mut m.producer_sleeping, published));
                if real != want {
                    return differ(&real, &want);
                }
            }
            Op::ProducerCancel => {
                p.cancel_sleep();
                m.producer_sleeping = false;
            }
            Op::PollFlow => {
                let (real, want) = (p.poll_flow(), Ok(m.flow()));
                if real != want {
                    return differ(&real, &want);
                }
            }
        }
        if p.flow_control() != m.flow_on {
            return Err(ctx(&format!("flow control {}", p.flow_control())));
        }
        if p.position() != m.base.wrapping_add(m.tail) {
            return Err(ctx("producer position differs"));
        }
    }
    Ok(())
}

/// Runs operations on one side while `garbage` is written into the shared region
/// between them: every call must return (Ok or an error), never panic, and a side that
/// reported corruption must keep reporting it. `garbage` is consumed 10 bytes at a
/// time: an offset (2 bytes) and 8 value bytes written there.
pub fn run_hostile(capacity: usize, ops: &[Op], garbage: &[u8]) -> Result<(), String> {
    let cfg = Config::new(capacity);
    let region = Arc::new(HeapRegion::new(&cfg).map_err(|e| e.to_string())?);
    // SAFETY: fresh region, kept alive by the handles.
    let mut p = unsafe { Producer::create(region.raw(), &cfg) }
        .map_err(|e| e.to_string())?
        .keep_alive(region.clone());
    // SAFETY: initialised just above.
    let mut c = unsafe { Consumer::attach(region.raw()) }
        .map_err(|e| e.to_string())?
        .keep_alive(region.clone());
    let len = offsets::DATA + capacity;
    let mut chunks = garbage.chunks(10);
    let (mut producer_dead, mut consumer_dead) = (false, false);
    for (step, op) in ops.iter().enumerate() {
        if let Some(g) = chunks.next() {
            if g.len() == 10 {
                let off = (usize::from(g[0]) << 8 | usize::from(g[1])) % (len - 7);
                for (i, b) in g[2..].iter().enumerate() {
                    // SAFETY: `off + i < len`, inside the region; this thread is the only
                    // one touching it, and the write is a single byte (the peer's role).
                    unsafe { region.raw().base().as_ptr().add(off + i).write_volatile(*b) };
                }
            }
        }
        match op {
            Op::Send(n)
            | Op::Stage(n)
            | Op::ReserveCommit(n, _)
            | Op::ReserveDrop(n)
            | Op::ProducerSleep(n)
            | Op::Recv(n) => {
                let r = p.try_send(&payload(step, *n));
                if producer_dead && !matches!(r, Err(PushError::Corrupt(_))) {
                    return Err(format!(
                        "step {step}: producer recovered from corruption: {r:?}"
                    ));
                }
                producer_dead |= matches!(r, Err(PushError::Corrupt(_)));
                let _ = p.prepare_sleep_for_space(*n);
                p.cancel_sleep();
            }
            Op::SendVectored(_)
            | Op::Publish
            | Op::ProducerSleepFlowOff
            | Op::ProducerCancel
            | Op::PollFlow => {
                let _ = p.publish();
                let _ = p.poll_flow();
            }
            Op::PeekRelease
            | Op::PeekConsume
            | Op::PeekDrop
            | Op::PeekLeaveTake
            | Op::Release
            | Op::ConsumerSleep
            | Op::ConsumerCancel => {
                // Every message goes through `leave` and `take`: a token is taken
                // back at once whatever the peer writes (nothing is read again).
                let left = c.try_peek().map(|g| g.map(|g| (g.len(), g.leave())));
                let r = match left {
                    Ok(Some((len, token))) => {
                        let Some(g) = c.take(token) else {
                            return Err(format!("step {step}: a token left was refused"));
                        };
                        if g.len() != len {
                            return Err(format!("step {step}: the taken grant changed length"));
                        }
                        Ok(Some((g.to_vec().len(), g.release())))
                    }
                    Ok(None) => Ok(None),
                    Err(e) => Err(e),
                };
                if consumer_dead && !matches!(r, Err(PopError::Corrupt(_))) {
                    return Err(format!(
                        "step {step}: consumer recovered from corruption: {r:?}"
                    ));
                }
                consumer_dead |= matches!(r, Err(PopError::Corrupt(_)));
                let _ = c.prepare_sleep();
                c.cancel_sleep();
                let _ = c.pending_bytes();
            }
        }
    }
    // Attaching to the garbled region must fail cleanly or succeed.
    // SAFETY: the region is live; attach validates whatever it finds.
    let _ = unsafe { Consumer::attach(region.raw()) };
    // SAFETY: as above.
    let _ = unsafe { Producer::attach(region.raw()) };
    Ok(())
}

/// Which handle [`run_attached`] attaches to the peer-made region.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// A [`Consumer`] (the peer is a hostile producer).
    Consumer,
    /// A [`Producer`] (the peer is a hostile consumer).
    Producer,
    /// An [`MpscProducer`] (the peer is a hostile consumer).
    Mpsc,
}

/// Fuzz input, read front to back; zeros once exhausted.
struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn u8(&mut self) -> u8 {
        match self.0.split_first() {
            Some((&b, rest)) => {
                self.0 = rest;
                b
            }
            None => 0,
        }
    }

    fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.u8(), self.u8()])
    }

    fn u64(&mut self) -> u64 {
        u64::from_le_bytes(std::array::from_fn(|_| self.u8()))
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

const TAG_MSG: u64 = 0x4d53_4701;
const TAG_PAD: u64 = 0x5041_4401;
const TAG_SKIP: u64 = 0x534b_5001;

/// The hostile peer: writes one input-chosen word somewhere in the region (a plausible
/// frame header or index most of the time, raw bits otherwise).
fn hostile_write(input: &mut Input<'_>, region: &HeapRegion, capacity: usize, near: u64) {
    let words = (offsets::DATA + capacity) / 8;
    let at = usize::from(input.u16()) % words * 8;
    let value = match input.u8() % 6 {
        0 => input.u64(),
        1 => TAG_MSG << 32 | u64::from(input.u16()),
        2 => TAG_PAD << 32 | u64::from(input.u16()),
        3 => TAG_SKIP << 32 | u64::from(input.u16()),
        // An index a few frames around the side's own position.
        _ => near.wrapping_add(
            (u64::from(input.u8()) * 8).wrapping_sub(512) | u64::from(input.u8() & 1),
        ),
    };
    let at = if input.u8().is_multiple_of(8) {
        offsets::HEAD
    } else {
        at
    };
    // SAFETY: `at + 8 <= region length`, 8-aligned; the side under test runs on this
    // thread and is not inside a call, so nothing accesses the word concurrently.
    unsafe { AtomicU64::from_ptr(region.raw().base().as_ptr().add(at).cast()) }
        .store(value, Ordering::Relaxed);
}

/// What every step must keep true, whatever the peer wrote.
#[derive(Debug)]
struct Oracle {
    max: usize,
    capacity: usize,
    /// The side's last position (modulo 2^64).
    position: u64,
    /// Set once a call reported corruption: every later fallible call must too.
    dead: bool,
}

impl Oracle {
    /// Checks a fallible call's outcome (`corrupt` says whether it reported corruption).
    fn outcome(
        &mut self,
        step: usize,
        ok_or_other: bool,
        corrupt: bool,
        what: &str,
    ) -> Result<(), String> {
        if self.dead && !corrupt {
            return Err(format!(
                "step {step}: {what} after corruption: recovered ({ok_or_other})"
            ));
        }
        self.dead |= corrupt;
        Ok(())
    }

    /// The side's own corruption flag: set whenever a call reported corruption, and
    /// from then on (a call that cannot return an error, such as a publish that reads
    /// a bad head, may set it silently; later fallible calls then report it).
    fn known_corrupt(&mut self, step: usize, flag: bool) -> Result<(), String> {
        if self.dead && !flag {
            return Err(format!(
                "step {step}: reported corruption, but the flag is clear"
            ));
        }
        self.dead |= flag;
        Ok(())
    }

    fn message(&self, step: usize, len: usize) -> Result<(), String> {
        if len > self.max {
            return Err(format!(
                "step {step}: message of {len} bytes > max {}",
                self.max
            ));
        }
        Ok(())
    }

    fn position(&mut self, step: usize, now: u64) -> Result<(), String> {
        let moved = now.wrapping_sub(self.position);
        if moved > 2 * self.capacity as u64 {
            return Err(format!(
                "step {step}: position went from {:#x} to {now:#x}",
                self.position
            ));
        }
        self.position = now;
        Ok(())
    }

    fn window(&self, step: usize, what: &str, bytes: usize) -> Result<(), String> {
        if bytes > self.capacity {
            return Err(format!("step {step}: {what} = {bytes} > capacity"));
        }
        Ok(())
    }
}

/// `Err(None)` marks an infallible operation: no outcome to check.
fn fallible(r: Result<(), Option<PushError>>) -> Option<Result<(), PushError>> {
    match r {
        Ok(()) => Some(Ok(())),
        Err(Some(e)) => Some(Err(e)),
        Err(None) => None,
    }
}

fn push_outcome<T: std::fmt::Debug>(
    o: &mut Oracle,
    step: usize,
    r: &Result<T, PushError>,
    what: &str,
) -> Result<(), String> {
    o.outcome(
        step,
        r.is_ok(),
        matches!(r, Err(PushError::Corrupt(_))),
        &format!("{what} {r:?}"),
    )
}

fn pop_outcome<T: std::fmt::Debug>(
    o: &mut Oracle,
    step: usize,
    r: &Result<T, PopError>,
    what: &str,
) -> Result<(), String> {
    o.outcome(
        step,
        r.is_ok(),
        matches!(r, Err(PopError::Corrupt(_))),
        &format!("{what} {r:?}"),
    )
}

/// Attaches `side` to a region whose header and data the (hostile) peer chose, then
/// runs input-chosen operations with hostile writes between them, checking after each
/// step: no panic; corruption, once reported, is reported by every later fallible call;
/// every message is at most `max_message_len` bytes; the side's position only moves
/// forward (modulo 2^64, by at most twice the capacity per step); occupancy windows stay
/// within the capacity.
pub fn run_attached(side: Side, data: &[u8]) -> Result<(), String> {
    let mut input = Input(data);
    let capacity = 1usize << (5 + input.u8() % 4); // 32 ..= 256
    let cfg = Config::new(capacity);
    let region = Arc::new(HeapRegion::new(&cfg).map_err(|e| e.to_string())?);
    // SAFETY: fresh region; the creating handle is dropped at once (the peer made it).
    drop(unsafe { Producer::create(region.raw(), &cfg) }.map_err(|e| e.to_string())?);
    // The peer's starting indices: anything, biased towards consistent ones.
    let head = input.u64() & !6;
    let tail = match input.u8() % 4 {
        0 => input.u64(),
        _ => head.wrapping_add(u64::from(input.u8()) * 8 % (capacity as u64 + 16)),
    };
    let poke = |at: usize, v: u64| {
        // SAFETY: inside the region, 8-aligned; no handle is attached yet.
        unsafe { AtomicU64::from_ptr(region.raw().base().as_ptr().add(at).cast()) }
            .store(v, Ordering::Relaxed)
    };
    poke(offsets::HEAD, head);
    poke(offsets::TAIL, tail);
    for _ in 0..input.u8() % 16 {
        hostile_write(&mut input, &region, capacity, head);
    }
    let raw = region.raw();
    let mut o = Oracle {
        max: max_message_len(capacity),
        capacity,
        position: 0,
        dead: false,
    };
    let max = o.max;
    let len = |input: &mut Input<'_>| usize::from(input.u16()) % (max + 2);
    macro_rules! attach {
        ($t:ty) => {
            // SAFETY: the region is live (kept alive by the handle); attach validates
            // whatever the peer left there.
            match unsafe { <$t>::attach(raw) } {
                Ok(h) => h.keep_alive(region.clone()),
                // A clean refusal (inconsistent indices, or a garbled header).
                Err(_) => return Ok(()),
            }
        };
    }
    let mut step = 0;
    match side {
        Side::Consumer => {
            let mut c = attach!(Consumer);
            o.position = c.position();
            while !input.is_empty() {
                step += 1;
                let n = len(&mut input);
                match input.u8() % 9 {
                    0 | 1 => {
                        let r = c.try_peek();
                        let r = r.map(|g| {
                            g.map(|g| {
                                let mut buf = vec![0; n.min(g.len())];
                                g.read_into(&mut buf);
                                if n < g.len() {
                                    g.read_at(g.len() - n, &mut buf);
                                }
                                let len = g.len();
                                match n % 3 {
                                    0 => {
                                        let _ = g.release();
                                    }
                                    1 => g.consume(),
                                    _ => drop(g),
                                }
                                len
                            })
                        });
                        if let Ok(Some(l)) = r {
                            o.message(step, l)?;
                        }
                        pop_outcome(&mut o, step, &r, "try_peek")?;
                    }
                    2 => {
                        let mut buf = vec![0; n];
                        let r = c.try_recv(&mut buf);
                        match r {
                            Ok(Some(got)) => o.message(step, got.len)?,
                            Err(PopError::BufferTooSmall { needed }) => o.message(step, needed)?,
                            _ => {}
                        }
                        pop_outcome(&mut o, step, &r, "try_recv")?;
                    }
                    3 => {
                        let r = c.try_recv_vec();
                        if let Ok(Some((m, _))) = &r {
                            o.message(step, m.len())?;
                        }
                        pop_outcome(&mut o, step, &r, "try_recv_vec")?;
                    }
                    4 => drop(c.release()),
                    5 => {
                        let r = c.prepare_sleep();
                        pop_outcome(&mut o, step, &r, "prepare_sleep")?;
                    }
                    6 => c.cancel_sleep(),
                    7 => {
                        let r = c.pending_bytes();
                        if let Ok(b) = r {
                            o.window(step, "pending", b)?;
                        }
                        pop_outcome(&mut o, step, &r, "pending_bytes")?;
                    }
                    _ => {
                        let _ = c.flow_control();
                    }
                }
                o.known_corrupt(step, c.corruption().is_some())?;
                o.window(step, "consumed", c.consumed_bytes())?;
                o.position(step, c.position())?;
                for _ in 0..input.u8() % 4 {
                    hostile_write(&mut input, &region, capacity, c.position());
                }
            }
        }
        Side::Producer => {
            let mut p = attach!(Producer);
            o.position = p.position();
            while !input.is_empty() {
                step += 1;
                let n = len(&mut input);
                let fill = input.u8();
                let r = match fill % 10 {
                    0 => p.try_send(&payload(step, n)).map(drop).map_err(Some),
                    1 => p.try_stage(&payload(step, n)).map_err(Some),
                    2 => p
                        .try_send_vectored(&[&payload(step, n / 2), &[fill], &[]])
                        .map(drop)
                        .map_err(Some),
                    3 | 4 => p
                        .try_reserve(n)
                        .map(|mut g| {
                            g.fill(fill);
                            if n > 0 {
                                g.write_at(n - 1, &[fill]);
                            }
                            g.truncate(usize::from(fill) % (n + 1));
                            match fill % 3 {
                                0 => {
                                    let _ = g.commit();
                                }
                                1 => g.stage(),
                                _ => drop(g),
                            }
                        })
                        .map_err(Some),
                    // Infallible: nothing to check but the invariants below.
                    5 => {
                        let _ = p.publish();
                        Err(None)
                    }
                    6 => p.poll_flow().map(drop).map_err(Some),
                    7 => p.prepare_sleep_for_space(n).map(drop).map_err(Some),
                    8 => p.prepare_sleep_for_flow_off().map(drop).map_err(Some),
                    _ => {
                        p.cancel_sleep();
                        Err(None)
                    }
                };
                if let Some(r) = fallible(r) {
                    push_outcome(&mut o, step, &r, "producer op")?;
                }
                o.known_corrupt(step, p.corruption().is_some())?;
                o.window(step, "staged", p.staged_bytes())?;
                o.window(step, "used", p.used_bytes())?;
                o.position(step, p.position())?;
                for _ in 0..input.u8() % 4 {
                    hostile_write(&mut input, &region, capacity, p.position());
                }
            }
        }
        Side::Mpsc => {
            let p = attach!(MpscProducer);
            o.position = p.position();
            while !input.is_empty() {
                step += 1;
                let n = len(&mut input);
                let fill = input.u8();
                let r = match fill % 8 {
                    0 => p.try_send(&payload(step, n)).map(drop).map_err(Some),
                    1 => p
                        .try_send_vectored(&[&payload(step, n / 2), &[fill]])
                        .map(drop)
                        .map_err(Some),
                    2 | 3 => p
                        .try_reserve(n)
                        .map(|mut g| {
                            g.fill(fill);
                            g.truncate(usize::from(fill) % (n + 1));
                            if fill % 2 == 0 {
                                let _ = g.commit();
                            }
                        })
                        .map_err(Some),
                    4 => p.poll_flow().map(drop).map_err(Some),
                    5 => p.prepare_sleep_for_space(n).map(drop).map_err(Some),
                    6 => p.prepare_sleep_for_flow_off().map(drop).map_err(Some),
                    _ => {
                        p.cancel_sleep();
                        Err(None)
                    }
                };
                if let Some(r) = fallible(r) {
                    push_outcome(&mut o, step, &r, "mpsc op")?;
                }
                o.known_corrupt(step, p.is_corrupt())?;
                o.position(step, p.position())?;
                for _ in 0..input.u8() % 4 {
                    hostile_write(&mut input, &region, capacity, p.position());
                }
            }
        }
    }
    Ok(())
}
