//! The chat server: a smol + async-net driver around the sans-IO [`chat_core::Room`].
//!
//! One thread runs everything: an accept loop, one task that owns the room, and a reader and a
//! writer task per connection. Readers decode every whole frame a read brings and forward them
//! to the room over a bounded channel; the room task carries out the room's outputs by pushing
//! encoded frames (encoded once per broadcast, shared by every recipient) onto each
//! connection's byte-bounded queue, and never waits on a socket. Writers coalesce what is
//! queued into large writes. A connection whose queue overflows is closed as too slow.
//!
//! ```no_run
//! # fn main() -> std::io::Result<()> {
//! use chat_server::{RunningServer, ServerConfig};
//! let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
//! let server = RunningServer::start(listener, ServerConfig::default())?;
//! println!("listening on {}", server.addr());
//! server.shutdown()?;
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs, missing_debug_implementations, rust_2018_idioms)]

mod config;
mod conn;
mod irc;
mod metrics;
mod outbox;
mod redis;
mod server;
mod stats;
mod web;

pub use config::{
    Args, ConfigError, ServerConfig, SharedConfig, parse_duration, parse_origins, resolve,
};
pub use server::{RunningServer, listen, serve, serve_with_gateways};
pub use stats::Stats;
