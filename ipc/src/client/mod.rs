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
mod guards;
mod options;
mod pending;
mod wait;

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::time::Duration;

use coroipc_ring::{Consumer, Producer, PushError};

use crate::deadline::{Deadline, Spin};
use crate::error::{ClientError, ConnectError, RingKind, Violation};
use crate::os::SocketName;
use crate::protocol::{RequestHeader, REQUEST_HEADER_LEN, RESPONSE_HEADER_LEN};
use guards::Body;
pub use guards::{DispatchMsg, ResponseRef};
use options::status_error;
pub use options::{ConnectOptions, Response, WaitMode};
use pending::{ring_violation, Found, Pending};
use wait::{Waiter, Woke};

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
pub struct Client {
    requests: Producer,
    responses: Consumer,
    dispatch: Consumer,
    waiter: Waiter,
    pending: Pending,
    connection_id: u64,
    options: ConnectOptions,
    /// Set once the connection is unusable; every call fails from then on.
    closed: Option<Closed>,
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
    /// Connects to `service` of the server listening under `name`.
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
        let accepted = connect::handshake(name, service, options)?;
        Ok(Client {
            requests: accepted.rings.requests,
            responses: accepted.rings.responses,
            dispatch: accepted.rings.dispatch,
            waiter: accepted.waiter,
            pending: Pending::new(),
            connection_id: accepted.connection_id,
            options: options.clone(),
            closed: None,
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

    /// Requests sent and not yet answered.
    pub fn outstanding(&self) -> usize {
        self.pending.outstanding()
    }

    fn alive(&self) -> Result<(), ClientError> {
        match self.closed {
            None => Ok(()),
            Some(_) => Err(ClientError::Disconnected),
        }
    }

    /// Closes the connection for a protocol violation by the server.
    fn fail(&mut self, why: Violation) -> ClientError {
        tracing::warn!(connection = self.connection_id, %why, "connection failed");
        self.closed = Some(Closed::Violation(why));
        ClientError::Corrupt(why)
    }

    fn gone(&mut self) -> ClientError {
        self.closed = Some(Closed::ServerGone);
        ClientError::Disconnected
    }

    /// One step of a wait: spin while within the budget (looking at the server's
    /// liveness every millisecond), else announce sleep on the ring and block.
    fn wait(
        &mut self,
        what: WaitFor,
        spinning: &mut Option<Spin>,
        deadline: Deadline,
    ) -> Result<(), ClientError> {
        if deadline.passed() {
            return Err(ClientError::Timeout);
        }
        let budget = spinning.get_or_insert_with(|| Spin::new(self.options.wait.spin()));
        if budget.active() {
            if budget.liveness_due() && self.waiter.server_gone()? {
                return Err(self.gone());
            }
            for _ in 0..32 {
                std::hint::spin_loop();
            }
            return Ok(());
        }
        let check = match what {
            WaitFor::Response => self.responses.prepare_sleep().map_err(ring_violation),
            WaitFor::Dispatch => {
                self.dispatch
                    .prepare_sleep()
                    .map_err(|e| match ring_violation(e) {
                        Violation::Ring { cause, .. } => Violation::Ring {
                            ring: RingKind::Dispatch,
                            cause,
                        },
                        other => other,
                    })
            }
            WaitFor::RequestSpace(len) => {
                self.requests
                    .prepare_sleep_for_space(len)
                    .map_err(|e| match e {
                        PushError::Corrupt(cause) => Violation::Ring {
                            ring: RingKind::Request,
                            cause,
                        },
                        _ => Violation::ShortFrame(RingKind::Request),
                    })
            }
        };
        let check = check.map_err(|v| self.fail(v))?;
        self.waiter.ring_server(check.wake_peer)?;
        if !check.sleep {
            return Ok(());
        }
        let woke = self.waiter.block(deadline);
        match what {
            WaitFor::Response => self.responses.cancel_sleep(),
            WaitFor::Dispatch => self.dispatch.cancel_sleep(),
            WaitFor::RequestSpace(_) => self.requests.cancel_sleep(),
        }
        *spinning = None;
        match woke? {
            Woke::Bell => Ok(()),
            Woke::Timeout => Err(ClientError::Timeout),
            Woke::ServerGone => Err(self.gone()),
        }
    }

    /// Sends a request without waiting for its response; returns its id.
    ///
    /// # Errors
    ///
    /// [`ClientError::TooLarge`] beyond [`max_request_len`](Client::max_request_len);
    /// `Timeout` when the request ring stays full past the request timeout;
    /// `Disconnected`; `Corrupt`.
    pub fn send_request(&mut self, command: u16, payload: &[u8]) -> Result<u64, ClientError> {
        self.send_request_vectored(command, &[payload])
    }

    /// Sends the concatenation of `parts` as one request; returns its id.
    ///
    /// # Errors
    ///
    /// As [`send_request`](Client::send_request).
    pub fn send_request_vectored(
        &mut self,
        command: u16,
        parts: &[&[u8]],
    ) -> Result<u64, ClientError> {
        self.alive()?;
        let len = parts
            .iter()
            .map(|p| p.len())
            .fold(REQUEST_HEADER_LEN, usize::saturating_add);
        let id = self.pending.next_id();
        let header = RequestHeader { id, command }.encode();
        let deadline = Deadline::after(self.options.request_timeout);
        let mut spinning = None;
        loop {
            // The ring is the one place the length is checked.
            match self.requests.try_reserve(len) {
                Ok(mut grant) => {
                    grant.write_at(0, &header);
                    let mut at = REQUEST_HEADER_LEN;
                    for part in parts {
                        grant.write_at(at, part);
                        at += part.len();
                    }
                    let published = grant.commit();
                    self.pending.sent();
                    self.waiter.ring_server(published.wake)?;
                    return Ok(id);
                }
                Err(PushError::Full) => {
                    self.wait(WaitFor::RequestSpace(len), &mut spinning, deadline)?
                }
                Err(PushError::TooLarge { len, max }) => {
                    return Err(ClientError::TooLarge {
                        len: len - REQUEST_HEADER_LEN,
                        max: max.saturating_sub(REQUEST_HEADER_LEN),
                    })
                }
                Err(PushError::Corrupt(cause)) => {
                    return Err(self.fail(Violation::Ring {
                        ring: RingKind::Request,
                        cause,
                    }))
                }
            }
        }
    }

    /// Waits until the response to `want` (or to any request) is found.
    fn locate(
        &mut self,
        want: Option<u64>,
        timeout: Option<Duration>,
    ) -> Result<Found, ClientError> {
        self.alive()?;
        match want {
            Some(id) if !self.pending.knows(id) => return Err(ClientError::UnknownRequest(id)),
            None if self.pending.is_empty() => return Err(ClientError::UnknownRequest(0)),
            _ => {}
        }
        let deadline = Deadline::after(timeout);
        let mut spinning = None;
        loop {
            let (found, wake) = match self.pending.locate(&mut self.responses, want) {
                Ok(located) => located,
                Err(v) => return Err(self.fail(v)),
            };
            self.waiter.ring_server(wake)?;
            if let Some(found) = found {
                return Ok(found);
            }
            self.wait(WaitFor::Response, &mut spinning, deadline)?;
        }
    }

    /// Waits for the response to `want` (or any), as a zero-copy view.
    fn await_response(
        &mut self,
        want: Option<u64>,
        timeout: Option<Duration>,
    ) -> Result<ResponseRef<'_>, ClientError> {
        match self.locate(want, timeout)? {
            Found::Stashed(id) => {
                let (status, data) = self
                    .pending
                    .take_stashed(id)
                    .ok_or(ClientError::UnknownRequest(id))?;
                Ok(ResponseRef {
                    id,
                    status,
                    body: Body::Owned(data),
                })
            }
            Found::Ring(header) => {
                self.pending.answered(header.id);
                let grant = match self.responses.try_peek() {
                    Ok(Some(grant)) => grant,
                    // The frame was validated a moment ago and only we release it.
                    _ => {
                        return Err(ClientError::Corrupt(Violation::ShortFrame(
                            RingKind::Response,
                        )))
                    }
                };
                Ok(ResponseRef {
                    id: header.id,
                    status: header.status,
                    body: Body::Ring {
                        grant: Some(grant),
                        server_bell: self.waiter.server_bell(),
                    },
                })
            }
        }
    }

    /// Sends a request and waits for its response, which is copied into a `Vec`.
    ///
    /// # Errors
    ///
    /// As [`send_request`](Client::send_request) and
    /// [`wait_response`](Client::wait_response).
    pub fn request(&mut self, command: u16, payload: &[u8]) -> Result<Response, ClientError> {
        self.request_vectored(command, &[payload])
    }

    /// Sends the concatenation of `parts` and waits for the response.
    ///
    /// # Errors
    ///
    /// As [`request`](Client::request).
    pub fn request_vectored(
        &mut self,
        command: u16,
        parts: &[&[u8]],
    ) -> Result<Response, ClientError> {
        let id = self.send_request_vectored(command, parts)?;
        self.wait_response(id, self.options.request_timeout)
    }

    /// Sends a request and copies the response payload into `buf`; returns
    /// `(status, length)`.
    ///
    /// # Errors
    ///
    /// A response longer than `buf` gives [`ClientError::BufferTooSmall`] with the
    /// request id; the response is kept, and [`wait_response`](Client::wait_response)
    /// with that id returns it. Otherwise as [`request`](Client::request).
    pub fn request_into(
        &mut self,
        command: u16,
        payload: &[u8],
        buf: &mut [u8],
    ) -> Result<(i32, usize), ClientError> {
        let r = self.request_in_place(command, payload)?;
        let len = r.len();
        if len > buf.len() {
            let (id, status, data) = (r.id(), r.status(), r.to_vec());
            drop(r);
            self.pending.stash(id, status, data);
            return Err(ClientError::BufferTooSmall { id, needed: len });
        }
        r.read_into(buf);
        Ok((r.status(), len))
    }

    /// Sends a request and returns its response in place, in shared memory (zero
    /// copy: read it with [`ResponseRef::read_into`] and friends). The response is
    /// released when the guard is dropped.
    ///
    /// # Errors
    ///
    /// As [`request`](Client::request).
    pub fn request_in_place(
        &mut self,
        command: u16,
        payload: &[u8],
    ) -> Result<ResponseRef<'_>, ClientError> {
        let id = self.send_request(command, payload)?;
        let timeout = self.options.request_timeout;
        let r = self.await_response(Some(id), timeout)?;
        if let Some(e) = status_error(r.status) {
            return Err(e);
        }
        Ok(r)
    }

    /// Waits for the response to request `id` (from [`send_request`](Client::send_request)).
    ///
    /// # Errors
    ///
    /// The error a library status stands for (`TryAgain`, `UnknownCommand`,
    /// `Abandoned`, `ResponseTooLarge`, `BadRequest`); `UnknownRequest` for an id
    /// not in flight; `Timeout`; `Disconnected`; `Corrupt`.
    pub fn wait_response(
        &mut self,
        id: u64,
        timeout: Option<Duration>,
    ) -> Result<Response, ClientError> {
        let r = self.await_response(Some(id), timeout)?;
        let (status, data) = (r.status, r.to_vec());
        drop(r);
        match status_error(status) {
            Some(e) => Err(e),
            None => Ok(Response { status, data }),
        }
    }

    /// Waits for the response to any outstanding request: `(id, result)`.
    ///
    /// # Errors
    ///
    /// `UnknownRequest(0)` when nothing is in flight; `Timeout`; `Disconnected`;
    /// `Corrupt`. A library status is the inner result's error.
    pub fn receive_response(
        &mut self,
        timeout: Option<Duration>,
    ) -> Result<(u64, Result<Response, ClientError>), ClientError> {
        let r = self.await_response(None, timeout)?;
        let (id, status, data) = (r.id, r.status, r.to_vec());
        drop(r);
        Ok((
            id,
            status_error(status).map_or(Ok(Response { status, data }), Err),
        ))
    }

    /// Receives the next dispatch message in place. `timeout` `Some(ZERO)` polls;
    /// `None` waits as long as the server lives. When it returns `Ok(None)` with a zero
    /// timeout, [`as_fd`](AsFd::as_fd) becomes readable when a message arrives (or the
    /// server dies).
    ///
    /// # Errors
    ///
    /// `Disconnected`; `Corrupt`.
    pub fn dispatch_recv(
        &mut self,
        timeout: Option<Duration>,
    ) -> Result<Option<DispatchMsg<'_>>, ClientError> {
        self.alive()?;
        let deadline = Deadline::after(timeout);
        let mut spinning = None;
        loop {
            match self.dispatch.try_peek() {
                Ok(Some(_)) => break,
                Ok(None) => {}
                Err(e) => return Err(self.fail(dispatch_violation(e))),
            }
            if timeout == Some(Duration::ZERO) {
                if self.arm_poll_fd()? {
                    continue;
                }
                return Ok(None);
            }
            match self.wait(WaitFor::Dispatch, &mut spinning, deadline) {
                Ok(()) => {}
                Err(ClientError::Timeout) => return Ok(None),
                Err(e) => return Err(e),
            }
        }
        match self.dispatch.try_peek() {
            Ok(Some(grant)) => Ok(Some(DispatchMsg {
                grant: Some(grant),
                server_bell: self.waiter.server_bell(),
            })),
            _ => Err(ClientError::Corrupt(Violation::ShortFrame(
                RingKind::Dispatch,
            ))),
        }
    }

    /// Arms the pollable fd: drains the doorbell, announces sleep on the dispatch
    /// ring. True if a message arrived meanwhile (look again).
    fn arm_poll_fd(&mut self) -> Result<bool, ClientError> {
        self.waiter.drain()?;
        let check = match self.dispatch.prepare_sleep() {
            Ok(check) => check,
            Err(e) => return Err(self.fail(dispatch_violation(e))),
        };
        self.waiter.ring_server(check.wake_peer)?;
        if !check.sleep {
            return Ok(true);
        }
        if self.waiter.server_gone()? {
            return Err(self.gone());
        }
        Ok(false)
    }
}

/// The violation a failed pop of the dispatch ring stands for.
fn dispatch_violation(e: coroipc_ring::PopError) -> Violation {
    match e {
        coroipc_ring::PopError::Corrupt(cause) => Violation::Ring {
            ring: RingKind::Dispatch,
            cause,
        },
        coroipc_ring::PopError::BufferTooSmall { .. } => Violation::ShortFrame(RingKind::Dispatch),
    }
}

impl AsFd for Client {
    /// An fd that polls readable when dispatch messages wait (after `dispatch_recv`
    /// returned none) or when the server is gone. (Should creating it fail, e.g. at the
    /// fd limit, the socket itself is returned: it still reports the server's death.)
    fn as_fd(&self) -> BorrowedFd<'_> {
        match self.waiter.poll_fd() {
            Ok(fd) => fd,
            Err(e) => {
                tracing::warn!(error = %e, "cannot create the dispatch poll fd");
                self.waiter.socket_fd()
            }
        }
    }
}

impl AsRawFd for Client {
    fn as_raw_fd(&self) -> RawFd {
        self.as_fd().as_raw_fd()
    }
}
