//! `/load`, `/adapt` and `/stop` against a mock admin endpoint.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use caddy_client::model::Config;
use caddy_client::{AdaptWarning, Adapted, ErrorKind};
use common::{
    answer, assert_caddy_error, caddy_error, client, header, line, mock_caddy, ok_empty, on, once,
    received, resource,
};
use serde_json::{json, Value};
use wiremock::matchers::{body_json, body_string, header as header_is};
use wiremock::ResponseTemplate;

const CADDYFILE: &str = "app.example.com {\n  reverse_proxy 10.0.0.1:8080 {\n\t\theader_up X-Forwarded-For {remote_host}\n\t}\n}\n";

#[tokio::test]
async fn load_posts_the_whole_config_as_json() {
    let server = mock_caddy().await;
    let config: Config = serde_json::from_value(resource("config.json")).unwrap();
    on("POST", "/load")
        .and(header_is("content-type", "application/json"))
        .and(body_json(resource("config.json")))
        .once(&server, ok_empty())
        .await;
    client(&server).load(&config).await.unwrap();
    let reqs = received(&server).await;
    assert_eq!(
        header(&reqs[0], "cache-control"),
        None,
        "an unchanged config may be skipped by Caddy"
    );
}

#[tokio::test]
async fn load_forced_asks_caddy_to_reload_even_if_unchanged() {
    let server = mock_caddy().await;
    on("POST", "/load")
        .and(header_is("cache-control", "must-revalidate"))
        .and(body_json(json!({"apps": {}})))
        .once(&server, ok_empty())
        .await;
    client(&server)
        .load_forced(&json!({"apps": {}}))
        .await
        .unwrap();
}

#[tokio::test]
async fn load_caddyfile_adapts_first_then_loads_the_adapted_json() {
    let server = mock_caddy().await;
    let adapted = resource("adapted.json");
    on("POST", "/adapt")
        .and(header_is("content-type", "text/caddyfile"))
        .and(body_string(CADDYFILE))
        .once(&server, ResponseTemplate::new(200).set_body_json(&adapted))
        .await;
    on("POST", "/load")
        .and(header_is("content-type", "application/json"))
        .and(body_json(&adapted["result"]))
        .once(&server, ok_empty())
        .await;

    let warnings = client(&server).load_caddyfile(CADDYFILE).await.unwrap();

    let order: Vec<String> = received(&server).await.iter().map(line).collect();
    assert_eq!(
        order,
        ["POST /adapt", "POST /load"],
        "never /load with an adapter: it can hide errors behind a 200"
    );
    assert_eq!(warnings.len(), 2);
    assert_eq!(
        warnings[1],
        AdaptWarning {
            file: "Caddyfile".into(),
            line: 5,
            directive: "header_up".into(),
            message: adapted["warnings"][1]["message"].as_str().unwrap().into(),
        }
    );
}

#[tokio::test]
async fn load_caddyfile_loads_nothing_when_the_caddyfile_does_not_adapt() {
    let server = mock_caddy().await;
    let msg = "adapting config using caddyfile adapter: Caddyfile:3 - Error during parsing: unrecognized directive: reverse_prox";
    once(&server, "POST", "/adapt", caddy_error(400, msg)).await;
    on("POST", "/load").expect(&server, ok_empty(), 0).await;
    let err = client(&server)
        .load_caddyfile("x {\n\treverse_prox y\n}\n")
        .await
        .unwrap_err();
    assert_caddy_error(&err, ErrorKind::ConfigRejected, 400, msg);
}

#[tokio::test]
async fn adapt_returns_the_typed_config_and_warnings_and_loads_nothing() {
    let server = mock_caddy().await;
    let adapted = resource("adapted.json");
    on("POST", "/adapt")
        .and(body_string(CADDYFILE))
        .expect(
            &server,
            ResponseTemplate::new(200).set_body_json(&adapted),
            2,
        )
        .await;
    let c = client(&server);

    let typed: Adapted = c.adapt(CADDYFILE).await.unwrap();
    let route = &typed.result.http().unwrap().servers["srv0"].routes[0];
    assert_eq!(route.hosts(), ["app.example.com"]);
    assert_eq!(route.upstream_dials(), ["10.0.0.1:8080"]);
    assert_eq!(typed.warnings[0].line, 2);
    assert_eq!(
        typed.warnings[0].directive, "",
        "a warning without directive"
    );
    assert_eq!(
        serde_json::to_value(&typed.result).unwrap(),
        adapted["result"]
    );

    let raw: Adapted<Value> = c.adapt_as(CADDYFILE).await.unwrap();
    assert_eq!(raw.result, adapted["result"]);

    let sent: Vec<String> = received(&server).await.iter().map(line).collect();
    assert_eq!(sent, ["POST /adapt", "POST /adapt"]);
}

#[tokio::test]
async fn adapt_without_warnings() {
    let server = mock_caddy().await;
    answer(
        &server,
        "POST",
        "/adapt",
        ResponseTemplate::new(200).set_body_json(json!({"result": {"apps": {}}})),
    )
    .await;
    let adapted = client(&server).adapt(":80\nrespond ok\n").await.unwrap();
    assert!(adapted.warnings.is_empty());
    assert!(adapted.result.apps.is_some());
}

#[tokio::test]
async fn a_200_from_load_with_an_embedded_error_is_an_error() {
    // Up to Caddy 2.11.4, /load with an adapter writes the warnings before
    // loading, so a failed load answers 200 with warnings then the error.
    let server = mock_caddy().await;
    let msg = "loading config: loading new config: http app module: start: listening on :80: listen tcp :80: bind: permission denied";
    let body = format!(
        "{}\n{}\n",
        json!([{"file": "Caddyfile", "line": 2, "message": "Caddyfile input is not formatted"}]),
        json!({ "error": msg })
    );
    answer(
        &server,
        "POST",
        "/load",
        ResponseTemplate::new(200).set_body_raw(body, "application/json"),
    )
    .await;
    let err = client(&server)
        .load(&json!({"apps": {}}))
        .await
        .unwrap_err();
    assert_caddy_error(&err, ErrorKind::ConfigRejected, 200, msg);
    assert!(
        err.to_string().contains("previous config is still active"),
        "{err}"
    );
}

#[tokio::test]
async fn a_200_from_load_with_only_warnings_is_success() {
    let server = mock_caddy().await;
    let body =
        json!([{"file": "Caddyfile", "line": 2, "message": "Caddyfile input is not formatted"}])
            .to_string();
    answer(
        &server,
        "POST",
        "/load",
        ResponseTemplate::new(200).set_body_raw(body, "application/json"),
    )
    .await;
    client(&server).load(&json!({"apps": {}})).await.unwrap();
}

#[tokio::test]
async fn a_rejected_load_keeps_caddys_message() {
    let server = mock_caddy().await;
    let msg = "loading config: loading new config: loading http app module: decoding module config: http: json: unknown field \"bogus\"";
    answer(&server, "POST", "/load", caddy_error(400, msg)).await;
    let err = client(&server)
        .load(&json!({"apps": {"http": {"bogus": 1}}}))
        .await
        .unwrap_err();
    assert_caddy_error(&err, ErrorKind::ConfigRejected, 400, msg);
}

#[tokio::test]
async fn stop_posts_to_stop_without_a_body() {
    let server = mock_caddy().await;
    once(&server, "POST", "/stop", ok_empty()).await;
    client(&server).stop().await.unwrap();
    let reqs = received(&server).await;
    assert!(reqs[0].body.is_empty());
}
