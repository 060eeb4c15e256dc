mod accounts;
mod hub;
mod model;
mod moderation;
mod nodes;
mod pause;
mod redis;
mod restart;
mod v3;

use std::time::{Duration, Instant};

use chat_proto::{
    ChatKind, ClientMsg, CloseReason, ErrorKind, MAGIC, Member, NameRule, PROTOCOL_VERSION,
    Refusal, ServerMsg,
};

use super::*;

/// Whether `out` is the broadcast of a chat and nothing else: a chat that passed.
fn chat_passed(out: &[Output]) -> bool {
    matches!(
        out,
        [Output::Broadcast {
            msg: ServerMsg::Chat { .. },
            ..
        }]
    )
}

/// The welcome `out` starts with, as `(name, online, members, limits)`; panics on anything else.
fn welcome(out: &[Output]) -> (&str, u32, &[Member], &chat_proto::Limits) {
    match out.first() {
        Some(Output::Send {
            msg:
                ServerMsg::Welcome {
                    name,
                    online,
                    members,
                    limits,
                    ..
                },
            ..
        }) => (name, *online, members, limits),
        _ => panic!("not a welcome first: {out:?}"),
    }
}

/// A room with a fake clock that collects outputs.
struct Harness {
    room: Room,
    now: Instant,
    notices: Vec<Notice>,
}

fn config() -> Config {
    Config {
        max_clients: 4,
        max_handshakes: 8,
        rate_per_sec: 100,
        burst: 100,
        flood_strikes: 2,
        handshake_timeout: Duration::from_secs(5),
        ping_interval: Duration::from_secs(10),
        idle_timeout: Duration::from_secs(20),
        ..Config::default()
    }
}

/// The room's epoch in the tests, and its wall clock when a harness starts.
const EPOCH: u64 = 0xe90c;
const T0: u64 = 1_700_000_000_000;

fn hello(name: &str) -> ClientMsg {
    hello_v(PROTOCOL_VERSION, name)
}

fn hello_v(version: u16, name: &str) -> ClientMsg {
    ClientMsg::Hello {
        magic: MAGIC,
        version,
        name: name.into(),
        password: None,
        ident: None,
    }
}

fn chat(text: &str) -> ClientMsg {
    chat_kind(text, ChatKind::Plain)
}

fn chat_kind(text: &str, kind: ChatKind) -> ClientMsg {
    ClientMsg::Chat {
        text: text.into(),
        kind,
    }
}

fn leave() -> ClientMsg {
    ClientMsg::Leave { message: None }
}

/// A member as lists show one that is not away and gave no ident.
fn member(name: &str) -> Member {
    Member {
        name: name.into(),
        away: None,
        ident: None,
    }
}

fn send(to: u64, msg: ServerMsg) -> Output {
    Output::Send {
        to: ConnId(to),
        msg,
    }
}

fn close(conn: u64, reason: CloseReason) -> Output {
    Output::Close {
        conn: ConnId(conn),
        reason,
    }
}

fn broadcast(except: Option<u64>, msg: ServerMsg) -> Output {
    Output::Broadcast {
        except: except.map(ConnId),
        msg,
    }
}

impl Harness {
    fn new() -> Self {
        Self::with(config())
    }

    fn with(config: Config) -> Self {
        let now = Instant::now();
        let mut room = Room::new(config, EPOCH).unwrap();
        room.set_clock(now, T0);
        Self {
            room,
            now,
            notices: Vec::new(),
        }
    }

    /// The wall-clock time now, by the room's clock.
    fn time(&self) -> u64 {
        self.room.unix_ms(self.now)
    }

    fn joined(&self, name: &str) -> ServerMsg {
        ServerMsg::Joined {
            name: name.into(),
            time: self.time(),
            ident: None,
        }
    }

    fn left(&self, name: &str, reason: CloseReason) -> ServerMsg {
        ServerMsg::Left {
            name: name.into(),
            reason,
            message: None,
            time: self.time(),
        }
    }

    fn said(&self, seq: u64, from: &str, text: &str) -> ServerMsg {
        ServerMsg::Chat {
            seq,
            time: self.time(),
            from: from.into(),
            text: text.into(),
            kind: ChatKind::Plain,
        }
    }

    fn input(&mut self, input: Input) -> Vec<Output> {
        self.room.handle_input(self.now, input).unwrap();
        // Notices are for the driver's log; tests of them read `self.notices`.
        std::iter::from_fn(|| self.room.poll_output())
            .filter(|o| match o {
                Output::Notice(n) => {
                    self.notices.push(n.clone());
                    false
                }
                _ => true,
            })
            .collect()
    }

    fn open(&mut self, id: u64) -> Vec<Output> {
        self.input(Input::Opened(ConnId(id)))
    }

    fn recv(&mut self, id: u64, msg: ClientMsg) -> Vec<Output> {
        self.input(Input::Received(ConnId(id), msg))
    }

    /// Opens `id` and joins it as `name`, returning nothing: the join is checked elsewhere.
    fn join(&mut self, id: u64, name: &str) {
        assert!(self.open(id).is_empty());
        let out = self.recv(id, hello(name));
        welcome(&out);
    }

    fn advance(&mut self, by: Duration) -> Vec<Output> {
        self.now += by;
        self.input(Input::Tick)
    }

    fn welcome(&self, name: &str, members: &[&str]) -> ServerMsg {
        ServerMsg::Welcome {
            name: name.into(),
            online: members.len() as u32,
            members: members.iter().map(|s| member(s)).collect(),
            limits: self.room.config().limits(),
            seq: self.room.seq(),
            epoch: EPOCH,
        }
    }
}

#[test]
fn a_free_name_joins_with_welcome_and_notice() {
    let mut h = Harness::new();
    h.join(1, "alice");
    assert!(h.open(2).is_empty());
    let out = h.recv(2, hello("bob"));
    assert_eq!(
        out,
        vec![
            send(2, h.welcome("bob", &["alice", "bob"])),
            Output::Subscribe { conn: ConnId(2) },
            broadcast(Some(2), h.joined("bob")),
        ]
    );
    assert_eq!(
        h.room.recipients(Some(ConnId(2))).collect::<Vec<_>>(),
        vec![ConnId(1)]
    );
    assert_eq!(h.room.member_count(), 2);
}

#[test]
fn look_alike_names_collide() {
    let mut h = Harness::new();
    h.join(1, "Alice");
    h.open(2);
    for name in [
        "alice",
        "ALICE",
        "ａｌｉｃｅ",
        "ALİCE".replace('İ', "I").as_str(),
    ] {
        assert_eq!(
            h.recv(2, hello(name)),
            vec![send(2, ServerMsg::Refused(Refusal::NameTaken))]
        );
    }
    h.join(3, "Zoë");
    for name in ["zoe\u{308}", "ZOË", "ｚｏë"] {
        assert_eq!(
            h.recv(2, hello(name)),
            vec![send(2, ServerMsg::Refused(Refusal::NameTaken))]
        );
    }
    h.join(4, "straße");
    assert_eq!(
        h.recv(2, hello("STRASSE")),
        vec![send(2, ServerMsg::Refused(Refusal::NameTaken))]
    );
}

#[test]
fn invalid_names_are_refused_with_the_rule_and_the_connection_may_retry() {
    let mut h = Harness::new();
    h.open(1);
    let cases = [
        ("", NameRule::Empty),
        ("   ", NameRule::Whitespace),
        ("a b", NameRule::Whitespace),
        (&"x".repeat(33), NameRule::TooLong { max_chars: 32 }),
        ("evil\u{1b}[2J", NameRule::Control),
        ("bob\n", NameRule::Control),
        ("al\u{200b}ice", NameRule::Invisible),
        ("\u{202e}ecila", NameRule::Invisible),
        ("a\u{2066}b", NameRule::Invisible),
        ("\u{feff}bob", NameRule::Invisible),
    ];
    for (name, rule) in cases {
        assert_eq!(
            h.recv(1, hello(name)),
            vec![send(1, ServerMsg::Refused(Refusal::NameInvalid(rule)))],
            "{name:?}"
        );
    }
    // 32 characters of 4 bytes each is still within a 32-character limit.
    let out = h.recv(1, hello(&"😀".repeat(32)));
    assert!(matches!(
        out[0],
        Output::Send {
            msg: ServerMsg::Welcome { .. },
            ..
        }
    ));
}

#[test]
fn chat_goes_to_everyone_but_the_sender_stamped_and_numbered() {
    let mut h = Harness::new();
    h.join(1, "alice");
    h.join(2, "bob");
    assert_eq!(
        h.recv(1, chat("hi")),
        vec![broadcast(Some(1), h.said(1, "alice", "hi"))]
    );
    assert_eq!(
        h.recv(2, chat("hey")),
        vec![broadcast(Some(2), h.said(2, "bob", "hey"))]
    );
    // A newcomer learns the current sequence number.
    h.open(3);
    let out = h.recv(3, hello("carol"));
    assert_eq!(
        out[0],
        send(3, h.welcome("carol", &["alice", "bob", "carol"]))
    );
    assert!(matches!(
        &out[0],
        Output::Send {
            msg: ServerMsg::Welcome { seq: 2, .. },
            ..
        }
    ));
}

#[test]
fn bad_text_gets_an_error_and_nothing_is_broadcast() {
    let mut h = Harness::new();
    h.join(1, "alice");
    h.join(2, "bob");
    let long = "x".repeat(1025);
    let cases = [
        (long.as_str(), ErrorKind::TextTooLong { max_bytes: 1024 }),
        ("", ErrorKind::TextEmpty),
        ("  ", ErrorKind::TextEmpty),
        ("\u{1b}[31mred", ErrorKind::TextInvalid),
    ];
    for (text, error) in cases {
        h.now += Duration::from_secs(1); // stay inside the rate
        assert_eq!(
            h.recv(1, chat(text)),
            vec![send(1, ServerMsg::Error(error))],
            "{text:?}"
        );
    }
    assert_eq!(h.room.seq(), 0);
    h.now += Duration::from_secs(1);
    let exact = "x".repeat(1024);
    assert!(chat_passed(&h.recv(1, chat(&exact))));
}

#[test]
fn leave_frees_the_name_at_once_and_tells_the_others() {
    let mut h = Harness::new();
    h.join(1, "alice");
    h.join(2, "bob");
    assert_eq!(
        h.recv(1, leave()),
        vec![
            close(1, CloseReason::Left),
            broadcast(None, h.left("alice", CloseReason::Left)),
        ]
    );
    assert!(!h.room.is_open(ConnId(1)));
    h.join(3, "ALICE");
    assert_eq!(
        h.room.member_names(),
        vec!["ALICE".into(), "bob".into()] as Vec<std::sync::Arc<str>>
    );
}

#[test]
fn every_kind_of_close_removes_the_member_with_its_reason() {
    let cases = [
        (Input::Closed(ConnId(1)), CloseReason::Disconnected),
        (Input::Malformed(ConnId(1)), CloseReason::ProtocolError),
        (Input::Stalled(ConnId(1)), CloseReason::TooSlow),
    ];
    for (input, reason) in cases {
        let mut h = Harness::new();
        h.join(1, "alice");
        h.join(2, "bob");
        assert_eq!(
            h.input(input),
            vec![close(1, reason), broadcast(None, h.left("alice", reason)),]
        );
        assert_eq!(h.room.member_count(), 1);
        // Late inputs for a closed connection are ignored.
        assert!(h.recv(1, chat("ghost")).is_empty());
    }
}

#[test]
fn shutdown_closes_everyone() {
    let mut h = Harness::new();
    h.join(1, "alice");
    h.open(2);
    let out = h.input(Input::Shutdown);
    assert_eq!(out[0], close(1, CloseReason::ServerShutdown));
    assert!(out.contains(&close(2, CloseReason::ServerShutdown)));
    assert_eq!(h.room.conn_count(), 0);
    // Each is told by its own closing frame; nobody gets a leave notice for everyone else.
    assert!(
        !out.iter().any(|o| matches!(o, Output::Broadcast { .. })),
        "{out:?}"
    );
    // Deadlines of closed connections wake the driver at most once more, and do nothing.
    if let Some(at) = h.room.poll_timeout() {
        h.now = at;
        assert_eq!(h.input(Input::Tick), vec![]);
    }
    assert_eq!(h.room.poll_timeout(), None);
}

#[test]
fn anything_but_hello_before_joining_is_a_protocol_error() {
    for msg in [
        chat("hi"),
        ClientMsg::Who,
        ClientMsg::Ping { nonce: 1 },
        ClientMsg::Pong { nonce: 1 },
        ClientMsg::Nick { name: "bob".into() },
        ClientMsg::Away { message: None },
    ] {
        let mut h = Harness::new();
        h.open(1);
        assert_eq!(h.recv(1, msg), vec![close(1, CloseReason::ProtocolError)]);
    }
    let mut h = Harness::new();
    h.open(1);
    let bad_magic = ClientMsg::Hello {
        magic: 0,
        version: PROTOCOL_VERSION,
        name: "a".into(),
        password: None,
        ident: None,
    };
    assert_eq!(
        h.recv(1, bad_magic),
        vec![close(1, CloseReason::ProtocolError)]
    );
}

#[test]
fn unsupported_version_is_refused() {
    let mut h = Harness::new();
    h.open(1);
    let msg = hello_v(99, "a");
    assert_eq!(
        h.recv(1, msg),
        vec![send(
            1,
            ServerMsg::Refused(Refusal::UnsupportedVersion {
                supported: PROTOCOL_VERSION
            })
        )]
    );
}

#[test]
fn handshake_deadline_counts_from_connect() {
    let mut h = Harness::new();
    h.open(1);
    assert_eq!(h.room.poll_timeout(), Some(h.now + Duration::from_secs(5)));
    // A refused hello (activity) does not move the deadline.
    h.advance(Duration::from_secs(3));
    h.recv(1, hello(""));
    assert!(h.advance(Duration::from_millis(1999)).is_empty());
    assert_eq!(
        h.advance(Duration::from_millis(1)),
        vec![close(1, CloseReason::HandshakeTimeout)]
    );
    assert_eq!(h.room.poll_timeout(), None);
}

#[test]
fn a_silent_member_is_pinged_then_closed() {
    let mut h = Harness::new();
    h.join(1, "alice");
    h.join(2, "bob");
    // Bob talks at 9 s, so only alice is due for a ping at 10 s.
    h.now += Duration::from_secs(9);
    h.recv(2, chat("still here"));
    assert_eq!(
        h.advance(Duration::from_secs(1)),
        vec![send(1, ServerMsg::Ping { nonce: 1 })]
    );
    // Alice never answers: closed 20 s after she was last heard.
    assert_eq!(
        h.advance(Duration::from_secs(9)),
        vec![send(2, ServerMsg::Ping { nonce: 2 })]
    );
    h.recv(2, ClientMsg::Pong { nonce: 2 });
    assert_eq!(
        h.advance(Duration::from_secs(1)),
        vec![
            close(1, CloseReason::IdleTimeout),
            broadcast(None, h.left("alice", CloseReason::IdleTimeout)),
        ]
    );
    assert!(h.room.is_open(ConnId(2)));
}

#[test]
fn the_loop_never_spins_on_a_past_deadline() {
    let mut h = Harness::new();
    h.join(1, "alice");
    for _ in 0..100 {
        let before = h.room.poll_timeout().unwrap();
        h.now = before; // wake exactly at the deadline
        h.input(Input::Tick);
        match h.room.poll_timeout() {
            Some(after) => assert!(after > before),
            None => break,
        }
        h.recv(1, ClientMsg::Pong { nonce: 0 });
    }
}

fn rate_limited() -> Harness {
    let mut h = Harness::with(Config {
        rate_per_sec: 2,
        burst: 3,
        ..config()
    });
    h.join(1, "alice");
    h.join(2, "bob");
    h.now += Duration::from_secs(1); // refill what the hellos took
    h
}

#[test]
fn rate_limit_refuses_then_closes_for_flooding() {
    let mut h = rate_limited();
    for _ in 0..3 {
        assert!(chat_passed(&h.recv(1, chat("x")))); // the burst passes
    }
    assert_eq!(
        h.recv(1, chat("x")),
        vec![send(1, ServerMsg::Error(ErrorKind::RateLimited))]
    );
    assert_eq!(
        h.recv(1, chat("x")),
        vec![send(1, ServerMsg::Error(ErrorKind::RateLimited))]
    );
    assert_eq!(
        h.recv(1, chat("x")),
        vec![
            close(1, CloseReason::Flood),
            broadcast(None, h.left("alice", CloseReason::Flood)),
        ]
    );
}

#[test]
fn a_refilled_bucket_forgives_strikes() {
    let mut h = rate_limited();
    for _ in 0..3 {
        h.recv(1, chat("x"));
    }
    for _ in 0..2 {
        assert_eq!(
            h.recv(1, chat("x")),
            vec![send(1, ServerMsg::Error(ErrorKind::RateLimited))]
        );
    }
    h.now += Duration::from_secs(2); // 2/s refills the burst of 3
    for _ in 0..3 {
        assert!(chat_passed(&h.recv(1, chat("x"))));
    }
    assert_eq!(
        h.recv(1, chat("x")),
        vec![send(1, ServerMsg::Error(ErrorKind::RateLimited))]
    );
    assert!(h.room.is_open(ConnId(1)));
}

#[test]
fn server_full_refuses_then_closes() {
    let mut h = Harness::new();
    for (id, name) in [(1, "a"), (2, "b"), (3, "c"), (4, "d")] {
        h.join(id, name);
    }
    h.open(5);
    assert_eq!(
        h.recv(5, hello("e")),
        vec![
            send(5, ServerMsg::Refused(Refusal::ServerFull)),
            close(5, CloseReason::ServerFull)
        ]
    );
}

#[test]
fn too_many_handshakes_are_refused_at_open() {
    let mut h = Harness::new();
    for id in 0..8 {
        assert!(h.open(id).is_empty());
    }
    assert_eq!(
        h.open(8),
        vec![
            send(8, ServerMsg::Refused(Refusal::ServerFull)),
            close(8, CloseReason::ServerFull)
        ]
    );
}

#[test]
fn who_lists_members_and_ping_is_answered() {
    let mut h = Harness::new();
    h.join(1, "bob");
    h.join(2, "alice");
    assert_eq!(
        h.recv(1, ClientMsg::Who),
        vec![send(
            1,
            ServerMsg::Members {
                members: vec![member("alice"), member("bob")]
            }
        )]
    );
    assert_eq!(
        h.recv(1, ClientMsg::Ping { nonce: 9 }),
        vec![send(1, ServerMsg::Pong { nonce: 9 })]
    );
}

#[test]
fn a_second_hello_after_joining_is_refused() {
    let mut h = Harness::new();
    h.join(1, "alice");
    assert_eq!(
        h.recv(1, hello("bob")),
        vec![send(1, ServerMsg::Refused(Refusal::AlreadyJoined))]
    );
    assert_eq!(h.room.name_of(ConnId(1)), Some("alice"));
}

#[test]
fn opening_an_open_connection_is_a_usage_error() {
    let mut h = Harness::new();
    h.open(1);
    assert_eq!(
        h.room.handle_input(h.now, Input::Opened(ConnId(1))),
        Err(UsageError::AlreadyOpen(ConnId(1)))
    );
}

#[test]
fn config_validation_names_the_bad_limit() {
    assert_eq!(Config::default().validate(), Ok(()));
    let bad = Config {
        rate_per_sec: 0,
        ..Config::default()
    };
    assert_eq!(
        bad.validate(),
        Err(ConfigError("rate per second must be at least 1".into()))
    );
    assert_eq!(
        Room::new(bad, EPOCH).unwrap_err().to_string(),
        "rate per second must be at least 1"
    );
    let bad = Config {
        max_text_bytes: 4096,
        max_frame_bytes: 4096,
        ..Config::default()
    };
    assert_eq!(
        bad.validate().unwrap_err().to_string(),
        "max frame bytes (4096) must be at least 4100 to carry a chat of max text bytes (4096)"
    );
    // The chat frame's arithmetic, exactly: tag, a 2-byte varint length, the text, the kind.
    let fits = Config {
        max_text_bytes: 4096,
        max_frame_bytes: 4100,
        ..Config::default()
    };
    assert_eq!(fits.validate(), Ok(()));
    let bad = Config {
        max_away_bytes: 2047,
        ..Config::default()
    };
    assert_eq!(
        bad.validate().unwrap_err().to_string(),
        "max frame bytes (2048) must be at least 2051 to carry an away of max away bytes (2047)"
    );
    let bad = Config {
        max_clients: 1_000_000,
        ..Config::default()
    };
    assert!(bad.validate().unwrap_err().0.contains("max clients"));
    // Every member's away message is in the member list.
    let bad = Config {
        max_away_bytes: 1024,
        ..Config::default()
    };
    assert!(
        bad.validate()
            .unwrap_err()
            .0
            .contains("max away bytes (1024)")
    );
}

#[test]
fn a_big_room_welcomes_with_the_count_and_who_lists_everyone() {
    let mut h = Harness::with(Config {
        welcome_list_max: 2,
        ..config()
    });
    h.join(1, "a");
    h.join(2, "b");
    h.open(3);
    let out = h.recv(3, hello("c"));
    assert_eq!(
        out[0],
        send(
            3,
            ServerMsg::Welcome {
                name: "c".into(),
                online: 3,
                members: vec![],
                limits: h.room.config().limits(),
                seq: 0,
                epoch: EPOCH,
            }
        )
    );
    assert_eq!(
        h.recv(3, ClientMsg::Who),
        vec![send(
            3,
            ServerMsg::Members {
                members: vec![member("a"), member("b"), member("c")]
            }
        )]
    );
}

#[test]
fn unsolicited_pongs_are_paid_for_and_a_pong_flood_is_closed() {
    let mut h = rate_limited();
    // The answer to a ping is free.
    h.advance(Duration::from_secs(10));
    h.recv(1, ClientMsg::Pong { nonce: 1 });
    // Pongs nobody asked for cost a token each, like any request.
    for _ in 0..3 {
        assert_eq!(h.recv(1, ClientMsg::Pong { nonce: 0 }), vec![]);
    }
    assert_eq!(
        h.recv(1, ClientMsg::Pong { nonce: 0 }),
        vec![send(1, ServerMsg::Error(ErrorKind::RateLimited))]
    );
    assert_eq!(
        h.recv(1, ClientMsg::Pong { nonce: 0 }),
        vec![send(1, ServerMsg::Error(ErrorKind::RateLimited))]
    );
    let out = h.recv(1, ClientMsg::Pong { nonce: 0 });
    assert_eq!(out[0], close(1, CloseReason::Flood));
}

// Tests that pin literal values, each of which caught a deliberate bug the others missed.

#[test]
fn the_bucket_refills_at_exactly_the_configured_rate() {
    let mut h = Harness::with(Config {
        rate_per_sec: 10,
        burst: 5,
        flood_strikes: 100,
        ..config()
    });
    h.join(1, "alice"); // the hello took one token: 4 left
    for _ in 0..4 {
        assert!(chat_passed(&h.recv(1, chat("hi"))));
    }
    let limited = vec![send(1, ServerMsg::Error(ErrorKind::RateLimited))];
    assert_eq!(h.recv(1, chat("hi")), limited);
    // 10 per second: after 100 ms exactly one token, not two, not ten.
    h.now += Duration::from_millis(100);
    assert!(
        chat_passed(&h.recv(1, chat("one"))),
        "one token after 100 ms"
    );
    assert_eq!(h.recv(1, chat("two")), limited);
    h.now += Duration::from_millis(99);
    assert_eq!(h.recv(1, chat("early")), limited, "not yet a whole token");
}

#[test]
fn the_welcome_announces_each_limit_in_its_own_field() {
    let mut h = Harness::with(Config {
        max_name_chars: 11,
        max_text_bytes: 222,
        max_frame_bytes: 333,
        rate_per_sec: 7,
        burst: 9,
        idle_timeout: Duration::from_millis(20_500),
        ..config()
    });
    h.open(1);
    let out = h.recv(1, hello("alice"));
    let (_, _, _, limits) = welcome(&out);
    assert_eq!(
        *limits,
        chat_proto::Limits {
            max_name_chars: 11,
            max_text_bytes: 222,
            max_frame_bytes: 333,
            rate_per_sec: 7,
            burst: 9,
            idle_timeout_ms: 20_500,
        }
    );
}

#[test]
fn the_welcome_lists_members_up_to_exactly_the_cut_off() {
    let mut h = Harness::with(Config {
        welcome_list_max: 2,
        ..config()
    });
    h.join(1, "a");
    h.open(2);
    let out = h.recv(2, hello("b"));
    let (_, online, members, _) = welcome(&out);
    assert_eq!(
        (online, members.len()),
        (2, 2),
        "two members, cut-off two: listed"
    );
    h.open(3);
    let out = h.recv(3, hello("c"));
    let (_, online, members, _) = welcome(&out);
    assert_eq!(
        (online, members.len()),
        (3, 0),
        "three members: the count only"
    );
}

#[test]
fn a_name_is_registered_and_shown_in_composed_form() {
    let mut h = Harness::new();
    h.join(1, "bob");
    h.open(2);
    // "cafe" + COMBINING ACUTE ACCENT registers as "caf" + U+00E9.
    let out = h.recv(2, hello("cafe\u{301}"));
    assert_eq!(welcome(&out).0, "caf\u{e9}");
    assert_eq!(out[2], broadcast(Some(2), h.joined("caf\u{e9}")));
    assert_eq!(
        h.notices.last(),
        Some(&Notice::Joined {
            name: "caf\u{e9}".into(),
            conn: Some(ConnId(2))
        })
    );
}

#[test]
fn a_member_leaving_is_a_typed_notice_for_the_driver() {
    let mut h = Harness::new();
    h.join(1, "alice");
    h.recv(1, leave());
    assert_eq!(
        h.notices,
        vec![
            Notice::Joined {
                name: "alice".into(),
                conn: Some(ConnId(1))
            },
            Notice::Left {
                name: "alice".into(),
                reason: CloseReason::Left
            },
        ]
    );
}

// Issue 14: look-alike names across scripts, history and resume, per-address limits, quiet
// big rooms.

#[test]
fn look_alikes_across_scripts_are_refused_or_collide() {
    let mut h = Harness::with(Config {
        max_clients: 10,
        ..config()
    });
    h.join(1, "alice");
    h.open(2);
    let refused = |rule| vec![send(2, ServerMsg::Refused(Refusal::NameInvalid(rule)))];
    let taken = vec![send(2, ServerMsg::Refused(Refusal::NameTaken))];
    // A Cyrillic 'а' among Latin letters, a Greek omicron among Latin letters: mixed scripts.
    assert_eq!(
        h.recv(2, hello("\u{430}lice")),
        refused(NameRule::MixedScript)
    );
    assert_eq!(
        h.recv(2, hello("b\u{3bf}b")),
        refused(NameRule::MixedScript)
    );
    // A dotless 'ı', and "alice" spelled wholly in Cyrillic look-alikes: the same skeleton.
    assert_eq!(h.recv(2, hello("al\u{131}ce")), taken);
    assert_eq!(
        h.recv(2, hello("\u{430}\u{4cf}\u{456}\u{441}\u{435}")),
        taken
    );
    // Names in one script other than Latin, or Latin with Han, still join.
    for (id, name) in [(3, "Łukasz"), (4, "Дмитрий"), (5, "太郎"), (6, "Tarō太郎")] {
        h.open(id);
        let out = h.recv(id, hello(name));
        assert_eq!(welcome(&out).0, name);
    }
}

#[test]
fn a_newcomer_gets_the_last_n_chats_after_its_welcome() {
    let mut h = Harness::with(Config {
        history: 3,
        ..config()
    });
    h.join(1, "alice");
    for i in 1..=5 {
        h.recv(1, chat(&format!("m{i}")));
    }
    h.open(2);
    let out = h.recv(2, hello("bob"));
    let history = |seqs: &[u64]| ServerMsg::History {
        chats: seqs
            .iter()
            .map(|s| chat_proto::HistoryChat {
                seq: *s,
                time: T0,
                from: "alice".into(),
                text: format!("m{s}").into(),
                kind: ChatKind::Plain,
            })
            .collect(),
        missed: 0,
    };
    assert_eq!(out[1], send(2, history(&[3, 4, 5])));
    assert_eq!(out[2], Output::Subscribe { conn: ConnId(2) });
}

#[test]
fn a_client_that_resumes_gets_exactly_what_it_missed_or_the_count_it_cannot() {
    let mut h = Harness::with(Config {
        history: 3,
        ..config()
    });
    h.join(1, "alice");
    for i in 1..=5 {
        h.recv(1, chat(&format!("m{i}")));
    }
    let chat_at = |s: u64| chat_proto::HistoryChat {
        seq: s,
        time: T0,
        from: "alice".into(),
        text: format!("m{s}").into(),
        kind: ChatKind::Plain,
    };
    // Resume after 3: 4 and 5, once.
    h.open(2);
    h.recv(
        2,
        ClientMsg::Resume {
            after: 3,
            epoch: EPOCH,
        },
    );
    let out = h.recv(2, hello("bob"));
    assert_eq!(
        out[1],
        send(
            2,
            ServerMsg::History {
                chats: vec![chat_at(4), chat_at(5)],
                missed: 0
            }
        )
    );
    // Resume after 0 with only 3..=5 kept: told that 2 were missed.
    h.open(3);
    h.recv(
        3,
        ClientMsg::Resume {
            after: 0,
            epoch: EPOCH,
        },
    );
    let out = h.recv(3, hello("carol"));
    assert_eq!(
        out[1],
        send(
            3,
            ServerMsg::History {
                chats: vec![chat_at(3), chat_at(4), chat_at(5)],
                missed: 2
            }
        )
    );
    // Resume after the latest: nothing to show at all.
    h.open(4);
    h.recv(
        4,
        ClientMsg::Resume {
            after: 5,
            epoch: EPOCH,
        },
    );
    let out = h.recv(4, hello("dave"));
    assert_eq!(out[1], Output::Subscribe { conn: ConnId(4) });
}

#[test]
fn one_address_cannot_take_every_handshake_slot() {
    let mut h = Harness::with(Config {
        max_handshakes: 8,
        max_handshakes_per_ip: 2,
        ..config()
    });
    let a: core::net::IpAddr = "127.0.0.1".parse().unwrap();
    let b: core::net::IpAddr = "127.0.0.2".parse().unwrap();
    assert!(h.input(Input::OpenedFrom(ConnId(1), a)).is_empty());
    assert!(h.input(Input::OpenedFrom(ConnId(2), a)).is_empty());
    assert_eq!(
        h.input(Input::OpenedFrom(ConnId(3), a)),
        vec![
            send(3, ServerMsg::Refused(Refusal::TooManyConnections)),
            close(3, CloseReason::TooManyConnections),
        ]
    );
    // Another address still gets in, and a slot freed by a join is free again.
    assert!(h.input(Input::OpenedFrom(ConnId(4), b)).is_empty());
    h.recv(1, hello("alice"));
    assert!(h.input(Input::OpenedFrom(ConnId(5), a)).is_empty());
    // IPv6 counts per /64.
    let v6 = |s: &str| -> core::net::IpAddr { s.parse().unwrap() };
    assert!(
        h.input(Input::OpenedFrom(ConnId(6), v6("2001:db8::1")))
            .is_empty()
    );
    assert!(
        h.input(Input::OpenedFrom(ConnId(7), v6("2001:db8::ffff:2")))
            .is_empty()
    );
    assert_eq!(
        h.input(Input::OpenedFrom(ConnId(8), v6("2001:db8::3")))
            .len(),
        2
    );
    assert!(
        h.input(Input::OpenedFrom(ConnId(9), v6("2001:db8:0:1::1")))
            .is_empty()
    );
}

#[test]
fn a_full_handshake_pool_gives_a_newcomer_a_slot_from_the_address_holding_the_most() {
    let mut h = Harness::with(Config {
        max_handshakes: 1_024,
        max_handshakes_per_ip: 32,
        ..config()
    });
    let addr = |i: u32| core::net::IpAddr::from([10, 0, (i >> 8) as u8, i as u8]);
    // 33 addresses open 32 slow connections each, one after another, a millisecond apart.
    let (mut closed, mut full) = (Vec::new(), Vec::new());
    for i in 0..33u32 {
        for j in 0..32u64 {
            h.now += Duration::from_millis(1);
            let id = u64::from(i) * 100 + j;
            for out in h.input(Input::OpenedFrom(ConnId(id), addr(i))) {
                match out {
                    Output::Close {
                        conn,
                        reason: CloseReason::ServerFull,
                    } => full.push(conn),
                    Output::Close { conn, reason } => closed.push((conn, reason)),
                    Output::Send { .. } => {}
                    other => panic!("{other:?}"),
                }
            }
        }
    }
    // The 33rd address took 31 slots from the others, each time the oldest handshake of an
    // address holding the most; its 32nd would leave it holding more than anyone: refused.
    assert_eq!(full, [ConnId(3_231)]);
    assert_eq!(closed.len(), 31);
    assert!(
        closed
            .iter()
            .all(|(_, r)| *r == CloseReason::TooManyConnections)
    );
    assert_eq!(
        closed[0].0,
        ConnId(0),
        "the oldest of the heaviest goes first"
    );
    assert!(
        closed.iter().all(|(c, _)| c.0 < 3_200),
        "the newcomer's own stay"
    );
    // A newcomer from a 34th address gets in, and so does one from an IPv6 /64.
    let newcomer = h.input(Input::OpenedFrom(ConnId(9_000), addr(33)));
    assert_eq!(newcomer.len(), 2, "one slot given up: {newcomer:?}");
    assert!(matches!(
        newcomer[1],
        Output::Close { conn, reason: CloseReason::TooManyConnections } if conn != ConnId(9_000)
    ));
    assert!(h.room.is_open(ConnId(9_000)));
    let v6: core::net::IpAddr = "2001:db8::1".parse().unwrap();
    assert_eq!(h.input(Input::OpenedFrom(ConnId(9_001), v6)).len(), 2);
    assert!(h.room.is_open(ConnId(9_001)));
    // An address already holding as many as anyone gets nothing more: it is refused as before.
    let out = h.input(Input::OpenedFrom(ConnId(9_002), addr(32)));
    assert_eq!(
        out,
        vec![
            send(9_002, ServerMsg::Refused(Refusal::ServerFull)),
            close(9_002, CloseReason::ServerFull),
        ]
    );
}

#[test]
fn a_connection_readdressed_by_a_trusted_proxy_counts_under_the_client() {
    let mut h = Harness::with(Config {
        max_handshakes_per_ip: 2,
        max_clients_per_ip: 1,
        ..config()
    });
    let ip = |s: &str| -> core::net::IpAddr { s.parse().unwrap() };
    let (proxy, a, b) = (ip("10.0.0.1"), ip("198.51.100.1"), ip("198.51.100.2"));
    // Four connections through one proxy: moved to their clients, they leave its slots free.
    for id in 1..=4 {
        assert!(h.input(Input::OpenedFrom(ConnId(id), proxy)).is_empty());
        let client = if id <= 2 { a } else { b };
        assert!(h.input(Input::Readdressed(ConnId(id), client)).is_empty());
    }
    // A client's third is refused under the client's address, not the proxy's.
    assert!(h.input(Input::OpenedFrom(ConnId(5), proxy)).is_empty());
    assert_eq!(
        h.input(Input::Readdressed(ConnId(5), a)),
        vec![
            send(5, ServerMsg::Refused(Refusal::TooManyConnections)),
            close(5, CloseReason::TooManyConnections),
        ]
    );
    // The proxy's own slots were given back: two more of its own get in, a third does not.
    assert!(h.input(Input::OpenedFrom(ConnId(6), proxy)).is_empty());
    assert!(h.input(Input::OpenedFrom(ConnId(7), proxy)).is_empty());
    assert_eq!(h.input(Input::OpenedFrom(ConnId(8), proxy)).len(), 2);
    // The same address again changes nothing; the member limit counts the client too.
    assert!(h.input(Input::Readdressed(ConnId(1), a)).is_empty());
    assert!(matches!(
        h.recv(1, hello("ann"))[0],
        Output::Send {
            msg: ServerMsg::Welcome { .. },
            ..
        }
    ));
    assert_eq!(
        h.recv(2, hello("abe")),
        vec![
            send(2, ServerMsg::Refused(Refusal::TooManyConnections)),
            close(2, CloseReason::TooManyConnections),
        ]
    );
    // A member is not moved: ann stays under a (b's one member may still join), and a's slots
    // are a's again once she leaves.
    assert!(h.input(Input::Readdressed(ConnId(1), b)).is_empty());
    assert!(matches!(
        h.recv(3, hello("bo"))[0],
        Output::Send {
            msg: ServerMsg::Welcome { .. },
            ..
        }
    ));
    h.input(Input::Closed(ConnId(1)));
    assert!(h.input(Input::OpenedFrom(ConnId(9), a)).is_empty());
    assert!(h.input(Input::OpenedFrom(ConnId(10), a)).is_empty());
    assert_eq!(h.input(Input::OpenedFrom(ConnId(11), a)).len(), 2);
    // Readdressing a connection the room does not hold is ignored.
    assert!(h.input(Input::Readdressed(ConnId(99), a)).is_empty());
}

#[test]
fn members_per_address_are_limited_when_asked() {
    let mut h = Harness::with(Config {
        max_clients_per_ip: 1,
        ..config()
    });
    let a: core::net::IpAddr = "10.0.0.1".parse().unwrap();
    h.input(Input::OpenedFrom(ConnId(1), a));
    h.recv(1, hello("alice"));
    h.input(Input::OpenedFrom(ConnId(2), a));
    assert_eq!(
        h.recv(2, hello("bob")),
        vec![
            send(2, ServerMsg::Refused(Refusal::TooManyConnections)),
            close(2, CloseReason::TooManyConnections),
        ]
    );
}

#[test]
fn past_announce_max_joins_and_leaves_are_not_announced_but_who_is_complete() {
    let mut h = Harness::with(Config {
        announce_max: 2,
        ..config()
    });
    h.join(1, "a");
    h.join(2, "b");
    h.open(3);
    let out = h.recv(3, hello("c"));
    assert!(
        !out.iter().any(|o| matches!(o, Output::Broadcast { .. })),
        "a third member is not announced: {out:?}"
    );
    assert_eq!(
        h.recv(3, ClientMsg::Who),
        vec![send(
            3,
            ServerMsg::Members {
                members: vec![member("a"), member("b"), member("c")]
            }
        )]
    );
    // Leaving a room of three is not announced; leaving a room of two is.
    let out = h.recv(3, leave());
    assert_eq!(out, vec![close(3, CloseReason::Left)]);
    let out = h.recv(2, leave());
    assert_eq!(
        out,
        vec![
            close(2, CloseReason::Left),
            broadcast(None, h.left("b", CloseReason::Left)),
        ]
    );
}

#[test]
fn a_room_of_1001_members_sends_no_join_notice_for_the_last_and_who_is_complete() {
    let mut h = Harness::with(Config {
        max_clients: 2_000,
        max_handshakes: 2_000,
        ..config()
    });
    assert_eq!(h.room.config().announce_max, 1_000);
    for id in 1..=1_000 {
        h.join(id, &format!("m{id}"));
    }
    h.open(1_001);
    let out = h.recv(1_001, hello("m1001"));
    assert!(
        !out.iter().any(|o| matches!(o, Output::Broadcast { .. })),
        "the 1,001st join is not announced"
    );
    let out = h.recv(1_001, ClientMsg::Who);
    let [
        Output::Send {
            msg: ServerMsg::Members { members: names },
            ..
        },
    ] = &out[..]
    else {
        panic!("{out:?}");
    };
    assert_eq!(names.len(), 1_001);
}

/// A resume point past the room's last chat is another room's number (a room that restarted
/// without an epoch the client knew): it is shown the history as a newcomer, and no arithmetic
/// on the peer's number overflows.
#[test]
fn a_resume_point_past_the_room_s_last_chat_is_a_fresh_join() {
    for epoch in [EPOCH, 0] {
        let mut h = Harness::new();
        h.join(1, "alice");
        h.recv(1, chat("one"));
        h.open(2);
        for after in [u64::MAX, 2] {
            h.recv(2, ClientMsg::Resume { after, epoch });
        }
        let out = h.recv(2, hello("bob"));
        let one = chat_proto::HistoryChat {
            seq: 1,
            time: T0,
            from: "alice".into(),
            text: "one".into(),
            kind: ChatKind::Plain,
        };
        let history = ServerMsg::History {
            chats: vec![one],
            missed: 0,
        };
        assert_eq!(out[1], send(2, history), "epoch {epoch}");
    }
}

#[test]
fn joins_in_flight_count_towards_the_member_limit_of_an_address_in_a_shared_room() {
    let config = Config {
        max_clients_per_ip: 1,
        ..config()
    };
    let mut room = Room::shared(config, NodeId(1), Snapshot::default()).unwrap();
    let now = Instant::now();
    let a: core::net::IpAddr = "10.0.0.1".parse().unwrap();
    for id in [1, 2] {
        room.handle_input(now, Input::OpenedFrom(ConnId(id), a))
            .unwrap();
    }
    room.handle_input(now, Input::Received(ConnId(1), hello("alice")))
        .unwrap();
    let proposed: Vec<Output> = std::iter::from_fn(|| room.poll_output()).collect();
    assert!(matches!(proposed[..], [Output::Propose(_)]), "{proposed:?}");
    // The first join is not decided yet; the second is refused all the same.
    room.handle_input(now, Input::Received(ConnId(2), hello("bob")))
        .unwrap();
    let out: Vec<Output> = std::iter::from_fn(|| room.poll_output()).collect();
    assert_eq!(
        out,
        vec![
            send(2, ServerMsg::Refused(Refusal::TooManyConnections)),
            close(2, CloseReason::TooManyConnections),
        ]
    );
}

#[test]
fn an_address_counts_as_its_ipv4_or_its_ipv6_64() {
    let key = |a: &str| AddrKey::from(a.parse::<core::net::IpAddr>().unwrap());
    assert_eq!(key("2001:db8::1"), key("2001:db8::ffff:2"));
    assert_ne!(key("2001:db8::1"), key("2001:db8:0:1::1"));
    assert_eq!(key("::ffff:192.0.2.1"), key("192.0.2.1"));
    assert_ne!(key("192.0.2.1"), key("192.0.2.2"));
}
