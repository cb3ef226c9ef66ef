//! Unpredictable numbers, where sameness between runs would hurt: the jitter
//! seed of writers that must not retry in step with each other, and nonces
//! that tell two runs apart. Never in anything a capsule or a record holds.

use std::hash::{BuildHasher, Hasher};

/// 64 bits that differ between processes and between calls: std's
/// `RandomState` keys come from the operating system's randomness.
pub fn random_u64() -> u64 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    h.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos()));
    h.finish()
}

#[cfg(test)]
mod tests {
    #[test]
    fn calls_differ() {
        let values: std::collections::HashSet<u64> = (0..64).map(|_| super::random_u64()).collect();
        assert_eq!(values.len(), 64);
    }
}
