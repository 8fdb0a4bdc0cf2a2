//! The client's side of the handshake (SPEC §2.2) as a state machine that never
//! blocks ([`Connecting`]): connect, send the connect request, read the reply and its
//! descriptors, turn a refusal into its error, attach to the region. The blocking
//! [`Client::connect`](super::Client::connect) drives the same machine, spinning on
//! the socket first in spin mode; an event loop drives it through
//! [`Client::connect_start`](super::Client::connect_start) and the socket's readiness.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;

use super::options::ConnectOptions;
use super::wait::Waiter;
use super::Client;
use crate::deadline::{Deadline, Spin, SpinStep};
use crate::error::{ClientError, ConnectError, ConnectStep, ProtocolError};
use crate::os::{self, Doorbell, Readiness, ShmError, SocketName};
use crate::protocol::{
    status, ConnectReply, ConnectRequest, RegionLayout, CONNECT_FDS, CONNECT_REPLY_LEN,
};
use crate::region::{self, ClientRings};

/// A connection the server accepted: its id, rings and waiter.
pub(crate) struct Accepted {
    pub(crate) connection_id: u64,
    pub(crate) rings: ClientRings,
    pub(crate) waiter: Waiter,
}

/// A connect in progress, for event loops: [`Client::connect_start`] begins it,
/// [`finish`](Connecting::finish) advances it without blocking.
///
/// Between calls, wait until [`as_fd`](AsFd::as_fd) (the socket) polls readable.
/// While the server's backlog is full ([`backlog_full`](Connecting::backlog_full))
/// there is nothing to wait for: call `finish` again after a short sleep (the socket
/// polls ready at once then, so a plain poll loop simply retries). The connect timeout
/// of the options bounds the whole handshake: past it `finish` returns `Timeout`.
#[derive(Debug)]
pub struct Connecting {
    name: SocketName,
    service: u16,
    options: ConnectOptions,
    deadline: Deadline,
    stage: Stage,
}

/// Where the handshake is. Invariant: `got <= CONNECT_REPLY_LEN`.
#[derive(Debug)]
enum Stage {
    /// The server's backlog was full: connect again.
    Backlog(UnixStream),
    /// The request is sent; reading the reply and its descriptors.
    Reply {
        stream: UnixStream,
        buf: [u8; CONNECT_REPLY_LEN],
        got: usize,
        fds: Vec<OwnedFd>,
    },
    /// Finished (a client was handed out or an error returned).
    Done,
}

impl Connecting {
    /// Starts a non-blocking connect (one attempt at the socket; see
    /// [`Client::connect_start`]).
    pub(crate) fn start(
        name: &SocketName,
        service: u16,
        options: &ConnectOptions,
    ) -> Result<Connecting, ConnectError> {
        let mut c = Connecting {
            name: name.clone(),
            service,
            options: options.clone(),
            deadline: Deadline::after(Some(options.connect_timeout)),
            stage: Stage::Done,
        };
        c.stage = c.attempt(None)?;
        Ok(c)
    }

    /// A handshake over a socket already connected (the blocking path).
    fn connected(
        stream: UnixStream,
        name: &SocketName,
        service: u16,
        options: &ConnectOptions,
        deadline: Deadline,
    ) -> Result<Connecting, ConnectError> {
        let mut c = Connecting {
            name: name.clone(),
            service,
            options: options.clone(),
            deadline,
            stage: Stage::Done,
        };
        c.stage = c.send_request(stream)?;
        Ok(c)
    }

    /// The server's name.
    pub fn name(&self) -> &SocketName {
        &self.name
    }

    /// True while the server's backlog is full: no fd readiness announces room, call
    /// [`finish`](Connecting::finish) again after a short sleep.
    pub fn backlog_full(&self) -> bool {
        matches!(self.stage, Stage::Backlog(_))
    }

    fn os_error(&self, step: ConnectStep, source: io::Error) -> ConnectError {
        ConnectError::Os {
            name: self.name.clone(),
            step,
            source,
        }
    }

    /// One non-blocking connect attempt (on the socket of the last one, if any).
    fn attempt(&self, sock: Option<UnixStream>) -> Result<Stage, ConnectError> {
        match os::try_connect(&self.name, sock) {
            Ok((stream, true)) => self.send_request(stream),
            Ok((stream, false)) => Ok(Stage::Backlog(stream)),
            Err(e) => Err(self.os_error(ConnectStep::Connect, e)),
        }
    }

    /// Sends the connect request and moves to reading the reply.
    fn send_request(&self, stream: UnixStream) -> Result<Stage, ConnectError> {
        let request = ConnectRequest {
            service: self.service,
            request_ring: self.options.request_ring,
            response_ring: self.options.response_ring,
            dispatch_ring: self.options.dispatch_ring,
        };
        // MSG_NOSIGNAL: a host that does not ignore SIGPIPE must not die here. A server
        // that refuses at accept closes at once: its reply is still there to read. The
        // request is far smaller than an empty socket's buffer: it never blocks.
        if let Err(e) = os::send_with_fds(stream.as_fd(), &request.encode(), &[]) {
            if !matches!(
                e.kind(),
                io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset
            ) {
                return Err(self.os_error(ConnectStep::Handshake, e));
            }
        }
        stream
            .set_nonblocking(true)
            .map_err(|e| self.os_error(ConnectStep::Handshake, e))?;
        Ok(Stage::Reply {
            stream,
            buf: [0; CONNECT_REPLY_LEN],
            got: 0,
            fds: Vec::new(),
        })
    }

    /// Advances the handshake without blocking: `Ok(Some(client))` when connected,
    /// `Ok(None)` when it must wait (see the type's documentation). After it returned
    /// a client or an error, further calls return [`ConnectError::Disconnected`].
    ///
    /// # Errors
    ///
    /// As [`Client::connect`].
    pub fn finish(&mut self) -> Result<Option<Client>, ConnectError> {
        let result = self.advance();
        if !matches!(result, Ok(None)) {
            self.stage = Stage::Done;
        }
        match result {
            Ok(None) if self.deadline.passed() => {
                self.stage = Stage::Done;
                Err(ConnectError::Timeout)
            }
            other => other,
        }
    }

    fn advance(&mut self) -> Result<Option<Client>, ConnectError> {
        if self.backlog_full() {
            if let Stage::Backlog(sock) = std::mem::replace(&mut self.stage, Stage::Done) {
                self.stage = self.attempt(Some(sock))?;
            }
        }
        let Stage::Reply {
            stream,
            buf,
            got,
            fds,
        } = &mut self.stage
        else {
            return match self.stage {
                Stage::Backlog(_) => Ok(None),
                _ => Err(ConnectError::Disconnected),
            };
        };
        while *got < CONNECT_REPLY_LEN {
            match os::recv_with_fds(stream.as_fd(), &mut buf[*got..], CONNECT_FDS) {
                Ok((0, _)) => return Err(ConnectError::Disconnected),
                Ok((n, more)) => {
                    *got += n;
                    fds.extend(more);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
                Err(e) => {
                    let name = self.name.clone();
                    return Err(ConnectError::Os {
                        name,
                        step: ConnectStep::Handshake,
                        source: e,
                    });
                }
            }
        }
        let Stage::Reply {
            stream, buf, fds, ..
        } = std::mem::replace(&mut self.stage, Stage::Done)
        else {
            return Err(ConnectError::Disconnected);
        };
        let reply = ConnectReply::decode(&buf)?;
        let accepted = self.accept(reply, stream, fds)?;
        Client::from_accepted(accepted, &self.options)
            .map(Some)
            .map_err(|e| match e {
                ClientError::Io(source) => self.os_error(ConnectStep::Notify, source),
                ClientError::Corrupt(v) => ProtocolError::Violation(v).into(),
                _ => ConnectError::Disconnected,
            })
    }

    /// Checks the reply and attaches to the region it describes.
    fn accept(
        &self,
        reply: ConnectReply,
        stream: UnixStream,
        fds: Vec<OwnedFd>,
    ) -> Result<Accepted, ConnectError> {
        refusal(reply.status, self.service)?;
        let [memfd, server_bell, client_bell]: [OwnedFd; CONNECT_FDS] =
            fds.try_into()
                .map_err(|fds: Vec<OwnedFd>| ProtocolError::FdCount {
                    got: fds.len(),
                    expected: CONNECT_FDS,
                })?;
        // Offsets come from the granted sizes, never from the server.
        let layout =
            RegionLayout::new([reply.request_ring, reply.response_ring, reply.dispatch_ring])?;
        if reply.region_len != layout.len as u64 {
            return Err(ProtocolError::RegionLength {
                got: reply.region_len,
                expected: layout.len as u64,
            }
            .into());
        }
        let rings = region::attach(memfd, &layout).map_err(|e| match e {
            ProtocolError::SharedMemory(ShmError::Io(source)) => {
                self.os_error(ConnectStep::Map, source)
            }
            other => other.into(),
        })?;
        let bell = |fd| Doorbell::from_fd(fd).map_err(ProtocolError::Doorbell);
        let waiter = Waiter::new(stream, bell(server_bell)?, bell(client_bell)?)
            .map_err(|e| self.os_error(ConnectStep::Notify, e))?;
        Ok(Accepted {
            connection_id: reply.connection_id,
            rings,
            waiter,
        })
    }

    /// The socket, while there is one.
    fn socket(&self) -> Option<&UnixStream> {
        match &self.stage {
            Stage::Backlog(s) | Stage::Reply { stream: s, .. } => Some(s),
            Stage::Done => None,
        }
    }
}

impl AsFd for Connecting {
    /// The socket: readable when the server's reply (or its hang-up) arrived.
    ///
    /// # Panics
    ///
    /// After [`finish`](Connecting::finish) returned a client or an error (the
    /// socket then belongs to the client, or is closed).
    fn as_fd(&self) -> BorrowedFd<'_> {
        match self.socket() {
            Some(s) => s.as_fd(),
            None => panic!("Connecting::as_fd after the handshake finished"),
        }
    }
}

impl AsRawFd for Connecting {
    fn as_raw_fd(&self) -> RawFd {
        self.as_fd().as_raw_fd()
    }
}

/// The blocking handshake with `service` of the server under `name`: connect within
/// the timeout, then drive [`Connecting`], spinning on the socket first in spin mode.
pub(crate) fn blocking(
    name: &SocketName,
    service: u16,
    options: &ConnectOptions,
) -> Result<Client, ConnectError> {
    let deadline = Deadline::after(Some(options.connect_timeout));
    let stream =
        os::connect(name, Some(options.connect_timeout)).map_err(|source| match source.kind() {
            io::ErrorKind::TimedOut => ConnectError::Timeout,
            _ => ConnectError::Os {
                name: name.clone(),
                step: ConnectStep::Connect,
                source,
            },
        })?;
    let mut connecting = Connecting::connected(stream, name, service, options, deadline)?;
    let mut spin = Spin::new(options.wait.spin());
    loop {
        if let Some(client) = connecting.finish()? {
            return Ok(client);
        }
        // (A dead server shows as end of stream in `finish`: no liveness check.)
        if spin.step() != SpinStep::Done {
            std::hint::spin_loop();
            continue;
        }
        let ready = os::wait_readable(&[connecting.as_fd()], deadline.remaining());
        match ready {
            Ok(Readiness::Timeout) => return Err(ConnectError::Timeout),
            Ok(Readiness::Ready(_)) => {}
            Err(e) => return Err(connecting.os_error(ConnectStep::Handshake, e)),
        }
    }
}

/// The error a reply status stands for (`Ok` for success).
fn refusal(code: i32, service: u16) -> Result<(), ConnectError> {
    Err(match code {
        status::OK => return Ok(()),
        status::NO_SUCH_SERVICE => ConnectError::NoSuchService(service),
        status::ACCESS_DENIED => ConnectError::AccessDenied,
        status::NO_RESOURCES => ConnectError::NoResources,
        status::CONNECTION_LIMIT => ConnectError::ConnectionLimit,
        status::OUT_OF_FDS => ConnectError::OutOfFds,
        status::REFUSED => ConnectError::Refused(status::REFUSED),
        code if code > 0 => ConnectError::Refused(code),
        code => ProtocolError::Status(code).into(),
    })
}
