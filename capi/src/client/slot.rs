//! One C context's turn-taking: who may use its [`Client`] when, so that no thread
//! waits behind another for longer than its own call allows.
//!
//! The problem it answers (review of 2026-12-08): corosync's clients share a context
//! between a thread that dispatches (`coroipcc_dispatch_get`, often with timeout 0
//! from a poll loop) and threads that send requests. corosync's coroipcc took its
//! mutex only in the request calls; libcoroipc's request calls held the context's one
//! lock for their whole wait, so a `coroipcc_dispatch_get(h, &buf, 0)` beside a
//! request the server was slow to answer waited for that answer, without limit.
//!
//! The rules:
//! - The context's lock ([`Slot::ctx`]) is only held for short, non-blocking work: a
//!   look at the dispatch ring, a buffer handed out or put back.
//! - A request takes the client out of the context for its wait ([`Slot::checkout`],
//!   giving it back when the [`Checkout`] drops) and waits in slices of [`SLICE`]
//!   (`request.rs`), giving it back between them. A dispatcher that finds the client
//!   out waits for it, counted in [`ClientCtx::waiting_for_client`], within its own
//!   timeout or [`LEND_WAIT`], whichever is longer; a request coming back for the
//!   client lets every counted dispatcher go first. So a dispatcher sees a message
//!   that came during a long wait within a slice, and a poll loop whose fd reads ready
//!   (the request's blocking wait rings it when it takes the fd's readiness) waits in
//!   `coroipcc_dispatch_get(h, &buf, 0)` for the slice to end instead of finding the
//!   client out at once, again and again, for the whole slice (review of 2026-12-08:
//!   that loop spun a CPU).
//! - Requests themselves take turns for the whole call ([`Slot::requests`]), as
//!   corosync's did: its responses carried no ids, and corosync's servers answer the
//!   requests of a connection in order.
//! - The fd, the largest request and the dispatch ring's flow word are fixed at
//!   connect and read without the lock.
//!
//! Lock order: [`Slot::requests`] before [`Slot::ctx`]; nothing blocks while holding
//! `ctx` but the condition variable's own wait.

use std::mem::ManuallyDrop;
use std::ops::{Deref, DerefMut};
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::ThreadId;
use std::time::{Duration, Instant};

use ipc::{Client, ClientError, FlowWatch};

use super::ctx::{ClientCtx, Kind};
use crate::error::CapiError;

/// How long a request waits for its response before it lets a dispatcher use the
/// client (`request.rs`).
pub(super) const SLICE: Duration = Duration::from_millis(10);

/// The least a dispatcher waits for a client out with a request, whatever its own
/// timeout: one slice and a margin for the request thread to be scheduled.
const LEND_WAIT: Duration = Duration::from_millis(15);

/// What a call waits for before it may use the context.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Turn {
    /// The context's buffers only.
    Context,
    /// The client in the context, and no dispatch message held by another thread.
    Dispatch,
}

/// A context, the condition its waiting threads wait on, and what is fixed at
/// connect.
pub(super) struct Slot {
    pub(super) ctx: Mutex<ClientCtx>,
    /// Signalled when the client comes back while dispatchers wait for it, a
    /// dispatch message is put, the count of those dispatchers falls to 0, or the
    /// context closes.
    released: Condvar,
    /// Held for a whole request call: one request at a time per context.
    pub(super) requests: Mutex<()>,
    /// Ends the connection without the context's lock, so a disconnect wakes a thread
    /// blocked in a request on it (as corosync's `shutdown` of the socket did).
    closer: ipc::Closer,
    /// Set by `coroipcc_service_disconnect` before it ends the connection, without the
    /// lock: a thread woken by that end (one waiting on the fd in `dispatch_get`)
    /// then finds the handle gone (`CS_ERR_BAD_HANDLE`), not a dead server.
    closing: AtomicBool,
    /// The pollable fd of the client.
    pub(super) fd: RawFd,
    /// The largest request: the `request_size` of the connect (as corosync's coroipcc
    /// bounded it), or the largest the server granted when that is less.
    pub(super) request_limit: usize,
    /// The dispatch ring's flow word.
    pub(super) flow: FlowWatch,
}

impl Slot {
    /// The slot of a new connection, connected with `request_size`.
    pub(super) fn new(client: Client, request_size: usize) -> std::io::Result<Slot> {
        // A request above the server's grant could never be sent: it is refused before
        // anything is allocated for it (a header claiming 1 GiB, within a 1 GiB
        // `request_size`, made a zeroed 1 GiB copy first: C API audit finding 8).
        let request_limit = request_size.min(client.max_request_len());
        Ok(Slot {
            closer: client.closer()?,
            fd: std::os::fd::AsRawFd::as_raw_fd(&client),
            request_limit,
            flow: client.flow_watch(),
            ctx: Mutex::new(ClientCtx::new(client)),
            released: Condvar::new(),
            requests: Mutex::new(()),
            closing: AtomicBool::new(false),
        })
    }

    fn lock(&self) -> MutexGuard<'_, ClientCtx> {
        self.ctx.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn closed(&self, ctx: &ClientCtx) -> bool {
        ctx.closed || self.closing.load(Ordering::Acquire)
    }

    /// Waits on the condition, until `until` at most; `false` once it has passed.
    fn wait<'a>(
        &self,
        ctx: MutexGuard<'a, ClientCtx>,
        until: Option<Instant>,
    ) -> (MutexGuard<'a, ClientCtx>, bool) {
        let Some(at) = until else {
            let ctx = self.released.wait(ctx);
            return (ctx.unwrap_or_else(PoisonError::into_inner), true);
        };
        let left = at.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return (ctx, false);
        }
        let (ctx, _) = self
            .released
            .wait_timeout(ctx, left)
            .unwrap_or_else(PoisonError::into_inner);
        (ctx, true)
    }

    /// The context, once `turn` has come, waiting for it until `until` at most
    /// (`None`: no limit), then `TryAgain`, or for a client out with a request at least
    /// [`LEND_WAIT`]; `BadHandle` once the context closed.
    pub(super) fn enter(
        &self,
        turn: Turn,
        until: Option<Instant>,
    ) -> Result<MutexGuard<'_, ClientCtx>, CapiError> {
        let me = std::thread::current().id();
        let lend_until = until.map(|at| {
            Instant::now()
                .checked_add(LEND_WAIT)
                .map_or(at, |l| at.max(l))
        });
        let mut ctx = self.lock();
        loop {
            if self.closed(&ctx) {
                return Err(CapiError::BadHandle);
            }
            let in_time;
            match what_blocks(&ctx, turn, me) {
                None => return Ok(ctx),
                Some(Blocked::Held) => (ctx, in_time) = self.wait(ctx, until),
                Some(Blocked::ClientOut) => {
                    ctx.waiting_for_client += 1;
                    (ctx, in_time) = self.wait(ctx, lend_until);
                    ctx.waiting_for_client -= 1;
                    // A request coming back for the client waits for the count to be
                    // 0: tell it (we may now wait for a held message instead, whose
                    // holder's callback may be queued behind that request). Only
                    // then: with two or more counted, a wake at every decrement has
                    // them wake each other until the client comes back.
                    if ctx.waiting_for_client == 0 {
                        self.released.notify_all();
                    }
                }
            }
            if !in_time {
                return Err(ClientError::TryAgain.into());
            }
        }
    }

    /// Runs `f` on the context once `turn` has come (as [`enter`](Slot::enter)). It
    /// wakes nobody: what waiters wait for is a put ([`release`](Slot::release)), the
    /// client coming back ([`Checkout`]'s drop), a dispatcher leaving the count, or a
    /// close, and each of those wakes them itself.
    pub(super) fn with<R>(
        &self,
        turn: Turn,
        until: Option<Instant>,
        f: impl FnOnce(&mut ClientCtx) -> Result<R, CapiError>,
    ) -> Result<R, CapiError> {
        f(&mut *self.enter(turn, until)?)
    }

    /// Releases the calling thread's buffer of `kind` (`ClientCtx::release`); a
    /// dispatch message put wakes the dispatchers waiting for it.
    pub(super) fn release(&self, kind: Kind) -> Result<(), CapiError> {
        self.with(Turn::Context, None, |c| {
            c.release(kind);
            Ok(())
        })?;
        if kind == Kind::Dispatch {
            self.released.notify_all();
        }
        Ok(())
    }

    /// Takes the client out of the context for a call that may block, once it is
    /// there and no dispatcher waits for it; the [`Checkout`] puts it back.
    /// `BadHandle` once the context closed.
    pub(super) fn checkout(&self) -> Result<Checkout<'_>, CapiError> {
        let mut ctx = self.lock();
        loop {
            if self.closed(&ctx) {
                return Err(CapiError::BadHandle);
            }
            if ctx.waiting_for_client == 0 {
                if let Some(client) = ctx.client.take() {
                    return Ok(Checkout {
                        slot: self,
                        client: ManuallyDrop::new(client),
                    });
                }
            }
            (ctx, _) = self.wait(ctx, None);
        }
    }

    /// Ends the connection (a call blocked on it returns) and closes the context:
    /// every later call is `CS_ERR_BAD_HANDLE`, every buffer C held is freed.
    pub(super) fn close(&self) {
        self.closing.store(true, Ordering::Release);
        self.closer.close();
        {
            let mut ctx = self.lock();
            ctx.release_all();
            ctx.closed = true;
        }
        self.released.notify_all();
    }
}

/// Why a call cannot use the context yet.
enum Blocked {
    /// Another thread holds a dispatch message.
    Held,
    /// The client is out with a request.
    ClientOut,
}

/// What keeps `me` from its `turn` now, if anything.
fn what_blocks(ctx: &ClientCtx, turn: Turn, me: ThreadId) -> Option<Blocked> {
    match turn {
        Turn::Context => None,
        Turn::Dispatch if ctx.dispatch_held_by_other(me) => Some(Blocked::Held),
        Turn::Dispatch if ctx.client.is_none() => Some(Blocked::ClientOut),
        Turn::Dispatch => None,
    }
}

/// The client, out of its context for one thread's call; back in it on drop.
pub(super) struct Checkout<'a> {
    slot: &'a Slot,
    /// Invariant: initialised until `drop` takes it.
    client: ManuallyDrop<Client>,
}

impl Deref for Checkout<'_> {
    type Target = Client;
    fn deref(&self) -> &Client {
        &self.client
    }
}

impl DerefMut for Checkout<'_> {
    fn deref_mut(&mut self) -> &mut Client {
        &mut self.client
    }
}

impl Drop for Checkout<'_> {
    fn drop(&mut self) {
        // SAFETY: taken once, here; the field is not used after.
        let client = unsafe { ManuallyDrop::take(&mut self.client) };
        let mut ctx = self.slot.lock();
        ctx.client = Some(client);
        // Only counted dispatchers wait for the client (requests take turns before
        // they check it out): no wake, no system call, on a request nobody waited
        // beside.
        if ctx.waiting_for_client > 0 {
            self.slot.released.notify_all();
        }
    }
}
