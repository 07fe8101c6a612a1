//! A headscale stand-in for large fleets: serves `GET /api/v1/node` (bearer
//! key checked) with nodes rendered by the e2e harness's [`SimNode`], and
//! swaps the whole answer atomically when a node changes (wiremock's
//! reset-and-mount would leave a gap in which a poll gets a 404).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use e2e::headscale::{SimNode, API_KEY};
use time::OffsetDateTime;
use tokio::task::JoinHandle;

use crate::Res;

/// One node's JSON when online, its JSON when offline, and whether it is online now.
type NodeBodies = (Vec<u8>, Vec<u8>, bool);

struct Shared {
    auth: String,
    body: RwLock<Bytes>,
    /// Per node: its JSON online, its JSON offline, and whether it is online now.
    nodes: Mutex<Vec<NodeBodies>>,
    /// Whether the answer ends with a newline (see [`StandIn::touch`]).
    newline: AtomicBool,
    polls: AtomicU64,
}

/// The running stand-in; stops when dropped.
pub struct StandIn {
    url: String,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl StandIn {
    /// Serves one online node per name, all with the address `ip`.
    pub async fn start(names: &[String], ip: std::net::Ipv4Addr) -> Res<StandIn> {
        let an_hour_ago = OffsetDateTime::now_utc() - time::Duration::hours(1);
        let nodes = names
            .iter()
            .enumerate()
            .map(|(i, name)| {
                let mut n = SimNode::new(i as u64 + 1, name, ip);
                n.last_seen = an_hour_ago;
                let on = serde_json::to_vec(&n.json())?;
                n.online = false;
                let off = serde_json::to_vec(&n.json())?;
                Ok((on, off, true))
            })
            .collect::<Res<Vec<_>>>()?;
        let shared = Arc::new(Shared {
            auth: format!("Bearer {API_KEY}"),
            body: RwLock::new(Bytes::new()),
            nodes: Mutex::new(nodes),
            newline: AtomicBool::new(false),
            polls: AtomicU64::new(0),
        });
        rebuild(&shared);
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

    /// Marks node `i` online or offline; returns once the stand-in answers so.
    pub fn set_online(&self, i: usize, online: bool) {
        {
            let mut nodes = self.shared.nodes.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(n) = nodes.get_mut(i) {
                n.2 = online;
            }
        }
        rebuild(&self.shared);
    }

    /// Changes the answer's bytes but not what it says (a trailing newline
    /// comes or goes): the next poll reads a changed answer with the same nodes.
    pub fn touch(&self) {
        self.shared.newline.fetch_xor(true, Ordering::Relaxed);
        rebuild(&self.shared);
    }

    /// Node listings served so far.
    pub fn polls(&self) -> u64 {
        self.shared.polls.load(Ordering::Relaxed)
    }

    /// Size of the current answer in bytes.
    pub fn body_len(&self) -> usize {
        self.shared.body.read().map(|b| b.len()).unwrap_or(0)
    }
}

impl Drop for StandIn {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Renders the answer from the node table and swaps it in (under the node
/// lock, so concurrent changes are applied in order).
fn rebuild(shared: &Shared) {
    let nodes = shared.nodes.lock().unwrap_or_else(|p| p.into_inner());
    let total: usize = nodes.iter().map(|n| n.0.len().max(n.1.len()) + 1).sum();
    let mut out = Vec::with_capacity(total + 16);
    out.extend_from_slice(b"{\"nodes\":[");
    for (i, (on, off, online)) in nodes.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(if *online { on } else { off });
    }
    out.extend_from_slice(b"]}");
    if shared.newline.load(Ordering::Relaxed) {
        out.push(b'\n');
    }
    *shared.body.write().unwrap_or_else(|p| p.into_inner()) = Bytes::from(out);
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
    let body = s.body.read().map(|b| b.clone()).unwrap_or_default();
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}
