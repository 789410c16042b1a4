//! Which of a sink's brokers or URLs to use.
//!
//! The first one is preferred. After [`SWITCH_AFTER`] failures in a row the sink moves to the
//! next (round robin). While it is not on the first, it tries the first again every
//! `failback_after`, without giving up the one that works until the first has answered.
//! Pure state: the caller says what happened and when.

use std::time::{Duration, Instant};

/// Consecutive failures that make a sink move on.
pub const SWITCH_AFTER: u32 = 3;

/// Failover state for `n` endpoints.
#[derive(Debug, Clone)]
pub struct Failover {
    n: usize,
    current: usize,
    failures: u32,
    failback_after: Duration,
    next_failback: Instant,
}

impl Failover {
    /// Starts on endpoint 0.
    pub fn new(n: usize, failback_after: Duration, now: Instant) -> Failover {
        Failover {
            n: n.max(1),
            current: 0,
            failures: 0,
            failback_after,
            next_failback: now + failback_after,
        }
    }

    /// The endpoint to use.
    pub fn current(&self) -> usize {
        self.current
    }

    /// The current endpoint worked.
    pub fn succeeded(&mut self) {
        self.failures = 0;
    }

    /// The current endpoint failed; returns the new one if this made the sink move.
    pub fn failed(&mut self, now: Instant) -> Option<usize> {
        self.failures += 1;
        if self.n == 1 || self.failures < SWITCH_AFTER {
            return None;
        }
        self.failures = 0;
        self.current = (self.current + 1) % self.n;
        self.next_failback = now + self.failback_after;
        Some(self.current)
    }

    /// Whether it is time to try the first endpoint again.
    pub fn failback_due(&self, now: Instant) -> bool {
        self.current != 0 && now >= self.next_failback
    }

    /// The first endpoint answered: back to it.
    pub fn failed_back(&mut self) {
        self.current = 0;
        self.failures = 0;
    }

    /// The first endpoint still fails: stay, and try again later.
    pub fn failback_failed(&mut self, now: Instant) {
        self.next_failback = now + self.failback_after;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn moves_after_repeated_failures_and_returns_when_the_first_is_back() {
        let t0 = Instant::now();
        let s = |n| t0 + Duration::from_secs(n);
        let mut f = Failover::new(3, Duration::from_secs(60), t0);
        assert_eq!(f.failed(s(1)), None);
        f.succeeded();
        assert_eq!(f.failed(s(2)), None);
        assert_eq!(f.failed(s(3)), None);
        assert_eq!(f.failed(s(4)), Some(1));
        assert!(!f.failback_due(s(63)));
        assert!(f.failback_due(s(64)));
        f.failback_failed(s(64));
        assert!(!f.failback_due(s(100)));
        for _ in 0..2 {
            assert_eq!(f.failed(s(101)), None);
        }
        assert_eq!(f.failed(s(101)), Some(2));
        for _ in 0..2 {
            f.failed(s(102));
        }
        assert_eq!(f.failed(s(102)), Some(0), "round robin");
        assert!(!f.failback_due(s(1000)), "already on the first");
        let mut one = Failover::new(1, Duration::from_secs(1), t0);
        for _ in 0..10 {
            assert_eq!(one.failed(s(5)), None);
        }
    }
}
