//! Out of file descriptors (issue 15): the server never busy-loops, refuses with a
//! reason the client can read, and recovers when descriptors come back. Real
//! processes: the server runs in a child under a low `RLIMIT_NOFILE`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::{Duration, Instant};

use coroipc::{Client, ConnectError, ConnectOptions};
use support::{cmd, ServerProcess};

#[test]
#[ignore = "entry point of the server child process"]
fn child_server() {
    support::child_entry();
}

/// CPU time (user + system) the process has used.
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name (which is in parentheses and may hold spaces).
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
    Duration::from_millis(ticks * 1000 / hz)
}

fn quick_connect(server: &ServerProcess) -> Result<Client, ConnectError> {
    let opts = ConnectOptions {
        connect_timeout: Duration::from_millis(500),
        ..Default::default()
    };
    Client::connect(&server.socket(), 1, &opts)
}

#[test]
fn out_of_fds_refuses_cleanly_idles_and_recovers() {
    let server = ServerProcess::start("nofile", &[("COROIPC_NOFILE", "64")]);
    let pid = server.child.id();
    let mut kept = Vec::new();
    let first_refusal = loop {
        match quick_connect(&server) {
            Ok(c) => kept.push(c),
            Err(e) => break e,
        }
        assert!(
            kept.len() < 64,
            "64 descriptors cannot carry 64 connections"
        );
    };
    assert!(
        matches!(first_refusal, ConnectError::OutOfFds),
        "{first_refusal}"
    );
    assert!(kept.len() >= 5, "only {} connections fit", kept.len());
    // While the limit is hit: every attempt is refused at once with the reason, and
    // the server's CPU stays idle between them.
    let cpu_before = cpu_time(pid);
    let started = Instant::now();
    for _ in 0..20 {
        let at = Instant::now();
        let e = quick_connect(&server).unwrap_err();
        assert!(matches!(e, ConnectError::OutOfFds), "{e}");
        assert!(
            at.elapsed() < Duration::from_millis(400),
            "a refusal, not a timeout"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let wall = started.elapsed();
    let cpu = cpu_time(pid).saturating_sub(cpu_before);
    assert!(
        cpu < wall / 4,
        "server used {cpu:?} of CPU in {wall:?} at its descriptor limit"
    );
    // Existing clients are still served.
    for c in kept.iter_mut() {
        assert_eq!(c.request(cmd::ECHO, b"x").unwrap().data, b"x");
    }
    // Recovery: one connection closes, a new client gets in.
    drop(kept.pop());
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut again = loop {
        match quick_connect(&server) {
            Ok(c) => break c,
            Err(ConnectError::OutOfFds) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => panic!("no recovery: {e}"),
        }
    };
    assert_eq!(again.request(cmd::ECHO, b"back").unwrap().data, b"back");
}

#[test]
fn with_no_reserve_the_listener_stalls_without_spinning() {
    // The server starts with no descriptor to spare (not even its reserve); they
    // come back after 1.5 s.
    let server = ServerProcess::start("fdhog", &[("COROIPC_FD_HOG_MS", "1500")]);
    let pid = server.child.id();
    let cpu_before = cpu_time(pid);
    let started = Instant::now();
    // A client that cannot be accepted waits in the backlog: it times out, and the
    // server does not spin meanwhile.
    let e = quick_connect(&server).unwrap_err();
    assert!(matches!(e, ConnectError::Timeout), "{e}");
    std::thread::sleep(Duration::from_millis(300));
    let wall = started.elapsed();
    let cpu = cpu_time(pid).saturating_sub(cpu_before);
    assert!(
        cpu < wall / 4,
        "server used {cpu:?} of CPU in {wall:?} while stalled"
    );
    // Once descriptors are back, the retry timer resumes accepting.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut c = loop {
        match quick_connect(&server) {
            Ok(c) => break c,
            Err(_) if Instant::now() < deadline => {}
            Err(e) => panic!("no recovery: {e}"),
        }
    };
    assert_eq!(c.request(cmd::ECHO, b"up").unwrap().data, b"up");
}

/// At the limit, the descriptors of a connection that just closed are the next
/// client's: the server releases closed connections whose release it deferred before
/// it refuses anyone for lack of descriptors (SPEC §2.6).
#[test]
fn a_closed_connection_frees_its_descriptors_for_the_next_client() {
    let server = ServerProcess::start("nofile-reuse", &[("COROIPC_NOFILE", "64")]);
    let mut kept = Vec::new();
    loop {
        match quick_connect(&server) {
            Ok(c) => kept.push(c),
            Err(ConnectError::OutOfFds) => break,
            Err(e) => panic!("{e}"),
        }
        assert!(kept.len() < 64);
    }
    assert!(kept.len() >= 5, "only {} connections fit", kept.len());
    for round in 0..10 {
        drop(kept.pop());
        // A round trip on another connection, so the server has likely seen the
        // close (it may answer from its poll first): the connect below then finds
        // the closed connection either waiting for release or released.
        assert_eq!(kept[0].request(cmd::ECHO, b"x").unwrap().data, b"x");
        match quick_connect(&server) {
            Ok(c) => kept.push(c),
            Err(e) => panic!("round {round}: the freed descriptors were not used: {e}"),
        }
    }
}
