//! The DNS responder of dns mode, as a client on the network sees it: it
//! answers only routed names of its zone, REFUSED outside it (never an open
//! resolver), NXDOMAIN for names that are not routed, and drops a flood
//! from one source beyond its rate limit.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::net::SocketAddr;
use std::time::Duration;

use e2e::dns::{dns_env, free_udp_port, query_packet, query_raw, rcode_and_answers, DnsDaemon};
use e2e::sync::Rig;
use tart_sync::dns::Outcome;

const A: u16 = 1;
const AAAA: u16 = 28;
const ANY: u16 = 255;
const NOERROR: u8 = 0;
const NXDOMAIN: u8 = 3;
const REFUSED: u8 = 5;

/// The responder of a daemon in dns mode (`unlimited` sources, `rate` per second for others).
async fn responder(rig: &Rig, unlimited: &str, rate: &str) -> (DnsDaemon, SocketAddr) {
    let port = free_udp_port();
    let mut extra = dns_env(port);
    extra.push(("TART_SYNC_DNS_UNLIMITED", unlimited.into()));
    extra.push(("TART_SYNC_DNS_RATE_LIMIT", rate.into()));
    let extra = e2e::dns::env_refs(&extra);
    let daemon = DnsDaemon::start(rig.settings(&extra)).await;
    let server: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    // Ready once the first desired state is published.
    assert!(
        e2e::eventually(Duration::from_secs(10), || async {
            daemon.ctx.dns.table().filter(|t| !t.is_empty()).map(|_| ())
        })
        .await
        .is_some(),
        "no answers"
    );
    (daemon, server)
}

fn ask(server: SocketAddr, name: &str, qtype: u16) -> Option<(u8, u16)> {
    let reply = query_raw(server, &query_packet(name, qtype), Duration::from_secs(2))?;
    Some(rcode_and_answers(&reply))
}

fn version() -> Option<e2e::Version> {
    e2e::Version::ALL.into_iter().find(|v| v.binary().is_some())
}

#[tokio::test]
async fn answers_only_routed_names_of_its_zone() {
    let Some(v) = version() else { return };
    let rig = Rig::start(v, &["alpha", "beta"]).await.unwrap();
    let mut nodes = rig.nodes();
    nodes[1].online = false;
    nodes[1].last_seen = time::OffsetDateTime::now_utc() - time::Duration::hours(1);
    rig.hs.set_nodes(&nodes).await;
    let (daemon, server) = responder(&rig, "127.0.0.1", "1000").await;
    // Routed: an address (the offline one answers the sentinel).
    assert_eq!(
        ask(server, "alpha.tart-sync.internal.", A),
        Some((NOERROR, 1))
    );
    assert_eq!(
        ask(server, "ALPHA.Tart-Sync.Internal.", A),
        Some((NOERROR, 1))
    );
    assert_eq!(
        ask(server, "beta.tart-sync.internal.", A),
        Some((NOERROR, 1))
    );
    // Routed, other types: nothing.
    assert_eq!(
        ask(server, "alpha.tart-sync.internal.", ANY),
        Some((NOERROR, 0))
    );
    assert_eq!(
        ask(server, "alpha.tart-sync.internal.", AAAA),
        Some((NOERROR, 0))
    );
    // In the zone, not routed: NXDOMAIN, nothing.
    for name in [
        "nobody.tart-sync.internal.",
        "x.alpha.tart-sync.internal.",
        "headscale.tart-sync.internal.",
    ] {
        assert_eq!(ask(server, name, A), Some((NXDOMAIN, 0)), "{name}");
    }
    // Outside the zone: REFUSED, nothing, whatever the type.
    for (name, qtype) in [
        ("example.com.", A),
        ("example.com.", ANY),
        ("localhost.", A),
        ("alpha.", A),
        ("alpha.tart-sync.internal.example.com.", A),
        ("internal.", A),
    ] {
        assert_eq!(ask(server, name, qtype), Some((REFUSED, 0)), "{name}");
    }
    // Garbage: no reply at all.
    assert_eq!(
        query_raw(server, b"\x00\x01garbage", Duration::from_millis(300)),
        None
    );
    let stats = &daemon.ctx.dns.stats;
    assert_eq!(stats.queries(Outcome::Answered), 3);
    assert_eq!(stats.queries(Outcome::Refused), 6);
    assert_eq!(stats.queries(Outcome::NxDomain), 3);
    assert_eq!(stats.queries(Outcome::Dropped), 1);
}

#[tokio::test]
async fn a_flood_from_one_source_is_dropped_beyond_its_rate() {
    let Some(v) = version() else { return };
    let rig = Rig::start(v, &["alpha"]).await.unwrap();
    rig.hs.set_nodes(&rig.nodes()).await;
    // 127.0.0.1 is not exempt here: 10 queries/s, bursts of 20.
    let (daemon, server) = responder(&rig, "127.0.0.9", "10").await;
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let packet = query_packet("alpha.tart-sync.internal.", A);
    for _ in 0..200 {
        socket.send_to(&packet, server).unwrap();
    }
    let mut replies = 0;
    let mut buf = [0u8; 512];
    while socket.recv_from(&mut buf).is_ok() {
        replies += 1;
    }
    let limited = daemon.ctx.dns.stats.queries(Outcome::Limited);
    println!("flood of 200 queries at 10/s: {replies} answered, {limited} dropped");
    assert!((20..=25).contains(&replies), "{replies}");
    assert!(limited >= 175, "{limited}");
    // An exempt source (the Caddies) is never limited: the same flood from
    // the default unlimited list passes whole.
    drop(daemon);
    let (daemon, server) = responder(&rig, "127.0.0.1", "10").await;
    for _ in 0..200 {
        socket.send_to(&packet, server).unwrap();
    }
    let mut replies = 0;
    while socket.recv_from(&mut buf).is_ok() {
        replies += 1;
    }
    assert_eq!(replies, 200);
    assert_eq!(daemon.ctx.dns.stats.queries(Outcome::Limited), 0);
}

#[tokio::test]
async fn the_status_page_json_and_metrics_show_the_responder() {
    let Some(v) = version() else { return };
    let rig = Rig::start(v, &["alpha", "beta"]).await.unwrap();
    rig.hs.set_nodes(&rig.nodes()).await;
    let (daemon, server) = responder(&rig, "127.0.0.1", "1000").await;
    for _ in 0..5 {
        assert_eq!(
            ask(server, "alpha.tart-sync.internal.", A),
            Some((NOERROR, 1))
        );
    }
    assert_eq!(ask(server, "example.com.", A), Some((REFUSED, 0)));
    let base = format!("http://{}", daemon.ctx.settings.status.listen);
    let get = |path: &str| {
        let url = format!("{base}{path}");
        async move { reqwest::get(url).await.unwrap().text().await.unwrap() }
    };
    let json: serde_json::Value = serde_json::from_str(&get("/api/status").await).unwrap();
    let dns = &json["dns"];
    assert_eq!(dns["resolve"], "dns", "{json}");
    assert_eq!(dns["zone"], "tart-sync.internal.");
    assert_eq!(dns["listen"], server.to_string());
    assert_eq!(dns["names"], 2);
    assert!(dns["last_query"].is_string());
    let answered = dns["queries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q[0] == "answered")
        .unwrap();
    assert_eq!(answered[1], 5);
    let page = get("/").await;
    assert!(page.contains("id=\"dns\""), "no DNS block on the page");
    assert!(page.contains("tart-sync.internal."));
    assert!(page.contains("5 answered"), "queries on the page");
    let metrics = get("/metrics").await;
    assert!(
        metrics.contains("tart_sync_dns_queries_total{outcome=\"answered\"} 5"),
        "{metrics}"
    );
    assert!(metrics.contains("tart_sync_dns_queries_total{outcome=\"refused\"} 1"));
    assert!(metrics.contains("tart_sync_dns_names 2"));
    assert!(metrics.contains("tart_sync_dns_last_query_timestamp_seconds "));
}

#[tokio::test]
async fn config_mode_shows_no_responder() {
    let Some(v) = version() else { return };
    let rig = Rig::start(v, &["alpha"]).await.unwrap();
    rig.hs.set_nodes(&rig.nodes()).await;
    let daemon = DnsDaemon::start(rig.settings(&[])).await;
    let base = format!("http://{}", daemon.ctx.settings.status.listen);
    let json: serde_json::Value = serde_json::from_str(
        &reqwest::get(format!("{base}/api/status"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
    )
    .unwrap();
    assert!(json.get("dns").is_none(), "{json}");
    let metrics = reqwest::get(format!("{base}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!metrics.contains("tart_sync_dns_"));
}

/// `tart-sync <args>` with exactly `env`.
fn cli(env: &std::collections::BTreeMap<String, String>, args: &[&str]) -> (Option<i32>, String) {
    let o = std::process::Command::new(e2e::tart_sync_bin())
        .env_clear()
        .envs(env)
        .args(args)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    (o.status.code(), text)
}

#[tokio::test]
async fn plan_shows_the_dns_answers_and_no_change_for_a_flap() {
    let Some(v) = version() else { return };
    let rig = Rig::start(v, &["alpha", "beta"]).await.unwrap();
    let mut nodes = rig.nodes();
    rig.hs.set_nodes(&nodes).await;
    let mut extra = dns_env(free_udp_port());
    extra.push(("TART_SYNC_ROUTES_OFFLINE_GRACE", "1s".into()));
    let extra = e2e::dns::env_refs(&extra);
    let env = rig.env(&extra);
    let (code, out) = cli(&env, &["once"]);
    assert_eq!(code, Some(0), "{out}");
    nodes[1].online = false;
    nodes[1].last_seen = time::OffsetDateTime::now_utc() - time::Duration::hours(1);
    rig.hs.set_nodes(&nodes).await;
    let (code, out) = cli(&env, &["plan"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("DNS answers (zone tart-sync.internal."),
        "{out}"
    );
    assert!(out.contains("alpha.tart-sync.internal."), "{out}");
    assert!(out.contains("127.0.0.2"), "{out}");
    assert!(
        out.contains("beta.tart-sync.internal.") && out.contains("255.255.255.255  (offline"),
        "{out}"
    );
    assert!(
        out.contains("up to date"),
        "a flap is no config change in dns mode: {out}"
    );
    let (_, out) = cli(&env, &["check"]);
    assert!(out.contains("dns mode: zone tart-sync.internal."), "{out}");
    assert!(out.contains("asks udp/127.0.0.1:"), "{out}");
    // A bad zone is a configuration error naming the setting.
    let mut bad = env.clone();
    bad.insert("TART_SYNC_DNS_ZONE".into(), "bad..zone".into());
    let (code, out) = cli(&bad, &["plan"]);
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("dns.zone"), "{out}");
}
