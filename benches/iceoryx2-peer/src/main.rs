//! iceoryx2 0.10 as the peer row of `coroipc-bench` (`"impl":"iceoryx2"`).
//!
//! `coroipc-iceoryx2-peer run [--quick]` starts a second process of itself
//! (`server <prefix> <parent pid>`), pins itself to CPU 0 and the server to CPU 1 (when at
//! least two CPUs are online) and prints one JSON line per figure on stdout, in the format
//! of coroipc-bench's `--json`. Both processes busy-poll (iceoryx2's polling mode: no
//! events, no waitset), so every row has `"mode":"spin"` and compares with coroipc's
//! `spin-both` rows.
//!
//! * `op` `rtt`, sizes 64, 1024, 65536: iceoryx2 **request-response** (`[u8]` request,
//!   `[u8]` response, a `u64` request user header carrying the command). The client
//!   stamps its buffer (the round-trip number in the first 8 bytes), loans a request and
//!   copies the buffer into it; the server copies the request payload into a loaned
//!   response (one copy each way, as coroipc's echo does); the client checks the stamp and
//!   the last byte. Warm-up of N/10, then N timed round trips (N = 20,000 for 64 and 1024
//!   bytes, 2,000 for 65536 with `--quick`; ten times that otherwise); median and p99
//!   by nearest rank, `msgs_per_s` = 1e9 / median as in coroipc's rows.
//! * `op` `stream`, sizes 64 and 1024: **publish-subscribe** from the server to the client,
//!   as coroipc's dispatch stream. The client asks for N messages (a request, the command
//!   `STREAM`), the server loans, copies a 0x5a-filled buffer in and sends, N times; the
//!   client receives them and reads each one's last byte. Time from sending the command to
//!   the last message received; N = 300,000 (`--quick`) or 3,000,000. No message is
//!   dropped: the service has safe overflow off, the publisher's backpressure strategy is
//!   `RetryUntilDelivered` (it spins while the subscriber's buffer of [`STREAM_BUFFER`]
//!   samples is full), and the client counts exactly N received messages.
//!
//! The server exits on the `QUIT` command, when its parent dies (`PR_SET_PDEATHSIG`
//! SIGKILL, and a `getppid` check while idle) or after [`SERVER_IDLE`] without a request.
//! Services are named after the client's pid and removed when both processes drop them;
//! a killed process's leftovers are removed by iceoryx2's dead-node cleanup, which runs
//! on every node creation and destruction. Any iceoryx2 error: a one-line reason on
//! stderr, exit code 1.
//!
//! Build (standalone, not a member of the coroipc workspace; iceoryx2 0.10 needs Rust
//! 1.89): `cargo build --release --locked --manifest-path benches/iceoryx2-peer/Cargo.toml`.
//! `IOX2_LOG_LEVEL` (e.g. `warn`) shows iceoryx2's own log on stderr; the default is `error`.

mod client;
mod server;

use std::fmt::Debug;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use iceoryx2::prelude::*;

/// Request commands (the request's user header).
pub(crate) const CMD_ECHO: u64 = 0;
pub(crate) const CMD_STREAM: u64 = 1;
pub(crate) const CMD_QUIT: u64 = 2;

/// Largest round-trip payload (the request and response slice capacity).
pub(crate) const MAX_RTT: usize = 65536;
/// Largest stream message.
pub(crate) const MAX_STREAM: usize = 1024;
/// Subscriber buffer of the stream service, in samples.
pub(crate) const STREAM_BUFFER: usize = 1024;
/// The server exits after this long without a request.
pub(crate) const SERVER_IDLE: Duration = Duration::from_secs(60);
/// The client gives up on a response or a stream after this long.
pub(crate) const CLIENT_WAIT: Duration = Duration::from_secs(10);

/// A failure: the one-line reason printed on stderr.
pub(crate) type Res<T> = Result<T, String>;

/// Maps any (iceoryx2) error to a one-line reason.
pub(crate) trait Ctx<T> {
    fn ctx(self, what: &str) -> Res<T>;
}

impl<T, E: Debug> Ctx<T> for Result<T, E> {
    fn ctx(self, what: &str) -> Res<T> {
        self.map_err(|e| format!("{what}: {e:?}"))
    }
}

/// The node of this process; iceoryx2's signal handlers are off so that SIGINT and
/// SIGTERM end the busy loops at once (the dead-node cleanup removes what is left).
pub(crate) fn node() -> Res<Node<ipc::Service>> {
    NodeBuilder::new()
        .signal_handling_mode(SignalHandlingMode::Disabled)
        .create::<ipc::Service>()
        .ctx("create node")
}

/// The service `<prefix>/<what>`.
pub(crate) fn service_name(prefix: &str, what: &str) -> Res<ServiceName> {
    ServiceName::new(&format!("{prefix}/{what}")).ctx("service name")
}

/// Pins the calling thread to `cpu` when at least two CPUs are online.
pub(crate) fn pin_to(cpu: usize) {
    // SAFETY: sysconf has no preconditions.
    let online = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    if online < 2 {
        return;
    }
    // SAFETY: cpu_set_t is plain data (all-zero is the empty set), CPU_SET writes inside
    // it (cpu < online <= CPU_SETSIZE), and sched_setaffinity reads the set we pass.
    let rc = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set)
    };
    if rc != 0 {
        eprintln!("coroipc-iceoryx2-peer: cannot pin to CPU {cpu} (running unpinned)");
    }
}

/// Watches a busy-poll loop without reading the clock on every poll: every 65,536 empty
/// polls, `check` runs and the idle time is compared with the limit.
pub(crate) struct Idle {
    polls: u32,
    since: Option<Instant>,
}

impl Idle {
    pub(crate) fn new() -> Self {
        Idle {
            polls: 0,
            since: None,
        }
    }

    /// One empty poll.
    pub(crate) fn tick(
        &mut self,
        limit: Duration,
        what: &str,
        check: impl FnOnce() -> Res<()>,
    ) -> Res<()> {
        self.polls = self.polls.wrapping_add(1);
        if self.polls & 0xffff != 0 {
            return Ok(());
        }
        check()?;
        let since = *self.since.get_or_insert_with(Instant::now);
        if since.elapsed() > limit {
            return Err(format!("{what}: nothing within {limit:?}"));
        }
        Ok(())
    }
}

/// The JSON line of a round-trip figure (`msgs_per_s` = 1e9 / median, as coroipc's rows).
pub(crate) fn rtt_json(size: usize, median_ns: f64, p99_ns: f64) -> String {
    json(
        "rtt",
        size,
        Some(median_ns),
        Some(p99_ns),
        1e9 / median_ns,
        None,
    )
}

/// The JSON line of a stream figure.
pub(crate) fn stream_json(size: usize, msgs_per_s: f64) -> String {
    let mb_per_s = msgs_per_s * size as f64 / 1e6;
    json("stream", size, None, None, msgs_per_s, Some(mb_per_s))
}

/// One JSON line in coroipc-bench's format.
fn json(
    op: &str,
    size: usize,
    median_ns: Option<f64>,
    p99_ns: Option<f64>,
    msgs_per_s: f64,
    mb_per_s: Option<f64>,
) -> String {
    let f = |v: Option<f64>| v.map_or("null".to_string(), |v| format!("{v:.1}"));
    format!(
        "{{\"bench\":\"ipc\",\"op\":\"{op}\",\"impl\":\"iceoryx2\",\"mode\":\"spin\",\"size\":{size},\"median_ns\":{},\"p99_ns\":{},\"msgs_per_s\":{msgs_per_s:.1},\"mb_per_s\":{}}}",
        f(median_ns),
        f(p99_ns),
        f(mb_per_s)
    )
}

const USAGE: &str = "usage: coroipc-iceoryx2-peer run [--quick]";

fn main() -> ExitCode {
    // Warnings ("no config file, defaults used") would be noise on every run.
    set_log_level_from_env_or(LogLevel::Error);
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["run"] => client::run(false),
        ["run", "--quick"] => client::run(true),
        ["server", prefix, parent] => server::run(prefix, parent),
        _ => Err(USAGE.to_string()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(msg) => {
            eprintln!("coroipc-iceoryx2-peer: {msg}");
            ExitCode::FAILURE
        }
    }
}
