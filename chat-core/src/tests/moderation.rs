//! Moderation: operators' kicks, bans and mutes, through the log, with a fake clock.

use core::net::IpAddr;
use std::collections::VecDeque;

use chat_proto::{BanInfo, ModAction, MuteInfo};

use super::*;
use crate::moderation::{Target, parse_target};

fn mod_config() -> Config {
    Config {
        operators: vec!["alice".into()],
        ..config()
    }
}

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

fn kick(name: &str, reason: Option<&str>) -> ClientMsg {
    ClientMsg::Kick {
        name: name.into(),
        reason: reason.map(Into::into),
    }
}

fn ban(target: &str, duration_secs: Option<u64>) -> ClientMsg {
    ClientMsg::Ban {
        target: target.into(),
        duration_secs,
        reason: None,
    }
}

fn mute(name: &str, duration_secs: Option<u64>) -> ClientMsg {
    ClientMsg::Mute {
        name: name.into(),
        duration_secs,
    }
}

fn error(to: u64, kind: ErrorKind) -> Output {
    send(to, ServerMsg::Error(kind))
}

impl Harness {
    fn moderated(&self, action: ModAction) -> Output {
        broadcast(
            None,
            ServerMsg::Moderated {
                by: "alice".into(),
                action,
                time: self.time(),
            },
        )
    }

    fn open_from(&mut self, id: u64, addr: &str) -> Vec<Output> {
        self.input(Input::OpenedFrom(ConnId(id), ip(addr)))
    }

    fn join_from(&mut self, id: u64, addr: &str, name: &str) {
        assert!(self.open_from(id, addr).is_empty());
        welcome(&self.recv(id, hello(name)));
    }

    /// The member on `id` registers its name (the driver's hashing played by a stand-in):
    /// an operator's rights need the account proved.
    fn register(&mut self, id: u64) {
        let out = self.recv(id, register_msg());
        let [Output::Password { ticket, .. }] = out.as_slice() else {
            panic!("no password work: {out:?}");
        };
        let verdict = Verdict::Hashed("hash:pw".into());
        self.input(Input::Password {
            ticket: *ticket,
            verdict,
        });
        assert!(self.room.account_of(ConnId(id)).is_some());
    }
}

fn register_msg() -> ClientMsg {
    ClientMsg::Register {
        password: "pw".into(),
    }
}

/// alice (an operator) on 1, bob on 2.
fn room_with_bob() -> Harness {
    let mut h = Harness::with(mod_config());
    h.join(1, "alice");
    h.register(1);
    h.join(2, "bob");
    h
}

#[test]
fn an_operator_kicks_a_member_everyone_is_told_why_and_it_is_closed_as_kicked() {
    let mut h = room_with_bob();
    h.join(3, "carol");
    let out = h.recv(1, kick("BOB", Some("spam")));
    assert_eq!(
        out,
        vec![
            h.moderated(ModAction::Kicked {
                name: "bob".into(),
                reason: Some("spam".into()),
            }),
            close(2, CloseReason::Kicked),
            broadcast(None, h.left("bob", CloseReason::Kicked)),
        ]
    );
    assert!(h.notices.contains(&Notice::Moderated {
        by: "alice".into(),
        action: ModAction::Kicked {
            name: "bob".into(),
            reason: Some("spam".into()),
        },
    }));
    // A kick is not a ban: bob may come back.
    h.join(4, "bob");
    assert_eq!(
        h.recv(1, kick("nobody", None)),
        vec![error(1, ErrorKind::NoSuchMember)]
    );
}

#[test]
fn a_member_not_an_operator_is_refused_every_moderation_request() {
    let mut h = room_with_bob();
    for msg in [
        kick("alice", None),
        ban("alice", None),
        ClientMsg::Unban {
            target: "alice".into(),
        },
        mute("alice", None),
        ClientMsg::Unmute {
            name: "alice".into(),
        },
        ClientMsg::Bans,
    ] {
        assert_eq!(h.recv(2, msg), vec![error(2, ErrorKind::NotOperator)]);
    }
    // An operator's name in the list, held by a look-alike, is the operator's (the same key).
    let mut h = Harness::with(Config {
        operators: vec!["ALICE".into()],
        ..mod_config()
    });
    h.join(1, "Alice");
    h.join(2, "bob");
    // Not before its name is registered: whoever takes an operator's name first is nobody.
    assert_eq!(
        h.recv(1, kick("bob", None)),
        vec![error(1, ErrorKind::NotOperator)]
    );
    h.register(1);
    assert!(matches!(
        h.recv(1, kick("bob", None)).first(),
        Some(Output::Broadcast {
            msg: ServerMsg::Moderated { .. },
            ..
        })
    ));
}

#[test]
fn a_ban_by_name_closes_the_member_and_refuses_its_look_alikes_until_lifted() {
    let mut h = room_with_bob();
    let out = h.recv(1, ban("Bob", None));
    assert_eq!(
        out,
        vec![
            h.moderated(ModAction::Banned {
                target: "bob".into(),
                until: None,
                reason: None,
            }),
            close(2, CloseReason::Banned),
            broadcast(None, h.left("bob", CloseReason::Banned)),
        ]
    );
    h.open(3);
    for name in ["bob", "BOB", "ｂｏｂ", "b0b"] {
        assert_eq!(
            h.recv(3, hello(name)),
            vec![send(3, ServerMsg::Refused(Refusal::Banned { until: None }))],
            "{name}"
        );
    }
    // A rename to a banned name is refused as taken.
    h.join(4, "carol");
    assert_eq!(
        h.recv(4, ClientMsg::Nick { name: "BOB".into() }),
        vec![error(4, ErrorKind::NameTaken)]
    );
    let out = h.recv(
        1,
        ClientMsg::Unban {
            target: "bob".into(),
        },
    );
    assert_eq!(
        out,
        vec![h.moderated(ModAction::Unbanned {
            target: "bob".into()
        })]
    );
    welcome(&h.recv(3, hello("bob")));
    assert_eq!(
        h.recv(
            1,
            ClientMsg::Unban {
                target: "bob".into()
            }
        ),
        vec![error(1, ErrorKind::NotBanned)]
    );
}

#[test]
fn a_ban_by_address_closes_its_connections_and_refuses_new_ones_from_it_alone() {
    let mut h = Harness::with(mod_config());
    h.join_from(1, "192.0.2.1", "alice");
    h.register(1);
    h.join_from(2, "192.0.2.7", "bob");
    assert!(h.open_from(3, "192.0.2.7").is_empty()); // In its handshake.
    h.join_from(4, "192.0.2.8", "carol");
    let out = h.recv(1, ban("192.0.2.7", None));
    assert_eq!(
        out,
        vec![
            h.moderated(ModAction::Banned {
                target: "192.0.2.7".into(),
                until: None,
                reason: None,
            }),
            close(2, CloseReason::Banned),
            close(3, CloseReason::Banned),
            broadcast(None, h.left("bob", CloseReason::Banned)),
        ]
    );
    let refused = |id| {
        vec![
            send(id, ServerMsg::Refused(Refusal::Banned { until: None })),
            close(id, CloseReason::Banned),
        ]
    };
    assert_eq!(h.open_from(5, "192.0.2.7"), refused(5));
    // The same address written as IPv4-mapped IPv6 is the same address.
    assert_eq!(h.open_from(6, "::ffff:192.0.2.7"), refused(6));
    assert!(h.open_from(7, "192.0.2.9").is_empty());
    // A network: every address in it, whatever the phase.
    let out = h.recv(1, ban("192.0.2.0/29", Some(60)));
    let until = Some(h.time() + 60_000);
    assert_eq!(
        out,
        vec![
            h.moderated(ModAction::Banned {
                target: "192.0.2.0/29".into(),
                until,
                reason: None,
            }),
            // An operator inside the network it bans is banned too.
            close(1, CloseReason::Banned),
            broadcast(None, h.left("alice", CloseReason::Banned)),
        ]
    );
    assert_eq!(
        h.room.name_of(ConnId(4)),
        Some("carol"),
        "192.0.2.8 is outside"
    );
    assert!(h.room.is_open(ConnId(7)), "192.0.2.9 is outside");
    assert_eq!(
        h.open_from(8, "192.0.2.6"),
        vec![
            send(8, ServerMsg::Refused(Refusal::Banned { until })),
            close(8, CloseReason::Banned),
        ]
    );
}

#[test]
fn an_ipv6_network_ban_covers_its_addresses_and_no_others() {
    let mut h = Harness::with(mod_config());
    h.join_from(1, "2001:db8:1::1", "alice");
    h.register(1);
    h.join_from(2, "2001:db8:ff::2", "bob");
    h.join_from(3, "2001:db9::3", "carol");
    let out = h.recv(1, ban("2001:db8:f0::/44", None));
    assert!(out.contains(&close(2, CloseReason::Banned)), "{out:?}");
    assert!(h.room.is_open(ConnId(1)) && h.room.is_open(ConnId(3)));
    assert_eq!(
        h.open_from(4, "2001:db8:fa::9")[1],
        close(4, CloseReason::Banned)
    );
}

#[test]
fn targets_are_read_strictly() {
    let net = |addr: &str, prefix| {
        Some(Target::Net {
            addr: ip(addr),
            prefix,
        })
    };
    let cases = [
        ("bob", Some(Target::Name("bob".into()))),
        ("ＢＯＢ", Some(Target::Name("bob".into()))),
        ("192.0.2.7", net("192.0.2.7", 32)),
        ("192.0.2.0/24", net("192.0.2.0", 24)),
        ("0.0.0.0/0", net("0.0.0.0", 0)),
        ("::ffff:192.0.2.7", net("192.0.2.7", 32)),
        ("2001:db8::/32", net("2001:db8::", 32)),
        ("2001:db8::1", net("2001:db8::1", 128)),
        ("192.0.2.1/24", None),   // host bits set
        ("192.0.2.0/33", None),   // prefix too long
        ("2001:db8::/129", None), // prefix too long
        ("2001:db8::1/32", None), // host bits set
        ("192.0.2.0/024", None),  // leading zero
        ("192.0.2.0/+24", None),
        ("192.0.2.0/", None),
        ("192.0.2", None), // looks like an address, is none
        ("192.0.02.1", None),
        ("bob/24", None),
        ("fe80::1%eth0", None),
        ("", None),
        ("two words", None),
    ];
    for (text, want) in cases {
        assert_eq!(parse_target(text, 32), want, "{text:?}");
    }
}

#[test]
fn a_muted_member_s_chats_away_and_renames_are_refused_until_unmuted() {
    let mut h = room_with_bob();
    let out = h.recv(1, mute("bob", None));
    assert_eq!(
        out,
        vec![h.moderated(ModAction::Muted {
            name: "bob".into(),
            until: None
        })]
    );
    let muted = vec![error(2, ErrorKind::Muted { until: None })];
    assert_eq!(h.recv(2, chat("hi")), muted);
    assert_eq!(h.recv(2, ClientMsg::Nick { name: "rob".into() }), muted);
    assert_eq!(
        h.recv(
            2,
            ClientMsg::Away {
                message: Some("x".into())
            }
        ),
        muted
    );
    // Others still speak, and bob still hears them.
    assert!(chat_passed(&h.recv(1, chat("hello"))));
    let out = h.recv(1, ClientMsg::Unmute { name: "BOB".into() });
    assert_eq!(
        out,
        vec![h.moderated(ModAction::Unmuted { name: "bob".into() })]
    );
    assert!(chat_passed(&h.recv(2, chat("thanks"))));
}

#[test]
fn bans_and_mutes_end_by_the_clock_with_their_duration() {
    let mut h = Harness::with(Config {
        ping_interval: Duration::from_secs(3600),
        idle_timeout: Duration::from_secs(7200),
        ..mod_config()
    });
    h.join(1, "alice");
    h.register(1);
    h.join(2, "bob");
    h.recv(1, mute("bob", Some(60)));
    let until = Some(h.time() + 60_000);
    assert_eq!(
        h.recv(2, chat("hi")),
        vec![error(2, ErrorKind::Muted { until })]
    );
    h.advance(Duration::from_secs(59));
    assert!(!chat_passed(&h.recv(2, chat("hi"))));
    h.advance(Duration::from_secs(1));
    assert!(chat_passed(&h.recv(2, chat("hi"))));
    h.recv(1, ban("carol", Some(10)));
    h.open(3);
    assert_eq!(
        h.recv(3, hello("carol")),
        vec![send(
            3,
            ServerMsg::Refused(Refusal::Banned {
                until: Some(h.time() + 10_000)
            })
        )]
    );
    h.advance(Duration::from_secs(10));
    h.join(4, "carol");
}

#[test]
fn an_operator_lists_the_bans_and_mutes_in_force() {
    let mut h = room_with_bob();
    let t0 = h.time();
    h.recv(
        1,
        ClientMsg::Ban {
            target: "mallory".into(),
            duration_secs: None,
            reason: Some("spam".into()),
        },
    );
    h.recv(1, ban("198.51.100.0/24", Some(5)));
    h.recv(1, mute("bob", Some(100)));
    assert_eq!(
        h.recv(1, ClientMsg::Bans),
        vec![send(
            1,
            ServerMsg::Bans {
                bans: vec![
                    BanInfo {
                        target: "rnallory".into(),
                        until: None,
                        reason: Some("spam".into()),
                        by: "alice".into(),
                        since: t0,
                    },
                    BanInfo {
                        target: "198.51.100.0/24".into(),
                        until: Some(t0 + 5_000),
                        reason: None,
                        by: "alice".into(),
                        since: t0,
                    },
                ],
                mutes: vec![MuteInfo {
                    name: "bob".into(),
                    until: Some(t0 + 100_000),
                    by: "alice".into(),
                }],
            }
        )]
    );
    h.advance(Duration::from_secs(5));
    let out = h.recv(1, ClientMsg::Bans);
    assert!(
        matches!(&out[..], [Output::Send { msg: ServerMsg::Bans { bans, mutes }, .. }]
            if bans.len() == 1 && mutes.len() == 1),
        "{out:?}"
    );
}

#[test]
fn the_tables_are_bounded_an_operator_lifts_one_before_setting_another() {
    let mut h = Harness::with(Config {
        max_bans: 2,
        ..mod_config()
    });
    h.join(1, "alice");
    h.register(1);
    assert_eq!(h.recv(1, ban("x1", None)).len(), 1);
    assert_eq!(h.recv(1, ban("x2", Some(1))).len(), 1);
    assert_eq!(
        h.recv(1, ban("x3", None)),
        vec![error(1, ErrorKind::TooManyBans)]
    );
    // Setting one that is held again replaces it.
    assert_eq!(h.recv(1, ban("x1", Some(9))).len(), 1);
    assert_eq!(h.room.sanctions().0.len(), 2);
    // One that ended frees its place.
    h.advance(Duration::from_secs(1));
    assert_eq!(h.recv(1, ban("x3", None)).len(), 1);
    assert_eq!(h.room.sanctions().0.len(), 2);
    for name in ["m1", "m2"] {
        assert_eq!(h.recv(1, mute(name, None)).len(), 1);
    }
    assert_eq!(
        h.recv(1, mute("m3", None)),
        vec![error(1, ErrorKind::TooManyBans)]
    );
    assert_eq!(
        h.recv(1, ban("192.0.2.1/8", None)),
        vec![error(1, ErrorKind::BadTarget)]
    );
    assert_eq!(
        h.recv(1, mute("192.0.2.1", None)),
        vec![error(1, ErrorKind::BadTarget)]
    );
}

#[test]
fn a_room_started_from_a_snapshot_keeps_its_bans_and_mutes() {
    let snapshot = Snapshot {
        epoch: EPOCH,
        bans: vec![Ban {
            target: BanTarget::Name("bob".into()),
            until: None,
            reason: None,
            by: "alice".into(),
            since: 1,
        }],
        mutes: vec![Mute {
            key: "carol".into(),
            until: None,
            by: "alice".into(),
        }],
        ..Snapshot::default()
    };
    let now = Instant::now();
    let mut room = Room::shared(mod_config(), NodeId(1), snapshot).unwrap();
    room.set_clock(now, T0);
    room.handle_input(now, Input::Opened(ConnId(1))).unwrap();
    room.handle_input(now, Input::Received(ConnId(1), hello("BOB")))
        .unwrap();
    assert_eq!(
        room.poll_output(),
        Some(send(1, ServerMsg::Refused(Refusal::Banned { until: None })))
    );
    assert_eq!(room.sanctions().1.len(), 1);
}

use crate::accounts::{Ban, BanTarget, Mute};

/// Two rooms sharing one in-memory log, every entry applied by both in order.
struct Shared {
    log: Sequencer,
    rooms: [Room; 2],
    now: Instant,
    pending: VecDeque<(usize, Proposal)>,
    out: Vec<(usize, Output)>,
}

impl Shared {
    fn new() -> Self {
        let log = Sequencer::new(10, EPOCH);
        let room = |n| Room::shared(mod_config(), NodeId(n), log.snapshot()).unwrap();
        Self {
            rooms: [room(1), room(2)],
            log,
            now: Instant::now(),
            pending: VecDeque::new(),
            out: Vec::new(),
        }
    }

    fn input(&mut self, n: usize, input: Input) {
        self.rooms[n].handle_input(self.now, input).unwrap();
        while let Some(o) = self.rooms[n].poll_output() {
            match o {
                Output::Propose(p) => self.pending.push_back((n, p)),
                o => self.out.push((n, o)),
            }
        }
    }

    /// Runs the log until nothing is pending.
    fn settle(&mut self) {
        while let Some((n, p)) = self.pending.pop_front() {
            match self.log.propose(NodeId(n as u64 + 1), p.clone(), T0) {
                Ok(entry) => {
                    for m in 0..2 {
                        self.input(m, Input::Applied(entry.clone()));
                    }
                }
                Err(why) => self.input(n, Input::Declined { proposal: p, why }),
            }
        }
    }

    fn join(&mut self, n: usize, id: u64, addr: &str, name: &str) {
        self.input(n, Input::OpenedFrom(ConnId(id), ip(addr)));
        self.input(n, Input::Received(ConnId(id), hello(name)));
        self.settle();
        assert_eq!(self.rooms[n].name_of(ConnId(id)), Some(name));
    }

    /// The member on `id` of node `n` registers its name, as [`Harness::register`].
    fn register(&mut self, n: usize, id: u64) {
        self.input(n, Input::Received(ConnId(id), register_msg()));
        let ticket = self
            .out
            .iter()
            .find_map(|(m, o)| match o {
                Output::Password { ticket, .. } if *m == n => Some(*ticket),
                _ => None,
            })
            .expect("password work");
        let verdict = Verdict::Hashed("hash:pw".into());
        self.input(n, Input::Password { ticket, verdict });
        self.settle();
        assert!(self.rooms[n].account_of(ConnId(id)).is_some());
    }

    fn closed(&mut self) -> Vec<(usize, u64, CloseReason)> {
        self.out
            .drain(..)
            .filter_map(|(n, o)| match o {
                Output::Close { conn, reason } => Some((n, conn.0, reason)),
                _ => None,
            })
            .collect()
    }
}

#[test]
fn moderation_goes_through_the_log_and_every_node_applies_it() {
    let mut w = Shared::new();
    w.join(0, 1, "192.0.2.1", "alice");
    w.register(0, 1);
    w.join(1, 1, "192.0.2.2", "bob");
    w.join(1, 2, "192.0.2.3", "carol");
    w.join(1, 3, "192.0.2.4", "dave");
    w.closed();
    // alice on node 0 kicks bob on node 1: node 1 closes him.
    w.input(0, Input::Received(ConnId(1), kick("bob", None)));
    w.settle();
    let told: Vec<usize> = w
        .out
        .iter()
        .filter(|(_, o)| {
            matches!(
                o,
                Output::Broadcast {
                    msg: ServerMsg::Moderated { .. },
                    ..
                }
            )
        })
        .map(|(n, _)| *n)
        .collect();
    assert_eq!(told, vec![0, 1], "every node told its members");
    assert_eq!(w.closed(), vec![(1, 1, CloseReason::Kicked)]);
    assert_eq!(w.rooms[0].member_count(), 3);
    // A ban by address, and a mute, hold on the other node too.
    w.input(0, Input::Received(ConnId(1), ban("192.0.2.3", None)));
    w.input(0, Input::Received(ConnId(1), mute("dave", None)));
    w.settle();
    assert_eq!(w.closed(), vec![(1, 2, CloseReason::Banned)]);
    w.input(1, Input::OpenedFrom(ConnId(9), ip("192.0.2.3")));
    assert_eq!(w.closed(), vec![(1, 9, CloseReason::Banned)]);
    w.input(1, Input::Received(ConnId(3), chat("hi")));
    assert!(w.pending.is_empty(), "a muted chat is not proposed");
    assert!(w.out.contains(&(
        1,
        send(3, ServerMsg::Error(ErrorKind::Muted { until: None }))
    )));
    let (bans, mutes) = w.rooms[1].sanctions();
    assert_eq!((bans.len(), mutes.len()), (1, 1));
    assert_eq!(w.rooms[0].sanctions(), w.rooms[1].sanctions());
}
