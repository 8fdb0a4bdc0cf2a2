//! Linux plumbing under the IPC layer, one job per module:
//!
//! * [`shm`](SharedMemory): sealed `memfd` shared memory, created on one side and
//!   verified (size and seals) on the other, so a peer can never make us fault with
//!   `SIGBUS` by resizing it;
//! * [`fdpass`](send_with_fds): bytes plus file descriptors over a Unix socket
//!   (`SCM_RIGHTS`), with nothing leaked on any error path;
//! * [`cred`](peer_cred): the peer's pid, uid and gid (`SO_PEERCRED`);
//! * [`doorbell`](Doorbell): eventfd wake-ups within one process;
//! * [`peer_bell`](PeerBell): a connection's doorbells, shared with the peer process
//!   (a socketpair the peer cannot make blocking);
//! * [`readiness`](wait_readable): waiting on several fds with a deadline (`poll`), and a
//!   small [`Epoll`] wrapper;
//! * [`socket`](SocketName): where a server listens (abstract name or path) and how
//!   a client connects;
//! * [`fdlimit`](FdReserve): a reserve descriptor for refusing clients when out of
//!   descriptors, and raising `RLIMIT_NOFILE` for the configured connections.
//!
//! Built on `nix` (one dependency for every system call here). Raw `libc` appears
//! only where nix cannot say what is needed, and the module doc says why: `fdpass`
//! walks the control buffer itself (nix refuses a truncated one, which would leak the
//! descriptors that did arrive) and `wait` calls `ppoll` directly (nix 0.29 neither
//! names `POLLRDHUP` nor reports it). rustix names `POLLRDHUP` (`PollFlags::RDHUP`)
//! and could replace that one call; it is not adopted so that the crate keeps one OS
//! crate (nix covers memfd sealing, `SCM_RIGHTS`, credentials, eventfd, epoll and
//! rlimits here), and the `ppoll` call is one small, tested `unsafe` block.
//!
//! Everything here is `EINTR`-safe: an interrupted system call is restarted (with the
//! remaining time, where there is a deadline), never reported as an error. Errors are
//! [`std::io::Error`]s, except where the caller needs to tell causes apart
//! ([`ShmError`]).

#[cfg(any(test, feature = "raw-peer"))]
mod connect;
mod cred;
mod doorbell;
mod eintr;
mod fdlimit;
mod fdpass;
mod peer_bell;
mod readiness;
mod shm;
mod socket;

#[cfg(any(test, feature = "raw-peer"))]
pub use connect::connect;
pub use cred::{peer_cred, PeerCred};
pub use doorbell::Doorbell;
pub use fdlimit::{is_exhaustion, is_fd_exhaustion, raise_nofile, FdReserve};
pub use fdpass::{recv_with_fds, send_with_fds};
pub(crate) use peer_bell::means_hang_up;
pub use peer_bell::PeerBell;
#[cfg(any(test, feature = "raw-peer"))]
pub use readiness::FdReadiness;
pub use readiness::{wait_readable, Epoll, Event, Interest, Readiness};
pub use shm::{SharedMemory, ShmError};
pub(crate) use socket::accept_nonblocking;
pub use socket::{listen, try_connect, unconnected, SocketName};

/// Shared test helpers (signals that interrupt blocking calls).
#[cfg(test)]
pub(crate) mod test_util {
    use std::cell::Cell;
    use std::sync::Once;
    use std::time::Duration;

    use nix::sys::pthread::{pthread_kill, pthread_self, Pthread};
    use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};

    thread_local! {
        /// How many times the handler ran on this thread. Const-initialised and
        /// without a destructor, so touching it in a signal handler is a plain TLS
        /// access.
        static SIGNALS: Cell<usize> = const { Cell::new(0) };
    }

    extern "C" fn on_signal(_: libc::c_int) {
        SIGNALS.with(|c| c.set(c.get() + 1));
    }

    /// How many `SIGALRM`s the calling thread has handled (to prove that the signals
    /// really arrived during a test).
    pub(crate) fn signals_handled() -> usize {
        SIGNALS.with(Cell::get)
    }

    /// Installs a counting `SIGALRM` handler *without* `SA_RESTART`, so blocking calls
    /// in the signalled thread fail with `EINTR` instead of being restarted.
    pub(crate) fn install_sigalrm_handler() {
        static ONCE: Once = Once::new();
        ONCE.call_once(|| {
            let action = SigAction::new(
                SigHandler::Handler(on_signal),
                SaFlags::empty(),
                SigSet::empty(),
            );
            // SAFETY: the handler only bumps a thread-local counter (no locks, no
            // allocation), which is async-signal-safe;
            // no other code in this test binary handles SIGALRM.
            unsafe { sigaction(Signal::SIGALRM, &action) }.expect("sigaction");
        });
    }

    /// Sends `SIGALRM` to the calling thread `count` times, `every` apart, from a
    /// helper thread. Dropping the guard joins the helper, so the target thread is
    /// alive for every signal even if a test fails early.
    pub(crate) fn pester_current_thread(count: usize, every: Duration) -> Pester {
        install_sigalrm_handler();
        let target: Pthread = pthread_self();
        Pester(Some(std::thread::spawn(move || {
            for _ in 0..count {
                std::thread::sleep(every);
                pthread_kill(target, Signal::SIGALRM).expect("pthread_kill");
            }
        })))
    }

    /// Joins the signalling thread on drop.
    pub(crate) struct Pester(Option<std::thread::JoinHandle<()>>);

    impl Drop for Pester {
        fn drop(&mut self) {
            if let Some(h) = self.0.take() {
                let _ = h.join();
            }
        }
    }
}
