//! Outages lose nothing: Caddy killed between tart-sync's read and its write,
//! an admin API that fails, hangs or cuts its answer to the write, and a
//! headscale that drips, floods or cuts its answer. Real Caddy 2.6.2 and
//! 2.11.x running `Caddyfile.example`; the faults come from the raw TCP
//! servers of `e2e::fault`.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use e2e::fault::{AdminFault, AdminProxy, HeadscaleFaults, HsFault, Process, HUGE_BYTES};
use e2e::procfs::rss_kb;
use e2e::sync::{Daemon, Rig};
use e2e::{eventually, for_each_version};
use serde_json::Value;
use tart_sync::context::Context;

const POLL: Duration = Duration::from_millis(200);
const WAIT: Duration = Duration::from_secs(10);

/// Caddy serves exactly these of the rig's backends by path (and 404 for the others).
async fn serves(rig: &Rig, names: &[&str], all: &[&str]) -> Result<(), String> {
    for name in all {
        let want = if names.contains(name) { *name } else { "404" };
        let got = rig.who(&format!("/{name}/")).await;
        if got != want {
            return Err(format!("/{name}/ answered by {got}, expected {want}"));
        }
    }
    Ok(())
}

async fn wait_serving(rig: &Rig, names: &[&str], all: &[&str], limit: Duration) -> bool {
    eventually(limit, || async { serves(rig, names, all).await.ok() })
        .await
        .is_some()
}

fn caddy_error(ctx: &Context) -> Option<String> {
    ctx.snapshot()
        .caddies
        .first()
        .and_then(|c| c.last_error.clone())
}

/// `tart_sync_errors_total` over the Caddy kinds.
fn caddy_errors(ctx: &Context) -> u64 {
    [
        "caddy_api",
        "caddy_unreachable",
        "caddy_decode",
        "caddy_truncated",
    ]
    .iter()
    .map(|k| ctx.metrics.errors(k))
    .sum()
}

/// The admin API fails the write three ways, one after the other; each
/// time tart-sync reports it, Caddy keeps serving the last applied routes,
/// and once the fault is gone the next cycle converges with exactly one write.
#[tokio::test]
async fn a_failed_write_keeps_the_old_routes_and_recovers_with_one_write() {
    for_each_version(|v| async move {
        let all = ["a", "b", "c", "d", "e"];
        let rig = Rig::start(v, &all).await.unwrap();
        let nodes = rig.nodes();
        let proxy = AdminProxy::start(&rig.caddy.admin).await;
        let write_timeout = Duration::from_secs(1);
        let daemon = Daemon::start(rig.settings(&[
            ("TART_SYNC_CADDY_ADMIN", &proxy.address),
            ("TART_SYNC_CADDY_WRITE_TIMEOUT", "1s"),
        ]));
        rig.hs.set_nodes(&nodes[..2]).await;
        assert!(
            wait_serving(&rig, &all[..2], &all, WAIT).await,
            "{v:?}: first sync"
        );

        let faults = [
            (AdminFault::Status500, "caddy_api", "500"),
            (
                AdminFault::Hang,
                "caddy_unreachable",
                "no answer from Caddy within 1s",
            ),
            // Caddy did answer: a cut answer is its own kind, not "unreachable".
            (AdminFault::CutBody, "caddy_truncated", "cut short"),
        ];
        for (n, (fault, kind, says)) in faults.into_iter().enumerate() {
            let served = &all[..2 + n];
            let wanted = &all[..3 + n];
            let writes = rig.caddy.admin_writes();
            let kind_before = daemon.ctx.metrics.errors(kind);
            let faulted = proxy.faulted();
            proxy.set(fault);
            let started = Instant::now();
            rig.hs.set_nodes(&nodes[..3 + n]).await;

            let err = eventually(WAIT, || async { caddy_error(&daemon.ctx) })
                .await
                .unwrap_or_else(|| panic!("{v:?} {fault:?}: no error reported"));
            let took = started.elapsed();
            eprintln!("{v:?} {fault:?}: error after {took:?}: {err}");
            assert!(err.contains(says), "{v:?} {fault:?}: {err}");
            assert!(
                proxy.faulted() > faulted,
                "{v:?} {fault:?}: no PATCH met the fault"
            );
            assert!(
                daemon.ctx.metrics.errors(kind) > kind_before,
                "{v:?} {fault:?}: tart_sync_errors_total{{kind={kind:?}}} did not grow"
            );
            if fault == AdminFault::Hang {
                // Bounded by caddy.write_timeout, not caddy-client's 60 s default.
                assert!(
                    took < write_timeout + Duration::from_secs(2),
                    "{v:?}: a hanging PATCH stalled tart-sync for {took:?}"
                );
            }
            let metrics = daemon.ctx.metrics.encode().unwrap();
            assert!(
                metrics.contains(&format!("tart_sync_errors_total{{kind=\"{kind}\"}}")),
                "{metrics}"
            );
            // The old config stays active: the last applied routes, nothing more.
            serves(&rig, served, &all)
                .await
                .unwrap_or_else(|e| panic!("{v:?} {fault:?} during the fault: {e}"));
            // A few more failing cycles write nothing either.
            tokio::time::sleep(POLL * 3).await;
            assert_eq!(
                rig.caddy.admin_writes(),
                writes,
                "{v:?} {fault:?}: a faulted write reached Caddy"
            );

            proxy.set(AdminFault::Off);
            assert!(
                wait_serving(&rig, wanted, &all, WAIT).await,
                "{v:?} {fault:?}: no recovery"
            );
            assert!(
                eventually(WAIT, || async {
                    caddy_error(&daemon.ctx).is_none().then_some(())
                })
                .await
                .is_some(),
                "{v:?} {fault:?}: the error stayed"
            );
            // Idle cycles afterwards: exactly the one write that converged.
            tokio::time::sleep(POLL * 4).await;
            assert_eq!(
                rig.caddy.admin_writes(),
                writes + 1,
                "{v:?} {fault:?}: recovery took other than one write"
            );
        }
        daemon.stop().await;
    })
    .await;
}

/// Caddy killed after tart-sync read the revision stamp and before its PATCH
/// arrived, then started again from its Caddyfile (the API changes lost):
/// tart-sync reports the outage, keeps running, and reinstalls its route with
/// every node, the ones that changed during the outage included, within a
/// few poll intervals.
#[tokio::test]
async fn caddy_killed_between_read_and_write_gets_the_route_back() {
    for_each_version(|v| async move {
        let all = ["a", "b", "c", "d"];
        let mut rig = Rig::start(v, &all).await.unwrap();
        let nodes = rig.nodes();
        let proxy = AdminProxy::start(&rig.caddy.admin).await;
        let daemon = Daemon::start(rig.settings(&[
            ("TART_SYNC_CADDY_ADMIN", &proxy.address),
            ("TART_SYNC_CADDY_WRITE_TIMEOUT", "3s"),
        ]));
        rig.hs.set_nodes(&nodes[..2]).await;
        assert!(
            wait_serving(&rig, &all[..2], &all, WAIT).await,
            "{v:?}: first sync"
        );

        proxy.set(AdminFault::Hold);
        rig.hs.set_nodes(&nodes[..3]).await;
        assert!(
            eventually(WAIT, || async { (proxy.held() > 0).then_some(()) })
                .await
                .is_some(),
            "{v:?}: no PATCH came"
        );
        rig.caddy.kill();
        let errors = caddy_errors(&daemon.ctx);
        proxy.set(AdminFault::Off); // the held PATCH goes on, to a dead Caddy
        let err = eventually(WAIT, || async { caddy_error(&daemon.ctx) })
            .await
            .unwrap_or_else(|| panic!("{v:?}: the outage was not reported"));
        eprintln!("{v:?}: while Caddy is down: {err}");
        assert!(caddy_errors(&daemon.ctx) > errors);
        assert!(!daemon.ctx.snapshot().caddies[0].reachable);
        // A change while Caddy is down is not lost either.
        rig.hs.set_nodes(&nodes[..4]).await;
        tokio::time::sleep(POLL * 3).await;

        let writes = rig.caddy.admin_writes();
        rig.caddy.restart();
        let back = Instant::now();
        assert!(
            wait_serving(&rig, &all, &all, WAIT).await,
            "{v:?}: the route was not reinstalled"
        );
        let took = back.elapsed();
        eprintln!("{v:?}: route back {took:?} after Caddy answered again");
        assert!(took < POLL * 10, "{v:?}: reinstalling took {took:?}");
        let state = daemon.ctx.snapshot();
        assert_eq!(state.caddies[0].last_error, None, "{v:?}");
        assert!(state.caddies[0].reachable);
        tokio::time::sleep(POLL * 3).await;
        assert_eq!(
            rig.caddy.admin_writes(),
            writes + 1,
            "{v:?}: one install, nothing else"
        );
        daemon.stop().await;
    })
    .await;
}

/// GET on tart-sync's status server: `(status, body)`.
async fn status_get(rig: &Rig, listen: &str, path: &str) -> Option<String> {
    let r = rig
        .http
        .get(format!("http://{listen}{path}"))
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .ok()?;
    r.text().await.ok()
}

/// headscale's `last_error` in `/api/status`.
async fn headscale_error(rig: &Rig, listen: &str) -> Option<String> {
    let body = status_get(rig, listen, "/api/status").await?;
    let v: Value = serde_json::from_str(&body).ok()?;
    v["headscale"]["last_error"].as_str().map(str::to_string)
}

/// `tart_sync_errors_total{kind="headscale"}` in `/metrics`.
async fn headscale_errors(rig: &Rig, listen: &str) -> u64 {
    let text = status_get(rig, listen, "/metrics")
        .await
        .unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix("tart_sync_errors_total{kind=\"headscale\"} "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

/// headscale drips, floods (40 MB, chunked and announced) and cuts its
/// answer: each is reported clearly (status, metrics, log), Caddy keeps the
/// last applied routes, the flood is not kept in memory, and the next
/// healthy answer is applied. tart-sync runs as its own process so its
/// memory can be measured.
#[tokio::test]
async fn headscale_faults_keep_the_routes_and_recover() {
    for_each_version(|v| async move {
        let all = ["a", "b", "c", "d", "e", "f"];
        let rig = Rig::start(v, &all).await.unwrap();
        let nodes = rig.nodes();
        let hs = HeadscaleFaults::start().await;
        hs.set_nodes(&nodes[..2]);
        let env: BTreeMap<String, String> = rig.env(&[("TART_SYNC_HEADSCALE_URL", &hs.url)]);
        let listen = env["TART_SYNC_STATUS_LISTEN"].clone();
        let mut daemon = Process::run(&env, "info");
        assert!(
            wait_serving(&rig, &all[..2], &all, WAIT).await,
            "{v:?}: first sync; log:\n{}",
            daemon.log()
        );
        let baseline = rss_kb(daemon.pid()).unwrap();

        let faults = [
            (HsFault::Drip, "did not answer within 1s"),
            (HsFault::Huge, "larger than 33554432 bytes"),
            (HsFault::HugeAnnounced, "larger than 33554432 bytes"),
            (HsFault::CutMidBody, "cut short after"),
        ];
        for (n, (fault, says)) in faults.into_iter().enumerate() {
            let served = &all[..2 + n];
            let wanted = &all[..3 + n];
            let errors = headscale_errors(&rig, &listen).await;
            let sent = hs.sent();
            hs.set_nodes(&nodes[..3 + n]);
            hs.set(fault.clone());
            let err = eventually(WAIT, || headscale_error(&rig, &listen))
                .await
                .unwrap_or_else(|| panic!("{v:?} {fault:?}: no error reported; log:\n{}", daemon.log()));
            eprintln!("{v:?} {fault:?}: {err}");
            assert!(err.contains(says), "{v:?} {fault:?}: {err}");
            assert!(headscale_errors(&rig, &listen).await > errors, "{v:?} {fault:?}: metrics");
            assert!(daemon.log().contains(&err), "{v:?} {fault:?}: not in the log:\n{}", daemon.log());
            serves(&rig, served, &all)
                .await
                .unwrap_or_else(|e| panic!("{v:?} {fault:?} during the fault: {e}"));
            if matches!(fault, HsFault::Huge | HsFault::HugeAnnounced) {
                let read = hs.sent() - sent;
                // Between attempts (the poll backs off), sampled for a while.
                let mut samples = Vec::new();
                for _ in 0..30 {
                    samples.push(rss_kb(daemon.pid()).unwrap());
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                let low = *samples.iter().min().unwrap();
                let high = *samples.iter().max().unwrap();
                eprintln!(
                    "{v:?} {fault:?}: {read} bytes sent of {HUGE_BYTES}; RSS {baseline} kB before, {low}..{high} kB during"
                );
                assert!(
                    low < baseline + 16 * 1024,
                    "{v:?} {fault:?}: the answer stays in memory: RSS {baseline} kB before, at least {low} kB during"
                );
            }
            assert!(daemon.is_running(), "{v:?} {fault:?}: tart-sync exited");

            hs.set(HsFault::Off);
            assert!(
                wait_serving(&rig, wanted, &all, WAIT).await,
                "{v:?} {fault:?}: no recovery; log:\n{}",
                daemon.log()
            );
            assert!(
                eventually(WAIT, || async {
                    headscale_error(&rig, &listen).await.is_none().then_some(())
                })
                .await
                .is_some(),
                "{v:?} {fault:?}: the error stayed"
            );
        }
        let after = rss_kb(daemon.pid()).unwrap();
        eprintln!("{v:?}: RSS {baseline} kB at the start, {after} kB at the end");
    })
    .await;
}
