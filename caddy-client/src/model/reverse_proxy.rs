//! The `reverse_proxy` handler and its parts: upstreams, health checks,
//! load balancing, transport, response handlers.

use serde_json::Value;

use super::handlers::Headers;
use super::http::{MatcherSet, Route};
use super::lossless::lossless_struct;
use super::values::{CaddyDuration, StatusCode};
use super::HeaderMap;

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
