//! What the user sees for each server message, and the escaping of other people's text.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::ops::Range;

use chat_proto::{
    BanInfo, ChatKind, CloseReason, HistoryChat, Member, ModAction, MuteInfo, ServerMsg, Utc,
};
use jiff::tz::TimeZone;

/// One line of output (without its newline) and the stream it belongs on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line {
    /// For stdout: what the client itself says (`* joined as ...`, `* online: ...`, the help),
    /// shown at a terminal with the time it is printed.
    Out(String),
    /// For stderr: errors (`error: ...`) and hints.
    Err(String),
    /// For stdout: what happened in the room (a chat, action or notice, a join, leave, rename or
    /// away), shown at a terminal with the time it happened.
    Room {
        /// The whole line, escaped.
        text: String,
        /// The byte range of the (escaped) name to colour in `text`; empty for none.
        from: Range<usize>,
        /// When the room's log accepted it, in ms since the Unix epoch; `None` for now (a
        /// server without a clock, or the user's own line).
        time: Option<u64>,
    },
}

impl Line {
    /// A notice line: `* <text>` on stdout.
    pub fn notice(text: impl std::fmt::Display) -> Self {
        Line::Out(format!("* {text}"))
    }

    /// An error line: `error: <text>` on stderr.
    pub fn error(text: impl std::fmt::Display) -> Self {
        Line::Err(format!("error: {text}"))
    }

    /// A chat line from `from` saying `text` as `kind` means it, both escaped here:
    /// `bob: hi`, `* bob waves`, `-bob- a notice`. `earlier` marks one from the history, set
    /// apart from live chat so that nobody answers a stale line by mistake. A `time` of 0 (a
    /// server without a clock) counts as none.
    pub fn chat(earlier: bool, from: &str, text: &str, kind: ChatKind, time: Option<u64>) -> Self {
        let mut line = String::from(if earlier { EARLIER } else { "" });
        line.push_str(match kind {
            ChatKind::Plain => "",
            ChatKind::Action => "* ",
            ChatKind::Notice => "-",
        });
        let start = line.len();
        line.push_str(&escape(from));
        let end = line.len();
        line.push_str(match kind {
            ChatKind::Plain => ": ",
            ChatKind::Action => " ",
            ChatKind::Notice => "- ",
        });
        line.push_str(&escape(text));
        Line::Room {
            text: line,
            from: start..end,
            time: time.filter(|&t| t > 0),
        }
    }

    /// A room event at `time` (0: unknown), shown as `* <text>` on stdout; `text` is escaped
    /// by the caller.
    pub fn event(time: u64, text: impl std::fmt::Display) -> Self {
        Line::Room {
            text: format!("* {text}"),
            from: 0..0,
            time: (time > 0).then_some(time),
        }
    }

    /// The text of the line, whichever stream it is for.
    pub fn text(&self) -> &str {
        match self {
            Line::Out(text) | Line::Err(text) | Line::Room { text, .. } => text,
        }
    }

    /// When what the line reports happened, if the room said (ms since the Unix epoch).
    pub fn time(&self) -> Option<u64> {
        match self {
            Line::Room { time, .. } => *time,
            Line::Out(_) | Line::Err(_) => None,
        }
    }
}

/// What sets a chat line from the history apart.
const EARLIER: &str = "[earlier] ";

/// The colours names are shown in (ANSI foreground codes), none of them too dark or too pale
/// on either a dark or a light background.
const NAME_COLOURS: [u8; 6] = [31, 32, 33, 34, 35, 36];

/// The colour `name` is always shown in: the same in every session and on every machine
/// (FNV-1a of its bytes, not the standard library's hasher, whose output may change).
pub fn name_colour(name: &str) -> u8 {
    let hash = name.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    NAME_COLOURS[(hash % NAME_COLOURS.len() as u64) as usize]
}

/// The line as a terminal shows it: the sender's name of a chat line in its colour when
/// `colour` is on; every other line as it is.
pub fn paint(line: &Line, colour: bool) -> Cow<'_, str> {
    match line {
        Line::Room { text, from, .. } if colour && !from.is_empty() => {
            let name = &text[from.clone()];
            Cow::Owned(format!(
                "{}\x1b[{}m{name}\x1b[0m{}",
                &text[..from.start],
                name_colour(name),
                &text[from.end..]
            ))
        }
        _ => Cow::Borrowed(line.text()),
    }
}

/// `unix_ms` (ms since the Unix epoch) as a person reads the time of day in `zone`: `HH:MM`.
/// `None` for a time past what a calendar can show.
pub fn clock(unix_ms: u64, zone: &TimeZone) -> Option<String> {
    let ms = i64::try_from(unix_ms).ok()?;
    let at = jiff::Timestamp::from_millisecond(ms).ok()?;
    Some(at.to_zoned(zone.clone()).strftime("%H:%M").to_string())
}

/// Whether `text` mentions `name`: the name in any case, not inside a longer word (`@alice,`
/// and `Alice?` mention alice; `malice` does not).
pub fn mentions(text: &str, name: &str) -> bool {
    if name.is_empty() {
        return false;
    }
    let text: Vec<char> = text.chars().flat_map(char::to_lowercase).collect();
    let name: Vec<char> = name.chars().flat_map(char::to_lowercase).collect();
    let word = |c: Option<&char>| c.is_some_and(|c| c.is_alphanumeric() || *c == '_');
    (0..text.len().saturating_sub(name.len() - 1)).any(|i| {
        text[i..].starts_with(&name)
            && !word(i.checked_sub(1).and_then(|j| text.get(j)))
            && !word(text.get(i + name.len()))
    })
}

/// The line shown for a server message, if any (pings, pongs and the history, which
/// [`render_history`] shows, show nothing here).
///
/// Every name and text that came from another person is passed through [`escape`].
pub fn render(msg: &ServerMsg) -> Option<Line> {
    Some(match msg {
        ServerMsg::Welcome {
            name,
            online,
            members,
            ..
        } if members.is_empty() && *online > 1 => Line::notice(format_args!(
            "joined as {}; {online} online (type who to list them)",
            escape(name)
        )),
        ServerMsg::Welcome { name, members, .. } => Line::notice(format_args!(
            "joined as {}; online: {}",
            escape(name),
            list_members(members)
        )),
        ServerMsg::Refused(refusal) => Line::error(refusal),
        ServerMsg::Chat {
            from,
            text,
            kind,
            time,
            ..
        } => Line::chat(false, from, text, *kind, Some(*time)),
        ServerMsg::Joined { name, time, .. } => {
            Line::event(*time, format_args!("{} joined", escape(name)))
        }
        // The notice of the kick said it, with the reason.
        ServerMsg::Left {
            reason: CloseReason::Kicked,
            ..
        } => return None,
        ServerMsg::Left {
            name,
            reason,
            message,
            time,
        } => Line::event(*time, left(name, *reason, message.as_deref())),
        ServerMsg::Renamed { from, to, time } => Line::event(
            *time,
            format_args!("{} is now {}", escape(from), escape(to)),
        ),
        ServerMsg::Away {
            name,
            message,
            time,
        } => Line::event(*time, away(name, message.as_deref())),
        ServerMsg::Members { members } => {
            Line::notice(format_args!("online: {}", list_members(members)))
        }
        ServerMsg::Error(kind) => Line::error(kind),
        ServerMsg::Registered { name } => Line::notice(format_args!(
            "{} is registered to you: logging in as it needs your password",
            escape(name)
        )),
        ServerMsg::Unregistered { name } => Line::notice(format_args!(
            "{} is registered no more: anyone may take it when you leave",
            escape(name)
        )),
        ServerMsg::Moderated { by, action, time } => Line::event(*time, moderated(by, action)),
        ServerMsg::Bans { bans, mutes } => Line::notice(ban_list(bans, mutes)),
        ServerMsg::Ping { .. } | ServerMsg::Pong { .. } | ServerMsg::History { .. } => {
            return None;
        }
        ServerMsg::Closing(CloseReason::ServerShutdown) => Line::notice("server is shutting down"),
        ServerMsg::Closing(reason) => {
            Line::notice(format_args!("disconnected by server: {reason}"))
        }
    })
}

/// `bob was kicked by alice: spam`, `192.0.2.0/24 was banned by alice until 2026-12-03 22:00
/// UTC`, `bob was unmuted by alice`.
fn moderated(by: &str, action: &ModAction) -> String {
    let by = escape(by);
    let until = |until: &Option<u64>| match until {
        Some(ms) => format!(" until {}", Utc(*ms)),
        None => String::new(),
    };
    let why = |reason: &Option<String>| match reason {
        Some(reason) => format!(": {}", escape(reason)),
        None => String::new(),
    };
    match action {
        ModAction::Kicked { name, reason } => {
            format!("{} was kicked by {by}{}", escape(name), why(reason))
        }
        ModAction::Banned {
            target,
            until: end,
            reason,
        } => format!(
            "{} was banned by {by}{}{}",
            escape(target),
            until(end),
            why(reason)
        ),
        ModAction::Unbanned { target } => format!("{} was unbanned by {by}", escape(target)),
        ModAction::Muted { name, until: end } => {
            format!("{} was muted by {by}{}", escape(name), until(end))
        }
        ModAction::Unmuted { name } => format!("{} was unmuted by {by}", escape(name)),
    }
}

/// `bans: bob (by alice, until ...: spam), 192.0.2.0/24 (by alice); muted: carol (by alice)`.
fn ban_list(bans: &[BanInfo], mutes: &[MuteInfo]) -> String {
    let until = |until: &Option<u64>| match until {
        Some(ms) => format!(", until {}", Utc(*ms)),
        None => String::new(),
    };
    let bans: Vec<String> = bans
        .iter()
        .map(|b| {
            let why = b.reason.as_deref().map(escape).map(|r| format!(": {r}"));
            format!(
                "{} (by {}{}{})",
                escape(&b.target),
                escape(&b.by),
                until(&b.until),
                why.unwrap_or_default()
            )
        })
        .collect();
    let mutes: Vec<String> = mutes
        .iter()
        .map(|m| {
            format!(
                "{} (by {}{})",
                escape(&m.name),
                escape(&m.by),
                until(&m.until)
            )
        })
        .collect();
    let list = |items: Vec<String>| {
        if items.is_empty() {
            "none".to_owned()
        } else {
            items.join(", ")
        }
    };
    format!("bans: {}; muted: {}", list(bans), list(mutes))
}

/// `bob left (timed out)`, or with parting words `bob left: gone for lunch` (the reason in
/// brackets too when it is not a plain leave).
fn left(name: &str, reason: CloseReason, message: Option<&str>) -> String {
    match (reason, message) {
        (CloseReason::Left, Some(message)) => {
            format!("{} left: {}", escape(name), escape(message))
        }
        (reason, Some(message)) => {
            format!("{} left ({reason}): {}", escape(name), escape(message))
        }
        (reason, None) => format!("{} left ({reason})", escape(name)),
    }
}

/// `bob is away: lunch`, `bob is away` (no reason, or the one `away` alone sends), or (no
/// message) `bob is back`.
pub(crate) fn away(name: &str, message: Option<&str>) -> String {
    match message.map(away_reason) {
        Some(Some(why)) => format!("{} is away: {}", escape(name), escape(why)),
        Some(None) => format!("{} is away", escape(name)),
        None => format!("{} is back", escape(name)),
    }
}

/// The reason an away message gives, if it says more than [`AWAY`] (what `away` alone sends).
pub(crate) fn away_reason(message: &str) -> Option<&str> {
    let message = message.trim();
    (!message.is_empty() && !message.eq_ignore_ascii_case(AWAY)).then_some(message)
}

/// The away message `away` without a reason sends (the room wants one): shown as no reason.
pub(crate) const AWAY: &str = "away";

/// The lines shown for the history after a welcome: set apart from live chat, so that nobody
/// answers a stale line by mistake, each with the time it was said.
pub fn render_history(chats: &[HistoryChat], missed: u64) -> Vec<Line> {
    let mut lines = Vec::new();
    if missed > 0 {
        let (s, were) = if missed == 1 {
            ("", "was")
        } else {
            ("s", "were")
        };
        lines.push(Line::notice(format_args!(
            "{missed} message{s} {were} missed"
        )));
    }
    for chat in chats {
        lines.push(Line::chat(
            true,
            &chat.from,
            &chat.text,
            chat.kind,
            Some(chat.time),
        ));
    }
    lines
}

/// The members, comma-separated, an away member marked with why: `alice, bob (away: lunch)`.
fn list_members(members: &[Member]) -> String {
    let mut out = String::new();
    for (i, member) in members.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        out.push_str(&escape(&member.name));
        match member.away.as_deref().map(away_reason) {
            Some(Some(why)) => {
                let _ = write!(out, " (away: {})", escape(why));
            }
            Some(None) => out.push_str(" (away)"),
            None => {}
        }
    }
    out
}

/// Whether `c` must be shown escaped: it could move the cursor, start a terminal escape, break
/// the line, or reorder the text around it.
fn needs_escape(c: char) -> bool {
    c.is_control() // C0, DEL and C1 (U+0080..=U+009F)
        || matches!(c,
            '\u{061C}'                    // Arabic letter mark
            | '\u{200E}' | '\u{200F}'     // left-to-right and right-to-left marks
            | '\u{2028}' | '\u{2029}'     // line and paragraph separators
            | '\u{202A}'..='\u{202E}'     // bidi embeddings and overrides
            | '\u{2066}'..='\u{2069}'     // bidi isolates
        )
}

/// Shows control characters, terminal escapes and bidi controls as visible escapes, so that
/// text from other people is displayed and never interpreted by the terminal.
///
/// `\n`, `\r` and `\t` become those two-character sequences, other ASCII controls `\x1b` style,
/// and the rest `\u{202e}` style. A backslash is left as it is. Text with nothing to escape is
/// returned borrowed.
pub fn escape(text: &str) -> Cow<'_, str> {
    if !text.chars().any(needs_escape) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if needs_escape(c) && c.is_ascii() => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if needs_escape(c) => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chat_proto::{ErrorKind, Limits, NameRule, Refusal};

    fn limits() -> Limits {
        Limits {
            max_name_chars: 32,
            max_text_bytes: 1024,
            max_frame_bytes: 2048,
            rate_per_sec: 10,
            burst: 20,
            idle_timeout_ms: 60_000,
        }
    }

    fn out(text: &str) -> Option<Line> {
        Some(Line::Out(text.into()))
    }

    fn err(text: &str) -> Option<Line> {
        Some(Line::Err(text.into()))
    }

    /// 2026-12-10 14:05:30.250 UTC, in ms since the Unix epoch.
    const T: u64 = 1_796_911_530_250;

    fn room(text: &str, time: u64) -> Option<Line> {
        Some(Line::Room {
            text: text.into(),
            from: 0..0,
            time: Some(time),
        })
    }

    fn members(names: &[&str]) -> Vec<Member> {
        names.iter().map(|n| Member::named(*n)).collect()
    }

    #[test]
    fn chat_and_notices() {
        assert_eq!(
            render(&ServerMsg::Chat {
                seq: 3,
                time: T,
                from: "bob".into(),
                text: "hi  there".into(),
                kind: ChatKind::Plain,
            }),
            Some(Line::Room {
                text: "bob: hi  there".into(),
                from: 0..3,
                time: Some(T),
            })
        );
        assert_eq!(
            render(&ServerMsg::Joined {
                name: "alice".into(),
                time: T,
                ident: None,
            }),
            room("* alice joined", T)
        );
        assert_eq!(
            render(&ServerMsg::Left {
                name: "alice".into(),
                reason: CloseReason::IdleTimeout,
                message: None,
                time: T,
            }),
            room("* alice left (timed out)", T)
        );
        assert_eq!(
            render(&ServerMsg::Left {
                name: "alice".into(),
                reason: CloseReason::Left,
                message: None,
                time: T,
            }),
            room("* alice left (left)", T)
        );
        let moderated = |action| ServerMsg::Moderated {
            by: "op".into(),
            action,
            time: T,
        };
        assert_eq!(
            render(&moderated(ModAction::Kicked {
                name: "alice".into(),
                reason: Some("spam\x1b[2J".into()),
            })),
            room("* alice was kicked by op: spam\\x1b[2J", T)
        );
        assert_eq!(
            render(&moderated(ModAction::Banned {
                target: "192.0.2.0/24".into(),
                until: Some(1_796_334_000_000),
                reason: None,
            })),
            room(
                "* 192.0.2.0/24 was banned by op until 2026-12-03 21:40 UTC",
                T
            )
        );
        assert_eq!(
            render(&moderated(ModAction::Unmuted { name: "bob".into() })),
            room("* bob was unmuted by op", T)
        );
        assert_eq!(
            render(&ServerMsg::Left {
                name: "alice".into(),
                reason: CloseReason::Kicked,
                message: None,
                time: T,
            }),
            None
        );
        assert_eq!(
            render(&ServerMsg::Bans {
                bans: vec![BanInfo {
                    target: "mallory".into(),
                    until: None,
                    reason: Some("spam".into()),
                    by: "op".into(),
                    since: 0,
                }],
                mutes: vec![],
            }),
            out("* bans: mallory (by op: spam); muted: none")
        );
        assert_eq!(
            render(&ServerMsg::Welcome {
                name: "alice".into(),
                online: 2,
                members: members(&["alice", "bob"]),
                limits: limits(),
                seq: 0,
                epoch: 9,
            }),
            out("* joined as alice; online: alice, bob")
        );
        assert_eq!(
            render(&ServerMsg::Welcome {
                name: "alice".into(),
                online: 5000,
                members: vec![],
                limits: limits(),
                seq: 0,
                epoch: 9,
            }),
            out("* joined as alice; 5000 online (type who to list them)")
        );
        assert_eq!(
            render(&ServerMsg::Members {
                members: members(&["alice", "bob"])
            }),
            out("* online: alice, bob")
        );
    }

    #[test]
    fn an_action_and_a_notice_are_shown_as_such() {
        let chat = |kind| ServerMsg::Chat {
            seq: 3,
            time: T,
            from: "bob".into(),
            text: "waves".into(),
            kind,
        };
        assert_eq!(
            render(&chat(ChatKind::Action)),
            Some(Line::Room {
                text: "* bob waves".into(),
                from: 2..5,
                time: Some(T),
            })
        );
        assert_eq!(
            render(&chat(ChatKind::Notice)),
            Some(Line::Room {
                text: "-bob- waves".into(),
                from: 1..4,
                time: Some(T),
            })
        );
        let action = Line::chat(false, "bob", "waves", ChatKind::Action, None);
        let colour = name_colour("bob");
        assert_eq!(
            paint(&action, true),
            format!("* \x1b[{colour}mbob\x1b[0m waves")
        );
    }

    #[test]
    fn parting_words_follow_the_leave() {
        let left = |reason, message: Option<&str>| ServerMsg::Left {
            name: "bob".into(),
            reason,
            message: message.map(Into::into),
            time: T,
        };
        assert_eq!(
            render(&left(CloseReason::Left, Some("gone for lunch"))),
            room("* bob left: gone for lunch", T)
        );
        assert_eq!(
            render(&left(CloseReason::IdleTimeout, Some("x\x1b"))),
            room("* bob left (timed out): x\\x1b", T)
        );
    }

    #[test]
    fn renames_and_away_are_notices_of_the_room() {
        assert_eq!(
            render(&ServerMsg::Renamed {
                from: "alice".into(),
                to: "alicia".into(),
                time: T,
            }),
            room("* alice is now alicia", T)
        );
        let away = |message: Option<&str>| ServerMsg::Away {
            name: "bob".into(),
            message: message.map(Into::into),
            time: T,
        };
        assert_eq!(
            render(&away(Some("lunch"))),
            room("* bob is away: lunch", T)
        );
        // What `away` alone sends says no more than that.
        assert_eq!(render(&away(Some(AWAY))), room("* bob is away", T));
        assert_eq!(render(&away(Some("Away "))), room("* bob is away", T));
        assert_eq!(render(&away(None)), room("* bob is back", T));
    }

    #[test]
    fn who_marks_away_members() {
        let mut list = members(&["alice", "bob", "carol", "dan"]);
        list[1].away = Some("lunch, then a walk".into());
        list[2].away = Some(AWAY.into());
        list[3].away = Some("\x1b[2J".into());
        assert_eq!(
            render(&ServerMsg::Members { members: list }),
            out(
                "* online: alice, bob (away: lunch, then a walk), carol (away), dan (away: \\x1b[2J)"
            )
        );
    }

    #[test]
    fn a_time_of_zero_is_no_time() {
        assert_eq!(
            Line::chat(false, "b", "x", ChatKind::Plain, Some(0)).time(),
            None
        );
        assert_eq!(Line::event(0, "x").time(), None);
        assert_eq!(Line::event(T, "x").time(), Some(T));
        assert_eq!(Line::notice("x").time(), None);
    }

    #[test]
    fn clock_shows_the_time_of_day_in_the_zone() {
        assert_eq!(clock(T, &TimeZone::UTC).as_deref(), Some("14:05"));
        let plus_5_30 = TimeZone::fixed(jiff::tz::Offset::from_seconds(5 * 3600 + 1800).unwrap());
        assert_eq!(clock(T, &plus_5_30).as_deref(), Some("19:35"));
        let minus_15 = TimeZone::fixed(jiff::tz::offset(-15));
        assert_eq!(clock(T, &minus_15).as_deref(), Some("23:05"));
        assert_eq!(clock(0, &TimeZone::UTC).as_deref(), Some("00:00"));
        // Past what a calendar shows: no time, and no panic.
        assert_eq!(clock(u64::MAX, &TimeZone::UTC), None);
        assert_eq!(clock(i64::MAX as u64, &TimeZone::UTC), None);
    }

    #[test]
    fn closing_frames() {
        assert_eq!(
            render(&ServerMsg::Closing(CloseReason::ServerShutdown)),
            out("* server is shutting down")
        );
        assert_eq!(
            render(&ServerMsg::Closing(CloseReason::IdleTimeout)),
            out("* disconnected by server: timed out")
        );
        assert_eq!(
            render(&ServerMsg::Closing(CloseReason::Flood)),
            out("* disconnected by server: flooding")
        );
    }

    #[test]
    fn errors_and_refusals_go_to_stderr() {
        assert_eq!(
            render(&ServerMsg::Error(ErrorKind::RateLimited)),
            err("error: sending too fast; message dropped")
        );
        assert_eq!(
            render(&ServerMsg::Refused(Refusal::NameTaken)),
            err("error: name is taken; choose another")
        );
        assert_eq!(
            render(&ServerMsg::Refused(Refusal::NameInvalid(
                NameRule::Whitespace
            ))),
            err("error: name contains whitespace; choose another")
        );
    }

    #[test]
    fn pings_show_nothing() {
        assert_eq!(render(&ServerMsg::Ping { nonce: 1 }), None);
        assert_eq!(render(&ServerMsg::Pong { nonce: 1 }), None);
    }

    #[test]
    fn other_peoples_text_is_escaped_everywhere() {
        let evil = "\x1b[31mx\u{202e}";
        let shown = "\\x1b[31mx\\u{202e}";
        for (kind, expected) in [
            (ChatKind::Plain, format!("{shown}: {shown}")),
            (ChatKind::Action, format!("* {shown} {shown}")),
            (ChatKind::Notice, format!("-{shown}- {shown}")),
        ] {
            let line = render(&ServerMsg::Chat {
                seq: 1,
                time: T,
                from: evil.into(),
                text: evil.into(),
                kind,
            })
            .unwrap();
            assert_eq!(line.text(), expected);
        }
        let line = render(&ServerMsg::Joined {
            name: evil.into(),
            time: T,
            ident: None,
        })
        .unwrap();
        assert_eq!(line.text(), format!("* {shown} joined"));
        let line = render(&ServerMsg::Members {
            members: members(&[evil, "b"]),
        })
        .unwrap();
        assert_eq!(line.text(), format!("* online: {shown}, b"));
        let line = render(&ServerMsg::Renamed {
            from: evil.into(),
            to: evil.into(),
            time: T,
        })
        .unwrap();
        assert_eq!(line.text(), format!("* {shown} is now {shown}"));
        let line = render(&ServerMsg::Away {
            name: evil.into(),
            message: Some(evil.into()),
            time: T,
        })
        .unwrap();
        assert_eq!(line.text(), format!("* {shown} is away: {shown}"));
        let line = render(&ServerMsg::Left {
            name: evil.into(),
            reason: CloseReason::Left,
            message: Some(evil.into()),
            time: T,
        })
        .unwrap();
        assert_eq!(line.text(), format!("* {shown} left: {shown}"));
    }

    #[test]
    fn escape_plain_text_is_borrowed() {
        assert!(matches!(escape("héllo wörld ✓ 👍"), Cow::Borrowed(_)));
        assert_eq!(escape(r"back\slash"), r"back\slash");
        // Zero-width joiner builds emoji sequences; it is left alone.
        assert_eq!(escape("👩\u{200d}💻"), "👩\u{200d}💻");
    }

    #[test]
    fn escape_controls() {
        assert_eq!(escape("a\x1b[2Jb"), "a\\x1b[2Jb");
        assert_eq!(escape("one\ntwo\r\n"), "one\\ntwo\\r\\n");
        assert_eq!(escape("\t\0\x07\x7f"), "\\t\\x00\\x07\\x7f");
        // C1 controls, including the 8-bit CSI.
        assert_eq!(escape("\u{9b}31m\u{85}"), "\\u{9b}31m\\u{85}");
    }

    #[test]
    fn escape_bidi_and_separators() {
        assert_eq!(
            escape("\u{202a}\u{202b}\u{202c}\u{202d}\u{202e}"),
            "\\u{202a}\\u{202b}\\u{202c}\\u{202d}\\u{202e}"
        );
        assert_eq!(
            escape("\u{2066}\u{2067}\u{2068}\u{2069}"),
            "\\u{2066}\\u{2067}\\u{2068}\\u{2069}"
        );
        assert_eq!(
            escape("\u{200e}\u{200f}\u{61c}\u{2028}\u{2029}"),
            "\\u{200e}\\u{200f}\\u{61c}\\u{2028}\\u{2029}"
        );
    }

    /// Every code point below U+3000 that must be escaped, written out rather than taken from
    /// `needs_escape`, so that a character dropped from (or added to) it shows here.
    fn must_escape() -> Vec<u32> {
        (0x00..=0x1f)
            .chain(0x7f..=0x9f)
            .chain([0x61c, 0x200e, 0x200f])
            .chain(0x2028..=0x202e)
            .chain(0x2066..=0x2069)
            .collect()
    }

    #[test]
    fn exactly_the_controls_bidi_marks_and_separators_are_escaped() {
        let changed: Vec<u32> = (0u32..0x3000)
            .filter_map(char::from_u32)
            .filter(|c| escape(&c.to_string()) != c.to_string())
            .map(|c| c as u32)
            .collect();
        assert_eq!(changed, must_escape());
    }

    #[test]
    fn escaped_text_has_no_escapable_chars_left() {
        let all: String = (0u32..0x3000).filter_map(char::from_u32).collect();
        let escaped = escape(&all);
        let left: Vec<char> = escaped
            .chars()
            .filter(|&c| must_escape().contains(&(c as u32)))
            .collect();
        assert_eq!(left, []);
    }

    #[test]
    fn history_is_set_apart_says_how_many_were_missed_and_keeps_each_time() {
        let chat = |seq, from: &str, text: &str, kind| HistoryChat {
            seq,
            time: T + seq,
            from: from.into(),
            text: text.into(),
            kind,
        };
        let chats = [
            chat(7, "bob", "hi", ChatKind::Plain),
            chat(8, "é\x1b", "x", ChatKind::Plain),
            chat(9, "bob", "waves", ChatKind::Action),
            chat(10, "bot", "news", ChatKind::Notice),
        ];
        let lines = render_history(&chats, 230);
        let texts: Vec<&str> = lines.iter().map(Line::text).collect();
        assert_eq!(
            texts,
            [
                "* 230 messages were missed",
                "[earlier] bob: hi",
                "[earlier] é\\x1b: x",
                "[earlier] * bob waves",
                "[earlier] -bot- news",
            ]
        );
        let times: Vec<Option<u64>> = lines.iter().map(Line::time).collect();
        assert_eq!(
            times,
            [None, Some(T + 7), Some(T + 8), Some(T + 9), Some(T + 10)]
        );
        assert!(matches!(&lines[2], Line::Room { from, .. } if *from == (10..16)));
        assert_eq!(render_history(&[], 1)[0].text(), "* 1 message was missed");
    }

    #[test]
    fn a_name_is_painted_in_its_own_colour_and_nothing_else_is() {
        let line = Line::chat(true, "bob", "hi \x1b", ChatKind::Plain, None);
        let colour = name_colour("bob");
        assert_eq!(
            paint(&line, true),
            format!("[earlier] \x1b[{colour}mbob\x1b[0m: hi \\x1b")
        );
        assert_eq!(paint(&line, false), "[earlier] bob: hi \\x1b");
        assert_eq!(paint(&Line::notice("bob joined"), true), "* bob joined");
        // Stable: written out, so a change of the hash shows here.
        assert_eq!(
            ["alice", "bob", "carol", "dave"].map(name_colour),
            [36, 31, 35, 34]
        );
    }

    #[test]
    fn a_mention_is_the_name_as_a_word_in_any_case() {
        for text in [
            "alice",
            "hi alice",
            "@Alice, look",
            "ALICE?",
            "é alice é",
            "bob/alice",
        ] {
            assert!(mentions(text, "alice"), "{text:?}");
        }
        for text in ["malice", "alices", "alice_b", "ali ce", "", "al"] {
            assert!(!mentions(text, "alice"), "{text:?}");
        }
        assert!(mentions("Łukasz!", "łukasz"));
    }
}
