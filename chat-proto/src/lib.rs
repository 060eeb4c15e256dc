//! The chat wire protocol: the messages ([`ClientMsg`], [`ServerMsg`]) and their framing.
//!
//! Each frame is a 4-byte little-endian payload length followed by a postcard payload.
//! [`encode`] appends a frame to a buffer; [`FrameDecoder`] is fed bytes as they arrive and yields
//! whole messages, refusing oversized lengths before it allocates and trailing bytes after a
//! message. Nothing here performs I/O.
//!
//! The messages are protocol version 3 ([`PROTOCOL_VERSION`]); [`v2`] keeps version 2's, for
//! the clients that still speak it, and [`ClientDecoder`] reads a client's frames by the version
//! its hello says.
#![forbid(unsafe_code)]
#![warn(missing_docs, missing_debug_implementations, rust_2018_idioms)]

mod client;
mod frame;
mod msg;
mod reader;
pub mod settings;
pub mod v2;

pub use client::{ClientDecoder, peek_hello};
pub use frame::{
    DecodeError, EncodeError, FrameDecoder, MAX_SERVER_FRAME, PREFIX_LEN, chat_payload_len,
    decode_payload, encode, encode_to_vec, history_payload_max, member_list_payload_max,
};
pub use msg::{
    BanInfo, ChatKind, ClientMsg, CloseReason, ErrorKind, HistoryChat, Ident, Limits, MAGIC,
    MAX_PASSWORD_BYTES, Member, ModAction, MuteInfo, NameRule, PROTOCOL_VERSION, Password, Refusal,
    ServerMsg, Utc,
};
pub use reader::{FrameReader, MAX_READ_CHUNK, MIN_READ_CHUNK};

#[cfg(test)]
mod tests;
