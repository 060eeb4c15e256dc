//! One IRC connection as a sans-IO state machine: lines in, room messages and replies out.

use chat_proto::{ClientMsg, MAGIC, PROTOCOL_VERSION};

use super::codec::{ACTION_PREFIX, Identity, Listing, irc_nick};
use super::line::{Line, Message};

/// What the reader must do for a line, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Hand this message to the room.
    Room(ClientMsg),
    /// Queue these bytes (whole lines) for the connection, after what the room sent before.
    Reply(Vec<u8>),
    /// Ask the room for its members, shown as `Listing` (set when the room gets there).
    Who(Listing),
    /// Send the hello for this nick, and wait for its outcome ([`Session::welcomed`] or
    /// [`Session::refused`]) before the next line.
    Register(String),
}

/// Where the connection is in registration.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Phase {
    /// What NICK, USER and CAP have said so far.
    Unregistered {
        nick: Option<String>,
        user: bool,
        negotiating: bool,
    },
    /// The hello is with the room.
    Registering { nick: String },
    /// A member.
    Registered { nick: String },
}

/// One IRC connection's registration state and command translation.
#[derive(Debug, Clone)]
pub struct Session {
    id: Identity,
    phase: Phase,
}

impl Session {
    /// A connection that has said nothing yet.
    pub fn new(id: Identity) -> Self {
        Self {
            id,
            phase: Phase::Unregistered {
                nick: None,
                user: false,
                negotiating: false,
            },
        }
    }

    /// The room welcomed the hello, under `nick`: the name it registered, as IRC shows it (the
    /// composed form of what was typed), which every later line uses.
    pub fn welcomed(&mut self, nick: String) {
        if let Phase::Registering { .. } = &self.phase {
            self.phase = Phase::Registered { nick };
        }
    }

    /// The room refused the hello: the client may send another NICK.
    pub fn refused(&mut self) {
        if let Phase::Registering { .. } = self.phase {
            self.phase = Phase::Unregistered {
                nick: None,
                user: true,
                negotiating: false,
            };
        }
    }

    /// Whether the connection waits for its hello's outcome.
    pub fn registering(&self) -> bool {
        matches!(self.phase, Phase::Registering { .. })
    }

    fn me(&self) -> &str {
        match &self.phase {
            Phase::Registered { nick } => nick,
            _ => "*",
        }
    }

    /// Translates one line from the reader into actions, appended to `out`.
    pub fn handle(&mut self, line: Line<'_>, out: &mut Vec<Action>) {
        let text = match line {
            Line::TooLong => {
                let me = self.me();
                let srv = &self.id.server;
                out.push(reply(format!(":{srv} 417 {me} :Input line was too long")));
                return;
            }
            Line::Text(bytes) => String::from_utf8_lossy(bytes),
        };
        if let Some(msg) = Message::parse(&text) {
            self.command(&msg, out);
        }
    }

    fn command(&mut self, msg: &Message<'_>, out: &mut Vec<Action>) {
        let cmd = msg.command.to_ascii_uppercase();
        let srv = self.id.server.clone();
        let chan = self.id.channel.clone();
        let me = self.me().to_owned();
        let numeric = |out: &mut Vec<Action>, rest: String| {
            out.push(reply(format!(":{srv} {rest}")));
        };
        let registered = matches!(self.phase, Phase::Registered { .. });
        match cmd.as_str() {
            "CAP" => {
                let sub = msg.param(0).unwrap_or("").to_ascii_uppercase();
                match sub.as_str() {
                    "LS" | "LIST" => {
                        self.negotiating(true);
                        numeric(out, format!("CAP {me} {sub} :"));
                    }
                    "REQ" => {
                        self.negotiating(true);
                        let asked = msg.param(1).unwrap_or("");
                        numeric(out, format!("CAP {me} NAK :{asked}"));
                    }
                    "END" => {
                        self.negotiating(false);
                        self.try_register(out);
                    }
                    _ => numeric(out, format!("410 {me} {sub} :Invalid CAP command")),
                }
            }
            "PASS" => {}
            "NICK" => {
                let Some(nick) = msg.param(0).filter(|n| !n.is_empty()) else {
                    return numeric(out, format!("431 {me} :No nickname given"));
                };
                if irc_nick(nick) != nick {
                    return numeric(
                        out,
                        format!(
                            "432 {me} {nick} :Erroneous nickname: IRC nicks cannot hold ! @ , % or start with : # & + ~"
                        ),
                    );
                }
                match &mut self.phase {
                    Phase::Unregistered { nick: slot, .. } => {
                        *slot = Some(nick.to_owned());
                        self.try_register(out);
                    }
                    Phase::Registering { .. } => {}
                    Phase::Registered { nick: current } if current == nick => {}
                    Phase::Registered { .. } => numeric(
                        out,
                        format!("447 {me} :Cannot change nickname while in the room"),
                    ),
                }
            }
            "USER" => {
                if msg.params.len() < 4 {
                    return numeric(out, format!("461 {me} USER :Not enough parameters"));
                }
                match &mut self.phase {
                    Phase::Unregistered { user, .. } => {
                        *user = true;
                        self.try_register(out);
                    }
                    _ => numeric(out, format!("462 {me} :You may not reregister")),
                }
            }
            "PING" => {
                let token = msg.param(0).unwrap_or("");
                out.push(reply(format!(":{srv} PONG {srv} :{token}")));
            }
            "PONG" if registered => {
                let nonce = msg.params.last().and_then(|t| t.parse().ok()).unwrap_or(0);
                out.push(Action::Room(ClientMsg::Pong { nonce }));
            }
            "PONG" => {}
            "QUIT" => out.push(Action::Room(ClientMsg::Leave)),
            _ if !registered => numeric(out, format!("451 {me} :You have not registered")),
            "JOIN" => {
                let Some(targets) = msg.param(0) else {
                    return numeric(out, format!("461 {me} JOIN :Not enough parameters"));
                };
                for target in targets.split(',') {
                    if target.eq_ignore_ascii_case(&chan) {
                        out.push(Action::Who(Listing::Join));
                    } else if target != "0" {
                        numeric(out, format!("403 {me} {target} :No such channel"));
                    }
                }
            }
            "PART" => {
                let Some(targets) = msg.param(0) else {
                    return numeric(out, format!("461 {me} PART :Not enough parameters"));
                };
                for target in targets.split(',') {
                    if target.eq_ignore_ascii_case(&chan) {
                        let why = msg.param(1).unwrap_or("left");
                        out.push(reply(format!(":{me}!{me}@{srv} PART {chan} :{why}")));
                        out.push(Action::Room(ClientMsg::Leave));
                        return;
                    }
                    numeric(out, format!("403 {me} {target} :No such channel"));
                }
            }
            "PRIVMSG" | "NOTICE" => {
                let Some(targets) = msg.param(0).filter(|t| !t.is_empty()) else {
                    return numeric(out, format!("411 {me} :No recipient given ({cmd})"));
                };
                let Some(text) = msg.param(1).filter(|t| !t.is_empty()) else {
                    return numeric(out, format!("412 {me} :No text to send"));
                };
                for target in targets.split(',') {
                    if target.eq_ignore_ascii_case(&chan) {
                        out.push(Action::Room(ClientMsg::Chat {
                            text: room_text(text),
                        }));
                    } else if target.starts_with('#') || target.starts_with('&') {
                        numeric(out, format!("403 {me} {target} :No such channel"));
                    } else {
                        out.push(Action::Who(Listing::Private {
                            target: target.to_owned(),
                        }));
                    }
                }
            }
            "NAMES" => match msg.param(0) {
                Some(target) if !target.eq_ignore_ascii_case(&chan) => {
                    numeric(out, format!("366 {me} {target} :End of /NAMES list."));
                }
                _ => out.push(Action::Who(Listing::Names)),
            },
            "WHO" => {
                let mask = msg.param(0).unwrap_or("*").to_owned();
                out.push(Action::Who(Listing::Who { mask }));
            }
            "USERHOST" => {
                if msg.params.is_empty() {
                    return numeric(out, format!("461 {me} USERHOST :Not enough parameters"));
                }
                let asked = msg.params.iter().take(5).map(|s| (*s).to_owned()).collect();
                out.push(Action::Who(Listing::Userhost(asked)));
            }
            "TOPIC" => match (msg.param(0), msg.param(1)) {
                (Some(target), _) if !target.eq_ignore_ascii_case(&chan) => {
                    numeric(out, format!("403 {me} {target} :No such channel"));
                }
                (Some(_), None) => numeric(out, format!("331 {me} {chan} :No topic is set")),
                (Some(_), Some(_)) => numeric(
                    out,
                    format!("482 {me} {chan} :The topic cannot be changed here"),
                ),
                (None, _) => numeric(out, format!("461 {me} TOPIC :Not enough parameters")),
            },
            "MODE" => match (msg.param(0), msg.param(1)) {
                (None, _) => numeric(out, format!("461 {me} MODE :Not enough parameters")),
                (Some(target), mode) if target.eq_ignore_ascii_case(&chan) => match mode {
                    None => numeric(out, format!("324 {me} {chan} +nt")),
                    Some("b" | "+b") => {
                        numeric(out, format!("368 {me} {chan} :End of channel ban list"));
                    }
                    Some(_) => numeric(
                        out,
                        format!("482 {me} {chan} :Channel modes cannot be changed here"),
                    ),
                },
                (Some(target), _) if target.eq_ignore_ascii_case(&me) => {
                    numeric(out, format!("221 {me} +"));
                }
                (Some(target), _) if target.starts_with('#') => {
                    numeric(out, format!("403 {me} {target} :No such channel"));
                }
                (Some(target), _) => numeric(
                    out,
                    format!("502 {me} {target} :Cannot change mode for other users"),
                ),
            },
            "AWAY" => match msg.param(0).filter(|m| !m.is_empty()) {
                Some(_) => numeric(out, format!("306 {me} :You have been marked as being away")),
                None => numeric(
                    out,
                    format!("305 {me} :You are no longer marked as being away"),
                ),
            },
            _ => {
                let shown: String = msg.command.chars().take(32).collect();
                numeric(out, format!("421 {me} {shown} :Unknown command"));
            }
        }
    }

    fn negotiating(&mut self, on: bool) {
        if let Phase::Unregistered { negotiating, .. } = &mut self.phase {
            *negotiating = on;
        }
    }

    /// NICK and USER given and no CAP negotiation open: register.
    fn try_register(&mut self, out: &mut Vec<Action>) {
        if let Phase::Unregistered {
            nick: Some(nick),
            user: true,
            negotiating: false,
        } = &self.phase
        {
            let nick = nick.clone();
            out.push(Action::Register(nick.clone()));
            self.phase = Phase::Registering { nick };
        }
    }
}

/// The hello for `nick`.
pub fn hello(nick: &str) -> ClientMsg {
    ClientMsg::Hello {
        magic: MAGIC,
        version: PROTOCOL_VERSION,
        name: nick.to_owned(),
    }
}

fn reply(line: String) -> Action {
    let mut bytes = line.into_bytes();
    bytes.extend_from_slice(b"\r\n");
    Action::Reply(bytes)
}

/// Chat text from IRC as the room carries it: a CTCP ACTION becomes `/me ...`, and mIRC
/// formatting codes (bold, colours, ...), which the room would refuse as control characters,
/// are dropped.
pub fn room_text(text: &str) -> String {
    let text = match text
        .strip_prefix("\x01ACTION ")
        .map(|t| t.strip_suffix('\x01').unwrap_or(t))
    {
        Some(action) => format!("{ACTION_PREFIX}{action}"),
        None => text.to_owned(),
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
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session() -> Session {
        Session::new(Identity {
            server: "srv".into(),
            channel: "#chat".into(),
        })
    }

    fn run(s: &mut Session, line: &str) -> Vec<Action> {
        let mut out = Vec::new();
        s.handle(Line::Text(line.as_bytes()), &mut out);
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
        let mut s = session();
        assert_eq!(replies(&run(&mut s, "CAP LS 302")), ":srv CAP * LS :\r\n");
        assert!(run(&mut s, "NICK alice").is_empty());
        assert!(run(&mut s, "USER a 0 * :A").is_empty());
        assert_eq!(
            run(&mut s, "CAP END"),
            vec![Action::Register("alice".into())]
        );
        assert!(s.registering());
        s.refused();
        assert_eq!(
            run(&mut s, "NICK bob"),
            vec![Action::Register("bob".into())]
        );
        s.welcomed("bob".into());
        assert_eq!(
            run(&mut s, "PRIVMSG #chat :\x01ACTION waves\x01"),
            vec![Action::Room(ClientMsg::Chat {
                text: "/me waves".into()
            })]
        );
    }

    /// After the welcome, lines name the client by the nick the room registered (composed),
    /// not as it was typed (decomposed): the same nick as the room's JOIN and QUIT lines.
    #[test]
    fn the_nick_is_the_one_the_room_registered() {
        let mut s = session();
        run(&mut s, "NICK cafe\u{301}");
        assert_eq!(
            run(&mut s, "USER a 0 * :A"),
            vec![Action::Register("cafe\u{301}".into())]
        );
        s.welcomed("caf\u{e9}".into());
        assert_eq!(
            replies(&run(&mut s, "PART #chat")),
            ":caf\u{e9}!caf\u{e9}@srv PART #chat :left\r\n"
        );
    }

    #[test]
    fn commands_before_registration_get_451_and_nicks_irc_cannot_carry_432() {
        let mut s = session();
        assert_eq!(
            replies(&run(&mut s, "PRIVMSG #chat :hi")),
            ":srv 451 * :You have not registered\r\n"
        );
        assert!(replies(&run(&mut s, "NICK a!b")).starts_with(":srv 432 * a!b :"));
        assert!(replies(&run(&mut s, "NICK #x")).starts_with(":srv 432 * #x :"));
    }

    #[test]
    fn formatting_codes_are_dropped() {
        assert_eq!(
            room_text("\x02bold\x02 \x0304,12red\x03 x\x0f"),
            "bold red x"
        );
        assert_eq!(room_text("\x033,x"), ",x");
    }
}
