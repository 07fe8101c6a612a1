//! Tailnet state changes, recorded from each new desired state.

use time::OffsetDateTime;

use crate::desired::Desired;
use crate::health::{Change, ChangeKind, Health};

/// Records the tailnet state of every TART of `desired` at `now` into the
/// history; only states that differ from the TART's last recorded one
/// become changes (so a restart with a loaded history records only what
/// changed meanwhile). Returns how many changes were recorded.
pub fn record_tailnet(health: &Health, desired: &Desired, now: OffsetDateTime) -> usize {
    health.record_many(desired.entries.iter().map(|e| Change {
        at: now,
        name: e.name.clone(),
        kind: ChangeKind::Tailnet(e.state),
    }))
}
