//! The dispatch path of a client: receive server-initiated messages (zero copy), and
//! the pollable fd that tells an event loop when one waits.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::time::Duration;

use super::guards::DispatchMsg;
use super::{Client, WaitFor};
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
        self.stats.dispatch_received += 1;
        match self.dispatch.try_peek() {
            Ok(Some(grant)) => Ok(Some(DispatchMsg {
                grant: Some(grant),
                server_bell: self.waiter.server_bell(),
            })),
            _ => Err(ClientError::Corrupt(Violation::ShortFrame(
                RingKind::Dispatch,
            ))),
        }
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

/// The violation a failed pop of the dispatch ring stands for.
fn dispatch_violation(e: coroipc_ring::PopError) -> Violation {
    match e {
        coroipc_ring::PopError::Corrupt(cause) => Violation::Ring {
            ring: RingKind::Dispatch,
            cause,
        },
        coroipc_ring::PopError::BufferTooSmall { .. } => Violation::ShortFrame(RingKind::Dispatch),
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
