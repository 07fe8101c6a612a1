//! Part 5, change cost per mode: what one change in headscale costs Caddy
//! (config writes, reloads, CPU) and how long until Caddy answers it, for a
//! TART flapping (offline past its grace, then online), moving to another
//! address (and back), and a name added and removed. Driven through the
//! headscale stand-in; the real daemon does the rest.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use e2e::backend::fleet_ip;
use e2e::sync::DOMAIN;

use crate::modes::{moved_ip, CaddyCost, ModeFleet};
use crate::setup::{get, http_client};
use crate::{err, progress, Res};

/// The kinds of change, in the order they are made in each trial.
pub const KINDS: [&str; 6] = [
    "flap: goes offline (past its grace)",
    "flap: back online",
    "move: to another address",
    "move: back",
    "new name (node added)",
    "removed name (node deleted)",
];

/// Whether each kind changes only a TART's state or address (0 writes
/// expected in dns mode) or the set of names (1 write in both modes).
pub fn is_name_change(kind: usize) -> bool {
    kind >= 4
}

/// One change: how long until Caddy answered it (ms; `None`: not within
/// the limit) and what it cost Caddy (counted until one more poll passed).
#[derive(Debug, Clone, Copy)]
pub struct Change {
    /// Time from the change in headscale to Caddy's answer showing it.
    pub visible_ms: Option<f64>,
    /// Caddy's writes, reloads and CPU for it.
    pub cost: CaddyCost,
}

/// What Caddy answers for a path: status and the backend that answered.
async fn answer(http: &reqwest::Client, addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let (status, body) = get(http, addr, DOMAIN, path).await?;
    let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
    Some((status, v["tart"].as_str().unwrap_or_default().to_string()))
}

/// Waits (probing every 5 ms) until `path` answers as `want` says: the time since `since`.
async fn wait_until(
    http: &reqwest::Client,
    addr: SocketAddr,
    path: &str,
    since: Instant,
    limit: Duration,
    want: impl Fn(u16, &str) -> bool,
) -> Option<f64> {
    loop {
        if let Some((status, backend)) = answer(http, addr, path).await {
            if want(status, &backend) {
                return Some(since.elapsed().as_secs_f64() * 1000.0);
            }
        }
        if since.elapsed() > limit {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Runs `trials` rounds of every kind of change on `fleet` (polled every
/// `interval`): per kind, the changes in order.
pub async fn measure(
    fleet: &ModeFleet,
    trials: usize,
    interval: Duration,
) -> Res<Vec<Vec<Change>>> {
    let http = http_client()?;
    let idx = fleet.n / 2;
    let name = fleet.names[idx].clone();
    let path = format!("/{name}/");
    let limit = interval + Duration::from_secs(15);
    let settle = interval + Duration::from_millis(300);
    let mut out = vec![Vec::new(); KINDS.len()];
    let mut added: Option<usize> = None;
    for trial in 0..trials {
        let new_name = format!("bench-new-{trial}");
        let new_path = format!("/{new_name}/");
        for (kind, label) in KINDS.iter().enumerate() {
            let before = fleet.cost()?;
            let t = Instant::now();
            let (path, visible_ms) = match kind {
                0 => {
                    fleet.standin.set_online(idx, false);
                    let v = wait_until(&http, fleet.addr, &path, t, limit, |s, _| s == 503).await;
                    (&path, v)
                }
                1 => {
                    fleet.standin.set_online(idx, true);
                    let v = wait_until(&http, fleet.addr, &path, t, limit, |s, b| {
                        s == 200 && b == "tart"
                    })
                    .await;
                    (&path, v)
                }
                2 | 3 => {
                    let (ip, backend) = if kind == 2 {
                        (moved_ip(), "tart-alt")
                    } else {
                        (fleet_ip(0), "tart")
                    };
                    fleet.standin.set_address(idx, ip)?;
                    let v = wait_until(&http, fleet.addr, &path, t, limit, |s, b| {
                        s == 200 && b == backend
                    })
                    .await;
                    (&path, v)
                }
                4 => {
                    added = Some(fleet.standin.add(&new_name, fleet_ip(0))?);
                    let v = wait_until(&http, fleet.addr, &new_path, t, limit, |s, b| {
                        s == 200 && b == "tart"
                    })
                    .await;
                    (&new_path, v)
                }
                _ => {
                    let i = added.take().ok_or_else(|| err("no node was added"))?;
                    fleet.standin.set_listed(i, false);
                    let v =
                        wait_until(&http, fleet.addr, &new_path, t, limit, |s, _| s == 404).await;
                    (&new_path, v)
                }
            };
            // Count what follows too: one more poll.
            tokio::time::sleep(settle).await;
            let cost = fleet.cost()?.since(&before);
            progress!(
                "  {} TARTs, {} mode, {label} ({path}): visible after {}, {} write(s), {} reload(s), Caddy CPU {:.0} ms",
                fleet.n,
                fleet.mode.as_str(),
                visible_ms.map_or("never".into(), |v| format!("{v:.0} ms")),
                cost.writes,
                cost.reloads,
                cost.cpu_ms
            );
            out[kind].push(Change { visible_ms, cost });
        }
    }
    Ok(out)
}
