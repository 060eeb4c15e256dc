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
    Nick(u64, usize),
    Away(u64, bool),
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
        2 => (id.clone(), 0..NAMES.len()).prop_map(|(i, n)| Op::Nick(i, n)),
        1 => (id, any::<bool>()).prop_map(|(i, away)| Op::Away(i, away)),
    ]
}

/// What the model knows of one open connection.
#[derive(Debug)]
struct ModelConn {
    opened_at: Instant,
    last_heard: Instant,
    /// Folded name, once joined.
    key: Option<String>,
    /// Why it is away, if it is.
    away: Option<String>,
}

#[derive(Debug, Default)]
struct Model {
    conns: BTreeMap<u64, ModelConn>,
    seq: u64,
    /// Chat messages each connection must receive, in order: (seq, from, text).
    expected: HashMap<u64, Vec<(u64, String, String)>>,
}

/// What a rename is predicted to give.
#[derive(Debug, PartialEq)]
enum Rename {
    /// Connection, old name, new name.
    Done(u64, String, String),
    Refused(u64, ErrorKind),
}

impl Model {
    fn keys(&self) -> BTreeSet<&str> {
        self.conns
            .values()
            .filter_map(|c| c.key.as_deref())
            .collect()
    }

    /// Predicts a rename of member `i` to `name`, and applies it to the model.
    fn rename(&mut self, room: &Room, i: u64, name: &str, max_chars: u32) -> Option<Rename> {
        let was = room.name_of(ConnId(i))?.to_owned();
        if let Err(rule) = check_name(name, max_chars) {
            return Some(Rename::Refused(i, ErrorKind::NameInvalid(rule)));
        }
        let key = fold_name(name);
        let taken = self
            .conns
            .iter()
            .any(|(&j, c)| j != i && c.key.as_deref() == Some(key.as_str()));
        if taken {
            return Some(Rename::Refused(i, ErrorKind::NameTaken));
        }
        let now = display_name(name);
        if now == was {
            return None;
        }
        self.conns.get_mut(&i)?.key = Some(key);
        Some(Rename::Done(i, was, now))
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
    let mut room = Room::new(config.clone(), 1).unwrap();
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
        // What the model predicts a rename in this step gives.
        let mut expect_rename = None;
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
                        away: None,
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
                let kind = ChatKind::Plain;
                Input::Received(ConnId(i), ClientMsg::Chat { text, kind })
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
                    Op::Leave(_) => (Input::Received(ConnId(i), leave()), CloseReason::Left),
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
            Op::Nick(i, n) => {
                let name = NAMES[n];
                if let Some(c) = model.conns.get_mut(&i) {
                    match &c.key {
                        None => {
                            expect_closed.insert(i, CloseReason::ProtocolError);
                        }
                        Some(_) => c.last_heard = now,
                    }
                }
                expect_rename = model.rename(&room, i, name, config.max_name_chars);
                Input::Received(ConnId(i), ClientMsg::Nick { name: name.into() })
            }
            Op::Away(i, away) => {
                let message = away.then(|| format!("away {now:?}"));
                if let Some(c) = model.conns.get_mut(&i) {
                    match &c.key {
                        None => {
                            expect_closed.insert(i, CloseReason::ProtocolError);
                        }
                        Some(_) => {
                            c.last_heard = now;
                            c.away = message.clone();
                        }
                    }
                }
                Input::Received(ConnId(i), ClientMsg::Away { message })
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
                    if let (ServerMsg::Error(error), Op::Nick(..)) = (msg, &op) {
                        prop_assert_eq!(expect_rename.take(), Some(Rename::Refused(to.0, error)));
                    }
                }
                Output::Broadcast { except, msg } => {
                    if let ServerMsg::Renamed { from, to, .. } = &msg {
                        prop_assert_eq!(except, None, "the renamer is told too");
                        let (id, was, now) = match expect_rename.take() {
                            Some(Rename::Done(id, was, now)) => (id, was, now),
                            other => return Err(TestCaseError::fail(format!("{other:?}"))),
                        };
                        prop_assert_eq!((from, to), (&was, &now));
                        prop_assert_eq!(room.name_of(ConnId(id)), Some(now.as_str()));
                    }
                    if let ServerMsg::Away { name, .. } = &msg {
                        let sender = except.and_then(|id| room.name_of(id));
                        prop_assert_eq!(sender, Some(name.as_str()), "not told of its own away");
                    }
                    for to in room.recipients(except) {
                        prop_assert!(model.conns.contains_key(&to.0));
                        prop_assert!(!expect_closed.contains_key(&to.0));
                        if let ServerMsg::Chat {
                            seq, from, text, ..
                        } = &msg
                        {
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
                Output::Unsubscribe { .. } | Output::Notice(_) | Output::Applied(_) => {}
                Output::Propose(p) => prop_assert!(false, "a room alone proposed {p:?}"),
                Output::Password { .. } => prop_assert!(false, "no account, no password work"),
            }
        }
        prop_assert_eq!(&closed, &expect_closed);
        let renamer_closed =
            matches!(expect_rename, Some(Rename::Done(id, ..)) if closed.contains_key(&id));
        prop_assert!(
            expect_rename.is_none() || renamer_closed,
            "predicted {:?}",
            expect_rename
        );
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
        let away: BTreeMap<String, Option<String>> = room
            .member_list()
            .into_iter()
            .map(|m| (fold_name(&m.name), m.away.map(|a| a.to_string())))
            .collect();
        let model_away: BTreeMap<String, Option<String>> = model
            .conns
            .values()
            .filter_map(|c| Some((c.key.clone()?, c.away.clone())))
            .collect();
        prop_assert_eq!(away, model_away);
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
