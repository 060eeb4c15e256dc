//! The messages that travel between client and server.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// The first field of every hello: tells a chat server from anything else that opened a socket.
pub const MAGIC: u32 = 0x4348_4154; // "CHAT"

/// The protocol version this crate speaks. Version 3 added the time of every message, kinds of
/// chat ([`ChatKind`]), parting words, renames ([`ClientMsg::Nick`], [`ServerMsg::Renamed`]),
/// away ([`ClientMsg::Away`], [`ServerMsg::Away`]), members as [`Member`]s, the room's epoch for
/// resuming, and fields reserved for accounts. Version 2 ([`crate::v2`]) is still served; a
/// version 1 hello is refused with `UnsupportedVersion`.
pub const PROTOCOL_VERSION: u16 = 3;

/// A message from a client to the server.
///
/// Variants and fields are positional on the wire (postcard): new ones go last, so that every
/// version reads a hello (variant 0: magic, then version) and a refusal the same way.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ClientMsg {
    /// The first frame on a connection; may be repeated after a refusal to try another name.
    Hello {
        /// Must equal [`MAGIC`].
        magic: u32,
        /// The protocol version the client speaks.
        version: u16,
        /// The name the client wants to register.
        name: String,
        /// The password of a registered name: needed when the name (or a look-alike of it) is
        /// registered, ignored otherwise. At most [`MAX_PASSWORD_BYTES`].
        password: Option<Password>,
        /// Who the user says they are, as IRC's `USER` gives it; a gateway fills it, native
        /// clients send `None`. An ident that breaks the rules is dropped, not refused.
        ident: Option<Ident>,
    },
    /// A line of chat for every other member.
    Chat {
        /// The text, one line.
        text: String,
        /// How it is meant.
        kind: ChatKind,
    },
    /// Leave the room; the server answers with `Closing(Left)` and closes.
    Leave {
        /// Parting words for the others, under the text rules of a chat (dropped if it breaks
        /// them: a leave is never refused).
        message: Option<String>,
    },
    /// Ask for the list of members online.
    Who,
    /// Liveness check; the server answers with `Pong` carrying the same nonce.
    Ping {
        /// Echoed back.
        nonce: u64,
    },
    /// The answer to a server `Ping`.
    Pong {
        /// The nonce of the ping answered.
        nonce: u64,
    },
    /// Sent before the hello by a client that reconnects: the history that follows its welcome
    /// starts after chat `after` (the last sequence number it saw) instead of with the most recent.
    Resume {
        /// The last chat sequence number the client saw.
        after: u64,
        /// The room's epoch from the welcome that numbered it; 0 if unknown. In another epoch
        /// (the room was reset) the numbers mean nothing, and the client is shown the whole
        /// history as a newcomer.
        epoch: u64,
    },
    /// Take another name: the same rules as a hello's. Answered by `Renamed` to everyone, or an
    /// `Error` (`NameTaken`, `NameInvalid`) to the sender.
    Nick {
        /// The name wanted.
        name: String,
    },
    /// Say that one is away (`Some`, under the text rules of a chat), or back (`None`).
    Away {
        /// Why, or `None` for back.
        message: Option<String>,
    },
    /// Register the name one holds with this password: from then on a hello for it, or for a
    /// look-alike of it, needs the password. Answered by `Registered`, or an `Error`.
    Register {
        /// The password, 1 to [`MAX_PASSWORD_BYTES`] bytes.
        password: Password,
    },
    /// Change the password of the account one is logged in to. Answered by `Registered`, or
    /// an `Error` (`WrongPassword` when `old` does not match).
    Passwd {
        /// The password now.
        old: Password,
        /// The password wanted, 1 to [`MAX_PASSWORD_BYTES`] bytes.
        new: Password,
    },
    /// Free the name one is logged in to: it is first-come again. Answered by `Unregistered`,
    /// or an `Error`.
    Unregister,
    /// An operator removes a member from the room (it may come back). Answered by
    /// [`ServerMsg::Moderated`] to everyone, or an `Error` (`NotOperator`, `NoSuchMember`).
    Kick {
        /// The member's name (or a look-alike of it).
        name: String,
        /// Why, under the text rules of a chat.
        reason: Option<String>,
    },
    /// An operator bans a name (and its look-alikes), an address or a network: members it
    /// covers are removed, and cannot come back while it lasts.
    Ban {
        /// `NAME`, `ADDRESS` (IPv4 or IPv6) or `CIDR` (`192.0.2.0/24`, `2001:db8::/32`, with
        /// no host bits set).
        target: String,
        /// How long it lasts, in seconds; `None`: until lifted.
        duration_secs: Option<u64>,
        /// Why, under the text rules of a chat.
        reason: Option<String>,
    },
    /// An operator lifts a ban; `target` is written as for [`ClientMsg::Ban`].
    Unban {
        /// The ban's target.
        target: String,
    },
    /// An operator mutes a name (and its look-alikes): its chats are refused with `Muted`.
    Mute {
        /// The name.
        name: String,
        /// How long it lasts, in seconds; `None`: until lifted.
        duration_secs: Option<u64>,
    },
    /// An operator lifts a mute.
    Unmute {
        /// The name.
        name: String,
    },
    /// An operator asks for the bans and mutes in force: answered by [`ServerMsg::Bans`].
    Bans,
}

/// The longest password a server takes, in bytes: longer ones are refused before any hashing.
pub const MAX_PASSWORD_BYTES: usize = 256;

/// A password as it travels: a string on the wire, never printed (its `Debug` is redacted), so
/// that a message logged whole does not give it away.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Password(String);

impl Password {
    /// The password.
    pub fn new(password: impl Into<String>) -> Self {
        Self(password.into())
    }

    /// Its text, for the one place that hashes or checks it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether a server takes it to register: 1 to [`MAX_PASSWORD_BYTES`] bytes.
    pub fn is_valid(&self) -> bool {
        !self.0.is_empty() && self.0.len() <= MAX_PASSWORD_BYTES
    }
}

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(<redacted>)")
    }
}

impl From<&str> for Password {
    fn from(password: &str) -> Self {
        Self::new(password)
    }
}

impl From<String> for Password {
    fn from(password: String) -> Self {
        Self(password)
    }
}

/// What an IRC client says of its user in `USER`: kept with the member and shown in the member
/// list, so that a gateway can answer `WHO` and `WHOIS`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ident {
    /// The user name (one word, the rules of a name, at most [`Ident::MAX_USER_BYTES`]).
    pub user: String,
    /// The real name (one line, may be empty, at most [`Ident::MAX_REALNAME_BYTES`]).
    pub realname: String,
}

impl Ident {
    /// The longest user name a room keeps, in bytes.
    pub const MAX_USER_BYTES: u32 = 32;
    /// The longest real name a room keeps, in bytes.
    pub const MAX_REALNAME_BYTES: u32 = 128;
}

/// How a line of chat is meant.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ChatKind {
    /// Said: `alice: hi`.
    #[default]
    Plain,
    /// Done: `* alice waves` (IRC's CTCP ACTION, `/me`).
    Action,
    /// A notice, which programs must not answer (IRC's NOTICE).
    Notice,
}

/// A member of the room as lists show it (the welcome, `Who`'s answer). Shared strings, so that
/// listing costs no copy per member.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// The registered name.
    pub name: Arc<str>,
    /// Why the member is away, if it is.
    pub away: Option<Arc<str>>,
    /// What its hello said of its user, if anything.
    pub ident: Option<Arc<Ident>>,
}

impl Member {
    /// A member known by its name alone: not away, no ident.
    pub fn named(name: impl Into<Arc<str>>) -> Self {
        Self {
            name: name.into(),
            away: None,
            ident: None,
        }
    }
}

/// A chat message from before the welcome, as the history carries it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryChat {
    /// The room sequence number it had.
    pub seq: u64,
    /// When the room's log accepted it, in milliseconds since the Unix epoch.
    pub time: u64,
    /// The sender's registered name.
    pub from: Arc<str>,
    /// The text.
    pub text: Arc<str>,
    /// How it was meant.
    pub kind: ChatKind,
}

/// A message from the server to a client. Times are when the room's log accepted what they
/// report, in milliseconds since the Unix epoch (0 when the server has no clock).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ServerMsg {
    /// The hello was accepted.
    Welcome {
        /// The name as registered.
        name: String,
        /// How many members are online, the new member included.
        online: u32,
        /// Everyone online, when there are few enough to list in a welcome (the server's
        /// limit); empty otherwise, and `Who` lists them.
        members: Vec<Member>,
        /// The limits in force on this server.
        limits: Limits,
        /// The room sequence number of the last chat message sent before this join.
        seq: u64,
        /// The room's epoch: sequence numbers are comparable only within one epoch. Give it
        /// back in `Resume`.
        epoch: u64,
    },
    /// The hello was refused; the connection stays open and may send another hello.
    Refused(Refusal),
    /// A chat message from another member, stamped by the server.
    Chat {
        /// The room sequence number: one more than the previous chat message in the room.
        seq: u64,
        /// When it was said.
        time: u64,
        /// The sender's registered name.
        from: String,
        /// The text.
        text: String,
        /// How it is meant.
        kind: ChatKind,
    },
    /// A member joined.
    Joined {
        /// Their registered name.
        name: String,
        /// When.
        time: u64,
        /// What their hello said of their user.
        ident: Option<Arc<Ident>>,
    },
    /// A member left.
    Left {
        /// Their registered name.
        name: String,
        /// Why they left.
        reason: CloseReason,
        /// Their parting words, if any.
        message: Option<String>,
        /// When.
        time: u64,
    },
    /// The answer to `Who`.
    Members {
        /// Everyone online.
        members: Vec<Member>,
    },
    /// A request was refused; the connection stays open.
    Error(ErrorKind),
    /// Liveness check; answer with `Pong`.
    Ping {
        /// Echo it in the `Pong`.
        nonce: u64,
    },
    /// The answer to a client `Ping`.
    Pong {
        /// The nonce of the ping answered.
        nonce: u64,
    },
    /// The server is about to close this connection, and why.
    Closing(CloseReason),
    /// Sent right after the welcome: the room's recent chat, oldest first (after the `Resume`
    /// point if the client sent one), so that a newcomer sees the conversation and a client
    /// that reconnects sees what it missed, once.
    History {
        /// The messages, oldest first.
        chats: Vec<HistoryChat>,
        /// Messages the client missed that the history no longer holds.
        missed: u64,
    },
    /// A member took another name; sent to everyone, the member too (it learns its new name
    /// as registered). What was said before keeps the name it was said under.
    Renamed {
        /// The name it had.
        from: String,
        /// The name it has now.
        to: String,
        /// When.
        time: u64,
    },
    /// A member went away or came back; sent to everyone but the member.
    Away {
        /// Their registered name.
        name: String,
        /// Why they are away, or `None`: they are back.
        message: Option<String>,
        /// When.
        time: u64,
    },
    /// The name one holds is registered with the password one gave (after `Register` or
    /// `Passwd`); sent to the member alone.
    Registered {
        /// The name.
        name: String,
    },
    /// The name one holds is registered no more (after `Unregister`); sent to the member alone.
    Unregistered {
        /// The name.
        name: String,
    },
    /// An operator acted (`* bob was kicked by alice: spam`); sent to everyone, the member
    /// concerned first (a kicked or banned member is then closed).
    Moderated {
        /// The operator.
        by: String,
        /// What was done.
        action: ModAction,
        /// When.
        time: u64,
    },
    /// The answer to [`ClientMsg::Bans`]: the bans and mutes in force.
    Bans {
        /// The bans, oldest first.
        bans: Vec<BanInfo>,
        /// The mutes.
        mutes: Vec<MuteInfo>,
    },
}

/// What an operator did, as [`ServerMsg::Moderated`] tells it. Names are as the room shows
/// them: the member's name if it is online, else the folded name the sanction holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ModAction {
    /// A member was removed.
    Kicked {
        /// The member.
        name: String,
        /// Why.
        reason: Option<String>,
    },
    /// A name, an address or a network was banned.
    Banned {
        /// The name, address or CIDR.
        target: String,
        /// When it ends (ms since the Unix epoch); `None`: until lifted.
        until: Option<u64>,
        /// Why.
        reason: Option<String>,
    },
    /// A ban was lifted.
    Unbanned {
        /// The name, address or CIDR.
        target: String,
    },
    /// A name was muted.
    Muted {
        /// The name.
        name: String,
        /// When it ends (ms since the Unix epoch); `None`: until lifted.
        until: Option<u64>,
    },
    /// A mute was lifted.
    Unmuted {
        /// The name.
        name: String,
    },
}

/// A ban in force, as [`ServerMsg::Bans`] lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BanInfo {
    /// The folded name, the address or the CIDR.
    pub target: String,
    /// When it ends (ms since the Unix epoch); `None`: until lifted.
    pub until: Option<u64>,
    /// Why.
    pub reason: Option<String>,
    /// The operator who set it.
    pub by: String,
    /// When it was set (ms since the Unix epoch).
    pub since: u64,
}

/// A mute in force, as [`ServerMsg::Bans`] lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MuteInfo {
    /// The folded name.
    pub name: String,
    /// When it ends (ms since the Unix epoch); `None`: until lifted.
    pub until: Option<u64>,
    /// The operator who set it.
    pub by: String,
}

/// The limits a server enforces, announced in the welcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// Longest name, in characters.
    pub max_name_chars: u32,
    /// Longest chat text, in bytes of UTF-8.
    pub max_text_bytes: u32,
    /// Largest frame payload the server accepts, in bytes.
    pub max_frame_bytes: u32,
    /// Sustained chat messages per second.
    pub rate_per_sec: u32,
    /// Messages that may be sent at once before the rate applies.
    pub burst: u32,
    /// Milliseconds of silence after which the server closes the connection.
    pub idle_timeout_ms: u64,
}

/// Why a hello was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Refusal {
    /// Someone online has this name, or one that looks the same.
    NameTaken,
    /// The name breaks a rule.
    NameInvalid(NameRule),
    /// The server does not speak this protocol version.
    UnsupportedVersion {
        /// The version the server speaks.
        supported: u16,
    },
    /// The server has as many clients as it allows.
    ServerFull,
    /// This connection has already joined.
    AlreadyJoined,
    /// The room's shared log cannot be reached just now; try again shortly.
    Unavailable,
    /// Too many connections from the same address are joining or joined.
    TooManyConnections,
    /// The password does not match the registered name, or too many wrong ones came from
    /// this address or for this name lately: wait and try again.
    WrongPassword,
    /// The name (or a look-alike of it) is registered to an account: give its password or
    /// choose another.
    NameRegistered,
    /// Only registered accounts may join this server.
    AccountRequired,
    /// The name (or a look-alike of it), or the address, is banned from the room.
    Banned {
        /// When the ban ends (ms since the Unix epoch); `None`: until lifted.
        until: Option<u64>,
    },
}

/// The rule a refused name broke.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum NameRule {
    /// The name is empty.
    Empty,
    /// The name is longer than the limit.
    TooLong {
        /// The limit, in characters.
        max_chars: u32,
    },
    /// The name contains whitespace.
    Whitespace,
    /// The name contains a control character.
    Control,
    /// The name contains an invisible formatting character (zero-width, bidi override, ...).
    Invisible,
    /// The name mixes letters of scripts in a way Unicode's UTS #39 does not allow in an
    /// identifier (Latin with a Cyrillic look-alike, say), so it could pass for another name.
    MixedScript,
}

/// Why a request was refused without closing the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ErrorKind {
    /// The chat text is longer than the limit.
    TextTooLong {
        /// The limit, in bytes.
        max_bytes: u32,
    },
    /// The chat text is empty.
    TextEmpty,
    /// The chat text contains control or invisible formatting characters.
    TextInvalid,
    /// Too many messages too fast: this one was dropped.
    RateLimited,
    /// The room's shared log cannot be reached just now: this one was not sent.
    Unavailable,
    /// A rename was refused: someone online has this name, or one that looks the same.
    NameTaken,
    /// A rename was refused: the name breaks a rule.
    NameInvalid(NameRule),
    /// A rename was refused: the name (or a look-alike of it) is registered to an account.
    NameRegistered,
    /// A password to register is empty or longer than the limit.
    PasswordInvalid {
        /// The limit, in bytes.
        max_bytes: u32,
    },
    /// `Passwd`'s old password does not match, or too many wrong ones came lately.
    WrongPassword,
    /// `Passwd` or `Unregister` from a member whose name is not registered.
    NotRegistered,
    /// A `Register` or `Passwd` is already being worked on for this connection.
    Busy,
    /// A moderation request from a member who is not an operator.
    NotOperator,
    /// The member is muted: its chat (or away message, or rename) was not sent.
    Muted {
        /// When the mute ends (ms since the Unix epoch); `None`: until lifted.
        until: Option<u64>,
    },
    /// No member online has this name (or a look-alike of it).
    NoSuchMember,
    /// A ban's target is not a valid name, address or CIDR (host bits set, prefix too long).
    BadTarget,
    /// Nothing to lift: no such ban or mute is in force.
    NotBanned,
    /// The room holds as many bans (or mutes) as it allows: lift one first.
    TooManyBans,
}

/// Why a connection was closed, or why a member left.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CloseReason {
    /// The member asked to leave.
    Left,
    /// The connection dropped without a goodbye.
    Disconnected,
    /// No hello was accepted within the handshake deadline.
    HandshakeTimeout,
    /// Nothing was heard from the client within the idle timeout.
    IdleTimeout,
    /// The client did not read fast enough and its queue overflowed.
    TooSlow,
    /// The client kept sending faster than the rate limit.
    Flood,
    /// The client sent something that breaks the protocol.
    ProtocolError,
    /// The server is shutting down.
    ServerShutdown,
    /// The server has as many clients as it allows.
    ServerFull,
    /// The member's server stopped answering the room (crashed, cut off, or fenced out).
    ServerLost,
    /// The room's shared log was lost or skipped: everyone on this server must join again.
    RoomReset,
    /// Too many connections from the same address.
    TooManyConnections,
    /// An operator removed the member.
    Kicked,
    /// The member's name or address is banned.
    Banned,
}

impl CloseReason {
    /// Every reason, in declaration order.
    pub const ALL: [CloseReason; 14] = [
        CloseReason::Left,
        CloseReason::Disconnected,
        CloseReason::HandshakeTimeout,
        CloseReason::IdleTimeout,
        CloseReason::TooSlow,
        CloseReason::Flood,
        CloseReason::ProtocolError,
        CloseReason::ServerShutdown,
        CloseReason::ServerFull,
        CloseReason::ServerLost,
        CloseReason::RoomReset,
        CloseReason::TooManyConnections,
        CloseReason::Kicked,
        CloseReason::Banned,
    ];

    /// A stable code for the reason (`too_slow`), for text formats that carry it: a shared
    /// room's log, a JSON frame. [`CloseReason::from_code`] reads it back.
    pub fn code(self) -> &'static str {
        match self {
            CloseReason::Left => "left",
            CloseReason::Disconnected => "disconnected",
            CloseReason::HandshakeTimeout => "handshake_timeout",
            CloseReason::IdleTimeout => "idle_timeout",
            CloseReason::TooSlow => "too_slow",
            CloseReason::Flood => "flood",
            CloseReason::ProtocolError => "protocol_error",
            CloseReason::ServerShutdown => "server_shutdown",
            CloseReason::ServerFull => "server_full",
            CloseReason::ServerLost => "server_lost",
            CloseReason::RoomReset => "room_reset",
            CloseReason::TooManyConnections => "too_many_connections",
            CloseReason::Kicked => "kicked",
            CloseReason::Banned => "banned",
        }
    }

    /// The reason with this [`CloseReason::code`], if any.
    pub fn from_code(code: &str) -> Option<CloseReason> {
        CloseReason::ALL.into_iter().find(|r| r.code() == code)
    }
}

impl std::fmt::Display for CloseReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            CloseReason::Left => "left",
            CloseReason::Disconnected => "disconnected",
            CloseReason::HandshakeTimeout => "handshake timed out",
            CloseReason::IdleTimeout => "timed out",
            CloseReason::TooSlow => "too slow",
            CloseReason::Flood => "flooding",
            CloseReason::ProtocolError => "protocol error",
            CloseReason::ServerShutdown => "server shutting down",
            CloseReason::ServerFull => "server full",
            CloseReason::ServerLost => "their server was lost",
            CloseReason::RoomReset => "the room was reset; join again",
            CloseReason::TooManyConnections => "too many connections from one address",
            CloseReason::Kicked => "kicked by an operator",
            CloseReason::Banned => "banned",
        })
    }
}

impl std::fmt::Display for NameRule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NameRule::Empty => f.write_str("name is empty"),
            NameRule::TooLong { max_chars } => {
                write!(f, "name is longer than {max_chars} characters")
            }
            NameRule::Whitespace => f.write_str("name contains whitespace"),
            NameRule::Control => f.write_str("name contains a control character"),
            NameRule::Invisible => f.write_str("name contains an invisible formatting character"),
            NameRule::MixedScript => {
                f.write_str("name mixes look-alike letters from different scripts")
            }
        }
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::NameTaken => f.write_str("name is taken; choose another"),
            Refusal::NameInvalid(rule) => write!(f, "{rule}; choose another"),
            Refusal::UnsupportedVersion { supported } => {
                write!(
                    f,
                    "server speaks protocol version {supported}; upgrade the client"
                )
            }
            Refusal::ServerFull => f.write_str("server is full; try again later"),
            Refusal::AlreadyJoined => f.write_str("already joined"),
            Refusal::Unavailable => f.write_str("the room is unavailable just now; try again"),
            Refusal::TooManyConnections => {
                f.write_str("too many connections from your address; try again later")
            }
            Refusal::WrongPassword => f.write_str("wrong password for this name; try again"),
            Refusal::NameRegistered => {
                f.write_str("name is registered; give its password or choose another")
            }
            Refusal::AccountRequired => f.write_str("only registered accounts may join"),
            Refusal::Banned { until: None } => f.write_str("you are banned from this room"),
            Refusal::Banned { until: Some(ms) } => {
                write!(f, "you are banned from this room until {}", Utc(*ms))
            }
        }
    }
}

impl std::fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ErrorKind::TextTooLong { max_bytes } => {
                write!(f, "message is longer than {max_bytes} bytes; not sent")
            }
            ErrorKind::TextEmpty => f.write_str("message is empty; not sent"),
            ErrorKind::TextInvalid => f.write_str("message contains control characters; not sent"),
            ErrorKind::RateLimited => f.write_str("sending too fast; message dropped"),
            ErrorKind::Unavailable => {
                f.write_str("the room is unavailable just now; message not sent")
            }
            ErrorKind::NameTaken => f.write_str("name is taken; name not changed"),
            ErrorKind::NameInvalid(rule) => write!(f, "{rule}; name not changed"),
            ErrorKind::NameRegistered => {
                f.write_str("that name is registered to an account; not changed")
            }
            ErrorKind::PasswordInvalid { max_bytes } => {
                write!(f, "a password must be 1 to {max_bytes} bytes; not changed")
            }
            ErrorKind::WrongPassword => f.write_str("wrong password; not changed"),
            ErrorKind::NotRegistered => f.write_str("your name is not registered"),
            ErrorKind::Busy => f.write_str("the last account change is still being made; wait"),
            ErrorKind::NotOperator => f.write_str("only operators may do that"),
            ErrorKind::Muted { until: None } => f.write_str("you are muted; message not sent"),
            ErrorKind::Muted { until: Some(ms) } => {
                write!(f, "you are muted until {}; message not sent", Utc(*ms))
            }
            ErrorKind::NoSuchMember => f.write_str("no member online has that name"),
            ErrorKind::BadTarget => f.write_str(
                "not a name, an address or a network (CIDR with no host bits set); nothing done",
            ),
            ErrorKind::NotBanned => f.write_str("no such ban or mute; nothing done"),
            ErrorKind::TooManyBans => {
                f.write_str("the room holds as many bans as it allows; lift one first")
            }
        }
    }
}

/// A time in ms since the Unix epoch, shown as `2026-12-03 21:40 UTC`.
#[derive(Debug, Clone, Copy)]
pub struct Utc(pub u64);

impl std::fmt::Display for Utc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let secs = self.0 / 1000;
        let days = i64::try_from(secs / 86_400).unwrap_or(i64::MAX / 2);
        let (hour, minute) = ((secs % 86_400) / 3600, (secs % 3600) / 60);
        // Howard Hinnant's civil_from_days.
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = doy - (153 * mp + 2) / 5 + 1;
        let month = if mp < 10 { mp + 3 } else { mp - 9 };
        let year = yoe + era * 400 + i64::from(month <= 2);
        write!(f, "{year:04}-{month:02}-{day:02} {hour:02}:{minute:02} UTC")
    }
}
