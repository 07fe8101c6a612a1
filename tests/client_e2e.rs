//! caddy-client against real Caddy 2.6.2 and 2.11.x: every endpoint, CRUD by
//! path and by id, If-Match, unix-socket admin, error quirks mapped to the same
//! kinds on both versions, and lossless typed round-trips.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::time::Duration;

use caddy_client::{Client, ErrorKind};
use e2e::backend::Backend;
use e2e::{for_each_version, free_port, Caddy, Version};
use serde_json::{json, Value};

/// A config with one server on a free loopback port and two routes with ids.
fn base_config(http_port: u16) -> Value {
    json!({
        "apps": {"http": {"servers": {"srv0": {
            "listen": [format!("127.0.0.1:{http_port}")],
            "routes": [
                {"@id": "hello", "match": [{"path": ["/hello"]}],
                 "handle": [{"handler": "static_response", "body": "hello"}]},
                {"@id": "fallback", "handle": [{"handler": "static_response", "status_code": 404, "body": "none"}]}
            ]
        }}}}
    })
}

async fn body_of(port: u16, path: &str) -> (u16, String) {
    let r = reqwest::get(format!("http://127.0.0.1:{port}{path}"))
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

#[tokio::test]
async fn crud_by_path_and_by_id() {
    for_each_version(|v| async move {
        let port = free_port();
        let caddy = Caddy::start(v, base_config(port)).unwrap();
        let c = caddy.client();

        // GET by path and by id.
        let routes: Vec<Value> = c.config("apps/http/servers/srv0/routes").get().await.unwrap();
        assert_eq!(routes.len(), 2, "{v:?}");
        let hello: Value = c.id("hello").get().await.unwrap();
        assert_eq!(hello["handle"][0]["body"], "hello");
        let body: String = c.id("hello").at("handle/0/body").get().await.unwrap();
        assert_eq!(body, "hello");

        // A missing final key reads as null.
        let missing: Option<Value> = c.config("apps/http/servers/nope").get().await.unwrap();
        assert_eq!(missing, None, "{v:?}");

        // POST appends to an array; PUT inserts before an index.
        c.config("apps/http/servers/srv0/routes")
            .post(&json!({"@id": "late", "match": [{"path": ["/late"]}], "handle": [{"handler": "static_response", "body": "late"}]}))
            .await
            .unwrap();
        c.config("apps/http/servers/srv0/routes/0")
            .put(&json!({"@id": "first", "match": [{"path": ["/first"]}], "handle": [{"handler": "static_response", "body": "first"}]}))
            .await
            .unwrap();
        let ids: Vec<String> = c
            .config("apps/http/servers/srv0/routes")
            .get::<Vec<Value>>()
            .await
            .unwrap()
            .iter()
            .map(|r| r["@id"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(ids, ["first", "hello", "fallback", "late"], "{v:?}");
        assert_eq!(body_of(port, "/first").await, (200, "first".to_string()));

        // PATCH by id replaces in place; the proxy serves the new body.
        c.id("hello").at("handle/0/body").patch(&"bonjour").await.unwrap();
        assert_eq!(body_of(port, "/hello").await, (200, "bonjour".to_string()));

        // DELETE by id.
        c.id("first").delete().await.unwrap();
        assert_eq!(body_of(port, "/first").await, (404, "none".to_string()));
        let e = c.id("first").get::<Value>().await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotFound, "{v:?}: {e}");

        // Root access and keys that need percent-encoding.
        let root: Value = c.config("").get().await.unwrap();
        assert!(root["apps"]["http"].is_object());
        c.config("apps/http/servers/srv0/routes/0/handle/0/headers")
            .post(&json!({"X-Odd Key?": ["v"]}))
            .await
            .unwrap_or(()); // static_response has a headers field; the key is a header name
        let odd: Option<Value> = c.config("apps/http/servers/srv0/routes/0/handle/0/headers/X-Odd Key?").get().await.unwrap();
        assert_eq!(odd, Some(json!(["v"])), "{v:?}: a key with a space and '?' is addressable");
    })
    .await;
}

#[tokio::test]
async fn etag_and_if_match_guard_changes() {
    for_each_version(|v| async move {
        let caddy = Caddy::start(v, base_config(free_port())).unwrap();
        let c = caddy.client();
        let (route, etag) = c.id("hello").get_with_etag::<Value>().await.unwrap();
        assert_eq!(route["@id"], "hello");
        assert!(
            etag.path()
                .starts_with("/config/apps/http/servers/srv0/routes/0"),
            "{v:?}: {etag}"
        );

        // A change guarded by the current tag succeeds ...
        let mut changed = route.clone();
        changed["handle"][0]["body"] = json!("v2");
        c.id("hello").if_match(&etag).patch(&changed).await.unwrap();

        // ... and the same tag, now stale, is refused with 412 and nothing changes.
        changed["handle"][0]["body"] = json!("v3");
        let e = c
            .id("hello")
            .if_match(&etag)
            .patch(&changed)
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::PreconditionFailed, "{v:?}: {e}");
        assert_eq!(e.status(), Some(412));
        let now: Value = c.id("hello").get().await.unwrap();
        assert_eq!(now["handle"][0]["body"], "v2");

        // A parent's tag guards a change to a child.
        let (_, parent_tag) = c
            .config("apps/http/servers/srv0")
            .get_with_etag::<Value>()
            .await
            .unwrap();
        c.config("apps/http/servers/srv0/routes/0/handle/0/body")
            .if_match(&parent_tag)
            .patch(&"v4")
            .await
            .unwrap();
        let e = c
            .config("apps/http/servers/srv0/routes/0/handle/0/body")
            .if_match(&parent_tag)
            .patch(&"v5")
            .await
            .unwrap_err();
        assert!(e.is_precondition_failed(), "{v:?}: {e}");
    })
    .await;
}

#[tokio::test]
async fn version_quirks_map_to_the_same_error_kinds() {
    for_each_version(|v| async move {
        let caddy = Caddy::start(v, base_config(free_port())).unwrap();
        let c = caddy.client();
        // PUT on an existing key: 409 on 2.7.5+, 500 on 2.6.
        let e = c
            .config("apps/http/servers/srv0")
            .put(&json!({"listen": [":1"]}))
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Conflict, "{v:?}: {e}");
        // PATCH of a missing key: 404 / 500.
        let e = c
            .config("apps/http/servers/nope")
            .patch(&json!({}))
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotFound, "{v:?}: {e}");
        // Unknown @id: 404 on both.
        let e = c.id("no-such-id").get::<Value>().await.unwrap_err();
        assert_eq!(
            (e.kind(), e.status()),
            (ErrorKind::NotFound, Some(404)),
            "{v:?}: {e}"
        );
        assert!(
            e.caddy_message().unwrap().contains("unknown object ID"),
            "{e}"
        );
        // Missing intermediate key: 400.
        let e = c
            .config("apps/nope/deeper")
            .get::<Value>()
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::BadRequest, "{v:?}: {e}");
        // An unknown field fails the change and the old config stays.
        let e = c
            .id("hello")
            .at("no_such_field")
            .post(&1)
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::ConfigRejected, "{v:?}: {e}");
        let hello: Value = c.id("hello").get().await.unwrap();
        assert!(hello.get("no_such_field").is_none());
        // DELETE of a missing key: 404 on 2.7.5+, a no-op on 2.6.
        let r = c.config("apps/http/servers/nope").delete().await;
        match v {
            Version::V2_6 => assert!(r.is_ok(), "2.6 treats it as a no-op"),
            Version::Latest => assert_eq!(r.unwrap_err().kind(), ErrorKind::NotFound),
        }
        // A Host the admin endpoint does not allow: 403.
        let other = Client::builder()
            .address(&caddy.admin)
            .host("evil.example:2019")
            .build()
            .unwrap();
        let e = other.config("").get::<Value>().await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Forbidden, "{v:?}: {e}");
    })
    .await;
}

#[tokio::test]
async fn unix_socket_admin() {
    for_each_version(|v| async move {
        let dir = e2e::temp_dir("sock");
        let sock = dir.path().join("admin.sock");
        let mut cfg = base_config(free_port());
        cfg["admin"] = json!({"listen": format!("unix/{}", sock.display())});
        let caddy = Caddy::start(v, cfg).unwrap();
        assert!(caddy.admin.starts_with("unix//"), "{}", caddy.admin);
        let c = Client::new(&caddy.admin).unwrap();
        let (route, etag) = c.id("hello").get_with_etag::<Value>().await.unwrap();
        assert_eq!(route["handle"][0]["body"], "hello");
        c.id("hello")
            .at("handle/0/body")
            .if_match(&etag)
            .patch(&"via socket")
            .await
            .unwrap();
        let body: String = c.id("hello").at("handle/0/body").get().await.unwrap();
        assert_eq!(body, "via socket", "{v:?}");
    })
    .await;
}

#[tokio::test]
async fn load_adapt_and_stop() {
    for_each_version(|v| async move {
        let port = free_port();
        let mut caddy = Caddy::start(v, base_config(port)).unwrap();
        let c = caddy.client();

        // adapt changes nothing and reports warnings (unformatted input).
        let caddyfile = format!(
            "{{\n\tadmin {}\n}}\nhttp://127.0.0.1:{port} {{\n  respond \"from caddyfile\"\n}}\n",
            caddy.admin
        );
        let adapted = c.adapt(&caddyfile).await.unwrap();
        assert!(
            !adapted.warnings.is_empty(),
            "{v:?}: expected a formatting warning"
        );
        assert!(serde_json::to_value(&adapted.result).unwrap()["apps"]["http"].is_object());
        assert_eq!(body_of(port, "/hello").await.0, 200, "adapt must not load");

        // A bad Caddyfile is a typed error.
        let e = c
            .adapt("http://x {\n  no_such_directive\n}\n")
            .await
            .unwrap_err();
        assert_eq!(e.status(), Some(400), "{v:?}: {e}");

        // load_caddyfile replaces the config.
        c.load_caddyfile(&caddyfile).await.unwrap();
        assert_eq!(
            body_of(port, "/").await,
            (200, "from caddyfile".to_string())
        );

        // load with JSON; a rejected load keeps the old config.
        let mut cfg = base_config(port);
        cfg["admin"] = json!({"listen": caddy.admin});
        c.load(&cfg).await.unwrap();
        assert_eq!(body_of(port, "/hello").await, (200, "hello".to_string()));
        let mut bad = cfg.clone();
        bad["apps"]["http"]["servers"]["srv0"]["bogus"] = json!(true);
        let e = c.load(&bad).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::ConfigRejected, "{v:?}: {e}");
        assert_eq!(body_of(port, "/hello").await, (200, "hello".to_string()));

        // stop: Caddy answers, then exits.
        c.stop().await.unwrap();
        let stopped = e2e::eventually(Duration::from_secs(10), || {
            let running = caddy.is_running();
            async move { (!running).then_some(()) }
        })
        .await;
        assert!(stopped.is_some(), "{v:?}: Caddy still running after stop");
        let e = c.config("").get::<Value>().await.unwrap_err();
        assert!(e.is_unreachable(), "{e}");
    })
    .await;
}

#[tokio::test]
async fn upstreams_and_pki() {
    for_each_version(|v| async move {
        let backend = Backend::start("up", std::net::Ipv4Addr::new(127, 0, 0, 2), 0).await.unwrap();
        let port = free_port();
        let cfg = json!({
            "apps": {
                "http": {"servers": {"s": {
                    "listen": [format!("127.0.0.1:{port}")],
                    "routes": [{"handle": [{"handler": "reverse_proxy", "upstreams": [{"dial": backend.addr.to_string()}]}]}]
                }}},
                "pki": {"certificate_authorities": {"local": {"install_trust": false}}}
            }
        });
        let caddy = Caddy::start(v, cfg).unwrap();
        let c = caddy.client();
        assert_eq!(body_of(port, "/x").await.0, 200);
        let ups = c.upstreams().await.unwrap();
        assert!(ups.iter().any(|u| u.address == backend.addr.to_string()), "{v:?}: {ups:?}");

        let ca = c.pki_ca("local").await.unwrap();
        assert_eq!(ca.id, "local");
        assert!(ca.root_certificate.starts_with("-----BEGIN CERTIFICATE-----"), "{ca:?}");
        let chain = c.pki_certificates("local").await.unwrap();
        assert!(chain.matches("BEGIN CERTIFICATE").count() >= 2, "{v:?}: {chain}");
        let e = c.pki_ca("no-such-ca").await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotFound, "{v:?}: {e}");
    })
    .await;
}

#[tokio::test]
async fn capabilities_tell_versions_apart_without_writes() {
    for_each_version(|v| async move {
        let caddy = Caddy::start(v, base_config(free_port())).unwrap();
        let c = caddy.client();
        let caps = c.capabilities().await.unwrap();
        match v {
            Version::V2_6 => {
                assert!(
                    !caps.stream_close_delay && !caps.client_ip_matcher && !caps.etag_header,
                    "{caps:?}"
                );
                assert_eq!(caps.min_version(), "2.6");
            }
            Version::Latest => {
                assert!(
                    caps.stream_close_delay && caps.client_ip_matcher && caps.etag_header,
                    "{caps:?}"
                );
                assert_eq!(caps.min_version(), "2.8");
            }
        }
        assert_eq!(
            caddy.admin_requests("PATCH")
                + caddy.admin_requests("PUT")
                + caddy.admin_requests("DELETE"),
            0
        );
        assert_eq!(
            caddy.log().matches("\"msg\":\"load complete\"").count(),
            0,
            "{v:?}: probing must not reload"
        );
    })
    .await;
}

#[tokio::test]
async fn requests_after_a_reload_survive_closed_pooled_connections() {
    for_each_version(|v| async move {
        let caddy = Caddy::start(v, base_config(free_port())).unwrap();
        let c = caddy.client();
        for i in 0..15 {
            c.id("hello")
                .at("handle/0/body")
                .patch(&format!("n{i}"))
                .await
                .unwrap();
            let body: String = c.id("hello").at("handle/0/body").get().await.unwrap();
            assert_eq!(body, format!("n{i}"), "{v:?}");
        }
    })
    .await;
}
