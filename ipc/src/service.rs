//! The service trait: what a daemon implements per service id, and its type-erased
//! form stored by the server.

use std::any::Any;

use crate::conn::{ConnHandle, DisconnectReason, OverflowPolicy, Request, Responder};
use crate::os::PeerCred;

/// What a service learns about a connecting or disconnecting client.
#[derive(Clone, Debug)]
pub struct ConnectionInfo {
    /// The server's id for the connection.
    pub id: u64,
    /// The service id the client asked for.
    pub service: u16,
    /// The client's credentials.
    pub credentials: PeerCred,
    /// A handle for sending dispatch messages from any thread.
    pub handle: ConnHandle,
}

/// The handler returned an error instead of answering.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HandlerError {
    /// This service does not handle the command: the client gets an
    /// "unknown command" error and the connection stays up.
    #[error("unknown command")]
    UnknownCommand,
}

/// A service: registered under a `u16` id, it owns typed per-connection private data
/// ([`Service::Conn`]) and selects the handler for each command id itself (the
/// original's "user defined selector").
///
/// All methods run on the server thread.
pub trait Service: Send + 'static {
    /// Per-connection private data, created by `on_connect`, dropped after
    /// `on_disconnect`.
    type Conn: Send + 'static;

    /// A client connected (its credentials already passed the security callback).
    /// Return its private data, or refuse with a positive code the client receives.
    fn on_connect(&mut self, info: &ConnectionInfo) -> Result<Self::Conn, i32>;

    /// The connection ended; runs exactly once per accepted connection, whatever the
    /// cause.
    fn on_disconnect(
        &mut self,
        conn: Self::Conn,
        info: &ConnectionInfo,
        reason: &DisconnectReason,
    ) {
        let _ = (conn, info, reason);
    }

    /// Admission control, before the handler: `false` answers "try again" without
    /// running it (the original's `sending_allowed`).
    fn admit(&mut self, conn: &mut Self::Conn, command: u16) -> bool {
        let _ = (conn, command);
        true
    }

    /// Handles one request. Answer through `responder` (now, or later with
    /// [`Responder::defer`]); return `Err(HandlerError::UnknownCommand)` for commands
    /// this service does not have.
    fn handle(
        &mut self,
        conn: &mut Self::Conn,
        request: Request<'_>,
        responder: &mut Responder<'_>,
    ) -> Result<(), HandlerError>;

    /// The client's dispatch ring entered (`true`) or left (`false`) flow control.
    fn on_flow_control(&mut self, conn: &mut Self::Conn, info: &ConnectionInfo, on: bool) {
        let _ = (conn, info, on);
    }

    /// What to do with dispatch messages when the ring and queue are full.
    fn overflow_policy(&self) -> OverflowPolicy {
        OverflowPolicy::TryAgain
    }
}

/// Private data, type-erased.
pub(crate) type Private = Box<dyn Any + Send>;

/// [`Service`] with the private data type erased, as the server stores it.
pub(crate) trait ErasedService: Send {
    fn connect(&mut self, info: &ConnectionInfo) -> Result<Private, i32>;
    fn disconnect(&mut self, private: Private, info: &ConnectionInfo, reason: &DisconnectReason);
    fn admit(&mut self, private: &mut Private, command: u16) -> bool;
    fn handle(
        &mut self,
        private: &mut Private,
        request: Request<'_>,
        responder: &mut Responder<'_>,
    ) -> Result<(), HandlerError>;
    fn flow(&mut self, private: &mut Private, info: &ConnectionInfo, on: bool);
    fn overflow_policy(&self) -> OverflowPolicy;
}

impl<S: Service> ErasedService for S {
    fn connect(&mut self, info: &ConnectionInfo) -> Result<Private, i32> {
        self.on_connect(info).map(|c| Box::new(c) as Private)
    }

    fn disconnect(&mut self, private: Private, info: &ConnectionInfo, reason: &DisconnectReason) {
        // The server only ever stores what `connect` of this same service returned.
        if let Ok(conn) = private.downcast::<S::Conn>() {
            self.on_disconnect(*conn, info, reason);
        }
    }

    fn admit(&mut self, private: &mut Private, command: u16) -> bool {
        match private.downcast_mut::<S::Conn>() {
            Some(conn) => Service::admit(self, conn, command),
            None => false,
        }
    }

    fn handle(
        &mut self,
        private: &mut Private,
        request: Request<'_>,
        responder: &mut Responder<'_>,
    ) -> Result<(), HandlerError> {
        match private.downcast_mut::<S::Conn>() {
            Some(conn) => Service::handle(self, conn, request, responder),
            None => Err(HandlerError::UnknownCommand),
        }
    }

    fn flow(&mut self, private: &mut Private, info: &ConnectionInfo, on: bool) {
        if let Some(conn) = private.downcast_mut::<S::Conn>() {
            self.on_flow_control(conn, info, on);
        }
    }

    fn overflow_policy(&self) -> OverflowPolicy {
        Service::overflow_policy(self)
    }
}
