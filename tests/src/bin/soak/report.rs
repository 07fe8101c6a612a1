//! The soak's figures and its markdown report.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use time::OffsetDateTime;

use crate::model::{Answer, Tolerance, Verdict};
use crate::probe::{Flatness, Sample};
use crate::standin::Fault;

/// A wrong answer, for the report.
#[derive(Debug, Clone)]
pub struct WrongAnswer {
    /// Seconds since the churn began.
    pub at_secs: f64,
    /// The name asked for.
    pub name: String,
    /// What Caddy answered.
    pub got: Answer,
    /// What the name was owed when the request was sent.
    pub owed: Answer,
}

/// Answers seen through Caddy.
#[derive(Debug, Default)]
pub struct Checks {
    /// Per kind of expected answer: (right, stale within the window, wrong).
    pub by_kind: BTreeMap<&'static str, [u64; 3]>,
    /// Requests that needed their one retry (a reload closed the connection).
    pub retried: u64,
    /// The first wrong answers (at most [`Checks::KEEP`]).
    pub wrong_answers: Vec<WrongAnswer>,
}

impl Checks {
    /// How many wrong answers the report lists.
    pub const KEEP: usize = 30;

    /// Counts one verdict.
    pub fn record(&mut self, kind: &'static str, verdict: Verdict) {
        let slot = self.by_kind.entry(kind).or_default();
        let i = match verdict {
            Verdict::Right => 0,
            Verdict::Stale => 1,
            Verdict::Wrong => 2,
        };
        slot[i] += 1;
    }

    fn sum(&self, i: usize) -> u64 {
        self.by_kind.values().map(|v| v[i]).sum()
    }

    /// All answers judged.
    pub fn total(&self) -> u64 {
        self.sum(0) + self.sum(1) + self.sum(2)
    }

    /// Wrong answers.
    pub fn wrong(&self) -> u64 {
        self.sum(2)
    }
}

/// One headscale fault period.
#[derive(Debug, Clone)]
pub struct FaultRecord {
    /// What the stand-in answered.
    pub kind: Fault,
    /// Seconds since the churn began.
    pub start_secs: f64,
    /// Seconds since the churn began.
    pub end_secs: f64,
    /// Node listings tart-sync requested during it.
    pub polls: u64,
}

/// Everything the report says.
#[derive(Debug)]
pub struct Summary {
    /// How the soak was started.
    pub command: String,
    /// When the churn began.
    pub started: OffsetDateTime,
    /// Seconds of churn.
    pub churn_secs: f64,
    /// The churn's seed.
    pub seed: u64,
    /// Caddy's version and binary.
    pub caddy: String,
    /// The tart-sync binary.
    pub tart_sync: String,
    /// `headscale.poll_interval`.
    pub poll: Duration,
    /// `routes.offline_grace`.
    pub grace: Duration,
    /// The tolerated lag.
    pub tol: Tolerance,
    /// Time between two readings of tart-sync's process.
    pub sample_every: Duration,
    /// Readings before this are warm-up.
    pub warmup: Duration,
    /// Answers seen through Caddy during the churn.
    pub checks: Checks,
    /// Answers of the final check (after the churn stopped and every window passed) that were not right.
    pub final_wrong: u64,
    /// Names in the final check.
    pub final_checked: u64,
    /// Changes of the stand-in's answer.
    pub change_sets: u64,
    /// Actions by kind.
    pub actions: Vec<(&'static str, u64)>,
    /// Flaps that ended as scheduled.
    pub flap_returns: u64,
    /// Changes of the name → answer table (change sets and graces ending); an upper bound for the writes tart-sync needs.
    pub table_changes: u64,
    /// Caddy config writes logged during the churn.
    pub writes: usize,
    /// Caddy config writes logged before the churn (installing the route).
    pub writes_before: usize,
    /// Node listings served during the churn.
    pub polls: u64,
    /// The fault periods.
    pub faults: Vec<FaultRecord>,
    /// Readings of tart-sync's process.
    pub samples: Vec<Sample>,
    /// CPU time of Caddy over the whole run, if readable.
    pub caddy_cpu: Option<Duration>,
    /// CPU time of the soak driver itself, if readable.
    pub driver_cpu: Option<Duration>,
    /// How tart-sync ended on SIGTERM.
    pub exit: Result<(), String>,
}

fn mib(kb: u64) -> String {
    format!("{:.1}", kb as f64 / 1024.0)
}

/// `75.0` → `1m15s`.
pub fn clock(secs: f64) -> String {
    let s = secs.max(0.0).round() as u64;
    if s >= 60 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{s}s")
    }
}

impl Summary {
    fn baseline_index(&self) -> usize {
        let w = self.warmup.as_secs_f64();
        self.samples
            .iter()
            .position(|s| s.at_secs >= w)
            .unwrap_or(self.samples.len().saturating_sub(1))
    }

    /// RSS growth check.
    pub fn rss(&self) -> Option<Flatness> {
        let series: Vec<u64> = self.samples.iter().map(|s| s.rss_kb).collect();
        Flatness::rss(&series, self.baseline_index())
    }

    /// Open-fd growth check.
    pub fn fds(&self) -> Option<Flatness> {
        let series: Vec<u64> = self.samples.iter().map(|s| s.fds).collect();
        Flatness::fds(&series, self.baseline_index())
    }

    /// Why the soak fails; empty when it passes.
    pub fn failures(&self) -> Vec<String> {
        let mut f = Vec::new();
        if self.checks.wrong() > 0 {
            f.push(format!(
                "{} wrong answers during the churn",
                self.checks.wrong()
            ));
        }
        if self.final_wrong > 0 {
            f.push(format!(
                "{} wrong answers in the final check",
                self.final_wrong
            ));
        }
        match self.rss() {
            Some(r) if !r.holds() => f.push(format!(
                "tart-sync's RSS grew: last {} MiB > limit {} MiB",
                mib(r.last),
                mib(r.limit)
            )),
            None => f.push("no RSS readings after the warm-up".into()),
            _ => {}
        }
        match self.fds() {
            Some(r) if !r.holds() => f.push(format!(
                "tart-sync's open fds grew: last {} > limit {}",
                r.last, r.limit
            )),
            None => f.push("no fd readings after the warm-up".into()),
            _ => {}
        }
        if let Err(e) = &self.exit {
            f.push(format!("tart-sync did not stop cleanly on SIGTERM: {e}"));
        }
        if self.change_sets == 0 || self.checks.total() == 0 {
            f.push("the churn or the checks did not run".into());
        }
        f
    }

    /// The report.
    pub fn markdown(&self) -> String {
        let mut o = String::new();
        let failures = self.failures();
        let _ = writeln!(
            o,
            "# tart-sync soak: {} of churn, {}\n",
            clock(self.churn_secs),
            if failures.is_empty() { "PASS" } else { "FAIL" }
        );
        let _ = writeln!(
            o,
            "- Command: `{}`; seed {} (`--seed {}` repeats the churn's choices; timing is real)",
            self.command, self.seed, self.seed
        );
        let _ = writeln!(
            o,
            "- Started {} UTC; Caddy {}; tart-sync `{}`",
            self.started
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default(),
            self.caddy,
            self.tart_sync
        );
        let _ = writeln!(
            o,
            "- tart-sync settings: poll_interval {} ms, headscale timeout 1 s, offline_grace {} s",
            self.poll.as_millis(),
            self.grace.as_secs()
        );
        let _ = writeln!(
            o,
            "- Convergence window: an answer may lag a change by {:.1} s (poll interval + margin); during a headscale fault and {:.1} s after it (tart-sync's longest backoff + the window), by anything since the fault began. Outside that, a wrong answer counts.",
            self.tol.window.as_secs_f64(),
            self.tol.recovery.as_secs_f64()
        );
        if !failures.is_empty() {
            let _ = writeln!(o, "\n**Failures:**\n");
            for f in &failures {
                let _ = writeln!(o, "- {f}");
            }
        }

        let _ = writeln!(o, "\n## Answers through Caddy\n");
        let _ = writeln!(
            o,
            "| owed answer | right | stale, within the window | wrong |"
        );
        let _ = writeln!(o, "|---|---:|---:|---:|");
        for (kind, [r, s, w]) in &self.checks.by_kind {
            let _ = writeln!(o, "| {kind} | {r} | {s} | {w} |");
        }
        let _ = writeln!(
            o,
            "| **all** | {} | {} | **{}** |",
            self.checks.sum(0),
            self.checks.sum(1),
            self.checks.wrong()
        );
        let _ = writeln!(
            o,
            "\n{:.0} requests/s through Caddy, one at a time. Wrong answers: **{}** during the churn, {} of {} in the final check (after the churn stopped and every window passed). Requests retried once after a closed connection: {}.",
            self.checks.total() as f64 / self.churn_secs.max(1.0),
            self.checks.wrong(),
            self.final_wrong,
            self.final_checked,
            self.checks.retried
        );
        if !self.checks.wrong_answers.is_empty() {
            let _ = writeln!(o, "\n| at | name | answered | owed |\n|---|---|---|---|");
            for w in &self.checks.wrong_answers {
                let _ = writeln!(
                    o,
                    "| {} | {} | {} | {} |",
                    clock(w.at_secs),
                    w.name,
                    w.got,
                    w.owed
                );
            }
        }

        let _ = writeln!(o, "\n## Churn and Caddy writes\n");
        let actions: Vec<String> = self
            .actions
            .iter()
            .map(|(label, n)| format!("{n} {label}"))
            .collect();
        let _ = writeln!(
            o,
            "- {} change sets of the stand-in's answer: {}; {} flaps ended as scheduled",
            self.change_sets,
            actions.join(", "),
            self.flap_returns
        );
        let _ = writeln!(
            o,
            "- {} changes of the name → answer table (change sets that change it, and graces ending); flaps within the grace change nothing",
            self.table_changes
        );
        let _ = writeln!(
            o,
            "- Caddy config writes (from Caddy's log): **{}** during the churn ({} before it: installing the route); at most one per table change: {}",
            self.writes,
            self.writes_before,
            if self.writes as u64 <= self.table_changes { "yes" } else { "NO (more writes than changes)" }
        );
        let _ = writeln!(
            o,
            "- headscale node listings served during the churn: {}",
            self.polls
        );

        let _ = writeln!(o, "\n## headscale faults\n");
        if self.faults.is_empty() {
            let _ = writeln!(o, "None (the run was too short).");
        } else {
            let _ = writeln!(
                o,
                "| # | fault | from | to | polls during it |\n|---:|---|---|---|---:|"
            );
            for (i, f) in self.faults.iter().enumerate() {
                let _ = writeln!(
                    o,
                    "| {} | {} | {} | {} | {} |",
                    i + 1,
                    f.kind.label(),
                    clock(f.start_secs),
                    clock(f.end_secs),
                    f.polls
                );
            }
        }

        let _ = writeln!(o, "\n## tart-sync's process\n");
        let _ = writeln!(
            o,
            "Read from /proc every {} s. Criterion, after a warm-up of {}: last RSS ≤ first × 1.10; last open fds ≤ first + max(10 %, 3).\n",
            self.sample_every.as_secs(),
            clock(self.warmup.as_secs_f64())
        );
        let _ = writeln!(
            o,
            "| at | RSS MiB | open fds | CPU s |\n|---|---:|---:|---:|"
        );
        let n = self.samples.len();
        let step = n.div_ceil(12).max(1);
        for (i, s) in self.samples.iter().enumerate() {
            if i % step == 0 || i + 1 == n {
                let _ = writeln!(
                    o,
                    "| {} | {} | {} | {:.2} |",
                    clock(s.at_secs),
                    mib(s.rss_kb),
                    s.fds,
                    s.cpu.as_secs_f64()
                );
            }
        }
        let _ = writeln!(o);
        if let Some(r) = self.rss() {
            let _ = writeln!(
                o,
                "- RSS MiB: first (after warm-up) {}, last {}, max {}; limit {}: {}",
                mib(r.baseline),
                mib(r.last),
                mib(r.max),
                mib(r.limit),
                if r.holds() { "flat" } else { "GREW" }
            );
        }
        if let Some(r) = self.fds() {
            let _ = writeln!(
                o,
                "- open fds: first (after warm-up) {}, last {}, max {}; limit {}: {}",
                r.baseline,
                r.last,
                r.max,
                r.limit,
                if r.holds() { "flat" } else { "GREW" }
            );
        }
        let ts_cpu = self.samples.last().map(|s| s.cpu).unwrap_or_default();
        let per_min = |d: Duration| d.as_secs_f64() / (self.churn_secs / 60.0).max(1.0 / 60.0);
        let _ = writeln!(
            o,
            "- CPU time: tart-sync {:.2} s ({:.3} s per minute of churn); Caddy {}; soak driver {}",
            ts_cpu.as_secs_f64(),
            per_min(ts_cpu),
            self.caddy_cpu
                .map(|d| format!("{:.2} s", d.as_secs_f64()))
                .unwrap_or_else(|| "?".into()),
            self.driver_cpu
                .map(|d| format!("{:.2} s", d.as_secs_f64()))
                .unwrap_or_else(|| "?".into())
        );
        let _ = writeln!(
            o,
            "- tart-sync on SIGTERM: {}",
            match &self.exit {
                Ok(()) => "exited 0".to_string(),
                Err(e) => e.clone(),
            }
        );
        o
    }
}
