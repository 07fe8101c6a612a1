//! HTTP handlers: the [`Handler`] enum and the typed handlers.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

use super::http::{find_in, find_in_mut, HttpErrors, MatcherSet, Route};
use super::lossless::lossless_struct;
use super::values::{CaddyDuration, StatusCode};
use super::{raw_id, HeaderMap};

/// One HTTP handler (an element of a route's `handle`), tagged by its
/// `"handler"` field.
///
/// The handlers below are typed; any other handler (`authentication`,
/// `request_body`, `templates`, `error`, plugins, ...) is kept whole in
/// [`Handler::Other`], including its `"handler"` name. New variants may be
/// added in later versions, taking handlers out of `Other`.
// Variants are kept unboxed so that they can be matched and built directly;
// a config holds few enough handlers for their size not to matter.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum Handler {
    /// `reverse_proxy`.
    ReverseProxy(ReverseProxy),
    /// `subroute`: nested routes.
    Subroute(Subroute),
    /// `static_response` (also what `respond`, `redir` and `abort` adapt to).
    StaticResponse(StaticResponse),
    /// `rewrite` (also what `uri` and `handle_path` adapt to).
    Rewrite(Rewrite),
    /// `headers` (what the `header` directive adapts to).
    Headers(Headers),
    /// `map`.
    Map(MapHandler),
    /// `vars`: every field other than `"handler"` is a variable (for example
    /// `root`, set by the `root` directive).
    Vars(Map<String, Value>),
    /// `file_server`.
    FileServer(FileServer),
    /// `encode`.
    Encode(Encode),
    /// Any other handler, as the whole JSON object (with its `"handler"`).
    Other(Map<String, Value>),
}

impl Default for Handler {
    fn default() -> Self {
        Handler::StaticResponse(StaticResponse::default())
    }
}

impl Handler {
    /// The handler's name as written in `"handler"` (for [`Handler::Other`]
    /// the stored name, or `""` if it has none).
    pub fn name(&self) -> &str {
        match self {
            Handler::ReverseProxy(_) => "reverse_proxy",
            Handler::Subroute(_) => "subroute",
            Handler::StaticResponse(_) => "static_response",
            Handler::Rewrite(_) => "rewrite",
            Handler::Headers(_) => "headers",
            Handler::Map(_) => "map",
            Handler::Vars(_) => "vars",
            Handler::FileServer(_) => "file_server",
            Handler::Encode(_) => "encode",
            Handler::Other(map) => map.get("handler").and_then(Value::as_str).unwrap_or(""),
        }
    }

    /// The handler's `@id` as a string (numbers in decimal form).
    pub fn id(&self) -> Option<String> {
        raw_id(self.extra())
    }

    /// The fields of this handler that its type does not model (for
    /// [`Handler::Vars`] the variables, for [`Handler::Other`] the whole
    /// object).
    pub fn extra(&self) -> &Map<String, Value> {
        match self {
            Handler::ReverseProxy(h) => &h.extra,
            Handler::Subroute(h) => &h.extra,
            Handler::StaticResponse(h) => &h.extra,
            Handler::Rewrite(h) => &h.extra,
            Handler::Headers(h) => &h.extra,
            Handler::Map(h) => &h.extra,
            Handler::FileServer(h) => &h.extra,
            Handler::Encode(h) => &h.extra,
            Handler::Vars(map) | Handler::Other(map) => map,
        }
    }

    /// Mutable access to [`Handler::extra`] (e.g. to set an `@id`).
    pub fn extra_mut(&mut self) -> &mut Map<String, Value> {
        match self {
            Handler::ReverseProxy(h) => &mut h.extra,
            Handler::Subroute(h) => &mut h.extra,
            Handler::StaticResponse(h) => &mut h.extra,
            Handler::Rewrite(h) => &mut h.extra,
            Handler::Headers(h) => &mut h.extra,
            Handler::Map(h) => &mut h.extra,
            Handler::FileServer(h) => &mut h.extra,
            Handler::Encode(h) => &mut h.extra,
            Handler::Vars(map) | Handler::Other(map) => map,
        }
    }

    /// The handler as JSON (an object with its `"handler"` field).
    pub fn to_json(&self) -> Result<Map<String, Value>, serde_json::Error> {
        let value = match self {
            Handler::ReverseProxy(h) => serde_json::to_value(h)?,
            Handler::Subroute(h) => serde_json::to_value(h)?,
            Handler::StaticResponse(h) => serde_json::to_value(h)?,
            Handler::Rewrite(h) => serde_json::to_value(h)?,
            Handler::Headers(h) => serde_json::to_value(h)?,
            Handler::Map(h) => serde_json::to_value(h)?,
            Handler::FileServer(h) => serde_json::to_value(h)?,
            Handler::Encode(h) => serde_json::to_value(h)?,
            Handler::Vars(map) => Value::Object(map.clone()),
            Handler::Other(map) => return Ok(map.clone()),
        };
        let Value::Object(mut map) = value else {
            return Err(<serde_json::Error as serde::ser::Error>::custom(
                "handler did not serialize to an object",
            ));
        };
        map.insert("handler".to_owned(), Value::String(self.name().to_owned()));
        Ok(map)
    }

    /// A handler from its JSON object: typed if its `"handler"` is one of the
    /// modelled names, [`Handler::Other`] otherwise.
    pub fn from_json(map: Map<String, Value>) -> Result<Handler, serde_json::Error> {
        let Some(name) = map.get("handler").and_then(Value::as_str) else {
            return Ok(Handler::Other(map));
        };
        let known = [
            "reverse_proxy",
            "subroute",
            "static_response",
            "rewrite",
            "headers",
            "map",
            "vars",
            "file_server",
            "encode",
        ];
        if !known.contains(&name) {
            return Ok(Handler::Other(map));
        }
        let name = name.to_owned();
        let mut rest = map;
        rest.remove("handler");
        if name == "vars" {
            return Ok(Handler::Vars(rest));
        }
        let value = Value::Object(rest);
        Ok(match name.as_str() {
            "reverse_proxy" => Handler::ReverseProxy(serde_json::from_value(value)?),
            "subroute" => Handler::Subroute(serde_json::from_value(value)?),
            "static_response" => Handler::StaticResponse(serde_json::from_value(value)?),
            "rewrite" => Handler::Rewrite(serde_json::from_value(value)?),
            "headers" => Handler::Headers(serde_json::from_value(value)?),
            "map" => Handler::Map(serde_json::from_value(value)?),
            "file_server" => Handler::FileServer(serde_json::from_value(value)?),
            _ => Handler::Encode(serde_json::from_value(value)?),
        })
    }

    /// The routes directly nested in this handler: `subroute` routes and
    /// error routes, `reverse_proxy` `handle_response` routes.
    pub fn child_routes(&self) -> Vec<&Route> {
        match self {
            Handler::Subroute(s) => s
                .routes
                .iter()
                .chain(s.errors.iter().flat_map(|e| e.routes.iter()))
                .collect(),
            Handler::ReverseProxy(rp) => rp
                .handle_response
                .iter()
                .flatten()
                .flat_map(|h| h.routes.iter())
                .collect(),
            _ => Vec::new(),
        }
    }

    /// The first route with this `@id` nested in this handler, depth first.
    pub fn find_route_by_id(&self, id: &str) -> Option<&Route> {
        match self {
            Handler::Subroute(s) => {
                find_in(&s.routes, id).or_else(|| find_in(&s.errors.as_ref()?.routes, id))
            }
            Handler::ReverseProxy(rp) => rp
                .handle_response
                .iter()
                .flatten()
                .find_map(|h| find_in(&h.routes, id)),
            _ => None,
        }
    }

    /// Like [`Handler::find_route_by_id`], for changing the route in place.
    pub fn find_route_by_id_mut(&mut self, id: &str) -> Option<&mut Route> {
        match self {
            Handler::Subroute(s) => {
                let Subroute { routes, errors, .. } = s;
                find_in_mut(routes, id).or_else(|| find_in_mut(&mut errors.as_mut()?.routes, id))
            }
            Handler::ReverseProxy(rp) => rp
                .handle_response
                .iter_mut()
                .flatten()
                .find_map(|h| find_in_mut(&mut h.routes, id)),
            _ => None,
        }
    }
}

impl Serialize for Handler {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.to_json()
            .map_err(serde::ser::Error::custom)?
            .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Handler {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let map = Map::<String, Value>::deserialize(deserializer)?;
        Handler::from_json(map).map_err(serde::de::Error::custom)
    }
}

macro_rules! impl_from_handler {
    ($($ty:ident => $variant:ident),* $(,)?) => {
        $(
            impl From<$ty> for Handler {
                fn from(h: $ty) -> Self {
                    Handler::$variant(h)
                }
            }
        )*
    };
}

impl_from_handler! {
    ReverseProxy => ReverseProxy,
    Subroute => Subroute,
    StaticResponse => StaticResponse,
    Rewrite => Rewrite,
    Headers => Headers,
    MapHandler => Map,
    FileServer => FileServer,
    Encode => Encode,
}

lossless_struct! {
    /// The `reverse_proxy` handler.
    pub struct ReverseProxy {
        /// `upstreams`: the static upstreams.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        pub upstreams: Vec<Upstream>,
        /// `dynamic_upstreams`: an upstream source module (`a`, `srv`,
        /// `multi`, ...), kept as raw JSON.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub dynamic_upstreams: Option<Value>,
        /// `health_checks`: active and passive health checks.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub health_checks: Option<HealthChecks>,
        /// `load_balancing`: selection policy and retries.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub load_balancing: Option<LoadBalancing>,
        /// `transport`: how to talk to upstreams (`http`, `fastcgi`, ...).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub transport: Option<Transport>,
        /// `headers`: header manipulation, `request` going upstream (`header_up`)
        /// and `response` coming back (`header_down`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub headers: Option<Headers>,
        /// `flush_interval`: how often to flush the response; negative means
        /// immediately.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub flush_interval: Option<CaddyDuration>,
        /// `trusted_proxies`: ranges whose `X-Forwarded-*` headers are kept.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub trusted_proxies: Option<Vec<String>>,
        /// `stream_timeout`: maximum lifetime of streams such as WebSockets
        /// (Caddy 2.7+).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub stream_timeout: Option<CaddyDuration>,
        /// `stream_close_delay`: how long streams stay open after a config
        /// reload (Caddy 2.7+).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub stream_close_delay: Option<CaddyDuration>,
        /// `handle_response`: routes for upstream responses that match.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub handle_response: Option<Vec<ResponseHandler>>,
    }
}

lossless_struct! {
    /// One static upstream of a `reverse_proxy`.
    pub struct Upstream {
        /// `dial`: the network address to dial, e.g. `"10.0.0.1:8080"`,
        /// `"unix//run/app.sock"`; see [`validate_dial`](super::validate_dial).
        #[serde(default, skip_serializing_if = "String::is_empty")]
        pub dial: String,
        /// `max_requests`: maximum simultaneous requests to this upstream.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub max_requests: Option<u64>,
    }
}

lossless_struct! {
    /// `health_checks` of a `reverse_proxy`.
    pub struct HealthChecks {
        /// `active`: health checks run in the background.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub active: Option<ActiveHealthChecks>,
        /// `passive`: health inferred from proxied requests.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub passive: Option<PassiveHealthChecks>,
    }
}

lossless_struct! {
    /// `health_checks.active`.
    pub struct ActiveHealthChecks {
        /// `uri`: the URI (path and query) to request.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub uri: Option<String>,
        /// `path`: the path to request (deprecated in favour of `uri`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub path: Option<String>,
        /// `upstream`: a fixed `host:port` to check instead of each upstream
        /// (Caddy 2.8+).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub upstream: Option<String>,
        /// `port`: the port to check instead of the upstream's.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub port: Option<u16>,
        /// `headers`: request headers for the check.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub headers: Option<HeaderMap>,
        /// `method`: the HTTP method (Caddy 2.8+).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub method: Option<String>,
        /// `body`: the request body (Caddy 2.9+).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub body: Option<String>,
        /// `follow_redirects` (Caddy 2.8+).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub follow_redirects: Option<bool>,
        /// `interval`: time between checks.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub interval: Option<CaddyDuration>,
        /// `timeout`: time to wait for a response.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub timeout: Option<CaddyDuration>,
        /// `passes`: consecutive passes to mark healthy (Caddy 2.7+).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub passes: Option<i64>,
        /// `fails`: consecutive failures to mark unhealthy (Caddy 2.7+).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub fails: Option<i64>,
        /// `max_size`: maximum response body size to read.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub max_size: Option<i64>,
        /// `expect_status`: the expected status code, or a class (`2` for
        /// `2xx`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub expect_status: Option<i64>,
        /// `expect_body`: a regular expression the body must match.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub expect_body: Option<String>,
    }
}

lossless_struct! {
    /// `health_checks.passive`.
    pub struct PassiveHealthChecks {
        /// `fail_duration`: how long a failure is remembered.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub fail_duration: Option<CaddyDuration>,
        /// `max_fails`: failures within `fail_duration` to mark unhealthy.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub max_fails: Option<i64>,
        /// `unhealthy_request_count`: concurrent requests that mark unhealthy.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub unhealthy_request_count: Option<i64>,
        /// `unhealthy_status`: status codes (or classes, `5` for `5xx`) that
        /// count as failures.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub unhealthy_status: Option<Vec<i64>>,
        /// `unhealthy_latency`: responses slower than this count as failures.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub unhealthy_latency: Option<CaddyDuration>,
    }
}

lossless_struct! {
    /// `load_balancing` of a `reverse_proxy`.
    pub struct LoadBalancing {
        /// `selection_policy`: how to pick an upstream.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub selection_policy: Option<SelectionPolicy>,
        /// `retries`: how many times to retry (Caddy 2.7+).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub retries: Option<i64>,
        /// `try_duration`: how long to keep retrying.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub try_duration: Option<CaddyDuration>,
        /// `try_interval`: time between retries.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub try_interval: Option<CaddyDuration>,
        /// `retry_match`: which requests may be retried.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub retry_match: Option<Vec<MatcherSet>>,
    }
}

lossless_struct! {
    /// `load_balancing.selection_policy`: the policy name and its options
    /// (in `extra`, e.g. `field` for `header`).
    pub struct SelectionPolicy {
        /// `policy`: `random`, `round_robin`, `least_conn`, `first`, `header`,
        /// `ip_hash`, `cookie`, ...
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub policy: Option<String>,
    }
}

lossless_struct! {
    /// `transport` of a `reverse_proxy`: the `protocol` (`http`, `fastcgi`,
    /// ...) and the common HTTP transport options; protocol-specific options
    /// not modelled here are in `extra`.
    pub struct Transport {
        /// `protocol`: the transport module.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub protocol: Option<String>,
        /// `tls`: TLS to the upstream; present (even empty) means HTTPS.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub tls: Option<TransportTls>,
        /// `keep_alive`: connection reuse.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub keep_alive: Option<KeepAlive>,
        /// `dial_timeout`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub dial_timeout: Option<CaddyDuration>,
        /// `response_header_timeout`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub response_header_timeout: Option<CaddyDuration>,
        /// `read_timeout`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub read_timeout: Option<CaddyDuration>,
        /// `write_timeout`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub write_timeout: Option<CaddyDuration>,
        /// `max_conns_per_host`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub max_conns_per_host: Option<i64>,
        /// `read_buffer_size` in bytes.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub read_buffer_size: Option<i64>,
        /// `write_buffer_size` in bytes.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub write_buffer_size: Option<i64>,
        /// `versions`: HTTP versions to use (`"1.1"`, `"2"`, `"h2c"`, `"3"`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub versions: Option<Vec<String>>,
        /// `root` (fastcgi): the site root on the upstream.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub root: Option<String>,
        /// `split_path` (fastcgi): where to split the path into script and
        /// path info.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub split_path: Option<Vec<String>>,
    }
}

lossless_struct! {
    /// `transport.tls` of the HTTP transport.
    pub struct TransportTls {
        /// `server_name`: the SNI / verified name.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub server_name: Option<String>,
        /// `insecure_skip_verify`: do not verify the upstream's certificate.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub insecure_skip_verify: Option<bool>,
    }
}

lossless_struct! {
    /// `transport.keep_alive` of the HTTP transport.
    pub struct KeepAlive {
        /// `enabled`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub enabled: Option<bool>,
        /// `probe_interval`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub probe_interval: Option<CaddyDuration>,
        /// `max_idle_conns`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub max_idle_conns: Option<i64>,
        /// `max_idle_conns_per_host`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub max_idle_conns_per_host: Option<i64>,
        /// `idle_timeout`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub idle_timeout: Option<CaddyDuration>,
    }
}

lossless_struct! {
    /// One `handle_response` entry of a `reverse_proxy`.
    pub struct ResponseHandler {
        /// `match`: which upstream responses this applies to (`status_code`,
        /// `headers`), kept as raw JSON.
        #[serde(rename = "match", default, skip_serializing_if = "Option::is_none")]
        pub matcher: Option<Value>,
        /// `status_code`: replace the response status.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub status_code: Option<StatusCode>,
        /// `routes`: routes to run on the response.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        pub routes: Vec<Route>,
    }
}

lossless_struct! {
    /// The `headers` handler, and `headers` of a `reverse_proxy`.
    pub struct Headers {
        /// `request`: changes to request headers.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub request: Option<HeaderOps>,
        /// `response`: changes to response headers.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub response: Option<HeaderOps>,
    }
}

lossless_struct! {
    /// Header operations (`request` or `response` of [`Headers`]).
    pub struct HeaderOps {
        /// `add`: values to add.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub add: Option<HeaderMap>,
        /// `set`: values to set, replacing existing ones.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub set: Option<HeaderMap>,
        /// `delete`: header names to remove (with `*` wildcards).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub delete: Option<Vec<String>>,
        /// `replace`: substring or regexp replacements, by header name.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub replace: Option<BTreeMap<String, Vec<HeaderReplacement>>>,
        /// `deferred` (responses only): apply when the response is written.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub deferred: Option<bool>,
        /// `require` (responses only): only apply if the response matches,
        /// kept as raw JSON.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub require: Option<Value>,
    }
}

lossless_struct! {
    /// One header value replacement.
    pub struct HeaderReplacement {
        /// `search`: a substring to find.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub search: Option<String>,
        /// `search_regexp`: a regular expression to find.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub search_regexp: Option<String>,
        /// `replace`: the replacement.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub replace: Option<String>,
    }
}

lossless_struct! {
    /// The `subroute` handler: routes evaluated as a group.
    pub struct Subroute {
        /// `routes`: the nested routes, in order.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        pub routes: Vec<Route>,
        /// `errors`: routes for errors raised in `routes`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub errors: Option<HttpErrors>,
    }
}

lossless_struct! {
    /// The `static_response` handler.
    pub struct StaticResponse {
        /// `status_code`: the status (default 200).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub status_code: Option<StatusCode>,
        /// `headers`: response headers.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub headers: Option<HeaderMap>,
        /// `body`: the response body.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub body: Option<String>,
        /// `close`: close the connection after responding.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub close: Option<bool>,
        /// `abort`: abort the connection without a response.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub abort: Option<bool>,
    }
}

lossless_struct! {
    /// The `rewrite` handler.
    pub struct Rewrite {
        /// `method`: the new method.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub method: Option<String>,
        /// `uri`: the new URI (path and/or query).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub uri: Option<String>,
        /// `strip_path_prefix`: a path prefix to remove.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub strip_path_prefix: Option<String>,
        /// `strip_path_suffix`: a path suffix to remove.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub strip_path_suffix: Option<String>,
        /// `uri_substring`: substring replacements in the URI.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub uri_substring: Option<Vec<UriSubstring>>,
        /// `path_regexp`: regexp replacements in the path, kept as raw JSON.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub path_regexp: Option<Value>,
    }
}

lossless_struct! {
    /// One `uri_substring` replacement of [`Rewrite`].
    pub struct UriSubstring {
        /// `find`: the substring to find.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub find: Option<String>,
        /// `replace`: the replacement.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub replace: Option<String>,
        /// `limit`: maximum replacements (0 = all).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub limit: Option<i64>,
    }
}

lossless_struct! {
    /// The `map` handler: sets placeholders from a lookup table.
    pub struct MapHandler {
        /// `source`: the placeholder to look up.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub source: Option<String>,
        /// `destinations`: the placeholders to set.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub destinations: Option<Vec<String>>,
        /// `mappings`: the table rows, in order.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub mappings: Option<Vec<Mapping>>,
        /// `defaults`: values when nothing matches, one per destination.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub defaults: Option<Vec<String>>,
    }
}

lossless_struct! {
    /// One row of a [`MapHandler`].
    pub struct Mapping {
        /// `input`: the exact input to match.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub input: Option<String>,
        /// `input_regexp`: a regular expression to match instead.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub input_regexp: Option<String>,
        /// `outputs`: one value per destination (any JSON; `null` for "leave
        /// unset").
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub outputs: Option<Vec<Value>>,
    }
}

lossless_struct! {
    /// The `file_server` handler.
    pub struct FileServer {
        /// `root`: the site root (default: the `root` variable).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub root: Option<String>,
        /// `hide`: files to hide.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub hide: Option<Vec<String>>,
        /// `index_names`: index file names.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub index_names: Option<Vec<String>>,
        /// `browse`: directory listings; present (even empty) enables them.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub browse: Option<Browse>,
        /// `canonical_uris`: redirect to add or remove trailing slashes.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub canonical_uris: Option<bool>,
        /// `status_code`: override the response status.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub status_code: Option<StatusCode>,
        /// `pass_thru`: call the next handler instead of returning 404.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub pass_thru: Option<bool>,
        /// `precompressed`: precompressed sidecar encodings, kept as raw JSON.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub precompressed: Option<Map<String, Value>>,
        /// `precompressed_order`: preference order of those encodings.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub precompressed_order: Option<Vec<String>>,
    }
}

lossless_struct! {
    /// `browse` of [`FileServer`].
    pub struct Browse {
        /// `template_file`: a custom listing template.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub template_file: Option<String>,
    }
}

lossless_struct! {
    /// The `encode` handler: response compression.
    pub struct Encode {
        /// `encodings`: encoder modules by name (`gzip`, `zstd`, ...), kept as
        /// raw JSON.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub encodings: Option<Map<String, Value>>,
        /// `prefer`: preference order of encodings.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub prefer: Option<Vec<String>>,
        /// `minimum_length`: minimum response size to compress.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub minimum_length: Option<i64>,
        /// `match`: which responses to compress, kept as raw JSON.
        #[serde(rename = "match", default, skip_serializing_if = "Option::is_none")]
        pub matcher: Option<Value>,
    }
}
