//! Rings with `Fences::Asymmetric`: plain-store publishes, a `membarrier` before each
//! sleep (src/fence.rs). The same sleep/wake promises as the locked protocol.
#![allow(clippy::unwrap_used)]

use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use coroipc_ring::heap::{channel_with, HeapRegion};
use coroipc_ring::{
    offsets, AttachError, Config, Consumer, Fences, MpscProducer, Producer, PushError, Wake,
};

fn asym(capacity: usize) -> (Producer, Consumer) {
    channel_with(&Config::new(capacity), Fences::Asymmetric).unwrap()
}

#[test]
fn sleep_protocol_single_thread() {
    let (mut p, mut c) = asym(128);
    assert!(c.prepare_sleep().unwrap().sleep);
    // One announcement is rung for once.
    assert_eq!(p.try_send(b"a").unwrap().wake, Wake::Needed);
    assert_eq!(p.try_send(b"b").unwrap().wake, Wake::NotNeeded);
    c.cancel_sleep();
    // Data present: announcing sleep is refused, and leaves no announcement behind.
    assert!(!c.prepare_sleep().unwrap().sleep);
    assert_eq!(p.try_send(b"c").unwrap().wake, Wake::NotNeeded);
    // A new announcement after reading is rung for again.
    while c.try_recv_vec().unwrap().is_some() {}
    assert!(c.prepare_sleep().unwrap().sleep);
    assert_eq!(p.try_send(b"d").unwrap().wake, Wake::Needed);
    // Announcing twice without cancelling: the second is a new one, rung for too.
    while c.try_recv_vec().unwrap().is_some() {}
    assert!(c.prepare_sleep().unwrap().sleep);
    assert_eq!(p.try_send(b"e").unwrap().wake, Wake::Needed);
    assert!(c.try_recv_vec().unwrap().is_some());
    assert!(c.prepare_sleep().unwrap().sleep);
    assert_eq!(p.try_send(b"f").unwrap().wake, Wake::Needed);
    // Producer side: fill, announce, the consumer's release wakes it once. (Two
    // 24-byte frames: an SPSC ring keeps its last 8 bytes free, SPEC §1.3a.)
    let (mut p, mut c) = asym(64);
    let _ = p.try_send(&[1; 16]).unwrap();
    let _ = p.try_send(&[1; 16]).unwrap();
    assert!(p.prepare_sleep_for_space(24).unwrap().sleep);
    assert_eq!(c.try_peek().unwrap().unwrap().release(), Wake::Needed);
    assert_eq!(c.try_peek().unwrap().unwrap().release(), Wake::NotNeeded);
    p.cancel_sleep();
    assert!(!p.prepare_sleep_for_space(24).unwrap().sleep);
    // Cancelled: no wake-up for a side that is awake.
    let (mut p, mut c) = asym(64);
    assert!(c.prepare_sleep().unwrap().sleep);
    c.cancel_sleep();
    assert_eq!(p.try_send(b"x").unwrap().wake, Wake::NotNeeded);
}

#[test]
fn the_consumer_releases_before_it_sleeps_and_says_so() {
    let (mut p, mut c) = asym(64);
    let _ = p.try_send(&[1; 16]).unwrap();
    let _ = p.try_send(&[1; 16]).unwrap();
    assert!(p.prepare_sleep_for_space(24).unwrap().sleep);
    c.try_peek().unwrap().unwrap().consume();
    c.try_peek().unwrap().unwrap().consume();
    let s = c.prepare_sleep().unwrap();
    assert!(s.sleep);
    assert_eq!(
        s.wake_peer,
        Wake::Needed,
        "the sleeping producer must be woken"
    );
}

/// The protocol is the creator's and lives in the header: an attaching side follows
/// it, the index words carry no flag, the epochs sit where `offsets` says.
#[test]
fn an_attaching_side_follows_the_creators_protocol() {
    let cfg = Config::new(256);
    let region = Arc::new(HeapRegion::new(&cfg).unwrap());
    // SAFETY: a fresh region, alive for the whole test.
    let mut p = unsafe { Producer::create_with(region.raw(), &cfg, Fences::Asymmetric) }.unwrap();
    // SAFETY: initialised just above.
    let c = unsafe { Consumer::attach(region.raw()) }.unwrap();
    let base = region.raw().base().as_ptr();
    // SAFETY: inside the header; read as the atomics they are.
    let word = |at: usize| unsafe {
        (*base.add(at).cast::<std::sync::atomic::AtomicU64>())
            .load(std::sync::atomic::Ordering::SeqCst)
    };
    // SAFETY: as above.
    let version = unsafe {
        (*base
            .add(offsets::VERSION)
            .cast::<std::sync::atomic::AtomicU32>())
        .load(std::sync::atomic::Ordering::SeqCst)
    };
    assert_eq!(version, coroipc_ring::VERSION_ASYMMETRIC);
    let mut c = c;
    assert!(c.prepare_sleep().unwrap().sleep);
    assert_eq!(
        word(offsets::CONSUMER_SLEEP) & 1,
        1,
        "the consumer's epoch is odd"
    );
    assert_eq!(word(offsets::TAIL) & 1, 0, "the tail carries no flag");
    assert_eq!(p.try_send(b"m").unwrap().wake, Wake::Needed);
    c.cancel_sleep();
    assert_eq!(word(offsets::CONSUMER_SLEEP) & 1, 0);
}

#[test]
fn an_mpsc_producer_cannot_join_an_asymmetric_ring() {
    let cfg = Config::new(256);
    let region = HeapRegion::new(&cfg).unwrap();
    // SAFETY: a fresh region, alive for the whole test.
    let _c = unsafe { Consumer::create_with(region.raw(), &cfg, Fences::Asymmetric) }.unwrap();
    // SAFETY: initialised just above.
    let mpsc = unsafe { MpscProducer::attach(region.raw()) };
    assert!(matches!(mpsc, Err(AttachError::Unsupported)));
}

/// A counting doorbell with a deadline: a wait that times out while its side has
/// something to do is a lost wake-up.
#[derive(Default)]
struct Bell {
    rung: Mutex<u64>,
    cond: Condvar,
}

impl Bell {
    fn ring(&self) {
        *self.rung.lock().unwrap() += 1;
        self.cond.notify_one();
    }

    /// `false` on timeout.
    fn wait(&self) -> bool {
        let guard = self.rung.lock().unwrap();
        let (mut guard, timeout) = self
            .cond
            .wait_timeout_while(guard, Duration::from_secs(10), |n| *n == 0)
            .unwrap();
        if timeout.timed_out() {
            return false;
        }
        *guard -= 1;
        true
    }
}

/// Both sides sleep whenever they cannot go on, and ring only when told to: every
/// message arrives in order and no wait runs into its deadline (a lost wake-up).
#[test]
fn both_sides_sleeping_lose_no_wake_up() {
    let n: u32 = if cfg!(miri) { 60 } else { 100_000 };
    let (mut p, mut c) = asym(128);
    let (to_consumer, to_producer) = (Arc::new(Bell::default()), Arc::new(Bell::default()));
    let (bell_c, bell_p) = (to_consumer.clone(), to_producer.clone());
    let producer = std::thread::spawn(move || {
        for i in 0..n {
            let msg = i.to_le_bytes();
            loop {
                match p.try_send(&msg[..(i % 4 + 1) as usize]) {
                    Ok(published) => {
                        if published.wake.is_needed() {
                            bell_c.ring();
                        }
                        break;
                    }
                    Err(PushError::Full) => {
                        let check = p.prepare_sleep_for_space(4).unwrap();
                        if check.wake_peer.is_needed() {
                            bell_c.ring();
                        }
                        if check.sleep {
                            assert!(bell_p.wait(), "producer: lost wake-up at {i}");
                            p.cancel_sleep();
                        }
                    }
                    Err(e) => panic!("{e}"),
                }
            }
        }
    });
    for i in 0..n {
        let msg = loop {
            match c.try_recv_vec().unwrap() {
                Some((m, wake)) => {
                    if wake.is_needed() {
                        to_producer.ring();
                    }
                    break m;
                }
                None => {
                    let check = c.prepare_sleep().unwrap();
                    if check.wake_peer.is_needed() {
                        to_producer.ring();
                    }
                    if check.sleep {
                        assert!(to_consumer.wait(), "consumer: lost wake-up at {i}");
                        c.cancel_sleep();
                    }
                }
            }
        };
        assert_eq!(msg, i.to_le_bytes()[..(i % 4 + 1) as usize]);
    }
    producer.join().unwrap();
}
