//! Two-thread ring throughput: coroipc-ring (one publish per message, and batches of
//! 32 with one publish/release each) against rtrb and crossbeam's `ArrayQueue` as
//! yardsticks, with equal capacity in bytes. Both threads busy-spin; the consumer reads
//! the payload so the copy cannot be optimised away.

use std::hint::spin_loop;
use std::time::{Duration, Instant};

use coroipc_ring::{heap, Config, Fences, PushError};

use crate::pin_to;

/// Ring bytes for every implementation.
const RING_BYTES: usize = 64 << 10;
/// Messages per batch in batched mode.
pub const BATCH: usize = 32;

/// One measured case.
#[derive(Clone, Debug)]
pub struct RingResult {
    /// coroipc | rtrb | crossbeam
    pub imp: &'static str,
    /// Message bytes.
    pub size: usize,
    /// 1 or [`BATCH`].
    pub batch: usize,
    /// Median messages per second.
    pub msgs_per_s: f64,
}

impl RingResult {
    /// The JSON line.
    pub fn json(&self) -> String {
        format!(
            "{{\"bench\":\"ring\",\"impl\":\"{}\",\"size\":{},\"batch\":{},\"msgs_per_s\":{:.0}}}",
            self.imp, self.size, self.batch, self.msgs_per_s
        )
    }
}

fn two_threads(
    n: u64,
    producer: impl FnOnce(u64) + Send,
    consumer: impl FnOnce(u64) -> u64 + Send,
) -> Duration {
    let start = Instant::now();
    std::thread::scope(|s| {
        s.spawn(move || {
            pin_to(1);
            producer(n);
        });
        let sum = consumer(n);
        std::hint::black_box(sum);
    });
    start.elapsed()
}

/// coroipc-ring, `batch` messages per publish / release.
pub fn coroipc<const N: usize>(n: u64, batch: usize) -> Duration {
    coroipc_with::<N>(n, batch, Fences::Locked)
}

/// [`coroipc`] with the protocol `fences`.
pub fn coroipc_with<const N: usize>(n: u64, batch: usize, fences: Fences) -> Duration {
    let Ok((mut p, mut c)) = heap::channel_with(&Config::new(RING_BYTES), fences) else {
        return Duration::MAX;
    };
    two_threads(
        n,
        move |n| {
            let msg = [7u8; N];
            let mut sent = 0;
            while sent < n {
                let mut staged = 0;
                while staged < batch && sent < n {
                    match p.try_stage(&msg) {
                        Ok(()) => {
                            staged += 1;
                            sent += 1;
                        }
                        Err(PushError::Full) => break,
                        Err(_) => return,
                    }
                }
                if staged == 0 {
                    spin_loop();
                } else {
                    let _ = p.publish();
                }
            }
        },
        move |n| {
            let mut sum = 0u64;
            let mut got = 0;
            while got < n {
                let mut taken = 0;
                while taken < batch {
                    match c.try_peek() {
                        Ok(Some(g)) => {
                            let mut last = [0u8; 1];
                            g.read_at(N - 1, &mut last);
                            sum = sum.wrapping_add(u64::from(last[0]));
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
            sum
        },
    )
}

/// rtrb with `[u8; N]` slots; batched uses its chunk API: time for `n` messages.
pub fn rtrb<const N: usize>(n: u64, batch: usize) -> Duration {
    let (mut p, mut c) = rtrb::RingBuffer::<[u8; N]>::new(RING_BYTES / N);
    two_threads(
        n,
        move |n| {
            let msg = [7u8; N];
            let mut sent = 0;
            while sent < n {
                if batch == 1 {
                    if p.push(msg).is_ok() {
                        sent += 1;
                    } else {
                        spin_loop();
                    }
                } else {
                    let want = (batch as u64).min(n - sent) as usize;
                    let k = want.min(p.slots());
                    if k == 0 {
                        spin_loop();
                        continue;
                    }
                    if let Ok(chunk) = p.write_chunk_uninit(k) {
                        let written = chunk.fill_from_iter(std::iter::repeat(msg));
                        sent += written as u64;
                    }
                }
            }
        },
        move |n| {
            let mut sum = 0u64;
            let mut got = 0;
            while got < n {
                if batch == 1 {
                    match c.pop() {
                        Ok(m) => {
                            sum = sum.wrapping_add(u64::from(m[N - 1]));
                            got += 1;
                        }
                        Err(_) => spin_loop(),
                    }
                } else {
                    let k = batch.min(c.slots());
                    if k == 0 {
                        spin_loop();
                        continue;
                    }
                    if let Ok(chunk) = c.read_chunk(k) {
                        let (a, b) = chunk.as_slices();
                        for m in a.iter().chain(b) {
                            sum = sum.wrapping_add(u64::from(m[N - 1]));
                        }
                        chunk.commit_all();
                        got += k as u64;
                    }
                }
            }
            sum
        },
    )
}

/// crossbeam's `ArrayQueue` with `[u8; N]` slots (no batch API): time for `n` messages.
pub fn crossbeam<const N: usize>(n: u64) -> Duration {
    let q = std::sync::Arc::new(crossbeam_queue::ArrayQueue::<[u8; N]>::new(RING_BYTES / N));
    let qp = q.clone();
    two_threads(
        n,
        move |n| {
            let msg = [7u8; N];
            let mut sent = 0;
            while sent < n {
                if qp.push(msg).is_ok() {
                    sent += 1;
                } else {
                    spin_loop();
                }
            }
        },
        move |n| {
            let mut sum = 0u64;
            let mut got = 0;
            while got < n {
                match q.pop() {
                    Some(m) => {
                        sum = sum.wrapping_add(u64::from(m[N - 1]));
                        got += 1;
                    }
                    None => spin_loop(),
                }
            }
            sum
        },
    )
}

/// Median messages per second of `reps` runs of `n` messages.
fn median_rate(reps: usize, n: u64, mut f: impl FnMut() -> Duration) -> f64 {
    let mut v: Vec<f64> = (0..reps).map(|_| n as f64 / f().as_secs_f64()).collect();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn case<const N: usize>(out: &mut Vec<RingResult>, n: u64, reps: usize) {
    for batch in [1, BATCH] {
        out.push(RingResult {
            imp: "coroipc",
            size: N,
            batch,
            msgs_per_s: median_rate(reps, n, || coroipc::<N>(n, batch)),
        });
        out.push(RingResult {
            imp: "coroipc-asym",
            size: N,
            batch,
            msgs_per_s: median_rate(reps, n, || coroipc_with::<N>(n, batch, Fences::Asymmetric)),
        });
        out.push(RingResult {
            imp: "rtrb",
            size: N,
            batch,
            msgs_per_s: median_rate(reps, n, || rtrb::<N>(n, batch)),
        });
    }
    out.push(RingResult {
        imp: "crossbeam",
        size: N,
        batch: 1,
        msgs_per_s: median_rate(reps, n, || crossbeam::<N>(n)),
    });
}

/// One case alone, alternating coroipc-ring (with `fences`) and rtrb `reps` times (a
/// profiling aid: `coroipc-bench __ring SIZE BATCH [REPS] [asym]`): each one's median,
/// in messages per second. Sizes 8, 64 and 1024.
pub fn pair(size: usize, batch: usize, reps: usize, fences: Fences) -> Option<(f64, f64)> {
    pin_to(0);
    let n = 2_000_000;
    let (c, r): (Vec<Duration>, Vec<Duration>) = (0..reps)
        .map(|_| match size {
            8 => (coroipc_with::<8>(n, batch, fences), rtrb::<8>(n, batch)),
            64 => (coroipc_with::<64>(n, batch, fences), rtrb::<64>(n, batch)),
            1024 => (
                coroipc_with::<1024>(n / 8, batch, fences),
                rtrb::<1024>(n / 8, batch),
            ),
            _ => (Duration::ZERO, Duration::ZERO),
        })
        .unzip();
    if c.iter().any(Duration::is_zero) {
        return None;
    }
    let n = if size == 1024 { n / 8 } else { n };
    let median = |mut v: Vec<Duration>| {
        v.sort();
        n as f64 / v[v.len() / 2].as_secs_f64()
    };
    Some((median(c), median(r)))
}

/// Runs every case; `quick` shortens runs.
pub fn run(quick: bool) -> Vec<RingResult> {
    pin_to(0);
    let (reps, target) = if quick {
        (3, Duration::from_millis(100))
    } else {
        (5, Duration::from_millis(400))
    };
    let mut out = Vec::new();
    // Messages per run sized from a short calibration of coroipc single.
    let calibrate = |n: u64, t: Duration| {
        ((n as f64 / t.as_secs_f64() * target.as_secs_f64()) as u64).max(10_000)
    };
    let n8 = calibrate(200_000, coroipc::<8>(200_000, 1));
    case::<8>(&mut out, n8, reps);
    let n64 = calibrate(200_000, coroipc::<64>(200_000, 1));
    case::<64>(&mut out, n64, reps);
    let n1k = calibrate(50_000, coroipc::<1024>(50_000, 1));
    case::<1024>(&mut out, n1k, reps);
    out
}

/// The human-readable table.
pub fn table(results: &[RingResult]) -> String {
    let get = |imp: &str, size: usize, batch: usize| {
        results
            .iter()
            .find(|r| r.imp == imp && r.size == size && r.batch == batch)
            .map_or(f64::NAN, |r| r.msgs_per_s)
    };
    let mut s = String::from("Ring throughput, two threads, M msg/s — higher is better\n");
    s.push_str("  (asym: the same ring with Fences::Asymmetric)\n");
    s.push_str("  size  batch   coroipc     asym      rtrb   crossbeam   coroipc/rtrb  asym/rtrb  coroipc/crossbeam\n");
    for size in [8usize, 64, 1024] {
        for batch in [1, BATCH] {
            let (c, a, r, x) = (
                get("coroipc", size, batch),
                get("coroipc-asym", size, batch),
                get("rtrb", size, batch),
                get("crossbeam", size, 1),
            );
            s.push_str(&format!(
                "  {size:>4}  {batch:>5}  {:>8.2} {:>8.2}  {:>8.2}  {:>10.2}  {:>12.2}x  {:>8.2}x  {:>16.2}x\n",
                c / 1e6,
                a / 1e6,
                r / 1e6,
                x / 1e6,
                c / r,
                a / r,
                c / x
            ));
        }
    }
    s
}

/// Nanoseconds per message with producer and consumer on one thread, 32 messages
/// staged then 32 taken: the CPU work of the two sides without any line crossing CPUs.
pub fn one_thread_coroipc<const N: usize>(n: u64) -> f64 {
    let Ok((mut p, mut c)) = heap::channel(&Config::new(RING_BYTES)) else {
        return f64::NAN;
    };
    let msg = [7u8; N];
    let mut sum = 0u64;
    let start = Instant::now();
    for _ in 0..n / 32 {
        if !stage_32(&mut p, &msg) {
            return f64::NAN;
        }
        match drain_32::<N>(&mut c) {
            Some(s) => sum = sum.wrapping_add(s),
            None => return f64::NAN,
        }
    }
    std::hint::black_box(sum);
    start.elapsed().as_nanos() as f64 / n as f64
}

/// [`one_thread_coroipc`]'s producer half: 32 messages staged, one publish. Out of
/// line, so that an instruction count (`valgrind --tool=callgrind`) splits by side.
#[inline(never)]
fn stage_32(p: &mut coroipc_ring::Producer, msg: &[u8]) -> bool {
    for _ in 0..32 {
        if p.try_stage(std::hint::black_box(msg)).is_err() {
            return false;
        }
    }
    let _ = p.publish();
    true
}

/// [`one_thread_coroipc`]'s consumer half: 32 messages read (the last byte of each,
/// as the two-thread bench), one release; the sum of the bytes read.
#[inline(never)]
fn drain_32<const N: usize>(c: &mut coroipc_ring::Consumer) -> Option<u64> {
    let mut sum = 0u64;
    for _ in 0..32 {
        let g = c.try_peek().ok()??;
        let mut last = [0u8; 1];
        g.read_at(N - 1, &mut last);
        sum = sum.wrapping_add(u64::from(last[0]));
        g.consume();
    }
    let _ = c.release();
    Some(sum)
}

/// [`one_thread_coroipc`] for rtrb (its chunk API, as [`rtrb`] batched).
pub fn one_thread_rtrb<const N: usize>(n: u64) -> f64 {
    let (mut p, mut c) = rtrb::RingBuffer::<[u8; N]>::new(RING_BYTES / N);
    let msg = [7u8; N];
    let mut sum = 0u64;
    let start = Instant::now();
    for _ in 0..n / 32 {
        let Ok(chunk) = p.write_chunk_uninit(32) else {
            return f64::NAN;
        };
        chunk.fill_from_iter(std::iter::repeat(std::hint::black_box(msg)));
        let Ok(chunk) = c.read_chunk(32) else {
            return f64::NAN;
        };
        let (a, b) = chunk.as_slices();
        for m in a.iter().chain(b) {
            sum = sum.wrapping_add(u64::from(m[N - 1]));
        }
        chunk.commit_all();
    }
    std::hint::black_box(sum);
    start.elapsed().as_nanos() as f64 / n as f64
}

/// One size's figures in one [`line_fit`] round: ping-pong ns (coroipc-ring, rtrb),
/// then single and batch-32 M msg/s (coroipc-ring, rtrb), then ns per message on
/// one thread (coroipc-ring, rtrb).
fn line_fit_size<const N: usize>(n: u64) -> [f64; 8] {
    let pp =
        |r: Option<crate::ipc_bench::IpcResult>| r.and_then(|r| r.median_ns).unwrap_or(f64::NAN);
    let rate = |d: Duration| n as f64 / d.as_secs_f64() / 1e6;
    pin_to(0);
    [
        pp(crate::floor::coroipc_ring_pingpong_of::<N>(
            2_000,
            Fences::Locked,
        )),
        pp(Some(crate::floor::ring_pingpong_of::<N>(2_000))),
        rate(coroipc::<N>(n, 1)),
        rate(rtrb::<N>(n, 1)),
        rate(coroipc::<N>(n, 32)),
        rate(rtrb::<N>(n, 32)),
        one_thread_coroipc::<N>(n),
        one_thread_rtrb::<N>(n),
    ]
}

/// Profiling aid (`coroipc-bench __linefit ROUNDS`): does a message whose frame fits
/// one cache line (56 B payload + the 8-byte header) close the gap to rtrb that a
/// 64 B message (a 72 B frame, two lines shared with its neighbours) shows, and does
/// a frame of exactly two lines (120 B) lose less than it? Each round measures the cache-line
/// floor before and after (the VM's CPU placement) and both sizes through both rings.
pub fn line_fit(rounds: usize) {
    let n = 2_000_000;
    for round in 0..rounds {
        let floor = || {
            crate::floor::cache_line(2_000)
                .median_ns
                .unwrap_or(f64::NAN)
        };
        let before = floor();
        let f56 = line_fit_size::<56>(n);
        let f64_ = line_fit_size::<64>(n);
        let f120 = line_fit_size::<120>(n);
        let after = floor();
        println!("round {round}: cache line {before:.0} / {after:.0} ns");
        for (size, f) in [(56, f56), (64, f64_), (120, f120)] {
            println!(
                "  {size} B: ping-pong coroipc {:.0} rtrb {:.0} ns ({:.2}x); single {:.1} / {:.1} M/s ({:.2}x); batch 32 {:.1} / {:.1} M/s ({:.2}x); one thread {:.1} / {:.1} ns per message",
                f[0], f[1], f[0] / f[1], f[2], f[3], f[2] / f[3], f[4], f[5], f[4] / f[5], f[6], f[7]
            );
        }
    }
}
