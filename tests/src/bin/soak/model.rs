//! The soak's own model of the fleet, independent of tart-sync's code: which
//! answer Caddy owes for every name at every instant, and the judge that
//! decides whether an answer seen through Caddy was right, stale but still
//! inside the convergence window, or wrong.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use e2e::backend::fleet_ip;
use time::OffsetDateTime;

/// One simulated headscale node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// headscale's node id.
    pub id: u64,
    /// Its `givenName`, the URL name.
    pub name: String,
    /// Which backend address it has ([`fleet_ip`] of this index).
    pub addr: usize,
    /// headscale's `online`.
    pub online: bool,
    /// headscale's `lastSeen` (when it went offline, for an offline node).
    pub last_seen: OffsetDateTime,
}

/// The nodes the stand-in serves, by id. Names are unique (the churn only
/// ever hands out fresh names).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Fleet {
    /// The nodes, by id.
    pub nodes: BTreeMap<u64, Node>,
}

/// The backend's name at address index `addr`, as its echo JSON reports it.
pub fn backend_label(addr: usize) -> String {
    format!("backend-{}", fleet_ip(addr))
}

/// What Caddy answers for `GET /<name>/` with the site's Host.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Answer {
    /// 200 from the backend with this label.
    Backend(String),
    /// 503 "TART <name> is offline".
    Offline,
    /// The site's own 404 "No TART here".
    NoTart,
    /// Anything else (status and the start of the body, or a transport error).
    Other(String),
}

impl std::fmt::Display for Answer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Answer::Backend(b) => write!(f, "200 from {b}"),
            Answer::Offline => f.write_str("503 offline page"),
            Answer::NoTart => f.write_str("404 No TART here"),
            Answer::Other(s) => write!(f, "unexpected: {s}"),
        }
    }
}

/// Classifies a response to `GET /<name>/`.
pub fn classify(name: &str, status: u16, body: &str) -> Answer {
    match status {
        200 => serde_json::from_str::<serde_json::Value>(body)
            .ok()
            .and_then(|v| v["tart"].as_str().map(|s| Answer::Backend(s.to_string())))
            .unwrap_or_else(|| Answer::Other(format!("200 without echo JSON: {}", head(body)))),
        503 if body.contains(&format!("TART {name} is offline")) => Answer::Offline,
        404 if body.starts_with("No TART here") => Answer::NoTart,
        _ => Answer::Other(format!("{status}: {}", head(body))),
    }
}

fn head(s: &str) -> String {
    s.chars().take(80).collect::<String>().replace('\n', " ")
}

impl Fleet {
    /// The node called `name`, if any.
    pub fn by_name(&self, name: &str) -> Option<&Node> {
        self.nodes.values().find(|n| n.name == name)
    }

    /// What `/<name>/` must answer at `at`: online → its backend; offline
    /// for less than `grace` since `lastSeen` → still its backend; offline
    /// longer → the 503 page; no such node → the site's 404.
    pub fn expect(&self, name: &str, at: OffsetDateTime, grace: Duration) -> Answer {
        match self.by_name(name) {
            None => Answer::NoTart,
            Some(n) if n.online || at < n.last_seen + grace => {
                Answer::Backend(backend_label(n.addr))
            }
            Some(_) => Answer::Offline,
        }
    }

    /// Every name's expected answer at `at` (the table tart-sync should write).
    pub fn table(&self, at: OffsetDateTime, grace: Duration) -> BTreeMap<String, Answer> {
        self.nodes
            .values()
            .map(|n| (n.name.clone(), self.expect(&n.name, at, grace)))
            .collect()
    }

    /// Nodes online now.
    pub fn online(&self) -> usize {
        self.nodes.values().filter(|n| n.online).count()
    }

    /// Offline nodes still inside their grace at `at`.
    pub fn in_grace(&self, at: OffsetDateTime, grace: Duration) -> usize {
        self.nodes
            .values()
            .filter(|n| !n.online && at < n.last_seen + grace)
            .count()
    }
}

/// The fleets the stand-in served, each from the instant it was swapped in.
#[derive(Debug)]
pub struct Timeline {
    grace: Duration,
    entries: VecDeque<(OffsetDateTime, Arc<Fleet>)>,
    latest: Arc<Fleet>,
}

impl Timeline {
    /// A timeline starting with `fleet` at `at`.
    pub fn new(grace: Duration, at: OffsetDateTime, fleet: Fleet) -> Timeline {
        let latest = Arc::new(fleet);
        Timeline {
            grace,
            entries: VecDeque::from([(at, latest.clone())]),
            latest,
        }
    }

    /// The stand-in serves `fleet` from `at` on.
    pub fn push(&mut self, at: OffsetDateTime, fleet: Fleet) {
        self.latest = Arc::new(fleet);
        self.entries.push_back((at, self.latest.clone()));
    }

    /// The fleet served now.
    pub fn current(&self) -> &Fleet {
        &self.latest
    }

    /// Forgets fleets that stopped being served before `before`.
    pub fn prune(&mut self, before: OffsetDateTime) {
        while self.entries.len() > 1 && self.entries.get(1).is_some_and(|(t, _)| *t <= before) {
            self.entries.pop_front();
        }
    }

    /// Every answer `/<name>/` was owed at some instant in `[from, to]`.
    pub fn answers_between(
        &self,
        name: &str,
        from: OffsetDateTime,
        to: OffsetDateTime,
    ) -> Vec<Answer> {
        let mut out: Vec<Answer> = Vec::new();
        for (i, (since, fleet)) in self.entries.iter().enumerate() {
            let until = self.entries.get(i + 1).map(|(t, _)| *t);
            if until.is_some_and(|u| u <= from) || *since > to {
                continue;
            }
            let lo = (*since).max(from);
            let hi = until.map_or(to, |u| u.min(to));
            // Within one fleet an answer changes at most once (a grace ends),
            // so the two ends of the span hold every answer it owed.
            for at in [lo, hi] {
                let a = fleet.expect(name, at, self.grace);
                if !out.contains(&a) {
                    out.push(a);
                }
            }
        }
        out
    }
}

/// A period in which the stand-in answered headscale faults.
#[derive(Debug, Clone, Copy)]
pub struct FaultSpan {
    /// When the fault began.
    pub start: OffsetDateTime,
    /// When it ended (`None`: still going on).
    pub end: Option<OffsetDateTime>,
}

/// How late tart-sync may be.
#[derive(Debug, Clone, Copy)]
pub struct Tolerance {
    /// After a change: one poll interval plus a margin.
    pub window: Duration,
    /// After a headscale fault ends: tart-sync's longest backoff plus the window.
    pub recovery: Duration,
}

/// The verdict on one answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// What the name is owed now.
    Right,
    /// An answer the name was owed within the tolerated lag: not yet converged, allowed.
    Stale,
    /// Neither: counted as a wrong answer.
    Wrong,
}

/// Judges `got` for a request for `name` sent at `sent` and answered at
/// `received`. Right when it is what the name is owed at `sent` or later;
/// stale when it was owed at some instant within `window` before `sent`
/// (while a headscale fault lasts, and for `recovery` after it, anything owed
/// since `window` before the fault began); wrong otherwise. A name whose
/// answer did not change must therefore stay right through faults.
pub fn judge(
    timeline: &Timeline,
    faults: &[FaultSpan],
    tol: Tolerance,
    name: &str,
    got: &Answer,
    sent: OffsetDateTime,
    received: OffsetDateTime,
) -> Verdict {
    if timeline.answers_between(name, sent, received).contains(got) {
        return Verdict::Right;
    }
    let mut from = sent - tol.window;
    for f in faults {
        let lasting = f.end.is_none_or(|e| sent < e + tol.recovery);
        if f.start <= received && lasting {
            from = from.min(f.start - tol.window);
        }
    }
    if timeline.answers_between(name, from, received).contains(got) {
        Verdict::Stale
    } else {
        Verdict::Wrong
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GRACE: Duration = Duration::from_secs(5);
    const TOL: Tolerance = Tolerance {
        window: Duration::from_secs(3),
        recovery: Duration::from_secs(15),
    };

    fn t0() -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap()
    }

    fn s(secs: u64) -> OffsetDateTime {
        t0() + Duration::from_secs(secs)
    }

    fn fleet(nodes: &[(u64, &str, usize, bool, OffsetDateTime)]) -> Fleet {
        Fleet {
            nodes: nodes
                .iter()
                .map(|(id, name, addr, online, last_seen)| {
                    (
                        *id,
                        Node {
                            id: *id,
                            name: name.to_string(),
                            addr: *addr,
                            online: *online,
                            last_seen: *last_seen,
                        },
                    )
                })
                .collect(),
        }
    }

    fn backend(addr: usize) -> Answer {
        Answer::Backend(backend_label(addr))
    }

    #[test]
    fn an_offline_node_keeps_its_backend_for_the_grace_then_owes_the_503() {
        let f = fleet(&[(1, "a", 0, false, s(10))]);
        assert_eq!(f.expect("a", s(14), GRACE), backend(0));
        assert_eq!(f.expect("a", s(15), GRACE), Answer::Offline);
        assert_eq!(f.expect("nobody", s(15), GRACE), Answer::NoTart);
    }

    #[test]
    fn an_old_answer_is_stale_inside_the_window_and_wrong_after_it() {
        // "a" moves from address 0 to 1 at t=100.
        let mut tl = Timeline::new(GRACE, s(0), fleet(&[(1, "a", 0, true, s(0))]));
        tl.push(s(100), fleet(&[(1, "a", 1, true, s(0))]));
        let j = |got: &Answer, at: u64| judge(&tl, &[], TOL, "a", got, s(at), s(at));
        assert_eq!(j(&backend(0), 99), Verdict::Right);
        assert_eq!(j(&backend(0), 102), Verdict::Stale);
        assert_eq!(j(&backend(0), 104), Verdict::Wrong);
        assert_eq!(j(&backend(1), 101), Verdict::Right);
        assert_eq!(j(&backend(2), 101), Verdict::Wrong);
        assert_eq!(j(&Answer::NoTart, 101), Verdict::Wrong);
    }

    #[test]
    fn the_end_of_a_grace_opens_a_window_of_its_own() {
        // "a" goes offline at t=100; its grace ends at 105.
        let mut tl = Timeline::new(GRACE, s(0), fleet(&[(1, "a", 0, true, s(0))]));
        tl.push(s(100), fleet(&[(1, "a", 0, false, s(100))]));
        let j = |got: &Answer, at: u64| judge(&tl, &[], TOL, "a", got, s(at), s(at));
        assert_eq!(j(&backend(0), 104), Verdict::Right);
        assert_eq!(
            j(&Answer::Offline, 104),
            Verdict::Wrong,
            "503 before the grace ended"
        );
        assert_eq!(j(&backend(0), 107), Verdict::Stale);
        assert_eq!(
            j(&backend(0), 109),
            Verdict::Wrong,
            "still proxied 4 s after the grace"
        );
        assert_eq!(j(&Answer::Offline, 106), Verdict::Right);
    }

    #[test]
    fn a_fault_excuses_changes_until_it_is_over_but_not_a_stable_name() {
        // "a" is removed at t=100, during a fault from 99 to 110; "b" never changes.
        let mut tl = Timeline::new(
            GRACE,
            s(0),
            fleet(&[(1, "a", 0, true, s(0)), (2, "b", 1, true, s(0))]),
        );
        tl.push(s(100), fleet(&[(2, "b", 1, true, s(0))]));
        let faults = [FaultSpan {
            start: s(99),
            end: Some(s(110)),
        }];
        let j =
            |name: &str, got: &Answer, at: u64| judge(&tl, &faults, TOL, name, got, s(at), s(at));
        assert_eq!(j("a", &backend(0), 120), Verdict::Stale, "within recovery");
        assert_eq!(j("a", &backend(0), 126), Verdict::Wrong, "after recovery");
        assert_eq!(j("b", &Answer::NoTart, 105), Verdict::Wrong);
        assert_eq!(j("b", &backend(1), 105), Verdict::Right);
    }

    #[test]
    fn pruning_keeps_what_the_window_needs() {
        let mut tl = Timeline::new(GRACE, s(0), fleet(&[(1, "a", 0, true, s(0))]));
        tl.push(s(10), fleet(&[(1, "a", 1, true, s(0))]));
        tl.push(s(20), fleet(&[(1, "a", 2, true, s(0))]));
        tl.prune(s(15));
        assert_eq!(
            tl.answers_between("a", s(15), s(25)),
            vec![backend(1), backend(2)]
        );
        assert_eq!(tl.current().expect("a", s(30), GRACE), backend(2));
    }

    #[test]
    fn responses_are_classified_by_status_and_body() {
        assert_eq!(
            classify("a", 200, r#"{"tart":"backend-x","path":"/"}"#),
            Answer::Backend("backend-x".into())
        );
        assert_eq!(
            classify("a", 503, "<h1>TART a is offline</h1>"),
            Answer::Offline
        );
        assert!(matches!(
            classify("a", 503, "<h1>TART b is offline</h1>"),
            Answer::Other(_)
        ));
        assert_eq!(
            classify("a", 404, "No TART here. Telescopes are at /<name>/."),
            Answer::NoTart
        );
        assert!(matches!(classify("a", 502, ""), Answer::Other(_)));
    }
}
