//! The control loop: poll headscale, compute the desired routes, reconcile
//! every Caddy independently; the error policy (backoff that resets on
//! success); graceful shutdown; the [`Context`] shared with the status server;
//! and [`readiness`].

use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use backon::{BackoffBuilder, ExponentialBuilder};
use serde::Serialize;
use time::OffsetDateTime;
use tokio::sync::watch;

use crate::config::Settings;
use crate::desired::{self, Desired, Targets};
use crate::headscale::{HeadscaleClient, HeadscaleError};
use crate::metrics::Metrics;
use crate::reconcile::{Instance, Outcome, SyncError, FULL_CHECK_EVERY};
use crate::reserved::{Reserved, Rule, Why};
use crate::status::text::{one_line, short_duration};

/// Longest wait between two headscale polls while it fails (shorter for short
/// poll intervals: at most twelve intervals).
pub const MAX_BACKOFF: Duration = Duration::from_secs(60);

fn max_backoff(interval: Duration) -> Duration {
    interval.saturating_mul(12).min(MAX_BACKOFF).max(interval)
}

/// `now + delay`, or as late as the clock goes when that overflows.
fn later(now: Instant, delay: Duration) -> Instant {
    now.checked_add(delay)
        .or_else(|| now.checked_add(Duration::from_secs(u64::from(u32::MAX))))
        .unwrap_or(now)
}

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

/// A desired state as the loop publishes it to the per-Caddy tasks: the
/// state and the table computed from it once.
#[derive(Debug)]
pub struct Published {
    /// The desired state.
    pub desired: Arc<Desired>,
    /// Its table ([`Desired::targets`]).
    pub targets: Arc<Targets>,
}

impl Published {
    /// Publishes `desired` with its table.
    pub fn new(desired: Arc<Desired>) -> Published {
        let targets = Arc::new(desired.targets());
        Published { desired, targets }
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
    /// When the process started.
    pub started: OffsetDateTime,
    /// The last desired state [`poll`] computed, with the time its first
    /// offline grace ends and the reserved names it was computed with
    /// (reused while nothing changes).
    last_desired: Mutex<Option<LastDesired>>,
    /// What each Caddy's site serves itself (by admin address index).
    site_rules: Mutex<Vec<Vec<(Rule, Why)>>>,
    /// The names never published: `routes.reserved` and every site's own.
    reserved: RwLock<Arc<Reserved>>,
}

/// A desired state with what decides whether it can be reused.
#[derive(Debug)]
struct LastDesired {
    desired: Arc<Desired>,
    /// When its first offline grace ends.
    deadline: Option<OffsetDateTime>,
    /// The reserved names it was computed with.
    reserved: Arc<Reserved>,
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
        Arc::new(Context {
            settings,
            metrics: Metrics::new(state.clone()),
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

    fn with_state(&self, f: impl FnOnce(&mut SyncState)) {
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

/// The error policy for headscale: exponential backoff from the poll interval
/// up to twelve intervals or [`MAX_BACKOFF`], whichever is shorter, reset by a
/// success; an authentication failure waits the longest straight away.
#[derive(Debug)]
pub struct ErrorPolicy {
    interval: Duration,
    backoff: Option<backon::ExponentialBackoff>,
    /// When headscale may be polled next.
    pub next_poll: Instant,
}

impl ErrorPolicy {
    /// A policy for this poll interval.
    pub fn new(interval: Duration) -> ErrorPolicy {
        ErrorPolicy {
            interval,
            backoff: None,
            next_poll: Instant::now(),
        }
    }

    /// A poll succeeded: back to the normal interval.
    pub fn success(&mut self, now: Instant) {
        self.backoff = None;
        self.next_poll = later(now, self.interval);
    }

    /// A poll failed: how long until the next one.
    pub fn failure(&mut self, err: &HeadscaleError, now: Instant) -> Duration {
        let max = max_backoff(self.interval);
        let delay = if err.is_auth() {
            max
        } else {
            let interval = self.interval;
            let backoff = self.backoff.get_or_insert_with(|| {
                ExponentialBuilder::default()
                    .with_min_delay(interval)
                    .with_max_delay(max)
                    .with_factor(2.0)
                    .without_max_times()
                    .build()
            });
            backoff.next().unwrap_or(max)
        };
        self.next_poll = later(now, delay);
        delay
    }
}

/// Polls headscale once and computes the desired state.
///
/// While headscale answers the same bytes and no offline grace ends, the
/// previous desired state is returned as is (the same `Arc`): an idle poll
/// neither parses nor recomputes anything.
pub async fn poll(ctx: &Context, hs: &HeadscaleClient) -> Result<Arc<Desired>, HeadscaleError> {
    let started = Instant::now();
    let result = hs
        .list_nodes_shared(ctx.settings.headscale.user.as_deref())
        .await;
    ctx.metrics.poll_done(started.elapsed().as_secs_f64());
    let shared = result?;
    let now = OffsetDateTime::now_utc();
    let reserved = ctx.reserved();
    let mut cache = ctx.last_desired.lock().unwrap_or_else(|p| p.into_inner());
    let reuse = match cache.as_ref() {
        Some(last) if !shared.changed && Arc::ptr_eq(&last.reserved, &reserved) => {
            last.deadline.is_none_or(|t| now < t)
        }
        _ => false,
    };
    let (desired, is_new) = match (reuse, cache.as_ref()) {
        (true, Some(last)) => (last.desired.clone(), false),
        _ => {
            let d = desired::compute(
                &shared.list.nodes,
                &ctx.settings.headscale,
                &ctx.settings.routes,
                &reserved,
                now,
            );
            let (d, is_new) = match cache.as_ref() {
                Some(last) if *last.desired == d => (last.desired.clone(), false),
                _ => (Arc::new(d), true),
            };
            let deadline = desired::next_deadline(&d);
            *cache = Some(LastDesired {
                desired: d.clone(),
                deadline,
                reserved,
            });
            (d, is_new)
        }
    };
    drop(cache);
    ctx.with_state(|s| {
        s.headscale = HeadscaleStatus {
            reachable: true,
            last_success: Some(now),
            last_error: None,
            nodes_seen: shared.list.nodes.len(),
        };
        if is_new || s.desired.is_none() {
            s.desired = Some(desired.clone());
        }
    });
    Ok(desired)
}

fn headscale_failed(ctx: &Context, err: &HeadscaleError, retry_in: Duration) {
    let kind = if err.is_auth() {
        "headscale_auth"
    } else {
        "headscale"
    };
    ctx.metrics.error(kind);
    let first = ctx.read_state(|s| s.headscale.last_error.is_none());
    if err.is_auth() {
        tracing::error!(error = %err, retry_in = ?retry_in, "headscale authentication failed; keeping the last applied routes");
    } else if first {
        tracing::warn!(error = %err, retry_in = ?retry_in, "headscale poll failed; keeping the last applied routes");
    } else {
        tracing::debug!(error = %err, retry_in = ?retry_in, "headscale poll failed again");
    }
    ctx.with_state(|s| {
        s.headscale.reachable = false;
        s.headscale.last_error = Some(err.to_string());
    });
}

/// Reconciles one Caddy and records the result in the context. Returns true when
/// Caddy matches the desired state afterwards.
pub async fn sync_instance(
    ctx: &Context,
    idx: usize,
    inst: &mut Instance,
    targets: &Arc<Targets>,
    allow_mass_removal: bool,
) -> bool {
    let started = Instant::now();

    let result = inst
        .reconcile_shared(targets, &ctx.settings.routes, allow_mass_removal)
        .await;
    let took = started.elapsed().as_secs_f64();
    let now = OffsetDateTime::now_utc();
    let address = inst.address().to_string();
    let was_failing =
        ctx.read_state(|s| s.caddies.get(idx).is_some_and(|c| c.last_error.is_some()));
    let (outcome, ok, wrote) = match &result {
        Ok(Outcome::Unchanged) => (LastOutcome::Unchanged, true, false),
        Ok(Outcome::Installed { path, routes }) => {
            tracing::info!(caddy = %address, at = %path, routes, "installed the tart-sync route");
            (LastOutcome::Installed, true, true)
        }
        Ok(Outcome::Updated(d)) => {
            tracing::info!(caddy = %address, added = ?d.added, removed = ?d.removed, changed = ?d.changed, "routes updated");
            (LastOutcome::Updated, true, true)
        }
        Ok(Outcome::Held {
            unrouted,
            proxied,
            remaining,
        }) => {
            tracing::warn!(caddy = %address, unrouted, proxied, remaining = ?remaining,
                "holding back a change that would stop more than half of the routes at once (headscale restart?); applying it if it persists");
            (LastOutcome::Held, false, false)
        }
        Ok(Outcome::Contested { .. }) => (LastOutcome::Contested, false, false),
        Err(e) => {
            ctx.metrics.error(&format!("caddy_{}", e.kind()));
            if was_failing {
                tracing::debug!(caddy = %address, error = %e, "Caddy sync failed again");
            } else {
                tracing::warn!(caddy = %address, error = %e, "Caddy sync failed; retrying every interval");
            }
            (LastOutcome::Error, false, false)
        }
    };
    if ok && was_failing {
        tracing::info!(caddy = %address, "Caddy sync recovered");
    }
    ctx.metrics.cycle_done(took, wrote);
    ctx.with_state(|s| {
        if let Some(c) = s.caddies.get_mut(idx) {
            c.reachable = !matches!(&result, Err(e) if e.is_unreachable());
            c.last_outcome = outcome;
            c.stream_close_delay = inst.known_features().map(|f| f.stream_close_delay);
            match &result {
                Ok(Outcome::Held { .. }) => {
                    c.last_error = Some("a mass removal is being held back".into());
                }
                Ok(Outcome::Contested { changes, remaining }) => {
                    c.last_error = Some(format!(
                        "another writer changed the route {changes} times in a row; leaving it alone for {}",
                        humantime::format_duration(Duration::from_secs(remaining.as_secs()))
                    ));
                }
                Ok(_) => {
                    c.last_error = None;
                    c.last_sync = Some(now);
                    c.routes = targets.len();
                }
                Err(e) => c.last_error = Some(e.to_string()),
            }
        }
    });
    ok
}

/// Builds one [`Instance`] per configured admin address.
pub fn instances(settings: &Settings) -> Result<Vec<Instance>, SyncError> {
    settings
        .caddy
        .admin
        .iter()
        .map(|a| Instance::from_settings(&settings.caddy, a).map_err(SyncError::from))
        .collect()
}

/// Runs the daemon until `shutdown` turns true: the headscale poller publishes
/// each new desired state; one task per Caddy reconciles on every change and
/// every interval (to notice a restarted Caddy), independently of the others.
/// A write in flight is finished before the loop exits; routes stay in place.
pub async fn run(
    ctx: Arc<Context>,
    hs: HeadscaleClient,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), SyncError> {
    let interval = ctx.settings.headscale.poll_interval;
    let filters = &ctx.settings.headscale;
    if filters.user.is_none() && filters.tags.is_empty() {
        tracing::warn!(
            "no headscale.user or headscale.tags filter is set: every node of the tailnet gets a public URL; \
             set one of them to publish only the TARTs"
        );
    }
    let (tx, rx) = watch::channel::<Option<Arc<Published>>>(None);
    let mut tasks = tokio::task::JoinSet::new();
    let insts = instances(&ctx.settings)?;
    // Before the first desired state: which names the sites serve themselves.
    learn_site_rules(&ctx, &insts).await;
    for (idx, mut inst) in insts.into_iter().enumerate() {
        let ctx = ctx.clone();
        let mut rx = rx.clone();
        let mut shutdown = shutdown.clone();
        tasks.spawn(async move {
            let mut next_site_check = later(Instant::now(), FULL_CHECK_EVERY);
            loop {
                if Instant::now() >= next_site_check {
                    learn_site_rules_of(&ctx, idx, &inst).await;
                    next_site_check = later(Instant::now(), FULL_CHECK_EVERY);
                }
                let current = rx.borrow_and_update().clone();
                if let Some(published) = current {
                    sync_instance(&ctx, idx, &mut inst, &published.targets, false).await;
                }
                if *shutdown.borrow() {
                    return;
                }
                tokio::select! {
                    _ = tokio::time::sleep(interval) => {}
                    changed = rx.changed() => if changed.is_err() { return },
                    _ = shutdown.changed() => return,
                }
            }
        });
    }

    let mut policy = ErrorPolicy::new(interval);
    loop {
        if *shutdown.borrow() {
            break;
        }
        let now = Instant::now();
        if now >= policy.next_poll {
            match poll(&ctx, &hs).await {
                Ok(desired) => {
                    // Fixed rate: the next poll is one interval after this one started.
                    policy.success(now);
                    let changed = match tx.borrow().as_deref() {
                        Some(last) => {
                            !Arc::ptr_eq(&last.desired, &desired) && *last.desired != *desired
                        }
                        None => true,
                    };
                    if changed {
                        tx.send_replace(Some(Arc::new(Published::new(desired))));
                    }
                }
                Err(e) => {
                    let delay = policy.failure(&e, Instant::now());
                    headscale_failed(&ctx, &e, delay);
                }
            }
        }
        let wait = policy.next_poll.saturating_duration_since(Instant::now());
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.changed() => {}
        }
    }
    drop(tx);
    while tasks.join_next().await.is_some() {}
    tracing::info!("stopped; routes left in place");
    Ok(())
}

/// Reads what every Caddy's site serves itself into the context (a Caddy
/// that cannot be read keeps what was known).
pub async fn learn_site_rules(ctx: &Context, insts: &[Instance]) {
    for (idx, inst) in insts.iter().enumerate() {
        learn_site_rules_of(ctx, idx, inst).await;
    }
}

async fn learn_site_rules_of(ctx: &Context, idx: usize, inst: &Instance) {
    match inst.site_rules(&ctx.settings.routes).await {
        Ok(rules) => ctx.set_site_rules(idx, rules),
        Err(e) => {
            tracing::debug!(caddy = %inst.address(), error = %e, "cannot read the site's own routes yet")
        }
    }
}

/// One pass for `tart-sync once`: poll, reconcile every Caddy. True when all match.
pub async fn once(
    ctx: &Context,
    hs: &HeadscaleClient,
    allow_mass_removal: bool,
) -> Result<bool, HeadscaleError> {
    let mut insts = match instances(&ctx.settings) {
        Ok(i) => i,
        Err(e) => {
            tracing::error!(error = %e, "bad Caddy admin address");
            return Ok(false);
        }
    };
    learn_site_rules(ctx, &insts).await;
    let desired = poll(ctx, hs).await?;
    let targets = Arc::new(desired.targets());
    let mut all = true;
    for (idx, inst) in insts.iter_mut().enumerate() {
        all &= sync_instance(ctx, idx, inst, &targets, allow_mass_removal).await;
    }
    Ok(all)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failure() -> HeadscaleError {
        crate::headscale::parse_node_list(b"not json").unwrap_err()
    }

    #[test]
    fn backoff_doubles_up_to_twelve_intervals_and_resets_on_success() {
        let interval = Duration::from_secs(1);
        let mut policy = ErrorPolicy::new(interval);
        let now = Instant::now();
        let delays: Vec<Duration> = (0..6).map(|_| policy.failure(&failure(), now)).collect();
        assert_eq!(delays[0], interval);
        assert!(delays.windows(2).all(|w| w[1] >= w[0]), "{delays:?}");
        assert_eq!(delays[5], Duration::from_secs(12), "{delays:?}");
        policy.success(now);
        assert_eq!(policy.next_poll, now + interval);
        assert_eq!(
            policy.failure(&failure(), now),
            interval,
            "reset by success"
        );
    }

    #[test]
    fn enormous_intervals_do_not_overflow() {
        let mut policy = ErrorPolicy::new(Duration::MAX);
        let now = Instant::now();
        policy.success(now);
        assert!(policy.next_poll > now);
        let delay = policy.failure(&failure(), now);
        assert_eq!(delay, Duration::MAX);
        assert!(policy.next_poll > now);
    }
}
