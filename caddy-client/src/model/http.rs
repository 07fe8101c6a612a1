//! The HTTP app: servers, routes and matchers.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::handlers::Handler;
use super::lossless::{lossless_struct, FromJson};
use super::values::CaddyDuration;
use super::{id_matches, id_string};

lossless_struct! {
    /// `apps.http`: the HTTP app.
    pub struct HttpApp {
        /// `http_port`: the port for plain HTTP (default 80).
        pub http_port: Option<u16>,
        /// `https_port`: the port for HTTPS (default 443).
        pub https_port: Option<u16>,
        /// `grace_period`: how long to wait for connections to close on shutdown
        /// or reload.
        pub grace_period: Option<CaddyDuration>,
        /// `shutdown_delay`: how long to wait before starting the grace period.
        pub shutdown_delay: Option<CaddyDuration>,
        /// `servers`: the servers by name (`"srv0"`, ...).
        pub servers: BTreeMap<String, Server>,
    }
}

lossless_struct! {
    /// `apps.http.servers.<name>`: one HTTP server.
    pub struct Server {
        /// `@id`: the server's id, a string or a number.
        pub id: Option<Value> => "@id",
        /// `listen`: the addresses to listen on, e.g. `[":443"]`.
        pub listen: Option<Vec<String>>,
        /// `routes`: the routes, in order.
        pub routes: Vec<Route>,
        /// `errors`: the routes that handle errors.
        pub errors: Option<HttpErrors>,
        /// `read_timeout`.
        pub read_timeout: Option<CaddyDuration>,
        /// `read_header_timeout`.
        pub read_header_timeout: Option<CaddyDuration>,
        /// `write_timeout`.
        pub write_timeout: Option<CaddyDuration>,
        /// `idle_timeout`.
        pub idle_timeout: Option<CaddyDuration>,
        /// `automatic_https`: automatic HTTPS settings, kept as raw JSON.
        pub automatic_https: Option<Value>,
        /// `tls_connection_policies`: kept as raw JSON.
        pub tls_connection_policies: Option<Value>,
        /// `logs`: access log settings, kept as raw JSON (its shape changed
        /// between Caddy versions).
        pub logs: Option<Value>,
        /// `protocols`: the HTTP versions to serve (`"h1"`, `"h2"`, `"h2c"`,
        /// `"h3"`).
        pub protocols: Option<Vec<String>>,
        /// `trusted_proxies`: the trusted proxies module (Caddy 2.6.3+), kept as
        /// raw JSON.
        pub trusted_proxies: Option<Value>,
        /// `client_ip_headers`: headers to read the client IP from (Caddy 2.7+).
        pub client_ip_headers: Option<Vec<String>>,
    }
}

lossless_struct! {
    /// `errors` of a server or subroute: the routes that handle errors.
    pub struct HttpErrors {
        /// `routes`: the error routes, in order.
        pub routes: Vec<Route>,
    }
}

lossless_struct! {
    /// One route: matcher sets, handlers, and whether matching stops here.
    pub struct Route {
        /// `@id`: the route's id, a string or a number; see [`Route::id`].
        pub id: Option<Value> => "@id",
        /// `group`: only the first matching route of a group runs.
        pub group: Option<String>,
        /// `match`: the matcher sets; the route matches if any set matches (an
        /// empty list matches every request).
        pub matchers: Vec<MatcherSet> => "match",
        /// `handle`: the handlers, in order.
        pub handle: Vec<Handler>,
        /// `terminal`: stop evaluating further routes after this one.
        pub terminal: Option<bool>,
    }
}

lossless_struct! {
    /// One matcher set (an element of a route's `match`): every matcher in it
    /// must match.
    ///
    /// The common matchers are typed; every other matcher (`file`,
    /// `remote_ip` variants of plugins, ...) is kept in `extra` under its name.
    pub struct MatcherSet {
        /// `host`: host names, with `*` wildcards for one label.
        pub host: Option<Vec<String>>,
        /// `path`: path patterns, with `*` wildcards.
        pub path: Option<Vec<String>>,
        /// `path_regexp`: a regular expression on the path.
        pub path_regexp: Option<RegexpMatcher>,
        /// `method`: HTTP methods.
        pub method: Option<Vec<String>>,
        /// `header`: header name → accepted values (`null` for "header must be
        /// absent").
        pub header: Option<BTreeMap<String, Option<Vec<String>>>>,
        /// `header_regexp`: header name → regular expression.
        pub header_regexp: Option<BTreeMap<String, RegexpMatcher>>,
        /// `query`: query key → accepted values.
        pub query: Option<BTreeMap<String, Vec<String>>>,
        /// `protocol`: `"http"`, `"https"`, `"grpc"`, `"http/2"`, ...
        pub protocol: Option<String>,
        /// `remote_ip`: the connection's remote address.
        pub remote_ip: Option<IpMatcher>,
        /// `client_ip`: the client address after trusted proxies (Caddy 2.7+).
        pub client_ip: Option<IpMatcher>,
        /// `not`: matches if none of these matcher sets matches.
        pub not: Option<Vec<MatcherSet>>,
        /// `expression`: a CEL expression.
        pub expression: Option<Expression>,
        /// `vars`: variable or placeholder → accepted values.
        pub vars: Option<BTreeMap<String, Vec<String>>>,
        /// `vars_regexp`: variable or placeholder → regular expression.
        pub vars_regexp: Option<BTreeMap<String, RegexpMatcher>>,
    }
}

lossless_struct! {
    /// A regular expression matcher (`path_regexp`, `header_regexp`,
    /// `vars_regexp`); captures are available as placeholders under `name`.
    pub struct RegexpMatcher {
        /// `name`: the name for capture placeholders.
        pub name: Option<String>,
        /// `pattern`: the regular expression (Go RE2 syntax).
        pub pattern: Option<String>,
    }
}

lossless_struct! {
    /// An IP range matcher (`remote_ip`, `client_ip`).
    pub struct IpMatcher {
        /// `ranges`: IP addresses or CIDR ranges.
        pub ranges: Option<Vec<String>>,
    }
}

/// The `expression` matcher: a CEL expression string, or (newer Caddy) an
/// object with the expression and a name.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(untagged)]
pub enum Expression {
    /// The expression as a plain string.
    Text(String),
    /// The expression as an object.
    Object(ExpressionObject),
}

impl Default for Expression {
    fn default() -> Self {
        Expression::Text(String::new())
    }
}

impl FromJson for Expression {
    fn from_json(value: Value) -> Result<Self, Value> {
        match value {
            Value::String(s) => Ok(Expression::Text(s)),
            other @ Value::Object(_) => ExpressionObject::from_json(other).map(Expression::Object),
            other => Err(other),
        }
    }
}

impl Expression {
    /// The CEL expression text.
    pub fn expr(&self) -> Option<&str> {
        match self {
            Expression::Text(s) => Some(s),
            Expression::Object(o) => o.expr.as_deref(),
        }
    }
}

lossless_struct! {
    /// The object form of the `expression` matcher.
    pub struct ExpressionObject {
        /// `expr`: the CEL expression.
        pub expr: Option<String>,
        /// `name`: the name for capture placeholders.
        pub name: Option<String>,
    }
}

impl HttpApp {
    /// The first route with this `@id` in any server; see
    /// [`Config::find_route_by_id`](super::Config::find_route_by_id).
    pub fn find_route_by_id(&self, id: &str) -> Option<&Route> {
        self.servers.values().find_map(|s| s.find_route_by_id(id))
    }

    /// Like [`HttpApp::find_route_by_id`], for changing the route in place.
    pub fn find_route_by_id_mut(&mut self, id: &str) -> Option<&mut Route> {
        self.servers
            .values_mut()
            .find_map(|s| s.find_route_by_id_mut(id))
    }

    /// The name and server whose top-level routes match `host` (see
    /// [`Server::route_for_host`]), first by server name.
    pub fn server_for_host(&self, host: &str) -> Option<(&str, &Server)> {
        self.servers
            .iter()
            .find(|(_, s)| s.route_for_host(host).is_some())
            .map(|(name, s)| (name.as_str(), s))
    }

    /// The server that listens on `addr` exactly (e.g. `":443"`).
    pub fn server_listening_on(&self, addr: &str) -> Option<(&str, &Server)> {
        self.servers
            .iter()
            .find(|(_, s)| {
                s.listen
                    .as_ref()
                    .is_some_and(|l| l.iter().any(|a| a == addr))
            })
            .map(|(name, s)| (name.as_str(), s))
    }
}

impl Server {
    /// The server's `@id` as a string (numbers in decimal form).
    pub fn id(&self) -> Option<String> {
        self.id.as_ref().and_then(id_string)
    }

    /// The first route with this `@id` in this server, searching its routes,
    /// its error routes and everything nested in them.
    pub fn find_route_by_id(&self, id: &str) -> Option<&Route> {
        find_in(&self.routes, id).or_else(|| find_in(&self.errors.as_ref()?.routes, id))
    }

    /// Like [`Server::find_route_by_id`], for changing the route in place.
    pub fn find_route_by_id_mut(&mut self, id: &str) -> Option<&mut Route> {
        let Server { routes, errors, .. } = self;
        find_in_mut(routes, id).or_else(|| find_in_mut(&mut errors.as_mut()?.routes, id))
    }

    /// The host names matched by the server's top-level routes, in order,
    /// without duplicates.
    pub fn hosts(&self) -> Vec<&str> {
        let mut out: Vec<&str> = Vec::new();
        for host in self.routes.iter().flat_map(Route::hosts) {
            if !out.contains(&host) {
                out.push(host);
            }
        }
        out
    }

    /// The first top-level route with a `host` matcher naming `host` exactly
    /// (ASCII case-insensitive; wildcards are not expanded).
    pub fn route_for_host(&self, host: &str) -> Option<&Route> {
        self.routes
            .iter()
            .find(|r| r.hosts().iter().any(|h| h.eq_ignore_ascii_case(host)))
    }

    /// Like [`Server::route_for_host`], for changing the route in place.
    pub fn route_for_host_mut(&mut self, host: &str) -> Option<&mut Route> {
        self.routes
            .iter_mut()
            .find(|r| r.hosts().iter().any(|h| h.eq_ignore_ascii_case(host)))
    }

    /// Appends every route of this server (including error routes and nested
    /// routes) to `out`, depth first.
    pub(super) fn collect_routes<'a>(&'a self, out: &mut Vec<&'a Route>) {
        for route in self
            .routes
            .iter()
            .chain(self.errors.iter().flat_map(|e| e.routes.iter()))
        {
            route.collect_routes(out);
        }
    }
}

impl Route {
    /// The route's `@id` as a string (numbers in decimal form).
    pub fn id(&self) -> Option<String> {
        self.id.as_ref().and_then(id_string)
    }

    /// Whether the route's `@id` is `id` (a numeric `@id` matches its decimal
    /// form).
    pub fn has_id(&self, id: &str) -> bool {
        id_matches(self.id.as_ref(), id)
    }

    /// The values of the `host` matchers of this route's matcher sets (not of
    /// nested routes), in order.
    pub fn hosts(&self) -> Vec<&str> {
        self.matchers
            .iter()
            .filter_map(|m| m.host.as_ref())
            .flatten()
            .map(String::as_str)
            .collect()
    }

    /// The values of the `path` matchers of this route's matcher sets, in
    /// order.
    pub fn paths(&self) -> Vec<&str> {
        self.matchers
            .iter()
            .filter_map(|m| m.path.as_ref())
            .flatten()
            .map(String::as_str)
            .collect()
    }

    /// The routes directly nested in this route's handlers: `subroute` routes
    /// and error routes, and `reverse_proxy` `handle_response` routes.
    pub fn child_routes(&self) -> Vec<&Route> {
        self.handle.iter().flat_map(Handler::child_routes).collect()
    }

    /// The first route with this `@id` nested in this route's handlers (not
    /// this route itself), depth first.
    pub fn find_route_by_id(&self, id: &str) -> Option<&Route> {
        self.handle.iter().find_map(|h| h.find_route_by_id(id))
    }

    /// Like [`Route::find_route_by_id`], for changing the route in place.
    pub fn find_route_by_id_mut(&mut self, id: &str) -> Option<&mut Route> {
        self.handle
            .iter_mut()
            .find_map(|h| h.find_route_by_id_mut(id))
    }

    /// The dial addresses of every `reverse_proxy` in this route, including
    /// nested routes, in order.
    pub fn upstream_dials(&self) -> Vec<&str> {
        let mut routes = Vec::new();
        self.collect_routes(&mut routes);
        routes
            .into_iter()
            .flat_map(|r| r.handle.iter())
            .filter_map(|h| match h {
                Handler::ReverseProxy(rp) => Some(rp.upstreams.iter().map(|u| u.dial.as_str())),
                _ => None,
            })
            .flatten()
            .collect()
    }

    /// Appends this route and every route nested in it to `out`, depth first.
    pub(super) fn collect_routes<'a>(&'a self, out: &mut Vec<&'a Route>) {
        out.push(self);
        for child in self.child_routes() {
            child.collect_routes(out);
        }
    }
}

/// The first route with this `@id` in `routes` or nested in them.
pub(super) fn find_in<'a>(routes: &'a [Route], id: &str) -> Option<&'a Route> {
    routes.iter().find_map(|r| {
        if r.has_id(id) {
            Some(r)
        } else {
            r.find_route_by_id(id)
        }
    })
}

/// Like [`find_in`], for changing the route in place.
pub(super) fn find_in_mut<'a>(routes: &'a mut [Route], id: &str) -> Option<&'a mut Route> {
    routes.iter_mut().find_map(|r| {
        if r.has_id(id) {
            Some(r)
        } else {
            r.find_route_by_id_mut(id)
        }
    })
}

impl MatcherSet {
    /// Whether the set has no matchers at all (it then matches every
    /// request).
    pub fn is_empty(&self) -> bool {
        *self == MatcherSet::default()
    }
}
