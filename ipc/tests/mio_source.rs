//! mio: a client and a server registered as `mio::event::Source`s, driven by a mio
//! loop only (non-blocking calls on readiness).
#![cfg(feature = "mio")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::HashSet;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use coroipc::{Client, ClientError, ConnectOptions, ServerBuilder, SocketName};
use mio::{Events, Interest, Poll, Token};
use support::{cmd, ServerProcess, TestService};

#[test]
#[ignore = "entry point of the server child process"]
fn child_server() {
    support::child_entry();
}

/// What one mio-driven client has seen.
#[derive(Default)]
struct Tally {
    responses: u32,
    dispatched: u32,
    accepted: u32,
}

/// Takes everything there is without blocking (each call that finds nothing
/// re-arms the notification fd).
fn drain(c: &mut Client, tally: &mut Tally, dispatch_ids: &HashSet<u64>) {
    loop {
        let (id, r) = match c.try_receive_response() {
            Ok(Some(reply)) => reply,
            // Nothing in flight (and nothing set aside): nothing to take.
            Ok(None) | Err(ClientError::UnknownRequest(0)) => break,
            Err(e) => panic!("{e}"),
        };
        let r = r.unwrap();
        if dispatch_ids.contains(&id) {
            tally.accepted += u32::from_le_bytes(r.data[..4].try_into().unwrap());
        }
        tally.responses += 1;
    }
    while let Some(m) = c.dispatch_recv(Some(Duration::ZERO)).unwrap() {
        let mut seq = [0u8; 4];
        m.read_into(&mut seq);
        assert_eq!(u32::from_le_bytes(seq), tally.dispatched % 10, "in order");
        tally.dispatched += 1;
    }
}

#[test]
fn a_mio_loop_drives_ten_thousand_requests_and_dispatch_messages() {
    let mut server = ServerProcess::start("mio-10k", &[]);
    let mut client = Client::connect(&server.socket(), 1, &ConnectOptions::default()).unwrap();
    let mut poll = Poll::new().unwrap();
    poll.registry()
        .register(&mut client, Token(0), Interest::READABLE)
        .unwrap();
    let mut events = Events::with_capacity(8);
    let (mut sent, mut tally) = (0u32, Tally::default());
    let mut dispatch_ids = HashSet::new();
    while tally.responses < 10_000 || tally.dispatched < 10_000 {
        // Up to 32 in flight; every tenth request asks for ten dispatch messages.
        let mut ring_full = false;
        while sent < 10_000 && client.outstanding() < 32 {
            let (command, payload) = if sent % 10 == 0 {
                (
                    cmd::DISPATCH,
                    [10u32.to_le_bytes(), 64u32.to_le_bytes()].concat(),
                )
            } else {
                (cmd::ECHO, sent.to_le_bytes().to_vec())
            };
            match client.try_send_request(command, &payload).unwrap() {
                Some(id) => {
                    if command == cmd::DISPATCH {
                        dispatch_ids.insert(id);
                    }
                    sent += 1;
                }
                None => {
                    ring_full = true;
                    break;
                }
            }
        }
        drain(&mut client, &mut tally, &dispatch_ids);
        if tally.responses == 10_000 && tally.dispatched == tally.accepted {
            break;
        }
        if sent < 10_000 && client.outstanding() < 32 && !ring_full {
            continue; // room to send more: no need to wait
        }
        poll.poll(&mut events, Some(Duration::from_secs(5)))
            .unwrap();
        assert!(
            !events.is_empty(),
            "lost event: {} responses, {} dispatch messages",
            tally.responses,
            tally.dispatched
        );
    }
    assert_eq!(tally.responses, 10_000);
    assert_eq!(tally.accepted, 10_000, "the server accepted every message");
    assert_eq!(tally.dispatched, 10_000);

    // Five requests that will never be answered; then the server dies.
    let hung: Vec<u64> = (0..5)
        .map(|_| client.send_request(cmd::HANG, b"").unwrap())
        .collect();
    assert!(client.try_response(hung[0]).unwrap().is_none());
    server.kill();
    let killed = Instant::now();
    poll.poll(&mut events, Some(Duration::from_secs(5)))
        .unwrap();
    assert!(!events.is_empty(), "the server's death is an event");
    for id in hung {
        assert!(matches!(
            client.try_response(id),
            Err(ClientError::Disconnected)
        ));
    }
    assert!(matches!(
        client.dispatch_recv(Some(Duration::ZERO)),
        Err(ClientError::Disconnected)
    ));
    let elapsed = killed.elapsed();
    assert!(
        elapsed < Duration::from_millis(100),
        "noticed after {elapsed:?}"
    );
}

#[test]
fn a_server_registered_with_mio_serves_blocking_clients() {
    let name = SocketName::abstract_name(format!("coroipc-mio-server-{}", std::process::id()));
    let mut server = ServerBuilder::new(name.clone())
        .service(
            1,
            TestService {
                disconnects: Arc::new(AtomicU64::new(0)),
                log: Arc::new(Mutex::new(Vec::new())),
            },
        )
        .build()
        .unwrap();
    let stop = server.stop_handle();
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let finished = done.clone();
    let clients = std::thread::spawn(move || {
        let mut c = Client::connect(&name, 1, &ConnectOptions::default()).unwrap();
        for i in 0..1000u32 {
            assert_eq!(
                c.request(cmd::ECHO, &i.to_le_bytes()).unwrap().data,
                i.to_le_bytes()
            );
        }
        finished.store(true, std::sync::atomic::Ordering::SeqCst);
        stop.stop(); // rings the server's poll fd: the loop below sees `done`
    });
    let mut poll = Poll::new().unwrap();
    poll.registry()
        .register(&mut server, Token(7), Interest::READABLE)
        .unwrap();
    let mut events = Events::with_capacity(8);
    let mut turns = 0u64;
    loop {
        // Level-triggered inside: run until a turn handles nothing.
        while server.run_once(Some(Duration::ZERO)).unwrap() > 0 {
            turns += 1;
        }
        if done.load(std::sync::atomic::Ordering::SeqCst) {
            break;
        }
        let timeout = server
            .next_deadline()
            .map(|d| d.saturating_duration_since(Instant::now()));
        poll.poll(&mut events, timeout.or(Some(Duration::from_secs(5))))
            .unwrap();
        assert!(events.iter().all(|e| e.token() == Token(7)));
    }
    clients.join().unwrap();
    assert!(turns > 0);
    assert_eq!(server.stats().connected, 1);
}
