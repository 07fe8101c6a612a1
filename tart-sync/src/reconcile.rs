//! The reconcile step for one Caddy: compare the desired owned route with the
//! live one and apply the difference in one guarded write.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use caddy_client::{Client, Error as CaddyError, Etag};
use serde_json::Value;

use crate::config::{RouteMode, RouteSettings};
use crate::layout::{self, Diff, Features, Ids};

/// Attempts per reconcile when another writer changes the config between our read and write.
const MAX_ATTEMPTS: usize = 4;

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

/// Mass-removal guard: remembers since when the same removal has been wanted.
#[derive(Debug, Default, Clone)]
pub struct Guard {
    pending: Option<(Instant, Vec<String>)>,
}

impl Guard {
    /// Decides whether a change may go ahead. A change that lowers the number of
    /// proxied routes from `proxied` to `proxied_after` by more than half (and by
    /// at least two) is held until the same picture has been seen for `hold`.
    /// Returns how much longer it is held.
    pub fn check(
        &mut self,
        diff: &Diff,
        proxied: usize,
        proxied_after: usize,
        hold: Duration,
        now: Instant,
    ) -> Option<Duration> {
        let lost = proxied.saturating_sub(proxied_after);
        if lost < 2 || lost * 2 <= proxied {
            self.pending = None;
            return None;
        }
        match &self.pending {
            Some((since, names)) if names == &diff.unrouted => {
                let waited = now.saturating_duration_since(*since);
                if waited >= hold {
                    self.pending = None;
                    None
                } else {
                    Some(hold - waited)
                }
            }
            _ => {
                self.pending = Some((now, diff.unrouted.clone()));
                if hold.is_zero() {
                    None
                } else {
                    Some(hold)
                }
            }
        }
    }
}

/// One Caddy admin endpoint and what tart-sync knows about it.
#[derive(Debug)]
pub struct Instance {
    /// The admin address as configured.
    pub address: String,
    /// The client.
    pub client: Client,
    /// What this Caddy accepts; probed on first contact and whenever the route must be (re)installed.
    pub features: Option<Features>,
    /// The mass-removal guard.
    pub guard: Guard,
}

impl Instance {
    /// An instance for an admin address.
    pub fn new(address: &str) -> Result<Instance, CaddyError> {
        Ok(Instance {
            address: address.to_string(),
            client: Client::new(address)?,
            features: None,
            guard: Guard::default(),
        })
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

    /// Reads the live owned route (by `@id`, nothing else), with its ETag; `None` when absent.
    pub async fn live(&self, ids: &Ids) -> Result<Option<(Value, Etag)>, CaddyError> {
        match self.client.id(&ids.route).get_with_etag::<Value>().await {
            Ok(v) => Ok(Some(v)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Makes this Caddy carry exactly `targets`. At most one write, guarded by If-Match;
    /// a 412 re-reads and retries.
    pub async fn reconcile(
        &mut self,
        targets: &BTreeMap<String, String>,
        routes: &RouteSettings,
        allow_mass_removal: bool,
    ) -> Result<Outcome, SyncError> {
        let ids = Ids::new(&routes.id_prefix);
        for _ in 0..MAX_ATTEMPTS {
            let live = self.live(&ids).await?;
            let features = self.features(live.is_none()).await?;
            let desired = layout::subtree(targets, routes, features);
            let result = match live {
                Some((live, _)) if live == desired => return Ok(Outcome::Unchanged),
                Some((live, etag)) => {
                    let old = layout::targets_of(&live);
                    let diff = Diff::between(&old, targets);
                    let proxied = layout::proxied_count(&old);
                    if !allow_mass_removal {
                        let after = layout::proxied_count(targets);
                        if let Some(remaining) = self.guard.check(
                            &diff,
                            proxied,
                            after,
                            routes.offline_grace,
                            Instant::now(),
                        ) {
                            return Ok(Outcome::Held {
                                unrouted: proxied.saturating_sub(after),
                                proxied,
                                remaining,
                            });
                        }
                    }
                    match self
                        .client
                        .id(&ids.route)
                        .if_match(&etag)
                        .patch(&desired)
                        .await
                    {
                        Ok(()) => Ok(Outcome::Updated(diff)),
                        Err(e) => Err(SyncError::Caddy(e)),
                    }
                }
                None => self
                    .install(&desired, routes)
                    .await
                    .map(|path| Outcome::Installed {
                        path,
                        routes: targets.len(),
                    }),
            };
            match result {
                // Changed or removed between our read and write: read again.
                Err(SyncError::Caddy(e)) if e.is_precondition_failed() || e.is_not_found() => {
                    continue
                }
                other => return other,
            }
        }
        Err(SyncError::Contended {
            attempts: MAX_ATTEMPTS,
        })
    }

    /// Inserts the owned route at the top of the site's subroute (or before the
    /// site's route when the site has no subroute), guarded by the servers' ETag.
    /// Returns the config path.
    async fn install(&self, desired: &Value, routes: &RouteSettings) -> Result<String, SyncError> {
        let site = site_host(routes);
        let (servers, etag) = self
            .client
            .config("apps/http/servers")
            .get_with_etag::<Option<Value>>()
            .await?;
        let place = servers
            .as_ref()
            .and_then(|s| find_site(s, &site))
            .ok_or(SyncError::SiteNotFound { site })?;
        match &place {
            Insert::Before(path) => {
                self.client
                    .config(path)
                    .if_match(&etag)
                    .put(desired)
                    .await?
            }
            Insert::Append(path) => {
                self.client
                    .config(path)
                    .if_match(&etag)
                    .post(&[desired])
                    .await?
            }
        }
        Ok(place_path(&place))
    }
}

/// Where the owned route goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Insert {
    /// `PUT` at this array index (insert before it).
    Before(String),
    /// `POST` a one-element array to this (empty or missing) array.
    Append(String),
}

fn place_path(p: &Insert) -> String {
    match p {
        Insert::Before(s) | Insert::Append(s) => s.clone(),
    }
}

/// The host of the site that carries the routes: `domain`, or `*.domain` in host mode.
pub fn site_host(routes: &RouteSettings) -> String {
    match routes.mode {
        RouteMode::Path => routes.domain.clone(),
        RouteMode::Host => format!("*.{}", routes.domain),
    }
}

/// Finds where to insert the owned route for the site `host` in `servers`
/// (the value of `apps/http/servers`): index 0 of the site's subroute, or the
/// site's route itself when it has no subroute. Servers are tried in name order.
pub fn find_site(servers: &Value, host: &str) -> Option<Insert> {
    let servers = servers.as_object()?;
    let mut names: Vec<&String> = servers.keys().collect();
    names.sort();
    for name in names {
        let Some(routes) = servers[name].get("routes").and_then(Value::as_array) else {
            continue;
        };
        for (i, route) in routes.iter().enumerate() {
            let hosts = route
                .get("match")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|m| m.get("host").and_then(Value::as_array))
                .flatten()
                .filter_map(Value::as_str);
            if !hosts.into_iter().any(|h| h.eq_ignore_ascii_case(host)) {
                continue;
            }
            let handlers = route.get("handle").and_then(Value::as_array);
            let sub = handlers.and_then(|hs| {
                hs.iter()
                    .position(|h| h.get("handler").and_then(Value::as_str) == Some("subroute"))
            });
            return Some(match sub {
                Some(h) => {
                    let base = format!("apps/http/servers/{name}/routes/{i}/handle/{h}/routes");
                    let empty = handlers
                        .and_then(|hs| hs[h].get("routes"))
                        .and_then(Value::as_array)
                        .is_none_or(|r| r.is_empty());
                    if empty {
                        Insert::Append(base)
                    } else {
                        Insert::Before(format!("{base}/0"))
                    }
                }
                None => Insert::Before(format!("apps/http/servers/{name}/routes/{i}")),
            });
        }
    }
    None
}
