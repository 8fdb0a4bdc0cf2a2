//! Loom models of coroipc-ring. Every model runs the production ring code: the `sync`
//! shim swaps in loom atomics and makes every 8-byte data word a tracked cell, so a
//! missing happens-before between writing and reading a frame is a causality error,
//! and a lost wake-up is a deadlock.
#![cfg(loom)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use coroipc_ring::heap::{channel, mpsc_channel};
use coroipc_ring::{Config, FlowChange, PushError};
use loom::thread;
use loom_tests::{msg, Doorbell, GenBell};

/// Sends `m`, yielding while the ring is full.
fn send_spin(p: &mut coroipc_ring::Producer, m: &[u8]) {
    loop {
        match p.try_send(m) {
            Ok(_) => return,
            Err(PushError::Full) => thread::yield_now(),
            Err(e) => panic!("{e}"),
        }
    }
}

/// Receives one message, yielding while the ring is empty.
fn recv_spin(c: &mut coroipc_ring::Consumer) -> Vec<u8> {
    loop {
        if let Some((m, _)) = c.try_recv_vec().unwrap() {
            return m;
        }
        thread::yield_now();
    }
}

/// Advances a fresh 32-byte ring by `offset` bytes (single-threaded, before the race).
fn advance(p: &mut coroipc_ring::Producer, c: &mut coroipc_ring::Consumer, offset: usize) {
    let mut done = 0;
    while done < offset {
        let _ = p.try_send(&[]).unwrap(); // an 8-byte frame
        let _ = c.try_recv_vec().unwrap().unwrap();
        done += 8;
    }
}

/// Two messages cross the end of the data area from every starting offset: padding,
/// wrap and the frame after it are published and read concurrently.
#[test]
fn spsc_wrap_at_every_offset() {
    for offset in [0usize, 8, 16, 24] {
        loom::model(move || {
            let (mut p, mut c) = channel(&Config::new(32)).unwrap();
            advance(&mut p, &mut c, offset);
            let t = thread::spawn(move || {
                send_spin(&mut p, &msg(1, 8));
                send_spin(&mut p, &msg(2, 3));
            });
            assert_eq!(recv_spin(&mut c), msg(1, 8));
            assert_eq!(recv_spin(&mut c), msg(2, 3));
            t.join().unwrap();
        });
    }
}

/// The producer fills the ring (Full) and the consumer drains it concurrently; an
/// empty ring reads as None, never as garbage.
#[test]
fn spsc_full_and_empty_edges() {
    loom::model(|| {
        let (mut p, mut c) = channel(&Config::new(32)).unwrap();
        let t = thread::spawn(move || {
            for i in 0..3u8 {
                send_spin(&mut p, &msg(i, 8));
            }
            p
        });
        for i in 0..3u8 {
            assert_eq!(recv_spin(&mut c), msg(i, 8));
        }
        let mut p = t.join().unwrap();
        assert!(c.try_recv_vec().unwrap().is_none());
        // Exactly two 16-byte frames fit.
        let _ = p.try_send(&[0; 8]).unwrap();
        let _ = p.try_send(&[0; 8]).unwrap();
        assert_eq!(p.try_send(&[]).map(|_| ()), Err(PushError::Full));
    });
}

/// Zero copy on both sides, and batches: staged frames published by one store, peeked
/// frames released by one store.
#[test]
fn spsc_zero_copy_and_batches() {
    loom::model(|| {
        let (mut p, mut c) = channel(&Config::new(64)).unwrap();
        let t = thread::spawn(move || {
            let mut g = p.try_reserve(8).unwrap();
            g.write_at(0, &msg(7, 8));
            g.truncate(5);
            let _ = g.commit();
            p.try_stage(&msg(8, 2)).unwrap();
            p.try_stage(&msg(9, 1)).unwrap();
            let _ = p.publish();
        });
        let mut got = Vec::new();
        while got.len() < 3 {
            match c.try_peek().unwrap() {
                Some(g) => {
                    let mut buf = vec![0; g.len()];
                    g.read_into(&mut buf);
                    g.consume();
                    got.push(buf);
                }
                None => {
                    let _ = c.release();
                    thread::yield_now();
                }
            }
        }
        let _ = c.release();
        assert_eq!(got, vec![msg(7, 5), msg(8, 2), msg(9, 1)]);
        t.join().unwrap();
    });
}

/// Receives one message, sleeping on `bell` (through the sleep protocol) while empty.
fn recv_sleeping(c: &mut coroipc_ring::Consumer, bell: &Doorbell) -> Vec<u8> {
    loop {
        if let Some((m, _)) = c.try_recv_vec().unwrap() {
            return m;
        }
        let check = c.prepare_sleep().unwrap();
        if check.sleep {
            bell.wait();
            c.cancel_sleep();
        }
    }
}

fn mpsc_model(producers: u8) {
    loom::model(move || {
        let (p, mut c) = mpsc_channel(&Config::new(64)).unwrap();
        let p = Arc::new(p);
        let bell = Arc::new(Doorbell::new());
        let handles: Vec<_> = (0..producers)
            .map(|i| {
                let (p, bell) = (p.clone(), bell.clone());
                // Frames of at most 16 bytes: three never fill 64, so any error
                // (including Full) is a bug.
                thread::spawn(move || {
                    if p.try_send(&msg(i, 1 + i as usize))
                        .unwrap()
                        .wake
                        .is_needed()
                    {
                        bell.ring();
                    }
                })
            })
            .collect();
        let mut seen = vec![false; producers as usize];
        for _ in 0..producers {
            let m = recv_sleeping(&mut c, &bell);
            let i = m.len() - 1;
            assert_eq!(m, msg(i as u8, i + 1));
            assert!(!seen[i], "duplicate");
            seen[i] = true;
        }
        for h in handles {
            h.join().unwrap();
        }
        assert!(c.try_recv_vec().unwrap().is_none());
    });
}

/// Two producers, one consumer: no loss, no duplicate, contents intact.
#[test]
fn mpsc_two_producers() {
    mpsc_model(2);
}

/// Three producers, one consumer.
#[test]
fn mpsc_three_producers() {
    mpsc_model(3);
}

/// One producer abandons its grant while another commits: the SKIP frame is passed
/// over and the committed message arrives.
#[test]
fn mpsc_abandoned_grant() {
    loom::model(|| {
        let (p, mut c) = mpsc_channel(&Config::new(64)).unwrap();
        let p = Arc::new(p);
        let bell = Arc::new(Doorbell::new());
        let (p2, bell2) = (p.clone(), bell.clone());
        // The abandoned claim publishes a SKIP frame and keeps the consumer's sleep
        // flag for the next publisher, which must then ring.
        let t = thread::spawn(move || drop(p2.try_reserve(4).unwrap()));
        let sender = thread::spawn(move || {
            if p.try_send(&msg(3, 3)).unwrap().wake.is_needed() {
                bell2.ring();
            }
        });
        assert_eq!(recv_sleeping(&mut c, &bell), msg(3, 3));
        sender.join().unwrap();
        t.join().unwrap();
        assert!(c.try_recv_vec().unwrap().is_none());
    });
}

/// Two producers (two messages and one) fill a ring that holds only two frames, so a
/// claim finds it full and re-reads the consumer's head (and the other's cached head);
/// producers and consumer sleep through the protocol. Every message arrives once,
/// intact, in per-producer order.
#[test]
fn mpsc_full_ring() {
    loom::model(|| {
        let (p, mut c) = mpsc_channel(&Config::new(32)).unwrap();
        let p = Arc::new(p);
        let bell = Arc::new(Doorbell::new());
        let space = Arc::new(GenBell::new());
        let handles: Vec<_> = (0..2u8)
            .map(|i| {
                let (p, bell, space) = (p.clone(), bell.clone(), space.clone());
                thread::spawn(move || {
                    for k in 0..2 - i {
                        loop {
                            let seen = space.generation();
                            match p.try_send(&msg(i * 2 + k, 8)) {
                                Ok(published) => {
                                    if published.wake.is_needed() {
                                        bell.ring();
                                    }
                                    break;
                                }
                                Err(PushError::Full) => {
                                    // Woken by the consumer's release: the flag is
                                    // already clear, and the other producer may have
                                    // set it again, so no cancel_sleep here.
                                    if p.prepare_sleep_for_space(8).unwrap().sleep {
                                        space.wait_past(seen);
                                    }
                                }
                                Err(e) => panic!("{e}"),
                            }
                        }
                    }
                })
            })
            .collect();
        let mut next = [0u8; 2];
        for _ in 0..3 {
            let m = loop {
                match c.try_peek().unwrap() {
                    Some(g) => {
                        let mut buf = vec![0; g.len()];
                        g.read_into(&mut buf);
                        if g.release().is_needed() {
                            space.ring();
                        }
                        break buf;
                    }
                    None => {
                        let check = c.prepare_sleep().unwrap();
                        if check.wake_peer.is_needed() {
                            space.ring();
                        }
                        if check.sleep {
                            bell.wait();
                            c.cancel_sleep();
                        }
                    }
                }
            };
            let i = (0..2)
                .find(|i| m == msg(i * 2 + next[*i as usize], 8))
                .expect("in per-producer order");
            next[i as usize] += 1;
        }
        for h in handles {
            h.join().unwrap();
        }
    });
}

/// The consumer sleeps whenever the ring is empty; the producer rings only when the
/// publish says so. A lost wake-up deadlocks the model.
#[test]
fn consumer_sleep_wake() {
    loom::model(|| {
        let (mut p, mut c) = channel(&Config::new(32)).unwrap();
        let bell = Arc::new(Doorbell::new());
        let bell2 = bell.clone();
        let t = thread::spawn(move || {
            for i in 0..2u8 {
                let published = p.try_send(&msg(i, 4)).unwrap();
                if published.wake.is_needed() {
                    bell2.ring();
                }
            }
        });
        let mut got = 0u8;
        while got < 2 {
            match c.try_recv_vec().unwrap() {
                Some((m, _)) => {
                    assert_eq!(m, msg(got, 4));
                    got += 1;
                }
                None => {
                    let check = c.prepare_sleep().unwrap();
                    if check.sleep {
                        bell.wait();
                        c.cancel_sleep();
                    }
                }
            }
        }
        t.join().unwrap();
    });
}

/// The producer sleeps whenever the ring is full; the consumer rings only when the
/// release says so. A lost wake-up deadlocks the model.
#[test]
fn producer_sleep_wake() {
    loom::model(|| {
        let (mut p, mut c) = channel(&Config::new(32)).unwrap();
        let bell = Arc::new(Doorbell::new());
        let bell2 = bell.clone();
        let t = thread::spawn(move || {
            for i in 0..3u8 {
                loop {
                    match p.try_send(&msg(i, 8)) {
                        Ok(_) => break,
                        Err(PushError::Full) => {
                            let check = p.prepare_sleep_for_space(8).unwrap();
                            if check.sleep {
                                bell2.wait();
                                p.cancel_sleep();
                            }
                        }
                        Err(e) => panic!("{e}"),
                    }
                }
            }
        });
        for i in 0..3u8 {
            loop {
                if let Some(g) = c.try_peek().unwrap() {
                    let mut buf = vec![0; g.len()];
                    g.read_into(&mut buf);
                    assert_eq!(buf, msg(i, 8));
                    if g.release().is_needed() {
                        bell.ring();
                    }
                    break;
                }
                thread::yield_now();
            }
        }
        t.join().unwrap();
    });
}

/// Flow control under concurrent consumption: transitions alternate On/Off, and once
/// the consumer has drained, `poll_flow` ends in Off.
#[test]
fn watermark_transitions() {
    loom::model(|| {
        let cfg = Config::new(32).with_watermarks(24, 8);
        let (mut p, mut c) = channel(&cfg).unwrap();
        let t = thread::spawn(move || {
            for _ in 0..2 {
                let _ = recv_spin(&mut c);
            }
        });
        let mut changes = Vec::new();
        for i in 0..2u8 {
            loop {
                match p.try_send(&msg(i, 8)) {
                    Ok(published) => {
                        changes.extend(published.flow);
                        break;
                    }
                    Err(PushError::Full) => thread::yield_now(),
                    Err(e) => panic!("{e}"),
                }
            }
        }
        t.join().unwrap();
        changes.extend(p.poll_flow().unwrap());
        for pair in changes.windows(2) {
            assert_ne!(pair[0], pair[1], "transitions alternate: {changes:?}");
        }
        assert_eq!(
            changes.first().copied().unwrap_or(FlowChange::On),
            FlowChange::On
        );
        assert!(
            !p.flow_control(),
            "drained ring ends out of flow control: {changes:?}"
        );
    });
}
