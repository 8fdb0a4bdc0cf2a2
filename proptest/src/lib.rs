//! A reference model of an SPSC ring and drivers that run operation sequences against
//! both the real ring and the model, shared by the property tests (`tests/`) and the
//! fuzz targets (`fuzz/`).
//!
//! The model is a `VecDeque<Vec<u8>>` of published messages plus the byte positions
//! the protocol defines (write position, published tail, read position, released head),
//! so it predicts not only contents and order but exactly when `Full` happens.
#![deny(missing_docs)]

use std::collections::VecDeque;
use std::sync::Arc;

use coroipc_ring::heap::HeapRegion;
use coroipc_ring::{
    max_message_len, offsets, Config, Consumer, PopError, Producer, PushError, FRAME_HEADER,
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
    /// `Consumer::release`.
    Release,
    /// `try_recv` into a buffer of `len` bytes.
    Recv(usize),
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
                match k % 11 {
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
                    _ => Op::Recv(len(a, b)),
                }
            })
            .collect()
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
}

impl Model {
    /// `(frame start, frame end)` of a message of `len` bytes written now.
    fn place(&self, len: usize) -> (u64, u64) {
        let frame = (FRAME_HEADER + len.div_ceil(8) * 8) as u64;
        let to_end = self.cap - self.tail % self.cap;
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
        } else if self.frame_end(len) - self.head > self.cap {
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
        if end - self.head > self.cap {
            return Err(PushError::Full);
        }
        self.tail = end;
        self.queue.push_back((data, start, end));
        Ok(())
    }

    /// The next message visible to the consumer (published, not consumed).
    fn front(&self) -> Option<&(Vec<u8>, u64, u64)> {
        self.queue
            .front()
            .filter(|(_, _, end)| *end <= self.published)
    }
}

/// Runs `ops` on a fresh ring of `capacity` bytes and on the model; `Err` describes
/// the first divergence.
pub fn run_model(capacity: usize, ops: &[Op]) -> Result<(), String> {
    let cfg = Config::new(capacity);
    let (mut p, mut c) = coroipc_ring::heap::channel(&cfg).map_err(|e| e.to_string())?;
    let max = max_message_len(capacity);
    let mut m = Model {
        cap: capacity as u64,
        max,
        queue: VecDeque::new(),
        tail: 0,
        published: 0,
        pos: 0,
        head: 0,
    };
    for (step, op) in ops.iter().enumerate() {
        let ctx = |what: &str| format!("step {step} {op:?}: {what}");
        match op {
            Op::Send(len) | Op::Stage(len) => {
                let data = payload(step, *len);
                let real = if matches!(op, Op::Send(_)) {
                    p.try_send(&data).map(|_| ())
                } else {
                    p.try_stage(&data)
                };
                let want = m.write(data);
                if real != want {
                    return Err(ctx(&format!("ring {real:?}, model {want:?}")));
                }
                if matches!(op, Op::Send(_)) && want.is_ok() {
                    m.published = m.tail;
                }
            }
            Op::SendVectored(lens) => {
                let parts: Vec<Vec<u8>> = lens
                    .iter()
                    .enumerate()
                    .map(|(i, l)| payload(step + i, *l))
                    .collect();
                let refs: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
                let real = p.try_send_vectored(&refs).map(|_| ());
                let want = m.write(parts.concat());
                if real != want {
                    return Err(ctx(&format!("ring {real:?}, model {want:?}")));
                }
                if want.is_ok() {
                    m.published = m.tail;
                }
            }
            Op::ReserveCommit(len, keep) => {
                let data = payload(step, *len);
                let real = p.try_reserve(*len).map(|mut g| {
                    g.write_at(0, &data);
                    g.truncate(*keep);
                    let _ = g.commit();
                });
                let kept = data[..(*keep).min(*len.min(&data.len()))].to_vec();
                // The reservation is checked for `len`; the frame committed is `keep`.
                let want = m.reserve(*len).map(|()| m.write_reserved(*len, kept));
                if real != want {
                    return Err(ctx(&format!("ring {real:?}, model {want:?}")));
                }
                if want.is_ok() {
                    m.published = m.tail;
                }
            }
            Op::ReserveDrop(len) => {
                let real = p.try_reserve(*len).map(drop);
                let want = m.reserve(*len);
                if real != want {
                    return Err(ctx(&format!("ring {real:?}, model {want:?}")));
                }
            }
            Op::Publish => {
                let _ = p.publish();
                m.published = m.tail;
            }
            Op::PeekRelease | Op::PeekConsume | Op::PeekDrop => {
                let got = c.try_peek().map_err(|e| ctx(&e.to_string()))?;
                let want = m.front().cloned();
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
                                let _ = g.release();
                                m.queue.pop_front();
                                m.pos = end;
                                m.head = end;
                            }
                            Op::PeekConsume => {
                                g.consume();
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
                let _ = c.release();
                m.head = m.pos;
            }
            Op::Recv(buf_len) => {
                let mut buf = vec![0u8; *buf_len];
                let real = c.try_recv(&mut buf);
                match (real, m.front().cloned()) {
                    (Ok(None), None) => {}
                    (Ok(Some(r)), Some((data, _, end))) if data.len() <= *buf_len => {
                        if buf[..r.len] != data[..] {
                            return Err(ctx("contents differ"));
                        }
                        m.queue.pop_front();
                        m.pos = end;
                        m.head = end;
                    }
                    (Err(PopError::BufferTooSmall { needed }), Some((data, start, _)))
                        if needed == data.len() =>
                    {
                        m.pos = m.pos.max(start);
                    }
                    (r, w) => return Err(ctx(&format!("ring {r:?}, model {w:?}"))),
                }
            }
        }
    }
    Ok(())
}

/// Runs operations on one side while `garbage` is written into the shared region
/// between them: every call must return (Ok or an error), never panic, and a side that
/// reported corruption must keep reporting it. `garbage` is consumed 9 bytes at a time:
/// an offset (2 bytes) and a value (8 bytes minus one for the operation selector).
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
            Op::SendVectored(_) | Op::Publish => {
                let _ = p.publish();
                let _ = p.poll_flow();
            }
            Op::PeekRelease | Op::PeekConsume | Op::PeekDrop | Op::Release => {
                let r = c
                    .try_peek()
                    .map(|g| g.map(|g| (g.to_vec().len(), g.release())));
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
