//! The IRC entrance fed arbitrary bytes as a hub drives it: the line reader, each connection's
//! session in the codec (lines kept after a hello, member-list requests), and the lines the
//! codec writes back: never a panic, never a line over 512 bytes or with a CR/LF/NUL inside.
#![no_main]

use chat_core::{Codec, ConnId, Inbound};
use chat_gateway::irc::{Identity, IrcCodec, Line, LineReader, MAX_LINE};
use chat_proto::{ClientMsg, ServerMsg};
use libfuzzer_sys::fuzz_target;

const CONN: ConnId = ConnId(1);

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

/// The room's side: answers what the codec decoded as the room might, through the codec.
struct Room {
    welcome_next: bool,
    /// A name from the input, for chats and member lists.
    other: String,
}

impl Room {
    fn answer(&mut self, codec: &mut IrcCodec, item: Inbound) {
        let mut out = Vec::new();
        match item {
            Inbound::Reply(bytes) => out = bytes,
            Inbound::Msg(ClientMsg::Hello { name, .. }) => {
                // The room may welcome or refuse any nick the session lets through.
                let msg = if self.welcome_next && chat_core::check_name(&name, 32).is_ok() {
                    ServerMsg::Welcome {
                        name: chat_core::display_name(&name),
                        online: 2,
                        members: vec![
                            chat_proto::Member::named(name.as_str()),
                            chat_proto::Member::named(self.other.as_str()),
                        ],
                        limits: chat_core::Config::default().limits(),
                        seq: 0,
                        epoch: 1,
                    }
                } else {
                    ServerMsg::Refused(chat_proto::Refusal::NameTaken)
                };
                self.welcome_next = !self.welcome_next;
                codec.encode_to(CONN, &msg, &mut out);
            }
            Inbound::Msg(ClientMsg::Chat { text, kind }) => {
                // What the room would accept comes back out as well-formed lines.
                if chat_core::check_text(&text, 1024).is_ok() {
                    let from = self.other.clone();
                    let chat = ServerMsg::Chat {
                        seq: 1,
                        time: 1_700_000_000_000,
                        from,
                        text,
                        kind,
                    };
                    codec.encode_broadcast(&chat, &mut out);
                }
            }
            Inbound::Msg(ClientMsg::Who) => {
                let members = vec![chat_proto::Member::named(self.other.as_str())];
                codec.encode_to(CONN, &ServerMsg::Members { members }, &mut out);
            }
            Inbound::Msg(_) | Inbound::Malformed | Inbound::End => {}
        }
        check_lines(&out);
    }
}

fuzz_target!(|data: &[u8]| {
    let mut reader = LineReader::new();
    reader.feed(data, |line| {
        if let Line::Text(text) = line {
            assert!(text.len() + 2 <= MAX_LINE);
        }
    });
    let mut codec = IrcCodec::new(Identity {
        server: "irc.test".into(),
        channel: "#chat".into(),
    });
    // The first byte splits the input in two reads, to cross a line boundary.
    let cut = data.first().map_or(0, |&b| b as usize).min(data.len());
    let other = String::from_utf8_lossy(&data[..cut.min(40)]).into_owned();
    let mut room = Room {
        welcome_next: data.first().is_some_and(|b| b & 1 == 0),
        other: if chat_core::check_name(&other, 32).is_ok() {
            other
        } else {
            "other".into()
        },
    };
    let mut items = Vec::new();
    for part in [&data[..cut], &data[cut..]] {
        codec.decode(CONN, part, &mut items);
        loop {
            for item in std::mem::take(&mut items) {
                room.answer(&mut codec, item);
            }
            match codec.poll_ready() {
                Some(conn) => codec.decode(conn, &[], &mut items),
                None => break,
            }
        }
    }
});
