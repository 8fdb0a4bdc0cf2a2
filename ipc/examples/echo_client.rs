//! The echo client: sends its arguments to the echo server and prints the answers.
//!
//! `cargo run --example echo_client -p coroipc -- hello world`

use std::time::{Duration, Instant};

use coroipc::{Client, ConnectOptions, SocketName};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let words: Vec<String> = std::env::args().skip(1).collect();
    let text = if words.is_empty() {
        "hello".to_string()
    } else {
        words.join(" ")
    };
    let mut client = Client::connect(
        &SocketName::abstract_name("coroipc-echo"),
        1,
        &ConnectOptions::default(),
    )?;

    // Synchronous request/response (copying).
    let reply = client.request(1, text.as_bytes())?;
    println!("echo: {}", String::from_utf8_lossy(&reply.data));

    // Zero-copy: the response is read in place in shared memory.
    let inplace = client.request_in_place(1, text.as_bytes())?;
    println!("in place: {} bytes", inplace.len());
    drop(inplace);

    // A dispatch (server -> client) message.
    client.request(2, text.as_bytes())?;
    if let Some(msg) = client.dispatch_recv(Some(Duration::from_secs(1)))? {
        println!("dispatch: {}", String::from_utf8_lossy(&msg.to_vec()));
    }

    // A quick latency figure.
    let n = 100_000;
    let start = Instant::now();
    for _ in 0..n {
        client.request(1, b"0123456789abcdef")?;
    }
    println!(
        "{n} round trips, {:.2} us each",
        start.elapsed().as_secs_f64() * 1e6 / f64::from(n)
    );
    Ok(())
}
