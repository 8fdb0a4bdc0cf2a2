//! Configuring a server: [`Limits`] and [`ServerBuilder`].

use std::collections::HashMap;
use std::io;
use std::os::fd::AsFd;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use super::accept::{check_fd_limit, Acceptor};
use super::poll::{PollHooks, Poller, StopInner, LISTENER, STOP, WORK};
use super::Server;
use crate::connection::WorkQueue;
use crate::os::{self, Doorbell, Epoll, PeerCred, SocketName};
use crate::service::{ErasedService, Service};

/// Server limits.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Connections (including handshakes in progress) beyond which new clients are
    /// refused with `CONNECTION_LIMIT` ([`ConnectError::ConnectionLimit`](crate::ConnectError::ConnectionLimit)).
    pub max_connections: usize,
    /// Largest ring capacity granted, whatever the client asks.
    pub max_ring_size: usize,
    /// Smallest ring capacity granted.
    pub min_ring_size: usize,
    /// Ring capacity granted when the client asks for 0.
    pub default_ring_size: usize,
    /// A client that has not completed the handshake by then is dropped.
    pub handshake_timeout: Duration,
    /// Bytes of dispatch messages queued behind a full ring, per connection (each
    /// message also counts 64 bytes, what queueing it costs, so that the bound bounds
    /// memory whatever the messages' sizes).
    pub max_queued_dispatch_bytes: usize,
    /// Bytes of responses queued behind a full response ring, per connection (each
    /// also counts 64 bytes, as for dispatch).
    pub max_queued_response_bytes: usize,
    /// Requests handled per connection before others get a turn.
    pub batch: usize,
    /// How long the server polls a connection's request ring after handling its
    /// requests, before arming its doorbell, on every wake-up (0, the default: see
    /// [`adaptive_spin`](Limits::adaptive_spin)). Values above [`Limits::MAX_SPIN`]
    /// count as that, and the polls of one pass over a connection last at most that
    /// in all: the one server thread serves every connection, and a long spin on one
    /// delays the others.
    pub spin: Duration,
    /// With `spin` 0: poll up to this long, but only while this connection's recent
    /// requests arrived within the poll (the rule of the client's
    /// [`WaitMode::Adaptive`](crate::WaitMode::Adaptive): a poll that runs out lowers a
    /// score, one that finds a request raises it, at zero the server sleeps at once
    /// and probes one wake-up in 16; a new connection starts at zero). A client sending
    /// back to back gets a polling
    /// server; an occasional one costs little CPU (a probe in 16 wake-ups). 0 never
    /// polls. Default 50 us; measured on 2 CPUs (default client, medians of five runs):
    /// 64 B round trips 3.8 -> 0.34 us, 64 KiB 19 -> 4.0 us; a client sending every
    /// 1 ms costs the server 11-22 us of CPU per request against 8-9 us without it.
    pub adaptive_spin: Duration,
}

impl Limits {
    /// The longest a server polls one connection's request ring in one pass over it,
    /// all its waits together (1 ms).
    pub const MAX_SPIN: Duration = crate::spin::pass::PASS_LIMIT;

    /// The per-connection queue bounds a connection is built with.
    pub(crate) fn queue_bounds(&self) -> crate::connection::QueueBounds {
        crate::connection::QueueBounds {
            responses: self.max_queued_response_bytes,
            dispatch: self.max_queued_dispatch_bytes,
        }
    }
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
            adaptive_spin: Duration::from_micros(50),
        }
    }
}

impl Limits {
    /// How the server waits for a connection's next request: the one place `spin` and
    /// `adaptive_spin` are read.
    pub(crate) fn request_wait(&self) -> crate::WaitMode {
        if !self.spin.is_zero() {
            crate::WaitMode::SpinThenBlock {
                spin: self.spin.min(Self::MAX_SPIN),
            }
        } else if !self.adaptive_spin.is_zero() {
            crate::WaitMode::Adaptive {
                max_spin: self.adaptive_spin.min(Self::MAX_SPIN),
            }
        } else {
            crate::WaitMode::Block
        }
    }
}

pub(crate) type SecurityFn = Box<dyn FnMut(&PeerCred) -> bool + Send>;

/// Configures and builds a [`Server`].
///
/// # Example
///
/// Limits, a security callback on the client's credentials, and reading the totals
/// from another thread:
///
/// ```
/// use std::time::Duration;
/// use coroipc::{Connection, HandlerError, Limits, Request, Responder, ServerBuilder, Service, SocketName};
///
/// struct Nothing;
/// impl Service for Nothing {
///     type Private = ();
///     fn on_connect(&mut self, _: &Connection) -> Result<(), i32> { Ok(()) }
///     fn handle(&mut self, _: &mut (), _: Request<'_>, _: &mut Responder<'_>) -> Result<(), HandlerError> {
///         Err(HandlerError::UnknownCommand)
///     }
/// }
///
/// let me = nix::unistd::getuid().as_raw();
/// let server = ServerBuilder::new(SocketName::abstract_name(format!("coroipc-doc-b-{}", std::process::id())))
///     .limits(Limits {
///         max_connections: 64,
///         handshake_timeout: Duration::from_secs(1),
///         ..Limits::default()
///     })
///     .security(move |cred| cred.uid == me || cred.uid == 0)
///     .service(1, Nothing)
///     .build()?;
/// let totals = server.stats_handle(); // readable from any thread
/// assert_eq!(totals.get().active, 0);
/// # Ok::<(), std::io::Error>(())
/// ```
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
    ///
    /// # Errors
    ///
    /// The OS error of creating the epoll, the stop doorbell or the listening socket
    /// (named in the message; `AddrInUse` when another server listens under the name).
    pub fn build(self) -> io::Result<Server> {
        let epoll = Epoll::new()?;
        self.finish(Poller::Builtin(epoll))
    }

    /// Builds a server driven by the application's event loop through `hooks`.
    ///
    /// # Errors
    ///
    /// As [`build`](ServerBuilder::build), and any error `hooks.add` returns for the
    /// listener.
    pub fn build_with_hooks(self, hooks: impl PollHooks + 'static) -> io::Result<Server> {
        self.finish(Poller::Hooks(Box::new(hooks)))
    }

    fn finish(self, mut poller: Poller) -> io::Result<Server> {
        let listener = os::listen(&self.name, 128).map_err(|e| {
            io::Error::new(e.kind(), format!("cannot listen on {}: {e}", self.name))
        })?;
        check_fd_limit(self.limits.max_connections);
        let stop = Arc::new(StopInner {
            flag: AtomicBool::new(false),
            bell: Doorbell::new()?,
        });
        let work = Arc::new(WorkQueue::new()?);
        let fds = [
            (listener.as_fd(), LISTENER),
            (stop.bell.as_fd(), STOP),
            (work.bell.as_fd(), WORK),
        ];
        for (i, (fd, token)) in fds.iter().enumerate() {
            if let Err(e) = poller.add(*fd, *token) {
                // Hand back what was added: nothing of a failed build stays watched.
                for (fd, token) in &fds[..i] {
                    poller.remove(*fd, *token);
                }
                return Err(e);
            }
        }
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
            scratch: Vec::new(),
            stats: Arc::default(),
            work,
            freed_fds: false,
            events: Vec::with_capacity(64),
            turn: crate::deadline::Deadline::NEVER,
            spare: Default::default(),
            teardown: Default::default(),
        })
    }
}
