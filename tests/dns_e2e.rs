//! dns mode (`routes.resolve = "dns"`) against real Caddy 2.6.2 and 2.11:
//! what a flap or a move costs (no config write, WebSockets stay open), the
//! contrast with config mode, and what a name costs.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use e2e::backend::Backend;
use e2e::dns::{dns_env, free_udp_port, DnsDaemon};
use e2e::for_each_version;
use e2e::sync::{Daemon, Rig};
use futures_util::{SinkExt, StreamExt};
use time::OffsetDateTime;
use tokio_tungstenite::tungstenite::Message;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

const POLL: Duration = Duration::from_millis(200);
const REFRESH: Duration = Duration::from_millis(500);

/// The dns-mode environment: poll 200ms, refresh 500ms, grace 1s.
fn dns_extra(port: u16) -> Vec<(&'static str, String)> {
    let mut extra = dns_env(port);
    extra.push(("TART_SYNC_DNS_REFRESH", "500ms".into()));
    extra.push(("TART_SYNC_ROUTES_OFFLINE_GRACE", "1s".into()));
    extra
}

fn go_offline(node: &mut e2e::headscale::SimNode) {
    node.online = false;
    node.last_seen = OffsetDateTime::now_utc() - time::Duration::hours(1);
}

fn go_online(node: &mut e2e::headscale::SimNode) {
    node.online = true;
    node.last_seen = OffsetDateTime::now_utc();
}

async fn open_ws(rig: &Rig, name: &str) -> Ws {
    let mut req = tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(
        format!("ws://127.0.0.1:{}/{name}/ws", rig.http_port),
    )
    .unwrap();
    req.headers_mut()
        .insert("host", "tart.test".parse().unwrap());
    tokio_tungstenite::connect_async(req).await.unwrap().0
}

/// True when the WebSocket still echoes `text` (within 2 s).
async fn echoes(ws: &mut Ws, name: &str, text: &str) -> bool {
    if ws.send(Message::Text(text.into())).await.is_err() {
        return false;
    }
    match tokio::time::timeout(Duration::from_secs(2), ws.next()).await {
        Ok(Some(Ok(m))) => m
            .into_text()
            .is_ok_and(|t| t.as_str() == format!("{name}:{text}")),
        _ => false,
    }
}

/// Waits until `path` is answered by `expect`; returns how long it took.
async fn visible_within(rig: &Rig, path: &str, expect: &str, bound: Duration) -> Duration {
    let t = Instant::now();
    assert!(
        rig.wait_for(path, expect, bound + Duration::from_secs(1))
            .await,
        "{path} never became {expect:?} (now {:?})",
        rig.who(path).await
    );
    t.elapsed()
}

/// Config writes Caddy logged, once its log has settled.
async fn writes(rig: &Rig) -> usize {
    tokio::time::sleep(Duration::from_millis(300)).await;
    rig.caddy.admin_writes()
}

#[tokio::test]
async fn flaps_and_moves_cost_no_config_write_and_keep_websockets_open() {
    for_each_version(|v| async move {
        let rig = Rig::start(v, &["alpha", "beta"]).await.unwrap();
        // beta's second home, for the moves.
        let _moved = Backend::start("beta-moved", Ipv4Addr::new(127, 0, 0, 4), rig.upstream_port)
            .await
            .unwrap();
        let mut nodes = rig.nodes();
        rig.hs.set_nodes(&nodes).await;
        let extra = dns_extra(free_udp_port());
        let daemon = DnsDaemon::start(rig.settings(&e2e::dns::env_refs(&extra))).await;
        assert!(rig.wait_for("/alpha/", "alpha", Duration::from_secs(10)).await, "{v:?}");
        assert!(rig.wait_for("/beta/", "beta", Duration::from_secs(5)).await, "{v:?}");
        let before = writes(&rig).await;
        let mut ws = open_ws(&rig, "alpha").await;
        assert!(echoes(&mut ws, "alpha", "start").await);

        let bound = POLL + REFRESH + Duration::from_secs(1);
        let mut slowest = Duration::ZERO;
        for i in 0..20 {
            go_offline(&mut nodes[1]);
            rig.hs.set_nodes(&nodes).await;
            slowest = slowest.max(visible_within(&rig, "/beta/", "503", bound).await);
            // The offline page itself, at once.
            let t = Instant::now();
            let (status, body) = rig.get("/beta/").await;
            assert_eq!(status, 503, "{v:?}");
            assert!(body.contains("TART beta is offline"), "{v:?}: {body}");
            assert!(t.elapsed() < Duration::from_millis(500), "{v:?}: {:?}", t.elapsed());
            go_online(&mut nodes[1]);
            rig.hs.set_nodes(&nodes).await;
            slowest = slowest.max(visible_within(&rig, "/beta/", "beta", bound).await);
            assert!(echoes(&mut ws, "alpha", &format!("flap-{i}")).await, "{v:?}: WebSocket closed at flap {i}");
        }
        for i in 0..5 {
            let (ip, who) = if i % 2 == 0 { ("127.0.0.4", "beta-moved") } else { ("127.0.0.3", "beta") };
            nodes[1].ip = ip.into();
            rig.hs.set_nodes(&nodes).await;
            slowest = slowest.max(visible_within(&rig, "/beta/", who, bound).await);
            assert!(echoes(&mut ws, "alpha", &format!("move-{i}")).await, "{v:?}: WebSocket closed at move {i}");
        }
        let after = writes(&rig).await;
        println!(
            "{v:?}: 20 flaps + 5 moves: {} config writes; slowest change visible after {slowest:?} (bound {bound:?}); WebSocket open throughout",
            after - before
        );
        assert_eq!(after, before, "{v:?}: flaps and moves must not write Caddy's config");
        assert!(slowest <= bound, "{v:?}: {slowest:?} > {bound:?}");
        assert!(daemon.ctx.dns.stats.queries(tart_sync::dns::Outcome::Answered) > 0);
        assert!(echoes(&mut ws, "alpha", "end").await);
    })
    .await;
}

#[tokio::test]
async fn config_mode_contrast_a_flap_reloads_and_closes_websockets() {
    for_each_version(|v| async move {
        let rig = Rig::start(v, &["alpha", "beta"]).await.unwrap();
        let mut nodes = rig.nodes();
        rig.hs.set_nodes(&nodes).await;
        let daemon = Daemon::start(rig.settings(&[
            ("TART_SYNC_ROUTES_OFFLINE_GRACE", "1s"),
            ("TART_SYNC_ROUTES_STREAM_CLOSE_DELAY", "2s"),
        ]));
        assert!(rig.wait_for("/alpha/", "alpha", Duration::from_secs(10)).await, "{v:?}");
        let before = writes(&rig).await;
        let mut ws = open_ws(&rig, "alpha").await;
        assert!(echoes(&mut ws, "alpha", "start").await);
        go_offline(&mut nodes[1]);
        rig.hs.set_nodes(&nodes).await;
        assert!(rig.wait_for("/beta/", "503", Duration::from_secs(5)).await, "{v:?}");
        assert_eq!(writes(&rig).await, before + 1, "{v:?}: one flap is one config write");
        match v {
            e2e::Version::V2_6 => {
                assert!(!echoes(&mut ws, "alpha", "after").await, "{v:?}: 2.6 closes WebSockets on every reload");
                println!("{v:?}: config mode: the flap's reload closed the WebSocket at once");
            }
            e2e::Version::Latest => {
                assert!(echoes(&mut ws, "alpha", "after").await, "{v:?}: open during stream_close_delay");
                let t = Instant::now();
                let mut closed = false;
                while t.elapsed() < Duration::from_secs(6) {
                    if !echoes(&mut ws, "alpha", "later").await {
                        closed = true;
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                assert!(closed, "{v:?}: the WebSocket outlived stream_close_delay");
                println!("{v:?}: config mode: the flap's reload closed the WebSocket after {:?} (stream_close_delay 2s)", t.elapsed());
            }
        }
        drop(daemon);
    })
    .await;
}

#[tokio::test]
async fn a_name_costs_one_write_and_unknown_names_fall_through() {
    for_each_version(|v| async move {
        let rig = Rig::start(v, &["alpha", "beta", "gamma"]).await.unwrap();
        let mut nodes = rig.nodes();
        let gamma = nodes.pop().unwrap();
        rig.hs.set_nodes(&nodes).await;
        let extra = dns_extra(free_udp_port());
        let _daemon = DnsDaemon::start(rig.settings(&e2e::dns::env_refs(&extra))).await;
        assert!(
            rig.wait_for("/alpha/", "alpha", Duration::from_secs(10))
                .await,
            "{v:?}"
        );
        let before = writes(&rig).await;
        // alpha moves: no write (its fallback address stays the old one) ...
        nodes[0].ip = "127.0.0.9".into();
        rig.hs.set_nodes(&nodes).await;
        tokio::time::sleep(Duration::from_millis(600)).await;
        assert_eq!(writes(&rig).await, before, "{v:?}: a move is no write");
        nodes.push(gamma);
        rig.hs.set_nodes(&nodes).await;
        assert!(
            rig.wait_for("/gamma/", "gamma", Duration::from_secs(5))
                .await,
            "{v:?}"
        );
        assert_eq!(
            writes(&rig).await,
            before + 1,
            "{v:?}: a new name is one write"
        );
        // ... and the write a new name costs anyway refreshes it.
        let live: serde_json::Value = rig.caddy.client().id("tart-sync").get().await.unwrap();
        let raw = serde_json::value::to_raw_value(&live).unwrap();
        let table = tart_sync::reconcile::live_targets(&raw);
        assert_eq!(
            table["alpha"],
            tart_sync::desired::Target::Dial(format!("127.0.0.9:{}", rig.upstream_port)),
            "{v:?}"
        );
        nodes.pop();
        rig.hs.set_nodes(&nodes).await;
        assert!(
            rig.wait_for("/gamma/", "404", Duration::from_secs(5)).await,
            "{v:?}"
        );
        let (_, body) = rig.get("/gamma/").await;
        assert!(
            body.contains("No TART"),
            "{v:?}: the site's own answer: {body}"
        );
        assert_eq!(
            writes(&rig).await,
            before + 2,
            "{v:?}: a removed name is one write"
        );
        let (status, body) = rig.get("/nobody/x").await;
        assert_eq!(status, 404, "{v:?}");
        assert!(
            body.contains("No TART"),
            "{v:?}: unknown names fall through: {body}"
        );
        // Idle: nothing more is written.
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(writes(&rig).await, before + 2, "{v:?}");
    })
    .await;
}

#[tokio::test]
async fn a_dial_error_to_an_online_tart_is_not_the_offline_page() {
    for_each_version(|v| async move {
        let rig = Rig::start(v, &["alpha", "beta"]).await.unwrap();
        rig.hs.set_nodes(&rig.nodes()).await;
        let extra = dns_extra(free_udp_port());
        let _daemon = DnsDaemon::start(rig.settings(&e2e::dns::env_refs(&extra))).await;
        assert!(
            rig.wait_for("/beta/", "beta", Duration::from_secs(10))
                .await,
            "{v:?}"
        );
        // beta is online in headscale, but its web server is down.
        rig.fleet[1].stop();
        assert!(
            rig.wait_for("/beta/", "502", Duration::from_secs(5)).await,
            "{v:?}: {}",
            rig.who("/beta/").await
        );
        let (status, body) = rig.get("/beta/").await;
        assert_eq!(status, 502, "{v:?}");
        assert!(
            !body.contains("offline"),
            "{v:?}: a dial error shown as offline: {body}"
        );
        assert_eq!(rig.who("/alpha/").await, "alpha");
    })
    .await;
}

#[tokio::test]
async fn host_mode_resolves_through_the_responder_too() {
    for_each_version(|v| async move {
        let rig = Rig::start(v, &["alpha", "beta"]).await.unwrap();
        let mut nodes = rig.nodes();
        rig.hs.set_nodes(&nodes).await;
        let mut extra = dns_extra(free_udp_port());
        extra.push(("TART_SYNC_ROUTES_MODE", "host".into()));
        let _daemon = DnsDaemon::start(rig.settings(&e2e::dns::env_refs(&extra))).await;
        let who = |host: &'static str| {
            let rig = &rig;
            async move { rig.get_host(host, "/some/path").await }
        };
        assert!(
            e2e::eventually(Duration::from_secs(10), || async {
                (who("beta.tart.test").await.0 == 200).then_some(())
            })
            .await
            .is_some(),
            "{v:?}"
        );
        let (status, body) = who("alpha.tart.test").await;
        assert_eq!(status, 200, "{v:?}: {body}");
        assert!(
            body.contains("\"alpha\"") && body.contains("/some/path"),
            "{v:?}: {body}"
        );
        let before = writes(&rig).await;
        go_offline(&mut nodes[1]);
        rig.hs.set_nodes(&nodes).await;
        assert!(
            e2e::eventually(Duration::from_secs(5), || async {
                let (status, body) = who("beta.tart.test").await;
                (status == 503 && body.contains("TART beta is offline")).then_some(())
            })
            .await
            .is_some(),
            "{v:?}: {:?}",
            who("beta.tart.test").await
        );
        let (status, body) = who("nobody.tart.test").await;
        assert_eq!(
            (status, body.contains("No TART with this name")),
            (404, true),
            "{v:?}: {body}"
        );
        // The port is not part of the name; hostile Hosts never reach a
        // TART: a deeper label, a longer suffix, a trailing dot, capitals
        // (names are lowercase), the bare domain.
        let (status, body) = who("alpha.tart.test:8443").await;
        assert!(
            status == 200 && body.contains("\"alpha\""),
            "{v:?}: {status} {body}"
        );
        for host in [
            "x.alpha.tart.test",
            "alpha.tart.test.evil.example",
            "alpha.tart.test.",
            "ALPHA.tart.test",
            "tart.test",
        ] {
            let (status, body) = who(host).await;
            assert!(
                !body.contains("\"alpha\""),
                "{v:?}: {host} reached a TART: {status} {body}"
            );
        }
        assert_eq!(
            writes(&rig).await,
            before,
            "{v:?}: a flap in host mode is no write either"
        );
    })
    .await;
}
