//! Unit tests of `socket.rs`.
use super::*;
use crate::os::connect::connect;
use crate::os::test_util::{pester_current_thread, signals_handled};
use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use std::time::Instant;

/// A name no other test (or test run) uses.
fn unique(tag: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    format!(
        "coroipc-test-{tag}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

fn accept(listener: &UnixListener) -> UnixStream {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match listener.accept() {
            Ok((s, _)) => return s,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(1));
            }
            Err(e) => panic!("accept: {e}"),
        }
    }
}

fn is_cloexec(fd: std::os::fd::BorrowedFd<'_>) -> bool {
    let fl = nix::fcntl::fcntl(fd.as_raw_fd(), nix::fcntl::FcntlArg::F_GETFD).expect("getfd");
    fl & libc::FD_CLOEXEC != 0
}

fn round_trip(name: &SocketName, listener: &UnixListener) {
    let mut client = connect(name, Some(Duration::from_secs(5))).expect("connect");
    let mut server = accept(listener);
    client.write_all(b"ping").expect("write");
    let mut buf = [0u8; 4];
    server.read_exact(&mut buf).expect("read");
    assert_eq!(&buf, b"ping");
    server.write_all(b"pong").expect("write");
    client.read_exact(&mut buf).expect("read");
    assert_eq!(&buf, b"pong");
    assert!(is_cloexec(client.as_fd()));
    assert_eq!(client.read_timeout().expect("timeout"), None);
    assert_eq!(client.write_timeout().expect("timeout"), None);
}

#[test]
fn abstract_round_trip() {
    let raw = unique("abs");
    let name = SocketName::abstract_name(raw.clone());
    let listener = listen(&name, 16).expect("listen");
    assert!(is_cloexec(listener.as_fd()));
    // Non-blocking: nothing pending means WouldBlock, not a hang.
    let e = listener.accept().expect_err("nothing pending");
    assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
    round_trip(&name, &listener);
    // The name is taken while the listener lives, and free once it is dropped.
    let e = listen(&name, 16).expect_err("in use");
    assert_eq!(e.kind(), io::ErrorKind::AddrInUse);
    drop(listener);
    let e = connect(&name, None).expect_err("gone");
    assert_eq!(e.kind(), io::ErrorKind::ConnectionRefused);
    let _again = listen(&name, 16).expect("name freed");
    assert_eq!(name.to_string(), format!("@{raw}"));
}

#[test]
fn bad_names_are_invalid_input() {
    for name in [
        SocketName::abstract_name(""),
        SocketName::abstract_name("x".repeat(200)),
        SocketName::path(format!("/tmp/{}", "y".repeat(200)), 0o600),
    ] {
        let e = listen(&name, 1).expect_err("listen");
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{name:?}");
        let e = connect(&name, None).expect_err("connect");
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{name:?}");
    }
    let e = listen(&SocketName::abstract_name(unique("neg")), -5).expect_err("backlog");
    assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
}

struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        let dir = std::env::temp_dir().join(unique("dir"));
        fs::create_dir(&dir).expect("mkdir");
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

#[test]
fn path_listen_sets_mode_and_round_trips() {
    let dir = TempDir::new();
    let path = dir.0.join("s");
    for mode in [0o600, 0o660, 0o666] {
        let name = SocketName::path(&path, mode);
        let listener = listen(&name, 4).expect("listen");
        let meta = fs::symlink_metadata(&path).expect("stat");
        assert!(meta.file_type().is_socket());
        assert_eq!(meta.permissions().mode() & 0o7777, mode);
        round_trip(&name, &listener);
        assert_eq!(name.to_string(), path.display().to_string());
        // Dropping the listener leaves a stale file, which the next round
        // (another mode) must replace.
    }
}

#[test]
fn path_refuses_live_server_and_non_socket_files() {
    let dir = TempDir::new();
    let path = dir.0.join("s");
    let name = SocketName::path(&path, 0o600);
    let live = listen(&name, 4).expect("listen");
    let e = listen(&name, 4).expect_err("live server");
    assert_eq!(e.kind(), io::ErrorKind::AddrInUse);
    // The live server still works, its file still there.
    let probe = accept(&live); // the probe connection from the refused listen
    drop(probe);
    round_trip(&name, &live);

    let file = dir.0.join("f");
    fs::write(&file, b"precious").expect("write");
    let e = listen(&SocketName::path(&file, 0o600), 4).expect_err("regular file");
    assert_eq!(e.kind(), io::ErrorKind::AlreadyExists);
    assert_eq!(fs::read(&file).expect("read"), b"precious");

    let e = connect(&SocketName::path(dir.0.join("none"), 0o600), None).expect_err("no file");
    assert_eq!(e.kind(), io::ErrorKind::NotFound);
}

/// Fills the backlog of a listener that never accepts; returns the connections
/// that filled it (keep them alive).
fn fill_backlog(name: &SocketName) -> Vec<OwnedFd> {
    let addr = name.addr().expect("addr");
    let mut held = Vec::new();
    loop {
        let s = new_socket(true).expect("socket");
        match nix_connect(s.as_raw_fd(), &addr) {
            Ok(()) => held.push(s),
            Err(Errno::EAGAIN) => return held,
            Err(e) => panic!("filling backlog: {e}"),
        }
        assert!(held.len() < 10_000, "backlog never filled");
    }
}

#[test]
fn connect_times_out_on_a_full_backlog() {
    let name = SocketName::abstract_name(unique("full"));
    let _listener = listen(&name, 0).expect("listen");
    let _held = fill_backlog(&name);
    let start = Instant::now();
    let e = connect(&name, Some(Duration::from_millis(200))).expect_err("full");
    let took = start.elapsed();
    assert_eq!(e.kind(), io::ErrorKind::TimedOut, "{e}");
    assert!(took >= Duration::from_millis(200), "early: {took:?}");
    assert!(took < Duration::from_secs(2), "late: {took:?}");
}

#[test]
fn connect_waits_for_room_and_survives_signals() {
    let name = SocketName::abstract_name(unique("room"));
    let listener = listen(&name, 0).expect("listen");
    let held = fill_backlog(&name);
    assert!(!held.is_empty());
    // Make room after 250 ms, while signals hit the waiting connect.
    let acceptor = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(250));
        let first = accept(&listener);
        (listener, first)
    });
    let before = signals_handled();
    let pester = pester_current_thread(5, Duration::from_millis(30));
    let start = Instant::now();
    let r = connect(&name, Some(Duration::from_secs(5)));
    let took = start.elapsed();
    let during = signals_handled() - before;
    drop(pester);
    let (_listener, _first) = acceptor.join().expect("acceptor");
    r.expect("connected once there was room");
    assert!(took >= Duration::from_millis(200), "{took:?}");
    assert!(took < Duration::from_secs(4), "{took:?}");
    assert!(during >= 3, "only {during} signals hit the connect");
}
