//! Reading a client's frames by the version its hello says.

use crate::frame::{DecodeError, decode_payload};
use crate::msg::{ClientMsg, PROTOCOL_VERSION};
use crate::v2;

/// The head of a hello, `(magic, version)`, read without the rest of its payload: every version
/// begins a hello with the tag 0, the magic and the version, as postcard varints.
pub fn peek_hello(payload: &[u8]) -> Option<(u32, u16)> {
    let (tag, rest) = postcard::take_from_bytes::<u32>(payload).ok()?;
    if tag != 0 {
        return None;
    }
    let ((magic, version), _) = postcard::take_from_bytes::<(u32, u16)>(rest).ok()?;
    Some((magic, version))
}

/// Reads one client's payloads as the version it speaks, and yields them as this version's
/// [`ClientMsg`]: one per connection, used as the payload reader of a
/// [`crate::FrameDecoder::decode_with`] or [`crate::FrameReader::next_with`].
///
/// A hello says its own version: a v2 hello is read as [`v2::ClientMsg`] and converted, a v3
/// one as it is, and a hello of any other version is passed on as a hello of that version with
/// no name (so that the room refuses it with `UnsupportedVersion`). Every other frame is read by
/// the version of the last v2 or v3 hello; before one, as v3 and failing that as v2 (a `Resume`
/// comes before the hello; no frame reads as both).
///
/// ```
/// use chat_proto::{ClientDecoder, ClientMsg, FrameReader, encode_to_vec, v2};
/// let bytes = encode_to_vec(&v2::ClientMsg::Who).unwrap();
/// let mut reader = FrameReader::new(1024);
/// reader.buf()[..bytes.len()].copy_from_slice(&bytes); // a read from the socket, here
/// reader.filled(bytes.len());
/// let mut client = ClientDecoder::new();
/// assert_eq!(reader.next_with(|p| client.decode(p)), Ok(Some(ClientMsg::Who)));
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClientDecoder {
    version: Option<u16>,
}

impl ClientDecoder {
    /// A decoder for a connection that has sent no hello yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// The version of the last v2 or v3 hello read, if any.
    pub fn version(&self) -> Option<u16> {
        self.version
    }

    /// Reads one whole payload.
    pub fn decode(&mut self, payload: &[u8]) -> Result<ClientMsg, DecodeError> {
        if let Some((magic, version)) = peek_hello(payload) {
            return match version {
                v2::VERSION | PROTOCOL_VERSION => {
                    self.version = Some(version);
                    self.decode_as(version, payload)
                }
                _ => Ok(ClientMsg::Hello {
                    magic,
                    version,
                    name: String::new(),
                    password: None,
                    ident: None,
                }),
            };
        }
        match self.version {
            Some(version) => self.decode_as(version, payload),
            None => decode_payload(payload)
                .or_else(|error| self.decode_as(v2::VERSION, payload).map_err(|_| error)),
        }
    }

    fn decode_as(&self, version: u16, payload: &[u8]) -> Result<ClientMsg, DecodeError> {
        if version == v2::VERSION {
            decode_payload::<v2::ClientMsg>(payload).map(ClientMsg::from)
        } else {
            decode_payload(payload)
        }
    }
}
