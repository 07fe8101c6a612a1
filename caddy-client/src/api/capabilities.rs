//! Learning what the running Caddy supports, without changing its config.
//!
//! Caddy has no version endpoint, and its JSON decoding is strict: a field it
//! does not know fails the whole config change (Caddy 2.6 rejects
//! `stream_close_delay`, added in 2.7.0). [`Client::capabilities`] asks
//! `/adapt` to adapt tiny Caddyfiles that use newer syntax (adapting loads
//! nothing) and looks at where a GET's ETag arrives (header from 2.8, trailer
//! before). The result says which optional fields are safe to send.

use reqwest::header::ETAG;
use reqwest::Method;

use crate::client::RawRequest;
use crate::{Client, Error};

/// What the running Caddy accepts. Built by [`Client::capabilities`].
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Capabilities {
    /// `reverse_proxy` accepts `stream_close_delay`/`stream_timeout` (2.7.0+): WebSockets can
    /// outlive a reload.
    pub stream_close_delay: bool,
    /// The `client_ip` matcher exists (2.7.0+).
    pub client_ip_matcher: bool,
    /// The ETag comes as a header (2.8+), not as an HTTP trailer (2.5.2–2.7).
    pub etag_header: bool,
}

impl Capabilities {
    /// The oldest Caddy version consistent with these capabilities, e.g. `"2.8"`.
    pub fn min_version(&self) -> &'static str {
        if self.etag_header {
            "2.8"
        } else if self.stream_close_delay || self.client_ip_matcher {
            "2.7"
        } else {
            "2.6"
        }
    }
}

const PROBE_STREAM_CLOSE_DELAY: &str =
    "http://127.0.0.1:1 {\n\treverse_proxy 127.0.0.1:1 {\n\t\tstream_close_delay 1s\n\t}\n}\n";
const PROBE_CLIENT_IP: &str =
    "http://127.0.0.1:1 {\n\t@p client_ip 127.0.0.1\n\trespond @p 200\n}\n";

impl Client {
    /// Probes what the running Caddy supports. Sends two `/adapt` requests and one
    /// small GET (`/config/admin`); changes nothing and causes no reload.
    pub async fn capabilities(&self) -> Result<Capabilities, Error> {
        let stream_close_delay = self.adapts(PROBE_STREAM_CLOSE_DELAY).await?;
        let client_ip_matcher = self.adapts(PROBE_CLIENT_IP).await?;
        let resp = self
            .send_ok(RawRequest::new(Method::GET, "/config/admin"))
            .await?;
        let etag_header = resp.headers.contains_key(ETAG);
        Ok(Capabilities {
            stream_close_delay,
            client_ip_matcher,
            etag_header,
        })
    }

    /// True if Caddy adapts this Caddyfile; false if its adapter rejects it (400).
    async fn adapts(&self, caddyfile: &str) -> Result<bool, Error> {
        match self.adapt_as::<serde_json::Value>(caddyfile).await {
            Ok(_) => Ok(true),
            Err(e) if e.status() == Some(400) => Ok(false),
            Err(e) => Err(e),
        }
    }
}
