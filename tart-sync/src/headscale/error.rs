//! [`HeadscaleError`], and the excerpt of headscale's answers quoted in
//! messages.

use std::fmt::Display;
use std::time::Duration;

/// Longest excerpt of headscale's answer quoted in a message, in characters.
const EXCERPT_CHARS: usize = 120;

/// Why a headscale request failed. Never contains the API key.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HeadscaleError {
    /// headscale rejected the API key: 401, or 500 with body `Unauthorized`
    /// (0.22–0.26 answer a malformed or wrong key that way).
    #[error(
        "headscale rejected the API key (HTTP {status}): check that the configured key \
         (headscale.api_key_file / headscale.api_key) is the right one and has not expired \
         or been revoked (`headscale apikeys list`); create a new one with \
         `headscale apikeys create`"
    )]
    Unauthorized {
        /// The HTTP status (401 or 500).
        status: u16,
    },
    /// headscale answered with an error (grpc-gateway `{"code","message"}`,
    /// RFC 7807 problem+json, or another non-success answer), e.g. an
    /// unknown user.
    #[error("headscale API error (HTTP {status}): {message}")]
    Api {
        /// The HTTP status.
        status: u16,
        /// headscale's message (or an excerpt of the body).
        message: String,
    },
    /// headscale could not be reached (DNS, connection refused, TLS, reset).
    #[error("cannot reach headscale: {detail}")]
    Transport {
        /// What went wrong, with the URL (which never holds the key).
        detail: String,
    },
    /// headscale did not answer within the configured timeout.
    #[error("headscale did not answer within {}", humantime::format_duration(*after))]
    Timeout {
        /// The timeout that elapsed.
        after: Duration,
    },
    /// headscale's answer broke off before it was complete: the connection
    /// closed or failed in the middle of the body.
    #[error(
        "headscale's answer was cut short after {received} bytes ({detail}): headscale \
         restarted, or something between tart-sync and headscale (a proxy, its timeouts or \
         body limits) cut the connection; asking again at the next poll"
    )]
    Truncated {
        /// Body bytes received before it broke off.
        received: usize,
        /// The request and what the connection reported.
        detail: String,
    },
    /// The answer is not the expected JSON (garbage, HTML or truncated).
    #[error("cannot decode headscale's answer: {detail}")]
    Decode {
        /// The parse error and a short excerpt of the body.
        detail: String,
    },
    /// Both `/api/v1/node` and `/api/v1/machine` answered 404.
    #[error(
        "{url} does not look like headscale: both /api/v1/node and /api/v1/machine answered \
         404 (check headscale.url)"
    )]
    NotHeadscale {
        /// The base URL asked.
        url: String,
    },
    /// The client cannot be built (e.g. the API key cannot be sent in an
    /// HTTP header, or the HTTP/TLS stack failed to initialise).
    #[error("cannot set up the headscale client: {detail}")]
    Config {
        /// What is wrong (never the key itself).
        detail: String,
    },
}

impl HeadscaleError {
    /// True if headscale rejected the API key (renew or fix it; retrying
    /// soon will not help).
    pub fn is_auth(&self) -> bool {
        matches!(self, HeadscaleError::Unauthorized { .. })
    }

    /// The HTTP status headscale answered, if the error is about an answer.
    pub fn status(&self) -> Option<u16> {
        match self {
            HeadscaleError::Unauthorized { status } | HeadscaleError::Api { status, .. } => {
                Some(*status)
            }
            HeadscaleError::NotHeadscale { .. } => Some(404),
            _ => None,
        }
    }

    /// A [`HeadscaleError::Decode`]: `problem`, and how `body` starts.
    pub(super) fn decode(problem: impl Display, body: &[u8]) -> Self {
        HeadscaleError::Decode {
            detail: format!("{problem} (body starts with {:?})", excerpt(body)),
        }
    }
}

/// How `text` (bytes of an answer, or a string from one) starts, to quote
/// in a message: at most [`EXCERPT_CHARS`] characters on one line (control
/// characters replaced, invalid UTF-8 too), trimmed, `…` when cut.
pub(super) fn excerpt(text: impl AsRef<[u8]>) -> String {
    let bytes = text.as_ref();
    // A character takes at most 4 bytes: decode no more than is shown.
    let head = bytes.get(..EXCERPT_CHARS * 4).unwrap_or(bytes);
    let decoded = String::from_utf8_lossy(head);
    let mut chars = decoded.trim().chars();
    let mut out: String = chars
        .by_ref()
        .take(EXCERPT_CHARS)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if chars.next().is_some() {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excerpt_is_short_clean_and_marked_when_cut() {
        let long = "x\n".repeat(500);
        let e = excerpt(&long);
        assert_eq!(e.chars().count(), EXCERPT_CHARS + 1);
        assert!(e.ends_with('…'));
        assert!(!e.contains('\n'));
        assert_eq!(excerpt("  short\tone \n"), "short one");
        assert_eq!(excerpt(b"\xffok"), "\u{fffd}ok");
        assert_eq!(excerpt(""), "");
    }

    #[test]
    fn decode_quotes_the_body() {
        let e = HeadscaleError::decode("expected a JSON object", b"<html>\n</html>");
        assert_eq!(
            e.to_string(),
            "cannot decode headscale's answer: expected a JSON object \
             (body starts with \"<html> </html>\")"
        );
    }
}
