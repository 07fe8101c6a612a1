//! What changes between the live table and the desired one.

use crate::desired::{Target, Targets};

/// What changes between two tables: names added, removed, and changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Diff {
    /// Names only in the new table.
    pub added: Vec<String>,
    /// Names only in the old table.
    pub removed: Vec<String>,
    /// Names whose target changed.
    pub changed: Vec<String>,
    /// Names proxied before and not proxied now (gone, or now offline).
    pub unrouted: Vec<String>,
}

impl Diff {
    /// Compares `old` (live) with `new` (desired).
    pub fn between(old: &Targets, new: &Targets) -> Diff {
        let mut d = Diff::default();
        for (name, target) in new {
            match old.get(name) {
                None => d.added.push(name.clone()),
                Some(t) if t != target => d.changed.push(name.clone()),
                Some(_) => {}
            }
        }
        for (name, target) in old {
            if !new.contains_key(name) {
                d.removed.push(name.clone());
            }
            let was_proxied = target.is_proxied();
            let is_proxied = new.get(name).is_some_and(Target::is_proxied);
            if was_proxied && !is_proxied {
                d.unrouted.push(name.clone());
            }
        }
        d
    }

    /// True when nothing changes.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.changed.is_empty()
    }
}

/// Proxied routes in a table.
pub fn proxied_count(targets: &Targets) -> usize {
    targets.values().filter(|t| t.is_proxied()).count()
}
