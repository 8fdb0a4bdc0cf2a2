//! The side-by-side IPC benchmark: coroipc in three configurations against a
//! Unix-socket baseline written here (length-prefixed `SOCK_STREAM`), with the server
//! in a child process (this binary re-executed) and the client in this one, each pinned
//! to its own CPU when there are two.
//!
//! The configurations ([`MODES`]) are named for what they set on each side:
//! * `default`: both sides as shipped: the client's adaptive wait spins up to 50 µs
//!   while recent waits ended within their spin and sleeps at once otherwise
//!   (`WaitMode::default()`), the server does not spin (`Limits::spin` 0);
//! * `spin-both`: the client spins up to 50 µs on every wait
//!   (`WaitMode::SpinThenBlock`), and the server polls an idle request ring for 50 µs
//!   before sleeping (`Limits::spin` = 50 µs);
//! * `block`: the client sleeps at once (`WaitMode::Block`), the server does not spin.
//!
//! Operations: request/response round trip (median, p99), dispatch streaming
//! (messages/s, MB/s; sent with `dispatch_send_batch` in batches of up to 64 messages
//! and 64 KiB, received with `dispatch_recv_batch` up to 256 at a time), pipelined requests (requests/s), connect+disconnect (per second),
//! 1 MiB messages (MB/s) against a single-thread memcpy measured in the same run.

use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use coroipc::{
    Client, ConnectOptions, Connection, HandlerError, Limits, Request, Responder, ServerBuilder,
    Service, SocketName, WaitMode,
};

use crate::pin_to;
use crate::stats::{median, percentile};

/// One measured figure (one JSON line).
#[derive(Clone, Debug)]
pub struct IpcResult {
    /// rtt | stream | pipeline | connect | large
    pub op: &'static str,
    /// coroipc | uds | memcpy
    pub imp: &'static str,
    /// default | spin-both | block (see the module doc); `block` for the baselines
    pub mode: &'static str,
    /// Message size in bytes.
    pub size: usize,
    /// Median latency (rtt only).
    pub median_ns: Option<f64>,
    /// 99th percentile latency (rtt only).
    pub p99_ns: Option<f64>,
    /// Messages (or operations) per second.
    pub msgs_per_s: Option<f64>,
    /// Payload megabytes (10^6) per second.
    pub mb_per_s: Option<f64>,
}

impl IpcResult {
    /// The JSON line.
    pub fn json(&self) -> String {
        let f = |v: Option<f64>| v.map_or("null".to_string(), |v| format!("{v:.1}"));
        format!(
            "{{\"bench\":\"ipc\",\"op\":\"{}\",\"impl\":\"{}\",\"mode\":\"{}\",\"size\":{},\"median_ns\":{},\"p99_ns\":{},\"msgs_per_s\":{},\"mb_per_s\":{}}}",
            self.op,
            self.imp,
            self.mode,
            self.size,
            f(self.median_ns),
            f(self.p99_ns),
            f(self.msgs_per_s),
            f(self.mb_per_s)
        )
    }
}

const CMD_ECHO: u16 = 1;
const CMD_STREAM: u16 = 2;
/// Answered 1 ms later, from another thread (a slow server, for the idle-client CPU).
const CMD_SLOW: u16 = 3;

// ---------------------------------------------------------------- server side

struct BenchService;

impl Service for BenchService {
    type Private = ();

    fn on_connect(&mut self, _conn: &Connection) -> Result<(), i32> {
        Ok(())
    }

    fn in_place(&self, command: u16, len: usize) -> bool {
        command == CMD_ECHO && len >= 4096
    }

    fn handle(
        &mut self,
        _conn: &mut (),
        req: Request<'_>,
        resp: &mut Responder<'_>,
    ) -> Result<(), HandlerError> {
        match req.command {
            CMD_SLOW => {
                let deferred = resp.defer().map_err(|_| HandlerError::UnknownCommand)?;
                std::thread::spawn(move || {
                    std::thread::sleep(Duration::from_millis(1));
                    let _ = deferred.respond(0, b"");
                });
            }
            // Taken in place (`in_place`): copied from the request ring straight
            // into the response ring.
            CMD_ECHO => match &req.in_ring {
                Some(payload) => {
                    let _ = resp.respond_from(0, payload);
                }
                None => {
                    let _ = resp.respond(0, req.payload);
                }
            },
            CMD_STREAM => {
                // count u64, size u64: stream from another thread (as a daemon would).
                let word = |i: usize| {
                    req.payload
                        .get(i * 8..i * 8 + 8)
                        .and_then(|b| b.try_into().ok())
                        .map_or(0, u64::from_le_bytes)
                };
                let (count, size) = (word(0), word(1) as usize);
                let handle = resp.connection();
                let deferred = resp.defer().map_err(|_| HandlerError::UnknownCommand)?;
                std::thread::spawn(move || {
                    // Batches of up to 64 messages and 64 KiB: one publication and at
                    // most one doorbell each (the client sees a batch only once it is
                    // all written, so large messages go one by one).
                    let msg = vec![0x5au8; size];
                    let per_batch = ((64 << 10) / size.max(1)).clamp(1, 64) as u64;
                    let batch: Vec<&[u8]> = vec![&msg[..]; per_batch as usize];
                    let mut sent = 0u64;
                    while sent < count {
                        let want = (count - sent).min(per_batch) as usize;
                        match handle.dispatch_send_batch(&batch[..want]) {
                            Ok(n) => {
                                sent += n as u64;
                                if n < want {
                                    std::thread::yield_now();
                                }
                            }
                            Err(coroipc::SendError::TryAgain) => std::thread::yield_now(),
                            Err(_) => return,
                        }
                    }
                    let _ = deferred.respond(0, b"");
                });
            }
            _ => return Err(HandlerError::UnknownCommand),
        }
        Ok(())
    }
}

/// Child entry: `__server coroipc|uds NAME WAIT` (WAIT: `default`, `sleep`, or a
/// fixed spin in microseconds; see [`ServerWait`]).
pub fn server_main(args: &[String]) {
    pin_to(1);
    let (kind, name, wait) = match args {
        [k, n, w, ..] => (k.as_str(), n.clone(), w.as_str()),
        _ => return,
    };
    match kind {
        "coroipc" => {
            let limits = Limits {
                max_ring_size: 8 << 20,
                // Streaming threads retry on "try again": measure the ring, not a queue.
                max_queued_dispatch_bytes: 0,
                max_connections: 4096,
                ..ServerWait::limits(wait)
            };
            let server = ServerBuilder::new(SocketName::abstract_name(name))
                .limits(limits)
                .service(1, BenchService)
                .build();
            let Ok(mut server) = server else {
                eprintln!("bench server failed to start");
                return;
            };
            println!("READY");
            let _ = std::io::stdout().flush();
            let _ = server.run();
        }
        "uds" => {
            let Ok(listener) = coroipc::raw::listen(&SocketName::abstract_name(name), 128) else {
                return;
            };
            let _ = listener.set_nonblocking(false);
            println!("READY");
            let _ = std::io::stdout().flush();
            uds_server(&listener);
        }
        _ => {}
    }
}

fn uds_server(listener: &UnixListener) {
    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        std::thread::spawn(move || {
            let _ = uds_serve_one(stream);
        });
    }
}

/// Length-prefixed frames: `u32 len | u16 cmd | payload`.
fn uds_serve_one(stream: UnixStream) -> std::io::Result<()> {
    let mut reader = BufReader::with_capacity(1 << 16, stream.try_clone()?);
    let mut writer = BufWriter::with_capacity(1 << 16, stream);
    let mut buf = Vec::new();
    loop {
        let mut head = [0u8; 6];
        if reader.read_exact(&mut head).is_err() {
            return Ok(());
        }
        let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as usize;
        let cmd = u16::from_le_bytes([head[4], head[5]]);
        buf.resize(len, 0);
        reader.read_exact(&mut buf)?;
        match cmd {
            CMD_ECHO => {
                write_frame(&mut writer, CMD_ECHO, &buf)?;
                // Flush when no further request is already buffered (pipelining).
                if reader.buffer().is_empty() {
                    writer.flush()?;
                }
            }
            CMD_STREAM => {
                let count = u64::from_le_bytes(buf[..8].try_into().unwrap_or([0; 8]));
                let size = u64::from_le_bytes(buf[8..16].try_into().unwrap_or([0; 8])) as usize;
                // One send per message, as a socket-based IPC sends each event.
                let msg = vec![0x5au8; size];
                for _ in 0..count {
                    write_frame(&mut writer, CMD_STREAM, &msg)?;
                    writer.flush()?;
                }
                write_frame(&mut writer, CMD_ECHO, b"")?;
                writer.flush()?;
            }
            _ => return Ok(()),
        }
    }
}

fn write_frame(w: &mut impl Write, cmd: u16, payload: &[u8]) -> std::io::Result<()> {
    w.write_all(&(payload.len() as u32).to_le_bytes())?;
    w.write_all(&cmd.to_le_bytes())?;
    w.write_all(payload)
}

fn read_frame(r: &mut impl Read, buf: &mut Vec<u8>) -> std::io::Result<u16> {
    let mut head = [0u8; 6];
    r.read_exact(&mut head)?;
    let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as usize;
    buf.resize(len, 0);
    r.read_exact(buf)?;
    Ok(u16::from_le_bytes([head[4], head[5]]))
}

// ---------------------------------------------------------------- client side

/// How the bench's server waits for a connection's next request.
#[derive(Clone, Copy, Debug)]
pub enum ServerWait {
    /// As shipped (`Limits::default()`: the adaptive poll).
    Default,
    /// Polls this many microseconds on every wake-up (`Limits::spin`).
    Spin(u64),
    /// Never polls (`adaptive_spin` 0): sleeps at once.
    Sleep,
}

impl ServerWait {
    fn arg(self) -> String {
        match self {
            ServerWait::Default => "default".to_string(),
            ServerWait::Spin(us) => us.to_string(),
            ServerWait::Sleep => "sleep".to_string(),
        }
    }

    fn limits(arg: &str) -> Limits {
        match arg {
            "default" => Limits::default(),
            "sleep" => Limits {
                adaptive_spin: Duration::ZERO,
                ..Limits::default()
            },
            us => Limits {
                spin: Duration::from_micros(us.parse().unwrap_or(0)),
                ..Limits::default()
            },
        }
    }
}

/// Profiling aid: a command the bench server runs under, split at whitespace (say
/// `valgrind --tool=callgrind --callgrind-out-file=/tmp/server.%p`, to count the
/// server's instructions per request). The server is then stopped with `SIGTERM`, so
/// that the wrapper can write what it measured.
const SERVER_WRAP: &str = "COROIPC_BENCH_SERVER_WRAP";

pub(crate) struct ServerChild {
    pub(crate) child: Child,
    name: String,
    /// Started under [`SERVER_WRAP`]: stopped with `SIGTERM`, not killed.
    wrapped: bool,
}

impl ServerChild {
    pub(crate) fn start(kind: &str, wait: ServerWait) -> std::io::Result<ServerChild> {
        let wait = wait.arg();
        let name = format!("coroipc-bench-{}-{kind}-{wait}", std::process::id());
        let exe = std::env::current_exe()?;
        let wrap = std::env::var(SERVER_WRAP).unwrap_or_default();
        let mut wrap = wrap.split_whitespace();
        let (mut command, wrapped) = match wrap.next() {
            Some(program) => {
                let mut c = Command::new(program);
                c.args(wrap).arg(&exe);
                (c, true)
            }
            None => (Command::new(&exe), false),
        };
        let mut child = command
            .args(["__server", kind, &name, &wait])
            .stdout(Stdio::piped())
            .spawn()?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| std::io::Error::other("no stdout"))?;
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line)?;
        if !line.contains("READY") {
            let _ = child.kill();
            return Err(std::io::Error::other("bench server did not start"));
        }
        Ok(ServerChild {
            child,
            name,
            wrapped,
        })
    }

    pub(crate) fn socket(&self) -> SocketName {
        SocketName::abstract_name(self.name.clone())
    }
}

impl Drop for ServerChild {
    fn drop(&mut self) {
        let pid = i32::try_from(self.child.id()).map(nix::unistd::Pid::from_raw);
        if let (Ok(pid), true) = (pid, self.wrapped) {
            // The wrapper gets a minute to write its profile and exit; one that
            // ignores the signal is killed after it.
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(60);
            while Instant::now() < deadline {
                if !matches!(self.child.try_wait(), Ok(None)) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Run lengths.
#[derive(Clone, Copy)]
pub struct Budget {
    rtt_iters: usize,
    stream_msgs: u64,
    pipeline_reqs: usize,
    connect_time: Duration,
    large_msgs: u64,
    reps: usize,
}

impl Budget {
    /// Quick (< 30 s in all) or full.
    pub fn new(quick: bool) -> Self {
        if quick {
            Budget {
                rtt_iters: 20_000,
                stream_msgs: 300_000,
                pipeline_reqs: 50_000,
                connect_time: Duration::from_millis(300),
                large_msgs: 300,
                reps: 1,
            }
        } else {
            Budget {
                rtt_iters: 200_000,
                stream_msgs: 3_000_000,
                pipeline_reqs: 500_000,
                connect_time: Duration::from_secs(2),
                large_msgs: 3000,
                reps: 3,
            }
        }
    }
}

pub(crate) fn rtt_result(
    imp: &'static str,
    mode: &'static str,
    size: usize,
    mut samples: Vec<f64>,
) -> IpcResult {
    samples.sort_by(f64::total_cmp);
    let med = median(&samples);
    IpcResult {
        op: "rtt",
        imp,
        mode,
        size,
        median_ns: Some(med),
        p99_ns: Some(percentile(&samples, 0.99)),
        msgs_per_s: Some(1e9 / med),
        mb_per_s: None,
    }
}

fn rate(
    op: &'static str,
    imp: &'static str,
    mode: &'static str,
    size: usize,
    count: f64,
    secs: f64,
) -> IpcResult {
    IpcResult {
        op,
        imp,
        mode,
        size,
        median_ns: None,
        p99_ns: None,
        msgs_per_s: Some(count / secs),
        mb_per_s: Some(count * size as f64 / secs / 1e6),
    }
}

/// Median by messages/s of several repetitions.
fn best_of(
    reps: usize,
    mut f: impl FnMut() -> std::io::Result<IpcResult>,
) -> std::io::Result<IpcResult> {
    let mut runs = Vec::new();
    for _ in 0..reps.max(1) {
        runs.push(f()?);
    }
    runs.sort_by(|a, b| {
        a.msgs_per_s
            .unwrap_or(0.0)
            .total_cmp(&b.msgs_per_s.unwrap_or(0.0))
    });
    Ok(runs.swap_remove(runs.len() / 2))
}

pub(crate) fn io_err(e: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::other(e.to_string())
}

fn coroipc_client(server: &ServerChild, mode: WaitMode) -> std::io::Result<Client> {
    let opts = ConnectOptions {
        request_ring: 1 << 20,
        response_ring: 1 << 20,
        dispatch_ring: 4 << 20,
        wait: mode,
        ..ConnectOptions::default()
    };
    Client::connect(&server.socket(), 1, &opts).map_err(io_err)
}

/// The configurations measured: name, client wait mode, server spin in µs.
pub const MODES: [(&str, WaitMode, ServerWait); 3] = [
    (
        "default",
        WaitMode::Adaptive {
            max_spin: Duration::from_micros(50),
        },
        ServerWait::Default,
    ),
    (
        "spin-both",
        WaitMode::SpinThenBlock {
            spin: Duration::from_micros(50),
        },
        ServerWait::Spin(50),
    ),
    ("block", WaitMode::Block, ServerWait::Sleep),
];

fn coroipc_suite(
    (mode_name, mode, spin): (&'static str, WaitMode, ServerWait),
    b: Budget,
    out: &mut Vec<IpcResult>,
) -> std::io::Result<()> {
    let server = ServerChild::start("coroipc", spin)?;
    let mut c = coroipc_client(&server, mode)?;
    for size in [64usize, 1024, 65536] {
        let payload = vec![1u8; size];
        let iters = if size > 4096 {
            b.rtt_iters / 10
        } else {
            b.rtt_iters
        };
        for _ in 0..iters / 10 {
            c.request_in_place(CMD_ECHO, &payload).map_err(io_err)?;
        }
        let mut samples = Vec::with_capacity(iters);
        for _ in 0..iters {
            let t = Instant::now();
            let r = c.request_in_place(CMD_ECHO, &payload).map_err(io_err)?;
            let mut first = [0u8; 1];
            std::hint::black_box(r.read_into(&mut first));
            drop(r);
            samples.push(t.elapsed().as_nanos() as f64);
        }
        out.push(rtt_result("coroipc", mode_name, size, samples));
    }
    for size in [64usize, 1024] {
        out.push(best_of(b.reps, || {
            let n = b.stream_msgs;
            let t = Instant::now();
            let id = c
                .send_request(
                    CMD_STREAM,
                    &[n.to_le_bytes(), (size as u64).to_le_bytes()].concat(),
                )
                .map_err(io_err)?;
            let mut sum = 0u64;
            let mut got = 0u64;
            while got < n {
                // Up to 256 at once, released together.
                got += c
                    .dispatch_recv_batch(256, None, |m| {
                        let mut last = [0u8; 1];
                        m.read_at(m.len() - 1, &mut last);
                        sum = sum.wrapping_add(u64::from(last[0]));
                    })
                    .map_err(io_err)? as u64;
            }
            std::hint::black_box(sum);
            let secs = t.elapsed().as_secs_f64();
            c.wait_response(id, None).map_err(io_err)?;
            Ok(rate("stream", "coroipc", mode_name, size, n as f64, secs))
        })?);
    }
    // Pipelined: keep 32 requests in flight.
    {
        let n = b.pipeline_reqs;
        let t = Instant::now();
        pipelined(&mut c, n)?;
        out.push(rate(
            "pipeline",
            "coroipc",
            mode_name,
            64,
            n as f64,
            t.elapsed().as_secs_f64(),
        ));
    }
    // Large: 1 MiB dispatch messages, copied out by the client (as memcpy would): with
    // the sound copy (8-byte atomic loads), and in `default` also through the unsafe
    // trusted slice (a plain memcpy), to show what the sound copy costs.
    out.push(large(&mut c, b, mode_name, false)?);
    if mode_name == "default" {
        out.push(large(&mut c, b, "default-trusted", true)?);
    }
    drop(c);
    // Connect + disconnect.
    if mode_name == "default" {
        let t = Instant::now();
        let mut n = 0u64;
        let opts = ConnectOptions {
            request_ring: 4096,
            response_ring: 4096,
            dispatch_ring: 4096,
            ..Default::default()
        };
        while t.elapsed() < b.connect_time {
            drop(Client::connect(&server.socket(), 1, &opts).map_err(io_err)?);
            n += 1;
        }
        out.push(rate(
            "connect",
            "coroipc",
            mode_name,
            0,
            n as f64,
            t.elapsed().as_secs_f64(),
        ));
    }
    Ok(())
}

fn uds_suite(b: Budget, out: &mut Vec<IpcResult>) -> std::io::Result<()> {
    let server = ServerChild::start("uds", ServerWait::Default)?;
    let connect =
        || -> std::io::Result<UnixStream> { coroipc::raw::connect(&server.socket(), None) };
    let stream = connect()?;
    let mut reader = BufReader::with_capacity(1 << 16, stream.try_clone()?);
    let mut writer = BufWriter::with_capacity(1 << 16, stream);
    let mut buf = Vec::new();
    for size in [64usize, 1024, 65536] {
        let payload = vec![1u8; size];
        let iters = if size > 4096 {
            b.rtt_iters / 10
        } else {
            b.rtt_iters
        };
        let mut samples = Vec::with_capacity(iters);
        for i in 0..iters + iters / 10 {
            let t = Instant::now();
            write_frame(&mut writer, CMD_ECHO, &payload)?;
            writer.flush()?;
            read_frame(&mut reader, &mut buf)?;
            if i >= iters / 10 {
                samples.push(t.elapsed().as_nanos() as f64);
            }
        }
        out.push(rtt_result("uds", "block", size, samples));
    }
    for size in [64usize, 1024] {
        out.push(best_of(b.reps, || {
            let n = b.stream_msgs;
            let t = Instant::now();
            write_frame(
                &mut writer,
                CMD_STREAM,
                &[n.to_le_bytes(), (size as u64).to_le_bytes()].concat(),
            )?;
            writer.flush()?;
            let mut sum = 0u64;
            for _ in 0..n {
                read_frame(&mut reader, &mut buf)?;
                sum = sum.wrapping_add(u64::from(buf[buf.len() - 1]));
            }
            std::hint::black_box(sum);
            let secs = t.elapsed().as_secs_f64();
            read_frame(&mut reader, &mut buf)?;
            Ok(rate("stream", "uds", "block", size, n as f64, secs))
        })?);
    }
    {
        let payload = [2u8; 64];
        let n = b.pipeline_reqs;
        let t = Instant::now();
        let (mut sent, mut done) = (0, 0);
        while done < n {
            while sent < n && sent - done < 32 {
                write_frame(&mut writer, CMD_ECHO, &payload)?;
                sent += 1;
            }
            writer.flush()?;
            read_frame(&mut reader, &mut buf)?;
            done += 1;
        }
        out.push(rate(
            "pipeline",
            "uds",
            "block",
            64,
            n as f64,
            t.elapsed().as_secs_f64(),
        ));
    }
    {
        let size = 1usize << 20;
        let n = b.large_msgs;
        let mut copy = vec![0u8; size];
        let t = Instant::now();
        write_frame(
            &mut writer,
            CMD_STREAM,
            &[n.to_le_bytes(), (size as u64).to_le_bytes()].concat(),
        )?;
        writer.flush()?;
        for _ in 0..n {
            read_frame(&mut reader, &mut buf)?;
            copy.copy_from_slice(&buf);
        }
        let secs = t.elapsed().as_secs_f64();
        read_frame(&mut reader, &mut buf)?;
        out.push(rate("large", "uds", "block", size, n as f64, secs));
    }
    {
        let t = Instant::now();
        let mut n = 0u64;
        // Connect, one hello round trip (a socket session is usable only once the
        // server has answered, as a coroipc connection is after its handshake), close.
        while t.elapsed() < b.connect_time {
            let s = connect()?;
            let mut w = &s;
            write_frame(&mut w, CMD_ECHO, b"hello")?;
            let mut r = &s;
            read_frame(&mut r, &mut buf)?;
            n += 1;
        }
        out.push(rate(
            "connect",
            "uds",
            "block",
            0,
            n as f64,
            t.elapsed().as_secs_f64(),
        ));
    }
    Ok(())
}

/// 1 MiB dispatch messages copied out by the client: `read_into` (sound, atomic word
/// loads) or, with `trusted`, a `memcpy` from `as_slice_trusted`.
fn large(
    c: &mut Client,
    b: Budget,
    mode: &'static str,
    trusted: bool,
) -> std::io::Result<IpcResult> {
    let size = 1 << 20;
    let n = b.large_msgs;
    let mut buf = vec![0u8; size];
    let t = Instant::now();
    let id = c
        .send_request(
            CMD_STREAM,
            &[n.to_le_bytes(), (size as u64).to_le_bytes()].concat(),
        )
        .map_err(io_err)?;
    for _ in 0..n {
        let m = c
            .dispatch_recv(None)
            .map_err(io_err)?
            .ok_or_else(|| io_err("no message"))?;
        if trusted {
            // SAFETY: the bench's own server does not touch a message once sent.
            buf.copy_from_slice(unsafe { m.as_slice_trusted() });
        } else {
            m.read_into(&mut buf);
        }
    }
    let secs = t.elapsed().as_secs_f64();
    std::hint::black_box(&buf);
    c.wait_response(id, None).map_err(io_err)?;
    Ok(rate("large", "coroipc", mode, size, n as f64, secs))
}

/// Profiling aid: only coroipc's 1 MiB dispatch messages in `mode`, copied out with
/// the sound copy (`trusted` false) or through the trusted slice; returns MB/s.
pub fn large_only(mode: &str, trusted: bool) -> std::io::Result<f64> {
    let (_server, mut c) = aid_pair(mode)?;
    let r = large(&mut c, Budget::new(false), "aid", trusted)?;
    Ok(r.mb_per_s.unwrap_or(f64::NAN))
}

/// Profiling aid: only the coroipc round trip at `size` bytes in configuration `mode`
/// (one of [`MODES`]' names; `spin-both` if unknown), for `secs` seconds; returns the
/// mean round trip in ns.
pub fn rtt_only(size: usize, mode: &str, secs: f64) -> std::io::Result<f64> {
    let (_server, mut c) = aid_pair(mode)?;
    let payload = vec![1u8; size];
    let t = Instant::now();
    let mut n = 0u64;
    while t.elapsed().as_secs_f64() < secs {
        for _ in 0..1000 {
            let r = c.request_in_place(CMD_ECHO, &payload).map_err(io_err)?;
            let mut first = [0u8; 1];
            std::hint::black_box(r.read_into(&mut first));
        }
        n += 1000;
    }
    Ok(t.elapsed().as_nanos() as f64 / n as f64)
}

/// Profiling aid: only coroipc's pipelined 64 B requests (32 in flight) in `mode`,
/// `n` requests; returns requests per second.
pub fn pipeline_only(mode: &str, n: usize) -> std::io::Result<f64> {
    let (_server, mut c) = aid_pair(mode)?;
    let t = Instant::now();
    pipelined(&mut c, n)?;
    Ok(n as f64 / t.elapsed().as_secs_f64())
}

/// A profiling aid's server (configuration `mode`, one of [`MODES`]' names;
/// `spin-both` if unknown) and its client, this thread pinned to CPU 0.
fn aid_pair(mode: &str) -> std::io::Result<(ServerChild, Client)> {
    pin_to(0);
    let (_, wait, spin) = MODES
        .iter()
        .find(|m| m.0 == mode)
        .copied()
        .unwrap_or(MODES[1]);
    let server = ServerChild::start("coroipc", spin)?;
    let c = coroipc_client(&server, wait)?;
    Ok((server, c))
}

/// `n` echo requests of 64 B, keeping 32 in flight.
fn pipelined(c: &mut Client, n: usize) -> std::io::Result<()> {
    let payload = [2u8; 64];
    let (mut sent, mut done) = (0, 0);
    while done < n {
        while sent < n && sent - done < 32 {
            c.send_request(CMD_ECHO, &payload).map_err(io_err)?;
            sent += 1;
        }
        let (_, r) = c.receive_response(None).map_err(io_err)?;
        r.map_err(io_err)?;
        done += 1;
    }
    Ok(())
}

/// Profiling aid: only the coroipc dispatch stream of `size`-byte messages in
/// `default` mode, `n` messages; returns messages per second.
pub fn stream_only(size: usize, n: u64) -> std::io::Result<f64> {
    pin_to(0);
    let server = ServerChild::start("coroipc", ServerWait::Default)?;
    let mut c = coroipc_client(&server, MODES[0].1)?;
    let t = Instant::now();
    let id = c
        .send_request(
            CMD_STREAM,
            &[n.to_le_bytes(), (size as u64).to_le_bytes()].concat(),
        )
        .map_err(io_err)?;
    let mut got = 0;
    while got < n {
        got += c
            .dispatch_recv_batch(256, None, |m| {
                let mut last = [0u8; 1];
                m.read_at(m.len() - 1, &mut last);
                std::hint::black_box(last);
            })
            .map_err(io_err)? as u64;
    }
    let secs = t.elapsed().as_secs_f64();
    c.wait_response(id, None).map_err(io_err)?;
    Ok(n as f64 / secs)
}

/// Profiling aid: connect+disconnect loops, `runs` alternating pairs of `secs` each:
/// coroipc (as the bench measures it) and the Unix-socket baseline (connect, a hello
/// round trip, close). Returns `(coroipc, uds)` rates per second, one per run.
pub fn connect_only(runs: usize, secs: f64) -> std::io::Result<Vec<(f64, f64)>> {
    pin_to(0);
    let coroipc = ServerChild::start("coroipc", ServerWait::Default)?;
    let uds = ServerChild::start("uds", ServerWait::Default)?;
    let opts = ConnectOptions {
        request_ring: 4096,
        response_ring: 4096,
        dispatch_ring: 4096,
        ..Default::default()
    };
    let mut buf = Vec::new();
    let mut out = Vec::with_capacity(runs);
    for _ in 0..runs {
        let t = Instant::now();
        let mut n = 0u64;
        while t.elapsed().as_secs_f64() < secs {
            drop(Client::connect(&coroipc.socket(), 1, &opts).map_err(io_err)?);
            n += 1;
        }
        let ours = n as f64 / t.elapsed().as_secs_f64();
        let t = Instant::now();
        let mut n = 0u64;
        while t.elapsed().as_secs_f64() < secs {
            let s = coroipc::raw::connect(&uds.socket(), None)?;
            write_frame(&mut &s, CMD_ECHO, b"hello")?;
            read_frame(&mut &s, &mut buf)?;
            n += 1;
        }
        out.push((ours, n as f64 / t.elapsed().as_secs_f64()));
    }
    Ok(out)
}

/// CPU time the client thread spends per request when the server takes 1 ms to
/// answer (`op` `idle_cpu`, `median_ns` = CPU ns per request): the adaptive default
/// against a fixed 50 µs spin. Wall time per request is ~1 ms in both.
fn idle_cpu(b: Budget, out: &mut Vec<IpcResult>) -> std::io::Result<()> {
    let server = ServerChild::start("coroipc", ServerWait::Default)?;
    let modes = [
        ("default", WaitMode::default()),
        (
            "spin-50us",
            WaitMode::SpinThenBlock {
                spin: Duration::from_micros(50),
            },
        ),
    ];
    for (name, mode) in modes {
        let mut c = coroipc_client(&server, mode)?;
        let n = (b.rtt_iters / 100).max(100);
        let cpu = thread_cpu_ns();
        for _ in 0..n {
            c.request(CMD_SLOW, b"").map_err(io_err)?;
        }
        let per = (thread_cpu_ns() - cpu) / n as f64;
        out.push(cpu_row("idle_cpu", name, per));
    }
    Ok(())
}

/// CPU time the server process spends per request when a client sends one every
/// millisecond (`op` `server_cpu`, `median_ns` = server CPU ns per request): the
/// shipped adaptive poll against a fixed 50 µs spin on every wake-up and no poll.
fn server_cpu(b: Budget, out: &mut Vec<IpcResult>) -> std::io::Result<()> {
    let waits = [
        ("default", ServerWait::Default),
        ("spin-50us", ServerWait::Spin(50)),
        ("sleep", ServerWait::Sleep),
    ];
    for (name, wait) in waits {
        let server = ServerChild::start("coroipc", wait)?;
        let mut c = coroipc_client(&server, WaitMode::default())?;
        let n = (b.rtt_iters / 100).max(100);
        let pid = server.child.id();
        let cpu = process_cpu_ns(pid)?;
        for _ in 0..n {
            c.request(CMD_ECHO, b"tick").map_err(io_err)?;
            std::thread::sleep(Duration::from_millis(1));
        }
        let per = (process_cpu_ns(pid)? - cpu) / n as f64;
        out.push(cpu_row("server_cpu", name, per));
    }
    Ok(())
}

/// A CPU-per-request row (`median_ns` = CPU ns per request).
fn cpu_row(op: &'static str, mode: &'static str, per_request_ns: f64) -> IpcResult {
    IpcResult {
        op,
        imp: "coroipc",
        mode,
        size: 0,
        median_ns: Some(per_request_ns),
        p99_ns: None,
        msgs_per_s: None,
        mb_per_s: None,
    }
}

/// CPU time of process `pid` so far, in ns (`/proc/PID/schedstat`, first field).
fn process_cpu_ns(pid: u32) -> std::io::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/schedstat"))?;
    stat.split_whitespace()
        .next()
        .and_then(|v| v.parse::<f64>().ok())
        .ok_or_else(|| io_err("unreadable schedstat"))
}

/// CPU time of the calling thread, in ns.
fn thread_cpu_ns() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec for the call.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 * 1e9 + ts.tv_nsec as f64
}

/// Which tokio runtime a [`tokio_rtt`] row runs on.
#[derive(Clone, Copy, Debug)]
pub enum Runtime {
    /// `new_current_thread`: the caller's thread polls everything.
    CurrentThread,
    /// `new_multi_thread` with this many workers; the request loop is a spawned task,
    /// so any worker may poll it (and the reactor may run on another).
    MultiThread(usize),
    /// As `MultiThread`, with the server served on the same runtime
    /// (`coroipc::tokio::serve`) instead of in its own process.
    MultiThreadServed(usize),
}

impl Runtime {
    fn build(self) -> std::io::Result<tokio::runtime::Runtime> {
        match self {
            Runtime::CurrentThread => tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build(),
            Runtime::MultiThread(workers) | Runtime::MultiThreadServed(workers) => {
                tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(workers)
                    .enable_all()
                    .build()
            }
        }
    }
}

/// Round trip of 64 B through the tokio client (`coroipc::tokio::AsyncClient`), server
/// not spinning: what an async caller pays against the blocking client's rows (`impl`
/// `coroipc-tokio` on a current-thread runtime, `coroipc-tokio-mt` on a multi-thread
/// one; `mode` `default`: no spin; `spin-20us`: `set_spin(20 µs)`).
pub fn tokio_rtt(
    b: Budget,
    runtime: Runtime,
    mode: &'static str,
    spin: Duration,
) -> std::io::Result<IpcResult> {
    let server = ServerChild::start("coroipc", ServerWait::Default)?;
    let imp = match runtime {
        Runtime::CurrentThread => "coroipc-tokio",
        Runtime::MultiThread(_) => "coroipc-tokio-mt",
        Runtime::MultiThreadServed(_) => "coroipc-tokio-mt-served",
    };
    let rt = runtime.build()?;
    let mut wall = None;
    let samples = match runtime {
        Runtime::CurrentThread => {
            rt.block_on(tokio_rtt_loop(server.socket(), spin, b.rtt_iters))?
        }
        Runtime::MultiThread(_) | Runtime::MultiThreadServed(_) => {
            let mut socket = server.socket();
            let mut stop = None;
            if let Runtime::MultiThreadServed(_) = runtime {
                let name = format!("coroipc-bench-served-{}", std::process::id());
                socket = SocketName::abstract_name(name);
                let mut served = ServerBuilder::new(socket.clone())
                    .service(1, BenchService)
                    .build()
                    .map_err(io_err)?;
                stop = Some(served.stop_handle());
                rt.spawn(async move { coroipc::tokio::serve(&mut served).await });
            }
            // One sequential caller per connection, each its own task.
            let per_task = b.rtt_iters / TOKIO_MT_CONNECTIONS;
            let tasks: Vec<_> = (0..TOKIO_MT_CONNECTIONS)
                .map(|_| rt.spawn(tokio_rtt_loop(socket.clone(), spin, per_task)))
                .collect();
            let _stop = StopOnDrop(stop);
            let t0 = Instant::now();
            let all = rt.block_on(async {
                let mut all = Vec::with_capacity(b.rtt_iters);
                for t in tasks {
                    all.extend(t.await.map_err(io_err)??);
                }
                Ok::<_, std::io::Error>(all)
            })?;
            wall = Some(t0.elapsed());
            all
        }
    };
    let mut result = rtt_result(imp, mode, 64, samples);
    if let Some(wall) = wall {
        // Requests per second per connection, all running at once.
        let per_task = (b.rtt_iters / TOKIO_MT_CONNECTIONS) as f64;
        result.msgs_per_s = Some(per_task / wall.as_secs_f64());
    }
    Ok(result)
}

/// Stops an in-runtime server when the row ends, however it ends.
struct StopOnDrop(Option<coroipc::StopHandle>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        if let Some(s) = &self.0 {
            s.stop();
        }
    }
}

/// Connections (one task each) in a multi-thread [`tokio_rtt`] row.
const TOKIO_MT_CONNECTIONS: usize = 4;

/// One task's sequential round trips on its own connection: ns per request.
async fn tokio_rtt_loop(
    socket: SocketName,
    spin: Duration,
    iters: usize,
) -> std::io::Result<Vec<f64>> {
    let opts = ConnectOptions::default();
    let c = coroipc::tokio::AsyncClient::connect(&socket, 1, &opts)
        .await
        .map_err(io_err)?;
    c.set_spin(spin);
    let payload = [1u8; 64];
    for _ in 0..iters / 10 {
        c.request(CMD_ECHO, &payload).await.map_err(io_err)?;
    }
    let mut samples = Vec::with_capacity(iters);
    for _ in 0..iters {
        let t = Instant::now();
        let r = c.request(CMD_ECHO, &payload).await.map_err(io_err)?;
        std::hint::black_box(r.data.len());
        samples.push(t.elapsed().as_nanos() as f64);
    }
    Ok(samples)
}

/// Runs the whole comparison.
pub fn run(quick: bool) -> std::io::Result<Vec<IpcResult>> {
    let b = Budget::new(quick);
    let mut out = crate::floor::run(quick);
    out.extend(crate::peer::iceoryx2(quick));
    pin_to(0);
    for mode in MODES {
        coroipc_suite(mode, b, &mut out)?;
    }
    out.push(tokio_rtt(
        b,
        Runtime::CurrentThread,
        "default",
        Duration::ZERO,
    )?);
    out.push(tokio_rtt(
        b,
        Runtime::CurrentThread,
        "spin-20us",
        Duration::from_micros(20),
    )?);
    out.push(tokio_rtt(
        b,
        Runtime::MultiThread(4),
        "default",
        Duration::ZERO,
    )?);
    out.push(tokio_rtt(
        b,
        Runtime::MultiThreadServed(4),
        "default",
        Duration::ZERO,
    )?);
    idle_cpu(b, &mut out)?;
    server_cpu(b, &mut out)?;
    uds_suite(b, &mut out)?;
    Ok(out)
}

/// One row of the floors table: a figure, its floor, iceoryx2's, ours.
struct FloorRow<'a> {
    name: &'a str,
    /// The floor and what it is.
    floor: (Option<f64>, &'a str),
    iceoryx2: Option<f64>,
    /// Ours and the configuration it comes from.
    ours: (Option<f64>, &'a str),
}

/// The figures against the physical floors and iceoryx2, with ratios (latency: times
/// the reference, lower is better; throughput: fraction of it, higher is better).
fn floors_table(results: &[IpcResult]) -> String {
    let find = |op: &str, imp: &str, mode: &str, size: usize| {
        results.iter().find(|r| {
            r.op == op && r.imp == imp && (mode == "*" || r.mode == mode) && r.size == size
        })
    };
    let ns = |op: &str, imp: &str, mode: &str, size: usize| {
        find(op, imp, mode, size).and_then(|r| r.median_ns)
    };
    let best = |op: &str, size: usize| {
        results
            .iter()
            .filter(|r| r.op == op && r.imp == "coroipc" && r.size == size)
            .max_by(|a, b| {
                a.msgs_per_s
                    .unwrap_or(0.0)
                    .total_cmp(&b.msgs_per_s.unwrap_or(0.0))
            })
    };
    let line = ns("rtt", "floor", "spin", 64);
    let futex = ns("rtt", "floor", "block", 64);
    let copies = ns("copy", "floor", "*", 65536).map(|c| 2.0 * c);
    let memcpy = find("large", "floor", "-", 1 << 20).and_then(|r| r.mb_per_s);
    let spin = |size| ns("rtt", "coroipc", "spin-both", size);
    let latency = [
        FloorRow {
            name: "RTT 64 B spinning (ns)",
            floor: (line, "cache line"),
            iceoryx2: ns("rtt", "iceoryx2", "*", 64),
            ours: (spin(64), "spin-both"),
        },
        FloorRow {
            name: "RTT 64 B, two lines (ns)",
            floor: (ns("rtt", "floor", "lines", 64), "a line each way"),
            iceoryx2: None,
            ours: (ns("rtt", "coroipc", "default", 64), "default"),
        },
        FloorRow {
            name: "RTT 64 B, ring floor (ns)",
            floor: (ns("rtt", "floor", "ring", 64), "rtrb ping-pong"),
            iceoryx2: ns("rtt", "iceoryx2", "*", 64),
            ours: (spin(64), "spin-both"),
        },
        FloorRow {
            name: "RTT 64 B, ring only (ns)",
            floor: (ns("rtt", "floor", "ring", 64), "rtrb ping-pong"),
            iceoryx2: None,
            ours: (ns("rtt", "coroipc-ring", "spin", 64), "coroipc-ring"),
        },
        FloorRow {
            name: "RTT 64 B, ring only, asym (ns)",
            floor: (ns("rtt", "floor", "ring", 64), "rtrb ping-pong"),
            iceoryx2: None,
            ours: (
                ns("rtt", "coroipc-ring-asym", "spin", 64),
                "Fences::Asymmetric",
            ),
        },
        FloorRow {
            name: "RTT 64 B, ring only, hand_off (ns)",
            floor: (ns("rtt", "floor", "ring", 64), "rtrb ping-pong"),
            iceoryx2: None,
            ours: (
                ns("rtt", "coroipc-ring-handoff", "spin", 64),
                "Producer::hand_off",
            ),
        },
        FloorRow {
            name: "RTT 1 KiB spinning (ns)",
            floor: (line, "cache line"),
            iceoryx2: ns("rtt", "iceoryx2", "*", 1024),
            ours: (spin(1024), "spin-both"),
        },
        FloorRow {
            name: "RTT 64 KiB spinning (ns)",
            floor: (copies, "2 x memcpy"),
            iceoryx2: ns("rtt", "iceoryx2", "*", 65536),
            ours: (spin(65536), "spin-both"),
        },
        FloorRow {
            name: "RTT 64 B blocking (ns)",
            floor: (futex, "futex"),
            iceoryx2: None,
            ours: (ns("rtt", "coroipc", "block", 64), "block"),
        },
        FloorRow {
            name: "RTT 64 B default (ns)",
            floor: (futex, "futex"),
            iceoryx2: None,
            ours: (ns("rtt", "coroipc", "default", 64), "default"),
        },
    ];
    let stream64 = best("stream", 64);
    let stream1k = best("stream", 1024);
    let large = find("large", "coroipc", "default", 1 << 20);
    let throughput = [
        FloorRow {
            name: "stream 64 B (M msg/s)",
            floor: (None, ""),
            iceoryx2: find("stream", "iceoryx2", "*", 64)
                .and_then(|r| r.msgs_per_s)
                .map(|v| v / 1e6),
            ours: (
                stream64.and_then(|r| r.msgs_per_s).map(|v| v / 1e6),
                stream64.map_or("-", |r| r.mode),
            ),
        },
        FloorRow {
            name: "stream 1 KiB (MB/s)",
            floor: (memcpy, "memcpy"),
            iceoryx2: find("stream", "iceoryx2", "*", 1024).and_then(|r| r.mb_per_s),
            ours: (
                stream1k.and_then(|r| r.mb_per_s),
                stream1k.map_or("-", |r| r.mode),
            ),
        },
        FloorRow {
            name: "1 MiB messages (MB/s)",
            floor: (memcpy, "memcpy"),
            iceoryx2: None,
            ours: (large.and_then(|r| r.mb_per_s), "default"),
        },
    ];
    let mut s = String::from(
        "\nAgainst the physical floor and iceoryx2 (same run): latency as times the reference (lower is better), throughput as a fraction of it (higher is better)\n",
    );
    s.push_str("  figure                     floor                   iceoryx2      coroipc (config)         /floor  /iceoryx2\n");
    for row in latency.iter().chain(&throughput) {
        s.push_str(&floor_line(row));
    }
    s
}

/// One printed row of [`floors_table`].
fn floor_line(row: &FloorRow<'_>) -> String {
    let v = |v: Option<f64>| {
        v.map_or("-".to_string(), |v| {
            if v < 100.0 {
                format!("{v:.2}")
            } else {
                format!("{v:.0}")
            }
        })
    };
    let ratio = |b: Option<f64>| match (row.ours.0, b) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.2}", a / b),
        _ => "-".to_string(),
    };
    let floor = match row.floor.0 {
        Some(f) => format!("{} ({})", v(Some(f)), row.floor.1),
        None => "-".to_string(),
    };
    format!(
        "  {:<25}  {:<22}  {:<12}  {:<23}  {:>6}  {:>9}\n",
        row.name,
        floor,
        v(row.iceoryx2),
        format!("{} ({})", v(row.ours.0), row.ours.1),
        ratio(row.floor.0),
        ratio(row.iceoryx2),
    )
}

/// The human-readable table with ratio columns.
pub fn table(results: &[IpcResult]) -> String {
    let find = |op: &str, imp: &str, mode: &str, size: usize| {
        results.iter().find(|r| {
            r.op == op && r.imp == imp && (r.mode == mode || mode == "*") && r.size == size
        })
    };
    let mut s = String::new();
    s.push_str(
        "Configurations: default = as shipped: client and server poll adaptively (up to 50 us while replies / requests come quickly);\n",
    );
    s.push_str("  spin-both = client and server spin 50 us on every wait; block = client sleeps at once, server never polls.\n\n");
    s.push_str("Round trip (request/response), median / p99 in ns — lower is better; ratio = uds median / coroipc median\n");
    s.push_str("  size      default             spin-both           block               uds                 uds/default  uds/spin-both  uds/block\n");
    for size in [64usize, 1024, 65536] {
        let Some(u) = find("rtt", "uds", "block", size) else {
            continue;
        };
        let m = |r: &IpcResult| r.median_ns.unwrap_or(f64::NAN);
        let cell = |r: Option<&IpcResult>| {
            r.map_or("-".to_string(), |r| {
                format!("{:.0} / {:.0}", m(r), r.p99_ns.unwrap_or(f64::NAN))
            })
        };
        let ratio =
            |r: Option<&IpcResult>| r.map_or("-".to_string(), |r| format!("{:.2}x", m(u) / m(r)));
        let rows: Vec<Option<&IpcResult>> = MODES
            .iter()
            .map(|(mode, _, _)| find("rtt", "coroipc", mode, size))
            .collect();
        s.push_str(&format!(
            "  {size:>6}  {:<18}  {:<18}  {:<18}  {:<18}  {:>11}  {:>13}  {:>9}\n",
            cell(rows[0]),
            cell(rows[1]),
            cell(rows[2]),
            cell(Some(u)),
            ratio(rows[0]),
            ratio(rows[1]),
            ratio(rows[2]),
        ));
    }
    s.push_str("\nThroughput — higher is better; ratio = coroipc / uds\n");
    s.push_str("  op        size   default         spin-both       block           uds             default/uds  block/uds\n");
    let rows: [(&str, usize); 5] = [
        ("stream", 64),
        ("stream", 1024),
        ("pipeline", 64),
        ("large", 1 << 20),
        ("connect", 0),
    ];
    for (op, size) in rows {
        let Some(u) = find(op, "uds", "block", size) else {
            continue;
        };
        let fmt = |r: Option<&IpcResult>| {
            r.map_or("-".to_string(), |r| {
                if op == "large" {
                    format!("{:.0} MB/s", r.mb_per_s.unwrap_or(0.0))
                } else {
                    format!("{:.3} M/s", r.msgs_per_s.unwrap_or(0.0) / 1e6)
                }
            })
        };
        let v = |r: &IpcResult| r.msgs_per_s.unwrap_or(f64::NAN);
        let ratio =
            |r: Option<&IpcResult>| r.map_or("-".to_string(), |r| format!("{:.1}x", v(r) / v(u)));
        let (d, sb, bl) = (
            find(op, "coroipc", "default", size),
            find(op, "coroipc", "spin-both", size),
            find(op, "coroipc", "block", size),
        );
        s.push_str(&format!(
            "  {op:<8} {size:>7}  {:<14}  {:<14}  {:<14}  {:<14}  {:>11}  {:>9}\n",
            fmt(d),
            fmt(sb),
            fmt(bl),
            fmt(Some(u)),
            ratio(d),
            ratio(bl),
        ));
    }
    if let (Some(a), Some(sp), Some(d), Some(bl)) = (
        find("rtt", "coroipc-tokio", "default", 64),
        find("rtt", "coroipc-tokio", "spin-20us", 64),
        find("rtt", "coroipc", "default", 64),
        find("rtt", "coroipc", "block", 64),
    ) {
        let m = |r: &IpcResult| r.median_ns.unwrap_or(f64::NAN);
        s.push_str(&format!(
            "\n  Async client (tokio, current thread, server as shipped), 64 B round trip: {:.0} ns median = {:.2}x the blocking default ({:.0} ns), {:.2}x blocking block ({:.0} ns); with set_spin(20 us) {:.0} ns = {:.2}x the blocking default\n",
            m(a),
            m(a) / m(d),
            m(d),
            m(a) / m(bl),
            m(bl),
            m(sp),
            m(sp) / m(d),
        ));
    }
    if let (Some(ct), Some(mt), Some(sv)) = (
        find("rtt", "coroipc-tokio", "default", 64),
        find("rtt", "coroipc-tokio-mt", "default", 64),
        find("rtt", "coroipc-tokio-mt-served", "default", 64),
    ) {
        let m = |r: &IpcResult| r.median_ns.unwrap_or(f64::NAN);
        s.push_str(&format!(
            "  Multi-thread runtime (4 workers, 4 connections each one request at a time): {:.0} ns median = {:.2}x the current-thread figure, {:.0} req/s per connection; with the server served on the same runtime {:.0} ns = {:.2}x\n",
            m(mt),
            m(mt) / m(ct),
            mt.msgs_per_s.unwrap_or(f64::NAN),
            m(sv),
            m(sv) / m(ct),
        ));
    }
    if let (Some(a), Some(f)) = (
        find("idle_cpu", "coroipc", "default", 0),
        find("idle_cpu", "coroipc", "spin-50us", 0),
    ) {
        s.push_str(&format!(
            "\n  Client CPU per request when the server answers after 1 ms: default (adaptive) {:.1} us, fixed 50 us spin {:.1} us\n",
            a.median_ns.unwrap_or(f64::NAN) / 1e3,
            f.median_ns.unwrap_or(f64::NAN) / 1e3,
        ));
    }
    if let (Some(a), Some(f), Some(z)) = (
        find("server_cpu", "coroipc", "default", 0),
        find("server_cpu", "coroipc", "spin-50us", 0),
        find("server_cpu", "coroipc", "sleep", 0),
    ) {
        s.push_str(&format!(
            "  Server CPU per request when a client sends one every 1 ms: default (adaptive poll) {:.1} us, fixed 50 us spin {:.1} us, no poll {:.1} us\n",
            a.median_ns.unwrap_or(f64::NAN) / 1e3,
            f.median_ns.unwrap_or(f64::NAN) / 1e3,
            z.median_ns.unwrap_or(f64::NAN) / 1e3,
        ));
    }
    s.push_str(&floors_table(results));
    if let (Some(m), Some(d), Some(tr)) = (
        find("large", "floor", "-", 1 << 20),
        find("large", "coroipc", "default", 1 << 20),
        find("large", "coroipc", "default-trusted", 1 << 20),
    ) {
        let mb = |r: &IpcResult| r.mb_per_s.unwrap_or(f64::NAN);
        s.push_str(&format!(
            "\n  1 MiB messages (default): coroipc {:.0} MB/s = {:.2} x single-thread memcpy ({:.0} MB/s); read through the unsafe trusted slice {:.0} MB/s = {:.2} x\n",
            mb(d),
            mb(d) / mb(m),
            mb(m),
            mb(tr),
            mb(tr) / mb(m),
        ));
        if let Some(x) = find("large", "floor", "cross-core", 1 << 20) {
            s.push_str(&format!(
                "  plain memcpy in and out between the two CPUs (four slots): {:.0} MB/s; coroipc = {:.2} x that\n",
                mb(x),
                mb(d) / mb(x)
            ));
        }
    }
    s
}
