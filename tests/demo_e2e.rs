//! `scripts/demo`'s program, run as a user would: every link it prints is
//! followed as printed, without a `Host` header (its site is on
//! `tart.localhost`, which browsers and curl resolve to loopback; reqwest
//! goes through the system resolver, so the test tells it the same), and
//! its enrolment printed what a TART owner pastes. Real Caddy.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use e2e::headscale::DEMO_PREAUTH_KEY;

/// The demo, stopped with Ctrl-C (SIGINT: it stops what it started) when dropped.
struct Demo(Child);

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-INT", &self.0.id().to_string()])
            .status();
        for _ in 0..100 {
            if self.0.try_wait().ok().flatten().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demos_links_open_as_printed() {
    if e2e::Version::Latest.binary().is_none() && e2e::Version::V2_6.binary().is_none() {
        eprintln!("SKIP: no Caddy");
        return;
    }
    let mut child = Command::new(env!("CARGO_BIN_EXE_demo"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let _demo = Demo(child);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut printed = Vec::new();
    loop {
        let line = rx
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| {
                panic!(
                    "the demo printed no link list; so far:\n{}",
                    printed.join("\n")
                )
            });
        let end = line.starts_with("Ctrl-C stops everything");
        printed.push(line);
        if end {
            break;
        }
    }
    let text = printed.join("\n");

    // The enrolment: what a TART owner pastes.
    for want in [
        format!("TAILSCALE_KEY: \"{DEMO_PREAUTH_KEY}\""),
        "TAILSCALE_HOSTNAME: \"new-tart\"".to_string(),
        format!("--authkey {DEMO_PREAUTH_KEY} --hostname new-tart"),
        "Name checked against routes.reserved and the site's paths".to_string(),
    ] {
        assert!(text.contains(&want), "no {want:?} in:\n{text}");
    }

    // Every link, as printed.
    let links: Vec<String> = printed
        .iter()
        .skip_while(|l| !l.starts_with("--- Open in a browser"))
        .filter_map(|l| l.split_whitespace().find(|w| w.starts_with("http://")))
        .map(str::to_owned)
        .collect();
    assert!(links.len() >= 8, "{text}");
    let site = links[0].trim_end_matches('/').to_owned();
    assert!(site.starts_with("http://tart.localhost:"), "{site}");
    let port: u16 = site.rsplit(':').next().unwrap().parse().unwrap();
    let http = reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .resolve("tart.localhost", SocketAddr::from(([127, 0, 0, 1], port)))
        .build()
        .unwrap();
    let get = |url: String| {
        let http = http.clone();
        async move {
            match http.get(&url).timeout(Duration::from_secs(5)).send().await {
                Ok(r) => (r.status().as_u16(), r.text().await.unwrap_or_default()),
                Err(e) => (0, e.to_string()),
            }
        }
    };
    // tart-sync installs its route within a poll or two.
    let rhodes = format!("{site}/rhodes/");
    let up = e2e::eventually(Duration::from_secs(20), || {
        let url = rhodes.clone();
        async move { (get(url).await.0 == 200).then_some(()) }
    })
    .await;
    assert!(up.is_some(), "{rhodes} never answered 200");
    for link in &links {
        let (status, body) = get(link.clone()).await;
        if link.ends_with("/nobody/") {
            assert_eq!(status, 404, "{link}: {body}");
            assert!(body.contains("No TART here"), "{link}: {body}");
        } else {
            // karoo may already be in the demo's offline act (grace, then 503).
            let ok = status == 200 || (link.ends_with("/karoo/") && status == 503);
            assert!(ok, "{link}: {status} {body}");
        }
        if link == &format!("{site}/") {
            assert!(body.contains("telescopes online"), "{link}: {body}");
            assert!(body.contains("href=\"/rhodes/\""), "{link}: {body}");
        }
        if link.ends_with("/api/tarts.json") {
            let v: serde_json::Value = serde_json::from_str(&body).unwrap();
            assert_eq!(v["total"], 4, "{body}");
        }
    }

    // curl, as a user would type it (it resolves *.localhost itself).
    if let Ok(out) = Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--max-time",
            "5",
            "--noproxy",
            "*",
        ])
        .arg(format!("{site}/"))
        .output()
    {
        assert_eq!(String::from_utf8_lossy(&out.stdout), "200", "curl {site}/");
    }
}
