//! HTTP/2 frame headers and the payload layouts the parser reads (RFC 9113 section 6).

use thiserror::Error;

pub const HEADER_LEN: usize = 9;
/// SETTINGS_MAX_FRAME_SIZE before any SETTINGS raise it; resynchronisation trusts no more.
pub const DEFAULT_MAX_FRAME_SIZE: u32 = 1 << 14;

pub const END_STREAM: u8 = 0x1;
pub const ACK: u8 = 0x1;
pub const END_HEADERS: u8 = 0x4;
pub const PADDED: u8 = 0x8;
pub const PRIORITY: u8 = 0x20;

/// SETTINGS parameter identifiers the parser cares about.
pub const SETTINGS_HEADER_TABLE_SIZE: u16 = 0x1;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameType {
    Data,
    Headers,
    Priority,
    RstStream,
    Settings,
    PushPromise,
    Ping,
    Goaway,
    WindowUpdate,
    Continuation,
    /// Extension frame types are ignored, as RFC 9113 section 4.1 asks.
    Unknown(u8),
}

impl FrameType {
    fn from_byte(byte: u8) -> Self {
        match byte {
            0x0 => Self::Data,
            0x1 => Self::Headers,
            0x2 => Self::Priority,
            0x3 => Self::RstStream,
            0x4 => Self::Settings,
            0x5 => Self::PushPromise,
            0x6 => Self::Ping,
            0x7 => Self::Goaway,
            0x8 => Self::WindowUpdate,
            0x9 => Self::Continuation,
            other => Self::Unknown(other),
        }
    }

    /// Flags the type defines: anything else set is a hint that this is not a frame header.
    fn defined_flags(self) -> u8 {
        match self {
            Self::Data => END_STREAM | PADDED,
            Self::Headers => END_STREAM | END_HEADERS | PADDED | PRIORITY,
            Self::PushPromise => END_HEADERS | PADDED,
            Self::Continuation => END_HEADERS,
            Self::Settings | Self::Ping => ACK,
            Self::Priority
            | Self::RstStream
            | Self::Goaway
            | Self::WindowUpdate
            | Self::Unknown(_) => 0,
        }
    }

    /// Whether the type belongs to a stream (non-zero id) or to the connection (id zero).
    fn on_stream(self) -> Option<bool> {
        match self {
            Self::Data
            | Self::Headers
            | Self::Priority
            | Self::RstStream
            | Self::PushPromise
            | Self::Continuation => Some(true),
            Self::Settings | Self::Ping | Self::Goaway => Some(false),
            Self::WindowUpdate | Self::Unknown(_) => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum FrameError {
    #[error("{kind:?} frame on stream {stream_id}, which that type may not use")]
    WrongStream { kind: FrameType, stream_id: u32 },
    #[error("{kind:?} frame of {length} bytes, a size that type cannot have")]
    BadLength { kind: FrameType, length: u32 },
    #[error("{kind:?} frame padding of {padding} bytes does not fit its {length}-byte payload")]
    BadPadding {
        kind: FrameType,
        padding: u8,
        length: u32,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    pub length: u32,
    pub kind: FrameType,
    pub flags: u8,
    pub stream_id: u32,
}

impl FrameHeader {
    pub fn parse(bytes: &[u8; HEADER_LEN]) -> Self {
        let [l0, l1, l2, kind, flags, s0, s1, s2, s3] = *bytes;
        Self {
            length: u32::from_be_bytes([0, l0, l1, l2]),
            kind: FrameType::from_byte(kind),
            flags,
            // The top bit is reserved and ignored on receipt.
            stream_id: u32::from_be_bytes([s0 & 0x7f, s1, s2, s3]),
        }
    }

    pub fn has(&self, flag: u8) -> bool {
        self.flags & flag != 0
    }

    /// The checks a receiver makes before reading the payload (RFC 9113 section 6).
    pub fn validate(&self) -> Result<(), FrameError> {
        let Self {
            length,
            kind,
            stream_id,
            ..
        } = *self;
        let on_stream = kind.on_stream();
        if on_stream.is_some_and(|on_stream| on_stream != (stream_id != 0)) {
            return Err(FrameError::WrongStream { kind, stream_id });
        }
        let length_ok = match kind {
            FrameType::Priority => length == 5,
            FrameType::RstStream | FrameType::WindowUpdate => length == 4,
            FrameType::Ping => length == 8,
            FrameType::Settings => length % 6 == 0 && !(self.has(ACK) && length != 0),
            FrameType::Goaway => length >= 8,
            FrameType::PushPromise => length >= 4,
            _ => true,
        };
        if !length_ok {
            return Err(FrameError::BadLength { kind, length });
        }
        Ok(())
    }

    /// Whether these 9 bytes could well be a frame header, for finding frame boundaries in the
    /// middle of a connection: stricter than `validate` (known type, defined flags only, reserved
    /// bit clear, default size bound).
    pub fn plausible(bytes: &[u8; HEADER_LEN]) -> bool {
        let header = Self::parse(bytes);
        !matches!(header.kind, FrameType::Unknown(_))
            && header.flags & !header.kind.defined_flags() == 0
            && bytes[5] & 0x80 == 0
            && header.length <= DEFAULT_MAX_FRAME_SIZE
            && header.validate().is_ok()
            && (header.kind != FrameType::WindowUpdate || header.length == 4)
    }

    /// Frame bytes on the wire.
    pub fn wire_len(&self) -> u64 {
        u64::from(self.length) + HEADER_LEN as u64
    }
}

/// The header block fragment of a HEADERS or PUSH_PROMISE payload, without padding, priority
/// fields or the promised stream id.
pub fn header_block_fragment<'a>(
    header: &FrameHeader,
    payload: &'a [u8],
) -> Result<&'a [u8], FrameError> {
    let bad_length = FrameError::BadLength {
        kind: header.kind,
        length: header.length,
    };
    let (padding, rest) = if header.has(PADDED) {
        let (&padding, rest) = payload.split_first().ok_or(bad_length)?;
        (padding, rest)
    } else {
        (0, payload)
    };
    let fixed = match header.kind {
        FrameType::Headers if header.has(PRIORITY) => 5,
        FrameType::PushPromise => 4,
        _ => 0,
    };
    rest.len()
        .checked_sub(usize::from(padding))
        .and_then(|end| rest.get(fixed..end))
        .ok_or(FrameError::BadPadding {
            kind: header.kind,
            padding,
            length: header.length,
        })
}

/// `(identifier, value)` pairs of a SETTINGS payload (its length was validated).
pub fn settings(payload: &[u8]) -> impl Iterator<Item = (u16, u32)> + '_ {
    payload.chunks_exact(6).map(|setting| {
        let [i0, i1, v0, v1, v2, v3] = [
            setting[0], setting[1], setting[2], setting[3], setting[4], setting[5],
        ];
        (
            u16::from_be_bytes([i0, i1]),
            u32::from_be_bytes([v0, v1, v2, v3]),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_header_fields() {
        let header = FrameHeader::parse(&[0x01, 0x02, 0x03, 0x01, 0x25, 0x80, 0, 0, 0x07]);
        assert_eq!(header.length, 0x010203);
        assert_eq!(header.kind, FrameType::Headers);
        assert!(header.has(END_STREAM) && header.has(END_HEADERS) && header.has(PRIORITY));
        assert_eq!(
            header.stream_id, 7,
            "the reserved bit is not part of the id"
        );
        assert_eq!(header.wire_len(), 0x010203 + 9);
    }

    #[test]
    fn validation_follows_rfc9113_section6() {
        let frame = |length: u32, kind: u8, flags: u8, stream_id: u32| {
            let [_, l0, l1, l2] = length.to_be_bytes();
            let [s0, s1, s2, s3] = stream_id.to_be_bytes();
            FrameHeader::parse(&[l0, l1, l2, kind, flags, s0, s1, s2, s3]).validate()
        };
        assert!(frame(10, 0, 0, 1).is_ok());
        assert!(frame(10, 0, 0, 0).is_err(), "DATA on stream 0");
        assert!(frame(6, 4, 0, 1).is_err(), "SETTINGS on a stream");
        assert!(frame(7, 4, 0, 0).is_err(), "SETTINGS not a multiple of 6");
        assert!(frame(6, 4, ACK, 0).is_err(), "SETTINGS ack with a payload");
        assert!(frame(8, 6, 0, 0).is_ok());
        assert!(frame(9, 6, 0, 0).is_err(), "PING not 8 bytes");
        assert!(frame(4, 3, 0, 1).is_ok());
        assert!(frame(5, 3, 0, 1).is_err(), "RST_STREAM not 4 bytes");
        assert!(frame(5, 2, 0, 1).is_ok());
        assert!(frame(7, 7, 0, 0).is_err(), "GOAWAY shorter than 8");
        assert!(
            frame(3, 5, 0, 1).is_err(),
            "PUSH_PROMISE without a promised id"
        );
        assert!(
            frame(100, 0xfa, 0xff, 0).is_ok(),
            "unknown types are ignored"
        );
    }

    #[test]
    fn fragments_lose_padding_and_priority() {
        let headers = |flags: u8, payload: &[u8]| FrameHeader {
            length: payload.len() as u32,
            kind: FrameType::Headers,
            flags,
            stream_id: 1,
        };
        let payload = [2, 0, 0, 0, 3, 16, 0xaa, 0xbb, 0, 0];
        assert_eq!(
            header_block_fragment(&headers(PADDED | PRIORITY, &payload), &payload),
            Ok(&[0xaa, 0xbb][..])
        );
        assert_eq!(
            header_block_fragment(&headers(0, &[0xaa]), &[0xaa]),
            Ok(&[0xaa][..])
        );
        assert!(header_block_fragment(&headers(PADDED, &[5, 1]), &[5, 1]).is_err());
        assert!(header_block_fragment(&headers(PADDED, &[]), &[]).is_err());
        assert!(header_block_fragment(&headers(PRIORITY, &[0, 0]), &[0, 0]).is_err());
        let promise = FrameHeader {
            length: 5,
            kind: FrameType::PushPromise,
            flags: END_HEADERS,
            stream_id: 1,
        };
        assert_eq!(
            header_block_fragment(&promise, &[0, 0, 0, 2, 0x82]),
            Ok(&[0x82][..])
        );
    }

    #[test]
    fn settings_pairs() {
        let pairs: Vec<_> = settings(&[0, 1, 0, 0, 0x10, 0, 0, 3, 0, 0, 0, 100]).collect();
        assert_eq!(pairs, [(SETTINGS_HEADER_TABLE_SIZE, 4096), (3, 100)]);
    }
}
