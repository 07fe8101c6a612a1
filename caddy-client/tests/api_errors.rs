//! Every shape of error Caddy's admin API answers with, and failures of the
//! connection itself, mapped to the same [`ErrorKind`] on every version; plus
//! what the client must never do (send `Origin`/`Sec-Fetch-Mode`, follow
//! redirects).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::{Ipv4Addr, TcpListener};
use std::time::{Duration, Instant};

use caddy_client::model::Route;
use caddy_client::{Client, Error, ErrorKind};
use common::{
    answer, assert_caddy_error, caddy_error, client, client_with_timeouts, header, line,
    mock_caddy, ok_empty, once, received, UNEXPECTED,
};
use serde_json::{json, Value};
use wiremock::matchers::{any, header_exists, path};
use wiremock::{Mock, ResponseTemplate};

#[tokio::test]
async fn a_json_error_body_gives_caddys_message() {
    let server = mock_caddy().await;
    let msg = "invalid traversal path at: config/apps/nope/x";
    answer(&server, "GET", "/config/apps/nope/x", caddy_error(400, msg)).await;
    let err = client(&server)
        .config("apps/nope/x")
        .get::<Value>()
        .await
        .unwrap_err();
    assert_caddy_error(&err, ErrorKind::BadRequest, 400, msg);
    let text = err.to_string();
    assert!(
        text.contains("GET /config/apps/nope/x") && text.contains("400") && text.contains(msg),
        "{text}"
    );
}

#[tokio::test]
async fn the_muxs_plain_text_404_is_not_found() {
    let server = mock_caddy().await;
    answer(
        &server,
        "GET",
        "/reverse_proxy/upstreams",
        ResponseTemplate::new(404)
            .set_body_raw("404 page not found\n", "text/plain; charset=utf-8"),
    )
    .await;
    let err = client(&server).upstreams().await.unwrap_err();
    assert_caddy_error(&err, ErrorKind::NotFound, 404, "404 page not found");
}

#[tokio::test]
async fn an_empty_error_body_still_gives_status_and_a_message() {
    let server = mock_caddy().await;
    answer(&server, "GET", "/config/", ResponseTemplate::new(502)).await;
    answer(&server, "DELETE", "/id/gone", ResponseTemplate::new(404)).await;
    answer(&server, "PATCH", "/id/gone", ResponseTemplate::new(412)).await;
    let c = client(&server);

    let err = c.config("").get::<Value>().await.unwrap_err();
    assert_eq!(
        (err.kind(), err.status()),
        (ErrorKind::Api, Some(502)),
        "{err}"
    );
    assert!(
        err.caddy_message()
            .is_some_and(|m| m.contains("502") && m.contains("empty")),
        "{err}"
    );

    let err = c.id("gone").delete().await.unwrap_err();
    assert_eq!(
        (err.kind(), err.status()),
        (ErrorKind::NotFound, Some(404)),
        "{err}"
    );
    let err = c.id("gone").patch(&json!({})).await.unwrap_err();
    assert_eq!(
        (err.kind(), err.status()),
        (ErrorKind::PreconditionFailed, Some(412)),
        "{err}"
    );
}

#[tokio::test]
async fn a_200_null_is_none_for_an_option_and_a_decode_error_for_a_struct() {
    let server = mock_caddy().await;
    answer(
        &server,
        "GET",
        "/id/rhodes/handle/0",
        ResponseTemplate::new(200).set_body_raw("null", "application/json"),
    )
    .await;
    let c = client(&server);
    let none: Option<Route> = c.id("rhodes").at("handle/0").get().await.unwrap();
    assert_eq!(none, None);
    let err = c
        .id("rhodes")
        .at("handle/0")
        .get::<Route>()
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Decode, "{err}");
    assert_eq!(err.status(), None);
    assert!(
        err.to_string().contains("null"),
        "the error shows the body: {err}"
    );
}

#[tokio::test]
async fn a_body_that_is_not_json_is_a_decode_error() {
    let server = mock_caddy().await;
    answer(
        &server,
        "GET",
        "/config/",
        ResponseTemplate::new(200).set_body_raw("<html>proxy login</html>", "text/html"),
    )
    .await;
    let err = client(&server).config("").get::<Value>().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Decode, "{err}");
    assert!(
        err.to_string().contains("<html>proxy login</html>"),
        "{err}"
    );
}

/// Caddy 2.6.2 answers several conditions with a plain 500 that 2.7.5+
/// answers with a proper status; both map to the same kind.
#[tokio::test]
async fn caddy_2_6_500s_map_to_the_same_kinds_as_newer_statuses() {
    let cases: [(&str, &str, u16, u16, &str, ErrorKind); 5] = [
        (
            "PATCH",
            "/config/apps/http/servers/nope",
            500,
            404,
            "[/config/apps/http/servers/nope] key does not exist: nope",
            ErrorKind::NotFound,
        ),
        (
            "PUT",
            "/config/apps/http/servers/srv0",
            500,
            409,
            "[/config/apps/http/servers/srv0] key already exists: srv0",
            ErrorKind::Conflict,
        ),
        (
            "PATCH",
            "/config/apps/http/servers/srv0/routes/9",
            500,
            500,
            "[/config/apps/http/servers/srv0/routes/9] array index out of bounds: 9",
            ErrorKind::NotFound,
        ),
        (
            "POST",
            "/config/apps/http/servers/srv0/routes/0/handle/0/bogus",
            500,
            500,
            "loading new config: loading http app module: provision http: server srv0: setting up route handlers: route 0: loading handler modules: position 0: loading module 'reverse_proxy': decoding module config: http.handlers.reverse_proxy: json: unknown field \"bogus\"",
            ErrorKind::ConfigRejected,
        ),
        (
            "PATCH",
            "/config/apps/http/servers/srv0/routes/0/handle/0",
            500,
            500,
            "loading new config: loading http app module: provision http: server srv0: setting up route handlers: route 0: loading handler modules: position 0: loading module 'reverse_proxy': decoding module config: http.handlers.reverse_proxy: json: unknown field \"stream_close_delay\"",
            ErrorKind::ConfigRejected,
        ),
    ];
    for (verb, at, old_status, new_status, msg, kind) in cases {
        for status in [old_status, new_status] {
            let server = mock_caddy().await;
            answer(&server, verb, at, caddy_error(status, msg)).await;
            let c = client(&server);
            let req = c.config(at.trim_start_matches("/config/"));
            let body = json!({"listen": [":1"]});
            let err = match verb {
                "PATCH" => req.patch(&body).await,
                "PUT" => req.put(&body).await,
                _ => req.post(&body).await,
            }
            .unwrap_err();
            assert_caddy_error(&err, kind, status, msg);
            assert!(err.to_string().contains(&format!("{verb} {at}")), "{err}");
        }
    }
}

#[tokio::test]
async fn a_conflict_suggests_patch_and_a_rejected_config_says_the_old_one_stays() {
    let server = mock_caddy().await;
    answer(
        &server,
        "PUT",
        "/config/apps/http/servers/srv0",
        caddy_error(
            409,
            "[/config/apps/http/servers/srv0] key already exists: srv0",
        ),
    )
    .await;
    answer(
        &server,
        "POST",
        "/config/apps/http/servers/srv0",
        caddy_error(500, "loading new config: http: json: unknown field \"x\""),
    )
    .await;
    let c = client(&server);
    let err = c
        .config("apps/http/servers/srv0")
        .put(&json!({}))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("patch()"), "{err}");
    let err = c
        .config("apps/http/servers/srv0")
        .post(&json!({"x": 1}))
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("previous config is still active"),
        "{err}"
    );
}

#[tokio::test]
async fn a_412_is_precondition_failed() {
    let server = mock_caddy().await;
    let msg = "If-Match header did not match current config hash";
    answer(&server, "PATCH", "/id/rhodes", caddy_error(412, msg)).await;
    let err = client(&server)
        .id("rhodes")
        .if_match(&caddy_client::Etag::new("\"/config/apps/http 00000000\""))
        .patch(&json!({}))
        .await
        .unwrap_err();
    assert_caddy_error(&err, ErrorKind::PreconditionFailed, 412, msg);
    assert!(err.is_precondition_failed());
    assert!(!err.is_unreachable());
}

#[tokio::test]
async fn a_403_is_forbidden() {
    for msg in [
        "host not allowed: example.org",
        "client is not allowed to access from origin 'http://evil'",
    ] {
        let server = mock_caddy().await;
        answer(&server, "GET", "/config/", caddy_error(403, msg)).await;
        let err = client(&server).config("").get::<Value>().await.unwrap_err();
        assert_caddy_error(&err, ErrorKind::Forbidden, 403, msg);
        assert!(
            err.to_string().contains("admin.origins"),
            "the message hints at the fix: {err}"
        );
    }
}

#[tokio::test]
async fn any_other_status_is_api_with_status_and_message() {
    let server = mock_caddy().await;
    answer(
        &server,
        "GET",
        "/config/",
        caddy_error(405, "method not allowed"),
    )
    .await;
    let err = client(&server).config("").get::<Value>().await.unwrap_err();
    assert_caddy_error(&err, ErrorKind::Api, 405, "method not allowed");
}

#[tokio::test]
async fn an_unexpected_request_fails_loudly() {
    // The shared catch-all mock: a request no test mocked gets 599, never a 2xx.
    let server = mock_caddy().await;
    let err = client(&server).config("apps").delete().await.unwrap_err();
    assert_eq!(
        (err.kind(), err.status()),
        (ErrorKind::Api, Some(UNEXPECTED)),
        "{err}"
    );
    assert!(err.to_string().contains("unexpected request"), "{err}");
}

#[tokio::test]
async fn a_slow_read_times_out_after_the_read_timeout() {
    let server = mock_caddy().await;
    answer(
        &server,
        "GET",
        "/config/",
        ResponseTemplate::new(200)
            .set_body_json(json!({}))
            .set_delay(Duration::from_secs(5)),
    )
    .await;
    let c = client_with_timeouts(&server, Duration::from_millis(200), Duration::from_secs(60));
    let start = Instant::now();
    let err = c.config("").get::<Value>().await.unwrap_err();
    let took = start.elapsed();
    assert_eq!(err.kind(), ErrorKind::Timeout, "{err}");
    assert!(err.is_unreachable());
    assert!(
        matches!(err, Error::Timeout { after, .. } if after == Duration::from_millis(200)),
        "{err:?}"
    );
    assert!(
        took < Duration::from_secs(3),
        "gave up after {took:?}, not 200 ms"
    );
    assert!(err.to_string().contains("GET /config/"), "{err}");
    // A timeout is not retried: the request may still be running in Caddy.
    assert_eq!(received(&server).await.len(), 1);
}

#[tokio::test]
async fn a_slow_write_times_out_after_the_write_timeout() {
    let server = mock_caddy().await;
    answer(
        &server,
        "POST",
        "/load",
        ok_empty().set_delay(Duration::from_secs(5)),
    )
    .await;
    answer(
        &server,
        "GET",
        "/config/",
        ResponseTemplate::new(200)
            .set_body_json(json!({}))
            .set_delay(Duration::from_millis(400)),
    )
    .await;
    // Reads may take 10 s here, writes only 200 ms.
    let c = client_with_timeouts(&server, Duration::from_secs(10), Duration::from_millis(200));
    let start = Instant::now();
    let err = c.load(&json!({})).await.unwrap_err();
    assert!(
        matches!(err, Error::Timeout { after, .. } if after == Duration::from_millis(200)),
        "{err:?}"
    );
    assert!(start.elapsed() < Duration::from_secs(3));
    // The read timeout applies to reads: a 400 ms GET succeeds.
    c.config("").get::<Value>().await.unwrap();
}

#[tokio::test]
async fn a_closed_port_is_a_transport_error() {
    // Bind a free loopback port and release it: nothing listens there.
    let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let c = Client::new(&format!("127.0.0.1:{port}")).unwrap();
    let start = Instant::now();
    for err in [
        c.config("").get::<Value>().await.unwrap_err(),
        c.load(&json!({})).await.unwrap_err(),
    ] {
        assert_eq!(err.kind(), ErrorKind::Transport, "{err}");
        assert!(err.is_unreachable());
        assert_eq!(err.status(), None);
        assert!(err.to_string().contains("cannot reach Caddy"), "{err}");
        assert!(
            std::error::Error::source(&err).is_some(),
            "the cause is kept"
        );
    }
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "refused connections fail fast"
    );
}

#[tokio::test]
async fn the_client_never_sends_origin_or_sec_fetch_mode() {
    // Caddy 2.11 refuses any request carrying either header unless its origin is allowed.
    let server = mock_caddy().await;
    for h in ["origin", "sec-fetch-mode"] {
        Mock::given(header_exists(h))
            .respond_with(caddy_error(
                403,
                "client is not allowed to access from origin",
            ))
            .with_priority(1)
            .expect(0)
            .named(format!("request with {h}"))
            .mount(&server)
            .await;
    }
    Mock::given(any())
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"result": {}})))
        .mount(&server)
        .await;
    let c = client(&server);
    c.config("").get::<Value>().await.unwrap();
    c.config("apps").get_with_etag::<Value>().await.unwrap_err(); // no ETag: a decode error, but it was sent
    c.config("apps/http").post(&json!({})).await.unwrap();
    c.config("apps/http").put(&json!({})).await.unwrap();
    c.id("x").patch(&json!({})).await.unwrap();
    c.id("x").delete().await.unwrap();
    c.load(&json!({})).await.unwrap();
    c.adapt_as::<Value>(":80").await.unwrap();
    c.stop().await.unwrap();
    let reqs = received(&server).await;
    assert_eq!(reqs.len(), 9);
    for r in &reqs {
        assert_eq!(header(r, "origin"), None, "{}", line(r));
        assert_eq!(header(r, "sec-fetch-mode"), None, "{}", line(r));
        // The Host is the admin address dialled, which Caddy's host check allows.
        assert_eq!(
            header(r, "host"),
            Some(server.address().to_string().as_str()),
            "{}",
            line(r)
        );
    }
}

#[tokio::test]
async fn redirects_are_never_followed() {
    let server = mock_caddy().await;
    for (verb, at) in [
        ("GET", "/config/apps"),
        ("POST", "/config/apps/http/servers"),
        ("POST", "/load"),
    ] {
        once(
            &server,
            verb,
            at,
            ResponseTemplate::new(307).insert_header("Location", "/moved/"),
        )
        .await;
    }
    Mock::given(path("/moved/"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"moved": true})))
        .expect(0)
        .named("redirect target")
        .mount(&server)
        .await;
    let c = client(&server);
    let errs = [
        c.config("apps").get::<Value>().await.unwrap_err(),
        c.config("apps/http/servers")
            .post(&json!({"srv0": {}}))
            .await
            .unwrap_err(),
        c.load(&json!({})).await.unwrap_err(),
    ];
    for err in errs {
        assert_eq!(
            (err.kind(), err.status()),
            (ErrorKind::Api, Some(307)),
            "{err}"
        );
    }
    let sent: Vec<String> = received(&server).await.iter().map(line).collect();
    assert_eq!(
        sent,
        [
            "GET /config/apps",
            "POST /config/apps/http/servers",
            "POST /load"
        ]
    );
}

// An ETag that is not a valid header value must not be reported as Transport
// ("is Caddy running?") and retried.
#[tokio::test]
async fn an_unusable_etag_is_invalid_input_not_an_unreachable_caddy() {
    let server = mock_caddy().await;
    let etag = caddy_client::Etag::new("\"/config/ a\nb\"");
    let err = client(&server)
        .id("x")
        .if_match(&etag)
        .patch(&json!({}))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    assert!(!err.is_unreachable(), "{err}");
    assert!(received(&server).await.is_empty());
}
