//! Webhooks end to end, with the real `tart-sync` binary, real Caddy and a
//! wiremock receiver: exactly one webhook per state change (service and
//! tailnet), in the documented body; the URL never shows in the log; a
//! failing, slow receiver delays nothing else.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::time::{Duration, Instant};

use e2e::backend::{fleet_ip, Backend};
use e2e::fault::Process;
use e2e::observe::{self, service_state, until_status};
use e2e::sync::Rig;
use e2e::{eventually, Version};
use serde_json::Value;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const HOOK: &str = "/hooks/T000/s3cr3t-token";

async fn bodies(server: &MockServer) -> Vec<Value> {
    (server.received_requests().await.unwrap_or_default())
        .iter()
        .filter(|r| r.url.path() == HOOK)
        .map(|r| serde_json::from_slice(&r.body).unwrap())
        .collect()
}

#[tokio::test]
async fn one_webhook_per_state_change() {
    let Some(mut rig) = Rig::start(Version::Latest, &["alpha", "beta"]).await else {
        return;
    };
    let mut nodes = rig.nodes();
    rig.hs.set_nodes(&nodes).await;
    let receiver = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(HOOK))
        .respond_with(ResponseTemplate::new(200))
        .mount(&receiver)
        .await;
    let url = format!("{}{HOOK}", receiver.uri());
    let env = rig.env(&[
        ("TART_SYNC_PROBE_INTERVAL", "300ms"),
        ("TART_SYNC_PROBE_TIMEOUT", "300ms"),
        ("TART_SYNC_NOTIFY_WEBHOOK_URL", &url),
    ]);
    let listen = observe::status_listen(&env);
    let daemon = Process::run(&env, "debug");
    let up = until_status(&listen, Duration::from_secs(15), |s| {
        service_state(s, "alpha").as_deref() == Some("up")
            && service_state(s, "beta").as_deref() == Some("up")
    })
    .await;
    assert!(up.is_some(), "{}", daemon.log());
    // The first states known are not news.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(bodies(&receiver).await, Vec::<Value>::new());

    // alpha's service goes down and comes back; beta goes offline.
    let addr = rig.fleet[0].addr;
    rig.fleet[0].stop();
    let down = until_status(&listen, Duration::from_secs(10), |s| {
        service_state(s, "alpha").as_deref() == Some("down")
    })
    .await;
    assert!(down.is_some());
    rig.fleet[0] = Backend::start("alpha", fleet_ip(0), addr.port())
        .await
        .unwrap();
    let up = until_status(&listen, Duration::from_secs(10), |s| {
        service_state(s, "alpha").as_deref() == Some("up")
    })
    .await;
    assert!(up.is_some());
    nodes[1].online = false;
    rig.hs.set_nodes(&nodes).await;
    let got = eventually(Duration::from_secs(10), || async {
        let b = bodies(&receiver).await;
        (b.len() >= 3).then_some(b)
    })
    .await
    .unwrap_or_default();
    // Nothing more comes (probes and polls go on meanwhile).
    tokio::time::sleep(Duration::from_secs(1)).await;
    let all = bodies(&receiver).await;
    assert_eq!(all, got, "exactly one webhook per change");
    let summary: Vec<(String, String, String, String)> = all
        .iter()
        .map(|b| {
            let s = |k: &str| b[k].as_str().unwrap_or_default().to_string();
            (s("tart"), s("kind"), s("state"), s("previous"))
        })
        .collect();
    let expect = |t: &str, k: &str, s: &str, p: &str| (t.into(), k.into(), s.into(), p.into());
    assert_eq!(
        summary,
        [
            expect("alpha", "service", "down", "up"),
            expect("alpha", "service", "up", "down"),
            expect("beta", "tailnet", "grace", "online"),
        ],
        "{all:#?}"
    );
    let down = &all[0];
    assert!(down["text"]
        .as_str()
        .unwrap()
        .starts_with("TART alpha: web service down (was up)"));
    assert!(
        down["error"].as_str().unwrap().contains(&addr.to_string()),
        "{down:#}"
    );
    assert_eq!(
        down["url"],
        format!("http://{}/alpha/", e2e::sync::DOMAIN).replace("http:", "https:")
    );
    assert_eq!(down["source"], "tart-sync");
    assert!(
        !daemon.log().contains("s3cr3t"),
        "the webhook URL leaked into the log"
    );
}

#[tokio::test]
async fn a_failing_slow_receiver_delays_nothing_else() {
    let Some(rig) = Rig::start(Version::Latest, &["alpha", "beta", "gamma"]).await else {
        return;
    };
    let nodes = rig.nodes();
    rig.hs.set_nodes(&nodes[..2]).await;
    let receiver = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(503).set_delay(Duration::from_secs(3)))
        .mount(&receiver)
        .await;
    let url = format!("{}{HOOK}", receiver.uri());
    let env = rig.env(&[
        ("TART_SYNC_PROBE_INTERVAL", "300ms"),
        ("TART_SYNC_PROBE_TIMEOUT", "300ms"),
        ("TART_SYNC_NOTIFY_WEBHOOK_URL", &url),
        ("TART_SYNC_NOTIFY_TIMEOUT", "5s"),
    ]);
    let listen = observe::status_listen(&env);
    let daemon = Process::run(&env, "info");
    let up = until_status(&listen, Duration::from_secs(15), |s| {
        service_state(s, "alpha").as_deref() == Some("up")
    })
    .await;
    assert!(up.is_some(), "{}", daemon.log());
    // A change: the receiver now holds the notifier for minutes of retries.
    rig.fleet[0].stop();
    let down = until_status(&listen, Duration::from_secs(10), |s| {
        service_state(s, "alpha").as_deref() == Some("down")
    })
    .await;
    assert!(down.is_some());
    assert!(
        eventually(Duration::from_secs(5), || async {
            (!bodies(&receiver).await.is_empty()).then_some(())
        })
        .await
        .is_some(),
        "the webhook was not tried"
    );
    // Meanwhile a new TART is routed on time (poll 200 ms)...
    let started = Instant::now();
    rig.hs.set_nodes(&nodes).await;
    assert!(
        rig.wait_for("/gamma/", "gamma", Duration::from_secs(5))
            .await,
        "{}",
        daemon.log()
    );
    let routed = started.elapsed();
    assert!(routed < Duration::from_secs(2), "routing took {routed:?}");
    // ...probed on time, and beta's service change is seen on time.
    let probed = until_status(&listen, Duration::from_secs(5), |s| {
        service_state(s, "gamma").as_deref() == Some("up")
    })
    .await;
    assert!(probed.is_some(), "{}", daemon.log());
    rig.fleet[1].stop();
    let took = until_status(&listen, Duration::from_secs(5), |s| {
        service_state(s, "beta").as_deref() == Some("down")
    })
    .await
    .expect("beta shown down");
    assert!(
        took < Duration::from_millis(300 + 30 + 300 + 1500),
        "{took:?}"
    );
    assert!(
        !daemon.log().contains("s3cr3t"),
        "the webhook URL leaked into the log"
    );
}

/// headscale restarts and every node reads offline: one summary webhook,
/// not twelve.
#[tokio::test]
async fn many_changes_at_once_make_one_webhook() {
    let names: Vec<String> = (0..12).map(|i| format!("t{i:02}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let Some(rig) = Rig::start(Version::Latest, &refs).await else {
        return;
    };
    let mut nodes = rig.nodes();
    rig.hs.set_nodes(&nodes).await;
    let receiver = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(204))
        .mount(&receiver)
        .await;
    let url = format!("{}{HOOK}", receiver.uri());
    let env = rig.env(&[
        ("TART_SYNC_PROBE_ENABLED", "false"),
        ("TART_SYNC_NOTIFY_WEBHOOK_URL", &url),
    ]);
    let daemon = Process::run(&env, "info");
    assert!(
        rig.wait_for("/t11/", "t11", Duration::from_secs(10)).await,
        "{}",
        daemon.log()
    );
    for n in &mut nodes {
        n.online = false;
    }
    rig.hs.set_nodes(&nodes).await;
    let got = eventually(Duration::from_secs(10), || async {
        let b = bodies(&receiver).await;
        (!b.is_empty()).then_some(b)
    })
    .await
    .unwrap_or_default();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let all = bodies(&receiver).await;
    assert_eq!(all, got);
    assert_eq!(all.len(), 1, "{all:#?}");
    assert_eq!(all[0]["kind"], "many");
    let text = all[0]["text"].as_str().unwrap();
    assert!(
        text.starts_with("12 TARTs changed at once: 12 tailnet grace (was online): t00, t01"),
        "{text}"
    );
    assert!(text.ends_with("… and 2 more"), "{text}");
}
