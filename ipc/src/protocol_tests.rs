//! Unit tests of `protocol.rs`.
use super::*;

#[test]
fn handshake_roundtrip_and_rejects() {
    let r = ConnectRequest {
        service: 65535,
        request_ring: 1 << 16,
        response_ring: 1 << 12,
        dispatch_ring: 64,
    };
    assert_eq!(ConnectRequest::decode(&r.encode()), Ok(r));
    let mut bad = r.encode();
    bad[0] ^= 1;
    assert!(matches!(
        ConnectRequest::decode(&bad),
        Err(HandshakeError::Magic(_))
    ));
    let mut bad = r.encode();
    bad[4] = 9;
    assert_eq!(
        ConnectRequest::decode(&bad),
        Err(HandshakeError::Version(9))
    );
    assert_eq!(
        ConnectRequest::decode(&[0; 3]),
        Err(HandshakeError::Length(3))
    );
    let rep = ConnectReply {
        status: -3,
        request_ring: 1,
        response_ring: 2,
        dispatch_ring: 3,
        region_len: 9,
        connection_id: 7,
    };
    assert_eq!(ConnectReply::decode(&rep.encode()), Ok(rep));
}

#[test]
fn capacities_are_granted_within_limits() {
    assert_eq!(grant_capacity(0, 4096, 64, 1 << 20), 4096);
    assert_eq!(grant_capacity(5000, 4096, 64, 1 << 20), 8192);
    assert_eq!(grant_capacity(u32::MAX, 4096, 64, 1 << 20), 1 << 20);
    assert_eq!(grant_capacity(1, 4096, 64, 1 << 20), 64);
    assert_eq!(grant_capacity(3 << 19, 4096, 64, 3 << 19), 1 << 20);
}

#[test]
fn odd_limits_never_panic_and_stay_usable() {
    // min above max (a caller's mistake): max wins.
    assert_eq!(grant_capacity(0, 4096, 1 << 20, 4096), 4096);
    // Limits below the smallest usable ring, or absurdly large ones.
    assert_eq!(grant_capacity(0, 0, 0, 0), MIN_RING_CAPACITY as u32);
    assert_eq!(grant_capacity(32, 32, 32, 32), MIN_RING_CAPACITY as u32);
    assert_eq!(
        grant_capacity(u32::MAX, usize::MAX, usize::MAX, usize::MAX),
        coroipc_ring::MAX_CAPACITY as u32
    );
    for cap in [0, 1, 32, 64, 4096, 1 << 20] {
        let granted = grant_capacity(cap, 0, 0, 0) as usize;
        assert!(max_payload(granted) > 0);
    }
    // A server granting a ring too small for a header is refused.
    assert_eq!(
        RegionLayout::new([32, 4096, 4096]).map(|_| ()),
        Err(HandshakeError::Field("ring capacity"))
    );
    assert_eq!(max_payload(32), 0);
}

#[test]
fn layout_is_aligned_and_disjoint() {
    let l = RegionLayout::new([4096, 1 << 16, 64]).expect("valid");
    assert_eq!(l.offsets[0], 0);
    assert!(l.offsets[1] >= l.rings[0].region_size());
    assert_eq!(l.offsets[1] % RING_ALIGN, 0);
    assert!(l.offsets[2] >= l.offsets[1] + l.rings[1].region_size());
    assert!(l.len >= l.offsets[2] + l.rings[2].region_size());
    assert!(RegionLayout::new([100, 64, 64]).is_err());
}

#[test]
fn layout_arithmetic_refuses_to_wrap() {
    // Three 2 GiB rings wrap a 32-bit `usize`; the rounding is where it would.
    assert_eq!(align_up(usize::MAX - 10, RING_ALIGN), None);
    assert_eq!(align_up(4097, RING_ALIGN), Some(8192));
    let max = coroipc_ring::MAX_CAPACITY as u32;
    let l = RegionLayout::new([max; 3]);
    if usize::BITS > 32 {
        assert!(l.expect("fits 64 bits").len > 3 * (max as usize));
    } else {
        assert_eq!(l, Err(HandshakeError::Field("region size")));
    }
}

#[test]
fn headers_roundtrip() {
    let h = RequestHeader {
        id: u64::MAX,
        command: 65535,
    };
    assert_eq!(RequestHeader::decode(&h.encode()), Some(h));
    assert_eq!(RequestHeader::decode(&[0; 15]), None);
    let r = ResponseHeader { id: 3, status: -2 };
    assert_eq!(ResponseHeader::decode(&r.encode()), Some(r));
}
