//! A full rig for tart-sync tests: real Caddy from `Caddyfile.example`, the
//! headscale stand-in, real backends on 127.0.0.x, and tart-sync in-process.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tart_sync::config::Settings;
use tart_sync::context::Context;
use tart_sync::controller;
use tart_sync::headscale::HeadscaleClient;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::backend::{fleet_ip, start_fleet, Backend};
use crate::headscale::{Headscale, SimNode, API_KEY};
use crate::{free_port, Caddy, Version};

/// The test domain.
pub const DOMAIN: &str = "tart.test";

/// `Caddyfile.example`, as shipped.
pub fn caddyfile_example() -> String {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../Caddyfile.example");
    std::fs::read_to_string(p).unwrap()
}

pub struct Rig {
    pub caddy: Caddy,
    pub hs: Headscale,
    pub http_port: u16,
    pub upstream_port: u16,
    pub fleet: Vec<Backend>,
    pub http: reqwest::Client,
}

impl Rig {
    /// Caddy `v` running `Caddyfile.example` for tart.test on a free port, a
    /// backend per name on 127.0.0.2.., and the headscale stand-in (no nodes yet).
    pub async fn start(v: Version, names: &[&str]) -> Option<Rig> {
        Rig::start_with(v, names, &caddyfile_example()).await
    }

    /// [`Rig::start`] with another Caddyfile (same `TART_SITE` placeholders).
    pub async fn start_with(v: Version, names: &[&str], caddyfile: &str) -> Option<Rig> {
        let http_port = free_port();
        let site = format!("http://{DOMAIN}:{http_port}");
        let wildcard = format!("http://*.{DOMAIN}:{http_port}");
        let caddy = Caddy::start_caddyfile(
            v,
            caddyfile,
            &[("TART_SITE", &site), ("TART_WILDCARD_SITE", &wildcard)],
        )?;
        Some(Rig::around(caddy, http_port, names).await)
    }

    /// [`Rig::start`] with `Caddyfile.example` adapted to JSON by Caddy `v`
    /// itself and changed by `edit` before Caddy starts (for settings only
    /// JSON has, like `admin.remote`). The harness places the local admin
    /// endpoint, as with [`Caddy::start`].
    pub async fn start_json(
        v: Version,
        names: &[&str],
        edit: impl FnOnce(&mut serde_json::Value),
    ) -> Option<Rig> {
        let bin = v.binary()?;
        let http_port = free_port();
        let dir = crate::temp_dir("adapt");
        let file = dir.path().join("Caddyfile");
        std::fs::write(&file, caddyfile_example()).unwrap();
        let out = std::process::Command::new(bin)
            .args(["adapt", "--adapter", "caddyfile", "--config"])
            .arg(&file)
            .env("TART_SITE", format!("http://{DOMAIN}:{http_port}"))
            .env(
                "TART_WILDCARD_SITE",
                format!("http://*.{DOMAIN}:{http_port}"),
            )
            .output()
            .unwrap();
        assert!(out.status.success(), "caddy adapt: {out:?}");
        let mut config: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        // The harness chooses the local admin address.
        if let Some(admin) = config["admin"].as_object_mut() {
            admin.remove("listen");
        }
        edit(&mut config);
        let caddy = Caddy::start(v, config)?;
        Some(Rig::around(caddy, http_port, names).await)
    }

    /// The backends and the headscale stand-in around a running Caddy.
    async fn around(caddy: Caddy, http_port: u16, names: &[&str]) -> Rig {
        let (upstream_port, fleet) = start_fleet(names).await;
        let hs = Headscale::start().await;
        // No pooling: every Caddy reload closes kept-alive connections, which is Caddy's behaviour, not ours.
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .pool_max_idle_per_host(0)
            .build()
            .unwrap();
        Rig {
            caddy,
            hs,
            http_port,
            upstream_port,
            fleet,
            http,
        }
    }

    /// Simulated nodes for the fleet, all online: id i+1, the backend's name and address.
    pub fn nodes(&self) -> Vec<SimNode> {
        self.fleet
            .iter()
            .enumerate()
            .map(|(i, b)| SimNode::new(i as u64 + 1, &b.name, fleet_ip(i)))
            .collect()
    }

    /// The environment tart-sync reads, plus overrides.
    pub fn env(&self, extra: &[(&str, &str)]) -> BTreeMap<String, String> {
        let mut env: BTreeMap<String, String> = [
            ("TART_SYNC_HEADSCALE_URL", self.hs.url()),
            ("TART_SYNC_HEADSCALE_API_KEY", API_KEY.to_string()),
            ("TART_SYNC_HEADSCALE_POLL_INTERVAL", "200ms".into()),
            ("TART_SYNC_HEADSCALE_TIMEOUT", "1s".into()),
            ("TART_SYNC_CADDY_ADMIN", self.caddy.admin.clone()),
            ("TART_SYNC_ROUTES_DOMAIN", DOMAIN.into()),
            (
                "TART_SYNC_ROUTES_UPSTREAM_PORT",
                self.upstream_port.to_string(),
            ),
            ("TART_SYNC_ROUTES_OFFLINE_GRACE", "60s".into()),
            (
                "TART_SYNC_STATUS_LISTEN",
                format!("127.0.0.1:{}", free_port()),
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        for (k, v) in extra {
            env.insert(k.to_string(), v.to_string());
        }
        env
    }

    pub fn settings(&self, extra: &[(&str, &str)]) -> Settings {
        settings_from(&self.env(extra))
    }

    /// GET through Caddy with `Host: tart.test`.
    pub async fn get(&self, path: &str) -> (u16, String) {
        self.get_host(DOMAIN, path).await
    }

    /// GET through Caddy with this Host.
    pub async fn get_host(&self, host: &str, path: &str) -> (u16, String) {
        // A Caddy reload closes connections it was serving (Caddy's behaviour):
        // like a browser, retry once before calling it an error.
        let mut r = None;
        for _ in 0..2 {
            let attempt = self
                .http
                .get(format!("http://127.0.0.1:{}{path}", self.http_port))
                .header("host", host)
                .timeout(Duration::from_secs(5))
                .send()
                .await;
            match attempt {
                Ok(resp) => {
                    r = Some(resp);
                    break;
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
        let Some(r) = r else {
            return (0, "connection failed twice".to_string());
        };
        let status = r.status().as_u16();
        let loc = r
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let body = r.text().await.unwrap_or_default();
        (status, loc.map(|l| format!("location={l}")).unwrap_or(body))
    }

    /// Which TART answered a path (the backend's name), or the status and body.
    pub async fn who(&self, path: &str) -> String {
        let (status, body) = self.get(path).await;
        if status == 200 {
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(&body) {
                return v["tart"].as_str().unwrap_or("?").to_string();
            }
        }
        format!("{status}")
    }

    /// Waits (bounded) until `path` is answered by `expect` (a TART name or a status code).
    pub async fn wait_for(&self, path: &str, expect: &str, limit: Duration) -> bool {
        crate::eventually(limit, || async {
            (self.who(path).await == expect).then_some(())
        })
        .await
        .is_some()
    }
}

pub fn settings_from(env: &BTreeMap<String, String>) -> Settings {
    let lookup = |k: &str| env.get(k).cloned();
    Settings::from_sources(None, &lookup, None).unwrap()
}

/// One reconcile pass in-process (`tart-sync once`). True when every Caddy matches.
pub async fn once(settings: Settings) -> bool {
    let hs = HeadscaleClient::from_settings(&settings.headscale).unwrap();
    let ctx = Context::new(settings);
    controller::once(&ctx, &hs, false).await.unwrap()
}

/// The daemon running in-process; stopped (gracefully) on drop.
pub struct Daemon {
    pub ctx: Arc<Context>,
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

impl Daemon {
    pub fn start(settings: Settings) -> Daemon {
        let hs = HeadscaleClient::from_settings(&settings.headscale).unwrap();
        let ctx = Context::new(settings);
        let (stop, rx) = watch::channel(false);
        let c = ctx.clone();
        let task = tokio::spawn(async move {
            controller::run(c, hs, rx).await.unwrap();
        });
        Daemon {
            ctx,
            stop,
            task: Some(task),
        }
    }

    /// Stops and waits for the loop to end.
    pub async fn stop(mut self) {
        let _ = self.stop.send(true);
        if let Some(t) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(10), t).await;
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}
