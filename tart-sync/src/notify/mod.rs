//! Webhooks on TART state changes (`[notify] webhook_url`): each change the
//! history records ([`crate::health::Health::subscribe`]) that is news
//! ([`Notification::of`]) is POSTed as JSON ([`body`]), in order, retried
//! with exponential backoff (backon) on connection failures, timeouts, 429
//! and 5xx answers.
//!
//! More than [`body::MAX_SINGLE`] changes seen at once become one summary
//! webhook. A webhook never blocks syncing or probing: this task reads from a
//! bounded queue ([`crate::health::RECORDED_QUEUE`] batches); while a slow
//! or failing receiver holds it up, the oldest queued changes are dropped
//! and counted (`tart_sync_errors_total{kind="notify_dropped"}`). The URL
//! holds a secret and never shows in logs or errors ([`WebhookUrl`]).

pub mod body;

use std::sync::Arc;
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{broadcast, watch};

pub use body::Notification;

use crate::config::WebhookUrl;
use crate::context::Context;
use crate::health::Batch;

/// Tries of one webhook (the first and the retries).
pub const MAX_TRIES: usize = 5;
/// The first retry's delay; it doubles up to [`MAX_RETRY_DELAY`].
pub const FIRST_RETRY_DELAY: Duration = Duration::from_millis(500);
/// Longest delay between two tries.
pub const MAX_RETRY_DELAY: Duration = Duration::from_secs(30);

/// Why one webhook failed (the URL is never part of it).
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    /// No answer: connection failure or timeout.
    #[error("webhook to {receiver} failed: {reason}")]
    Send {
        /// Scheme and host of the receiver.
        receiver: String,
        /// The error, without the URL.
        reason: String,
        /// Whether it is worth trying again.
        retry: bool,
    },
    /// The receiver answered with an error status.
    #[error(
        "webhook to {receiver} refused with HTTP {status}; check the receiver's configuration"
    )]
    Status {
        /// Scheme and host of the receiver.
        receiver: String,
        /// The status.
        status: u16,
    },
}

impl NotifyError {
    fn is_retryable(&self) -> bool {
        match self {
            NotifyError::Send { retry, .. } => *retry,
            NotifyError::Status { status, .. } => *status == 429 || *status >= 500,
        }
    }
}

/// POSTs one notification.
pub async fn send(
    client: &reqwest::Client,
    url: &WebhookUrl,
    body: &Notification,
) -> Result<(), NotifyError> {
    let receiver = url.to_string();
    let json = serde_json::to_vec(body).map_err(|e| NotifyError::Send {
        receiver: receiver.clone(),
        reason: format!("cannot encode the body: {e}"),
        retry: false,
    })?;
    let answer = client
        .post(url.expose().clone())
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(json)
        .send()
        .await
        .map_err(|e| NotifyError::Send {
            receiver: receiver.clone(),
            retry: e.is_connect() || e.is_timeout() || e.is_request(),
            reason: reason(e),
        })?;
    let status = answer.status();
    if status.is_success() {
        Ok(())
    } else {
        Err(NotifyError::Status {
            receiver,
            status: status.as_u16(),
        })
    }
}

/// What went wrong, without the URL: reqwest's message and its innermost
/// cause (e.g. "error sending request: Connection refused (os error 111)").
fn reason(e: reqwest::Error) -> String {
    let timeout = e.is_timeout();
    let e = e.without_url();
    let mut cause: &dyn std::error::Error = &e;
    while let Some(inner) = cause.source() {
        cause = inner;
    }
    let text = if timeout {
        format!("{e}: timed out")
    } else if std::ptr::addr_eq(cause, &e as &dyn std::error::Error) {
        e.to_string()
    } else {
        format!("{e}: {cause}")
    };
    crate::status::text::one_line(&text, 300)
}

/// Sends a webhook for each change `recorded` receives, until `shutdown`.
pub async fn run(
    ctx: Arc<Context>,
    url: WebhookUrl,
    mut recorded: broadcast::Receiver<Batch>,
    mut shutdown: watch::Receiver<bool>,
) {
    let client = match reqwest::Client::builder()
        .timeout(ctx.settings.notify.timeout)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("tart-sync/", env!("CARGO_PKG_VERSION")))
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e.without_url(), "cannot build the webhook client; no webhooks are sent");
            return;
        }
    };
    tracing::info!(receiver = %url, "sending a webhook on each TART state change");
    let backoff = ExponentialBuilder::default()
        .with_min_delay(FIRST_RETRY_DELAY)
        .with_max_delay(MAX_RETRY_DELAY)
        .with_max_times(MAX_TRIES.saturating_sub(1))
        .with_jitter();
    loop {
        let next = tokio::select! {
            r = recorded.recv() => r,
            _ = shutdown.changed() => return,
        };
        let batch = match next {
            Ok(batch) => batch,
            Err(RecvError::Lagged(lost)) => {
                for _ in 0..lost {
                    ctx.metrics.error("notify_dropped");
                }
                tracing::warn!(
                    lost,
                    "the webhook receiver is too slow; notifications of some changes were dropped"
                );
                continue;
            }
            Err(RecvError::Closed) => return,
        };
        let news: Vec<Notification> = batch
            .iter()
            .filter_map(|rec| {
                let name = &rec.change.name;
                let url_of_tart = crate::layout::node_url(&ctx.settings.routes, name);
                let error = ctx.health.probe(name).and_then(|p| p.error);
                Notification::of(rec, url_of_tart, error)
            })
            .collect();
        let bodies = if news.len() > body::MAX_SINGLE {
            vec![Notification::summary(&news)]
        } else {
            news
        };
        for body in bodies {
            let attempt = || send(&client, &url, &body);
            let result = attempt
                .retry(backoff)
                .when(NotifyError::is_retryable)
                .notify(|e, wait| tracing::debug!(error = %e, retry_in = ?wait, "webhook failed; retrying"));
            let result = tokio::select! {
                r = result => r,
                _ = shutdown.changed() => return,
            };
            match result {
                Ok(()) => tracing::debug!(tart = %body.tart, state = body.state, "webhook sent"),
                Err(e) => {
                    ctx.metrics.error("notify");
                    tracing::warn!(tart = %body.tart, error = %e, "webhook not delivered");
                }
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_failure_names_the_receiver_and_the_cause_never_the_url() {
        let closed = {
            let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            l.local_addr().unwrap()
        };
        let url = WebhookUrl::parse(&format!("http://{closed}/hooks/s3cr3t-token")).unwrap();
        let body = Notification {
            text: "x".into(),
            tart: "rhodes".into(),
            kind: "service",
            state: "down",
            previous: "up",
            at: time::OffsetDateTime::now_utc(),
            url: String::new(),
            error: None,
            source: "tart-sync",
        };
        let err = send(&reqwest::Client::new(), &url, &body)
            .await
            .unwrap_err();
        assert!(err.is_retryable());
        let text = err.to_string();
        assert!(
            text.starts_with(&format!("webhook to http://{}/*** failed", closed.ip())),
            "{text}"
        );
        assert!(text.to_lowercase().contains("refused"), "{text}");
        assert!(!text.contains("s3cr3t"), "{text}");
        assert!(!format!("{err:?}").contains("s3cr3t"));
    }
}
