//! The live status page end to end.
//!
//! - `sse_delivers_a_tailnet_change_within_a_second`: the real tart-sync
//!   binary against real Caddy (latest) and the headscale stand-in; a client
//!   reads `/api/events`, a TART goes offline in headscale, the event that
//!   says so must arrive within 1 s.
//! - `screenshots_desktop_and_phone`: a page with TARTs up, down, offline,
//!   in grace and not probed, with history bars, served by the status server
//!   in-process, shot by headless Chromium at 1280×900 and 390×844 into
//!   `test-output/status-desktop.png` and `test-output/status-phone.png`.
//! - `page_at_10000_tarts`: page weight and Chromium's render time at 10,000
//!   TARTs (printed, and bounded by assertions).
//! - `a_stopped_service_reaches_the_open_page_and_the_filter`: the real
//!   binary with probes; a TART's backend stops while its node stays online:
//!   the event stream, the page and `?state=down` say so within the probe
//!   interval plus the timeout.
//! - `a_browser_keeps_the_page_links_current`: paging links follow a
//!   filter's count.
//! - `a_browser_patches_rows_from_events`: Chromium, driven over the DevTools
//!   protocol, shows a probe's change on the open page within 1 s, by
//!   patching the row in place (no reload).
//!
//! Needs `target/debug/tart-sync`, Caddy (`CADDY_BIN_LATEST`) and Chromium
//! (`CHROMIUM_BIN`); a missing one is a SKIP except under `CI=true`.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use e2e::browser::{chromium_bin, Browser};
use e2e::sync::Rig;
use e2e::{tart_sync_bin, tart_sync_run_command, temp_dir, Version};
use serde_json::Value;
use tart_sync::config::Settings;
use tart_sync::context::{Context, LastOutcome};
use tart_sync::desired::{Desired, Entry, NodeState};
use tart_sync::health::{Change, ChangeKind, ProbeResult, ServiceState};
use time::OffsetDateTime;
use tokio::sync::watch;

fn repo_root() -> PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// An open `/api/events` stream, read event by event.
struct Events {
    resp: reqwest::Response,
    buf: String,
}

impl Events {
    async fn open(url: &str) -> Events {
        let resp = reqwest::Client::new().get(url).send().await.unwrap();
        assert_eq!(resp.status().as_u16(), 200, "{url}");
        assert_eq!(resp.headers()["content-type"], "text/event-stream");
        Events {
            resp,
            buf: String::new(),
        }
    }

    /// The next event's data, or `None` at the end of the stream or after `limit`.
    async fn next(&mut self, limit: Duration) -> Option<Value> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let event: String = self.buf.drain(..end + 2).collect();
                let data: String = event
                    .lines()
                    .filter_map(|l| l.strip_prefix("data: "))
                    .collect();
                if !data.is_empty() {
                    return Some(serde_json::from_str(&data).unwrap());
                }
                continue;
            }
            match tokio::time::timeout_at(deadline, self.resp.chunk()).await {
                Ok(Ok(Some(bytes))) => self.buf.push_str(&String::from_utf8_lossy(&bytes)),
                _ => return None,
            }
        }
    }
}

/// A child process killed on drop.
struct Proc(std::process::Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

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

/// Settings for an in-process status server.
fn settings() -> Settings {
    let toml = "[headscale]\nurl = \"http://127.0.0.1:1\"\napi_key = \"hskey-api-test\"\n\
                [caddy]\nadmin = [\"127.0.0.1:1\"]\n[routes]\ndomain = \"tart.example.org\"\n";
    Settings::from_sources(Some(toml), &|_: &str| None, None).unwrap()
}

/// A TART's tailnet state and probe, for [`fleet`].
struct Tart {
    name: String,
    tailnet: NodeState,
    /// Offline (or in grace) since this long ago.
    offline_for: time::Duration,
    /// The probe: state, latency (ms), state since this long ago.
    probe: Option<(ServiceState, f64, time::Duration)>,
    /// Its history: (hours ago, change), oldest first.
    history: Vec<(f64, ChangeKind)>,
}

const ON: ChangeKind = ChangeKind::Tailnet(NodeState::Online);
const GRACE: ChangeKind = ChangeKind::Tailnet(NodeState::Grace);
const OFF: ChangeKind = ChangeKind::Tailnet(NodeState::Offline);
const UP: ChangeKind = ChangeKind::Service(ServiceState::Up);
const DOWN: ChangeKind = ChangeKind::Service(ServiceState::Down);

fn tart(
    name: &str,
    tailnet: NodeState,
    offline_for_min: i64,
    probe: Option<(ServiceState, f64, i64)>,
) -> Tart {
    Tart {
        name: name.into(),
        tailnet,
        offline_for: time::Duration::minutes(offline_for_min),
        probe: probe.map(|(s, ms, since_min)| (s, ms, time::Duration::minutes(since_min))),
        history: Vec::new(),
    }
}

impl Tart {
    fn with(mut self, history: &[(f64, ChangeKind)]) -> Tart {
        self.history = history.to_vec();
        self
    }
}

/// A context whose state holds `tarts` (synced, headscale reachable) with their probes.
fn fleet(tarts: &[Tart]) -> Arc<Context> {
    let ctx = Context::new(settings());
    let now = OffsetDateTime::now_utc();
    let entries = tarts
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let offline_since = (t.tailnet != NodeState::Online).then_some(now - t.offline_for);
            Entry {
                name: t.name.clone(),
                node_id: i as u64 + 1,
                user: "tagged-devices".into(),
                upstream: format!("100.64.{}.{}:80", i / 250, i % 250 + 1),
                state: t.tailnet,
                offline_since,
                grace_until: (t.tailnet == NodeState::Grace)
                    .then(|| offline_since.unwrap() + time::Duration::minutes(2)),
            }
        })
        .collect();
    {
        let mut s = ctx.state.write().unwrap();
        s.headscale.reachable = true;
        s.headscale.last_success = Some(now);
        s.headscale.nodes_seen = tarts.len();
        s.desired = Some(Arc::new(Desired {
            entries,
            skipped: Vec::new(),
        }));
        for c in &mut s.caddies {
            c.reachable = true;
            c.last_sync = Some(now);
            c.last_outcome = LastOutcome::Unchanged;
            c.routes = tarts.len();
            c.stream_close_delay = Some(true);
        }
    }
    for t in tarts {
        for (hours_ago, kind) in &t.history {
            ctx.health.record(Change {
                at: now - time::Duration::seconds_f64(hours_ago * 3600.0),
                name: t.name.clone(),
                kind: *kind,
            });
        }
        if let Some((state, ms, since)) = t.probe {
            ctx.health.set_probe(
                &t.name,
                ProbeResult {
                    state,
                    http_status: (state == ServiceState::Up).then_some(200),
                    latency: (state == ServiceState::Up)
                        .then(|| Duration::from_secs_f64(ms / 1000.0)),
                    checked: now,
                    since: now - since,
                    error: (state == ServiceState::Down)
                        .then(|| "GET http://100.64.0.3:80/: connection refused".into()),
                },
            );
        }
    }
    ctx
}

/// The status server for `ctx` on a free port, stopped on drop.
struct Server {
    base: String,
    _stop: watch::Sender<bool>,
}

async fn serve(ctx: Arc<Context>) -> Server {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (stop, rx) = watch::channel(false);
    tokio::spawn(tart_sync::status::serve(ctx, listener, rx));
    Server { base, _stop: stop }
}

fn showcase() -> Vec<Tart> {
    use NodeState::{Grace, Offline, Online};
    use ServiceState::{Down, Up};
    vec![
        tart("dwingeloo", Grace, 1, Some((Up, 31.0, 1800))).with(&[
            (30.0, ON),
            (30.0, UP),
            (1.0 / 60.0, GRACE),
        ]),
        tart("hartrao", Online, 0, Some((Up, 18.4, 510))).with(&[
            (30.0, ON),
            (30.0, UP),
            (9.0, DOWN),
            (8.5, UP),
        ]),
        tart("karoo", Online, 0, Some((Up, 47.0, 660))).with(&[
            (30.0, ON),
            (30.0, UP),
            (14.0, GRACE),
            (13.97, OFF),
            (11.0, ON),
        ]),
        tart("lofar", Offline, 4320, None).with(&[(72.0, OFF)]),
        tart("meerkat", Online, 0, Some((Down, 0.0, 4))).with(&[
            (30.0, ON),
            (30.0, UP),
            (18.0, DOWN),
            (17.6, UP),
            (4.0 / 60.0, DOWN),
        ]),
        tart("onsala", Offline, 130, Some((Down, 0.0, 130))).with(&[
            (30.0, ON),
            (30.0, UP),
            (2.2, GRACE),
            (2.17, OFF),
            (2.17, DOWN),
        ]),
        tart("parkes", Online, 0, Some((Up, 231.0, 1800))).with(&[(30.0, ON), (30.0, UP)]),
        tart("rhodes", Online, 0, Some((Up, 12.3, 177))).with(&[
            (30.0, ON),
            (30.0, UP),
            (6.0, DOWN),
            (5.5, UP),
            (3.0, DOWN),
            (2.95, UP),
        ]),
        tart("zadko", Online, 0, None).with(&[(5.0, ON)]),
    ]
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

/// Headless Chromium showing one page, driven over the DevTools protocol
/// (`Runtime.evaluate` over its WebSocket); killed on drop.
struct LivePage {
    _chromium: Proc,
    _profile: e2e::TempDir,
    ws: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
    next_id: u64,
}

impl LivePage {
    async fn open(bin: &std::path::Path, url: &str) -> LivePage {
        let profile = temp_dir("chromium-cdp");
        let chromium = Proc(
            std::process::Command::new(bin)
                .args([
                    "--headless",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--no-first-run",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                    "--disable-dev-shm-usage",
                    "--remote-debugging-address=127.0.0.1",
                    "--remote-debugging-port=0",
                ])
                .arg(format!("--user-data-dir={}", profile.path().display()))
                .arg(url)
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap(),
        );
        // Chromium writes its port into the profile.
        let port_file = profile.path().join("DevToolsActivePort");
        let port: u16 = e2e::eventually(Duration::from_secs(30), || async {
            std::fs::read_to_string(&port_file)
                .ok()?
                .lines()
                .next()?
                .parse()
                .ok()
        })
        .await
        .expect("Chromium never opened its DevTools port");
        let ws_url = e2e::eventually(Duration::from_secs(30), || async {
            let text = reqwest::get(format!("http://127.0.0.1:{port}/json/list"))
                .await
                .ok()?
                .text()
                .await
                .ok()?;
            let targets: Value = serde_json::from_str(&text).ok()?;
            targets.as_array()?.iter().find(|t| t["type"] == "page")?["webSocketDebuggerUrl"]
                .as_str()
                .map(String::from)
        })
        .await
        .expect("Chromium lists no page");
        let (ws, _) = tokio_tungstenite::connect_async(ws_url.as_str())
            .await
            .unwrap();
        LivePage {
            _chromium: chromium,
            _profile: profile,
            ws,
            next_id: 0,
        }
    }

    /// The value of `expression` in the page (`null` on an exception).
    async fn eval(&mut self, expression: &str) -> Value {
        use futures_util::{SinkExt as _, StreamExt as _};
        use tokio_tungstenite::tungstenite::Message;
        self.next_id += 1;
        let id = self.next_id;
        let call = serde_json::json!({
            "id": id,
            "method": "Runtime.evaluate",
            "params": {"expression": expression, "returnByValue": true},
        });
        self.ws.send(Message::text(call.to_string())).await.unwrap();
        loop {
            let msg = tokio::time::timeout(Duration::from_secs(10), self.ws.next())
                .await
                .expect("DevTools answered nothing for 10 s")
                .unwrap()
                .unwrap();
            let Message::Text(text) = msg else { continue };
            let v: Value = serde_json::from_str(&text).unwrap();
            if v["id"] == id {
                return v["result"]["result"]["value"].clone();
            }
        }
    }

    /// Evaluates `expression` every 20 ms until it is `want`; how long that took.
    async fn wait_for(
        &mut self,
        expression: &str,
        want: Value,
        limit: Duration,
    ) -> Option<Duration> {
        let started = Instant::now();
        while started.elapsed() < limit {
            if self.eval(expression).await == want {
                return Some(started.elapsed());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        None
    }
}

fn probe_now(state: ServiceState) -> ProbeResult {
    let now = OffsetDateTime::now_utc();
    ProbeResult {
        state,
        http_status: (state == ServiceState::Up).then_some(200),
        latency: (state == ServiceState::Up).then_some(Duration::from_millis(9)),
        checked: now,
        since: now,
        error: (state == ServiceState::Down).then(|| "GET http://100.64.0.9:80/: timed out".into()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_patches_rows_from_events() {
    let Some(bin) = chromium_bin() else { return };
    let ctx = fleet(&showcase());
    let server = serve(ctx.clone()).await;
    let mut page = LivePage::open(&bin, &format!("{}/", server.base)).await;
    // The script ran and its event stream is open.
    let live = page
        .wait_for(
            "document.getElementById('live').className",
            "on".into(),
            Duration::from_secs(20),
        )
        .await;
    assert!(
        live.is_some(),
        "the page never went live: {}",
        page.eval("document.body.innerText").await
    );
    let service = "document.getElementById('tart-zadko').getAttribute('data-service')";
    assert_eq!(page.eval(service).await, "unknown");
    assert_eq!(
        page.eval("document.getElementById('count-down').textContent")
            .await,
        "2"
    );

    // zadko's probe fails: the open page shows it, without a reload.
    page.eval("window.marker = 'same page'").await;
    ctx.health.set_probe("zadko", probe_now(ServiceState::Down));
    let took = page
        .wait_for(service, "down".into(), Duration::from_secs(5))
        .await;
    let took = took.expect("the page never showed zadko down");
    eprintln!("browser: zadko down on the open page {took:?} after the probe");
    assert!(took < Duration::from_secs(1), "{took:?}");
    assert_eq!(
        page.eval("window.marker").await,
        "same page",
        "patched, not reloaded"
    );
    assert_eq!(
        page.eval("document.querySelector('#tart-zadko .error').textContent")
            .await,
        "GET http://100.64.0.9:80/: timed out"
    );
    assert_eq!(
        page.eval("document.getElementById('count-down').textContent")
            .await,
        "3"
    );
    assert_eq!(
        page.eval("document.querySelectorAll('tr.node.changed').length")
            .await,
        1
    );
    assert_eq!(
        page.eval("document.querySelectorAll('tr.node').length")
            .await,
        9
    );
    // The rebuilt row has its history bar, drawn by the script.
    assert_eq!(
        page.eval("document.querySelectorAll('#tart-zadko svg.bar rect').length > 1")
            .await,
        true
    );
    // And back up.
    ctx.health.set_probe("zadko", probe_now(ServiceState::Up));
    assert!(page
        .wait_for(service, "up".into(), Duration::from_secs(2))
        .await
        .is_some());
    assert_eq!(
        page.eval("document.querySelector('#tart-zadko td.latency').textContent")
            .await,
        "9.0 ms"
    );

    // A filtered page: a TART that enters the state gets a row, one that
    // leaves it loses its row, in place.
    page.eval("location.href = '/?state=down'").await;
    let rows =
        "Array.from(document.querySelectorAll('tr.node')).map(r => r.dataset.name).join(',')";
    assert!(page
        .wait_for(rows, "meerkat,onsala".into(), Duration::from_secs(10))
        .await
        .is_some());
    assert!(page
        .wait_for(
            "document.getElementById('live').className",
            "on".into(),
            Duration::from_secs(10)
        )
        .await
        .is_some());
    page.eval("window.marker = 'filtered page'").await;
    ctx.health.set_probe("zadko", probe_now(ServiceState::Down));
    assert!(
        page.wait_for(rows, "meerkat,onsala,zadko".into(), Duration::from_secs(2))
            .await
            .is_some(),
        "zadko never joined the down page: {}",
        page.eval(rows).await
    );
    ctx.health.set_probe("meerkat", probe_now(ServiceState::Up));
    assert!(page
        .wait_for(rows, "onsala,zadko".into(), Duration::from_secs(2))
        .await
        .is_some());
    // None left: the page says so.
    ctx.health.set_probe("onsala", probe_now(ServiceState::Up));
    ctx.health.set_probe("zadko", probe_now(ServiceState::Up));
    assert!(page
        .wait_for(rows, "".into(), Duration::from_secs(2))
        .await
        .is_some());
    assert_eq!(
        page.eval("document.getElementById('no-match').textContent")
            .await,
        "No TART is in this state now."
    );
    assert_eq!(
        page.eval("window.marker").await,
        "filtered page",
        "patched, not reloaded"
    );
    assert_eq!(
        page.eval("document.getElementById('count-down').textContent")
            .await,
        "0"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_keeps_the_page_links_current() {
    let Some(bin) = chromium_bin() else { return };
    // 501 TARTs up: two pages of "up".
    let tarts: Vec<Tart> = (0..501)
        .map(|i| {
            tart(
                &format!("t{i:03}"),
                NodeState::Online,
                0,
                Some((ServiceState::Up, 5.0, 60)),
            )
        })
        .collect();
    let ctx = fleet(&tarts);
    let server = serve(ctx.clone()).await;
    let mut page = LivePage::open(&bin, &format!("{}/?state=up", server.base)).await;
    assert!(page
        .wait_for(
            "document.getElementById('live').className",
            "on".into(),
            Duration::from_secs(20)
        )
        .await
        .is_some());
    let links = "Array.from(document.querySelectorAll('p.pages')).map(p => p.firstChild.textContent).join('|')";
    assert_eq!(
        page.eval(links).await,
        "Page 1 of 2: TARTs 1–500 of 501|Page 1 of 2: TARTs 1–500 of 501"
    );
    // One goes down: one page, no links.
    ctx.health.set_probe("t007", probe_now(ServiceState::Down));
    assert!(page
        .wait_for(links, "".into(), Duration::from_secs(2))
        .await
        .is_some());
    assert_eq!(
        page.eval("document.querySelectorAll('tr.node').length")
            .await,
        500
    );
    // It comes back: the links too, with a working next link.
    ctx.health.set_probe("t007", probe_now(ServiceState::Up));
    assert!(page
        .wait_for(
            links,
            "Page 1 of 2: TARTs 1–500 of 501|Page 1 of 2: TARTs 1–500 of 501".into(),
            Duration::from_secs(2)
        )
        .await
        .is_some());
    assert_eq!(
        page.eval("document.querySelector('p.pages a[rel=next]').getAttribute('href')")
            .await,
        "?state=up&page=2"
    );
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
