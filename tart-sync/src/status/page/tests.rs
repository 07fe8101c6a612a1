//! The page's rendering, from fixed states.

#![allow(clippy::unwrap_used)]
use std::collections::HashMap;

use time::macros::datetime;

use super::*;
use crate::context::Context;
use crate::desired::NodeState;
use crate::health::{ProbeResult, ServiceState};
use crate::status::fixtures::{entry, fleet_state, settings, HOSTILE};
use crate::status::report;
use crate::status::upstreams::{Health, UpstreamHealth};

const NOW: OffsetDateTime = datetime!(2026-07-10 08:15:00 UTC);

/// A probe of [`NOW`]: `state` for 7 minutes, 12.3 ms.
fn probe(state: ServiceState) -> ProbeResult {
    ProbeResult {
        state,
        http_status: (state == ServiceState::Up).then_some(200),
        latency: (state == ServiceState::Up).then_some(std::time::Duration::from_micros(12_340)),
        checked: NOW,
        since: NOW - time::Duration::minutes(7),
        error: (state == ServiceState::Down)
            .then(|| "connect to 100.64.0.12:80: connection refused".into()),
    }
}

/// The fleet at [`NOW`], started 15 min before; rhodes up, karoo down;
/// Caddy lists the TARTs' shared upstream.
fn fleet() -> (std::sync::Arc<Context>, report::Report) {
    let ctx = Context::new(settings("127.0.0.1:1", "path"));
    let health: Health = Some(HashMap::from([(
        "{http.vars.tart_sync_upstream}".to_string(),
        UpstreamHealth {
            num_requests: 2,
            fails: 1,
        },
    )]));
    let mut report = report::build(&ctx, fleet_state(&ctx, NOW), &health);
    report.started = NOW - time::Duration::minutes(15);
    report.version = "0.0.0-test";
    ctx.health.set_probe("rhodes", probe(ServiceState::Up));
    ctx.health.set_probe("karoo", probe(ServiceState::Down));
    (ctx, report)
}

fn fleet_page_with(q: PageQuery) -> String {
    let (ctx, report) = fleet();
    render(&report, &ctx.health, NOW, q).into_string()
}

fn fleet_page() -> String {
    fleet_page_with(PageQuery::default())
}

/// The `<tr …>` of the node called `name`.
fn row<'a>(html: &'a str, name: &str) -> &'a str {
    let start = &html[html.find(&format!("data-name=\"{name}\"")).unwrap()..];
    &start[..start.find("</tr>").unwrap()]
}

/// The names of the TART rows, in order.
fn names(html: &str) -> Vec<&str> {
    html.match_indices("<tr class=\"node\" id=\"tart-")
        .map(|(i, m)| {
            let rest = &html[i + m.len()..];
            &rest[..rest.find('"').unwrap()]
        })
        .collect()
}

#[test]
fn page_for_a_fixed_state() {
    let html = fleet_page();
    // One element per line, so that a change shows as a readable diff.
    insta::assert_snapshot!(html.replace("><", ">\n<"));
}

#[test]
fn page_lists_tarts_with_both_states_urls_and_times() {
    let html = fleet_page();

    assert!(html.starts_with("<!doctype html>"));
    assert!(html.contains("<meta name=\"viewport\""));
    // Live with the script, a plain refresh without it; nothing inline.
    assert!(html.contains("<noscript><meta http-equiv=\"refresh\" content=\"5\"></noscript>"));
    assert!(html.contains("<script src=\"/static/app.js\" defer></script>"));
    assert!(html.contains("<link rel=\"stylesheet\" href=\"/static/page.css\">"));
    assert_eq!(html.matches("<script").count(), 1, "no inline script");
    assert!(
        !html.contains("<style") && !html.contains(" style="),
        "no inline style"
    );
    assert!(
        !html.contains("src=\"http") && !html.contains("href=\"//"),
        "nothing remote"
    );

    assert_eq!(
        names(&html),
        ["karoo", "meerkat", "rhodes"],
        "sorted by name"
    );
    assert!(html.contains(
        "data-name=\"karoo\" data-state=\"grace\" data-node-id=\"13\" data-service=\"down\""
    ));
    assert!(html.contains(
        "data-name=\"meerkat\" data-state=\"offline\" data-node-id=\"15\" data-service=\"unknown\""
    ));
    assert!(html.contains(
        "data-name=\"rhodes\" data-state=\"online\" data-node-id=\"12\" data-service=\"up\""
    ));
    let rhodes = row(&html, "rhodes");
    assert!(rhodes.contains(
        "<a href=\"https://tart.example.org/rhodes/\">https://tart.example.org/rhodes/</a>"
    ));
    assert!(rhodes.contains("<code class=\"muted\">100.64.0.12:80</code>"));
    // Colour-coded badges that also say it in words; the HTTP status in a title.
    assert!(rhodes.contains("<span class=\"badge online\">online</span>"));
    assert!(rhodes.contains("<span class=\"badge up\" title=\"HTTP 200\">up</span>"));
    assert!(
        rhodes.contains("data-label=\"Latency\">12 ms</td>"),
        "{rhodes}"
    );
    assert!(rhodes.contains(
        "up <time datetime=\"2026-07-10T08:08:00Z\" title=\"2026-07-10T08:08:00Z\">7m ago</time>"
    ));
    let karoo = row(&html, "karoo");
    assert!(karoo.contains("<span class=\"badge grace\">in grace</span>"));
    assert!(karoo.contains("<span class=\"badge down\" title=\"connect to 100.64.0.12:80: connection refused\">down</span>"));
    assert!(karoo.contains(
        "<div class=\"error small\">connect to 100.64.0.12:80: connection refused</div>"
    ));
    // Relative times with the ISO time in a title.
    assert!(karoo.contains(
        "offline <time datetime=\"2026-07-10T08:14:40Z\" title=\"2026-07-10T08:14:40Z\">20s ago</time>"
    ));
    assert!(row(&html, "meerkat").contains(
        "offline <time datetime=\"2026-07-10T08:12:00Z\" title=\"2026-07-10T08:12:00Z\">3m ago</time>"
    ));
    assert!(karoo.contains("grace ends <time datetime=\"2026-07-10T08:15:40Z\" title=\"2026-07-10T08:15:40Z\">in 40s</time>"));
    let meerkat = row(&html, "meerkat");
    assert!(meerkat.contains("<span class=\"badge offline\">offline</span>"));
    assert!(meerkat
        .contains("<span class=\"badge unknown\" title=\"not probed (yet)\">not probed</span>"));
    // A history bar per TART, accessible: rhodes' probes say up for the
    // last 7 minutes, meerkat has no history.
    assert!(
        rhodes.contains("aria-label=\"Last 24 h: up 100%; no change\""),
        "{rhodes}"
    );
    assert!(
        rhodes.contains("<rect class=\"up\" x=\"1425\" width=\"15\" height=\"10\"></rect>"),
        "{rhodes}"
    );
    assert!(meerkat.contains("<svg class=\"bar\" viewBox=\"0 0 1440 10\" preserveAspectRatio=\"none\" role=\"img\" aria-label=\"Last 24 h: no history yet\"><title>Last 24 h: no history yet</title>"), "{meerkat}");
    // No column that can never hold data: Caddy's in-flight and fails count
    // only for all TARTs together.
    assert!(
        !html.contains("In flight") && !html.contains("Fails"),
        "{html}"
    );
    assert!(html.contains("data-in-flight=\"2\" data-fails=\"1\""));
    // Counts and filter links.
    assert!(html.contains(
        "<span class=\"muted\" id=\"counts\">3 · 1 online · 1 in grace · 1 offline · 1 down</span>"
    ));
    assert!(html.contains("<a href=\"?state=down\" class=\"filter down\">Down <span class=\"count\" id=\"count-down\">1</span></a>"), "{html}");
    assert!(html.contains("<a href=\"?\" class=\"filter all\" aria-current=\"page\">All <span class=\"count\" id=\"count-all\">3</span></a>"));

    // Caddy and headscale sections.
    assert!(html.contains("<tr class=\"caddy\" data-address=\"127.0.0.1:1\" data-reachable=\"true\" data-outcome=\"unchanged\">"));
    assert!(html.contains("<section id=\"headscale\" data-reachable=\"true\">"));
    assert!(html.contains("id=\"summary\" data-ok=\"true\""));
    // The skipped node, in its own table.
    assert!(html.contains("<tr class=\"skipped\" data-node-id=\"14\">"));
}

#[test]
fn filters_show_the_tarts_in_one_state() {
    let page = |f| {
        fleet_page_with(PageQuery {
            page: None,
            state: Some(f),
        })
    };
    for (f, want) in [
        (Filter::All, vec!["karoo", "meerkat", "rhodes"]),
        (Filter::Online, vec!["rhodes"]),
        (Filter::Grace, vec!["karoo"]),
        (Filter::Offline, vec!["meerkat"]),
        (Filter::Up, vec!["rhodes"]),
        (Filter::Down, vec!["karoo"]),
        (Filter::Unknown, vec!["meerkat"]),
    ] {
        let html = page(f);
        assert_eq!(names(&html), want, "{f:?}");
        assert!(html.contains(&format!("data-state=\"{}\"", f.as_str())));
        // The current filter is marked; counts stay those of the fleet.
        let href = if f == Filter::All {
            "?".to_string()
        } else {
            format!("?state={}", f.as_str())
        };
        let marked = format!(
            "href=\"{href}\" class=\"filter {}\" aria-current=\"page\">{}",
            f.as_str(),
            f.label()
        );
        assert!(html.contains(&marked), "{marked}");
        assert_eq!(html.matches("aria-current").count(), 1);
        assert!(html.contains(">3 · 1 online · 1 in grace · 1 offline · 1 down<"));
    }
    // Nothing in that state: says so.
    let (ctx, report) = fleet();
    ctx.health.set_probe("karoo", probe(ServiceState::Up));
    let html = render(
        &report,
        &ctx.health,
        NOW,
        PageQuery {
            page: None,
            state: Some(Filter::Down),
        },
    )
    .into_string();
    assert!(names(&html).is_empty());
    assert!(
        html.contains("<p class=\"empty\" id=\"no-match\">No TART is down now.</p>"),
        "{html}"
    );
}

#[test]
fn history_bars_come_from_the_history() {
    let (from, to) = view::window(NOW);
    let segments = [
        crate::health::Segment {
            from,
            to: from + time::Duration::hours(18),
            tailnet: Some(NodeState::Online),
            service: ServiceState::Up,
        },
        crate::health::Segment {
            from: from + time::Duration::hours(18),
            to,
            tailnet: Some(NodeState::Online),
            service: ServiceState::Down,
        },
    ];
    let r = view::Row::new(
        &report::build(
            &Context::new(settings("127.0.0.1:1", "path")),
            fleet_state(&Context::new(settings("127.0.0.1:1", "path")), NOW),
            &None,
        )
        .nodes[2],
        None,
        &segments,
        NOW,
    );
    let html = table::row(&r, NOW).into_string();
    assert!(
        html.contains("aria-label=\"Last 24 h: up 75.0%, down 25.0%; 1 change\""),
        "{html}"
    );
    assert!(html.contains("<rect class=\"up\" x=\"0\" width=\"1080\" height=\"10\"></rect><rect class=\"down\" x=\"1080\" width=\"360\" height=\"10\"></rect>"), "{html}");
}

#[test]
fn host_mode_urls() {
    let ctx = Context::new(settings("127.0.0.1:1", "host"));
    let report = report::build(&ctx, fleet_state(&ctx, NOW), &None);
    let html = render(&report, &ctx.health, NOW, PageQuery::default()).into_string();
    assert!(html.contains("href=\"https://rhodes.tart.example.org/\""));
    assert!(html.contains("No Caddy answered /reverse_proxy/upstreams."));
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
    let html = render(
        &report::build(&ctx, state, &None),
        &ctx.health,
        NOW,
        PageQuery::default(),
    )
    .into_string();

    assert_eq!(html.matches("<script").count(), 1, "only app.js: {html}");
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
    let html = render(&report, &ctx.health, NOW, PageQuery::default()).into_string();
    // 70 MB when every node was listed.
    assert!(html.len() < 1_000_000, "{} bytes", html.len());
    assert_eq!(html.matches("<tr class=\"node\"").count(), PAGE_SIZE);
    assert_eq!(html.matches("<tr class=\"skipped\"").count(), PAGE_SIZE);
    assert!(
        html.contains(">Telescopes <span class=\"muted\" id=\"counts\">100000 · 100000 online"),
        "says how many there are"
    );
    assert!(html.contains("Page 1 of 200: TARTs 1–500 of 100000"));
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
    let page = |n| {
        render(
            &report,
            &ctx.health,
            NOW,
            PageQuery {
                page: Some(n),
                state: None,
            },
        )
        .into_string()
    };
    let html = page(2);
    assert!(
        html.contains("Page 2 of 3: TARTs 501–1000 of 1234"),
        "{html}"
    );
    assert!(html.contains("data-name=\"node000500\"") && html.contains("data-name=\"node000999\""));
    assert!(
        !html.contains("data-name=\"node000499\"") && !html.contains("data-name=\"node001000\"")
    );
    assert!(html.contains("<a href=\"?\" rel=\"prev\">prev</a>"));
    // With a filter, the links keep it.
    let online = render(
        &report,
        &ctx.health,
        NOW,
        PageQuery {
            page: Some(2),
            state: Some(Filter::Online),
        },
    )
    .into_string();
    assert!(
        online.contains("Page 2 of 3: TARTs 501–1000 of 1234"),
        "{online}"
    );
    assert!(online.contains("<a href=\"?state=online&amp;page=3\" rel=\"next\">next</a>"));
    assert!(online.contains("<a href=\"?state=online\" rel=\"first\">first</a>"));
    let down = render(
        &report,
        &ctx.health,
        NOW,
        PageQuery {
            page: Some(2),
            state: Some(Filter::Down),
        },
    )
    .into_string();
    assert!(
        !down.contains("id=\"pages\"") && !down.contains("class=\"pages\""),
        "no TART is down: one page"
    );
    let last = page(3);
    assert_eq!(last.matches("<tr class=\"node\"").count(), 234);
    assert!(!last.contains("rel=\"next\""));
    // Out of range: the nearest page.
    assert!(page(99).contains("Page 3 of 3"));
    assert!(page(0).contains("Page 1 of 3"));
    // One page: no links at all.
    let small = render(
        &big_report(&ctx, PAGE_SIZE),
        &ctx.health,
        NOW,
        PageQuery::default(),
    )
    .into_string();
    assert!(!small.contains("id=\"pages\""));
    assert_eq!(small.matches("<tr class=\"node\"").count(), PAGE_SIZE);
}

#[test]
fn empty_page_before_the_first_poll() {
    let ctx = Context::new(settings("127.0.0.1:1", "path"));
    let report = report::build(&ctx, ctx.snapshot(), &None);
    let html = render(&report, &ctx.health, NOW, PageQuery::default()).into_string();
    assert!(!html.contains("<tr class=\"node\""), "{html}");
    assert!(html.contains("headscale has not been polled successfully yet."));
    assert!(html.contains("not tried yet"));
    assert!(html.contains("not polled yet"));
    assert!(html.contains("id=\"summary\" data-ok=\"false\""));
}
