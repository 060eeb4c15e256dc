//! Arbitrary bytes into the browser's entry: HTTP requests (the page, the upgrade, errors), then
//! WebSocket frames after an upgrade (read whole, in two parts and a byte at a time, which must
//! agree), and the JSON of the page's messages. Must hold: no panic, no loop, bounded memory.
#![no_main]

use chat_gateway::web::{FUZZ_UPGRADE, decode_client, fuzz_one};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The first byte chooses the entry: raw HTTP, frames after a valid upgrade, or JSON.
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode % 3 {
        0 => fuzz_one(rest),
        1 => {
            let mut input = FUZZ_UPGRADE.to_vec();
            input.extend_from_slice(rest);
            fuzz_one(&input);
        }
        _ => {
            if let Ok(text) = std::str::from_utf8(rest) {
                let _ = decode_client(text);
            }
        }
    }
});
