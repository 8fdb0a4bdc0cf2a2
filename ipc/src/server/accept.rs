//! Accepting clients without ever busy-looping: the listener, its reserve descriptor
//! and its paused state, in one owner.
//!
//! Threat answered: exhaustion. `accept` failing leaves the client queued and the
//! listener readable; a level-triggered loop that just returns wakes again at once,
//! forever. Here every failure ends in one of two ways:
//! * out of descriptors (`EMFILE`/`ENFILE`) with the reserve held: release it, accept
//!   the client, tell it `OUT_OF_FDS`, close it, take the reserve back
//!   ([`FdReserve`]); the queue drains, the loop sleeps;
//! * anything else (no reserve to release, out of memory, an unexpected error):
//!   [`Accepted::Stalled`]; the server stops watching the listener until a connection
//!   closes or [`RETRY_AFTER`] passes, whichever is first.

use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::time::{Duration, Instant};

use crate::os::{self, is_exhaustion, is_fd_exhaustion, FdReserve};
use crate::protocol::{status, ConnectReply};

/// How long a stalled listener stays unwatched when no connection closes.
pub(crate) const RETRY_AFTER: Duration = Duration::from_millis(100);

/// Descriptors each connection keeps on the server: its socket, the server doorbell
/// and the client doorbell (the memfd is closed once sent).
pub(crate) const FDS_PER_CONNECTION: usize = 3;

/// Descriptors the server needs besides its connections: stdio, the listener, the
/// epoll, the stop doorbell, the reserve, a connection's memfd while it is built, and
/// some slack for the application.
pub(crate) const FDS_BASE: usize = 16;

/// Descriptors held besides the connections' and [`FDS_BASE`]: the spare connection
/// and the closed connections waiting for release.
pub(crate) const FDS_AHEAD: usize =
    super::spare::FDS_SPARE + super::teardown::MAX_DEFERRED * FDS_PER_CONNECTION;

/// What one [`Acceptor::next`] found.
pub(crate) enum Accepted {
    /// A client to admit.
    Client(UnixStream),
    /// Out of descriptors with the reserve held: free some and try again, or
    /// [`Acceptor::refuse_with_reserve`].
    OutOfFds,
    /// A client was refused for lack of descriptors; try the next.
    Refused,
    /// No client waits.
    Drained,
    /// Accepting cannot progress now: stop watching the listener (see the module doc).
    Stalled,
}

/// The listening socket and what it needs to never spin.
#[derive(Debug)]
pub(crate) struct Acceptor {
    listener: UnixListener,
    reserve: FdReserve,
    /// While stalled: when to watch the listener again at the latest.
    paused_until: Option<Instant>,
}

/// Sends a refusal with `code` (best effort: the client may be gone).
pub(crate) fn refuse(stream: &UnixStream, code: i32) {
    let reply = ConnectReply::refusal(code).encode();
    if let Err(e) = os::send_with_fds(stream.as_fd(), &reply, &[]) {
        tracing::debug!(error = %e, "could not send a refusal");
    }
}

impl Acceptor {
    pub(crate) fn new(listener: UnixListener) -> Acceptor {
        Acceptor {
            listener,
            reserve: FdReserve::new(),
            paused_until: None,
        }
    }

    pub(crate) fn listener_fd(&self) -> BorrowedFd<'_> {
        self.listener.as_fd()
    }

    /// The next client on the listener, or why there is none.
    pub(crate) fn next(&mut self) -> Accepted {
        loop {
            match crate::os::accept_nonblocking(&self.listener) {
                Ok(stream) => return Accepted::Client(stream),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Accepted::Drained,
                // Interrupted, or a client that gave up before we accepted it.
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::Interrupted | io::ErrorKind::ConnectionAborted
                    ) =>
                {
                    continue
                }
                Err(e) if is_fd_exhaustion(&e) && self.reserve.is_held() => {
                    return Accepted::OutOfFds
                }
                Err(e) => {
                    if is_exhaustion(&e) {
                        tracing::warn!(error = %e, "out of descriptors or memory at accept");
                    } else {
                        tracing::warn!(error = %e, "accept failed");
                    }
                    return Accepted::Stalled;
                }
            }
        }
    }

    /// Out of descriptors: spend the reserve on telling one client why.
    #[cold]
    pub(crate) fn refuse_with_reserve(&mut self) -> Accepted {
        self.reserve.release();
        let accepted = self.listener.accept();
        let outcome = match accepted {
            Ok((stream, _)) => {
                tracing::warn!("out of file descriptors: client refused");
                refuse(&stream, status::OUT_OF_FDS);
                drop(stream);
                Accepted::Refused
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Accepted::Drained,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed even with the reserve released");
                Accepted::Stalled
            }
        };
        // Someone else may have taken the freed descriptor: then the next `EMFILE`
        // finds no reserve and stalls (the refusal above is still reported).
        self.reserve.restore();
        outcome
    }

    /// Marks the listener unwatched; true if it was watched until now.
    pub(crate) fn stall(&mut self) -> bool {
        let newly = self.paused_until.is_none();
        self.paused_until = Instant::now().checked_add(RETRY_AFTER);
        if self.paused_until.is_none() {
            // Not representable (never happens in practice): retry at once next time.
            self.paused_until = Some(Instant::now());
        }
        newly
    }

    /// Whether the listener is watched (not stalled).
    pub(crate) fn watched(&self) -> bool {
        self.paused_until.is_none()
    }

    /// When a stalled listener is due to be watched again.
    pub(crate) fn retry_at(&self) -> Option<Instant> {
        self.paused_until
    }

    /// Ends a stall (a descriptor was freed, or the retry time came); true if the
    /// listener must be watched again. The reserve is taken back first if it is
    /// missing.
    pub(crate) fn resume(&mut self) -> bool {
        if self.paused_until.take().is_none() {
            return false;
        }
        self.reserve.restore();
        true
    }

    /// Whether a stall's retry time has passed.
    pub(crate) fn retry_due(&self) -> bool {
        self.paused_until.is_some_and(|t| Instant::now() >= t)
    }
}

/// Makes room in `RLIMIT_NOFILE` for `max_connections`, and says if the limit still
/// caps the server below it.
pub(crate) fn check_fd_limit(max_connections: usize) {
    let wanted = max_connections
        .saturating_mul(FDS_PER_CONNECTION)
        .saturating_add(FDS_BASE + FDS_AHEAD);
    let wanted = u64::try_from(wanted).unwrap_or(u64::MAX);
    match os::raise_nofile(wanted) {
        Ok((before, after)) => {
            if after > before {
                tracing::info!(before, after, "raised the soft descriptor limit");
            }
            if after < wanted {
                let fits = usize::try_from(after)
                    .unwrap_or(usize::MAX)
                    .saturating_sub(FDS_BASE + FDS_AHEAD)
                    / FDS_PER_CONNECTION;
                tracing::warn!(
                    limit = after,
                    max_connections,
                    connections_that_fit = fits,
                    "the descriptor limit (RLIMIT_NOFILE) caps connections below max_connections"
                );
            }
        }
        Err(e) => tracing::debug!(error = %e, "cannot read the descriptor limit"),
    }
}
