//! What the user sees for each server message, and the escaping of other people's text.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::ops::Range;

use chat_proto::{CloseReason, ServerMsg};

/// One line of output (without its newline) and the stream it belongs on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line {
    /// For stdout: chat (`<name>: <text>`) and notices (`* ...`).
    Out(String),
    /// For stderr: errors (`error: ...`) and hints.
    Err(String),
    /// Chat, for stdout: `<from>: <text>`, after `[earlier] ` when it comes from the history.
    /// `from` is where the sender's name is in `text`, so that a terminal can colour it.
    Chat {
        /// The whole line, escaped.
        text: String,
        /// The byte range of the sender's (escaped) name in `text`.
        from: Range<usize>,
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

    /// A chat line from `from` saying `text`, both escaped here; `earlier` marks one from the
    /// history, set apart from live chat so that nobody answers a stale line by mistake.
    pub fn chat(earlier: bool, from: &str, text: &str) -> Self {
        let mut line = String::from(if earlier { EARLIER } else { "" });
        let start = line.len();
        line.push_str(&escape(from));
        let end = line.len();
        line.push_str(": ");
        line.push_str(&escape(text));
        Line::Chat {
            text: line,
            from: start..end,
        }
    }

    /// The text of the line, whichever stream it is for.
    pub fn text(&self) -> &str {
        match self {
            Line::Out(text) | Line::Err(text) | Line::Chat { text, .. } => text,
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
        Line::Chat { text, from } if colour && !from.is_empty() => {
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

/// The line shown for a server message, if any (pings and pongs show nothing).
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
            join_names(members)
        )),
        ServerMsg::Refused(refusal) => Line::error(refusal),
        ServerMsg::Chat { from, text, .. } => Line::chat(false, from, text),
        ServerMsg::Joined { name, .. } => Line::notice(format_args!("{} joined", escape(name))),
        ServerMsg::Left { name, reason, .. } => {
            Line::notice(format_args!("{} left ({reason})", escape(name)))
        }
        ServerMsg::Members { members } => {
            Line::notice(format_args!("online: {}", join_names(members)))
        }
        ServerMsg::Renamed { from, to, .. } => {
            Line::notice(format_args!("{} is now {}", escape(from), escape(to)))
        }
        ServerMsg::Away { .. } => return None,
        ServerMsg::Error(kind) => Line::error(kind),
        ServerMsg::Ping { .. } | ServerMsg::Pong { .. } | ServerMsg::History { .. } => {
            return None;
        }
        ServerMsg::Closing(CloseReason::ServerShutdown) => Line::notice("server is shutting down"),
        ServerMsg::Closing(reason) => {
            Line::notice(format_args!("disconnected by server: {reason}"))
        }
    })
}

/// The lines shown for the history after a welcome: set apart from live chat, so that nobody
/// answers a stale line by mistake.
pub fn render_history(chats: &[chat_proto::HistoryChat], missed: u64) -> Vec<Line> {
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
        lines.push(Line::chat(true, &chat.from, &chat.text));
    }
    lines
}

fn join_names(members: &[chat_proto::Member]) -> String {
    let mut out = String::new();
    for (i, member) in members.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        out.push_str(&escape(&member.name));
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

    #[test]
    fn chat_and_notices() {
        assert_eq!(
            render(&ServerMsg::Chat {
                seq: 3,
                from: "bob".into(),
                text: "hi  there".into()
            }),
            Some(Line::chat(false, "bob", "hi  there"))
        );
        assert_eq!(
            Line::chat(false, "bob", "hi  there"),
            Line::Chat {
                text: "bob: hi  there".into(),
                from: 0..3
            }
        );
        assert_eq!(
            render(&ServerMsg::Joined {
                name: "alice".into()
            }),
            out("* alice joined")
        );
        assert_eq!(
            render(&ServerMsg::Left {
                name: "alice".into(),
                reason: CloseReason::IdleTimeout
            }),
            out("* alice left (timed out)")
        );
        assert_eq!(
            render(&ServerMsg::Left {
                name: "alice".into(),
                reason: CloseReason::Left
            }),
            out("* alice left (left)")
        );
        assert_eq!(
            render(&ServerMsg::Welcome {
                name: "alice".into(),
                online: 2,
                members: vec!["alice".into(), "bob".into()],
                limits: limits(),
                seq: 0
            }),
            out("* joined as alice; online: alice, bob")
        );
        assert_eq!(
            render(&ServerMsg::Welcome {
                name: "alice".into(),
                online: 5000,
                members: vec![],
                limits: limits(),
                seq: 0
            }),
            out("* joined as alice; 5000 online (type who to list them)")
        );
        assert_eq!(
            render(&ServerMsg::Members {
                names: vec!["alice".into(), "bob".into()]
            }),
            out("* online: alice, bob")
        );
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
        let line = render(&ServerMsg::Chat {
            seq: 1,
            from: evil.into(),
            text: evil.into(),
        })
        .unwrap();
        assert_eq!(line.text(), format!("{shown}: {shown}"));
        let line = render(&ServerMsg::Joined { name: evil.into() }).unwrap();
        assert_eq!(line.text(), format!("* {shown} joined"));
        let line = render(&ServerMsg::Members {
            names: vec![evil.into(), "b".into()],
        })
        .unwrap();
        assert_eq!(line.text(), format!("* online: {shown}, b"));
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
    fn history_is_set_apart_and_says_how_many_were_missed() {
        let chat = |seq, from: &str, text: &str| chat_proto::HistoryChat {
            seq,
            from: from.into(),
            text: text.into(),
        };
        let lines = render_history(&[chat(7, "bob", "hi"), chat(8, "é\x1b", "x")], 230);
        let texts: Vec<&str> = lines.iter().map(Line::text).collect();
        assert_eq!(
            texts,
            [
                "* 230 messages were missed",
                "[earlier] bob: hi",
                "[earlier] é\\x1b: x"
            ]
        );
        assert!(matches!(&lines[2], Line::Chat { from, .. } if *from == (10..16)));
        assert_eq!(render_history(&[], 1)[0].text(), "* 1 message was missed");
    }

    #[test]
    fn a_name_is_painted_in_its_own_colour_and_nothing_else_is() {
        let line = Line::chat(true, "bob", "hi \x1b");
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
