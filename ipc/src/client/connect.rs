//! The client's side of the handshake (SPEC §2.2): send the connect request, read the
//! reply and its descriptors within the connect timeout (spinning first in spin mode),
//! turn a refusal into its error, and attach to the region.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;

use super::options::ConnectOptions;
use super::wait::Waiter;
use crate::deadline::{Deadline, Spin, SpinStep};
use crate::error::{ConnectError, ConnectStep, ProtocolError};
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

/// Runs the handshake with `service` of the server under `name`.
pub(crate) fn handshake(
    name: &SocketName,
    service: u16,
    options: &ConnectOptions,
) -> Result<Accepted, ConnectError> {
    let os_error = |step, source| ConnectError::Os {
        name: name.clone(),
        step,
        source,
    };
    let deadline = Deadline::after(Some(options.connect_timeout));
    let stream =
        os::connect(name, Some(options.connect_timeout)).map_err(|source| match source.kind() {
            io::ErrorKind::TimedOut => ConnectError::Timeout,
            _ => os_error(ConnectStep::Connect, source),
        })?;
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
            io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset
        ) {
            return Err(os_error(ConnectStep::Handshake, e));
        }
    }
    let (reply, fds) = read_reply(&stream, options, deadline).map_err(|e| match e {
        ReplyError::Os(source) => os_error(ConnectStep::Handshake, source),
        ReplyError::Connect(e) => e,
    })?;
    refusal(reply.status, service)?;
    let [memfd, server_bell, client_bell]: [OwnedFd; CONNECT_FDS] =
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
        ProtocolError::SharedMemory(ShmError::Io(source)) => os_error(ConnectStep::Map, source),
        other => other.into(),
    })?;
    let bell = |fd| Doorbell::from_fd(fd).map_err(ProtocolError::Doorbell);
    let waiter = Waiter::new(stream, bell(server_bell)?, bell(client_bell)?);
    Ok(Accepted {
        connection_id: reply.connection_id,
        rings,
        waiter,
    })
}

/// Why reading the reply failed: an OS error (wrapped by the caller with the name
/// and step), or anything else.
enum ReplyError {
    Os(io::Error),
    Connect(ConnectError),
}

impl From<io::Error> for ReplyError {
    fn from(e: io::Error) -> Self {
        ReplyError::Os(e)
    }
}

impl From<ConnectError> for ReplyError {
    fn from(e: ConnectError) -> Self {
        ReplyError::Connect(e)
    }
}

/// Reads the reply and its descriptors, spinning on the socket first in spin mode.
fn read_reply(
    stream: &UnixStream,
    options: &ConnectOptions,
    deadline: Deadline,
) -> Result<(ConnectReply, Vec<OwnedFd>), ReplyError> {
    let mut buf = [0u8; CONNECT_REPLY_LEN];
    let mut got = 0;
    let mut fds: Vec<OwnedFd> = Vec::new();
    stream.set_nonblocking(true)?;
    let mut spin = Spin::new(options.wait.spin());
    while got < CONNECT_REPLY_LEN {
        match os::recv_with_fds(stream.as_fd(), &mut buf[got..], CONNECT_FDS) {
            Ok((0, _)) => return Err(ConnectError::Disconnected.into()),
            Ok((n, more)) => {
                got += n;
                fds.extend(more);
                continue;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e.into()),
        }
        // (A dead server shows as end of stream above: no liveness check needed.)
        if spin.step() != SpinStep::Done && !deadline.passed() {
            std::hint::spin_loop();
            continue;
        }
        if let Readiness::Timeout = os::wait_readable(&[stream.as_fd()], deadline.remaining())? {
            return Err(ConnectError::Timeout.into());
        }
    }
    let reply = ConnectReply::decode(&buf).map_err(ConnectError::from)?;
    Ok((reply, fds))
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
