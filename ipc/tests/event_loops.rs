//! Event-loop use of the blocking client through poll(2) only: the non-blocking
//! connect, one stable notification fd, readiness first, and a non-blocking send that
//! waits for room through the fd.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::os::fd::{AsFd, AsRawFd};
use std::time::Duration;

use coroipc::{Client, ConnectOptions, Finish};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use support::{cmd, ServerProcess};

#[test]
#[ignore = "entry point of the server child process"]
fn child_server() {
    support::child_entry();
}

/// Waits up to 5 s for `fd` to read ready; false on timeout.
fn readable(fd: impl AsFd) -> bool {
    let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
    poll(&mut fds, PollTimeout::from(5000u16)).unwrap() == 1
}

fn options() -> ConnectOptions {
    ConnectOptions {
        request_ring: 4096,
        response_ring: 4096,
        ..ConnectOptions::default()
    }
}

#[test]
fn a_non_blocking_connect_driven_by_poll() {
    let server = ServerProcess::start("nb-connect", &[]);
    let mut connecting = Client::connect_start(&server.socket(), 1, &options()).unwrap();
    let fd = connecting.as_raw_fd();
    let mut polls = 0;
    let mut client = loop {
        connecting = match connecting.finish().unwrap() {
            Finish::Connected(c) => break c,
            Finish::Pending(c) => c,
        };
        assert_eq!(connecting.as_raw_fd(), fd, "one socket throughout");
        assert!(!connecting.backlog_full());
        assert!(readable(&connecting), "the server's reply is an event");
        polls += 1;
        assert!(polls < 100);
    };
    // One fd for the client's life, whatever is called.
    let fd = client.as_raw_fd();
    assert_eq!(client.request(cmd::ECHO, b"x").unwrap().data, b"x");
    assert!(client
        .dispatch_recv(Some(Duration::ZERO))
        .unwrap()
        .is_none());
    assert_eq!(client.as_raw_fd(), fd);
    // Readiness first: a request sent, the fd polled before any look.
    let id = client.send_request(cmd::DEFER, b"ab").unwrap();
    assert!(readable(&client), "the response is an event");
    let mut got = None;
    for _ in 0..100 {
        got = client.try_response(id).unwrap();
        if got.is_some() {
            break;
        }
        assert!(readable(&client));
    }
    assert_eq!(got.unwrap().data, b"ba");
    // A refusal comes out of `finish` too.
    let mut refused = Client::connect_start(&server.socket(), 3, &options()).unwrap();
    let e = loop {
        refused = match refused.finish() {
            Ok(Finish::Pending(c)) => c,
            Ok(Finish::Connected(_)) => panic!("service 3 does not exist"),
            Err(e) => break e,
        };
        assert!(readable(&refused));
    };
    assert!(matches!(e, coroipc::ConnectError::NoSuchService(3)), "{e}");
}

#[test]
fn a_non_blocking_send_waits_for_room_through_the_fd() {
    let server = ServerProcess::start("nb-send", &[]);
    let mut c = Client::connect(&server.socket(), 1, &options()).unwrap();
    // 1000-byte requests, no response read: the response ring fills, the server stops
    // reading requests, the request ring fills.
    let payload = [7u8; 1000];
    let (mut ids, mut full) = (Vec::new(), 0);
    while ids.len() < 100 {
        match c.try_send_request(cmd::ECHO, &payload).unwrap() {
            Some(id) => ids.push(id),
            None => {
                full += 1;
                assert!(readable(&c), "room freed is an event ({} sent)", ids.len());
            }
        }
    }
    assert!(full > 0, "the rings filled up");
    for id in ids {
        let r = loop {
            match c.try_response(id).unwrap() {
                Some(r) => break r,
                None => assert!(readable(&c)),
            }
        };
        assert_eq!(r.data, payload);
    }
    assert_eq!(c.outstanding(), 0);
}

/// Not readable within 200 ms.
fn quiet(fd: impl AsFd) -> bool {
    let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
    poll(&mut fds, PollTimeout::from(200u16)).unwrap() == 0
}

#[test]
fn a_response_set_aside_while_looking_for_another_is_an_event() {
    let server = ServerProcess::start("nb-stash", &[]);
    let mut c = Client::connect(&server.socket(), 1, &options()).unwrap();
    let never = c.send_request(cmd::HANG, b"").unwrap();
    let echo = c.send_request(cmd::ECHO, b"e").unwrap();
    assert!(readable(&c), "the echo arrived");
    // Looking for the other request moves the echo into the stash (and drains the
    // doorbell while arming): the fd must still say something is ready.
    assert!(c.try_response(never).unwrap().is_none());
    assert!(readable(&c), "the stashed response is reported");
    assert_eq!(c.try_response(echo).unwrap().unwrap().data, b"e");
}

#[test]
fn a_late_answer_to_an_abandoned_request_is_no_event() {
    let server = ServerProcess::start("nb-late-abandoned", &[]);
    let mut c = Client::connect(&server.socket(), 1, &options()).unwrap();
    let id = c.send_request(cmd::DEFER, b"ab").unwrap();
    assert!(c.abandon(id));
    // The answer (after 5 ms) lands in the ring; a loop that only reads dispatch
    // messages arms the fd, which must go quiet: nothing is left for any call.
    assert!(readable(&c), "the answer arrived");
    assert!(c.dispatch_recv(Some(Duration::ZERO)).unwrap().is_none());
    assert!(quiet(&c), "the discarded answer is still reported");
    assert_eq!(c.request(cmd::ECHO, b"e").unwrap().data, b"e");
}

#[test]
fn an_idle_client_after_its_last_answer_is_quiet() {
    let server = ServerProcess::start("nb-idle-quiet", &[]);
    let mut c = Client::connect(&server.socket(), 1, &options()).unwrap();
    c.send_request(cmd::ECHO, b"e").unwrap();
    assert!(readable(&c), "the answer arrived");
    // A loop's round: the answer, then nothing in flight (the call that says so
    // re-arms): the doorbell's ring for the answer is drained, the fd goes quiet.
    let (_, got) = c.try_receive_response().unwrap().unwrap();
    assert_eq!(got.unwrap().data, b"e");
    let none = c.try_receive_response();
    assert!(
        matches!(none, Err(coroipc::ClientError::UnknownRequest(0))),
        "{none:?}"
    );
    assert!(quiet(&c), "an idle client's fd reads ready");
    // Still armed: the next answer is an event.
    let id = c.send_request(cmd::ECHO, b"f").unwrap();
    assert!(readable(&c), "the next answer is reported");
    assert_eq!(c.try_response(id).unwrap().unwrap().data, b"f");
}

#[test]
fn a_stashed_response_stays_an_event_through_later_looks() {
    let server = ServerProcess::start("nb-stash-later", &[]);
    let mut c = Client::connect(&server.socket(), 1, &options()).unwrap();
    let never = c.send_request(cmd::HANG, b"").unwrap();
    let other = c.send_request(cmd::HANG, b"").unwrap();
    let echo = c.send_request(cmd::ECHO, b"e").unwrap();
    assert!(readable(&c), "the echo arrived");
    // The first look sets the echo aside; the second, for another request, arms the
    // fd again (draining the doorbell) before the caller polls: the echo still waits.
    assert!(c.try_response(never).unwrap().is_none());
    assert!(c.try_response(other).unwrap().is_none());
    assert!(readable(&c), "the stashed response is still reported");
    assert_eq!(c.try_response(echo).unwrap().unwrap().data, b"e");
}

#[test]
fn a_dispatch_message_is_not_lost_to_the_looks_after_it() {
    let server = ServerProcess::start("nb-dispatch-later", &[]);
    let mut c = Client::connect(&server.socket(), 1, &options()).unwrap();
    let never = c.send_request(cmd::HANG, b"").unwrap();
    // A loop that looks for dispatch first: nothing yet.
    assert!(c.dispatch_recv(Some(Duration::ZERO)).unwrap().is_none());
    let ask = [1u32.to_le_bytes(), 16u32.to_le_bytes()].concat();
    let r = c.send_request(cmd::DISPATCH, &ask).unwrap();
    // The message and the answer arrive while the loop is still in its round (no
    // poll in between); its looks for responses arm the fd, twice.
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(c.try_response(r).unwrap().unwrap().data, 1u32.to_le_bytes());
    assert!(c.try_response(never).unwrap().is_none());
    assert!(c.try_response(never).unwrap().is_none());
    assert!(readable(&c), "the dispatch message is reported");
    assert!(c.dispatch_recv(Some(Duration::ZERO)).unwrap().is_some());
}

#[test]
fn room_freed_is_reported_even_after_other_calls_drained_the_doorbell() {
    let server = ServerProcess::start("nb-space", &[]);
    let mut c = Client::connect(&server.socket(), 1, &options()).unwrap();
    // Three responses of nearly the largest size (two fit: the ring keeps the word
    // after its newest frame free, coroipc-ring SPEC §1.3a): they do not all fit the
    // response ring, and the server stops reading requests until the client takes one.
    let big = (c.max_response_len() as u32 - 8).to_le_bytes();
    let bigs: Vec<u64> = (0..3)
        .map(|_| c.send_request(cmd::BIG, &big).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(50));
    // Fill the request ring with requests that are never answered.
    let payload = [1u8; 1000];
    while c.try_send_request(cmd::HANG, &payload).unwrap().is_some() {}
    // That send set responses aside, so the server went on: it answered the rest and
    // read the hung requests; room is freed, and the doorbell rang for it.
    std::thread::sleep(Duration::from_millis(50));
    for id in bigs {
        assert!(c.try_response(id).unwrap().is_some(), "answered by now");
    }
    // These calls find nothing and arm — the first drains the ring that announced
    // the room, the second the report the first made.
    assert!(c.dispatch_recv(Some(Duration::ZERO)).unwrap().is_none());
    assert!(c.dispatch_recv(Some(Duration::ZERO)).unwrap().is_none());
    assert!(readable(&c), "the freed room is still reported");
    assert!(c.try_send_request(cmd::HANG, &payload).unwrap().is_some());
}

#[test]
fn a_full_ring_and_a_dead_server_is_disconnected_not_would_block() {
    let mut server = ServerProcess::start("nb-dead", &[]);
    let mut c = Client::connect(&server.socket(), 1, &options()).unwrap();
    let big = 3000u32.to_le_bytes();
    c.send_request(cmd::BIG, &big).unwrap();
    c.send_request(cmd::BIG, &big).unwrap();
    std::thread::sleep(Duration::from_millis(50));
    server.kill();
    let payload = [1u8; 1000];
    let mut sent = 0;
    let e = loop {
        match c.try_send_request(cmd::HANG, &payload) {
            Ok(Some(_)) => sent += 1,
            Ok(None) => panic!("would block after {sent} sends, with the server dead"),
            Err(e) => break e,
        }
        assert!(sent < 100);
    };
    assert!(matches!(e, coroipc::ClientError::Disconnected), "{e}");
}

#[test]
fn an_unread_dispatch_message_keeps_the_fd_readable_until_taken() {
    let server = ServerProcess::start("nb-unread", &[]);
    let mut c = Client::connect(&server.socket(), 1, &options()).unwrap();
    let never = c.send_request(cmd::HANG, b"").unwrap();
    let ask = [1u32.to_le_bytes(), 16u32.to_le_bytes()].concat();
    let r = c.send_request(cmd::DISPATCH, &ask).unwrap();
    let got = loop {
        if let Some(r) = c.try_response(r).unwrap() {
            break r;
        }
        assert!(readable(&c));
    };
    assert_eq!(got.data, 1u32.to_le_bytes());
    // Level readiness, as a socket with unread data: every arming reports the message
    // while it waits (a report an arming drained before the caller's poll saw it would
    // otherwise be lost; see `a_dispatch_message_is_not_lost_to_the_looks_after_it`).
    for _ in 0..3 {
        assert!(c.try_response(never).unwrap().is_none());
        assert!(readable(&c), "the waiting message is reported");
    }
    // Taking it (and a look that finds nothing more) quiets the fd.
    assert!(c.dispatch_recv(Some(Duration::ZERO)).unwrap().is_some());
    assert!(c.dispatch_recv(Some(Duration::ZERO)).unwrap().is_none());
    assert!(c.try_response(never).unwrap().is_none());
    assert!(quiet(&c), "nothing waits any more");
}

#[test]
fn dispatch_batches_arrive_in_order_and_a_full_ring_stops_a_batch() {
    let server = ServerProcess::start("batch", &[]);
    let opts = ConnectOptions {
        dispatch_ring: 64 << 10,
        ..options()
    };
    let mut c = Client::connect(&server.socket(), 1, &opts).unwrap();
    // 1,000 messages of 32 bytes fit the ring: all accepted, received in batches.
    let ask = [1000u32.to_le_bytes(), 32u32.to_le_bytes()].concat();
    let r = c.request(cmd::DISPATCH_BATCH, &ask).unwrap();
    assert_eq!(r.data, 1000u32.to_le_bytes());
    let mut next = 0u32;
    while next < 1000 {
        let n = c
            .dispatch_recv_batch(64, Some(Duration::from_secs(5)), |m| {
                let mut seq = [0u8; 4];
                m.read_into(&mut seq);
                assert_eq!(u32::from_le_bytes(seq), next, "in order");
                assert_eq!(m.len(), 32);
                next += 1;
            })
            .unwrap();
        assert!(n > 0 && n <= 64, "{n}");
    }
    assert_eq!(c.stats().dispatch_received, 1000);
    assert_eq!(
        c.dispatch_recv_batch(64, Some(Duration::ZERO), |_| panic!("nothing left"))
            .unwrap(),
        0
    );
    // 5,000 messages of 1 KiB do not fit a 64 KiB ring and its 64 KiB queue: the
    // batch stops at the first refused one, and what was accepted arrives in order.
    let ask = [5000u32.to_le_bytes(), 1024u32.to_le_bytes()].concat();
    let r = c.request(cmd::DISPATCH_BATCH, &ask).unwrap();
    let accepted = u32::from_le_bytes(r.data[..4].try_into().unwrap());
    assert!(accepted > 0 && accepted < 5000, "{accepted}");
    let mut next = 0u32;
    while next < accepted {
        let m = c
            .dispatch_recv(Some(Duration::from_secs(5)))
            .unwrap()
            .unwrap();
        let mut seq = [0u8; 4];
        m.read_into(&mut seq);
        assert_eq!(u32::from_le_bytes(seq), next);
        next += 1;
    }
}

/// A blocking connect to a listener whose backlog is full (the socket is non-blocking
/// throughout, so it retries) says `Timeout` once its timeout passes: no hang, no
/// early give-up.
#[test]
fn blocking_connect_times_out_on_a_full_backlog() {
    let name =
        coroipc::SocketName::abstract_name(format!("coroipc-test-backlog-{}", std::process::id()));
    let _listener = coroipc::raw::listen(&name, 1).unwrap();
    let mut held = Vec::new();
    loop {
        let s = coroipc::raw::unconnected().unwrap();
        if !coroipc::raw::try_connect(&name, &s).unwrap() {
            break;
        }
        held.push(s);
        assert!(held.len() < 10_000, "backlog never filled");
    }
    let opts = ConnectOptions {
        connect_timeout: Duration::from_millis(200),
        ..Default::default()
    };
    let started = std::time::Instant::now();
    let e = Client::connect(&name, 1, &opts).unwrap_err();
    assert!(matches!(e, coroipc::ConnectError::Timeout), "{e}");
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(200), "{waited:?}");
    assert!(waited < Duration::from_secs(5), "{waited:?}");
}
