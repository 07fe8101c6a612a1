//! The owned route in dns mode (`routes.resolve = "dns"`): the proxy looks
//! the TART's address up from tart-sync's responder (`dynamic_upstreams`
//! source `a`), so the config carries only the set of names.
//!
//! Neither mode's route has index or bucket maps on the hit path: Caddy's
//! `host` matcher, which binary-searches lists of over 100 hosts, answers
//! whether a name is routed (measured at 10,000 TARTs on Caddy 2.11.7: the
//! map layout spent about 10 µs of Caddy CPU per request scanning and
//! registering its maps; see BENCHMARKS.md). Path mode (`path_route`) sets
//! `Host` to `<name>.<zone>` for that and puts it back; in host mode
//! (`host_route`) the request's `Host` already is `<name>.<domain>`.
//!
//! - The one map left is the name's *fallback* address: its
//!   address as of the last write (or the offline sentinel for a name first
//!   seen offline). A move or a flap never rewrites it ([`stable_targets`]
//!   keeps the live outputs while the names are the same); the write that a
//!   new or removed name costs anyway refreshes them all ([`fresh_targets`]).
//!   The proxy lists it as its static upstream, which Caddy uses when the
//!   lookup fails (tart-sync restarting: its UDP port closed answers at
//!   once), so online TARTs stay reachable through a restart.
//! - The revision stamp ([`revision`]) hashes the names only, so a move or
//!   a flap is no difference at all: zero writes.
//! - An offline TART resolves to [`OFFLINE_ADDRESS`]: the dial fails at
//!   once, and the subroute's `errors` route that matches that upstream host
//!   answers the offline page (503) straight away. Any other proxy error
//!   (a real dial error to an online TART) is passed on unchanged.

use std::time::Duration;

use serde_json::{json, Value};

use std::borrow::Cow;

use super::{
    forwarded_prefix, offline_route, proxy_handler, public, redirect_handler, strip_prefix,
    Features, Fnv, HandlerOut, Ids, MapOut, MappingOut, OwnedRoute, LAYOUT_VERSION,
};
use crate::config::{RouteMode, RouteSettings};
use crate::desired::{Target, Targets};
use crate::dns::OFFLINE_ADDRESS;

/// How the proxy of one Caddy resolves names in dns mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsRoute {
    /// `dns.zone`, with its final dot.
    pub zone: String,
    /// `dns.refresh`: how long Caddy caches an answer.
    pub refresh: Duration,
    /// The resolver address this Caddy asks (`udp/IP:port`).
    pub resolver: String,
}

/// The dial address of the offline sentinel on `port`.
pub fn offline_dial(port: u16) -> String {
    format!("{OFFLINE_ADDRESS}:{port}")
}

/// The table to write: the names of `desired`, each with its output in
/// `live` when it is already there (a move or a flap rewrites nothing),
/// else its current dial address, or the offline sentinel.
pub fn stable_targets(desired: &Targets, live: &Targets, port: u16) -> Targets {
    desired
        .iter()
        .map(|(name, target)| {
            let kept = match live.get(name) {
                Some(Target::Dial(d)) => d.clone(),
                _ => match target {
                    Target::Dial(d) => d.clone(),
                    Target::Offline => offline_dial(port),
                },
            };
            (name.clone(), Target::Dial(kept))
        })
        .collect()
}

/// The table to write when a write happens anyway (names added or
/// removed): every proxied name with its current address, an offline one
/// with its output in `live` (or the offline sentinel), so the static
/// fallback is as fresh as the last write.
pub fn fresh_targets(desired: &Targets, live: &Targets, port: u16) -> Targets {
    desired
        .iter()
        .map(|(name, target)| {
            let dial = match (target, live.get(name)) {
                (Target::Dial(d), _) | (Target::Offline, Some(Target::Dial(d))) => d.clone(),
                (Target::Offline, _) => offline_dial(port),
            };
            (name.clone(), Target::Dial(dial))
        })
        .collect()
}

/// The revision stamp in dns mode: the layout, the settings that shape the
/// route, this Caddy's resolver, and the *names* only.
pub fn revision(
    targets: &Targets,
    routes: &RouteSettings,
    features: Features,
    dns: &DnsRoute,
) -> String {
    let mut h = Fnv::default();
    h.write(LAYOUT_VERSION.as_bytes());
    h.write(b"/dns");
    h.write(routes.domain.as_bytes());
    h.write(routes.mode.as_str().as_bytes());
    h.write(routes.id_prefix.as_bytes());
    h.write(&routes.upstream_port.to_le_bytes());
    h.write(&routes.stream_close_delay.as_nanos().to_le_bytes());
    h.write(&[u8::from(features.stream_close_delay)]);
    h.write(dns.zone.as_bytes());
    h.write(&dns.refresh.as_nanos().to_le_bytes());
    h.write(dns.resolver.as_bytes());
    for name in targets.keys() {
        h.write(name.as_bytes());
        h.write(&[0]);
    }
    format!("{:016x}", h.0)
}

/// Caddy's spelling of a duration (`1s`, `1m30s`, `500ms`).
fn caddy_duration(d: Duration) -> String {
    humantime::format_duration(d).to_string().replace(' ', "")
}

/// The `dynamic_upstreams` of the proxy: source `a`, the name
/// `<name>.<zone>` (`name`: the placeholder of the TART's name), asked from
/// this Caddy's resolver.
fn dynamic_upstreams(name: &str, routes: &RouteSettings, dns: &DnsRoute) -> Value {
    json!({
        "source": "a",
        "name": format!("{name}.{}", dns.zone),
        "port": routes.upstream_port.to_string(),
        "refresh": caddy_duration(dns.refresh),
        "resolver": {"addresses": [dns.resolver]},
    })
}

/// The error routes of the owned subroute: the offline page for a dial to
/// [`OFFLINE_ADDRESS`], every other error raised again unchanged to the
/// server's own handling.
fn error_routes(ids: &Ids, name: &str) -> Value {
    let mut page = offline_route(ids, name);
    page["match"] =
        json!([{"vars": {"{http.reverse_proxy.upstream.host}": [OFFLINE_ADDRESS.to_string()]}}]);
    json!({"routes": [
        page,
        {"handle": [{"handler": "error", "status_code": "{http.error.status_code}"}]},
    ]})
}

/// The fallback map (`<prefix>-bucket-0`): each name (read from `name`, the
/// matcher's capture) to its last-written address, into
/// `{<stem>_upstream}`, which only the proxy's static upstream reads.
fn fallback_map<'a>(stable: &'a Targets, ids: &Ids, name: &str) -> MapOut<'a> {
    MapOut {
        id: ids.bucket_id(0),
        handler: "map",
        source: name.to_string(),
        destinations: [ids.fallback_placeholder()],
        mappings: stable
            .iter()
            .map(|(name, target)| MappingOut {
                input: name,
                outputs: [Cow::Borrowed(target.as_lookup())],
            })
            .collect(),
        defaults: [""],
    }
}

/// The proxy of dns mode: `name.<zone>` looked up from the responder, the
/// fallback map's address as its static upstream.
fn dynamic_proxy(name: &str, routes: &RouteSettings, features: Features, dns: &DnsRoute) -> Value {
    let ids = Ids::new(&routes.id_prefix);
    let mut proxy = proxy_handler(&ids.fallback_placeholder(), routes, features);
    proxy["dynamic_upstreams"] = dynamic_upstreams(name, routes, dns);
    proxy
}

/// The owned route in dns mode for `stable` (from [`stable_targets`]).
pub fn route<'a>(
    stable: &'a Targets,
    routes: &RouteSettings,
    features: Features,
    dns: &DnsRoute,
) -> OwnedRoute<'a> {
    match routes.mode {
        RouteMode::Path => path_route(stable, routes, features, dns),
        RouteMode::Host => host_route(stable, routes, features, dns),
    }
}

/// The owned route in dns mode, path mode. No per-request scan of the
/// names: Caddy's `host` matcher binary-searches lists of over 100 hosts,
/// so the route asks *it* whether a name is routed.
///
/// 1. The matcher captures the first path segment (`[a-z0-9-]+`) and
///    whether a slash follows it.
/// 2. The fallback map (`<prefix>-bucket-0`) maps each name to its
///    last-written address. Nothing reads it on the hit path: the proxy's
///    static upstream reads it straight (`{<stem>_upstream}`), which Caddy
///    does only when the lookup fails.
/// 3. `vars` (`<prefix>-rev`) keeps the request's own `Host` (with its
///    port) and the revision stamp; everything else reads the name straight
///    from the matcher's capture (`{http.regexp.<stem>.1}`, which no later
///    matcher or rewrite changes).
/// 4. A `headers` handler sets `Host` to `<name>.<zone>`. The subroute then
///    has three routes, and every request takes exactly one of them, each
///    putting the request's own `Host` back first:
///    - the `host`s of every routed name, followed by a slash: strip the
///      prefix and proxy (terminal: the hit path passes one route);
///    - the same `host`s without the slash: redirect to `/<name>/`;
///    - anything else (an unknown name): only the `Host` back, and the
///      request falls through to the site untouched.
///
/// Measured at 10,000 TARTs on Caddy 2.11.7 (BENCHMARKS.md): a route of
/// the subroute costs every request that passes it, so the hit path now
/// passes one instead of four (about 5 µs of Caddy CPU less per request).
fn path_route<'a>(
    stable: &'a Targets,
    routes: &RouteSettings,
    features: Features,
    dns: &DnsRoute,
) -> OwnedRoute<'a> {
    let ids = Ids::new(&routes.id_prefix);
    let stem = &ids.stem;
    let name_ph = ids.capture(1);
    let zone = dns.zone.trim_end_matches('.');
    let fallback = fallback_map(stable, &ids, &name_ph);
    let vars = json!({
        "@id": ids.rev,
        "handler": "vars",
        &ids.host_var: "{http.request.hostport}",
        &ids.rev_var: revision(stable, routes, features, dns),
    });
    let set_host =
        |host: String| json!({"handler": "headers", "request": {"set": {"Host": [host]}}});
    // Targets is a BTreeMap: the hosts come sorted, as Caddy keeps them.
    let hosts: Vec<String> = stable.keys().map(|n| format!("{n}.{zone}")).collect();
    let restore = set_host(format!("{{http.vars.{}}}", ids.host_var));
    let mut proxy = dynamic_proxy(&name_ph, routes, features, dns);
    proxy["headers"] = forwarded_prefix(&name_ph);
    let slash = ids.capture(2);
    let subroutes = vec![
        json!({
            "match": [{"host": &hosts, "vars": {slash: ["/"]}}],
            "handle": [restore, strip_prefix(&name_ph), proxy],
            "terminal": true,
        }),
        json!({
            "match": [{"host": hosts}],
            "handle": [restore, redirect_handler(&name_ph)],
            "terminal": true,
        }),
        json!({"handle": [restore]}),
    ];
    let matcher = json!({
        "host": [routes.domain],
        "path_regexp": {"name": stem, "pattern": "^/([a-z0-9-]+)(/|$)"},
    });
    let before = vec![
        HandlerOut::Map(fallback),
        HandlerOut::Other(vars),
        HandlerOut::Other(set_host(format!("{name_ph}.{zone}"))),
    ];
    assemble(&ids, routes, matcher, before, subroutes, &name_ph)
}

/// The owned route from the matcher set of its TARTs, the handlers before
/// the subroute and the subroute's routes; with the public page on, its
/// matcher set and its route (last) are added. The subroute's errors are
/// the offline page.
fn assemble<'a>(
    ids: &Ids,
    routes: &RouteSettings,
    matcher: Value,
    mut handle: Vec<HandlerOut<'a>>,
    mut subroutes: Vec<Value>,
    name: &str,
) -> OwnedRoute<'a> {
    let mut matchers = vec![matcher];
    if let Some(p) = &routes.public {
        matchers.push(public::matcher(p, routes));
        subroutes.push(public::subroute(p, routes));
    }
    handle.push(HandlerOut::Other(
        json!({"handler": "subroute", "routes": subroutes, "errors": error_routes(ids, name)}),
    ));
    OwnedRoute {
        id: ids.route.clone(),
        matchers,
        handle,
    }
}

/// The owned route in dns mode, host mode: the request's `Host` already is
/// `<name>.<domain>`, so a `host` matcher listing every routed name decides
/// (binary-searched, no map scanned on the hit path) with no rewrite.
///
/// 1. The matcher captures the first label of `Host` (`[a-z0-9-]+`) under
///    `*.<domain>`.
/// 2. The fallback map and `vars` (`<prefix>-rev`, the revision stamp), as
///    in path mode.
/// 3. The subroute's one route for TARTs matches the `host`s of every
///    routed name and proxies; an unknown name matches nothing and falls
///    through to the site. The offline page is an error route.
fn host_route<'a>(
    stable: &'a Targets,
    routes: &RouteSettings,
    features: Features,
    dns: &DnsRoute,
) -> OwnedRoute<'a> {
    let ids = Ids::new(&routes.id_prefix);
    let stem = &ids.stem;
    let name_ph = ids.capture(1);
    let domain = &routes.domain;
    let vars = json!({
        "@id": ids.rev,
        "handler": "vars",
        &ids.rev_var: revision(stable, routes, features, dns),
    });
    let hosts: Vec<String> = stable.keys().map(|n| format!("{n}.{domain}")).collect();
    let subroutes = vec![json!({
        "match": [{"host": hosts}],
        "handle": [dynamic_proxy(&name_ph, routes, features, dns)],
        "terminal": true,
    })];
    let escaped = domain.replace('.', "\\.");
    let matcher = json!({
        "host": [format!("*.{domain}")],
        "header_regexp": {"Host": {"name": stem, "pattern": format!("^([a-z0-9-]+)\\.{escaped}(?::[0-9]+)?$")}},
    });
    let before = vec![
        HandlerOut::Map(fallback_map(stable, &ids, &name_ph)),
        HandlerOut::Other(vars),
    ];
    assemble(&ids, routes, matcher, before, subroutes, &name_ph)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Settings;
    use crate::layout::RouteForm;

    fn routes() -> RouteSettings {
        let toml = "[headscale]\nurl = \"http://127.0.0.1:1\"\napi_key = \"hskey-api-test\"\n\
             [routes]\ndomain = \"tart.example.org\"\nresolve = \"dns\"\n";
        Settings::from_sources(Some(toml), &|_: &str| None, None)
            .unwrap()
            .routes
    }

    fn dns() -> DnsRoute {
        DnsRoute {
            zone: "tart-sync.internal.".into(),
            refresh: Duration::from_secs(1),
            resolver: "udp/127.0.0.1:5380".into(),
        }
    }

    fn table(entries: &[(&str, Option<&str>)]) -> Targets {
        entries
            .iter()
            .map(|(n, t)| {
                let t = t.map_or(Target::Offline, |d| Target::Dial(d.to_string()));
                (n.to_string(), t)
            })
            .collect()
    }

    #[test]
    fn moves_and_flaps_change_nothing_written_names_do() {
        let first = table(&[("a", Some("100.64.0.1:80")), ("b", None)]);
        let written = stable_targets(&first, &Targets::new(), 80);
        assert_eq!(written["b"], Target::Dial("255.255.255.255:80".into()));
        let r0 = revision(&written, &routes(), Features::default(), &dns());
        // a moves and goes offline, b comes online: the same table, the same stamp.
        let later = table(&[("a", None), ("b", Some("100.64.0.9:80"))]);
        let again = stable_targets(&later, &written, 80);
        assert_eq!(again, written);
        assert_eq!(revision(&again, &routes(), Features::default(), &dns()), r0);
        // A new name: a new stamp, the others keep their outputs.
        let more = table(&[("a", None), ("b", None), ("c", Some("100.64.0.3:80"))]);
        let with_c = stable_targets(&more, &written, 80);
        assert_eq!(with_c["a"], written["a"]);
        assert_ne!(
            revision(&with_c, &routes(), Features::default(), &dns()),
            r0
        );
        // When a write happens anyway, the fallbacks are refreshed: a now,
        // b's last known address kept while it is offline, c new.
        let more = table(&[("a", Some("100.64.0.8:80")), ("b", None), ("c", None)]);
        let fresh = fresh_targets(&more, &written, 80);
        assert_eq!(fresh["a"], Target::Dial("100.64.0.8:80".into()));
        assert_eq!(fresh["b"], written["b"]);
        assert_eq!(fresh["c"], Target::Dial("255.255.255.255:80".into()));
        // Another resolver for this Caddy: a new stamp.
        let other = DnsRoute {
            resolver: "udp/100.64.0.5:5380".into(),
            ..dns()
        };
        assert_ne!(
            revision(&written, &routes(), Features::default(), &other),
            r0
        );
    }

    /// The `reverse_proxy` handler anywhere in the subroute's routes.
    fn proxy_of(sub: &Value) -> Value {
        sub["routes"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|r| r["handle"].as_array().unwrap())
            .find(|h| h["handler"] == "reverse_proxy")
            .unwrap()
            .clone()
    }

    #[test]
    fn the_proxy_resolves_through_the_responder_and_errors_become_the_offline_page() {
        let written = stable_targets(&table(&[("a", Some("100.64.0.1:80"))]), &Targets::new(), 80);
        let dial = "{tart_sync_upstream}";
        let name = "{http.regexp.tart_sync.1}";
        for mode in ["path", "host"] {
            let mut routes = routes();
            routes.mode = if mode == "path" {
                RouteMode::Path
            } else {
                RouteMode::Host
            };
            let route = route(&written, &routes, Features::default(), &dns());
            let v = serde_json::to_value(&route).unwrap();
            let text = v.to_string();
            let sub = v["handle"].as_array().unwrap().last().unwrap();
            // The offline page is only an error route: no route of the subroute answers 503.
            assert!(
                !sub["routes"].to_string().contains("\"status_code\":503"),
                "{mode}: {sub}"
            );
            let proxy = proxy_of(sub);
            assert_eq!(
                proxy["dynamic_upstreams"]["name"],
                format!("{name}.tart-sync.internal.")
            );
            assert_eq!(
                proxy["dynamic_upstreams"]["resolver"]["addresses"][0],
                "udp/127.0.0.1:5380"
            );
            assert_eq!(proxy["upstreams"][0]["dial"], dial, "{mode}");
            // No index or bucket maps: one map, the fallback.
            let maps = v["handle"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|h| h["handler"] == "map")
                .count();
            assert_eq!(maps, 1, "{mode}");
            let errors = sub["errors"]["routes"].as_array().unwrap();
            assert_eq!(errors.len(), 2);
            assert_eq!(errors[0]["handle"][0]["status_code"], 503);
            assert_eq!(
                errors[0]["match"][0]["vars"]["{http.reverse_proxy.upstream.host}"][0],
                "255.255.255.255"
            );
            // The route reads back as itself, with its fallback table.
            let live = RouteForm::parse(&text).unwrap();
            assert!(live.matches(&route), "{mode}");
            assert_eq!(live.targets(), written);
        }
    }

    #[test]
    fn in_path_mode_caddy_asks_its_host_matcher_not_a_map_whether_a_name_is_routed() {
        // 150 names (over 100: Caddy binary-searches the host list).
        let fleet: Targets = (0..150)
            .map(|i| {
                (
                    format!("t{i:03}"),
                    Target::Dial(format!("100.64.0.{}:80", i + 1)),
                )
            })
            .collect();
        let owned = route(&fleet, &routes(), Features::default(), &dns());
        let v = serde_json::to_value(&owned).unwrap();
        let handle = v["handle"].as_array().unwrap();
        let handlers: Vec<&str> = handle
            .iter()
            .map(|h| h["handler"].as_str().unwrap())
            .collect();
        // One map only (the fallback, read lazily), no index, no buckets.
        assert_eq!(handlers, ["map", "vars", "headers", "subroute"]);
        assert_eq!(handle[0]["destinations"][0], "{tart_sync_upstream}");
        assert_eq!(handle[0]["mappings"].as_array().unwrap().len(), 150);
        assert_eq!(handle[1]["tart_sync_host"], "{http.request.hostport}");
        assert_eq!(
            handle[2]["request"]["set"]["Host"][0],
            "{http.regexp.tart_sync.1}.tart-sync.internal"
        );
        let routes_ = handle[3]["routes"].as_array().unwrap();
        let hosts: Vec<&str> = routes_[0]["match"][0]["host"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h.as_str().unwrap())
            .collect();
        assert_eq!(hosts.len(), 150);
        assert!(
            hosts.windows(2).all(|w| w[0] < w[1]),
            "sorted, as Caddy searches them"
        );
        assert_eq!(hosts[0], "t000.tart-sync.internal");
        // Three routes; every request takes exactly one, and each puts the
        // request's own Host back before anything answers it.
        assert_eq!(routes_.len(), 3);
        for r in routes_ {
            assert_eq!(
                r["handle"][0]["request"]["set"]["Host"][0],
                "{http.vars.tart_sync_host}"
            );
        }
        // A routed name followed by a slash: stripped and proxied, terminal.
        assert_eq!(
            routes_[0]["match"][0]["vars"]["{http.regexp.tart_sync.2}"],
            json!(["/"])
        );
        assert_eq!(routes_[0]["handle"][1]["handler"], "rewrite");
        assert_eq!(routes_[0]["handle"][2]["handler"], "reverse_proxy");
        assert_eq!(routes_[0]["terminal"], true);
        // Without the slash: the redirect.
        assert_eq!(
            routes_[1]["match"][0]["host"],
            routes_[0]["match"][0]["host"]
        );
        assert_eq!(routes_[1]["handle"][1]["status_code"], 308);
        assert_eq!(routes_[1]["terminal"], true);
        // Anything else only gets its Host back and falls through.
        assert!(routes_[2].get("match").is_none());
        assert_eq!(routes_[2]["handle"].as_array().unwrap().len(), 1);
        assert!(routes_[2].get("terminal").is_none());
        // The public page's route, when on, comes after the Host is back.
        let mut with_public = routes();
        with_public.public = Some(crate::config::PublicRoute {
            path: "/".into(),
            dial: "127.0.0.1:8081".into(),
        });
        let v =
            serde_json::to_value(route(&fleet, &with_public, Features::default(), &dns())).unwrap();
        assert_eq!(v["match"].as_array().unwrap().len(), 2);
        let rs = v["handle"][3]["routes"].as_array().unwrap();
        assert_eq!(rs.len(), 4);
        assert_eq!(rs[3]["match"][0]["path"], json!(["/", "/api/tarts.json"]));
    }
}
