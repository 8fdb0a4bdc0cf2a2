//! Arbitrary request-ring contents (header and data, and the response/dispatch indices
//! the server reads) through the server's receive path: it serves or disconnects that
//! client, never crashes.
#![no_main]

use std::cell::RefCell;
use std::io::Write;
use std::os::fd::AsFd;

use coroipc::raw::{self, PeerBell, SharedMemory};
use coroipc::protocol::{ConnectReply, ConnectRequest, RegionLayout, CONNECT_FDS, CONNECT_REPLY_LEN};
use libfuzzer_sys::fuzz_target;

#[path = "harness.rs"]
mod harness;

thread_local! {
    static SERVER: RefCell<Option<(coroipc::Server, harness::Watched, coroipc::SocketName)>> = const { RefCell::new(None) };
}

fuzz_target!(|data: &[u8]| {
    SERVER.with(|cell| {
        let mut cell = cell.borrow_mut();
        let (server, watched, name) = cell.get_or_insert_with(|| harness::server("requests"));
        let Ok(mut stream) = raw::connect(name, None) else { return };
        let req = ConnectRequest { service: 1, request_ring: 4096, response_ring: 4096, dispatch_ring: 4096 };
        if stream.write_all(&req.encode()).is_err() {
            return;
        }
        harness::pump(server, watched);
        let mut buf = [0u8; CONNECT_REPLY_LEN];
        let Ok((n, fds)) = raw::recv_with_fds(stream.as_fd(), &mut buf, CONNECT_FDS) else { return };
        assert_eq!(n, CONNECT_REPLY_LEN, "an honest handshake is answered");
        let reply = ConnectReply::decode(&buf).expect("valid reply");
        assert_eq!(reply.status, 0);
        let layout = RegionLayout::new([reply.request_ring, reply.response_ring, reply.dispatch_ring]).expect("layout");
        let mut fds = fds.into_iter();
        let shm = SharedMemory::from_fd_verified(fds.next().expect("memfd"), layout.len).expect("sealed memfd");
        let server_end = fds.next().expect("server end");
        let bell = PeerBell::adopt(fds.next().expect("client end"), server_end).expect("socketpair");
        // Input: chunks of (target u8, offset u16, bytes up to 8); between chunks the
        // server is woken.
        for chunk in data.chunks(11) {
            if chunk.len() < 4 {
                break;
            }
            let (ring, span) = match chunk[0] % 4 {
                0 | 1 => (0, layout.rings[0].region_size()),
                2 => (1, 0x180),
                _ => (2, 0x180),
            };
            let off = layout.offsets[ring] + usize::from(u16::from_le_bytes([chunk[1], chunk[2]])) % (span - 8);
            for (i, b) in chunk[3..].iter().enumerate() {
                // SAFETY: inside our mapping of the region; the server only reads it.
                unsafe { shm.as_ptr().add(off + i).write_volatile(*b) };
            }
            let _ = bell.ring_peer();
            harness::pump(server, watched);
        }
        drop(stream);
        harness::pump(server, watched);
        assert_eq!(server.connection_count(), 0, "the client is gone");
    });
});
