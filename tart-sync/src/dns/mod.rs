//! The DNS responder of `routes.resolve = "dns"`: tart-sync answers A/AAAA
//! for `<name>.<dns.zone>` from the last desired state, and Caddy's
//! `dynamic_upstreams` asks it (cached for `dns.refresh`), so a TART going
//! online or offline, or moving, changes only these answers: no Caddy config
//! write, no reload, no WebSocket closed.
//!
//! - [`answers`]: the table and the reply to one query (pure).
//! - [`limit`]: per-source token buckets.
//! - [`stats`]: queries by outcome, last query, rate.
//! - `server`: the UDP loop on its own thread ([`start`]).
//!
//! It is never an open resolver: names outside the zone are REFUSED, nothing
//! is ever forwarded, replies hold one question and at most one record
//! ([`answers::MAX_REPLY`]), unreadable packets and responses are dropped,
//! and each source is rate-limited except `dns.unlimited` (the Caddies).
//! Over UDP only: no reply is ever truncated, so no client needs TCP.

pub mod answers;
pub mod limit;
mod server;
pub mod stats;

use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::config::Settings;
use crate::desired::Targets;
use crate::guard::Guard;
use crate::layout::{proxied_count, Diff, Names};

pub use answers::{Answer, Outcome, Table, OFFLINE_ADDRESS};
pub use server::start;
pub use stats::{Stats, StatsSnapshot};

/// The responder's shared state: the answers it gives and its health.
#[derive(Debug)]
pub struct DnsState {
    zone: Option<answers::Zone>,
    /// The answers; `None` before the first desired state.
    table: RwLock<Option<Arc<Table>>>,
    /// The mass-removal guard over the answers, the targets answered, and
    /// whether a change is being held.
    guard: Mutex<(Guard, Arc<Targets>, bool)>,
    /// Queries by outcome, last query, rate.
    pub stats: Stats,
    /// Where the responder listens, once bound; or why it cannot.
    pub(crate) listening: Mutex<Result<Option<std::net::SocketAddr>, String>>,
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
            guard: Mutex::new((Guard::default(), Arc::default(), false)),
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
    /// The same table again (the same `Arc`, nothing held) costs nothing:
    /// an idle poll does not compare the fleet.
    pub fn publish(&self, targets: &Arc<Targets>, hold: Duration, force: bool) -> Publish {
        let mut guard = self.guard.lock().unwrap_or_else(|p| p.into_inner());
        let first = self.table().is_none();
        if !first && !guard.2 && Arc::ptr_eq(&guard.1, targets) {
            return Publish::Applied(Diff::default());
        }
        let diff = Diff::between(&guard.1, targets);
        if !first && !force {
            let proxied = proxied_count(&guard.1);
            if let Some(remaining) = guard.0.check(&diff, proxied, hold, Instant::now()) {
                guard.2 = true;
                return Publish::Held(remaining);
            }
        }
        guard.2 = false;
        if first || !diff.is_empty() {
            let table = Arc::new(Table::from_targets(targets));
            *self.table.write().unwrap_or_else(|p| p.into_inner()) = Some(table);
        }
        guard.1 = Arc::clone(targets);
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
pub fn publish(ctx: &crate::context::Context, targets: &Arc<Targets>, force: bool) {
    if ctx.settings.routes.resolve != crate::config::Resolve::Dns {
        return;
    }
    match ctx
        .dns
        .publish(targets, ctx.settings.routes.offline_grace, force)
    {
        Publish::Applied(diff) if !diff.is_empty() => {
            tracing::info!(added = %Names(&diff.added), removed = %Names(&diff.removed), changed = %Names(&diff.changed), "dns answers updated");
        }
        Publish::Applied(_) => {}
        Publish::Held(remaining) => {
            tracing::warn!(remaining = ?remaining,
                "holding back dns answers that would take more than half of the TARTs offline at once (headscale restart?); applying them if the picture persists");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::desired::Target;

    fn settings(extra: &str) -> Settings {
        let toml = format!(
            "[headscale]\nurl = \"http://127.0.0.1:1\"\napi_key = \"hskey-api-test\"\n\
             [caddy]\nadmin = [\"127.0.0.1:2019\", \"100.64.0.7:2019\"]\n\
             [routes]\ndomain = \"tart.example.org\"\nresolve = \"dns\"\n{extra}"
        );
        Settings::from_sources(Some(&toml), &|_: &str| None, None).unwrap()
    }

    fn fleet(online: usize, offline: usize) -> Arc<Targets> {
        let t: Targets = (0..online + offline)
            .map(|i| {
                let t = if i < online {
                    Target::Dial(format!("100.64.0.{}:80", i + 1))
                } else {
                    Target::Offline
                };
                (format!("t{i}"), t)
            })
            .collect();
        Arc::new(t)
    }

    #[test]
    fn a_mass_offline_is_held_like_a_caddy_write() {
        let state = DnsState::new(&settings(""));
        assert!(state.table().is_none());
        let hold = Duration::from_secs(60);
        assert!(matches!(
            state.publish(&fleet(4, 0), hold, false),
            Publish::Applied(_)
        ));
        // One goes offline: applied at once.
        assert!(matches!(
            state.publish(&fleet(3, 1), hold, false),
            Publish::Applied(_)
        ));
        assert_eq!(state.table().unwrap().get("t3"), Some(Answer::Offline));
        // Everyone offline (headscale restarted?): held, old answers kept.
        assert!(matches!(
            state.publish(&fleet(0, 4), hold, false),
            Publish::Held(_)
        ));
        assert!(matches!(
            state.table().unwrap().get("t0"),
            Some(Answer::Online(_))
        ));
        // `once --allow-mass-removal`: applied.
        assert!(matches!(
            state.publish(&fleet(0, 4), hold, true),
            Publish::Applied(_)
        ));
        assert_eq!(state.table().unwrap().get("t0"), Some(Answer::Offline));
    }

    #[test]
    fn each_caddy_gets_its_own_resolver_address() {
        let one = settings("[dns]\ncaddy_resolver = [\"udp/100.64.0.1:5380\"]\n");
        let per = settings(
            "[dns]\nlisten = \"0.0.0.0:5380\"\ncaddy_resolver = [\"127.0.0.1:5380\", \"100.64.0.1:5380\"]\n",
        );
        let r = |s: &Settings, i| route_settings(s, i).unwrap().resolver;
        assert_eq!(r(&one, 0), "udp/100.64.0.1:5380");
        assert_eq!(r(&one, 1), "udp/100.64.0.1:5380");
        assert_eq!(r(&per, 0), "udp/127.0.0.1:5380");
        assert_eq!(r(&per, 1), "udp/100.64.0.1:5380");
        let insts = crate::controller::instances(&per).unwrap();
        assert_eq!(insts[1].dns().unwrap().resolver, "udp/100.64.0.1:5380");
        // Config mode: no dns route.
        let config = Settings::from_sources(
            Some("[headscale]\nurl = \"http://127.0.0.1:1\"\napi_key = \"hskey-api-test\"\n[routes]\ndomain = \"t.example\"\n"),
            &|_: &str| None,
            None,
        )
        .unwrap();
        assert!(route_settings(&config, 0).is_none());
    }
}
