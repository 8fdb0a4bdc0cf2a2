//! The example daemon's two services and its wire format, shared by the daemon, its
//! poll-loop variant and its clients (each example includes this file).
#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use coroipc::{Connection, HandlerError, Request, Responder, ServerBuilder, Service, SocketName};

/// The key-value service.
pub const KV: u16 = 1;
/// The notification service.
pub const NOTIFY: u16 = 2;

/// KV command: payload `key_len: u16 LE, key, value`; stores the value.
pub const PUT: u16 = 1;
/// KV command: payload the key; answers the value, or status [`NOT_FOUND`].
pub const GET: u16 = 2;
/// NOTIFY command: subscribe this connection to events.
pub const SUBSCRIBE: u16 = 1;

/// KV's service status for a key that is not there (a service status, positive: the
/// client sees it in `Response::status`, not as an error).
pub const NOT_FOUND: i32 = 1;

/// Encodes a PUT payload.
pub fn put_payload(key: &[u8], value: &[u8]) -> Vec<u8> {
    let mut p = (key.len() as u16).to_le_bytes().to_vec();
    p.extend_from_slice(key);
    p.extend_from_slice(value);
    p
}

/// Subscribers of the notification service, shared with the event thread.
pub type Subscribers = Arc<Mutex<Vec<Connection>>>;

/// Sends `event` to every subscriber; drops those that are gone.
pub fn publish(subscribers: &Subscribers, event: &[u8]) {
    let mut subs = subscribers.lock().unwrap_or_else(|e| e.into_inner());
    subs.retain(|c| {
        !matches!(
            c.dispatch_send(event),
            Err(coroipc::SendError::Disconnected)
        )
    });
}

/// Key-value store; every put is also published as an event `put <key>`.
pub struct Kv {
    pub store: HashMap<Vec<u8>, Vec<u8>>,
    pub subscribers: Subscribers,
}

impl Service for Kv {
    type Private = ();

    fn on_connect(&mut self, _conn: &Connection) -> Result<(), i32> {
        Ok(())
    }

    fn handle(
        &mut self,
        _: &mut (),
        req: Request<'_>,
        resp: &mut Responder<'_>,
    ) -> Result<(), HandlerError> {
        match req.command {
            PUT => {
                let Some((len, rest)) = req.payload.split_first_chunk::<2>() else {
                    return Err(HandlerError::InvalidRequest);
                };
                let len = u16::from_le_bytes(*len) as usize;
                if rest.len() < len {
                    return Err(HandlerError::InvalidRequest);
                }
                let (key, value) = rest.split_at(len);
                self.store.insert(key.to_vec(), value.to_vec());
                publish(&self.subscribers, &[b"put ", key].concat());
                let _ = resp.respond(0, b"");
            }
            GET => match self.store.get(req.payload) {
                Some(v) => {
                    let _ = resp.respond(0, v);
                }
                None => {
                    let _ = resp.respond(NOT_FOUND, b"");
                }
            },
            _ => return Err(HandlerError::UnknownCommand),
        }
        Ok(())
    }
}

/// Notifications: clients subscribe; events come from the KV service and from a
/// thread of their own ([`spawn_ticker`]).
pub struct Notify {
    pub subscribers: Subscribers,
}

impl Service for Notify {
    type Private = ();

    fn on_connect(&mut self, _conn: &Connection) -> Result<(), i32> {
        Ok(())
    }

    fn handle(
        &mut self,
        _: &mut (),
        req: Request<'_>,
        resp: &mut Responder<'_>,
    ) -> Result<(), HandlerError> {
        match req.command {
            SUBSCRIBE => {
                let conn = resp.connection().clone();
                self.subscribers
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(conn);
                let _ = resp.respond(0, b"");
            }
            _ => return Err(HandlerError::UnknownCommand),
        }
        Ok(())
    }
}

/// Publishes `tick <n>` to every subscriber every `every`, from its own thread.
pub fn spawn_ticker(subscribers: Subscribers, every: Duration) {
    std::thread::spawn(move || {
        for n in 0u64.. {
            std::thread::sleep(every);
            publish(&subscribers, format!("tick {n}").as_bytes());
        }
    });
}

/// The daemon's server: both services, and the ticker thread started.
pub fn build(name: &str) -> std::io::Result<coroipc::Server> {
    let subscribers = Subscribers::default();
    spawn_ticker(subscribers.clone(), Duration::from_millis(10));
    ServerBuilder::new(SocketName::abstract_name(name))
        .service(
            KV,
            Kv {
                store: HashMap::new(),
                subscribers: subscribers.clone(),
            },
        )
        .service(NOTIFY, Notify { subscribers })
        .build()
}

/// The socket name from the first argument, or a default.
pub fn name_arg() -> String {
    std::env::args()
        .nth(1)
        .unwrap_or_else(|| "coroipc-example-daemon".to_string())
}
