//! `keep_alive` adds owners and never drops an earlier one (audit C1: replacing it
//! freed a heap channel's region under a live handle, a use-after-free from safe code).
#![cfg(not(loom))]
#![allow(clippy::unwrap_used)]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use coroipc_ring::heap::{channel, mpsc_channel};
use coroipc_ring::Config;

/// Sets its flag when dropped.
struct Flag(Arc<AtomicBool>);

impl Drop for Flag {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

fn flag() -> (Arc<AtomicBool>, Arc<dyn std::any::Any + Send + Sync>) {
    let dropped = Arc::new(AtomicBool::new(false));
    (dropped.clone(), Arc::new(Flag(dropped)))
}

#[test]
fn second_keep_alive_keeps_the_first_owner() {
    let (tx, rx) = channel(&Config::new(256)).unwrap();
    let (first, second) = (flag(), flag());
    let rx = rx.keep_alive(first.1).keep_alive(second.1);
    let (third, fourth) = (flag(), flag());
    let tx = tx.keep_alive(third.1).keep_alive(fourth.1);
    for f in [&first.0, &second.0, &third.0, &fourth.0] {
        assert!(!f.load(Ordering::SeqCst), "an owner was dropped early");
    }
    drop(rx);
    assert!(first.0.load(Ordering::SeqCst) && second.0.load(Ordering::SeqCst));
    assert!(!third.0.load(Ordering::SeqCst) && !fourth.0.load(Ordering::SeqCst));
    drop(tx);
    assert!(third.0.load(Ordering::SeqCst) && fourth.0.load(Ordering::SeqCst));

    let (p, c) = mpsc_channel(&Config::new(256)).unwrap();
    let kept = flag();
    let p = p.keep_alive(kept.1);
    assert!(!kept.0.load(Ordering::SeqCst));
    drop((p, c));
    assert!(kept.0.load(Ordering::SeqCst));
}

/// The audit's trigger: with the old code the consumer reads freed memory (Miri
/// reports it; natively it may pass by luck, which the test above does not).
#[test]
fn keep_alive_after_heap_channel_keeps_the_region() {
    let (mut tx, rx) = channel(&Config::new(256)).unwrap();
    let _ = tx.try_send(b"still here").unwrap();
    let mut rx = rx.keep_alive(Arc::new(()));
    drop(tx);
    assert_eq!(rx.try_recv_vec().unwrap().unwrap().0, b"still here");

    let (p, c) = mpsc_channel(&Config::new(256)).unwrap();
    let p = p.keep_alive(Arc::new(()));
    let mut c = c.keep_alive(Arc::new(()));
    let _ = p.try_send(b"mpsc").unwrap();
    drop(p);
    assert_eq!(c.try_recv_vec().unwrap().unwrap().0, b"mpsc");
}
