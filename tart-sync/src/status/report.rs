//! The view model: one snapshot of the shared state plus Caddy's upstream
//! health, shared by the page and `/api/status`.
//!
//! A report is built at most once per [`REPORT_MAX_AGE`] ([`ReportCache`]):
//! requests in the same second share it, and requests that arrive while it
//! is being built wait for that one build, so Caddy's upstreams are queried
//! at most once a second however many people look.
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
//!   "total": 1,
//!   "offset": 0,
//!   "limit": 1000,
//!   "nodes": [{
//!     "name": "rhodes",
//!     "node_id": 12,
//!     "user": "tagged-devices",
//!     "url": "https://tart.example.org/rhodes/",
//!     "upstream": "100.64.0.12:80",
//!     "state": "online",
//!     "offline_since": null,
//!     "grace_until": null,
//!     "upstream_health": {"num_requests": 0, "fails": 0},
//!     "probe": {
//!       "state": "up",
//!       "http_status": 200,
//!       "latency": "12ms 480us",
//!       "checked": "2026-07-10T08:15:03Z",
//!       "since": "2026-07-10T08:02:33Z",
//!       "error": null
//!     },
//!     "history": {
//!       "changes": 2,
//!       "up_ratio": 0.98,
//!       "online_ratio": 1.0,
//!       "last_change": "2026-07-10T08:02:33Z"
//!     }
//!   }],
//!   "skipped_total": 1,
//!   "skipped": [{"node_id": 14, "name": "ops-laptop", "reason": "expired"}],
//!   "tart_upstream": {"num_requests": 0, "fails": 0},
//!   "history": {
//!     "store": {"state": "ok", "path": "/var/lib/tart-sync/history.redb", "moved_aside": null},
//!     "retention": "7days",
//!     "tarts": 1,
//!     "changes": 3
//!   }
//! }
//! ```
//!
//! - `mode`: `path` (URLs `https://<domain>/<name>/`) or `host`
//!   (`https://<name>.<domain>/`).
//! - `caddies[].last_outcome`: `pending` (not tried yet), `unchanged`,
//!   `installed`, `updated`, `held` (a mass removal is being held back) or
//!   `error`. `stream_close_delay`: whether that Caddy keeps WebSockets open
//!   across reloads (`null` until known).
//! - Paging (query `?offset=&limit=`, both optional): `total` is the number
//!   of nodes that pass the filters and have a URL; `nodes` holds at most
//!   `limit` of them from position `offset` (0-based) of the list sorted by
//!   name. `limit` defaults to, and is capped at, [`MAX_LIMIT`] (1,000); the
//!   answer says the `offset` and `limit` it used. Fetch
//!   `?offset=0`, `?offset=1000`, … until `offset + limit >= total`. (Before
//!   paging, `nodes` held every node, and `total`, `offset`, `limit` and
//!   `skipped_total` did not exist.)
//! - `nodes`: the nodes of this page, sorted by name. `state`: `online`, `grace` (offline, but still proxied until
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
//! - `dns` (only with `routes.resolve = "dns"`): the DNS responder:
//!   `{"resolve": "dns", "zone": "tart-sync.internal.", "listen":
//!   "127.0.0.1:5380", "error": null, "names": 2, "queries": [["answered",
//!   120], ["nodata", 118], ["nxdomain", 0], ["refused", 0], ["invalid", 0],
//!   ["dropped", 0], ["limited", 0], ["not_ready", 0]], "last_query":
//!   "2026-07-10T08:15:04Z", "rate": 2.4}`: `names` answered (`null` before
//!   the first poll), queries by outcome since start, `rate` in queries per
//!   second over the last complete 10 s.
//! - `skipped`: nodes that pass the filters but get no URL, with the reason;
//!   the first [`MAX_LIMIT`] of them (not paged), `skipped_total` counts them
//!   all. `nodes` and `skipped` are empty until headscale was polled
//!   successfully.
//! - `nodes[].probe`: the last reachability probe of the TART's web service
//!   (`GET <probe.path>` on `upstream`), `null` when it was not probed (probes
//!   off, not yet, or offline past its grace: those are not probed).
//!   `state`: `up` (an HTTP answer, whatever its status, which is
//!   `http_status`) or `down` (no connection, timeout, no HTTP answer:
//!   `error` says which, in one line). `latency`: time to the answer's
//!   headers (humantime, e.g. `12ms 480us`; `null` when down). `checked`:
//!   when it ran; `since`: when `state` last changed. Probes never change
//!   routing: a TART that is `online` but `down` keeps its route.
//! - `nodes[].history`: the last 24 hours of the TART's history: `changes`
//!   (tailnet and service state changes), `up_ratio` (share of the probed
//!   time its service was up, `null` if never probed), `online_ratio` (share
//!   of the time headscale showed it online or in grace, `null` if unknown),
//!   `last_change` (`null`: none in the window). `null` when nothing is known.
//! - `history`: the history store: `store.state` is `memory` (no
//!   `history.path`: kept in memory only, lost at restart), `ok` (with its
//!   `path`, and `moved_aside`: where a damaged file found at start was moved,
//!   or `null`), or `failed` (with `path` and the last `error`; history is
//!   then kept in memory only, syncing goes on). `retention` is
//!   `history.retention`; `tarts` and `changes` count the in-memory history.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use time::OffsetDateTime;

use crate::context::{CaddyStatus, Context, HeadscaleStatus, SyncState};
use crate::desired::{NodeState, Skipped};
use crate::health::ProbeResult;
use crate::history::{StoreStatus, Summary};

use super::upstreams::{Health, HealthSource, UpstreamHealth};

/// How long one report (and Caddy's upstream health in it) is reused.
pub const REPORT_MAX_AGE: Duration = Duration::from_secs(1);
/// Default and largest `limit` of `/api/status`.
pub const MAX_LIMIT: usize = 1000;

/// Everything the page and `/api/status` show, for all nodes; `/api/status`
/// serializes a page of it ([`Report::api`]).
#[derive(Debug, Clone)]
pub(super) struct Report {
    pub(super) version: &'static str,
    pub(super) started: OffsetDateTime,
    pub(super) domain: String,
    pub(super) mode: &'static str,
    pub(super) headscale: HeadscaleStatus,
    pub(super) caddies: Vec<CaddyStatus>,
    pub(super) nodes: Vec<NodeReport>,
    pub(super) skipped: Vec<Skipped>,
    /// Caddy's entry for tart-sync's proxy upstream: every TART is dialled
    /// through one placeholder address, so Caddy reports in-flight requests and
    /// passive-health fails for all TARTs together (summed over the Caddies
    /// that answered); `null` when no Caddy lists it.
    pub(super) tart_upstream: Option<UpstreamHealth>,
    /// Whether a headscale poll has succeeded (else nodes are unknown).
    pub(super) polled: bool,
    /// Whether any Caddy answered the upstreams query.
    pub(super) health_known: bool,
    /// [`crate::health::Health::generation`] read before the state was: a
    /// live view whose client saw this report needs no change older than it.
    pub(super) generation: u64,
    /// The history store and the in-memory history.
    pub(super) history: HistoryReport,
    /// The DNS responder, in dns mode (`routes.resolve = "dns"`) only.
    pub(super) dns: Option<DnsReport>,
}

/// The DNS responder as `/api/status` (`dns`) and the page show it.
#[derive(Debug, Clone, Serialize)]
pub(super) struct DnsReport {
    /// Always `dns` (the block is absent in config mode).
    pub(super) resolve: &'static str,
    /// Its zone, listen address or error, names, queries, last query, rate.
    #[serde(flatten)]
    pub(super) status: crate::dns::DnsStatus,
}

/// `/api/status`'s `history`: the store and the in-memory history.
#[derive(Debug, Clone, Serialize)]
pub(super) struct HistoryReport {
    /// How the store is doing.
    pub(super) store: StoreStatus,
    /// `history.retention`.
    #[serde(with = "humantime_serde")]
    pub(super) retention: Duration,
    /// TARTs with a history in memory.
    pub(super) tarts: usize,
    /// Changes kept in memory.
    pub(super) changes: usize,
}

/// The window of `nodes[].history`.
pub const HISTORY_WINDOW: Duration = Duration::from_secs(86_400);

/// `/api/status`'s document: a page of a [`Report`] (module documentation).
#[derive(Debug, Serialize)]
pub(super) struct ApiStatus<'a> {
    version: &'static str,
    #[serde(with = "time::serde::rfc3339")]
    started: OffsetDateTime,
    domain: &'a str,
    mode: &'static str,
    headscale: &'a HeadscaleStatus,
    caddies: &'a [CaddyStatus],
    total: usize,
    offset: usize,
    limit: usize,
    nodes: &'a [NodeReport],
    skipped_total: usize,
    skipped: &'a [Skipped],
    tart_upstream: Option<UpstreamHealth>,
    #[serde(skip_serializing_if = "Option::is_none")]
    dns: Option<&'a DnsReport>,
    history: &'a HistoryReport,
}

impl Report {
    /// At most `limit` (capped at [`MAX_LIMIT`]; default [`MAX_LIMIT`])
    /// nodes from position `offset` (default 0).
    pub(super) fn api(&self, offset: Option<usize>, limit: Option<usize>) -> ApiStatus<'_> {
        let total = self.nodes.len();
        let offset = offset.unwrap_or(0);
        let limit = limit.unwrap_or(MAX_LIMIT).min(MAX_LIMIT);
        let start = offset.min(total);
        let end = start.saturating_add(limit).min(total);
        ApiStatus {
            version: self.version,
            started: self.started,
            domain: &self.domain,
            mode: self.mode,
            headscale: &self.headscale,
            caddies: &self.caddies,
            total,
            offset,
            limit,
            nodes: self.nodes.get(start..end).unwrap_or_default(),
            skipped_total: self.skipped.len(),
            skipped: self
                .skipped
                .get(..self.skipped.len().min(MAX_LIMIT))
                .unwrap_or_default(),
            tart_upstream: self.tart_upstream,
            dns: self.dns.as_ref(),
            history: &self.history,
        }
    }
}

/// The last report and when it was built; concurrent requests wait for the
/// one that builds it.
pub(super) struct ReportCache {
    health: HealthSource,
    last: tokio::sync::Mutex<Option<(Instant, Arc<Report>)>>,
}

impl ReportCache {
    /// A cache reading upstream health from `health`.
    pub(super) fn new(health: HealthSource) -> ReportCache {
        ReportCache {
            health,
            last: tokio::sync::Mutex::new(None),
        }
    }

    /// The report built less than [`REPORT_MAX_AGE`] ago, or a new one
    /// (state snapshot plus a query of every Caddy's upstreams).
    pub(super) async fn get(&self, ctx: &Context) -> Arc<Report> {
        let mut last = self.last.lock().await;
        if let Some((built, report)) = last.as_ref() {
            if built.elapsed() < REPORT_MAX_AGE {
                return Arc::clone(report);
            }
        }
        let health = self.health.fetch().await;
        let generation = *ctx.health.generation().borrow();
        let mut report = build(ctx, ctx.snapshot(), &health);
        report.generation = generation;
        let report = Arc::new(report);
        *last = Some((Instant::now(), Arc::clone(&report)));
        report
    }
}

/// One routed node in [`Report`].
#[derive(Debug, Clone, Serialize)]
pub(super) struct NodeReport {
    pub(super) name: String,
    pub(super) node_id: u64,
    pub(super) user: String,
    pub(super) url: String,
    pub(super) upstream: String,
    pub(super) state: NodeState,
    #[serde(with = "time::serde::rfc3339::option")]
    pub(super) offline_since: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub(super) grace_until: Option<OffsetDateTime>,
    pub(super) upstream_health: Option<UpstreamHealth>,
    /// The last probe of its web service (`null`: not probed).
    pub(super) probe: Option<ProbeResult>,
    /// Its history over the last [`HISTORY_WINDOW`] (`null`: none known).
    pub(super) history: Option<Summary>,
}

/// The report for `state` and `health`.
pub(super) fn build(ctx: &Context, state: SyncState, health: &Health) -> Report {
    let routes = &ctx.settings.routes;
    let polled = state.desired.is_some();
    let desired = state.desired.unwrap_or_default();
    let health_of = |address: &str| health.as_ref().and_then(|h| h.get(address).copied());
    let now = OffsetDateTime::now_utc();
    let window_start = now - HISTORY_WINDOW;
    let (probes, summaries): (Vec<_>, Vec<_>) = ctx.health.read_probes(|probes| {
        ctx.health.read_log(|log| {
            (desired.entries.iter())
                .map(|e| {
                    let summary = log.summary(&e.name, window_start, now);
                    (probes.get(&e.name).cloned(), summary)
                })
                .unzip()
        })
    });
    let log = ctx.health.read_log(|log| (log.len(), log.changes()));
    let nodes = desired
        .entries
        .iter()
        .zip(probes.into_iter().zip(summaries))
        .map(|(e, (probe, history))| NodeReport {
            probe,
            history,
            url: crate::layout::node_url(routes, &e.name),
            upstream_health: health_of(&e.upstream),
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
        tart_upstream: health_of(&crate::layout::proxy_dial(routes)),
        polled,
        health_known: health.is_some(),
        dns: (routes.resolve == crate::config::Resolve::Dns).then(|| DnsReport {
            resolve: routes.resolve.as_str(),
            status: ctx.dns.status(&ctx.settings.dns.zone),
        }),
        generation: 0,
        history: HistoryReport {
            store: ctx.health.store_status(),
            retention: ctx.settings.history.retention,
            tarts: log.0,
            changes: log.1,
        },
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::collections::HashMap;

    use time::macros::datetime;

    use super::*;
    use crate::status::fixtures::{fleet_state, settings};

    #[test]
    fn json_document_for_a_fixed_state() {
        let now = datetime!(2026-07-10 08:15:00 UTC);
        let ctx = Context::new(settings("127.0.0.1:1", "path"));
        let health: Health = Some(HashMap::from([
            (
                "100.64.0.12:80".to_string(),
                UpstreamHealth {
                    num_requests: 4,
                    fails: 0,
                },
            ),
            (
                "{http.vars.tart_sync_upstream}".to_string(),
                UpstreamHealth {
                    num_requests: 7,
                    fails: 2,
                },
            ),
        ]));
        ctx.health.set_probe(
            "rhodes",
            ProbeResult {
                state: crate::health::ServiceState::Up,
                http_status: Some(200),
                latency: Some(Duration::from_micros(12_480)),
                checked: now - time::Duration::seconds(3),
                since: now - time::Duration::minutes(13),
                error: None,
            },
        );
        let mut report = build(&ctx, fleet_state(&ctx, now), &health);
        assert_eq!(report.version, env!("CARGO_PKG_VERSION"));
        report.version = "0.0.0-test";
        report.started = now - time::Duration::minutes(15);
        insta::assert_snapshot!(serde_json::to_string_pretty(&report.api(None, None)).unwrap());
    }

    /// Whether `doc` and `real` have the same keys, recursively (arrays:
    /// their last elements; `null` on either side matches anything).
    fn same_keys(doc: &serde_json::Value, real: &serde_json::Value, at: &str) {
        use serde_json::Value;
        match (doc, real) {
            (Value::Object(d), Value::Object(r)) => {
                let dk: Vec<&String> = d.keys().collect();
                let rk: Vec<&String> = r.keys().collect();
                assert_eq!(dk, rk, "keys at {at}");
                for (k, v) in d {
                    same_keys(v, &r[k], &format!("{at}.{k}"));
                }
            }
            (Value::Array(d), Value::Array(r)) => {
                if let (Some(d), Some(r)) = (d.last(), r.last()) {
                    same_keys(d, r, &format!("{at}[]"));
                }
            }
            _ => {}
        }
    }

    #[test]
    fn the_documented_schema_is_the_document() {
        let now = datetime!(2026-07-10 08:15:00 UTC);
        let ctx = Context::new(settings("127.0.0.1:1", "path"));
        ctx.health.set_probe(
            "rhodes",
            ProbeResult {
                state: crate::health::ServiceState::Up,
                http_status: Some(200),
                latency: Some(Duration::from_millis(12)),
                checked: now,
                since: now,
                error: None,
            },
        );
        ctx.health.set_store_status(StoreStatus::Ok {
            path: "/var/lib/tart-sync/history.redb".into(),
            moved_aside: None,
        });
        let mut report = build(&ctx, fleet_state(&ctx, now), &None);
        report.tart_upstream = Some(UpstreamHealth::default());
        for n in &mut report.nodes {
            n.upstream_health = Some(UpstreamHealth::default());
        }
        let real = serde_json::to_value(report.api(None, None)).unwrap();
        let source = include_str!("report.rs");
        let doc: String = (source.lines())
            .skip_while(|l| !l.starts_with("//! ```json"))
            .skip(1)
            .take_while(|l| !l.starts_with("//! ```"))
            .map(|l| l.trim_start_matches("//!"))
            .collect::<Vec<_>>()
            .join("\n");
        let doc: serde_json::Value = serde_json::from_str(&doc).unwrap();
        same_keys(&doc, &real, "$");
    }

    #[test]
    fn api_pages_through_the_nodes() {
        let now = OffsetDateTime::now_utc();
        let ctx = Context::new(settings("127.0.0.1:1", "path"));
        let mut report = build(&ctx, fleet_state(&ctx, now), &None);
        let node = report.nodes[0].clone();
        report.nodes = (0..2500)
            .map(|i| NodeReport {
                name: format!("n{i:05}"),
                ..node.clone()
            })
            .collect();
        let page = |o, l| serde_json::to_value(report.api(o, l)).unwrap();
        let names = |v: &serde_json::Value| -> Vec<String> {
            v["nodes"]
                .as_array()
                .unwrap()
                .iter()
                .map(|n| n["name"].as_str().unwrap().to_string())
                .collect()
        };
        let first = page(None, None);
        assert_eq!(
            (
                first["total"].as_u64(),
                first["offset"].as_u64(),
                first["limit"].as_u64()
            ),
            (Some(2500), Some(0), Some(1000))
        );
        let first = names(&first);
        assert_eq!(
            (first.len(), first[0].as_str(), first[999].as_str()),
            (1000, "n00000", "n00999")
        );
        // Over the cap: capped, and the answer says so.
        let big = page(Some(2000), Some(5000));
        assert_eq!(big["limit"], 1000);
        assert_eq!(names(&big).len(), 500);
        assert_eq!(names(&big)[0], "n02000");
        assert_eq!(names(&page(Some(10), Some(2))), ["n00010", "n00011"]);
        // Past the end, or nothing asked: an empty page with the total.
        let past = page(Some(usize::MAX), Some(10));
        assert_eq!(
            (past["total"].as_u64(), names(&past).len()),
            (Some(2500), 0)
        );
        assert_eq!(names(&page(None, Some(0))).len(), 0);
        // Paging through gets every node exactly once.
        let mut all = Vec::new();
        let mut offset = 0;
        while offset < 2500 {
            all.extend(names(&page(Some(offset), None)));
            offset += 1000;
        }
        assert_eq!(
            all,
            report
                .nodes
                .iter()
                .map(|n| n.name.clone())
                .collect::<Vec<_>>()
        );
        assert_eq!(page(None, None)["skipped_total"], 1);
    }

    #[test]
    fn host_mode_urls() {
        let now = OffsetDateTime::now_utc();
        let ctx = Context::new(settings("127.0.0.1:1", "host"));
        let report = build(&ctx, fleet_state(&ctx, now), &None);
        assert_eq!(report.nodes[2].url, "https://rhodes.tart.example.org/");
        assert_eq!(report.mode, "host");
        assert!(!report.health_known && report.polled);
    }
}
