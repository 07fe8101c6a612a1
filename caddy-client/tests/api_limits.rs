//! Answers of any size: the client reads at most its body limit, in
//! chunks, and says so with a distinct error; an error text is capped.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use caddy_client::{Client, ErrorKind, DEFAULT_MAX_BODY_SIZE};
use common::{answer, mock_caddy};
use serde_json::Value;
use wiremock::ResponseTemplate;

#[tokio::test]
async fn an_answer_over_the_limit_is_a_too_large_error() {
    let server = mock_caddy().await;
    let body = format!("\"{}\"", "x".repeat(4096));
    answer(
        &server,
        "GET",
        "/config/",
        ResponseTemplate::new(200).set_body_raw(body, "application/json"),
    )
    .await;
    let small = Client::builder()
        .address(&server.uri())
        .max_body_size(1024)
        .build()
        .unwrap();
    let err = small.config("").get::<Value>().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::TooLarge, "{err}");
    assert!(err.to_string().contains("larger than 1024 bytes"), "{err}");
    // The same answer within the limit is read.
    let roomy = Client::builder()
        .address(&server.uri())
        .max_body_size(8192)
        .build()
        .unwrap();
    let v: Value = roomy.config("").get().await.unwrap();
    assert_eq!(v.as_str().map(str::len), Some(4096));
}

#[tokio::test]
async fn the_default_limit_stops_a_huge_answer() {
    let server = mock_caddy().await;
    let huge = vec![b' '; DEFAULT_MAX_BODY_SIZE + 1];
    answer(
        &server,
        "GET",
        "/config/",
        ResponseTemplate::new(200).set_body_raw(huge, "application/json"),
    )
    .await;
    let client = Client::new(&server.uri()).unwrap();
    let err = client.config("").get::<Value>().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::TooLarge, "{err}");
}

#[tokio::test]
async fn an_error_answer_over_the_limit_is_too_large_and_a_long_message_is_cut() {
    let server = mock_caddy().await;
    answer(
        &server,
        "GET",
        "/config/big",
        ResponseTemplate::new(500).set_body_raw(vec![b'e'; 4096], "text/plain"),
    )
    .await;
    let long = "m".repeat(100_000);
    answer(
        &server,
        "GET",
        "/config/long",
        ResponseTemplate::new(500).set_body_json(serde_json::json!({ "error": long })),
    )
    .await;
    let client = Client::builder()
        .address(&server.uri())
        .max_body_size(1024)
        .build()
        .unwrap();
    let err = client.config("big").get::<Value>().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::TooLarge, "{err}");
    let roomy = Client::new(&server.uri()).unwrap();
    let err = roomy.config("long").get::<Value>().await.unwrap_err();
    assert_eq!(err.status(), Some(500));
    let message = err.caddy_message().unwrap();
    assert!(message.starts_with("mmmm"), "{message}");
    assert!(
        message.chars().count() <= 2001,
        "kept {} characters",
        message.len()
    );
}
