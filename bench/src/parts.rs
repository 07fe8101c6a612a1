//! The four parts of the benchmark.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use e2e::backend::{fleet_ip, start_fleet, Backend};
use e2e::headscale::API_KEY;
use e2e::sync::{caddyfile_example, DOMAIN};
use e2e::{free_port, temp_dir, Caddy, TempDir, Version};
use serde_json::Value;
use tart_sync::config::{RouteSettings, Settings};
use tart_sync::desired::{Target, Targets};
use tart_sync::layout::{self, bucket_key, Diff, Features, Ids, RouteForm};
use tart_sync::reconcile::{find_site, Instance, Outcome};

use crate::daemon::{self, Daemon};
use crate::load::{Generator, LoadResult};
use crate::naive::{self, Placement};
use crate::standin::StandIn;
use crate::{
    err, int, median, ms, names, percentile, progress, ratio, table, Options, Report, Res,
};

/// The layouts of part 1, in the order they are interleaved.
const LAYOUTS: [&str; 3] = ["tart-sync", "naive", "direct"];

/// Runs the parts asked for and collects the report.
pub async fn run(opts: Options) -> Res<Report> {
    let mut report = Report::default();
    if Version::Latest.binary().is_none() {
        return Err(err(
            "CADDY_BIN_LATEST is not set to an installed Caddy 2.11 (run through scripts/bench)",
        ));
    }
    let caddy_version = e2e::version_string(Version::Latest);
    let generator = Generator::detect();
    let mut head = String::from("## Setup\n\n");
    head.push_str(&format!(
        "- Run: {} ({} s per load run, {} interleaved repetition(s); sizes {:?} for parts 1–2, {:?} for parts 3–4)\n",
        if opts.smoke { "smoke (tiny; figures are not meaningful)" } else { "full" },
        opts.secs,
        opts.reps,
        opts.sizes,
        opts.daemon_sizes
    ));
    head.push_str(&format!("- Caddy: {caddy_version} (`CADDY_BIN_LATEST`), started from `Caddyfile.example` with the site `http://{DOMAIN}:<port>`\n"));
    head.push_str(&format!(
        "- Load: {}; everything on loopback\n",
        generator.describe()
    ));
    head.push_str("- Backend: one small HTTP server (the e2e harness's `Backend`, axum, answers a short JSON) on 127.0.0.2; every TART dials it\n");
    head.push_str(&format!("- Names: {}\n", names::DESCRIPTION));
    report.sections.push(head);

    if opts.parts.iter().any(|p| *p == 1 || *p == 2) {
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
        if opts.parts.contains(&1) {
            routing(
                &opts,
                &generator,
                &fleets,
                SocketAddr::new(fleet_ip(0).into(), port),
                &mut report,
            )
            .await?;
        }
        if opts.parts.contains(&1) {
            let small = fleets.iter().find(|f| f.n == 10);
            let big = fleets.iter().find(|f| f.n == 10_000);
            if let (Some(small), Some(big)) = (small, big) {
                let s = layout_variants(&opts, &generator, small, big).await?;
                if let Some(sec) = report.sections.last_mut() {
                    sec.push_str(&s);
                }
            }
        }
        if opts.parts.contains(&2) {
            change_cost(&opts, &mut fleets, &dial, &alt, &mut report).await?;
        }
        drop(fleets);
        drop(backends);
    }
    if opts.parts.contains(&3) {
        steady_state(&opts, &mut report).await?;
    }
    if opts.parts.contains(&4) {
        convergence(&opts, &mut report).await?;
    }
    Ok(report)
}

/// For profiling tart-sync by hand: Caddy from `Caddyfile.example`, a
/// backend and the headscale stand-in with `n` online nodes; prints
/// tart-sync's environment as `export` lines and keeps everything up for
/// `--hold` seconds.
pub async fn serve(opts: &Options, n: usize) -> Res<()> {
    let backend = Backend::start("tart", fleet_ip(0), 0).await?;
    let (caddy, addr) = site_caddy()?;
    let standin = StandIn::start(&names::names(n), fleet_ip(0)).await?;
    let env = tart_env(standin.url(), &caddy.admin, backend.addr.port(), &[]);
    for (k, v) in &env {
        println!("export {k}='{v}'");
    }
    println!(
        "# Caddy's site: http://{addr} with Host: {DOMAIN}; up for {} s",
        opts.hold
    );
    use std::io::Write as _;
    std::io::stdout().flush()?;
    tokio::time::sleep(Duration::from_secs(opts.hold)).await;
    Ok(())
}

/// The kinds of `--mem-probe`.
pub const MEM_PROBES: [(&str, &str); 4] = [
    (
        "parse-nodes",
        "parse the node list (`parse_node_list`; kept until the answer changes)",
    ),
    (
        "route-form",
        "read the live route for the full check (`RouteForm`, every 10 minutes)",
    ),
    (
        "route-value",
        "the same route read as a `serde_json::Value` tree (for comparison; not used)",
    ),
    (
        "route-build",
        "build the desired route (`layout::route`: typed, borrowing the table)",
    ),
];

/// In a fresh process (`tart-bench --mem-probe KIND N DIR`): how much the
/// peak RSS grows (kB) during one step on N nodes. Its input is read from
/// DIR (written by [`mem_probes`]), so no freed memory is lying around for
/// the step to reuse.
pub fn mem_probe(kind: &str, n: usize, dir: &std::path::Path) -> Res<u64> {
    let pid = std::process::id();
    let settings = settings_from(&tart_env("http://127.0.0.1:9", "127.0.0.1:2019", 8080, &[]))?;
    let features = Features {
        stream_close_delay: true,
    };
    let input = match kind {
        "parse-nodes" => std::fs::read(dir.join("nodes.json"))?,
        "route-form" | "route-value" => std::fs::read(dir.join("route.json"))?,
        "route-build" => Vec::new(),
        other => return Err(err(format!("unknown probe {other}"))),
    };
    let ip = fleet_ip(0);
    let targets: Targets = if kind == "route-build" {
        names::names(n)
            .into_iter()
            .map(|name| (name, Target::Dial(format!("{ip}:8080"))))
            .collect()
    } else {
        Targets::new()
    };
    if !daemon::reset_peak_rss(pid) {
        return Err(err("cannot reset the peak RSS (clear_refs)"));
    }
    let before = daemon::status_kb(pid, "VmRSS")?;
    // The peak while the step's result is still held.
    let held = |value: &dyn std::fmt::Debug| -> Res<u64> {
        let peak = daemon::status_kb(pid, "VmHWM")?;
        std::hint::black_box(value);
        Ok(peak)
    };
    let peak = match kind {
        "parse-nodes" => held(&tart_sync::headscale::parse_node_list(&input)?)?,
        "route-form" => held(&RouteForm::parse(std::str::from_utf8(&input)?)?)?,
        "route-value" => held(&serde_json::from_slice::<Value>(&input)?)?,
        _ => held(&layout::route(&targets, &settings.routes, features))?,
    };
    Ok(peak.saturating_sub(before))
}

/// Runs every `--mem-probe` for N nodes, each in a fresh process.
fn mem_probes(n: usize) -> Res<Vec<(&'static str, u64)>> {
    let dir = temp_dir("bench-mem");
    let names = names::names(n);
    let ip = fleet_ip(0);
    let nodes: Vec<Value> = names
        .iter()
        .enumerate()
        .map(|(i, name)| e2e::headscale::SimNode::new(i as u64 + 1, name, ip).json())
        .collect();
    std::fs::write(
        dir.path().join("nodes.json"),
        serde_json::to_vec(&serde_json::json!({ "nodes": nodes }))?,
    )?;
    let settings = settings_from(&tart_env("http://127.0.0.1:9", "127.0.0.1:2019", 8080, &[]))?;
    let targets: Targets = names
        .iter()
        .map(|n| (n.clone(), Target::Dial(format!("{ip}:8080"))))
        .collect();
    let route = layout::subtree(
        &targets,
        &settings.routes,
        Features {
            stream_close_delay: true,
        },
    );
    std::fs::write(dir.path().join("route.json"), serde_json::to_vec(&route)?)?;
    let exe = std::env::current_exe()?;
    let mut out = Vec::new();
    for (kind, label) in MEM_PROBES {
        let o = std::process::Command::new(&exe)
            .args(["--mem-probe", kind, &n.to_string()])
            .arg(dir.path())
            .output()?;
        let text = String::from_utf8_lossy(&o.stdout);
        let kb: u64 = text.trim().parse().map_err(|_| {
            err(format!(
                "--mem-probe {kind} {n}: {text}{}",
                String::from_utf8_lossy(&o.stderr)
            ))
        })?;
        out.push((label, kb));
    }
    Ok(out)
}

/// A reqwest client without pooling (every Caddy reload closes kept-alive connections).
fn http_client() -> Res<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(5))
        .build()?)
}

/// GET `http://addr/path` with this Host: status and body, or `None` on a transport error.
async fn get(
    http: &reqwest::Client,
    addr: SocketAddr,
    host: &str,
    path: &str,
) -> Option<(u16, String)> {
    let r = http
        .get(format!("http://{addr}{path}"))
        .header("host", host)
        .send()
        .await
        .ok()?;
    let status = r.status().as_u16();
    Some((status, r.text().await.unwrap_or_default()))
}

/// Caddy 2.11 running `Caddyfile.example` with the site on a free port.
fn site_caddy() -> Res<(Caddy, SocketAddr)> {
    let port = free_port();
    let site = format!("http://{DOMAIN}:{port}");
    let wildcard = format!("http://*.{DOMAIN}:{port}");
    let caddy = Caddy::start_caddyfile(
        Version::Latest,
        &caddyfile_example(),
        &[("TART_SITE", &site), ("TART_WILDCARD_SITE", &wildcard)],
    )
    .ok_or_else(|| err("CADDY_BIN_LATEST is not set"))?;
    Ok((caddy, SocketAddr::new(Ipv4Addr::LOCALHOST.into(), port)))
}

/// tart-sync's environment for this Caddy and headscale.
fn tart_env(
    hs_url: &str,
    admin: &str,
    upstream_port: u16,
    extra: &[(&str, String)],
) -> BTreeMap<String, String> {
    let mut env: BTreeMap<String, String> = [
        ("TART_SYNC_HEADSCALE_URL", hs_url.to_string()),
        ("TART_SYNC_HEADSCALE_API_KEY", API_KEY.to_string()),
        ("TART_SYNC_CADDY_ADMIN", admin.to_string()),
        ("TART_SYNC_ROUTES_DOMAIN", DOMAIN.to_string()),
        ("TART_SYNC_ROUTES_UPSTREAM_PORT", upstream_port.to_string()),
        (
            "TART_SYNC_STATUS_LISTEN",
            format!("127.0.0.1:{}", free_port()),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    for (k, v) in extra {
        env.insert(k.to_string(), v.clone());
    }
    env
}

fn settings_from(env: &BTreeMap<String, String>) -> Res<Settings> {
    Settings::from_sources(None, &|k: &str| env.get(k).cloned(), None)
        .map_err(|e| err(format!("settings: {e}")))
}

/// One fleet size for parts 1 and 2: Caddy A carries tart-sync's route
/// (installed by the real reconcile), Caddy B the naive routes.
struct Fleet {
    n: usize,
    order: Vec<String>,
    targets: Targets,
    a: Caddy,
    a_addr: SocketAddr,
    inst: Instance,
    routes: RouteSettings,
    b: Caddy,
    b_addr: SocketAddr,
    place: Placement,
}

impl Fleet {
    async fn start(n: usize, dial: &str, upstream_port: u16) -> Res<Fleet> {
        let all = names::names(n);
        let order = names::naive_order(&all);
        let targets: Targets = all
            .iter()
            .map(|name| (name.clone(), Target::Dial(dial.to_string())))
            .collect();
        let (a, a_addr) = site_caddy()?;
        let settings = settings_from(&tart_env(
            "http://127.0.0.1:9",
            &a.admin,
            upstream_port,
            &[],
        ))?;
        let mut inst = Instance::new(&a.admin)?;
        match inst.reconcile(&targets, &settings.routes, true).await? {
            Outcome::Installed { .. } => {}
            other => {
                return Err(err(format!(
                    "installing tart-sync's route: unexpected {other:?}"
                )))
            }
        }
        let (b, b_addr) = site_caddy()?;
        let place = naive::install(&naive::fresh_client(&b.admin)?, DOMAIN, &order, dial).await?;
        Ok(Fleet {
            n,
            order,
            targets,
            a,
            a_addr,
            inst,
            routes: settings.routes,
            b,
            b_addr,
            place,
        })
    }

    fn first(&self) -> &str {
        &self.order[0]
    }

    fn last(&self) -> &str {
        &self.order[self.order.len() - 1]
    }

    /// Both layouts route the first and last TART to the backend (prefix
    /// stripped) and answer 404 for an unknown name.
    async fn check(&self, http: &reqwest::Client, backend: &Backend) -> Res<()> {
        for (label, addr) in [("tart-sync", self.a_addr), ("naive", self.b_addr)] {
            for name in [self.first(), self.last()] {
                let (status, body) = get(http, addr, DOMAIN, &format!("/{name}/x"))
                    .await
                    .ok_or_else(|| {
                        err(format!(
                            "{label} layout, {} TARTs: no answer for /{name}/x",
                            self.n
                        ))
                    })?;
                let v: Value = serde_json::from_str(&body).unwrap_or_default();
                if status != 200 || v["tart"] != backend.name.as_str() || v["path"] != "/x" {
                    return Err(err(format!(
                        "{label} layout, {} TARTs: /{name}/x answered {status} {body:.300}",
                        self.n
                    )));
                }
            }
            let unknown = get(http, addr, DOMAIN, "/no-such-tart/").await.map(|r| r.0);
            if unknown != Some(404) {
                return Err(err(format!(
                    "{label} layout, {} TARTs: an unknown name answered {unknown:?}",
                    self.n
                )));
            }
        }
        Ok(())
    }

    /// Where tart-sync's layout finds `name`: position of its key in the
    /// index map and of the name in its bucket map.
    fn lookup_cost(&self, name: &str) -> String {
        let desired = layout::subtree(
            &self.targets,
            &self.routes,
            Features {
                stream_close_delay: true,
            },
        );
        let handlers = desired["handle"].as_array().cloned().unwrap_or_default();
        let maps: Vec<&Value> = handlers.iter().filter(|h| h["handler"] == "map").collect();
        let Some(index) = maps.first() else {
            return "?".into();
        };
        let keys = index["mappings"].as_array().cloned().unwrap_or_default();
        let Some(kpos) = keys.iter().position(|m| m["input"] == bucket_key(name)) else {
            return "?".into();
        };
        let out = keys[kpos]["outputs"][0].clone();
        let Some(bucket) = maps.iter().find(|m| m["destinations"][0] == out) else {
            return "?".into();
        };
        let entries = bucket["mappings"].as_array().cloned().unwrap_or_default();
        let npos = entries
            .iter()
            .position(|m| m["input"] == name)
            .map_or(0, |p| p + 1);
        format!(
            "key `{}` #{} of {} in the index, name #{npos} of {} in its bucket ({} bucket maps)",
            bucket_key(name),
            kpos + 1,
            keys.len(),
            entries.len(),
            maps.len() - 1
        )
    }
}

// ---------------------------------------------------------------- part 1

async fn routing(
    opts: &Options,
    generator: &Generator,
    fleets: &[Fleet],
    direct: SocketAddr,
    report: &mut Report,
) -> Res<()> {
    let mut results: BTreeMap<(usize, usize, usize), Vec<LoadResult>> = BTreeMap::new();
    let total = opts.reps * fleets.len() * 2 * LAYOUTS.len();
    let mut done = 0;
    for _rep in 0..opts.reps {
        for (fi, f) in fleets.iter().enumerate() {
            for (wi, name) in [f.first(), f.last()].into_iter().enumerate() {
                for (li, layout) in LAYOUTS.iter().enumerate() {
                    let path = format!("/{name}/");
                    let direct_host = direct.to_string();
                    let (addr, host, path) = match li {
                        0 => (f.a_addr, DOMAIN, path.as_str()),
                        1 => (f.b_addr, DOMAIN, path.as_str()),
                        _ => (direct, direct_host.as_str(), "/"),
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
    let med = |fi: usize, wi: usize, li: usize, f: fn(&LoadResult) -> f64| {
        median(
            &results
                .get(&(fi, wi, li))
                .map(|v| v.iter().map(f).collect::<Vec<_>>())
                .unwrap_or_default(),
        )
    };
    let rps = |fi, wi, li| med(fi, wi, li, |r| r.rps);
    let lat = |fi, wi, li| {
        format!(
            "{} / {}",
            ms(med(fi, wi, li, |r| r.p50_ms)),
            ms(med(fi, wi, li, |r| r.p99_ms))
        )
    };
    let mut rows = Vec::new();
    let mut notes = Vec::new();
    let mut errors = 0;
    for (fi, f) in fleets.iter().enumerate() {
        for (wi, name) in [f.first(), f.last()].into_iter().enumerate() {
            let pos = if wi == 0 { 1 } else { f.n };
            rows.push(vec![
                int(f.n as f64),
                format!(
                    "{} `{name}` (route #{pos})",
                    if wi == 0 { "first" } else { "last" }
                ),
                int(rps(fi, wi, 0)),
                int(rps(fi, wi, 1)),
                int(rps(fi, wi, 2)),
                ratio(rps(fi, wi, 0), rps(fi, wi, 1)),
                ratio(rps(fi, wi, 0), rps(fi, wi, 2)),
                lat(fi, wi, 0),
                lat(fi, wi, 1),
                lat(fi, wi, 2),
            ]);
            notes.push(format!(
                "- {} TARTs, `{name}` in tart-sync's layout: {}",
                f.n,
                f.lookup_cost(name)
            ));
            for li in 0..LAYOUTS.len() {
                errors += results.get(&(fi, wi, li)).map_or(0, |v| {
                    v.iter().map(|r| r.socket_errors + r.non_2xx).sum::<u64>()
                });
            }
        }
    }
    let mut s = String::from("## 1. Request routing\n\n");
    s.push_str(&format!(
        "Proxied requests/s and latency (p50 / p99) through Caddy to one TART, for tart-sync's layout (one route with \
index + bucket `map`s, installed by the real `Instance::reconcile`), the naive layout (one `handle_path /<name>/*` route \
per TART inside the site's subroute, in the order the Caddyfile adapter lists them: longest path first) and the backend \
directly. Medians of {} interleaved run(s) of {} s each (tart-sync, naive, direct, tart-sync, …). \"first\"/\"last\": the \
first/last route of the naive layout.\n\n",
        opts.reps, opts.secs
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
            "tart-sync p50 / p99",
            "naive p50 / p99",
            "direct p50 / p99",
        ],
        &rows,
    ));
    s.push_str(&format!(
        "\nSocket errors + non-2xx responses over all runs: {errors}.\n\n"
    ));
    s.push_str("Where tart-sync's layout finds each name (its cost is one index scan plus one bucket scan, both linear):\n\n");
    s.push_str(&notes.join("\n"));
    s.push('\n');

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
        let runs = |fi: usize, li: usize| {
            results
                .get(&(fi, 1, li))
                .map(|v| v.iter().map(|r| int(r.rps)).collect::<Vec<_>>().join(", "))
                .unwrap_or_default()
        };
        s.push_str(&format!(
            "Each run, in run order (req/s): tart-sync, last TART, at 10: {}; at 10,000: {}.\n",
            runs(lo, 0),
            runs(hi, 0)
        ));
        report.goal(
            "1. last-TART req/s at 10,000 TARTs ≥ 90% of the same at 10 (tart-sync's layout)",
            format!("{:.0}% (naive layout: {:.0}%)", a * 100.0, b * 100.0),
            Some(a >= 0.9),
        );
    } else {
        report.goal(
            "1. last-TART req/s at 10,000 TARTs ≥ 90% of the same at 10 (tart-sync's layout)",
            "needs sizes 10 and 10000".into(),
            None,
        );
    }
    report.sections.push(s);
    Ok(())
}

/// Variants of tart-sync's route, to find what its per-request cost follows.
mod variant {
    use serde_json::{json, Value};

    fn handlers(route: &Value) -> Vec<Value> {
        route["handle"].as_array().cloned().unwrap_or_default()
    }

    fn is_bucket(h: &Value) -> bool {
        h["handler"] == "map" && h["@id"].as_str().is_some_and(|id| id.contains("-bucket-"))
    }

    fn is_index(h: &Value) -> bool {
        h["handler"] == "map" && h["@id"].as_str().is_some_and(|id| id.ends_with("-index"))
    }

    /// Map handlers in the route.
    pub fn maps(route: &Value) -> usize {
        handlers(route)
            .iter()
            .filter(|h| h["handler"] == "map")
            .count()
    }

    /// The bucket maps folded into `k` (bucket i → i mod k), the index pointed at them.
    pub fn merged(route: &Value, k: usize) -> Value {
        let hs = handlers(route);
        let buckets: Vec<&Value> = hs.iter().filter(|h| is_bucket(h)).collect();
        let dest = |i: usize| {
            buckets
                .get(i)
                .map(|b| b["destinations"][0].clone())
                .unwrap_or_default()
        };
        let mut out = Vec::new();
        for h in &hs {
            if is_index(h) {
                let mut idx = h.clone();
                if let Some(ms) = idx["mappings"].as_array_mut() {
                    for m in ms {
                        let cur = m["outputs"][0].clone();
                        if let Some(i) = buckets.iter().position(|b| b["destinations"][0] == cur) {
                            m["outputs"][0] = dest(i % k);
                        }
                    }
                }
                out.push(idx);
                for j in 0..k.min(buckets.len()) {
                    let mut b = buckets[j].clone();
                    let all: Vec<Value> = (0..buckets.len())
                        .filter(|i| i % k == j)
                        .flat_map(|i| {
                            buckets[i]["mappings"]
                                .as_array()
                                .cloned()
                                .unwrap_or_default()
                        })
                        .collect();
                    b["mappings"] = Value::Array(all);
                    out.push(b);
                }
            } else if !is_bucket(h) {
                out.push(h.clone());
            }
        }
        let mut r = route.clone();
        r["handle"] = Value::Array(out);
        r
    }

    /// Index and buckets replaced by one map of every name.
    pub fn one_map(route: &Value) -> Value {
        let hs = handlers(route);
        let buckets: Vec<&Value> = hs.iter().filter(|h| is_bucket(h)).collect();
        let mut out = Vec::new();
        for h in &hs {
            if is_index(h) {
                let all: Vec<Value> = buckets
                    .iter()
                    .flat_map(|b| b["mappings"].as_array().cloned().unwrap_or_default())
                    .collect();
                out.push(json!({
                    "handler": "map",
                    "source": buckets.first().map(|b| b["source"].clone()).unwrap_or_default(),
                    "destinations": h["destinations"].clone(),
                    "mappings": all,
                    "defaults": [""],
                }));
            } else if !is_bucket(h) {
                out.push(h.clone());
            }
        }
        let mut r = route.clone();
        r["handle"] = Value::Array(out);
        r
    }

    /// Empty bucket maps added after the existing ones, up to `k` buckets.
    pub fn padded(route: &Value, k: usize) -> Value {
        let hs = handlers(route);
        let buckets: Vec<&Value> = hs.iter().filter(|h| is_bucket(h)).collect();
        let Some(last) = hs.iter().rposition(is_bucket) else {
            return route.clone();
        };
        let mut out = hs.clone();
        let template = buckets[0].clone();
        for i in buckets.len()..k {
            let mut b = template.clone();
            b["@id"] = json!(format!("bench-pad-{i}"));
            b["destinations"] = json!([format!("{{bench_pad_{i}}}")]);
            b["mappings"] = json!([]);
            out.insert(last + 1 + (i - buckets.len()), b);
        }
        let mut r = route.clone();
        r["handle"] = Value::Array(out);
        r
    }
}

/// Part 1, why: the same routing measured with variants of tart-sync's route in
/// one more Caddy, loaded in turn (same site, same backend, same load).
async fn layout_variants(
    opts: &Options,
    generator: &Generator,
    small: &Fleet,
    big: &Fleet,
) -> Res<String> {
    progress!("layout variants: what tart-sync's per-request cost follows");
    let (lab, lab_addr) = site_caddy()?;
    let client = naive::fresh_client(&lab.admin)?;
    let original: Value = client.config("").get().await?;
    let base = match find_site(&original["apps"]["http"]["servers"], DOMAIN) {
        Some(p) => format!("{p}/handle/0/routes"),
        None => return Err(err("layout variants: no site")),
    };
    let server_routes = base
        .split("/routes/")
        .next()
        .unwrap_or_default()
        .to_string()
        + "/routes";
    let pointer = |p: &str| format!("/{p}");
    let id = Ids::new(&big.routes.id_prefix).route;
    let route_big: Value = big.inst.client().id(&id).get().await?;
    let route_small: Value = small.inst.client().id(&id).get().await?;
    let with = |route: &Value, at: &str| -> Res<Value> {
        let mut cfg = original.clone();
        cfg.pointer_mut(&pointer(at))
            .and_then(Value::as_array_mut)
            .ok_or_else(|| err("layout variants: bad path"))?
            .insert(0, route.clone());
        Ok(cfg)
    };
    let (lb, ls) = (big.last().to_string(), small.last().to_string());
    let variants: Vec<(String, Value, String, usize)> = vec![
        (
            "10 TARTs, as installed".into(),
            with(&route_small, &server_routes)?,
            ls.clone(),
            variant::maps(&route_small),
        ),
        (
            "10 TARTs, padded with empty bucket maps to 32".into(),
            with(&variant::padded(&route_small, 32), &server_routes)?,
            ls.clone(),
            variant::maps(&variant::padded(&route_small, 32)),
        ),
        (
            "10,000 TARTs, as installed".into(),
            with(&route_big, &server_routes)?,
            lb.clone(),
            variant::maps(&route_big),
        ),
        (
            "10,000 TARTs, the same route inside the site's subroute".into(),
            with(&route_big, &base)?,
            lb.clone(),
            variant::maps(&route_big),
        ),
        (
            "10,000 TARTs, buckets folded into 16 maps".into(),
            with(&variant::merged(&route_big, 16), &server_routes)?,
            lb.clone(),
            variant::maps(&variant::merged(&route_big, 16)),
        ),
        (
            "10,000 TARTs, buckets folded into 8 maps".into(),
            with(&variant::merged(&route_big, 8), &server_routes)?,
            lb.clone(),
            variant::maps(&variant::merged(&route_big, 8)),
        ),
        (
            "10,000 TARTs, buckets folded into 4 maps".into(),
            with(&variant::merged(&route_big, 4), &server_routes)?,
            lb.clone(),
            variant::maps(&variant::merged(&route_big, 4)),
        ),
        (
            "10,000 TARTs, one map of all names (no index)".into(),
            with(&variant::one_map(&route_big), &server_routes)?,
            lb.clone(),
            variant::maps(&variant::one_map(&route_big)),
        ),
    ];
    let http = http_client()?;
    let secs = opts.secs.min(3);
    let mut res: Vec<Vec<f64>> = vec![Vec::new(); variants.len()];
    for _ in 0..opts.reps.min(2) {
        for (i, (label, cfg, name, _)) in variants.iter().enumerate() {
            client.load_forced(cfg).await?;
            let path = format!("/{name}/");
            let ok = e2e::eventually(Duration::from_secs(10), || async {
                (get(&http, lab_addr, DOMAIN, &path).await.map(|r| r.0) == Some(200)).then_some(())
            })
            .await;
            if ok.is_none() {
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
    let rows: Vec<Vec<String>> = variants
        .iter()
        .zip(&res)
        .map(|((label, _, name, maps), r)| {
            vec![
                label.clone(),
                format!("`{name}`"),
                maps.to_string(),
                int(median(r)),
                ratio(median(r), reference),
            ]
        })
        .collect();
    let mut s = format!(
        "\n### Why: routing cost by variant of tart-sync's route\n\nThe installed route of the 10- and 10,000-TART \
Caddies, changed one way at a time and loaded in turn into one more Caddy (same site, backend and load; last TART; \
medians of {} interleaved run(s) of {secs} s):\n\n",
        opts.reps.min(2)
    );
    s.push_str(&table(
        &["variant", "TART", "map handlers", "req/s", "÷ first row"],
        &rows,
    ));
    Ok(s)
}

// ---------------------------------------------------------------- part 2

/// The other dial address.
fn flip(current: &Target, dial: &str, alt: &str) -> Target {
    if current.as_lookup() == dial {
        Target::Dial(alt.to_string())
    } else {
        Target::Dial(dial.to_string())
    }
}

async fn change_cost(
    opts: &Options,
    fleets: &mut [Fleet],
    dial: &str,
    alt: &str,
    report: &mut Report,
) -> Res<()> {
    let mut rows = Vec::new();
    let mut breakdown_rows = Vec::new();
    let mut burst_writes_ok = true;
    let mut goal_change: Option<f64> = None;
    for f in fleets.iter_mut() {
        let n = f.n;
        let xi = n / 2;
        let x = f.order[xi].clone();
        let mut cur = f.targets.clone();

        // tart-sync: the real reconcile with one target changed.
        let mut a_ms = Vec::new();
        for _ in 0..opts.change_trials {
            let next = flip(&cur[&x], dial, alt);
            cur.insert(x.clone(), next);
            let t = Instant::now();
            let out = f.inst.reconcile(&cur, &f.routes, true).await?;
            a_ms.push(t.elapsed().as_secs_f64() * 1000.0);
            match out {
                Outcome::Updated(d) if d.changed == vec![x.clone()] => {}
                other => {
                    return Err(err(format!(
                        "one change at {n}: unexpected outcome {other:?}"
                    )))
                }
            }
        }
        progress!(
            "{n} TARTs: one change through reconcile: median {}",
            ms(median(&a_ms))
        );

        // The same steps, timed one by one.
        let ids = Ids::new(&f.routes.id_prefix);
        let features = f.inst.known_features().unwrap_or(Features {
            stream_close_delay: true,
        });
        let (mut get_ms, mut diff_ms, mut build_ms, mut write_ms) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for _ in 0..3 {
            let before = cur.clone();
            let next = flip(&cur[&x], dial, alt);
            cur.insert(x.clone(), next);
            let t = Instant::now();
            let (stamp, etag) = f
                .inst
                .client()
                .id(&ids.rev)
                .get_with_etag::<Value>()
                .await?;
            get_ms.push(t.elapsed().as_secs_f64() * 1000.0);
            let t = Instant::now();
            let rev = layout::revision(&cur, &f.routes, features);
            let diff = Diff::between(&before, &cur);
            diff_ms.push(t.elapsed().as_secs_f64() * 1000.0);
            if stamp.get(&ids.rev_var).and_then(Value::as_str) == Some(rev.as_str())
                || diff.changed.len() != 1
            {
                return Err(err("breakdown: the change was not seen"));
            }
            let t = Instant::now();
            let desired = layout::route(&cur, &f.routes, features);
            build_ms.push(t.elapsed().as_secs_f64() * 1000.0);
            let t = Instant::now();
            f.inst
                .client()
                .id(&ids.route)
                .if_match(&etag)
                .patch(&desired)
                .await?;
            write_ms.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        breakdown_rows.push(vec![
            int(n as f64),
            ms(median(&get_ms)),
            ms(median(&diff_ms)),
            ms(median(&build_ms)),
            ms(median(&write_ms)),
            ms(median(&get_ms) + median(&diff_ms) + median(&build_ms) + median(&write_ms)),
        ]);

        // Naive: PATCH the one route.
        let client_b = naive::fresh_client(&f.b.admin)?;
        let naive_trials = if n >= 10_000 {
            opts.change_trials.min(5)
        } else {
            opts.change_trials
        };
        let mut b_dial = dial.to_string();
        let mut b_ms = Vec::new();
        for _ in 0..naive_trials {
            b_dial = flip(&Target::Dial(b_dial), dial, alt)
                .as_lookup()
                .to_string();
            let t = Instant::now();
            naive::patch_route(
                &client_b,
                &f.place.route_path(xi),
                &naive::route(&x, &b_dial),
            )
            .await?;
            b_ms.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        progress!(
            "{n} TARTs: one change, naive PATCH: median {}",
            ms(median(&b_ms))
        );

        // A burst of up to 100 changes in one poll.
        let k = n.min(100);
        let picked: Vec<usize> = (0..k).map(|j| j * n / k).collect();
        for &i in &picked {
            let name = &f.order[i];
            let next = flip(&cur[name], dial, alt);
            cur.insert(name.clone(), next);
        }
        let w0 = f.a.admin_writes();
        let t = Instant::now();
        let out = f.inst.reconcile(&cur, &f.routes, true).await?;
        let a_burst = t.elapsed().as_secs_f64() * 1000.0;
        let a_writes = f.a.admin_writes() - w0;
        match out {
            Outcome::Updated(d) if d.changed.len() == k => {}
            other => return Err(err(format!("burst at {n}: unexpected outcome {other:?}"))),
        }
        burst_writes_ok &= a_writes == 1;
        let (b_writes, b_burst) = if n < 10_000 || opts.smoke {
            let w0 = f.b.admin_writes();
            let t = Instant::now();
            for &i in &picked {
                b_dial = flip(&Target::Dial(b_dial), dial, alt)
                    .as_lookup()
                    .to_string();
                naive::patch_route(
                    &client_b,
                    &f.place.route_path(i),
                    &naive::route(&f.order[i], &b_dial),
                )
                .await?;
            }
            (
                (f.b.admin_writes() - w0).to_string(),
                ms(t.elapsed().as_secs_f64() * 1000.0),
            )
        } else {
            (
                format!("{k} (one per route; not run)"),
                format!("≈ {} (est. {k} × one change)", ms(k as f64 * median(&b_ms))),
            )
        };
        progress!(
            "{n} TARTs: burst of {k}: tart-sync {a_writes} write(s) in {}",
            ms(a_burst)
        );
        if n == 10_000 {
            goal_change = Some(median(&a_ms));
        }
        let maxf = |v: &[f64]| v.iter().copied().fold(f64::NAN, f64::max);
        rows.push(vec![
            int(n as f64),
            format!("{} / {}", ms(median(&a_ms)), ms(maxf(&a_ms))),
            format!("{} / {}", ms(median(&b_ms)), ms(maxf(&b_ms))),
            ratio(median(&a_ms), median(&b_ms)),
            format!("{k}"),
            format!("{a_writes}"),
            b_writes,
            ms(a_burst),
            b_burst,
        ]);
    }
    let mut s = String::from("## 2. Change cost\n\n");
    s.push_str(&format!(
        "One change: from calling `Instance::reconcile` with one target changed (GET the route's revision stamp with \
its ETag, compute the new stamp and the diff from the table in memory, build the route, one guarded PATCH) to Caddy \
answering the write; naive: one PATCH of that TART's route. Median / max of {} trial(s) ({} for naive at 10,000). \
Burst: up to 100 targets changed in one poll; writes counted in Caddy's log (`admin.api` \"received request\", \
POST/PUT/PATCH/DELETE).\n\n",
        opts.change_trials,
        opts.change_trials.min(5)
    ));
    s.push_str(&table(
        &[
            "TARTs",
            "one change, tart-sync",
            "one change, naive",
            "tart-sync ÷ naive",
            "burst size",
            "writes, tart-sync",
            "writes, naive per-route",
            "burst time, tart-sync",
            "burst time, naive",
        ],
        &rows,
    ));
    s.push_str("\nWhere one tart-sync change spends its time (medians of 3, the same steps as `reconcile`, timed one by one):\n\n");
    s.push_str(&table(
        &[
            "TARTs",
            "GET the stamp (`/id/tart-sync-rev`)",
            "new stamp + diff (in memory)",
            "build the route (`layout::route`)",
            "PATCH (serialize; Caddy reloads)",
            "sum",
        ],
        &breakdown_rows,
    ));
    if let Some(f) = fleets.iter().max_by_key(|f| f.n) {
        progress!("{} TARTs: Caddy's reload cost by config shape", f.n);
        let rows = reload_shapes(f, if opts.smoke { 2 } else { 5 }).await?;
        s.push_str(&format!(
            "\nCaddy's own reload cost at {} TARTs, by config shape (forced reloads of identical content, \
`Cache-Control: must-revalidate`; medians of {}). Every change reloads the whole config, whatever the size of the \
write:\n\n",
            int(f.n as f64),
            if opts.smoke { 2 } else { 5 }
        ));
        s.push_str(&table(&["config", "size", "reload"], &rows));
    }
    report.sections.push(s);
    report.goal(
        "2. one route change at 10,000 TARTs applied by Caddy in ≤ 100 ms",
        goal_change.map_or("needs size 10000".into(), |v| format!("{} (median)", ms(v))),
        goal_change.map(|v| v <= 100.0),
    );
    report.goal(
        "2. exactly 1 Caddy write per burst of 100 changes",
        if burst_writes_ok {
            "1 at every size".into()
        } else {
            "more than 1 (see table 2)".into()
        },
        Some(burst_writes_ok),
    );
    Ok(())
}

/// Caddy's own reload cost at one size, by config shape: forced reloads
/// (`Cache-Control: must-revalidate`) of the same content, so nothing but
/// the shape differs. Rows: shape, config size, median.
async fn reload_shapes(f: &Fleet, trials: usize) -> Res<Vec<Vec<String>>> {
    let client = naive::fresh_client(&f.a.admin)?;
    let ids = Ids::new(&f.routes.id_prefix);
    let full: Value = client.config("").get().await?;
    let route: Value = client.id(&ids.route).get().await?;
    let base_path = match find_site(&full["apps"]["http"]["servers"], DOMAIN) {
        Some(p) => format!("{p}/handle/0/routes"),
        None => return Err(err("reload shapes: no site")),
    };
    let server_routes = base_path
        .split("/routes/")
        .next()
        .unwrap_or_default()
        .to_string()
        + "/routes";
    let pointer = |p: &str| {
        format!(
            "/apps/http/servers/{}",
            p.trim_start_matches("apps/http/servers/")
        )
    };
    // As installed, the route is the first of the server's routes, before the site.
    let mut without = full.clone();
    without
        .pointer_mut(&pointer(&server_routes))
        .and_then(Value::as_array_mut)
        .filter(|a| a.first().is_some_and(|r| r["@id"] == ids.route.as_str()))
        .ok_or_else(|| err("reload shapes: the route is not first in the server"))?
        .remove(0);
    let mut inside = without.clone();
    inside
        .pointer_mut(&pointer(&base_path))
        .and_then(Value::as_array_mut)
        .ok_or_else(|| err("reload shapes: the site has no subroute"))?
        .insert(0, route.clone());
    let mappings: Vec<Value> = route["handle"]
        .as_array()
        .map(|hs| {
            hs.iter()
                .filter_map(|h| h["mappings"].as_array())
                .flatten()
                .cloned()
                .collect()
        })
        .unwrap_or_default();
    let mut blob = without.clone();
    blob.pointer_mut(&pointer(&base_path)).and_then(Value::as_array_mut).ok_or_else(|| err("no site routes"))?.insert(
        0,
        serde_json::json!({
            "match": [{"path": ["/never-matches/*"]}],
            "handle": [{"handler": "static_response", "body": serde_json::to_string(&mappings)?}],
        }),
    );
    let size = |v: &Value| {
        serde_json::to_vec(v)
            .map(|b| format!("{} kB", int(b.len() as f64 / 1000.0)))
            .unwrap_or_default()
    };
    let mut rows = Vec::new();
    let mut times = Vec::new();
    for _ in 0..trials {
        let t = Instant::now();
        client.id(&ids.route).force_reload().patch(&route).await?;
        times.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    rows.push(vec![
        "as installed: PATCH /id/tart-sync with the same route (forced reload)".to_string(),
        size(&full),
        ms(median(&times)),
    ]);
    let shapes = [
        ("as installed: POST /load of the whole config", &full),
        ("without the tart-sync route (the site alone)", &without),
        (
            "the same route inside the site's subroute (one nesting level more)",
            &inside,
        ),
        (
            "the route's mappings as ONE JSON string (same bytes, almost no objects)",
            &blob,
        ),
    ];
    for (label, cfg) in shapes {
        let mut times = Vec::new();
        for _ in 0..trials {
            let t = Instant::now();
            client.load_forced(cfg).await?;
            times.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        rows.push(vec![label.to_string(), size(cfg), ms(median(&times))]);
    }
    client.load_forced(&full).await?;
    Ok(rows)
}

// ---------------------------------------------------------------- parts 3 and 4

/// Caddy, backend, headscale stand-in and the real tart-sync binary.
struct Live {
    caddy: Caddy,
    addr: SocketAddr,
    standin: StandIn,
    daemon: Daemon,
    names: Vec<String>,
    env: BTreeMap<String, String>,
    _backend: Backend,
    _dir: TempDir,
}

impl Live {
    async fn start(
        opts: &Options,
        n: usize,
        interval: Duration,
        extra: &[(&str, String)],
    ) -> Res<Live> {
        let backend = Backend::start("tart", fleet_ip(0), 0).await?;
        let (caddy, addr) = site_caddy()?;
        let names = names::names(n);
        let standin = StandIn::start(&names, fleet_ip(0)).await?;
        let mut all: Vec<(&str, String)> = vec![(
            "TART_SYNC_HEADSCALE_POLL_INTERVAL",
            format!("{}ms", interval.as_millis()),
        )];
        all.extend(extra.iter().cloned());
        let env = tart_env(standin.url(), &caddy.admin, backend.addr.port(), &all);
        let dir = temp_dir("bench");
        let mut daemon = Daemon::spawn(&opts.tart_sync, &env, dir.path().join("tart-sync.log"))?;
        // Installed, and a few cycles done.
        daemon
            .wait_counters(Duration::from_secs(120), |c| c.writes >= 1 && c.cycles >= 3)
            .await?;
        let http = http_client()?;
        let first = &names[0];
        let ok = e2e::eventually(Duration::from_secs(30), || async {
            (get(&http, addr, DOMAIN, &format!("/{first}/"))
                .await
                .map(|r| r.0)
                == Some(200))
            .then_some(())
        })
        .await;
        if ok.is_none() {
            return Err(err(format!(
                "{n} nodes: /{first}/ does not answer 200 through Caddy; tart-sync log:\n{}",
                daemon::tail(&daemon.log_text(), 40)
            )));
        }
        Ok(Live {
            caddy,
            addr,
            standin,
            daemon,
            names,
            env,
            _backend: backend,
            _dir: dir,
        })
    }
}

/// Figures of one idle window.
struct Idle {
    n: usize,
    cycles: u64,
    polls: u64,
    standin_polls: u64,
    cpu_ms_per_cycle: f64,
    cycle_ms: f64,
    poll_ms: f64,
    peak_idle_kb: Option<u64>,
    peak_life_kb: u64,
    rss_kb: u64,
    caddy_writes: usize,
    daemon_writes: u64,
    body_bytes: usize,
    window_s: f64,
    steps: Vec<(&'static str, f64)>,
}

async fn idle_run(opts: &Options, n: usize) -> Res<Idle> {
    let interval = opts.idle_interval;
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
    let target = c0.cycles + opts.idle_cycles;
    let limit = interval * (opts.idle_cycles as u32) * 4 + Duration::from_secs(60);
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
    let cycles = c1.cycles - c0.cycles;
    let polls = c1.polls - c0.polls;
    let tick_ms = 1000.0 / daemon::clock_ticks() as f64;
    let idle = Idle {
        n,
        cycles,
        polls,
        standin_polls,
        cpu_ms_per_cycle: (cpu1 - cpu0) as f64 * tick_ms / cycles.max(1) as f64,
        cycle_ms: (c1.cycle_seconds - c0.cycle_seconds) * 1000.0 / cycles.max(1) as f64,
        poll_ms: (c1.poll_seconds - c0.poll_seconds) * 1000.0 / polls.max(1) as f64,
        peak_idle_kb,
        peak_life_kb,
        rss_kb,
        caddy_writes,
        daemon_writes: c1.writes - c0.writes,
        body_bytes: live.standin.body_len(),
        window_s,
        steps: idle_steps(&live).await?,
    };
    progress!(
        "steady state, {n} nodes: {cycles} cycles in {window_s:.1} s, {} CPU per cycle, peak RSS {} kB, {caddy_writes} writes",
        ms(idle.cpu_ms_per_cycle),
        idle.peak_idle_kb.unwrap_or(peak_life_kb)
    );
    live.daemon.stop().await;
    Ok(idle)
}

/// The steps of one idle cycle, timed in this process (release build) on the
/// same data, with tart-sync's own functions: where an idle cycle's CPU goes,
/// and what a changed answer or the periodic full check add.
async fn idle_steps(live: &Live) -> Res<Vec<(&'static str, f64)>> {
    let settings = settings_from(&live.env)?;
    let http = http_client()?;
    let headscale = tart_sync::headscale::HeadscaleClient::from_settings(&settings.headscale)?;
    let inst = Instance::new(&live.caddy.admin)?;
    let ids = Ids::new(&settings.routes.id_prefix);
    let features = Features {
        stream_close_delay: true,
    };
    let url = format!("{}/api/v1/node", live.standin.url());
    // The first answer is parsed and kept, as by the daemon's first poll.
    headscale.list_nodes_shared(None).await?;
    let mut t: BTreeMap<&'static str, Vec<f64>> = BTreeMap::new();
    let mut rec = |k: &'static str, start: Instant| {
        t.entry(k)
            .or_default()
            .push(start.elapsed().as_secs_f64() * 1000.0)
    };
    for _ in 0..5 {
        let s = Instant::now();
        let body = http
            .get(&url)
            .bearer_auth(API_KEY)
            .send()
            .await?
            .bytes()
            .await?;
        rec(
            "1 HTTP only: fetch the node list into one buffer (reqwest)",
            s,
        );
        let s = Instant::now();
        let shared = headscale.list_nodes_shared(None).await?;
        rec(
            "2 poll headscale, answer unchanged (fetch + compare with the kept answer)",
            s,
        );
        if shared.changed {
            return Err(err("idle: the stand-in's answer changed between two polls"));
        }
        let s = Instant::now();
        let list = tart_sync::headscale::parse_node_list(&body)?;
        rec("3 parse the node list (only when the answer changed)", s);
        let s = Instant::now();
        let desired = tart_sync::desired::compute(
            &list.nodes,
            &settings.headscale,
            &settings.routes,
            time::OffsetDateTime::now_utc(),
        );
        let targets = desired.targets();
        rec(
            "4 desired state + targets (only when the answer changed)",
            s,
        );
        let s = Instant::now();
        let stamp: Value = inst.client().id(&ids.rev).get().await?;
        rec("5 GET the revision stamp (`/id/tart-sync-rev`)", s);
        std::hint::black_box(stamp);
        let s = Instant::now();
        let (raw, _) = inst.live(&ids).await?.ok_or_else(|| err("no live route"))?;
        let form = RouteForm::parse(raw.get())?;
        let same = form.matches(&layout::route(&targets, &settings.routes, features));
        rec(
            "6 full check (every 10 min): GET the route, read it, compare",
            s,
        );
        if !same {
            return Err(err("idle: the live route differs from the desired one"));
        }
    }
    let mut out: Vec<(&'static str, f64)> = t.into_iter().map(|(k, v)| (k, median(&v))).collect();
    let step = |out: &[(&'static str, f64)], n: char| {
        out.iter()
            .find(|(k, _)| k.starts_with(n))
            .map_or(0.0, |s| s.1)
    };
    let unchanged = step(&out, '2') + step(&out, '5');
    let changed = step(&out, '2') + step(&out, '3') + step(&out, '4') + step(&out, '5');
    out.push(("A → idle cycle, answer unchanged (2 + 5)", unchanged));
    out.push((
        "B → cycle with a changed answer, same targets (2 + 3 + 4 + 5)",
        changed,
    ));
    Ok(out)
}

async fn steady_state(opts: &Options, report: &mut Report) -> Res<()> {
    let mut runs = Vec::new();
    for &n in &opts.daemon_sizes {
        runs.push(idle_run(opts, n).await?);
    }
    let mb = |kb: u64| format!("{:.1} MB", kb as f64 / 1024.0);
    let col = |f: &dyn Fn(&Idle) -> String| runs.iter().map(f).collect::<Vec<_>>();
    let last_ratio = |f: &dyn Fn(&Idle) -> f64| match (runs.first(), runs.last()) {
        (Some(a), Some(b)) if runs.len() > 1 => ratio(f(b), f(a)),
        _ => "–".into(),
    };
    let mut rows: Vec<Vec<String>> = Vec::new();
    let mut row = |label: &str, vals: Vec<String>, r: String| {
        let mut v = vec![label.to_string()];
        v.extend(vals);
        v.push(r);
        rows.push(v);
    };
    row(
        "idle cycles measured (`tart_sync_cycles_total`)",
        col(&|i| i.cycles.to_string()),
        "".into(),
    );
    row(
        "headscale polls in the window (tart-sync / stand-in)",
        col(&|i| format!("{} / {}", i.polls, i.standin_polls)),
        "".into(),
    );
    row(
        "window (wall)",
        col(&|i| format!("{:.1} s", i.window_s)),
        "".into(),
    );
    row(
        "headscale answer size",
        col(&|i| format!("{:.2} MB", i.body_bytes as f64 / 1e6)),
        last_ratio(&|i| i.body_bytes as f64),
    );
    row(
        "**tart-sync CPU per idle cycle** (utime+stime ÷ cycles)",
        col(&|i| ms(i.cpu_ms_per_cycle)),
        last_ratio(&|i| i.cpu_ms_per_cycle),
    );
    row(
        "reconcile wall time per cycle (`/metrics`)",
        col(&|i| ms(i.cycle_ms)),
        last_ratio(&|i| i.cycle_ms),
    );
    row(
        "headscale poll wall time (`/metrics`)",
        col(&|i| ms(i.poll_ms)),
        last_ratio(&|i| i.poll_ms),
    );
    row(
        "**peak RSS in the idle window** (VmHWM after reset)",
        col(&|i| i.peak_idle_kb.map_or("– (clear_refs refused)".into(), mb)),
        last_ratio(&|i| i.peak_idle_kb.unwrap_or(0) as f64),
    );
    row(
        "peak RSS since start (incl. first install)",
        col(&|i| mb(i.peak_life_kb)),
        last_ratio(&|i| i.peak_life_kb as f64),
    );
    row(
        "RSS at the end",
        col(&|i| mb(i.rss_kb)),
        last_ratio(&|i| i.rss_kb as f64),
    );
    row(
        "**Caddy writes in the window** (Caddy's log)",
        col(&|i| i.caddy_writes.to_string()),
        "".into(),
    );
    row(
        "writes counted by tart-sync (`/metrics`)",
        col(&|i| i.daemon_writes.to_string()),
        "".into(),
    );
    let mut head: Vec<String> = vec!["".into()];
    head.extend(runs.iter().map(|i| format!("{} nodes", int(i.n as f64))));
    head.push("ratio (largest ÷ smallest)".into());
    let head_ref: Vec<&str> = head.iter().map(String::as_str).collect();
    let mut s = String::from("## 3. Steady state\n\n");
    s.push_str(&format!(
        "The real `tart-sync run` binary (release build) as a child process, configured by environment, against the \
headscale stand-in listing N online nodes and Caddy with the route installed. Poll interval {:?}; after 5 warm-up \
cycles, {} idle cycles are measured: CPU from /proc/<pid>/stat, peak RSS from VmHWM in /proc/<pid>/status (reset \
with `echo 5 > /proc/<pid>/clear_refs` at the start of the window), cycles from `/metrics` (read once a second in the \
window). Each cycle = one \
headscale poll + one reconcile that finds Caddy up to date.\n\n",
        opts.idle_interval, opts.idle_cycles
    ));
    s.push_str(&table(&head_ref, &rows));
    s.push_str("\nThe steps of one idle cycle, timed in the benchmark process on the same data (medians of 5, wall time):\n\n");
    let mut step_rows = Vec::new();
    if let Some(first) = runs.first() {
        for (k, (label, _)) in first.steps.iter().enumerate() {
            let mut r = vec![label.get(2..).unwrap_or(label).to_string()];
            r.extend(
                runs.iter()
                    .map(|i| ms(i.steps.get(k).map_or(f64::NAN, |s| s.1))),
            );
            step_rows.push(r);
        }
    }
    s.push_str(&table(&head_ref[..head_ref.len() - 1], &step_rows));
    if let Some(big) = runs.iter().map(|i| i.n).max().filter(|n| *n > 10) {
        s.push_str(&format!(
            "\nPeak memory of one step at {} nodes (each in a fresh process: VmHWM − RSS just before the step; its \
input prepared first):\n\n",
            int(big as f64)
        ));
        let rows: Vec<Vec<String>> = mem_probes(big)?
            .into_iter()
            .map(|(l, kb)| vec![l.to_string(), mb(kb)])
            .collect();
        s.push_str(&table(&["step", "peak RSS growth"], &rows));
    }
    report.sections.push(s);

    let big = runs.iter().find(|i| i.n == 10_000);
    report.goal(
        "3. idle cycle at 10,000 nodes ≤ 20 ms of tart-sync CPU",
        big.map_or("needs daemon size 10000".into(), |i| ms(i.cpu_ms_per_cycle)),
        big.map(|i| i.cpu_ms_per_cycle <= 20.0),
    );
    report.goal(
        "3. peak RSS ≤ 30 MB (idle window, 10,000 nodes)",
        big.map_or("needs daemon size 10000".into(), |i| {
            format!(
                "{} (since start: {})",
                i.peak_idle_kb.map_or("–".into(), mb),
                mb(i.peak_life_kb)
            )
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

/// xorshift64*, for jitter.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed | 1)
    }
    fn below(&mut self, d: Duration) -> Duration {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let x = self.0.wrapping_mul(0x2545_f491_4f6c_dd1d);
        d.mul_f64((x >> 11) as f64 / (1u64 << 53) as f64)
    }
}

/// Figures of one convergence run.
struct Conv {
    n: usize,
    online: Vec<f64>,
    offline: Vec<f64>,
    timeouts: usize,
}

/// Waits until `path` answers `want`, from `since`; the time it took, or `None` after `limit`.
async fn wait_status(
    http: &reqwest::Client,
    addr: SocketAddr,
    path: &str,
    want: u16,
    since: Instant,
    limit: Duration,
) -> Option<f64> {
    loop {
        if get(http, addr, DOMAIN, path).await.map(|r| r.0) == Some(want) {
            return Some(since.elapsed().as_secs_f64() * 1000.0);
        }
        if since.elapsed() > limit {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn conv_run(opts: &Options, n: usize) -> Res<Conv> {
    let interval = opts.conv_interval;
    progress!(
        "convergence, {n} nodes: starting (poll interval {interval:?}, {} trials)",
        opts.conv_trials
    );
    let live = Arc::new(
        Live::start(
            opts,
            n,
            interval,
            &[("TART_SYNC_ROUTES_OFFLINE_GRACE", "0s".into())],
        )
        .await?,
    );
    let lanes = if opts.smoke { 2 } else { 4 }.min(n);
    let counter = Arc::new(AtomicUsize::new(0));
    let limit = interval * 10;
    let mut tasks = tokio::task::JoinSet::new();
    for lane in 0..lanes {
        let live = live.clone();
        let counter = counter.clone();
        let trials = opts.conv_trials;
        let idx = lane * n / lanes + n / (2 * lanes);
        tasks.spawn(async move {
            let http = http_client()?;
            let path = format!("/{}/", live.names[idx]);
            let seed = Instant::now().elapsed().as_nanos() as u64
                ^ (lane as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
            let mut rng = Rng::new(seed);
            let (mut on, mut off, mut timeouts) = (Vec::new(), Vec::new(), 0usize);
            while counter.fetch_add(1, Ordering::SeqCst) < trials {
                tokio::time::sleep(rng.below(interval)).await;
                live.standin.set_online(idx, false);
                match wait_status(&http, live.addr, &path, 503, Instant::now(), limit).await {
                    Some(v) => off.push(v),
                    None => timeouts += 1,
                }
                tokio::time::sleep(rng.below(interval)).await;
                live.standin.set_online(idx, true);
                let t0 = Instant::now();
                match wait_status(&http, live.addr, &path, 200, t0, limit).await {
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
        ms(percentile(&conv.online, 50.0).unwrap_or(f64::NAN)),
        ms(percentile(&conv.online, 99.0).unwrap_or(f64::NAN)),
        conv.timeouts
    );
    if let Ok(live) = Arc::try_unwrap(live) {
        live.daemon.stop().await;
    }
    Ok(conv)
}

async fn convergence(opts: &Options, report: &mut Report) -> Res<()> {
    let mut runs = Vec::new();
    for &n in &opts.daemon_sizes {
        runs.push(conv_run(opts, n).await?);
    }
    let p = |v: &[f64], q: f64| percentile(v, q).unwrap_or(f64::NAN);
    let mut rows: Vec<Vec<String>> = Vec::new();
    let spread = |f: &dyn Fn(&Conv) -> f64| match (runs.first(), runs.last()) {
        (Some(a), Some(b)) if runs.len() > 1 => ratio(f(b), f(a)),
        _ => "–".into(),
    };
    let mut row = |label: &str, f: &dyn Fn(&Conv) -> String, r: String| {
        let mut v = vec![label.to_string()];
        v.extend(runs.iter().map(f));
        v.push(r);
        rows.push(v);
    };
    row(
        "trials (online→200 measured)",
        &|c| c.online.len().to_string(),
        "".into(),
    );
    row(
        "**online → 200, p50**",
        &|c| ms(p(&c.online, 50.0)),
        spread(&|c| p(&c.online, 50.0)),
    );
    row(
        "**online → 200, p99**",
        &|c| ms(p(&c.online, 99.0)),
        spread(&|c| p(&c.online, 99.0)),
    );
    row(
        "online → 200, min / max",
        &|c| format!("{} / {}", ms(p(&c.online, 0.0)), ms(p(&c.online, 100.0))),
        "".into(),
    );
    row(
        "offline → 503, p50 / p99",
        &|c| format!("{} / {}", ms(p(&c.offline, 50.0)), ms(p(&c.offline, 99.0))),
        "".into(),
    );
    row(
        "trials that timed out (10 intervals)",
        &|c| c.timeouts.to_string(),
        "".into(),
    );
    let mut head: Vec<String> = vec!["".into()];
    head.extend(runs.iter().map(|c| format!("{} nodes", int(c.n as f64))));
    head.push("ratio (largest ÷ smallest)".into());
    let head_ref: Vec<&str> = head.iter().map(String::as_str).collect();
    let mut s = String::from("## 4. Convergence\n\n");
    s.push_str(&format!(
        "The real `tart-sync run` binary, poll interval {:?}, offline grace 0 s. A trial: after a random pause \
(uniform in one interval, so trials sample every phase of the poll cycle) the stand-in reports a node offline; once \
its URL answers 503, another random pause, then the stand-in reports it online (t₀ = when the stand-in's answer has \
changed) and the URL is probed through Caddy every 5 ms until it answers 200. {} lanes run trials on different nodes \
at once. p99 is nearest-rank (with 50 trials: the maximum).\n\n",
        opts.conv_interval,
        if opts.smoke { 2 } else { 4 }
    ));
    s.push_str(&table(&head_ref, &rows));
    report.sections.push(s);
    let budget = opts.conv_interval.as_secs_f64() * 1000.0 + 250.0;
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
