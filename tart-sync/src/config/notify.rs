//! `[notify]`: webhooks on TART state changes. The URL is a secret (Slack,
//! Matrix hookshot and most receivers put a token in it): [`WebhookUrl`]
//! never shows in logs, errors or `Debug` output.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Deserializer};
use url::Url;

use super::source::Sources;
use super::ConfigError;

/// Default of `notify.timeout`.
pub const DEFAULT_NOTIFY_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest accepted `notify.timeout`.
pub const MAX_NOTIFY_TIMEOUT: Duration = Duration::from_secs(120);

/// A webhook URL. Its `Debug` prints `WebhookUrl(***)` and its `Display`
/// prints the scheme and host only; only [`WebhookUrl::expose`] reveals it.
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookUrl(Url);

impl WebhookUrl {
    /// The whole URL, to send the request. Never log it.
    pub fn expose(&self) -> &Url {
        &self.0
    }

    /// Parses an `http://` or `https://` URL with a host; the message never
    /// contains the URL.
    pub fn parse(text: &str) -> Result<WebhookUrl, &'static str> {
        let url = Url::parse(text.trim()).map_err(|_| "is not a valid URL")?;
        if url.scheme() != "http" && url.scheme() != "https" {
            return Err("must be an http:// or https:// URL");
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err("has no host");
        }
        Ok(WebhookUrl(url))
    }
}

impl fmt::Debug for WebhookUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WebhookUrl(***)")
    }
}

/// `https://hooks.example.org/***`: enough to tell which receiver, no token.
impl fmt::Display for WebhookUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let host = self.0.host_str().unwrap_or_default();
        write!(f, "{}://{host}/***", self.0.scheme())
    }
}

/// A string, kept as is until validated (never quoted in errors).
struct Raw(String);

impl<'de> Deserialize<'de> for Raw {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(Raw)
    }
}

/// `[notify]` settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotifySettings {
    /// `notify.webhook_url`: where each TART state change is POSTed as
    /// JSON; `None` (the default): no webhooks.
    pub webhook_url: Option<WebhookUrl>,
    /// `notify.timeout`: limit of one webhook request (default 10s).
    pub timeout: Duration,
}

/// `[notify]` as written.
#[derive(Default, Deserialize)]
#[serde(default, deny_unknown_fields, expecting = "a table")]
pub(super) struct NotifyInput {
    webhook_url: Option<Raw>,
    #[serde(with = "humantime_serde")]
    timeout: Option<Duration>,
}

/// Checks `[notify]` and fills in the defaults.
pub(super) fn validate(n: NotifyInput, src: &Sources<'_>) -> Result<NotifySettings, ConfigError> {
    let webhook_url = match n.webhook_url {
        Some(Raw(text)) if !text.trim().is_empty() => Some(
            WebhookUrl::parse(&text)
                .map_err(|problem| src.invalid("notify.webhook_url", problem))?,
        ),
        _ => None,
    };
    let timeout = n.timeout.unwrap_or(DEFAULT_NOTIFY_TIMEOUT);
    if timeout.is_zero() || timeout > MAX_NOTIFY_TIMEOUT {
        let message = format!(
            "{} is out of range (more than 0s, at most 2m)",
            humantime::format_duration(timeout)
        );
        return Err(src.invalid("notify.timeout", message));
    }
    Ok(NotifySettings {
        webhook_url,
        timeout,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::config::Settings;

    fn load(notify: &str) -> Result<Settings, ConfigError> {
        let toml = format!(
            "[headscale]\nurl = \"http://127.0.0.1:1\"\napi_key = \"hskey-api-test\"\n\
             [routes]\ndomain = \"tart.example.org\"\n[notify]\n{notify}\n"
        );
        Settings::from_sources(Some(&toml), &|_: &str| None, None)
    }

    #[test]
    fn the_webhook_url_never_shows() {
        let secret = "https://hooks.example.org/services/T000/B000/s3cr3t-token";
        let s = load(&format!("webhook_url = \"{secret}\"")).unwrap();
        let url = s.notify.webhook_url.clone().unwrap();
        assert_eq!(url.expose().as_str(), secret);
        for shown in [format!("{s:?}"), format!("{url}"), format!("{url:?}")] {
            assert!(!shown.contains("s3cr3t"), "{shown}");
        }
        assert_eq!(url.to_string(), "https://hooks.example.org/***");
        let err = load("webhook_url = \"ftp://x/s3cr3t\"")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("notify.webhook_url") && !err.contains("s3cr3t"),
            "{err}"
        );
        let err = load("webhook_url = \"not a url s3cr3t\"")
            .unwrap_err()
            .to_string();
        assert!(!err.contains("s3cr3t"), "{err}");
        let err = load("webhook_url = 42").unwrap_err().to_string();
        assert!(err.contains("notify.webhook_url"), "{err}");
    }

    #[test]
    fn no_webhook_by_default() {
        let s = load("").unwrap();
        assert_eq!(s.notify.webhook_url, None);
        assert_eq!(s.notify.timeout, DEFAULT_NOTIFY_TIMEOUT);
    }
}
