//! The client: connect, synchronous and pipelined requests, dispatch receive.
//!
//! A [`Client`] is `Send` but its request path takes `&mut self`, so two threads can
//! never interleave writes into one request ring (the original's corruption bug is a
//! compile error here). Waiting is spin-then-block or block-only ([`WaitMode`]); a
//! blocked call waits on its doorbell *and* the socket together, so a dead server ends
//! it at once.

use std::collections::{HashMap, HashSet};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use coroipc_ring::{AttachError, Consumer, Producer, PushError, RawRegion, ReadGrant, Wake};

use crate::deadline::{Deadline, Spin};
use crate::error::{ClientError, ConnectError};
use crate::os::{self, Doorbell, Epoll, Interest, Readiness, SharedMemory, SocketName};
use crate::protocol::{
    status, ConnectReply, ConnectRequest, RegionLayout, RequestHeader, ResponseHeader, CONNECT_FDS,
    CONNECT_REPLY_LEN, DISPATCH, REQUEST, REQUEST_HEADER_LEN, RESPONSE, RESPONSE_HEADER_LEN,
};

/// How a client waits for the server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WaitMode {
    /// Poll the ring for up to `spin`, then sleep on the doorbell.
    SpinThenBlock {
        /// Spin budget per wait.
        spin: Duration,
    },
    /// Sleep on the doorbell at once.
    Block,
}

impl Default for WaitMode {
    fn default() -> Self {
        WaitMode::SpinThenBlock {
            spin: Duration::from_micros(50),
        }
    }
}

/// Options for [`Client::connect`]. Ring sizes are requests; the server caps them.
#[derive(Clone, Debug)]
pub struct ConnectOptions {
    /// Request ring capacity asked for (0: server default).
    pub request_ring: u32,
    /// Response ring capacity asked for (0: server default).
    pub response_ring: u32,
    /// Dispatch ring capacity asked for (0: server default).
    pub dispatch_ring: u32,
    /// Bound on the whole handshake.
    pub connect_timeout: Duration,
    /// Bound on each synchronous request (None: wait as long as the server lives).
    pub request_timeout: Option<Duration>,
    /// How to wait.
    pub wait: WaitMode,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        ConnectOptions {
            request_ring: 0,
            response_ring: 0,
            dispatch_ring: 0,
            connect_timeout: Duration::from_secs(5),
            request_timeout: None,
            wait: WaitMode::default(),
        }
    }
}

/// A successful response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    /// 0 or a positive service-defined status.
    pub status: i32,
    /// The payload.
    pub data: Vec<u8>,
}

fn status_error(code: i32) -> Option<ClientError> {
    match code {
        c if c >= 0 => None,
        status::TRY_AGAIN => Some(ClientError::TryAgain),
        status::UNKNOWN_COMMAND => Some(ClientError::UnknownCommand),
        status::ABANDONED => Some(ClientError::Abandoned),
        status::RESPONSE_TOO_LARGE => Some(ClientError::ResponseTooLarge),
        _ => Some(ClientError::BadRequest),
    }
}

/// What a wait is for.
#[derive(Clone, Copy)]
enum WaitFor {
    Response,
    Dispatch,
    RequestSpace(usize),
}

/// A connection to one service of a server.
pub struct Client {
    stream: std::os::unix::net::UnixStream,
    requests: Producer,
    responses: Consumer,
    dispatch: Consumer,
    server_bell: Doorbell,
    /// Rung by the server when this client announced sleep on a ring: for a
    /// response, request space, or a dispatch message.
    bell: Doorbell,
    /// Readable when the doorbell rang (after an empty `dispatch_recv` armed it) or
    /// the server is gone. Created on first use (most connections never poll).
    poll: OnceLock<Epoll>,
    /// What a blocking wait sleeps on (see `block`). Created on first block.
    waiter: Option<Epoll>,
    connection_id: u64,
    next_id: u64,
    outstanding: HashSet<u64>,
    /// Responses read while looking for another id.
    stash: HashMap<u64, (i32, Vec<u8>)>,
    options: ConnectOptions,
    /// Set once the connection is unusable.
    dead: Option<String>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("connection_id", &self.connection_id)
            .field("outstanding", &self.outstanding.len())
            .field("dead", &self.dead)
            .finish()
    }
}

fn map_attach(e: AttachError) -> ConnectError {
    ConnectError::Protocol(format!("ring: {e}"))
}

impl Client {
    /// Connects to `service` of the server listening under `name`.
    pub fn connect(
        name: &SocketName,
        service: u16,
        options: &ConnectOptions,
    ) -> Result<Client, ConnectError> {
        let deadline = Deadline::after(Some(options.connect_timeout));
        let stream = os::connect(name, Some(options.connect_timeout))?;
        let request = ConnectRequest {
            service,
            request_ring: options.request_ring,
            response_ring: options.response_ring,
            dispatch_ring: options.dispatch_ring,
        };
        // MSG_NOSIGNAL: a host that does not ignore SIGPIPE must not die here. A server
        // that refuses at accept closes at once: its reply is still there to read.
        if let Err(e) = os::send_with_fds(stream.as_fd(), &request.encode(), &[]) {
            if !matches!(
                e.kind(),
                std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset
            ) {
                return Err(e.into());
            }
        }
        let mut buf = [0u8; CONNECT_REPLY_LEN];
        let mut got = 0;
        let mut fds: Vec<OwnedFd> = Vec::new();
        // In spin mode, poll the socket for the reply a little before sleeping.
        stream.set_nonblocking(true)?;
        let spin = Spin::new(match options.wait {
            WaitMode::SpinThenBlock { spin } => spin,
            WaitMode::Block => Duration::ZERO,
        });
        while got < CONNECT_REPLY_LEN {
            match os::recv_with_fds(stream.as_fd(), &mut buf[got..], CONNECT_FDS) {
                Ok((0, _)) => return Err(ConnectError::Disconnected),
                Ok((n, more)) => {
                    got += n;
                    fds.extend(more);
                    continue;
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e.into()),
            }
            if spin.active() && !deadline.passed() {
                std::hint::spin_loop();
                continue;
            }
            if let Readiness::Timeout = os::wait_readable(&[stream.as_fd()], deadline.remaining())?
            {
                return Err(ConnectError::Timeout);
            }
        }
        let reply = ConnectReply::decode(&buf)?;
        match reply.status {
            status::OK => {}
            status::NO_SUCH_SERVICE => return Err(ConnectError::NoSuchService(service)),
            status::ACCESS_DENIED => return Err(ConnectError::AccessDenied),
            status::NO_RESOURCES => return Err(ConnectError::NoResources),
            status::CONNECTION_LIMIT => return Err(ConnectError::ConnectionLimit),
            status::OUT_OF_FDS => return Err(ConnectError::OutOfFds),
            code if code > 0 => return Err(ConnectError::Refused(code)),
            status::REFUSED => return Err(ConnectError::Refused(status::REFUSED)),
            code => {
                return Err(ConnectError::Protocol(format!(
                    "server answered status {code}"
                )))
            }
        }
        if fds.len() != CONNECT_FDS {
            return Err(ConnectError::Protocol(format!(
                "{} fds received, {CONNECT_FDS} expected",
                fds.len()
            )));
        }
        // Offsets come from the granted sizes, never from the server.
        let layout =
            RegionLayout::new([reply.request_ring, reply.response_ring, reply.dispatch_ring])?;
        if reply.region_len != layout.len as u64 {
            return Err(ConnectError::Protocol(
                "region length does not match the ring sizes".into(),
            ));
        }
        let mut fds = fds.into_iter();
        let (Some(memfd), Some(server_bell), Some(client_bell)) =
            (fds.next(), fds.next(), fds.next())
        else {
            return Err(ConnectError::Protocol("missing fds".into()));
        };
        let shm = Arc::new(
            SharedMemory::from_fd_verified(memfd, layout.len)
                .map_err(|e| ConnectError::Protocol(e.to_string()))?,
        );
        let region = |i: usize| -> Result<RawRegion, ConnectError> {
            let ptr = std::ptr::NonNull::new(shm.as_ptr().wrapping_add(layout.offsets[i]))
                .ok_or_else(|| ConnectError::Protocol("null mapping".into()))?;
            // SAFETY: the ring lies inside the verified, sealed mapping (RegionLayout
            // computed by us), which the ring handles keep alive; the server may write
            // anything there, which the ring handles validate.
            unsafe { RawRegion::new(ptr, layout.rings[i].region_size()) }.map_err(map_attach)
        };
        let keep: Arc<dyn std::any::Any + Send + Sync> = shm.clone();
        // SAFETY: as above; one handle per ring in this process.
        let requests = unsafe { Producer::attach(region(REQUEST)?) }
            .map_err(map_attach)?
            .keep_alive(keep.clone());
        // SAFETY: as above.
        let responses = unsafe { Consumer::attach(region(RESPONSE)?) }
            .map_err(map_attach)?
            .keep_alive(keep.clone());
        // SAFETY: as above.
        let dispatch = unsafe { Consumer::attach(region(DISPATCH)?) }
            .map_err(map_attach)?
            .keep_alive(keep);
        for (ring, want) in [
            (requests.config().capacity, reply.request_ring),
            (responses.config().capacity, reply.response_ring),
            (dispatch.config().capacity, reply.dispatch_ring),
        ] {
            if ring != want as usize {
                return Err(ConnectError::Protocol(
                    "ring geometry differs from the granted size".into(),
                ));
            }
        }
        let bell = |fd| {
            Doorbell::from_fd(fd).map_err(|e| ConnectError::Protocol(format!("doorbell: {e}")))
        };
        let server_bell = bell(server_bell)?;
        let client_bell = bell(client_bell)?;
        Ok(Client {
            stream,
            requests,
            responses,
            dispatch,
            server_bell,
            bell: client_bell,
            poll: OnceLock::new(),
            waiter: None,
            connection_id: reply.connection_id,
            next_id: 1,
            outstanding: HashSet::new(),
            stash: HashMap::new(),
            options: options.clone(),
            dead: None,
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
        self.outstanding.len()
    }

    fn alive(&self) -> Result<(), ClientError> {
        match &self.dead {
            None => Ok(()),
            Some(_) => Err(ClientError::Disconnected),
        }
    }

    fn fail(&mut self, why: String) -> ClientError {
        tracing::warn!(
            connection = self.connection_id,
            why = why.as_str(),
            "connection failed"
        );
        self.dead = Some(why.clone());
        ClientError::Corrupt(why)
    }

    /// Looks (without waiting) at the socket: the server never writes to it after the
    /// handshake, so readable or hung up means it is gone.
    fn check_server_alive(&mut self) -> Result<(), ClientError> {
        let look = os::wait_readable(&[self.stream.as_fd()], Some(Duration::ZERO))?;
        if look.readable(0) || look.hangup(0) {
            self.dead = Some("server closed the connection".into());
            return Err(ClientError::Disconnected);
        }
        Ok(())
    }

    fn ring_server(&mut self, wake: Wake) -> Result<(), ClientError> {
        if wake.is_needed() {
            self.server_bell.ring()?;
        }
        Ok(())
    }

    /// Blocks until the client doorbell rings, the server dies, or `deadline`.
    ///
    /// One waiter for every kind of wait: an epoll holding the doorbell
    /// edge-triggered (each ring is one event; no draining read) and the socket. The
    /// caller announced sleep on the ring it waits for, and re-checks it after waking:
    /// a ring meant for another ring of this client is a harmless spurious wake.
    fn block(&mut self, deadline: Deadline) -> Result<(), ClientError> {
        let mut events = Vec::with_capacity(2);
        let waiter = match self.waiter.take() {
            Some(w) => w,
            None => {
                let w = Epoll::new()?;
                w.add_edge_triggered(self.bell.as_fd(), 0, Interest::READABLE)?;
                w.add(self.stream.as_fd(), 1, Interest::READABLE)?;
                w
            }
        };
        let waited = waiter.wait(&mut events, deadline.remaining());
        self.waiter = Some(waiter);
        if waited? == 0 {
            return Err(ClientError::Timeout);
        }
        // The server never writes to the socket after the handshake: readable means
        // end of stream.
        if events.iter().any(|e| e.token == 1) {
            self.dead = Some("server closed the connection".into());
            return Err(ClientError::Disconnected);
        }
        Ok(())
    }

    /// One step of a wait: spin while within the budget, else announce and sleep.
    fn wait(
        &mut self,
        what: WaitFor,
        spinning: &mut Option<Spin>,
        deadline: Deadline,
    ) -> Result<(), ClientError> {
        if deadline.passed() {
            return Err(ClientError::Timeout);
        }
        if let WaitMode::SpinThenBlock { spin } = self.options.wait {
            let budget = spinning.get_or_insert_with(|| Spin::new(spin));
            if budget.active() {
                if budget.liveness_due() {
                    self.check_server_alive()?;
                }
                for _ in 0..32 {
                    std::hint::spin_loop();
                }
                return Ok(());
            }
        }
        let check = match what {
            WaitFor::Response => self.responses.prepare_sleep().map_err(|e| e.to_string()),
            WaitFor::Dispatch => self.dispatch.prepare_sleep().map_err(|e| e.to_string()),
            WaitFor::RequestSpace(len) => self
                .requests
                .prepare_sleep_for_space(len)
                .map_err(|e| e.to_string()),
        };
        let check = check.map_err(|e| self.fail(e))?;
        self.ring_server(check.wake_peer)?;
        if !check.sleep {
            return Ok(());
        }
        let result = self.block(deadline);
        match what {
            WaitFor::Response => self.responses.cancel_sleep(),
            WaitFor::Dispatch => self.dispatch.cancel_sleep(),
            WaitFor::RequestSpace(_) => self.requests.cancel_sleep(),
        }
        *spinning = None;
        result
    }

    /// Sends a request without waiting for its response; returns its id.
    pub fn send_request(&mut self, command: u16, payload: &[u8]) -> Result<u64, ClientError> {
        self.send_request_vectored(command, &[payload])
    }

    /// Sends the concatenation of `parts` as one request; returns its id.
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
        if len > self.requests.max_message_len() {
            return Err(ClientError::TooLarge {
                len: len - REQUEST_HEADER_LEN,
                max: self.max_request_len(),
            });
        }
        let id = self.next_id;
        let header = RequestHeader { id, command }.encode();
        let deadline = Deadline::after(self.options.request_timeout);
        let mut spinning = None;
        loop {
            match self.requests.try_reserve(len) {
                Ok(mut grant) => {
                    grant.write_at(0, &header);
                    let mut at = REQUEST_HEADER_LEN;
                    for part in parts {
                        grant.write_at(at, part);
                        at += part.len();
                    }
                    let published = grant.commit();
                    self.next_id += 1;
                    self.outstanding.insert(id);
                    self.ring_server(published.wake)?;
                    return Ok(id);
                }
                Err(PushError::Full) => {
                    self.wait(WaitFor::RequestSpace(len), &mut spinning, deadline)?
                }
                Err(PushError::TooLarge { len, max }) => {
                    return Err(ClientError::TooLarge { len, max })
                }
                Err(PushError::Corrupt(c)) => return Err(self.fail(format!("request ring: {c}"))),
            }
        }
    }

    /// Reads responses until the one to `want` (or to any outstanding request when
    /// `None`) is in the stash or at the head of the response ring; responses to other
    /// requests move into the stash. True when it is there to take.
    fn locate_response(&mut self, want: Option<u64>) -> Result<bool, ClientError> {
        match want {
            Some(id) if self.stash.contains_key(&id) => return Ok(true),
            None if !self.stash.is_empty() => return Ok(true),
            _ => {}
        }
        loop {
            let header = match self.responses.try_peek() {
                Ok(None) => return Ok(false),
                Ok(Some(g)) => ResponseHeader::decode(g.as_slice()),
                Err(e) => return Err(self.fail(format!("response ring: {e}"))),
            };
            let Some(header) = header else {
                return Err(self.fail("response shorter than its header".into()));
            };
            if !self.outstanding.contains(&header.id) {
                return Err(self.fail(format!("response to unknown request {}", header.id)));
            }
            if want.is_none_or(|w| w == header.id) {
                return Ok(true);
            }
            let (data, wake) = match self.responses.try_peek() {
                Ok(Some(grant)) => (
                    grant.as_slice()[RESPONSE_HEADER_LEN..].to_vec(),
                    grant.release(),
                ),
                _ => return Err(self.fail("response vanished".into())),
            };
            self.outstanding.remove(&header.id);
            self.stash.insert(header.id, (header.status, data));
            self.ring_server(wake)?;
        }
    }

    /// Waits for the response to `want` (or any), as a zero-copy view.
    fn await_response(
        &mut self,
        want: Option<u64>,
        timeout: Option<Duration>,
    ) -> Result<ResponseRef<'_>, ClientError> {
        self.alive()?;
        if let Some(id) = want {
            if !self.outstanding.contains(&id) && !self.stash.contains_key(&id) {
                return Err(ClientError::UnknownRequest(id));
            }
        }
        let deadline = Deadline::after(timeout);
        let mut spinning = None;
        while !self.locate_response(want)? {
            self.wait(WaitFor::Response, &mut spinning, deadline)?;
        }
        let Client {
            responses,
            stash,
            outstanding,
            server_bell,
            ..
        } = self;
        let stashed = want
            .or_else(|| stash.keys().next().copied())
            .and_then(|id| stash.remove_entry(&id));
        if let Some((id, (status, data))) = stashed {
            return Ok(ResponseRef {
                id,
                status,
                body: Body::Owned(data),
            });
        }
        let grant = match responses.try_peek() {
            Ok(Some(grant)) => grant,
            _ => return Err(ClientError::Corrupt("response vanished".into())),
        };
        let Some(header) = ResponseHeader::decode(grant.as_slice()) else {
            return Err(ClientError::Corrupt("response vanished".into()));
        };
        outstanding.remove(&header.id);
        Ok(ResponseRef {
            id: header.id,
            status: header.status,
            body: Body::Ring {
                grant: Some(grant),
                bell: server_bell,
            },
        })
    }

    /// Sends a request and waits for its response, which is copied into a `Vec`.
    pub fn request(&mut self, command: u16, payload: &[u8]) -> Result<Response, ClientError> {
        self.request_vectored(command, &[payload])
    }

    /// Sends the concatenation of `parts` and waits for the response.
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
            self.stash.insert(id, (status, data));
            return Err(ClientError::BufferTooSmall { id, needed: len });
        }
        buf[..len].copy_from_slice(&r);
        Ok((r.status(), len))
    }

    /// Sends a request and returns its response in place, in shared memory (zero
    /// copy). The response is released when the guard is dropped.
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
    pub fn receive_response(
        &mut self,
        timeout: Option<Duration>,
    ) -> Result<(u64, Result<Response, ClientError>), ClientError> {
        if self.outstanding.is_empty() && self.stash.is_empty() {
            return Err(ClientError::UnknownRequest(0));
        }
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
                Err(e) => return Err(self.fail(format!("dispatch ring: {e}"))),
            }
            if timeout == Some(Duration::ZERO) {
                // Arm the pollable fd: drain the doorbell, then announce sleep.
                self.bell.drain()?;
                let check = self.dispatch.prepare_sleep().map_err(|e| e.to_string());
                let check = check.map_err(|e| self.fail(e))?;
                self.ring_server(check.wake_peer)?;
                if !check.sleep {
                    continue;
                }
                self.check_server_alive()?;
                return Ok(None);
            }
            match self.wait(WaitFor::Dispatch, &mut spinning, deadline) {
                Ok(()) => {}
                Err(ClientError::Timeout) => return Ok(None),
                Err(e) => return Err(e),
            }
        }
        let Client {
            dispatch,
            server_bell,
            ..
        } = self;
        match dispatch.try_peek() {
            Ok(Some(grant)) => Ok(Some(DispatchMsg {
                grant: Some(grant),
                bell: server_bell,
            })),
            _ => Err(ClientError::Corrupt("dispatch message vanished".into())),
        }
    }
}

impl Client {
    fn dispatch_poll(&self) -> std::io::Result<&Epoll> {
        if let Some(p) = self.poll.get() {
            return Ok(p);
        }
        let p = Epoll::new()?;
        p.add(self.bell.as_fd(), 0, Interest::READABLE)?;
        p.add(self.stream.as_fd(), 1, Interest::READABLE)?;
        Ok(self.poll.get_or_init(|| p))
    }
}

impl AsFd for Client {
    /// An fd that polls readable when dispatch messages wait (after `dispatch_recv`
    /// returned none) or when the server is gone. (Should creating it fail, e.g. at the
    /// fd limit, the socket itself is returned: it still reports the server's death.)
    fn as_fd(&self) -> BorrowedFd<'_> {
        match self.dispatch_poll() {
            Ok(p) => p.as_fd(),
            Err(e) => {
                tracing::warn!(error = %e, "cannot create the dispatch poll fd");
                self.stream.as_fd()
            }
        }
    }
}

enum Body<'a> {
    Ring {
        grant: Option<ReadGrant<'a>>,
        bell: &'a Doorbell,
    },
    Owned(Vec<u8>),
}

/// A response, possibly still in shared memory; released when dropped.
pub struct ResponseRef<'a> {
    id: u64,
    status: i32,
    body: Body<'a>,
}

impl ResponseRef<'_> {
    /// The request id answered.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// 0 or a service status.
    pub fn status(&self) -> i32 {
        self.status
    }
}

impl std::ops::Deref for ResponseRef<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match &self.body {
            Body::Ring { grant: Some(g), .. } => &g.as_slice()[RESPONSE_HEADER_LEN..],
            Body::Ring { grant: None, .. } => &[],
            Body::Owned(v) => v,
        }
    }
}

impl Drop for ResponseRef<'_> {
    fn drop(&mut self) {
        if let Body::Ring { grant, bell } = &mut self.body {
            if let Some(g) = grant.take() {
                if g.release().is_needed() {
                    let _ = bell.ring();
                }
            }
        }
    }
}

/// A dispatch message in shared memory; released when dropped.
pub struct DispatchMsg<'a> {
    grant: Option<ReadGrant<'a>>,
    bell: &'a Doorbell,
}

impl std::ops::Deref for DispatchMsg<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.grant.as_ref().map_or(&[], |g| g.as_slice())
    }
}

impl Drop for DispatchMsg<'_> {
    fn drop(&mut self) {
        if let Some(g) = self.grant.take() {
            if g.release().is_needed() {
                let _ = self.bell.ring();
            }
        }
    }
}
