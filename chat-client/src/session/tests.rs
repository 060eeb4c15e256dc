//! Sessions against an in-process fake server speaking the real protocol on loopback.

use std::future::Future;
use std::time::Instant;

use async_net::TcpListener;
use chat_proto::{NameRule, Refusal};

use super::*;

/// Every test finishes well within this, or fails.
const TEST_TIMEOUT: Duration = Duration::from_secs(10);

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

/// The fake server's end of one connection.
struct Peer {
    stream: TcpStream,
    decoder: FrameDecoder,
    unread: Vec<u8>,
}

impl Peer {
    async fn accept(listener: TcpListener) -> Peer {
        let (stream, _) = listener.accept().await.unwrap();
        Peer {
            stream,
            decoder: FrameDecoder::new(1024),
            unread: Vec::new(),
        }
    }

    /// The next message from the client; `None` once it closed the connection.
    async fn recv(&mut self) -> Option<ClientMsg> {
        loop {
            let mut input = &self.unread[..];
            let msg = self
                .decoder
                .decode::<ClientMsg>(&mut input)
                .expect("client sent a bad frame");
            let used = self.unread.len() - input.len();
            self.unread.drain(..used);
            if msg.is_some() {
                return msg;
            }
            let mut chunk = [0; 4096];
            match self.stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return None,
                Ok(n) => self.unread.extend_from_slice(&chunk[..n]),
            }
        }
    }

    /// The next message, or `None` if nothing arrives for a while.
    async fn recv_within(&mut self, wait: Duration) -> Option<ClientMsg> {
        future::or(self.recv(), async {
            Timer::after(wait).await;
            None
        })
        .await
    }

    async fn send(&mut self, msg: ServerMsg) {
        let mut bytes = Vec::new();
        encode(&msg, &mut bytes).unwrap();
        self.stream.write_all(&bytes).await.unwrap();
    }

    /// Reads the hello, checks its magic and version, and returns the name.
    async fn expect_hello(&mut self) -> String {
        match self.recv().await {
            Some(ClientMsg::Hello {
                magic,
                version,
                name,
            }) => {
                assert_eq!(magic, MAGIC);
                assert_eq!(version, PROTOCOL_VERSION);
                name
            }
            other => panic!("expected a hello, got {other:?}"),
        }
    }

    /// Everything the client sends until it closes the connection.
    async fn rest(&mut self) -> Vec<ClientMsg> {
        let mut all = Vec::new();
        while let Some(msg) = self.recv().await {
            all.push(msg);
        }
        all
    }
}

/// What the client did.
#[derive(Debug)]
struct Outcome {
    code: u8,
    out: Vec<String>,
    err: Vec<String>,
}

fn lines_of(bytes: Vec<u8>) -> Vec<String> {
    String::from_utf8(bytes)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

async fn run_client(port: u16, name: Option<&str>, input: Receiver<String>) -> Outcome {
    let config = Config {
        host: "127.0.0.1".into(),
        port,
        name: name.map(Into::into),
    };
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let code = run_session(&config, &mut Input::lines(input), &mut out, &mut err).await;
    Outcome {
        code,
        out: lines_of(out),
        err: lines_of(err),
    }
}

/// Script input: these lines, then the end of input.
fn script(lines: &[&str]) -> Receiver<String> {
    let (tx, rx) = smol::channel::unbounded();
    for line in lines {
        tx.try_send(line.to_string()).unwrap();
    }
    rx
}

/// Runs a fake server script (given the listener) and a client side by side, bounded in time.
fn with_server<S, C, T>(
    server: impl FnOnce(TcpListener) -> S,
    client: impl FnOnce(u16) -> C,
) -> (T, Outcome)
where
    S: Future<Output = T>,
    C: Future<Output = Outcome>,
{
    smol::block_on(async {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let both = future::zip(server(listener), client(port));
        future::or(both, async {
            Timer::after(TEST_TIMEOUT).await;
            panic!("test did not finish within {TEST_TIMEOUT:?}");
        })
        .await
    })
}

#[test]
fn welcome_chat_and_shutdown_are_shown_and_exit_1() {
    let (tx, rx) = smol::channel::unbounded::<String>();
    let (name, outcome) = with_server(
        |listener| async move {
            let mut peer = Peer::accept(listener).await;
            let name = peer.expect_hello().await;
            peer.send(welcome("alice", &["alice", "bob"])).await;
            peer.send(ServerMsg::Chat {
                seq: 1,
                from: "bob".into(),
                text: "hi \x1b[31mthere\u{202e}".into(),
            })
            .await;
            peer.send(ServerMsg::Joined {
                name: "carol".into(),
            })
            .await;
            peer.send(ServerMsg::Left {
                name: "carol".into(),
                reason: CloseReason::IdleTimeout,
            })
            .await;
            peer.send(ServerMsg::Closing(CloseReason::ServerShutdown))
                .await;
            name
        },
        // The input stays open: the server's goodbye alone ends the session.
        |port| run_client(port, Some("alice"), rx),
    );
    drop(tx);
    assert_eq!(name, "alice");
    assert_eq!(
        outcome.out,
        [
            "* joined as alice; online: alice, bob",
            "bob: hi \\x1b[31mthere\\u{202e}",
            "* carol joined",
            "* carol left (timed out)",
            "* server is shutting down",
        ]
    );
    assert_eq!(outcome.err, Vec::<String>::new());
    assert_eq!(outcome.code, EXIT_FAILURE);
}

#[test]
fn script_is_sent_in_order_after_the_welcome_then_leaves() {
    let input = script(&[
        "send hello  world ",
        "",
        "bogus",
        "send",
        "who",
        "send 12345678901234567890123456789012345678901234567890123456789012345",
    ]);
    let (received, outcome) = with_server(
        |listener| async move {
            let mut peer = Peer::accept(listener).await;
            peer.expect_hello().await;
            // Nothing is sent before the welcome, although the script is ready.
            assert_eq!(peer.recv_within(Duration::from_millis(100)).await, None);
            peer.send(welcome("alice", &["alice", "bob"])).await;
            let mut received = Vec::new();
            loop {
                let msg = peer.recv().await.expect("client closed before leaving");
                received.push(msg.clone());
                match msg {
                    ClientMsg::Who => {
                        peer.send(ServerMsg::Members {
                            names: vec!["alice".into(), "bob".into()],
                        })
                        .await
                    }
                    ClientMsg::Leave => break,
                    _ => {}
                }
            }
            peer.send(ServerMsg::Closing(CloseReason::Left)).await;
            received.extend(peer.rest().await);
            received
        },
        |port| run_client(port, Some("alice"), input),
    );
    assert_eq!(
        received,
        [
            ClientMsg::Chat {
                text: "hello  world ".into()
            },
            ClientMsg::Who,
            ClientMsg::Leave,
        ]
    );
    assert_eq!(
        outcome.out,
        [
            "* joined as alice; online: alice, bob",
            "* online: alice, bob"
        ]
    );
    assert_eq!(
        outcome.err,
        [
            "error: unknown command 'bogus'; type help for the commands",
            "error: nothing to send; type send <MSG>",
            "error: message is longer than 64 bytes; not sent",
        ]
    );
    assert_eq!(outcome.code, EXIT_OK);
}

#[test]
fn leave_command_ends_the_script_early() {
    let input = script(&["help", "leave", "send never"]);
    let (received, outcome) = with_server(
        |listener| async move {
            let mut peer = Peer::accept(listener).await;
            peer.expect_hello().await;
            peer.send(welcome("alice", &["alice"])).await;
            assert_eq!(peer.recv().await, Some(ClientMsg::Leave));
            peer.send(ServerMsg::Closing(CloseReason::Left)).await;
            peer.rest().await
        },
        |port| run_client(port, Some("alice"), input),
    );
    assert_eq!(received, []);
    assert_eq!(outcome.out[0], "* joined as alice; online: alice");
    assert_eq!(&outcome.out[1..], HELP);
    assert_eq!(outcome.code, EXIT_OK);
}

#[test]
fn pings_are_answered_with_the_same_nonce() {
    let (tx, rx) = smol::channel::unbounded::<String>();
    let (pong, outcome) = with_server(
        |listener| async move {
            let mut peer = Peer::accept(listener).await;
            peer.expect_hello().await;
            peer.send(ServerMsg::Ping { nonce: 7 }).await;
            peer.send(welcome("alice", &["alice"])).await;
            peer.send(ServerMsg::Ping { nonce: 42 }).await;
            let first = peer.recv().await;
            let second = peer.recv().await;
            peer.send(ServerMsg::Closing(CloseReason::IdleTimeout))
                .await;
            (first, second)
        },
        |port| run_client(port, Some("alice"), rx),
    );
    drop(tx);
    assert_eq!(
        pong,
        (
            Some(ClientMsg::Pong { nonce: 7 }),
            Some(ClientMsg::Pong { nonce: 42 })
        )
    );
    assert_eq!(
        outcome.out,
        [
            "* joined as alice; online: alice",
            "* disconnected by server: timed out"
        ]
    );
    assert_eq!(outcome.code, EXIT_FAILURE);
}

#[test]
fn refusal_in_a_script_is_an_error_and_exit_1() {
    let input = script(&["send hi"]);
    let (rest, outcome) = with_server(
        |listener| async move {
            let mut peer = Peer::accept(listener).await;
            assert_eq!(peer.expect_hello().await, "bad name");
            peer.send(ServerMsg::Refused(Refusal::NameInvalid(
                NameRule::Whitespace,
            )))
            .await;
            peer.rest().await
        },
        |port| run_client(port, Some("bad name"), input),
    );
    assert_eq!(rest, []);
    assert_eq!(outcome.out, Vec::<String>::new());
    assert_eq!(
        outcome.err,
        ["error: name contains whitespace; choose another"]
    );
    assert_eq!(outcome.code, EXIT_FAILURE);
}

#[test]
fn a_dead_server_is_noticed_without_any_input() {
    let (tx, rx) = smol::channel::unbounded::<String>();
    let ((), outcome) = with_server(
        |listener| async move {
            let mut peer = Peer::accept(listener).await;
            peer.expect_hello().await;
            peer.send(welcome("alice", &["alice"])).await;
            // Dropping the peer closes the socket without a closing frame.
        },
        |port| run_client(port, Some("alice"), rx),
    );
    drop(tx);
    assert_eq!(outcome.out, ["* joined as alice; online: alice"]);
    assert_eq!(outcome.err, ["error: connection to server lost"]);
    assert_eq!(outcome.code, EXIT_FAILURE);
}

#[test]
fn garbage_from_the_server_ends_the_session() {
    let (tx, rx) = smol::channel::unbounded::<String>();
    let ((), outcome) = with_server(
        |listener| async move {
            let mut peer = Peer::accept(listener).await;
            peer.expect_hello().await;
            peer.stream.write_all(&[0xff; 8]).await.unwrap();
            peer.rest().await;
        },
        |port| run_client(port, Some("alice"), rx),
    );
    drop(tx);
    assert_eq!(outcome.err.len(), 1);
    assert!(
        outcome.err[0].starts_with("error: connection to server lost: frame of"),
        "{:?}",
        outcome.err
    );
    assert_eq!(outcome.code, EXIT_FAILURE);
}

#[test]
fn leave_is_bounded_when_the_server_never_answers() {
    let input = script(&[]);
    let started = Instant::now();
    let (received, outcome) = with_server(
        |listener| async move {
            let mut peer = Peer::accept(listener).await;
            peer.expect_hello().await;
            peer.send(welcome("alice", &["alice"])).await;
            // Never says goodbye; the client must give up on its own.
            peer.rest().await
        },
        |port| run_client(port, Some("alice"), input),
    );
    let elapsed = started.elapsed();
    assert_eq!(received, [ClientMsg::Leave]);
    assert_eq!(outcome.code, EXIT_OK);
    assert!(elapsed >= LEAVE_GRACE, "{elapsed:?}");
    assert!(
        elapsed < LEAVE_GRACE + Duration::from_secs(2),
        "{elapsed:?}"
    );
}

#[test]
fn connection_closed_after_leave_is_a_clean_exit() {
    let input = script(&["leave"]);
    let ((), outcome) = with_server(
        |listener| async move {
            let mut peer = Peer::accept(listener).await;
            peer.expect_hello().await;
            peer.send(welcome("alice", &["alice"])).await;
            assert_eq!(peer.recv().await, Some(ClientMsg::Leave));
            // Closes without the closing frame.
        },
        |port| run_client(port, Some("alice"), input),
    );
    assert_eq!(outcome.err, Vec::<String>::new());
    assert_eq!(outcome.code, EXIT_OK);
}

#[test]
fn cannot_connect_names_the_address() {
    let port = smol::block_on(async {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        listener.local_addr().unwrap().port()
    });
    let outcome = smol::block_on(run_client(port, Some("alice"), script(&[])));
    assert_eq!(outcome.code, EXIT_FAILURE);
    assert_eq!(outcome.err.len(), 1);
    let prefix = format!("error: cannot connect to 127.0.0.1:{port}: ");
    assert!(outcome.err[0].starts_with(&prefix), "{:?}", outcome.err);
}

#[test]
fn no_name_in_a_script_is_a_usage_error() {
    let outcome = smol::block_on(run_client(1, None, script(&["send hi"])));
    assert_eq!(outcome.code, EXIT_USAGE);
    assert_eq!(
        outcome.err,
        ["error: no name given; pass --name or set CHAT_NAME"]
    );
}

#[test]
fn host_port_brackets_ipv6() {
    assert_eq!(host_port("127.0.0.1", 7878), "127.0.0.1:7878");
    assert_eq!(host_port("::1", 7878), "[::1]:7878");
    assert_eq!(host_port("chat.example", 1), "chat.example:1");
}
