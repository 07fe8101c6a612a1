//! The one error type of this crate.

use std::fmt;
use std::time::Duration;

/// A boxed error from the transport layer, kept opaque so that no HTTP-library
/// type appears in this crate's public API.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// What went wrong, without the details: handy for `match`ing and for metrics.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The admin address or a builder setting was unusable.
    InvalidInput,
    /// The path, `@id` or key does not exist (404; Caddy 2.6 answers some of these with 500).
    NotFound,
    /// The key already exists (409; 500 on Caddy 2.6).
    Conflict,
    /// `If-Match` did not match the current config (412): someone else changed it.
    PreconditionFailed,
    /// Caddy refused the request as malformed (400).
    BadRequest,
    /// Caddy could not load the config it was given (unknown field, failed provisioning).
    ConfigRejected,
    /// The admin endpoint refused the request (403: Host or Origin not allowed).
    Forbidden,
    /// Any other error status from Caddy.
    Api,
    /// The connection could not be made or broke.
    Transport,
    /// No answer within the configured timeout.
    Timeout,
    /// Caddy's answer could not be decoded into the requested type.
    Decode,
    /// The answer was larger than the client's limit.
    TooLarge,
    /// Caddy answered, but the connection closed before the answer ended.
    Truncated,
    /// The request body could not be encoded as JSON.
    Encode,
}

impl ErrorKind {
    /// A short stable name, e.g. for metric labels: `not_found`, `conflict`, ...
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::InvalidInput => "invalid_input",
            ErrorKind::NotFound => "not_found",
            ErrorKind::Conflict => "conflict",
            ErrorKind::PreconditionFailed => "precondition_failed",
            ErrorKind::BadRequest => "bad_request",
            ErrorKind::ConfigRejected => "config_rejected",
            ErrorKind::Forbidden => "forbidden",
            ErrorKind::Api => "api",
            ErrorKind::Transport => "transport",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Decode => "decode",
            ErrorKind::TooLarge => "too_large",
            ErrorKind::Truncated => "truncated",
            ErrorKind::Encode => "encode",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An error from Caddy's admin API or from talking to it.
///
/// Errors that Caddy answered keep the HTTP status and Caddy's own message
/// (the `error` field of its `{"error": "..."}` body, or the plain-text body).
/// Caddy 2.6 answers several conditions with a plain 500; they are classified
/// by message so that the same condition gives the same variant on every version.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The admin address given to [`Client::new`](crate::Client::new) could not be used.
    #[error("invalid Caddy admin address {address:?}: {reason} (expected e.g. localhost:2019, http://host:port, https://host:port or unix//path/to/admin.sock)")]
    InvalidAddress {
        /// The address as given.
        address: String,
        /// Why it was rejected.
        reason: String,
    },
    /// A builder setting (certificate, key, header) could not be used.
    #[error("invalid client setting: {reason}")]
    Builder {
        /// What was wrong.
        reason: String,
    },
    /// A config path or `@id` that cannot be addressed safely; nothing was sent.
    #[error("invalid config path {path:?}: {reason}")]
    InvalidPath {
        /// The path as it would have been sent.
        path: String,
        /// Why it was refused.
        reason: String,
    },
    /// The path, `@id` or key does not exist.
    #[error("{request}: not found ({status}): {message}")]
    NotFound {
        /// HTTP status Caddy answered with (404, or 500 on Caddy 2.6).
        status: u16,
        /// Caddy's message.
        message: String,
        /// The request, e.g. `PATCH /id/tart-sync`.
        request: String,
    },
    /// The key already exists (a `PUT` is a strict create; use `PATCH` to replace).
    #[error(
        "{request}: already exists ({status}): {message}; use patch() to replace an existing value"
    )]
    Conflict {
        /// HTTP status (409, or 500 on Caddy 2.6).
        status: u16,
        /// Caddy's message.
        message: String,
        /// The request.
        request: String,
    },
    /// `If-Match` did not match: the config changed since it was read. Read it again and retry.
    #[error("{request}: config changed since it was read ({status}): {message}; read it again and retry")]
    PreconditionFailed {
        /// HTTP status (412).
        status: u16,
        /// Caddy's message.
        message: String,
        /// The request.
        request: String,
    },
    /// Caddy refused the request as malformed.
    #[error("{request}: bad request ({status}): {message}")]
    BadRequest {
        /// HTTP status (400).
        status: u16,
        /// Caddy's message.
        message: String,
        /// The request.
        request: String,
    },
    /// Caddy could not load the resulting config; the previous config stays active.
    #[error("{request}: Caddy rejected the config ({status}): {message}; the previous config is still active")]
    ConfigRejected {
        /// HTTP status (500 on `/config`, 400 on `/load`, 200 on `/load` with an adapter up to 2.11.4).
        status: u16,
        /// Caddy's message.
        message: String,
        /// The request.
        request: String,
    },
    /// The admin endpoint refused the request (Host or Origin not allowed).
    #[error("{request}: forbidden ({status}): {message}; check admin.origins or the Host the client sends")]
    Forbidden {
        /// HTTP status (403).
        status: u16,
        /// Caddy's message.
        message: String,
        /// The request.
        request: String,
    },
    /// Any other error status.
    #[error("{request}: Caddy answered {status}: {message}")]
    Api {
        /// HTTP status.
        status: u16,
        /// Caddy's message.
        message: String,
        /// The request.
        request: String,
    },
    /// The connection to the admin endpoint could not be made or broke.
    ///
    /// The message names every cause (e.g. the TLS alert Caddy sent), and a
    /// failed TLS handshake says which TLS setting to check.
    #[error("{request}: cannot reach Caddy's admin API: {}; {}", chain(source.as_ref()), transport_hint(source.as_ref()))]
    Transport {
        /// The request.
        request: String,
        /// The underlying error.
        #[source]
        source: BoxError,
    },
    /// No answer within the timeout.
    #[error("{request}: no answer from Caddy within {after:?}")]
    Timeout {
        /// The request.
        request: String,
        /// The timeout that elapsed.
        after: Duration,
    },
    /// Caddy's answer could not be decoded.
    #[error("{request}: cannot decode Caddy's answer: {detail}; body starts with {body:?}")]
    Decode {
        /// The request.
        request: String,
        /// What failed.
        detail: String,
        /// The start of the body (at most 200 characters).
        body: String,
    },
    /// The answer's body was larger than the client's limit; it was not kept.
    #[error("{request}: the answer is larger than {limit} bytes; is this Caddy's admin API? (raise the limit with ClientBuilder::max_body_size)")]
    TooLarge {
        /// The request.
        request: String,
        /// The limit in bytes.
        limit: usize,
    },
    /// Caddy answered (the status is known) but the connection closed before
    /// the answer's body ended. A write may have been applied: read again.
    #[error("{request}: Caddy answered {status} but the answer was cut short: {}; a change may have been applied, read the config again", chain(source.as_ref()))]
    Truncated {
        /// The request.
        request: String,
        /// The status the answer's head carried.
        status: u16,
        /// What ended the body.
        #[source]
        source: BoxError,
    },
    /// A value could not be encoded as JSON.
    #[error("cannot encode the request body as JSON: {0}")]
    Encode(#[source] serde_json::Error),
}

/// An error and its sources, joined with `: ` (a text already shown is
/// dropped): what this crate's messages show of a transport error, also
/// handy for other HTTP errors of a program that embeds it.
pub fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut current = Some(e);
    while let Some(err) = current {
        let text = err.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        current = err.source();
    }
    parts.join(": ")
}

/// What to check after a transport error: the TLS settings when the TLS
/// layer failed (rustls names certificates and alerts in its messages), else
/// whether Caddy runs at that address.
fn transport_hint(e: &(dyn std::error::Error + 'static)) -> &'static str {
    let text = chain(e).to_ascii_lowercase();
    if text.contains("invalid peer certificate") {
        "check TLS: the client's root CA must be the one that signed the admin endpoint's \
         certificate (admin.identity's issuer), and the address must be a name or IP it was issued for"
    } else if text.contains("alert") || text.contains("certificate") || text.contains("tls") {
        "check TLS: the admin endpoint refused the client certificate (it needs one, \
         listed in admin.remote's access_control)"
    } else {
        "is Caddy running and is the admin address right?"
    }
}

impl Error {
    /// The kind of error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::InvalidAddress { .. } | Error::Builder { .. } | Error::InvalidPath { .. } => {
                ErrorKind::InvalidInput
            }
            Error::NotFound { .. } => ErrorKind::NotFound,
            Error::Conflict { .. } => ErrorKind::Conflict,
            Error::PreconditionFailed { .. } => ErrorKind::PreconditionFailed,
            Error::BadRequest { .. } => ErrorKind::BadRequest,
            Error::ConfigRejected { .. } => ErrorKind::ConfigRejected,
            Error::Forbidden { .. } => ErrorKind::Forbidden,
            Error::Api { .. } => ErrorKind::Api,
            Error::Transport { .. } => ErrorKind::Transport,
            Error::Timeout { .. } => ErrorKind::Timeout,
            Error::Decode { .. } => ErrorKind::Decode,
            Error::TooLarge { .. } => ErrorKind::TooLarge,
            Error::Truncated { .. } => ErrorKind::Truncated,
            Error::Encode(_) => ErrorKind::Encode,
        }
    }

    /// The HTTP status Caddy answered with, when it answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            Error::NotFound { status, .. }
            | Error::Conflict { status, .. }
            | Error::PreconditionFailed { status, .. }
            | Error::BadRequest { status, .. }
            | Error::ConfigRejected { status, .. }
            | Error::Forbidden { status, .. }
            | Error::Api { status, .. }
            | Error::Truncated { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// Caddy's own error message, when it answered with one.
    pub fn caddy_message(&self) -> Option<&str> {
        match self {
            Error::NotFound { message, .. }
            | Error::Conflict { message, .. }
            | Error::PreconditionFailed { message, .. }
            | Error::BadRequest { message, .. }
            | Error::ConfigRejected { message, .. }
            | Error::Forbidden { message, .. }
            | Error::Api { message, .. } => Some(message),
            _ => None,
        }
    }

    /// True for [`ErrorKind::NotFound`].
    pub fn is_not_found(&self) -> bool {
        self.kind() == ErrorKind::NotFound
    }

    /// True for [`ErrorKind::PreconditionFailed`]: re-read and retry.
    pub fn is_precondition_failed(&self) -> bool {
        self.kind() == ErrorKind::PreconditionFailed
    }

    /// True when Caddy could not be reached or did not answer in time.
    pub fn is_unreachable(&self) -> bool {
        matches!(self.kind(), ErrorKind::Transport | ErrorKind::Timeout)
    }

    /// Builds the error for a non-success answer, classifying by status and,
    /// where Caddy 2.6 answers 500 for everything, by message.
    pub(crate) fn from_response(status: u16, body: &[u8], request: String) -> Error {
        let message = error_message(body).unwrap_or_else(|| default_message(status));
        classify(status, message, request)
    }
}

/// Picks the error variant for a status and Caddy's message.
pub(crate) fn classify(status: u16, message: String, request: String) -> Error {
    let m = message.to_ascii_lowercase();
    if status == 412 || m.contains("if-match header did not match") {
        return Error::PreconditionFailed {
            status,
            message,
            request,
        };
    }
    if status == 404
        || m.contains("key does not exist")
        || m.contains("unknown object id")
        || m.contains("index out of bounds")
        || m.contains("out of range")
    {
        return Error::NotFound {
            status,
            message,
            request,
        };
    }
    if status == 409 || m.contains("key already exists") {
        return Error::Conflict {
            status,
            message,
            request,
        };
    }
    if m.contains("loading new config")
        || m.contains("loading config")
        || m.contains("provision")
        || m.contains("decoding module config")
        || m.contains("adapting config")
    {
        return Error::ConfigRejected {
            status,
            message,
            request,
        };
    }
    match status {
        400 => Error::BadRequest {
            status,
            message,
            request,
        },
        403 => Error::Forbidden {
            status,
            message,
            request,
        },
        _ => Error::Api {
            status,
            message,
            request,
        },
    }
}

/// The most of Caddy's error message an error keeps.
const MAX_MESSAGE_CHARS: usize = 2000;

/// Extracts Caddy's message from an error body: `{"error": "..."}` JSON, or a plain-text body.
pub(crate) fn error_message(body: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(body);
    let trimmed = text.trim();
    if trimmed.is_empty() || trimmed == "null" {
        return None;
    }
    // Several JSON values may follow each other (warnings, then the error): take the last error.
    let mut found = None;
    for value in serde_json::Deserializer::from_str(trimmed).into_iter::<serde_json::Value>() {
        match value {
            Ok(v) => {
                if let Some(e) = v.get("error").and_then(|e| e.as_str()) {
                    found = Some(excerpt(e, MAX_MESSAGE_CHARS));
                }
            }
            Err(_) => break,
        }
    }
    Some(found.unwrap_or_else(|| excerpt(trimmed, 500)))
}

fn default_message(status: u16) -> String {
    match status {
        404 => "not found".into(),
        412 => "precondition failed".into(),
        _ => format!("HTTP status {status} with an empty body"),
    }
}

/// At most `max` characters of `s`, for error messages.
pub(crate) fn excerpt(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(status: u16, body: &str) -> ErrorKind {
        Error::from_response(status, body.as_bytes(), "GET /x".into()).kind()
    }

    #[test]
    fn caddy_2_6_500s_are_classified_by_message() {
        assert_eq!(
            kind(
                500,
                r#"{"error":"[/config/apps/zz] key does not exist: zz"}"#
            ),
            ErrorKind::NotFound
        );
        assert_eq!(
            kind(
                500,
                r#"{"error":"[/config/apps/http/servers/s] key already exists: s"}"#
            ),
            ErrorKind::Conflict
        );
        assert_eq!(
            kind(
                500,
                r#"{"error":"loading new config: loading http app module: decoding module config: http: json: unknown field \"foo\""}"#
            ),
            ErrorKind::ConfigRejected
        );
        assert_eq!(kind(500, r#"{"error":"something else"}"#), ErrorKind::Api);
    }

    #[test]
    fn statuses_of_newer_caddy() {
        assert_eq!(
            kind(404, r#"{"error":"unknown object ID 'x'"}"#),
            ErrorKind::NotFound
        );
        assert_eq!(
            kind(409, r#"{"error":"key already exists"}"#),
            ErrorKind::Conflict
        );
        assert_eq!(
            kind(
                412,
                r#"{"error":"If-Match header did not match current config hash"}"#
            ),
            ErrorKind::PreconditionFailed
        );
        assert_eq!(
            kind(
                400,
                r#"{"error":"invalid traversal path at: config/nope/x"}"#
            ),
            ErrorKind::BadRequest
        );
        assert_eq!(
            kind(403, r#"{"error":"host not allowed: example.org"}"#),
            ErrorKind::Forbidden
        );
    }

    #[test]
    fn plain_text_and_empty_bodies_keep_a_message() {
        let e = Error::from_response(404, b"404 page not found\n", "GET /nope".into());
        assert_eq!(e.kind(), ErrorKind::NotFound);
        assert_eq!(e.caddy_message(), Some("404 page not found"));
        let e = Error::from_response(502, b"", "GET /x".into());
        assert_eq!(e.status(), Some(502));
        assert!(e.to_string().contains("502"));
    }

    #[test]
    fn warnings_followed_by_error_yield_the_error() {
        let body = br#"{"file":"Caddyfile","line":2,"message":"x"}
{"error":"loading config: bad"}"#;
        assert_eq!(error_message(body).as_deref(), Some("loading config: bad"));
    }
}
