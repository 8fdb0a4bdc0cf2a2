//! `hand_off` (SPEC §1.3b) is a cache hint: whatever is handed off, when, and how
//! often, the consumer reads the same frames and the sleep protocol answers the same.
#![cfg(not(loom))]
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use coroipc_ring::heap::{channel, mpsc_channel};
use coroipc_ring::{Config, PushError};

fn pattern(seed: usize, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (seed.wrapping_mul(29).wrapping_add(i * 11)) as u8)
        .collect()
}

#[test]
fn handed_off_frames_read_back_at_every_offset_and_length() {
    let (mut p, mut c) = channel(&Config::new(512)).unwrap();
    p.hand_off(); // nothing published yet: nothing to do
    let max = p.max_message_len();
    let rounds = if cfg!(miri) { 40 } else { 2000 };
    for i in 0..rounds {
        let len = (i * 7) % (max + 1);
        let msg = pattern(i, len);
        let _ = p.try_send(&msg).unwrap();
        p.hand_off();
        if i % 3 == 0 {
            p.hand_off(); // a second call finds nothing new
        }
        let (got, _) = c.try_recv_vec().unwrap().expect("the message");
        assert_eq!(got, msg, "round {i}, {len} bytes");
    }
    assert!(c.try_recv_vec().unwrap().is_none());
}

#[test]
fn a_batch_handed_off_at_once_and_a_stream_never_handed_off() {
    let (mut p, mut c) = channel(&Config::new(1 << 16)).unwrap();
    // A stream of a hundred publishes, then one hand-off of all of it (its first
    // lines only are demoted; the rest is untouched).
    for i in 0..100 {
        let _ = p.try_send(&pattern(i, 200)).unwrap();
    }
    p.hand_off();
    for i in 0..10 {
        p.try_stage(&pattern(1000 + i, 48)).unwrap();
    }
    let _ = p.publish();
    p.hand_off();
    for i in 0..100 {
        assert_eq!(c.try_recv_vec().unwrap().unwrap().0, pattern(i, 200));
    }
    for i in 0..10 {
        assert_eq!(c.try_recv_vec().unwrap().unwrap().0, pattern(1000 + i, 48));
    }
    assert!(c.try_recv_vec().unwrap().is_none());
}

#[test]
fn a_hand_off_leaves_the_sleep_protocol_alone() {
    let (mut p, mut c) = channel(&Config::new(1024)).unwrap();
    assert!(c.prepare_sleep().unwrap().sleep);
    let published = p.try_send(b"wake").unwrap();
    p.hand_off();
    assert!(published.wake.is_needed(), "the consumer announced sleep");
    c.cancel_sleep();
    assert_eq!(c.try_recv_vec().unwrap().unwrap().0, b"wake");
    // The next publish finds it awake.
    assert!(!p.try_send(b"again").unwrap().wake.is_needed());
    p.hand_off();
    assert_eq!(c.try_recv_vec().unwrap().unwrap().0, b"again");
}

#[test]
fn a_ping_pong_that_hands_off_every_message_loses_nothing() {
    let rounds = if cfg!(miri) { 30 } else { 20_000 };
    let (mut to_b, mut b_in) = channel(&Config::new(4096)).unwrap();
    let (mut to_a, mut a_in) = channel(&Config::new(4096)).unwrap();
    let echo = std::thread::spawn(move || {
        for _ in 0..rounds {
            let msg = loop {
                if let Some((m, _)) = b_in.try_recv_vec().unwrap() {
                    break m;
                }
                std::hint::spin_loop();
            };
            while matches!(to_a.try_send(&msg), Err(PushError::Full)) {
                std::hint::spin_loop();
            }
            to_a.hand_off();
        }
    });
    for i in 0..rounds {
        let msg = pattern(i, 8 + i % 120);
        let _ = to_b.try_send(&msg).unwrap();
        to_b.hand_off();
        let got = loop {
            if let Some((m, _)) = a_in.try_recv_vec().unwrap() {
                break m;
            }
            std::hint::spin_loop();
        };
        assert_eq!(got, msg, "round {i}");
    }
    echo.join().unwrap();
}

#[test]
fn mpsc_hand_offs_racing_publications_lose_nothing() {
    let per: u32 = if cfg!(miri) { 30 } else { 20_000 };
    let threads = 3u32;
    let (p, mut c) = mpsc_channel(&Config::new(2048)).unwrap();
    let p = Arc::new(p);
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let p = p.clone();
            std::thread::spawn(move || {
                for i in 0..per {
                    let mut msg = [0u8; 24];
                    msg[..4].copy_from_slice(&t.to_le_bytes());
                    msg[4..8].copy_from_slice(&i.to_le_bytes());
                    let len = 8 + (i as usize % 17);
                    loop {
                        match p.try_send(&msg[..len]) {
                            Ok(_) => break,
                            Err(PushError::Full) => std::thread::yield_now(),
                            Err(e) => panic!("{e}"),
                        }
                    }
                    if (i + t) % 2 == 0 {
                        p.hand_off();
                    }
                }
            })
        })
        .collect();
    let mut next = vec![0u32; threads as usize];
    let mut got = 0;
    while got < per * threads {
        match c.try_recv_vec().unwrap() {
            Some((m, _)) => {
                let t = u32::from_le_bytes(m[..4].try_into().unwrap()) as usize;
                let i = u32::from_le_bytes(m[4..8].try_into().unwrap());
                assert_eq!(i, next[t], "thread {t} in order");
                assert_eq!(m.len(), 8 + (i as usize % 17));
                next[t] += 1;
                got += 1;
            }
            None => std::thread::yield_now(),
        }
    }
    for h in handles {
        h.join().unwrap();
    }
    p.hand_off();
    assert!(c.try_recv_vec().unwrap().is_none());
}
