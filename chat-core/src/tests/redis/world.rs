//! The three-node world of `nodes.rs` with each node's log a [`RedisLog`] over the model of the
//! scripts, not one in-memory sequencer: calls run, fail, or reach Redis after their node gave
//! up on them, Redis restarts empty, and time passes, in a random interleaving.
//!
//! Checked, besides what `nodes.rs` checks of every member's view: every entry a node applies is
//! the log's at that position; names stay unique among the nodes of Redis's current life; a
//! batch that arrives after its node gave up is refused; and once every call has run and time
//! has passed, every node lists the members the claims hold, and every claim is held by a
//! member of the node that made it (no leave was lost).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use proptest::prelude::*;

use super::super::hello;
use super::super::nodes::{NAMES, NODES, World, config};
use super::model::Redis;
use crate::log::redis::{Call, Command, Lane, Output, RedisLog, Reply, Script, Settings};
use crate::{ConnId, Event, Input, NodeId, Room};
use chat_proto::{ChatKind, ClientMsg, Ident};

/// Each node's lease: a third of it between heartbeats.
const LEASE: Duration = Duration::from_secs(6);
/// Redis's clock when the world begins (ms).
const REDIS_EPOCH_MS: u64 = 1_700_000_000_000;

pub(super) fn settings(trim_len: u64) -> Settings {
    Settings {
        room: "room".into(),
        lease: LEASE,
        trim_len,
        max_members: config().max_clients,
        history: 3,
        ..Settings::new("room")
    }
}

#[derive(Debug, Clone)]
enum Op {
    Open(usize, u64),
    Hello(usize, u64, usize),
    /// A chat of the kind at this index of `KINDS`.
    Chat(usize, u64, usize),
    /// A leave, with parting words or not.
    Leave(usize, u64, bool),
    Drop(usize, u64),
    /// A rename to the name at this index of `NAMES`.
    Nick(usize, u64, usize),
    /// Away (`true`) or back.
    Away(usize, u64, bool),
    /// Redis runs node n's call on lane l and answers.
    Run(usize, usize),
    /// Redis runs node n's call on lane l; the answer takes a while (less than the call's
    /// timeout, given as a share of it in thousandths) to come back.
    Slow(usize, usize, u32),
    /// Node n's call on lane l fails: no connection (`true`) or an error on the way.
    Fail(usize, usize, bool),
    /// Node n's batch of proposals times out, then reaches Redis.
    Late(usize),
    /// Time passes (ms).
    Advance(u64),
    /// Redis restarts without its data.
    Restart,
}

fn op() -> impl Strategy<Value = Op> {
    let node = 0..NODES;
    let conn = 0..5u64;
    // The read lane least: nodes fall behind the stream now and then.
    let lane = prop_oneof![4 => Just(0), 3 => Just(1), 1 => Just(2)];
    prop_oneof![
        5 => (node.clone(), conn.clone()).prop_map(|(n, c)| Op::Open(n, c)),
        30 => (node.clone(), conn.clone(), 0..NAMES.len()).prop_map(|(n, c, k)| Op::Hello(n, c, k)),
        40 => (node.clone(), conn.clone(), 0..KINDS.len()).prop_map(|(n, c, k)| Op::Chat(n, c, k)),
        10 => (node.clone(), conn.clone(), any::<bool>()).prop_map(|(n, c, w)| Op::Leave(n, c, w)),
        10 => (node.clone(), conn.clone(), 0..NAMES.len()).prop_map(|(n, c, k)| Op::Nick(n, c, k)),
        8 => (node.clone(), conn.clone(), any::<bool>()).prop_map(|(n, c, a)| Op::Away(n, c, a)),
        15 => (node.clone(), conn).prop_map(|(n, c)| Op::Drop(n, c)),
        140 => (node.clone(), lane.clone()).prop_map(|(n, l)| Op::Run(n, l)),
        10 => (node.clone(), lane.clone(), 0..1000u32).prop_map(|(n, l, s)| Op::Slow(n, l, s)),
        25 => (node.clone(), lane, any::<bool>()).prop_map(|(n, l, u)| Op::Fail(n, l, u)),
        5 => node.prop_map(Op::Late),
        25 => (1..1000u64).prop_map(Op::Advance),
        1 => Just(Op::Restart),
    ]
}

const KINDS: [ChatKind; 3] = [ChatKind::Plain, ChatKind::Action, ChatKind::Notice];

/// One node's log and the calls it waits on, one per lane.
struct Link {
    log: RedisLog,
    calls: [Option<Call>; 3],
}

struct RedisWorld {
    w: World,
    links: Vec<Link>,
    redis: Redis,
    start: Instant,
    /// Nodes that entered or started over since Redis last restarted.
    fresh: Vec<bool>,
    said: u64,
    /// The connection each op's (node, slot) means now: a slot opened again is a new
    /// connection, as ids are never reused (an answer about an old one must not be taken for
    /// the new one's). Ids are unique across nodes too, so that an entry's connection tells
    /// its node (node numbers are reused after Redis restarts empty).
    conns: HashMap<(usize, u64), u64>,
    next_conn: u64,
    /// The node of each connection id.
    owner: HashMap<u64, usize>,
}

fn lane_index(lane: Lane) -> usize {
    Lane::ALL.iter().position(|l| *l == lane).unwrap()
}

/// Enters the room as a node: runs the log's calls on `redis` until it is in.
pub(super) fn enter(
    redis: &mut Redis,
    settings: Settings,
    seed: u64,
    now: Instant,
) -> (RedisLog, Room) {
    let mut log = RedisLog::new(settings, seed, now);
    loop {
        match log.poll_output().expect("the log enters") {
            Output::Call(call) => {
                let reply = redis.run(&call);
                log.handle_reply(now, call.id, reply);
            }
            Output::Entered { node, snapshot } => {
                return (log, Room::shared(config(), node, snapshot).unwrap());
            }
            other => panic!("before entering: {other:?}"),
        }
    }
}

impl RedisWorld {
    fn new(trim_len: u64) -> Result<Self, TestCaseError> {
        let start = Instant::now();
        let mut redis = Redis::new();
        redis.now_ms = REDIS_EPOCH_MS;
        let (mut rooms, mut links) = (Vec::new(), Vec::new());
        for n in 0..NODES {
            let (log, room) = enter(&mut redis, settings(trim_len), n as u64, start);
            rooms.push(room);
            links.push(Link {
                log,
                calls: [None, None, None],
            });
        }
        let mut world = Self {
            w: World::with_rooms(rooms, start),
            links,
            redis,
            start,
            fresh: vec![true; NODES],
            said: 0,
            conns: HashMap::new(),
            next_conn: 0,
            owner: HashMap::new(),
        };
        for n in 0..NODES {
            world.pump(n)?;
        }
        Ok(world)
    }

    /// Carries node `n`'s proposals to its log and its log's outputs out, until both are quiet.
    fn pump(&mut self, n: usize) -> Result<(), TestCaseError> {
        let now = self.w.now;
        loop {
            let node = self.w.nodes[n].room.node();
            for proposal in self.w.nodes[n].proposals.drain(..) {
                self.links[n].log.propose(now, node, proposal);
            }
            let Some(output) = self.links[n].log.poll_output() else {
                return Ok(());
            };
            match output {
                // A call on a busy lane replaces the one there (given up on).
                Output::Call(call) => {
                    let lane = lane_index(call.lane);
                    self.links[n].calls[lane] = Some(call);
                }
                Output::Input(input) => self.feed(n, input)?,
                Output::Note(_) => {}
                Output::Entered { .. } => prop_assert!(false, "entered twice"),
            }
        }
    }

    /// Feeds node `n`'s room an input from its log, checking an entry against the log.
    fn feed(&mut self, n: usize, input: Input) -> Result<(), TestCaseError> {
        match &input {
            Input::Applied(entry) => {
                let at = usize::try_from(entry.pos).unwrap().checked_sub(1);
                let known = self
                    .redis
                    .logs
                    .iter()
                    .any(|log| at.and_then(|at| log.get(at)) == Some(entry));
                prop_assert!(
                    known,
                    "node {} applied {:?}, which is not the log's",
                    n,
                    entry
                );
                if let (Event::Chat { seq, .. }, Some(k)) =
                    (&entry.event, self.owner.get(&entry.conn.0))
                {
                    self.w.senders.insert(*seq, (*k, entry.conn.0));
                }
            }
            Input::Resync { .. } => self.fresh[n] = true,
            _ => {}
        }
        self.w.input(n, input)
    }

    fn advance(&mut self, by: Duration) -> Result<(), TestCaseError> {
        self.w.now += by;
        let since = self.w.now.duration_since(self.start).as_millis();
        self.redis.now_ms = REDIS_EPOCH_MS + u64::try_from(since).unwrap();
        // Every node sees the time first: a lease that ran out lets its members go before any
        // other node can sweep them.
        for n in 0..NODES {
            self.links[n].log.handle_timeout(self.w.now);
            self.w.input(n, Input::Tick)?;
            self.pump(n)?;
        }
        Ok(())
    }

    fn run(&mut self, n: usize, lane: usize) -> Result<(), TestCaseError> {
        if let Some(call) = self.links[n].calls[lane].take() {
            let reply = self.redis.run(&call);
            self.links[n].log.handle_reply(self.w.now, call.id, reply);
            self.pump(n)?;
        }
        Ok(())
    }

    fn slow(&mut self, n: usize, lane: usize, share: u32) -> Result<(), TestCaseError> {
        if let Some(call) = self.links[n].calls[lane].take() {
            let reply = self.redis.run(&call);
            self.advance(call.timeout * share / 1000)?;
            self.links[n].log.handle_reply(self.w.now, call.id, reply);
            self.pump(n)?;
        }
        Ok(())
    }

    fn fail(&mut self, n: usize, lane: usize, unreachable: bool) -> Result<(), TestCaseError> {
        if let Some(call) = self.links[n].calls[lane].take() {
            let log = &mut self.links[n].log;
            if unreachable {
                log.handle_unreachable(self.w.now, call.id);
            } else {
                log.handle_reply(self.w.now, call.id, Reply::Error("timed out".into()));
            }
            self.pump(n)?;
        }
        Ok(())
    }

    /// Node `n`'s batch waits out its timeout on the way, then arrives: refused.
    fn late(&mut self, n: usize) -> Result<(), TestCaseError> {
        let lane = lane_index(Lane::Propose);
        let Some(call) = self.links[n].calls[lane].take() else {
            return Ok(());
        };
        if !matches!(
            call.command,
            Command::Script {
                script: Script::Propose,
                ..
            }
        ) {
            // A PING: put back.
            self.links[n].calls[lane] = Some(call);
            return Ok(());
        }
        self.advance(call.timeout + Duration::from_millis(1))?;
        let timed_out = Reply::Error("timed out".into());
        self.links[n]
            .log
            .handle_reply(self.w.now, call.id, timed_out);
        self.pump(n)?;
        prop_assert_eq!(self.redis.run(&call), Reply::Bulk(b"EXPIRED".to_vec()));
        Ok(())
    }

    /// The open connection in node `n`'s `slot`, opened first if `open`.
    fn conn(&mut self, n: usize, slot: u64, open: bool) -> Result<Option<ConnId>, TestCaseError> {
        let id = self.conns.get(&(n, slot)).copied();
        if let Some(id) = id.filter(|id| self.w.nodes[n].open.contains(id)) {
            return Ok(Some(ConnId(id)));
        }
        if !open {
            return Ok(None);
        }
        self.next_conn += 1;
        let id = self.next_conn;
        self.conns.insert((n, slot), id);
        self.owner.insert(id, n);
        self.w.nodes[n].open.insert(id);
        self.w.input(n, Input::Opened(ConnId(id)))?;
        Ok(Some(ConnId(id)))
    }

    fn step(&mut self, op: Op) -> Result<(), TestCaseError> {
        let (n, slot) = match op {
            Op::Open(n, c) | Op::Hello(n, c, _) | Op::Chat(n, c, _) => (n, c),
            Op::Leave(n, c, _) | Op::Drop(n, c) | Op::Nick(n, c, _) | Op::Away(n, c, _) => (n, c),
            Op::Run(n, l) => return self.run(n, l),
            Op::Slow(n, l, share) => return self.slow(n, l, share),
            Op::Fail(n, l, unreachable) => return self.fail(n, l, unreachable),
            Op::Late(n) => return self.late(n),
            Op::Advance(ms) => return self.advance(Duration::from_millis(ms)),
            Op::Restart => {
                self.redis.restart_empty();
                self.fresh = vec![false; NODES];
                return Ok(());
            }
        };
        // A hello (or an open) opens a connection if the slot has none; the rest need one.
        let opens = matches!(op, Op::Open(..) | Op::Hello(..));
        let Some(conn) = self.conn(n, slot, opens)? else {
            return Ok(());
        };
        let input = match op {
            Op::Hello(_, _, k) => Input::Received(conn, hello_as(NAMES[k], k)),
            Op::Chat(_, _, k) => {
                self.said += 1;
                let text = format!("m{}", self.said);
                let kind = KINDS[k];
                Input::Received(conn, ClientMsg::Chat { text, kind })
            }
            Op::Leave(_, _, words) => {
                self.said += 1;
                let message = words.then(|| format!("bye {}", self.said));
                Input::Received(conn, ClientMsg::Leave { message })
            }
            Op::Nick(_, _, k) => Input::Received(
                conn,
                ClientMsg::Nick {
                    name: NAMES[k].into(),
                },
            ),
            Op::Away(_, _, away) => {
                self.said += 1;
                let message = away.then(|| format!("away {}", self.said));
                Input::Received(conn, ClientMsg::Away { message })
            }
            Op::Drop(..) => Input::Closed(conn),
            _ => return self.pump(n), // opened above
        };
        self.w.input(n, input)?;
        self.pump(n)
    }

    /// Names unique among the nodes of Redis's current life, and none of them with members
    /// once Redis may sweep it: a node lets its members go when its lease runs out.
    fn check_unique(&self) -> Result<(), TestCaseError> {
        for n in (0..NODES).filter(|n| self.fresh[*n]) {
            let room = &self.w.nodes[n].room;
            let expired = self.redis.lease_expired(room.node());
            prop_assert!(
                !expired || room.members().next().is_none(),
                "node {} kept its members past its lease",
                n
            );
        }
        self.w
            .check_unique_among((0..NODES).filter(|n| self.fresh[*n]))
    }

    /// Every call runs and time passes (10 s, heartbeats answered), until all is settled.
    fn settle(&mut self) -> Result<(), TestCaseError> {
        for _ in 0..100 {
            for n in 0..NODES {
                for lane in 0..Lane::ALL.len() {
                    self.run(n, lane)?;
                }
            }
            self.advance(Duration::from_millis(100))?;
            self.check_unique()?;
        }
        Ok(())
    }

    /// Settled: every node lists the members the claims hold, at the log's position, and every
    /// claim is held by a member of the node that made it.
    fn check_settled(&self) -> Result<(), TestCaseError> {
        prop_assert!(self.fresh.iter().all(|f| *f), "a node missed the restart");
        let claimed = self.redis.claimed_names();
        let mut members = 0;
        for (n, node) in self.w.nodes.iter().enumerate() {
            let names: Vec<String> = node
                .room
                .member_names()
                .iter()
                .map(|s| s.to_string())
                .collect();
            prop_assert_eq!(
                &names,
                &claimed,
                "node {} lists other members than the claims",
                n
            );
            prop_assert_eq!(
                node.room.member_list(),
                self.redis.seated_members(),
                "node {} lists other seats (away, idents) than Redis keeps",
                n
            );
            prop_assert_eq!(
                node.room.pos(),
                self.redis.log().len() as u64,
                "node {} is behind",
                n
            );
            members += node.room.members().count();
        }
        let numbers: HashMap<NodeId, usize> = (0..NODES)
            .map(|n| (self.w.nodes[n].room.node(), n))
            .collect();
        prop_assert_eq!(numbers.len(), NODES, "two nodes with one number");
        for (node, conn) in self.redis.claim_holders() {
            let here = numbers
                .get(&node)
                .is_some_and(|k| self.w.nodes[*k].room.members().any(|c| c == conn));
            prop_assert!(
                here,
                "a claim of node {:?} conn {:?} with no member: a leave was lost",
                node,
                conn
            );
        }
        prop_assert_eq!(members, claimed.len(), "a member without a claim");
        Ok(())
    }
}

/// A hello with an ident for every other name.
fn hello_as(name: &str, k: usize) -> ClientMsg {
    let mut msg = hello(name);
    if let ClientMsg::Hello { ident, .. } = &mut msg {
        *ident = k.is_multiple_of(2).then(|| Ident {
            user: format!("u{k}"),
            realname: format!("Real {k}"),
        });
    }
    msg
}

fn run(trim_len: u64, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let mut world = RedisWorld::new(trim_len)?;
    for op in ops {
        world.step(op)?;
        world.check_unique()?;
    }
    world.settle()?;
    world.check_settled()
}

/// Found by the world: node 2's heartbeat is answered once (its sweep never is), its lease runs
/// out by its own count, and a join proposed just then was taken by Redis (the lease still ran
/// there) and kept past the lease Redis had: a node whose lease ran out takes nobody in.
#[test]
fn a_node_whose_lease_ran_out_takes_nobody_in_until_a_heartbeat_is_answered() {
    use Op::*;
    let ops = vec![
        Advance(449),
        Hello(1, 0, 0),
        Slow(0, 2, 517),
        Advance(605),
        Run(2, 1),
        Advance(443),
        Open(0, 0),
        Advance(993),
        Chat(0, 0, 0),
        Slow(1, 0, 475),
        Advance(140),
        Slow(0, 2, 581),
        Advance(918),
        Hello(0, 0, 0),
        Advance(683),
        Hello(2, 0, 0),
        Run(2, 0),
        Run(2, 2),
        Slow(0, 0, 506),
    ];
    let mut world = RedisWorld::new(4).unwrap();
    for op in ops {
        world.step(op).unwrap();
        world.check_unique().unwrap();
    }
    world.settle().unwrap();
    world.check_settled().unwrap();
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    /// With a stream that keeps 4 entries (nodes fall behind it and start over) or 512.
    #[test]
    fn three_nodes_sharing_a_log_in_redis_agree(
        trim_len in prop_oneof![Just(4u64), Just(512)],
        ops in proptest::collection::vec(op(), 1..150),
    ) {
        run(trim_len, ops)?;
    }
}
