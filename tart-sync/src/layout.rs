//! How the desired routes look in Caddy's config: one route, owned by
//! tart-sync, whose cost per request does not grow with the number of TARTs.
//!
//! # Why this layout
//!
//! The obvious layout, one `handle_path /<name>/*` route per TART inside the
//! site, makes Caddy compile and try every route on every request: measured
//! on Caddy 2.11.7, 7,253 req/s at 10 routes and 277 at 5,000. Instead
//! tart-sync writes a single route (`@id` = `<id_prefix>`, default
//! `tart-sync`) at the top of the site:
//!
//! 1. Its matcher (`path_regexp`, or `header_regexp` on Host in host mode)
//!    captures the first path segment (or first host label) as the name,
//!    and the name's last two characters as a bucket key.
//! 2. An index `map` (`@id` `<prefix>-index`) maps the bucket key to one of
//!    at most [`MAX_BUCKETS`] bucket `map`s (`<prefix>-bucket-N`), and that
//!    bucket maps the name to its target: a dial address, or `offline`.
//!    A `map` is a linear scan evaluated lazily, so each request scans one
//!    index (≤ 1,296 keys, most frequent first) and one bucket (≈ N / buckets
//!    names) instead of N routes. Bucket maps are few, because every `map`
//!    handler adds a placeholder provider to every request.
//! 3. A `vars` handler reads the result once (before any rewrite changes
//!    what the lazy map would see).
//! 4. A small subroute (3 routes, constant) redirects `/<name>` to
//!    `/<name>/`, answers 503 for offline TARTs, or strips the prefix and
//!    proxies. An unknown name matches none of them and falls through to the
//!    rest of the site.
//!
//! Every change of the fleet is one `PATCH /id/<prefix>`: Caddy's reload
//! cost follows the size of the whole config, not of the patch, so patching
//! the whole subtree costs the same as patching one entry.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

use crate::config::{RouteMode, RouteSettings};
use crate::desired::OFFLINE;

/// At most this many bucket maps (each `map` handler costs every request a little).
pub const MAX_BUCKETS: usize = 32;
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
    /// Regexp capture name and placeholder stem: `<prefix>` with `_` for `-`.
    stem: String,
}

impl Ids {
    /// The ids for a prefix.
    pub fn new(prefix: &str) -> Ids {
        Ids {
            route: prefix.to_string(),
            index: format!("{prefix}-index"),
            bucket: format!("{prefix}-bucket-"),
            stem: prefix.replace('-', "_"),
        }
    }
}

/// The bucket key of a name: its last two characters (all of a one-character name).
pub fn bucket_key(name: &str) -> &str {
    let n = name.len();
    &name[n.saturating_sub(2)..]
}

/// Builds the owned route for these targets (name → dial address or [`OFFLINE`]).
pub fn subtree(
    targets: &BTreeMap<String, String>,
    routes: &RouteSettings,
    features: Features,
) -> Value {
    let ids = Ids::new(&routes.id_prefix);
    let stem = &ids.stem;
    let name_ph = format!("{{http.regexp.{stem}.1}}");
    let key_ph = format!("{{http.regexp.{stem}.2}}");
    let lookup = format!("{stem}_lookup");
    let var_upstream = format!("{stem}_upstream");
    let var_name = format!("{stem}_name");

    // Group names by bucket key; spread keys over buckets, biggest first, to the least full.
    let mut by_key: BTreeMap<&str, Vec<(&String, &String)>> = BTreeMap::new();
    for (name, target) in targets {
        by_key
            .entry(bucket_key(name))
            .or_default()
            .push((name, target));
    }
    let n_buckets = targets
        .len()
        .div_ceil(NAMES_PER_BUCKET)
        .clamp(1, MAX_BUCKETS);
    let mut keys: Vec<(&str, usize)> = by_key.iter().map(|(k, v)| (*k, v.len())).collect();
    keys.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    let mut buckets: Vec<Vec<Value>> = vec![Vec::new(); n_buckets];
    let mut index = Vec::with_capacity(keys.len());
    for (key, _) in &keys {
        let (slot, _) = buckets
            .iter()
            .enumerate()
            .min_by_key(|(i, b)| (b.len(), *i))
            .unwrap_or((0, &buckets[0]));
        for (name, target) in &by_key[key] {
            buckets[slot].push(json!({"input": name, "outputs": [target]}));
        }
        index.push(json!({"input": key, "outputs": [format!("{{{stem}_b{slot}}}")]}));
    }

    let mut handle = vec![json!({
        "@id": ids.index,
        "handler": "map",
        "source": key_ph,
        "destinations": [format!("{{{lookup}}}")],
        "mappings": index,
        "defaults": [""],
    })];
    for (i, mappings) in buckets.into_iter().enumerate() {
        handle.push(json!({
            "@id": format!("{}{i}", ids.bucket),
            "handler": "map",
            "source": name_ph,
            "destinations": [format!("{{{stem}_b{i}}}")],
            "mappings": mappings,
            "defaults": [""],
        }));
    }
    let mut vars = Map::new();
    vars.insert("handler".into(), json!("vars"));
    vars.insert(var_name.clone(), json!(name_ph));
    vars.insert(var_upstream.clone(), json!(format!("{{{lookup}}}")));
    handle.push(Value::Object(vars));

    let known = json!([{ "vars": { &var_upstream: [""] } }]);
    let mut proxy = json!({
        "handler": "reverse_proxy",
        "upstreams": [{"dial": format!("{{http.vars.{var_upstream}}}")}],
    });
    if features.stream_close_delay && !routes.stream_close_delay.is_zero() {
        proxy["stream_close_delay"] = json!(humantime::format_duration(routes.stream_close_delay)
            .to_string()
            .replace(' ', ""));
    }
    let offline_page = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width\"><title>{{http.vars.{var_name}}} is offline</title></head>\
<body style=\"font-family:sans-serif;margin:2em\"><h1>TART {{http.vars.{var_name}}} is offline</h1>\
<p>This telescope is not connected right now. The page will work again when it reconnects.</p></body></html>\n"
    );
    let offline = json!({
        "match": [{"vars": {&var_upstream: [OFFLINE]}}],
        "handle": [{
            "handler": "static_response",
            "status_code": 503,
            "headers": {"Content-Type": ["text/html; charset=utf-8"], "Retry-After": ["30"], "Cache-Control": ["no-store"]},
            "body": offline_page,
        }],
        "terminal": true,
    });
    let proxied = json!([{"not": [{"vars": {&var_upstream: ["", OFFLINE]}}]}]);
    let (matcher, subroutes) = match routes.mode {
        RouteMode::Path => {
            proxy["headers"] = json!({"request": {"set": {"X-Forwarded-Prefix": [format!("/{{http.vars.{var_name}}}")]}}});
            let matcher = json!({
                "host": [routes.domain],
                "path_regexp": {"name": stem, "pattern": "^/([a-z0-9-]*?([a-z0-9-]{1,2}))(?:/|$)"},
            });
            let redirect = json!({
                "match": [{"path_regexp": {"pattern": "^/[a-z0-9-]+$"}, "not": known}],
                "handle": [{
                    "handler": "static_response",
                    "status_code": 308,
                    "headers": {"Location": ["{http.request.uri.path}/"]},
                }],
                "terminal": true,
            });
            let proxy_route = json!({
                "match": proxied,
                "handle": [
                    {"handler": "rewrite", "strip_path_prefix": format!("/{{http.vars.{var_name}}}")},
                    proxy,
                ],
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
    handle.push(json!({"handler": "subroute", "routes": subroutes}));
    json!({
        "@id": ids.route,
        "match": [matcher],
        "handle": handle,
    })
}

/// Reads the name → target table back out of a live owned route (for diffs and
/// the removal guard). Unknown shapes give an empty table.
pub fn targets_of(live: &Value) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let handlers = live
        .get("handle")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    for h in handlers {
        let is_bucket = h
            .get("@id")
            .and_then(Value::as_str)
            .is_some_and(|id| id.contains("-bucket-"));
        if h.get("handler").and_then(Value::as_str) != Some("map") || !is_bucket {
            continue;
        }
        for m in h
            .get("mappings")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default()
        {
            let input = m.get("input").and_then(Value::as_str);
            let output = m
                .get("outputs")
                .and_then(|o| o.get(0))
                .and_then(Value::as_str);
            if let (Some(i), Some(o)) = (input, output) {
                out.insert(i.to_string(), o.to_string());
            }
        }
    }
    out
}

/// What changes between two tables: names added, removed, and changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Diff {
    /// Names only in the new table.
    pub added: Vec<String>,
    /// Names only in the old table.
    pub removed: Vec<String>,
    /// Names whose target changed.
    pub changed: Vec<String>,
    /// Names proxied before and not proxied now (gone, or now offline).
    pub unrouted: Vec<String>,
}

impl Diff {
    /// Compares `old` (live) with `new` (desired).
    pub fn between(old: &BTreeMap<String, String>, new: &BTreeMap<String, String>) -> Diff {
        let mut d = Diff::default();
        for (name, target) in new {
            match old.get(name) {
                None => d.added.push(name.clone()),
                Some(t) if t != target => d.changed.push(name.clone()),
                Some(_) => {}
            }
        }
        for (name, target) in old {
            if !new.contains_key(name) {
                d.removed.push(name.clone());
            }
            let was_proxied = target != OFFLINE;
            let is_proxied = new.get(name).is_some_and(|t| t != OFFLINE);
            if was_proxied && !is_proxied {
                d.unrouted.push(name.clone());
            }
        }
        d
    }

    /// True when nothing changes.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.changed.is_empty()
    }
}

/// Proxied routes in a table.
pub fn proxied_count(targets: &BTreeMap<String, String>) -> usize {
    targets.values().filter(|t| t.as_str() != OFFLINE).count()
}
