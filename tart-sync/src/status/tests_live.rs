//! Tests of the status server's live parts over real sockets: the event
//! stream (delivery, filters, the cap, lifetime against the request
//! timeout), the page's own assets and CSP, hostile request lines to the new
//! paths, compression.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::Value;

use super::tests::Server;
use super::*;
use fixtures::{fleet_state, set_state, settings};

/// An open `/api/events` stream: reads its events one by one.
struct EventStream {
    resp: reqwest::Response,
    buf: String,
}

impl EventStream {
    async fn open(server: &Server, query: &str) -> reqwest::Response {
        reqwest::Client::new()
            .get(format!("{}/api/events{query}", server.base))
            .send()
            .await
            .unwrap()
    }

    /// The next event's `data` as JSON (keep-alive comments are skipped), or
    /// `None` when the stream ends or `limit` passes.
    async fn next(&mut self, limit: Duration) -> Option<Value> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let event: String = self.buf.drain(..end + 2).collect();
                let data: String = event
                    .lines()
                    .filter_map(|l| l.strip_prefix("data: "))
                    .collect();
                if !data.is_empty() {
                    return Some(serde_json::from_str(&data).unwrap());
                }
                continue;
            }
            let chunk = tokio::time::timeout_at(deadline, self.resp.chunk()).await;
            match chunk {
                Ok(Ok(Some(bytes))) => self.buf.push_str(&String::from_utf8_lossy(&bytes)),
                _ => return None,
            }
        }
    }
}

fn down_probe() -> crate::health::ProbeResult {
    let now = OffsetDateTime::now_utc();
    crate::health::ProbeResult {
        state: crate::health::ServiceState::Down,
        http_status: None,
        latency: None,
        checked: now,
        since: now,
        error: Some("connect: connection refused".into()),
    }
}

#[tokio::test]
async fn events_deliver_a_change_within_a_second() {
    let ctx = Context::new(settings("127.0.0.1:1", "path"));
    set_state(&ctx, fleet_state(&ctx, OffsetDateTime::now_utc()));
    let server = Server::start(ctx.clone()).await;
    let resp = EventStream::open(&server, "").await;
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    assert_eq!(resp.headers()["content-security-policy"], CSP);
    assert_eq!(resp.headers()["cache-control"], "no-store");
    let mut events = EventStream {
        resp,
        buf: String::new(),
    };
    // Without a page revision: every row of the page first.
    let first = events.next(Duration::from_secs(2)).await.unwrap();
    assert_eq!(first["full"], true);
    assert_eq!(
        first["names"],
        serde_json::json!(["karoo", "meerkat", "rhodes"])
    );
    assert_eq!(first["counts"]["all"], 3);

    let changed = std::time::Instant::now();
    ctx.health.set_probe("rhodes", down_probe());
    let event = events.next(Duration::from_secs(2)).await.unwrap();
    let took = changed.elapsed();
    assert!(took < Duration::from_secs(1), "took {took:?}");
    assert_eq!(event["full"], false);
    assert_eq!(event["rows"].as_array().unwrap().len(), 1, "{event}");
    assert_eq!(event["rows"][0]["name"], "rhodes");
    assert_eq!(event["rows"][0]["service"], "down");
    assert_eq!(event["rows"][0]["error"], "connect: connection refused");
    assert_eq!(event["counts"]["down"], 1);

    // A tailnet change (the loop publishes a new state and bumps).
    let mut state = fleet_state(&ctx, OffsetDateTime::now_utc());
    std::sync::Arc::make_mut(state.desired.as_mut().unwrap())
        .entries
        .remove(1);
    set_state(&ctx, state);
    ctx.health.bump();
    let event = events.next(Duration::from_secs(2)).await.unwrap();
    assert_eq!(event["names"], serde_json::json!(["karoo", "rhodes"]));
    server.shutdown().await;
}

#[tokio::test]
async fn events_follow_the_page_filter_and_revision() {
    let ctx = Context::new(settings("127.0.0.1:1", "path"));
    set_state(&ctx, fleet_state(&ctx, OffsetDateTime::now_utc()));
    let server = Server::start(ctx.clone()).await;
    // The page says which revision it shows; the stream starts from there.
    let (_, _, html) = server.get("/?state=down").await;
    let rev = html
        .split("data-rev=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .unwrap()
        .to_string();
    let mut events = EventStream {
        resp: EventStream::open(&server, &format!("?state=down&rev={rev}")).await,
        buf: String::new(),
    };
    let first = events.next(Duration::from_secs(2)).await.unwrap();
    assert_eq!(
        (
            first["full"].as_bool(),
            first["rows"].as_array().map(Vec::len)
        ),
        (Some(false), Some(0)),
        "{first}"
    );
    ctx.health.set_probe("meerkat", down_probe());
    let event = events.next(Duration::from_secs(2)).await.unwrap();
    assert_eq!(event["names"], serde_json::json!(["meerkat"]));
    assert_eq!(event["rows"][0]["name"], "meerkat");
    // A bad filter is refused.
    let resp = EventStream::open(&server, "?state=sideways").await;
    assert_eq!(resp.status().as_u16(), 400);
    server.shutdown().await;
}

#[tokio::test]
async fn event_streams_are_capped_and_leave_the_server_usable() {
    let ctx = Context::new(settings("127.0.0.1:1", "path"));
    set_state(&ctx, fleet_state(&ctx, OffsetDateTime::now_utc()));
    let server = Server::start(ctx.clone()).await;
    let mut open = Vec::new();
    for _ in 0..events::MAX_EVENT_STREAMS {
        let resp = EventStream::open(&server, "").await;
        assert_eq!(resp.status().as_u16(), 200);
        open.push(resp);
    }
    let refused = EventStream::open(&server, "").await;
    assert_eq!(refused.status().as_u16(), 503);
    assert_eq!(refused.headers()["retry-after"], "5");
    assert!(refused
        .text()
        .await
        .unwrap()
        .contains("live views are open already"));
    // Open streams hold no request slot: the page, JSON and probes still answer.
    for path in ["/", "/api/status", "/healthz", "/static/app.js"] {
        assert_eq!(server.get(path).await.0, StatusCode::OK, "{path}");
    }
    // A closed stream gives its slot back.
    drop(open.pop());
    let mut reopened = false;
    for _ in 0..50 {
        let resp = EventStream::open(&server, "").await;
        if resp.status().is_success() {
            reopened = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(reopened, "the slot of a closed stream was not given back");
    drop(open);
    server.shutdown().await;
}

#[tokio::test]
async fn the_page_loads_only_its_own_assets() {
    let ctx = Context::new(settings("127.0.0.1:1", "path"));
    set_state(&ctx, fleet_state(&ctx, OffsetDateTime::now_utc()));
    let server = Server::start(ctx).await;
    let resp = reqwest::get(format!("{}/", server.base)).await.unwrap();
    let csp = resp.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    // Scripts and styles from the server only, never inline; events from it too.
    for part in [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "connect-src 'self'",
        "frame-ancestors 'none'",
    ] {
        assert!(csp.split("; ").any(|p| p == part), "{part} missing: {csp}");
    }
    assert!(!csp.contains("unsafe"), "{csp}");
    let html = resp.text().await.unwrap();
    let (status, ctype, js) = server.get("/static/app.js").await;
    assert_eq!(
        (status, ctype.as_str()),
        (StatusCode::OK, "text/javascript; charset=utf-8")
    );
    assert!(js.contains("new EventSource(\"/api/events?\""));
    assert!(
        !js.contains("innerHTML") && !js.contains("eval("),
        "no HTML parsed from events"
    );
    let (status, ctype, css) = server.get("/static/page.css").await;
    assert_eq!(
        (status, ctype.as_str()),
        (StatusCode::OK, "text/css; charset=utf-8")
    );
    assert!(css.contains("svg.bar"));
    assert!(html.contains("src=\"/static/app.js\"") && html.contains("href=\"/static/page.css\""));
    server.shutdown().await;
}

#[tokio::test]
async fn an_event_stream_outlives_the_request_timeout() {
    // The 10 s request timeout bounds the time to the answer's head, not a
    // stream's life.
    let ctx = Context::new(settings("127.0.0.1:1", "path"));
    set_state(&ctx, fleet_state(&ctx, OffsetDateTime::now_utc()));
    let server = Server::start(ctx.clone()).await;
    let mut events = EventStream {
        resp: EventStream::open(&server, "").await,
        buf: String::new(),
    };
    assert!(events.next(Duration::from_secs(2)).await.is_some());
    tokio::time::sleep(REQUEST_TIMEOUT + Duration::from_secs(1)).await;
    ctx.health.set_probe("karoo", down_probe());
    let event = events
        .next(Duration::from_secs(2))
        .await
        .expect("the stream was cut after the request timeout");
    assert_eq!(event["rows"][0]["name"], "karoo");
    server.shutdown().await;
}

#[tokio::test]
async fn hostile_request_lines_to_the_new_paths() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let ctx = Context::new(settings("127.0.0.1:1", "path"));
    set_state(&ctx, fleet_state(&ctx, OffsetDateTime::now_utc()));
    let server = Server::start(ctx).await;
    let addr = server.base.trim_start_matches("http://").to_string();
    for (target, want) in [
        ("/static/../../etc/passwd", "404"),
        ("/static/%2e%2e/Cargo.toml", "404"),
        ("/static/app.js/..%2f..%2fmain.rs", "404"),
        ("/api/events?state=%3Cscript%3Ealert(1)%3C/script%3E", "400"),
        ("/api/events?page=-1", "400"),
        ("/api/events?rev=99999999999999999999999", "400"),
        ("/?state=../../etc", "400"),
        ("/?state=down&page=18446744073709551615", "200"),
    ] {
        let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
        s.write_all(
            format!("GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await
        .unwrap();
        let mut answer = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut answer)).await;
        let answer = String::from_utf8_lossy(&answer);
        assert!(
            answer.starts_with(&format!("HTTP/1.1 {want}")),
            "{target}: {answer}"
        );
        let body = answer.split("\r\n\r\n").nth(1).unwrap_or_default();
        if want == "200" {
            // The nearest page: there is one.
            assert!(body.contains("data-page=\"1\""), "{target}: {body}");
        } else {
            assert!(!body.contains("script"), "{target} echoed: {answer}");
        }
        assert!(!answer.contains("root:"), "{target}: {answer}");
    }
    server.shutdown().await;
}

#[tokio::test]
async fn pages_are_gzipped_when_asked_and_event_streams_never() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let ctx = Context::new(settings("127.0.0.1:1", "path"));
    set_state(&ctx, fleet_state(&ctx, OffsetDateTime::now_utc()));
    let server = Server::start(ctx).await;
    let addr = server.base.trim_start_matches("http://").to_string();
    let head = |target: &'static str, gzip: bool| {
        let addr = addr.clone();
        async move {
            let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
            let accept = if gzip {
                "Accept-Encoding: gzip\r\n"
            } else {
                ""
            };
            s.write_all(
                format!(
                    "GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\n{accept}Connection: close\r\n\r\n"
                )
                .as_bytes(),
            )
            .await
            .unwrap();
            let mut buf = vec![0u8; 4096];
            let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
                .await
                .unwrap()
                .unwrap();
            let text = String::from_utf8_lossy(&buf[..n]).to_lowercase();
            text[..text.find("\r\n\r\n").unwrap_or(text.len())].to_string()
        }
    };
    for target in ["/", "/static/app.js", "/static/page.css", "/api/status"] {
        let h = head(target, true).await;
        assert!(h.contains("content-encoding: gzip"), "{target}: {h}");
        // The security headers stay.
        assert!(
            h.contains("content-security-policy: default-src 'none'"),
            "{target}: {h}"
        );
        let h = head(target, false).await;
        assert!(!h.contains("content-encoding"), "{target}: {h}");
    }
    let h = head("/api/events", true).await;
    assert!(h.starts_with("http/1.1 200"), "{h}");
    assert!(h.contains("content-type: text/event-stream"), "{h}");
    assert!(
        !h.contains("content-encoding"),
        "an event stream must not be buffered by a compressor: {h}"
    );
    server.shutdown().await;
}
