//! A hostile peer writing the shared region: errors, never panics or UB.
#![cfg(not(loom))]
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use coroipc_ring::heap::HeapRegion;
use coroipc_ring::{
    offsets, AttachError, Config, Consumer, Corruption, PopError, Producer, PushError,
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
        (u64::MAX - 7, Corruption::IndexOutOfRange(u64::MAX - 7)),
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
        let _ = p.try_send(&[0; 8]).unwrap();
        // Ring full: the next send reads the head.
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
