//! Operation sequences against the reference model: contents, order and every
//! Full/TooLarge/BufferTooSmall outcome must match.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&first, rest)) = data.split_first() else { return };
    let capacity = 1usize << (5 + first % 6); // 32 ..= 1024
    let ops = coroipc_proptest::Op::from_bytes(rest, coroipc_ring::max_message_len(capacity));
    if let Err(divergence) = coroipc_proptest::run_model(capacity, &ops) {
        panic!("ring diverged from the model: {divergence}");
    }
});
