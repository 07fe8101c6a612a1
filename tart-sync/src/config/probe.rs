//! `[probe]`: the reachability probes of each routed TART's web service.

use std::time::Duration;

use serde::Deserialize;

use super::source::Sources;
use super::ConfigError;

/// Default of `probe.interval`.
pub const DEFAULT_PROBE_INTERVAL: Duration = Duration::from_secs(30);
/// Shortest accepted `probe.interval`.
pub const MIN_PROBE_INTERVAL: Duration = Duration::from_millis(100);
/// Longest accepted `probe.interval` (one day).
pub const MAX_PROBE_INTERVAL: Duration = Duration::from_secs(86_400);
/// Default of `probe.timeout`.
pub const DEFAULT_PROBE_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest accepted `probe.timeout`.
pub const MAX_PROBE_TIMEOUT: Duration = Duration::from_secs(120);
/// Default of `probe.concurrency`.
pub const DEFAULT_PROBE_CONCURRENCY: usize = 32;
/// Largest accepted `probe.concurrency`.
pub const MAX_PROBE_CONCURRENCY: usize = 1024;
/// Default of `probe.max_rate` (probes per second over all TARTs).
pub const DEFAULT_PROBE_MAX_RATE: u32 = 50;
/// Largest accepted `probe.max_rate`.
pub const MAX_PROBE_MAX_RATE: u32 = 10_000;

/// `[probe]` settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeSettings {
    /// `probe.enabled`: probe at all (default true).
    pub enabled: bool,
    /// `probe.interval`: time between two probes of one TART (default 30s),
    /// stretched when `max_rate` would be exceeded.
    pub interval: Duration,
    /// `probe.timeout`: limit of one probe, connecting included (default 5s).
    pub timeout: Duration,
    /// `probe.concurrency`: most probes in flight at once (default 32).
    pub concurrency: usize,
    /// `probe.max_rate`: most probes started per second over all TARTs
    /// (default 50): at 10,000 TARTs the interval stretches to 200 s.
    pub max_rate: u32,
    /// `probe.path`: the path (and query) requested, starting with `/`
    /// (default `/`).
    pub path: String,
}

/// `[probe]` as written.
#[derive(Default, Deserialize)]
#[serde(default, deny_unknown_fields, expecting = "a table")]
pub(super) struct ProbeInput {
    enabled: Option<bool>,
    #[serde(with = "humantime_serde")]
    interval: Option<Duration>,
    #[serde(with = "humantime_serde")]
    timeout: Option<Duration>,
    concurrency: Option<usize>,
    max_rate: Option<u32>,
    path: Option<String>,
}

/// Checks `[probe]` and fills in the defaults.
pub(super) fn validate(p: ProbeInput, src: &Sources<'_>) -> Result<ProbeSettings, ConfigError> {
    let shown = |d: Duration| humantime::format_duration(d).to_string();
    let interval = p.interval.unwrap_or(DEFAULT_PROBE_INTERVAL);
    if !(MIN_PROBE_INTERVAL..=MAX_PROBE_INTERVAL).contains(&interval) {
        let message = format!("{} is out of range (from 100ms to 1day)", shown(interval));
        return Err(src.invalid("probe.interval", message));
    }
    let timeout = p.timeout.unwrap_or(DEFAULT_PROBE_TIMEOUT);
    if timeout.is_zero() || timeout > MAX_PROBE_TIMEOUT {
        let message = format!(
            "{} is out of range (more than 0s, at most 2m)",
            shown(timeout)
        );
        return Err(src.invalid("probe.timeout", message));
    }
    let concurrency = p.concurrency.unwrap_or(DEFAULT_PROBE_CONCURRENCY);
    if !(1..=MAX_PROBE_CONCURRENCY).contains(&concurrency) {
        let message = format!("{concurrency} is out of range (from 1 to {MAX_PROBE_CONCURRENCY})");
        return Err(src.invalid("probe.concurrency", message));
    }
    let max_rate = p.max_rate.unwrap_or(DEFAULT_PROBE_MAX_RATE);
    if !(1..=MAX_PROBE_MAX_RATE).contains(&max_rate) {
        let message = format!(
            "{max_rate} is out of range (from 1 to {MAX_PROBE_MAX_RATE} probes per second)"
        );
        return Err(src.invalid("probe.max_rate", message));
    }
    let path = p.path.unwrap_or_else(|| "/".to_owned());
    let printable = path.bytes().all(|b| b.is_ascii_graphic());
    if !path.starts_with('/') || !printable || path.contains('#') {
        let message = format!(
            "{path:?} is not a request path (it starts with /, has no spaces, control characters or #, e.g. \"/\" or \"/health\")"
        );
        return Err(src.invalid("probe.path", message));
    }
    Ok(ProbeSettings {
        enabled: p.enabled.unwrap_or(true),
        interval,
        timeout,
        concurrency,
        max_rate,
        path,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::config::Settings;

    fn load(probe: &str, env: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        let toml = format!(
            "[headscale]\nurl = \"http://127.0.0.1:1\"\napi_key = \"hskey-api-test\"\n\
             [routes]\ndomain = \"tart.example.org\"\n[probe]\n{probe}\n"
        );
        let env: HashMap<String, String> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Settings::from_sources(Some(&toml), &|k: &str| env.get(k).cloned(), None)
    }

    #[test]
    fn defaults_and_environment() {
        let s = load("", &[]).unwrap().probe;
        assert!(s.enabled);
        assert_eq!(
            (s.interval, s.timeout),
            (DEFAULT_PROBE_INTERVAL, DEFAULT_PROBE_TIMEOUT)
        );
        assert_eq!((s.concurrency, s.max_rate, s.path.as_str()), (32, 50, "/"));
        let s = load(
            "enabled = true",
            &[
                ("TART_SYNC_PROBE_ENABLED", "False"),
                ("TART_SYNC_PROBE_PATH", "/health"),
            ],
        )
        .unwrap()
        .probe;
        assert!(!s.enabled);
        assert_eq!(s.path, "/health");
        let err = load("", &[("TART_SYNC_PROBE_ENABLED", "maybe")])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("probe.enabled") && err.contains("TART_SYNC_PROBE_ENABLED"),
            "{err}"
        );
    }

    #[test]
    fn bad_values_name_the_setting() {
        for (text, setting) in [
            ("interval = \"10ms\"", "probe.interval"),
            ("timeout = \"0s\"", "probe.timeout"),
            ("concurrency = 0", "probe.concurrency"),
            ("max_rate = 0", "probe.max_rate"),
            ("path = \"health\"", "probe.path"),
            ("path = \"/a b\"", "probe.path"),
            ("pth = \"/\"", "pth"),
        ] {
            let err = load(text, &[]).unwrap_err().to_string();
            assert!(err.contains(setting), "{text}: {err}");
        }
    }
}
