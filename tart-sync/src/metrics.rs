//! The Prometheus metrics served at `/metrics`, in the OpenMetrics text format
//! (prometheus-client).
//!
//! [`Metrics`] owns the registry. The loop updates the counters and
//! histograms through its methods; the gauges that describe the current state
//! (nodes by state, Caddy and headscale up, last sync per Caddy) are read from
//! the shared [`SyncState`] at scrape time by a collector, so they can never
//! disagree with the status page.
//!
//! Series names and labels are those of the hand-written exposition this
//! replaced (dashboards depend on them); the two durations that were
//! summaries are histograms (prometheus-client has no summary): the same
//! `_sum` and `_count`, plus `_bucket`. The snapshot test
//! `snapshots/tart_sync__metrics__tests__exposition_for_a_fixed_state.snap`
//! pins the whole text.
//!
//! Per-TART series (issue #12): `tart_sync_tart_up{name}` (the probes' view,
//! one series per probed TART) and `tart_sync_tart_online{name}` (headscale's,
//! one per TART with a URL): at 10,000 TARTs, 20,000 series. Every other
//! series is fixed-size or one per Caddy; `tart_sync_tart_probe_duration_seconds`
//! is one histogram for all probes.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, RwLock};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeGaugeValue, EncodeLabelSet, EncodeMetric,
};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};

use crate::context::SyncState;
use crate::desired::NodeState;

/// Content type of [`Metrics::encode`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Upper bounds (seconds) of the duration histograms' buckets: an idle cycle
/// takes about a millisecond, a write to a large config about a second.
const DURATION_BUCKETS: [f64; 9] = [0.001, 0.0025, 0.01, 0.025, 0.1, 0.25, 1.0, 2.5, 10.0];

/// The `kind` label of `tart_sync_errors_total`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ErrorLabels {
    kind: String,
}

/// tart-sync's metrics: the registry and the families the loop updates.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    cycles: Counter,
    cycle_duration: Histogram,
    caddy_writes: Counter,
    errors: Family<ErrorLabels, Counter>,
    poll_duration: Histogram,
    poll_last: Gauge<f64, AtomicU64>,
    /// `tart_sync_tart_up{name}`: the probes' view, one entry per probed
    /// TART (sorted: the exposition's order is stable).
    tart_up: Arc<RwLock<BTreeMap<String, bool>>>,
    /// `tart_sync_tart_probe_duration_seconds`: every probe, answered or not.
    probe_duration: Histogram,
}

/// Upper bounds (seconds) of the probe duration buckets: a probe through
/// the tailnet takes milliseconds to a second, a timeout 5 s by default.
const PROBE_BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

impl Metrics {
    /// Registers every metric; the state gauges are read from `state` at
    /// each scrape.
    pub fn new(state: Arc<RwLock<SyncState>>) -> Metrics {
        let mut m = Metrics {
            registry: Registry::with_prefix("tart_sync"),
            cycles: Counter::default(),
            cycle_duration: Histogram::new(DURATION_BUCKETS),
            caddy_writes: Counter::default(),
            errors: Family::default(),
            poll_duration: Histogram::new(DURATION_BUCKETS),
            poll_last: Gauge::default(),
            tart_up: Arc::default(),
            probe_duration: Histogram::new(PROBE_BUCKETS),
        };
        let r = &mut m.registry;
        let help = "Reconcile cycles run, summed over every Caddy";
        r.register("cycles", help, m.cycles.clone());
        let help = "Time spent in reconcile cycles";
        r.register_with_unit(
            "cycle_duration",
            help,
            Unit::Seconds,
            m.cycle_duration.clone(),
        );
        let help = "Config writes sent to Caddy (installs and updates)";
        r.register("caddy_writes", help, m.caddy_writes.clone());
        r.register("errors", "Errors by kind", m.errors.clone());
        let help = "Time spent polling headscale's node list";
        let poll = m.poll_duration.clone();
        r.register_with_unit("headscale_poll_duration", help, Unit::Seconds, poll);
        let help = "Duration of the last headscale poll";
        let last = m.poll_last.clone();
        r.register_with_unit("headscale_poll_last_duration", help, Unit::Seconds, last);
        r.register_collector(Box::new(StateGauges(state.clone())));
        let help = "Time each probe of a TART's web service took, answered or not";
        let probes = m.probe_duration.clone();
        r.register_with_unit("tart_probe_duration", help, Unit::Seconds, probes);
        r.register_collector(Box::new(TartGauges(state, m.tart_up.clone())));
        m
    }

    /// A probe of `name` found it `up` (or not) in `secs`.
    pub fn probe_done(&self, name: &str, up: bool, secs: f64) {
        self.probe_duration.observe(secs);
        let mut tarts = self.tart_up.write().unwrap_or_else(|p| p.into_inner());
        match tarts.get_mut(name) {
            Some(value) => *value = up,
            None => {
                tarts.insert(name.to_owned(), up);
            }
        }
    }

    /// `name` is no longer probed: its `tart_up` series goes.
    pub fn forget_tart(&self, name: &str) {
        (self.tart_up.write().unwrap_or_else(|p| p.into_inner())).remove(name);
    }

    /// A headscale poll took `secs` (whether it succeeded or not).
    pub fn poll_done(&self, secs: f64) {
        self.poll_duration.observe(secs);
        self.poll_last.set(secs);
    }

    /// A reconcile cycle with one Caddy took `secs`; `wrote`: it sent a
    /// config write.
    pub fn cycle_done(&self, secs: f64, wrote: bool) {
        self.cycles.inc();
        self.cycle_duration.observe(secs);
        if wrote {
            self.caddy_writes.inc();
        }
    }

    /// Counts an error of `kind` (`headscale_auth`, `headscale`,
    /// `caddy_unreachable`, ...).
    pub fn error(&self, kind: &str) {
        self.errors
            .get_or_create(&ErrorLabels { kind: kind.into() })
            .inc();
    }

    /// Reconcile cycles run so far.
    pub fn cycles(&self) -> u64 {
        self.cycles.get()
    }

    /// Errors of `kind` counted so far.
    pub fn errors(&self, kind: &str) -> u64 {
        self.errors
            .get(&ErrorLabels { kind: kind.into() })
            .map_or(0, |c| c.get())
    }

    /// The whole exposition, `# EOF` included.
    pub fn encode(&self) -> Result<String, fmt::Error> {
        let mut out = String::with_capacity(4096);
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

/// The gauges read from the shared state at scrape time, in a fixed order.
#[derive(Debug)]
struct StateGauges(Arc<RwLock<SyncState>>);

/// One gauge family `name{label="…"}`, from `(label value, value)` pairs.
fn gauges<'a, N: EncodeGaugeValue>(
    encoder: &'a mut DescriptorEncoder,
    (name, help, unit): (&'a str, &str, Option<&'a Unit>),
    label: &str,
    values: impl IntoIterator<Item = (&'a str, N)>,
) -> fmt::Result {
    let mut family = encoder.encode_descriptor(name, help, unit, MetricType::Gauge)?;
    for (value_label, value) in values {
        ConstGauge::new(value).encode(family.encode_family(&[(label, value_label)])?)?;
    }
    Ok(())
}

impl Collector for StateGauges {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        let state = self.0.read().unwrap_or_else(|p| p.into_inner());
        let (routed, skipped) = match &state.desired {
            Some(d) => (d.entries.as_slice(), d.skipped.len()),
            None => (&[][..], 0),
        };
        let count = |s: NodeState| routed.iter().filter(|e| e.state == s).count();
        let help = "Nodes in the last headscale answer (seen), with a route (routed), by route state, and passing the filters without a route (skipped).";
        let nodes = [
            ("seen", state.headscale.nodes_seen),
            ("routed", routed.len()),
            ("online", count(NodeState::Online)),
            ("grace", count(NodeState::Grace)),
            ("offline", count(NodeState::Offline)),
            ("skipped", skipped),
        ];
        gauges(&mut encoder, ("nodes", help, None), "state", nodes)?;

        let synced: Vec<_> = (state.caddies.iter())
            .filter_map(|c| Some((c.address.as_str(), c.last_sync?)))
            .map(|(address, t)| (address, t.unix_timestamp_nanos() as f64 / 1e9))
            .collect();
        if !synced.is_empty() {
            let help = "Unix time when each Caddy last matched the desired routes.";
            let name = ("last_sync_timestamp", help, Some(&Unit::Seconds));
            gauges(&mut encoder, name, "caddy", synced)?;
        }

        let help = "1 when the last reconcile reached this Caddy's admin API.";
        let up = (state.caddies.iter()).map(|c| (c.address.as_str(), i64::from(c.reachable)));
        gauges(&mut encoder, ("caddy_up", help, None), "caddy", up)?;

        let help = "1 when the last headscale poll succeeded.";
        let up = ConstGauge::new(i64::from(state.headscale.reachable));
        up.encode(encoder.encode_descriptor("headscale_up", help, None, MetricType::Gauge)?)
    }
}

/// `tart_sync_tart_online{name}`, read from the shared state at scrape
/// time, and `tart_sync_tart_up{name}`, from the probes' results.
#[derive(Debug)]
struct TartGauges(Arc<RwLock<SyncState>>, Arc<RwLock<BTreeMap<String, bool>>>);

impl Collector for TartGauges {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        let tarts = self.1.read().unwrap_or_else(|p| p.into_inner());
        let help = "1 when the last probe of this TART's web service got an HTTP answer, 0 when it failed; no series before the first probe or while it is not probed.";
        let up = tarts
            .iter()
            .map(|(name, up)| (name.as_str(), i64::from(*up)));
        gauges(&mut encoder, ("tart_up", help, None), "name", up)?;
        drop(tarts);
        let state = self.0.read().unwrap_or_else(|p| p.into_inner());
        let routed = state.desired.as_ref().map_or(&[][..], |d| &d.entries[..]);
        let help = "1 when headscale shows this TART online, 0 when it is offline (in grace or past it); one series per TART with a URL.";
        let online = routed
            .iter()
            .map(|e| (e.name.as_str(), i64::from(e.state == NodeState::Online)));
        gauges(&mut encoder, ("tart_online", help, None), "name", online)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use time::macros::datetime;

    use crate::context::{CaddyStatus, Context, LastOutcome};
    use crate::status::fixtures::{fleet_state, set_state, settings};

    /// A fixed state: the fleet (5 seen, 3 routed, 1 skipped) synced to one
    /// Caddy, and a second, unreachable Caddy whose address needs escaping.
    fn fixed() -> std::sync::Arc<Context> {
        let ctx = Context::new(settings("127.0.0.1:1", "path"));
        let mut state = fleet_state(&ctx, datetime!(2025-07-10 07:55:02.5 UTC));
        state.caddies.push(CaddyStatus {
            address: "unix//run/ca\"d\\dy\nadmin.sock".into(),
            reachable: false,
            last_outcome: LastOutcome::Error,
            ..Default::default()
        });
        set_state(&ctx, state);
        for (secs, wrote) in [(0.125, true), (0.0625, true), (0.0625, false)] {
            ctx.metrics.cycle_done(secs, wrote);
        }
        for _ in 0..4 {
            ctx.metrics.cycle_done(0.0, false);
        }
        for secs in [0.125, 0.0, 0.0] {
            ctx.metrics.poll_done(secs);
        }
        for _ in 0..6 {
            ctx.metrics.poll_done(0.0625);
        }
        for _ in 0..3 {
            ctx.metrics.error("caddy_unreachable");
        }
        // Probes: rhodes answers, karoo (in grace) does not.
        ctx.metrics.probe_done("rhodes", true, 0.02);
        ctx.metrics.probe_done("karoo", false, 5.0);
        ctx
    }

    #[test]
    fn exposition_for_a_fixed_state() {
        let ctx = fixed();
        let text = ctx.metrics.encode().unwrap();
        // Label values are escaped the Prometheus way.
        assert!(
            text.contains(r#"tart_sync_caddy_up{caddy="unix//run/ca\"d\\dy\nadmin.sock"} 0"#),
            "{text}"
        );
        insta::assert_snapshot!(text);
    }

    #[test]
    fn errors_are_counted_by_kind() {
        let ctx = fixed();
        ctx.metrics.error("headscale");
        assert_eq!(ctx.metrics.errors("caddy_unreachable"), 3);
        assert_eq!(ctx.metrics.errors("headscale"), 1);
        assert_eq!(ctx.metrics.errors("headscale_auth"), 0);
        assert_eq!(ctx.metrics.cycles(), 7);
        let text = ctx.metrics.encode().unwrap();
        for line in [
            "tart_sync_errors_total{kind=\"caddy_unreachable\"} 3",
            "tart_sync_errors_total{kind=\"headscale\"} 1",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing:\n{text}");
        }
    }

    #[test]
    fn per_tart_series_follow_probes_and_the_tailnet() {
        let ctx = fixed();
        let text = ctx.metrics.encode().unwrap();
        for line in [
            "tart_sync_tart_up{name=\"rhodes\"} 1",
            "tart_sync_tart_up{name=\"karoo\"} 0",
            "tart_sync_tart_online{name=\"rhodes\"} 1",
            "tart_sync_tart_online{name=\"karoo\"} 0",
            "tart_sync_tart_online{name=\"meerkat\"} 0",
            "tart_sync_tart_probe_duration_seconds_count 2",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing:\n{text}");
        }
        ctx.metrics.forget_tart("karoo");
        let text = ctx.metrics.encode().unwrap();
        assert!(
            !text.contains("tart_sync_tart_up{name=\"karoo\"}"),
            "{text}"
        );
    }

    #[test]
    fn before_anything_happened() {
        let ctx = Context::new(settings("127.0.0.1:1", "path"));
        let text = ctx.metrics.encode().unwrap();
        assert!(text.contains("tart_sync_cycles_total 0\n"), "{text}");
        assert!(
            text.contains("tart_sync_nodes{state=\"seen\"} 0\n"),
            "{text}"
        );
        assert!(text.contains("tart_sync_headscale_up 0\n"), "{text}");
        assert!(!text.contains("tart_sync_last_sync_timestamp_seconds"));
        assert!(text.ends_with("# EOF\n"));
    }
}
