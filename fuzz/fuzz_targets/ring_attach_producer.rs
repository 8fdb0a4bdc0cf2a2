//! A ring made by a hostile peer (fuzzer-chosen indices and frames) attached as a
//! `Producer`, then fuzzer-chosen operations with hostile writes between them; the
//! oracle (`coroipc_proptest::run_attached`) checks invariants after every step.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(e) = coroipc_proptest::run_attached(coroipc_proptest::Side::Producer, data) {
        panic!("{e}");
    }
});
