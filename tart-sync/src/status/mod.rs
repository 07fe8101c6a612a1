//! The status server: a read-only view of what tart-sync knows, for people
//! (an HTML page), for scripts (JSON), for Prometheus (`/metrics`) and for
//! orchestrators (`/healthz`, `/readyz`). Everything it serves is embedded in
//! the binary; it never changes anything.
//!
//! | path          | what |
//! |---------------|------|
//! | `GET /`           | HTML page, refreshes itself every 5 s, no JavaScript |
//! | `GET /api/status` | the same as JSON (shape in [`report`]) |
//! | `GET /metrics`    | OpenMetrics text 1.0.0 ([`crate::metrics`]) |
//! | `GET /healthz`    | `200 ok` while the process runs |
//! | `GET /readyz`     | `200 ready` when every Caddy synced within 3 poll intervals, else `503` with the reason ([`crate::controller::readiness`]) |
//!
//! Every answer carries `Cache-Control: no-store`, `X-Content-Type-Options:
//! nosniff`, `Referrer-Policy: no-referrer` and a Content Security Policy that
//! allows only the page's inline stylesheet. These and the limits are tower
//! layers: at most [`MAX_CONCURRENT_REQUESTS`] requests are handled at once
//! (more wait for a slot), a handled request gets `503` after
//! [`REQUEST_TIMEOUT`], and a body over [`MAX_REQUEST_BODY`] bytes gets `413`.

mod page;
pub mod report;
pub(crate) mod text;

#[cfg(test)]
pub(crate) mod fixtures;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, REFERRER_POLICY, X_CONTENT_TYPE_OPTIONS,
};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use maud::Markup;
use time::OffsetDateTime;
use tokio::sync::watch;
use tower::limit::GlobalConcurrencyLimitLayer;
use tower::ServiceBuilder;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::timeout::TimeoutLayer;

use crate::controller::Context;
use report::{HealthSource, Report};

/// No scripts, no remote anything: only the inline stylesheet.
const CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";
/// Longest a request may take (the page waits up to 2.5 s for Caddy's upstreams).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Requests handled at once; more wait for a free slot.
pub const MAX_CONCURRENT_REQUESTS: usize = 32;
/// Largest request body accepted (no endpoint reads one).
pub const MAX_REQUEST_BODY: usize = 1024;

/// What every handler shares: the loop's context and the upstream health source.
#[derive(Clone)]
struct AppState {
    ctx: Arc<Context>,
    health: HealthSource,
}

impl AppState {
    /// A snapshot of the state with the upstream health Caddy reports now.
    async fn report(&self) -> Report {
        let health = self.health.fetch().await;
        report::build(&self.ctx, self.ctx.snapshot(), &health)
    }
}

/// The status server's routes (see the module documentation) with its layers.
///
/// Builds one admin API client per configured Caddy (2 s timeouts) to read
/// upstream health when a page is rendered; a Caddy whose client cannot be
/// built is simply shown without health.
pub fn router(ctx: Arc<Context>) -> Router {
    let state = AppState {
        health: HealthSource::new(&ctx.settings.caddy),
        ctx,
    };
    let header =
        |name, value| SetResponseHeaderLayer::overriding(name, HeaderValue::from_static(value));
    Router::new()
        .route("/", get(index))
        .route("/api/status", get(api_status))
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .fallback(not_found)
        .with_state(state)
        .layer(
            ServiceBuilder::new()
                .layer(header(CACHE_CONTROL, "no-store"))
                .layer(header(X_CONTENT_TYPE_OPTIONS, "nosniff"))
                .layer(header(REFERRER_POLICY, "no-referrer"))
                .layer(header(CONTENT_SECURITY_POLICY, CSP))
                .layer(RequestBodyLimitLayer::new(MAX_REQUEST_BODY))
                .layer(TimeoutLayer::with_status_code(
                    StatusCode::SERVICE_UNAVAILABLE,
                    REQUEST_TIMEOUT,
                ))
                .layer(GlobalConcurrencyLimitLayer::new(MAX_CONCURRENT_REQUESTS)),
        )
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

async fn index(State(app): State<AppState>) -> Markup {
    page::render(&app.report().await, OffsetDateTime::now_utc())
}

async fn api_status(State(app): State<AppState>) -> Json<Report> {
    Json(app.report().await)
}

async fn metrics(State(app): State<AppState>) -> Response {
    match app.ctx.metrics.encode() {
        Ok(text) => ([(CONTENT_TYPE, crate::metrics::CONTENT_TYPE)], text).into_response(),
        Err(_) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "the metrics could not be encoded\n",
        )
            .into_response(),
    }
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(app): State<AppState>) -> (StatusCode, String) {
    match app.ctx.ready() {
        Ok(()) => (StatusCode::OK, "ready\n".into()),
        Err(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {reason}\n"),
        ),
    }
}

async fn not_found() -> (StatusCode, &'static str) {
    (
        StatusCode::NOT_FOUND,
        "not found (see /, /api/status, /metrics, /healthz, /readyz)\n",
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use serde_json::Value;
    use time::format_description::well_known::Rfc3339;

    use super::*;
    use fixtures::{fleet_state, set_state, settings, HOSTILE};

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
        // The whole document is pinned by report.rs' snapshot; here: what
        // comes from the running server and from Caddy.
        let v: Value = serde_json::from_str(&body).unwrap();
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
        assert_eq!(v["headscale"]["nodes_seen"], 5);
        assert_eq!(v["caddies"][0]["address"], admin.as_str());
        assert_eq!(v["caddies"][0]["stream_close_delay"], true);

        let nodes = v["nodes"].as_array().unwrap();
        assert_eq!(nodes.len(), 3);
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
    #[tokio::test]
    async fn metrics_over_http() {
        let ctx = Context::new(settings("127.0.0.1:1", "path"));
        set_state(&ctx, fleet_state(&ctx, OffsetDateTime::now_utc()));
        ctx.metrics.cycle_done(0.25, true);
        let server = Server::start(ctx).await;
        let (status, ctype, text) = server.get("/metrics").await;
        server.shutdown().await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            ctype,
            "application/openmetrics-text; version=1.0.0; charset=utf-8"
        );
        for line in [
            "tart_sync_cycles_total 1",
            "tart_sync_caddy_writes_total 1",
            "tart_sync_cycle_duration_seconds_sum 0.25",
            "tart_sync_cycle_duration_seconds_count 1",
            "tart_sync_nodes{state=\"online\"} 1",
            "tart_sync_caddy_up{caddy=\"127.0.0.1:1\"} 1",
            "tart_sync_headscale_up 1",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing:\n{text}");
        }
        assert!(text.ends_with("# EOF\n"));
    }

    #[tokio::test]
    async fn every_answer_has_the_security_headers() {
        let ctx = Context::new(settings("127.0.0.1:1", "path"));
        let server = Server::start(ctx).await;
        let http = reqwest::Client::new();
        for path in [
            "/",
            "/api/status",
            "/metrics",
            "/healthz",
            "/readyz",
            "/nope",
        ] {
            let resp = http
                .get(format!("{}{path}", server.base))
                .send()
                .await
                .unwrap();
            let h = resp.headers();
            assert_eq!(h["cache-control"], "no-store", "{path}");
            assert_eq!(h["x-content-type-options"], "nosniff", "{path}");
            assert_eq!(h["referrer-policy"], "no-referrer", "{path}");
            assert_eq!(h["content-security-policy"], CSP, "{path}");
        }
        let resp = http.get(&server.base).send().await.unwrap();
        assert_eq!(resp.headers()["content-type"], "text/html; charset=utf-8");
        let (_, ctype, _) = server.get("/healthz").await;
        assert_eq!(ctype, "text/plain; charset=utf-8");

        // A body larger than the limit is refused before any handler.
        let resp = http
            .post(format!("{}/api/status", server.base))
            .body(vec![b'x'; MAX_REQUEST_BODY + 1])
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 413);
        assert_eq!(resp.headers()["cache-control"], "no-store");
        // A wrong method is refused too.
        let resp = http
            .post(format!("{}/api/status", server.base))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 405);
        server.shutdown().await;
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
