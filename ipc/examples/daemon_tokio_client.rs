//! The tokio client of the example daemon: the same conversation as `daemon_client`,
//! with the events read by a second task while the first makes requests.
//!
//! Run: `cargo run --example daemon_tokio_client -p coroipc --features tokio`.

#[path = "daemon/services.rs"]
mod services;

use coroipc::tokio::AsyncClient;
use coroipc::{ConnectOptions, SocketName};
use services::{GET, KV, NOTIFY, NOT_FOUND, PUT, SUBSCRIBE};

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let name = SocketName::abstract_name(services::name_arg());
    let options = ConnectOptions::default();
    let kv = AsyncClient::connect(&name, KV, &options).await?;
    let events = AsyncClient::connect(&name, NOTIFY, &options).await?;
    events.request(SUBSCRIBE, b"").await?;
    let listener = tokio::task::spawn_local(async move {
        let (mut ticks, mut put_seen) = (0, false);
        while ticks < 2 || !put_seen {
            let event = events.next_dispatch().await?;
            let text = String::from_utf8_lossy(&event).into_owned();
            println!("event: {text}");
            if text == "put colour" {
                put_seen = true;
            } else if text.starts_with("tick") {
                ticks += 1;
            }
        }
        Ok::<_, coroipc::ClientError>(())
    });
    kv.request(PUT, &services::put_payload(b"colour", b"blue"))
        .await?;
    let got = kv.request(GET, b"colour").await?;
    println!("get colour = {}", String::from_utf8_lossy(&got.data));
    if kv.request(GET, b"size").await?.status == NOT_FOUND {
        println!("get size: not found");
    }
    tokio::time::timeout(std::time::Duration::from_secs(5), listener).await???;
    println!("done");
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    tokio::task::LocalSet::new().block_on(&runtime, run())
}
