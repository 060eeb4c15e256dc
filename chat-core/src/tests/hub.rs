//! The hub with two codecs: each connection gets its own protocol's bytes, a broadcast is
//! encoded once per codec in use, and the closing frame comes from the connection's codec.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::time::Instant;

use chat_proto::v2;

use super::*;
use crate::{Codec, Due, Hub, Inbound};

/// A codec that writes one text line per message, counting how often it encoded a broadcast.
#[derive(Debug, Default)]
struct Lines {
    /// Shared with the test, which keeps a clone.
    broadcasts: Arc<AtomicUsize>,
    /// Bytes decoded; shared with the test likewise.
    decoded: Arc<AtomicUsize>,
    /// What its broadcasts start with (a view's are told apart by it).
    mark: &'static str,
    /// Moves asked for, for [`Codec::poll_move`].
    moves: Vec<(ConnId, usize)>,
}

impl Codec for Lines {
    /// One command per byte, enough to drive the hub's inbound path: `a`, `b`: the hellos of
    /// "a" and "b"; `c`: a chat "c"; `p`: the adapter's own `PONG`; `q`: goodbye; else malformed.
    fn decode(&mut self, conn: ConnId, bytes: &[u8], out: &mut Vec<Inbound>) {
        self.decoded.fetch_add(bytes.len(), Relaxed);
        for &b in bytes {
            out.push(match b {
                b'1' => {
                    self.moves.push((conn, 1));
                    continue;
                }
                b'e' => Inbound::Echo(true),
                b'x' => Inbound::Part(Some("bye".into())),
                b'a' | b'b' => Inbound::Msg(hello(&char::from(b).to_string())),
                b'c' => Inbound::Msg(chat("c")),
                b'p' => Inbound::Reply(b"PONG\n".to_vec()),
                b'q' => Inbound::End,
                _ => Inbound::Malformed,
            });
        }
    }

    fn encode_to(&mut self, to: ConnId, msg: &ServerMsg, out: &mut Vec<u8>) -> bool {
        let line = match msg {
            ServerMsg::Welcome { name, .. } => format!("to {}: welcome {name}\n", to.0),
            ServerMsg::Closing(reason) => format!("to {}: bye ({reason})\n", to.0),
            ServerMsg::Ping { .. } => return false,
            other => format!("to {}: {other:?}\n", to.0),
        };
        out.extend_from_slice(line.as_bytes());
        true
    }

    fn encode_broadcast(&mut self, msg: &ServerMsg, out: &mut Vec<u8>) -> bool {
        self.broadcasts.fetch_add(1, Relaxed);
        out.extend_from_slice(self.mark.as_bytes());
        let line = match msg {
            ServerMsg::Chat { from, text, .. } => format!("<{from}> {text}\n"),
            ServerMsg::Joined { name, .. } => format!("+{name}\n"),
            ServerMsg::Left { name, .. } => format!("-{name}\n"),
            other => format!("{other:?}\n"),
        };
        out.extend_from_slice(line.as_bytes());
        true
    }

    fn poll_move(&mut self) -> Option<(ConnId, usize)> {
        self.moves.pop()
    }
}

fn drain(hub: &mut Hub, conn: ConnId) -> Vec<u8> {
    let mut got = Vec::new();
    loop {
        let mut chunk = Vec::new();
        let due = hub.fanout_of(conn).due(conn, |f| {
            chunk.extend_from_slice(f);
            true
        });
        if due != Due::Write {
            return got;
        }
        hub.fanout_of(conn).consumed(conn, chunk.len());
        got.extend(chunk);
    }
}

#[test]
fn each_connection_gets_its_own_protocol_and_a_broadcast_is_encoded_once_per_codec() {
    let now = Instant::now();
    let mut hub = Hub::new(Room::new(config(), EPOCH).unwrap(), 1 << 20);
    let encoded = Arc::new(AtomicUsize::new(0));
    let lines = hub.add_codec(Box::new(Lines {
        broadcasts: encoded.clone(),
        ..Lines::default()
    }));
    let (wire, text1, text2) = (ConnId(1), ConnId(2), ConnId(3));
    hub.attach(text1, lines);
    hub.attach(text2, lines);
    for (conn, name) in [(wire, "wire"), (text1, "t1"), (text2, "t2")] {
        hub.handle_input(now, Input::Opened(conn)).unwrap();
        hub.handle_input(now, Input::Received(conn, hello(name)))
            .unwrap();
    }
    for conn in [wire, text1, text2] {
        drain(&mut hub, conn);
    }
    let before = encoded.load(Relaxed);
    hub.handle_input(now, Input::Received(wire, chat("hi")))
        .unwrap();
    assert_eq!(
        encoded.load(Relaxed) - before,
        1,
        "one encoding for two members"
    );
    assert_eq!(drain(&mut hub, text1), b"<wire> hi\n");
    assert_eq!(drain(&mut hub, text2), b"<wire> hi\n");
    assert_eq!(drain(&mut hub, wire), b"", "no echo");
    hub.handle_input(now, Input::Received(text1, chat("yo")))
        .unwrap();
    let frame = chat_proto::encode_to_vec(&ServerMsg::Chat {
        seq: 2,
        time: 0, // no clock was set
        from: "t1".into(),
        text: "yo".into(),
        kind: ChatKind::Plain,
    })
    .unwrap();
    assert_eq!(drain(&mut hub, wire), frame);
    assert_eq!(drain(&mut hub, text2), b"<t1> yo\n");
    hub.handle_input(now, Input::Received(text2, leave()))
        .unwrap();
    assert_eq!(drain(&mut hub, text2), b"to 3: bye (left)\n");
    assert_eq!(hub.fanout_of(text2).due(text2, |_| true), Due::Done);
    assert_eq!(drain(&mut hub, text1), b"-t2\n");
    hub.detach(text2);
}

#[test]
fn a_raw_reply_is_ordered_after_what_the_room_sent_before_it() {
    let now = Instant::now();
    let mut hub = Hub::new(Room::new(config(), EPOCH).unwrap(), 1 << 20);
    let lines = hub.add_codec(Box::new(Lines::default()));
    let (a, b) = (ConnId(1), ConnId(2));
    hub.attach(b, lines);
    for (conn, name) in [(a, "a"), (b, "b")] {
        hub.handle_input(now, Input::Opened(conn)).unwrap();
        hub.handle_input(now, Input::Received(conn, hello(name)))
            .unwrap();
    }
    drain(&mut hub, b);
    hub.handle_input(now, Input::Received(a, chat("first")))
        .unwrap();
    hub.send_raw(now, b, b"PONG\n").unwrap();
    assert_eq!(drain(&mut hub, b), b"<a> first\nPONG\n");
}

#[test]
fn raw_replies_are_paid_for_from_the_rate_limit_and_a_flood_of_them_closes() {
    let now = Instant::now();
    let config = Config {
        rate_per_sec: 1,
        burst: 3,
        flood_strikes: 2,
        ..config()
    };
    let mut hub = Hub::new(Room::new(config, EPOCH).unwrap(), 1 << 20);
    let lines = hub.add_codec(Box::new(Lines::default()));
    let pinger = ConnId(1);
    hub.attach(pinger, lines);
    hub.handle_input(now, Input::Opened(pinger)).unwrap();
    for _ in 0..3 {
        hub.send_raw(now, pinger, b"PONG\n").unwrap();
    }
    assert_eq!(drain(&mut hub, pinger), b"PONG\nPONG\nPONG\n");
    // Past the burst: the room's answer instead of the adapter's, then closed for flooding.
    for _ in 0..3 {
        hub.send_raw(now, pinger, b"PONG\n").unwrap();
    }
    assert_eq!(
        String::from_utf8(drain(&mut hub, pinger)).unwrap(),
        "to 1: Error(RateLimited)\nto 1: Error(RateLimited)\nto 1: bye (flooding)\n"
    );
    assert_eq!(hub.fanout_of(pinger).due(pinger, |_| true), Due::Done);
}

#[test]
fn bytes_go_through_the_codec_of_their_connection_in_order() {
    let now = Instant::now();
    let mut hub = Hub::new(Room::new(config(), EPOCH).unwrap(), 1 << 20);
    let lines = hub.add_codec(Box::new(Lines::default()));
    let (a, b) = (ConnId(1), ConnId(2));
    hub.attach(b, lines);
    hub.handle_input(now, Input::Opened(a)).unwrap();
    hub.handle_input(now, Input::Opened(b)).unwrap();
    // The wire protocol's bytes, split mid-frame.
    let mut bytes = chat_proto::encode_to_vec(&hello("a")).unwrap();
    bytes.extend(chat_proto::encode_to_vec(&chat("one")).unwrap());
    let (first, rest) = bytes.split_at(3);
    hub.handle_bytes(now, a, first).unwrap();
    assert_eq!(hub.room().name_of(a), None, "half a hello is nothing yet");
    hub.handle_bytes(now, b, b"bp").unwrap();
    hub.handle_bytes(now, a, rest).unwrap();
    assert_eq!(hub.room().name_of(a), Some("a"));
    drain(&mut hub, a);
    // The adapter's answer comes after the welcome and before the chat that followed it.
    let got = String::from_utf8(drain(&mut hub, b)).unwrap();
    assert!(got.starts_with("to 2: welcome b\nPONG\n"), "{got}");
    assert!(got.ends_with("<a> one\n"), "{got}");
    hub.handle_bytes(now, b, b"cq").unwrap();
    assert_eq!(drain(&mut hub, b), b"to 2: bye (left)\n");
    let wire = drain(&mut hub, a);
    assert!(!wire.is_empty(), "a got b's chat and leave");
    // Garbage on the wire closes that connection alone, for a protocol error.
    hub.handle_bytes(now, a, &[0xff; 8]).unwrap();
    assert_eq!(hub.room().name_of(a), None);
}

#[test]
fn bytes_from_a_connection_the_room_closed_are_not_decoded() {
    let now = Instant::now();
    let mut hub = Hub::new(Room::new(config(), EPOCH).unwrap(), 1 << 20);
    let decoded = Arc::new(AtomicUsize::new(0));
    let lines = hub.add_codec(Box::new(Lines {
        decoded: decoded.clone(),
        ..Lines::default()
    }));
    let conn = ConnId(1);
    hub.attach(conn, lines);
    hub.handle_input(now, Input::Opened(conn)).unwrap();
    hub.handle_bytes(now, conn, b"q").unwrap();
    assert_eq!(decoded.load(Relaxed), 1);
    // Closed, its writer not yet done: what it still sends means nothing, and a codec that
    // made state on a connection's first bytes would keep it after `forget`.
    hub.handle_bytes(now, conn, b"ap").unwrap();
    hub.detach(conn);
    hub.handle_bytes(now, conn, b"ap").unwrap();
    assert_eq!(decoded.load(Relaxed), 1);
    assert_eq!(hub.room().name_of(conn), None);
}

/// Every frame in `bytes`, read as v2 messages.
fn v2_frames(bytes: &[u8]) -> Vec<v2::ServerMsg> {
    let mut decoder = chat_proto::FrameDecoder::new(chat_proto::MAX_SERVER_FRAME);
    let mut input = bytes;
    let mut out = Vec::new();
    while let Some(msg) = decoder.decode(&mut input).unwrap() {
        out.push(msg);
    }
    assert!(input.is_empty() && decoder.buffered() == 0);
    out
}

fn v3_frames(bytes: &[u8]) -> Vec<ServerMsg> {
    let mut decoder = chat_proto::FrameDecoder::new(chat_proto::MAX_SERVER_FRAME);
    let mut input = bytes;
    std::iter::from_fn(|| decoder.decode(&mut input).unwrap()).collect()
}

#[test]
fn a_v2_member_and_a_v3_member_share_a_room_each_served_in_its_own_version() {
    let now = Instant::now();
    let mut hub = Hub::new(Room::new(config(), EPOCH).unwrap(), 1 << 20);
    hub.set_clock(now, T0);
    let (old, new) = (ConnId(1), ConnId(2));
    for conn in [old, new] {
        hub.handle_input(now, Input::Opened(conn)).unwrap();
    }
    // A v1 hello (refused), a v2 hello, and a chat cut in two by the reads: the rest of the
    // chat arrives after the connection moved to the v2 codec, and is read whole.
    let v2_hello = |version| v2::ClientMsg::Hello {
        magic: MAGIC,
        version,
        name: "old".into(),
    };
    let mut bytes = Vec::new();
    for msg in [
        v2_hello(1),
        v2_hello(2),
        v2::ClientMsg::Chat {
            text: "/me waves".into(),
        },
    ] {
        chat_proto::encode(&msg, &mut bytes).unwrap();
    }
    let (first, rest) = bytes.split_at(bytes.len() - 3);
    hub.handle_bytes(now, old, first).unwrap();
    hub.handle_bytes(now, new, &chat_proto::encode_to_vec(&hello("new")).unwrap())
        .unwrap();
    hub.handle_bytes(now, old, rest).unwrap();
    let said = |seq, from: &str, text: &str, kind| ServerMsg::Chat {
        seq,
        time: T0,
        from: from.into(),
        text: text.into(),
        kind,
    };
    let got = v3_frames(&drain(&mut hub, new));
    assert!(
        matches!(&got[0], ServerMsg::Welcome { epoch: EPOCH, .. }),
        "{got:?}"
    );
    assert_eq!(got[1..], [said(1, "old", "waves", ChatKind::Action)]);
    // The v3 member acts, renames and goes away.
    for msg in [
        chat_kind("waves back", ChatKind::Action),
        chat_kind("fyi", ChatKind::Notice),
        ClientMsg::Nick {
            name: "newer".into(),
        },
        ClientMsg::Away {
            message: Some("lunch".into()),
        },
    ] {
        hub.handle_input(now, Input::Received(new, msg)).unwrap();
    }
    let renamed = ServerMsg::Renamed {
        from: "new".into(),
        to: "newer".into(),
        time: T0,
    };
    assert_eq!(v3_frames(&drain(&mut hub, new)), [renamed]);
    let v2_chat = |seq, text: &str| v2::ServerMsg::Chat {
        seq,
        from: "new".into(),
        text: text.into(),
    };
    let limits = hub.room().config().limits();
    assert_eq!(
        v2_frames(&drain(&mut hub, old)),
        [
            v2::ServerMsg::Refused(v2::Refusal::UnsupportedVersion {
                supported: PROTOCOL_VERSION
            }),
            v2::ServerMsg::Welcome {
                name: "old".into(),
                online: 1,
                members: vec!["old".into()],
                limits,
                seq: 0,
            },
            v2::ServerMsg::Joined { name: "new".into() },
            v2_chat(2, "/me waves back"),
            v2_chat(3, "fyi"),
            v2::ServerMsg::Left {
                name: "new".into(),
                reason: v2::CloseReason::Left
            },
            v2::ServerMsg::Joined {
                name: "newer".into()
            },
        ]
    );
    // The v2 member leaves as v2 does, and is told in v2.
    hub.handle_bytes(
        now,
        old,
        &chat_proto::encode_to_vec(&v2::ClientMsg::Leave).unwrap(),
    )
    .unwrap();
    assert_eq!(
        v2_frames(&drain(&mut hub, old)),
        [v2::ServerMsg::Closing(v2::CloseReason::Left)]
    );
    hub.detach(old);
}

#[test]
fn a_member_stays_in_its_lane_whatever_version_a_later_hello_says() {
    let now = Instant::now();
    let mut hub = Hub::new(Room::new(config(), EPOCH).unwrap(), 1 << 20);
    let conn = ConnId(1);
    hub.handle_input(now, Input::Opened(conn)).unwrap();
    hub.handle_input(now, Input::Received(conn, hello("new")))
        .unwrap();
    drain(&mut hub, conn);
    hub.handle_input(now, Input::Received(conn, hello_v(v2::VERSION, "x")))
        .unwrap();
    // Still on the v3 lane, following its broadcasts.
    let other = ConnId(2);
    hub.handle_input(now, Input::Opened(other)).unwrap();
    hub.handle_input(now, Input::Received(other, hello("other")))
        .unwrap();
    hub.handle_input(
        now,
        Input::Received(other, chat_kind("waves", ChatKind::Action)),
    )
    .unwrap();
    let got = v3_frames(&drain(&mut hub, conn));
    assert_eq!(got[0], ServerMsg::Refused(Refusal::AlreadyJoined));
    assert!(matches!(got[1], ServerMsg::Joined { .. }), "{got:?}");
    assert!(
        matches!(&got[2], ServerMsg::Chat { kind: ChatKind::Action, text, .. } if text == "waves"),
        "{got:?}"
    );
}

/// A codec's view: a connection the codec moves there before its hello gets the view's bytes
/// for broadcasts, and the codec's own for what is sent to it alone; each broadcast is
/// encoded once per lane in use. Echo and part go through the hub as inbound items.
#[test]
fn a_view_gets_its_own_broadcast_bytes_and_its_codec_still_reads_and_answers() {
    let now = Instant::now();
    let mut hub = Hub::new(Room::new(config(), EPOCH).unwrap(), 1 << 20);
    let (main_count, view_count) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let lines = hub.add_codec(Box::new(Lines {
        broadcasts: main_count.clone(),
        ..Lines::default()
    }));
    let tagged = hub.add_view(
        lines,
        Box::new(Lines {
            broadcasts: view_count.clone(),
            mark: "@t ",
            ..Lines::default()
        }),
    );
    assert_ne!(tagged, lines);
    let (plain, fancy) = (ConnId(1), ConnId(2));
    for conn in [plain, fancy] {
        hub.attach(conn, lines);
        hub.handle_input(now, Input::Opened(conn)).unwrap();
    }
    hub.handle_bytes(now, plain, b"a").unwrap();
    hub.handle_bytes(now, fancy, b"1eb").unwrap();
    assert_eq!(drain(&mut hub, fancy), b"to 2: welcome b\n");
    drain(&mut hub, plain);
    let before = (main_count.load(Relaxed), view_count.load(Relaxed));
    hub.handle_bytes(now, fancy, b"c").unwrap();
    assert_eq!(
        (main_count.load(Relaxed), view_count.load(Relaxed)),
        (before.0 + 1, before.1 + 1),
        "once per lane"
    );
    assert_eq!(drain(&mut hub, plain), b"<b> c\n");
    assert_eq!(
        drain(&mut hub, fancy),
        b"@t <b> c\n",
        "echoed, in its view's bytes"
    );
    hub.handle_bytes(now, plain, b"c").unwrap();
    assert_eq!(drain(&mut hub, plain), b"", "no echo unless asked");
    assert_eq!(drain(&mut hub, fancy), b"@t <a> c\n");
    // Moves are only for connections that do not follow yet.
    hub.handle_bytes(now, plain, b"1c").unwrap();
    assert_eq!(drain(&mut hub, fancy), b"@t <a> c\n");
    // A part: the others see the leave, and the member gets no more broadcasts.
    hub.handle_bytes(now, fancy, b"x").unwrap();
    assert_eq!(drain(&mut hub, plain), b"-b\n");
    hub.handle_bytes(now, plain, b"c").unwrap();
    assert_eq!(drain(&mut hub, fancy), b"");
    assert!(hub.room().is_open(fancy));
    hub.detach(fancy);
}

#[test]
fn the_hub_counts_members_by_codec_chats_broadcast_and_tells_of_each_refused_hello() {
    let now = Instant::now();
    let mut hub = Hub::new(Room::new(config(), EPOCH).unwrap(), 1 << 20);
    let lines = hub.add_codec(Box::new(Lines::default()));
    let (wire, text, late, waiting) = (ConnId(1), ConnId(2), ConnId(3), ConnId(4));
    hub.attach(text, lines);
    hub.attach(late, lines);
    for conn in [wire, text, late, waiting] {
        hub.handle_input(now, Input::Opened(conn)).unwrap();
    }
    hub.handle_input(now, Input::Received(wire, hello("w")))
        .unwrap();
    hub.handle_bytes(now, text, b"a").unwrap();
    hub.handle_bytes(now, late, b"a").unwrap(); // "a" is taken
    hub.handle_input(now, Input::Received(wire, chat("hi")))
        .unwrap();
    hub.handle_bytes(now, text, b"c").unwrap();
    let refused: Vec<_> = std::iter::from_fn(|| hub.poll_event())
        .filter(|e| matches!(e, HubEvent::Refused { .. }))
        .collect();
    let taken = HubEvent::Refused {
        conn: late,
        refusal: Refusal::NameTaken,
    };
    assert_eq!(refused, [taken]);
    assert_eq!(hub.chats(), 2);
    // The connection still waiting for its hello is no member.
    assert_eq!(hub.members_of(CodecId::WIRE), 1);
    assert_eq!(hub.members_of(lines), 1);
    assert_eq!(hub.members_of(CodecId::WIRE_V2), 0);
    hub.handle_bytes(now, text, b"q").unwrap();
    hub.handle_input(now, Input::Closed(text)).unwrap();
    assert_eq!(hub.members_of(lines), 0);
}
