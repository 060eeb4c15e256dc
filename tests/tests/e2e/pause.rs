//! A server process stopped (SIGSTOP) and continued, as a VM migration or a swap storm does:
//! members that kept to the rate are not taken for flooders for what the server read late,
//! alone or as a node of a room shared through Redis; a member that really flooded meanwhile
//! still is.

use std::thread::{self, JoinHandle};
use std::time::Duration;

use chat_proto::{ClientMsg, CloseReason, ErrorKind, ServerMsg};
use tests::redis::RedisServer;
use tests::{RawClient, ServerProcess, chat_msg};

/// 5 requests a second, a burst of 5 (a rate window of 1 s), closed at the fourth refusal.
const LIMITS: [&str; 6] = ["--rate", "5", "--burst", "5", "--flood-strikes", "3"];
/// Each member sends at 4 a second, under the rate, for 6 s.
const EVERY: Duration = Duration::from_millis(250);
const SENDS: usize = 24;
/// The server is stopped for this long, 1 s into the sending: four rate windows.
const PAUSE: Duration = Duration::from_secs(4);
/// Members that keep to the rate.
const MEMBERS: usize = 10;

/// Sends `SENDS` chats from `client` at 4 a second on a thread of its own.
fn chatter(mut client: RawClient, me: usize) -> JoinHandle<RawClient> {
    thread::spawn(move || {
        for i in 0..SENDS {
            client.send(&chat_msg(format!("m{me} {i}")));
            thread::sleep(EVERY);
        }
        client
    })
}

/// Reads until every chat of the other members has come, and returns whatever else came that
/// is neither a chat nor a join or leave (errors, a closing frame).
fn read_everyone(client: &mut RawClient, me: usize) -> Vec<ServerMsg> {
    let mut chats = 0;
    let mut other = Vec::new();
    while chats < (MEMBERS - 1) * SENDS {
        match client.recv() {
            ServerMsg::Chat { from, .. } if from.starts_with('m') => {
                assert_ne!(from, format!("m{me}"), "a member's own chat came back");
                chats += 1;
            }
            ServerMsg::Chat { .. } | ServerMsg::Joined { .. } | ServerMsg::Left { .. } => {}
            msg @ ServerMsg::Closing(_) => {
                other.push(msg);
                break;
            }
            msg => other.push(msg),
        }
    }
    other
}

/// Stops `server` 1 s into the members' sending; while it is stopped, `flooder` sends 200
/// chats (what 40 s at the rate allow); then continues it and checks that every member got
/// every chat of the others and nothing else, that all are still in the room, and that the
/// flooder was refused and closed.
fn pause_while_chatting(server: &ServerProcess, members: Vec<RawClient>, mut flooder: RawClient) {
    let chatters: Vec<_> = members
        .into_iter()
        .enumerate()
        .map(|(i, c)| chatter(c, i))
        .collect();
    thread::sleep(Duration::from_secs(1));
    server.signal("STOP");
    for i in 0..200 {
        flooder.send(&chat_msg(format!("flood {i}")));
    }
    thread::sleep(PAUSE);
    server.signal("CONT");
    let (reason, seen) = flooder.until_closed();
    assert_eq!(reason, Some(CloseReason::Flood));
    let refused = seen
        .iter()
        .filter(|m| **m == ServerMsg::Error(ErrorKind::RateLimited))
        .count();
    assert_eq!(refused, 3, "{seen:?}");
    let mut members: Vec<RawClient> = chatters.into_iter().map(|t| t.join().unwrap()).collect();
    for (me, member) in members.iter_mut().enumerate() {
        assert_eq!(read_everyone(member, me), vec![], "m{me} was told");
    }
    members[0].send(&ClientMsg::Who);
    let listed = loop {
        match members[0].recv() {
            ServerMsg::Members { members } => break members.len(),
            ServerMsg::Left { .. } | ServerMsg::Joined { .. } => {}
            other => panic!("expected the member list, got {other:?}"),
        }
    };
    assert_eq!(listed, MEMBERS);
}

#[test]
fn members_at_the_rate_outlive_a_stopped_server_and_a_flooder_does_not() {
    let server = ServerProcess::start(&LIMITS);
    let members = (0..MEMBERS)
        .map(|i| RawClient::join(server.addr, &format!("m{i}")).0)
        .collect();
    let (flooder, _) = RawClient::join(server.addr, "flooder");
    pause_while_chatting(&server, members, flooder);
}

#[test]
fn members_at_the_rate_outlive_a_stopped_node_of_a_shared_room() {
    let redis = RedisServer::start();
    // A lease longer than the pause: the stopped node is not let go meanwhile.
    let url = redis.url();
    let node = || {
        let mut args = vec!["--redis", url.as_str(), "--lease", "10s"];
        args.extend(LIMITS);
        ServerProcess::start(&args)
    };
    let (a, b) = (node(), node());
    // Half on each node; the flooder on the one that stops.
    let members = (0..MEMBERS)
        .map(|i| {
            let addr = if i % 2 == 0 { a.addr } else { b.addr };
            RawClient::join(addr, &format!("m{i}")).0
        })
        .collect();
    let (flooder, _) = RawClient::join(b.addr, "flooder");
    pause_while_chatting(&b, members, flooder);
}
