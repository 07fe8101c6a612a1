//! The mass-removal guard: a change that would stop proxying more than half
//! of the routes at once (headscale just restarted and reports every node
//! offline) is held until the same picture has lasted `offline_grace`.

use std::time::{Duration, Instant};

use crate::layout::Diff;

/// Mass-removal guard: remembers since when the same removal has been wanted.
#[derive(Debug, Default, Clone)]
pub struct Guard {
    pending: Option<(Instant, Vec<String>)>,
}

impl Guard {
    /// Decides whether a change may go ahead. A change that stops proxying
    /// more than half of the `proxied` routes (and at least two) is held
    /// until the same picture has been seen for `hold`. What counts is the
    /// routes that would stop being proxied ([`Diff::unrouted`]), not the net
    /// change: replacing every route by as many new ones is held too.
    /// Returns how much longer it is held.
    pub fn check(
        &mut self,
        diff: &Diff,
        proxied: usize,
        hold: Duration,
        now: Instant,
    ) -> Option<Duration> {
        let lost = diff.unrouted.len();
        if lost < 2 || lost.saturating_mul(2) <= proxied {
            self.pending = None;
            return None;
        }
        match &self.pending {
            Some((since, names)) if names == &diff.unrouted => {
                let waited = now.saturating_duration_since(*since);
                if waited >= hold {
                    self.pending = None;
                    None
                } else {
                    Some(hold - waited)
                }
            }
            _ => {
                self.pending = Some((now, diff.unrouted.clone()));
                if hold.is_zero() {
                    None
                } else {
                    Some(hold)
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::desired::{Target, Targets};

    fn table(names: impl IntoIterator<Item = String>) -> Targets {
        names
            .into_iter()
            .map(|n| (n, Target::Dial("100.64.0.1:80".into())))
            .collect()
    }

    const HOLD: Duration = Duration::from_secs(60);

    #[test]
    fn replacing_every_route_by_as_many_new_ones_is_held() {
        let live = table((0..10).map(|i| format!("old-{i}")));
        let want = table((0..10).map(|i| format!("new-{i}")));
        let diff = Diff::between(&live, &want);
        assert_eq!(diff.unrouted.len(), 10);
        let mut guard = Guard::default();
        let now = Instant::now();
        assert_eq!(guard.check(&diff, 10, HOLD, now), Some(HOLD));
        // Still held while the picture lasts less than the hold time ...
        let later = now + Duration::from_secs(59);
        assert_eq!(
            guard.check(&diff, 10, HOLD, later),
            Some(Duration::from_secs(1))
        );
        // ... and applied once it has lasted that long.
        assert_eq!(guard.check(&diff, 10, HOLD, now + HOLD), None);
    }

    #[test]
    fn losing_half_or_fewer_goes_ahead_and_a_new_picture_starts_over() {
        let live = table((0..10).map(|i| format!("t-{i}")));
        let mut half = live.clone();
        for i in 0..5 {
            half.insert(format!("t-{i}"), Target::Offline);
        }
        let mut guard = Guard::default();
        let now = Instant::now();
        assert_eq!(
            guard.check(&Diff::between(&live, &half), 10, HOLD, now),
            None
        );
        let six_gone = table((6..10).map(|i| format!("t-{i}")));
        let seven_gone = table((7..10).map(|i| format!("t-{i}")));
        let six = Diff::between(&live, &six_gone);
        assert_eq!(guard.check(&six, 10, HOLD, now), Some(HOLD));
        // Another picture restarts the clock.
        let seven = Diff::between(&live, &seven_gone);
        assert_eq!(guard.check(&seven, 10, HOLD, now + HOLD), Some(HOLD));
    }

    #[test]
    fn one_route_lost_is_never_held() {
        let live = table(["a".to_string()]);
        let diff = Diff::between(&live, &Targets::new());
        assert_eq!(Guard::default().check(&diff, 1, HOLD, Instant::now()), None);
    }
}
