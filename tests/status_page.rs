//! The status page in a real browser: the tart-sync binary runs against real
//! Caddy (latest) and a wiremock headscale with two TARTs (alpha online, beta
//! offline for ten minutes) and an expired laptop; headless Chromium renders
//! `/`, its DOM must show one row per TART with the right state, and a
//! phone-sized screenshot goes to `test-output/status-page.png`.
//!
//! Needs `target/debug/tart-sync` (built by `scripts/test`), Caddy
//! (`CADDY_BIN_LATEST`) and Chromium (`CHROMIUM_BIN`, default
//! `/usr/bin/chromium`). Without Caddy or Chromium the test says SKIP, except
//! under `CI=true`, where anything missing is a failure.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use e2e::backend::{fleet_ip, start_fleet};
use e2e::{free_port, temp_dir, Caddy, Version};
use serde_json::{json, Value};
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const DOMAIN: &str = "tart.test";
const API_KEY: &str = "hskey-api-e2e-status-page";

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn is_ci() -> bool {
    std::env::var("CI").as_deref() == Ok("true")
}

/// Chromium, or `None` (SKIP) when it is not installed outside CI.
fn chromium_bin() -> Option<PathBuf> {
    let p = std::env::var("CHROMIUM_BIN")
        .ok()
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| "/usr/bin/chromium".into());
    if Path::new(&p).exists() {
        return Some(PathBuf::from(p));
    }
    if is_ci() {
        panic!("Chromium is not installed at {p} (set CHROMIUM_BIN); under CI=true that is a failure (scripts/setup --chromium installs it)");
    }
    eprintln!("SKIP: the browser part of the status page test: no Chromium at {p} (set CHROMIUM_BIN or run scripts/setup --chromium)");
    None
}

/// RFC 3339 for a Unix time (UTC, whole seconds), without a date crate.
fn rfc3339(unix: u64) -> String {
    let days = (unix / 86_400) as i64;
    let secs = unix % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

#[test]
fn rfc3339_formats_unix_times() {
    assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
    assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
    assert_eq!(rfc3339(1_783_671_302), "2026-07-10T08:15:02Z");
}

/// headscale 0.28's node list (the fixture) turned into the test fleet:
/// alpha (online, 127.0.0.2), beta (offline for 10 minutes, 127.0.0.3) and
/// the fixture's expired laptop.
fn nodes_body() -> Value {
    let fixture = repo_root().join("tests/fixtures/headscale/v0.28-nodes.json");
    let mut body: Value = serde_json::from_str(&fs::read_to_string(&fixture).unwrap()).unwrap();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let nodes = body["nodes"].as_array_mut().unwrap();
    assert_eq!(nodes.len(), 3, "fixture changed: {}", fixture.display());
    for (i, (name, online, last_seen)) in [("alpha", true, now), ("beta", false, now - 600)]
        .into_iter()
        .enumerate()
    {
        let n = &mut nodes[i];
        n["givenName"] = json!(name);
        n["name"] = json!(format!("tart-{name}"));
        n["ipAddresses"] = json!([fleet_ip(i).to_string()]);
        n["online"] = json!(online);
        n["lastSeen"] = json!(rfc3339(last_seen));
        n["expiry"] = Value::Null;
    }
    nodes[2]["expiry"] = json!("2020-01-01T00:00:00Z");
    body
}

/// A site for `tart.test` whose subroute answers 404, as a Caddyfile site would.
fn caddy_config(http_port: u16) -> Value {
    json!({"apps": {"http": {"servers": {"srv0": {
        "listen": [format!("127.0.0.1:{http_port}")],
        "automatic_https": {"disable": true},
        "routes": [{
            "match": [{"host": [DOMAIN]}],
            "handle": [{"handler": "subroute", "routes": [
                {"handle": [{"handler": "static_response", "status_code": 404, "body": "no such TART"}]}
            ]}],
            "terminal": true
        }]
    }}}}})
}

/// A child process killed (and reaped) on drop, its output in a log file.
struct Proc {
    name: &'static str,
    child: Child,
    log: PathBuf,
}

impl Proc {
    fn spawn(name: &'static str, mut cmd: Command, log: PathBuf) -> Proc {
        let out = fs::File::create(&log).unwrap();
        let err = out.try_clone().unwrap();
        cmd.stdin(Stdio::null()).stdout(out).stderr(err);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name} ({cmd:?}): {e}"));
        Proc { name, child, log }
    }

    fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Panics with the log if the process has exited.
    fn assert_running(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!(
                "{} exited early ({status}); its output:\n{}",
                self.name,
                self.log()
            );
        }
    }

    /// Waits for the process to exit by itself, at most `limit`; kills it after that.
    fn wait(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `<tr class="node" …>` rows of an HTML text: (data-name, data-state).
fn node_rows(html: &str) -> Vec<(String, String)> {
    // Rows carry the class `node`, and `changed` once the live script
    // patched them.
    html.match_indices("<tr class=\"node")
        .filter(|(i, m)| matches!(html.as_bytes().get(i + m.len()), Some(b'"' | b' ')))
        .map(|(i, _)| {
            let tag = &html[i..i + html[i..].find('>').unwrap()];
            let attr = |a: &str| {
                let start = tag
                    .find(&format!(" {a}=\""))
                    .unwrap_or_else(|| panic!("no {a} in {tag}"))
                    + a.len()
                    + 3;
                tag[start..start + tag[start..].find('"').unwrap()].to_string()
            };
            (attr("data-name"), attr("data-state"))
        })
        .collect()
}

/// Runs Chromium headless with `args` + `url`; returns its stdout. Killed after 90 s.
fn chromium(bin: &Path, profile: &Path, args: &[String], url: &str, log: PathBuf) -> String {
    let stdout_file = log.with_extension("stdout");
    let mut cmd = Command::new(bin);
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--hide-scrollbars",
    ])
    .arg(format!("--user-data-dir={}", profile.display()))
    .args(args)
    .arg(url);
    cmd.stdin(Stdio::null())
        .stdout(fs::File::create(&stdout_file).unwrap())
        .stderr(fs::File::create(&log).unwrap());
    let child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start Chromium {}: {e}", bin.display()));
    let mut proc = Proc {
        name: "chromium",
        child,
        log,
    };
    match proc.wait(Duration::from_secs(90)) {
        Some(status) if status.success() => fs::read_to_string(&stdout_file).unwrap_or_default(),
        Some(status) => panic!("Chromium failed ({status}); its stderr:\n{}", proc.log()),
        None => panic!(
            "Chromium did not finish within 90 s; its stderr:\n{}",
            proc.log()
        ),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_page_in_a_browser() {
    let bin = e2e::tart_sync_bin();
    assert!(
        bin.exists(),
        "the tart-sync binary is missing at {}: build it first with `cargo build -p tart-sync --bin tart-sync` \
         (scripts/test does), or point TART_SYNC_BIN at it",
        bin.display()
    );
    let (port, _fleet) = start_fleet(&["alpha", "beta"]).await;
    let http_port = free_port();
    let Some(caddy) = Caddy::start(Version::Latest, caddy_config(http_port)) else {
        return;
    };

    let headscale = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/v1/node"))
        .and(header(
            "authorization",
            format!("Bearer {API_KEY}").as_str(),
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(nodes_body()))
        .mount(&headscale)
        .await;

    let work = temp_dir("status-page");
    let status_port = free_port();
    let status = format!("http://127.0.0.1:{status_port}");
    let mut cmd = Command::new(&bin);
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("RUST_LOG", "info")
        .env("TART_SYNC_HEADSCALE_URL", headscale.uri())
        .env("TART_SYNC_HEADSCALE_API_KEY", API_KEY)
        .env("TART_SYNC_HEADSCALE_POLL_INTERVAL", "200ms")
        .env("TART_SYNC_CADDY_ADMIN", &caddy.admin)
        .env("TART_SYNC_ROUTES_DOMAIN", DOMAIN)
        .env("TART_SYNC_ROUTES_UPSTREAM_PORT", port.to_string())
        .env(
            "TART_SYNC_STATUS_LISTEN",
            format!("127.0.0.1:{status_port}"),
        )
        .current_dir(work.path())
        .arg("run");
    let mut tart_sync = Proc::spawn("tart-sync", cmd, work.path().join("tart-sync.log"));

    // Wait until tart-sync has polled headscale and synced Caddy.
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let report = loop {
        tart_sync.assert_running();
        let answer = match http.get(format!("{status}/api/status")).send().await {
            Ok(r) if r.status().is_success() => r
                .text()
                .await
                .ok()
                .and_then(|t| serde_json::from_str::<Value>(&t).ok()),
            _ => None,
        };
        if let Some(v) = answer {
            let synced = v["caddies"][0]["last_sync"].is_string();
            if v["nodes"].as_array().is_some_and(|n| n.len() == 2) && synced {
                break v;
            }
            if Instant::now() > deadline {
                panic!(
                    "/api/status never showed 2 nodes and a synced Caddy: {v:#}\ntart-sync:\n{}",
                    tart_sync.log()
                );
            }
        } else if Instant::now() > deadline {
            panic!(
                "tart-sync's status server never answered on {status}; its output:\n{}",
                tart_sync.log()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(report["domain"], DOMAIN);
    assert_eq!(report["mode"], "path");
    assert_eq!(report["headscale"]["reachable"], true);
    assert_eq!(report["headscale"]["nodes_seen"], 3);
    let by_name = |n: &str| {
        report["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["name"] == n)
            .cloned()
            .unwrap()
    };
    assert_eq!(by_name("alpha")["state"], "online", "{report:#}");
    assert_eq!(by_name("alpha")["url"], "https://tart.test/alpha/");
    assert_eq!(by_name("alpha")["upstream"], format!("127.0.0.2:{port}"));
    assert_eq!(by_name("beta")["state"], "offline", "{report:#}");
    assert!(by_name("beta")["offline_since"].is_string());
    assert_eq!(report["skipped"][0]["reason"], "expired", "{report:#}");
    assert_eq!(report["caddies"][0]["reachable"], true);
    assert_eq!(report["caddies"][0]["last_error"], Value::Null);

    // What the page says is what Caddy does.
    let via_caddy = |p: &'static str| {
        let http = http.clone();
        async move {
            let r = http
                .get(format!("http://127.0.0.1:{http_port}{p}"))
                .header("host", DOMAIN)
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }
    };
    let (code, body) = via_caddy("/alpha/").await;
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("\"tart\":\"alpha\""), "{body}");
    assert_eq!(via_caddy("/beta/").await.0, 503);

    // Readiness, health and metrics of the running binary.
    assert_eq!(
        http.get(format!("{status}/healthz"))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16(),
        200
    );
    assert_eq!(
        http.get(format!("{status}/readyz"))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16(),
        200
    );
    let metrics = http
        .get(format!("{status}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics
            .lines()
            .any(|l| l == "tart_sync_nodes{state=\"online\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics
            .lines()
            .any(|l| l == "tart_sync_nodes{state=\"offline\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("tart_sync_caddy_up{caddy=\"") && l.ends_with("\"} 1")),
        "{metrics}"
    );

    // The served HTML, before any browser.
    let html = http
        .get(format!("{status}/"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let expected = vec![
        ("alpha".to_string(), "online".to_string()),
        ("beta".to_string(), "offline".to_string()),
    ];
    assert_eq!(node_rows(&html), expected, "{html}");

    // The browser.
    if let Some(chromium_path) = chromium_bin() {
        let profile = temp_dir("chromium-profile");
        let dom = tokio::task::spawn_blocking({
            let (chromium_path, profile_path, url, log) = (
                chromium_path.clone(),
                profile.path().to_path_buf(),
                format!("{status}/"),
                work.path().join("chromium-dom.log"),
            );
            move || {
                chromium(
                    &chromium_path,
                    &profile_path,
                    &["--dump-dom".to_string()],
                    &url,
                    log,
                )
            }
        })
        .await
        .unwrap();
        assert_eq!(node_rows(&dom), expected, "Chromium's DOM:\n{dom}");
        assert!(
            dom.contains("<span class=\"badge online\">online</span>"),
            "{dom}"
        );
        assert!(
            dom.contains("<span class=\"badge offline\">offline</span>"),
            "{dom}"
        );
        assert!(
            dom.contains("<a href=\"https://tart.test/alpha/\">"),
            "{dom}"
        );
        assert!(dom.contains("<tr class=\"skipped\""), "{dom}");

        let out_dir = repo_root().join("test-output");
        fs::create_dir_all(&out_dir).unwrap();
        // A phone (the layout that stacks the tables) and a desktop window.
        for (file, size) in [
            ("status-page.png", "412,915"),
            ("status-page-desktop.png", "1280,900"),
        ] {
            let shot = out_dir.join(file);
            let _ = fs::remove_file(&shot);
            tokio::task::spawn_blocking({
                let args = vec![
                    format!("--screenshot={}", shot.display()),
                    format!("--window-size={size}"),
                ];
                let (chromium_path, profile_path, url, log) = (
                    chromium_path.clone(),
                    profile.path().to_path_buf(),
                    format!("{status}/"),
                    work.path().join(format!("chromium-{file}.log")),
                );
                move || chromium(&chromium_path, &profile_path, &args, &url, log)
            })
            .await
            .unwrap();
            let png = fs::read(&shot)
                .unwrap_or_else(|e| panic!("no screenshot at {}: {e}", shot.display()));
            assert!(
                png.len() > 1000 && png.starts_with(b"\x89PNG\r\n\x1a\n"),
                "not a PNG: {}",
                shot.display()
            );
            eprintln!("screenshot: {}", shot.display());
        }
    }

    tart_sync.assert_running();
    drop(tart_sync);
    drop(caddy);
}
