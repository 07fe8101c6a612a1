//! A headscale stand-in for fleets that change often: serves
//! `GET /api/v1/node` (bearer key checked) with whatever answer it was last
//! given, swapped atomically (wiremock's reset-and-mount would leave a gap in
//! which a poll gets a 404), and answers injected faults on request. The
//! benchmark and the soak driver build their answers on top of it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use tokio::task::JoinHandle;

use crate::headscale::API_KEY;

/// A headscale fault the stand-in can answer with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// 500 with a gRPC-gateway style error body.
    Status500,
    /// Answers only after the stand-in's stall time (past tart-sync's timeout).
    Timeout,
    /// 200 with a cut-off JSON body.
    Garbage,
}

impl Fault {
    /// Every fault.
    pub const ALL: [Fault; 3] = [Fault::Status500, Fault::Timeout, Fault::Garbage];

    /// A label for reports.
    pub fn label(self) -> &'static str {
        match self {
            Fault::Status500 => "HTTP 500",
            Fault::Timeout => "timeout",
            Fault::Garbage => "garbage JSON",
        }
    }
}

struct Shared {
    auth: String,
    body: RwLock<Bytes>,
    fault: RwLock<Option<Fault>>,
    /// How long a [`Fault::Timeout`] answer waits.
    stall: Duration,
    polls: AtomicU64,
}

/// The running stand-in; stops when dropped.
pub struct StandIn {
    url: String,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl StandIn {
    /// Starts on a free port of 127.0.0.1 answering an empty node list; a
    /// timeout fault stalls each answer for `stall`.
    pub async fn start(stall: Duration) -> std::io::Result<StandIn> {
        let shared = Arc::new(Shared {
            auth: format!("Bearer {API_KEY}"),
            body: RwLock::new(Bytes::from_static(b"{\"nodes\":[]}")),
            fault: RwLock::new(None),
            stall,
            polls: AtomicU64::new(0),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let app = Router::new()
            .route("/api/v1/node", get(list))
            .with_state(shared.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(StandIn { url, shared, task })
    }

    /// The base URL (`http://127.0.0.1:PORT`).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Answers `body` (a node list as JSON) from now on.
    pub fn set_body(&self, body: impl Into<Bytes>) {
        *self.shared.body.write().unwrap_or_else(|p| p.into_inner()) = body.into();
    }

    /// Size of the current answer in bytes.
    pub fn body_len(&self) -> usize {
        self.shared.body.read().map(|b| b.len()).unwrap_or(0)
    }

    /// Starts (`Some`) or ends (`None`) a fault.
    pub fn set_fault(&self, fault: Option<Fault>) {
        *self.shared.fault.write().unwrap_or_else(|p| p.into_inner()) = fault;
    }

    /// Node listings requested so far.
    pub fn polls(&self) -> u64 {
        self.shared.polls.load(Ordering::Relaxed)
    }
}

impl Drop for StandIn {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn list(State(s): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    s.polls.fetch_add(1, Ordering::Relaxed);
    let authorized = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        == Some(s.auth.as_str());
    if !authorized {
        return (StatusCode::UNAUTHORIZED, "Unauthorized").into_response();
    }
    let fault = *s.fault.read().unwrap_or_else(|p| p.into_inner());
    let body = s.body.read().map(|b| b.clone()).unwrap_or_default();
    let json = [(header::CONTENT_TYPE, "application/json")];
    match fault {
        None => (json, body).into_response(),
        Some(Fault::Status500) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            json,
            r#"{"code":13,"message":"stand-in: injected fault","details":[]}"#,
        )
            .into_response(),
        Some(Fault::Garbage) => (json, body.slice(..body.len() / 2)).into_response(),
        Some(Fault::Timeout) => {
            // Bounded: answers after `stall` (tart-sync has given up by then).
            tokio::time::sleep(s.stall).await;
            (json, body).into_response()
        }
    }
}
