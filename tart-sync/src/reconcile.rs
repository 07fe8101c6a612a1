//! The reconcile step for one Caddy: compare the desired owned route with the
//! live one and apply the difference in one guarded write.

use std::sync::Arc;
use std::time::{Duration, Instant};

use caddy_client::{Client, Error as CaddyError, Etag};
use serde_json::value::RawValue;
use serde_json::Value;
use tracing::{debug_span, Instrument};

use crate::config::{CaddySettings, RouteSettings};
use crate::contest::{Contest, Verdict};
use crate::desired::Targets;
use crate::guard::Guard;
use crate::layout::dns::DnsRoute;
use crate::layout::{self, Diff, Features, Ids, RouteForm};
use crate::reserved::{self, Rule, Why};
pub use crate::site::{find_site, is_owned_route, site_route};
use crate::site::{owned_position, site_position};

/// Attempts per reconcile when another writer changes the config between our read and write.
const MAX_ATTEMPTS: usize = 4;

/// How often an idle cycle reads and compares the whole live route instead of
/// only its revision stamp (undoes hand edits of tart-sync's route).
pub const FULL_CHECK_EVERY: Duration = Duration::from_secs(600);

/// Why a reconcile step failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SyncError {
    /// Caddy's admin API failed or refused.
    #[error("{0}")]
    Caddy(#[from] CaddyError),
    /// The site that should carry the routes is not in Caddy's config.
    #[error("no site for {site} in Caddy's config: add a site block for it to the Caddyfile (see Caddyfile.example)")]
    SiteNotFound {
        /// The host the site is for (`domain`, or `*.domain` in host mode).
        site: String,
    },
    /// Others kept changing the config between our read and write.
    #[error("the config kept changing under us ({attempts} attempts, each answered 412); will retry next cycle")]
    Contended {
        /// How many attempts were made.
        attempts: usize,
    },
}

impl SyncError {
    /// True when Caddy's admin API could not be reached at all.
    pub fn is_unreachable(&self) -> bool {
        matches!(self, SyncError::Caddy(e) if e.is_unreachable())
    }

    /// A short label for metrics: `unreachable`, `site_not_found`, `rejected`, ...
    pub fn kind(&self) -> &'static str {
        match self {
            SyncError::Caddy(e) if e.is_unreachable() => "unreachable",
            SyncError::Caddy(e) => e.kind().as_str(),
            SyncError::SiteNotFound { .. } => "site_not_found",
            SyncError::Contended { .. } => "contended",
        }
    }
}

/// What a reconcile step did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Caddy already matched: nothing written.
    Unchanged,
    /// The owned route was missing (first run, or Caddy restarted from its Caddyfile) and was inserted.
    Installed {
        /// Where it was inserted.
        path: String,
        /// Routes it carries.
        routes: usize,
    },
    /// The owned route was replaced in one write.
    Updated(Diff),
    /// Someone else keeps changing the owned route: left alone for a while
    /// ([`crate::contest`]).
    Contested {
        /// Changes by someone else seen in a row.
        changes: u32,
        /// How much longer the route is left alone.
        remaining: Duration,
    },
    /// The change would stop proxying more than half the routes at once; held back.
    Held {
        /// Routes the change would stop proxying.
        unrouted: usize,
        /// Routes proxied now.
        proxied: usize,
        /// How much longer it is held.
        remaining: Duration,
    },
}

/// A table, the features it was stamped for, and its revision stamp.
type RevMemo = (Arc<Targets>, Features, String);

/// One Caddy admin endpoint and what tart-sync knows about it.
#[derive(Debug)]
pub struct Instance {
    /// The admin address as configured.
    address: String,
    /// The client.
    client: Client,
    /// What this Caddy accepts; probed on first contact and whenever the route must be (re)installed.
    features: Option<Features>,
    /// The mass-removal guard.
    guard: Guard,
    /// Changes of the owned route by someone else.
    contest: Contest,
    /// What tart-sync last wrote or verified here: revision stamp and table.
    last: Option<(String, Arc<Targets>)>,
    /// The revision last computed, for the table it was computed from.
    rev_memo: Option<RevMemo>,
    /// When the whole live route was last compared with the desired one.
    last_full_check: Option<Instant>,
    /// How often to compare the whole route (default [`FULL_CHECK_EVERY`]).
    full_check_every: Duration,
    /// In dns mode (`routes.resolve = "dns"`): how this Caddy resolves names.
    dns: Option<DnsRoute>,
    /// The owned route was found before the site it serves (or absent), for
    /// this process's settings ([`Instance::place`]).
    placed: bool,
}

impl Instance {
    /// An instance for one of `caddy.admin`'s addresses, its client built by
    /// [`CaddySettings::client`] (timeouts and `caddy.tls_*` apply).
    pub fn new(address: &str, caddy: &CaddySettings) -> Result<Instance, CaddyError> {
        Ok(Instance::with_client(address, caddy.client(address)?))
    }

    /// An instance for `address` that talks through `client`.
    pub fn with_client(address: &str, client: Client) -> Instance {
        Instance {
            address: address.to_string(),
            client,
            features: None,
            guard: Guard::default(),
            contest: Contest::default(),
            last: None,
            rev_memo: None,
            last_full_check: None,
            full_check_every: FULL_CHECK_EVERY,
            dns: None,
            placed: false,
        }
    }

    /// Writes the dns-mode route ([`layout::dns`]) with this resolver
    /// setting, or (`None`, the default) the config-mode route.
    pub fn set_dns(&mut self, dns: Option<DnsRoute>) {
        self.dns = dns;
        self.rev_memo = None;
    }

    /// How this Caddy resolves names in dns mode, if it does.
    pub fn dns(&self) -> Option<&DnsRoute> {
        self.dns.as_ref()
    }

    /// The table written for `targets` when `live` is there: `targets`
    /// itself in config mode. In dns mode, while the names are the same, the
    /// outputs `live` already has ([`layout::dns::stable_targets`]: a flap
    /// or a move is no write); when names are added or removed (a write in
    /// any case), every fallback address refreshed
    /// ([`layout::dns::fresh_targets`]), at no extra cost.
    fn effective(
        &self,
        targets: &Arc<Targets>,
        live: &Targets,
        routes: &RouteSettings,
    ) -> Arc<Targets> {
        match &self.dns {
            None => Arc::clone(targets),
            Some(_) if live.keys().eq(targets.keys()) => Arc::new(layout::dns::stable_targets(
                targets,
                live,
                routes.upstream_port,
            )),
            Some(_) => Arc::new(layout::dns::fresh_targets(
                targets,
                live,
                routes.upstream_port,
            )),
        }
    }

    /// The admin address as configured.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// The client for this Caddy's admin API.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// What this Caddy accepts, once probed.
    pub fn known_features(&self) -> Option<Features> {
        self.features
    }

    /// How often an idle cycle compares the whole route (default
    /// [`FULL_CHECK_EVERY`]); `Duration::ZERO` compares it every cycle.
    pub fn set_full_check_every(&mut self, every: Duration) {
        self.full_check_every = every;
    }

    async fn features(&mut self, refresh: bool) -> Result<Features, CaddyError> {
        if let (Some(f), false) = (self.features, refresh) {
            return Ok(f);
        }
        let caps = self.client.capabilities().await?;
        let f = Features {
            stream_close_delay: caps.stream_close_delay,
        };
        self.features = Some(f);
        Ok(f)
    }

    /// Reads the live owned route (by `@id`, nothing else) as JSON text, with
    /// its ETag; `None` when absent. [`live_form`] reads the text.
    pub async fn live(&self, ids: &Ids) -> Result<Option<(Box<RawValue>, Etag)>, CaddyError> {
        match self
            .client
            .id(&ids.route)
            .get_with_etag::<Box<RawValue>>()
            .await
        {
            Ok(v) => Ok(Some(v)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Reads the revision stamp of the live route (`/id/<prefix>-rev`), with its ETag;
    /// `None` when absent (no route, or a route written by an older tart-sync).
    async fn live_rev(&self, ids: &Ids) -> Result<Option<(String, Etag)>, CaddyError> {
        match self.client.id(&ids.rev).get_with_etag::<Value>().await {
            Ok((v, etag)) => Ok(Some((
                v.get(&ids.rev_var)
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string(),
                etag,
            ))),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// What the site's own routes match ([`reserved::site_rules`]): names
    /// that must not be published on this Caddy. Empty when the site is not
    /// there yet.
    pub async fn site_rules(&self, routes: &RouteSettings) -> Result<Vec<(Rule, Why)>, SyncError> {
        let servers = self.servers().await?;
        let host = layout::site_host(routes);
        Ok(servers
            .as_ref()
            .and_then(|s| site_route(s, &host))
            .map(|(_, route)| reserved::site_rules(route, routes))
            .unwrap_or_default())
    }

    /// Makes this Caddy carry exactly `targets`. At most one write, guarded by If-Match;
    /// a 412 re-reads and retries.
    ///
    /// An idle cycle reads only the small revision stamp (`/id/<prefix>-rev`) and
    /// compares it with the stamp of the desired route; every `full_check_every`
    /// the whole route is read and compared, so a hand edit is undone too.
    pub async fn reconcile(
        &mut self,
        targets: &Targets,
        routes: &RouteSettings,
        allow_mass_removal: bool,
    ) -> Result<Outcome, SyncError> {
        self.reconcile_shared(&Arc::new(targets.clone()), routes, allow_mass_removal)
            .await
    }

    /// [`Instance::reconcile`] for a shared table: while the daemon passes the
    /// same table again (nothing changed), its revision stamp is not recomputed
    /// and the table is not copied.
    ///
    /// Each step runs in a debug-level span (`reconcile` around the whole;
    /// `read_stamp`, `revision`, `read_route`, `parse_route`, `build_route`,
    /// `compare`, `diff`, `write`, `install` inside), which the benchmark
    /// times; without a subscriber listening at debug level they cost nothing.
    #[tracing::instrument(level = "debug", name = "reconcile", skip_all)]
    pub async fn reconcile_shared(
        &mut self,
        targets: &Arc<Targets>,
        routes: &RouteSettings,
        allow_mass_removal: bool,
    ) -> Result<Outcome, SyncError> {
        let ids = Ids::new(&routes.id_prefix);
        if !self.placed {
            self.place(&ids, routes)
                .instrument(debug_span!("place"))
                .await?;
        }
        for _ in 0..MAX_ATTEMPTS {
            let stamp = self
                .live_rev(&ids)
                .instrument(debug_span!("read_stamp"))
                .await?;
            let features = self.features(stamp.is_none()).await?;
            let rev = match &self.rev_memo {
                Some((t, f, rev)) if Arc::ptr_eq(t, targets) && *f == features => rev.clone(),
                _ => {
                    let rev = debug_span!("revision").in_scope(|| match &self.dns {
                        None => layout::revision(targets, routes, features),
                        Some(dns) => layout::dns::revision(targets, routes, features, dns),
                    });
                    self.rev_memo = Some((targets.clone(), features, rev.clone()));
                    rev
                }
            };
            let (etag, live_table) = match stamp {
                Some((live_rev, etag)) => {
                    let ours = self.last.as_ref().is_none_or(|(r, _)| *r == live_rev);
                    if live_rev == rev || ours {
                        self.contest.settled(Instant::now());
                    } else if let Verdict::Wait {
                        remaining,
                        changes,
                        started,
                    } = self.contest.changed_by_other(Instant::now())
                    {
                        if started {
                            tracing::warn!(caddy = %self.address, changes, quiet = ?remaining,
                                "another writer keeps changing the route tart-sync owns (a second tart-sync with other settings, or a script?); leaving it alone for a while");
                        }
                        return Ok(Outcome::Contested { changes, remaining });
                    }
                    let full_due = self
                        .last_full_check
                        .is_none_or(|t| t.elapsed() >= self.full_check_every);
                    if live_rev == rev && !full_due {
                        return Ok(Outcome::Unchanged);
                    }
                    let known = self
                        .last
                        .as_ref()
                        .filter(|(r, _)| *r == live_rev)
                        .map(|(_, t)| t.clone());
                    if live_rev == rev || known.is_none() {
                        // A full read: due, or we do not know what the live route holds.
                        match self
                            .live(&ids)
                            .instrument(debug_span!("read_route"))
                            .await?
                        {
                            Some((live, etag)) => {
                                self.last_full_check = Some(Instant::now());
                                let live = debug_span!("parse_route").in_scope(|| live_form(&live));
                                let live_table = Arc::new(
                                    live.as_ref().map(|l| l.targets()).unwrap_or_default(),
                                );
                                let eff = self.effective(targets, &live_table, routes);
                                let desired =
                                    build_route(&eff, routes, features, self.dns.as_ref());
                                let same = debug_span!("compare").in_scope(|| {
                                    live.as_ref().is_some_and(|l| l.matches(&desired))
                                });
                                if same {
                                    self.last = Some((rev, Arc::clone(&eff)));
                                    return Ok(Outcome::Unchanged);
                                }
                                (etag, live_table)
                            }
                            None => continue, // removed meanwhile
                        }
                    } else {
                        (etag, known.unwrap_or_default())
                    }
                }
                None => match self
                    .live(&ids)
                    .instrument(debug_span!("read_route"))
                    .await?
                {
                    // A route without a stamp (older tart-sync): replace it.
                    Some((live, etag)) => (etag, Arc::new(live_targets(&live))),
                    None => {
                        let eff = self.effective(targets, &Targets::new(), routes);
                        let desired = build_route(&eff, routes, features, self.dns.as_ref());
                        match self
                            .install(&desired, routes)
                            .instrument(debug_span!("install"))
                            .await
                        {
                            Ok(path) => {
                                self.last = Some((rev, Arc::clone(&eff)));
                                self.last_full_check = Some(Instant::now());
                                return Ok(Outcome::Installed {
                                    path,
                                    routes: targets.len(),
                                });
                            }
                            Err(SyncError::Caddy(e)) if e.is_precondition_failed() => continue,
                            Err(e) => return Err(e),
                        }
                    }
                },
            };
            let eff = self.effective(targets, &live_table, routes);
            let (diff, proxied) = debug_span!("diff").in_scope(|| {
                (
                    Diff::between(&live_table, &eff),
                    layout::proxied_count(&live_table),
                )
            });
            if !allow_mass_removal {
                if let Some(remaining) =
                    self.guard
                        .check(&diff, proxied, routes.offline_grace, Instant::now())
                {
                    return Ok(Outcome::Held {
                        unrouted: diff.unrouted.len(),
                        proxied,
                        remaining,
                    });
                }
            }
            let desired = build_route(&eff, routes, features, self.dns.as_ref());
            match self
                .client
                .id(&ids.route)
                .if_match(&etag)
                .patch(&desired)
                .instrument(debug_span!("write"))
                .await
            {
                Ok(()) => {
                    self.last = Some((rev, Arc::clone(&eff)));
                    return Ok(Outcome::Updated(diff));
                }
                // Changed or removed between our read and write: read again.
                Err(e) if e.is_precondition_failed() || e.is_not_found() => continue,
                Err(e) => return Err(SyncError::Caddy(e)),
            }
        }
        Err(SyncError::Contended {
            attempts: MAX_ATTEMPTS,
        })
    }

    /// Caddy's `apps/http/servers` (`None` when it has no HTTP servers).
    async fn servers(&self) -> Result<Option<Value>, SyncError> {
        Ok(self
            .client
            .config("apps/http/servers")
            .get::<Option<Value>>()
            .await?)
    }

    /// Makes sure the owned route precedes the site it serves. A route
    /// written for another `routes.mode` or `routes.domain` (tart-sync
    /// restarted with new settings while Caddy kept running) sits before the
    /// old site, where the new site's requests never reach it: such a route
    /// is removed, and the cycle installs it in its place. Settings do not
    /// change while tart-sync runs, so this reads `apps/http/servers` once per
    /// process; while the site is missing, it is read again each cycle.
    async fn place(&mut self, ids: &Ids, routes: &RouteSettings) -> Result<(), SyncError> {
        let servers = self.servers().await?;
        let site = layout::site_host(routes);
        let owned = servers.as_ref().and_then(|s| owned_position(s, &ids.route));
        let Some(owned) = owned else {
            self.placed = true;
            return Ok(());
        };
        let Some(site_at) = servers.as_ref().and_then(|s| site_position(s, &site)) else {
            return Ok(());
        };
        if owned.0 != site_at.0 || owned.1 > site_at.1 {
            tracing::warn!(caddy = %self.address, site = %site,
                at = %format!("apps/http/servers/{}/routes/{}", owned.0, owned.1),
                "the route tart-sync owns does not precede the site it serves (written for another routes.mode or routes.domain?); moving it there");
            match self.client.id(&ids.route).delete().await {
                Ok(()) => {}
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(SyncError::Caddy(e)),
            }
            self.last = None;
        }
        self.placed = true;
        Ok(())
    }

    /// Inserts the owned route into the server that carries the site, just
    /// before the site's route, guarded by the servers' ETag. Returns the path.
    async fn install<R: serde::Serialize>(
        &self,
        desired: &R,
        routes: &RouteSettings,
    ) -> Result<String, SyncError> {
        let site = layout::site_host(routes);
        let (servers, etag) = self
            .client
            .config("apps/http/servers")
            .get_with_etag::<Option<Value>>()
            .await?;
        let path = servers
            .as_ref()
            .and_then(|s| find_site(s, &site))
            .ok_or(SyncError::SiteNotFound { site })?;
        self.client
            .config(&path)
            .if_match(&etag)
            .put(desired)
            .await?;
        Ok(path)
    }
}

/// [`layout::route`] (or [`layout::dns::route`] in dns mode) in the
/// `build_route` span.
fn build_route<'a>(
    targets: &'a Targets,
    routes: &RouteSettings,
    features: Features,
    dns: Option<&DnsRoute>,
) -> layout::OwnedRoute<'a> {
    debug_span!("build_route").in_scope(|| match dns {
        None => layout::route(targets, routes, features),
        Some(dns) => layout::dns::route(targets, routes, features, dns),
    })
}

/// The live route's [`RouteForm`]; `None` (and a warning) when it lost the
/// shape of a route, e.g. by a hand edit: it is then rewritten, and its
/// table counts as empty.
pub fn live_form(live: &RawValue) -> Option<RouteForm> {
    match RouteForm::parse(live.get()) {
        Ok(form) => Some(form),
        Err(e) => {
            tracing::warn!(error = %e, "the live route tart-sync owns is not shaped like a route; it will be rewritten");
            None
        }
    }
}

/// The name → target table of the live route ([`RouteForm::targets`]);
/// empty when it lost the shape of a route.
pub fn live_targets(live: &RawValue) -> Targets {
    live_form(live).map(|l| l.targets()).unwrap_or_default()
}
