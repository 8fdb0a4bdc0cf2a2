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
use super::waiter::Waiter;
use super::Client;
use crate::deadline::Deadline;
use crate::error::{ClientError, ConnectError, ConnectStep, ProtocolError, RingKind};
use crate::os::{self, PeerBell, Readiness, ShmError, SocketName};
use crate::protocol::{
    status, ConnectReply, ConnectRequest, RegionLayout, CONNECT_FDS, CONNECT_REPLY_LEN,
};
use crate::region::{self, ClientRings};
use crate::spin::{Spin, SpinStep};

/// How long a blocking connect sleeps between attempts while the server's backlog is
/// full.
const BACKLOG_RETRY: std::time::Duration = std::time::Duration::from_millis(1);

/// A connection the server accepted: its id, rings and waiter.
pub(crate) struct Accepted {
    pub(crate) connection_id: u64,
    pub(crate) rings: ClientRings,
    pub(crate) waiter: Waiter,
}

/// A connect in progress, for event loops: [`Client::connect_start`] begins it,
/// [`finish`](Connecting::finish) advances it without blocking.
///
/// Between calls, wait until [`as_fd`](AsFd::as_fd) (the socket, the same fd
/// throughout) polls readable. While the server's backlog is full
/// ([`backlog_full`](Connecting::backlog_full)) there is nothing to wait for: call
/// `finish` again after a short sleep (the socket polls ready at once then, so a plain
/// poll loop simply retries). The connect timeout of the options bounds the whole
/// handshake: past it `finish` returns `Timeout`.
#[derive(Debug)]
pub struct Connecting {
    name: SocketName,
    service: u16,
    options: ConnectOptions,
    deadline: Deadline,
    /// The socket, from the first connect attempt to the client.
    stream: UnixStream,
    stage: Stage,
}

/// Where the handshake is. Invariant: `got <= CONNECT_REPLY_LEN`.
#[derive(Debug)]
enum Stage {
    /// The server's backlog was full: connect again.
    Backlog,
    /// The request is sent; reading the reply and its descriptors.
    Reply {
        buf: [u8; CONNECT_REPLY_LEN],
        got: usize,
        fds: Vec<OwnedFd>,
    },
}

/// What [`Connecting::finish`] got to.
#[derive(Debug)]
// Moved a few times per connect: not worth a box for the client.
#[allow(clippy::large_enum_variant)]
pub enum Finish {
    /// The handshake is done.
    Connected(Client),
    /// Not yet: wait (see [`Connecting`]) and call `finish` on it again.
    Pending(Connecting),
}

impl Connecting {
    /// Starts a non-blocking connect (one attempt at the socket; see
    /// [`Client::connect_start`]).
    pub(crate) fn start(
        name: &SocketName,
        service: u16,
        options: &ConnectOptions,
    ) -> Result<Connecting, ConnectError> {
        let os_error = |source| ConnectError::Os {
            name: name.clone(),
            step: ConnectStep::Connect,
            source,
        };
        let stream = os::unconnected().map_err(os_error)?;
        let mut c = Connecting {
            name: name.clone(),
            service,
            options: options.clone(),
            deadline: Deadline::after(Some(options.connect_timeout)),
            stream,
            stage: Stage::Backlog,
        };
        c.attempt()?;
        Ok(c)
    }

    /// The server's name.
    pub fn name(&self) -> &SocketName {
        &self.name
    }

    /// True while the server's backlog is full: no fd readiness announces room, call
    /// [`finish`](Connecting::finish) again after a short sleep.
    pub fn backlog_full(&self) -> bool {
        matches!(self.stage, Stage::Backlog)
    }

    fn os_error(&self, step: ConnectStep, source: io::Error) -> ConnectError {
        os_error(&self.name, step, source)
    }

    /// One non-blocking connect attempt; sends the request once connected.
    fn attempt(&mut self) -> Result<(), ConnectError> {
        match os::try_connect(&self.name, &self.stream) {
            Ok(true) => self.send_request(),
            Ok(false) => Ok(()),
            Err(e) => Err(self.os_error(ConnectStep::Connect, e)),
        }
    }

    /// Sends the connect request and moves to reading the reply.
    fn send_request(&mut self) -> Result<(), ConnectError> {
        let request = ConnectRequest {
            service: self.service,
            request_ring: self.options.request_ring,
            response_ring: self.options.response_ring,
            dispatch_ring: self.options.dispatch_ring,
        };
        // MSG_NOSIGNAL: a host that does not ignore SIGPIPE must not die here. A server
        // that refuses at accept closes at once: its reply is still there to read. The
        // request is far smaller than an empty socket's buffer: it never blocks.
        if let Err(e) = os::send_with_fds(self.stream.as_fd(), &request.encode(), &[]) {
            if !matches!(
                e.kind(),
                io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset
            ) {
                return Err(self.os_error(ConnectStep::Handshake, e));
            }
        }
        // (The socket is non-blocking from its creation.)
        self.stage = Stage::Reply {
            buf: [0; CONNECT_REPLY_LEN],
            got: 0,
            fds: Vec::new(),
        };
        Ok(())
    }

    /// Advances the handshake without blocking: [`Finish::Connected`] with the
    /// client, or [`Finish::Pending`] with the handshake to wait for (see the type's
    /// documentation).
    ///
    /// # Errors
    ///
    /// As [`Client::connect`]; `Timeout` once the connect timeout has passed.
    pub fn finish(mut self) -> Result<Finish, ConnectError> {
        if self.backlog_full() {
            self.attempt()?;
        }
        if !self.read_reply()? {
            if self.deadline.passed() {
                return Err(ConnectError::Timeout);
            }
            return Ok(Finish::Pending(self));
        }
        let Connecting {
            name,
            service,
            options,
            stream,
            stage,
            ..
        } = self;
        let Stage::Reply { buf, fds, .. } = stage else {
            return Err(ConnectError::Disconnected); // (not reached: the reply is complete)
        };
        let reply = ConnectReply::decode(&buf)?;
        let accepted = accept(&name, service, reply, stream, fds, &options)?;
        Client::from_accepted(accepted, &options)
            .map(Finish::Connected)
            .map_err(|e| match e {
                ClientError::Io(source) => os_error(&name, ConnectStep::Notify, source),
                ClientError::Corrupt(v) => ProtocolError::Violation(v).into(),
                _ => ConnectError::Disconnected,
            })
    }

    /// Reads what has arrived of the reply; true once it is complete.
    fn read_reply(&mut self) -> Result<bool, ConnectError> {
        let Stage::Reply { buf, got, fds } = &mut self.stage else {
            return Ok(false);
        };
        while *got < CONNECT_REPLY_LEN {
            match os::recv_with_fds(self.stream.as_fd(), &mut buf[*got..], CONNECT_FDS) {
                Ok((0, _)) => return Err(ConnectError::Disconnected),
                Ok((n, more)) => {
                    *got += n;
                    fds.extend(more);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) => {
                    return Err(ConnectError::Os {
                        name: self.name.clone(),
                        step: ConnectStep::Handshake,
                        source: e,
                    })
                }
            }
        }
        Ok(true)
    }
}

impl AsFd for Connecting {
    /// The socket: readable when the server's reply (or its hang-up) arrived.
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.stream.as_fd()
    }
}

impl AsRawFd for Connecting {
    fn as_raw_fd(&self) -> RawFd {
        self.stream.as_raw_fd()
    }
}

/// An OS error at `step` of connecting to `name`.
fn os_error(name: &SocketName, step: ConnectStep, source: io::Error) -> ConnectError {
    ConnectError::Os {
        name: name.clone(),
        step,
        source,
    }
}

/// Refuses a grant above both the ring's request and the client's ceiling (what a
/// hostile server could otherwise make the client map and allocate).
fn check_grants(reply: &ConnectReply, options: &ConnectOptions) -> Result<(), ProtocolError> {
    let rings = [
        (RingKind::Request, reply.request_ring, options.request_ring),
        (
            RingKind::Response,
            reply.response_ring,
            options.response_ring,
        ),
        (
            RingKind::Dispatch,
            reply.dispatch_ring,
            options.dispatch_ring,
        ),
    ];
    for (ring, granted, requested) in rings {
        let ceiling = options.ring_ceiling(requested);
        if granted > ceiling {
            return Err(ProtocolError::Grant {
                ring,
                granted,
                ceiling,
            });
        }
    }
    Ok(())
}

/// Checks the reply and attaches to the region it describes; the socket goes to the
/// client's waiter.
fn accept(
    name: &SocketName,
    service: u16,
    reply: ConnectReply,
    stream: UnixStream,
    fds: Vec<OwnedFd>,
    options: &ConnectOptions,
) -> Result<Accepted, ConnectError> {
    refusal(reply.status, service)?;
    check_grants(&reply, options)?;
    let [memfd, server_end, client_end]: [OwnedFd; CONNECT_FDS] =
        fds.try_into()
            .map_err(|fds: Vec<OwnedFd>| ProtocolError::FdCount {
                got: fds.len(),
                expected: CONNECT_FDS,
            })?;
    // Offsets come from the granted sizes, never from the server.
    let layout = RegionLayout::new([reply.request_ring, reply.response_ring, reply.dispatch_ring])?;
    if reply.region_len != layout.len as u64 {
        return Err(ProtocolError::RegionLength {
            got: reply.region_len,
            expected: layout.len as u64,
        }
        .into());
    }
    let rings = region::attach(memfd, &layout).map_err(|e| match e {
        ProtocolError::SharedMemory(ShmError::Io(source)) => {
            os_error(name, ConnectStep::Map, source)
        }
        other => other.into(),
    })?;
    let bell = PeerBell::adopt(client_end, server_end).map_err(ProtocolError::Doorbell)?;
    let waiter = Waiter::new(stream, bell).map_err(|e| os_error(name, ConnectStep::Notify, e))?;
    Ok(Accepted {
        connection_id: reply.connection_id,
        rings,
        waiter,
    })
}

/// The blocking handshake with `service` of the server under `name`: connect within
/// the timeout, then drive [`Connecting`], spinning on the socket first in spin mode.
pub(crate) fn blocking(
    name: &SocketName,
    service: u16,
    options: &ConnectOptions,
) -> Result<Client, ConnectError> {
    // The non-blocking state machine throughout: a socket non-blocking from its
    // creation (no timeout to set and clear around `connect`, no switch to
    // non-blocking after it: three system calls fewer than a blocking connect).
    let mut connecting = Connecting::start(name, service, options)?;
    let deadline = connecting.deadline;
    let mut spin = Spin::new(options.wait.spin(), deadline);
    loop {
        connecting = match connecting.finish()? {
            Finish::Connected(client) => return Ok(client),
            Finish::Pending(c) => c,
        };
        if connecting.backlog_full() {
            // No readiness announces room in the backlog: retry after a short sleep
            // (`finish` reports the deadline).
            std::thread::sleep(BACKLOG_RETRY.min(deadline.remaining().unwrap_or(BACKLOG_RETRY)));
            continue;
        }
        // (A dead server shows as end of stream in `finish`: no liveness check.)
        // (`finish` reports the deadline: an expired spin just polls once more.)
        if spin.step() != SpinStep::Done {
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
