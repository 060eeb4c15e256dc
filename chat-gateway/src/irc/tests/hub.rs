//! The IRC codec in a real hub and room: IRCv3 capabilities (lanes, server-time, echo,
//! away-notify, labels, standard replies), PART and JOIN, as clients see them.

use std::time::{Duration, Instant};

use chat_core::{CodecId, Config, ConnId, Due, Hub, Input, Room};

use super::super::{Identity, IrcCodec};

/// 2023-11-14T22:13:20Z.
const T0: u64 = 1_700_000_000_000;

struct World {
    hub: Hub,
    irc: CodecId,
    now: Instant,
}

impl World {
    fn new() -> Self {
        let now = Instant::now();
        let mut hub = Hub::new(Room::new(Config::default(), 7).unwrap(), 1 << 20);
        hub.set_clock(now, T0);
        let codec = IrcCodec::new(Identity {
            server: "srv".into(),
            channel: "#chat".into(),
        });
        let irc = codec.add_to(&mut hub);
        Self { hub, irc, now }
    }

    /// Opens `conn` and sends `lines`; returns what it got.
    fn connect(&mut self, conn: u64, lines: &str) -> String {
        let conn = ConnId(conn);
        self.hub.attach(conn, self.irc);
        self.hub
            .handle_input(self.now, Input::Opened(conn))
            .unwrap();
        self.send(conn.0, lines)
    }

    fn send(&mut self, conn: u64, lines: &str) -> String {
        self.now += Duration::from_millis(1500);
        let conn = ConnId(conn);
        self.hub
            .handle_bytes(self.now, conn, lines.as_bytes())
            .unwrap();
        self.got(conn.0)
    }

    fn got(&mut self, conn: u64) -> String {
        let conn = ConnId(conn);
        let mut got = Vec::new();
        loop {
            let mut chunk = Vec::new();
            let fanout = self.hub.fanout_of(conn);
            if fanout.due(conn, |f| {
                chunk.extend_from_slice(f);
                true
            }) != Due::Write
            {
                return String::from_utf8(got).unwrap();
            }
            fanout.consumed(conn, chunk.len());
            got.extend(chunk);
        }
    }
}

const MODERN: &str = "CAP LS 302\r\nCAP REQ :server-time echo-message away-notify batch labeled-response standard-replies userhost-in-names\r\nNICK ann\r\nUSER a 0 * :Ann A\r\nCAP END\r\n";

#[test]
fn caps_are_negotiated_and_each_lane_gets_its_own_bytes() {
    let mut w = World::new();
    let got = w.connect(1, MODERN);
    assert!(
        got.contains(":srv CAP * LS :cap-notify server-time "),
        "{got}"
    );
    assert!(
        got.contains(":srv CAP * ACK :server-time echo-message "),
        "{got}"
    );
    assert!(got.contains(":srv 001 ann "), "{got}");
    w.connect(2, "NICK bob\r\nUSER b 0 * :Bob\r\n");
    w.got(1);
    let got = w.send(1, "CAP LIST\r\n");
    assert!(
        got.starts_with(":srv CAP ann LIST :cap-notify server-time "),
        "{got}"
    );
    // server-time for those that asked, and the sender gets its echo.
    let got = w.send(2, "PRIVMSG #chat :hi\r\n");
    assert_eq!(got, "", "no echo without echo-message");
    assert_eq!(
        w.got(1),
        "@time=2023-11-14T22:13:26.000Z :bob!bob@srv PRIVMSG #chat :hi\r\n"
    );
    assert_eq!(
        w.send(1, "NOTICE #chat :psst\r\n"),
        "@time=2023-11-14T22:13:27.500Z :ann!ann@srv NOTICE #chat :psst\r\n"
    );
    assert_eq!(w.got(2), ":ann!ann@srv NOTICE #chat :psst\r\n");
    // away-notify for those that asked.
    w.send(2, "AWAY :lunch\r\n");
    assert_eq!(
        w.got(1),
        "@time=2023-11-14T22:13:29.000Z :bob!bob@srv AWAY :lunch\r\n"
    );
    // A lane cannot change once registered.
    assert_eq!(
        w.send(1, "CAP REQ :-server-time\r\n"),
        ":srv CAP ann NAK :-server-time\r\n"
    );
    assert_eq!(
        w.send(2, "CAP REQ :echo-message\r\n"),
        ":srv CAP bob ACK :echo-message\r\n"
    );
    assert_eq!(
        w.send(2, "PRIVMSG #chat :me too\r\n"),
        ":bob!bob@srv PRIVMSG #chat :me too\r\n"
    );
}

#[test]
fn labeled_responses_carry_the_label() {
    let mut w = World::new();
    w.connect(1, MODERN);
    assert_eq!(
        w.send(1, "@label=a1 PING :x\r\n"),
        "@label=a1 :srv PONG srv :x\r\n"
    );
    assert_eq!(w.send(1, "@label=a2 PONG :x\r\n"), "@label=a2 :srv ACK\r\n");
    assert_eq!(
        w.send(1, "@label=a3 NAMES #chat\r\n"),
        "@label=a3 :srv BATCH +b1 labeled-response\r\n\
         @batch=b1 :srv 353 ann = #chat :ann!a@srv\r\n\
         @batch=b1 :srv 366 ann #chat :End of /NAMES list.\r\n:srv BATCH -b1\r\n"
    );
}

#[test]
fn standard_replies_tell_what_the_room_refused() {
    let mut w = World::new();
    w.connect(1, MODERN);
    w.got(1);
    let got = w.send(1, "NICK ab\u{202e}c\r\n");
    assert!(got.contains(" 432 ann ab"), "{got}");
    assert!(got.contains(":srv FAIL * ERRONEUS_NICKNAME :"), "{got}");
}

/// PART and JOIN through the room: the others see PART with the words, the parted member
/// gets nothing meanwhile, and JOIN enters again under the same nick.
#[test]
fn part_and_join_again_through_the_room() {
    let mut w = World::new();
    w.connect(1, "NICK ann\r\nUSER a 0 * :Ann\r\n");
    w.connect(2, "NICK bob\r\nUSER b 0 * :Bob\r\n");
    w.got(1);
    assert_eq!(
        w.send(1, "PART #chat :brb\r\n"),
        ":ann!ann@srv PART #chat :brb\r\n"
    );
    assert_eq!(w.got(2), ":ann!ann@srv PART #chat :brb\r\n");
    w.send(2, "PRIVMSG #chat :anyone?\r\n");
    assert_eq!(w.got(1), "");
    let got = w.send(1, "JOIN #chat\r\n");
    assert!(
        got.starts_with(":ann!ann@srv JOIN #chat\r\n:srv 353 ann = #chat :"),
        "{got}"
    );
    assert!(!got.contains(" 001 "), "{got}");
    assert_eq!(w.got(2), ":ann!ann@srv JOIN #chat\r\n");
    w.send(1, "QUIT :bye now\r\n");
    assert_eq!(w.got(2), ":ann!ann@srv QUIT :bye now\r\n");
}

/// History: a join's replay shows each line's time ([HH:MM], or server-time tags), and
/// CHATHISTORY fetches by time in a `chathistory` batch with the original times.
#[test]
fn history_shows_its_times_and_chathistory_fetches_by_time() {
    let mut w = World::new();
    w.connect(2, "NICK bob\r\nUSER b 0 * :Bob\r\n");
    w.send(2, "PRIVMSG #chat :one\r\n"); // T0 + 3 s
    w.send(2, "PRIVMSG #chat :\x01ACTION two\x01\r\n"); // T0 + 4.5 s
    w.send(2, "NOTICE #chat :three\r\n"); // T0 + 6 s
    let got = w.connect(3, "NICK cy\r\nUSER c 0 * :Cy\r\n");
    assert!(
        got.contains(":srv NOTICE #chat :[22:13] <bob> one\r\n:srv NOTICE #chat :[22:13] * bob two\r\n:srv NOTICE #chat :[22:13] -bob- three\r\n"),
        "{got}"
    );
    let modern = MODERN.replace("userhost-in-names", "userhost-in-names draft/chathistory");
    let got = w.connect(1, &modern);
    assert!(
        got.contains("@time=2023-11-14T22:13:23.000Z :srv NOTICE #chat :[earlier] <bob> one\r\n"),
        "{got}"
    );
    assert!(got.contains(" CHATHISTORY=100 "), "{got}");
    assert_eq!(
        w.send(1, "CHATHISTORY LATEST #chat * 2\r\n"),
        ":srv BATCH +b1 chathistory #chat\r\n\
         @batch=b1;time=2023-11-14T22:13:24.500Z :bob!bob@srv PRIVMSG #chat :\x01ACTION two\x01\r\n\
         @batch=b1;time=2023-11-14T22:13:26.000Z :bob!bob@srv NOTICE #chat :three\r\n\
         :srv BATCH -b1\r\n"
    );
    let got = w.send(
        1,
        "CHATHISTORY BEFORE #chat timestamp=2023-11-14T22:13:24.500Z 10\r\n",
    );
    assert!(got.contains(":bob!bob@srv PRIVMSG #chat :one\r\n"), "{got}");
    assert!(!got.contains("two"), "{got}");
    let got = w.send(
        1,
        "CHATHISTORY BETWEEN #chat timestamp=2023-11-14T22:13:23.000Z timestamp=2023-11-14T22:13:26.000Z 10\r\n",
    );
    assert!(
        got.contains("two") && !got.contains("one") && !got.contains("three"),
        "{got}"
    );
    assert_eq!(
        w.send(1, "CHATHISTORY LATEST #other * 2\r\n"),
        ":srv FAIL CHATHISTORY INVALID_TARGET LATEST #other :Only #chat has a history here\r\n"
    );
    assert!(
        w.send(1, "CHATHISTORY AFTER #chat msgid=x 2\r\n")
            .contains("INVALID_PARAMS")
    );
    // Without the capability, there is no such command.
    assert!(
        w.send(3, "CHATHISTORY LATEST #chat * 2\r\n")
            .contains(" 421 cy CHATHISTORY ")
    );
}

/// MONITOR tells a watcher when a watched nick comes, is renamed, or goes.
#[test]
fn monitor_tells_of_watched_nicks_coming_and_going() {
    let mut w = World::new();
    w.connect(1, "NICK ann\r\nUSER a 0 * :Ann\r\n");
    assert_eq!(
        w.send(1, "MONITOR + bob,bobby\r\n"),
        ":srv 731 ann :bob,bobby\r\n"
    );
    w.connect(2, "NICK bob\r\nUSER b 0 * :Bob\r\n");
    assert_eq!(
        w.got(1),
        ":bob!bob@srv JOIN #chat\r\n:srv 730 ann :bob!bob@srv\r\n"
    );
    w.send(2, "NICK bobby\r\n");
    assert_eq!(
        w.got(1),
        ":bob!bob@srv NICK bobby\r\n:srv 731 ann :bob\r\n:srv 730 ann :bobby!bobby@srv\r\n"
    );
    w.send(1, "MONITOR - bob\r\n");
    w.send(2, "QUIT\r\n");
    assert_eq!(
        w.got(1),
        ":bobby!bobby@srv QUIT :left\r\n:srv 731 ann :bobby\r\n"
    );
}
