//! Hostile and dying peers (threat model, SPEC.md §3): real processes, real sockets.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::Write;
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use coroipc::protocol::{
    ConnectReply, ConnectRequest, RegionLayout, CONNECT_FDS, CONNECT_REPLY_LEN,
};
use coroipc::raw::{self, PeerBell, SharedMemory};
use coroipc::{Client, ClientError, ConnectError, ConnectOptions};
use support::{cmd, ServerProcess};

#[test]
#[ignore = "entry point of the server child process"]
fn child_server() {
    support::child_entry();
}

/// A client that does the handshake by hand and keeps raw access to its memory.
struct RawClient {
    _stream: std::os::unix::net::UnixStream,
    shm: SharedMemory,
    server_bell: PeerBell,
    layout: RegionLayout,
}

fn raw_connect(server: &ServerProcess) -> RawClient {
    let mut stream = raw::connect(&server.socket(), Some(Duration::from_secs(5))).unwrap();
    let req = ConnectRequest {
        service: 1,
        request_ring: 4096,
        response_ring: 4096,
        dispatch_ring: 4096,
    };
    stream.write_all(&req.encode()).unwrap();
    let mut buf = [0u8; CONNECT_REPLY_LEN];
    let (n, fds) = raw::recv_with_fds(stream.as_fd(), &mut buf, CONNECT_FDS).unwrap();
    assert_eq!(n, CONNECT_REPLY_LEN);
    let reply = ConnectReply::decode(&buf).unwrap();
    assert_eq!(reply.status, 0);
    let layout =
        RegionLayout::new([reply.request_ring, reply.response_ring, reply.dispatch_ring]).unwrap();
    let mut fds = fds.into_iter();
    let shm = SharedMemory::from_fd_verified(fds.next().unwrap(), layout.len).unwrap();
    let (server_end, client_end) = (fds.next().unwrap(), fds.next().unwrap());
    let server_bell = PeerBell::adopt(client_end, server_end).unwrap();
    RawClient {
        _stream: stream,
        shm,
        server_bell,
        layout,
    }
}

struct XorShift(u64);
impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn fnv(data: &[u8]) -> u32 {
    data.iter().fold(0x811c_9dc5u32, |h, b| {
        (h ^ u32::from(*b)).wrapping_mul(0x0100_0193)
    })
}

fn disconnects(c: &mut Client) -> u64 {
    u64::from_le_bytes(
        c.request(cmd::DISCONNECTS, b"")
            .unwrap()
            .data
            .try_into()
            .unwrap(),
    )
}

/// Garbage anywhere in a client's shared memory, at random moments, across many seeds:
/// the server stays up, drops that client (and only it), and three honest clients
/// running at the same time get every answer right.
#[test]
fn hostile_client_only_hurts_itself() {
    let server = ServerProcess::start("hostile", &[]);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let honest: Vec<_> = (0..3u32)
        .map(|h| {
            let socket = server.socket();
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut c = Client::connect(&socket, 1, &ConnectOptions::default()).unwrap();
                let mut seq = 0u32;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) || seq < 200 {
                    let mut msg = vec![0u8; 8 + (seq as usize * 7 + h as usize) % 200];
                    msg[..4].copy_from_slice(&seq.to_le_bytes());
                    for (i, b) in msg[8..].iter_mut().enumerate() {
                        *b = (i as u32 ^ seq ^ h) as u8;
                    }
                    let sum = fnv(&msg[8..]);
                    msg[4..8].copy_from_slice(&sum.to_le_bytes());
                    let r = c.request(cmd::ECHO, &msg).unwrap();
                    assert_eq!(r.data, msg, "honest client {h} request {seq}");
                    seq += 1;
                }
                seq
            })
        })
        .collect();
    let mut observer = Client::connect(&server.socket(), 1, &ConnectOptions::default()).unwrap();
    let before = disconnects(&mut observer);
    let seeds = 40u64;
    for seed in 1..=seeds {
        let raw = raw_connect(&server);
        let mut rng = XorShift(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
        let base = raw.shm.as_ptr();
        for round in 0..20 {
            // Targets: the whole request ring, and the index/flag words of the
            // response and dispatch rings (which the server reads).
            let (ring, limit) = match rng.next() % 3 {
                0 => (0, raw.layout.rings[0].region_size()),
                r => (r as usize, 0x180),
            };
            let off = raw.layout.offsets[ring] + (rng.next() as usize % (limit - 8));
            let value = rng.next();
            // SAFETY: inside our own mapping of the shared region; racing the server
            // is the point of the test, and it only ever reads these bytes.
            unsafe {
                base.add(off)
                    .cast::<u8>()
                    .copy_from_nonoverlapping(value.to_le_bytes().as_ptr(), 8)
            };
            if round % 3 == 0 {
                let _ = raw.server_bell.ring_peer();
            }
            if rng.next() % 4 == 0 {
                std::thread::sleep(Duration::from_micros(rng.next() % 500));
            }
        }
        let _ = raw.server_bell.ring_peer();
        drop(raw);
    }
    // Every hostile client is gone, and the server still serves.
    let deadline = Instant::now() + Duration::from_secs(5);
    while disconnects(&mut observer) < before + seeds && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(
        disconnects(&mut observer),
        before + seeds,
        "each hostile client disconnected once"
    );
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for h in honest {
        assert!(h.join().unwrap() >= 200);
    }
    assert_eq!(
        observer.request(cmd::ECHO, b"alive").unwrap().data,
        b"alive"
    );
}

/// Makes `fd` blocking and fills it as a hostile peer would: an eventfd's counter to
/// its maximum, a socket's buffer until the kernel refuses more.
fn block_and_fill(fd: std::os::fd::BorrowedFd<'_>) {
    use nix::fcntl::{fcntl, FcntlArg, OFlag};
    use nix::sys::socket::{send, MsgFlags};
    use std::os::fd::AsRawFd;
    let _ = fcntl(fd.as_raw_fd(), FcntlArg::F_SETFL(OFlag::empty()));
    let _ = nix::unistd::write(fd, &(u64::MAX - 1).to_ne_bytes());
    for _ in 0..100_000 {
        if send(fd.as_raw_fd(), &[0u8; 4096], MsgFlags::MSG_DONTWAIT).is_err() {
            break;
        }
    }
}

/// A ring of the raw client's region.
fn ring_region(raw: &RawClient, ring: usize) -> coroipc_ring::RawRegion {
    let base = std::ptr::NonNull::new(raw.shm.as_ptr().cast::<u8>()).unwrap();
    // SAFETY: the ring's region inside our own mapping, which outlives every handle
    // the tests build on it.
    unsafe {
        coroipc_ring::RawRegion::new(
            base.add(raw.layout.offsets[ring]),
            raw.layout.rings[ring].region_size(),
        )
    }
    .unwrap()
}

/// The attack that hung the whole server through eventfd doorbells: a client makes
/// the doorbell descriptors it was sent blocking (they share their file descriptions,
/// and so the flag, with the server's) and fills them, then gets the server to ring
/// it (it announces sleep on its responses and sends requests). The server's rings and
/// drains must not block: another client keeps being answered.
#[test]
fn a_client_making_its_doorbells_blocking_cannot_stop_the_server() {
    let server = ServerProcess::start("blocking-bells", &[]);
    let mut honest = Client::connect(&server.socket(), 1, &ConnectOptions::default()).unwrap();
    let raw = raw_connect(&server);
    for fd in raw.server_bell.ends() {
        block_and_fill(fd);
    }
    // SAFETY: our own mapping (`ring_region`); one handle per ring in this process.
    let mut responses = unsafe { coroipc_ring::Consumer::attach(ring_region(&raw, 1)) }.unwrap();
    // SAFETY: as above.
    let mut requests = unsafe { coroipc_ring::Producer::attach(ring_region(&raw, 0)) }.unwrap();
    for id in 1..=3u64 {
        assert!(
            responses.prepare_sleep().unwrap().sleep,
            "asleep on the responses"
        );
        let header = coroipc::protocol::RequestHeader {
            id,
            command: cmd::ECHO,
        }
        .encode();
        let _ = requests.try_send(&[&header[..], b"x"].concat()).unwrap();
        let _ = raw.server_bell.ring_peer();
        std::thread::sleep(Duration::from_millis(20));
        while let Ok(Some(g)) = responses.try_peek() {
            g.consume();
        }
        let _ = responses.release();
    }
    for i in 0..20u32 {
        let id = honest.send_request(cmd::ECHO, &i.to_le_bytes()).unwrap();
        let r = honest.wait_response(id, Some(Duration::from_secs(5)));
        assert_eq!(r.expect("the server still answers").data, i.to_le_bytes());
    }
    drop(raw);
}

/// Abandoned-reservation frames (SKIP) in the request ring, which the client's SPSC
/// producer never writes: each would be a step the server takes for free (a ring full
/// of them, moved a lap at a time, made every look walk a million frames). The server
/// treats the first as corruption and closes that connection.
#[test]
fn a_skip_frame_in_the_request_ring_closes_the_connection() {
    let server = ServerProcess::start("skip-frames", &[]);
    let mut observer = Client::connect(&server.socket(), 1, &ConnectOptions::default()).unwrap();
    let before = disconnects(&mut observer);
    let raw = raw_connect(&server);
    {
        // SAFETY: our own mapping (`ring_region`); the server only reads this ring's
        // data and tail.
        let p = unsafe { coroipc_ring::MpscProducer::attach(ring_region(&raw, 0)) }.unwrap();
        drop(p.try_reserve(10).unwrap());
    }
    raw.server_bell.ring_peer().unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while disconnects(&mut observer) == before && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(
        disconnects(&mut observer),
        before + 1,
        "the client was closed"
    );
    drop(raw);
}

/// A client that connects and never sends the handshake is dropped after the timeout;
/// garbage is refused; absurd ring sizes are capped.
#[test]
fn handshake_abuse() {
    let server = ServerProcess::start("handshake", &[]);
    let mut observer = Client::connect(&server.socket(), 1, &ConnectOptions::default()).unwrap();
    // Silent: the server (300 ms handshake timeout in the test server) hangs up.
    let silent = raw::connect(&server.socket(), None).unwrap();
    let start = Instant::now();
    match raw::wait_readable(&[silent.as_fd()], Some(Duration::from_secs(3))).unwrap() {
        raw::Readiness::Ready(r) => assert!(r[0].readable || r[0].hangup, "hung up"),
        raw::Readiness::Timeout => panic!("silent client not dropped"),
    }
    assert!(
        start.elapsed() >= Duration::from_millis(250),
        "dropped only after the timeout"
    );
    // Garbage: refused with a reply, then closed.
    let mut junk = raw::connect(&server.socket(), Some(Duration::from_secs(3))).unwrap();
    junk.write_all(&[0xff; 24]).unwrap();
    let mut buf = [0u8; CONNECT_REPLY_LEN];
    let (n, fds) = raw::recv_with_fds(junk.as_fd(), &mut buf, CONNECT_FDS).unwrap();
    assert_eq!(n, CONNECT_REPLY_LEN);
    assert!(fds.is_empty());
    assert!(ConnectReply::decode(&buf).unwrap().status < 0);
    // Absurd sizes: capped by the server (4 MiB max in the test server).
    let opts = ConnectOptions {
        request_ring: u32::MAX,
        response_ring: u32::MAX,
        dispatch_ring: 1,
        ..Default::default()
    };
    let mut big = Client::connect(&server.socket(), 1, &opts).unwrap();
    assert!(big.max_request_len() < 4 << 20);
    assert!(big.max_dispatch_len() >= 4096 / 2 - 8);
    assert_eq!(big.request(cmd::ECHO, b"ok").unwrap().data, b"ok");
    assert_eq!(
        observer.request(cmd::ECHO, b"still").unwrap().data,
        b"still"
    );
}

/// 10,000 connection attempts against a limit of 100: clean refusals, existing clients
/// keep being served.
#[test]
fn connection_limit_refuses_cleanly() {
    let server = ServerProcess::start("limit", &[("COROIPC_MAX_CONN", "100")]);
    let mut kept = Vec::new();
    let mut refused = 0;
    for _ in 0..10_000 {
        match Client::connect(&server.socket(), 1, &ConnectOptions::default()) {
            Ok(c) => kept.push(c),
            Err(ConnectError::ConnectionLimit) => refused += 1,
            Err(e) => panic!("unexpected: {e}"),
        }
    }
    assert_eq!(kept.len(), 100);
    assert_eq!(refused, 9_900);
    for c in kept.iter_mut() {
        assert_eq!(c.request(cmd::ECHO, b"x").unwrap().data, b"x");
    }
}

/// Descriptors open in process `pid`.
fn fd_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}

/// coroipc regions mapped in process `pid`.
fn shm_map_count(pid: u32) -> usize {
    std::fs::read_to_string(format!("/proc/{pid}/maps"))
        .unwrap()
        .lines()
        .filter(|l| l.contains("memfd:coroipc"))
        .count()
}

/// Two round trips 50 ms apart: the server has been through its loop since.
fn settle_server(observer: &mut Client) {
    let _ = observer.request(cmd::ECHO, b"sync").unwrap();
    std::thread::sleep(Duration::from_millis(50));
    let _ = observer.request(cmd::ECHO, b"sync").unwrap();
}

/// A service keeping a connection's handles past its end (the deferred answer to a
/// long poll, a clone of the `Connection`, one it refused in `on_connect`) pins none
/// of its descriptors or shared memory: a client looping "connect, send such a request, close" used to run the
/// server out of descriptors (two per cycle) and pin a mapping per cycle.
#[test]
fn handles_kept_past_the_end_pin_no_descriptors_or_memory() {
    let server = ServerProcess::start("kept", &[]);
    let pid = server.child.id();
    let fds = || fd_count(pid);
    let shm_maps = || shm_map_count(pid);
    let mut observer = Client::connect(&server.socket(), 1, &ConnectOptions::default()).unwrap();
    settle_server(&mut observer);
    let fd0 = fds();
    const CYCLES: u32 = 200;
    for _ in 0..CYCLES {
        let mut c = Client::connect(&server.socket(), 1, &ConnectOptions::default()).unwrap();
        c.send_request(cmd::KEEP, b"").unwrap();
        // Served in order: once this is answered, the kept request was taken.
        assert_eq!(c.request(cmd::ECHO, b"x").unwrap().data, b"x");
    }
    // Service 7 keeps each connection it refuses.
    for _ in 0..CYCLES / 4 {
        let refused = Client::connect(&server.socket(), 7, &ConnectOptions::default());
        assert!(
            matches!(refused, Err(ConnectError::Refused(42))),
            "{refused:?}"
        );
    }
    // A refusal uses up the spare set of resources; an accepted connect builds the next.
    drop(Client::connect(&server.socket(), 1, &ConnectOptions::default()).unwrap());
    // Closed connections are released within a few turns of the server's loop (its
    // deferred teardown); under load that may take a while.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while (fds(), shm_maps()) != (fd0, 2) && std::time::Instant::now() < deadline {
        settle_server(&mut observer);
    }
    assert_eq!(fds(), fd0, "the kept handles hold no descriptor");
    assert_eq!(
        shm_maps(),
        2,
        "only the observer's and the spare's shared memory are still mapped"
    );
    let probe = observer.request(cmd::KEPT_PROBE, b"").unwrap().data;
    let word = |i: usize| u32::from_le_bytes(probe[i * 4..i * 4 + 4].try_into().unwrap());
    assert_eq!(
        (word(0), word(1)),
        (CYCLES, CYCLES),
        "every kept connection refuses a send as disconnected"
    );
    assert_eq!(observer.request(cmd::ECHO, b"ok").unwrap().data, b"ok");
}

/// Thousands of connect/disconnect cycles: the server's fd count and memory return
/// to their baseline, and no file appears in /dev/shm.
#[test]
fn no_leaks_over_many_cycles() {
    let server = ServerProcess::start("leaks", &[]);
    let pid = server.child.id();
    let fds = || fd_count(pid);
    let rss_kib = || {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        status
            .lines()
            .find(|l| l.starts_with("VmRSS:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .unwrap()
            .parse::<u64>()
            .unwrap()
    };
    let maps = || {
        std::fs::read_to_string(format!("/proc/{pid}/maps"))
            .unwrap()
            .lines()
            .count()
    };
    let shm_maps = || shm_map_count(pid);
    let shm_before = std::fs::read_dir("/dev/shm")
        .map(|d| d.count())
        .unwrap_or(0);
    let mut observer = Client::connect(&server.socket(), 1, &ConnectOptions::default()).unwrap();
    // Warm up allocator and maps.
    for _ in 0..200 {
        drop(Client::connect(&server.socket(), 1, &ConnectOptions::default()).unwrap());
    }
    settle_server(&mut observer);
    let (fd0, rss0, maps0) = (fds(), rss_kib(), maps());
    for i in 0..5000 {
        let mut c = Client::connect(&server.socket(), 1, &ConnectOptions::default()).unwrap();
        if i % 10 == 0 {
            let _ = c.request(cmd::ECHO, b"x").unwrap();
        }
    }
    settle_server(&mut observer);
    assert_eq!(fds(), fd0, "fd count back to baseline");
    // The observer's, and the spare the server built for the next client (SPEC §2.6).
    assert_eq!(
        shm_maps(),
        2,
        "only the observer's and the spare's shared memory are still mapped"
    );
    // The allocator may grow an arena; shared memory is accounted for above.
    assert!(
        maps() <= maps0 + 4,
        "mappings grew from {maps0} to {}",
        maps()
    );
    let rss1 = rss_kib();
    assert!(rss1 < rss0 + 2048, "RSS grew from {rss0} KiB to {rss1} KiB");
    assert_eq!(
        std::fs::read_dir("/dev/shm")
            .map(|d| d.count())
            .unwrap_or(0),
        shm_before,
        "no files in /dev/shm"
    );
}

/// A signal every 100 us while a client blocks: no spurious failure, no hang.
#[test]
fn signals_do_not_break_blocking_calls() {
    extern "C" fn on_signal(_: i32) {}
    // SAFETY: installing a handler that does nothing is async-signal-safe; no
    // SA_RESTART, so blocking system calls see EINTR.
    unsafe {
        nix::sys::signal::sigaction(
            nix::sys::signal::SIGUSR1,
            &nix::sys::signal::SigAction::new(
                nix::sys::signal::SigHandler::Handler(on_signal),
                nix::sys::signal::SaFlags::empty(),
                nix::sys::signal::SigSet::empty(),
            ),
        )
        .unwrap();
    }
    let server = ServerProcess::start("signals", &[]);
    let (tx, rx) = std::sync::mpsc::channel();
    let socket = server.socket();
    let worker = std::thread::spawn(move || {
        tx.send(nix::sys::pthread::pthread_self()).unwrap();
        let opts = ConnectOptions {
            wait: coroipc::WaitMode::Block,
            ..Default::default()
        };
        let mut c = Client::connect(&socket, 1, &opts).unwrap();
        for i in 0..300u32 {
            // DEFER answers after 5 ms from another thread: the client blocks.
            let r = c.request(cmd::DEFER, &i.to_le_bytes()).unwrap();
            assert_eq!(r.data, i.to_be_bytes());
        }
        // A blocking dispatch wait that times out must still time out.
        let t = Instant::now();
        assert!(c
            .dispatch_recv(Some(Duration::from_millis(100)))
            .unwrap()
            .is_none());
        assert!(t.elapsed() >= Duration::from_millis(100));
    });
    let thread = rx.recv().unwrap();
    let mut sent = 0;
    while !worker.is_finished() {
        let _ = nix::sys::pthread::pthread_kill(thread, nix::sys::signal::SIGUSR1);
        sent += 1;
        std::thread::sleep(Duration::from_micros(100));
    }
    worker.join().unwrap();
    assert!(sent > 1000, "{sent} signals");
}

/// A corrupted response ring gives the client an error, not a panic. The test corrupts
/// the ring through the client's own mapping, found in /proc/self/maps, so it runs in a
/// process of its own (other tests' mappings would be candidates too).
#[test]
fn client_survives_a_corrupt_server() {
    run_child("corrupt_server_child", "COROIPC_CORRUPT_CHILD");
}

/// Runs the ignored test `name` in a process of its own (with `env` set, which the
/// child checks), killing it after 30 s; it must succeed.
fn run_child(name: &str, env: &str) {
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            name,
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(env, "1")
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{name} did not finish (killed after 30 s)");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "the client process failed: {status}");
}

#[test]
#[ignore = "run by client_survives_a_corrupt_server in a process of its own"]
fn corrupt_server_child() {
    if std::env::var("COROIPC_CORRUPT_CHILD").is_err() {
        return;
    }
    let server = ServerProcess::start("badserver", &[]);
    let maps_with = || {
        std::fs::read_to_string("/proc/self/maps")
            .unwrap()
            .lines()
            .filter(|l| l.contains("memfd:coroipc"))
            .map(|l| usize::from_str_radix(l.split('-').next().unwrap(), 16).unwrap())
            .collect::<Vec<_>>()
    };
    assert!(maps_with().is_empty());
    let mut c = Client::connect(&server.socket(), 1, &ConnectOptions::default()).unwrap();
    assert_eq!(c.request(cmd::ECHO, b"ok").unwrap().data, b"ok");
    let found = maps_with();
    assert_eq!(found.len(), 1, "exactly our mapping");
    let layout = RegionLayout::new([65536, 65536, 65536]).unwrap();
    let tail = found[0] + layout.offsets[1] + coroipc_ring::offsets::TAIL;
    // Let the server publish a response, then corrupt the tail before the client reads
    // it (the server writes the tail only when it publishes, so it stays corrupt).
    let id = c.send_request(cmd::ECHO, b"x").unwrap();
    std::thread::sleep(Duration::from_millis(100));
    // SAFETY: inside this process's only coroipc mapping (default 64 KiB rings); the
    // client is not running concurrently.
    unsafe { (tail as *mut u64).write_volatile(0xdead_beef_0000_0008) };
    // The response may be found by its header (the ring is linked, coroipc-ring SPEC
    // §1.3a) or through the corrupt tail; the tail is read, and found corrupt, no later
    // than when the client next waits with nothing to read (before it sleeps).
    match c.wait_response(id, Some(Duration::from_secs(1))) {
        Ok(r) => {
            assert_eq!(r.data, b"x");
            let never = c.send_request(cmd::HANG, b"").unwrap();
            let err = c
                .wait_response(never, Some(Duration::from_secs(1)))
                .unwrap_err();
            assert!(matches!(err, ClientError::Corrupt(_)), "{err}");
        }
        Err(err) => assert!(matches!(err, ClientError::Corrupt(_)), "{err}"),
    }
    assert!(matches!(
        c.request(cmd::ECHO, b"x"),
        Err(ClientError::Disconnected)
    ));
}

/// A server that never publishes a message but keeps moving its response tail over
/// abandoned-reservation frames (skips) cannot hold a wait past its timeout: each
/// look found "something moved", so the wait never slept and, its spin spent, never
/// read the clock again. The skips are written through the client's own mapping, so
/// this runs in a process of its own; the parent bounds it with a watchdog.
#[test]
fn a_server_moving_its_tail_over_skips_cannot_hold_a_wait_past_its_timeout() {
    run_child("skipping_server_child", "COROIPC_SKIPPING_CHILD");
}

#[test]
#[ignore = "run by a_server_moving_its_tail_over_skips_cannot_hold_a_wait_past_its_timeout"]
fn skipping_server_child() {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    if std::env::var("COROIPC_SKIPPING_CHILD").is_err() {
        return;
    }
    let server = ServerProcess::start("badserver", &[]);
    let mut c = Client::connect(&server.socket(), 1, &ConnectOptions::default()).unwrap();
    assert_eq!(c.request(cmd::ECHO, b"ok").unwrap().data, b"ok");
    let found: Vec<usize> = std::fs::read_to_string("/proc/self/maps")
        .unwrap()
        .lines()
        .filter(|l| l.contains("memfd:coroipc"))
        .map(|l| usize::from_str_radix(l.split('-').next().unwrap(), 16).unwrap())
        .collect();
    assert_eq!(found.len(), 1, "exactly our mapping");
    let layout = RegionLayout::new([65536, 65536, 65536]).unwrap();
    let ring = found[0] + layout.offsets[1];
    let capacity = 65536u64;
    let id = c.send_request(cmd::HANG, b"").unwrap();
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| {
            // SAFETY: the response ring's words inside this process's only coroipc
            // mapping (default 64 KiB rings), which lives until the scope ends; the
            // client reads them only atomically.
            let word = |off: usize| unsafe { AtomicU64::from_ptr((ring + off) as *mut u64) };
            let skip = 0x534b_5001_u64 << 32;
            while !stop.load(Ordering::Relaxed) {
                let tail = word(coroipc_ring::offsets::TAIL).load(Ordering::Acquire) & !1;
                let head = word(coroipc_ring::offsets::HEAD).load(Ordering::Acquire) & !1;
                // The client probes headers (coroipc-ring SPEC §1.3a): it may have taken
                // a skip of an earlier lap (never zeroed by this writer) for a new one
                // and released past the tail. Go on from where it is.
                let tail = if (head.wrapping_sub(tail) as i64) > 0 {
                    head
                } else {
                    tail
                };
                if tail + 8 - head > capacity {
                    std::hint::spin_loop();
                    continue;
                }
                let at = coroipc_ring::offsets::DATA + (tail % capacity) as usize;
                word(at).store(skip, Ordering::Relaxed);
                word(coroipc_ring::offsets::TAIL).store(tail + 8, Ordering::Release);
            }
        });
        let started = std::time::Instant::now();
        let got = c.wait_response(id, Some(Duration::from_millis(300)));
        stop.store(true, Ordering::Relaxed);
        assert!(matches!(got, Err(ClientError::Timeout)), "{got:?}");
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{:?}",
            started.elapsed()
        );
    });
}
