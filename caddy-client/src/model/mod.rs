//! Caddy's JSON config as Rust types.
//!
//! The model covers the parts of the config that clients usually read or
//! build — the root [`Config`], [`Admin`], the HTTP app ([`HttpApp`],
//! [`Server`], [`Route`], [`MatcherSet`]) and the common handlers
//! ([`Handler`], [`ReverseProxy`] with [`Upstream`]s, [`HealthChecks`],
//! [`LoadBalancing`], [`Transport`], [`Headers`], ...) — and keeps everything
//! else verbatim:
//!
//! - every struct has an `extra` map with the fields it does not model
//!   (fields added by newer Caddy versions, `@id` where it is not modelled,
//!   module-specific options);
//! - unknown handlers are kept whole in [`Handler::Other`], apps other than
//!   `http` in [`Apps::extra`], unknown matchers in [`MatcherSet::extra`];
//! - a value that does not fit its modelled field (an explicit `null`, an
//!   empty list where absence is modelled, a value of another JSON type) is
//!   moved to `extra` as it was instead of being altered or rejected.
//!
//! So reading a config from Caddy, deserializing it into [`Config`] and
//! serializing it again gives back JSON equal to what Caddy returned.
//!
//! Optional fields are `Option`s that are left out of the JSON when `None`,
//! lists of children (routes, handlers, matcher sets, upstreams) are `Vec`s
//! left out when empty. Durations are [`CaddyDuration`]s, which keep integer
//! nanoseconds and strings like `"10s"` apart.
//!
//! ```
//! use caddy_client::model::{Config, Handler, Route};
//!
//! let json = serde_json::json!({
//!     "apps": {"http": {"servers": {"srv0": {
//!         "listen": [":443"],
//!         "routes": [{
//!             "@id": "app",
//!             "match": [{"host": ["app.example.com"]}],
//!             "handle": [{"handler": "reverse_proxy", "upstreams": [{"dial": "10.0.0.1:8080"}]}],
//!             "terminal": true
//!         }]
//!     }}}}
//! });
//! let config: Config = serde_json::from_value(json.clone()).unwrap();
//! let route = config.find_route_by_id("app").unwrap();
//! assert_eq!(route.hosts(), ["app.example.com"]);
//! let Handler::ReverseProxy(proxy) = &route.handle[0] else { panic!() };
//! assert_eq!(proxy.upstreams[0].dial, "10.0.0.1:8080");
//! assert_eq!(serde_json::to_value(&config).unwrap(), json);
//!
//! // Building instead of reading:
//! let route = Route::reverse_proxy_host("app.example.com", "10.0.0.1:8080").with_id("app");
//! assert_eq!(serde_json::to_value(&route).unwrap()["@id"], "app");
//! ```

mod builders;
mod handlers;
mod http;
mod lossless;
mod reverse_proxy;
mod values;

use serde_json::{Map, Value};

use self::lossless::lossless_struct;

pub use self::builders::validate_dial;
pub use self::handlers::{
    Browse, Encode, FileServer, Handler, HeaderOps, HeaderReplacement, Headers, MapHandler,
    Mapping, Rewrite, StaticResponse, Subroute, UriSubstring,
};
pub use self::http::{
    Expression, ExpressionObject, HttpApp, HttpErrors, IpMatcher, MatcherSet, RegexpMatcher, Route,
    Server,
};
pub use self::reverse_proxy::{
    ActiveHealthChecks, HealthChecks, KeepAlive, LoadBalancing, PassiveHealthChecks,
    ResponseHandler, ReverseProxy, SelectionPolicy, Transport, TransportTls, Upstream,
};
pub use self::values::{CaddyDuration, StatusCode};

/// Header fields as Caddy writes them in handlers: name → values.
pub type HeaderMap = std::collections::BTreeMap<String, Vec<String>>;

lossless_struct! {
    /// The root of Caddy's config (`GET /config/`).
    ///
    /// `logging` and `storage` are kept as raw JSON; `apps.http` is typed as
    /// [`HttpApp`], other apps are kept raw in [`Apps::extra`].
    pub struct Config {
        /// `admin`: the admin endpoint's own configuration.
        pub admin: Option<Admin>,
        /// `logging`: log sinks and loggers, kept as raw JSON.
        pub logging: Option<Value>,
        /// `storage`: the storage module (`{"module": "file_system", ...}`), kept
        /// as raw JSON.
        pub storage: Option<Value>,
        /// `apps`: the configured apps.
        pub apps: Option<Apps>,
    }
}

lossless_struct! {
    /// `admin`: how Caddy's admin API listens and who may use it.
    pub struct Admin {
        /// `disabled`: turn the admin endpoint off.
        pub disabled: Option<bool>,
        /// `listen`: the admin address, e.g. `"localhost:2019"` or
        /// `"unix//run/caddy/admin.sock"`.
        pub listen: Option<String>,
        /// `enforce_origin`: require an allowed `Origin` header.
        pub enforce_origin: Option<bool>,
        /// `origins`: allowed origins.
        pub origins: Option<Vec<String>>,
        /// `config`: config persistence and `load` modules, kept as raw JSON.
        pub config: Option<Value>,
        /// `identity`: the admin endpoint's identity, kept as raw JSON.
        pub identity: Option<Value>,
        /// `remote`: the remote (mTLS) admin endpoint, kept as raw JSON.
        pub remote: Option<Value>,
    }
}

lossless_struct! {
    /// `apps`: the HTTP app typed, every other app (`tls`, `pki`, `layer4`, ...)
    /// kept raw in `extra` under its name.
    pub struct Apps {
        /// `http`: the HTTP app.
        pub http: Option<HttpApp>,
    }
}

impl Config {
    /// The HTTP app, if configured.
    pub fn http(&self) -> Option<&HttpApp> {
        self.apps.as_ref()?.http.as_ref()
    }

    /// The HTTP app for changing, if configured.
    pub fn http_mut(&mut self) -> Option<&mut HttpApp> {
        self.apps.as_mut()?.http.as_mut()
    }

    /// The HTTP app for changing, created empty (with `apps` if needed) when
    /// it is not configured yet.
    pub fn http_or_insert(&mut self) -> &mut HttpApp {
        self.apps
            .get_or_insert_with(Apps::default)
            .http
            .get_or_insert_with(HttpApp::default)
    }

    /// A raw app other than `http` by name (e.g. `"tls"`, `"pki"`).
    pub fn app(&self, name: &str) -> Option<&Value> {
        self.apps.as_ref()?.extra.get(name)
    }

    /// The first route with this `@id` anywhere in the HTTP app: server
    /// routes, error routes, and routes nested in `subroute` handlers and
    /// `reverse_proxy` `handle_response` blocks. A numeric `@id` matches its
    /// decimal form.
    pub fn find_route_by_id(&self, id: &str) -> Option<&Route> {
        self.http()?.find_route_by_id(id)
    }

    /// Like [`Config::find_route_by_id`], for changing the route in place.
    pub fn find_route_by_id_mut(&mut self, id: &str) -> Option<&mut Route> {
        self.http_mut()?.find_route_by_id_mut(id)
    }

    /// Every route in the HTTP app, depth first (a route comes before the
    /// routes nested in its handlers).
    pub fn all_routes(&self) -> Vec<&Route> {
        let mut out = Vec::new();
        if let Some(http) = self.http() {
            for server in http.servers.values() {
                server.collect_routes(&mut out);
            }
        }
        out
    }
}

/// The string form of an `@id` value: strings as they are, numbers in their
/// JSON form (`7`, `1.5`), anything else `None`.
pub fn id_string(id: &Value) -> Option<String> {
    match id {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Whether an `@id` value equals `id` (numbers compared by their JSON form).
fn id_matches(value: Option<&Value>, id: &str) -> bool {
    match value {
        Some(Value::String(s)) => s == id,
        Some(Value::Number(n)) => n.to_string() == id,
        _ => false,
    }
}

/// The `@id` of an object kept as raw JSON.
fn raw_id(map: &Map<String, Value>) -> Option<String> {
    map.get("@id").and_then(id_string)
}
