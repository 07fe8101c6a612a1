//! headscale API client and node model.
//!
//! [`HeadscaleClient::list_nodes`] polls `GET /api/v1/node` (headscale 0.23+)
//! and falls back to `GET /api/v1/machine` (0.22) when the former answers
//! 404; the generation that answered is remembered, and re-probed when it
//! later answers 404 (an upgrade or downgrade).
//!
//! Nodes are parsed leniently from protojson ([`Node::from_json`]): a node
//! that cannot be parsed (e.g. no `id`) is skipped and reported, the others
//! are returned. Errors ([`HeadscaleError`]) never contain the API key.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::RwLock;
use std::time::Duration;

use reqwest::header::{HeaderValue, AUTHORIZATION};
use reqwest::StatusCode;
use serde_json::Value;
use time::format_description::well_known::Rfc3339;
use time::{OffsetDateTime, UtcOffset};
use url::Url;

use crate::config::{ApiKey, HeadscaleSettings};

/// Largest response body accepted from headscale (32 MiB).
pub const MAX_BODY_BYTES: usize = 32 * 1024 * 1024;

/// Longest excerpt of a response body quoted in an error.
const EXCERPT_CHARS: usize = 120;

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

    /// True for errors that may go away by themselves (network, timeout,
    /// 5xx or 429 answers).
    pub fn is_transient(&self) -> bool {
        match self {
            HeadscaleError::Transport { .. } | HeadscaleError::Timeout { .. } => true,
            HeadscaleError::Api { status, .. } => *status >= 500 || *status == 429,
            _ => false,
        }
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
}

/// One node, as far as tart-sync needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// headscale's node id (stable; key state on it, not on names).
    pub id: u64,
    /// The OS host name (`name`).
    pub name: String,
    /// The DNS label (`givenName`); may be empty when missing.
    pub given_name: String,
    /// The owning user's name (`user.name`); empty when missing. Tagged
    /// nodes on 0.28+ belong to `tagged-devices`.
    pub user: String,
    /// The node's tailnet addresses (unparsable entries skipped).
    pub ip_addresses: Vec<IpAddr>,
    /// headscale's `online` flag (missing = false).
    pub online: bool,
    /// `lastSeen`, if set (not a liveness signal since 0.23).
    pub last_seen: Option<OffsetDateTime>,
    /// `expiry`; `None` means the node never expires (`null` or
    /// `0001-01-01T00:00:00Z`).
    pub expiry: Option<OffsetDateTime>,
    /// Tags: `tags` (0.28+), else the union of `validTags` and `forcedTags`.
    pub tags: Vec<String>,
}

impl Node {
    /// Parses one node (or 0.22 machine) of headscale's protojson.
    ///
    /// Lenient: only a missing or invalid `id`, or an `expiry` that is not
    /// a timestamp, make it fail (the message names the problem).
    pub fn from_json(v: &Value) -> Result<Node, String> {
        let obj = v
            .as_object()
            .ok_or_else(|| format!("expected an object, found {}", json_type(v)))?;
        let id = match obj.get("id") {
            Some(Value::String(s)) => s
                .trim()
                .parse::<u64>()
                .map_err(|_| format!("invalid id {:?}", excerpt(s)))?,
            Some(Value::Number(n)) => n.as_u64().ok_or_else(|| format!("invalid id {n}"))?,
            Some(Value::Null) | None => return Err("missing id".to_owned()),
            Some(other) => return Err(format!("invalid id ({})", json_type(other))),
        };
        let text = |key: &str| match obj.get(key) {
            Some(Value::String(s)) => s.clone(),
            _ => String::new(),
        };
        let user = match obj.get("user") {
            Some(Value::Object(u)) => match u.get("name") {
                Some(Value::String(s)) => s.clone(),
                _ => String::new(),
            },
            Some(Value::String(s)) => s.clone(),
            _ => String::new(),
        };
        let ip_addresses = match obj.get("ipAddresses") {
            Some(Value::Array(items)) => items
                .iter()
                .filter_map(Value::as_str)
                .filter_map(|s| {
                    let addr = s.split('/').next().unwrap_or(s).trim();
                    let parsed = addr.parse::<IpAddr>().ok();
                    if parsed.is_none() {
                        tracing::debug!(node = id, address = %excerpt(s), "skipping unparsable IP address");
                    }
                    parsed
                })
                .collect(),
            _ => Vec::new(),
        };
        let online = matches!(obj.get("online"), Some(Value::Bool(true)));
        let last_seen = match timestamp_field(obj.get("lastSeen")) {
            Ok(t) => t,
            Err(e) => {
                tracing::debug!(node = id, error = %e, "ignoring unparsable lastSeen");
                None
            }
        };
        let expiry = timestamp_field(obj.get("expiry")).map_err(|e| format!("expiry: {e}"))?;
        let tags = match obj.get("tags") {
            Some(Value::Array(items)) => string_list(items.iter()),
            _ => {
                let valid = obj.get("validTags").and_then(Value::as_array);
                let forced = obj.get("forcedTags").and_then(Value::as_array);
                string_list(
                    valid
                        .into_iter()
                        .flatten()
                        .chain(forced.into_iter().flatten()),
                )
            }
        };
        Ok(Node {
            id,
            name: text("name"),
            given_name: text("givenName"),
            user,
            ip_addresses,
            online,
            last_seen,
            expiry,
            tags,
        })
    }

    /// True if the node has an expiry at or before `now`.
    pub fn is_expired(&self, now: OffsetDateTime) -> bool {
        self.expiry.is_some_and(|expiry| expiry <= now)
    }

    /// The first IPv4 address.
    pub fn first_ipv4(&self) -> Option<Ipv4Addr> {
        self.ip_addresses.iter().find_map(|ip| match ip {
            IpAddr::V4(v4) => Some(*v4),
            IpAddr::V6(_) => None,
        })
    }

    /// The first IPv4 address, else the first IPv6 address.
    pub fn first_ip(&self) -> Option<IpAddr> {
        self.first_ipv4()
            .map(IpAddr::V4)
            .or_else(|| self.ip_addresses.iter().find(|ip| ip.is_ipv6()).copied())
    }

    /// True if the node carries any of `tags` (false when `tags` is empty).
    pub fn has_any_tag(&self, tags: &[String]) -> bool {
        self.tags.iter().any(|t| tags.contains(t))
    }

    /// `given_name` if it is a valid DNS label ([`is_valid_dns_label`]).
    pub fn dns_label(&self) -> Option<&str> {
        is_valid_dns_label(&self.given_name).then_some(self.given_name.as_str())
    }
}

/// True for a DNS label as headscale's `givenName`: 1–63 characters of
/// `[a-z0-9-]`, not starting or ending with `-`.
pub fn is_valid_dns_label(label: &str) -> bool {
    !label.is_empty()
        && label.len() <= 63
        && !label.starts_with('-')
        && !label.ends_with('-')
        && label
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// Parses a protojson timestamp (RFC 3339, 0–9 fractional digits) into UTC.
/// Go's zero time `0001-01-01T00:00:00Z` gives `Ok(None)` (“never”).
pub fn parse_timestamp(text: &str) -> Result<Option<OffsetDateTime>, time::error::Parse> {
    let t = OffsetDateTime::parse(text.trim(), &Rfc3339)?.to_offset(UtcOffset::UTC);
    if t == time::macros::datetime!(0001-01-01 00:00 UTC) {
        Ok(None)
    } else {
        Ok(Some(t))
    }
}

/// A timestamp field: missing or `null` → `None`.
fn timestamp_field(v: Option<&Value>) -> Result<Option<OffsetDateTime>, String> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => {
            parse_timestamp(s).map_err(|e| format!("{:?} is not a timestamp: {e}", excerpt(s)))
        }
        Some(other) => Err(format!("expected a timestamp, found {}", json_type(other))),
    }
}

fn string_list<'a>(items: impl Iterator<Item = &'a Value>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for s in items.filter_map(Value::as_str) {
        if !out.iter().any(|t| t == s) {
            out.push(s.to_owned());
        }
    }
    out
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A node that could not be parsed and was left out of a [`NodeList`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedNode {
    /// Position in headscale's list (0-based).
    pub index: usize,
    /// The `id` as written, if any.
    pub id: Option<String>,
    /// The `givenName` or `name`, if any.
    pub name: Option<String>,
    /// Why it was skipped.
    pub reason: String,
}

impl fmt::Display for SkippedNode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "node #{}", self.index)?;
        if let Some(id) = &self.id {
            write!(f, " (id {id})")?;
        }
        if let Some(name) = &self.name {
            write!(f, " {name:?}")?;
        }
        write!(f, ": {}", self.reason)
    }
}

/// A parsed node list: the nodes, and those that had to be skipped.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeList {
    /// The nodes that parsed, in headscale's order.
    pub nodes: Vec<Node>,
    /// The nodes that did not parse.
    pub skipped: Vec<SkippedNode>,
}

/// Parses a list body, `{"nodes":[...]}` (0.23+) or `{"machines":[...]}`
/// (0.22). The list key is required (headscale always emits it, as `[]`
/// when empty), so an unrelated `{}` answer is not taken for “no nodes”.
pub fn parse_node_list(body: &[u8]) -> Result<NodeList, HeadscaleError> {
    let value: Value = serde_json::from_slice(body).map_err(|e| HeadscaleError::Decode {
        detail: format!("{e} (body starts with {:?})", body_excerpt(body)),
    })?;
    let obj = value.as_object().ok_or_else(|| HeadscaleError::Decode {
        detail: format!(
            "expected a JSON object, found {} (body starts with {:?})",
            json_type(&value),
            body_excerpt(body)
        ),
    })?;
    let items = match (obj.get("nodes"), obj.get("machines")) {
        (Some(Value::Array(items)), _) | (_, Some(Value::Array(items))) => items.as_slice(),
        (Some(Value::Null), _) | (_, Some(Value::Null)) => &[],
        _ => {
            return Err(HeadscaleError::Decode {
                detail: format!(
                    "no \"nodes\" or \"machines\" list (body starts with {:?})",
                    body_excerpt(body)
                ),
            })
        }
    };
    let mut list = NodeList::default();
    for (index, item) in items.iter().enumerate() {
        match Node::from_json(item) {
            Ok(node) => list.nodes.push(node),
            Err(reason) => {
                let field = |key: &str| match item.get(key) {
                    Some(Value::String(s)) if !s.is_empty() => Some(excerpt(s)),
                    Some(Value::Number(n)) => Some(n.to_string()),
                    _ => None,
                };
                list.skipped.push(SkippedNode {
                    index,
                    id: field("id"),
                    name: field("givenName").or_else(|| field("name")),
                    reason,
                });
            }
        }
    }
    Ok(list)
}

/// Client for headscale's REST API.
///
/// Cheap to share behind an `Arc`; the API key can be replaced at run time
/// ([`HeadscaleClient::set_api_key`]). Its `Debug` never shows the key.
pub struct HeadscaleClient {
    http: reqwest::Client,
    /// Base URL, path ending in `/`, no credentials, query or fragment.
    base: Url,
    auth: RwLock<HeaderValue>,
    timeout: Duration,
    /// 0 = unknown, else [`ApiGeneration::to_u8`].
    generation: AtomicU8,
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

fn bearer(key: &ApiKey) -> Result<HeaderValue, HeadscaleError> {
    let mut value = HeaderValue::from_str(&format!("Bearer {}", key.expose())).map_err(|_| {
        HeadscaleError::Config {
            detail: "the API key contains characters that cannot be sent in an HTTP header"
                .to_owned(),
        }
    })?;
    value.set_sensitive(true);
    Ok(value)
}

/// The outcome of asking one list path.
enum Attempt {
    Listed(NodeList),
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
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .user_agent(concat!("tart-sync/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| HeadscaleError::Config {
                detail: error_chain(&e),
            })?;
        Ok(HeadscaleClient {
            http,
            base,
            auth: RwLock::new(bearer(&api_key)?),
            timeout,
            generation: AtomicU8::new(0),
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

    /// Replaces the API key (e.g. after re-reading a renewed key file).
    pub fn set_api_key(&self, api_key: &ApiKey) -> Result<(), HeadscaleError> {
        let value = bearer(api_key)?;
        let mut guard = self.auth.write().unwrap_or_else(|e| e.into_inner());
        *guard = value;
        Ok(())
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

    /// Lists the nodes (only `user`'s when given); see
    /// [`HeadscaleClient::list_nodes_detailed`]. Nodes that cannot be parsed
    /// are left out and logged with `tracing::warn!`.
    pub async fn list_nodes(&self, user: Option<&str>) -> Result<Vec<Node>, HeadscaleError> {
        Ok(self.list_nodes_detailed(user).await?.nodes)
    }

    /// Lists the nodes (only `user`'s when given), also returning the nodes
    /// that could not be parsed (each also logged with `tracing::warn!`).
    ///
    /// Asks `/api/v1/node` first, or `/api/v1/machine` when that is the
    /// generation that answered last; on a 404 asks the other path.
    pub async fn list_nodes_detailed(
        &self,
        user: Option<&str>,
    ) -> Result<NodeList, HeadscaleError> {
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
        let answer = self.get(url, true).await?;
        if answer.status.is_success() {
            let list = parse_node_list(&answer.body)?;
            self.set_generation(generation);
            for skipped in &list.skipped {
                tracing::warn!(node = %skipped, "skipping a node headscale listed that cannot be parsed");
            }
            return Ok(Attempt::Listed(list));
        }
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
        let answer = self.get(url, false).await?;
        if answer.status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !answer.status.is_success() {
            return Err(error_from_answer(&answer));
        }
        Ok(version_from_body(&answer.body))
    }

    fn endpoint(&self, path: &str) -> Result<Url, HeadscaleError> {
        self.base.join(path).map_err(|e| HeadscaleError::Config {
            detail: format!("cannot build the URL for {path}: {e}"),
        })
    }

    async fn get(&self, url: Url, authenticate: bool) -> Result<Answer, HeadscaleError> {
        let shown = url.to_string();
        let mut request = self.http.get(url);
        if authenticate {
            let value = self.auth.read().unwrap_or_else(|e| e.into_inner()).clone();
            request = request.header(AUTHORIZATION, value);
        }
        let mut response = request
            .send()
            .await
            .map_err(|e| self.request_error(&shown, e))?;
        let status = response.status();
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| self.request_error(&shown, e))?
        {
            if body.len() + chunk.len() > MAX_BODY_BYTES {
                return Err(HeadscaleError::Decode {
                    detail: format!("answer of GET {shown} is larger than {MAX_BODY_BYTES} bytes"),
                });
            }
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
                detail: format!("GET {url}: {}", error_chain(&e.without_url())),
            }
        }
    }
}

/// An error and its sources, joined with `: ` (repeated texts dropped).
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = current {
        let text = err.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        current = err.source();
    }
    parts.join(": ")
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

/// At most [`EXCERPT_CHARS`] characters, control characters replaced.
fn excerpt(text: &str) -> String {
    let mut out: String = text
        .chars()
        .take(EXCERPT_CHARS)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if text.chars().nth(EXCERPT_CHARS).is_some() {
        out.push('…');
    }
    out
}

fn body_excerpt(body: &[u8]) -> String {
    let head = &body[..body.len().min(EXCERPT_CHARS * 4)];
    excerpt(String::from_utf8_lossy(head).trim())
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn timestamps_with_0_to_9_fraction_digits() {
        assert_eq!(
            parse_timestamp("2024-09-20T08:00:00Z").ok().flatten(),
            Some(datetime!(2024-09-20 08:00:00 UTC))
        );
        assert_eq!(
            parse_timestamp("2023-06-01T11:40:02.5Z").ok().flatten(),
            Some(datetime!(2023-06-01 11:40:02.5 UTC))
        );
        assert_eq!(
            parse_timestamp("2026-07-10T08:15:02.123456789Z")
                .ok()
                .flatten(),
            Some(datetime!(2026-07-10 08:15:02.123456789 UTC))
        );
        assert_eq!(
            parse_timestamp("2026-07-10T10:15:02+02:00").ok().flatten(),
            Some(datetime!(2026-07-10 08:15:02 UTC))
        );
    }

    #[test]
    fn zero_time_and_null_mean_never() {
        assert!(matches!(parse_timestamp("0001-01-01T00:00:00Z"), Ok(None)));
        assert!(matches!(timestamp_field(Some(&Value::Null)), Ok(None)));
        assert!(matches!(timestamp_field(None), Ok(None)));
        assert!(matches!(
            timestamp_field(Some(&Value::String("0001-01-01T00:00:00Z".into()))),
            Ok(None)
        ));
    }

    #[test]
    fn bad_timestamps_are_errors() {
        assert!(parse_timestamp("yesterday").is_err());
        assert!(parse_timestamp("2024-13-01T00:00:00Z").is_err());
        assert!(timestamp_field(Some(&Value::Bool(true))).is_err());
    }

    #[test]
    fn dns_labels() {
        assert!(is_valid_dns_label("rhodes"));
        assert!(is_valid_dns_label("tart-1"));
        assert!(is_valid_dns_label("a"));
        assert!(is_valid_dns_label(&"a".repeat(63)));
        assert!(!is_valid_dns_label(&"a".repeat(64)));
        assert!(!is_valid_dns_label(""));
        assert!(!is_valid_dns_label("-a"));
        assert!(!is_valid_dns_label("a-"));
        assert!(!is_valid_dns_label("Mike's laptop"));
        assert!(!is_valid_dns_label("UPPER"));
        assert!(!is_valid_dns_label("a.b"));
    }

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

    /// A headscale 0.28-style answer with `n` distinct nodes (about 700
    /// bytes each, like `tests/fixtures/headscale/v0.28-nodes.json`).
    fn big_body(n: usize) -> Vec<u8> {
        use std::fmt::Write as _;
        let mut s = String::with_capacity(n * 1024 + 64);
        s.push_str("{\"nodes\":[");
        for i in 0..n {
            let id = i + 1;
            if i > 0 {
                s.push(',');
            }
            let _ = write!(
                s,
                concat!(
                    r#"{{"id":"{id}","machineKey":"mkey:{id:064x}","nodeKey":"nodekey:{id:064x}","#,
                    r#""discoKey":"discokey:{id:064x}","ipAddresses":["100.{a}.{b}.{c}","fd7a:115c:a1e0::{id:x}"],"#,
                    r#""name":"tart-host-{id}","user":{{"id":"2147455555","name":"tagged-devices","#,
                    r#""createdAt":"0001-01-01T00:00:00Z","displayName":"Tagged Devices","email":"","#,
                    r#""providerId":"","provider":"","profilePicUrl":""}},"#,
                    r#""lastSeen":"2026-07-10T08:15:02.123456789Z","expiry":null,"preAuthKey":null,"#,
                    r#""createdAt":"2026-07-01T09:00:00Z","registerMethod":"REGISTER_METHOD_AUTH_KEY","#,
                    r#""givenName":"tart-{id}","online":true,"approvedRoutes":[],"availableRoutes":[],"#,
                    r#""subnetRoutes":[],"tags":["tag:tart"]}}"#
                ),
                id = id,
                a = 64 + (id >> 16),
                b = (id >> 8) & 0xff,
                c = id & 0xff,
            );
        }
        s.push_str("]}");
        s.into_bytes()
    }

    fn status_kb(key: &str) -> u64 {
        let text = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        text.lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    }

    fn median_ms(mut times: Vec<f64>) -> f64 {
        times.sort_by(f64::total_cmp);
        times[times.len() / 2]
    }

    /// Cost of parsing a 10,000-node answer. Run in release:
    /// `cargo test --release -p tart-sync --lib -- --ignored --nocapture`.
    #[test]
    #[ignore = "measurement; run in release with --ignored --nocapture"]
    fn measure_parse_10000_nodes() {
        const N: usize = 10_000;
        let body = big_body(N);
        // Peak RSS first, before freed memory is lying around to be reused.
        let reset = std::fs::write("/proc/self/clear_refs", "5").is_ok();
        let before = status_kb("VmRSS");
        let list = parse_node_list(&body);
        let peak = status_kb("VmHWM");
        let kept = status_kb("VmRSS");
        let list = list.ok().unwrap_or_default();
        assert_eq!(list.nodes.len(), N);
        assert!(list.skipped.is_empty());
        drop(list);

        let mut parse = Vec::new();
        for _ in 0..21 {
            let started = std::time::Instant::now();
            let list = std::hint::black_box(parse_node_list(std::hint::black_box(&body)));
            parse.push(started.elapsed().as_secs_f64() * 1e3);
            drop(list);
        }
        println!(
            "{N} nodes, {:.2} MB body: parse_node_list median {:.2} ms (min {:.2} ms); \
             peak RSS +{:.1} MB during the parse (reset: {reset}), +{:.1} MB kept",
            body.len() as f64 / 1e6,
            median_ms(parse.clone()),
            parse.iter().copied().fold(f64::INFINITY, f64::min),
            peak.saturating_sub(before) as f64 / 1024.0,
            kept.saturating_sub(before) as f64 / 1024.0,
        );
    }

    #[test]
    fn excerpt_is_short_and_clean() {
        let long = "x\n".repeat(500);
        let e = excerpt(&long);
        assert!(e.chars().count() <= EXCERPT_CHARS + 1);
        assert!(!e.contains('\n'));
    }
}
