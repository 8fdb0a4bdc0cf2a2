//! Unit tests of `wait.rs`.
use super::*;
use crate::os::test_util::{pester_current_thread, signals_handled};
use crate::os::Doorbell;
use std::io::Write;
use std::os::unix::net::UnixStream;
use std::time::Instant;

const MS: Duration = Duration::from_millis(1);

#[test]
fn wakes_on_doorbell_rung_from_another_thread() {
    let bell = std::sync::Arc::new(Doorbell::new().expect("bell"));
    let (sock, _peer) = UnixStream::pair().expect("pair");
    let ringer = {
        let bell = bell.clone();
        std::thread::spawn(move || {
            std::thread::sleep(50 * MS);
            bell.ring().expect("ring");
        })
    };
    let start = Instant::now();
    let r =
        wait_readable(&[sock.as_fd(), bell.as_fd()], Some(Duration::from_secs(10))).expect("wait");
    let took = start.elapsed();
    ringer.join().expect("ringer");
    assert_eq!(
        r,
        Readiness::Ready(vec![
            FdReadiness::default(),
            FdReadiness {
                readable: true,
                hangup: false
            }
        ])
    );
    assert!(took >= 40 * MS && took < Duration::from_secs(5), "{took:?}");
    assert!(bell.drain().expect("drain"));
}

#[test]
fn already_rung_doorbell_returns_at_once() {
    let bell = Doorbell::new().expect("bell");
    bell.ring().expect("ring");
    let r = wait_readable(&[bell.as_fd()], None).expect("wait");
    assert!(r.readable(0) && !r.hangup(0));
    assert!(!r.is_timeout());
}

#[test]
fn reports_hangup_when_peer_is_dropped() {
    let bell = Doorbell::new().expect("bell");
    let (sock, peer) = UnixStream::pair().expect("pair");
    let dropper = std::thread::spawn(move || {
        std::thread::sleep(50 * MS);
        drop(peer);
    });
    // No timeout: only the hang-up can end this wait.
    let r = wait_readable(&[bell.as_fd(), sock.as_fd()], None).expect("wait");
    dropper.join().expect("dropper");
    assert!(!r.readable(0) && !r.hangup(0), "{r:?}");
    assert!(r.hangup(1), "{r:?}");
}

#[test]
fn hangup_with_unread_data_is_readable_and_hung_up() {
    let (sock, mut peer) = UnixStream::pair().expect("pair");
    peer.write_all(b"bye").expect("write");
    drop(peer);
    let r = wait_readable(&[sock.as_fd()], Some(Duration::ZERO)).expect("wait");
    assert_eq!(
        r.get(0),
        FdReadiness {
            readable: true,
            hangup: true
        }
    );
}

#[test]
fn peer_shutting_down_writes_is_a_hangup() {
    let (sock, peer) = UnixStream::pair().expect("pair");
    peer.shutdown(std::net::Shutdown::Write).expect("shutdown");
    // The peer is alive and could still read: only POLLRDHUP reports this.
    let r = wait_readable(&[sock.as_fd()], Some(Duration::ZERO)).expect("wait");
    assert!(r.hangup(0), "{r:?}");
    assert!(r.readable(0), "end of stream is readable: {r:?}");
}

#[test]
fn times_out() {
    let bell = Doorbell::new().expect("bell");
    let (sock, _peer) = UnixStream::pair().expect("pair");
    let start = Instant::now();
    let r = wait_readable(&[bell.as_fd(), sock.as_fd()], Some(120 * MS)).expect("wait");
    let took = start.elapsed();
    assert!(r.is_timeout(), "{r:?}");
    assert!(took >= 120 * MS, "returned early: {took:?}");
    assert!(took < 2000 * MS, "returned late: {took:?}");

    let start = Instant::now();
    let r = wait_readable(&[bell.as_fd()], Some(Duration::ZERO)).expect("poll");
    assert!(r.is_timeout());
    assert!(start.elapsed() < 500 * MS);
    assert_eq!(r.get(0), FdReadiness::default());
}

#[test]
fn no_fds_needs_a_timeout() {
    let err = wait_readable(&[], None).expect_err("forever");
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    let start = Instant::now();
    assert!(wait_readable(&[], Some(20 * MS))
        .expect("sleep")
        .is_timeout());
    assert!(start.elapsed() >= 20 * MS);
}

#[test]
fn signals_neither_fail_nor_shorten_nor_stretch_the_wait() {
    let bell = Doorbell::new().expect("bell");
    let before = signals_handled();
    // A signal every 40 ms (no SA_RESTART) for 800 ms, across a 300 ms wait: a
    // wait that restarted with its full timeout would last past 1000 ms.
    let pester = pester_current_thread(20, 40 * MS);
    let start = Instant::now();
    let r = wait_readable(&[bell.as_fd()], Some(300 * MS));
    let took = start.elapsed();
    let during = signals_handled() - before;
    drop(pester);
    let r = r.expect("EINTR must not surface");
    assert!(r.is_timeout(), "{r:?}");
    assert!(took >= 300 * MS, "returned early: {took:?}");
    assert!(took < 1000 * MS, "deadline not kept: {took:?}");
    // About 7 land in the wait; standard signals can coalesce under load.
    assert!(during >= 4, "only {during} signals hit the wait");
}

#[test]
fn epoll_reports_tokens_readiness_and_hangup() {
    let ep = Epoll::new().expect("epoll");
    let bell = Doorbell::new().expect("bell");
    let (sock, peer) = UnixStream::pair().expect("pair");
    ep.add(bell.as_fd(), 7, Interest::READABLE)
        .expect("add bell");
    ep.add(sock.as_fd(), 9, Interest::READABLE)
        .expect("add sock");

    let mut events = Vec::new();
    assert_eq!(ep.wait(&mut events, Some(Duration::ZERO)).expect("wait"), 0);
    assert!(events.is_empty());

    bell.ring().expect("ring");
    assert_eq!(
        ep.wait(&mut events, Some(Duration::from_secs(5)))
            .expect("wait"),
        1
    );
    assert_eq!(
        events,
        vec![Event {
            token: 7,
            readable: true,
            writable: false,
            hangup: false
        }]
    );
    // Level-triggered: still there until drained.
    assert_eq!(ep.wait(&mut events, Some(Duration::ZERO)).expect("wait"), 1);
    assert!(bell.drain().expect("drain"));
    assert_eq!(ep.wait(&mut events, Some(Duration::ZERO)).expect("wait"), 0);

    drop(peer);
    assert_eq!(ep.wait(&mut events, None).expect("wait"), 1);
    assert_eq!(events[0].token, 9);
    assert!(events[0].hangup, "{events:?}");

    ep.delete(sock.as_fd()).expect("delete");
    assert_eq!(ep.wait(&mut events, Some(Duration::ZERO)).expect("wait"), 0);
    // Deleting twice is an error (ENOENT), not a panic.
    assert!(ep.delete(sock.as_fd()).is_err());
}

#[test]
fn epoll_edge_triggered_doorbell_needs_no_drain() {
    let ep = Epoll::new().expect("epoll");
    let bell = Doorbell::new().expect("bell");
    ep.add_edge_triggered(bell.as_fd(), 3, Interest::READABLE)
        .expect("add");
    let mut events = Vec::new();
    bell.ring().expect("ring");
    assert_eq!(ep.wait(&mut events, Some(Duration::ZERO)).expect("wait"), 1);
    assert_eq!(ep.wait(&mut events, Some(Duration::ZERO)).expect("wait"), 0);
    bell.ring().expect("ring again");
    assert_eq!(ep.wait(&mut events, Some(Duration::ZERO)).expect("wait"), 1);
    assert_eq!(events[0].token, 3);
}

#[test]
fn epoll_wait_times_out_despite_signals() {
    let ep = Epoll::new().expect("epoll");
    let bell = Doorbell::new().expect("bell");
    ep.add(bell.as_fd(), 1, Interest::READABLE).expect("add");
    let before = signals_handled();
    let pester = pester_current_thread(20, 40 * MS);
    let mut events = Vec::new();
    let start = Instant::now();
    let n = ep.wait(&mut events, Some(300 * MS));
    let took = start.elapsed();
    let during = signals_handled() - before;
    drop(pester);
    assert_eq!(n.expect("EINTR must not surface"), 0);
    assert!(took >= 300 * MS, "returned early: {took:?}");
    assert!(took < 1000 * MS, "deadline not kept: {took:?}");
    assert!(during >= 4, "only {during} signals hit the wait");
}

#[test]
fn millis_round_up() {
    assert_eq!(millis_ceil(Duration::ZERO), EpollTimeout::ZERO);
    assert_eq!(
        millis_ceil(Duration::from_nanos(1)),
        EpollTimeout::from(1u8)
    );
    assert_eq!(
        millis_ceil(Duration::from_micros(1500)),
        EpollTimeout::from(2u8)
    );
    assert_eq!(
        millis_ceil(Duration::from_secs(u64::MAX)),
        EpollTimeout::MAX
    );
}
