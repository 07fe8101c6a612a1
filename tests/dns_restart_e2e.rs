//! dns mode through a restart of tart-sync, against real Caddy 2.6.2 and
//! 2.11: tart-sync SIGKILLed for 10 s, then started again, while a client
//! asks an online TART 20 times a second. While the responder is gone its
//! UDP port is closed, Caddy's lookup fails at once (ICMP port unreachable)
//! and the proxy falls back to the static upstream the route carries (the
//! name's last written address).

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use e2e::dns::{dns_env, free_udp_port};
use e2e::fault::Process;
use e2e::for_each_version;
use e2e::sync::Rig;

/// One request: true when alpha itself answered.
async fn ask(http: &reqwest::Client, port: u16) -> bool {
    let r = http
        .get(format!("http://127.0.0.1:{port}/alpha/"))
        .header("host", "tart.test")
        .timeout(Duration::from_secs(2))
        .send()
        .await;
    match r {
        Ok(r) if r.status().as_u16() == 200 => {
            r.text().await.is_ok_and(|b| b.contains("\"alpha\""))
        }
        _ => false,
    }
}

#[tokio::test]
async fn online_tarts_keep_answering_through_a_restart() {
    for_each_version(|v| async move {
        let rig = Rig::start(v, &["alpha", "beta"]).await.unwrap();
        rig.hs.set_nodes(&rig.nodes()).await;
        let mut extra = dns_env(free_udp_port());
        extra.push(("TART_SYNC_DNS_REFRESH", "1s".into()));
        let extra = e2e::dns::env_refs(&extra);
        let env = rig.env(&extra);
        let first = Process::run(&env, "info");
        assert!(rig.wait_for("/alpha/", "alpha", Duration::from_secs(10)).await, "{v:?}: {}", first.log());
        tokio::time::sleep(Duration::from_millis(500)).await;
        let writes = rig.caddy.admin_writes();

        // The client: a request every 50 ms, each on its own, 2 s at most.
        let results: Arc<Mutex<Vec<(Duration, bool, Duration)>>> = Arc::default();
        let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
        let start = Instant::now();
        let client = {
            let (http, port, results) = (rig.http.clone(), rig.http_port, results.clone());
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_millis(50));
                let mut inflight = Vec::new();
                loop {
                    tokio::select! {
                        _ = tick.tick() => {}
                        _ = stop_rx.changed() => break,
                    }
                    let (http, results) = (http.clone(), results.clone());
                    inflight.push(tokio::spawn(async move {
                        let at = start.elapsed();
                        let t = Instant::now();
                        let ok = ask(&http, port).await;
                        results.lock().unwrap().push((at, ok, t.elapsed()));
                    }));
                }
                for t in inflight {
                    let _ = t.await;
                }
            })
        };
        tokio::time::sleep(Duration::from_secs(2)).await;
        drop(first); // SIGKILL
        let killed = start.elapsed();
        tokio::time::sleep(Duration::from_secs(10)).await;
        let second = Process::run(&env, "info");
        let restarted = start.elapsed();
        tokio::time::sleep(Duration::from_secs(5)).await;
        let _ = stop_tx.send(true);
        client.await.unwrap();

        let results = results.lock().unwrap().clone();
        let total = results.len();
        let ok = results.iter().filter(|r| r.1).count();
        let dead: Vec<_> = results.iter().filter(|r| r.0 >= killed && r.0 < restarted).collect();
        let slowest_dead = dead.iter().map(|r| r.2).max().unwrap_or_default();
        let failed: Vec<String> = results
            .iter()
            .filter(|r| !r.1)
            .map(|r| format!("{:.2}s", r.0.as_secs_f64()))
            .collect();
        let ratio = ok as f64 / total as f64;
        println!(
            "{v:?}: restart: {ok}/{total} requests answered by alpha ({:.2}%); {} while tart-sync was dead, slowest {slowest_dead:?}; failures at {failed:?}",
            ratio * 100.0,
            dead.len()
        );
        assert!(total >= 300, "{v:?}: the client made only {total} requests");
        assert!(ratio >= 0.99, "{v:?}: {ok}/{total}; failures at {failed:?}");
        let fallbacks = rig
            .caddy
            .log()
            .lines()
            .filter(|l| l.contains("falling back to static upstreams"))
            .count();
        println!("{v:?}: Caddy logged {fallbacks} fallbacks to the static upstream");
        assert!(fallbacks > 0, "{v:?}: the outage was never noticed by Caddy?");
        // The restarted tart-sync found the same names: nothing written.
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(rig.caddy.admin_writes(), writes, "{v:?}: {}", second.log());
    })
    .await;
}

/// A frozen responder (SIGSTOP: the port stays open, nothing answers) is
/// the worst case: Caddy's lookup waits for Go's resolver timeout (from the
/// Caddy host's /etc/resolv.conf: 5 s × 2 attempts by default) while
/// holding its lookup lock. Measured and bounded here: no request waits
/// longer than the freeze or that timeout, and every one is answered.
/// Freezes tart-sync (SIGSTOP) for 12 s while a client asks alpha every
/// 50 ms through `rig`'s Caddy; returns (answered, asked, slowest).
async fn freeze_and_ask(rig: &Rig) -> (usize, usize, Duration) {
    let mut extra = dns_env(free_udp_port());
    extra.push(("TART_SYNC_DNS_REFRESH", "1s".into()));
    let extra = e2e::dns::env_refs(&extra);
    let daemon = Process::run(&rig.env(&extra), "info");
    assert!(
        rig.wait_for("/alpha/", "alpha", Duration::from_secs(10))
            .await,
        "alpha reachable before the freeze"
    );
    let signal = |sig: &str| {
        let ok = std::process::Command::new("kill")
            .args([sig, &daemon.pid().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill {sig}");
    };
    signal("-STOP");
    let frozen = Instant::now();
    let mut latencies = Vec::new();
    let mut ok = 0;
    while frozen.elapsed() < Duration::from_secs(12) {
        let t = Instant::now();
        let r = rig
            .http
            .get(format!("http://127.0.0.1:{}/alpha/", rig.http_port))
            .header("host", "tart.test")
            .timeout(Duration::from_secs(15))
            .send()
            .await;
        if r.is_ok_and(|r| r.status().as_u16() == 200) {
            ok += 1;
        }
        latencies.push(t.elapsed());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    signal("-CONT");
    let slowest = latencies.iter().max().copied().unwrap_or_default();
    (ok, latencies.len(), slowest)
}

#[tokio::test]
async fn a_frozen_responder_stalls_lookups_at_most_the_resolver_timeout() {
    for_each_version(|v| async move {
        let rig = Rig::start(v, &["alpha", "beta"]).await.unwrap();
        rig.hs.set_nodes(&rig.nodes()).await;
        let (ok, asked, slowest) = freeze_and_ask(&rig).await;
        println!(
            "{v:?}: responder frozen 12 s: {ok}/{asked} requests answered, slowest {slowest:?}"
        );
        assert_eq!(ok, asked, "{v:?}: a request failed during the freeze");
        assert!(slowest <= Duration::from_secs(11), "{v:?}: {slowest:?}");
    })
    .await;
}

/// The documented fix: `options timeout:1 attempts:1` in the resolv.conf
/// Caddy reads (here a private mount namespace's, so the host's file is
/// untouched) bounds the stall to about a second.
#[tokio::test]
async fn resolver_options_in_resolv_conf_bound_the_stall_to_a_second() {
    if !e2e::can_bind_mount() {
        // A private mount namespace needs root (or CAP_SYS_ADMIN).
        println!("SKIP: cannot bind-mount a resolv.conf in a private mount namespace here");
        return;
    }
    for_each_version(|v| async move {
        let mut rig = Rig::start(v, &["alpha", "beta"]).await.unwrap();
        rig.caddy
            .with_resolv_conf("nameserver 127.0.0.1\noptions timeout:1 attempts:1\n");
        rig.hs.set_nodes(&rig.nodes()).await;
        let (ok, asked, slowest) = freeze_and_ask(&rig).await;
        println!("{v:?}: responder frozen 12 s, timeout:1 attempts:1: {ok}/{asked} requests answered, slowest {slowest:?}");
        assert_eq!(ok, asked, "{v:?}: a request failed during the freeze");
        assert!(slowest <= Duration::from_millis(1_600), "{v:?}: {slowest:?}");
    })
    .await;
}
