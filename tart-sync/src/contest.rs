//! Another writer changing the owned route: a second tart-sync with other
//! settings, or a script, would otherwise make each instance rewrite the
//! route every cycle, and every write is a full Caddy reload.
//!
//! The first change by someone else is undone at once (it may be a one-off
//! hand edit, or another instance that has not seen the same change yet).
//! When it happens again before the route stayed as tart-sync wrote it,
//! tart-sync warns and leaves the route alone for a time that doubles with
//! each further change (2 s … 5 min), restoring it once after each quiet
//! time. The count resets once the route has stayed as tart-sync wrote it
//! for twice the last quiet time (at least [`FIRST_QUIET`]). Resetting any
//! sooner would let two instances reset each other: each sees its own route
//! while the other one is quiet, so each would start over at an immediate
//! restore after every quiet time.

use std::time::{Duration, Instant};

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};

/// The first quiet time after a repeated change by someone else.
pub const FIRST_QUIET: Duration = Duration::from_secs(2);
/// The longest quiet time.
pub const MAX_QUIET: Duration = Duration::from_secs(300);

/// What tart-sync knows about changes to its route by someone else.
#[derive(Debug, Default)]
pub struct Contest {
    /// Changes by someone else seen in a row.
    changes: u32,
    /// Until when tart-sync leaves the route alone.
    quiet_until: Option<Instant>,
    /// The last quiet time started.
    last_quiet: Duration,
    /// Since when the route has been seen as tart-sync wrote it.
    ours_since: Option<Instant>,
    backoff: Option<ExponentialBackoff>,
}

/// What to do about a change by someone else.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Put the route back now.
    Restore,
    /// Leave it alone for this long (`changes` in a row so far).
    Wait {
        /// How much longer to leave the route alone.
        remaining: Duration,
        /// Changes by someone else seen in a row.
        changes: u32,
        /// True when this change started the quiet time (log it once).
        started: bool,
    },
}

impl Contest {
    /// The route was found as tart-sync wants or wrote it. Once it has
    /// stayed so for twice the last quiet time (at least [`FIRST_QUIET`]),
    /// nobody is contesting it any more and the count starts over.
    pub fn settled(&mut self, now: Instant) {
        if self.changes == 0 {
            return;
        }
        let since = *self.ours_since.get_or_insert(now);
        let window = self.last_quiet.saturating_mul(2).max(FIRST_QUIET);
        if now.saturating_duration_since(since) >= window {
            *self = Contest::default();
        }
    }

    /// The route was found changed by someone else since tart-sync last
    /// wrote or verified it.
    pub fn changed_by_other(&mut self, now: Instant) -> Verdict {
        self.ours_since = None;
        match self.quiet_until {
            Some(until) if now < until => {
                return Verdict::Wait {
                    remaining: until.saturating_duration_since(now),
                    changes: self.changes,
                    started: false,
                }
            }
            // The quiet time is over: put the route back once.
            Some(_) => {
                self.quiet_until = None;
                return Verdict::Restore;
            }
            None => {}
        }
        self.changes = self.changes.saturating_add(1);
        if self.changes < 2 {
            return Verdict::Restore;
        }
        let quiet = self
            .backoff
            .get_or_insert_with(|| {
                ExponentialBuilder::default()
                    .with_min_delay(FIRST_QUIET)
                    .with_max_delay(MAX_QUIET)
                    .with_factor(2.0)
                    .without_max_times()
                    .build()
            })
            .next()
            .unwrap_or(MAX_QUIET);
        self.quiet_until = now.checked_add(quiet);
        self.last_quiet = quiet;
        Verdict::Wait {
            remaining: quiet,
            changes: self.changes,
            started: true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_one_off_change_is_undone_at_once() {
        let mut c = Contest::default();
        let t0 = Instant::now();
        assert_eq!(c.changed_by_other(t0), Verdict::Restore);
        // Seen as written for the first quiet time: the next change is
        // another one-off, undone at once too.
        c.settled(t0);
        c.settled(t0 + FIRST_QUIET);
        assert_eq!(c.changed_by_other(t0 + FIRST_QUIET), Verdict::Restore);
    }

    #[test]
    fn seeing_the_route_as_written_between_changes_does_not_start_over() {
        // Two instances alternate: each sees its own route while the other
        // one is quiet. That is no reason to forget the count.
        let mut c = Contest::default();
        let t0 = Instant::now();
        assert_eq!(c.changed_by_other(t0), Verdict::Restore);
        c.settled(t0 + Duration::from_millis(100));
        assert!(matches!(
            c.changed_by_other(t0 + Duration::from_millis(200)),
            Verdict::Wait { changes: 2, .. }
        ));
        let after = t0 + Duration::from_millis(200) + FIRST_QUIET;
        assert_eq!(c.changed_by_other(after), Verdict::Restore);
        // The other instance is quiet for as long as this one was.
        c.settled(after);
        c.settled(after + FIRST_QUIET);
        let Verdict::Wait {
            remaining, changes, ..
        } = c.changed_by_other(after + FIRST_QUIET)
        else {
            panic!("still contested after the other side's quiet time");
        };
        assert_eq!((remaining, changes), (FIRST_QUIET * 2, 3));
        // Twice the last quiet time as written: the count starts over.
        let later = after + FIRST_QUIET * 3;
        assert_eq!(c.changed_by_other(later), Verdict::Restore);
        c.settled(later);
        c.settled(later + FIRST_QUIET * 4);
        assert_eq!(
            c.changed_by_other(later + FIRST_QUIET * 4),
            Verdict::Restore
        );
    }

    #[test]
    fn repeated_changes_back_off_exponentially_with_one_restore_after_each_quiet_time() {
        let mut c = Contest::default();
        let t0 = Instant::now();
        assert_eq!(c.changed_by_other(t0), Verdict::Restore);
        let Verdict::Wait {
            remaining: first,
            started: true,
            changes: 2,
        } = c.changed_by_other(t0)
        else {
            panic!("the second change in a row starts a quiet time");
        };
        assert_eq!(first, FIRST_QUIET);
        // During the quiet time: no writes, and no new count.
        let mid = t0 + first / 2;
        assert!(matches!(
            c.changed_by_other(mid),
            Verdict::Wait {
                started: false,
                changes: 2,
                ..
            }
        ));
        // After it: one restore, then the next change waits twice as long.
        let after = t0 + first;
        assert_eq!(c.changed_by_other(after), Verdict::Restore);
        let Verdict::Wait { remaining, .. } = c.changed_by_other(after) else {
            panic!("still contested");
        };
        assert_eq!(remaining, first * 2);
        // Quiet times never exceed the cap.
        let mut now = after;
        for _ in 0..20 {
            now += MAX_QUIET;
            c.changed_by_other(now);
            if let Verdict::Wait { remaining, .. } = c.changed_by_other(now) {
                assert!(remaining <= MAX_QUIET);
            }
        }
    }
}
