//! Safe input never panics a server or hangs a client (issue 14): every timeout takes
//! `Duration::MAX` ("forever") and `Duration::ZERO`, and every request is answered
//! exactly once, even when the service's response cannot be sent. Real processes: the
//! server runs in a child.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::{Duration, Instant};

use coroipc::{Client, ClientError, ConnectError, ConnectOptions, WaitMode};
use support::{cmd, ServerProcess};

#[test]
#[ignore = "entry point of the server child process"]
fn child_server() {
    support::child_entry();
}

/// A bound that only a hang would reach: the assertions are about the outcome.
const SAFETY_NET: Option<Duration> = Some(Duration::from_secs(20));

fn u32_payload(n: usize) -> [u8; 4] {
    u32::try_from(n).unwrap().to_le_bytes()
}

#[test]
fn a_response_that_cannot_be_sent_is_still_answered() {
    let server = ServerProcess::start("toolarge", &[]);
    let opts = ConnectOptions {
        request_ring: 64 << 10,
        response_ring: 4096,
        request_timeout: SAFETY_NET,
        ..Default::default()
    };
    let mut c = Client::connect(&server.socket(), 1, &opts).unwrap();
    let max = c.max_response_len();
    assert!(
        c.max_request_len() > max,
        "requests may be larger than responses"
    );

    // The largest response fits; one byte more is answered RESPONSE_TOO_LARGE.
    assert_eq!(
        c.request(cmd::BIG, &u32_payload(max)).unwrap().data.len(),
        max
    );
    let err = c.request(cmd::BIG, &u32_payload(max + 1)).unwrap_err();
    assert!(matches!(err, ClientError::ResponseTooLarge), "{err}");
    // The service may still send an error reply after the failed attempt.
    let r = c
        .request(cmd::BIG_THEN_ERROR, &u32_payload(max + 1))
        .unwrap();
    assert_eq!((r.status, r.data.len()), (77, 0));
    // A deferred response that fails is answered too.
    let err = c
        .request(cmd::DEFER_BIG, &u32_payload(max + 1))
        .unwrap_err();
    assert!(matches!(err, ClientError::ResponseTooLarge), "{err}");
    assert_eq!(
        c.request(cmd::DEFER_BIG, &u32_payload(8)).unwrap().data,
        [7; 8]
    );
    // A zero-copy grant dropped uncommitted leaves the library's empty answer.
    let r = c.request(cmd::RESERVE_DROP, b"").unwrap();
    assert_eq!((r.status, r.data.len()), (0, 0));
    // A second answer is refused on the server; the client sees the first only.
    assert_eq!(c.request(cmd::TWICE, b"").unwrap().data, [1]);
    // Pipelined: every request gets exactly one answer, in any order.
    let ids: Vec<u64> = (0..6)
        .map(|i| {
            let n = if i % 2 == 0 { max + 1 } else { 3 };
            c.send_request(cmd::BIG, &u32_payload(n)).unwrap()
        })
        .collect();
    for (i, id) in ids.into_iter().enumerate() {
        let r = c.wait_response(id, SAFETY_NET);
        if i % 2 == 0 {
            assert!(matches!(r, Err(ClientError::ResponseTooLarge)), "{r:?}");
        } else {
            assert_eq!(r.unwrap().data, [7; 3]);
        }
    }
    assert_eq!(c.outstanding(), 0);
    assert_eq!(c.request(cmd::ECHO, b"still up").unwrap().data, b"still up");
}

#[test]
fn buffer_too_small_keeps_the_response() {
    let server = ServerProcess::start("bufsmall", &[]);
    let mut c = Client::connect(&server.socket(), 1, &ConnectOptions::default()).unwrap();
    let payload: Vec<u8> = (0..100u8).collect();
    let mut small = [0u8; 10];
    let err = c.request_into(cmd::ECHO, &payload, &mut small).unwrap_err();
    let ClientError::BufferTooSmall { id, needed } = err else {
        panic!("{err}");
    };
    assert_eq!(needed, payload.len());
    assert_eq!(small, [0; 10], "nothing written into a too-small buffer");
    assert_eq!(c.wait_response(id, SAFETY_NET).unwrap().data, payload);
    assert!(matches!(
        c.wait_response(id, SAFETY_NET),
        Err(ClientError::UnknownRequest(i)) if i == id
    ));
    let mut big = [0u8; 100];
    assert_eq!(
        c.request_into(cmd::ECHO, &payload, &mut big).unwrap(),
        (0, 100)
    );
    assert_eq!(big[..], payload[..]);
}

fn modes() -> [WaitMode; 4] {
    [
        WaitMode::SpinThenBlock {
            spin: Duration::MAX,
        },
        WaitMode::SpinThenBlock {
            spin: Duration::ZERO,
        },
        WaitMode::default(),
        WaitMode::Block,
    ]
}

#[test]
fn client_timeouts_take_max_and_zero() {
    let server = ServerProcess::start("timeouts", &[]);
    for wait in modes() {
        // "Forever" everywhere.
        let forever = ConnectOptions {
            connect_timeout: Duration::MAX,
            request_timeout: Some(Duration::MAX),
            wait,
            ..Default::default()
        };
        let mut c = Client::connect(&server.socket(), 1, &forever).unwrap();
        assert_eq!(c.request(cmd::ECHO, b"max").unwrap().data, b"max");
        let id = c.send_request(cmd::ECHO, b"a").unwrap();
        assert_eq!(c.wait_response(id, Some(Duration::MAX)).unwrap().data, b"a");
        let id = c.send_request(cmd::DEFER, b"ab").unwrap();
        let (got, r) = c.receive_response(Some(Duration::MAX)).unwrap();
        assert_eq!((got, r.unwrap().data), (id, b"ba".to_vec()));
        let one = [1u32.to_le_bytes(), 16u32.to_le_bytes()].concat();
        c.request(cmd::DISPATCH, &one).unwrap();
        let msg = c.dispatch_recv(Some(Duration::MAX)).unwrap().unwrap();
        assert_eq!(msg.len(), 16);
        drop(msg);
        assert!(c.dispatch_recv(Some(Duration::ZERO)).unwrap().is_none());

        // "Just look" everywhere: each call returns at once, with a result or Timeout.
        let now = ConnectOptions {
            connect_timeout: Duration::ZERO,
            request_timeout: Some(Duration::ZERO),
            wait,
            ..Default::default()
        };
        match Client::connect(&server.socket(), 1, &now) {
            Ok(mut z) => match z.request(cmd::ECHO, b"zero") {
                Ok(r) => assert_eq!(r.data, b"zero"),
                Err(ClientError::Timeout) => {}
                Err(e) => panic!("{e}"),
            },
            Err(ConnectError::Timeout) => {}
            Err(e) => panic!("{e}"),
        }
        let id = c.send_request(cmd::HANG, b"").unwrap();
        assert!(matches!(
            c.wait_response(id, Some(Duration::ZERO)),
            Err(ClientError::Timeout)
        ));
        assert!(matches!(
            c.receive_response(Some(Duration::ZERO)),
            Err(ClientError::Timeout)
        ));
    }
}

#[test]
fn spinning_forever_still_sees_the_server_die() {
    let mut server = ServerProcess::start("spinkill", &[]);
    let opts = ConnectOptions {
        wait: WaitMode::SpinThenBlock {
            spin: Duration::MAX,
        },
        ..Default::default()
    };
    let mut c = Client::connect(&server.socket(), 1, &opts).unwrap();
    let mut d = Client::connect(&server.socket(), 1, &opts).unwrap();
    let blocked = std::thread::spawn(move || {
        let r = d.dispatch_recv(Some(Duration::MAX)).map(|m| m.is_some());
        (Instant::now(), r)
    });
    std::thread::sleep(Duration::from_millis(100));
    let pid = nix::unistd::Pid::from_raw(server.child.id() as i32);
    let killer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(100));
        nix::sys::signal::kill(pid, nix::sys::signal::SIGKILL).unwrap();
        Instant::now()
    });
    let err = c.request(cmd::HANG, b"").unwrap_err();
    let woke = Instant::now();
    let killed = killer.join().unwrap();
    server.kill();
    assert!(matches!(err, ClientError::Disconnected), "{err}");
    let (dispatch_woke, r) = blocked.join().unwrap();
    assert!(matches!(r, Err(ClientError::Disconnected)), "{r:?}");
    // Within a few liveness checks (1 ms apart), not after some long slice.
    for at in [woke, dispatch_woke] {
        let late = at.saturating_duration_since(killed);
        assert!(
            late < Duration::from_secs(2),
            "woke {late:?} after the kill"
        );
    }
}

#[test]
fn server_limits_take_max() {
    let mut server = ServerProcess::start("forever", &[("COROIPC_LIMITS_FOREVER", "1")]);
    // A half-finished handshake is kept (no timeout), and does not stop others.
    let mut half = coroipc::raw::connect(&server.socket(), None).unwrap();
    std::io::Write::write_all(&mut half, b"CIPC").unwrap();
    for wait in modes() {
        let opts = ConnectOptions {
            wait,
            request_timeout: SAFETY_NET,
            ..Default::default()
        };
        let mut c = Client::connect(&server.socket(), 1, &opts).unwrap();
        for i in 0..200u32 {
            let r = c.request(cmd::ECHO, &i.to_le_bytes()).unwrap();
            assert_eq!(r.data, i.to_le_bytes());
        }
    }
    assert!(server.child.try_wait().unwrap().is_none(), "server alive");
}

#[test]
fn a_stop_before_run_is_not_lost() {
    let name = format!("coroipc-test-{}-stopfirst", std::process::id());
    let mut server = coroipc::ServerBuilder::new(coroipc::SocketName::abstract_name(name))
        .build()
        .unwrap();
    let stop = server.stop_handle();
    stop.stop();
    let (tx, rx) = std::sync::mpsc::channel();
    let runner = std::thread::spawn(move || {
        let r = server.run();
        tx.send(()).unwrap();
        (r, server)
    });
    let returned = rx.recv_timeout(Duration::from_secs(10)).is_ok();
    if !returned {
        stop.stop(); // let the thread end either way
    }
    let (r, mut server) = runner.join().unwrap();
    assert!(returned, "run ignored a stop made before it started");
    r.unwrap();
    // The flag was consumed: a later stop (from another thread) ends a later run.
    let stop2 = server.stop_handle();
    let t = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(50));
        stop2.stop();
    });
    server.run().unwrap();
    t.join().unwrap();
}

#[test]
fn pipelining_past_every_ring_never_deadlocks() {
    // 5,000 requests of 200 bytes without reading a response: far more than the 4 KiB
    // request and response rings hold. The server stops reading requests while its
    // responses queue; the client must take the responses out of the way while it
    // waits for request space, or both sides wait forever.
    let server = ServerProcess::start("pipeline", &[]);
    let opts = ConnectOptions {
        request_ring: 4096,
        response_ring: 4096,
        request_timeout: Some(Duration::from_secs(10)),
        ..Default::default()
    };
    let mut c = Client::connect(&server.socket(), 1, &opts).unwrap();
    let ids: Vec<u64> = (0..5000u32)
        .map(|i| c.send_request(cmd::ECHO, &[i.to_le_bytes(); 50].concat()))
        .collect::<Result<_, _>>()
        .unwrap();
    for (i, id) in (0u32..).zip(ids) {
        let r = c.wait_response(id, SAFETY_NET).unwrap();
        assert_eq!(r.data, [i.to_le_bytes(); 50].concat());
    }
    assert_eq!(c.outstanding(), 0);
    assert_eq!(c.stats().responses, 5000);
}

/// A request call that times out gives its request up (its caller never saw the id):
/// nothing stays in flight, and the late answer is dropped, not stashed for good (a
/// server answering every request late grew the stash by one payload per timeout).
#[test]
fn a_timed_out_request_call_leaves_nothing_in_flight() {
    let server = ServerProcess::start("giveup", &[]);
    let opts = ConnectOptions {
        request_timeout: Some(Duration::from_micros(100)),
        ..Default::default()
    };
    let mut c = Client::connect(&server.socket(), 1, &opts).unwrap();
    // DEFER answers 5 ms later, from another thread.
    for _ in 0..3 {
        assert!(matches!(
            c.request(cmd::DEFER, b"late"),
            Err(ClientError::Timeout)
        ));
        assert_eq!(c.outstanding(), 0, "given up");
        let mut buf = [0u8; 16];
        assert!(matches!(
            c.request_into(cmd::DEFER, b"late", &mut buf),
            Err(ClientError::Timeout)
        ));
        assert_eq!(c.outstanding(), 0, "given up (in place)");
    }
    std::thread::sleep(Duration::from_millis(50));
    let mut c2 = c;
    let id = c2.send_request(cmd::ECHO, b"after").unwrap();
    let r = c2.wait_response(id, Some(Duration::from_secs(5))).unwrap();
    assert_eq!(r.data, b"after", "the late answers were dropped");
    assert_eq!(c2.outstanding(), 0);
}
