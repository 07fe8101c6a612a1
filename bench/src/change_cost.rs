//! Part 2, change cost: one route change through the real
//! `Instance::reconcile` (broken into its steps by the spans tart-sync opens)
//! vs one PATCH of the naive layout; Caddy writes for a burst of 100 changes;
//! Caddy's own reload cost by config shape.

use std::time::Instant;

use serde_json::{json, Value};
use tart_sync::desired::{Target, Targets};
use tart_sync::layout::Ids;
use tart_sync::reconcile::Outcome;

use crate::report::{int, max, median, ms, ratio, table, Report};
use crate::setup::{routes_at, site_paths, Fleet};
use crate::spans::{Recorded, SpanTimes};
use crate::{err, naive, progress, Options, Res};

/// The other dial address.
fn flip(current: &str, dial: &str, alt: &str) -> String {
    if current == dial { alt } else { dial }.to_string()
}

/// Points `name` at the other dial address.
fn flip_target(targets: &mut Targets, name: &str, dial: &str, alt: &str) {
    if let Some(t) = targets.get_mut(name) {
        *t = Target::Dial(flip(t.as_lookup(), dial, alt));
    }
}

/// The naive layout's writer for one fleet: one PATCH of a TART's route per change.
struct NaiveWriter {
    client: caddy_client::Client,
    place: naive::Placement,
    dials: (String, String),
    current: String,
}

impl NaiveWriter {
    fn new(f: &Fleet, dial: &str, alt: &str) -> Res<NaiveWriter> {
        Ok(NaiveWriter {
            client: naive::fresh_client(&f.b.admin)?,
            place: f.place.clone(),
            dials: (dial.to_string(), alt.to_string()),
            current: dial.to_string(),
        })
    }

    /// Points the `i`-th route (`name`) at the other dial address; the time
    /// Caddy took to answer the PATCH (ms).
    async fn change(&mut self, i: usize, name: &str) -> Res<f64> {
        self.current = flip(&self.current, &self.dials.0, &self.dials.1);
        let t = Instant::now();
        let route = naive::route(name, &self.current);
        naive::patch_route(&self.client, &self.place.route_path(i), &route).await?;
        Ok(t.elapsed().as_secs_f64() * 1000.0)
    }
}

/// The breakdown row of one size: medians of tart-sync's spans over the one-change trials.
fn breakdown_row(n: usize, rec: &Recorded) -> Vec<String> {
    let m = |name: &str| rec.median_ms(name);
    vec![
        int(n as f64),
        ms(m("read_stamp")),
        ms(m("revision") + m("diff")),
        ms(m("build_route")),
        ms(m("write")),
        ms(m("reconcile")),
        ms(rec.median_busy_ms("reconcile")),
    ]
}

/// Runs part 2 on every fleet and adds its section and goals.
pub async fn run(
    opts: &Options,
    spans: &SpanTimes,
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

        // tart-sync: the real reconcile with one target changed; its spans time it and its steps.
        spans.take();
        for _ in 0..opts.change_trials() {
            flip_target(&mut cur, &x, dial, alt);
            match f.inst.reconcile(&cur, &f.routes, true).await? {
                Outcome::Updated(d) if d.changed == [x.clone()] => {}
                other => return Err(err(format!("one change at {n}: unexpected {other:?}"))),
            }
        }
        let rec = spans.take();
        let steps = [
            "reconcile",
            "read_stamp",
            "revision",
            "diff",
            "build_route",
            "write",
        ];
        rec.require(&steps, opts.change_trials())?;
        let a_ms = rec.elapsed_ms("reconcile");
        progress!(
            "{n} TARTs: one change through reconcile: median {}",
            ms(median(&a_ms))
        );
        breakdown_rows.push(breakdown_row(n, &rec));

        // Naive: PATCH the one route.
        let mut naive = NaiveWriter::new(f, dial, alt)?;
        let naive_trials = if n >= 10_000 {
            opts.change_trials().min(5)
        } else {
            opts.change_trials()
        };
        let mut b_ms = Vec::new();
        for _ in 0..naive_trials {
            b_ms.push(naive.change(xi, &x).await?);
        }
        progress!(
            "{n} TARTs: one change, naive PATCH: median {}",
            ms(median(&b_ms))
        );

        // A burst of up to 100 changes in one poll.
        let k = n.min(100);
        let picked: Vec<usize> = (0..k).map(|j| j * n / k).collect();
        for &i in &picked {
            flip_target(&mut cur, &f.order[i], dial, alt);
        }
        let w0 = f.a.admin_writes();
        let out = f.inst.reconcile(&cur, &f.routes, true).await?;
        let a_burst = spans.take().median_ms("reconcile");
        let a_writes = f.a.admin_writes() - w0;
        match out {
            Outcome::Updated(d) if d.changed.len() == k => {}
            other => return Err(err(format!("burst at {n}: unexpected outcome {other:?}"))),
        }
        burst_writes_ok &= a_writes == 1;
        let (b_writes, b_burst) = if n < 10_000 || opts.smoke {
            let (w0, mut took) = (f.b.admin_writes(), 0.0);
            for &i in &picked {
                took += naive.change(i, &f.order[i]).await?;
            }
            ((f.b.admin_writes() - w0).to_string(), ms(took))
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
        rows.push(vec![
            int(n as f64),
            format!("{} / {}", ms(median(&a_ms)), ms(max(&a_ms))),
            format!("{} / {}", ms(median(&b_ms)), ms(max(&b_ms))),
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
answering the write, as timed by tart-sync's `reconcile` span; naive: one PATCH of that TART's route. Median / max of \
{} trial(s) ({} for naive at 10,000). Burst: up to 100 targets changed in one poll; writes counted in Caddy's log \
(`admin.api` \"received request\", POST/PUT/PATCH/DELETE).\n\n",
        opts.change_trials(),
        opts.change_trials().min(5)
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
    s.push_str(&format!(
        "\nWhere one tart-sync change spends its time: medians of tart-sync's own spans over the {} one-change \
trials above (wall time; `reconcile` busy = the time tart-sync itself spent in the call, without waiting for \
Caddy):\n\n",
        opts.change_trials()
    ));
    s.push_str(&table(
        &[
            "TARTs",
            "`read_stamp` (GET `/id/tart-sync-rev`)",
            "`revision` + `diff` (in memory)",
            "`build_route` (`layout::route`)",
            "`write` (PATCH: serialize; Caddy reloads)",
            "`reconcile` (whole call)",
            "`reconcile` busy",
        ],
        &breakdown_rows,
    ));
    if let Some(f) = fleets.iter().max_by_key(|f| f.n) {
        let trials = if opts.smoke { 2 } else { 5 };
        progress!("{} TARTs: Caddy's reload cost by config shape", f.n);
        let rows = reload_shapes(f, trials).await?;
        s.push_str(&format!(
            "\nCaddy's own reload cost at {} TARTs, by config shape (forced reloads of identical content, \
`Cache-Control: must-revalidate`; medians of {trials}). Every change reloads the whole config, whatever the size of \
the write:\n\n",
            int(f.n as f64),
        ));
        s.push_str(&table(&["config", "size", "reload"], &rows));
    }
    report.sections.push(s);
    report.goal(
        "2. one route change at 10,000 TARTs applied by Caddy in ≤ 100 ms",
        goal_change.map_or("needs size 10000".into(), |v| format!("{} (median)", ms(v))),
        goal_change.map(|v| v <= 100.0),
    );
    let writes = if burst_writes_ok {
        "1 at every size"
    } else {
        "more than 1 (see table 2)"
    };
    report.goal(
        "2. exactly 1 Caddy write per burst of 100 changes",
        writes.into(),
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
    let (site_routes, server_routes) = site_paths(&full)?;
    // As installed, the route is the first of the server's routes, before the site.
    let mut without = full.clone();
    let first = routes_at(&mut without, &server_routes)?;
    if !first
        .first()
        .is_some_and(|r| r["@id"] == ids.route.as_str())
    {
        return Err(err("reload shapes: the route is not first in the server"));
    }
    first.remove(0);
    let mut inside = without.clone();
    routes_at(&mut inside, &site_routes)?.insert(0, route.clone());
    let all_mappings: Vec<&Value> = route["handle"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|h| h["mappings"].as_array())
        .flatten()
        .collect();
    let mut blob = without.clone();
    routes_at(&mut blob, &site_routes)?.insert(
        0,
        json!({
            "match": [{"path": ["/never-matches/*"]}],
            "handle": [{"handler": "static_response", "body": serde_json::to_string(&all_mappings)?}],
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
