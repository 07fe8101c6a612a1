//! The pure part: headscale's nodes + settings + the time → which TARTs get
//! which route. No I/O; tested alone.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use serde::Serialize;
use time::OffsetDateTime;

use crate::config::{HeadscaleSettings, RouteSettings, UpstreamKind};
use crate::headscale::{is_valid_dns_label, Node};
use crate::reserved::Reserved;

/// What a routed node's URL does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum NodeState {
    /// Online: proxied.
    Online,
    /// Offline for less than `offline_grace`: still proxied.
    Grace,
    /// Offline longer than `offline_grace` (or from the start): a 503 page.
    Offline,
}

impl NodeState {
    /// `online`, `grace` or `offline`.
    pub fn as_str(self) -> &'static str {
        match self {
            NodeState::Online => "online",
            NodeState::Grace => "grace",
            NodeState::Offline => "offline",
        }
    }

    /// True when requests are proxied to the node.
    pub fn is_proxied(self) -> bool {
        !matches!(self, NodeState::Offline)
    }
}

/// One TART that has a URL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Entry {
    /// The URL name: the node's `givenName`.
    pub name: String,
    /// headscale's node id.
    pub node_id: u64,
    /// The owning user.
    pub user: String,
    /// The dial address (`100.64.0.1:80`, `[fd7a::1]:80` or `name.suffix:80`).
    pub upstream: String,
    /// Online, in grace, or offline.
    pub state: NodeState,
    /// Since when it is offline (headscale's `lastSeen`), when it is.
    #[serde(with = "time::serde::rfc3339::option")]
    pub offline_since: Option<OffsetDateTime>,
    /// When the grace ends, for a node in grace.
    #[serde(with = "time::serde::rfc3339::option")]
    pub grace_until: Option<OffsetDateTime>,
}

impl Entry {
    /// Where the name's URL leads: the dial address while proxied, else [`Target::Offline`].
    pub fn target(&self) -> Target {
        if self.state.is_proxied() {
            Target::Dial(self.upstream.clone())
        } else {
            Target::Offline
        }
    }
}

/// Where a TART's URL leads, as the owned route's lookup table stores it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Target {
    /// Proxied to this dial address (`100.64.0.1:80`, `[fd7a::1]:80`, `name.suffix:80`).
    Dial(String),
    /// The URL answers the 503 "this TART is offline" page.
    Offline,
}

impl Target {
    /// The lookup value that stands for [`Target::Offline`] in Caddy's
    /// config (a dial address always has a `:`, so the two never meet).
    pub const OFFLINE_LOOKUP: &'static str = "offline";

    /// The value Caddy's lookup map holds for this target.
    pub fn as_lookup(&self) -> &str {
        match self {
            Target::Dial(addr) => addr,
            Target::Offline => Self::OFFLINE_LOOKUP,
        }
    }

    /// Reads a lookup value from Caddy's config back.
    pub fn from_lookup(value: &str) -> Target {
        if value == Self::OFFLINE_LOOKUP {
            Target::Offline
        } else {
            Target::Dial(value.to_string())
        }
    }

    /// True when requests are proxied.
    pub fn is_proxied(&self) -> bool {
        matches!(self, Target::Dial(_))
    }
}

/// The table the owned route carries: name → target, sorted by name.
pub type Targets = BTreeMap<String, Target>;

/// Why a node that passes the filters gets no URL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Skipped {
    /// headscale's node id.
    pub node_id: u64,
    /// The node's host name.
    pub name: String,
    /// Why, in words.
    pub reason: String,
}

/// The desired state: every TART with a URL, sorted by name, and the nodes skipped.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct Desired {
    /// TARTs with a URL, sorted by name (unique).
    pub entries: Vec<Entry>,
    /// Nodes that pass the filters but get no URL, with the reason.
    pub skipped: Vec<Skipped>,
}

impl Desired {
    /// The table the owned route carries (in the debug-level span `targets`).
    #[tracing::instrument(level = "debug", name = "targets", skip_all)]
    pub fn targets(&self) -> Targets {
        self.entries
            .iter()
            .map(|e| (e.name.clone(), e.target()))
            .collect()
    }
}

/// True when the node passes `headscale.user` and `headscale.tags`.
pub fn passes_filters(node: &Node, hs: &HeadscaleSettings) -> bool {
    if let Some(user) = &hs.user {
        if &node.user != user {
            return false;
        }
    }
    hs.tags.is_empty() || node.has_any_tag(&hs.tags)
}

/// The dial address of a node, or why there is none.
fn upstream(node: &Node, routes: &RouteSettings) -> Result<String, String> {
    let port = routes.upstream_port;
    match routes.upstream {
        UpstreamKind::Ip => match node.first_ip() {
            Some(IpAddr::V4(ip)) => Ok(format!("{ip}:{port}")),
            Some(IpAddr::V6(ip)) => Ok(format!("[{ip}]:{port}")),
            None => Err("no IP address".into()),
        },
        UpstreamKind::MagicDns => match &routes.magicdns_suffix {
            Some(suffix) if !suffix.is_empty() => {
                Ok(format!("{}.{suffix}:{port}", node.given_name))
            }
            _ => Err("routes.magicdns_suffix is not set".into()),
        },
    }
}

/// Computes the desired routes from headscale's nodes at time `now`.
///
/// A node gets a URL when it passes the filters, is not expired, has a valid
/// DNS-label `givenName` that is not [`Reserved`], and a usable address. Online → proxied; offline for
/// less than `offline_grace` since its `lastSeen` (headscale's own record of
/// the disconnect, so every tart-sync instance decides alike) → still
/// proxied; offline longer → a 503 page. Two nodes with one name: the lower
/// id wins.
///
/// Runs in the debug-level span `desired` (timed by the benchmark).
#[tracing::instrument(level = "debug", name = "desired", skip_all)]
pub fn compute(
    nodes: &[Node],
    hs: &HeadscaleSettings,
    routes: &RouteSettings,
    reserved: &Reserved,
    now: OffsetDateTime,
) -> Desired {
    let mut by_name: BTreeMap<String, Entry> = BTreeMap::new();
    let mut skipped = Vec::new();
    let mut sorted: Vec<&Node> = nodes.iter().filter(|n| passes_filters(n, hs)).collect();
    sorted.sort_by_key(|n| n.id);
    for node in sorted {
        let skip = |reason: String| Skipped {
            node_id: node.id,
            name: node.name.clone(),
            reason,
        };
        if node.is_expired(now) {
            skipped.push(skip("expired".into()));
            continue;
        }
        if !is_valid_dns_label(&node.given_name) {
            skipped.push(skip(format!(
                "givenName {:?} is not a DNS label",
                node.given_name
            )));
            continue;
        }
        if let Some(why) = reserved.why(&node.given_name) {
            skipped.push(skip(format!("name {:?} is {why}", node.given_name)));
            continue;
        }
        let upstream = match upstream(node, routes) {
            Ok(u) => u,
            Err(why) => {
                skipped.push(skip(why));
                continue;
            }
        };
        if let Some(winner) = by_name.get(&node.given_name) {
            skipped.push(skip(format!(
                "name {:?} is taken by node {}",
                node.given_name, winner.node_id
            )));
            continue;
        }
        let (state, offline_since, grace_until) = liveness(node, routes.offline_grace, now);
        by_name.insert(
            node.given_name.clone(),
            Entry {
                name: node.given_name.clone(),
                node_id: node.id,
                user: node.user.clone(),
                upstream,
                state,
                offline_since,
                grace_until,
            },
        );
    }
    Desired {
        entries: by_name.into_values().collect(),
        skipped,
    }
}

fn liveness(
    node: &Node,
    grace: Duration,
    now: OffsetDateTime,
) -> (NodeState, Option<OffsetDateTime>, Option<OffsetDateTime>) {
    if node.online {
        return (NodeState::Online, None, None);
    }
    let Some(since) = node.last_seen else {
        return (NodeState::Offline, None, None);
    };
    // A lastSeen in the future (clock skew) counts as now.
    let since = since.min(now);
    if grace.is_zero() {
        return (NodeState::Offline, Some(since), None);
    }
    // A grace too long to add to a date never ends.
    let until = time::Duration::try_from(grace)
        .ok()
        .and_then(|g| since.checked_add(g));
    match until {
        Some(until) if now >= until => (NodeState::Offline, Some(since), None),
        until => (NodeState::Grace, Some(since), until),
    }
}

/// When the next time-driven change (a grace ending) is due, if any.
pub fn next_deadline(desired: &Desired) -> Option<OffsetDateTime> {
    desired.entries.iter().filter_map(|e| e.grace_until).min()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Settings;
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2026-12-01 12:00 UTC);

    fn settings(extra: &str) -> Settings {
        let toml = format!(
            "[headscale]\nurl = \"http://127.0.0.1:1\"\napi_key = \"hskey-api-test\"\n\
             [caddy]\nadmin = [\"127.0.0.1:2019\"]\n[routes]\ndomain = \"tart.example.org\"\n{extra}"
        );
        Settings::from_sources(Some(&toml), &|_: &str| None, None).unwrap()
    }

    fn node(id: u64, name: &str, online: bool, last_seen: Option<OffsetDateTime>) -> Node {
        Node {
            id,
            name: name.to_string(),
            given_name: name.to_string(),
            user: "tart".to_string(),
            ip_addresses: vec![IpAddr::from([100, 64, 0, id as u8])],
            online,
            last_seen,
            expiry: None,
            tags: Vec::new(),
        }
    }

    fn compute_with(nodes: &[Node], extra: &str) -> Desired {
        let s = settings(extra);
        compute(
            nodes,
            &s.headscale,
            &s.routes,
            &Reserved::new(&s.routes, &[]),
            NOW,
        )
    }

    #[test]
    fn online_nodes_are_proxied_and_offline_ones_keep_their_route_for_the_grace() {
        let minute = time::Duration::minutes(1);
        let nodes = [
            node(1, "rhodes", true, None),
            node(2, "karoo", false, Some(NOW - minute / 2)),
            node(3, "dunedin", false, Some(NOW - minute * 2)),
            node(4, "hue", false, None),
        ];
        let d = compute_with(&nodes, "offline_grace = \"60s\"\n");
        let state = |name: &str| d.entries.iter().find(|e| e.name == name).unwrap();
        assert_eq!(state("rhodes").state, NodeState::Online);
        assert_eq!(
            state("rhodes").target(),
            Target::Dial("100.64.0.1:80".into())
        );
        assert_eq!(state("karoo").state, NodeState::Grace);
        assert_eq!(state("karoo").grace_until, Some(NOW + minute / 2));
        assert!(state("karoo").target().is_proxied());
        assert_eq!(state("dunedin").state, NodeState::Offline);
        assert_eq!(state("dunedin").target(), Target::Offline);
        assert_eq!(state("hue").state, NodeState::Offline);
        assert_eq!(next_deadline(&d), Some(NOW + minute / 2));
    }

    #[test]
    fn an_enormous_grace_never_ends_instead_of_overflowing() {
        let nodes = [node(
            1,
            "karoo",
            false,
            Some(NOW - time::Duration::days(400)),
        )];
        // The settings refuse such a grace; the function must not rely on that.
        let mut s = settings("");
        s.routes.offline_grace = Duration::MAX;
        let reserved = Reserved::new(&s.routes, &[]);
        let d = compute(&nodes, &s.headscale, &s.routes, &reserved, NOW);
        assert_eq!(d.entries[0].state, NodeState::Grace);
        assert_eq!(d.entries[0].grace_until, None);
        assert_eq!(next_deadline(&d), None);
    }

    #[test]
    fn a_last_seen_in_the_future_counts_as_now() {
        let nodes = [node(
            1,
            "karoo",
            false,
            Some(NOW + time::Duration::hours(5)),
        )];
        let d = compute_with(&nodes, "offline_grace = \"60s\"\n");
        assert_eq!(d.entries[0].offline_since, Some(NOW));
        assert_eq!(
            d.entries[0].grace_until,
            Some(NOW + time::Duration::minutes(1))
        );
    }

    #[test]
    fn the_lower_id_wins_a_name_and_bad_names_are_skipped_with_a_reason() {
        let mut bad = node(3, "x", true, None);
        bad.given_name = "Not_A_Label".into();
        let nodes = [
            node(9, "rhodes", true, None),
            node(2, "rhodes", true, None),
            bad,
        ];
        let d = compute_with(&nodes, "");
        assert_eq!(d.entries.len(), 1);
        assert_eq!(d.entries[0].node_id, 2);
        let reasons: Vec<&str> = d.skipped.iter().map(|s| s.reason.as_str()).collect();
        assert!(
            reasons.iter().any(|r| r.contains("taken by node 2")),
            "{reasons:?}"
        );
        assert!(
            reasons.iter().any(|r| r.contains("not a DNS label")),
            "{reasons:?}"
        );
    }

    #[test]
    fn reserved_names_are_skipped_with_the_reason() {
        let nodes = [node(1, "api", true, None), node(2, "rhodes", true, None)];
        let d = compute_with(&nodes, "reserved = [\"api\"]\n");
        assert_eq!(d.entries.len(), 1);
        assert_eq!(d.entries[0].name, "rhodes");
        assert_eq!(d.skipped.len(), 1);
        assert!(
            d.skipped[0].reason.contains("routes.reserved"),
            "{:?}",
            d.skipped
        );
    }

    #[test]
    fn the_lookup_value_of_a_target_reads_back_the_same() {
        for t in [Target::Dial("[fd7a::1]:80".into()), Target::Offline] {
            assert_eq!(Target::from_lookup(t.as_lookup()), t);
        }
    }
}
