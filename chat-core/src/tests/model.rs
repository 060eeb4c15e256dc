//! Random sequences of inputs against a small reference model of the room.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use proptest::prelude::*;

use super::*;

const NAMES: &[&str] = &[
    "alice",
    "Alice",
    "ＡＬＩＣＥ",
    "bob",
    "BOB",
    "bob\u{200b}",
    "",
    "café",
    "cafe\u{301}",
    "CAFÉ",
    "x y",
    "carol",
    "dave",
    "erin",
];

#[derive(Debug, Clone)]
enum Op {
    Open(u64),
    Hello(u64, usize),
    Chat(u64, bool),
    Who(u64),
    Pong(u64),
    Leave(u64),
    Drop(u64),
    Stall(u64),
    Malformed(u64),
    Advance(u64),
}

fn op() -> impl Strategy<Value = Op> {
    let id = 0..8u64;
    prop_oneof![
        2 => id.clone().prop_map(Op::Open),
        3 => (id.clone(), 0..NAMES.len()).prop_map(|(i, n)| Op::Hello(i, n)),
        6 => (id.clone(), any::<bool>()).prop_map(|(i, ok)| Op::Chat(i, ok)),
        1 => id.clone().prop_map(Op::Who),
        1 => id.clone().prop_map(Op::Pong),
        1 => id.clone().prop_map(Op::Leave),
        1 => id.clone().prop_map(Op::Drop),
        1 => id.clone().prop_map(Op::Stall),
        1 => id.clone().prop_map(Op::Malformed),
        2 => (0..25_000u64).prop_map(Op::Advance),
    ]
}

/// What the model knows of one open connection.
#[derive(Debug)]
struct ModelConn {
    opened_at: Instant,
    last_heard: Instant,
    /// Folded name, once joined.
    key: Option<String>,
}

#[derive(Debug, Default)]
struct Model {
    conns: BTreeMap<u64, ModelConn>,
    seq: u64,
    /// Chat messages each connection must receive, in order: (seq, from, text).
    expected: HashMap<u64, Vec<(u64, String, String)>>,
}

impl Model {
    fn keys(&self) -> BTreeSet<&str> {
        self.conns
            .values()
            .filter_map(|c| c.key.as_deref())
            .collect()
    }
}

fn prop_config() -> Config {
    Config {
        max_clients: 5,
        max_handshakes: 100,
        rate_per_sec: 1_000_000,
        burst: 1_000_000,
        handshake_timeout: Duration::from_secs(5),
        ping_interval: Duration::from_secs(10),
        idle_timeout: Duration::from_secs(20),
        ..Config::default()
    }
}

fn run(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let config = prop_config();
    let mut room = Room::new(config.clone()).unwrap();
    let mut now = Instant::now();
    let mut model = Model::default();
    let mut received: HashMap<u64, Vec<(u64, String, String)>> = HashMap::new();
    let mut text_counter = 0u64;
    // Connections subscribed to broadcasts, from Subscribe and Close outputs: must equal the members.
    let mut subscribed: BTreeSet<u64> = BTreeSet::new();

    for op in ops {
        let open_before: BTreeSet<u64> = model.conns.keys().copied().collect();
        // Closes the model predicts for this step, with their reasons.
        let mut expect_closed: BTreeMap<u64, CloseReason> = BTreeMap::new();
        let input = match op {
            Op::Open(i) => {
                if model.conns.contains_key(&i) {
                    continue;
                }
                model.conns.insert(
                    i,
                    ModelConn {
                        opened_at: now,
                        last_heard: now,
                        key: None,
                    },
                );
                Input::Opened(ConnId(i))
            }
            Op::Hello(i, n) => {
                let name = NAMES[n];
                if let Some(c) = model.conns.get(&i) {
                    let valid = check_name(name, config.max_name_chars).is_ok();
                    let key = fold_name(name);
                    let joined = model.conns.values().filter(|c| c.key.is_some()).count();
                    if c.key.is_some() {
                        model.conns.get_mut(&i).unwrap().last_heard = now;
                    } else if valid && !model.keys().contains(key.as_str()) {
                        if joined >= config.max_clients as usize {
                            expect_closed.insert(i, CloseReason::ServerFull);
                        } else {
                            let c = model.conns.get_mut(&i).unwrap();
                            c.key = Some(key);
                            c.last_heard = now;
                        }
                    }
                }
                Input::Received(ConnId(i), hello(name))
            }
            Op::Chat(i, ok) => {
                text_counter += 1;
                let text = if ok {
                    format!("m{text_counter}")
                } else {
                    "\u{7}".to_string()
                };
                if let Some(c) = model.conns.get_mut(&i) {
                    match &c.key {
                        None => {
                            expect_closed.insert(i, CloseReason::ProtocolError);
                        }
                        Some(key) => {
                            c.last_heard = now;
                            if ok {
                                model.seq += 1;
                                let from = room.name_of(ConnId(i)).unwrap().to_string();
                                prop_assert_eq!(&fold_name(&from), key);
                                for (&j, other) in &model.conns {
                                    if j != i && other.key.is_some() {
                                        model.expected.entry(j).or_default().push((
                                            model.seq,
                                            from.clone(),
                                            text.clone(),
                                        ));
                                    }
                                }
                            }
                        }
                    }
                }
                Input::Received(ConnId(i), ClientMsg::Chat { text })
            }
            Op::Who(i) | Op::Pong(i) => {
                if let Some(c) = model.conns.get_mut(&i) {
                    if c.key.is_none() {
                        expect_closed.insert(i, CloseReason::ProtocolError);
                    } else {
                        c.last_heard = now;
                    }
                }
                let msg = if matches!(op, Op::Who(_)) {
                    ClientMsg::Who
                } else {
                    ClientMsg::Pong { nonce: 0 }
                };
                Input::Received(ConnId(i), msg)
            }
            Op::Leave(i) | Op::Drop(i) | Op::Stall(i) | Op::Malformed(i) => {
                let (input, reason) = match op {
                    Op::Leave(_) => (
                        Input::Received(ConnId(i), ClientMsg::Leave),
                        CloseReason::Left,
                    ),
                    Op::Drop(_) => (Input::Closed(ConnId(i)), CloseReason::Disconnected),
                    Op::Stall(_) => (Input::Stalled(ConnId(i)), CloseReason::TooSlow),
                    _ => (Input::Malformed(ConnId(i)), CloseReason::ProtocolError),
                };
                if model.conns.contains_key(&i) {
                    expect_closed.insert(i, reason);
                }
                input
            }
            Op::Advance(ms) => {
                now += Duration::from_millis(ms);
                for (&i, c) in &model.conns {
                    match c.key {
                        None if c.opened_at + config.handshake_timeout <= now => {
                            expect_closed.insert(i, CloseReason::HandshakeTimeout);
                        }
                        Some(_) if c.last_heard + config.idle_timeout <= now => {
                            expect_closed.insert(i, CloseReason::IdleTimeout);
                        }
                        _ => {}
                    }
                }
                Input::Tick
            }
        };
        room.handle_input(now, input).unwrap();

        let mut closed: BTreeMap<u64, CloseReason> = BTreeMap::new();
        while let Some(output) = room.poll_output() {
            match output {
                Output::Send { to, msg } => {
                    prop_assert!(open_before.contains(&to.0) || model.conns.contains_key(&to.0));
                    prop_assert!(!closed.contains_key(&to.0), "send after close to {to:?}");
                    let is_chat = matches!(msg, ServerMsg::Chat { .. });
                    prop_assert!(!is_chat, "chat sent to one connection");
                }
                Output::Broadcast { except, msg } => {
                    for to in room.recipients(except) {
                        prop_assert!(model.conns.contains_key(&to.0));
                        prop_assert!(!expect_closed.contains_key(&to.0));
                        if let ServerMsg::Chat { seq, from, text } = &msg {
                            prop_assert_ne!(Some(to), except, "echo to sender");
                            received.entry(to.0).or_default().push((
                                *seq,
                                from.clone(),
                                text.clone(),
                            ));
                        }
                    }
                }
                Output::Subscribe { conn } => {
                    // Only a connection that has just joined is subscribed, and only once.
                    prop_assert!(room.name_of(conn).is_some());
                    prop_assert!(subscribed.insert(conn.0), "subscribed twice");
                }
                Output::Close { conn, reason } => {
                    subscribed.remove(&conn.0);
                    prop_assert!(
                        open_before.contains(&conn.0) || model.conns.contains_key(&conn.0)
                    );
                    prop_assert!(closed.insert(conn.0, reason).is_none(), "closed twice");
                }
                Output::Notice(_) => {}
                Output::Propose(p) => prop_assert!(false, "a room alone proposed {p:?}"),
            }
        }
        prop_assert_eq!(&closed, &expect_closed);
        for id in closed.keys() {
            model.conns.remove(id);
        }

        // Invariants after every step.
        let room_keys: BTreeSet<String> = room
            .members()
            .map(|id| fold_name(room.name_of(id).unwrap()))
            .collect();
        let model_keys: BTreeSet<String> = model.keys().into_iter().map(str::to_owned).collect();
        prop_assert_eq!(
            room_keys.len(),
            room.member_count(),
            "names not unique after folding"
        );
        prop_assert_eq!(room_keys, model_keys);
        prop_assert_eq!(room.conn_count(), model.conns.len());
        let members: BTreeSet<u64> = room.members().map(|c| c.0).collect();
        prop_assert_eq!(&subscribed, &members);
        prop_assert_eq!(room.seq(), model.seq);
        for id in model.conns.keys() {
            prop_assert_eq!(
                received.get(id),
                model.expected.get(id),
                "deliveries to {}",
                id
            );
        }
        if let Some(at) = room.poll_timeout() {
            prop_assert!(at > now, "deadline in the past after a tick would spin");
        }
        if !model.conns.is_empty() {
            prop_assert!(
                room.poll_timeout().is_some(),
                "open connections without a deadline"
            );
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1_000))]

    #[test]
    fn room_matches_the_reference_model(ops in proptest::collection::vec(op(), 1..120)) {
        run(ops)?;
    }
}
