//! When each probe of a round starts: evenly spread over the round, with a
//! little jitter, the round stretched so that no more than `max_rate`
//! probes start per second.

use std::time::Duration;

/// Share of the spacing between two probes by which a probe may start
/// early (jitter): probes never cluster, and one TART's probes are never
/// more than `period + spacing / JITTER_DIVISOR` apart.
pub const JITTER_DIVISOR: u32 = 10;

/// The length of one round over `tarts` TARTs: `interval`, stretched to
/// `tarts / max_rate` seconds when that is longer.
pub fn period(tarts: usize, interval: Duration, max_rate: u32) -> Duration {
    let tarts = u32::try_from(tarts).unwrap_or(u32::MAX);
    let at_rate = Duration::from_secs(u64::from(tarts)) / max_rate.max(1);
    interval.max(at_rate)
}

/// When each of `tarts` probes starts, from the round's start: probe `i`
/// at `i * spacing`, minus a jitter of up to `spacing / 10` drawn from
/// `jitter` (which returns a number in `0.0..1.0`).
pub fn offsets(tarts: usize, period: Duration, mut jitter: impl FnMut() -> f64) -> Vec<Duration> {
    let Ok(n) = u32::try_from(tarts) else {
        return Vec::new();
    };
    if n == 0 {
        return Vec::new();
    }
    let spacing = period / n;
    let max_jitter = spacing / JITTER_DIVISOR;
    (0..n)
        .map(|i| {
            let slot = spacing.saturating_mul(i);
            let early = max_jitter.mul_f64(jitter().clamp(0.0, 1.0));
            slot.saturating_sub(early)
        })
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn the_interval_stretches_with_the_rate_bound() {
        let s = Duration::from_secs;
        assert_eq!(period(10, s(30), 50), s(30));
        assert_eq!(period(1_500, s(30), 50), s(30));
        assert_eq!(period(10_000, s(30), 50), s(200));
        assert_eq!(period(10_000, s(30), 1), s(10_000));
        assert_eq!(period(0, s(30), 50), s(30));
    }

    proptest! {
        #[test]
        fn probes_are_spread_and_never_faster_than_the_rate(
            tarts in 1usize..3000,
            interval_ms in 100u64..60_000,
            max_rate in 1u32..500,
            seed in any::<u64>(),
        ) {
            let interval = Duration::from_millis(interval_ms);
            let p = period(tarts, interval, max_rate);
            prop_assert!(p >= interval);
            let mut rng = fastrand::Rng::with_seed(seed);
            let o = offsets(tarts, p, || rng.f64());
            prop_assert_eq!(o.len(), tarts);
            let spacing = p / u32::try_from(tarts).unwrap();
            // Never more than max_rate probes per second on average...
            prop_assert!(spacing.as_secs_f64() >= 1.0 / f64::from(max_rate) - 1e-6);
            for (i, w) in o.windows(2).enumerate() {
                // ...in order, each within its slot (early by at most a tenth).
                prop_assert!(w[0] <= w[1]);
                let slot = spacing * u32::try_from(i + 1).unwrap();
                prop_assert!(w[1] <= slot && w[1] >= slot - spacing / JITTER_DIVISOR);
            }
            prop_assert!(o.iter().all(|t| *t < p));
        }
    }

    #[test]
    fn jitter_moves_probes() {
        let mut rng = fastrand::Rng::with_seed(7);
        let a = offsets(100, Duration::from_secs(10), || rng.f64());
        let b = offsets(100, Duration::from_secs(10), || rng.f64());
        assert_ne!(a, b);
        let none = offsets(4, Duration::from_secs(4), || 0.0);
        assert_eq!(none, [0, 1, 2, 3].map(Duration::from_secs));
    }
}
