//! `Client::capabilities` against mock admin endpoints that answer like
//! Caddy 2.6, 2.7 and 2.8+.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use caddy_client::{Capabilities, ErrorKind};
use common::{
    answer, assert_caddy_error, caddy_error, client, header, line, mock_caddy, on, once, received,
};
use serde_json::json;
use wiremock::matchers::body_string_contains;
use wiremock::{MockServer, ResponseTemplate};

/// A mock that adapts (or refuses, as an older Caddy does) the two probe
/// Caddyfiles and sends the ETag as a header or not.
async fn caddy_like(stream_close_delay: bool, client_ip: bool, etag_header: bool) -> MockServer {
    let server = mock_caddy().await;
    let adapted =
        ResponseTemplate::new(200).set_body_json(json!({"result": {"apps": {"http": {}}}}));
    let stream = if stream_close_delay {
        adapted.clone()
    } else {
        caddy_error(
            400,
            "adapting config using caddyfile adapter: parsing caddyfile tokens for 'reverse_proxy': Caddyfile:3 - Error during parsing: unrecognized subdirective stream_close_delay",
        )
    };
    let ip = if client_ip {
        adapted
    } else {
        caddy_error(400, "adapting config using caddyfile adapter: Caddyfile:2 - Error during parsing: unrecognized matcher name: client_ip")
    };
    on("POST", "/adapt")
        .and(body_string_contains("stream_close_delay"))
        .once(&server, stream)
        .await;
    on("POST", "/adapt")
        .and(body_string_contains("client_ip"))
        .once(&server, ip)
        .await;
    let mut admin = ResponseTemplate::new(200).set_body_json(json!({"listen": "localhost:2019"}));
    if etag_header {
        admin = admin.insert_header("Etag", "\"/config/admin 1a2b3c4d5e6f7a8b\"");
    }
    once(&server, "GET", "/config/admin", admin).await;
    server
}

#[tokio::test]
async fn caddy_2_8_and_later_supports_everything() {
    let server = caddy_like(true, true, true).await;
    let caps = client(&server).capabilities().await.unwrap();
    assert!(
        caps.stream_close_delay && caps.client_ip_matcher && caps.etag_header,
        "{caps:?}"
    );
    assert_eq!(caps.min_version(), "2.8");
}

#[tokio::test]
async fn caddy_2_7_has_the_new_fields_but_sends_the_etag_as_a_trailer() {
    let server = caddy_like(true, true, false).await;
    let caps = client(&server).capabilities().await.unwrap();
    assert!(
        caps.stream_close_delay && caps.client_ip_matcher && !caps.etag_header,
        "{caps:?}"
    );
    assert_eq!(caps.min_version(), "2.7");
}

#[tokio::test]
async fn caddy_2_6_supports_none_of_them() {
    let server = caddy_like(false, false, false).await;
    let caps = client(&server).capabilities().await.unwrap();
    assert_eq!(caps, Capabilities::default());
    assert_eq!(caps.min_version(), "2.6");
    assert!(
        !caps.stream_close_delay,
        "2.6 rejects stream_close_delay: it must not be sent"
    );
}

#[tokio::test]
async fn probing_changes_nothing() {
    let server = caddy_like(true, false, true).await;
    let caps = client(&server).capabilities().await.unwrap();
    assert!(caps.stream_close_delay && !caps.client_ip_matcher);
    let reqs = received(&server).await;
    let mut sent: Vec<String> = reqs.iter().map(line).collect();
    sent.sort();
    assert_eq!(
        sent,
        ["GET /config/admin", "POST /adapt", "POST /adapt"],
        "only /adapt and a read: no reload"
    );
    for r in reqs.iter().filter(|r| r.url.path() == "/adapt") {
        assert_eq!(header(r, "content-type"), Some("text/caddyfile"));
    }
}

#[tokio::test]
async fn a_failing_probe_is_an_error_not_a_missing_feature() {
    // Only a 400 from the adapter means "not supported"; anything else is reported.
    for (status, msg, kind) in [
        (500, "internal error", ErrorKind::Api),
        (403, "host not allowed: 10.0.0.1:2019", ErrorKind::Forbidden),
    ] {
        let server = mock_caddy().await;
        answer(&server, "POST", "/adapt", caddy_error(status, msg)).await;
        let err = client(&server).capabilities().await.unwrap_err();
        assert_caddy_error(&err, kind, status, msg);
    }
}
