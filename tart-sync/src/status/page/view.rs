//! What the node table shows, computed once for the page and for live
//! updates ([`crate::status::events`]): which TARTs a filter and a page
//! select ([`Filter`], [`select`]), the counts per state ([`Counts`]) and
//! one [`Row`] per TART (serialized as JSON in live updates; `app.js` draws
//! it like the page does).

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::bars::{self, Bar};
use super::PAGE_SIZE;
use crate::desired::NodeState;
use crate::health::{Health, ProbeResult, Segment, ServiceState};
use crate::status::report::NodeReport;
use crate::status::text::{iso, one_line};

/// Which TARTs the table lists (`?state=`): all, or those in one tailnet
/// state (headscale's view) or one service state (the probes' view).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Filter {
    /// Every TART.
    #[default]
    All,
    /// Online in headscale.
    Online,
    /// Offline, still proxied.
    Grace,
    /// Offline, not proxied.
    Offline,
    /// The probe got an answer.
    Up,
    /// The probe failed.
    Down,
    /// Not probed.
    Unknown,
}

impl Filter {
    /// Every filter, in the order the page lists them.
    pub const ALL: [Filter; 7] = [
        Filter::All,
        Filter::Online,
        Filter::Grace,
        Filter::Offline,
        Filter::Up,
        Filter::Down,
        Filter::Unknown,
    ];

    /// The query value (`all`, `online`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Filter::All => "all",
            Filter::Online => "online",
            Filter::Grace => "grace",
            Filter::Offline => "offline",
            Filter::Up => "up",
            Filter::Down => "down",
            Filter::Unknown => "unknown",
        }
    }

    /// The link's label.
    pub fn label(self) -> &'static str {
        match self {
            Filter::All => "All",
            Filter::Online => "Online",
            Filter::Grace => "In grace",
            Filter::Offline => "Offline",
            Filter::Up => "Up",
            Filter::Down => "Down",
            Filter::Unknown => "Not probed",
        }
    }

    /// Whether a TART in `tailnet` and `service` state passes.
    pub fn matches(self, tailnet: NodeState, service: ServiceState) -> bool {
        match self {
            Filter::All => true,
            Filter::Online => tailnet == NodeState::Online,
            Filter::Grace => tailnet == NodeState::Grace,
            Filter::Offline => tailnet == NodeState::Offline,
            Filter::Up => service == ServiceState::Up,
            Filter::Down => service == ServiceState::Down,
            Filter::Unknown => service == ServiceState::Unknown,
        }
    }
}

/// How many TARTs are in each state (the whole fleet, not one page).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// Every routed TART.
    pub all: usize,
    /// Online in headscale.
    pub online: usize,
    /// In grace.
    pub grace: usize,
    /// Offline.
    pub offline: usize,
    /// Probed up.
    pub up: usize,
    /// Probed down.
    pub down: usize,
    /// Not probed.
    pub unknown: usize,
}

impl Counts {
    /// The count a filter link shows.
    pub fn of(&self, f: Filter) -> usize {
        match f {
            Filter::All => self.all,
            Filter::Online => self.online,
            Filter::Grace => self.grace,
            Filter::Offline => self.offline,
            Filter::Up => self.up,
            Filter::Down => self.down,
            Filter::Unknown => self.unknown,
        }
    }
}

/// Which page of the filtered list is shown: page `number` (1-based) of
/// `pages`, items `start..end` of `total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Paging {
    /// This page (1-based).
    pub number: usize,
    /// Pages in all (at least 1).
    pub pages: usize,
    /// First item (0-based).
    pub start: usize,
    /// One past the last item.
    pub end: usize,
}

impl Paging {
    /// Page `asked` (1-based; out of range means the nearest page) of `total` items.
    pub fn new(asked: usize, total: usize) -> Paging {
        let pages = total.div_ceil(PAGE_SIZE).max(1);
        let number = asked.clamp(1, pages);
        let start = (number - 1).saturating_mul(PAGE_SIZE).min(total);
        let end = start.saturating_add(PAGE_SIZE).min(total);
        Paging {
            number,
            pages,
            start,
            end,
        }
    }
}

/// One page of TARTs that pass `filter`, the counts over all of them, the
/// paging; each node with its latest probe.
pub struct Selection<'a> {
    /// The nodes shown, in the report's order (by name), with their probe.
    pub shown: Vec<(&'a NodeReport, Option<ProbeResult>)>,
    /// Counts over every node.
    pub counts: Counts,
    /// The page among the filtered nodes.
    pub paging: Paging,
    /// Nodes that pass the filter.
    pub matching: usize,
}

/// Page `page` of the nodes that pass `filter`.
pub fn select<'a>(
    nodes: &'a [NodeReport],
    health: &Health,
    filter: Filter,
    page: usize,
) -> Selection<'a> {
    health.read_probes(|probes| select_in(nodes, probes, filter, page))
}

fn select_in<'a>(
    nodes: &'a [NodeReport],
    probes: &HashMap<String, ProbeResult>,
    filter: Filter,
    page: usize,
) -> Selection<'a> {
    let mut counts = Counts::default();
    let mut matching: Vec<&NodeReport> = Vec::new();
    for n in nodes {
        let service = probes
            .get(&n.name)
            .map_or(ServiceState::Unknown, |p| p.state);
        counts.all += 1;
        match n.state {
            NodeState::Online => counts.online += 1,
            NodeState::Grace => counts.grace += 1,
            NodeState::Offline => counts.offline += 1,
        }
        match service {
            ServiceState::Up => counts.up += 1,
            ServiceState::Down => counts.down += 1,
            ServiceState::Unknown => counts.unknown += 1,
        }
        if filter.matches(n.state, service) {
            matching.push(n);
        }
    }
    let paging = Paging::new(page, matching.len());
    let shown = matching
        .get(paging.start..paging.end)
        .unwrap_or_default()
        .iter()
        .map(|n| (*n, probes.get(&n.name).cloned()))
        .collect();
    Selection {
        shown,
        counts,
        paging,
        matching: matching.len(),
    }
}

/// The history window of a bar ending at `now`.
pub fn window(now: OffsetDateTime) -> (OffsetDateTime, OffsetDateTime) {
    (now - time::Duration::hours(24), now)
}

/// One TART's row, as the page shows it and live updates send it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Row {
    /// Its name (the URL's label).
    pub name: String,
    /// headscale's node id.
    pub node_id: u64,
    /// headscale's user.
    pub user: String,
    /// Its public URL.
    pub url: String,
    /// The address Caddy dials.
    pub upstream: String,
    /// headscale's view.
    pub tailnet: NodeState,
    /// The probes' view.
    pub service: ServiceState,
    /// The last probe's HTTP status.
    pub http_status: Option<u16>,
    /// The last probe's latency in milliseconds (0.1 ms steps).
    pub latency_ms: Option<f64>,
    /// What [`Row::since`] is the start of: `offline`, `down`, `up`, `online`.
    pub since_what: &'static str,
    /// When the state shown last changed (RFC 3339), if known.
    pub since: Option<String>,
    /// When the grace ends, for a TART in grace.
    pub grace_until: Option<String>,
    /// The last probe's error, on one line.
    pub error: Option<String>,
    /// The 24-hour history.
    pub history: Bar,
}

impl Row {
    /// The row of `n`, with its latest probe and its history in the window ending at `now`.
    pub fn new(
        n: &NodeReport,
        probe: Option<&ProbeResult>,
        history: &[Segment],
        now: OffsetDateTime,
    ) -> Row {
        let (from, to) = window(now);
        let service = probe.map_or(ServiceState::Unknown, |p| p.state);
        let (since_what, since) = match (n.state, probe) {
            (NodeState::Offline | NodeState::Grace, _) => ("offline", n.offline_since),
            (NodeState::Online, Some(p)) if p.state != ServiceState::Unknown => {
                (p.state.as_str(), Some(p.since))
            }
            (NodeState::Online, _) => ("online", online_since(history)),
        };
        Row {
            name: n.name.clone(),
            node_id: n.node_id,
            user: n.user.clone(),
            url: n.url.clone(),
            upstream: n.upstream.clone(),
            tailnet: n.state,
            service,
            http_status: probe.and_then(|p| p.http_status),
            latency_ms: probe
                .and_then(|p| p.latency)
                .map(|d| (d.as_secs_f64() * 10_000.0).round() / 10.0),
            since_what,
            since: since.map(iso),
            grace_until: match n.state {
                NodeState::Grace => n.grace_until.map(iso),
                _ => None,
            },
            error: probe
                .filter(|p| p.state == ServiceState::Down)
                .and_then(|p| p.error.as_deref())
                .map(|e| one_line(e, 200)),
            history: bars::bar(history, from, to),
        }
    }
}

/// The start of the last run of history segments in which headscale saw the TART online.
fn online_since(history: &[Segment]) -> Option<OffsetDateTime> {
    let mut since = None;
    for s in history.iter().rev() {
        if s.tailnet != Some(NodeState::Online) {
            break;
        }
        since = Some(s.from);
    }
    since
}

/// `0.4 ms`, `12 ms`, `1,250 ms` → `1.25 s`.
pub fn latency_text(ms: f64) -> String {
    if ms < 10.0 {
        format!("{ms:.1} ms")
    } else if ms < 1000.0 {
        format!("{ms:.0} ms")
    } else {
        format!("{:.2} s", ms / 1000.0)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::time::Duration;

    use time::macros::datetime;

    use super::*;

    const NOW: OffsetDateTime = datetime!(2026-07-10 08:15:00 UTC);

    fn node(name: &str, state: NodeState) -> NodeReport {
        NodeReport {
            name: name.into(),
            node_id: 1,
            user: "u".into(),
            url: format!("https://t.example/{name}/"),
            upstream: "100.64.0.1:80".into(),
            state,
            offline_since: (state != NodeState::Online).then_some(NOW - time::Duration::minutes(3)),
            grace_until: (state == NodeState::Grace).then_some(NOW + time::Duration::seconds(40)),
            upstream_health: None,
            probe: None,
            history: None,
        }
    }

    fn probe(state: ServiceState) -> ProbeResult {
        ProbeResult {
            state,
            http_status: (state == ServiceState::Up).then_some(200),
            latency: Some(Duration::from_micros(12_340)),
            checked: NOW,
            since: NOW - time::Duration::minutes(7),
            error: (state == ServiceState::Down).then(|| "connect: connection refused".into()),
        }
    }

    #[test]
    fn filters_combine_with_paging_and_count_everything() {
        let nodes: Vec<NodeReport> = (0..1200)
            .map(|i| {
                let state = match i % 3 {
                    0 => NodeState::Online,
                    1 => NodeState::Grace,
                    _ => NodeState::Offline,
                };
                node(&format!("n{i:04}"), state)
            })
            .collect();
        let mut probes = HashMap::new();
        for n in nodes.iter().step_by(2) {
            probes.insert(n.name.clone(), probe(ServiceState::Down));
        }
        let s = select_in(&nodes, &probes, Filter::Online, 1);
        assert_eq!(s.matching, 400);
        assert_eq!(s.paging.pages, 1);
        assert!(s.shown.iter().all(|(n, _)| n.state == NodeState::Online));
        assert_eq!(
            s.counts,
            Counts {
                all: 1200,
                online: 400,
                grace: 400,
                offline: 400,
                up: 0,
                down: 600,
                unknown: 600
            }
        );
        let down2 = select_in(&nodes, &probes, Filter::Down, 2);
        assert_eq!(
            (down2.matching, down2.paging.pages, down2.shown.len()),
            (600, 2, 100)
        );
        assert_eq!(down2.shown[0].0.name, "n1000");
        assert!(down2
            .shown
            .iter()
            .all(|(_, p)| p.as_ref().unwrap().state == ServiceState::Down));
        let all = select_in(&nodes, &probes, Filter::All, 3);
        assert_eq!((all.paging.number, all.shown.len()), (3, 200));
        let none = select_in(&nodes, &probes, Filter::Up, 5);
        assert_eq!(
            (none.matching, none.paging.number, none.shown.len()),
            (0, 1, 0)
        );
    }

    #[test]
    fn rows_say_since_when() {
        let up = Row::new(
            &node("a", NodeState::Online),
            Some(&probe(ServiceState::Up)),
            &[],
            NOW,
        );
        assert_eq!(
            (up.since_what, up.since.as_deref()),
            ("up", Some("2026-07-10T08:08:00Z"))
        );
        assert_eq!(
            (up.http_status, up.latency_ms, up.error),
            (Some(200), Some(12.3), None)
        );
        let down = Row::new(
            &node("a", NodeState::Online),
            Some(&probe(ServiceState::Down)),
            &[],
            NOW,
        );
        assert_eq!(down.since_what, "down");
        assert_eq!(down.error.as_deref(), Some("connect: connection refused"));
        let grace = Row::new(
            &node("a", NodeState::Grace),
            Some(&probe(ServiceState::Up)),
            &[],
            NOW,
        );
        assert_eq!(
            (grace.since_what, grace.since.as_deref()),
            ("offline", Some("2026-07-10T08:12:00Z"))
        );
        assert_eq!(grace.grace_until.as_deref(), Some("2026-07-10T08:15:40Z"));
        // Online, not probed: from the history, if any.
        let seg = |h: i64, tailnet| Segment {
            from: NOW - time::Duration::hours(h),
            to: NOW - time::Duration::hours(h - 1),
            tailnet,
            service: ServiceState::Unknown,
        };
        let history = [
            seg(3, Some(NodeState::Offline)),
            seg(2, Some(NodeState::Online)),
            seg(1, Some(NodeState::Online)),
        ];
        let online = Row::new(&node("a", NodeState::Online), None, &history, NOW);
        assert_eq!(
            (online.since_what, online.since.as_deref()),
            ("online", Some("2026-07-10T06:15:00Z"))
        );
        assert_eq!(
            Row::new(&node("a", NodeState::Online), None, &[], NOW).since,
            None
        );
    }

    #[test]
    fn latency_reads_well() {
        assert_eq!(latency_text(0.4), "0.4 ms");
        assert_eq!(latency_text(12.3), "12 ms");
        assert_eq!(latency_text(1250.0), "1.25 s");
    }
}
