//! Serving one connection when its doorbell rings (SPEC §2.7, §2.8): flush queued
//! output, report flow-control changes, handle requests, arm the doorbells.

use std::sync::atomic::Ordering;

use coroipc_ring::{PopError, Wake};

use super::config::Limits;
use super::connection::{violation, Connection};
use crate::conn::{DisconnectReason, Request, Responder};
use crate::deadline::Deadline;
use crate::protocol::{status, RequestHeader, REQUEST_HEADER_LEN};
use crate::service::ErasedService;

pub(crate) enum More {
    Yes,
    No,
}

/// The work of [`Server::service_connection`] for one connection.
pub(crate) fn serve(
    conn: &mut Connection,
    service: &mut dyn ErasedService,
    limits: &Limits,
) -> Result<More, DisconnectReason> {
    let shared = conn.shared.clone();
    if conn.private.is_none() {
        return Ok(More::No);
    }
    // 1. Output queued behind full rings.
    let (response_backlog, _) = shared
        .response
        .flush()
        .map_err(|_| violation("corrupt response ring"))?;
    let (dispatch_backlog, _) = shared
        .dispatch
        .flush()
        .map_err(|_| violation("corrupt dispatch ring"))?;
    // 2. Flow control as the dispatch ring now stands.
    if shared.dispatch.ring.flow_control() {
        let _ = shared.dispatch.ring.poll_flow();
    }
    notify_flow(conn, service);
    // 3. Requests, unless responses are backed up (backpressure on a pipelining client).
    let mut handled = 0usize;
    let mut more = More::No;
    let mut release_wake = Wake::NotNeeded;
    if response_backlog.is_none() {
        let mut spin_until: Option<Deadline> = None;
        let mut polls = 0u32;
        loop {
            let next = match conn.requests.try_peek() {
                Ok(next) => next,
                Err(PopError::Corrupt(c)) => return Err(violation(format!("request ring: {c}"))),
                Err(PopError::BufferTooSmall { .. }) => return Err(violation("request ring")),
            };
            let Some(grant) = next else {
                release_wake = release_wake.or(conn.requests.release());
                if !limits.spin.is_zero() && handled > 0 {
                    let until = *spin_until.get_or_insert_with(|| {
                        Deadline::after(Some(limits.spin.min(Limits::MAX_SPIN)))
                    });
                    polls += 1;
                    if polls % 64 != 0 || !until.passed() {
                        std::hint::spin_loop();
                        continue;
                    }
                }
                let check = conn
                    .requests
                    .prepare_sleep()
                    .map_err(|e| violation(format!("request ring: {e}")))?;
                release_wake = release_wake.or(check.wake_peer);
                if check.sleep {
                    break;
                }
                continue;
            };
            let frame = grant.as_slice();
            let Some(header) = RequestHeader::decode(frame) else {
                return Err(violation("request shorter than its header"));
            };
            shared.counters.requests.fetch_add(1, Ordering::Relaxed);
            let payload = &frame[REQUEST_HEADER_LEN..];
            let Some(private) = conn.private.as_mut() else {
                return Ok(More::No);
            };
            let mut responder = Responder::new(&shared, header.id);
            let result = if service.admit(private, header.command) {
                service.handle(
                    private,
                    Request {
                        id: header.id,
                        command: header.command,
                        payload,
                    },
                    &mut responder,
                )
            } else {
                // A failure here is a closed or misbehaving connection, handled below.
                let _ = responder.respond(status::TRY_AGAIN, &[]);
                Ok(())
            };
            responder.finish(result);
            grant.consume();
            // The handler may have moved the dispatch ring into flow control.
            notify_flow(conn, service);
            handled += 1;
            spin_until = None;
            if shared.closing.load(Ordering::Acquire) {
                more = More::Yes;
                break;
            }
            if handled >= limits.batch || shared.response.backlog().0 > 0 {
                more = More::Yes;
                break;
            }
        }
        release_wake = release_wake.or(conn.requests.release());
    }
    // The client may be waiting for request space: it sleeps on its response doorbell.
    if release_wake.is_needed() {
        let _ = shared.client_bell.ring();
    }
    // 4. Arm the doorbells the queued output and flow control need.
    if let Some(len) = shared.response.backlog_front().or(response_backlog) {
        match shared.response.ring.prepare_sleep_for_space(len) {
            Ok(check) if !check.sleep => more = More::Yes,
            Ok(_) => {}
            Err(_) => return Err(violation("corrupt response ring")),
        }
    }
    if let Some(len) = shared.dispatch.backlog_front().or(dispatch_backlog) {
        match shared.dispatch.ring.prepare_sleep_for_space(len) {
            Ok(check) if !check.sleep => more = More::Yes,
            Ok(_) => {}
            Err(_) => return Err(violation("corrupt dispatch ring")),
        }
    } else if shared.dispatch.ring.flow_control() {
        match shared.dispatch.ring.prepare_sleep_for_flow_off() {
            Ok(check) if !check.sleep => more = More::Yes,
            Ok(_) => {}
            Err(_) => return Err(violation("corrupt dispatch ring")),
        }
    }
    Ok(more)
}

/// Tells the service when the dispatch ring's flow-control state changed.
pub(crate) fn notify_flow(conn: &mut Connection, service: &mut dyn ErasedService) {
    let on = conn.shared.dispatch.ring.flow_control();
    if on != conn.flow_told {
        conn.flow_told = on;
        if on {
            conn.shared
                .counters
                .flow_control_events
                .fetch_add(1, Ordering::Relaxed);
        }
        if let Some(private) = conn.private.as_mut() {
            service.flow(private, &conn.info, on);
        }
    }
}
