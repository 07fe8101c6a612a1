//! Caddy's own view of the upstreams (`/reverse_proxy/upstreams`), asked of
//! every Caddy for the report: in-flight requests and recent passive-health
//! fails, summed over the Caddies that answered.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use caddy_client::{Client, UpstreamStatus};
use serde::Serialize;

use crate::config::CaddySettings;

/// How long the page waits for one Caddy's `/reverse_proxy/upstreams`.
const UPSTREAMS_TIMEOUT: Duration = Duration::from_secs(2);

/// Caddy's view of one upstream, summed over the Caddy instances that list it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub(super) struct UpstreamHealth {
    pub(super) num_requests: i64,
    pub(super) fails: i64,
}

/// Upstream health by dial address; `None` when no Caddy answered.
pub(super) type Health = Option<HashMap<String, UpstreamHealth>>;

/// Sums the upstream lists of the Caddy instances that answered.
fn merge_health(answers: &[Option<Vec<UpstreamStatus>>]) -> Health {
    let mut any = false;
    let mut out: HashMap<String, UpstreamHealth> = HashMap::new();
    for list in answers.iter().flatten() {
        any = true;
        for u in list {
            let h = out.entry(u.address.clone()).or_default();
            h.num_requests = h.num_requests.saturating_add(u.num_requests);
            h.fails = h.fails.saturating_add(u.fails);
        }
    }
    any.then_some(out)
}

/// One admin API client per configured Caddy, built once, to read upstream
/// health: built like the reconcile's ([`CaddySettings::client_builder`]),
/// with reads limited to [`UPSTREAMS_TIMEOUT`] (a page must not wait long);
/// a Caddy whose client cannot be built is shown without health.
#[derive(Clone)]
pub(super) struct HealthSource(Arc<Vec<Option<Client>>>);

impl HealthSource {
    pub(super) fn new(caddy: &CaddySettings) -> HealthSource {
        let read = caddy.timeout.min(UPSTREAMS_TIMEOUT);
        let clients = caddy
            .admin
            .iter()
            .map(|a| {
                caddy
                    .client_builder(a)
                    .timeout(read)
                    .connect_timeout(read)
                    .build()
                    .map_err(|e| tracing::debug!(caddy = %a, error = %e, "no upstream health for this Caddy"))
                    .ok()
            })
            .collect();
        HealthSource(Arc::new(clients))
    }

    /// Asks every Caddy for its upstreams, concurrently, each bounded by a timeout.
    pub(super) async fn fetch(&self) -> Health {
        let limit = UPSTREAMS_TIMEOUT + Duration::from_millis(500);
        let tasks: Vec<_> = (self.0.iter().flatten().cloned())
            .map(|client| {
                tokio::spawn(async move {
                    match tokio::time::timeout(limit, client.upstreams()).await {
                        Ok(Ok(list)) => Some(list),
                        Ok(Err(e)) => {
                            tracing::debug!(caddy = %client.address(), error = %e, "reading upstreams failed");
                            None
                        }
                        Err(_) => None,
                    }
                })
            })
            .collect();
        let mut answers = Vec::with_capacity(tasks.len());
        for task in tasks {
            answers.push(task.await.ok().flatten());
        }
        merge_health(&answers)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn health_is_summed_over_caddies_that_answered() {
        let up = |a: &str, n, f| UpstreamStatus {
            address: a.into(),
            num_requests: n,
            fails: f,
            ..Default::default()
        };
        assert_eq!(merge_health(&[None, None]), None);
        let h = merge_health(&[
            Some(vec![up("a:80", 1, 0)]),
            None,
            Some(vec![up("a:80", 2, 3), up("b:80", 0, 0)]),
        ])
        .unwrap();
        assert_eq!(
            h["a:80"],
            UpstreamHealth {
                num_requests: 3,
                fails: 3
            }
        );
        assert_eq!(h["b:80"], UpstreamHealth::default());
        assert_eq!(merge_health(&[Some(vec![])]), Some(HashMap::new()));
    }
}
