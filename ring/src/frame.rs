//! Frame headers: one little-endian 8-byte word before every payload.
//!
//! ```text
//! bits  0..32  payload length in bytes (PAD: bytes from the end of this header to the
//!              end of the data area)
//! bits 32..64  tag: MSG, PAD (skip to the start of the data area) or SKIP (a
//!              reservation abandoned by an MPSC producer; skip `length` bytes)
//! ```
//!
//! The frame occupies `8 + round_up_8(length)` bytes; every frame starts 8-aligned and
//! never crosses the end of the data area.

use crate::error::Corruption;
use crate::layout::{padded, Geometry, FRAME_HEADER};

/// A message frame.
pub(crate) const TAG_MSG: u32 = 0x4d53_4701;
/// Padding from here to the end of the data area.
pub(crate) const TAG_PAD: u32 = 0x5041_4401;
/// An abandoned reservation: skip it.
pub(crate) const TAG_SKIP: u32 = 0x534b_5001;

#[inline]
pub(crate) const fn encode(tag: u32, len: u32) -> u64 {
    ((tag as u64) << 32) | len as u64
}

/// The tag of a header word.
#[inline]
pub(crate) const fn tag_of(word: u64) -> u32 {
    (word >> 32) as u32
}

/// A frame header read from shared memory and checked against private geometry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Frame {
    /// A message with `len` payload bytes, the frame ending at position `end`.
    Message { len: usize, end: u64 },
    /// Nothing to deliver: the reader moves to position `end`.
    Skip { end: u64 },
}

/// Decodes the header `word` found at `position`, where `tail` is the validated end
/// of published data (`position` is at most `capacity` bytes before it, modulo 2^64).
/// Never trusts the word: the returned frame lies inside `position..=tail` and inside
/// the data area, or an error says why not.
#[inline(always)]
pub(crate) fn decode(
    geo: &Geometry,
    word: u64,
    position: u64,
    tail: u64,
) -> Result<Frame, Corruption> {
    let tag = tag_of(word);
    let len = word as u32;
    // Fast path: a message that lies inside the data area and below the tail.
    if tag == TAG_MSG && len as usize <= geo.max_payload {
        let frame = (FRAME_HEADER + padded(len as usize)) as u64;
        let fits_area = geo.offset(position) as u64 + frame <= geo.capacity;
        if fits_area && frame <= tail.wrapping_sub(position) {
            return Ok(Frame::Message {
                len: len as usize,
                end: position.wrapping_add(frame),
            });
        }
    }
    decode_slow(geo, tag, len, position, tail)
}

#[cold]
fn decode_slow(
    geo: &Geometry,
    tag: u32,
    len: u32,
    position: u64,
    tail: u64,
) -> Result<Frame, Corruption> {
    let offset = geo.offset(position) as u64;
    let to_end = geo.capacity - offset;
    let (frame, is_message) = match tag {
        TAG_MSG | TAG_SKIP => {
            if len as usize > geo.max_payload {
                return Err(Corruption::BadFrameLength(len));
            }
            let frame = (FRAME_HEADER + padded(len as usize)) as u64;
            if frame > to_end {
                return Err(Corruption::BadFrameLength(len));
            }
            (frame, tag == TAG_MSG)
        }
        TAG_PAD => {
            // A producer pads only when a frame does not fit before the end, which is
            // never the case at offset 0; and it records the exact padding length.
            if offset == 0 || u64::from(len) != to_end - FRAME_HEADER as u64 {
                return Err(Corruption::BadFrameLength(len));
            }
            (to_end, false)
        }
        other => return Err(Corruption::BadFrameTag(other)),
    };
    if frame > tail.wrapping_sub(position) {
        return Err(Corruption::BadFrameLength(len));
    }
    let end = position.wrapping_add(frame);
    Ok(if is_message {
        Frame::Message {
            len: len as usize,
            end,
        }
    } else {
        Frame::Skip { end }
    })
}
