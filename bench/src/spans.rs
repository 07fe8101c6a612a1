//! [`SpanTimes`]: a `tracing` layer that records how long each span of
//! tart-sync (and of the benchmark) lasted, by span name. The benchmark runs
//! tart-sync's real functions and reads their steps from the spans they open
//! (`reconcile`, `read_stamp`, `diff`, `build_route`, `write`, `desired`, …).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tracing::span::{Attributes, Id};
use tracing::subscriber::Interest;
use tracing::{Metadata, Subscriber};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt as _};
use tracing_subscriber::registry::LookupSpan;

use crate::report::median;
use crate::{err, Res};

/// How long one span lasted.
#[derive(Debug, Clone, Copy)]
pub struct SpanTime {
    /// Time between its creation and its close (wall time, waits included).
    pub elapsed: Duration,
    /// Time it was entered: for a future, the time spent polling it (this
    /// process's own work, without the waits).
    pub busy: Duration,
}

/// Spans closed so far, by name, in the order they closed.
#[derive(Debug, Default, Clone)]
pub struct Recorded(BTreeMap<&'static str, Vec<SpanTime>>);

impl Recorded {
    /// Wall times of the spans called `name`, in ms.
    pub fn elapsed_ms(&self, name: &str) -> Vec<f64> {
        self.times(name, |t| t.elapsed)
    }

    /// Median wall time of the spans called `name`, in ms (NaN when none closed).
    pub fn median_ms(&self, name: &str) -> f64 {
        median(&self.elapsed_ms(name))
    }

    /// Median busy time of the spans called `name`, in ms.
    pub fn median_busy_ms(&self, name: &str) -> f64 {
        median(&self.times(name, |t| t.busy))
    }

    /// Fails unless at least `count` spans of each name closed: a span that
    /// tart-sync no longer opens (renamed, moved) breaks the harness, not a figure.
    pub fn require(&self, names: &[&str], count: usize) -> Res<()> {
        for name in names {
            let seen = self.0.get(name).map_or(0, Vec::len);
            if seen < count {
                return Err(err(format!(
                    "{seen} `{name}` span(s) recorded, expected {count}: does tart-sync still open it?"
                )));
            }
        }
        Ok(())
    }

    fn times(&self, name: &str, f: fn(&SpanTime) -> Duration) -> Vec<f64> {
        self.0.get(name).map_or_else(Vec::new, |v| {
            v.iter().map(|t| f(t).as_secs_f64() * 1000.0).collect()
        })
    }
}

/// The layer, and the handle to what it recorded (clones share it).
#[derive(Debug, Clone, Default)]
pub struct SpanTimes(Arc<Mutex<Recorded>>);

/// Kept in a span's extensions while it is open.
struct Open {
    created: Instant,
    entered: Option<Instant>,
    busy: Duration,
}

impl SpanTimes {
    /// Installs a collector as this process's global subscriber: it records
    /// every span of tart-sync and of the benchmark, at any level, and
    /// nothing else (no events, no other crate's spans).
    pub fn install() -> Res<SpanTimes> {
        let times = SpanTimes::default();
        let subscriber = tracing_subscriber::registry().with(times.clone());
        tracing::subscriber::set_global_default(subscriber)
            .map_err(|e| err(format!("cannot install the span collector: {e}")))?;
        Ok(times)
    }

    /// What was recorded since the last call; starts afresh.
    pub fn take(&self) -> Recorded {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(PoisonError::into_inner))
    }

    fn wants(meta: &Metadata<'_>) -> bool {
        meta.is_span()
            && (meta.target().starts_with("tart_sync") || meta.target().starts_with("tart_bench"))
    }
}

impl<S> Layer<S> for SpanTimes
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn register_callsite(&self, meta: &'static Metadata<'static>) -> Interest {
        if Self::wants(meta) {
            Interest::always()
        } else {
            Interest::never()
        }
    }

    fn enabled(&self, meta: &Metadata<'_>, _: Context<'_, S>) -> bool {
        Self::wants(meta)
    }

    fn on_new_span(&self, _: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(Open {
                created: Instant::now(),
                entered: None,
                busy: Duration::ZERO,
            });
        }
    }

    fn on_enter(&self, id: &Id, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(id) {
            if let Some(open) = span.extensions_mut().get_mut::<Open>() {
                open.entered = Some(Instant::now());
            }
        }
    }

    fn on_exit(&self, id: &Id, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(id) {
            if let Some(open) = span.extensions_mut().get_mut::<Open>() {
                if let Some(t) = open.entered.take() {
                    open.busy += t.elapsed();
                }
            }
        }
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(&id) else {
            return;
        };
        let time = span.extensions().get::<Open>().map(|open| SpanTime {
            elapsed: open.created.elapsed(),
            busy: open.busy,
        });
        if let Some(time) = time {
            let mut recorded = self.0.lock().unwrap_or_else(PoisonError::into_inner);
            recorded.0.entry(span.name()).or_default().push(time);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_spans_by_name() {
        let times = SpanTimes::default();
        let subscriber = tracing_subscriber::registry().with(times.clone());
        tracing::subscriber::with_default(subscriber, || {
            for _ in 0..3 {
                tracing::debug_span!("step")
                    .in_scope(|| std::thread::sleep(Duration::from_millis(2)));
            }
            let waited = tracing::trace_span!("waited");
            std::thread::sleep(Duration::from_millis(2));
            drop(waited);
        });
        let r = times.take();
        assert_eq!(r.elapsed_ms("step").len(), 3);
        assert!(r.median_ms("step") >= 2.0);
        assert!(r.median_busy_ms("step") >= 2.0);
        assert!(r.median_ms("waited") >= 2.0);
        assert_eq!(r.median_busy_ms("waited"), 0.0);
        assert!(r.require(&["step"], 3).is_ok());
        assert!(r.require(&["step", "gone"], 1).is_err());
        assert!(times.take().elapsed_ms("step").is_empty());
    }
}
