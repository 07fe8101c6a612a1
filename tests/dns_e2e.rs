//! dns mode (`routes.resolve = "dns"`) against real Caddy 2.6.2 and 2.11:
//! names, the offline page, and what a flap costs.

use std::time::{Duration, Instant};

use e2e::dns::{dns_env, free_udp_port, DnsDaemon};
use e2e::for_each_version;
use e2e::sync::Rig;

fn env(port: u16) -> Vec<(&'static str, String)> {
    dns_env(port)
}

fn with<'a>(extra: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    extra.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

#[tokio::test]
async fn smoke_dns_mode_routes_and_offline_page() {
    for_each_version(|v| async move {
        let rig = Rig::start(v, &["alpha", "beta"]).await.unwrap();
        let mut nodes = rig.nodes();
        rig.hs.set_nodes(&nodes).await;
        let port = free_udp_port();
        let extra = env(port);
        let daemon = DnsDaemon::start(rig.settings(&with(&extra))).await;
        assert!(
            rig.wait_for("/alpha/", "alpha", Duration::from_secs(10))
                .await,
            "{v:?}: alpha"
        );
        assert!(rig.wait_for("/beta/", "beta", Duration::from_secs(5)).await);
        let live: serde_json::Value = rig.caddy.client().id("tart-sync").get().await.unwrap();
        println!(
            "{v:?} {}",
            serde_json::to_string_pretty(&live["handle"].as_array().unwrap().last()).unwrap()
        );
        let writes = rig.caddy.admin_writes();
        nodes[1].online = false;
        nodes[1].last_seen = time::OffsetDateTime::now_utc() - time::Duration::hours(1);
        rig.hs.set_nodes(&nodes).await;
        assert!(
            rig.wait_for("/beta/", "503", Duration::from_secs(5)).await,
            "{v:?}: {}",
            rig.who("/beta/").await
        );
        let t = Instant::now();
        let (status, body) = rig.get("/beta/").await;
        println!(
            "{v:?} offline page {status} in {:?}: {}",
            t.elapsed(),
            &body[..body.len().min(120)]
        );
        assert_eq!(rig.caddy.admin_writes(), writes);
        drop(daemon);
    })
    .await;
}
