//! The server's side of the handshake (SPEC §2.2, §2.6): admit a client (limits,
//! credentials, security callback), read its connect request without blocking, build
//! its region and tell the service, then reply with the descriptors or a refusal.

use std::io::{self, Read};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::sync::Arc;

use coroipc_ring::Consumer;

use super::accept::refuse;
use super::poll::{token, KIND_BELL, KIND_PENDING, KIND_SOCKET};
use super::session::{Session, Watched};
use super::Server;
use crate::connection::{ConnShared, Connection, DisconnectReason};
use crate::deadline::Deadline;
use crate::os::{self, PeerCred};
use crate::protocol::{
    grant_capacity, status, ConnectReply, ConnectRequest, HandshakeError, RegionLayout,
    CONNECT_REQUEST_LEN, DISPATCH, REQUEST, RESPONSE,
};
use crate::service::ErasedPrivate;

/// A client that connected and has not finished the handshake.
/// A connection the service accepted, before the reply is sent.
struct Opened {
    shared: Arc<ConnShared>,
    requests: Consumer,
    private: ErasedPrivate,
    handle: Connection,
}

pub(crate) struct Pending {
    pub(crate) stream: UnixStream,
    pub(crate) cred: PeerCred,
    /// When the handshake is dropped (never, for a timeout too large to represent).
    pub(crate) deadline: Deadline,
    pub(crate) buf: [u8; CONNECT_REQUEST_LEN],
    pub(crate) got: usize,
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

impl Server {
    /// A client just accepted (non-blocking already: `os::accept_nonblocking`).
    pub(super) fn admit_client(&mut self, stream: UnixStream) {
        if self.conns.len() + self.pending.len() >= self.limits.max_connections {
            tracing::info!(
                max_connections = self.limits.max_connections,
                "connection refused: limit reached"
            );
            self.stats.refused(status::CONNECTION_LIMIT);
            self.freed_fds = true;
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
                self.stats.refused(status::ACCESS_DENIED);
                self.freed_fds = true;
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

    pub(super) fn drop_pending(&mut self, id: u64) -> Option<Pending> {
        let p = self.pending.remove(&id)?;
        self.poller
            .remove(p.stream.as_fd(), token(id, KIND_PENDING));
        Some(p)
    }

    pub(super) fn progress_handshake(&mut self, id: u64) {
        let Some(p) = self.pending.get_mut(&id) else {
            return;
        };
        match read_handshake(p) {
            HandshakeRead::Partial => {}
            HandshakeRead::Closed => {
                self.drop_pending(id);
                self.freed_fds = true;
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
                self.stats.refused(code);
                self.freed_fds = true;
                refuse(&p.stream, code);
            }
        }
    }

    fn complete_handshake(&mut self, id: u64, p: Pending, request: ConnectRequest) {
        let (memfd, opened, layout) = match self.open_connection(id, &p, &request) {
            Ok(opened) => opened,
            Err(code) => {
                self.stats.refused(code);
                self.freed_fds = true;
                refuse(&p.stream, code);
                return;
            }
        };
        let reply = ConnectReply {
            status: status::OK,
            request_ring: layout.rings[REQUEST].capacity as u32,
            response_ring: layout.rings[RESPONSE].capacity as u32,
            dispatch_ring: layout.rings[DISPATCH].capacity as u32,
            region_len: layout.len as u64,
            connection_id: id,
        };
        let Opened {
            shared,
            requests,
            private,
            handle,
        } = opened;
        let sent = shared
            .bell
            .with_ends(|[server_end, client_end]| {
                let fds = [memfd.as_fd(), server_end, client_end];
                os::send_with_fds(p.stream.as_fd(), &reply.encode(), &fds)
            })
            .unwrap_or_else(|| Err(io::ErrorKind::NotConnected.into()));
        // The mapping keeps the memory alive: no descriptor kept per connection.
        drop(memfd);
        // Only what was added is removed at the disconnect (`PollHooks` promise).
        let mut watched = Watched::default();
        let registered = sent.and_then(|()| {
            let bell = token(id, KIND_BELL);
            shared
                .bell
                .with_fd(|fd| self.poller.add_bell(fd, bell))
                .unwrap_or_else(|| Err(io::ErrorKind::NotConnected.into()))?;
            watched.bell = true;
            self.poller.add(p.stream.as_fd(), token(id, KIND_SOCKET))?;
            watched.socket = true;
            Ok(())
        });
        let conn = Session {
            span: super::session::span(&handle),
            stream: p.stream,
            requests,
            private: Some(private),
            handle,
            adapt: crate::spin::Adaptive::idle(),
            watched,
        };
        self.conns.insert(id, conn);
        // Connected (on_connect accepted): counted before a failed reply closes it, so
        // `closed` never exceeds `connected`.
        self.stats.connected();
        if let Err(e) = registered {
            tracing::info!(error = %e, "handshake reply failed");
            self.disconnect(id, DisconnectReason::ClientClosed);
            return;
        }
        tracing::debug!(id, service = request.service, pid = p.cred.pid, "connected");
        // Requests may already be waiting.
        self.service_connection(id);
        // The reply is out: build the next client's resources while this one attaches.
        self.spare.refill(&layout);
    }

    /// Grants the ring sizes, creates the region and the connection's shared state,
    /// and asks the service (`on_connect`). A refusal comes back as its status code.
    fn open_connection(
        &mut self,
        id: u64,
        p: &Pending,
        request: &ConnectRequest,
    ) -> Result<(OwnedFd, Opened, RegionLayout), i32> {
        let Some(service) = self.services.get_mut(&request.service) else {
            tracing::info!(service = request.service, "no such service");
            return Err(status::NO_SUCH_SERVICE);
        };
        let l = &self.limits;
        let caps = [
            request.request_ring,
            request.response_ring,
            request.dispatch_ring,
        ]
        .map(|r| grant_capacity(r, l.default_ring_size, l.min_ring_size, l.max_ring_size));
        let layout = RegionLayout::new(caps).map_err(|e| {
            tracing::warn!(error = %e, "granted ring sizes do not lay out");
            status::NO_RESOURCES
        })?;
        let resources = match self.spare.take(&layout) {
            // Closed connections waiting for release hold descriptors: free them
            // before refusing this client for lack of them.
            Err(e) if os::is_fd_exhaustion(&e) && self.teardown.release_all() => {
                self.spare.take(&layout)
            }
            taken => taken,
        };
        let resources = resources.map_err(|e| {
            tracing::warn!(error = %e, "cannot create the connection's memory or doorbells");
            if os::is_fd_exhaustion(&e) {
                status::OUT_OF_FDS
            } else {
                status::NO_RESOURCES
            }
        })?;
        let (memfd, requests, outgoing) = resources.into_parts();
        let shared = ConnShared::new(
            id,
            request.service,
            p.cred,
            outgoing,
            l.queue_bounds(),
            service.overflow_policy(),
            self.work.clone(),
        );
        let handle = Connection {
            shared: shared.clone(),
        };
        let private = match service.connect(&handle) {
            Ok(private) => private,
            Err(code) => {
                // A clone the service kept of the refused connection pins nothing.
                drop(handle);
                ConnShared::let_go(&shared);
                return Err(if code > 0 { code } else { status::REFUSED });
            }
        };
        let opened = Opened {
            shared,
            requests,
            private,
            handle,
        };
        Ok((memfd, opened, layout))
    }
}
