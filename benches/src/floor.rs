//! The physical floors of this machine, measured in the same run as the figures they
//! judge (timings on a small VM drift from run to run, ratios within one run do not):
//!
//! * **cache line** (`impl` `floor`, `op` `rtt`, `mode` `spin`): one 64-byte line
//!   bounced between two threads pinned to different CPUs — the least any spinning
//!   round trip can cost (a request index and a response index must each cross once);
//! * **two lines** (`mode` `lines`): the same, with a line of its own for each
//!   direction, as any protocol over two rings has — each side then writes a line the
//!   other is reading, so a crossing costs a fetch for ownership and a miss;
//! * **ring** (`mode` `ring`): a 64-byte message ping-ponged through two rtrb rings
//!   between the same two threads — the least a round trip through shared rings costs
//!   (an index line and a data line cross each way), beside the same ping-pong through
//!   coroipc-ring (`impl` `coroipc-ring`), the ring's share without the IPC layer;
//! * **futex** (`mode` `block`): a round trip between two processes that each sleep in
//!   `FUTEX_WAIT` on a shared word and wake the other with `FUTEX_WAKE` — the least a
//!   round trip that sleeps on both sides can cost;
//! * **memcpy** (`op` `copy`, one 64 KiB copy, in ns; `op` `large`, 1 MiB, in MB/s):
//!   single-thread `copy_from_slice` of buffers already in cache, as the copies a
//!   message makes;
//! * **cross-core** (`op` `large`, `mode` `cross-core`): 1 MiB messages copied in by
//!   one pinned thread and out by another through four slots with plain `memcpy`s —
//!   what moving large messages between the CPUs costs before any IPC.
//!
//! The futex ping-pong forks: this runs first, while the bench is single-threaded, and
//! the child only spins on shared memory and makes the futex system call before
//! `_exit`.

use coroipc_ring::Fences;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Instant;

use crate::ipc_bench::IpcResult;
use crate::pin_to;
use crate::stats::{median, percentile};

/// Round trips per timed sample (one `Instant` read pair per sample, not per trip).
const PER_SAMPLE: usize = 100;

/// A figure from per-sample mean round-trip times.
fn rtt(mode: &'static str, mut samples: Vec<f64>) -> IpcResult {
    samples.sort_by(f64::total_cmp);
    let med = median(&samples);
    IpcResult {
        op: "rtt",
        imp: "floor",
        mode,
        size: 64,
        median_ns: Some(med),
        p99_ns: Some(percentile(&samples, 0.99)),
        msgs_per_s: Some(1e9 / med),
        mb_per_s: None,
    }
}

/// One cache line, alone on its line.
#[repr(align(128))]
struct Line(AtomicU64);

/// Cache-line ping-pong between CPU 0 (this thread) and CPU 1.
pub fn cache_line(samples: usize) -> IpcResult {
    word_pingpong(samples, true, "spin")
}

/// Two lines, one per direction: CPU 0 (this thread) stores a word into the first and
/// waits for CPU 1's answer in the second, which CPU 1 stores after seeing the first.
/// The least a round trip costs when each direction has a line of its own, as two
/// rings do: each crossing is a write to a line the other side is reading (a fetch
/// for ownership) and the reader's miss, where one shared line (`cache_line`) lets
/// each side write the line it has just read.
pub fn two_lines(samples: usize) -> IpcResult {
    word_pingpong(samples, false, "lines")
}

/// A word ping-ponged between CPU 0 (this thread) and CPU 1: CPU 0 stores `2i + 1`
/// and waits for `2i + 2`, which CPU 1 stores after seeing it; in one line both
/// ways (`shared`) or in a line of its own each way.
fn word_pingpong(samples: usize, shared: bool, mode: &'static str) -> IpcResult {
    let lines = std::sync::Arc::new([Line(AtomicU64::new(0)), Line(AtomicU64::new(0))]);
    let peer = lines.clone();
    let answer = usize::from(!shared);
    let total = (samples * PER_SAMPLE) as u64;
    let pong = std::thread::spawn(move || {
        pin_to(1);
        for i in 0..total {
            while peer[0].0.load(Ordering::Acquire) != 2 * i + 1 {
                std::hint::spin_loop();
            }
            peer[answer].0.store(2 * i + 2, Ordering::Release);
        }
    });
    pin_to(0);
    let mut out = Vec::with_capacity(samples);
    let mut i = 0u64;
    for _ in 0..samples {
        let t = Instant::now();
        for _ in 0..PER_SAMPLE {
            lines[0].0.store(2 * i + 1, Ordering::Release);
            while lines[answer].0.load(Ordering::Acquire) != 2 * i + 2 {
                std::hint::spin_loop();
            }
            i += 1;
        }
        out.push(t.elapsed().as_nanos() as f64 / PER_SAMPLE as f64);
    }
    let _ = pong.join();
    rtt(mode, out)
}

/// `FUTEX_WAIT` on `word` while it holds `expected` (shared, not private: the word is
/// in memory shared by two processes).
fn futex_wait(word: &AtomicU32, expected: u32) {
    // SAFETY: `word` is a valid, aligned u32 for the duration of the call; a null
    // timeout waits until woken (or a spurious return, which the caller's loop
    // re-checks).
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT,
            expected,
            std::ptr::null::<libc::timespec>(),
        );
    }
}

fn futex_wake(word: &AtomicU32) {
    // SAFETY: as `futex_wait`; wakes at most one waiter.
    unsafe {
        libc::syscall(libc::SYS_futex, word.as_ptr(), libc::FUTEX_WAKE, 1);
    }
}

/// Futex ping-pong between this process (CPU 0) and a forked child (CPU 1). `None`
/// when shared memory or fork is unavailable.
pub fn futex(samples: usize) -> Option<IpcResult> {
    let total = (samples * PER_SAMPLE) as u32;
    // SAFETY: a fresh anonymous shared mapping of one page; checked below.
    let page = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            4096,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if page == libc::MAP_FAILED {
        return None;
    }
    // SAFETY: the page is mapped, zeroed, aligned, and lives until the munmap below
    // (in the child: until `_exit`).
    let word = unsafe { &*(page as *const AtomicU32) };
    // SAFETY: the bench is single-threaded here; the child only touches `word`, makes
    // system calls and `_exit`s (nothing that could need another thread's lock).
    let child = unsafe { libc::fork() };
    if child == 0 {
        pin_to(1);
        for i in 0..total {
            loop {
                let v = word.load(Ordering::Acquire);
                if v == 2 * i + 1 {
                    break;
                }
                futex_wait(word, v);
            }
            word.store(2 * i + 2, Ordering::Release);
            futex_wake(word);
        }
        // SAFETY: ends the child without running the parent's destructors.
        unsafe { libc::_exit(0) };
    }
    if child < 0 {
        return None;
    }
    pin_to(0);
    let mut out = Vec::with_capacity(samples);
    let mut i = 0u32;
    for _ in 0..samples {
        let t = Instant::now();
        for _ in 0..PER_SAMPLE {
            word.store(2 * i + 1, Ordering::Release);
            futex_wake(word);
            loop {
                let v = word.load(Ordering::Acquire);
                if v == 2 * i + 2 {
                    break;
                }
                futex_wait(word, v);
            }
            i += 1;
        }
        out.push(t.elapsed().as_nanos() as f64 / PER_SAMPLE as f64);
    }
    let mut status = 0;
    // SAFETY: reaps our own child; then unmaps the page nobody uses any more.
    unsafe {
        libc::waitpid(child, &mut status, 0);
        libc::munmap(page, 4096);
    }
    Some(rtt("block", out))
}

/// Time of one `size`-byte copy (ns, median of samples) and the bandwidth.
pub fn memcpy(size: usize, copies: usize) -> IpcResult {
    let src = vec![7u8; size];
    let mut dst = vec![0u8; size];
    let per_sample = (copies / 50).max(1);
    let mut samples = Vec::with_capacity(50);
    for s in 0..50 {
        let t = Instant::now();
        for i in 0..per_sample {
            dst.copy_from_slice(std::hint::black_box(&src));
            std::hint::black_box(&mut dst)[0] = (s + i) as u8;
        }
        samples.push(t.elapsed().as_nanos() as f64 / per_sample as f64);
    }
    samples.sort_by(f64::total_cmp);
    let ns = median(&samples);
    IpcResult {
        op: if size >= 1 << 20 { "large" } else { "copy" },
        imp: "floor",
        mode: "-",
        size,
        median_ns: Some(ns),
        p99_ns: Some(percentile(&samples, 0.99)),
        msgs_per_s: Some(1e9 / ns),
        mb_per_s: Some(size as f64 * 1e3 / ns),
    }
}

/// Four 1 MiB slots shared by two threads; a slot is touched by one thread at a time
/// (handed over through `written`/`read`, Release/Acquire).
struct Slots {
    slots: Vec<std::cell::UnsafeCell<Box<[u8]>>>,
    written: AtomicU64,
    read: AtomicU64,
}

// SAFETY: a slot is written only by the producer while `written - read < SLOTS` says it
// is free, and read only by the consumer after `written` (Release) says it is full;
// the counters order the accesses (no two threads touch one slot at once).
unsafe impl Sync for Slots {}

const SLOTS: u64 = 4;

/// `size`-byte messages moved between the two CPUs with plain `memcpy`s through four
/// slots (the producer copies in, the consumer copies out, overlapped): the floor for
/// large messages between processes, which the in-cache `memcpy` is not (the bytes
/// must cross from one core's cache to the other's). `impl` `floor`, `mode`
/// `cross-core`.
pub fn cross_core(size: usize, n: u64) -> IpcResult {
    let shared = std::sync::Arc::new(Slots {
        slots: (0..SLOTS)
            .map(|_| std::cell::UnsafeCell::new(vec![0u8; size].into_boxed_slice()))
            .collect(),
        written: AtomicU64::new(0),
        read: AtomicU64::new(0),
    });
    let producer = shared.clone();
    let t = Instant::now();
    let writer = std::thread::spawn(move || {
        pin_to(1);
        let src = vec![7u8; size];
        for i in 0..n {
            while i - producer.read.load(Ordering::Acquire) >= SLOTS {
                std::hint::spin_loop();
            }
            // SAFETY: slot `i % SLOTS` is free (the consumer released it) and only
            // this thread writes it until `written` passes `i`.
            let slot = unsafe { &mut *producer.slots[(i % SLOTS) as usize].get() };
            slot.copy_from_slice(&src);
            producer.written.store(i + 1, Ordering::Release);
        }
    });
    pin_to(0);
    let mut dst = vec![0u8; size];
    for i in 0..n {
        while shared.written.load(Ordering::Acquire) <= i {
            std::hint::spin_loop();
        }
        // SAFETY: slot `i % SLOTS` is full (published by `written`) and the producer
        // does not touch it until `read` passes `i`.
        let slot = unsafe { &*shared.slots[(i % SLOTS) as usize].get() };
        dst.copy_from_slice(slot);
        std::hint::black_box(&mut dst);
        shared.read.store(i + 1, Ordering::Release);
    }
    let secs = t.elapsed().as_secs_f64();
    let _ = writer.join();
    IpcResult {
        op: "large",
        imp: "floor",
        mode: "cross-core",
        size,
        median_ns: None,
        p99_ns: None,
        msgs_per_s: Some(n as f64 / secs),
        mb_per_s: Some(n as f64 * size as f64 / secs / 1e6),
    }
}

/// A 64-byte message ping-ponged through two rtrb rings between CPU 0 and CPU 1: the
/// least a round trip through shared rings costs before any IPC layer (each message
/// moves its index line and its data line across; `impl` `floor`, `mode` `ring`).
pub fn ring_pingpong(samples: usize) -> IpcResult {
    ring_pingpong_of::<64>(samples)
}

/// [`ring_pingpong`] with `N`-byte messages.
pub fn ring_pingpong_of<const N: usize>(samples: usize) -> IpcResult {
    let (mut ping_tx, mut ping_rx) = rtrb::RingBuffer::<[u8; N]>::new(1024);
    let (mut pong_tx, mut pong_rx) = rtrb::RingBuffer::<[u8; N]>::new(1024);
    let total = samples * PER_SAMPLE;
    let peer = std::thread::spawn(move || {
        pin_to(1);
        for _ in 0..total {
            let msg = loop {
                match ping_rx.pop() {
                    Ok(m) => break m,
                    Err(_) => std::hint::spin_loop(),
                }
            };
            while pong_tx.push(msg).is_err() {
                std::hint::spin_loop();
            }
        }
    });
    pin_to(0);
    let mut out = Vec::with_capacity(samples);
    let mut msg = [1u8; N];
    for _ in 0..samples {
        let t = Instant::now();
        for _ in 0..PER_SAMPLE {
            while ping_tx.push(msg).is_err() {
                std::hint::spin_loop();
            }
            msg = loop {
                match pong_rx.pop() {
                    Ok(m) => break std::hint::black_box(m),
                    Err(_) => std::hint::spin_loop(),
                }
            };
        }
        out.push(t.elapsed().as_nanos() as f64 / PER_SAMPLE as f64);
    }
    let _ = peer.join();
    rtt("ring", out)
}

/// The same ping-pong through two coroipc-ring SPSC rings (`impl` `coroipc-ring`,
/// `mode` `spin`): the ring's share of an IPC round trip, without the IPC layer
/// (request ids, response lookup, doorbells, locks).
pub fn coroipc_ring_pingpong(samples: usize) -> Option<IpcResult> {
    coroipc_ring_pingpong_of::<64>(samples, Fences::Locked)
}

/// [`coroipc_ring_pingpong`] with `N`-byte messages and the protocol `fences`
/// (`impl` `coroipc-ring-asym` for [`Fences::Asymmetric`]).
pub fn coroipc_ring_pingpong_of<const N: usize>(
    samples: usize,
    fences: Fences,
) -> Option<IpcResult> {
    pingpong_with::<N>(samples, fences, false)
}

/// [`coroipc_ring_pingpong`] with each side calling `Producer::hand_off` after its
/// publish, as a ping-pong about to wait should (`impl` `coroipc-ring-handoff`).
pub fn coroipc_ring_pingpong_handed_off<const N: usize>(samples: usize) -> Option<IpcResult> {
    pingpong_with::<N>(samples, Fences::Locked, true)
}

fn pingpong_with<const N: usize>(
    samples: usize,
    fences: Fences,
    hand_off: bool,
) -> Option<IpcResult> {
    let config = coroipc_ring::Config::new(1 << 16);
    let channel = || coroipc_ring::heap::channel_with(&config, fences);
    let rings = channel().and_then(|a| channel().map(|b| (a, b)));
    let Ok(((mut ping_tx, mut ping_rx), (mut pong_tx, mut pong_rx))) = rings else {
        eprintln!("coroipc-ring ping-pong skipped: no ring");
        return None;
    };
    let total = samples * PER_SAMPLE;
    let peer = std::thread::spawn(move || {
        pin_to(1);
        let mut buf = [0u8; N];
        for _ in 0..total {
            while !matches!(ping_rx.try_recv(&mut buf), Ok(Some(_))) {
                std::hint::spin_loop();
            }
            while pong_tx.try_send(&buf).is_err() {
                std::hint::spin_loop();
            }
            if hand_off {
                pong_tx.hand_off();
            }
        }
    });
    pin_to(0);
    let mut out = Vec::with_capacity(samples);
    let mut buf = [1u8; N];
    for _ in 0..samples {
        let t = Instant::now();
        for _ in 0..PER_SAMPLE {
            while ping_tx.try_send(&buf).is_err() {
                std::hint::spin_loop();
            }
            if hand_off {
                ping_tx.hand_off();
            }
            while !matches!(pong_rx.try_recv(&mut buf), Ok(Some(_))) {
                std::hint::spin_loop();
            }
        }
        out.push(t.elapsed().as_nanos() as f64 / PER_SAMPLE as f64);
    }
    let _ = peer.join();
    let mut r = rtt("spin", out);
    r.imp = match (fences, hand_off) {
        (_, true) => "coroipc-ring-handoff",
        (Fences::Asymmetric, false) => "coroipc-ring-asym",
        _ => "coroipc-ring",
    };
    Some(r)
}

/// Every floor, for a quick or a full run.
pub fn run(quick: bool) -> Vec<IpcResult> {
    let samples = if quick { 2_000 } else { 20_000 };
    let mut out = vec![
        cache_line(samples),
        two_lines(samples),
        ring_pingpong(samples),
    ];
    out.extend(coroipc_ring_pingpong(samples));
    out.extend(coroipc_ring_pingpong_of::<64>(samples, Fences::Asymmetric));
    out.extend(coroipc_ring_pingpong_handed_off::<64>(samples));
    match futex(samples / 10) {
        Some(r) => out.push(r),
        None => eprintln!("futex floor skipped: no shared mapping or fork"),
    }
    out.push(memcpy(64 << 10, if quick { 20_000 } else { 200_000 }));
    out.push(memcpy(1 << 20, if quick { 1_000 } else { 10_000 }));
    out.push(cross_core(1 << 20, if quick { 1_000 } else { 10_000 }));
    out
}
