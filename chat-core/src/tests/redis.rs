//! The Redis log's state machine without Redis: example tests with a fake clock (calls answered
//! by hand or by the model of the scripts), and a random world of three nodes over the model.

mod model;
mod world;

use std::sync::Arc;
use std::time::{Duration, Instant};

use chat_proto::{ChatKind, CloseReason, Ident};

use crate::log::redis::{
    COMMAND_TIMEOUT, Call, Command, Lane, Level, Output, PROPOSAL_QUEUE, RECONNECT_DELAY, RedisLog,
    Reply, Script, Settings,
};
use crate::{
    ConnId, Declined, Entry, Event, Input, NodeId, Proposal, ProposalKind, Seat, Snapshot,
};
use model::Redis;

const LEASE: Duration = Duration::from_secs(6);
/// Redis's clock at the start of a test (ms).
const T0: u64 = 1_700_000_000_000;

fn settings(trim_len: u64) -> Settings {
    Settings {
        room: "room".into(),
        lease: LEASE,
        trim_len,
        max_members: 5,
        history: 3,
        // Pings off unless a test turns them on: they would take the proposal lane.
        ping_idle: Duration::from_secs(3600),
        ..Settings::new("room")
    }
}

fn bulk(s: &str) -> Reply {
    Reply::Bulk(s.as_bytes().to_vec())
}

fn array(items: impl IntoIterator<Item = Reply>) -> Reply {
    Reply::Array(items.into_iter().collect())
}

fn answers(words: &[&str]) -> Reply {
    array(words.iter().map(|w| bulk(w)))
}

fn proposal(conn: u64, name: &str, kind: ProposalKind) -> Proposal {
    Proposal {
        conn: ConnId(conn),
        name: Arc::from(name),
        key: Arc::from(crate::fold_name(name).as_str()),
        kind,
    }
}

fn join(conn: u64, name: &str) -> Proposal {
    proposal(conn, name, ProposalKind::Join { ident: None })
}

fn chat(conn: u64, name: &str, text: &str) -> Proposal {
    let text = text.to_owned();
    let kind = ChatKind::Plain;
    proposal(conn, name, ProposalKind::Chat { text, kind })
}

fn leave(conn: u64, name: &str, reason: CloseReason) -> Proposal {
    let message = None;
    proposal(conn, name, ProposalKind::Leave { reason, message })
}

/// A stream entry as XREAD gives it: (ID, fields).
fn stream_entry(id: &str, fields: &[(&str, &str)]) -> Reply {
    let flat = fields.iter().flat_map(|(k, v)| [bulk(k), bulk(v)]);
    array([bulk(id), array(flat)])
}

/// An XREAD reply of the room's stream (RESP2's shape).
fn read_reply(entries: Vec<Reply>) -> Reply {
    array([array([bulk("chat:{room}:log"), array(entries)])])
}

fn joined_entry(id: &str, pos: u64, node: u64, conn: u64, name: &str) -> Reply {
    let (pos, node, conn) = (pos.to_string(), node.to_string(), conn.to_string());
    let key = crate::fold_name(name);
    stream_entry(
        id,
        &[
            ("pos", &pos),
            ("node", &node),
            ("conn", &conn),
            ("name", name),
            ("key", &key),
            ("kind", "join"),
        ],
    )
}

/// One node's log with a fake clock, and everything it gave out.
struct Node {
    log: RedisLog,
    now: Instant,
    /// Calls not yet answered, oldest first (a newer call on a lane replaces an older).
    calls: Vec<Call>,
    inputs: Vec<Input>,
    notes: Vec<(Level, String)>,
    entered: Option<(NodeId, Snapshot)>,
}

impl Node {
    fn new(trim_len: u64) -> Self {
        let now = Instant::now();
        let mut node = Self {
            log: RedisLog::new(settings(trim_len), 7, now),
            now,
            calls: Vec::new(),
            inputs: Vec::new(),
            notes: Vec::new(),
            entered: None,
        };
        node.drain();
        node
    }

    /// A node in the room kept by `redis`, at Redis time `T0`.
    fn entered(redis: &mut Redis, trim_len: u64) -> Self {
        redis.now_ms = T0;
        let mut node = Self::new(trim_len);
        while node.entered.is_none() {
            node.run_next(redis, Lane::Read);
        }
        node
    }

    fn drain(&mut self) {
        while let Some(output) = self.log.poll_output() {
            match output {
                Output::Call(call) => {
                    self.calls.retain(|c| c.lane != call.lane);
                    self.calls.push(call);
                }
                Output::Input(input) => self.inputs.push(input),
                Output::Note(note) => self.notes.push((note.level, note.text)),
                Output::Entered { node, snapshot } => self.entered = Some((node, snapshot)),
            }
        }
    }

    /// The call waiting on `lane`, taken.
    fn take(&mut self, lane: Lane) -> Call {
        let at = self.calls.iter().position(|c| c.lane == lane);
        let at = at.unwrap_or_else(|| panic!("no call on {lane:?}: {:?}", self.calls));
        self.calls.remove(at)
    }

    fn waiting(&self, lane: Lane) -> Option<&Call> {
        self.calls.iter().find(|c| c.lane == lane)
    }

    fn answer(&mut self, call: &Call, reply: Reply) {
        self.log.handle_reply(self.now, call.id, reply);
        self.drain();
    }

    fn unreachable(&mut self, call: &Call) {
        self.log.handle_unreachable(self.now, call.id);
        self.drain();
    }

    /// Runs the call waiting on `lane` in `redis` and hands the log the answer.
    fn run_next(&mut self, redis: &mut Redis, lane: Lane) {
        let call = self.take(lane);
        let reply = redis.run(&call);
        self.answer(&call, reply);
    }

    /// Runs every proposal call in `redis` until none waits.
    fn run_proposals(&mut self, redis: &mut Redis) {
        while self.waiting(Lane::Propose).is_some() {
            self.run_next(redis, Lane::Propose);
        }
    }

    fn propose(&mut self, proposal: Proposal) {
        let node = self.log.node();
        self.log.propose(self.now, node, proposal);
        self.drain();
    }

    /// Time passes, Redis's clock with it.
    fn advance(&mut self, by: Duration, redis: Option<&mut Redis>) {
        self.now += by;
        if let Some(redis) = redis {
            redis.now_ms += u64::try_from(by.as_millis()).unwrap();
        }
        self.log.handle_timeout(self.now);
        self.drain();
    }

    fn declined(&self) -> Vec<(Proposal, Declined)> {
        let declined = self.inputs.iter().filter_map(|i| match i {
            Input::Declined { proposal, why } => Some((proposal.clone(), *why)),
            _ => None,
        });
        declined.collect()
    }
}

/// The arguments of a script call.
fn args(call: &Call) -> &[String] {
    match &call.command {
        Command::Script { args, .. } => args,
        Command::Plain(args) => args,
    }
}

fn script(call: &Call) -> Option<Script> {
    match &call.command {
        Command::Script { script, .. } => Some(*script),
        Command::Plain(_) => None,
    }
}

/// The proposals of a propose call, six arguments each: (kind, conn, name, key, and two by kind).
fn batch(call: &Call) -> Vec<[&str; 6]> {
    assert_eq!(script(call), Some(Script::Propose));
    let proposals = args(call)[6..].chunks(6);
    proposals
        .map(|p| [&*p[0], &*p[1], &*p[2], &*p[3], &*p[4], &*p[5]])
        .collect()
}

/// Enters by hand: node 4 of a room whose Redis clock reads `T0`, at stream ID 9-0.
fn entered_by_hand(trim_len: u64) -> Node {
    let mut node = Node::new(trim_len);
    let register = node.take(Lane::Read);
    let epoch = args(&register)[0].clone();
    let registered = array([
        Reply::Int(4),
        bulk(&epoch),
        Reply::Int(T0 as i64),
        Reply::Int(5),
    ]);
    node.answer(&register, registered);
    let snapshot = node.take(Lane::Read);
    let empty = array([
        bulk("3"),
        bulk("0"),
        bulk(&epoch),
        bulk("9-0"),
        array([]),
        array([]),
    ]);
    node.answer(&snapshot, empty);
    assert!(node.entered.is_some(), "{:?}", node.notes);
    node
}

#[test]
fn entering_registers_then_takes_a_snapshot_then_reads_from_its_last_id() {
    let mut node = Node::new(100_000);
    let register = node.take(Lane::Read);
    assert_eq!(script(&register), Some(Script::Register));
    let Command::Script {
        keys, args: argv, ..
    } = &register.command
    else {
        unreachable!()
    };
    assert_eq!(
        keys,
        &[
            "chat:{room}:meta",
            "chat:{room}:nodes",
            "chat:{room}:names",
            "chat:{room}:log"
        ]
    );
    assert_eq!(argv[0].len(), 16, "a random epoch: {argv:?}");
    assert_eq!(argv[1..], ["6000", "5"]);
    assert_eq!(register.timeout, COMMAND_TIMEOUT);
    let epoch = argv[0].clone();
    node.answer(
        &register,
        array([
            Reply::Int(4),
            bulk("e1"),
            Reply::Int(T0 as i64),
            Reply::Int(9),
        ]),
    );
    assert!(
        node.notes
            .iter()
            .any(|(l, t)| *l == Level::Warn && t.contains("at most 9 members"))
    );
    let snapshot = node.take(Lane::Read);
    assert_eq!(
        (script(&snapshot), args(&snapshot)),
        (Some(Script::Snapshot), &["3".to_owned()][..])
    );
    let claims = [
        "zed",
        "9:2:Zed",
        "+gone\n+z\n+Zed Z",
        "amy",
        "4:1:Amy:x",
        "\n\n",
    ]
    .map(bulk);
    let chats = ["7-0", "1", "Amy:x", "hi", "action"].map(bulk);
    node.answer(
        &snapshot,
        array([
            bulk("5"),
            bulk("1"),
            bulk("e1"),
            bulk("12-3"),
            array(claims),
            array(chats),
        ]),
    );
    let (id, snapshot) = node.entered.clone().expect("entered");
    assert_eq!(id, NodeId(4));
    assert_eq!((snapshot.pos, snapshot.seq), (5, 1));
    let seat = |node, conn, name: &str, key: &str| Seat {
        node: NodeId(node),
        conn: ConnId(conn),
        name: Arc::from(name),
        key: Arc::from(key),
        away: None,
        ident: None,
    };
    let zed = Seat {
        away: Some(Arc::from("gone")),
        ident: Some(Arc::new(Ident {
            user: "z".into(),
            realname: "Zed Z".into(),
        })),
        ..seat(9, 2, "Zed", "zed")
    };
    assert_eq!(
        snapshot.members,
        [seat(4, 1, "Amy:x", "amy"), zed],
        "sorted by key, with what each seat keeps"
    );
    assert_eq!(snapshot.epoch, 0xe1, "the epoch's hex digits");
    let chat = &snapshot.history[0];
    assert_eq!(
        (&*chat.text, chat.time, chat.kind),
        ("hi", 7, ChatKind::Action)
    );
    let read = node.take(Lane::Read);
    assert_eq!(
        args(&read),
        [
            "XREAD",
            "COUNT",
            "512",
            "BLOCK",
            "1000",
            "STREAMS",
            "chat:{room}:log",
            "12-3"
        ]
    );
    assert_eq!(
        read.timeout,
        Duration::from_millis(1000) + 2 * COMMAND_TIMEOUT
    );
    assert_ne!(epoch, "e1", "the room's epoch is the one Redis keeps");
}

#[test]
fn a_room_that_cannot_be_entered_is_given_up_with_a_note() {
    let mut node = Node::new(100_000);
    let register = node.take(Lane::Read);
    node.answer(&register, Reply::Error("NOSCRIPT no such script".into()));
    assert!(node.entered.is_none());
    assert!(node.calls.is_empty());
    assert_eq!(node.log.poll_timeout(), None);
    assert_eq!(
        node.notes,
        [(
            Level::Error,
            "cannot enter the room: NOSCRIPT no such script".into()
        )]
    );
}

#[test]
fn proposals_go_in_one_call_in_order_and_what_the_script_refuses_is_declined() {
    let mut node = entered_by_hand(100_000);
    node.now += Duration::from_millis(300);
    node.propose(join(1, "Alice"));
    // The first call goes at once; what comes meanwhile waits for its answer.
    let first = node.take(Lane::Propose);
    assert_eq!(batch(&first), [["join", "1", "Alice", "alice", "", ""]]);
    node.propose(chat(2, "bob", "hi"));
    node.propose(leave(3, "carol", CloseReason::Left));
    assert!(node.waiting(Lane::Propose).is_none());
    node.answer(&first, answers(&["OK"]));
    let second = node.take(Lane::Propose);
    assert_eq!(
        batch(&second),
        [
            ["chat", "2", "bob", "bob", "hi", "plain"],
            ["leave", "3", "carol", "carol", "left", ""]
        ]
    );
    let Command::Script {
        keys, args: argv, ..
    } = &second.command
    else {
        unreachable!()
    };
    assert_eq!(keys[4], "chat:{room}:members:4");
    // node, epoch, trim, max members, and the deadline: half the wait, in Redis's time.
    assert_eq!(argv[0], "4");
    assert_eq!(argv[2..4], ["100000", "5"]);
    assert_eq!(argv[4], (T0 + 300 + 500).to_string());
    node.answer(&second, answers(&["NOT_HOLDER", "NOT_HOLDER"]));
    // A refused leave has no claim to give back: nothing for the room.
    assert_eq!(
        node.declined(),
        [(chat(2, "bob", "hi"), Declined::NotHolder)]
    );
}

#[test]
fn a_batch_is_one_node_s_proposals_a_64th_of_the_stream_at_most() {
    let mut node = entered_by_hand(128);
    node.propose(join(1, "a"));
    let first = node.take(Lane::Propose);
    for (conn, name) in [(2, "b"), (3, "c"), (4, "d")] {
        node.propose(join(conn, name));
    }
    // Made as the node the room was before it started over: refused without asking Redis.
    node.log.propose(node.now, NodeId(3), join(5, "e"));
    node.drain();
    node.answer(&first, answers(&["OK"]));
    let second = node.take(Lane::Propose);
    assert_eq!(batch(&second).len(), 2, "128 / 64");
    node.answer(&second, answers(&["OK", "ROOM_FULL"]));
    let third = node.take(Lane::Propose);
    assert_eq!(batch(&third), [["join", "4", "d", "d", "", ""]]);
    node.answer(&third, answers(&["NAME_TAKEN"]));
    assert_eq!(
        node.declined(),
        [
            (join(3, "c"), Declined::RoomFull),
            (join(4, "d"), Declined::NameTaken),
            (join(5, "e"), Declined::Unavailable)
        ]
    );
    assert!(node.waiting(Lane::Propose).is_none());
}

#[test]
fn answers_that_do_not_fit_decline_the_batch_and_say_so() {
    let mut node = entered_by_hand(100_000);
    node.propose(join(1, "a"));
    let call = node.take(Lane::Propose);
    node.propose(join(2, "b"));
    node.propose(join(3, "c"));
    node.answer(&call, answers(&["WHAT"]));
    let two = node.take(Lane::Propose);
    node.answer(&two, answers(&["OK"]));
    assert_eq!(
        node.declined(),
        [
            (join(1, "a"), Declined::Unavailable),
            (join(2, "b"), Declined::Unavailable),
            (join(3, "c"), Declined::Unavailable)
        ]
    );
    let errors: Vec<&str> = node
        .notes
        .iter()
        .filter(|(l, _)| *l == Level::Error)
        .map(|(_, t)| &**t)
        .collect();
    assert_eq!(
        errors,
        [
            "unexpected answer to a proposal: Some(\"WHAT\")",
            "1 answers to 2 proposals"
        ]
    );
}

#[test]
fn a_fenced_answer_declines_and_rejoins_at_once_giving_up_the_read() {
    let mut node = entered_by_hand(100_000);
    let read = node.waiting(Lane::Read).cloned().expect("a read");
    node.propose(join(1, "a"));
    node.propose(leave(2, "b", CloseReason::Left));
    let call = node.take(Lane::Propose);
    node.answer(&call, bulk("FENCED"));
    assert_eq!(node.declined(), [(join(1, "a"), Declined::Unavailable)]);
    // A new call on the read lane replaces the blocking read: a registration.
    let register = node.take(Lane::Read);
    assert_ne!(register.id, read.id);
    assert_eq!(script(&register), Some(Script::Register));
    // The read's late answer is nobody's.
    node.answer(&read, read_reply(vec![joined_entry("10-0", 4, 1, 1, "x")]));
    assert!(node.inputs.iter().all(|i| !matches!(i, Input::Applied(_))));
    let epoch = args(&register)[0].clone();
    node.answer(
        &register,
        array([
            Reply::Int(8),
            bulk(&epoch),
            Reply::Int(T0 as i64),
            Reply::Int(5),
        ]),
    );
    let snapshot = node.take(Lane::Read);
    node.answer(
        &snapshot,
        array([
            bulk("7"),
            bulk("0"),
            bulk(&epoch),
            bulk("20-0"),
            array([]),
            array([]),
        ]),
    );
    let last = node.inputs.last().unwrap();
    assert!(
        matches!(last, Input::Resync { node: NodeId(8), reason: CloseReason::ServerLost, snapshot } if snapshot.pos == 7),
        "{last:?}"
    );
}

#[test]
fn entries_are_applied_in_order_and_a_malformed_one_is_skipped() {
    let mut node = entered_by_hand(100_000);
    let read = node.take(Lane::Read);
    let bad = stream_entry("10-1", &[("pos", "x"), ("kind", "join")]);
    let chat = stream_entry(
        "11-0",
        &[
            ("pos", "5"),
            ("node", "2"),
            ("conn", "7"),
            ("name", "Bob:x"),
            ("key", "bob:x"),
            ("kind", "chat"),
            ("seq", "1"),
            ("text", "hi"),
        ],
    );
    node.answer(
        &read,
        read_reply(vec![joined_entry("10-0", 4, 2, 7, "Bob:x"), bad, chat]),
    );
    let applied: Vec<&Entry> = node
        .inputs
        .iter()
        .filter_map(|i| match i {
            Input::Applied(e) => Some(e),
            _ => None,
        })
        .collect();
    assert_eq!(applied.len(), 2);
    assert_eq!(
        (&*applied[1].name, &applied[1].event),
        (
            "Bob:x",
            &Event::Chat {
                seq: 1,
                text: "hi".into(),
                kind: ChatKind::Plain,
            }
        )
    );
    assert!(
        node.notes
            .iter()
            .any(|(l, t)| *l == Level::Error && t.starts_with("skipping a malformed entry 10-1"))
    );
    assert_eq!(args(&node.take(Lane::Read))[7], "11-0");
}

/// Entries are timed by their stream IDs; an older node's entries (no kind, no parting words)
/// read with defaults; renames, away and idents come through; an entry of a kind this version
/// does not know (a newer node's) is passed over without starting over.
#[test]
fn entries_carry_their_stream_time_and_an_unknown_kind_is_passed_over() {
    let mut node = entered_by_hand(100_000);
    let read = node.take(Lane::Read);
    let head = |pos: &'static str, kind: &'static str| {
        vec![
            ("pos", pos),
            ("node", "2"),
            ("conn", "7"),
            ("name", "Bob"),
            ("key", "bob"),
            ("kind", kind),
        ]
    };
    let with = |mut fields: Vec<(&'static str, &'static str)>,
                more: &[(&'static str, &'static str)]| {
        fields.extend_from_slice(more);
        fields
    };
    let entries = vec![
        stream_entry(
            "1700000000001-0",
            &with(head("4", "join"), &[("user", "b"), ("realname", "B B")]),
        ),
        // An older node's chat and leave: no kind, no words.
        stream_entry(
            "1700000000001-1",
            &with(head("5", "chat"), &[("seq", "1"), ("text", "hi")]),
        ),
        stream_entry(
            "1700000000002-0",
            &with(head("6", "poll"), &[("question", "?")]),
        ),
        stream_entry(
            "1700000000003-0",
            &with(
                head("7", "chat"),
                &[("seq", "2"), ("text", "waves"), ("chat_kind", "action")],
            ),
        ),
        stream_entry(
            "1700000000004-0",
            &with(head("8", "away"), &[("message", "lunch")]),
        ),
        stream_entry(
            "1700000000005-0",
            &with(
                head("9", "rename"),
                &[("to_name", "Rob"), ("to_key", "rob")],
            ),
        ),
        stream_entry(
            "1700000000006-0",
            &with(
                head("10", "leave"),
                &[("reason", "left"), ("message", "bye")],
            ),
        ),
    ];
    node.answer(&read, read_reply(entries));
    let applied: Vec<(u64, u64, Event)> = node
        .inputs
        .iter()
        .filter_map(|i| match i {
            Input::Applied(e) => Some((e.pos, e.time, e.event.clone())),
            _ => None,
        })
        .collect();
    let t = 1_700_000_000_000;
    let expected = [
        (
            4,
            t + 1,
            Event::Joined {
                ident: Some(Arc::new(Ident {
                    user: "b".into(),
                    realname: "B B".into(),
                })),
            },
        ),
        (
            5,
            t + 1,
            Event::Chat {
                seq: 1,
                text: "hi".into(),
                kind: ChatKind::Plain,
            },
        ),
        (6, t + 2, Event::Unknown),
        (
            7,
            t + 3,
            Event::Chat {
                seq: 2,
                text: "waves".into(),
                kind: ChatKind::Action,
            },
        ),
        (
            8,
            t + 4,
            Event::Away {
                message: Some(Arc::from("lunch")),
            },
        ),
        (
            9,
            t + 5,
            Event::Renamed {
                name: Arc::from("Rob"),
                key: Arc::from("rob"),
            },
        ),
        (
            10,
            t + 6,
            Event::Left {
                reason: CloseReason::Left,
                message: Some(Arc::from("bye")),
            },
        ),
    ];
    assert_eq!(applied, expected);
    assert!(
        !node
            .inputs
            .iter()
            .any(|i| matches!(i, Input::Resync { .. })),
        "nothing starts over"
    );
    assert_eq!(args(&node.take(Lane::Read))[7], "1700000000006-0");
}

#[test]
fn a_resp3_read_reply_is_read_like_a_resp2_one() {
    let mut node = entered_by_hand(100_000);
    let read = node.take(Lane::Read);
    // A map {key: entries}, as the driver flattens it.
    node.answer(
        &read,
        array([
            bulk("chat:{room}:log"),
            array([joined_entry("10-0", 4, 2, 7, "bob")]),
        ]),
    );
    assert!(matches!(&node.inputs[..], [Input::Applied(e)] if e.pos == 4));
    // Nothing new within the block: read again.
    let read = node.take(Lane::Read);
    node.answer(&read, Reply::Nil);
    assert_eq!(args(&node.take(Lane::Read))[7], "10-0");
}

#[test]
fn an_entry_past_a_gap_starts_over_from_a_snapshot_as_the_same_node() {
    let mut node = entered_by_hand(100_000);
    let read = node.take(Lane::Read);
    node.answer(
        &read,
        read_reply(vec![
            joined_entry("10-0", 4, 2, 7, "bob"),
            joined_entry("30-0", 9, 2, 8, "amy"),
        ]),
    );
    assert_eq!(node.inputs.len(), 1, "applied up to the gap");
    assert!(
        node.notes
            .iter()
            .any(|(_, t)| t == "entry 9 follows 4: the stream was trimmed past this node")
    );
    let snapshot = node.take(Lane::Read);
    assert_eq!(
        script(&snapshot),
        Some(Script::Snapshot),
        "no new registration"
    );
    node.answer(
        &snapshot,
        array([
            bulk("9"),
            bulk("0"),
            bulk("e"),
            bulk("30-0"),
            array([]),
            array([]),
        ]),
    );
    assert!(matches!(
        node.inputs.last(),
        Some(Input::Resync {
            node: NodeId(4),
            reason: CloseReason::RoomReset,
            ..
        })
    ));
    assert_eq!(args(&node.take(Lane::Read))[7], "30-0");
}

#[test]
fn a_log_that_went_backwards_is_another_room_and_the_node_registers_again() {
    let mut node = entered_by_hand(100_000);
    let read = node.take(Lane::Read);
    node.answer(
        &read,
        read_reply(vec![joined_entry("40-0", 1, 1, 1, "new")]),
    );
    assert!(node.inputs.is_empty(), "position 1 after 3: not applied");
    assert_eq!(script(&node.take(Lane::Read)), Some(Script::Register));
}

#[test]
fn a_malformed_snapshot_when_starting_over_is_tried_again_soon() {
    let mut node = entered_by_hand(100_000);
    let read = node.take(Lane::Read);
    node.answer(&read, read_reply(vec![joined_entry("40-0", 9, 1, 1, "x")]));
    let snapshot = node.take(Lane::Read);
    node.answer(&snapshot, array([bulk("9"), bulk("0")]));
    assert!(
        node.notes
            .iter()
            .any(|(_, t)| t.starts_with("cannot start over yet: malformed snapshot"))
    );
    assert!(node.waiting(Lane::Read).is_none());
    node.advance(RECONNECT_DELAY - Duration::from_millis(1), None);
    assert!(node.waiting(Lane::Read).is_none());
    node.advance(Duration::from_millis(1), None);
    assert_eq!(script(&node.take(Lane::Read)), Some(Script::Snapshot));
}

#[test]
fn a_malformed_claim_is_skipped_and_the_rest_of_the_snapshot_kept() {
    let mut node = Node::new(100_000);
    let register = node.take(Lane::Read);
    node.answer(
        &register,
        array([
            Reply::Int(4),
            bulk("e"),
            Reply::Int(T0 as i64),
            Reply::Int(5),
        ]),
    );
    let snapshot = node.take(Lane::Read);
    let claims = ["a", "1:x:a", "", "b", "1:2:b", ""].map(bulk);
    node.answer(
        &snapshot,
        array([
            bulk("2"),
            bulk("0"),
            bulk("e"),
            bulk("0-0"),
            array(claims),
            array([]),
        ]),
    );
    let (_, snapshot) = node.entered.clone().unwrap();
    assert_eq!(snapshot.members.len(), 1);
    assert!(
        node.notes
            .iter()
            .any(|(l, t)| *l == Level::Error && t.contains("malformed claim"))
    );
}

#[test]
fn heartbeats_come_every_third_of_the_lease_counted_from_their_sending() {
    let mut node = entered_by_hand(100_000);
    let start = node.now;
    assert_eq!(node.log.poll_timeout(), Some(start + LEASE / 3));
    node.advance(LEASE / 3, None);
    let beat = node.take(Lane::Lease);
    assert_eq!(args(&beat)[0], "4");
    assert_eq!(args(&beat)[2], "6000");
    assert_eq!(beat.timeout, COMMAND_TIMEOUT.min(LEASE / 4));
    // Answered late: the next one still comes a third of a lease after this one was sent.
    node.now += Duration::from_millis(900);
    node.answer(&beat, array([bulk("OK"), Reply::Int((T0 + 2900) as i64)]));
    let sweep = node.take(Lane::Lease);
    assert_eq!(
        (script(&sweep), args(&sweep)),
        (Some(Script::Sweep), &["100000".to_owned()][..])
    );
    node.answer(&sweep, Reply::Int(2));
    assert!(
        node.notes
            .iter()
            .any(|(l, t)| *l == Level::Info && t == "swept 2 members of lost servers")
    );
    assert_eq!(node.log.poll_timeout(), Some(start + 2 * (LEASE / 3)));
}

#[test]
fn the_lease_counts_from_the_sending_and_runs_out_unrenewed_once() {
    let mut node = entered_by_hand(100_000);
    node.advance(LEASE / 3, None);
    let sent = node.now;
    let beat = node.take(Lane::Lease);
    // The answer takes most of a second: the lease runs from before it was sent.
    node.now += Duration::from_millis(900);
    node.answer(&beat, array([bulk("OK"), Reply::Int(T0 as i64)]));
    node.take(Lane::Lease);
    // From now on every heartbeat fails.
    loop {
        let due = node.log.poll_timeout().unwrap();
        assert!(due > node.now, "the timer moves on");
        node.advance(due - node.now, None);
        if node.now >= sent + LEASE {
            break;
        }
        if let Some(beat) = node
            .calls
            .iter()
            .position(|c| c.lane == Lane::Lease)
            .map(|at| node.calls.remove(at))
        {
            node.unreachable(&beat);
        }
    }
    assert_eq!(node.now, sent + LEASE);
    let lost: Vec<&Input> = node
        .inputs
        .iter()
        .filter(|i| matches!(i, Input::Lost { .. }))
        .collect();
    assert_eq!(
        lost,
        [&Input::Lost {
            reason: CloseReason::ServerLost
        }]
    );
    node.advance(LEASE, None);
    assert_eq!(
        node.inputs
            .iter()
            .filter(|i| matches!(i, Input::Lost { .. }))
            .count(),
        1,
        "once"
    );
}

#[test]
fn a_fenced_heartbeat_rejoins_and_still_sweeps() {
    let mut node = entered_by_hand(100_000);
    node.advance(LEASE / 3, None);
    let beat = node.take(Lane::Lease);
    node.answer(&beat, array([bulk("RESET"), Reply::Int(T0 as i64)]));
    assert_eq!(script(&node.take(Lane::Read)), Some(Script::Register));
    assert_eq!(script(&node.take(Lane::Lease)), Some(Script::Sweep));
    assert!(
        node.notes
            .iter()
            .any(|(_, t)| t
                == "node 4 is out of the room (the room was reset; join again); rejoining")
    );
}

#[test]
fn the_clock_estimate_keeps_the_best_reading() {
    let mut node = entered_by_hand(100_000);
    node.advance(LEASE / 3, None);
    let beat = node.take(Lane::Lease);
    // A reading older than what the first one implies now: a worse lower bound, not kept.
    node.answer(&beat, array([bulk("OK"), Reply::Int((T0 + 100) as i64)]));
    node.propose(join(1, "a"));
    let call = node.take(Lane::Propose);
    assert_eq!(args(&call)[4], (T0 + 2000 + 500).to_string());
}

#[test]
fn the_timer_never_spins() {
    let mut node = entered_by_hand(100_000);
    node.propose(leave(1, "a", CloseReason::Left));
    let call = node.take(Lane::Propose);
    node.unreachable(&call);
    for _ in 0..200 {
        let due = node.log.poll_timeout().expect("a timer");
        assert!(due > node.now);
        node.advance(due - node.now, None);
        for call in std::mem::take(&mut node.calls) {
            node.unreachable(&call);
        }
    }
}

/// A leave Redis could not take is kept, goes first when Redis is back, with the member's
/// reason, and frees the name: a join of it that comes meanwhile is declined for now.
#[test]
fn a_leave_made_while_redis_is_unreachable_reaches_the_log_once_it_is_back() {
    let mut redis = Redis::new();
    let mut node = Node::entered(&mut redis, 100_000);
    node.propose(join(1, "alice"));
    node.run_proposals(&mut redis);
    // Redis is away: the leave's call fails, so does its one try on a new connection, and
    // so do the rounds after.
    node.propose(leave(1, "alice", CloseReason::Left));
    let call = node.take(Lane::Propose);
    node.unreachable(&call);
    let again = node.take(Lane::Propose);
    assert!(again.fresh && again.command == call.command, "{again:?}");
    node.unreachable(&again);
    node.propose(join(2, "Alice"));
    assert_eq!(
        node.declined(),
        [(join(2, "Alice"), Declined::Unavailable)],
        "not before the leave"
    );
    for _ in 0..3 {
        node.advance(RECONNECT_DELAY, Some(&mut redis));
        let call = node.take(Lane::Propose);
        assert_eq!(batch(&call), [["leave", "1", "alice", "alice", "left", ""]]);
        node.log
            .handle_reply(node.now, call.id, Reply::Error("connection refused".into()));
        node.drain();
    }
    // Back: the leave goes in, then the name is free.
    node.advance(RECONNECT_DELAY, Some(&mut redis));
    node.run_proposals(&mut redis);
    node.propose(join(3, "ALICE"));
    node.run_proposals(&mut redis);
    let events: Vec<(u64, Event)> = redis
        .log()
        .iter()
        .map(|e| (e.conn.0, e.event.clone()))
        .collect();
    let left = Event::Left {
        reason: CloseReason::Left,
        message: None,
    };
    let joined = Event::Joined { ident: None };
    assert_eq!(events, [(1, joined.clone()), (1, left), (3, joined)]);
    assert_eq!(redis.claimed_names(), ["ALICE"]);
}

/// Past the queue's size, joins and chats are declined at once, but a leave still waits its
/// turn behind them and reaches the log, with the member's reason.
#[test]
fn a_leave_the_full_proposal_queue_cannot_take_still_reaches_the_log() {
    let mut redis = Redis::new();
    let mut node = Node::entered(&mut redis, 100_000);
    node.propose(join(1, "alice"));
    for i in 0..PROPOSAL_QUEUE {
        node.propose(chat(1, "alice", &format!("c{i}")));
    }
    node.propose(chat(1, "alice", "one too many"));
    node.propose(leave(1, "alice", CloseReason::Left));
    assert_eq!(
        node.declined(),
        [(chat(1, "alice", "one too many"), Declined::Unavailable)]
    );
    node.run_proposals(&mut redis);
    let log = redis.log();
    assert_eq!(log.len(), 1 + PROPOSAL_QUEUE + 1);
    assert_eq!(
        log.last().unwrap().event,
        Event::Left {
            reason: CloseReason::Left,
            message: None,
        }
    );
    assert!(redis.claimed_names().is_empty(), "the name is free");
}

/// While more kept leaves wait than one batch takes, nothing overtakes them: a new leave joins
/// them, a join or chat is declined for now.
#[test]
fn while_more_leaves_wait_than_a_batch_takes_joins_are_declined_and_leaves_queue() {
    let mut redis = Redis::new();
    let mut node = Node::entered(&mut redis, 64);
    for conn in 1..=5 {
        node.propose(join(conn, &format!("m{conn}")));
    }
    node.run_proposals(&mut redis);
    for conn in 1..=4 {
        node.propose(leave(conn, &format!("m{conn}"), CloseReason::Disconnected));
        if let Some(at) = node.calls.iter().position(|c| c.lane == Lane::Propose) {
            let call = node.calls.remove(at);
            node.unreachable(&call);
        }
    }
    node.advance(RECONNECT_DELAY, Some(&mut redis));
    let retry = node.take(Lane::Propose);
    assert_eq!(
        batch(&retry).len(),
        1,
        "one of the four kept leaves: 64 / 64"
    );
    node.propose(join(7, "m7"));
    node.propose(leave(5, "m5", CloseReason::Left));
    assert_eq!(node.declined(), [], "decided when the next round begins");
    let reply = redis.run(&retry);
    node.answer(&retry, reply);
    // Three kept leaves still wait: more than a batch.
    assert_eq!(node.declined(), [(join(7, "m7"), Declined::Unavailable)]);
    // One batch a round, a round every RECONNECT_DELAY while kept leaves wait.
    for _ in 0..4 {
        node.run_proposals(&mut redis);
        node.advance(RECONNECT_DELAY, Some(&mut redis));
    }
    let left: Vec<u64> = redis.log().iter().skip(5).map(|e| e.conn.0).collect();
    assert_eq!(left, [1, 2, 3, 4, 5]);
}

/// A batch that reaches Redis after the node gave up on it is refused, as the node told its
/// members; the rest of the round is not tried.
#[test]
fn an_expired_batch_fails_the_rest_of_its_round() {
    let mut node = entered_by_hand(128);
    node.propose(join(1, "a"));
    let first = node.take(Lane::Propose);
    for (conn, name) in [(2, "b"), (3, "c"), (4, "d")] {
        node.propose(join(conn, name));
    }
    node.propose(leave(5, "e", CloseReason::Left));
    node.answer(&first, bulk("EXPIRED"));
    // Round two: b, c in one call, then d and the leave without a call.
    let second = node.take(Lane::Propose);
    node.answer(&second, bulk("EXPIRED"));
    assert!(node.waiting(Lane::Propose).is_none());
    let declined: Vec<u64> = node.declined().iter().map(|(p, _)| p.conn.0).collect();
    assert_eq!(declined, [1, 2, 3, 4]);
    node.advance(RECONNECT_DELAY, None);
    assert_eq!(
        batch(&node.take(Lane::Propose)),
        [["leave", "5", "e", "e", "left", ""]]
    );
}

/// The read lane's connection broke (Redis restarted): the other lanes dial anew before they
/// are needed. The idle proposal lane checks a new connection at once with a PING, and the
/// operator's log says when the link was lost and when it came back.
#[test]
fn a_broken_read_has_the_other_lanes_dial_anew_and_the_idle_proposal_lane_pings() {
    let mut redis = Redis::new();
    let mut node = Node::entered(&mut redis, 100_000);
    let read = node.take(Lane::Read);
    node.answer(&read, Reply::Error("connection reset by peer".into()));
    let ping = node.take(Lane::Propose);
    assert_eq!(ping.command, Command::Plain(vec!["PING".into()]));
    assert!(ping.fresh, "{ping:?}");
    node.advance(Duration::from_millis(1500), Some(&mut redis));
    node.answer(&ping, bulk("PONG"));
    let notes: Vec<&str> = node.notes.iter().map(|(_, t)| t.as_str()).collect();
    assert_eq!(
        notes,
        [
            "Redis link lost: connection reset by peer",
            "Redis link back after 1.5 s"
        ]
    );
    // Not twice: the next call on the lane goes on the connection the PING made.
    node.propose(join(1, "alice"));
    let call = node.take(Lane::Propose);
    assert!(!call.fresh);
    // The lease lane's next heartbeat dials anew too.
    node.advance(LEASE / 3, Some(&mut redis));
    let beat = node.take(Lane::Lease);
    assert_eq!(script(&beat), Some(Script::Heartbeat));
    assert!(beat.fresh);
}

/// An idle proposal lane checks its connection now and then; a proposal that comes meanwhile
/// waits for the PING's answer rather than dropping its connection.
#[test]
fn an_idle_proposal_lane_pings_and_a_proposal_waits_for_the_answer() {
    let mut redis = Redis::new();
    let mut node = Node::new(100_000);
    node.log = RedisLog::new(
        Settings {
            ping_idle: Duration::from_secs(1),
            ..settings(100_000)
        },
        7,
        node.now,
    );
    redis.now_ms = T0;
    node.drain();
    while node.entered.is_none() {
        node.run_next(&mut redis, Lane::Read);
    }
    assert!(node.waiting(Lane::Propose).is_none());
    node.advance(Duration::from_secs(1), Some(&mut redis));
    let ping = node.take(Lane::Propose);
    assert_eq!(ping.command, Command::Plain(vec!["PING".into()]));
    node.propose(join(1, "alice"));
    assert!(node.waiting(Lane::Propose).is_none(), "{:?}", node.calls);
    node.answer(&ping, bulk("PONG"));
    let call = node.take(Lane::Propose);
    assert_eq!(batch(&call), [["join", "1", "alice", "alice", "", ""]]);
}

/// A batch whose answer was lost on the way (its connection broke after Redis ran it, or the
/// timer fired first) is asked again on a new connection, under the same token: Redis answers
/// as it did, the chat is in the log once, and nobody is told it was not sent.
#[test]
fn a_batch_whose_answer_was_lost_is_asked_again_and_runs_once() {
    let mut redis = Redis::new();
    let mut node = Node::entered(&mut redis, 100_000);
    node.propose(join(1, "alice"));
    node.run_proposals(&mut redis);
    node.propose(chat(1, "alice", "hi"));
    let call = node.take(Lane::Propose);
    assert_eq!(redis.run(&call), answers(&["OK"]));
    node.answer(&call, Reply::Error("timed out".into()));
    let again = node.take(Lane::Propose);
    assert!(again.fresh);
    assert_ne!(again.id, call.id);
    // Later than the deadline: the token still finds the answers.
    redis.now_ms += 5_000;
    node.answer(&again, redis.run(&again));
    assert_eq!(node.declined(), []);
    assert_eq!(redis.log().len(), 2, "{:?}", redis.log());
    // The original, held up on the way, runs no second time either.
    assert_eq!(redis.run(&call), answers(&["OK"]));
    assert_eq!(redis.log().len(), 2);
}

/// A batch that failed twice (its one retry too) is declined as unavailable, once.
#[test]
fn a_batch_is_tried_again_once_only() {
    let mut redis = Redis::new();
    let mut node = Node::entered(&mut redis, 100_000);
    node.propose(join(1, "alice"));
    let call = node.take(Lane::Propose);
    node.answer(&call, Reply::Error("broken pipe".into()));
    let again = node.take(Lane::Propose);
    node.answer(&again, Reply::Error("broken pipe".into()));
    assert_eq!(node.declined(), [(join(1, "alice"), Declined::Unavailable)]);
    assert!(node.waiting(Lane::Propose).is_none());
}
