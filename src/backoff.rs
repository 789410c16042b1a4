//! Exponential backoff with jitter and a cap: how every retry in tailbeat waits.
//!
//! Pure state: the caller sleeps. Jitter spreads a fleet that lost its link at the same
//! moment, so thousands of gateways do not reconnect in lockstep.

use std::time::Duration;

/// Delays of `base * 2^n`, capped at `cap`, each scaled by a random factor in [0.5, 1].
#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    cap: Duration,
    attempt: u32,
    rng: u64,
}

impl Backoff {
    /// A backoff from `base` up to `cap`.
    pub fn new(base: Duration, cap: Duration) -> Backoff {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64)
            ^ (std::process::id() as u64) << 32;
        Backoff {
            base,
            cap,
            attempt: 0,
            rng: seed | 1,
        }
    }

    /// The delay before the next attempt.
    pub fn next_delay(&mut self) -> Duration {
        let exp = self.exp();
        exp.mul_f64(0.5 + self.random() / 2.0)
    }

    /// The delay before the next attempt, at most `cap` (below the backoff's own cap: a
    /// heartbeat retries no later than its interval). Still jittered there, so a fleet that
    /// lost its server at once does not retry in lockstep at the cap, but to between three
    /// quarters and all of `cap`, so that an outage costs no more requests than `cap` alone
    /// would allow give or take one.
    pub fn next_delay_within(&mut self, cap: Duration) -> Duration {
        let exp = self.exp();
        if exp >= cap {
            cap.mul_f64(0.75 + self.random() / 4.0)
        } else {
            exp.mul_f64(0.5 + self.random() / 2.0)
        }
    }

    /// `base * 2^attempt` up to the cap, and one attempt more.
    fn exp(&mut self) -> Duration {
        let exp = self
            .base
            .saturating_mul(1 << self.attempt.min(20))
            .min(self.cap);
        self.attempt += 1;
        exp
    }

    /// In [0, 1). xorshift64: jitter needs spread, not cryptographic quality.
    fn random(&mut self) -> f64 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        (self.rng % 1000) as f64 / 1000.0
    }

    /// Back to `base` after a success.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_to_the_cap_with_jitter_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
        let d: Vec<_> = (0..10).map(|_| b.next_delay()).collect();
        assert!(d[0] >= Duration::from_millis(50) && d[0] <= Duration::from_millis(100));
        assert!(d[3] >= Duration::from_millis(400) && d[3] <= Duration::from_millis(800));
        for x in &d[6..] {
            assert!(
                *x >= Duration::from_millis(2500) && *x <= Duration::from_secs(5),
                "{x:?}"
            );
        }
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(100));
    }

    #[test]
    fn within_a_lower_cap_the_delays_are_still_jittered() {
        // A heartbeat's retries are capped at its interval: before, every one past the cap
        // was exactly the interval, so a fleet retried in lockstep.
        let mut b = Backoff::new(Duration::from_millis(500), Duration::from_secs(60));
        let cap = Duration::from_secs(10);
        let d: Vec<_> = (0..40).map(|_| b.next_delay_within(cap)).collect();
        assert!(d[0] >= Duration::from_millis(250) && d[0] <= Duration::from_millis(500));
        let at_cap = &d[5..];
        assert!(
            at_cap
                .iter()
                .all(|x| *x >= Duration::from_millis(7500) && *x <= cap),
            "{at_cap:?}"
        );
        let distinct: std::collections::BTreeSet<_> = at_cap.iter().collect();
        assert!(distinct.len() > 10, "not jittered: {at_cap:?}");
    }
}
