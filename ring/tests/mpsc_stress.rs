//! What loom cannot see: the production wait for an MPSC claim's turn
//! (`TurnWait::wait_for` spins on `turn` and is never compiled under loom, which waits on
//! a modelled condvar instead). Four producer threads hold their grants while filling
//! them in two steps, some truncate, some abandon theirs (SKIP frames), so publishers
//! regularly wait for an earlier claim; the consumer checks that every committed
//! message arrives once, intact, in per-producer order, and that the ring is never
//! found corrupt (a tail going backwards would be).
#![cfg(not(loom))]
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use coroipc_ring::heap::mpsc_channel;
use coroipc_ring::{Config, MpscProducer, PushError};

const PRODUCERS: u32 = 4;

/// What producer `t` does with its `i`-th claim: `None` abandons it, `Some(keep)`
/// commits its first `keep` bytes.
fn plan(t: u32, i: u32) -> Option<usize> {
    match (i.wrapping_mul(7) ^ t) % 11 {
        0 => None,
        1 => Some(12),
        _ => Some(24),
    }
}

/// The message `t` sends for claim `i`: producer, index, a check word, padding.
fn message(t: u32, i: u32) -> [u8; 24] {
    let mut m = [0u8; 24];
    m[..4].copy_from_slice(&t.to_le_bytes());
    m[4..8].copy_from_slice(&i.to_le_bytes());
    m[8..12].copy_from_slice(&(t.rotate_left(16) ^ i).to_le_bytes());
    m[12..].fill(t as u8 ^ i as u8);
    m
}

fn produce(p: &MpscProducer, t: u32, claims: u32) {
    for i in 0..claims {
        let whole = message(t, i);
        let mut grant = loop {
            match p.try_reserve(whole.len()) {
                Ok(g) => break g,
                Err(PushError::Full) => std::thread::yield_now(),
                Err(e) => panic!("{e}"),
            }
        };
        // Fill in two steps with a pause between: later claims reach their turn
        // while this one is still held.
        grant.write_at(0, &whole[..12]);
        if i % 4 == 0 {
            std::thread::yield_now();
        }
        grant.write_at(12, &whole[12..]);
        match plan(t, i) {
            None => drop(grant),
            Some(keep) => {
                grant.truncate(keep);
                let _ = grant.commit();
            }
        }
    }
}

#[test]
fn four_producers_wait_for_their_turn() {
    // Off Linux without `std` the production wait only spins (`turn.rs`): on an
    // oversubscribed machine (this test runs five threads) a waiter then burns whole
    // time slices while the grant it waits for is descheduled, so run fewer claims.
    let claims: u32 = if cfg!(miri) {
        40
    } else if cfg!(any(feature = "std", target_os = "linux")) {
        100_000
    } else {
        200
    };
    // Room for a few claims only, so producers also meet a full ring.
    let (p, mut c) = mpsc_channel(&Config::new(256)).unwrap();
    let p = Arc::new(p);
    let handles: Vec<_> = (0..PRODUCERS)
        .map(|t| {
            let p = p.clone();
            std::thread::spawn(move || produce(&p, t, claims))
        })
        .collect();
    let expected: Vec<u32> = (0..PRODUCERS)
        .map(|t| (0..claims).filter(|&i| plan(t, i).is_some()).count() as u32)
        .collect();
    let total: u32 = expected.iter().sum();
    let mut next = [0u32; PRODUCERS as usize];
    let mut got = 0;
    let mut buf = [0u8; 64];
    while got < total {
        let Some(received) = c.try_recv(&mut buf).unwrap() else {
            std::thread::yield_now();
            continue;
        };
        let m = &buf[..received.len];
        let t = u32::from_le_bytes(m[..4].try_into().unwrap());
        let i = u32::from_le_bytes(m[4..8].try_into().unwrap());
        assert!(t < PRODUCERS, "unknown producer {t}");
        // Claims this producer abandoned never arrive: skip them in the expectation.
        while plan(t, next[t as usize]).is_none() {
            next[t as usize] += 1;
        }
        assert_eq!(next[t as usize], i, "producer {t}: lost or reordered");
        let keep = plan(t, i).unwrap();
        assert_eq!(
            m,
            &message(t, i)[..keep],
            "producer {t} message {i} garbled"
        );
        next[t as usize] += 1;
        got += 1;
    }
    for h in handles {
        h.join().unwrap();
    }
    assert!(c.try_recv_vec().unwrap().is_none(), "nothing extra");
    assert!(!p.is_corrupt());
    assert_eq!(c.corruption(), None);
}
