//! Part 5, dns mode beside config mode (issue #11): at each size, one fleet
//! per mode ([`ModeFleet`]) with the real daemon; the last TART's throughput
//! (in dns mode the lookup-cache-hit path) beside the limit in the same
//! Caddy ([`crate::limit`]), a round-robin over up to 1,000 TARTs
//! ([`round_robin`]), and what one change costs ([`mode_changes`]). Then,
//! the path-mode fleets gone, one fleet per mode with `routes.mode = "host"`
//! for the last TART's throughput at `<name>.<domain>` (host mode's owned
//! route is another route).

use std::collections::BTreeMap;
use std::time::Duration;

use e2e::backend::start_fleet;
use tart_sync::config::RouteMode;

use crate::load::{Generator, LoadResult};
use crate::mode_changes::{self, Change, KINDS};
use crate::modes::{self, Mode, ModeFleet};
use crate::report::{int, max, median, ms, ratio, table, Report};
use crate::{err, limit, progress, round_robin, Options, Res};

/// Per mode (config, dns): the route's, the limit's and the dynamic limit's
/// runs to the last TART.
type Hits = [[Vec<LoadResult>; 3]; 2];

/// Chooses one routes mode's [`Hits`] of a [`SizeRun`].
type Pick = fn(&SizeRun) -> &Hits;

/// Everything part 5 measured at one size.
struct SizeRun {
    n: usize,
    last: String,
    /// Per mode: the route's, the limit's and the dynamic limit's runs
    /// (last TART; no dynamic limit in config mode).
    hits: Hits,
    /// The same in host mode (`routes.mode = "host"`).
    host_hits: Hits,
    /// Per mode: the round-robin runs, and how many names it cycled through.
    rr: [Vec<LoadResult>; 2],
    rr_names: usize,
    /// Per mode: per kind of change, the trials.
    changes: [Vec<Vec<Change>>; 2],
}

fn med(v: &[LoadResult], f: fn(&LoadResult) -> f64) -> f64 {
    median(&v.iter().map(f).collect::<Vec<_>>())
}

fn rps(v: &[LoadResult]) -> f64 {
    med(v, |r| r.rps)
}

fn lat(v: &[LoadResult]) -> String {
    format!(
        "{} / {}",
        ms(med(v, |r| r.p50_ms)),
        ms(med(v, |r| r.p99_ms))
    )
}

fn failures(v: &[LoadResult]) -> u64 {
    v.iter().map(|r| r.non_2xx + r.socket_errors).sum()
}

fn requests(v: &[LoadResult]) -> u64 {
    v.iter().map(|r| r.requests).sum()
}

/// One result per mode.
fn two<T>(v: Vec<T>) -> Res<[T; 2]> {
    v.try_into()
        .map_err(|_| err("part 5: a mode's results are missing"))
}

/// Poll interval of part 5's daemons.
pub fn interval(opts: &Options) -> Duration {
    Duration::from_millis(if opts.smoke { 250 } else { 1000 })
}

/// Runs part 5 at every size of `--sizes` and adds its section and goals.
pub async fn run(opts: &Options, generator: &Generator, report: &mut Report) -> Res<()> {
    let (port, _backends) = start_fleet(&["tart", "tart-alt"]).await;
    let interval = interval(opts);
    let trials = if opts.smoke { 1 } else { 3 };
    let mut runs = Vec::new();
    for &n in &opts.sizes {
        progress!("dns vs config, {n} TARTs: starting one Caddy + stand-in + tart-sync per mode");
        let config =
            ModeFleet::start(opts, Mode::Config, RouteMode::Path, n, port, interval).await?;
        let dns = ModeFleet::start(opts, Mode::Dns, RouteMode::Path, n, port, interval).await?;
        let fleets = [&config, &dns];
        let hits = hit_path(opts, generator, &fleets).await?;
        let rr = round_robin::measure(opts, generator, &fleets).await?;
        let mut changes = Vec::new();
        for f in fleets {
            changes.push(mode_changes::measure(f, trials, interval).await?);
        }
        let (last, rr_names) = (config.last.clone(), round_robin::paths(&config).len());
        // Only one pair of fleets at a time: idle daemons cost CPU too.
        drop((config, dns));
        progress!("dns vs config, {n} TARTs, host mode: starting one Caddy + stand-in + tart-sync per mode");
        let config =
            ModeFleet::start(opts, Mode::Config, RouteMode::Host, n, port, interval).await?;
        let dns = ModeFleet::start(opts, Mode::Dns, RouteMode::Host, n, port, interval).await?;
        let host_hits = hit_path(opts, generator, &[&config, &dns]).await?;
        drop((config, dns));
        runs.push(SizeRun {
            n,
            last,
            rr_names,
            hits: two(hits)?,
            host_hits: two(host_hits)?,
            rr: two(rr)?,
            changes: two(changes)?,
        });
    }
    report.sections.push(section(opts, &runs, interval, trials));
    goals(&runs, report);
    Ok(())
}

/// The last TART through each mode's route and each mode's limits, `reps`
/// times interleaved (config, config's limit, dns, dns's limit, dns's
/// dynamic limit, …).
async fn hit_path(
    opts: &Options,
    generator: &Generator,
    fleets: &[&ModeFleet; 2],
) -> Res<Vec<[Vec<LoadResult>; 3]>> {
    let mut out: Vec<[Vec<LoadResult>; 3]> = vec![Default::default(); 2];
    for _ in 0..opts.reps {
        for (i, f) in fleets.iter().enumerate() {
            let (host, path) = f.last_request();
            let mut targets = vec![(0, "route", f.addr), (1, "limit", f.limit)];
            targets.extend(f.dynamic_limit.map(|a| (2, "dynamic limit", a)));
            for (k, through, addr) in targets {
                let r = generator.run(addr, &host, &path, opts.secs).await?;
                progress!(
                    "  {} TARTs, {} mode ({} routes), last TART through the {through}: {:.0} req/s, p50 {}, p99 {}",
                    f.n,
                    f.mode.as_str(),
                    f.routes.as_str(),
                    r.rps,
                    ms(r.p50_ms),
                    ms(r.p99_ms)
                );
                if r.requests == 0 || r.non_2xx * 100 > r.requests {
                    return Err(err(format!(
                        "{} mode, {} TARTs, {host}{path} through the {through}: {} of {} responses were not 2xx/3xx",
                        f.mode.as_str(),
                        f.n,
                        r.non_2xx,
                        r.requests
                    )));
                }
                out[i][k].push(r);
            }
        }
    }
    Ok(out)
}

/// The section of part 5: three tables.
fn section(opts: &Options, runs: &[SizeRun], interval: Duration, trials: usize) -> String {
    let mut s = String::from("## 5. dns mode beside config mode\n\n");
    s.push_str(&format!(
        "Set-up: {}. Poll interval {interval:?}. The {}. The {}.\n\n",
        modes::DESCRIPTION,
        limit::DESCRIPTION,
        limit::DYNAMIC_DESCRIPTION
    ));
    s.push_str(&format!(
        "### 5a. Last TART (in dns mode the lookup-cache-hit path), beside the limit\n\nMedians of {} interleaved \
run(s) of {} s each (config route, config's limit, dns route, dns's limit, dns's dynamic limit, …); each limit is \
measured in the same Caddy as the route it is compared with. Path mode (`routes.mode = \"path\"`, the default):\n\n",
        opts.reps, opts.secs
    ));
    s.push_str(&hit_table(runs, |r| &r.hits, |r| format!("`/{}/`", r.last)));
    s.push_str(
        "\nThe same in host mode (`routes.mode = \"host\"`: the TART at `<name>.tart.test/`, a route of its own in \
each mode), measured after the path-mode fleets were stopped, against the limits in host mode's Caddies:\n\n",
    );
    s.push_str(&hit_table(
        runs,
        |r| &r.host_hits,
        |r| format!("`{}.tart.test/`", r.last),
    ));
    s.push_str(&format!(
        "\n### 5b. Round-robin: each request to the next of up to {} TARTs\n\nThe load generator walks the list \
(`wrk -s` with a Lua `request()`; each thread from its own place), so with more than 100 names most requests in dns \
mode miss Caddy's dynamic-upstream cache and need a lookup. Medians of {} run(s) of {} s; failures = non-2xx/3xx \
answers + socket errors, summed over the runs.\n\n",
        int(round_robin::NAMES as f64),
        opts.reps,
        opts.secs
    ));
    let rows: Vec<Vec<String>> = runs
        .iter()
        .map(|r| {
            let [c, d] = &r.rr;
            vec![
                int(r.n as f64),
                int(r.rr_names as f64),
                int(rps(c)),
                int(rps(d)),
                ratio(rps(d), rps(c)),
                lat(c),
                lat(d),
                format!("{} of {}", int(failures(c) as f64), int(requests(c) as f64)),
                format!("{} of {}", int(failures(d) as f64), int(requests(d) as f64)),
            ]
        })
        .collect();
    s.push_str(&table(
        &[
            "TARTs",
            "names cycled",
            "config req/s",
            "dns req/s",
            "dns ÷ config",
            "config p50 / p99",
            "dns p50 / p99",
            "config failures",
            "dns failures",
        ],
        &rows,
    ));
    s.push_str(&format!(
        "\n### 5c. Change cost\n\nOne TART (the middle one) changed in headscale: offline (last seen an hour ago, so \
past the grace at once) and back, moved to another backend address and back; a node added and deleted. {trials} \
trial(s) of each; \"visible\" = from the change in the stand-in to Caddy answering it (503 offline page, 200 from the \
other backend, 200, 404), probed every 5 ms, so it includes up to one poll interval ({interval:?}) and in dns mode \
`dns.refresh`; writes and reloads counted in Caddy's log from the change until one poll after it was visible.\n\n"
    ));
    let mut rows = Vec::new();
    for r in runs {
        for (kind, label) in KINDS.iter().enumerate() {
            let mut row = vec![int(r.n as f64), label.to_string()];
            for m in &r.changes {
                let v = m.get(kind).map(Vec::as_slice).unwrap_or(&[]);
                row.push(visible(v));
                row.push(format!(
                    "{} / {}",
                    v.iter().map(|c| c.cost.writes).sum::<usize>(),
                    v.iter().map(|c| c.cost.reloads).sum::<usize>()
                ));
            }
            rows.push(row);
        }
    }
    s.push_str(&table(
        &[
            "TARTs",
            "change",
            "config: visible after (median / max)",
            "config: writes / reloads (all trials)",
            "dns: visible after (median / max)",
            "dns: writes / reloads (all trials)",
        ],
        &rows,
    ));
    s
}

/// Table 5a for one routes mode: `pick` chooses its runs, `at` names the
/// request.
fn hit_table(runs: &[SizeRun], pick: fn(&SizeRun) -> &Hits, at: fn(&SizeRun) -> String) -> String {
    let rows: Vec<Vec<String>> = runs
        .iter()
        .map(|r| {
            let [[cr, cl, _], [dr, dl, dd]] = pick(r);
            vec![
                int(r.n as f64),
                at(r),
                int(rps(cr)),
                int(rps(cl)),
                ratio(rps(cr), rps(cl)),
                int(rps(dr)),
                int(rps(dl)),
                ratio(rps(dr), rps(dl)),
                int(rps(dd)),
                ratio(rps(dd), rps(dl)),
                ratio(rps(dr), rps(cr)),
                lat(cr),
                lat(dr),
            ]
        })
        .collect();
    table(
        &[
            "TARTs",
            "request",
            "config req/s",
            "limit (config's Caddy)",
            "config ÷ limit",
            "dns req/s",
            "limit (dns's Caddy)",
            "dns ÷ limit",
            "dynamic limit (dns's Caddy)",
            "dynamic limit ÷ limit",
            "dns ÷ config",
            "config p50 / p99",
            "dns p50 / p99",
        ],
        &rows,
    )
}

/// The lowest and highest ratio of a route's run to the limit's run next
/// to it (they alternate): how far single runs spread around the medians.
fn spread(route: &[LoadResult], limit: &[LoadResult]) -> String {
    let ratios: Vec<f64> = route
        .iter()
        .zip(limit)
        .filter(|(_, l)| l.rps > 0.0)
        .map(|(r, l)| r.rps / l.rps)
        .collect();
    let lowest = ratios.iter().copied().fold(f64::NAN, f64::min);
    format!("{lowest:.2}–{:.2}", max(&ratios))
}

/// `median / max` of the visible times, or how many never became visible.
fn visible(v: &[Change]) -> String {
    let seen: Vec<f64> = v.iter().filter_map(|c| c.visible_ms).collect();
    let missed = v.len() - seen.len();
    let mut out = if seen.is_empty() {
        "–".to_string()
    } else {
        format!("{} / {}", ms(median(&seen)), ms(max(&seen)))
    };
    if missed > 0 {
        out.push_str(&format!(" (**{missed} never**)"));
    }
    out
}

/// Part 5's goals.
fn goals(runs: &[SizeRun], report: &mut Report) {
    // Hit path: dns ≥ 0.9 × config at every size.
    let ratios: BTreeMap<usize, f64> = runs
        .iter()
        .map(|r| (r.n, rps(&r.hits[1][0]) / rps(&r.hits[0][0])))
        .collect();
    let text = ratios
        .iter()
        .map(|(n, v)| format!("{v:.2}× at {}", int(*n as f64)))
        .collect::<Vec<_>>()
        .join(", ");
    report.goal(
        "5. last TART (cache hit): dns mode ≥ 0.9× config mode's req/s",
        if text.is_empty() {
            "no sizes".into()
        } else {
            text
        },
        (!ratios.is_empty()).then(|| ratios.values().all(|v| *v >= 0.9)),
    );
    // Limit: at 10,000, each mode ≥ 0.9 × its limit, in each routes mode.
    let big = runs.iter().find(|r| r.n == 10_000);
    let limits: [(&str, Pick); 2] = [("", |r| &r.hits), (" in host mode", |r| &r.host_hits)];
    for (label, pick) in limits {
        let per_mode = |r: &SizeRun| {
            Mode::BOTH
                .iter()
                .enumerate()
                .map(|(i, m)| (m.as_str(), rps(&pick(r)[i][0]) / rps(&pick(r)[i][1])))
                .collect::<Vec<_>>()
        };
        report.goal(
            &format!(
                "5. last TART at 10,000 TARTs ≥ 0.9× the limit (a static reverse_proxy in the same Caddy){label}, both modes"
            ),
            big.map_or("needs size 10000".into(), |r| {
                per_mode(r)
                    .iter()
                    .zip(pick(r))
                    .map(|((m, v), [route, limit, _])| {
                        format!("{m} {v:.2}× (single runs {})", spread(route, limit))
                    })
                    .collect::<Vec<_>>()
                    .join(", ")
            }),
            big.map(|r| per_mode(r).iter().all(|(_, v)| *v >= 0.9)),
        );
    }
    // dns mode: 0 writes for flaps and moves; 1 per name change.
    let mut state_writes = 0;
    let mut name_writes = Vec::new();
    let mut never = 0;
    for r in runs {
        for (kind, v) in r.changes[1].iter().enumerate() {
            never += v.iter().filter(|c| c.visible_ms.is_none()).count();
            if mode_changes::is_name_change(kind) {
                name_writes.extend(v.iter().map(|c| c.cost.writes));
            } else {
                state_writes += v.iter().map(|c| c.cost.writes).sum::<usize>();
            }
        }
    }
    report.goal(
        "5. dns mode: a flap or a move costs 0 Caddy writes",
        format!(
            "{state_writes} write(s) over all flaps and moves{}",
            if never > 0 {
                format!("; {never} change(s) never visible")
            } else {
                String::new()
            }
        ),
        (!runs.is_empty()).then_some(state_writes == 0 && never == 0),
    );
    report.goal(
        "5. dns mode: a new or removed name costs exactly 1 write",
        format!("writes per name change: {name_writes:?}"),
        (!name_writes.is_empty()).then(|| name_writes.iter().all(|w| *w == 1)),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn runs(rates: &[f64]) -> Vec<LoadResult> {
        rates
            .iter()
            .map(|&rps| LoadResult {
                rps,
                ..LoadResult::default()
            })
            .collect()
    }

    #[test]
    fn the_spread_pairs_each_route_run_with_the_limit_run_beside_it() {
        let route = runs(&[90.0, 80.0, 100.0]);
        let limit = runs(&[100.0, 100.0, 80.0]);
        assert_eq!(spread(&route, &limit), "0.80–1.25");
        // A limit run that failed completely is left out, not divided by.
        let limit = runs(&[100.0, 0.0, 100.0]);
        assert_eq!(spread(&route, &limit), "0.90–1.00");
    }
}
