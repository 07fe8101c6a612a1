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
use std::sync::{Arc, Mutex};
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

/// The open streams' slots, and the report they share.
#[derive(Clone)]
pub(super) struct Streams {
    slots: Arc<Semaphore>,
    /// The report built for the last generation any stream saw: streams
    /// woken by the same change share one build (at 10,000 TARTs a build
    /// takes tens of milliseconds).
    last: Arc<Mutex<Option<Shared>>>,
}

/// A report and the generation it was built for.
type Shared = (u64, Arc<Report>);

impl Streams {
    pub(super) fn new() -> Streams {
        Streams {
            slots: Arc::new(Semaphore::new(MAX_EVENT_STREAMS)),
            last: Arc::new(Mutex::new(None)),
        }
    }

    /// The report for `generation`: the shared one, or a new one (built
    /// after `generation` was read, so it shows at least that state).
    fn report(&self, ctx: &Context, generation: u64) -> Arc<Report> {
        if let Some((g, r)) = self.last.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
            if *g == generation {
                return Arc::clone(r);
            }
        }
        // Built outside the lock: streams never wait for each other.
        let report = Arc::new(report::build(ctx, ctx.snapshot(), &None));
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        if last.as_ref().is_none_or(|(g, _)| *g < generation) {
            *last = Some((generation, Arc::clone(&report)));
        }
        report
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

/// What the client has: the last rows sent, in order, and the summary.
#[derive(Debug, Default)]
pub(super) struct Sent {
    rows: HashMap<String, Row>,
    names: Vec<String>,
    counts: Counts,
    problems: Vec<String>,
    pages: (usize, usize, usize),
}

/// The update for a client that has `sent` (`None`: nothing yet; then
/// `client_rev` says whether its page is current), from `report` at
/// `generation`; `None` when nothing it shows changed.
pub(super) fn update(
    sent: &mut Option<Sent>,
    client_rev: Option<u64>,
    generation: u64,
    report: &Report,
    health: &Health,
    q: PageQuery,
    now: OffsetDateTime,
) -> Option<Update> {
    let sel = view::select(
        &report.nodes,
        health,
        q.state.unwrap_or_default(),
        q.page.unwrap_or(1),
    );
    let (from, to) = view::window(now);
    let rows: Vec<Row> = sel
        .shown
        .iter()
        .map(|(n, p)| Row::new(n, p.as_ref(), &health.segments(&n.name, from, to), now))
        .collect();
    let names: Vec<String> = rows.iter().map(|r| r.name.clone()).collect();
    let problems = problems(report);
    let pages = (sel.paging.number, sel.paging.pages, sel.matching);
    let first = sent.is_none();
    let prev = sent.get_or_insert_with(Sent::default);
    // A first event to a client whose page is current carries no rows.
    let full = first && client_rev != Some(generation);
    let changed: Vec<Row> = match (first, full) {
        (true, true) => rows.clone(),
        (true, false) => Vec::new(),
        (false, _) => rows
            .iter()
            .filter(|r| prev.rows.get(&r.name) != Some(*r))
            .cloned()
            .collect(),
    };
    let names_changed = if first { full } else { prev.names != names };
    let quiet = !first
        && changed.is_empty()
        && !names_changed
        && prev.counts == sel.counts
        && prev.problems == problems
        && prev.pages == pages;
    prev.rows = rows.into_iter().map(|r| (r.name.clone(), r)).collect();
    prev.counts = sel.counts;
    prev.problems.clone_from(&problems);
    prev.pages = pages;
    prev.names.clone_from(&names);
    if quiet {
        return None;
    }
    Some(Update {
        generation,
        full,
        page: pages.0,
        pages: pages.1,
        matching: pages.2,
        names: names_changed.then_some(names),
        rows: changed,
        counts: sel.counts,
        problems,
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
    let mut sent: Option<Sent> = None;
    changes
        .merge(end)
        .take_while(Option::is_some)
        .filter_map(move |generation| {
            let _slot = &slot;
            let generation = generation?;
            let first = sent.is_none();
            let report = streams.report(&ctx, generation);
            let now = OffsetDateTime::now_utc();
            let up = update(
                &mut sent,
                client_rev,
                generation,
                &report,
                &ctx.health,
                q,
                now,
            )?;
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
        let first = update(&mut sent, Some(7), 7, &report, &ctx.health, q, NOW).unwrap();
        assert!(!first.full && first.rows.is_empty() && first.names.is_none());
        assert_eq!((first.counts.all, first.counts.online), (3, 1));
        // Nothing changed: nothing to send.
        assert!(update(&mut sent, Some(7), 8, &report, &ctx.health, q, NOW).is_none());
        // rhodes goes down: its row only.
        ctx.health.set_probe("rhodes", probe(ServiceState::Down));
        let up = update(&mut sent, Some(7), 9, &report, &ctx.health, q, NOW).unwrap();
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
        let first = update(&mut sent, Some(1), 5, &report, &ctx.health, q, NOW).unwrap();
        assert!(first.full);
        assert_eq!(first.names.as_deref().unwrap(), ["karoo", "rhodes"]);
        assert_eq!(first.rows.len(), 2);
        // rhodes comes back up: it leaves the "down" page.
        ctx.health.set_probe("rhodes", probe(ServiceState::Up));
        let up = update(&mut sent, Some(1), 6, &report, &ctx.health, q, NOW).unwrap();
        assert_eq!(up.names.as_deref().unwrap(), ["karoo"]);
        assert!(up.rows.is_empty(), "karoo did not change");
        assert_eq!(up.matching, 1);
    }
}
