//! The history store end to end, with the real `tart-sync` binary and real
//! Caddy: history survives a restart (two runs with the same
//! `[history] path`); a damaged store file is reported and replaced, an
//! unusable path is reported, and in both cases syncing goes on.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::path::Path;
use std::time::Duration;

use e2e::fault::Process;
use e2e::observe::{self, metric, service_state, stop_gracefully, until_status};
use e2e::sync::Rig;
use e2e::{temp_dir, Version};
use serde_json::Value;

/// Runs tart-sync with its history at `path` until alpha is routed and
/// probed up (syncing and probing go on, whatever the store); returns the
/// status address, the process and `/api/status` then.
async fn run_until_alpha_is_up(rig: &Rig, path: &Path) -> (String, Process, Value) {
    let env = rig.env(&[
        ("TART_SYNC_PROBE_INTERVAL", "300ms"),
        ("TART_SYNC_HISTORY_PATH", path.to_str().unwrap()),
    ]);
    let listen = observe::status_listen(&env);
    let daemon = Process::run(&env, "info");
    assert!(
        rig.wait_for("/alpha/", "alpha", Duration::from_secs(10))
            .await,
        "syncing goes on: {}",
        daemon.log()
    );
    let up = until_status(&listen, Duration::from_secs(10), |s| {
        service_state(s, "alpha").as_deref() == Some("up")
    })
    .await;
    assert!(up.is_some(), "probing goes on: {}", daemon.log());
    let s = observe::status(&listen).await.unwrap();
    (listen, daemon, s)
}

#[tokio::test]
async fn history_survives_a_restart() {
    let Some(rig) = Rig::start(Version::Latest, &["alpha", "beta"]).await else {
        return;
    };
    rig.hs.set_nodes(&rig.nodes()).await;
    let dir = temp_dir("history");
    let path = dir.path().join("history.redb");
    let path_text = path.to_str().unwrap();
    let env = rig.env(&[
        ("TART_SYNC_PROBE_INTERVAL", "300ms"),
        ("TART_SYNC_PROBE_TIMEOUT", "300ms"),
        ("TART_SYNC_HISTORY_PATH", path_text),
    ]);
    let listen = observe::status_listen(&env);
    let mut first = Process::run(&env, "info");
    let up = until_status(&listen, Duration::from_secs(15), |s| {
        service_state(s, "alpha").as_deref() == Some("up")
    })
    .await;
    assert!(up.is_some(), "{}", first.log());
    rig.fleet[0].stop();
    let down = until_status(&listen, Duration::from_secs(10), |s| {
        service_state(s, "alpha").as_deref() == Some("down")
    })
    .await;
    assert!(down.is_some(), "{}", first.log());
    let before = observe::status(&listen).await.unwrap();
    let alpha_before = observe::node(&before, "alpha").unwrap()["history"].clone();
    // online, up, down.
    assert_eq!(alpha_before["changes"], 3, "{alpha_before:#}");
    assert_eq!(before["history"]["store"]["state"], "ok", "{before:#}");
    stop_gracefully(&mut first).await;

    // The second run does not probe: everything it knows of alpha's past
    // comes from the store.
    let env = rig.env(&[
        ("TART_SYNC_PROBE_ENABLED", "false"),
        ("TART_SYNC_HISTORY_PATH", path_text),
    ]);
    let listen = observe::status_listen(&env);
    let second = Process::run(&env, "info");
    let restored = until_status(&listen, Duration::from_secs(15), |s| {
        observe::node(s, "alpha").is_some_and(|n| n["history"]["changes"] == 3)
    })
    .await;
    assert!(
        restored.is_some(),
        "history lost across the restart:\n{}",
        second.log()
    );
    let after = observe::status(&listen).await.unwrap();
    let alpha_after = &observe::node(&after, "alpha").unwrap()["history"];
    assert_eq!(alpha_after["last_change"], alpha_before["last_change"]);
    // Online the whole time both runs knew of.
    assert_eq!(alpha_after["online_ratio"], 1.0, "{alpha_after:#}");
    assert!(
        alpha_after["up_ratio"].as_f64().unwrap() < 1.0,
        "{alpha_after:#}"
    );
    assert!(second.log().contains("history loaded"), "{}", second.log());
}

#[tokio::test]
async fn a_damaged_store_is_reported_and_replaced_and_syncing_goes_on() {
    let Some(rig) = Rig::start(Version::Latest, &["alpha"]).await else {
        return;
    };
    rig.hs.set_nodes(&rig.nodes()).await;
    let dir = temp_dir("history-damaged");
    let path = dir.path().join("history.redb");
    std::fs::write(&path, b"this is not a redb file at all".repeat(500)).unwrap();
    let (listen, daemon, s) = run_until_alpha_is_up(&rig, &path).await;
    let store = &s["history"]["store"];
    assert_eq!(store["state"], "ok", "{s:#}");
    let aside = store["moved_aside"].as_str().unwrap();
    assert!(
        std::fs::read(aside).unwrap().starts_with(b"this is not"),
        "kept for inspection"
    );
    assert_eq!(
        metric(&listen, "tart_sync_errors_total{kind=\"history_store\"}").await,
        Some(1.0)
    );
    assert!(
        daemon.log().contains("history file was damaged"),
        "{}",
        daemon.log()
    );
}

#[tokio::test]
async fn an_unusable_store_is_reported_and_syncing_goes_on() {
    let Some(rig) = Rig::start(Version::Latest, &["alpha"]).await else {
        return;
    };
    rig.hs.set_nodes(&rig.nodes()).await;
    let dir = temp_dir("history-unusable");
    let path = dir.path().join("no-such-dir").join("history.redb");
    let (listen, _daemon, s) = run_until_alpha_is_up(&rig, &path).await;
    let store = &s["history"]["store"];
    assert_eq!(store["state"], "failed", "{s:#}");
    assert!(
        store["error"].as_str().unwrap().contains("no-such-dir"),
        "{s:#}"
    );
    // Still kept in memory.
    assert_eq!(
        observe::node(&s, "alpha").unwrap()["history"]["changes"],
        2,
        "{s:#}"
    );
    assert_eq!(
        metric(&listen, "tart_sync_errors_total{kind=\"history_store\"}").await,
        Some(1.0)
    );
}
