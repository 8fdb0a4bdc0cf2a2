//! The service trait: what a daemon implements per service id (the seed's
//! `init_fn`, `exit_fn`, `sending_allowed` and handler selector, with typed private
//! data), and its type-erased form stored by the server.

use std::any::Any;

use crate::connection::{Connection, DisconnectReason, OverflowPolicy};
use crate::error::HandlerError;
use crate::respond::{Request, Responder};

/// A service: registered under a `u16` id, it owns typed per-connection private data
/// ([`Service::Private`]) and selects the handler for each command id itself (the
/// original's "user defined selector").
///
/// Every callback gets the [`Connection`] it is about (id, service, credentials, and
/// a handle to keep for dispatching from other threads). All methods run on the
/// server thread.
///
/// # Example
///
/// Admission control (the seed's `sending_allowed`), a response deferred to another
/// thread, a malformed payload rejected, and the disconnect callback:
///
/// ```
/// use coroipc::{Connection, DisconnectReason, HandlerError, Request, Responder, Service};
///
/// struct Jobs {
///     busy: bool,
/// }
///
/// impl Service for Jobs {
///     type Private = Vec<u64>; // job ids of this client
///
///     fn on_connect(&mut self, conn: &Connection) -> Result<Vec<u64>, i32> {
///         if conn.credentials().uid == u32::MAX {
///             return Err(1); // the client gets `ConnectError::Refused(1)`
///         }
///         Ok(Vec::new())
///     }
///
///     fn admit(&mut self, _jobs: &mut Vec<u64>, _command: u16) -> bool {
///         !self.busy // `false` answers "try again" without running `handle`
///     }
///
///     fn handle(
///         &mut self,
///         jobs: &mut Vec<u64>,
///         req: Request<'_>,
///         resp: &mut Responder<'_>,
///     ) -> Result<(), HandlerError> {
///         let Ok(job) = <[u8; 8]>::try_from(req.payload) else {
///             return Err(HandlerError::InvalidRequest);
///         };
///         jobs.push(u64::from_le_bytes(job));
///         let later = resp.defer().map_err(|_| HandlerError::InvalidRequest)?;
///         std::thread::spawn(move || {
///             let _ = later.respond(0, b"done"); // from any thread
///         });
///         Ok(())
///     }
///
///     fn on_disconnect(&mut self, jobs: Vec<u64>, conn: &Connection, reason: &DisconnectReason) {
///         println!("client {} left with {} jobs: {reason:?}", conn.id(), jobs.len());
///     }
/// }
/// ```
pub trait Service: Send + 'static {
    /// Per-connection private data (the seed's "user defined private data"), created
    /// by `on_connect`, dropped after `on_disconnect`.
    type Private: Send + 'static;

    /// A client connected (its credentials already passed the security callback).
    /// Return its private data, or refuse with a positive code the client receives.
    ///
    /// # Errors
    ///
    /// A refusal code: positive codes reach the client as
    /// [`ConnectError::Refused`](crate::ConnectError::Refused); others as `REFUSED`.
    fn on_connect(&mut self, conn: &Connection) -> Result<Self::Private, i32>;

    /// The connection ended; runs exactly once per accepted connection, whatever the
    /// cause.
    fn on_disconnect(
        &mut self,
        private: Self::Private,
        conn: &Connection,
        reason: &DisconnectReason,
    ) {
        let _ = (private, conn, reason);
    }

    /// Admission control, before the handler: `false` answers "try again" without
    /// running it (the original's `sending_allowed`).
    fn admit(&mut self, private: &mut Self::Private, command: u16) -> bool {
        let _ = (private, command);
        true
    }

    /// Handles one request. Answer through `responder` (now, or later with
    /// [`Responder::defer`]); return `Err(HandlerError::UnknownCommand)` for commands
    /// this service does not have.
    ///
    /// # Errors
    ///
    /// [`HandlerError`]: the client gets the matching status.
    fn handle(
        &mut self,
        private: &mut Self::Private,
        request: Request<'_>,
        responder: &mut Responder<'_>,
    ) -> Result<(), HandlerError>;

    /// Whether the handler takes a request of `command` with a `len`-byte payload in
    /// place: `true` skips the copy into the server's buffer, and the handler reads
    /// the payload from the request ring through [`Request::in_ring`] (its `payload`
    /// is then empty). For large requests the handler forwards or echoes
    /// ([`Responder::respond_from`]) or reads in pieces. Default: `false`.
    fn in_place(&self, command: u16, len: usize) -> bool {
        let _ = (command, len);
        false
    }

    /// The client's dispatch ring entered (`true`) or left (`false`) flow control.
    fn on_flow_control(&mut self, private: &mut Self::Private, conn: &Connection, on: bool) {
        let _ = (private, conn, on);
    }

    /// What to do with dispatch messages when the ring and queue are full.
    fn overflow_policy(&self) -> OverflowPolicy {
        OverflowPolicy::TryAgain
    }
}

/// Private data, type-erased.
pub(crate) type ErasedPrivate = Box<dyn Any + Send>;

/// [`Service`] with the private data type erased, as the server stores it.
pub(crate) trait ErasedService: Send {
    fn connect(&mut self, conn: &Connection) -> Result<ErasedPrivate, i32>;
    fn disconnect(&mut self, private: ErasedPrivate, conn: &Connection, reason: &DisconnectReason);
    fn admit(&mut self, private: &mut ErasedPrivate, command: u16) -> bool;
    fn handle(
        &mut self,
        private: &mut ErasedPrivate,
        request: Request<'_>,
        responder: &mut Responder<'_>,
    ) -> Result<(), HandlerError>;
    fn flow(&mut self, private: &mut ErasedPrivate, conn: &Connection, on: bool);
    fn overflow_policy(&self) -> OverflowPolicy;
    fn in_place(&self, command: u16, len: usize) -> bool;
}

impl<S: Service> ErasedService for S {
    fn connect(&mut self, conn: &Connection) -> Result<ErasedPrivate, i32> {
        self.on_connect(conn).map(|p| Box::new(p) as ErasedPrivate)
    }

    fn disconnect(&mut self, private: ErasedPrivate, conn: &Connection, reason: &DisconnectReason) {
        // The server only ever stores what `connect` of this same service returned.
        if let Ok(private) = private.downcast::<S::Private>() {
            self.on_disconnect(*private, conn, reason);
        }
    }

    fn admit(&mut self, private: &mut ErasedPrivate, command: u16) -> bool {
        match private.downcast_mut::<S::Private>() {
            Some(private) => Service::admit(self, private, command),
            None => false,
        }
    }

    fn handle(
        &mut self,
        private: &mut ErasedPrivate,
        request: Request<'_>,
        responder: &mut Responder<'_>,
    ) -> Result<(), HandlerError> {
        match private.downcast_mut::<S::Private>() {
            Some(private) => Service::handle(self, private, request, responder),
            None => Err(HandlerError::UnknownCommand),
        }
    }

    fn flow(&mut self, private: &mut ErasedPrivate, conn: &Connection, on: bool) {
        if let Some(private) = private.downcast_mut::<S::Private>() {
            self.on_flow_control(private, conn, on);
        }
    }

    fn overflow_policy(&self) -> OverflowPolicy {
        Service::overflow_policy(self)
    }

    fn in_place(&self, command: u16, len: usize) -> bool {
        Service::in_place(self, command, len)
    }
}
