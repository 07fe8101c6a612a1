//! `/config/[path]` and `/id/<id>[/path]` against a mock admin endpoint: the
//! method, URL, headers and body each call sends, and how answers decode.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use caddy_client::model::{Config, Handler, Route, Server};
use caddy_client::{ErrorKind, Etag};
use common::{
    answer, caddy_error, client, header, line, mock_caddy, ok_empty, on, once, received, resource,
};
use serde_json::{json, Value};
use wiremock::matchers::{body_json, header as header_is};
use wiremock::ResponseTemplate;

const ETAG: &str = "\"/config/apps/http 9f86d081884c7d65\"";

#[tokio::test]
async fn root_is_read_from_config_slash_into_the_typed_model_losslessly() {
    let server = mock_caddy().await;
    let fixture = resource("config.json");
    once(
        &server,
        "GET",
        "/config/",
        ResponseTemplate::new(200).set_body_json(&fixture),
    )
    .await;

    let config: Config = client(&server).config("").get().await.unwrap();

    let rhodes = config.find_route_by_id("rhodes").expect("route rhodes");
    assert_eq!(rhodes.paths(), ["/rhodes/*"]);
    assert_eq!(rhodes.upstream_dials(), ["100.64.0.1:80"]);
    // What the model does not know (templates handler, automatic_https, tls app) survives.
    assert_eq!(serde_json::to_value(&config).unwrap(), fixture);

    let reqs = received(&server).await;
    assert_eq!(reqs.len(), 1);
    assert!(reqs[0].body.is_empty(), "a GET has no body");
    for h in ["content-type", "if-match", "cache-control"] {
        assert_eq!(header(&reqs[0], h), None, "a plain GET sends no {h}");
    }
}

#[tokio::test]
async fn paths_are_trimmed_and_split_on_slashes() {
    let server = mock_caddy().await;
    on("GET", "/config/apps/http")
        .expect(
            &server,
            ResponseTemplate::new(200).set_body_json(json!({"servers": {}})),
            3,
        )
        .await;
    let c = client(&server);
    for p in ["apps/http", "/apps/http/", "apps//http"] {
        let v: Value = c
            .config(p)
            .get()
            .await
            .unwrap_or_else(|e| panic!("{p:?}: {e}"));
        assert_eq!(v, json!({"servers": {}}), "{p:?}");
    }
}

#[tokio::test]
async fn by_id_and_below_an_id() {
    let server = mock_caddy().await;
    let route = resource("config.json")["apps"]["http"]["servers"]["srv0"]["routes"][0].clone();
    once(
        &server,
        "GET",
        "/id/rhodes",
        ResponseTemplate::new(200).set_body_json(&route),
    )
    .await;
    once(
        &server,
        "GET",
        "/id/rhodes/handle/0/routes/1/handle/0/upstreams/0/dial",
        ResponseTemplate::new(200).set_body_json("100.64.0.1:80"),
    )
    .await;
    let c = client(&server);

    let typed: Route = c.id("rhodes").get().await.unwrap();
    assert_eq!(typed.id().as_deref(), Some("rhodes"));
    let Handler::Subroute(sub) = &typed.handle[0] else {
        panic!("expected a subroute: {typed:?}")
    };
    assert_eq!(sub.routes.len(), 2);

    let dial: String = c
        .id("rhodes")
        .at("handle/0/routes/1/handle/0/upstreams/0/dial")
        .get()
        .await
        .unwrap();
    assert_eq!(dial, "100.64.0.1:80");
}

#[tokio::test]
async fn a_missing_final_key_reads_as_none() {
    let server = mock_caddy().await;
    // Caddy answers 200 `null` for a missing final key.
    answer(
        &server,
        "GET",
        "/config/apps/http/servers/nope",
        ResponseTemplate::new(200).set_body_raw("null\n", "application/json"),
    )
    .await;
    let c = client(&server);
    let server_cfg: Option<Server> = c.config("apps/http/servers/nope").get().await.unwrap();
    assert_eq!(server_cfg, None);
    let raw: Value = c.config("apps/http/servers/nope").get().await.unwrap();
    assert_eq!(raw, Value::Null);
}

#[tokio::test]
async fn get_with_etag_returns_caddys_etag_verbatim() {
    let server = mock_caddy().await;
    answer(
        &server,
        "GET",
        "/config/apps/http",
        ResponseTemplate::new(200)
            .insert_header("Etag", ETAG)
            .set_body_json(json!({"servers": {}})),
    )
    .await;
    let (value, etag) = client(&server)
        .config("apps/http")
        .get_with_etag::<Value>()
        .await
        .unwrap();
    assert_eq!(value, json!({"servers": {}}));
    assert_eq!(etag.as_str(), ETAG, "quotes included, unchanged");
    assert_eq!(etag.to_string(), ETAG);
    assert_eq!(etag.path(), "/config/apps/http");
}

#[tokio::test]
async fn get_with_etag_without_any_etag_is_a_decode_error() {
    let server = mock_caddy().await;
    answer(
        &server,
        "GET",
        "/config/apps/http",
        ResponseTemplate::new(200).set_body_json(json!({})),
    )
    .await;
    let err = client(&server)
        .config("apps/http")
        .get_with_etag::<Value>()
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Decode, "{err}");
    assert!(
        err.to_string().contains("ETag"),
        "the message says what is missing: {err}"
    );
}

#[tokio::test]
async fn post_put_patch_send_the_body_as_json() {
    let server = mock_caddy().await;
    let route = Route::reverse_proxy_path("/rhodes", "100.64.0.1:80").with_id("rhodes");
    let route_json = serde_json::to_value(&route).unwrap();
    for (verb, at) in [
        ("POST", "/config/apps/http/servers/srv0/routes"),
        ("PUT", "/config/apps/http/servers/srv0/routes/0"),
        ("PATCH", "/id/rhodes"),
    ] {
        on(verb, at)
            .and(header_is("content-type", "application/json"))
            .and(body_json(&route_json))
            .once(&server, ok_empty())
            .await;
    }
    let c = client(&server);
    c.config("apps/http/servers/srv0/routes")
        .post(&route)
        .await
        .unwrap();
    c.config("apps/http/servers/srv0/routes/0")
        .put(&route)
        .await
        .unwrap();
    c.id("rhodes").patch(&route).await.unwrap();

    // Scalars are JSON too: a string body is sent quoted.
    on(
        "PATCH",
        "/id/rhodes/handle/0/routes/1/handle/0/upstreams/0/dial",
    )
    .and(body_json("100.64.0.2:80"))
    .once(&server, ok_empty())
    .await;
    c.id("rhodes")
        .at("handle/0/routes/1/handle/0/upstreams/0/dial")
        .patch("100.64.0.2:80")
        .await
        .unwrap();
}

#[tokio::test]
async fn delete_sends_no_body() {
    let server = mock_caddy().await;
    once(&server, "DELETE", "/id/rhodes", ok_empty()).await;
    client(&server).id("rhodes").delete().await.unwrap();
    let reqs = received(&server).await;
    assert_eq!(reqs.len(), 1);
    assert!(reqs[0].body.is_empty());
    assert_eq!(header(&reqs[0], "content-type"), None);
}

#[tokio::test]
async fn if_match_sends_the_etag_verbatim_and_only_when_asked() {
    let server = mock_caddy().await;
    answer(
        &server,
        "GET",
        "/config/apps/http",
        ResponseTemplate::new(200)
            .insert_header("Etag", ETAG)
            .set_body_json(json!({})),
    )
    .await;
    answer(
        &server,
        "PATCH",
        "/config/apps/http/servers/srv0/listen",
        ok_empty(),
    )
    .await;
    answer(&server, "DELETE", "/id/rhodes", ok_empty()).await;
    let c = client(&server);

    let (_, etag) = c
        .config("apps/http")
        .get_with_etag::<Value>()
        .await
        .unwrap();
    // A parent's tag guards a change below it.
    c.config("apps/http/servers/srv0/listen")
        .if_match(&etag)
        .patch(&[":443"])
        .await
        .unwrap();
    c.id("rhodes")
        .if_match(&Etag::new(ETAG))
        .delete()
        .await
        .unwrap();
    c.config("apps/http/servers/srv0/listen")
        .patch(&[":8443"])
        .await
        .unwrap();

    let reqs = received(&server).await;
    let if_match: Vec<(String, Option<&str>)> = reqs
        .iter()
        .map(|r| (line(r), header(r, "if-match")))
        .collect();
    assert_eq!(
        if_match,
        [
            ("GET /config/apps/http".to_string(), None),
            (
                "PATCH /config/apps/http/servers/srv0/listen".to_string(),
                Some(ETAG)
            ),
            ("DELETE /id/rhodes".to_string(), Some(ETAG)),
            (
                "PATCH /config/apps/http/servers/srv0/listen".to_string(),
                None
            ),
        ]
    );
}

#[tokio::test]
async fn force_reload_sends_cache_control_must_revalidate() {
    let server = mock_caddy().await;
    answer(
        &server,
        "POST",
        "/config/apps/http/grace_period",
        ok_empty(),
    )
    .await;
    let c = client(&server);
    c.config("apps/http/grace_period")
        .force_reload()
        .post(&"5s")
        .await
        .unwrap();
    c.config("apps/http/grace_period")
        .post(&"5s")
        .await
        .unwrap();
    let reqs = received(&server).await;
    assert_eq!(header(&reqs[0], "cache-control"), Some("must-revalidate"));
    assert_eq!(
        header(&reqs[1], "cache-control"),
        None,
        "no forced reload unless asked"
    );
}

#[tokio::test]
async fn keys_and_ids_are_percent_encoded_per_segment() {
    let server = mock_caddy().await;
    let cases = [
        (
            client(&server)
                .config("apps/http/servers/my srv?#1/routes")
                .url_path(),
            "/config/apps/http/servers/my%20srv%3F%231/routes",
        ),
        (
            client(&server)
                .config("apps/http/servers/100%/listen")
                .url_path(),
            "/config/apps/http/servers/100%25/listen",
        ),
        (
            client(&server)
                .config("apps/http/servers/ünï/routes")
                .url_path(),
            "/config/apps/http/servers/%C3%BCn%C3%AF/routes",
        ),
        (
            client(&server).id("tart sync").at("handle/0").url_path(),
            "/id/tart%20sync/handle/0",
        ),
        (client(&server).id("a{b}|c").url_path(), "/id/a%7Bb%7D%7Cc"),
    ];
    for (built, expected) in &cases {
        assert_eq!(built, expected);
    }

    // And the encoded path is what goes over the wire, not re-encoded or decoded.
    for (_, expected) in &cases {
        once(
            &server,
            "GET",
            expected,
            ResponseTemplate::new(200).set_body_json(json!("found")),
        )
        .await;
    }
    let c = client(&server);
    let got: Vec<String> = vec![
        c.config("apps/http/servers/my srv?#1/routes")
            .get()
            .await
            .unwrap(),
        c.config("apps/http/servers/100%/listen")
            .get()
            .await
            .unwrap(),
        c.config("apps/http/servers/ünï/routes")
            .get()
            .await
            .unwrap(),
        c.id("tart sync").at("handle/0").get().await.unwrap(),
        c.id("a{b}|c").get().await.unwrap(),
    ];
    assert!(got.iter().all(|g| g == "found"), "{got:?}");
}

#[tokio::test]
async fn errors_name_the_request_that_failed() {
    let server = mock_caddy().await;
    answer(
        &server,
        "PATCH",
        "/id/rhodes",
        caddy_error(404, "unknown object ID 'rhodes'"),
    )
    .await;
    let err = client(&server)
        .id("rhodes")
        .patch(&json!({}))
        .await
        .unwrap_err();
    assert!(err.is_not_found(), "{err}");
    let text = err.to_string();
    assert!(text.contains("PATCH /id/rhodes"), "{text}");
    assert!(text.contains("unknown object ID 'rhodes'"), "{text}");
}

// The URL parser resolves `.` and `..` segments: unchecked, `config("../stop")`
// would send `POST /stop` and stop Caddy, and
// `config("apps/http/servers/../../../../load")` would reach `/load`.
#[tokio::test]
async fn dot_segments_never_escape_the_config_tree() {
    let server = mock_caddy().await;
    on("POST", "/stop").expect(&server, ok_empty(), 0).await;
    on("POST", "/load").expect(&server, ok_empty(), 0).await;
    let c = client(&server);
    let stop = c.config("../stop").post(&json!({})).await;
    let load = c
        .config("apps/http/servers/../../../../load")
        .post(&json!({}))
        .await;
    let sent: Vec<String> = received(&server).await.iter().map(line).collect();
    assert!(
        sent.iter().all(|l| l.contains("/config/")),
        "left the config tree: {sent:?}"
    );
    assert!(stop.is_err() && load.is_err(), "{stop:?} {load:?}");
}

// Caddy splits the *decoded* path, so `/id/a%2Fhandle` would address the
// `handle` key of the object with id `a`.
#[tokio::test]
async fn an_id_containing_a_slash_is_refused_before_sending() {
    let server = mock_caddy().await;
    let result = client(&server).id("a/handle").delete().await;
    assert!(
        result.is_err(),
        "deleting id \"a/handle\" would delete a's handlers on a real Caddy"
    );
    assert!(received(&server).await.is_empty(), "nothing may be sent");
}
