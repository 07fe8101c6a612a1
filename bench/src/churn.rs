//! Part 6, churn trace: 1% of the TARTs flapping per minute (offline past
//! the grace, back online a while later) for `--churn-minutes`, applied at
//! the same moments to one fleet per mode ([`ModeFleet`], the real daemon at
//! its default poll interval); Caddy's CPU time (from `/proc/<pid>/stat`),
//! reloads and config writes (from its log) over the trace. Both modes run
//! side by side: CPU time and reload counts belong to each process, so the
//! other's load does not change them (throughput is not measured here).

use std::time::{Duration, Instant};

use e2e::backend::start_fleet;
use tart_sync::config::RouteMode;

use crate::modes::{CaddyCost, Mode, ModeFleet};
use crate::report::{int, ms, table, Report};
use crate::{err, progress, Options, Res};

/// One event of the trace: at `at`, node `node` goes online or offline.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Event {
    /// Since the start of the trace.
    pub at: Duration,
    /// The node's index.
    pub node: usize,
    /// Online (`true`) or offline.
    pub online: bool,
}

/// The trace: over `length`, `per_minute` flaps a minute evenly spaced (at
/// least `min_flaps` in all, closer together when the trace is short), each
/// node offline for `hold` (or until the end), nodes picked spread over the
/// fleet of `n`. Sorted by time.
pub fn trace(
    n: usize,
    length: Duration,
    per_minute: usize,
    min_flaps: usize,
    hold: Duration,
) -> Vec<Event> {
    let per_minute = per_minute.max(1) as f64;
    let mut spacing = 60.0 / per_minute;
    let secs = length.as_secs_f64();
    if min_flaps > 0 && secs / spacing < min_flaps as f64 {
        spacing = secs / min_flaps as f64;
    }
    let mut events = Vec::new();
    let mut j = 0usize;
    loop {
        let at = j as f64 * spacing;
        if at >= secs || n == 0 {
            break;
        }
        // A stride coprime with most fleet sizes spreads the flapping nodes.
        let node = j.wrapping_mul(7919) % n;
        events.push(Event {
            at: Duration::from_secs_f64(at),
            node,
            online: false,
        });
        let back = at + hold.as_secs_f64();
        if back < secs {
            events.push(Event {
                at: Duration::from_secs_f64(back),
                node,
                online: true,
            });
        }
        j += 1;
    }
    events.sort_by_key(|e| e.at);
    events
}

/// What one mode's Caddy and tart-sync spent over the trace.
struct Spent {
    caddy: CaddyCost,
    tart_sync_cpu_ms: f64,
    tart_sync_writes: u64,
}

/// Runs part 6 and adds its section and goal.
pub async fn run(opts: &Options, report: &mut Report) -> Res<()> {
    let n = opts.churn_size;
    let length = Duration::from_secs_f64(opts.churn_minutes * 60.0);
    let interval = opts.churn_interval();
    let hold = if opts.smoke {
        length / 4
    } else {
        Duration::from_secs(30)
    };
    let per_minute = n / 100;
    let min_flaps = if opts.smoke { 3 } else { 0 };
    let events = trace(n, length, per_minute, min_flaps, hold);
    let flaps = events.iter().filter(|e| !e.online).count();
    let (port, _backends) = start_fleet(&["tart"]).await;
    progress!(
        "churn trace, {n} TARTs: {flaps} flaps over {:.1} min, both modes side by side (poll interval {interval:?})",
        length.as_secs_f64() / 60.0
    );
    let mut fleets = Vec::new();
    for mode in Mode::BOTH {
        fleets.push(ModeFleet::start(opts, mode, RouteMode::Path, n, port, interval).await?);
    }
    // A few quiet cycles first.
    tokio::time::sleep(interval * 2).await;
    let mut before = Vec::new();
    for f in &fleets {
        let c = f.daemon.counters().await?.unwrap_or_default();
        before.push((f.cost()?, f.daemon_cpu_ms()?, c.writes));
    }
    let start = Instant::now();
    for e in &events {
        tokio::time::sleep_until((start + e.at).into()).await;
        for f in &mut fleets {
            f.standin.set_online(e.node, e.online);
        }
    }
    tokio::time::sleep_until((start + length).into()).await;
    let window = start.elapsed();
    let mut spent = Vec::new();
    for (f, (cost0, cpu0, writes0)) in fleets.iter_mut().zip(&before) {
        f.daemon.check_running()?;
        let c = f.daemon.counters().await?.unwrap_or_default();
        spent.push(Spent {
            caddy: f.cost()?.since(cost0),
            tart_sync_cpu_ms: f.daemon_cpu_ms()? - cpu0,
            tart_sync_writes: c.writes.saturating_sub(*writes0),
        });
        progress!(
            "churn, {} mode: Caddy {} reloads, {} writes, {:.0} ms CPU",
            f.mode.as_str(),
            spent.last().map_or(0, |s| s.caddy.reloads),
            spent.last().map_or(0, |s| s.caddy.writes),
            spent.last().map_or(0.0, |s| s.caddy.cpu_ms)
        );
    }
    let [config, dns] =
        <[Spent; 2]>::try_from(spent).map_err(|_| err("churn: a mode is missing"))?;
    let minutes = window.as_secs_f64() / 60.0;
    let row =
        |label: &str, f: &dyn Fn(&Spent) -> String| vec![label.to_string(), f(&config), f(&dns)];
    let rows = vec![
        row("**Caddy reloads** (config loads in its log)", &|s| {
            int(s.caddy.reloads as f64)
        }),
        row("Caddy config writes (non-GET admin requests)", &|s| {
            int(s.caddy.writes as f64)
        }),
        row("writes counted by tart-sync (`/metrics`)", &|s| {
            int(s.tart_sync_writes as f64)
        }),
        row("**Caddy CPU time** (utime+stime)", &|s| ms(s.caddy.cpu_ms)),
        row("Caddy CPU per minute", &|s| {
            ms(s.caddy.cpu_ms / minutes.max(1e-9))
        }),
        row("tart-sync CPU time", &|s| ms(s.tart_sync_cpu_ms)),
    ];
    let mut s = String::from("## 6. Churn trace\n\n");
    s.push_str(&format!(
        "{} TARTs; {} flaps over {:.1} min ({} a minute{}): each picked TART goes offline in the headscale \
stand-in (last seen an hour ago, so past the grace at once) and comes back online {hold:?} later; the same trace \
applied at the same moments to one fleet per mode (Caddy + stand-in + the real tart-sync, poll interval \
{interval:?}), both running side by side. Reloads and writes from each Caddy's log, CPU from /proc/<pid>/stat, over \
the trace (after two quiet poll intervals).\n\n",
        int(n as f64),
        int(flaps as f64),
        minutes,
        per_minute.max(1),
        if min_flaps > 0 { "; smoke: closer together" } else { "" },
    ));
    s.push_str(&table(
        &["over the trace", "config mode", "dns mode"],
        &rows,
    ));
    report.sections.push(s);
    report.goal(
        "6. churn trace: 0 Caddy reloads in dns mode",
        format!(
            "dns {} reload(s), config {} (Caddy CPU: dns {}, config {})",
            dns.caddy.reloads,
            config.caddy.reloads,
            ms(dns.caddy.cpu_ms),
            ms(config.caddy.cpu_ms)
        ),
        Some(dns.caddy.reloads == 0 && flaps > 0),
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_percent_a_minute() {
        let ten_min = Duration::from_secs(600);
        let t = trace(10_000, ten_min, 100, 0, Duration::from_secs(30));
        let off: Vec<&Event> = t.iter().filter(|e| !e.online).collect();
        assert_eq!(off.len(), 1_000);
        assert_eq!(off[1].at, Duration::from_millis(600));
        // Every flap but those in the last 30 s comes back.
        assert_eq!(t.len() - off.len(), 950);
        assert!(t.windows(2).all(|w| w[0].at <= w[1].at));
        // Distinct nodes within a minute.
        let minute: std::collections::BTreeSet<usize> =
            off.iter().take(100).map(|e| e.node).collect();
        assert_eq!(minute.len(), 100);
    }

    #[test]
    fn a_short_trace_still_flaps() {
        let t = trace(
            10,
            Duration::from_secs(6),
            0,
            3,
            Duration::from_millis(1500),
        );
        assert_eq!(t.iter().filter(|e| !e.online).count(), 3);
        assert!(t.iter().all(|e| e.at < Duration::from_secs(6)));
    }
}
