//! Which placement of the two CPUs a figure was measured on (`coroipc-bench
//! __phases`), and each figure against the floor measured around it.
//!
//! On this VM the host moves the two vCPUs between two placements within seconds: a
//! cache line crosses between them in about 75 ns, or in about 450 ns (the spinning
//! cache-line ping-pong itself, two pinned threads and no coroipc code, flips between
//! the two from one run to the next). Every cross-core figure follows, so a figure
//! and a floor taken a few seconds apart can be on different placements and their
//! ratio means nothing. This aid measures the floor just before and just after each
//! figure, keeps the samples whose two floors agree (the placement held), and reports
//! per placement the medians and the ratio to the floor.

use crate::{floor, ipc_bench, ring_bench};

/// A floor below this is the near placement, above it the far one (the two modes
/// measured here are ~75 and ~450 ns, with nothing between 150 and 350).
const NEAR_BELOW_NS: f64 = 200.0;

/// One figure measured `samples` times between two floors.
struct Sample {
    floor_ns: f64,
    value: f64,
}

fn floor_ns() -> f64 {
    floor::cache_line(2_000).median_ns.unwrap_or(f64::NAN)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

/// Samples of `measure`, each between two floors; only those whose floors agree.
fn sample(samples: usize, mut measure: impl FnMut() -> Option<f64>) -> Vec<Sample> {
    let mut out = Vec::new();
    for _ in 0..samples {
        let before = floor_ns();
        let Some(value) = measure() else { continue };
        let after = floor_ns();
        if (before < NEAR_BELOW_NS) == (after < NEAR_BELOW_NS) {
            out.push(Sample {
                floor_ns: (before + after) / 2.0,
                value,
            });
        }
    }
    out
}

/// One line per placement: samples, median floor, median figure, ratio.
fn report(name: &str, unit: &str, per_floor: bool, samples: &[Sample]) {
    for (placement, near) in [("near", true), ("far", false)] {
        let here: Vec<&Sample> = samples
            .iter()
            .filter(|s| (s.floor_ns < NEAR_BELOW_NS) == near)
            .collect();
        if here.is_empty() {
            println!("  {name:<24} {placement:<4} no sample");
            continue;
        }
        let f = median(here.iter().map(|s| s.floor_ns).collect());
        let v = median(here.iter().map(|s| s.value).collect());
        let ratio = if per_floor { v / f } else { f64::NAN };
        println!(
            "  {name:<24} {placement:<4} n={:<2} floor {f:>5.0} ns  {v:>9.2} {unit}{}",
            here.len(),
            if per_floor {
                format!("  = {ratio:.2}x the floor")
            } else {
                String::new()
            }
        );
    }
}

/// Runs every figure `samples` times and prints the per-placement table.
pub fn run(samples: usize) {
    println!(
        "Per CPU placement (floor = spinning cache-line ping-pong, measured around each sample)"
    );
    let rtt = sample(samples, || ipc_bench::rtt_only(64, "default", 0.5).ok());
    report("ipc RTT 64 B default", "ns", true, &rtt);
    let ring = sample(samples, || {
        floor::coroipc_ring_pingpong(2_000).and_then(|r| r.median_ns)
    });
    report("coroipc-ring ping-pong", "ns", true, &ring);
    let rtrb = sample(samples, || floor::ring_pingpong(2_000).median_ns);
    report("rtrb ping-pong", "ns", true, &rtrb);
    let stream = sample(samples, || {
        ipc_bench::stream_only(64, 2_000_000).ok().map(|r| r / 1e6)
    });
    report("ipc stream 64 B", "M msg/s", false, &stream);
    for batch in [1, ring_bench::BATCH] {
        let ratio = sample(samples, || {
            ring_bench::pair(64, batch, 1, coroipc_ring::Fences::Locked).map(|(c, r)| c / r)
        });
        report(&format!("ring 64 B x{batch} / rtrb"), "x", false, &ratio);
    }
}
