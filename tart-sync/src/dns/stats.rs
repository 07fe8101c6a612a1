//! The responder's health: queries by outcome, the last query, and the
//! query rate, read by the status page, `/api/status` and `/metrics`.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Serialize;
use time::OffsetDateTime;

use super::answers::Outcome;

/// The query rate is the count of the last complete window of this length.
pub const RATE_WINDOW: Duration = Duration::from_secs(10);

/// Counters updated by the responder task.
#[derive(Debug)]
pub struct Stats {
    by_outcome: [AtomicU64; Outcome::ALL.len()],
    /// Unix time (ns) of the last query, 0 before the first.
    last_query: AtomicI64,
    /// (window start, queries in it, queries in the window before).
    window: Mutex<(Instant, u64, u64)>,
}

impl Default for Stats {
    fn default() -> Self {
        Stats {
            by_outcome: Default::default(),
            last_query: AtomicI64::new(0),
            window: Mutex::new((Instant::now(), 0, 0)),
        }
    }
}

/// A copy of the counters at one moment.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct StatsSnapshot {
    /// Queries by outcome (`answered`, `nxdomain`, `refused`, `limited`, ...).
    pub queries: Vec<(String, u64)>,
    /// When the last query arrived.
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_query: Option<OffsetDateTime>,
    /// Queries per second over the last complete 10-second window.
    pub rate: f64,
}

impl Stats {
    /// Counts one query.
    pub fn count(&self, outcome: Outcome, now: Instant) {
        if let Some(c) = self.by_outcome.get(outcome.index()) {
            c.fetch_add(1, Ordering::Relaxed);
        }
        let unix = OffsetDateTime::now_utc().unix_timestamp_nanos();
        self.last_query
            .store(i64::try_from(unix).unwrap_or(i64::MAX), Ordering::Relaxed);
        let mut w = self.window.lock().unwrap_or_else(|p| p.into_inner());
        roll(&mut w, now);
        w.1 = w.1.saturating_add(1);
    }

    /// Queries counted with `outcome`.
    pub fn queries(&self, outcome: Outcome) -> u64 {
        self.by_outcome
            .get(outcome.index())
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }

    /// The counters now.
    pub fn snapshot(&self) -> StatsSnapshot {
        let queries = Outcome::ALL
            .iter()
            .map(|o| (o.as_str().to_string(), self.queries(*o)))
            .collect();
        let last = self.last_query.load(Ordering::Relaxed);
        let last_query = (last != 0)
            .then(|| OffsetDateTime::from_unix_timestamp_nanos(i128::from(last)).ok())
            .flatten();
        let mut w = self.window.lock().unwrap_or_else(|p| p.into_inner());
        roll(&mut w, Instant::now());
        let rate = w.2 as f64 / RATE_WINDOW.as_secs_f64();
        StatsSnapshot {
            queries,
            last_query,
            rate,
        }
    }
}

/// Moves the window forward to `now`.
fn roll(w: &mut (Instant, u64, u64), now: Instant) {
    let elapsed = now.saturating_duration_since(w.0);
    if elapsed >= RATE_WINDOW.saturating_mul(2) {
        *w = (now, 0, 0);
    } else if elapsed >= RATE_WINDOW {
        *w = (w.0 + RATE_WINDOW, 0, w.1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_by_outcome_and_rate_of_the_last_window() {
        let s = Stats::default();
        let t0 = Instant::now();
        for _ in 0..30 {
            s.count(Outcome::Answered, t0);
        }
        s.count(Outcome::Refused, t0);
        assert_eq!(s.queries(Outcome::Answered), 30);
        assert_eq!(s.queries(Outcome::Refused), 1);
        let snap = s.snapshot();
        assert!(snap.last_query.is_some());
        assert!(snap.queries.contains(&("limited".to_string(), 0)));
        // The next window sees the 31 of this one.
        s.count(Outcome::Answered, t0 + RATE_WINDOW);
        let w = s.window.lock().unwrap();
        assert_eq!(w.2, 31);
    }
}
