//! The other ways into the room, as sans-IO code: bytes in, room inputs and encoded frames out.
//!
//! - [`irc`]: IRC clients (irssi, WeeChat, ii, ...) as members of the room: a
//!   [`chat_core::Codec`] that reads their lines into the room's inputs, keeping each
//!   connection's session, and writes the room's messages as IRC lines.
//! - [`web`] (feature `web`): the room in a browser: the HTTP phase that serves the page, the
//!   WebSocket frames, and a codec that speaks JSON.
//!
//! - [`proxy`]: the real client behind a trusted proxy: `--trusted-proxy` blocks, the PROXY
//!   protocol header, and `X-Forwarded-For` / `Forwarded`.
//!
//! Nothing here performs I/O: no sockets, no runtime, no clock. A driver (the smol server, or
//! the blocking `std::net` example `examples/irc_blocking.rs`) owns the sockets and timers and
//! moves the bytes.
#![forbid(unsafe_code)]
#![warn(missing_docs, missing_debug_implementations, rust_2018_idioms)]

pub mod irc;
pub mod proxy;
#[cfg(feature = "web")]
pub mod web;
