//! tokio support (cargo feature `tokio`): an async client, and serving a [`Server`]
//! on a runtime.
//!
//! Both are thin: the blocking types already expose one fd each that reads ready when
//! there is something to do ([`Client`](crate::Client)'s notification fd,
//! [`Server::poll_fd`]), and non-blocking calls that do it
//! ([`Client::try_response`](crate::Client::try_response),
//! [`Client::try_send_request`](crate::Client::try_send_request),
//! `dispatch_recv(Some(ZERO))`, [`Server::run_once`]). This module registers those fds
//! with tokio's reactor ([`AsyncFd`](::tokio::io::unix::AsyncFd)) and retries the
//! calls on readiness. No call blocks a runtime thread, except a service's own
//! handler when the server is served here (keep handlers short, or defer).
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use coroipc::tokio::AsyncClient;
//! use coroipc::{ConnectOptions, SocketName};
//!
//! let client = AsyncClient::connect(&SocketName::abstract_name("kv"), 1, &ConnectOptions::default()).await?;
//! let reply = client.request(1, b"key").await?;
//! let event = client.next_dispatch().await?;
//! # let _ = (reply, event);
//! # Ok(())
//! # }
//! ```

mod client;
mod reactor;
mod wakers;

use std::io;
use std::os::fd::AsRawFd;
use std::time::Duration;

use crate::deadline::Deadline;
use crate::server::Server;
pub use client::{AsyncClient, DispatchStream, ResponseFuture};
use reactor::register;

/// The longest [`serve`] works before it yields to the runtime: the order of tokio's
/// own cooperative budget (128 operations), and long against a yield (a run-queue
/// round trip, well under a microsecond), so throughput does not notice.
const TURN: Duration = Duration::from_millis(1);

/// Serves `server` on the current tokio runtime until its [`StopHandle`] is used:
/// the built-in loop's [`run_once`](Server::run_once), called whenever
/// [`poll_fd`](Server::poll_fd) reads ready or a handshake deadline comes. Handlers
/// run on the runtime thread that polls this future.
///
/// Cooperative: under steady load a pass always finds work (a connection that had
/// more than a batch is rung again), so after 1 ms of work the future yields
/// (`tokio::task::yield_now`), letting the runtime's timers, I/O and other tasks run
/// before it serves on. The turn is checked between events and between the requests
/// of a pass, and a pass polls an idle request ring (`Limits::spin`,
/// `Limits::adaptive_spin`) no longer than the turn lasts, and the listener admits
/// no more clients after it: a turn overruns by one handshake or one
/// handler at most. The events a turn had no time for are served first in the next
/// (until 2026-12-07 one `run_once` served every ready connection, each a pass of up
/// to `Limits::batch` requests plus up to 1 ms of polling, before the first check).
///
/// # Errors
///
/// `Unsupported` for a server built with poll hooks; the OS error of registering the
/// fd or of `epoll_wait`.
///
/// [`StopHandle`]: crate::StopHandle
pub async fn serve(server: &mut Server) -> io::Result<()> {
    let raw = server
        .poll_fd()
        .ok_or_else(|| io::Error::new(io::ErrorKind::Unsupported, "server uses poll hooks"))?
        .as_raw_fd();
    // SAFETY: the server owns its epoll for its whole life; `server` is borrowed for
    // the whole of this future, and `fd` is dropped at its end.
    let fd = unsafe { register(raw) }?;
    loop {
        // Sleeping on the reactor (below) gave the runtime its turn.
        let mut turn = Deadline::after(Some(TURN));
        // Everything ready now (events a turn had no time for are kept by the server
        // and come first in the next call, never needing a new edge).
        loop {
            let handled = server.run_turn(turn)?;
            if server.take_stop() {
                return Ok(());
            }
            if handled == 0 {
                break;
            }
            if turn.passed() {
                ::tokio::task::yield_now().await;
                turn = Deadline::after(Some(TURN));
            }
        }
        let readable = fd.readable();
        let ready = match server.next_deadline() {
            Some(at) => match ::tokio::time::timeout_at(at.into(), readable).await {
                Ok(ready) => Some(ready?),
                Err(_) => None,
            },
            None => Some(readable.await?),
        };
        if let Some(mut ready) = ready {
            ready.clear_ready();
        }
    }
}
