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

/// A list of names for a log line: the first [`Names::SHOWN`] and how many
/// more, so the first sync of a big fleet logs one short line, not every
/// name (10,000 names made a 150 KB line, which journald splits).
#[derive(Debug, Clone, Copy)]
pub struct Names<'a>(pub &'a [String]);

impl Names<'_> {
    /// Names shown before the count of the rest.
    pub const SHOWN: usize = 10;
}

impl std::fmt::Display for Names<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let shown = self.0.iter().take(Self::SHOWN);
        write!(f, "[")?;
        for (i, name) in shown.enumerate() {
            if i > 0 {
                write!(f, ", ")?;
            }
            write!(f, "{name}")?;
        }
        let rest = self.0.len().saturating_sub(Self::SHOWN);
        if rest > 0 {
            write!(f, ", … and {rest} more")?;
        }
        write!(f, "]")
    }
}

/// Proxied routes in a table.
pub fn proxied_count(targets: &Targets) -> usize {
    targets.values().filter(|t| t.is_proxied()).count()
}

#[cfg(test)]
mod tests {
    use super::Names;

    #[test]
    fn a_log_line_lists_ten_names_and_counts_the_rest() {
        let few: Vec<String> = ["a", "b"].map(String::from).to_vec();
        assert_eq!(Names(&few).to_string(), "[a, b]");
        assert_eq!(Names(&[]).to_string(), "[]");
        let many: Vec<String> = (0..10_000).map(|i| format!("tart-{i:05}")).collect();
        let line = Names(&many).to_string();
        assert!(line.starts_with("[tart-00000, tart-00001,"), "{line}");
        assert!(line.ends_with("tart-00009, … and 9990 more]"), "{line}");
        assert!(line.len() < 200);
    }
}
