//! The server's one source of randomness: the epoch of a room alone, and the seed the Redis log
//! makes the epoch of a room it creates from. The core takes both as arguments, never makes them.

use std::hash::{BuildHasher, Hasher};

/// A random number: the process's random hasher keys over the time and the process id.
pub(crate) fn seed() -> u64 {
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    hasher.write_u32(std::process::id());
    hasher.finish()
}
