//! [`HeadscaleClient`]: HTTP, authentication, the API generation that
//! answers (0.22's `/machine`, 0.23+'s `/node`), headscale's error answers
//! (grpc-gateway JSON, 0.30's problem+json) and the body limit.

use std::fmt;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use reqwest::header::{HeaderValue, AUTHORIZATION};
use reqwest::StatusCode;
use serde_json::Value;
use url::Url;

use super::cache::{ListCache, Shared};
use super::error::{excerpt, HeadscaleError};
use crate::config::{ApiKey, HeadscaleSettings};

/// Largest response body accepted from headscale (32 MiB).
pub const MAX_BODY_BYTES: usize = 32 * 1024 * 1024;

/// Which API generation a headscale server speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ApiGeneration {
    /// headscale 0.22: `GET /api/v1/machine` → `{"machines":[...]}`.
    Machine,
    /// headscale 0.23 and later: `GET /api/v1/node` → `{"nodes":[...]}`.
    Node,
}

impl ApiGeneration {
    /// The list path, relative to the base URL.
    pub fn path(self) -> &'static str {
        match self {
            ApiGeneration::Machine => "api/v1/machine",
            ApiGeneration::Node => "api/v1/node",
        }
    }

    /// The key of the list in the response body.
    pub fn list_key(self) -> &'static str {
        match self {
            ApiGeneration::Machine => "machines",
            ApiGeneration::Node => "nodes",
        }
    }

    fn other(self) -> Self {
        match self {
            ApiGeneration::Machine => ApiGeneration::Node,
            ApiGeneration::Node => ApiGeneration::Machine,
        }
    }

    fn to_u8(self) -> u8 {
        match self {
            ApiGeneration::Machine => 1,
            ApiGeneration::Node => 2,
        }
    }

    fn from_u8(v: u8) -> Option<Self> {
        match v {
            1 => Some(ApiGeneration::Machine),
            2 => Some(ApiGeneration::Node),
            _ => None,
        }
    }
}

impl fmt::Display for ApiGeneration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ApiGeneration::Machine => "/api/v1/machine (headscale 0.22)",
            ApiGeneration::Node => "/api/v1/node (headscale 0.23+)",
        })
    }
}

/// Client for headscale's REST API. Its `Debug` never shows the key.
///
/// It keeps the last node list it parsed with the answer it came from: when
/// headscale answers exactly the same bytes again, as it does while nothing
/// changes, the answer is compared as it arrives, not parsed again, and the
/// kept list is shared (at 10,000 nodes, a 7 MB answer: under a millisecond
/// of comparing instead of 12 ms of parsing).
pub struct HeadscaleClient {
    http: reqwest::Client,
    /// Base URL, path ending in `/`, no credentials, query or fragment.
    base: Url,
    /// `Bearer <key>`, marked sensitive.
    auth: HeaderValue,
    timeout: Duration,
    /// 0 = unknown, else [`ApiGeneration::to_u8`].
    generation: AtomicU8,
    /// The last node list and the answer it was parsed from.
    cache: ListCache,
}

impl fmt::Debug for HeadscaleClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HeadscaleClient")
            .field("url", &self.base.as_str())
            .field("api_key", &format_args!("ApiKey(***)"))
            .field("timeout", &self.timeout)
            .field("generation", &self.generation())
            .finish()
    }
}

/// The outcome of asking one list path.
enum Attempt {
    Listed(Shared),
    /// 404; `Some(message)` when the body is a specific API error (e.g.
    /// 0.30's unknown user) rather than a missing route.
    NotFound(Option<String>),
}

/// A response read in full.
struct Answer {
    status: StatusCode,
    body: Vec<u8>,
}

impl HeadscaleClient {
    /// Builds a client for headscale at `url` (http or https; a path is kept
    /// as prefix), authenticating with `api_key`; `timeout` limits each
    /// request as a whole.
    pub fn new(url: Url, api_key: ApiKey, timeout: Duration) -> Result<Self, HeadscaleError> {
        if url.scheme() != "http" && url.scheme() != "https" {
            return Err(HeadscaleError::Config {
                detail: format!("{} is not an http:// or https:// URL", url.scheme()),
            });
        }
        let mut base = url;
        // Credentials in the URL would be sent instead of the Bearer key and
        // leak into messages.
        let _ = base.set_username("");
        let _ = base.set_password(None);
        base.set_query(None);
        base.set_fragment(None);
        if !base.path().ends_with('/') {
            let path = format!("{}/", base.path());
            base.set_path(&path);
        }
        let mut auth =
            HeaderValue::from_str(&format!("Bearer {}", api_key.expose())).map_err(|_| {
                HeadscaleError::Config {
                    detail: "the API key contains characters that cannot be sent in an HTTP \
                         header (control characters or non-ASCII): check headscale.api_key_file \
                         or headscale.api_key"
                        .to_owned(),
                }
            })?;
        auth.set_sensitive(true);
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .user_agent(concat!("tart-sync/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| HeadscaleError::Config {
                detail: caddy_client::error_chain(&e),
            })?;
        Ok(HeadscaleClient {
            http,
            base,
            auth,
            timeout,
            generation: AtomicU8::new(0),
            cache: ListCache::default(),
        })
    }

    /// [`HeadscaleClient::new`] from the `[headscale]` settings.
    pub fn from_settings(settings: &HeadscaleSettings) -> Result<Self, HeadscaleError> {
        HeadscaleClient::new(
            settings.url.clone(),
            settings.api_key.clone(),
            settings.timeout,
        )
    }

    /// The base URL requests go to (path ending in `/`).
    pub fn base_url(&self) -> &Url {
        &self.base
    }

    /// The per-request timeout.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The API generation that last answered a node list, if any did yet.
    pub fn generation(&self) -> Option<ApiGeneration> {
        ApiGeneration::from_u8(self.generation.load(Ordering::Relaxed))
    }

    fn set_generation(&self, generation: ApiGeneration) {
        let previous = self.generation.swap(generation.to_u8(), Ordering::Relaxed);
        if previous != generation.to_u8() {
            match ApiGeneration::from_u8(previous) {
                None => tracing::info!(api = %generation, "headscale node list API detected"),
                Some(old) => tracing::warn!(
                    api = %generation,
                    previous = %old,
                    "headscale's node list API changed (upgraded or downgraded?)"
                ),
            }
        }
    }

    /// Lists the nodes (only `user`'s when given), with those that could
    /// not be parsed (each also logged with `tracing::warn!`), and whether
    /// the answer changed since the last call; the list is shared with the
    /// client, not copied. The daemon's poll skips its work when `changed`
    /// is false.
    ///
    /// Asks `/api/v1/node` first, or `/api/v1/machine` when that is the
    /// generation that answered last; on a 404 asks the other path.
    pub async fn list_nodes_shared(&self, user: Option<&str>) -> Result<Shared, HeadscaleError> {
        let known = self.generation();
        let first = known.unwrap_or(ApiGeneration::Node);
        let first_404 = match self.try_list(first, user).await? {
            Attempt::Listed(list) => return Ok(list),
            Attempt::NotFound(message) => message,
        };
        if let (Some(ApiGeneration::Node), Some(message)) = (known, &first_404) {
            // /node is known to exist: this 404 is about the request
            // (0.30: unknown user), not a missing route.
            return Err(HeadscaleError::Api {
                status: 404,
                message: message.clone(),
            });
        }
        tracing::debug!(
            path = first.path(),
            "404, trying the other headscale API generation"
        );
        match self.try_list(first.other(), user).await? {
            Attempt::Listed(list) => Ok(list),
            Attempt::NotFound(second_404) => match first_404.or(second_404) {
                Some(message) => Err(HeadscaleError::Api {
                    status: 404,
                    message,
                }),
                None => Err(HeadscaleError::NotHeadscale {
                    url: self.base.to_string(),
                }),
            },
        }
    }

    async fn try_list(
        &self,
        generation: ApiGeneration,
        user: Option<&str>,
    ) -> Result<Attempt, HeadscaleError> {
        let mut url = self.endpoint(generation.path())?;
        if let Some(user) = user {
            url.query_pairs_mut().append_pair("user", user);
        }
        let shown = url.to_string();
        let mut response = self.send(url, &shown, true).await?;
        if response.status().is_success() {
            let mut incoming = self.cache.begin(announced_len(&response));
            while let Some(chunk) = self
                .next_chunk(&mut response, &shown, incoming.len())
                .await?
            {
                incoming.push(&chunk);
            }
            let list = incoming.finish()?;
            self.set_generation(generation);
            // Once per answer: an unchanged answer skips the same nodes again.
            if list.changed {
                for skipped in &list.list.skipped {
                    tracing::warn!(node = %skipped, "skipping a node headscale listed that cannot be parsed");
                }
            }
            return Ok(Attempt::Listed(list));
        }
        let answer = self.read_answer(response, &shown).await?;
        if answer.status == StatusCode::NOT_FOUND {
            return Ok(Attempt::NotFound(specific_404_message(&answer.body)));
        }
        Err(error_from_answer(&answer))
    }

    /// headscale's version from `GET /version` (0.27+, no authentication);
    /// `Ok(None)` when the server has no such endpoint (404) or its answer
    /// carries no version.
    pub async fn version(&self) -> Result<Option<String>, HeadscaleError> {
        let url = self.endpoint("version")?;
        let shown = url.to_string();
        let response = self.send(url, &shown, false).await?;
        let answer = self.read_answer(response, &shown).await?;
        if answer.status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !answer.status.is_success() {
            return Err(error_from_answer(&answer));
        }
        Ok(version_from_body(&answer.body))
    }

    /// Sends one authenticated request to `path` (relative to the base URL),
    /// with `body` as JSON when given, and reads the whole answer. `Ok(None)`
    /// for a 404 that is a missing route (not a specific API error), the
    /// body of a success otherwise; other answers are errors. The answer's
    /// body never goes into logs (a pre-auth key is a secret).
    pub(super) async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Option<Vec<u8>>, HeadscaleError> {
        let url = self.endpoint(path)?;
        let shown = format!("{method} {url}");
        let mut request = self
            .http
            .request(method, url)
            .header(AUTHORIZATION, self.auth.clone());
        if let Some(body) = body {
            request = request
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.to_string());
        }
        let response = request.send().await.map_err(|e| {
            if e.is_timeout() {
                HeadscaleError::Timeout {
                    after: self.timeout,
                }
            } else {
                HeadscaleError::Transport {
                    detail: format!("{shown}: {}", caddy_client::error_chain(&e.without_url())),
                }
            }
        })?;
        if announced_len(&response) > MAX_BODY_BYTES {
            return Err(too_large(&shown));
        }
        let answer = self.read_answer(response, &shown).await?;
        if answer.status.is_success() {
            return Ok(Some(answer.body));
        }
        if answer.status == StatusCode::NOT_FOUND {
            return match specific_404_message(&answer.body) {
                None => Ok(None),
                Some(message) => Err(HeadscaleError::Api {
                    status: 404,
                    message,
                }),
            };
        }
        Err(error_from_answer(&answer))
    }

    fn endpoint(&self, path: &str) -> Result<Url, HeadscaleError> {
        self.base.join(path).map_err(|e| HeadscaleError::Config {
            detail: format!("cannot build the URL for {path}: {e}"),
        })
    }

    /// Sends `GET url` (`shown` in errors); refuses an answer announced as
    /// larger than [`MAX_BODY_BYTES`] before reading it.
    async fn send(
        &self,
        url: Url,
        shown: &str,
        authenticate: bool,
    ) -> Result<reqwest::Response, HeadscaleError> {
        let mut request = self.http.get(url);
        if authenticate {
            request = request.header(AUTHORIZATION, self.auth.clone());
        }
        let response = request
            .send()
            .await
            .map_err(|e| self.request_error(shown, e))?;
        if announced_len(&response) > MAX_BODY_BYTES {
            return Err(too_large(shown));
        }
        Ok(response)
    }

    /// The next chunk of `response`'s body, `received` bytes having come
    /// before it; an error when the body grows over [`MAX_BODY_BYTES`].
    async fn next_chunk(
        &self,
        response: &mut reqwest::Response,
        shown: &str,
        received: usize,
    ) -> Result<Option<bytes::Bytes>, HeadscaleError> {
        let chunk = response.chunk().await.map_err(|e| {
            if e.is_timeout() {
                self.request_error(shown, e)
            } else {
                // The answer had begun: headscale was reached, its answer broke off.
                HeadscaleError::Truncated {
                    received,
                    detail: format!(
                        "GET {shown}: {}",
                        caddy_client::error_chain(&e.without_url())
                    ),
                }
            }
        })?;
        if chunk
            .as_ref()
            .is_some_and(|c| received.saturating_add(c.len()) > MAX_BODY_BYTES)
        {
            return Err(too_large(shown));
        }
        Ok(chunk)
    }

    /// Reads a whole (small) answer: errors, 404s, `/version`.
    async fn read_answer(
        &self,
        mut response: reqwest::Response,
        shown: &str,
    ) -> Result<Answer, HeadscaleError> {
        let status = response.status();
        let mut body = Vec::new();
        while let Some(chunk) = self.next_chunk(&mut response, shown, body.len()).await? {
            body.extend_from_slice(&chunk);
        }
        tracing::trace!(url = %shown, status = status.as_u16(), bytes = body.len(), "headscale answered");
        Ok(Answer { status, body })
    }

    fn request_error(&self, url: &str, e: reqwest::Error) -> HeadscaleError {
        if e.is_timeout() {
            HeadscaleError::Timeout {
                after: self.timeout,
            }
        } else {
            HeadscaleError::Transport {
                detail: format!("GET {url}: {}", caddy_client::error_chain(&e.without_url())),
            }
        }
    }
}

/// The length an answer announces (`Content-Length`), 0 when it does not.
fn announced_len(response: &reqwest::Response) -> usize {
    response
        .content_length()
        .map_or(0, |n| usize::try_from(n).unwrap_or(usize::MAX))
}

fn too_large(shown: &str) -> HeadscaleError {
    HeadscaleError::Decode {
        detail: format!(
            "answer of GET {shown} is larger than {MAX_BODY_BYTES} bytes (ask for one user's \
             nodes with headscale.user)"
        ),
    }
}

/// The error for a non-success, non-404 answer.
fn error_from_answer(answer: &Answer) -> HeadscaleError {
    let status = answer.status.as_u16();
    let text = String::from_utf8_lossy(&answer.body);
    let text = text.trim();
    if answer.status == StatusCode::UNAUTHORIZED
        || (answer.status == StatusCode::INTERNAL_SERVER_ERROR
            && text.eq_ignore_ascii_case("unauthorized"))
    {
        return HeadscaleError::Unauthorized { status };
    }
    let message = api_error_message(&answer.body).unwrap_or_else(|| {
        if text.is_empty() {
            answer
                .status
                .canonical_reason()
                .unwrap_or("no message")
                .to_owned()
        } else {
            excerpt(text)
        }
    });
    HeadscaleError::Api { status, message }
}

/// The message of a JSON error body: RFC 7807 `detail` (else `title`), or
/// grpc-gateway's `message`.
fn api_error_message(body: &[u8]) -> Option<String> {
    let value: Value = serde_json::from_slice(body).ok()?;
    let obj = value.as_object()?;
    let field = |key: &str| {
        obj.get(key)
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(excerpt)
    };
    field("detail")
        .or_else(|| field("message"))
        .or_else(|| field("title"))
}

/// For a 404: the message when the body is a specific API error, `None`
/// when it is a generic “not found” (a missing route: grpc-gateway's
/// `{"code":5,"message":"Not Found"}`, `404 page not found`, empty, HTML).
fn specific_404_message(body: &[u8]) -> Option<String> {
    let message = api_error_message(body)?;
    let generic = message
        .trim_end_matches('.')
        .eq_ignore_ascii_case("not found")
        || message.eq_ignore_ascii_case("404 page not found")
        || message.eq_ignore_ascii_case("page not found");
    (!generic).then_some(message)
}

/// The version in a `/version` answer: `{"version":…}`, a JSON string, or a
/// short line of plain text.
fn version_from_body(body: &[u8]) -> Option<String> {
    let clean = |s: &str| {
        let s = s.trim();
        (!s.is_empty()).then(|| excerpt(s))
    };
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(obj)) => obj.get("version").and_then(Value::as_str).and_then(clean),
        Ok(Value::String(s)) => clean(&s),
        Ok(_) => None,
        Err(_) => {
            let text = String::from_utf8_lossy(body);
            let text = text.trim();
            let plausible =
                !text.is_empty() && text.len() <= 64 && !text.contains('<') && !text.contains('\n');
            if plausible {
                clean(text)
            } else {
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generic_and_specific_404s() {
        assert_eq!(
            specific_404_message(br#"{"code":5,"message":"Not Found","details":[]}"#),
            None
        );
        assert_eq!(specific_404_message(b"404 page not found\n"), None);
        assert_eq!(specific_404_message(b""), None);
        assert_eq!(
            specific_404_message(
                br#"{"title":"Not Found","status":404,"detail":"user not found"}"#
            )
            .as_deref(),
            Some("user not found")
        );
    }

    #[test]
    fn version_bodies() {
        assert_eq!(
            version_from_body(br#"{"version":"v0.27.1","commit":"abc"}"#).as_deref(),
            Some("v0.27.1")
        );
        assert_eq!(version_from_body(b"v0.28.0\n").as_deref(), Some("v0.28.0"));
        assert_eq!(version_from_body(b"<html>hi</html>"), None);
    }
}
