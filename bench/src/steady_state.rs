//! Part 3, steady state: the real daemon's CPU per idle cycle, its peak RSS
//! and its Caddy writes while idle; then the steps of a cycle, run in this
//! process with tart-sync's own functions and timed by their spans; then the
//! memory of single steps ([`crate::mem_probe`]).

use std::time::{Duration, Instant};

use e2e::headscale::API_KEY;
use tart_sync::context::Context;
use tart_sync::controller::{self, Published};
use tart_sync::headscale::{parse_node_list, HeadscaleClient};
use tart_sync::reconcile::{Instance, Outcome};
use tracing::{debug_span, Instrument as _};

use crate::report::{int, ms, size_table, table, Figure, Report};
use crate::setup::{http_client, settings_from, Live};
use crate::spans::SpanTimes;
use crate::{daemon, err, mem_probe, progress, Options, Res};

/// Repetitions of each in-process step.
const STEP_TRIALS: usize = 5;

/// The rows of the idle-window table.
const IDLE_ROWS: [&str; 12] = [
    "idle cycles measured (`tart_sync_cycles_total`)",
    "headscale polls in the window (tart-sync / stand-in)",
    "window (wall)",
    "headscale answer size",
    "**tart-sync CPU per idle cycle** (utime+stime ÷ cycles)",
    "reconcile wall time per cycle (`/metrics`)",
    "headscale poll wall time (`/metrics`)",
    "**peak RSS in the idle window** (VmHWM after reset)",
    "peak RSS since start (incl. first install)",
    "RSS at the end",
    "**Caddy writes in the window** (Caddy's log)",
    "writes counted by tart-sync (`/metrics`)",
];

/// The rows of the steps table (wall times).
const STEP_ROWS: [&str; 9] = [
    "HTTP only: fetch the node list into one buffer (reqwest; for reference)",
    "poll headscale, answer unchanged (`poll`: fetch + compare with the kept answer)",
    "poll headscale, answer changed, same nodes (`poll`: fetch + parse + `desired`)",
    "parse the node list (`parse_node_list`, only when the answer changed)",
    "desired state + targets (`desired` + `targets`, only when the answer changed)",
    "GET the revision stamp (`read_stamp`)",
    "full check (every 10 min): GET the route, read it, compare (`read_route` + `parse_route` + \
`build_route` + `compare`)",
    "→ idle cycle, answer unchanged (`cycle`: `poll` + `reconcile`)",
    "→ cycle with a changed answer, same targets (`cycle`)",
];

/// What one idle window measured.
struct Idle {
    n: usize,
    /// In the order of [`IDLE_ROWS`].
    figures: Vec<Figure>,
    /// In the order of [`STEP_ROWS`].
    steps: Vec<Figure>,
    cpu_ms_per_cycle: f64,
    peak_idle_kb: Option<u64>,
    peak_life_kb: u64,
    caddy_writes: usize,
}

fn mb(kb: u64) -> String {
    format!("{:.1} MB", kb as f64 / 1024.0)
}

/// Runs part 3 for every daemon size and adds its section and goals.
pub async fn run(opts: &Options, spans: &SpanTimes, report: &mut Report) -> Res<()> {
    let mut runs = Vec::new();
    for &n in &opts.daemon_sizes {
        runs.push(idle_run(opts, spans, n).await?);
    }
    let table_of = |f: fn(&Idle) -> &Vec<Figure>| -> Vec<(usize, Vec<Figure>)> {
        runs.iter().map(|i| (i.n, f(i).clone())).collect()
    };
    let mut s = String::from("## 3. Steady state\n\n");
    s.push_str(&format!(
        "The real `tart-sync run` binary (release build) as a child process, configured by environment, against the \
headscale stand-in listing N online nodes and Caddy with the route installed. Poll interval {:?}; after 5 warm-up \
cycles, {} idle cycles are measured: CPU from /proc/<pid>/stat, peak RSS from VmHWM in /proc/<pid>/status (reset \
with `echo 5 > /proc/<pid>/clear_refs` at the start of the window), cycles from `/metrics` (read once a second in the \
window). Each cycle = one headscale poll + one reconcile that finds Caddy up to date.\n\n",
        opts.idle_interval(),
        opts.idle_cycles()
    ));
    s.push_str(&size_table(&IDLE_ROWS, &table_of(|i| &i.figures), true));
    s.push_str(&format!(
        "\nThe steps of one cycle, run in the benchmark process on the same stand-in and Caddy (daemon stopped) \
with tart-sync's own functions (`controller::poll`, `Instance::reconcile_shared`, …) and timed by the spans they \
open (`poll`, `cycle`, `http_only` and `parse_node_list` are the benchmark's spans around a call); medians of \
{STEP_TRIALS}, wall time:\n\n"
    ));
    s.push_str(&size_table(&STEP_ROWS, &table_of(|i| &i.steps), false));
    if let Some(big) = runs.iter().map(|i| i.n).max().filter(|n| *n > 10) {
        s.push_str(&format!(
            "\nPeak memory of one step at {} nodes (each in a fresh process: VmHWM − RSS just before the step; its \
input prepared first):\n\n",
            int(big as f64)
        ));
        let rows: Vec<Vec<String>> = mem_probe::run_all(big)?
            .into_iter()
            .map(|(l, kb)| vec![l.to_string(), mb(kb)])
            .collect();
        s.push_str(&table(&["step", "peak RSS growth"], &rows));
    }
    report.sections.push(s);

    let big = runs.iter().find(|i| i.n == 10_000);
    let needs = || "needs daemon size 10000".to_string();
    report.goal(
        "3. idle cycle at 10,000 nodes ≤ 20 ms of tart-sync CPU",
        big.map_or_else(needs, |i| ms(i.cpu_ms_per_cycle)),
        big.map(|i| i.cpu_ms_per_cycle <= 20.0),
    );
    report.goal(
        "3. peak RSS ≤ 30 MB (idle window, 10,000 nodes)",
        big.map_or_else(needs, |i| {
            let idle = i.peak_idle_kb.map_or("–".into(), mb);
            format!("{idle} (since start: {})", mb(i.peak_life_kb))
        }),
        big.map(|i| i.peak_idle_kb.unwrap_or(i.peak_life_kb) as f64 <= 30.0 * 1024.0),
    );
    let writes: usize = runs.iter().map(|i| i.caddy_writes).sum();
    report.goal(
        "3. 0 Caddy writes in the idle window",
        format!("{writes} (all sizes)"),
        (!runs.is_empty()).then_some(writes == 0),
    );
    Ok(())
}

/// One idle window of the real daemon with `n` nodes, then the in-process steps.
async fn idle_run(opts: &Options, spans: &SpanTimes, n: usize) -> Res<Idle> {
    let interval = opts.idle_interval();
    progress!("steady state, {n} nodes: starting Caddy, the headscale stand-in and tart-sync (poll interval {interval:?})");
    let mut live = Live::start(opts, n, interval, &[]).await?;
    let pid = live.daemon.pid;
    let c = live
        .daemon
        .wait_counters(Duration::from_secs(60), |_| true)
        .await?;
    let warm = c.cycles + 5;
    let c0 = live
        .daemon
        .wait_counters(Duration::from_secs(60), |c| c.cycles >= warm)
        .await?;
    let peak_life_kb = daemon::status_kb(pid, "VmHWM")?;
    let reset = daemon::reset_peak_rss(pid);
    let cpu0 = daemon::cpu_ticks(pid)?;
    let w0 = live.caddy.admin_writes();
    let s0 = live.standin.polls();
    let t0 = Instant::now();
    let target = c0.cycles + opts.idle_cycles();
    let limit = interval * (opts.idle_cycles() as u32) * 4 + Duration::from_secs(60);
    let c1 = live
        .daemon
        .wait_counters_every(limit, Duration::from_secs(1), |c| c.cycles >= target)
        .await?;
    let cpu1 = daemon::cpu_ticks(pid)?;
    let window_s = t0.elapsed().as_secs_f64();
    let peak_idle_kb = if reset {
        Some(daemon::status_kb(pid, "VmHWM")?)
    } else {
        None
    };
    let rss_kb = daemon::status_kb(pid, "VmRSS")?;
    let standin_polls = live.standin.polls() - s0;
    let caddy_writes = live.caddy.admin_writes() - w0;
    live.daemon.stop().await;
    let (cycles, polls) = (c1.cycles - c0.cycles, c1.polls - c0.polls);
    let per_cycle = |v: f64| v / cycles.max(1) as f64;
    let cpu_ms_per_cycle = per_cycle((cpu1 - cpu0) as f64 * 1000.0 / daemon::clock_ticks() as f64);
    let cycle_ms = per_cycle((c1.cycle_seconds - c0.cycle_seconds) * 1000.0);
    let poll_ms = (c1.poll_seconds - c0.poll_seconds) * 1000.0 / polls.max(1) as f64;
    let body_bytes = live.standin.body_len() as f64;
    let figures = vec![
        (cycles.to_string(), None),
        (format!("{polls} / {standin_polls}"), None),
        (format!("{window_s:.1} s"), None),
        (format!("{:.2} MB", body_bytes / 1e6), Some(body_bytes)),
        (ms(cpu_ms_per_cycle), Some(cpu_ms_per_cycle)),
        (ms(cycle_ms), Some(cycle_ms)),
        (ms(poll_ms), Some(poll_ms)),
        (
            peak_idle_kb.map_or("– (clear_refs refused)".into(), mb),
            Some(peak_idle_kb.unwrap_or(0) as f64),
        ),
        (mb(peak_life_kb), Some(peak_life_kb as f64)),
        (mb(rss_kb), Some(rss_kb as f64)),
        (caddy_writes.to_string(), None),
        ((c1.writes - c0.writes).to_string(), None),
    ];
    let steps = cycle_steps(&live, spans).await?;
    let idle = Idle {
        n,
        figures,
        steps: steps.into_iter().map(|v| (ms(v), None)).collect(),
        cpu_ms_per_cycle,
        peak_idle_kb,
        peak_life_kb,
        caddy_writes,
    };
    progress!(
        "steady state, {n} nodes: {cycles} cycles in {window_s:.1} s, {} CPU per cycle, peak RSS {} kB, {caddy_writes} writes",
        ms(idle.cpu_ms_per_cycle),
        idle.peak_idle_kb.unwrap_or(peak_life_kb)
    );
    Ok(idle)
}

/// One cycle as the daemon runs it while its desired state stays the same:
/// poll headscale, reconcile with the published table (in the span `cycle`).
async fn cycle(ctx: &Context, hs: &HeadscaleClient, inst: &mut Instance, p: &Published) -> Res<()> {
    let work = async {
        let desired = controller::poll(ctx, hs)
            .instrument(debug_span!("poll"))
            .await?;
        if *desired != *p.desired {
            return Err(err(
                "the desired state changed during the steady-state steps",
            ));
        }
        match inst
            .reconcile_shared(&p.targets, &ctx.settings.routes, false)
            .await?
        {
            Outcome::Unchanged => Ok(()),
            other => Err(err(format!("an idle reconcile did {other:?}"))),
        }
    };
    work.instrument(debug_span!("cycle")).await
}

/// The steps of a cycle, in this process on the live stand-in and Caddy
/// (the daemon stopped): idle cycles, cycles with a changed answer (same
/// nodes), full checks. The figures of [`STEP_ROWS`], in order.
async fn cycle_steps(live: &Live, spans: &SpanTimes) -> Res<Vec<f64>> {
    let ctx = Context::new(settings_from(&live.env)?);
    let hs = HeadscaleClient::from_settings(&ctx.settings.headscale)?;
    let mut inst = Instance::new(&live.caddy.admin, &ctx.settings.caddy)?;
    let http = http_client()?;
    let url = format!("{}/api/v1/node", live.standin.url());
    // As the daemon's first cycle: the answer parsed and kept, the whole route compared.
    let p = Published::new(controller::poll(&ctx, &hs).await?);
    let first = inst
        .reconcile_shared(&p.targets, &ctx.settings.routes, false)
        .await?;
    if first != Outcome::Unchanged {
        return Err(err(format!("the first in-process reconcile did {first:?}")));
    }
    spans.take();
    for _ in 0..STEP_TRIALS {
        let fetch = async {
            Res::Ok(
                http.get(&url)
                    .bearer_auth(API_KEY)
                    .send()
                    .await?
                    .bytes()
                    .await?,
            )
        };
        let body = fetch.instrument(debug_span!("http_only")).await?;
        debug_span!("parse_node_list").in_scope(|| parse_node_list(&body))?;
        cycle(&ctx, &hs, &mut inst, &p).await?;
    }
    let idle = spans.take();
    for _ in 0..STEP_TRIALS {
        live.standin.touch();
        cycle(&ctx, &hs, &mut inst, &p).await?;
        std::hint::black_box(Published::new(p.desired.clone()));
    }
    let changed = spans.take();
    inst.set_full_check_every(Duration::ZERO);
    for _ in 0..STEP_TRIALS {
        match inst
            .reconcile_shared(&p.targets, &ctx.settings.routes, false)
            .await?
        {
            Outcome::Unchanged => {}
            other => return Err(err(format!("a full check did {other:?}"))),
        }
    }
    let full = spans.take();
    let full_check = ["read_route", "parse_route", "build_route", "compare"];
    let idle_steps = [
        "http_only",
        "parse_node_list",
        "cycle",
        "poll",
        "read_stamp",
    ];
    idle.require(&idle_steps, STEP_TRIALS)?;
    changed.require(&["cycle", "poll", "desired", "targets"], STEP_TRIALS)?;
    full.require(&full_check, STEP_TRIALS)?;
    if !idle.elapsed_ms("desired").is_empty() {
        return Err(err("the stand-in's answer changed between two idle polls"));
    }
    Ok(vec![
        idle.median_ms("http_only"),
        idle.median_ms("poll"),
        changed.median_ms("poll"),
        idle.median_ms("parse_node_list"),
        changed.median_ms("desired") + changed.median_ms("targets"),
        idle.median_ms("read_stamp"),
        full_check.iter().map(|s| full.median_ms(s)).sum(),
        idle.median_ms("cycle"),
        changed.median_ms("cycle"),
    ])
}
