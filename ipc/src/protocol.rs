//! Wire formats: the handshake on the Unix socket, the layout of the shared region,
//! and the headers of request and response frames. All integers little-endian.
//! `SPEC.md` §2 is the normative text; this module is its code.

use std::fmt;

use coroipc_ring::{max_message_len, Config};

/// "CIPC" — first four bytes of every handshake message.
pub const HANDSHAKE_MAGIC: u32 = u32::from_le_bytes(*b"CIPC");
/// Protocol version spoken by this crate.
pub const PROTOCOL_VERSION: u16 = 2;
/// Bytes in a [`ConnectRequest`].
pub const CONNECT_REQUEST_LEN: usize = 24;
/// Bytes in a [`ConnectReply`].
pub const CONNECT_REPLY_LEN: usize = 40;
/// Bytes in a request header (before the payload, in the request ring).
pub const REQUEST_HEADER_LEN: usize = 16;
/// Bytes in a response header (before the payload, in the response ring).
pub const RESPONSE_HEADER_LEN: usize = 16;
/// File descriptors sent with a successful [`ConnectReply`], in this order:
/// shared memory, server doorbell, client doorbell (responses, request space and
/// dispatch share it).
pub const CONNECT_FDS: usize = 3;
/// The smallest ring capacity a connection uses: its largest message (24 bytes) holds
/// a request or response header and a little payload. Smaller rings are refused at
/// the handshake on both sides, so `max_message_len - header` never underflows.
pub const MIN_RING_CAPACITY: usize = 64;
/// Alignment of each ring inside the shared region.
pub const RING_ALIGN: usize = 4096;

/// Library status codes (negative; `0` is success, positive codes are the service's).
pub mod status {
    /// Success.
    pub const OK: i32 = 0;
    /// Admission control refused the request for now; retry later.
    pub const TRY_AGAIN: i32 = -1;
    /// The service does not handle this command id.
    pub const UNKNOWN_COMMAND: i32 = -2;
    /// No service is registered under the requested id.
    pub const NO_SUCH_SERVICE: i32 = -3;
    /// The security callback refused the peer's credentials.
    pub const ACCESS_DENIED: i32 = -4;
    /// The server could not create the connection's shared memory or doorbells
    /// (memory; descriptors have their own code, [`OUT_OF_FDS`]).
    pub const NO_RESOURCES: i32 = -5;
    /// The message was malformed.
    pub const BAD_REQUEST: i32 = -6;
    /// The connect callback refused without a code of its own.
    pub const REFUSED: i32 = -7;
    /// The handshake spoke another protocol version.
    pub const BAD_VERSION: i32 = -8;
    /// The service dropped a deferred response without answering.
    pub const ABANDONED: i32 = -9;
    /// The service's response did not fit the response ring; the request was handled
    /// but its answer is lost.
    pub const RESPONSE_TOO_LARGE: i32 = -10;
    /// The server has `Limits::max_connections` connections (and handshakes).
    pub const CONNECTION_LIMIT: i32 = -11;
    /// The server is out of file descriptors (its own limit or the system's).
    pub const OUT_OF_FDS: i32 = -12;
}

/// A malformed handshake message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HandshakeError {
    /// Wrong length.
    #[error("handshake message has {0} bytes")]
    Length(usize),
    /// Wrong magic.
    #[error("handshake magic {0:#x} is not CIPC")]
    Magic(u32),
    /// Unsupported version.
    #[error("handshake version {0} is not supported")]
    Version(u16),
    /// A field is out of range.
    #[error("handshake field {0} is invalid")]
    Field(&'static str),
}

/// Checks length, magic and version of a handshake message.
fn check_preamble(b: &[u8], len: usize) -> Result<(), HandshakeError> {
    if b.len() != len {
        return Err(HandshakeError::Length(b.len()));
    }
    let magic = u32_at(b, 0);
    if magic != HANDSHAKE_MAGIC {
        return Err(HandshakeError::Magic(magic));
    }
    let version = u16_at(b, 4);
    if version != PROTOCOL_VERSION {
        return Err(HandshakeError::Version(version));
    }
    Ok(())
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}
fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}
fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(w)
}

/// Client → server: which service, and the ring sizes the client would like.
///
/// ```text
/// 0 magic u32 | 4 version u16 | 6 service u16 | 8 request u32 | 12 response u32
/// 16 dispatch u32 | 20 reserved u32 (0)
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnectRequest {
    /// Service id.
    pub service: u16,
    /// Requested request-ring capacity in bytes.
    pub request_ring: u32,
    /// Requested response-ring capacity in bytes.
    pub response_ring: u32,
    /// Requested dispatch-ring capacity in bytes.
    pub dispatch_ring: u32,
}

impl ConnectRequest {
    /// Encodes to the wire.
    pub fn encode(&self) -> [u8; CONNECT_REQUEST_LEN] {
        let mut b = [0u8; CONNECT_REQUEST_LEN];
        b[0..4].copy_from_slice(&HANDSHAKE_MAGIC.to_le_bytes());
        b[4..6].copy_from_slice(&PROTOCOL_VERSION.to_le_bytes());
        b[6..8].copy_from_slice(&self.service.to_le_bytes());
        b[8..12].copy_from_slice(&self.request_ring.to_le_bytes());
        b[12..16].copy_from_slice(&self.response_ring.to_le_bytes());
        b[16..20].copy_from_slice(&self.dispatch_ring.to_le_bytes());
        b
    }

    /// Decodes and checks a message from an untrusted client.
    ///
    /// # Errors
    ///
    /// [`HandshakeError`]: wrong length, magic, version, or a field out of range.
    pub fn decode(b: &[u8]) -> Result<Self, HandshakeError> {
        check_preamble(b, CONNECT_REQUEST_LEN)?;
        if u32_at(b, 20) != 0 {
            return Err(HandshakeError::Field("reserved"));
        }
        Ok(ConnectRequest {
            service: u16_at(b, 6),
            request_ring: u32_at(b, 8),
            response_ring: u32_at(b, 12),
            dispatch_ring: u32_at(b, 16),
        })
    }
}

/// Server → client: the outcome, the granted sizes, and (on success) four fds.
///
/// ```text
/// 0 magic u32 | 4 version u16 | 6 reserved u16 | 8 status i32 | 12 request u32
/// 16 response u32 | 20 dispatch u32 | 24 region_len u64 | 32 connection id u64
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnectReply {
    /// `0`, a library code from [`status`], or the connect callback's positive code.
    pub status: i32,
    /// Granted request-ring capacity.
    pub request_ring: u32,
    /// Granted response-ring capacity.
    pub response_ring: u32,
    /// Granted dispatch-ring capacity.
    pub dispatch_ring: u32,
    /// Length of the shared memory object.
    pub region_len: u64,
    /// The server's id for this connection.
    pub connection_id: u64,
}

impl ConnectReply {
    /// A refusal with `status`.
    pub fn refusal(status: i32) -> Self {
        ConnectReply {
            status,
            request_ring: 0,
            response_ring: 0,
            dispatch_ring: 0,
            region_len: 0,
            connection_id: 0,
        }
    }

    /// Encodes to the wire.
    pub fn encode(&self) -> [u8; CONNECT_REPLY_LEN] {
        let mut b = [0u8; CONNECT_REPLY_LEN];
        b[0..4].copy_from_slice(&HANDSHAKE_MAGIC.to_le_bytes());
        b[4..6].copy_from_slice(&PROTOCOL_VERSION.to_le_bytes());
        b[8..12].copy_from_slice(&self.status.to_le_bytes());
        b[12..16].copy_from_slice(&self.request_ring.to_le_bytes());
        b[16..20].copy_from_slice(&self.response_ring.to_le_bytes());
        b[20..24].copy_from_slice(&self.dispatch_ring.to_le_bytes());
        b[24..32].copy_from_slice(&self.region_len.to_le_bytes());
        b[32..40].copy_from_slice(&self.connection_id.to_le_bytes());
        b
    }

    /// Decodes and checks a message from an untrusted server.
    ///
    /// # Errors
    ///
    /// [`HandshakeError`]: wrong length, magic or version.
    pub fn decode(b: &[u8]) -> Result<Self, HandshakeError> {
        check_preamble(b, CONNECT_REPLY_LEN)?;
        Ok(ConnectReply {
            status: u32_at(b, 8) as i32,
            request_ring: u32_at(b, 12),
            response_ring: u32_at(b, 16),
            dispatch_ring: u32_at(b, 20),
            region_len: u64_at(b, 24),
            connection_id: u64_at(b, 32),
        })
    }
}

/// Where the three rings sit in the shared region, computed from their capacities by
/// both sides (the client never takes offsets from the server).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RegionLayout {
    /// Ring configurations: request, response, dispatch.
    pub rings: [Config; 3],
    /// Byte offset of each ring.
    pub offsets: [usize; 3],
    /// Total length of the region.
    pub len: usize,
}

/// Index of the request ring in [`RegionLayout`].
pub const REQUEST: usize = 0;
/// Index of the response ring in [`RegionLayout`].
pub const RESPONSE: usize = 1;
/// Index of the dispatch ring in [`RegionLayout`].
pub const DISPATCH: usize = 2;

/// `v` rounded up to a multiple of `to`, or `None` past `usize::MAX` (a 32-bit
/// target laying out three 2 GiB rings).
fn align_up(v: usize, to: usize) -> Option<usize> {
    v.div_ceil(to).checked_mul(to)
}

impl RegionLayout {
    /// Lays out rings of the given capacities (each must be a valid ring capacity).
    ///
    /// # Errors
    ///
    /// [`HandshakeError::Field`] when a capacity is not a valid ring capacity or below
    /// [`MIN_RING_CAPACITY`], or when the region's length would not fit a `usize`
    /// (only possible on a 32-bit target).
    pub fn new(capacities: [u32; 3]) -> Result<Self, HandshakeError> {
        let mut rings = [Config::new(MIN_RING_CAPACITY); 3];
        let mut offsets = [0usize; 3];
        let mut at = 0usize;
        for i in 0..3 {
            let config = Config::new(capacities[i] as usize);
            if config.capacity < MIN_RING_CAPACITY {
                return Err(HandshakeError::Field("ring capacity"));
            }
            config
                .validate()
                .map_err(|_| HandshakeError::Field("ring capacity"))?;
            rings[i] = config;
            offsets[i] = at;
            at = at
                .checked_add(config.region_size())
                .and_then(|end| align_up(end, RING_ALIGN))
                .ok_or(HandshakeError::Field("region size"))?;
        }
        Ok(RegionLayout {
            rings,
            offsets,
            len: at,
        })
    }
}

/// Rounds a requested capacity to what a server grants: a power of two in
/// `min..=max` (a request of 0 gets `default`).
pub fn grant_capacity(requested: u32, default: usize, min: usize, max: usize) -> u32 {
    let want = if requested == 0 {
        default
    } else {
        requested as usize
    };
    // Never `clamp` with bounds in the wrong order (it panics): a `min` above `max`
    // yields `max`.
    let max = max.max(MIN_RING_CAPACITY);
    let want = want.max(min).min(max).max(MIN_RING_CAPACITY);
    let pow = want
        .checked_next_power_of_two()
        .unwrap_or(coroipc_ring::MAX_CAPACITY);
    // Rounding up may exceed `max`: fall back to the power of two below.
    let pow = if pow > max && pow > MIN_RING_CAPACITY {
        pow / 2
    } else {
        pow
    };
    pow.min(coroipc_ring::MAX_CAPACITY) as u32
}

/// The largest request payload a request ring of `capacity` carries.
pub fn max_payload(capacity: usize) -> usize {
    max_message_len(capacity).saturating_sub(REQUEST_HEADER_LEN)
}

/// A request header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RequestHeader {
    /// Request id, chosen by the client; echoed in the response.
    pub id: u64,
    /// Command id within the service.
    pub command: u16,
}

impl RequestHeader {
    /// Encodes: `id u64 | command u16 | flags u16 (0) | reserved u32 (0)`.
    pub fn encode(&self) -> [u8; REQUEST_HEADER_LEN] {
        let mut b = [0u8; REQUEST_HEADER_LEN];
        b[0..8].copy_from_slice(&self.id.to_le_bytes());
        b[8..10].copy_from_slice(&self.command.to_le_bytes());
        b
    }

    /// Decodes the header of an untrusted request frame; `None` if it is too short.
    pub fn decode(frame: &[u8]) -> Option<Self> {
        frame.first_chunk().map(Self::from_bytes)
    }

    /// Decodes a header already cut to length (every bit pattern is a header: the
    /// flags and reserved bytes are ignored).
    pub fn from_bytes(b: &[u8; REQUEST_HEADER_LEN]) -> Self {
        RequestHeader {
            id: u64_at(b, 0),
            command: u16_at(b, 8),
        }
    }
}

/// A response header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResponseHeader {
    /// The id of the request answered.
    pub id: u64,
    /// Status: 0, a library code, or a service code.
    pub status: i32,
}

impl ResponseHeader {
    /// Encodes: `id u64 | status i32 | reserved u32 (0)`.
    pub fn encode(&self) -> [u8; RESPONSE_HEADER_LEN] {
        let mut b = [0u8; RESPONSE_HEADER_LEN];
        b[0..8].copy_from_slice(&self.id.to_le_bytes());
        b[8..12].copy_from_slice(&self.status.to_le_bytes());
        b
    }

    /// Decodes the header of an untrusted response frame; `None` if too short.
    pub fn decode(frame: &[u8]) -> Option<Self> {
        frame.first_chunk().map(Self::from_bytes)
    }

    /// Decodes a header already cut to length (every bit pattern is a header).
    pub fn from_bytes(b: &[u8; RESPONSE_HEADER_LEN]) -> Self {
        ResponseHeader {
            id: u64_at(b, 0),
            status: u32_at(b, 8) as i32,
        }
    }
}

impl fmt::Display for RequestHeader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "request {} command {}", self.id, self.command)
    }
}

#[cfg(test)]
#[path = "protocol_tests.rs"]
mod tests;
