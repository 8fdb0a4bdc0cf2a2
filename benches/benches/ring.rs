//! Criterion: two-thread ring throughput for 8, 64 and 1024-byte messages, coroipc-ring
//! (one publish per message, and batches of 32) beside rtrb and crossbeam's ArrayQueue.

use std::hint::{black_box, spin_loop};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

const RING_BYTES: usize = 64 << 10;

fn coroipc<const N: usize>(n: u64, batch: usize) -> Duration {
    let (mut p, mut c) =
        coroipc_ring::heap::channel(&coroipc_ring::Config::new(RING_BYTES)).expect("ring");
    let start = Instant::now();
    std::thread::scope(|s| {
        s.spawn(move || {
            let msg = [7u8; N];
            let mut sent = 0;
            while sent < n {
                let mut staged = 0;
                while staged < batch && sent < n && p.try_stage(&msg).is_ok() {
                    staged += 1;
                    sent += 1;
                }
                if staged == 0 {
                    spin_loop();
                } else {
                    let _ = p.publish();
                }
            }
        });
        let mut got = 0;
        let mut sum = 0u64;
        while got < n {
            let mut taken = 0;
            while taken < batch {
                match c.try_peek() {
                    Ok(Some(g)) => {
                        sum = sum.wrapping_add(u64::from(g.as_slice()[N - 1]));
                        g.consume();
                        taken += 1;
                    }
                    _ => break,
                }
            }
            if taken == 0 {
                spin_loop();
            } else {
                got += taken as u64;
                let _ = c.release();
            }
        }
        black_box(sum);
    });
    start.elapsed()
}

fn rtrb<const N: usize>(n: u64) -> Duration {
    let (mut p, mut c) = rtrb::RingBuffer::<[u8; N]>::new(RING_BYTES / N);
    let start = Instant::now();
    std::thread::scope(|s| {
        s.spawn(move || {
            let mut sent = 0;
            while sent < n {
                if p.push([7u8; N]).is_ok() {
                    sent += 1;
                } else {
                    spin_loop();
                }
            }
        });
        let (mut got, mut sum) = (0, 0u64);
        while got < n {
            match c.pop() {
                Ok(m) => {
                    sum = sum.wrapping_add(u64::from(m[N - 1]));
                    got += 1;
                }
                Err(_) => spin_loop(),
            }
        }
        black_box(sum);
    });
    start.elapsed()
}

fn crossbeam<const N: usize>(n: u64) -> Duration {
    let q = Arc::new(crossbeam_queue::ArrayQueue::<[u8; N]>::new(RING_BYTES / N));
    let qp = q.clone();
    let start = Instant::now();
    std::thread::scope(|s| {
        s.spawn(move || {
            let mut sent = 0;
            while sent < n {
                if qp.push([7u8; N]).is_ok() {
                    sent += 1;
                } else {
                    spin_loop();
                }
            }
        });
        let (mut got, mut sum) = (0, 0u64);
        while got < n {
            match q.pop() {
                Some(m) => {
                    sum = sum.wrapping_add(u64::from(m[N - 1]));
                    got += 1;
                }
                None => spin_loop(),
            }
        }
        black_box(sum);
    });
    start.elapsed()
}

fn group<const N: usize>(c: &mut Criterion) {
    let mut g = c.benchmark_group(format!("ring_{N}B"));
    g.throughput(Throughput::Elements(1));
    g.measurement_time(Duration::from_secs(2))
        .warm_up_time(Duration::from_millis(500))
        .sample_size(10);
    g.bench_function(BenchmarkId::new("coroipc", "single"), |b| {
        b.iter_custom(|n| coroipc::<N>(n, 1))
    });
    g.bench_function(BenchmarkId::new("coroipc", "batch32"), |b| {
        b.iter_custom(|n| coroipc::<N>(n, 32))
    });
    g.bench_function(BenchmarkId::new("rtrb", "single"), |b| {
        b.iter_custom(rtrb::<N>)
    });
    g.bench_function(BenchmarkId::new("crossbeam", "single"), |b| {
        b.iter_custom(crossbeam::<N>)
    });
    g.finish();
}

fn benches(c: &mut Criterion) {
    group::<8>(c);
    group::<64>(c);
    group::<1024>(c);
}

criterion_group!(ring, benches);
criterion_main!(ring);
