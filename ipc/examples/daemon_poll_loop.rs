//! The example daemon driven by an external poll loop: the program owns the loop
//! (here plain poll(2) over the server's one fd and standard input, which ends it on
//! EOF), and calls `Server::run_once` when the server's fd is ready or its deadline
//! comes.
//!
//! Run: `cargo run --example daemon_poll_loop -p coroipc`, then any daemon client.

#[path = "daemon/services.rs"]
mod services;

use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

fn main() -> std::io::Result<()> {
    let name = services::name_arg();
    let mut server = services::build(&name)?;
    println!("READY {name}");
    let stdin = std::io::stdin();
    loop {
        // The server's next deadline (handshake timeouts) bounds the wait.
        let wait = server
            .next_deadline()
            .map(|d| d.saturating_duration_since(Instant::now()))
            .unwrap_or(Duration::from_secs(1));
        let timeout = PollTimeout::try_from(wait).unwrap_or(PollTimeout::MAX);
        let server_fd = server.poll_fd().expect("built-in poller");
        let mut fds = [
            PollFd::new(server_fd, PollFlags::POLLIN),
            PollFd::new(stdin.as_fd(), PollFlags::POLLIN),
        ];
        poll(&mut fds, timeout)?;
        let input = fds[1].revents().unwrap_or(PollFlags::empty());
        if !input.is_empty() {
            let mut line = String::new();
            if std::io::stdin().read_line(&mut line)? == 0 {
                println!("stdin closed: exiting");
                return Ok(());
            }
        }
        // Handle what is ready (and what is due) without waiting.
        server.run_once(Some(Duration::ZERO))?;
    }
}
