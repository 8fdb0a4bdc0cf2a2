//! End-to-end tests across real processes: the server runs in a child process (this
//! test binary re-executed), clients in this process or in further children.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::HashMap;
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use coroipc::{Client, ClientError, ConnectError, ConnectOptions, WaitMode};
use support::{cmd, ServerProcess};

#[test]
#[ignore = "entry point of the server child process"]
fn child_server() {
    support::child_entry();
}

#[test]
#[ignore = "entry point of a client child process"]
fn child_client() {
    if let Ok(name) = std::env::var("COROIPC_CLIENT_OF") {
        let state = std::env::var("COROIPC_CLIENT_STATE").unwrap_or_default();
        let socket = coroipc::SocketName::abstract_name(name);
        if state == "mid_handshake" {
            // Half a connect request, then nothing.
            use std::io::Write;
            let mut s = coroipc::raw::connect(&socket, None).unwrap();
            s.write_all(b"CIPC\x01\x00").unwrap();
            println!("CONNECTED");
            loop {
                std::thread::sleep(Duration::from_secs(1));
            }
        }
        let mut c = Client::connect(&socket, 1, &ConnectOptions::default()).unwrap();
        match state.as_str() {
            // Holding a zero-copy view of a dispatch message in shared memory.
            "holding_guard" => {
                let _ = c.request(
                    cmd::DISPATCH,
                    &[1u32.to_le_bytes(), 64u32.to_le_bytes()].concat(),
                );
                let guard = c
                    .dispatch_recv(Some(Duration::from_secs(5)))
                    .unwrap()
                    .unwrap();
                println!("CONNECTED");
                loop {
                    std::hint::black_box(guard.len());
                    std::thread::sleep(Duration::from_secs(1));
                }
            }
            // Fill the dispatch ring and never read it.
            "dispatch_full" => {
                let _ = c.request(
                    cmd::DISPATCH,
                    &[2000u32.to_le_bytes(), 256u32.to_le_bytes()].concat(),
                );
            }
            // Blocked in a request that is never answered.
            "in_request" => {
                println!("CONNECTED");
                let _ = c.request(cmd::HANG, b"x");
            }
            _ => {}
        }
        println!("CONNECTED");
        loop {
            let _ = c.request(cmd::ECHO, b"ping");
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

fn connect(server: &ServerProcess, service: u16) -> Client {
    Client::connect(&server.socket(), service, &ConnectOptions::default()).unwrap()
}

#[test]
fn round_trips_at_every_size() {
    let server = ServerProcess::start("sizes", &[]);
    for mode in [WaitMode::default(), WaitMode::Block] {
        let opts = ConnectOptions {
            request_ring: 1 << 16,
            response_ring: 1 << 16,
            wait: mode,
            ..Default::default()
        };
        let mut c = Client::connect(&server.socket(), 1, &opts).unwrap();
        let max = c.max_request_len().min(c.max_response_len());
        for size in [0usize, 1, 64, 4096, max] {
            let payload: Vec<u8> = (0..size).map(|i| (i * 7 + size) as u8).collect();
            let r = c.request(cmd::ECHO, &payload).unwrap();
            assert_eq!(r.status, 0);
            assert_eq!(r.data, payload, "size {size}");
            let mut buf = vec![0u8; size];
            assert_eq!(
                c.request_into(cmd::ECHO, &payload, &mut buf).unwrap(),
                (0, size)
            );
            assert_eq!(buf, payload);
            let inplace = c.request_in_place(cmd::ECHO, &payload).unwrap();
            assert_eq!(inplace.to_vec(), payload);
        }
        assert!(matches!(
            c.request(cmd::ECHO, &vec![0; max + 1]),
            Err(ClientError::TooLarge { .. })
        ));
        // Vectored request.
        let r = c
            .request_vectored(cmd::ECHO, &[b"ab", b"", b"cde"])
            .unwrap();
        assert_eq!(r.data, b"abcde");
        // Zero-copy response built in place by the server.
        let r = c.request_in_place(cmd::ZERO_COPY, &[0; 300]).unwrap();
        assert_eq!(r.to_vec(), [0xAB; 300]);
    }
}

#[test]
fn services_zero_and_max_and_command_max() {
    let server = ServerProcess::start("ids", &[]);
    for service in [0u16, 65535] {
        let mut c = connect(&server, service);
        assert_eq!(c.request(cmd::ECHO, b"hi").unwrap().data, b"hi");
        assert_eq!(
            c.request(cmd::MAX, b"").unwrap().data,
            65535u16.to_le_bytes()
        );
    }
}

#[test]
fn unknown_service_unknown_command_and_refusals() {
    let server = ServerProcess::start("refuse", &[]);
    let err = Client::connect(&server.socket(), 2, &ConnectOptions::default()).unwrap_err();
    assert!(matches!(err, ConnectError::NoSuchService(2)), "{err}");
    let err = Client::connect(&server.socket(), 7, &ConnectOptions::default()).unwrap_err();
    assert!(matches!(err, ConnectError::Refused(42)), "{err}");
    let mut c = connect(&server, 1);
    assert!(matches!(
        c.request(1234, b"x"),
        Err(ClientError::UnknownCommand { command: 1234 })
    ));
    // Pipelined, the error still names its command.
    let id = c.send_request(4321, b"x").unwrap();
    let (got, r) = c.receive_response(None).unwrap();
    assert_eq!(got, id);
    assert!(matches!(
        r,
        Err(ClientError::UnknownCommand { command: 4321 })
    ));
    assert!(matches!(
        c.request(cmd::INVALID, b"x"),
        Err(ClientError::BadRequest)
    ));
    assert!(matches!(
        c.request(cmd::BUSY, b"x"),
        Err(ClientError::TryAgain)
    ));
    // The connection stays up.
    assert_eq!(c.request(cmd::ECHO, b"still").unwrap().data, b"still");
    let uid = nix::unistd::getuid().as_raw().to_string();
    let denying = ServerProcess::start("deny", &[("COROIPC_DENY_UID", &uid)]);
    let err = Client::connect(&denying.socket(), 1, &ConnectOptions::default()).unwrap_err();
    assert!(matches!(err, ConnectError::AccessDenied), "{err}");
    let err = Client::connect(
        &coroipc::SocketName::abstract_name("coroipc-nobody-here"),
        1,
        &ConnectOptions::default(),
    )
    .unwrap_err();
    assert!(
        matches!(&err, ConnectError::Os { step: coroipc::ConnectStep::Connect, source, .. }
            if source.kind() == std::io::ErrorKind::ConnectionRefused),
        "{err}"
    );
    assert!(err.to_string().contains("coroipc-nobody-here"), "{err}");
}

#[test]
fn private_data_is_per_connection() {
    let server = ServerProcess::start("private", &[]);
    let mut a = connect(&server, 1);
    let mut b = connect(&server, 1);
    assert_eq!(a.request(cmd::SWAP_PRIVATE, b"alpha").unwrap().data, b"");
    assert_eq!(b.request(cmd::SWAP_PRIVATE, b"beta").unwrap().data, b"");
    assert_eq!(a.request(cmd::SWAP_PRIVATE, b"x").unwrap().data, b"alpha");
    assert_eq!(b.request(cmd::SWAP_PRIVATE, b"y").unwrap().data, b"beta");
}

#[test]
fn thousands_of_dispatch_messages_in_order() {
    let server = ServerProcess::start("dispatch", &[]);
    let opts = ConnectOptions {
        dispatch_ring: 1 << 20,
        ..Default::default()
    };
    let mut c = Client::connect(&server.socket(), 1, &opts).unwrap();
    let n = 5000u32;
    let sent = c
        .request(
            cmd::DISPATCH,
            &[n.to_le_bytes(), 64u32.to_le_bytes()].concat(),
        )
        .unwrap();
    assert_eq!(sent.data, n.to_le_bytes());
    for seq in 0..n {
        let m = c
            .dispatch_recv(Some(Duration::from_secs(5)))
            .unwrap()
            .expect("message")
            .to_vec();
        assert_eq!(m.len(), 64);
        assert_eq!(u32::from_le_bytes(m[..4].try_into().unwrap()), seq);
        assert!(m[4..].iter().all(|b| *b == (seq % 251) as u8));
    }
    assert!(c.dispatch_recv(Some(Duration::ZERO)).unwrap().is_none());
}

#[test]
fn dispatch_fd_becomes_readable() {
    let server = ServerProcess::start("pollfd", &[]);
    let mut c = connect(&server, 1);
    assert!(c.dispatch_recv(Some(Duration::ZERO)).unwrap().is_none());
    let fd_ready = |c: &Client, ms: u16| {
        let mut fds = [nix::poll::PollFd::new(
            c.as_fd(),
            nix::poll::PollFlags::POLLIN,
        )];
        nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(ms)).unwrap() > 0
    };
    assert!(!fd_ready(&c, 20), "nothing to read yet");
    // Ask for one dispatch message (through a pipelined request, not waiting).
    let id = c
        .send_request(
            cmd::DISPATCH,
            &[1u32.to_le_bytes(), 8u32.to_le_bytes()].concat(),
        )
        .unwrap();
    assert!(
        fd_ready(&c, 2000),
        "dispatch message must make the fd readable"
    );
    assert_eq!(
        c.dispatch_recv(Some(Duration::ZERO))
            .unwrap()
            .unwrap()
            .len(),
        8
    );
    c.wait_response(id, None).unwrap();
}

#[test]
fn flow_control_seen_by_service_and_client() {
    let server = ServerProcess::start("flow", &[]);
    let opts = ConnectOptions {
        dispatch_ring: 4096,
        ..Default::default()
    };
    let mut c = Client::connect(&server.socket(), 1, &opts).unwrap();
    assert!(!c.flow_control());
    // The same word for another thread, while this one is busy with the client.
    let watch = c.flow_watch();
    let watcher = std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(5);
        while !watch.flow_control() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        watch.flow_control()
    });
    // 200 x 64 B = 14 KiB: past the 3 KiB high watermark, the rest queued.
    let sent = c
        .request(
            cmd::DISPATCH,
            &[200u32.to_le_bytes(), 64u32.to_le_bytes()].concat(),
        )
        .unwrap();
    assert_eq!(sent.data, 200u32.to_le_bytes());
    assert!(c.flow_control(), "client sees flow control on");
    assert!(
        watcher.join().unwrap(),
        "the watch sees it on, from its thread"
    );
    let events = c.request(cmd::FLOW_EVENTS, b"").unwrap();
    assert_eq!(
        u64::from_le_bytes(events.data.try_into().unwrap()),
        1,
        "service told once"
    );
    for seq in 0..200u32 {
        let m = c
            .dispatch_recv(Some(Duration::from_secs(5)))
            .unwrap()
            .expect("message")
            .to_vec();
        assert_eq!(
            u32::from_le_bytes(m[..4].try_into().unwrap()),
            seq,
            "queued messages keep order"
        );
    }
    let deadline = Instant::now() + Duration::from_secs(2);
    while c.flow_control() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
    assert!(!c.flow_control(), "flow control off after draining");
    assert!(!c.flow_watch().flow_control(), "and so does a watch");
}

/// `wait_response_in_place` with a timeout leaves its request in flight (where
/// `request_in_place`'s own timeout gives it up): a caller may wait in slices, and
/// other requests go on meanwhile.
#[test]
fn waiting_in_place_in_slices_keeps_the_request() {
    let server = ServerProcess::start("slices", &[]);
    let mut c = connect(&server, 1);
    let hanging = c.send_request(cmd::HANG, b"").unwrap();
    for _ in 0..2 {
        assert!(matches!(
            c.wait_response_in_place(hanging, Some(Duration::from_millis(20))),
            Err(ClientError::Timeout)
        ));
        assert_eq!(c.outstanding(), 1, "still in flight");
    }
    let echo = c.send_request(cmd::ECHO, b"beside").unwrap();
    let r = c.wait_response_in_place(echo, None).unwrap();
    assert_eq!(r.to_vec(), b"beside");
    drop(r);
    // A deferred answer, waited for in slices of 1 ms until it comes.
    let deferred = c.send_request(cmd::DEFER, b"abc").unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    let answer = loop {
        match c.wait_response_in_place(deferred, Some(Duration::from_millis(1))) {
            Ok(r) => break r.to_vec(),
            Err(ClientError::Timeout) if Instant::now() < deadline => {}
            Err(e) => panic!("deferred request: {e}"),
        }
    };
    assert_eq!(answer, b"cba");
    assert_eq!(c.outstanding(), 1, "only the hanging request is left");
}

#[test]
fn dispatch_from_several_server_threads() {
    let server = ServerProcess::start("mpsc", &[]);
    let opts = ConnectOptions {
        dispatch_ring: 1 << 16,
        ..Default::default()
    };
    let mut c = Client::connect(&server.socket(), 1, &opts).unwrap();
    let (threads, per) = (3u32, 3000u32);
    let id = c
        .send_request(
            cmd::DISPATCH_THREADS,
            &[threads.to_le_bytes(), per.to_le_bytes()].concat(),
        )
        .unwrap();
    let mut next = vec![0u32; threads as usize];
    for _ in 0..threads * per {
        let m = c
            .dispatch_recv(Some(Duration::from_secs(10)))
            .unwrap()
            .expect("message")
            .to_vec();
        let t = u32::from_le_bytes(m[..4].try_into().unwrap());
        let i = u32::from_le_bytes(m[4..8].try_into().unwrap());
        assert_eq!(u32::from_le_bytes(m[8..12].try_into().unwrap()), t ^ i);
        assert_eq!(next[t as usize], i, "thread {t} out of order");
        next[t as usize] += 1;
    }
    assert_eq!(
        c.wait_response(id, Some(Duration::from_secs(10)))
            .unwrap()
            .data,
        b"done"
    );
}

/// A service that takes requests in place gets no copy, reads the request ring, and
/// answers ring to ring: at every size, at offsets, and when the response ring is full
/// (`respond_from` then queues a copy).
#[test]
fn requests_taken_in_place() {
    let server = ServerProcess::start("in-place", &[]);
    let opts = ConnectOptions {
        request_ring: 1 << 18,
        response_ring: 1 << 16,
        ..Default::default()
    };
    let mut c = Client::connect(&server.socket(), 1, &opts).unwrap();
    let max = c.max_request_len().min(c.max_response_len());
    for size in [0usize, 1, 255, 256, 257, 4096, max] {
        let payload: Vec<u8> = (0..size).map(|i| (i * 11 + size) as u8).collect();
        let r = c.request(cmd::ECHO_IN_PLACE, &payload).unwrap();
        assert_eq!(r.data, payload, "size {size}");
        let r = c.request(cmd::ROTATE_IN_PLACE, &payload).unwrap();
        let mut rotated = payload.clone();
        rotated.rotate_left(usize::from(size > 0));
        assert_eq!(r.data, rotated, "size {size}");
    }
    // More in flight than the response ring holds: later answers wait in the queue.
    let big = (max / 3).max(1);
    let mut want = HashMap::new();
    for i in 0..12u8 {
        let payload = vec![i; big];
        want.insert(
            c.send_request(cmd::ECHO_IN_PLACE, &payload).unwrap(),
            payload,
        );
    }
    while !want.is_empty() {
        let (id, r) = c.receive_response(Some(Duration::from_secs(5))).unwrap();
        assert_eq!(r.unwrap().data, want.remove(&id).unwrap());
    }
    // The copying path is untouched.
    assert_eq!(c.request(cmd::ECHO, b"copied").unwrap().data, b"copied");
}

/// A request written in place in the request ring (`reserve_request`): committed it is
/// answered like a copied one; dropped it sends nothing; too large is refused.
#[test]
fn requests_written_in_place() {
    let server = ServerProcess::start("request-grant", &[]);
    let opts = ConnectOptions {
        request_ring: 1 << 16,
        response_ring: 1 << 16,
        ..Default::default()
    };
    let mut c = Client::connect(&server.socket(), 1, &opts).unwrap();
    let max = c.max_request_len().min(c.max_response_len());
    for size in [0usize, 3, 300, max] {
        let payload: Vec<u8> = (0..size).map(|i| (i * 5 + size) as u8).collect();
        let mut g = c.reserve_request(cmd::ECHO_IN_PLACE, size).unwrap();
        assert_eq!(g.len(), size);
        g.write_at(0, &payload);
        let id = g.commit().unwrap();
        assert_eq!(
            c.wait_response(id, None).unwrap().data,
            payload,
            "size {size}"
        );
    }
    // Dropped: nothing sent, nothing outstanding.
    {
        let mut g = c.reserve_request(cmd::ECHO, 10).unwrap();
        g.fill(9);
    }
    assert_eq!(c.outstanding(), 0);
    // Filled and truncated.
    let mut g = c.reserve_request(cmd::ECHO, 100).unwrap();
    g.fill(4);
    g.truncate(7);
    let id = g.commit().unwrap();
    assert_eq!(c.wait_response(id, None).unwrap().data, [4; 7]);
    assert!(matches!(
        c.reserve_request(cmd::ECHO, c.max_request_len() + 1),
        Err(ClientError::TooLarge { .. })
    ));
    assert!(matches!(
        c.reserve_request(cmd::ECHO, usize::MAX),
        Err(ClientError::TooLarge { .. })
    ));
    assert_eq!(c.outstanding(), 0);
    // More than the ring holds, one after another: each waits for room (responses
    // that arrive meanwhile are stashed, so they come back in any order).
    let mut want = HashMap::new();
    for i in 0..40u8 {
        let mut g = c.reserve_request(cmd::ECHO, max / 4).unwrap();
        g.fill(i);
        want.insert(g.commit().unwrap(), i);
    }
    while !want.is_empty() {
        let (id, r) = c.receive_response(Some(Duration::from_secs(5))).unwrap();
        let i = want.remove(&id).unwrap();
        assert!(r.unwrap().data == vec![i; max / 4], "request {i}");
    }
}

#[test]
fn deferred_and_pipelined_responses() {
    let server = ServerProcess::start("pipeline", &[]);
    let mut c = connect(&server, 1);
    let mut expected = HashMap::new();
    for i in 0..100u32 {
        let payload = i.to_le_bytes();
        let (command, want) = if i % 3 == 0 {
            (
                cmd::DEFER,
                payload.iter().rev().copied().collect::<Vec<_>>(),
            )
        } else {
            (cmd::ECHO, payload.to_vec())
        };
        expected.insert(c.send_request(command, &payload).unwrap(), want);
    }
    assert_eq!(c.outstanding(), 100);
    // Take a few by id, out of order, then the rest as they come.
    let ids: Vec<u64> = expected.keys().copied().take(5).collect();
    for id in ids {
        let want = expected.remove(&id).unwrap();
        assert_eq!(
            c.wait_response(id, Some(Duration::from_secs(5)))
                .unwrap()
                .data,
            want
        );
    }
    while !expected.is_empty() {
        let (id, r) = c.receive_response(Some(Duration::from_secs(5))).unwrap();
        assert_eq!(r.unwrap().data, expected.remove(&id).unwrap());
    }
    assert_eq!(c.outstanding(), 0);
    assert!(matches!(
        c.wait_response(9999, None),
        Err(ClientError::UnknownRequest(9999))
    ));
}

fn wait_for_disconnects(c: &mut Client, at_least: u64) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let n = u64::from_le_bytes(
            c.request(cmd::DISCONNECTS, b"")
                .unwrap()
                .data
                .try_into()
                .unwrap(),
        );
        if n >= at_least || Instant::now() > deadline {
            return n;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The fd count once two reads 50 ms apart agree (at most 2 s).
fn settled_fd_count(pid: u32) -> usize {
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut last = fd_count(pid);
    loop {
        std::thread::sleep(Duration::from_millis(50));
        let now = fd_count(pid);
        if now == last || Instant::now() > deadline {
            return now;
        }
        last = now;
    }
}

fn fd_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}

fn spawn_client(server: &ServerProcess, state: &str) -> std::process::Child {
    use std::io::BufRead;
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_client", "--ignored", "--nocapture"])
        .env("COROIPC_CLIENT_OF", &server.name)
        .env("COROIPC_CLIENT_STATE", state)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    while let Some(Ok(l)) = lines.next() {
        if l.contains("CONNECTED") {
            break;
        }
    }
    child
}

#[test]
fn killed_clients_are_cleaned_up_once() {
    let server = ServerProcess::start("killclient", &[]);
    let mut observer = connect(&server, 1);
    let pid = server.child.id();
    // After a round trip: the server has finished the observer's handshake (and
    // closed the memfd it sent). It builds the next client's spare (three fds) just
    // after serving the requests already waiting, so the round trip can come back
    // before the spare exists: the baseline is the count once it holds still.
    let mut disconnects = wait_for_disconnects(&mut observer, 0);
    let baseline_fds = settled_fd_count(pid);
    for state in [
        "mid_handshake",
        "idle",
        "in_request",
        "holding_guard",
        "dispatch_full",
    ] {
        let mut child = spawn_client(&server, state);
        std::thread::sleep(Duration::from_millis(20));
        if state != "mid_handshake" {
            assert!(
                fd_count(pid) > baseline_fds,
                "{state}: the client holds server fds"
            );
        }
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(child.id() as i32),
            nix::sys::signal::SIGKILL,
        )
        .unwrap();
        child.wait().unwrap();
        if state == "mid_handshake" {
            // Never connected: no callback, and the socket is closed on EOF.
            let deadline = Instant::now() + Duration::from_secs(2);
            while fd_count(pid) != baseline_fds && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
            assert_eq!(
                fd_count(pid),
                baseline_fds,
                "{state}: server fds back to baseline"
            );
            assert_eq!(
                wait_for_disconnects(&mut observer, disconnects),
                disconnects,
                "{state}: no callback"
            );
            continue;
        }
        disconnects += 1;
        assert_eq!(
            wait_for_disconnects(&mut observer, disconnects),
            disconnects,
            "{state}: callback ran"
        );
        // Exactly once: no second callback shows up later.
        std::thread::sleep(Duration::from_millis(30));
        assert_eq!(
            wait_for_disconnects(&mut observer, disconnects),
            disconnects,
            "{state}: ran once"
        );
        assert_eq!(
            fd_count(pid),
            baseline_fds,
            "{state}: server fds back to baseline"
        );
    }
}

/// A closed connection's descriptors go within its deferral (1 ms, SPEC §2.6) even
/// when nothing else happens on the server after it.
#[test]
fn a_closed_connection_is_released_on_an_idle_server() {
    let server = ServerProcess::start("idlerelease", &[]);
    let pid = server.child.id();
    // The first connection makes the server build its spare.
    drop(connect(&server, 1));
    let mut c = connect(&server, 1);
    assert_eq!(c.request(cmd::ECHO, b"x").unwrap().data, b"x");
    std::thread::sleep(Duration::from_millis(20));
    let connected = fd_count(pid);
    drop(c);
    // Nothing more reaches the server: only its deadline can release the connection.
    let deadline = Instant::now() + Duration::from_secs(2);
    while fd_count(pid) + 3 != connected && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(
        fd_count(pid) + 3,
        connected,
        "the socket and both doorbells are closed"
    );
}

#[test]
fn server_killed_wakes_blocked_client_at_once() {
    for mode in [WaitMode::default(), WaitMode::Block] {
        let mut server = ServerProcess::start("killserver", &[]);
        let opts = ConnectOptions {
            wait: mode,
            ..Default::default()
        };
        let mut c = Client::connect(&server.socket(), 1, &opts).unwrap();
        let mut d = Client::connect(&server.socket(), 1, &opts).unwrap();
        let pid = server.child.id() as i32;
        let killer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            let at = Instant::now();
            nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::SIGKILL)
                .unwrap();
            at
        });
        let blocked = std::thread::spawn(move || {
            let r = d.dispatch_recv(None).map(|m| m.map(|m| m.len()));
            (Instant::now(), r.is_err())
        });
        // A third client waits in poll(2) on its pollable fd.
        let mut e = Client::connect(&server.socket(), 1, &opts).unwrap();
        assert!(e.dispatch_recv(Some(Duration::ZERO)).unwrap().is_none());
        let polling = std::thread::spawn(move || {
            let mut fds = [nix::poll::PollFd::new(
                e.as_fd(),
                nix::poll::PollFlags::POLLIN,
            )];
            let n = nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(5000u16)).unwrap();
            let woke = Instant::now();
            assert_eq!(n, 1, "the fd reports the server's death");
            let r = e.dispatch_recv(Some(Duration::ZERO));
            (woke, matches!(r, Err(ClientError::Disconnected)))
        });
        let err = c.request(cmd::HANG, b"x").unwrap_err();
        let woke = Instant::now();
        let killed_at = killer.join().unwrap();
        server.kill();
        assert!(matches!(err, ClientError::Disconnected), "{err}");
        assert!(
            woke.duration_since(killed_at) < Duration::from_millis(100),
            "request woke {:?} after the kill",
            woke - killed_at
        );
        let (dispatch_woke, dispatch_err) = blocked.join().unwrap();
        assert!(dispatch_err, "dispatch_recv reports the disconnect");
        assert!(dispatch_woke.duration_since(killed_at) < Duration::from_millis(100));
        let (poll_woke, poll_err) = polling.join().unwrap();
        assert!(poll_err, "dispatch_recv after poll reports the disconnect");
        assert!(poll_woke.duration_since(killed_at) < Duration::from_millis(100));
        // Later calls fail at once.
        assert!(matches!(
            c.request(cmd::ECHO, b""),
            Err(ClientError::Disconnected)
        ));
    }
}

/// Readiness first: an event loop that only ever polls the client's fd and then
/// drains with the non-blocking calls never misses a response or a dispatch message.
#[test]
fn readiness_first_never_loses_an_event() {
    let server = ServerProcess::start("readiness", &[]);
    let mut c = connect(&server, 1);
    let mut waiting: Vec<u64> = (0..200u32)
        .map(|i| c.send_request(cmd::ECHO, &i.to_le_bytes()).unwrap())
        .collect();
    let dispatch_req = c
        .send_request(
            cmd::DISPATCH,
            &[200u32.to_le_bytes(), 64u32.to_le_bytes()].concat(),
        )
        .unwrap();
    waiting.push(dispatch_req);
    let (mut responses, mut dispatched) = (0usize, 0u32);
    while responses < 201 || dispatched < 200 {
        let mut fds = [nix::poll::PollFd::new(
            c.as_fd(),
            nix::poll::PollFlags::POLLIN,
        )];
        let n = nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(5000u16)).unwrap();
        assert_eq!(
            n, 1,
            "lost event: {responses} responses and {dispatched} messages so far"
        );
        // Drain everything there is, without blocking.
        let mut still = Vec::new();
        for id in waiting.drain(..) {
            match c.try_response(id).unwrap() {
                Some(r) if id == dispatch_req => {
                    assert_eq!(r.data, 200u32.to_le_bytes());
                    responses += 1;
                }
                Some(r) => {
                    assert_eq!(r.data.len(), 4);
                    responses += 1;
                }
                None => still.push(id),
            }
        }
        waiting = still;
        while let Some(m) = c.dispatch_recv(Some(Duration::ZERO)).unwrap() {
            let mut seq = [0u8; 4];
            m.read_into(&mut seq);
            assert_eq!(u32::from_le_bytes(seq), dispatched, "in order");
            dispatched += 1;
        }
    }
    assert_eq!(c.outstanding(), 0);
    // Nothing left: the fd is quiet after the last drain armed it.
    assert!(c
        .try_receive_response()
        .is_err_and(|e| matches!(e, ClientError::UnknownRequest(0))));
    assert!(c.dispatch_recv(Some(Duration::ZERO)).unwrap().is_none());
    let mut fds = [nix::poll::PollFd::new(
        c.as_fd(),
        nix::poll::PollFlags::POLLIN,
    )];
    assert_eq!(
        nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(100u16)).unwrap(),
        0,
        "no spurious readiness once everything is drained"
    );
}

#[test]
fn a_closer_ends_a_request_blocked_on_another_thread() {
    let server = ServerProcess::start("closer", &[]);
    let mut c = connect(&server, 1);
    let closer = c.closer().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let r = c.request(cmd::HANG, b"x");
        let _ = tx.send((r.map(|_| ()), c));
    });
    // Give the request time to block (a close before it blocks ends it just the same).
    std::thread::sleep(Duration::from_millis(50));
    closer.close();
    let (r, mut c) = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("the blocked request ended after close");
    assert!(matches!(r, Err(ClientError::Disconnected)), "{r:?}");
    assert!(
        matches!(c.request(cmd::ECHO, b"y"), Err(ClientError::Disconnected)),
        "every later call fails"
    );
    closer.close();
}
