//! The benchmark's headscale answers for large fleets: one node per name,
//! each rendered once online and once offline by the e2e harness's
//! [`SimNode`], the answer assembled from those bytes when a node changes and
//! served by the harness's stand-in ([`e2e::standin`]).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use e2e::headscale::SimNode;
use time::OffsetDateTime;

use crate::Res;

/// One node's JSON when online, its JSON when offline, and whether it is online now.
type NodeBodies = (Vec<u8>, Vec<u8>, bool);

/// The running stand-in; stops when dropped.
pub struct StandIn {
    server: e2e::standin::StandIn,
    /// Per node: its JSON online, its JSON offline, and whether it is online now.
    nodes: Mutex<Vec<NodeBodies>>,
    /// Whether the answer ends with a newline (see [`StandIn::touch`]).
    newline: AtomicBool,
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
        // No fault is ever set here: the stall time does not matter.
        let server = e2e::standin::StandIn::start(Duration::ZERO).await?;
        let standin = StandIn {
            server,
            nodes: Mutex::new(nodes),
            newline: AtomicBool::new(false),
        };
        standin.rebuild();
        Ok(standin)
    }

    /// The base URL (`http://127.0.0.1:PORT`).
    pub fn url(&self) -> &str {
        self.server.url()
    }

    /// Marks node `i` online or offline; returns once the stand-in answers so.
    pub fn set_online(&self, i: usize, online: bool) {
        {
            let mut nodes = self.nodes.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(n) = nodes.get_mut(i) {
                n.2 = online;
            }
        }
        self.rebuild();
    }

    /// Changes the answer's bytes but not what it says (a trailing newline
    /// comes or goes): the next poll reads a changed answer with the same nodes.
    pub fn touch(&self) {
        self.newline.fetch_xor(true, Ordering::Relaxed);
        self.rebuild();
    }

    /// Node listings served so far.
    pub fn polls(&self) -> u64 {
        self.server.polls()
    }

    /// Size of the current answer in bytes.
    pub fn body_len(&self) -> usize {
        self.server.body_len()
    }

    /// Renders the answer from the node table and swaps it in (under the
    /// node lock, so concurrent changes are applied in order).
    fn rebuild(&self) {
        let nodes = self.nodes.lock().unwrap_or_else(|p| p.into_inner());
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
        if self.newline.load(Ordering::Relaxed) {
            out.push(b'\n');
        }
        self.server.set_body(out);
    }
}
