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

/// A set of 32-bit tags cut from such hashes: half the memory of a set of whole hashes, for a
/// set where two values sharing a tag now and then costs nothing that matters.
pub(crate) type TagSet = std::collections::HashSet<u32, BuildHasherDefault<Spread>>;

/// Spreads a uniform 32-bit tag over the 64 bits the table reads: its bucket from the low bits
/// and its control byte from the top seven, which a tag alone would leave at zero.
#[derive(Default)]
pub(crate) struct Spread(u64);

/// An odd constant whose product with a tag mixes every bit of it into the top ones.
const SPREAD: u64 = 0x9e37_79b9_7f4a_7c15;

impl Hasher for Spread {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        let mut folded = Prehashed::default();
        folded.write(bytes);
        self.0 = folded.0.wrapping_mul(SPREAD);
    }
    fn write_u32(&mut self, n: u32) {
        self.0 = u64::from(n).wrapping_mul(SPREAD);
    }
}
