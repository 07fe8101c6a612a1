//! What the soak reads about a process from `/proc`: resident memory, open
//! file descriptors and CPU time.

use std::time::Duration;

use e2e::procfs;

/// One reading of a process.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// Seconds since the churn began.
    pub at_secs: f64,
    /// `VmRSS` in kB.
    pub rss_kb: u64,
    /// Entries in `/proc/<pid>/fd`.
    pub fds: u64,
    /// utime + stime.
    pub cpu: Duration,
}

/// Reads `pid` now; `None` when it is gone or `/proc` is unreadable.
pub fn sample(pid: u32, at_secs: f64, ticks_per_sec: u64) -> Option<Sample> {
    Some(Sample {
        at_secs,
        rss_kb: procfs::rss_kb(pid)?,
        fds: procfs::fd_count(pid)?,
        cpu: procfs::cpu_time(pid, ticks_per_sec)?,
    })
}

/// The growth criterion on a series of readings after the warm-up.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Flatness {
    /// The first reading after the warm-up.
    pub baseline: u64,
    /// The last reading.
    pub last: u64,
    /// The largest reading of the whole run.
    pub max: u64,
    /// The largest `last` allowed.
    pub limit: u64,
}

impl Flatness {
    /// RSS: the last reading may exceed the baseline by 10 %.
    pub fn rss(series: &[u64], baseline_index: usize) -> Option<Flatness> {
        Flatness::with_limit(series, baseline_index, |b| b + b / 10)
    }

    /// File descriptors: the last reading may exceed the baseline by 10 %,
    /// and by at least 3 (connection pools open and close a socket or two).
    pub fn fds(series: &[u64], baseline_index: usize) -> Option<Flatness> {
        Flatness::with_limit(series, baseline_index, |b| b + (b / 10).max(3))
    }

    fn with_limit(
        series: &[u64],
        baseline_index: usize,
        limit: impl Fn(u64) -> u64,
    ) -> Option<Flatness> {
        let baseline = *series.get(baseline_index)?;
        Some(Flatness {
            baseline,
            last: *series.last()?,
            max: series.iter().copied().max()?,
            limit: limit(baseline),
        })
    }

    /// True when the last reading is within the limit.
    pub fn holds(&self) -> bool {
        self.last <= self.limit
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_its_own_process() {
        let s = sample(std::process::id(), 0.0, procfs::clock_ticks()).unwrap();
        assert!(s.rss_kb > 0 && s.fds >= 3, "{s:?}");
        assert!(sample(u32::MAX, 0.0, 100).is_none());
    }

    #[test]
    fn growth_beyond_the_limit_fails_and_noise_within_it_passes() {
        let rss = Flatness::rss(&[5_000, 10_000, 10_500, 10_900], 1).unwrap();
        assert!(rss.holds());
        assert_eq!((rss.baseline, rss.limit, rss.max), (10_000, 11_000, 10_900));
        assert!(!Flatness::rss(&[10_000, 11_001], 0).unwrap().holds());
        assert!(Flatness::fds(&[12, 15], 0).unwrap().holds());
        assert!(!Flatness::fds(&[12, 16], 0).unwrap().holds());
        assert!(Flatness::fds(&[12], 3).is_none());
    }
}
