//! Round-trip tests of `caddy_client::model` against real Caddy JSON.
//!
//! The fixtures in `tests/fixtures/adapted/` are the output of `caddy adapt`
//! on the Caddyfiles in `tests/fixtures/caddyfiles/`, produced with Caddy
//! 2.6.2 (`<name>-2.6.json`) and Caddy 2.11.7 (`<name>-2.11.json`) by
//! `tests/fixtures/generate.sh`, which runs, for every Caddyfile:
//!
//! ```sh
//! export HOME=$tmp XDG_DATA_HOME=$tmp/data XDG_CONFIG_HOME=$tmp/config
//! caddy adapt --config caddyfiles/<name>.Caddyfile --adapter caddyfile --pretty \
//!     > adapted/<name>-<version>.json
//! ```
//!
//! Caddyfiles named `v2_7plus*` use directives newer than 2.6 (`client_ip`,
//! `basic_auth`, `stream_timeout`, ...) and are adapted with 2.11 only.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use caddy_client::model::{
    validate_dial, CaddyDuration, Config, Expression, Handler, HttpApp, MatcherSet, ReverseProxy,
    Route, Server, StatusCode, Upstream,
};
use serde_json::{json, Value};

fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/adapted")
}

fn fixture_names() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(fixtures_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".json"))
        .collect();
    names.sort();
    names
}

fn raw(name: &str) -> String {
    std::fs::read_to_string(fixtures_dir().join(name)).unwrap()
}

/// Parses a fixture and checks that it round-trips, both from a string and
/// from a `Value`.
fn load(name: &str) -> Config {
    let text = raw(name);
    let original: Value = serde_json::from_str(&text).unwrap();
    let config: Config = serde_json::from_str(&text).unwrap();
    assert_eq!(
        serde_json::to_value(&config).unwrap(),
        original,
        "{name}: to_value"
    );
    let again: Value = serde_json::from_str(&serde_json::to_string(&config).unwrap()).unwrap();
    assert_eq!(again, original, "{name}: to_string");
    let from_value: Config = serde_json::from_value(original).unwrap();
    assert_eq!(from_value, config, "{name}: from_value");
    config
}

fn roundtrip<T: serde::Serialize + serde::de::DeserializeOwned>(value: &Value) -> T {
    let typed: T = serde_json::from_value(value.clone()).unwrap();
    assert_eq!(&serde_json::to_value(&typed).unwrap(), value);
    typed
}

fn every_fixture_pair(base: &str) -> Vec<Config> {
    ["2.6", "2.11"]
        .iter()
        .map(|v| load(&format!("{base}-{v}.json")))
        .collect()
}

/// The handlers of every route in the config.
fn all_handlers(config: &Config) -> Vec<&Handler> {
    config
        .all_routes()
        .into_iter()
        .flat_map(|r| r.handle.iter())
        .collect()
}

fn all_matcher_sets(config: &Config) -> Vec<&MatcherSet> {
    fn push<'a>(set: &'a MatcherSet, out: &mut Vec<&'a MatcherSet>) {
        out.push(set);
        for inner in set.not.iter().flatten() {
            push(inner, out);
        }
    }
    let mut out = Vec::new();
    for route in config.all_routes() {
        for set in &route.matchers {
            push(set, &mut out);
        }
    }
    out
}

fn reverse_proxies(config: &Config) -> Vec<&ReverseProxy> {
    all_handlers(config)
        .into_iter()
        .filter_map(|h| match h {
            Handler::ReverseProxy(rp) => Some(rp),
            _ => None,
        })
        .collect()
}

fn proxy_for_dial<'a>(config: &'a Config, dial: &str) -> &'a ReverseProxy {
    reverse_proxies(config)
        .into_iter()
        .find(|rp| rp.dials().contains(&dial))
        .unwrap_or_else(|| panic!("no reverse_proxy to {dial}"))
}

const SECOND: i64 = 1_000_000_000;

#[test]
fn every_fixture_round_trips_and_is_typed() {
    let names = fixture_names();
    assert!(names.len() >= 15, "fixtures missing: {names:?}");
    let modelled_handlers = [
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
    // The only handlers and matchers in the fixtures that are not modelled.
    let unmodelled_handlers = ["authentication", "request_body", "templates"];
    let unmodelled_matchers = ["file"];
    for name in &names {
        let config = load(name);
        assert!(config.http().is_some(), "{name}: no http app");
        assert!(
            config.extra.is_empty(),
            "{name}: root extra {:?}",
            config.extra
        );
        for handler in all_handlers(&config) {
            if let Handler::Other(map) = handler {
                let handler_name = map["handler"].as_str().unwrap();
                assert!(
                    !modelled_handlers.contains(&handler_name),
                    "{name}: {handler_name} not typed"
                );
                assert!(
                    unmodelled_handlers.contains(&handler_name),
                    "{name}: {handler_name}"
                );
            } else if !matches!(handler, Handler::Vars(_)) {
                assert!(
                    handler.extra().is_empty(),
                    "{name}: {} extra {:?}",
                    handler.name(),
                    handler.extra()
                );
            }
        }
        for set in all_matcher_sets(&config) {
            for key in set.extra.keys() {
                assert!(
                    unmodelled_matchers.contains(&key.as_str()),
                    "{name}: matcher {key} not typed"
                );
            }
        }
        for route in config.all_routes() {
            assert!(
                route.extra.is_empty(),
                "{name}: route extra {:?}",
                route.extra
            );
        }
        for rp in reverse_proxies(&config) {
            assert!(
                !rp.upstreams.is_empty() || rp.dynamic_upstreams.is_some(),
                "{name}"
            );
            for u in &rp.upstreams {
                assert!(u.extra.is_empty(), "{name}: upstream extra {:?}", u.extra);
            }
            if let Some(hc) = &rp.health_checks {
                assert!(hc.extra.is_empty());
                assert!(
                    hc.active.as_ref().is_none_or(|a| a.extra.is_empty()),
                    "{name}: {hc:?}"
                );
                assert!(
                    hc.passive.as_ref().is_none_or(|p| p.extra.is_empty()),
                    "{name}: {hc:?}"
                );
            }
            if let Some(t) = &rp.transport {
                assert!(t.extra.is_empty(), "{name}: transport extra {:?}", t.extra);
            }
        }
        for server in config.http().unwrap().servers.values() {
            assert!(
                server.extra.is_empty(),
                "{name}: server extra {:?}",
                server.extra
            );
        }
    }
}

#[test]
fn reverse_proxy_fixture_is_typed() {
    for config in every_fixture_pair("reverse_proxy") {
        let rp = proxy_for_dial(&config, "10.0.0.1:8080");
        assert_eq!(rp.dials(), ["10.0.0.1:8080", "10.0.0.2:8080"]);
        assert_eq!(rp.flush_interval, Some(CaddyDuration::Nanos(-1)));

        let hc = rp.health_checks.as_ref().unwrap();
        let active = hc.active.as_ref().unwrap();
        assert_eq!(active.uri.as_deref(), Some("/healthz"));
        assert_eq!(active.port, Some(9090));
        assert_eq!(active.interval, Some(CaddyDuration::Nanos(10 * SECOND)));
        assert_eq!(
            active.interval.as_ref().unwrap().to_std(),
            Some(Duration::from_secs(10))
        );
        assert_eq!(
            active.timeout.as_ref().unwrap().to_std(),
            Some(Duration::from_secs(2))
        );
        assert_eq!(active.expect_status, Some(200));
        assert_eq!(active.expect_body.as_deref(), Some("ok"));
        assert_eq!(
            active.headers.as_ref().unwrap()["Host"],
            ["backend.internal"]
        );
        let passive = hc.passive.as_ref().unwrap();
        assert_eq!(
            passive.fail_duration,
            Some(CaddyDuration::Nanos(30 * SECOND))
        );
        assert_eq!(passive.max_fails, Some(3));
        assert_eq!(passive.unhealthy_status, Some(vec![5]));
        assert_eq!(passive.unhealthy_request_count, Some(100));
        assert_eq!(
            passive.unhealthy_latency,
            Some(CaddyDuration::Nanos(5 * SECOND))
        );

        let lb = rp.load_balancing.as_ref().unwrap();
        assert_eq!(
            lb.selection_policy.as_ref().unwrap().policy.as_deref(),
            Some("round_robin")
        );
        assert_eq!(lb.try_duration, Some(CaddyDuration::Nanos(5 * SECOND)));
        assert_eq!(
            lb.try_interval.as_ref().unwrap().to_std(),
            Some(Duration::from_millis(250))
        );

        let transport = rp.transport.as_ref().unwrap();
        assert_eq!(transport.protocol.as_deref(), Some("http"));
        assert_eq!(
            transport.dial_timeout,
            Some(CaddyDuration::Nanos(3 * SECOND))
        );
        assert_eq!(
            transport.response_header_timeout,
            Some(CaddyDuration::Nanos(30 * SECOND))
        );
        assert_eq!(transport.max_conns_per_host, Some(64));
        assert_eq!(
            transport.versions.as_deref(),
            Some(&["h2c".to_owned(), "2".to_owned()][..])
        );
        let keep_alive = transport.keep_alive.as_ref().unwrap();
        assert_eq!(keep_alive.max_idle_conns, Some(32));
        assert_eq!(
            keep_alive.idle_timeout,
            Some(CaddyDuration::Nanos(90 * SECOND))
        );

        let headers = rp.headers.as_ref().unwrap();
        let request = headers.request.as_ref().unwrap();
        assert_eq!(
            request.set.as_ref().unwrap()["Host"],
            ["{http.reverse_proxy.upstream.hostport}"]
        );
        assert_eq!(
            request.delete.as_deref(),
            Some(&["X-Forwarded-Proto".to_owned()][..])
        );
        let response = headers.response.as_ref().unwrap();
        assert_eq!(response.add.as_ref().unwrap()["X-Proxy"], ["caddy"]);
        assert_eq!(response.delete.as_deref(), Some(&["Server".to_owned()][..]));

        // TLS upstream with a header selection policy and handle_response.
        let rp = proxy_for_dial(&config, "backend.example.net:443");
        let tls = rp.transport.as_ref().unwrap().tls.as_ref().unwrap();
        assert_eq!(tls.server_name.as_deref(), Some("backend.example.net"));
        assert_eq!(tls.insecure_skip_verify, Some(true));
        assert_eq!(rp.transport.as_ref().unwrap().read_buffer_size, Some(8192));
        let policy = rp
            .load_balancing
            .as_ref()
            .unwrap()
            .selection_policy
            .as_ref()
            .unwrap();
        assert_eq!(policy.policy.as_deref(), Some("header"));
        assert_eq!(policy.extra["field"], "X-Upstream");
        let handle_response = &rp.handle_response.as_ref().unwrap()[0];
        assert_eq!(handle_response.matcher, Some(json!({"status_code": [5]})));
        let Handler::StaticResponse(sr) = &handle_response.routes[0].handle[0] else {
            panic!("handle_response route is not typed")
        };
        assert_eq!(sr.status_code, Some(StatusCode::Code(502)));
        assert_eq!(sr.body.as_deref(), Some("upstream failed"));

        // A unix socket upstream in a second server.
        let http = config.http().unwrap();
        let (name, srv1) = http.server_listening_on(":8081").unwrap();
        assert_eq!(name, "srv1");
        assert_eq!(
            srv1.routes[0].upstream_dials(),
            ["unix//run/app.sock", "localhost:9001"]
        );
        assert!(srv1.routes[0]
            .upstream_dials()
            .iter()
            .all(|d| validate_dial(d).is_ok()));
    }
}

#[test]
fn routing_fixture_is_typed() {
    for config in every_fixture_pair("routing") {
        let http = config.http().unwrap();
        let server = &http.servers["srv0"];
        assert_eq!(
            server.hosts(),
            ["static.example.com", "example.com", "www.example.com"]
        );
        let site = server.route_for_host("WWW.example.com").unwrap();
        assert_eq!(site.terminal, Some(true));
        let names: Vec<&str> = config
            .all_routes()
            .iter()
            .flat_map(|r| r.handle.iter())
            .map(Handler::name)
            .collect();
        for expected in [
            "map",
            "vars",
            "headers",
            "request_body",
            "static_response",
            "rewrite",
            "encode",
            "subroute",
            "file_server",
            "templates",
            "reverse_proxy",
        ] {
            assert!(
                names.contains(&expected),
                "{expected} missing from {names:?}"
            );
        }

        let handlers = all_handlers(&config);
        let map = handlers
            .iter()
            .find_map(|h| {
                if let Handler::Map(m) = h {
                    Some(m)
                } else {
                    None
                }
            })
            .unwrap();
        assert_eq!(map.source.as_deref(), Some("{http.request.host}"));
        assert_eq!(
            map.destinations.as_ref().unwrap(),
            &["{backend}", "{is_www}"]
        );
        assert_eq!(map.defaults.as_ref().unwrap(), &["app0", "no"]);
        let mappings = map.mappings.as_ref().unwrap();
        assert_eq!(mappings[1].input.as_deref(), Some("www.example.com"));
        assert_eq!(
            mappings[1].outputs.as_ref().unwrap(),
            &[json!("app2"), json!("yes")]
        );

        assert!(handlers
            .iter()
            .any(|h| matches!(h, Handler::Vars(v) if v.get("region") == Some(&json!("eu")))));
        assert!(handlers.iter().any(
            |h| matches!(h, Handler::Vars(v) if v.get("root") == Some(&json!("/srv/static")))
        ));

        let deferred = handlers
            .iter()
            .find_map(|h| match h {
                Handler::Headers(hd) if hd.response.as_ref()?.deferred == Some(true) => {
                    hd.response.as_ref()
                }
                _ => None,
            })
            .unwrap();
        assert_eq!(
            deferred.set.as_ref().unwrap()["Strict-Transport-Security"],
            ["max-age=31536000"]
        );
        assert_eq!(
            deferred.add.as_ref().unwrap()["Link"],
            ["</style.css>; rel=preload"]
        );
        let require = handlers
            .iter()
            .find_map(|h| match h {
                Handler::Headers(hd) => hd.response.as_ref()?.require.as_ref(),
                _ => None,
            })
            .unwrap();
        assert_eq!(require, &json!({"headers": {"Cache-Control": null}}));

        let redirects: Vec<(&str, Option<u16>)> = handlers
            .iter()
            .filter_map(|h| match h {
                Handler::StaticResponse(sr) => Some((
                    sr.headers.as_ref()?.get("Location")?[0].as_str(),
                    sr.status_code.as_ref()?.as_u16(),
                )),
                _ => None,
            })
            .collect();
        assert!(redirects.contains(&("/new", Some(301))), "{redirects:?}");
        assert!(redirects.contains(&("https://other.example.com{http.request.uri}", Some(301))));

        let rewrites: Vec<_> = handlers
            .iter()
            .filter_map(|h| {
                if let Handler::Rewrite(r) = h {
                    Some(r)
                } else {
                    None
                }
            })
            .collect();
        assert!(rewrites
            .iter()
            .any(|r| r.uri.as_deref() == Some("/app/index.html")));
        assert!(rewrites
            .iter()
            .any(|r| r.strip_path_prefix.as_deref() == Some("/legacy")));
        assert!(rewrites
            .iter()
            .any(|r| r.strip_path_prefix.as_deref() == Some("/api")));
        let substring = rewrites
            .iter()
            .find_map(|r| r.uri_substring.as_ref())
            .unwrap();
        assert_eq!(substring[0].find.as_deref(), Some("/foo"));
        assert_eq!(substring[0].replace.as_deref(), Some("/bar"));

        let encode = handlers
            .iter()
            .find_map(|h| {
                if let Handler::Encode(e) = h {
                    Some(e)
                } else {
                    None
                }
            })
            .unwrap();
        assert_eq!(encode.prefer.as_ref().unwrap(), &["gzip", "zstd"]);
        assert!(encode.encodings.as_ref().unwrap().contains_key("zstd"));

        let file_servers: Vec<_> = handlers
            .iter()
            .filter_map(|h| {
                if let Handler::FileServer(f) = h {
                    Some(f)
                } else {
                    None
                }
            })
            .collect();
        assert!(file_servers.iter().any(|f| f.browse.is_some()));
        let precompressed = file_servers
            .iter()
            .find(|f| f.precompressed.is_some())
            .unwrap();
        assert_eq!(
            precompressed.precompressed_order.as_ref().unwrap(),
            &["zstd", "br", "gzip"]
        );
        assert_eq!(
            precompressed.index_names.as_ref().unwrap(),
            &["index.html", "index.htm"]
        );
        assert!(precompressed
            .hide
            .as_ref()
            .unwrap()
            .contains(&".git".to_owned()));

        assert!(handlers
            .iter()
            .any(|h| matches!(h, Handler::StaticResponse(sr) if sr.close == Some(true))));
        assert!(config.all_routes().iter().any(|r| r.group.is_some()));

        let handle_path = config
            .all_routes()
            .into_iter()
            .find(|r| r.paths() == ["/api/*"])
            .unwrap();
        assert_eq!(handle_path.upstream_dials(), ["localhost:8080"]);
    }
}

#[test]
fn matchers_fixture_is_typed() {
    for config in every_fixture_pair("matchers") {
        let sets = all_matcher_sets(&config);
        let find = |f: &dyn Fn(&MatcherSet) -> bool| -> &MatcherSet {
            sets.iter().copied().find(|s| f(s)).unwrap()
        };

        find(&|s| {
            s.host
                .as_ref()
                .is_some_and(|h| h == &["a.example.com", "b.example.com"])
        });
        find(&|s| s.path.as_ref().is_some_and(|p| p == &["/a/*", "/b/*"]));
        let re = find(&|s| s.path_regexp.is_some())
            .path_regexp
            .as_ref()
            .unwrap();
        assert_eq!(re.name.as_deref(), Some("static"));
        assert_eq!(re.pattern.as_deref(), Some("\\.(css|js|png)$"));
        find(&|s| s.method.as_ref().is_some_and(|m| m == &["GET", "HEAD"]));
        let header = find(&|s| {
            s.header
                .as_ref()
                .is_some_and(|h| h.contains_key("X-Custom"))
        });
        assert_eq!(
            header.header.as_ref().unwrap()["X-Custom"],
            Some(vec!["value".to_owned()])
        );
        let header_re = find(&|s| s.header_regexp.is_some())
            .header_regexp
            .as_ref()
            .unwrap();
        assert_eq!(header_re["User-Agent"].pattern.as_deref(), Some("(?i)bot"));
        let query = find(&|s| s.query.is_some()).query.as_ref().unwrap();
        assert_eq!(query["debug"], ["1"]);
        assert_eq!(query["mode"], ["*"]);
        assert_eq!(
            find(&|s| s.protocol.is_some()).protocol.as_deref(),
            Some("https")
        );
        let remote = find(&|s| s.remote_ip.is_some()).remote_ip.as_ref().unwrap();
        assert_eq!(
            remote.ranges.as_ref().unwrap(),
            &["10.0.0.0/8", "192.168.1.1"]
        );
        let not = find(&|s| s.not.is_some()).not.as_ref().unwrap();
        assert_eq!(not.len(), 2);
        assert_eq!(not[0].path.as_ref().unwrap(), &["/public/*"]);
        assert_eq!(not[1].method.as_ref().unwrap(), &["POST"]);
        let expression = find(&|s| s.expression.is_some())
            .expression
            .as_ref()
            .unwrap();
        assert!(matches!(expression, Expression::Text(_)));
        assert!(expression
            .expr()
            .unwrap()
            .contains("{http.request.method} == \"GET\""));
        let vars = find(&|s| s.vars.is_some()).vars.as_ref().unwrap();
        assert_eq!(vars["{custom}"], ["yes"]);
        let vars_re = find(&|s| s.vars_regexp.is_some())
            .vars_regexp
            .as_ref()
            .unwrap();
        assert_eq!(vars_re["{custom}"].pattern.as_deref(), Some("^y"));
        let combined = find(&|s| s.method.as_ref().is_some_and(|m| m == &["PUT"]));
        assert_eq!(combined.path.as_ref().unwrap(), &["/combo/*"]);
        assert!(combined
            .header
            .as_ref()
            .unwrap()
            .contains_key("Content-Type"));
    }
}

#[test]
fn global_fixture_is_typed() {
    for config in every_fixture_pair("global") {
        let admin = config.admin.as_ref().unwrap();
        assert_eq!(admin.listen.as_deref(), Some("localhost:2019"));
        assert_eq!(
            admin.origins.as_ref().unwrap(),
            &["localhost:2019", "127.0.0.1:2019"]
        );
        assert_eq!(config.storage.as_ref().unwrap()["module"], "file_system");
        assert_eq!(
            config.logging.as_ref().unwrap()["logs"]["default"]["level"],
            "INFO"
        );
        assert!(config.app("tls").is_some());

        let http = config.http().unwrap();
        assert_eq!(http.http_port, Some(8080));
        assert_eq!(http.https_port, Some(8443));
        assert_eq!(http.grace_period, Some(CaddyDuration::Nanos(10 * SECOND)));
        let (_, server) = http.server_for_host("internal.example.com").unwrap();
        assert_eq!(server.listen.as_ref().unwrap(), &[":8443"]);
        assert_eq!(
            server.idle_timeout.as_ref().unwrap().to_std(),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            server.read_header_timeout,
            Some(CaddyDuration::Nanos(5 * SECOND))
        );
        assert_eq!(server.protocols.as_ref().unwrap(), &["h1", "h2"]);
        assert!(server.logs.is_some());

        let fastcgi = proxy_for_dial(&config, "unix//run/php/php-fpm.sock");
        let transport = fastcgi.transport.as_ref().unwrap();
        assert_eq!(transport.protocol.as_deref(), Some("fastcgi"));
        assert_eq!(transport.split_path.as_ref().unwrap(), &[".php"]);
        // The `file` matcher is not modelled and stays in `extra`.
        assert!(all_matcher_sets(&config)
            .iter()
            .any(|s| s.extra.contains_key("file")));
    }
}

#[test]
fn basicauth_fixture_keeps_authentication_handler() {
    for config in every_fixture_pair("basicauth") {
        let auth = all_handlers(&config)
            .into_iter()
            .find(|h| h.name() == "authentication")
            .unwrap();
        let Handler::Other(map) = auth else {
            panic!("authentication is not modelled")
        };
        assert_eq!(
            map["providers"]["http_basic"]["accounts"][0]["username"],
            "admin"
        );
        assert_eq!(proxy_for_dial(&config, "localhost:3000").upstreams.len(), 1);
    }
}

#[test]
fn caddy_2_7_plus_fixture_is_typed() {
    let config = load("v2_7plus-2.11.json");
    let sets = all_matcher_sets(&config);
    let client_ip = sets.iter().find_map(|s| s.client_ip.as_ref()).unwrap();
    assert_eq!(
        client_ip.ranges.as_ref().unwrap(),
        &["10.0.0.0/8", "fd00::/8"]
    );
    let negated = sets.iter().find_map(|s| s.not.as_ref()).unwrap();
    assert_eq!(
        negated[0]
            .client_ip
            .as_ref()
            .unwrap()
            .ranges
            .as_ref()
            .unwrap(),
        &["192.168.0.0/16"]
    );

    let rp = proxy_for_dial(&config, "localhost:8081");
    assert_eq!(
        rp.stream_close_delay.as_ref().unwrap().to_std(),
        Some(Duration::from_secs(300))
    );
    assert_eq!(
        rp.stream_timeout.as_ref().unwrap().to_std(),
        Some(Duration::from_secs(3600))
    );
    let lb = rp.load_balancing.as_ref().unwrap();
    assert_eq!(lb.retries, Some(2));
    assert_eq!(
        lb.selection_policy.as_ref().unwrap().policy.as_deref(),
        Some("least_conn")
    );
    let hc = rp.health_checks.as_ref().unwrap();
    let active = hc.active.as_ref().unwrap();
    assert_eq!(
        (active.passes, active.fails, active.expect_status),
        (Some(2), Some(3), Some(2))
    );
    assert_eq!(hc.passive.as_ref().unwrap().max_fails, Some(5));

    let server = &config.http().unwrap().servers["srv0"];
    assert_eq!(
        server.client_ip_headers.as_ref().unwrap(),
        &["X-Forwarded-For", "X-Real-IP"]
    );
    assert_eq!(server.trusted_proxies.as_ref().unwrap()["source"], "static");
    assert!(all_handlers(&config)
        .iter()
        .any(|h| h.name() == "authentication"));
}

/// The first route of the first server of a fixture.
fn first_route(config: &Config) -> &Route {
    &config.http().unwrap().servers["srv0"].routes[0]
}

#[test]
fn reverse_proxy_path_builder_matches_caddy_adapt() {
    let built = Route::reverse_proxy_path("/api", "localhost:8080");
    let expected = json!({
        "match": [{"path": ["/api/*"]}],
        "handle": [{"handler": "subroute", "routes": [
            {"handle": [{"handler": "rewrite", "strip_path_prefix": "/api"}]},
            {"handle": [{"handler": "reverse_proxy", "upstreams": [{"dial": "localhost:8080"}]}]}
        ]}]
    });
    assert_eq!(serde_json::to_value(&built).unwrap(), expected);
    for config in every_fixture_pair("builder_path") {
        assert_eq!(first_route(&config), &built);
        assert_eq!(
            serde_json::to_value(first_route(&config)).unwrap(),
            expected
        );
    }
    for prefix in ["/api/", "/api/*", "api"] {
        assert_eq!(
            Route::reverse_proxy_path(prefix, "localhost:8080"),
            built,
            "{prefix}"
        );
    }
}

#[test]
fn reverse_proxy_host_builder_matches_caddy_adapt() {
    let built = Route::reverse_proxy_host("app.example.com", "localhost:3000");
    assert_eq!(
        serde_json::to_value(&built).unwrap(),
        json!({
            "match": [{"host": ["app.example.com"]}],
            "handle": [{"handler": "reverse_proxy", "upstreams": [{"dial": "localhost:3000"}]}],
            "terminal": true
        })
    );
    for config in every_fixture_pair("builder_host") {
        // `caddy adapt` wraps the site's handlers in a subroute; the builder
        // uses the handler directly, which is equivalent.
        let adapted = first_route(&config);
        assert_eq!(adapted.matchers, built.matchers);
        assert_eq!(adapted.terminal, built.terminal);
        let Handler::Subroute(sub) = &adapted.handle[0] else {
            panic!("expected a subroute")
        };
        assert_eq!(sub.routes.len(), 1);
        assert_eq!(sub.routes[0].handle, built.handle);
        assert_eq!(
            Route::new()
                .with_handler(Handler::subroute(vec![
                    Route::new().with_handler(ReverseProxy::to("localhost:3000"))
                ]))
                .with_match(MatcherSet::host(["app.example.com"]))
                .terminal(),
            *adapted
        );
    }
}

#[test]
fn small_builders() {
    let route = Route::reverse_proxy_path("/rhodes", "100.64.0.1:80").with_id("rhodes");
    let json = serde_json::to_value(&route).unwrap();
    assert_eq!(json["@id"], "rhodes");
    assert_eq!(route.id().as_deref(), Some("rhodes"));
    assert_eq!(route.with_id(7).id().as_deref(), Some("7"));

    assert_eq!(
        serde_json::to_value(Handler::static_response(404, "not here")).unwrap(),
        json!({"handler": "static_response", "status_code": 404, "body": "not here"})
    );
    assert_eq!(
        serde_json::to_value(Handler::redirect("/new", 301)).unwrap(),
        json!({"handler": "static_response", "status_code": 301, "headers": {"Location": ["/new"]}})
    );
    assert_eq!(
        serde_json::to_value(ReverseProxy::to_all(["a:1", "b:2"])).unwrap(),
        json!({"upstreams": [{"dial": "a:1"}, {"dial": "b:2"}]})
    );
    assert_eq!(
        serde_json::to_value(Handler::from(ReverseProxy::to("a:1").with_upstream("b:2"))).unwrap(),
        json!({"handler": "reverse_proxy", "upstreams": [{"dial": "a:1"}, {"dial": "b:2"}]})
    );
    assert_eq!(
        serde_json::to_value(
            MatcherSet::host(["a.example.com"])
                .and_path("/x/*")
                .and_method("GET")
        )
        .unwrap(),
        json!({"host": ["a.example.com"], "path": ["/x/*"], "method": ["GET"]})
    );
    assert_eq!(
        serde_json::to_value(MatcherSet::not(vec![MatcherSet::client_ip(["10.0.0.0/8"])])).unwrap(),
        json!({"not": [{"client_ip": {"ranges": ["10.0.0.0/8"]}}]})
    );
    assert_eq!(
        serde_json::to_value(MatcherSet::remote_ip(["::1"])).unwrap(),
        json!({"remote_ip": {"ranges": ["::1"]}})
    );
    assert_eq!(
        serde_json::to_value(MatcherSet::path_regexp(Some("img"), "\\.png$")).unwrap(),
        json!({"path_regexp": {"name": "img", "pattern": "\\.png$"}})
    );
    assert_eq!(
        serde_json::to_value(MatcherSet::expression("{method} == 'GET'")).unwrap(),
        json!({"expression": "{method} == 'GET'"})
    );
    assert_eq!(
        serde_json::to_value(Handler::vars([("root", "/srv")])).unwrap(),
        json!({"handler": "vars", "root": "/srv"})
    );
    assert_eq!(
        serde_json::to_value(Handler::set_response_header("X-A", "b")).unwrap(),
        json!({"handler": "headers", "response": {"set": {"X-A": ["b"]}}})
    );
    assert_eq!(
        serde_json::to_value(Route::static_response_host("a.example.com", 200, "hi")).unwrap(),
        json!({"match": [{"host": ["a.example.com"]}], "handle": [{"handler": "static_response", "status_code": 200, "body": "hi"}], "terminal": true})
    );

    let app = HttpApp::default().with_server(
        "srv0",
        Server::listening_on([":443"])
            .with_route(Route::reverse_proxy_host("a.example.com", "localhost:1")),
    );
    let mut config = Config::default();
    *config.http_or_insert() = app;
    assert_eq!(
        config.http().unwrap().servers["srv0"].hosts(),
        ["a.example.com"]
    );
    assert_eq!(
        serde_json::to_value(&config).unwrap()["apps"]["http"]["servers"]["srv0"]["listen"],
        json!([":443"])
    );
    // Struct literals with `..Default::default()` work.
    let upstream = Upstream {
        max_requests: Some(10),
        ..Upstream::new("localhost:9000")
    };
    assert_eq!(
        serde_json::to_value(&upstream).unwrap(),
        json!({"dial": "localhost:9000", "max_requests": 10})
    );
    assert!(upstream.validate().is_ok());
    assert!(Upstream::new("localhost").validate().is_err());
    assert_eq!(serde_json::to_value(Config::default()).unwrap(), json!({}));
    assert_eq!(serde_json::to_value(Route::new()).unwrap(), json!({}));
}

#[test]
fn unknown_handlers_matchers_and_fields_survive() {
    let original = json!({
        "new_root_field": {"x": 1},
        "admin": {"listen": "localhost:2019", "new_admin_field": true},
        "apps": {
            "layer4": {"servers": {"a": {"listen": [":22"]}}},
            "http": {
                "new_http_field": [1, 2, 3],
                "servers": {"srv0": {
                    "@id": 12,
                    "listen": [":443"],
                    "new_server_field": "x",
                    "routes": [{
                        "@id": "outer",
                        "new_route_field": null,
                        "match": [{
                            "host": ["a.example.com"],
                            "my_matcher": {"anything": [1, "two", null]},
                            "file": {"try_files": ["{path}"]}
                        }],
                        "handle": [
                            {"handler": "my_plugin", "@id": "plugin", "nested": {"deep": [{"a": 1.5}]}},
                            {
                                "handler": "reverse_proxy",
                                "@id": 99,
                                "new_proxy_field": {"on": true},
                                "upstreams": [{"dial": "10.0.0.1:80", "new_upstream_field": 1}],
                                "health_checks": {
                                    "active": {"uri": "/h", "interval": "10s", "new_active_field": 0},
                                    "passive": {"max_fails": 3, "fail_duration": 30000000000_i64}
                                },
                                "transport": {"protocol": "http", "some_plugin_option": "y"}
                            },
                            {"handler": "subroute", "routes": [
                                {"@id": "inner", "handle": [{"handler": "static_response", "body": "x", "new_sr": 1}]}
                            ]}
                        ]
                    }]
                }}
            }
        }
    });
    let config: Config = roundtrip(&original);
    assert_eq!(config.extra["new_root_field"], json!({"x": 1}));
    assert_eq!(
        config.admin.as_ref().unwrap().extra["new_admin_field"],
        true
    );
    assert!(config.app("layer4").is_some());
    let http = config.http().unwrap();
    assert!(http.extra.contains_key("new_http_field"));
    let server = &http.servers["srv0"];
    assert_eq!(server.id().as_deref(), Some("12"));
    let route = config.find_route_by_id("outer").unwrap();
    assert_eq!(route.extra["new_route_field"], Value::Null);
    assert_eq!(route.hosts(), ["a.example.com"]);
    assert!(route.matchers[0].extra.contains_key("my_matcher"));
    assert!(route.matchers[0].extra.contains_key("file"));

    let Handler::Other(plugin) = &route.handle[0] else {
        panic!("unknown handler must be Other")
    };
    assert_eq!(plugin["handler"], "my_plugin");
    assert_eq!(route.handle[0].name(), "my_plugin");
    assert_eq!(route.handle[0].id().as_deref(), Some("plugin"));

    let Handler::ReverseProxy(rp) = &route.handle[1] else {
        panic!("reverse_proxy must be typed")
    };
    assert_eq!(route.handle[1].id().as_deref(), Some("99"));
    assert_eq!(rp.extra["new_proxy_field"], json!({"on": true}));
    assert_eq!(rp.upstreams[0].dial, "10.0.0.1:80");
    assert_eq!(rp.upstreams[0].extra["new_upstream_field"], 1);
    let active = rp.health_checks.as_ref().unwrap().active.as_ref().unwrap();
    assert_eq!(active.interval, Some(CaddyDuration::Text("10s".into())));
    assert_eq!(
        active.interval.as_ref().unwrap().to_std(),
        Some(Duration::from_secs(10))
    );
    assert_eq!(active.extra["new_active_field"], 0);
    assert_eq!(
        rp.transport.as_ref().unwrap().extra["some_plugin_option"],
        "y"
    );

    let inner = config.find_route_by_id("inner").unwrap();
    let Handler::StaticResponse(sr) = &inner.handle[0] else {
        panic!()
    };
    assert_eq!(sr.extra["new_sr"], 1);
    assert!(config.find_route_by_id("nope").is_none());
    assert_eq!(config.all_routes().len(), 2);
}

#[test]
fn nulls_empties_and_odd_types_are_kept_verbatim() {
    let route_json = json!({
        "match": null,
        "handle": [],
        "terminal": null,
        "@id": null,
        "group": 5
    });
    let route: Route = roundtrip(&route_json);
    assert!(route.matchers.is_empty() && route.handle.is_empty());
    assert_eq!(route.terminal, None);
    assert_eq!(route.group, None);
    assert_eq!(route.extra["group"], 5);
    assert_eq!(route.extra["match"], Value::Null);
    assert_eq!(route.extra["handle"], json!([]));

    // A typed field that is set takes precedence over a kept entry.
    let mut route = route;
    route.matchers.push(MatcherSet::host(["a.example.com"]));
    let out = serde_json::to_value(&route).unwrap();
    assert_eq!(out["match"], json!([{"host": ["a.example.com"]}]));
    assert_eq!(out["handle"], json!([]));

    // Present-but-empty and absent stay apart, as do nulls inside maps.
    for matcher in [
        json!({"host": []}),
        json!({"host": null}),
        json!({"header": {"X-Absent": null, "X-Present": ["*"]}}),
        json!({"query": {"q": null}}),
        json!({"not": []}),
        json!({"remote_ip": {"ranges": [], "forwarded": true}}),
        json!({"expression": {"expr": "true", "name": "n"}}),
        json!({"vars": {"{x}": "old-string-form"}}),
    ] {
        let _: MatcherSet = roundtrip(&matcher);
    }
    let set: MatcherSet = roundtrip(&json!({"host": []}));
    assert_eq!(set.host, Some(vec![]));
    let set: MatcherSet = roundtrip(&json!({"header": {"X-Absent": null}}));
    assert_eq!(set.header.unwrap()["X-Absent"], None);
    let set: MatcherSet = roundtrip(&json!({"expression": {"expr": "true", "name": "n"}}));
    assert_eq!(set.expression.unwrap().expr(), Some("true"));

    // Handlers with odd values stay typed; the odd values are kept as they were.
    let rp_json = json!({
        "handler": "reverse_proxy",
        "upstreams": [],
        "flush_interval": 1.5,
        "health_checks": {"passive": {"max_fails": "3", "unhealthy_status": null}},
        "headers": {"request": {"set": {"X-Null": null}}},
        "load_balancing": {"selection_policy": {"policy": "cookie", "name": "lb", "secret": "s"}}
    });
    let handler: Handler = roundtrip(&rp_json);
    let Handler::ReverseProxy(rp) = &handler else {
        panic!("must stay typed")
    };
    assert_eq!(rp.extra["upstreams"], json!([]));
    assert_eq!(rp.extra["flush_interval"], 1.5);
    let passive = rp.health_checks.as_ref().unwrap().passive.as_ref().unwrap();
    assert_eq!(passive.max_fails, None);
    assert_eq!(passive.extra["max_fails"], "3");
    assert_eq!(
        rp.load_balancing
            .as_ref()
            .unwrap()
            .selection_policy
            .as_ref()
            .unwrap()
            .policy
            .as_deref(),
        Some("cookie")
    );

    // Durations keep their form; big and odd numbers are not altered.
    for value in [
        json!(10000000000_i64),
        json!("1m30s"),
        json!(-1),
        json!(u64::MAX),
        json!(0.5),
    ] {
        let _: HttpApp = roundtrip(&json!({"grace_period": value}));
    }
    let app: HttpApp = roundtrip(&json!({"grace_period": "1m30s", "http_port": 70000}));
    assert_eq!(
        app.grace_period.unwrap().to_std(),
        Some(Duration::from_secs(90))
    );
    assert_eq!(app.http_port, None);
    assert_eq!(app.extra["http_port"], 70000);

    // Other odd handlers.
    for handler in [
        json!({"handler": "vars"}),
        json!({"handler": "subroute", "routes": null}),
        json!({"handler": "static_response", "status_code": "{http.error.status_code}"}),
        json!({"handler": "static_response", "status_code": 200, "headers": {"A": null}}),
        json!({"handler": "map", "mappings": [{"input": "a", "outputs": [null, 1, "x"]}]}),
        json!({"handler": "file_server", "browse": {}, "precompressed": {}}),
        json!({"no_handler_field": true}),
        json!({"handler": 5}),
    ] {
        let _: Handler = roundtrip(&handler);
    }
    let handler: Handler = roundtrip(
        &json!({"handler": "static_response", "status_code": "{http.error.status_code}"}),
    );
    let Handler::StaticResponse(sr) = handler else {
        panic!()
    };
    assert_eq!(
        sr.status_code,
        Some(StatusCode::Text("{http.error.status_code}".into()))
    );
}

#[test]
fn find_route_by_id_searches_nested_routes_and_can_mutate() {
    let original = json!({"apps": {"http": {"servers": {
        "a": {"routes": [{"handle": [{"handler": "static_response"}]}]},
        "b": {
            "routes": [{"handle": [
                {"handler": "subroute", "routes": [
                    {"handle": [{"handler": "subroute", "routes": [{"@id": "deep", "handle": []}]}]}
                ], "errors": {"routes": [{"@id": "sub-error"}]}},
                {"handler": "reverse_proxy", "upstreams": [{"dial": "x:1"}],
                 "handle_response": [{"routes": [{"@id": 3}]}]}
            ]}],
            "errors": {"routes": [{"@id": "server-error"}]}
        }
    }}}});
    let mut config: Config = roundtrip(&original);
    for id in ["deep", "sub-error", "3", "server-error"] {
        assert_eq!(
            config.find_route_by_id(id).unwrap().id().as_deref(),
            Some(id)
        );
    }
    assert_eq!(config.all_routes().len(), 7);
    let deep = config.find_route_by_id_mut("deep").unwrap();
    deep.handle.push(Handler::reverse_proxy("localhost:9999"));
    let json = serde_json::to_value(&config).unwrap();
    let deep_json = &json["apps"]["http"]["servers"]["b"]["routes"][0]["handle"][0]["routes"][0]
        ["handle"][0]["routes"][0];
    assert_eq!(
        deep_json["handle"],
        json!([{"handler": "reverse_proxy", "upstreams": [{"dial": "localhost:9999"}]}])
    );
    config.find_route_by_id_mut("3").unwrap().terminal = Some(true);
    assert_eq!(config.find_route_by_id("3").unwrap().terminal, Some(true));
}

#[test]
fn http_mut_edits_in_place() {
    let mut config = load("builder_host-2.11.json");
    let server = config.http_mut().unwrap().servers.get_mut("srv0").unwrap();
    server.routes.insert(
        0,
        Route::reverse_proxy_path("/api", "localhost:8080").with_id("api"),
    );
    server.route_for_host_mut("app.example.com").unwrap().id = Some(json!("app"));
    let json = serde_json::to_value(&config).unwrap();
    let routes = &json["apps"]["http"]["servers"]["srv0"]["routes"];
    assert_eq!(routes[0]["@id"], "api");
    assert_eq!(routes[1]["@id"], "app");
    assert_eq!(routes[1]["match"], json!([{"host": ["app.example.com"]}]));
    let reparsed: Config = serde_json::from_value(json).unwrap();
    assert_eq!(reparsed, config);
}
