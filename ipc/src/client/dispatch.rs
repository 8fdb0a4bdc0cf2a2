//! The dispatch path of a client: receive server-initiated messages (zero copy).

use std::time::Duration;

use super::guards::DispatchMsg;
use super::{fail, Client, WaitFor, WaitState};
use crate::deadline::Deadline;
use crate::error::{ClientError, RingKind, Violation};

impl Client {
    /// Receives the next dispatch message in place. `timeout` `Some(ZERO)` polls;
    /// `None` waits as long as the server lives. When it returns `Ok(None)` with a zero
    /// timeout, [`as_fd`](std::os::fd::AsFd::as_fd) becomes readable when a message arrives (or the
    /// server dies).
    ///
    /// # Errors
    ///
    /// `Disconnected`; `Corrupt`.
    pub fn dispatch_recv(
        &mut self,
        timeout: Option<Duration>,
    ) -> Result<Option<DispatchMsg<'_>>, ClientError> {
        if !self.await_dispatch(timeout)? {
            return Ok(None);
        }
        // `await_dispatch` decided a message is there; only this client takes it, so
        // the look cannot come back empty. The grant cannot come out of that wait's
        // loop (it borrows the ring the loop goes on using): this second look hands it
        // out, and a fault here is recorded like any other.
        let grant = match self.dispatch.try_peek() {
            Ok(Some(grant)) => grant,
            Ok(None) => return Ok(None),
            Err(e) => {
                let why = Violation::popping(RingKind::Dispatch, e);
                return Err(fail(&mut self.closed, self.connection_id, why));
            }
        };
        self.stats.dispatch_received += 1;
        self.reports.dispatch_taken();
        Ok(Some(DispatchMsg::new(grant, self.waiter.server_bell())))
    }

    /// Receives up to `max` dispatch messages at once: waits for the first as
    /// [`dispatch_recv`](Client::dispatch_recv) does (`timeout`), then hands each
    /// message there is to `f`, in order, and releases them all together — one index
    /// update and at most one doorbell for the batch, instead of one per message (the
    /// way to keep up with a stream). Returns how many `f` saw (0 on timeout).
    ///
    /// # Errors
    ///
    /// As [`dispatch_recv`](Client::dispatch_recv).
    pub fn dispatch_recv_batch(
        &mut self,
        max: usize,
        timeout: Option<Duration>,
        mut f: impl FnMut(&DispatchMsg<'_>),
    ) -> Result<usize, ClientError> {
        self.alive()?;
        if max == 0 || !self.await_dispatch(timeout)? {
            return Ok(0);
        }
        let mut seen = 0;
        let fault = loop {
            if seen == max {
                break None;
            }
            let grant = match self.dispatch.try_peek() {
                Ok(Some(grant)) => grant,
                Ok(None) => break None,
                Err(e) => break Some(Violation::popping(RingKind::Dispatch, e)),
            };
            f(&DispatchMsg::in_batch(grant, self.waiter.server_bell()));
            seen += 1;
        };
        self.stats.dispatch_received += seen as u64;
        self.reports.dispatch_taken();
        let wake = self.dispatch.release();
        if let Err(e) = self.waiter.ring_server(wake) {
            // `f` has seen the messages: report them, as a dropped guard would.
            tracing::debug!(error = %e, "ringing the server doorbell failed");
        }
        match fault {
            Some(v) => Err(self.fail(v)),
            None => Ok(seen),
        }
    }

    /// Waits until a dispatch message is at the head of the ring (true), or the
    /// timeout passes (false). `Some(ZERO)` arms the notification fd when there is
    /// none.
    fn await_dispatch(&mut self, timeout: Option<Duration>) -> Result<bool, ClientError> {
        self.alive()?;
        let deadline = Deadline::after(timeout);
        let mut spinning = WaitState::default();
        // A look that finds nothing although the armed fd says a message waits is
        // retried once: a server moving its tail over frames that are no message
        // (skips) could otherwise keep a zero-timeout call here for ever (client
        // audit of 2026-12-06). The fd stays readable for the next call.
        let mut retried = false;
        loop {
            match self.dispatch.try_peek() {
                Ok(Some(_)) => return Ok(true),
                Ok(None) => {}
                Err(e) => return Err(self.fail(Violation::popping(RingKind::Dispatch, e))),
            }
            if timeout == Some(Duration::ZERO) {
                if self.arm_poll_fd()?.dispatch && !std::mem::replace(&mut retried, true) {
                    continue;
                }
                return Ok(false);
            }
            match self.wait(WaitFor::Dispatch, &mut spinning, deadline) {
                Ok(()) => {}
                Err(ClientError::Timeout) => return Ok(false),
                Err(e) => return Err(e),
            }
        }
    }
}
