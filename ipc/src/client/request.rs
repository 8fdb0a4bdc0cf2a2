//! The request path of a client: send (copy into the request ring), then find the
//! response (in the stash or at the head of the response ring) and hand it out as a
//! copy or a zero-copy guard.

use std::time::Duration;

use coroipc_ring::{Corruption, PushError};

use super::frame::ResponseFrame;
use super::guards::{Body, ResponseRef};
use super::options::{status_error, Reply, Response};
use super::pending::{Found, Stashed};
use super::{fail, Client, WaitFor, WaitState};
use crate::deadline::Deadline;
use crate::error::{ClientError, RingKind, Violation};
use crate::protocol::{RequestHeader, REQUEST_HEADER_LEN};

/// Whether a wait for a response gives its request up when it times out (the
/// calls that send and wait in one, whose caller never saw the id).
#[derive(Clone, Copy, PartialEq, Eq)]
enum GiveUp {
    OnTimeout,
    Never,
}

impl Client {
    /// Sends a request without waiting for its response; returns its id.
    ///
    /// # Errors
    ///
    /// [`ClientError::TooLarge`] beyond [`max_request_len`](Client::max_request_len);
    /// `Timeout` when the request ring stays full past the request timeout;
    /// `Disconnected`; `Corrupt`.
    pub fn send_request(&mut self, command: u16, payload: &[u8]) -> Result<u64, ClientError> {
        self.send_request_vectored(command, &[payload])
    }

    /// Sends the concatenation of `parts` as one request; returns its id.
    ///
    /// # Errors
    ///
    /// As [`send_request`](Client::send_request).
    pub fn send_request_vectored(
        &mut self,
        command: u16,
        parts: &[&[u8]],
    ) -> Result<u64, ClientError> {
        self.alive()?;
        let len = request_len(parts);
        let deadline = Deadline::after(self.options.request_timeout);
        let mut spinning = WaitState::default();
        let mut waited = false;
        loop {
            if let Some(id) = self.push_request(command, parts, len)? {
                return Ok(id);
            }
            if !waited {
                waited = true;
                self.stats.send_waits += 1;
            }
            self.wait(WaitFor::RequestSpace(len), &mut spinning, deadline)?;
        }
    }

    /// Sends a request if the request ring has room, without waiting: `Some(id)`, or
    /// `None` when the ring is full — the notification fd
    /// ([`AsFd`](std::os::fd::AsFd)) then becomes readable once room is freed. The
    /// call for event loops. Responses that arrived are moved aside while it looks
    /// (they stay for [`try_response`](Client::try_response)), and the fd is made
    /// readable for them.
    ///
    /// # Errors
    ///
    /// As [`send_request`](Client::send_request), never `Timeout`.
    pub fn try_send_request(
        &mut self,
        command: u16,
        payload: &[u8],
    ) -> Result<Option<u64>, ClientError> {
        self.try_send_request_vectored(command, &[payload])
    }

    /// [`try_send_request`](Client::try_send_request) for the concatenation of
    /// `parts`.
    ///
    /// # Errors
    ///
    /// As [`try_send_request`](Client::try_send_request).
    pub fn try_send_request_vectored(
        &mut self,
        command: u16,
        parts: &[&[u8]],
    ) -> Result<Option<u64>, ClientError> {
        self.alive()?;
        let len = request_len(parts);
        let received = self.pending.received();
        loop {
            if let Some(id) = self.push_request(command, parts, len)? {
                return Ok(Some(id));
            }
            if self.announce(WaitFor::RequestSpace(len))? {
                // Announced: the server rings when it frees room (and arming re-checks
                // it). Responses moved into the stash meanwhile are ready now: say so
                // through the fd.
                if self.waiter.server_gone()? {
                    return Err(self.gone());
                }
                self.want_space = Some(len);
                if self.pending.received() != received {
                    self.waiter.ring_self()?;
                }
                self.stats.send_waits += 1;
                return Ok(None);
            }
        }
    }

    /// One attempt to publish a request of `len` bytes (header included): its id, or
    /// `None` when the ring is full.
    fn push_request(
        &mut self,
        command: u16,
        parts: &[&[u8]],
        len: usize,
    ) -> Result<Option<u64>, ClientError> {
        let id = self.pending.next_id();
        let header = RequestHeader { id, command }.encode();
        // A request with none before it in flight is a round trip's: the client waits
        // for its answer next, so its lines are handed to the server (SPEC §1.3b).
        let alone = self.pending.outstanding() == 0;
        // The ring is the one place the length is checked.
        match self.requests.try_reserve(len) {
            Ok(mut grant) => {
                grant.write_at(0, &header);
                let mut at = REQUEST_HEADER_LEN;
                for part in parts {
                    grant.write_at(at, part);
                    at += part.len();
                }
                let published = grant.commit();
                if alone {
                    self.requests.hand_off();
                }
                self.want_space = None;
                self.pending.sent(command);
                self.stats.requests += 1;
                self.stats.request_bytes += (len - REQUEST_HEADER_LEN) as u64;
                self.waiter.ring_server(published.wake)?;
                Ok(Some(id))
            }
            Err(PushError::Full) => Ok(None),
            Err(PushError::TooLarge { len, max }) => Err(ClientError::TooLarge {
                len: len - REQUEST_HEADER_LEN,
                max: max.saturating_sub(REQUEST_HEADER_LEN),
            }),
            Err(e) => Err(self.fail(Violation::pushing(RingKind::Request, e))),
        }
    }

    /// Gives up on request `id`: its response is discarded when it arrives (or now,
    /// if it is already here), and it no longer counts as outstanding. For callers that
    /// stop waiting (a cancelled future). Returns whether `id` was in flight.
    pub fn abandon(&mut self, id: u64) -> bool {
        self.pending.abandon(id)
    }

    /// Waits until the response to `want` (or to any request) is found.
    fn locate(
        &mut self,
        want: Option<u64>,
        timeout: Option<Duration>,
        give_up: GiveUp,
    ) -> Result<Found, ClientError> {
        self.alive()?;
        match want {
            Some(id) if !self.pending.knows(id) => return Err(ClientError::UnknownRequest(id)),
            None if self.pending.is_empty() => return Err(ClientError::UnknownRequest(0)),
            _ => {}
        }
        let deadline = Deadline::after(timeout);
        let mut spinning = WaitState::default();
        loop {
            let (found, wake) = match self.pending.locate(&mut self.responses, want) {
                Ok(located) => located,
                Err(v) => return Err(self.fail(v)),
            };
            self.waiter.ring_server(wake)?;
            if let Some(found) = found {
                return Ok(found);
            }
            let waited = self.wait(WaitFor::Response, &mut spinning, deadline);
            if let (Some(id), GiveUp::OnTimeout) = (want, give_up) {
                self.give_up_on_timeout(id, &waited);
            }
            waited?;
        }
    }

    /// Waits for the response to `want` (or any), as a zero-copy view.
    fn await_response(
        &mut self,
        want: Option<u64>,
        timeout: Option<Duration>,
        give_up: GiveUp,
    ) -> Result<ResponseRef<'_>, ClientError> {
        let found = self.locate(want, timeout, give_up)?;
        match found {
            Found::Stashed(id) => {
                let stashed = self
                    .pending
                    .take_stashed(id)
                    .ok_or(ClientError::UnknownRequest(id))?;
                Ok(ResponseRef {
                    id,
                    command: stashed.command,
                    status: stashed.status,
                    body: Body::Owned(stashed.data),
                })
            }
            Found::Ring(left) => {
                let id = left.header.id;
                let command = self.pending.answered(id);
                self.stats.responses += 1;
                // The frame `locate` checked and left at the head, with the id and
                // status it matched: nothing consumes between, so it is there unless
                // the ring was found corrupt meanwhile.
                match ResponseFrame::take(&mut self.responses, left) {
                    Some(frame) => Ok(ResponseRef {
                        id,
                        command,
                        status: left.header.status,
                        body: Body::Ring {
                            frame: Some(frame),
                            server_bell: self.waiter.server_bell(),
                        },
                    }),
                    None => {
                        let why = Violation::Ring {
                            ring: RingKind::Response,
                            cause: Corruption::Earlier,
                        };
                        Err(fail(&mut self.closed, self.connection_id, why))
                    }
                }
            }
        }
    }

    /// Sends a request and waits for its response, which is copied into a `Vec`.
    ///
    /// # Errors
    ///
    /// As [`send_request`](Client::send_request) and
    /// [`wait_response`](Client::wait_response). On `Timeout` (the options'
    /// `request_timeout`) the request is given up: its answer is dropped when it comes.
    pub fn request(&mut self, command: u16, payload: &[u8]) -> Result<Response, ClientError> {
        self.request_vectored(command, &[payload])
    }

    /// Sends the concatenation of `parts` and waits for the response.
    ///
    /// # Errors
    ///
    /// As [`request`](Client::request).
    pub fn request_vectored(
        &mut self,
        command: u16,
        parts: &[&[u8]],
    ) -> Result<Response, ClientError> {
        let id = self.send_request_vectored(command, parts)?;
        let got = self.wait_response(id, self.options.request_timeout);
        self.give_up_on_timeout(id, &got);
        got
    }

    /// After a request call timed out: its id, which the caller never saw, is given
    /// up, so that a late answer is dropped rather than stashed for good (a server
    /// answering every request late grew the stash by one payload per timeout:
    /// client audit of 2026-12-06).
    fn give_up_on_timeout<T>(&mut self, id: u64, got: &Result<T, ClientError>) {
        if matches!(got, Err(ClientError::Timeout)) {
            self.abandon(id);
        }
    }

    /// Sends a request and copies the response payload into `buf`; returns
    /// `(status, length)`.
    ///
    /// # Errors
    ///
    /// A response longer than `buf` gives [`ClientError::BufferTooSmall`] with the
    /// request id; the response is kept, and [`wait_response`](Client::wait_response)
    /// with that id returns it. Otherwise as [`request`](Client::request).
    pub fn request_into(
        &mut self,
        command: u16,
        payload: &[u8],
        buf: &mut [u8],
    ) -> Result<(i32, usize), ClientError> {
        let r = self.request_in_place(command, payload)?;
        let len = r.len();
        if len > buf.len() {
            let id = r.id();
            let response = Stashed {
                command: r.command(),
                status: r.status(),
                data: r.to_vec(),
            };
            drop(r);
            self.pending.stash(id, response);
            return Err(ClientError::BufferTooSmall { id, needed: len });
        }
        r.read_into(buf);
        Ok((r.status(), len))
    }

    /// Sends a request and returns its response in place, in shared memory (zero
    /// copy: read it with [`ResponseRef::read_into`] and friends). The response is
    /// released when the guard is dropped.
    ///
    /// # Errors
    ///
    /// As [`request`](Client::request).
    pub fn request_in_place(
        &mut self,
        command: u16,
        payload: &[u8],
    ) -> Result<ResponseRef<'_>, ClientError> {
        let id = self.send_request(command, payload)?;
        let timeout = self.options.request_timeout;
        self.response_in_place(id, timeout, GiveUp::OnTimeout)
    }

    /// The response to request `id` (from [`send_request`](Client::send_request)) in
    /// place, as [`request_in_place`](Client::request_in_place) returns it, waiting up
    /// to `timeout`. On `Timeout` the request stays in flight: a later wait for `id`
    /// finds its response (a caller that waits in slices, giving the client to
    /// another thread between them, as the C API does).
    ///
    /// # Errors
    ///
    /// As [`wait_response`](Client::wait_response).
    pub fn wait_response_in_place(
        &mut self,
        id: u64,
        timeout: Option<Duration>,
    ) -> Result<ResponseRef<'_>, ClientError> {
        self.response_in_place(id, timeout, GiveUp::Never)
    }

    /// The response to `id` in place, a library status as its error.
    fn response_in_place(
        &mut self,
        id: u64,
        timeout: Option<Duration>,
        give_up: GiveUp,
    ) -> Result<ResponseRef<'_>, ClientError> {
        let r = self.await_response(Some(id), timeout, give_up)?;
        if let Some(e) = status_error(r.status, r.command) {
            return Err(e);
        }
        Ok(r)
    }

    /// Waits for the response to request `id` (from [`send_request`](Client::send_request)).
    ///
    /// # Errors
    ///
    /// The error a library status stands for (`TryAgain`, `UnknownCommand`,
    /// `Abandoned`, `ResponseTooLarge`, `BadRequest`); `UnknownRequest` for an id
    /// not in flight; `Timeout`; `Disconnected`; `Corrupt`.
    pub fn wait_response(
        &mut self,
        id: u64,
        timeout: Option<Duration>,
    ) -> Result<Response, ClientError> {
        let mut r = self.await_response(Some(id), timeout, GiveUp::Never)?;
        let (status, command, data) = (r.status, r.command, r.take_vec());
        drop(r);
        match status_error(status, command) {
            Some(e) => Err(e),
            None => Ok(Response { status, data }),
        }
    }

    /// The response to request `id` if it has arrived, without waiting. When it has
    /// not, the pollable fd ([`AsFd`](std::os::fd::AsFd)) becomes readable once it (or
    /// any other response or dispatch message) arrives, or the server dies: the call
    /// for event loops.
    ///
    /// # Errors
    ///
    /// As [`wait_response`](Client::wait_response), except that "not yet" is `Ok(None)`.
    pub fn try_response(&mut self, id: u64) -> Result<Option<Response>, ClientError> {
        self.without_waiting(|c| c.wait_response(id, Some(Duration::ZERO)))
    }

    /// The response to any outstanding request if one has arrived, without waiting
    /// (as [`try_response`](Client::try_response)): `Some((id, result))`.
    ///
    /// # Errors
    ///
    /// As [`receive_response`](Client::receive_response), except that "not yet" is
    /// `Ok(None)`. `UnknownRequest(0)` (nothing in flight) arms the fd too: the end of
    /// an event loop's round.
    pub fn try_receive_response(&mut self) -> Result<Option<Reply>, ClientError> {
        self.without_waiting(|c| c.receive_response(Some(Duration::ZERO)))
    }

    /// Looks once (`look` with a zero timeout); if nothing is there, arms the
    /// pollable fd and, if a response arrived meanwhile, looks again. Nothing to look
    /// for (`UnknownRequest`) arms too: it is how a loop's round ends once it took
    /// the last answer, and the doorbell's ring for that answer must be drained, or a
    /// level-triggered poll of the fd reads ready for ever while the client is idle.
    fn without_waiting<T>(
        &mut self,
        mut look: impl FnMut(&mut Self) -> Result<T, ClientError>,
    ) -> Result<Option<T>, ClientError> {
        match look(self) {
            Ok(found) => return Ok(Some(found)),
            Err(ClientError::Timeout) => {}
            Err(e @ ClientError::UnknownRequest(_)) => {
                self.arm_poll_fd()?;
                return Err(e);
            }
            Err(e) => return Err(e),
        }
        // Responses to other requests the look moved into the stash are reported by
        // arming (see `readiness`).
        if !self.arm_poll_fd()?.responses {
            return Ok(None);
        }
        match look(self) {
            Ok(found) => Ok(Some(found)),
            Err(ClientError::Timeout) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Waits for the response to any outstanding request: `(id, result)`.
    ///
    /// # Errors
    ///
    /// `UnknownRequest(0)` when nothing is in flight; `Timeout`; `Disconnected`;
    /// `Corrupt`. A library status is the inner result's error.
    pub fn receive_response(&mut self, timeout: Option<Duration>) -> Result<Reply, ClientError> {
        let mut r = self.await_response(None, timeout, GiveUp::Never)?;
        let (id, status, command, data) = (r.id, r.status, r.command, r.take_vec());
        drop(r);
        Ok((
            id,
            status_error(status, command).map_or(Ok(Response { status, data }), Err),
        ))
    }
}

/// The frame length of a request made of `parts` (header included, saturating: the
/// ring refuses what is too large).
fn request_len(parts: &[&[u8]]) -> usize {
    parts
        .iter()
        .map(|p| p.len())
        .fold(REQUEST_HEADER_LEN, usize::saturating_add)
}
