//! Criterion: IPC hot paths with the server on another thread of this process (the
//! cross-process comparison is the `coroipc-bench` binary): request/response round
//! trips (copy and zero copy) and dispatch send + receive.

use std::time::Duration;

use coroipc::{
    Client, ConnectOptions, Connection, HandlerError, Request, Responder, ServerBuilder, Service,
    SocketName,
};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

struct Echo(std::sync::mpsc::Sender<Connection>);

impl Service for Echo {
    type Private = ();
    fn on_connect(&mut self, conn: &Connection) -> Result<(), i32> {
        let _ = self.0.send(conn.clone());
        Ok(())
    }
    fn handle(
        &mut self,
        _: &mut (),
        req: Request<'_>,
        resp: &mut Responder<'_>,
    ) -> Result<(), HandlerError> {
        let _ = resp.respond(0, req.payload);
        Ok(())
    }
}

fn benches(c: &mut Criterion) {
    let name = SocketName::abstract_name(format!("coroipc-criterion-{}", std::process::id()));
    let (tx, rx) = std::sync::mpsc::channel();
    let mut server = ServerBuilder::new(name.clone())
        .service(1, Echo(tx))
        .build()
        .expect("server");
    let stop = server.stop_handle();
    let thread = std::thread::spawn(move || server.run());
    let opts = ConnectOptions {
        dispatch_ring: 1 << 20,
        ..ConnectOptions::default()
    };
    let mut client = Client::connect(&name, 1, &opts).expect("connect");
    let handle = rx.recv().expect("connection handle");

    let mut g = c.benchmark_group("ipc");
    g.measurement_time(Duration::from_secs(2))
        .warm_up_time(Duration::from_millis(500))
        .sample_size(20);
    g.throughput(Throughput::Elements(1));
    let payload = [1u8; 64];
    g.bench_function("rtt_64B_copy", |b| {
        b.iter(|| client.request(1, &payload).expect("request"))
    });
    g.bench_function("rtt_64B_in_place", |b| {
        b.iter(|| {
            let r = client.request_in_place(1, &payload).expect("request");
            std::hint::black_box(r.len())
        })
    });
    g.bench_function("dispatch_64B", |b| {
        b.iter(|| {
            while handle.dispatch_send(&payload).is_err() {
                while client
                    .dispatch_recv(Some(Duration::ZERO))
                    .expect("recv")
                    .is_some()
                {}
            }
            let m = client.dispatch_recv(Some(Duration::ZERO)).expect("recv");
            std::hint::black_box(m.map(|m| m.len()))
        })
    });
    g.finish();
    drop(client);
    stop.stop();
    let _ = thread.join();
}

criterion_group!(ipc, benches);
criterion_main!(ipc);
