//! Reachability probes: `GET <probe.path>` on each routed TART's upstream
//! (the dial address Caddy uses, through the tailnet), every
//! `probe.interval`, into [`crate::health::Health`] and the metrics.
//!
//! Probes only observe: they never change routing. A TART that headscale
//! shows online but whose web service does not answer keeps its route, and
//! its URL answers whatever the TART answers.
//!
//! Cost is bounded three ways: probes of one round are spread evenly over
//! the round with a little jitter ([`schedule`]); at most `probe.max_rate`
//! start per second (at 10,000 TARTs and the default 50/s, a round takes
//! 200 s instead of `interval`); at most `probe.concurrency` are in flight.
//! TARTs that are not proxied (offline past their grace) are not probed;
//! their service state becomes unknown.

pub mod check;
pub mod schedule;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;
use tokio::sync::{watch, Semaphore};
use tokio::time::Instant;

use crate::context::Context;
use crate::health::{Change, ChangeKind, ProbeResult, ServiceState};

/// One TART to probe: its name and dial address.
type Target = (String, String);

/// The proxied TARTs of the last desired state.
fn targets(ctx: &Context) -> Vec<Target> {
    ctx.read_state(|s| {
        s.desired
            .as_ref()
            .map(|d| {
                (d.entries.iter())
                    .filter(|e| e.state.is_proxied())
                    .map(|e| (e.name.clone(), e.upstream.clone()))
                    .collect()
            })
            .unwrap_or_default()
    })
}

/// Forgets the probes of TARTs no longer probed: their service state
/// becomes unknown (recorded in the history) and their series leave the
/// metrics.
fn forget_others(ctx: &Context, keep: &[Target]) {
    let keep: HashSet<&str> = keep.iter().map(|(n, _)| n.as_str()).collect();
    let gone: Vec<String> = ctx.health.read_probes(|p| {
        (p.keys())
            .filter(|n| !keep.contains(n.as_str()))
            .cloned()
            .collect()
    });
    if gone.is_empty() {
        return;
    }
    ctx.health.retain(|n| keep.contains(n));
    let now = OffsetDateTime::now_utc();
    for name in &gone {
        ctx.metrics.forget_tart(name);
    }
    ctx.health.record_many(gone.into_iter().map(|name| Change {
        at: now,
        name,
        kind: ChangeKind::Service(ServiceState::Unknown),
    }));
}

/// Probes every proxied TART until `shutdown`; probes in flight then are
/// abandoned (they only observe).
pub async fn run(ctx: Arc<Context>, mut shutdown: watch::Receiver<bool>) {
    let settings = ctx.settings.probe.clone();
    let client = match check::client(&settings) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "cannot build the probes' HTTP client; TARTs are not probed");
            return;
        }
    };
    tracing::info!(
        interval = ?settings.interval,
        timeout = ?settings.timeout,
        concurrency = settings.concurrency,
        max_rate = settings.max_rate,
        path = %settings.path,
        "probing each routed TART"
    );
    let permits = Arc::new(Semaphore::new(settings.concurrency));
    let mut inflight = tokio::task::JoinSet::new();
    let mut rng = fastrand::Rng::new();
    let mut last_period = None;
    loop {
        let round = Instant::now();
        let list = targets(&ctx);
        forget_others(&ctx, &list);
        let period = schedule::period(list.len(), settings.interval, settings.max_rate);
        if period > settings.interval && last_period != Some(period) {
            tracing::info!(tarts = list.len(), round = ?period, "probe interval stretched to keep within probe.max_rate");
        }
        last_period = Some(period);
        let offsets = schedule::offsets(list.len(), period, || rng.f64());
        let list_len = list.len();
        for ((name, upstream), offset) in list.into_iter().zip(offsets) {
            tokio::select! {
                _ = tokio::time::sleep_until(later(round, offset)) => {}
                _ = shutdown.changed() => return,
            }
            let permit = tokio::select! {
                p = permits.clone().acquire_owned() => match p {
                    Ok(p) => p,
                    Err(_) => return,
                },
                _ = shutdown.changed() => return,
            };
            while inflight.try_join_next().is_some() {}
            let ctx = ctx.clone();
            let client = client.clone();
            let path = settings.path.clone();
            let timeout = settings.timeout;
            inflight.spawn(async move {
                let outcome = check::probe(&client, &upstream, &path, timeout).await;
                drop(permit);
                record(&ctx, &name, outcome);
            });
        }
        if *shutdown.borrow() {
            return;
        }
        // Nothing to probe (not polled yet?): look again soon.
        let next = match list_len {
            0 => later(round, settings.interval.min(Duration::from_secs(1))),
            _ => later(round, period),
        };
        tokio::select! {
            _ = tokio::time::sleep_until(next) => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// `at + d`, or a day after `at` if that overflows the clock.
fn later(at: Instant, d: Duration) -> Instant {
    at.checked_add(d)
        .or_else(|| at.checked_add(Duration::from_secs(86_400)))
        .unwrap_or(at)
}

/// Stores one probe's outcome: health (which records a state change in
/// the history) and metrics.
pub fn record(ctx: &Context, name: &str, outcome: check::Outcome) {
    let now = OffsetDateTime::now_utc();
    let previous = ctx.health.probe(name);
    let since = match &previous {
        Some(p) if p.state == outcome.state => p.since,
        _ => now,
    };
    match (previous.as_ref().map(|p| p.state), outcome.state) {
        (Some(was), now) if was == now => {}
        // The first probe of each TART: not news (10,000 lines at start).
        (None, state) => tracing::debug!(tart = %name, state = state.as_str(), "first probe"),
        (_, ServiceState::Down) => {
            let error = outcome.error.as_deref().unwrap_or_default();
            tracing::info!(tart = %name, %error, "TART's web service is down")
        }
        (_, state) => {
            tracing::info!(tart = %name, state = state.as_str(), "TART's web service is back")
        }
    }
    ctx.metrics.probe_done(
        name,
        outcome.state == ServiceState::Up,
        outcome.took.as_secs_f64(),
    );
    ctx.health.set_probe(
        name,
        ProbeResult {
            state: outcome.state,
            http_status: outcome.http_status,
            latency: outcome.latency,
            checked: now,
            since,
            error: outcome.error,
        },
    );
}
