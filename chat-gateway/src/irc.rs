//! The IRC entrance: IRC clients (irssi, WeeChat, ii, ...) join the same room as native clients.
//!
//! - [`line`] splits the socket's bytes into lines of at most 512 bytes and parses them;
//! - each connection's session turns each line into room messages (NICK+USER is the hello,
//!   PRIVMSG is chat, QUIT/PART leave, WHO/NAMES ask for the members) or replies it makes itself
//!   (CAP, MODE, TOPIC, PING, numerics for errors), and holds the lines after a hello until the
//!   room answers it;
//! - [`IrcCodec`] owns those sessions: it decodes each connection's bytes into the room's
//!   inputs, and turns what the room sends into IRC lines (welcome numerics, JOIN, PRIVMSG,
//!   QUIT, 352/353, 433/432, ERROR on close), each broadcast encoded once for every IRC member.
//!
//! A driver attaches IRC connections to a hub with this codec and hands their bytes to
//! [`chat_core::Hub::handle_bytes`]. Names, limits, rate limits, deadlines and too-slow closes
//! are the room's, as for everyone.

mod caps;
mod codec;
mod commands;
mod info;
mod line;
mod lists;
mod session;
mod tags;
#[cfg(test)]
mod tests;

pub use codec::{ACTION_PREFIX, Identity, IrcCodec, irc_nick};
pub use commands::room_text;
pub use line::{Line, LineReader, MAX_LINE, Message};
pub use session::MAX_KEPT;
