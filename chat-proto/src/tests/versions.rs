//! Version 2 beside version 3: v2's messages as they were, what they mean in v3, what a v2
//! client is sent, and a client's frames read by the version its hello says.

use super::*;
use crate::v2::downgrade;

fn v2_hello(version: u16, name: &str) -> v2::ClientMsg {
    v2::ClientMsg::Hello {
        magic: MAGIC,
        version,
        name: name.into(),
    }
}

fn every_v2_client_msg() -> Vec<v2::ClientMsg> {
    vec![
        v2_hello(v2::VERSION, "alice"),
        v2::ClientMsg::Chat { text: "hi".into() },
        v2::ClientMsg::Leave,
        v2::ClientMsg::Who,
        v2::ClientMsg::Ping { nonce: 1 },
        v2::ClientMsg::Pong { nonce: 2 },
        v2::ClientMsg::Resume { after: 9 },
    ]
}

fn round_trip<T>(msg: &T) -> T
where
    T: serde::Serialize + serde::de::DeserializeOwned,
{
    let bytes = encode_to_vec(msg).unwrap();
    let mut decoder = FrameDecoder::new(MAX_SERVER_FRAME);
    decode_all::<T>(&mut decoder, &[&bytes]).unwrap().remove(0)
}

#[test]
fn v2_messages_round_trip() {
    for msg in every_v2_client_msg() {
        assert_eq!(round_trip(&msg), msg);
    }
    for msg in every_server_msg() {
        downgrade(&msg, |old| assert_eq!(round_trip(&old), old));
    }
}

/// v2's bytes are v2's: a few frames written out by hand from the v2 layout.
#[test]
fn v2_frames_are_laid_out_as_before() {
    let payload = |msg: &v2::ServerMsg| encode_to_vec(msg).unwrap()[PREFIX_LEN..].to_vec();
    let chat = v2::ServerMsg::Chat {
        seq: 5,
        from: "a".into(),
        text: "b".into(),
    };
    assert_eq!(payload(&chat), [2, 5, 1, b'a', 1, b'b']);
    let left = v2::ServerMsg::Left {
        name: "a".into(),
        reason: v2::CloseReason::TooSlow,
    };
    assert_eq!(payload(&left), [4, 1, b'a', 4]);
    let v2_hello = encode_to_vec(&v2_hello(2, "a")).unwrap();
    assert_eq!(
        &v2_hello[PREFIX_LEN..],
        [0, 0xd4, 0x82, 0xa1, 0x9a, 4, 2, 1, b'a']
    );
}

#[test]
fn a_v2_client_s_messages_mean_the_same_in_v3() {
    let cases = [
        (v2_hello(2, "bob"), hello(2, "bob")),
        (
            v2::ClientMsg::Chat { text: "hi".into() },
            ClientMsg::Chat {
                text: "hi".into(),
                kind: ChatKind::Plain,
            },
        ),
        // An action, as v2 clients wrote one; `/me` alone, or followed by nothing, is text.
        (
            v2::ClientMsg::Chat {
                text: "/me waves".into(),
            },
            ClientMsg::Chat {
                text: "waves".into(),
                kind: ChatKind::Action,
            },
        ),
        (
            v2::ClientMsg::Chat {
                text: "/me ".into(),
            },
            ClientMsg::Chat {
                text: "/me ".into(),
                kind: ChatKind::Plain,
            },
        ),
        (
            v2::ClientMsg::Chat {
                text: "/meh".into(),
            },
            ClientMsg::Chat {
                text: "/meh".into(),
                kind: ChatKind::Plain,
            },
        ),
        (v2::ClientMsg::Leave, ClientMsg::Leave { message: None }),
        (v2::ClientMsg::Who, ClientMsg::Who),
        (
            v2::ClientMsg::Ping { nonce: 3 },
            ClientMsg::Ping { nonce: 3 },
        ),
        (
            v2::ClientMsg::Pong { nonce: 4 },
            ClientMsg::Pong { nonce: 4 },
        ),
        (
            v2::ClientMsg::Resume { after: 7 },
            ClientMsg::Resume { after: 7, epoch: 0 },
        ),
    ];
    for (old, new) in cases {
        assert_eq!(ClientMsg::from(old), new);
    }
}

fn downgraded(msg: &ServerMsg) -> Vec<v2::ServerMsg> {
    let mut out = Vec::new();
    downgrade(msg, |m| out.push(m));
    out
}

#[test]
fn a_v2_client_is_sent_what_v2_can_carry() {
    let chat = |text: &str, kind| ServerMsg::Chat {
        seq: 4,
        time: 99,
        from: "bob".into(),
        text: text.into(),
        kind,
    };
    let v2_chat = |text: &str| {
        vec![v2::ServerMsg::Chat {
            seq: 4,
            from: "bob".into(),
            text: text.into(),
        }]
    };
    assert_eq!(downgraded(&chat("hi", ChatKind::Plain)), v2_chat("hi"));
    assert_eq!(
        downgraded(&chat("waves", ChatKind::Action)),
        v2_chat("/me waves")
    );
    assert_eq!(downgraded(&chat("fyi", ChatKind::Notice)), v2_chat("fyi"));
    assert_eq!(
        downgraded(&ServerMsg::Renamed {
            from: "alice".into(),
            to: "alicia".into(),
            time: 1,
        }),
        vec![
            v2::ServerMsg::Left {
                name: "alice".into(),
                reason: v2::CloseReason::Left
            },
            v2::ServerMsg::Joined {
                name: "alicia".into()
            },
        ]
    );
    assert_eq!(
        downgraded(&ServerMsg::Away {
            name: "bob".into(),
            message: Some("lunch".into()),
            time: 1,
        }),
        vec![]
    );
    // A v2 client cannot register: what accounts add is never sent to one.
    for msg in [
        ServerMsg::Registered { name: "bob".into() },
        ServerMsg::Unregistered { name: "bob".into() },
    ] {
        assert_eq!(downgraded(&msg), vec![]);
    }
    assert_eq!(
        downgraded(&ServerMsg::Left {
            name: "bob".into(),
            reason: CloseReason::Left,
            message: Some("bye".into()),
            time: 1,
        }),
        vec![v2::ServerMsg::Left {
            name: "bob".into(),
            reason: v2::CloseReason::Left
        }]
    );
    assert_eq!(
        downgraded(&ServerMsg::Joined {
            name: "carol".into(),
            time: 1,
            ident: Some(Arc::new(ident())),
        }),
        vec![v2::ServerMsg::Joined {
            name: "carol".into()
        }]
    );
    let welcome = ServerMsg::Welcome {
        name: "alice".into(),
        online: 2,
        members: members(),
        limits: limits(),
        seq: 41,
        epoch: 77,
    };
    let names: Vec<Arc<str>> = vec!["alice".into(), "bob".into()];
    assert_eq!(
        downgraded(&welcome),
        vec![v2::ServerMsg::Welcome {
            name: "alice".into(),
            online: 2,
            members: names.clone(),
            limits: limits(),
            seq: 41,
        }]
    );
    assert_eq!(
        downgraded(&ServerMsg::Members { members: members() }),
        vec![v2::ServerMsg::Members { names }]
    );
    let said = |seq, text: &str, kind| HistoryChat {
        seq,
        time: 5,
        from: "bob".into(),
        text: text.into(),
        kind,
    };
    let history = ServerMsg::History {
        chats: vec![
            said(1, "hi", ChatKind::Plain),
            said(2, "waves", ChatKind::Action),
            said(3, "fyi", ChatKind::Notice),
        ],
        missed: 3,
    };
    let v2_said = |seq, text: &str| v2::HistoryChat {
        seq,
        from: "bob".into(),
        text: text.into(),
    };
    assert_eq!(
        downgraded(&history),
        vec![v2::ServerMsg::History {
            chats: vec![v2_said(1, "hi"), v2_said(2, "/me waves"), v2_said(3, "fyi")],
            missed: 3,
        }]
    );
    for (msg, old) in [
        (
            ServerMsg::Ping { nonce: 1 },
            v2::ServerMsg::Ping { nonce: 1 },
        ),
        (
            ServerMsg::Pong { nonce: 2 },
            v2::ServerMsg::Pong { nonce: 2 },
        ),
        (
            ServerMsg::Closing(CloseReason::RoomReset),
            v2::ServerMsg::Closing(v2::CloseReason::RoomReset),
        ),
    ] {
        assert_eq!(downgraded(&msg), vec![old]);
    }
}

#[test]
fn refusals_and_errors_v2_does_not_know_become_the_nearest_it_does() {
    use v2::{ErrorKind as E2, Refusal as R2};
    let refusals = [
        (Refusal::NameTaken, R2::NameTaken),
        (
            Refusal::NameInvalid(NameRule::Control),
            R2::NameInvalid(NameRule::Control),
        ),
        (
            Refusal::UnsupportedVersion { supported: 3 },
            R2::UnsupportedVersion { supported: 3 },
        ),
        (Refusal::ServerFull, R2::ServerFull),
        (Refusal::AlreadyJoined, R2::AlreadyJoined),
        (Refusal::Unavailable, R2::Unavailable),
        (Refusal::TooManyConnections, R2::TooManyConnections),
        (Refusal::WrongPassword, R2::NameTaken),
        (Refusal::Banned { until: None }, R2::TooManyConnections),
        (Refusal::NameRegistered, R2::NameTaken),
        (
            Refusal::AccountRequired,
            R2::UnsupportedVersion {
                supported: PROTOCOL_VERSION,
            },
        ),
    ];
    for (new, old) in refusals {
        assert_eq!(
            downgraded(&ServerMsg::Refused(new)),
            vec![v2::ServerMsg::Refused(old)]
        );
    }
    let errors = [
        (
            ErrorKind::TextTooLong { max_bytes: 9 },
            Some(E2::TextTooLong { max_bytes: 9 }),
        ),
        (ErrorKind::TextEmpty, Some(E2::TextEmpty)),
        (ErrorKind::TextInvalid, Some(E2::TextInvalid)),
        (ErrorKind::RateLimited, Some(E2::RateLimited)),
        (ErrorKind::Unavailable, Some(E2::Unavailable)),
        (ErrorKind::NameTaken, None),
        (ErrorKind::NameInvalid(NameRule::Empty), None),
        (ErrorKind::NameRegistered, None),
        (ErrorKind::PasswordInvalid { max_bytes: 256 }, None),
        (ErrorKind::WrongPassword, None),
        (ErrorKind::NotRegistered, None),
        (ErrorKind::Busy, None),
        (ErrorKind::Muted { until: Some(1) }, Some(E2::RateLimited)),
        (ErrorKind::NotOperator, None),
        (ErrorKind::NoSuchMember, None),
        (ErrorKind::BadTarget, None),
        (ErrorKind::NotBanned, None),
        (ErrorKind::TooManyBans, None),
    ];
    for (new, old) in errors {
        let expected: Vec<_> = old.map(v2::ServerMsg::Error).into_iter().collect();
        assert_eq!(downgraded(&ServerMsg::Error(new)), expected);
    }
}

/// The enums v2 shares with v3 hold exactly the variants v2 knows: one added for v3 must get a
/// v2 copy and a mapping instead (see the `v2` module), as `CloseReason` has.
#[test]
fn the_enums_v2_shares_have_only_v2_s_variants() {
    let rules = |r: NameRule| match r {
        NameRule::Empty
        | NameRule::TooLong { .. }
        | NameRule::Whitespace
        | NameRule::Control
        | NameRule::Invisible
        | NameRule::MixedScript => 6,
    };
    assert_eq!(rules(NameRule::Empty), NAME_RULES.len());
}

#[test]
fn the_head_of_a_hello_is_read_without_the_rest() {
    let payload = |msg: &dyn erased::Encode| msg.payload();
    assert_eq!(
        peek_hello(&payload(&hello(PROTOCOL_VERSION, "a"))),
        Some((MAGIC, 3))
    );
    assert_eq!(peek_hello(&payload(&v2_hello(2, "a"))), Some((MAGIC, 2)));
    // A v1 hello, or a version from the future with fields nobody here knows.
    let mut future = payload(&v2_hello(900, "a"));
    future.extend_from_slice(&[0xff, 0xff, 0xff]);
    assert_eq!(peek_hello(&future), Some((MAGIC, 900)));
    assert_eq!(peek_hello(&payload(&ClientMsg::Who)), None);
    // Cut before the version, or a version past u16: no head.
    assert_eq!(peek_hello(&[0, 0xd4, 0x82, 0xa1, 0x9a, 4]), None);
    assert_eq!(peek_hello(&[0, 1, 0xff, 0xff, 0x7f]), None);
    assert_eq!(peek_hello(&[]), None);
}

/// Encoding for the peek test, whichever version's message.
mod erased {
    pub trait Encode {
        fn payload(&self) -> Vec<u8>;
    }

    impl<T: serde::Serialize> Encode for T {
        fn payload(&self) -> Vec<u8> {
            postcard::to_allocvec(self).unwrap()
        }
    }
}

/// Feeds `bytes` to a reader in two reads, cut at `cut`, and reads every frame with one
/// connection's [`ClientDecoder`].
fn read_client(bytes: &[u8], cut: usize) -> (Result<Vec<ClientMsg>, DecodeError>, ClientDecoder) {
    let mut reader = FrameReader::new(2048);
    let mut client = ClientDecoder::new();
    let mut out = Vec::new();
    for chunk in [&bytes[..cut], &bytes[cut..]] {
        reader.buf()[..chunk.len()].copy_from_slice(chunk);
        reader.filled(chunk.len());
        loop {
            match reader.next_with(|p| client.decode(p)) {
                Ok(Some(msg)) => out.push(msg),
                Ok(None) => break,
                Err(error) => return (Err(error), client),
            }
        }
    }
    (Ok(out), client)
}

#[test]
fn a_v2_and_a_v3_client_are_read_by_their_hello_split_at_every_byte() {
    let mut v2_bytes = Vec::new();
    let v2_frames = [
        v2::ClientMsg::Resume { after: 4 },
        v2_hello(2, "old"),
        v2::ClientMsg::Chat {
            text: "/me waves".into(),
        },
        v2::ClientMsg::Leave,
    ];
    for msg in &v2_frames {
        encode(msg, &mut v2_bytes).unwrap();
    }
    let v2_meant: Vec<ClientMsg> = v2_frames.into_iter().map(ClientMsg::from).collect();
    let mut v3_bytes = Vec::new();
    let v3_frames = every_client_msg();
    encode(&ClientMsg::Resume { after: 4, epoch: 8 }, &mut v3_bytes).unwrap();
    for msg in &v3_frames {
        encode(msg, &mut v3_bytes).unwrap();
    }
    let mut v3_meant = vec![ClientMsg::Resume { after: 4, epoch: 8 }];
    v3_meant.extend(v3_frames);
    for (bytes, meant, version) in [(v2_bytes, v2_meant, 2), (v3_bytes, v3_meant, 3)] {
        for cut in 0..=bytes.len() {
            let (got, client) = read_client(&bytes, cut);
            assert_eq!(got.as_ref(), Ok(&meant), "v{version} cut at {cut}");
            assert_eq!(client.version(), Some(version));
        }
    }
}

#[test]
fn a_hello_of_an_unknown_version_passes_on_as_one_so_that_the_room_refuses_it() {
    let mut bytes = encode_to_vec(&v2_hello(1, "old")).unwrap();
    bytes.extend(encode_to_vec(&hello(PROTOCOL_VERSION, "new")).unwrap());
    let (got, client) = read_client(&bytes, 0);
    assert_eq!(
        got,
        Ok(vec![
            ClientMsg::Hello {
                magic: MAGIC,
                version: 1,
                name: String::new(),
                password: None,
                ident: None,
            },
            hello(PROTOCOL_VERSION, "new"),
        ])
    );
    assert_eq!(client.version(), Some(PROTOCOL_VERSION));
}

#[test]
fn after_its_hello_a_connection_s_frames_are_read_by_its_version_alone() {
    // A v2 chat after a v3 hello is a frame cut short, not a v2 chat.
    let mut bytes = encode_to_vec(&hello(PROTOCOL_VERSION, "new")).unwrap();
    bytes.extend(encode_to_vec(&v2::ClientMsg::Chat { text: "hi".into() }).unwrap());
    let (got, _) = read_client(&bytes, 0);
    assert!(matches!(got, Err(DecodeError::Malformed(_))), "{got:?}");
    // A v3 chat after a v2 hello has a byte v2 does not.
    let mut bytes = encode_to_vec(&v2_hello(2, "old")).unwrap();
    bytes.extend(
        encode_to_vec(&ClientMsg::Chat {
            text: "hi".into(),
            kind: ChatKind::Plain,
        })
        .unwrap(),
    );
    let (got, _) = read_client(&bytes, 0);
    assert_eq!(got, Err(DecodeError::TrailingBytes { extra: 1 }));
    // Before any hello, garbage is refused as v3 refuses it.
    let (got, client) = read_client(&[1, 0, 0, 0, 200], 0);
    assert!(matches!(got, Err(DecodeError::Malformed(_))), "{got:?}");
    assert_eq!(client.version(), None);
}

// Limits: what a frame of the largest allowed texts takes, exactly or at most.

#[test]
fn a_chat_leave_or_away_of_the_longest_text_takes_exactly_chat_payload_len() {
    for len in [0u32, 1, 127, 128, 16_383, 16_384, 70_000] {
        let text = "x".repeat(len as usize);
        let msgs = [
            ClientMsg::Chat {
                text: text.clone(),
                kind: ChatKind::Notice,
            },
            ClientMsg::Leave {
                message: Some(text.clone()),
            },
            ClientMsg::Away {
                message: Some(text.clone()),
            },
        ];
        for msg in msgs {
            let payload = encode_to_vec(&msg).unwrap().len() - PREFIX_LEN;
            assert_eq!(payload as u64, chat_payload_len(len), "{len} bytes");
        }
    }
}

/// A member with the longest name, away message and ident the limits allow.
fn widest_member(name_chars: u32, away_bytes: u32) -> Member {
    let wide = |chars: u32| "😀".repeat(chars as usize); // 4 bytes a character
    Member {
        name: wide(name_chars).into(),
        away: Some("x".repeat(away_bytes as usize).into()),
        ident: Some(Arc::new(Ident {
            user: "u".repeat(Ident::MAX_USER_BYTES as usize),
            realname: "r".repeat(Ident::MAX_REALNAME_BYTES as usize),
        })),
    }
}

#[test]
fn the_widest_member_list_and_history_fit_their_bounds() {
    for (count, name_chars, away_bytes) in [(0, 1, 1), (3, 32, 200), (200, 64, 1024)] {
        let list = vec![widest_member(name_chars, away_bytes); count as usize];
        let welcome = ServerMsg::Welcome {
            name: list.first().map_or("x".into(), |m| m.name.to_string()),
            online: u32::MAX,
            members: list.clone(),
            limits: Limits {
                max_name_chars: u32::MAX,
                max_text_bytes: u32::MAX,
                max_frame_bytes: u32::MAX,
                rate_per_sec: u32::MAX,
                burst: u32::MAX,
                idle_timeout_ms: u64::MAX,
            },
            seq: u64::MAX,
            epoch: u64::MAX,
        };
        let bound = member_list_payload_max(count, name_chars, away_bytes);
        for msg in [welcome, ServerMsg::Members { members: list }] {
            let payload = encode_to_vec(&msg).unwrap().len() - PREFIX_LEN;
            assert!(payload as u64 <= bound, "{payload} > {bound}");
        }
    }
    for (count, name_chars, text_bytes) in [(0, 1, 1), (5, 32, 1024), (100, 64, 4096)] {
        let chat = HistoryChat {
            seq: u64::MAX,
            time: u64::MAX,
            from: "😀".repeat(name_chars as usize).into(),
            text: "x".repeat(text_bytes as usize).into(),
            kind: ChatKind::Notice,
        };
        let history = ServerMsg::History {
            chats: vec![chat; count as usize],
            missed: u64::MAX,
        };
        let payload = encode_to_vec(&history).unwrap().len() - PREFIX_LEN;
        let bound = history_payload_max(count, name_chars, text_bytes);
        assert!(payload as u64 <= bound, "{payload} > {bound}");
    }
}

#[test]
fn a_v2_client_sees_a_kick_or_a_ban_as_the_nearest_close_it_knows_and_no_moderation_notice() {
    for (reason, old) in [
        (CloseReason::Kicked, v2::CloseReason::Left),
        (CloseReason::Banned, v2::CloseReason::TooManyConnections),
        (CloseReason::TooSlow, v2::CloseReason::TooSlow),
    ] {
        assert_eq!(
            downgraded(&ServerMsg::Closing(reason)),
            vec![v2::ServerMsg::Closing(old)]
        );
    }
    // Every v3 reason has a v2 one, with the same position where v2 knows it.
    for reason in CloseReason::ALL {
        let old = v2::downgrade_reason(reason);
        if !matches!(reason, CloseReason::Kicked | CloseReason::Banned) {
            assert_eq!(
                encode_to_vec(&ServerMsg::Closing(reason)).unwrap()[4..],
                encode_to_vec(&v2::ServerMsg::Closing(old)).unwrap()[4..],
                "{reason:?}"
            );
        }
    }
    let notice = ServerMsg::Moderated {
        by: "alice".into(),
        action: ModAction::Kicked {
            name: "bob".into(),
            reason: None,
        },
        time: 1,
    };
    assert_eq!(downgraded(&notice), vec![]);
    let bans = ServerMsg::Bans {
        bans: vec![],
        mutes: vec![],
    };
    assert_eq!(downgraded(&bans), vec![]);
}
