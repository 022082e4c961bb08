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

/// A set of 32-bit tags cut from such hashes, for a set where two values sharing a tag now and
/// then costs nothing that matters: half the memory of whole hashes. The tags sit in one array,
/// probed linearly from the slot a tag names itself, so a lookup reads one place in memory; a
/// general hash table keeps its control bytes apart from its entries, two likely cache misses
/// per lookup once it holds millions. 0 marks an empty slot, so tag 0 is stored as 1. The load
/// stays between 3/8 and 3/4: 5.3 to 10.7 bytes per tag.
#[derive(Debug, Default)]
pub(crate) struct TagSet {
    /// A power of two long, or empty.
    slots: Vec<u32>,
    len: usize,
}

const MIN_SLOTS: usize = 64;

impl TagSet {
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn contains(&self, tag: u32) -> bool {
        let tag = tag.max(1);
        let mask = self.slots.len().wrapping_sub(1);
        let mut at = tag as usize & mask;
        // The load is below 3/4, so an empty slot ends every probe.
        while let Some(&t) = self.slots.get(at) {
            if t == tag {
                return true;
            }
            if t == 0 {
                return false;
            }
            at = (at + 1) & mask;
        }
        false
    }

    /// Reads the slot where a probe for `tag` starts and returns what it holds, so that a later
    /// `contains` or `insert` finds it in the cache. Reading the slots of several tags one
    /// after another lets their cache misses overlap; probing them one by one waits for each.
    pub(crate) fn warm(&self, tag: u32) -> u32 {
        let mask = self.slots.len().wrapping_sub(1);
        self.slots
            .get(tag.max(1) as usize & mask)
            .copied()
            .unwrap_or(0)
    }

    /// Adds `tag`; whether it was new.
    pub(crate) fn insert(&mut self, tag: u32) -> bool {
        if (self.len + 1) * 4 > self.slots.len() * 3 {
            self.grow();
        }
        if self.place(tag.max(1)) {
            self.len += 1;
            return true;
        }
        false
    }

    /// Empties the set and gives its memory back: a quiet day after a busy one needs little.
    pub(crate) fn clear(&mut self) {
        *self = TagSet::default();
    }

    /// Puts a nonzero `tag` in its slot or the first empty one after it; whether it was new.
    fn place(&mut self, tag: u32) -> bool {
        let mask = self.slots.len() - 1;
        let mut at = tag as usize & mask;
        loop {
            match self.slots[at] {
                0 => {
                    self.slots[at] = tag;
                    return true;
                }
                t if t == tag => return false,
                _ => at = (at + 1) & mask,
            }
        }
    }

    fn grow(&mut self) {
        let slots = (self.slots.len() * 2).max(MIN_SLOTS);
        let old = std::mem::replace(&mut self.slots, vec![0; slots]);
        for tag in old.into_iter().filter(|t| *t != 0) {
            self.place(tag);
        }
    }
}

/// Uniform 32-bit numbers from a nonzero `seed` (xorshift), a fixed sequence: what a keyed
/// hash gives, for tests of the tables such values fill.
#[cfg(test)]
pub(crate) fn scattered(seed: u32) -> impl Iterator<Item = u32> {
    let mut x = seed;
    std::iter::repeat_with(move || {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        x
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Uniform 32-bit tags, as a keyed hash gives them; a fixed sequence.
    fn tags(n: usize) -> Vec<u32> {
        scattered(0x2545_f491).take(n).collect()
    }

    #[test]
    fn holds_what_was_inserted_and_nothing_else() {
        let all = tags(200_000);
        let (inside, outside) = all.split_at(100_000);
        let mut set = TagSet::default();
        let mut reference = std::collections::HashSet::new();
        for t in inside {
            assert_eq!(set.insert(*t), reference.insert(*t));
        }
        assert_eq!(set.len(), reference.len());
        assert!(inside.iter().all(|t| set.contains(*t)));
        for t in outside {
            assert_eq!(set.contains(*t), reference.contains(t), "{t}");
        }
        // Bounded by the load: at most 3/4 full, at least 3/8 once grown.
        assert!(set.slots.len().is_power_of_two());
        assert!(set.len() * 4 <= set.slots.len() * 3);
        assert!(set.len() * 8 >= set.slots.len() * 3);
    }

    #[test]
    fn warm_reads_the_slot_where_a_probe_starts() {
        let mut set = TagSet::default();
        assert_eq!(set.warm(7), 0, "no slots yet");
        set.insert(7);
        assert_eq!(set.warm(7), 7);
        assert_eq!(set.warm(0), 0, "tag 0 starts where 1 does, still empty");
        assert!(set.contains(7) && !set.contains(8));
    }

    #[test]
    fn tag_zero_and_clear() {
        let mut set = TagSet::default();
        assert!(!set.contains(0) && !set.contains(7));
        assert!(set.insert(0));
        assert!(set.contains(0));
        assert!(!set.insert(1), "0 is kept as 1");
        assert!(set.insert(u32::MAX));
        assert!(!set.insert(u32::MAX));
        assert_eq!(set.len(), 2);
        set.clear();
        assert_eq!(set.len(), 0);
        assert!(!set.contains(0) && !set.contains(u32::MAX));
        assert!(set.slots.is_empty(), "memory given back");
    }
}
