//! One room across several `chat-server --redis` processes and a real `redis-server`.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use chat_proto::{ClientMsg, CloseReason, ErrorKind, Refusal, ServerMsg};
use tests::proxy::Proxy;
use tests::redis::RedisServer;
use tests::{RawClient, ServerProcess, chat, hello, joined, left};

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
/// (it is rejoining the room).
fn join_soon(addr: std::net::SocketAddr, name: &str) -> (RawClient, Vec<String>) {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut client = RawClient::connect(addr);
    loop {
        client.send(&hello(name));
        match client.recv() {
            ServerMsg::Welcome { members, .. } => {
                return (client, members.iter().map(|m| m.to_string()).collect());
            }
            ServerMsg::Refused(Refusal::Unavailable) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(100));
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
    }
}

fn who(client: &mut RawClient) -> Vec<String> {
    client.send(&ClientMsg::Who);
    loop {
        match client.recv() {
            ServerMsg::Members { names } => {
                let mut names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
                names.sort();
                return names;
            }
            ServerMsg::Joined { .. } | ServerMsg::Left { .. } => {}
            other => panic!("expected the member list, got {other:?}"),
        }
    }
}

/// Reads until `want` arrives, returning what came before it; panics on anything but notices.
fn until(client: &mut RawClient, want: &ServerMsg) -> Vec<ServerMsg> {
    let mut before = Vec::new();
    loop {
        let msg = client.recv();
        if &msg == want {
            return before;
        }
        before.push(msg);
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
                ServerMsg::Chat { seq, from, text } => {
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
    for c in [&mut alice, &mut bob, &mut carol, &mut dave] {
        c.expect_silence(Duration::from_millis(100));
    }

    // Leaves both ways: asked for, and a dropped connection.
    carol.send(&ClientMsg::Leave);
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
    bob.send(&chat("again"));
    assert_eq!(alice.recv(), said(3, "bob", "again"));
}

#[test]
fn a_name_race_across_nodes_has_one_winner_per_folded_name() {
    let redis = RedisServer::start();
    let nodes = [node(&redis.url()), node(&redis.url()), node(&redis.url())];
    // Look-alike spellings of each name fold to one key: only one of each may be welcomed.
    let spellings = |i: usize| {
        [
            format!("name{i}"),
            format!("NAME{i}"),
            format!("Name{i}"),
            format!("ｎａｍｅ{i}"),
        ]
    };
    let mut clients = Vec::new();
    for i in 0..10 {
        for (j, spelling) in spellings(i).into_iter().enumerate() {
            for (k, node) in nodes.iter().enumerate() {
                if (j + k) % 2 == 0 {
                    let mut c = RawClient::connect(node.addr);
                    c.send(&hello(&spelling));
                    clients.push((i, c));
                }
            }
        }
    }
    let mut welcomed: HashMap<usize, usize> = HashMap::new();
    let mut winners = Vec::new();
    for (i, mut c) in clients {
        loop {
            match c.recv() {
                ServerMsg::Welcome { .. } => {
                    *welcomed.entry(i).or_default() += 1;
                    winners.push(c);
                    break;
                }
                ServerMsg::Refused(Refusal::NameTaken) => break,
                ServerMsg::Joined { .. } | ServerMsg::Left { .. } => {}
                other => panic!("unexpected {other:?}"),
            }
        }
    }
    for i in 0..10 {
        assert_eq!(welcomed.get(&i), Some(&1), "name{i} welcomed {welcomed:?}");
    }
    // Every node lists the same ten.
    let mut lists = Vec::new();
    for node in &nodes {
        let (mut c, _) = RawClient::join(node.addr, &format!("watcher{}", lists.len()));
        lists.push(
            who(&mut c)
                .into_iter()
                .filter(|n| !n.starts_with("watcher"))
                .collect::<Vec<_>>(),
        );
    }
    assert_eq!(lists[0].len(), 10);
    assert!(lists.iter().all(|l| *l == lists[0]), "{lists:?}");
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
            ServerMsg::Left { name, reason } => {
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
                text: "one".into()
            }],
            missed: 0
        }
    );
    assert_eq!(alice.recv(), joined("carol"));
    assert_eq!(bob.recv(), joined("carol"));
    bob.send(&chat("two"));
    assert_eq!(alice.recv(), said(2, "bob", "two"));
    assert_eq!(carol.recv(), said(2, "bob", "two"));
    alice.expect_silence(Duration::from_millis(200));
    bob.expect_silence(Duration::from_millis(10));
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
    let before = until(&mut alice, &said(1, "bob", "b1"));
    assert!(before.is_empty(), "{before:?}");
    assert_eq!(alice.recv(), said(2, "bob", "b2"));
    alice.expect_silence(Duration::from_millis(300));
    alice.send(&chat("back"));
    // The cut chat may or may not have reached Redis (the reply was lost): either way once.
    let mut got = bob.recv();
    if matches!(&got, ServerMsg::Chat { text, .. } if text == "into the void") {
        got = bob.recv();
    }
    assert!(
        matches!(&got, ServerMsg::Chat { text, .. } if text == "back"),
        "{got:?}"
    );
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
