//! Positions, and validation of the peer's index read from shared memory.
//!
//! # Positions are modulo 2^64
//!
//! A position is a byte count modulo 2^64: every addition is `wrapping_add`, and
//! positions are never compared with `<`/`>` but through their wrapping difference,
//! which the protocol keeps small (every valid position lies within `capacity <= 2^31`
//! bytes of the side's own index). So no position arithmetic can overflow, whatever a
//! creator wrote into the header at attach (a hostile creator may start the ring at
//! `2^64 - 16`) and however fast a hostile producer drives the consumer forward with
//! skip frames (about `capacity` bytes per step: 2^64 is minutes away, not decades).
//! The alternative, rejecting large positions at attach, would have left that second
//! path open and would kill a long-lived ring after 2^63 bytes.
//!
//! The hot path pays nothing for it: a wrapping add or subtract is the same instruction
//! as a plain one, and each bound check is one subtraction and one comparison, as
//! before. The window checks below (on the refresh path only) classify any 64-bit word.
//!
//! Each side trusts only its private copy of its own index and of the last peer index
//! it validated. A freshly read peer index must be 8-aligned (bit 0 is the sleep flag),
//! must not move backwards, and must stay inside the window the protocol allows.

use crate::error::Corruption;

/// Bit 0 of an index word: "the side that reads this index sleeps; wake it".
pub(crate) const SLEEP_BIT: u64 = 1;
/// Bits of an index word that must be zero (frames are 8-aligned).
pub(crate) const MISALIGN_BITS: u64 = 0b110;

/// Forward distance from `from` to `to`, or 0 if `to` is behind `from` (modulo 2^64,
/// "behind" meaning less than 2^63 bytes behind).
#[inline]
pub(crate) fn ahead(to: u64, from: u64) -> u64 {
    let d = to.wrapping_sub(from);
    if is_negative(d) {
        0
    } else {
        d
    }
}

/// True if `a` is strictly behind `b` (modulo 2^64).
#[inline]
pub(crate) fn is_before(a: u64, b: u64) -> bool {
    is_negative(a.wrapping_sub(b))
}

#[inline]
fn is_negative(d: u64) -> bool {
    d >> 63 != 0
}

/// Checks that `now` lies in the window `previous ..= previous + room` (modulo 2^64).
#[inline]
fn check_window(now: u64, previous: u64, room: u64) -> Result<u64, Corruption> {
    let forward = now.wrapping_sub(previous);
    if is_negative(forward) {
        return Err(Corruption::IndexWentBackwards { previous, now });
    }
    if forward > room {
        return Err(Corruption::IndexOutOfRange(now));
    }
    Ok(now)
}

/// Validates a `tail` word read by the consumer.
///
/// `previous` is the last validated tail, `head` the consumer's last released
/// position (`head <= previous <= head + capacity`). The producer may publish at most
/// `capacity` bytes beyond `head`.
#[inline]
pub(crate) fn check_tail(
    raw: u64,
    previous: u64,
    head: u64,
    capacity: u64,
) -> Result<u64, Corruption> {
    if raw & MISALIGN_BITS != 0 {
        return Err(Corruption::MisalignedIndex(raw));
    }
    // `previous - head <= capacity <= 2^31`: the room cannot underflow.
    let room = capacity - previous.wrapping_sub(head);
    check_window(raw & !SLEEP_BIT, previous, room)
}

/// Validates a `tail` word read by a consumer that may know of frames past the last
/// tail it validated: `seen` is that tail, `known` the end of the frames it found
/// (`seen <= known <= head + capacity`; equal for a consumer that reads only the
/// tail). A tail in `seen..=known` is no news: a linked producer stores the tail just
/// after the header a probe found (`consumer.rs`). Past `known` it is checked as by
/// [`check_tail`] against `known`; behind `seen` it went backwards. Returns the new
/// `(seen, known)`.
#[inline]
pub(crate) fn check_tail_known(
    raw: u64,
    seen: u64,
    known: u64,
    head: u64,
    capacity: u64,
) -> Result<(u64, u64), Corruption> {
    let now = raw & !SLEEP_BIT;
    if raw & MISALIGN_BITS == 0 && now.wrapping_sub(seen) <= known.wrapping_sub(seen) {
        return Ok((now, known));
    }
    let tail = check_tail(raw, known, head, capacity)?;
    Ok((tail, tail))
}

/// Validates a `head` word read by a producer.
///
/// `previous` is the last validated head, `published` the producer's last published
/// tail (`previous <= published <= previous + capacity`): the consumer cannot have
/// released what it was never shown.
#[inline]
pub(crate) fn check_head(raw: u64, previous: u64, published: u64) -> Result<u64, Corruption> {
    if raw & MISALIGN_BITS != 0 {
        return Err(Corruption::MisalignedIndex(raw));
    }
    check_window(raw & !SLEEP_BIT, previous, published.wrapping_sub(previous))
}

/// Validates the starting indices found when attaching to an existing ring: any
/// aligned head, and a tail at most `capacity` bytes after it.
#[inline]
pub(crate) fn check_start(
    head_raw: u64,
    tail_raw: u64,
    capacity: u64,
) -> Result<(u64, u64), Corruption> {
    if head_raw & MISALIGN_BITS != 0 {
        return Err(Corruption::MisalignedIndex(head_raw));
    }
    let head = head_raw & !SLEEP_BIT;
    let tail = check_tail(tail_raw, head, head, capacity)?;
    Ok((head, tail))
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn tail_rules() {
        assert_eq!(check_tail(64, 0, 0, 64), Ok(64));
        assert_eq!(check_tail(65, 0, 0, 64), Ok(64), "sleep bit is masked");
        assert_eq!(
            check_tail(66, 0, 0, 64),
            Err(Corruption::MisalignedIndex(66))
        );
        assert_eq!(
            check_tail(8, 16, 0, 64),
            Err(Corruption::IndexWentBackwards {
                previous: 16,
                now: 8
            })
        );
        assert_eq!(
            check_tail(72, 0, 0, 64),
            Err(Corruption::IndexOutOfRange(72))
        );
        assert!(check_tail(!7, 0, 0, 64).is_err());
    }

    #[test]
    fn tail_rules_with_frames_known_past_it() {
        // Found frames to 48, last tail 16: a tail up to 48 is no news.
        assert_eq!(check_tail_known(16, 16, 48, 0, 64), Ok((16, 48)));
        assert_eq!(check_tail_known(33, 16, 48, 0, 64), Ok((32, 48)));
        assert_eq!(check_tail_known(48, 16, 48, 0, 64), Ok((48, 48)));
        assert_eq!(check_tail_known(56, 16, 48, 0, 64), Ok((56, 56)));
        assert_eq!(
            check_tail_known(8, 16, 48, 0, 64),
            Err(Corruption::IndexWentBackwards {
                previous: 48,
                now: 8
            })
        );
        assert_eq!(
            check_tail_known(72, 16, 48, 0, 64),
            Err(Corruption::IndexOutOfRange(72))
        );
        assert_eq!(
            check_tail_known(34, 16, 48, 0, 64),
            Err(Corruption::MisalignedIndex(34))
        );
        // Nothing known past the tail: exactly `check_tail`.
        for raw in [0, 8, 9, 16, 24, 66, 72, !7] {
            assert_eq!(
                check_tail_known(raw, 8, 8, 0, 64).map(|(_, known)| known),
                check_tail(raw, 8, 0, 64),
                "raw {raw}"
            );
        }
        // Released past the last tail seen (frames found by probes): the tail may lag.
        assert_eq!(check_tail_known(16, 16, 48, 40, 64), Ok((16, 48)));
    }

    #[test]
    fn head_rules() {
        assert_eq!(check_head(8, 0, 16), Ok(8));
        assert_eq!(check_head(9, 0, 16), Ok(8));
        assert_eq!(check_head(24, 0, 16), Err(Corruption::IndexOutOfRange(24)));
        assert_eq!(
            check_head(0, 8, 16),
            Err(Corruption::IndexWentBackwards {
                previous: 8,
                now: 0
            })
        );
        assert_eq!(check_head(4, 0, 16), Err(Corruption::MisalignedIndex(4)));
    }

    #[test]
    fn windows_wrap_modulo_2_64() {
        let near = 0u64.wrapping_sub(16);
        assert_eq!(
            check_start(near, near.wrapping_add(8), 64),
            Ok((near, near + 8))
        );
        assert_eq!(check_start(near, 48, 64), Ok((near, 48)), "tail past 2^64");
        assert_eq!(
            check_start(near, 56, 64),
            Err(Corruption::IndexOutOfRange(56))
        );
        assert_eq!(
            check_start(near, near - 8, 64),
            Err(Corruption::IndexWentBackwards {
                previous: near,
                now: near - 8
            })
        );
        assert_eq!(check_tail(8, near, near, 64), Ok(8));
        assert_eq!(check_head(8, near, 16), Ok(8));
        assert_eq!(
            check_head(24, near, 16),
            Err(Corruption::IndexOutOfRange(24))
        );
        assert_eq!(ahead(8, near), 24);
        assert_eq!(ahead(near, 8), 0);
        assert!(is_before(near, 8));
        assert!(!is_before(8, near));
        // Every word is classified, none panics.
        for raw in [0, 1, 8, u64::MAX, u64::MAX - 7, 1 << 63, (1 << 63) - 8] {
            let _ = check_tail(raw, near, near, 1 << 31);
            let _ = check_head(raw, near, near.wrapping_add(1 << 31));
            let _ = check_start(raw, raw, 1 << 31);
        }
    }
}
