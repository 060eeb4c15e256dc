//! Framing: a 4-byte little-endian length prefix, then a postcard payload.

use serde::{Serialize, de::DeserializeOwned};

/// Bytes in the length prefix.
pub const PREFIX_LEN: usize = 4;

/// Largest frame payload a client accepts from a server (the welcome lists every member).
pub const MAX_SERVER_FRAME: u32 = 8 << 20;

/// Bytes a postcard varint takes to encode `n`.
fn varint_len(n: u64) -> u64 {
    (u64::from(64 - n.leading_zeros()).max(1)).div_ceil(7)
}

/// Bytes of a string of at most `bytes` bytes: its varint length, then the bytes.
fn string_max(bytes: u64) -> u64 {
    varint_len(bytes) + bytes
}

/// Payload bytes of a client chat frame carrying `text_bytes` bytes of text: the message tag, the
/// text's varint length, the text, then the kind. A leave or an away with a message of that
/// length (tag, `Some`, the text) takes the same. A server's frame limit must be at least this.
pub fn chat_payload_len(text_bytes: u32) -> u64 {
    2 + string_max(u64::from(text_bytes))
}

/// The most payload bytes a member list (`Who`'s answer, or a welcome that lists everyone) of
/// `count` members can take: names of at most `name_chars` characters, away messages of at most
/// `away_bytes` bytes, idents within [`crate::Ident`]'s limits; with room for the welcome's
/// other fields. A server must keep this within [`MAX_SERVER_FRAME`], the most a client accepts.
pub fn member_list_payload_max(count: u32, name_chars: u32, away_bytes: u32) -> u64 {
    // A name is a varint length and up to 4 bytes per character; the list is a varint count;
    // the welcome adds its own name, the count, the limits, the sequence number and the epoch.
    let name = string_max(u64::from(name_chars) * 4);
    let away = 1 + string_max(u64::from(away_bytes));
    let ident = 1
        + string_max(u64::from(crate::Ident::MAX_USER_BYTES))
        + string_max(u64::from(crate::Ident::MAX_REALNAME_BYTES));
    1 + varint_len(u64::from(count)) + u64::from(count) * (name + away + ident) + 128 + name
}

/// The most payload bytes a history of `count` chats (names of at most `name_chars`
/// characters, texts of at most `text_bytes` bytes) can take.
pub fn history_payload_max(count: u32, name_chars: u32, text_bytes: u32) -> u64 {
    let name = string_max(u64::from(name_chars) * 4);
    let text = string_max(u64::from(text_bytes));
    // The tag, the count, each chat's sequence number and time (varints of up to 10 bytes) and
    // kind, the missed count.
    1 + varint_len(u64::from(count)) + u64::from(count) * (10 + 10 + name + text + 1) + 10
}

/// A decode buffer that grew past this is released after its frame, so idle connections stay small.
const KEEP_CAPACITY: usize = 4096;

/// Why bytes could not be decoded into a message. After any of these the stream is out of
/// step and the connection should be closed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// The length prefix announces a payload larger than the limit; nothing was allocated for it.
    FrameTooLarge {
        /// The announced payload length.
        len: u32,
        /// The limit in force.
        max: u32,
    },
    /// The payload is not a valid message (bad tag, bad varint, bad UTF-8, cut short, ...).
    Malformed(postcard::Error),
    /// The payload holds a valid message followed by bytes that belong to nothing.
    TrailingBytes {
        /// How many bytes were left over.
        extra: u32,
    },
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DecodeError::FrameTooLarge { len, max } => {
                write!(f, "frame of {len} bytes is over the limit of {max}")
            }
            DecodeError::Malformed(e) => write!(f, "malformed frame: {e}"),
            DecodeError::TrailingBytes { extra } => {
                write!(f, "frame has {extra} bytes after its message")
            }
        }
    }
}

impl std::error::Error for DecodeError {}

/// A message could not be encoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EncodeError {
    /// The serializer failed.
    Serialize(postcard::Error),
    /// The payload does not fit the 4-byte length prefix.
    TooLarge,
}

impl std::fmt::Display for EncodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EncodeError::Serialize(e) => write!(f, "cannot encode message: {e}"),
            EncodeError::TooLarge => f.write_str("message does not fit in a frame"),
        }
    }
}

impl std::error::Error for EncodeError {}

/// Appends `msg` to `out` as one frame (length prefix and payload).
pub fn encode<T: Serialize + ?Sized>(msg: &T, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    let start = out.len();
    out.extend_from_slice(&[0; PREFIX_LEN]);
    let buf = std::mem::take(out);
    *out = postcard::to_extend(msg, buf).map_err(EncodeError::Serialize)?;
    let len = u32::try_from(out.len() - start - PREFIX_LEN).map_err(|_| {
        out.truncate(start);
        EncodeError::TooLarge
    })?;
    out[start..start + PREFIX_LEN].copy_from_slice(&len.to_le_bytes());
    Ok(())
}

/// Encodes `msg` as one frame in a new buffer.
pub fn encode_to_vec<T: Serialize + ?Sized>(msg: &T) -> Result<Vec<u8>, EncodeError> {
    let mut out = Vec::new();
    encode(msg, &mut out)?;
    Ok(out)
}

/// Decodes one whole payload into a message, refusing trailing bytes.
///
/// With [`FrameDecoder::decode_with`] and [`crate::FrameReader::next_with`], this is the
/// payload decoder of one version; a [`crate::ClientDecoder`] is the one that follows a
/// client's version.
pub fn decode_payload<T: DeserializeOwned>(payload: &[u8]) -> Result<T, DecodeError> {
    let (msg, rest) = postcard::take_from_bytes(payload).map_err(DecodeError::Malformed)?;
    if rest.is_empty() {
        Ok(msg)
    } else {
        Err(DecodeError::TrailingBytes {
            extra: rest.len() as u32,
        })
    }
}

/// A sans-IO frame decoder: fed slices of a byte stream, it yields whole messages.
///
/// It holds at most one partial frame. A frame that lies whole in the input is decoded in place
/// without copying; a frame split across reads is gathered, after its length was checked.
///
/// ```
/// use chat_proto::{ClientMsg, FrameDecoder, encode_to_vec};
/// let bytes = encode_to_vec(&ClientMsg::Who).unwrap();
/// let mut decoder = FrameDecoder::new(1024);
/// let mut input = &bytes[..];
/// assert_eq!(decoder.decode::<ClientMsg>(&mut input), Ok(Some(ClientMsg::Who)));
/// assert_eq!(decoder.decode::<ClientMsg>(&mut input), Ok(None));
/// ```
#[derive(Debug)]
pub struct FrameDecoder {
    max_frame: u32,
    partial: Vec<u8>,
}

impl FrameDecoder {
    /// A decoder that refuses payloads longer than `max_frame` bytes.
    pub fn new(max_frame: u32) -> Self {
        Self {
            max_frame,
            partial: Vec::new(),
        }
    }

    /// The largest payload accepted.
    pub fn max_frame(&self) -> u32 {
        self.max_frame
    }

    /// Bytes of a partial frame held from earlier input.
    pub fn buffered(&self) -> usize {
        self.partial.len()
    }

    /// Takes bytes from the front of `input` and returns the next whole message, or `None` once
    /// `input` is used up without completing one (its bytes are kept for the next call).
    ///
    /// Every call either returns a message, an error, or consumes all of `input`, so a loop
    /// `while let Some(m) = decoder.decode(&mut input)?` always ends.
    pub fn decode<T: DeserializeOwned>(
        &mut self,
        input: &mut &[u8],
    ) -> Result<Option<T>, DecodeError> {
        self.decode_with(input, decode_payload)
    }

    /// [`FrameDecoder::decode`], with each whole payload read by `payload` (a
    /// [`crate::ClientDecoder`], say, which reads a client's frames by its version).
    pub fn decode_with<T>(
        &mut self,
        input: &mut &[u8],
        payload: impl FnOnce(&[u8]) -> Result<T, DecodeError>,
    ) -> Result<Option<T>, DecodeError> {
        if self.partial.is_empty() && input.len() >= PREFIX_LEN {
            let len = self.check_len(&input[..PREFIX_LEN])?;
            if let Some(bytes) = input.get(PREFIX_LEN..PREFIX_LEN + len) {
                let msg = payload(bytes);
                *input = &input[PREFIX_LEN + len..];
                return msg.map(Some);
            }
        }
        if self.partial.len() < PREFIX_LEN {
            self.take(input, PREFIX_LEN - self.partial.len());
            if self.partial.len() < PREFIX_LEN {
                return Ok(None);
            }
            let len = self.check_len(&self.partial[..PREFIX_LEN])?;
            self.partial.reserve_exact(len);
        }
        let len = self.check_len(&self.partial[..PREFIX_LEN])?;
        self.take(input, PREFIX_LEN + len - self.partial.len());
        if self.partial.len() < PREFIX_LEN + len {
            return Ok(None);
        }
        let msg = payload(&self.partial[PREFIX_LEN..]);
        self.partial.clear();
        if self.partial.capacity() > KEEP_CAPACITY {
            self.partial = Vec::new();
        }
        msg.map(Some)
    }

    fn check_len(&self, prefix: &[u8]) -> Result<usize, DecodeError> {
        let len = u32::from_le_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]);
        if len > self.max_frame {
            return Err(DecodeError::FrameTooLarge {
                len,
                max: self.max_frame,
            });
        }
        Ok(len as usize)
    }

    fn take(&mut self, input: &mut &[u8], want: usize) {
        let n = want.min(input.len());
        self.partial.extend_from_slice(&input[..n]);
        *input = &input[n..];
    }
}
