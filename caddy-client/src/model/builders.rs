//! Constructors for the common config shapes, so callers need not write JSON.

use serde_json::{Map, Value};

use super::handlers::{Handler, HeaderOps, Headers, Rewrite, StaticResponse, Subroute};
use super::http::{HttpApp, IpMatcher, MatcherSet, RegexpMatcher, Route, Server};
use super::reverse_proxy::{ReverseProxy, Upstream};
use super::values::StatusCode;
use super::HeaderMap;

impl Route {
    /// An empty route (matches everything, does nothing).
    pub fn new() -> Route {
        Route::default()
    }

    /// A route that proxies a path prefix to `dial` with the prefix stripped,
    /// as the Caddyfile `handle_path /prefix/* { reverse_proxy dial }` adapts
    /// to:
    ///
    /// ```json
    /// {"match": [{"path": ["/prefix/*"]}],
    ///  "handle": [{"handler": "subroute", "routes": [
    ///      {"handle": [{"handler": "rewrite", "strip_path_prefix": "/prefix"}]},
    ///      {"handle": [{"handler": "reverse_proxy", "upstreams": [{"dial": "dial"}]}]}]}]}
    /// ```
    ///
    /// `prefix` may be given as `/prefix`, `/prefix/` or `/prefix/*`.
    pub fn reverse_proxy_path(prefix: &str, dial: &str) -> Route {
        let prefix = normalize_prefix(prefix);
        let strip = Route::new().with_handler(Rewrite {
            strip_path_prefix: Some(prefix.clone()),
            ..Rewrite::default()
        });
        let proxy = Route::new().with_handler(ReverseProxy::to(dial));
        Route::new()
            .with_match(MatcherSet::path([format!("{prefix}/*")]))
            .with_handler(Handler::subroute(vec![strip, proxy]))
    }

    /// A terminal route that proxies every request for `host` to `dial`:
    /// `{"match": [{"host": [host]}], "handle": [{"handler": "reverse_proxy",
    /// "upstreams": [{"dial": dial}]}], "terminal": true}`.
    ///
    /// (`caddy adapt` wraps a site's handlers in a `subroute`; for a single
    /// handler that is equivalent.)
    pub fn reverse_proxy_host(host: &str, dial: &str) -> Route {
        Route::new()
            .with_match(MatcherSet::host([host]))
            .with_handler(ReverseProxy::to(dial))
            .terminal()
    }

    /// A terminal route answering requests for `host` with a static response.
    pub fn static_response_host(host: &str, status: u16, body: &str) -> Route {
        Route::new()
            .with_match(MatcherSet::host([host]))
            .with_handler(Handler::static_response(status, body))
            .terminal()
    }

    /// Sets the route's `@id` (a string or a number).
    pub fn with_id(mut self, id: impl Into<Value>) -> Route {
        self.id = Some(id.into());
        self
    }

    /// Appends a matcher set (sets are alternatives: any may match).
    pub fn with_match(mut self, matcher: MatcherSet) -> Route {
        self.matchers.push(matcher);
        self
    }

    /// Appends a handler.
    pub fn with_handler(mut self, handler: impl Into<Handler>) -> Route {
        self.handle.push(handler.into());
        self
    }

    /// Marks the route terminal (`"terminal": true`).
    pub fn terminal(mut self) -> Route {
        self.terminal = Some(true);
        self
    }

    /// Sets the route's `group`.
    pub fn with_group(mut self, group: impl Into<String>) -> Route {
        self.group = Some(group.into());
        self
    }
}

/// `/api`, `/api/` and `/api/*` all become `/api`.
fn normalize_prefix(prefix: &str) -> String {
    let trimmed = prefix.trim_end_matches('*').trim_end_matches('/');
    if trimmed.starts_with('/') {
        trimmed.to_owned()
    } else {
        format!("/{trimmed}")
    }
}

impl Handler {
    /// A `static_response` handler with this status and body.
    pub fn static_response(status: u16, body: impl Into<String>) -> Handler {
        Handler::StaticResponse(StaticResponse {
            status_code: Some(StatusCode::Code(status)),
            body: Some(body.into()),
            ..StaticResponse::default()
        })
    }

    /// A `static_response` redirect: `status` (e.g. 301, 302, 308) with a
    /// `Location` header, as the Caddyfile `redir` adapts to.
    pub fn redirect(location: impl Into<String>, status: u16) -> Handler {
        let mut headers = HeaderMap::new();
        headers.insert("Location".to_owned(), vec![location.into()]);
        Handler::StaticResponse(StaticResponse {
            status_code: Some(StatusCode::Code(status)),
            headers: Some(headers),
            ..StaticResponse::default()
        })
    }

    /// A `reverse_proxy` handler with one upstream.
    pub fn reverse_proxy(dial: &str) -> Handler {
        Handler::ReverseProxy(ReverseProxy::to(dial))
    }

    /// A `subroute` handler with these routes.
    pub fn subroute(routes: Vec<Route>) -> Handler {
        Handler::Subroute(Subroute {
            routes,
            ..Subroute::default()
        })
    }

    /// A `rewrite` handler that strips a path prefix.
    pub fn strip_path_prefix(prefix: impl Into<String>) -> Handler {
        Handler::Rewrite(Rewrite {
            strip_path_prefix: Some(prefix.into()),
            ..Rewrite::default()
        })
    }

    /// A `rewrite` handler that sets the URI.
    pub fn rewrite_uri(uri: impl Into<String>) -> Handler {
        Handler::Rewrite(Rewrite {
            uri: Some(uri.into()),
            ..Rewrite::default()
        })
    }

    /// A `headers` handler that sets one response header.
    pub fn set_response_header(name: impl Into<String>, value: impl Into<String>) -> Handler {
        let mut set = HeaderMap::new();
        set.insert(name.into(), vec![value.into()]);
        Handler::Headers(Headers {
            response: Some(HeaderOps {
                set: Some(set),
                ..HeaderOps::default()
            }),
            ..Headers::default()
        })
    }

    /// A `vars` handler setting these variables.
    pub fn vars<K: Into<String>, V: Into<Value>>(
        vars: impl IntoIterator<Item = (K, V)>,
    ) -> Handler {
        Handler::Vars(
            vars.into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect::<Map<_, _>>(),
        )
    }
}

impl ReverseProxy {
    /// A `reverse_proxy` to one upstream.
    pub fn to(dial: &str) -> ReverseProxy {
        ReverseProxy::to_all([dial])
    }

    /// A `reverse_proxy` to several upstreams (load balanced by Caddy's
    /// default policy).
    pub fn to_all<I, S>(dials: I) -> ReverseProxy
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        ReverseProxy {
            upstreams: dials
                .into_iter()
                .map(|d| Upstream::new(d.as_ref()))
                .collect(),
            ..ReverseProxy::default()
        }
    }

    /// Appends an upstream.
    pub fn with_upstream(mut self, dial: &str) -> ReverseProxy {
        self.upstreams.push(Upstream::new(dial));
        self
    }

    /// The upstreams' dial addresses, in order.
    pub fn dials(&self) -> Vec<&str> {
        self.upstreams.iter().map(|u| u.dial.as_str()).collect()
    }
}

impl Upstream {
    /// An upstream dialing `dial` (not validated; see [`Upstream::validate`]).
    pub fn new(dial: impl Into<String>) -> Upstream {
        Upstream {
            dial: dial.into(),
            ..Upstream::default()
        }
    }

    /// Checks the dial address with [`validate_dial`].
    pub fn validate(&self) -> Result<(), String> {
        validate_dial(&self.dial)
    }
}

/// A light check of an upstream dial address, as Caddy does not validate
/// dials when loading a config (a bad one only fails when proxying).
///
/// Accepts `host:port` (host may be a name, an IPv4 address, `[IPv6]`, or
/// empty for all interfaces) with a numeric port, optionally behind a network
/// such as `tcp/`, `tcp4/`, `udp/`; `unix/path` sockets; and anything with a
/// `{placeholder}`, which can only be resolved at request time.
pub fn validate_dial(dial: &str) -> Result<(), String> {
    if dial.is_empty() {
        return Err("dial address is empty".to_owned());
    }
    if dial.contains('{') {
        return Ok(());
    }
    if dial.chars().any(char::is_whitespace) {
        return Err(format!("dial address {dial:?} contains whitespace"));
    }
    let (network, address) = match dial.split_once('/') {
        Some((net, rest)) if !net.contains(':') && !net.is_empty() => (net, rest),
        _ => ("tcp", dial),
    };
    match network {
        "unix" | "unixgram" | "unixpacket" => {
            if address.is_empty() {
                Err(format!("dial address {dial:?} has no socket path"))
            } else {
                Ok(())
            }
        }
        "tcp" | "tcp4" | "tcp6" | "udp" | "udp4" | "udp6" | "ip" | "ip4" | "ip6" => {
            let Some((host, port)) = address.rsplit_once(':') else {
                return Err(format!(
                    "dial address {dial:?} has no port (expected host:port)"
                ));
            };
            if host.contains(':') && !(host.starts_with('[') && host.ends_with(']')) {
                return Err(format!(
                    "dial address {dial:?}: an IPv6 host must be in brackets"
                ));
            }
            if host.contains('/') {
                return Err(format!("dial address {dial:?}: unexpected '/' in host"));
            }
            match port.parse::<u16>() {
                Ok(_) if port.bytes().all(|b| b.is_ascii_digit()) => Ok(()),
                _ => Err(format!(
                    "dial address {dial:?}: port {port:?} is not a number from 0 to 65535"
                )),
            }
        }
        other => Err(format!("dial address {dial:?}: unknown network {other:?}")),
    }
}

impl MatcherSet {
    /// A set with a `host` matcher.
    pub fn host<I, S>(hosts: I) -> MatcherSet
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        MatcherSet {
            host: Some(hosts.into_iter().map(Into::into).collect()),
            ..MatcherSet::default()
        }
    }

    /// A set with a `path` matcher.
    pub fn path<I, S>(paths: I) -> MatcherSet
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        MatcherSet {
            path: Some(paths.into_iter().map(Into::into).collect()),
            ..MatcherSet::default()
        }
    }

    /// A set with a `method` matcher.
    pub fn method<I, S>(methods: I) -> MatcherSet
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        MatcherSet {
            method: Some(methods.into_iter().map(Into::into).collect()),
            ..MatcherSet::default()
        }
    }

    /// A set with a `path_regexp` matcher.
    pub fn path_regexp(name: Option<&str>, pattern: &str) -> MatcherSet {
        MatcherSet {
            path_regexp: Some(RegexpMatcher {
                name: name.map(str::to_owned),
                pattern: Some(pattern.to_owned()),
                ..RegexpMatcher::default()
            }),
            ..MatcherSet::default()
        }
    }

    /// A set with a `remote_ip` matcher.
    pub fn remote_ip<I, S>(ranges: I) -> MatcherSet
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        MatcherSet {
            remote_ip: Some(IpMatcher::ranges(ranges)),
            ..MatcherSet::default()
        }
    }

    /// A set with a `client_ip` matcher (Caddy 2.7+).
    pub fn client_ip<I, S>(ranges: I) -> MatcherSet
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        MatcherSet {
            client_ip: Some(IpMatcher::ranges(ranges)),
            ..MatcherSet::default()
        }
    }

    /// A set with an `expression` (CEL) matcher.
    pub fn expression(expr: impl Into<String>) -> MatcherSet {
        MatcherSet {
            expression: Some(super::http::Expression::Text(expr.into())),
            ..MatcherSet::default()
        }
    }

    /// A set with a `not` matcher negating `sets`.
    pub fn not(sets: Vec<MatcherSet>) -> MatcherSet {
        MatcherSet {
            not: Some(sets),
            ..MatcherSet::default()
        }
    }

    /// Adds hosts to this set's `host` matcher.
    pub fn and_host(mut self, host: impl Into<String>) -> MatcherSet {
        self.host.get_or_insert_with(Vec::new).push(host.into());
        self
    }

    /// Adds a path to this set's `path` matcher.
    pub fn and_path(mut self, path: impl Into<String>) -> MatcherSet {
        self.path.get_or_insert_with(Vec::new).push(path.into());
        self
    }

    /// Adds a method to this set's `method` matcher.
    pub fn and_method(mut self, method: impl Into<String>) -> MatcherSet {
        self.method.get_or_insert_with(Vec::new).push(method.into());
        self
    }
}

impl IpMatcher {
    /// A matcher for these IP addresses or CIDR ranges.
    pub fn ranges<I, S>(ranges: I) -> IpMatcher
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        IpMatcher {
            ranges: Some(ranges.into_iter().map(Into::into).collect()),
            ..IpMatcher::default()
        }
    }
}

impl Server {
    /// A server listening on these addresses (e.g. `[":443"]`), without routes.
    pub fn listening_on<I, S>(listen: I) -> Server
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Server {
            listen: Some(listen.into_iter().map(Into::into).collect()),
            ..Server::default()
        }
    }

    /// Appends a route.
    pub fn with_route(mut self, route: Route) -> Server {
        self.routes.push(route);
        self
    }
}

impl HttpApp {
    /// Adds (or replaces) a server by name.
    pub fn with_server(mut self, name: impl Into<String>, server: Server) -> HttpApp {
        self.servers.insert(name.into(), server);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dials() {
        for ok in [
            "localhost:8080",
            "10.0.0.1:80",
            "[::1]:443",
            ":8080",
            "tcp/example.com:80",
            "udp6/[fd00::1]:53",
            "unix//run/app.sock",
            "unix/relative.sock",
            "{http.request.host}:80",
        ] {
            assert_eq!(validate_dial(ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            "localhost",
            "localhost:http",
            "host:70000",
            "::1:80",
            "unix/",
            "bogus/x:1",
            "a b:1",
        ] {
            assert!(validate_dial(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn prefixes() {
        for p in ["/api", "/api/", "/api/*", "api"] {
            assert_eq!(normalize_prefix(p), "/api");
        }
    }
}
