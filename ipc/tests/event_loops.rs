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
