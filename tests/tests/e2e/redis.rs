//! One room across several `chat-server --redis` processes and a real `redis-server`.

use chat_proto::ChatKind;
use std::collections::{HashMap, HashSet};
use std::net::Shutdown;
use std::time::{Duration, Instant};

use chat_core::log::redis::PROPOSAL_QUEUE;
use chat_proto::{ClientMsg, CloseReason, ErrorKind, Refusal, ServerMsg};
use tests::proxy::Proxy;
use tests::redis::RedisServer;
use tests::{RawClient, ServerProcess, chat, hello, joined, left, wait_until};

/// The lease the nodes in these tests hold: short, so that losses are found quickly.
const LEASE: &str = "2s";

/// A longer lease, for the tests where Redis is away for a while and nobody may be lost.
const OUTAGE_LEASE: &str = "5s";

/// A node of the room kept in `url`, with test-friendly limits.
fn node(url: &str) -> ServerProcess {
    node_with_lease(url, LEASE)
}

fn node_with_lease(url: &str, lease: &str) -> ServerProcess {
    ServerProcess::start(&[
        "--redis", url, "--lease", lease, "--rate", "10000", "--burst", "10000",
    ])
}

/// Joins as `name` on `addr`, trying again while the node answers that the room is unavailable
/// (it is rejoining the room), and connecting again, as the client does, when a join in flight
/// as the node starts over is closed as lost.
fn join_soon(addr: std::net::SocketAddr, name: &str) -> (RawClient, Vec<String>) {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut client = RawClient::connect(addr);
    loop {
        client.send(&hello(name));
        match client.recv() {
            ServerMsg::Welcome { members, .. } => {
                return (client, members.iter().map(|m| m.name.to_string()).collect());
            }
            ServerMsg::Refused(Refusal::Unavailable) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(100));
            }
            ServerMsg::Closing(CloseReason::ServerLost | CloseReason::RoomReset)
                if Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(100));
                client = RawClient::connect(addr);
            }
            other => panic!("{name} was not welcomed: {other:?}"),
        }
    }
}

fn said(seq: u64, from: &str, text: &str) -> ServerMsg {
    ServerMsg::Chat {
        seq,
        from: from.into(),
        text: text.into(),
        time: 0,
        kind: ChatKind::Plain,
    }
}

fn who(client: &mut RawClient) -> Vec<String> {
    client.send(&ClientMsg::Who);
    loop {
        match client.recv() {
            ServerMsg::Members { members } => {
                let mut names: Vec<String> = members.iter().map(|m| m.name.to_string()).collect();
                names.sort();
                return names;
            }
            ServerMsg::Joined { .. } | ServerMsg::Left { .. } => {}
            other => panic!("expected the member list, got {other:?}"),
        }
    }
}

/// One entry of the room's log as Redis holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct LogEntry {
    pos: u64,
    node: u64,
    name: String,
    event: LogEvent,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum LogEvent {
    Joined,
    Chat { seq: u64, text: String },
    Left { reason: CloseReason },
}

impl LogEntry {
    /// What a member named `me` is sent for this entry, if anything: nobody is told of their own
    /// join, chat or leave.
    fn seen_by(&self, me: &str) -> Option<ServerMsg> {
        if self.name == me {
            return None;
        }
        Some(match &self.event {
            LogEvent::Joined => joined(&self.name),
            LogEvent::Chat { seq, text } => said(*seq, &self.name, text),
            LogEvent::Left { reason } => left(&self.name, *reason),
        })
    }

    fn is_join_of(&self, name: &str) -> bool {
        self.event == LogEvent::Joined && self.name == name
    }
}

/// The stream of room `chat` in `redis`, oldest first, read with XRANGE.
fn log_entries(redis: &RedisServer) -> Vec<LogEntry> {
    let range: Vec<(String, HashMap<String, String>)> =
        redis.cmd(&["XRANGE", "chat:{chat}:log", "-", "+"]);
    range
        .into_iter()
        .map(|(_, fields)| {
            let field = |name: &str| {
                fields
                    .get(name)
                    .unwrap_or_else(|| panic!("log entry without {name}: {fields:?}"))
                    .clone()
            };
            let event = match field("kind").as_str() {
                "join" => LogEvent::Joined,
                "chat" => LogEvent::Chat {
                    seq: field("seq").parse().unwrap(),
                    text: field("text"),
                },
                "leave" => LogEvent::Left {
                    reason: match field("reason").as_str() {
                        "left" => CloseReason::Left,
                        "disconnected" => CloseReason::Disconnected,
                        "server_lost" => CloseReason::ServerLost,
                        "server_shutdown" => CloseReason::ServerShutdown,
                        "room_reset" => CloseReason::RoomReset,
                        other => panic!("unexpected leave reason {other}"),
                    },
                },
                other => panic!("unexpected entry kind {other}"),
            };
            LogEntry {
                pos: field("pos").parse().unwrap(),
                node: field("node").parse().unwrap(),
                name: field("name"),
                event,
            }
        })
        .collect()
}

/// The number of entries in room `chat`'s stream.
fn log_len(redis: &RedisServer) -> i64 {
    redis.cmd(&["XLEN", "chat:{chat}:log"])
}

/// The next message that is not the history shown to a newcomer.
fn recv_past_history(client: &mut RawClient) -> ServerMsg {
    match client.recv() {
        ServerMsg::History { .. } => client.recv(),
        other => other,
    }
}

#[test]
fn two_nodes_share_chats_notices_and_the_member_list() {
    let redis = RedisServer::start();
    let (a, b) = (node(&redis.url()), node(&redis.url()));
    let (mut alice, members) = RawClient::join(a.addr, "alice");
    assert_eq!(members, vec!["alice"]);
    let (mut bob, members) = RawClient::join(b.addr, "bob");
    assert_eq!(members, vec!["alice", "bob"]);
    assert_eq!(alice.recv(), joined("bob"));
    let (mut carol, _) = RawClient::join(a.addr, "carol");
    assert_eq!(alice.recv(), joined("carol"));
    assert_eq!(bob.recv(), joined("carol"));
    let (mut dave, _) = RawClient::join(b.addr, "dave");
    for c in [&mut alice, &mut bob, &mut carol] {
        assert_eq!(c.recv(), joined("dave"));
    }

    // Chats both ways, numbered in one sequence, once each, never back to the sender.
    alice.send(&chat("from a"));
    bob.send(&chat("from b"));
    let mut seqs = HashMap::new();
    for (client, me) in [
        (&mut alice, "alice"),
        (&mut bob, "bob"),
        (&mut carol, "carol"),
        (&mut dave, "dave"),
    ] {
        let expected = if me == "alice" || me == "bob" { 1 } else { 2 };
        for _ in 0..expected {
            match client.recv() {
                ServerMsg::Chat {
                    seq, from, text, ..
                } => {
                    assert_ne!(from, me, "{me} got its own chat back");
                    assert_eq!(text, format!("from {}", &from[..1]));
                    let first = *seqs.entry(from.clone()).or_insert(seq);
                    assert_eq!(first, seq, "{from}'s chat has one number everywhere");
                }
                other => panic!("{me}: expected a chat, got {other:?}"),
            }
        }
    }
    let mut numbers: Vec<u64> = seqs.values().copied().collect();
    numbers.sort();
    assert_eq!(numbers, vec![1, 2]);
    // The same list on both nodes.
    let everyone = vec!["alice", "bob", "carol", "dave"];
    assert_eq!(who(&mut alice), everyone);
    assert_eq!(who(&mut dave), everyone);
    // Each node has applied both chats (carol on a and dave on b have them): a ping to either
    // is answered after anything they caused.
    for c in [&mut alice, &mut bob, &mut carol, &mut dave] {
        c.expect_nothing_more();
    }

    // Leaves both ways: asked for, and a dropped connection.
    carol.send(&ClientMsg::Leave { message: None });
    assert_eq!(carol.until_closed(), (Some(CloseReason::Left), vec![]));
    for c in [&mut alice, &mut bob, &mut dave] {
        assert_eq!(c.recv(), left("carol", CloseReason::Left));
    }
    drop(dave);
    for c in [&mut alice, &mut bob] {
        assert_eq!(c.recv(), left("dave", CloseReason::Disconnected));
    }
    // Names are free again on either node.
    let (_carol, _) = RawClient::join(b.addr, "carol");
    assert_eq!(alice.recv(), joined("carol"));
    assert_eq!(bob.recv(), joined("carol"));
    bob.send(&chat("again"));
    assert_eq!(alice.recv(), said(3, "bob", "again"));
    // A hello and a chat in one write, as in a room alone: the chat follows the join in the
    // log, though the join was still on its way when the chat came.
    let mut erin = RawClient::connect(a.addr);
    let mut both = chat_proto::encode_to_vec(&hello("erin")).unwrap();
    both.extend(chat_proto::encode_to_vec(&chat("hi at once")).unwrap());
    erin.send_raw(&both);
    assert!(matches!(erin.recv(), ServerMsg::Welcome { .. }));
    assert!(matches!(erin.recv(), ServerMsg::History { .. }));
    assert_eq!(bob.recv(), joined("erin"));
    assert_eq!(bob.recv(), said(4, "erin", "hi at once"));
    // Erin's node has applied her chat once alice, on the same node, has it; only then does a
    // ping to it come after any echo.
    assert_eq!(alice.recv(), joined("erin"));
    assert_eq!(alice.recv(), said(4, "erin", "hi at once"));
    erin.expect_nothing_more();
}

#[test]
fn a_killed_node_s_members_leave_once_everywhere_and_their_names_come_free() {
    let redis = RedisServer::start();
    let (a, mut b) = (node(&redis.url()), node(&redis.url()));
    let (mut alice, _) = RawClient::join(a.addr, "alice");
    let (bob, _) = RawClient::join(b.addr, "bob");
    let (_carol, _) = RawClient::join(b.addr, "carol");
    assert_eq!(alice.recv(), joined("bob"));
    assert_eq!(alice.recv(), joined("carol"));

    let killed = Instant::now();
    b.signal("9");
    b.wait_exit(Duration::from_secs(5));
    // Within the lease plus a heartbeat period (the sweep runs with it), and a margin.
    let mut gone = Vec::new();
    for _ in 0..2 {
        match alice.recv() {
            ServerMsg::Left { name, reason, .. } => {
                assert_eq!(reason, CloseReason::ServerLost);
                gone.push(name);
            }
            other => panic!("expected a leave, got {other:?}"),
        }
    }
    gone.sort();
    assert_eq!(gone, vec!["bob", "carol"]);
    assert!(
        killed.elapsed() < Duration::from_secs(5),
        "{:?}",
        killed.elapsed()
    );
    alice.expect_silence(Duration::from_millis(300));
    // Their names are free, and the room goes on.
    let (mut bob2, _) = RawClient::join(a.addr, "bob");
    assert_eq!(alice.recv(), joined("bob"));
    let c = node(&redis.url());
    let (mut carol2, members) = RawClient::join(c.addr, "carol");
    assert_eq!(members, vec!["alice", "bob", "carol"]);
    alice.send(&chat("still here"));
    assert_eq!(bob2.recv(), joined("carol"));
    assert_eq!(bob2.recv(), said(1, "alice", "still here"));
    assert_eq!(carol2.recv(), said(1, "alice", "still here"));
    drop(bob);
}

#[test]
fn while_redis_is_down_members_stay_and_get_unavailable_then_the_log_continues() {
    let mut redis = RedisServer::builder().aof(true).start();
    let url = redis.url();
    let (a, b) = (
        node_with_lease(&url, OUTAGE_LEASE),
        node_with_lease(&url, OUTAGE_LEASE),
    );
    let (mut alice, _) = RawClient::join(a.addr, "alice");
    let (mut bob, _) = RawClient::join(b.addr, "bob");
    assert_eq!(alice.recv(), joined("bob"));
    alice.send(&chat("one"));
    assert_eq!(bob.recv(), said(1, "alice", "one"));

    redis.kill();
    alice.send(&chat("lost"));
    assert_eq!(alice.recv(), ServerMsg::Error(ErrorKind::Unavailable));
    let mut carol = RawClient::connect(b.addr);
    carol.send(&hello("carol"));
    assert_eq!(carol.recv(), ServerMsg::Refused(Refusal::Unavailable));
    std::thread::sleep(Duration::from_millis(300));
    redis.restart();

    // Back: nobody was dropped, the log goes on with no gap and no repeat.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        carol.send(&hello("carol"));
        match carol.recv() {
            ServerMsg::Welcome { .. } => break,
            ServerMsg::Refused(Refusal::Unavailable) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(100));
            }
            other => panic!("carol: {other:?}"),
        }
    }
    // A newcomer is shown what was said before it came: in a shared room, the log applied.
    assert_eq!(
        carol.recv(),
        ServerMsg::History {
            chats: vec![chat_proto::HistoryChat {
                seq: 1,
                from: "alice".into(),
                text: "one".into(),
                time: 0,
                kind: ChatKind::Plain,
            }],
            missed: 0
        }
    );
    // Alice was told once, of "lost": "one", delivered, is not reported as not sent.
    assert_eq!(alice.recv(), joined("carol"));
    assert_eq!(bob.recv(), joined("carol"));
    bob.send(&chat("two"));
    assert_eq!(alice.recv(), said(2, "bob", "two"));
    assert_eq!(carol.recv(), said(2, "bob", "two"));
    // Carol is on bob's node: it has applied his chat, so a ping to it comes after any echo.
    alice.expect_nothing_more();
    bob.expect_nothing_more();
}

/// A member who leaves while Redis is down is not forgotten: its node keeps the leave, and the
/// leave reaches the log once Redis is back, with the member's own reason (a sweep would say its
/// server was lost), and the name comes free.
#[test]
fn a_leave_made_while_redis_is_down_reaches_the_log_when_it_is_back() {
    let mut redis = RedisServer::builder().aof(true).start();
    let url = redis.url();
    let (a, b) = (
        node_with_lease(&url, OUTAGE_LEASE),
        node_with_lease(&url, OUTAGE_LEASE),
    );
    let (mut alice, _) = RawClient::join(a.addr, "alice");
    let (mut bob, _) = RawClient::join(b.addr, "bob");
    assert_eq!(alice.recv(), joined("bob"));

    redis.kill();
    alice.send(&ClientMsg::Leave { message: None });
    assert_eq!(alice.until_closed(), (Some(CloseReason::Left), vec![]));
    // Long enough for the leave's call to fail, and a retry or two.
    std::thread::sleep(Duration::from_millis(500));
    redis.restart();

    assert_eq!(bob.recv(), left("alice", CloseReason::Left));
    let (_alice, _) = join_soon(b.addr, "alice");
    assert_eq!(bob.recv(), joined("alice"));
    let alices: Vec<LogEvent> = log_entries(&redis)
        .into_iter()
        .filter(|e| e.name == "alice")
        .map(|e| e.event)
        .collect();
    let left_itself = LogEvent::Left {
        reason: CloseReason::Left,
    };
    assert_eq!(alices, [LogEvent::Joined, left_itself, LogEvent::Joined]);
}

/// A leave that comes while the node's proposal queue is full (its first batch hangs on a cut
/// link) is not dropped with the chats past the queue: it waits behind what is queued, and
/// reaches the log with the member's reason once the link is back.
#[test]
fn a_leave_behind_a_full_proposal_queue_reaches_the_log() {
    let redis = RedisServer::start();
    let proxy = Proxy::start(redis.addr());
    let a = node_with_lease(&format!("redis://{}", proxy.addr()), OUTAGE_LEASE);
    let b = node_with_lease(&redis.url(), OUTAGE_LEASE);
    let (mut alice, _) = RawClient::join(a.addr, "alice");
    let (mut bob, _) = RawClient::join(b.addr, "bob");
    assert_eq!(alice.recv(), joined("bob"));

    proxy.cut();
    let mut bytes = Vec::new();
    for i in 0..PROPOSAL_QUEUE + 100 {
        bytes.extend(chat_proto::encode_to_vec(&chat(&format!("c{i}"))).unwrap());
    }
    bytes.extend(chat_proto::encode_to_vec(&ClientMsg::Leave { message: None }).unwrap());
    alice.send_raw(&bytes);
    let (reason, answers) = alice.until_closed();
    assert_eq!(reason, Some(CloseReason::Left));
    // Past the queue (one batch in flight, then PROPOSAL_QUEUE waiting), chats are declined.
    let unavailable = ServerMsg::Error(ErrorKind::Unavailable);
    assert_eq!(answers, vec![unavailable; 99]);
    // Long enough for the first batch to fail twice (its call's time, then once more on a new
    // connection, as cut): the queued chats are declined while the link is still cut.
    std::thread::sleep(Duration::from_millis(3000));
    proxy.restore();

    // None of the chats entered the log (the one on its way came too late), the leave did.
    assert_eq!(bob.recv(), left("alice", CloseReason::Left));
    let (_alice, _) = join_soon(b.addr, "alice");
    assert_eq!(bob.recv(), joined("alice"));
}

#[test]
fn a_cut_link_gives_unavailable_then_every_missed_entry_arrives_once() {
    let redis = RedisServer::start();
    let proxy = Proxy::start(redis.addr());
    let proxied = format!("redis://{}", proxy.addr());
    let a = node_with_lease(&proxied, OUTAGE_LEASE);
    let b = node_with_lease(&redis.url(), OUTAGE_LEASE);
    let (mut alice, _) = RawClient::join(a.addr, "alice");
    let (mut bob, _) = RawClient::join(b.addr, "bob");
    assert_eq!(alice.recv(), joined("bob"));

    proxy.cut();
    alice.send(&chat("into the void"));
    assert_eq!(alice.recv(), ServerMsg::Error(ErrorKind::Unavailable));
    // The other node goes on; its entries wait for node a.
    bob.send(&chat("b1"));
    bob.send(&chat("b2"));
    proxy.restore();
    // Node a finds its link again on its own schedule (a stalled read is given up after 3 s,
    // then it reconnects): on a loaded machine that can take longer than one receive timeout.
    let deadline = Instant::now() + Duration::from_secs(40);
    let first = loop {
        match alice.try_recv() {
            Ok(Some(ServerMsg::Ping { nonce })) => alice.send(&ClientMsg::Pong { nonce }),
            Ok(Some(msg)) => break msg,
            Ok(None) => panic!("alice's connection closed"),
            Err(e) if Instant::now() < deadline => {
                let _ = e; // nothing yet: keep waiting
            }
            Err(e) => panic!("node a did not deliver the missed entries within 40 s: {e}"),
        }
    };
    assert_eq!(first, said(1, "bob", "b1"));
    assert_eq!(alice.recv(), said(2, "bob", "b2"));
    alice.expect_silence(Duration::from_millis(300));
    alice.send(&chat("back"));
    // The proxy held the cut chat's bytes and passed them on once restored, long after node a
    // told alice it was not sent: Redis refuses it as expired, so nobody ever sees it.
    assert_eq!(bob.recv(), said(3, "alice", "back"));
    bob.expect_silence(Duration::from_millis(200));
}

#[test]
fn a_redis_restarted_empty_resets_the_room_and_rejoining_works() {
    let mut redis = RedisServer::start();
    let (a, b) = (node(&redis.url()), node(&redis.url()));
    let (mut alice, _) = RawClient::join(a.addr, "alice");
    let (mut bob, _) = RawClient::join(b.addr, "bob");
    assert_eq!(alice.recv(), joined("bob"));
    redis.restart(); // no AOF: empty
    for c in [&mut alice, &mut bob] {
        let (reason, _) = c.until_closed();
        assert_eq!(reason, Some(CloseReason::RoomReset));
    }
    let (mut alice, members) = join_soon(a.addr, "alice");
    assert_eq!(members, vec!["alice"]);
    let (mut bob, _) = join_soon(b.addr, "bob");
    assert_eq!(alice.recv(), joined("bob"));
    alice.send(&chat("hello again"));
    assert_eq!(bob.recv(), said(1, "alice", "hello again"));
}

#[test]
fn a_node_stopped_past_its_lease_is_fenced_and_closes_its_members() {
    let redis = RedisServer::start();
    let (a, b) = (node(&redis.url()), node(&redis.url()));
    let (mut alice, _) = RawClient::join(a.addr, "alice");
    let (mut bob, _) = RawClient::join(b.addr, "bob");
    assert_eq!(alice.recv(), joined("bob"));
    b.signal("STOP");
    assert_eq!(alice.recv(), left("bob", CloseReason::ServerLost));
    // The name is free while b sleeps.
    let (mut bob2, _) = RawClient::join(a.addr, "bob");
    assert_eq!(alice.recv(), joined("bob"));
    b.signal("CONT");
    let (reason, _) = bob.until_closed();
    assert_eq!(reason, Some(CloseReason::ServerLost));
    // Nothing b's old member said reaches the room, and b serves again under a new node.
    let (mut carol, _) = join_soon(b.addr, "carol");
    assert_eq!(alice.recv(), joined("carol"));
    assert_eq!(bob2.recv(), joined("carol"));
    carol.send(&chat("on b again"));
    assert_eq!(alice.recv(), said(1, "carol", "on b again"));
    alice.expect_silence(Duration::from_millis(200));
}

/// Cut off from Redis for longer than its lease, a node does not keep members the others have
/// let go: it closes them itself as lost, without waiting for the link to come back. Back, it
/// serves again as a new node.
#[test]
fn a_node_cut_off_past_its_lease_lets_its_members_go_on_its_own() {
    let redis = RedisServer::start();
    let proxy = Proxy::start(redis.addr());
    let a = node(&format!("redis://{}", proxy.addr()));
    let b = node(&redis.url());
    let (mut alice, _) = RawClient::join(a.addr, "alice");
    let (mut bob, _) = RawClient::join(b.addr, "bob");
    assert_eq!(alice.recv(), joined("bob"));

    proxy.cut();
    let cut_at = Instant::now();
    let (reason, _) = alice.until_closed();
    assert_eq!(reason, Some(CloseReason::ServerLost));
    assert!(
        cut_at.elapsed() < Duration::from_secs(10),
        "closed only after {:?}",
        cut_at.elapsed()
    );
    assert_eq!(bob.recv(), left("alice", CloseReason::ServerLost));
    // While cut off, node a takes nobody in.
    let mut carol = RawClient::connect(a.addr);
    carol.send(&hello("carol"));
    assert_eq!(carol.recv(), ServerMsg::Refused(Refusal::Unavailable));

    proxy.restore();
    let (mut alice, _) = join_soon(a.addr, "alice");
    assert_eq!(bob.recv(), joined("alice"));
    alice.send(&chat("back"));
    assert_eq!(bob.recv(), said(1, "alice", "back"));
    bob.expect_silence(Duration::from_millis(200));
}

/// The member cap is the room's, set by the server that created it: a later server started with
/// a larger `--max-clients` does not raise it.
#[test]
fn the_room_s_member_cap_is_the_one_it_was_created_with_on_every_node() {
    let redis = RedisServer::start();
    let url = redis.url();
    let a = ServerProcess::start(&["--redis", &url, "--lease", LEASE, "--max-clients", "2"]);
    let b = ServerProcess::start(&["--redis", &url, "--lease", LEASE, "--max-clients", "100"]);
    let (mut alice, _) = RawClient::join(a.addr, "alice");
    let (_bob, _) = RawClient::join(b.addr, "bob");
    assert_eq!(alice.recv(), joined("bob"));
    let mut carol = RawClient::connect(b.addr);
    carol.send(&hello("carol"));
    assert_eq!(carol.recv(), ServerMsg::Refused(Refusal::ServerFull));
    alice.expect_silence(Duration::from_millis(200));
}

#[test]
fn three_nodes_of_thirty_members_see_one_sequence_each_chat_once_never_echoed() {
    let started = Instant::now();
    let redis = RedisServer::start();
    let nodes: Vec<ServerProcess> = (0..3).map(|_| node(&redis.url())).collect();
    let mut members: Vec<(String, RawClient)> = Vec::new();
    for i in 0..30 {
        for (k, node) in nodes.iter().enumerate() {
            let name = format!("n{k}m{i}");
            let (client, _) = RawClient::join(node.addr, &name);
            members.push((name, client));
        }
    }
    // Two chats from everyone, sent all at once, so that the three nodes' proposals interleave.
    for round in 0..2 {
        for (name, client) in &mut members {
            client.send(&chat(&format!("{name} says {round}")));
        }
    }
    // On each node, one member leaves and one hangs up (after its chats, on the same socket).
    for (name, client) in &mut members {
        if name.ends_with("m0") {
            client.send(&ClientMsg::Leave { message: None });
        } else if name.ends_with("m1") {
            client.stream.shutdown(Shutdown::Write).unwrap();
        }
    }
    let total = 90 + 180 + 6;
    assert!(
        wait_until(Duration::from_secs(20), || log_len(&redis) >= total),
        "the log holds {} entries, not {total}",
        log_len(&redis)
    );
    let log = log_entries(&redis);
    assert_eq!(log.len(), total as usize);
    // One order: positions and chat numbers count up from 1 with no gaps.
    assert!(log.iter().map(|e| e.pos).eq(1..=total as u64));
    let seqs: Vec<u64> = log
        .iter()
        .filter_map(|e| match e.event {
            LogEvent::Chat { seq, .. } => Some(seq),
            _ => None,
        })
        .collect();
    assert!(seqs.iter().copied().eq(1..=180), "{seqs:?}");

    // Kept open until every view is checked: a dropped one would be a leave the others see.
    for (name, client) in &mut members {
        let mine = log.iter().position(|e| e.is_join_of(name)).unwrap();
        let expected: Vec<ServerMsg> = log[mine + 1..]
            .iter()
            .filter_map(|e| e.seen_by(name))
            .collect();
        if name.ends_with("m0") || name.ends_with("m1") {
            // Closed once it left: what it saw is where the others' view begins.
            let (reason, seen) = client.until_closed();
            if name.ends_with("m0") {
                assert_eq!(reason, Some(CloseReason::Left), "{name}");
            }
            assert!(expected.starts_with(&seen), "{name} saw {seen:?}");
            continue;
        }
        let seen: Vec<ServerMsg> = (0..expected.len()).map(|_| client.recv()).collect();
        assert_eq!(seen, expected, "{name}'s view of the room");
        let chats = seen
            .iter()
            .filter(|m| matches!(m, ServerMsg::Chat { .. }))
            .count();
        assert_eq!(chats, 178, "{name}: every chat but its own two, once each");
    }
    // Every node has now applied the whole log: its last entry reached each node's members but
    // its author. A ping to any node is answered after whatever the log caused there.
    for (name, client) in &mut members {
        if !name.ends_with("m0") && !name.ends_with("m1") {
            client.expect_nothing_more();
        }
    }
    eprintln!("three nodes x 30 members: {:?}", started.elapsed());
}

#[test]
fn a_name_race_across_nodes_with_look_alike_spellings_has_one_winner_per_name() {
    let started = Instant::now();
    let redis = RedisServer::start();
    let nodes = [node(&redis.url()), node(&redis.url()), node(&redis.url())];
    // Six spellings of each of 25 names: case, fullwidth, and wholly Cyrillic look-alikes
    // (с, о, р, е) in lower and upper case. Each is one script, so none is refused as mixed.
    let spellings = |i: usize| {
        [
            format!("cope{i}"),
            format!("COPE{i}"),
            format!("Cope{i}"),
            format!("ｃｏｐｅ{i}"),
            format!("\u{441}\u{43e}\u{440}\u{435}{i}"),
            format!("\u{421}\u{41e}\u{420}\u{415}{i}"),
        ]
    };
    let mut keys = HashSet::new();
    for i in 0..25 {
        let names = spellings(i);
        for name in &names {
            assert_eq!(chat_core::check_name(name, 32), Ok(()), "{name}");
            assert_eq!(chat_core::fold_name(name), chat_core::fold_name(&names[0]));
        }
        assert!(
            keys.insert(chat_core::fold_name(&names[0])),
            "cope{i} collides"
        );
    }
    // 150 hellos, 50 per node, all sent before any answer is read.
    let mut clients = Vec::new();
    for i in 0..25 {
        for (j, spelling) in spellings(i).into_iter().enumerate() {
            let mut c = RawClient::connect(nodes[(i + j) % 3].addr);
            c.send(&hello(&spelling));
            clients.push((i, spelling, c));
        }
    }
    let mut winners: HashMap<usize, Vec<String>> = HashMap::new();
    let mut kept = Vec::new();
    for (i, spelling, mut c) in clients {
        loop {
            match c.recv() {
                ServerMsg::Welcome { name, .. } => {
                    assert_eq!(name, spelling);
                    winners.entry(i).or_default().push(spelling);
                    kept.push(c);
                    break;
                }
                ServerMsg::Refused(Refusal::NameTaken) => break,
                ServerMsg::Joined { .. } | ServerMsg::Left { .. } => {}
                other => panic!("{spelling}: unexpected {other:?}"),
            }
        }
    }
    let mut expected = Vec::new();
    for i in 0..25 {
        let won = winners.get(&i).cloned().unwrap_or_default();
        assert_eq!(won.len(), 1, "cope{i} welcomed as {won:?}");
        expected.push(won[0].clone());
    }
    expected.sort();
    // Every node lists the same 25: asked by a member who joined after every claim was decided.
    for (k, node) in nodes.iter().enumerate() {
        let (mut watcher, _) = RawClient::join(node.addr, &format!("watcher{k}"));
        let list: Vec<String> = who(&mut watcher)
            .into_iter()
            .filter(|n| !n.starts_with("watcher"))
            .collect();
        assert_eq!(list, expected, "who on node {k}");
    }
    eprintln!("name race, 150 clients: {:?}", started.elapsed());
}

#[test]
fn a_node_behind_the_trimmed_log_resets_alone_and_its_members_can_rejoin() {
    let started = Instant::now();
    let redis = RedisServer::start();
    // A lease long enough for the others to outrun the trim while this node sleeps within it.
    let lease = Duration::from_secs(6);
    let args = [
        "--redis",
        &redis.url(),
        "--lease",
        "6s",
        "--trim-len",
        "10",
        "--rate",
        "10000",
        "--burst",
        "10000",
    ];
    let (a, b) = (ServerProcess::start(&args), ServerProcess::start(&args));
    let (mut alice, _) = RawClient::join(a.addr, "alice");
    let (mut dave, _) = RawClient::join(a.addr, "dave");
    let (mut bob, _) = RawClient::join(b.addr, "bob");
    let (mut carol, _) = RawClient::join(b.addr, "carol");
    assert_eq!(alice.recv(), joined("dave"));
    for c in [&mut alice, &mut dave] {
        assert_eq!(c.recv(), joined("bob"));
        assert_eq!(c.recv(), joined("carol"));
    }
    assert_eq!(bob.recv(), joined("carol"));

    let stopped = Instant::now();
    b.signal("STOP");
    // `MAXLEN ~` drops whole stream nodes (100 entries by default): say far more than that.
    let chats = 400;
    for i in 0..chats {
        alice.send(&chat(&format!("c{i}")));
    }
    for i in 0..chats {
        assert_eq!(dave.recv(), said(i + 1, "alice", &format!("c{i}")));
    }
    let first = log_entries(&redis)[0].pos;
    assert!(first > 5, "the log still starts at {first}: not trimmed");
    assert!(
        stopped.elapsed() < lease - Duration::from_secs(2),
        "the chats took {:?}: too close to the lease for this test",
        stopped.elapsed()
    );
    b.signal("CONT");

    // b finds the gap and starts over: its members are told the room was reset.
    for c in [&mut bob, &mut carol] {
        let (reason, _) = c.until_closed();
        assert_eq!(reason, Some(CloseReason::RoomReset));
    }
    // The others see them go, and nothing else: b was not lost, only behind.
    for c in [&mut alice, &mut dave] {
        assert_eq!(c.recv(), left("bob", CloseReason::RoomReset));
        assert_eq!(c.recv(), left("carol", CloseReason::RoomReset));
    }
    dave.send(&chat("still here"));
    assert_eq!(alice.recv(), said(chats + 1, "dave", "still here"));
    // b's members come back and the room goes on across both nodes.
    let (mut bob, members) = join_soon(b.addr, "bob");
    assert_eq!(members, vec!["alice", "bob", "dave"]);
    for c in [&mut alice, &mut dave] {
        assert_eq!(c.recv(), joined("bob"));
    }
    alice.send(&chat("welcome back"));
    assert_eq!(
        recv_past_history(&mut bob),
        said(chats + 2, "alice", "welcome back")
    );
    bob.send(&chat("thanks"));
    assert_eq!(alice.recv(), said(chats + 3, "bob", "thanks"));
    assert_eq!(dave.recv(), said(chats + 2, "alice", "welcome back"));
    assert_eq!(dave.recv(), said(chats + 3, "bob", "thanks"));
    // Bob is alone on b, which may not have applied his chat yet: a ping to it could overtake
    // an echo. A chat after his in the log must reach him first; then b has applied both.
    dave.send(&chat("last"));
    for c in [&mut alice, &mut bob] {
        assert_eq!(c.recv(), said(chats + 4, "dave", "last"));
    }
    for c in [&mut alice, &mut dave, &mut bob] {
        c.expect_nothing_more();
    }
    eprintln!("node behind the trim: {:?}", started.elapsed());
}

#[test]
fn nothing_a_fenced_node_sends_after_waking_enters_the_log() {
    let started = Instant::now();
    let redis = RedisServer::start();
    let (a, b) = (node(&redis.url()), node(&redis.url()));
    let (mut alice, _) = RawClient::join(a.addr, "alice");
    let (mut bob, _) = RawClient::join(b.addr, "bob");
    assert_eq!(alice.recv(), joined("bob"));
    let b_node = log_entries(&redis)
        .iter()
        .find(|e| e.is_join_of("bob"))
        .unwrap()
        .node;
    b.signal("STOP");
    assert_eq!(alice.recv(), left("bob", CloseReason::ServerLost));
    // While b sleeps past its lease, its member talks and a newcomer knocks: all of it waits in
    // b's sockets, to be read the moment b wakes, before it can know it was swept.
    for i in 0..20 {
        bob.send(&chat(&format!("from the grave {i}")));
    }
    let mut eve = RawClient::connect(b.addr);
    eve.send(&hello("eve"));
    let swept_at = log_entries(&redis).len();
    b.signal("CONT");
    let (reason, _) = bob.until_closed();
    assert_eq!(reason, Some(CloseReason::ServerLost));
    // Eve's hello came under the old node: she is refused (her join was fenced), closed (b
    // started over while she was joining), or welcomed by b as the node it became.
    match eve.recv() {
        ServerMsg::Refused(Refusal::Unavailable) | ServerMsg::Closing(CloseReason::ServerLost) => {}
        ServerMsg::Welcome { .. } => assert_eq!(alice.recv(), joined("eve")),
        other => panic!("eve: {other:?}"),
    }
    alice.expect_silence(Duration::from_millis(500));
    // b serves again under another node number; the log holds nothing from its old one after
    // the sweep.
    let (mut carol, _) = join_soon(b.addr, "carol");
    assert_eq!(alice.recv(), joined("carol"));
    carol.send(&chat("on b again"));
    assert_eq!(alice.recv(), said(1, "carol", "on b again"));
    let log = log_entries(&redis);
    let after: Vec<&LogEntry> = log[swept_at..].iter().collect();
    assert!(after.iter().all(|e| e.node != b_node), "{after:?}");
    assert!(
        log.iter()
            .all(|e| !matches!(&e.event, LogEvent::Chat { text, .. } if text.contains("grave"))),
        "{log:?}"
    );
    alice.expect_silence(Duration::from_millis(200));
    eprintln!("fenced node: {:?}", started.elapsed());
}

#[test]
fn a_node_shut_down_lets_its_members_go_everywhere_at_once() {
    let started = Instant::now();
    let redis = RedisServer::start();
    // A long lease; and a sweep would say the server was lost: ServerShutdown below can only
    // be the node's own word (how long it took is printed, not asserted).
    let (a, mut b) = (
        node_with_lease(&redis.url(), "30s"),
        node_with_lease(&redis.url(), "30s"),
    );
    let (mut alice, _) = RawClient::join(a.addr, "alice");
    let (mut bob, _) = RawClient::join(b.addr, "bob");
    let (mut carol, _) = RawClient::join(b.addr, "carol");
    assert_eq!(alice.recv(), joined("bob"));
    assert_eq!(alice.recv(), joined("carol"));
    assert_eq!(bob.recv(), joined("carol"));

    let term = Instant::now();
    b.signal("TERM");
    for c in [&mut bob, &mut carol] {
        let (reason, _) = c.until_closed();
        assert_eq!(reason, Some(CloseReason::ServerShutdown));
    }
    let mut gone = vec![alice.recv(), alice.recv()];
    let within = term.elapsed();
    gone.sort_by_key(|m| format!("{m:?}"));
    assert_eq!(
        gone,
        vec![
            left("bob", CloseReason::ServerShutdown),
            left("carol", CloseReason::ServerShutdown)
        ]
    );
    assert!(
        b.wait_exit(Duration::from_secs(5))
            .is_some_and(|s| s.success())
    );
    // Their names are free at once, and the node is out of the room.
    let (_bob, _) = RawClient::join(a.addr, "bob");
    assert_eq!(alice.recv(), joined("bob"));
    assert_eq!(
        redis.cmd::<i64>(&["ZCARD", "chat:{chat}:nodes"]),
        1,
        "only node a holds a lease"
    );
    alice.expect_silence(Duration::from_millis(200));
    eprintln!(
        "node shut down: {within:?} to the leaves, {:?} in all",
        started.elapsed()
    );
}

#[test]
fn a_node_started_after_the_chats_shows_newcomers_the_history_the_others_show() {
    let redis = RedisServer::start();
    let node =
        |url: &str| ServerProcess::start(&["--redis", url, "--lease", LEASE, "--history", "2"]);
    let a = node(&redis.url());
    let (mut alice, _) = RawClient::join(a.addr, "alice");
    for i in 1..=3 {
        alice.send(&chat(&format!("c{i}")));
    }
    assert!(wait_until(Duration::from_secs(5), || log_len(&redis) == 4));
    // b starts from a snapshot: the last chats come with it, as many as --history keeps.
    let b = node(&redis.url());
    let shown = ServerMsg::History {
        chats: (2..=3)
            .map(|seq| chat_proto::HistoryChat {
                seq,
                from: "alice".into(),
                text: format!("c{seq}").into(),
                time: 0,
                kind: ChatKind::Plain,
            })
            .collect(),
        missed: 0,
    };
    let (mut bob, _) = RawClient::join(b.addr, "bob");
    assert_eq!(
        bob.recv(),
        shown,
        "on the node that started after the chats"
    );
    let (mut carol, _) = RawClient::join(a.addr, "carol");
    assert_eq!(carol.recv(), shown, "on the node that applied them");
}

/// The next message `client` gets, and its log time (it must have one).
fn recv_timed(client: &mut RawClient) -> (ServerMsg, u64) {
    client.last_time = None;
    let msg = client.recv();
    let time = client
        .last_time
        .unwrap_or_else(|| panic!("{msg:?} has no time"));
    (msg, time)
}

/// Each of `clients` gets `msg` next, all at one time, which is returned.
fn all_get(clients: &mut [&mut RawClient], msg: &ServerMsg) -> u64 {
    let times: Vec<u64> = clients
        .iter_mut()
        .map(|c| {
            let (got, time) = recv_timed(c);
            assert_eq!(&got, msg);
            time
        })
        .collect();
    assert!(
        times.windows(2).all(|w| w[0] == w[1]),
        "{msg:?} at different times: {times:?}"
    );
    times[0]
}

/// Issue 18 in a shared room: chat kinds, renames, away, idents and parting words cross nodes,
/// every member sees each entry at one time (the log's, Redis's clock), times never go back,
/// and a node started later shows the same seats and history.
#[test]
fn two_nodes_share_kinds_renames_away_idents_and_parting_words_at_one_time() {
    let redis = RedisServer::start();
    let start_ms = unix_ms();
    let node =
        |url: &str| ServerProcess::start(&["--redis", url, "--lease", LEASE, "--history", "4"]);
    let (a, b) = (node(&redis.url()), node(&redis.url()));
    let ident = chat_proto::Ident {
        user: "al".into(),
        realname: "Alice A".into(),
    };
    let mut alice = RawClient::connect(a.addr);
    alice.send(&ClientMsg::Hello {
        magic: chat_proto::MAGIC,
        version: chat_proto::PROTOCOL_VERSION,
        name: "alice".into(),
        password: None,
        ident: Some(ident.clone()),
    });
    assert!(matches!(alice.recv(), ServerMsg::Welcome { .. }));
    let (mut bob, _) = RawClient::join(b.addr, "bob");
    assert_eq!(alice.recv(), joined("bob"));
    let (mut carol, _) = RawClient::join(a.addr, "carol");
    let (mut dave, _) = RawClient::join(b.addr, "dave");
    // Everyone has seen every join: from here on each entry reaches all but its author.
    for c in [&mut alice, &mut bob] {
        assert_eq!(c.recv(), joined("carol"));
    }
    for c in [&mut alice, &mut bob, &mut carol] {
        assert_eq!(c.recv(), joined("dave"));
    }
    let mut times = Vec::new();
    let send_kind = |c: &mut RawClient, text: &str, kind: ChatKind| {
        c.send(&ClientMsg::Chat {
            text: text.into(),
            kind,
        })
    };
    // An action from node a, a notice from node b.
    send_kind(&mut alice, "waves", ChatKind::Action);
    let action = chat_kind(1, "alice", "waves", ChatKind::Action);
    times.push(all_get(&mut [&mut bob, &mut carol, &mut dave], &action));
    send_kind(&mut bob, "hear ye", ChatKind::Notice);
    let notice = chat_kind(2, "bob", "hear ye", ChatKind::Notice);
    times.push(all_get(&mut [&mut alice, &mut carol, &mut dave], &notice));
    // bob (node b) takes another name: everyone is told, bob too.
    bob.send(&ClientMsg::Nick {
        name: "Robert".into(),
    });
    let renamed = ServerMsg::Renamed {
        from: "bob".into(),
        to: "Robert".into(),
        time: 0,
    };
    times.push(all_get(
        &mut [&mut alice, &mut bob, &mut carol, &mut dave],
        &renamed,
    ));
    // A name taken on the other node is refused, to the renamer alone.
    dave.send(&ClientMsg::Nick {
        name: "ALICE".into(),
    });
    assert_eq!(dave.recv(), ServerMsg::Error(ErrorKind::NameTaken));
    // alice (node a) goes away: everyone else is told.
    alice.send(&ClientMsg::Away {
        message: Some("lunch".into()),
    });
    let away = ServerMsg::Away {
        name: "alice".into(),
        message: Some("lunch".into()),
        time: 0,
    };
    times.push(all_get(&mut [&mut bob, &mut carol, &mut dave], &away));
    // Robert's chat goes under his new name.
    send_kind(&mut bob, "renamed", ChatKind::Plain);
    let plain = chat_kind(3, "Robert", "renamed", ChatKind::Plain);
    times.push(all_get(&mut [&mut alice, &mut carol, &mut dave], &plain));
    // A node started now is told the seats (away, ident, new name) and the history, timed as
    // the others saw it.
    let c = node(&redis.url());
    let (mut erin, members) = RawClient::join(c.addr, "erin");
    assert_eq!(members, ["alice", "carol", "dave", "erin", "Robert"]);
    let (history, last) = recv_timed(&mut erin);
    let ServerMsg::History { chats, .. } = history else {
        panic!("no history: {history:?}")
    };
    let shown: Vec<(&str, &str, ChatKind)> =
        chats.iter().map(|c| (&*c.from, &*c.text, c.kind)).collect();
    assert_eq!(
        shown,
        [
            ("alice", "waves", ChatKind::Action),
            ("bob", "hear ye", ChatKind::Notice),
            ("Robert", "renamed", ChatKind::Plain)
        ]
    );
    assert_eq!(last, times[4], "the last chat's time, in the history");
    for client in [&mut alice, &mut bob, &mut carol, &mut dave] {
        assert_eq!(client.recv(), joined("erin"));
    }
    let mut frank = RawClient::connect(c.addr);
    frank.send(&hello("frank"));
    let ServerMsg::Welcome { members, .. } = frank.recv() else {
        panic!("frank was not welcomed")
    };
    let seen = &members[0];
    assert_eq!(
        (&*seen.name, seen.away.as_deref(), seen.ident.as_deref()),
        ("alice", Some("lunch"), Some(&ident)),
        "alice's seat, as the node started later has it"
    );
    let (history, time) = recv_timed(&mut frank);
    assert!(matches!(history, ServerMsg::History { .. }), "{history:?}");
    assert_eq!(time, times[4]);
    for client in [&mut alice, &mut bob, &mut carol, &mut dave, &mut erin] {
        assert_eq!(client.recv(), joined("frank"));
    }
    // Robert leaves with parting words.
    bob.send(&ClientMsg::Leave {
        message: Some("so long".into()),
    });
    let (reason, _) = bob.until_closed();
    assert_eq!(reason, Some(CloseReason::Left));
    let parting = ServerMsg::Left {
        name: "Robert".into(),
        reason: CloseReason::Left,
        message: Some("so long".into()),
        time: 0,
    };
    let mut others = [&mut alice, &mut carol, &mut dave, &mut erin, &mut frank];
    times.push(all_get(&mut others, &parting));
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "{times:?}");
    let end_ms = unix_ms();
    assert!(
        times.iter().all(|t| (start_ms..=end_ms).contains(t)),
        "{times:?} outside [{start_ms}, {end_ms}]"
    );
}

fn chat_kind(seq: u64, from: &str, text: &str, kind: ChatKind) -> ServerMsg {
    ServerMsg::Chat {
        seq,
        time: 0,
        from: from.into(),
        text: text.into(),
        kind,
    }
}

fn unix_ms() -> u64 {
    let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
    u64::try_from(since.unwrap().as_millis()).unwrap()
}

/// Redis killed (-9) and restarted with its AOF within a second: the nodes' connections are
/// dead, and each is replaced before it is needed. A message right after Redis answers PING
/// again, and one 3 s after, go through; nobody is told "unavailable".
#[test]
fn after_redis_restarts_the_first_messages_go_through() {
    let mut redis = RedisServer::builder().aof(true).start();
    let url = redis.url();
    let (a, b) = (
        node_with_lease(&url, OUTAGE_LEASE),
        node_with_lease(&url, OUTAGE_LEASE),
    );
    let (mut alice, _) = RawClient::join(a.addr, "alice");
    let (mut bob, _) = RawClient::join(b.addr, "bob");
    assert_eq!(alice.recv(), joined("bob"));
    alice.send(&chat("one"));
    assert_eq!(bob.recv(), said(1, "alice", "one"));
    // Every connection idle for a while, as after a quiet spell.
    std::thread::sleep(Duration::from_millis(1500));

    redis.kill();
    std::thread::sleep(Duration::from_millis(300));
    redis.restart(); // returns once Redis answers PING
    alice.send(&chat("two"));
    assert_eq!(bob.recv(), said(2, "alice", "two"));
    std::thread::sleep(Duration::from_secs(3));
    bob.send(&chat("three"));
    assert_eq!(alice.recv(), said(3, "bob", "three"));
    alice.send(&chat("four"));
    assert_eq!(bob.recv(), said(4, "alice", "four"));
    alice.expect_nothing_more();
    bob.expect_nothing_more();
}

/// Redis stopped (SIGSTOP) with a message on its way, for less than a call's time and for
/// more, then continued (SIGCONT): each message is either delivered or reported not sent to
/// its sender, never both and never neither, and the room goes on.
#[test]
fn a_stopped_redis_gives_each_message_one_fate() {
    let redis = RedisServer::start();
    let url = redis.url();
    let (a, b) = (
        node_with_lease(&url, OUTAGE_LEASE),
        node_with_lease(&url, OUTAGE_LEASE),
    );
    let (mut alice, _) = RawClient::join(a.addr, "alice");
    let (mut bob, _) = RawClient::join(b.addr, "bob");
    assert_eq!(alice.recv(), joined("bob"));
    for (round, stop_ms) in [300u64, 950, 1050, 1600].into_iter().enumerate() {
        let during = format!("during {round}");
        redis.signal("STOP");
        alice.send(&chat(&during));
        std::thread::sleep(Duration::from_millis(stop_ms));
        redis.signal("CONT");
        // Time for the verdict: a call's time, a try on a new connection, and a margin.
        std::thread::sleep(Duration::from_secs(3));
        let after = format!("after {round}");
        alice.send(&chat(&after));
        let mut delivered = 0;
        loop {
            match recv_past_history(&mut bob) {
                ServerMsg::Chat { text, .. } if text == after => break,
                ServerMsg::Chat { text, .. } if text == during => delivered += 1,
                other => panic!("bob: {other:?}"),
            }
        }
        let told = alice
            .recv_until_pong()
            .into_iter()
            .filter(|m| *m == ServerMsg::Error(ErrorKind::Unavailable))
            .count();
        assert_eq!(
            delivered + told,
            1,
            "stopped {stop_ms} ms: '{during}' delivered {delivered} times, its sender told {told} \
             times it was not sent"
        );
    }
    bob.expect_nothing_more();
}
