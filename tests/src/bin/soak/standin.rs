//! The headscale stand-in of the soak: serves `GET /api/v1/node` (bearer key
//! checked) from the model's fleet, swapping the whole answer atomically on
//! each change (wiremock's reset-and-mount would leave gaps in which a poll
//! gets a 404), and answers injected faults on request.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use e2e::backend::fleet_ip;
use e2e::headscale::{SimNode, API_KEY};
use tokio::task::JoinHandle;

use crate::model::Fleet;
use crate::SoakError;

/// A headscale fault the stand-in can answer with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// 500 with a gRPC-gateway style error body.
    Status500,
    /// Answers only after tart-sync's request timeout has passed.
    Timeout,
    /// 200 with a cut-off JSON body.
    Garbage,
}

impl Fault {
    /// Every fault.
    pub const ALL: [Fault; 3] = [Fault::Status500, Fault::Timeout, Fault::Garbage];

    /// A label for the report.
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
    /// Starts on a free port of 127.0.0.1; a timeout fault stalls each answer for `stall`.
    pub async fn start(stall: Duration) -> Result<StandIn, SoakError> {
        let shared = Arc::new(Shared {
            auth: format!("Bearer {API_KEY}"),
            body: RwLock::new(Bytes::from_static(b"{\"nodes\":[]}")),
            fault: RwLock::new(None),
            stall,
            polls: AtomicU64::new(0),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| SoakError::io("binding the headscale stand-in on 127.0.0.1", e))?;
        let addr = listener
            .local_addr()
            .map_err(|e| SoakError::io("reading the stand-in's address", e))?;
        let app = Router::new()
            .route("/api/v1/node", get(list))
            .with_state(shared.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(StandIn {
            url: format!("http://{addr}"),
            shared,
            task,
        })
    }

    /// The base URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Serves `fleet` from now on (headscale 0.28 protojson, as [`SimNode`] renders it).
    pub fn set_fleet(&self, fleet: &Fleet) {
        let nodes: Vec<serde_json::Value> = fleet
            .nodes
            .values()
            .map(|n| {
                let mut s = SimNode::new(n.id, &n.name, fleet_ip(n.addr));
                s.online = n.online;
                s.last_seen = n.last_seen;
                s.json()
            })
            .collect();
        let body = serde_json::json!({ "nodes": nodes }).to_string();
        *self.shared.body.write().unwrap_or_else(|p| p.into_inner()) = Bytes::from(body);
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
            r#"{"code":13,"message":"soak: injected fault","details":[]}"#,
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
