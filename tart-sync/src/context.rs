//! The state shared by the control loop and the status server: the
//! [`Context`] (settings, what the status server shows, metrics, the
//! reserved names), and readiness, decided here once.

use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use serde::Serialize;
use time::OffsetDateTime;

use crate::config::Settings;
use crate::desired::Desired;
use crate::dns::DnsState;
use crate::health::Health;
use crate::metrics::Metrics;
use crate::reserved::{Reserved, Rule, Why};
use crate::status::text::{one_line, short_duration};

/// headscale as tart-sync last saw it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct HeadscaleStatus {
    /// The last poll succeeded.
    pub reachable: bool,
    /// When a poll last succeeded.
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_success: Option<OffsetDateTime>,
    /// The last error, if the last poll failed.
    pub last_error: Option<String>,
    /// Nodes in headscale's last answer (before filters).
    pub nodes_seen: usize,
}

/// One Caddy as tart-sync last saw it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CaddyStatus {
    /// The admin address.
    pub address: String,
    /// The last reconcile reached it.
    pub reachable: bool,
    /// When it last matched the desired state.
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_sync: Option<OffsetDateTime>,
    /// The last error, if the last reconcile failed.
    pub last_error: Option<String>,
    /// What the last reconcile did.
    pub last_outcome: LastOutcome,
    /// Routes it carries.
    pub routes: usize,
    /// Whether it supports WebSockets across reloads (`stream_close_delay`), once known.
    pub stream_close_delay: Option<bool>,
}

/// What the last reconcile with one Caddy did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LastOutcome {
    /// Not tried yet.
    #[default]
    Pending,
    /// Caddy already matched: nothing written.
    Unchanged,
    /// The owned route was missing and was inserted.
    Installed,
    /// The owned route was replaced in one write.
    Updated,
    /// A mass removal is being held back.
    Held,
    /// Another writer keeps changing the route; left alone for a while.
    Contested,
    /// The reconcile failed.
    Error,
}

impl LastOutcome {
    /// `pending`, `unchanged`, `installed`, `updated`, `held` or `error`.
    pub fn as_str(self) -> &'static str {
        match self {
            LastOutcome::Pending => "pending",
            LastOutcome::Unchanged => "unchanged",
            LastOutcome::Installed => "installed",
            LastOutcome::Updated => "updated",
            LastOutcome::Held => "held",
            LastOutcome::Contested => "contested",
            LastOutcome::Error => "error",
        }
    }
}

/// Everything the status server shows; written only by the loop.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SyncState {
    /// headscale.
    pub headscale: HeadscaleStatus,
    /// The last desired state computed from a successful poll (shared with
    /// the loop: reading the status never copies the node table).
    pub desired: Option<Arc<Desired>>,
    /// One entry per configured admin address, in config order.
    pub caddies: Vec<CaddyStatus>,
}

/// tart-sync is ready once every Caddy synced within this many poll intervals.
pub const READY_WITHIN_POLLS: u32 = 3;

/// Whether tart-sync is ready at `now`: every configured Caddy matched the
/// desired routes within `window` and its last reconcile did not fail. When
/// not, the reasons, in one line.
pub fn readiness(state: &SyncState, window: Duration, now: OffsetDateTime) -> Result<(), String> {
    if state.caddies.is_empty() {
        return Err("no Caddy is configured".into());
    }
    let reasons: Vec<String> = state
        .caddies
        .iter()
        .filter_map(|c| {
            let address = one_line(&c.address, 100);
            match (&c.last_error, c.last_sync) {
                (Some(err), _) => Some(format!("caddy {address}: {}", one_line(err, 200))),
                (None, None) => Some(format!("caddy {address}: not synced yet")),
                (None, Some(t)) if now - t > window => Some(format!(
                    "caddy {address}: last synced {} ago (more than {})",
                    short_duration((now - t).whole_seconds().unsigned_abs()),
                    humantime::format_duration(window)
                )),
                (None, Some(_)) => None,
            }
        })
        .collect();
    if reasons.is_empty() {
        Ok(())
    } else {
        Err(reasons.join("; "))
    }
}

/// State shared by the loop and the status server: settings, status, metrics.
#[derive(Debug)]
pub struct Context {
    /// The settings.
    pub settings: Settings,
    /// What the status server shows (shared with [`Metrics`]' gauges).
    pub state: Arc<RwLock<SyncState>>,
    /// The metrics.
    pub metrics: Metrics,
    /// Each TART's probe results and history.
    pub health: Health,
    /// The DNS responder's answers and health (used in dns mode).
    pub dns: Arc<DnsState>,
    /// When the process started.
    pub started: OffsetDateTime,
    /// The last desired state [`poll`] computed, with the time its first
    /// offline grace ends and the reserved names it was computed with
    /// (reused while nothing changes).
    pub(crate) last_desired: Mutex<Option<LastDesired>>,
    /// What each Caddy's site serves itself (by admin address index).
    site_rules: Mutex<Vec<Vec<(Rule, Why)>>>,
    /// The names never published: `routes.reserved` and every site's own.
    reserved: RwLock<Arc<Reserved>>,
}

/// A desired state with what decides whether it can be reused.
#[derive(Debug)]
pub(crate) struct LastDesired {
    pub(crate) desired: Arc<Desired>,
    /// When its first offline grace ends.
    pub(crate) deadline: Option<OffsetDateTime>,
    /// The reserved names it was computed with.
    pub(crate) reserved: Arc<Reserved>,
}

impl Context {
    /// A fresh context.
    pub fn new(settings: Settings) -> Arc<Context> {
        let caddies = settings
            .caddy
            .admin
            .iter()
            .map(|a| CaddyStatus {
                address: a.clone(),
                ..Default::default()
            })
            .collect();
        let state = Arc::new(RwLock::new(SyncState {
            caddies,
            ..Default::default()
        }));
        let reserved = RwLock::new(Arc::new(Reserved::new(&settings.routes, &[])));
        let site_rules = Mutex::new(vec![Vec::new(); settings.caddy.admin.len()]);
        let dns = Arc::new(DnsState::new(&settings));
        let mut metrics = Metrics::new(state.clone());
        if settings.routes.resolve == crate::config::Resolve::Dns {
            metrics.register_dns(dns.clone());
        }
        Arc::new(Context {
            settings,
            dns,
            metrics,
            health: Health::default(),
            state,
            started: OffsetDateTime::now_utc(),
            last_desired: Mutex::new(None),
            site_rules,
            reserved,
        })
    }

    /// The names never published now.
    pub fn reserved(&self) -> Arc<Reserved> {
        self.reserved
            .read()
            .map(|r| r.clone())
            .unwrap_or_else(|p| p.into_inner().clone())
    }

    /// Records what Caddy `idx`'s site serves itself; the next poll
    /// recomputes the desired state when the reserved names changed.
    pub fn set_site_rules(&self, idx: usize, rules: Vec<(Rule, Why)>) {
        let mut all = self.site_rules.lock().unwrap_or_else(|p| p.into_inner());
        if all.get(idx) == Some(&rules) {
            return;
        }
        if let Some(slot) = all.get_mut(idx) {
            *slot = rules;
        }
        let union: Vec<(Rule, Why)> = all.iter().flatten().cloned().collect();
        let next = Reserved::new(&self.settings.routes, &union);
        let mut reserved = self.reserved.write().unwrap_or_else(|p| p.into_inner());
        if **reserved != next {
            tracing::info!(rules = ?next.rules(), "names reserved for the site's own paths changed");
            *reserved = Arc::new(next);
        }
    }

    /// A copy of the current state.
    pub fn snapshot(&self) -> SyncState {
        self.state
            .read()
            .map(|s| s.clone())
            .unwrap_or_else(|p| p.into_inner().clone())
    }

    /// Reads the state without copying it.
    pub fn read_state<T>(&self, f: impl FnOnce(&SyncState) -> T) -> T {
        let guard = self.state.read().unwrap_or_else(|p| p.into_inner());
        f(&guard)
    }

    pub(crate) fn with_state(&self, f: impl FnOnce(&mut SyncState)) {
        let mut guard = self.state.write().unwrap_or_else(|p| p.into_inner());
        f(&mut guard);
    }

    /// [`readiness`] now, with a window of [`READY_WITHIN_POLLS`] poll intervals.
    pub fn ready(&self) -> Result<(), String> {
        let window = self
            .settings
            .headscale
            .poll_interval
            .saturating_mul(READY_WITHIN_POLLS);
        let now = OffsetDateTime::now_utc();
        self.read_state(|state| readiness(state, window, now))
    }
}
