//! The IRC gateway over raw sockets: registration, every command and numeric, the room's limits,
//! both directions with native members, and a real IRC client program (`ii`).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use chat_proto::{CloseReason, ServerMsg};
use tests::{RawClient, ServerConfig, chat, joined, left, start_server, test_config, wait_until};

mod clients;

/// How long to wait for one line.
const WAIT: Duration = Duration::from_secs(10);

/// The IRCv3 capabilities the gateway offers.
const OFFERED: &str = "cap-notify server-time message-tags echo-message batch labeled-response \
    away-notify multi-prefix userhost-in-names standard-replies draft/chathistory";

/// The join of an IRC member registered by [`Irc::register`], as a native member sees it:
/// with the user name and real name of its USER.
fn joined_irc(nick: &str) -> ServerMsg {
    ServerMsg::Joined {
        name: nick.into(),
        time: 0,
        ident: Some(std::sync::Arc::new(chat_proto::Ident {
            user: nick.into(),
            realname: nick.into(),
        })),
    }
}

/// A test config serving IRC on a free port, as `irc.test`.
fn irc_config() -> ServerConfig {
    let mut config = test_config();
    config.irc_port = Some(0);
    config.irc_server_name = Some("irc.test".into());
    config
}

/// A blocking IRC client that speaks raw lines.
struct Irc {
    stream: TcpStream,
    reader: BufReader<TcpStream>,
    nick: String,
}

impl Irc {
    fn connect(addr: SocketAddr) -> Self {
        let stream = TcpStream::connect(addr).expect("connect to the IRC port");
        stream.set_read_timeout(Some(WAIT)).unwrap();
        let reader = BufReader::new(stream.try_clone().unwrap());
        Self {
            stream,
            reader,
            nick: "*".into(),
        }
    }

    /// Connects and registers as `nick`; returns the lines up to the end of the names list.
    fn register(addr: SocketAddr, nick: &str) -> (Self, Vec<String>) {
        let mut irc = Self::connect(addr);
        irc.send(&format!("NICK {nick}"));
        irc.send(&format!("USER {nick} 0 * :{nick}"));
        let lines = irc.until(" 366 ");
        assert!(
            lines[0].starts_with(&format!(":irc.test 001 {nick} ")),
            "{lines:?}"
        );
        irc.nick = nick.into();
        (irc, lines)
    }

    fn send(&mut self, line: &str) {
        self.send_raw(format!("{line}\r\n").as_bytes());
    }

    fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write");
    }

    /// The next line without CR LF; `None` at end of stream. Panics on timeout.
    fn try_line(&mut self) -> Option<String> {
        let mut line = String::new();
        match self.reader.read_line(&mut line) {
            Ok(0) => None,
            Ok(_) => {
                assert!(line.ends_with("\r\n"), "line without CR LF: {line:?}");
                assert!(line.len() <= 512, "line over 512 bytes: {line:?}");
                line.truncate(line.len() - 2);
                Some(line)
            }
            Err(e) => panic!("{}: no line within {WAIT:?}: {e}", self.nick),
        }
    }

    fn line(&mut self) -> String {
        self.try_line()
            .unwrap_or_else(|| panic!("{}: closed while waiting for a line", self.nick))
    }

    /// Lines up to and including the first that contains `what`.
    fn until(&mut self, what: &str) -> Vec<String> {
        let mut seen = Vec::new();
        loop {
            let line = self.line();
            let found = line.contains(what);
            seen.push(line);
            if found {
                return seen;
            }
        }
    }

    /// Asserts the next line is exactly `expected`.
    fn expect(&mut self, expected: &str) {
        assert_eq!(self.line(), expected, "{}'s next line", self.nick);
    }

    /// Reads to the end of stream; returns the lines.
    fn until_closed(&mut self) -> Vec<String> {
        let mut seen = Vec::new();
        while let Some(line) = self.try_line() {
            seen.push(line);
        }
        seen
    }
}

/// The names of a 353 line, sorted.
fn names_of<'a>(line: &'a str, head: &str) -> Vec<&'a str> {
    let names = line
        .strip_prefix(head)
        .unwrap_or_else(|| panic!("not a names line: {line}"));
    let mut names: Vec<&str> = names.split(' ').collect();
    names.sort();
    names
}

#[test]
fn cap_nick_and_user_register_with_welcome_numerics_join_and_names() {
    let server = start_server(irc_config());
    let addr = server.irc_addr().unwrap();
    let (_native, _) = RawClient::join(server.addr(), "nat");
    let mut irc = Irc::connect(addr);
    irc.send("CAP LS 302");
    irc.expect(&format!(":irc.test CAP * LS :{OFFERED}"));
    irc.send("NICK ann");
    irc.send("USER ann 0 * :Ann");
    irc.send("CAP REQ :multi-prefix");
    irc.expect(":irc.test CAP * ACK :multi-prefix");
    irc.send("CAP REQ :sasl");
    irc.expect(":irc.test CAP * NAK :sasl");
    irc.send("CAP END");
    let lines = irc.until(" 366 ");
    let numerics: Vec<&str> = lines.iter().map(|l| l.split(' ').nth(1).unwrap()).collect();
    assert_eq!(
        numerics,
        [
            "001", "002", "003", "004", "005", "005", "422", "JOIN", "353", "366"
        ]
    );
    let isupport = format!("{} {}", lines[4], lines[5]);
    assert!(isupport.contains(" CHANTYPES=# ") && isupport.contains(" NICKLEN=32 "));
    assert_eq!(lines[7], ":ann!ann@irc.test JOIN #chat");
    assert_eq!(
        names_of(&lines[8], ":irc.test 353 ann = #chat :"),
        ["ann", "nat"]
    );
    assert_eq!(lines[9], ":irc.test 366 ann #chat :End of /NAMES list.");
}

#[test]
fn every_command_gets_its_answer_and_unknown_ones_421_without_closing() {
    let server = start_server(irc_config());
    let addr = server.irc_addr().unwrap();
    let mut early = Irc::connect(addr);
    early.send("PRIVMSG #chat :too soon");
    early.expect(":irc.test 451 * :You have not registered");
    early.send("PING :x1");
    early.expect(":irc.test PONG irc.test :x1");
    early.send("NICK");
    early.expect(":irc.test 431 * :No nickname given");
    early.send("USER u");
    early.expect(":irc.test 461 * USER :Not enough parameters");

    let (_other, _) = RawClient::join(server.addr(), "nat");
    let (mut irc, _) = Irc::register(addr, "ann");
    // Member lists come in the room's order, which is not the order of joining.
    irc.send("JOIN #chat");
    irc.expect(":ann!ann@irc.test JOIN #chat");
    let line = irc.line();
    assert_eq!(
        names_of(&line, ":irc.test 353 ann = #chat :"),
        ["ann", "nat"]
    );
    irc.expect(":irc.test 366 ann #chat :End of /NAMES list.");
    irc.send("NAMES #chat");
    let line = irc.line();
    assert_eq!(
        names_of(&line, ":irc.test 353 ann = #chat :"),
        ["ann", "nat"]
    );
    irc.expect(":irc.test 366 ann #chat :End of /NAMES list.");
    irc.send("WHO #chat");
    let mut who = vec![irc.line(), irc.line()];
    who.sort();
    assert_eq!(
        who,
        [
            ":irc.test 352 ann #chat ann irc.test irc.test ann H :0 ann",
            ":irc.test 352 ann #chat nat irc.test irc.test nat H :0 nat",
        ]
    );
    irc.expect(":irc.test 315 ann #chat :End of /WHO list.");
    let cases: &[(&str, &[&str])] = &[
        (
            "JOIN #other",
            &[":irc.test 403 ann #other :No such channel"],
        ),
        (
            "JOIN #other",
            &[":irc.test 403 ann #other :No such channel"],
        ),
        (
            "WHO NAT",
            &[
                ":irc.test 352 ann * nat irc.test irc.test nat H :0 nat",
                ":irc.test 315 ann NAT :End of /WHO list.",
            ],
        ),
        ("TOPIC #chat", &[":irc.test 331 ann #chat :No topic is set"]),
        ("MODE #chat", &[":irc.test 324 ann #chat +nt"]),
        (
            "MODE #chat b",
            &[":irc.test 368 ann #chat :End of channel ban list"],
        ),
        ("MODE ann +i", &[":irc.test 221 ann +"]),
        ("PING :tok", &[":irc.test PONG irc.test :tok"]),
        (
            "AWAY :lunch",
            &[":irc.test 306 ann :You have been marked as being away"],
        ),
        (
            "AWAY",
            &[":irc.test 305 ann :You are no longer marked as being away"],
        ),
        (
            "USERHOST nat nobody",
            &[":irc.test 302 ann :nat=+nat@irc.test"],
        ),
        (
            "PRIVMSG nat :psst",
            &[":irc.test 404 ann nat :Private messages are not carried here; write to #chat"],
        ),
        (
            "PRIVMSG nobody :psst",
            &[":irc.test 401 ann nobody :No such nick/channel"],
        ),
        (
            "PRIVMSG #other :hi",
            &[":irc.test 403 ann #other :No such channel"],
        ),
        ("PRIVMSG #chat", &[":irc.test 412 ann :No text to send"]),
        (
            "NICK bad*nick",
            &[
                ":irc.test 432 ann bad*nick :Erroneous nickname: IRC nicks cannot hold ! @ , % * ? or start with : # & + ~",
            ],
        ),
        (
            "USER a 0 * :A",
            &[":irc.test 462 ann :You may not reregister"],
        ),
        (
            "WHOIS nat",
            &[
                ":irc.test 311 ann nat nat irc.test * :nat",
                ":irc.test 319 ann nat :#chat",
                ":irc.test 312 ann nat irc.test :a gateway to one chat room",
                ":irc.test 318 ann nat :End of /WHOIS list.",
            ],
        ),
        ("FOO", &[":irc.test 421 ann FOO :Unknown command"]),
        (
            "PRIVMSG #chat :\x07bell",
            &[":irc.test 404 ann #chat :message contains control characters; not sent"],
        ),
    ];
    for (command, answer) in cases {
        irc.send(command);
        for line in *answer {
            irc.expect(line);
        }
    }
    irc.send("PART #chat :done here");
    irc.expect(":ann!ann@irc.test PART #chat :done here");
    // Still connected, out of the room.
    irc.send("PRIVMSG #chat :hi");
    irc.expect(":irc.test 442 ann #chat :You're not on that channel");
    irc.send("QUIT");
    irc.expect("ERROR :Closing link: left");
    assert_eq!(irc.try_line(), None);
}

#[test]
fn chat_joins_leaves_and_who_cross_between_irc_and_native_members() {
    let server = start_server(irc_config());
    let addr = server.irc_addr().unwrap();
    let (mut nat, _) = RawClient::join(server.addr(), "nat");
    let (mut irc, lines) = Irc::register(addr, "ann");
    assert_eq!(
        names_of(&lines[8], ":irc.test 353 ann = #chat :"),
        ["ann", "nat"]
    );
    assert_eq!(nat.recv(), joined_irc("ann"));

    irc.send("PRIVMSG #chat :hello from irc");
    irc.send("NOTICE #chat :a notice");
    irc.send("PRIVMSG #chat :\x01ACTION waves\x01");
    irc.send("PRIVMSG #chat :\x02bold\x02 and \x0304red\x03");
    use chat_proto::ChatKind::{Action, Notice, Plain};
    let said = [
        ("hello from irc", Plain),
        ("a notice", Notice),
        ("waves", Action),
        ("bold and red", Plain),
    ];
    for (text, kind) in said {
        match nat.recv() {
            ServerMsg::Chat {
                from,
                text: got,
                kind: got_kind,
                ..
            } => assert_eq!((from.as_str(), got.as_str(), got_kind), ("ann", text, kind)),
            other => panic!("expected chat, got {other:?}"),
        }
    }
    nat.send(&chat("hello from native"));
    irc.expect(":nat!nat@irc.test PRIVMSG #chat :hello from native");
    nat.send(&chat("/me nods"));
    irc.expect(":nat!nat@irc.test PRIVMSG #chat :\x01ACTION nods\x01");
    let long = "ü".repeat(500);
    nat.send(&chat(&long));
    let mut got = String::new();
    while got.len() < long.len() {
        let line = irc.line();
        got.push_str(
            line.strip_prefix(":nat!nat@irc.test PRIVMSG #chat :")
                .unwrap(),
        );
    }
    assert_eq!(got, long);

    nat.send(&tests::hello("x"));
    assert_eq!(
        nat.recv(),
        ServerMsg::Refused(chat_proto::Refusal::AlreadyJoined)
    );
    nat.send(&chat_proto::ClientMsg::Who);
    match nat.recv() {
        ServerMsg::Members { members } => {
            let mut names: Vec<&str> = members.iter().map(|m| &*m.name).collect();
            names.sort();
            assert_eq!(names, ["ann", "nat"]);
        }
        other => panic!("expected members, got {other:?}"),
    }

    let (mut nat2, _) = RawClient::join(server.addr(), "nat2");
    irc.expect(":nat2!nat2@irc.test JOIN #chat");
    nat2.send(&chat_proto::ClientMsg::Leave { message: None });
    irc.expect(":nat2!nat2@irc.test QUIT :left");

    irc.send("QUIT :bye");
    irc.expect("ERROR :Closing link: left");
    assert_eq!(nat.recv(), joined("nat2"));
    assert_eq!(nat.recv(), left("nat2", CloseReason::Left));
    let mut gone = left("ann", CloseReason::Left);
    if let ServerMsg::Left { message, .. } = &mut gone {
        *message = Some("bye".into());
    }
    assert_eq!(nat.recv(), gone);
}

#[test]
fn native_names_irc_cannot_carry_reach_irc_escaped_one_to_one() {
    let server = start_server(irc_config());
    let (mut irc, _) = Irc::register(server.irc_addr().unwrap(), "ann");
    let mut natives = Vec::new();
    for (name, nick) in [
        ("a!b@c", "a%21b%40c"),
        (":x", "%3Ax"),
        ("#y", "%23y"),
        ("50%", "50%25"),
    ] {
        let (mut nat, _) = RawClient::join(server.addr(), name);
        irc.expect(&format!(":{nick}!{nick}@irc.test JOIN #chat"));
        nat.send(&chat("hi"));
        irc.expect(&format!(":{nick}!{nick}@irc.test PRIVMSG #chat :hi"));
        natives.push(nat);
    }
    irc.send("NAMES");
    let line = irc.line();
    assert_eq!(
        names_of(&line, ":irc.test 353 ann = #chat :"),
        ["%23y", "%3Ax", "50%25", "a%21b%40c", "ann"]
    );
    // An IRC client cannot register a nick that would need escaping.
    let mut bad = Irc::connect(server.irc_addr().unwrap());
    bad.send("NICK 50%25");
    let line = bad.line();
    assert!(line.starts_with(":irc.test 432 * 50%25 :"), "{line}");
}

#[test]
fn invalid_then_taken_then_free_nick_432_433_then_welcome() {
    let server = start_server(irc_config());
    let (_sam, _) = RawClient::join(server.addr(), "sam");
    let mut irc = Irc::connect(server.irc_addr().unwrap());
    irc.send("NICK abcdefghijklmnopqrstuvwxyzabcdefghijk");
    irc.send("USER u 0 * :U");
    irc.expect(
        ":irc.test 432 * abcdefghijklmnopqrstuvwxyzabcdefghijk :Erroneous nickname: name is longer than 32 characters",
    );
    irc.send("NICK SAM");
    irc.expect(":irc.test 433 * SAM :Nickname is already in use (or one that looks the same)");
    irc.send("NICK sam2");
    let lines = irc.until(" 366 ");
    assert_eq!(lines[0], ":irc.test 001 sam2 :Welcome to the chat, sam2");
}

#[test]
fn a_look_alike_of_a_native_name_gets_433() {
    let server = start_server(irc_config());
    let (_zoe, _) = RawClient::join(server.addr(), "Zoë");
    let mut irc = Irc::connect(server.irc_addr().unwrap());
    irc.send("NICK ZOE\u{308}");
    irc.send("USER u 0 * :U");
    irc.expect(
        ":irc.test 433 * ZOE\u{308} :Nickname is already in use (or one that looks the same)",
    );
    irc.send("NICK ｚｏë");
    irc.expect(":irc.test 433 * ｚｏë :Nickname is already in use (or one that looks the same)");
}

#[test]
fn a_nick_race_between_irc_and_native_has_one_winner() {
    let server = start_server(irc_config());
    for round in 0..20 {
        let name = format!("racer{round}");
        let addr = server.addr();
        let irc_addr = server.irc_addr().unwrap();
        let native_name = name.clone();
        let native = std::thread::spawn(move || {
            let mut nat = RawClient::connect(addr);
            nat.send(&tests::hello(&native_name));
            let won = matches!(nat.recv(), ServerMsg::Welcome { .. });
            (won, nat)
        });
        let mut irc = Irc::connect(irc_addr);
        irc.send(&format!("NICK {}", name.to_uppercase()));
        irc.send("USER u 0 * :U");
        let first = irc.line();
        let irc_won = first.contains(" 001 ");
        assert!(irc_won || first.contains(" 433 "), "{first}");
        let (native_won, _nat) = native.join().unwrap();
        assert!(
            irc_won != native_won,
            "round {round}: irc {irc_won}, native {native_won}"
        );
    }
}

#[test]
fn a_5000_byte_line_gets_417_and_the_connection_goes_on() {
    let server = start_server(irc_config());
    let (mut nat, _) = RawClient::join(server.addr(), "nat");
    let (mut irc, _) = Irc::register(server.irc_addr().unwrap(), "ann");
    let _ = nat.recv();
    let long = format!("PRIVMSG #chat :{}\r\n", "x".repeat(5000));
    for chunk in long.as_bytes().chunks(700) {
        irc.send_raw(chunk);
    }
    irc.expect(":irc.test 417 ann :Input line was too long");
    irc.send(&format!("PRIVMSG #chat :{}", "y".repeat(495))); // 512 bytes with CR LF
    irc.send("PING :still-here");
    irc.expect(":irc.test PONG irc.test :still-here");
    match nat.recv() {
        ServerMsg::Chat { text, .. } => assert_eq!(text, "y".repeat(495)),
        other => panic!("expected the 512-byte line's chat, got {other:?}"),
    }
}

/// Registers on a server allowing 5 requests a second (burst 5, 3 strikes), sends `lines` in
/// one write, and returns what came back until the link closed: the rate notice must be among
/// it, and the flooding error last.
fn flood(lines: impl Iterator<Item = String>) -> Vec<String> {
    let mut config = irc_config();
    config.room.rate_per_sec = 5;
    config.room.burst = 5;
    config.room.flood_strikes = 3;
    let server = start_server(config);
    let (mut irc, _) = Irc::register(server.irc_addr().unwrap(), "ann");
    let flood: String = lines.map(|line| line + "\r\n").collect();
    irc.send_raw(flood.as_bytes());
    let got = irc.until_closed();
    assert!(
        got.contains(&":irc.test NOTICE ann :sending too fast; message dropped".to_owned()),
        "{got:?}"
    );
    assert_eq!(got.last().unwrap(), "ERROR :Closing link: flooding");
    got
}

#[test]
fn a_flood_gets_rate_notices_then_error_and_close() {
    flood((0..50).map(|i| format!("PRIVMSG #chat :spam {i}")));
}

/// What the gateway answers itself is paid for like a message: a flood of `PING`s gets no
/// more `PONG`s than the burst, then the rate notice, then the link closed for flooding.
#[test]
fn a_flood_of_pings_is_paid_for_like_messages() {
    let got = flood((0..500).map(|i| format!("PING :t{i}")));
    let pongs = got.iter().filter(|l| l.contains(" PONG ")).count();
    assert!((1..=5).contains(&pongs), "{pongs} pongs: {got:?}");
}

#[test]
fn a_silent_connection_times_out_in_the_handshake_and_a_silent_member_after_a_ping() {
    let mut config = irc_config();
    config.room.handshake_timeout = Duration::from_millis(300);
    config.room.ping_interval = Duration::from_millis(200);
    config.room.idle_timeout = Duration::from_millis(600);
    let server = start_server(config);
    let started = Instant::now();
    let mut silent = Irc::connect(server.irc_addr().unwrap());
    silent.send("CAP LS 302"); // negotiation never ends: the deadline counts from connect
    assert_eq!(
        silent.until_closed(),
        [
            format!(":irc.test CAP * LS :{OFFERED}").as_str(),
            "ERROR :Closing link: handshake timed out"
        ]
    );
    assert!(started.elapsed() < Duration::from_secs(3));

    let (mut member, _) = Irc::register(server.irc_addr().unwrap(), "ann");
    let ping = member.line();
    let nonce = ping.strip_prefix("PING :").expect("a ping");
    member.send(&format!("PONG :{nonce}"));
    // Answered once, then silent: pinged again, then closed.
    let lines = member.until_closed();
    assert!(lines[0].starts_with("PING :"), "{lines:?}");
    assert_eq!(lines.last().unwrap(), "ERROR :Closing link: timed out");
}

#[test]
fn an_irc_member_that_never_reads_is_closed_as_too_slow() {
    let mut config = irc_config();
    // A small bound, and an unpaced sender: its own broadcasts, many times the bound, are no
    // lag of its own (they closed the sender too before the fan-out stopped counting them).
    config.queue_bytes = 32 * 1024;
    config.room.rate_per_sec = 1_000_000;
    config.room.burst = 1_000_000;
    let server = start_server(config);
    let (mut nat, _) = RawClient::join(server.addr(), "nat");
    // The stalled member: a tiny receive buffer, and it never reads after registering.
    let stream = tests::connect_small_window(server.irc_addr().unwrap());
    stream.set_read_timeout(Some(WAIT)).unwrap();
    let mut irc = Irc {
        reader: BufReader::new(stream.try_clone().unwrap()),
        stream,
        nick: "ann".into(),
    };
    irc.send("NICK ann");
    irc.send("USER ann 0 * :ann");
    irc.until(" 366 ");
    assert_eq!(nat.recv(), joined_irc("ann"));
    let text = "z".repeat(900);
    let deadline = Instant::now() + WAIT;
    let too_slow = || {
        server
            .stats()
            .too_slow
            .load(std::sync::atomic::Ordering::Relaxed)
    };
    while too_slow() == 0 && Instant::now() < deadline {
        for _ in 0..100 {
            nat.send(&chat(&text));
        }
    }
    assert_eq!(
        too_slow(),
        1,
        "the stalled IRC member was not closed as too slow"
    );
    loop {
        match nat.recv() {
            ServerMsg::Left { name, reason, .. } if name == "ann" => {
                assert_eq!(reason, CloseReason::TooSlow);
                break;
            }
            ServerMsg::Error(e) => panic!("the sender was refused: {e}"),
            _ => {}
        }
    }
}

/// Kills a child when the test ends, however it ends.
struct Kill(std::process::Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `ii`, a file-driven IRC client from Debian, registers and talks with `chat-client`.
#[test]
fn the_ii_irc_client_exchanges_messages_with_chat_client() {
    let server = start_server(irc_config());
    ii_talks_with_chat_client(server.addr(), server.irc_addr().unwrap());
}

/// chat-gateway's blocking `std::net` example serves the same IRC entrance over threads:
/// `ii` and `chat-client` talk through it as through the server.
#[test]
fn the_ii_irc_client_talks_with_chat_client_through_the_blocking_example() {
    let mut child = std::process::Command::new(tests::example("chat-gateway", "irc_blocking"))
        .args(["0", "0"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn the irc_blocking example");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let _example = Kill(child);
    let mut addr = |prefix: &str| -> SocketAddr {
        let line = lines.next().expect("a line").expect("a line of text");
        let addr = line.strip_prefix(prefix);
        addr.unwrap_or_else(|| panic!("expected {prefix:?}, got {line:?}"))
            .parse()
            .unwrap()
    };
    let chat_addr = addr("listening on ");
    let irc_addr = addr("irc on ");
    ii_talks_with_chat_client(chat_addr, irc_addr);
}

/// `ii` registers on `irc_addr` and exchanges messages with `chat-client` on `chat_addr`, then
/// leaves; `chat-client` sees it come, speak and go.
fn ii_talks_with_chat_client(chat_addr: SocketAddr, irc_addr: SocketAddr) {
    if std::process::Command::new("ii").arg("-v").output().is_err() {
        panic!("ii is not installed: `apt-get install -y ii` (cargo xtask ci installs it)");
    }
    // The native side: chat-client in scripted mode.
    let mut client = std::process::Command::new(tests::binary("chat-client"))
        .args(["--port", &chat_addr.port().to_string(), "--name", "nat"])
        .env_remove("CHAT_HOST")
        .env_remove("CHAT_PORT")
        .env_remove("CHAT_NAME")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn chat-client");
    let mut stdin = client.stdin.take().unwrap();
    let stdout = client.stdout.take().unwrap();
    let _client = Kill(client);
    let (tx, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let expect = |want: &str| loop {
        match lines.recv_timeout(WAIT) {
            Ok(line) if line == want => return,
            Ok(_) => {}
            Err(e) => panic!("chat-client did not print {want:?} within {WAIT:?}: {e}"),
        }
    };
    expect("* joined as nat; online: nat");

    let dir = std::env::temp_dir().join(format!(
        "chat-ii-{}-{}",
        std::process::id(),
        irc_addr.port()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let ii = std::process::Command::new("ii")
        .args(["-s", "127.0.0.1", "-p", &irc_addr.port().to_string()])
        .args(["-n", "iiuser", "-f", "ii user", "-i"])
        .arg(&dir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn ii");
    let _ii = Kill(ii);
    expect("* iiuser joined");

    // ii's `in` files are FIFOs: ii reads a line from them per write.
    let chan = dir.join("127.0.0.1").join("#chat");
    let chan_in = chan.join("in");
    assert!(wait_until(WAIT, || chan_in.exists()), "ii made no #chat/in");
    let mut fifo = std::fs::OpenOptions::new()
        .write(true)
        .open(&chan_in)
        .unwrap();
    fifo.write_all(b"hello from ii\n").unwrap();
    fifo.flush().unwrap();
    expect("iiuser: hello from ii");

    writeln!(stdin, "send hello from chat-client").unwrap();
    stdin.flush().unwrap();
    let out = chan.join("out");
    let arrived = wait_until(WAIT, || {
        let mut text = String::new();
        std::fs::File::open(&out)
            .and_then(|mut f| f.read_to_string(&mut text))
            .is_ok()
            && text.contains("<nat> hello from chat-client")
    });
    assert!(
        arrived,
        "ii did not write chat-client's message to {}",
        out.display()
    );

    // ii leaves: chat-client sees it go.
    let server_in = dir.join("127.0.0.1").join("in");
    let mut fifo = std::fs::OpenOptions::new()
        .write(true)
        .open(&server_in)
        .unwrap();
    fifo.write_all(b"/q bye\n").unwrap();
    // With its words: `/q bye` is `QUIT :bye`.
    expect("* iiuser left: bye");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_motd_file_is_the_message_of_the_day_and_an_unreadable_one_stops_the_start() {
    let dir = tests::TempDir::new("chat-motd");
    let motd = dir.0.join("motd.txt");
    std::fs::write(&motd, "Welcome to the room.\nBe kind.\n").unwrap();
    let mut config = irc_config();
    config.irc_motd = Some(motd.clone());
    let server = start_server(config);
    let (mut irc, lines) = Irc::register(server.irc_addr().unwrap(), "reader");
    let text: Vec<&String> = lines.iter().filter(|l| l.contains(" 372 ")).collect();
    assert_eq!(text.len(), 2, "{lines:?}");
    assert!(text[0].ends_with(":- Welcome to the room."), "{lines:?}");
    assert!(lines.iter().any(|l| l.contains(" 376 ")), "{lines:?}");
    irc.send("MOTD");
    assert!(
        irc.until(" 376 ")
            .iter()
            .any(|l| l.ends_with(":- Be kind."))
    );
    // Without a file: 422. With one that cannot be read: the binary says so and exits 1.
    let (mut plain, lines) = Irc::register(start_server(irc_config()).irc_addr().unwrap(), "r");
    assert!(lines.iter().any(|l| l.contains(" 422 ")), "{lines:?}");
    plain.send("QUIT");
    let out = std::process::Command::new(tests::binary("chat-server"))
        .args(["--port", "0", "--irc-port", "0", "--irc-motd"])
        .arg(dir.0.join("missing.txt"))
        .output()
        .expect("run chat-server");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot read --irc-motd"), "{err}");
}
