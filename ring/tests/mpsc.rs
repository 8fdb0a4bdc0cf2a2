//! MPSC: several producer threads, one consumer; per-producer order, no loss.
#![cfg(not(loom))]
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use coroipc_ring::heap::mpsc_channel;
use coroipc_ring::{Config, PushError, Wake};

#[test]
fn threads_keep_per_producer_order() {
    let per: u32 = if cfg!(miri) { 50 } else { 50_000 };
    let threads = 3u32;
    let (p, mut c) = mpsc_channel(&Config::new(512)).unwrap();
    let p = Arc::new(p);
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let p = p.clone();
            std::thread::spawn(move || {
                for i in 0..per {
                    let mut msg = [0u8; 12];
                    msg[..4].copy_from_slice(&t.to_le_bytes());
                    msg[4..8].copy_from_slice(&i.to_le_bytes());
                    msg[8..].copy_from_slice(&(t ^ i).to_le_bytes());
                    let len = 8 + (i as usize % 5);
                    loop {
                        match p.try_send(&msg[..len.max(12)]) {
                            Ok(_) => break,
                            Err(PushError::Full) => std::thread::yield_now(),
                            Err(e) => panic!("{e}"),
                        }
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
                let t = u32::from_le_bytes(m[..4].try_into().unwrap());
                let i = u32::from_le_bytes(m[4..8].try_into().unwrap());
                assert_eq!(u32::from_le_bytes(m[8..12].try_into().unwrap()), t ^ i);
                assert_eq!(next[t as usize], i, "producer {t} out of order");
                next[t as usize] += 1;
                got += 1;
            }
            None => std::thread::yield_now(),
        }
    }
    for h in handles {
        h.join().unwrap();
    }
}

#[test]
fn abandoned_grant_is_skipped_and_keeps_sleep_flag() {
    let (p, mut c) = mpsc_channel(&Config::new(128)).unwrap();
    assert!(c.prepare_sleep().unwrap().sleep);
    drop(p.try_reserve(10).unwrap());
    // Nothing delivered, and the consumer's flag survives for the next publisher.
    assert!(c.try_recv_vec().unwrap().is_none());
    assert_eq!(p.try_send(b"hi").unwrap().wake, Wake::Needed);
    assert_eq!(c.try_recv_vec().unwrap().unwrap().0, b"hi");
    // A truncated grant delivers the shorter message.
    let mut g = p.try_reserve(20).unwrap();
    g.fill(5);
    g.truncate(3);
    let _ = g.commit();
    let _ = p.try_send(b"after").unwrap();
    assert_eq!(c.try_recv_vec().unwrap().unwrap().0, vec![5; 3]);
    assert_eq!(c.try_recv_vec().unwrap().unwrap().0, b"after");
}

#[test]
fn a_consumer_refusing_abandoned_frames_reports_one_as_corruption() {
    let (p, c) = mpsc_channel(&Config::new(128)).unwrap();
    let mut c = c.refuse_abandoned();
    let _ = p.try_send(b"first").unwrap();
    drop(p.try_reserve(10).unwrap());
    let _ = p.try_send(b"after").unwrap();
    assert_eq!(c.try_recv_vec().unwrap().unwrap().0, b"first");
    let e = c.try_recv_vec().unwrap_err();
    assert!(
        matches!(
            e,
            coroipc_ring::PopError::Corrupt(coroipc_ring::Corruption::BadFrameTag(_))
        ),
        "{e:?}"
    );
    assert!(c.try_recv_vec().is_err(), "sticky");
}

#[test]
fn a_consumer_refusing_abandoned_frames_still_reads_across_the_wrap() {
    let (p, c) = mpsc_channel(&Config::new(128)).unwrap();
    let mut c = c.refuse_abandoned();
    // 40-byte frames in a 128-byte area: the fourth does not fit before the end and
    // pads; every message still arrives.
    for i in 0..20u8 {
        let _ = p.try_send(&[i; 32]).unwrap();
        assert_eq!(c.try_recv_vec().unwrap().unwrap().0, [i; 32]);
    }
}

#[test]
fn full_and_too_large() {
    let (p, mut c) = mpsc_channel(&Config::new(64)).unwrap();
    assert!(matches!(
        p.try_send(&[0; 25]),
        Err(PushError::TooLarge { .. })
    ));
    // A 32-byte and a 24-byte frame fill it (the word after them stays free).
    let _ = p.try_send(&[1; 24]).unwrap();
    let _ = p.try_send(&[2; 16]).unwrap();
    assert_eq!(p.try_send(&[]).map(|_| ()), Err(PushError::Full));
    let _ = c.try_recv_vec().unwrap().unwrap();
    let _ = p.try_send(&[3; 16]).unwrap();
    assert_eq!(c.try_recv_vec().unwrap().unwrap().0, vec![2; 16]);
    assert_eq!(c.try_recv_vec().unwrap().unwrap().0, vec![3; 16]);
}

#[test]
fn a_batch_is_published_at_once_in_order_and_stops_when_full() {
    let (p, mut c) = mpsc_channel(&Config::new(256)).unwrap();
    assert!(c.prepare_sleep().unwrap().sleep);
    let msgs: Vec<Vec<u8>> = (0..40u8).map(|i| vec![i; 1 + i as usize % 7]).collect();
    let refs: Vec<&[u8]> = msgs.iter().map(Vec::as_slice).collect();
    // SAFETY: this thread is the only producer.
    let batch = unsafe { p.try_send_batch(&refs) };
    let (sent, published) = (batch.sent, batch.published);
    assert_eq!(batch.stopped, Some(PushError::Full));
    assert!(
        sent > 0 && sent < 40,
        "stops when the ring is full ({sent})"
    );
    assert_eq!(
        published.wake,
        Wake::Needed,
        "one wake-up for the sleeping consumer"
    );
    c.cancel_sleep();
    let mut got = 0;
    while let Some((m, _)) = c.try_recv_vec().unwrap() {
        assert_eq!(m, msgs[got]);
        got += 1;
    }
    assert_eq!(got, sent);
    // The rest goes in later batches, in order, wrapping the ring.
    let mut next = sent;
    while next < 40 {
        // SAFETY: as above.
        let n = unsafe { p.try_send_batch(&refs[next..]) }.sent;
        assert!(n > 0);
        for m in &msgs[next..next + n] {
            assert_eq!(&c.try_recv_vec().unwrap().unwrap().0, m);
        }
        next += n;
    }
    // Nothing to send publishes nothing; a message too large stops the batch there.
    // SAFETY: as above.
    let empty = unsafe { p.try_send_batch(&[]) };
    assert_eq!((empty.sent, empty.published.wake), (0, Wake::NotNeeded));
    assert_eq!(empty.stopped, None);
    let big = vec![0u8; 1000];
    // SAFETY: as above.
    let stopped = unsafe { p.try_send_batch(&[b"a", &big, b"b"]) };
    assert_eq!(stopped.sent, 1);
    assert!(matches!(
        stopped.stopped,
        Some(PushError::TooLarge { len: 1000, .. })
    ));
    assert_eq!(c.try_recv_vec().unwrap().unwrap().0, b"a");
    assert!(c.try_recv_vec().unwrap().is_none());
}

/// Ring audit H1: two dropped grants fill a 64-byte ring with SKIP frames while the
/// consumer sleeps. The producer that then sleeps for space must be told to wake the
/// consumer (nobody else can), and the woken consumer frees the space and wakes it.
#[test]
fn dropped_grants_filling_the_ring_make_a_sleeping_producer_wake_the_consumer() {
    let (p, mut c) = mpsc_channel(&Config::new(64)).unwrap();
    assert!(c.prepare_sleep().unwrap().sleep);
    // 32 + 24 bytes and the word after them (SPEC §1.3a) fill the ring.
    drop(p.try_reserve(24).unwrap());
    drop(p.try_reserve(16).unwrap());
    assert_eq!(p.try_send(b"x").map(|_| ()), Err(PushError::Full));
    let s = p.prepare_sleep_for_space(1).unwrap();
    assert!(s.sleep);
    assert_eq!(
        s.wake_peer,
        Wake::Needed,
        "the consumer sleeps and holds the space"
    );
    // The consumer, rung: it steps over the SKIPs; going back to sleep releases them
    // and says to wake the producer.
    c.cancel_sleep();
    assert!(c.try_recv_vec().unwrap().is_none());
    let back = c.prepare_sleep().unwrap();
    assert!(back.sleep);
    assert_eq!(
        back.wake_peer,
        Wake::Needed,
        "the producer sleeps for space"
    );
    p.cancel_sleep();
    assert_eq!(p.try_send(b"x").unwrap().wake, Wake::Needed);
    assert_eq!(c.try_recv_vec().unwrap().unwrap().0, b"x");
    // The owed wake was paid: a later sleep for space does not ring again.
    drop(p.try_reserve(16).unwrap());
    let _ = c.try_recv_vec().unwrap();
    let _ = c.release();
    assert!(p.try_send(&[1; 24]).is_ok());
    assert!(p.try_send(&[2; 24]).is_err());
    let s = p.prepare_sleep_for_space(24).unwrap();
    assert!(s.sleep);
    assert_eq!(s.wake_peer, Wake::NotNeeded, "the consumer is awake");
}

/// The same for a producer sleeping until flow control ends.
#[test]
fn dropped_grants_make_a_producer_sleeping_for_flow_off_wake_the_consumer() {
    let (p, mut c) = mpsc_channel(&Config::new(64).with_watermarks(48, 16)).unwrap();
    assert!(c.prepare_sleep().unwrap().sleep);
    // 32 + 24 bytes and the word after them (SPEC §1.3a) fill the ring.
    drop(p.try_reserve(24).unwrap());
    drop(p.try_reserve(16).unwrap());
    let s = p.prepare_sleep_for_flow_off().unwrap();
    assert!(s.sleep);
    assert_eq!(s.wake_peer, Wake::Needed);
}

/// `abandon` gives a claim up like a drop but returns the wake for a sleeping
/// consumer, and leaves none owed.
#[test]
fn an_abandoned_grant_returns_the_wake() {
    let (p, mut c) = mpsc_channel(&Config::new(64)).unwrap();
    assert!(c.prepare_sleep().unwrap().sleep);
    assert_eq!(p.try_reserve(24).unwrap().abandon().wake, Wake::Needed);
    c.cancel_sleep();
    assert!(c.try_recv_vec().unwrap().is_none());
    assert_eq!(p.try_send(b"y").unwrap().wake, Wake::NotNeeded);
    assert_eq!(c.try_recv_vec().unwrap().unwrap().0, b"y");
}

/// Ring audit M2, the MPSC trigger: with the views of an 8-byte and a 112-byte claim
/// swapped, a commit wrote `MSG len=100` over the 8-byte claim and a SKIP header inside
/// the other, and the consumer found the ring corrupt. A view that is not the grant's
/// own is published as a SKIP.
#[test]
fn swapped_grant_views_publish_skips() {
    let (p, mut c) = mpsc_channel(&Config::new(256)).unwrap();
    let mut g1 = p.try_reserve(0).unwrap();
    let mut g2 = p.try_reserve(100).unwrap();
    g2.fill(9);
    core::mem::swap(&mut *g1, &mut *g2);
    let _ = g1.commit();
    let _ = g2.commit();
    assert!(c.try_recv_vec().unwrap().is_none());
    let _ = p.try_send(b"after").unwrap();
    assert_eq!(c.try_recv_vec().unwrap().unwrap().0, b"after");
    assert_eq!(c.corruption(), None);
    assert!(!p.is_corrupt());
}

/// Ring audit M1: a consumer that only polls steps over the SKIP frames of two
/// dropped grants and finds nothing; the look releases them, so the producer is not
/// left with a full ring forever.
#[test]
fn a_polling_consumer_releases_skipped_frames() {
    let (p, mut c) = mpsc_channel(&Config::new(64)).unwrap();
    // 32 + 24 bytes and the word after them (SPEC §1.3a) fill the ring.
    drop(p.try_reserve(24).unwrap());
    drop(p.try_reserve(16).unwrap());
    let mut buf = [0u8; 8];
    assert!(c.try_recv(&mut buf).unwrap().is_none());
    assert_eq!(c.consumed_bytes(), 0, "released by the look");
    let _ = p.try_send(b"x").unwrap();
    assert_eq!(c.try_recv(&mut buf).unwrap().unwrap().len, 1);
    // With the producer asleep for space, the look leaves the release (and the wake)
    // to `release`.
    drop(p.try_reserve(24).unwrap());
    drop(p.try_reserve(8).unwrap());
    assert_eq!(p.try_send(&[0; 24]).map(|_| ()), Err(PushError::Full));
    assert!(p.prepare_sleep_for_space(24).unwrap().sleep);
    assert!(c.try_peek().unwrap().is_none());
    assert!(
        c.consumed_bytes() > 0,
        "a wake is due: not released by the look"
    );
    assert_eq!(c.release(), Wake::Needed);
    p.cancel_sleep();
    let _ = p.try_send(&[0; 24]).unwrap();
}

#[test]
fn a_polling_producer_takes_the_wake_dropped_grants_owe() {
    let (p, mut c) = mpsc_channel(&Config::new(64)).unwrap();
    assert_eq!(p.take_owed_wake(), Wake::NotNeeded, "nothing owed yet");
    assert!(c.prepare_sleep().unwrap().sleep);
    // 32 + 24 bytes and the word after them (SPEC §1.3a) fill the ring.
    drop(p.try_reserve(24).unwrap());
    drop(p.try_reserve(16).unwrap());
    // A producer that retries instead of sleeping: the full ring is the consumer's to
    // free, and it sleeps.
    assert_eq!(p.try_send(b"x").map(|_| ()), Err(PushError::Full));
    assert_eq!(
        p.take_owed_wake(),
        Wake::Needed,
        "the consumer must be rung"
    );
    assert_eq!(p.take_owed_wake(), Wake::NotNeeded, "taken once");
    c.cancel_sleep();
    assert!(c.try_recv_vec().unwrap().is_none());
    let _ = c.release();
    assert!(p.try_send(b"x").is_ok(), "the space is free again");
    assert_eq!(c.try_recv_vec().unwrap().unwrap().0, b"x");
}
