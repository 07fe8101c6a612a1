//! One probe: `GET <probe.path>` on a TART's upstream (its dial address,
//! through the tailnet), bounded by `probe.timeout`.

use std::time::{Duration, Instant};

use crate::config::ProbeSettings;
use crate::health::ServiceState;

/// What one probe found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// Up when an HTTP answer came back (any status), else down.
    pub state: ServiceState,
    /// The answer's status.
    pub http_status: Option<u16>,
    /// Time to the answer's headers (when there was one).
    pub latency: Option<Duration>,
    /// How long the probe took, answered or not.
    pub took: Duration,
    /// Why it failed, in one line: the address and the kind of failure.
    pub error: Option<String>,
}

/// The HTTP client probes use: no redirects followed (a redirect is an
/// answer), no proxy, no kept-alive connections (every probe connects, as
/// a visitor's first request would), bounded by `probe.timeout`.
pub fn client(settings: &ProbeSettings) -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .timeout(settings.timeout)
        .connect_timeout(settings.timeout)
        .redirect(reqwest::redirect::Policy::none())
        .pool_max_idle_per_host(0)
        .no_proxy()
        .user_agent(concat!("tart-sync-probe/", env!("CARGO_PKG_VERSION")))
        .build()
}

/// Probes `upstream` (`host:port`) at `path`.
pub async fn probe(
    client: &reqwest::Client,
    upstream: &str,
    path: &str,
    timeout: Duration,
) -> Outcome {
    let started = Instant::now();
    let down = |error: String| Outcome {
        state: ServiceState::Down,
        http_status: None,
        latency: None,
        took: started.elapsed(),
        error: Some(error),
    };
    let url = match reqwest::Url::parse(&format!("http://{upstream}{path}")) {
        Ok(u) => u,
        Err(e) => return down(format!("{upstream}: not a probe address: {e}")),
    };
    match client.get(url).send().await {
        Ok(answer) => {
            let latency = started.elapsed();
            Outcome {
                state: ServiceState::Up,
                http_status: Some(answer.status().as_u16()),
                latency: Some(latency),
                took: latency,
                error: None,
            }
        }
        Err(e) => down(describe(&e, upstream, timeout)),
    }
}

/// One line: `100.64.0.7:80: timed out after 5s`, `...: connection refused`.
fn describe(e: &reqwest::Error, upstream: &str, timeout: Duration) -> String {
    if e.is_timeout() {
        return format!(
            "{upstream}: no answer within {}",
            humantime::format_duration(timeout)
        );
    }
    // The innermost cause says most (e.g. "Connection refused (os error 111)").
    let mut cause: &dyn std::error::Error = e;
    while let Some(inner) = cause.source() {
        cause = inner;
    }
    let what = if e.is_connect() {
        "cannot connect"
    } else {
        "no HTTP answer"
    };
    crate::status::text::one_line(&format!("{upstream}: {what}: {cause}"), 300)
}
