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

use serde::Serialize;
use time::OffsetDateTime;

use crate::health::{ChangeKind, Recorded};

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
}
