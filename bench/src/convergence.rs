//! Part 4, convergence: a node goes online in headscale (the stand-in) →
//! its URL answers 200 through Caddy, with the real daemon polling.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use crate::report::{int, ms, percentile, size_table, Figure, Report};
use crate::setup::{http_client, wait_status, Live};
use crate::{progress, Options, Res};

/// Figures of one convergence run.
struct Conv {
    n: usize,
    /// online → 200 (ms), sorted.
    online: Vec<f64>,
    /// offline → 503 (ms), sorted.
    offline: Vec<f64>,
    timeouts: usize,
}

/// The rows of the table.
const ROWS: [&str; 6] = [
    "trials (online→200 measured)",
    "**online → 200, p50**",
    "**online → 200, p99**",
    "online → 200, min / max",
    "offline → 503, p50 / p99",
    "trials that timed out (10 intervals)",
];

/// The figures of one run, in the order of [`ROWS`].
fn figures(c: &Conv) -> Vec<Figure> {
    let two = |v: &[f64], a, b| format!("{} / {}", ms(p(v, a)), ms(p(v, b)));
    let (p50, p99) = (p(&c.online, 50.0), p(&c.online, 99.0));
    vec![
        (c.online.len().to_string(), None),
        (ms(p50), Some(p50)),
        (ms(p99), Some(p99)),
        (two(&c.online, 0.0, 100.0), None),
        (two(&c.offline, 50.0, 99.0), None),
        (c.timeouts.to_string(), None),
    ]
}

/// Nearest-rank percentile, NaN when nothing was measured.
fn p(sorted: &[f64], q: f64) -> f64 {
    percentile(sorted, q).unwrap_or(f64::NAN)
}

/// Runs part 4 for every daemon size and adds its section and goal.
pub async fn run(opts: &Options, report: &mut Report) -> Res<()> {
    let mut runs = Vec::new();
    for &n in &opts.daemon_sizes {
        runs.push(conv_run(opts, n).await?);
    }
    let figures: Vec<(usize, Vec<Figure>)> = runs.iter().map(|c| (c.n, figures(c))).collect();
    let mut s = String::from("## 4. Convergence\n\n");
    s.push_str(&format!(
        "The real `tart-sync run` binary, poll interval {:?}, offline grace 0 s. A trial: after a random pause \
(uniform in one interval, so trials sample every phase of the poll cycle; `fastrand` seeded with {}) the stand-in \
reports a node offline; once its URL answers 503, another random pause, then the stand-in reports it online (t₀ = \
when the stand-in's answer has changed) and the URL is probed through Caddy every 5 ms until it answers 200. {} lanes \
run trials on different nodes at once. p99 is nearest-rank (with 50 trials: the maximum).\n\n",
        opts.conv_interval(),
        opts.seed,
        lanes(opts, usize::MAX)
    ));
    s.push_str(&size_table(&ROWS, &figures, true));
    report.sections.push(s);
    let budget = opts.conv_interval().as_secs_f64() * 1000.0 + 250.0;
    let worst = runs.iter().max_by_key(|c| c.n);
    report.goal(
        &format!(
            "4. convergence p99 ≤ poll interval + 250 ms (= {})",
            ms(budget)
        ),
        worst.map_or("not run".into(), |c| {
            format!(
                "{} at {} nodes ({} timeouts)",
                ms(p(&c.online, 99.0)),
                int(c.n as f64),
                c.timeouts
            )
        }),
        worst.map(|c| c.timeouts == 0 && p(&c.online, 99.0) <= budget),
    );
    Ok(())
}

/// Lanes of trials run at once on `n` nodes.
fn lanes(opts: &Options, n: usize) -> usize {
    if opts.smoke { 2 } else { 4 }.min(n)
}

/// The trials on `n` nodes.
async fn conv_run(opts: &Options, n: usize) -> Res<Conv> {
    let interval = opts.conv_interval();
    progress!(
        "convergence, {n} nodes: starting (poll interval {interval:?}, {} trials)",
        opts.conv_trials
    );
    let grace = [("TART_SYNC_ROUTES_OFFLINE_GRACE", "0s".to_string())];
    let live = Arc::new(Live::start(opts, n, interval, &grace).await?);
    let lanes = lanes(opts, n);
    let counter = Arc::new(AtomicUsize::new(0));
    let limit = interval * 10;
    let mut tasks = tokio::task::JoinSet::new();
    for lane in 0..lanes {
        let live = live.clone();
        let counter = counter.clone();
        let trials = opts.conv_trials;
        let idx = lane * n / lanes + n / (2 * lanes);
        // One reproducible stream of pauses per lane.
        let mut rng = fastrand::Rng::with_seed(opts.seed.wrapping_add(lane as u64));
        tasks.spawn(async move {
            let http = http_client()?;
            let path = format!("/{}/", live.names[idx]);
            let (mut on, mut off, mut timeouts) = (Vec::new(), Vec::new(), 0usize);
            while counter.fetch_add(1, Ordering::SeqCst) < trials {
                tokio::time::sleep(interval.mul_f64(rng.f64())).await;
                live.standin.set_online(idx, false);
                match wait_status(&http, live.addr, &path, 503, Instant::now(), limit).await {
                    Some(v) => off.push(v),
                    None => timeouts += 1,
                }
                tokio::time::sleep(interval.mul_f64(rng.f64())).await;
                live.standin.set_online(idx, true);
                match wait_status(&http, live.addr, &path, 200, Instant::now(), limit).await {
                    Some(v) => on.push(v),
                    None => timeouts += 1,
                }
            }
            Res::Ok((on, off, timeouts))
        });
    }
    let mut conv = Conv {
        n,
        online: Vec::new(),
        offline: Vec::new(),
        timeouts: 0,
    };
    while let Some(r) = tasks.join_next().await {
        let (on, off, t) = r??;
        conv.online.extend(on);
        conv.offline.extend(off);
        conv.timeouts += t;
    }
    conv.online.sort_by(f64::total_cmp);
    conv.offline.sort_by(f64::total_cmp);
    progress!(
        "convergence, {n} nodes: online→200 p50 {}, p99 {}; {} timeouts",
        ms(p(&conv.online, 50.0)),
        ms(p(&conv.online, 99.0)),
        conv.timeouts
    );
    if let Ok(mut live) = Arc::try_unwrap(live) {
        live.daemon.stop().await;
    }
    Ok(conv)
}
