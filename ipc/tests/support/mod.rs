//! Test support: a test service, and running it in a real child process (the test
//! binary re-executes itself with `COROIPC_CHILD` set).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use coroipc::{
    Connection, DisconnectReason, HandlerError, Limits, OverflowPolicy, Request, Responder,
    ServerBuilder, Service, SocketName,
};

/// Commands of [`TestService`].
pub mod cmd {
    /// Echo the payload.
    pub const ECHO: u16 = 1;
    /// Answer from another thread, later (deferred), with the payload reversed.
    pub const DEFER: u16 = 2;
    /// Payload: u32 count, u32 size; send that many dispatch messages (seq u32 + fill),
    /// from the server thread; answer with how many were accepted.
    pub const DISPATCH: u16 = 3;
    /// Payload: u32 threads, u32 per thread: dispatch from several threads at once.
    pub const DISPATCH_THREADS: u16 = 4;
    /// Store the payload as this connection's private data; answer the previous one.
    pub const SWAP_PRIVATE: u16 = 5;
    /// Refused by admission control.
    pub const BUSY: u16 = 6;
    /// Answer with the number of flow-control "on" notifications seen.
    pub const FLOW_EVENTS: u16 = 7;
    /// Zero-copy response of the payload length, filled with 0xAB.
    pub const ZERO_COPY: u16 = 8;
    /// Answer with the service's total disconnect count.
    pub const DISCONNECTS: u16 = 9;
    /// Never answer (the deferred response is kept in the private data).
    pub const HANG: u16 = 10;
    /// Payload: u32 n. Respond with n bytes; if that fails, do nothing more (the
    /// library answers).
    pub const BIG: u16 = 11;
    /// Payload: u32 n. Respond with n bytes; if that fails, answer status 77 instead.
    pub const BIG_THEN_ERROR: u16 = 12;
    /// Payload: u32 n. Defer, then respond with n bytes from another thread.
    pub const DEFER_BIG: u16 = 13;
    /// Reserve a zero-copy response and drop it uncommitted.
    pub const RESERVE_DROP: u16 = 14;
    /// Respond twice: the second must fail with `AlreadyResponded` (answer: 1 if so).
    pub const TWICE: u16 = 15;
    /// Rejected as malformed (`HandlerError::InvalidRequest`).
    pub const INVALID: u16 = 16;
    /// Payload: u32 count, u32 size; send that many dispatch messages (seq u32 + fill)
    /// with `dispatch_send_batch`, 16 at a time, until one is refused; answer with how
    /// many were accepted.
    pub const DISPATCH_BATCH: u16 = 17;
    /// Taken in place (`Service::in_place`): echoed ring to ring with `respond_from`.
    pub const ECHO_IN_PLACE: u16 = 18;
    /// Taken in place: answered with the payload rotated left by one byte, built with
    /// two `ResponseGrant::copy_from` at offsets (empty payload: empty answer).
    pub const ROTATE_IN_PLACE: u16 = 19;
    /// Never answer: the deferred response and a clone of the connection are kept by
    /// the service for good, past the disconnect (a service answering long polls
    /// from a worker might).
    pub const KEEP: u16 = 20;
    /// Answer u32 how many connections kept by `KEEP` refuse a dispatch message as
    /// disconnected, u32 how many are kept.
    pub const KEPT_PROBE: u16 = 21;
    /// Answer with the command id itself (for command 65535).
    pub const MAX: u16 = 65535;
}

/// Per-connection private data.
#[derive(Default)]
pub struct Private {
    pub data: Vec<u8>,
    pub flow_on: u64,
    pub handle: Option<Connection>,
    pub hung: Vec<coroipc::DeferredResponse>,
}

/// What `cmd::KEEP` keeps, for good.
static KEPT: Mutex<Vec<(coroipc::DeferredResponse, Connection)>> = Mutex::new(Vec::new());
/// The connections to service 7 (refused by `on_connect`), kept for good.
static REFUSED_KEPT: Mutex<Vec<Connection>> = Mutex::new(Vec::new());

pub struct TestService {
    pub disconnects: Arc<AtomicU64>,
    pub log: Arc<Mutex<Vec<String>>>,
}

impl Service for TestService {
    type Private = Private;

    fn on_connect(&mut self, conn: &Connection) -> Result<Private, i32> {
        if conn.service() == 7 {
            // A service may keep the connection it refuses: that must pin nothing.
            REFUSED_KEPT.lock().unwrap().push(conn.clone());
            return Err(42);
        }
        Ok(Private {
            handle: Some(conn.clone()),
            ..Private::default()
        })
    }

    fn on_disconnect(&mut self, _private: Private, conn: &Connection, reason: &DisconnectReason) {
        self.disconnects.fetch_add(1, Ordering::SeqCst);
        self.log
            .lock()
            .unwrap()
            .push(format!("disconnect {} {reason:?}", conn.id()));
    }

    fn admit(&mut self, _private: &mut Private, command: u16) -> bool {
        command != cmd::BUSY
    }

    fn on_flow_control(&mut self, private: &mut Private, _conn: &Connection, on: bool) {
        if on {
            private.flow_on += 1;
        }
    }

    fn overflow_policy(&self) -> OverflowPolicy {
        OverflowPolicy::TryAgain
    }

    fn in_place(&self, command: u16, _len: usize) -> bool {
        matches!(command, cmd::ECHO_IN_PLACE | cmd::ROTATE_IN_PLACE)
    }

    fn handle(
        &mut self,
        conn: &mut Private,
        req: Request<'_>,
        resp: &mut Responder<'_>,
    ) -> Result<(), HandlerError> {
        let word = |i: usize| {
            u32::from_le_bytes(req.payload[i * 4..i * 4 + 4].try_into().unwrap_or([0; 4]))
        };
        match req.command {
            cmd::ECHO => {
                let _ = resp.respond(0, req.payload);
            }
            cmd::DEFER => {
                let deferred = resp.defer().unwrap();
                let mut data = req.payload.to_vec();
                data.reverse();
                std::thread::spawn(move || {
                    std::thread::sleep(Duration::from_millis(5));
                    let _ = deferred.respond(0, &data);
                });
            }
            cmd::DISPATCH => {
                let (count, size) = (word(0), word(1) as usize);
                let handle = conn.handle.clone().unwrap();
                let mut ok = 0u32;
                for seq in 0..count {
                    let mut msg = vec![(seq % 251) as u8; size.max(4)];
                    msg[..4].copy_from_slice(&seq.to_le_bytes());
                    if handle.dispatch_send(&msg).is_ok() {
                        ok += 1;
                    }
                }
                let _ = resp.respond(0, &ok.to_le_bytes());
            }
            cmd::DISPATCH_THREADS => {
                let (threads, per) = (word(0), word(1));
                let handle = conn.handle.clone().unwrap();
                let deferred = resp.defer().unwrap();
                std::thread::spawn(move || {
                    let workers: Vec<_> = (0..threads)
                        .map(|t| {
                            let h = handle.clone();
                            std::thread::spawn(move || {
                                for i in 0..per {
                                    let mut msg = [0u8; 12];
                                    msg[..4].copy_from_slice(&t.to_le_bytes());
                                    msg[4..8].copy_from_slice(&i.to_le_bytes());
                                    msg[8..].copy_from_slice(&(t ^ i).to_le_bytes());
                                    while let Err(e) = h.dispatch_send(&msg) {
                                        assert_eq!(e, coroipc::SendError::TryAgain);
                                        std::thread::sleep(Duration::from_micros(50));
                                    }
                                }
                            })
                        })
                        .collect();
                    for w in workers {
                        w.join().unwrap();
                    }
                    let _ = deferred.respond(0, b"done");
                });
            }
            cmd::SWAP_PRIVATE => {
                let old = std::mem::replace(&mut conn.data, req.payload.to_vec());
                let _ = resp.respond(0, &old);
            }
            cmd::FLOW_EVENTS => {
                let _ = resp.respond(0, &conn.flow_on.to_le_bytes());
            }
            cmd::ZERO_COPY => {
                let len = req.payload.len();
                let mut g = resp.reserve(0, len).unwrap();
                g.fill(0xAB);
                g.commit();
            }
            cmd::DISCONNECTS => {
                let _ = resp.respond(0, &self.disconnects.load(Ordering::SeqCst).to_le_bytes());
            }
            cmd::KEEP => {
                let kept = (resp.defer().unwrap(), conn.handle.clone().unwrap());
                KEPT.lock().unwrap().push(kept);
            }
            cmd::KEPT_PROBE => {
                let kept = KEPT.lock().unwrap();
                let refused = kept
                    .iter()
                    .filter(|(_, c)| {
                        c.dispatch_send(b"late") == Err(coroipc::SendError::Disconnected)
                    })
                    .count() as u32;
                let mut answer = refused.to_le_bytes().to_vec();
                answer.extend_from_slice(&(kept.len() as u32).to_le_bytes());
                let _ = resp.respond(0, &answer);
            }
            cmd::HANG => {
                conn.hung.push(resp.defer().unwrap());
            }
            cmd::BIG => {
                let _ = resp.respond(0, &vec![7u8; word(0) as usize]);
            }
            cmd::BIG_THEN_ERROR => {
                if let Err(e) = resp.respond(0, &vec![7u8; word(0) as usize]) {
                    assert!(matches!(e, coroipc::SendError::TooLarge { .. }), "{e}");
                    resp.respond(77, &[]).unwrap();
                }
            }
            cmd::DEFER_BIG => {
                let deferred = resp.defer().unwrap();
                let n = word(0) as usize;
                std::thread::spawn(move || {
                    let _ = deferred.respond(0, &vec![7u8; n]);
                });
            }
            cmd::RESERVE_DROP => {
                drop(resp.reserve(0, 16).unwrap());
            }
            cmd::TWICE => {
                resp.respond(0, &[1]).unwrap();
                let again = resp.respond(0, &[2]);
                assert_eq!(again, Err(coroipc::SendError::AlreadyResponded));
            }
            cmd::DISPATCH_BATCH => {
                let (count, size) = (word(0), word(1) as usize);
                let handle = conn.handle.clone().unwrap();
                let msgs: Vec<Vec<u8>> = (0..count)
                    .map(|seq| {
                        let mut msg = vec![(seq % 251) as u8; size.max(4)];
                        msg[..4].copy_from_slice(&seq.to_le_bytes());
                        msg
                    })
                    .collect();
                let refs: Vec<&[u8]> = msgs.iter().map(Vec::as_slice).collect();
                let mut ok = 0usize;
                for chunk in refs.chunks(16) {
                    match handle.dispatch_send_batch(chunk) {
                        Ok(n) => {
                            ok += n;
                            if n < chunk.len() {
                                break;
                            }
                        }
                        Err(_) => break,
                    }
                }
                let _ = resp.respond(0, &(ok as u32).to_le_bytes());
            }
            cmd::ECHO_IN_PLACE | cmd::ROTATE_IN_PLACE => {
                // Taken in place: nothing was copied into `payload`.
                assert!(req.payload.is_empty());
                let view = req.in_ring.expect("in place");
                let len = view.len();
                assert_eq!(req.len(), len);
                if req.command == cmd::ECHO_IN_PLACE || len == 0 {
                    resp.respond_from(0, &view).unwrap();
                } else {
                    let mut g = resp.reserve(0, len).unwrap();
                    g.copy_from(0, &view, 1, len - 1);
                    g.copy_from(len - 1, &view, 0, 1);
                    g.commit();
                }
            }
            cmd::INVALID => return Err(HandlerError::InvalidRequest),
            cmd::MAX => {
                let _ = resp.respond(0, &req.command.to_le_bytes());
            }
            _ => return Err(HandlerError::UnknownCommand),
        }
        Ok(())
    }
}

/// Runs the test server in this process until killed (the child side).
pub fn run_server(name: &str) {
    let log = Arc::new(Mutex::new(Vec::new()));
    let disconnects = Arc::new(AtomicU64::new(0));
    let deny_pid: Option<i32> = std::env::var("COROIPC_DENY_UID")
        .ok()
        .and_then(|v| v.parse().ok());
    let limits = Limits {
        handshake_timeout: Duration::from_millis(300),
        max_connections: std::env::var("COROIPC_MAX_CONN")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(64),
        max_ring_size: 4 << 20,
        min_ring_size: 4096,
        max_queued_dispatch_bytes: 64 << 10,
        ..Limits::default()
    };
    // "Forever" as Duration::MAX must not panic the server.
    let limits = if std::env::var("COROIPC_LIMITS_FOREVER").is_ok() {
        Limits {
            handshake_timeout: Duration::MAX,
            spin: Duration::MAX,
            ..limits
        }
    } else {
        limits
    };
    let mut builder = ServerBuilder::new(SocketName::abstract_name(name))
        .limits(limits)
        .security(move |cred| deny_pid != Some(cred.uid as i32));
    for id in [0u16, 1, 7, 65535] {
        builder = builder.service(
            id,
            TestService {
                disconnects: disconnects.clone(),
                log: log.clone(),
            },
        );
    }
    limit_fds();
    let hog = hog_fds();
    let mut server = builder.build().expect("server");
    if let Some((hog, ms)) = hog {
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(ms));
            drop(hog);
        });
    }
    println!("READY");
    server.run().expect("run");
}

/// `COROIPC_NOFILE=n`: the child's soft and hard descriptor limits become `n`.
fn limit_fds() {
    if let Some(n) = std::env::var("COROIPC_NOFILE")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
    {
        nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE, n, n)
            .expect("setrlimit");
    }
}

/// `COROIPC_FD_HOG_MS=ms`: take every free descriptor but the four the server needs
/// to start (epoll, listener, stop and work doorbells; so it starts with no reserve
/// and none to spare), and give them back after `ms`.
fn hog_fds() -> Option<(Vec<std::fs::File>, u64)> {
    let ms = std::env::var("COROIPC_FD_HOG_MS").ok()?.parse().ok()?;
    let mut hog = Vec::new();
    while let Ok(f) = std::fs::File::open("/dev/null") {
        hog.push(f);
    }
    hog.truncate(hog.len().saturating_sub(4));
    Some((hog, ms))
}

/// A server in a child process, killed on drop.
pub struct ServerProcess {
    pub child: Child,
    pub name: String,
}

impl ServerProcess {
    pub fn start(test: &str, extra_env: &[(&str, &str)]) -> ServerProcess {
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let name = format!(
            "coroipc-test-{}-{}-{}",
            std::process::id(),
            test,
            SEQ.fetch_add(1, Ordering::SeqCst)
        );
        let mut cmd = Command::new(std::env::current_exe().unwrap());
        cmd.args([
            "--exact",
            "child_server",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("COROIPC_CHILD", &name)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
        for (k, v) in extra_env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        loop {
            match lines.next() {
                Some(Ok(l)) if l.contains("READY") => break,
                Some(Ok(_)) => continue,
                other => panic!("server child failed to start: {other:?}"),
            }
        }
        ServerProcess { child, name }
    }

    pub fn socket(&self) -> SocketName {
        SocketName::abstract_name(self.name.clone())
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Entry of the child: call from a `#[test] #[ignore] fn child_server()`.
pub fn child_entry() {
    if let Ok(name) = std::env::var("COROIPC_CHILD") {
        run_server(&name);
    }
}
