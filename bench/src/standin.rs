//! The benchmark's headscale answers for large fleets: one node per name,
//! each rendered once online and once offline by the e2e harness's
//! [`SimNode`], the answer assembled from those bytes when a node changes and
//! served by the harness's stand-in ([`e2e::standin`]). Nodes can go
//! offline and online, move to another address, and be added or removed.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use e2e::headscale::SimNode;
use time::OffsetDateTime;

use crate::Res;

/// One node: its JSON when online and when offline, whether it is online
/// now, and whether it is listed at all.
struct NodeBodies {
    sim: SimNode,
    on: Vec<u8>,
    off: Vec<u8>,
    online: bool,
    listed: bool,
}

impl NodeBodies {
    /// Renders `sim` (its `online` flag is kept apart).
    fn new(mut sim: SimNode) -> Res<NodeBodies> {
        let online = sim.online;
        sim.online = true;
        let on = serde_json::to_vec(&sim.json())?;
        sim.online = false;
        let off = serde_json::to_vec(&sim.json())?;
        Ok(NodeBodies {
            sim,
            on,
            off,
            online,
            listed: true,
        })
    }
}

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
        let nodes = names
            .iter()
            .enumerate()
            .map(|(i, name)| NodeBodies::new(sim_node(i, name, ip)))
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
                n.online = online;
            }
        }
        self.rebuild();
    }

    /// Moves node `i` to the address `ip`; returns once the stand-in answers so.
    pub fn set_address(&self, i: usize, ip: std::net::Ipv4Addr) -> Res<()> {
        {
            let mut nodes = self.nodes.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(n) = nodes.get_mut(i) {
                let mut sim = n.sim.clone();
                sim.ip = ip.to_string();
                sim.online = n.online;
                let listed = n.listed;
                *n = NodeBodies::new(sim)?;
                n.listed = listed;
            }
        }
        self.rebuild();
        Ok(())
    }

    /// Lists a new online node `name` at `ip` (a node headscale just
    /// registered); its index.
    pub fn add(&self, name: &str, ip: std::net::Ipv4Addr) -> Res<usize> {
        let i = {
            let mut nodes = self.nodes.lock().unwrap_or_else(|p| p.into_inner());
            let i = nodes.len();
            nodes.push(NodeBodies::new(sim_node(i, name, ip))?);
            i
        };
        self.rebuild();
        Ok(i)
    }

    /// Lists node `i` or leaves it out of the answer (a node deleted from
    /// headscale, or registered again).
    pub fn set_listed(&self, i: usize, listed: bool) {
        {
            let mut nodes = self.nodes.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(n) = nodes.get_mut(i) {
                n.listed = listed;
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
        let total: usize = nodes.iter().map(|n| n.on.len().max(n.off.len()) + 1).sum();
        let mut out = Vec::with_capacity(total + 16);
        out.extend_from_slice(b"{\"nodes\":[");
        for (i, n) in nodes.iter().filter(|n| n.listed).enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(if n.online { &n.on } else { &n.off });
        }
        out.extend_from_slice(b"]}");
        if self.newline.load(Ordering::Relaxed) {
            out.push(b'\n');
        }
        self.server.set_body(out);
    }
}

/// The `i`-th node, online at `ip`, last seen an hour ago (so that going
/// offline puts it past any grace at once).
fn sim_node(i: usize, name: &str, ip: std::net::Ipv4Addr) -> SimNode {
    let mut n = SimNode::new(i as u64 + 1, name, ip);
    n.last_seen = OffsetDateTime::now_utc() - time::Duration::hours(1);
    n
}
