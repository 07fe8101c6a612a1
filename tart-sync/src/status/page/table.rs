//! The TART table: filter links with counts, paging links, one row per TART.
//! `app.js` builds the same markup from a [`Row`] for live updates; keep
//! the two alike.

use maud::{html, Markup};
use time::OffsetDateTime;

use super::badge;
use super::bars;
use super::view::{self, latency_text, Counts, Filter, Paging, Row};
use crate::desired::NodeState;
use crate::health::{Health, ServiceState};
use crate::status::report::Report;
use crate::status::text::relative;

/// `?state=down&page=2` (the parts that are not the default).
fn href(filter: Filter, page: usize) -> String {
    match (filter, page) {
        (Filter::All, 1) => "?".into(),
        (Filter::All, p) => format!("?page={p}"),
        (f, 1) => format!("?state={}", f.as_str()),
        (f, p) => format!("?state={}&page={p}", f.as_str()),
    }
}

/// The table section: heading with counts, filters, paging, rows.
pub(super) fn nodes(
    r: &Report,
    health: &Health,
    now: OffsetDateTime,
    filter: Filter,
    page: usize,
) -> Markup {
    let sel = view::select(&r.nodes, health, filter, page);
    let (from, to) = view::window(now);
    html! {
        section #nodes data-rev=(r.generation) data-state=(filter.as_str()) data-page=(sel.paging.number) {
            h2 {
                "Telescopes "
                span.muted #counts {
                    (sel.counts.all) " · " (sel.counts.online) " online · "
                    (sel.counts.grace) " in grace · " (sel.counts.offline) " offline · "
                    (sel.counts.down) " down"
                }
            }
            @if r.nodes.is_empty() {
                p.empty {
                    @if r.polled { "No node passes the filters." }
                    @else { "headscale has not been polled successfully yet." }
                }
            } @else {
                (filters(filter, &sel.counts))
                (page_links(filter, sel.paging, sel.matching))
                @if sel.shown.is_empty() {
                    p.empty #no-match { "No TART is " (filter.label().to_lowercase()) " now." }
                }
                div.scroll { table.stack.tarts {
                    thead { tr {
                        th { "Name" } th { "Tailnet" } th { "Service" }
                        th.num { "Latency" } th { "Since" }
                        th title="state over the last 24 hours, oldest on the left" { "Last 24 h" }
                        th { "URL · upstream" }
                    } }
                    tbody #rows {
                        @for (n, probe) in &sel.shown {
                            (row(&Row::new(n, probe.as_ref(), &health.segments(&n.name, from, to), now), now))
                        }
                    }
                } }
                (page_links(filter, sel.paging, sel.matching))
            }
        }
    }
}

/// "All 12 · Online 9 · …": one link per filter, the current one marked.
fn filters(current: Filter, counts: &Counts) -> Markup {
    html! {
        nav.filters aria-label="Filter by state" {
            @for f in Filter::ALL {
                @let count = counts.of(f);
                a href=(href(f, 1)) class={ "filter " (f.as_str()) }
                    aria-current=[(f == current).then_some("page")] {
                    (f.label()) " " span.count #{ "count-" (f.as_str()) } { (count) }
                }
            }
        }
    }
}

/// "Page 2 of 3: TARTs 501–1000 of 1234 · first · prev · next · last", when there is more than one page.
fn page_links(filter: Filter, p: Paging, matching: usize) -> Markup {
    let link = |label: &str, to: usize| {
        html! {
            @if to != p.number { " · " a href=(href(filter, to)) rel=(label) { (label) } }
        }
    };
    html! {
        @if p.pages > 1 {
            p.pages id="pages" data-page=(p.number) data-pages=(p.pages) {
                "Page " (p.number) " of " (p.pages) ": TARTs " (p.start + 1) "–" (p.end) " of " (matching)
                (link("first", 1))
                (link("prev", p.number.saturating_sub(1).max(1)))
                (link("next", (p.number + 1).min(p.pages)))
                (link("last", p.pages))
                " · every TART: " a href="/api/status" { "JSON" } " (paged with ?offset=&limit=)"
            }
        }
    }
}

fn tailnet_label(s: NodeState) -> &'static str {
    match s {
        NodeState::Online => "online",
        NodeState::Grace => "in grace",
        NodeState::Offline => "offline",
    }
}

fn service_label(s: ServiceState) -> &'static str {
    match s {
        ServiceState::Up => "up",
        ServiceState::Down => "down",
        ServiceState::Unknown => "not probed",
    }
}

/// A `<time>` for an RFC 3339 string, relative to `now`.
fn time_at(at: &str, now: OffsetDateTime) -> Markup {
    let rel = time::OffsetDateTime::parse(at, &time::format_description::well_known::Rfc3339)
        .map(|t| relative(t, now))
        .unwrap_or_else(|_| at.to_string());
    html! { time datetime=(at) title=(at) { (rel) } }
}

/// One TART's row.
pub(super) fn row(r: &Row, now: OffsetDateTime) -> Markup {
    let service_title = match (r.service, r.http_status) {
        (ServiceState::Up, Some(code)) => format!("HTTP {code}"),
        (ServiceState::Down, _) => r.error.clone().unwrap_or_else(|| "probe failed".into()),
        (ServiceState::Unknown, _) => "not probed (yet)".into(),
        (ServiceState::Up, None) => "answered".into(),
    };
    html! {
        tr.node #{ "tart-" (r.name) } data-name=(r.name) data-state=(r.tailnet.as_str()) data-node-id=(r.node_id) data-service=(r.service.as_str()) {
            td.name data-label="Name" title={ "node " (r.node_id) ", user " (r.user) } { (r.name) }
            td.tailnet data-label="Tailnet" { (badge(r.tailnet.as_str(), tailnet_label(r.tailnet))) }
            td.service data-label="Service" {
                span { span class={ "badge " (r.service.as_str()) } title=(service_title) { (service_label(r.service)) } }
                @if let Some(e) = &r.error { div.error.small { (e) } }
            }
            td.num.latency data-label="Latency" {
                @match r.latency_ms {
                    Some(ms) => (latency_text(ms)),
                    None => span.muted { "—" },
                }
            }
            td.since data-label="Since" {
                span {
                    @match &r.since {
                        Some(at) => { (r.since_what) " " (time_at(at, now)) }
                        None => span.muted { "—" },
                    }
                    @if let Some(until) = &r.grace_until {
                        " · grace ends " (time_at(until, now))
                    }
                }
            }
            td.hist data-label="Last 24 h" { (bars::svg(&r.history)) }
            td.url data-label="URL" {
                span { a href=(r.url) { (r.url) } " " code.muted { (r.upstream) } }
            }
        }
    }
}
