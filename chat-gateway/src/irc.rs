//! The IRC entrance: IRC clients (irssi, WeeChat, ii, ...) join the same room as native clients.
//!
//! - [`line`] splits the socket's bytes into lines of at most 512 bytes and parses them;
//! - [`Session`] turns each line into room messages (NICK+USER is the hello, PRIVMSG is chat,
//!   QUIT/PART leave, WHO/NAMES ask for the members) or replies it makes itself (CAP, MODE,
//!   TOPIC, PING, numerics for errors);
//! - [`IrcCodec`] turns what the room sends into IRC lines (welcome numerics, JOIN, PRIVMSG,
//!   QUIT, 352/353, 433/432, ERROR on close), each broadcast encoded once for every IRC member.
//!
//! Names, limits, rate limits, deadlines and too-slow closes are the room's, as for everyone.

mod codec;
mod line;
mod session;

pub use codec::{ACTION_PREFIX, ConnState, Identity, IrcCodec, Listing, Sessions, irc_nick};
pub use line::{Line, LineReader, MAX_LINE, Message};
pub use session::{Action, Session, hello, room_text};
