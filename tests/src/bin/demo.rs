//! The one-command demo (`scripts/demo`): real Caddy from Caddyfile.example on
//! loopback, a stand-in headscale API with a few TARTs, a web server per TART on
//! its own 127.0.0.x address, and the real tart-sync binary. One TART goes
//! offline and comes back while you watch. Ctrl-C stops everything.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use e2e::backend::{fleet_ip, start_fleet};
use e2e::headscale::{Headscale, SimNode, API_KEY};
use e2e::sync::{caddyfile_example, DOMAIN};
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
    let bin = e2e::tart_sync_bin();
    let child = Command::new(&bin)
        .env("TART_SYNC_HEADSCALE_URL", hs.url())
        .env("TART_SYNC_HEADSCALE_API_KEY", API_KEY)
        .env("TART_SYNC_HEADSCALE_POLL_INTERVAL", "1s")
        .env("TART_SYNC_CADDY_ADMIN", &caddy.admin)
        .env("TART_SYNC_ROUTES_DOMAIN", DOMAIN)
        .env("TART_SYNC_ROUTES_UPSTREAM_PORT", upstream_port.to_string())
        .env("TART_SYNC_ROUTES_OFFLINE_GRACE", "5s")
        .env(
            "TART_SYNC_STATUS_LISTEN",
            format!("127.0.0.1:{status_port}"),
        )
        .stdin(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "cannot start {}: {e} (scripts/demo builds it)",
                bin.display()
            )
        });
    let _tart_sync = Guard(child);

    println!();
    println!(
        "=== tart-sync demo: Caddy {} on 127.0.0.1:{http_port}, {} TARTs ===",
        e2e::version_string(version),
        names.len()
    );
    println!("TART pages through Caddy (the site is {DOMAIN}, so send that Host):");
    for n in names {
        println!("  curl -H 'Host: {DOMAIN}' http://127.0.0.1:{http_port}/{n}/");
    }
    println!("Status page:        http://127.0.0.1:{status_port}/   (JSON: /api/status, metrics: /metrics)");
    println!(
        "Caddy's view:       curl http://{}/id/tart-sync",
        caddy.admin
    );
    println!("Not a TART:         curl -H 'Host: {DOMAIN}' http://127.0.0.1:{http_port}/nobody/   (the site's own 404)");
    println!("Ctrl-C stops everything.\n");

    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let show = |label: &'static str| {
        let http = http.clone();
        async move {
            let mut line = format!("{label:<34}");
            for n in names {
                let r = http
                    .get(format!("http://127.0.0.1:{http_port}/{n}/"))
                    .header("host", DOMAIN)
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
