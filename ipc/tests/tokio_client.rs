//! The tokio client against a server in a real child process: requests and dispatch
//! interleaved on a current-thread runtime, no runtime thread blocked, every pending
//! future resolved when the server is killed.
#![cfg(feature = "tokio")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::cell::Cell;
use std::future::Future;
use std::rc::Rc;
use std::time::{Duration, Instant};

use coroipc::tokio::AsyncClient;
use coroipc::{ClientError, ConnectOptions};
use support::{cmd, ServerProcess};

#[test]
#[ignore = "entry point of the server child process"]
fn child_server() {
    support::child_entry();
}

/// A client of `server`'s service 1, default options.
async fn connected(server: &ServerProcess) -> AsyncClient {
    AsyncClient::connect(&server.socket(), 1, &ConnectOptions::default())
        .await
        .unwrap()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// A task that counts while the runtime thread is free.
fn ticker(local: &tokio::task::LocalSet) -> Rc<Cell<u64>> {
    let ticks = Rc::new(Cell::new(0u64));
    let t = ticks.clone();
    local.spawn_local(async move {
        loop {
            t.set(t.get() + 1);
            tokio::task::yield_now().await;
        }
    });
    ticks
}

/// Waits, yielding, until `ticks` has advanced by `n` (a blocked thread never gets
/// here: the test would hang, which the harness reports).
async fn ticks_pass(ticks: &Cell<u64>, n: u64) {
    let start = ticks.get();
    while ticks.get() < start + n {
        tokio::task::yield_now().await;
    }
}

#[test]
fn ten_thousand_requests_and_dispatch_messages_interleaved() {
    let server = ServerProcess::start("tokio-10k", &[]);
    let local = tokio::task::LocalSet::new();
    runtime().block_on(local.run_until(async {
        let ticks = ticker(&local);
        let client = connected(&server).await;
        // Dispatch consumer: its own task on the same thread.
        let events = client.clone();
        let consumer = tokio::task::spawn_local(async move {
            let mut got = 0u32;
            while got < 10_000 {
                let m = events.next_dispatch().await.unwrap();
                // Ten per request, numbered 0..10 by the server.
                assert_eq!(m[..4], (got % 10).to_le_bytes(), "in order");
                got += 1;
            }
            got
        });
        // 10,000 requests: every tenth asks for ten dispatch messages, every hundredth
        // is deferred by the server (5 ms) and must let the ticker run meanwhile.
        let (mut dispatched, mut ticked_while_deferred) = (0u32, 0u32);
        for i in 0..10_000u32 {
            if i % 10 == 0 {
                let ask = [10u32.to_le_bytes(), 64u32.to_le_bytes()].concat();
                let r = client.request(cmd::DISPATCH, &ask).await.unwrap();
                dispatched += u32::from_le_bytes(r.data[..4].try_into().unwrap());
            } else if i % 100 == 1 {
                let before = ticks.get();
                let r = client.request(cmd::DEFER, &i.to_le_bytes()).await.unwrap();
                let mut want = i.to_le_bytes();
                want.reverse();
                assert_eq!(r.data, want);
                if ticks.get() > before {
                    ticked_while_deferred += 1;
                }
            } else {
                let r = client.request(cmd::ECHO, &i.to_le_bytes()).await.unwrap();
                assert_eq!(r.data, i.to_le_bytes());
            }
        }
        assert_eq!(dispatched, 10_000, "the server accepted every message");
        assert_eq!(consumer.await.unwrap(), 10_000);
        // A blocking wait would give 0 of 100; scheduling noise may cost a few.
        assert!(
            ticked_while_deferred >= 50,
            "the runtime thread ran other tasks during only {ticked_while_deferred} of 100 deferred requests"
        );
        // A request that is never answered leaves the thread free indefinitely.
        let hang = client.send(cmd::HANG, b"").await.unwrap();
        tokio::select! {
            r = client.response(hang) => panic!("a hung request resolved: {r:?}"),
            () = ticks_pass(&ticks, 10_000) => {}
        }
        let stats = client.stats();
        assert!(stats.requests >= 10_001);
    }));
}

#[test]
fn a_killed_server_resolves_every_pending_future_at_once() {
    let mut server = ServerProcess::start("tokio-kill", &[]);
    let local = tokio::task::LocalSet::new();
    runtime().block_on(local.run_until(async {
        let client = connected(&server).await;
        assert_eq!(client.request(cmd::ECHO, b"hi").await.unwrap().data, b"hi");
        // Five requests that will never be answered, and a dispatch stream, pending.
        let mut pending = Vec::new();
        for _ in 0..5 {
            let c = client.clone();
            pending.push(tokio::task::spawn_local(async move {
                c.request(cmd::HANG, b"").await
            }));
        }
        let c = client.clone();
        let stream = tokio::task::spawn_local(async move {
            use futures_core_shim::next;
            let mut s = c.dispatch_stream();
            let first = next(&mut s).await;
            let after = next(&mut s).await;
            (first, after)
        });
        // Let every task reach its wait.
        for _ in 0..100 {
            tokio::task::yield_now().await;
        }
        assert!(pending.iter().all(|p| !p.is_finished()));
        server.kill();
        let killed = Instant::now();
        for p in pending {
            assert!(matches!(p.await.unwrap(), Err(ClientError::Disconnected)));
        }
        let (first, after) = stream.await.unwrap();
        let elapsed = killed.elapsed();
        assert!(
            matches!(first, Some(Err(ClientError::Disconnected))),
            "{first:?}"
        );
        assert!(after.is_none(), "the stream ends after the error");
        assert!(
            elapsed < Duration::from_millis(100),
            "futures resolved {elapsed:?} after the kill"
        );
        // And any later call fails at once.
        assert!(matches!(
            client.request(cmd::ECHO, b"").await,
            Err(ClientError::Disconnected)
        ));
    }));
}

#[test]
fn a_dropped_request_future_is_abandoned() {
    let server = ServerProcess::start("tokio-abandon", &[]);
    runtime().block_on(async {
        let client = connected(&server).await;
        // Deferred by 5 ms: the timeout drops the future first.
        let r =
            tokio::time::timeout(Duration::from_millis(1), client.request(cmd::DEFER, b"ab")).await;
        assert!(r.is_err(), "timed out");
        assert_eq!(client.outstanding(), 0, "abandoned");
        // Its response, when it arrives, is discarded: the next request gets its own.
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(
            client.request(cmd::ECHO, b"next").await.unwrap().data,
            b"next"
        );
    });
}

#[test]
fn connect_errors_are_the_blocking_ones() {
    runtime().block_on(async {
        let name =
            coroipc::SocketName::abstract_name(format!("coroipc-none-{}", std::process::id()));
        let e = AsyncClient::connect(&name, 1, &ConnectOptions::default())
            .await
            .unwrap_err();
        assert!(
            matches!(
                e,
                coroipc::ConnectError::Os {
                    step: coroipc::ConnectStep::Connect,
                    ..
                }
            ),
            "{e}"
        );
    });
    let server = ServerProcess::start("tokio-noservice", &[]);
    runtime().block_on(async {
        let e = AsyncClient::connect(&server.socket(), 3, &ConnectOptions::default())
            .await
            .unwrap_err();
        assert!(matches!(e, coroipc::ConnectError::NoSuchService(3)), "{e}");
    });
}

/// `StreamExt::next` without a futures dependency.
mod futures_core_shim {
    use std::future::poll_fn;
    use std::pin::Pin;

    pub async fn next<S: futures_core::Stream + Unpin>(s: &mut S) -> Option<S::Item> {
        poll_fn(|cx| Pin::new(&mut *s).poll_next(cx)).await
    }
}

#[test]
fn a_server_served_on_the_same_thread_as_its_async_client() {
    // One thread runs both: anything that blocked would deadlock the test.
    let name =
        coroipc::SocketName::abstract_name(format!("coroipc-tokio-serve-{}", std::process::id()));
    let mut server = coroipc::ServerBuilder::new(name.clone())
        .service(
            1,
            support::TestService {
                disconnects: Default::default(),
                log: Default::default(),
            },
        )
        .build()
        .unwrap();
    let stop = server.stop_handle();
    let local = tokio::task::LocalSet::new();
    runtime().block_on(local.run_until(async move {
        let served = tokio::task::spawn_local(async move {
            coroipc::tokio::serve(&mut server).await.map(|()| server)
        });
        let client = AsyncClient::connect(&name, 1, &ConnectOptions::default())
            .await
            .unwrap();
        for i in 0..1000u32 {
            let r = client.request(cmd::ECHO, &i.to_le_bytes()).await.unwrap();
            assert_eq!(r.data, i.to_le_bytes());
        }
        let ask = [100u32.to_le_bytes(), 64u32.to_le_bytes()].concat();
        assert_eq!(
            client.request(cmd::DISPATCH, &ask).await.unwrap().data,
            100u32.to_le_bytes()
        );
        for seq in 0..100u32 {
            assert_eq!(
                client.next_dispatch().await.unwrap()[..4],
                seq.to_le_bytes()
            );
        }
        stop.stop();
        let server = served.await.unwrap().unwrap();
        assert_eq!(server.connection_count(), 1);
    }));
}

#[test]
fn a_task_keeping_an_unpolled_stream_does_not_stall_the_others() {
    let server = ServerProcess::start("tokio-unpolled", &[]);
    let local = tokio::task::LocalSet::new();
    runtime().block_on(local.run_until(async {
        let client = connected(&server).await;
        // Another task waits for a deferred response (5 ms).
        let c = client.clone();
        let waiter = tokio::task::spawn_local(async move { c.request(cmd::DEFER, b"xy").await });
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        // This task polls a dispatch stream once (the last to wait on the fd), then
        // keeps the stream and sleeps on something else.
        let mut stream = client.dispatch_stream();
        let first = tokio::time::timeout(
            Duration::from_millis(1),
            futures_core_shim::next(&mut stream),
        )
        .await;
        assert!(first.is_err(), "no dispatch message");
        let answered = tokio::time::timeout(Duration::from_secs(5), waiter).await;
        let response = answered
            .expect("the other task was never woken")
            .unwrap()
            .unwrap();
        assert_eq!(response.data, b"yx");
        drop(stream);
    }));
}

#[test]
fn an_unread_dispatch_message_does_not_keep_the_other_tasks_spinning() {
    let server = ServerProcess::start("tokio-unread", &[]);
    let local = tokio::task::LocalSet::new();
    runtime().block_on(local.run_until(async {
        let client = connected(&server).await;
        // A stream polled once, then kept and not polled.
        let mut stream = client.dispatch_stream();
        let first = tokio::time::timeout(
            Duration::from_millis(1),
            futures_core_shim::next(&mut stream),
        )
        .await;
        assert!(first.is_err(), "no dispatch message yet");
        let never = client.send(cmd::HANG, b"").await.unwrap();
        let ask = [1u32.to_le_bytes(), 16u32.to_le_bytes()].concat();
        let r = client.request(cmd::DISPATCH, &ask).await.unwrap();
        assert_eq!(r.data, 1u32.to_le_bytes(), "one message waits unread");
        // A task waiting for a response that never comes is woken for the message a
        // few times at most, not at every look (a busy loop on the runtime).
        let polls = Cell::new(0u32);
        let mut waiting = Box::pin(client.response(never));
        let counted = std::future::poll_fn(|cx| {
            polls.set(polls.get() + 1);
            waiting.as_mut().poll(cx)
        });
        let waited = tokio::time::timeout(Duration::from_millis(200), counted).await;
        assert!(waited.is_err(), "never answered");
        assert!(polls.get() < 10, "polled {} times in 200 ms", polls.get());
        drop(waiting);
        // The stream still gets the message.
        let m = tokio::time::timeout(Duration::from_secs(5), futures_core_shim::next(&mut stream))
            .await
            .expect("the message was kept")
            .unwrap()
            .unwrap();
        assert_eq!(m.len(), 16);
    }));
}

#[test]
fn a_spinning_async_client_gets_every_answer_and_sees_a_dead_server() {
    let mut server = ServerProcess::start("tokio-spin", &[]);
    let local = tokio::task::LocalSet::new();
    runtime().block_on(local.run_until(async {
        let client = connected(&server).await;
        client.set_spin(Duration::from_micros(50));
        let events = client.clone();
        let consumer = tokio::task::spawn_local(async move {
            for got in 0..1000u32 {
                let m = events.next_dispatch().await.unwrap();
                assert_eq!(m[..4], (got % 10).to_le_bytes());
            }
        });
        for i in 0..2000u32 {
            if i % 20 == 0 {
                let ask = [10u32.to_le_bytes(), 64u32.to_le_bytes()].concat();
                client.request(cmd::DISPATCH, &ask).await.unwrap();
            } else {
                let r = client.request(cmd::ECHO, &i.to_le_bytes()).await.unwrap();
                assert_eq!(r.data, i.to_le_bytes());
            }
        }
        consumer.await.unwrap();
        let c = client.clone();
        let hung = tokio::task::spawn_local(async move { c.request(cmd::HANG, b"").await });
        for _ in 0..100 {
            tokio::task::yield_now().await;
        }
        server.kill();
        let r = tokio::time::timeout(Duration::from_secs(5), hung).await;
        assert!(matches!(r, Ok(Ok(Err(ClientError::Disconnected)))), "{r:?}");
    }));
}

/// The longest a 1 ms ticker on the serving runtime may wait, ever: two orders of
/// magnitude over its period, for a noisy 2-core VM running other tests. A `serve` that
/// never yields under load stalls it for the whole load (287-391 ms at a time were
/// seen, and never less than the load's length without a yield).
const TICKER_GAP_LIMIT: Duration = Duration::from_millis(150);

/// Echoes after `work` of busy computation, counting the requests it handled: a
/// server that always has work waiting, whatever the build (a fast client keeps a
/// deep pipeline full).
#[derive(Default)]
struct SlowEcho {
    work: Duration,
    handled: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl coroipc::Service for SlowEcho {
    type Private = ();

    fn on_connect(&mut self, _conn: &coroipc::Connection) -> Result<(), i32> {
        Ok(())
    }

    fn on_disconnect(&mut self, _: (), _: &coroipc::Connection, _: &coroipc::DisconnectReason) {}

    fn handle(
        &mut self,
        _private: &mut (),
        req: coroipc::Request<'_>,
        resp: &mut coroipc::Responder<'_>,
    ) -> Result<(), coroipc::HandlerError> {
        let until = Instant::now() + self.work;
        while Instant::now() < until {
            std::hint::spin_loop();
        }
        self.handled
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let _ = resp.respond(0, req.payload);
        Ok(())
    }
}

#[test]
fn a_loaded_server_served_on_tokio_lets_a_ticker_run() {
    let name =
        coroipc::SocketName::abstract_name(format!("coroipc-tokio-budget-{}", std::process::id()));
    let work = Duration::from_micros(20);
    let mut server = coroipc::ServerBuilder::new(name.clone())
        .service(
            1,
            SlowEcho {
                work,
                ..SlowEcho::default()
            },
        )
        .build()
        .unwrap();
    let stop = server.stop_handle();
    // A blocking client in its own thread keeps 64 requests in flight for 1 s: the
    // server never runs dry (64 x 20 us of work against a refill of microseconds).
    let load = std::thread::spawn(move || {
        let mut client = coroipc::Client::connect(&name, 1, &ConnectOptions::default()).unwrap();
        let until = Instant::now() + Duration::from_secs(1);
        let mut in_flight = std::collections::VecDeque::new();
        let mut answered = 0u64;
        while Instant::now() < until {
            while in_flight.len() < 64 {
                in_flight.push_back(client.send_request(cmd::ECHO, b"tick").unwrap());
            }
            if let Some(id) = in_flight.pop_front() {
                let r = client.wait_response(id, None).unwrap();
                assert_eq!(r.data, b"tick");
                answered += 1;
            }
        }
        for id in in_flight {
            client.wait_response(id, None).unwrap();
        }
        answered
    });
    let local = tokio::task::LocalSet::new();
    let (answered, worst) = runtime().block_on(local.run_until(async move {
        let served =
            tokio::task::spawn_local(async move { coroipc::tokio::serve(&mut server).await });
        let mut interval = tokio::time::interval(Duration::from_millis(1));
        let mut last = Instant::now();
        let mut worst = Duration::ZERO;
        while !load.is_finished() {
            interval.tick().await;
            worst = worst.max(last.elapsed());
            last = Instant::now();
        }
        stop.stop();
        served.await.unwrap().unwrap();
        (load.join().unwrap(), worst)
    }));
    // At least a fifth of the 1 s went to serving: the load was real.
    let served_for = work * answered as u32;
    assert!(
        served_for > Duration::from_millis(200),
        "the load ran ({answered} requests)"
    );
    assert!(
        worst < TICKER_GAP_LIMIT,
        "the ticker waited {worst:?} while {answered} requests were served"
    );
}

/// Polls `fut` for up to `limit`, counting its polls; returns the count and whether it
/// resolved.
async fn count_polls<F: Future + Unpin>(fut: &mut F, limit: Duration) -> (u32, bool) {
    let polls = Cell::new(0u32);
    let counted = std::future::poll_fn(|cx| {
        polls.set(polls.get() + 1);
        std::pin::Pin::new(&mut *fut).poll(cx)
    });
    let done = tokio::time::timeout(limit, counted).await.is_ok();
    (polls.get(), done)
}

#[test]
fn a_late_answer_to_an_abandoned_request_does_not_keep_a_dispatch_stream_spinning() {
    let server = ServerProcess::start("tokio-late-abandoned", &[]);
    let local = tokio::task::LocalSet::new();
    runtime().block_on(local.run_until(async {
        let client = connected(&server).await;
        let mut stream = client.dispatch_stream();
        let c = client.clone();
        // Answered after 5 ms, given up at once (its response future dropped): its
        // answer lands while only the stream waits.
        let id = c.send(cmd::DEFER, b"ab").await.unwrap();
        drop(c.response(id));
        assert_eq!(client.outstanding(), 0, "given up");
        let mut next = Box::pin(futures_core_shim::next(&mut stream));
        let (polls, done) = count_polls(&mut next, Duration::from_millis(200)).await;
        assert!(!done, "no dispatch message");
        assert!(polls < 20, "the stream was polled {polls} times in 200 ms");
        drop(next);
        assert_eq!(client.outstanding(), 0);
        // The connection is still good.
        assert_eq!(client.request(cmd::ECHO, b"ok").await.unwrap().data, b"ok");
    }));
}

#[test]
fn a_response_not_yet_awaited_does_not_keep_a_dispatch_waiter_spinning() {
    let server = ServerProcess::start("tokio-not-awaited", &[]);
    let local = tokio::task::LocalSet::new();
    runtime().block_on(local.run_until(async {
        let client = connected(&server).await;
        // Sent, answered at once, and not awaited for 200 ms.
        let id = client.send(cmd::ECHO, b"later").await.unwrap();
        let mut next = Box::pin(client.next_dispatch());
        let (polls, done) = count_polls(&mut next, Duration::from_millis(200)).await;
        assert!(!done, "no dispatch message");
        assert!(
            polls < 20,
            "next_dispatch was polled {polls} times in 200 ms"
        );
        drop(next);
        assert_eq!(client.response(id).await.unwrap().data, b"later");
    }));
}

#[test]
fn a_dispatch_stream_kept_full_by_the_server_lets_a_ticker_run() {
    let server = ServerProcess::start("tokio-coop-flood", &[]);
    let local = tokio::task::LocalSet::new();
    runtime().block_on(local.run_until(async {
        let options = ConnectOptions {
            dispatch_ring: 1 << 20,
            ..ConnectOptions::default()
        };
        let client = AsyncClient::connect(&server.socket(), 1, &options)
            .await
            .unwrap();
        // 20 000 small messages, all in the ring before the answer comes: the stream
        // is ready at every poll until the last.
        let ask = [20_000u32.to_le_bytes(), 4u32.to_le_bytes()].concat();
        let r = client.request(cmd::DISPATCH, &ask).await.unwrap();
        let sent = u32::from_le_bytes(r.data[..4].try_into().unwrap());
        assert_eq!(sent, 20_000, "every message fits the ring");
        let ticks = ticker(&local);
        let mut stream = client.dispatch_stream();
        // The longest run of messages taken while the ticker never got to run.
        let (mut run, mut longest, mut seen) = (0u32, 0u32, ticks.get());
        for i in 0..sent {
            let m = futures_core_shim::next(&mut stream).await.unwrap().unwrap();
            assert_eq!(m[..4], i.to_le_bytes());
            if ticks.get() == seen {
                run += 1;
                longest = longest.max(run);
            } else {
                (run, seen) = (0, ticks.get());
            }
        }
        assert!(
            longest < 2_000,
            "{longest} messages in a row without the ticker running"
        );
    }));
}

#[test]
fn several_hot_connections_served_on_tokio_let_a_ticker_run_between_requests() {
    use std::sync::atomic::Ordering;
    let name =
        coroipc::SocketName::abstract_name(format!("coroipc-tokio-turn-{}", std::process::id()));
    let handled = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    // Each request takes longer than a turn: a turn serves one request, then yields.
    let service = SlowEcho {
        work: Duration::from_millis(2),
        handled: handled.clone(),
    };
    let mut server = coroipc::ServerBuilder::new(name.clone())
        .service(1, service)
        .build()
        .unwrap();
    let stop = server.stop_handle();
    // Four clients, each sending its next request as soon as it has the answer, until
    // the server goes away: several connections ready at every turn.
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let name = name.clone();
            std::thread::spawn(move || {
                let mut c = coroipc::Client::connect(&name, 1, &ConnectOptions::default()).unwrap();
                loop {
                    c.request(cmd::ECHO, b"hot")?;
                }
            })
        })
        .collect();
    let local = tokio::task::LocalSet::new();
    let worst = runtime().block_on(local.run_until(async {
        let served =
            tokio::task::spawn_local(async move { coroipc::tokio::serve(&mut server).await });
        // The most requests handled between two ticks of a task on the same thread.
        let worst = Rc::new(Cell::new(0u64));
        let (w, h) = (worst.clone(), handled.clone());
        let ticker = tokio::task::spawn_local(async move {
            let mut last = h.load(Ordering::Relaxed);
            loop {
                let now = h.load(Ordering::Relaxed);
                w.set(w.get().max(now - last));
                last = now;
                tokio::task::yield_now().await;
            }
        });
        while handled.load(Ordering::Relaxed) < 200 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        stop.stop();
        served.await.unwrap().unwrap();
        ticker.abort();
        worst.get()
    }));
    for c in clients {
        let ended: Result<(), ClientError> = c.join().unwrap();
        assert!(ended.is_err(), "the clients end with the server");
    }
    // A turn serves one request here (it outlasts the turn); the scheduler may poll
    // the server twice between two polls of the ticker (2 is what is seen, 4 around
    // the connects). Without the turn checked within `run_once`, one `run_once`
    // served every ready connection's whole batch: hundreds between two ticks.
    assert!(
        worst <= 8,
        "{worst} requests of 2 ms were handled between two ticks"
    );
}

#[test]
fn a_response_future_dropped_unpolled_abandons_its_request() {
    let server = ServerProcess::start("tokio-unpolled-response", &[]);
    runtime().block_on(async {
        let client = connected(&server).await;
        let id = client.send(cmd::HANG, b"").await.unwrap();
        assert_eq!(client.outstanding(), 1);
        // As `select!` drops a branch that another ready branch beat to its first poll.
        drop(client.response(id));
        assert_eq!(client.outstanding(), 0, "abandoned");
        assert_eq!(
            client.request(cmd::ECHO, b"next").await.unwrap().data,
            b"next"
        );
    });
}

/// CPU time the calling thread has used.
fn thread_cpu() -> Duration {
    let t = nix::time::clock_gettime(nix::time::ClockId::CLOCK_THREAD_CPUTIME_ID).unwrap();
    Duration::from(t)
}

/// 50 rounds of a request answered after 5 ms (longer than any spin: the answer
/// comes through the reactor, which wakes every waiting task), while other tasks wait
/// for answers that never come; the runtime thread's CPU time for them.
async fn rounds_beside_waiters(client: &AsyncClient) -> Duration {
    let cpu = thread_cpu();
    for _ in 0..50 {
        let r = client.request(cmd::DEFER, b"ab").await.unwrap();
        assert_eq!(r.data, b"ba");
    }
    thread_cpu() - cpu
}

#[test]
fn a_spinning_client_spins_once_per_wait_not_once_per_wake_up() {
    let server = ServerProcess::start("tokio-spin-once", &[]);
    let local = tokio::task::LocalSet::new();
    runtime().block_on(local.run_until(async {
        let client = connected(&server).await;
        let spin = Duration::from_micros(100);
        client.set_spin(spin);
        let waiters = 20u32;
        let hung: Vec<_> = (0..waiters)
            .map(|_| {
                let c = client.clone();
                tokio::task::spawn_local(async move { c.request(cmd::HANG, b"").await })
            })
            .collect();
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        let with_spin = rounds_beside_waiters(&client).await;
        client.set_spin(Duration::ZERO);
        let without = rounds_beside_waiters(&client).await;
        // Every answer wakes the 20 waiters. Spinning at each of those polls would
        // add about 50 answers x 20 x 100 us = 100 ms; once per wait, none (they
        // spun before), and 50 x 100 us for the rounds' own waits.
        let extra = with_spin.saturating_sub(without);
        assert!(
            extra < Duration::from_millis(40),
            "{extra:?} more CPU with the spin ({with_spin:?} against {without:?})"
        );
        for h in hung {
            h.abort();
        }
    }));
}
