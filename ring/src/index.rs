//! Validation of the peer's index, read from shared memory.
//!
//! Each side trusts only its private copy of its own index and of the last peer index
//! it validated. A freshly read peer index must be 8-aligned (bit 0 is the sleep flag),
//! must not move backwards, and must stay inside the window the protocol allows.

use crate::error::Corruption;
use crate::layout::{MISALIGN_BITS, SLEEP_BIT};

/// Validates a `tail` word read by the consumer.
///
/// `previous` is the last validated tail, `head` the consumer's last released
/// position (`head <= previous`). The producer may publish at most `capacity` bytes
/// beyond `head`.
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
    let tail = raw & !SLEEP_BIT;
    if tail < previous {
        return Err(Corruption::IndexWentBackwards {
            previous,
            now: tail,
        });
    }
    // `tail >= previous >= head`, so this cannot underflow.
    if tail - head > capacity {
        return Err(Corruption::IndexOutOfRange(tail));
    }
    Ok(tail)
}

/// Validates a `head` word read by a producer.
///
/// `previous` is the last validated head, `published` the producer's last published
/// tail: the consumer cannot have released what it was never shown.
#[inline]
pub(crate) fn check_head(raw: u64, previous: u64, published: u64) -> Result<u64, Corruption> {
    if raw & MISALIGN_BITS != 0 {
        return Err(Corruption::MisalignedIndex(raw));
    }
    let head = raw & !SLEEP_BIT;
    if head < previous {
        return Err(Corruption::IndexWentBackwards {
            previous,
            now: head,
        });
    }
    if head > published {
        return Err(Corruption::IndexOutOfRange(head));
    }
    Ok(head)
}

/// Validates the starting indices found when attaching to an existing ring.
#[inline]
pub(crate) fn check_start(
    head_raw: u64,
    tail_raw: u64,
    capacity: u64,
) -> Result<(u64, u64), Corruption> {
    let head = check_head(head_raw, 0, u64::MAX)?;
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
}
