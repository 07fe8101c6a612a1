//! What the soak reads about a process from `/proc`: resident memory, open
//! file descriptors and CPU time.

use std::time::Duration;

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
        rss_kb: rss_kb(pid)?,
        fds: fd_count(pid)?,
        cpu: cpu_time(pid, ticks_per_sec)?,
    })
}

/// `VmRSS` of `/proc/<pid>/status`, in kB.
pub fn rss_kb(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|l| {
        l.strip_prefix("VmRSS:")?
            .trim()
            .strip_suffix("kB")?
            .trim()
            .parse()
            .ok()
    })
}

/// Open file descriptors: the entries of `/proc/<pid>/fd`.
pub fn fd_count(pid: u32) -> Option<u64> {
    let dir = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?;
    Some(dir.filter(|e| e.is_ok()).count() as u64)
}

/// utime + stime of `/proc/<pid>/stat` (all threads).
pub fn cpu_time(pid: u32, ticks_per_sec: u64) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: fields follow the last ')'.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    // After the name: state is field 3 of the whole line, utime 14, stime 15.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    let ticks = utime.checked_add(stime)?;
    Some(Duration::from_secs_f64(
        ticks as f64 / ticks_per_sec.max(1) as f64,
    ))
}

/// Clock ticks per second (`getconf CLK_TCK`, else Linux's usual 100).
pub fn ticks_per_sec() -> u64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100)
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
        let s = sample(std::process::id(), 0.0, ticks_per_sec()).unwrap();
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
