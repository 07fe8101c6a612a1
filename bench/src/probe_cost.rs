//! The reachability probes' cost (issue #12), run with part 3: the real
//! daemon with N TARTs, once with probes off and once with the default
//! probe settings (interval 30 s, at most 50 probes a second, so a round over
//! 10,000 TARTs takes 200 s), each for the same window; the difference in
//! tart-sync's CPU time (utime + stime from `/proc`) is the probes' cost,
//! given per minute of wall time. Every TART dials the one backend on
//! 127.0.0.2, so each probe is a new TCP connection and one HTTP exchange,
//! as through the tailnet (minus WireGuard, which is the kernel's cost).

use std::time::{Duration, Instant};

use crate::report::{int, ms, table, Report};
use crate::setup::{http_client, Live};
use crate::{daemon, err, progress, Options, Res};

/// The probe settings measured: the defaults (`probe.interval` 30 s,
/// `probe.max_rate` 50/s).
const PROBE_ENV: [(&str, &str); 1] = [("TART_SYNC_PROBE_ENABLED", "true")];

/// How long each window is measured: 6 × `--secs` (30 s in a full run, 6 s
/// in a smoke run).
fn measured(opts: &Options) -> Duration {
    Duration::from_secs(opts.secs.saturating_mul(6))
}

/// One window of one daemon.
struct Window {
    cpu_ms: f64,
    wall_s: f64,
    probes: f64,
}

impl Window {
    fn cpu_ms_per_min(&self) -> f64 {
        self.cpu_ms * 60.0 / self.wall_s.max(1e-9)
    }
}

/// `tart_sync_tart_probe_duration_seconds_count` in `/metrics` (0 without probes).
async fn probes_done(http: &reqwest::Client, live: &Live) -> Res<f64> {
    let text = http
        .get(format!("http://{}/metrics", live.daemon.status))
        .send()
        .await?
        .text()
        .await?;
    Ok(text
        .lines()
        .find_map(|l| l.strip_prefix("tart_sync_tart_probe_duration_seconds_count "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0))
}

/// Starts the daemon for `n` TARTs with `extra` settings, lets it settle,
/// and measures one window.
async fn window(opts: &Options, n: usize, extra: &[(&str, String)], probing: bool) -> Res<Window> {
    let http = http_client()?;
    let mut live = Live::start(opts, n, Duration::from_secs(5), extra).await?;
    if probing {
        // Probes under way (the first round starts once headscale was polled).
        let limit = Instant::now() + Duration::from_secs(60);
        while probes_done(&http, &live).await? < 1.0 {
            if Instant::now() > limit {
                return Err(err(format!(
                    "{n} TARTs: no probe within 60 s; log:\n{}",
                    daemon::tail(&live.daemon.log_text(), 30)
                )));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    // Settle: the install and first full check are part 3's business.
    tokio::time::sleep(Duration::from_secs(opts.pick::<u64>(10, 1))).await;
    let pid = live.daemon.pid;
    let (cpu0, p0, t0) = (
        daemon::cpu_ticks(pid)?,
        probes_done(&http, &live).await?,
        Instant::now(),
    );
    tokio::time::sleep(measured(opts)).await;
    let (cpu1, p1) = (daemon::cpu_ticks(pid)?, probes_done(&http, &live).await?);
    let wall_s = t0.elapsed().as_secs_f64();
    live.daemon.check_running()?;
    live.daemon.stop().await;
    Ok(Window {
        cpu_ms: cpu1.saturating_sub(cpu0) as f64 * 1000.0 / daemon::clock_ticks() as f64,
        wall_s,
        probes: p1 - p0,
    })
}

/// Measures every daemon size and adds the section and the goal.
pub async fn run(opts: &Options, report: &mut Report) -> Res<()> {
    let mut rows = Vec::new();
    let mut at_10k = None;
    for &n in &opts.daemon_sizes {
        progress!("probe cost, {n} TARTs: the daemon with probes off, then on (default settings)");
        let off = window(
            opts,
            n,
            &[("TART_SYNC_PROBE_ENABLED", "false".into())],
            false,
        )
        .await?;
        let on_env: Vec<(&str, String)> =
            PROBE_ENV.iter().map(|(k, v)| (*k, v.to_string())).collect();
        let on = window(opts, n, &on_env, true).await?;
        let cost = (on.cpu_ms_per_min() - off.cpu_ms_per_min()).max(0.0);
        let probes_per_min = on.probes * 60.0 / on.wall_s.max(1e-9);
        let per_probe = (probes_per_min > 0.0).then(|| cost / probes_per_min);
        if n == 10_000 {
            at_10k = Some(cost);
        }
        rows.push(vec![
            int(n as f64),
            format!("{probes_per_min:.0}"),
            ms(off.cpu_ms_per_min()),
            ms(on.cpu_ms_per_min()),
            format!("**{}**", ms(cost)),
            format!("{:.2} %", cost / 600.0),
            per_probe.map_or("–".into(), |v| format!("{:.3} ms", v)),
        ]);
    }
    let mut s = String::from("### Probe cost (issue #12)\n\n");
    s.push_str(&format!(
        "The real daemon (poll interval 5 s), once with probes off and once with the default probe settings \
(`probe.interval` 30 s, `probe.max_rate` 50 probes/s: a round over 10,000 TARTs stretches to 200 s), each measured \
over {} s after {} s of settling; CPU is utime + stime from /proc. Cost = on − off, per minute of wall time; \
% is of one core.\n\n",
        measured(opts).as_secs(),
        opts.pick::<u64>(10, 1)
    ));
    s.push_str(&table(
        &[
            "TARTs",
            "probes/min",
            "CPU/min, probes off",
            "CPU/min, probes on",
            "probe cost per minute",
            "of one core",
            "CPU per probe",
        ],
        &rows,
    ));
    report.sections.push(s);
    report.goal(
        "3. probes at 10,000 TARTs ≤ 3 s of CPU per minute (5 % of one core)",
        at_10k.map_or_else(
            || "needs daemon size 10000".into(),
            |c| format!("{} per minute ({:.2} % of one core)", ms(c), c / 600.0),
        ),
        at_10k.map(|c| c <= 3_000.0),
    );
    Ok(())
}
