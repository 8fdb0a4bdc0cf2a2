//! The MPSC turn wait (`ring/src/turn.rs`): a producer waiting to publish behind a
//! grant that is held parks instead of burning its CPU, and every parked producer is
//! woken and publishes in claim order, whatever order they parked in.
#![cfg(all(not(loom), not(miri), target_os = "linux"))]
#![allow(clippy::unwrap_used)]

use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::Arc;
use std::time::Duration;

use coroipc_ring::heap::mpsc_channel;
use coroipc_ring::{Config, MpscProducer};

/// How long each parked producer is left parked before the next one parks.
const HOLD: Duration = Duration::from_millis(50);

/// CPU time a producer may spend in a commit that waits at least `HOLD`: its spins
/// before parking take about 10 µs; one that spun or yielded through the wait would
/// spend most of it on a CPU.
const MAX_WAIT_CPU: Duration = Duration::from_millis(10);

/// The calling thread's CPU time so far (`/proc/thread-self/schedstat`, nanoseconds).
fn thread_cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").unwrap();
    let ns: u64 = stat.split_whitespace().next().unwrap().parse().unwrap();
    Duration::from_nanos(ns)
}

/// A producer thread: claims `[tag]`, says so, commits when told to, and reports the
/// CPU time the commit took.
fn claimer(
    p: Arc<MpscProducer>,
    tag: u8,
    claimed: Sender<()>,
    go: Receiver<()>,
    done: Sender<(u8, Duration)>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut grant = p.try_reserve(1).unwrap();
        grant.fill(tag);
        claimed.send(()).unwrap();
        go.recv().unwrap();
        let before = thread_cpu();
        let _ = grant.commit();
        done.send((tag, thread_cpu() - before)).unwrap();
    })
}

#[test]
fn parked_producers_all_wake_and_publish_in_claim_order() {
    let (p, mut c) = mpsc_channel(&Config::new(1024)).unwrap();
    let p = Arc::new(p);
    let mut first = p.try_reserve(1).unwrap();
    first.fill(0);
    let (done_tx, done) = channel();
    let mut gos = Vec::new();
    let mut threads = Vec::new();
    // Claims 1, 2, 3, one after another.
    for tag in 1..=3u8 {
        let (claimed_tx, claimed) = channel();
        let (go_tx, go) = channel();
        threads.push(claimer(p.clone(), tag, claimed_tx, go, done_tx.clone()));
        claimed.recv().unwrap();
        gos.push(go_tx);
    }
    // They park in the reverse order (3 first), so a wake that reached one waiter
    // only (in the kernel's FIFO order, 3) would leave 1 and 2 parked.
    for go in gos.iter().rev() {
        go.send(()).unwrap();
        std::thread::sleep(HOLD);
    }
    assert!(
        done.try_recv().is_err(),
        "no claim publishes before the first"
    );
    let _ = first.commit();
    let mut finished = Vec::new();
    for _ in 0..3 {
        let (tag, cpu) = done
            .recv_timeout(Duration::from_secs(20))
            .expect("every parked producer is woken");
        assert!(
            cpu < MAX_WAIT_CPU,
            "producer {tag} spent {cpu:?} of CPU waiting for its turn"
        );
        finished.push(tag);
    }
    for t in threads {
        t.join().unwrap();
    }
    let got: Vec<u8> = (0..4)
        .map(|_| c.try_recv_vec().unwrap().unwrap().0[0])
        .collect();
    assert_eq!(got, [0, 1, 2, 3], "published in claim order");
    assert!(c.try_recv_vec().unwrap().is_none());
    finished.sort_unstable();
    assert_eq!(finished, [1, 2, 3]);
}
