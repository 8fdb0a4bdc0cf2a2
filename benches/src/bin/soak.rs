//! `coroipc-soak [--clients N] [--seconds S] [--kill-ms M]`
//!
//! A server process and N client processes (this binary re-executed). Each client sends
//! requests of random sizes, several in flight, each carrying a sequence number and a
//! checksum, and checks that every response comes back exactly once and intact. Every
//! `M` ms a random client is killed with SIGKILL and a new one started. At the end the
//! totals are printed; lost or duplicated responses make the exit status non-zero.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use coroipc::{
    Client, ClientError, ConnectOptions, Connection, HandlerError, Request, Responder,
    ServerBuilder, Service, SocketName,
};

struct Echo;

impl Service for Echo {
    type Private = ();
    fn on_connect(&mut self, _: &Connection) -> Result<(), i32> {
        Ok(())
    }
    fn handle(
        &mut self,
        _: &mut (),
        req: Request<'_>,
        resp: &mut Responder<'_>,
    ) -> Result<(), HandlerError> {
        match req.command {
            1 => {
                let _ = resp.respond(0, req.payload);
                Ok(())
            }
            2 => {
                // Answer from another thread, later.
                let d = resp.defer().map_err(|_| HandlerError::UnknownCommand)?;
                let data = req.payload.to_vec();
                std::thread::spawn(move || {
                    let _ = d.respond(0, &data);
                });
                Ok(())
            }
            _ => Err(HandlerError::UnknownCommand),
        }
    }
}

fn fnv(data: &[u8]) -> u32 {
    data.iter().fold(0x811c_9dc5u32, |h, b| {
        (h ^ u32::from(*b)).wrapping_mul(0x0100_0193)
    })
}

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[derive(Default, Clone, Copy)]
struct Counts {
    messages: u64,
    errors: u64,
    lost: u64,
    duplicated: u64,
}

fn server_main(name: &str) {
    let server = ServerBuilder::new(SocketName::abstract_name(name))
        .service(1, Echo)
        .build();
    let Ok(mut server) = server else {
        eprintln!("soak server failed to start");
        std::process::exit(1);
    };
    println!("READY");
    let _ = std::io::stdout().flush();
    let _ = server.run();
}

fn client_main(name: &str, seed: u64) {
    let mut rng = Rng(seed | 1);
    let mut counts = Counts::default();
    let socket = SocketName::abstract_name(name);
    let opts = ConnectOptions {
        request_timeout: Some(Duration::from_secs(5)),
        ..ConnectOptions::default()
    };
    let mut client = match Client::connect(&socket, 1, &opts) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("soak client: {e}");
            println!("COUNTS 0 1 0 0");
            return;
        }
    };
    let mut expected: HashMap<u64, Vec<u8>> = HashMap::new();
    let mut seq = 0u64;
    let mut last_report = Instant::now();
    loop {
        // Keep up to 8 requests in flight.
        while expected.len() < 8 {
            let len = 12 + (rng.next() % 2000) as usize;
            let mut msg = vec![0u8; len];
            for b in msg[12..].iter_mut() {
                *b = rng.next() as u8;
            }
            msg[..8].copy_from_slice(&seq.to_le_bytes());
            let sum = fnv(&msg[12..]);
            msg[8..12].copy_from_slice(&sum.to_le_bytes());
            let command = if rng.next() & 3 == 0 { 2 } else { 1 };
            match client.send_request(command, &msg) {
                Ok(id) => {
                    expected.insert(id, msg);
                    seq += 1;
                }
                Err(_) => {
                    counts.errors += 1;
                    break;
                }
            }
        }
        match client.receive_response(Some(Duration::from_secs(5))) {
            Ok((id, Ok(r))) => match expected.remove(&id) {
                Some(want)
                    if want == r.data && fnv(&r.data[12..]).to_le_bytes() == r.data[8..12] =>
                {
                    counts.messages += 1
                }
                Some(_) => counts.errors += 1,
                None => counts.duplicated += 1,
            },
            Ok((id, Err(_))) => {
                expected.remove(&id);
                counts.errors += 1;
            }
            Err(ClientError::Timeout) => {
                counts.lost += expected.len() as u64;
                expected.clear();
            }
            Err(ClientError::UnknownRequest(_)) => {}
            Err(_) => {
                counts.errors += 1;
                println!(
                    "COUNTS {} {} {} {}",
                    counts.messages, counts.errors, counts.lost, counts.duplicated
                );
                return;
            }
        }
        if last_report.elapsed() > Duration::from_millis(20) {
            println!(
                "COUNTS {} {} {} {}",
                counts.messages, counts.errors, counts.lost, counts.duplicated
            );
            let _ = std::io::stdout().flush();
            last_report = Instant::now();
        }
    }
}

fn spawn_client(
    name: &str,
    seed: u64,
    tx: mpsc::Sender<(usize, Counts)>,
    slot: usize,
) -> std::io::Result<Child> {
    let mut child = Command::new(std::env::current_exe()?)
        .args(["__client", name, &seed.to_string()])
        .stdout(Stdio::piped())
        .spawn()?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| std::io::Error::other("no stdout"))?;
    std::thread::spawn(move || {
        let mut last = Counts::default();
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let v: Vec<u64> = line
                .split_whitespace()
                .skip(1)
                .filter_map(|w| w.parse().ok())
                .collect();
            if line.starts_with("COUNTS") && v.len() == 4 {
                last = Counts {
                    messages: v[0],
                    errors: v[1],
                    lost: v[2],
                    duplicated: v[3],
                };
            }
        }
        let _ = tx.send((slot, last));
    });
    Ok(child)
}

fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("__server") => {
            server_main(&args[1]);
            return Ok(());
        }
        Some("__client") => {
            client_main(
                &args[1],
                args.get(2).and_then(|s| s.parse().ok()).unwrap_or(1),
            );
            return Ok(());
        }
        _ => {}
    }
    let opt = |flag: &str, default: u64| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let (clients, seconds, kill_ms) = (
        opt("--clients", 4) as usize,
        opt("--seconds", 10),
        opt("--kill-ms", 200),
    );
    let name = format!("coroipc-soak-{}", std::process::id());
    let mut server = Command::new(std::env::current_exe()?)
        .args(["__server", &name])
        .stdout(Stdio::piped())
        .spawn()?;
    let mut line = String::new();
    BufReader::new(
        server
            .stdout
            .take()
            .ok_or_else(|| std::io::Error::other("no stdout"))?,
    )
    .read_line(&mut line)?;
    if !line.contains("READY") {
        let _ = server.kill();
        return Err(std::io::Error::other("soak server did not start"));
    }
    let (tx, rx) = mpsc::channel();
    let mut rng = Rng(0x5eed_5eed);
    let mut children: Vec<Child> = Vec::new();
    for slot in 0..clients {
        children.push(spawn_client(&name, rng.next(), tx.clone(), slot)?);
    }
    let start = Instant::now();
    let mut kills = 0u64;
    while start.elapsed() < Duration::from_secs(seconds) {
        std::thread::sleep(Duration::from_millis(kill_ms));
        if clients == 0 {
            continue;
        }
        let slot = (rng.next() as usize) % clients;
        let _ = children[slot].kill();
        let _ = children[slot].wait();
        kills += 1;
        children[slot] = spawn_client(&name, rng.next(), tx.clone(), slot)?;
    }
    for c in children.iter_mut() {
        let _ = c.kill();
        let _ = c.wait();
    }
    drop(tx);
    let mut total = Counts::default();
    for (_, c) in rx.iter() {
        total.messages += c.messages;
        total.errors += c.errors;
        total.lost += c.lost;
        total.duplicated += c.duplicated;
    }
    let server_alive = server.try_wait()?.is_none();
    let _ = server.kill();
    let _ = server.wait();
    println!(
        "soak: {clients} clients, {seconds} s, {kills} kills and reconnects: messages {}, errors {}, lost {}, duplicated {}, server {}",
        total.messages,
        total.errors,
        total.lost,
        total.duplicated,
        if server_alive { "alive" } else { "DEAD" }
    );
    if total.lost > 0 || total.duplicated > 0 || !server_alive || total.messages == 0 {
        std::process::exit(1);
    }
    Ok(())
}
