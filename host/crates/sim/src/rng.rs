//! The simulator's deterministic randomness: the same seed gives the same data.
//!
//! The generator is `rand`'s xoshiro256++ (a named algorithm, so its output for a seed does not
//! change when `rand` picks another default `StdRng`/`SmallRng`), seeded through
//! `SeedableRng::seed_from_u64`; the helpers below shape its draws into the simulator's ids.

use rand::rngs::Xoshiro256PlusPlus;
use rand::{RngExt as _, SeedableRng as _};

/// A seeded generator with the draws the simulated world needs.
#[derive(Clone, Debug)]
pub struct Rng(Xoshiro256PlusPlus);

impl Rng {
    /// A generator from a seed.
    pub fn new(seed: u64) -> Self {
        Self(Xoshiro256PlusPlus::seed_from_u64(seed))
    }

    /// A number in `0..n` (0 if `n` is 0), without modulo bias.
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.0.random_range(0..n) }
    }

    /// True with probability `percent`/100.
    pub(crate) fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    /// One item of a non-empty slice.
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }

    /// `n` upper-case hex digits.
    pub fn hex(&mut self, n: usize) -> String {
        (0..n)
            .map(|_| char::from(b"0123456789ABCDEF"[self.below(16) as usize]))
            .collect()
    }

    /// A signed 64-bit value.
    pub fn i64(&mut self) -> i64 {
        self.0.random()
    }

    /// A signed 32-bit value.
    pub fn i32(&mut self) -> i32 {
        self.0.random()
    }

    /// A UUID-shaped string (lower-case, version 4 layout).
    pub fn uuid(&mut self) -> String {
        let h = self.hex(32).to_ascii_lowercase();
        format!(
            "{}-{}-4{}-a{}-{}",
            &h[0..8],
            &h[8..12],
            &h[13..16],
            &h[17..20],
            &h[20..32]
        )
    }
}

#[cfg(test)]
mod tests {
    use super::Rng;

    fn draws(seed: u64) -> Vec<u64> {
        let mut rng = Rng::new(seed);
        (0..32).map(|_| rng.below(u64::MAX)).collect()
    }

    #[test]
    fn the_same_seed_gives_the_same_draws_and_another_seed_others() {
        assert_eq!(draws(7), draws(7));
        assert_ne!(draws(7), draws(8));
        assert_ne!(draws(0), draws(1));
    }

    #[test]
    fn draws_stay_in_range_and_cover_it() {
        let mut rng = Rng::new(3);
        let seen: std::collections::BTreeSet<u64> = (0..1000).map(|_| rng.below(6)).collect();
        assert_eq!(seen, (0..6).collect());
        assert_eq!(rng.below(0), 0);
        assert!((0..200).all(|_| !rng.chance(0) && rng.chance(100)));
        let uuid = rng.uuid();
        assert_eq!((uuid.len(), &uuid[14..15], &uuid[19..20]), (36, "4", "a"));
        assert!(
            rng.hex(40)
                .chars()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_lowercase())
        );
    }
}
