//! Every statistics counter after a scripted exchange, each checked against the value
//! the script implies (issue 13). The server runs in a thread of this process so the
//! test can hold its `Connection` handles and its stats handle.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use coroipc::{
    Client, ClientError, ConnectError, ConnectOptions, Connection, HandlerError, Limits,
    OverflowPolicy, Request, Responder, ServerBuilder, Service, SocketName, WaitMode,
};

const ECHO: u16 = 1;
/// Payload u32 n, u32 size: n dispatch messages of `size` bytes; answers how many
/// were accepted (u32).
const DISPATCH: u16 = 2;

struct Scripted {
    conns: mpsc::Sender<Connection>,
}

impl Service for Scripted {
    type Private = Connection;

    fn on_connect(&mut self, conn: &Connection) -> Result<Connection, i32> {
        if conn.service() == 7 {
            return Err(5);
        }
        let _ = self.conns.send(conn.clone());
        Ok(conn.clone())
    }

    fn handle(
        &mut self,
        conn: &mut Connection,
        req: Request<'_>,
        resp: &mut Responder<'_>,
    ) -> Result<(), HandlerError> {
        match req.command {
            ECHO => {
                let _ = resp.respond(0, req.payload);
            }
            DISPATCH => {
                let word = |i: usize| {
                    let b: [u8; 4] = req.payload[i * 4..i * 4 + 4].try_into().unwrap();
                    u32::from_le_bytes(b)
                };
                let msg = vec![9u8; word(1) as usize];
                let ok = (0..word(0))
                    .filter(|_| conn.dispatch_send(&msg).is_ok())
                    .count() as u32;
                let _ = resp.respond(0, &ok.to_le_bytes());
            }
            _ => return Err(HandlerError::UnknownCommand),
        }
        Ok(())
    }

    fn overflow_policy(&self) -> OverflowPolicy {
        OverflowPolicy::TryAgain
    }
}

fn wait_until(what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn every_counter_after_a_scripted_exchange() {
    let name = SocketName::abstract_name(format!("coroipc-test-{}-stats", std::process::id()));
    let (conns_tx, conns) = mpsc::channel();
    let (ready_tx, ready) = mpsc::channel();
    let deny = Arc::new(AtomicBool::new(false));
    let deny_in_server = deny.clone();
    let server_name = name.clone();
    let server = std::thread::spawn(move || {
        let limits = Limits {
            max_connections: 3,
            handshake_timeout: Duration::from_millis(100),
            min_ring_size: 4096,
            // Two 1,000-byte messages and the 64 bytes each queued message counts.
            max_queued_dispatch_bytes: 2128,
            ..Limits::default()
        };
        let mut server = ServerBuilder::new(server_name)
            .limits(limits)
            .security(move |_| !deny_in_server.load(Ordering::SeqCst))
            .service(
                1,
                Scripted {
                    conns: conns_tx.clone(),
                },
            )
            .service(7, Scripted { conns: conns_tx })
            .build()
            .unwrap();
        ready_tx
            .send((server.stop_handle(), server.stats_handle()))
            .unwrap();
        server.run().unwrap();
    });
    let (stop, stats) = ready.recv().unwrap();

    // Refusals, one of each reason the script can cause.
    let opts = ConnectOptions {
        dispatch_ring: 4096,
        wait: WaitMode::SpinThenBlock {
            spin: Duration::MAX,
        },
        ..Default::default()
    };
    let connect = |service| Client::connect(&name, service, &opts);
    assert!(matches!(connect(2), Err(ConnectError::NoSuchService(2))));
    assert!(matches!(connect(7), Err(ConnectError::Refused(5))));
    deny.store(true, Ordering::SeqCst);
    assert!(matches!(connect(1), Err(ConnectError::AccessDenied)));
    deny.store(false, Ordering::SeqCst);
    let mut junk = coroipc::raw::connect(&name, None).unwrap();
    junk.write_all(&[0xff; 24]).unwrap();
    let mut half = coroipc::raw::connect(&name, None).unwrap();
    half.write_all(b"CIPC").unwrap();
    wait_until("the handshake timeout", || {
        stats.get().handshake_timeouts == 1
    });
    wait_until("the bad handshake", || {
        stats.get().refused.bad_handshake == 1
    });

    // Three connections fill the limit; a fourth is refused.
    let mut c = connect(1).unwrap();
    let others: Vec<Client> = (0..2).map(|_| connect(1).unwrap()).collect();
    assert!(matches!(connect(1), Err(ConnectError::ConnectionLimit)));
    let server_side = conns.recv().unwrap();

    // Requests and responses.
    for _ in 0..3 {
        assert_eq!(c.request(ECHO, &[1; 10]).unwrap().data, [1; 10]);
    }
    // Dispatch: a 4096-byte ring holds 4 messages of 1,000 bytes (1,008-byte frames),
    // the 2,128-byte queue 2 more, the last 2 are refused; the 4th crosses the high
    // watermark (3/4 of the ring).
    let sent = c
        .request(
            DISPATCH,
            &[8u32.to_le_bytes(), 1000u32.to_le_bytes()].concat(),
        )
        .unwrap();
    assert_eq!(sent.data, 6u32.to_le_bytes());
    let before_reading = server_side.stats();
    for _ in 0..6 {
        let m = c
            .dispatch_recv(Some(Duration::from_secs(5)))
            .unwrap()
            .unwrap();
        assert_eq!(m.len(), 1000);
    }
    assert!(matches!(
        c.request(99, b""),
        Err(ClientError::UnknownCommand { command: 99 })
    ));

    let s = before_reading;
    assert_eq!(s.requests, 4);
    assert_eq!(s.request_bytes, 3 * 10 + 8);
    // The dispatch request's own answer (4 bytes) is in: the client has it.
    assert_eq!(s.responses, 4);
    assert_eq!(s.response_bytes, 3 * 10 + 4);
    assert_eq!(s.dispatched, 6);
    assert_eq!(s.dispatch_bytes, 6000);
    assert_eq!(s.queued_sends, 2);
    assert_eq!(s.dispatch_refused, 2);
    assert_eq!(s.flow_control_events, 1);
    assert_eq!((s.dispatch_queue_len, s.dispatch_queue_bytes), (2, 2000));
    assert_eq!(s.response_queue_len, 0);
    // After the reads and the unknown command's empty answer: queues drained.
    wait_until("the last responses", || server_side.stats().responses == 5);
    let s = server_side.stats();
    assert_eq!((s.requests, s.response_bytes), (5, 3 * 10 + 4));
    assert_eq!((s.dispatch_queue_len, s.dispatch_queue_bytes), (0, 0));

    let cs = c.stats();
    assert_eq!(cs.requests, 5);
    assert_eq!(cs.request_bytes, 3 * 10 + 8);
    assert_eq!(cs.responses, 5);
    assert_eq!(cs.dispatch_received, 6);
    assert_eq!(cs.sleeps, 0, "a client spinning forever never sleeps");
    assert_eq!(cs.send_waits, 0);

    let total = stats.get();
    assert_eq!((total.active, total.handshaking), (3, 0));
    assert_eq!(total.connected, 3);
    assert_eq!(total.closed, 0);
    assert_eq!(total.handshake_timeouts, 1);
    let r = total.refused;
    assert_eq!(r.no_such_service, 1);
    assert_eq!(r.by_service, 1);
    assert_eq!(r.access_denied, 1);
    assert_eq!(r.bad_handshake, 1);
    assert_eq!(r.connection_limit, 1);
    assert_eq!((r.out_of_fds, r.no_resources), (0, 0));

    drop(c);
    drop(others);
    wait_until("three closes", || stats.get().closed == 3);
    assert_eq!(stats.get().active, 0);
    stop.stop();
    server.join().unwrap();
}
