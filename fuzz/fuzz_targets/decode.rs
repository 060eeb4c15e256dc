//! Arbitrary bytes into the frame decoder, as protocol v3's `ClientMsg` and `ServerMsg`, as
//! v2's, and as a server reads a client (a `ClientDecoder`, by the version its hello says), fed
//! whole and in arbitrary splits. Must hold: no panic; every call returns a message, an error, or
//! consumes all of its input (no spinning on a partial frame); the split feeding yields exactly
//! what the whole feeding yields; every message decoded re-encodes and decodes to itself; what
//! a v3 server message downgrades to for a v2 client encodes and decodes as v2.
#![no_main]

use chat_proto::{
    ClientDecoder, ClientMsg, DecodeError, FrameDecoder, MAX_SERVER_FRAME, ServerMsg, v2,
};
use libfuzzer_sys::fuzz_target;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// The server's default frame limit for clients.
const CLIENT_FRAME: u32 = 2048;

fuzz_target!(|data: &[u8]| {
    // The first bytes choose where the stream is cut; the rest is the stream.
    let (cuts, stream) = data.split_at(data.len().min(8));
    check::<ClientMsg>(stream, cuts, CLIENT_FRAME);
    check::<ClientMsg>(stream, cuts, 16);
    check::<v2::ClientMsg>(stream, cuts, CLIENT_FRAME);
    check_versioned(stream, cuts);
    for msg in check::<ServerMsg>(stream, cuts, MAX_SERVER_FRAME) {
        v2::downgrade(&msg, |old| round_trip(&old));
    }
    check::<v2::ServerMsg>(stream, cuts, MAX_SERVER_FRAME);
});

/// Decodes `stream` as `T`s whole, in the chunks `cuts` gives and a byte at a time, and checks
/// that they agree and that each message round-trips; returns the messages.
fn check<T>(stream: &[u8], cuts: &[u8], max_frame: u32) -> Vec<T>
where
    T: DeserializeOwned + Serialize + PartialEq + std::fmt::Debug,
{
    let payload = |p: &[u8]| chat_proto::decode_payload::<T>(p);
    let whole = decode_all(stream, &[usize::MAX], max_frame, payload);
    let split = decode_all(stream, &sizes(cuts), max_frame, payload);
    assert_eq!(whole, split, "split feeding differs from whole feeding");
    let one_by_one = decode_all(stream, &[1], max_frame, payload);
    assert_eq!(whole, one_by_one, "byte-at-a-time feeding differs");
    for msg in &whole.0 {
        round_trip(msg);
    }
    whole.0
}

/// As [`check`], with one connection's [`ClientDecoder`] reading each payload (a fresh one for
/// each feeding): what it yields is v3, so it round-trips as v3.
fn check_versioned(stream: &[u8], cuts: &[u8]) {
    let feed = |sizes: &[usize]| {
        let mut client = ClientDecoder::new();
        decode_all(stream, sizes, CLIENT_FRAME, |p| client.decode(p))
    };
    let whole = feed(&[usize::MAX]);
    assert_eq!(whole, feed(&sizes(cuts)), "split feeding differs from whole feeding");
    assert_eq!(whole, feed(&[1]), "byte-at-a-time feeding differs");
    for msg in &whole.0 {
        round_trip(msg);
    }
}

fn sizes(cuts: &[u8]) -> Vec<usize> {
    cuts.iter().map(|&c| usize::from(c % 64) + 1).collect()
}

/// Encodes `msg` and decodes it back as the same type.
fn round_trip<T>(msg: &T)
where
    T: DeserializeOwned + Serialize + PartialEq + std::fmt::Debug,
{
    let frame = chat_proto::encode_to_vec(msg).expect("a decoded message encodes");
    let mut input = &frame[..];
    let mut decoder = FrameDecoder::new(u32::MAX);
    let back = decoder.decode::<T>(&mut input);
    assert_eq!(back.as_ref().map(Option::as_ref), Ok(Some(msg)));
    assert!(input.is_empty());
}

/// Feeds `stream` in chunks of the given sizes (cycled), reading each payload with `payload`;
/// stops at the first error.
fn decode_all<T>(
    stream: &[u8],
    sizes: &[usize],
    max_frame: u32,
    mut payload: impl FnMut(&[u8]) -> Result<T, DecodeError>,
) -> (Vec<T>, Option<DecodeError>) {
    let mut decoder = FrameDecoder::new(max_frame);
    let mut msgs = Vec::new();
    let mut rest = stream;
    let mut size = sizes.iter().cycle();
    while !rest.is_empty() {
        let n = (*size.next().unwrap()).min(rest.len());
        let (chunk, tail) = rest.split_at(n);
        rest = tail;
        let mut input = chunk;
        loop {
            let before = input.len();
            match decoder.decode_with(&mut input, &mut payload) {
                Ok(Some(msg)) => msgs.push(msg),
                Ok(None) => {
                    assert!(input.is_empty(), "None with input left");
                    break;
                }
                Err(error) => return (msgs, Some(error)),
            }
            assert!(input.len() < before || before == 0, "no progress");
        }
        assert!(decoder.buffered() <= max_frame as usize + 4);
    }
    (msgs, None)
}
