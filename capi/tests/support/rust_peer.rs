//! The Rust side of the mixed tests: a Rust server speaking the example protocol
//! (`examples/protocol.h`) with corosync 1.4's headers (`coroipc_types.h`: every field
//! 8-aligned, so a request header is 16 bytes, `{ size, id }` at 0 and 8, and a
//! response header 24, `{ size, id, error }` at 0, 8 and 16), and the helpers a Rust
//! client uses to build and read such messages.
//!
//! The Rust server answers as the Rust library does (an unknown command is
//! `HandlerError::UnknownCommand`, admission control is `Service::admit`), not as
//! libcoroipc's coroipcs does (a bare response header carrying the error): the C client
//! sees both.

use ipc::protocol::status;
use ipc::{
    Connection, DeferredResponse, DisconnectReason, HandlerError, Request, Responder,
    ServerBuilder, Service, SocketName,
};

pub const SVC_ECHO: u16 = 1;
pub const ECHO_ECHO: u16 = 0;
pub const ECHO_DISPATCH: u16 = 1;
pub const ECHO_LATER: u16 = 2;
pub const ECHO_HANG: u16 = 3;
/// Rust server only: a response without a seed header.
pub const ECHO_RAW: u16 = 4;
pub const SVC_COUNTER: u16 = 2;
pub const COUNTER_COUNT: u16 = 0;
pub const COUNTER_BUSY: u16 = 1;

/// `CS_OK`.
pub const CS_OK: i32 = 1;
/// `CS_ERR_TRY_AGAIN`.
pub const CS_ERR_TRY_AGAIN: i32 = 6;
/// `CS_ERR_INVALID_PARAM`.
pub const CS_ERR_INVALID_PARAM: i32 = 7;
/// `CS_ERR_NOT_EXIST`.
pub const CS_ERR_NOT_EXIST: i32 = 12;

/// `sizeof(coroipc_request_header_t)`.
pub const REQUEST_HEADER: usize = 16;
/// `sizeof(coroipc_response_header_t)`.
pub const RESPONSE_HEADER: usize = 24;
const SIZE_AT: usize = 0;
const ID_AT: usize = 8;
const ERROR_AT: usize = 16;

fn put_int(m: &mut [u8], at: usize, v: i32) {
    m[at..at + 4].copy_from_slice(&v.to_ne_bytes());
}

/// A request: a `coroipc_request_header_t` `{ size, id }` then `payload`.
pub fn c_request(id: u16, payload: &[u8]) -> Vec<u8> {
    let mut m = vec![0u8; REQUEST_HEADER];
    put_int(
        &mut m,
        SIZE_AT,
        i32::try_from(REQUEST_HEADER + payload.len()).unwrap(),
    );
    put_int(&mut m, ID_AT, i32::from(id));
    m.extend_from_slice(payload);
    m
}

/// A response or dispatch message: a `coroipc_response_header_t` `{ size, id, error }`
/// then `payload`.
pub fn c_response(id: i32, error: i32, payload: &[u8]) -> Vec<u8> {
    let mut m = vec![0u8; RESPONSE_HEADER];
    put_int(
        &mut m,
        SIZE_AT,
        i32::try_from(RESPONSE_HEADER + payload.len()).unwrap(),
    );
    put_int(&mut m, ID_AT, id);
    put_int(&mut m, ERROR_AT, error);
    m.extend_from_slice(payload);
    m
}

/// The payload of `struct req_value` / `struct res_value` (protocol.h): a `uint32_t`
/// and the struct's tail padding (the structs are 8-aligned: 24 and 32 bytes).
pub fn value_payload(v: u32) -> [u8; 8] {
    let mut p = [0u8; 8];
    p[..4].copy_from_slice(&v.to_ne_bytes());
    p
}

/// A `struct req_value` (protocol.h): the header for `id`, then `v`.
pub fn c_value_request(id: u16, v: u32) -> Vec<u8> {
    c_request(id, &value_payload(v))
}

fn int_at(b: &[u8], at: usize) -> i32 {
    i32::from_ne_bytes(b[at..at + 4].try_into().unwrap())
}

/// A response's header, checked (`size` is its length): `(id, error)`.
pub fn c_header(m: &[u8]) -> (i32, i32) {
    assert!(
        m.len() >= RESPONSE_HEADER,
        "response shorter than its header: {m:?}"
    );
    assert_eq!(int_at(m, SIZE_AT) as usize, m.len(), "header size");
    (int_at(m, ID_AT), int_at(m, ERROR_AT))
}

/// Checks a response's header (`size` is its length, `error` CS_OK); its payload.
pub fn c_payload(m: &[u8]) -> &[u8] {
    assert_eq!(c_header(m).1, CS_OK, "header error");
    &m[RESPONSE_HEADER..]
}

/// The `uint32_t value` after a header.
pub fn value(payload: &[u8]) -> u32 {
    u32::from_ne_bytes(payload[..4].try_into().unwrap())
}

struct Echo;

/// The checked request payload after its header.
fn body<'a>(req: &Request<'a>) -> Result<&'a [u8], HandlerError> {
    let p = req.payload;
    if p.len() < REQUEST_HEADER
        || int_at(p, SIZE_AT) as usize != p.len()
        || int_at(p, ID_AT) != i32::from(req.command)
    {
        return Err(HandlerError::InvalidRequest);
    }
    Ok(&p[REQUEST_HEADER..])
}

/// Answers a `struct res_value` (32 bytes, as C's `sizeof`).
fn answer(resp: &mut Responder<'_>, id: u16, v: u32) {
    let _ = resp.respond(0, &c_response(i32::from(id), CS_OK, &value_payload(v)));
}

impl Service for Echo {
    type Private = Vec<DeferredResponse>;

    fn on_connect(&mut self, _conn: &Connection) -> Result<Self::Private, i32> {
        println!("connect");
        Ok(Vec::new())
    }

    fn on_disconnect(&mut self, _: Self::Private, _: &Connection, _: &DisconnectReason) {
        println!("exit");
    }

    fn handle(
        &mut self,
        hung: &mut Self::Private,
        req: Request<'_>,
        resp: &mut Responder<'_>,
    ) -> Result<(), HandlerError> {
        let body = body(&req)?;
        match req.command {
            ECHO_ECHO => {
                let _ = resp.respond(0, &c_response(0, CS_OK, body));
            }
            ECHO_DISPATCH => {
                if body.len() < 4 {
                    return Err(HandlerError::InvalidRequest);
                }
                let count = value(body);
                let conn = resp.connection();
                let mut sent = 0;
                while sent < count {
                    let ev = c_response(i32::from(ECHO_DISPATCH), CS_OK, &value_payload(sent));
                    if conn.dispatch_send(&ev).is_err() {
                        break;
                    }
                    sent += 1;
                }
                answer(resp, ECHO_DISPATCH, sent);
            }
            ECHO_LATER => {
                let ev = c_response(i32::from(ECHO_LATER), CS_OK, &value_payload(7));
                let _ = resp.connection().dispatch_send(&ev);
                let later = resp.defer().map_err(|_| HandlerError::InvalidRequest)?;
                std::thread::spawn(move || {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                    let m = c_response(i32::from(ECHO_LATER), CS_OK, &value_payload(42));
                    let _ = later.respond(0, &m);
                });
            }
            ECHO_HANG => hung.push(resp.defer().map_err(|_| HandlerError::InvalidRequest)?),
            ECHO_RAW => {
                let _ = resp.respond(0, b"xy");
            }
            _ => return Err(HandlerError::UnknownCommand),
        }
        Ok(())
    }
}

struct Counter;

impl Service for Counter {
    type Private = u32;

    fn on_connect(&mut self, _conn: &Connection) -> Result<u32, i32> {
        println!("connect");
        Ok(0)
    }

    fn on_disconnect(&mut self, _: u32, _: &Connection, _: &DisconnectReason) {
        println!("exit");
    }

    fn admit(&mut self, _: &mut u32, command: u16) -> bool {
        command != COUNTER_BUSY
    }

    fn handle(
        &mut self,
        count: &mut u32,
        req: Request<'_>,
        resp: &mut Responder<'_>,
    ) -> Result<(), HandlerError> {
        body(&req)?;
        match req.command {
            COUNTER_COUNT => {
                *count += 1;
                answer(resp, COUNTER_COUNT, *count);
                Ok(())
            }
            COUNTER_BUSY => {
                let _ = resp.respond(status::TRY_AGAIN, &[]);
                Ok(())
            }
            _ => Err(HandlerError::UnknownCommand),
        }
    }
}

/// Runs the Rust server under `name` until the process is killed; prints "ready".
pub fn serve_forever(name: &str) -> ! {
    let mut server = ServerBuilder::new(SocketName::abstract_name(name))
        .service(SVC_ECHO, Echo)
        .service(SVC_COUNTER, Counter)
        .build()
        .expect("building the Rust server");
    // A line of its own: libtest printed "test child_entry ... " without a newline.
    println!("\nready");
    loop {
        server.run().expect("server loop");
    }
}

/// Connects a Rust client to service 1 and sleeps until killed; prints "connected".
pub fn client_forever(name: &str) -> ! {
    let client = ipc::Client::connect(
        &SocketName::abstract_name(name),
        SVC_ECHO,
        &ipc::ConnectOptions::default(),
    )
    .expect("connecting");
    println!("\nconnected");
    loop {
        std::thread::sleep(std::time::Duration::from_secs(3600));
        let _ = &client;
    }
}
