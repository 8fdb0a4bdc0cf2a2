//! The dispatch path of a client: receive server-initiated messages (zero copy), and
//! the pollable fd that tells an event loop when one waits.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::time::Duration;

use super::guards::DispatchMsg;
use super::{dispatch_violation, Client, WaitFor};
use crate::deadline::Deadline;
use crate::error::{ClientError, RingKind, Violation};

impl Client {
    /// Receives the next dispatch message in place. `timeout` `Some(ZERO)` polls;
    /// `None` waits as long as the server lives. When it returns `Ok(None)` with a zero
    /// timeout, [`as_fd`](AsFd::as_fd) becomes readable when a message arrives (or the
    /// server dies).
    ///
    /// # Errors
    ///
    /// `Disconnected`; `Corrupt`.
    pub fn dispatch_recv(
        &mut self,
        timeout: Option<Duration>,
    ) -> Result<Option<DispatchMsg<'_>>, ClientError> {
        self.alive()?;
        let deadline = Deadline::after(timeout);
        let mut spinning = None;
        loop {
            match self.dispatch.try_peek() {
                Ok(Some(_)) => break,
                Ok(None) => {}
                Err(e) => return Err(self.fail(dispatch_violation(e))),
            }
            if timeout == Some(Duration::ZERO) {
                if self.arm_poll_fd()? {
                    continue;
                }
                return Ok(None);
            }
            match self.wait(WaitFor::Dispatch, &mut spinning, deadline) {
                Ok(()) => {}
                Err(ClientError::Timeout) => return Ok(None),
                Err(e) => return Err(e),
            }
        }
        let Ok(Some(grant)) = self.dispatch.try_peek() else {
            // Seen a moment ago and only we release it: the ring is now poisoned, and
            // the next call reports (and records) the corruption.
            return Err(ClientError::Corrupt(Violation::ShortFrame(
                RingKind::Dispatch,
            )));
        };
        self.stats.dispatch_received += 1;
        Ok(Some(DispatchMsg {
            grant: Some(grant),
            server_bell: self.waiter.server_bell(),
        }))
    }

    /// Arms the pollable fd: drains the doorbell, announces sleep on the dispatch
    /// ring. True if a message arrived meanwhile (look again).
    fn arm_poll_fd(&mut self) -> Result<bool, ClientError> {
        self.waiter.drain()?;
        let check = match self.dispatch.prepare_sleep() {
            Ok(check) => check,
            Err(e) => return Err(self.fail(dispatch_violation(e))),
        };
        self.waiter.ring_server(check.wake_peer)?;
        if !check.sleep {
            return Ok(true);
        }
        if self.waiter.server_gone()? {
            return Err(self.gone());
        }
        Ok(false)
    }
}

impl AsFd for Client {
    /// An fd that polls readable when dispatch messages wait (after `dispatch_recv`
    /// returned none) or when the server is gone. (Should creating it fail, e.g. at the
    /// fd limit, the socket itself is returned: it still reports the server's death.)
    fn as_fd(&self) -> BorrowedFd<'_> {
        match self.waiter.poll_fd() {
            Ok(fd) => fd,
            Err(e) => {
                tracing::warn!(error = %e, "cannot create the dispatch poll fd");
                self.waiter.socket_fd()
            }
        }
    }
}

impl AsRawFd for Client {
    fn as_raw_fd(&self) -> RawFd {
        self.as_fd().as_raw_fd()
    }
}
