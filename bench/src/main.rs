//! `tart-bench`: tart-sync and the routes it writes, from 10 to 10,000 TARTs,
//! measured side by side with the naive layout, on one machine against real
//! Caddy 2.11 on loopback. Run it through `scripts/bench` (which installs
//! wrk and Caddy, builds tart-sync and sets `CADDY_BIN_LATEST`).
//!
//! Parts (one markdown table each, then PASS/FAIL per goal):
//! 1. request routing: req/s and p50/p99 to the first and last TART, tart-sync's
//!    layout vs the naive one vs the backend directly, interleaved;
//! 2. change cost: one route change, and Caddy writes for a burst of 100 changes;
//! 3. steady state: the real daemon's CPU per idle cycle, peak RSS, writes;
//! 4. convergence: node online in headscale → its URL answers 200 through Caddy.
//!
//! Exit status: 0 when every measurement ran (whether or not a goal is met),
//! 1 when the harness broke (a process did not start, a route did not answer).

mod daemon;
mod load;
mod naive;
mod names;
mod parts;
mod standin;

use std::time::Duration;

/// The benchmark's error type: anything, with a message.
pub type Error = Box<dyn std::error::Error + Send + Sync>;
/// The benchmark's result type.
pub type Res<T> = Result<T, Error>;

/// An error with this message.
pub fn err(msg: impl Into<String>) -> Error {
    msg.into().into()
}

/// Nearest-rank percentile of a sorted slice.
pub fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// The median of unsorted values.
pub fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// What to run.
#[derive(Debug, Clone)]
pub struct Options {
    /// The tiny run.
    pub smoke: bool,
    /// Seconds per load run.
    pub secs: u64,
    /// Interleaved repetitions of every load run.
    pub reps: usize,
    /// Fleet sizes for parts 1 and 2.
    pub sizes: Vec<usize>,
    /// Fleet sizes for parts 3 and 4.
    pub daemon_sizes: Vec<usize>,
    /// Parts to run (1..=4).
    pub parts: Vec<u8>,
    /// One-change trials per size (part 2).
    pub change_trials: usize,
    /// Idle cycles (part 3).
    pub idle_cycles: u64,
    /// Poll interval in the idle test (part 3).
    pub idle_interval: Duration,
    /// Convergence trials (part 4).
    pub conv_trials: usize,
    /// Poll interval in the convergence test (part 4).
    pub conv_interval: Duration,
    /// The tart-sync binary.
    pub tart_sync: std::path::PathBuf,
    /// Instead of benchmarking: serve Caddy, a backend and the stand-in with this many nodes, for profiling.
    pub serve: Option<usize>,
    /// How long `--serve` keeps everything up (seconds).
    pub hold: u64,
    /// Internal: measure the memory of one step in this process.
    pub mem_probe: Option<(String, usize, std::path::PathBuf)>,
}

impl Options {
    fn parse() -> Res<Options> {
        let mut o = Options {
            smoke: false,
            secs: 5,
            reps: 4,
            sizes: vec![10, 1_000, 10_000],
            daemon_sizes: vec![10, 10_000],
            parts: vec![1, 2, 3, 4],
            change_trials: 10,
            idle_cycles: 100,
            idle_interval: Duration::from_millis(250),
            conv_trials: 50,
            conv_interval: Duration::from_secs(1),
            tart_sync: "target/release/tart-sync".into(),
            serve: None,
            hold: 120,
            mem_probe: None,
        };
        let mut explicit: Vec<String> = Vec::new();
        let mut args = std::env::args().skip(1);
        while let Some(a) = args.next() {
            let mut value = |name: &str| {
                args.next()
                    .ok_or_else(|| err(format!("{name} needs a value")))
            };
            match a.as_str() {
                "--smoke" => o.smoke = true,
                "--secs" => o.secs = value("--secs")?.parse()?,
                "--reps" => o.reps = value("--reps")?.parse()?,
                "--sizes" => o.sizes = list(&value("--sizes")?)?,
                "--daemon-sizes" => o.daemon_sizes = list(&value("--daemon-sizes")?)?,
                "--parts" => o.parts = list(&value("--parts")?)?,
                "--trials" => o.conv_trials = value("--trials")?.parse()?,
                "--tart-sync" => o.tart_sync = value("--tart-sync")?.into(),
                "--serve" => o.serve = Some(value("--serve")?.replace('_', "").parse()?),
                "--hold" => o.hold = value("--hold")?.parse()?,
                "--mem-probe" => {
                    let kind = value("--mem-probe")?;
                    let n = value("--mem-probe")?.parse()?;
                    let dir = value("--mem-probe")?;
                    o.mem_probe = Some((kind, n, dir.into()));
                }
                "-h" | "--help" => {
                    println!(
                        "usage: tart-bench [--smoke] [--secs S] [--reps R] [--sizes 10,1000,10000] \
[--daemon-sizes 10,10000] [--parts 1,2,3,4] [--trials T] [--tart-sync BIN]\n\
       tart-bench --serve N [--hold SECS]   (for profiling: Caddy, a backend and the headscale stand-in with N \
nodes; prints tart-sync's environment and keeps them up)"
                    );
                    std::process::exit(0);
                }
                other => return Err(err(format!("unknown argument {other} (see --help)"))),
            }
            explicit.push(a);
        }
        if o.smoke {
            let set = |flag: &str| explicit.iter().any(|a| a == flag);
            if !set("--secs") {
                o.secs = 1;
            }
            if !set("--reps") {
                o.reps = 1;
            }
            if !set("--sizes") {
                o.sizes = vec![10];
            }
            if !set("--daemon-sizes") {
                o.daemon_sizes = vec![10];
            }
            if !set("--trials") {
                o.conv_trials = 4;
            }
            o.change_trials = 3;
            o.idle_cycles = 10;
            o.idle_interval = Duration::from_millis(100);
        }
        if o.secs == 0
            || o.reps == 0
            || o.sizes.is_empty()
            || o.sizes.contains(&0)
            || o.daemon_sizes.contains(&0)
        {
            return Err(err("--secs, --reps and sizes must be positive"));
        }
        Ok(o)
    }
}

fn list<T: std::str::FromStr>(s: &str) -> Res<Vec<T>>
where
    T::Err: std::error::Error + Send + Sync + 'static,
{
    s.split(',')
        .filter(|p| !p.trim().is_empty())
        .map(|p| Ok(p.trim().replace('_', "").parse()?))
        .collect()
}

/// One goal and whether the run met it.
#[derive(Debug, Clone)]
pub struct Goal {
    /// What is asked.
    pub what: String,
    /// What was measured.
    pub measured: String,
    /// Met or not; `None` when not measured in this run.
    pub pass: Option<bool>,
}

/// The report: markdown sections and goals.
#[derive(Debug, Default)]
pub struct Report {
    /// Sections in order.
    pub sections: Vec<String>,
    /// Goals in order.
    pub goals: Vec<Goal>,
}

impl Report {
    /// Adds a goal.
    pub fn goal(&mut self, what: &str, measured: String, pass: Option<bool>) {
        self.goals.push(Goal {
            what: what.to_string(),
            measured,
            pass,
        });
    }
}

/// A markdown table.
pub fn table(head: &[&str], rows: &[Vec<String>]) -> String {
    let mut s = format!("| {} |\n|", head.join(" | "));
    for i in 0..head.len() {
        // Text columns left, figures right.
        let text = rows.first().and_then(|r| r.get(i)).is_none_or(|c| {
            c.chars()
                .next()
                .is_some_and(|ch| ch.is_alphabetic() || ch == '`' || ch == '*')
        });
        s.push_str(if i == 0 || text { "---|" } else { "---:|" });
    }
    s.push('\n');
    for r in rows {
        s.push_str(&format!("| {} |\n", r.join(" | ")));
    }
    s
}

/// `12,345`.
pub fn int(v: f64) -> String {
    if !v.is_finite() {
        return "–".into();
    }
    let n = v.round() as i64;
    let digits = n.abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 {
        format!("-{out}")
    } else {
        out
    }
}

/// Milliseconds with sensible precision.
pub fn ms(v: f64) -> String {
    if !v.is_finite() {
        "–".into()
    } else if v < 10.0 {
        format!("{v:.2} ms")
    } else if v < 100.0 {
        format!("{v:.1} ms")
    } else {
        format!("{} ms", int(v))
    }
}

/// `a ÷ b` as `0.87×`.
pub fn ratio(a: f64, b: f64) -> String {
    if a.is_finite() && b.is_finite() && b > 0.0 {
        format!("{:.2}×", a / b)
    } else {
        "–".into()
    }
}

/// Progress on stderr.
#[macro_export]
macro_rules! progress {
    ($($t:tt)*) => { eprintln!("tart-bench: {}", format!($($t)*)) };
}

fn main() -> std::process::ExitCode {
    let opts = match Options::parse() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("tart-bench: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("tart-bench: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    if let Some((kind, n, dir)) = &opts.mem_probe {
        return match parts::mem_probe(kind, *n, dir) {
            Ok(kb) => {
                println!("{kb}");
                std::process::ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("tart-bench: {e}");
                std::process::ExitCode::FAILURE
            }
        };
    }
    if let Some(n) = opts.serve {
        return match runtime.block_on(until_signal(parts::serve(&opts, n))) {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("tart-bench: {e}");
                std::process::ExitCode::FAILURE
            }
        };
    }
    match runtime.block_on(until_signal(parts::run(opts))) {
        Ok(report) => {
            for s in &report.sections {
                println!("{s}");
            }
            println!("## Goals\n");
            let rows: Vec<Vec<String>> = report
                .goals
                .iter()
                .map(|g| {
                    let verdict = match g.pass {
                        Some(true) => "PASS",
                        Some(false) => "**FAIL**",
                        None => "not measured",
                    };
                    vec![g.what.clone(), g.measured.clone(), verdict.to_string()]
                })
                .collect();
            println!("{}", table(&["goal", "measured", "result"], &rows));
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("tart-bench: HARNESS ERROR: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Runs `f` until SIGINT or SIGTERM; on a signal `f` is dropped, which stops
/// every Caddy, tart-sync and load generator it started and removes their
/// temporary directories.
async fn until_signal<T>(f: impl std::future::Future<Output = Res<T>>) -> Res<T> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    tokio::select! {
        r = f => r,
        _ = tokio::signal::ctrl_c() => Err(err("interrupted (SIGINT)")),
        _ = term.recv() => Err(err("interrupted (SIGTERM)")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles() {
        let v: Vec<f64> = (1..=50).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), Some(25.0));
        assert_eq!(percentile(&v, 99.0), Some(50.0));
        assert_eq!(median(&[3.0, 1.0, 2.0, 4.0]), 2.5);
    }

    #[test]
    fn formats() {
        assert_eq!(int(1234567.4), "1,234,567");
        assert_eq!(int(999.0), "999");
        assert_eq!(ratio(1.0, 2.0), "0.50×");
    }
}
