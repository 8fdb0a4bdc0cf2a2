//! A hostile server against the client (threat model, SPEC.md §3): a server built by
//! hand from the wire format (`coroipc::protocol`, `coroipc::raw`), which grants,
//! rings and shuts down what an honest server never would. Each test asserts what the
//! client promises: a clear error, on time, and for good.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use coroipc::protocol::{
    ConnectReply, ConnectRequest, RegionLayout, CONNECT_REQUEST_LEN, DISPATCH, REQUEST, RESPONSE,
};
use coroipc::raw::{self, PeerBell, SharedMemory};
use coroipc::{Client, ClientError, ConnectError, ConnectOptions, ProtocolError, SocketName};
use coroipc_ring::{Consumer, MpscProducer, RawRegion};

static NAMES: AtomicU64 = AtomicU64::new(0);

fn socket_name() -> SocketName {
    SocketName::abstract_name(format!(
        "coroipc-hostile-server-{}-{}",
        std::process::id(),
        NAMES.fetch_add(1, Ordering::Relaxed)
    ))
}

/// One connection of the hand-built server: the socket, a region whose rings are
/// initialised as an honest server's, and the doorbell pair (both ends).
struct RawSession {
    _stream: UnixStream,
    _rings: (Consumer, MpscProducer, MpscProducer),
    _shm: SharedMemory,
    bell: PeerBell,
}

/// A region of `layout` with its three rings created.
fn region(
    layout: &RegionLayout,
) -> (
    OwnedFd,
    SharedMemory,
    (Consumer, MpscProducer, MpscProducer),
) {
    let mut shm = SharedMemory::create("hostile", layout.len).unwrap();
    let memfd = shm.take_fd().unwrap();
    let base = std::ptr::NonNull::new(shm.as_ptr()).unwrap();
    // SAFETY: each ring's range inside our own mapping, which the session keeps for as
    // long as the ring handles.
    let ring = |i: usize| unsafe {
        RawRegion::new(base.add(layout.offsets[i]), layout.rings[i].region_size()).unwrap()
    };
    // SAFETY: fresh memory; one handle per ring on this side.
    let rings = unsafe {
        (
            Consumer::create(ring(REQUEST), &layout.rings[REQUEST]).unwrap(),
            MpscProducer::create(ring(RESPONSE), &layout.rings[RESPONSE]).unwrap(),
            MpscProducer::create(ring(DISPATCH), &layout.rings[DISPATCH]).unwrap(),
        )
    };
    (memfd, shm, rings)
}

/// Listens under a fresh name and answers one handshake with rings of `grants`
/// (whatever was asked), announcing the region those grants lay out; the session
/// comes back through the handle once the reply is sent.
fn serve_one(grants: [u32; 3]) -> (SocketName, JoinHandle<RawSession>) {
    let name = socket_name();
    let listener = raw::listen(&name, 4).unwrap();
    // The listener is non-blocking: an accept that came before the client's connect
    // failed with `WouldBlock` (a race the tests lost under load).
    listener.set_nonblocking(false).unwrap();
    let server = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let mut request = [0u8; CONNECT_REQUEST_LEN];
        stream.read_exact(&mut request).unwrap();
        ConnectRequest::decode(&request).unwrap();
        let layout = RegionLayout::new(grants).unwrap();
        let (memfd, shm, rings) = region(&layout);
        let bell = PeerBell::new().unwrap();
        let reply = ConnectReply {
            status: 0,
            request_ring: grants[0],
            response_ring: grants[1],
            dispatch_ring: grants[2],
            region_len: layout.len as u64,
            connection_id: 1,
        };
        let [server_end, client_end] = bell.ends();
        raw::send_with_fds(
            stream.as_fd(),
            &reply.encode(),
            &[memfd.as_fd(), server_end, client_end],
        )
        .unwrap();
        stream.flush().unwrap();
        RawSession {
            _stream: stream,
            _rings: rings,
            _shm: shm,
            bell,
        }
    });
    (name, server)
}

fn options(ring: u32) -> ConnectOptions {
    ConnectOptions {
        request_ring: ring,
        response_ring: ring,
        dispatch_ring: ring,
        ..ConnectOptions::default()
    }
}

#[test]
fn a_grant_above_the_request_and_the_ceiling_is_refused() {
    // Asked for 4 KiB, given 1 GiB of dispatch ring: half of it per message the client
    // would copy out.
    let (name, server) = serve_one([4096, 4096, 1 << 30]);
    let err = Client::connect(&name, 1, &options(4096)).unwrap_err();
    match err {
        ConnectError::Protocol(ProtocolError::Grant {
            ring,
            granted,
            ceiling,
        }) => {
            assert_eq!(ring, coroipc::RingKind::Dispatch);
            assert_eq!(granted, 1 << 30);
            assert_eq!(ceiling, ConnectOptions::default().max_ring);
        }
        other => panic!("expected a refused grant, got {other:?}"),
    }
    drop(server.join().unwrap());

    // Rounded up above the request (a server's `min_ring_size`) but within the
    // ceiling: accepted.
    let (name, server) = serve_one([1 << 16; 3]);
    Client::connect(&name, 1, &options(64)).expect("a grant within the ceiling");
    drop(server.join().unwrap());

    // Asking for a large ring raises the ceiling for it, rounded up to a power of
    // two as a server rounds it: 300 MiB asked, 512 MiB granted.
    let (name, server) = serve_one([1 << 29, 4096, 4096]);
    let mut asked = options(4096);
    asked.request_ring = 300 << 20;
    Client::connect(&name, 1, &asked).expect("granted what was asked, rounded");
    drop(server.join().unwrap());
}

#[test]
fn a_doorbell_shut_down_by_the_server_disconnects_for_good() {
    let (name, server) = serve_one([4096; 3]);
    let mut client = Client::connect(&name, 1, &options(4096)).unwrap();
    let session = server.join().unwrap();
    // The server shuts its end of the pair down and keeps its socket open: the
    // client's end reads end-of-file, and no hang-up comes on the socket.
    let [server_end, _] = session.bell.ends();
    nix::sys::socket::shutdown(
        std::os::fd::AsRawFd::as_raw_fd(&server_end),
        nix::sys::socket::Shutdown::Both,
    )
    .unwrap();
    let first = client
        .dispatch_recv(Some(Duration::ZERO))
        .map(|m| m.is_some());
    assert!(
        matches!(first, Err(ClientError::Disconnected)),
        "the look that finds the doorbell shut: {first:?}"
    );
    // Every later call says the same, a send too (nothing more goes into the ring).
    for _ in 0..3 {
        let again = client
            .dispatch_recv(Some(Duration::ZERO))
            .map(|m| m.is_some());
        assert!(matches!(again, Err(ClientError::Disconnected)), "{again:?}");
    }
    let sent = client.send_request(1, b"after the end");
    assert!(matches!(sent, Err(ClientError::Disconnected)), "{sent:?}");
    drop(session);
}

/// CPU time the calling thread has used.
fn thread_cpu() -> Duration {
    let t = nix::time::clock_gettime(nix::time::ClockId::CLOCK_THREAD_CPUTIME_ID).unwrap();
    Duration::from(t)
}

#[test]
fn a_doorbell_trickle_does_not_keep_a_waiting_client_spinning() {
    let (name, server) = serve_one([4096; 3]);
    // A spin budget longer than the trickle's period: a wait that spun anew at every
    // ring would spin the whole time.
    let spinning = ConnectOptions {
        wait: coroipc::WaitMode::SpinThenBlock {
            spin: Duration::from_micros(500),
        },
        ..options(4096)
    };
    let mut client = Client::connect(&name, 1, &spinning).unwrap();
    let session = server.join().unwrap();
    let id = client.send_request(1, b"never answered").unwrap();
    // The server rings the client's doorbell every ~200 µs and publishes nothing.
    let stop = Arc::new(AtomicBool::new(false));
    let (started, ready) = mpsc::channel();
    let ringer = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            started.send(()).unwrap();
            let mut rings = 0u64;
            while !stop.load(Ordering::Relaxed) {
                session.bell.ring_peer().unwrap();
                rings += 1;
                std::thread::sleep(Duration::from_micros(200));
            }
            (session, rings)
        })
    };
    ready.recv().unwrap();
    let wall = Instant::now();
    let cpu = thread_cpu();
    let waited = client.wait_response(id, Some(Duration::from_millis(300)));
    let (cpu, wall) = (thread_cpu() - cpu, wall.elapsed());
    stop.store(true, Ordering::Relaxed);
    let (_session, rings) = ringer.join().unwrap();
    assert!(matches!(waited, Err(ClientError::Timeout)), "{waited:?}");
    eprintln!("the waiting client used {cpu:?} of CPU in {wall:?} ({rings} rings)");
    // Before a call spun only once, every ring bought a fresh 500 µs spin: the
    // waiting thread ran the whole time. Now each ring costs one wake-up.
    assert!(
        cpu < wall / 2,
        "the waiting client used {cpu:?} of CPU in {wall:?} ({rings} rings)"
    );
}

/// A response frame for request `id`, with no payload, put into the response ring
/// without ringing the client.
#[cfg(feature = "tokio")]
fn stray_response(session: &RawSession, id: u64) {
    let header = coroipc::protocol::ResponseHeader { id, status: 0 }.encode();
    let mut grant = session._rings.1.try_reserve(header.len()).unwrap();
    grant.write_at(0, &header);
    // Not rung, whatever the ring says: the client must find it by looking.
    let _unrung = grant.commit();
}

#[cfg(feature = "tokio")]
#[test]
fn a_corrupt_ring_found_by_one_task_ends_the_other_tasks_waits() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let local = tokio::task::LocalSet::new();
    runtime.block_on(local.run_until(async {
        let (name, server) = serve_one([4096; 3]);
        let client = coroipc::tokio::AsyncClient::connect(&name, 1, &options(4096))
            .await
            .unwrap();
        let session = server.join().unwrap();
        // Another task waits for an answer that never comes (nobody reads requests).
        let c = client.clone();
        let waiting = tokio::task::spawn_local(async move { c.request(1, b"never").await });
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        // A response to an id never sent, with no ring: this task's look finds it.
        stray_response(&session, 999);
        let found = client.request(1, b"look").await;
        assert!(
            matches!(found, Err(ClientError::Corrupt(_))),
            "the look that finds the stray frame: {found:?}"
        );
        let other = tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("the other task was never told")
            .unwrap();
        assert!(
            matches!(other, Err(ClientError::Disconnected)),
            "the other task: {other:?}"
        );
        drop(session);
    }));
}
