//! Loom models of coroipc-ring. Every model runs the production ring code: the `sync`
//! shim swaps in loom atomics and makes every 8-byte data word a tracked cell, so a
//! missing happens-before between writing and reading a frame is a causality error,
//! and a lost wake-up is a deadlock.
#![cfg(loom)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use coroipc_ring::heap::{channel, channel_with, mpsc_channel, HeapRegion};
use coroipc_ring::{Config, Consumer, Fences, FlowChange, PopError, Producer, PushError};
use loom::sync::atomic::{AtomicBool, Ordering};
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

/// As [`spsc_wrap_at_every_offset`] for an MPSC group: a claim's first word is stored
/// in its turn after the 0 at its end, so the consumer, probing headers while it
/// waits (SPEC §1.3a), never takes an older lap's header for a new frame.
#[test]
fn mpsc_wrap_at_every_offset() {
    for offset in [0usize, 8, 16, 24] {
        loom::model(move || {
            let (p, mut c) = mpsc_channel(&Config::new(32)).unwrap();
            for _ in 0..offset / 8 {
                let _ = p.try_send(&[]).unwrap();
                let _ = c.try_recv_vec().unwrap().unwrap();
            }
            let t = thread::spawn(move || {
                for (seed, len) in [(1u8, 8usize), (2, 3)] {
                    loop {
                        match p.try_send(&msg(seed, len)) {
                            Ok(_) => break,
                            Err(PushError::Full) => thread::yield_now(),
                            Err(e) => panic!("{e}"),
                        }
                    }
                }
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
        // Exactly a 16-byte and an 8-byte frame fit (the word after the newest frame
        // stays free: SPEC §1.3a).
        let _ = p.try_send(&[0; 8]).unwrap();
        let _ = p.try_send(&[]).unwrap();
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

/// Ring audit H1: dropped grants fill the ring with SKIP frames while the consumer
/// may be asleep, and the producer then sleeps for space. Only the consumer can free
/// it, and a drop cannot ring: the producer's sleep announcement must report the owed
/// wake (`wake_peer`), and the consumer's release must wake the producer. A lost wake
/// on either side is a deadlock.
#[test]
fn mpsc_dropped_grants_fill_the_ring() {
    loom::model(|| {
        let (p, mut c) = mpsc_channel(&Config::new(64)).unwrap();
        let (cbell, pbell) = (Arc::new(Doorbell::new()), Arc::new(Doorbell::new()));
        let (cbell2, pbell2) = (cbell.clone(), pbell.clone());
        let consumer = thread::spawn(move || loop {
            if let Some((m, _)) = c.try_recv_vec().unwrap() {
                return m;
            }
            let check = c.prepare_sleep().unwrap();
            if check.wake_peer.is_needed() {
                pbell2.ring();
            }
            if check.sleep {
                cbell2.wait();
                c.cancel_sleep();
            }
        });
        // 32 + 24 bytes and the word after them (SPEC §1.3a) fill the ring.
        drop(p.try_reserve(24).unwrap());
        drop(p.try_reserve(16).unwrap());
        loop {
            match p.try_send(&msg(5, 1)) {
                Ok(published) => {
                    if published.wake.is_needed() {
                        cbell.ring();
                    }
                    break;
                }
                Err(PushError::Full) => {
                    let check = p.prepare_sleep_for_space(1).unwrap();
                    if check.wake_peer.is_needed() {
                        cbell.ring();
                    }
                    if check.sleep {
                        pbell.wait();
                        p.cancel_sleep();
                    }
                }
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(consumer.join().unwrap(), msg(5, 1));
    });
}

/// Ring audit M1: a consumer that only polls (never `release`, never sleeps) steps
/// over the SKIP frames of dropped grants that fill the ring; its look releases them,
/// and the producer's next frame reuses that space after the consumer's reads of the
/// skipped headers (a missing happens-before is a data race on those words).
#[test]
fn mpsc_polling_consumer_releases_skipped_frames() {
    loom::model(|| {
        let (p, mut c) = mpsc_channel(&Config::new(32)).unwrap();
        let t = thread::spawn(move || {
            // 16 + 8 bytes and the word after them fill the ring.
            drop(p.try_reserve(8).unwrap());
            drop(p.try_reserve(0).unwrap());
            loop {
                match p.try_send(&msg(4, 8)) {
                    Ok(_) => break,
                    Err(PushError::Full) => thread::yield_now(),
                    Err(e) => panic!("{e}"),
                }
            }
        });
        assert_eq!(recv_spin(&mut c), msg(4, 8));
        t.join().unwrap();
    });
}

/// Ring audit L1: two producers whose publishes enter and leave flow control while
/// the consumer drains: the header's informational flow word ends equal to the
/// group's state (the stores of two transitions could land in reverse order).
#[test]
fn mpsc_flow_word_follows_the_group() {
    loom::model(|| {
        // 16 + 16 bytes reach high, an 8-byte frame after both were read is low; the
        // ring never fills.
        let cfg = Config::new(64).with_watermarks(32, 8);
        let (p, mut c) = mpsc_channel(&cfg).unwrap();
        let p = Arc::new(p);
        let p2 = p.clone();
        let other = thread::spawn(move || {
            let _ = p2.try_send(&msg(2, 8)).unwrap();
        });
        let _ = p.try_send(&msg(1, 8)).unwrap();
        let consumer = thread::spawn(move || {
            for _ in 0..3 {
                let _ = recv_spin(&mut c);
            }
            c
        });
        let _ = p.try_send(&[]).unwrap();
        other.join().unwrap();
        let c = consumer.join().unwrap();
        assert_eq!(c.flow_control(), p.flow_control());
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
    consumer_sleep_wake_with(Fences::Locked);
}

/// [`consumer_sleep_wake`] for an asymmetric ring: plain-store publishes, the heavy
/// barrier before sleep (a `SeqCst` fence on both sides here: loom cannot model
/// `membarrier`, see `ring/src/fence.rs`).
#[test]
fn consumer_sleep_wake_asymmetric() {
    consumer_sleep_wake_with(Fences::Asymmetric);
}

fn consumer_sleep_wake_with(fences: Fences) {
    loom::model(move || {
        let (mut p, mut c) = channel_with(&Config::new(64), fences).unwrap();
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

/// Receives one message (yielding while empty) and rings `bell` when its release says
/// the producer announced sleep.
fn recv_ringing(c: &mut coroipc_ring::Consumer, bell: &Doorbell) -> Vec<u8> {
    loop {
        if let Some(g) = c.try_peek().unwrap() {
            let mut buf = vec![0; g.len()];
            g.read_into(&mut buf);
            if g.release().is_needed() {
                bell.ring();
            }
            return buf;
        }
        thread::yield_now();
    }
}

/// The producer sleeps whenever the ring is full; the consumer rings only when the
/// release says so. A lost wake-up deadlocks the model.
#[test]
fn producer_sleep_wake() {
    producer_sleep_wake_with(Fences::Locked);
}

/// [`producer_sleep_wake`] for an asymmetric ring (as [`consumer_sleep_wake_asymmetric`]).
#[test]
fn producer_sleep_wake_asymmetric() {
    producer_sleep_wake_with(Fences::Asymmetric);
}

fn producer_sleep_wake_with(fences: Fences) {
    loom::model(move || {
        let (mut p, mut c) = channel_with(&Config::new(32), fences).unwrap();
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
            assert_eq!(recv_ringing(&mut c, &bell), msg(i, 8));
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

/// A heap region holding a ring created by `create`, shared as an `Arc`.
fn region(cfg: &Config) -> Arc<HeapRegion> {
    Arc::new(HeapRegion::new(cfg).unwrap())
}

/// Attaches a consumer to `region` (created earlier, possibly by another thread).
fn attach_consumer(region: Arc<HeapRegion>) -> Consumer {
    // SAFETY: a live region initialised by a creator; kept alive by the consumer.
    unsafe { Consumer::attach(region.raw()) }
        .unwrap()
        .keep_alive(region)
}

/// Attaches a producer to `region` (as [`attach_consumer`]).
fn attach_producer(region: Arc<HeapRegion>) -> Producer {
    // SAFETY: as in `attach_consumer`.
    unsafe { Producer::attach(region.raw()) }
        .unwrap()
        .keep_alive(region)
}

/// An SPSC producer links a ring an MPSC producer attached to (so unlinked) and wrapped
/// before (SPEC §1.3a), while the consumer polls on another thread and starts to probe
/// headers once it sees the flag. Every producer zeroes the word after its frames, so
/// the word at the tail is 0 already; the linking producer's zero and the flag's
/// Release/Acquire guard only a region an earlier writer left dirty, which loom's data
/// area cannot hold (scripts/orderings-argued.txt). The model runs the path.
#[test]
fn a_producer_links_a_used_ring() {
    loom::model(|| {
        let cfg = Config::new(32);
        let r = region(&cfg);
        // SAFETY: a fresh region; kept alive by the consumer.
        let mut c = unsafe { Consumer::create(r.raw(), &cfg) }
            .unwrap()
            .keep_alive(r.clone());
        {
            // SAFETY: as above; an MPSC producer leaves the ring unlinked.
            let old = unsafe { coroipc_ring::MpscProducer::attach(r.raw()) }.unwrap();
            // Five 8-byte frames: the tail ends at 40, over the header of the first lap
            // at 8, which the MPSC producer zeroed after its fifth frame.
            for _ in 0..5 {
                let _ = old.try_send(&[]).unwrap();
                assert_eq!(c.try_recv_vec().unwrap().unwrap().0, Vec::<u8>::new());
            }
            let _ = c.release();
        }
        // The consumer polls (and so looks at the flag) before the producer arrives.
        assert!(c.try_recv_vec().unwrap().is_none());
        let t = thread::spawn(move || {
            let mut p = attach_producer(r);
            send_spin(&mut p, &msg(3, 8));
        });
        assert_eq!(recv_spin(&mut c), msg(3, 8));
        t.join().unwrap();
    });
}

/// The consumer attaches while the producer publishes: the starting tail it reads at
/// attach may already cover the second message, whose frame it then reads without
/// any further load of the tail (so that load must be Acquire).
#[test]
fn attach_consumer_during_publishes() {
    loom::model(|| {
        let cfg = Config::new(64);
        let r = region(&cfg);
        // SAFETY: a fresh region; kept alive by the producer.
        let mut p = unsafe { Producer::create(r.raw(), &cfg) }
            .unwrap()
            .keep_alive(r.clone());
        let _ = p.try_send(&msg(0, 4)).unwrap();
        // Spawning hands the region over (creation happens before the attach).
        let t = thread::spawn(move || {
            let mut c = attach_consumer(r);
            assert_eq!(recv_spin(&mut c), msg(0, 4));
            assert_eq!(recv_spin(&mut c), msg(1, 4));
        });
        let _ = p.try_send(&msg(1, 4)).unwrap();
        t.join().unwrap();
    });
}

/// A new producer attaches (a reconnect) while the consumer releases a full ring: the
/// starting head it reads may already free the first frame, which it then overwrites
/// (so that load must be Acquire: the consumer's reads come first).
#[test]
fn attach_producer_during_releases() {
    loom::model(|| {
        let cfg = Config::new(64);
        let r = region(&cfg);
        // SAFETY: a fresh region; kept alive by the consumer.
        let mut c = unsafe { Consumer::create(r.raw(), &cfg) }
            .unwrap()
            .keep_alive(r.clone());
        {
            let mut first = attach_producer(r.clone());
            let _ = first.try_send(&msg(0, 16)).unwrap();
            let _ = first.try_send(&msg(1, 16)).unwrap(); // full: two 24-byte frames and the word after them
        }
        let t = thread::spawn(move || {
            for i in 0..3u8 {
                assert_eq!(recv_spin(&mut c), msg(i, 16));
            }
        });
        let mut p = attach_producer(r);
        send_spin(&mut p, &msg(2, 16));
        t.join().unwrap();
    });
}

/// Creation must happen before the attach through the hand-off itself (the fd passed
/// over the socket, a spawn, a lock): the header is constructed with plain writes, so
/// an attach that only saw a Relaxed flag races with them, whatever the ordering of
/// `magic`. This model shows it (loom reports the race), which is why `magic`'s
/// Release/Acquire is not what orders creation before attach (SPEC §1.6).
#[test]
#[should_panic(expected = "Causality violation")]
fn attach_needs_a_synchronising_handoff() {
    loom::model(|| {
        let cfg = Config::new(32);
        let r = region(&cfg);
        let created = Arc::new(AtomicBool::new(false));
        let (r2, created2) = (r.clone(), created.clone());
        let t = thread::spawn(move || {
            while !created2.load(Ordering::Relaxed) {
                thread::yield_now();
            }
            let _ = attach_consumer(r2);
        });
        // SAFETY: a fresh region; the attaching thread waits for the flag.
        let p = unsafe { Producer::create(r.raw(), &cfg) }
            .unwrap()
            .keep_alive(r);
        created.store(true, Ordering::Relaxed);
        t.join().unwrap();
        drop(p);
    });
}

/// Both sides sleep with work pending: the producer staged a full ring (one message
/// through `WriteGrant::stage`; unless the consumer found and freed them first) and
/// announces sleep for space, which publishes it and
/// must wake the consumer (`wake_peer`) and report the flow change it causes; the
/// consumer consumes without releasing and announces sleep, which releases and must
/// wake the producer. A lost `wake_peer` deadlocks the model.
#[test]
fn both_asleep_with_pending_work() {
    loom::model(|| {
        let (mut p, mut c) = channel(&Config::new(64)).unwrap();
        let to_consumer = Arc::new(Doorbell::new());
        let to_producer = Arc::new(Doorbell::new());
        let (to_c, to_p) = (to_consumer.clone(), to_producer.clone());
        let t = thread::spawn(move || {
            let mut g = p.try_reserve(16).unwrap();
            g.write_at(0, &msg(0, 16));
            g.stage();
            p.try_stage(&msg(1, 16)).unwrap();
            // The consumer may already have found the staged frames by their headers
            // and freed them (SPEC §1.3a): then the third fits, and its publish must
            // wake a consumer asleep.
            match p.try_stage(&msg(2, 16)) {
                Ok(()) => {
                    if p.publish().wake.is_needed() {
                        to_c.ring();
                    }
                    return;
                }
                Err(e) => assert_eq!(e, PushError::Full),
            }
            // Publishing the staged bytes may turn flow control on (if the consumer
            // has not freed them by then): the check must report it.
            let check = p.prepare_sleep_for_space(16).unwrap();
            assert_eq!(check.flow == Some(FlowChange::On), p.flow_control());
            let mut check = Some(check);
            loop {
                if let Some(check) = check.take() {
                    if check.wake_peer.is_needed() {
                        to_c.ring();
                    }
                    if check.sleep {
                        to_p.wait();
                        p.cancel_sleep();
                    }
                }
                match p.try_send(&msg(2, 16)) {
                    Ok(published) => {
                        if published.wake.is_needed() {
                            to_c.ring();
                        }
                        break;
                    }
                    Err(PushError::Full) => check = Some(p.prepare_sleep_for_space(16).unwrap()),
                    Err(e) => panic!("{e}"),
                }
            }
        });
        let mut got = 0u8;
        while got < 3 {
            match c.try_peek().unwrap() {
                Some(g) => {
                    let mut buf = vec![0; g.len()];
                    g.read_into(&mut buf);
                    assert_eq!(buf, msg(got, 16));
                    g.consume();
                    got += 1;
                }
                None => {
                    let check = c.prepare_sleep().unwrap();
                    assert_eq!(check.flow, None);
                    if check.wake_peer.is_needed() {
                        to_producer.ring();
                    }
                    if check.sleep {
                        to_consumer.wait();
                        c.cancel_sleep();
                    }
                }
            }
        }
        t.join().unwrap();
    });
}

/// The producer in flow control sleeps until occupancy falls to the low watermark
/// (`prepare_sleep_for_flow_off`), woken by the consumer's release, then reuses the
/// space the consumer read.
#[test]
fn producer_sleeps_for_flow_off() {
    loom::model(|| {
        let cfg = Config::new(64).with_watermarks(48, 16);
        let (mut p, mut c) = channel(&cfg).unwrap();
        let _ = p.try_send(&msg(0, 16)).unwrap();
        assert_eq!(p.try_send(&msg(1, 16)).unwrap().flow, Some(FlowChange::On));
        let bell = Arc::new(Doorbell::new());
        let bell2 = bell.clone();
        let t = thread::spawn(move || {
            for i in 0..3u8 {
                assert_eq!(recv_ringing(&mut c, &bell2), msg(i, 16));
            }
        });
        // The transition off may be found by the announce's own publish step (then
        // the check reports it) or by `poll_flow` after a wake-up.
        loop {
            let check = p.prepare_sleep_for_flow_off().unwrap();
            if check.flow == Some(FlowChange::Off) {
                break;
            }
            if check.sleep {
                bell.wait();
                p.cancel_sleep();
            }
            if p.poll_flow().unwrap() == Some(FlowChange::Off) {
                break;
            }
        }
        assert!(!p.flow_control());
        send_spin(&mut p, &msg(2, 16));
        t.join().unwrap();
    });
}

/// MPSC with watermarks and a truncated grant: one producer commits 3 bytes of a
/// 16-byte claim (a message and a SKIP frame), another sends 16 bytes, crossing the
/// high watermark; the consumer receives through `try_recv` with a buffer too small
/// for the longer message first (it stays in the ring). Flow transitions alternate
/// and end off once drained.
#[test]
fn mpsc_truncate_and_watermarks() {
    loom::model(|| {
        let cfg = Config::new(64).with_watermarks(32, 16);
        let (p, mut c) = mpsc_channel(&cfg).unwrap();
        let p = Arc::new(p);
        let p2 = p.clone();
        let truncating = thread::spawn(move || {
            let mut g = p2.try_reserve(16).unwrap();
            g.write_at(0, &msg(0, 16));
            g.truncate(3);
            g.commit().flow
        });
        let p3 = p.clone();
        let sending = thread::spawn(move || p3.try_send(&msg(1, 16)).unwrap().flow);
        let mut got = [false; 2];
        let mut small = [0u8; 4];
        let mut big = [0u8; 16];
        while got != [true; 2] {
            match c.try_recv(&mut small) {
                Ok(Some(r)) => {
                    assert_eq!(&small[..r.len], &msg(0, 3)[..]);
                    assert!(!got[0]);
                    got[0] = true;
                }
                Err(PopError::BufferTooSmall { needed: 16 }) => {
                    let r = c.try_recv(&mut big).unwrap().unwrap();
                    assert_eq!((r.len, &big[..]), (16, &msg(1, 16)[..]));
                    assert!(!got[1]);
                    got[1] = true;
                }
                Ok(None) => thread::yield_now(),
                Err(e) => panic!("{e}"),
            }
        }
        let mut changes: Vec<FlowChange> = [truncating, sending]
            .into_iter()
            .filter_map(|h| h.join().unwrap())
            .collect();
        changes.extend(p.poll_flow().unwrap());
        assert!(c.try_recv_vec().unwrap().is_none());
        assert!(!p.flow_control(), "drained: off ({changes:?})");
        // Transitions alternate (a CAS on the group's state) from off back to off,
        // and occupancy crosses high at most once.
        let ons = changes.iter().filter(|f| **f == FlowChange::On).count();
        assert!(ons <= 1 && ons * 2 == changes.len(), "{changes:?}");
    });
}

/// A batch sent by the only producer (its contract) while the consumer sleeps through
/// the protocol: both messages arrive, in order, after one publication whose wake-up
/// is not lost.
#[test]
fn mpsc_batch() {
    loom::model(|| {
        let (p, mut c) = mpsc_channel(&Config::new(64)).unwrap();
        let bell = Arc::new(Doorbell::new());
        let bell2 = bell.clone();
        let sender = thread::spawn(move || {
            let (a, b) = (msg(1, 4), msg(2, 4));
            // SAFETY: this thread is the ring's only producer.
            let batch = unsafe { p.try_send_batch(&[&a, &b]) };
            assert_eq!((batch.sent, batch.stopped), (2, None));
            if batch.published.wake.is_needed() {
                bell2.ring();
            }
        });
        assert_eq!(recv_sleeping(&mut c, &bell), msg(1, 4));
        assert_eq!(recv_sleeping(&mut c, &bell), msg(2, 4));
        sender.join().unwrap();
    });
}

/// `try_send_vectored_exclusive` (one producer, claimed with a store): two messages,
/// each written from two parts and published with the wake-up protocol, reach a
/// consumer that sleeps between them, in order, with every byte.
#[test]
fn mpsc_exclusive_send() {
    loom::model(|| {
        let (p, mut c) = mpsc_channel(&Config::new(64)).unwrap();
        let bell = Arc::new(Doorbell::new());
        let bell2 = bell.clone();
        let sender = thread::spawn(move || {
            for (seed, len) in [(1, 4), (2, 12)] {
                let m = msg(seed, len);
                let (head, tail) = m.split_at(3);
                // SAFETY: this thread is the ring's only producer.
                let published = unsafe { p.try_send_vectored_exclusive(&[head, tail]) }.unwrap();
                if published.wake.is_needed() {
                    bell2.ring();
                }
            }
        });
        assert_eq!(recv_sleeping(&mut c, &bell), msg(1, 4));
        assert_eq!(recv_sleeping(&mut c, &bell), msg(2, 12));
        sender.join().unwrap();
    });
}
