//! The `Host` allow-list: a page on another site whose name an attacker
//! points at this machine (DNS rebinding) sends its own name as `Host`; the
//! status server answers such a request with `421 Misdirected Request`, so
//! that page cannot read node names, tailnet addresses and users.
//!
//! Always allowed: `localhost`, `127.0.0.1` and `[::1]` on any port (an SSH
//! tunnel or a port forward changes the port) and the listen address itself
//! (unless it is `0.0.0.0` or `[::]`); besides, the entries of
//! `status.allowed_hosts`. `/healthz` and `/readyz` answer any `Host` so that
//! probes work (they send the pod's or container's address); `/readyz` then
//! says only `ready` or `not ready`, without the reason, which names Caddy
//! addresses and errors.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::header::HOST;
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::config::{HostPattern, StatusSettings};

/// Paths that answer any `Host` (probes).
const OPEN_PATHS: &[&str] = &["/healthz", "/readyz"];

/// Marks a request whose `Host` is allowed (see [`check`]).
#[derive(Debug, Clone, Copy)]
pub(super) struct HostAllowed;

/// The names the status server answers to.
#[derive(Debug)]
pub(super) struct HostPolicy {
    allowed: Vec<HostPattern>,
}

impl HostPolicy {
    /// Loopback names, the listen address and `status.allowed_hosts`.
    pub(super) fn new(settings: &StatusSettings) -> HostPolicy {
        let any_port = |host: &str| HostPattern {
            host: host.to_owned(),
            port: None,
        };
        let mut allowed = vec![
            any_port("localhost"),
            any_port("127.0.0.1"),
            any_port("[::1]"),
        ];
        let listen = settings.listen;
        if !listen.ip().is_unspecified() {
            let host = match listen {
                SocketAddr::V4(a) => a.ip().to_string(),
                SocketAddr::V6(a) => format!("[{}]", a.ip()),
            };
            allowed.push(HostPattern {
                host,
                port: Some(listen.port()),
            });
        }
        allowed.extend(settings.allowed_hosts.iter().cloned());
        HostPolicy { allowed }
    }

    /// Whether `value` (a `Host` header or a request target's authority)
    /// names this server.
    fn allows(&self, value: &str) -> bool {
        HostPattern::parse(value).is_ok_and(|host| self.allowed.iter().any(|p| p.matches(&host)))
    }

    /// Whether the request has exactly one allowed `Host` and, in the
    /// absolute form (`GET http://name/ HTTP/1.1`), an allowed authority.
    fn allows_request(&self, req: &Request) -> bool {
        let mut hosts = req.headers().get_all(HOST).iter();
        let header_ok = match (hosts.next(), hosts.next()) {
            (Some(value), None) => value.to_str().is_ok_and(|v| self.allows(v)),
            _ => false,
        };
        let target_ok = req
            .uri()
            .authority()
            .is_none_or(|a| self.allows(a.as_str()));
        header_ok && target_ok
    }
}

/// Middleware: passes requests with an allowed `Host` (marked with
/// [`HostAllowed`]) and those for [`OPEN_PATHS`]; answers the others `421`
/// with the setting to use.
pub(super) async fn check(
    State(policy): State<Arc<HostPolicy>>,
    mut req: Request,
    next: Next,
) -> Response {
    if policy.allows_request(&req) {
        req.extensions_mut().insert(HostAllowed);
        return next.run(req).await;
    }
    if OPEN_PATHS.contains(&req.uri().path()) {
        return next.run(req).await;
    }
    let shown: String = req
        .headers()
        .get(HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .chars()
        .take(100)
        .collect();
    (
        StatusCode::MISDIRECTED_REQUEST,
        format!(
            "this status server does not answer to Host {shown:?} (it refuses other names against DNS rebinding); \
             to reach it under this name, add the name to status.allowed_hosts (env TART_SYNC_STATUS_ALLOWED_HOSTS)\n"
        ),
    )
        .into_response()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn policy(listen: &str, extra: &[&str]) -> HostPolicy {
        HostPolicy::new(&StatusSettings {
            listen: listen.parse().unwrap(),
            allowed_hosts: extra
                .iter()
                .map(|h| HostPattern::parse(h).unwrap())
                .collect(),
        })
    }

    #[test]
    fn loopback_listen_address_and_configured_names() {
        let p = policy("10.1.2.3:9180", &["status.example.org", "[fd00::5]:8080"]);
        for ok in [
            "localhost",
            "localhost:9180",
            "LOCALHOST:2222",
            "localhost.",
            "127.0.0.1",
            "127.0.0.1:9180",
            "[::1]",
            "[::1]:9180",
            "10.1.2.3:9180",
            "status.example.org",
            "status.example.org:443",
            "[fd00::5]:8080",
        ] {
            assert!(p.allows(ok), "{ok}");
        }
        for bad in [
            "evil.example",
            "evil.example:9180",
            "localhost.evil.example",
            "127.0.0.2",
            "10.1.2.3",
            "10.1.2.3:9181",
            "[fd00::5]",
            "user@localhost",
            "",
            "localhost:x",
        ] {
            assert!(!p.allows(bad), "{bad}");
        }
        // 0.0.0.0 is not a name anybody reaches the server under.
        let p = policy("0.0.0.0:9180", &[]);
        assert!(!p.allows("0.0.0.0:9180") && p.allows("localhost:9180"));
        let p = policy("[::1]:9180", &[]);
        assert!(p.allows("[::1]:9180"));
    }
}
