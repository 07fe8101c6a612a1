//! The responder's rate limit: a token bucket per source address, so one
//! flooding source cannot make the responder a traffic source or crowd out
//! the others. Sources in `dns.unlimited` (the Caddies) are never limited: a
//! Caddy whose queries were dropped would wait for its resolver timeout
//! while holding its lookup lock.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Instant;

/// Most sources tracked at once; beyond, new sources share one bucket.
pub const MAX_SOURCES: usize = 4096;

/// One token bucket.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

impl Bucket {
    fn full(burst: f64, now: Instant) -> Bucket {
        Bucket {
            tokens: burst,
            last: now,
        }
    }

    /// Refills at `rate` per second up to `burst`, then takes one token if there is one.
    fn take(&mut self, rate: f64, burst: f64, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * rate).min(burst);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Per-source token buckets.
#[derive(Debug)]
pub struct Limiter {
    rate: f64,
    burst: f64,
    unlimited: Vec<IpAddr>,
    sources: HashMap<IpAddr, Bucket>,
    /// Shared by the sources that find the table full.
    overflow: Bucket,
}

impl Limiter {
    /// `rate` queries per second per source, bursts of twice that;
    /// `unlimited` sources pass always.
    pub fn new(rate: u32, unlimited: &[IpAddr]) -> Limiter {
        let rate = f64::from(rate.max(1));
        let burst = rate * 2.0;
        Limiter {
            rate,
            burst,
            unlimited: unlimited.iter().map(|ip| ip.to_canonical()).collect(),
            sources: HashMap::new(),
            overflow: Bucket::full(burst, Instant::now()),
        }
    }

    /// True when a query from `source` at `now` may be answered.
    pub fn allow(&mut self, source: IpAddr, now: Instant) -> bool {
        let source = source.to_canonical();
        if self.unlimited.contains(&source) {
            return true;
        }
        let (rate, burst) = (self.rate, self.burst);
        if !self.sources.contains_key(&source) && self.sources.len() >= MAX_SOURCES {
            // Forget the sources whose bucket has refilled: they are idle.
            let refill = burst / rate;
            self.sources
                .retain(|_, b| now.saturating_duration_since(b.last).as_secs_f64() < refill);
            if self.sources.len() >= MAX_SOURCES {
                return self.overflow.take(rate, burst, now);
            }
        }
        self.sources
            .entry(source)
            .or_insert_with(|| Bucket::full(burst, now))
            .take(rate, burst, now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_source_gets_its_burst_then_its_rate() {
        let mut l = Limiter::new(10, &[]);
        let t0 = Instant::now();
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let passed = (0..100).filter(|_| l.allow(a, t0)).count();
        assert_eq!(passed, 20);
        assert!(!l.allow(a, t0));
        // A second later: ten more.
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!((0..100).filter(|_| l.allow(a, t1)).count(), 10);
        // Another source is not affected.
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        assert!(l.allow(b, t1));
    }

    #[test]
    fn unlimited_sources_are_never_starved() {
        let caddy: IpAddr = "127.0.0.1".parse().unwrap();
        let mut l = Limiter::new(1, &[caddy]);
        let now = Instant::now();
        assert!((0..10_000).all(|_| l.allow(caddy, now)));
        // Also when it arrives as an IPv4-mapped IPv6 address.
        let mapped: IpAddr = "::ffff:127.0.0.1".parse().unwrap();
        assert!((0..100).all(|_| l.allow(mapped, now)));
    }

    #[test]
    fn a_flood_of_sources_is_bounded_in_memory_and_shares_one_bucket() {
        let mut l = Limiter::new(1, &[]);
        let now = Instant::now();
        let mut passed = 0;
        for i in 0..(MAX_SOURCES as u32 + 1000) {
            let ip = IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + i));
            passed += usize::from(l.allow(ip, now));
        }
        assert!(l.sources.len() <= MAX_SOURCES);
        // Each tracked source passed once; the overflow bucket at most its burst.
        assert!(passed <= MAX_SOURCES + 2, "{passed}");
    }
}
