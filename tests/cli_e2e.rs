//! The `tart-sync` binary: `once`, `plan`, `check`, configuration errors,
//! JSON logs, and SIGTERM, against real Caddy.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::collections::BTreeMap;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use e2e::headscale::API_KEY;
use e2e::sync::Rig;
use e2e::Version;

fn tart_sync(env: &BTreeMap<String, String>, args: &[&str]) -> Output {
    e2e::tart_sync_output(env, "info", args)
}

use e2e::output_text as text;

#[tokio::test]
async fn configuration_errors_exit_2_and_name_the_setting() {
    let env: BTreeMap<String, String> = BTreeMap::new();
    let o = tart_sync(&env, &["once"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("headscale.url"), "{}", text(&o));

    let env: BTreeMap<String, String> = [
        ("TART_SYNC_HEADSCALE_URL", "http://127.0.0.1:9"),
        ("TART_SYNC_HEADSCALE_API_KEY", API_KEY),
        ("TART_SYNC_ROUTES_DOMAIN", "-bad-"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let o = tart_sync(&env, &["plan"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).contains("routes.domain"), "{}", text(&o));
    assert!(!text(&o).contains(API_KEY), "the API key leaked");

    let dir = e2e::temp_dir("cfg");
    let file = dir.path().join("tart-sync.toml");
    std::fs::write(&file, "[routes]\ndomian = \"x.org\"\n").unwrap();
    let o = tart_sync(
        &BTreeMap::new(),
        &["--config", file.to_str().unwrap(), "check"],
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).contains("routes.domian"), "{}", text(&o));
}

#[tokio::test]
async fn once_plan_and_check() {
    let Some(rig) = Rig::start(Version::Latest, &["alpha", "beta"]).await else {
        return;
    };
    rig.hs.set_nodes(&rig.nodes()).await;
    let env = rig.env(&[]);

    // plan changes nothing.
    let o = tart_sync(&env, &["plan"]);
    assert!(o.status.success(), "{}", text(&o));
    let out = text(&o);
    assert!(
        out.contains("alpha") && out.contains("beta") && out.contains("would install 2 routes"),
        "{out}"
    );
    assert_eq!(rig.caddy.admin_writes(), 0, "plan wrote to Caddy");

    // check: all fine.
    let o = tart_sync(&env, &["check"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("check: OK"), "{}", text(&o));

    // once applies and exits 0; plan then reports no difference.
    let o = tart_sync(&env, &["once"]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(rig.who("/alpha/").await, "alpha");
    let o = tart_sync(&env, &["plan"]);
    assert!(text(&o).contains("up to date"), "{}", text(&o));

    // check reports problems: wrong domain, bad key, wrong admin address.
    let o = tart_sync(
        &rig.env(&[("TART_SYNC_ROUTES_DOMAIN", "elsewhere.test")]),
        &["check"],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o).contains("no site for elsewhere.test"),
        "{}",
        text(&o)
    );
    let o = tart_sync(
        &rig.env(&[(
            "TART_SYNC_HEADSCALE_API_KEY",
            "hskey-api-WRONG-wrongwrongwrong",
        )]),
        &["check"],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).to_lowercase().contains("api key"), "{}", text(&o));
    assert!(
        !text(&o).contains("WRONG-wrongwrongwrong"),
        "a key leaked: {}",
        text(&o)
    );
    let dead = format!("127.0.0.1:{}", e2e::free_port());
    let o = tart_sync(&rig.env(&[("TART_SYNC_CADDY_ADMIN", &dead)]), &["once"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
}

#[tokio::test]
async fn run_logs_json_and_stops_cleanly_on_sigterm() {
    let Some(rig) = Rig::start(Version::Latest, &["alpha"]).await else {
        return;
    };
    rig.hs.set_nodes(&rig.nodes()).await;
    let env = rig.env(&[]);
    let mut child = Command::new(e2e::tart_sync_bin())
        .env_clear()
        .envs(&env)
        .args(["--log-format", "json", "run"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let ok = rig
        .wait_for("/alpha/", "alpha", Duration::from_secs(10))
        .await;
    let pid = child.id().to_string();
    let _ = Command::new("kill").args(["-TERM", &pid]).status();
    let mut status = None;
    for _ in 0..100 {
        if let Some(s) = child.try_wait().unwrap() {
            status = Some(s);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    if status.is_none() {
        let _ = child.kill();
    }
    let out = child.wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(ok, "route never appeared; log:\n{log}");
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(0),
        "SIGTERM must exit 0; log:\n{log}"
    );
    assert_eq!(
        rig.who("/alpha/").await,
        "alpha",
        "routes must stay after shutdown"
    );
    let lines: Vec<serde_json::Value> = log
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    assert!(
        !lines.is_empty() && lines.len() == log.lines().count(),
        "not all log lines are JSON:\n{log}"
    );
    assert!(log.contains("installed the tart-sync route"), "{log}");
    assert!(
        log.contains("every node of the tailnet gets a public URL"),
        "no warning about publishing the whole tailnet:\n{log}"
    );
    assert!(!log.contains(API_KEY), "the API key leaked into the log");
}
