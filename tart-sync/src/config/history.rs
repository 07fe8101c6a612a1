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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::Settings;

    fn load(history: &str) -> Result<Settings, ConfigError> {
        let toml = format!(
            "[headscale]\nurl = \"http://127.0.0.1:1\"\napi_key = \"hskey-api-test\"\n\
             [routes]\ndomain = \"tart.example.org\"\n[history]\n{history}\n"
        );
        let file = Path::new("/etc/tart-sync/tart-sync.toml");
        Settings::from_sources(Some(&toml), &|_: &str| None, Some(file))
    }

    #[test]
    fn memory_only_by_default_and_paths_relative_to_the_file() {
        let s = load("").unwrap().history;
        assert_eq!((s.path, s.retention), (None, DEFAULT_RETENTION));
        let s = load("path = \"history.redb\"\nretention = \"2days\"")
            .unwrap()
            .history;
        assert_eq!(
            s.path.as_deref(),
            Some(Path::new("/etc/tart-sync/history.redb"))
        );
        assert_eq!(s.retention, Duration::from_secs(2 * 86_400));
        let err = load("retention = \"1s\"").unwrap_err().to_string();
        assert!(err.contains("history.retention"), "{err}");
    }
}
