//! The measuring process: creates the services, starts the server, prints the rows.

use std::io::Write;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use iceoryx2::pending_response::PendingResponse;
use iceoryx2::port::client::Client;
use iceoryx2::port::subscriber::Subscriber;
use iceoryx2::prelude::PortFactory as _;
use iceoryx2::prelude::*;
use iceoryx2::service::port_factory::request_response::PortFactory;

use crate::{
    pin_to, rtt_json, stream_json, Ctx, Idle, Res, CLIENT_WAIT, CMD_ECHO, CMD_QUIT, CMD_STREAM,
};

type RttClient = Client<ipc::Service, [u8], u64, [u8], ()>;
type Pending = PendingResponse<ipc::Service, [u8], u64, [u8], ()>;
type StreamSubscriber = Subscriber<ipc::Service, [u8], ()>;
type RttService = PortFactory<ipc::Service, [u8], u64, [u8], ()>;

/// `run [--quick]`.
pub(crate) fn run(quick: bool) -> Res<()> {
    pin_to(0);
    let node = crate::node()?;
    let prefix = format!("coroipc-iceoryx2-peer/{}", std::process::id());
    let rtt = node
        .service_builder(&crate::service_name(&prefix, "rtt")?)
        .request_response::<[u8], [u8]>()
        .request_user_header::<u64>()
        .max_clients(1)
        .max_servers(1)
        .create()
        .ctx("create rtt service")?;
    let stream = node
        .service_builder(&crate::service_name(&prefix, "stream")?)
        .publish_subscribe::<[u8]>()
        .enable_safe_overflow(false)
        .subscriber_max_buffer_size(crate::STREAM_BUFFER)
        .max_publishers(1)
        .max_subscribers(1)
        .create()
        .ctx("create stream service")?;
    let client = rtt
        .client_builder()
        .initial_max_slice_len(crate::MAX_RTT)
        .create()
        .ctx("create client port")?;
    let subscriber = stream
        .subscriber_builder()
        .buffer_size(crate::STREAM_BUFFER)
        .create()
        .ctx("create subscriber")?;
    // Declared last, dropped first: the server is gone before the services are released.
    let mut server = ServerProcess::spawn(&prefix)?;
    server.wait_ready(&rtt)?;
    measure(&client, &subscriber, &mut server, quick)?;
    server.quit(&client)
}

fn measure(
    client: &RttClient,
    subscriber: &StreamSubscriber,
    server: &mut ServerProcess,
    quick: bool,
) -> Res<()> {
    let scale = if quick { 1 } else { 10 };
    let mut out = std::io::stdout().lock();
    for size in [64usize, 1024, 65536] {
        let iters = if size > 4096 { 2_000 } else { 20_000 } * scale;
        let line = rtt(client, server, size, iters)?;
        writeln!(out, "{line}").ctx("stdout")?;
    }
    for size in [64usize, 1024] {
        let line = stream(client, subscriber, server, size, 300_000 * scale as u64)?;
        writeln!(out, "{line}").ctx("stdout")?;
    }
    out.flush().ctx("stdout")
}

/// Sends a request: command `cmd`, payload copied from `data`.
fn send(client: &RttClient, cmd: u64, data: &[u8]) -> Res<Pending> {
    let mut request = client.loan_slice_uninit(data.len()).ctx("loan request")?;
    *request.user_header_mut() = cmd;
    request.write_from_slice(data).send().ctx("send request")
}

/// Spins until the response to `pending` arrives and hands its payload to `read`.
fn wait<R>(pending: &Pending, server: &mut ServerProcess, read: impl FnOnce(&[u8]) -> R) -> Res<R> {
    let mut idle = Idle::new();
    loop {
        if let Some(response) = pending.receive().ctx("receive response")? {
            return Ok(read(response.payload()));
        }
        idle.tick(CLIENT_WAIT, "response", || server.alive())?;
    }
}

/// Round trips of `size` bytes: N/10 warm-up, then `iters` timed.
fn rtt(client: &RttClient, server: &mut ServerProcess, size: usize, iters: usize) -> Res<String> {
    let mut buf = vec![0xa5u8; size];
    let mut samples = Vec::with_capacity(iters);
    let warm = iters / 10;
    for i in 0..warm + iters {
        let stamp = (i as u64).to_le_bytes();
        buf[..8].copy_from_slice(&stamp);
        let t = Instant::now();
        let pending = send(client, CMD_ECHO, &buf)?;
        let ok = wait(&pending, server, |p| {
            p.len() == size && p[..8] == stamp && p[size - 1] == 0xa5
        })?;
        let ns = t.elapsed().as_nanos() as f64;
        if !ok {
            return Err(format!("rtt {size}: wrong echo in round trip {i}"));
        }
        if i >= warm {
            samples.push(ns);
        }
    }
    samples.sort_by(f64::total_cmp);
    let rank = |q: f64| samples[((samples.len() as f64 * q).ceil() as usize).clamp(1, iters) - 1];
    let (median, p99) = (rank(0.5), rank(0.99));
    Ok(rtt_json(size, median, p99))
}

/// `count` messages of `size` bytes from the server; messages/s from the command to the
/// last message received.
fn stream(
    client: &RttClient,
    subscriber: &StreamSubscriber,
    server: &mut ServerProcess,
    size: usize,
    count: u64,
) -> Res<String> {
    let arg = [count.to_le_bytes(), (size as u64).to_le_bytes()].concat();
    let t = Instant::now();
    let pending = send(client, CMD_STREAM, &arg)?;
    let (mut got, mut sum, mut idle) = (0u64, 0u64, Idle::new());
    while got < count {
        match subscriber.receive().ctx("receive sample")? {
            Some(sample) => {
                sum = sum.wrapping_add(u64::from(sample.payload().last().copied().unwrap_or(0)));
                got += 1;
                idle = Idle::new();
            }
            None => idle.tick(CLIENT_WAIT, "stream", || server.alive())?,
        }
    }
    let secs = t.elapsed().as_secs_f64();
    std::hint::black_box(sum);
    wait(&pending, server, |_| ())?;
    Ok(stream_json(size, count as f64 / secs))
}

/// The server child: killed when dropped (unless it has exited).
struct ServerProcess {
    child: Child,
}

impl ServerProcess {
    fn spawn(prefix: &str) -> Res<Self> {
        let exe = std::env::current_exe().ctx("current_exe")?;
        let child = Command::new(exe)
            .args(["server", prefix, &std::process::id().to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .ctx("spawn server")?;
        Ok(ServerProcess { child })
    }

    fn alive(&mut self) -> Res<()> {
        match self.child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => Err(format!("server exited ({status})")),
            Err(e) => Err(format!("server: {e}")),
        }
    }

    /// Waits until the server port exists (the publisher is created before it).
    fn wait_ready(&mut self, rtt: &RttService) -> Res<()> {
        let start = Instant::now();
        while rtt.dynamic_config().number_of_servers() == 0 {
            self.alive()?;
            if start.elapsed() > CLIENT_WAIT {
                return Err("server did not start".to_string());
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        Ok(())
    }

    /// Sends `QUIT` and waits (holding the request) until the server has exited.
    fn quit(mut self, client: &RttClient) -> Res<()> {
        let pending = send(client, CMD_QUIT, &[0])?;
        let exited = self.reap(Duration::from_secs(2));
        drop(pending);
        if exited {
            Ok(())
        } else {
            Err("server did not quit (killed)".to_string())
        }
    }

    /// Waits up to `grace` for the server to exit, then kills it; true if it exited.
    fn reap(&mut self, grace: Duration) -> bool {
        let start = Instant::now();
        loop {
            if let Ok(Some(_)) = self.child.try_wait() {
                return true;
            }
            if start.elapsed() >= grace {
                let _ = self.child.kill();
                let _ = self.child.wait();
                return false;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.reap(Duration::ZERO);
    }
}
