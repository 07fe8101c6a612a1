//! The JSON body of a webhook.
//!
//! ```json
//! {
//!   "text": "TART rhodes: web service down (was up): 100.64.0.12:80: cannot connect: Connection refused",
//!   "tart": "rhodes",
//!   "kind": "service",
//!   "state": "down",
//!   "previous": "up",
//!   "at": "2026-07-10T08:15:00Z",
//!   "url": "https://tart.example.org/rhodes/",
//!   "error": "100.64.0.12:80: cannot connect: Connection refused",
//!   "source": "tart-sync"
//! }
//! ```
//!
//! - `text`: one line for people. Slack incoming webhooks, Mattermost and
//!   Matrix hookshot's generic webhooks post it as the message as is.
//! - `kind`: `service` (the probes' view: `state` is `up` or `down`) or
//!   `tailnet` (headscale's: `online`, `grace` or `offline`).
//! - `previous`: the state before, of the same kind.
//! - `at`: when the change was seen (RFC 3339, UTC).
//! - `error`: why the probe failed, for a `service` change to `down`; else `null`.
//!
//! More than [`MAX_SINGLE`] changes seen at once (one poll: headscale
//! restarted, an uplink went down) become one webhook instead of a storm:
//! `kind` is `many`, `tart` is `*`, `state` and `previous` are empty, `url`
//! is empty, and `text` counts the changes by kind and state and names the
//! first TARTs, e.g. `"120 TARTs changed at once: 120 tailnet grace (was
//! online): alpha, beta, … and 110 more"`.

use serde::Serialize;
use time::OffsetDateTime;

use crate::health::{ChangeKind, Recorded};

/// Most changes seen at once that are sent one webhook each; more become
/// one summary ([`Notification::summary`]).
pub const MAX_SINGLE: usize = 10;

/// One webhook's body (see the module documentation).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Notification {
    /// One line for people.
    pub text: String,
    /// The TART's name.
    pub tart: String,
    /// `service` or `tailnet`.
    pub kind: &'static str,
    /// The new state.
    pub state: &'static str,
    /// The state before.
    pub previous: &'static str,
    /// When the change was seen.
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// The TART's public URL.
    pub url: String,
    /// Why the probe failed, for a change to `down`.
    pub error: Option<String>,
    /// Always `tart-sync`.
    pub source: &'static str,
}

fn parts(kind: ChangeKind) -> (&'static str, &'static str) {
    match kind {
        ChangeKind::Tailnet(s) => ("tailnet", s.as_str()),
        ChangeKind::Service(s) => ("service", s.as_str()),
    }
}

impl Notification {
    /// The body for `recorded`, or `None` when it is not news: the first
    /// state known of a TART (no previous state), or a TART that stopped
    /// being probed (service state `unknown`).
    pub fn of(recorded: &Recorded, url: String, error: Option<String>) -> Option<Notification> {
        let previous = recorded.previous?;
        let (kind, state) = parts(recorded.change.kind);
        let (_, was) = parts(previous);
        if state == "unknown" {
            return None;
        }
        let name = &recorded.change.name;
        let what = if kind == "service" {
            "web service"
        } else {
            "tailnet"
        };
        let error = error.filter(|_| state == "down");
        let text = match &error {
            Some(e) => format!("TART {name}: {what} {state} (was {was}): {e}"),
            None => format!("TART {name}: {what} {state} (was {was})"),
        };
        Some(Notification {
            text,
            tart: name.clone(),
            kind,
            state,
            previous: was,
            at: recorded.change.at,
            url,
            error,
            source: "tart-sync",
        })
    }
}

impl Notification {
    /// One webhook for many changes seen at once (see the module documentation).
    pub fn summary(all: &[Notification]) -> Notification {
        let mut groups: Vec<((&str, &str, &str), usize)> = Vec::new();
        for n in all {
            let key = (n.kind, n.state, n.previous);
            match groups.iter_mut().find(|(k, _)| *k == key) {
                Some((_, count)) => *count = count.saturating_add(1),
                None => groups.push((key, 1)),
            }
        }
        let counts: Vec<String> = groups
            .iter()
            .map(|((kind, state, previous), count)| {
                format!("{count} {kind} {state} (was {previous})")
            })
            .collect();
        let names: Vec<&str> = all
            .iter()
            .take(MAX_SINGLE)
            .map(|n| n.tart.as_str())
            .collect();
        let more = all.len().saturating_sub(names.len());
        let tail = if more > 0 {
            format!(", … and {more} more")
        } else {
            String::new()
        };
        Notification {
            text: format!(
                "{} TARTs changed at once: {}: {}{tail}",
                all.len(),
                counts.join(", "),
                names.join(", ")
            ),
            tart: "*".into(),
            kind: "many",
            state: "",
            previous: "",
            at: all.first().map_or_else(OffsetDateTime::now_utc, |n| n.at),
            url: String::new(),
            error: None,
            source: "tart-sync",
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use time::macros::datetime;

    use super::*;
    use crate::desired::NodeState;
    use crate::health::{Change, ServiceState};

    fn recorded(kind: ChangeKind, previous: Option<ChangeKind>) -> Recorded {
        Recorded {
            change: Change {
                at: datetime!(2026-07-10 08:15 UTC),
                name: "rhodes".into(),
                kind,
            },
            previous,
        }
    }

    #[test]
    fn the_documented_body() {
        let r = recorded(
            ChangeKind::Service(ServiceState::Down),
            Some(ChangeKind::Service(ServiceState::Up)),
        );
        let error = "100.64.0.12:80: cannot connect: Connection refused";
        let n = Notification::of(
            &r,
            "https://tart.example.org/rhodes/".into(),
            Some(error.into()),
        );
        let json = serde_json::to_value(n.unwrap()).unwrap();
        let doc = include_str!("body.rs");
        let documented: String = (doc.lines())
            .skip_while(|l| !l.starts_with("//! ```json"))
            .skip(1)
            .take_while(|l| !l.starts_with("//! ```"))
            .map(|l| l.trim_start_matches("//!"))
            .collect();
        let documented: serde_json::Value = serde_json::from_str(&documented).unwrap();
        assert_eq!(json, documented);
    }

    #[test]
    fn only_news_is_sent() {
        let url = String::new;
        let up = ChangeKind::Service(ServiceState::Up);
        assert!(Notification::of(&recorded(up, None), url(), None).is_none());
        let unknown = ChangeKind::Service(ServiceState::Unknown);
        assert!(Notification::of(&recorded(unknown, Some(up)), url(), None).is_none());
        let offline = ChangeKind::Tailnet(NodeState::Offline);
        let online = ChangeKind::Tailnet(NodeState::Online);
        let n =
            Notification::of(&recorded(offline, Some(online)), url(), Some("x".into())).unwrap();
        assert_eq!(n.text, "TART rhodes: tailnet offline (was online)");
        assert_eq!(n.error, None);
    }

    #[test]
    fn many_changes_at_once_make_one_summary() {
        let grace = ChangeKind::Tailnet(NodeState::Grace);
        let online = ChangeKind::Tailnet(NodeState::Online);
        let mut all: Vec<Notification> = (0..12)
            .map(|i| {
                let mut r = recorded(grace, Some(online));
                r.change.name = format!("t{i:02}");
                Notification::of(&r, String::new(), None).unwrap()
            })
            .collect();
        let down = ChangeKind::Service(ServiceState::Down);
        let up = ChangeKind::Service(ServiceState::Up);
        all.push(Notification::of(&recorded(down, Some(up)), String::new(), None).unwrap());
        let s = Notification::summary(&all);
        assert_eq!((s.kind, s.tart.as_str()), ("many", "*"));
        assert_eq!(
            s.text,
            "13 TARTs changed at once: 12 tailnet grace (was online), 1 service down (was up): \
             t00, t01, t02, t03, t04, t05, t06, t07, t08, t09, … and 3 more"
        );
    }
}
