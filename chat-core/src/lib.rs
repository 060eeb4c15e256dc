//! The chat room as a sans-IO state machine, and the fan-out that carries it to sockets.
//!
//! Nothing here performs I/O: no sockets, no runtime, no clock, no randomness. Time comes in as
//! an argument (the wall clock that times messages, as an anchor: [`Room::set_clock`]), the
//! room's epoch is chosen by the driver, connections are named by the driver with [`ConnId`],
//! and everything the room wants done comes out of a `poll_*` call. Misbehaving peers produce outputs (an error, a close
//! with a reason), never panics or `Err`s; `Err` is reserved for a driver that breaks the
//! contract.
//!
//! Three layers, each usable alone:
//! - [`Room`]: the gate (handshake, validation, rate limits, deadlines) over the room's ordered
//!   log ([`log`]): members see only what the log applied. The log is in memory
//!   ([`Room::new`]) or kept elsewhere by the driver ([`Room::shared`]); for a log kept in
//!   Redis, [`log::redis::RedisLog`] makes a node's every decision (script calls out, replies
//!   in, room inputs out) and leaves the driver its connections.
//! - [`Fanout`]: one shared feed of encoded broadcasts, per-connection cursors and private
//!   queues, byte bounds, the one decision of "too slow", and the closing frame last.
//! - [`Hub`]: a room and a fan-out joined by the chat wire encoding: what a byte-moving driver
//!   embeds. The smol server and the blocking example in `examples/` are both thin loops around it.
//!
//! A driver's loop, with a hub:
//!
//! ```
//! use std::time::Instant;
//! use chat_core::{Config, ConnId, Due, Hub, Input, Room};
//! use chat_proto::{ClientMsg, MAGIC, PROTOCOL_VERSION};
//!
//! let epoch = 0x5eed; // the driver's random number, not the room's
//! let mut hub = Hub::new(Room::new(Config::default(), epoch).unwrap(), 256 * 1024);
//! let now = Instant::now(); // the driver's clock, not the room's
//! hub.set_clock(now, 1_700_000_000_000); // and the wall clock, for the times of messages
//! let alice = ConnId(1);
//! hub.handle_input(now, Input::Opened(alice)).unwrap();
//! let hello = ClientMsg::Hello {
//!     magic: MAGIC,
//!     version: PROTOCOL_VERSION,
//!     name: "alice".into(),
//!     password: None,
//!     ident: None,
//! };
//! hub.handle_input(now, Input::Received(alice, hello)).unwrap();
//! while let Some(event) = hub.poll_event() { /* log it; carry proposals to a shared log */ }
//! while let Some(conn) = hub.poll_wake() { /* wake conn's writer */ }
//! // A writer gathers what is due into one vectored write, then says how much went out.
//! let mut bytes = Vec::new();
//! let due = hub.fanout_of(alice).due(alice, |frame| { bytes.extend_from_slice(frame); true });
//! assert_eq!(due, Due::Write);
//! let written = bytes.len(); // e.g. what `write_vectored` returned
//! hub.fanout_of(alice).consumed(alice, written);
//! let _wake_at = hub.poll_timeout(); // re-arm one timer; at it, feed `Input::Tick`
//! assert_eq!(hub.room().name_of(alice), Some("alice"));
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs, missing_debug_implementations, rust_2018_idioms)]

pub mod accounts;
mod config;
mod conns;
mod fanout;
mod hub;
pub mod log;
pub mod moderation;
mod names;
mod room;

pub use config::{Config, ConfigError};
pub use conns::{ConnHasher, ConnMap};
pub use fanout::{Due, Fanout, Frame};
pub use hub::{Codec, CodecId, Hub, HubEvent, Inbound, Wire};
pub use log::{Declined, Entry, Event, NodeId, Proposal, ProposalKind, Seat, Sequencer, Snapshot};
pub use names::{check_ident, check_name, check_text, display_name, fold_name, is_invisible};
pub use room::{
    AddrKey, ConnId, HistoryQuery, Input, Notice, Output, PAUSE_GRACE, PasswordWork, Room, Ticket,
    UsageError, Verdict,
};

#[cfg(test)]
mod tests;
