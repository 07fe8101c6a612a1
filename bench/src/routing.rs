//! Part 1, request routing: req/s and p50/p99 to the first and last TART
//! through tart-sync's layout, the naive layout and the backend directly,
//! runs interleaved.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use e2e::sync::DOMAIN;
use serde_json::Value;
use tart_sync::layout::{self, bucket_key, Features};

use crate::load::{Generator, LoadResult};
use crate::report::{int, median, ms, ratio, table, Report};
use crate::setup::Fleet;
use crate::{err, progress, Options, Res};

/// The layouts of part 1, in the order they are interleaved ("limit": a
/// static `reverse_proxy` in tart-sync's Caddy, see [`crate::limit`]).
const LAYOUTS: [&str; 4] = ["tart-sync", "naive", "direct", "limit"];

/// Load results by (fleet, first/last TART, layout).
type Results = BTreeMap<(usize, usize, usize), Vec<LoadResult>>;

/// Runs part 1 on every fleet and adds its section and goal.
pub async fn run(
    opts: &Options,
    generator: &Generator,
    fleets: &[Fleet],
    direct: SocketAddr,
    report: &mut Report,
) -> Res<()> {
    let results = measure(opts, generator, fleets, direct).await?;
    let med = |key: (usize, usize, usize), f: fn(&LoadResult) -> f64| {
        median(
            &results
                .get(&key)
                .map_or_else(Vec::new, |v| v.iter().map(f).collect()),
        )
    };
    let rps = |fi, wi, li| med((fi, wi, li), |r| r.rps);
    let lat = |fi, wi, li| {
        let p50 = med((fi, wi, li), |r| r.p50_ms);
        format!("{} / {}", ms(p50), ms(med((fi, wi, li), |r| r.p99_ms)))
    };
    let mut rows = Vec::new();
    let mut notes = Vec::new();
    for (fi, f) in fleets.iter().enumerate() {
        for (wi, name) in [f.first(), f.last()].into_iter().enumerate() {
            let (which, pos) = if wi == 0 { ("first", 1) } else { ("last", f.n) };
            let mut row = vec![int(f.n as f64), format!("{which} `{name}` (route #{pos})")];
            row.extend((0..3).map(|li| int(rps(fi, wi, li))));
            row.push(ratio(rps(fi, wi, 0), rps(fi, wi, 1)));
            row.push(ratio(rps(fi, wi, 0), rps(fi, wi, 2)));
            row.push(int(rps(fi, wi, 3)));
            row.push(ratio(rps(fi, wi, 0), rps(fi, wi, 3)));
            row.extend((0..3).map(|li| lat(fi, wi, li)));
            rows.push(row);
            notes.push(format!(
                "- {} TARTs, `{name}` in tart-sync's layout: {}",
                f.n,
                lookup_cost(f, name)
            ));
        }
    }
    let errors: u64 = results
        .values()
        .flatten()
        .map(|r| r.socket_errors + r.non_2xx)
        .sum();
    let mut s = String::from("## 1. Request routing\n\n");
    s.push_str(&format!(
        "Proxied requests/s and latency (p50 / p99) through Caddy to one TART, for tart-sync's layout (one route with \
index + bucket `map`s, installed by the real `Instance::reconcile`), the naive layout (one `handle_path /<name>/*` route \
per TART inside the site's subroute, in the order the Caddyfile adapter lists them: longest path first), the backend \
directly, and the limit. Medians of {} interleaved run(s) of {} s each (tart-sync, naive, direct, limit, tart-sync, …). \
\"first\"/\"last\": the first/last route of the naive layout. The {} (tart-sync's Caddy).\n\n",
        opts.reps, opts.secs, crate::limit::DESCRIPTION
    ));
    s.push_str(&table(
        &[
            "TARTs",
            "TART",
            "tart-sync req/s",
            "naive req/s",
            "direct req/s",
            "tart-sync ÷ naive",
            "tart-sync ÷ direct",
            "limit req/s",
            "tart-sync ÷ limit",
            "tart-sync p50 / p99",
            "naive p50 / p99",
            "direct p50 / p99",
        ],
        &rows,
    ));
    s.push_str(&format!(
        "\nSocket errors + non-2xx responses over all runs: {errors}.\n\n\
Where tart-sync's layout finds each name (its cost is one index scan plus one bucket scan, both linear):\n\n{}\n",
        notes.join("\n")
    ));

    let goal = "1. last-TART req/s at 10,000 TARTs ≥ 90% of the same at 10 (tart-sync's layout)";
    let lo = fleets.iter().position(|f| f.n == 10);
    let hi = fleets.iter().position(|f| f.n == 10_000);
    if let (Some(lo), Some(hi)) = (lo, hi) {
        let a = rps(hi, 1, 0) / rps(lo, 1, 0);
        let b = rps(hi, 1, 1) / rps(lo, 1, 1);
        s.push_str(&format!(
            "\nLast TART at 10,000 ÷ at 10: tart-sync {a:.2} ({} → {} req/s), naive {b:.2} ({} → {} req/s).\n",
            int(rps(lo, 1, 0)),
            int(rps(hi, 1, 0)),
            int(rps(lo, 1, 1)),
            int(rps(hi, 1, 1))
        ));
        let runs = |fi: usize| {
            let v = results.get(&(fi, 1, 0)).map(Vec::as_slice).unwrap_or(&[]);
            v.iter().map(|r| int(r.rps)).collect::<Vec<_>>().join(", ")
        };
        s.push_str(&format!(
            "Each run, in run order (req/s): tart-sync, last TART, at 10: {}; at 10,000: {}.\n",
            runs(lo),
            runs(hi)
        ));
        let measured = format!("{:.0}% (naive layout: {:.0}%)", a * 100.0, b * 100.0);
        report.goal(goal, measured, Some(a >= 0.9));
    } else {
        report.goal(goal, "needs sizes 10 and 10000".into(), None);
    }
    let goal = "1. last-TART req/s at 10,000 TARTs ≥ 0.9× the limit (a static reverse_proxy in the same Caddy)";
    if let Some(hi) = hi {
        let v = rps(hi, 1, 0) / rps(hi, 1, 3);
        let measured = format!(
            "{v:.2}× ({} ÷ {} req/s)",
            int(rps(hi, 1, 0)),
            int(rps(hi, 1, 3))
        );
        report.goal(goal, measured, Some(v >= 0.9));
    } else {
        report.goal(goal, "needs size 10000".into(), None);
    }
    report.sections.push(s);
    Ok(())
}

/// The load runs: every repetition loads, for every fleet, the first and the
/// last TART through each layout in turn.
async fn measure(
    opts: &Options,
    generator: &Generator,
    fleets: &[Fleet],
    direct: SocketAddr,
) -> Res<Results> {
    let mut results = Results::new();
    let total = opts.reps * fleets.len() * 2 * LAYOUTS.len();
    let mut done = 0;
    let direct_host = direct.to_string();
    for _rep in 0..opts.reps {
        for (fi, f) in fleets.iter().enumerate() {
            for (wi, name) in [f.first(), f.last()].into_iter().enumerate() {
                let path = format!("/{name}/");
                for (li, layout) in LAYOUTS.iter().enumerate() {
                    let (addr, host, path) = match li {
                        0 => (f.a_addr, DOMAIN, path.as_str()),
                        1 => (f.b_addr, DOMAIN, path.as_str()),
                        2 => (direct, direct_host.as_str(), "/"),
                        _ => (f.a_limit, DOMAIN, path.as_str()),
                    };
                    let r = generator.run(addr, host, path, opts.secs).await?;
                    done += 1;
                    progress!(
                        "[{done}/{total}] {} TARTs, {} ({name}), {layout}: {} req/s, p50 {}, p99 {}",
                        f.n,
                        if wi == 0 { "first" } else { "last" },
                        int(r.rps),
                        ms(r.p50_ms),
                        ms(r.p99_ms)
                    );
                    if r.requests == 0 || r.non_2xx * 100 > r.requests {
                        return Err(err(format!(
                            "{layout} layout, {} TARTs, {path}: {} of {} responses were not 2xx/3xx",
                            f.n, r.non_2xx, r.requests
                        )));
                    }
                    results.entry((fi, wi, li)).or_default().push(r);
                }
            }
        }
    }
    Ok(results)
}

/// Where tart-sync's layout finds `name`: position of its key in the index
/// map and of the name in its bucket map.
fn lookup_cost(f: &Fleet, name: &str) -> String {
    let features = Features {
        stream_close_delay: true,
    };
    let desired = layout::subtree(&f.targets, &f.routes, features);
    let empty = Vec::new();
    let list = |v: &Value| v.as_array().unwrap_or(&empty).clone();
    let handlers = list(&desired["handle"]);
    let maps: Vec<&Value> = handlers.iter().filter(|h| h["handler"] == "map").collect();
    let Some(index) = maps.first() else {
        return "?".into();
    };
    let keys = list(&index["mappings"]);
    let key = bucket_key(name);
    let Some(kpos) = keys.iter().position(|m| m["input"] == key) else {
        return "?".into();
    };
    let out = &keys[kpos]["outputs"][0];
    let Some(bucket) = maps.iter().find(|m| m["destinations"][0] == *out) else {
        return "?".into();
    };
    let entries = list(&bucket["mappings"]);
    let npos = entries
        .iter()
        .position(|m| m["input"] == name)
        .map_or(0, |p| p + 1);
    format!(
        "key `{key}` #{} of {} in the index, name #{npos} of {} in its bucket ({} bucket maps)",
        kpos + 1,
        keys.len(),
        entries.len(),
        maps.len() - 1
    )
}
