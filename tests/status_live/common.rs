//! Shared by the status page's e2e tests: an event-stream reader, a fleet
//! in a context (TARTs with probes and history) served by the status server
//! in-process, and a child process killed on drop.

#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tart_sync::config::Settings;
use tart_sync::context::{Context, LastOutcome};
use tart_sync::desired::{Desired, Entry, NodeState};
use tart_sync::health::{Change, ChangeKind, ProbeResult, ServiceState};
use time::OffsetDateTime;
use tokio::sync::watch;

pub fn repo_root() -> PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// An open `/api/events` stream, read event by event.
pub struct Events {
    pub resp: reqwest::Response,
    pub buf: String,
}

impl Events {
    pub async fn open(url: &str) -> Events {
        let resp = reqwest::Client::new().get(url).send().await.unwrap();
        assert_eq!(resp.status().as_u16(), 200, "{url}");
        assert_eq!(resp.headers()["content-type"], "text/event-stream");
        Events {
            resp,
            buf: String::new(),
        }
    }

    /// The next event's data, or `None` at the end of the stream or after `limit`.
    pub async fn next(&mut self, limit: Duration) -> Option<Value> {
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
pub struct Proc(pub std::process::Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Settings for an in-process status server.
pub fn settings() -> Settings {
    let toml = "[headscale]\nurl = \"http://127.0.0.1:1\"\napi_key = \"hskey-api-test\"\n\
                [caddy]\nadmin = [\"127.0.0.1:1\"]\n[routes]\ndomain = \"tart.example.org\"\n";
    Settings::from_sources(Some(toml), &|_: &str| None, None).unwrap()
}

/// A TART's tailnet state and probe, for [`fleet`].
pub struct Tart {
    pub name: String,
    pub tailnet: NodeState,
    /// Offline (or in grace) since this long ago.
    pub offline_for: time::Duration,
    /// The probe: state, latency (ms), state since this long ago.
    pub probe: Option<(ServiceState, f64, time::Duration)>,
    /// Its history: (hours ago, change), oldest first.
    pub history: Vec<(f64, ChangeKind)>,
}

pub const ON: ChangeKind = ChangeKind::Tailnet(NodeState::Online);
pub const GRACE: ChangeKind = ChangeKind::Tailnet(NodeState::Grace);
pub const OFF: ChangeKind = ChangeKind::Tailnet(NodeState::Offline);
pub const UP: ChangeKind = ChangeKind::Service(ServiceState::Up);
pub const DOWN: ChangeKind = ChangeKind::Service(ServiceState::Down);

pub fn tart(
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
    pub fn with(mut self, history: &[(f64, ChangeKind)]) -> Tart {
        self.history = history.to_vec();
        self
    }
}

/// A context whose state holds `tarts` (synced, headscale reachable) with their probes.
pub fn fleet(tarts: &[Tart]) -> Arc<Context> {
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
pub struct Server {
    pub base: String,
    pub _stop: watch::Sender<bool>,
}

pub async fn serve(ctx: Arc<Context>) -> Server {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (stop, rx) = watch::channel(false);
    tokio::spawn(tart_sync::status::serve(ctx, listener, rx));
    Server { base, _stop: stop }
}

pub fn showcase() -> Vec<Tart> {
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

pub fn probe_now(state: ServiceState) -> ProbeResult {
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
