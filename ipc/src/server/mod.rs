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
mod config;
mod events;
mod handshake;
mod poll;
mod serve;
mod session;
mod spare;
mod teardown;

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::connection::WorkQueue;
use crate::connection::{Connection, DisconnectReason};
use crate::deadline::Deadline;
use crate::error::Violation;
use crate::os::SocketName;
use crate::protocol::status;
use crate::service::ErasedService;
use crate::stats::{ServerCounters, ServerStats, ServerStatsHandle};
use accept::{Accepted, Acceptor};
use config::SecurityFn;
pub use config::{Limits, ServerBuilder};
use handshake::Pending;
pub use poll::{PollHooks, StopHandle, Token};
use poll::{Poller, StopInner, KIND_BELL, KIND_PENDING, KIND_SOCKET, LISTENER, STOP, WORK};
use session::Session;

/// Clients accepted per readiness of the listener at most (see `accept_all`).
const ACCEPTS_PER_EVENT: usize = 64;

/// The IPC server. See the module documentation.
pub struct Server {
    acceptor: Acceptor,
    name: SocketName,
    limits: Limits,
    security: Option<SecurityFn>,
    services: HashMap<u16, Box<dyn ErasedService>>,
    pending: HashMap<u64, Pending>,
    conns: HashMap<u64, Session>,
    next_id: u64,
    poller: Poller,
    stop: Arc<StopInner>,
    /// Request payloads are copied here before a handler sees them.
    scratch: Vec<u8>,
    /// Totals, readable from any thread through a [`ServerStatsHandle`].
    stats: Arc<ServerCounters>,
    /// Connections other threads asked to close (server-owned doorbell).
    work: Arc<WorkQueue>,
    /// Set when a client's descriptors were released during the current event.
    freed_fds: bool,
    /// `run_once`'s event buffer, kept between calls: the events a turn that ran out
    /// left unhandled ([`run_turn`](Server::run_turn)) wait here for the next call.
    events: Vec<crate::os::Event>,
    /// The end of the runtime turn being served (`NEVER` but in `run_turn`): passes
    /// stop handling requests and polling at it.
    turn: Deadline,
    /// The next connection's region and doorbells, built ahead.
    spare: spare::Spare,
    /// Closed connections whose release waits for the next batch.
    teardown: teardown::Teardown<Session>,
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

    /// The server's totals (see [`ServerStats`]).
    pub fn stats(&self) -> ServerStats {
        self.stats.read()
    }

    /// A handle that reads the totals from any thread without touching the loop.
    pub fn stats_handle(&self) -> ServerStatsHandle {
        ServerStatsHandle {
            counters: self.stats.clone(),
        }
    }

    /// Every connected client (handshakes in progress not included).
    pub fn connections(&self) -> impl Iterator<Item = Connection> + '_ {
        self.conns.values().map(|c| c.handle.clone())
    }

    /// The end of every entry point: a stalled listener is watched again if a
    /// descriptor was freed meanwhile (never right after the stall itself, which
    /// would spin), and the table sizes go to the stats.
    fn after_event(&mut self) {
        if std::mem::take(&mut self.freed_fds) {
            self.resume_accepting();
        }
        self.stats.set_sizes(self.conns.len(), self.pending.len());
    }

    /// A handle on connection `id`, if it is connected.
    pub fn connection(&self, id: u64) -> Option<Connection> {
        self.conns.get(&id).map(|c| c.handle.clone())
    }

    /// Runs the built-in epoll loop until [`StopHandle::stop`]. For a server built with
    /// hooks this returns an error: drive it from your loop instead.
    ///
    /// # Errors
    ///
    /// `Unsupported` for a server built with hooks; the OS error of `epoll_wait` (never
    /// `EINTR`).
    pub fn run(&mut self) -> io::Result<()> {
        // A stop requested before `run` started counts: the flag is cleared on the way
        // out (so `run` may be called again), never on the way in.
        while !self.take_stop() {
            self.run_once(None)?;
        }
        Ok(())
    }

    /// Whether a stop was requested, clearing the request (so the server may be run
    /// again).
    pub(crate) fn take_stop(&mut self) -> bool {
        self.stop.flag.swap(false, Ordering::AcqRel)
    }

    /// One turn of the built-in loop, for driving the server from any event loop
    /// through one fd ([`poll_fd`](Server::poll_fd)): waits up to `timeout` (`None`:
    /// until something happens; `Some(ZERO)`: just look; never past the next
    /// handshake deadline), handles every ready event and due timeouts, and returns
    /// how many events it handled.
    ///
    /// # Errors
    ///
    /// As [`run`](Server::run).
    pub fn run_once(&mut self, timeout: Option<Duration>) -> io::Result<usize> {
        self.run_events(timeout, Deadline::NEVER)
    }

    /// One turn of a runtime that ends at `turn` (`tokio::serve`): as
    /// `run_once(Some(ZERO))`, but it stops handling events once the turn is over
    /// (after one at least, so every call makes progress), and every pass stops
    /// handling requests and polling its idle ring then. The events not handled are
    /// kept for the next call, which handles them before it looks for new ones: the
    /// bells are edge-triggered, so an event dropped would be a lost wake-up.
    #[cfg_attr(not(feature = "tokio"), allow(dead_code))]
    pub(crate) fn run_turn(&mut self, turn: Deadline) -> io::Result<usize> {
        self.run_events(Some(Duration::ZERO), turn)
    }

    /// `run_once` within `turn`: the events kept from a turn that ran out first (no
    /// wait then), else those of one wait.
    fn run_events(&mut self, timeout: Option<Duration>, turn: Deadline) -> io::Result<usize> {
        let due = self
            .next_deadline()
            .map(|d| d.saturating_duration_since(Instant::now()));
        let wait = match (timeout, due) {
            (Some(t), Some(d)) => Some(t.min(d)),
            (t, d) => t.or(d),
        };
        let Poller::Builtin(epoll) = &self.poller else {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "server uses external poll hooks",
            ));
        };
        let mut events = std::mem::take(&mut self.events);
        let waited = if events.is_empty() {
            epoll.wait(&mut events, wait)
        } else {
            Ok(events.len())
        };
        self.turn = turn;
        let handled = self.handle_events(&mut events, turn);
        self.turn = Deadline::NEVER;
        self.events = events;
        self.handle_timeouts();
        waited.map(|_| handled)
    }

    /// Handles `events` in order until `turn` is over (one at least), removing those
    /// handled; returns how many.
    fn handle_events(&mut self, events: &mut Vec<crate::os::Event>, turn: Deadline) -> usize {
        let mut handled = 0;
        while let Some(event) = events.get(handled) {
            if handled > 0 && turn.passed() {
                break;
            }
            let token = Token(event.token);
            self.handle_ready(token);
            handled += 1;
        }
        events.drain(..handled);
        handled
    }

    /// The built-in loop's epoll fd: readable when [`run_once`](Server::run_once) has
    /// work. `None` for a server built with hooks (its loop owns the fds).
    pub fn poll_fd(&self) -> Option<BorrowedFd<'_>> {
        match &self.poller {
            Poller::Builtin(epoll) => Some(epoll.as_fd()),
            Poller::Hooks(_) => None,
        }
    }

    /// When [`handle_timeouts`](Server::handle_timeouts) should next be called.
    pub fn next_deadline(&self) -> Option<Instant> {
        let handshakes = self.pending.values().filter_map(|p| p.deadline.instant());
        handshakes
            .chain(self.acceptor.retry_at())
            .chain(self.teardown.due())
            .min()
    }

    /// Drops handshakes that ran out of time; watches the listener again after a
    /// stall (out of descriptors) once its retry time has come; releases closed
    /// connections (deferred to the end of the next batch of events, at most 1 ms: call
    /// this after each batch, as [`run_once`](Server::run_once) does).
    pub fn handle_timeouts(&mut self) {
        self.teardown.end_batch();
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
            self.stats.handshake_timeout();
            self.drop_pending(id);
            self.freed_fds = true;
        }
        self.after_event();
    }

    /// Accepts every pending client on the listening socket (what
    /// `handle_ready(Server::LISTENER_TOKEN)` does).
    pub fn handle_accept(&mut self) {
        self.accept_all();
        self.after_event();
    }

    /// Whether the fd registered with `token` is watched now: the listener (unless
    /// stalled), the server's doorbells, a handshake or a connection that is still
    /// there. False for a token whose fd was removed, or that the server never gave.
    pub fn watches(&self, token: Token) -> bool {
        match token {
            LISTENER => self.acceptor.watched(),
            STOP | WORK => true,
            t if t.is_foreign() => false,
            Token(t) => match t & 3 {
                KIND_PENDING => self.pending.contains_key(&(t >> 2)),
                KIND_BELL | KIND_SOCKET => self.conns.contains_key(&(t >> 2)),
                _ => false,
            },
        }
    }

    /// Handles readiness of the fd registered with `token`.
    pub fn handle_ready(&mut self, token: Token) {
        match token {
            LISTENER => self.accept_all(),
            STOP => {
                let _ = self.stop.bell.drain();
            }
            WORK => {
                let _ = self.work.bell.drain();
                for id in self.work.take() {
                    self.service_connection(id);
                }
            }
            Token(t) => {
                let id = t >> 2;
                match t & 3 {
                    KIND_PENDING => self.progress_handshake(id),
                    KIND_BELL => {
                        // Drained at every event, in either loop: the rings are bytes
                        // in a socket buffer, which must not fill up.
                        let drained = self.conns.get(&id).map(|c| c.handle.shared.bell.drain());
                        if let Some(Err(e)) = drained {
                            tracing::debug!(connection = id, error = %e, "doorbell failed");
                            let why = Violation::Doorbell;
                            self.disconnect(id, DisconnectReason::ProtocolViolation(why));
                        } else {
                            self.service_connection(id);
                        }
                    }
                    KIND_SOCKET => self.check_socket(id),
                    _ => tracing::debug!(token = t, "unknown token"),
                }
            }
        }
        self.after_event();
    }

    /// Accepts what waits on the listener, up to [`ACCEPTS_PER_EVENT`] clients: a
    /// connect flood must not keep the server from its connections (the listener is
    /// watched level-triggered, so what is left is reported again next turn).
    fn accept_all(&mut self) {
        for _ in 0..ACCEPTS_PER_EVENT {
            let next = match self.acceptor.next() {
                // Closed connections waiting for release hold descriptors: free them
                // before refusing anyone.
                Accepted::OutOfFds | Accepted::Stalled if self.teardown.release_all() => continue,
                Accepted::OutOfFds => self.acceptor.refuse_with_reserve(),
                other => other,
            };
            match next {
                Accepted::Client(stream) => {
                    self.admit_client(stream);
                    // A runtime's turn (`run_turn`) ends here too: the rest is
                    // reported again (no clock read outside a turn).
                    if self.turn.passed() {
                        return;
                    }
                }
                Accepted::Refused => self.stats.refused(status::OUT_OF_FDS),
                Accepted::Drained => return,
                // (`OutOfFds` again: `refuse_with_reserve` never says it.)
                Accepted::Stalled | Accepted::OutOfFds => {
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
    pub(super) fn resume_accepting(&mut self) {
        if !self.acceptor.resume() {
            return;
        }
        if let Err(e) = self.poller.add(self.acceptor.listener_fd(), LISTENER) {
            tracing::warn!(error = %e, "cannot watch the listener again");
            self.acceptor.stall();
        }
    }
}

impl Drop for Server {
    /// Every client is disconnected (`on_disconnect` runs for each) and every fd the
    /// server watches is handed back to the loop before it closes.
    fn drop(&mut self) {
        let ids: Vec<u64> = self.conns.keys().copied().collect();
        for id in ids {
            self.disconnect(id, DisconnectReason::ServerShutdown);
        }
        let pending: Vec<u64> = self.pending.keys().copied().collect();
        for id in pending {
            self.drop_pending(id);
        }
        if self.acceptor.watched() {
            self.poller.remove(self.acceptor.listener_fd(), LISTENER);
        }
        self.poller.remove(self.stop.bell.as_fd(), STOP);
        self.poller.remove(self.work.bell.as_fd(), WORK);
        if let SocketName::Path { path, .. } = &self.name {
            let _ = std::fs::remove_file(path);
        }
    }
}
