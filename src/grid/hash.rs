//! A fixed-key hash for the grid's lookup tables.
//!
//! The id -> slice and group -> blocks tables are only looked up, never
//! iterated where order shows, so they are hash maps: a B-tree with 100,000
//! string keys costs dozens of string comparisons per lookup. The std hasher
//! is seeded from the OS at random; the grid stays free of that with FNV-1a
//! plus a final mix (FNV's low bits, which pick the bucket, are weak alone).

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// A `HashMap` whose hashes are the same on every run.
pub(super) type FixedMap<K, V> = HashMap<K, V, BuildHasherDefault<Fnv>>;

pub(super) struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Fnv {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl Hasher for Fnv {
    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.0 = (self.0 ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
        }
    }

    fn finish(&self) -> u64 {
        // The finaliser of splitmix64.
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}
