//! Part 3, memory of one step: how much the peak RSS grows while one of
//! tart-sync's steps runs on N nodes, each step in a fresh process
//! (`tart-bench --mem-probe KIND N DIR`) so that no freed memory is lying
//! around for it to reuse.

use std::path::Path;

use e2e::backend::fleet_ip;
use e2e::headscale::SimNode;
use e2e::temp_dir;
use serde_json::Value;
use tart_sync::layout::{self, Features, RouteForm};

use crate::setup::{fleet_targets, offline_settings};
use crate::{daemon, err, names, Res};

/// The kinds of `--mem-probe`, with their labels in the report.
pub const MEM_PROBES: [(&str, &str); 4] = [
    (
        "parse-nodes",
        "parse the node list (`parse_node_list`; kept until the answer changes)",
    ),
    (
        "route-form",
        "read the live route for the full check (`RouteForm`, every 10 minutes)",
    ),
    (
        "route-value",
        "the same route read as a `serde_json::Value` tree (for comparison; not used)",
    ),
    (
        "route-build",
        "build the desired route (`layout::route`: typed, borrowing the table)",
    ),
];

const FEATURES: Features = Features {
    stream_close_delay: true,
};

/// In this (fresh) process: how much the peak RSS grows (kB) during one step
/// of kind `kind` on `n` nodes, its input read from `dir` (written by [`run_all`]).
pub fn probe(kind: &str, n: usize, dir: &Path) -> Res<u64> {
    let pid = std::process::id();
    let routes = offline_settings()?.routes;
    let input = match kind {
        "parse-nodes" => std::fs::read(dir.join("nodes.json"))?,
        "route-form" | "route-value" => std::fs::read(dir.join("route.json"))?,
        "route-build" => Vec::new(),
        other => return Err(err(format!("unknown probe {other}"))),
    };
    let targets = if kind == "route-build" {
        fleet_targets(&names::names(n), &format!("{}:8080", fleet_ip(0)))
    } else {
        Default::default()
    };
    if !daemon::reset_peak_rss(pid) {
        return Err(err("cannot reset the peak RSS (clear_refs)"));
    }
    let before = daemon::status_kb(pid, "VmRSS")?;
    // The peak while the step's result is still held.
    let held = |value: &dyn std::fmt::Debug| -> Res<u64> {
        let peak = daemon::status_kb(pid, "VmHWM")?;
        std::hint::black_box(value);
        Ok(peak)
    };
    let peak = match kind {
        "parse-nodes" => held(&tart_sync::headscale::parse_node_list(&input)?)?,
        "route-form" => held(&RouteForm::parse(std::str::from_utf8(&input)?)?)?,
        "route-value" => held(&serde_json::from_slice::<Value>(&input)?)?,
        _ => held(&layout::route(&targets, &routes, FEATURES))?,
    };
    Ok(peak.saturating_sub(before))
}

/// Runs every probe for `n` nodes, each in a fresh process: (label, kB).
pub fn run_all(n: usize) -> Res<Vec<(&'static str, u64)>> {
    let dir = temp_dir("bench-mem");
    let names = names::names(n);
    let ip = fleet_ip(0);
    let nodes: Vec<Value> = names
        .iter()
        .enumerate()
        .map(|(i, name)| SimNode::new(i as u64 + 1, name, ip).json())
        .collect();
    let body = serde_json::json!({ "nodes": nodes });
    std::fs::write(dir.path().join("nodes.json"), serde_json::to_vec(&body)?)?;
    let targets = fleet_targets(&names, &format!("{ip}:8080"));
    let route = layout::subtree(&targets, &offline_settings()?.routes, FEATURES);
    std::fs::write(dir.path().join("route.json"), serde_json::to_vec(&route)?)?;
    let exe = std::env::current_exe()?;
    let mut out = Vec::new();
    for (kind, label) in MEM_PROBES {
        let o = std::process::Command::new(&exe)
            .args(["--mem-probe", kind, &n.to_string()])
            .arg(dir.path())
            .output()?;
        let text = String::from_utf8_lossy(&o.stdout);
        let kb: u64 = text.trim().parse().map_err(|_| {
            err(format!(
                "--mem-probe {kind} {n}: {text}{}",
                String::from_utf8_lossy(&o.stderr)
            ))
        })?;
        out.push((label, kb));
    }
    Ok(out)
}
