//! The client: connect, synchronous and pipelined requests, dispatch receive.
//!
//! A [`Client`] is `Send` but its request path takes `&mut self`, so two threads can
//! never interleave writes into one request ring (the original's corruption bug is a
//! compile error here). Waiting is spin-then-block or block-only ([`WaitMode`]); a
//! blocked call waits on its doorbell *and* the socket together, so a dead server ends
//! it at once.
//!
//! One module per job: [`options`](self::options) (configuration, the status → error
//! mapping), `connect` (the handshake), `wait` (the [`Waiter`]: socket, doorbells,
//! epolls), `pending` (the pipelined-request table), `guards` (zero-copy views).

mod connect;
mod dispatch;
mod frame;
mod guards;
mod in_flight;
mod options;
mod pending;
mod readiness;
mod request;
mod request_grant;
mod waiter;

use coroipc_ring::{Consumer, FlowWatch, Producer};

use crate::deadline::Deadline;
use crate::error::{ClientError, ConnectError, RingKind, Violation};
use crate::os::SocketName;
use crate::protocol::{REQUEST_HEADER_LEN, RESPONSE_HEADER_LEN};
use crate::spin::{Adaptive, Spin, SpinStep, WaitState};
use crate::stats::ClientStats;
pub use connect::{Connecting, Finish};
pub use guards::{DispatchMsg, ResponseRef};
pub use options::{ConnectOptions, Reply, Response};
use pending::Pending;
#[cfg(feature = "tokio")]
pub(crate) use readiness::Reporting;
use readiness::Reports;
pub use request_grant::RequestGrant;
use waiter::{Waiter, Woke};

/// What a wait is for: the ring the client announces sleep on.
#[derive(Clone, Copy)]
enum WaitFor {
    Response,
    Dispatch,
    RequestSpace(usize),
}

/// Why a client is unusable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Closed {
    ServerGone,
    Violation(Violation),
}

/// A connection to one service of a server.
///
/// # Example
///
/// Pipelined requests, a zero-copy response, dispatch messages and flow control:
///
/// ```
/// # use coroipc::*;
/// # struct Echo;
/// # impl Service for Echo {
/// #     type Private = ();
/// #     fn on_connect(&mut self, _: &Connection) -> Result<(), i32> { Ok(()) }
/// #     fn handle(&mut self, _: &mut (), req: Request<'_>, resp: &mut Responder<'_>) -> Result<(), HandlerError> {
/// #         if req.command == 2 { let _ = resp.connection().dispatch_send(b"event"); }
/// #         let _ = resp.respond(0, req.payload);
/// #         Ok(())
/// #     }
/// # }
/// # let name = SocketName::abstract_name(format!("coroipc-doc-{}-{}", std::process::id(), line!()));
/// # let mut server = ServerBuilder::new(name.clone()).service(1, Echo).build()?;
/// # let stop = server.stop_handle();
/// # let thread = std::thread::spawn(move || server.run());
/// use std::time::Duration;
/// use coroipc::{Client, ConnectOptions};
///
/// let mut c = Client::connect(&name, 1, &ConnectOptions::default())?;
/// // Pipelining: many requests in flight, answers matched by id.
/// let ids: Vec<u64> = (0..4u8).map(|i| c.send_request(1, &[i])).collect::<Result<_, _>>()?;
/// for (i, id) in ids.into_iter().enumerate() {
///     assert_eq!(c.wait_response(id, None)?.data, [i as u8]);
/// }
/// // Zero copy: the response stays in shared memory until the guard is dropped.
/// let r = c.request_in_place(1, b"in place")?;
/// let mut buf = [0u8; 16];
/// let n = r.read_into(&mut buf);
/// assert_eq!(&buf[..n], b"in place");
/// drop(r);
/// // Command 2 makes the server dispatch an event to this client.
/// c.request(2, b"")?;
/// let event = c.dispatch_recv(Some(Duration::from_secs(5)))?.expect("an event");
/// assert_eq!(event.to_vec(), b"event");
/// drop(event);
/// assert!(!c.flow_control(), "the dispatch ring is far below its high watermark");
/// # stop.stop();
/// # thread.join().expect("server thread")?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Client {
    requests: Producer,
    responses: Consumer,
    dispatch: Consumer,
    /// The dispatch ring's flow word for other threads ([`Client::flow_watch`]).
    dispatch_flow: FlowWatch,
    waiter: Waiter,
    pending: Pending,
    connection_id: u64,
    options: ConnectOptions,
    /// Set once the connection is unusable; every call fails from then on.
    closed: Option<Closed>,
    stats: ClientStats,
    /// True while the notification fd is armed (both rings announced, at connect or by
    /// a non-blocking call). A blocking wait withdraws its ring's announcement: it
    /// clears the flag and rings the client's own doorbell, so the fd reads ready and
    /// the caller's next non-blocking call re-arms (no lost event, one extra system
    /// call for a client that never polls).
    armed: bool,
    /// The frame length of the request a non-blocking send found no room for: arming
    /// re-checks room for it (the doorbell ring that announced it may have been drained
    /// by another call's arming). Cleared when a request is published, or when
    /// arming reports the room in [`Reporting::Marked`].
    want_space: Option<usize>,
    /// What the notification fd reports beyond the response ring (owned by arming,
    /// [`readiness`](self::readiness)).
    reports: Reports,
    /// The adaptive wait's memory of recent waits ([`WaitMode::Adaptive`]).
    adapt: Adaptive,
}

/// Closes a connection for a protocol violation by the server: [`Client::fail`] for
/// callers that hold a borrow of one of the client's rings (so cannot borrow all of it).
fn fail(closed: &mut Option<Closed>, connection: u64, why: Violation) -> ClientError {
    tracing::warn!(connection, %why, "connection failed");
    *closed = Some(Closed::Violation(why));
    ClientError::Corrupt(why)
}

/// Ends a client's connection from any thread ([`Client::closer`]): the socket is shut
/// down, so a call blocked on the client returns `Disconnected` at once (its wait
/// watches the socket), every later call fails the same way, and the server sees the
/// client leave. Dropping a `Closer` does nothing.
#[derive(Debug)]
pub struct Closer {
    socket: std::os::unix::net::UnixStream,
}

impl Closer {
    /// Shuts the connection down (idempotent).
    pub fn close(&self) {
        // ENOTCONN once the peer is gone already: nothing left to do.
        let _ = self.socket.shutdown(std::net::Shutdown::Both);
    }
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("connection_id", &self.connection_id)
            .field("outstanding", &self.pending.outstanding())
            .field("closed", &self.closed)
            .finish()
    }
}

impl Client {
    /// Connects to `service` of the server listening under `name`, blocking until the
    /// handshake ends or the connect timeout passes.
    ///
    /// # Errors
    ///
    /// A refusal names its cause ([`ConnectError`]); a malformed reply or unusable
    /// shared memory is [`ConnectError::Protocol`].
    pub fn connect(
        name: &SocketName,
        service: u16,
        options: &ConnectOptions,
    ) -> Result<Client, ConnectError> {
        connect::blocking(name, service, options)
    }

    /// Starts connecting without blocking, for event loops: drive the returned
    /// [`Connecting`] with [`finish`](Connecting::finish) when its fd polls readable.
    ///
    /// # Errors
    ///
    /// As [`connect`](Client::connect), for what fails at once (no server listening).
    pub fn connect_start(
        name: &SocketName,
        service: u16,
        options: &ConnectOptions,
    ) -> Result<Connecting, ConnectError> {
        Connecting::start(name, service, options)
    }

    /// The client of an accepted handshake, its notification fd armed (readiness
    /// first never loses an event).
    fn from_accepted(
        accepted: connect::Accepted,
        options: &ConnectOptions,
    ) -> Result<Client, ClientError> {
        let mut client = Client {
            requests: accepted.rings.requests,
            responses: accepted.rings.responses,
            dispatch: accepted.rings.dispatch,
            dispatch_flow: accepted.rings.dispatch_flow,
            waiter: accepted.waiter,
            pending: Pending::new(),
            connection_id: accepted.connection_id,
            options: options.clone(),
            closed: None,
            stats: ClientStats::default(),
            armed: false,
            want_space: None,
            reports: Reports::default(),
            adapt: Adaptive::new(),
        };
        client.arm_poll_fd()?;
        Ok(client)
    }

    /// A handle that ends this connection from another thread, even while a call is
    /// blocked on it (see [`Closer`]).
    ///
    /// # Errors
    ///
    /// The OS error of duplicating the socket (`EMFILE` at the fd limit).
    pub fn closer(&self) -> std::io::Result<Closer> {
        Ok(Closer {
            socket: self.waiter.socket_clone()?,
        })
    }

    /// The server's id for this connection.
    pub fn connection_id(&self) -> u64 {
        self.connection_id
    }

    /// The largest request payload.
    pub fn max_request_len(&self) -> usize {
        self.requests
            .max_message_len()
            .saturating_sub(REQUEST_HEADER_LEN)
    }

    /// The largest response payload.
    pub fn max_response_len(&self) -> usize {
        self.responses
            .max_message_len()
            .saturating_sub(RESPONSE_HEADER_LEN)
    }

    /// The largest dispatch message.
    pub fn max_dispatch_len(&self) -> usize {
        self.dispatch.max_message_len()
    }

    /// Whether the server reports this connection's dispatch ring in flow control.
    pub fn flow_control(&self) -> bool {
        self.dispatch.flow_control()
    }

    /// [`flow_control`](Client::flow_control) for any thread: a handle that reads the
    /// same word while this client is busy (or blocked) on another thread, and keeps
    /// the connection's memory mapped while it lives. For a C context's dispatch
    /// thread, which asks while another thread waits for a response.
    pub fn flow_watch(&self) -> FlowWatch {
        self.dispatch_flow.clone()
    }

    /// This client's counters.
    pub fn stats(&self) -> ClientStats {
        ClientStats {
            // Read off the ring: handed out directly, or stashed for later.
            responses: self.stats.responses + self.pending.received(),
            ..self.stats
        }
    }

    /// Whether a response or a dispatch message is in its ring now (no system call,
    /// no arming; a corrupt ring counts as "look": the next call reports it).
    #[cfg_attr(not(feature = "tokio"), allow(dead_code))]
    pub(crate) fn anything_waiting(&mut self) -> bool {
        !matches!(self.responses.try_peek(), Ok(None))
            || !matches!(self.dispatch.try_peek(), Ok(None))
    }

    /// Requests sent and not yet answered.
    pub fn outstanding(&self) -> usize {
        self.pending.outstanding()
    }

    /// Whether every later call fails with `Disconnected` (the server is gone, or
    /// broke the protocol).
    #[cfg_attr(not(feature = "tokio"), allow(dead_code))]
    pub(crate) fn is_closed(&self) -> bool {
        self.alive().is_err()
    }

    fn alive(&self) -> Result<(), ClientError> {
        match self.closed {
            None if !self.waiter.hung_up() => Ok(()),
            _ => Err(ClientError::Disconnected),
        }
    }

    /// Closes the connection for a protocol violation by the server.
    fn fail(&mut self, why: Violation) -> ClientError {
        fail(&mut self.closed, self.connection_id, why)
    }

    fn gone(&mut self) -> ClientError {
        self.closed = Some(Closed::ServerGone);
        ClientError::Disconnected
    }

    /// One step of a wait: spin while within the budget (looking at the server's
    /// liveness every millisecond), else announce sleep on the ring and block. The
    /// deadline is read once per spin (then by the spin, at its clock reads).
    fn wait(
        &mut self,
        what: WaitFor,
        state: &mut WaitState,
        deadline: Deadline,
    ) -> Result<(), ClientError> {
        if state.spin.is_none() {
            if deadline.passed() {
                self.adapt.timed_out();
                return Err(ClientError::Timeout);
            }
            let budget = if std::mem::replace(&mut state.begun, true) {
                self.adapt.again(self.options.wait)
            } else {
                self.adapt.begin(self.options.wait)
            };
            state.spin = Some(Spin::new(budget, deadline));
        }
        let Some(spin) = state.spin.as_mut() else {
            return Ok(());
        };
        match spin.step() {
            SpinStep::Spin => return Ok(()),
            SpinStep::CheckLiveness if self.waiter.server_gone()? => return Err(self.gone()),
            SpinStep::CheckLiveness => return Ok(()),
            SpinStep::Expired => {
                self.adapt.timed_out();
                return Err(ClientError::Timeout);
            }
            SpinStep::Done => self.adapt.spun_out(),
        }
        // An armed notification fd gets back the readiness the sleep may take, on
        // every way out of it (an error too).
        let slept = self.sleep_once(what, state, deadline);
        let restored = if std::mem::replace(&mut self.armed, false) {
            self.waiter.ring_self()
        } else {
            Ok(())
        };
        slept?;
        Ok(restored?)
    }

    /// Announces sleep on the ring and blocks until woken or `deadline` (unless what
    /// is waited for came meanwhile). Rings are bytes in a socket buffer: drained
    /// before every announcement, so it never fills (a ring that follows the
    /// announcement is a new edge).
    fn sleep_once(
        &mut self,
        what: WaitFor,
        state: &mut WaitState,
        deadline: Deadline,
    ) -> Result<(), ClientError> {
        self.waiter.drain_bell()?;
        if !self.announce(what)? {
            // Something moved: the caller looks again. The deadline is checked here
            // too, since a spent spin reads the clock no more: a server moving its
            // tail over frames that are no message (skips) without ever publishing
            // one kept a wait past its timeout (client audit of 2026-12-06).
            if deadline.passed() {
                self.adapt.timed_out();
                return Err(ClientError::Timeout);
            }
            return Ok(());
        }
        self.stats.sleeps += 1;
        let woke = self.waiter.block(deadline);
        match what {
            WaitFor::Response => self.responses.cancel_sleep(),
            WaitFor::Dispatch => self.dispatch.cancel_sleep(),
            WaitFor::RequestSpace(_) => {
                self.requests.cancel_sleep();
                self.responses.cancel_sleep();
            }
        }
        state.spin = None;
        match woke? {
            Woke::Bell => Ok(()),
            Woke::Timeout => {
                self.adapt.timed_out();
                Err(ClientError::Timeout)
            }
            Woke::ServerGone => Err(self.gone()),
        }
    }

    /// Announces sleep on the ring `what` waits for; true if the caller may sleep.
    fn announce(&mut self, what: WaitFor) -> Result<bool, ClientError> {
        let check = match what {
            WaitFor::Response => self
                .responses
                .prepare_sleep()
                .map_err(|e| Violation::popping(RingKind::Response, e)),
            WaitFor::Dispatch => self
                .dispatch
                .prepare_sleep()
                .map_err(|e| Violation::popping(RingKind::Dispatch, e)),
            WaitFor::RequestSpace(len) => return self.announce_request_space(len),
        };
        let check = check.map_err(|v| self.fail(v))?;
        self.waiter.ring_server(check.wake_peer)?;
        Ok(check.sleep)
    }

    /// Waiting for request space. Responses waiting in their ring keep the server from
    /// reading requests (backpressure), so a client pipelining past the rings would
    /// wait forever on a server waiting for it: take the responses out of the way
    /// (into the stash) and sleep on both rings, whichever moves first.
    fn announce_request_space(&mut self, len: usize) -> Result<bool, ClientError> {
        let wake = match self.pending.stash_available(&mut self.responses) {
            Ok(wake) => wake,
            Err(v) => return Err(self.fail(v)),
        };
        self.waiter.ring_server(wake)?;
        let responses = match self.responses.prepare_sleep() {
            Ok(check) => check,
            Err(e) => return Err(self.fail(Violation::popping(RingKind::Response, e))),
        };
        self.waiter.ring_server(responses.wake_peer)?;
        if !responses.sleep {
            // A response arrived meanwhile: the caller's retry stashes it.
            self.withdraw_response_sleep();
            return Ok(false);
        }
        let space = match self.requests.prepare_sleep_for_space(len) {
            Ok(check) => check,
            Err(e) => {
                self.withdraw_response_sleep();
                return Err(self.fail(Violation::pushing(RingKind::Request, e)));
            }
        };
        self.waiter.ring_server(space.wake_peer)?;
        if !space.sleep {
            self.withdraw_response_sleep();
        }
        Ok(space.sleep)
    }

    /// Withdraws this call's announcement on the response ring — unless the
    /// notification fd is armed, which needs it (a stale announcement costs the server
    /// one spurious ring at most).
    fn withdraw_response_sleep(&mut self) {
        if !self.armed {
            self.responses.cancel_sleep();
        }
    }
}
