//! `GET /api/events`: the node table's live updates, as Server-Sent Events.
//!
//! A stream follows [`crate::health::Health::generation`], which is bumped
//! when a probe changes a TART's service state, when a poll changes the
//! tailnet states, and when headscale's or a Caddy's sync status changes.
//! On each bump (at most one event per [`MIN_EVENT_GAP`]), it rebuilds the
//! page of TARTs the client shows (same `?state=` and `?page=` as `/`) and
//! sends the rows that changed since its last event, as one `rows` event:
//!
//! ```json
//! {"generation": 42, "full": false, "page": 1, "pages": 1, "matching": 3,
//!  "names": null, "rows": [{"name": "rhodes", "tailnet": "online", "service": "down", …}],
//!  "counts": {"all": 3, "online": 2, "grace": 1, "offline": 0, "up": 1, "down": 1, "unknown": 1},
//!  "problems": []}
//! ```
//!
//! - `rows`: [`Row`]s (the fields of the page's row; `history` holds the
//!   bar's blocks and summary, see [`crate::status::page::bars`]).
//! - `names`: the page's TARTs in order, when they are not the ones the
//!   client had (a TART left or joined the filter or the page); else `null`.
//! - `full`: `rows` holds every row of the page (the first event when the
//!   client's page is older than the server's state).
//! - Each event's `id` is the generation: a reconnecting browser sends it
//!   back (`Last-Event-ID`), the page passes its own as `?rev=`; when it is
//!   still current, the first event carries no rows.
//!
//! # Limits
//!
//! At most [`MAX_EVENT_STREAMS`] streams are open at once (more get `503`),
//! so live views cannot take the connections the page and the probes of
//! orchestrators need; a stream ends after [`MAX_STREAM_LIFETIME`] (the
//! browser reconnects after [`RECONNECT_AFTER`]) and carries a keep-alive
//! comment every [`KEEP_ALIVE`].

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::http::header::RETRY_AFTER;
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_stream::wrappers::{IntervalStream, WatchStream};
use tokio_stream::StreamExt;

use super::page::view::{self, Counts, Filter, Row};
use super::page::{problems, PageQuery};
use super::report::{self, Report};
use crate::context::Context;
use crate::health::Health;

/// Event streams open at once; one more gets `503`.
pub const MAX_EVENT_STREAMS: usize = 32;
/// A stream ends after this long (below the connection lifetime of
/// [`super::MAX_CONNECTION_LIFETIME`]); the browser then reconnects.
pub const MAX_STREAM_LIFETIME: Duration = Duration::from_secs(50);
/// A keep-alive comment this often, so proxies keep a quiet stream open.
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// At most one event this often per stream (changes in between are sent together).
pub const MIN_EVENT_GAP: Duration = Duration::from_millis(250);
/// How long the browser waits before it reconnects (sent as `retry`).
pub const RECONNECT_AFTER: Duration = Duration::from_secs(1);

/// `/api/events`' query: the page's `?state=&page=`, and `rev`, the
/// generation the page was built at.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
pub(super) struct EventsQuery {
    page: Option<usize>,
    state: Option<Filter>,
    rev: Option<u64>,
}

/// The open streams' slots, and the work they share.
#[derive(Clone)]
pub(super) struct Streams {
    slots: Arc<Semaphore>,
    /// What streams woken by the same change share. Builds happen one at a
    /// time under this lock: a stream that needs the report or a page
    /// another one is building waits for it (at 10,000 TARTs a report takes
    /// tens of milliseconds), and live views never take more than one
    /// runtime thread between them.
    cache: Arc<tokio::sync::Mutex<Cache>>,
}

/// The report of the newest generation seen, and the rows of each page
/// (filter, page number asked) built from it: at most one entry per open
/// stream.
#[derive(Default)]
struct Cache {
    report: Option<(u64, Arc<Report>)>,
    pages: HashMap<(Filter, usize), Arc<PageRows>>,
}

impl Streams {
    pub(super) fn new() -> Streams {
        Streams {
            slots: Arc::new(Semaphore::new(MAX_EVENT_STREAMS)),
            cache: Arc::new(tokio::sync::Mutex::new(Cache::default())),
        }
    }

    /// The rows of page `q` at `generation` (built after `generation` was
    /// read, so they show at least that state): shared, or built now.
    async fn page(&self, ctx: &Context, generation: u64, q: PageQuery) -> Arc<PageRows> {
        let key = (q.state.unwrap_or_default(), q.page.unwrap_or(1));
        let mut cache = self.cache.lock().await;
        let report = match &cache.report {
            Some((g, report)) if *g == generation => {
                if let Some(rows) = cache.pages.get(&key) {
                    return Arc::clone(rows);
                }
                Arc::clone(report)
            }
            _ => {
                let report = Arc::new(report::build(ctx, ctx.snapshot(), &None));
                // A stream still at an older generation does not replace a newer one.
                if cache.report.as_ref().is_none_or(|(g, _)| *g < generation) {
                    cache.report = Some((generation, Arc::clone(&report)));
                    cache.pages.clear();
                } else {
                    let rows = PageRows::build(&report, &ctx.health, q, OffsetDateTime::now_utc());
                    return Arc::new(rows);
                }
                report
            }
        };
        let rows = Arc::new(PageRows::build(
            &report,
            &ctx.health,
            q,
            OffsetDateTime::now_utc(),
        ));
        cache.pages.insert(key, Arc::clone(&rows));
        rows
    }
}

/// One page of rows as the page shows them, with the fleet's counts.
#[derive(Debug)]
pub(super) struct PageRows {
    rows: Vec<Row>,
    counts: Counts,
    problems: Vec<String>,
    /// Page number, pages, TARTs that pass the filter.
    pages: (usize, usize, usize),
}

impl PageRows {
    /// The rows of page `q` of `report`, with `health`'s probes and history at `now`.
    pub(super) fn build(
        report: &Report,
        health: &Health,
        q: PageQuery,
        now: OffsetDateTime,
    ) -> PageRows {
        let sel = view::select(
            &report.nodes,
            health,
            q.state.unwrap_or_default(),
            q.page.unwrap_or(1),
        );
        let (from, to) = view::window(now);
        PageRows {
            rows: sel
                .shown
                .iter()
                .map(|(n, p)| Row::new(n, p.as_ref(), &health.segments(&n.name, from, to), now))
                .collect(),
            counts: sel.counts,
            problems: problems(report),
            pages: (sel.paging.number, sel.paging.pages, sel.matching),
        }
    }
}

/// One event's document (module documentation).
#[derive(Debug, Serialize)]
pub(super) struct Update {
    generation: u64,
    full: bool,
    page: usize,
    pages: usize,
    matching: usize,
    names: Option<Vec<String>>,
    rows: Vec<Row>,
    counts: Counts,
    problems: Vec<String>,
}

/// The update for a client that has `sent` (`None`: nothing yet; then
/// `client_rev` says whether its page is current) and now gets `page`,
/// built at `generation`; `None` when nothing it shows changed.
pub(super) fn update(
    sent: &mut Option<Arc<PageRows>>,
    client_rev: Option<u64>,
    generation: u64,
    page: Arc<PageRows>,
) -> Option<Update> {
    let (full, changed, names_changed) = match sent.as_ref() {
        // A first event to a client whose page is current carries no rows.
        None => {
            let full = client_rev != Some(generation);
            let rows = if full { page.rows.clone() } else { Vec::new() };
            (full, rows, full)
        }
        Some(prev) if Arc::ptr_eq(prev, &page) => return None,
        Some(prev) => {
            let old: HashMap<&str, &Row> = prev.rows.iter().map(|r| (r.name.as_str(), r)).collect();
            let changed: Vec<Row> = page
                .rows
                .iter()
                .filter(|r| old.get(r.name.as_str()).copied() != Some(*r))
                .cloned()
                .collect();
            let names_changed = prev.rows.len() != page.rows.len()
                || prev
                    .rows
                    .iter()
                    .zip(&page.rows)
                    .any(|(a, b)| a.name != b.name);
            if changed.is_empty()
                && !names_changed
                && prev.counts == page.counts
                && prev.problems == page.problems
                && prev.pages == page.pages
            {
                *sent = Some(page);
                return None;
            }
            (false, changed, names_changed)
        }
    };
    *sent = Some(Arc::clone(&page));
    Some(Update {
        generation,
        full,
        page: page.pages.0,
        pages: page.pages.1,
        matching: page.pages.2,
        names: names_changed.then(|| page.rows.iter().map(|r| r.name.clone()).collect()),
        rows: changed,
        counts: page.counts,
        problems: page.problems.clone(),
    })
}

/// `GET /api/events`: an event stream, or `503` when [`MAX_EVENT_STREAMS`] are open.
pub(super) fn respond(
    ctx: Arc<Context>,
    streams: &Streams,
    q: EventsQuery,
    headers: &HeaderMap,
) -> Response {
    let Ok(slot) = Arc::clone(&streams.slots).try_acquire_owned() else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            [(RETRY_AFTER, "5")],
            format!(
                "{MAX_EVENT_STREAMS} live views are open already; retry later or reload the page (it works without them)\n"
            ),
        )
            .into_response();
    };
    let last_id = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let client_rev = last_id.or(q.rev);
    let page = PageQuery {
        page: q.page,
        state: q.state,
    };
    Sse::new(events(
        ctx,
        streams.clone(),
        slot,
        client_rev,
        page,
        MAX_STREAM_LIFETIME,
    ))
    .keep_alive(KeepAlive::new().interval(KEEP_ALIVE))
    .into_response()
}

/// The events of one stream, for at most `lifetime`; holds `slot` until it ends.
fn events(
    ctx: Arc<Context>,
    streams: Streams,
    slot: OwnedSemaphorePermit,
    client_rev: Option<u64>,
    q: PageQuery,
    lifetime: Duration,
) -> impl tokio_stream::Stream<Item = Result<Event, Infallible>> + Send + 'static {
    let start = tokio::time::Instant::now();
    let end =
        IntervalStream::new(tokio::time::interval_at(start + lifetime, lifetime)).map(|_| None);
    let changes = WatchStream::new(ctx.health.generation())
        .throttle(MIN_EVENT_GAP)
        .map(Some);
    let mut sent: Option<Arc<PageRows>> = None;
    changes
        .merge(end)
        .take_while(Option::is_some)
        .then(move |generation| {
            let (ctx, streams) = (Arc::clone(&ctx), streams.clone());
            async move {
                let generation = generation?;
                Some((generation, streams.page(&ctx, generation, q).await))
            }
        })
        .filter_map(move |built| {
            let _slot = &slot;
            let (generation, page) = built?;
            let first = sent.is_none();
            let up = update(&mut sent, client_rev, generation, page)?;
            let event = Event::default()
                .event("rows")
                .id(generation.to_string())
                .json_data(&up)
                .map_err(
                    |e| tracing::debug!(error = %e, "status server: an event could not be encoded"),
                )
                .ok()?;
            Some(Ok(if first {
                event.retry(RECONNECT_AFTER)
            } else {
                event
            }))
        })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use time::macros::datetime;

    use super::*;
    use crate::health::{ProbeResult, ServiceState};
    use crate::status::fixtures::{fleet_state, settings};

    const NOW: OffsetDateTime = datetime!(2026-07-10 08:15:00 UTC);

    fn rows(report: &Report, ctx: &Context, q: PageQuery) -> Arc<PageRows> {
        Arc::new(PageRows::build(report, &ctx.health, q, NOW))
    }

    fn probe(state: ServiceState) -> ProbeResult {
        ProbeResult {
            state,
            http_status: None,
            latency: None,
            checked: NOW,
            since: NOW,
            error: None,
        }
    }

    #[test]
    fn sends_only_what_changed() {
        let ctx = Context::new(settings("127.0.0.1:1", "path"));
        let report = report::build(&ctx, fleet_state(&ctx, NOW), &None);
        let q = PageQuery::default();
        let mut sent = None;
        // The page is current: a first event with no rows.
        let first = update(&mut sent, Some(7), 7, rows(&report, &ctx, q)).unwrap();
        assert!(!first.full && first.rows.is_empty() && first.names.is_none());
        assert_eq!((first.counts.all, first.counts.online), (3, 1));
        // Nothing changed: nothing to send.
        assert!(update(&mut sent, Some(7), 8, rows(&report, &ctx, q)).is_none());
        // rhodes goes down: its row only.
        ctx.health.set_probe("rhodes", probe(ServiceState::Down));
        let up = update(&mut sent, Some(7), 9, rows(&report, &ctx, q)).unwrap();
        let names: Vec<_> = up.rows.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["rhodes"]);
        assert_eq!(up.rows[0].service, ServiceState::Down);
        assert_eq!((up.counts.down, up.generation), (1, 9));
        assert!(up.names.is_none());
    }

    #[tokio::test]
    async fn a_stream_ends_after_its_lifetime_and_gives_its_slot_back() {
        let ctx = Context::new(settings("127.0.0.1:1", "path"));
        crate::status::fixtures::set_state(&ctx, fleet_state(&ctx, NOW));
        let streams = Streams::new();
        let slot = Arc::clone(&streams.slots).try_acquire_owned().unwrap();
        assert_eq!(streams.slots.available_permits(), MAX_EVENT_STREAMS - 1);
        let started = std::time::Instant::now();
        let mut stream = Box::pin(events(
            ctx.clone(),
            streams.clone(),
            slot,
            None,
            PageQuery::default(),
            Duration::from_millis(800),
        ));
        // The first event at once, then one per change, then the end.
        assert!(stream.next().await.is_some());
        assert!(started.elapsed() < Duration::from_millis(300));
        ctx.health.set_probe("rhodes", probe(ServiceState::Down));
        assert!(stream.next().await.is_some());
        let end = tokio::time::timeout(Duration::from_secs(3), stream.next()).await;
        assert!(matches!(end, Ok(None)), "the stream must end by itself");
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(800) && took < Duration::from_secs(2),
            "{took:?}"
        );
        drop(stream);
        assert_eq!(streams.slots.available_permits(), MAX_EVENT_STREAMS);
    }

    #[tokio::test]
    async fn streams_on_one_page_share_its_rows() {
        let ctx = Context::new(settings("127.0.0.1:1", "path"));
        crate::status::fixtures::set_state(&ctx, fleet_state(&ctx, NOW));
        let streams = Streams::new();
        let q = PageQuery::default();
        let down = PageQuery {
            page: None,
            state: Some(Filter::Down),
        };
        let a = streams.page(&ctx, 3, q).await;
        assert!(
            Arc::ptr_eq(&a, &streams.page(&ctx, 3, q).await),
            "built once"
        );
        assert!(!Arc::ptr_eq(&a, &streams.page(&ctx, 3, down).await));
        assert_eq!(streams.cache.lock().await.pages.len(), 2);
        // A new generation: built again, the old ones dropped.
        let b = streams.page(&ctx, 4, q).await;
        assert!(!Arc::ptr_eq(&a, &b));
        assert_eq!(streams.cache.lock().await.pages.len(), 1);
        // A stream still at the old generation does not bring it back.
        let _ = streams.page(&ctx, 3, down).await;
        assert_eq!(streams.cache.lock().await.pages.len(), 1);
        assert_eq!(
            streams.cache.lock().await.report.as_ref().map(|r| r.0),
            Some(4)
        );
        // The same rows to a client that has them: nothing to send.
        let mut sent = None;
        assert!(update(&mut sent, Some(4), 4, b.clone()).is_some());
        assert!(update(&mut sent, Some(4), 4, b).is_none());
    }

    #[test]
    fn an_old_page_gets_every_row_and_filters_say_who_left() {
        let ctx = Context::new(settings("127.0.0.1:1", "path"));
        let report = report::build(&ctx, fleet_state(&ctx, NOW), &None);
        let q = PageQuery {
            page: None,
            state: Some(Filter::Down),
        };
        ctx.health.set_probe("karoo", probe(ServiceState::Down));
        ctx.health.set_probe("rhodes", probe(ServiceState::Down));
        let mut sent = None;
        let first = update(&mut sent, Some(1), 5, rows(&report, &ctx, q)).unwrap();
        assert!(first.full);
        assert_eq!(first.names.as_deref().unwrap(), ["karoo", "rhodes"]);
        assert_eq!(first.rows.len(), 2);
        // rhodes comes back up: it leaves the "down" page.
        ctx.health.set_probe("rhodes", probe(ServiceState::Up));
        let up = update(&mut sent, Some(1), 6, rows(&report, &ctx, q)).unwrap();
        assert_eq!(up.names.as_deref().unwrap(), ["karoo"]);
        assert!(up.rows.is_empty(), "karoo did not change");
        assert_eq!(up.matching, 1);
    }
}
