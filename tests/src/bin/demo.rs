//! The one-command demo (`scripts/demo`): real Caddy from Caddyfile.example on
//! loopback, a stand-in headscale API with a few TARTs, a web server per TART on
//! its own 127.0.0.x address, and the real tart-sync binary with its public
//! fleet page. The site is `tart.localhost` (browsers and curl resolve every
//! `*.localhost` name to loopback), so the printed links open as they are.
//! It runs one enrolment (`tart-sync enrol`) against the stand-in and prints
//! what a TART owner would paste. One TART goes offline and comes back while
//! you watch. Ctrl-C stops everything.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use e2e::backend::{fleet_ip, start_fleet};
use e2e::headscale::{Headscale, SimNode, API_KEY};
use e2e::sync::caddyfile_example;
use e2e::{free_port, Caddy, Version};
use time::OffsetDateTime;

struct Guard(Child);
impl Drop for Guard {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        std::thread::sleep(Duration::from_millis(300));
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The demo's site: a `*.localhost` name resolves to loopback in browsers
/// and curl (RFC 6761), so its links work without a `Host` header.
const DOMAIN: &str = "tart.localhost";

#[tokio::main]
async fn main() {
    let version = if Version::Latest.binary().is_some() {
        Version::Latest
    } else {
        Version::V2_6
    };
    let http_port = free_port();
    let site = format!("http://{DOMAIN}:{http_port}");
    let wildcard = format!("http://*.{DOMAIN}:{http_port}");
    let caddy = Caddy::start_caddyfile(
        version,
        &caddyfile_example(),
        &[("TART_SITE", &site), ("TART_WILDCARD_SITE", &wildcard)],
    )
    .expect("no Caddy installed: run scripts/demo, which installs it");
    let names = ["rhodes", "karoo", "signal-hill", "zm-tart"];
    let (upstream_port, _fleet) = start_fleet(&names).await;
    let hs = Headscale::start().await;
    let mut nodes: Vec<SimNode> = names
        .iter()
        .enumerate()
        .map(|(i, n)| SimNode::new(i as u64 + 1, n, fleet_ip(i)))
        .collect();
    hs.set_nodes(&nodes).await;

    let status_port = free_port();
    let public_port = free_port();
    let bin = e2e::tart_sync_bin();
    let env: Vec<(&str, String)> = vec![
        ("TART_SYNC_HEADSCALE_URL", hs.url()),
        ("TART_SYNC_HEADSCALE_API_KEY", API_KEY.into()),
        ("TART_SYNC_HEADSCALE_POLL_INTERVAL", "1s".into()),
        ("TART_SYNC_CADDY_ADMIN", caddy.admin.clone()),
        ("TART_SYNC_ROUTES_DOMAIN", DOMAIN.into()),
        ("TART_SYNC_ROUTES_UPSTREAM_PORT", upstream_port.to_string()),
        ("TART_SYNC_ROUTES_OFFLINE_GRACE", "5s".into()),
        (
            "TART_SYNC_STATUS_LISTEN",
            format!("127.0.0.1:{status_port}"),
        ),
        ("TART_SYNC_PUBLIC_ENABLED", "true".into()),
        (
            "TART_SYNC_PUBLIC_LISTEN",
            format!("127.0.0.1:{public_port}"),
        ),
    ];

    // One enrolment, before the daemon starts, as an operator would run it.
    hs.serve_enrolment().await;
    let enrol = Command::new(&bin)
        .args(["enrol", "new-tart", "--tags", "tag:tart"])
        .envs(env.iter().map(|(k, v)| (k, v)))
        .env("RUST_LOG", "warn")
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e} (scripts/demo builds it)", bin.display()));
    hs.set_nodes(&nodes).await;

    let child = Command::new(&bin)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "cannot start {}: {e} (scripts/demo builds it)",
                bin.display()
            )
        });
    let _tart_sync = Guard(child);

    let site = format!("http://{DOMAIN}:{http_port}");
    println!();
    println!(
        "=== tart-sync demo: Caddy {} serving {site}, {} TARTs ===",
        e2e::version_string(version),
        names.len()
    );
    println!();
    println!("--- A new TART: `tart-sync enrol new-tart --tags tag:tart` against the stand-in headscale printed:");
    for line in String::from_utf8_lossy(&enrol.stdout).lines() {
        println!("  | {line}");
    }
    if !enrol.status.success() {
        println!(
            "  (enrol failed: {})",
            String::from_utf8_lossy(&enrol.stderr).trim()
        );
    }
    println!("  (the key is the stand-in's, not a real one; in this demo the site is {site},");
    println!("   so that TART would be at {site}/new-tart/ once it is online)");
    println!();
    println!("--- Open in a browser (*.localhost is loopback; curl works too):");
    println!("Public fleet page:  {site}/");
    println!("Its JSON:           {site}/api/tarts.json");
    for n in names {
        println!("TART {n:<13} {site}/{n}/");
    }
    println!("Not a TART:         {site}/nobody/   (the site's own 404)");
    println!("Status page:        http://127.0.0.1:{status_port}/   (private; JSON: /api/status, metrics: /metrics)");
    println!("Caddy's view:       http://{}/id/tart-sync", caddy.admin);
    println!("Ctrl-C stops everything.\n");

    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .no_proxy()
        // What browsers and curl do for *.localhost by themselves.
        .resolve(
            DOMAIN,
            std::net::SocketAddr::from(([127, 0, 0, 1], http_port)),
        )
        .build()
        .unwrap();
    let show = |label: &'static str| {
        let http = http.clone();
        async move {
            let mut line = format!("{label:<34}");
            for n in names {
                let r = http
                    .get(format!("http://{DOMAIN}:{http_port}/{n}/"))
                    .timeout(Duration::from_secs(3))
                    .send()
                    .await;
                let code = r
                    .map(|r| r.status().as_u16().to_string())
                    .unwrap_or_else(|_| "ERR".into());
                line.push_str(&format!(" {n}={code}"));
            }
            println!("{line}");
        }
    };

    let demo = async {
        tokio::time::sleep(Duration::from_secs(3)).await;
        show("all online:").await;
        loop {
            nodes[1].online = false;
            nodes[1].last_seen = OffsetDateTime::now_utc();
            hs.set_nodes(&nodes).await;
            println!("-- karoo disconnects (kept for offline_grace = 5s, then a 503 page)");
            for _ in 0..4 {
                tokio::time::sleep(Duration::from_secs(2)).await;
                show("karoo offline:").await;
            }
            nodes[1].online = true;
            hs.set_nodes(&nodes).await;
            println!("-- karoo reconnects");
            tokio::time::sleep(Duration::from_secs(2)).await;
            show("karoo back:").await;
            tokio::time::sleep(Duration::from_secs(10)).await;
        }
    };
    tokio::select! {
        _ = demo => {}
        _ = tokio::signal::ctrl_c() => println!("\nstopping: tart-sync, Caddy, headscale stand-in and TART servers"),
    }
}
