//! The random churn: seeded change sets on the simulated fleet (flaps within
//! and beyond the grace, reconnects, renames, address moves, adds, removes),
//! kept inside limits that never trip tart-sync's mass-removal guard.

use std::collections::BTreeMap;
use std::time::Duration;

use time::OffsetDateTime;

use crate::model::{Fleet, Node};

/// One kind of change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Action {
    /// Online → offline, back before the grace ends (the URL must not change).
    FlapWithinGrace,
    /// Online → offline, back (or not) after the grace ended (503 in between).
    FlapBeyondGrace,
    /// An offline node comes back online.
    Reconnect,
    /// A node gets a fresh name (old name: 404; new name: its backend).
    Rename,
    /// A node moves to another backend address.
    Move,
    /// A new node (now and then one that is offline from the start: 503).
    Add,
    /// A node leaves headscale (its name: 404).
    Remove,
}

impl Action {
    /// Every action, in report order.
    pub const ALL: [Action; 7] = [
        Action::FlapWithinGrace,
        Action::FlapBeyondGrace,
        Action::Reconnect,
        Action::Rename,
        Action::Move,
        Action::Add,
        Action::Remove,
    ];

    /// A short label for the report.
    pub fn label(self) -> &'static str {
        match self {
            Action::FlapWithinGrace => "flaps within grace",
            Action::FlapBeyondGrace => "flaps beyond grace",
            Action::Reconnect => "reconnects",
            Action::Rename => "renames",
            Action::Move => "address moves",
            Action::Add => "adds",
            Action::Remove => "removes",
        }
    }

    fn weight(self) -> u32 {
        match self {
            Action::FlapWithinGrace => 3,
            Action::Reconnect => 1,
            _ => 2,
        }
    }
}

/// Bounds the churn stays within. With `min_online` ≥ 2 × (`max_in_grace` +
/// actions per change set), no poll can see more than half of the proxied
/// routes stop at once, so tart-sync's mass-removal guard never holds a change
/// back (it would rightly delay it by the grace, which the soak would count
/// as wrong answers).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Fewest nodes.
    pub min_nodes: usize,
    /// Most nodes.
    pub max_nodes: usize,
    /// Fewest online nodes.
    pub min_online: usize,
    /// Most offline nodes still in their grace.
    pub max_in_grace: usize,
    /// Most offline nodes.
    pub max_offline: usize,
    /// Most actions in one change set.
    pub max_actions: usize,
}

impl Limits {
    /// The soak's limits for a fleet of about 12 nodes.
    pub const SOAK: Limits = Limits {
        min_nodes: 8,
        max_nodes: 16,
        min_online: 8,
        max_in_grace: 2,
        max_offline: 4,
        max_actions: 2,
    };
}

/// The churn generator.
#[derive(Debug)]
pub struct Churn {
    rng: fastrand::Rng,
    grace: Duration,
    addrs: usize,
    limits: Limits,
    next_id: u64,
    next_name: u64,
    /// Scheduled ends of flaps: (when, node id).
    returns: Vec<(OffsetDateTime, u64)>,
    /// Actions done, by kind (scheduled returns count as the flap's part).
    pub counts: BTreeMap<Action, u64>,
}

impl Churn {
    /// A generator seeded with `seed`, for `addrs` backend addresses.
    pub fn new(seed: u64, grace: Duration, addrs: usize, limits: Limits) -> Churn {
        Churn {
            rng: fastrand::Rng::with_seed(seed),
            grace,
            addrs,
            limits,
            next_id: 1,
            next_name: 1,
            returns: Vec::new(),
            counts: BTreeMap::new(),
        }
    }

    /// `n` online nodes on the first `n` addresses.
    pub fn initial(&mut self, n: usize, now: OffsetDateTime) -> Fleet {
        let mut fleet = Fleet::default();
        for addr in 0..n.min(self.addrs) {
            let node = self.new_node(addr, true, now);
            fleet.nodes.insert(node.id, node);
        }
        fleet
    }

    /// A uniformly random duration in `[lo, hi]`.
    pub fn between(&mut self, lo: Duration, hi: Duration) -> Duration {
        let span = hi.saturating_sub(lo).as_millis();
        let span = u64::try_from(span).unwrap_or(u64::MAX);
        lo + Duration::from_millis(self.rng.u64(0..=span))
    }

    /// True with probability `1/n`.
    pub fn one_in(&mut self, n: u32) -> bool {
        self.rng.u32(0..n.max(1)) == 0
    }

    /// Picks one of `items`.
    pub fn pick<T: Copy>(&mut self, items: &[T]) -> Option<T> {
        if items.is_empty() {
            None
        } else {
            items.get(self.rng.usize(0..items.len())).copied()
        }
    }

    fn new_node(&mut self, addr: usize, online: bool, last_seen: OffsetDateTime) -> Node {
        let id = self.next_id;
        self.next_id += 1;
        Node {
            id,
            name: self.fresh_name(),
            addr,
            online,
            last_seen,
        }
    }

    fn fresh_name(&mut self) -> String {
        let n = self.next_name;
        self.next_name += 1;
        format!("t{n:04}")
    }

    fn free_addr(&mut self, fleet: &Fleet) -> Option<usize> {
        let used: Vec<usize> = fleet.nodes.values().map(|n| n.addr).collect();
        let free: Vec<usize> = (0..self.addrs).filter(|a| !used.contains(a)).collect();
        self.pick(&free)
    }

    /// Brings back the nodes whose flap ends by `now`; one line per change.
    pub fn due_returns(&mut self, fleet: &mut Fleet, now: OffsetDateTime) -> Vec<String> {
        let (due, later): (Vec<_>, Vec<_>) = self.returns.iter().partition(|(t, _)| *t <= now);
        self.returns = later;
        let mut done = Vec::new();
        for (_, id) in due {
            if let Some(n) = fleet.nodes.get_mut(&id) {
                if !n.online {
                    n.online = true;
                    n.last_seen = now;
                    done.push(format!("{} back online (end of flap)", n.name));
                }
            }
        }
        done
    }

    /// One random change set of 1..=`max_actions` actions; one line per change.
    pub fn change_set(&mut self, fleet: &mut Fleet, now: OffsetDateTime) -> Vec<String> {
        let actions = if self.limits.max_actions > 1 && self.one_in(3) {
            self.rng.usize(2..=self.limits.max_actions)
        } else {
            1
        };
        let mut done = Vec::new();
        for _ in 0..actions {
            let allowed = self.allowed(fleet, now);
            let total: u32 = allowed.iter().map(|a| a.weight()).sum();
            if total == 0 {
                break;
            }
            let mut roll = self.rng.u32(0..total);
            let mut chosen = None;
            for a in allowed {
                if roll < a.weight() {
                    chosen = Some(a);
                    break;
                }
                roll -= a.weight();
            }
            if let Some(line) = chosen.and_then(|a| self.apply(a, fleet, now)) {
                done.push(line);
            }
        }
        done
    }

    fn allowed(&self, fleet: &Fleet, now: OffsetDateTime) -> Vec<Action> {
        let l = self.limits;
        let nodes = fleet.nodes.len();
        let online = fleet.online();
        let offline = nodes - online;
        let in_grace = fleet.in_grace(now, self.grace);
        let has_free = fleet.nodes.len() < self.addrs;
        Action::ALL
            .into_iter()
            .filter(|a| match a {
                Action::FlapWithinGrace | Action::FlapBeyondGrace => {
                    online > l.min_online && in_grace < l.max_in_grace && offline < l.max_offline
                }
                Action::Reconnect => offline > 0,
                Action::Rename => nodes > 0,
                Action::Move => nodes > 0 && has_free,
                Action::Add => nodes < l.max_nodes && has_free,
                Action::Remove => nodes > l.min_nodes && (online > l.min_online || offline > 0),
            })
            .collect()
    }

    fn apply(&mut self, action: Action, fleet: &mut Fleet, now: OffsetDateTime) -> Option<String> {
        let l = self.limits;
        let line = match action {
            Action::FlapWithinGrace | Action::FlapBeyondGrace => {
                let id = self.pick(&ids_where(fleet, |n| n.online))?;
                let (lo, hi) = if action == Action::FlapWithinGrace {
                    (0.2, 0.6)
                } else {
                    (1.4, 2.5)
                };
                let back = self.between(self.grace.mul_f64(lo), self.grace.mul_f64(hi));
                // A third of the flaps beyond the grace stay offline (until a reconnect or remove).
                let stays = action == Action::FlapBeyondGrace && self.one_in(3);
                if !stays {
                    self.returns.push((now + back, id));
                }
                let n = fleet.nodes.get_mut(&id)?;
                n.online = false;
                n.last_seen = now;
                if stays {
                    format!("{} offline (stays offline)", n.name)
                } else {
                    format!("{} offline for {:.1}s", n.name, back.as_secs_f64())
                }
            }
            Action::Reconnect => {
                let id = self.pick(&ids_where(fleet, |n| !n.online))?;
                let n = fleet.nodes.get_mut(&id)?;
                n.online = true;
                n.last_seen = now;
                format!("{} reconnects", n.name)
            }
            Action::Rename => {
                let id = self.pick(&ids_where(fleet, |_| true))?;
                let new = self.fresh_name();
                let n = fleet.nodes.get_mut(&id)?;
                let old = std::mem::replace(&mut n.name, new);
                format!("{old} renamed {}", n.name)
            }
            Action::Move => {
                let id = self.pick(&ids_where(fleet, |_| true))?;
                let addr = self.free_addr(fleet)?;
                let n = fleet.nodes.get_mut(&id)?;
                let old = std::mem::replace(&mut n.addr, addr);
                format!("{} moves from address {old} to {addr}", n.name)
            }
            Action::Add => {
                let addr = self.free_addr(fleet)?;
                let offline = fleet.nodes.len() - fleet.online();
                let node = if offline < l.max_offline && self.one_in(4) {
                    self.new_node(addr, false, now - time::Duration::hours(1))
                } else {
                    self.new_node(addr, true, now)
                };
                let line = format!(
                    "{} added at address {addr}{}",
                    node.name,
                    if node.online {
                        ""
                    } else {
                        " (offline for an hour)"
                    }
                );
                fleet.nodes.insert(node.id, node);
                line
            }
            Action::Remove => {
                let online = fleet.online();
                let id = self.pick(&ids_where(fleet, |n| !n.online || online > l.min_online))?;
                let n = fleet.nodes.remove(&id)?;
                format!("{} removed", n.name)
            }
        };
        *self.counts.entry(action).or_default() += 1;
        Some(line)
    }
}

/// The ids of the nodes that satisfy `p`.
fn ids_where(fleet: &Fleet, p: impl Fn(&Node) -> bool) -> Vec<u64> {
    fleet
        .nodes
        .values()
        .filter(|n| p(n))
        .map(|n| n.id)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_churn_stays_inside_the_limits_and_does_everything() {
        let grace = Duration::from_secs(5);
        let l = Limits::SOAK;
        let mut churn = Churn::new(7, grace, 24, l);
        let mut now = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        let mut fleet = churn.initial(12, now);
        for _ in 0..5_000 {
            now += Duration::from_millis(1500);
            churn.due_returns(&mut fleet, now);
            churn.change_set(&mut fleet, now);
            assert!(fleet.nodes.len() >= l.min_nodes && fleet.nodes.len() <= l.max_nodes);
            assert!(fleet.online() >= l.min_online, "{fleet:?}");
            assert!(fleet.in_grace(now, grace) <= l.max_in_grace);
            let mut names: Vec<&str> = fleet.nodes.values().map(|n| n.name.as_str()).collect();
            let mut addrs: Vec<usize> = fleet.nodes.values().map(|n| n.addr).collect();
            names.sort_unstable();
            names.dedup();
            addrs.sort_unstable();
            addrs.dedup();
            assert_eq!(names.len(), fleet.nodes.len(), "names are unique");
            assert_eq!(addrs.len(), fleet.nodes.len(), "addresses are unique");
        }
        for a in Action::ALL {
            assert!(
                churn.counts.get(&a).copied().unwrap_or(0) > 50,
                "{a:?}: {:?}",
                churn.counts
            );
        }
    }

    #[test]
    fn the_same_seed_gives_the_same_churn() {
        let run = |seed| {
            let mut c = Churn::new(seed, Duration::from_secs(5), 24, Limits::SOAK);
            let now = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
            let mut f = c.initial(12, now);
            (0..50)
                .flat_map(|_| c.change_set(&mut f, now))
                .collect::<Vec<_>>()
        };
        assert_eq!(run(3), run(3));
        assert_ne!(run(3), run(4));
    }
}
