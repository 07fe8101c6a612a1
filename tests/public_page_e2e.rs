//! The public fleet page through real Caddy (2.6.2 and the latest), served
//! by the real tart-sync binary: no private field anywhere in the HTML or
//! the JSON, offline TARTs marked, a state change on the page within one
//! poll interval without any Caddy write of its own, caching headers
//! (ETag → 304), and a Chromium screenshot (`test-output/public-page.png`).

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use e2e::headscale::SimNode;
use e2e::sync::{Rig, DOMAIN};
use e2e::{free_port, temp_dir, Version};
use serde_json::Value;
use time::OffsetDateTime;

const POLL: Duration = Duration::from_secs(1);

/// A child process killed when dropped.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn nodes(rig: &Rig) -> Vec<SimNode> {
    rig.nodes()
        .into_iter()
        .map(|mut n| {
            n.user = "private-user-ann".into();
            n.tags = vec!["tag:private-tag-x".into()];
            n
        })
        .collect()
}

/// Every value of a node that must never be public.
fn private_values(rig: &Rig, nodes: &[SimNode]) -> Vec<String> {
    let mut out = Vec::new();
    for n in nodes {
        let j = n.json();
        for key in ["machineKey", "nodeKey", "discoKey", "name"] {
            out.push(j[key].as_str().unwrap().to_owned());
        }
        for ip in j["ipAddresses"].as_array().unwrap() {
            out.push(ip.as_str().unwrap().to_owned());
        }
        out.push(format!("{}:{}", n.ip, rig.upstream_port));
        out.push(n.user.clone());
        out.extend(n.tags.iter().cloned());
    }
    out.push(e2e::headscale::API_KEY.to_owned());
    out
}

async fn get(
    rig: &Rig,
    path: &str,
    etag: Option<&str>,
) -> (u16, reqwest::header::HeaderMap, String) {
    let mut req = rig
        .http
        .get(format!("http://127.0.0.1:{}{path}", rig.http_port))
        .header("host", DOMAIN)
        .timeout(Duration::from_secs(5));
    if let Some(tag) = etag {
        req = req.header("if-none-match", tag);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    (status, headers, r.text().await.unwrap())
}

async fn tarts(rig: &Rig) -> Option<Value> {
    let (status, _, body) = get(rig, "/api/tarts.json", None).await;
    (status == 200)
        .then(|| serde_json::from_str(&body).ok())
        .flatten()
}

fn online_of(doc: &Value, name: &str) -> Option<bool> {
    doc["tarts"]
        .as_array()?
        .iter()
        .find(|t| t["name"] == name)
        .and_then(|t| t["online"].as_bool())
}

fn start_tart_sync(rig: &Rig, public_port: u16, dir: &Path) -> Proc {
    let env = rig.env(&[
        ("TART_SYNC_HEADSCALE_POLL_INTERVAL", "1s"),
        ("TART_SYNC_PUBLIC_ENABLED", "true"),
        (
            "TART_SYNC_PUBLIC_LISTEN",
            &format!("127.0.0.1:{public_port}"),
        ),
        (
            "TART_SYNC_PUBLIC_TITLE",
            "Radio telescopes of the TART network",
        ),
    ]);
    let log = fs::File::create(dir.join("tart-sync.log")).unwrap();
    let child = e2e::tart_sync_run_command(&e2e::tart_sync_bin(), &env, "info", log)
        .spawn()
        .unwrap();
    Proc(child)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn public_page_through_real_caddy() {
    for v in Version::ALL {
        let Some(rig) = Rig::start(v, &["rhodes", "karoo", "signal-hill", "zm-tart"]).await else {
            continue;
        };
        eprintln!("Caddy {}", e2e::version_string(v));
        let mut nodes = nodes(&rig);
        // karoo has been offline for an hour (past its grace: a 503 page).
        nodes[1].online = false;
        nodes[1].last_seen = OffsetDateTime::now_utc() - time::Duration::hours(1);
        rig.hs.set_nodes(&nodes).await;
        let dir = temp_dir("public");
        let public_port = free_port();
        let _tart_sync = start_tart_sync(&rig, public_port, dir.path());

        let doc = e2e::eventually(Duration::from_secs(20), || async {
            tarts(&rig).await.filter(|d| d["total"] == 4)
        })
        .await
        .unwrap_or_else(|| {
            panic!(
                "{v:?}: no public JSON through Caddy; tart-sync's log:\n{}",
                fs::read_to_string(dir.path().join("tart-sync.log")).unwrap_or_default()
            )
        });
        assert_eq!(online_of(&doc, "rhodes"), Some(true), "{doc}");
        assert_eq!(online_of(&doc, "karoo"), Some(false), "{doc}");
        let karoo = doc["tarts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["name"] == "karoo")
            .unwrap();
        assert!(
            karoo["since"].is_string(),
            "offline since headscale's lastSeen: {doc}"
        );
        assert_eq!(karoo["url"], "https://tart.test/karoo/");

        // The page, through Caddy, with its caching headers.
        let (status, headers, html) = get(&rig, "/", None).await;
        assert_eq!(status, 200, "{v:?}: {html}");
        assert!(
            html.contains("Radio telescopes of the TART network"),
            "{html}"
        );
        assert!(
            html.contains("<a class=\"name\" href=\"/rhodes/\">rhodes</a>"),
            "{html}"
        );
        assert!(
            html.contains("<li class=\"off\"><a class=\"name\" href=\"/karoo/\">karoo</a>"),
            "{html}"
        );
        assert!(
            html.contains("<span class=\"badge off\">offline</span>"),
            "{html}"
        );
        assert!(
            html.contains("3</strong> of <strong>4</strong> telescopes online"),
            "{html}"
        );
        assert_eq!(headers["cache-control"], "public, max-age=1");
        let etag = headers["etag"].to_str().unwrap().to_owned();
        let (status, _, body) = get(&rig, "/", Some(&etag)).await;
        assert_eq!(status, 304, "{v:?}: If-None-Match through Caddy: {body}");
        let (_, jheaders, json_text) = get(&rig, "/api/tarts.json", None).await;
        assert_eq!(jheaders["access-control-allow-origin"], "*");

        // No private field anywhere.
        for value in private_values(&rig, &nodes) {
            assert!(
                !html.contains(&value),
                "{v:?}: {value:?} is on the public page:\n{html}"
            );
            assert!(
                !json_text.contains(&value),
                "{v:?}: {value:?} is in the JSON:\n{json_text}"
            );
        }

        // Hostile request lines reach nothing but the two public bodies.
        for target in [
            "/api/tarts.json/../../metrics",
            "/api/status",
            "//api/tarts.json",
            "/%2e%2e/metrics",
            "/api/tarts.json?callback=<script>",
            "/?page=<script>alert(1)</script>",
            "/metrics",
            "/healthz",
            "http://evil.example/api/tarts.json",
        ] {
            let a = e2e::raw::raw_get(rig.http_port, DOMAIN, target).await;
            assert!(
                !a.body.contains("tart_sync_")
                    && !a.body.contains("\"caddies\"")
                    && !a.body.contains("<script>"),
                "{v:?} {target}: {} {}",
                a.status,
                a.body
            );
            for value in private_values(&rig, &nodes) {
                assert!(
                    !a.body.contains(&value),
                    "{v:?} {target}: {value:?} in {}",
                    a.body
                );
            }
        }

        // The TART links work through the same site; the status server is not here.
        assert_eq!(rig.who("/rhodes/").await, "rhodes");
        let (status, _, _) = get(&rig, "/api/status", None).await;
        assert_ne!(
            status, 200,
            "the private status JSON must not be on the site"
        );

        // A state change the route does not see (rhodes disconnects: still
        // proxied during its grace) is on the page within one poll interval,
        // with no Caddy write; page views add none either.
        tokio::time::sleep(Duration::from_millis(1500)).await; // settle
        let writes = rig.caddy.admin_writes();
        nodes[0].online = false;
        nodes[0].last_seen = OffsetDateTime::now_utc();
        rig.hs.set_nodes(&nodes).await;
        let changed = Instant::now();
        let seen = e2e::eventually(POLL * 3, || async {
            tarts(&rig)
                .await
                .filter(|d| online_of(d, "rhodes") == Some(false))
        })
        .await;
        let took = changed.elapsed();
        assert!(seen.is_some(), "{v:?}: rhodes never showed offline");
        eprintln!(
            "{v:?}: the state change was on the page after {took:?} (poll interval {POLL:?})"
        );
        assert!(
            took <= POLL + Duration::from_millis(400),
            "{v:?}: the page took {took:?} to show the change (poll interval {POLL:?})"
        );
        for _ in 0..50 {
            let (status, _, _) = get(&rig, "/", None).await;
            assert_eq!(status, 200);
        }
        assert_eq!(
            rig.caddy.admin_writes(),
            writes,
            "{v:?}: the page caused Caddy writes"
        );
        assert_eq!(
            rig.who("/rhodes/").await,
            "rhodes",
            "in grace: still proxied"
        );

        if v == Version::Latest {
            screenshot(&rig).await;
        }
    }
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Chromium (`CHROMIUM_BIN`, default /usr/bin/chromium) opens the page at
/// `http://tart.test:<port>/` (resolved to Caddy on loopback) and saves a
/// screenshot; SKIP without Chromium unless `CI=true`.
async fn screenshot(rig: &Rig) {
    let bin = std::env::var("CHROMIUM_BIN")
        .ok()
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| "/usr/bin/chromium".into());
    if !Path::new(&bin).exists() {
        assert_ne!(
            std::env::var("CI").as_deref(),
            Ok("true"),
            "no Chromium at {bin}"
        );
        eprintln!("SKIP: the screenshot: no Chromium at {bin} (set CHROMIUM_BIN)");
        return;
    }
    let out_dir = repo_root().join("test-output");
    fs::create_dir_all(&out_dir).unwrap();
    let shot = out_dir.join("public-page.png");
    let _ = fs::remove_file(&shot);
    let profile = temp_dir("chromium-public");
    let url = format!("http://{DOMAIN}:{}/", rig.http_port);
    let args = vec![
        "--headless".to_string(),
        "--no-sandbox".into(),
        "--disable-gpu".into(),
        "--no-first-run".into(),
        "--disable-background-networking".into(),
        "--disable-component-update".into(),
        "--disable-sync".into(),
        "--disable-dev-shm-usage".into(),
        "--hide-scrollbars".into(),
        format!("--host-resolver-rules=MAP {DOMAIN} 127.0.0.1"),
        format!("--user-data-dir={}", profile.path().display()),
        format!("--screenshot={}", shot.display()),
        "--window-size=1000,640".into(),
        url,
    ];
    let status = tokio::task::spawn_blocking(move || {
        let mut child = Proc(
            Command::new(bin)
                .args(&args)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            if let Some(s) = child.0.try_wait().unwrap() {
                return Some(s);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    })
    .await
    .unwrap();
    assert!(
        status.is_some_and(|s| s.success()),
        "Chromium failed or hung"
    );
    let png = fs::read(&shot).unwrap();
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 1000);
    eprintln!("screenshot: {}", shot.display());
}
