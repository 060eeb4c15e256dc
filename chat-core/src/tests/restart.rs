//! A room alone across a restart: the entries it reports to a store ([`Room::report_applied`])
//! and a room restored from what the store kept ([`Room::restore`]).

use chat_proto::HistoryChat;

use super::*;

/// Everything the room reported applying, in order; the rest of the outputs are dropped.
fn applied(h: &mut Harness, input: Input) -> Vec<Entry> {
    h.input(input)
        .into_iter()
        .filter_map(|o| match o {
            Output::Applied(entry) => Some(entry),
            _ => None,
        })
        .collect()
}

#[test]
fn a_room_reports_nothing_applied_unless_asked() {
    let mut h = Harness::new();
    h.join(1, "alice");
    let out = h.recv(1, chat("hi"));
    assert!(chat_passed(&out), "{out:?}");
}

#[test]
fn a_room_asked_to_report_hands_out_every_entry_in_log_order_before_its_effects() {
    let mut h = Harness::new();
    h.room.report_applied(true);
    h.open(1);
    let out = h.recv(1, hello("alice"));
    assert!(
        matches!(
            &out[0],
            Output::Applied(Entry {
                pos: 1,
                event: Event::Joined { .. },
                ..
            })
        ),
        "{out:?}"
    );
    assert!(
        matches!(out[1], Output::Send { .. }),
        "the welcome follows: {out:?}"
    );
    let chats = applied(&mut h, Input::Received(ConnId(1), chat("hi")));
    let [entry] = &chats[..] else {
        panic!("one entry: {chats:?}")
    };
    assert_eq!((entry.pos, entry.time, &*entry.name), (2, T0, "alice"));
    assert_eq!(
        entry.event,
        Event::Chat {
            seq: 1,
            text: "hi".into(),
            kind: ChatKind::Plain
        }
    );
    let left = applied(&mut h, Input::Closed(ConnId(1)));
    assert!(
        matches!(
            &left[..],
            [Entry {
                pos: 3,
                event: Event::Left { .. },
                ..
            }]
        ),
        "{left:?}"
    );
}

#[test]
fn a_restored_room_continues_the_epoch_positions_sequence_and_history_without_members() {
    let history: Vec<HistoryChat> = (4..=6)
        .map(|seq| HistoryChat {
            seq,
            time: T0 + 5_000 + seq,
            from: "alice".into(),
            text: format!("m{seq}").into(),
            kind: ChatKind::Plain,
        })
        .collect();
    let snapshot = Snapshot {
        epoch: 77,
        pos: 40,
        seq: 6,
        // A room alone restarting has no one in it, whatever the snapshot says.
        members: vec![Seat {
            node: NodeId(0),
            conn: ConnId(9),
            name: "ghost".into(),
            key: "ghost".into(),
            away: None,
            ident: None,
        }],
        history: history.clone(),
        ..Snapshot::default()
    };
    let mut room = Room::restore(
        Config {
            history: 2,
            ..config()
        },
        snapshot,
    )
    .unwrap();
    let now = Instant::now();
    // A wall clock that stepped back across the restart times nothing earlier than the log.
    room.set_clock(now, T0);
    room.report_applied(true);
    assert_eq!((room.epoch(), room.pos(), room.seq()), (77, 40, 6));
    assert_eq!(room.member_count(), 0);
    room.handle_input(now, Input::Opened(ConnId(1))).unwrap();
    room.handle_input(now, Input::Received(ConnId(1), hello("ghost")))
        .unwrap();
    let out: Vec<Output> = std::iter::from_fn(|| room.poll_output())
        .filter(|o| !matches!(o, Output::Notice(_)))
        .collect();
    assert!(
        matches!(&out[0], Output::Applied(Entry { pos: 41, .. })),
        "{out:?}"
    );
    let Some(Output::Send {
        msg: ServerMsg::Welcome { seq, epoch, .. },
        ..
    }) = out.get(1)
    else {
        panic!("a welcome: {out:?}")
    };
    assert_eq!((*seq, *epoch), (6, 77));
    let shown = ServerMsg::History {
        chats: history[1..].to_vec(),
        missed: 0,
    };
    assert_eq!(out[2], send(1, shown), "the last `history` chats kept");
    room.handle_input(now, Input::Received(ConnId(1), chat("back")))
        .unwrap();
    let out: Vec<Output> = std::iter::from_fn(|| room.poll_output()).collect();
    let Some(Output::Applied(entry)) = out.first() else {
        panic!("{out:?}")
    };
    assert_eq!((entry.pos, entry.time), (42, T0 + 5_006));
    assert!(
        matches!(entry.event, Event::Chat { seq: 7, .. }),
        "{entry:?}"
    );
}
