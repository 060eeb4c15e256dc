//! IRC connections as a [`chat_core::Codec`]: their bytes in, through each one's session; the
//! room's messages out as IRC lines.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use chat_core::{Codec, CodecId, ConnId, ConnMap, Hub, Inbound, fold_name};
use chat_proto::{
    BanInfo, ChatKind, CloseReason, ErrorKind, HistoryChat, ModAction, MuteInfo, Refusal, ServerMsg,
};

use super::caps::{self, Cap, Caps};
use super::commands::Listing;
use super::info::{self, Server};
use super::line::MAX_LINE;
use super::lists::members;
use super::session::Session;
use super::tags::{self, tag_lines};

/// How a plain chat's text marks an action where a client cannot send one of the action kind
/// (a v2 client's `/me waves`): IRC recipients get it as a CTCP ACTION too.
pub const ACTION_PREFIX: &str = "/me ";

/// Characters IRC cannot carry in a nick anywhere (`!` and `@` split a prefix, `,` splits
/// targets), and `%`, the escape itself.
const ESCAPED_ANYWHERE: &[char] = &['!', '@', ',', '%'];

/// Characters a nick cannot start with: a trailing-parameter colon, the channel type, and
/// membership prefixes that clients strip from NAMES replies.
const ESCAPED_FIRST: &[char] = &[':', '#', '&', '+', '~'];

/// The nick IRC users see for a room name: each character IRC cannot carry there is written
/// `%XX` (its hex code), so the mapping is one-to-one. Every valid IRC nick maps to itself.
pub fn irc_nick(name: &str) -> Cow<'_, str> {
    let escape = |(i, c): (usize, char)| {
        ESCAPED_ANYWHERE.contains(&c) || (i == 0 && ESCAPED_FIRST.contains(&c))
    };
    if !name.char_indices().any(escape) {
        return Cow::Borrowed(name);
    }
    let mut out = String::with_capacity(name.len() + 6);
    for (i, c) in name.char_indices() {
        if escape((i, c)) {
            let _ = write!(out, "%{:02X}", c as u32);
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// What every IRC line from the server names: the server, the channel, the host in prefixes.
#[derive(Debug, Clone)]
pub struct Identity {
    /// The prefix of every server line, and the host of every member's prefix.
    pub server: String,
    /// The room's one channel.
    pub channel: String,
}

/// The IRC codec: IRC lines in, the room's inputs out; the room's messages out as IRC lines.
///
/// It keeps each connection's session from its first bytes until the hub forgets it. Lines
/// after a hello wait in the session (at most [`MAX_KEPT`](super::MAX_KEPT) bytes) until the
/// welcome or refusal is encoded; then [`Codec::poll_ready`] names the connection and the hub
/// decodes on.
#[derive(Debug)]
pub struct IrcCodec {
    id: Identity,
    sessions: ConnMap<Session>,
    /// What it knows beyond its identity (MOTD, the time).
    srv: Server,
    /// The members here, by folded nick: whose nick a rename changes, and who PARTed (not
    /// in the room when its leave comes) rather than QUIT. One entry per session at most.
    here: HashMap<String, ConnId>,
    /// Connections with kept lines that can go on now.
    ready: VecDeque<ConnId>,
    /// Connections whose MONITOR list holds something.
    watchers: HashSet<ConnId>,
    /// What MONITOR tells them, for [`Codec::poll_send`].
    monitored: VecDeque<(ConnId, Vec<u8>)>,
    /// Connections to move to the lane their capabilities need ([`Codec::poll_move`]).
    moves: VecDeque<(ConnId, usize)>,
    /// The capabilities that change broadcasts which this lane's connections have: none for
    /// the codec itself, some for each of its views.
    lane: Caps,
    /// Whether the member whose leave is being broadcast PARTed: set by the codec as it
    /// observes the leave, read by it and its views as they encode it.
    parted: Arc<AtomicBool>,
}

impl IrcCodec {
    /// A codec naming `id`.
    pub fn new(id: Identity) -> Self {
        Self {
            id,
            sessions: ConnMap::default(),
            srv: Server::default(),
            here: HashMap::new(),
            ready: VecDeque::new(),
            moves: VecDeque::new(),
            watchers: HashSet::new(),
            monitored: VecDeque::new(),
            lane: Caps::default(),
            parted: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Adds the codec to `hub` with a view for each combination of the capabilities that
    /// change a broadcast's bytes (server-time, away-notify), so that each broadcast is
    /// encoded once per combination in use; returns the codec's id, to attach connections to.
    /// A codec added with [`Hub::add_codec`] alone does not offer those capabilities.
    pub fn add_to(mut self, hub: &mut Hub) -> CodecId {
        self.srv.views = true;
        let views: Vec<IrcCodec> = (1..caps::VARIANTS)
            .map(|variant| IrcCodec {
                lane: Caps::of_variant(variant),
                parted: self.parted.clone(),
                ..IrcCodec::new(self.id.clone())
            })
            .collect();
        let main = hub.add_codec(Box::new(self));
        for view in views {
            hub.add_view(main, Box::new(view));
        }
        main
    }
}

impl IrcCodec {
    /// The message of the day MOTD shows (the text of `--irc-motd FILE`); without one, MOTD
    /// answers 422. Cut to lines IRC can carry.
    pub fn set_motd(&mut self, text: &str) {
        self.srv.motd = Some(info::motd_lines(text));
    }

    /// The wall-clock time now, in ms since the Unix epoch, as TIME shows it: the codec has no
    /// clock. It also takes the time of each entry it encodes, whichever is later.
    pub fn set_time(&mut self, unix_ms: u64) {
        self.srv.saw_time(unix_ms);
    }
}

impl Codec for IrcCodec {
    fn decode(&mut self, conn: ConnId, bytes: &[u8], out: &mut Vec<Inbound>) {
        let session = self.sessions.entry(conn).or_default();
        if session.decode(&self.id, &self.srv, bytes, out) {
            self.ready.push_back(conn);
        }
        if let Some(variant) = session.take_move() {
            self.moves.push_back((conn, variant));
        }
        if session.phase().watching() {
            self.watchers.insert(conn);
        } else {
            self.watchers.remove(&conn);
        }
    }

    fn poll_send(&mut self) -> Option<(ConnId, Vec<u8>)> {
        self.monitored.pop_front()
    }

    fn poll_move(&mut self) -> Option<(ConnId, usize)> {
        self.moves.pop_front()
    }

    fn observe(&mut self, msg: &ServerMsg) {
        if self.lane != Caps::default() {
            return; // a view: the codec itself keeps the sessions
        }
        if let Some(time) = entry_time(msg) {
            self.srv.saw_time(time);
        }
        match msg {
            ServerMsg::Left { name, .. } => {
                let parted = self.left_here(&irc_nick(name));
                self.parted.store(parted, Ordering::Relaxed);
                self.monitor(name, false);
            }
            ServerMsg::Renamed { from, to, .. } => {
                self.monitor(from, false);
                self.monitor(to, true);
                let (from, to) = (irc_nick(from), irc_nick(to).into_owned());
                self.renamed_here(&from, to);
            }
            ServerMsg::Joined { name, .. } => self.monitor(name, true),
            _ => {}
        }
    }

    fn poll_ready(&mut self) -> Option<ConnId> {
        // A connection forgotten meanwhile has nothing left to go on with.
        std::iter::from_fn(|| self.ready.pop_front()).find(|c| self.sessions.contains_key(c))
    }

    fn encode_to(&mut self, to: ConnId, msg: &ServerMsg, out: &mut Vec<u8>) -> bool {
        let ready = match msg {
            ServerMsg::Welcome { .. } => self.welcomed(to, msg, out),
            ServerMsg::Refused(refusal) => {
                let session = self.sessions.get_mut(&to);
                let me = session.as_ref().map_or("*", |s| s.phase().me()).to_owned();
                let wanted = session.as_ref().map_or("", |s| s.phase().wanted());
                refused(out, &self.id, &me, wanted, refusal);
                session.is_some_and(Session::refused)
            }
            ServerMsg::Error(kind) => self.error(to, kind, out),
            ServerMsg::Members { members: list } => {
                self.members(to, list, out);
                false
            }
            ServerMsg::Ping { nonce } => {
                push(out, format_args!("PING :{nonce}"));
                false
            }
            // An IRC client cannot register yet (draft/account-registration is to come).
            ServerMsg::Pong { .. }
            | ServerMsg::Registered { .. }
            | ServerMsg::Unregistered { .. } => {
                return false;
            }
            ServerMsg::Closing(reason) => {
                push(out, format_args!("ERROR :Closing link: {reason}"));
                false
            }
            ServerMsg::Chat { .. }
            | ServerMsg::Joined { .. }
            | ServerMsg::Left { .. }
            | ServerMsg::Renamed { .. }
            | ServerMsg::Away { .. }
            | ServerMsg::Moderated { .. } => {
                // Sent to it alone (a rename past `announce_max`), never observed.
                self.observe(msg);
                let caps = self
                    .sessions
                    .get(&to)
                    .map(Session::caps)
                    .unwrap_or_default();
                return self.encode_as(caps, msg, out);
            }
            ServerMsg::Bans { bans, mutes } => {
                let session = self.sessions.get_mut(&to);
                let me = session.map_or("*", |s| {
                    s.take_bans();
                    s.phase().me()
                });
                ban_list(out, &self.id, me, bans, mutes);
                false
            }
            ServerMsg::History { chats, missed } => {
                let session = self.sessions.get_mut(&to);
                let caps = session.as_ref().map(|s| s.caps()).unwrap_or_default();
                let asked = session.and_then(|s| s.take_history().then(|| s.batch_id()));
                match asked {
                    Some(batch) => chathistory(out, &self.id, caps, batch.as_deref(), chats),
                    None => history(out, &self.id, caps, chats, *missed),
                }
                false
            }
        };
        if ready {
            self.ready.push_back(to);
        }
        true
    }

    fn encode_broadcast(&mut self, msg: &ServerMsg, out: &mut Vec<u8>) -> bool {
        self.encode_as(self.lane, msg, out)
    }

    fn forget(&mut self, conn: ConnId) {
        self.watchers.remove(&conn);
        if let Some(session) = self.sessions.remove(&conn) {
            let key = fold_name(session.phase().me());
            if self.here.get(&key) == Some(&conn) {
                self.here.remove(&key);
            }
        }
    }
}

impl IrcCodec {
    /// A broadcast's lines for connections with `caps`: with server-time, each line carries
    /// the entry's time; with away-notify, away changes are told.
    fn encode_as(&self, caps: Caps, msg: &ServerMsg, out: &mut Vec<u8>) -> bool {
        let start = out.len();
        let (srv, chan) = (self.id.server.as_str(), self.id.channel.as_str());
        match msg {
            ServerMsg::Chat {
                from, text, kind, ..
            } => chat_lines(out, &self.id, from, text, *kind),
            ServerMsg::Joined { name, .. } => {
                let n = irc_nick(name);
                push(out, format_args!(":{n}!{n}@{srv} JOIN {chan}"));
            }
            // The KICK line took the member out of the channel.
            ServerMsg::Left {
                reason: CloseReason::Kicked,
                ..
            } => return false,
            ServerMsg::Left {
                name,
                reason,
                message,
                ..
            } => {
                let n = irc_nick(name);
                let parted = self.parted.load(Ordering::Relaxed);
                match (parted, message.as_deref()) {
                    (true, Some(w)) => push(out, format_args!(":{n}!{n}@{srv} PART {chan} :{w}")),
                    (true, None) => push(out, format_args!(":{n}!{n}@{srv} PART {chan}")),
                    (false, Some(w)) => push(out, format_args!(":{n}!{n}@{srv} QUIT :{w}")),
                    (false, None) => push(out, format_args!(":{n}!{n}@{srv} QUIT :{reason}")),
                }
            }
            ServerMsg::Renamed { from, to, .. } => {
                let (from, to) = (irc_nick(from), irc_nick(to));
                push(out, format_args!(":{from}!{from}@{srv} NICK {to}"));
            }
            ServerMsg::Moderated { by, action, .. } => {
                let op = irc_nick(by);
                let line = match action {
                    ModAction::Kicked { name, reason } => {
                        let why = reason.as_deref().unwrap_or(&op);
                        format!("KICK {chan} {} :{why}", irc_nick(name))
                    }
                    ModAction::Banned { target, .. } => format!("MODE {chan} +b {}", mask(target)),
                    ModAction::Unbanned { target } => format!("MODE {chan} -b {}", mask(target)),
                    ModAction::Muted { name, .. } => format!("MODE {chan} +b m:{}", mask(name)),
                    ModAction::Unmuted { name } => format!("MODE {chan} -b m:{}", mask(name)),
                };
                push(out, format_args!(":{op}!{op}@{srv} {line}"));
            }
            ServerMsg::Away { name, message, .. } if caps.has(Cap::AWAY_NOTIFY) => {
                let n = irc_nick(name);
                match message {
                    Some(m) => push(out, format_args!(":{n}!{n}@{srv} AWAY :{m}")),
                    None => push(out, format_args!(":{n}!{n}@{srv} AWAY")),
                }
            }
            _ => return false,
        }
        if caps.has(Cap::SERVER_TIME)
            && let Some(time) = entry_time(msg)
        {
            tag_lines(out, start, &format!("time={}", info::server_time(time)));
        }
        true
    }

    /// The answer to the command that asked for the member list, labeled if it was.
    fn members(&mut self, to: ConnId, list: &[chat_proto::Member], out: &mut Vec<u8>) {
        let Some(session) = self.sessions.get_mut(&to) else {
            return;
        };
        let me = session.phase().me().to_owned();
        let listing = session.take_listing().unwrap_or(Listing::Names);
        let caps = session.caps();
        let start = out.len();
        members(out, &self.id, caps, &me, listing, list);
        if let Some(label) = session.take_label() {
            let batch = session.batch_id();
            let lines = out.split_off(start);
            let server = &self.id.server;
            out.extend(tags::labeled(server, &lines, &label, batch.as_deref()));
        }
    }

    /// The room welcomed `to`: the welcome numerics, or after a PART only the JOIN and names.
    /// Returns whether what waited can go on.
    fn welcomed(&mut self, to: ConnId, msg: &ServerMsg, out: &mut Vec<u8>) -> bool {
        let ServerMsg::Welcome {
            name,
            online,
            members,
            limits,
            ..
        } = msg
        else {
            return false;
        };
        let nick = irc_nick(name).into_owned();
        let session = self.sessions.get_mut(&to);
        let rejoin = session.and_then(|s| s.welcomed(nick.clone()));
        let names: Vec<Arc<str>> = members.iter().map(|m| m.name.clone()).collect();
        if rejoin == Some(true) {
            push(
                out,
                format_args!(":{nick}!{nick}@{} JOIN {}", self.id.server, self.id.channel),
            );
            names_or_count(out, &self.id, &nick, *online, &names);
        } else {
            self.srv.nicklen = limits.max_name_chars;
            welcome(out, &self.id, &self.srv, &nick, *online, &names);
        }
        let Some(session) = rejoin.and(self.sessions.get(&to)) else {
            return false;
        };
        self.here.insert(fold_name(&nick), to);
        session.ready()
    }

    /// An error from the room: a refused rename as 433/432, a refused text as 404, the rest
    /// as a NOTICE. Returns whether what waited can go on.
    fn error(&mut self, to: ConnId, kind: &ErrorKind, out: &mut Vec<u8>) -> bool {
        let (srv, chan) = (self.id.server.as_str(), self.id.channel.as_str());
        let mut session = self.sessions.get_mut(&to);
        let me = session.as_ref().map_or("*", |s| s.phase().me()).to_owned();
        let standard = session
            .as_ref()
            .is_some_and(|s| s.caps().has(Cap::STANDARD_REPLIES));
        let bans_asked = *kind == ErrorKind::NotOperator
            && session.as_deref_mut().is_some_and(Session::take_bans);
        let renaming = match kind {
            ErrorKind::NameTaken | ErrorKind::NameInvalid(_) => {
                session.and_then(Session::take_renaming)
            }
            _ => None,
        };
        match (kind, renaming) {
            (ErrorKind::NameTaken, Some(nick)) => push(
                out,
                format_args!(
                    ":{srv} 433 {me} {nick} :Nickname is already in use (or one that looks the same)"
                ),
            ),
            (ErrorKind::NameInvalid(rule), Some(nick)) => push(
                out,
                format_args!(":{srv} 432 {me} {nick} :Erroneous nickname: {rule}"),
            ),
            (
                ErrorKind::TextTooLong { .. }
                | ErrorKind::TextEmpty
                | ErrorKind::TextInvalid
                | ErrorKind::Muted { .. },
                _,
            ) => {
                push(out, format_args!(":{srv} 404 {me} {chan} :{kind}"));
            }
            (ErrorKind::NotOperator, _) if bans_asked => {
                push(
                    out,
                    format_args!(":{srv} 368 {me} {chan} :End of channel ban list"),
                );
            }
            (ErrorKind::NotOperator, _) => push(
                out,
                format_args!(":{srv} 482 {me} {chan} :You're not a channel operator"),
            ),
            (ErrorKind::NoSuchMember, _) => push(
                out,
                format_args!(":{srv} 441 {me} * {chan} :They aren't on that channel"),
            ),
            _ if standard => {}
            _ => push(out, format_args!(":{srv} NOTICE {me} :{kind}")),
        }
        if standard {
            let code = fail_code(kind);
            push(out, format_args!(":{srv} FAIL * {code} :{kind}"));
        }
        self.sessions.get_mut(&to).is_some_and(Session::error)
    }

    /// Tells those who MONITOR `name` that it came (730) or went (731).
    fn monitor(&mut self, name: &str, online: bool) {
        if self.watchers.is_empty() {
            return;
        }
        let (srv, nick) = (&self.id.server, irc_nick(name));
        for conn in &self.watchers {
            let Some(session) = self.sessions.get(conn) else {
                continue;
            };
            if !session.phase().watches(&nick) {
                continue;
            }
            let me = session.phase().me();
            let line = if online {
                format!(":{srv} 730 {me} :{nick}!{nick}@{srv}\r\n")
            } else {
                format!(":{srv} 731 {me} :{nick}\r\n")
            };
            self.monitored.push_back((*conn, line.into_bytes()));
        }
    }

    /// `nick` left: whether it was a member here that PARTed (it is out of the room, still
    /// connected), rather than one that QUIT or was closed.
    fn left_here(&mut self, nick: &str) -> bool {
        let key = fold_name(nick);
        let Some(conn) = self.here.get(&key).copied() else {
            return false;
        };
        let parted = self
            .sessions
            .get(&conn)
            .is_some_and(|s| !s.phase().in_room() && fold_name(s.phase().me()) == key);
        if parted
            || !self
                .sessions
                .get(&conn)
                .is_some_and(|s| s.phase().in_room())
        {
            self.here.remove(&key);
        }
        parted
    }

    /// A member here took another nick: its later lines name it so.
    fn renamed_here(&mut self, from: &str, to: String) {
        let Some(conn) = self.here.remove(&fold_name(from)) else {
            return;
        };
        if let Some(session) = self.sessions.get_mut(&conn) {
            session.renamed(to.clone());
            self.here.insert(fold_name(&to), conn);
        }
    }
}

/// The standard-replies code of what the room refused.
fn fail_code(kind: &ErrorKind) -> &'static str {
    match kind {
        ErrorKind::RateLimited => "RATE_LIMITED",
        ErrorKind::TextTooLong { .. } => "TEXT_TOO_LONG",
        ErrorKind::TextEmpty => "NO_TEXT",
        ErrorKind::TextInvalid => "INVALID_TEXT",
        ErrorKind::NameTaken => "NICKNAME_IN_USE",
        ErrorKind::NameInvalid(_) => "ERRONEUS_NICKNAME",
        ErrorKind::Unavailable | ErrorKind::Busy => "TEMPORARILY_UNAVAILABLE",
        ErrorKind::NameRegistered => "NICKNAME_IN_USE",
        ErrorKind::PasswordInvalid { .. } => "BAD_PASSWORD",
        ErrorKind::WrongPassword => "INVALID_CREDENTIALS",
        ErrorKind::NotRegistered => "ACCOUNT_REQUIRED",
        ErrorKind::NotOperator => "NEED_PRIVILEGES",
        ErrorKind::Muted { .. } => "CANNOT_SEND",
        ErrorKind::NoSuchMember => "NO_SUCH_NICK",
        ErrorKind::BadTarget => "INVALID_TARGET",
        ErrorKind::NotBanned => "NOT_BANNED",
        ErrorKind::TooManyBans => "LIST_FULL",
    }
}

/// A ban's target as an IRC mask: `*!*@ADDRESS` or `*!*@CIDR` for an address or a network
/// (what has a `.`, `:` or `/`), `nick!*@*` for a name.
fn mask(target: &str) -> String {
    if target.contains(['.', ':', '/']) {
        format!("*!*@{target}")
    } else {
        format!("{}!*@*", irc_nick(target))
    }
}

/// The ban list (367 per ban, mutes as `m:` masks, then 368), as MODE +b asks.
fn ban_list(out: &mut Vec<u8>, id: &Identity, me: &str, bans: &[BanInfo], mutes: &[MuteInfo]) {
    let (srv, chan) = (id.server.as_str(), id.channel.as_str());
    for ban in bans {
        let (by, since) = (irc_nick(&ban.by), ban.since / 1000);
        let mask = mask(&ban.target);
        push(
            out,
            format_args!(":{srv} 367 {me} {chan} {mask} {by} {since}"),
        );
    }
    for mute in mutes {
        let (by, mask) = (irc_nick(&mute.by), mask(&mute.name));
        push(out, format_args!(":{srv} 367 {me} {chan} m:{mask} {by} 0"));
    }
    push(
        out,
        format_args!(":{srv} 368 {me} {chan} :End of channel ban list"),
    );
}

/// The time the log gave the entry `msg` shows, if it is one.
fn entry_time(msg: &ServerMsg) -> Option<u64> {
    match msg {
        ServerMsg::Chat { time, .. }
        | ServerMsg::Joined { time, .. }
        | ServerMsg::Left { time, .. }
        | ServerMsg::Renamed { time, .. }
        | ServerMsg::Away { time, .. }
        | ServerMsg::Moderated { time, .. } => Some(*time),
        _ => None,
    }
}

/// A chat as IRC lines, each at most 512 bytes: an action as a CTCP ACTION, a notice as a
/// NOTICE, long text in pieces.
fn chat_lines(out: &mut Vec<u8>, id: &Identity, from: &str, text: &str, kind: ChatKind) {
    let (srv, chan) = (id.server.as_str(), id.channel.as_str());
    let from = irc_nick(from);
    let (text, action) = match (kind, text.strip_prefix(ACTION_PREFIX)) {
        (ChatKind::Action, _) => (text, true),
        (ChatKind::Plain, Some(rest)) if !rest.trim().is_empty() => (rest, true),
        _ => (text, false),
    };
    let command = if kind == ChatKind::Notice {
        "NOTICE"
    } else {
        "PRIVMSG"
    };
    let head = format!(":{from}!{from}@{srv} {command} {chan} :");
    let room = MAX_LINE.saturating_sub(2 + head.len() + if action { 9 } else { 0 });
    for piece in pieces(text, room.max(16)) {
        out.extend_from_slice(head.as_bytes());
        if action {
            out.extend_from_slice(b"\x01ACTION ");
            out.extend_from_slice(piece.as_bytes());
            out.extend_from_slice(b"\x01\r\n");
        } else {
            out.extend_from_slice(piece.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
    }
}

/// The welcome numerics, the JOIN, and the names (or how many are online).
fn welcome(
    out: &mut Vec<u8>,
    id: &Identity,
    srv_info: &Server,
    nick: &str,
    online: u32,
    members: &[Arc<str>],
) {
    let srv = id.server.as_str();
    let version = info::VERSION;
    push(
        out,
        format_args!(":{srv} 001 {nick} :Welcome to the chat, {nick}"),
    );
    push(
        out,
        format_args!(":{srv} 002 {nick} :Your host is {srv}, running {version}"),
    );
    push(
        out,
        format_args!(":{srv} 003 {nick} :This server is a gateway to one chat room"),
    );
    push(out, format_args!(":{srv} 004 {nick} {srv} {version} i nt"));
    let mut motd = Vec::new();
    info::isupport(&mut motd, srv, nick, srv_info.nicklen);
    info::motd(&mut motd, id, srv_info, nick);
    for line in motd {
        push(out, format_args!("{line}"));
    }
    push(
        out,
        format_args!(":{nick}!{nick}@{srv} JOIN {}", id.channel),
    );
    names_or_count(out, id, nick, online, members);
}

/// The names a welcome lists, or how many are online when it lists none (a large room).
fn names_or_count(out: &mut Vec<u8>, id: &Identity, nick: &str, online: u32, members: &[Arc<str>]) {
    let srv = id.server.as_str();
    if members.is_empty() && online > 1 {
        push(
            out,
            format_args!(":{srv} NOTICE {nick} :{online} members online; /names lists them"),
        );
    }
    let names: Vec<Cow<'_, str>> = if members.is_empty() {
        vec![Cow::Borrowed(nick)]
    } else {
        members.iter().map(|m| irc_nick(m)).collect()
    };
    names_lines(out, id, nick, &names);
}

/// The numeric for a refused hello for `wanted`.
fn refused(out: &mut Vec<u8>, id: &Identity, me: &str, wanted: &str, refusal: &Refusal) {
    let srv = id.server.as_str();
    match refusal {
        Refusal::NameTaken => push(
            out,
            format_args!(
                ":{srv} 433 {me} {wanted} :Nickname is already in use (or one that looks the same)"
            ),
        ),
        Refusal::NameInvalid(rule) => push(
            out,
            format_args!(":{srv} 432 {me} {wanted} :Erroneous nickname: {rule}"),
        ),
        Refusal::AlreadyJoined => {
            push(out, format_args!(":{srv} 462 {me} :You may not reregister"));
        }
        other => push(out, format_args!(":{srv} NOTICE {me} :{other}")),
    }
}

/// What was said before: server NOTICEs to the channel, set apart from live PRIVMSGs so that
/// nobody answers a stale line by mistake.
fn history(out: &mut Vec<u8>, id: &Identity, caps: Caps, chats: &[HistoryChat], missed: u64) {
    let (srv, chan) = (id.server.as_str(), id.channel.as_str());
    if missed > 0 {
        push(
            out,
            format_args!(":{srv} NOTICE {chan} :{missed} earlier messages were missed"),
        );
    }
    let tagged = caps.has(Cap::SERVER_TIME);
    for chat in chats {
        let from = irc_nick(&chat.from);
        let said = match chat.kind {
            ChatKind::Plain => format!("<{from}>"),
            ChatKind::Action => format!("* {from}"),
            ChatKind::Notice => format!("-{from}-"),
        };
        let head = if tagged {
            format!(":{srv} NOTICE {chan} :[earlier] {said} ")
        } else {
            let (_, _, _, h, m, _) = info::civil(chat.time);
            format!(":{srv} NOTICE {chan} :[{h:02}:{m:02}] {said} ")
        };
        let start = out.len();
        // Long names (a long --max-name-chars) leave little room: never below 16.
        let room = MAX_LINE.saturating_sub(2 + head.len());
        for piece in pieces(&chat.text, room.max(16)) {
            out.extend_from_slice(head.as_bytes());
            out.extend_from_slice(piece.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        if tagged {
            tag_lines(
                out,
                start,
                &format!("time={}", info::server_time(chat.time)),
            );
        }
    }
}

/// A CHATHISTORY answer: the chats as they were said, with their times, in a `chathistory`
/// batch if the client takes batches.
fn chathistory(
    out: &mut Vec<u8>,
    id: &Identity,
    caps: Caps,
    batch: Option<&str>,
    chats: &[HistoryChat],
) {
    let (srv, chan) = (id.server.as_str(), id.channel.as_str());
    if let Some(b) = batch {
        push(out, format_args!(":{srv} BATCH +{b} chathistory {chan}"));
    }
    for chat in chats {
        let start = out.len();
        chat_lines(out, id, &chat.from, &chat.text, chat.kind);
        let time = info::server_time(chat.time);
        let tag = match (batch, caps.has(Cap::SERVER_TIME)) {
            (Some(b), true) => format!("batch={b};time={time}"),
            (Some(b), false) => format!("batch={b}"),
            (None, true) => format!("time={time}"),
            (None, false) => continue,
        };
        tag_lines(out, start, &tag);
    }
    if let Some(b) = batch {
        push(out, format_args!(":{srv} BATCH -{b}"));
    }
}

/// Appends one line and its CR LF.
pub(crate) fn push(out: &mut Vec<u8>, line: std::fmt::Arguments<'_>) {
    let _ = std::io::Write::write_fmt(out, line);
    out.extend_from_slice(b"\r\n");
}

/// `text` cut at character boundaries into pieces of at most `max` bytes.
fn pieces(text: &str, max: usize) -> impl Iterator<Item = &str> {
    let mut rest = text;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let mut end = rest.len().min(max);
        while !rest.is_char_boundary(end) {
            end -= 1;
        }
        let (piece, tail) = rest.split_at(end);
        rest = tail;
        Some(piece)
    })
}

/// 353 lines of at most 512 bytes listing `names`, then 366.
pub(crate) fn names_lines<S: AsRef<str>>(out: &mut Vec<u8>, id: &Identity, me: &str, names: &[S]) {
    let (srv, chan) = (id.server.as_str(), id.channel.as_str());
    let head = format!(":{srv} 353 {me} = {chan} :");
    let mut line = head.clone();
    for name in names {
        let name = name.as_ref();
        if line.len() > head.len() && line.len() + 1 + name.len() > MAX_LINE - 2 {
            push(out, format_args!("{line}"));
            line.truncate(head.len());
        }
        if line.len() > head.len() {
            line.push(' ');
        }
        line.push_str(name);
    }
    push(out, format_args!("{line}"));
    push(
        out,
        format_args!(":{srv} 366 {me} {chan} :End of /NAMES list."),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nicks_irc_cannot_carry_are_escaped_one_to_one() {
        assert_eq!(irc_nick("alice"), "alice");
        assert_eq!(irc_nick("a!b@c"), "a%21b%40c");
        assert_eq!(irc_nick(":x"), "%3Ax");
        assert_eq!(irc_nick("#chan"), "%23chan");
        assert_eq!(irc_nick("x#y:z"), "x#y:z");
        assert_eq!(irc_nick("100%"), "100%25");
        assert_eq!(irc_nick("a%21b"), "a%2521b");
        assert_eq!(irc_nick("zoë"), "zoë");
    }

    #[test]
    fn long_text_is_cut_at_character_boundaries() {
        let text = "é".repeat(300);
        let parts: Vec<&str> = pieces(&text, 101).collect();
        assert!(parts.iter().all(|p| p.len() <= 101));
        assert_eq!(parts.concat(), text);
    }

    #[test]
    fn every_chat_line_fits_512_bytes() {
        let mut codec = IrcCodec::new(Identity {
            server: "irc.example".into(),
            channel: "#chat".into(),
        });
        let mut out = Vec::new();
        let msg = ServerMsg::Chat {
            seq: 1,
            time: 0,
            from: "n".repeat(32),
            text: format!("{ACTION_PREFIX}{}", "ü".repeat(500)),
            kind: chat_proto::ChatKind::Plain,
        };
        assert!(codec.encode_broadcast(&msg, &mut out));
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.split_terminator("\r\n").collect();
        assert!(lines.len() > 1);
        assert!(
            lines
                .iter()
                .all(|l| l.len() + 2 <= MAX_LINE && l.contains("\x01ACTION "))
        );
    }

    /// Names longer than a line leaves room for (a large --max-name-chars) still go out, in
    /// pieces of at least 16 bytes of text, rather than an arithmetic overflow.
    #[test]
    fn a_name_longer_than_a_line_leaves_room_for_does_not_overflow() {
        let mut codec = IrcCodec::new(Identity {
            server: "s".repeat(63),
            channel: "#chat".into(),
        });
        let mut out = Vec::new();
        let msg = ServerMsg::Chat {
            seq: 1,
            time: 0,
            from: "n".repeat(300),
            text: "t".repeat(40),
            kind: chat_proto::ChatKind::Plain,
        };
        assert!(codec.encode_broadcast(&msg, &mut out));
        let text = String::from_utf8(out).unwrap();
        let pieces: Vec<&str> = text
            .split_terminator("\r\n")
            .map(|l| l.rsplit_once(" :").unwrap().1)
            .collect();
        assert_eq!(pieces, ["t".repeat(16), "t".repeat(16), "t".repeat(8)]);
    }
}
