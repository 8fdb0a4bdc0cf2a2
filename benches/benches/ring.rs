//! Criterion: two-thread ring throughput for 8, 64 and 1024-byte messages, coroipc-ring
//! (one publish per message, and batches of 32) beside rtrb and crossbeam's ArrayQueue.
//! The runners are the ones `coroipc-bench ring` uses.

use std::time::Duration;

use coroipc_bench::ring_bench::{coroipc, crossbeam, rtrb, BATCH};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

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
        b.iter_custom(|n| coroipc::<N>(n, BATCH))
    });
    g.bench_function(BenchmarkId::new("rtrb", "single"), |b| {
        b.iter_custom(|n| rtrb::<N>(n, 1))
    });
    g.bench_function(BenchmarkId::new("rtrb", "batch32"), |b| {
        b.iter_custom(|n| rtrb::<N>(n, BATCH))
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
