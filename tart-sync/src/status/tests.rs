//! Tests of the status server: routes, headers, limits, the Host
//! allow-list and the connection handling, over real sockets.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::Value;
use time::format_description::well_known::Rfc3339;

use super::*;
use fixtures::{fleet_state, set_state, settings, HOSTILE};

pub(super) struct Server {
    pub(super) base: String,
    ctx: Arc<Context>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Server {
    pub(super) async fn start(ctx: Arc<Context>) -> Server {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (stop, rx) = watch::channel(false);
        let task = tokio::spawn(serve(ctx.clone(), listener, rx));
        Server {
            base,
            ctx,
            stop,
            task,
        }
    }

    pub(super) async fn get(&self, path: &str) -> (StatusCode, String, String) {
        let resp = reqwest::get(format!("{}{path}", self.base)).await.unwrap();
        let status = StatusCode::from_u16(resp.status().as_u16()).unwrap();
        let ctype = resp
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        (status, ctype, resp.text().await.unwrap())
    }

    pub(super) async fn shutdown(self) {
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

    // The page gets the same report (Caddy's per-address numbers are only
    // in the JSON: the page has no column that is empty for every TART).
    let (status, ctype, html) = server.get("/").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(ctype, "text/html; charset=utf-8");
    assert!(html.contains("data-name=\"rhodes\" data-state=\"online\""));

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

/// Reads from `stream` until the server closes it (or `limit` passes);
/// how long that took, `None` if it stayed open.
async fn closed_within(stream: &mut tokio::net::TcpStream, limit: Duration) -> Option<Duration> {
    use tokio::io::AsyncReadExt;
    let started = std::time::Instant::now();
    let mut buf = [0u8; 4096];
    let read_all = async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(limit, read_all)
        .await
        .ok()
        .map(|()| started.elapsed())
}

async fn send_with_host(server: &Server, host: &str, path: &str) -> (u16, String) {
    let resp = reqwest::Client::new()
        .get(format!("{}{path}", server.base))
        .header("host", host)
        .send()
        .await
        .unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap())
}

#[tokio::test]
async fn a_foreign_host_is_refused() {
    let ctx = Context::new(crate::config::Settings {
        status: crate::config::StatusSettings {
            listen: "127.0.0.1:9180".parse().unwrap(),
            allowed_hosts: vec![crate::config::HostPattern::parse("status.example.org").unwrap()],
        },
        ..settings("127.0.0.1:1", "path")
    });
    set_state(&ctx, fleet_state(&ctx, OffsetDateTime::now_utc()));
    let server = Server::start(ctx).await;
    // DNS rebinding: a page on evil.example whose name now resolves to
    // this machine sends its own name.
    for path in ["/", "/api/status", "/metrics", "/nope"] {
        for host in [
            "evil.example",
            "evil.example:9180",
            "localhost.evil.example",
        ] {
            let (status, body) = send_with_host(&server, host, path).await;
            assert_eq!(status, 421, "{host}{path}: {body}");
            assert!(body.contains("status.allowed_hosts"), "{body}");
            assert!(
                !body.contains("rhodes") && !body.contains("100.64."),
                "{body}"
            );
        }
    }
    // Allowed: loopback names on any port, the configured name.
    for host in [
        "localhost:9180",
        "127.0.0.1:4444",
        "[::1]",
        "status.example.org",
        "STATUS.example.org:443",
    ] {
        let (status, body) = send_with_host(&server, host, "/api/status").await;
        assert_eq!(status, 200, "{host}: {body}");
        assert!(body.contains("rhodes"));
    }
    // Probes work with any Host; /readyz then keeps its reason for itself.
    assert_eq!(
        send_with_host(&server, "10.9.8.7:9180", "/healthz").await,
        (200, "ok\n".into())
    );
    let mut state = fleet_state(&server_ctx(&server), OffsetDateTime::now_utc());
    state.caddies[0].last_error = Some("connection refused".into());
    set_state(&server_ctx(&server), state);
    assert_eq!(
        send_with_host(&server, "10.9.8.7:9180", "/readyz").await,
        (503, "not ready\n".into())
    );
    let (status, body) = send_with_host(&server, "localhost", "/readyz").await;
    assert_eq!(status, 503);
    assert!(body.contains("connection refused"), "{body}");
    server.shutdown().await;
}

fn server_ctx(server: &Server) -> Arc<Context> {
    server.ctx.clone()
}

#[tokio::test]
async fn one_caddy_query_per_second_however_many_requests() {
    use wiremock::matchers::{method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};
    let caddy = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/reverse_proxy/upstreams"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(serde_json::json!([]))
                .set_delay(Duration::from_millis(200)),
        )
        .mount(&caddy)
        .await;
    let ctx = Context::new(settings(&caddy.uri(), "path"));
    set_state(&ctx, fleet_state(&ctx, OffsetDateTime::now_utc()));
    let server = Server::start(ctx).await;
    let queries = || async { caddy.received_requests().await.unwrap().len() };

    // Twenty at once, page and JSON: they wait for one query.
    let requests: Vec<_> = (0..20)
        .map(|i| {
            let url = format!(
                "{}{}",
                server.base,
                if i % 2 == 0 { "/" } else { "/api/status" }
            );
            tokio::spawn(async move { reqwest::get(url).await.unwrap().status().as_u16() })
        })
        .collect();
    for r in requests {
        assert_eq!(r.await.unwrap(), 200);
    }
    assert_eq!(queries().await, 1);
    // Within the second: the same report.
    assert_eq!(server.get("/api/status").await.0, StatusCode::OK);
    assert_eq!(queries().await, 1);
    // A second later: a new one.
    tokio::time::sleep(report::REPORT_MAX_AGE + Duration::from_millis(100)).await;
    assert_eq!(server.get("/").await.0, StatusCode::OK);
    assert_eq!(queries().await, 2);
    server.shutdown().await;
}

#[tokio::test]
async fn api_status_pages_over_http() {
    let ctx = Context::new(settings("127.0.0.1:1", "path"));
    set_state(&ctx, fleet_state(&ctx, OffsetDateTime::now_utc()));
    let server = Server::start(ctx).await;
    let (status, _, body) = server.get("/api/status?offset=1&limit=1").await;
    assert_eq!(status, StatusCode::OK);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (
            v["total"].as_u64(),
            v["offset"].as_u64(),
            v["limit"].as_u64()
        ),
        (Some(3), Some(1), Some(1))
    );
    assert_eq!(v["nodes"].as_array().unwrap().len(), 1);
    assert_eq!(v["nodes"][0]["name"], "meerkat");
    let (status, _, _) = server.get("/api/status?limit=lots").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _, page) = server.get("/?page=7").await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("data-name=\"rhodes\""));
    server.shutdown().await;
}

#[tokio::test]
async fn silent_and_slow_connections_are_closed_after_the_header_timeout() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let ctx = Context::new(settings("127.0.0.1:1", "path"));
    let server = Server::start(ctx).await;
    let addr = server.base.trim_start_matches("http://").to_string();
    let limit = HEADER_READ_TIMEOUT + Duration::from_secs(2);
    // Says nothing.
    let silent = tokio::net::TcpStream::connect(&addr).await.unwrap();
    // Half a request head.
    let mut slow = tokio::net::TcpStream::connect(&addr).await.unwrap();
    slow.write_all(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        .await
        .unwrap();
    // One whole request, answered, then idle on a kept-alive connection.
    let mut kept = tokio::net::TcpStream::connect(&addr).await.unwrap();
    kept.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .await
        .unwrap();
    let mut answer = [0u8; 1024];
    let n = kept.read(&mut answer).await.unwrap();
    assert!(
        answer[..n].starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&answer[..n])
    );
    let kept_idle_since = std::time::Instant::now();

    let (a, b, c) = tokio::join!(
        async move {
            let mut s = silent;
            closed_within(&mut s, limit).await
        },
        async move { closed_within(&mut slow, limit).await },
        async move { closed_within(&mut kept, limit).await },
    );
    for (what, took) in [("silent", a), ("half a head", b), ("idle kept-alive", c)] {
        let took = took.unwrap_or_else(|| panic!("{what}: still open after {limit:?}"));
        assert!(
            took >= HEADER_READ_TIMEOUT - Duration::from_millis(500),
            "{what}: closed after {took:?}, before the timeout"
        );
    }
    assert!(kept_idle_since.elapsed() < limit + Duration::from_secs(1));
    server.shutdown().await;
}

#[tokio::test]
async fn connections_over_the_cap_are_closed_at_once() {
    let ctx = Context::new(settings("127.0.0.1:1", "path"));
    let server = Server::start(ctx).await;
    let addr = server.base.trim_start_matches("http://").to_string();
    let mut held = Vec::new();
    for _ in 0..MAX_CONNECTIONS {
        held.push(tokio::net::TcpStream::connect(&addr).await.unwrap());
    }
    let mut extra = Vec::new();
    for _ in 0..20 {
        extra.push(tokio::net::TcpStream::connect(&addr).await.unwrap());
    }
    for s in &mut extra {
        assert!(
            closed_within(s, Duration::from_secs(2)).await.is_some(),
            "a connection over the cap was kept"
        );
    }
    // The first ones are still open (they are only closed by the header timeout).
    let mut first = held.swap_remove(0);
    assert!(closed_within(&mut first, Duration::from_millis(300))
        .await
        .is_none());
    drop((held, first));
    // Once they are gone, new connections are served again.
    let answered = crate::status::tests::eventually_ok(&server.base).await;
    assert!(answered, "no answer after the connections were closed");
    server.shutdown().await;
}

async fn eventually_ok(base: &str) -> bool {
    for _ in 0..50 {
        if let Ok(r) = reqwest::get(format!("{base}/healthz")).await {
            if r.status().is_success() {
                return true;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

#[tokio::test]
async fn serve_stops_when_told() {
    let ctx = Context::new(settings("127.0.0.1:1", "path"));
    let server = Server::start(ctx).await;
    let base = server.base.clone();
    server.shutdown().await;
    assert!(reqwest::get(format!("{base}/healthz")).await.is_err());
}
