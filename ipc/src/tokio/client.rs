//! [`AsyncClient`]: the blocking [`Client`] driven through its notification fd on a
//! tokio runtime. Every operation is the client's non-blocking call (`try_*`), retried
//! when the fd reads ready; no call ever blocks a runtime thread. Several tasks may
//! wait at once: tokio wakes them all through one [`FanOut`] waker.

use std::future::poll_fn;
use std::os::fd::AsRawFd;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{ready, Context, Poll, Waker};
use std::time::{Duration, Instant};

use ::tokio::io::unix::AsyncFd;

use super::reactor::{finish_connect, register, Borrowed};
use super::wakers::FanOut;
use crate::client::{Client, ConnectOptions, Reporting, Response};
use crate::error::{ClientError, ConnectError, ConnectStep};
use crate::os::SocketName;

/// The client and its waiters, shared by every handle and future.
struct Shared {
    /// Dropped first: deregisters before the client closes the fd.
    fd: AsyncFd<Borrowed>,
    client: Mutex<Client>,
    /// The waiting tasks, and the one waker tokio is given for all of them.
    waiters: Arc<FanOut>,
    fan_out: Waker,
    /// How long a look that found nothing polls the rings before sleeping on the
    /// reactor, in ns (0: never; see [`AsyncClient::set_spin`]).
    spin_ns: AtomicU64,
}

/// An async client for tokio: cheap to clone (the clones share one connection), and
/// any number of tasks may await requests and dispatch messages on it at once.
///
/// Needs a runtime with I/O and time enabled (`Builder::enable_all`). Errors are the
/// blocking client's: a dead server resolves every pending future, and ends the
/// dispatch stream, with [`ClientError::Disconnected`]; so does a violation one task's
/// look found (that task gets [`ClientError::Corrupt`], and wakes the others).
#[derive(Clone)]
pub struct AsyncClient {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for AsyncClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsyncClient")
            .field("fd", &self.shared.fd.get_ref().0)
            .finish()
    }
}

/// A task's place among the waiters of one client; leaves on drop.
struct Waiting<'a> {
    shared: &'a Shared,
    slot: Option<usize>,
    /// This wait polled the rings already ([`AsyncClient::set_spin`]): a wait spins
    /// once, at its first look that finds nothing. The fan-out wakes every waiter
    /// for any event, and each poll spinning anew (under the client's lock) cost one
    /// spin per waiter per event: 100 tasks and 100 µs made 10 ms per event.
    spun: bool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Client> {
        // A panic in another task's look cannot leave the client half-updated in a way
        // that matters more than the panic itself: keep serving.
        self.client.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Waiting<'_> {
    /// Tries `op` until it has an answer, sleeping on the notification fd between
    /// tries (see the rules in [`FanOut`]).
    ///
    /// Every answer charges the task's tokio budget: a look that finds something at
    /// once touches no tokio resource, so without it a task looping over a stream the
    /// server keeps full (or over requests a spin answers) never yielded, and starved
    /// every other task and timer of a current-thread runtime. Out of budget, the task
    /// is woken to try again after the others had their turn.
    fn poll<T>(
        &mut self,
        cx: &mut Context<'_>,
        op: impl FnMut(&mut Client) -> Result<Option<T>, ClientError>,
    ) -> Poll<Result<T, ClientError>> {
        let coop = ready!(::tokio::task::coop::poll_proceed(cx));
        let polled = self.poll_op(cx, op);
        if polled.is_ready() {
            coop.made_progress();
        }
        polled
    }

    /// [`poll`](Self::poll) without the budget.
    fn poll_op<T>(
        &mut self,
        cx: &mut Context<'_>,
        mut op: impl FnMut(&mut Client) -> Result<Option<T>, ClientError>,
    ) -> Poll<Result<T, ClientError>> {
        let shared = self.shared;
        let mut client = shared.lock();
        loop {
            let mark = client.notice_mark();
            let result = op(&mut client);
            if client.notice_mark() != mark {
                shared.waiters.wake_others(self.slot);
            }
            let done = match result {
                Ok(None) => None,
                Ok(Some(v)) => Some(Ok(v)),
                Err(e) => {
                    // An error that closed the client (a corrupt ring, a dead
                    // doorbell) has no fd event to follow: the others learn it now.
                    // One request's error (a status, an unknown id) wakes nobody.
                    if client.is_closed() {
                        shared.waiters.wake_others(self.slot);
                    }
                    Some(Err(e))
                }
            };
            if let Some(done) = done {
                shared.waiters.leave(&mut self.slot);
                return Poll::Ready(done);
            }
            if !self.spun {
                self.spun = true;
                let spin = Duration::from_nanos(shared.spin_ns.load(Ordering::Relaxed));
                if !spin.is_zero() && spin_until_something(&mut client, spin) {
                    continue;
                }
            }
            shared.waiters.register(&mut self.slot, cx.waker());
            let mut fan_out = Context::from_waker(&shared.fan_out);
            match shared.fd.poll_read_ready(&mut fan_out) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Ok(mut ready)) => {
                    ready.clear_ready();
                    shared.waiters.wake_others(self.slot);
                }
                Poll::Ready(Err(e)) => {
                    shared.waiters.wake_others(self.slot);
                    shared.waiters.leave(&mut self.slot);
                    return Poll::Ready(Err(ClientError::Io(e)));
                }
            }
        }
    }
}

/// Polls the client's rings for up to `spin` (reading the clock every 64 polls);
/// true if something arrived.
fn spin_until_something(client: &mut Client, spin: Duration) -> bool {
    let until = Instant::now().checked_add(spin);
    let mut polls = 0u32;
    loop {
        if client.anything_waiting() {
            return true;
        }
        std::hint::spin_loop();
        polls = polls.wrapping_add(1);
        if polls % 64 == 0 && until.is_none_or(|u| Instant::now() >= u) {
            return false;
        }
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.shared.waiters.leave(&mut self.slot);
    }
}

/// Gives up on a request whose future was dropped before its response came.
struct AbandonOnDrop<'a> {
    shared: &'a Shared,
    id: Option<u64>,
}

impl Drop for AbandonOnDrop<'_> {
    fn drop(&mut self) {
        if let Some(id) = self.id {
            self.shared.lock().abandon(id);
        }
    }
}

impl AsyncClient {
    /// Connects without blocking the runtime: the handshake of
    /// [`Client::connect_start`], driven by the socket's readiness, bounded by
    /// `options.connect_timeout`.
    ///
    /// # Errors
    ///
    /// As [`Client::connect`].
    pub async fn connect(
        name: &SocketName,
        service: u16,
        options: &ConnectOptions,
    ) -> Result<AsyncClient, ConnectError> {
        let connecting = Client::connect_start(name, service, options)?;
        let handshake = finish_connect(connecting);
        // `Duration::MAX` (no deadline) must not overflow the clock.
        let client = match ::tokio::time::Instant::now().checked_add(options.connect_timeout) {
            Some(deadline) => ::tokio::time::timeout_at(deadline, handshake)
                .await
                .map_err(|_| ConnectError::Timeout)??,
            None => handshake.await?,
        };
        AsyncClient::new(client).map_err(|source| ConnectError::Os {
            name: name.clone(),
            step: ConnectStep::Notify,
            source,
        })
    }

    /// Wraps a connected client (registers its notification fd with the current
    /// runtime).
    ///
    /// # Errors
    ///
    /// The OS error of registering the fd; outside a runtime, an error too.
    pub fn new(mut client: Client) -> std::io::Result<AsyncClient> {
        // The waiters are woken directly for what one task's look finds for another
        // (`Waiting::poll`), so an unread message is reported once, not at every look.
        client.set_reporting(Reporting::Marked);
        // SAFETY: the client owns its notification fd, never replaces it, and is dropped
        // after `fd` (field order in `Shared`).
        let fd = unsafe { register(client.as_raw_fd()) }?;
        let waiters = Arc::new(FanOut::default());
        Ok(AsyncClient {
            shared: Arc::new(Shared {
                fd,
                client: Mutex::new(client),
                fan_out: Waker::from(waiters.clone()),
                waiters,
                spin_ns: AtomicU64::new(0),
            }),
        })
    }

    fn waiting(&self) -> Waiting<'_> {
        Waiting {
            shared: &self.shared,
            slot: None,
            spun: false,
        }
    }

    /// Sends a request and waits for its response (both without blocking a thread).
    /// Dropping the future after the request went out abandons it: its response is
    /// discarded when it arrives.
    ///
    /// # Errors
    ///
    /// As [`Client::request`].
    pub async fn request(&self, command: u16, payload: &[u8]) -> Result<Response, ClientError> {
        let id = self.send(command, payload).await?;
        self.response(id).await
    }

    /// Sends a request, waiting for room in the request ring if needed; returns its id
    /// for [`response`](AsyncClient::response) (pipelining).
    ///
    /// # Errors
    ///
    /// As [`Client::send_request`].
    pub async fn send(&self, command: u16, payload: &[u8]) -> Result<u64, ClientError> {
        let mut waiting = self.waiting();
        poll_fn(|cx| waiting.poll(cx, |c| c.try_send_request(command, payload))).await
    }

    /// Waits for the response to request `id`. Dropping the future before it resolves
    /// abandons the request, also when it was never polled (a `select!` whose other
    /// branch was ready first).
    ///
    /// The future resolves with the errors of [`Client::wait_response`].
    pub fn response(&self, id: u64) -> ResponseFuture<'_> {
        ResponseFuture {
            id,
            abandon: AbandonOnDrop {
                shared: &self.shared,
                id: Some(id),
            },
            waiting: self.waiting(),
        }
    }

    /// Waits for the next dispatch message (a copy).
    ///
    /// # Errors
    ///
    /// `Disconnected` once the server is gone; `Corrupt`.
    pub async fn next_dispatch(&self) -> Result<Vec<u8>, ClientError> {
        let mut waiting = self.waiting();
        poll_fn(|cx| waiting.poll(cx, take_dispatch)).await
    }

    /// The dispatch messages as a stream; it ends after yielding the error that closed
    /// the connection (`Disconnected` when the server dies).
    pub fn dispatch_stream(&self) -> DispatchStream {
        DispatchStream {
            client: self.clone(),
            slot: None,
            spun: false,
            ended: false,
        }
    }

    /// Lets a look that found nothing poll the rings for up to `spin` (capped at
    /// 100 µs) before the task sleeps on the reactor, once per wait (a wait woken
    /// again does not spin again): a round trip to a quick server
    /// then costs no wake-up, at the price of the runtime thread spinning (other tasks
    /// on it wait meanwhile). Off by default (`ZERO`).
    pub fn set_spin(&self, spin: Duration) {
        let ns = spin.min(Duration::from_micros(100)).as_nanos() as u64;
        self.shared.spin_ns.store(ns, Ordering::Relaxed);
    }

    /// This client's counters ([`Client::stats`]).
    pub fn stats(&self) -> crate::ClientStats {
        self.shared.lock().stats()
    }

    /// Requests sent and not yet answered ([`Client::outstanding`]).
    pub fn outstanding(&self) -> usize {
        self.shared.lock().outstanding()
    }

    /// Whether the server reports the dispatch ring in flow control
    /// ([`Client::flow_control`]).
    pub fn flow_control(&self) -> bool {
        self.shared.lock().flow_control()
    }

    /// The largest request payload ([`Client::max_request_len`]).
    pub fn max_request_len(&self) -> usize {
        self.shared.lock().max_request_len()
    }

    /// The server's id for this connection.
    pub fn connection_id(&self) -> u64 {
        self.shared.lock().connection_id()
    }
}

/// The future of [`AsyncClient::response`]. It owns its request from its creation:
/// dropped before it resolves, polled or not, it abandons the request (an `async fn`
/// would build that guard only when first polled, and a future dropped unpolled left
/// the id outstanding for good, its late answer stashed for ever).
#[must_use = "a response future does nothing unless polled; dropped, it abandons its request"]
pub struct ResponseFuture<'a> {
    id: u64,
    abandon: AbandonOnDrop<'a>,
    waiting: Waiting<'a>,
}

impl std::fmt::Debug for ResponseFuture<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("id", &self.id)
            .field("resolved", &self.abandon.id.is_none())
            .finish()
    }
}

impl std::future::Future for ResponseFuture<'_> {
    type Output = Result<Response, ClientError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let id = this.id;
        let polled = this.waiting.poll(cx, |c| c.try_response(id));
        // Answered, or failed for good: nothing is left to abandon. A reactor error
        // leaves the request in flight: the future gives it up when dropped.
        if polled.is_ready() && !matches!(polled, Poll::Ready(Err(ClientError::Io(_)))) {
            this.abandon.id = None;
        }
        polled
    }
}

/// One non-blocking look for a dispatch message, copied out.
fn take_dispatch(c: &mut Client) -> Result<Option<Vec<u8>>, ClientError> {
    Ok(c.dispatch_recv(Some(std::time::Duration::ZERO))?
        .map(|m| m.to_vec()))
}

/// The dispatch messages of an [`AsyncClient`] (a [`futures_core::Stream`]).
pub struct DispatchStream {
    client: AsyncClient,
    slot: Option<usize>,
    /// The current wait spun already (see `Waiting::spun`).
    spun: bool,
    ended: bool,
}

impl std::fmt::Debug for DispatchStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DispatchStream")
            .field("ended", &self.ended)
            .finish()
    }
}

impl futures_core::Stream for DispatchStream {
    type Item = Result<Vec<u8>, ClientError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.ended {
            return Poll::Ready(None);
        }
        let mut waiting = Waiting {
            shared: &this.client.shared,
            slot: this.slot.take(),
            spun: this.spun,
        };
        let polled = waiting.poll(cx, take_dispatch);
        // Keep the place (and the spin spent) while pending; `poll` left the place on
        // an answer, and the next message is a new wait.
        this.slot = waiting.slot.take();
        this.spun = waiting.spun && polled.is_pending();
        match polled {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Ok(m)) => Poll::Ready(Some(Ok(m))),
            Poll::Ready(Err(e)) => {
                this.ended = true;
                Poll::Ready(Some(Err(e)))
            }
        }
    }
}

impl Drop for DispatchStream {
    fn drop(&mut self) {
        self.client.shared.waiters.leave(&mut self.slot);
    }
}
