//! `tart-bench`: tart-sync and the routes it writes, from 10 to 10,000 TARTs,
//! measured side by side with the naive layout, on one machine against real
//! Caddy 2.11 on loopback. Run it through `scripts/bench` (which installs
//! wrk and Caddy, builds tart-sync and sets `CADDY_BIN_LATEST`).
//!
//! Parts (one markdown table each, then PASS/FAIL per goal):
//! 1. request routing ([`routing`], [`variants`]): req/s and p50/p99 to the
//!    first and last TART, tart-sync's layout vs the naive one vs the backend
//!    directly, interleaved;
//! 2. change cost ([`change_cost`]): one route change, and Caddy writes for a
//!    burst of 100 changes;
//! 3. steady state ([`steady_state`], [`mem_probe`]): the real daemon's CPU per
//!    idle cycle, peak RSS, writes; the reachability probes' CPU per minute
//!    ([`probe_cost`]);
//! 4. convergence ([`convergence`]): node online in headscale → its URL
//!    answers 200 through Caddy.
//!
//! tart-sync's steps are timed through the spans it opens ([`spans`]).
//!
//! Exit status: 0 when every measurement ran (whether or not a goal is met),
//! 1 when the harness broke (a process did not start, a route did not answer),
//! 2 on a bad command line.

mod change_cost;
mod convergence;
mod daemon;
mod load;
mod mem_probe;
mod naive;
mod names;
mod probe_cost;
mod report;
mod routing;
mod setup;
mod spans;
mod standin;
mod steady_state;
mod variants;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Parser;
use e2e::backend::{fleet_ip, start_fleet, Backend};
use e2e::sync::DOMAIN;
use e2e::Version;

use crate::load::Generator;
use crate::report::Report;
use crate::setup::{http_client, site_caddy, tart_env, Fleet};
use crate::spans::SpanTimes;
use crate::standin::StandIn;

/// The benchmark's error type: anything, with a message.
pub type Error = Box<dyn std::error::Error + Send + Sync>;
/// The benchmark's result type.
pub type Res<T> = Result<T, Error>;

/// An error with this message.
pub fn err(msg: impl Into<String>) -> Error {
    msg.into().into()
}

/// Progress on stderr.
#[macro_export]
macro_rules! progress {
    ($($t:tt)*) => { eprintln!("tart-bench: {}", format!($($t)*)) };
}

/// What to run: the command line. `--smoke` changes the defaults of the
/// options not given, and the number of trials that have no option.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "tart-bench",
    about = "Benchmarks tart-sync and the Caddy routes it writes (run it through scripts/bench)",
    after_help = "For profiling: tart-bench --serve N [--hold SECS] starts Caddy, a backend and the headscale \
stand-in with N nodes, prints tart-sync's environment as export lines and keeps them up."
)]
pub struct Options {
    /// Tiny run to check the harness: 10 TARTs, 1 s per load run, 1 repetition, few trials (options given
    /// explicitly still apply).
    #[arg(long)]
    pub smoke: bool,
    /// Seconds per load run [smoke: 1].
    #[arg(long, value_name = "S", default_value = "5", default_value_if("smoke", "true", "1"),
          value_parser = clap::value_parser!(u64).range(1..))]
    pub secs: u64,
    /// Interleaved repetitions of every load run [smoke: 1].
    #[arg(long, value_name = "R", default_value = "4", default_value_if("smoke", "true", "1"),
          value_parser = count)]
    pub reps: usize,
    /// Fleet sizes for parts 1 and 2 [smoke: 10].
    #[arg(long, value_name = "N,…", value_delimiter = ',', default_value = "10,1000,10000",
          default_value_if("smoke", "true", "10"), value_parser = count)]
    pub sizes: Vec<usize>,
    /// Fleet sizes for parts 3 and 4 [smoke: 10].
    #[arg(long, value_name = "N,…", value_delimiter = ',', default_value = "10,10000",
          default_value_if("smoke", "true", "10"), value_parser = count)]
    pub daemon_sizes: Vec<usize>,
    /// Parts to run.
    #[arg(long, value_name = "P,…", value_delimiter = ',', default_value = "1,2,3,4",
          value_parser = clap::value_parser!(u8).range(1..=4))]
    pub parts: Vec<u8>,
    /// Convergence trials (part 4) [smoke: 4].
    #[arg(long = "trials", value_name = "T", default_value = "50",
          default_value_if("smoke", "true", "4"), value_parser = count)]
    pub conv_trials: usize,
    /// Seed of the random pauses in the convergence trials (part 4).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// The tart-sync binary (parts 3 and 4).
    #[arg(long, value_name = "BIN", default_value = "target/release/tart-sync")]
    pub tart_sync: PathBuf,
    /// Instead of benchmarking: serve Caddy, a backend and the headscale stand-in with N nodes, for profiling.
    #[arg(long, value_name = "N", value_parser = count)]
    serve: Option<usize>,
    /// How long --serve keeps everything up (seconds).
    #[arg(long, value_name = "SECS", default_value_t = 120, requires = "serve")]
    hold: u64,
    /// Internal: measure the memory of one step in this process (see mem_probe.rs).
    #[arg(long, num_args = 3, value_names = ["KIND", "N", "DIR"], hide = true)]
    mem_probe: Option<Vec<String>>,
}

/// A positive count; `10_000` is read as 10000.
fn count(s: &str) -> Result<usize, String> {
    match s.trim().replace('_', "").parse::<usize>() {
        Ok(0) => Err("must be positive".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(e.to_string()),
    }
}

impl Options {
    /// Full or smoke: one of two values.
    fn pick<T>(&self, full: T, smoke: T) -> T {
        if self.smoke {
            smoke
        } else {
            full
        }
    }

    /// One-change trials per size (part 2).
    pub fn change_trials(&self) -> usize {
        self.pick(10, 3)
    }

    /// Idle cycles measured (part 3).
    pub fn idle_cycles(&self) -> u64 {
        self.pick(100, 10)
    }

    /// Poll interval in the idle test (part 3).
    pub fn idle_interval(&self) -> Duration {
        Duration::from_millis(self.pick(250, 100))
    }

    /// Poll interval in the convergence test (part 4).
    pub fn conv_interval(&self) -> Duration {
        Duration::from_secs(1)
    }
}

fn main() -> ExitCode {
    let opts = Options::parse();
    if let Some(args) = &opts.mem_probe {
        let result = match (args.first(), args.get(1).map(|n| count(n)), args.get(2)) {
            (Some(kind), Some(Ok(n)), Some(dir)) => mem_probe::probe(kind, n, dir.as_ref()),
            _ => Err(err("--mem-probe KIND N DIR")),
        };
        return finish(result.map(|kb| println!("{kb}")));
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => return finish(Err(err(format!("cannot start the runtime: {e}")))),
    };
    if let Some(n) = opts.serve {
        return finish(runtime.block_on(until_signal(serve(n, opts.hold))));
    }
    let report =
        SpanTimes::install().and_then(|spans| runtime.block_on(until_signal(run(opts, &spans))));
    match report {
        Ok(report) => {
            println!("{}", report.render());
            ExitCode::SUCCESS
        }
        Err(e) => finish(Err(err(format!("HARNESS ERROR: {e}")))),
    }
}

/// The exit status of a run: 0, or 1 with the error on stderr.
fn finish(result: Res<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tart-bench: {e}");
            ExitCode::FAILURE
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

/// Runs the parts asked for and collects the report.
async fn run(opts: Options, spans: &SpanTimes) -> Res<Report> {
    if Version::Latest.binary().is_none() {
        return Err(err(
            "CADDY_BIN_LATEST is not set to an installed Caddy 2.11 (run through scripts/bench)",
        ));
    }
    let mut report = Report::default();
    let generator = Generator::detect();
    report.sections.push(format!(
        "## Setup\n\n\
- Run: {} ({} s per load run, {} interleaved repetition(s); sizes {:?} for parts 1–2, {:?} for parts 3–4)\n\
- Caddy: {} (`CADDY_BIN_LATEST`), started from `Caddyfile.example` with the site `http://{DOMAIN}:<port>`\n\
- Load: {}; everything on loopback\n\
- Backend: one small HTTP server (the e2e harness's `Backend`, axum, answers a short JSON) on 127.0.0.2; every TART dials it\n\
- Names: {}\n",
        if opts.smoke { "smoke (tiny; figures are not meaningful)" } else { "full" },
        opts.secs,
        opts.reps,
        opts.sizes,
        opts.daemon_sizes,
        e2e::version_string(Version::Latest),
        generator.describe(),
        names::DESCRIPTION,
    ));
    let part = |p: u8| opts.parts.contains(&p);
    if part(1) || part(2) {
        let (port, backends) = start_fleet(&["tart", "tart-alt"]).await;
        let dial = format!("{}:{port}", fleet_ip(0));
        let alt = format!("{}:{port}", fleet_ip(1));
        let mut fleets = Vec::new();
        for &n in &opts.sizes {
            progress!("setting up {n} TARTs: a Caddy with tart-sync's route, a Caddy with the naive routes");
            let t = Instant::now();
            fleets.push(Fleet::start(n, &dial, port).await?);
            progress!("  ready in {:.1} s", t.elapsed().as_secs_f64());
        }
        let http = http_client()?;
        for f in &fleets {
            f.check(&http, &backends[0]).await?;
        }
        if part(1) {
            let direct = (fleet_ip(0), port).into();
            routing::run(&opts, &generator, &fleets, direct, &mut report).await?;
            let small = fleets.iter().find(|f| f.n == 10);
            let big = fleets.iter().find(|f| f.n == 10_000);
            if let (Some(small), Some(big), Some(sec)) = (small, big, report.sections.last_mut()) {
                sec.push_str(&variants::run(&opts, &generator, small, big).await?);
            }
        }
        if part(2) {
            change_cost::run(&opts, spans, &mut fleets, &dial, &alt, &mut report).await?;
        }
    }
    if part(3) {
        steady_state::run(&opts, spans, &mut report).await?;
        probe_cost::run(&opts, &mut report).await?;
    }
    if part(4) {
        convergence::run(&opts, &mut report).await?;
    }
    Ok(report)
}

/// For profiling tart-sync by hand: Caddy from `Caddyfile.example`, a
/// backend and the headscale stand-in with `n` online nodes; prints
/// tart-sync's environment as `export` lines and keeps everything up for
/// `hold` seconds.
async fn serve(n: usize, hold: u64) -> Res<()> {
    let backend = Backend::start("tart", fleet_ip(0), 0).await?;
    let (caddy, addr) = site_caddy()?;
    let standin = StandIn::start(&names::names(n), fleet_ip(0)).await?;
    for (k, v) in tart_env(standin.url(), &caddy.admin, backend.addr.port(), &[]) {
        println!("export {k}='{v}'");
    }
    println!("# Caddy's site: http://{addr} with Host: {DOMAIN}; up for {hold} s");
    use std::io::Write as _;
    std::io::stdout().flush()?;
    tokio::time::sleep(Duration::from_secs(hold)).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory as _;

    fn options(args: &[&str]) -> Result<Options, clap::Error> {
        Options::try_parse_from(std::iter::once("tart-bench").chain(args.iter().copied()))
    }

    #[test]
    fn command_line() {
        Options::command().debug_assert();
        let full = options(&[]).map_err(|e| e.to_string());
        assert_eq!(
            full.as_ref().map(|o| o.sizes.clone()),
            Ok(vec![10, 1_000, 10_000])
        );
        assert_eq!(
            full.as_ref().map(|o| (o.secs, o.reps, o.conv_trials)),
            Ok((5, 4, 50))
        );
        let smoke = options(&["--smoke", "--secs", "2", "--daemon-sizes", "10,10_000"])
            .map_err(|e| e.to_string());
        assert_eq!(
            smoke.as_ref().map(|o| (o.secs, o.reps, o.change_trials())),
            Ok((2, 1, 3))
        );
        assert_eq!(
            smoke.as_ref().map(|o| o.daemon_sizes.clone()),
            Ok(vec![10, 10_000])
        );
        assert_eq!(smoke.map(|o| o.sizes), Ok(vec![10]));
        for bad in [
            &["--parts", "5"][..],
            &["--secs", "0"],
            &["--sizes", "10,0"],
            &["--hold", "3"],
        ] {
            assert!(options(bad).is_err(), "{bad:?}");
        }
        let probe =
            Options::try_parse_from(["tart-bench", "--mem-probe", "route-form", "10", "/tmp/x"]);
        assert_eq!(
            probe.map(|c| c.mem_probe.map(|v| v.len())).ok(),
            Some(Some(3))
        );
    }
}
