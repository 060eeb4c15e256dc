//! The IRC entrance fed arbitrary bytes as the server drives it: a real hub and room with the
//! IRC codec and its capability lanes, one connection typing the input (registration, CAP
//! negotiation, message tags, CTCP, NICK, AWAY, PART and JOIN, CHATHISTORY, WHO masks, ...) in
//! two reads, and a registered watcher with every capability on. Never a panic or a driver
//! error, and every line either of them is sent ends in CR LF, fits 512 bytes (tags aside, as
//! the IRCv3 message-tags spec allows) and holds no CR, LF or NUL inside.
#![no_main]

use std::time::{Duration, Instant};

use chat_core::{Config, ConnId, Due, Hub, Input, Room};
use chat_gateway::irc::{Identity, IrcCodec, Line, LineReader, MAX_LINE};
use libfuzzer_sys::fuzz_target;

/// What the watcher asks for, so that every lane of the codec is in use.
const WATCHER: &[u8] = b"CAP LS 302\r\nCAP REQ :server-time message-tags echo-message batch \
labeled-response away-notify multi-prefix userhost-in-names cap-notify standard-replies \
draft/chathistory\r\nNICK watcher\r\nUSER w 0 * :Watcher\r\nCAP END\r\n";

/// Every line in `bytes` ends in CR LF, holds no CR, LF or NUL, and its part after the tags
/// fits 512 bytes.
fn check_lines(bytes: &[u8]) {
    assert!(bytes.is_empty() || bytes.ends_with(b"\r\n"), "{bytes:?}");
    for line in bytes.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        let line = line.strip_suffix(b"\r").expect("CR LF");
        assert!(!line.contains(&b'\r') && !line.contains(&0), "{line:?}");
        let body = match line.strip_prefix(b"@") {
            Some(tagged) => match tagged.iter().position(|&b| b == b' ') {
                Some(space) => &tagged[space + 1..],
                None => panic!("tags with no message: {line:?}"),
            },
            None => line,
        };
        assert!(body.len() + 2 <= MAX_LINE, "line of {} bytes", body.len() + 2);
    }
}

/// Everything `conn` is owed, as a writer takes it.
fn drain(hub: &mut Hub, conn: ConnId) -> Vec<u8> {
    let mut got = Vec::new();
    loop {
        let mut chunk = Vec::new();
        let due = hub.fanout_of(conn).due(conn, |frame| {
            chunk.extend_from_slice(frame);
            true
        });
        if due != Due::Write {
            return got;
        }
        hub.fanout_of(conn).consumed(conn, chunk.len());
        got.extend(chunk);
    }
}

fuzz_target!(|data: &[u8]| {
    let mut reader = LineReader::new();
    reader.feed(data, |line| {
        if let Line::Text(text) = line {
            assert!(text.len() + 2 <= MAX_LINE);
        }
    });
    let now = Instant::now();
    let mut hub = Hub::new(Room::new(Config::default(), 7).unwrap(), 1 << 20);
    hub.set_clock(now, 1_700_000_000_000);
    let mut codec = IrcCodec::new(Identity {
        server: "irc.test".into(),
        channel: "#chat".into(),
    });
    codec.set_motd("welcome\nto the room");
    let irc = codec.add_to(&mut hub);
    let (typist, watcher) = (ConnId(1), ConnId(2));
    for conn in [watcher, typist] {
        hub.attach(conn, irc);
        hub.handle_input(now, Input::Opened(conn)).unwrap();
    }
    hub.handle_bytes(now, watcher, WATCHER).unwrap();
    check_lines(&drain(&mut hub, watcher));
    // The first byte splits the input in two reads, to cross a line boundary; time passes
    // between them, so that deadlines and rate limits move.
    let cut = data.first().map_or(0, |&b| b as usize).min(data.len());
    let later = now + Duration::from_millis(u64::from(data.get(1).copied().unwrap_or(0)) * 10);
    hub.handle_bytes(now, typist, &data[..cut]).unwrap();
    check_lines(&drain(&mut hub, typist));
    hub.handle_input(later, Input::Tick).unwrap();
    hub.handle_bytes(later, typist, &data[cut..]).unwrap();
    for conn in [typist, watcher] {
        check_lines(&drain(&mut hub, conn));
    }
    hub.handle_input(later, Input::Closed(typist)).unwrap();
    check_lines(&drain(&mut hub, watcher));
});
