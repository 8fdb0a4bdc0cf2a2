//! An echo server: service 1 answers command 1 with the request payload, and command 2
//! with a dispatch message carrying it too.
//!
//! Run: `cargo run --example echo_server -p coroipc` then, in another terminal,
//! `cargo run --example echo_client -p coroipc -- hello`.

use coroipc::{Connection, HandlerError, Request, Responder, ServerBuilder, Service, SocketName};

struct Echo;

impl Service for Echo {
    /// Per-connection private data: how many requests this client sent.
    type Private = u64;

    fn on_connect(&mut self, conn: &Connection) -> Result<u64, i32> {
        println!(
            "client {} connected (pid {}, uid {})",
            conn.id(),
            conn.credentials().pid,
            conn.credentials().uid
        );
        Ok(0)
    }

    fn on_disconnect(&mut self, count: u64, conn: &Connection, reason: &coroipc::DisconnectReason) {
        println!(
            "client {} gone after {count} requests: {reason:?}",
            conn.id()
        );
    }

    fn handle(
        &mut self,
        count: &mut u64,
        req: Request<'_>,
        resp: &mut Responder<'_>,
    ) -> Result<(), HandlerError> {
        *count += 1;
        match req.command {
            1 => {
                let _ = resp.respond(0, req.payload);
            }
            2 => {
                let _ = resp.connection().dispatch_send(req.payload);
                let _ = resp.respond(0, b"");
            }
            _ => return Err(HandlerError::UnknownCommand),
        }
        Ok(())
    }
}

fn main() -> std::io::Result<()> {
    let mut server = ServerBuilder::new(SocketName::abstract_name("coroipc-echo"))
        // Accept only our own user.
        .security({
            let me = nix::unistd::getuid().as_raw();
            move |cred| cred.uid == me
        })
        .service(1, Echo)
        .build()?;
    println!("echo server listening on @coroipc-echo");
    server.run()
}
