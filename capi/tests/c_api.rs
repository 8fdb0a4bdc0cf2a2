//! The C API end to end: the C example programs (`examples/server.c`,
//! `examples/client.c`) and the misuse program (`tests/c/abuse.c`), compiled with the
//! system C compiler against `libcoroipc.a` (with ASan/UBSan and the leak check when
//! available), run against each other and against the Rust library, with `kill -9` of
//! each side. Without a C compiler every test prints SKIPPED and passes.

mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use ipc::{Client, ClientError, ConnectError, ConnectOptions, SocketName};
use support::rust_peer::*;
use support::{toolchain, unique_name, Proc, Toolchain};

const T: Duration = Duration::from_secs(60);
const CHILD_ENV: &str = "COROIPC_CAPI_CHILD";

/// Not a test: the entry point of this binary re-executed as a Rust peer process
/// (`COROIPC_CAPI_CHILD=server:NAME` or `client:NAME`). Returns at once otherwise.
#[test]
fn child_entry() {
    let Ok(what) = std::env::var(CHILD_ENV) else {
        return;
    };
    match what.split_once(':') {
        Some(("server", name)) => serve_forever(name),
        Some(("client", name)) => client_forever(name),
        _ => panic!("bad {CHILD_ENV}={what}"),
    }
}

fn rust_child(role: &str, name: &str) -> Proc {
    let mut cmd = Command::new(std::env::current_exe().expect("test executable"));
    cmd.args(["--exact", "child_entry", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, format!("{role}:{name}"));
    Proc::spawn(&format!("rust {role}"), cmd)
}

fn c_server(tc: &Toolchain, name: &str) -> Proc {
    let exe = tc.build("examples/server.c");
    let mut cmd = tc.command(&exe);
    cmd.arg(name);
    let mut p = Proc::spawn("C server", cmd);
    p.expect_line("ready", T);
    p
}

fn rust_server(name: &str) -> Proc {
    let mut p = rust_child("server", name);
    p.expect_line("ready", T);
    p
}

fn c_client(tc: &Toolchain, name: &str, mode: &str) -> Proc {
    let exe = tc.build("examples/client.c");
    let mut cmd = tc.command(&exe);
    cmd.args([name, mode]);
    Proc::spawn(&format!("C client ({mode})"), cmd)
}

/// Runs the C client's full scenario against the server under `name`.
fn c_client_basic(tc: &Toolchain, name: &str) {
    let mut client = c_client(tc, name, "basic");
    client.expect_line("ok all", T);
    client.wait_success(T);
}

/// Waits until `server` printed `want` at least `n` times.
fn wait_lines(server: &mut Proc, want: &str, n: usize) {
    let deadline = Instant::now() + T;
    while server.count_lines(want) < n {
        assert!(
            Instant::now() < deadline,
            "{} never printed {want:?} {n} times",
            server.name
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Two C clients blocked (in a request never answered, in a dispatch wait) see the
/// server's `kill -9` as CS_ERR_LIBRARY at once, and exit cleanly.
fn blocked_c_clients_survive(tc: &Toolchain, name: &str, server: &mut Proc) {
    let mut hang = c_client(tc, name, "hang");
    let mut wait = c_client(tc, name, "dispatch");
    hang.expect_line("waiting", T);
    wait.expect_line("waiting", T);
    std::thread::sleep(Duration::from_millis(100)); // both blocked by now
    server.kill9();
    let killed = Instant::now();
    hang.expect_line("result 2", T);
    wait.expect_line("result 2", T);
    assert!(
        killed.elapsed() < Duration::from_secs(5),
        "the clients noticed late"
    );
    hang.wait_success(T);
    wait.wait_success(T);
}

#[test]
fn c_client_against_c_server() {
    let Some(tc) = toolchain() else { return };
    let name = unique_name("cc");
    let mut server = c_server(tc, &name);
    c_client_basic(tc, &name);
    // A second daemon under the same name is refused with CS_ERR_EXIST (14).
    let mut second = tc.command(&tc.build("examples/server.c"));
    second.arg(&name);
    let out = second.output().expect("second server");
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("coroipcs_ipc_init: 14"));
    // A clean stop: every fd handed back, no leak (the leak check runs at exit).
    server.terminate();
    server.wait_success(T);
}

/// A client that connects and never sends its handshake is dropped after the
/// handshake timeout (5 s), although nothing else wakes the daemon's loop: the
/// library's own timer fd does.
#[test]
fn c_server_drops_a_client_that_never_finishes_its_handshake() {
    use std::io::Read;
    use std::os::linux::net::SocketAddrExt;
    use std::os::unix::net::{SocketAddr, UnixStream};

    let Some(tc) = toolchain() else { return };
    let name = unique_name("hs");
    let mut server = c_server(tc, &name);
    let addr = SocketAddr::from_abstract_name(name.as_bytes()).expect("address");
    let mut silent = UnixStream::connect_addr(&addr).expect("connect");
    silent
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let start = Instant::now();
    let r = silent.read(&mut [0u8; 64]);
    let dropped = matches!(&r, Ok(0))
        || matches!(&r, Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset);
    assert!(dropped, "the silent client was not dropped: {r:?}");
    let took = start.elapsed();
    assert!(
        took > Duration::from_secs(3) && took < Duration::from_secs(15),
        "after {took:?}"
    );
    c_client_basic(tc, &name);
    server.terminate();
    server.wait_success(T);
}

#[test]
fn c_server_survives_kill_9_of_a_c_client() {
    let Some(tc) = toolchain() else { return };
    let name = unique_name("kc");
    let mut server = c_server(tc, &name);
    let mut victim = c_client(tc, &name, "sleep");
    victim.expect_line("connected", T);
    victim.kill9();
    wait_lines(&mut server, "exit", 1);
    c_client_basic(tc, &name);
    server.terminate();
    server.wait_success(T);
}

#[test]
fn c_clients_survive_kill_9_of_the_c_server() {
    let Some(tc) = toolchain() else { return };
    let name = unique_name("ks");
    let mut server = c_server(tc, &name);
    blocked_c_clients_survive(tc, &name, &mut server);
}

#[test]
fn c_client_against_rust_server() {
    let Some(tc) = toolchain() else { return };
    let name = unique_name("cr");
    let _server = rust_server(&name);
    c_client_basic(tc, &name);
    let mut bad = c_client(tc, &name, "badheader");
    bad.expect_line("ok badheader", T);
    bad.wait_success(T);
}

#[test]
fn rust_server_survives_kill_9_of_a_c_client() {
    let Some(tc) = toolchain() else { return };
    let name = unique_name("krc");
    let mut server = rust_server(&name);
    let mut victim = c_client(tc, &name, "sleep");
    victim.expect_line("connected", T);
    victim.kill9();
    wait_lines(&mut server, "exit", 1);
    c_client_basic(tc, &name);
}

#[test]
fn c_clients_survive_kill_9_of_the_rust_server() {
    let Some(tc) = toolchain() else { return };
    let name = unique_name("krs");
    let mut server = rust_server(&name);
    blocked_c_clients_survive(tc, &name, &mut server);
}

fn connect(name: &str, service: u16) -> Result<Client, ConnectError> {
    Client::connect(
        &SocketName::abstract_name(name),
        service,
        &ConnectOptions::default(),
    )
}

/// Request, dispatch with flow control, private data, admission control and header
/// checks, from a Rust client to the C server.
fn rust_client_scenario(name: &str) {
    assert!(matches!(
        connect(name, 9),
        Err(ConnectError::NoSuchService(9))
    ));
    let mut c = connect(name, SVC_ECHO).expect("connect");
    let r = c
        .request(ECHO_ECHO, &c_request(ECHO_ECHO, b"from rust"))
        .expect("echo");
    assert_eq!(c_payload(&r.data), b"from rust");
    // A header that lies, or names another command: refused by the C side's checks.
    let mut lying = c_request(ECHO_ECHO, b"abc");
    lying[0] = 99;
    assert!(matches!(
        c.request(ECHO_ECHO, &lying),
        Err(ClientError::BadRequest)
    ));
    let other = c_request(ECHO_DISPATCH, &0u32.to_ne_bytes());
    assert!(matches!(
        c.request(ECHO_ECHO, &other),
        Err(ClientError::BadRequest)
    ));
    assert!(matches!(
        c.request(ECHO_ECHO, b"xy"),
        Err(ClientError::BadRequest)
    ));
    assert!(matches!(
        c.request(77, &c_request(77, b"")),
        Err(ClientError::UnknownCommand { command: 77 })
    ));
    // Dispatch until the server is refused; flow control on, drained in order, off.
    let r = c
        .request(
            ECHO_DISPATCH,
            &c_request(ECHO_DISPATCH, &1_000_000u32.to_ne_bytes()),
        )
        .expect("dispatch");
    let sent = value(c_payload(&r.data));
    assert!(sent > 100 && sent < 1_000_000, "sent {sent}");
    assert!(c.flow_control(), "flow control on");
    for i in 0..sent {
        let m = c.dispatch_recv(Some(T)).expect("recv").expect("a message");
        assert_eq!(value(c_payload(&m.to_vec())), i);
    }
    let deadline = Instant::now() + T;
    while c.flow_control() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(!c.flow_control(), "flow control off after draining");
    // Answered outside the handler, on the C loop's next turn.
    let r = c
        .request(ECHO_LATER, &c_request(ECHO_LATER, &[0; 4]))
        .expect("later");
    assert_eq!(value(c_payload(&r.data)), 42);
    // Pipelined past an unanswered request: the handler's answer goes to its own
    // request, not to the older one.
    let mut p = connect(name, SVC_ECHO).expect("connect");
    let hang = p
        .send_request(ECHO_HANG, &c_request(ECHO_HANG, &[0; 4]))
        .expect("hang");
    let echo = p
        .send_request(ECHO_ECHO, &c_request(ECHO_ECHO, b"second"))
        .expect("echo");
    let r = p.wait_response(echo, Some(T)).expect("the second answered");
    assert_eq!(c_payload(&r.data), b"second");
    assert!(matches!(
        p.wait_response(hang, Some(Duration::ZERO)),
        Err(ClientError::Timeout)
    ));
    // Private data per connection; sending_allowed.
    let mut a = connect(name, SVC_COUNTER).expect("counter a");
    let mut b = connect(name, SVC_COUNTER).expect("counter b");
    for i in 1..=3 {
        let r = a
            .request(0, &c_request(COUNTER_COUNT, &[0; 4]))
            .expect("count");
        assert_eq!(value(c_payload(&r.data)), i);
    }
    let r = b
        .request(0, &c_request(COUNTER_COUNT, &[0; 4]))
        .expect("count b");
    assert_eq!(value(c_payload(&r.data)), 1);
    assert!(matches!(
        a.request(COUNTER_BUSY, &c_request(COUNTER_BUSY, &[0; 4])),
        Err(ClientError::TryAgain)
    ));
}

#[test]
fn rust_client_against_c_server() {
    let Some(tc) = toolchain() else { return };
    let name = unique_name("rc");
    let mut server = c_server(tc, &name);
    rust_client_scenario(&name);
    server.terminate();
    server.wait_success(T);
}

#[test]
fn rust_client_survives_kill_9_of_the_c_server() {
    let Some(tc) = toolchain() else { return };
    let name = unique_name("rks");
    let mut server = c_server(tc, &name);
    let mut c = connect(&name, SVC_ECHO).expect("connect");
    let blocked = std::thread::spawn(move || {
        let r = c.request(ECHO_HANG, &c_request(ECHO_HANG, &[0; 4]));
        (r, Instant::now())
    });
    std::thread::sleep(Duration::from_millis(200));
    server.kill9();
    let killed = Instant::now();
    let (r, returned) = blocked.join().expect("client thread");
    assert!(matches!(r, Err(ClientError::Disconnected)), "{r:?}");
    assert!(returned.saturating_duration_since(killed) < Duration::from_secs(5));
}

#[test]
fn c_server_survives_kill_9_of_a_rust_client() {
    let Some(tc) = toolchain() else { return };
    let name = unique_name("krcl");
    let mut server = c_server(tc, &name);
    let mut victim = rust_child("client", &name);
    victim.expect_line("connected", T);
    victim.kill9();
    wait_lines(&mut server, "exit", 1);
    rust_client_scenario(&name);
    server.terminate();
    server.wait_success(T);
}

#[test]
fn misuse_of_every_function_is_an_error_not_a_crash() {
    let Some(tc) = toolchain() else { return };
    if !tc.leaks_checked {
        eprintln!("NOTE: running without the leak check (see above)");
    }
    let exe = tc.build("tests/c/abuse.c");
    let mut cmd = tc.command(&exe);
    cmd.arg(unique_name("abuse"));
    let mut p = Proc::spawn("abuse", cmd);
    p.expect_line("ok abuse", T);
    p.wait_success(T);
}

/// The pkg-config file: installed with the shared library and the headers into a
/// prefix, it builds README's smallest client, which then talks to a Rust server.
#[test]
fn smallest_client_builds_with_pkg_config_against_the_shared_library() {
    let Some(tc) = toolchain() else { return };
    let dir = support::manifest_dir();
    let readme = std::fs::read_to_string(dir.join("../README.md")).expect("README.md");
    let source = std::fs::read_to_string(dir.join("examples/smallest_client.c")).expect("source");
    assert!(
        readme.contains(&source),
        "README's C section must show examples/smallest_client.c verbatim"
    );

    let prefix = tc.out.join("prefix");
    let (lib, pc, inc) = (
        prefix.join("lib"),
        prefix.join("lib/pkgconfig"),
        prefix.join("include/coroipc"),
    );
    for d in [&pc, &inc] {
        std::fs::create_dir_all(d).expect("prefix dirs");
    }
    std::fs::copy(
        support::artifact("libcoroipc.so"),
        lib.join("libcoroipc.so"),
    )
    .expect("copy .so");
    for h in ["corotypes.h", "coroipcs.h", "coroipcc.h"] {
        std::fs::copy(dir.join("include").join(h), inc.join(h)).expect("copy header");
    }
    let template = std::fs::read_to_string(dir.join("coroipc.pc.in")).expect("coroipc.pc.in");
    let filled = template
        .replace("@PREFIX@", &prefix.to_string_lossy())
        .replace("@VERSION@", env!("CARGO_PKG_VERSION"));
    std::fs::write(pc.join("coroipc.pc"), filled).expect("write .pc");

    let flags = match Command::new("pkg-config")
        .args(["--cflags", "--libs", "coroipc"])
        .env("PKG_CONFIG_PATH", &pc)
        .output()
    {
        Ok(o) => {
            assert!(
                o.status.success(),
                "pkg-config: {}",
                String::from_utf8_lossy(&o.stderr)
            );
            String::from_utf8(o.stdout).expect("flags")
        }
        Err(_) => {
            eprintln!("NOTE: no pkg-config; using the .pc file's flags expanded by hand");
            format!("-I{} -L{} -lcoroipc", inc.display(), lib.display())
        }
    };
    let exe = tc.out.join("smallest_client");
    let built = Command::new(&tc.cc)
        .arg(dir.join("examples/smallest_client.c"))
        .args(flags.split_whitespace())
        .arg("-o")
        .arg(&exe)
        .output()
        .expect("cc");
    assert!(
        built.status.success(),
        "{}",
        String::from_utf8_lossy(&built.stderr)
    );

    let name = unique_name("small");
    let _server = rust_server(&name);
    let out = Command::new(&exe)
        .arg(&name)
        .env("LD_LIBRARY_PATH", &lib)
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hi\n");
}
