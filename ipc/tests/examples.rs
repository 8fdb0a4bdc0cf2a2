//! The example daemon and its clients, run as the programs they are: the daemon
//! (built-in loop) and its poll-loop variant, each with the blocking client and (with
//! the `tokio` feature) the tokio client.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

/// `target/<profile>/examples/<name>`, built by `cargo test` beside this test.
fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap().join("examples");
    let path = dir.join(name);
    assert!(path.exists(), "{} not built", path.display());
    path
}

/// A running daemon example (and its stdout, kept open), killed on drop.
struct Daemon(
    Child,
    #[allow(dead_code)] // held open: the daemon prints to it
    std::io::Lines<BufReader<std::process::ChildStdout>>,
);

impl Daemon {
    fn start(program: &str, name: &str) -> Daemon {
        let mut child = Command::new(example(program))
            .arg(name)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let first = lines.next().unwrap().unwrap();
        assert!(first.starts_with("READY"), "{first}");
        Daemon(child, lines)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs a client example against `name`; asserts it succeeded and said everything.
fn run_client(program: &str, name: &str) {
    let out = Command::new(example(program)).arg(name).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{program} failed: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for line in [
        "get colour = blue",
        "get size: not found",
        "event: put colour",
        "event: tick",
        "done",
    ] {
        assert!(
            text.contains(line),
            "{program} did not print {line:?}: {text}"
        );
    }
}

fn clients() -> Vec<&'static str> {
    let mut c = vec!["daemon_client"];
    if cfg!(feature = "tokio") {
        c.push("daemon_tokio_client");
    }
    c
}

#[test]
fn the_daemon_serves_its_clients() {
    let name = format!("coroipc-example-{}", std::process::id());
    let _daemon = Daemon::start("daemon", &name);
    for client in clients() {
        run_client(client, &name);
    }
}

#[test]
fn the_poll_loop_daemon_serves_its_clients_and_stops_on_eof() {
    let name = format!("coroipc-example-poll-{}", std::process::id());
    let mut daemon = Daemon::start("daemon_poll_loop", &name);
    for client in clients() {
        run_client(client, &name);
    }
    // Its loop also watches stdin: closing it ends the daemon cleanly.
    let mut stdin = daemon.0.stdin.take().unwrap();
    stdin.write_all(b"\n").unwrap();
    drop(stdin);
    assert!(daemon.0.wait().unwrap().success());
}
