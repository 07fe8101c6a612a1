//! The in-memory history: per TART, its recent state changes (bounded) and
//! the states before the oldest kept one, from which [`Log::segments`]
//! draws the history bars.

use std::collections::{HashMap, VecDeque};

use time::OffsetDateTime;

use crate::desired::NodeState;
use crate::health::{Change, ChangeKind, Segment, ServiceState};

/// Most changes kept in memory per TART: a TART that flaps more often than
/// this within the retention keeps its latest changes, and the bar shows
/// the state before them as one stretch.
pub const MAX_CHANGES_PER_TART: usize = 512;

/// The in-memory history of every TART (bounded: at most
/// [`MAX_CHANGES_PER_TART`] changes per TART).
#[derive(Debug, Default)]
pub struct Log {
    tarts: HashMap<String, Track>,
}

/// One TART's history.
#[derive(Debug, Default)]
struct Track {
    /// The states before the oldest kept change.
    base: States,
    /// The states after the newest change.
    now: States,
    /// Changes, oldest first, times never decreasing.
    changes: VecDeque<(OffsetDateTime, ChangeKind)>,
}

/// A TART's tailnet and service state at one time.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct States {
    tailnet: Option<NodeState>,
    service: ServiceState,
}

impl States {
    /// The state of `kind`'s kind, as a [`ChangeKind`] (`None`: not known).
    fn of_kind(self, kind: ChangeKind) -> Option<ChangeKind> {
        match kind {
            ChangeKind::Tailnet(_) => self.tailnet.map(ChangeKind::Tailnet),
            ChangeKind::Service(_) => {
                (self.service != ServiceState::Unknown).then_some(ChangeKind::Service(self.service))
            }
        }
    }

    fn apply(&mut self, kind: ChangeKind) {
        match kind {
            ChangeKind::Tailnet(s) => self.tailnet = Some(s),
            ChangeKind::Service(s) => self.service = s,
        }
    }
}

/// A summary of one TART's history over a window, for `/api/status`.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Summary {
    /// State changes (tailnet and service) within the window.
    pub changes: usize,
    /// Share of the probed time within the window the service was up
    /// (0 to 1), `None` when it was never probed in the window.
    pub up_ratio: Option<f64>,
    /// Share of the window headscale showed the node online or in grace
    /// (0 to 1), `None` when its tailnet state was never known in the window.
    pub online_ratio: Option<f64>,
    /// The newest change within the window.
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_change: Option<OffsetDateTime>,
}

impl Log {
    /// Adds `change` unless the TART already is in that state. Returns
    /// `Some(previous state of that kind)` when it was added, `None` when
    /// ignored. A change dated before the TART's newest one is kept at that
    /// newest time (the history never goes back).
    pub fn append(&mut self, change: &Change) -> Option<Option<ChangeKind>> {
        let track = match self.tarts.get_mut(&change.name) {
            Some(t) => t,
            None => self.tarts.entry(change.name.clone()).or_default(),
        };
        let previous = track.now.of_kind(change.kind);
        if previous == Some(change.kind) {
            return None;
        }
        let at = match track.changes.back() {
            Some((last, _)) if *last > change.at => *last,
            _ => change.at,
        };
        track.changes.push_back((at, change.kind));
        track.now.apply(change.kind);
        while track.changes.len() > MAX_CHANGES_PER_TART {
            if let Some((_, kind)) = track.changes.pop_front() {
                track.base.apply(kind);
            }
        }
        Some(previous)
    }

    /// Forgets changes before `cutoff` (folded into the state before the
    /// oldest kept change).
    pub fn prune(&mut self, cutoff: OffsetDateTime) {
        for track in self.tarts.values_mut() {
            while track.changes.front().is_some_and(|(at, _)| *at < cutoff) {
                if let Some((_, kind)) = track.changes.pop_front() {
                    track.base.apply(kind);
                }
            }
        }
    }

    /// Forgets the TARTs that `keep` refuses and that did not change since
    /// `cutoff` (they left the tailnet or the filters): memory stays
    /// bounded by the TARTs known now and those that changed recently.
    pub fn forget(&mut self, cutoff: OffsetDateTime, keep: impl Fn(&str) -> bool) {
        self.tarts.retain(|name, track| {
            keep(name) || track.changes.back().is_some_and(|(at, _)| *at >= cutoff)
        });
    }

    /// TARTs with a history.
    pub fn len(&self) -> usize {
        self.tarts.len()
    }

    /// Whether no TART has a history.
    pub fn is_empty(&self) -> bool {
        self.tarts.is_empty()
    }

    /// Changes kept in memory, over every TART.
    pub fn changes(&self) -> usize {
        self.tarts.values().map(|t| t.changes.len()).sum()
    }

    /// See [`crate::health::Health::segments`].
    pub fn segments(&self, name: &str, from: OffsetDateTime, to: OffsetDateTime) -> Vec<Segment> {
        let Some(track) = self.tarts.get(name) else {
            return Vec::new();
        };
        if to <= from {
            return Vec::new();
        }
        let mut out: Vec<Segment> = Vec::new();
        let mut push = |from: OffsetDateTime, to: OffsetDateTime, s: States| {
            if to <= from {
                return;
            }
            match out.last_mut() {
                Some(last) if last.tailnet == s.tailnet && last.service == s.service => {
                    last.to = to;
                }
                _ => out.push(Segment {
                    from,
                    to,
                    tailnet: s.tailnet,
                    service: s.service,
                }),
            }
        };
        let mut states = track.base;
        let mut start = from;
        for &(at, kind) in &track.changes {
            if at >= to {
                break;
            }
            if at > start {
                push(start, at, states);
                start = at;
            }
            states.apply(kind);
        }
        push(start, to, states);
        out
    }

    /// One TART's history over `from..to` in figures (`None`: nothing known).
    pub fn summary(&self, name: &str, from: OffsetDateTime, to: OffsetDateTime) -> Option<Summary> {
        let track = self.tarts.get(name)?;
        let in_window = || {
            (track.changes.iter())
                .filter(move |(at, _)| *at >= from && *at < to)
                .map(|(at, _)| *at)
        };
        let (mut up, mut probed, mut online, mut known) = (0.0, 0.0, 0.0, 0.0);
        for s in self.segments(name, from, to) {
            let secs = (s.to - s.from).as_seconds_f64();
            if s.service != ServiceState::Unknown {
                probed += secs;
                if s.service == ServiceState::Up {
                    up += secs;
                }
            }
            if let Some(t) = s.tailnet {
                known += secs;
                if t.is_proxied() {
                    online += secs;
                }
            }
        }
        let ratio = |part: f64, whole: f64| (whole > 0.0).then(|| part / whole);
        Some(Summary {
            changes: in_window().count(),
            up_ratio: ratio(up, probed),
            online_ratio: ratio(online, known),
            last_change: in_window().next_back(),
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use time::macros::datetime;
    use time::Duration;

    use super::*;

    fn change(at: OffsetDateTime, kind: ChangeKind) -> Change {
        Change {
            at,
            name: "rhodes".into(),
            kind,
        }
    }

    const T0: OffsetDateTime = datetime!(2026-07-10 08:00 UTC);
    const UP: ChangeKind = ChangeKind::Service(ServiceState::Up);
    const DOWN: ChangeKind = ChangeKind::Service(ServiceState::Down);
    const ONLINE: ChangeKind = ChangeKind::Tailnet(NodeState::Online);
    const OFFLINE: ChangeKind = ChangeKind::Tailnet(NodeState::Offline);

    fn seg(from: i64, to: i64, tailnet: Option<NodeState>, service: ServiceState) -> Segment {
        Segment {
            from: T0 + Duration::minutes(from),
            to: T0 + Duration::minutes(to),
            tailnet,
            service,
        }
    }

    #[test]
    fn segments_follow_the_changes_and_start_unknown() {
        let mut log = Log::default();
        let m = Duration::minutes;
        assert_eq!(log.append(&change(T0 + m(10), ONLINE)), Some(None));
        assert_eq!(log.append(&change(T0 + m(11), UP)), Some(None));
        assert_eq!(log.append(&change(T0 + m(12), UP)), None, "same state");
        assert_eq!(log.append(&change(T0 + m(20), DOWN)), Some(Some(UP)));
        assert_eq!(log.append(&change(T0 + m(30), OFFLINE)), Some(Some(ONLINE)));
        let on = Some(NodeState::Online);
        assert_eq!(
            log.segments("rhodes", T0, T0 + m(40)),
            [
                seg(0, 10, None, ServiceState::Unknown),
                seg(10, 11, on, ServiceState::Unknown),
                seg(11, 20, on, ServiceState::Up),
                seg(20, 30, on, ServiceState::Down),
                seg(30, 40, Some(NodeState::Offline), ServiceState::Down),
            ]
        );
        // A window inside: the state at its start comes from earlier changes.
        assert_eq!(
            log.segments("rhodes", T0 + m(15), T0 + m(25)),
            [
                seg(15, 20, on, ServiceState::Up),
                seg(20, 25, on, ServiceState::Down)
            ]
        );
        assert!(log.segments("nobody", T0, T0 + m(1)).is_empty());
        assert!(log.segments("rhodes", T0 + m(5), T0 + m(5)).is_empty());
        let s = log.summary("rhodes", T0, T0 + m(40)).unwrap();
        assert_eq!((s.changes, s.last_change), (4, Some(T0 + m(30))));
        // Up 9 of the 29 probed minutes; online 20 of the 30 known minutes.
        assert!((s.up_ratio.unwrap() - 9.0 / 29.0).abs() < 1e-9, "{s:?}");
        assert!(
            (s.online_ratio.unwrap() - 20.0 / 30.0).abs() < 1e-9,
            "{s:?}"
        );
    }

    #[test]
    fn pruning_keeps_the_state_at_the_cutoff() {
        let mut log = Log::default();
        let m = Duration::minutes;
        log.append(&change(T0, ONLINE));
        log.append(&change(T0 + m(1), UP));
        log.append(&change(T0 + m(50), DOWN));
        log.prune(T0 + m(30));
        assert_eq!(log.changes(), 1);
        let on = Some(NodeState::Online);
        assert_eq!(
            log.segments("rhodes", T0, T0 + m(60)),
            [
                seg(0, 50, on, ServiceState::Up),
                seg(50, 60, on, ServiceState::Down)
            ]
        );
        // Gone from the tailnet but changed since the cutoff: kept.
        log.forget(T0 + m(30), |_| false);
        assert_eq!(log.len(), 1);
        log.forget(T0 + m(55), |_| false);
        assert!(log.is_empty());
    }

    #[test]
    fn memory_is_bounded_per_tart() {
        let mut log = Log::default();
        for i in 0..(MAX_CHANGES_PER_TART as i64 * 3) {
            let kind = if i % 2 == 0 { UP } else { DOWN };
            log.append(&change(T0 + Duration::seconds(i), kind));
        }
        assert_eq!(log.changes(), MAX_CHANGES_PER_TART);
        // The oldest kept change still follows the right state.
        let segs = log.segments("rhodes", T0, T0 + Duration::hours(1));
        assert_eq!(segs.len(), MAX_CHANGES_PER_TART + 1);
        assert_ne!(segs[0].service, segs[1].service);
    }

    #[test]
    fn changes_never_go_back_in_time() {
        let mut log = Log::default();
        log.append(&change(T0 + Duration::minutes(5), UP));
        log.append(&change(T0, DOWN));
        let segs = log.segments("rhodes", T0, T0 + Duration::minutes(10));
        assert_eq!(segs.last().unwrap().service, ServiceState::Down);
        assert!(segs
            .windows(2)
            .all(|w| w[0].to == w[1].from && w[0].from < w[0].to));
    }
}
