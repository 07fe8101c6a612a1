//! `/reverse_proxy/upstreams` against a mock admin endpoint.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use caddy_client::{ErrorKind, UpstreamStatus};
use common::{
    answer, assert_caddy_error, caddy_error, client, line, mock_caddy, once, received, resource,
};
use serde_json::json;
use wiremock::matchers::{method, path};
use wiremock::{Mock, ResponseTemplate};

#[tokio::test]
async fn upstreams_are_decoded_with_fields_of_newer_caddy_kept() {
    let server = mock_caddy().await;
    once(
        &server,
        "GET",
        "/reverse_proxy/upstreams",
        ResponseTemplate::new(200).set_body_json(resource("upstreams.json")),
    )
    .await;
    let ups = client(&server).upstreams().await.unwrap();
    assert_eq!(ups.len(), 2);
    assert_eq!(
        ups[0],
        UpstreamStatus {
            address: "100.64.0.1:80".into(),
            num_requests: 3,
            fails: 0,
            ..UpstreamStatus::default()
        }
    );
    assert_eq!(
        (ups[1].address.as_str(), ups[1].fails),
        ("100.64.0.2:80", 2)
    );
    assert_eq!(
        ups[1].extra.get("healthy"),
        Some(&json!(false)),
        "an unknown field is kept"
    );
    assert_eq!(
        serde_json::to_value(&ups).unwrap(),
        resource("upstreams.json")
    );
    let sent: Vec<String> = received(&server).await.iter().map(line).collect();
    assert_eq!(sent, ["GET /reverse_proxy/upstreams"]);
}

#[tokio::test]
async fn no_upstreams_is_an_empty_list_whatever_caddy_answers() {
    for body in ["[]", "null", ""] {
        let server = mock_caddy().await;
        answer(
            &server,
            "GET",
            "/reverse_proxy/upstreams",
            ResponseTemplate::new(200).set_body_raw(body, "application/json"),
        )
        .await;
        let ups = client(&server)
            .upstreams()
            .await
            .unwrap_or_else(|e| panic!("{body:?}: {e}"));
        assert!(ups.is_empty(), "{body:?}: {ups:?}");
    }
}

#[tokio::test]
async fn missing_fields_default_and_a_wrong_shape_is_a_decode_error() {
    let server = mock_caddy().await;
    Mock::given(method("GET"))
        .and(path("/reverse_proxy/upstreams"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([{"address": "10.0.0.1:80"}])))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    answer(
        &server,
        "GET",
        "/reverse_proxy/upstreams",
        ResponseTemplate::new(200).set_body_json(json!({"address": "10.0.0.1:80"})),
    )
    .await;
    let c = client(&server);
    let ups = c.upstreams().await.unwrap();
    assert_eq!((ups[0].num_requests, ups[0].fails), (0, 0));
    let err = c.upstreams().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Decode, "{err}");
    assert!(
        err.to_string().contains("GET /reverse_proxy/upstreams"),
        "{err}"
    );
}

#[tokio::test]
async fn an_error_answer_is_an_error() {
    let server = mock_caddy().await;
    answer(
        &server,
        "GET",
        "/reverse_proxy/upstreams",
        caddy_error(500, "reading upstreams: boom"),
    )
    .await;
    let err = client(&server).upstreams().await.unwrap_err();
    assert_caddy_error(&err, ErrorKind::Api, 500, "reading upstreams: boom");
}
