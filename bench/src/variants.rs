//! Part 1, why: variants of tart-sync's installed route, loaded in turn into
//! one more Caddy (same site, same backend, same load), to find what the
//! route's per-request cost follows.

use std::time::{Duration, Instant};

use e2e::sync::DOMAIN;
use serde_json::{json, Value};
use tart_sync::layout::Ids;

use crate::load::Generator;
use crate::report::{int, median, ratio, table};
use crate::setup::{http_client, routes_at, site_caddy, site_paths, wait_status, Fleet};
use crate::{err, naive, progress, Options, Res};

fn handlers(route: &Value) -> Vec<Value> {
    route["handle"].as_array().cloned().unwrap_or_default()
}

fn is_bucket(h: &Value) -> bool {
    h["handler"] == "map" && h["@id"].as_str().is_some_and(|id| id.contains("-bucket-"))
}

fn is_index(h: &Value) -> bool {
    h["handler"] == "map" && h["@id"].as_str().is_some_and(|id| id.ends_with("-index"))
}

fn mappings(h: &Value) -> Vec<Value> {
    h["mappings"].as_array().cloned().unwrap_or_default()
}

/// Map handlers in the route.
fn maps(route: &Value) -> usize {
    handlers(route)
        .iter()
        .filter(|h| h["handler"] == "map")
        .count()
}

/// The route with its handlers replaced.
fn with_handlers(route: &Value, handlers: Vec<Value>) -> Value {
    let mut r = route.clone();
    r["handle"] = Value::Array(handlers);
    r
}

/// The bucket maps folded into `k` (bucket i → i mod k), the index pointed at them.
fn merged(route: &Value, k: usize) -> Value {
    let hs = handlers(route);
    let buckets: Vec<&Value> = hs.iter().filter(|h| is_bucket(h)).collect();
    let dest = |i: usize| buckets[i]["destinations"][0].clone();
    let mut out = Vec::new();
    for h in &hs {
        if is_index(h) {
            let mut idx = h.clone();
            for m in idx["mappings"].as_array_mut().into_iter().flatten() {
                let cur = &m["outputs"][0];
                if let Some(i) = buckets.iter().position(|b| b["destinations"][0] == *cur) {
                    m["outputs"][0] = dest(i % k);
                }
            }
            out.push(idx);
            for j in 0..k.min(buckets.len()) {
                let mut b = buckets[j].clone();
                let all = (j..buckets.len())
                    .step_by(k)
                    .flat_map(|i| mappings(buckets[i]));
                b["mappings"] = Value::Array(all.collect());
                out.push(b);
            }
        } else if !is_bucket(h) {
            out.push(h.clone());
        }
    }
    with_handlers(route, out)
}

/// Index and buckets replaced by one map of every name.
fn one_map(route: &Value) -> Value {
    let hs = handlers(route);
    let buckets: Vec<&Value> = hs.iter().filter(|h| is_bucket(h)).collect();
    let mut out = Vec::new();
    for h in &hs {
        if is_index(h) {
            out.push(json!({
                "handler": "map",
                "source": buckets.first().map(|b| b["source"].clone()).unwrap_or_default(),
                "destinations": h["destinations"].clone(),
                "mappings": buckets.iter().flat_map(|b| mappings(b)).collect::<Vec<_>>(),
                "defaults": [""],
            }));
        } else if !is_bucket(h) {
            out.push(h.clone());
        }
    }
    with_handlers(route, out)
}

/// Empty bucket maps added after the existing ones, up to `k` buckets.
fn padded(route: &Value, k: usize) -> Value {
    let mut hs = handlers(route);
    let have = hs.iter().filter(|h| is_bucket(h)).count();
    let (Some(first), Some(last)) = (
        hs.iter().position(is_bucket),
        hs.iter().rposition(is_bucket),
    ) else {
        return route.clone();
    };
    let template = hs[first].clone();
    for i in have..k {
        let mut b = template.clone();
        b["@id"] = json!(format!("bench-pad-{i}"));
        b["destinations"] = json!([format!("{{bench_pad_{i}}}")]);
        b["mappings"] = json!([]);
        hs.insert(last + 1 + (i - have), b);
    }
    with_handlers(route, hs)
}

/// The variants, in the order they are loaded.
const VARIANTS: [&str; 8] = [
    "10 TARTs, as installed",
    "10 TARTs, padded with empty bucket maps to 32",
    "10,000 TARTs, as installed",
    "10,000 TARTs, the same route inside the site's subroute",
    "10,000 TARTs, buckets folded into 16 maps",
    "10,000 TARTs, buckets folded into 8 maps",
    "10,000 TARTs, buckets folded into 4 maps",
    "10,000 TARTs, one map of all names (no index)",
];

/// The variants' table (a subsection of part 1), from the installed routes
/// of the 10- and 10,000-TART fleets.
pub async fn run(opts: &Options, generator: &Generator, small: &Fleet, big: &Fleet) -> Res<String> {
    progress!("layout variants: what tart-sync's per-request cost follows");
    let (lab, lab_addr) = site_caddy()?;
    let client = naive::fresh_client(&lab.admin)?;
    let original: Value = client.config("").get().await?;
    let (site_routes, server_routes) = site_paths(&original)?;
    let id = Ids::new(&big.routes.id_prefix).route;
    let route_big: Value = big.inst.client().id(&id).get().await?;
    let route_small: Value = small.inst.client().id(&id).get().await?;
    // Each variant goes first into the server's routes (`top`) or the site's (`inside`),
    // in the order of `VARIANTS`.
    let (sm, bg) = (&route_small, &route_big);
    let (top, inside) = (server_routes.as_str(), site_routes.as_str());
    let variants: [(Value, &str); 8] = [
        (sm.clone(), top),
        (padded(sm, 32), top),
        (bg.clone(), top),
        (bg.clone(), inside),
        (merged(bg, 16), top),
        (merged(bg, 8), top),
        (merged(bg, 4), top),
        (one_map(bg), top),
    ];
    // The first two are loaded on the small fleet's last TART, the others on the big one's.
    let name = |i: usize| if i < 2 { small.last() } else { big.last() };
    let mut configs = Vec::new();
    for (route, at) in &variants {
        let mut cfg = original.clone();
        routes_at(&mut cfg, at)?.insert(0, route.clone());
        configs.push(cfg);
    }
    let http = http_client()?;
    let (secs, reps) = (opts.secs.min(3), opts.reps.min(2));
    let mut res: Vec<Vec<f64>> = vec![Vec::new(); variants.len()];
    for _ in 0..reps {
        for (i, (label, cfg)) in VARIANTS.iter().zip(&configs).enumerate() {
            let name = name(i);
            client.load_forced(cfg).await?;
            let path = format!("/{name}/");
            let limit = Duration::from_secs(10);
            if wait_status(&http, lab_addr, &path, 200, Instant::now(), limit)
                .await
                .is_none()
            {
                return Err(err(format!(
                    "layout variant \"{label}\": {path} does not answer 200"
                )));
            }
            let r = generator.run(lab_addr, DOMAIN, &path, secs).await?;
            progress!("  {label} ({name}): {} req/s", int(r.rps));
            res[i].push(r.rps);
        }
    }
    let reference = median(&res[0]);
    let rows: Vec<Vec<String>> = VARIANTS
        .iter()
        .zip(variants.iter().zip(&res))
        .enumerate()
        .map(|(i, (label, ((route, _), r)))| {
            vec![
                label.to_string(),
                format!("`{}`", name(i)),
                maps(route).to_string(),
                int(median(r)),
                ratio(median(r), reference),
            ]
        })
        .collect();
    let mut s = format!(
        "\n### Why: routing cost by variant of tart-sync's route\n\nThe installed route of the 10- and 10,000-TART \
Caddies, changed one way at a time and loaded in turn into one more Caddy (same site, backend and load; last TART; \
medians of {reps} interleaved run(s) of {secs} s):\n\n"
    );
    s.push_str(&table(
        &["variant", "TART", "map handlers", "req/s", "÷ first row"],
        &rows,
    ));
    Ok(s)
}
