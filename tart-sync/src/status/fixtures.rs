//! Test fixtures shared by the status server's and the metrics' tests.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use time::OffsetDateTime;

use crate::config::Settings;
use crate::context::{Context, HeadscaleStatus, LastOutcome, SyncState};
use crate::desired::{Desired, Entry, NodeState, Skipped};

/// A name that breaks out of HTML text, attributes and JSON strings if not escaped.
pub(crate) const HOSTILE: &str = "<script>alert(\"x&y\")</script>'";

/// Settings with one Caddy at `admin`, routes in `mode` under
/// `tart.example.org`, a 1 s poll interval.
pub(crate) fn settings(admin: &str, mode: &str) -> Settings {
    let toml = format!(
        "[headscale]\nurl = \"http://127.0.0.1:1\"\napi_key = \"hskey-api-test\"\npoll_interval = \"1s\"\n\
         [caddy]\nadmin = [\"{admin}\"]\n[routes]\ndomain = \"tart.example.org\"\nmode = \"{mode}\"\n"
    );
    Settings::from_sources(Some(&toml), &|_: &str| None, None).unwrap()
}

/// A routed node `100.64.0.<id>:80`; in grace since 20 s (40 s left), or
/// offline since 3 min.
pub(crate) fn entry(name: &str, id: u64, state: NodeState, now: OffsetDateTime) -> Entry {
    let (offline_since, grace_until) = match state {
        NodeState::Online => (None, None),
        NodeState::Grace => (
            Some(now - time::Duration::seconds(20)),
            Some(now + time::Duration::seconds(40)),
        ),
        NodeState::Offline => (Some(now - time::Duration::minutes(3)), None),
    };
    Entry {
        name: name.into(),
        node_id: id,
        user: "tagged-devices".into(),
        upstream: format!("100.64.0.{id}:80"),
        state,
        offline_since,
        grace_until,
    }
}

/// rhodes online, karoo in grace, meerkat offline; one skipped hostile node;
/// 5 nodes seen; every Caddy synced at `now`.
pub(crate) fn fleet_state(ctx: &Context, now: OffsetDateTime) -> SyncState {
    let mut state = ctx.snapshot();
    state.headscale = HeadscaleStatus {
        reachable: true,
        last_success: Some(now),
        last_error: None,
        nodes_seen: 5,
    };
    state.desired = Some(Arc::new(Desired {
        entries: vec![
            entry("karoo", 13, NodeState::Grace, now),
            entry("meerkat", 15, NodeState::Offline, now),
            entry("rhodes", 12, NodeState::Online, now),
        ],
        skipped: vec![Skipped {
            node_id: 14,
            name: HOSTILE.into(),
            reason: format!("givenName {HOSTILE:?} is not a DNS label"),
        }],
    }));
    for c in &mut state.caddies {
        c.reachable = true;
        c.last_sync = Some(now);
        c.last_outcome = LastOutcome::Unchanged;
        c.routes = 3;
        c.stream_close_delay = Some(true);
    }
    state
}

/// Replaces the shared state.
pub(crate) fn set_state(ctx: &Context, state: SyncState) {
    *ctx.state.write().unwrap() = state;
}
