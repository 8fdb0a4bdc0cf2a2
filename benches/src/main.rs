//! `coroipc-bench [ipc|ring|all] [--quick] [--json] [--scale]`
//!
//! Default: the side-by-side IPC comparison (coroipc against Unix sockets), printed as a
//! table with ratio columns. `ring`: the ring against rtrb and crossbeam. `--json`
//! prints one object per line instead. `--scale` adds the idle-connection rows (not
//! with `--quick`).

use coroipc_bench::{ipc_bench, online_cpus, ring_bench, scale};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("__server") {
        ipc_bench::server_main(&args[1..]);
        return;
    }
    if args.first().map(String::as_str) == Some("__connect") {
        let runs = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(5);
        match ipc_bench::connect_only(runs, 1.0) {
            Ok(rates) => {
                for (ours, uds) in &rates {
                    println!(
                        "connect+disconnect: coroipc {ours:.0}/s, uds {uds:.0}/s = {:.2}x",
                        ours / uds
                    );
                }
            }
            Err(e) => eprintln!("{e}"),
        }
        return;
    }
    if args.first().map(String::as_str) == Some("__rtt") {
        let size = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(64);
        let mode = args.get(2).map_or("spin-both", String::as_str);
        match ipc_bench::rtt_only(size, mode, 5.0) {
            Ok(ns) => println!("rtt {size} B {mode}: {ns:.0} ns mean"),
            Err(e) => eprintln!("{e}"),
        }
        return;
    }
    if args.first().map(String::as_str) == Some("__pingpong") {
        // Profiling aid: the spinning ping-pong floors only (cache line, rtrb ring,
        // coroipc-ring at 64, 56, 80, 24 and 8 B, handed off at 64 and 80 B), median ns
        // per round trip.
        use coroipc_ring::Fences::{Asymmetric as Asym, Locked};
        let rows = [
            ("", Some(coroipc_bench::floor::cache_line(5_000))),
            ("", Some(coroipc_bench::floor::two_lines(5_000))),
            ("64 B", Some(coroipc_bench::floor::ring_pingpong(5_000))),
            ("64 B", coroipc_bench::floor::coroipc_ring_pingpong(5_000)),
            (
                "64 B",
                coroipc_bench::floor::coroipc_ring_pingpong_handed_off::<64>(5_000),
            ),
            (
                "64 B",
                coroipc_bench::floor::coroipc_ring_pingpong_of::<64>(5_000, Asym),
            ),
            // 56 B: one-line frames (8-byte header + 56); 8 B: the smallest message.
            (
                "56 B",
                Some(coroipc_bench::floor::ring_pingpong_of::<56>(5_000)),
            ),
            (
                "56 B",
                coroipc_bench::floor::coroipc_ring_pingpong_of::<56>(5_000, Locked),
            ),
            (
                "56 B",
                coroipc_bench::floor::coroipc_ring_pingpong_of::<56>(5_000, Asym),
            ),
            // 80 and 24 B: the frames of the ipc round trip at 64 and 8 B (a 16-byte
            // request or response header before the payload), on bare rings.
            (
                "80 B",
                coroipc_bench::floor::coroipc_ring_pingpong_of::<80>(5_000, Locked),
            ),
            (
                "80 B",
                coroipc_bench::floor::coroipc_ring_pingpong_handed_off::<80>(5_000),
            ),
            (
                "24 B",
                coroipc_bench::floor::coroipc_ring_pingpong_of::<24>(5_000, Locked),
            ),
            (
                "8 B",
                Some(coroipc_bench::floor::ring_pingpong_of::<8>(5_000)),
            ),
            (
                "8 B",
                coroipc_bench::floor::coroipc_ring_pingpong_of::<8>(5_000, Locked),
            ),
            (
                "8 B",
                coroipc_bench::floor::coroipc_ring_pingpong_of::<8>(5_000, Asym),
            ),
        ];
        for (size, r) in rows {
            if let Some(r) = r {
                let ns = r.median_ns.unwrap_or(f64::NAN);
                println!("{} {} {size}: {ns:.0} ns", r.imp, r.mode);
            }
        }
        return;
    }
    if args.first().map(String::as_str) == Some("__large") {
        // Profiling aid: 1 MiB messages, between two cross-core copy floors.
        let mode = args.get(1).map_or("default", String::as_str);
        let floor = || {
            coroipc_bench::floor::cross_core(1 << 20, 2_000)
                .mb_per_s
                .unwrap_or(f64::NAN)
        };
        let before = floor();
        let sound = coroipc_bench::ipc_bench::large_only(mode, false);
        let trusted = coroipc_bench::ipc_bench::large_only(mode, true);
        let after = floor();
        match (sound, trusted) {
            (Ok(s), Ok(t)) => println!(
                "1 MiB {mode}: {s:.0} MB/s (trusted slice {t:.0}); cross-core copy floor {before:.0} / {after:.0} MB/s"
            ),
            (Err(e), _) | (_, Err(e)) => eprintln!("{e}"),
        }
        return;
    }
    if args.first().map(String::as_str) == Some("__pipeline") {
        // Profiling aid: only coroipc's pipelined 64 B requests, in one mode.
        let mode = args.get(1).map_or("default", String::as_str);
        match coroipc_bench::ipc_bench::pipeline_only(mode, 500_000) {
            Ok(rate) => println!("pipeline 64 B {mode}: {:.2} M req/s", rate / 1e6),
            Err(e) => eprintln!("{e}"),
        }
        return;
    }
    if args.first().map(String::as_str) == Some("__phases") {
        // Each figure against the floor measured around it, per CPU placement.
        let samples = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(8);
        coroipc_bench::phases::run(samples);
        return;
    }
    if args.first().map(String::as_str) == Some("__ring") {
        // Profiling aid: one ring case, coroipc-ring and rtrb alternating, medians.
        let size = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(64);
        let batch = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(1);
        let reps = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(5);
        let fences = if args.get(4).map(String::as_str) == Some("asym") {
            coroipc_ring::Fences::Asymmetric
        } else {
            coroipc_ring::Fences::Locked
        };
        match coroipc_bench::ring_bench::pair(size, batch, reps, fences) {
            Some((c, r)) => println!(
                "ring {size} B x{batch}: coroipc {:.2} rtrb {:.2} M msg/s ({:.2}x)",
                c / 1e6,
                r / 1e6,
                c / r
            ),
            None => eprintln!("sizes: 8, 64, 1024"),
        }
        return;
    }
    if args.first().map(String::as_str) == Some("__ring1") {
        // Profiling aid: 64 B messages through coroipc-ring on one thread (`n` of
        // them, five times; fewer under valgrind).
        let n = args
            .get(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(20_000_000)
            .max(32);
        for _ in 0..5 {
            let ns = coroipc_bench::ring_bench::one_thread_coroipc::<64>(n);
            println!("one thread 64 B: {ns:.1} ns per message");
        }
        return;
    }
    if args.first().map(String::as_str) == Some("__linefit") {
        // Profiling aid: 56 B (one-line frames) against 64 B, both rings.
        let rounds = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(3);
        coroipc_bench::ring_bench::line_fit(rounds);
        return;
    }
    if args.first().map(String::as_str) == Some("__tokio") {
        // Profiling aid: the async client's 64 B round trip on both runtimes.
        let b = ipc_bench::Budget::new(false);
        let runtimes = [
            ipc_bench::Runtime::CurrentThread,
            ipc_bench::Runtime::MultiThread(2),
            ipc_bench::Runtime::MultiThread(4),
            ipc_bench::Runtime::MultiThreadServed(4),
        ];
        for rt in runtimes {
            match ipc_bench::tokio_rtt(b, rt, "default", std::time::Duration::ZERO) {
                Ok(r) => println!(
                    "{} {rt:?}: {:.0} ns median, p99 {:.0} ns, {:.0} req/s",
                    r.imp,
                    r.median_ns.unwrap_or(f64::NAN),
                    r.p99_ns.unwrap_or(f64::NAN),
                    r.msgs_per_s.unwrap_or(f64::NAN)
                ),
                Err(e) => eprintln!("{e}"),
            }
        }
        return;
    }
    if args.first().map(String::as_str) == Some("__stream") {
        let size = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(64);
        match ipc_bench::stream_only(size, 20_000_000) {
            Ok(rate) => println!("stream {size} B default: {:.2} M msg/s", rate / 1e6),
            Err(e) => eprintln!("{e}"),
        }
        return;
    }
    let quick = args.iter().any(|a| a == "--quick");
    let json = args.iter().any(|a| a == "--json");
    let scale = args.iter().any(|a| a == "--scale");
    let mode = args
        .iter()
        .find(|a| !a.starts_with("--"))
        .map_or("ipc", String::as_str);
    if !matches!(mode, "ipc" | "ring" | "all") {
        eprintln!("usage: coroipc-bench [ipc|ring|all] [--quick] [--json] [--scale]");
        std::process::exit(2);
    }
    let cpus = online_cpus();
    if !json {
        println!(
            "coroipc-bench: {mode}{}, {cpus} CPUs\n",
            if quick { " (quick)" } else { "" }
        );
    }
    if mode == "ipc" || mode == "all" {
        match ipc_bench::run(quick) {
            Ok(results) if json => results.iter().for_each(|r| println!("{}", r.json())),
            Ok(results) => println!("{}", ipc_bench::table(&results)),
            Err(e) => {
                eprintln!("ipc benchmark failed: {e}");
                std::process::exit(1);
            }
        }
    }
    if scale && !quick {
        match scale::run(20_000) {
            Ok(rows) if json => rows.iter().for_each(|r| println!("{}", r.json())),
            Ok(rows) => println!("{}", scale::table(&rows)),
            Err(e) => {
                eprintln!("scale benchmark failed: {e}");
                std::process::exit(1);
            }
        }
    }
    if mode == "ring" || mode == "all" {
        let results = ring_bench::run(quick);
        if json {
            results.iter().for_each(|r| println!("{}", r.json()));
        } else {
            println!("{}", ring_bench::table(&results));
        }
    }
}
