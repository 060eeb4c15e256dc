//! Protocol version 2, as its clients speak it: still served, through [`downgrade`] on the way
//! out and [`From`] on the way in.
//!
//! The types are v2's exactly (postcard is positional: a field or variant more or less is
//! another protocol). [`Limits`] and [`NameRule`] are shared with version 3, whose encoding of
//! them is the same; a variant added to one of them in a later version needs a v2 copy here, so
//! that a v2 client is never sent a variant it does not know (a test counts them), as
//! [`CloseReason`] got when version 3 added kicks and bans.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::msg::{self, ChatKind, Limits, NameRule};

/// The version number a v2 hello carries.
pub const VERSION: u16 = 2;

/// A message from a v2 client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ClientMsg {
    /// The first frame on a connection.
    Hello {
        /// Must equal [`crate::MAGIC`].
        magic: u32,
        /// [`VERSION`].
        version: u16,
        /// The name wanted.
        name: String,
    },
    /// A line of chat; `/me ` in front of it was how an action travelled.
    Chat {
        /// The text.
        text: String,
    },
    /// Leave the room.
    Leave,
    /// Ask for the member list.
    Who,
    /// Liveness check.
    Ping {
        /// Echoed back.
        nonce: u64,
    },
    /// The answer to a server `Ping`.
    Pong {
        /// The nonce of the ping answered.
        nonce: u64,
    },
    /// Sent before the hello: where the history starts.
    Resume {
        /// The last chat sequence number the client saw.
        after: u64,
    },
}

/// A chat from before the welcome, as v2's history carries it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryChat {
    /// The room sequence number it had.
    pub seq: u64,
    /// The sender's name.
    pub from: Arc<str>,
    /// The text.
    pub text: Arc<str>,
}

/// A message to a v2 client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ServerMsg {
    /// The hello was accepted.
    Welcome {
        /// The name as registered.
        name: String,
        /// Members online.
        online: u32,
        /// Their names, when few enough.
        members: Vec<Arc<str>>,
        /// The limits in force.
        limits: Limits,
        /// The sequence number of the last chat before this join.
        seq: u64,
    },
    /// The hello was refused.
    Refused(Refusal),
    /// A chat message.
    Chat {
        /// Its sequence number.
        seq: u64,
        /// The sender's name.
        from: String,
        /// The text.
        text: String,
    },
    /// A member joined.
    Joined {
        /// Their name.
        name: String,
    },
    /// A member left.
    Left {
        /// Their name.
        name: String,
        /// Why.
        reason: CloseReason,
    },
    /// The answer to `Who`.
    Members {
        /// Everyone online.
        names: Vec<Arc<str>>,
    },
    /// A request was refused.
    Error(ErrorKind),
    /// Liveness check.
    Ping {
        /// Echo it.
        nonce: u64,
    },
    /// The answer to a client `Ping`.
    Pong {
        /// The nonce answered.
        nonce: u64,
    },
    /// The server is closing the connection, and why.
    Closing(CloseReason),
    /// The recent chat, after the welcome.
    History {
        /// Oldest first.
        chats: Vec<HistoryChat>,
        /// How many the client missed that are no longer kept.
        missed: u64,
    },
}

/// Why a v2 hello was refused: v2's set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Refusal {
    /// The name is taken.
    NameTaken,
    /// The name breaks a rule.
    NameInvalid(NameRule),
    /// The server does not speak this version.
    UnsupportedVersion {
        /// The version it speaks.
        supported: u16,
    },
    /// The server is full.
    ServerFull,
    /// Already joined.
    AlreadyJoined,
    /// The shared log cannot be reached.
    Unavailable,
    /// Too many connections from one address.
    TooManyConnections,
}

/// Why a v2 request was refused: v2's set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ErrorKind {
    /// The text is too long.
    TextTooLong {
        /// The limit, in bytes.
        max_bytes: u32,
    },
    /// The text is empty.
    TextEmpty,
    /// The text has control characters.
    TextInvalid,
    /// Too fast: dropped.
    RateLimited,
    /// The shared log cannot be reached.
    Unavailable,
}

/// Why a v2 connection was closed, or a member left: v2's set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CloseReason {
    /// Left.
    Left,
    /// The connection dropped.
    Disconnected,
    /// No hello in time.
    HandshakeTimeout,
    /// Silent too long.
    IdleTimeout,
    /// Did not read fast enough.
    TooSlow,
    /// Sent too fast.
    Flood,
    /// Broke the protocol.
    ProtocolError,
    /// The server is shutting down.
    ServerShutdown,
    /// The server is full.
    ServerFull,
    /// The member's server was lost.
    ServerLost,
    /// The room was reset.
    RoomReset,
    /// Too many connections from one address.
    TooManyConnections,
}

/// The v2 reason nearest to `reason`: a kicked member left, as far as v2 can tell; a banned
/// one is refused as an address with too many connections is.
pub fn downgrade_reason(reason: msg::CloseReason) -> CloseReason {
    use msg::CloseReason as V3;
    match reason {
        V3::Left | V3::Kicked => CloseReason::Left,
        V3::Disconnected => CloseReason::Disconnected,
        V3::HandshakeTimeout => CloseReason::HandshakeTimeout,
        V3::IdleTimeout => CloseReason::IdleTimeout,
        V3::TooSlow => CloseReason::TooSlow,
        V3::Flood => CloseReason::Flood,
        V3::ProtocolError => CloseReason::ProtocolError,
        V3::ServerShutdown => CloseReason::ServerShutdown,
        V3::ServerFull => CloseReason::ServerFull,
        V3::ServerLost => CloseReason::ServerLost,
        V3::RoomReset => CloseReason::RoomReset,
        V3::TooManyConnections | V3::Banned => CloseReason::TooManyConnections,
    }
}

/// How an action travelled before v3, in front of its text.
const ME: &str = "/me ";

impl From<ClientMsg> for msg::ClientMsg {
    /// What a v2 client's message means in v3. A chat that starts with `/me ` and says
    /// something after it is an action, as the v2 client's user meant it (and as v2 clients
    /// are shown actions); a resume knows no epoch (0), so it resumes by number alone.
    fn from(msg: ClientMsg) -> Self {
        match msg {
            ClientMsg::Hello {
                magic,
                version,
                name,
            } => msg::ClientMsg::Hello {
                magic,
                version,
                name,
                password: None,
                ident: None,
            },
            ClientMsg::Chat { text } => match text.strip_prefix(ME) {
                Some(action) if !action.trim().is_empty() => msg::ClientMsg::Chat {
                    text: action.to_owned(),
                    kind: ChatKind::Action,
                },
                _ => msg::ClientMsg::Chat {
                    text,
                    kind: ChatKind::Plain,
                },
            },
            ClientMsg::Leave => msg::ClientMsg::Leave { message: None },
            ClientMsg::Who => msg::ClientMsg::Who,
            ClientMsg::Ping { nonce } => msg::ClientMsg::Ping { nonce },
            ClientMsg::Pong { nonce } => msg::ClientMsg::Pong { nonce },
            ClientMsg::Resume { after } => msg::ClientMsg::Resume { after, epoch: 0 },
        }
    }
}

/// What a v2 client is sent for `msg`, through `out`: nothing, one message, or two (a rename
/// is a leave and a join). An action is its text after `/me `; a notice is plain chat; times,
/// idents, parting words and away are left out. Refusals and errors v2 does not know become
/// the nearest one it does: see [`downgrade_refusal`], [`downgrade_error`].
pub fn downgrade(msg: &msg::ServerMsg, mut out: impl FnMut(ServerMsg)) {
    use msg::ServerMsg as V3;
    let sent = match msg {
        V3::Welcome {
            name,
            online,
            members,
            limits,
            seq,
            epoch: _,
        } => ServerMsg::Welcome {
            name: name.clone(),
            online: *online,
            members: names(members),
            limits: *limits,
            seq: *seq,
        },
        V3::Refused(refusal) => ServerMsg::Refused(downgrade_refusal(*refusal)),
        V3::Chat {
            seq,
            from,
            text,
            kind,
            time: _,
        } => ServerMsg::Chat {
            seq: *seq,
            from: from.clone(),
            text: chat_text(text, *kind),
        },
        V3::Joined { name, .. } => ServerMsg::Joined { name: name.clone() },
        V3::Left { name, reason, .. } => ServerMsg::Left {
            name: name.clone(),
            reason: downgrade_reason(*reason),
        },
        V3::Members { members } => ServerMsg::Members {
            names: names(members),
        },
        V3::Error(error) => match downgrade_error(*error) {
            Some(error) => ServerMsg::Error(error),
            None => return,
        },
        V3::Ping { nonce } => ServerMsg::Ping { nonce: *nonce },
        V3::Pong { nonce } => ServerMsg::Pong { nonce: *nonce },
        V3::Closing(reason) => ServerMsg::Closing(downgrade_reason(*reason)),
        V3::History { chats, missed } => ServerMsg::History {
            chats: chats
                .iter()
                .map(|c| HistoryChat {
                    seq: c.seq,
                    from: c.from.clone(),
                    text: match c.kind {
                        ChatKind::Action => chat_text(&c.text, c.kind).into(),
                        ChatKind::Plain | ChatKind::Notice => c.text.clone(),
                    },
                })
                .collect(),
            missed: *missed,
        },
        V3::Renamed { from, to, .. } => {
            out(ServerMsg::Left {
                name: from.clone(),
                reason: CloseReason::Left,
            });
            ServerMsg::Joined { name: to.clone() }
        }
        // A v2 client cannot moderate; what moderation does to members it sees as leaves.
        V3::Away { .. }
        | V3::Registered { .. }
        | V3::Unregistered { .. }
        | V3::Moderated { .. }
        | V3::Bans { .. } => return,
    };
    out(sent);
}

/// The v2 refusal nearest to `refusal`. A v2 client cannot give a password: a registered name
/// is taken as far as it can tell, and a server that admits accounts only needs a newer client.
pub fn downgrade_refusal(refusal: msg::Refusal) -> Refusal {
    use msg::Refusal as V3;
    match refusal {
        V3::NameTaken | V3::WrongPassword | V3::NameRegistered => Refusal::NameTaken,
        V3::NameInvalid(rule) => Refusal::NameInvalid(rule),
        V3::UnsupportedVersion { supported } => Refusal::UnsupportedVersion { supported },
        V3::AccountRequired => Refusal::UnsupportedVersion {
            supported: crate::PROTOCOL_VERSION,
        },
        V3::ServerFull => Refusal::ServerFull,
        V3::AlreadyJoined => Refusal::AlreadyJoined,
        V3::Unavailable => Refusal::Unavailable,
        V3::TooManyConnections | V3::Banned { .. } => Refusal::TooManyConnections,
    }
}

/// The v2 error for `error`, or `None` for the refusal of a rename, of an account change or
/// of moderation, which a v2 client cannot ask for (and so is never the one refused). A muted
/// v2 client's chat was dropped, as a chat sent too fast is.
pub fn downgrade_error(error: msg::ErrorKind) -> Option<ErrorKind> {
    use msg::ErrorKind as V3;
    Some(match error {
        V3::TextTooLong { max_bytes } => ErrorKind::TextTooLong { max_bytes },
        V3::TextEmpty => ErrorKind::TextEmpty,
        V3::TextInvalid => ErrorKind::TextInvalid,
        V3::RateLimited | V3::Muted { .. } => ErrorKind::RateLimited,
        V3::Unavailable => ErrorKind::Unavailable,
        V3::NameTaken
        | V3::NameInvalid(_)
        | V3::NameRegistered
        | V3::PasswordInvalid { .. }
        | V3::WrongPassword
        | V3::NotRegistered
        | V3::Busy
        | V3::NotOperator
        | V3::NoSuchMember
        | V3::BadTarget
        | V3::NotBanned
        | V3::TooManyBans => return None,
    })
}

/// A chat's text as v2 shows it: an action after `/me `.
fn chat_text(text: &str, kind: ChatKind) -> String {
    match kind {
        ChatKind::Action => format!("{ME}{text}"),
        ChatKind::Plain | ChatKind::Notice => text.to_owned(),
    }
}

fn names(members: &[msg::Member]) -> Vec<Arc<str>> {
    members.iter().map(|m| m.name.clone()).collect()
}
