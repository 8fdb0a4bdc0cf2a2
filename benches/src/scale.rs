//! `--scale`: what idle connections cost. The active client's 64-byte round trip
//! (default configuration) with 0, 100 and 1,000 idle connections open, and the
//! descriptors and resident memory each connection adds on each side.

use std::time::{Duration, Instant};

use coroipc::{Client, ConnectOptions};

use crate::ipc_bench::{io_err, rtt_result, IpcResult, ServerChild};
use crate::pin_to;

/// Descriptors open in process `pid`.
fn fds(pid: u32) -> std::io::Result<usize> {
    Ok(std::fs::read_dir(format!("/proc/{pid}/fd"))?.count())
}

/// Resident memory of process `pid`, bytes.
fn rss(pid: u32) -> std::io::Result<usize> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse::<usize>().ok())
        .ok_or_else(|| io_err("no VmRSS"))?;
    Ok(kib * 1024)
}

/// One row of the scale table.
#[derive(Clone, Debug)]
pub struct ScaleRow {
    /// Idle connections open.
    pub idle: usize,
    /// The active client's round trip.
    pub rtt: IpcResult,
    /// Descriptors per idle connection, server and client side.
    pub fds_per_conn: (f64, f64),
    /// Resident bytes per idle connection, server and client side.
    pub rss_per_conn: (f64, f64),
}

impl ScaleRow {
    /// The JSON line.
    pub fn json(&self) -> String {
        format!(
            "{{\"bench\":\"scale\",\"idle\":{},\"median_ns\":{:.1},\"p99_ns\":{:.1},\"server_fds_per_conn\":{:.2},\"client_fds_per_conn\":{:.2},\"server_rss_per_conn\":{:.0},\"client_rss_per_conn\":{:.0}}}",
            self.idle,
            self.rtt.median_ns.unwrap_or(f64::NAN),
            self.rtt.p99_ns.unwrap_or(f64::NAN),
            self.fds_per_conn.0,
            self.fds_per_conn.1,
            self.rss_per_conn.0,
            self.rss_per_conn.1
        )
    }
}

fn measure_rtt(c: &mut Client, iters: usize) -> std::io::Result<IpcResult> {
    let payload = [1u8; 64];
    for _ in 0..iters / 10 {
        c.request_in_place(1, &payload).map_err(io_err)?;
    }
    let mut samples = Vec::with_capacity(iters);
    for _ in 0..iters {
        let t = Instant::now();
        drop(c.request_in_place(1, &payload).map_err(io_err)?);
        samples.push(t.elapsed().as_nanos() as f64);
    }
    Ok(rtt_result("coroipc", "default", 64, samples))
}

/// Runs the scale rows: 0, 100, 1,000 idle connections.
pub fn run(iters: usize) -> std::io::Result<Vec<ScaleRow>> {
    pin_to(0);
    // 1,000 connections need ~3,000 descriptors here too.
    let _ = coroipc::raw::raise_nofile(8192);
    let server = ServerChild::start("coroipc", crate::ipc_bench::ServerWait::Default)?;
    let spid = server.child.id();
    let me = std::process::id();
    let mut active =
        Client::connect(&server.socket(), 1, &ConnectOptions::default()).map_err(io_err)?;
    // Let the server finish the handshake before the baseline.
    active.request(1, b"warm").map_err(io_err)?;
    let base = (fds(spid)?, fds(me)?, rss(spid)?, rss(me)?);
    let mut idle = Vec::new();
    let mut rows = Vec::new();
    for target in [0usize, 100, 1000] {
        while idle.len() < target {
            let mut c =
                Client::connect(&server.socket(), 1, &ConnectOptions::default()).map_err(io_err)?;
            // A real client does a request at least once: touch its rings.
            c.request(1, b"hello").map_err(io_err)?;
            idle.push(c);
        }
        std::thread::sleep(Duration::from_millis(50));
        let per = |now: usize, then: usize| {
            if target == 0 {
                0.0
            } else {
                (now as f64 - then as f64) / target as f64
            }
        };
        let fds_per_conn = (per(fds(spid)?, base.0), per(fds(me)?, base.1));
        let rss_per_conn = (per(rss(spid)?, base.2), per(rss(me)?, base.3));
        rows.push(ScaleRow {
            idle: target,
            rtt: measure_rtt(&mut active, iters)?,
            fds_per_conn,
            rss_per_conn,
        });
    }
    Ok(rows)
}

/// The table.
pub fn table(rows: &[ScaleRow]) -> String {
    let mut s = String::from(
        "Scale (default configuration): the active client's 64 B round trip with idle connections open\n",
    );
    s.push_str(
        "  idle   rtt median / p99 (ns)   fds/conn server  client   RSS/conn server  client\n",
    );
    for r in rows {
        s.push_str(&format!(
            "  {:>5}  {:>9.0} / {:<11.0}  {:>15.2}  {:>6.2}  {:>11.1} KiB  {:>6.1} KiB\n",
            r.idle,
            r.rtt.median_ns.unwrap_or(f64::NAN),
            r.rtt.p99_ns.unwrap_or(f64::NAN),
            r.fds_per_conn.0,
            r.fds_per_conn.1,
            r.rss_per_conn.0 / 1024.0,
            r.rss_per_conn.1 / 1024.0,
        ));
    }
    s
}
