//! An in-process server driven through `PollHooks`, shared by the ipc fuzz targets.

use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use coroipc::{
    Connection, HandlerError, Limits, PollHooks, Request, Responder, Server, ServerBuilder, Service, SocketName,
    Token,
};

/// Echo on command 1, unknown otherwise.
pub struct Echo;

impl Service for Echo {
    type Private = ();
    fn on_connect(&mut self, _: &Connection) -> Result<(), i32> {
        Ok(())
    }
    fn handle(&mut self, _: &mut (), req: Request<'_>, resp: &mut Responder<'_>) -> Result<(), HandlerError> {
        match req.command {
            1 => {
                let _ = resp.respond(0, req.payload);
                Ok(())
            }
            _ => Err(HandlerError::UnknownCommand),
        }
    }
}

/// Records what the server asks to watch.
#[derive(Clone, Default)]
pub struct Watched(pub Arc<Mutex<Vec<(RawFd, Token)>>>);

impl PollHooks for Watched {
    fn add(&mut self, fd: BorrowedFd<'_>, token: Token) -> std::io::Result<()> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).push((fd.as_raw_fd(), token));
        Ok(())
    }
    fn remove(&mut self, _fd: BorrowedFd<'_>, token: Token) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).retain(|(_, t)| *t != token);
    }
}

/// A server under a unique abstract name, with small limits.
pub fn server(tag: &str) -> (Server, Watched, SocketName) {
    let name = SocketName::abstract_name(format!("coroipc-fuzz-{tag}-{}", std::process::id()));
    let watched = Watched::default();
    let limits = Limits {
        handshake_timeout: Duration::from_millis(1),
        max_ring_size: 1 << 16,
        min_ring_size: 4096,
        default_ring_size: 4096,
        spin: Duration::ZERO,
        ..Limits::default()
    };
    let server = ServerBuilder::new(name.clone())
        .limits(limits)
        .service(1, Echo)
        .build_with_hooks(watched.clone())
        .unwrap_or_else(|e| panic!("fuzz server: {e}"));
    (server, watched, name)
}

/// Delivers readiness to every watched token (as a level-triggered loop would).
pub fn pump(server: &mut Server, watched: &Watched) {
    for _ in 0..4 {
        let tokens: Vec<Token> = watched.0.lock().unwrap_or_else(|e| e.into_inner()).iter().map(|(_, t)| *t).collect();
        for t in tokens {
            server.handle_ready(t);
        }
    }
    server.handle_timeouts();
}
