//! Properties of coroipc-ring: random operation sequences against the model, a
//! two-thread stream with sequence numbers and checksums (with the sleep protocol),
//! and hostile memory.
#![allow(clippy::unwrap_used)]

use std::sync::{Arc, Condvar, Mutex};

use coroipc_proptest::{run_attached, run_hostile, run_model, run_model_at, Op, Side};
use coroipc_ring::heap::{channel, mpsc_channel};
use coroipc_ring::{max_message_len, Config, PushError};
use proptest::prelude::*;

fn capacity() -> impl Strategy<Value = usize> {
    (5u32..=12).prop_map(|b| 1usize << b)
}

fn op(max: usize) -> impl Strategy<Value = Op> {
    let len = prop_oneof![8 => 0..=max, 1 => Just(max), 1 => Just(max + 1)];
    prop_oneof![
        4 => len.clone().prop_map(Op::Send),
        1 => proptest::collection::vec(0..=max / 3, 0..4).prop_map(Op::SendVectored),
        2 => (len.clone(), 0..=max).prop_map(|(l, k)| Op::ReserveCommit(l, k)),
        1 => len.clone().prop_map(Op::ReserveDrop),
        2 => len.clone().prop_map(Op::Stage),
        1 => Just(Op::Publish),
        3 => Just(Op::PeekRelease),
        2 => Just(Op::PeekConsume),
        1 => Just(Op::PeekDrop),
        1 => Just(Op::PeekLeaveTake),
        1 => Just(Op::Release),
        3 => (0..=max + 8).prop_map(Op::Recv),
        1 => Just(Op::ConsumerSleep),
        1 => Just(Op::ConsumerCancel),
        1 => len.clone().prop_map(Op::ProducerSleep),
        1 => Just(Op::ProducerSleepFlowOff),
        1 => Just(Op::ProducerCancel),
        1 => Just(Op::PollFlow),
    ]
}

fn case() -> impl Strategy<Value = (usize, Vec<Op>)> {
    capacity().prop_flat_map(|cap| {
        (
            Just(cap),
            proptest::collection::vec(op(max_message_len(cap)), 1..200),
        )
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(if cfg!(debug_assertions) { 300 } else { 2000 }))]

    /// Every outcome (Ok, Full, TooLarge, BufferTooSmall), content and order matches
    /// the model, including exactly when the ring is full.
    #[test]
    fn ring_matches_model((cap, ops) in case()) {
        run_model(cap, &ops).map_err(TestCaseError::fail)?;
    }

    /// The same from a start position a creator chose near 2^64: positions wrap.
    #[test]
    fn ring_matches_model_across_2_64((cap, ops) in case(), back in 0u64..2048) {
        run_model_at(cap, 0u64.wrapping_sub(back * 8), &ops).map_err(TestCaseError::fail)?;
    }

    /// Garbage written into the region between operations: errors, never panics, and
    /// corruption is sticky.
    #[test]
    fn hostile_memory_never_panics((cap, ops) in case(), garbage in proptest::collection::vec(any::<u8>(), 0..2000)) {
        run_hostile(cap, &ops, &garbage).map_err(TestCaseError::fail)?;
    }

    /// Every handle attached to a region a hostile peer made, then run under hostile
    /// writes: the invariants of `run_attached` hold after every step.
    #[test]
    fn attached_to_hostile_peer(
        side in prop_oneof![Just(Side::Consumer), Just(Side::Producer), Just(Side::Mpsc)],
        data in proptest::collection::vec(any::<u8>(), 0..1500),
    ) {
        run_attached(side, &data).map_err(TestCaseError::fail)?;
    }

    /// MPSC driven from one thread behaves like a FIFO with the same sizes.
    #[test]
    fn mpsc_single_thread_fifo(cap in capacity(), lens in proptest::collection::vec(0usize..64, 1..100)) {
        let (p, mut c) = mpsc_channel(&Config::new(cap)).unwrap();
        let max = p.max_message_len();
        let mut model = std::collections::VecDeque::new();
        for (i, len) in lens.iter().enumerate() {
            let msg = vec![i as u8; (*len).min(max)];
            match p.try_send(&msg) {
                Ok(_) => model.push_back(msg),
                Err(PushError::Full) => {
                    let (got, _) = c.try_recv_vec().unwrap().unwrap();
                    prop_assert_eq!(Some(got), model.pop_front());
                }
                Err(e) => return Err(TestCaseError::fail(e.to_string())),
            }
        }
        while let Some((got, _)) = c.try_recv_vec().unwrap() {
            prop_assert_eq!(Some(got), model.pop_front());
        }
        prop_assert!(model.is_empty());
    }
}

#[derive(Default)]
struct Bell {
    rung: Mutex<bool>,
    cond: Condvar,
}

impl Bell {
    fn ring(&self) {
        *self.rung.lock().unwrap() = true;
        self.cond.notify_one();
    }
    fn wait(&self) {
        let mut r = self.rung.lock().unwrap();
        while !*r {
            r = self.cond.wait(r).unwrap();
        }
        *r = false;
    }
}

fn fnv(data: &[u8]) -> u32 {
    data.iter().fold(0x811c_9dc5u32, |h, b| {
        (h ^ u32::from(*b)).wrapping_mul(0x0100_0193)
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// Two threads, both sleeping through the protocol when they must: every message
    /// arrives once, in order, intact; nobody sleeps forever.
    #[test]
    fn two_threads_with_sleep(cap in capacity(), lens in proptest::collection::vec(0usize..200, 1..3000)) {
        let (mut p, mut c) = channel(&Config::new(cap)).unwrap();
        let max = p.max_message_len();
        let (to_consumer, to_producer) = (Arc::new(Bell::default()), Arc::new(Bell::default()));
        let (tc, tp) = (to_consumer.clone(), to_producer.clone());
        let n = lens.len();
        let lens2 = lens.clone();
        let producer = std::thread::spawn(move || {
            for (i, len) in lens2.iter().enumerate() {
                let len = (*len).min(max).max(8);
                let mut msg: Vec<u8> = (0..len).map(|j| (i * 31 + j) as u8).collect();
                msg[..4].copy_from_slice(&(i as u32).to_le_bytes());
                let sum = fnv(&msg[8..]);
                msg[4..8].copy_from_slice(&sum.to_le_bytes());
                loop {
                    match p.try_send(&msg) {
                        Ok(published) => {
                            if published.wake.is_needed() { tc.ring(); }
                            break;
                        }
                        Err(PushError::Full) => {
                            let check = p.prepare_sleep_for_space(len).unwrap();
                            if check.wake_peer.is_needed() { tc.ring(); }
                            if check.sleep { tp.wait(); p.cancel_sleep(); }
                        }
                        Err(e) => panic!("{e}"),
                    }
                }
            }
        });
        for i in 0..n {
            loop {
                if let Some(g) = c.try_peek().unwrap() {
                    let m = &g.to_vec()[..];
                    prop_assert_eq!(u32::from_le_bytes(m[..4].try_into().unwrap()), i as u32);
                    prop_assert_eq!(u32::from_le_bytes(m[4..8].try_into().unwrap()), fnv(&m[8..]));
                    if g.release().is_needed() { to_producer.ring(); }
                    break;
                }
                let check = c.prepare_sleep().unwrap();
                if check.wake_peer.is_needed() { to_producer.ring(); }
                if check.sleep { to_consumer.wait(); c.cancel_sleep(); }
            }
        }
        producer.join().unwrap();
    }
}
