//! A hostile peer writing the shared region: errors, never panics or UB.
#![cfg(not(loom))]
#![allow(clippy::unwrap_used)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use coroipc_ring::heap::HeapRegion;
use coroipc_ring::{
    offsets, AttachError, Config, Consumer, Corruption, FlowChange, MpscProducer, PopError,
    Producer, PushError,
};

fn pair(cap: usize) -> (Arc<HeapRegion>, Producer, Consumer) {
    let cfg = Config::new(cap);
    let region = Arc::new(HeapRegion::new(&cfg).unwrap());
    // SAFETY: fresh region, kept alive by the handles.
    let p = unsafe { Producer::create(region.raw(), &cfg) }
        .unwrap()
        .keep_alive(region.clone());
    // SAFETY: initialised above.
    let c = unsafe { Consumer::attach(region.raw()) }
        .unwrap()
        .keep_alive(region.clone());
    (region, p, c)
}

fn poke_u64(region: &HeapRegion, off: usize, v: u64) {
    // SAFETY: in bounds of the region; single-threaded test, no concurrent access.
    unsafe {
        region
            .raw()
            .base()
            .as_ptr()
            .add(off)
            .cast::<u64>()
            .write_volatile(v)
    };
}

#[test]
fn consumer_rejects_bad_tails() {
    for (bad, want) in [
        (4u64, Corruption::MisalignedIndex(4)),
        (8 * 1000, Corruption::IndexOutOfRange(8000)),
        (
            u64::MAX - 7,
            // Positions are modulo 2^64: this one is 8 bytes behind 0.
            Corruption::IndexWentBackwards {
                previous: 0,
                now: u64::MAX - 7,
            },
        ),
        (
            1 << 63,
            Corruption::IndexWentBackwards {
                previous: 0,
                now: 1 << 63,
            },
        ),
        ((1 << 63) - 8, Corruption::IndexOutOfRange((1 << 63) - 8)),
    ] {
        let (r, _p, mut c) = pair(64);
        poke_u64(&r, offsets::TAIL, bad);
        assert_eq!(c.try_recv_vec().unwrap_err(), PopError::Corrupt(want));
        // Sticky: the ring stays dead.
        assert!(matches!(c.try_recv_vec(), Err(PopError::Corrupt(_))));
    }
    let (r, mut p, mut c) = pair(64);
    let _ = p.try_send(b"abc").unwrap();
    let _ = c.try_peek().unwrap();
    poke_u64(&r, offsets::TAIL, 0);
    let _ = c.try_recv_vec().unwrap().unwrap();
    assert!(matches!(
        c.try_recv_vec(),
        Err(PopError::Corrupt(Corruption::IndexWentBackwards { .. }))
    ));
}

#[test]
fn consumer_rejects_bad_frames() {
    let cases: [(u64, &str); 5] = [
        (0xdead_beef_0000_0003, "bad tag"),
        ((0x4d53_4701u64 << 32) | 25, "too long for the ring"),
        ((0x4d53_4701u64 << 32) | 16, "past the tail"),
        ((0x5041_4401u64 << 32) | 8, "padding at offset 0"),
        (0, "zero word"),
    ];
    for (word, what) in cases {
        let (r, mut p, mut c) = pair(64);
        let _ = p.try_send(b"12345678").unwrap();
        poke_u64(&r, offsets::DATA, word);
        assert!(
            matches!(c.try_recv_vec(), Err(PopError::Corrupt(_))),
            "{what}"
        );
    }
}

#[test]
fn producer_rejects_bad_heads() {
    for bad in [67u64, 80, !7] {
        let (r, mut p, _c) = pair(64);
        let _ = p.try_send(&[0; 8]).unwrap();
        let _ = p.try_send(&[0; 8]).unwrap();
        let _ = p.try_send(&[0; 8]).unwrap();
        // Ring full (an SPSC ring keeps its last 8 bytes free, SPEC §1.3a): the next
        // send reads the head.
        poke_u64(&r, offsets::HEAD, bad);
        assert!(
            matches!(p.try_send(&[0; 8]), Err(PushError::Corrupt(_))),
            "head {bad}"
        );
        assert!(matches!(p.try_send(&[]), Err(PushError::Corrupt(_))));
    }
}

#[test]
fn attach_validates_the_header() {
    let cfg = Config::new(64);
    let region = HeapRegion::new(&cfg).unwrap();
    let attach = |region: &HeapRegion| {
        // SAFETY: the region is live and readable; attach validates what it finds.
        unsafe { Consumer::attach(region.raw()) }.map(drop)
    };
    assert_eq!(attach(&region), Err(AttachError::BadMagic));
    // SAFETY: fresh region, nobody else uses it.
    let p = unsafe { Producer::create(region.raw(), &cfg) }.unwrap();
    drop(p);
    assert_eq!(attach(&region), Ok(()));
    poke_u64(&region, offsets::CAPACITY, 1 << 40);
    assert!(matches!(attach(&region), Err(AttachError::Config(_))));
    poke_u64(&region, offsets::CAPACITY, 1024);
    assert!(matches!(attach(&region), Err(AttachError::TooSmall { .. })));
    poke_u64(&region, offsets::CAPACITY, 64);
    poke_u64(&region, offsets::VERSION, 7);
    assert_eq!(attach(&region), Err(AttachError::BadVersion(7)));
}

#[test]
fn garbage_everywhere_never_panics() {
    // A deterministic xorshift stream of garbage over the whole region between ops.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let rounds = if cfg!(miri) { 20 } else { 2000 };
    for _ in 0..rounds {
        let (r, mut p, mut c) = pair(64);
        for step in 0..8 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let off = (x as usize % (offsets::DATA + 64 - 8)) & !7;
            if step % 2 == 0 {
                poke_u64(&r, off, x.rotate_left(step));
            }
            let _ = p.try_send(&[1; 5]);
            let _ = c.try_recv_vec();
            let _ = c.prepare_sleep();
            let _ = p.prepare_sleep_for_space(8);
            let _ = p.poll_flow();
        }
    }
}

/// A region whose creator (possibly hostile) chose the starting `head` and `tail`, with
/// `word` at the head's offset; both sides attach.
fn attached_at(cap: usize, head: u64, tail: u64, word: u64) -> Arc<HeapRegion> {
    let cfg = Config::new(cap);
    let region = Arc::new(HeapRegion::new(&cfg).unwrap());
    // SAFETY: fresh region; the creating handle is dropped at once. A consumer
    // creates it, so it is not linked (an MPSC producer may attach as well).
    drop(unsafe { Consumer::create(region.raw(), &cfg) }.unwrap());
    poke_u64(&region, offsets::HEAD, head);
    poke_u64(&region, offsets::TAIL, tail);
    poke_u64(&region, offsets::DATA + (head as usize & (cap - 1)), word);
    region
}

fn attach_both(region: &Arc<HeapRegion>) -> (Producer, Consumer) {
    // SAFETY: live region kept alive by the handles; attach validates what it finds.
    let p = unsafe { Producer::attach(region.raw()) }
        .unwrap()
        .keep_alive(region.clone());
    // SAFETY: as above.
    let c = unsafe { Consumer::attach(region.raw()) }
        .unwrap()
        .keep_alive(region.clone());
    (p, c)
}

/// Runs every SPSC operation many times; the ring must carry every message it accepted,
/// in order, or report corruption (sticky), never panic (debug builds check every
/// addition for overflow).
fn exercise(
    p: &mut Producer,
    c: &mut Consumer,
    rounds: usize,
    preloaded: &[Vec<u8>],
) -> Option<Corruption> {
    let max = p.max_message_len();
    let mut sent: std::collections::VecDeque<Vec<u8>> = preloaded.iter().cloned().collect();
    let mut dead = None;
    for i in 0..rounds {
        let len = (i * 7) % (max + 1);
        let msg: Vec<u8> = (0..len).map(|j| (i + j) as u8).collect();
        let accepted = match i % 4 {
            0 => p.try_send(&msg).map(|_| ()),
            1 => p.try_reserve(len).map(|mut g| {
                g.write_at(0, &msg);
                let _ = g.commit();
            }),
            2 => p.try_stage(&msg),
            _ => p
                .try_send_vectored(&[&msg[..len / 2], &msg[len / 2..]])
                .map(|_| ()),
        };
        match accepted {
            Ok(()) => sent.push_back(msg),
            Err(PushError::Full) => {}
            Err(e) => panic!("producer: {e}"),
        }
        let _ = p.publish();
        let _ = p.poll_flow().unwrap();
        let _ = p.prepare_sleep_for_space(len).unwrap();
        p.cancel_sleep();
        let _ = p.prepare_sleep_for_flow_off().unwrap();
        p.cancel_sleep();
        assert!(p.used_bytes() <= p.config().capacity);
        let got = match i % 3 {
            0 => c.try_recv_vec().map(|r| r.map(|(m, _)| m)),
            1 => c.try_peek().map(|g| {
                g.map(|g| {
                    let mut m = vec![0; g.len()];
                    g.read_into(&mut m);
                    if i % 2 == 0 {
                        let _ = g.release();
                    } else {
                        g.consume();
                    }
                    m
                })
            }),
            _ => {
                let mut buf = vec![0; max];
                c.try_recv(&mut buf)
                    .map(|r| r.map(|r| buf[..r.len].to_vec()))
            }
        };
        match got {
            Ok(Some(m)) => assert_eq!(Some(m), sent.pop_front(), "round {i}"),
            Ok(None) => {}
            Err(PopError::Corrupt(e)) => {
                dead = Some(e);
                break;
            }
            Err(e) => panic!("consumer: {e}"),
        }
        let _ = c.release();
        let _ = c.pending_bytes().unwrap();
        assert!(c.consumed_bytes() <= c.config().capacity);
        let _ = c.prepare_sleep().unwrap();
        c.cancel_sleep();
    }
    if let Some(e) = dead {
        assert_eq!(c.try_recv_vec(), Err(PopError::Corrupt(e)), "sticky");
        assert_eq!(c.prepare_sleep(), Err(PopError::Corrupt(e)), "sticky");
    }
    dead
}

const MSG_EMPTY: u64 = 0x4d53_4701u64 << 32;

/// Positions near 2^64 chosen by the creator: every operation, across the wrap of the
/// position space, in debug and release builds (issue 12, item 2).
#[test]
fn positions_near_u64_max() {
    let top = 0u64;
    let caps: &[usize] = if cfg!(miri) { &[32] } else { &[32, 64, 4096] };
    for &cap in caps {
        let half = cap / 2 - 8;
        let one_empty = vec![Vec::new()];
        let one_half = vec![vec![0; half]];
        for (head, tail, word, preloaded, want) in [
            (
                top.wrapping_sub(16),
                top.wrapping_sub(8),
                MSG_EMPTY,
                &one_empty,
                None,
            ),
            (top.wrapping_sub(16), top.wrapping_sub(16), 0, &vec![], None),
            (top.wrapping_sub(8), top.wrapping_sub(8), 0, &vec![], None),
            (1 << 63, 1 << 63, 0, &vec![], None),
            ((1 << 63) - 8, (1 << 63) - 8, 0, &vec![], None),
            (u64::MAX - 7, u64::MAX - 7, 0, &vec![], None),
            // A full ring: one message, then a garbage (zero) frame header.
            (
                top.wrapping_sub(cap as u64),
                top,
                MSG_EMPTY | half as u64,
                &one_half,
                Some(Corruption::BadFrameTag(0)),
            ),
        ] {
            let region = attached_at(cap, head, tail, word);
            let (mut p, mut c) = attach_both(&region);
            let rounds = if cfg!(miri) { cap } else { 3 * cap };
            let dead = exercise(&mut p, &mut c, rounds, preloaded);
            assert_eq!(dead, want, "cap {cap} head {head:#x} tail {tail:#x}");
        }
    }
}

/// The case: head = 2^64 - 16, tail = 2^64 - 8, and a garbage frame there.
#[test]
fn garbage_frame_near_u64_max_is_an_error() {
    let region = attached_at(64, 0u64.wrapping_sub(16), 0u64.wrapping_sub(8), 0);
    let (mut p, mut c) = attach_both(&region);
    assert_eq!(
        exercise(&mut p, &mut c, 64, &[]),
        Some(Corruption::BadFrameTag(0))
    );
    // The producer is unaffected until the consumer's head stops moving: Full.
    loop {
        match p.try_send(&[1; 8]) {
            Ok(_) => {}
            Err(PushError::Full) => break,
            Err(e) => panic!("{e}"),
        }
    }
}

/// MPSC producers attached near 2^64: every operation, correct across the wrap.
#[test]
fn mpsc_near_u64_max() {
    for start in [0u64.wrapping_sub(16), 0u64.wrapping_sub(8), 1 << 63] {
        let region = attached_at(128, start, start, 0);
        // SAFETY: live region kept alive by the handles.
        let p = unsafe { MpscProducer::attach(region.raw()) }
            .unwrap()
            .keep_alive(region.clone());
        // SAFETY: as above.
        let mut c = unsafe { Consumer::attach(region.raw()) }
            .unwrap()
            .keep_alive(region.clone());
        for i in 0..if cfg!(miri) { 20 } else { 200u8 } {
            let _ = p.try_send(&[i; 3]).unwrap();
            let mut g = p.try_reserve(20).unwrap();
            g.write_at(0, &[i; 20]);
            g.truncate(5);
            let _ = g.commit();
            drop(p.try_reserve(4).unwrap());
            let _ = p.prepare_sleep_for_space(24).unwrap();
            let _ = p.prepare_sleep_for_flow_off().unwrap();
            assert!(matches!(
                p.poll_flow(),
                Ok(None | Some(FlowChange::On | FlowChange::Off))
            ));
            assert_eq!(c.try_recv_vec().unwrap().unwrap().0, [i; 3]);
            assert_eq!(c.try_recv_vec().unwrap().unwrap().0, [i; 5]);
            assert!(c.try_recv_vec().unwrap().is_none());
            let _ = c.prepare_sleep().unwrap();
            c.cancel_sleep();
        }
        assert!(!p.is_corrupt());
    }
}

/// The region's base, shared with a thread playing the hostile peer.
#[derive(Clone, Copy)]
struct Peer(*mut u8);
// SAFETY: the pointer is only used for atomic stores into a live region.
unsafe impl Send for Peer {}

impl Peer {
    /// Stores `v` into the data word `word` (what a peer in another process does with
    /// plain stores; in this process it must be atomic to be race-free itself).
    fn scribble(self, word: usize, v: u64) {
        // SAFETY: inside the region's data area (callers pass small word indices),
        // 8-aligned; every access to the data area is an 8-byte atomic.
        unsafe { AtomicU64::from_ptr(self.0.add(offsets::DATA + word * 8).cast()) }
            .store(v, Ordering::Relaxed);
    }
}

/// A hostile thread rewrites published payload (and a reservation being filled) while
/// this side reads and writes it through the public API: race-free (run under Miri,
/// which reports any data race), with values that may be garbled but never UB.
#[test]
fn hostile_thread_writes_payload_during_access() {
    let rounds = if cfg!(miri) { 30 } else { 3000 };
    let (r, mut p, mut c) = pair(128);
    let _ = p.try_send(&[1; 24]).unwrap();
    let peer = Peer(r.raw().base().as_ptr());
    std::thread::scope(|s| {
        s.spawn(move || {
            for i in 0..rounds {
                // Payload words of the published message (frame header at word 0),
                // and of the next reservation (header at word 4).
                for w in [1, 2, 3, 5, 6] {
                    peer.scribble(w, (i as u64).wrapping_mul(0x0101_0101_0101_0101));
                }
            }
        });
        for _ in 0..rounds {
            let g = c.try_peek().unwrap().unwrap();
            assert_eq!(g.len(), 24);
            let mut buf = [0; 24];
            g.read_into(&mut buf);
            let mut part = [0; 5];
            g.read_at(17, &mut part);
            assert_eq!(g.to_vec().len(), 24);
            drop(g); // stays in the ring
            let mut w = p.try_reserve(13).unwrap();
            w.write_at(3, &[2; 9]);
            w.fill(3);
            drop(w); // abandoned
        }
    });
    assert_eq!(c.try_recv_vec().unwrap().unwrap().0.len(), 24);
}

/// Ring audit L2: once a producer found the ring corrupt, no flow transition is
/// evaluated or reported, even if the head becomes plausible again.
#[test]
fn no_flow_transition_after_poisoning() {
    let cfg = Config::new(256).with_watermarks(192, 64);
    let region = Arc::new(HeapRegion::new(&cfg).unwrap());
    // SAFETY: fresh region, kept alive by the handle.
    let mut p = unsafe { Producer::create(region.raw(), &cfg) }
        .unwrap()
        .keep_alive(region.clone());
    while p.try_send(&[7; 24]).unwrap().flow.is_none() {}
    assert!(p.flow_control());
    poke_u64(&region, offsets::HEAD, 4);
    assert_eq!(p.publish().flow, None);
    assert!(p.corruption().is_some());
    // A head that would end flow control, after the poisoning.
    poke_u64(&region, offsets::HEAD, p.position());
    assert_eq!(p.publish().flow, None);
    assert!(p.poll_flow().is_err());
    assert!(p.flow_control(), "no transition from a corrupt ring");

    let region = Arc::new(HeapRegion::new(&cfg).unwrap());
    // SAFETY: as above.
    let p = unsafe { MpscProducer::create(region.raw(), &cfg) }
        .unwrap()
        .keep_alive(region.clone());
    while p.try_send(&[7; 24]).unwrap().flow.is_none() {}
    assert!(p.flow_control());
    poke_u64(&region, offsets::HEAD, 4);
    assert!(p.poll_flow().is_err());
    poke_u64(&region, offsets::HEAD, p.position());
    assert!(p.poll_flow().is_err());
    assert!(p.flow_control(), "no transition from a corrupt ring");
}
