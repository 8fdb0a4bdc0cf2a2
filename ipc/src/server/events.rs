//! A connected client's events on the server thread: its socket (a hang-up), its
//! doorbell (requests to serve, a close asked for), and its end (`on_disconnect`
//! exactly once).

use std::io::{self, Read};
use std::os::fd::AsFd;
use std::sync::atomic::Ordering;

use super::poll::{token, KIND_BELL, KIND_SOCKET};
use super::serve::{serve, More};
use super::Server;
use crate::connection::DisconnectReason;
use crate::error::Violation;

impl Server {
    /// Reads from a connected client's socket: clients send nothing after the
    /// handshake, so this is a hang-up (or a protocol violation).
    pub(super) fn check_socket(&mut self, id: u64) {
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        let _in_span = conn.span.clone().entered();
        let mut byte = [0u8; 1];
        let reason = loop {
            match conn.stream.read(&mut byte) {
                Ok(0) => break DisconnectReason::ClientClosed,
                Ok(_) => break DisconnectReason::ProtocolViolation(Violation::SocketData),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(_) => break DisconnectReason::ClientClosed,
            }
        };
        self.disconnect(id, reason);
    }

    /// Ends connection `id`: unregisters its fds, calls `on_disconnect` once, and
    /// lets the session go (now, or soon through `teardown`), which releases its
    /// descriptors and memory whoever still holds a [`Connection`].
    pub(super) fn disconnect(&mut self, id: u64, reason: DisconnectReason) {
        let Some(mut conn) = self.conns.remove(&id) else {
            return;
        };
        let _in_span = conn.span.clone().entered();
        self.stats.closed();
        // The socket closes when `conn` drops below; the listener is watched again
        // (if stalled) after the event, once that descriptor is free.
        self.freed_fds = true;
        conn.handle.shared.closed.store(true, Ordering::Release);
        if conn.watched.bell {
            let poller = &mut self.poller;
            let bell = token(id, KIND_BELL);
            conn.handle
                .shared
                .bell
                .with_fd(|fd| poller.remove(fd, bell));
        }
        if conn.watched.socket {
            self.poller
                .remove(conn.stream.as_fd(), token(id, KIND_SOCKET));
        }
        conn.handle.shared.response.close();
        conn.handle.shared.dispatch.close();
        if let DisconnectReason::ProtocolViolation(why) = &reason {
            tracing::warn!(%why, "client disconnected");
        } else {
            tracing::debug!(?reason, "client disconnected");
        }
        if let (Some(private), Some(service)) = (
            conn.private.take(),
            self.services.get_mut(&conn.handle.service()),
        ) {
            service.disconnect(private, &conn.handle, &reason);
        }
        // A client that closed cannot see its socket still open; any other end is
        // told to the client by the hang-up, at once (see `teardown`).
        if reason == DisconnectReason::ClientClosed {
            self.teardown.defer(conn);
        }
    }

    /// Everything the server thread does for one connection when woken: flush queued
    /// output, tell the service of flow-control changes, handle requests, and arm the
    /// doorbells it needs.
    pub(super) fn service_connection(&mut self, id: u64) {
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        let _in_span = conn.span.clone().entered();
        // (No clone of the shared state lives across `disconnect`: it would count as
        // a handle the service kept, and the session's drop would release for it.)
        if conn.handle.shared.closing.load(Ordering::Acquire) {
            let reason = conn.handle.shared.closing_reason();
            self.disconnect(id, reason);
            return;
        }
        let Some(service) = self.services.get_mut(&conn.handle.service()) else {
            return;
        };
        let turn = self.turn;
        let outcome = serve(
            conn,
            service.as_mut(),
            &self.limits,
            turn,
            &mut self.scratch,
        );
        match outcome {
            Ok(More::No) => {}
            Ok(More::Yes) => {
                if let Err(e) = conn.handle.shared.bell.ring_self() {
                    tracing::warn!(error = %e, "cannot re-arm the server doorbell");
                }
            }
            Err(reason) => self.disconnect(id, reason),
        }
    }
}
