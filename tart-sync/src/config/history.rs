//! `[history]`: where the state-change history is kept and for how long.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::source::Sources;
use super::ConfigError;

/// Default of `history.retention` (a week).
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(7 * 86_400);
/// Shortest accepted `history.retention`.
pub const MIN_RETENTION: Duration = Duration::from_secs(60);
/// Longest accepted `history.retention` (about a year).
pub const MAX_RETENTION: Duration = Duration::from_secs(366 * 86_400);

/// `[history]` settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistorySettings {
    /// `history.path`: the store file (created when missing; its directory
    /// must exist). `None` (the default): history is kept in memory only
    /// and starts empty at every start.
    pub path: Option<PathBuf>,
    /// `history.retention`: how long state changes are kept (at least 1
    /// minute, at most 366 days; default 7 days). The state at the start of
    /// the retention window is always kept.
    pub retention: Duration,
}

/// `[history]` as written.
#[derive(Default, Deserialize)]
#[serde(default, deny_unknown_fields, expecting = "a table")]
pub(super) struct HistoryInput {
    path: Option<PathBuf>,
    #[serde(with = "humantime_serde")]
    retention: Option<Duration>,
}

/// Checks `[history]` and fills in the defaults.
pub(super) fn validate(h: HistoryInput, src: &Sources<'_>) -> Result<HistorySettings, ConfigError> {
    let path = h
        .path
        .filter(|p| !p.as_os_str().is_empty())
        .map(|p| super::validate::resolve(src, "history.path", p));
    let retention = h.retention.unwrap_or(DEFAULT_RETENTION);
    if !(MIN_RETENTION..=MAX_RETENTION).contains(&retention) {
        return Err(src.invalid(
            "history.retention",
            format!(
                "{} is out of range (from 1m to 366days)",
                humantime::format_duration(retention)
            ),
        ));
    }
    Ok(HistorySettings { path, retention })
}
