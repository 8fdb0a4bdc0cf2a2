//! Arbitrary bytes as a client's handshake into a real (in-process) server: it must
//! answer or drop the client, never crash, and keep no state for dropped clients.
#![no_main]

use std::cell::RefCell;
use std::io::Write;

use libfuzzer_sys::fuzz_target;

#[path = "harness.rs"]
mod harness;

thread_local! {
    static SERVER: RefCell<Option<(coroipc::Server, harness::Watched, coroipc::SocketName)>> = const { RefCell::new(None) };
}

fuzz_target!(|data: &[u8]| {
    SERVER.with(|cell| {
        let mut cell = cell.borrow_mut();
        let (server, watched, name) = cell.get_or_insert_with(|| harness::server("handshake"));
        let Ok(mut stream) = coroipc::raw::connect(name, None) else { return };
        let _ = stream.write_all(&data[..data.len().min(256)]);
        let _ = stream.shutdown(std::net::Shutdown::Write);
        harness::pump(server, watched);
        drop(stream);
        harness::pump(server, watched);
        assert_eq!(server.pending_count(), 0, "a closed or timed-out handshake is dropped");
        assert_eq!(server.connection_count(), 0, "the client is gone");
    });
});
