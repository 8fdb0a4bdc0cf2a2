//! A blocking client of the example daemon: put, get, a key that is not there,
//! then subscribe and print three events (one from a put, two from the ticker).
//!
//! Run: `cargo run --example daemon_client -p coroipc [socket-name]`.

#[path = "daemon/services.rs"]
mod services;

use std::time::Duration;

use coroipc::{Client, ConnectOptions, SocketName};
use services::{GET, KV, NOTIFY, NOT_FOUND, PUT, SUBSCRIBE};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let name = SocketName::abstract_name(services::name_arg());
    let mut kv = Client::connect(&name, KV, &ConnectOptions::default())?;
    let mut events = Client::connect(&name, NOTIFY, &ConnectOptions::default())?;
    events.request(SUBSCRIBE, b"")?;

    kv.request(PUT, &services::put_payload(b"colour", b"blue"))?;
    let got = kv.request(GET, b"colour")?;
    println!("get colour = {}", String::from_utf8_lossy(&got.data));
    let missing = kv.request(GET, b"size")?;
    if missing.status == NOT_FOUND {
        println!("get size: not found");
    }
    let mut ticks = 0;
    let mut put_seen = false;
    while ticks < 2 || !put_seen {
        let Some(event) = events.dispatch_recv(Some(Duration::from_secs(5)))? else {
            return Err("no event within 5 s".into());
        };
        let text = String::from_utf8_lossy(&event.to_vec()).into_owned();
        println!("event: {text}");
        if text == "put colour" {
            put_seen = true;
        } else if text.starts_with("tick") {
            ticks += 1;
        }
    }
    println!("done");
    Ok(())
}
