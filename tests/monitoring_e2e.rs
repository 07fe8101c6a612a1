//! The monitoring examples in `packaging/` use what tart-sync serves: the
//! Prometheus alert rules parse as YAML in Prometheus' rule-file shape, the
//! Grafana dashboard parses as JSON, and every `tart_sync_*` metric either
//! of them uses is in the `/metrics` of a real tart-sync (the binary,
//! against real Caddy, with probes running).

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use e2e::fault::Process;
use e2e::observe::{self, service_state, until_status};
use e2e::sync::Rig;
use e2e::{temp_dir, Version};
use serde_json::Value;

fn packaging(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../packaging")
        .join(file)
}

/// The `tart_sync_*` metric names in a PromQL expression.
fn metric_names(expr: &str, into: &mut BTreeSet<String>) {
    let mut rest = expr;
    while let Some(at) = rest.find("tart_sync_") {
        let name: String = rest[at..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        rest = &rest[at + name.len()..];
        into.insert(name);
    }
}

/// Every rule's `expr`, checked for Prometheus' rule-file shape.
fn alert_exprs() -> Vec<String> {
    let text = std::fs::read_to_string(packaging("prometheus-alerts.yml")).unwrap();
    let doc: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text).unwrap();
    let groups = doc["groups"].as_sequence().expect("groups: a list");
    assert!(!groups.is_empty());
    let mut exprs = Vec::new();
    for g in groups {
        assert!(g["name"].as_str().is_some_and(|n| !n.is_empty()), "{g:?}");
        for rule in g["rules"].as_sequence().expect("rules: a list") {
            let alert = rule["alert"].as_str().expect("every rule is an alert");
            let expr = rule["expr"]
                .as_str()
                .unwrap_or_else(|| panic!("{alert}: no expr"));
            if let Some(d) = rule.get("for") {
                let d = d.as_str().unwrap();
                let (n, unit) = d.split_at(d.len() - 1);
                assert!(
                    n.parse::<u32>().is_ok() && "smhd".contains(unit),
                    "{alert}: for: {d}"
                );
            }
            assert!(
                rule["annotations"]["summary"].as_str().is_some(),
                "{alert}: no summary"
            );
            exprs.push(expr.to_string());
        }
    }
    exprs
}

/// Every panel target's and template variable's query.
fn dashboard_exprs() -> Vec<String> {
    let text = std::fs::read_to_string(packaging("grafana-dashboard.json")).unwrap();
    let dash: Value = serde_json::from_str(&text).unwrap();
    assert!(dash["title"].as_str().is_some() && dash["uid"].as_str().is_some());
    let panels = dash["panels"].as_array().unwrap();
    assert!(panels.len() >= 5);
    let mut exprs = Vec::new();
    let mut ids = BTreeSet::new();
    for p in panels {
        assert!(
            ids.insert(p["id"].as_u64().unwrap()),
            "panel ids are unique"
        );
        let targets = p["targets"].as_array().unwrap();
        assert!(!targets.is_empty(), "{}: no query", p["title"]);
        exprs.extend(
            targets
                .iter()
                .map(|t| t["expr"].as_str().unwrap().to_string()),
        );
    }
    for var in dash["templating"]["list"].as_array().unwrap() {
        exprs.push(var["definition"].as_str().unwrap().to_string());
    }
    exprs
}

#[tokio::test]
async fn alert_rules_and_dashboard_use_only_metrics_tart_sync_serves() {
    let mut used = BTreeSet::new();
    for expr in alert_exprs().iter().chain(&dashboard_exprs()) {
        metric_names(expr, &mut used);
    }
    for name in [
        "tart_sync_tart_up",
        "tart_sync_tart_online",
        "tart_sync_tart_probe_duration_seconds_bucket",
    ] {
        assert!(used.contains(name), "{name} unused: {used:?}");
    }

    let Some(rig) = Rig::start(Version::Latest, &["alpha"]).await else {
        return;
    };
    rig.hs.set_nodes(&rig.nodes()).await;
    // An unusable history path: tart_sync_errors_total gets a series.
    let dir = temp_dir("monitoring");
    let history = dir.path().join("missing").join("history.redb");
    let env = rig.env(&[
        ("TART_SYNC_PROBE_INTERVAL", "300ms"),
        ("TART_SYNC_HISTORY_PATH", history.to_str().unwrap()),
    ]);
    let listen = observe::status_listen(&env);
    let daemon = Process::run(&env, "info");
    let up = until_status(&listen, Duration::from_secs(15), |s| {
        service_state(s, "alpha").as_deref() == Some("up")
    })
    .await;
    assert!(up.is_some(), "{}", daemon.log());
    let metrics = observe::get(&listen, "/metrics").await.unwrap();
    let served: BTreeSet<String> = metrics
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(str::to_string)
        .collect();
    let missing: Vec<&String> = used.difference(&served).collect();
    assert!(
        missing.is_empty(),
        "used but not served: {missing:?}\n{metrics}"
    );
}
