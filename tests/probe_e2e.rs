//! Reachability probes end to end: the real `tart-sync` binary, real Caddy,
//! the headscale stand-in and real backends. A TART whose web service stops
//! while its node stays online shows down in `/api/status` and `/metrics`
//! within the probe interval plus the timeout, keeps its route (probes never
//! change routing), and shows up again the same way once it answers.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::time::Duration;

use e2e::backend::{fleet_ip, Backend};
use e2e::fault::Process;
use e2e::observe::{metric, service_state, stop_gracefully, until_status};
use e2e::sync::Rig;
use e2e::{for_each_version, observe};

const INTERVAL: Duration = Duration::from_millis(500);
const TIMEOUT: Duration = Duration::from_millis(500);
/// What the status server's report cache (1 s) and polling every 50 ms add.
const SLACK: Duration = Duration::from_millis(1500);

/// Whether Caddy's config still dials `addr` for a TART.
async fn caddy_dials(rig: &Rig, addr: &str) -> bool {
    let config = reqwest::get(format!("http://{}/config/", rig.caddy.admin))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    config.contains(addr)
}

#[tokio::test]
async fn a_stopped_service_shows_down_keeps_its_route_and_comes_back() {
    for_each_version(|v| async move {
        let mut rig = Rig::start(v, &["alpha", "beta"]).await.unwrap();
        rig.hs.set_nodes(&rig.nodes()).await;
        let env = rig.env(&[
            ("TART_SYNC_PROBE_INTERVAL", "500ms"),
            ("TART_SYNC_PROBE_TIMEOUT", "500ms"),
            ("TART_SYNC_PROBE_PATH", "/health?probe=1"),
        ]);
        let listen = observe::status_listen(&env);
        let mut daemon = Process::run(&env, "info");
        assert!(
            rig.wait_for("/alpha/", "alpha", Duration::from_secs(10))
                .await,
            "{v:?}: alpha never routed:\n{}",
            daemon.log()
        );
        let both_up = until_status(&listen, Duration::from_secs(10), |s| {
            service_state(s, "alpha").as_deref() == Some("up")
                && service_state(s, "beta").as_deref() == Some("up")
        })
        .await;
        assert!(
            both_up.is_some(),
            "{v:?}: never probed up:\n{}",
            daemon.log()
        );
        let s = observe::status(&listen).await.unwrap();
        let alpha = observe::node(&s, "alpha").unwrap();
        assert_eq!(alpha["probe"]["http_status"], 200, "{alpha:#}");
        assert!(alpha["probe"]["latency"].is_string(), "{alpha:#}");
        assert_eq!(
            metric(&listen, "tart_sync_tart_up{name=\"alpha\"}").await,
            Some(1.0)
        );

        // alpha's web service stops; its node stays online in headscale.
        let writes_before = rig.caddy.admin_writes();
        let alpha_addr = rig.fleet[0].addr;
        rig.fleet[0].stop();
        let took = until_status(&listen, Duration::from_secs(10), |s| {
            service_state(s, "alpha").as_deref() == Some("down")
        })
        .await
        .unwrap_or_else(|| panic!("{v:?}: alpha never shown down:\n{}", daemon.log()));
        assert!(
            took <= INTERVAL + INTERVAL / 10 + TIMEOUT + SLACK,
            "{v:?}: shown down after {took:?}"
        );
        let s = observe::status(&listen).await.unwrap();
        let alpha = observe::node(&s, "alpha").unwrap();
        assert_eq!(
            alpha["state"], "online",
            "tailnet state unchanged: {alpha:#}"
        );
        let error = alpha["probe"]["error"].as_str().unwrap();
        assert!(error.contains(&alpha_addr.to_string()), "{error}");
        assert_eq!(service_state(&s, "beta").as_deref(), Some("up"));
        assert_eq!(
            metric(&listen, "tart_sync_tart_up{name=\"alpha\"}").await,
            Some(0.0)
        );
        assert_eq!(
            metric(&listen, "tart_sync_tart_online{name=\"alpha\"}").await,
            Some(1.0)
        );
        assert_eq!(
            metric(&listen, "tart_sync_tart_up{name=\"beta\"}").await,
            Some(1.0)
        );
        // Probes never change routing: alpha keeps its route while down.
        tokio::time::sleep(INTERVAL * 3).await;
        assert!(
            caddy_dials(&rig, &alpha_addr.to_string()).await,
            "{v:?}: alpha's route went"
        );
        assert_eq!(
            rig.caddy.admin_writes(),
            writes_before,
            "{v:?}: a probe result changed Caddy's config"
        );
        assert_eq!(rig.who("/beta/").await, "beta");

        // It answers again: shown up the same way, and its URL answers.
        rig.fleet[0] = Backend::start("alpha", fleet_ip(0), alpha_addr.port())
            .await
            .unwrap();
        let took = until_status(&listen, Duration::from_secs(10), |s| {
            service_state(s, "alpha").as_deref() == Some("up")
        })
        .await
        .unwrap_or_else(|| panic!("{v:?}: alpha never shown up again:\n{}", daemon.log()));
        assert!(
            took <= INTERVAL + INTERVAL / 10 + TIMEOUT + SLACK,
            "{v:?}: shown up after {took:?}"
        );
        assert!(
            rig.wait_for("/alpha/", "alpha", Duration::from_secs(5))
                .await
        );
        assert_eq!(
            metric(&listen, "tart_sync_tart_up{name=\"alpha\"}").await,
            Some(1.0)
        );
        let s = observe::status(&listen).await.unwrap();
        let history = &observe::node(&s, "alpha").unwrap()["history"];
        // online, up, down, up.
        assert_eq!(history["changes"], 4, "{history:#}");
        assert!(
            daemon.log().contains("TART's web service is down"),
            "{}",
            daemon.log()
        );
        stop_gracefully(&mut daemon).await;
    })
    .await;
}

#[tokio::test]
async fn probes_off_means_no_probe_fields_and_no_series() {
    let Some(rig) = Rig::start(e2e::Version::Latest, &["alpha"]).await else {
        return;
    };
    rig.hs.set_nodes(&rig.nodes()).await;
    let env = rig.env(&[
        ("TART_SYNC_PROBE_ENABLED", "false"),
        ("TART_SYNC_PROBE_INTERVAL", "100ms"),
    ]);
    let listen = observe::status_listen(&env);
    let daemon = Process::run(&env, "info");
    assert!(
        rig.wait_for("/alpha/", "alpha", Duration::from_secs(10))
            .await,
        "{}",
        daemon.log()
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let s = observe::status(&listen).await.unwrap();
    assert!(
        observe::node(&s, "alpha").unwrap()["probe"].is_null(),
        "{s:#}"
    );
    assert_eq!(
        metric(&listen, "tart_sync_tart_up{name=\"alpha\"}").await,
        None
    );
    assert_eq!(
        metric(&listen, "tart_sync_tart_online{name=\"alpha\"}").await,
        Some(1.0)
    );
}
