//! What each IRC command means: a connection's registration phase, and the translation of one
//! line into room messages, member-list requests and replies the gateway makes itself.

use std::fmt::Arguments;

use chat_core::HistoryQuery;
use chat_proto::{ChatKind, ClientMsg, Ident, MAGIC, PROTOCOL_VERSION};

use super::caps::{self, Cap, Caps};
use super::codec::{Identity, irc_nick};
use super::info::{self, MONITOR_MAX, Server};
use super::line::{Line, MAX_LINE, Message};

/// What one line asks for, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Action {
    /// Hand this message to the room.
    Room(ClientMsg),
    /// Queue these bytes (whole lines) for the connection, after what the room sent before.
    Reply(Vec<u8>),
    /// Ask the room for its members, shown as `Listing`.
    Who(Listing),
    /// Send the hello for this nick, and read no further line until the room answers it.
    Register(String),
    /// Leave the room and stay connected, with these parting words (PART).
    Part(Option<String>),
    /// Turn echo-message on or off for the connection.
    Echo(bool),
    /// The next member list answers a line that carried this label (labeled-response).
    Label(String),
    /// Ask the room for kept chats (CHATHISTORY); the answer is a `chathistory` batch.
    History(HistoryQuery),
}

/// How the next `Members` answer to a connection is shown: it answers the command that asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Listing {
    /// NAMES: 353 lines, then 366.
    Names,
    /// A JOIN of the channel it is in: the JOIN echo, then as NAMES (one answer, so that the
    /// echo and the names come or are refused together).
    Join,
    /// WHO of the channel (`mask` is it) or of the members whose nick, user name or real
    /// name match a glob mask (352 with `*` as channel), then 315. With WHOX's `%fields`
    /// (and its `,token`), 354 lines of those fields instead.
    Who {
        /// As the client wrote it.
        mask: String,
        /// WHOX: the fields asked for, and the token.
        whox: Option<(String, String)>,
    },
    /// WHOIS of a nick: 311, 312, 301 if away, then 318; 401 if nobody has it.
    Whois(String),
    /// ISON: 303 with those online.
    Ison(Vec<String>),
    /// MONITOR: 730 for those online, 731 for the others.
    Monitor(Vec<String>),
    /// LIST: the channel and how many are in it.
    List,
    /// LUSERS: how many are here.
    Lusers,
    /// USERHOST: 302 with those online.
    Userhost(Vec<String>),
    /// A private message to this nick: 401 if nobody has it, else a numeric saying private
    /// messages are not carried (and 301 first if it is away).
    Private {
        /// The nick written to.
        target: String,
    },
}

/// What a registered connection is doing in the room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Presence {
    /// In the room.
    In,
    /// Left it with PART, still connected: JOIN enters again.
    Parted,
}

/// Where a connection is in registration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Phase {
    /// What NICK, USER and CAP have said so far.
    Unregistered {
        nick: Option<String>,
        ident: Option<Ident>,
        negotiating: bool,
    },
    /// The hello for `nick` is with the room: lines wait for its answer. `rejoin`: the
    /// connection registered before and PARTed (a JOIN enters again).
    Registering {
        nick: String,
        ident: Option<Ident>,
        rejoin: bool,
    },
    /// Registered under the nick the room gave; `listing` shows the member list its last
    /// WHO, NAMES, JOIN, USERHOST or private message asked for; `renaming`, the nick its NICK
    /// asked for, for the numeric that refuses it.
    Registered {
        nick: String,
        ident: Option<Ident>,
        presence: Presence,
        listing: Option<Listing>,
        renaming: Option<String>,
        /// The nicks MONITOR watches (at most [`MONITOR_MAX`]).
        watch: Vec<String>,
    },
    /// Closed for what it sent (too much before its welcome): nothing more is read.
    Shut,
}

impl Default for Phase {
    fn default() -> Self {
        Phase::Unregistered {
            nick: None,
            ident: None,
            negotiating: false,
        }
    }
}

/// Where one command's actions go, and the nick its numerics are addressed to.
struct Answer<'a> {
    id: &'a Identity,
    srv: &'a Server,
    caps: &'a mut Caps,
    me: String,
    out: &'a mut Vec<Action>,
}

impl Answer<'_> {
    /// A line from the server: `:server rest`.
    fn numeric(&mut self, rest: Arguments<'_>) {
        self.line(format_args!(":{} {rest}", self.id.server));
    }

    fn line(&mut self, line: Arguments<'_>) {
        self.out.push(reply(line.to_string()));
    }

    fn push(&mut self, action: Action) {
        self.out.push(action);
    }
}

impl Phase {
    /// The nick numerics are addressed to: `*` until welcomed.
    pub(crate) fn me(&self) -> &str {
        match self {
            Phase::Registered { nick, .. }
            | Phase::Registering {
                nick, rejoin: true, ..
            } => nick,
            _ => "*",
        }
    }

    /// The nick of the hello with the room, for the numerics that refuse it.
    pub(crate) fn wanted(&self) -> &str {
        match self {
            Phase::Registering { nick, .. } => nick,
            _ => "",
        }
    }

    /// What USER said.
    pub(crate) fn ident(&self) -> Option<&Ident> {
        match self {
            Phase::Unregistered { ident, .. }
            | Phase::Registering { ident, .. }
            | Phase::Registered { ident, .. } => ident.as_ref(),
            Phase::Shut => None,
        }
    }

    /// Whether its MONITOR list holds anything.
    pub(crate) fn watching(&self) -> bool {
        matches!(self, Phase::Registered { watch, .. } if !watch.is_empty())
    }

    /// Whether its MONITOR list holds `nick`.
    pub(crate) fn watches(&self, nick: &str) -> bool {
        let key = chat_core::fold_name(nick);
        matches!(self, Phase::Registered { watch, .. }
            if watch.iter().any(|w| chat_core::fold_name(w) == key))
    }

    /// Whether it is registered and in the room.
    pub(crate) fn in_room(&self) -> bool {
        matches!(
            self,
            Phase::Registered {
                presence: Presence::In,
                ..
            }
        )
    }

    /// Translates one line into actions, appended to `out`.
    /// Returns the line's label, if it carried one and labeled-response is on.
    pub(crate) fn handle(
        &mut self,
        id: &Identity,
        srv: &Server,
        caps: &mut Caps,
        line: Line<'_>,
        out: &mut Vec<Action>,
    ) -> Option<String> {
        let text = match line {
            Line::TooLong => {
                let me = self.me();
                out.push(reply(format!(
                    ":{} 417 {me} :Input line was too long",
                    id.server
                )));
                return None;
            }
            Line::Text(bytes) => String::from_utf8_lossy(bytes),
        };
        let msg = Message::parse(&text)?;
        self.command(id, srv, caps, &msg, out);
        let label = msg.tag("label").filter(|l| !l.is_empty() && l.len() <= 64);
        label
            .filter(|_| caps.has(Cap::LABELED_RESPONSE))
            .map(str::to_owned)
    }

    fn command(
        &mut self,
        id: &Identity,
        srv: &Server,
        caps: &mut Caps,
        msg: &Message<'_>,
        out: &mut Vec<Action>,
    ) {
        let cmd = msg.command.to_ascii_uppercase();
        let registered = matches!(self, Phase::Registered { .. });
        let in_room = self.in_room();
        let me = self.me().to_owned();
        let mut answer = Answer {
            id,
            srv,
            caps,
            me: me.clone(),
            out,
        };
        let a = &mut answer;
        match cmd.as_str() {
            "CAP" => self.cap(msg, a),
            "PASS" => {}
            "NICK" => self.nick(msg, a),
            "USER" => self.user(msg, a),
            "PING" => match msg.param(0).filter(|t| !t.is_empty()) {
                Some(token) => {
                    let srv = &id.server;
                    a.line(format_args!(":{srv} PONG {srv} :{token}"));
                }
                None => a.numeric(format_args!("409 {me} :No origin specified")),
            },
            "PONG" if in_room => {
                let nonce = msg.params.last().and_then(|t| t.parse().ok()).unwrap_or(0);
                a.push(Action::Room(ClientMsg::Pong { nonce }));
            }
            "PONG" => {}
            "QUIT" => {
                let message = msg.param(0).filter(|m| !m.is_empty()).map(str::to_owned);
                a.push(Action::Room(ClientMsg::Leave { message }));
            }
            _ if !registered => a.numeric(format_args!("451 {me} :You have not registered")),
            "JOIN" => self.join(msg, a),
            // Client-only tags are not carried (CLIENTTAGDENY=*): a TAGMSG has nothing left.
            "TAGMSG" => {}
            "NOTICE" if !in_room => {}
            "PART" | "NAMES" | "WHO" | "USERHOST" | "TOPIC" | "AWAY" | "PRIVMSG" | "KICK"
                if !in_room =>
            {
                let chan = &id.channel;
                a.numeric(format_args!("442 {me} {chan} :You're not on that channel"));
            }
            "PRIVMSG" | "NOTICE" => privmsg(&cmd, msg, a),
            "CHATHISTORY" if a.caps.has(Cap::CHATHISTORY) && in_room => chathistory(msg, a),
            "WHOIS" | "ISON" | "MONITOR" | "LIST" | "LUSERS" | "CHATHISTORY" if !in_room => {
                let chan = &id.channel;
                a.numeric(format_args!("442 {me} {chan} :You're not on that channel"));
            }
            "PART" => part(msg, a),
            "NAMES" | "WHO" | "USERHOST" => members(&cmd, msg, a),
            "WHOIS" | "ISON" | "LIST" | "LUSERS" => lookup(&cmd, msg, a),
            "MONITOR" => self.monitor(msg, a),
            "MOTD" | "VERSION" | "TIME" | "ADMIN" | "INFO" => {
                let mut lines = Vec::new();
                if cmd == "MOTD" {
                    info::motd(&mut lines, id, srv, &me);
                } else {
                    info::about(&mut lines, &cmd, id, srv, &me);
                }
                for line in lines {
                    a.line(format_args!("{line}"));
                }
            }
            "TOPIC" => topic(msg, a),
            "MODE" => mode(msg, a, in_room),
            "KICK" => kick(msg, a),
            "AWAY" => away(msg, a),
            _ => {
                let shown: String = msg.command.chars().take(32).collect();
                a.numeric(format_args!("421 {me} {shown} :Unknown command"));
            }
        }
    }

    fn cap(&mut self, msg: &Message<'_>, a: &mut Answer<'_>) {
        let sub = msg.param(0).unwrap_or("").to_ascii_uppercase();
        let me = a.me.clone();
        match sub.as_str() {
            "LS" => {
                self.negotiating(true);
                if msg.param(1).and_then(|v| v.parse::<u32>().ok()) >= Some(302) {
                    a.caps.set(Cap::CAP_NOTIFY, true); // implied by 302
                }
                let offered: Vec<&str> = caps::OFFERED
                    .iter()
                    .filter(|(_, c)| a.srv.views || !caps::LANE_CAPS.contains(c))
                    .map(|(n, _)| *n)
                    .collect();
                a.numeric(format_args!("CAP {me} LS :{}", offered.join(" ")));
            }
            "LIST" => {
                let on = a.caps.names();
                a.numeric(format_args!("CAP {me} LIST :{on}"));
            }
            "REQ" => {
                self.negotiating(true);
                let asked = msg.param(1).unwrap_or("");
                match self.request(asked, a) {
                    Some(next) => {
                        if next.has(Cap::ECHO_MESSAGE) != a.caps.has(Cap::ECHO_MESSAGE)
                            && !matches!(self, Phase::Unregistered { .. })
                        {
                            a.push(Action::Echo(next.has(Cap::ECHO_MESSAGE)));
                        }
                        *a.caps = next;
                        a.numeric(format_args!("CAP {me} ACK :{asked}"));
                    }
                    None => a.numeric(format_args!("CAP {me} NAK :{asked}")),
                }
            }
            "END" => {
                self.negotiating(false);
                self.try_register(a);
            }
            _ => a.numeric(format_args!("410 {me} {sub} :Invalid CAP command")),
        }
    }

    /// The capabilities a `CAP REQ` for `asked` would leave on, or `None` to refuse it all:
    /// a name not offered, or a change of lane once registered (or with no lanes).
    fn request(&self, asked: &str, a: &Answer<'_>) -> Option<Caps> {
        let mut next = *a.caps;
        if asked.trim().is_empty() {
            return None;
        }
        for word in asked.split_whitespace() {
            let (on, name) = match word.strip_prefix('-') {
                Some(name) => (false, name),
                None => (true, word),
            };
            next.set(caps::by_name(name)?, on);
        }
        let lane_change = next.variant() != a.caps.variant();
        let may_move = a.srv.views && matches!(self, Phase::Unregistered { .. });
        (!lane_change || may_move).then_some(next)
    }

    fn nick(&mut self, msg: &Message<'_>, a: &mut Answer<'_>) {
        let me = a.me.clone();
        let Some(nick) = msg.param(0).filter(|n| !n.is_empty()) else {
            return a.numeric(format_args!("431 {me} :No nickname given"));
        };
        if irc_nick(nick) != nick || nick.contains(['*', '?']) {
            return a.numeric(format_args!(
                "432 {me} {nick} :Erroneous nickname: IRC nicks cannot hold ! @ , % * ? or start with : # & + ~"
            ));
        }
        match self {
            Phase::Unregistered { nick: slot, .. } => {
                *slot = Some(nick.to_owned());
                self.try_register(a);
            }
            Phase::Registered {
                nick: current,
                presence: Presence::Parted,
                ..
            } => {
                // Not in the room: the nick the next JOIN asks for.
                let srv = &a.id.server;
                a.line(format_args!(":{me}!{me}@{srv} NICK {nick}"));
                *current = nick.to_owned();
            }
            Phase::Registered {
                nick: current,
                renaming,
                ..
            } if current != nick => {
                *renaming = Some(nick.to_owned());
                a.push(Action::Room(ClientMsg::Nick {
                    name: nick.to_owned(),
                }));
            }
            Phase::Registering { .. } | Phase::Registered { .. } | Phase::Shut => {}
        }
    }

    fn user(&mut self, msg: &Message<'_>, a: &mut Answer<'_>) {
        let me = a.me.clone();
        let (Some(user), Some(realname)) = (msg.param(0), msg.param(3)) else {
            return a.numeric(format_args!("461 {me} USER :Not enough parameters"));
        };
        if user.is_empty() || realname.is_empty() {
            return a.numeric(format_args!("461 {me} USER :Not enough parameters"));
        }
        match self {
            Phase::Unregistered { ident, .. } => {
                *ident = Some(Ident {
                    user: cut(user.trim_start_matches('~'), Ident::MAX_USER_BYTES).to_owned(),
                    realname: cut(realname, Ident::MAX_REALNAME_BYTES).to_owned(),
                });
                self.try_register(a);
            }
            _ => a.numeric(format_args!("462 {me} :You may not reregister")),
        }
    }

    fn negotiating(&mut self, on: bool) {
        if let Phase::Unregistered { negotiating, .. } = self {
            *negotiating = on;
        }
    }

    /// NICK and USER given and no CAP negotiation open: ask to register. The phase becomes
    /// [`Phase::Registering`] when the hello goes to the room ([`Phase::hello_sent`]).
    fn try_register(&mut self, a: &mut Answer<'_>) {
        if let Phase::Unregistered {
            nick: Some(nick),
            ident: Some(_),
            negotiating: false,
        } = self
        {
            a.push(Action::Register(nick.clone()));
        }
    }

    /// JOIN: of the channel it is in, the JOIN echo and the names; of the channel it PARTed,
    /// a hello under its nick.
    fn join(&mut self, msg: &Message<'_>, a: &mut Answer<'_>) {
        let me = a.me.clone();
        let Some(targets) = msg.param(0) else {
            return a.numeric(format_args!("461 {me} JOIN :Not enough parameters"));
        };
        for target in targets.split(',') {
            if !target.eq_ignore_ascii_case(&a.id.channel) {
                if target != "0" {
                    a.numeric(format_args!("403 {me} {target} :No such channel"));
                }
            } else if self.in_room() {
                a.push(Action::Who(Listing::Join));
            } else if let Phase::Registered { nick, .. } = self {
                a.push(Action::Register(nick.clone()));
                return; // nothing more is read until the room answers
            }
        }
    }

    /// The hello for `nick` went to the room.
    pub(crate) fn hello_sent(&mut self, nick: String) {
        let rejoin = matches!(self, Phase::Registered { .. });
        let ident = self.ident().cloned();
        *self = Phase::Registering {
            nick,
            ident,
            rejoin,
        };
    }

    /// The room welcomed the hello, under `nick`: the name it registered, as IRC shows it (the
    /// composed form of what was typed), which every later line uses. Returns `None` if the
    /// connection did not wait for it, else whether it was a JOIN after a PART.
    pub(crate) fn welcomed(&mut self, nick: String) -> Option<bool> {
        let Phase::Registering { ident, rejoin, .. } = self else {
            return None;
        };
        let rejoin = *rejoin;
        *self = Phase::Registered {
            nick,
            ident: ident.take(),
            presence: Presence::In,
            listing: None,
            renaming: None,
            watch: Vec::new(),
        };
        Some(rejoin)
    }

    /// The room refused the hello: the client may send another NICK (or JOIN again). Returns
    /// whether the connection waited for it.
    pub(crate) fn refused(&mut self) -> bool {
        let Phase::Registering {
            nick,
            ident,
            rejoin,
        } = self
        else {
            return false;
        };
        *self = if *rejoin {
            Phase::Registered {
                nick: std::mem::take(nick),
                ident: ident.take(),
                presence: Presence::Parted,
                listing: None,
                renaming: None,
                watch: Vec::new(),
            }
        } else {
            Phase::Unregistered {
                nick: None,
                ident: ident.take(),
                negotiating: false,
            }
        };
        true
    }

    /// It PARTed: registered, out of the room.
    pub(crate) fn parted(&mut self) {
        if let Phase::Registered {
            presence, listing, ..
        } = self
        {
            *presence = Presence::Parted;
            *listing = None;
        }
    }
}

impl Phase {
    /// MONITOR: `+` adds nicks and tells which are online, `-` removes, `C` clears, `L` lists,
    /// `S` tells the state of every one watched. The codec tells of watched nicks that come,
    /// go or are renamed later, as it sees the room's entries.
    fn monitor(&mut self, msg: &Message<'_>, a: &mut Answer<'_>) {
        let me = a.me.clone();
        let Phase::Registered { watch, .. } = self else {
            return;
        };
        let targets = || {
            msg.param(1)
                .unwrap_or("")
                .split(',')
                .filter(|t| !t.is_empty())
        };
        match msg.param(0).unwrap_or("") {
            "+" => {
                let mut added = Vec::new();
                for target in targets() {
                    if watch.len() >= MONITOR_MAX {
                        let rest: Vec<&str> = targets().skip_while(|t| *t != target).collect();
                        let rest = rest.join(",");
                        a.numeric(format_args!(
                            "734 {me} {MONITOR_MAX} {rest} :Monitor list is full."
                        ));
                        break;
                    }
                    if !watch.iter().any(|w| w.eq_ignore_ascii_case(target)) {
                        watch.push(target.to_owned());
                    }
                    added.push(target.to_owned());
                }
                if !added.is_empty() {
                    a.push(Action::Who(Listing::Monitor(added)));
                }
            }
            "-" => {
                for target in targets() {
                    watch.retain(|w| !w.eq_ignore_ascii_case(target));
                }
            }
            "C" | "c" => watch.clear(),
            "L" | "l" => {
                for chunk in watch.chunks(10) {
                    let list = chunk.join(",");
                    a.numeric(format_args!("732 {me} :{list}"));
                }
                a.numeric(format_args!("733 {me} :End of MONITOR list"));
            }
            "S" | "s" if !watch.is_empty() => {
                a.push(Action::Who(Listing::Monitor(watch.clone())));
            }
            "S" | "s" => {}
            _ => a.numeric(format_args!("461 {me} MONITOR :Not enough parameters")),
        }
    }
}

/// The most chats one CHATHISTORY gives (CHATHISTORY= in 005).
pub(crate) const HISTORY_MAX: usize = 100;

/// CHATHISTORY LATEST, BEFORE, AFTER, AROUND and BETWEEN over the channel, by timestamp;
/// TARGETS names the channel. Refusals are standard replies.
fn chathistory(msg: &Message<'_>, a: &mut Answer<'_>) {
    let sub = msg.param(0).unwrap_or("").to_ascii_uppercase();
    let srv = a.id.server.clone();
    let fail = |a: &mut Answer<'_>, code: &str, rest: &str| {
        a.line(format_args!(":{srv} FAIL CHATHISTORY {code} {rest}"));
    };
    if sub == "TARGETS" {
        let (chan, time) = (a.id.channel.clone(), info::server_time(a.srv.time_ms));
        a.line(format_args!(":{srv} BATCH +t draft/chathistory-targets"));
        a.line(format_args!(
            "@batch=t :{srv} CHATHISTORY TARGETS {chan} {time}"
        ));
        a.line(format_args!(":{srv} BATCH -t"));
        return;
    }
    let target = msg.param(1).unwrap_or("");
    if !target.eq_ignore_ascii_case(&a.id.channel) {
        let rest = format!("{sub} {target} :Only {} has a history here", a.id.channel);
        return fail(a, "INVALID_TARGET", &rest);
    }
    let at = |i: usize| -> Option<Option<u64>> {
        match msg.param(i)? {
            "*" => Some(None),
            r => info::parse_server_time(r.strip_prefix("timestamp=")?).map(Some),
        }
    };
    let limit_at = |i: usize| msg.param(i).and_then(|l| l.parse::<usize>().ok());
    let query = match (sub.as_str(), at(2), limit_at(3)) {
        ("LATEST", Some(after), Some(limit)) => Some(HistoryQuery::Latest { after, limit }),
        ("BEFORE", Some(Some(time)), Some(limit)) => Some(HistoryQuery::Before { time, limit }),
        ("AFTER", Some(Some(time)), Some(limit)) => Some(HistoryQuery::After { time, limit }),
        ("AROUND", Some(Some(time)), Some(limit)) => Some(HistoryQuery::Around { time, limit }),
        ("BETWEEN", Some(Some(from)), _) => match (at(3), limit_at(4)) {
            (Some(Some(to)), Some(limit)) => Some(HistoryQuery::Between { from, to, limit }),
            _ => None,
        },
        _ => None,
    };
    match query {
        Some(query) => a.push(Action::History(limited(query))),
        None => fail(
            a,
            "INVALID_PARAMS",
            &format!("{sub} :Bad parameters (timestamps only)"),
        ),
    }
}

/// `query` with its limit at most [`HISTORY_MAX`].
fn limited(query: HistoryQuery) -> HistoryQuery {
    let cap = |l: usize| l.min(HISTORY_MAX);
    match query {
        HistoryQuery::Latest { after, limit } => HistoryQuery::Latest {
            after,
            limit: cap(limit),
        },
        HistoryQuery::Before { time, limit } => HistoryQuery::Before {
            time,
            limit: cap(limit),
        },
        HistoryQuery::After { time, limit } => HistoryQuery::After {
            time,
            limit: cap(limit),
        },
        HistoryQuery::Around { time, limit } => HistoryQuery::Around {
            time,
            limit: cap(limit),
        },
        HistoryQuery::Between { from, to, limit } => HistoryQuery::Between {
            from,
            to,
            limit: cap(limit),
        },
    }
}

/// WHOIS, ISON, LIST and LUSERS: each asks the room for its members.
fn lookup(cmd: &str, msg: &Message<'_>, a: &mut Answer<'_>) {
    let me = a.me.clone();
    let listing = match cmd {
        "WHOIS" => match msg.params.last().filter(|n| !n.is_empty()) {
            Some(nick) => Listing::Whois((*nick).to_owned()),
            None => return a.numeric(format_args!("431 {me} :No nickname given")),
        },
        "ISON" => {
            let nicks: Vec<String> = msg
                .params
                .iter()
                .flat_map(|p| p.split(' '))
                .filter(|n| !n.is_empty())
                .take(32)
                .map(str::to_owned)
                .collect();
            if nicks.is_empty() {
                return a.numeric(format_args!("461 {me} ISON :Not enough parameters"));
            }
            Listing::Ison(nicks)
        }
        "LIST" => match msg.param(0) {
            Some(target)
                if !target
                    .split(',')
                    .any(|t| t.eq_ignore_ascii_case(&a.id.channel)) =>
            {
                a.numeric(format_args!("321 {me} Channel :Users  Name"));
                return a.numeric(format_args!("323 {me} :End of /LIST"));
            }
            _ => Listing::List,
        },
        _ => Listing::Lusers,
    };
    a.push(Action::Who(listing));
}

/// `text` cut to at most `max` bytes, at a character boundary.
fn cut(text: &str, max: u32) -> &str {
    let mut end = text.len().min(max as usize);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

fn part(msg: &Message<'_>, a: &mut Answer<'_>) {
    let me = a.me.clone();
    let Some(targets) = msg.param(0) else {
        return a.numeric(format_args!("461 {me} PART :Not enough parameters"));
    };
    for target in targets.split(',') {
        if target.eq_ignore_ascii_case(&a.id.channel) {
            let why = msg.param(1).filter(|w| !w.is_empty());
            let id = a.id;
            let (srv, chan) = (&id.server, &id.channel);
            match why {
                Some(why) => a.line(format_args!(":{me}!{me}@{srv} PART {chan} :{why}")),
                None => a.line(format_args!(":{me}!{me}@{srv} PART {chan}")),
            }
            a.push(Action::Part(why.map(str::to_owned)));
            return;
        }
        a.numeric(format_args!(
            "442 {me} {target} :You're not on that channel"
        ));
    }
}

/// AWAY with a message: away; without one: back. The room tells the others; the member is
/// answered here.
fn away(msg: &Message<'_>, a: &mut Answer<'_>) {
    let me = a.me.clone();
    let message = msg.param(0).filter(|m| !m.is_empty()).map(str::to_owned);
    let away = message.is_some();
    a.push(Action::Room(ClientMsg::Away { message }));
    if away {
        a.numeric(format_args!("306 {me} :You have been marked as being away"));
    } else {
        a.numeric(format_args!(
            "305 {me} :You are no longer marked as being away"
        ));
    }
}

/// PRIVMSG and NOTICE to the channel: a chat (a CTCP ACTION is an action, a NOTICE a
/// notice). A NOTICE is never answered with an error, as IRC asks.
fn privmsg(cmd: &str, msg: &Message<'_>, a: &mut Answer<'_>) {
    let me = a.me.clone();
    let notice = cmd == "NOTICE";
    let Some(targets) = msg.param(0).filter(|t| !t.is_empty()) else {
        if !notice {
            a.numeric(format_args!("411 {me} :No recipient given ({cmd})"));
        }
        return;
    };
    let Some(text) = msg.param(1).filter(|t| !t.is_empty()) else {
        if !notice {
            a.numeric(format_args!("412 {me} :No text to send"));
        }
        return;
    };
    for target in targets.split(',') {
        if target.eq_ignore_ascii_case(&a.id.channel) {
            let (text, kind) = room_text(text);
            let kind = if notice { ChatKind::Notice } else { kind };
            // A notice the room would refuse is dropped here: it must not bring an error back.
            if notice && chat_core::check_text(&text, u32::MAX).is_err() {
                continue;
            }
            a.push(Action::Room(ClientMsg::Chat { text, kind }));
        } else if notice {
            // Never answered.
        } else if target.starts_with('#') || target.starts_with('&') {
            a.numeric(format_args!("403 {me} {target} :No such channel"));
        } else {
            a.push(Action::Who(Listing::Private {
                target: target.to_owned(),
            }));
        }
    }
}

/// NAMES, WHO and USERHOST: each asks the room for its members.
fn members(cmd: &str, msg: &Message<'_>, a: &mut Answer<'_>) {
    let me = a.me.clone();
    match cmd {
        "NAMES" => match msg.param(0) {
            Some(target) if !target.eq_ignore_ascii_case(&a.id.channel) => {
                a.numeric(format_args!("366 {me} {target} :End of /NAMES list."));
            }
            _ => a.push(Action::Who(Listing::Names)),
        },
        "WHO" => {
            let mask = msg.param(0).unwrap_or("*");
            let mask = if mask.is_empty() || mask == "0" {
                "*"
            } else {
                mask
            };
            let whox = msg.param(1).and_then(|f| f.strip_prefix('%')).map(|f| {
                let (fields, token) = f.split_once(',').unwrap_or((f, ""));
                (cut(fields, 16).to_owned(), cut(token, 3).to_owned())
            });
            a.push(Action::Who(Listing::Who {
                mask: mask.to_owned(),
                whox,
            }));
        }
        _ => {
            if msg.params.is_empty() {
                return a.numeric(format_args!("461 {me} USERHOST :Not enough parameters"));
            }
            let asked = msg.params.iter().take(5).map(|s| (*s).to_owned()).collect();
            a.push(Action::Who(Listing::Userhost(asked)));
        }
    }
}

fn topic(msg: &Message<'_>, a: &mut Answer<'_>) {
    let (me, chan) = (a.me.clone(), a.id.channel.clone());
    match (msg.param(0), msg.param(1)) {
        (Some(target), _) if !target.eq_ignore_ascii_case(&chan) => {
            a.numeric(format_args!("403 {me} {target} :No such channel"));
        }
        (Some(_), None) => a.numeric(format_args!("331 {me} {chan} :No topic is set")),
        (Some(_), Some(_)) => a.numeric(format_args!(
            "482 {me} {chan} :The topic cannot be changed here"
        )),
        (None, _) => a.numeric(format_args!("461 {me} TOPIC :Not enough parameters")),
    }
}

fn mode(msg: &Message<'_>, a: &mut Answer<'_>, in_room: bool) {
    let (me, chan) = (a.me.clone(), a.id.channel.clone());
    match (msg.param(0), msg.param(1)) {
        (None, _) => a.numeric(format_args!("461 {me} MODE :Not enough parameters")),
        (Some(target), mode) if target.eq_ignore_ascii_case(&chan) => match (mode, msg.param(2)) {
            (None, _) => a.numeric(format_args!("324 {me} {chan} +nt")),
            // The ban list is the room's to give, to operators (others get 482).
            (Some("b" | "+b"), None) if in_room => a.push(Action::Room(ClientMsg::Bans)),
            (Some("b" | "+b"), None) => {
                a.numeric(format_args!("368 {me} {chan} :End of channel ban list"));
            }
            (Some(sign @ ("+b" | "-b")), Some(mask)) if in_room => ban_mode(sign, mask, a),
            (Some(_), _) => a.numeric(format_args!(
                "482 {me} {chan} :Channel modes cannot be changed here"
            )),
        },
        (Some(target), _) if target.eq_ignore_ascii_case(&me) => {
            a.numeric(format_args!("221 {me} +"));
        }
        (Some(target), _) if target.starts_with('#') => {
            a.numeric(format_args!("403 {me} {target} :No such channel"));
        }
        (Some(target), _) => a.numeric(format_args!(
            "502 {me} {target} :Cannot change mode for other users"
        )),
    }
}

/// KICK #chan nick [:reason]: the room's kick (an operator's; others get 482 from the room).
fn kick(msg: &Message<'_>, a: &mut Answer<'_>) {
    let (me, chan) = (a.me.clone(), a.id.channel.clone());
    let (Some(target), Some(nick)) = (msg.param(0), msg.param(1)) else {
        a.numeric(format_args!("461 {me} KICK :Not enough parameters"));
        return;
    };
    if !target.eq_ignore_ascii_case(&chan) {
        a.numeric(format_args!("403 {me} {target} :No such channel"));
        return;
    }
    // Several nicks at once (`a,b`): each its own kick.
    for nick in nick.split(',').filter(|n| !n.is_empty()).take(4) {
        a.push(Action::Room(ClientMsg::Kick {
            name: nick.to_owned(),
            reason: msg.param(2).filter(|r| !r.is_empty()).map(str::to_owned),
        }));
    }
}

/// MODE #chan +b/-b MASK, as ergo maps them: `nick!*@*` (or a bare nick) bans a name,
/// `*!*@ADDRESS` or `*!*@CIDR` an address or a network, and `m:MASK` (the mute extban) mutes
/// a name. A mask the room cannot hold (wildcards in a nick, a host name) is refused with 415.
fn ban_mode(sign: &str, mask: &str, a: &mut Answer<'_>) {
    let (me, chan) = (a.me.clone(), a.id.channel.clone());
    let (mute, mask) = match mask.strip_prefix("m:") {
        Some(rest) => (true, rest),
        None => (false, mask),
    };
    let target = match mask.split_once('!') {
        None if !mask.contains(['@', '*', '?']) => Some(mask),
        None => None,
        Some((nick, rest)) => match rest.split_once('@') {
            Some(("*", "*")) if !nick.contains(['*', '?']) => Some(nick),
            Some(("*", host)) if nick == "*" && !mute && !host.contains(['*', '?']) => Some(host),
            _ => None,
        },
    };
    let Some(target) = target.filter(|t| !t.is_empty()).map(str::to_owned) else {
        a.numeric(format_args!(
            "415 {me} {chan} {mask} :Cannot hold this mask: use nick!*@*, *!*@address or *!*@cidr"
        ));
        return;
    };
    a.push(Action::Room(match (sign, mute) {
        ("+b", false) => ClientMsg::Ban {
            target,
            duration_secs: None,
            reason: None,
        },
        ("+b", true) => ClientMsg::Mute {
            name: target,
            duration_secs: None,
        },
        (_, false) => ClientMsg::Unban { target },
        (_, true) => ClientMsg::Unmute { name: target },
    }));
}

/// The hello for `nick`.
pub(crate) fn hello(nick: &str, ident: Option<Ident>) -> ClientMsg {
    ClientMsg::Hello {
        magic: MAGIC,
        version: PROTOCOL_VERSION,
        name: nick.to_owned(),
        password: None,
        ident,
    }
}

/// One line for the client, with its CR LF. What it echoes of the client's line (a command,
/// a nick, a target) may hold a NUL, which no IRC line may carry, or be long enough to push
/// the line past 512 bytes: the NUL is dropped, the line cut at a character boundary.
fn reply(mut line: String) -> Action {
    line.retain(|c| c != '\0');
    let mut end = line.len().min(MAX_LINE - 2);
    while !line.is_char_boundary(end) {
        end -= 1;
    }
    line.truncate(end);
    let mut bytes = line.into_bytes();
    bytes.extend_from_slice(b"\r\n");
    Action::Reply(bytes)
}

/// Chat text from IRC as the room carries it, and its kind: a CTCP ACTION is an action, and
/// mIRC formatting codes (bold, colours, ...), which the room would refuse as control
/// characters, are dropped.
pub fn room_text(text: &str) -> (String, ChatKind) {
    let (text, kind) = match text
        .strip_prefix("\x01ACTION ")
        .map(|t| t.strip_suffix('\x01').unwrap_or(t))
    {
        Some(action) => (action, ChatKind::Action),
        None => (text, ChatKind::Plain),
    };
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\x02' | '\x0f' | '\x11' | '\x16' | '\x1d' | '\x1e' | '\x1f' => {}
            '\x03' => {
                // \x03[fg[,bg]]: up to two digits each.
                for _ in 0..2 {
                    chars.next_if(char::is_ascii_digit);
                }
                if chars.peek() == Some(&',') {
                    let mut ahead = chars.clone();
                    ahead.next();
                    if ahead.peek().is_some_and(char::is_ascii_digit) {
                        chars.next();
                        for _ in 0..2 {
                            chars.next_if(char::is_ascii_digit);
                        }
                    }
                }
            }
            c => out.push(c),
        }
    }
    (out, kind)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id() -> Identity {
        Identity {
            server: "srv".into(),
            channel: "#chat".into(),
        }
    }

    fn registered(nick: &str) -> Phase {
        Phase::Registered {
            nick: nick.into(),
            ident: None,
            presence: Presence::In,
            listing: None,
            renaming: None,
            watch: Vec::new(),
        }
    }

    fn run(phase: &mut Phase, line: &str) -> Vec<Action> {
        let mut out = Vec::new();
        let mut caps = Caps::default();
        let srv = Server::default();
        phase.handle(
            &id(),
            &srv,
            &mut caps,
            Line::Text(line.as_bytes()),
            &mut out,
        );
        out
    }

    fn replies(actions: &[Action]) -> String {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Reply(b) => Some(String::from_utf8_lossy(b).into_owned()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn cap_holds_registration_until_end() {
        let mut p = Phase::default();
        assert!(replies(&run(&mut p, "CAP LS 302")).starts_with(":srv CAP * LS :cap-notify "));
        assert!(run(&mut p, "NICK alice").is_empty());
        assert!(run(&mut p, "USER a 0 * :A").is_empty());
        assert_eq!(
            run(&mut p, "CAP END"),
            vec![Action::Register("alice".into())]
        );
        p.hello_sent("alice".into());
        assert!(p.refused());
        assert_eq!(
            run(&mut p, "NICK bob"),
            vec![Action::Register("bob".into())]
        );
        p.hello_sent("bob".into());
        assert_eq!(p.welcomed("bob".into()), Some(false));
        assert_eq!(
            run(&mut p, "PRIVMSG #chat :\x01ACTION waves\x01"),
            vec![Action::Room(ClientMsg::Chat {
                text: "waves".into(),
                kind: ChatKind::Action,
            })]
        );
    }

    /// After the welcome, lines name the client by the nick the room registered (composed),
    /// not as it was typed (decomposed): the same nick as the room's JOIN and QUIT lines.
    #[test]
    fn the_nick_is_the_one_the_room_registered() {
        let mut p = Phase::default();
        run(&mut p, "NICK cafe\u{301}");
        assert_eq!(
            run(&mut p, "USER a 0 * :A"),
            vec![Action::Register("cafe\u{301}".into())]
        );
        p.hello_sent("cafe\u{301}".into());
        p.welcomed("caf\u{e9}".into());
        assert_eq!(
            replies(&run(&mut p, "PART #chat")),
            ":caf\u{e9}!caf\u{e9}@srv PART #chat\r\n"
        );
    }

    #[test]
    fn commands_before_registration_get_451_and_nicks_irc_cannot_carry_432() {
        let mut p = Phase::default();
        assert_eq!(
            replies(&run(&mut p, "PRIVMSG #chat :hi")),
            ":srv 451 * :You have not registered\r\n"
        );
        assert!(replies(&run(&mut p, "NICK a!b")).starts_with(":srv 432 * a!b :"));
        assert!(replies(&run(&mut p, "NICK #x")).starts_with(":srv 432 * #x :"));
    }

    /// Found by fuzzing: a 421 echoed a NUL, and a 410 or 432 echoed a parameter long enough
    /// to make a line over 512 bytes.
    #[test]
    fn what_a_reply_echoes_never_makes_a_line_irc_cannot_carry() {
        let mut p = registered("ann");
        let long = "é".repeat(250);
        for line in [
            "A\0B".to_owned(),
            format!("CAP {long}"),
            format!("NICK {long}!"),
        ] {
            let reply = replies(&run(&mut p, &line));
            assert!(
                reply.len() <= MAX_LINE && reply.ends_with("\r\n"),
                "{reply}"
            );
            assert!(!reply.contains('\0'), "{reply:?}");
        }
        assert_eq!(
            replies(&run(&mut p, "A\0B")),
            ":srv 421 ann AB :Unknown command\r\n"
        );
    }

    #[test]
    fn formatting_codes_are_dropped() {
        assert_eq!(
            room_text("\x02bold\x02 \x0304,12red\x03 x\x0f"),
            ("bold red x".into(), ChatKind::Plain)
        );
        assert_eq!(room_text("\x033,x").0, ",x");
    }
}
