//! Real HTTP backends standing in for TARTs, each on its own loopback address.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use tokio::task::JoinHandle;

/// A small web server answering as one TART: every path returns JSON
/// `{"tart": name, "path": ..., "forwarded_prefix": ..., "host": ...}`;
/// `/ws` is a WebSocket echo.
#[derive(Debug)]
pub struct Backend {
    pub name: String,
    pub addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Backend {
    /// Starts on `ip:port` (port 0: any free port).
    pub async fn start(name: &str, ip: impl Into<IpAddr>, port: u16) -> std::io::Result<Backend> {
        let listener = tokio::net::TcpListener::bind((ip.into(), port)).await?;
        let addr = listener.local_addr()?;
        let app = Router::new()
            .route("/ws", get(ws))
            .fallback(echo)
            .with_state(name.to_string());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Backend {
            name: name.to_string(),
            addr,
            task,
        })
    }

    /// Stops serving (the port closes).
    pub fn stop(&self) {
        self.task.abort();
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn echo(State(name): State<String>, req: Request) -> Response {
    let h = |k: &str| {
        req.headers()
            .get(k)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    axum::Json(serde_json::json!({
        "tart": name,
        "path": req.uri().path_and_query().map(|p| p.as_str()).unwrap_or("/"),
        "forwarded_prefix": h("x-forwarded-prefix"),
        "host": h("host"),
    }))
    .into_response()
}

async fn ws(State(name): State<String>, upgrade: WebSocketUpgrade) -> Response {
    upgrade.on_upgrade(move |socket| echo_socket(socket, name))
}

async fn echo_socket(mut socket: WebSocket, name: String) {
    while let Some(Ok(msg)) = socket.recv().await {
        let reply = match msg {
            Message::Text(t) => Message::Text(format!("{name}:{}", t.as_str()).into()),
            Message::Close(_) => break,
            other => other,
        };
        if socket.send(reply).await.is_err() {
            break;
        }
    }
}

/// Several backends on 127.0.0.2, 127.0.0.3, ... sharing one port (tart-sync
/// dials every node on the same `upstream_port`).
pub async fn start_fleet(names: &[&str]) -> (u16, Vec<Backend>) {
    for _ in 0..20 {
        let port = crate::free_port();
        let mut fleet = Vec::new();
        let mut ok = true;
        for (i, name) in names.iter().enumerate() {
            match Backend::start(name, fleet_ip(i), port).await {
                Ok(b) => fleet.push(b),
                Err(_) => {
                    ok = false;
                    break;
                }
            }
        }
        if ok {
            return (port, fleet);
        }
    }
    panic!("no common free port for the fleet on 127.0.0.2..");
}

/// The loopback address of the `i`-th simulated node: 127.0.0.2, 127.0.0.3, ...
pub fn fleet_ip(i: usize) -> Ipv4Addr {
    let n = i + 2;
    Ipv4Addr::new(127, 0, (n >> 8) as u8, (n & 0xff) as u8)
}
