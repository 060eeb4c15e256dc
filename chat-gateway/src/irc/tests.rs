//! The IRC codec through the [`Codec`] contract, as a hub drives it: bytes in, items out, the
//! room's answers encoded, and connections named ready decoded on with no new bytes.

mod hub;

use chat_core::{Codec, Config, ConnId, Inbound};
use chat_proto::{ChatKind, ClientMsg, CloseReason, ErrorKind, Member, Refusal, ServerMsg};

use super::commands;
use super::{Identity, IrcCodec, MAX_KEPT, info};

const CONN: ConnId = ConnId(7);

/// What a codec without its lanes offers: all but server-time and away-notify.
const OFFERED_PLAIN: &str = "cap-notify message-tags echo-message batch labeled-response \
    multi-prefix userhost-in-names standard-replies draft/chathistory";

/// The hello for `nick`, from a client whose USER said `ann 0 * :Ann`.
fn hello(nick: &str) -> ClientMsg {
    hello_as(nick, "ann", "Ann")
}

fn hello_as(nick: &str, user: &str, realname: &str) -> ClientMsg {
    let ident = chat_proto::Ident {
        user: user.into(),
        realname: realname.into(),
    };
    commands::hello(nick, Some(ident))
}

fn codec() -> IrcCodec {
    IrcCodec::new(Identity {
        server: "srv".into(),
        channel: "#chat".into(),
    })
}

fn decode(codec: &mut IrcCodec, bytes: &[u8]) -> Vec<Inbound> {
    let mut out = Vec::new();
    codec.decode(CONN, bytes, &mut out);
    out
}

fn encode(codec: &mut IrcCodec, msg: ServerMsg) -> String {
    let mut out = Vec::new();
    codec.encode_to(CONN, &msg, &mut out);
    String::from_utf8(out).unwrap()
}

fn welcome(name: &str) -> ServerMsg {
    ServerMsg::Welcome {
        name: name.into(),
        online: 1,
        members: vec![Member::named(name)],
        limits: Config::default().limits(),
        seq: 0,
        epoch: 1,
    }
}

fn members(names: &[&str]) -> ServerMsg {
    ServerMsg::Members {
        members: names.iter().map(|&n| Member::named(n)).collect(),
    }
}

fn reply(text: &str) -> Inbound {
    Inbound::Reply(text.as_bytes().to_vec())
}

fn chat(text: &str) -> Inbound {
    Inbound::Msg(ClientMsg::Chat {
        text: text.into(),
        kind: chat_proto::ChatKind::Plain,
    })
}

const WHO: Inbound = Inbound::Msg(ClientMsg::Who);

/// A codec whose connection registered as `ann`, with nothing kept.
fn registered() -> IrcCodec {
    let mut codec = codec();
    let sent = decode(&mut codec, b"NICK ann\r\nUSER ann 0 * :Ann\r\n");
    assert_eq!(sent, [Inbound::Msg(hello("ann"))]);
    assert!(encode(&mut codec, welcome("ann")).starts_with(":srv 001 ann "));
    assert_eq!(codec.poll_ready(), None);
    codec
}

#[test]
fn lines_after_a_hello_wait_until_the_welcome() {
    let mut codec = codec();
    // The hello opens a batch of its own: the CAP reply goes first, alone.
    let sent = b"CAP LS 302\r\nNICK ann\r\nUSER ann 0 * :Ann\r\nCAP END\r\nPRIVMSG #chat :hi\r\nPING :x\r\n";
    assert_eq!(
        decode(&mut codec, sent),
        [reply(&format!(":srv CAP * LS :{OFFERED_PLAIN}\r\n"))]
    );
    assert_eq!(codec.poll_ready(), Some(CONN));
    assert_eq!(decode(&mut codec, b""), [Inbound::Msg(hello("ann"))]);
    assert_eq!(codec.poll_ready(), None);
    // More lines while the room decides: kept, in order.
    assert_eq!(decode(&mut codec, b"PING :y\r\n"), []);
    assert_eq!(codec.poll_ready(), None);
    let lines = encode(&mut codec, welcome("ann"));
    assert!(lines.starts_with(":srv 001 ann :Welcome"), "{lines}");
    assert_eq!(codec.poll_ready(), Some(CONN));
    assert_eq!(
        decode(&mut codec, b""),
        [
            chat("hi"),
            reply(":srv PONG srv :x\r\n"),
            reply(":srv PONG srv :y\r\n")
        ]
    );
    assert_eq!(codec.poll_ready(), None);
}

#[test]
fn a_refused_hello_lets_the_next_nick_try() {
    let mut codec = codec();
    let sent = b"NICK sam\r\nUSER ann 0 * :Ann\r\nNICK sam2\r\n";
    assert_eq!(decode(&mut codec, sent), [Inbound::Msg(hello("sam"))]);
    assert_eq!(
        encode(&mut codec, ServerMsg::Refused(Refusal::NameTaken)),
        ":srv 433 * sam :Nickname is already in use (or one that looks the same)\r\n"
    );
    assert_eq!(codec.poll_ready(), Some(CONN));
    assert_eq!(decode(&mut codec, b""), [Inbound::Msg(hello("sam2"))]);
    // A hello refused for its rate is refused too.
    assert_eq!(
        encode(&mut codec, ServerMsg::Error(ErrorKind::RateLimited)),
        format!(":srv NOTICE * :{}\r\n", ErrorKind::RateLimited)
    );
    assert_eq!(codec.poll_ready(), None, "nothing was kept");
    assert_eq!(
        decode(&mut codec, b"NICK sam3\r\n"),
        [Inbound::Msg(hello("sam3"))]
    );
    encode(&mut codec, welcome("sam3"));
    assert_eq!(decode(&mut codec, b"PRIVMSG #chat :in\r\n"), [chat("in")]);
}

#[test]
fn what_waits_for_a_welcome_is_bounded() {
    let mut codec = codec();
    let ann = || Inbound::Msg(hello("ann"));
    assert_eq!(
        decode(&mut codec, b"NICK ann\r\nUSER ann 0 * :Ann\r\n"),
        [ann()]
    );
    assert_eq!(decode(&mut codec, &vec![b'x'; MAX_KEPT - 1]), []);
    assert_eq!(decode(&mut codec, b"\n"), []);
    assert_eq!(decode(&mut codec, b"y"), [Inbound::Malformed]);
    // Shut: nothing more is read, and no answer wakes it.
    assert_eq!(decode(&mut codec, b"PING :z\r\n"), []);
    encode(&mut codec, welcome("ann"));
    assert_eq!(codec.poll_ready(), None);

    // One read that carries more than the bound after its hello.
    let mut codec = self::codec();
    let mut sent = b"NICK ann\r\nUSER ann 0 * :Ann\r\n".to_vec();
    sent.extend(b"PRIVMSG #chat :x\r\n".repeat(MAX_KEPT / 10));
    assert_eq!(decode(&mut codec, &sent), [ann(), Inbound::Malformed]);
}

/// The bound is on what waits for an answer: a member's large read that a WHO cuts into
/// batches is all acted on.
#[test]
fn a_large_read_after_the_welcome_is_not_bounded() {
    let mut codec = registered();
    let mut sent = b"PRIVMSG #chat :x\r\nWHO #chat\r\n".to_vec();
    let lines = 4 * MAX_KEPT / 10;
    sent.extend(b"PRIVMSG #chat :x\r\n".repeat(lines));
    assert_eq!(decode(&mut codec, &sent), [chat("x")]);
    assert_eq!(codec.poll_ready(), Some(CONN));
    let rest = decode(&mut codec, b"");
    assert_eq!((rest.len(), &rest[0]), (1 + lines, &WHO));
    assert!(rest[1..].iter().all(|item| *item == chat("x")));
    assert_eq!(codec.poll_ready(), None);
}

#[test]
fn each_member_list_is_shown_as_the_command_that_asked_for_it() {
    let mut codec = registered();
    let sent = b"PING :1\r\nNAMES\r\nWHO #chat\r\nUSERHOST bob\r\nPRIVMSG bob,nobody :psst\r\n";
    assert_eq!(decode(&mut codec, sent), [reply(":srv PONG srv :1\r\n")]);
    let answers = [
        ":srv 353 ann = #chat :ann bob\r\n:srv 366 ann #chat :End of /NAMES list.\r\n",
        ":srv 352 ann #chat ann srv srv ann H :0 ann\r\n:srv 352 ann #chat bob srv srv bob H :0 bob\r\n:srv 315 ann #chat :End of /WHO list.\r\n",
        ":srv 302 ann :bob=+bob@srv\r\n",
        ":srv 404 ann bob :Private messages are not carried here; write to #chat\r\n",
        ":srv 401 ann nobody :No such nick/channel\r\n",
    ];
    for answer in answers {
        assert_eq!(codec.poll_ready(), Some(CONN));
        assert_eq!(decode(&mut codec, b""), [WHO]);
        assert_eq!(encode(&mut codec, members(&["ann", "bob"])), answer);
    }
    assert_eq!(codec.poll_ready(), None);
    // A WHO refused for its rate leaves no listing behind for a later answer.
    assert_eq!(decode(&mut codec, b"WHO bob\r\n"), [WHO]);
    encode(&mut codec, ServerMsg::Error(ErrorKind::RateLimited));
    assert!(encode(&mut codec, members(&["ann"])).starts_with(":srv 353 "));
}

#[test]
fn the_replies_of_one_command_that_follow_each_other_are_one() {
    let mut codec = registered();
    assert_eq!(
        decode(&mut codec, b"PRIVMSG #a,#b,#chat,#c :hi\r\n"),
        [
            reply(":srv 403 ann #a :No such channel\r\n:srv 403 ann #b :No such channel\r\n"),
            chat("hi"),
            reply(":srv 403 ann #c :No such channel\r\n"),
        ]
    );
}

#[test]
fn a_connection_forgotten_while_it_waits_is_never_named_ready() {
    let mut codec = codec();
    decode(&mut codec, b"NICK ann\r\nUSER ann 0 * :Ann\r\nPING :x\r\n");
    codec.forget(CONN);
    encode(&mut codec, welcome("ann"));
    assert_eq!(codec.poll_ready(), None);
}

#[test]
fn lines_split_anywhere_decode_the_same() {
    let sent =
        b"NICK ann\r\nUSER ann 0 * :Ann\r\nPRIVMSG #chat :one\r\nPING :p\r\nPRIVMSG #chat :two\r\n";
    for cut in 0..=sent.len() {
        let mut codec = codec();
        let mut items = decode(&mut codec, &sent[..cut]);
        if items.is_empty() {
            items = decode(&mut codec, &sent[cut..]);
            assert_eq!(items, [Inbound::Msg(hello("ann"))], "cut at {cut}");
        } else {
            assert_eq!(items, [Inbound::Msg(hello("ann"))], "cut at {cut}");
            assert_eq!(decode(&mut codec, &sent[cut..]), [], "cut at {cut}");
        }
        encode(&mut codec, welcome("ann"));
        let mut rest = Vec::new();
        while codec.poll_ready().is_some() {
            rest.extend(decode(&mut codec, b""));
        }
        assert_eq!(
            rest,
            [chat("one"), reply(":srv PONG srv :p\r\n"), chat("two")],
            "cut at {cut}"
        );
    }
}

fn chat_kind(text: &str, kind: ChatKind) -> Inbound {
    Inbound::Msg(ClientMsg::Chat {
        text: text.into(),
        kind,
    })
}

fn said(from: &str, text: &str, kind: ChatKind) -> ServerMsg {
    ServerMsg::Chat {
        seq: 1,
        time: 0,
        from: from.into(),
        text: text.into(),
        kind,
    }
}

/// A broadcast as the hub carries it: observed, then encoded.
fn broadcast(codec: &mut IrcCodec, msg: &ServerMsg) -> String {
    let mut out = Vec::new();
    codec.observe(msg);
    codec.encode_broadcast(msg, &mut out);
    String::from_utf8(out).unwrap()
}

fn left(name: &str, message: Option<&str>) -> ServerMsg {
    ServerMsg::Left {
        name: name.into(),
        reason: CloseReason::Left,
        message: message.map(str::to_owned),
        time: 0,
    }
}

#[test]
fn actions_and_notices_map_both_ways() {
    let mut codec = registered();
    assert_eq!(
        decode(
            &mut codec,
            b"PRIVMSG #chat :\x01ACTION waves\x01\r\nNOTICE #chat :psst\r\n"
        ),
        [
            chat_kind("waves", ChatKind::Action),
            chat_kind("psst", ChatKind::Notice)
        ]
    );
    assert_eq!(
        broadcast(&mut codec, &said("bob", "waves", ChatKind::Action)),
        ":bob!bob@srv PRIVMSG #chat :\x01ACTION waves\x01\r\n"
    );
    assert_eq!(
        broadcast(&mut codec, &said("bob", "psst", ChatKind::Notice)),
        ":bob!bob@srv NOTICE #chat :psst\r\n"
    );
    assert_eq!(
        broadcast(&mut codec, &said("bob", "hi", ChatKind::Plain)),
        ":bob!bob@srv PRIVMSG #chat :hi\r\n"
    );
}

/// A NOTICE never brings an error back, whatever its target or text.
#[test]
fn a_notice_is_never_answered() {
    let mut codec = registered();
    let sent =
        b"NOTICE bob :x\r\nNOTICE #other :x\r\nNOTICE\r\nNOTICE #chat\r\nNOTICE #chat :\x07\r\n";
    assert_eq!(decode(&mut codec, sent), []);
    assert_eq!(codec.poll_ready(), None);
}

#[test]
fn quit_reasons_are_parting_words_and_others_see_them() {
    let mut codec = registered();
    assert_eq!(
        decode(&mut codec, b"QUIT :qux out\r\n"),
        [Inbound::Msg(ClientMsg::Leave {
            message: Some("qux out".into())
        })]
    );
    assert_eq!(
        broadcast(&mut codec, &left("bob", Some("qux out"))),
        ":bob!bob@srv QUIT :qux out\r\n"
    );
    assert_eq!(
        broadcast(&mut codec, &left("bob", None)),
        format!(":bob!bob@srv QUIT :{}\r\n", CloseReason::Left)
    );
}

#[test]
fn nick_after_registration_renames_and_a_refusal_is_433_or_432() {
    let mut codec = registered();
    assert_eq!(
        decode(&mut codec, b"NICK ann2\r\n"),
        [Inbound::Msg(ClientMsg::Nick {
            name: "ann2".into()
        })]
    );
    assert_eq!(
        encode(&mut codec, ServerMsg::Error(ErrorKind::NameTaken)),
        ":srv 433 ann ann2 :Nickname is already in use (or one that looks the same)\r\n"
    );
    decode(&mut codec, b"NICK ann3\r\n");
    let rule = chat_proto::NameRule::Empty;
    assert!(
        encode(&mut codec, ServerMsg::Error(ErrorKind::NameInvalid(rule)))
            .starts_with(":srv 432 ann ann3 :Erroneous nickname")
    );
    decode(&mut codec, b"NICK ann4\r\n");
    let renamed = ServerMsg::Renamed {
        from: "ann".into(),
        to: "ann4".into(),
        time: 0,
    };
    assert_eq!(
        broadcast(&mut codec, &renamed),
        ":ann!ann@srv NICK ann4\r\n"
    );
    // Later lines name it by its new nick.
    assert_eq!(
        decode(&mut codec, b"AWAY\r\n")[1],
        reply(":srv 305 ann4 :You are no longer marked as being away\r\n")
    );
}

#[test]
fn away_is_the_members_state_and_lists_show_it() {
    let mut codec = registered();
    assert_eq!(
        decode(&mut codec, b"AWAY :lunch\r\n"),
        [
            Inbound::Msg(ClientMsg::Away {
                message: Some("lunch".into())
            }),
            reply(":srv 306 ann :You have been marked as being away\r\n"),
        ]
    );
    assert_eq!(
        decode(&mut codec, b"AWAY\r\n")[0],
        Inbound::Msg(ClientMsg::Away { message: None })
    );
    let list = ServerMsg::Members {
        members: vec![
            Member::named("ann"),
            Member {
                name: "bob".into(),
                away: Some("gone fishing".into()),
                ident: Some(std::sync::Arc::new(chat_proto::Ident {
                    user: "bobu".into(),
                    realname: "Bob B".into(),
                })),
            },
        ],
    };
    let asked: [(&[u8], &str); 3] = [
        (
            b"WHO bob\r\n",
            ":srv 352 ann * bobu srv srv bob G :0 Bob B\r\n:srv 315 ann bob :End of /WHO list.\r\n",
        ),
        (b"USERHOST bob\r\n", ":srv 302 ann :bob=-bobu@srv\r\n"),
        (
            b"PRIVMSG bob :hi\r\n",
            ":srv 301 ann bob :gone fishing\r\n:srv 404 ann bob :Private messages are not carried here; write to #chat\r\n",
        ),
    ];
    for (line, answer) in asked {
        assert_eq!(decode(&mut codec, line), [WHO]);
        assert_eq!(encode(&mut codec, list.clone()), answer);
    }
}

#[test]
fn user_gives_the_hellos_ident() {
    let mut codec = codec();
    assert_eq!(
        decode(&mut codec, b"NICK zed\r\nUSER ~zu 0 * :Zed Z\r\n"),
        [Inbound::Msg(hello_as("zed", "zu", "Zed Z"))]
    );
}

#[test]
fn registration_refuses_what_rfc_2812_refuses() {
    let mut codec = codec();
    assert!(
        decode(&mut codec, b"NICK *\r\n")[0]
            == reply(
                ":srv 432 * * :Erroneous nickname: IRC nicks cannot hold ! @ , % * ? or start with : # & + ~\r\n"
            )
    );
    assert_eq!(
        decode(&mut codec, b"USER u 0 * :\r\n"),
        [reply(":srv 461 * USER :Not enough parameters\r\n")]
    );
    assert_eq!(
        decode(&mut codec, b"PING\r\n"),
        [reply(":srv 409 * :No origin specified\r\n")]
    );
}

/// PART leaves the room and keeps the connection: room commands get 442, JOIN enters again
/// (only the JOIN and names, no second welcome), and the others see PART, not QUIT.
#[test]
fn part_keeps_the_connection_and_join_enters_again() {
    let mut codec = registered();
    assert_eq!(
        decode(&mut codec, b"PART #chat :lunch\r\n"),
        [
            reply(":ann!ann@srv PART #chat :lunch\r\n"),
            Inbound::Part(Some("lunch".into()))
        ]
    );
    assert_eq!(
        broadcast(&mut codec, &left("ann", Some("lunch"))),
        ":ann!ann@srv PART #chat :lunch\r\n"
    );
    let not_on = ":srv 442 ann #chat :You're not on that channel\r\n";
    for line in [
        &b"PRIVMSG #chat :hi\r\n"[..],
        b"WHO #chat\r\n",
        b"AWAY :x\r\n",
    ] {
        assert_eq!(decode(&mut codec, line), [reply(not_on)]);
    }
    assert_eq!(decode(&mut codec, b"NOTICE #chat :hi\r\n"), []);
    assert_eq!(
        decode(&mut codec, b"JOIN #chat\r\nPRIVMSG #chat :back\r\n"),
        [Inbound::Msg(hello("ann"))]
    );
    // Taken meanwhile: 433, still registered and out.
    assert_eq!(
        encode(&mut codec, ServerMsg::Refused(Refusal::NameTaken)),
        ":srv 433 ann ann :Nickname is already in use (or one that looks the same)\r\n"
    );
    assert_eq!(codec.poll_ready(), Some(CONN));
    assert_eq!(decode(&mut codec, b""), [reply(not_on)]);
    assert_eq!(
        decode(&mut codec, b"JOIN #chat\r\n"),
        [Inbound::Msg(hello("ann"))]
    );
    assert_eq!(
        encode(&mut codec, welcome("ann")),
        ":ann!ann@srv JOIN #chat\r\n:srv 353 ann = #chat :ann\r\n:srv 366 ann #chat :End of /NAMES list.\r\n"
    );
    assert_eq!(
        decode(&mut codec, b"PRIVMSG #chat :back\r\n"),
        [chat("back")]
    );
    // A QUIT now is a QUIT for the others.
    assert_eq!(
        broadcast(&mut codec, &left("ann", None)),
        format!(":ann!ann@srv QUIT :{}\r\n", CloseReason::Left)
    );
}

fn bob_away() -> Member {
    Member {
        name: "bob".into(),
        away: Some("out".into()),
        ident: Some(std::sync::Arc::new(chat_proto::Ident {
            user: "bobu".into(),
            realname: "Bob B".into(),
        })),
    }
}

/// Asks with `line`, which must ask the room for its members, and shows `list` as the answer.
fn listed(codec: &mut IrcCodec, line: &str, list: &[Member]) -> String {
    assert_eq!(decode(codec, line.as_bytes()), [WHO], "{line}");
    let msg = ServerMsg::Members {
        members: list.to_vec(),
    };
    encode(codec, msg)
}

#[test]
fn whois_ison_list_and_lusers_answer_from_the_member_list() {
    let mut codec = registered();
    let list = [Member::named("ann"), bob_away()];
    assert_eq!(
        listed(&mut codec, "WHOIS BOB\r\n", &list),
        ":srv 311 ann bob bobu srv * :Bob B\r\n:srv 319 ann bob :#chat\r\n\
         :srv 312 ann bob srv :a gateway to one chat room\r\n:srv 301 ann bob :out\r\n\
         :srv 318 ann BOB :End of /WHOIS list.\r\n"
    );
    assert_eq!(
        listed(&mut codec, "WHOIS nobody\r\n", &list),
        ":srv 401 ann nobody :No such nick/channel\r\n:srv 318 ann nobody :End of /WHOIS list.\r\n"
    );
    assert_eq!(
        listed(&mut codec, "ISON Bob carol ann\r\n", &list),
        ":srv 303 ann :bob ann\r\n"
    );
    assert_eq!(
        listed(&mut codec, "LIST\r\n", &list),
        ":srv 321 ann Channel :Users  Name\r\n:srv 322 ann #chat 2 :\r\n:srv 323 ann :End of /LIST\r\n"
    );
    let lusers = listed(&mut codec, "LUSERS\r\n", &list);
    assert!(
        lusers.starts_with(":srv 251 ann :There are 2 users"),
        "{lusers}"
    );
}

#[test]
fn monitor_watches_nicks_and_says_who_is_online() {
    let mut codec = registered();
    let list = [Member::named("ann"), bob_away()];
    assert_eq!(
        listed(&mut codec, "MONITOR + bob,carol\r\n", &list),
        ":srv 730 ann :bob!bob@srv\r\n:srv 731 ann :carol\r\n"
    );
    assert_eq!(
        decode(&mut codec, b"MONITOR L\r\n"),
        [reply(
            ":srv 732 ann :bob,carol\r\n:srv 733 ann :End of MONITOR list\r\n"
        )]
    );
    assert_eq!(decode(&mut codec, b"MONITOR - carol\r\n"), []);
    assert_eq!(
        listed(&mut codec, "MONITOR S\r\n", &list),
        ":srv 730 ann :bob!bob@srv\r\n"
    );
    assert_eq!(decode(&mut codec, b"MONITOR C\r\nMONITOR S\r\n"), []);
    let many: Vec<String> = (0..=info::MONITOR_MAX).map(|i| format!("n{i}")).collect();
    let line = format!("MONITOR + {}\r\n", many.join(","));
    let items = decode(&mut codec, line.as_bytes());
    assert_eq!(
        items[0],
        reply(&format!(
            ":srv 734 ann {} n{} :Monitor list is full.\r\n",
            info::MONITOR_MAX,
            info::MONITOR_MAX
        ))
    );
    assert_eq!(items.len(), 1);
    // The request for the list opens a batch of its own.
    assert_eq!(codec.poll_ready(), Some(CONN));
    assert_eq!(decode(&mut codec, b""), [WHO]);
}

#[test]
fn who_takes_glob_masks_and_whox_fields() {
    let mut codec = registered();
    let list = [Member::named("ann"), Member::named("CoolNick"), bob_away()];
    assert_eq!(
        listed(&mut codec, "WHO coolni*\r\n", &list),
        ":srv 352 ann * CoolNick srv srv CoolNick H :0 CoolNick\r\n:srv 315 ann coolni* :End of /WHO list.\r\n"
    );
    assert_eq!(
        listed(&mut codec, "WHO #chat %tcuhnfar,123\r\n", &list[2..]),
        ":srv 354 ann 123 #chat bobu srv bob G 0 :Bob B\r\n:srv 315 ann #chat :End of /WHO list.\r\n"
    );
    assert_eq!(
        listed(&mut codec, "WHO B?B %nf\r\n", &list),
        ":srv 354 ann bob G\r\n:srv 315 ann B?B :End of /WHO list.\r\n"
    );
}

#[test]
fn motd_version_time_admin_and_info_answer_without_the_room() {
    let mut codec = registered();
    let one = |codec: &mut IrcCodec, line: &str| match &decode(codec, line.as_bytes())[..] {
        [Inbound::Reply(bytes)] => String::from_utf8(bytes.clone()).unwrap(),
        other => panic!("{other:?}"),
    };
    assert_eq!(
        one(&mut codec, "MOTD\r\n"),
        ":srv 422 ann :MOTD File is missing\r\n"
    );
    codec.set_motd("Be kind.\nNo spam.\n");
    assert_eq!(
        one(&mut codec, "MOTD\r\n"),
        ":srv 375 ann :- srv Message of the day -\r\n:srv 372 ann :- Be kind.\r\n\
         :srv 372 ann :- No spam.\r\n:srv 376 ann :End of /MOTD command.\r\n"
    );
    assert_eq!(one(&mut codec, "TIME\r\n"), ":srv 391 ann srv :unknown\r\n");
    codec.set_time(1_700_000_000_000);
    assert_eq!(
        one(&mut codec, "TIME\r\n"),
        ":srv 391 ann srv :2023-11-14 22:13:20 UTC\r\n"
    );
    // An entry's time moves it on, never back.
    broadcast(&mut codec, &said("bob", "hi", ChatKind::Plain));
    let later = ServerMsg::Joined {
        name: "bob".into(),
        time: 1_700_000_060_000,
        ident: None,
    };
    broadcast(&mut codec, &later);
    assert!(one(&mut codec, "TIME\r\n").contains("22:14:20"));
    let version = one(&mut codec, "VERSION\r\n");
    assert!(
        version.starts_with(":srv 351 ann chat-server-"),
        "{version}"
    );
    assert!(version.contains(" 005 ann ") && version.contains("MONITOR=100"));
    assert!(one(&mut codec, "ADMIN\r\n").starts_with(":srv 256 ann srv :"));
    assert!(one(&mut codec, "INFO\r\n").ends_with(":srv 374 ann :End of INFO list\r\n"));
}

#[test]
fn kick_and_ban_modes_become_the_room_s_requests_as_ergo_writes_them() {
    let mut codec = registered();
    let msg = |m: ClientMsg| Inbound::Msg(m);
    assert_eq!(
        decode(&mut codec, b"KICK #chat bob :spam\r\n"),
        [msg(ClientMsg::Kick {
            name: "bob".into(),
            reason: Some("spam".into())
        })]
    );
    let ban = |target: &str| {
        msg(ClientMsg::Ban {
            target: target.into(),
            duration_secs: None,
            reason: None,
        })
    };
    assert_eq!(
        decode(&mut codec, b"MODE #chat +b bob!*@*\r\n"),
        [ban("bob")]
    );
    assert_eq!(decode(&mut codec, b"MODE #chat +b bob\r\n"), [ban("bob")]);
    assert_eq!(
        decode(&mut codec, b"MODE #chat +b *!*@192.0.2.0/24\r\n"),
        [ban("192.0.2.0/24")]
    );
    assert_eq!(
        decode(&mut codec, b"MODE #chat -b *!*@2001:db8::1\r\n"),
        [msg(ClientMsg::Unban {
            target: "2001:db8::1".into()
        })]
    );
    assert_eq!(
        decode(&mut codec, b"MODE #chat +b m:bob!*@*\r\n"),
        [msg(ClientMsg::Mute {
            name: "bob".into(),
            duration_secs: None
        })]
    );
    assert_eq!(
        decode(&mut codec, b"MODE #chat -b m:bob\r\n"),
        [msg(ClientMsg::Unmute { name: "bob".into() })]
    );
    assert_eq!(
        decode(&mut codec, b"MODE #chat +b\r\n"),
        [msg(ClientMsg::Bans)]
    );
    assert_eq!(
        decode(&mut codec, b"MODE #chat +b b*b!*@*\r\n"),
        [reply(
            ":srv 415 ann #chat b*b!*@* :Cannot hold this mask: use nick!*@*, *!*@address or *!*@cidr\r\n"
        )]
    );
    assert_eq!(
        decode(&mut codec, b"KICK #other bob\r\n"),
        [reply(":srv 403 ann #other :No such channel\r\n")]
    );
}

#[test]
fn moderation_notices_are_kick_and_mode_lines_and_a_refusal_is_482() {
    let mut codec = registered();
    let moderated = |action| ServerMsg::Moderated {
        by: "op".into(),
        action,
        time: 1,
    };
    let cases = [
        (
            chat_proto::ModAction::Kicked {
                name: "bob".into(),
                reason: Some("spam".into()),
            },
            ":op!op@srv KICK #chat bob :spam\r\n",
        ),
        (
            chat_proto::ModAction::Kicked {
                name: "bob".into(),
                reason: None,
            },
            ":op!op@srv KICK #chat bob :op\r\n",
        ),
        (
            chat_proto::ModAction::Banned {
                target: "192.0.2.0/24".into(),
                until: None,
                reason: None,
            },
            ":op!op@srv MODE #chat +b *!*@192.0.2.0/24\r\n",
        ),
        (
            chat_proto::ModAction::Unbanned {
                target: "bob".into(),
            },
            ":op!op@srv MODE #chat -b bob!*@*\r\n",
        ),
        (
            chat_proto::ModAction::Muted {
                name: "bob".into(),
                until: Some(5),
            },
            ":op!op@srv MODE #chat +b m:bob!*@*\r\n",
        ),
    ];
    for (action, line) in cases {
        assert_eq!(broadcast(&mut codec, &moderated(action)), line);
    }
    // The KICK took the member out: its leave says nothing more.
    let kicked = ServerMsg::Left {
        name: "bob".into(),
        reason: CloseReason::Kicked,
        message: None,
        time: 1,
    };
    assert_eq!(broadcast(&mut codec, &kicked), "");
    assert_eq!(
        encode(&mut codec, ServerMsg::Error(ErrorKind::NotOperator)),
        ":srv 482 ann #chat :You're not a channel operator\r\n"
    );
    // A ban list asked for by one who is not an operator is empty, as clients ask unprompted.
    assert_eq!(
        decode(&mut codec, b"MODE #chat b\r\n"),
        [Inbound::Msg(ClientMsg::Bans)]
    );
    assert_eq!(
        encode(&mut codec, ServerMsg::Error(ErrorKind::NotOperator)),
        ":srv 368 ann #chat :End of channel ban list\r\n"
    );
    let list = ServerMsg::Bans {
        bans: vec![chat_proto::BanInfo {
            target: "bob".into(),
            until: None,
            reason: None,
            by: "op".into(),
            since: 7_000,
        }],
        mutes: vec![chat_proto::MuteInfo {
            name: "eve".into(),
            until: None,
            by: "op".into(),
        }],
    };
    assert_eq!(
        encode(&mut codec, list),
        ":srv 367 ann #chat bob!*@* op 7\r\n:srv 367 ann #chat m:eve!*@* op 0\r\n\
         :srv 368 ann #chat :End of channel ban list\r\n"
    );
    assert_eq!(
        encode(
            &mut codec,
            ServerMsg::Error(ErrorKind::Muted { until: None })
        ),
        ":srv 404 ann #chat :you are muted; message not sent\r\n"
    );
}
