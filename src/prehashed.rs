//! A `Hasher` for maps keyed by values that are already uniformly distributed keyed hashes
//! (client-address hashes, daily visitor ids): hashing them again is wasted work.

use std::hash::{BuildHasherDefault, Hasher};

#[derive(Default)]
pub(crate) struct Prehashed(u64);

impl Hasher for Prehashed {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 << 8) | u64::from(*b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// A map keyed by such hashes.
pub(crate) type HashMap<V> = std::collections::HashMap<u64, V, BuildHasherDefault<Prehashed>>;

/// A set of such hashes.
pub(crate) type HashSet = std::collections::HashSet<u64, BuildHasherDefault<Prehashed>>;
