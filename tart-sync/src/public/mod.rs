//! The public fleet page (opt-in, `[public] enabled`): which TARTs exist,
//! a link to each, online or offline and since when, for the visitors of
//! the site, and the same as JSON for other sites to embed.
//!
//! | path (under `public.path`, default `/`) | what |
//! |---|---|
//! | `GET <path>` | HTML page ([`page`]), no JavaScript |
//! | `GET <path>api/tarts.json` | JSON ([`fleet::PublicFleet`]), `Access-Control-Allow-Origin: *` |
//!
//! # Why a body tart-sync serves, behind Caddy
//!
//! - **No Caddy write per state change.** Caddy's owned route sends these
//!   two paths to tart-sync's own listener (`public.listen`) with a
//!   `reverse_proxy` that never changes ([`crate::layout`]); a TART going
//!   offline changes the body tart-sync serves, not Caddy's config. A page
//!   written into Caddy's config (a `static_response`) would cost a config
//!   reload per change.
//! - **The status server stays private.** The page has its own listener,
//!   router and content: it can only show what [`fleet::PublicTart`] holds
//!   (name, link, online, since), never addresses, users, tags or keys.
//! - **Safe under the public's load.** Both bodies are rendered at most once
//!   per new desired state (each poll that changes something) and kept as
//!   bytes; a request copies a reference. Answers carry `Cache-Control:
//!   public, max-age=<poll interval>` and a strong `ETag` (`If-None-Match`
//!   → `304`), so browsers and any cache in front revalidate cheaply. The
//!   listener has the status server's connection limits (the same accept
//!   loop, [`crate::status`]): bounded connections, header and lifetime
//!   timeouts, bounded concurrent requests.

pub mod fleet;
pub mod page;

use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::header::{
    ACCESS_CONTROL_ALLOW_ORIGIN, CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, ETAG,
    IF_NONE_MATCH, REFERRER_POLICY, X_CONTENT_TYPE_OPTIONS,
};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use time::OffsetDateTime;
use tokio::sync::watch;
use tower::limit::GlobalConcurrencyLimitLayer;
use tower::ServiceBuilder;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::timeout::TimeoutLayer;

use crate::context::Context;
use crate::desired::Desired;
use crate::status::{MAX_CONCURRENT_REQUESTS, MAX_REQUEST_BODY, REQUEST_TIMEOUT};
use fleet::SinceTracker;

/// No scripts, no remote anything: only the inline stylesheet.
const CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// One rendered body with its validators.
#[derive(Debug, Clone)]
pub struct Cached {
    /// The bytes.
    pub bytes: Bytes,
    /// Its strong ETag (quoted).
    pub etag: HeaderValue,
}

impl Cached {
    fn new(bytes: Bytes) -> Cached {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        bytes.hash(&mut h);
        let etag = HeaderValue::from_str(&format!("\"{:016x}-{:x}\"", h.finish(), bytes.len()))
            .unwrap_or_else(|_| HeaderValue::from_static("\"0\""));
        Cached { bytes, etag }
    }
}

/// Both bodies for one desired state.
#[derive(Debug, Clone)]
pub struct Rendered {
    /// The HTML page.
    pub html: Cached,
    /// The JSON document.
    pub json: Cached,
}

#[derive(Debug, Default)]
struct CacheState {
    /// The desired state the bodies were made from (compared by pointer:
    /// the loop keeps the same `Arc` while nothing changes).
    source: Option<Arc<Desired>>,
    since: SinceTracker,
    rendered: Option<Arc<Rendered>>,
    renders: u64,
}

/// The bodies, made again only when the loop's desired state changes.
#[derive(Debug, Default)]
pub struct PublicCache {
    state: Mutex<CacheState>,
}

impl PublicCache {
    /// The bodies for the loop's current desired state (rendered now if it
    /// changed since the last call).
    pub fn current(&self, ctx: &Context) -> Arc<Rendered> {
        let desired = ctx.read_state(|s| s.desired.clone());
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let same = match (&st.source, &desired) {
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            (None, None) => true,
            _ => false,
        };
        if let (true, Some(r)) = (same, &st.rendered) {
            return r.clone();
        }
        let now = OffsetDateTime::now_utc();
        let settings = &ctx.settings;
        let (routes, title) = (&settings.routes, &settings.public.title);
        let fleet = match desired.as_deref() {
            Some(d) => st.since.view(d, routes, title, now),
            // Before the first poll: an empty page; the tracker waits for
            // the first real state (TARTs online then have no known "since").
            None => SinceTracker::default().view(&Desired::default(), routes, title, now),
        };
        let json_path = format!("{}api/tarts.json", settings.public.path);
        let html = page::render(&fleet, &settings.routes, &json_path).into_string();
        let json = serde_json::to_vec(&fleet).unwrap_or_default();
        let rendered = Arc::new(Rendered {
            html: Cached::new(Bytes::from(html)),
            json: Cached::new(Bytes::from(json)),
        });
        st.source = desired;
        st.rendered = Some(rendered.clone());
        st.renders = st.renders.saturating_add(1);
        rendered
    }

    /// How many times the bodies were rendered.
    pub fn renders(&self) -> u64 {
        self.state.lock().map(|s| s.renders).unwrap_or(0)
    }
}

#[derive(Clone)]
struct App {
    ctx: Arc<Context>,
    cache: Arc<PublicCache>,
    max_age: HeaderValue,
}

/// `public, max-age=<poll interval, at least 1 s>`.
fn cache_control(poll: Duration) -> HeaderValue {
    let secs = poll.as_secs().max(1);
    HeaderValue::from_str(&format!("public, max-age={secs}"))
        .unwrap_or_else(|_| HeaderValue::from_static("public, max-age=5"))
}

/// The page's router (paths under `public.path`) with its layers.
pub fn router(ctx: Arc<Context>, cache: Arc<PublicCache>) -> Router {
    let path = ctx.settings.public.path.clone();
    let json_path = format!("{path}api/tarts.json");
    let app = App {
        max_age: cache_control(ctx.settings.headscale.poll_interval),
        ctx,
        cache,
    };
    let header =
        |name, value| SetResponseHeaderLayer::overriding(name, HeaderValue::from_static(value));
    Router::new()
        .route(&path, get(html))
        .route(&json_path, get(json))
        .fallback(not_found)
        .with_state(app)
        .layer(
            ServiceBuilder::new()
                .layer(header(X_CONTENT_TYPE_OPTIONS, "nosniff"))
                .layer(header(REFERRER_POLICY, "same-origin"))
                .layer(header(CONTENT_SECURITY_POLICY, CSP))
                .layer(RequestBodyLimitLayer::new(MAX_REQUEST_BODY))
                .layer(TimeoutLayer::with_status_code(
                    StatusCode::SERVICE_UNAVAILABLE,
                    REQUEST_TIMEOUT,
                ))
                .layer(GlobalConcurrencyLimitLayer::new(MAX_CONCURRENT_REQUESTS)),
        )
}

/// True when `If-None-Match` names `etag` (or is `*`).
fn not_modified(headers: &HeaderMap, etag: &HeaderValue) -> bool {
    let want = etag.as_bytes();
    headers.get_all(IF_NONE_MATCH).iter().any(|v| {
        v.as_bytes().split(|b| *b == b',').any(|tag| {
            let tag = tag.trim_ascii();
            let tag = tag.strip_prefix(b"W/").unwrap_or(tag);
            tag == b"*" || tag == want
        })
    })
}

fn answer(app: &App, headers: &HeaderMap, body: &Cached, content_type: &'static str) -> Response {
    let mut response = if not_modified(headers, &body.etag) {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        let mut r = Response::new(Body::from(body.bytes.clone()));
        r.headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
        r
    };
    let h = response.headers_mut();
    h.insert(ETAG, body.etag.clone());
    h.insert(CACHE_CONTROL, app.max_age.clone());
    response
}

async fn html(State(app): State<App>, headers: HeaderMap) -> Response {
    let r = app.cache.current(&app.ctx);
    answer(&app, &headers, &r.html, "text/html; charset=utf-8")
}

async fn json(State(app): State<App>, headers: HeaderMap) -> Response {
    let r = app.cache.current(&app.ctx);
    let mut response = answer(&app, &headers, &r.json, "application/json");
    response
        .headers_mut()
        .insert(ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    response
}

async fn not_found() -> (StatusCode, &'static str) {
    (StatusCode::NOT_FOUND, "not found\n")
}

/// Serves the page on `listener` until `shutdown` turns true, with the
/// status server's connection limits. Also re-renders once per poll
/// interval when the desired state changed, so "since when" follows the
/// polls even while nobody looks.
pub async fn serve(
    ctx: Arc<Context>,
    listener: tokio::net::TcpListener,
    shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let cache = Arc::new(PublicCache::default());
    let watcher = {
        let (ctx, cache, mut stop) = (ctx.clone(), cache.clone(), shutdown.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(ctx.settings.headscale.poll_interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = stop.wait_for(|s| *s) => break,
                    _ = tick.tick() => { cache.current(&ctx); }
                }
            }
        })
    };
    let result = crate::status::serve_router(router(ctx, cache), listener, shutdown).await;
    watcher.abort();
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::desired::{Entry, NodeState};

    fn desired(states: &[(&str, NodeState)]) -> Arc<Desired> {
        Arc::new(Desired {
            entries: states
                .iter()
                .enumerate()
                .map(|(i, (name, state))| Entry {
                    name: (*name).into(),
                    node_id: i as u64 + 1,
                    user: "u".into(),
                    upstream: "100.64.0.1:80".into(),
                    state: *state,
                    offline_since: None,
                    grace_until: None,
                })
                .collect(),
            skipped: vec![],
        })
    }

    /// Renders once per new desired state, however many requests come;
    /// `If-None-Match` gets 304 until the state changes.
    #[tokio::test]
    async fn rendered_once_per_state_and_revalidated() {
        let mut settings = crate::status::fixtures::settings("127.0.0.1:1", "path");
        settings.public.enabled = true;
        let ctx = Context::new(settings);
        let first = desired(&[("a", NodeState::Online), ("b", NodeState::Offline)]);
        ctx.with_state(|s| s.desired = Some(first.clone()));
        let cache = Arc::new(PublicCache::default());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (stop, rx) = watch::channel(false);
        let server = tokio::spawn(crate::status::serve_router(
            router(ctx.clone(), cache.clone()),
            listener,
            rx,
        ));
        let http = reqwest::Client::new();
        let mut etag = String::new();
        for i in 0..200 {
            let path = if i % 2 == 0 { "/" } else { "/api/tarts.json" };
            let r = http.get(format!("{base}{path}")).send().await.unwrap();
            assert_eq!(r.status(), 200);
            if i == 0 {
                etag = r.headers()["etag"].to_str().unwrap().to_owned();
                assert_eq!(r.headers()["cache-control"], "public, max-age=1");
            }
        }
        assert_eq!(cache.renders(), 1, "200 requests, one state: one render");
        let r = http
            .get(format!("{base}/"))
            .header("if-none-match", &etag)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 304);
        // The same state again (the loop keeps the Arc): no render.
        ctx.with_state(|s| s.desired = Some(first.clone()));
        let _ = http.get(format!("{base}/")).send().await.unwrap();
        assert_eq!(cache.renders(), 1);
        // A new state: one render, a new ETag.
        ctx.with_state(|s| {
            s.desired = Some(desired(&[
                ("a", NodeState::Offline),
                ("b", NodeState::Offline),
            ]))
        });
        let r = http
            .get(format!("{base}/"))
            .header("if-none-match", &etag)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert!(r.text().await.unwrap().contains("0</strong> of <strong>2"));
        assert_eq!(cache.renders(), 2);
        let r = http.get(format!("{base}/nope")).send().await.unwrap();
        assert_eq!(r.status(), 404);
        let _ = stop.send(true);
        let _ = server.await;
    }

    #[test]
    fn if_none_match() {
        let etag = HeaderValue::from_static("\"abc-1\"");
        let mut h = HeaderMap::new();
        assert!(!not_modified(&h, &etag));
        h.insert(
            IF_NONE_MATCH,
            HeaderValue::from_static("\"x\", W/\"abc-1\""),
        );
        assert!(not_modified(&h, &etag));
        h.insert(IF_NONE_MATCH, HeaderValue::from_static("\"abc-2\""));
        assert!(!not_modified(&h, &etag));
        h.insert(IF_NONE_MATCH, HeaderValue::from_static("*"));
        assert!(not_modified(&h, &etag));
    }
}
