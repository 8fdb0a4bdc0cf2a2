//! The Rust side of the mixed tests: a Rust server speaking the example protocol
//! (`examples/protocol.h`) with the seed's headers, and the helpers a Rust client uses
//! to build and read such messages.

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

/// A request: `{ size, id }` then `payload`.
pub fn c_request(id: u16, payload: &[u8]) -> Vec<u8> {
    let size = i32::try_from(8 + payload.len()).unwrap();
    let mut m = size.to_ne_bytes().to_vec();
    m.extend_from_slice(&i32::from(id).to_ne_bytes());
    m.extend_from_slice(payload);
    m
}

/// A response or dispatch message: `{ size, id, error }` then `payload`.
pub fn c_response(id: i32, error: i32, payload: &[u8]) -> Vec<u8> {
    let size = i32::try_from(12 + payload.len()).unwrap();
    let mut m = size.to_ne_bytes().to_vec();
    m.extend_from_slice(&id.to_ne_bytes());
    m.extend_from_slice(&error.to_ne_bytes());
    m.extend_from_slice(payload);
    m
}

fn int_at(b: &[u8], at: usize) -> i32 {
    i32::from_ne_bytes(b[at..at + 4].try_into().unwrap())
}

/// Checks a response's header (`size` is its length, `error` CS_OK); its payload.
pub fn c_payload(m: &[u8]) -> &[u8] {
    assert!(m.len() >= 12, "response shorter than its header: {m:?}");
    assert_eq!(int_at(m, 0) as usize, m.len(), "header size");
    assert_eq!(int_at(m, 8), CS_OK, "header error");
    &m[12..]
}

/// The `uint32_t value` after a header.
pub fn value(payload: &[u8]) -> u32 {
    u32::from_ne_bytes(payload[..4].try_into().unwrap())
}

struct Echo;

/// The checked request payload after its header.
fn body<'a>(req: &Request<'a>) -> Result<&'a [u8], HandlerError> {
    let p = req.payload;
    if p.len() < 8 || int_at(p, 0) as usize != p.len() || int_at(p, 4) != i32::from(req.command) {
        return Err(HandlerError::InvalidRequest);
    }
    Ok(&p[8..])
}

fn answer(resp: &mut Responder<'_>, id: u16, v: u32) {
    let _ = resp.respond(0, &c_response(i32::from(id), CS_OK, &v.to_ne_bytes()));
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
                let count = value(body);
                let conn = resp.connection();
                let mut sent = 0;
                while sent < count {
                    let ev = c_response(i32::from(ECHO_DISPATCH), CS_OK, &sent.to_ne_bytes());
                    if conn.dispatch_send(&ev).is_err() {
                        break;
                    }
                    sent += 1;
                }
                answer(resp, ECHO_DISPATCH, sent);
            }
            ECHO_LATER => {
                let ev = c_response(i32::from(ECHO_LATER), CS_OK, &7u32.to_ne_bytes());
                let _ = resp.connection().dispatch_send(&ev);
                let later = resp.defer().map_err(|_| HandlerError::InvalidRequest)?;
                std::thread::spawn(move || {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                    let m = c_response(i32::from(ECHO_LATER), CS_OK, &42u32.to_ne_bytes());
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
