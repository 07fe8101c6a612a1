//! The live status page end to end.
//!
//! - `sse_delivers_a_tailnet_change_within_a_second`: the real tart-sync
//!   binary against real Caddy (latest) and the headscale stand-in; a client
//!   reads `/api/events`, a TART goes offline in headscale, the event that
//!   says so must arrive within 1 s.
//! - `a_stopped_service_reaches_the_open_page_and_the_filter`: the real
//!   binary with probes; a TART's backend stops while its node stays online:
//!   the event stream, the page and `?state=down` say so within the probe
//!   interval plus the timeout.
//! - `screenshots_desktop_and_phone`: a page with TARTs up, down, offline,
//!   in grace and not probed, with history bars, served by the status server
//!   in-process, shot by headless Chromium at 1280×900 and 390×844 into
//!   `test-output/status-desktop.png` and `test-output/status-phone.png`.
//! - `page_at_10000_tarts`: page weight, Chromium's render time and 32 event
//!   streams under constant change at 10,000 TARTs (printed, written to
//!   `test-output/status-10k.txt`, and bounded by assertions).
//!
//! The browser's side of live updates is in `status_browser_e2e.rs`.
//!
//! Needs `target/debug/tart-sync`, Caddy (`CADDY_BIN_LATEST`) and Chromium
//! (`CHROMIUM_BIN`); a missing one is a SKIP except under `CI=true`.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

#[path = "status_live/common.rs"]
mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use e2e::browser::{chromium_bin, Browser};
use e2e::sync::Rig;
use e2e::{tart_sync_bin, tart_sync_run_command, temp_dir, Version};
use serde_json::Value;
use tart_sync::desired::NodeState;
use tart_sync::health::ServiceState;
use time::OffsetDateTime;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_delivers_a_tailnet_change_within_a_second() {
    let bin = tart_sync_bin();
    let Some(rig) = Rig::start(Version::Latest, &["alpha", "beta"]).await else {
        return;
    };
    let mut nodes = rig.nodes();
    rig.hs.set_nodes(&nodes).await;
    let env = rig.env(&[]);
    let status = format!("http://{}", env["TART_SYNC_STATUS_LISTEN"]);
    let work = temp_dir("status-live");
    let log_path = work.path().join("tart-sync.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let _daemon = Proc(
        tart_sync_run_command(&bin, &env, "info", log)
            .spawn()
            .unwrap(),
    );
    let log = || std::fs::read_to_string(&log_path).unwrap_or_default();

    // Both TARTs online and routed.
    let synced = e2e::eventually(Duration::from_secs(20), || async {
        let text = reqwest::get(format!("{status}/api/status"))
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        let v: Value = serde_json::from_str(&text).ok()?;
        let online = v["nodes"]
            .as_array()?
            .iter()
            .filter(|n| n["state"] == "online")
            .count();
        (online == 2 && v["caddies"][0]["last_sync"].is_string()).then_some(())
    })
    .await;
    assert!(
        synced.is_some(),
        "tart-sync never synced; its log:\n{}",
        log()
    );
    assert!(rig.wait_for("/beta/", "beta", Duration::from_secs(5)).await);

    let mut events = Events::open(&format!("{status}/api/events")).await;
    let first = events.next(Duration::from_secs(3)).await.unwrap();
    assert_eq!(
        first["names"],
        serde_json::json!(["alpha", "beta"]),
        "{first}"
    );

    // beta goes offline in headscale (last seen 10 minutes ago: past its grace).
    nodes[1].online = false;
    nodes[1].last_seen = OffsetDateTime::now_utc() - time::Duration::minutes(10);
    let changed = Instant::now();
    rig.hs.set_nodes(&nodes).await;
    let mut took = None;
    while changed.elapsed() < Duration::from_secs(5) {
        let Some(event) = events.next(Duration::from_secs(5)).await else {
            break;
        };
        let beta_offline = event["rows"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["name"] == "beta" && r["tailnet"] == "offline");
        if beta_offline {
            took = Some(changed.elapsed());
            assert_eq!(event["counts"]["offline"], 1, "{event}");
            break;
        }
    }
    let took = took.unwrap_or_else(|| panic!("no event said beta is offline; log:\n{}", log()));
    eprintln!(
        "SSE: beta offline in headscale → event at the client in {took:?} (poll interval 200 ms)"
    );
    assert!(took <= Duration::from_secs(1), "took {took:?}");
    // And it is what Caddy does.
    assert_eq!(rig.get("/beta/").await.0, 503);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_service_reaches_the_open_page_and_the_filter() {
    const INTERVAL: Duration = Duration::from_millis(500);
    const TIMEOUT: Duration = Duration::from_millis(500);
    let Some(rig) = Rig::start(Version::Latest, &["alpha", "beta"]).await else {
        return;
    };
    rig.hs.set_nodes(&rig.nodes()).await;
    let env = rig.env(&[
        ("TART_SYNC_PROBE_INTERVAL", "500ms"),
        ("TART_SYNC_PROBE_TIMEOUT", "500ms"),
    ]);
    let listen = e2e::observe::status_listen(&env);
    let status = format!("http://{listen}");
    let daemon = e2e::fault::Process::run(&env, "info");
    let both_up = e2e::observe::until_status(&listen, Duration::from_secs(15), |s| {
        e2e::observe::service_state(s, "alpha").as_deref() == Some("up")
            && e2e::observe::service_state(s, "beta").as_deref() == Some("up")
    })
    .await;
    assert!(both_up.is_some(), "never probed up:\n{}", daemon.log());

    let mut events = Events::open(&format!("{status}/api/events")).await;
    assert!(events.next(Duration::from_secs(3)).await.is_some());
    // alpha's web service stops; its node stays online.
    let stopped = Instant::now();
    rig.fleet[0].stop();
    let mut took = None;
    while stopped.elapsed() < Duration::from_secs(10) {
        let Some(event) = events.next(Duration::from_secs(10)).await else {
            break;
        };
        let down =
            event["rows"].as_array().unwrap().iter().any(|r| {
                r["name"] == "alpha" && r["service"] == "down" && r["tailnet"] == "online"
            });
        if down {
            took = Some(stopped.elapsed());
            break;
        }
    }
    let took = took.unwrap_or_else(|| panic!("no event said alpha is down:\n{}", daemon.log()));
    eprintln!("SSE: alpha's service stopped → event at the client in {took:?} (probe interval 500 ms, timeout 500 ms)");
    // The probe interval (jittered by up to a tenth), its timeout, one event gap, some slack.
    assert!(
        took <= INTERVAL + INTERVAL / 10 + TIMEOUT + Duration::from_millis(250 + 500),
        "{took:?}"
    );
    // The page and its "down" filter say so; the route stays.
    let page = reqwest::get(format!("{status}/"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains(
            "data-name=\"alpha\" data-state=\"online\" data-node-id=\"1\" data-service=\"down\""
        ),
        "{page}"
    );
    let down = reqwest::get(format!("{status}/?state=down"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        down.contains("id=\"tart-alpha\"") && !down.contains("id=\"tart-beta\""),
        "{down}"
    );
    assert_ne!(
        rig.get("/alpha/").await.0,
        503,
        "probes never change routing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn screenshots_desktop_and_phone() {
    let ctx = fleet(&showcase());
    let server = serve(ctx).await;
    let html = reqwest::get(format!("{}/", server.base))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for state in ["online", "grace", "offline"] {
        assert!(html.contains(&format!("data-state=\"{state}\"")), "{state}");
    }
    for service in ["up", "down", "unknown"] {
        assert!(
            html.contains(&format!("data-service=\"{service}\"")),
            "{service}"
        );
    }
    let Some(bin) = chromium_bin() else { return };
    let out = repo_root().join("test-output");
    std::fs::create_dir_all(&out).unwrap();
    let url = format!("{}/", server.base);
    let (dom, _) = tokio::task::spawn_blocking({
        let url = url.clone();
        let b = Browser::new(bin.clone());
        move || b.dump_dom(&url)
    })
    .await
    .unwrap();
    // The script ran (it marks the page ready) and the rows are all there.
    assert!(dom.contains("data-ready-ms=\""), "app.js did not run");
    assert_eq!(dom.matches("<tr class=\"node\"").count(), 9);
    for (file, w, h) in [
        ("status-desktop.png", 1280, 900),
        ("status-phone.png", 390, 844),
    ] {
        let png = out.join(file);
        let url = url.clone();
        let b = Browser::new(bin.clone());
        tokio::task::spawn_blocking(move || b.screenshot(&url, &png, w, h))
            .await
            .unwrap();
        eprintln!("screenshot: test-output/{file}");
    }
}

/// 10,000 TARTs: 85 % up, 5 % down, 5 % offline, 3 % in grace, 2 % not probed.
fn big_fleet() -> Vec<Tart> {
    use NodeState::{Grace, Offline, Online};
    use ServiceState::{Down, Up};
    (0..10_000)
        .map(|i| {
            let name = format!("tart-{i:05}");
            // A day of history each, a blip for one in ten.
            let blip = if i % 10 == 0 {
                vec![(12.0, DOWN), (11.5, UP)]
            } else {
                vec![]
            };
            match i % 100 {
                0..85 => tart(&name, Online, 0, Some((Up, 20.0 + f64::from(i % 50), 60)))
                    .with(&[&[(30.0, ON), (30.0, UP)], &blip[..], &[(1.0, UP)]].concat()),
                85..90 => tart(&name, Online, 0, Some((Down, 0.0, 5)))
                    .with(&[&[(30.0, ON), (30.0, UP)], &blip[..], &[(5.0 / 60.0, DOWN)]].concat()),
                90..95 => tart(&name, Offline, 300, None).with(&[
                    (30.0, ON),
                    (30.0, UP),
                    (5.1, GRACE),
                    (5.0, OFF),
                ]),
                95..98 => tart(&name, Grace, 1, Some((Up, 25.0, 1800))).with(&[
                    (30.0, ON),
                    (30.0, UP),
                    (1.0 / 60.0, GRACE),
                ]),
                _ => tart(&name, Online, 0, None).with(&[(20.0, ON)]),
            }
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn page_at_10000_tarts() {
    let ctx = fleet(&big_fleet());
    let server = serve(ctx.clone()).await;
    let http = reqwest::Client::new();
    let mut report = String::new();
    for path in ["/", "/?page=20", "/?state=down"] {
        let started = Instant::now();
        let body = http
            .get(format!("{}{path}", server.base))
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        let took = started.elapsed();
        assert!(body.len() < 1_000_000, "{path}: {} bytes", body.len());
        if path == "/" {
            // For a look, and to measure what compression would give.
            let out = repo_root().join("test-output");
            std::fs::create_dir_all(&out).unwrap();
            std::fs::write(out.join("status-10k-page1.html"), &body).unwrap();
        }
        report.push_str(&format!("GET {path}: {} bytes in {took:?}\n", body.len()));
    }
    let css = http
        .get(format!("{}/static/page.css", server.base))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let js = http
        .get(format!("{}/static/app.js", server.base))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    report.push_str(&format!(
        "page.css {} bytes, app.js {} bytes\n",
        css.len(),
        js.len()
    ));
    // A full first event (a client whose page is out of date).
    let mut events = Events::open(&format!("{}/api/events", server.base)).await;
    let started = Instant::now();
    let first = events.next(Duration::from_secs(5)).await.unwrap();
    report.push_str(&format!(
        "first event (every row of page 1): {} bytes in {:?}\n",
        first.to_string().len(),
        started.elapsed()
    ));
    drop(events);

    // 32 live views (the cap, on 4 pages, each starting with every row)
    // while 100 TARTs change state every 100 ms, for 5 s: what the streams
    // cost (this process: server and the changes' writer; the clients only
    // parse events).
    let mut clients = Vec::new();
    let received = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let n_streams = 32;
    for i in 0..n_streams {
        let url = format!("{}/api/events?page={}", server.base, i % 4 + 1);
        let mut events = Events::open(&url).await;
        let received = received.clone();
        clients.push(tokio::spawn(async move {
            while events.next(Duration::from_secs(10)).await.is_some() {
                received.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        }));
    }
    let ticks = e2e::procfs::clock_ticks();
    let pid = std::process::id();
    let cpu_before = e2e::procfs::cpu_time(pid, ticks).unwrap();
    let started = Instant::now();
    let mut flips = 0u32;
    while started.elapsed() < Duration::from_secs(5) {
        let state = if flips.is_multiple_of(2) {
            ServiceState::Down
        } else {
            ServiceState::Up
        };
        for i in (0..10_000).step_by(100) {
            ctx.health
                .set_probe(&format!("tart-{i:05}"), probe_now(state));
        }
        flips += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let cpu = e2e::procfs::cpu_time(pid, ticks).unwrap() - cpu_before;
    let wall = started.elapsed();
    let received = received.load(std::sync::atomic::Ordering::Relaxed);
    for c in clients {
        c.abort();
    }
    report.push_str(&format!(
        "32 event streams, 100 TARTs changing every 100 ms for {wall:?}: {cpu:?} CPU ({:.0} % of one core), events received: {received}\n",
        cpu.as_secs_f64() / wall.as_secs_f64() * 100.0
    ));
    if let Some(bin) = chromium_bin() {
        let url = format!("{}/", server.base);
        let mut ready = Vec::new();
        for _ in 0..3 {
            let (dom, took) = tokio::task::spawn_blocking({
                let url = url.clone();
                let b = Browser::new(bin.clone());
                move || b.dump_dom(&url)
            })
            .await
            .unwrap();
            assert_eq!(dom.matches("<tr class=\"node\"").count(), 500);
            let ms: u64 = dom
                .split("data-ready-ms=\"")
                .nth(1)
                .and_then(|s| s.split('"').next())
                .and_then(|s| s.parse().ok())
                .expect("app.js marks the page ready");
            ready.push(ms);
            report.push_str(&format!(
                "Chromium: page laid out {ms} ms after navigation; whole --dump-dom run {took:?}\n"
            ));
        }
        ready.sort_unstable();
        assert!(ready[1] < 5_000, "median {} ms", ready[1]);
    }
    eprintln!("{report}");
    let out = repo_root().join("test-output");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("status-10k.txt"), report).unwrap();
}
