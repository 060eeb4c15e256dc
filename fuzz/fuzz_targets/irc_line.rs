//! The IRC gateway's line reader, parser and per-connection session, and the codec's lines,
//! fed arbitrary bytes: never a panic, never a line over 512 bytes or with a CR/LF/NUL inside.
#![no_main]

use chat_core::{Codec, ConnId};
use chat_proto::ServerMsg;
use chat_gateway::irc::{Action, Identity, IrcCodec, Line, LineReader, MAX_LINE, Session, Sessions};
use libfuzzer_sys::fuzz_target;

fn identity() -> Identity {
    Identity {
        server: "irc.test".into(),
        channel: "#chat".into(),
    }
}

/// Every line in `bytes` ends in CR LF, fits 512 bytes and holds no CR, LF or NUL.
fn check_lines(bytes: &[u8]) {
    assert!(bytes.is_empty() || bytes.ends_with(b"\r\n"));
    for line in bytes.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        let line = line.strip_suffix(b"\r").expect("CR LF");
        assert!(
            line.len() + 2 <= MAX_LINE,
            "line of {} bytes",
            line.len() + 2
        );
        assert!(!line.contains(&b'\r') && !line.contains(&0));
    }
}

fuzz_target!(|data: &[u8]| {
    let mut reader = LineReader::new();
    let mut session = Session::new(identity());
    let sessions = Sessions::default();
    let mut codec = IrcCodec::new(identity(), sessions.clone());
    let conn = ConnId(1);
    sessions.open(conn);
    let mut actions = Vec::new();
    let mut welcome_next = data.first().is_some_and(|b| b & 1 == 0);
    // The first byte splits the input in two feeds, to cross a line boundary.
    let cut = data.first().map_or(0, |&b| b as usize).min(data.len());
    for part in [&data[..cut], &data[cut..]] {
        reader.feed(part, |line| {
            if let Line::Text(text) = line {
                assert!(text.len() + 2 <= MAX_LINE);
            }
            session.handle(line, &mut actions);
        });
    }
    for action in actions.drain(..) {
        match action {
            Action::Reply(bytes) => check_lines(&bytes),
            Action::Register(nick) => {
                // The room may welcome or refuse any nick the session lets through.
                let mut out = Vec::new();
                let msg = if welcome_next && chat_core::check_name(&nick, 32).is_ok() {
                    session.welcomed();
                    ServerMsg::Welcome {
                        name: chat_core::display_name(&nick),
                        online: 1,
                        members: vec![nick.as_str().into()],
                        limits: chat_core::Config::default().limits(),
                        seq: 0,
                    }
                } else {
                    session.refused();
                    ServerMsg::Refused(chat_proto::Refusal::NameTaken)
                };
                welcome_next = !welcome_next;
                codec.encode_to(conn, &msg, &mut out);
                check_lines(&out);
            }
            Action::Room(chat_proto::ClientMsg::Chat { text }) => {
                // What the room would accept comes back out as well-formed lines.
                if chat_core::check_text(&text, 1024).is_ok() {
                    let mut out = Vec::new();
                    let from = String::from_utf8_lossy(&data[..cut.min(40)]).into_owned();
                    if chat_core::check_name(&from, 32).is_ok() {
                        let msg = ServerMsg::Chat { seq: 1, from, text };
                        codec.encode_broadcast(&msg, &mut out);
                        check_lines(&out);
                    }
                }
            }
            Action::Room(_) | Action::Who(_) => {}
        }
    }
});
