//! The room in a browser: the HTTP phase that serves one page (`/`, with `/app.js` and
//! `/app.css`) and upgrades `/ws` to a WebSocket whose text frames are JSON messages.
//!
//! What is this adapter's own: the HTTP phase (bounded in bytes and requests, answered by
//! [`answer`]), the `Origin` check, and the translation of frames both ways ([`WsReader`] in,
//! [`WebCodec`] out). The codec's bytes are whole WebSocket frames.

mod http;
mod json;

pub use http::{
    Answer, CONTENT_SECURITY_POLICY, FUZZ_UPGRADE, Incoming, MAX_REQUEST_BYTES, MAX_REQUESTS,
    OriginPolicy, WsReader, answer, fuzz_one, max_ws_message,
};
pub use json::{WebCodec, close_code, decode_client, encode_server_json};
