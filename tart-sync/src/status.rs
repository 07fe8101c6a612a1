//! The status server: a read-only view of what tart-sync knows, for people
//! (an HTML page), for scripts (JSON), for Prometheus (`/metrics`) and for
//! orchestrators (`/healthz`, `/readyz`). Everything it serves is embedded in
//! the binary; it never changes anything.
//!
//! | path          | what |
//! |---------------|------|
//! | `GET /`           | HTML page, refreshes itself every 5 s, no JavaScript |
//! | `GET /api/status` | the same as JSON (shape below) |
//! | `GET /metrics`    | Prometheus text exposition format 0.0.4 |
//! | `GET /healthz`    | `200 ok` while the process runs |
//! | `GET /readyz`     | `200 ready` when every Caddy synced within 3 poll intervals, else `503` with the reason |
//!
//! # `/api/status`
//!
//! Times are RFC 3339 strings in UTC, or `null` when unknown.
//!
//! ```json
//! {
//!   "version": "0.1.0",
//!   "started": "2026-07-10T08:00:00Z",
//!   "domain": "tart.example.org",
//!   "mode": "path",
//!   "headscale": {
//!     "reachable": true,
//!     "last_success": "2026-07-10T08:15:05Z",
//!     "last_error": null,
//!     "nodes_seen": 3
//!   },
//!   "caddies": [{
//!     "address": "localhost:2019",
//!     "reachable": true,
//!     "last_sync": "2026-07-10T08:15:05Z",
//!     "last_outcome": "unchanged",
//!     "last_error": null,
//!     "routes": 2,
//!     "stream_close_delay": true
//!   }],
//!   "nodes": [{
//!     "name": "rhodes",
//!     "node_id": 12,
//!     "user": "tagged-devices",
//!     "url": "https://tart.example.org/rhodes/",
//!     "upstream": "100.64.0.12:80",
//!     "state": "online",
//!     "offline_since": null,
//!     "grace_until": null,
//!     "upstream_health": {"num_requests": 0, "fails": 0}
//!   }],
//!   "skipped": [{"node_id": 14, "name": "ops-laptop", "reason": "expired"}]
//! }
//! ```
//!
//! - `mode`: `path` (URLs `https://<domain>/<name>/`) or `host`
//!   (`https://<name>.<domain>/`).
//! - `caddies[].last_outcome`: `pending` (not tried yet), `unchanged`,
//!   `installed`, `updated`, `held` (a mass removal is being held back) or
//!   `error`. `stream_close_delay`: whether that Caddy keeps WebSockets open
//!   across reloads (`null` until known).
//! - `nodes`: every node that passes the filters and has a URL, sorted by
//!   name. `state`: `online`, `grace` (offline, but still proxied until
//!   `grace_until`) or `offline` (its URL answers 503; `offline_since` is
//!   headscale's `lastSeen`, `null` if never seen).
//! - `nodes[].upstream_health`: what Caddy's `/reverse_proxy/upstreams`
//!   reports for the node's dial address at the time of the request, summed
//!   over every Caddy that answered: `num_requests` in flight and recent
//!   passive-health-check `fails`; `null` when no Caddy lists that address.
//! - `tart_upstream`: Caddy's own entry for the upstream every TART route
//!   dials (`{http.vars.tart_sync_upstream}`): `{num_requests, fails}` for all
//!   TARTs together. Caddy lists a dynamically dialled upstream once, under its
//!   placeholder, so per-node `upstream_health` is `null` for tart-sync's own
//!   routes and only filled where Caddy lists the node's address (another
//!   route of the config dials it).
//! - `skipped`: nodes that pass the filters but get no URL, with the reason.
//!   `nodes` and `skipped` are empty until headscale was polled successfully.

use std::collections::HashMap;
use std::fmt::{self, Write as _};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use caddy_client::{Client, UpstreamStatus};
use serde::Serialize;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use tokio::sync::watch;

use crate::controller::{CaddyStatus, Context, HeadscaleStatus, LastOutcome, SyncState};
use crate::desired::{Entry, NodeState, Skipped};
use crate::layout::Ids;

/// How long the page waits for one Caddy's `/reverse_proxy/upstreams`.
const UPSTREAMS_TIMEOUT: Duration = Duration::from_secs(2);
/// The page reloads itself this often (seconds).
const REFRESH_SECONDS: u32 = 5;
/// Content type of the Prometheus text exposition format.
const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";
/// No scripts, no remote anything: only the inline stylesheet.
const CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// What every handler shares: the loop's context and one admin client per
/// configured Caddy (for its upstream health), built once.
#[derive(Clone)]
struct AppState {
    ctx: Arc<Context>,
    caddies: Arc<Vec<Option<Client>>>,
}

/// The status server's routes (see the module documentation).
///
/// Builds one admin API client per configured Caddy (2 s timeouts) to read
/// upstream health when a page is rendered; a Caddy whose client cannot be
/// built is simply shown without health.
pub fn router(ctx: Arc<Context>) -> Router {
    let caddies = ctx
        .settings
        .caddy
        .admin
        .iter()
        .map(|a| {
            Client::builder()
                .address(a)
                .timeout(UPSTREAMS_TIMEOUT)
                .connect_timeout(UPSTREAMS_TIMEOUT)
                .build()
                .map_err(|e| tracing::debug!(caddy = %a, error = %e, "no upstream health for this Caddy"))
                .ok()
        })
        .collect();
    let state = AppState {
        ctx,
        caddies: Arc::new(caddies),
    };
    Router::new()
        .route("/", get(index))
        .route("/api/status", get(api_status))
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .fallback(not_found)
        .with_state(state)
}

/// Serves [`router`] on `listener` until `shutdown` turns true (or its sender
/// is dropped), then finishes the requests in flight and returns.
pub async fn serve(
    ctx: Arc<Context>,
    listener: tokio::net::TcpListener,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    axum::serve(listener, router(ctx))
        .with_graceful_shutdown(async move {
            // An error means the sender is gone: the daemon is ending too.
            let _ = shutdown.wait_for(|stop| *stop).await;
        })
        .await
}

// ---------------------------------------------------------------------------
// The report: one snapshot + upstream health, shared by the page and the JSON.

/// `/api/status`'s document.
#[derive(Debug, Clone, Serialize)]
struct Report {
    version: &'static str,
    #[serde(with = "time::serde::rfc3339")]
    started: OffsetDateTime,
    domain: String,
    mode: &'static str,
    headscale: HeadscaleStatus,
    caddies: Vec<CaddyStatus>,
    nodes: Vec<NodeReport>,
    skipped: Vec<Skipped>,
    /// Caddy's entry for tart-sync's proxy upstream: every TART is dialled
    /// through one placeholder address, so Caddy reports in-flight requests and
    /// passive-health fails for all TARTs together (summed over the Caddies
    /// that answered); `null` when no Caddy lists it.
    tart_upstream: Option<UpstreamHealth>,
    /// Not serialized: whether a headscale poll has succeeded (else nodes are unknown).
    #[serde(skip)]
    polled: bool,
    /// Not serialized: whether any Caddy answered the upstreams query.
    #[serde(skip)]
    health_known: bool,
}

/// One routed node in [`Report`].
#[derive(Debug, Clone, Serialize)]
struct NodeReport {
    name: String,
    node_id: u64,
    user: String,
    url: String,
    upstream: String,
    state: NodeState,
    #[serde(with = "time::serde::rfc3339::option")]
    offline_since: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    grace_until: Option<OffsetDateTime>,
    upstream_health: Option<UpstreamHealth>,
}

/// Caddy's view of one upstream, summed over the Caddy instances that list it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
struct UpstreamHealth {
    num_requests: i64,
    fails: i64,
}

/// Upstream health by dial address; `None` when no Caddy answered.
type Health = Option<HashMap<String, UpstreamHealth>>;

/// Sums the upstream lists of the Caddy instances that answered.
fn merge_health(answers: &[Option<Vec<UpstreamStatus>>]) -> Health {
    let mut any = false;
    let mut out: HashMap<String, UpstreamHealth> = HashMap::new();
    for list in answers.iter().flatten() {
        any = true;
        for u in list {
            let h = out.entry(u.address.clone()).or_default();
            h.num_requests += u.num_requests;
            h.fails += u.fails;
        }
    }
    any.then_some(out)
}

/// Asks every Caddy for its upstreams, concurrently, each bounded by a timeout.
async fn fetch_health(caddies: &[Option<Client>]) -> Health {
    let mut tasks = tokio::task::JoinSet::new();
    for (i, client) in caddies.iter().enumerate() {
        if let Some(client) = client.clone() {
            tasks.spawn(async move {
                let answer = tokio::time::timeout(UPSTREAMS_TIMEOUT + Duration::from_millis(500), client.upstreams()).await;
                match answer {
                    Ok(Ok(list)) => (i, Some(list)),
                    Ok(Err(e)) => {
                        tracing::debug!(caddy = %client.address(), error = %e, "reading upstreams failed");
                        (i, None)
                    }
                    Err(_) => (i, None),
                }
            });
        }
    }
    let mut answers: Vec<Option<Vec<UpstreamStatus>>> = vec![None; caddies.len()];
    while let Some(done) = tasks.join_next().await {
        if let Ok((i, list)) = done {
            if let Some(slot) = answers.get_mut(i) {
                *slot = list;
            }
        }
    }
    merge_health(&answers)
}

fn build_report(ctx: &Context, state: SyncState, health: &Health) -> Report {
    let routes = &ctx.settings.routes;
    let polled = state.desired.is_some();
    let desired = state.desired.unwrap_or_default();
    let nodes = desired
        .entries
        .iter()
        .map(|e: &Entry| NodeReport {
            url: crate::layout::node_url(routes, &e.name),
            upstream_health: health.as_ref().and_then(|h| h.get(&e.upstream).copied()),
            name: e.name.clone(),
            node_id: e.node_id,
            user: e.user.clone(),
            upstream: e.upstream.clone(),
            state: e.state,
            offline_since: e.offline_since,
            grace_until: e.grace_until,
        })
        .collect();
    Report {
        version: env!("CARGO_PKG_VERSION"),
        started: ctx.started,
        domain: routes.domain.clone(),
        mode: routes.mode.as_str(),
        headscale: state.headscale,
        caddies: state.caddies,
        nodes,
        skipped: desired.skipped.clone(),
        tart_upstream: health.as_ref().and_then(|h| {
            h.get(&Ids::new(&routes.id_prefix).upstream_placeholder())
                .copied()
        }),
        polled,
        health_known: health.is_some(),
    }
}

async fn current_report(app: &AppState) -> Report {
    let health = fetch_health(&app.caddies).await;
    build_report(&app.ctx, app.ctx.snapshot(), &health)
}

// ---------------------------------------------------------------------------
// Handlers.

fn no_store(mut resp: Response) -> Response {
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp.headers_mut().insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    resp
}

fn text(status: StatusCode, body: String) -> Response {
    no_store(
        (
            status,
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=utf-8"),
            )],
            body,
        )
            .into_response(),
    )
}

async fn index(State(app): State<AppState>) -> Response {
    let report = current_report(&app).await;
    let page = render_page(&report, OffsetDateTime::now_utc());
    let mut resp = no_store(
        (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            )],
            page,
        )
            .into_response(),
    );
    resp.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    resp.headers_mut().insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    resp
}

async fn api_status(State(app): State<AppState>) -> Response {
    no_store(Json(current_report(&app).await).into_response())
}

async fn metrics(State(app): State<AppState>) -> Response {
    let body = render_metrics(&app.ctx);
    no_store(
        (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static(METRICS_CONTENT_TYPE),
            )],
            body,
        )
            .into_response(),
    )
}

async fn healthz() -> Response {
    text(StatusCode::OK, "ok\n".into())
}

async fn readyz(State(app): State<AppState>) -> Response {
    let window = app.ctx.settings.headscale.poll_interval.saturating_mul(3);
    if app.ctx.ready(window) {
        text(StatusCode::OK, "ready\n".into())
    } else {
        let reason = not_ready_reason(&app.ctx.snapshot(), window, OffsetDateTime::now_utc());
        text(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {reason}\n"),
        )
    }
}

async fn not_found() -> Response {
    text(
        StatusCode::NOT_FOUND,
        "not found (see /, /api/status, /metrics, /healthz, /readyz)\n".into(),
    )
}

/// Why [`Context::ready`] says no, in one line.
fn not_ready_reason(state: &SyncState, window: Duration, now: OffsetDateTime) -> String {
    if state.caddies.is_empty() {
        return "no Caddy is configured".into();
    }
    let mut reasons = Vec::new();
    for c in &state.caddies {
        if let Some(err) = &c.last_error {
            reasons.push(format!(
                "caddy {}: {}",
                one_line(&c.address, 100),
                one_line(err, 200)
            ));
            continue;
        }
        match c.last_sync {
            None => reasons.push(format!(
                "caddy {}: not synced yet",
                one_line(&c.address, 100)
            )),
            Some(t) if now - t > window => reasons.push(format!(
                "caddy {}: last synced {} ago (more than {})",
                one_line(&c.address, 100),
                short_duration((now - t).whole_seconds().unsigned_abs()),
                humantime::format_duration(window)
            )),
            Some(_) => {}
        }
    }
    if reasons.is_empty() {
        "not every Caddy is in sync yet".into()
    } else {
        reasons.join("; ")
    }
}

/// `s` on one line, cut to about `max` characters.
fn one_line(s: &str, max: usize) -> String {
    let flat: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if flat.chars().count() > max {
        let cut: String = flat.chars().take(max).collect();
        format!("{cut}…")
    } else {
        flat
    }
}

// ---------------------------------------------------------------------------
// Time formatting.

fn iso(t: OffsetDateTime) -> String {
    t.replace_nanosecond(0)
        .unwrap_or(t)
        .format(&Rfc3339)
        .unwrap_or_default()
}

/// `42s`, `5m`, `3h 12m`, `2d 4h`.
fn short_duration(secs: u64) -> String {
    match secs {
        0..60 => format!("{secs}s"),
        60..3600 => format!("{}m", secs / 60),
        3600..86400 => match (secs / 3600, secs % 3600 / 60) {
            (h, 0) => format!("{h}h"),
            (h, m) => format!("{h}h {m}m"),
        },
        _ => match (secs / 86400, secs % 86400 / 3600) {
            (d, 0) => format!("{d}d"),
            (d, h) => format!("{d}d {h}h"),
        },
    }
}

/// `3m ago`, `in 40s` or `just now`, relative to `now`.
fn relative(t: OffsetDateTime, now: OffsetDateTime) -> String {
    let secs = (now - t).whole_seconds();
    if secs == 0 {
        "just now".into()
    } else if secs > 0 {
        format!("{} ago", short_duration(secs.unsigned_abs()))
    } else {
        format!("in {}", short_duration(secs.unsigned_abs()))
    }
}

// ---------------------------------------------------------------------------
// HTML.

/// Escapes text for HTML element content and quoted attribute values.
fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A `<time>` element: relative text, the ISO time in `datetime` and `title`.
fn time_html(t: OffsetDateTime, now: OffsetDateTime) -> String {
    let iso = html_escape(&iso(t));
    format!(
        "<time datetime=\"{iso}\" title=\"{iso}\">{}</time>",
        html_escape(&relative(t, now))
    )
}

fn opt_time_html(t: Option<OffsetDateTime>, now: OffsetDateTime, none: &str) -> String {
    match t {
        Some(t) => time_html(t, now),
        None => format!("<span class=\"muted\">{}</span>", html_escape(none)),
    }
}

fn state_label(state: NodeState) -> &'static str {
    match state {
        NodeState::Online => "online",
        NodeState::Grace => "in grace",
        NodeState::Offline => "offline",
    }
}

fn badge(class: &str, label: &str) -> String {
    format!(
        "<span class=\"badge {}\">{}</span>",
        html_escape(class),
        html_escape(label)
    )
}

const STYLE: &str = r#"
:root{color-scheme:light dark;--fg:#1f2328;--muted:#59636e;--bg:#fff;--line:#d1d9e0;--card:#f6f8fa;--link:#0969da;
--ok:#116329;--okbg:#dafbe1;--warn:#7d4e00;--warnbg:#fff1c2;--bad:#a40e26;--badbg:#ffebe9}
@media (prefers-color-scheme:dark){:root{--fg:#e6edf3;--muted:#9198a1;--bg:#0d1117;--line:#3d444d;--card:#151b23;--link:#4493f8;
--ok:#56d364;--okbg:#12261e;--warn:#e3b341;--warnbg:#2e2410;--bad:#ff7b72;--badbg:#3a1a1f}}
*{box-sizing:border-box}
body{margin:0 auto;max-width:72rem;padding:1rem;font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:var(--fg);background:var(--bg)}
h1{font-size:1.35rem;margin:0 0 .2rem;overflow-wrap:anywhere}
h2{font-size:1.1rem;margin:1.6rem 0 .5rem}
h2 .muted{font-weight:400;font-size:.85rem}
a{color:var(--link)}
.muted{color:var(--muted)}
.meta{color:var(--muted);font-size:.85rem;margin:0}
code{font:.85em ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;overflow-wrap:anywhere}
.scroll{overflow-x:auto;-webkit-overflow-scrolling:touch}
table{border-collapse:collapse;width:100%}
th,td{text-align:left;padding:.4rem .6rem;border-bottom:1px solid var(--line);vertical-align:top}
th{font-size:.8rem;color:var(--muted);font-weight:600;white-space:nowrap}
td.num{text-align:right;font-variant-numeric:tabular-nums}
table.kv th{width:10rem;vertical-align:top}
.badge{display:inline-block;padding:.05rem .55rem;border-radius:1rem;font-size:.8rem;font-weight:600;white-space:nowrap}
.online,.ok{color:var(--ok);background:var(--okbg)}
.grace,.warn{color:var(--warn);background:var(--warnbg)}
.offline,.bad{color:var(--bad);background:var(--badbg)}
.fails{color:var(--bad);font-weight:600}
.error{color:var(--bad);overflow-wrap:anywhere}
.banner{padding:.6rem .8rem;border-radius:.4rem;margin:.8rem 0}
.banner ul{margin:.2rem 0 0;padding-left:1.2rem}
.empty{padding:.8rem;background:var(--card);border-radius:.4rem}
footer{margin:2rem 0 .5rem;color:var(--muted);font-size:.85rem}
@media (max-width:640px){
body{padding:.75rem}
table.stack thead{display:none}
table.stack tr{display:block;border:1px solid var(--line);border-radius:.5rem;margin:0 0 .6rem;padding:.2rem .6rem;background:var(--card)}
table.stack td{display:flex;justify-content:space-between;align-items:baseline;gap:1rem;border:0;padding:.2rem 0;text-align:right;min-width:0}
table.stack td::before{content:attr(data-label);color:var(--muted);font-size:.8rem;text-align:left;flex:none}
table.stack td.name{font-weight:600;font-size:1.05rem}
table.kv th{width:auto}
}
"#;

/// The whole page.
fn render_page(report: &Report, now: OffsetDateTime) -> String {
    let mut out = String::with_capacity(8192 + report.nodes.len() * 600);
    // Writing to a String cannot fail.
    let _ = write_page(&mut out, report, now);
    out
}

fn write_page(h: &mut String, r: &Report, now: OffsetDateTime) -> fmt::Result {
    let domain = html_escape(&r.domain);
    writeln!(
        h,
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">"
    )?;
    writeln!(
        h,
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
    )?;
    writeln!(
        h,
        "<meta http-equiv=\"refresh\" content=\"{REFRESH_SECONDS}\">"
    )?;
    writeln!(h, "<meta name=\"robots\" content=\"noindex\">")?;
    writeln!(
        h,
        "<title>tart-sync · {domain}</title>\n<style>{STYLE}</style>\n</head>\n<body>"
    )?;

    writeln!(h, "<header>\n<h1>TART routes on {domain}</h1>")?;
    writeln!(
        h,
        "<p class=\"meta\">tart-sync {} · {} mode · started {} · updated <time datetime=\"{}\">{}</time></p>\n</header>",
        html_escape(r.version),
        html_escape(r.mode),
        time_html(r.started, now),
        html_escape(&iso(now)),
        html_escape(&iso(now)),
    )?;

    write_banner(h, r)?;
    writeln!(h, "<main>")?;
    write_nodes(h, r, now)?;
    write_skipped(h, r)?;
    write_caddies(h, r, now)?;
    write_headscale(h, r, now)?;
    writeln!(h, "</main>")?;
    writeln!(
        h,
        "<footer>Refreshes every {REFRESH_SECONDS} s · <a href=\"/api/status\">JSON</a> · <a href=\"/metrics\">metrics</a> · <a href=\"/readyz\">readiness</a></footer>\n</body>\n</html>"
    )
}

/// A summary at the top: everything fine, or what is wrong.
fn write_banner(h: &mut String, r: &Report) -> fmt::Result {
    let mut problems = Vec::new();
    if !r.headscale.reachable {
        let why = r
            .headscale
            .last_error
            .as_deref()
            .unwrap_or("not polled yet");
        problems.push(format!("headscale: {}", html_escape(&one_line(why, 300))));
    }
    for c in &r.caddies {
        if let Some(err) = &c.last_error {
            problems.push(format!(
                "Caddy <code>{}</code>: {}",
                html_escape(&c.address),
                html_escape(&one_line(err, 300))
            ));
        } else if c.last_sync.is_none() {
            problems.push(format!(
                "Caddy <code>{}</code>: not synced yet",
                html_escape(&c.address)
            ));
        }
    }
    if problems.is_empty() {
        writeln!(
            h,
            "<div class=\"banner ok\" id=\"summary\" data-ok=\"true\">All in sync.</div>"
        )
    } else {
        writeln!(
            h,
            "<div class=\"banner bad\" id=\"summary\" data-ok=\"false\">Needs attention:<ul>"
        )?;
        for p in problems {
            writeln!(h, "<li>{p}</li>")?;
        }
        writeln!(h, "</ul></div>")
    }
}

fn write_nodes(h: &mut String, r: &Report, now: OffsetDateTime) -> fmt::Result {
    let count = |s: NodeState| r.nodes.iter().filter(|n| n.state == s).count();
    writeln!(
        h,
        "<section id=\"nodes\">\n<h2>Telescopes <span class=\"muted\">{} · {} online · {} in grace · {} offline</span></h2>",
        r.nodes.len(),
        count(NodeState::Online),
        count(NodeState::Grace),
        count(NodeState::Offline),
    )?;
    if r.nodes.is_empty() {
        let why = if r.polled {
            "No node passes the filters."
        } else {
            "headscale has not been polled successfully yet."
        };
        return writeln!(h, "<p class=\"empty\">{why}</p>\n</section>");
    }
    writeln!(h, "<div class=\"scroll\"><table class=\"stack\">")?;
    writeln!(
        h,
        "<thead><tr><th>Name</th><th>URL</th><th>Upstream</th><th>State</th><th>Since</th><th title=\"requests in flight, as Caddy reports\">In flight</th><th title=\"recent failures counted by Caddy's passive health checks\">Fails</th></tr></thead>\n<tbody>"
    )?;
    let no_health = if r.health_known {
        "Caddy lists no upstream with this address"
    } else {
        "no Caddy answered /reverse_proxy/upstreams"
    };
    for n in &r.nodes {
        let name = html_escape(&n.name);
        let url = html_escape(&n.url);
        let since = match n.state {
            NodeState::Online => "<span class=\"muted\">—</span>".to_string(),
            NodeState::Grace => format!(
                "offline {} · grace ends {}",
                opt_time_html(n.offline_since, now, "—"),
                opt_time_html(n.grace_until, now, "—")
            ),
            NodeState::Offline => opt_time_html(n.offline_since, now, "never seen"),
        };
        let (in_flight, fails) = match n.upstream_health {
            Some(u) => {
                let fails = if u.fails > 0 {
                    format!("<span class=\"fails\">{}</span>", u.fails)
                } else {
                    u.fails.to_string()
                };
                (u.num_requests.to_string(), fails)
            }
            None => {
                let dash = format!("<span class=\"muted\" title=\"{no_health}\">—</span>");
                (dash.clone(), dash)
            }
        };
        writeln!(
            h,
            "<tr class=\"node\" data-name=\"{name}\" data-state=\"{state}\" data-node-id=\"{id}\">\
<td class=\"name\" data-label=\"Name\" title=\"node {id}, user {user}\">{name}</td>\
<td data-label=\"URL\"><a href=\"{url}\">{url}</a></td>\
<td data-label=\"Upstream\"><code>{upstream}</code></td>\
<td data-label=\"State\">{badge}</td>\
<td data-label=\"Since\">{since}</td>\
<td class=\"num\" data-label=\"In flight\">{in_flight}</td>\
<td class=\"num\" data-label=\"Fails\">{fails}</td></tr>",
            state = n.state.as_str(),
            id = n.node_id,
            user = html_escape(&n.user),
            upstream = html_escape(&n.upstream),
            badge = badge(n.state.as_str(), state_label(n.state)),
        )?;
    }
    writeln!(h, "</tbody></table></div>\n</section>")
}

fn write_skipped(h: &mut String, r: &Report) -> fmt::Result {
    if r.skipped.is_empty() {
        return Ok(());
    }
    let n = r.skipped.len();
    let what = if n == 1 {
        "node passes the filters but gets"
    } else {
        "nodes pass the filters but get"
    };
    writeln!(h, "<section id=\"skipped\">\n<h2>Without a URL <span class=\"muted\">{n} {what} no route</span></h2>")?;
    writeln!(h, "<div class=\"scroll\"><table class=\"stack\">\n<thead><tr><th>Node</th><th>Name</th><th>Reason</th></tr></thead>\n<tbody>")?;
    for s in &r.skipped {
        writeln!(
            h,
            "<tr class=\"skipped\" data-node-id=\"{id}\"><td data-label=\"Node\">{id}</td><td data-label=\"Name\">{name}</td><td data-label=\"Reason\">{reason}</td></tr>",
            id = s.node_id,
            name = html_escape(&s.name),
            reason = html_escape(&s.reason),
        )?;
    }
    writeln!(h, "</tbody></table></div>\n</section>")
}

fn write_caddies(h: &mut String, r: &Report, now: OffsetDateTime) -> fmt::Result {
    writeln!(
        h,
        "<section id=\"caddies\">\n<h2>Caddy</h2>\n<div class=\"scroll\"><table class=\"stack\">"
    )?;
    writeln!(
        h,
        "<thead><tr><th>Admin address</th><th>Reachable</th><th>Last sync</th><th>Last outcome</th><th>Routes</th><th title=\"WebSockets stay open across config reloads (stream_close_delay)\">WebSockets kept</th><th>Last error</th></tr></thead>\n<tbody>"
    )?;
    for c in &r.caddies {
        let reachable = if c.last_outcome == LastOutcome::Pending {
            badge("warn", "not tried yet")
        } else if c.reachable {
            badge("ok", "reachable")
        } else {
            badge("bad", "unreachable")
        };
        let ws = match c.stream_close_delay {
            Some(true) => "yes",
            Some(false) => "no (Caddy too old)",
            None => "unknown yet",
        };
        let error = match &c.last_error {
            Some(e) => format!("<span class=\"error\">{}</span>", html_escape(e)),
            None => "<span class=\"muted\">—</span>".into(),
        };
        writeln!(
            h,
            "<tr class=\"caddy\" data-address=\"{addr}\" data-reachable=\"{reach}\" data-outcome=\"{outcome}\">\
<td data-label=\"Admin address\"><code>{addr}</code></td>\
<td data-label=\"Reachable\">{reachable}</td>\
<td data-label=\"Last sync\">{sync}</td>\
<td data-label=\"Last outcome\">{outcome}</td>\
<td class=\"num\" data-label=\"Routes\">{routes}</td>\
<td data-label=\"WebSockets kept\">{ws}</td>\
<td data-label=\"Last error\">{error}</td></tr>",
            addr = html_escape(&c.address),
            reach = c.reachable,
            outcome = c.last_outcome.as_str(),
            sync = opt_time_html(c.last_sync, now, "never"),
            routes = c.routes,
        )?;
    }
    writeln!(h, "</tbody></table></div>")?;
    if let Some(t) = r.tart_upstream {
        writeln!(
            h,
            "<p id=\"tart-upstream\" data-in-flight=\"{}\" data-fails=\"{}\">Through tart-sync's routes, as Caddy reports it: <b>{}</b> requests in flight, <b>{}</b> recent failures (Caddy lists all TARTs as one dynamic upstream).</p>",
            t.num_requests, t.fails, t.num_requests, t.fails
        )?;
    }
    writeln!(h, "</section>")
}

fn write_headscale(h: &mut String, r: &Report, now: OffsetDateTime) -> fmt::Result {
    let hs = &r.headscale;
    let reachable = match (
        hs.reachable,
        hs.last_success.is_some() || hs.last_error.is_some(),
    ) {
        (true, _) => badge("ok", "reachable"),
        (false, true) => badge("bad", "unreachable"),
        (false, false) => badge("warn", "not polled yet"),
    };
    let error = match &hs.last_error {
        Some(e) => format!("<span class=\"error\">{}</span>", html_escape(e)),
        None => "<span class=\"muted\">—</span>".into(),
    };
    writeln!(
        h,
        "<section id=\"headscale\" data-reachable=\"{}\">\n<h2>headscale</h2>\n<table class=\"kv\"><tbody>\
<tr><th>Reachable</th><td>{reachable}</td></tr>\
<tr><th>Last success</th><td>{}</td></tr>\
<tr><th>Nodes seen</th><td>{}</td></tr>\
<tr><th>Last error</th><td>{error}</td></tr>\
</tbody></table>\n</section>",
        hs.reachable,
        opt_time_html(hs.last_success, now, "never"),
        hs.nodes_seen,
    )
}

// ---------------------------------------------------------------------------
// Prometheus.

/// Escapes a label value: `\` → `\\`, `"` → `\"`, newline → `\n`.
fn label_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// A sample value as Prometheus parses it.
fn prom_float(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        }
    } else {
        format!("{v}")
    }
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) -> fmt::Result {
    writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}")
}

/// The `/metrics` text.
fn render_metrics(ctx: &Context) -> String {
    let mut out = String::with_capacity(4096);
    // Writing to a String cannot fail.
    let _ = write_metrics(&mut out, ctx);
    out
}

fn write_metrics(out: &mut String, ctx: &Context) -> fmt::Result {
    let m = ctx
        .metrics
        .lock()
        .map(|g| g.clone())
        .unwrap_or_else(|p| p.into_inner().clone());
    let state = ctx.snapshot();

    family(
        out,
        "tart_sync_cycles_total",
        "counter",
        "Reconcile cycles run, summed over every Caddy.",
    )?;
    writeln!(out, "tart_sync_cycles_total {}", m.cycles)?;

    family(
        out,
        "tart_sync_cycle_duration_seconds",
        "summary",
        "Time spent in reconcile cycles.",
    )?;
    writeln!(
        out,
        "tart_sync_cycle_duration_seconds_sum {}",
        prom_float(m.cycle_seconds_sum)
    )?;
    writeln!(out, "tart_sync_cycle_duration_seconds_count {}", m.cycles)?;

    family(
        out,
        "tart_sync_caddy_writes_total",
        "counter",
        "Config writes sent to Caddy (installs and updates).",
    )?;
    writeln!(out, "tart_sync_caddy_writes_total {}", m.caddy_writes)?;

    family(out, "tart_sync_errors_total", "counter", "Errors by kind.")?;
    for (kind, n) in &m.errors {
        writeln!(
            out,
            "tart_sync_errors_total{{kind=\"{}\"}} {n}",
            label_escape(kind)
        )?;
    }

    let (routed, skipped) = match &state.desired {
        Some(d) => (d.entries.as_slice(), d.skipped.len()),
        None => (&[][..], 0),
    };
    let count = |s: NodeState| routed.iter().filter(|e| e.state == s).count();
    family(
        out,
        "tart_sync_nodes",
        "gauge",
        "Nodes in the last headscale answer (seen), with a route (routed), by route state, and passing the filters without a route (skipped).",
    )?;
    for (label, n) in [
        ("seen", state.headscale.nodes_seen),
        ("routed", routed.len()),
        ("online", count(NodeState::Online)),
        ("grace", count(NodeState::Grace)),
        ("offline", count(NodeState::Offline)),
        ("skipped", skipped),
    ] {
        writeln!(out, "tart_sync_nodes{{state=\"{label}\"}} {n}")?;
    }

    family(
        out,
        "tart_sync_last_sync_timestamp_seconds",
        "gauge",
        "Unix time when each Caddy last matched the desired routes.",
    )?;
    for (addr, t) in &m.last_sync_unix {
        writeln!(
            out,
            "tart_sync_last_sync_timestamp_seconds{{caddy=\"{}\"}} {}",
            label_escape(addr),
            prom_float(*t)
        )?;
    }

    family(
        out,
        "tart_sync_caddy_up",
        "gauge",
        "1 when the last reconcile reached this Caddy's admin API.",
    )?;
    for c in &state.caddies {
        writeln!(
            out,
            "tart_sync_caddy_up{{caddy=\"{}\"}} {}",
            label_escape(&c.address),
            u8::from(c.reachable)
        )?;
    }

    family(
        out,
        "tart_sync_headscale_up",
        "gauge",
        "1 when the last headscale poll succeeded.",
    )?;
    writeln!(
        out,
        "tart_sync_headscale_up {}",
        u8::from(state.headscale.reachable)
    )?;

    family(
        out,
        "tart_sync_headscale_poll_duration_seconds",
        "summary",
        "Time spent polling headscale's node list.",
    )?;
    writeln!(
        out,
        "tart_sync_headscale_poll_duration_seconds_sum {}",
        prom_float(m.headscale_poll_seconds_sum)
    )?;
    writeln!(
        out,
        "tart_sync_headscale_poll_duration_seconds_count {}",
        m.headscale_polls
    )?;

    family(
        out,
        "tart_sync_headscale_poll_last_duration_seconds",
        "gauge",
        "Duration of the last headscale poll.",
    )?;
    writeln!(
        out,
        "tart_sync_headscale_poll_last_duration_seconds {}",
        prom_float(m.headscale_poll_seconds_last)
    )?;
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use std::collections::BTreeSet;

    use serde_json::Value;
    use time::macros::datetime;

    use super::*;
    use crate::config::Settings;
    use crate::controller::MetricsData;
    use crate::desired::Desired;

    const HOSTILE: &str = "<script>alert(\"x&y\")</script>'";

    fn settings(admin: &str, mode: &str) -> Settings {
        let toml = format!(
            "[headscale]\nurl = \"http://127.0.0.1:1\"\napi_key = \"hskey-api-test\"\npoll_interval = \"1s\"\n\
             [caddy]\nadmin = [\"{admin}\"]\n[routes]\ndomain = \"tart.example.org\"\nmode = \"{mode}\"\n"
        );
        Settings::from_sources(Some(&toml), &|_: &str| None, None).unwrap()
    }

    fn entry(name: &str, id: u64, state: NodeState, now: OffsetDateTime) -> Entry {
        let (offline_since, grace_until) = match state {
            NodeState::Online => (None, None),
            NodeState::Grace => (
                Some(now - time::Duration::seconds(20)),
                Some(now + time::Duration::seconds(40)),
            ),
            NodeState::Offline => (Some(now - time::Duration::minutes(3)), None),
        };
        Entry {
            name: name.into(),
            node_id: id,
            user: "tagged-devices".into(),
            upstream: format!("100.64.0.{id}:80"),
            state,
            offline_since,
            grace_until,
        }
    }

    /// rhodes online, karoo in grace, meerkat offline; one skipped hostile node.
    fn fleet_state(ctx: &Context, now: OffsetDateTime) -> SyncState {
        let mut state = ctx.snapshot();
        state.headscale = HeadscaleStatus {
            reachable: true,
            last_success: Some(now),
            last_error: None,
            nodes_seen: 5,
        };
        state.desired = Some(Arc::new(Desired {
            entries: vec![
                entry("karoo", 13, NodeState::Grace, now),
                entry("meerkat", 15, NodeState::Offline, now),
                entry("rhodes", 12, NodeState::Online, now),
            ],
            skipped: vec![Skipped {
                node_id: 14,
                name: HOSTILE.into(),
                reason: format!("givenName {HOSTILE:?} is not a DNS label"),
            }],
        }));
        for c in &mut state.caddies {
            c.reachable = true;
            c.last_sync = Some(now);
            c.last_outcome = LastOutcome::Unchanged;
            c.routes = 3;
            c.stream_close_delay = Some(true);
        }
        state
    }

    fn set_state(ctx: &Context, state: SyncState) {
        *ctx.state.write().unwrap() = state;
    }

    /// The `<tr class="node" ...>` openings: (name, state).
    fn node_rows(html: &str) -> Vec<(String, String)> {
        html.match_indices("<tr class=\"node\"")
            .map(|(i, _)| {
                let tag = &html[i..i + html[i..].find('>').unwrap()];
                let attr = |a: &str| {
                    let start = tag.find(&format!("{a}=\"")).unwrap() + a.len() + 2;
                    tag[start..start + tag[start..].find('"').unwrap()].to_string()
                };
                (attr("data-name"), attr("data-state"))
            })
            .collect()
    }

    struct Server {
        base: String,
        stop: watch::Sender<bool>,
        task: tokio::task::JoinHandle<std::io::Result<()>>,
    }

    impl Server {
        async fn start(ctx: Arc<Context>) -> Server {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let base = format!("http://{}", listener.local_addr().unwrap());
            let (stop, rx) = watch::channel(false);
            let task = tokio::spawn(serve(ctx, listener, rx));
            Server { base, stop, task }
        }

        async fn get(&self, path: &str) -> (StatusCode, String, String) {
            let resp = reqwest::get(format!("{}{path}", self.base)).await.unwrap();
            let status = StatusCode::from_u16(resp.status().as_u16()).unwrap();
            let ctype = resp
                .headers()
                .get("content-type")
                .map(|v| v.to_str().unwrap().to_string())
                .unwrap_or_default();
            (status, ctype, resp.text().await.unwrap())
        }

        async fn shutdown(self) {
            self.stop.send_replace(true);
            tokio::time::timeout(Duration::from_secs(5), self.task)
                .await
                .expect("graceful shutdown")
                .unwrap()
                .unwrap();
        }
    }

    /// A stand-in for Caddy's admin API answering `/reverse_proxy/upstreams`.
    async fn fake_caddy(upstreams: Value) -> (String, tokio::task::JoinHandle<()>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let app = Router::new().route(
            "/reverse_proxy/upstreams",
            get(move || {
                let upstreams = upstreams.clone();
                async move { Json(upstreams) }
            }),
        );
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        (addr, task)
    }

    #[test]
    fn escapes_html() {
        assert_eq!(
            html_escape("<a href=\"x\">'&'</a>"),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
        assert_eq!(html_escape("rhodes"), "rhodes");
    }

    #[test]
    fn relative_times() {
        let now = datetime!(2026-07-10 08:15:00 UTC);
        assert_eq!(relative(now - time::Duration::minutes(3), now), "3m ago");
        assert_eq!(relative(now + time::Duration::seconds(40), now), "in 40s");
        assert_eq!(relative(now, now), "just now");
        assert_eq!(
            relative(now - time::Duration::minutes(192), now),
            "3h 12m ago"
        );
        assert_eq!(relative(now - time::Duration::days(2), now), "2d ago");
        assert_eq!(
            iso(datetime!(2026-07-10 08:15:02.123 UTC)),
            "2026-07-10T08:15:02Z"
        );
    }

    #[test]
    fn page_lists_nodes_with_states_urls_and_times() {
        let now = datetime!(2026-07-10 08:15:00 UTC);
        let ctx = Context::new(settings("127.0.0.1:1", "path"));
        let health: Health = Some(HashMap::from([(
            "100.64.0.12:80".to_string(),
            UpstreamHealth {
                num_requests: 2,
                fails: 1,
            },
        )]));
        let report = build_report(&ctx, fleet_state(&ctx, now), &health);
        let html = render_page(&report, now);

        assert!(html.starts_with("<!doctype html>"));
        assert!(html.contains("<meta http-equiv=\"refresh\" content=\"5\">"));
        assert!(html.contains("<meta name=\"viewport\""));
        assert!(!html.contains("<script"), "no scripts at all");
        assert!(
            !html.contains("src=") && !html.contains("<link"),
            "no external assets"
        );

        assert_eq!(
            node_rows(&html),
            [
                ("karoo".into(), "grace".into()),
                ("meerkat".into(), "offline".into()),
                ("rhodes".into(), "online".into())
            ]
        );
        assert!(html.contains(
            "<a href=\"https://tart.example.org/rhodes/\">https://tart.example.org/rhodes/</a>"
        ));
        assert!(html.contains("<code>100.64.0.12:80</code>"));
        // Colour-coded badges that also say it in words.
        assert!(html.contains("<span class=\"badge online\">online</span>"));
        assert!(html.contains("<span class=\"badge grace\">in grace</span>"));
        assert!(html.contains("<span class=\"badge offline\">offline</span>"));
        // Relative times with the ISO time in a title.
        assert!(html.contains(
            "<time datetime=\"2026-07-10T08:12:00Z\" title=\"2026-07-10T08:12:00Z\">3m ago</time>"
        ));
        assert!(html.contains("title=\"2026-07-10T08:15:40Z\">in 40s</time>"));
        // Health: rhodes has Caddy's numbers, the others a dash.
        let rhodes = &html[html.find("data-name=\"rhodes\"").unwrap()..];
        let rhodes = &rhodes[..rhodes.find("</tr>").unwrap()];
        assert!(
            rhodes.contains("data-label=\"In flight\">2</td>"),
            "{rhodes}"
        );
        assert!(
            rhodes.contains("<span class=\"fails\">1</span>"),
            "{rhodes}"
        );
        let karoo = &html[html.find("data-name=\"karoo\"").unwrap()..];
        let karoo = &karoo[..karoo.find("</tr>").unwrap()];
        assert!(
            karoo.contains("Caddy lists no upstream with this address\">—</span>"),
            "{karoo}"
        );

        // Caddy and headscale sections.
        assert!(html.contains("<tr class=\"caddy\" data-address=\"127.0.0.1:1\" data-reachable=\"true\" data-outcome=\"unchanged\">"));
        assert!(html.contains("<section id=\"headscale\" data-reachable=\"true\">"));
        assert!(html.contains("id=\"summary\" data-ok=\"true\""));
        // The skipped node, in its own table.
        assert!(html.contains("<tr class=\"skipped\" data-node-id=\"14\">"));
    }

    #[test]
    fn host_mode_urls() {
        let now = OffsetDateTime::now_utc();
        let ctx = Context::new(settings("127.0.0.1:1", "host"));
        let report = build_report(&ctx, fleet_state(&ctx, now), &None);
        assert_eq!(report.nodes[2].url, "https://rhodes.tart.example.org/");
        let html = render_page(&report, now);
        assert!(html.contains("href=\"https://rhodes.tart.example.org/\""));
        assert!(html.contains("no Caddy answered /reverse_proxy/upstreams"));
    }

    #[test]
    fn page_escapes_every_dynamic_string() {
        let now = OffsetDateTime::now_utc();
        let ctx = Context::new(settings("127.0.0.1:1", "path"));
        let mut state = fleet_state(&ctx, now);
        let desired = Arc::make_mut(state.desired.as_mut().unwrap());
        let mut evil = entry("x", 99, NodeState::Online, now);
        evil.name = format!("evil\"{HOSTILE}");
        evil.user = HOSTILE.into();
        evil.upstream = HOSTILE.into();
        desired.entries.push(evil);
        state.headscale.reachable = false;
        state.headscale.last_error = Some(HOSTILE.into());
        state.caddies[0].last_error = Some(HOSTILE.into());
        let html = render_page(&build_report(&ctx, state, &None), now);

        assert!(!html.contains("<script"), "{html}");
        assert!(!html.contains("alert(\""), "quotes must be escaped");
        assert!(html.contains("&lt;script&gt;alert(&quot;x&amp;y&quot;)&lt;/script&gt;&#39;"));
        // The attribute stays one attribute.
        assert!(html.contains("data-name=\"evil&quot;&lt;script&gt;"));
        assert!(html.contains("id=\"summary\" data-ok=\"false\""));
    }

    #[test]
    fn empty_page_before_the_first_poll() {
        let ctx = Context::new(settings("127.0.0.1:1", "path"));
        let html = render_page(
            &build_report(&ctx, ctx.snapshot(), &None),
            OffsetDateTime::now_utc(),
        );
        assert!(node_rows(&html).is_empty());
        assert!(html.contains("headscale has not been polled successfully yet."));
        assert!(html.contains("not tried yet"));
        assert!(html.contains("not polled yet"));
    }

    #[test]
    fn health_is_summed_over_caddies_that_answered() {
        let up = |a: &str, n, f| UpstreamStatus {
            address: a.into(),
            num_requests: n,
            fails: f,
            ..Default::default()
        };
        assert_eq!(merge_health(&[None, None]), None);
        let h = merge_health(&[
            Some(vec![up("a:80", 1, 0)]),
            None,
            Some(vec![up("a:80", 2, 3), up("b:80", 0, 0)]),
        ])
        .unwrap();
        assert_eq!(
            h["a:80"],
            UpstreamHealth {
                num_requests: 3,
                fails: 3
            }
        );
        assert_eq!(h["b:80"], UpstreamHealth::default());
        assert_eq!(merge_health(&[Some(vec![])]), Some(HashMap::new()));
    }

    #[tokio::test]
    async fn json_shape_with_health_from_caddy() {
        let (admin, caddy) = fake_caddy(serde_json::json!([
            {"address": "100.64.0.12:80", "num_requests": 4, "fails": 0},
            {"address": "{http.vars.tart_sync_upstream}", "num_requests": 7, "fails": 2}
        ]))
        .await;
        let ctx = Context::new(settings(&admin, "path"));
        let now = OffsetDateTime::now_utc();
        set_state(&ctx, fleet_state(&ctx, now));
        let server = Server::start(ctx).await;

        let (status, ctype, body) = server.get("/api/status").await;
        assert_eq!(status, StatusCode::OK);
        assert!(ctype.starts_with("application/json"), "{ctype}");
        let v: Value = serde_json::from_str(&body).unwrap();
        let keys = |v: &Value| {
            v.as_object()
                .unwrap()
                .keys()
                .cloned()
                .collect::<BTreeSet<_>>()
        };
        let set = |k: &[&str]| k.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
        assert_eq!(
            keys(&v),
            set(&[
                "version",
                "started",
                "domain",
                "mode",
                "headscale",
                "caddies",
                "nodes",
                "skipped",
                "tart_upstream"
            ])
        );
        assert_eq!(v["version"], env!("CARGO_PKG_VERSION"));
        assert!(time::OffsetDateTime::parse(v["started"].as_str().unwrap(), &Rfc3339).is_ok());
        assert_eq!(v["domain"], "tart.example.org");
        assert_eq!(v["mode"], "path");
        assert_eq!(
            v["tart_upstream"],
            serde_json::json!({"num_requests": 7, "fails": 2})
        );
        let (_, _, page) = server.get("/").await;
        assert!(
            page.contains("data-in-flight=\"7\" data-fails=\"2\""),
            "{page}"
        );
        assert_eq!(
            keys(&v["headscale"]),
            set(&["reachable", "last_success", "last_error", "nodes_seen"])
        );
        assert_eq!(v["headscale"]["nodes_seen"], 5);
        assert_eq!(
            keys(&v["caddies"][0]),
            set(&[
                "address",
                "reachable",
                "last_sync",
                "last_outcome",
                "last_error",
                "routes",
                "stream_close_delay"
            ])
        );
        assert_eq!(v["caddies"][0]["address"], admin.as_str());
        assert_eq!(v["caddies"][0]["stream_close_delay"], true);

        let nodes = v["nodes"].as_array().unwrap();
        assert_eq!(nodes.len(), 3);
        assert_eq!(
            keys(&nodes[0]),
            set(&[
                "name",
                "node_id",
                "user",
                "url",
                "upstream",
                "state",
                "offline_since",
                "grace_until",
                "upstream_health"
            ])
        );
        let by_name = |n: &str| nodes.iter().find(|x| x["name"] == n).unwrap();
        let rhodes = by_name("rhodes");
        assert_eq!(rhodes["state"], "online");
        assert_eq!(rhodes["url"], "https://tart.example.org/rhodes/");
        assert_eq!(rhodes["upstream"], "100.64.0.12:80");
        assert_eq!(rhodes["node_id"], 12);
        assert_eq!(
            rhodes["upstream_health"],
            serde_json::json!({"num_requests": 4, "fails": 0})
        );
        assert_eq!(rhodes["offline_since"], Value::Null);
        let karoo = by_name("karoo");
        assert_eq!(karoo["state"], "grace");
        assert!(karoo["grace_until"].is_string() && karoo["offline_since"].is_string());
        assert_eq!(karoo["upstream_health"], Value::Null);
        assert_eq!(by_name("meerkat")["state"], "offline");
        assert_eq!(v["skipped"][0]["node_id"], 14);
        assert_eq!(v["skipped"][0]["name"], HOSTILE);
        assert!(v["skipped"][0]["reason"].is_string());

        // The page gets the same health.
        let (status, ctype, html) = server.get("/").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(ctype, "text/html; charset=utf-8");
        let rhodes = &html[html.find("data-name=\"rhodes\"").unwrap()..];
        assert!(rhodes[..rhodes.find("</tr>").unwrap()].contains("data-label=\"In flight\">4</td>"));

        server.shutdown().await;
        caddy.abort();
    }

    #[tokio::test]
    async fn unreachable_caddy_still_renders() {
        let ctx = Context::new(settings("127.0.0.1:1", "path"));
        set_state(&ctx, fleet_state(&ctx, OffsetDateTime::now_utc()));
        let server = Server::start(ctx).await;
        let started = std::time::Instant::now();
        let (status, _, body) = server.get("/api/status").await;
        assert_eq!(status, StatusCode::OK);
        assert!(started.elapsed() < Duration::from_secs(5));
        let v: Value = serde_json::from_str(&body).unwrap();
        assert!(v["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .all(|n| n["upstream_health"].is_null()));
        let (status, _, body) = server.get("/nope").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert!(body.contains("/api/status"));
        server.shutdown().await;
    }

    /// One parsed sample line: name, labels, value.
    type Sample = (String, Vec<(String, String)>, f64);

    fn parse_metrics(text: &str) -> (Vec<Sample>, HashMap<String, String>, BTreeSet<String>) {
        let mut samples = Vec::new();
        let mut types = HashMap::new();
        let mut helps = BTreeSet::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').unwrap();
                assert!(
                    types.insert(name.to_string(), kind.to_string()).is_none(),
                    "duplicate TYPE {name}"
                );
                continue;
            }
            if let Some(rest) = line.strip_prefix("# HELP ") {
                helps.insert(rest.split_once(' ').unwrap().0.to_string());
                continue;
            }
            assert!(
                !line.starts_with('#') && !line.is_empty(),
                "unexpected line {line:?}"
            );
            let (series, value) = line.rsplit_once(' ').unwrap();
            let value: f64 = value
                .parse()
                .unwrap_or_else(|_| panic!("bad value in {line:?}"));
            let (name, labels) = match series.split_once('{') {
                None => (series.to_string(), Vec::new()),
                Some((name, rest)) => {
                    let body = rest.strip_suffix('}').unwrap();
                    // Parse k="v" pairs with escapes.
                    let mut labels = Vec::new();
                    let mut chars = body.chars().peekable();
                    while chars.peek().is_some() {
                        let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
                        assert_eq!(chars.next(), Some('"'));
                        let mut val = String::new();
                        while let Some(c) = chars.next() {
                            match c {
                                '\\' => match chars.next() {
                                    Some('n') => val.push('\n'),
                                    Some(c @ ('\\' | '"')) => val.push(c),
                                    other => panic!("bad escape {other:?} in {line:?}"),
                                },
                                '"' => break,
                                c => val.push(c),
                            }
                        }
                        labels.push((key, val));
                        if chars.peek() == Some(&',') {
                            chars.next();
                        }
                    }
                    (name.to_string(), labels)
                }
            };
            assert!(
                name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
                "{name}"
            );
            samples.push((name, labels, value));
        }
        (samples, types, helps)
    }

    #[tokio::test]
    async fn metrics_text() {
        let weird = "unix//run/ca\"d\\dy\nadmin.sock";
        let ctx = Context::new(settings("127.0.0.1:1", "path"));
        let now = OffsetDateTime::now_utc();
        let mut state = fleet_state(&ctx, now);
        state.caddies.push(CaddyStatus {
            address: weird.into(),
            reachable: false,
            last_outcome: LastOutcome::Error,
            ..Default::default()
        });
        set_state(&ctx, state);
        *ctx.metrics.lock().unwrap() = MetricsData {
            cycles: 7,
            cycle_seconds_sum: 0.25,
            caddy_writes: 2,
            errors: [
                ("caddy_unreachable".to_string(), 3),
                ("headscale".to_string(), 1),
            ]
            .into(),
            headscale_polls: 9,
            headscale_poll_seconds_sum: 0.5,
            headscale_poll_seconds_last: 0.0625,
            last_sync_unix: [("127.0.0.1:1".to_string(), 1_752_134_102.5)].into(),
        };
        let server = Server::start(ctx).await;
        let (status, ctype, text) = server.get("/metrics").await;
        server.shutdown().await;
        assert_eq!(status, StatusCode::OK);
        assert!(ctype.starts_with("text/plain; version=0.0.4"), "{ctype}");

        let (samples, types, helps) = parse_metrics(&text);
        let value = |name: &str, labels: &[(&str, &str)]| {
            samples
                .iter()
                .find(|(n, l, _)| {
                    n == name
                        && l.iter()
                            .map(|(k, v)| (k.as_str(), v.as_str()))
                            .eq(labels.iter().copied())
                })
                .unwrap_or_else(|| panic!("no {name}{labels:?} in\n{text}"))
                .2
        };
        assert_eq!(value("tart_sync_cycles_total", &[]), 7.0);
        assert_eq!(value("tart_sync_cycle_duration_seconds_sum", &[]), 0.25);
        assert_eq!(value("tart_sync_cycle_duration_seconds_count", &[]), 7.0);
        assert_eq!(value("tart_sync_caddy_writes_total", &[]), 2.0);
        assert_eq!(
            value("tart_sync_errors_total", &[("kind", "caddy_unreachable")]),
            3.0
        );
        assert_eq!(
            value("tart_sync_errors_total", &[("kind", "headscale")]),
            1.0
        );
        for (state, n) in [
            ("seen", 5.0),
            ("routed", 3.0),
            ("online", 1.0),
            ("grace", 1.0),
            ("offline", 1.0),
            ("skipped", 1.0),
        ] {
            assert_eq!(value("tart_sync_nodes", &[("state", state)]), n, "{state}");
        }
        assert_eq!(
            value(
                "tart_sync_last_sync_timestamp_seconds",
                &[("caddy", "127.0.0.1:1")]
            ),
            1_752_134_102.5
        );
        assert_eq!(
            value("tart_sync_caddy_up", &[("caddy", "127.0.0.1:1")]),
            1.0
        );
        assert_eq!(
            value("tart_sync_caddy_up", &[("caddy", weird)]),
            0.0,
            "label escaping round-trips"
        );
        assert!(
            text.contains(r#"caddy="unix//run/ca\"d\\dy\nadmin.sock""#),
            "{text}"
        );
        assert_eq!(value("tart_sync_headscale_up", &[]), 1.0);
        assert_eq!(
            value("tart_sync_headscale_poll_duration_seconds_sum", &[]),
            0.5
        );
        assert_eq!(
            value("tart_sync_headscale_poll_duration_seconds_count", &[]),
            9.0
        );
        assert_eq!(
            value("tart_sync_headscale_poll_last_duration_seconds", &[]),
            0.0625
        );

        // Every sample belongs to a family with HELP and TYPE.
        for (name, _, _) in &samples {
            let family = ["_sum", "_count"]
                .iter()
                .find_map(|s| {
                    name.strip_suffix(s)
                        .filter(|f| types.get(*f).is_some_and(|t| t == "summary"))
                })
                .unwrap_or(name);
            assert!(
                types.contains_key(family) && helps.contains(family),
                "{name} has no HELP/TYPE"
            );
        }
        assert_eq!(types["tart_sync_cycles_total"], "counter");
        assert_eq!(types["tart_sync_nodes"], "gauge");
        assert_eq!(types["tart_sync_cycle_duration_seconds"], "summary");
    }

    #[test]
    fn prom_floats() {
        assert_eq!(prom_float(0.0), "0");
        assert_eq!(prom_float(1.5), "1.5");
        assert_eq!(prom_float(f64::NAN), "NaN");
        assert_eq!(prom_float(f64::INFINITY), "+Inf");
        assert_eq!(label_escape("a\\b\"c\nd"), "a\\\\b\\\"c\\nd");
    }

    #[tokio::test]
    async fn healthz_and_readyz_both_ways() {
        let ctx = Context::new(settings("127.0.0.1:1", "path"));
        let server = Server::start(ctx.clone()).await;

        assert_eq!(server.get("/healthz").await.0, StatusCode::OK);
        assert_eq!(server.get("/healthz").await.2, "ok\n");

        // Not synced yet.
        let (status, _, body) = server.get("/readyz").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(body.contains("127.0.0.1:1: not synced yet"), "{body}");

        // Synced just now: ready.
        let now = OffsetDateTime::now_utc();
        set_state(&ctx, fleet_state(&ctx, now));
        let (status, _, body) = server.get("/readyz").await;
        assert_eq!((status, body.as_str()), (StatusCode::OK, "ready\n"));

        // The last sync is older than 3 poll intervals (3 s here).
        let mut state = fleet_state(&ctx, now);
        state.caddies[0].last_sync = Some(now - time::Duration::seconds(10));
        set_state(&ctx, state);
        let (status, _, body) = server.get("/readyz").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(
            body.contains("last synced 10s ago (more than 3s)"),
            "{body}"
        );

        // The last reconcile failed.
        let mut state = fleet_state(&ctx, now);
        state.caddies[0].last_error = Some("connection refused\nsecond line".into());
        set_state(&ctx, state);
        let (status, _, body) = server.get("/readyz").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            body,
            "not ready: caddy 127.0.0.1:1: connection refused second line\n"
        );

        server.shutdown().await;
    }

    #[tokio::test]
    async fn serve_stops_when_told() {
        let ctx = Context::new(settings("127.0.0.1:1", "path"));
        let server = Server::start(ctx).await;
        let base = server.base.clone();
        server.shutdown().await;
        assert!(reqwest::get(format!("{base}/healthz")).await.is_err());
    }
}
