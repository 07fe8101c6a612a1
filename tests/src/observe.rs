//! Watching a running `tart-sync run` from outside, as an operator would:
//! `/api/status`, `/metrics`, and a graceful stop (SIGTERM).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::fault::Process;

/// The status server's address in a rig environment.
pub fn status_listen(env: &BTreeMap<String, String>) -> String {
    env["TART_SYNC_STATUS_LISTEN"].clone()
}

/// GET on the status server; `None` when it does not answer (yet).
pub async fn get(listen: &str, path: &str) -> Option<String> {
    let client = reqwest::Client::builder().no_proxy().build().ok()?;
    let r = client
        .get(format!("http://{listen}{path}"))
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .ok()?;
    r.text().await.ok()
}

/// `/api/status` as JSON.
pub async fn status(listen: &str) -> Option<Value> {
    serde_json::from_str(&get(listen, "/api/status").await?).ok()
}

/// The entry of TART `name` in `/api/status`'s `nodes`.
pub fn node<'a>(status: &'a Value, name: &str) -> Option<&'a Value> {
    status["nodes"]
        .as_array()?
        .iter()
        .find(|n| n["name"] == name)
}

/// The value of the series `line_prefix` (e.g. `tart_sync_tart_up{name="a"}`)
/// in `/metrics`.
pub async fn metric(listen: &str, series: &str) -> Option<f64> {
    let text = get(listen, "/metrics").await?;
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

/// Polls `/api/status` every 50 ms until `f` accepts it; the time it took.
pub async fn until_status(
    listen: &str,
    limit: Duration,
    mut f: impl FnMut(&Value) -> bool,
) -> Option<Duration> {
    let started = Instant::now();
    while started.elapsed() < limit {
        if let Some(v) = status(listen).await {
            if f(&v) {
                return Some(started.elapsed());
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    None
}

/// The service state (`up`, `down`) of `name` in `/api/status`.
pub fn service_state(status: &Value, name: &str) -> Option<String> {
    node(status, name)?["probe"]["state"]
        .as_str()
        .map(str::to_string)
}

/// Sends SIGTERM and waits (at most 10 s) for the process to exit.
pub async fn stop_gracefully(process: &mut Process) {
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &process.pid().to_string()])
        .status();
    let started = Instant::now();
    while process.is_running() && started.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!process.is_running(), "tart-sync did not stop on SIGTERM");
}
