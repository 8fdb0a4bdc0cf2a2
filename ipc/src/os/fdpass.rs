//! Bytes plus file descriptors over a Unix stream socket (`SCM_RIGHTS`).
//!
//! The handshake sends the shared-memory fd and the doorbell fds this way. Sending
//! uses `MSG_NOSIGNAL` (a dead peer is an `EPIPE` error, not a `SIGPIPE` that kills
//! the process). Receiving uses `MSG_CMSG_CLOEXEC`, turns every descriptor the kernel
//! installed into an [`OwnedFd`] at once, and refuses a truncated control message
//! after closing whatever did arrive: no path leaks a descriptor.
//!
//! Receiving parses the control buffer itself (with the libc `CMSG_*` helpers)
//! rather than through `nix::sys::socket::recvmsg`: nix refuses to walk a truncated
//! control buffer (`MSG_CTRUNC`), which would leave the descriptors that did arrive
//! open and unowned.

use std::io::{self, IoSlice};
use std::mem;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use nix::errno::Errno;
use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};

/// Sends all of `bytes` on the stream socket `sock`, with `fds` attached to the first
/// chunk, so the receiver gets them with the first byte of `bytes`.
///
/// Partial writes are continued until every byte is out; `EINTR` is retried.
/// `MSG_NOSIGNAL`: a closed peer gives `EPIPE` (`BrokenPipe`), never `SIGPIPE`.
///
/// On a non-blocking socket (or one with `SO_SNDTIMEO`) whose buffer is full:
/// if nothing had been sent yet the `WouldBlock` error is returned as is and the
/// call may be repeated; if part of the message was already sent, the error has
/// kind `Other` instead, because the stream is now cut in the middle of a message
/// and the connection should be dropped. The fds are closed by nobody here: they
/// stay owned by the caller (the kernel holds its own references to the ones sent).
///
/// `bytes` must not be empty when `fds` is not: a stream socket cannot carry
/// descriptors without data.
///
/// # Errors
///
/// The OS error of `sendmsg` (`BrokenPipe` for a closed peer); see above for a message
/// cut in the middle.
pub fn send_with_fds(sock: BorrowedFd<'_>, bytes: &[u8], fds: &[BorrowedFd<'_>]) -> io::Result<()> {
    if bytes.is_empty() {
        if fds.is_empty() {
            return Ok(());
        }
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "file descriptors need at least one byte of data to travel with",
        ));
    }
    let raw: Vec<RawFd> = fds.iter().map(|fd| fd.as_raw_fd()).collect();
    let rights = [ControlMessage::ScmRights(&raw)];
    let mut sent = 0;
    while sent < bytes.len() {
        let iov = [IoSlice::new(&bytes[sent..])];
        let cmsgs: &[ControlMessage<'_>] = if sent == 0 && !raw.is_empty() {
            &rights
        } else {
            &[]
        };
        match sendmsg::<()>(sock.as_raw_fd(), &iov, cmsgs, MsgFlags::MSG_NOSIGNAL, None) {
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::WriteZero,
                    "socket accepted no bytes",
                ))
            }
            Ok(n) => sent += n,
            Err(Errno::EINTR) => continue,
            Err(Errno::EAGAIN) if sent > 0 => {
                return Err(io::Error::other(format!(
                    "socket buffer full after {sent} of {} bytes: message cut",
                    bytes.len()
                )))
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Receives bytes into `buf` (which must not be empty) and up to `max_fds` file
/// descriptors from the stream socket `sock`, with `MSG_CMSG_CLOEXEC`.
///
/// Returns the number of bytes read (0 means end of stream) and the descriptors that
/// came with them (usually none; descriptors arrive with the first byte of the message
/// they were sent with). `EINTR` is retried; a non-blocking socket with nothing to
/// read gives `WouldBlock`.
///
/// If the peer sent more than `max_fds` descriptors (or the kernel could not install
/// them all, e.g. at the fd limit), every descriptor that did arrive is closed and an
/// `InvalidData` error is returned. The bytes of that read are consumed either way,
/// so the stream is out of step: drop the connection.
///
/// # Errors
///
/// The OS error of `recvmsg`; `InvalidData` when the control message was truncated
/// (every descriptor that did arrive is closed first).
pub fn recv_with_fds(
    sock: BorrowedFd<'_>,
    buf: &mut [u8],
    max_fds: usize,
) -> io::Result<(usize, Vec<OwnedFd>)> {
    if buf.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "receive buffer must not be empty (0 bytes read means end of stream)",
        ));
    }
    let ctrl_len = control_space(max_fds)?;
    // u64 elements: the control buffer must be aligned for `cmsghdr`.
    let mut ctrl = vec![0u64; ctrl_len.div_ceil(mem::size_of::<u64>())];
    loop {
        let mut iov = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        // SAFETY: `msghdr` is a plain C struct for which all-zero bytes are a valid
        // value (null pointers, zero lengths).
        let mut msg: libc::msghdr = unsafe { mem::zeroed() };
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        if ctrl_len > 0 {
            msg.msg_control = ctrl.as_mut_ptr().cast();
            msg.msg_controllen = ctrl_len as _;
        }
        // SAFETY: `msg` points to one iovec describing `buf` (valid for writes of
        // `buf.len()` bytes) and, if `ctrl_len > 0`, to `ctrl` (at least `ctrl_len`
        // bytes, suitably aligned); all of them outlive the call.
        let ret = unsafe { libc::recvmsg(sock.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC) };
        let n = match Errno::result(ret) {
            Ok(n) => n,
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        };
        // Own every received descriptor before anything else can fail.
        // SAFETY: `msg` was filled in by a successful `recvmsg`; its control pointer
        // and length describe the part of `ctrl` the kernel wrote, and `ctrl` is alive.
        let fds = unsafe { take_rights(&msg) };
        if msg.msg_flags & libc::MSG_CTRUNC != 0 || fds.len() > max_fds {
            drop(fds);
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "control message truncated: the peer sent more than {max_fds} file \
                     descriptors, or they could not all be received"
                ),
            ));
        }
        // `recvmsg` returned a non-negative byte count.
        let n = usize::try_from(n).unwrap_or(0);
        return Ok((n, fds));
    }
}

/// Bytes of control buffer needed for one `SCM_RIGHTS` message of `max_fds` fds.
fn control_space(max_fds: usize) -> io::Result<usize> {
    if max_fds == 0 {
        return Ok(0);
    }
    let data = max_fds
        .checked_mul(mem::size_of::<libc::c_int>())
        .and_then(|d| libc::c_uint::try_from(d).ok())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "max_fds too large"))?;
    // SAFETY: `CMSG_SPACE` is arithmetic on its argument; it touches no memory.
    let space = unsafe { libc::CMSG_SPACE(data) };
    usize::try_from(space)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "max_fds too large"))
}

/// Takes ownership of every descriptor in the `SCM_RIGHTS` messages of `msg`.
///
/// # Safety
///
/// `msg` must be a header filled in by a successful `recvmsg` call, with
/// `msg_control` pointing to a live buffer, aligned for `cmsghdr`, of which the
/// kernel wrote the first `msg_controllen` bytes; and the descriptors in it must not
/// be owned by anything else yet (true right after that `recvmsg`). Call it at most
/// once per received message.
unsafe fn take_rights(msg: &libc::msghdr) -> Vec<OwnedFd> {
    let mut fds = Vec::new();
    if msg.msg_control.is_null() {
        return fds;
    }
    // `msg_controllen` and `cmsg_len` are `size_t` with glibc but `socklen_t` with
    // musl: the casts are no-ops here and widenings there.
    #[allow(clippy::unnecessary_cast)]
    let end = (msg.msg_control as usize).saturating_add(msg.msg_controllen as usize);
    // SAFETY: by the contract, `msg` describes a control buffer the kernel filled in.
    // `CMSG_FIRSTHDR` returns null unless a whole header fits in `msg_controllen`.
    let mut cmsg = unsafe { libc::CMSG_FIRSTHDR(msg) };
    while !cmsg.is_null() {
        // SAFETY: `cmsg` is non-null and points to a header lying within the first
        // `msg_controllen` bytes of the aligned buffer (CMSG_FIRSTHDR/CMSG_NXTHDR check
        // this), which the kernel initialised.
        let hdr = unsafe { &*cmsg };
        if hdr.cmsg_level == libc::SOL_SOCKET && hdr.cmsg_type == libc::SCM_RIGHTS {
            // SAFETY: `cmsg` points to a valid header (above); CMSG_DATA only offsets
            // the pointer past the aligned header.
            let data = unsafe { libc::CMSG_DATA(cmsg) };
            let start = data as usize;
            // The payload ends at `cmsg + cmsg_len`, and never past the written part
            // of the buffer (belt and braces: the kernel guarantees it).
            #[allow(clippy::unnecessary_cast)]
            let stop = (cmsg as usize)
                .saturating_add(hdr.cmsg_len as usize)
                .min(end);
            let count = stop.saturating_sub(start) / mem::size_of::<libc::c_int>();
            for i in 0..count {
                // SAFETY: `data + i * size_of::<c_int>()` plus 4 bytes lies within
                // `[start, stop)`, inside the kernel-written buffer; the read is
                // unaligned-safe.
                let raw = unsafe { data.cast::<libc::c_int>().add(i).read_unaligned() };
                // SAFETY: the kernel installed this descriptor in our table for this
                // message; nothing else owns it (the function's contract).
                fds.push(unsafe { OwnedFd::from_raw_fd(raw) });
            }
        }
        // SAFETY: `msg` and `cmsg` are valid as above; CMSG_NXTHDR returns null when
        // the next header would not fit within `msg_controllen`.
        cmsg = unsafe { libc::CMSG_NXTHDR(msg, cmsg) };
    }
    fds
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::os::SharedMemory;
    use std::io::{Read, Write};
    use std::os::fd::AsFd;
    use std::os::unix::net::UnixStream;

    #[test]
    fn memfd_round_trip_over_socketpair() {
        let (a, b) = UnixStream::pair().expect("pair");
        let shm = SharedMemory::create("fdpass", 4096).expect("shm");
        // SAFETY: in bounds; only this thread touches the memory.
        unsafe { shm.as_ptr().add(10).copy_from(b"hello".as_ptr(), 5) };
        let bell = nix::sys::eventfd::EventFd::new().expect("eventfd");

        send_with_fds(
            a.as_fd(),
            b"handshake",
            &[shm.fd().expect("fd"), bell.as_fd()],
        )
        .expect("send");
        let mut buf = [0u8; 64];
        let (n, fds) = recv_with_fds(b.as_fd(), &mut buf, 4).expect("recv");
        assert_eq!(&buf[..n], b"handshake");
        assert_eq!(fds.len(), 2);

        // Received fds are close-on-exec.
        for fd in &fds {
            let flags =
                nix::fcntl::fcntl(fd.as_raw_fd(), nix::fcntl::FcntlArg::F_GETFD).expect("F_GETFD");
            assert_ne!(flags & libc::FD_CLOEXEC, 0);
        }

        // The first fd is the memfd: map it on the receiving side and see the bytes.
        let mut fds = fds.into_iter();
        let memfd = fds.next().expect("memfd");
        let other = SharedMemory::from_fd_verified(memfd, 4096).expect("verified");
        let mut seen = [0u8; 5];
        // SAFETY: in bounds of the 4096-byte mapping.
        unsafe { other.as_ptr().add(10).copy_to(seen.as_mut_ptr(), 5) };
        assert_eq!(&seen, b"hello");
        // And writes come back the other way.
        // SAFETY: in bounds of both mappings.
        unsafe {
            other.as_ptr().write(7);
            assert_eq!(shm.as_ptr().read(), 7);
        }
    }

    #[test]
    fn bytes_without_fds_and_eof() {
        let (a, b) = UnixStream::pair().expect("pair");
        send_with_fds(a.as_fd(), b"abc", &[]).expect("send");
        send_with_fds(a.as_fd(), b"", &[]).expect("empty send is a no-op");
        drop(a);
        let mut buf = [0u8; 8];
        let (n, fds) = recv_with_fds(b.as_fd(), &mut buf, 2).expect("recv");
        assert_eq!((&buf[..n], fds.len()), (&b"abc"[..], 0));
        let (n, fds) = recv_with_fds(b.as_fd(), &mut buf, 2).expect("recv eof");
        assert_eq!((n, fds.len()), (0, 0));
    }

    #[test]
    fn large_message_arrives_whole_with_fds_on_first_chunk() {
        let (a, b) = UnixStream::pair().expect("pair");
        let shm = SharedMemory::create("big", 4096).expect("shm");
        let payload: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
        let expected = payload.clone();
        let fd = shm.fd().expect("fd").try_clone_to_owned().expect("dup");
        let sender = std::thread::spawn(move || {
            send_with_fds(a.as_fd(), &payload, &[fd.as_fd()]).expect("send");
        });
        let mut got = Vec::new();
        let mut all_fds = Vec::new();
        let mut buf = vec![0u8; 65536];
        let mut first = true;
        while got.len() < expected.len() {
            let (n, fds) = recv_with_fds(b.as_fd(), &mut buf, 1).expect("recv");
            assert!(n > 0);
            if first {
                assert_eq!(fds.len(), 1, "fds come with the first chunk");
                first = false;
            } else {
                assert!(fds.is_empty());
            }
            got.extend_from_slice(&buf[..n]);
            all_fds.extend(fds);
        }
        sender.join().expect("sender");
        assert_eq!(got, expected);
        assert_eq!(all_fds.len(), 1);
    }

    #[test]
    fn too_many_fds_are_all_closed_and_reported() {
        let (a, b) = UnixStream::pair().expect("pair");
        for max in [0, 1, 3] {
            // Send the write ends of four pipes. If the receiver leaked any copy, the
            // matching read end would never see end-of-file once we close ours: that
            // is a leak check that parallel tests cannot disturb.
            let pipes: Vec<(OwnedFd, OwnedFd)> = (0..4)
                .map(|_| nix::unistd::pipe2(nix::fcntl::OFlag::O_NONBLOCK).expect("pipe"))
                .collect();
            let ends: Vec<BorrowedFd<'_>> = pipes.iter().map(|(_, w)| w.as_fd()).collect();
            send_with_fds(a.as_fd(), b"x", &ends).expect("send");
            let mut buf = [0u8; 4];
            let err = recv_with_fds(b.as_fd(), &mut buf, max).expect_err("truncated");
            assert_eq!(err.kind(), io::ErrorKind::InvalidData, "max_fds={max}");
            for (i, (r, w)) in pipes.into_iter().enumerate() {
                drop(w);
                let mut byte = [0u8; 1];
                assert_eq!(
                    nix::unistd::read(r.as_raw_fd(), &mut byte),
                    Ok(0),
                    "write end {i} leaked (max_fds={max})"
                );
            }
        }
    }

    #[test]
    fn would_block_and_invalid_input() {
        let (a, b) = UnixStream::pair().expect("pair");
        b.set_nonblocking(true).expect("nonblocking");
        let mut buf = [0u8; 4];
        let err = recv_with_fds(b.as_fd(), &mut buf, 1).expect_err("nothing to read");
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
        let err = recv_with_fds(b.as_fd(), &mut [], 1).expect_err("empty buffer");
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        let err = send_with_fds(a.as_fd(), b"", &[b.as_fd()]).expect_err("fds need data");
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    }

    #[test]
    fn send_to_closed_peer_is_broken_pipe_not_sigpipe() {
        let (a, b) = UnixStream::pair().expect("pair");
        drop(b);
        // Without MSG_NOSIGNAL this would kill the test process with SIGPIPE.
        let err = send_with_fds(a.as_fd(), b"x", &[]).expect_err("peer closed");
        assert_eq!(err.kind(), io::ErrorKind::BrokenPipe);
    }

    #[test]
    fn recv_survives_signals() {
        use crate::os::test_util::{pester_current_thread, signals_handled};
        use std::time::Duration;

        let (mut a, b) = UnixStream::pair().expect("pair");
        let before = signals_handled();
        let writer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(250));
            a.write_all(b"late").expect("write");
        });
        let pester = pester_current_thread(5, Duration::from_millis(20));
        let mut buf = [0u8; 8];
        let (n, fds) = recv_with_fds(b.as_fd(), &mut buf, 1).expect("EINTR is retried");
        let during = signals_handled() - before;
        assert_eq!((&buf[..n], fds.len()), (&b"late"[..], 0));
        drop(pester);
        writer.join().expect("writer");
        assert!(during >= 3, "only {during} signals hit the receive");
        let mut rest = Vec::new();
        (&b).read_to_end(&mut rest).expect("eof");
        assert!(rest.is_empty());
    }
}
