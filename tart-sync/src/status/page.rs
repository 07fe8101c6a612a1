//! The HTML page at `/`: a maud template (every dynamic string is escaped by
//! maud), one inline stylesheet, no JavaScript, no external assets; it
//! reloads itself every [`REFRESH_SECONDS`].

use maud::{html, Markup, PreEscaped};
use time::OffsetDateTime;

use super::report::{NodeReport, Report};
use super::text::{iso, one_line, relative};
use crate::context::{CaddyStatus, LastOutcome};
use crate::desired::NodeState;

/// The page reloads itself this often (seconds).
const REFRESH_SECONDS: u32 = 5;

/// The only stylesheet, inline (the CSP allows nothing else).
const STYLE: &str = include_str!("page.css");

/// The whole page for `r`, times relative to `now`.
pub(super) fn render(r: &Report, now: OffsetDateTime) -> Markup {
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
                    (nodes(r, now))
                    (skipped(r))
                    (caddies(r, now))
                    (headscale(r, now))
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

fn nodes(r: &Report, now: OffsetDateTime) -> Markup {
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
                div.scroll { table.stack {
                    thead { tr {
                        th { "Name" } th { "URL" } th { "Upstream" } th { "State" } th { "Since" }
                        th title="requests in flight, as Caddy reports" { "In flight" }
                        th title="recent failures counted by Caddy's passive health checks" { "Fails" }
                    } }
                    tbody { @for n in &r.nodes { (node_row(n, no_health, now)) } }
                } }
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
                    tbody { @for s in &r.skipped {
                        tr.skipped data-node-id=(s.node_id) {
                            td data-label="Node" { (s.node_id) }
                            td data-label="Name" { (s.name) }
                            td data-label="Reason" { (s.reason) }
                        }
                    } }
                } }
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
        render(&report, NOW).into_string()
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
        let html = render(&report, NOW).into_string();
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
        let html = render(&report::build(&ctx, state, &None), NOW).into_string();

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

    #[test]
    fn empty_page_before_the_first_poll() {
        let ctx = Context::new(settings("127.0.0.1:1", "path"));
        let report = report::build(&ctx, ctx.snapshot(), &None);
        let html = render(&report, NOW).into_string();
        assert!(!html.contains("<tr class=\"node\""), "{html}");
        assert!(html.contains("headscale has not been polled successfully yet."));
        assert!(html.contains("not tried yet"));
        assert!(html.contains("not polled yet"));
        assert!(html.contains("id=\"summary\" data-ok=\"false\""));
    }
}
