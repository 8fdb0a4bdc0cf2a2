//! A client that saturates its server doorbell (its buffer full, so every later ring
//! fails with EAGAIN) can still be disconnected by the service: the
//! disconnect request travels on a server-owned doorbell (review finding 1.2).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd};
use std::sync::mpsc;
use std::time::Duration;

use coroipc::protocol::{ConnectReply, ConnectRequest, CONNECT_FDS, CONNECT_REPLY_LEN};
use coroipc::raw;
use coroipc::{Connection, HandlerError, Request, Responder, ServerBuilder, Service, SocketName};

struct Keep(mpsc::Sender<Connection>);

impl Service for Keep {
    type Private = ();
    fn on_connect(&mut self, conn: &Connection) -> Result<(), i32> {
        self.0.send(conn.clone()).unwrap();
        Ok(())
    }
    fn handle(
        &mut self,
        _: &mut (),
        _: Request<'_>,
        _: &mut Responder<'_>,
    ) -> Result<(), HandlerError> {
        Ok(())
    }
}

#[test]
fn a_saturated_doorbell_does_not_stop_a_disconnect() {
    let name = SocketName::abstract_name(format!("coroipc-test-{}-evict", std::process::id()));
    let (conns_tx, conns) = mpsc::channel();
    let (ready_tx, ready) = mpsc::channel();
    let server_name = name.clone();
    let server = std::thread::spawn(move || {
        let mut server = ServerBuilder::new(server_name)
            .service(1, Keep(conns_tx))
            .build()
            .unwrap();
        ready_tx.send(server.stop_handle()).unwrap();
        server.run().unwrap();
    });
    let stop = ready.recv().unwrap();

    // A raw client: handshake by hand, keep the descriptors.
    let mut stream = raw::connect(&name, Some(Duration::from_secs(5))).unwrap();
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
    assert_eq!(ConnectReply::decode(&buf).unwrap().status, 0);
    let conn = conns.recv().unwrap();
    // Saturate the server doorbell: fill the buffer the server reads its rings from
    // (sent into the client's end, they arrive at the server's).
    let client_end = &fds[2];
    let mut sent = 0;
    while nix::sys::socket::send(
        client_end.as_raw_fd(),
        &[0u8; 4096],
        nix::sys::socket::MsgFlags::MSG_DONTWAIT,
    )
    .is_ok()
    {
        sent += 1;
        assert!(sent < 100_000, "the buffer never filled");
    }
    std::thread::sleep(Duration::from_millis(50));

    conn.disconnect();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut byte = [0u8; 1];
    let got = stream.read(&mut byte);
    assert!(
        matches!(got, Ok(0)),
        "the server closed the connection (end of stream), got {got:?}"
    );
    assert!(!conn.is_connected());
    stop.stop();
    server.join().unwrap();
}
