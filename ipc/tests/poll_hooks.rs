//! The abstracted poll: a server driven by the application's own loop through
//! `PollHooks` (here a plain poll(2) loop), plus dispatch zero copy, vectored dispatch
//! and per-connection statistics.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use coroipc::{
    Client, ConnectOptions, Connection, HandlerError, PollHooks, Request, Responder, ServerBuilder,
    Service, SocketName, Token,
};

#[derive(Clone, Default)]
struct Registry(Arc<Mutex<Vec<(RawFd, Token)>>>);

impl PollHooks for Registry {
    fn add(&mut self, fd: BorrowedFd<'_>, token: Token) -> std::io::Result<()> {
        self.0.lock().unwrap().push((fd.as_raw_fd(), token));
        Ok(())
    }
    fn remove(&mut self, _fd: BorrowedFd<'_>, token: Token) {
        self.0.lock().unwrap().retain(|(_, t)| *t != token);
    }
}

struct Svc(mpsc::Sender<Connection>);

impl Service for Svc {
    type Private = ();
    fn on_connect(&mut self, conn: &Connection) -> Result<(), i32> {
        self.0.send(conn.clone()).unwrap();
        Ok(())
    }
    fn handle(
        &mut self,
        _: &mut (),
        req: Request<'_>,
        resp: &mut Responder<'_>,
    ) -> Result<(), HandlerError> {
        let _ = resp.respond_vectored(0, &[b"<", req.payload, b">"]);
        Ok(())
    }
}

#[test]
fn external_poll_loop_drives_the_server() {
    let name = SocketName::abstract_name(format!("coroipc-hooks-{}", std::process::id()));
    let registry = Registry::default();
    let (tx, rx) = mpsc::channel();
    let mut server = ServerBuilder::new(name.clone())
        .service(3, Svc(tx))
        .build_with_hooks(registry.clone())
        .unwrap();
    assert!(server.run().is_err(), "run() is for the built-in loop only");
    assert!(registry
        .0
        .lock()
        .unwrap()
        .iter()
        .any(|(_, t)| *t == coroipc::Server::LISTENER_TOKEN));
    let stop = Arc::new(AtomicBool::new(false));
    let stop2 = stop.clone();
    // The application's loop: poll(2) over whatever the server registered.
    let looper = std::thread::spawn(move || {
        while !stop2.load(Ordering::Relaxed) {
            let watched: Vec<(RawFd, Token)> = registry.0.lock().unwrap().clone();
            let mut pfds: Vec<libc::pollfd> = watched
                .iter()
                .map(|(fd, _)| libc::pollfd {
                    fd: *fd,
                    events: libc::POLLIN,
                    revents: 0,
                })
                .collect();
            // SAFETY: `pfds` is a valid array of pollfd of the given length.
            let n = unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, 20) };
            if n > 0 {
                for (p, (_, token)) in pfds.iter().zip(&watched) {
                    if p.revents == 0 {
                        continue;
                    }
                    if *token == coroipc::Server::LISTENER_TOKEN {
                        server.handle_accept();
                    } else {
                        server.handle_ready(*token);
                    }
                }
            }
            server.handle_timeouts();
        }
    });
    let opts = ConnectOptions {
        wait: coroipc::WaitMode::Block,
        ..ConnectOptions::default()
    };
    let mut client = Client::connect(&name, 3, &opts).unwrap();
    let handle = rx.recv_timeout(Duration::from_secs(5)).unwrap();
    assert_eq!(client.request(1, b"hi").unwrap().data, b"<hi>");

    // Zero-copy and vectored dispatch from this (non-server) thread.
    let mut grant = handle.dispatch_reserve(5).unwrap();
    grant.write_at(0, b"zero!");
    grant.truncate(4);
    grant.commit();
    handle.dispatch_send_vectored(&[b"ve", b"ct"]).unwrap();
    assert_eq!(
        client
            .dispatch_recv(Some(Duration::from_secs(5)))
            .unwrap()
            .unwrap()
            .to_vec(),
        b"zero"
    );
    assert_eq!(
        client
            .dispatch_recv(Some(Duration::from_secs(5)))
            .unwrap()
            .unwrap()
            .to_vec(),
        b"vect"
    );

    // The response is counted just after it is published: wait for the server thread.
    let mut stats = handle.stats();
    for _ in 0..500 {
        if stats.responses == 1 {
            break;
        }
        std::thread::sleep(Duration::from_millis(1));
        stats = handle.stats();
    }
    assert_eq!(
        (stats.requests, stats.responses, stats.dispatched),
        (1, 1, 2)
    );
    assert_eq!(stats.dispatch_queue_len, 0);
    assert!(handle.is_connected());
    assert!(handle.max_dispatch_len() >= 4096 / 2 - 8);

    // A disconnect asked for from any thread.
    handle.disconnect();
    assert!(matches!(
        client.request(1, b"x"),
        Err(coroipc::ClientError::Disconnected)
    ));
    assert!(!handle.is_connected());
    assert_eq!(
        handle.dispatch_send(b"late"),
        Err(coroipc::SendError::Disconnected)
    );
    stop.store(true, Ordering::Relaxed);
    looper.join().unwrap();
}

/// The whole server through one fd: any loop polls `poll_fd` and calls `run_once`.
#[test]
fn one_fd_and_run_once_drive_the_whole_server() {
    let name = SocketName::abstract_name(format!("coroipc-runonce-{}", std::process::id()));
    let (tx, _conns) = mpsc::channel();
    let done = Arc::new(AtomicBool::new(false));
    let (ready_tx, ready) = mpsc::channel();
    let server_name = name.clone();
    let server_done = done.clone();
    let server = std::thread::spawn(move || {
        let mut server = ServerBuilder::new(server_name)
            .service(3, Svc(tx))
            .build()
            .unwrap();
        ready_tx.send(()).unwrap();
        let mut handled = 0usize;
        while !server_done.load(Ordering::SeqCst) {
            {
                let fd = server.poll_fd().expect("built-in poller");
                let mut fds = [nix::poll::PollFd::new(fd, nix::poll::PollFlags::POLLIN)];
                nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(50u16)).unwrap();
            }
            handled += server.run_once(Some(Duration::ZERO)).unwrap();
        }
        handled
    });
    ready.recv().unwrap();
    let mut c = Client::connect(&name, 3, &ConnectOptions::default()).unwrap();
    for i in 0..100u32 {
        let r = c.request(1, &i.to_le_bytes()).unwrap();
        assert_eq!(r.data, [b"<".as_slice(), &i.to_le_bytes(), b">"].concat());
    }
    done.store(true, Ordering::SeqCst);
    let handled = server.join().unwrap();
    assert!(
        handled >= 2,
        "accept and doorbell events went through run_once"
    );
}

/// Hooks that refuse the `n`-th `add` (0: none), recording what is watched.
#[derive(Clone, Default)]
struct Refusing {
    watched: Registry,
    refuse_at: usize,
    adds: Arc<Mutex<usize>>,
}

impl PollHooks for Refusing {
    fn add(&mut self, fd: BorrowedFd<'_>, token: Token) -> std::io::Result<()> {
        let mut adds = self.adds.lock().unwrap();
        *adds += 1;
        if *adds == self.refuse_at {
            return Err(std::io::Error::other("refused"));
        }
        self.watched.add(fd, token)
    }
    fn remove(&mut self, fd: BorrowedFd<'_>, token: Token) {
        self.watched.remove(fd, token);
    }
}

#[test]
fn the_server_hands_back_every_fd_it_added() {
    let name = SocketName::abstract_name(format!("coroipc-hooks-back-{}", std::process::id()));
    // A build that fails on its third fd hands back the first two.
    let failing = Refusing {
        refuse_at: 3,
        ..Refusing::default()
    };
    let built = ServerBuilder::new(name.clone())
        .service(3, Svc(mpsc::channel().0))
        .build_with_hooks(failing.clone());
    assert!(built.is_err());
    assert_eq!(*failing.adds.lock().unwrap(), 3);
    assert!(
        failing.watched.0.lock().unwrap().is_empty(),
        "nothing stays watched"
    );

    // A server with a connected client and a half-done handshake: dropping it hands
    // back the listener, its doorbells and every connection's fds.
    let hooks = Refusing::default();
    let (tx, rx) = mpsc::channel();
    let mut server = ServerBuilder::new(name.clone())
        .service(3, Svc(tx))
        .build_with_hooks(hooks.clone())
        .unwrap();
    let connecting = std::thread::spawn({
        let name = name.clone();
        move || Client::connect(&name, 3, &ConnectOptions::default())
    });
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let mut conn = None;
    while conn.is_none() && std::time::Instant::now() < deadline {
        let watched: Vec<Token> = hooks
            .watched
            .0
            .lock()
            .unwrap()
            .iter()
            .map(|(_, t)| *t)
            .collect();
        for t in watched {
            assert!(server.watches(t), "a watched fd's token is known: {t:?}");
            server.handle_ready(t);
        }
        conn = rx.try_recv().ok();
        std::thread::sleep(Duration::from_millis(1));
    }
    let conn = conn.expect("the client connected");
    let client = connecting.join().unwrap().unwrap();
    let half = coroipc::raw::connect(&name, None).unwrap();
    server.handle_accept();
    let before = hooks.watched.0.lock().unwrap().len();
    assert!(
        before >= 5,
        "listener, two doorbells, a connection, a handshake: {before}"
    );
    assert!(
        !server.watches(Token::foreign(7)),
        "foreign tokens are never the server's"
    );
    assert!(Token::foreign(7).is_foreign() && !coroipc::Server::LISTENER_TOKEN.is_foreign());
    drop(server);
    assert!(
        hooks.watched.0.lock().unwrap().is_empty(),
        "every fd handed back"
    );
    assert!(!conn.is_connected());
    drop((client, half));
}

/// A connect flood is taken in slices: one readiness of the listener accepts at most
/// 64 clients, and the rest on the next one (the listener stays readable meanwhile).
#[test]
fn one_listener_readiness_accepts_a_bounded_slice_of_a_flood() {
    let name = SocketName::abstract_name(format!("coroipc-hooks-flood-{}", std::process::id()));
    let (tx, _rx) = mpsc::channel();
    let mut server = ServerBuilder::new(name.clone())
        .service(3, Svc(tx))
        .build_with_hooks(Registry::default())
        .unwrap();
    let waiting: Vec<_> = (0..100)
        .map(|_| coroipc::raw::connect(&name, None).unwrap())
        .collect();
    server.handle_accept();
    assert_eq!(server.stats().handshaking, 64, "one slice");
    server.handle_accept();
    assert_eq!(server.stats().handshaking, 100, "the rest");
    drop(waiting);
}

/// Hooks that record every `remove` of a token they are not watching (the contract
/// is "removes every fd it added", and so only those), and refuse the `refuse_at`-th
/// `add` (counted from 1; 0: none).
#[derive(Clone, Default)]
struct Strict {
    watched: Registry,
    strays: Arc<Mutex<Vec<Token>>>,
    adds: Arc<AtomicUsize>,
    refuse_at: Arc<AtomicUsize>,
}

impl PollHooks for Strict {
    fn add(&mut self, fd: BorrowedFd<'_>, token: Token) -> std::io::Result<()> {
        let n = self.adds.fetch_add(1, Ordering::SeqCst) + 1;
        if n == self.refuse_at.load(Ordering::SeqCst) {
            return Err(std::io::Error::other("refused"));
        }
        self.watched.add(fd, token)
    }
    fn remove(&mut self, fd: BorrowedFd<'_>, token: Token) {
        let known = self
            .watched
            .0
            .lock()
            .unwrap()
            .iter()
            .any(|(_, t)| *t == token);
        if !known {
            self.strays.lock().unwrap().push(token);
        }
        self.watched.remove(fd, token);
    }
}

/// A connection whose handshake reply fails (the client wrote its request and left)
/// or whose socket the hooks refuse (after its doorbell) is ended with a `remove`
/// for what was added and nothing else.
#[test]
fn a_failed_reply_removes_only_what_was_added() {
    use coroipc::protocol::ConnectRequest;
    use std::io::Write;
    let name = SocketName::abstract_name(format!("coroipc-hooks-stray-{}", std::process::id()));
    let (tx, rx) = mpsc::channel();
    let hooks = Strict::default();
    let mut server = ServerBuilder::new(name.clone())
        .service(3, Svc(tx))
        .build_with_hooks(hooks.clone())
        .unwrap();
    let baseline = hooks.watched.0.lock().unwrap().len();
    let request = ConnectRequest {
        service: 3,
        request_ring: 4096,
        response_ring: 4096,
        dispatch_ring: 4096,
    }
    .encode();
    // The request is there at `accept`, so the handshake completes at once and the
    // connection's adds are its doorbell, then its socket.
    let mut gone = coroipc::raw::connect(&name, None).unwrap();
    gone.write_all(&request).unwrap();
    drop(gone);
    server.handle_accept();
    assert!(
        rx.try_recv().is_ok(),
        "the first client was connected, then failed"
    );
    let mut refused = coroipc::raw::connect(&name, None).unwrap();
    refused.write_all(&request).unwrap();
    let adds = hooks.adds.load(Ordering::SeqCst);
    hooks.refuse_at.store(adds + 2, Ordering::SeqCst);
    server.handle_accept();
    assert!(
        rx.try_recv().is_ok(),
        "the second client was connected, then failed"
    );
    assert_eq!(
        hooks.adds.load(Ordering::SeqCst),
        adds + 2,
        "doorbell, then socket"
    );
    assert!(
        hooks.strays.lock().unwrap().is_empty(),
        "removed but never added: {:?}",
        hooks.strays.lock().unwrap()
    );
    assert_eq!(
        hooks.watched.0.lock().unwrap().len(),
        baseline,
        "both connections' fds handed back"
    );
    drop(refused);
}
