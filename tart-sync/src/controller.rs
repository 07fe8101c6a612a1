//! The control loop: poll headscale, compute the desired routes, reconcile
//! every Caddy independently; the error policy (backoff that resets on
//! success); graceful shutdown. The state it shares with the status server
//! is [`Context`].

use std::sync::Arc;
use std::time::{Duration, Instant};

use backon::{BackoffBuilder, ExponentialBuilder};
use time::OffsetDateTime;
use tokio::sync::watch;

use crate::config::Settings;
use crate::context::{Context, HeadscaleStatus, LastDesired, LastOutcome};
use crate::desired::{self, Desired, Targets};
use crate::headscale::{HeadscaleClient, HeadscaleError};
use crate::layout::Names;
use crate::reconcile::{Instance, Outcome, SyncError, FULL_CHECK_EVERY};

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
    let mut changed = false;
    ctx.with_state(|s| {
        changed = is_new || s.desired.is_none() || !s.headscale.reachable;
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
    if changed {
        // Live views (the status page's event stream) show tailnet states.
        ctx.health.bump();
    }
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
    if first {
        // Live views show that headscale is unreachable.
        ctx.health.bump();
    }
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
            tracing::info!(caddy = %address, added = %Names(&d.added), removed = %Names(&d.removed), changed = %Names(&d.changed), "routes updated");
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
    let mut status_changed = false;
    ctx.with_state(|s| {
        if let Some(c) = s.caddies.get_mut(idx) {
            let before = (c.reachable, c.last_outcome, c.last_error.clone(), c.routes);
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
            status_changed = before != (c.reachable, c.last_outcome, c.last_error.clone(), c.routes);
        }
    });
    if status_changed {
        // Live views show each Caddy's sync status.
        ctx.health.bump();
    }
    ok
}

/// Builds one [`Instance`] per configured admin address (in dns mode each
/// with its resolver address, [`crate::config::DnsSettings::resolver_for`]).
pub fn instances(settings: &Settings) -> Result<Vec<Instance>, SyncError> {
    settings
        .caddy
        .admin
        .iter()
        .enumerate()
        .map(|(idx, a)| {
            let mut inst = Instance::new(a, &settings.caddy)?;
            inst.set_dns(crate::dns::route_settings(settings, idx));
            Ok(inst)
        })
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
                        // Tailnet state changes into the history (#12).
                        crate::history::record_tailnet(
                            &ctx.health,
                            &desired,
                            OffsetDateTime::now_utc(),
                        );
                        let published = Arc::new(Published::new(desired));
                        crate::dns::publish(&ctx, &published.targets, false);
                        tx.send_replace(Some(published));
                    } else {
                        // A held change of the answers is retried every poll.
                        if let Some(last) = tx.borrow().as_deref() {
                            crate::dns::publish(&ctx, &last.targets, false);
                        }
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
    crate::dns::publish(ctx, &targets, allow_mass_removal);
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

    #[tokio::test]
    async fn live_views_hear_when_the_sync_status_changes() {
        let ctx = Context::new(crate::status::fixtures::settings("127.0.0.1:1", "path"));
        let mut generation = ctx.health.generation();
        generation.mark_unchanged();
        let mut inst = instances(&ctx.settings).unwrap().remove(0);
        let targets = Arc::new(crate::desired::Desired::default().targets());
        // Caddy refuses: its status changes (not tried → error), once.
        assert!(!sync_instance(&ctx, 0, &mut inst, &targets, false).await);
        assert!(generation.has_changed().unwrap());
        generation.mark_unchanged();
        assert!(!sync_instance(&ctx, 0, &mut inst, &targets, false).await);
        assert!(
            !generation.has_changed().unwrap(),
            "the same error again: no news"
        );
        // headscale fails: once.
        headscale_failed(&ctx, &failure(), Duration::from_secs(1));
        assert!(generation.has_changed().unwrap());
        generation.mark_unchanged();
        headscale_failed(&ctx, &failure(), Duration::from_secs(1));
        assert!(!generation.has_changed().unwrap());
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
