//! Headless Chromium driven over the DevTools protocol.

use std::time::{Duration, Instant};

use e2e::temp_dir;
use serde_json::Value;

use super::common::Proc;

/// Headless Chromium showing one page, driven over the DevTools protocol
/// (`Runtime.evaluate` over its WebSocket); killed on drop.
pub struct LivePage {
    _chromium: Proc,
    _profile: e2e::TempDir,
    ws: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
    next_id: u64,
}

impl LivePage {
    pub async fn open(bin: &std::path::Path, url: &str) -> LivePage {
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
    pub async fn eval(&mut self, expression: &str) -> Value {
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
    pub async fn wait_for(
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
