//! Each TART's health beyond headscale's view: what the reachability probes
//! found ([`ProbeResult`]) and the history of state changes ([`Change`],
//! [`Segment`]). The prober writes it, the status server, the metrics and the
//! notifier read it, through [`Health`] (held by the context).
//!
//! Every change (a probe result that changes a TART's service state, a
//! tailnet state change seen by a poll) bumps [`Health::generation`], a
//! watch channel: live views (Server-Sent Events) wait on it instead of
//! polling.

use std::collections::HashMap;
use std::sync::RwLock;
use std::time::Duration;

use serde::Serialize;
use time::OffsetDateTime;
use tokio::sync::watch;

use crate::desired::NodeState;

/// Whether a TART's own web service answers, as the probes see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ServiceState {
    /// Not probed yet (or probes are off).
    #[default]
    Unknown,
    /// The last probe got an HTTP answer.
    Up,
    /// The last probe failed: no connection, timeout, or no HTTP answer.
    Down,
}

impl ServiceState {
    /// `unknown`, `up` or `down`.
    pub fn as_str(self) -> &'static str {
        match self {
            ServiceState::Unknown => "unknown",
            ServiceState::Up => "up",
            ServiceState::Down => "down",
        }
    }
}

/// The latest probe of one TART.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProbeResult {
    /// Up or down.
    pub state: ServiceState,
    /// The HTTP status of the answer, when there was one.
    pub http_status: Option<u16>,
    /// How long the probe took, when it got an answer.
    #[serde(with = "humantime_serde")]
    pub latency: Option<Duration>,
    /// When this probe ran.
    #[serde(with = "time::serde::rfc3339")]
    pub checked: OffsetDateTime,
    /// When `state` last changed.
    #[serde(with = "time::serde::rfc3339")]
    pub since: OffsetDateTime,
    /// Why the last probe failed, in one line (no secrets: an address and an error kind).
    pub error: Option<String>,
}

/// What changed in a [`Change`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", content = "state", rename_all = "snake_case")]
pub enum ChangeKind {
    /// headscale's view: online, in grace, offline.
    Tailnet(NodeState),
    /// The probes' view: up, down.
    Service(ServiceState),
}

/// One state change of one TART.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Change {
    /// When it happened.
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// The TART.
    pub name: String,
    /// What changed, and to what.
    #[serde(flatten)]
    pub kind: ChangeKind,
}

/// A stretch of time in one state, for history bars.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Segment {
    /// Start.
    #[serde(with = "time::serde::rfc3339")]
    pub from: OffsetDateTime,
    /// End (now, for the last one).
    #[serde(with = "time::serde::rfc3339")]
    pub to: OffsetDateTime,
    /// headscale's view during it (`None`: unknown, e.g. before tart-sync ran).
    pub tailnet: Option<NodeState>,
    /// The probes' view during it.
    pub service: ServiceState,
}

/// The health of every TART, shared by the prober and its readers.
#[derive(Debug)]
pub struct Health {
    probes: RwLock<HashMap<String, ProbeResult>>,
    generation: watch::Sender<u64>,
}

impl Default for Health {
    fn default() -> Self {
        Health {
            probes: RwLock::new(HashMap::new()),
            generation: watch::channel(0).0,
        }
    }
}

impl Health {
    /// The latest probe of `name`, if it was probed.
    pub fn probe(&self, name: &str) -> Option<ProbeResult> {
        self.probes
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .cloned()
    }

    /// Reads every probe result without copying the table.
    pub fn read_probes<T>(&self, f: impl FnOnce(&HashMap<String, ProbeResult>) -> T) -> T {
        f(&self.probes.read().unwrap_or_else(|p| p.into_inner()))
    }

    /// Records a probe of `name` (the prober's job).
    pub fn set_probe(&self, name: &str, result: ProbeResult) {
        let mut probes = self.probes.write().unwrap_or_else(|p| p.into_inner());
        let changed = probes.get(name).map(|p| p.state) != Some(result.state);
        probes.insert(name.to_string(), result);
        drop(probes);
        if changed {
            self.bump();
        }
    }

    /// Forgets TARTs that are no longer routed.
    pub fn retain(&self, keep: impl Fn(&str) -> bool) {
        self.probes
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|name, _| keep(name));
    }

    /// The history of `name` between `from` and `to`, oldest first, as
    /// stretches of one state each (for the 24-hour bars).
    ///
    /// Interface only so far: the history store (`history` module) fills it.
    pub fn segments(
        &self,
        _name: &str,
        _from: OffsetDateTime,
        _to: OffsetDateTime,
    ) -> Vec<Segment> {
        Vec::new()
    }

    /// Tells live views that something changed.
    pub fn bump(&self) {
        self.generation.send_modify(|g| *g = g.wrapping_add(1));
    }

    /// A receiver that sees every later [`Health::bump`].
    pub fn generation(&self) -> watch::Receiver<u64> {
        self.generation.subscribe()
    }
}
