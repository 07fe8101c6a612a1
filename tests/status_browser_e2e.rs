//! The status page's live updates in a real browser: headless Chromium,
//! driven over the DevTools protocol, on a page served by the status server
//! in-process.
//!
//! - `a_browser_patches_rows_from_events`: a probe's change shows on the open
//!   page within 1 s, the row patched in place (no reload); on a filtered
//!   page TARTs join and leave, and an empty filter says so.
//! - `a_browser_keeps_the_page_links_current`: paging links follow a
//!   filter's count.
//!
//! Needs Chromium (`CHROMIUM_BIN`); without it a SKIP except under `CI=true`.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

#[path = "status_live/cdp.rs"]
mod cdp;
#[path = "status_live/common.rs"]
mod common;

use std::time::Duration;

use cdp::LivePage;
use common::*;
use e2e::browser::chromium_bin;
use tart_sync::desired::NodeState;
use tart_sync::health::ServiceState;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_patches_rows_from_events() {
    let Some(bin) = chromium_bin() else { return };
    let ctx = fleet(&showcase());
    let server = serve(ctx.clone()).await;
    let mut page = LivePage::open(&bin, &format!("{}/", server.base)).await;
    // The script ran and its event stream is open.
    let live = page
        .wait_for(
            "document.getElementById('live').className",
            "on".into(),
            Duration::from_secs(20),
        )
        .await;
    assert!(
        live.is_some(),
        "the page never went live: {}",
        page.eval("document.body.innerText").await
    );
    let service = "document.getElementById('tart-zadko').getAttribute('data-service')";
    assert_eq!(page.eval(service).await, "unknown");
    assert_eq!(
        page.eval("document.getElementById('count-down').textContent")
            .await,
        "2"
    );

    // zadko's probe fails: the open page shows it, without a reload.
    page.eval("window.marker = 'same page'").await;
    ctx.health.set_probe("zadko", probe_now(ServiceState::Down));
    let took = page
        .wait_for(service, "down".into(), Duration::from_secs(5))
        .await;
    let took = took.expect("the page never showed zadko down");
    eprintln!("browser: zadko down on the open page {took:?} after the probe");
    assert!(took < Duration::from_secs(1), "{took:?}");
    assert_eq!(
        page.eval("window.marker").await,
        "same page",
        "patched, not reloaded"
    );
    assert_eq!(
        page.eval("document.querySelector('#tart-zadko .error').textContent")
            .await,
        "GET http://100.64.0.9:80/: timed out"
    );
    assert_eq!(
        page.eval("document.getElementById('count-down').textContent")
            .await,
        "3"
    );
    assert_eq!(
        page.eval("document.querySelectorAll('tr.node.changed').length")
            .await,
        1
    );
    assert_eq!(
        page.eval("document.querySelectorAll('tr.node').length")
            .await,
        9
    );
    // The rebuilt row has its history bar, drawn by the script.
    assert_eq!(
        page.eval("document.querySelectorAll('#tart-zadko svg.bar rect').length > 1")
            .await,
        true
    );
    // And back up.
    ctx.health.set_probe("zadko", probe_now(ServiceState::Up));
    assert!(page
        .wait_for(service, "up".into(), Duration::from_secs(2))
        .await
        .is_some());
    assert_eq!(
        page.eval("document.querySelector('#tart-zadko td.latency').textContent")
            .await,
        "9.0 ms"
    );

    // A filtered page: a TART that enters the state gets a row, one that
    // leaves it loses its row, in place.
    page.eval("location.href = '/?state=down'").await;
    let rows =
        "Array.from(document.querySelectorAll('tr.node')).map(r => r.dataset.name).join(',')";
    assert!(page
        .wait_for(rows, "meerkat,onsala".into(), Duration::from_secs(10))
        .await
        .is_some());
    assert!(page
        .wait_for(
            "document.getElementById('live').className",
            "on".into(),
            Duration::from_secs(10)
        )
        .await
        .is_some());
    page.eval("window.marker = 'filtered page'").await;
    ctx.health.set_probe("zadko", probe_now(ServiceState::Down));
    assert!(
        page.wait_for(rows, "meerkat,onsala,zadko".into(), Duration::from_secs(2))
            .await
            .is_some(),
        "zadko never joined the down page: {}",
        page.eval(rows).await
    );
    ctx.health.set_probe("meerkat", probe_now(ServiceState::Up));
    assert!(page
        .wait_for(rows, "onsala,zadko".into(), Duration::from_secs(2))
        .await
        .is_some());
    // None left: the page says so.
    ctx.health.set_probe("onsala", probe_now(ServiceState::Up));
    ctx.health.set_probe("zadko", probe_now(ServiceState::Up));
    assert!(page
        .wait_for(rows, "".into(), Duration::from_secs(2))
        .await
        .is_some());
    assert_eq!(
        page.eval("document.getElementById('no-match').textContent")
            .await,
        "No TART is in this state now."
    );
    assert_eq!(
        page.eval("window.marker").await,
        "filtered page",
        "patched, not reloaded"
    );
    assert_eq!(
        page.eval("document.getElementById('count-down').textContent")
            .await,
        "0"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_keeps_the_page_links_current() {
    let Some(bin) = chromium_bin() else { return };
    // 501 TARTs up: two pages of "up".
    let tarts: Vec<Tart> = (0..501)
        .map(|i| {
            tart(
                &format!("t{i:03}"),
                NodeState::Online,
                0,
                Some((ServiceState::Up, 5.0, 60)),
            )
        })
        .collect();
    let ctx = fleet(&tarts);
    let server = serve(ctx.clone()).await;
    let mut page = LivePage::open(&bin, &format!("{}/?state=up", server.base)).await;
    assert!(page
        .wait_for(
            "document.getElementById('live').className",
            "on".into(),
            Duration::from_secs(20)
        )
        .await
        .is_some());
    let links = "Array.from(document.querySelectorAll('p.pages')).map(p => p.firstChild.textContent).join('|')";
    assert_eq!(
        page.eval(links).await,
        "Page 1 of 2: TARTs 1–500 of 501|Page 1 of 2: TARTs 1–500 of 501"
    );
    // One goes down: one page, no links.
    ctx.health.set_probe("t007", probe_now(ServiceState::Down));
    assert!(page
        .wait_for(links, "".into(), Duration::from_secs(2))
        .await
        .is_some());
    assert_eq!(
        page.eval("document.querySelectorAll('tr.node').length")
            .await,
        500
    );
    // It comes back: the links too, with a working next link.
    ctx.health.set_probe("t007", probe_now(ServiceState::Up));
    assert!(page
        .wait_for(
            links,
            "Page 1 of 2: TARTs 1–500 of 501|Page 1 of 2: TARTs 1–500 of 501".into(),
            Duration::from_secs(2)
        )
        .await
        .is_some());
    assert_eq!(
        page.eval("document.querySelector('p.pages a[rel=next]').getAttribute('href')")
            .await,
        "?state=up&page=2"
    );
}
