//! headscale API client against simulated headscale servers (wiremock),
//! one per API generation, following the fixtures in `fixtures/headscale/`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tart_sync::config::ApiKey;
use tart_sync::headscale::{
    parse_node_list, ApiGeneration, HeadscaleClient, HeadscaleError, Node, NodeList,
};
use time::macros::datetime;
use time::OffsetDateTime;
use url::Url;
use wiremock::matchers::{header, method, query_param, query_param_is_missing};
use wiremock::{Mock, MockBuilder, MockServer, ResponseTemplate, Times};

const KEY: &str = "hskey-api-Ab12Cd34Ef56-s3cr3tS3cr3tS3cr3t";

const V022: &str = include_str!("fixtures/headscale/v0.22-machines.json");
const V023: &str = include_str!("fixtures/headscale/v0.23-nodes.json");
const V026: &str = include_str!("fixtures/headscale/v0.26-nodes.json");
const V028: &str = include_str!("fixtures/headscale/v0.28-nodes.json");

/// "Now" for expiry checks: shortly after the 0.28 fixture's last poll.
const NOW: OffsetDateTime = datetime!(2026-07-10 08:20:00 UTC);

/// The list paths of headscale 0.23+ and of 0.22.
const NODE: &str = "/api/v1/node";
const MACHINE: &str = "/api/v1/machine";

/// grpc-gateway's answer for a route it does not know.
const GRPC_NOT_FOUND: &str = r#"{"code":5,"message":"Not Found","details":[]}"#;

fn client(server: &MockServer) -> HeadscaleClient {
    client_with_timeout(&server.uri(), Duration::from_secs(5))
}

fn client_with_timeout(uri: &str, timeout: Duration) -> HeadscaleClient {
    HeadscaleClient::new(Url::parse(uri).unwrap(), ApiKey::new(KEY), timeout).unwrap()
}

fn json_body(status: u16, body: &str) -> ResponseTemplate {
    ResponseTemplate::new(status).set_body_raw(body.as_bytes().to_vec(), "application/json")
}

fn node(nodes: &[Node], id: u64) -> &Node {
    nodes
        .iter()
        .find(|n| n.id == id)
        .unwrap_or_else(|| panic!("node {id} missing from {nodes:?}"))
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn assert_no_key(text: &str) {
    assert!(!text.contains(KEY), "API key leaked into: {text}");
    assert!(!text.contains("s3cr3t"), "API key leaked into: {text}");
}

/// Matches `GET path`.
fn get(path: &str) -> MockBuilder {
    Mock::given(method("GET")).and(wiremock::matchers::path(path))
}

/// Mounts a mock: requests matching `given` get `response`, and must come
/// `times` times (a number, or a range: `..` for any), checked when the
/// server is dropped or reset.
async fn mock(
    server: &MockServer,
    given: MockBuilder,
    response: ResponseTemplate,
    times: impl Into<Times>,
) {
    given
        .respond_with(response)
        .expect(times)
        .mount(server)
        .await;
}

/// `GET /api/v1/node` answers `body`, any number of times.
async fn mount_node_list(server: &MockServer, body: &str) {
    mock(server, get(NODE), json_body(200, body), ..).await;
}

/// One poll: the list (shared with the client, copied here).
async fn poll(hs: &HeadscaleClient, user: Option<&str>) -> Result<NodeList, HeadscaleError> {
    Ok((*hs.list_nodes_shared(user).await?.list).clone())
}

/// One poll: its nodes.
async fn poll_nodes(hs: &HeadscaleClient, user: Option<&str>) -> Result<Vec<Node>, HeadscaleError> {
    Ok(poll(hs, user).await?.nodes)
}

#[tokio::test]
async fn v0_22_falls_back_to_machine_and_remembers_it() {
    let server = MockServer::start().await;
    mock(&server, get(NODE), json_body(404, GRPC_NOT_FOUND), 1).await;
    mock(
        &server,
        get(MACHINE).and(header("authorization", format!("Bearer {KEY}").as_str())),
        json_body(200, V022),
        2,
    )
    .await;

    let hs = client(&server);
    assert_eq!(hs.generation(), None);
    let nodes = poll_nodes(&hs, None).await.unwrap();
    assert_eq!(hs.generation(), Some(ApiGeneration::Machine));
    assert_eq!(nodes.iter().map(|n| n.id).collect::<Vec<_>>(), [1, 2]);

    let rhodes = node(&nodes, 1);
    assert_eq!(rhodes.name, "tart-rhodes");
    assert_eq!(rhodes.given_name, "rhodes");
    assert_eq!(rhodes.user, "tarts");
    assert_eq!(
        rhodes.ip_addresses,
        [ip("100.64.0.1"), ip("fd7a:115c:a1e0::1")]
    );
    assert!(rhodes.online);
    assert_eq!(rhodes.tags, ["tag:tart"]); // validTags
    assert_eq!(rhodes.expiry, None); // 0001-01-01
    assert!(!rhodes.is_expired(NOW));
    assert_eq!(
        rhodes.last_seen,
        Some(datetime!(2023-06-01 12:00:41.123456 UTC))
    );

    let zm = node(&nodes, 2);
    assert_eq!(zm.given_name, "zm-tart");
    assert!(!zm.online);
    assert_eq!(zm.tags, ["tag:tart"]); // forcedTags
    assert_eq!(zm.last_seen, Some(datetime!(2023-06-01 11:40:02.5 UTC)));

    // The second poll goes straight to /api/v1/machine (`expect`s checked on drop).
    let again = poll_nodes(&hs, None).await.unwrap();
    assert_eq!(again, nodes);
}

#[tokio::test]
async fn upgrade_from_0_22_reprobes_node() {
    let server = MockServer::start().await;
    mock(
        &server,
        get(NODE),
        ResponseTemplate::new(404).set_body_string("404 page not found\n"),
        ..,
    )
    .await;
    mock(&server, get(MACHINE), json_body(200, V022), ..).await;
    let hs = client(&server);
    poll_nodes(&hs, None).await.unwrap();
    assert_eq!(hs.generation(), Some(ApiGeneration::Machine));

    // headscale is upgraded to 0.23: /machine is gone, /node answers.
    server.reset().await;
    mock(&server, get(MACHINE), json_body(404, GRPC_NOT_FOUND), 1).await;
    mock(&server, get(NODE), json_body(200, V023), 2).await;
    let nodes = poll_nodes(&hs, None).await.unwrap();
    assert_eq!(hs.generation(), Some(ApiGeneration::Node));
    assert_eq!(nodes.iter().map(|n| n.id).collect::<Vec<_>>(), [1, 4]);
    poll_nodes(&hs, None).await.unwrap();
}

#[tokio::test]
async fn v0_23_nodes() {
    let server = MockServer::start().await;
    mock(&server, get(NODE), json_body(200, V023), ..).await;
    mock(&server, get(MACHINE), ResponseTemplate::new(500), 0).await;
    let hs = client(&server);
    let nodes = poll_nodes(&hs, None).await.unwrap();
    assert_eq!(hs.generation(), Some(ApiGeneration::Node));
    assert_eq!(nodes.len(), 2);

    let rhodes = node(&nodes, 1);
    assert_eq!(rhodes.given_name, "rhodes");
    assert_eq!(rhodes.tags, ["tag:tart"]);
    assert!(rhodes.online);
    assert_eq!(rhodes.expiry, None);
    assert_eq!(rhodes.first_ipv4(), Some(Ipv4Addr::new(100, 64, 0, 1)));

    let laptop = node(&nodes, 4);
    assert_eq!(laptop.name, "Mike's laptop");
    assert_eq!(laptop.given_name, "mikes-laptop");
    assert_eq!(laptop.user, "staff");
    assert_eq!(laptop.ip_addresses, [ip("100.64.0.4")]);
    assert!(laptop.tags.is_empty());
    assert!(laptop.online);
    assert_eq!(laptop.expiry, Some(datetime!(2025-03-05 10:00:00 UTC)));
    assert!(laptop.is_expired(NOW));
    assert!(!laptop.is_expired(datetime!(2025-01-01 00:00:00 UTC)));
    assert_eq!(
        laptop.last_seen,
        Some(datetime!(2024-09-21 07:59:10.123 UTC))
    );
}

#[tokio::test]
async fn v0_26_nodes() {
    let server = MockServer::start().await;
    mount_node_list(&server, V026).await;
    let nodes = poll_nodes(&client(&server), None).await.unwrap();
    assert_eq!(nodes.len(), 1);
    let hill = node(&nodes, 7);
    assert_eq!(hill.name, "tart-signal-hill");
    assert_eq!(hill.given_name, "signal-hill");
    assert_eq!(hill.user, "tarts");
    // validTags ∪ forcedTags, without duplicates.
    assert_eq!(hill.tags, ["tag:tart"]);
    assert_eq!(hill.expiry, None); // null
    assert!(!hill.is_expired(NOW));
    assert!(hill.online);
    assert_eq!(
        hill.last_seen,
        Some(datetime!(2025-06-01 03:04:05.678901234 UTC))
    );
    assert_eq!(
        hill.ip_addresses,
        [ip("100.64.0.7"), ip("fd7a:115c:a1e0::7")]
    );
}

#[tokio::test]
async fn v0_28_nodes() {
    let server = MockServer::start().await;
    mount_node_list(&server, V028).await;
    let nodes = poll_nodes(&client(&server), None).await.unwrap();
    assert_eq!(nodes.iter().map(|n| n.id).collect::<Vec<_>>(), [12, 13, 14]);

    let rhodes = node(&nodes, 12);
    assert_eq!(rhodes.given_name, "rhodes");
    assert_eq!(rhodes.user, "tagged-devices");
    assert_eq!(rhodes.tags, ["tag:tart"]);
    assert!(rhodes.online);
    assert_eq!(rhodes.expiry, None);
    assert!(!rhodes.is_expired(NOW));
    assert_eq!(
        rhodes.last_seen,
        Some(datetime!(2026-07-10 08:15:02.123456789 UTC))
    );
    assert!(rhodes.has_any_tag(&["tag:other".into(), "tag:tart".into()]));
    assert!(!rhodes.has_any_tag(&["tag:other".into()]));
    assert!(!rhodes.has_any_tag(&[]));

    let karoo = node(&nodes, 13);
    assert_eq!(karoo.given_name, "karoo");
    assert!(!karoo.online);
    assert_eq!(karoo.expiry, None); // 0001-01-01
    assert!(!karoo.is_expired(NOW));

    let ops = node(&nodes, 14);
    assert_eq!(ops.user, "staff");
    assert!(ops.tags.is_empty());
    assert!(ops.online, "expired nodes may still say online");
    assert_eq!(ops.expiry, Some(datetime!(2026-07-01 00:00:00 UTC)));
    assert!(ops.is_expired(NOW));
    assert!(!ops.has_any_tag(&["tag:tart".into()]));
    assert_eq!(ops.first_ip(), Some(ip("100.64.0.14")));
}

#[tokio::test]
async fn bearer_header_and_user_query_are_sent() {
    let server = MockServer::start().await;
    mock(
        &server,
        get(NODE)
            .and(header("authorization", format!("Bearer {KEY}").as_str()))
            .and(query_param("user", "tarts")),
        json_body(200, V023),
        1,
    )
    .await;
    mock(
        &server,
        get(NODE)
            .and(header("authorization", format!("Bearer {KEY}").as_str()))
            .and(query_param_is_missing("user")),
        json_body(200, V028),
        1,
    )
    .await;
    let hs = client(&server);
    let tarts = poll_nodes(&hs, Some("tarts")).await.unwrap();
    assert_eq!(tarts.len(), 2);
    let all = poll_nodes(&hs, None).await.unwrap();
    assert_eq!(all.len(), 3);
}

#[tokio::test]
async fn user_names_are_url_encoded() {
    let server = MockServer::start().await;
    mock(
        &server,
        get(NODE).and(query_param("user", "ops@example.org & co")),
        json_body(200, r#"{"nodes":[]}"#),
        1,
    )
    .await;
    let nodes = poll_nodes(&client(&server), Some("ops@example.org & co"))
        .await
        .unwrap();
    assert!(nodes.is_empty());
}

#[tokio::test]
async fn base_url_path_is_kept_as_prefix() {
    let server = MockServer::start().await;
    mock(
        &server,
        get("/headscale/api/v1/node"),
        json_body(200, V026),
        1,
    )
    .await;
    let hs = client_with_timeout(
        &format!("{}/headscale", server.uri()),
        Duration::from_secs(5),
    );
    assert_eq!(poll_nodes(&hs, None).await.unwrap().len(), 1);
}

#[tokio::test]
async fn unauthorized_401_plain_text() {
    let server = MockServer::start().await;
    mock(
        &server,
        get(NODE),
        ResponseTemplate::new(401).set_body_string("Unauthorized"),
        ..,
    )
    .await;
    let err = poll_nodes(&client(&server), None).await.unwrap_err();
    assert!(
        matches!(err, HeadscaleError::Unauthorized { status: 401 }),
        "{err:?}"
    );
    assert!(err.is_auth());
    let msg = err.to_string();
    assert!(msg.contains("API key"), "{msg}");
    assert!(msg.contains("headscale apikeys"), "{msg}");
    assert_no_key(&msg);
    assert_no_key(&format!("{err:?}"));
}

#[tokio::test]
async fn unauthorized_500_as_0_22_to_0_26_answer() {
    let server = MockServer::start().await;
    // Authentication runs before routing: /node answers it on 0.22 too.
    mock(
        &server,
        get(NODE),
        ResponseTemplate::new(500).set_body_string("Unauthorized"),
        ..,
    )
    .await;
    mock(
        &server,
        get(MACHINE),
        ResponseTemplate::new(500).set_body_string("Unauthorized"),
        0,
    )
    .await;
    let hs = client(&server);
    let err = poll_nodes(&hs, None).await.unwrap_err();
    assert!(
        matches!(err, HeadscaleError::Unauthorized { status: 500 }),
        "{err:?}"
    );
    assert!(err.is_auth());
    assert_eq!(hs.generation(), None);
    assert_no_key(&err.to_string());
}

#[tokio::test]
async fn grpc_error_json_is_an_api_error() {
    let server = MockServer::start().await;
    mock(
        &server,
        get(NODE).and(query_param("user", "nobody")),
        json_body(500, r#"{"code":2,"message":"user not found","details":[]}"#),
        ..,
    )
    .await;
    let err = poll_nodes(&client(&server), Some("nobody"))
        .await
        .unwrap_err();
    match &err {
        HeadscaleError::Api { status, message } => {
            assert_eq!(*status, 500);
            assert_eq!(message, "user not found");
        }
        other => panic!("expected Api, got {other:?}"),
    }
    assert!(!err.is_auth());
    assert!(err.to_string().contains("user not found"));
}

#[tokio::test]
async fn problem_json_404_of_0_30_is_an_api_error() {
    let server = MockServer::start().await;
    mock(
        &server,
        get(NODE).and(query_param("user", "nobody")),
        ResponseTemplate::new(404).set_body_raw(
            r#"{"title":"Not Found","status":404,"detail":"user not found"}"#,
            "application/problem+json",
        ),
        ..,
    )
    .await;
    mock(
        &server,
        get(NODE).and(query_param_is_missing("user")),
        json_body(200, V028),
        ..,
    )
    .await;
    mock(
        &server,
        get(MACHINE),
        ResponseTemplate::new(404).set_body_string("404 page not found\n"),
        1,
    )
    .await;
    let hs = client(&server);

    // Generation not known yet: /machine is asked, then the specific 404 wins.
    let err = poll_nodes(&hs, Some("nobody")).await.unwrap_err();
    match &err {
        HeadscaleError::Api { status, message } => {
            assert_eq!(*status, 404);
            assert_eq!(message, "user not found");
        }
        other => panic!("expected Api, got {other:?}"),
    }

    // Once /node is known to exist, its 404 is reported without a fallback
    // (/machine's `expect(1)` is checked on drop).
    poll_nodes(&hs, None).await.unwrap();
    assert_eq!(hs.generation(), Some(ApiGeneration::Node));
    let err = poll_nodes(&hs, Some("nobody")).await.unwrap_err();
    assert!(
        matches!(&err, HeadscaleError::Api { status: 404, message } if message == "user not found"),
        "{err:?}"
    );
}

#[tokio::test]
async fn both_paths_404_is_not_headscale() {
    let server = MockServer::start().await;
    let err = poll_nodes(&client(&server), None).await.unwrap_err();
    assert!(
        matches!(err, HeadscaleError::NotHeadscale { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains(&server.uri()), "{err}");
}

#[tokio::test]
async fn truncated_json_is_a_decode_error() {
    let server = MockServer::start().await;
    mount_node_list(&server, &V028[..V028.len() / 2]).await;
    let err = poll_nodes(&client(&server), None).await.unwrap_err();
    match &err {
        HeadscaleError::Decode { detail } => {
            assert!(detail.contains("{"), "no excerpt in {detail}");
            assert!(detail.len() < 600, "excerpt too long: {detail}");
        }
        other => panic!("expected Decode, got {other:?}"),
    }
}

#[tokio::test]
async fn html_or_unrelated_json_is_a_decode_error() {
    let server = MockServer::start().await;
    mock(
        &server,
        get(NODE),
        ResponseTemplate::new(200).set_body_raw("<html><body>login</body></html>", "text/html"),
        ..,
    )
    .await;
    let err = poll_nodes(&client(&server), None).await.unwrap_err();
    assert!(
        matches!(&err, HeadscaleError::Decode { detail } if detail.contains("<html>")),
        "{err:?}"
    );

    server.reset().await;
    // An empty object is not "no nodes": headscale always sends the list.
    mount_node_list(&server, "{}").await;
    let err = poll_nodes(&client(&server), None).await.unwrap_err();
    assert!(matches!(err, HeadscaleError::Decode { .. }), "{err:?}");
}

#[tokio::test]
async fn slow_answer_is_a_timeout() {
    let server = MockServer::start().await;
    mock(
        &server,
        get(NODE),
        json_body(200, V023).set_delay(Duration::from_secs(3)),
        ..,
    )
    .await;
    let hs = client_with_timeout(&server.uri(), Duration::from_millis(200));
    let started = std::time::Instant::now();
    let err = poll_nodes(&hs, None).await.unwrap_err();
    assert!(
        matches!(err, HeadscaleError::Timeout { after } if after == Duration::from_millis(200)),
        "{err:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn connection_refused_is_a_transport_error() {
    // A loopback port that was free a moment ago and is closed now.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let hs = client_with_timeout(&format!("http://127.0.0.1:{port}"), Duration::from_secs(5));
    let err = poll_nodes(&hs, None).await.unwrap_err();
    match &err {
        HeadscaleError::Transport { detail } => {
            assert!(detail.contains(&format!("127.0.0.1:{port}")), "{detail}");
        }
        other => panic!("expected Transport, got {other:?}"),
    }
    assert_no_key(&err.to_string());
    assert_no_key(&format!("{err:?}"));
}

/// A server that announces `V028` in full, sends its first `cut` bytes and
/// closes (raw TCP: wiremock always sends whole bodies); answers one request.
async fn cutting_server(cut: usize) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let uri = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let (mut conn, _) = listener.accept().await.unwrap();
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            let mut byte = [0u8; 1];
            if conn.read(&mut byte).await.unwrap_or(0) == 0 {
                return;
            }
            head.push(byte[0]);
        }
        let answer = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            V028.len()
        );
        conn.write_all(answer.as_bytes()).await.unwrap();
        conn.write_all(&V028.as_bytes()[..cut]).await.unwrap();
        conn.shutdown().await.unwrap();
    });
    uri
}

#[tokio::test]
async fn an_answer_cut_mid_body_is_reported_as_cut_not_as_unreachable() {
    let cut = V028.len() / 2;
    let uri = cutting_server(cut).await;
    let hs = client_with_timeout(&uri, Duration::from_secs(5));
    let err = poll_nodes(&hs, None).await.unwrap_err();
    match &err {
        HeadscaleError::Truncated { received, detail } => {
            assert_eq!(*received, cut);
            assert!(detail.contains("/api/v1/node"), "{detail}");
        }
        other => panic!("expected Truncated, got {other:?}"),
    }
    let text = err.to_string();
    assert!(
        text.contains(&format!("cut short after {cut} bytes")),
        "{text}"
    );
    assert!(!text.contains("cannot reach"), "{text}");
    assert_no_key(&text);
    assert_no_key(&format!("{err:?}"));
}

#[tokio::test]
async fn node_without_id_is_skipped() {
    let body = json!({
        "nodes": [
            {"id": "1", "givenName": "one", "ipAddresses": ["100.64.0.1"], "online": true,
             "user": {"id": "1", "name": "tarts"}, "expiry": null, "tags": []},
            {"givenName": "no-id", "ipAddresses": ["100.64.0.2"], "online": true},
            {"id": 3, "givenName": "three", "ipAddresses": ["not-an-ip", "fd7a:115c:a1e0::3"],
             "lastSeen": null},
            {"id": "4", "givenName": "bad-expiry", "expiry": "soon"},
        ]
    })
    .to_string();
    let server = MockServer::start().await;
    mount_node_list(&server, &body).await;
    let hs = client(&server);

    let list = poll(&hs, None).await.unwrap();
    let nodes = &list.nodes;
    assert_eq!(nodes.iter().map(|n| n.id).collect::<Vec<_>>(), [1, 3]);
    assert_eq!(list.skipped.len(), 2);
    assert_eq!(list.skipped[0].index, 1);
    assert_eq!(list.skipped[0].id, None);
    assert_eq!(list.skipped[0].name.as_deref(), Some("no-id"));
    assert!(list.skipped[0].reason.contains("id"));
    assert_eq!(list.skipped[1].id.as_deref(), Some("4"));
    assert!(list.skipped[1].reason.contains("expiry"));

    // Lenient parsing of what is there.
    let three = node(nodes, 3);
    assert_eq!(
        three.ip_addresses,
        [IpAddr::V6(Ipv6Addr::new(
            0xfd7a, 0x115c, 0xa1e0, 0, 0, 0, 0, 3
        ))]
    );
    assert_eq!(three.first_ipv4(), None);
    assert_eq!(three.first_ip(), Some(ip("fd7a:115c:a1e0::3")));
    assert!(!three.online);
    assert_eq!(three.user, "");
    assert_eq!(three.name, "");
    assert!(three.tags.is_empty());
}

#[test]
fn empty_list_and_dns_label() {
    let list = parse_node_list(br#"{"nodes":[]}"#).unwrap();
    assert!(list.nodes.is_empty() && list.skipped.is_empty());
    let list = parse_node_list(br#"{"machines":[]}"#).unwrap();
    assert!(list.nodes.is_empty());

    let nodes = parse_node_list(V023.as_bytes()).unwrap().nodes;
    assert_eq!(node(&nodes, 4).dns_label(), Some("mikes-laptop"));
    let odd = Node {
        given_name: "Not A Label".into(),
        ..node(&nodes, 4).clone()
    };
    assert_eq!(odd.dns_label(), None);
}

#[tokio::test]
async fn version_endpoint() {
    let server = MockServer::start().await;
    mock(
        &server,
        get("/version"),
        json_body(
            200,
            r#"{"version":"v0.28.0","commit":"abcdef","dirty":false}"#,
        ),
        1,
    )
    .await;
    let hs = client(&server);
    assert_eq!(hs.version().await.unwrap().as_deref(), Some("v0.28.0"));
    let requests = server.received_requests().await.unwrap();
    assert!(
        requests[0].headers.get("authorization").is_none(),
        "/version needs no key; do not send it"
    );

    // Before 0.27 there is no /version.
    server.reset().await;
    assert_eq!(hs.version().await.unwrap(), None);
}

#[test]
fn debug_output_redacts_the_key() {
    let hs = client_with_timeout("https://headscale.example.org", Duration::from_secs(10));
    let debug = format!("{hs:?}");
    assert!(debug.contains("ApiKey(***)"), "{debug}");
    assert!(debug.contains("headscale.example.org"), "{debug}");
    assert_no_key(&debug);
}

#[test]
fn credentials_in_url_are_dropped() {
    let hs = client_with_timeout(
        "https://user:pw@headscale.example.org/",
        Duration::from_secs(10),
    );
    assert_eq!(hs.base_url().as_str(), "https://headscale.example.org/");
}

#[test]
fn unusable_key_is_a_config_error_without_the_key() {
    let err = HeadscaleClient::new(
        Url::parse("https://headscale.example.org").unwrap(),
        ApiKey::new("sec\u{7}ret"),
        Duration::from_secs(1),
    )
    .unwrap_err();
    assert!(matches!(err, HeadscaleError::Config { .. }), "{err:?}");
    assert!(!err.to_string().contains("sec"), "{err}");
}

#[tokio::test]
async fn unchanged_answer_gives_the_same_list_and_a_changed_one_is_parsed() {
    let with_bad = |ip: &str| {
        json!({"nodes": [
            {"id": "1", "givenName": "one", "online": true, "ipAddresses": [ip]},
            {"givenName": "no-id"},
        ]})
        .to_string()
    };
    let server = MockServer::start().await;
    mount_node_list(&server, &with_bad("100.64.0.1")).await;
    let hs = client(&server);
    let first = hs.list_nodes_shared(None).await.unwrap();
    assert!(first.changed);
    assert_eq!(first.list.nodes.len(), 1);
    assert_eq!(first.list.nodes[0].ip_addresses, [ip("100.64.0.1")]);
    assert_eq!(first.list.skipped.len(), 1);
    // The same bytes again: the same list, skipped nodes included, shared.
    let again = hs.list_nodes_shared(None).await.unwrap();
    assert!(!again.changed);
    assert!(Arc::ptr_eq(&again.list, &first.list));

    // The answer changes, same length: the new state is seen.
    server.reset().await;
    let changed_body = with_bad("100.64.0.2");
    assert_eq!(changed_body.len(), with_bad("100.64.0.1").len());
    mount_node_list(&server, &changed_body).await;
    let changed = hs.list_nodes_shared(None).await.unwrap();
    assert!(changed.changed);
    assert_eq!(changed.list.nodes[0].ip_addresses, [ip("100.64.0.2")]);
    assert_eq!(changed.list.skipped, first.list.skipped);
    assert_eq!(poll(&hs, None).await.unwrap(), *changed.list);

    // An answer that does not parse is an error, not the last list.
    server.reset().await;
    mount_node_list(&server, "{}").await;
    assert!(matches!(
        poll_nodes(&hs, None).await,
        Err(HeadscaleError::Decode { .. })
    ));
}

#[tokio::test]
async fn oversized_answer_is_a_decode_error() {
    let server = MockServer::start().await;
    let body = vec![b' '; tart_sync::headscale::MAX_BODY_BYTES + 1];
    mock(
        &server,
        get(NODE),
        ResponseTemplate::new(200).set_body_raw(body, "application/json"),
        ..,
    )
    .await;
    let err = poll_nodes(&client(&server), None).await.unwrap_err();
    assert!(
        matches!(&err, HeadscaleError::Decode { detail } if detail.contains("larger than")),
        "{err:?}"
    );
}

/// Log lines captured from tracing, for tests on what is logged.
#[derive(Clone, Default)]
struct Captured(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "current_thread")]
async fn an_unparsable_node_is_logged_once_per_answer_not_every_poll() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let body = json!({"nodes": [
        {"id": "1", "givenName": "one", "online": true, "ipAddresses": ["100.64.0.1"]},
        {"givenName": "no-id"},
    ]})
    .to_string();
    let server = MockServer::start().await;
    mount_node_list(&server, &body).await;
    let hs = client(&server);
    for _ in 0..5 {
        hs.list_nodes_shared(None).await.unwrap();
    }
    let log = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    let warnings = log.matches("cannot be parsed").count();
    assert_eq!(warnings, 1, "five polls of one answer: {log}");
}
