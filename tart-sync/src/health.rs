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
use std::sync::{Arc, RwLock};
use std::time::Duration;

use serde::Serialize;
use time::OffsetDateTime;
use tokio::sync::{broadcast, watch};

use crate::desired::NodeState;
use crate::history::{Log, StoreStatus};

/// How many batches of recorded changes wait for a slow reader of
/// [`Health::subscribe`] (the store writer, the notifier) before the oldest
/// are dropped for it: readers never hold up the prober or the loop. A
/// batch is what one call recorded: one probe's change, or every tailnet
/// change of one poll (10,000 at once when headscale restarts).
pub const RECORDED_QUEUE: usize = 4096;

/// Changes recorded together, oldest first.
pub type Batch = Arc<[Recorded]>;

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

/// A [`Change`] as [`Health::record`] kept it, with the state of the same
/// kind it replaced (`None`: the first one known for this TART, e.g. the
/// first probe after a start without history).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    /// The change.
    pub change: Change,
    /// The state it replaced.
    pub previous: Option<ChangeKind>,
}

/// The health of every TART, shared by the prober and its readers.
#[derive(Debug)]
pub struct Health {
    probes: RwLock<HashMap<String, ProbeResult>>,
    generation: watch::Sender<u64>,
    /// The in-memory history (bounded), read by [`Health::segments`].
    log: RwLock<Log>,
    /// Every recorded change, for the store writer and the notifier.
    recorded: broadcast::Sender<Batch>,
    /// How the history store is doing.
    store: RwLock<StoreStatus>,
}

impl Default for Health {
    fn default() -> Self {
        Health {
            probes: RwLock::new(HashMap::new()),
            generation: watch::channel(0).0,
            log: RwLock::new(Log::default()),
            recorded: broadcast::channel(RECORDED_QUEUE).0,
            store: RwLock::new(StoreStatus::default()),
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
        let change = (changed && result.state != ServiceState::Unknown).then(|| Change {
            at: result.since,
            name: name.to_string(),
            kind: ChangeKind::Service(result.state),
        });
        probes.insert(name.to_string(), result);
        drop(probes);
        if let Some(change) = change {
            self.publish(self.log_change(change).into_iter().collect());
        }
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
    /// stretches of one state each (for the 24-hour bars); adjacent
    /// stretches always differ. Empty when nothing is known about `name`
    /// (or `to` is not after `from`). Time before the first known state
    /// is one segment with `tailnet: None` and `service: Unknown`.
    ///
    /// Filled from the in-memory history, which the history store loads at
    /// start (so the bars survive a restart).
    pub fn segments(&self, name: &str, from: OffsetDateTime, to: OffsetDateTime) -> Vec<Segment> {
        self.log
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .segments(name, from, to)
    }

    /// Records a state change of one TART: kept in the in-memory history,
    /// sent to [`Health::subscribe`]rs (store, notifier) and
    /// [`Health::bump`]ed. A change to the state the TART already has (of
    /// that kind) is ignored; returns whether it was recorded.
    pub fn record(&self, change: Change) -> bool {
        self.record_many([change]) == 1
    }

    /// [`Health::record`] for several changes, with one bump at the end (if
    /// any was recorded). Returns how many were recorded.
    pub fn record_many(&self, changes: impl IntoIterator<Item = Change>) -> usize {
        let batch: Vec<Recorded> = changes
            .into_iter()
            .filter_map(|c| self.log_change(c))
            .collect();
        let recorded = batch.len();
        if recorded > 0 {
            self.publish(batch);
            self.bump();
        }
        recorded
    }

    /// Adds `change` to the in-memory history; `None` when it is no change.
    fn log_change(&self, change: Change) -> Option<Recorded> {
        let previous = self
            .log
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .append(&change)?;
        Some(Recorded { change, previous })
    }

    /// Sends a batch to the subscribers (none is fine).
    fn publish(&self, batch: Vec<Recorded>) {
        if !batch.is_empty() {
            let _ = self.recorded.send(batch.into());
        }
    }

    /// Loads changes from the history store (at start): into the in-memory
    /// history only, not to subscribers.
    pub fn restore(&self, changes: impl IntoIterator<Item = Change>) {
        let mut log = self.log.write().unwrap_or_else(|p| p.into_inner());
        for change in changes {
            log.append(&change);
        }
        drop(log);
        self.bump();
    }

    /// How the history store is doing.
    pub fn store_status(&self) -> StoreStatus {
        self.store.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Sets how the history store is doing (the history task's job).
    pub fn set_store_status(&self, status: StoreStatus) {
        *self.store.write().unwrap_or_else(|p| p.into_inner()) = status;
    }

    /// Every change recorded from now on, in batches (bounded: a reader
    /// that falls [`RECORDED_QUEUE`] batches behind loses the oldest and is
    /// told so).
    pub fn subscribe(&self) -> broadcast::Receiver<Batch> {
        self.recorded.subscribe()
    }

    /// Forgets history older than `cutoff`, keeping each TART's state at
    /// `cutoff`.
    pub fn prune(&self, cutoff: OffsetDateTime) {
        self.log
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .prune(cutoff);
    }

    /// Forgets the history of TARTs that `keep` refuses and that did not
    /// change since `cutoff` ([`Log::forget`]).
    pub fn forget(&self, cutoff: OffsetDateTime, keep: impl Fn(&str) -> bool) {
        self.log
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .forget(cutoff, keep);
    }

    /// Reads the in-memory history.
    pub fn read_log<T>(&self, f: impl FnOnce(&Log) -> T) -> T {
        f(&self.log.read().unwrap_or_else(|p| p.into_inner()))
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use time::macros::datetime;
    use time::Duration;

    use super::*;

    fn probe(state: ServiceState, at: OffsetDateTime) -> ProbeResult {
        ProbeResult {
            state,
            http_status: None,
            latency: None,
            checked: at,
            since: at,
            error: None,
        }
    }

    #[tokio::test]
    async fn probes_and_tailnet_changes_make_the_bars_and_reach_subscribers() {
        let health = Health::default();
        let generation = health.generation();
        let mut recorded = health.subscribe();
        let t0 = datetime!(2026-07-10 08:00 UTC);
        let m = Duration::minutes;
        assert!(health.record(Change {
            at: t0,
            name: "rhodes".into(),
            kind: ChangeKind::Tailnet(NodeState::Online),
        }));
        health.set_probe("rhodes", probe(ServiceState::Up, t0 + m(1)));
        // The same state again: no change, no bump.
        health.set_probe("rhodes", probe(ServiceState::Up, t0 + m(2)));
        health.set_probe("rhodes", probe(ServiceState::Down, t0 + m(3)));
        assert!(generation.has_changed().unwrap());
        let segs = health.segments("rhodes", t0, t0 + m(5));
        let states: Vec<_> = segs.iter().map(|s| (s.from, s.service)).collect();
        assert_eq!(
            states,
            [
                (t0, ServiceState::Unknown),
                (t0 + m(1), ServiceState::Up),
                (t0 + m(3), ServiceState::Down)
            ]
        );
        assert!(segs.iter().all(|s| s.tailnet == Some(NodeState::Online)));
        let mut got = Vec::new();
        while let Ok(batch) = recorded.try_recv() {
            got.extend(batch.iter().map(|r| (r.change.kind, r.previous)));
        }
        let up = ChangeKind::Service(ServiceState::Up);
        assert_eq!(
            got,
            [
                (ChangeKind::Tailnet(NodeState::Online), None),
                (up, None),
                (ChangeKind::Service(ServiceState::Down), Some(up)),
            ]
        );
        // Restored history goes to the bars, not to subscribers.
        health.restore([Change {
            at: t0,
            name: "karoo".into(),
            kind: ChangeKind::Tailnet(NodeState::Offline),
        }]);
        assert_eq!(health.segments("karoo", t0, t0 + m(1)).len(), 1);
        assert!(recorded.try_recv().is_err());
    }
}
