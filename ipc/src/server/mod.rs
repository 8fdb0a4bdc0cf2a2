//! The server: a single-threaded, event-driven core behind an abstracted poll.
//!
//! The server exposes every fd it needs watched (listener, handshakes in progress,
//! each connection's doorbell and socket) through [`PollHooks`] with a [`Token`], and
//! the application's loop calls [`Server::handle_ready`] with the token when the fd is
//! readable, and [`Server::handle_timeouts`] by [`Server::next_deadline`]. [`Server::run`]
//! is a ready-made epoll loop doing exactly that.
//!
//! Connection state machine (SPEC.md §2.4): accepted → (credentials checked by the
//! security callback) → handshaking (connect request read within the handshake timeout)
//! → rings created and `on_connect` accepted → connected → disconnected (`on_disconnect`
//! exactly once). Refusals at any step send a reply with a status code and close.

mod accept;

use std::collections::HashMap;
use std::io::{self, Read};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use coroipc_ring::{Consumer, MpscProducer, PopError, RawRegion, Wake};

use crate::conn::{ConnHandle, ConnShared, Counters, DisconnectReason, Request, Responder};
use crate::deadline::Deadline;
use crate::os::{self, Doorbell, Epoll, Interest, PeerCred, SharedMemory, SocketName};
use crate::outbox::Outbox;
use crate::protocol::{
    grant_capacity, status, ConnectReply, ConnectRequest, HandshakeError, RegionLayout,
    RequestHeader, CONNECT_REQUEST_LEN, DISPATCH, REQUEST, REQUEST_HEADER_LEN, RESPONSE,
};
use crate::service::{ConnectionInfo, ErasedService, Private, Service};
use accept::{refuse, Accepted, Acceptor, FDS_BASE, FDS_PER_CONNECTION};

/// Identifies an fd registered through [`PollHooks`]; hand it back to
/// [`Server::handle_ready`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Token(pub u64);

const LISTENER: Token = Token(0);
const STOP: Token = Token(1);
const KIND_PENDING: u64 = 1;
const KIND_BELL: u64 = 2;
const KIND_SOCKET: u64 = 3;

fn token(id: u64, kind: u64) -> Token {
    Token(id << 2 | kind)
}

/// Where the server's fds go: implemented by the application's event loop.
pub trait PollHooks: Send {
    /// Start watching `fd` for readability; report it with `token`.
    fn add(&mut self, fd: BorrowedFd<'_>, token: Token) -> io::Result<()>;
    /// Stop watching `fd` (called before the fd is closed).
    fn remove(&mut self, fd: BorrowedFd<'_>, token: Token);
}

/// Server limits.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Connections (including handshakes in progress) beyond which new clients are
    /// refused with "no resources".
    pub max_connections: usize,
    /// Largest ring capacity granted, whatever the client asks.
    pub max_ring_size: usize,
    /// Smallest ring capacity granted.
    pub min_ring_size: usize,
    /// Ring capacity granted when the client asks for 0.
    pub default_ring_size: usize,
    /// A client that has not completed the handshake by then is dropped.
    pub handshake_timeout: Duration,
    /// Bytes of dispatch messages queued behind a full ring, per connection.
    pub max_queued_dispatch_bytes: usize,
    /// Bytes of responses queued behind a full response ring, per connection.
    pub max_queued_response_bytes: usize,
    /// Requests handled per connection before others get a turn.
    pub batch: usize,
    /// How long the server polls a connection's request ring before arming its doorbell
    /// (0, the default: never). Measured on 2 CPUs it does not help: clients that spin
    /// already get ~1 us round trips, while a spinning server thread competes with the
    /// service's own threads and keeps pulling the request ring's index line away from
    /// the client (64 KiB round trips 4.7 us without, 26 us with a 50 us spin).
    /// Values above [`Limits::MAX_SPIN`] count as that: the one server thread serves
    /// every connection, and a long spin on one would starve the others.
    pub spin: Duration,
}

impl Limits {
    /// The longest server spin per connection wake-up (1 ms).
    pub const MAX_SPIN: Duration = Duration::from_millis(1);
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 1024,
            max_ring_size: 8 << 20,
            min_ring_size: 4096,
            default_ring_size: 64 << 10,
            handshake_timeout: Duration::from_secs(5),
            max_queued_dispatch_bytes: 1 << 20,
            max_queued_response_bytes: 4 << 20,
            batch: 256,
            spin: Duration::ZERO,
        }
    }
}

type SecurityFn = Box<dyn FnMut(&PeerCred) -> bool + Send>;

/// Configures and builds a [`Server`].
pub struct ServerBuilder {
    name: SocketName,
    limits: Limits,
    security: Option<SecurityFn>,
    services: HashMap<u16, Box<dyn ErasedService>>,
}

impl ServerBuilder {
    /// A server listening under `name` (see [`SocketName`]).
    pub fn new(name: SocketName) -> Self {
        ServerBuilder {
            name,
            limits: Limits::default(),
            security: None,
            services: HashMap::new(),
        }
    }

    /// Replaces the limits.
    #[must_use]
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// The security callback: given the client's credentials (`SO_PEERCRED`) right
    /// after accept, before anything is allocated; `false` refuses.
    #[must_use]
    pub fn security(mut self, check: impl FnMut(&PeerCred) -> bool + Send + 'static) -> Self {
        self.security = Some(Box::new(check));
        self
    }

    /// Registers `service` under `id` (replacing any earlier one).
    #[must_use]
    pub fn service<S: Service>(mut self, id: u16, service: S) -> Self {
        self.services.insert(id, Box::new(service));
        self
    }

    /// Builds a server driven by its own epoll loop ([`Server::run`]).
    pub fn build(self) -> io::Result<Server> {
        let epoll = Epoll::new()?;
        self.finish(Poller::Builtin(epoll))
    }

    /// Builds a server driven by the application's event loop through `hooks`.
    pub fn build_with_hooks(self, hooks: impl PollHooks + 'static) -> io::Result<Server> {
        self.finish(Poller::Hooks(Box::new(hooks)))
    }

    fn finish(self, mut poller: Poller) -> io::Result<Server> {
        let listener = os::listen(&self.name, 128)?;
        check_fd_limit(self.limits.max_connections);
        let stop = Arc::new(StopInner {
            flag: AtomicBool::new(false),
            bell: Doorbell::new()?,
        });
        poller.add(listener.as_fd(), LISTENER)?;
        poller.add(stop.bell.as_fd(), STOP)?;
        Ok(Server {
            acceptor: Acceptor::new(listener),
            name: self.name,
            limits: self.limits,
            security: self.security,
            services: self.services,
            pending: HashMap::new(),
            conns: HashMap::new(),
            next_id: 1,
            poller,
            stop,
        })
    }
}

/// Makes room in `RLIMIT_NOFILE` for `max_connections`, and says if the limit still
/// caps the server below it.
fn check_fd_limit(max_connections: usize) {
    let wanted = max_connections
        .saturating_mul(FDS_PER_CONNECTION)
        .saturating_add(FDS_BASE);
    let wanted = u64::try_from(wanted).unwrap_or(u64::MAX);
    match os::raise_nofile(wanted) {
        Ok((before, after)) => {
            if after > before {
                tracing::info!(before, after, "raised the soft descriptor limit");
            }
            if after < wanted {
                let fits = usize::try_from(after)
                    .unwrap_or(usize::MAX)
                    .saturating_sub(FDS_BASE)
                    / FDS_PER_CONNECTION;
                tracing::warn!(
                    limit = after,
                    max_connections,
                    connections_that_fit = fits,
                    "the descriptor limit (RLIMIT_NOFILE) caps connections below max_connections"
                );
            }
        }
        Err(e) => tracing::debug!(error = %e, "cannot read the descriptor limit"),
    }
}

enum Poller {
    Builtin(Epoll),
    Hooks(Box<dyn PollHooks>),
}

impl Poller {
    /// Watches a doorbell. The built-in loop watches it edge-triggered (each ring is
    /// one event, no `read` needed); hooks get it like any fd and the server drains it.
    fn add_bell(&mut self, fd: BorrowedFd<'_>, token: Token) -> io::Result<()> {
        match self {
            Poller::Builtin(epoll) => epoll.add_edge_triggered(fd, token.0, Interest::READABLE),
            Poller::Hooks(hooks) => hooks.add(fd, token),
        }
    }

    /// Whether doorbells must be drained (level-triggered external loops).
    fn drains_bells(&self) -> bool {
        matches!(self, Poller::Hooks(_))
    }

    fn add(&mut self, fd: BorrowedFd<'_>, token: Token) -> io::Result<()> {
        match self {
            Poller::Builtin(epoll) => epoll.add(fd, token.0, Interest::READABLE),
            Poller::Hooks(hooks) => hooks.add(fd, token),
        }
    }

    fn remove(&mut self, fd: BorrowedFd<'_>, token: Token) {
        match self {
            Poller::Builtin(epoll) => {
                if let Err(e) = epoll.delete(fd) {
                    tracing::debug!(error = %e, "epoll delete failed");
                }
            }
            Poller::Hooks(hooks) => hooks.remove(fd, token),
        }
    }
}

struct StopInner {
    flag: AtomicBool,
    bell: Doorbell,
}

/// Stops [`Server::run`] from any thread.
#[derive(Clone)]
pub struct StopHandle {
    inner: Arc<StopInner>,
}

impl StopHandle {
    /// Makes `run` return after the current event; a stop made while `run` is not
    /// running makes the next `run` return at once.
    pub fn stop(&self) {
        self.inner.flag.store(true, Ordering::Release);
        if let Err(e) = self.inner.bell.ring() {
            tracing::warn!(error = %e, "could not wake the server to stop it");
        }
    }
}

/// A client that connected and has not finished the handshake.
struct Pending {
    stream: UnixStream,
    cred: PeerCred,
    /// When the handshake is dropped (never, for a timeout too large to represent).
    deadline: Deadline,
    buf: [u8; CONNECT_REQUEST_LEN],
    got: usize,
}

/// A connected client, as the server thread holds it.
struct Connection {
    shared: Arc<ConnShared>,
    stream: UnixStream,
    /// The request ring; only the server thread reads it.
    requests: Consumer,
    private: Option<Private>,
    info: ConnectionInfo,
    /// The flow-control state last told to the service.
    flow_told: bool,
}

/// The IPC server. See the module documentation.
pub struct Server {
    acceptor: Acceptor,
    name: SocketName,
    limits: Limits,
    security: Option<SecurityFn>,
    services: HashMap<u16, Box<dyn ErasedService>>,
    pending: HashMap<u64, Pending>,
    conns: HashMap<u64, Connection>,
    next_id: u64,
    poller: Poller,
    stop: Arc<StopInner>,
}

impl Server {
    /// The token of the listening socket.
    pub const LISTENER_TOKEN: Token = LISTENER;

    /// The socket name the server listens under.
    pub fn name(&self) -> &SocketName {
        &self.name
    }

    /// A handle that stops [`run`](Server::run).
    pub fn stop_handle(&self) -> StopHandle {
        StopHandle {
            inner: self.stop.clone(),
        }
    }

    /// Connected clients (handshakes in progress not counted).
    pub fn connection_count(&self) -> usize {
        self.conns.len()
    }

    /// Handshakes in progress.
    pub fn pending_count(&self) -> usize {
        self.pending.len()
    }

    /// A handle on connection `id`, if it is connected.
    pub fn connection(&self, id: u64) -> Option<ConnHandle> {
        self.conns.get(&id).map(|c| ConnHandle {
            shared: c.shared.clone(),
        })
    }

    /// Runs the built-in epoll loop until [`StopHandle::stop`]. For a server built with
    /// hooks this returns an error: drive it from your loop instead.
    pub fn run(&mut self) -> io::Result<()> {
        let mut events = Vec::with_capacity(64);
        // A stop requested before `run` started counts: the flag is cleared on the way
        // out (so `run` may be called again), never on the way in.
        while !self.stop.flag.swap(false, Ordering::AcqRel) {
            let timeout = self
                .next_deadline()
                .map(|d| d.saturating_duration_since(Instant::now()));
            let Poller::Builtin(epoll) = &self.poller else {
                return Err(io::Error::new(
                    io::ErrorKind::Unsupported,
                    "server uses external poll hooks",
                ));
            };
            epoll.wait(&mut events, timeout)?;
            for event in events.drain(..) {
                self.handle_ready(Token(event.token));
            }
            self.handle_timeouts();
        }
        Ok(())
    }

    /// When [`handle_timeouts`](Server::handle_timeouts) should next be called.
    pub fn next_deadline(&self) -> Option<Instant> {
        let handshakes = self.pending.values().filter_map(|p| p.deadline.instant());
        handshakes.chain(self.acceptor.retry_at()).min()
    }

    /// Drops handshakes that ran out of time; watches the listener again after a
    /// stall (out of descriptors) once its retry time has come.
    pub fn handle_timeouts(&mut self) {
        if self.acceptor.retry_due() {
            self.resume_accepting();
        }
        let expired: Vec<u64> = self
            .pending
            .iter()
            .filter(|(_, p)| p.deadline.passed())
            .map(|(id, _)| *id)
            .collect();
        for id in expired {
            tracing::info!(id, "handshake timed out");
            self.drop_pending(id);
        }
    }

    /// Accepts every pending client on the listening socket (what
    /// `handle_ready(Server::LISTENER_TOKEN)` does).
    pub fn handle_accept(&mut self) {
        self.accept_all();
    }

    /// Handles readiness of the fd registered with `token`.
    pub fn handle_ready(&mut self, token: Token) {
        match token {
            LISTENER => self.accept_all(),
            STOP => {
                let _ = self.stop.bell.drain();
            }
            Token(t) => {
                let id = t >> 2;
                match t & 3 {
                    KIND_PENDING => self.progress_handshake(id),
                    KIND_BELL => {
                        if self.poller.drains_bells() {
                            if let Some(conn) = self.conns.get(&id) {
                                let _ = conn.shared.server_bell.drain();
                            }
                        }
                        self.service_connection(id);
                    }
                    KIND_SOCKET => self.check_socket(id),
                    _ => tracing::debug!(token = t, "unknown token"),
                }
            }
        }
    }

    fn accept_all(&mut self) {
        loop {
            match self.acceptor.next() {
                Accepted::Client(stream) => self.admit_client(stream),
                Accepted::Refused => continue,
                Accepted::Drained => return,
                Accepted::Stalled => {
                    if self.acceptor.stall() {
                        self.poller.remove(self.acceptor.listener_fd(), LISTENER);
                    }
                    return;
                }
            }
        }
    }

    /// Watches the listener again after a stall (a descriptor was freed, or the
    /// retry time came). The loop reports it readable if clients wait.
    fn resume_accepting(&mut self) {
        if !self.acceptor.resume() {
            return;
        }
        if let Err(e) = self.poller.add(self.acceptor.listener_fd(), LISTENER) {
            tracing::warn!(error = %e, "cannot watch the listener again");
            self.acceptor.stall();
        }
    }

    fn admit_client(&mut self, stream: UnixStream) {
        if stream.set_nonblocking(true).is_err() {
            return;
        }
        if self.conns.len() + self.pending.len() >= self.limits.max_connections {
            tracing::info!(
                max_connections = self.limits.max_connections,
                "connection refused: limit reached"
            );
            refuse(&stream, status::CONNECTION_LIMIT);
            return;
        }
        let cred = match os::peer_cred(stream.as_fd()) {
            Ok(c) => c,
            Err(e) => {
                tracing::info!(error = %e, "no peer credentials");
                return;
            }
        };
        if let Some(check) = self.security.as_mut() {
            if !check(&cred) {
                tracing::info!(
                    pid = cred.pid,
                    uid = cred.uid,
                    gid = cred.gid,
                    "access denied"
                );
                refuse(&stream, status::ACCESS_DENIED);
                return;
            }
        }
        let id = self.next_id;
        self.next_id += 1;
        let deadline = Deadline::after(Some(self.limits.handshake_timeout));
        let mut pending = Pending {
            stream,
            cred,
            deadline,
            buf: [0; CONNECT_REQUEST_LEN],
            got: 0,
        };
        // The request is usually there already: then the socket never needs watching
        // as a pending handshake.
        match read_handshake(&mut pending) {
            HandshakeRead::Complete => self.finish_handshake(id, pending),
            HandshakeRead::Closed => {}
            HandshakeRead::Partial => {
                if let Err(e) = self
                    .poller
                    .add(pending.stream.as_fd(), token(id, KIND_PENDING))
                {
                    tracing::warn!(error = %e, "cannot watch a new client");
                    return;
                }
                self.pending.insert(id, pending);
            }
        }
    }

    fn drop_pending(&mut self, id: u64) -> Option<Pending> {
        let p = self.pending.remove(&id)?;
        self.poller
            .remove(p.stream.as_fd(), token(id, KIND_PENDING));
        self.resume_accepting();
        Some(p)
    }

    fn progress_handshake(&mut self, id: u64) {
        let Some(p) = self.pending.get_mut(&id) else {
            return;
        };
        match read_handshake(p) {
            HandshakeRead::Partial => {}
            HandshakeRead::Closed => {
                self.drop_pending(id);
            }
            HandshakeRead::Complete => {
                if let Some(p) = self.drop_pending(id) {
                    self.finish_handshake(id, p);
                }
            }
        }
    }

    fn finish_handshake(&mut self, id: u64, p: Pending) {
        match ConnectRequest::decode(&p.buf) {
            Ok(request) => self.complete_handshake(id, p, request),
            Err(e) => {
                tracing::info!(error = %e, pid = p.cred.pid, "bad handshake");
                let code = if matches!(e, HandshakeError::Version(_)) {
                    status::BAD_VERSION
                } else {
                    status::BAD_REQUEST
                };
                refuse(&p.stream, code);
            }
        }
    }

    fn complete_handshake(&mut self, id: u64, p: Pending, request: ConnectRequest) {
        let Some(service) = self.services.get_mut(&request.service) else {
            tracing::info!(service = request.service, "no such service");
            refuse(&p.stream, status::NO_SUCH_SERVICE);
            return;
        };
        let l = &self.limits;
        let caps = [
            request.request_ring,
            request.response_ring,
            request.dispatch_ring,
        ]
        .map(|r| grant_capacity(r, l.default_ring_size, l.min_ring_size, l.max_ring_size));
        let built = RegionLayout::new(caps)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))
            .and_then(|layout| {
                build_rings(
                    id,
                    request.service,
                    p.cred,
                    layout,
                    l,
                    service.overflow_policy(),
                )
            });
        let (memfd, requests, shared, layout) = match built {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(error = %e, "cannot create the connection's memory or doorbells");
                let code = if os::is_fd_exhaustion(&e) {
                    status::OUT_OF_FDS
                } else {
                    status::NO_RESOURCES
                };
                refuse(&p.stream, code);
                return;
            }
        };
        let info = ConnectionInfo {
            id,
            service: request.service,
            credentials: p.cred,
            handle: ConnHandle {
                shared: shared.clone(),
            },
        };
        let private = match service.connect(&info) {
            Ok(private) => private,
            Err(code) => {
                shared.closed.store(true, Ordering::Release);
                refuse(&p.stream, if code > 0 { code } else { status::REFUSED });
                return;
            }
        };
        let reply = ConnectReply {
            status: status::OK,
            request_ring: caps[REQUEST],
            response_ring: caps[RESPONSE],
            dispatch_ring: caps[DISPATCH],
            region_len: layout.len as u64,
            connection_id: id,
        };
        let fds = [
            memfd.as_fd(),
            shared.server_bell.as_fd(),
            shared.client_bell.as_fd(),
        ];
        let sent = os::send_with_fds(p.stream.as_fd(), &reply.encode(), &fds);
        // The mapping keeps the memory alive: no descriptor kept per connection.
        drop(memfd);
        let registered = sent.and_then(|()| {
            self.poller
                .add_bell(shared.server_bell.as_fd(), token(id, KIND_BELL))?;
            self.poller.add(p.stream.as_fd(), token(id, KIND_SOCKET))
        });
        let conn = Connection {
            shared,
            stream: p.stream,
            requests,
            private: Some(private),
            info,
            flow_told: false,
        };
        self.conns.insert(id, conn);
        if let Err(e) = registered {
            tracing::info!(error = %e, "handshake reply failed");
            self.disconnect(id, DisconnectReason::ClientClosed);
            return;
        }
        tracing::debug!(
            id,
            service = request.service,
            pid = self.conns[&id].info.credentials.pid,
            "connected"
        );
        // Requests may already be waiting.
        self.service_connection(id);
    }

    /// Reads from a connected client's socket: clients send nothing after the
    /// handshake, so this is a hang-up (or a protocol violation).
    fn check_socket(&mut self, id: u64) {
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        let mut byte = [0u8; 1];
        let reason = loop {
            match conn.stream.read(&mut byte) {
                Ok(0) => break DisconnectReason::ClientClosed,
                Ok(_) => {
                    break DisconnectReason::ProtocolViolation(
                        "data on the socket after the handshake".into(),
                    )
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(_) => break DisconnectReason::ClientClosed,
            }
        };
        self.disconnect(id, reason);
    }

    /// Ends connection `id`: unregisters its fds, calls `on_disconnect` once, frees
    /// the rings (when the last [`ConnHandle`] clone is dropped, for the mapping).
    fn disconnect(&mut self, id: u64, reason: DisconnectReason) {
        let Some(mut conn) = self.conns.remove(&id) else {
            return;
        };
        self.resume_accepting();
        conn.shared.closed.store(true, Ordering::Release);
        self.poller
            .remove(conn.shared.server_bell.as_fd(), token(id, KIND_BELL));
        self.poller
            .remove(conn.stream.as_fd(), token(id, KIND_SOCKET));
        conn.shared.response.clear();
        conn.shared.dispatch.clear();
        if let DisconnectReason::ProtocolViolation(why) = &reason {
            tracing::warn!(
                id,
                pid = conn.info.credentials.pid,
                why = why.as_str(),
                "client disconnected"
            );
        } else {
            tracing::debug!(id, ?reason, "client disconnected");
        }
        if let (Some(private), Some(service)) = (
            conn.private.take(),
            self.services.get_mut(&conn.info.service),
        ) {
            service.disconnect(private, &conn.info, &reason);
        }
    }

    /// Everything the server thread does for one connection when woken: flush queued
    /// output, tell the service of flow-control changes, handle requests, and arm the
    /// doorbells it needs.
    fn service_connection(&mut self, id: u64) {
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        let shared = conn.shared.clone();
        if shared.closing.load(Ordering::Acquire) {
            let reason = if shared.slow.load(Ordering::Acquire) {
                DisconnectReason::SlowClient
            } else if shared.dispatch.ring.is_corrupt() || shared.response.ring.is_corrupt() {
                DisconnectReason::ProtocolViolation("corrupt ring index".into())
            } else {
                DisconnectReason::Requested
            };
            self.disconnect(id, reason);
            return;
        }
        let Some(service) = self.services.get_mut(&conn.info.service) else {
            return;
        };
        let outcome = serve(conn, service.as_mut(), &self.limits);
        match outcome {
            Ok(More::No) => {}
            Ok(More::Yes) => {
                if let Err(e) = shared.server_bell.ring() {
                    tracing::warn!(error = %e, "cannot re-arm the server doorbell");
                }
            }
            Err(reason) => self.disconnect(id, reason),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let ids: Vec<u64> = self.conns.keys().copied().collect();
        for id in ids {
            self.disconnect(id, DisconnectReason::ServerShutdown);
        }
        if let SocketName::Path { path, .. } = &self.name {
            let _ = std::fs::remove_file(path);
        }
    }
}

enum More {
    Yes,
    No,
}

enum HandshakeRead {
    Complete,
    Partial,
    Closed,
}

/// Reads what has arrived of a connect request (non-blocking).
fn read_handshake(p: &mut Pending) -> HandshakeRead {
    while p.got < CONNECT_REQUEST_LEN {
        match p.stream.read(&mut p.buf[p.got..]) {
            Ok(0) => return HandshakeRead::Closed,
            Ok(n) => p.got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return HandshakeRead::Partial,
            Err(_) => return HandshakeRead::Closed,
        }
    }
    HandshakeRead::Complete
}

fn violation(what: impl std::fmt::Display) -> DisconnectReason {
    DisconnectReason::ProtocolViolation(what.to_string())
}

/// Creates the shared memory and rings of a new connection.
fn build_rings(
    id: u64,
    service: u16,
    cred: PeerCred,
    layout: RegionLayout,
    limits: &Limits,
    overflow: crate::conn::OverflowPolicy,
) -> io::Result<(OwnedFd, Consumer, Arc<ConnShared>, RegionLayout)> {
    let mut shm = SharedMemory::create("coroipc", layout.len)?;
    let memfd = shm
        .take_fd()
        .ok_or_else(|| io::Error::other("memfd already taken"))?;
    let shm = Arc::new(shm);
    let base = shm.as_ptr();
    let keep: Arc<dyn std::any::Any + Send + Sync> = shm.clone();
    let region = |i: usize| -> io::Result<RawRegion> {
        let ptr = std::ptr::NonNull::new(base.wrapping_add(layout.offsets[i]))
            .ok_or_else(|| io::Error::other("null mapping"))?;
        // SAFETY: the ring lies inside the mapping (RegionLayout sums the sizes), the
        // mapping outlives the handles (kept alive by `keep`), and it is shared only
        // with the client this connection is for.
        unsafe { RawRegion::new(ptr, layout.rings[i].region_size()) }
            .map_err(|e| io::Error::other(e.to_string()))
    };
    let ring_err = |e: coroipc_ring::AttachError| io::Error::other(e.to_string());
    // SAFETY: fresh memory; each region is used by exactly one ring handle here.
    let requests = unsafe { Consumer::create(region(REQUEST)?, &layout.rings[REQUEST]) }
        .map_err(ring_err)?
        .keep_alive(keep.clone());
    // SAFETY: as above.
    let responses = unsafe { MpscProducer::create(region(RESPONSE)?, &layout.rings[RESPONSE]) }
        .map_err(ring_err)?
        .keep_alive(keep.clone());
    // SAFETY: as above.
    let dispatch = unsafe { MpscProducer::create(region(DISPATCH)?, &layout.rings[DISPATCH]) }
        .map_err(ring_err)?
        .keep_alive(keep);
    let client_bell = Arc::new(Doorbell::new()?);
    let shared = Arc::new(ConnShared {
        id,
        service,
        cred,
        response: Outbox::new(
            responses,
            client_bell.clone(),
            limits.max_queued_response_bytes,
        ),
        dispatch: Outbox::new(
            dispatch,
            client_bell.clone(),
            limits.max_queued_dispatch_bytes,
        ),
        server_bell: Doorbell::new()?,
        client_bell,
        closing: AtomicBool::new(false),
        closed: AtomicBool::new(false),
        slow: AtomicBool::new(false),
        overflow,
        counters: Counters::default(),
    });
    Ok((memfd, requests, shared, layout))
}

/// The work of [`Server::service_connection`] for one connection.
fn serve(
    conn: &mut Connection,
    service: &mut dyn ErasedService,
    limits: &Limits,
) -> Result<More, DisconnectReason> {
    let shared = conn.shared.clone();
    if conn.private.is_none() {
        return Ok(More::No);
    }
    // 1. Output queued behind full rings.
    let (response_backlog, _) = shared
        .response
        .flush()
        .map_err(|_| violation("corrupt response ring"))?;
    let (dispatch_backlog, _) = shared
        .dispatch
        .flush()
        .map_err(|_| violation("corrupt dispatch ring"))?;
    // 2. Flow control as the dispatch ring now stands.
    if shared.dispatch.ring.flow_control() {
        let _ = shared.dispatch.ring.poll_flow();
    }
    notify_flow(conn, service);
    // 3. Requests, unless responses are backed up (backpressure on a pipelining client).
    let mut handled = 0usize;
    let mut more = More::No;
    let mut release_wake = Wake::NotNeeded;
    if response_backlog.is_none() {
        let mut spin_until: Option<Deadline> = None;
        let mut polls = 0u32;
        loop {
            let next = match conn.requests.try_peek() {
                Ok(next) => next,
                Err(PopError::Corrupt(c)) => return Err(violation(format!("request ring: {c}"))),
                Err(PopError::BufferTooSmall { .. }) => return Err(violation("request ring")),
            };
            let Some(grant) = next else {
                release_wake = release_wake.or(conn.requests.release());
                if !limits.spin.is_zero() && handled > 0 {
                    let until = *spin_until.get_or_insert_with(|| {
                        Deadline::after(Some(limits.spin.min(Limits::MAX_SPIN)))
                    });
                    polls += 1;
                    if polls % 64 != 0 || !until.passed() {
                        std::hint::spin_loop();
                        continue;
                    }
                }
                let check = conn
                    .requests
                    .prepare_sleep()
                    .map_err(|e| violation(format!("request ring: {e}")))?;
                release_wake = release_wake.or(check.wake_peer);
                if check.sleep {
                    break;
                }
                continue;
            };
            let frame = grant.as_slice();
            let Some(header) = RequestHeader::decode(frame) else {
                return Err(violation("request shorter than its header"));
            };
            shared.counters.requests.fetch_add(1, Ordering::Relaxed);
            let payload = &frame[REQUEST_HEADER_LEN..];
            let Some(private) = conn.private.as_mut() else {
                return Ok(More::No);
            };
            let mut responder = Responder::new(&shared, header.id);
            let result = if service.admit(private, header.command) {
                service.handle(
                    private,
                    Request {
                        id: header.id,
                        command: header.command,
                        payload,
                    },
                    &mut responder,
                )
            } else {
                // A failure here is a closed or misbehaving connection, handled below.
                let _ = responder.respond(status::TRY_AGAIN, &[]);
                Ok(())
            };
            responder.finish(result);
            grant.consume();
            // The handler may have moved the dispatch ring into flow control.
            notify_flow(conn, service);
            handled += 1;
            spin_until = None;
            if shared.closing.load(Ordering::Acquire) {
                more = More::Yes;
                break;
            }
            if handled >= limits.batch || shared.response.backlog().0 > 0 {
                more = More::Yes;
                break;
            }
        }
        release_wake = release_wake.or(conn.requests.release());
    }
    // The client may be waiting for request space: it sleeps on its response doorbell.
    if release_wake.is_needed() {
        let _ = shared.client_bell.ring();
    }
    // 4. Arm the doorbells the queued output and flow control need.
    if let Some(len) = shared.response.backlog_front().or(response_backlog) {
        match shared.response.ring.prepare_sleep_for_space(len) {
            Ok(check) if !check.sleep => more = More::Yes,
            Ok(_) => {}
            Err(_) => return Err(violation("corrupt response ring")),
        }
    }
    if let Some(len) = shared.dispatch.backlog_front().or(dispatch_backlog) {
        match shared.dispatch.ring.prepare_sleep_for_space(len) {
            Ok(check) if !check.sleep => more = More::Yes,
            Ok(_) => {}
            Err(_) => return Err(violation("corrupt dispatch ring")),
        }
    } else if shared.dispatch.ring.flow_control() {
        match shared.dispatch.ring.prepare_sleep_for_flow_off() {
            Ok(check) if !check.sleep => more = More::Yes,
            Ok(_) => {}
            Err(_) => return Err(violation("corrupt dispatch ring")),
        }
    }
    Ok(more)
}

/// Tells the service when the dispatch ring's flow-control state changed.
fn notify_flow(conn: &mut Connection, service: &mut dyn ErasedService) {
    let on = conn.shared.dispatch.ring.flow_control();
    if on != conn.flow_told {
        conn.flow_told = on;
        if on {
            conn.shared
                .counters
                .flow_control_events
                .fetch_add(1, Ordering::Relaxed);
        }
        if let Some(private) = conn.private.as_mut() {
            service.flow(private, &conn.info, on);
        }
    }
}
