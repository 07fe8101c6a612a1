//! dns mode with several Caddies: each Caddy is told its own resolver
//! address (`dns.caddy_resolver`, one per `caddy.admin` entry), as a remote
//! Caddy that reaches tart-sync over the tailnet would be. Here Caddy 2.6.2
//! asks tart-sync directly and Caddy 2.11 through a UDP relay on another
//! loopback address standing in for the network hop; a flap is visible
//! through both and costs neither a config write.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::net::UdpSocket;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use e2e::dns::{dns_env, free_udp_port, DnsDaemon};
use e2e::sync::{caddyfile_example, Rig, DOMAIN};
use e2e::{free_port, Caddy, Version};
use time::OffsetDateTime;

/// Relays datagrams from `127.0.0.5:<port>` to `target` and the replies
/// back; counts the queries relayed. Stops when dropped.
struct Relay {
    port: u16,
    relayed: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

impl Relay {
    fn start(target: std::net::SocketAddr) -> Relay {
        let front = UdpSocket::bind("127.0.0.5:0").unwrap();
        let port = front.local_addr().unwrap().port();
        front
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let relayed = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (count, halt) = (relayed.clone(), stop.clone());
        std::thread::spawn(move || {
            let back = UdpSocket::bind("127.0.0.1:0").unwrap();
            back.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
            let mut buf = [0u8; 4096];
            while !halt.load(Ordering::Relaxed) {
                let Ok((n, client)) = front.recv_from(&mut buf) else {
                    continue;
                };
                count.fetch_add(1, Ordering::Relaxed);
                back.send_to(&buf[..n], target).unwrap();
                if let Ok((m, _)) = back.recv_from(&mut buf) {
                    let _ = front.send_to(&buf[..m], client);
                }
            }
        });
        Relay {
            port,
            relayed,
            stop,
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

async fn who(http: &reqwest::Client, port: u16, path: &str) -> String {
    let r = http
        .get(format!("http://127.0.0.1:{port}{path}"))
        .header("host", DOMAIN)
        .timeout(Duration::from_secs(5))
        .send()
        .await;
    match r {
        Ok(r) if r.status().as_u16() == 200 => {
            let text = r.text().await.unwrap_or_default();
            let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
            v["tart"].as_str().unwrap_or("?").to_string()
        }
        Ok(r) => r.status().as_u16().to_string(),
        Err(_) => "error".into(),
    }
}

async fn wait(http: &reqwest::Client, port: u16, path: &str, want: &str) -> bool {
    e2e::eventually(Duration::from_secs(5), || async {
        (who(http, port, path).await == want).then_some(())
    })
    .await
    .is_some()
}

#[tokio::test]
async fn each_caddy_asks_its_own_resolver_address() {
    if Version::ALL.iter().any(|v| v.binary().is_none()) {
        return; // needs both versions
    }
    let rig = Rig::start(Version::V2_6, &["alpha", "beta"]).await.unwrap();
    let second_port = free_port();
    let second = Caddy::start_caddyfile(
        Version::Latest,
        &caddyfile_example(),
        &[
            ("TART_SITE", &format!("http://{DOMAIN}:{second_port}")),
            (
                "TART_WILDCARD_SITE",
                &format!("http://*.{DOMAIN}:{second_port}"),
            ),
        ],
    )
    .unwrap();
    let mut nodes = rig.nodes();
    rig.hs.set_nodes(&nodes).await;
    let dns_port = free_udp_port();
    let relay = Relay::start(format!("127.0.0.1:{dns_port}").parse().unwrap());
    let mut extra = dns_env(dns_port);
    extra.push((
        "TART_SYNC_CADDY_ADMIN",
        format!("{},{}", rig.caddy.admin, second.admin),
    ));
    extra.push((
        "TART_SYNC_DNS_CADDY_RESOLVER",
        format!("udp/127.0.0.1:{dns_port},udp/127.0.0.5:{}", relay.port),
    ));
    extra.push(("TART_SYNC_ROUTES_OFFLINE_GRACE", "1s".into()));
    let extra = e2e::dns::env_refs(&extra);
    let _daemon = DnsDaemon::start(rig.settings(&extra)).await;
    let http = rig.http.clone();
    for port in [rig.http_port, second_port] {
        assert!(
            wait(&http, port, "/alpha/", "alpha").await,
            "Caddy on {port}"
        );
    }
    // Each Caddy's config names its own resolver.
    for (caddy, want) in [
        (&rig.caddy, format!("udp/127.0.0.1:{dns_port}")),
        (&second, format!("udp/127.0.0.5:{}", relay.port)),
    ] {
        let live: serde_json::Value = caddy.client().id("tart-sync").get().await.unwrap();
        assert!(
            live.to_string().contains(&want),
            "{:?}: {want} not in its route",
            caddy.version
        );
    }
    let writes = (rig.caddy.admin_writes(), second.admin_writes());
    nodes[1].online = false;
    nodes[1].last_seen = OffsetDateTime::now_utc() - time::Duration::hours(1);
    rig.hs.set_nodes(&nodes).await;
    for port in [rig.http_port, second_port] {
        assert!(wait(&http, port, "/beta/", "503").await, "Caddy on {port}");
    }
    nodes[1].online = true;
    nodes[1].last_seen = OffsetDateTime::now_utc();
    rig.hs.set_nodes(&nodes).await;
    for port in [rig.http_port, second_port] {
        assert!(wait(&http, port, "/beta/", "beta").await, "Caddy on {port}");
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        (rig.caddy.admin_writes(), second.admin_writes()),
        writes,
        "a flap wrote a config"
    );
    let relayed = relay.relayed.load(Ordering::Relaxed);
    println!("two Caddies: the 2.11 one asked through its own resolver address ({relayed} queries relayed); a flap cost 0 writes on each");
    assert!(
        relayed > 0,
        "the second Caddy never asked through its own address"
    );
}
