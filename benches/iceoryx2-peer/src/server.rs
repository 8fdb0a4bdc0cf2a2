//! The server process: echoes requests, streams on demand, exits on `QUIT`.

use iceoryx2::active_request::ActiveRequest;
use iceoryx2::port::publisher::Publisher;
use iceoryx2::port::server::Server;
use iceoryx2::prelude::*;

use crate::{pin_to, Ctx, Idle, Res, CMD_ECHO, CMD_QUIT, CMD_STREAM, MAX_RTT, MAX_STREAM};

type Request = ActiveRequest<ipc::Service, [u8], u64, [u8], ()>;

/// `server <prefix> <parent pid>`: opens the client's two services and serves them.
pub(crate) fn run(prefix: &str, parent: &str) -> Res<()> {
    let parent: libc::pid_t = parent.parse().ctx("parent pid")?;
    // SAFETY: prctl(PR_SET_PDEATHSIG) takes a signal number and touches no memory.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
    parent_alive(parent)?;
    pin_to(1);
    let node = crate::node()?;
    let rtt = node
        .service_builder(&crate::service_name(prefix, "rtt")?)
        .request_response::<[u8], [u8]>()
        .request_user_header::<u64>()
        .open()
        .ctx("open rtt service")?;
    let stream = node
        .service_builder(&crate::service_name(prefix, "stream")?)
        .publish_subscribe::<[u8]>()
        .open()
        .ctx("open stream service")?;
    // The publisher first: the client waits for the server port, then streams at once.
    let publisher = stream
        .publisher_builder()
        .initial_max_slice_len(MAX_STREAM)
        .backpressure_strategy(BackpressureStrategy::RetryUntilDelivered)
        .create()
        .ctx("create publisher")?;
    let server = rtt
        .server_builder()
        .initial_max_slice_len(MAX_RTT)
        .create()
        .ctx("create server port")?;
    serve(&server, &publisher, parent)
}

fn parent_alive(parent: libc::pid_t) -> Res<()> {
    // SAFETY: getppid has no preconditions.
    if unsafe { libc::getppid() } == parent {
        Ok(())
    } else {
        Err("the client is gone".to_string())
    }
}

fn serve(
    server: &Server<ipc::Service, [u8], u64, [u8], ()>,
    publisher: &Publisher<ipc::Service, [u8], ()>,
    parent: libc::pid_t,
) -> Res<()> {
    let mut idle = Idle::new();
    loop {
        let Some(request) = server.receive().ctx("receive request")? else {
            idle.tick(crate::SERVER_IDLE, "server", || parent_alive(parent))?;
            continue;
        };
        idle = Idle::new();
        match *request.user_header() {
            CMD_ECHO => respond(&request, request.payload())?,
            CMD_STREAM => {
                let word = |i: usize| {
                    request
                        .payload()
                        .get(i * 8..i * 8 + 8)
                        .and_then(|b| b.try_into().ok())
                        .map_or(0, u64::from_le_bytes)
                };
                publish(publisher, word(0), word(1) as usize)?;
                respond(&request, &[1])?;
            }
            CMD_QUIT => return Ok(()),
            other => return Err(format!("unknown command {other}")),
        }
    }
}

/// Loans a response and copies `data` into it.
fn respond(request: &Request, data: &[u8]) -> Res<()> {
    let response = request.loan_slice_uninit(data.len()).ctx("loan response")?;
    response.write_from_slice(data).send().ctx("send response")
}

/// Sends `count` messages of `size` bytes (0x5a).
fn publish(publisher: &Publisher<ipc::Service, [u8], ()>, count: u64, size: usize) -> Res<()> {
    let msg = vec![0x5au8; size];
    for _ in 0..count {
        let sample = publisher.loan_slice_uninit(size).ctx("loan sample")?;
        let receivers = sample.write_from_slice(&msg).send().ctx("send sample")?;
        if receivers == 0 {
            return Err("stream: no subscriber connected".to_string());
        }
    }
    Ok(())
}
