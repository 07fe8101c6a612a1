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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;

    fn settings(timeout: Duration) -> ProbeSettings {
        ProbeSettings {
            enabled: true,
            interval: Duration::from_secs(1),
            timeout,
            concurrency: 1,
            max_rate: 10,
            path: "/health".into(),
        }
    }

    /// A server that answers each connection with `answer` (or nothing),
    /// and hands back the request it read.
    async fn server(answer: Option<&'static str>) -> (String, tokio::task::JoinHandle<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let task = tokio::spawn(async move {
            let (mut conn, _) = listener.accept().await.unwrap();
            let mut buf = vec![0u8; 4096];
            let n = conn.read(&mut buf).await.unwrap_or(0);
            match answer {
                Some(a) => conn.write_all(a.as_bytes()).await.unwrap(),
                None => tokio::time::sleep(Duration::from_secs(5)).await,
            }
            String::from_utf8_lossy(&buf[..n]).into_owned()
        });
        (addr, task)
    }

    #[tokio::test]
    async fn any_http_answer_is_up_with_its_status() {
        let (addr, request) =
            server(Some("HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n")).await;
        let s = settings(Duration::from_secs(2));
        let o = probe(&client(&s).unwrap(), &addr, &s.path, s.timeout).await;
        assert_eq!(
            (o.state, o.http_status, o.error),
            (ServiceState::Up, Some(404), None)
        );
        assert!(o.latency.is_some());
        let request = request.await.unwrap();
        assert!(request.starts_with("GET /health HTTP/1.1\r\n"), "{request}");
        // A redirect is an answer, not followed.
        let (addr, _) = server(Some(
            "HTTP/1.1 302 Found\r\nlocation: http://192.0.2.1/\r\ncontent-length: 0\r\n\r\n",
        ))
        .await;
        let o = probe(&client(&s).unwrap(), &addr, "/", s.timeout).await;
        assert_eq!((o.state, o.http_status), (ServiceState::Up, Some(302)));
    }

    #[tokio::test]
    async fn refused_silent_and_garbage_are_down_with_a_reason() {
        let s = settings(Duration::from_millis(300));
        let c = client(&s).unwrap();
        let closed = {
            let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
            l.local_addr().unwrap().to_string()
        };
        let o = probe(&c, &closed, "/", s.timeout).await;
        assert_eq!(
            (o.state, o.http_status, o.latency),
            (ServiceState::Down, None, None)
        );
        let e = o.error.unwrap();
        assert!(e.starts_with(&format!("{closed}: cannot connect")), "{e}");

        let (silent, _) = server(None).await;
        let o = probe(&c, &silent, "/", s.timeout).await;
        assert_eq!(o.state, ServiceState::Down);
        assert_eq!(
            o.error.unwrap(),
            format!("{silent}: no answer within 300ms")
        );
        assert!(o.took >= Duration::from_millis(300) && o.took < Duration::from_secs(3));

        let (garbage, _) = server(Some("SSH-2.0-OpenSSH_9.6\r\n")).await;
        let o = probe(&c, &garbage, "/", s.timeout).await;
        assert_eq!(o.state, ServiceState::Down);
        assert!(o.error.unwrap().contains("no HTTP answer"));
    }
}
