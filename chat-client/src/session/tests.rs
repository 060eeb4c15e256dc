//! The session state machine driven directly: a fake clock, inputs in, whole output sequences
//! compared. No sockets, no runtime, no sleeps.

use chat_proto::{Member, NameRule, Refusal, encode_to_vec};

use super::*;
use crate::Switch;

fn limits() -> Limits {
    Limits {
        max_name_chars: 32,
        max_text_bytes: 64,
        max_frame_bytes: 1024,
        rate_per_sec: 10,
        burst: 20,
        idle_timeout_ms: 30_000,
    }
}

fn welcome(name: &str, members: &[&str]) -> ServerMsg {
    ServerMsg::Welcome {
        name: name.into(),
        online: members.len() as u32,
        members: members.iter().map(|m| Member::named(*m)).collect(),
        limits: limits(),
        seq: 0,
        epoch: EPOCH,
    }
}

fn hello(name: &str) -> Output {
    Output::Send(ClientMsg::Hello {
        magic: MAGIC,
        version: PROTOCOL_VERSION,
        name: name.into(),
        password: None,
        ident: None,
    })
}

fn out(text: &str) -> Output {
    Output::Print(Line::Out(text.into()))
}

fn chat_out(from: &str, text: &str) -> Output {
    Output::Print(Line::chat(false, from, text, ChatKind::Plain, Some(TIME)))
}

/// A line from the history, said at [`TIME`].
fn earlier_out(from: &str, text: &str) -> Output {
    Output::Print(Line::chat(true, from, text, ChatKind::Plain, Some(TIME)))
}

/// A room event's line, at [`TIME`].
fn event_out(text: &str) -> Output {
    Output::Print(Line::Room {
        text: text.into(),
        from: 0..0,
        time: Some(TIME),
    })
}

/// What the client sends for a plain `send`.
fn say(text: &str) -> Output {
    Output::Send(ClientMsg::Chat {
        text: text.into(),
        kind: ChatKind::Plain,
    })
}

/// A leave without parting words.
fn leave() -> Output {
    Output::Send(ClientMsg::Leave { message: None })
}

/// The room's epoch in these tests' welcomes.
const EPOCH: u64 = 7;

/// When the room's log accepted what these tests' server says: 2026-12-10 14:05:30.250 UTC.
const TIME: u64 = 1_796_911_530_250;

fn members(names: &[&str]) -> Vec<Member> {
    names.iter().map(|n| Member::named(*n)).collect()
}

fn err(text: &str) -> Output {
    Output::Print(Line::Err(text.into()))
}

fn line(text: &str) -> InputEvent {
    InputEvent::Line(text.into())
}

/// A session on a fake clock that starts at `start`.
struct Test {
    session: Session,
    start: Instant,
    now: Instant,
}

impl Test {
    fn new(name: Option<&str>, interactive: bool) -> Self {
        let config = Config {
            name: name.map(Into::into),
            ..Config::default()
        };
        Self::with_config(&config, interactive)
    }

    /// A session for `config`, its jitter seeded with a fixed value.
    fn with_config(config: &Config, interactive: bool) -> Self {
        let now = Instant::now();
        Test {
            session: Session::new(now, config, interactive).with_jitter_seed(1),
            start: now,
            now,
        }
    }

    /// A scripted session named `name`, connected, its hello already taken.
    fn connected(name: &str) -> Self {
        let mut test = Test::new(Some(name), false);
        assert_eq!(test.outputs(), [Output::Connect]);
        test.session.handle_connected(test.now);
        assert_eq!(test.outputs(), [hello(name)]);
        test
    }

    /// A scripted session in the room as `alice` with `alice` and `bob` online.
    fn joined() -> Self {
        let mut test = Test::connected("alice");
        test.msg(welcome("alice", &["alice", "bob"]));
        assert_eq!(
            test.outputs(),
            [out("* joined as alice; online: alice, bob")]
        );
        test
    }

    /// Everything the session asks for, drained.
    fn outputs(&mut self) -> Vec<Output> {
        std::iter::from_fn(|| self.session.poll_output()).collect()
    }

    fn msg(&mut self, msg: ServerMsg) {
        self.session.handle_msg(self.now, msg);
    }

    fn input(&mut self, event: InputEvent) {
        self.session.handle_input(self.now, event);
    }

    /// Moves the clock to `start + at` and lets the session see it.
    fn advance_to(&mut self, at: Duration) {
        self.now = self.start + at;
        self.session.handle_timeout(self.now);
    }

    /// Feeds raw bytes through the session's read buffer, as the driver's reads would.
    fn bytes(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            let space = self.session.read_buf();
            let n = space.len().min(bytes.len());
            space[..n].copy_from_slice(&bytes[..n]);
            self.session.handle_read(self.now, n);
            bytes = &bytes[n..];
        }
    }
}

#[test]
fn welcome_chat_and_shutdown_are_shown_and_exit_1() {
    let mut t = Test::connected("alice");
    t.msg(welcome("alice", &["alice", "bob"]));
    t.msg(chat(1, "bob", "hi \x1b[31mthere\u{202e}"));
    t.msg(ServerMsg::Joined {
        name: "carol".into(),
        time: TIME,
        ident: None,
    });
    t.msg(ServerMsg::Left {
        name: "carol".into(),
        reason: CloseReason::IdleTimeout,
        message: None,
        time: TIME,
    });
    t.msg(ServerMsg::Closing(CloseReason::ServerShutdown));
    assert_eq!(
        t.outputs(),
        [
            out("* joined as alice; online: alice, bob"),
            chat_out("bob", "hi \x1b[31mthere\u{202e}"),
            event_out("* carol joined"),
            event_out("* carol left (timed out)"),
            out("* server is shutting down"),
            Output::Exit(EXIT_FAILURE),
        ]
    );
    assert!(t.session.is_done());
    assert_eq!(t.session.poll_timeout(), None);
}

#[test]
fn a_script_is_not_read_before_the_welcome() {
    let mut t = Test::new(Some("alice"), false);
    assert!(!t.session.wants_input());
    assert_eq!(t.outputs(), [Output::Connect]);
    t.session.handle_connected(t.now);
    assert_eq!(t.outputs(), [hello("alice")]);
    assert!(!t.session.wants_input());
    t.msg(welcome("alice", &["alice"]));
    assert!(t.session.wants_input());
}

#[test]
fn script_commands_are_sent_in_order_and_bad_ones_are_hints() {
    let mut t = Test::joined();
    for text in [
        "send hello  world ",
        "",
        "bogus",
        "send",
        "who",
        "send 12345678901234567890123456789012345678901234567890123456789012345",
    ] {
        t.input(line(text));
    }
    t.msg(ServerMsg::Members {
        members: members(&["alice", "bob"]),
    });
    t.input(InputEvent::Eof);
    assert!(!t.session.wants_input());
    t.msg(ServerMsg::Closing(CloseReason::Left));
    assert_eq!(
        t.outputs(),
        [
            say("hello  world "),
            err("error: unknown command 'bogus'; type help for the commands"),
            err("error: nothing to send; type send <MSG>"),
            Output::Send(ClientMsg::Who),
            err("error: message is longer than 64 bytes; not sent"),
            out("* online: alice, bob"),
            leave(),
            Output::Exit(EXIT_OK),
        ]
    );
}

#[test]
fn a_message_of_exactly_the_limit_is_sent() {
    let mut t = Test::joined();
    let text = "x".repeat(64);
    t.input(line(&format!("send {text}")));
    assert_eq!(t.outputs(), [say(&text)]);
}

#[test]
fn the_limit_counts_bytes_not_characters() {
    // 62 ASCII bytes and a two-byte 'é': 64 bytes in 63 characters, exactly the limit.
    let mut t = Test::joined();
    t.input(line(&format!("send {}é", "a".repeat(62))));
    t.input(line(&format!("send {}é", "a".repeat(63))));
    assert_eq!(
        t.outputs(),
        [
            say("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaé"),
            err("error: message is longer than 64 bytes; not sent"),
        ]
    );
}

#[test]
fn help_prints_the_commands_and_leave_stops_reading_the_script() {
    let mut t = Test::joined();
    t.input(line("help"));
    t.input(line("leave"));
    assert!(!t.session.wants_input());
    let mut expected: Vec<Output> = HELP.iter().map(|l| out(l)).collect();
    expected.push(leave());
    assert_eq!(t.outputs(), expected);
}

#[test]
fn pings_are_answered_with_the_same_nonce_before_and_after_the_welcome() {
    let mut t = Test::connected("alice");
    t.msg(ServerMsg::Ping { nonce: 7 });
    t.msg(welcome("alice", &["alice"]));
    t.msg(ServerMsg::Ping { nonce: 42 });
    t.msg(ServerMsg::Pong { nonce: 1 });
    t.msg(ServerMsg::Closing(CloseReason::IdleTimeout));
    assert_eq!(
        t.outputs(),
        [
            Output::Send(ClientMsg::Pong { nonce: 7 }),
            out("* joined as alice; online: alice"),
            Output::Send(ClientMsg::Pong { nonce: 42 }),
            out("* disconnected by server: timed out"),
            Output::Exit(EXIT_FAILURE),
        ]
    );
}

#[test]
fn refusal_in_a_script_is_an_error_and_exit_1() {
    let mut t = Test::connected("bad name");
    t.msg(ServerMsg::Refused(Refusal::NameInvalid(
        NameRule::Whitespace,
    )));
    assert_eq!(
        t.outputs(),
        [
            err("error: name contains whitespace; choose another"),
            Output::Exit(EXIT_FAILURE),
        ]
    );
}

#[test]
fn at_a_prompt_a_name_is_asked_for_then_asked_again_after_a_refusal() {
    let mut t = Test::new(None, true);
    assert_eq!(t.outputs(), [Output::Prompt(Prompt::Name)]);
    assert!(t.session.wants_input());
    t.input(line("   "));
    assert_eq!(t.outputs(), []);
    t.input(line(" Bob "));
    assert_eq!(
        t.outputs(),
        [Output::Prompt(Prompt::Command), Output::Connect]
    );
    // Lines typed while connecting are dropped.
    t.input(line("send early"));
    t.session.handle_connected(t.now);
    t.input(line("send still early"));
    t.msg(ServerMsg::Refused(Refusal::NameTaken));
    t.input(line(""));
    t.input(line("alice"));
    t.msg(welcome("alice", &["alice", "bob"]));
    assert_eq!(
        t.outputs(),
        [
            hello("Bob"),
            err("error: not in the room yet; wait for the welcome"),
            err("error: name is taken; choose another"),
            Output::Prompt(Prompt::Name),
            Output::Prompt(Prompt::Command),
            hello("alice"),
            out("* joined as alice; online: alice, bob"),
        ]
    );
}

#[test]
fn ctrl_c_or_ctrl_d_before_joining_exits_0_without_a_goodbye() {
    for event in [InputEvent::Eof, InputEvent::Interrupted] {
        // At the name prompt.
        let mut t = Test::new(None, true);
        t.outputs();
        t.input(event.clone());
        assert_eq!(t.outputs(), [Output::Exit(EXIT_OK)]);
        // While connecting.
        let mut t = Test::new(Some("alice"), true);
        t.outputs();
        t.input(event.clone());
        assert_eq!(t.outputs(), [Output::Exit(EXIT_OK)]);
        // Waiting for the welcome.
        let mut t = Test::new(Some("alice"), true);
        t.session.handle_connected(t.now);
        t.outputs();
        t.input(event.clone());
        assert_eq!(t.outputs(), [Output::Exit(EXIT_OK)]);
    }
}

#[test]
fn ctrl_c_in_the_room_leaves() {
    let mut t = Test::new(Some("alice"), true);
    t.session.handle_connected(t.now);
    t.msg(welcome("alice", &["alice"]));
    t.outputs();
    t.input(InputEvent::Interrupted);
    assert!(t.session.wants_input(), "a terminal is always read");
    t.input(line("send too late"));
    t.msg(ServerMsg::Closing(CloseReason::Left));
    assert_eq!(t.outputs(), [leave(), Output::Exit(EXIT_OK)]);
}

#[test]
fn a_dead_server_is_one_error_line_and_exit_1() {
    let mut t = Test::joined();
    t.session.handle_read(t.now, 0);
    t.session.handle_closed(t.now);
    assert_eq!(
        t.outputs(),
        [
            err("error: connection to server lost"),
            Output::Exit(EXIT_FAILURE)
        ]
    );
}

#[test]
fn frames_split_across_reads_are_decoded() {
    let mut t = Test::connected("alice");
    let mut bytes = encode_to_vec(&welcome("alice", &["alice", "bob"])).unwrap();
    bytes.extend(encode_to_vec(&ServerMsg::Ping { nonce: 3 }).unwrap());
    for byte in bytes.chunks(1) {
        t.bytes(byte);
    }
    assert_eq!(
        t.outputs(),
        [
            out("* joined as alice; online: alice, bob"),
            Output::Send(ClientMsg::Pong { nonce: 3 }),
        ]
    );
}

#[test]
fn garbage_from_the_server_ends_the_session_and_nothing_after_it_is_read() {
    let mut t = Test::connected("alice");
    let mut bytes = vec![0xff; 8];
    bytes.extend(encode_to_vec(&welcome("alice", &["alice"])).unwrap());
    t.bytes(&bytes);
    assert_eq!(
        t.outputs(),
        [
            err(&format!(
                "error: connection to server lost: frame of {} bytes is over the limit of {}",
                u32::MAX,
                MAX_SERVER_FRAME
            )),
            Output::Exit(EXIT_FAILURE),
        ]
    );
}

#[test]
fn leave_is_bounded_when_the_server_never_answers() {
    let mut t = Test::joined();
    t.advance_to(Duration::from_secs(5));
    t.input(InputEvent::Eof);
    let until = t.start + Duration::from_secs(5) + LEAVE_GRACE;
    assert_eq!(t.session.poll_timeout(), Some(until));
    t.advance_to(Duration::from_secs(5) + LEAVE_GRACE - Duration::from_millis(1));
    assert_eq!(t.outputs(), [leave()]);
    t.advance_to(Duration::from_secs(5) + LEAVE_GRACE);
    assert_eq!(t.outputs(), [Output::Exit(EXIT_OK)]);
    assert_eq!(t.session.poll_timeout(), None);
}

#[test]
fn the_connection_closing_after_leave_is_a_clean_exit() {
    let mut t = Test::joined();
    t.input(line("leave"));
    t.session.handle_read(t.now, 0);
    assert_eq!(t.outputs(), [leave(), Output::Exit(EXIT_OK)]);
}

#[test]
fn a_closing_frame_other_than_left_while_leaving_is_shown_but_exits_0() {
    let mut t = Test::joined();
    t.input(line("leave"));
    t.msg(ServerMsg::Closing(CloseReason::ServerShutdown));
    assert_eq!(
        t.outputs(),
        [
            leave(),
            out("* server is shutting down"),
            Output::Exit(EXIT_OK),
        ]
    );
}

#[test]
fn a_failed_write_waits_briefly_for_the_servers_last_word() {
    // The last word arrives: it is shown.
    let mut t = Test::joined();
    t.input(line("send hi"));
    t.outputs();
    t.session.handle_send_failed(t.now);
    assert!(!t.session.wants_input());
    assert_eq!(t.session.poll_timeout(), Some(t.now + LAST_WORD_GRACE));
    t.msg(ServerMsg::Closing(CloseReason::Flood));
    assert_eq!(
        t.outputs(),
        [
            out("* disconnected by server: flooding"),
            Output::Exit(EXIT_FAILURE)
        ]
    );
    // Nothing arrives: the connection is reported lost when the grace ends, not before.
    let mut t = Test::joined();
    t.session.handle_send_failed(t.now);
    t.session
        .handle_send_failed(t.now + Duration::from_millis(500));
    t.advance_to(LAST_WORD_GRACE - Duration::from_millis(1));
    assert_eq!(t.outputs(), []);
    t.advance_to(LAST_WORD_GRACE);
    assert_eq!(
        t.outputs(),
        [
            err("error: connection to server lost"),
            Output::Exit(EXIT_FAILURE)
        ]
    );
}

#[test]
fn a_failed_write_while_leaving_keeps_the_leave_deadline() {
    let mut t = Test::joined();
    t.input(line("leave"));
    t.session.handle_send_failed(t.now);
    assert_eq!(t.session.poll_timeout(), Some(t.now + LEAVE_GRACE));
}

#[test]
fn cannot_connect_names_the_address_and_exits_1() {
    let mut t = Test::new(Some("alice"), false);
    t.outputs();
    t.session.handle_connect_failed(t.now, "connection refused");
    assert_eq!(
        t.outputs(),
        [
            err("error: cannot connect to 127.0.0.1:7878: connection refused"),
            Output::Exit(EXIT_FAILURE),
        ]
    );
}

#[test]
fn connecting_gives_up_after_the_connect_timeout() {
    let mut t = Test::new(Some("alice"), false);
    t.outputs();
    assert_eq!(t.session.poll_timeout(), Some(t.start + CONNECT_TIMEOUT));
    t.advance_to(CONNECT_TIMEOUT - Duration::from_millis(1));
    assert_eq!(t.outputs(), []);
    t.advance_to(CONNECT_TIMEOUT);
    assert_eq!(
        t.outputs(),
        [
            err("error: cannot connect to 127.0.0.1:7878: timed out"),
            Output::Exit(EXIT_FAILURE),
        ]
    );
    // A connection that completes too late changes nothing.
    t.session.handle_connected(t.now);
    assert_eq!(t.outputs(), []);
}

#[test]
fn no_name_in_a_script_is_a_usage_error() {
    let mut t = Test::new(None, false);
    assert_eq!(
        t.outputs(),
        [
            err("error: no name given; pass --name or set CHAT_NAME"),
            Output::Exit(EXIT_USAGE),
        ]
    );
    assert!(!t.session.wants_input());
}

#[test]
fn the_timer_never_spins() {
    // Every deadline, once handled, is gone or later than the time that handled it.
    let mut t = Test::joined();
    t.input(line("leave"));
    let mut wakes = 0;
    while let Some(at) = t.session.poll_timeout() {
        assert!(at > t.now, "deadline {at:?} did not move past {:?}", t.now);
        // Handled late, as a busy driver would.
        t.now = at + Duration::from_millis(5);
        t.session.handle_timeout(t.now);
        wakes += 1;
        assert!(wakes < 3, "woke {wakes} times");
    }
    assert!(t.session.is_done());
}

#[test]
fn nothing_is_handled_after_the_exit() {
    let mut t = Test::joined();
    t.msg(ServerMsg::Closing(CloseReason::TooSlow));
    t.outputs();
    t.msg(chat(2, "bob", "late"));
    t.input(line("send late"));
    t.session.handle_closed(t.now);
    t.advance_to(Duration::from_secs(3600));
    assert_eq!(t.outputs(), []);
}

#[test]
fn prompts_are_only_asked_for_at_a_terminal() {
    let mut t = Test::connected("alice");
    t.msg(ServerMsg::Refused(Refusal::NameTaken));
    assert!(!t.outputs().iter().any(|o| matches!(o, Output::Prompt(_))));
}

#[test]
fn host_port_brackets_ipv6() {
    assert_eq!(host_port("127.0.0.1", 7878), "127.0.0.1:7878");
    assert_eq!(host_port("::1", 7878), "[::1]:7878");
    assert_eq!(host_port("chat.example", 1), "chat.example:1");
}

/// A session in the room as `alice` (the welcome and its line taken), at a terminal or not,
/// with `bob` online, the server's idle timeout 30 s, and the last chat seen `seq`.
fn in_room(config: &Config, interactive: bool, seq: u64) -> Test {
    let mut t = Test::with_config(config, interactive);
    t.session.handle_connected(t.now);
    t.msg(ServerMsg::Welcome {
        name: "alice".into(),
        online: 2,
        members: members(&["alice", "bob"]),
        limits: limits(),
        seq,
        epoch: EPOCH,
    });
    t.outputs();
    t
}

fn alice() -> Config {
    Config {
        name: Some("alice".into()),
        ..Config::default()
    }
}

fn chat(seq: u64, from: &str, text: &str) -> ServerMsg {
    ServerMsg::Chat {
        seq,
        time: TIME,
        from: from.into(),
        text: text.into(),
        kind: ChatKind::Plain,
    }
}

fn history(chats: &[(u64, &str, &str)], missed: u64) -> ServerMsg {
    ServerMsg::History {
        chats: chats
            .iter()
            .map(|(seq, from, text)| chat_proto::HistoryChat {
                seq: *seq,
                time: TIME,
                from: (*from).into(),
                text: (*text).into(),
                kind: ChatKind::Plain,
            })
            .collect(),
        missed,
    }
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

#[test]
fn a_silent_server_is_pinged_after_its_idle_timeout_and_a_script_then_exits_1() {
    let mut t = in_room(&alice(), false, 0);
    // The server's idle timeout is 30 s: nothing is sent before it has passed.
    assert_eq!(t.session.poll_timeout(), Some(t.start + secs(30)));
    t.advance_to(secs(30) - Duration::from_millis(1));
    assert_eq!(t.outputs(), []);
    t.advance_to(secs(30));
    assert_eq!(t.outputs(), [Output::Send(ClientMsg::Ping { nonce: 1 })]);
    assert_eq!(
        t.session.poll_timeout(),
        Some(t.start + secs(30) + PROBE_TIMEOUT)
    );
    t.advance_to(secs(35) - Duration::from_millis(1));
    assert_eq!(t.outputs(), []);
    t.advance_to(secs(35));
    assert_eq!(
        t.outputs(),
        [
            err("error: connection lost (no answer from the server for 35 s)"),
            Output::Exit(EXIT_FAILURE),
        ]
    );
    assert_eq!(t.session.poll_timeout(), None);
}

#[test]
fn any_frame_answers_the_ping_and_restarts_the_wait() {
    let mut t = in_room(&alice(), false, 0);
    t.advance_to(secs(10));
    // A server ping (answered) counts as hearing from it.
    t.msg(ServerMsg::Ping { nonce: 9 });
    assert_eq!(t.session.poll_timeout(), Some(t.start + secs(40)));
    t.advance_to(secs(40));
    t.advance_to(secs(44));
    t.msg(chat(1, "bob", "still here"));
    assert_eq!(t.session.poll_timeout(), Some(t.start + secs(74)));
    t.advance_to(secs(74));
    t.advance_to(secs(75));
    t.bytes(&encode_to_vec(&ServerMsg::Pong { nonce: 2 }).unwrap());
    t.advance_to(secs(79));
    assert_eq!(
        t.outputs(),
        [
            Output::Send(ClientMsg::Pong { nonce: 9 }),
            Output::Send(ClientMsg::Ping { nonce: 1 }),
            chat_out("bob", "still here"),
            Output::Send(ClientMsg::Ping { nonce: 2 }),
        ]
    );
    assert!(!t.session.is_done());
}

#[test]
fn at_a_terminal_a_silent_server_means_reconnecting_and_resuming_after_the_last_chat_seen() {
    let mut t = in_room(&alice(), true, 3);
    t.msg(chat(4, "bob", "one"));
    t.msg(history(&[], 0)); // out of turn, but seen: nothing to show
    t.advance_to(secs(30));
    t.advance_to(secs(35));
    assert_eq!(
        t.outputs(),
        [
            chat_out("bob", "one"),
            Output::Send(ClientMsg::Ping { nonce: 1 }),
            out("* connection lost (no answer from the server for 35 s)"),
            Output::Disconnect,
            out("* reconnecting…"),
        ]
    );
    // The first attempt comes after half to all of RECONNECT_FIRST.
    let at = t.session.poll_timeout().unwrap();
    let wait = at - (t.start + secs(35));
    assert!(
        RECONNECT_FIRST / 2 <= wait && wait <= RECONNECT_FIRST,
        "{wait:?}"
    );
    // Lines typed meanwhile are not sent.
    t.input(line("send into the void"));
    t.now = at;
    t.session.handle_timeout(at);
    t.session.handle_connected(at);
    t.msg(ServerMsg::Welcome {
        name: "alice".into(),
        online: 2,
        members: members(&["alice", "bob"]),
        limits: limits(),
        seq: 6,
        epoch: EPOCH,
    });
    t.msg(history(&[(5, "bob", "two"), (6, "bob", "three")], 0));
    t.msg(chat(7, "bob", "four"));
    assert_eq!(
        t.outputs(),
        [
            err("error: not in the room; reconnecting (type leave to quit)"),
            Output::Connect,
            Output::Send(ClientMsg::Resume {
                after: 4,
                epoch: EPOCH
            }),
            hello("alice"),
            out("* reconnected as alice"),
            earlier_out("bob", "two"),
            earlier_out("bob", "three"),
            chat_out("bob", "four"),
        ]
    );
    // In the room again: the liveness check runs from the new connection's last frame.
    assert_eq!(t.session.poll_timeout(), Some(at + secs(30)));
    // The next loss resumes after the last chat seen on the new connection.
    t.session.handle_closed(t.now);
    t.outputs();
    let at = t.session.poll_timeout().unwrap();
    t.now = at;
    t.session.handle_timeout(at);
    t.session.handle_connected(at);
    assert_eq!(
        t.outputs(),
        [
            Output::Connect,
            Output::Send(ClientMsg::Resume {
                after: 7,
                epoch: EPOCH
            }),
            hello("alice"),
        ]
    );
}

#[test]
fn more_missed_than_the_history_holds_is_one_line_before_the_history() {
    let mut t = in_room(&alice(), true, 1);
    t.session.handle_closed(t.now);
    let at = t.session.poll_timeout().unwrap();
    t.now = at;
    t.session.handle_timeout(at);
    t.session.handle_connected(at);
    t.outputs();
    t.msg(welcome("alice", &["alice"]));
    t.msg(history(&[(232, "bob", "latest")], 230));
    assert_eq!(
        t.outputs(),
        [
            out("* reconnected as alice"),
            out("* 230 messages were missed"),
            earlier_out("bob", "latest"),
        ]
    );
}

#[test]
fn the_end_of_the_stream_at_a_terminal_reconnects_and_a_script_exits() {
    let mut t = in_room(&alice(), true, 0);
    t.session.handle_read(t.now, 0);
    assert_eq!(
        t.outputs(),
        [
            out("* connection to server lost"),
            Output::Disconnect,
            out("* reconnecting…"),
        ]
    );
    // --no-reconnect at a terminal, and a script by default: one error line, exit 1.
    let config = Config {
        reconnect: Switch::Off,
        ..alice()
    };
    for (config, interactive) in [(config, true), (alice(), false)] {
        let mut t = in_room(&config, interactive, 0);
        t.session.handle_closed(t.now);
        assert_eq!(
            t.outputs(),
            [
                err("error: connection to server lost"),
                Output::Exit(EXIT_FAILURE)
            ]
        );
    }
    // --reconnect in a script.
    let config = Config {
        reconnect: Switch::On,
        ..alice()
    };
    let mut t = in_room(&config, false, 0);
    t.session.handle_closed(t.now);
    assert_eq!(t.outputs()[1], Output::Disconnect);
    assert!(!t.session.wants_input(), "a script waits for the welcome");
}

#[test]
fn the_server_shutting_down_at_a_terminal_reconnects_and_a_penalty_does_not() {
    let mut t = in_room(&alice(), true, 0);
    t.msg(ServerMsg::Closing(CloseReason::ServerShutdown));
    assert_eq!(
        t.outputs(),
        [
            out("* server is shutting down"),
            Output::Disconnect,
            out("* reconnecting…"),
        ]
    );
    let mut t = in_room(&alice(), true, 0);
    t.msg(ServerMsg::Closing(CloseReason::Flood));
    assert_eq!(
        t.outputs(),
        [
            out("* disconnected by server: flooding"),
            Output::Exit(EXIT_FAILURE)
        ]
    );
}

#[test]
fn failed_attempts_back_off_with_jitter_up_to_the_maximum_and_never_spin() {
    let mut t = in_room(&alice(), true, 0);
    t.session.handle_closed(t.now);
    t.outputs();
    let mut waits = Vec::new();
    let mut lost_at = t.now;
    for attempt in 0..10 {
        let at = t.session.poll_timeout().unwrap();
        assert!(at > t.now, "the timer spins");
        waits.push(at - lost_at);
        // Handled late, as a busy driver would.
        t.now = at + Duration::from_millis(5);
        t.session.handle_timeout(t.now);
        assert_eq!(t.outputs(), [Output::Connect]);
        match attempt % 3 {
            0 => t.session.handle_connect_failed(t.now, "connection refused"),
            1 => {
                // Connected, then refused: the old member is still in the room.
                t.session.handle_connected(t.now);
                t.msg(ServerMsg::Refused(Refusal::NameTaken));
            }
            _ => {
                // Connected, then nothing until the rejoin timeout.
                t.session.handle_connected(t.now);
                t.now += REJOIN_TIMEOUT;
                t.session.handle_timeout(t.now);
            }
        }
        lost_at = t.now;
        let outputs = t.outputs();
        assert!(outputs.contains(&Output::Disconnect), "{outputs:?}");
        assert!(!outputs.contains(&out("* reconnecting…")), "said once");
        assert!(!outputs.contains(&Output::Exit(EXIT_FAILURE)));
    }
    for (attempt, wait) in waits.iter().enumerate() {
        let full = (RECONNECT_FIRST * (1 << attempt)).min(RECONNECT_MAX);
        assert!(
            full / 2 <= *wait && *wait <= full,
            "attempt {attempt} waited {wait:?}"
        );
    }
    // Jittered: not all exactly half or all the same fraction.
    let fractions: Vec<u128> = waits
        .iter()
        .enumerate()
        .map(|(i, w)| {
            w.as_millis() * 1000 / (RECONNECT_FIRST * (1 << i)).min(RECONNECT_MAX).as_millis()
        })
        .collect();
    assert!(fractions.windows(2).any(|w| w[0] != w[1]), "{fractions:?}");
}

#[test]
fn what_a_failed_attempt_says() {
    let mut t = in_room(&alice(), true, 0);
    t.session.handle_closed(t.now);
    t.outputs();
    let at = t.session.poll_timeout().unwrap();
    t.now = at;
    t.session.handle_timeout(at);
    t.session.handle_connect_failed(at, "connection refused");
    let at = t.session.poll_timeout().unwrap();
    t.now = at;
    t.session.handle_timeout(at);
    t.session.handle_connected(at);
    t.msg(ServerMsg::Refused(Refusal::NameTaken));
    assert_eq!(
        t.outputs(),
        [
            Output::Connect,
            out("* cannot connect to 127.0.0.1:7878: connection refused"),
            Output::Disconnect,
            Output::Connect,
            Output::Send(ClientMsg::Resume {
                after: 0,
                epoch: EPOCH
            }),
            hello("alice"),
            err("error: name is taken; choose another"),
            Output::Disconnect,
        ]
    );
    // `leave` (or Ctrl-D) while reconnecting exits at once.
    t.input(line("leave"));
    assert_eq!(t.outputs(), [Output::Exit(EXIT_OK)]);
}

#[test]
fn an_unsupported_version_is_one_line_and_exit_1_even_at_a_terminal() {
    for (interactive, supported, line) in [
        (
            true,
            1,
            "error: server speaks protocol version 1, this client 3; use an older client or upgrade the server",
        ),
        (
            false,
            1,
            "error: server speaks protocol version 1, this client 3; use an older client or upgrade the server",
        ),
        (
            false,
            2,
            "error: server speaks protocol version 2, this client 3; use an older client or upgrade the server",
        ),
        (
            true,
            4,
            "error: server speaks protocol version 4; upgrade the client",
        ),
    ] {
        let mut t = Test::new(Some("alice"), interactive);
        t.session.handle_connected(t.now);
        t.outputs();
        t.msg(ServerMsg::Refused(Refusal::UnsupportedVersion {
            supported,
        }));
        // The server closes the connection after refusing: nothing more is said.
        t.session.handle_closed(t.now);
        assert_eq!(t.outputs(), [err(line), Output::Exit(EXIT_FAILURE)]);
    }
}

#[test]
fn a_mention_rings_the_bell_when_asked_for() {
    let config = Config {
        bell: Switch::On,
        ..alice()
    };
    let mut t = in_room(&config, true, 0);
    t.msg(chat(1, "bob", "hi @Alice!"));
    t.msg(chat(2, "bob", "malice"));
    t.msg(history(&[(3, "bob", "alice, earlier")], 0));
    assert_eq!(
        t.outputs(),
        [
            Output::Bell,
            chat_out("bob", "hi @Alice!"),
            chat_out("bob", "malice"),
            earlier_out("bob", "alice, earlier"),
        ]
    );
    // Off by default.
    let mut t = in_room(&alice(), true, 0);
    t.msg(chat(1, "bob", "hi alice"));
    assert_eq!(t.outputs(), [chat_out("bob", "hi alice")]);
}

/// After a lost connection: the wait passes, and the next connection opens.
fn reconnect(t: &mut Test) {
    let at = t.session.poll_timeout().unwrap();
    t.now = at;
    t.session.handle_timeout(at);
    t.session.handle_connected(at);
}

fn welcome_in(epoch: u64, seq: u64) -> ServerMsg {
    ServerMsg::Welcome {
        name: "alice".into(),
        online: 2,
        members: members(&["alice", "bob"]),
        limits: limits(),
        seq,
        epoch,
    }
}

#[test]
fn a_resume_names_the_epoch_of_the_last_welcome_and_a_reset_room_is_said() {
    let mut t = in_room(&alice(), true, 4);
    t.msg(chat(5, "bob", "one"));
    t.session.handle_closed(t.now);
    t.outputs();
    reconnect(&mut t);
    assert_eq!(
        t.outputs(),
        [
            Output::Connect,
            Output::Send(ClientMsg::Resume {
                after: 5,
                epoch: EPOCH
            }),
            hello("alice"),
        ]
    );
    // The room was reset meanwhile: a welcome in another epoch, and its whole history.
    t.msg(welcome_in(EPOCH + 1, 2));
    t.msg(history(&[(1, "bob", "new one"), (2, "bob", "new two")], 0));
    assert_eq!(
        t.outputs(),
        [
            out("* reconnected as alice"),
            out("* the room was reset meanwhile; its history follows"),
            earlier_out("bob", "new one"),
            earlier_out("bob", "new two"),
        ]
    );
    // The next resume is in the new epoch, after its last chat (not the old epoch's 5).
    t.session.handle_closed(t.now);
    t.outputs();
    reconnect(&mut t);
    assert_eq!(
        t.outputs(),
        [
            Output::Connect,
            Output::Send(ClientMsg::Resume {
                after: 2,
                epoch: EPOCH + 1
            }),
            hello("alice"),
        ]
    );
    // The same epoch again: no word of a reset.
    t.msg(welcome_in(EPOCH + 1, 2));
    assert_eq!(t.outputs(), [out("* reconnected as alice")]);
}

#[test]
fn renamed_the_session_joins_again_under_its_new_name() {
    let mut t = in_room(&alice(), true, 0);
    t.msg(ServerMsg::Renamed {
        from: "bob".into(),
        to: "robert".into(),
        time: TIME,
    });
    t.msg(ServerMsg::Renamed {
        from: "alice".into(),
        to: "alicia".into(),
        time: TIME,
    });
    assert_eq!(
        t.outputs(),
        [
            event_out("* bob is now robert"),
            event_out("* alice is now alicia"),
        ]
    );
    t.session.handle_closed(t.now);
    t.outputs();
    reconnect(&mut t);
    assert_eq!(
        t.outputs(),
        [
            Output::Connect,
            Output::Send(ClientMsg::Resume {
                after: 0,
                epoch: EPOCH
            }),
            hello("alicia"),
        ]
    );
}

#[test]
fn away_back_and_parting_words_of_others_are_shown() {
    let mut t = Test::joined();
    t.msg(ServerMsg::Away {
        name: "bob".into(),
        message: Some("lunch".into()),
        time: TIME,
    });
    t.msg(ServerMsg::Away {
        name: "bob".into(),
        message: None,
        time: TIME,
    });
    t.msg(ServerMsg::Left {
        name: "bob".into(),
        reason: CloseReason::Left,
        message: Some("gone for lunch".into()),
        time: TIME,
    });
    assert_eq!(
        t.outputs(),
        [
            event_out("* bob is away: lunch"),
            event_out("* bob is back"),
            event_out("* bob left: gone for lunch"),
        ]
    );
}

fn act(text: &str) -> Output {
    Output::Send(ClientMsg::Chat {
        text: text.into(),
        kind: ChatKind::Action,
    })
}

#[test]
fn script_commands_send_actions_renames_away_and_parting_words() {
    let mut t = Test::joined();
    for text in [
        "me waves",
        "send /me bows",
        "/me nods",
        "nick alicia",
        "away",
        "/away lunch",
        "back",
        "/who",
        "/send hi",
        "leave gone for lunch",
    ] {
        t.input(line(text));
    }
    assert_eq!(
        t.outputs(),
        [
            act("waves"),
            act("bows"),
            act("nods"),
            Output::Send(ClientMsg::Nick {
                name: "alicia".into()
            }),
            Output::Send(ClientMsg::Away {
                message: Some("away".into())
            }),
            Output::Send(ClientMsg::Away {
                message: Some("lunch".into())
            }),
            Output::Send(ClientMsg::Away { message: None }),
            Output::Send(ClientMsg::Who),
            say("hi"),
            Output::Send(ClientMsg::Leave {
                message: Some("gone for lunch".into())
            }),
        ]
    );
}

#[test]
fn an_action_over_the_limit_is_not_sent_and_a_script_word_that_is_no_command_is_an_error() {
    let mut t = Test::joined();
    t.input(line(&format!("me {}", "a".repeat(65))));
    t.input(line("hello there"));
    t.input(line("who is there"));
    t.input(line("nick"));
    assert_eq!(
        t.outputs(),
        [
            err("error: message is longer than 64 bytes; not sent"),
            err("error: unknown command 'hello'; type help for the commands"),
            err("error: who takes no argument; type who alone"),
            err("error: no name given; type nick <NAME>"),
        ]
    );
}

#[test]
fn a_refused_rename_is_one_error_line_naming_why_and_the_name_stays() {
    let mut t = in_room(&alice(), true, 0);
    t.input(line("nick bob"));
    t.msg(ServerMsg::Error(ErrorKind::NameTaken));
    t.input(line("nick a b"));
    t.msg(ServerMsg::Error(ErrorKind::NameInvalid(
        NameRule::Whitespace,
    )));
    let nick = |name: &str| Output::Send(ClientMsg::Nick { name: name.into() });
    assert_eq!(
        t.outputs(),
        [
            nick("bob"),
            err("error: name is taken; name not changed"),
            nick("a b"),
            err("error: name contains whitespace; name not changed"),
        ]
    );
    // Still alice: the session joins again under that name.
    t.session.handle_closed(t.now);
    t.outputs();
    reconnect(&mut t);
    assert_eq!(t.outputs().last(), Some(&hello("alice")));
}

/// A line of one's own, as the others see it, at the time it is printed.
fn own(text: &str, from: std::ops::Range<usize>) -> Output {
    Output::Print(Line::Room {
        text: text.into(),
        from,
        time: None,
    })
}

#[test]
fn at_a_terminal_a_line_that_is_no_command_is_a_chat_and_ones_own_lines_read_as_the_others_see_them()
 {
    let mut t = in_room(&alice(), true, 0);
    for text in [
        "hi all",
        "who is there?",
        "send hi",
        "me waves",
        "away lunch",
        "away",
        "back",
        "/shout hi",
        "who",
    ] {
        t.input(line(text));
    }
    t.msg(ServerMsg::Renamed {
        from: "alice".into(),
        to: "alicia".into(),
        time: TIME,
    });
    t.input(line("/me is renamed"));
    assert_eq!(
        t.outputs(),
        [
            own("alice: hi all", 0..5),
            say("hi all"),
            own("alice: who is there?", 0..5),
            say("who is there?"),
            own("alice: hi", 0..5),
            say("hi"),
            own("* alice waves", 2..7),
            act("waves"),
            own("* alice is away: lunch", 0..0),
            Output::Send(ClientMsg::Away {
                message: Some("lunch".into())
            }),
            own("* alice is away", 0..0),
            Output::Send(ClientMsg::Away {
                message: Some("away".into())
            }),
            own("* alice is back", 0..0),
            Output::Send(ClientMsg::Away { message: None }),
            err("error: unknown command '/shout'; type help for the commands"),
            Output::Send(ClientMsg::Who),
            event_out("* alice is now alicia"),
            own("* alicia is renamed", 2..8),
            act("is renamed"),
        ]
    );
    // A chat over the limit is neither shown nor sent.
    t.input(line(&"a".repeat(65)));
    assert_eq!(
        t.outputs(),
        [err("error: message is longer than 64 bytes; not sent")]
    );
    t.input(line("leave see you"));
    assert_eq!(
        t.outputs(),
        [Output::Send(ClientMsg::Leave {
            message: Some("see you".into())
        })]
    );
}

fn hello_with(name: &str, password: &str) -> Output {
    Output::Send(ClientMsg::Hello {
        magic: MAGIC,
        version: PROTOCOL_VERSION,
        name: name.into(),
        password: Some(password.into()),
        ident: None,
    })
}

#[test]
fn a_given_password_goes_with_the_hello_and_register_and_a_script_without_one_is_told() {
    let config = Config {
        name: Some("alice".into()),
        password: Some("pw".into()),
        ..Config::default()
    };
    let mut t = Test::with_config(&config, false);
    assert_eq!(t.outputs(), [Output::Connect]);
    t.session.handle_connected(t.now);
    assert_eq!(t.outputs(), [hello_with("alice", "pw")]);
    t.msg(welcome("alice", &["alice"]));
    t.outputs();
    t.input(line("register"));
    let register = ClientMsg::Register {
        password: "pw".into(),
    };
    assert_eq!(t.outputs(), [Output::Send(register)]);
    t.input(line("unregister"));
    assert_eq!(t.outputs(), [Output::Send(ClientMsg::Unregister)]);

    let mut t = Test::joined();
    t.input(line("register"));
    assert_eq!(
        t.outputs(),
        [err(
            "error: register needs a password: give --password-file FILE or CHAT_PASSWORD"
        )]
    );
}

#[test]
fn at_a_terminal_a_registered_name_asks_its_password_unseen_and_register_asks_twice() {
    let mut t = Test::new(None, true);
    assert_eq!(t.outputs(), [Output::Prompt(Prompt::Name)]);
    t.input(line("alice"));
    t.outputs();
    t.session.handle_connected(t.now);
    assert_eq!(t.outputs(), [hello("alice")]);
    t.msg(ServerMsg::Refused(Refusal::NameRegistered));
    let outputs = t.outputs();
    assert_eq!(outputs.last(), Some(&Output::Prompt(Prompt::Password)));
    assert!(Prompt::Password.is_hidden() && !Prompt::Command.is_hidden());
    t.input(line("pw"));
    assert_eq!(
        t.outputs(),
        [Output::Prompt(Prompt::Command), hello_with("alice", "pw")]
    );
    t.msg(welcome("alice", &["alice"]));
    t.outputs();
    // register, without a password yet: the new password twice; two that differ change
    // nothing.
    let mut t = Test::new(Some("bob"), true);
    t.outputs();
    t.session.handle_connected(t.now);
    t.msg(welcome("bob", &["bob"]));
    t.outputs();
    t.input(line("register"));
    let asked = t.outputs();
    assert_eq!(asked.last(), Some(&Output::Prompt(Prompt::NewPassword)));
    t.input(line("one"));
    assert_eq!(t.outputs(), [Output::Prompt(Prompt::Again)]);
    t.input(line("two"));
    assert_eq!(
        t.outputs(),
        [
            Output::Prompt(Prompt::Command),
            err("error: the two passwords differ; nothing was changed")
        ]
    );
    t.input(line("passwd"));
    assert_eq!(t.outputs(), [Output::Prompt(Prompt::Password)]);
    t.input(line("pw"));
    t.input(line("new"));
    t.input(line("new"));
    let passwd = ClientMsg::Passwd {
        old: "pw".into(),
        new: "new".into(),
    };
    assert_eq!(
        t.outputs(),
        [
            Output::Prompt(Prompt::NewPassword),
            Output::Prompt(Prompt::Again),
            Output::Prompt(Prompt::Command),
            Output::Send(passwd),
        ]
    );
    // Once the server says so, the new password is the one a reconnect gives.
    t.msg(ServerMsg::Registered { name: "bob".into() });
    t.outputs();
    assert_eq!(t.session.password, Some("new".into()));
}
