//! The view model: one snapshot of the shared state plus Caddy's upstream
//! health, shared by the page and `/api/status`.
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
use std::sync::Arc;
use std::time::Duration;

use caddy_client::{Client, UpstreamStatus};
use serde::Serialize;
use time::OffsetDateTime;

use crate::config::CaddySettings;
use crate::controller::{CaddyStatus, Context, HeadscaleStatus, SyncState};
use crate::desired::{NodeState, Skipped};
use crate::layout::Ids;

/// How long the page waits for one Caddy's `/reverse_proxy/upstreams`.
const UPSTREAMS_TIMEOUT: Duration = Duration::from_secs(2);

/// `/api/status`'s document.
#[derive(Debug, Clone, Serialize)]
pub(super) struct Report {
    pub(super) version: &'static str,
    #[serde(with = "time::serde::rfc3339")]
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
    /// Not serialized: whether a headscale poll has succeeded (else nodes are unknown).
    #[serde(skip)]
    pub(super) polled: bool,
    /// Not serialized: whether any Caddy answered the upstreams query.
    #[serde(skip)]
    pub(super) health_known: bool,
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
}

/// Caddy's view of one upstream, summed over the Caddy instances that list it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub(super) struct UpstreamHealth {
    pub(super) num_requests: i64,
    pub(super) fails: i64,
}

/// Upstream health by dial address; `None` when no Caddy answered.
pub(super) type Health = Option<HashMap<String, UpstreamHealth>>;

/// Sums the upstream lists of the Caddy instances that answered.
fn merge_health(answers: &[Option<Vec<UpstreamStatus>>]) -> Health {
    let mut any = false;
    let mut out: HashMap<String, UpstreamHealth> = HashMap::new();
    for list in answers.iter().flatten() {
        any = true;
        for u in list {
            let h = out.entry(u.address.clone()).or_default();
            h.num_requests = h.num_requests.saturating_add(u.num_requests);
            h.fails = h.fails.saturating_add(u.fails);
        }
    }
    any.then_some(out)
}

/// One admin API client per configured Caddy (2 s timeouts), built once, to
/// read upstream health; a Caddy whose client cannot be built is shown
/// without health.
#[derive(Clone)]
pub(super) struct HealthSource(Arc<Vec<Option<Client>>>);

impl HealthSource {
    pub(super) fn new(caddy: &CaddySettings) -> HealthSource {
        let clients = caddy
            .admin
            .iter()
            .map(|a| {
                caddy
                    .client_builder(a)
                    .timeout(UPSTREAMS_TIMEOUT)
                    .connect_timeout(UPSTREAMS_TIMEOUT)
                    .build()
                    .map_err(|e| tracing::debug!(caddy = %a, error = %e, "no upstream health for this Caddy"))
                    .ok()
            })
            .collect();
        HealthSource(Arc::new(clients))
    }

    /// Asks every Caddy for its upstreams, concurrently, each bounded by a timeout.
    pub(super) async fn fetch(&self) -> Health {
        let limit = UPSTREAMS_TIMEOUT + Duration::from_millis(500);
        let tasks: Vec<_> = (self.0.iter().flatten().cloned())
            .map(|client| {
                tokio::spawn(async move {
                    match tokio::time::timeout(limit, client.upstreams()).await {
                        Ok(Ok(list)) => Some(list),
                        Ok(Err(e)) => {
                            tracing::debug!(caddy = %client.address(), error = %e, "reading upstreams failed");
                            None
                        }
                        Err(_) => None,
                    }
                })
            })
            .collect();
        let mut answers = Vec::with_capacity(tasks.len());
        for task in tasks {
            answers.push(task.await.ok().flatten());
        }
        merge_health(&answers)
    }
}

/// The report for `state` and `health`.
pub(super) fn build(ctx: &Context, state: SyncState, health: &Health) -> Report {
    let routes = &ctx.settings.routes;
    let polled = state.desired.is_some();
    let desired = state.desired.unwrap_or_default();
    let health_of = |address: &str| health.as_ref().and_then(|h| h.get(address).copied());
    let nodes = desired
        .entries
        .iter()
        .map(|e| NodeReport {
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
        tart_upstream: health_of(&Ids::new(&routes.id_prefix).upstream_placeholder()),
        polled,
        health_known: health.is_some(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
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
        let mut report = build(&ctx, fleet_state(&ctx, now), &health);
        assert_eq!(report.version, env!("CARGO_PKG_VERSION"));
        report.version = "0.0.0-test";
        report.started = now - time::Duration::minutes(15);
        insta::assert_snapshot!(serde_json::to_string_pretty(&report).unwrap());
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
