//! Watermarks: flow control turns on at the high mark and off at the low mark.
#![cfg(not(loom))]
#![allow(clippy::unwrap_used)]

use coroipc_ring::heap::channel;
use coroipc_ring::{Config, ConfigError, FlowChange};

#[test]
fn hysteresis() {
    // 256 bytes; 24-byte frames (16-byte payloads). On at >= 192, off at <= 64.
    let cfg = Config::new(256).with_watermarks(192, 64);
    let (mut p, mut c) = channel(&cfg).unwrap();
    let mut changes = vec![];
    for _ in 0..8 {
        let r = p.try_send(&[0; 16]).unwrap();
        changes.extend(r.flow);
    }
    assert_eq!(
        changes,
        vec![FlowChange::On],
        "8 x 24 = 192 bytes reaches the mark"
    );
    assert!(p.flow_control());
    assert!(c.flow_control(), "the consumer sees the published state");
    // Draining to 96 bytes is not enough.
    for _ in 0..4 {
        let _ = c.try_recv_vec().unwrap().unwrap();
    }
    assert_eq!(p.poll_flow().unwrap(), None);
    // Down to 48 (<= 64): off.
    for _ in 0..2 {
        let _ = c.try_recv_vec().unwrap().unwrap();
    }
    assert_eq!(p.poll_flow().unwrap(), Some(FlowChange::Off));
    assert!(!p.flow_control());
    assert!(!c.flow_control());
    assert_eq!(p.poll_flow().unwrap(), None);
}

#[test]
fn producer_sleeps_until_flow_off() {
    let cfg = Config::new(256).with_watermarks(192, 64);
    let (mut p, mut c) = channel(&cfg).unwrap();
    for _ in 0..8 {
        let _ = p.try_send(&[0; 16]).unwrap();
    }
    assert!(p.prepare_sleep_for_flow_off().unwrap().sleep);
    let mut wakes = 0;
    for _ in 0..6 {
        let g = c.try_peek().unwrap().unwrap();
        if g.release().is_needed() {
            wakes += 1;
            // The producer re-evaluates when woken, and re-announces while above low.
            p.cancel_sleep();
            let _ = p.poll_flow().unwrap();
            if p.flow_control() {
                assert!(p.prepare_sleep_for_flow_off().unwrap().sleep);
            }
        }
    }
    assert!(wakes >= 1);
    assert!(!p.flow_control());
}

#[test]
fn bad_configs_are_rejected() {
    assert_eq!(
        Config::new(100).validate(),
        Err(ConfigError::BadCapacity(100))
    );
    assert_eq!(
        Config::new(16).validate(),
        Err(ConfigError::BadCapacity(16))
    );
    assert!(Config::new(64).with_watermarks(10, 10).validate().is_err());
    assert!(Config::new(64).with_watermarks(65, 10).validate().is_err());
    assert!(channel(&Config::new(48)).is_err());
}
