//! The chat server: a smol + async-net driver around the sans-IO [`chat_core::Hub`].
//!
//! Only I/O lives here: what the room decides is in `chat-core`, what IRC and the web page
//! mean is in `chat-gateway`, and the shared room's log is `chat_core::log::redis`. One thread
//! runs everything: accept loops, one task that owns the hub (and the Redis log), and a reader
//! and a writer task per connection. Native readers decode every whole frame a read brings;
//! gateway readers hand the room task their bytes, which the hub decodes with the connection's
//! codec. The room task pushes encoded frames (encoded once per broadcast per codec, shared by
//! every recipient) onto each connection's byte-bounded queue, and never waits on a socket.
//! Writers coalesce what is queued into large writes. A connection whose queue overflows is
//! closed as too slow.
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
mod passwords;
mod proxied;
mod random;
mod redis;
mod server;
mod stats;
pub mod store;
mod tls;
mod web;

pub use self::redis::reply as redis_reply;
pub use config::parse_trusted_proxies;
pub use config::{
    Args, ConfigError, ServerConfig, SharedConfig, TlsFiles, parse_duration, parse_origins, resolve,
};
pub use passwords::hash as hash_password;
pub use server::{RunningServer, listen, serve, serve_with_gateways};
pub use stats::Stats;
pub use tls::{Certs, Tls};
