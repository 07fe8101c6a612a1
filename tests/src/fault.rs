//! Fault injection for the outage tests (`tests/fault_e2e.rs`): raw TCP
//! servers that misbehave in ways an HTTP mock cannot, switchable at run time.
//!
//! - [`AdminProxy`]: sits between tart-sync and Caddy's admin API. Every
//!   request is read (head and `Content-Length` body) and, unless faulted,
//!   forwarded to Caddy over a fresh connection with `Connection: close`;
//!   Caddy's answer is relayed byte for byte until Caddy closes, so the ETag
//!   that Caddy 2.6/2.7 send as an HTTP trailer of a chunked body arrives
//!   intact. A `PATCH` can be answered 500, left unanswered, cut mid-body, or
//!   held until the fault is switched off ([`AdminFault`]).
//!
//!   Host: Caddy's admin API refuses a request whose Host is not its own
//!   listen address (403 "host not allowed"), and `127.0.0.1:<proxy port>` is
//!   not. The proxy rewrites Host to Caddy's admin address, as a transparent
//!   reverse proxy in front of the admin API would; the alternative, adding
//!   the proxy's address to `admin.origins`, would test a Caddyfile other
//!   than the shipped `Caddyfile.example`.
//! - [`HeadscaleFaults`]: a stand-in for headscale's `GET /api/v1/node` that
//!   answers the nodes it is given, or drips, floods or cuts its answer
//!   ([`HsFault`]).
//!
//! Both listen on 127.0.0.1 and stop (with every connection they hold) when
//! dropped.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

use crate::headscale::{SimNode, API_KEY};

/// Largest request head read (bytes).
const MAX_HEAD: usize = 64 * 1024;
/// Largest request body read (bytes): a route table of a few thousand TARTs.
const MAX_BODY: usize = 64 * 1024 * 1024;

/// One HTTP/1.1 request as read off the wire.
#[derive(Debug, Clone)]
pub struct Request {
    /// `GET`, `PATCH`, ...
    pub method: String,
    /// The request target, e.g. `/id/tart-sync`.
    pub target: String,
    /// Header lines, as sent.
    pub headers: Vec<(String, String)>,
    /// The body (`Content-Length` bytes).
    pub body: Vec<u8>,
}

impl Request {
    /// The first header named `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Reads one request; `None` when the peer closed or sent something that is
/// not a request with a `Content-Length` body (or none).
async fn read_request<R: AsyncRead + Unpin>(conn: &mut R) -> Option<Request> {
    let mut buf = Vec::with_capacity(4096);
    let end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        if buf.len() > MAX_HEAD {
            return None;
        }
        let mut chunk = [0u8; 4096];
        let n = conn.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut first = lines.next()?.split(' ');
    let method = first.next()?.to_string();
    let target = first.next()?.to_string();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
        .collect();
    let mut req = Request {
        method,
        target,
        headers,
        body: Vec::new(),
    };
    if req
        .header("transfer-encoding")
        .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
    {
        return None; // not needed: caddy-client and reqwest send Content-Length
    }
    let len: usize = req
        .header("content-length")
        .map(|v| v.parse().ok())
        .unwrap_or(Some(0))?;
    if len > MAX_BODY {
        return None;
    }
    let mut body = buf[end + 4..].to_vec();
    while body.len() < len {
        let mut chunk = vec![0u8; (len - body.len()).min(64 * 1024)];
        let n = conn.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    body.truncate(len);
    req.body = body;
    Some(req)
}

/// What the admin proxy does with a `PATCH` (every other request is forwarded).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdminFault {
    /// Forward it.
    Off,
    /// Answer `500 Internal Server Error` without forwarding.
    Status500,
    /// Never answer; the connection stays open until the fault is switched
    /// off (then it is closed unanswered) or the proxy stops.
    Hang,
    /// Answer `200` announcing a body of 200 bytes, send 20 and close,
    /// without forwarding.
    CutBody,
    /// Hold it until the fault is switched off, then forward it (to whatever
    /// listens at Caddy's address then): a window to kill Caddy between
    /// tart-sync's read and its write.
    Hold,
}

/// What the proxy has seen.
#[derive(Debug, Default)]
struct ProxyCounts {
    /// `PATCH` requests that met a fault (held ones included).
    faulted: AtomicUsize,
    /// `PATCH` requests being held right now.
    held: AtomicUsize,
    /// Requests forwarded, as `METHOD target`.
    forwarded: Mutex<Vec<String>>,
}

/// A fault-injecting proxy for Caddy's admin API; stops when dropped.
pub struct AdminProxy {
    /// The address tart-sync is pointed at: `127.0.0.1:PORT`.
    pub address: String,
    fault: watch::Sender<AdminFault>,
    counts: Arc<ProxyCounts>,
    task: JoinHandle<()>,
}

impl AdminProxy {
    /// A proxy for the admin API at `caddy_admin` (`127.0.0.1:PORT`).
    pub async fn start(caddy_admin: &str) -> AdminProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let (fault, rx) = watch::channel(AdminFault::Off);
        let counts = Arc::new(ProxyCounts::default());
        let upstream = caddy_admin.to_string();
        let c = counts.clone();
        let task = tokio::spawn(async move {
            // Dropped (and every connection task aborted) when the proxy stops.
            let mut conns = JoinSet::new();
            loop {
                let Ok((conn, _)) = listener.accept().await else {
                    continue;
                };
                while conns.try_join_next().is_some() {}
                conns.spawn(admin_conn(conn, upstream.clone(), rx.clone(), c.clone()));
            }
        });
        AdminProxy {
            address,
            fault,
            counts,
            task,
        }
    }

    /// Switches the fault for the `PATCH` requests that arrive from now on
    /// (and releases hung or held ones when it changes).
    pub fn set(&self, fault: AdminFault) {
        self.fault.send_replace(fault);
    }

    /// `PATCH` requests that met a fault so far.
    pub fn faulted(&self) -> usize {
        self.counts.faulted.load(Ordering::SeqCst)
    }

    /// `PATCH` requests held right now ([`AdminFault::Hold`]).
    pub fn held(&self) -> usize {
        self.counts.held.load(Ordering::SeqCst)
    }

    /// Requests forwarded to Caddy so far, as `METHOD target`.
    pub fn forwarded(&self) -> Vec<String> {
        self.counts.forwarded.lock().unwrap().clone()
    }
}

impl Drop for AdminProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn admin_conn(
    mut conn: TcpStream,
    upstream: String,
    mut fault: watch::Receiver<AdminFault>,
    counts: Arc<ProxyCounts>,
) {
    let Some(req) = read_request(&mut conn).await else {
        return;
    };
    if req.method == "PATCH" {
        let now = *fault.borrow_and_update();
        if now != AdminFault::Off {
            counts.faulted.fetch_add(1, Ordering::SeqCst);
        }
        match now {
            AdminFault::Off => {}
            AdminFault::Status500 => {
                let body = r#"{"error":"injected fault: internal server error"}"#;
                let answer = format!(
                    "HTTP/1.1 500 Internal Server Error\r\nContent-Type: application/json\r\n\
                     Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = conn.write_all(answer.as_bytes()).await;
                let _ = conn.shutdown().await;
                return;
            }
            AdminFault::Hang => {
                // Until the fault changes (or the proxy stops); then closed unanswered.
                let _ = fault.changed().await;
                return;
            }
            AdminFault::CutBody => {
                let answer = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\
                              Content-Length: 200\r\nConnection: close\r\n\r\n{\"partial\":";
                let _ = conn.write_all(answer.as_bytes()).await;
                let _ = conn.shutdown().await;
                return;
            }
            AdminFault::Hold => {
                counts.held.fetch_add(1, Ordering::SeqCst);
                let _ = fault.wait_for(|f| *f != AdminFault::Hold).await;
                counts.held.fetch_sub(1, Ordering::SeqCst);
            }
        }
    }
    counts
        .forwarded
        .lock()
        .unwrap()
        .push(format!("{} {}", req.method, req.target));
    // Caddy down: the client sees its connection closed, as after a crash.
    let Ok(mut up) = TcpStream::connect(&upstream).await else {
        return;
    };
    let mut head = format!(
        "{} {} HTTP/1.1\r\nHost: {upstream}\r\nConnection: close\r\n",
        req.method, req.target
    );
    for (name, value) in &req.headers {
        if ["host", "connection", "keep-alive"]
            .iter()
            .any(|h| name.eq_ignore_ascii_case(h))
        {
            continue;
        }
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    if up.write_all(head.as_bytes()).await.is_err() || up.write_all(&req.body).await.is_err() {
        return;
    }
    // Caddy's answer, verbatim (trailers included), until Caddy closes.
    let _ = tokio::io::copy(&mut up, &mut conn).await;
    let _ = conn.shutdown().await;
}

/// How the headscale stand-in answers `GET /api/v1/node`.
#[derive(Debug, Clone)]
pub enum HsFault {
    /// The nodes it was given, as headscale 0.28 does (with `Content-Length`).
    Off,
    /// The answer's head at once, then its body one byte per second.
    Drip,
    /// 40 MB of body, chunked (no length announced up front).
    Huge,
    /// 40 MB of body, announced by `Content-Length`.
    HugeAnnounced,
    /// Announces the whole answer, sends half of it and closes.
    CutMidBody,
}

/// The size of [`HsFault::Huge`]'s body.
pub const HUGE_BYTES: usize = 40_000_000;

#[derive(Debug)]
struct HsShared {
    fault: Mutex<HsFault>,
    nodes: Mutex<Vec<SimNode>>,
    /// Node-list requests answered (or started) so far.
    requests: AtomicUsize,
    /// Body bytes sent so far, all answers together.
    sent: AtomicU64,
}

/// A headscale stand-in that can misbehave; stops when dropped.
pub struct HeadscaleFaults {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    shared: Arc<HsShared>,
    task: JoinHandle<()>,
}

impl HeadscaleFaults {
    /// Starts serving an empty node list.
    pub async fn start() -> HeadscaleFaults {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let shared = Arc::new(HsShared {
            fault: Mutex::new(HsFault::Off),
            nodes: Mutex::new(Vec::new()),
            requests: AtomicUsize::new(0),
            sent: AtomicU64::new(0),
        });
        let s = shared.clone();
        let task = tokio::spawn(async move {
            let mut conns = JoinSet::new();
            loop {
                let Ok((conn, _)) = listener.accept().await else {
                    continue;
                };
                while conns.try_join_next().is_some() {}
                conns.spawn(hs_conn(conn, s.clone()));
            }
        });
        HeadscaleFaults { url, shared, task }
    }

    /// Serves these nodes when healthy.
    pub fn set_nodes(&self, nodes: &[SimNode]) {
        *self.shared.nodes.lock().unwrap() = nodes.to_vec();
    }

    /// Switches the fault for the requests that arrive from now on.
    pub fn set(&self, fault: HsFault) {
        *self.shared.fault.lock().unwrap() = fault;
    }

    /// Node-list requests so far.
    pub fn requests(&self) -> usize {
        self.shared.requests.load(Ordering::SeqCst)
    }

    /// Body bytes sent so far.
    pub fn sent(&self) -> u64 {
        self.shared.sent.load(Ordering::SeqCst)
    }
}

impl Drop for HeadscaleFaults {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn hs_conn(mut conn: TcpStream, shared: Arc<HsShared>) {
    // One request per connection, like the admin proxy: keeps it simple.
    let Some(req) = read_request(&mut conn).await else {
        return;
    };
    let path = req.target.split('?').next().unwrap_or("");
    if req.method != "GET" || path != "/api/v1/node" {
        let _ = conn
            .write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            .await;
        return;
    }
    if req.header("authorization") != Some(&format!("Bearer {API_KEY}")) {
        let _ = conn
            .write_all(
                b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 12\r\nConnection: close\r\n\r\nUnauthorized",
            )
            .await;
        return;
    }
    shared.requests.fetch_add(1, Ordering::SeqCst);
    let fault = shared.fault.lock().unwrap().clone();
    let body = {
        let nodes = shared.nodes.lock().unwrap();
        serde_json::to_vec(&serde_json::json!({
            "nodes": nodes.iter().map(SimNode::json).collect::<Vec<_>>()
        }))
        .unwrap()
    };
    let sent = |n: usize| {
        shared.sent.fetch_add(n as u64, Ordering::SeqCst);
    };
    let json = "Content-Type: application/json\r\nConnection: close\r\n";
    match fault {
        HsFault::Off => {
            let head = format!(
                "HTTP/1.1 200 OK\r\n{json}Content-Length: {}\r\n\r\n",
                body.len()
            );
            if conn.write_all(head.as_bytes()).await.is_ok() && conn.write_all(&body).await.is_ok()
            {
                sent(body.len());
            }
        }
        HsFault::Drip => {
            let head = format!(
                "HTTP/1.1 200 OK\r\n{json}Content-Length: {}\r\n\r\n",
                body.len()
            );
            if conn.write_all(head.as_bytes()).await.is_err() {
                return;
            }
            // Bounded: at most the body, one byte a second; stops when the client gives up.
            for b in &body {
                if conn.write_all(&[*b]).await.is_err() {
                    return;
                }
                sent(1);
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
        HsFault::Huge | HsFault::HugeAnnounced => {
            let chunked = matches!(fault, HsFault::Huge);
            let head = if chunked {
                format!("HTTP/1.1 200 OK\r\n{json}Transfer-Encoding: chunked\r\n\r\n")
            } else {
                format!("HTTP/1.1 200 OK\r\n{json}Content-Length: {HUGE_BYTES}\r\n\r\n")
            };
            if conn.write_all(head.as_bytes()).await.is_err() {
                return;
            }
            // `{"nodes":[` and then blanks: valid JSON so far, never complete.
            let mut first = vec![b' '; 64 * 1024];
            first[..10].copy_from_slice(b"{\"nodes\":[");
            let blanks = vec![b' '; 64 * 1024];
            let mut left = HUGE_BYTES;
            while left > 0 {
                let piece = if left == HUGE_BYTES { &first } else { &blanks };
                let data = &piece[..left.min(piece.len())];
                let n = data.len();
                let ok = if chunked {
                    conn.write_all(format!("{n:x}\r\n").as_bytes())
                        .await
                        .is_ok()
                        && conn.write_all(data).await.is_ok()
                        && conn.write_all(b"\r\n").await.is_ok()
                } else {
                    conn.write_all(data).await.is_ok()
                };
                if !ok {
                    return; // the client stopped reading
                }
                sent(n);
                left -= n;
            }
            if chunked {
                let _ = conn.write_all(b"0\r\n\r\n").await;
            }
        }
        HsFault::CutMidBody => {
            let head = format!(
                "HTTP/1.1 200 OK\r\n{json}Content-Length: {}\r\n\r\n",
                body.len()
            );
            let half = &body[..body.len() / 2];
            if conn.write_all(head.as_bytes()).await.is_ok() && conn.write_all(half).await.is_ok() {
                sent(half.len());
            }
        }
    }
    let _ = conn.shutdown().await;
}

/// tart-sync running as its own process (`tart-sync run`), so its memory
/// can be measured; killed when dropped. Its log (stderr) goes to a file.
pub struct Process {
    child: std::process::Child,
    /// Where its stderr goes.
    pub log: std::path::PathBuf,
    _dir: crate::TempDir,
}

impl Process {
    /// Starts `tart-sync run` with exactly this environment (plus `RUST_LOG`).
    pub fn run(env: &std::collections::BTreeMap<String, String>, rust_log: &str) -> Process {
        let dir = crate::temp_dir("tart-sync-run");
        let log = dir.path().join("tart-sync.log");
        let file = std::fs::File::create(&log).unwrap();
        let child = crate::tart_sync_run_command(&crate::tart_sync_bin(), env, rust_log, file)
            .spawn()
            .unwrap();
        Process {
            child,
            log,
            _dir: dir,
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// True while it runs.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Its log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
