//! The Lua scripts in a real `redis-server`, called as the Redis log's state machine calls them
//! (`chat_core::log::redis::RedisLog`, driven here over a blocking connection):
//! - the same random proposals through `chat_core::Sequencer` and through the scripts give the
//!   same verdicts and the same log: two implementations of one rule;
//! - the scripts fence a node whose lease ran out or that was swept, refuse a node of a room
//!   Redis lost, and refuse a batch that came after its node gave up on it.

use std::sync::Arc;
use std::thread::sleep;
use std::time::{Duration, Instant};

use chat_core::Snapshot;
use chat_core::log::redis::{Call, Lane, Output, RedisLog, Reply, Script, Settings};
use chat_core::{
    ConnId, Declined, Entry, Event, Input, NodeId, Proposal, ProposalKind, Sequencer, fold_name,
};
use chat_proto::{ChatKind, CloseReason, Ident};
use tests::redis::{RedisServer, run_call};

/// A node of the room: its log, driven by hand on a blocking connection. Proposal and lease
/// calls run as they come; the read lane's call waits until [`Node::read`].
struct Node {
    log: RedisLog,
    con: redis::Connection,
    /// The blocking read, for [`Node::read`].
    read: Option<Call>,
    /// What the room was given.
    inputs: Vec<Input>,
    /// Each script run and what Redis answered, in order.
    replies: Vec<(Script, Reply)>,
    /// The snapshot it entered with.
    entered: Option<Snapshot>,
}

fn settings(lease: Duration, max_members: u32) -> Settings {
    Settings {
        room: "diff".into(),
        lease,
        trim_len: 100_000,
        max_members,
        history: 0,
        // No pings: these tests run each call by hand.
        ping_idle: Duration::from_secs(3600),
        ..Settings::new("diff")
    }
}

impl Node {
    /// Registers in the room and takes its snapshot.
    fn enter(redis: &RedisServer, settings: Settings, seed: u64) -> Self {
        let client = redis::Client::open(redis.url()).expect("redis url");
        let con = client.get_connection().expect("connect to redis");
        let mut node = Node {
            log: RedisLog::new(settings, seed, Instant::now()),
            con,
            read: None,
            inputs: Vec::new(),
            replies: Vec::new(),
            entered: None,
        };
        node.drain();
        while !node.log.entered() {
            let call = node.read.take().expect("entering calls on the read lane");
            node.run(call);
        }
        node
    }

    fn id(&self) -> NodeId {
        self.log.node()
    }

    fn run(&mut self, call: Call) {
        let reply = run_call(&mut self.con, &call);
        if let chat_core::log::redis::Command::Script { script, .. } = &call.command {
            self.replies.push((*script, reply.clone()));
        }
        self.log.handle_reply(Instant::now(), call.id, reply);
        self.drain();
    }

    /// Carries out what the log gives out until it waits on the read lane alone.
    fn drain(&mut self) {
        while let Some(output) = self.log.poll_output() {
            match output {
                Output::Call(call) if call.lane == Lane::Read => self.read = Some(call),
                Output::Call(call) => self.run(call),
                Output::Input(input) => self.inputs.push(input),
                Output::Entered { snapshot, .. } => self.entered = Some(snapshot),
                Output::Note(_) => {}
            }
        }
    }

    /// Proposes `batch` (made at once: one script call) and runs it.
    fn propose(&mut self, batch: &[Proposal]) {
        for proposal in batch {
            self.log
                .propose(Instant::now(), self.id(), proposal.clone());
        }
        self.drain();
    }

    /// Time has passed: whatever is due (a heartbeat) runs.
    fn tick(&mut self) {
        self.log.handle_timeout(Instant::now());
        self.drain();
    }

    /// Reads the stream until `want` entries have been applied in all.
    fn read(&mut self, want: usize) -> Vec<Entry> {
        while self.applied().len() < want {
            let call = self.read.take().expect("a read waits");
            let before = self.applied().len();
            self.run(call);
            assert!(
                self.applied().len() > before,
                "the log holds fewer entries than {want}"
            );
        }
        self.applied()
    }

    fn applied(&self) -> Vec<Entry> {
        let applied = self.inputs.iter().filter_map(|i| match i {
            Input::Applied(entry) => Some(entry.clone()),
            _ => None,
        });
        applied.collect()
    }

    /// What Redis last answered to a script of this kind.
    fn last_reply(&self, script: Script) -> &Reply {
        let mut replies = self.replies.iter().rev();
        let found = replies.find(|(s, _)| *s == script);
        &found.unwrap_or_else(|| panic!("no {script:?} ran")).1
    }
}

fn proposal(conn: u64, name: &str, kind: ProposalKind) -> Proposal {
    Proposal {
        conn: ConnId(conn),
        name: Arc::from(name),
        key: Arc::from(fold_name(name).as_str()),
        kind,
    }
}

fn bulk(s: &str) -> Reply {
    Reply::Bulk(s.as_bytes().to_vec())
}

/// splitmix64: a small seeded generator, so that a failure can be run again.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        (z ^ (z >> 31)) % n
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

/// Look-alikes that fold to one key, and a few more names than the room holds.
const NAMES: &[&str] = &[
    "alice",
    "ALICE",
    "ａｌｉｃｅ",
    "bob",
    "Bob",
    "\u{441}\u{43e}\u{440}\u{435}",
    "\u{421}\u{41e}\u{420}\u{415}",
    "carol",
    "dave",
    "erin",
    "frank",
];
const MAX_MEMBERS: u32 = 4;
const NODES: usize = 3;

/// Some words, or none.
fn words(rng: &mut Rng, what: &str, said: usize) -> Option<Arc<str>> {
    (rng.below(2) == 0).then(|| Arc::from(format!("{what} {said} ✓")))
}

/// What a random proposal asks: joins (half with an ident), chats of every kind, leaves (half
/// with parting words), renames to any name, away and back.
fn random_kind(rng: &mut Rng, said: usize) -> ProposalKind {
    match rng.below(14) {
        0..=3 => ProposalKind::Join {
            ident: (rng.below(2) == 0).then(|| {
                Arc::new(Ident {
                    user: format!("u{said}"),
                    realname: format!("Real {said}"),
                })
            }),
        },
        4..=7 => ProposalKind::Chat {
            text: format!("said {said}: ünï ✓"),
            kind: *rng.pick(&[ChatKind::Plain, ChatKind::Action, ChatKind::Notice]),
        },
        8..=9 => {
            let name = *rng.pick(NAMES);
            ProposalKind::Rename {
                name: Arc::from(name),
                key: Arc::from(fold_name(name).as_str()),
            }
        }
        10..=11 => ProposalKind::Away {
            message: words(rng, "away", said),
        },
        _ => ProposalKind::Leave {
            reason: *rng.pick(&CloseReason::ALL),
            message: words(rng, "bye", said),
        },
    }
}

/// A random proposal from `node`: half of all but joins come from a member it holds.
fn random_proposal(rng: &mut Rng, sequencer: &Sequencer, node: NodeId, said: usize) -> Proposal {
    let held: Vec<_> = sequencer
        .snapshot()
        .members
        .into_iter()
        .filter(|s| s.node == node)
        .collect();
    let (conn, name) = match held.is_empty() || rng.below(2) == 0 {
        true => (1 + rng.below(6), rng.pick(NAMES).to_string()),
        false => {
            let seat = rng.pick(&held);
            (seat.conn.0, seat.name.to_string())
        }
    };
    let kind = random_kind(rng, said);
    proposal(conn, &name, kind)
}

/// The joins and chats the room was told were declined, and why, in order (a leave's refusal
/// the room is not told of: leaves are compared through the log).
fn declined(inputs: &[Input]) -> Vec<(Proposal, Declined)> {
    let declined = inputs.iter().filter_map(|i| match i {
        Input::Declined { proposal, why } => Some((proposal.clone(), *why)),
        _ => None,
    });
    declined.collect()
}

fn unix_ms() -> u64 {
    let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
    u64::try_from(since.unwrap().as_millis()).unwrap()
}

/// The entries from `from` on, as the scripts wrote them, were timed by Redis's clock between
/// `before` and `after` (ms), never earlier than the entry before; the sequencer's (timed by
/// the caller) take those times, to be compared field by field.
fn check_times(
    reader: &mut Node,
    expected: &mut [Entry],
    from: usize,
    before: u64,
    after: u64,
) -> Result<(), String> {
    let log = reader.read(expected.len());
    let last = from.checked_sub(1).map_or(0, |i| log[i].time);
    for (got, want) in log[from..].iter().zip(&mut expected[from..]) {
        if got.time < before.max(last) || got.time > after {
            return Err(format!(
                "entry {} timed {} outside [{before}, {after}] or before {last}",
                got.pos, got.time
            ));
        }
        want.time = got.time;
    }
    Ok(())
}

/// What the seats keep (away, idents, through renames): a node entering now is told the
/// members the sequencer holds, at its position.
fn check_seats(redis: &RedisServer, sequencer: &Sequencer, lease: Duration, steps: u64) {
    let late = Node::enter(redis, settings(lease, MAX_MEMBERS), 5000 + steps);
    let snapshot = late.entered.expect("entered");
    let held = sequencer.snapshot();
    assert_eq!(snapshot.members, held.members, "step {steps}: the seats");
    assert_eq!((snapshot.pos, snapshot.seq), (held.pos, held.seq));
    assert_ne!(snapshot.epoch, 0);
}

#[test]
fn the_scripts_and_the_sequencer_agree_on_every_verdict_and_on_the_log() -> Result<(), String> {
    let redis = RedisServer::start();
    let lease = Duration::from_secs(60);
    let mut rng = Rng(17);
    let mut sequencer = Sequencer::new(MAX_MEMBERS, 1);
    let mut expected: Vec<Entry> = Vec::new();
    // A node that only reads: the whole log, from the start.
    let mut reader = Node::enter(&redis, settings(lease, MAX_MEMBERS), 99);
    let mut nodes: Vec<Node> = (0..NODES)
        .map(|n| Node::enter(&redis, settings(lease, MAX_MEMBERS), n as u64))
        .collect();
    let (mut said, mut steps) = (0, 0);
    // Each rule had its say: how often each refusal came, and how many sweeps.
    let mut refusals: Vec<Declined> = Vec::new();
    let mut sweeps = 0;
    while said < 1500 {
        steps += 1;
        let n = rng.below(NODES as u64) as usize;
        let id = nodes[n].id();
        if rng.below(40) == 0 {
            // The node is swept (as when lost) and comes back under a new number.
            let from = expected.len();
            let before = unix_ms();
            expected.extend(sequencer.sweep(id, before));
            sweeps += 1;
            let call = nodes[n].log.retire(Instant::now(), CloseReason::ServerLost);
            nodes[n].run(call);
            check_times(&mut reader, &mut expected, from, before, unix_ms())?;
            nodes[n] = Node::enter(&redis, settings(lease, MAX_MEMBERS), 1000 + steps);
            continue;
        }
        let batch: Vec<Proposal> = (0..1 + rng.below(4))
            .map(|_| {
                said += 1;
                random_proposal(&mut rng, &sequencer, id, said)
            })
            .collect();
        let mut want = Vec::new();
        let (from, before) = (expected.len(), unix_ms());
        for p in &batch {
            match sequencer.propose(id, p.clone(), before) {
                Ok(entry) => expected.push(entry),
                Err(_) if matches!(p.kind, ProposalKind::Leave { .. }) => {}
                Err(why) => {
                    refusals.push(why);
                    want.push((p.clone(), why));
                }
            }
        }
        let seen = nodes[n].inputs.len();
        nodes[n].propose(&batch);
        let got = declined(&nodes[n].inputs[seen..]);
        assert_eq!(
            got, want,
            "step {steps}, node {id:?}: {batch:?}: the scripts' verdicts, then the sequencer's"
        );
        check_times(&mut reader, &mut expected, from, before, unix_ms())?;
        // After a rename, the seat moved whole (away, ident).
        if expected[from..]
            .iter()
            .any(|e| matches!(e.event, Event::Renamed { .. }))
        {
            check_seats(&redis, &sequencer, lease, steps);
        }
        let log = reader.read(expected.len());
        let first = log.iter().zip(&expected).position(|(a, b)| a != b);
        let first = first.unwrap_or(log.len().min(expected.len()));
        assert_eq!(
            log.get(first),
            expected.get(first),
            "step {steps}: entry {} of the log the scripts wrote, then the sequencer's",
            first + 1
        );
    }
    let count = |f: fn(&Event) -> bool| expected.iter().filter(|e| f(&e.event)).count();
    let joins = count(|e| matches!(e, Event::Joined { ident: Some(_) }));
    let leaves = count(|e| {
        matches!(
            e,
            Event::Left {
                message: Some(_),
                ..
            }
        )
    });
    let renames = count(|e| matches!(e, Event::Renamed { .. }));
    let aways = count(|e| matches!(e, Event::Away { message: Some(_) }));
    let kinds = count(|e| {
        matches!(
            e,
            Event::Chat {
                kind: ChatKind::Action,
                ..
            }
        )
    });
    eprintln!(
        "{joins} joins with idents, {leaves} leaves with words, {renames} renames, {aways} aways, \
         {kinds} actions, {sweeps} sweeps, {} refusals",
        refusals.len()
    );
    assert!(
        joins > 20 && leaves > 20 && renames > 20 && aways > 20 && kinds > 20 && sweeps > 5,
        "the test proves little"
    );
    check_seats(&redis, &sequencer, lease, steps);
    for why in [Declined::NameTaken, Declined::RoomFull, Declined::NotHolder] {
        let n = refusals.iter().filter(|r| **r == why).count();
        assert!(n > 20, "only {n} refusals of {why:?}");
    }
    Ok(())
}

#[test]
fn the_scripts_fence_a_node_whose_lease_ran_out() {
    let redis = RedisServer::start();
    let mut node = Node::enter(&redis, settings(Duration::from_millis(300), 5), 1);
    node.propose(&[proposal(1, "alice", ProposalKind::Join { ident: None })]);
    assert_eq!(
        node.last_reply(Script::Propose),
        &Reply::Array(vec![bulk("OK")])
    );
    sleep(Duration::from_millis(500));
    let text = "after the lease".to_owned();
    let kind = ChatKind::Plain;
    node.propose(&[proposal(1, "alice", ProposalKind::Chat { text, kind })]);
    assert_eq!(node.last_reply(Script::Propose), &bulk("FENCED"));
    node.tick();
    let Reply::Array(beat) = node.last_reply(Script::Heartbeat) else {
        panic!("a heartbeat ran")
    };
    assert_eq!(beat[0], bulk("FENCED"));
    // Not extended: run out, or swept by the node's own sweep after the heartbeat.
    let score: Option<u64> = redis.cmd(&["ZSCORE", "chat:{diff}:nodes", &node.id().0.to_string()]);
    let now = (redis.cmd::<Vec<u64>>(&["TIME"])[0]) * 1000;
    assert!(score.is_none_or(|s| s < now), "the lease was extended");
    let log: Vec<(String, Vec<String>)> = redis.cmd(&["XRANGE", "chat:{diff}:log", "-", "+"]);
    assert!(
        log.iter()
            .all(|(_, fields)| !fields.contains(&"chat".to_owned())),
        "{log:?}"
    );
}

#[test]
fn the_scripts_fence_a_swept_node() {
    let redis = RedisServer::start();
    let mut lost = Node::enter(&redis, settings(Duration::from_millis(300), 5), 1);
    let mut live = Node::enter(&redis, settings(Duration::from_secs(60), 5), 2);
    lost.propose(&[proposal(1, "alice", ProposalKind::Join { ident: None })]);
    sleep(Duration::from_millis(500));
    // The live node's heartbeat, then its sweep: the lost node's member leaves as lost.
    let due = Instant::now() + Duration::from_secs(20);
    while !live.replies.iter().any(|(s, _)| *s == Script::Sweep) {
        assert!(Instant::now() < due, "no sweep");
        live.log
            .handle_timeout(Instant::now() + Duration::from_secs(20));
        live.drain();
    }
    assert_eq!(live.last_reply(Script::Sweep), &Reply::Int(1));
    let log = live.read(2);
    assert_eq!(
        (&*log[1].name, &log[1].event),
        (
            "alice",
            &Event::Left {
                reason: CloseReason::ServerLost,
                message: None,
            }
        )
    );
    lost.propose(&[proposal(2, "bob", ProposalKind::Join { ident: None })]);
    assert_eq!(lost.last_reply(Script::Propose), &bulk("FENCED"));
    lost.tick();
    let Reply::Array(beat) = lost.last_reply(Script::Heartbeat) else {
        panic!("a heartbeat ran")
    };
    assert_eq!(beat[0], bulk("FENCED"));
    // A node that retired is swept too, lease or not.
    let call = live.log.retire(Instant::now(), CloseReason::ServerShutdown);
    live.run(call);
    live.propose(&[proposal(3, "carol", ProposalKind::Join { ident: None })]);
    assert_eq!(live.last_reply(Script::Propose), &bulk("FENCED"));
    assert_eq!(redis.cmd::<i64>(&["HLEN", "chat:{diff}:names"]), 0);
}

#[test]
fn the_scripts_refuse_a_node_of_a_room_redis_lost_and_a_batch_that_came_too_late() {
    let mut redis = RedisServer::start();
    let mut node = Node::enter(&redis, settings(Duration::from_secs(60), 5), 1);
    // Held up on the way past half the node's wait: refused, nothing done.
    node.log.propose(
        Instant::now(),
        node.id(),
        proposal(1, "alice", ProposalKind::Join { ident: None }),
    );
    let Some(Output::Call(call)) = node.log.poll_output() else {
        panic!("a call")
    };
    sleep(Duration::from_millis(600));
    node.run(call);
    assert_eq!(node.last_reply(Script::Propose), &bulk("EXPIRED"));
    assert_eq!(redis.cmd::<i64>(&["HLEN", "chat:{diff}:names"]), 0);
    redis.restart(); // no persistence: the room is gone
    node.con = redis::Client::open(redis.url())
        .unwrap()
        .get_connection()
        .unwrap();
    node.propose(&[proposal(1, "alice", ProposalKind::Join { ident: None })]);
    assert_eq!(node.last_reply(Script::Propose), &bulk("RESET"));
    // The heartbeat, a third of the lease on.
    node.log
        .handle_timeout(Instant::now() + Duration::from_secs(20));
    node.drain();
    let Reply::Array(beat) = node.last_reply(Script::Heartbeat) else {
        panic!("a heartbeat ran")
    };
    assert_eq!(beat[0], bulk("RESET"));
}

/// A node of the version before renames and away (its register marks no version) would start
/// over at such an entry: while one is in the room, they are declined as unavailable; chats
/// go on; once it is gone, they are taken.
#[test]
fn renames_and_away_wait_while_an_older_node_is_in_the_room() {
    let redis = RedisServer::start();
    let mut node = Node::enter(&redis, settings(Duration::from_secs(60), 5), 1);
    // What an older node's register.lua does: a number and a lease, no version.
    let old: u64 = redis.cmd(&["HINCRBY", "chat:{diff}:meta", "nodes", "1"]);
    let now = redis.cmd::<Vec<u64>>(&["TIME"])[0] * 1000;
    let lease = (now + 60_000).to_string();
    let _: i64 = redis.cmd(&["ZADD", "chat:{diff}:nodes", &lease, &old.to_string()]);
    let rename = ProposalKind::Rename {
        name: Arc::from("Alicia"),
        key: Arc::from("alicia"),
    };
    let away = ProposalKind::Away {
        message: Some(Arc::from("lunch")),
    };
    let text = "still here".to_owned();
    let kind = ChatKind::Plain;
    node.propose(&[
        proposal(1, "alice", ProposalKind::Join { ident: None }),
        proposal(1, "alice", rename.clone()),
        proposal(1, "alice", away.clone()),
        proposal(1, "alice", ProposalKind::Chat { text, kind }),
    ]);
    let answers = ["OK", "OLD_NODES", "OLD_NODES", "OK"].map(bulk);
    assert_eq!(
        node.last_reply(Script::Propose),
        &Reply::Array(answers.to_vec())
    );
    let why: Vec<Declined> = declined(&node.inputs).into_iter().map(|(_, w)| w).collect();
    assert_eq!(why, [Declined::Unavailable, Declined::Unavailable]);
    // The older node is gone (swept, or retired): renames and away are taken.
    let _: i64 = redis.cmd(&["ZREM", "chat:{diff}:nodes", &old.to_string()]);
    node.propose(&[proposal(1, "alice", rename), proposal(1, "Alicia", away)]);
    let answers = ["OK", "OK"].map(bulk);
    assert_eq!(
        node.last_reply(Script::Propose),
        &Reply::Array(answers.to_vec())
    );
    let log = node.read(4);
    assert!(matches!(log[2].event, Event::Renamed { .. }), "{log:?}");
    assert!(matches!(log[3].event, Event::Away { .. }), "{log:?}");
}
