//! The HTML page at `/`: a maud template (every dynamic string is escaped by
//! maud), one inline stylesheet, no JavaScript, no external assets; it
//! reloads itself every [`REFRESH_SECONDS`]. It shows at most
//! [`PAGE_SIZE`] nodes (`?page=2`, … for the others, with links) and
//! [`PAGE_SIZE`] skipped nodes, so its size stays bounded (0.5 MB at
//! 100,000 nodes plus 100,000 skipped ones, against 101 MB when it listed
//! them all).

use maud::{html, Markup, PreEscaped};
use time::OffsetDateTime;

use super::report::{NodeReport, Report, MAX_LIMIT};
use super::text::{iso, one_line, relative};
use crate::context::{CaddyStatus, LastOutcome};
use crate::desired::NodeState;

/// The page reloads itself this often (seconds).
const REFRESH_SECONDS: u32 = 5;

/// The only stylesheet, inline (the CSP allows nothing else).
const STYLE: &str = include_str!("page.css");

/// Nodes (and skipped nodes) shown on one page.
pub const PAGE_SIZE: usize = 500;

/// Which nodes one page shows: page `number` (1-based) of `pages`.
#[derive(Debug, Clone, Copy)]
struct Paging {
    number: usize,
    pages: usize,
    start: usize,
    end: usize,
}

impl Paging {
    /// Page `asked` (1-based; out of range means the nearest page) of `total` nodes.
    fn new(asked: usize, total: usize) -> Paging {
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

/// Page `page` (1-based, clamped) of the page for `r`, times relative to `now`.
pub(super) fn render(r: &Report, now: OffsetDateTime, page: usize) -> Markup {
    let paging = Paging::new(page, r.nodes.len());
    html! {
        (PreEscaped("<!doctype html>\n"))
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta http-equiv="refresh" content=(REFRESH_SECONDS);
                meta name="robots" content="noindex";
                title { "tart-sync · " (r.domain) }
                style { (PreEscaped(STYLE)) }
            }
            body {
                header {
                    h1 { "TART routes on " (r.domain) }
                    p.meta {
                        "tart-sync " (r.version) " · " (r.mode) " mode · started " (when(r.started, now))
                        " · updated " time datetime=(iso(now)) { (iso(now)) }
                    }
                }
                (banner(r))
                main {
                    (nodes(r, now, paging))
                    (skipped(r))
                    (caddies(r, now))
                    (headscale(r, now))
                    @if let Some(dns) = &r.dns { (dns_responder(dns, now)) }
                }
                footer {
                    "Refreshes every " (REFRESH_SECONDS) " s · "
                    a href="/api/status" { "JSON" } " · "
                    a href="/metrics" { "metrics" } " · "
                    a href="/readyz" { "readiness" }
                }
            }
        }
    }
}

/// A `<time>` element: relative text, the ISO time in `datetime` and `title`.
fn when(t: OffsetDateTime, now: OffsetDateTime) -> Markup {
    let iso = iso(t);
    html! { time datetime=(iso) title=(iso) { (relative(t, now)) } }
}

fn maybe_when(t: Option<OffsetDateTime>, now: OffsetDateTime, none: &str) -> Markup {
    match t {
        Some(t) => when(t, now),
        None => html! { span.muted { (none) } },
    }
}

fn badge(class: &str, label: &str) -> Markup {
    html! { span class={ "badge " (class) } { (label) } }
}

fn error_text(error: Option<&str>) -> Markup {
    html! {
        @match error {
            Some(e) => span.error { (e) },
            None => span.muted { "—" },
        }
    }
}

/// A summary at the top: everything fine, or what is wrong.
fn banner(r: &Report) -> Markup {
    let mut problems = Vec::new();
    if !r.headscale.reachable {
        let why = r
            .headscale
            .last_error
            .as_deref()
            .unwrap_or("not polled yet");
        problems.push(html! { "headscale: " (one_line(why, 300)) });
    }
    for c in &r.caddies {
        match (&c.last_error, c.last_sync) {
            (Some(err), _) => {
                problems.push(html! { "Caddy " code { (c.address) } ": " (one_line(err, 300)) });
            }
            (None, None) => {
                problems.push(html! { "Caddy " code { (c.address) } ": not synced yet" })
            }
            (None, Some(_)) => {}
        }
    }
    html! {
        @if problems.is_empty() {
            div class="banner ok" id="summary" data-ok="true" { "All in sync." }
        } @else {
            div class="banner bad" id="summary" data-ok="false" {
                "Needs attention:"
                ul { @for p in problems { li { (p) } } }
            }
        }
    }
}

/// "Nodes 501–1,000 of 2,345 · first · previous · next · last", when there is more than one page.
fn page_links(p: Paging) -> Markup {
    let link = |label: &str, to: usize| {
        html! {
            @if to != p.number { " · " a href={ "?page=" (to) } rel=(label) { (label) } }
        }
    };
    html! {
        @if p.pages > 1 {
            p.pages id="pages" data-page=(p.number) data-pages=(p.pages) {
                "Page " (p.number) " of " (p.pages) ": nodes " (p.start + 1) "–" (p.end)
                (link("first", 1))
                (link("prev", p.number.saturating_sub(1).max(1)))
                (link("next", (p.number + 1).min(p.pages)))
                (link("last", p.pages))
                " · every node: " a href="/api/status" { "JSON" } " (paged with ?offset=&limit=)"
            }
        }
    }
}

fn nodes(r: &Report, now: OffsetDateTime, paging: Paging) -> Markup {
    let shown = r.nodes.get(paging.start..paging.end).unwrap_or_default();
    let count = |s: NodeState| r.nodes.iter().filter(|n| n.state == s).count();
    let no_health = if r.health_known {
        "Caddy lists no upstream with this address"
    } else {
        "no Caddy answered /reverse_proxy/upstreams"
    };
    html! {
        section id="nodes" {
            h2 {
                "Telescopes "
                span.muted {
                    (r.nodes.len()) " · " (count(NodeState::Online)) " online · "
                    (count(NodeState::Grace)) " in grace · " (count(NodeState::Offline)) " offline"
                }
            }
            @if r.nodes.is_empty() {
                p.empty {
                    @if r.polled { "No node passes the filters." }
                    @else { "headscale has not been polled successfully yet." }
                }
            } @else {
                (page_links(paging))
                div.scroll { table.stack {
                    thead { tr {
                        th { "Name" } th { "URL" } th { "Upstream" } th { "State" } th { "Since" }
                        th title="requests in flight, as Caddy reports" { "In flight" }
                        th title="recent failures counted by Caddy's passive health checks" { "Fails" }
                    } }
                    tbody { @for n in shown { (node_row(n, no_health, now)) } }
                } }
                (page_links(paging))
            }
        }
    }
}

fn node_row(n: &NodeReport, no_health: &str, now: OffsetDateTime) -> Markup {
    let state = n.state.as_str();
    let label = match n.state {
        NodeState::Online => "online",
        NodeState::Grace => "in grace",
        NodeState::Offline => "offline",
    };
    html! {
        tr.node data-name=(n.name) data-state=(state) data-node-id=(n.node_id) {
            td.name data-label="Name" title={ "node " (n.node_id) ", user " (n.user) } { (n.name) }
            td data-label="URL" { a href=(n.url) { (n.url) } }
            td data-label="Upstream" { code { (n.upstream) } }
            td data-label="State" { (badge(state, label)) }
            td data-label="Since" {
                @match n.state {
                    NodeState::Online => span.muted { "—" },
                    NodeState::Grace => {
                        "offline " (maybe_when(n.offline_since, now, "—"))
                        " · grace ends " (maybe_when(n.grace_until, now, "—"))
                    }
                    NodeState::Offline => (maybe_when(n.offline_since, now, "never seen")),
                }
            }
            @if let Some(u) = n.upstream_health {
                td.num data-label="In flight" { (u.num_requests) }
                td.num data-label="Fails" {
                    @if u.fails > 0 { span.fails { (u.fails) } } @else { (u.fails) }
                }
            } @else {
                td.num data-label="In flight" { span.muted title=(no_health) { "—" } }
                td.num data-label="Fails" { span.muted title=(no_health) { "—" } }
            }
        }
    }
}

fn skipped(r: &Report) -> Markup {
    let what = if r.skipped.len() == 1 {
        "node passes the filters but gets"
    } else {
        "nodes pass the filters but get"
    };
    html! {
        @if !r.skipped.is_empty() {
            section id="skipped" {
                h2 { "Without a URL " span.muted { (r.skipped.len()) " " (what) " no route" } }
                div.scroll { table.stack {
                    thead { tr { th { "Node" } th { "Name" } th { "Reason" } } }
                    tbody { @for s in r.skipped.iter().take(PAGE_SIZE) {
                        tr.skipped data-node-id=(s.node_id) {
                            td data-label="Node" { (s.node_id) }
                            td data-label="Name" { (s.name) }
                            td data-label="Reason" { (s.reason) }
                        }
                    } }
                } }
                @if r.skipped.len() > PAGE_SIZE {
                    p.muted id="skipped-more" {
                        "The first " (PAGE_SIZE) " are shown; "
                        a href="/api/status" { "JSON" } " lists " (MAX_LIMIT) "."
                    }
                }
            }
        }
    }
}

fn caddies(r: &Report, now: OffsetDateTime) -> Markup {
    html! {
        section id="caddies" {
            h2 { "Caddy" }
            div.scroll { table.stack {
                thead { tr {
                    th { "Admin address" } th { "Reachable" } th { "Last sync" } th { "Last outcome" }
                    th { "Routes" }
                    th title="WebSockets stay open across config reloads (stream_close_delay)" { "WebSockets kept" }
                    th { "Last error" }
                } }
                tbody { @for c in &r.caddies { (caddy_row(c, now)) } }
            } }
            @if let Some(t) = r.tart_upstream {
                p id="tart-upstream" data-in-flight=(t.num_requests) data-fails=(t.fails) {
                    "Through tart-sync's routes, as Caddy reports it: " b { (t.num_requests) }
                    " requests in flight, " b { (t.fails) }
                    " recent failures (Caddy lists all TARTs as one dynamic upstream)."
                }
            }
        }
    }
}

fn caddy_row(c: &CaddyStatus, now: OffsetDateTime) -> Markup {
    let reachable = match (c.last_outcome, c.reachable) {
        (LastOutcome::Pending, _) => badge("warn", "not tried yet"),
        (_, true) => badge("ok", "reachable"),
        (_, false) => badge("bad", "unreachable"),
    };
    let websockets = match c.stream_close_delay {
        Some(true) => "yes",
        Some(false) => "no (Caddy too old)",
        None => "unknown yet",
    };
    let outcome = c.last_outcome.as_str();
    html! {
        tr.caddy data-address=(c.address) data-reachable=(c.reachable.to_string()) data-outcome=(outcome) {
            td data-label="Admin address" { code { (c.address) } }
            td data-label="Reachable" { (reachable) }
            td data-label="Last sync" { (maybe_when(c.last_sync, now, "never")) }
            td data-label="Last outcome" { (outcome) }
            td.num data-label="Routes" { (c.routes) }
            td data-label="WebSockets kept" { (websockets) }
            td data-label="Last error" { (error_text(c.last_error.as_deref())) }
        }
    }
}

fn headscale(r: &Report, now: OffsetDateTime) -> Markup {
    let hs = &r.headscale;
    let reachable = match (
        hs.reachable,
        hs.last_success.is_some() || hs.last_error.is_some(),
    ) {
        (true, _) => badge("ok", "reachable"),
        (false, true) => badge("bad", "unreachable"),
        (false, false) => badge("warn", "not polled yet"),
    };
    html! {
        section id="headscale" data-reachable=(hs.reachable.to_string()) {
            h2 { "headscale" }
            table.kv { tbody {
                tr { th { "Reachable" } td { (reachable) } }
                tr { th { "Last success" } td { (maybe_when(hs.last_success, now, "never")) } }
                tr { th { "Nodes seen" } td { (hs.nodes_seen) } }
                tr { th { "Last error" } td { (error_text(hs.last_error.as_deref())) } }
            } }
        }
    }
}

/// The DNS responder's block (dns mode only): where it listens, names
/// answered, query rate, last query, and queries by outcome.
fn dns_responder(d: &super::report::DnsReport, now: OffsetDateTime) -> Markup {
    let st = &d.status;
    let listening = match (&st.listen, &st.error) {
        (_, Some(e)) => html! { (badge("bad", "not listening")) " " (error_text(Some(e))) },
        (Some(addr), None) => html! { (badge("ok", "listening")) " " code { "udp/" (addr) } },
        (None, None) => badge("warn", "starting"),
    };
    let count = |label: &str| {
        st.stats
            .queries
            .iter()
            .find(|(l, _)| l == label)
            .map_or(0, |(_, n)| *n)
    };
    html! {
        section id="dns" data-resolve=(d.resolve) {
            h2 { "DNS responder" }
            p.muted { "routes.resolve = dns: Caddy looks each TART up here; online/offline changes and moves are DNS answers, not config writes." }
            table.kv { tbody {
                tr { th { "Zone" } td { code { (st.zone) } } }
                tr { th { "Listening" } td { (listening) } }
                tr { th { "Names answered" } td { @match st.names { Some(n) => (n), None => span.muted { "none yet (before the first poll)" } } } }
                tr { th { "Query rate" } td { (format!("{:.1}", st.stats.rate)) " /s" } }
                tr { th { "Last query" } td { (maybe_when(st.stats.last_query, now, "never")) } }
                tr { th { "Queries" } td {
                    (count("answered")) " answered · " (count("nodata")) " no data · "
                    (count("nxdomain")) " unknown name · " (count("refused")) " refused (outside the zone) · "
                    (count("limited")) " rate-limited · " (count("invalid") + count("dropped")) " invalid · "
                    (count("not_ready")) " before the first poll"
                } }
            } }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::collections::HashMap;

    use time::macros::datetime;

    use super::*;
    use crate::context::Context;
    use crate::status::fixtures::{entry, fleet_state, settings, HOSTILE};
    use crate::status::report::{self, Health, UpstreamHealth};

    const NOW: OffsetDateTime = datetime!(2026-07-10 08:15:00 UTC);

    /// The fleet at [`NOW`], started 15 min before, rhodes with Caddy's health.
    fn fleet_page() -> String {
        let ctx = Context::new(settings("127.0.0.1:1", "path"));
        let health: Health = Some(HashMap::from([(
            "100.64.0.12:80".to_string(),
            UpstreamHealth {
                num_requests: 2,
                fails: 1,
            },
        )]));
        let mut report = report::build(&ctx, fleet_state(&ctx, NOW), &health);
        report.started = NOW - time::Duration::minutes(15);
        report.version = "0.0.0-test";
        render(&report, NOW, 1).into_string()
    }

    /// The `<tr …>` of the node called `name`.
    fn row<'a>(html: &'a str, name: &str) -> &'a str {
        let start = &html[html.find(&format!("data-name=\"{name}\"")).unwrap()..];
        &start[..start.find("</tr>").unwrap()]
    }

    #[test]
    fn page_for_a_fixed_state() {
        let html = fleet_page();
        // One element per line, so that a change shows as a readable diff.
        insta::assert_snapshot!(html.replace("><", ">\n<"));
    }

    #[test]
    fn page_lists_nodes_with_states_urls_and_times() {
        let html = fleet_page();

        assert!(html.starts_with("<!doctype html>"));
        assert!(html.contains("<meta http-equiv=\"refresh\" content=\"5\">"));
        assert!(html.contains("<meta name=\"viewport\""));
        assert!(!html.contains("<script"), "no scripts at all");
        assert!(
            !html.contains("src=") && !html.contains("<link"),
            "no external assets"
        );

        let order: Vec<_> = ["karoo", "meerkat", "rhodes"]
            .iter()
            .map(|n| html.find(&format!("<tr class=\"node\" data-name=\"{n}\"")))
            .collect();
        assert!(order.iter().all(Option::is_some), "{html}");
        assert!(order.is_sorted(), "sorted by name");
        assert!(html.contains("data-name=\"karoo\" data-state=\"grace\" data-node-id=\"13\""));
        assert!(html.contains("data-name=\"meerkat\" data-state=\"offline\""));
        assert!(html.contains("data-name=\"rhodes\" data-state=\"online\""));
        assert!(html.contains(
            "<a href=\"https://tart.example.org/rhodes/\">https://tart.example.org/rhodes/</a>"
        ));
        assert!(html.contains("<code>100.64.0.12:80</code>"));
        // Colour-coded badges that also say it in words.
        assert!(html.contains("<span class=\"badge online\">online</span>"));
        assert!(html.contains("<span class=\"badge grace\">in grace</span>"));
        assert!(html.contains("<span class=\"badge offline\">offline</span>"));
        // Relative times with the ISO time in a title.
        assert!(html.contains(
            "<time datetime=\"2026-07-10T08:12:00Z\" title=\"2026-07-10T08:12:00Z\">3m ago</time>"
        ));
        assert!(html.contains("title=\"2026-07-10T08:15:40Z\">in 40s</time>"));
        // Health: rhodes has Caddy's numbers, the others a dash.
        let rhodes = row(&html, "rhodes");
        assert!(
            rhodes.contains("data-label=\"In flight\">2</td>"),
            "{rhodes}"
        );
        assert!(
            rhodes.contains("<span class=\"fails\">1</span>"),
            "{rhodes}"
        );
        let karoo = row(&html, "karoo");
        assert!(
            karoo.contains("Caddy lists no upstream with this address\">—</span>"),
            "{karoo}"
        );

        // Caddy and headscale sections.
        assert!(html.contains("<tr class=\"caddy\" data-address=\"127.0.0.1:1\" data-reachable=\"true\" data-outcome=\"unchanged\">"));
        assert!(html.contains("<section id=\"headscale\" data-reachable=\"true\">"));
        assert!(html.contains("id=\"summary\" data-ok=\"true\""));
        // The skipped node, in its own table.
        assert!(html.contains("<tr class=\"skipped\" data-node-id=\"14\">"));
    }

    #[test]
    fn host_mode_urls() {
        let ctx = Context::new(settings("127.0.0.1:1", "host"));
        let report = report::build(&ctx, fleet_state(&ctx, NOW), &None);
        let html = render(&report, NOW, 1).into_string();
        assert!(html.contains("href=\"https://rhodes.tart.example.org/\""));
        assert!(html.contains("no Caddy answered /reverse_proxy/upstreams"));
    }

    #[test]
    fn page_escapes_every_dynamic_string() {
        let ctx = Context::new(settings("127.0.0.1:1", "path"));
        let mut state = fleet_state(&ctx, NOW);
        let desired = std::sync::Arc::make_mut(state.desired.as_mut().unwrap());
        let mut evil = entry("x", 99, NodeState::Online, NOW);
        evil.name = format!("evil\"{HOSTILE}");
        evil.user = HOSTILE.into();
        evil.upstream = HOSTILE.into();
        desired.entries.push(evil);
        state.headscale.reachable = false;
        state.headscale.last_error = Some(HOSTILE.into());
        state.caddies[0].last_error = Some(HOSTILE.into());
        let html = render(&report::build(&ctx, state, &None), NOW, 1).into_string();

        assert!(!html.contains("<script"), "{html}");
        assert!(!html.contains("alert(\""), "quotes must be escaped");
        // maud escapes `&`, `<`, `>` and `"`; every attribute is double-quoted,
        // so a `'` cannot end one.
        assert!(html.contains("&lt;script&gt;alert(&quot;x&amp;y&quot;)&lt;/script&gt;'"));
        // The attribute stays one attribute.
        assert!(html.contains("data-name=\"evil&quot;&lt;script&gt;"));
        assert!(html.contains("title=\"node 99, user &lt;script&gt;alert(&quot;x&amp;y&quot;)"));
        assert!(html.contains("id=\"summary\" data-ok=\"false\""));
    }

    /// `n` online nodes `node000000`… and `n` skipped ones.
    fn big_report(ctx: &Context, n: usize) -> report::Report {
        let mut state = fleet_state(ctx, NOW);
        let desired = std::sync::Arc::make_mut(state.desired.as_mut().unwrap());
        let skipped = desired.skipped[0].clone();
        desired.entries = (0..n)
            .map(|i| entry(&format!("node{i:06}"), i as u64, NodeState::Online, NOW))
            .collect();
        desired.skipped = (0..n)
            .map(|i| crate::desired::Skipped {
                node_id: i as u64,
                ..skipped.clone()
            })
            .collect();
        report::build(ctx, state, &None)
    }

    #[test]
    fn page_size_is_bounded_at_100k_nodes() {
        let ctx = Context::new(settings("127.0.0.1:1", "path"));
        let report = big_report(&ctx, 100_000);
        let html = render(&report, NOW, 1).into_string();
        // 70 MB when every node was listed.
        assert!(html.len() < 1_000_000, "{} bytes", html.len());
        assert_eq!(html.matches("<tr class=\"node\"").count(), PAGE_SIZE);
        assert_eq!(html.matches("<tr class=\"skipped\"").count(), PAGE_SIZE);
        assert!(
            html.contains(">Telescopes <span class=\"muted\">100000 · 100000 online"),
            "says how many there are"
        );
        assert!(html.contains("Page 1 of 200: nodes 1–500"));
        assert!(html.contains("<a href=\"?page=2\" rel=\"next\">next</a>"));
        assert!(html.contains("<a href=\"?page=200\" rel=\"last\">last</a>"));
        assert!(!html.contains("rel=\"prev\""));
        assert!(html.contains("id=\"skipped-more\""));
        eprintln!("page 1 at 100,000 nodes: {} bytes", html.len());
    }

    #[test]
    fn pages_show_their_nodes() {
        let ctx = Context::new(settings("127.0.0.1:1", "path"));
        let report = big_report(&ctx, 1_234);
        let page = |n| render(&report, NOW, n).into_string();
        let html = page(2);
        assert!(html.contains("Page 2 of 3: nodes 501–1000"), "{html}");
        assert!(
            html.contains("data-name=\"node000500\"") && html.contains("data-name=\"node000999\"")
        );
        assert!(
            !html.contains("data-name=\"node000499\"")
                && !html.contains("data-name=\"node001000\"")
        );
        assert!(html.contains("<a href=\"?page=1\" rel=\"prev\">prev</a>"));
        let last = page(3);
        assert_eq!(last.matches("<tr class=\"node\"").count(), 234);
        assert!(!last.contains("rel=\"next\""));
        // Out of range: the nearest page.
        assert!(page(99).contains("Page 3 of 3"));
        assert!(page(0).contains("Page 1 of 3"));
        // One page: no links at all.
        let small = render(&big_report(&ctx, PAGE_SIZE), NOW, 1).into_string();
        assert!(!small.contains("id=\"pages\""));
        assert_eq!(small.matches("<tr class=\"node\"").count(), PAGE_SIZE);
    }

    #[test]
    fn empty_page_before_the_first_poll() {
        let ctx = Context::new(settings("127.0.0.1:1", "path"));
        let report = report::build(&ctx, ctx.snapshot(), &None);
        let html = render(&report, NOW, 1).into_string();
        assert!(!html.contains("<tr class=\"node\""), "{html}");
        assert!(html.contains("headscale has not been polled successfully yet."));
        assert!(html.contains("not tried yet"));
        assert!(html.contains("not polled yet"));
        assert!(html.contains("id=\"summary\" data-ok=\"false\""));
    }
}
