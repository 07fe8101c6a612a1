//! Helpers shared by the wiremock tests of `caddy-client` (`tests/api_*.rs`).
//!
//! Every mock server starts with a catch-all mock of the lowest priority that
//! answers `599` with a recognisable message, so a request no test expected
//! (wrong method, path, header or body) fails loudly instead of being
//! answered by some other mock or by wiremock's silent 404.
//!
//! Mocks for one method and path are mounted with [`once`] (exactly one
//! request expected), [`answer`] (any number, no count asserted) or, with
//! more matchers or another count, [`on`]:
//!
//! ```ignore
//! once(&server, "GET", "/config/", ok_empty()).await;
//! on("POST", "/load").and(body_json(&config)).expect(&server, ok_empty(), 0).await;
//! ```

// Each test file uses a different subset of these helpers.
#![allow(dead_code)]

use std::path::PathBuf;
use std::time::Duration;

use caddy_client::{Client, Error, ErrorKind};
use serde_json::{json, Value};
use wiremock::matchers::{any, method, path};
use wiremock::{Match, Mock, MockBuilder, MockServer, Request, ResponseTemplate};

/// The status of the catch-all mock: no real server answers it.
pub const UNEXPECTED: u16 = 599;

/// Starts a mock admin endpoint with the catch-all mock already mounted.
pub async fn mock_caddy() -> MockServer {
    let server = MockServer::start().await;
    Mock::given(any())
        .respond_with(
            ResponseTemplate::new(UNEXPECTED).set_body_json(
                json!({"error": "no mock matched this request (unexpected request)"}),
            ),
        )
        // 1 is the highest priority, 5 the default: this one only answers
        // requests that no other mock matches.
        .with_priority(u8::MAX)
        .named("catch-all: unexpected request")
        .mount(&server)
        .await;
    server
}

/// Answers `verb at` with `answer`, and checks when `server` is dropped that
/// exactly one such request arrived.
pub async fn once(server: &MockServer, verb: &str, at: &str, answer: ResponseTemplate) {
    on(verb, at).once(server, answer).await;
}

/// Answers every `verb at` request with `answer`, asserting no count.
pub async fn answer(server: &MockServer, verb: &str, at: &str, answer: ResponseTemplate) {
    on(verb, at).answer(server, answer).await;
}

/// A mock for `verb at` that more matchers can narrow (see [`On::and`])
/// before it is mounted with a count ([`On::once`], [`On::expect`]) or
/// without one ([`On::answer`]).
pub fn on(verb: &str, at: &str) -> On {
    On {
        mock: Mock::given(method(verb)).and(path(at)),
        name: format!("{verb} {at}"),
    }
}

/// A mock for one method and path, not mounted yet: see [`on`].
#[must_use = "a mock does nothing until it is mounted"]
pub struct On {
    mock: MockBuilder,
    name: String,
}

impl On {
    /// Matches only requests that `matcher` also matches (a header, a body).
    pub fn and(self, matcher: impl Match + 'static) -> Self {
        Self {
            mock: self.mock.and(matcher),
            ..self
        }
    }

    /// Mounts the mock; dropping `server` checks that exactly one request matched.
    pub async fn once(self, server: &MockServer, answer: ResponseTemplate) {
        self.expect(server, answer, 1).await;
    }

    /// Mounts the mock; dropping `server` checks that exactly `times`
    /// requests matched (`0`: this request must never be sent).
    pub async fn expect(self, server: &MockServer, answer: ResponseTemplate, times: u64) {
        self.mock
            .respond_with(answer)
            .expect(times)
            .named(self.name)
            .mount(server)
            .await;
    }

    /// Mounts the mock without asserting how often it is requested.
    pub async fn answer(self, server: &MockServer, answer: ResponseTemplate) {
        self.mock
            .respond_with(answer)
            .named(self.name)
            .mount(server)
            .await;
    }
}

/// A client for the mock server, with default settings.
pub fn client(server: &MockServer) -> Client {
    Client::new(&server.uri()).expect("the mock server's URI is a valid admin address")
}

/// A client for the mock server with short read and write timeouts.
pub fn client_with_timeouts(server: &MockServer, read: Duration, write: Duration) -> Client {
    Client::builder()
        .address(&server.uri())
        .timeout(read)
        .write_timeout(write)
        .build()
        .expect("a client with short timeouts")
}

/// Caddy's usual error answer: `{"error": message}` with this status.
pub fn caddy_error(status: u16, message: &str) -> ResponseTemplate {
    ResponseTemplate::new(status).set_body_json(json!({ "error": message }))
}

/// Caddy's answer to a successful change: 200 with an empty body.
pub fn ok_empty() -> ResponseTemplate {
    ResponseTemplate::new(200)
}

/// A JSON fixture from `tests/resources/`.
pub fn resource(name: &str) -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/resources")
        .join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every request the mock server received, in order.
pub async fn received(server: &MockServer) -> Vec<Request> {
    server
        .received_requests()
        .await
        .expect("request recording is on by default")
}

/// A header of a received request as text.
pub fn header<'r>(req: &'r Request, name: &str) -> Option<&'r str> {
    req.headers.get(name).and_then(|v| v.to_str().ok())
}

/// `METHOD /path?query` of a received request, for readable assertions.
pub fn line(req: &Request) -> String {
    match req.url.query() {
        Some(q) => format!("{} {}?{q}", req.method, req.url.path()),
        None => format!("{} {}", req.method, req.url.path()),
    }
}

/// Asserts that an error is of `kind`, with `status` and Caddy's `message`
/// kept verbatim, and that it did not come from the catch-all mock.
#[track_caller]
pub fn assert_caddy_error(err: &Error, kind: ErrorKind, status: u16, message: &str) {
    assert_ne!(
        err.status(),
        Some(UNEXPECTED),
        "the request reached no mock: {err}"
    );
    assert_eq!(err.kind(), kind, "{err}");
    assert_eq!(err.status(), Some(status), "{err}");
    assert_eq!(err.caddy_message(), Some(message), "{err}");
}
