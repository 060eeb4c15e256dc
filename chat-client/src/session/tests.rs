//! The session state machine driven directly: a fake clock, inputs in, whole output sequences
//! compared. No sockets, no runtime, no sleeps.

use chat_proto::{NameRule, Refusal, encode_to_vec};

use super::*;

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
        members: members.iter().map(|m| (*m).into()).collect(),
        limits: limits(),
        seq: 0,
    }
}

fn hello(name: &str) -> Output {
    Output::Send(ClientMsg::Hello {
        magic: MAGIC,
        version: PROTOCOL_VERSION,
        name: name.into(),
    })
}

fn out(text: &str) -> Output {
    Output::Print(Line::Out(text.into()))
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
            host: "127.0.0.1".into(),
            port: 7878,
            name: name.map(Into::into),
        };
        let now = Instant::now();
        Test {
            session: Session::new(now, &config, interactive),
            start: now,
            now,
        }
    }

    /// A scripted session named `name`, connected, its hello already taken.
    fn connected(name: &str) -> Self {
        let mut test = Test::new(Some(name), false);
        assert_eq!(test.outputs(), [Output::Connect]);
        test.session.handle_connected();
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
        self.session.handle_msg(msg);
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
            self.session.handle_read(n);
            bytes = &bytes[n..];
        }
    }
}

#[test]
fn welcome_chat_and_shutdown_are_shown_and_exit_1() {
    let mut t = Test::connected("alice");
    t.msg(welcome("alice", &["alice", "bob"]));
    t.msg(ServerMsg::Chat {
        seq: 1,
        from: "bob".into(),
        text: "hi \x1b[31mthere\u{202e}".into(),
    });
    t.msg(ServerMsg::Joined {
        name: "carol".into(),
    });
    t.msg(ServerMsg::Left {
        name: "carol".into(),
        reason: CloseReason::IdleTimeout,
    });
    t.msg(ServerMsg::Closing(CloseReason::ServerShutdown));
    assert_eq!(
        t.outputs(),
        [
            out("* joined as alice; online: alice, bob"),
            out("bob: hi \\x1b[31mthere\\u{202e}"),
            out("* carol joined"),
            out("* carol left (timed out)"),
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
    t.session.handle_connected();
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
        names: vec!["alice".into(), "bob".into()],
    });
    t.input(InputEvent::Eof);
    assert!(!t.session.wants_input());
    t.msg(ServerMsg::Closing(CloseReason::Left));
    assert_eq!(
        t.outputs(),
        [
            Output::Send(ClientMsg::Chat {
                text: "hello  world ".into()
            }),
            err("error: unknown command 'bogus'; type help for the commands"),
            err("error: nothing to send; type send <MSG>"),
            Output::Send(ClientMsg::Who),
            err("error: message is longer than 64 bytes; not sent"),
            out("* online: alice, bob"),
            Output::Send(ClientMsg::Leave),
            Output::Exit(EXIT_OK),
        ]
    );
}

#[test]
fn a_message_of_exactly_the_limit_is_sent() {
    let mut t = Test::joined();
    let text = "x".repeat(64);
    t.input(line(&format!("send {text}")));
    assert_eq!(t.outputs(), [Output::Send(ClientMsg::Chat { text })]);
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
            Output::Send(ClientMsg::Chat {
                text: "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaé".into()
            }),
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
    expected.push(Output::Send(ClientMsg::Leave));
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
    t.session.handle_connected();
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
        t.session.handle_connected();
        t.outputs();
        t.input(event.clone());
        assert_eq!(t.outputs(), [Output::Exit(EXIT_OK)]);
    }
}

#[test]
fn ctrl_c_in_the_room_leaves() {
    let mut t = Test::new(Some("alice"), true);
    t.session.handle_connected();
    t.msg(welcome("alice", &["alice"]));
    t.outputs();
    t.input(InputEvent::Interrupted);
    assert!(t.session.wants_input(), "a terminal is always read");
    t.input(line("send too late"));
    t.msg(ServerMsg::Closing(CloseReason::Left));
    assert_eq!(
        t.outputs(),
        [Output::Send(ClientMsg::Leave), Output::Exit(EXIT_OK)]
    );
}

#[test]
fn a_dead_server_is_one_error_line_and_exit_1() {
    let mut t = Test::joined();
    t.session.handle_read(0);
    t.session.handle_closed();
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
    assert_eq!(t.outputs(), [Output::Send(ClientMsg::Leave)]);
    t.advance_to(Duration::from_secs(5) + LEAVE_GRACE);
    assert_eq!(t.outputs(), [Output::Exit(EXIT_OK)]);
    assert_eq!(t.session.poll_timeout(), None);
}

#[test]
fn the_connection_closing_after_leave_is_a_clean_exit() {
    let mut t = Test::joined();
    t.input(line("leave"));
    t.session.handle_read(0);
    assert_eq!(
        t.outputs(),
        [Output::Send(ClientMsg::Leave), Output::Exit(EXIT_OK)]
    );
}

#[test]
fn a_closing_frame_other_than_left_while_leaving_is_shown_but_exits_0() {
    let mut t = Test::joined();
    t.input(line("leave"));
    t.msg(ServerMsg::Closing(CloseReason::ServerShutdown));
    assert_eq!(
        t.outputs(),
        [
            Output::Send(ClientMsg::Leave),
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
    t.session.handle_connect_failed("connection refused");
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
    t.session.handle_connected();
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
    t.msg(ServerMsg::Chat {
        seq: 2,
        from: "bob".into(),
        text: "late".into(),
    });
    t.input(line("send late"));
    t.session.handle_closed();
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
