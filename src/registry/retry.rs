//! When to retry a registry request and how long to wait first (spec section 7:
//! capped exponential backoff, `Retry-After` honoured). Pure: the client asks
//! this module, then sleeps; tests check the schedule without sleeping.

use std::time::Duration;

/// The retry schedule. Attempt 0 is the first try; the delay before attempt
/// `n + 1` is `min(cap, base * 2^n)`, half of it jittered, and never less than
/// what the server asked for in `Retry-After` (itself capped, so a hostile or
/// confused registry cannot park the run for hours).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub base: Duration,
    pub cap: Duration,
    /// Tries in total, the first one included.
    pub max_attempts: u32,
    pub retry_after_cap: Duration,
}

impl Backoff {
    /// About 15 s of waiting over 10 tries: enough to ride out a registry
    /// restart or a burst of 429s, short enough that a dead one fails fast.
    pub const DEFAULT: Backoff = Backoff {
        base: Duration::from_millis(100),
        cap: Duration::from_millis(3200),
        max_attempts: 10,
        retry_after_cap: Duration::from_secs(60),
    };

    /// For the verifier service: a request is answered 503 soon rather than
    /// held while the registry recovers; Kargo's `http` step retries it.
    pub const SERVICE: Backoff = Backoff {
        base: Duration::from_millis(100),
        cap: Duration::from_millis(800),
        max_attempts: 3,
        retry_after_cap: Duration::from_secs(2),
    };

    /// Whether another try is allowed after `attempt` (0-based) failed.
    pub fn allows_retry_after(&self, attempt: u32) -> bool {
        attempt + 1 < self.max_attempts
    }

    /// The wait before the try after `attempt` (0-based) failed.
    pub fn delay(&self, attempt: u32, retry_after: Option<Duration>, jitter: &mut Jitter) -> Duration {
        let exp = self.base.saturating_mul(1u32.checked_shl(attempt.min(31)).unwrap_or(u32::MAX)).min(self.cap);
        // "Equal jitter": half fixed, half random, so parallel uploads that
        // failed together do not all come back at the same instant.
        let half = exp / 2;
        let jittered = half + half.mul_f64(jitter.next_unit());
        match retry_after {
            Some(asked) => jittered.max(asked.min(self.retry_after_cap)),
            None => jittered,
        }
    }
}

/// A small xorshift generator for jitter. Seeded, never from the clock, so a
/// run's schedule is reproducible.
#[derive(Debug, Clone)]
pub struct Jitter(u64);

impl Jitter {
    pub fn new(seed: u64) -> Self {
        // xorshift has a fixed point at zero.
        Self((seed ^ 0x9e37_79b9_7f4a_7c15) | 1)
    }
    /// A value in [0, 1).
    pub fn next_unit(&mut self) -> f64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        (x >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Statuses worth another try: timeouts, rate limits and server trouble. 501
/// and 505 say the server will never do it, so they are final.
pub fn is_transient_status(status: u16) -> bool {
    matches!(status, 408 | 429) || (500..600).contains(&status) && !matches!(status, 501 | 505)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NO_JITTER_SEED: u64 = 7;

    #[test]
    fn delays_double_up_to_the_cap() {
        let b = Backoff::DEFAULT;
        let mut j = Jitter::new(NO_JITTER_SEED);
        let delays: Vec<Duration> = (0..9).map(|n| b.delay(n, None, &mut j)).collect();
        for (n, d) in delays.iter().enumerate() {
            let full = (b.base * 2u32.pow(n as u32)).min(b.cap);
            assert!(*d >= full / 2 && *d <= full, "attempt {n}: {d:?} not in [{:?}, {full:?}]", full / 2);
        }
        assert!(delays[8] <= b.cap);
        assert!(b.allows_retry_after(8));
        assert!(!b.allows_retry_after(9), "10 attempts in total");
        // Huge attempt numbers neither overflow nor exceed the cap.
        assert!(b.delay(u32::MAX - 1, None, &mut j) <= b.cap);
    }

    #[test]
    fn jitter_is_reproducible_and_spreads() {
        let (mut a, mut b) = (Jitter::new(1), Jitter::new(1));
        let xs: Vec<f64> = (0..100).map(|_| a.next_unit()).collect();
        let ys: Vec<f64> = (0..100).map(|_| b.next_unit()).collect();
        assert_eq!(xs, ys);
        assert!(xs.iter().all(|x| (0.0..1.0).contains(x)));
        assert!(xs.iter().any(|x| *x < 0.25) && xs.iter().any(|x| *x > 0.75));
        assert_ne!(Jitter::new(0).next_unit(), 0.0, "seed 0 must not stick at zero");
    }

    #[test]
    fn retry_after_is_a_floor_with_a_cap() {
        let b = Backoff::DEFAULT;
        let mut j = Jitter::new(3);
        assert_eq!(b.delay(0, Some(Duration::from_secs(2)), &mut j), Duration::from_secs(2));
        assert_eq!(b.delay(0, Some(Duration::from_secs(86_400)), &mut j), b.retry_after_cap);
        // "Retry-After: 0" does not turn off the backoff.
        assert!(b.delay(3, Some(Duration::ZERO), &mut j) >= Duration::from_millis(400));
    }

    #[test]
    fn transient_statuses() {
        for s in [408, 429, 500, 502, 503, 504, 599] {
            assert!(is_transient_status(s), "{s}");
        }
        for s in [200, 400, 401, 403, 404, 416, 501, 505] {
            assert!(!is_transient_status(s), "{s}");
        }
    }
}
