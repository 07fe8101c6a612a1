//! `/reverse_proxy/upstreams`: the reverse proxies' view of their upstreams.

use reqwest::Method;
use serde::{Deserialize, Serialize};

use crate::client::RawRequest;
use crate::{Client, Error};

/// One upstream as Caddy reports it. There is one entry per dial address,
/// shared by every `reverse_proxy` handler that uses it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct UpstreamStatus {
    /// The dial address, e.g. `100.64.0.1:80`.
    pub address: String,
    /// Requests in flight to this upstream right now (not a total).
    #[serde(default)]
    pub num_requests: i64,
    /// Recent failures counted by passive health checks.
    #[serde(default)]
    pub fails: i64,
    /// Fields added by newer Caddy versions.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl Client {
    /// The upstreams of all `reverse_proxy` handlers (`GET /reverse_proxy/upstreams`).
    pub async fn upstreams(&self) -> Result<Vec<UpstreamStatus>, Error> {
        let resp = self
            .send_ok(RawRequest::new(Method::GET, "/reverse_proxy/upstreams"))
            .await?;
        Ok(resp
            .json::<Option<Vec<UpstreamStatus>>>()?
            .unwrap_or_default())
    }
}
