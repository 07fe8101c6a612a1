//! The public page: a maud template (every string escaped), one inline
//! stylesheet, no JavaScript, no external assets. TARTs are shown online
//! first, then by name; each card links to the TART.

use maud::{html, Markup, PreEscaped};
use time::macros::format_description;
use time::OffsetDateTime;

use super::fleet::{page_link, PublicFleet};
use crate::config::RouteSettings;

/// The only stylesheet, inline (the CSP allows nothing else).
const STYLE: &str = include_str!("page.css");

/// The page reloads itself this often (seconds); without JavaScript.
pub const REFRESH_SECONDS: u32 = 60;

/// `2026-12-01 14:05 UTC`.
fn shown(t: OffsetDateTime) -> String {
    let f = format_description!("[year]-[month]-[day] [hour]:[minute] UTC");
    t.to_offset(time::UtcOffset::UTC)
        .format(&f)
        .unwrap_or_default()
}

fn iso(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// The page for `fleet`; `json_path` is the JSON document's path.
pub fn render(fleet: &PublicFleet, routes: &RouteSettings, json_path: &str) -> Markup {
    let mut order: Vec<_> = fleet.tarts.iter().collect();
    order.sort_by(|a, b| b.online.cmp(&a.online).then_with(|| a.name.cmp(&b.name)));
    html! {
        (PreEscaped("<!doctype html>\n"))
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta http-equiv="refresh" content=(REFRESH_SECONDS);
                title { (fleet.title) }
                style { (PreEscaped(STYLE)) }
            }
            body {
                header {
                    h1 { (fleet.title) }
                    p.summary {
                        strong { (fleet.online) } " of " strong { (fleet.total) }
                        @if fleet.total == 1 { " telescope" } @else { " telescopes" }
                        " online"
                        @if fleet.total > 0 { " · a name opens that telescope's own page" }
                    }
                }
                main {
                    @if order.is_empty() {
                        p.empty { "No telescopes are connected yet." }
                    } @else {
                        ul.tarts {
                            @for t in &order {
                                li class=(if t.online { "on" } else { "off" }) {
                                    a.name href=(page_link(routes, t)) { (t.name) }
                                    span.state {
                                        @if t.online {
                                            span.badge.on { "online" }
                                        } @else {
                                            span.badge.off { "offline" }
                                        }
                                        @if let Some(since) = t.since {
                                            span { "since " time datetime=(iso(since)) { (shown(since)) } }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
                footer {
                    "Updated " time datetime=(iso(fleet.updated)) { (shown(fleet.updated)) }
                    " · for other sites: " a href=(json_path) { "tarts.json" }
                }
            }
        }
    }
}
