//! How the run loop takes Malops named by syslog events: in bounded bites, paced.

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use std::num::NonZeroU32;

/// Malops named by syslog events evaluated per wake-up at most: a flood of events is taken
/// in bounded bites, and the poll deadline is checked between two bites.
pub const HINTS_PER_BITE: usize = 64;

/// Bites of hinted Malops read per second, sustained: each costs a `crimes/unified` query per
/// element kind, so a flood of forged, distinct Malop ids (each event passes the per-Malop
/// coalescing) costs the server at most twice this many queries a second.
pub const HINT_BITES_PER_SEC: u32 = 100;

/// Bites read at once before [`HINT_BITES_PER_SEC`] applies: the events of a real outbreak
/// come in a burst, and are read at once.
pub const HINT_BITE_BURST: u32 = 50;

/// The pace of hinted bites ([`HINT_BITES_PER_SEC`] after a burst of [`HINT_BITE_BURST`]).
pub struct HintPace(DefaultDirectRateLimiter);

impl HintPace {
    /// A pace with its whole burst available.
    pub fn new() -> Self {
        let rate = NonZeroU32::new(HINT_BITES_PER_SEC).expect("a constant above zero");
        let burst = NonZeroU32::new(HINT_BITE_BURST).expect("a constant above zero");
        Self(RateLimiter::direct(
            Quota::per_second(rate).allow_burst(burst),
        ))
    }

    /// Waits until the next bite may be read (at most 1/[`HINT_BITES_PER_SEC`] s).
    pub async fn ready(&self) {
        self.0.until_ready().await;
    }
}

impl Default for HintPace {
    fn default() -> Self {
        Self::new()
    }
}
