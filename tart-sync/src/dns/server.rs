//! The responder's UDP loop, on a thread of its own: an answer never waits
//! for the control loop (a large headscale answer or route being built on
//! the main runtime), and Caddy, which holds one global lock while it waits
//! for a lookup, is never slowed by tart-sync's other work.

use std::net::UdpSocket;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::limit::Limiter;
use super::DnsState;
use crate::config::{Resolve, Settings};
use crate::context::Context;

/// How often the loop looks at the shutdown signal while idle.
const SHUTDOWN_CHECK: Duration = Duration::from_millis(200);

/// Binds `dns.listen` (UDP). The error says what to do.
fn bind(settings: &Settings) -> Result<UdpSocket, String> {
    let listen = settings.dns.listen;
    let socket = UdpSocket::bind(listen).map_err(|e| {
        format!("dns.listen: cannot listen on udp/{listen}: {e} (another process on that port? choose another dns.listen)")
    })?;
    socket
        .set_read_timeout(Some(SHUTDOWN_CHECK))
        .map_err(|e| format!("dns.listen: cannot set a read timeout on udp/{listen}: {e}"))?;
    Ok(socket)
}

/// Starts the responder in dns mode (nothing in config mode): binds
/// `dns.listen` and answers on its own thread until `shutdown` turns true.
/// The error says what to do.
pub fn start(
    ctx: &Arc<Context>,
    shutdown: watch::Receiver<bool>,
) -> Result<Option<std::thread::JoinHandle<()>>, String> {
    if ctx.settings.routes.resolve != Resolve::Dns {
        return Ok(None);
    }
    let socket = match bind(&ctx.settings) {
        Ok(s) => s,
        Err(e) => {
            *ctx.dns.listening.lock().unwrap_or_else(|p| p.into_inner()) = Err(e.clone());
            return Err(e);
        }
    };
    *ctx.dns.listening.lock().unwrap_or_else(|p| p.into_inner()) = Ok(socket.local_addr().ok());
    tracing::info!(listen = %ctx.settings.dns.listen, zone = %ctx.settings.dns.zone, "dns responder listening");
    let limiter = Limiter::new(ctx.settings.dns.rate_limit, &ctx.settings.dns.unlimited);
    let state = ctx.dns.clone();
    std::thread::Builder::new()
        .name("tart-sync-dns".into())
        .spawn(move || serve(&state, &socket, limiter, &shutdown))
        .map(Some)
        .map_err(|e| format!("dns: cannot start the responder's thread: {e}"))
}

/// Answers queries until `shutdown` turns true (or its sender is gone).
/// One query at a time, from memory: a reply takes microseconds; a flood is
/// dropped by the rate limit before any parsing.
fn serve(
    state: &DnsState,
    socket: &UdpSocket,
    mut limiter: Limiter,
    shutdown: &watch::Receiver<bool>,
) {
    let mut buf = vec![0u8; 4096];
    while !*shutdown.borrow() && shutdown.has_changed().is_ok() {
        let (len, source) = match socket.recv_from(&mut buf) {
            Ok(r) => r,
            // Timeouts (to look at the shutdown signal), and ICMP errors of
            // earlier replies on some systems: keep going.
            Err(_) => continue,
        };
        let Some(query) = buf.get(..len) else {
            continue;
        };
        if let Some(reply) = state.handle(&mut limiter, query, source.ip()) {
            if let Err(e) = socket.send_to(&reply, source) {
                tracing::debug!(error = %e, %source, "dns: reply not sent");
            }
        }
    }
}
