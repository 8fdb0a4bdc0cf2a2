//! Fuzz bytes written into the shared header and data between operations: the side
//! under test must return errors (sticky once corrupt) and never crash.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&first, rest)) = data.split_first() else { return };
    let capacity = 1usize << (5 + first % 4); // 32 ..= 256
    let split = rest.len() / 3;
    let (ops, garbage) = rest.split_at(split);
    let ops = coroipc_proptest::Op::from_bytes(ops, coroipc_ring::max_message_len(capacity));
    if let Err(e) = coroipc_proptest::run_hostile(capacity, &ops, garbage) {
        panic!("{e}");
    }
});
