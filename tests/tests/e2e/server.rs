//! The server's behaviour as seen by raw protocol clients.

use chat_proto::ChatKind;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use chat_proto::{ClientMsg, CloseReason, MAGIC, Refusal, ServerMsg};
use tests::{
    RawClient, ServerProcess, chat, hello, joined, left, receive_chatter, start_server,
    test_config, wait_until,
};

#[test]
fn three_members_each_message_reaches_the_two_others_once() {
    let server = start_server(test_config());
    let (mut alice, members) = RawClient::join(server.addr(), "alice");
    assert_eq!(members, vec!["alice"]);
    let (mut bob, members) = RawClient::join(server.addr(), "bob");
    assert_eq!(members, vec!["alice", "bob"]);
    assert_eq!(alice.recv(), joined("bob"));
    let (mut carol, _) = RawClient::join(server.addr(), "carol");
    assert_eq!(alice.recv(), joined("carol"));
    assert_eq!(bob.recv(), joined("carol"));

    alice.send(&chat("hi from alice"));
    bob.send(&chat("hi from bob"));
    let a = ServerMsg::Chat {
        seq: 1,
        from: "alice".into(),
        text: "hi from alice".into(),
        time: 0,
        kind: ChatKind::Plain,
    };
    let b = ServerMsg::Chat {
        seq: 2,
        from: "bob".into(),
        text: "hi from bob".into(),
        time: 0,
        kind: ChatKind::Plain,
    };
    assert_eq!(carol.recv(), a);
    assert_eq!(carol.recv(), b);
    assert_eq!(bob.recv(), a);
    assert_eq!(alice.recv(), b);
    // Nobody gets its own message back, nor anything twice.
    alice.expect_nothing_more();
    bob.expect_nothing_more();
    carol.expect_nothing_more();

    carol.send(&ClientMsg::Leave { message: None });
    assert_eq!(carol.until_closed(), (Some(CloseReason::Left), vec![]));
    assert_eq!(alice.recv(), left("carol", CloseReason::Left));
    assert_eq!(bob.recv(), left("carol", CloseReason::Left));
}

#[test]
fn a_taken_name_is_refused_and_another_hello_may_follow() {
    let server = start_server(test_config());
    let (_alice, _) = RawClient::join(server.addr(), "alice");
    let mut other = RawClient::connect(server.addr());
    other.send(&hello("ALICE"));
    assert_eq!(other.recv(), ServerMsg::Refused(Refusal::NameTaken));
    other.send(&hello("bob"));
    assert!(matches!(other.recv(), ServerMsg::Welcome { name, .. } if name == "bob"));
}

#[test]
fn leave_and_abrupt_disconnect_free_the_name_and_notify() {
    let server = start_server(test_config());
    let (mut watcher, _) = RawClient::join(server.addr(), "watcher");
    let mut rejoined = Vec::new();
    for (name, reason) in [
        ("leaver", CloseReason::Left),
        ("dropper", CloseReason::Disconnected),
    ] {
        let (mut client, _) = RawClient::join(server.addr(), name);
        assert_eq!(watcher.recv(), joined(name));
        if reason == CloseReason::Left {
            client.send(&ClientMsg::Leave { message: None });
        } else {
            drop(client); // mid-session, no goodbye
        }
        assert_eq!(watcher.recv(), left(name, reason));
        // The name is free at once.
        rejoined.push(RawClient::join(server.addr(), name).0);
        assert_eq!(watcher.recv(), joined(name));
    }
}

#[test]
fn a_member_that_never_reads_is_closed_as_too_slow_and_nobody_else_loses_anything() {
    use std::sync::Arc;
    use std::sync::atomic::AtomicUsize;
    const SENDERS: usize = 50;
    const PER_SENDER: usize = 60;
    // Messages in flight to the members that read: far below their queue bound, so that they
    // keep up however slow the machine, while the stalled member receives everything.
    const WINDOW: usize = 16;
    let mut config = test_config();
    config.queue_bytes = 64 * 1024;
    config.room.max_text_bytes = 4000;
    config.room.max_frame_bytes = 4096;
    let server = start_server(config.clone());

    // The stalled member: a tiny receive buffer, and it never reads.
    let mut stalled = RawClient::from_stream(tests::connect_small_window(server.addr()));
    stalled.send(&hello("stalled"));
    assert!(matches!(stalled.recv(), ServerMsg::Welcome { .. }));

    let mut members: Vec<RawClient> = (0..SENDERS)
        .map(|i| RawClient::join(server.addr(), &format!("m{i}")).0)
        .collect();
    // Everyone has seen every join before the chatter starts.
    for (i, member) in members.iter_mut().enumerate() {
        for j in i + 1..SENDERS {
            assert_eq!(member.recv(), joined(&format!("m{j}")));
        }
    }
    // Per member: chats sent by it, and chats it received.
    let sent: Arc<Vec<AtomicUsize>> = Arc::new((0..SENDERS).map(|_| AtomicUsize::new(0)).collect());
    let got: Arc<Vec<AtomicUsize>> = Arc::new((0..SENDERS).map(|_| AtomicUsize::new(0)).collect());
    // The most messages any reading member still has coming to it.
    let lag = {
        let (sent, got) = (sent.clone(), got.clone());
        move || {
            let total: usize = sent.iter().map(|s| s.load(Relaxed)).sum();
            (0..SENDERS)
                .map(|j| (total - sent[j].load(Relaxed)).saturating_sub(got[j].load(Relaxed)))
                .max()
                .unwrap_or(0)
        }
    };
    let text = "x".repeat(3000);
    let handles: Vec<_> = members
        .into_iter()
        .enumerate()
        .map(|(i, mut member)| {
            let mut writer = member.stream.try_clone().unwrap();
            let (text, sent, got, lag) = (text.clone(), sent.clone(), got.clone(), lag.clone());
            let sender = std::thread::spawn(move || {
                use std::io::Write;
                for n in 0..PER_SENDER {
                    assert!(wait_until(Duration::from_secs(20), || lag() < WINDOW));
                    sent[i].fetch_add(1, Relaxed);
                    let msg = chat(&format!("{n} {text}"));
                    writer
                        .write_all(&chat_proto::encode_to_vec(&msg).unwrap())
                        .unwrap();
                }
            });
            std::thread::spawn(move || {
                let (received, stalled_left) = receive_chatter(
                    &mut member,
                    i,
                    (SENDERS - 1) * PER_SENDER,
                    "stalled",
                    || {
                        got[i].fetch_add(1, Relaxed);
                    },
                );
                assert_eq!(stalled_left, 1);
                sender.join().unwrap();
                received
            })
        })
        .collect();
    // The stalled member starts reading once the server has found it too slow, well within
    // the linger its closing gets: what its socket held, then the frame that says why.
    let (reason, before) = std::thread::scope(|scope| {
        let stalled_reader = scope.spawn(|| {
            let found = || server.stats().too_slow.load(Relaxed) == 1;
            assert!(wait_until(Duration::from_secs(60), found));
            stalled.until_closed()
        });
        for handle in handles {
            assert_eq!(handle.join().unwrap(), (SENDERS - 1) * PER_SENDER);
        }
        stalled_reader.join().unwrap()
    });
    assert_eq!(reason, Some(CloseReason::TooSlow));
    tests::assert_only_broadcasts(&before);
    assert_eq!(server.stats().too_slow.load(Relaxed), 1);
    // Memory stays bounded: no queue ever held more than its bound plus one frame.
    let max_queued = server.stats().max_queued.load(Relaxed) as usize;
    assert!(
        max_queued <= config.queue_bytes + 4100,
        "a queue reached {max_queued} bytes"
    );
}

#[test]
fn malformed_input_gets_a_protocol_error_close_and_others_are_served() {
    let server = start_server(test_config());
    let (mut alice, _) = RawClient::join(server.addr(), "alice");
    let (mut bob, _) = RawClient::join(server.addr(), "bob");
    assert_eq!(alice.recv(), joined("bob"));
    let cases: [&[u8]; 3] = [
        &[0xff, 0xff, 0xff, 0x7f], // a length prefix far over the frame limit
        b"\x05\x00\x00\x00\xfe\xfe\xfe\xfe\xfe", // garbage payload
        &chat_proto::encode_to_vec(&chat("too soon")).unwrap(), // chat before hello
    ];
    for bytes in cases {
        let mut bad = RawClient::connect(server.addr());
        bad.send_raw(bytes);
        assert_eq!(
            bad.until_closed(),
            (Some(CloseReason::ProtocolError), vec![])
        );
    }
    alice.send(&chat("still here"));
    assert!(matches!(bob.recv(), ServerMsg::Chat { text, .. } if text == "still here"));
    // A member that sends garbage is removed and announced.
    bob.send_raw(&[0xff, 0xff, 0xff, 0xff]);
    assert_eq!(alice.recv(), left("bob", CloseReason::ProtocolError));
    // A wrong magic is a protocol error too.
    let mut wrong = RawClient::connect(server.addr());
    wrong.send(&ClientMsg::Hello {
        magic: MAGIC ^ 1,
        version: 1,
        name: "x".into(),
        password: None,
        ident: None,
    });
    assert_eq!(wrong.until_closed().0, Some(CloseReason::ProtocolError));
}

#[test]
fn the_handshake_deadline_closes_a_silent_connection() {
    let mut config = test_config();
    config.room.handshake_timeout = Duration::from_millis(300);
    let server = start_server(config);
    let mut silent = RawClient::connect(server.addr());
    let started = std::time::Instant::now();
    assert_eq!(
        silent.until_closed(),
        (Some(CloseReason::HandshakeTimeout), vec![])
    );
    assert!(started.elapsed() >= Duration::from_millis(250));
}

#[test]
fn the_client_limit_refuses_the_extra_client() {
    let mut config = test_config();
    config.room.max_clients = 2;
    let server = start_server(config);
    let (_a, _) = RawClient::join(server.addr(), "a");
    let (_b, _) = RawClient::join(server.addr(), "b");
    let mut c = RawClient::connect(server.addr());
    c.send(&hello("c"));
    assert_eq!(c.recv(), ServerMsg::Refused(Refusal::ServerFull));
    assert_eq!(c.until_closed(), (Some(CloseReason::ServerFull), vec![]));
}

#[test]
fn in_process_shutdown_tells_every_client() {
    let server = start_server(test_config());
    let (mut a, _) = RawClient::join(server.addr(), "a");
    let mut pending = RawClient::connect(server.addr());
    // The server must have accepted it: a connection still in the kernel's backlog at shutdown
    // is closed by the kernel, with nothing said.
    assert!(wait_until(Duration::from_secs(10), || {
        server.stats().accepted.load(Relaxed) == 2
    }));
    server.shutdown().unwrap();
    assert_eq!(a.until_closed().0, Some(CloseReason::ServerShutdown));
    assert_eq!(pending.until_closed().0, Some(CloseReason::ServerShutdown));
}

#[test]
fn the_binary_on_sigterm_tells_every_client_and_exits_zero() {
    let mut server = ServerProcess::start(&[]);
    let mut clients: Vec<RawClient> = (0..5)
        .map(|i| RawClient::join(server.addr, &format!("c{i}")).0)
        .collect();
    // Every join is done before the signal: the first member has seen the four others arrive.
    for i in 1..5 {
        assert_eq!(clients[0].recv(), joined(&format!("c{i}")));
    }
    server.signal("TERM");
    for client in &mut clients {
        let (reason, _) = client.until_closed();
        assert_eq!(reason, Some(CloseReason::ServerShutdown));
    }
    let status = server
        .wait_exit(Duration::from_secs(10))
        .expect("server exited");
    assert_eq!(status.code(), Some(0));
}

/// With `--reuse-port`, two processes share the chat port, and the IRC and web ports too (the
/// second process could not start while the gateways' ports were bound without it).
#[test]
fn with_reuse_port_two_processes_share_every_port() {
    use tests::web::free_port;
    let ports = [free_port(), free_port(), free_port()].map(|p| p.to_string());
    let start = || {
        tests::ServerProcess::start_with(
            std::process::Command::new(tests::binary("chat-server")).args([
                "--reuse-port",
                "--port",
                &ports[0],
                "--irc-port",
                &ports[1],
                "--web-port",
                &ports[2],
            ]),
        )
    };
    let (a, b) = (start(), start());
    assert_eq!(
        (a.addr.port(), b.addr.port()),
        (a.addr.port(), a.addr.port())
    );
    assert_eq!(a.addr.port().to_string(), ports[0]);
    // Each serves: a newcomer lands on one of them.
    let (_ann, _) = RawClient::join(a.addr, "ann");
}
