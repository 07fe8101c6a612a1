//! The status server: a read-only view of what tart-sync knows, for people
//! (an HTML page), for scripts (JSON), for Prometheus (`/metrics`) and for
//! orchestrators (`/healthz`, `/readyz`). Everything it serves is embedded in
//! the binary; it never changes anything.
//!
//! | path          | what |
//! |---------------|------|
//! | `GET /`           | HTML page ([`page`]): live with JavaScript, reloads itself every 5 s without |
//! | `GET /api/status` | the same as JSON (shape in [`report`]) |
//! | `GET /api/events` | the page's live updates, Server-Sent Events ([`events`]) |
//! | `GET /static/page.css`, `/static/app.js` | the page's stylesheet and script |
//! | `GET /metrics`    | OpenMetrics text 1.0.0 ([`crate::metrics`]) |
//! | `GET /healthz`    | `200 ok` while the process runs |
//! | `GET /readyz`     | `200 ready` when every Caddy synced within 3 poll intervals, else `503` with the reason ([`crate::context::readiness`]) |
//!
//! `/` takes `?page=N` and `?state=` (a filter) and `/api/status` takes `?offset=&limit=`: both show
//! a bounded number of nodes ([`page::PAGE_SIZE`], [`report::MAX_LIMIT`]).
//! Both come from one report built at most once a second
//! ([`report::REPORT_MAX_AGE`]), so page views do not multiply the queries
//! to Caddy.
//!
//! Every answer carries `Cache-Control: no-store`, `X-Content-Type-Options:
//! nosniff`, `Referrer-Policy: no-referrer` and a Content Security Policy that
//! allows only the server's own stylesheet, script and event stream ([`CSP`]). Requests must name the server
//! in `Host` (loopback names, the listen address or `status.allowed_hosts`;
//! else `421`, against DNS rebinding; see [`host`]).
//!
//! # Limits
//!
//! The status server must never take what the sync loop needs (sockets,
//! memory, time on the one runtime thread), whatever its clients do:
//!
//! - at most [`MAX_CONNECTIONS`] connections are open at once; one more is
//!   accepted and closed at once (never queued);
//! - a connection that has not sent a whole request head within
//!   [`HEADER_READ_TIMEOUT`] is closed, also an idle kept-alive one waiting
//!   for its next request (hyper runs the header timer whenever it waits for
//!   a request head);
//! - a connection lives at most [`MAX_CONNECTION_LIFETIME`] (then it is
//!   closed after the request in flight);
//! - tower layers: at most [`MAX_CONCURRENT_REQUESTS`] requests are handled
//!   at once (more wait for a slot), a handled request gets `503` after
//!   [`REQUEST_TIMEOUT`], and a body over [`MAX_REQUEST_BODY`] bytes gets
//!   `413`;
//! - at most [`events::MAX_EVENT_STREAMS`] event streams are open at once
//!   (more get `503`), each for at most [`events::MAX_STREAM_LIFETIME`].

pub mod events;
mod host;
pub mod page;
pub mod report;
pub(crate) mod text;
mod upstreams;

#[cfg(test)]
pub(crate) mod fixtures;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, REFERRER_POLICY, X_CONTENT_TYPE_OPTIONS,
};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Json, Router};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use serde::Deserialize;
use time::OffsetDateTime;
use tokio::sync::{watch, Semaphore};
use tower::limit::GlobalConcurrencyLimitLayer;
use tower::ServiceBuilder;
use tower_http::compression::CompressionLayer;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::timeout::TimeoutLayer;

use crate::context::Context;
use host::{HostAllowed, HostPolicy};
use report::ReportCache;
use upstreams::HealthSource;

/// Only the server's own stylesheet and script (no inline script or style),
/// and its own event stream; nothing remote, no frames, no forms.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";
/// Longest a request may take (the page waits up to 2.5 s for Caddy's upstreams).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Requests handled at once; more wait for a free slot.
pub const MAX_CONCURRENT_REQUESTS: usize = 32;
/// Largest request body accepted (no endpoint reads one).
pub const MAX_REQUEST_BODY: usize = 1024;
/// Connections open at once; one more is closed as soon as it is accepted.
pub const MAX_CONNECTIONS: usize = 256;
/// Time a connection gets to send a whole request head, from its opening or
/// from the end of the previous answer (so also the idle keep-alive timeout).
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest a connection stays open; then it is closed after the request in flight.
pub const MAX_CONNECTION_LIFETIME: Duration = Duration::from_secs(60);
/// Time the requests in flight get to finish when the server stops.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);
/// Pause after an accept error other than a refused connection (e.g. out of
/// file descriptors), so the loop does not spin.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);
/// Bytes hyper buffers per connection (a request head must fit).
const MAX_BUF: usize = 16 * 1024;

/// What every handler shares: the loop's context and the report cache.
#[derive(Clone)]
struct AppState {
    ctx: Arc<Context>,
    reports: Arc<ReportCache>,
    streams: events::Streams,
}

/// The status server's routes (see the module documentation) with its layers.
///
/// Builds one admin API client per configured Caddy (reads limited to 2 s) to read
/// upstream health when a page is rendered; a Caddy whose client cannot be
/// built is simply shown without health.
pub fn router(ctx: Arc<Context>) -> Router {
    let hosts = Arc::new(HostPolicy::new(&ctx.settings.status));
    let state = AppState {
        reports: Arc::new(ReportCache::new(HealthSource::new(&ctx.settings.caddy))),
        streams: events::Streams::new(),
        ctx,
    };
    let header =
        |name, value| SetResponseHeaderLayer::overriding(name, HeaderValue::from_static(value));
    Router::new()
        .route("/", get(index))
        .route("/api/status", get(api_status))
        .route("/api/events", get(api_events))
        .route("/static/page.css", get(style))
        .route("/static/app.js", get(script))
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .fallback(not_found)
        .with_state(state)
        .layer(axum::middleware::from_fn_with_state(hosts, host::check))
        .layer(
            ServiceBuilder::new()
                .layer(header(CACHE_CONTROL, "no-store"))
                .layer(header(X_CONTENT_TYPE_OPTIONS, "nosniff"))
                .layer(header(REFERRER_POLICY, "no-referrer"))
                .layer(header(CONTENT_SECURITY_POLICY, CSP))
                // gzip when the client asks (the page at 10,000 TARTs: 576 KB
                // → 21 KB); never event streams (tower-http's default predicate).
                .layer(CompressionLayer::new())
                .layer(RequestBodyLimitLayer::new(MAX_REQUEST_BODY))
                .layer(TimeoutLayer::with_status_code(
                    StatusCode::SERVICE_UNAVAILABLE,
                    REQUEST_TIMEOUT,
                ))
                .layer(GlobalConcurrencyLimitLayer::new(MAX_CONCURRENT_REQUESTS)),
        )
}

/// Serves [`router`] on `listener` until `shutdown` turns true (or its sender
/// is dropped), then lets the requests in flight finish (up to 3 s) and
/// returns. The connection limits are in the module documentation.
pub async fn serve(
    ctx: Arc<Context>,
    listener: tokio::net::TcpListener,
    shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    serve_router(router(ctx), listener, shutdown).await
}

/// Serves `app` on `listener` with the connection limits of the module
/// documentation until `shutdown` turns true; shared by the status server
/// and the public fleet page ([`crate::public`]).
pub(crate) async fn serve_router(
    app: Router,
    listener: tokio::net::TcpListener,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let service = TowerToHyperService::new(app);
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .keep_alive(true)
        .max_buf_size(MAX_BUF);
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let accepted = tokio::select! {
            biased;
            // An error means the sender is gone: the daemon is ending too.
            _ = shutdown.wait_for(|stop| *stop) => break,
            accepted = listener.accept() => accepted,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) if is_connection_error(&e) => continue,
            Err(e) => {
                tracing::debug!(error = %e, "status server: accepting a connection failed");
                tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                continue;
            }
        };
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            tracing::debug!(
                "status server: {MAX_CONNECTIONS} connections open already; closing a new one"
            );
            drop(stream);
            continue;
        };
        let conn = http.serve_connection(TokioIo::new(stream), service.clone());
        let mut stop = shutdown.clone();
        tokio::spawn(async move {
            let _slot = slot;
            tokio::pin!(conn);
            tokio::select! {
                done = conn.as_mut() => {
                    if let Err(e) = done {
                        tracing::debug!(error = %e, "status server: connection ended with an error");
                    }
                    return;
                }
                _ = stop.wait_for(|stop| *stop) => {}
                () = tokio::time::sleep(MAX_CONNECTION_LIFETIME) => {}
            }
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(SHUTDOWN_GRACE, conn).await;
        });
    }
    drop(listener);
    // Every connection gives its slot back when it ends.
    let all = u32::try_from(MAX_CONNECTIONS).unwrap_or(u32::MAX);
    let _ = tokio::time::timeout(SHUTDOWN_GRACE, slots.acquire_many(all)).await;
    Ok(())
}

/// Errors that concern one connection only (the peer gave up before it was accepted).
fn is_connection_error(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    matches!(
        e.kind(),
        ConnectionAborted | ConnectionRefused | ConnectionReset
    )
}

#[derive(Debug, Deserialize)]
struct ApiQuery {
    offset: Option<usize>,
    limit: Option<usize>,
}

/// `400` for a query `/` or `/api/events` cannot read; says what is
/// accepted, never echoes what was sent.
fn bad_page_query() -> Response {
    (
        StatusCode::BAD_REQUEST,
        "bad query: `state` is one of all, online, grace, offline, up, down, unknown; \
         `page` is a page number; `rev` (events only) a number\n",
    )
        .into_response()
}

async fn index(
    State(app): State<AppState>,
    q: Result<Query<page::PageQuery>, QueryRejection>,
) -> Response {
    let Ok(Query(q)) = q else {
        return bad_page_query();
    };
    let report = app.reports.get(&app.ctx).await;
    page::render(&report, &app.ctx.health, OffsetDateTime::now_utc(), q).into_response()
}

async fn api_events(
    State(app): State<AppState>,
    q: Result<Query<events::EventsQuery>, QueryRejection>,
    headers: HeaderMap,
) -> Response {
    let Ok(Query(q)) = q else {
        return bad_page_query();
    };
    events::respond(app.ctx.clone(), &app.streams, q, &headers)
}

async fn style() -> Response {
    ([(CONTENT_TYPE, "text/css; charset=utf-8")], page::STYLE).into_response()
}

async fn script() -> Response {
    (
        [(CONTENT_TYPE, "text/javascript; charset=utf-8")],
        page::SCRIPT,
    )
        .into_response()
}

async fn api_status(State(app): State<AppState>, Query(q): Query<ApiQuery>) -> Response {
    let report = app.reports.get(&app.ctx).await;
    Json(report.api(q.offset, q.limit)).into_response()
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

/// The reason for "not ready" only for an allowed `Host` (it names Caddy
/// addresses and errors); probes with any `Host` get the status code.
async fn readyz(
    State(app): State<AppState>,
    allowed: Option<Extension<HostAllowed>>,
) -> (StatusCode, String) {
    match (app.ctx.ready(), allowed) {
        (Ok(()), _) => (StatusCode::OK, "ready\n".into()),
        (Err(reason), Some(_)) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {reason}\n"),
        ),
        (Err(_), None) => (StatusCode::SERVICE_UNAVAILABLE, "not ready\n".into()),
    }
}

async fn not_found() -> (StatusCode, &'static str) {
    (
        StatusCode::NOT_FOUND,
        "not found (see /, /api/status, /api/events, /metrics, /healthz, /readyz)\n",
    )
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_live;
