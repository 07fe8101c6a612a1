//! The HTML page at `/`: a maud template (every dynamic string is escaped by
//! maud), a stylesheet and a script served by the status server itself
//! (`/static/page.css`, `/static/app.js`; the CSP allows nothing else).
//!
//! The node table lists each TART's tailnet state (headscale's view), its
//! service state (the probes'), latency, since when, and a 24-hour history
//! bar ([`bars`]). It shows at most [`PAGE_SIZE`] TARTs (`?page=2`, …) of
//! those that pass the filter (`?state=online|grace|offline|up|down|unknown`,
//! links on the page), and [`PAGE_SIZE`] skipped nodes, so its size stays
//! bounded at any fleet size.
//!
//! With JavaScript, `app.js` keeps the page current over Server-Sent Events
//! (`/api/events`, [`crate::status::events`]): changed rows are patched in
//! place. Without it, the page reloads itself every [`REFRESH_SECONDS`]
//! (a `<noscript>` refresh).

pub(crate) mod bars;
mod dns;
mod table;
pub(super) mod view;

use maud::{html, Markup, PreEscaped};
use serde::Deserialize;
use time::OffsetDateTime;

use super::report::{Report, MAX_LIMIT};
use super::text::{iso, one_line, relative};
use crate::context::{CaddyStatus, LastOutcome};
use crate::health::Health;
use view::Filter;

/// Without JavaScript, the page reloads itself this often (seconds).
pub const REFRESH_SECONDS: u32 = 5;

/// The stylesheet, served at `/static/page.css`.
pub(crate) const STYLE: &str = include_str!("page.css");
/// The script, served at `/static/app.js`.
pub(crate) const SCRIPT: &str = include_str!("app.js");

/// TARTs (and skipped nodes) shown on one page.
pub const PAGE_SIZE: usize = 500;

/// The page's query: `?state=down&page=2`.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
pub struct PageQuery {
    /// Page (1-based; out of range means the nearest page).
    pub page: Option<usize>,
    /// Only TARTs in this state.
    pub state: Option<Filter>,
}

/// The page for `r` and `health` at `now`, the TARTs `q` asks for.
pub(super) fn render(r: &Report, health: &Health, now: OffsetDateTime, q: PageQuery) -> Markup {
    let filter = q.state.unwrap_or_default();
    html! {
        (PreEscaped("<!doctype html>\n"))
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                noscript { meta http-equiv="refresh" content=(REFRESH_SECONDS); }
                meta name="robots" content="noindex";
                title { "tart-sync · " (r.domain) }
                link rel="stylesheet" href="/static/page.css";
                script src="/static/app.js" defer {}
            }
            body {
                header {
                    h1 { "TART routes on " (r.domain) }
                    p.meta {
                        "tart-sync " (r.version) " · " (r.mode) " mode · started " (when(r.started, now))
                        " · updated " time #updated datetime=(iso(now)) { (iso(now)) }
                        " · " span #live { "reloads every " (REFRESH_SECONDS) " s" }
                    }
                }
                (banner(r))
                main {
                    (table::nodes(r, health, now, filter, q.page.unwrap_or(1)))
                    (skipped(r))
                    (caddies(r, now))
                    (headscale(r, now))
                    @if let Some(d) = &r.dns { (dns::responder(d, now)) }
                }
                footer {
                    a href="/api/status" { "JSON" } " · "
                    a href="/api/events" { "live events" } " · "
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

/// What needs attention, one line each (empty: all in sync); the banner
/// at the top, also sent by live updates.
pub(super) fn problems(r: &Report) -> Vec<String> {
    let mut problems = Vec::new();
    if !r.headscale.reachable {
        let why = r
            .headscale
            .last_error
            .as_deref()
            .unwrap_or("not polled yet");
        problems.push(format!("headscale: {}", one_line(why, 300)));
    }
    for c in &r.caddies {
        match (&c.last_error, c.last_sync) {
            (Some(err), _) => {
                problems.push(format!("Caddy {}: {}", c.address, one_line(err, 300)));
            }
            (None, None) => problems.push(format!("Caddy {}: not synced yet", c.address)),
            (None, Some(_)) => {}
        }
    }
    problems
}

/// A summary at the top: everything fine, or what is wrong.
fn banner(r: &Report) -> Markup {
    let problems = problems(r);
    html! {
        @if problems.is_empty() {
            div class="banner ok" id="summary" data-ok="true" { "All in sync." }
        } @else {
            div class="banner bad" id="summary" data-ok="false" {
                "Needs attention:"
                ul { @for p in &problems { li { (p) } } }
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
            } @else if !r.health_known {
                p.muted id="tart-upstream" { "No Caddy answered /reverse_proxy/upstreams." }
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
mod tests;
