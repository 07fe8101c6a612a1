//! What the public page shows of the fleet: for each routed TART its name,
//! link, online or offline, and since when. Nothing else: no addresses,
//! users, tags or keys (the type has no field for them).

use std::collections::HashMap;

use serde::Serialize;
use time::OffsetDateTime;

use crate::config::{RouteMode, RouteSettings};
use crate::desired::{Desired, NodeState};
use crate::layout;

/// One TART as the public sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PublicTart {
    /// Its name.
    pub name: String,
    /// Its URL ([`layout::node_url`]).
    pub url: String,
    /// Online (an offline TART in its grace time counts as offline).
    pub online: bool,
    /// Since when it is online or offline, when known: headscale's
    /// `lastSeen` for an offline TART, the poll that saw it come online
    /// for an online one (unknown for TARTs online when tart-sync started).
    #[serde(with = "time::serde::rfc3339::option")]
    pub since: Option<OffsetDateTime>,
}

/// The public fleet at one time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PublicFleet {
    /// The page's heading (`public.title`).
    pub title: String,
    /// The site (`routes.domain`).
    pub domain: String,
    /// When this view was made (the poll that changed it).
    #[serde(with = "time::serde::rfc3339")]
    pub updated: OffsetDateTime,
    /// TARTs online.
    pub online: usize,
    /// TARTs listed.
    pub total: usize,
    /// Every TART, sorted by name.
    pub tarts: Vec<PublicTart>,
}

/// Keeps "since when" across desired states.
#[derive(Debug, Default)]
pub struct SinceTracker {
    /// name → (online, since).
    seen: HashMap<String, (bool, Option<OffsetDateTime>)>,
    /// A desired state was seen before (names that appear later are new).
    started: bool,
}

impl SinceTracker {
    /// The public view of `desired` at `now`, updating the tracker.
    pub fn view(
        &mut self,
        desired: &Desired,
        routes: &RouteSettings,
        title: &str,
        now: OffsetDateTime,
    ) -> PublicFleet {
        let mut next = HashMap::with_capacity(desired.entries.len());
        let mut tarts = Vec::with_capacity(desired.entries.len());
        for e in &desired.entries {
            let online = e.state == NodeState::Online;
            let since = match self.seen.get(&e.name) {
                Some((was, since)) if *was == online => *since,
                previous => {
                    if online {
                        // Seen coming online (or appearing after the start).
                        (previous.is_some() || self.started).then_some(now)
                    } else {
                        e.offline_since.or(Some(now))
                    }
                }
            };
            next.insert(e.name.clone(), (online, since));
            tarts.push(PublicTart {
                name: e.name.clone(),
                url: layout::node_url(routes, &e.name),
                online,
                since,
            });
        }
        self.seen = next;
        self.started = true;
        let online = tarts.iter().filter(|t| t.online).count();
        PublicFleet {
            title: title.to_owned(),
            domain: routes.domain.clone(),
            updated: now,
            online,
            total: tarts.len(),
            tarts,
        }
    }
}

/// The link the page uses for a TART: site-relative in path mode (works
/// whatever scheme and port the visitor came in with), else its URL.
pub fn page_link(routes: &RouteSettings, tart: &PublicTart) -> String {
    match routes.mode {
        RouteMode::Path => format!("/{}/", tart.name),
        _ => tart.url.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::desired::Entry;

    fn entry(name: &str, state: NodeState, offline_since: Option<OffsetDateTime>) -> Entry {
        Entry {
            name: name.into(),
            node_id: 1,
            user: "secret-user".into(),
            upstream: "100.64.0.1:80".into(),
            state,
            offline_since,
            grace_until: None,
        }
    }

    #[test]
    fn since_follows_the_transitions() {
        let routes = crate::status::fixtures::settings("127.0.0.1:1", "path").routes;
        let t0 = OffsetDateTime::UNIX_EPOCH + time::Duration::days(20_000);
        let t1 = t0 + time::Duration::minutes(5);
        let lost = t0 - time::Duration::hours(1);
        let mut tracker = SinceTracker::default();
        let first = Desired {
            entries: vec![
                entry("a", NodeState::Online, None),
                entry("b", NodeState::Offline, Some(lost)),
            ],
            skipped: vec![],
        };
        let v = tracker.view(&first, &routes, "T", t0);
        // Online at the start: since unknown; offline: headscale's lastSeen.
        assert_eq!(v.tarts[0].since, None);
        assert_eq!(v.tarts[1].since, Some(lost));
        assert_eq!((v.online, v.total), (1, 2));
        let second = Desired {
            entries: vec![
                entry("a", NodeState::Grace, Some(t1)),
                entry("b", NodeState::Online, None),
                entry("c", NodeState::Online, None),
            ],
            skipped: vec![],
        };
        let v = tracker.view(&second, &routes, "T", t1);
        assert!(!v.tarts[0].online, "in grace counts as offline");
        assert_eq!(v.tarts[0].since, Some(t1));
        assert_eq!(v.tarts[1].since, Some(t1), "seen coming online");
        assert_eq!(v.tarts[2].since, Some(t1), "new after the start");
        let json = serde_json::to_string(&v).unwrap();
        assert!(
            !json.contains("secret-user") && !json.contains("100.64"),
            "{json}"
        );
    }
}
