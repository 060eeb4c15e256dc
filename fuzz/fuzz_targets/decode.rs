//! Arbitrary bytes into the frame decoder, as `ClientMsg` and as `ServerMsg`, fed whole and in
//! arbitrary splits. Must hold: no panic; every call returns a message, an error, or consumes all
//! of its input (no spinning on a partial frame); the split feeding yields exactly what the whole
//! feeding yields; every message decoded re-encodes and decodes to itself.
#![no_main]

use chat_proto::{ClientMsg, DecodeError, FrameDecoder, MAX_SERVER_FRAME, ServerMsg};
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
    check::<ServerMsg>(stream, cuts, MAX_SERVER_FRAME);
});

fn check<T>(stream: &[u8], cuts: &[u8], max_frame: u32)
where
    T: DeserializeOwned + Serialize + PartialEq + std::fmt::Debug,
{
    let whole = decode_all::<T>(stream, &[usize::MAX], max_frame);
    let sizes: Vec<usize> = cuts.iter().map(|&c| usize::from(c % 64) + 1).collect();
    let split = decode_all::<T>(stream, &sizes, max_frame);
    assert_eq!(whole, split, "split feeding differs from whole feeding");
    let one_by_one = decode_all::<T>(stream, &[1], max_frame);
    assert_eq!(whole, one_by_one, "byte-at-a-time feeding differs");
    for msg in whole.0 {
        let frame = chat_proto::encode_to_vec(&msg).expect("a decoded message encodes");
        let mut input = &frame[..];
        let mut decoder = FrameDecoder::new(u32::MAX);
        assert_eq!(decoder.decode::<T>(&mut input), Ok(Some(msg)));
        assert!(input.is_empty());
    }
}

/// Feeds `stream` in chunks of the given sizes (cycled); stops at the first error.
fn decode_all<T: DeserializeOwned>(
    stream: &[u8],
    sizes: &[usize],
    max_frame: u32,
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
            match decoder.decode::<T>(&mut input) {
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
