//! Helpers for the dns-mode tests: a free UDP port for the responder, the
//! daemon in-process with its responder, and a tiny DNS client.

use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::Duration;

use tart_sync::config::Settings;
use tart_sync::context::Context;
use tart_sync::controller;
use tart_sync::headscale::HeadscaleClient;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// A UDP port free on 127.0.0.1 right now.
pub fn free_udp_port() -> u16 {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.local_addr().unwrap().port()
}

/// The environment of dns mode on a free port (add to [`crate::sync::Rig::env`]).
pub fn dns_env(port: u16) -> Vec<(&'static str, String)> {
    vec![
        ("TART_SYNC_ROUTES_RESOLVE", "dns".to_string()),
        ("TART_SYNC_DNS_LISTEN", format!("127.0.0.1:{port}")),
        ("TART_SYNC_DNS_REFRESH", "1s".to_string()),
    ]
}

/// Borrows `(key, value)` settings pairs as the `&str` pairs `Rig::settings` takes.
pub fn env_refs<'a>(extra: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    extra.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

/// tart-sync's DNS responder alone, on its own thread, serving what
/// `controller::once` passes with `ctx` publishes; stopped on drop.
pub struct Responder {
    pub ctx: Arc<Context>,
    stop: watch::Sender<bool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Responder {
    pub fn start(settings: Settings) -> Responder {
        let ctx = Context::new(settings);
        let (stop, rx) = watch::channel(false);
        let thread = tart_sync::dns::start(&ctx, rx).unwrap();
        Responder { ctx, stop, thread }
    }
}

impl Drop for Responder {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The daemon in-process with its DNS responder and status server; stopped on drop.
pub struct DnsDaemon {
    pub ctx: Arc<Context>,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
    responder: Option<std::thread::JoinHandle<()>>,
}

impl DnsDaemon {
    pub async fn start(settings: Settings) -> DnsDaemon {
        let hs = HeadscaleClient::from_settings(&settings.headscale).unwrap();
        let ctx = Context::new(settings);
        let (stop, rx) = watch::channel(false);
        let responder = tart_sync::dns::start(&ctx, rx.clone()).unwrap();
        // The status server too, on `status.listen`.
        let listener = tokio::net::TcpListener::bind(ctx.settings.status.listen)
            .await
            .unwrap();
        tokio::spawn(tart_sync::status::serve(ctx.clone(), listener, rx.clone()));
        let c = ctx.clone();
        let task = tokio::spawn(async move {
            controller::run(c, hs, rx).await.unwrap();
        });
        DnsDaemon {
            ctx,
            stop,
            task,
            responder,
        }
    }
}

impl Drop for DnsDaemon {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        self.task.abort();
        // The responder sees the signal within 200 ms and closes its port.
        if let Some(t) = self.responder.take() {
            let _ = t.join();
        }
    }
}

/// Sends one raw DNS query to `server` and returns the raw reply, if any
/// arrives within `wait`.
pub fn query_raw(server: SocketAddr, packet: &[u8], wait: Duration) -> Option<Vec<u8>> {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(wait)).unwrap();
    s.send_to(packet, server).unwrap();
    let mut buf = [0u8; 4096];
    match s.recv_from(&mut buf) {
        Ok((n, _)) => Some(buf[..n].to_vec()),
        Err(_) => None,
    }
}

/// A DNS query for `name` of type `qtype` (1 = A, 28 = AAAA), id 0x1234, RD set.
pub fn query_packet(name: &str, qtype: u16) -> Vec<u8> {
    let mut p = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    for label in name.trim_end_matches('.').split('.') {
        p.push(label.len() as u8);
        p.extend_from_slice(label.as_bytes());
    }
    p.push(0);
    p.extend_from_slice(&qtype.to_be_bytes());
    p.extend_from_slice(&1u16.to_be_bytes());
    p
}

/// The reply's RCODE and its answer count.
pub fn rcode_and_answers(reply: &[u8]) -> (u8, u16) {
    (reply[3] & 0x0f, u16::from_be_bytes([reply[6], reply[7]]))
}
