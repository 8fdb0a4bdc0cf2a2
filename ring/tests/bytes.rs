//! The byte views of the grants: a skipped prefix stays in the message, the view and
//! `truncate` count from after it, and the views copy soundly ring to ring.
#![cfg(not(loom))]
#![allow(clippy::unwrap_used)]

use coroipc_ring::heap::{channel, mpsc_channel};
use coroipc_ring::Config;

#[test]
fn a_skipped_prefix_is_sent_and_hidden_on_both_sides() {
    let (mut p, mut c) = channel(&Config::new(1024)).unwrap();
    let mut g = p.try_reserve(4 + 10).unwrap();
    g.write_at(0, b"HEAD");
    g.skip_prefix(4);
    assert_eq!(g.len(), 10, "the view is the payload");
    g.fill(b'x');
    g.write_at(0, b"ab");
    g.truncate(3);
    assert_eq!(g.len(), 3);
    let _ = g.commit();

    let mut r = c.try_peek().unwrap().unwrap();
    assert_eq!(r.len(), 7, "header and the truncated payload");
    assert_eq!(r.to_vec(), b"HEADabx");
    r.skip_prefix(4);
    assert_eq!(r.to_vec(), b"abx");
    let mut two = [0u8; 2];
    assert_eq!(r.read_into(&mut two), 2);
    assert_eq!(&two, b"ab");
    r.skip_prefix(100);
    assert!(r.is_empty(), "skipping past the end leaves nothing");
    let _ = r.release();
    assert!(c.try_peek().unwrap().is_none());
}

#[test]
fn skipping_more_than_the_grant_hides_all_and_sends_all() {
    let (mut p, mut c) = channel(&Config::new(1024)).unwrap();
    let mut g = p.try_reserve(3).unwrap();
    g.write_at(0, b"abc");
    g.skip_prefix(8);
    assert!(g.is_empty());
    g.truncate(0);
    let _ = g.commit();
    assert_eq!(c.try_recv_vec().unwrap().unwrap().0, b"abc");
}

#[test]
fn mpsc_grants_skip_and_copy_from_a_read_view() {
    let (src_p, mut src_c) = mpsc_channel(&Config::new(1024)).unwrap();
    let _ = src_p.try_send(b"hdr:payload").unwrap();
    let mut msg = src_c.try_peek().unwrap().unwrap();
    msg.skip_prefix(4);

    let (dst_p, mut dst_c) = mpsc_channel(&Config::new(1024)).unwrap();
    let mut g = dst_p.try_reserve(2 + msg.len()).unwrap();
    g.write_at(0, b"R:");
    g.skip_prefix(2);
    let n = msg.len();
    g.copy_from(0, &msg, 0, n);
    let _ = g.commit();
    let _ = msg.release();
    assert_eq!(dst_c.try_recv_vec().unwrap().unwrap().0, b"R:payload");
}
