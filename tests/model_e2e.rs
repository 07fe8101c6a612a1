//! `caddy_client::model` against real Caddy 2.6.2 and 2.11.x.
//!
//! - A config full of modules and fields the model does not know survives
//!   GET → typed `Config` → `load`, and GET → typed `Route` → `PATCH` by id,
//!   unchanged as JSON, and Caddy serves exactly what it served before.
//! - Routes built with the model's builders load into real Caddy and proxy
//!   to real backends as the Caddyfile `handle_path` does (prefix stripped).

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;

use caddy_client::model::{Admin, Config, Handler, Route, Server, StaticResponse};
use e2e::backend::Backend;
use e2e::{for_each_version, free_port, Caddy};
use serde_json::{json, Value};

/// A config valid for Caddy 2.6.2 and 2.11.x with much the model does not
/// model: handlers `templates`, `request_body`, `error`; the `file` matcher;
/// `@id`s on the server, routes and handlers; `automatic_https`, server
/// `logs`, `logging`, `storage`; the `tls` and `pki` apps; unknown
/// `reverse_proxy` transport options; a `null` in a header matcher.
fn rich_config(admin: &str, port: u16, dir: &Path, backend: SocketAddr) -> Value {
    let site = dir.join("site");
    let site = site.to_str().unwrap();
    json!({
        "admin": {"listen": admin, "config": {"persist": false}},
        "storage": {"module": "file_system", "root": dir.join("storage").to_str().unwrap()},
        "logging": {"logs": {
            "default": {"level": "INFO", "exclude": ["http.log.access.quiet"]},
            "quiet": {"writer": {"output": "discard"}, "include": ["http.log.access.quiet"]}
        }},
        "apps": {
            "http": {
                "http_port": free_port(),
                "grace_period": "1s",
                "servers": {"srv0": {
                    "@id": "main",
                    "listen": [format!("127.0.0.1:{port}")],
                    "automatic_https": {"disable": true},
                    "logs": {"default_logger_name": "quiet"},
                    "routes": [
                        {
                            "@id": "tmpl",
                            "match": [{"path": ["/tmpl"]}],
                            "handle": [
                                {"handler": "templates", "@id": "tmpl-handler"},
                                {"handler": "static_response",
                                 "headers": {"Content-Type": ["text/plain; charset=utf-8"]},
                                 "body": "path={{.Req.URL.Path}}"}
                            ]
                        },
                        {
                            "@id": "upload",
                            "match": [{"path": ["/upload"], "method": ["POST"]}],
                            "handle": [
                                {"handler": "request_body", "max_size": 1024},
                                {"handler": "static_response", "body": "accepted"}
                            ]
                        },
                        {
                            "@id": "files",
                            "match": [{"file": {"root": site, "try_files": ["{http.request.uri.path}.txt"]}}],
                            "handle": [
                                {"handler": "rewrite", "uri": "{http.matchers.file.relative}"},
                                {"handler": "file_server", "root": site}
                            ]
                        },
                        {
                            "@id": "boom",
                            "match": [{"path": ["/boom"]}],
                            "handle": [{"handler": "error", "error": "short and stout", "status_code": 418}]
                        },
                        {
                            "@id": "proxy",
                            "group": "proxies",
                            "match": [{"path": ["/proxy/*"]}],
                            "handle": [
                                {"handler": "rewrite", "strip_path_prefix": "/proxy"},
                                {
                                    "handler": "reverse_proxy",
                                    "@id": "proxy-handler",
                                    "upstreams": [{"dial": backend.to_string()}],
                                    "transport": {"protocol": "http", "dial_fallback_delay": "300ms", "expect_continue_timeout": 1_000_000_000_u64},
                                    "load_balancing": {"selection_policy": {"policy": "first"}, "try_duration": "0s"},
                                    "health_checks": {"passive": {"fail_duration": "10s", "max_fails": 3}},
                                    "headers": {"request": {"set": {"X-Via-Model": ["yes"]}}}
                                }
                            ]
                        },
                        {
                            "@id": 42,
                            "match": [{"path": ["/hdr"], "not": [{"header": {"X-Mode": ["off"], "X-Never": null}}]}],
                            "handle": [{"handler": "static_response", "body": "mode on"}]
                        },
                        {
                            "@id": "fallback",
                            "handle": [{"handler": "static_response", "status_code": 404, "body": "nothing at {http.request.uri.path}"}]
                        }
                    ],
                    "errors": {"routes": [{
                        "@id": "errors",
                        "handle": [{"handler": "static_response", "status_code": "{http.error.status_code}",
                                    "body": "E {http.error.status_code} {http.error.message}"}]
                    }]}
                }}
            },
            "tls": {"automation": {"policies": [{
                "subjects": ["model-e2e.internal"],
                "issuers": [{"module": "internal", "lifetime": "1h"}]
            }]}},
            "pki": {"certificate_authorities": {"local": {"install_trust": false, "name": "model e2e CA"}}}
        }
    })
}

/// What Caddy answers to a fixed set of requests: (request, status, body).
async fn served(port: u16) -> Vec<(String, u16, String)> {
    let http = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    let requests = [
        http.get(format!("{base}/tmpl")),
        http.post(format!("{base}/upload")).body("small"),
        http.get(format!("{base}/hello")),
        http.get(format!("{base}/boom")),
        http.get(format!("{base}/proxy/deep/x?q=1")),
        http.get(format!("{base}/hdr")),
        http.get(format!("{base}/hdr")).header("X-Mode", "off"),
        http.get(format!("{base}/nope")),
    ];
    let mut out = Vec::new();
    for rb in requests {
        let req = rb.build().unwrap();
        let label = format!(
            "{} {}{}",
            req.method(),
            req.url().path(),
            req.headers().get("x-mode").map_or("", |_| " +X-Mode")
        );
        let resp = http.execute(req).await.unwrap();
        let status = resp.status().as_u16();
        out.push((label, status, resp.text().await.unwrap()));
    }
    out
}

fn find<'a>(snapshot: &'a [(String, u16, String)], label: &str) -> (u16, &'a str) {
    let (_, status, body) = snapshot.iter().find(|(l, _, _)| l == label).unwrap();
    (*status, body.as_str())
}

#[tokio::test]
async fn a_config_the_model_does_not_fully_know_round_trips_losslessly() {
    for_each_version(|v| async move {
        let backend = Backend::start("upstream", Ipv4Addr::new(127, 0, 0, 2), 0)
            .await
            .unwrap();
        let caddy = Caddy::start(v, json!({})).unwrap();
        let c = caddy.client();
        let port = free_port();
        std::fs::create_dir_all(caddy.dir.path().join("site")).unwrap();
        std::fs::write(caddy.dir.path().join("site/hello.txt"), "hello from disk\n").unwrap();
        let original = rich_config(&caddy.admin, port, caddy.dir.path(), backend.addr);

        c.load(&original)
            .await
            .unwrap_or_else(|e| panic!("{v:?}: the fixture must load: {e}\n{}", caddy.log()));
        let as_loaded: Value = c.config("").get().await.unwrap();
        assert_eq!(
            as_loaded, original,
            "{v:?}: Caddy gives back what it was given"
        );

        let before = served(port).await;
        assert_eq!(
            find(&before, "GET /tmpl"),
            (200, "path=/tmpl"),
            "{v:?}: templates ran"
        );
        assert_eq!(find(&before, "POST /upload"), (200, "accepted"), "{v:?}");
        assert_eq!(
            find(&before, "GET /hello"),
            (200, "hello from disk\n"),
            "{v:?}: file matcher"
        );
        assert_eq!(
            find(&before, "GET /boom"),
            (418, "E 418 short and stout"),
            "{v:?}: error handler + error routes"
        );
        let (status, proxied) = find(&before, "GET /proxy/deep/x");
        assert_eq!(status, 200, "{v:?}: {proxied}");
        let proxied: Value = serde_json::from_str(proxied).unwrap();
        assert_eq!(
            (proxied["tart"].as_str(), proxied["path"].as_str()),
            (Some("upstream"), Some("/deep/x?q=1")),
            "{v:?}"
        );
        assert_eq!(find(&before, "GET /hdr"), (200, "mode on"), "{v:?}");
        assert_eq!(
            find(&before, "GET /hdr +X-Mode"),
            (404, "nothing at /hdr"),
            "{v:?}"
        );
        assert_eq!(
            find(&before, "GET /nope"),
            (404, "nothing at /nope"),
            "{v:?}"
        );

        // Typed: what the model knows is typed, the rest is kept.
        let typed: Config = c.config("").get().await.unwrap();
        let tmpl = typed.find_route_by_id("tmpl").unwrap();
        assert_eq!(
            (tmpl.handle[0].name(), tmpl.handle[0].id().as_deref()),
            ("templates", Some("tmpl-handler"))
        );
        assert!(
            matches!(tmpl.handle[0], Handler::Other(_)),
            "{v:?}: templates is not modelled"
        );
        let files = typed.find_route_by_id("files").unwrap();
        assert!(
            files.matchers[0].extra.contains_key("file"),
            "{v:?}: the file matcher is kept"
        );
        let proxy = typed.find_route_by_id("proxy").unwrap();
        let Handler::ReverseProxy(rp) = &proxy.handle[1] else {
            panic!("{v:?}: {proxy:?}")
        };
        assert_eq!(rp.dials(), [backend.addr.to_string()]);
        assert!(rp
            .transport
            .as_ref()
            .unwrap()
            .extra
            .contains_key("dial_fallback_delay"));
        assert!(typed.find_route_by_id("42").is_some(), "{v:?}: numeric @id");
        let srv = &typed.http().unwrap().servers["srv0"];
        assert_eq!(srv.id().as_deref(), Some("main"));
        assert!(srv.automatic_https.is_some() && srv.logs.is_some() && srv.errors.is_some());
        assert!(typed.app("tls").is_some() && typed.app("pki").is_some());
        assert_eq!(
            serde_json::to_value(&typed).unwrap(),
            original,
            "{v:?}: serializes back unchanged"
        );

        // Write the typed config back; forced, so Caddy provisions it for real.
        c.load(&typed).await.unwrap();
        c.load_forced(&typed)
            .await
            .unwrap_or_else(|e| panic!("{v:?}: {e}"));
        assert_eq!(
            c.config("").get::<Value>().await.unwrap(),
            original,
            "{v:?}: after load(typed)"
        );

        // PATCH typed routes by id: one change that shows, then back.
        let route: Route = c.id("tmpl").get().await.unwrap();
        let mut changed = route.clone();
        let Handler::StaticResponse(StaticResponse { body, .. }) = &mut changed.handle[1] else {
            panic!("{v:?}: {changed:?}")
        };
        *body = Some("changed {{.Req.URL.Path}}".into());
        c.id("tmpl").patch(&changed).await.unwrap();
        assert_eq!(
            find(&served(port).await, "GET /tmpl"),
            (200, "changed /tmpl"),
            "{v:?}"
        );
        c.id("tmpl").patch(&route).await.unwrap();
        for id in ["files", "proxy", "42", "errors"] {
            let r: Route = c.id(id).get().await.unwrap();
            c.id(id)
                .force_reload()
                .patch(&r)
                .await
                .unwrap_or_else(|e| panic!("{v:?}: PATCH {id}: {e}"));
        }

        let after: Value = c.config("").get().await.unwrap();
        assert_eq!(after, original, "{v:?}: the config is exactly the original");
        assert_eq!(
            served(port).await,
            before,
            "{v:?}: Caddy serves what it served"
        );
    })
    .await;
}

async fn get(port: u16, host: Option<&str>, path: &str) -> (u16, String) {
    let mut req = reqwest::Client::new().get(format!("http://127.0.0.1:{port}{path}"));
    if let Some(h) = host {
        req = req.header("host", h);
    }
    let resp = req.send().await.unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap())
}

/// `(backend name, path it saw)` from a backend's echo, or the raw answer.
async fn via(port: u16, host: Option<&str>, path: &str) -> Result<(String, String), (u16, String)> {
    let (status, body) = get(port, host, path).await;
    match serde_json::from_str::<Value>(&body) {
        Ok(v) if status == 200 => Ok((
            v["tart"].as_str().unwrap().into(),
            v["path"].as_str().unwrap().into(),
        )),
        _ => Err((status, body)),
    }
}

fn ok(name: &str, path: &str) -> Result<(String, String), (u16, String)> {
    Ok((name.to_string(), path.to_string()))
}

#[tokio::test]
async fn builder_routes_proxy_like_a_caddyfile_handle_path() {
    for_each_version(|v| async move {
        let alpha = Backend::start("alpha", Ipv4Addr::new(127, 0, 0, 2), 0)
            .await
            .unwrap();
        let beta = Backend::start("beta", Ipv4Addr::new(127, 0, 0, 2), 0)
            .await
            .unwrap();
        let (alpha_dial, beta_dial) = (alpha.addr.to_string(), beta.addr.to_string());
        let caddy = Caddy::start(v, json!({})).unwrap();
        let c = caddy.client();
        let port = free_port();

        let path_route = Route::reverse_proxy_path("/alpha/", &alpha_dial).with_id("alpha");
        let mut server = Server::listening_on([format!("127.0.0.1:{port}")])
            .with_route(path_route.clone())
            .with_route(Route::reverse_proxy_host("beta.test", &beta_dial).with_id("beta"))
            .with_route(Route::new().with_handler(Handler::static_response(404, "no route")));
        // No certificates for beta.test: this server speaks plain HTTP.
        server.automatic_https = Some(json!({"disable": true}));
        let mut config = Config {
            admin: Some(Admin {
                listen: Some(caddy.admin.clone()),
                ..Admin::default()
            }),
            ..Config::default()
        };
        config
            .http_or_insert()
            .servers
            .insert("srv0".into(), server);
        c.load(&config)
            .await
            .unwrap_or_else(|e| panic!("{v:?}: {e}"));

        // The built route is the one Caddy's own adapter makes of `handle_path`.
        let caddyfile = format!(
            ":{port} {{\n\thandle_path /alpha/* {{\n\t\treverse_proxy {alpha_dial}\n\t}}\n}}\n"
        );
        let adapted = c.adapt(&caddyfile).await.unwrap().result;
        let from_caddyfile = adapted
            .all_routes()
            .into_iter()
            .find(|r| r.paths() == ["/alpha/*"])
            .unwrap();
        assert_eq!(from_caddyfile.matchers, path_route.matchers, "{v:?}");
        assert_eq!(from_caddyfile.handle, path_route.handle, "{v:?}");

        // Path prefix: stripped before proxying, query kept; only below the prefix.
        assert_eq!(
            via(port, None, "/alpha/deep/x?q=1").await,
            ok("alpha", "/deep/x?q=1"),
            "{v:?}"
        );
        assert_eq!(via(port, None, "/alpha/").await, ok("alpha", "/"), "{v:?}");
        assert_eq!(
            via(port, None, "/alpha").await,
            Err((404, "no route".into())),
            "{v:?}"
        );
        assert_eq!(
            via(port, None, "/alphabet/x").await,
            Err((404, "no route".into())),
            "{v:?}"
        );
        // Host: everything for that host, path unchanged, Host passed on.
        assert_eq!(
            via(port, Some("beta.test"), "/x/y").await,
            ok("beta", "/x/y"),
            "{v:?}"
        );
        let (_, body) = get(port, Some("beta.test"), "/x").await;
        assert_eq!(
            serde_json::from_str::<Value>(&body).unwrap()["host"],
            "beta.test",
            "{v:?}"
        );
        assert_eq!(
            via(port, Some("other.test"), "/x").await,
            Err((404, "no route".into())),
            "{v:?}"
        );
        // Routes are tried in order: the path route wins for any host.
        assert_eq!(
            via(port, Some("beta.test"), "/alpha/z").await,
            ok("alpha", "/z"),
            "{v:?}"
        );

        // Re-pointing a route is a PATCH of a freshly built one by its @id.
        c.id("alpha")
            .patch(&Route::reverse_proxy_path("/alpha", &beta_dial).with_id("alpha"))
            .await
            .unwrap();
        assert_eq!(
            via(port, None, "/alpha/deep").await,
            ok("beta", "/deep"),
            "{v:?}"
        );
        let stored: Route = c.id("alpha").get().await.unwrap();
        assert_eq!(stored.upstream_dials(), [beta_dial.as_str()], "{v:?}");
        assert_eq!(
            c.config("apps/http/servers/srv0/routes")
                .get::<Vec<Value>>()
                .await
                .unwrap()
                .len(),
            3,
            "{v:?}"
        );
    })
    .await;
}
