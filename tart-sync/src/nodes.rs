//! `tart-sync nodes`: every node headscale lists with its routing decision
//! and the reason for any skip. The decision is [`crate::desired`]'s (the
//! same call the daemon makes); this module only lays it out per node.

use std::collections::HashMap;

use serde::Serialize;

use crate::config::Settings;
use crate::desired::{self, Desired};
use crate::headscale::Node;

/// One node and what tart-sync does with it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeLine {
    /// headscale's node id.
    pub id: u64,
    /// The node's `givenName` (its URL name when routed).
    pub name: String,
    /// The node's host name.
    pub host: String,
    /// headscale says it is online.
    pub online: bool,
    /// `online`, `grace`, `offline` (routed) or `skipped`.
    pub decision: String,
    /// Its URL when routed.
    pub url: Option<String>,
    /// Why it has no URL, when skipped.
    pub reason: Option<String>,
}

/// The lines for `nodes`, in headscale's order, from the [`Desired`] that
/// [`desired::compute`] made of them.
pub fn lines(nodes: &[Node], desired: &Desired, settings: &Settings) -> Vec<NodeLine> {
    let entries: HashMap<u64, _> = desired.entries.iter().map(|e| (e.node_id, e)).collect();
    let skipped: HashMap<u64, _> = desired.skipped.iter().map(|s| (s.node_id, s)).collect();
    nodes
        .iter()
        .map(|n| {
            let (decision, url, reason) = if let Some(e) = entries.get(&n.id) {
                (
                    e.state.as_str().to_owned(),
                    Some(crate::layout::node_url(&settings.routes, &e.name)),
                    None,
                )
            } else if let Some(s) = skipped.get(&n.id) {
                ("skipped".to_owned(), None, Some(s.reason.clone()))
            } else if !desired::passes_filters(n, &settings.headscale) {
                ("skipped".to_owned(), None, Some(filter_reason(settings)))
            } else {
                ("skipped".to_owned(), None, Some("not routed".to_owned()))
            };
            NodeLine {
                id: n.id,
                name: n.given_name.clone(),
                host: n.name.clone(),
                online: n.online,
                decision,
                url,
                reason,
            }
        })
        .collect()
}

fn filter_reason(settings: &Settings) -> String {
    let hs = &settings.headscale;
    match (&hs.user, hs.tags.is_empty()) {
        (Some(user), true) => format!("filtered out: not user {user} (headscale.user)"),
        (None, false) => format!(
            "filtered out: carries none of headscale.tags ({})",
            hs.tags.join(",")
        ),
        (Some(user), false) => format!(
            "filtered out: not user {user} or carries none of headscale.tags ({})",
            hs.tags.join(",")
        ),
        (None, true) => "filtered out".to_owned(),
    }
}

/// The lines as a table, one node per line.
pub fn table(lines: &[NodeLine]) -> String {
    let mut out = format!(
        "{:<6} {:<24} {:<8} {:<9} {}\n",
        "ID", "NAME", "ONLINE", "DECISION", "URL / REASON"
    );
    for l in lines {
        let detail = l.url.as_deref().or(l.reason.as_deref()).unwrap_or("");
        out.push_str(&format!(
            "{:<6} {:<24} {:<8} {:<9} {}\n",
            l.id,
            l.name,
            if l.online { "yes" } else { "no" },
            l.decision,
            detail
        ));
    }
    out
}
