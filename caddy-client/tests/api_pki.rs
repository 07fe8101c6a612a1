//! `/pki/ca/<id>` and `/pki/ca/<id>/certificates` against a mock admin endpoint.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use caddy_client::ErrorKind;
use common::{answer, assert_caddy_error, caddy_error, client, mock_caddy, once, resource};
use percent_encoding::percent_decode_str;
use serde_json::json;
use wiremock::matchers::method;
use wiremock::{Mock, Request, ResponseTemplate};

const CHAIN: &str = "-----BEGIN CERTIFICATE-----\nMIIBxzCCAW2gAwIBAgIQInter\n-----END CERTIFICATE-----\n-----BEGIN CERTIFICATE-----\nMIIBozCCAUmgAwIBAgIQRoot\n-----END CERTIFICATE-----\n";

#[tokio::test]
async fn the_local_ca_is_decoded() {
    let server = mock_caddy().await;
    let fixture = resource("pki_ca_local.json");
    once(
        &server,
        "GET",
        "/pki/ca/local",
        ResponseTemplate::new(200).set_body_json(&fixture),
    )
    .await;
    let ca = client(&server).pki_ca("local").await.unwrap();
    assert_eq!(ca.id, "local");
    assert_eq!(ca.name, "Caddy Local Authority");
    assert_eq!(ca.root_common_name, "Caddy Local Authority - 2024 ECC Root");
    assert!(ca
        .root_certificate
        .starts_with("-----BEGIN CERTIFICATE-----"));
    assert!(ca.intermediate_certificate.contains("Inter"));
    assert!(ca.extra.is_empty());
    assert_eq!(serde_json::to_value(&ca).unwrap(), fixture);
}

#[tokio::test]
async fn fields_of_newer_caddy_are_kept() {
    let server = mock_caddy().await;
    let mut fixture = resource("pki_ca_local.json");
    fixture["root_fingerprint"] = json!("ab:cd");
    answer(
        &server,
        "GET",
        "/pki/ca/local",
        ResponseTemplate::new(200).set_body_json(&fixture),
    )
    .await;
    let ca = client(&server).pki_ca("local").await.unwrap();
    assert_eq!(ca.extra.get("root_fingerprint"), Some(&json!("ab:cd")));
}

#[tokio::test]
async fn the_certificate_chain_is_returned_as_pem_text() {
    let server = mock_caddy().await;
    once(
        &server,
        "GET",
        "/pki/ca/local/certificates",
        ResponseTemplate::new(200).set_body_raw(CHAIN, "application/pem-certificate-chain"),
    )
    .await;
    let pem = client(&server).pki_certificates("local").await.unwrap();
    assert_eq!(pem, CHAIN);
}

#[tokio::test]
async fn ca_ids_are_percent_encoded() {
    let server = mock_caddy().await;
    // Caddy matches on the decoded path: any valid encoding of the id will do,
    // as long as the space is escaped and the id stays one segment.
    let decoded = |want: &'static str| {
        move |req: &Request| {
            !req.url.path().contains(' ')
                && percent_decode_str(req.url.path())
                    .decode_utf8()
                    .is_ok_and(|p| p == want)
        }
    };
    Mock::given(method("GET"))
        .and(decoded("/pki/ca/my-ca 2"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"id": "my-ca 2"})))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(decoded("/pki/ca/my-ca 2/certificates"))
        .respond_with(
            ResponseTemplate::new(200).set_body_raw(CHAIN, "application/pem-certificate-chain"),
        )
        .expect(1)
        .mount(&server)
        .await;
    let c = client(&server);
    assert_eq!(c.pki_ca("my-ca 2").await.unwrap().id, "my-ca 2");
    assert_eq!(c.pki_certificates("my-ca 2").await.unwrap(), CHAIN);
}

#[tokio::test]
async fn an_unknown_ca_is_not_found() {
    let server = mock_caddy().await;
    let msg = "no certificate authority configured with id: nope";
    answer(&server, "GET", "/pki/ca/nope", caddy_error(404, msg)).await;
    answer(
        &server,
        "GET",
        "/pki/ca/nope/certificates",
        caddy_error(404, msg),
    )
    .await;
    let c = client(&server);
    assert_caddy_error(
        &c.pki_ca("nope").await.unwrap_err(),
        ErrorKind::NotFound,
        404,
        msg,
    );
    assert_caddy_error(
        &c.pki_certificates("nope").await.unwrap_err(),
        ErrorKind::NotFound,
        404,
        msg,
    );
}
