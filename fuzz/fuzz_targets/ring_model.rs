//! Operation sequences against the reference model: contents, order, every
//! Full/TooLarge/BufferTooSmall outcome, every `Wake`, sleep answer and flow-control
//! transition must match, from a start position that may be just below 2^64.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&first, rest)) = data.split_first() else { return };
    let capacity = 1usize << (5 + first % 6); // 32 ..= 1024
    let start = 0u64.wrapping_sub(u64::from(first >> 3) * 24);
    let ops = coroipc_proptest::Op::from_bytes(rest, coroipc_ring::max_message_len(capacity));
    if let Err(divergence) = coroipc_proptest::run_model_at(capacity, start, &ops) {
        panic!("ring diverged from the model: {divergence}");
    }
});
