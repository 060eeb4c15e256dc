use std::sync::Arc;

use super::*;
use proptest::prelude::*;

mod versions;

fn limits() -> Limits {
    Limits {
        max_name_chars: 32,
        max_text_bytes: 1024,
        max_frame_bytes: 2048,
        rate_per_sec: 10,
        burst: 20,
        idle_timeout_ms: 60_000,
    }
}

/// `msgs` encoded one after another, and the points where they are cut (the ends included,
/// in order): the chunks a reader is fed in the random-split tests.
fn encoded_with_cuts(msgs: &[ClientMsg], cuts: &[prop::sample::Index]) -> (Vec<u8>, Vec<usize>) {
    let mut bytes = Vec::new();
    for m in msgs {
        encode(m, &mut bytes).unwrap();
    }
    let mut points: Vec<usize> = cuts.iter().map(|i| i.index(bytes.len() + 1)).collect();
    points.push(0);
    points.push(bytes.len());
    points.sort_unstable();
    (bytes, points)
}

fn hello(version: u16, name: &str) -> ClientMsg {
    ClientMsg::Hello {
        magic: MAGIC,
        version,
        name: name.into(),
        password: None,
        ident: None,
    }
}

fn ident() -> Ident {
    Ident {
        user: "~alice".into(),
        realname: "Alice Liddell".into(),
    }
}

fn every_client_msg() -> Vec<ClientMsg> {
    vec![
        hello(PROTOCOL_VERSION, "alice"),
        ClientMsg::Hello {
            magic: MAGIC,
            version: PROTOCOL_VERSION,
            name: "alice".into(),
            password: Some("secret".into()),
            ident: Some(ident()),
        },
        ClientMsg::Chat {
            text: "hello, world ✓".into(),
            kind: ChatKind::Plain,
        },
        ClientMsg::Chat {
            text: "waves".into(),
            kind: ChatKind::Action,
        },
        ClientMsg::Chat {
            text: "fyi".into(),
            kind: ChatKind::Notice,
        },
        ClientMsg::Leave { message: None },
        ClientMsg::Leave {
            message: Some("gone for lunch".into()),
        },
        ClientMsg::Who,
        ClientMsg::Ping { nonce: u64::MAX },
        ClientMsg::Pong { nonce: 7 },
        ClientMsg::Resume {
            after: 41,
            epoch: u64::MAX,
        },
        ClientMsg::Nick {
            name: "alicia".into(),
        },
        ClientMsg::Away {
            message: Some("lunch".into()),
        },
        ClientMsg::Away { message: None },
        ClientMsg::Register {
            password: "correct horse".into(),
        },
        ClientMsg::Passwd {
            old: "correct horse".into(),
            new: "battery staple".into(),
        },
        ClientMsg::Unregister,
        ClientMsg::Kick {
            name: "bob".into(),
            reason: Some("spam".into()),
        },
        ClientMsg::Ban {
            target: "2001:db8::/32".into(),
            duration_secs: Some(600),
            reason: None,
        },
        ClientMsg::Unban {
            target: "bob".into(),
        },
        ClientMsg::Mute {
            name: "bob".into(),
            duration_secs: None,
        },
        ClientMsg::Unmute { name: "bob".into() },
        ClientMsg::Bans,
    ]
}

fn members() -> Vec<Member> {
    vec![
        Member {
            name: "alice".into(),
            away: None,
            ident: None,
        },
        Member {
            name: "bob".into(),
            away: Some("lunch".into()),
            ident: Some(Arc::new(ident())),
        },
    ]
}

fn every_server_msg() -> Vec<ServerMsg> {
    let mut all = vec![
        ServerMsg::Welcome {
            name: "alice".into(),
            online: 2,
            members: members(),
            limits: limits(),
            seq: 41,
            epoch: 0xdead_beef_0000_0001,
        },
        ServerMsg::Refused(Refusal::NameTaken),
        ServerMsg::Refused(Refusal::UnsupportedVersion { supported: 1 }),
        ServerMsg::Refused(Refusal::ServerFull),
        ServerMsg::Refused(Refusal::AlreadyJoined),
        ServerMsg::Refused(Refusal::Unavailable),
        ServerMsg::Refused(Refusal::TooManyConnections),
        ServerMsg::Refused(Refusal::WrongPassword),
        ServerMsg::Refused(Refusal::NameRegistered),
        ServerMsg::Refused(Refusal::AccountRequired),
        ServerMsg::Refused(Refusal::Banned { until: None }),
        ServerMsg::Refused(Refusal::Banned {
            until: Some(1_700_000_000_000),
        }),
        ServerMsg::Error(ErrorKind::NotOperator),
        ServerMsg::Error(ErrorKind::Muted { until: Some(5) }),
        ServerMsg::Error(ErrorKind::NoSuchMember),
        ServerMsg::Error(ErrorKind::BadTarget),
        ServerMsg::Error(ErrorKind::NotBanned),
        ServerMsg::Error(ErrorKind::TooManyBans),
        ServerMsg::Moderated {
            by: "alice".into(),
            action: ModAction::Kicked {
                name: "bob".into(),
                reason: Some("spam".into()),
            },
            time: 9,
        },
        ServerMsg::Moderated {
            by: "alice".into(),
            action: ModAction::Banned {
                target: "192.0.2.0/24".into(),
                until: Some(10),
                reason: None,
            },
            time: 9,
        },
        ServerMsg::Moderated {
            by: "alice".into(),
            action: ModAction::Unbanned {
                target: "bob".into(),
            },
            time: 9,
        },
        ServerMsg::Moderated {
            by: "alice".into(),
            action: ModAction::Muted {
                name: "bob".into(),
                until: None,
            },
            time: 9,
        },
        ServerMsg::Moderated {
            by: "alice".into(),
            action: ModAction::Unmuted { name: "bob".into() },
            time: 9,
        },
        ServerMsg::Bans {
            bans: vec![BanInfo {
                target: "bob".into(),
                until: None,
                reason: Some("spam".into()),
                by: "alice".into(),
                since: 3,
            }],
            mutes: vec![MuteInfo {
                name: "carol".into(),
                until: Some(4),
                by: "alice".into(),
            }],
        },
        ServerMsg::Joined {
            name: "carol".into(),
            time: 1_700_000_000_000,
            ident: None,
        },
        ServerMsg::Joined {
            name: "carol".into(),
            time: 1,
            ident: Some(Arc::new(ident())),
        },
        ServerMsg::Members { members: members() },
        ServerMsg::Error(ErrorKind::TextTooLong { max_bytes: 1024 }),
        ServerMsg::Error(ErrorKind::TextEmpty),
        ServerMsg::Error(ErrorKind::TextInvalid),
        ServerMsg::Error(ErrorKind::RateLimited),
        ServerMsg::Error(ErrorKind::Unavailable),
        ServerMsg::Error(ErrorKind::NameTaken),
        ServerMsg::Ping { nonce: 1 },
        ServerMsg::Pong { nonce: 2 },
        ServerMsg::History {
            chats: vec![HistoryChat {
                seq: 3,
                time: 1_700_000_000_123,
                from: "bob".into(),
                text: "hi".into(),
                kind: ChatKind::Action,
            }],
            missed: 2,
        },
        ServerMsg::Renamed {
            from: "alice".into(),
            to: "alicia".into(),
            time: u64::MAX,
        },
        ServerMsg::Away {
            name: "bob".into(),
            message: Some("lunch".into()),
            time: 5,
        },
        ServerMsg::Away {
            name: "bob".into(),
            message: None,
            time: 6,
        },
        ServerMsg::Registered {
            name: "alice".into(),
        },
        ServerMsg::Unregistered {
            name: "alice".into(),
        },
        ServerMsg::Error(ErrorKind::NameRegistered),
        ServerMsg::Error(ErrorKind::PasswordInvalid { max_bytes: 256 }),
        ServerMsg::Error(ErrorKind::WrongPassword),
        ServerMsg::Error(ErrorKind::NotRegistered),
        ServerMsg::Error(ErrorKind::Busy),
    ];
    for kind in [ChatKind::Plain, ChatKind::Action, ChatKind::Notice] {
        all.push(ServerMsg::Chat {
            seq: 42,
            time: 1_700_000_000_000,
            from: "bob".into(),
            text: "hi".into(),
            kind,
        });
    }
    for rule in NAME_RULES {
        all.push(ServerMsg::Refused(Refusal::NameInvalid(rule)));
        all.push(ServerMsg::Error(ErrorKind::NameInvalid(rule)));
    }
    for reason in CloseReason::ALL {
        all.push(ServerMsg::Left {
            name: "dave".into(),
            reason,
            message: None,
            time: 7,
        });
        all.push(ServerMsg::Closing(reason));
    }
    all.push(ServerMsg::Left {
        name: "dave".into(),
        reason: CloseReason::Left,
        message: Some("bye".into()),
        time: 8,
    });
    all
}

const NAME_RULES: [NameRule; 6] = [
    NameRule::Empty,
    NameRule::TooLong { max_chars: 32 },
    NameRule::Whitespace,
    NameRule::Control,
    NameRule::Invisible,
    NameRule::MixedScript,
];

fn decode_all<T: serde::de::DeserializeOwned>(
    decoder: &mut FrameDecoder,
    chunks: &[&[u8]],
) -> Result<Vec<T>, DecodeError> {
    let mut out = Vec::new();
    for chunk in chunks {
        let mut input = *chunk;
        while let Some(msg) = decoder.decode(&mut input)? {
            out.push(msg);
        }
        assert!(input.is_empty(), "decode returned None with input left");
    }
    Ok(out)
}

#[test]
fn every_variant_round_trips() {
    let mut decoder = FrameDecoder::new(MAX_SERVER_FRAME);
    for msg in every_client_msg() {
        let bytes = encode_to_vec(&msg).unwrap();
        assert_eq!(
            decode_all::<ClientMsg>(&mut decoder, &[&bytes]).unwrap(),
            vec![msg]
        );
    }
    for msg in every_server_msg() {
        let bytes = encode_to_vec(&msg).unwrap();
        assert_eq!(
            decode_all::<ServerMsg>(&mut decoder, &[&bytes]).unwrap(),
            vec![msg]
        );
    }
}

#[test]
fn one_byte_at_a_time_matches_whole() {
    let msgs = every_server_msg();
    let mut bytes = Vec::new();
    for m in &msgs {
        encode(m, &mut bytes).unwrap();
    }
    let chunks: Vec<&[u8]> = bytes.chunks(1).collect();
    let mut decoder = FrameDecoder::new(MAX_SERVER_FRAME);
    assert_eq!(
        decode_all::<ServerMsg>(&mut decoder, &chunks).unwrap(),
        msgs
    );
    assert_eq!(decoder.buffered(), 0);
}

fn frame_of_payload_len(len: usize) -> Vec<u8> {
    // A chat whose text makes the payload exactly `len` bytes: tag (1) + varint length + text +
    // kind (1).
    for varint in 1..=3 {
        let text_len = len - 2 - varint;
        let bytes = encode_to_vec(&ClientMsg::Chat {
            text: "x".repeat(text_len),
            kind: ChatKind::Plain,
        })
        .unwrap();
        if bytes.len() - PREFIX_LEN == len {
            return bytes;
        }
    }
    unreachable!("no text length gives payload {len}")
}

#[test]
fn frame_of_exactly_the_limit_is_accepted_and_one_more_refused() {
    let max = 2048;
    let at = frame_of_payload_len(max as usize);
    let over = frame_of_payload_len(max as usize + 1);
    let mut decoder = FrameDecoder::new(max);
    assert_eq!(
        decode_all::<ClientMsg>(&mut decoder, &[&at]).unwrap().len(),
        1
    );
    let mut decoder = FrameDecoder::new(max);
    assert_eq!(
        decode_all::<ClientMsg>(&mut decoder, &[&over]),
        Err(DecodeError::FrameTooLarge { len: max + 1, max })
    );
    // Split: the refusal comes as soon as the prefix is complete, before any payload arrives.
    let mut decoder = FrameDecoder::new(max);
    assert_eq!(
        decode_all::<ClientMsg>(&mut decoder, &[&over[..2], &over[2..4]]),
        Err(DecodeError::FrameTooLarge { len: max + 1, max })
    );
}

#[test]
fn huge_length_prefix_is_refused_without_allocating() {
    let mut decoder = FrameDecoder::new(2048);
    let mut input: &[u8] = &[0xff, 0xff, 0xff, 0xff, 1, 2, 3];
    assert_eq!(
        decoder.decode::<ClientMsg>(&mut input),
        Err(DecodeError::FrameTooLarge {
            len: u32::MAX,
            max: 2048
        })
    );
    assert_eq!(decoder.buffered(), 0);
    // Prefix fed in pieces: still refused, and the partial buffer never held more than the prefix.
    let mut decoder = FrameDecoder::new(2048);
    assert_eq!(
        decoder.decode::<ClientMsg>(&mut &[0xff, 0xff][..]),
        Ok(None)
    );
    assert_eq!(
        decoder.decode::<ClientMsg>(&mut &[0xff, 0xff][..]),
        Err(DecodeError::FrameTooLarge {
            len: u32::MAX,
            max: 2048
        })
    );
    assert!(decoder.buffered() <= PREFIX_LEN);
}

#[test]
fn trailing_bytes_after_a_message_are_refused() {
    let mut payload = postcard::to_allocvec(&ClientMsg::Who).unwrap();
    payload.push(0);
    let mut frame = (payload.len() as u32).to_le_bytes().to_vec();
    frame.extend_from_slice(&payload);
    let mut decoder = FrameDecoder::new(2048);
    assert_eq!(
        decode_all::<ClientMsg>(&mut decoder, &[&frame]),
        Err(DecodeError::TrailingBytes { extra: 1 })
    );
}

#[test]
fn unknown_tag_is_refused() {
    let frame = [1, 0, 0, 0, 200];
    let mut decoder = FrameDecoder::new(2048);
    assert!(matches!(
        decode_all::<ClientMsg>(&mut decoder, &[&frame]),
        Err(DecodeError::Malformed(_))
    ));
}

#[test]
fn empty_payload_is_malformed() {
    let frame = [0, 0, 0, 0];
    let mut decoder = FrameDecoder::new(2048);
    assert!(matches!(
        decode_all::<ClientMsg>(&mut decoder, &[&frame]),
        Err(DecodeError::Malformed(_))
    ));
}

#[test]
fn string_length_beyond_frame_is_malformed_not_allocated() {
    // Chat tag, then a varint string length of ~2^28 with only 3 bytes behind it.
    let payload = [1u8, 0xff, 0xff, 0xff, 0x7f, b'a', b'b', b'c'];
    let mut frame = (payload.len() as u32).to_le_bytes().to_vec();
    frame.extend_from_slice(&payload);
    let mut decoder = FrameDecoder::new(2048);
    assert!(matches!(
        decode_all::<ClientMsg>(&mut decoder, &[&frame]),
        Err(DecodeError::Malformed(_))
    ));
}

#[test]
fn display_texts_are_one_line() {
    for reason in CloseReason::ALL {
        assert!(!reason.to_string().contains('\n'));
    }
    assert_eq!(
        Refusal::NameTaken.to_string(),
        "name is taken; choose another"
    );
}

fn arb_text() -> impl Strategy<Value = String> {
    prop_oneof![".{0,40}", "[a-z]{0,300}"]
}

fn arb_kind() -> impl Strategy<Value = ChatKind> {
    prop_oneof![
        Just(ChatKind::Plain),
        Just(ChatKind::Action),
        Just(ChatKind::Notice)
    ]
}

fn arb_ident() -> impl Strategy<Value = Option<Ident>> {
    proptest::option::of(
        (arb_text(), arb_text()).prop_map(|(user, realname)| Ident { user, realname }),
    )
}

fn arb_client_msg() -> impl Strategy<Value = ClientMsg> {
    prop_oneof![
        (
            any::<u32>(),
            any::<u16>(),
            arb_text(),
            proptest::option::of(arb_text()),
            arb_ident()
        )
            .prop_map(|(magic, version, name, password, ident)| {
                ClientMsg::Hello {
                    magic,
                    version,
                    name,
                    password: password.map(Password::from),
                    ident,
                }
            }),
        (arb_text(), arb_kind()).prop_map(|(text, kind)| ClientMsg::Chat { text, kind }),
        proptest::option::of(arb_text()).prop_map(|message| ClientMsg::Leave { message }),
        Just(ClientMsg::Who),
        any::<u64>().prop_map(|nonce| ClientMsg::Ping { nonce }),
        any::<u64>().prop_map(|nonce| ClientMsg::Pong { nonce }),
        (any::<u64>(), any::<u64>()).prop_map(|(after, epoch)| ClientMsg::Resume { after, epoch }),
        arb_text().prop_map(|name| ClientMsg::Nick { name }),
        proptest::option::of(arb_text()).prop_map(|message| ClientMsg::Away { message }),
        arb_text().prop_map(|p| ClientMsg::Register { password: p.into() }),
        (arb_text(), arb_text()).prop_map(|(old, new)| ClientMsg::Passwd {
            old: old.into(),
            new: new.into()
        }),
        Just(ClientMsg::Unregister),
    ]
}

#[test]
fn a_password_is_a_plain_string_on_the_wire_and_never_printed() {
    let hello = ClientMsg::Hello {
        magic: MAGIC,
        version: PROTOCOL_VERSION,
        name: "alice".into(),
        password: Some("hunter2".into()),
        ident: None,
    };
    assert!(!format!("{hello:?}").contains("hunter2"));
    let register = ClientMsg::Register {
        password: "hunter2".into(),
    };
    assert!(!format!("{register:?}").contains("hunter2"));
    // The same bytes as the `Option<String>` the field was before accounts.
    let mut as_string = Vec::new();
    postcard::to_io(&Some("hunter2".to_owned()), &mut as_string).unwrap();
    let mut as_password = Vec::new();
    postcard::to_io(&Some(Password::from("hunter2")), &mut as_password).unwrap();
    assert_eq!(as_string, as_password);
    assert!(Password::from("x").is_valid());
    assert!(!Password::from("").is_valid());
    assert!(Password::from("x".repeat(MAX_PASSWORD_BYTES)).is_valid());
    assert!(!Password::from("x".repeat(MAX_PASSWORD_BYTES + 1)).is_valid());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    #[test]
    fn random_splits_decode_the_same(
        msgs in proptest::collection::vec(arb_client_msg(), 0..20),
        cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..30),
    ) {
        let (bytes, points) = encoded_with_cuts(&msgs, &cuts);
        let chunks: Vec<&[u8]> = points.windows(2).map(|w| &bytes[w[0]..w[1]]).collect();
        let mut decoder = FrameDecoder::new(4096);
        prop_assert_eq!(decode_all::<ClientMsg>(&mut decoder, &chunks).unwrap(), msgs);
        prop_assert_eq!(decoder.buffered(), 0);
    }

    #[test]
    fn mutated_frames_never_panic(
        msgs in proptest::collection::vec(arb_client_msg(), 1..5),
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        split in any::<prop::sample::Index>(),
    ) {
        let mut bytes = Vec::new();
        for m in &msgs {
            encode(m, &mut bytes).unwrap();
        }
        for (at, byte) in flips {
            let i = at.index(bytes.len());
            bytes[i] = byte;
        }
        let cut = split.index(bytes.len() + 1);
        let mut decoder = FrameDecoder::new(4096);
        let split = decode_all::<ClientMsg>(&mut decoder, &[&bytes[..cut], &bytes[cut..]]);
        prop_assert!(decoder.buffered() <= PREFIX_LEN + 4096);
        // Where the bytes were cut changes nothing: the same messages, or the same error.
        let whole = decode_all::<ClientMsg>(&mut FrameDecoder::new(4096), &[&bytes]);
        prop_assert_eq!(&split, &whole);
        assert_sane_outcome(&split, 4096);
        // Flips that happened to write the byte already there leave the frames as they were.
        let mut original = Vec::new();
        for m in &msgs {
            encode(m, &mut original).unwrap();
        }
        if bytes == original {
            prop_assert_eq!(split, Ok(msgs));
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(10_000))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let one_byte_at_a_time: Vec<&[u8]> = bytes.chunks(1).collect();
        let mut decoder = FrameDecoder::new(128);
        let whole = decode_all::<ClientMsg>(&mut decoder, &[&bytes]);
        prop_assert!(decoder.buffered() <= PREFIX_LEN + 128);
        assert_sane_outcome(&whole, 128);
        let bytewise = decode_all::<ClientMsg>(&mut FrameDecoder::new(128), &one_byte_at_a_time);
        prop_assert_eq!(whole, bytewise);
        let mut decoder = FrameDecoder::new(128);
        let whole = decode_all::<ServerMsg>(&mut decoder, &[&bytes]);
        prop_assert!(decoder.buffered() <= PREFIX_LEN + 128);
        assert_sane_outcome(&whole, 128);
        let bytewise = decode_all::<ServerMsg>(&mut FrameDecoder::new(128), &one_byte_at_a_time);
        prop_assert_eq!(whole, bytewise);
    }
}

/// What any outcome of decoding garbage must satisfy: an oversized frame is refused for a length
/// really over the limit; every message decoded fits in a frame within the limit.
fn assert_sane_outcome<T: serde::Serialize>(outcome: &Result<Vec<T>, DecodeError>, max: u32) {
    match outcome {
        Err(DecodeError::FrameTooLarge { len, max: limit }) => {
            assert_eq!(*limit, max);
            assert!(
                *len > max,
                "refused a length of {len} under the limit {max}"
            );
        }
        Err(DecodeError::TrailingBytes { extra }) => assert!(*extra > 0),
        Err(DecodeError::Malformed(_)) => {}
        Ok(msgs) => {
            for msg in msgs {
                let frame = encode_to_vec(msg).unwrap();
                assert!(frame.len() <= PREFIX_LEN + max as usize);
            }
        }
    }
}

// FrameReader: the read buffer and decoder together.

/// Feeds `chunks` to `reader` as successive reads (each at most the space offered) and
/// collects every message, draining after each read as a driver must.
fn read_all<T: serde::de::DeserializeOwned>(
    reader: &mut FrameReader,
    chunks: &[&[u8]],
) -> Result<Vec<T>, DecodeError> {
    let mut out = Vec::new();
    for chunk in chunks {
        let mut chunk = *chunk;
        while !chunk.is_empty() {
            let space = reader.buf();
            let n = space.len().min(chunk.len());
            space[..n].copy_from_slice(&chunk[..n]);
            reader.filled(n);
            chunk = &chunk[n..];
            while let Some(msg) = reader.next()? {
                out.push(msg);
            }
        }
    }
    Ok(out)
}

fn all_server_frames() -> (Vec<ServerMsg>, Vec<u8>) {
    let msgs = every_server_msg();
    let mut bytes = Vec::new();
    for m in &msgs {
        encode(m, &mut bytes).unwrap();
    }
    (msgs, bytes)
}

#[test]
fn reader_yields_whole_frames_one_read_each() {
    let mut reader = FrameReader::new(MAX_SERVER_FRAME);
    for msg in every_server_msg() {
        let bytes = encode_to_vec(&msg).unwrap();
        assert_eq!(read_all::<ServerMsg>(&mut reader, &[&bytes]), Ok(vec![msg]));
        assert_eq!(reader.buffered(), 0);
    }
}

#[test]
fn reader_yields_many_frames_from_one_read() {
    let (msgs, bytes) = all_server_frames();
    assert!(
        bytes.len() <= MIN_READ_CHUNK,
        "the test wants a single read"
    );
    let mut reader = FrameReader::new(MAX_SERVER_FRAME);
    assert_eq!(read_all::<ServerMsg>(&mut reader, &[&bytes]), Ok(msgs));
    assert_eq!(reader.buffered(), 0);
}

#[test]
fn reader_splits_at_every_byte_decode_the_same() {
    let (msgs, bytes) = all_server_frames();
    for cut in 0..=bytes.len() {
        let mut reader = FrameReader::new(MAX_SERVER_FRAME);
        let got = read_all::<ServerMsg>(&mut reader, &[&bytes[..cut], &bytes[cut..]]);
        assert_eq!(got.as_ref(), Ok(&msgs), "cut at {cut}");
        assert_eq!(reader.buffered(), 0, "cut at {cut}");
    }
}

#[test]
fn reader_one_byte_at_a_time_matches_whole() {
    let (msgs, bytes) = all_server_frames();
    let chunks: Vec<&[u8]> = bytes.chunks(1).collect();
    let mut reader = FrameReader::new(MAX_SERVER_FRAME);
    assert_eq!(read_all::<ServerMsg>(&mut reader, &chunks), Ok(msgs));
}

#[test]
fn reader_gathers_a_frame_larger_than_one_read() {
    let big = frame_of_payload_len(3 * MAX_READ_CHUNK);
    let mut reader = FrameReader::new(4 * MAX_READ_CHUNK as u32);
    let got = read_all::<ClientMsg>(&mut reader, &[&big]).unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(reader.buffered(), 0);
}

#[test]
fn reader_refuses_an_oversize_frame_before_its_payload() {
    let max = 2048;
    let at = frame_of_payload_len(max as usize);
    let over = frame_of_payload_len(max as usize + 1);
    let mut reader = FrameReader::new(max);
    assert_eq!(
        read_all::<ClientMsg>(&mut reader, &[&at]).map(|m| m.len()),
        Ok(1)
    );
    let mut reader = FrameReader::new(max);
    let refused = Err(DecodeError::FrameTooLarge { len: max + 1, max });
    assert_eq!(
        read_all::<ClientMsg>(&mut reader, &[&over[..PREFIX_LEN]]),
        refused
    );
    // A huge announced length allocates nothing beyond the read space.
    let mut reader = FrameReader::new(max);
    let huge = [0xff, 0xff, 0xff, 0xff, 1, 2, 3];
    assert!(read_all::<ClientMsg>(&mut reader, &[&huge]).is_err());
    assert!(reader.buffered() <= PREFIX_LEN);
    assert_eq!(reader.capacity(), 0);
}

#[test]
fn reader_refuses_malformed_frames_and_stays_failed() {
    let mut reader = FrameReader::new(2048);
    let mut bytes = vec![1, 0, 0, 0, 200]; // unknown tag
    bytes.extend_from_slice(&encode_to_vec(&ClientMsg::Who).unwrap());
    let first = read_all::<ClientMsg>(&mut reader, &[&bytes]);
    assert!(matches!(first, Err(DecodeError::Malformed(_))), "{first:?}");
    // The stream is out of step: the valid frame behind the bad one is not decoded.
    assert_eq!(reader.next::<ClientMsg>(), first.map(|_| None));
    assert_eq!(reader.capacity(), 0);

    let mut payload = postcard::to_allocvec(&ClientMsg::Who).unwrap();
    payload.push(0);
    let mut frame = (payload.len() as u32).to_le_bytes().to_vec();
    frame.extend_from_slice(&payload);
    let mut reader = FrameReader::new(2048);
    assert_eq!(
        read_all::<ClientMsg>(&mut reader, &[&frame]),
        Err(DecodeError::TrailingBytes { extra: 1 })
    );
}

#[test]
fn reader_holds_no_read_buffer_when_idle() {
    let (_, bytes) = all_server_frames();
    let mut reader = FrameReader::new(MAX_SERVER_FRAME);
    assert_eq!(reader.capacity(), 0);
    read_all::<ServerMsg>(&mut reader, &[&bytes]).unwrap();
    assert_eq!(reader.capacity(), 0);
    // Half a frame waits in the decoder, which keeps only what it needs.
    let frame = frame_of_payload_len(1000);
    let mut reader = FrameReader::new(2048);
    read_all::<ClientMsg>(&mut reader, &[&frame[..500]]).unwrap();
    assert_eq!(reader.capacity(), 0);
    assert_eq!(reader.buffered(), 500);
}

#[test]
fn reader_read_space_grows_with_full_reads_and_shrinks_with_small_ones() {
    // 16-byte frames, so that reads of a power of two bytes end between frames.
    let frame = frame_of_payload_len(16 - PREFIX_LEN);
    let stream: Vec<u8> = frame.iter().copied().cycle().take(1 << 20).collect();
    let who = encode_to_vec(&ClientMsg::Who).unwrap();
    let mut reader = FrameReader::new(2048);
    assert_eq!(reader.buf().len(), MIN_READ_CHUNK);
    let mut at = 0;
    for _ in 0..10 {
        let space = reader.buf();
        let n = space.len();
        space.copy_from_slice(&stream[at..at + n]);
        at += n;
        reader.filled(n);
        while reader.next::<ClientMsg>().unwrap().is_some() {}
    }
    assert_eq!(reader.buf().len(), MAX_READ_CHUNK);
    reader.filled(0); // the end of the stream, or nothing: no change
    assert_eq!(reader.buf().len(), MAX_READ_CHUNK);
    for _ in 0..10 {
        let space = reader.buf();
        space[..who.len()].copy_from_slice(&who);
        reader.filled(who.len());
        assert_eq!(reader.next::<ClientMsg>(), Ok(Some(ClientMsg::Who)));
        assert_eq!(reader.next::<ClientMsg>(), Ok(None));
    }
    assert_eq!(reader.buf().len(), MIN_READ_CHUNK);
}

#[test]
fn reader_counts_past_the_offered_space_are_cut_down() {
    let mut reader = FrameReader::new(2048);
    let offered = reader.buf().len();
    reader.filled(offered + 100);
    assert_eq!(reader.buffered(), offered);
}

#[test]
fn reader_keeps_undecoded_bytes_when_read_again_before_draining() {
    let who = encode_to_vec(&ClientMsg::Who).unwrap();
    let leave = encode_to_vec(&ClientMsg::Leave { message: None }).unwrap();
    let mut reader = FrameReader::new(2048);
    reader.buf()[..who.len()].copy_from_slice(&who);
    reader.filled(who.len());
    reader.buf()[..leave.len()].copy_from_slice(&leave);
    reader.filled(leave.len());
    assert_eq!(reader.next::<ClientMsg>(), Ok(Some(ClientMsg::Who)));
    assert_eq!(
        reader.next::<ClientMsg>(),
        Ok(Some(ClientMsg::Leave { message: None }))
    );
    assert_eq!(reader.next::<ClientMsg>(), Ok(None));
}

#[test]
fn reader_reports_a_frame_cut_short_at_the_end_of_the_stream() {
    let bytes = encode_to_vec(&ClientMsg::Chat {
        text: "hi".into(),
        kind: ChatKind::Plain,
    })
    .unwrap();
    let mut source = &bytes[..bytes.len() - 1];
    let mut reader = FrameReader::new(2048);
    assert_eq!(reader.read_from(&mut source).unwrap(), bytes.len() - 1);
    assert_eq!(reader.next::<ClientMsg>(), Ok(None));
    assert_eq!(reader.read_from(&mut source).unwrap(), 0);
    assert_eq!(reader.next::<ClientMsg>(), Ok(None));
    assert_eq!(reader.buffered(), bytes.len() - 1);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1_000))]

    #[test]
    fn reader_random_splits_decode_the_same(
        msgs in proptest::collection::vec(arb_client_msg(), 0..20),
        cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..30),
    ) {
        let (bytes, points) = encoded_with_cuts(&msgs, &cuts);
        let chunks: Vec<&[u8]> = points.windows(2).map(|w| &bytes[w[0]..w[1]]).collect();
        let mut reader = FrameReader::new(4096);
        prop_assert_eq!(read_all::<ClientMsg>(&mut reader, &chunks).unwrap(), msgs);
        prop_assert_eq!(reader.buffered(), 0);
        prop_assert_eq!(reader.capacity(), 0);
    }

    #[test]
    fn reader_garbage_never_panics_nor_grows(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let mut reader = FrameReader::new(128);
        let _ = read_all::<ServerMsg>(&mut reader, &[&bytes]);
        prop_assert!(reader.buffered() <= PREFIX_LEN + 128);
        prop_assert_eq!(reader.capacity(), 0);
    }
}

#[test]
fn every_close_reason_has_a_code_that_reads_back() {
    for reason in CloseReason::ALL {
        assert_eq!(CloseReason::from_code(reason.code()), Some(reason));
    }
    assert_eq!(CloseReason::TooSlow.code(), "too_slow");
    assert_eq!(CloseReason::from_code("nonsense"), None);
    // ALL lists every variant: a new one must be added there (and so gets a code).
    let count = |r: CloseReason| match r {
        CloseReason::Left
        | CloseReason::Disconnected
        | CloseReason::HandshakeTimeout
        | CloseReason::IdleTimeout
        | CloseReason::TooSlow
        | CloseReason::Flood
        | CloseReason::ProtocolError
        | CloseReason::ServerShutdown
        | CloseReason::ServerFull
        | CloseReason::ServerLost
        | CloseReason::RoomReset
        | CloseReason::TooManyConnections
        | CloseReason::Kicked
        | CloseReason::Banned => 14,
    };
    assert_eq!(count(CloseReason::Left), CloseReason::ALL.len());
}
