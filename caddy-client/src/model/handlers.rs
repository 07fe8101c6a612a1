//! HTTP handlers: the [`Handler`] enum and the typed handlers.

use std::collections::BTreeMap;

use serde::ser::SerializeMap as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

use super::http::{find_in, find_in_mut, HttpErrors, MatcherSet, Route};
use super::lossless::{deserialize_object, lossless_struct, FromJson};
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

    /// The handler as a JSON object (with its `"handler"` field).
    pub fn to_object(&self) -> Map<String, Value> {
        match serde_json::to_value(self) {
            Ok(Value::Object(map)) => map,
            // Handlers always serialize to objects with string keys.
            _ => Map::new(),
        }
    }

    /// A handler from its JSON object: typed if its `"handler"` is one of the
    /// modelled names, [`Handler::Other`] otherwise. Never fails, and
    /// [`Handler::to_object`] gives the object back.
    pub fn from_object(map: Map<String, Value>) -> Handler {
        let Some(name) = map.get("handler").and_then(Value::as_str) else {
            return Handler::Other(map);
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
            return Handler::Other(map);
        }
        let name = name.to_owned();
        let mut rest = map;
        let tag = rest.remove("handler");
        if name == "vars" {
            return Handler::Vars(rest);
        }
        let value = Value::Object(rest);
        let typed = match name.as_str() {
            "reverse_proxy" => ReverseProxy::from_json(value).map(Handler::ReverseProxy),
            "subroute" => Subroute::from_json(value).map(Handler::Subroute),
            "static_response" => StaticResponse::from_json(value).map(Handler::StaticResponse),
            "rewrite" => Rewrite::from_json(value).map(Handler::Rewrite),
            "headers" => Headers::from_json(value).map(Handler::Headers),
            "map" => MapHandler::from_json(value).map(Handler::Map),
            "file_server" => FileServer::from_json(value).map(Handler::FileServer),
            _ => Encode::from_json(value).map(Handler::Encode),
        };
        // The typed handlers accept any object, so this only keeps the
        // original if that ever changes.
        typed.unwrap_or_else(|value| {
            let mut map = match value {
                Value::Object(map) => map,
                _ => Map::new(),
            };
            if let Some(tag) = tag {
                map.insert("handler".to_owned(), tag);
            }
            Handler::Other(map)
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
        let tag = Some(("handler", self.name()));
        match self {
            Handler::ReverseProxy(h) => h.serialize_tagged(tag, serializer),
            Handler::Subroute(h) => h.serialize_tagged(tag, serializer),
            Handler::StaticResponse(h) => h.serialize_tagged(tag, serializer),
            Handler::Rewrite(h) => h.serialize_tagged(tag, serializer),
            Handler::Headers(h) => h.serialize_tagged(tag, serializer),
            Handler::Map(h) => h.serialize_tagged(tag, serializer),
            Handler::FileServer(h) => h.serialize_tagged(tag, serializer),
            Handler::Encode(h) => h.serialize_tagged(tag, serializer),
            Handler::Vars(vars) => {
                let vars = vars.iter().filter(|(k, _)| k.as_str() != "handler");
                let mut map = serializer.serialize_map(Some(vars.clone().count() + 1))?;
                map.serialize_entry("handler", "vars")?;
                for (k, v) in vars {
                    map.serialize_entry(k, v)?;
                }
                map.end()
            }
            Handler::Other(map) => map.serialize(serializer),
        }
    }
}

impl<'de> Deserialize<'de> for Handler {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserialize_object(deserializer, "Handler")
    }
}

impl FromJson for Handler {
    fn from_json(value: Value) -> Result<Self, Value> {
        match value {
            Value::Object(map) => Ok(Handler::from_object(map)),
            other => Err(other),
        }
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
        pub upstreams: Vec<Upstream>,
        /// `dynamic_upstreams`: an upstream source module (`a`, `srv`,
        /// `multi`, ...), kept as raw JSON.
        pub dynamic_upstreams: Option<Value>,
        /// `health_checks`: active and passive health checks.
        pub health_checks: Option<HealthChecks>,
        /// `load_balancing`: selection policy and retries.
        pub load_balancing: Option<LoadBalancing>,
        /// `transport`: how to talk to upstreams (`http`, `fastcgi`, ...).
        pub transport: Option<Transport>,
        /// `headers`: header manipulation, `request` going upstream (`header_up`)
        /// and `response` coming back (`header_down`).
        pub headers: Option<Headers>,
        /// `flush_interval`: how often to flush the response; negative means
        /// immediately.
        pub flush_interval: Option<CaddyDuration>,
        /// `trusted_proxies`: ranges whose `X-Forwarded-*` headers are kept.
        pub trusted_proxies: Option<Vec<String>>,
        /// `stream_timeout`: maximum lifetime of streams such as WebSockets
        /// (Caddy 2.7+).
        pub stream_timeout: Option<CaddyDuration>,
        /// `stream_close_delay`: how long streams stay open after a config
        /// reload (Caddy 2.7+).
        pub stream_close_delay: Option<CaddyDuration>,
        /// `handle_response`: routes for upstream responses that match.
        pub handle_response: Option<Vec<ResponseHandler>>,
    }
}

lossless_struct! {
    /// One static upstream of a `reverse_proxy`.
    pub struct Upstream {
        /// `dial`: the network address to dial, e.g. `"10.0.0.1:8080"`,
        /// `"unix//run/app.sock"`; see [`validate_dial`](super::validate_dial).
        pub dial: String,
        /// `max_requests`: maximum simultaneous requests to this upstream.
        pub max_requests: Option<u64>,
    }
}

lossless_struct! {
    /// `health_checks` of a `reverse_proxy`.
    pub struct HealthChecks {
        /// `active`: health checks run in the background.
        pub active: Option<ActiveHealthChecks>,
        /// `passive`: health inferred from proxied requests.
        pub passive: Option<PassiveHealthChecks>,
    }
}

lossless_struct! {
    /// `health_checks.active`.
    pub struct ActiveHealthChecks {
        /// `uri`: the URI (path and query) to request.
        pub uri: Option<String>,
        /// `path`: the path to request (deprecated in favour of `uri`).
        pub path: Option<String>,
        /// `upstream`: a fixed `host:port` to check instead of each upstream
        /// (Caddy 2.8+).
        pub upstream: Option<String>,
        /// `port`: the port to check instead of the upstream's.
        pub port: Option<u16>,
        /// `headers`: request headers for the check.
        pub headers: Option<HeaderMap>,
        /// `method`: the HTTP method (Caddy 2.8+).
        pub method: Option<String>,
        /// `body`: the request body (Caddy 2.9+).
        pub body: Option<String>,
        /// `follow_redirects` (Caddy 2.8+).
        pub follow_redirects: Option<bool>,
        /// `interval`: time between checks.
        pub interval: Option<CaddyDuration>,
        /// `timeout`: time to wait for a response.
        pub timeout: Option<CaddyDuration>,
        /// `passes`: consecutive passes to mark healthy (Caddy 2.7+).
        pub passes: Option<i64>,
        /// `fails`: consecutive failures to mark unhealthy (Caddy 2.7+).
        pub fails: Option<i64>,
        /// `max_size`: maximum response body size to read.
        pub max_size: Option<i64>,
        /// `expect_status`: the expected status code, or a class (`2` for
        /// `2xx`).
        pub expect_status: Option<i64>,
        /// `expect_body`: a regular expression the body must match.
        pub expect_body: Option<String>,
    }
}

lossless_struct! {
    /// `health_checks.passive`.
    pub struct PassiveHealthChecks {
        /// `fail_duration`: how long a failure is remembered.
        pub fail_duration: Option<CaddyDuration>,
        /// `max_fails`: failures within `fail_duration` to mark unhealthy.
        pub max_fails: Option<i64>,
        /// `unhealthy_request_count`: concurrent requests that mark unhealthy.
        pub unhealthy_request_count: Option<i64>,
        /// `unhealthy_status`: status codes (or classes, `5` for `5xx`) that
        /// count as failures.
        pub unhealthy_status: Option<Vec<i64>>,
        /// `unhealthy_latency`: responses slower than this count as failures.
        pub unhealthy_latency: Option<CaddyDuration>,
    }
}

lossless_struct! {
    /// `load_balancing` of a `reverse_proxy`.
    pub struct LoadBalancing {
        /// `selection_policy`: how to pick an upstream.
        pub selection_policy: Option<SelectionPolicy>,
        /// `retries`: how many times to retry (Caddy 2.7+).
        pub retries: Option<i64>,
        /// `try_duration`: how long to keep retrying.
        pub try_duration: Option<CaddyDuration>,
        /// `try_interval`: time between retries.
        pub try_interval: Option<CaddyDuration>,
        /// `retry_match`: which requests may be retried.
        pub retry_match: Option<Vec<MatcherSet>>,
    }
}

lossless_struct! {
    /// `load_balancing.selection_policy`: the policy name and its options
    /// (in `extra`, e.g. `field` for `header`).
    pub struct SelectionPolicy {
        /// `policy`: `random`, `round_robin`, `least_conn`, `first`, `header`,
        /// `ip_hash`, `cookie`, ...
        pub policy: Option<String>,
    }
}

lossless_struct! {
    /// `transport` of a `reverse_proxy`: the `protocol` (`http`, `fastcgi`,
    /// ...) and the common HTTP transport options; protocol-specific options
    /// not modelled here are in `extra`.
    pub struct Transport {
        /// `protocol`: the transport module.
        pub protocol: Option<String>,
        /// `tls`: TLS to the upstream; present (even empty) means HTTPS.
        pub tls: Option<TransportTls>,
        /// `keep_alive`: connection reuse.
        pub keep_alive: Option<KeepAlive>,
        /// `dial_timeout`.
        pub dial_timeout: Option<CaddyDuration>,
        /// `response_header_timeout`.
        pub response_header_timeout: Option<CaddyDuration>,
        /// `read_timeout`.
        pub read_timeout: Option<CaddyDuration>,
        /// `write_timeout`.
        pub write_timeout: Option<CaddyDuration>,
        /// `max_conns_per_host`.
        pub max_conns_per_host: Option<i64>,
        /// `read_buffer_size` in bytes.
        pub read_buffer_size: Option<i64>,
        /// `write_buffer_size` in bytes.
        pub write_buffer_size: Option<i64>,
        /// `versions`: HTTP versions to use (`"1.1"`, `"2"`, `"h2c"`, `"3"`).
        pub versions: Option<Vec<String>>,
        /// `root` (fastcgi): the site root on the upstream.
        pub root: Option<String>,
        /// `split_path` (fastcgi): where to split the path into script and
        /// path info.
        pub split_path: Option<Vec<String>>,
    }
}

lossless_struct! {
    /// `transport.tls` of the HTTP transport.
    pub struct TransportTls {
        /// `server_name`: the SNI / verified name.
        pub server_name: Option<String>,
        /// `insecure_skip_verify`: do not verify the upstream's certificate.
        pub insecure_skip_verify: Option<bool>,
    }
}

lossless_struct! {
    /// `transport.keep_alive` of the HTTP transport.
    pub struct KeepAlive {
        /// `enabled`.
        pub enabled: Option<bool>,
        /// `probe_interval`.
        pub probe_interval: Option<CaddyDuration>,
        /// `max_idle_conns`.
        pub max_idle_conns: Option<i64>,
        /// `max_idle_conns_per_host`.
        pub max_idle_conns_per_host: Option<i64>,
        /// `idle_timeout`.
        pub idle_timeout: Option<CaddyDuration>,
    }
}

lossless_struct! {
    /// One `handle_response` entry of a `reverse_proxy`.
    pub struct ResponseHandler {
        /// `match`: which upstream responses this applies to (`status_code`,
        /// `headers`), kept as raw JSON.
        pub matcher: Option<Value> => "match",
        /// `status_code`: replace the response status.
        pub status_code: Option<StatusCode>,
        /// `routes`: routes to run on the response.
        pub routes: Vec<Route>,
    }
}

lossless_struct! {
    /// The `headers` handler, and `headers` of a `reverse_proxy`.
    pub struct Headers {
        /// `request`: changes to request headers.
        pub request: Option<HeaderOps>,
        /// `response`: changes to response headers.
        pub response: Option<HeaderOps>,
    }
}

lossless_struct! {
    /// Header operations (`request` or `response` of [`Headers`]).
    pub struct HeaderOps {
        /// `add`: values to add.
        pub add: Option<HeaderMap>,
        /// `set`: values to set, replacing existing ones.
        pub set: Option<HeaderMap>,
        /// `delete`: header names to remove (with `*` wildcards).
        pub delete: Option<Vec<String>>,
        /// `replace`: substring or regexp replacements, by header name.
        pub replace: Option<BTreeMap<String, Vec<HeaderReplacement>>>,
        /// `deferred` (responses only): apply when the response is written.
        pub deferred: Option<bool>,
        /// `require` (responses only): only apply if the response matches,
        /// kept as raw JSON.
        pub require: Option<Value>,
    }
}

lossless_struct! {
    /// One header value replacement.
    pub struct HeaderReplacement {
        /// `search`: a substring to find.
        pub search: Option<String>,
        /// `search_regexp`: a regular expression to find.
        pub search_regexp: Option<String>,
        /// `replace`: the replacement.
        pub replace: Option<String>,
    }
}

lossless_struct! {
    /// The `subroute` handler: routes evaluated as a group.
    pub struct Subroute {
        /// `routes`: the nested routes, in order.
        pub routes: Vec<Route>,
        /// `errors`: routes for errors raised in `routes`.
        pub errors: Option<HttpErrors>,
    }
}

lossless_struct! {
    /// The `static_response` handler.
    pub struct StaticResponse {
        /// `status_code`: the status (default 200).
        pub status_code: Option<StatusCode>,
        /// `headers`: response headers.
        pub headers: Option<HeaderMap>,
        /// `body`: the response body.
        pub body: Option<String>,
        /// `close`: close the connection after responding.
        pub close: Option<bool>,
        /// `abort`: abort the connection without a response.
        pub abort: Option<bool>,
    }
}

lossless_struct! {
    /// The `rewrite` handler.
    pub struct Rewrite {
        /// `method`: the new method.
        pub method: Option<String>,
        /// `uri`: the new URI (path and/or query).
        pub uri: Option<String>,
        /// `strip_path_prefix`: a path prefix to remove.
        pub strip_path_prefix: Option<String>,
        /// `strip_path_suffix`: a path suffix to remove.
        pub strip_path_suffix: Option<String>,
        /// `uri_substring`: substring replacements in the URI.
        pub uri_substring: Option<Vec<UriSubstring>>,
        /// `path_regexp`: regexp replacements in the path, kept as raw JSON.
        pub path_regexp: Option<Value>,
    }
}

lossless_struct! {
    /// One `uri_substring` replacement of [`Rewrite`].
    pub struct UriSubstring {
        /// `find`: the substring to find.
        pub find: Option<String>,
        /// `replace`: the replacement.
        pub replace: Option<String>,
        /// `limit`: maximum replacements (0 = all).
        pub limit: Option<i64>,
    }
}

lossless_struct! {
    /// The `map` handler: sets placeholders from a lookup table.
    pub struct MapHandler {
        /// `source`: the placeholder to look up.
        pub source: Option<String>,
        /// `destinations`: the placeholders to set.
        pub destinations: Option<Vec<String>>,
        /// `mappings`: the table rows, in order.
        pub mappings: Option<Vec<Mapping>>,
        /// `defaults`: values when nothing matches, one per destination.
        pub defaults: Option<Vec<String>>,
    }
}

lossless_struct! {
    /// One row of a [`MapHandler`].
    pub struct Mapping {
        /// `input`: the exact input to match.
        pub input: Option<String>,
        /// `input_regexp`: a regular expression to match instead.
        pub input_regexp: Option<String>,
        /// `outputs`: one value per destination (any JSON; `null` for "leave
        /// unset").
        pub outputs: Option<Vec<Value>>,
    }
}

lossless_struct! {
    /// The `file_server` handler.
    pub struct FileServer {
        /// `root`: the site root (default: the `root` variable).
        pub root: Option<String>,
        /// `hide`: files to hide.
        pub hide: Option<Vec<String>>,
        /// `index_names`: index file names.
        pub index_names: Option<Vec<String>>,
        /// `browse`: directory listings; present (even empty) enables them.
        pub browse: Option<Browse>,
        /// `canonical_uris`: redirect to add or remove trailing slashes.
        pub canonical_uris: Option<bool>,
        /// `status_code`: override the response status.
        pub status_code: Option<StatusCode>,
        /// `pass_thru`: call the next handler instead of returning 404.
        pub pass_thru: Option<bool>,
        /// `precompressed`: precompressed sidecar encodings, kept as raw JSON.
        pub precompressed: Option<Map<String, Value>>,
        /// `precompressed_order`: preference order of those encodings.
        pub precompressed_order: Option<Vec<String>>,
    }
}

lossless_struct! {
    /// `browse` of [`FileServer`].
    pub struct Browse {
        /// `template_file`: a custom listing template.
        pub template_file: Option<String>,
    }
}

lossless_struct! {
    /// The `encode` handler: response compression.
    pub struct Encode {
        /// `encodings`: encoder modules by name (`gzip`, `zstd`, ...), kept as
        /// raw JSON.
        pub encodings: Option<Map<String, Value>>,
        /// `prefer`: preference order of encodings.
        pub prefer: Option<Vec<String>>,
        /// `minimum_length`: minimum response size to compress.
        pub minimum_length: Option<i64>,
        /// `match`: which responses to compress, kept as raw JSON.
        pub matcher: Option<Value> => "match",
    }
}
