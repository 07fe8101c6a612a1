//! The soak's headscale answers: the model's fleet rendered as headscale 0.28
//! protojson (as [`SimNode`] renders it), served by the harness's stand-in
//! ([`e2e::standin`]), which also injects the faults.

use std::time::Duration;

use e2e::backend::fleet_ip;
use e2e::headscale::SimNode;
pub use e2e::standin::Fault;

use crate::model::Fleet;
use crate::SoakError;

/// The running stand-in; stops when dropped.
pub struct StandIn(e2e::standin::StandIn);

impl StandIn {
    /// Starts on a free port of 127.0.0.1; a timeout fault stalls each answer for `stall`.
    pub async fn start(stall: Duration) -> Result<StandIn, SoakError> {
        e2e::standin::StandIn::start(stall)
            .await
            .map(StandIn)
            .map_err(|e| SoakError::io("starting the headscale stand-in on 127.0.0.1", e))
    }

    /// The base URL.
    pub fn url(&self) -> &str {
        self.0.url()
    }

    /// Serves `fleet` from now on.
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
        self.0
            .set_body(serde_json::json!({ "nodes": nodes }).to_string());
    }

    /// Starts (`Some`) or ends (`None`) a fault.
    pub fn set_fault(&self, fault: Option<Fault>) {
        self.0.set_fault(fault);
    }

    /// Node listings requested so far.
    pub fn polls(&self) -> u64 {
        self.0.polls()
    }
}
