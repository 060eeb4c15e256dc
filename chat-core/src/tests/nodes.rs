//! Three rooms (simulated nodes) sharing one in-memory sequencer, with proposals and log
//! entries delivered in a random interleaving: the seam a shared room (Redis) stands on.
//!
//! Checked: every node applies the same log in the same order; names stay unique after folding,
//! in the log, in every node's view, and across nodes up to date with the log, renames included;
//! each chat reaches every member once and never its sender; every member has seen a sender join
//! (or take its name) before it sees the sender's chat; entries' times never go back; once
//! everything is delivered, every node lists the same members, away or not, as the log.

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Instant;

use proptest::prelude::*;

use super::*;

pub(super) const NAMES: &[&str] = &[
    "alice",
    "ALICE",
    "ａｌｉｃｅ",
    "bob",
    "Bob",
    "carol",
    "dave",
];
pub(super) const NODES: usize = 3;

#[derive(Debug, Clone)]
enum Op {
    Open(usize, u64),
    Hello(usize, u64, usize),
    Chat(usize, u64),
    Who(usize, u64),
    Leave(usize, u64),
    Drop(usize, u64),
    Nick(usize, u64, usize),
    Away(usize, u64, bool),
    /// The log decides the next proposal of a node.
    Decide(usize),
    /// A node applies the next log entry it has not applied.
    Apply(usize),
}

fn op() -> impl Strategy<Value = Op> {
    let node = 0..NODES;
    let conn = 0..5u64;
    prop_oneof![
        2 => (node.clone(), conn.clone()).prop_map(|(n, c)| Op::Open(n, c)),
        3 => (node.clone(), conn.clone(), 0..NAMES.len()).prop_map(|(n, c, k)| Op::Hello(n, c, k)),
        4 => (node.clone(), conn.clone()).prop_map(|(n, c)| Op::Chat(n, c)),
        1 => (node.clone(), conn.clone()).prop_map(|(n, c)| Op::Who(n, c)),
        1 => (node.clone(), conn.clone()).prop_map(|(n, c)| Op::Leave(n, c)),
        1 => (node.clone(), conn.clone()).prop_map(|(n, c)| Op::Drop(n, c)),
        2 => (node.clone(), conn.clone(), 0..NAMES.len()).prop_map(|(n, c, k)| Op::Nick(n, c, k)),
        1 => (node.clone(), conn.clone(), any::<bool>()).prop_map(|(n, c, a)| Op::Away(n, c, a)),
        6 => node.clone().prop_map(Op::Decide),
        8 => node.prop_map(Op::Apply),
    ]
}

pub(super) fn config() -> Config {
    Config {
        max_clients: 5,
        rate_per_sec: 1_000_000,
        burst: 1_000_000,
        ..Config::default()
    }
}

/// One node: its room, the proposals it made that the log has not decided, how far it applied.
pub(super) struct Node {
    pub(super) room: Room,
    pub(super) proposals: VecDeque<Proposal>,
    applied: usize,
    pub(super) open: HashSet<u64>,
}

/// What one member has seen, to check it against the log.
#[derive(Debug, Default)]
struct Seen {
    /// Names it knows are in the room (from its welcome, then joins, leaves and renames).
    known: HashSet<String>,
    /// Chat sequence numbers it received, in order.
    seqs: Vec<u64>,
    name: String,
}

/// Rooms sharing one log, and what their members have seen.
pub(super) struct World {
    pub(super) nodes: Vec<Node>,
    log: Sequencer,
    entries: Vec<Entry>,
    pub(super) now: Instant,
    /// Per (node, conn): what that member has seen.
    seen: HashMap<(usize, u64), Seen>,
    /// The sender of each chat seq, as (node, conn).
    pub(super) senders: HashMap<u64, (usize, u64)>,
    /// Every connection closed, as (node, conn, reason).
    closed: Vec<(usize, u64, CloseReason)>,
    /// The log's wall clock, in ms: each decision moves it on.
    clock: u64,
    /// Every error sent, as (node, conn, error).
    errors: Vec<(usize, u64, ErrorKind)>,
}

/// The epoch of the tests' shared log.
const LOG_EPOCH: u64 = 0x10c;

impl World {
    fn new() -> Self {
        let rooms =
            (0..NODES).map(|i| Room::shared(config(), NodeId(i as u64 + 1), snapshot()).unwrap());
        Self::with_rooms(rooms, Instant::now())
    }

    /// A world of these rooms, one per node, at `now`.
    pub(super) fn with_rooms(rooms: impl IntoIterator<Item = Room>, now: Instant) -> Self {
        let nodes = rooms
            .into_iter()
            .map(|room| Node {
                room,
                proposals: VecDeque::new(),
                applied: 0,
                open: HashSet::new(),
            })
            .collect();
        Self {
            nodes,
            log: Sequencer::new(config().max_clients, LOG_EPOCH),
            entries: Vec::new(),
            now,
            seen: HashMap::new(),
            senders: HashMap::new(),
            closed: Vec::new(),
            clock: 1_000,
            errors: Vec::new(),
        }
    }

    /// Feeds `input` to node `n`'s room and checks what its members are sent.
    pub(super) fn input(&mut self, n: usize, input: Input) -> Result<(), TestCaseError> {
        let node = &mut self.nodes[n];
        node.room
            .handle_input(self.now, input)
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        while let Some(output) = node.room.poll_output() {
            match output {
                Output::Propose(p) => node.proposals.push_back(p),
                Output::Send { to, msg } => {
                    if let ServerMsg::Welcome { name, members, .. } = msg {
                        let seen = Seen {
                            known: members.iter().map(|m| m.name.to_string()).collect(),
                            seqs: Vec::new(),
                            name,
                        };
                        prop_assert!(seen.known.contains(&seen.name), "welcome lists the joiner");
                        self.seen.insert((n, to.0), seen);
                    } else if let ServerMsg::Error(error) = msg {
                        self.errors.push((n, to.0, error));
                    }
                }
                Output::Broadcast { except, msg } => {
                    for to in node.room.recipients(except) {
                        let seen = self.seen.get_mut(&(n, to.0)).expect("a member's welcome");
                        match &msg {
                            ServerMsg::Joined { name, .. } => {
                                prop_assert!(seen.known.insert(name.clone()), "joined twice");
                            }
                            ServerMsg::Left { name, .. } => {
                                prop_assert!(seen.known.remove(name), "left without joining");
                            }
                            ServerMsg::Renamed { from, to, .. } => {
                                prop_assert!(seen.known.remove(from), "{from} unknown");
                                prop_assert!(seen.known.insert(to.clone()), "{to} twice");
                                if seen.name == *from {
                                    seen.name = to.clone();
                                }
                            }
                            ServerMsg::Away { name, .. } => {
                                prop_assert!(seen.known.contains(name), "{name} unknown");
                                prop_assert_ne!(Some(to), except, "told of its own away");
                            }
                            ServerMsg::Chat { seq, from, .. } => {
                                prop_assert!(
                                    seen.known.contains(from),
                                    "{from}'s chat before its join, at node {n}"
                                );
                                prop_assert_ne!(self.senders.get(seq), Some(&(n, to.0)), "echo");
                                prop_assert!(seen.seqs.last().is_none_or(|s| s < seq));
                                seen.seqs.push(*seq);
                            }
                            other => prop_assert!(false, "broadcast {other:?}"),
                        }
                    }
                }
                Output::Close { conn, reason } => {
                    self.closed.push((n, conn.0, reason));
                    node.open.remove(&conn.0);
                    self.seen.remove(&(n, conn.0));
                }
                Output::Subscribe { .. }
                | Output::Unsubscribe { .. }
                | Output::Notice(_)
                | Output::Applied(_) => {}
                Output::Password { .. } => prop_assert!(false, "no account, no password work"),
            }
        }
        Ok(())
    }

    fn decide(&mut self, n: usize) -> Result<(), TestCaseError> {
        let Some(proposal) = self.nodes[n].proposals.pop_front() else {
            return Ok(());
        };
        let node = NodeId(n as u64 + 1);
        self.clock += 1;
        match self.log.propose(node, proposal.clone(), self.clock) {
            Ok(entry) => {
                let before = self.entries.last().map_or(0, |e| e.time);
                prop_assert!(entry.time >= before, "time went back");
                if let Event::Chat { seq, .. } = entry.event {
                    self.senders.insert(seq, (n, entry.conn.0));
                }
                self.entries.push(entry);
                Ok(())
            }
            Err(why) => self.input(n, Input::Declined { proposal, why }),
        }
    }

    fn apply(&mut self, n: usize) -> Result<(), TestCaseError> {
        let at = self.nodes[n].applied;
        let Some(entry) = self.entries.get(at).cloned() else {
            return Ok(());
        };
        self.nodes[n].applied += 1;
        self.input(n, Input::Applied(entry))?;
        prop_assert_eq!(self.nodes[n].room.pos(), at as u64 + 1);
        Ok(())
    }

    /// Names unique: in the log; in every node's view; and across the nodes that applied the
    /// whole log, among their members (a node behind it may still show a member under a name it
    /// gave up in a rename the node has not applied).
    fn check_unique(&self) -> Result<(), TestCaseError> {
        for seat in self.log.snapshot().members {
            prop_assert_eq!(fold_name(&seat.name), seat.key.to_string());
        }
        for node in &self.nodes {
            let view: BTreeSet<String> = node
                .room
                .member_list()
                .iter()
                .map(|m| fold_name(&m.name))
                .collect();
            prop_assert_eq!(
                view.len(),
                node.room.member_count(),
                "a name twice in a view"
            );
        }
        let whole = self.entries.len();
        self.check_unique_among((0..self.nodes.len()).filter(|&n| self.nodes[n].applied >= whole))
    }

    /// Names unique across these nodes, among their members.
    pub(super) fn check_unique_among(
        &self,
        nodes: impl Iterator<Item = usize>,
    ) -> Result<(), TestCaseError> {
        let mut keys = BTreeSet::new();
        for node in nodes.map(|n| &self.nodes[n]) {
            for conn in node.room.members() {
                let key = fold_name(node.room.name_of(conn).unwrap());
                prop_assert!(keys.insert(key.clone()), "{key} held twice");
            }
        }
        Ok(())
    }
}

/// Where every node starts: an empty log of the tests' epoch.
pub(super) fn snapshot() -> Snapshot {
    Snapshot {
        epoch: LOG_EPOCH,
        ..Snapshot::default()
    }
}

fn run(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let mut w = World::new();
    let mut said = 0u64;
    for op in ops {
        match op {
            Op::Open(n, c) if w.nodes[n].open.insert(c) => {
                w.input(n, Input::Opened(ConnId(c)))?;
            }
            Op::Hello(n, c, k) if w.nodes[n].open.contains(&c) => {
                w.input(n, Input::Received(ConnId(c), hello(NAMES[k])))?;
            }
            // From any open connection: a member's, a joiner's (the join still on its way to
            // the log), or one in its handshake (a protocol error).
            Op::Chat(n, c) if w.nodes[n].open.contains(&c) => {
                said += 1;
                let text = format!("m{said}");
                w.input(n, Input::Received(ConnId(c), chat(&text)))?;
            }
            Op::Who(n, c) if w.nodes[n].open.contains(&c) => {
                w.input(n, Input::Received(ConnId(c), ClientMsg::Who))?;
            }
            Op::Leave(n, c) if w.nodes[n].open.contains(&c) => {
                w.input(n, Input::Received(ConnId(c), leave()))?;
            }
            Op::Nick(n, c, k) if w.nodes[n].open.contains(&c) => {
                let nick = ClientMsg::Nick {
                    name: NAMES[k].into(),
                };
                w.input(n, Input::Received(ConnId(c), nick))?;
            }
            Op::Away(n, c, away) if w.nodes[n].open.contains(&c) => {
                let message = away.then(|| format!("away at {}", w.clock));
                w.input(n, Input::Received(ConnId(c), ClientMsg::Away { message }))?;
            }
            Op::Drop(n, c) if w.nodes[n].open.contains(&c) => {
                w.input(n, Input::Closed(ConnId(c)))?;
            }
            Op::Decide(n) => w.decide(n)?,
            Op::Apply(n) => w.apply(n)?,
            _ => {}
        }
        w.check_unique()?;
    }
    // Deliver everything: every proposal decided, every entry applied everywhere.
    loop {
        let pending = w.nodes.iter().any(|n| !n.proposals.is_empty())
            || w.nodes.iter().any(|n| n.applied < w.entries.len());
        if !pending {
            break;
        }
        for n in 0..NODES {
            w.decide(n)?;
            w.apply(n)?;
        }
        w.check_unique()?;
    }
    let log_names: Vec<Member> = w.log.snapshot().members.iter().map(Seat::member).collect();
    for (n, node) in w.nodes.iter().enumerate() {
        let names = node.room.member_list();
        prop_assert_eq!(
            &names,
            &log_names,
            "node {} lists other members than the log",
            n
        );
        prop_assert_eq!(node.room.pos(), w.log.pos());
    }
    // Each chat reached every member that was in the room when it was applied, once: members
    // present from before the first chat to the end received every chat but their own.
    for ((n, c), seen) in &w.seen {
        let mut unique = seen.seqs.clone();
        unique.dedup();
        prop_assert_eq!(&unique, &seen.seqs, "a chat twice at {}/{}", n, c);
        prop_assert!(
            seen.known.contains(&seen.name),
            "{} does not know itself",
            seen.name
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 500, ..ProptestConfig::default() })]

    #[test]
    fn three_nodes_sharing_one_log_agree(ops in proptest::collection::vec(op(), 1..150)) {
        run(ops)?;
    }
}

#[test]
fn a_member_of_another_node_is_greeted_and_heard() {
    let mut w = World::new();
    w.input(0, Input::Opened(ConnId(1))).unwrap();
    w.input(1, Input::Opened(ConnId(1))).unwrap();
    w.input(0, Input::Received(ConnId(1), hello("alice")))
        .unwrap();
    w.input(1, Input::Received(ConnId(1), hello("ALICE")))
        .unwrap();
    // Node 1's claim reaches the log first: node 0's look-alike is refused by the log.
    w.decide(1).unwrap();
    w.decide(0).unwrap();
    assert_eq!(w.nodes[0].room.name_of(ConnId(1)), None);
    for n in 0..NODES {
        w.apply(n).unwrap();
    }
    assert_eq!(w.nodes[1].room.name_of(ConnId(1)), Some("ALICE"));
    assert_eq!(
        w.nodes[2].room.member_names(),
        vec![Arc::<str>::from("ALICE")]
    );
    w.input(0, Input::Received(ConnId(1), hello("bob")))
        .unwrap();
    w.decide(0).unwrap();
    for n in 0..NODES {
        w.apply(n).unwrap();
    }
    let chat = chat("hi");
    w.input(0, Input::Received(ConnId(1), chat)).unwrap();
    w.decide(0).unwrap();
    for n in 0..NODES {
        w.apply(n).unwrap();
    }
    assert_eq!(w.seen[&(1, 1)].seqs, vec![1], "ALICE on node 1 heard bob");
    assert_eq!(
        w.seen[&(0, 1)].seqs,
        Vec::<u64>::new(),
        "bob did not hear himself"
    );
}

#[test]
fn a_room_started_from_a_snapshot_shows_its_chats_to_a_newcomer_as_many_as_it_keeps() {
    let said = |seq: u64| chat_proto::HistoryChat {
        seq,
        time: 1_000 + seq,
        from: "bob".into(),
        text: format!("c{seq}").into(),
        kind: ChatKind::Action,
    };
    let snapshot = Snapshot {
        epoch: LOG_EPOCH,
        pos: 4,
        seq: 3,
        members: Vec::new(),
        history: (1..=3).map(said).collect(),
        ..Snapshot::default()
    };
    let config = Config {
        history: 2,
        ..config()
    };
    let mut room = Room::shared(config, NodeId(1), snapshot).unwrap();
    let now = Instant::now();
    room.handle_input(now, Input::Opened(ConnId(1))).unwrap();
    room.handle_input(now, Input::Received(ConnId(1), hello("alice")))
        .unwrap();
    let Some(Output::Propose(proposal)) = room.poll_output() else {
        panic!("the hello is proposed to the log");
    };
    let entry = Entry {
        pos: 5,
        time: 2_000,
        node: NodeId(1),
        conn: ConnId(1),
        name: proposal.name,
        key: proposal.key,
        event: Event::Joined { ident: None },
    };
    room.handle_input(now, Input::Applied(entry)).unwrap();
    let sent: Vec<ServerMsg> = std::iter::from_fn(|| room.poll_output())
        .filter_map(|o| match o {
            Output::Send { msg, .. } => Some(msg),
            _ => None,
        })
        .collect();
    assert!(matches!(sent[0], ServerMsg::Welcome { .. }), "{sent:?}");
    assert_eq!(
        sent[1..],
        [ServerMsg::History {
            chats: vec![said(2), said(3)],
            missed: 0
        }]
    );
}

/// A node whose place in the log may be gone closes its members and joiners at once, with the
/// reason given, and proposes their leaves; a handshake stays and may join later.
#[test]
fn a_lost_node_lets_its_members_and_joiners_go_and_the_log_records_their_leaves() {
    let mut w = World::new();
    for (n, conn, name) in [(0, 1, "alice"), (1, 1, "bob")] {
        w.input(n, Input::Opened(ConnId(conn))).unwrap();
        w.input(n, Input::Received(ConnId(conn), hello(name)))
            .unwrap();
        w.decide(n).unwrap();
    }
    for n in 0..NODES {
        w.apply(n).unwrap();
        w.apply(n).unwrap();
    }
    w.input(0, Input::Opened(ConnId(2))).unwrap();
    w.input(0, Input::Received(ConnId(2), hello("carol")))
        .unwrap();
    w.input(0, Input::Opened(ConnId(3))).unwrap();
    w.input(
        0,
        Input::Lost {
            reason: CloseReason::ServerLost,
        },
    )
    .unwrap();
    assert_eq!(
        w.closed,
        vec![
            (0, 1, CloseReason::ServerLost),
            (0, 2, CloseReason::ServerLost)
        ]
    );
    assert_eq!(w.nodes[0].room.members().count(), 0);
    // The log still holds them (it was reachable after all): their leaves let them go.
    while !w.nodes[0].proposals.is_empty() {
        w.decide(0).unwrap();
    }
    for _ in 0..w.entries.len() {
        for n in 0..NODES {
            w.apply(n).unwrap();
        }
    }
    for n in 0..NODES {
        assert_eq!(
            w.nodes[n].room.member_names(),
            vec![Arc::<str>::from("bob")]
        );
    }
    assert_eq!(w.seen[&(1, 1)].known, HashSet::from(["bob".to_owned()]));
    // The handshake was not a member: it stays, and joins.
    w.input(0, Input::Received(ConnId(3), hello("dave")))
        .unwrap();
    while !w.nodes[0].proposals.is_empty() {
        w.decide(0).unwrap();
    }
    for _ in 0..w.entries.len() {
        for n in 0..NODES {
            w.apply(n).unwrap();
        }
    }
    assert_eq!(w.nodes[0].room.name_of(ConnId(3)), Some("dave"));
}

/// A member that reconnects before the log has recorded its leave gets its name back: the join
/// follows the leave to the log instead of being refused from the stale view.
#[test]
fn a_member_back_before_its_leave_is_applied_gets_its_name() {
    let mut w = World::new();
    w.input(0, Input::Opened(ConnId(1))).unwrap();
    w.input(0, Input::Received(ConnId(1), hello("alice")))
        .unwrap();
    w.decide(0).unwrap();
    w.apply(0).unwrap();
    w.input(0, Input::Closed(ConnId(1))).unwrap();
    w.input(0, Input::Opened(ConnId(2))).unwrap();
    w.input(0, Input::Received(ConnId(2), hello("Alice")))
        .unwrap();
    assert_eq!(w.nodes[0].proposals.len(), 2, "the leave, then the join");
    while !w.nodes[0].proposals.is_empty() {
        w.decide(0).unwrap();
    }
    w.apply(0).unwrap();
    w.apply(0).unwrap();
    assert_eq!(w.nodes[0].room.name_of(ConnId(2)), Some("Alice"));
    // Held by a member still here, or on another node, the name is refused at once.
    w.input(0, Input::Opened(ConnId(3))).unwrap();
    w.input(0, Input::Received(ConnId(3), hello("alice")))
        .unwrap();
    assert!(w.nodes[0].proposals.is_empty());
    w.apply(1).unwrap();
    w.apply(1).unwrap();
    w.apply(1).unwrap();
    w.input(1, Input::Opened(ConnId(1))).unwrap();
    w.input(1, Input::Received(ConnId(1), hello("alice")))
        .unwrap();
    assert!(w.nodes[1].proposals.is_empty());
}

/// In a full shared room, a member back before its leave is applied is not refused as if the
/// room were full: its old seat is gone.
#[test]
fn a_full_room_does_not_count_a_seat_whose_member_here_is_gone() {
    let mut w = World::new();
    let max = config().max_clients as u64;
    for conn in 1..=max {
        w.input(0, Input::Opened(ConnId(conn))).unwrap();
        w.input(0, Input::Received(ConnId(conn), hello(&format!("m{conn}"))))
            .unwrap();
        w.decide(0).unwrap();
        w.apply(0).unwrap();
    }
    assert_eq!(w.nodes[0].room.member_count(), max as usize);
    w.input(0, Input::Closed(ConnId(1))).unwrap();
    w.input(0, Input::Opened(ConnId(99))).unwrap();
    w.input(0, Input::Received(ConnId(99), hello("carol")))
        .unwrap();
    assert_eq!(w.nodes[0].proposals.len(), 2, "the leave, then the join");
    assert!(!w.closed.iter().any(|(_, conn, _)| *conn == 99));
}

/// A chat sent right after the hello, while the join is still on its way to the log, follows
/// the join there: the others see the join, then the chat. A chat after a join the log refuses
/// is refused with it and reaches nobody; the connection stays, as after any refusal.
#[test]
fn a_chat_sent_while_the_join_is_in_flight_follows_it() {
    let mut w = World::new();
    // bob's claim is in the log, but node 0 has not applied it: it cannot refuse a look-alike
    // itself, and proposes it.
    w.input(1, Input::Opened(ConnId(1))).unwrap();
    w.input(1, Input::Received(ConnId(1), hello("bob")))
        .unwrap();
    w.decide(1).unwrap();
    w.apply(1).unwrap();
    let chat = chat("hi");
    for (conn, name) in [(1, "alice"), (2, "BOB")] {
        w.input(0, Input::Opened(ConnId(conn))).unwrap();
        w.input(0, Input::Received(ConnId(conn), hello(name)))
            .unwrap();
        w.input(0, Input::Received(ConnId(conn), chat.clone()))
            .unwrap();
    }
    assert_eq!(w.nodes[0].proposals.len(), 4, "two joins, two chats");
    while !w.nodes[0].proposals.is_empty() {
        w.decide(0).unwrap();
    }
    for _ in 0..w.entries.len() {
        for n in 0..NODES {
            w.apply(n).unwrap();
        }
    }
    assert_eq!(w.seen[&(1, 1)].seqs, vec![1], "bob heard alice's chat once");
    assert!(w.seen[&(1, 1)].known.contains("alice"));
    assert_eq!(
        w.senders.values().collect::<Vec<_>>(),
        [&(0, 1)],
        "only alice's chat entered the log"
    );
    assert_eq!(w.nodes[0].room.name_of(ConnId(2)), None);
    assert!(w.closed.is_empty(), "{:?}", w.closed);
}

/// A node swept by the log (its lease ran out): every node applies its members' leaves, the
/// others hear them leave as lost, and the swept node closes them with that reason.
#[test]
fn a_swept_node_s_members_leave_everywhere_as_lost() {
    let mut w = World::new();
    for (n, name) in [(0, "alice"), (1, "bob")] {
        w.input(n, Input::Opened(ConnId(1))).unwrap();
        w.input(n, Input::Received(ConnId(1), hello(name))).unwrap();
        w.decide(n).unwrap();
    }
    let swept = w.log.sweep(NodeId(2), w.clock);
    assert_eq!(swept.len(), 1);
    w.entries.extend(swept);
    for _ in 0..w.entries.len() {
        for n in 0..NODES {
            w.apply(n).unwrap();
        }
    }
    assert_eq!(w.closed, vec![(1, 1, CloseReason::ServerLost)]);
    for n in 0..NODES {
        assert_eq!(
            w.nodes[n].room.member_names(),
            vec![Arc::<str>::from("alice")]
        );
    }
    assert_eq!(w.seen[&(0, 1)].known, HashSet::from(["alice".to_owned()]));
}

impl World {
    /// Opens `conn` on node `n` and joins it as `name`, everywhere.
    fn join(&mut self, n: usize, conn: u64, name: &str) {
        self.input(n, Input::Opened(ConnId(conn))).unwrap();
        self.input(n, Input::Received(ConnId(conn), hello(name)))
            .unwrap();
        self.settle();
    }

    /// Decides every proposal and applies every entry everywhere.
    fn settle(&mut self) {
        while self
            .nodes
            .iter()
            .any(|n| !n.proposals.is_empty() || n.applied < self.entries.len())
        {
            for n in 0..NODES {
                self.decide(n).unwrap();
                self.apply(n).unwrap();
            }
        }
    }

    fn log_names(&self) -> Vec<String> {
        let members = self.log.snapshot().members;
        members.iter().map(|s| s.name.to_string()).collect()
    }
}

fn nick(name: &str) -> ClientMsg {
    ClientMsg::Nick { name: name.into() }
}

/// A rename the log declines (another node's member claimed the name first) is refused to the
/// renamer, which keeps its name; a chat sent meanwhile, under the new name, is lost with it.
#[test]
fn a_rename_the_log_declines_is_refused_and_the_member_keeps_its_name() {
    let mut w = World::new();
    w.join(0, 1, "alice");
    w.input(1, Input::Opened(ConnId(1))).unwrap();
    w.input(1, Input::Received(ConnId(1), hello("carol")))
        .unwrap();
    w.input(0, Input::Received(ConnId(1), nick("Carol")))
        .unwrap();
    w.input(0, Input::Received(ConnId(1), chat("lost")))
        .unwrap();
    // One rename in flight at a time.
    w.input(0, Input::Received(ConnId(1), nick("dave")))
        .unwrap();
    assert_eq!(w.errors, [(0, 1, ErrorKind::RateLimited)]);
    w.decide(1).unwrap();
    w.settle();
    assert_eq!(w.errors[1..], [(0, 1, ErrorKind::NameTaken)]);
    assert_eq!(w.nodes[0].room.name_of(ConnId(1)), Some("alice"));
    assert!(
        w.senders.is_empty(),
        "the chat under the name not held was not recorded"
    );
    // Its proposals carry the name it holds again.
    w.input(0, Input::Received(ConnId(1), chat("heard")))
        .unwrap();
    w.input(0, Input::Received(ConnId(1), nick("dave")))
        .unwrap();
    w.settle();
    assert_eq!(w.seen[&(1, 1)].seqs, [1]);
    assert_eq!(w.log_names(), ["carol", "dave"]);
}

/// A member that leaves while its rename is in flight gives back whichever name the log holds
/// when it decides: the new one if the rename went through, else the old one.
#[test]
fn a_leave_while_a_rename_is_in_flight_frees_the_name_the_log_holds() {
    for declined in [false, true] {
        let mut w = World::new();
        w.join(0, 1, "alice");
        if declined {
            w.input(1, Input::Opened(ConnId(1))).unwrap();
            w.input(1, Input::Received(ConnId(1), hello("alicia")))
                .unwrap();
            w.decide(1).unwrap();
        }
        w.input(0, Input::Received(ConnId(1), nick("alicia")))
            .unwrap();
        w.input(0, Input::Received(ConnId(1), leave())).unwrap();
        assert_eq!(
            w.nodes[0].proposals.len(),
            3,
            "the rename, then a leave under each name"
        );
        w.settle();
        let expected: &[&str] = if declined { &["alicia"] } else { &[] };
        assert_eq!(w.log_names(), expected, "declined: {declined}");
        for node in &w.nodes {
            assert_eq!(node.room.member_names().len(), expected.len());
        }
    }
}
