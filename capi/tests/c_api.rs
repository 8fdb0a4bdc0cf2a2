//! The C API (corosync 1.4's coroipcc.h / coroipcs.h) end to end: the C example
//! programs (`examples/server.c`, `examples/client.c`) and the misuse program
//! (`tests/c/abuse.c`), compiled with the system C compiler against `libcoroipc.a`
//! (with ASan/UBSan and the leak check when available), run against each other and
//! against the Rust library, with `kill -9` of each side. Without a C compiler every
//! test prints SKIPPED and passes.

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

/// The C server, started with `struct coroipcs_init_state_v2` (as corosync's daemon).
fn c_server(tc: &Toolchain, name: &str) -> Proc {
    c_server_with(tc, name, &[])
}

/// The C server with extra arguments (`v1`: the v1 `struct coroipcs_init_state`).
fn c_server_with(tc: &Toolchain, name: &str, args: &[&str]) -> Proc {
    let exe = tc.build("examples/server.c");
    let mut cmd = tc.command(&exe);
    cmd.arg(name).args(args);
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
    // A second daemon under the same name is refused: coroipcs_ipc_init returns void,
    // as corosync's, and reports the failure through the daemon's fatal_error, which
    // exits 1 (the old API returned CS_ERR_EXIST, 14).
    for args in [&[][..], &["v1"][..]] {
        let mut second = tc.command(&tc.build("examples/server.c"));
        second.arg(&name).args(args);
        let out = second.output().expect("second server");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(
            stderr.contains("server: fatal: coroipcs_ipc_init"),
            "{args:?}: {stderr}"
        );
        assert!(
            !String::from_utf8_lossy(&out.stdout).contains("ready"),
            "{args:?}"
        );
    }
    // A clean stop: every fd handed back, every statistics handle destroyed, no leak
    // (the leak check runs at exit).
    server.terminate();
    server.wait_success(T);
}

/// The same with the daemon started through the v1 `struct coroipcs_init_state`.
#[test]
fn c_client_against_c_server_v1() {
    let Some(tc) = toolchain() else { return };
    let name = unique_name("cc1");
    let mut server = c_server_with(tc, &name, &["v1"]);
    c_client_basic(tc, &name);
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
    // Every id up to COROIPCS_SERVICE_MAX is a service the library asks the daemon
    // about at connect: an id service_available denies is refused with
    // CS_ERR_NOT_EXIST (12) as the refusal code (the old library did not register
    // it: NoSuchService). Above COROIPCS_SERVICE_MAX (63) there is no service.
    let r = connect(name, 9);
    assert!(
        matches!(r, Err(ConnectError::Refused(CS_ERR_NOT_EXIST))),
        "{r:?}"
    );
    let r = connect(name, 64);
    assert!(matches!(r, Err(ConnectError::NoSuchService(64))), "{r:?}");
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
    let other = c_value_request(ECHO_DISPATCH, 0);
    assert!(matches!(
        c.request(ECHO_ECHO, &other),
        Err(ClientError::BadRequest)
    ));
    assert!(matches!(
        c.request(ECHO_ECHO, b"xy"),
        Err(ClientError::BadRequest)
    ));
    // The old 12-byte header: shorter than a coroipc_request_header_t.
    let mut old = 12i32.to_ne_bytes().to_vec();
    old.extend_from_slice(&i32::from(ECHO_ECHO).to_ne_bytes());
    old.extend_from_slice(&[0; 4]);
    assert!(matches!(
        c.request(ECHO_ECHO, &old),
        Err(ClientError::BadRequest)
    ));
    // A command without a handler: coroipcs answers a bare header carrying
    // CS_ERR_INVALID_PARAM, as corosync's (the old library said "unknown command").
    let r = c.request(77, &c_request(77, b"")).expect("command 77");
    assert_eq!(r.status, 0);
    assert_eq!(r.data.len(), RESPONSE_HEADER);
    assert_eq!(c_header(&r.data), (0, CS_ERR_INVALID_PARAM));
    // Dispatch until the server is refused; flow control on, drained in order, off.
    let r = c
        .request(ECHO_DISPATCH, &c_value_request(ECHO_DISPATCH, 1_000_000))
        .expect("dispatch");
    let sent = value(c_payload(&r.data));
    assert!(sent > 100 && sent < 1_000_000, "sent {sent}");
    assert!(c.flow_control(), "flow control on");
    for i in 0..sent {
        let m = c.dispatch_recv(Some(T)).expect("recv").expect("a message");
        let m = m.to_vec();
        assert_eq!(m.len(), RESPONSE_HEADER + 8, "a struct res_value");
        assert_eq!(c_header(&m).0, i32::from(ECHO_DISPATCH));
        assert_eq!(value(c_payload(&m)), i);
    }
    let deadline = Instant::now() + T;
    while c.flow_control() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(!c.flow_control(), "flow control off after draining");
    // Answered outside the handler, on the C loop's next turn.
    let r = c
        .request(ECHO_LATER, &c_value_request(ECHO_LATER, 0))
        .expect("later");
    assert_eq!(value(c_payload(&r.data)), 42);
    // Pipelined past an unanswered request: the handler's answer goes to its own
    // request, not to the older one.
    let mut p = connect(name, SVC_ECHO).expect("connect");
    let hang = p
        .send_request(ECHO_HANG, &c_value_request(ECHO_HANG, 0))
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
            .request(0, &c_value_request(COUNTER_COUNT, 0))
            .expect("count");
        assert_eq!(value(c_payload(&r.data)), i);
    }
    let r = b
        .request(0, &c_value_request(COUNTER_COUNT, 0))
        .expect("count b");
    assert_eq!(value(c_payload(&r.data)), 1);
    // Refused by sending_allowed: coroipcs answers a bare header carrying
    // CS_ERR_TRY_AGAIN, as corosync's (coroipcc turns it into CS_ERR_TRY_AGAIN; the
    // old library answered the ipc crate's "try again" status).
    let r = a
        .request(COUNTER_BUSY, &c_value_request(COUNTER_BUSY, 0))
        .expect("busy");
    assert_eq!(r.status, 0);
    assert_eq!(r.data.len(), RESPONSE_HEADER);
    assert_eq!(c_header(&r.data), (0, CS_ERR_TRY_AGAIN));
    let r = a
        .request(0, &c_value_request(COUNTER_COUNT, 0))
        .expect("count after the refusal");
    assert_eq!(value(c_payload(&r.data)), 4);
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
        let r = c.request(ECHO_HANG, &c_value_request(ECHO_HANG, 0));
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

/// `coroipcc_service_disconnect` while another thread of the client waits on the same
/// handle: in `coroipcc_dispatch_get` (it returns CS_ERR_BAD_HANDLE when its wait
/// ends), and in a request the server never answers (corosync's disconnect shut the
/// socket down, which ended the wait with CS_ERR_LIBRARY). The disconnect itself
/// returns at once.
#[test]
fn disconnect_while_another_thread_waits() {
    let Some(tc) = toolchain() else { return };
    let exe = tc.build("tests/c/abuse.c");
    let mut cmd = tc.command(&exe);
    cmd.args([unique_name("waiting").as_str(), "waiting"]);
    let mut p = Proc::spawn("abuse waiting", cmd);
    p.expect_line("ok waiting", T);
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

    // The headers go where corosync's would be found: include/coroipc/corosync/ for
    // coroipcc.h, coroipcs.h, coroipc_types.h; include/coroipc/base/corosync/ for
    // corotypes.h and hdb.h (a program built inside a corosync tree uses corosync's).
    let prefix = tc.out.join("prefix");
    let (lib, pc, inc) = (
        prefix.join("lib"),
        prefix.join("lib/pkgconfig"),
        prefix.join("include/coroipc"),
    );
    for d in [&pc, &inc.join("corosync"), &inc.join("base/corosync")] {
        std::fs::create_dir_all(d).expect("prefix dirs");
    }
    std::fs::copy(
        support::artifact("libcoroipc.so"),
        lib.join("libcoroipc.so"),
    )
    .expect("copy .so");
    for h in [
        "corosync/coroipcc.h",
        "corosync/coroipcs.h",
        "corosync/coroipc_types.h",
        "base/corosync/corotypes.h",
        "base/corosync/hdb.h",
    ] {
        std::fs::copy(dir.join("include").join(h), inc.join(h)).expect("copy header");
    }
    // Nothing else in include/ (a header added there must be installed too).
    let mut shipped = Vec::new();
    let mut dirs = vec![dir.join("include")];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).expect("include/") {
            let p = e.expect("entry").path();
            if p.is_dir() {
                dirs.push(p);
            } else {
                shipped.push(p.strip_prefix(dir.join("include")).unwrap().to_owned());
            }
        }
    }
    shipped.sort();
    assert_eq!(
        shipped,
        [
            "base/corosync/corotypes.h",
            "base/corosync/hdb.h",
            "corosync/coroipc_types.h",
            "corosync/coroipcc.h",
            "corosync/coroipcs.h",
        ]
        .map(std::path::PathBuf::from),
        "the headers in capi/include"
    );
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
            format!(
                "-I{} -I{}/base -L{} -lcoroipc",
                inc.display(),
                inc.display(),
                lib.display()
            )
        }
    };
    let exe = tc.out.join("smallest_client");
    let built = Command::new(&tc.cc)
        .args(["-Wall", "-Wextra", "-Werror"])
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
