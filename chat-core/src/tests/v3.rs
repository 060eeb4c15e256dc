//! Protocol v3's entries, with a fake clock: renames, away, parting words, kinds of chat, the
//! times of entries, the epoch rule of resuming, idents, and v2 hellos.

use std::sync::Arc;

use chat_proto::Ident;

use super::*;

fn nick(name: &str) -> ClientMsg {
    ClientMsg::Nick { name: name.into() }
}

fn away(message: Option<&str>) -> ClientMsg {
    ClientMsg::Away {
        message: message.map(str::to_owned),
    }
}

fn renamed(h: &Harness, from: &str, to: &str) -> Vec<Output> {
    vec![broadcast(
        None,
        ServerMsg::Renamed {
            from: from.into(),
            to: to.into(),
            time: h.time(),
        },
    )]
}

fn error(to: u64, kind: ErrorKind) -> Vec<Output> {
    vec![send(to, ServerMsg::Error(kind))]
}

#[test]
fn a_rename_is_told_to_everyone_the_renamer_too_and_later_chats_carry_the_new_name() {
    let mut h = Harness::with(Config {
        history: 10,
        ..config()
    });
    h.join(1, "alice");
    h.join(2, "bob");
    h.recv(1, chat("before"));
    h.now += Duration::from_millis(1_500);
    assert_eq!(h.recv(1, nick("alicia")), renamed(&h, "alice", "alicia"));
    assert_eq!(h.room.name_of(ConnId(1)), Some("alicia"));
    assert_eq!(
        h.notices.last(),
        Some(&Notice::Renamed {
            from: "alice".into(),
            to: "alicia".into()
        })
    );
    assert_eq!(
        h.recv(1, chat("after")),
        vec![broadcast(Some(1), h.said(2, "alicia", "after"))]
    );
    // The old name is free; the history keeps who said what under the name it was said with.
    h.open(3);
    let out = h.recv(3, hello("ALICE"));
    assert_eq!(welcome(&out).0, "ALICE");
    let Output::Send {
        msg: ServerMsg::History { chats, .. },
        ..
    } = &out[1]
    else {
        panic!("{out:?}");
    };
    let said: Vec<(&str, &str)> = chats.iter().map(|c| (&*c.from, &*c.text)).collect();
    assert_eq!(said, [("alice", "before"), ("alicia", "after")]);
    // A change of case or form of one's own name is a rename too; the same name changes nothing.
    assert_eq!(h.recv(2, nick("Bob")), renamed(&h, "bob", "Bob"));
    assert_eq!(h.recv(2, nick("Bob")), vec![]);
    assert_eq!(
        h.room.member_names(),
        ["ALICE", "alicia", "Bob"].map(Arc::<str>::from)
    );
}

#[test]
fn a_rename_to_a_name_held_or_looking_the_same_or_breaking_a_rule_is_refused_to_the_renamer() {
    let mut h = Harness::new();
    h.join(1, "alice");
    h.join(2, "bob");
    for taken in [
        "bob",
        "BOB",
        "ｂｏｂ",
        "b\u{3bf}b".replace('\u{3bf}', "o").as_str(),
    ] {
        assert_eq!(
            h.recv(1, nick(taken)),
            error(1, ErrorKind::NameTaken),
            "{taken}"
        );
    }
    let cases = [
        ("", NameRule::Empty),
        ("a b", NameRule::Whitespace),
        (&"x".repeat(33), NameRule::TooLong { max_chars: 32 }),
        ("al\u{200b}ice", NameRule::Invisible),
        ("\u{430}lice", NameRule::MixedScript),
    ];
    for (name, rule) in cases {
        let refused = error(1, ErrorKind::NameInvalid(rule));
        assert_eq!(h.recv(1, nick(name)), refused, "{name:?}");
    }
    assert_eq!(h.room.name_of(ConnId(1)), Some("alice"));
}

#[test]
fn renames_are_paid_for_like_chats() {
    let mut h = rate_limited();
    assert!(chat_passed(&h.recv(1, chat("x"))));
    assert_eq!(h.recv(1, nick("a1")).len(), 1);
    assert_eq!(h.recv(1, nick("a2")).len(), 1);
    assert_eq!(h.recv(1, nick("a3")), error(1, ErrorKind::RateLimited));
    assert_eq!(h.room.name_of(ConnId(1)), Some("a2"));
}

#[test]
fn past_announce_max_only_the_renamer_is_told() {
    let mut h = Harness::with(Config {
        announce_max: 1,
        ..config()
    });
    h.join(1, "a");
    h.join(2, "b");
    assert_eq!(
        h.recv(1, nick("c")),
        vec![send(
            1,
            ServerMsg::Renamed {
                from: "a".into(),
                to: "c".into(),
                time: h.time()
            }
        )]
    );
}

#[test]
fn away_and_back_are_told_to_the_others_and_shown_in_the_member_list() {
    let mut h = Harness::new();
    h.join(1, "alice");
    h.join(2, "bob");
    h.now += Duration::from_secs(3);
    let told = |h: &Harness, message: Option<&str>| {
        vec![broadcast(
            Some(1),
            ServerMsg::Away {
                name: "alice".into(),
                message: message.map(str::to_owned),
                time: h.time(),
            },
        )]
    };
    assert_eq!(h.recv(1, away(Some("lunch"))), told(&h, Some("lunch")));
    let lunch = Member {
        away: Some("lunch".into()),
        ..member("alice")
    };
    assert_eq!(
        h.recv(2, ClientMsg::Who),
        vec![send(
            2,
            ServerMsg::Members {
                members: vec![lunch.clone(), member("bob")]
            }
        )]
    );
    h.open(3);
    let out = h.recv(3, hello("carol"));
    assert_eq!(welcome(&out).2, [lunch, member("bob"), member("carol")]);
    assert_eq!(h.recv(1, away(None)), told(&h, None));
    assert_eq!(h.room.member_list()[0], member("alice"));
}

#[test]
fn an_away_message_breaking_the_text_rules_is_refused() {
    let mut h = Harness::new();
    h.join(1, "alice");
    let long = "x".repeat(201);
    let cases = [
        (long.as_str(), ErrorKind::TextTooLong { max_bytes: 200 }),
        (" ", ErrorKind::TextEmpty),
        ("a\nb", ErrorKind::TextInvalid),
    ];
    for (text, kind) in cases {
        assert_eq!(h.recv(1, away(Some(text))), error(1, kind), "{text:?}");
    }
    assert_eq!(h.room.member_list()[0], member("alice"));
    let longest = "x".repeat(200);
    assert_eq!(h.recv(1, away(Some(&longest))).len(), 1);
    assert_eq!(
        h.room.member_list()[0].away.as_deref(),
        Some(longest.as_str())
    );
}

#[test]
fn parting_words_go_with_the_leave_and_words_breaking_the_rules_are_dropped() {
    let mut h = Harness::new();
    h.join(1, "alice");
    h.join(2, "bob");
    h.join(3, "carol");
    let left = |h: &Harness, name: &str, message: Option<&str>| ServerMsg::Left {
        name: name.into(),
        reason: CloseReason::Left,
        message: message.map(str::to_owned),
        time: h.time(),
    };
    let leave_with = |message: &str| ClientMsg::Leave {
        message: Some(message.into()),
    };
    assert_eq!(
        h.recv(1, leave_with("gone for lunch")),
        vec![
            close(1, CloseReason::Left),
            broadcast(None, left(&h, "alice", Some("gone for lunch")))
        ]
    );
    // Still a leave: only the words are dropped.
    assert_eq!(
        h.recv(2, leave_with("\u{1b}[2J")),
        vec![
            close(2, CloseReason::Left),
            broadcast(None, left(&h, "bob", None))
        ]
    );
    let long = "x".repeat(1025);
    assert_eq!(
        h.recv(3, leave_with(&long)),
        vec![
            close(3, CloseReason::Left),
            broadcast(None, left(&h, "carol", None))
        ]
    );
}

#[test]
fn actions_and_notices_keep_their_kind_in_broadcast_and_history() {
    let mut h = Harness::new();
    h.join(1, "alice");
    let mut kinds = Vec::new();
    for (seq, kind) in [
        (1, ChatKind::Action),
        (2, ChatKind::Notice),
        (3, ChatKind::Plain),
    ] {
        let out = h.recv(1, chat_kind("waves", kind));
        let expected = ServerMsg::Chat {
            seq,
            time: h.time(),
            from: "alice".into(),
            text: "waves".into(),
            kind,
        };
        assert_eq!(out, vec![broadcast(Some(1), expected)]);
        kinds.push(kind);
    }
    h.open(2);
    let out = h.recv(2, hello("bob"));
    let Output::Send {
        msg: ServerMsg::History { chats, .. },
        ..
    } = &out[1]
    else {
        panic!("{out:?}");
    };
    assert_eq!(chats.iter().map(|c| c.kind).collect::<Vec<_>>(), kinds);
}

#[test]
fn entries_are_timed_from_the_anchor_and_never_go_back() {
    let mut h = Harness::new();
    h.join(1, "alice");
    h.open(2);
    h.now += Duration::from_millis(2_345);
    let out = h.recv(2, hello("bob"));
    let joined = ServerMsg::Joined {
        name: "bob".into(),
        time: T0 + 2_345,
        ident: None,
    };
    assert_eq!(out.last(), Some(&broadcast(Some(2), joined)));
    // The driver re-anchors (the wall clock was set back a minute): the times follow it, but
    // the log never stamps an entry earlier than the one before.
    h.room.set_clock(h.now, T0 - 60_000);
    h.now += Duration::from_millis(10);
    assert_eq!(h.time(), T0 - 59_990);
    let out = h.recv(1, chat("hi"));
    let Output::Broadcast {
        msg: ServerMsg::Chat { time, .. },
        ..
    } = &out[0]
    else {
        panic!("{out:?}");
    };
    assert_eq!(*time, T0 + 2_345);
    // Before the anchor, and with no anchor at all.
    assert_eq!(
        h.room.unix_ms(h.now - Duration::from_millis(5)),
        T0 - 59_995
    );
    let room = Room::new(config(), EPOCH).unwrap();
    assert_eq!(room.unix_ms(h.now), 0);
}

#[test]
fn a_resume_from_another_epoch_is_shown_the_whole_history_and_one_from_this_epoch_what_it_missed() {
    let history = |h: &Harness, seqs: std::ops::RangeInclusive<u64>, missed| ServerMsg::History {
        chats: seqs
            .map(|seq| chat_proto::HistoryChat {
                seq,
                time: h.time(),
                from: "alice".into(),
                text: format!("m{seq}").into(),
                kind: ChatKind::Plain,
            })
            .collect(),
        missed,
    };
    let mut h = Harness::with(Config {
        history: 3,
        ..config()
    });
    h.join(1, "alice");
    for i in 1..=4 {
        h.recv(1, chat(&format!("m{i}")));
    }
    let cases = [
        (EPOCH, history(&h, 4..=4, 0)),
        (0, history(&h, 4..=4, 0)),
        (EPOCH + 1, history(&h, 2..=4, 0)),
    ];
    for (id, (epoch, shown)) in (2..).zip(cases) {
        h.open(id);
        h.recv(id, ClientMsg::Resume { after: 3, epoch });
        let out = h.recv(id, hello(&format!("m{id}")));
        assert!(
            matches!(
                &out[0],
                Output::Send {
                    msg: ServerMsg::Welcome { epoch: EPOCH, .. },
                    ..
                }
            ),
            "{out:?}"
        );
        assert_eq!(out[1], send(id, shown), "epoch {epoch}");
        h.recv(id, leave());
    }
}

#[test]
fn a_hello_s_ident_is_kept_when_it_keeps_the_rules_and_dropped_when_not() {
    let mut h = Harness::new();
    h.join(1, "alice");
    let with_ident = |name: &str, user: &str, realname: &str| ClientMsg::Hello {
        magic: MAGIC,
        version: PROTOCOL_VERSION,
        name: name.into(),
        password: None,
        ident: Some(Ident {
            user: user.into(),
            realname: realname.into(),
        }),
    };
    let ident = Arc::new(Ident {
        user: "~bob".into(),
        realname: "Bob Bobson".into(),
    });
    h.open(2);
    let out = h.recv(2, with_ident("bob", "~bob", "Bob Bobson"));
    let joined = ServerMsg::Joined {
        name: "bob".into(),
        time: h.time(),
        ident: Some(ident.clone()),
    };
    assert_eq!(out.last(), Some(&broadcast(Some(2), joined)));
    let bob = Member {
        ident: Some(ident),
        ..member("bob")
    };
    assert_eq!(h.room.member_list()[1], bob);
    let long = "r".repeat(129);
    for (id, (user, realname)) in (3..).zip([
        ("a b", "x"),
        ("", "x"),
        ("u", long.as_str()),
        ("u", "\u{7}"),
    ]) {
        h.open(id);
        let out = h.recv(id, with_ident(&format!("m{id}"), user, realname));
        assert_eq!(
            welcome(&out).2.last().unwrap().ident,
            None,
            "{user:?} {realname:?}"
        );
        h.recv(id, leave());
    }
    // An empty real name is kept.
    h.open(9);
    let out = h.recv(9, with_ident("m9", "u", ""));
    assert!(welcome(&out).2.last().unwrap().ident.is_some());
}

#[test]
fn a_v2_hello_joins_and_a_v1_hello_is_refused() {
    let mut h = Harness::new();
    h.open(1);
    let refused = ServerMsg::Refused(Refusal::UnsupportedVersion {
        supported: PROTOCOL_VERSION,
    });
    assert_eq!(h.recv(1, hello_v(1, "old")), vec![send(1, refused)]);
    let out = h.recv(1, hello_v(chat_proto::v2::VERSION, "old"));
    assert_eq!(welcome(&out).0, "old");
}

/// PART (an adapter's [`Input::Part`]): the member leaves with its words and stays connected,
/// back in its handshake; a hello joins it again, under the same name; the handshake deadline
/// then applies from the part.
#[test]
fn a_part_leaves_the_room_keeps_the_connection_and_a_hello_joins_again() {
    let mut h = Harness::new();
    h.join(1, "alice");
    h.join(2, "bob");
    let out = h.input(Input::Part(ConnId(1), Some("lunch".into())));
    assert_eq!(
        out,
        vec![
            Output::Unsubscribe { conn: ConnId(1) },
            broadcast(
                None,
                ServerMsg::Left {
                    name: "alice".into(),
                    reason: CloseReason::Left,
                    message: Some("lunch".into()),
                    time: h.time(),
                },
            ),
        ]
    );
    assert!(h.room.is_open(ConnId(1)));
    assert_eq!(h.room.name_of(ConnId(1)), None);
    assert_eq!(h.room.member_count(), 1);
    // Not a member: a second part, or words no longer matter; a chat breaks the protocol
    // only when sent, so the adapter answers it itself.
    assert!(h.input(Input::Part(ConnId(1), None)).is_empty());
    let out = h.recv(1, hello("alice"));
    assert_eq!(
        out,
        vec![
            send(1, h.welcome("alice", &["alice", "bob"])),
            Output::Subscribe { conn: ConnId(1) },
            broadcast(Some(1), h.joined("alice")),
        ]
    );
    // Parted again and silent: closed at the handshake deadline, counted from the part.
    h.input(Input::Part(ConnId(1), Some("\u{7}bad".into())));
    assert_eq!(h.advance(Duration::from_secs(4)), vec![]);
    assert_eq!(
        h.advance(Duration::from_secs(1)),
        vec![close(1, CloseReason::HandshakeTimeout)]
    );
}

/// While a parted connection is still open, its old name is free for someone else.
#[test]
fn a_parted_members_name_is_free_at_once() {
    let mut h = Harness::new();
    h.join(1, "alice");
    h.input(Input::Part(ConnId(1), None));
    h.open(2);
    let out = h.recv(2, hello("alice"));
    assert_eq!(welcome(&out).0, "alice");
    assert_eq!(
        h.recv(1, hello("alice")),
        vec![send(1, ServerMsg::Refused(Refusal::NameTaken))]
    );
}

/// Echo (IRC's echo-message): a member that asked gets its own chats back with everyone's,
/// once the log has them; others still do not.
#[test]
fn a_member_with_echo_gets_its_own_chats_back() {
    let mut h = Harness::new();
    h.join(1, "alice");
    h.join(2, "bob");
    h.room.set_echo(ConnId(1), true);
    assert_eq!(
        h.recv(1, chat("hi")),
        vec![broadcast(None, h.said(1, "alice", "hi"))]
    );
    assert_eq!(
        h.recv(2, chat("yo")),
        vec![broadcast(Some(2), h.said(2, "bob", "yo"))]
    );
}

/// The kept history by time (IRC's CHATHISTORY): latest, before, after, around, between,
/// each oldest first and at most `limit`.
#[test]
fn the_kept_history_is_queried_by_time() {
    let mut h = Harness::with(Config {
        history: 10,
        ..config()
    });
    h.join(1, "alice");
    for i in 1..=6 {
        h.now += Duration::from_secs(1);
        h.recv(1, chat(&i.to_string()));
    }
    // Chat i was said at T0 + i s.
    let at = |i: u64| T0 + i * 1000;
    let texts = |q: HistoryQuery| -> Vec<String> {
        h.room
            .history(q)
            .iter()
            .map(|c| c.text.to_string())
            .collect()
    };
    let latest = HistoryQuery::Latest {
        after: None,
        limit: 2,
    };
    assert_eq!(texts(latest), ["5", "6"]);
    let latest_after = HistoryQuery::Latest {
        after: Some(at(4)),
        limit: 5,
    };
    assert_eq!(texts(latest_after), ["5", "6"]);
    let before = HistoryQuery::Before {
        time: at(4),
        limit: 2,
    };
    assert_eq!(texts(before), ["2", "3"]);
    let after = HistoryQuery::After {
        time: at(4),
        limit: 1,
    };
    assert_eq!(texts(after), ["5"]);
    let around = HistoryQuery::Around {
        time: at(4),
        limit: 4,
    };
    assert_eq!(texts(around), ["2", "3", "4", "5"]);
    let between = HistoryQuery::Between {
        from: at(1),
        to: at(5),
        limit: 2,
    };
    assert_eq!(texts(between), ["2", "3"]);
    let backwards = HistoryQuery::Between {
        from: at(5),
        to: at(1),
        limit: 2,
    };
    assert_eq!(texts(backwards), ["3", "4"]);
    let none = HistoryQuery::After {
        time: at(9),
        limit: 5,
    };
    assert!(texts(none).is_empty());
}
