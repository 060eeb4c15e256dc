//! The chat room as a sans-IO state machine.
//!
//! [`Room`] owns membership, names, sequence numbers, rate limits and deadlines, and performs no
//! I/O: no sockets, no runtime, no clock, no randomness. Time comes in as an argument, connections
//! are named by the driver with [`ConnId`], and everything the room wants done comes out of
//! [`Room::poll_output`]. Misbehaving peers produce outputs (an error, a close with a reason),
//! never panics or `Err`s; `Err` is reserved for a driver that breaks the contract.
//!
//! The driver's loop:
//!
//! ```
//! use std::time::Instant;
//! use chat_core::{Config, ConnId, Input, Output, Room};
//! use chat_proto::{ClientMsg, MAGIC, PROTOCOL_VERSION};
//!
//! let mut room = Room::new(Config::default());
//! let now = Instant::now(); // the driver's clock, not the room's
//! let inputs = [
//!     Input::Opened(ConnId(1)),
//!     Input::Received(ConnId(1), ClientMsg::Hello {
//!         magic: MAGIC, version: PROTOCOL_VERSION, name: "alice".into() }),
//! ];
//! for input in inputs {
//!     room.handle_input(now, input).unwrap();
//!     while let Some(output) = room.poll_output() {
//!         match output {
//!             Output::Send { to, msg } => { /* encode msg, queue it on `to` */ }
//!             Output::Broadcast { except, msg } => {
//!                 // Encode once, share the bytes with every recipient.
//!                 for to in room.recipients(except) { /* queue on `to` */ }
//!             }
//!             Output::Subscribe { conn } => { /* `conn` now receives broadcasts */ }
//!             Output::Close { conn, reason } => { /* send Closing(reason), close */ }
//!         }
//!     }
//!     let _wake_at = room.poll_timeout(); // re-arm one timer; at it, feed `Input::Tick`
//! }
//! assert_eq!(room.name_of(ConnId(1)), Some("alice"));
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs, missing_debug_implementations, rust_2018_idioms)]

mod names;
mod room;

pub use names::{check_name, check_text, display_name, fold_name, is_invisible};
pub use room::{Config, ConnId, Input, Output, Room, UsageError};

#[cfg(test)]
mod tests;
