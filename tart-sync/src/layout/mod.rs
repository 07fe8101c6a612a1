//! How the desired routes look in Caddy's config: one route, owned by
//! tart-sync, whose cost per request does not grow with the number of TARTs.
//!
//! # Why this layout
//!
//! The obvious layout, one `handle_path /<name>/*` route per TART inside the
//! site, makes Caddy compile and try every route on every request: measured
//! on Caddy 2.11.7, 7,253 req/s at 10 routes and 277 at 5,000. Instead
//! tart-sync writes a single route (`@id` = `<id_prefix>`, default
//! `tart-sync`) into the server that carries the site, just before the site's
//! own route (top-level routes are compiled once; a site's subroute is
//! compiled on every request). It matches the site's host itself:
//!
//! 1. Its matcher (`path_regexp`, or `header_regexp` on Host in host mode)
//!    captures the first path segment (or first host label) as the name,
//!    and the name's last two characters as a bucket key.
//! 2. An index `map` (`@id` `<prefix>-index`) maps the bucket key to one of
//!    at most [`MAX_BUCKETS`] bucket `map`s (`<prefix>-bucket-N`), and that
//!    bucket maps the name to its target: a dial address, or `offline`.
//!    A `map` is a linear scan evaluated lazily, so each request scans one
//!    index (≤ 1,296 keys, most frequent first) and one bucket (≈ N / buckets
//!    names) instead of N routes. Bucket maps are few (at most 8), because
//!    every `map` handler adds a placeholder provider to every request: the
//!    benchmark measured one map handler costing as much as ~70 names scanned.
//! 3. A `vars` handler (`@id` `<prefix>-rev`) reads the result once (before
//!    any rewrite changes what the lazy map would see) and carries the
//!    route's revision stamp ([`revision`]): an idle cycle reads only that
//!    small object, not the whole route.
//! 4. A small subroute (3 routes, constant) redirects `/<name>` to
//!    `/<name>/`, answers 503 for offline TARTs, or strips the prefix and
//!    proxies. An unknown name matches none of them and falls through to the
//!    site's own route.
//!
//! 5. With the public fleet page enabled (`[public]`), one more matcher set
//!    and a first subroute send the page's two paths to tart-sync's page
//!    listener; both are constant (see `public.rs`).
//!
//! In dns mode (`dns.rs`) the route has no index or bucket maps: Caddy's
//! `host` matcher decides whether a name is routed, and the proxy looks the
//! address up from tart-sync's DNS responder.
//!
//! Every change of the fleet is one `PATCH /id/<prefix>`: Caddy's reload
//! cost follows the size of the whole config, not of the patch, so patching
//! the whole subtree costs the same as patching one entry.

mod diff;
pub mod dns;
mod form;
mod public;

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{json, Map, Value};

use crate::config::{Resolve, RouteMode, RouteSettings};
use crate::desired::{Target, Targets};

pub use diff::{proxied_count, Diff, Names};
pub use form::RouteForm;

/// At most this many bucket maps (each `map` handler costs every request a little).
pub const MAX_BUCKETS: usize = 8;
/// Aim for about this many names per bucket before adding buckets.
const NAMES_PER_BUCKET: usize = 128;

/// What the target Caddy accepts, as far as the layout cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Features {
    /// `reverse_proxy` accepts `stream_close_delay` (Caddy 2.7+).
    pub stream_close_delay: bool,
}

/// The `@id`s tart-sync uses, derived from `routes.id_prefix`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ids {
    /// The owned route: `<prefix>`.
    pub route: String,
    /// The index map: `<prefix>-index`.
    pub index: String,
    /// Prefix of the bucket maps: `<prefix>-bucket-`.
    pub bucket: String,
    /// The `vars` handler carrying the revision stamp: `<prefix>-rev`.
    pub rev: String,
    /// Regexp capture name and placeholder stem: `<prefix>` with `_` for `-`.
    pub stem: String,
    /// The variable holding the revision stamp: `<stem>_rev`.
    pub rev_var: String,
    /// The variable holding the request's target: `<stem>_upstream`.
    pub upstream_var: String,
    /// The variable holding the request's name: `<stem>_name`.
    pub name_var: String,
    /// The index map's output, the lookup of the name: `<stem>_lookup`.
    pub lookup_var: String,
    /// dns mode: the request's own `Host`, kept while the name is looked up: `<stem>_host`.
    pub host_var: String,
}

impl Ids {
    /// The ids for a prefix.
    pub fn new(prefix: &str) -> Ids {
        let stem = prefix.replace('-', "_");
        Ids {
            route: prefix.to_string(),
            index: format!("{prefix}-index"),
            bucket: format!("{prefix}-bucket-"),
            rev: format!("{prefix}-rev"),
            rev_var: format!("{stem}_rev"),
            upstream_var: format!("{stem}_upstream"),
            name_var: format!("{stem}_name"),
            lookup_var: format!("{stem}_lookup"),
            host_var: format!("{stem}_host"),
            stem,
        }
    }

    /// The `@id` of bucket map `i`: `<prefix>-bucket-<i>`.
    pub fn bucket_id(&self, i: usize) -> String {
        format!("{}{i}", self.bucket)
    }

    /// The dial placeholder of the proxy, `{http.vars.<stem>_upstream}`:
    /// the one upstream address Caddy lists for every TART.
    pub fn upstream_placeholder(&self) -> String {
        format!("{{http.vars.{}}}", self.upstream_var)
    }

    /// Capture `i` of the owned route's matcher regexp (named `<stem>`):
    /// `{http.regexp.<stem>.<i>}`; capture 1 is always the TART's name.
    pub fn capture(&self, i: usize) -> String {
        format!("{{http.regexp.{}.{i}}}", self.stem)
    }

    /// The TART's name as config mode's route reads it: `{http.vars.<stem>_name}`.
    pub fn name_placeholder(&self) -> String {
        format!("{{http.vars.{}}}", self.name_var)
    }

    /// dns mode (path): the static upstream, `{<stem>_upstream}`, read
    /// straight from the fallback map, so Caddy scans that map only when a
    /// lookup fails.
    pub fn fallback_placeholder(&self) -> String {
        format!("{{{}}}", self.upstream_var)
    }

    /// The variable bucket map `i` writes: `<stem>_b<i>`.
    fn bucket_var(&self, i: usize) -> String {
        format!("{}_b{i}", self.stem)
    }
}

/// The public URL of a TART: `https://<domain>/<name>/`, or
/// `https://<name>.<domain>/` in host mode.
pub fn node_url(routes: &RouteSettings, name: &str) -> String {
    let domain = &routes.domain;
    match routes.mode {
        RouteMode::Path => format!("https://{domain}/{name}/"),
        RouteMode::Host => format!("https://{name}.{domain}/"),
    }
}

/// The static upstream the owned route's proxy lists, as Caddy's
/// `/reverse_proxy/upstreams` shows it: dns mode's route reads the
/// fallback map straight ([`Ids::fallback_placeholder`]), config mode's
/// the request's variable ([`Ids::upstream_placeholder`]).
pub fn proxy_dial(routes: &RouteSettings) -> String {
    let ids = Ids::new(&routes.id_prefix);
    match routes.resolve {
        Resolve::Dns => ids.fallback_placeholder(),
        Resolve::Config => ids.upstream_placeholder(),
    }
}

/// The host of the site that carries the routes: `domain`, or `*.domain` in host mode.
pub fn site_host(routes: &RouteSettings) -> String {
    match routes.mode {
        RouteMode::Path => routes.domain.clone(),
        RouteMode::Host => format!("*.{}", routes.domain),
    }
}

/// The route of the owned subroute that answers an offline TART at once:
/// 503 with a small page naming it (`{http.vars.<stem>_name}`), matched on
/// the offline sentinel of config mode (`name`: the placeholder of the
/// TART's name). dns mode moves it to the error routes, matched on the
/// offline address instead.
pub(crate) fn offline_route(ids: &Ids, name: &str) -> Value {
    let offline_page = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width\"><title>{name} is offline</title></head>\
<body style=\"font-family:sans-serif;margin:2em\"><h1>TART {name} is offline</h1>\
<p>This telescope is not connected right now. The page will work again when it reconnects.</p></body></html>\n"
    );
    json!({
        "match": [{"vars": {&ids.upstream_var: [Target::OFFLINE_LOOKUP]}}],
        "handle": [{
            "handler": "static_response",
            "status_code": 503,
            "headers": {"Content-Type": ["text/html; charset=utf-8"], "Retry-After": ["30"], "Cache-Control": ["no-store"]},
            "body": offline_page,
        }],
        "terminal": true,
    })
}

/// The `reverse_proxy` handler of the owned route: one upstream `dial`
/// (a placeholder), and `stream_close_delay` where Caddy has it.
pub(crate) fn proxy_handler(dial: &str, routes: &RouteSettings, features: Features) -> Value {
    let mut proxy = json!({
        "handler": "reverse_proxy",
        "upstreams": [{"dial": dial}],
    });
    if features.stream_close_delay && !routes.stream_close_delay.is_zero() {
        proxy["stream_close_delay"] = json!(humantime::format_duration(routes.stream_close_delay)
            .to_string()
            .replace(' ', ""));
    }
    proxy
}

/// The proxy's request headers in path mode: `X-Forwarded-Prefix: /<name>`
/// (`name`: the placeholder of the TART's name, as in the functions below).
pub(crate) fn forwarded_prefix(name: &str) -> Value {
    json!({"request": {"set": {"X-Forwarded-Prefix": [format!("/{name}")]}}})
}

/// The `rewrite` that strips `/<name>` before proxying (path mode).
pub(crate) fn strip_prefix(name: &str) -> Value {
    json!({"handler": "rewrite", "strip_path_prefix": format!("/{name}")})
}

/// The answer to `/<name>` without its slash: 308 to `/<name>/`, built from
/// the validated name only, never from the raw request path (which may hold
/// `//evil.example/..`).
pub(crate) fn redirect_handler(name: &str) -> Value {
    json!({
        "handler": "static_response",
        "status_code": 308,
        "headers": {"Location": [format!("/{name}/")]},
    })
}

/// The bucket key of a name: its last two characters (all of a one-character name).
pub fn bucket_key(name: &str) -> &str {
    let n = name.len();
    &name[n.saturating_sub(2)..]
}

/// The owned route, ready to serialize. Built by [`route`]; the bucket maps
/// (thousands of entries) are typed structs borrowing the names, so building
/// and serializing them allocates little; the constant rest is plain JSON.
#[derive(Debug, Serialize)]
pub struct OwnedRoute<'a> {
    #[serde(rename = "@id")]
    id: String,
    #[serde(rename = "match")]
    matchers: Vec<Value>,
    handle: Vec<HandlerOut<'a>>,
}

#[derive(Debug, Serialize)]
#[serde(untagged)]
enum HandlerOut<'a> {
    Map(MapOut<'a>),
    Other(Value),
}

#[derive(Debug, Serialize)]
struct MapOut<'a> {
    #[serde(rename = "@id")]
    id: String,
    handler: &'static str,
    source: String,
    destinations: [String; 1],
    mappings: Vec<MappingOut<'a>>,
    defaults: [&'static str; 1],
}

#[derive(Debug, Serialize)]
struct MappingOut<'a> {
    input: &'a str,
    outputs: [Cow<'a, str>; 1],
}

/// Version of this layout, part of every revision stamp: a tart-sync that
/// writes a different layout rewrites the route even if the fleet is the same.
const LAYOUT_VERSION: &str = concat!("layout-5/", env!("CARGO_PKG_VERSION"));

/// The revision stamp of a desired route: a stable 64-bit FNV-1a hash of the
/// layout version, the settings that shape the route, the features, and every
/// name → target. Stored in the route (`@id` `<prefix>-rev`), so an idle cycle
/// compares 16 hex digits instead of the whole route.
pub fn revision(targets: &Targets, routes: &RouteSettings, features: Features) -> String {
    let mut h = Fnv::default();
    h.write(LAYOUT_VERSION.as_bytes());
    h.write(routes.domain.as_bytes());
    h.write(routes.mode.as_str().as_bytes());
    h.write(routes.id_prefix.as_bytes());
    h.write(&routes.stream_close_delay.as_nanos().to_le_bytes());
    h.write(&[u8::from(features.stream_close_delay)]);
    if let Some(public) = &routes.public {
        h.write(b"public\0");
        h.write(public.path.as_bytes());
        h.write(&[0]);
        h.write(public.dial.as_bytes());
    }
    for (name, target) in targets {
        h.write(name.as_bytes());
        h.write(&[0]);
        h.write(target.as_lookup().as_bytes());
        h.write(&[0]);
    }
    format!("{:016x}", h.0)
}

/// 64-bit FNV-1a: stable across processes and versions (std's hasher is not).
struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv {
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
}

/// The owned route as a JSON value, for tools that inspect it (the daemon
/// serializes [`route`] directly and compares with [`RouteForm::matches`]).
pub fn subtree(targets: &Targets, routes: &RouteSettings, features: Features) -> Value {
    serde_json::to_value(route(targets, routes, features)).unwrap_or(Value::Null)
}

/// Builds the owned route for these targets.
pub fn route<'a>(
    targets: &'a Targets,
    routes: &RouteSettings,
    features: Features,
) -> OwnedRoute<'a> {
    let ids = Ids::new(&routes.id_prefix);
    let stem = &ids.stem;
    let name_ph = ids.capture(1);
    let key_ph = ids.capture(2);
    let lookup = &ids.lookup_var;
    let var_upstream = &ids.upstream_var;
    let var_name = &ids.name_var;
    const OFFLINE: &str = Target::OFFLINE_LOOKUP;

    // Group names by bucket key; spread keys over buckets, biggest first, to the least full.
    let mut by_key: BTreeMap<&str, Vec<(&'a str, &'a str)>> = BTreeMap::new();
    for (name, target) in targets {
        by_key
            .entry(bucket_key(name))
            .or_default()
            .push((name, target.as_lookup()));
    }
    let n_buckets = targets
        .len()
        .div_ceil(NAMES_PER_BUCKET)
        .clamp(1, MAX_BUCKETS);
    let mut keys: Vec<(&str, usize)> = by_key.iter().map(|(k, v)| (*k, v.len())).collect();
    keys.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    let mut buckets: Vec<Vec<MappingOut<'a>>> = (0..n_buckets).map(|_| Vec::new()).collect();
    let mut index = Vec::with_capacity(keys.len());
    for (key, _) in &keys {
        let slot = (0..n_buckets)
            .min_by_key(|i| (buckets[*i].len(), *i))
            .unwrap_or(0);
        for (name, target) in &by_key[key] {
            buckets[slot].push(MappingOut {
                input: name,
                outputs: [Cow::Borrowed(target)],
            });
        }
        let input: &'a str = by_key[key]
            .first()
            .map(|(n, _)| bucket_key(n))
            .unwrap_or("");
        index.push(MappingOut {
            input,
            outputs: [Cow::Owned(format!("{{{}}}", ids.bucket_var(slot)))],
        });
    }

    let mut handle = Vec::with_capacity(n_buckets + 3);
    handle.push(HandlerOut::Map(MapOut {
        id: ids.index.clone(),
        handler: "map",
        source: key_ph,
        destinations: [format!("{{{lookup}}}")],
        mappings: index,
        defaults: [""],
    }));
    for (i, mappings) in buckets.into_iter().enumerate() {
        handle.push(HandlerOut::Map(MapOut {
            id: ids.bucket_id(i),
            handler: "map",
            source: name_ph.clone(),
            destinations: [format!("{{{}}}", ids.bucket_var(i))],
            mappings,
            defaults: [""],
        }));
    }
    let mut vars = Map::new();
    vars.insert("@id".into(), json!(ids.rev));
    vars.insert("handler".into(), json!("vars"));
    vars.insert(var_name.clone(), json!(name_ph));
    vars.insert(var_upstream.clone(), json!(format!("{{{lookup}}}")));
    vars.insert(
        ids.rev_var.clone(),
        json!(revision(targets, routes, features)),
    );
    handle.push(HandlerOut::Other(Value::Object(vars)));

    let known = json!([{ "vars": { var_upstream: [""] } }]);
    let mut proxy = proxy_handler(&ids.upstream_placeholder(), routes, features);
    let name_var_ph = ids.name_placeholder();
    let offline = offline_route(&ids, &name_var_ph);
    let proxied = json!([{"not": [{"vars": {var_upstream: ["", OFFLINE]}}]}]);
    let (matcher, subroutes) = match routes.mode {
        RouteMode::Path => {
            proxy["headers"] = forwarded_prefix(&name_var_ph);
            let matcher = json!({
                "host": [routes.domain],
                "path_regexp": {"name": stem, "pattern": "^/([a-z0-9-]*?([a-z0-9-]{1,2}))(?:/|$)"},
            });
            let redirect = json!({
                "match": [{"path_regexp": {"pattern": "^/[a-z0-9-]+$"}, "not": known}],
                "handle": [redirect_handler(&name_var_ph)],
                "terminal": true,
            });
            let proxy_route = json!({
                "match": proxied,
                "handle": [strip_prefix(&name_var_ph), proxy],
                "terminal": true,
            });
            (matcher, vec![redirect, offline, proxy_route])
        }
        RouteMode::Host => {
            let escaped = routes.domain.replace('.', "\\.");
            let matcher = json!({
                "host": [format!("*.{}", routes.domain)],
                "header_regexp": {"Host": {"name": stem, "pattern": format!("^([a-z0-9-]*?([a-z0-9-]{{1,2}}))\\.{escaped}(?::[0-9]+)?$")}},
            });
            let proxy_route = json!({"match": proxied, "handle": [proxy], "terminal": true});
            (matcher, vec![offline, proxy_route])
        }
    };
    let mut matchers = vec![matcher];
    let mut subroutes = subroutes;
    if let Some(p) = &routes.public {
        matchers.push(public::matcher(p, routes));
        subroutes.insert(0, public::subroute(p, routes));
    }
    handle.push(HandlerOut::Other(
        json!({"handler": "subroute", "routes": subroutes}),
    ));
    OwnedRoute {
        id: ids.route,
        matchers,
        handle,
    }
}
