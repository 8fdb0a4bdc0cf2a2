//! The example daemon: a key-value service (1) and a notification service (2) whose
//! events come from the key-value service and from a thread of their own, served by
//! the built-in loop.
//!
//! Run: `cargo run --example daemon -p coroipc`, then
//! `cargo run --example daemon_client -p coroipc` (blocking) or
//! `cargo run --example daemon_tokio_client -p coroipc --features tokio`.

#[path = "daemon/services.rs"]
mod services;

fn main() -> std::io::Result<()> {
    let name = services::name_arg();
    let mut server = services::build(&name)?;
    println!("READY {name}");
    server.run()
}
