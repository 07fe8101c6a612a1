//! `tart-sync enrol` and `tart-sync nodes` against a wiremock headscale of
//! every API generation (0.22 → 0.28+): the request's shape per generation,
//! refusals (taken, bad, reserved names: exit 2), and the key never in the
//! logs, text or JSON, at `RUST_LOG=trace`.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Output;

use e2e::headscale::{Headscale, API_KEY};
use serde_json::{json, Value};
use time::OffsetDateTime;
use wiremock::matchers::{method, path};
use wiremock::{Mock, ResponseTemplate};

fn fixture(name: &str) -> Value {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/headscale")
        .join(name);
    serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap()
}

/// One headscale generation, as tart-sync meets it.
struct Generation {
    label: &'static str,
    nodes: &'static str,
    /// `GET /version` answer (0.27+).
    version: Option<&'static str>,
    /// `GET /api/v1/routes` exists (up to 0.25).
    routes_api: bool,
    users: &'static str,
    key: &'static str,
    /// headscale.user / headscale.tags settings.
    user_setting: Option<&'static str>,
    tags_setting: Option<&'static str>,
    /// The `user` the request must carry (`None`: no `user` field).
    expect_user: Option<&'static str>,
}

const GENERATIONS: &[Generation] = &[
    Generation {
        label: "0.22",
        nodes: "v0.22-machines.json",
        version: None,
        routes_api: true,
        users: "preauthkey/users-v0.22.json",
        key: "preauthkey/preauthkey-v0.22.json",
        user_setting: Some("tarts"),
        tags_setting: None,
        expect_user: Some("tarts"),
    },
    Generation {
        label: "0.23",
        nodes: "v0.23-nodes.json",
        version: None,
        routes_api: true,
        users: "preauthkey/users-v0.22.json",
        key: "preauthkey/preauthkey-v0.22.json",
        user_setting: Some("tarts"),
        tags_setting: None,
        expect_user: Some("tarts"),
    },
    Generation {
        label: "0.25",
        nodes: "v0.23-nodes.json",
        version: None,
        routes_api: true,
        users: "preauthkey/users-v0.24.json",
        key: "preauthkey/preauthkey-v0.22.json",
        user_setting: Some("tarts"),
        tags_setting: None,
        expect_user: Some("tarts"),
    },
    Generation {
        label: "0.26",
        nodes: "v0.26-nodes.json",
        version: None,
        routes_api: false,
        users: "preauthkey/users-v0.24.json",
        key: "preauthkey/preauthkey-v0.26.json",
        user_setting: Some("tarts"),
        tags_setting: Some("tag:tart"),
        expect_user: Some("1"),
    },
    Generation {
        label: "0.27",
        nodes: "v0.26-nodes.json",
        version: Some("v0.27.1"),
        routes_api: false,
        users: "preauthkey/users-v0.24.json",
        key: "preauthkey/preauthkey-v0.26.json",
        user_setting: Some("tarts"),
        tags_setting: None,
        expect_user: Some("1"),
    },
    Generation {
        label: "0.28",
        nodes: "v0.28-nodes.json",
        version: Some("v0.28.0"),
        routes_api: false,
        users: "preauthkey/users-v0.24.json",
        key: "preauthkey/preauthkey-v0.28.json",
        user_setting: None,
        tags_setting: Some("tag:tart"),
        expect_user: None,
    },
];

async fn serve(g: &Generation) -> Headscale {
    let hs = Headscale::start().await;
    hs.set_fixture(fixture(g.nodes)).await;
    let version = match g.version {
        Some(v) => ResponseTemplate::new(200).set_body_json(json!({"version": v, "commit": "abc"})),
        None => ResponseTemplate::new(404).set_body_string("404 page not found\n"),
    };
    Mock::given(method("GET"))
        .and(path("/version"))
        .respond_with(version)
        .mount(&hs.server)
        .await;
    let routes = if g.routes_api {
        ResponseTemplate::new(200).set_body_json(json!({"routes": []}))
    } else {
        ResponseTemplate::new(404)
            .set_body_json(json!({"code": 5, "message": "Not Found", "details": []}))
    };
    Mock::given(method("GET"))
        .and(path("/api/v1/routes"))
        .respond_with(routes)
        .mount(&hs.server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/v1/user"))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture(g.users)))
        .mount(&hs.server)
        .await;
    Mock::given(method("POST"))
        .and(path("/api/v1/preauthkey"))
        .and(wiremock::matchers::header(
            "authorization",
            format!("Bearer {API_KEY}").as_str(),
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture(g.key)))
        .mount(&hs.server)
        .await;
    hs
}

fn env(hs: &Headscale, g: &Generation) -> BTreeMap<String, String> {
    let mut env: BTreeMap<String, String> = [
        ("TART_SYNC_HEADSCALE_URL", hs.url()),
        ("TART_SYNC_HEADSCALE_API_KEY", API_KEY.to_string()),
        ("TART_SYNC_HEADSCALE_TIMEOUT", "2s".into()),
        // Nothing listens there: the site's paths cannot be read.
        ("TART_SYNC_CADDY_ADMIN", "127.0.0.1:1".into()),
        ("TART_SYNC_ROUTES_DOMAIN", "tart.test".into()),
        ("TART_SYNC_ROUTES_RESERVED", "admin,status".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    if let Some(u) = g.user_setting {
        env.insert("TART_SYNC_HEADSCALE_USER".into(), u.into());
    }
    if let Some(t) = g.tags_setting {
        env.insert("TART_SYNC_HEADSCALE_TAGS".into(), t.into());
    }
    env
}

fn tart_sync(env: &BTreeMap<String, String>, args: &[&str]) -> Output {
    e2e::tart_sync_output(env, "trace", args)
}

use e2e::output_text as text;

async fn posts(hs: &Headscale) -> Vec<Value> {
    hs.server
        .received_requests()
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.method.as_str() == "POST")
        .map(|r| serde_json::from_slice(&r.body).unwrap())
        .collect()
}

#[tokio::test]
async fn enrol_speaks_every_generation_and_keeps_the_key_out_of_logs() {
    for g in GENERATIONS {
        let hs = serve(g).await;
        let key = fixture(g.key)["preAuthKey"]["key"]
            .as_str()
            .unwrap()
            .to_owned();
        let env = env(&hs, g);
        for format in ["text", "json"] {
            let o = tart_sync(
                &env,
                &["--log-format", format, "enrol", "newtart", "--json"],
            );
            assert!(o.status.success(), "{}: {}", g.label, text(&o));
            let stderr = String::from_utf8_lossy(&o.stderr);
            assert!(
                !stderr.contains(&key),
                "{} ({format} logs): the key is in the logs:\n{stderr}",
                g.label
            );
            assert!(
                stderr.contains("pre-auth key created"),
                "{}: trace logs were not captured: {stderr}",
                g.label
            );
            let out: Value = serde_json::from_slice(&o.stdout).unwrap();
            assert_eq!(out["key"], key, "{}", g.label);
            assert_eq!(out["url"], "https://tart.test/newtart/", "{}", g.label);
            assert_eq!(out["docker_compose_environment"]["TAILSCALE_KEY"], key);
            assert_eq!(
                out["docker_compose_environment"]["TAILSCALE_HOSTNAME"],
                "newtart"
            );
            assert_eq!(
                out["docker_compose_environment"]["TAILSCALE_SERVER_URL"],
                hs.url().trim_end_matches('/')
            );
            assert!(out["tailscale_up"]
                .as_str()
                .unwrap()
                .ends_with(&format!("--authkey {key} --hostname newtart")));
            assert_eq!(out["reserved_checked_with_site"], false);
        }
        // The text form carries the same facts.
        let o = tart_sync(&env, &["enrol", "newtart", "--reusable"]);
        assert!(o.status.success(), "{}: {}", g.label, text(&o));
        let stdout = String::from_utf8_lossy(&o.stdout);
        for want in [
            format!("TAILSCALE_KEY: \"{key}\""),
            "TAILSCALE_HOSTNAME: \"newtart\"".to_string(),
            format!("--authkey {key} --hostname newtart"),
            "https://tart.test/newtart/".to_string(),
            "the site's own paths were not checked".to_string(),
        ] {
            assert!(
                stdout.contains(&want),
                "{}: no {want:?} in:\n{stdout}",
                g.label
            );
        }
        assert!(!String::from_utf8_lossy(&o.stderr).contains(&key));

        // The requests: the user as this generation wants it.
        let bodies = posts(&hs).await;
        assert_eq!(bodies.len(), 3, "{}", g.label);
        for (i, b) in bodies.iter().enumerate() {
            match g.expect_user {
                Some(u) => assert_eq!(b["user"], u, "{}: {b}", g.label),
                None => assert!(b.get("user").is_none(), "{}: {b}", g.label),
            }
            assert_eq!(b["reusable"], i == 2, "{}: {b}", g.label);
            assert_eq!(b["ephemeral"], false);
            let tags: Vec<&str> = b["aclTags"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t.as_str().unwrap())
                .collect();
            let want: Vec<&str> = g.tags_setting.into_iter().collect();
            assert_eq!(tags, want, "{}: the filter's tags go on the key", g.label);
            let exp = OffsetDateTime::parse(
                b["expiration"].as_str().unwrap(),
                &time::format_description::well_known::Rfc3339,
            )
            .unwrap();
            let hours = (exp - OffsetDateTime::now_utc()).whole_minutes();
            assert!((23 * 60..=24 * 60).contains(&hours), "{}: {b}", g.label);
        }
    }
}

#[tokio::test]
async fn enrol_refuses_taken_bad_and_reserved_names_with_exit_2() {
    for g in GENERATIONS {
        let hs = serve(g).await;
        let env = env(&hs, g);
        let taken = fixture(g.nodes)
            .as_object()
            .unwrap()
            .values()
            .next()
            .unwrap()[0]["givenName"]
            .as_str()
            .unwrap()
            .to_owned();
        let o = tart_sync(&env, &["enrol", &taken]);
        assert_eq!(o.status.code(), Some(2), "{}: {}", g.label, text(&o));
        assert!(text(&o).contains("is taken"), "{}", text(&o));
        for bad in ["Bad_Name", "x-", "a.b"] {
            let o = tart_sync(&env, &["enrol", bad]);
            assert_eq!(o.status.code(), Some(2), "{}: {}", g.label, text(&o));
            assert!(text(&o).contains("DNS label"), "{}", text(&o));
        }
        let o = tart_sync(&env, &["enrol", "admin"]);
        assert_eq!(o.status.code(), Some(2), "{}", text(&o));
        assert!(text(&o).contains("routes.reserved"), "{}", text(&o));
        assert!(
            posts(&hs).await.is_empty(),
            "{}: a key was created",
            g.label
        );
    }
}

#[tokio::test]
async fn enrol_needs_a_user_before_0_28_and_tags_that_pass_the_filter() {
    let g = &GENERATIONS[4]; // 0.27: the user is required
    let hs = serve(g).await;
    let mut env = env(&hs, g);
    env.remove("TART_SYNC_HEADSCALE_USER");
    let o = tart_sync(&env, &["enrol", "newtart", "--tags", "tag:tart"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("needs a user"), "{}", text(&o));

    let g = &GENERATIONS[5]; // 0.28, filter tag:tart
    let hs = serve(g).await;
    let env = self::env(&hs, g);
    let o = tart_sync(&env, &["enrol", "newtart", "--tags", "tag:other"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("would not be routed"), "{}", text(&o));
    let o = tart_sync(
        &env,
        &[
            "enrol",
            "newtart",
            "--user",
            "staff",
            "--tags",
            "tag:tart,tag:x",
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    let bodies = posts(&hs).await;
    assert_eq!(bodies.len(), 1);
    assert_eq!(bodies[0]["user"], "2", "{}", bodies[0]);
    assert_eq!(bodies[0]["aclTags"], json!(["tag:tart", "tag:x"]));
}

#[tokio::test]
async fn nodes_lists_every_node_with_its_decision() {
    let g = &GENERATIONS[5]; // 0.28: two TARTs (one offline), a laptop without the tag
    let hs = serve(g).await;
    let env = env(&hs, g);
    let o = tart_sync(&env, &["nodes"]);
    assert!(o.status.success(), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 4, "{out}");
    assert!(lines[1].contains("rhodes") && lines[1].contains("https://tart.test/rhodes/"));
    assert!(
        lines[2].contains("karoo") && lines[2].contains("offline"),
        "{out}"
    );
    assert!(
        lines[3].contains("ops-laptop")
            && lines[3].contains("skipped")
            && lines[3].contains("tag:tart"),
        "{out}"
    );
    let o = tart_sync(&env, &["nodes", "--json"]);
    assert!(o.status.success(), "{}", text(&o));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 3);
    assert_eq!(v[2]["decision"], "skipped");
    assert!(v[2]["reason"].as_str().unwrap().contains("headscale.tags"));
    assert_eq!(v[0]["decision"], "online");
}

/// A site that serves `/docs/*` and `/old*` itself.
const SITE: &str = r#"
{
	admin {$CADDY_ADMIN}
}
{$TART_SITE} {
	handle_path /docs/* {
		respond "site docs" 200
	}
	redir /old* /new 302
	respond "No TART here." 404
}
"#;

#[tokio::test]
async fn enrol_refuses_the_sites_own_paths_read_from_real_caddy() {
    e2e::for_each_version(|v| async move {
        let rig = e2e::sync::Rig::start_with(v, &["rhodes"], SITE)
            .await
            .unwrap();
        rig.hs.set_nodes(&rig.nodes()).await;
        rig.hs.serve_enrolment().await;
        let env = rig.env(&[]);
        for (name, why) in [("docs", "/docs/*"), ("oldies", "/old*")] {
            let o = tart_sync(&env, &["enrol", name, "--tags", "tag:tart"]);
            assert_eq!(o.status.code(), Some(2), "{v:?} {name}: {}", text(&o));
            assert!(text(&o).contains(why), "{v:?} {name}: {}", text(&o));
        }
        let o = tart_sync(&env, &["enrol", "newtart", "--tags", "tag:tart"]);
        assert!(o.status.success(), "{v:?}: {}", text(&o));
        let out = String::from_utf8_lossy(&o.stdout);
        assert!(
            out.contains("checked against routes.reserved and the site's paths (Caddy"),
            "{out}"
        );
        assert!(out.contains(e2e::headscale::DEMO_PREAUTH_KEY), "{out}");
        assert_eq!(rig.caddy.admin_writes(), 0, "{v:?}: enrol wrote to Caddy");
    })
    .await;
}
