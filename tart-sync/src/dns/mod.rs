//! The DNS responder of `routes.resolve = "dns"`: tart-sync answers A/AAAA
//! for `<name>.<dns.zone>` from the last desired state, and Caddy's
//! `dynamic_upstreams` asks it (cached for `dns.refresh`), so a TART going
//! online or offline, or moving, changes only these answers: no Caddy config
//! write, no reload, no WebSocket closed.
//!
//! - [`answers`]: the table and the reply to one query (pure).
//! - [`limit`]: per-source token buckets.
//! - [`stats`]: queries by outcome, last query, rate.
//! - [`serve`] (here): the UDP loop.
//!
//! It is never an open resolver: names outside the zone are REFUSED, nothing
//! is ever forwarded, replies hold one question and at most one record
//! ([`answers::MAX_REPLY`]), unreadable packets and responses are dropped,
//! and each source is rate-limited except `dns.unlimited` (the Caddies).
//! Over UDP only: no reply is ever truncated, so no client needs TCP.

pub mod answers;
pub mod limit;
pub mod stats;

use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::net::UdpSocket;
use tokio::sync::watch;

use crate::config::Settings;
use crate::desired::Targets;
use crate::guard::Guard;
use crate::layout::{proxied_count, Diff};

pub use answers::{Answer, Outcome, Table, OFFLINE_ADDRESS};
pub use stats::{Stats, StatsSnapshot};

/// The responder's shared state: the answers it gives and its health.
#[derive(Debug)]
pub struct DnsState {
    zone: Option<answers::Zone>,
    /// The answers; `None` before the first desired state.
    table: RwLock<Option<Arc<Table>>>,
    /// The mass-removal guard over the answers, and the targets answered.
    guard: Mutex<(Guard, Targets)>,
    /// Queries by outcome, last query, rate.
    pub stats: Stats,
    /// Where the responder listens, once bound; or why it cannot.
    listening: Mutex<Result<Option<std::net::SocketAddr>, String>>,
}

/// What [`DnsState::publish`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Publish {
    /// The answers are now those of the desired state (the diff from before).
    Applied(Diff),
    /// More than half of the answered TARTs would go offline at once: held
    /// for this much longer (like a Caddy write, [`Guard`]).
    Held(Duration),
}

/// The responder as the status page shows it.
#[derive(Debug, Clone, Serialize)]
pub struct DnsStatus {
    /// `dns.zone`.
    pub zone: String,
    /// The address the responder listens on, if it does.
    pub listen: Option<String>,
    /// Why it does not listen, if it does not.
    pub error: Option<String>,
    /// Names answered (`None` before the first desired state).
    pub names: Option<usize>,
    /// Queries, last query, rate.
    #[serde(flatten)]
    pub stats: StatsSnapshot,
}

impl DnsState {
    /// A responder state for these settings, with no answers yet.
    pub fn new(settings: &Settings) -> DnsState {
        let ttl = u32::try_from(settings.dns.refresh.as_secs().max(1)).unwrap_or(u32::MAX);
        DnsState {
            zone: answers::Zone::new(&settings.dns.zone, ttl),
            table: RwLock::new(None),
            guard: Mutex::new((Guard::default(), Targets::new())),
            stats: Stats::default(),
            listening: Mutex::new(Ok(None)),
        }
    }

    /// The answers now (`None` before the first desired state).
    pub fn table(&self) -> Option<Arc<Table>> {
        self.table.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Answers for `targets` from now on, unless the change would stop
    /// answering an address for more than half of the TARTs at once: that is
    /// held for `hold` (`routes.offline_grace`), as a Caddy write would be.
    pub fn publish(&self, targets: &Targets, hold: Duration, force: bool) -> Publish {
        let mut guard = self.guard.lock().unwrap_or_else(|p| p.into_inner());
        let diff = Diff::between(&guard.1, targets);
        let first = self.table().is_none();
        if !first && !force {
            let proxied = proxied_count(&guard.1);
            if let Some(remaining) = guard.0.check(&diff, proxied, hold, Instant::now()) {
                return Publish::Held(remaining);
            }
        }
        if first || !diff.is_empty() {
            let table = Arc::new(Table::from_targets(targets));
            *self.table.write().unwrap_or_else(|p| p.into_inner()) = Some(table);
            guard.1 = targets.clone();
        }
        Publish::Applied(diff)
    }

    /// The responder's status now.
    pub fn status(&self, zone: &str) -> DnsStatus {
        let listening = self
            .listening
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let (listen, error) = match listening {
            Ok(addr) => (addr.map(|a| a.to_string()), None),
            Err(e) => (None, Some(e)),
        };
        DnsStatus {
            zone: zone.to_string(),
            listen,
            error,
            names: self.table().map(|t| t.len()),
            stats: self.stats.snapshot(),
        }
    }

    /// Answers one query from `source` (rate limit first).
    fn handle(
        &self,
        limiter: &mut limit::Limiter,
        query: &[u8],
        source: std::net::IpAddr,
    ) -> Option<Vec<u8>> {
        let now = Instant::now();
        if !limiter.allow(source, now) {
            self.stats.count(Outcome::Limited, now);
            return None;
        }
        let Some(zone) = &self.zone else {
            self.stats.count(Outcome::Dropped, now);
            return None;
        };
        let table = self.table();
        let (outcome, reply) = answers::reply(query, zone, table.as_deref());
        self.stats.count(outcome, now);
        reply
    }
}

/// Binds `dns.listen` (UDP). The error says what to do.
pub async fn bind(settings: &Settings) -> Result<UdpSocket, String> {
    let listen = settings.dns.listen;
    UdpSocket::bind(listen).await.map_err(|e| {
        format!("dns.listen: cannot listen on udp/{listen}: {e} (another process on that port? choose another dns.listen)")
    })
}

/// Answers queries on `socket` until `shutdown` turns true. One query at a
/// time, from memory: a reply takes microseconds, so one task keeps up with
/// any Caddy; a flood is dropped by the rate limit before any work.
pub async fn serve(
    state: Arc<DnsState>,
    socket: UdpSocket,
    settings: &Settings,
    mut shutdown: watch::Receiver<bool>,
) {
    *state.listening.lock().unwrap_or_else(|p| p.into_inner()) = Ok(socket.local_addr().ok());
    let mut limiter = limit::Limiter::new(settings.dns.rate_limit, &settings.dns.unlimited);
    let mut buf = vec![0u8; 4096];
    loop {
        let (len, source) = tokio::select! {
            r = socket.recv_from(&mut buf) => match r {
                Ok(r) => r,
                Err(e) => {
                    // ICMP errors of earlier replies surface here on some systems: keep going.
                    tracing::debug!(error = %e, "dns: receive failed");
                    continue;
                }
            },
            _ = shutdown.changed() => return,
        };
        let Some(query) = buf.get(..len) else {
            continue;
        };
        if let Some(reply) = state.handle(&mut limiter, query, source.ip()) {
            if let Err(e) = socket.send_to(&reply, source).await {
                tracing::debug!(error = %e, %source, "dns: reply not sent");
            }
        }
    }
}

/// Records that the responder cannot listen (for the status page).
pub fn failed(state: &DnsState, why: String) {
    *state.listening.lock().unwrap_or_else(|p| p.into_inner()) = Err(why);
}

/// The dns-mode route settings of Caddy number `idx` (`None` in config mode).
pub fn route_settings(settings: &Settings, idx: usize) -> Option<crate::layout::dns::DnsRoute> {
    (settings.routes.resolve == crate::config::Resolve::Dns).then(|| crate::layout::dns::DnsRoute {
        zone: settings.dns.zone.clone(),
        refresh: settings.dns.refresh,
        resolver: settings.dns.resolver_for(idx).to_string(),
    })
}

/// In dns mode, answers for `targets` from now on (through the
/// mass-removal guard unless `force`), and logs what changed.
pub fn publish(ctx: &crate::context::Context, targets: &Targets, force: bool) {
    if ctx.settings.routes.resolve != crate::config::Resolve::Dns {
        return;
    }
    match ctx
        .dns
        .publish(targets, ctx.settings.routes.offline_grace, force)
    {
        Publish::Applied(diff) if !diff.is_empty() => {
            tracing::info!(added = ?diff.added, removed = ?diff.removed, changed = ?diff.changed, "dns answers updated");
        }
        Publish::Applied(_) => {}
        Publish::Held(remaining) => {
            tracing::warn!(remaining = ?remaining,
                "holding back dns answers that would take more than half of the TARTs offline at once (headscale restart?); applying them if the picture persists");
        }
    }
}

/// Starts the responder in dns mode (nothing in config mode): binds
/// `dns.listen` and answers until `shutdown` turns true. The error says
/// what to do.
pub async fn start(
    ctx: &Arc<crate::context::Context>,
    shutdown: watch::Receiver<bool>,
) -> Result<Option<tokio::task::JoinHandle<()>>, String> {
    if ctx.settings.routes.resolve != crate::config::Resolve::Dns {
        return Ok(None);
    }
    let socket = match bind(&ctx.settings).await {
        Ok(s) => s,
        Err(e) => {
            failed(&ctx.dns, e.clone());
            return Err(e);
        }
    };
    tracing::info!(listen = %ctx.settings.dns.listen, zone = %ctx.settings.dns.zone, "dns responder listening");
    let ctx = ctx.clone();
    Ok(Some(tokio::spawn(async move {
        let state = ctx.dns.clone();
        serve(state, socket, &ctx.settings, shutdown).await;
    })))
}
