//! SPSC behaviour: contents, order, wrap at every offset, full/empty, batches, zero copy.
#![cfg(not(loom))]
#![allow(clippy::unwrap_used)]

use coroipc_ring::heap::channel;
use coroipc_ring::{max_message_len, Config, PopError, PushError, Wake};

fn pattern(seed: usize, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (seed.wrapping_mul(31).wrapping_add(i * 7)) as u8)
        .collect()
}

#[test]
fn send_recv_roundtrip_all_small_lengths() {
    let cfg = Config::new(256);
    let (mut p, mut c) = channel(&cfg).unwrap();
    let max = p.max_message_len();
    assert_eq!(max, 120);
    let mut buf = vec![0u8; max];
    for len in 0..=max {
        let msg = pattern(len, len);
        let _ = p.try_send(&msg).unwrap();
        let got = c.try_recv(&mut buf).unwrap().expect("message");
        assert_eq!(&buf[..got.len], &msg[..]);
    }
    assert!(c.try_recv(&mut buf).unwrap().is_none());
}

#[test]
fn wrap_at_every_offset() {
    // For every starting offset of a small ring and every message length, the message
    // arrives intact whether it fits before the end or is padded to the start.
    let cfg = Config::new(64);
    let max = max_message_len(64);
    for start in (0..64).step_by(8) {
        for len in 0..=max {
            let (mut p, mut c) = channel(&cfg).unwrap();
            let mut advanced = 0;
            while advanced < start {
                let fill = (start - advanced - 8).min(max);
                let _ = p.try_send(&vec![9; fill]).unwrap();
                let _ = c.try_recv_vec().unwrap().unwrap();
                advanced += 8 + fill.div_ceil(8) * 8;
            }
            for round in 0..3 {
                let msg = pattern(start + len + round, len);
                let _ = p.try_send(&msg).unwrap();
                let (got, _) = c.try_recv_vec().unwrap().unwrap();
                assert_eq!(got, msg, "start {start} len {len} round {round}");
            }
        }
    }
}

#[test]
fn too_large_and_full_are_typed_and_lose_nothing() {
    let cfg = Config::new(64);
    let (mut p, mut c) = channel(&cfg).unwrap();
    assert_eq!(
        p.try_send(&[0; 25]),
        Err(PushError::TooLarge { len: 25, max: 24 })
    );
    // 64 bytes: a 32-byte and a 24-byte frame fill it (an SPSC ring keeps its last 8
    // bytes free, SPEC §1.3a).
    let _ = p.try_send(&[1; 24]).unwrap();
    let _ = p.try_send(&[2; 16]).unwrap();
    assert_eq!(p.try_send(&[]), Err(PushError::Full));
    let mut small = [0u8; 4];
    assert_eq!(
        c.try_recv(&mut small),
        Err(PopError::BufferTooSmall { needed: 24 })
    );
    let (a, _) = c.try_recv_vec().unwrap().unwrap();
    assert_eq!(a, vec![1; 24]);
    let _ = p.try_send(&[3; 8]).unwrap();
    let (b, _) = c.try_recv_vec().unwrap().unwrap();
    assert_eq!(b, vec![2; 16]);
    let (d, _) = c.try_recv_vec().unwrap().unwrap();
    assert_eq!(d, vec![3; 8]);
    assert!(c.try_recv_vec().unwrap().is_none());
}

#[test]
fn max_message_always_fits_an_empty_ring() {
    for cap in [32usize, 64, 128, 1024] {
        let cfg = Config::new(cap);
        let max = max_message_len(cap);
        for start in (0..cap).step_by(8) {
            let (mut p, mut c) = channel(&cfg).unwrap();
            let mut advanced = 0;
            while advanced < start {
                let len = (start - advanced - 8).min(max);
                let _ = p.try_send(&vec![0; len]).unwrap();
                let _ = c.try_recv_vec().unwrap().unwrap();
                advanced += 8 + len.div_ceil(8) * 8;
            }
            let _ = p.try_send(&vec![7; max]).unwrap();
            assert_eq!(c.try_recv_vec().unwrap().unwrap().0, vec![7; max]);
        }
    }
}

#[test]
fn vectored_send_concatenates() {
    let (mut p, mut c) = channel(&Config::new(128)).unwrap();
    let _ = p
        .try_send_vectored(&[b"he", b"", b"llo", b" world"])
        .unwrap();
    assert_eq!(c.try_recv_vec().unwrap().unwrap().0, b"hello world");
}

#[test]
fn zero_copy_reserve_commit_peek_release() {
    let (mut p, mut c) = channel(&Config::new(128)).unwrap();
    let mut g = p.try_reserve(16).unwrap();
    g.write_at(0, b"0123456789abcdef");
    g.truncate(10);
    let _ = g.commit();
    {
        let g = c.try_peek().unwrap().unwrap();
        assert_eq!(g.to_vec(), b"0123456789");
        let mut mid = [0; 4];
        g.read_at(3, &mut mid);
        assert_eq!(&mid, b"3456");
        // Dropped: stays in the ring.
    }
    let g = c.try_peek().unwrap().unwrap();
    assert_eq!(g.len(), 10);
    let _ = g.release();
    assert!(c.try_peek().unwrap().is_none());
    // An abandoned reservation publishes nothing.
    drop(p.try_reserve(8).unwrap());
    let _ = p.publish();
    assert!(c.try_peek().unwrap().is_none());
}

#[test]
fn batches_publish_and_release_once() {
    let (mut p, mut c) = channel(&Config::new(128)).unwrap();
    for i in 0..5u8 {
        p.try_stage(&[i; 3]).unwrap();
    }
    assert_eq!(p.staged_bytes(), 5 * 16);
    // Not in the tail yet: a consumer about to sleep sleeps (the publish wakes it)...
    assert!(c.prepare_sleep().unwrap().sleep);
    assert_eq!(p.publish().wake, Wake::Needed);
    c.cancel_sleep();
    assert_eq!(p.staged_bytes(), 0);
    // ...and one that looks finds them whole, in order, staged or published: a
    // linked ring's consumer probes the header at its position (SPEC §1.3a).
    p.try_stage(&[9; 3]).unwrap();
    for i in 0..5u8 {
        let g = c.try_peek().unwrap().unwrap();
        assert_eq!(g.to_vec(), [i; 3]);
        g.consume();
    }
    let g = c.try_peek().unwrap().unwrap();
    assert_eq!(g.to_vec(), [9; 3], "a staged message, found by its header");
    g.consume();
    let _ = p.publish();
    assert!(c.try_peek().unwrap().is_none(), "each message once");
    assert_eq!(c.consumed_bytes(), 96);
    // Not yet released: the producer still sees the space as used.
    // 32 bytes to the end: a 56-byte frame pads 32 and wraps, needing 88 free bytes
    // and the word after them.
    assert_eq!(p.try_send(&[0; 48]).map(|_| ()), Err(PushError::Full));
    let _ = c.release();
    let _ = p.try_send(&[0; 48]).unwrap();
}

#[test]
fn sleep_protocol_single_thread() {
    let (mut p, mut c) = channel(&Config::new(128)).unwrap();
    // Consumer finds nothing and announces sleep.
    let s = c.prepare_sleep().unwrap();
    assert!(s.sleep);
    // The first publish must wake it; the second need not (flag cleared by the swap).
    assert_eq!(p.try_send(b"a").unwrap().wake, Wake::Needed);
    assert_eq!(p.try_send(b"b").unwrap().wake, Wake::NotNeeded);
    c.cancel_sleep();
    // Data present: announcing sleep is refused.
    assert!(!c.prepare_sleep().unwrap().sleep);
    // Producer side: fill, announce, consumer's release wakes it.
    let (mut p, mut c) = channel(&Config::new(64)).unwrap();
    let _ = p.try_send(&[1; 16]).unwrap();
    let _ = p.try_send(&[1; 16]).unwrap();
    let s = p.prepare_sleep_for_space(24).unwrap();
    assert!(s.sleep);
    let g = c.try_peek().unwrap().unwrap();
    assert_eq!(g.release(), Wake::Needed);
    let g = c.try_peek().unwrap().unwrap();
    assert_eq!(g.release(), Wake::NotNeeded);
    p.cancel_sleep();
    assert!(!p.prepare_sleep_for_space(24).unwrap().sleep);
    // Cancelled sleep: no wake-up for a side that is awake.
    let (mut p, mut c) = channel(&Config::new(64)).unwrap();
    assert!(c.prepare_sleep().unwrap().sleep);
    c.cancel_sleep();
    assert_eq!(p.try_send(b"x").unwrap().wake, Wake::NotNeeded);
}

#[test]
fn polls_during_an_announced_sleep_find_nothing_then_the_message() {
    // The consumer's sleep flag rides on the tail: a poll before `cancel_sleep` sees
    // the tail with it set and must read that as "nothing new", not as a new tail.
    let (mut p, mut c) = channel(&Config::new(128)).unwrap();
    let _ = p.try_send(b"first").unwrap();
    assert_eq!(c.try_recv_vec().unwrap().unwrap().0, b"first");
    assert!(c.prepare_sleep().unwrap().sleep);
    for _ in 0..3 {
        assert!(c.try_peek().unwrap().is_none());
        assert_eq!(c.pending_bytes().unwrap(), 0);
    }
    assert_eq!(p.try_send(b"second").unwrap().wake, Wake::Needed);
    assert_eq!(c.try_recv_vec().unwrap().unwrap().0, b"second");
    c.cancel_sleep();
    assert!(c.try_peek().unwrap().is_none());
    let _ = p.try_send(b"third").unwrap();
    assert_eq!(c.try_recv_vec().unwrap().unwrap().0, b"third");
    assert!(c.corruption().is_none());
}

#[test]
fn consumer_publishes_consumed_before_sleeping() {
    let (mut p, mut c) = channel(&Config::new(64)).unwrap();
    let _ = p.try_send(&[1; 16]).unwrap();
    let _ = p.try_send(&[1; 16]).unwrap();
    assert!(p.prepare_sleep_for_space(24).unwrap().sleep);
    c.try_peek().unwrap().unwrap().consume();
    c.try_peek().unwrap().unwrap().consume();
    let s = c.prepare_sleep().unwrap();
    assert!(s.sleep);
    assert_eq!(
        s.wake_peer,
        Wake::Needed,
        "the sleeping producer must be woken"
    );
}

#[test]
fn two_threads_sequence_and_checksum() {
    let n: u64 = if cfg!(miri) { 200 } else { 200_000 };
    let (mut p, mut c) = channel(&Config::new(1024)).unwrap();
    let t = std::thread::spawn(move || {
        for i in 0..n {
            let len = 8 + (i as usize * 13) % 100;
            let mut msg = pattern(i as usize, len);
            msg[..8].copy_from_slice(&i.to_le_bytes());
            loop {
                match p.try_send(&msg) {
                    Ok(_) => break,
                    Err(PushError::Full) => std::thread::yield_now(),
                    Err(e) => panic!("{e}"),
                }
            }
        }
    });
    let mut expected = 0u64;
    while expected < n {
        match c.try_peek().unwrap() {
            Some(g) => {
                let s = &g.to_vec()[..];
                let seq = u64::from_le_bytes(s[..8].try_into().unwrap());
                assert_eq!(seq, expected);
                let mut want = pattern(seq as usize, s.len());
                want[..8].copy_from_slice(&seq.to_le_bytes());
                assert_eq!(s, &want[..]);
                let _ = g.release();
                expected += 1;
            }
            None => std::thread::yield_now(),
        }
    }
    t.join().unwrap();
}

/// The zero-copy slices, for a peer the caller trusts (here: this very test).
#[test]
fn trusted_slices_and_partial_words() {
    let (mut p, mut c) = channel(&Config::new(128)).unwrap();
    let mut g = p.try_reserve(13).unwrap();
    // SAFETY: the consumer is this thread, which does not touch the bytes meanwhile.
    unsafe { g.as_mut_slice_trusted() }.copy_from_slice(b"abcdefghijklm");
    g.write_at(5, b"XYZ"); // a partial word merged with its neighbours
    let _ = g.commit();
    let mut g = p.try_reserve(11).unwrap();
    g.fill(9);
    g.write_at(10, &[1]);
    let _ = g.commit();
    let g = c.try_peek().unwrap().unwrap();
    // SAFETY: the producer is this thread and does not write the message meanwhile.
    assert_eq!(unsafe { g.as_slice_trusted() }, b"abcdeXYZijklm");
    let mut b = [0; 1];
    g.read_at(12, &mut b);
    assert_eq!(b, [b'm']);
    let _ = g.release();
    let mut buf = [0u8; 11];
    let r = c.try_recv(&mut buf).unwrap().unwrap();
    assert_eq!(&buf[..r.len], &[9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 1]);
}

#[test]
#[should_panic(expected = "read past the payload")]
fn read_at_past_the_payload_panics() {
    let (mut p, mut c) = channel(&Config::new(128)).unwrap();
    let _ = p.try_send(b"abc").unwrap();
    let g = c.try_peek().unwrap().unwrap();
    g.read_at(2, &mut [0; 2]);
}

/// `copy_from` moves a received message (or part of it) into another ring's grant,
/// SPSC and MPSC, on both sides of the bulk-copy threshold and at odd offsets.
#[test]
fn copy_from_forwards_between_rings() {
    use coroipc_ring::heap::mpsc_channel;
    let (mut src_tx, mut src_rx) = channel(&Config::new(1 << 16)).unwrap();
    let (mut dst_tx, mut dst_rx) = channel(&Config::new(1 << 16)).unwrap();
    let (mpsc_tx, mut mpsc_rx) = mpsc_channel(&Config::new(1 << 16)).unwrap();
    for len in [0usize, 5, 255, 256, 257, 3001] {
        let msg: Vec<u8> = (0..len).map(|i| (i * 13 + len) as u8).collect();
        let _ = src_tx.try_send(&msg).unwrap();
        let grant = src_rx.try_peek().unwrap().unwrap();
        // Whole message, after a 3-byte prefix.
        let mut out = dst_tx.try_reserve(len + 3).unwrap();
        out.write_at(0, b"abc");
        out.copy_from(3, &grant, 0, len);
        let _ = out.commit();
        // The tail from byte 1, into the MPSC ring.
        let tail = len.saturating_sub(1);
        let mut out = mpsc_tx.try_reserve(tail).unwrap();
        out.copy_from(0, &grant, len - tail, tail);
        let _ = out.commit();
        let _ = grant.release();
        let got = dst_rx.try_recv_vec().unwrap().unwrap().0;
        assert_eq!(&got[..3], b"abc");
        assert_eq!(&got[3..], &msg[..], "len {len}");
        let got = mpsc_rx.try_recv_vec().unwrap().unwrap().0;
        assert_eq!(&got[..], &msg[len - tail..], "len {len}");
    }
}

#[test]
#[should_panic(expected = "past the payload")]
fn copy_from_past_the_source_panics() {
    let (mut src_tx, mut src_rx) = channel(&Config::new(4096)).unwrap();
    let (mut dst_tx, _dst_rx) = channel(&Config::new(4096)).unwrap();
    let _ = src_tx.try_send(&[1; 10]).unwrap();
    let grant = src_rx.try_peek().unwrap().unwrap();
    let mut out = dst_tx.try_reserve(20).unwrap();
    out.copy_from(0, &grant, 5, 6);
}

/// Ring audit M2: swapping two grants' views through `DerefMut` must not make a commit
/// write a frame for more than its grant reserved (here: ring A's 8-byte reservation
/// committed as a 100-byte message, reading stale free space). A view that is not the
/// grant's own commits nothing.
#[test]
fn swapped_grant_views_commit_nothing() {
    let (mut tx_a, mut rx_a) = channel(&Config::new(256)).unwrap();
    let (mut tx_b, mut rx_b) = channel(&Config::new(256)).unwrap();
    let mut ga = tx_a.try_reserve(0).unwrap();
    let mut gb = tx_b.try_reserve(100).unwrap();
    core::mem::swap(&mut *ga, &mut *gb);
    let _ = ga.commit();
    let _ = gb.commit();
    assert_eq!((tx_a.position(), tx_b.position()), (0, 0));
    assert!(rx_a.try_recv_vec().unwrap().is_none());
    assert!(rx_b.try_recv_vec().unwrap().is_none());
    // Both rings go on; a grant's own view still commits as usual.
    let mut g = tx_a.try_reserve(10).unwrap();
    g.write_at(0, b"0123456789");
    g.skip_prefix(2);
    g.truncate(3);
    let _ = g.commit();
    let _ = tx_b.try_send(b"b").unwrap();
    assert_eq!(rx_a.try_recv_vec().unwrap().unwrap().0, b"01234");
    assert_eq!(rx_b.try_recv_vec().unwrap().unwrap().0, b"b");
    assert_eq!((rx_a.corruption(), rx_b.corruption()), (None, None));
}

/// Ring audit L3: the public size helpers are total on unvalidated capacities (they
/// underflowed or overflowed, a panic in debug builds).
#[test]
fn size_helpers_saturate_on_unvalidated_capacities() {
    assert_eq!(max_message_len(8), 0);
    assert_eq!(max_message_len(0), 0);
    assert_eq!(Config::new(8).max_message_len(), 0);
    assert_eq!(max_message_len(16), 0);
    assert_eq!(max_message_len(64), 24);
    assert_eq!(coroipc_ring::region_size(usize::MAX), usize::MAX);
    assert_eq!(Config::new(usize::MAX).region_size(), usize::MAX);
    assert_eq!(
        coroipc_ring::region_size(64),
        coroipc_ring::offsets::DATA + 64
    );
}
