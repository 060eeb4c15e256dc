//! Arbitrary bytes into the browser's entry, through the web codec's inbound half as a hub
//! feeds it: HTTP requests (the page, the upgrade, errors; strict heads, hosts, security
//! headers on every answer), then WebSocket frames after an
//! upgrade, and the JSON of the page's messages. Fed whole, in two parts and a byte at a time,
//! the bytes must mean the same. Must hold: no panic, no loop, bounded memory.
#![no_main]

use chat_core::{Codec, ConnId, Inbound};
use chat_gateway::web::{CONTENT_SECURITY_POLICY, WebCodec, WebPolicy, decode_client};
use libfuzzer_sys::fuzz_target;

/// An upgrade request as a browser sends it, put before the bytes in the second mode.
const UPGRADE: &[u8] = b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\
    Origin: http://127.0.0.1:8080\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
    Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";

fuzz_target!(|data: &[u8]| {
    // The first byte chooses the entry: raw HTTP, headers after a valid request line, frames
    // after a valid upgrade, or JSON.
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode % 4 {
        0 => same_however_cut(rest),
        3 => {
            let mut input = b"GET / HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n".to_vec();
            input.extend_from_slice(rest);
            same_however_cut(&input);
        }
        1 => {
            let mut input = UPGRADE.to_vec();
            input.extend_from_slice(rest);
            same_however_cut(&input);
        }
        _ => {
            if let Ok(text) = std::str::from_utf8(rest) {
                let _ = decode_client(text);
            }
        }
    }
});

/// The codec reads `input` the same whole, in two parts and a byte at a time; every HTTP
/// answer carries the security headers.
fn same_however_cut(input: &[u8]) {
    let whole = read_all(input, input.len().max(1));
    for item in &whole {
        if let Inbound::Reply(bytes) = item {
            if bytes.starts_with(b"HTTP/1.1 ") {
                let policy = format!("Content-Security-Policy: {CONTENT_SECURITY_POLICY}\r\n");
                let head = String::from_utf8_lossy(bytes);
                assert!(
                    head.to_ascii_lowercase()
                        .contains(&policy.to_ascii_lowercase())
                );
                assert!(
                    head.to_ascii_lowercase()
                        .contains("x-content-type-options: nosniff")
                );
            }
        }
    }
    assert_eq!(whole, read_all(input, input.len() / 2 + 1), "split in two");
    assert_eq!(whole, read_all(input, 1), "a byte at a time");
}

/// What a web codec makes of `bytes` fed in pieces of `size`, decoding again the connections
/// it names as the hub does, with adjacent replies joined (how a pong is cut depends on the
/// reads). Nothing is yielded after the end or a malformed input.
fn read_all(bytes: &[u8], size: usize) -> Vec<Inbound> {
    let conn = ConnId(1);
    let mut codec = WebCodec::new(WebPolicy::default(), 2048);
    let mut out: Vec<Inbound> = Vec::new();
    let mut items = Vec::new();
    for piece in bytes.chunks(size) {
        codec.decode(conn, piece, &mut items);
        let mut rounds = 0;
        while let Some(ready) = codec.poll_ready() {
            rounds += 1;
            assert!(rounds <= 2, "the codec names a connection again and again");
            assert_eq!(ready, conn);
            codec.decode(ready, &[], &mut items);
        }
        for item in items.drain(..) {
            match (out.last_mut(), item) {
                (Some(Inbound::End | Inbound::Malformed), item) => {
                    panic!("{item:?} after the end")
                }
                (Some(Inbound::Reply(last)), Inbound::Reply(more)) => last.extend(more),
                (_, item) => out.push(item),
            }
        }
    }
    out
}
