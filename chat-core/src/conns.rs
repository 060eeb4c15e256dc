//! Maps keyed by connection: hashed with a cheap multiplicative hash instead of SipHash.
//!
//! Connection ids are handed out by the driver, not by peers, so nobody can choose them to
//! collide; the fan-out looks one up for every write, where SipHash showed in profiles.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use crate::ConnId;

/// A map from connection to `T`.
pub type ConnMap<T> = HashMap<ConnId, T, BuildHasherDefault<ConnHasher>>;

/// Fibonacci hashing of the one `u64` a [`ConnId`] hashes.
#[derive(Debug, Default, Clone, Copy)]
pub struct ConnHasher(u64);

impl Hasher for ConnHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0 ^ n).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}
