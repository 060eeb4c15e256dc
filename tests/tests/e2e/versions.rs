//! Protocol v3 with every kind of client in one room: a v2 client (a raw client speaking v2), a
//! v3 client, an IRC client and the page. Each gets what its protocol can carry: the v2 client
//! an action as `/me ` text and a rename as a leave and a join, nothing of away; IRC a CTCP
//! ACTION, a NOTICE and a NICK; the page typed messages with their times.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use chat_proto::v2;
use chat_proto::{ChatKind, ClientMsg, FrameReader, MAGIC, MAX_SERVER_FRAME, ServerMsg};
use serde_json::json;
use tests::web::WebClient;
use tests::{RawClient, test_config};

const WAIT: Duration = Duration::from_secs(5);

/// A client speaking protocol v2, as a client built before v3 does.
struct V2Client {
    stream: TcpStream,
    reader: FrameReader,
}

impl V2Client {
    fn join(addr: SocketAddr, name: &str) -> Self {
        let stream = TcpStream::connect(addr).expect("connect");
        stream.set_read_timeout(Some(WAIT)).unwrap();
        let mut client = Self {
            stream,
            reader: FrameReader::new(MAX_SERVER_FRAME),
        };
        client.send(&v2::ClientMsg::Hello {
            magic: MAGIC,
            version: v2::VERSION,
            name: name.into(),
        });
        match client.recv() {
            v2::ServerMsg::Welcome { name: got, .. } => assert_eq!(got, name),
            other => panic!("{name} (v2) was not welcomed: {other:?}"),
        }
        client
    }

    fn send(&mut self, msg: &v2::ClientMsg) {
        let bytes = chat_proto::encode_to_vec(msg).unwrap();
        self.stream.write_all(&bytes).expect("write");
    }

    /// The next v2 message but pings (answered).
    fn recv(&mut self) -> v2::ServerMsg {
        loop {
            let msg = loop {
                if let Some(msg) = self.reader.next::<v2::ServerMsg>().expect("a v2 frame") {
                    break msg;
                }
                let n = self.reader.read_from(&mut self.stream).expect("read");
                assert!(n > 0, "the server closed a v2 client");
            };
            match msg {
                v2::ServerMsg::Ping { nonce } => self.send(&v2::ClientMsg::Pong { nonce }),
                msg => return msg,
            }
        }
    }
}

/// A bare IRC client: NICK and USER, then lines.
struct Irc {
    stream: TcpStream,
    reader: BufReader<TcpStream>,
}

impl Irc {
    fn register(addr: SocketAddr, nick: &str) -> Self {
        let stream = TcpStream::connect(addr).expect("connect to IRC");
        stream.set_read_timeout(Some(WAIT)).unwrap();
        let reader = BufReader::new(stream.try_clone().unwrap());
        let mut irc = Self { stream, reader };
        irc.send(&format!("NICK {nick}"));
        irc.send(&format!("USER {nick} 0 * :{nick} on IRC"));
        irc.until(" 366 ");
        irc
    }

    fn send(&mut self, line: &str) {
        self.stream
            .write_all(format!("{line}\r\n").as_bytes())
            .expect("write");
    }

    /// Lines up to and including the first that contains `needle`.
    fn until(&mut self, needle: &str) -> Vec<String> {
        let mut lines = Vec::new();
        loop {
            let mut line = String::new();
            let n = self.reader.read_line(&mut line).expect("an IRC line");
            assert!(n > 0, "IRC connection closed; got {lines:?}");
            let line = line.trim_end().to_owned();
            if let Some(token) = line.strip_prefix("PING ") {
                self.send(&format!("PONG {token}"));
                continue;
            }
            let done = line.contains(needle);
            lines.push(line);
            if done {
                return lines;
            }
        }
    }
}

/// The next message from the page that is not a join or a leave (which come as members arrive).
fn page_next(page: &mut WebClient) -> serde_json::Value {
    loop {
        let msg = page.recv_timed();
        if msg["type"] != "joined" {
            return msg;
        }
    }
}

#[test]
fn a_v2_client_a_v3_client_an_irc_client_and_the_page_share_one_room() {
    let mut config = test_config();
    config.irc_port = Some(0);
    config.irc_server_name = Some("irc.test".into());
    let server = tests::web::start_web_server(config);
    let (addr, irc_addr) = (server.addr(), server.irc_addr().unwrap());
    let mut page = WebClient::join(server.web_addr().unwrap(), "pat").0;
    let mut old = V2Client::join(addr, "olga");
    let (mut new, _) = RawClient::join(addr, "nina");
    let mut irc = Irc::register(irc_addr, "ivan");
    // Let every join reach everyone before the conversation starts.
    for name in ["nina", "ivan"] {
        assert_eq!(old.recv(), v2::ServerMsg::Joined { name: name.into() });
    }
    assert!(matches!(new.recv(), ServerMsg::Joined { name, .. } if name == "ivan"));

    // The v2 client's `/me` is an action for everyone else.
    old.send(&v2::ClientMsg::Chat {
        text: "/me waves".into(),
    });
    match new.recv() {
        ServerMsg::Chat {
            from, text, kind, ..
        } => assert_eq!((&*from, &*text, kind), ("olga", "waves", ChatKind::Action)),
        other => panic!("expected olga's action, got {other:?}"),
    }
    assert!(new.last_time.is_some_and(|t| t > 1_600_000_000_000));
    let line = irc.until("PRIVMSG");
    assert!(
        line.last()
            .unwrap()
            .ends_with("PRIVMSG #chat :\u{1}ACTION waves\u{1}"),
        "{line:?}"
    );
    let msg = page_next(&mut page);
    assert_eq!(
        (&msg["type"], &msg["from"], &msg["text"], &msg["kind"]),
        (
            &json!("chat"),
            &json!("olga"),
            &json!("waves"),
            &json!("action")
        )
    );
    let said_at = msg["time"].as_u64().expect("a time");
    assert_eq!(Some(said_at), new.last_time, "one time for one entry");

    // IRC's NOTICE is a notice: plain text for the v2 client, a notice for v3.
    irc.send("NOTICE #chat :deploy at five");
    assert_eq!(
        old.recv(),
        v2::ServerMsg::Chat {
            seq: 2,
            from: "ivan".into(),
            text: "deploy at five".into(),
        }
    );
    match new.recv() {
        ServerMsg::Chat { text, kind, .. } => {
            assert_eq!((&*text, kind), ("deploy at five", ChatKind::Notice))
        }
        other => panic!("expected ivan's notice, got {other:?}"),
    }
    assert_eq!(page_next(&mut page)["kind"], "notice");

    // A v3 rename: a leave and a join for v2, NICK for IRC, `renamed` for the page.
    new.send(&ClientMsg::Nick {
        name: "nora".into(),
    });
    assert!(
        matches!(new.recv(), ServerMsg::Renamed { from, to, .. } if from == "nina" && to == "nora")
    );
    assert!(matches!(old.recv(), v2::ServerMsg::Left { name, .. } if name == "nina"));
    assert_eq!(
        old.recv(),
        v2::ServerMsg::Joined {
            name: "nora".into()
        }
    );
    let line = irc.until(" NICK ");
    assert!(line.last().unwrap().starts_with(":nina!"), "{line:?}");
    assert!(line.last().unwrap().ends_with(" NICK nora"), "{line:?}");
    let msg = page_next(&mut page);
    assert_eq!(
        (&msg["type"], &msg["to"]),
        (&json!("renamed"), &json!("nora"))
    );

    // Away reaches v3 and the page, and nothing of it the v2 client: its next message is the
    // chat that follows.
    new.send(&ClientMsg::Away {
        message: Some("lunch".into()),
    });
    let msg = page_next(&mut page);
    assert_eq!(
        (&msg["type"], &msg["message"]),
        (&json!("away"), &json!("lunch"))
    );
    page.send(json!({"type": "chat", "text": "enjoy"}));
    assert_eq!(
        old.recv(),
        v2::ServerMsg::Chat {
            seq: 3,
            from: "pat".into(),
            text: "enjoy".into(),
        }
    );
    let line = irc.until("PRIVMSG");
    assert!(
        line.last().unwrap().ends_with("PRIVMSG #chat :enjoy"),
        "{line:?}"
    );

    // Parting words: the v2 client sees the leave, the others the words too.
    new.send(&ClientMsg::Leave {
        message: Some("back at two".into()),
    });
    assert!(matches!(old.recv(), v2::ServerMsg::Left { name, .. } if name == "nora"));
    let line = irc.until(" QUIT ");
    assert!(
        line.last().unwrap().ends_with("QUIT :back at two"),
        "{line:?}"
    );
    let msg = page_next(&mut page);
    assert_eq!(
        (&msg["type"], &msg["message"]),
        (&json!("left"), &json!("back at two"))
    );
}
