//! The room in a browser: the HTTP phase that serves one page (`/`, with `/app.js` and
//! `/app.css`) and upgrades `/ws` to a WebSocket whose text frames are JSON messages.
//!
//! [`WebCodec`] is the whole entrance: a driver opens each accepted connection in the room
//! attached to it and feeds it the socket's bytes ([`chat_core::Hub::handle_bytes`]). What is
//! this adapter's own: the HTTP phase (bounded in bytes and requests; its time, and how many
//! connections may be in it, are the room's handshake limits), the `Host` and `Origin` checks (DNS rebinding: [`WebPolicy`]), a strict reading of each request head, and the
//! translation of frames both ways. The codec's bytes are whole WebSocket frames.

mod codec;
mod http;
mod json;
mod request;

pub use codec::WebCodec;
pub use http::{CONTENT_SECURITY_POLICY, MAX_REQUEST_BYTES, MAX_REQUESTS, max_ws_message};
pub use json::{close_code, decode_client, encode_server_json};
pub use request::WebPolicy;
