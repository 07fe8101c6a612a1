//! The soak test behind `scripts/soak`: real Caddy (from `Caddyfile.example`,
//! on loopback), the real `tart-sync run` binary, a headscale stand-in and a
//! backend per 127.0.0.x address, with seeded random churn for N minutes
//! (flaps within and beyond the grace, renames, address moves, adds, removes,
//! headscale faults). Throughout, every name is asked through Caddy and judged
//! against the soak's own model ([`model`]); tart-sync's RSS, open fds and CPU
//! time are read from /proc. Prints a markdown report and keeps it with the
//! logs. Exit status: 0 pass, 1 a wrong answer or growth beyond the
//! criterion, 2 the harness broke, 130 interrupted. Every process it starts is
//! stopped when it ends, also on Ctrl-C, SIGTERM or an error.

mod churn;
mod model;
mod probe;
mod report;
mod standin;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};
use e2e::backend::start_fleet;
use e2e::headscale::API_KEY;
use e2e::sync::{caddyfile_example, DOMAIN};
use e2e::{free_port, Caddy, Version};
use time::OffsetDateTime;

use churn::{Action, Churn, Limits};
use model::{backend_label, classify, judge, Answer, FaultSpan, Timeline, Tolerance, Verdict};
use report::{clock, Checks, FaultRecord, Summary, WrongAnswer};
use standin::{Fault, StandIn};

/// Why the soak could not run.
#[derive(Debug, thiserror::Error)]
pub enum SoakError {
    /// A file or socket operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The rig itself broke (a process died, nothing converged at the start...).
    #[error("{0}")]
    Harness(String),
}

impl SoakError {
    /// An I/O error while doing `what`.
    pub fn io(what: impl Into<String>, source: std::io::Error) -> SoakError {
        SoakError::Io {
            what: what.into(),
            source,
        }
    }
}

/// Which Caddy to run.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum CaddyChoice {
    /// Caddy 2.11 from CADDY_BIN_LATEST.
    #[value(name = "2.11", alias = "latest")]
    Latest,
    /// Caddy 2.6 from CADDY_BIN_2_6.
    #[value(name = "2.6")]
    V2_6,
}

/// A soak test of tart-sync: real Caddy, the tart-sync binary and a headscale
/// stand-in under seeded random churn for N minutes; every name is asked through
/// Caddy throughout. Exit status: 0 pass, 1 wrong answers or growth, 2 the
/// harness broke, 130 interrupted.
#[derive(Debug, Parser)]
#[command(name = "soak", version)]
struct Cli {
    /// How long the churn runs, in minutes.
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=1440))]
    minutes: u64,
    /// Which Caddy: 2.11 (CADDY_BIN_LATEST) or 2.6 (CADDY_BIN_2_6).
    #[arg(long, value_enum, default_value = "2.11")]
    caddy: CaddyChoice,
    /// Seed of the churn (default: a random one, printed).
    #[arg(long)]
    seed: Option<u64>,
    /// The tart-sync binary (default: TART_SYNC_BIN, else the one beside this program).
    #[arg(long)]
    tart_sync: Option<PathBuf>,
    /// Where the report and logs go (default: <target dir>/soak).
    #[arg(long)]
    out: Option<PathBuf>,
    /// tart-sync's headscale.poll_interval, in milliseconds.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(200..=10_000))]
    poll_ms: u64,
    /// tart-sync's routes.offline_grace, in seconds.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(2..=120))]
    grace_secs: u64,
    /// How much later than one poll interval an answer may converge, in milliseconds.
    #[arg(long, default_value_t = 2000, value_parser = clap::value_parser!(u64).range(0..=60_000))]
    margin_ms: u64,
    /// Churn for this many seconds instead of --minutes (for developing the soak).
    #[arg(long, hide = true)]
    secs: Option<u64>,
    /// The command line to show in the report (scripts/soak passes its own).
    #[arg(long, hide = true)]
    invoked_as: Option<String>,
}

/// Backend addresses (127.0.0.2 ..), more than the fleet's most nodes, for moves.
const ADDRS: usize = 24;
/// Nodes at the start.
const INITIAL_NODES: usize = 12;
/// tart-sync's headscale.timeout.
const HEADSCALE_TIMEOUT: Duration = Duration::from_secs(1);
/// Time between two check rounds.
const TICK: Duration = Duration::from_millis(500);
/// Names gone from headscale that each round still asks for.
const GONE_CHECKED: usize = 6;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("soak: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    runtime.block_on(async {
        tokio::select! {
            r = run(cli) => match r {
                Ok(true) => ExitCode::SUCCESS,
                Ok(false) => ExitCode::from(1),
                Err(e) => {
                    eprintln!("soak: the harness broke: {e}");
                    ExitCode::from(2)
                }
            },
            signal = interrupted() => {
                eprintln!("soak: {signal}: stopping tart-sync, Caddy, the stand-in and the backends");
                ExitCode::from(130)
            }
        }
    })
}

/// Resolves on SIGINT, SIGTERM or SIGHUP.
async fn interrupted() -> &'static str {
    use tokio::signal::unix::{signal, SignalKind};
    async fn on(kind: SignalKind) {
        match signal(kind) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    }
    tokio::select! {
        _ = on(SignalKind::interrupt()) => "interrupted (SIGINT)",
        _ = on(SignalKind::terminate()) => "terminated (SIGTERM)",
        _ = on(SignalKind::hangup()) => "hung up (SIGHUP)",
    }
}

/// The `tart-sync run` child; SIGTERM (then SIGKILL) when dropped.
struct TartSync {
    child: Child,
    pid: u32,
    log: PathBuf,
}

impl TartSync {
    fn spawn(
        bin: &Path,
        env: &BTreeMap<String, String>,
        log: &Path,
    ) -> Result<TartSync, SoakError> {
        let file = std::fs::File::create(log)
            .map_err(|e| SoakError::io(format!("creating {}", log.display()), e))?;
        let child = e2e::tart_sync_run_command(bin, env, "info", file)
            .spawn()
            .map_err(|e| {
                SoakError::io(
                    format!(
                        "starting {} (build it with `cargo build -p tart-sync`)",
                        bin.display()
                    ),
                    e,
                )
            })?;
        Ok(TartSync {
            pid: child.id(),
            child,
            log: log.to_path_buf(),
        })
    }

    /// The exit status, once it has exited.
    fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// SIGTERM, then SIGKILL if it has not exited within `limit`.
    fn terminate(&mut self, limit: Duration) -> Result<(), String> {
        if let Some(status) = self.exited() {
            return Err(format!("had already exited ({status})"));
        }
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Some(status) = self.exited() {
                return if status.success() {
                    Ok(())
                } else {
                    Err(format!("exited with {status}"))
                };
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        Err(format!(
            "still running {} s after SIGTERM; killed",
            limit.as_secs()
        ))
    }
}

impl Drop for TartSync {
    fn drop(&mut self) {
        if self.exited().is_none() {
            let _ = self.terminate(Duration::from_secs(3));
        }
    }
}

/// `<target>/soak` for a driver at `<target>/<profile>/soak`.
fn default_out_dir() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.parent()?.join("soak")))
        .unwrap_or_else(|| PathBuf::from("target/soak"))
}

/// Asks Caddy for `/<name>/` (one retry after a closed connection).
async fn ask(
    http: &reqwest::Client,
    port: u16,
    name: &str,
) -> (Answer, OffsetDateTime, OffsetDateTime, bool) {
    let sent = OffsetDateTime::now_utc();
    let mut last_err = String::new();
    for attempt in 0..2 {
        let r = http
            .get(format!("http://127.0.0.1:{port}/{name}/"))
            .header("host", DOMAIN)
            .timeout(Duration::from_secs(5))
            .send()
            .await;
        match r {
            Ok(resp) => {
                let status = resp.status().as_u16();
                let body = resp.text().await.unwrap_or_default();
                return (
                    classify(name, status, &body),
                    sent,
                    OffsetDateTime::now_utc(),
                    attempt > 0,
                );
            }
            Err(e) => {
                last_err = e.to_string();
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    (
        Answer::Other(format!("no answer twice: {last_err}")),
        sent,
        OffsetDateTime::now_utc(),
        true,
    )
}

fn kind_of(owed: &Answer, gone: bool) -> &'static str {
    match owed {
        Answer::Backend(_) => "its own backend (200)",
        Answer::Offline => "offline page (503)",
        Answer::NoTart if gone => "gone from headscale (404)",
        _ => "never known (404)",
    }
}

fn write_file(path: &Path, text: &str) -> Result<(), SoakError> {
    std::fs::write(path, text).map_err(|e| SoakError::io(format!("writing {}", path.display()), e))
}

async fn run(cli: Cli) -> Result<bool, SoakError> {
    let version = match cli.caddy {
        CaddyChoice::Latest => Version::Latest,
        CaddyChoice::V2_6 => Version::V2_6,
    };
    let Some(caddy_bin) = version.binary() else {
        return Err(SoakError::Harness(format!(
            "{} is not set to an installed Caddy (scripts/soak sets it through scripts/setup)",
            version.env_var()
        )));
    };
    let tart_sync_bin = match cli.tart_sync.clone() {
        Some(p) => p,
        None => std::panic::catch_unwind(e2e::tart_sync_bin).map_err(|_| {
            SoakError::Harness(
                "no tart-sync binary: pass --tart-sync or build it with `cargo build -p tart-sync`"
                    .into(),
            )
        })?,
    };
    let poll = Duration::from_millis(cli.poll_ms);
    let grace = Duration::from_secs(cli.grace_secs);
    let window = poll + Duration::from_millis(cli.margin_ms);
    // tart-sync backs off up to twelve poll intervals (at most 60 s) while headscale fails.
    let tol = Tolerance {
        window,
        recovery: poll.saturating_mul(12).min(Duration::from_secs(60)) + window,
    };
    let run_for = Duration::from_secs(cli.secs.unwrap_or(cli.minutes.saturating_mul(60)));
    let sample_every = if run_for < Duration::from_secs(300) {
        Duration::from_secs(5)
    } else {
        Duration::from_secs(10)
    };
    let warmup = (run_for / 4).min(Duration::from_secs(300));
    let seed = cli.seed.unwrap_or_else(|| fastrand::u64(..));
    let out = cli.out.clone().unwrap_or_else(default_out_dir);
    std::fs::create_dir_all(&out)
        .map_err(|e| SoakError::io(format!("creating {}", out.display()), e))?;
    let stamp = {
        let t = OffsetDateTime::now_utc();
        format!(
            "{:04}{:02}{:02}T{:02}{:02}{:02}Z",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second()
        )
    };
    let file = |suffix: &str| out.join(format!("soak-{stamp}{suffix}"));
    let command = cli
        .invoked_as
        .clone()
        .unwrap_or_else(|| std::env::args().collect::<Vec<_>>().join(" "));
    eprintln!(
        "soak: {} of churn, seed {seed} (repeat the churn's choices with --seed {seed}); files: {}",
        clock(run_for.as_secs_f64()),
        file("*").display()
    );

    // The rig: Caddy, backends, the stand-in, tart-sync.
    let http_port = free_port();
    let site = format!("http://{DOMAIN}:{http_port}");
    let wildcard = format!("http://*.{DOMAIN}:{http_port}");
    let mut caddy = Caddy::start_caddyfile(
        version,
        &caddyfile_example(),
        &[("TART_SITE", &site), ("TART_WILDCARD_SITE", &wildcard)],
    )
    .ok_or_else(|| SoakError::Harness(format!("{} is not installed", version.env_var())))?;
    let caddy_label = format!(
        "{} (`{}`)",
        e2e::version_string(version),
        caddy_bin.display()
    );
    let labels: Vec<String> = (0..ADDRS).map(backend_label).collect();
    let label_refs: Vec<&str> = labels.iter().map(String::as_str).collect();
    let (upstream_port, _backends) = start_fleet(&label_refs).await;
    let standin = StandIn::start(HEADSCALE_TIMEOUT * 3).await?;
    let mut churn = Churn::new(seed, grace, ADDRS, Limits::SOAK);
    let mut rng = fastrand::Rng::with_seed(seed ^ 0x5eed_50a6);
    let t0 = OffsetDateTime::now_utc();
    let mut fleet = churn.initial(INITIAL_NODES, t0);
    standin.set_fleet(&fleet);
    let mut timeline = Timeline::new(grace, t0, fleet.clone());

    let env: BTreeMap<String, String> = [
        ("TART_SYNC_HEADSCALE_URL", standin.url().to_string()),
        ("TART_SYNC_HEADSCALE_API_KEY", API_KEY.to_string()),
        (
            "TART_SYNC_HEADSCALE_POLL_INTERVAL",
            format!("{}ms", cli.poll_ms),
        ),
        (
            "TART_SYNC_HEADSCALE_TIMEOUT",
            format!("{}ms", HEADSCALE_TIMEOUT.as_millis()),
        ),
        ("TART_SYNC_HEADSCALE_USER", "tagged-devices".to_string()),
        ("TART_SYNC_CADDY_ADMIN", caddy.admin.clone()),
        ("TART_SYNC_ROUTES_DOMAIN", DOMAIN.to_string()),
        ("TART_SYNC_ROUTES_UPSTREAM_PORT", upstream_port.to_string()),
        (
            "TART_SYNC_ROUTES_OFFLINE_GRACE",
            format!("{}s", cli.grace_secs),
        ),
        (
            "TART_SYNC_STATUS_LISTEN",
            format!("127.0.0.1:{}", free_port()),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let mut daemon = TartSync::spawn(&tart_sync_bin, &env, &file("-tart-sync.log"))?;
    let ticks = e2e::procfs::clock_ticks();
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        // A Caddy reload closes kept-alive connections: one connection per request.
        .pool_max_idle_per_host(0)
        .build()
        .map_err(|e| SoakError::Harness(format!("building the HTTP client: {e}")))?;

    // Every initial name must reach its backend before the churn starts.
    let names: Vec<String> = fleet.nodes.values().map(|n| n.name.clone()).collect();
    let ready_by = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = daemon.exited() {
            return Err(SoakError::Harness(format!(
                "tart-sync exited at start ({status}); its log:\n{}",
                daemon.log_tail(30)
            )));
        }
        let mut all = true;
        for n in &names {
            let (got, ..) = ask(&http, http_port, n).await;
            all &= got == fleet.expect(n, OffsetDateTime::now_utc(), grace);
        }
        if all {
            break;
        }
        if Instant::now() >= ready_by {
            return Err(SoakError::Harness(format!(
                "the initial {INITIAL_NODES} names did not reach their backends through Caddy within 30 s; tart-sync's log:\n{}",
                daemon.log_tail(30)
            )));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let writes_before = caddy.admin_writes();
    let polls_before = standin.polls();
    let start = Instant::now();
    let started = OffsetDateTime::now_utc();
    let secs = |at: Instant| at.saturating_duration_since(start).as_secs_f64();
    eprintln!("soak: {INITIAL_NODES} TARTs reachable through Caddy; churn begins");

    let mut churn_log = std::fs::File::create(file("-churn.log"))
        .map_err(|e| SoakError::io("creating the churn log", e))?;
    let mut checks = Checks::default();
    let mut spans: Vec<FaultSpan> = Vec::new();
    let mut faults: Vec<FaultRecord> = Vec::new();
    // The fault going on: kind, when it ends, polls when it began.
    let mut fault: Option<(Fault, Instant, u64)> = None;
    let mut set_in_fault = false;
    let mut next_fault = start + churn.between(Duration::from_secs(15), Duration::from_secs(25));
    let mut next_set = start + churn.between(Duration::from_secs(1), Duration::from_secs(4));
    let mut next_sample = start;
    let progress_every = if run_for < Duration::from_secs(600) {
        Duration::from_secs(15)
    } else {
        Duration::from_secs(60)
    };
    let mut next_progress = start + progress_every;
    let mut samples = Vec::new();
    let mut gone: VecDeque<String> = VecDeque::new();
    let mut gone_ever: BTreeSet<String> = BTreeSet::new();
    let mut change_sets = 0u64;
    let mut flap_returns = 0u64;
    let mut table_changes = 0u64;
    let mut last_table = fleet.table(started, grace);
    let lookback = tol.window + tol.recovery + Duration::from_secs(20);
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);

    loop {
        tick.tick().await;
        let now = Instant::now();
        if now >= start + run_for {
            break;
        }
        if let Some(status) = daemon.exited() {
            return Err(SoakError::Harness(format!(
                "tart-sync exited during the soak ({status}) at {}; its log:\n{}",
                clock(secs(now)),
                daemon.log_tail(30)
            )));
        }
        if !caddy.is_running() {
            return Err(SoakError::Harness(format!(
                "Caddy exited during the soak at {}",
                clock(secs(now))
            )));
        }
        let wall = OffsetDateTime::now_utc();

        // headscale faults: one at a time, none in the last 20 s.
        match fault {
            Some((kind, until, polls_at)) if now >= until => {
                standin.set_fault(None);
                if let Some(s) = spans.last_mut() {
                    s.end = Some(wall);
                }
                if let Some(f) = faults.last_mut() {
                    f.end_secs = secs(now);
                    f.polls = standin.polls().saturating_sub(polls_at);
                    let _ = writeln!(
                        churn_log,
                        "{:8.1}s fault ends: {} ({} polls)",
                        secs(now),
                        kind.label(),
                        f.polls
                    );
                }
                fault = None;
                next_fault = now + churn.between(Duration::from_secs(20), Duration::from_secs(60));
            }
            None if now >= next_fault && now + Duration::from_secs(20) < start + run_for => {
                let kind = churn.pick(&Fault::ALL).unwrap_or(Fault::Status500);
                let lasts = churn.between(Duration::from_secs(2), Duration::from_secs(6));
                standin.set_fault(Some(kind));
                spans.push(FaultSpan {
                    start: wall,
                    end: None,
                });
                faults.push(FaultRecord {
                    kind,
                    start_secs: secs(now),
                    end_secs: secs(now + lasts),
                    polls: 0,
                });
                let _ = writeln!(
                    churn_log,
                    "{:8.1}s fault begins: {} for {:.1}s",
                    secs(now),
                    kind.label(),
                    lasts.as_secs_f64()
                );
                fault = Some((kind, now + lasts, standin.polls()));
                set_in_fault = false;
            }
            _ => {}
        }

        // Churn: scheduled ends of flaps, and a change set when due (one at most per fault).
        let mut lines = churn.due_returns(&mut fleet, wall);
        flap_returns += lines.len() as u64;
        if now >= next_set && (fault.is_none() || !set_in_fault) {
            set_in_fault = fault.is_some();
            lines.extend(churn.change_set(&mut fleet, wall));
            next_set = now + churn.between(Duration::from_secs(1), Duration::from_secs(4));
        }
        let table_now = timeline.current().table(wall, grace);
        if table_now != last_table {
            // A grace ended.
            table_changes += 1;
        }
        last_table = table_now;
        if !lines.is_empty() {
            let after = fleet.table(wall, grace);
            if after != last_table {
                table_changes += 1;
            }
            for name in last_table.keys().filter(|n| !after.contains_key(*n)) {
                gone.push_back(name.clone());
                gone_ever.insert(name.clone());
                if gone.len() > GONE_CHECKED {
                    gone.pop_front();
                }
            }
            last_table = after;
            standin.set_fleet(&fleet);
            timeline.push(wall, fleet.clone());
            change_sets += 1;
            for l in &lines {
                let _ = writeln!(churn_log, "{:8.1}s {l}", secs(now));
            }
        }
        timeline.prune(wall - lookback);

        // One check round: every current name, the recently gone ones, one never known.
        let mut round: Vec<String> = fleet.nodes.values().map(|n| n.name.clone()).collect();
        round.extend(gone.iter().cloned());
        round.push(format!("nobody-{}", rng.u32(..)));
        for name in &round {
            let (got, sent, received, retried) = ask(&http, http_port, name).await;
            checks.retried += u64::from(retried);
            let owed = timeline.current().expect(name, sent, grace);
            let verdict = judge(&timeline, &spans, tol, name, &got, sent, received);
            checks.record(kind_of(&owed, gone_ever.contains(name)), verdict);
            if verdict == Verdict::Wrong {
                let at = secs(Instant::now());
                eprintln!(
                    "soak: WRONG at {}: /{name}/ answered {got}; owed {owed}",
                    clock(at)
                );
                let _ = writeln!(
                    churn_log,
                    "{at:8.1}s WRONG /{name}/ answered {got}; owed {owed}"
                );
                if checks.wrong_answers.len() < Checks::KEEP {
                    checks.wrong_answers.push(WrongAnswer {
                        at_secs: at,
                        name: name.clone(),
                        got,
                        owed,
                    });
                }
            }
        }

        let now = Instant::now();
        if now >= next_sample {
            let s = probe::sample(daemon.pid, secs(now), ticks).ok_or_else(|| {
                SoakError::Harness(format!("cannot read /proc/{} of tart-sync", daemon.pid))
            })?;
            samples.push(s);
            next_sample += sample_every;
        }
        if now >= next_progress {
            next_progress += progress_every;
            let last = samples.last();
            eprintln!(
                "soak: {} / {}: {change_sets} change sets, {} answers ({} wrong), {} faults, tart-sync RSS {} MiB, {} fds",
                clock(secs(now)),
                clock(run_for.as_secs_f64()),
                checks.total(),
                checks.wrong(),
                faults.len(),
                last.map(|s| format!("{:.1}", s.rss_kb as f64 / 1024.0)).unwrap_or_default(),
                last.map(|s| s.fds).unwrap_or_default()
            );
        }
    }
    let churn_secs = secs(Instant::now());

    // The end: no more changes; once every window has passed, every name must be right.
    if let Some((kind, _, polls_at)) = fault.take() {
        standin.set_fault(None);
        let wall = OffsetDateTime::now_utc();
        if let Some(s) = spans.last_mut() {
            s.end = Some(wall);
        }
        if let Some(f) = faults.last_mut() {
            f.end_secs = churn_secs;
            f.polls = standin.polls().saturating_sub(polls_at);
        }
        let _ = writeln!(churn_log, "{churn_secs:8.1}s fault ends: {}", kind.label());
    }
    let wall = OffsetDateTime::now_utc();
    let mut settled = wall + tol.window;
    for n in fleet.nodes.values().filter(|n| !n.online) {
        settled = settled.max(n.last_seen + grace + tol.window);
    }
    if let Some(end) = spans.last().and_then(|s| s.end) {
        settled = settled.max(end + tol.recovery);
    }
    let wait = (settled - wall).max(time::Duration::ZERO);
    tokio::time::sleep(Duration::try_from(wait).unwrap_or_default()).await;
    let mut final_wrong = 0;
    let mut final_names: Vec<String> = fleet.nodes.values().map(|n| n.name.clone()).collect();
    final_names.extend(gone.iter().cloned());
    final_names.push("nobody-at-all".into());
    for name in &final_names {
        let (got, sent, _, _) = ask(&http, http_port, name).await;
        let owed = fleet.expect(name, sent, grace);
        if got != owed {
            final_wrong += 1;
            eprintln!("soak: WRONG in the final check: /{name}/ answered {got}; owed {owed}");
            if checks.wrong_answers.len() < Checks::KEEP {
                checks.wrong_answers.push(WrongAnswer {
                    at_secs: secs(Instant::now()),
                    name: name.clone(),
                    got,
                    owed,
                });
            }
        }
    }

    if let Some(s) = probe::sample(daemon.pid, secs(Instant::now()), ticks) {
        samples.push(s);
    }
    let writes_total = caddy.admin_writes();
    let polls = standin.polls().saturating_sub(polls_before);
    let caddy_cpu = caddy.pid().and_then(|p| e2e::procfs::cpu_time(p, ticks));
    let driver_cpu = e2e::procfs::cpu_time(std::process::id(), ticks);
    let exit = daemon.terminate(Duration::from_secs(10));

    let summary = Summary {
        command,
        started,
        churn_secs,
        seed,
        caddy: caddy_label,
        tart_sync: tart_sync_bin.display().to_string(),
        poll,
        grace,
        tol,
        sample_every,
        warmup,
        checks,
        final_wrong,
        final_checked: final_names.len() as u64,
        change_sets,
        actions: Action::ALL
            .iter()
            .map(|a| (a.label(), churn.counts.get(a).copied().unwrap_or(0)))
            .collect(),
        flap_returns,
        table_changes,
        writes: writes_total.saturating_sub(writes_before),
        writes_before,
        polls,
        faults,
        samples,
        caddy_cpu,
        driver_cpu,
        exit,
    };
    let text = summary.markdown();
    let failures = summary.failures();
    let report_path = file(".md");
    write_file(&report_path, &text)?;
    let mut csv = String::from("at_secs,rss_kb,fds,cpu_secs\n");
    for s in &summary.samples {
        csv.push_str(&format!(
            "{:.1},{},{},{:.2}\n",
            s.at_secs,
            s.rss_kb,
            s.fds,
            s.cpu.as_secs_f64()
        ));
    }
    write_file(&file("-samples.csv"), &csv)?;
    if !failures.is_empty() {
        let _ = std::fs::copy(caddy.log_path(), file("-caddy.log"));
    }
    println!("{text}");
    eprintln!(
        "soak: {}; report: {}",
        if failures.is_empty() {
            "PASS".to_string()
        } else {
            format!("FAIL: {}", failures.join("; "))
        },
        report_path.display()
    );
    Ok(failures.is_empty())
}
