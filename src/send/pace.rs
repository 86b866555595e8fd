//! Pacing: a token bucket of capacity one shared by every worker (each call claims the next slot,
//! `1/rate` after the previous one, so the long-run rate is the target however many workers wait),
//! and adaptive backoff: a 40005 halves the rate (at most once a second) and pauses the whole pool
//! for a second; each second without one raises the rate by a tenth of the target until it is
//! reached again. Pure: the caller passes the clock in and does the sleeping.

use std::time::{Duration, Instant};

/// The slowest the pool goes after repeated 40005s.
pub const MIN_QPS: f64 = 0.5;
const PAUSE: Duration = Duration::from_secs(1);
const STEP: Duration = Duration::from_secs(1);

#[derive(Debug)]
pub struct Pacer {
    target: f64,
    current: f64,
    next: Option<Instant>,
    last_change: Option<Instant>,
    last_cut: Option<Instant>,
    pub cuts: u64,
}

impl Pacer {
    pub fn new(qps: f64) -> Pacer {
        Pacer {
            target: qps,
            current: qps,
            next: None,
            last_change: None,
            last_cut: None,
            cuts: 0,
        }
    }

    #[cfg(test)]
    pub fn current(&self) -> f64 {
        self.current
    }

    fn interval(&self) -> Duration {
        Duration::from_secs_f64(1.0 / self.current)
    }

    /// Claim the next slot: the caller sends at the returned instant (sleeping until then).
    /// Slots are absolute, so oversleeping never accumulates into a lower rate; an idle bucket
    /// does not save tokens up (no burst after a pause).
    pub fn slot(&mut self, now: Instant) -> Instant {
        let at = self.next.map_or(now, |n| n.max(now));
        self.next = Some(at + self.interval());
        at
    }

    /// A 40005: slow the pool down (once per second however many workers see it) and pause it.
    pub fn rate_limited(&mut self, now: Instant) {
        if self.last_cut.is_none_or(|t| now >= t + STEP) {
            self.current = (self.current / 2.0).max(MIN_QPS.min(self.target));
            self.cuts += 1;
            self.last_cut = Some(now);
        }
        self.last_change = Some(now);
        let resume = now + PAUSE;
        self.next = Some(self.next.map_or(resume, |n| n.max(resume)));
    }

    /// A call that was not rate limited: recover towards the target, one step per second.
    pub fn succeeded(&mut self, now: Instant) {
        if self.current >= self.target {
            return;
        }
        if self.last_change.is_none_or(|t| now >= t + STEP) {
            self.current = (self.current + self.target / 10.0).min(self.target);
            self.last_change = Some(now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_spaced_at_the_target_rate() {
        let start = Instant::now();
        let mut p = Pacer::new(200.0);
        // Many workers claiming at once, then each sleeping to its slot: 1,000 slots span 5 s.
        let slots: Vec<Instant> = (0..1000).map(|_| p.slot(start)).collect();
        let span = (slots[999] - slots[0]).as_secs_f64();
        assert!((span - 999.0 / 200.0).abs() < 1e-6, "{span}");
        // A late caller does not get a burst of saved-up tokens.
        let late = start + Duration::from_secs(60);
        let a = p.slot(late);
        let b = p.slot(late);
        assert_eq!(a, late);
        assert_eq!(b - a, Duration::from_millis(5));
    }

    #[test]
    fn long_run_rate_with_sleep_overshoot_stays_on_target() {
        // Each caller oversleeps by 3 ms; the rate over 10,000 calls stays within 0.1%.
        let start = Instant::now();
        let mut p = Pacer::new(200.0);
        let mut now = start;
        let mut last = start;
        for _ in 0..10_000 {
            let at = p.slot(now);
            last = at;
            now = at.max(now) + Duration::from_millis(3) / 4;
        }
        let rate = 10_000.0 / (last - start).as_secs_f64();
        assert!((rate - 200.0).abs() / 200.0 < 0.001, "{rate}");
    }

    #[test]
    fn rate_limits_halve_pause_and_recover() {
        let t0 = Instant::now();
        let mut p = Pacer::new(40.0);
        p.slot(t0);
        p.rate_limited(t0);
        assert_eq!(p.current(), 20.0);
        // Other workers' 40005s in the same second do not cut again.
        p.rate_limited(t0 + Duration::from_millis(100));
        assert_eq!(p.current(), 20.0);
        assert!(p.slot(t0) >= t0 + PAUSE, "the pool pauses");
        // A later one does.
        p.rate_limited(t0 + Duration::from_millis(1500));
        assert_eq!(p.current(), 10.0);
        let mut t = t0 + Duration::from_millis(1500);
        for _ in 0..40 {
            t += Duration::from_millis(500);
            p.succeeded(t);
        }
        assert_eq!(p.current(), 40.0, "back at the target");
        for _ in 0..20 {
            p.rate_limited(t);
            t += Duration::from_secs(2);
        }
        assert_eq!(p.current(), MIN_QPS, "never below the floor");
    }
}
