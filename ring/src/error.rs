//! Typed errors. Every way the peer can corrupt the shared region has a name here.

use core::fmt;

/// A bad [`Config`](crate::Config).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigError {
    /// Capacity is not a power of two in `MIN_CAPACITY..=MAX_CAPACITY`.
    BadCapacity(usize),
    /// Watermarks do not satisfy `low < high <= capacity`.
    BadWatermarks {
        /// High watermark given.
        high: usize,
        /// Low watermark given.
        low: usize,
    },
}

/// Creating or attaching a ring failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum AttachError {
    /// The region base is not aligned to `REGION_ALIGN`.
    Misaligned,
    /// The region is smaller than the ring needs.
    TooSmall {
        /// Bytes needed.
        needed: usize,
        /// Bytes given.
        len: usize,
    },
    /// The header does not start with `MAGIC`.
    BadMagic,
    /// The header has another layout version.
    BadVersion(u32),
    /// The geometry (given or found in the header) is invalid.
    Config(ConfigError),
    /// The header's geometry differs from the one this side expected.
    Mismatch,
    /// The ring uses [`Fences::Asymmetric`](crate::Fences::Asymmetric) and this process
    /// cannot take part: `membarrier` registration was refused (a kernel before 4.16, a
    /// seccomp filter, not Linux), or the handle is an MPSC producer.
    Unsupported,
}

/// What a corrupt shared region looked like when it was detected.
///
/// A side that sees one of these must treat the ring (and the connection) as dead:
/// nothing it read from the region after that can be trusted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Corruption {
    /// An index word had bits 1..3 set (positions are multiples of 8).
    MisalignedIndex(u64),
    /// The peer's index moved backwards.
    IndexWentBackwards {
        /// Last value seen.
        previous: u64,
        /// Value read now.
        now: u64,
    },
    /// The peer's index is beyond what it may be (more than a capacity of data
    /// published, or a head past the published tail).
    IndexOutOfRange(u64),
    /// A frame header's tag is not a known frame kind.
    BadFrameTag(u32),
    /// A frame header's length exceeds the largest message or the frame would cross
    /// the end of the data area or the published tail.
    BadFrameLength(u32),
    /// An earlier call (possibly on another thread) found the ring corrupt.
    Earlier,
}

/// Sending into a ring failed; nothing was written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum PushError {
    /// Not enough free space now; retry after the consumer releases.
    Full,
    /// The message is longer than the ring's largest message.
    TooLarge {
        /// Length asked for.
        len: usize,
        /// The ring's largest message.
        max: usize,
    },
    /// The consumer corrupted the shared region.
    Corrupt(Corruption),
}

/// Receiving from a ring failed; nothing was consumed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum PopError {
    /// The caller's buffer is shorter than the next message.
    BufferTooSmall {
        /// Length of the waiting message.
        needed: usize,
    },
    /// The producer corrupted the shared region.
    Corrupt(Corruption),
}

impl From<Corruption> for PushError {
    fn from(c: Corruption) -> Self {
        PushError::Corrupt(c)
    }
}

impl From<Corruption> for PopError {
    fn from(c: Corruption) -> Self {
        PopError::Corrupt(c)
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::BadCapacity(c) => {
                write!(
                    f,
                    "ring capacity {c} is not a power of two between 32 and 2^31"
                )
            }
            ConfigError::BadWatermarks { high, low } => {
                write!(
                    f,
                    "watermarks must satisfy low < high <= capacity (high {high}, low {low})"
                )
            }
        }
    }
}

impl fmt::Display for AttachError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AttachError::Misaligned => write!(f, "ring region is not 128-byte aligned"),
            AttachError::TooSmall { needed, len } => {
                write!(f, "ring region too small: {len} bytes, {needed} needed")
            }
            AttachError::BadMagic => write!(f, "ring header has no valid magic"),
            AttachError::BadVersion(v) => write!(f, "ring header version {v} is not supported"),
            AttachError::Config(e) => write!(f, "ring geometry invalid: {e}"),
            AttachError::Mismatch => write!(f, "ring geometry differs from the expected one"),
            AttachError::Unsupported => {
                write!(
                    f,
                    "ring uses asymmetric fences, which this handle cannot join"
                )
            }
        }
    }
}

impl fmt::Display for Corruption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Corruption::MisalignedIndex(v) => write!(f, "peer index {v:#x} is misaligned"),
            Corruption::IndexWentBackwards { previous, now } => {
                write!(f, "peer index went backwards from {previous} to {now}")
            }
            Corruption::IndexOutOfRange(v) => write!(f, "peer index {v} is out of range"),
            Corruption::BadFrameTag(t) => write!(f, "frame tag {t:#x} is unknown"),
            Corruption::BadFrameLength(l) => write!(f, "frame length {l} is invalid"),
            Corruption::Earlier => write!(f, "ring was found corrupt earlier"),
        }
    }
}

impl fmt::Display for PushError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PushError::Full => write!(f, "ring is full"),
            PushError::TooLarge { len, max } => {
                write!(
                    f,
                    "message of {len} bytes exceeds the ring's maximum of {max}"
                )
            }
            PushError::Corrupt(c) => write!(f, "ring corrupted by the consumer: {c}"),
        }
    }
}

impl fmt::Display for PopError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PopError::BufferTooSmall { needed } => {
                write!(f, "buffer too small: the next message has {needed} bytes")
            }
            PopError::Corrupt(c) => write!(f, "ring corrupted by the producer: {c}"),
        }
    }
}

impl core::error::Error for ConfigError {}
impl core::error::Error for AttachError {}
impl core::error::Error for Corruption {}
impl core::error::Error for PushError {}
impl core::error::Error for PopError {}
