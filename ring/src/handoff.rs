//! Handing published lines to the consumer: [`Producer::hand_off`] and
//! [`MpscProducer::hand_off`](crate::MpscProducer::hand_off).
//!
//! A frame the producer just wrote sits modified in the producer core's own caches.
//! A consumer spinning on the frame's header fetches the header's line at once, but
//! it learns of the frame's other lines only from that header, so each of those is a
//! second miss after the first, served by snooping the producer's core. `cldemote`
//! (Intel, from Sapphire Rapids and Tremont; a `nop` in the hint space `0F 1C` on
//! every other x86-64, a no-op elsewhere) asks the core to push a line down to the
//! shared last-level cache, where the consumer's miss is served without a snoop.
//!
//! It costs the producer: the demote occupies the core, and a line demoted and then
//! written again (the next frame's half of a shared line) has to come back. On this
//! project's VM a demote on every publish took the 64 B ring stream from 49 to 5 M
//! msg/s (single) and from 92 to 46 M msg/s (batches of 32). So it is not done by
//! `publish`: the caller asks for it when it is about to wait for the consumer's
//! answer (a request in a round trip, a reply when no further request is queued),
//! when the producer's time is idle anyway and the consumer is about to read.
//!
//! What it buys (a 64 B ping-pong, the ipc round trip; one-line frames gain nothing,
//! their one line is the header's) is measured in SPEC §1.3b, the one place those
//! figures are kept.
//!
//! What is demoted: every line holding a byte of the last publication and the line of
//! the word after it (the next frame's header, which the consumer polls next), at
//! most [`HANDOFF_MAX_LINES`] from its start. Demoting all of a 64 KiB message's
//! 1,024 lines made its round trip slower (8.9 → 12.5 µs: the consumer's stream of
//! misses is served by its prefetchers anyway); its first 64 lines leave it as it
//! was and take 4 KiB from 1.46 to 1.38 µs.
//!
//! A hint only: `cldemote` changes no architectural state, reads and writes nothing
//! the program observes, and raises no exception but `#UD` for a `LOCK` prefix (Intel
//! SDM), so it cannot race with the peer's accesses or fault. The range comes from
//! the producer's private positions; the offsets are inside the data area
//! (`DataArea::demote` checks them).
//!
//! [`Producer::hand_off`]: crate::Producer::hand_off

use crate::layout::RingPtrs;

/// The most lines one hand-off demotes, from the start of the publication.
pub(crate) const HANDOFF_MAX_LINES: u64 = 64;

/// The lines a hand-off of `from..=to` (positions) demotes: `(first line's
/// position, count)`, the count at most [`HANDOFF_MAX_LINES`]. `None` when `from ==
/// to` (nothing published since the last hand-off) or when `to` is not ahead of
/// `from` by at most `capacity` (a stale range, possible only from racing MPSC
/// hand-offs: a hint is never worth a long loop).
#[inline]
pub(crate) fn lines(from: u64, to: u64, capacity: u64) -> Option<(u64, u64)> {
    let span = to.wrapping_sub(from);
    if span == 0 || span > capacity {
        return None;
    }
    let first = from & !63;
    let count = ((to | 63).wrapping_sub(first) >> 6) + 1;
    Some((first, count.min(HANDOFF_MAX_LINES)))
}

/// Demotes the lines [`lines`] names.
#[inline]
pub(crate) fn demote(ring: &RingPtrs, from: u64, to: u64) {
    let Some((first, count)) = lines(from, to, ring.geometry.capacity) else {
        return;
    };
    for i in 0..count {
        ring.data
            .demote(ring.geometry.offset(first.wrapping_add(i * 64)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frame_and_the_next_header_line() {
        // An 88-byte frame at 40: bytes 40..128, the next header at 128.
        assert_eq!(lines(40, 128, 4096), Some((0, 3)));
        // The same frame at 0: the next header (88) shares its second line.
        assert_eq!(lines(0, 88, 4096), Some((0, 2)));
        // A 32-byte frame inside one line.
        assert_eq!(lines(64, 96, 4096), Some((64, 1)));
    }

    #[test]
    fn nothing_new_or_a_stale_range_demotes_nothing() {
        assert_eq!(lines(512, 512, 4096), None);
        assert_eq!(lines(512, 504, 4096), None, "behind: wraps to a huge span");
        assert_eq!(lines(0, 4104, 4096), None, "more than the ring holds");
        assert_eq!(lines(0, 4096, 4096).map(|l| l.1), Some(HANDOFF_MAX_LINES));
    }

    #[test]
    fn long_ranges_keep_their_first_lines_and_positions_wrap() {
        assert_eq!(
            lines(128, 128 + 65536, 1 << 20),
            Some((128, HANDOFF_MAX_LINES))
        );
        // Across 2^64: the first line is the one before the wrap.
        assert_eq!(lines(u64::MAX - 7, 80, 4096), Some((u64::MAX - 63, 3)));
    }
}
