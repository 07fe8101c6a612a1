//! tart-sync end to end: real Caddy 2.6.2 and 2.11.x running Caddyfile.example,
//! headscale served by wiremock, real backends on 127.0.0.x.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::time::{Duration, Instant};

use e2e::backend::fleet_ip;
use e2e::for_each_version;
use e2e::headscale::{fixture, SimNode};
use e2e::sync::{once, Daemon, Rig};
use serde_json::Value;
use tart_sync::context::LastOutcome;
use tart_sync::desired::{Target, Targets};
use time::OffsetDateTime;
use wiremock::ResponseTemplate;

const WAIT: Duration = Duration::from_secs(10);

#[tokio::test]
async fn every_fixture_generation_becomes_routes() {
    for_each_version(|v| async move {
        let rig = Rig::start(v, &["a", "b", "c"]).await.unwrap();
        let ips = [fleet_ip(0), fleet_ip(1), fleet_ip(2)];
        // (fixture, expected: path → who answers). Backends answer with their own name.
        let cases: [(&str, &[(&str, &str)]); 4] = [
            (
                "v0.22-machines.json",
                &[("/rhodes/", "a"), ("/zm-tart/", "503")],
            ),
            (
                "v0.23-nodes.json",
                &[("/rhodes/", "a"), ("/mikes-laptop/", "404")],
            ), // no tag:tart
            ("v0.26-nodes.json", &[("/signal-hill/", "a")]),
            (
                "v0.28-nodes.json",
                &[
                    ("/rhodes/", "a"),
                    ("/karoo/", "503"),
                    ("/ops-laptop/", "404"),
                ],
            ), // expired
        ];
        for (file, expect) in cases {
            rig.hs.set_fixture(fixture(file, &ips)).await;
            let settings = rig.settings(&[
                ("TART_SYNC_HEADSCALE_TAGS", "tag:tart"),
                ("TART_SYNC_ROUTES_OFFLINE_GRACE", "0s"),
            ]);
            assert!(once(settings).await, "{v:?} {file}: once did not converge");
            for (path, who) in expect {
                assert_eq!(rig.who(path).await, *who, "{v:?} {file} {path}");
            }
        }
        // The proxy strips the prefix and says so; /name redirects to /name/; unknown names reach the site.
        let (status, body) = rig.get("/rhodes/deep/path?q=1").await;
        assert_eq!(status, 200);
        let j: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(j["path"], "/deep/path?q=1", "{v:?}");
        assert_eq!(j["forwarded_prefix"], "/rhodes", "{v:?}");
        assert_eq!(
            rig.get("/rhodes").await,
            (308, "location=/rhodes/".to_string()),
            "{v:?}"
        );
        let (status, body) = rig.get("/nobody/").await;
        assert_eq!(
            (status, body.contains("No TART here")),
            (404, true),
            "{v:?}: {body}"
        );
        let (status, body) = rig.get("/karoo/").await;
        assert_eq!(status, 503);
        assert!(body.contains("TART karoo is offline"), "{v:?}: {body}");
    })
    .await;
}

#[tokio::test]
async fn online_offline_grace_back_rename_and_new_ip() {
    for_each_version(|v| async move {
        let rig = Rig::start(v, &["alpha", "beta", "gamma"]).await.unwrap();
        let mut nodes = rig.nodes();
        nodes.truncate(2); // alpha (127.0.0.2), beta (127.0.0.3); gamma's backend waits at 127.0.0.4
        rig.hs.set_nodes(&nodes).await;
        let daemon = Daemon::start(rig.settings(&[("TART_SYNC_ROUTES_OFFLINE_GRACE", "2s")]));
        assert!(
            rig.wait_for("/alpha/", "alpha", WAIT).await,
            "{v:?}: alpha never routed"
        );
        assert_eq!(rig.who("/beta/").await, "beta");

        // Offline now: kept during the grace, then a 503 page.
        nodes[0].online = false;
        nodes[0].last_seen = OffsetDateTime::now_utc();
        rig.hs.set_nodes(&nodes).await;
        tokio::time::sleep(Duration::from_millis(800)).await;
        assert_eq!(
            rig.who("/alpha/").await,
            "alpha",
            "{v:?}: route kept during offline_grace"
        );
        assert!(
            rig.wait_for("/alpha/", "503", WAIT).await,
            "{v:?}: no 503 after the grace"
        );

        // Back online.
        nodes[0].online = true;
        rig.hs.set_nodes(&nodes).await;
        assert!(
            rig.wait_for("/alpha/", "alpha", WAIT).await,
            "{v:?}: not proxied again"
        );

        // Rename: the route moves to the new name, the old name falls through to the site.
        nodes[1].given_name = "beta-2".into();
        rig.hs.set_nodes(&nodes).await;
        assert!(
            rig.wait_for("/beta-2/", "beta", WAIT).await,
            "{v:?}: rename not applied"
        );
        assert_eq!(rig.who("/beta/").await, "404");

        // New IP: same node id, now served by the backend at 127.0.0.4.
        nodes[1].ip = fleet_ip(2).to_string();
        rig.hs.set_nodes(&nodes).await;
        assert!(
            rig.wait_for("/beta-2/", "gamma", WAIT).await,
            "{v:?}: IP change not applied"
        );

        // Leaving headscale: falls through to the site.
        nodes.remove(1);
        rig.hs.set_nodes(&nodes).await;
        assert!(
            rig.wait_for("/beta-2/", "404", WAIT).await,
            "{v:?}: removed node still routed"
        );
        daemon.stop().await;
        // Stopping leaves the routes in place.
        assert_eq!(rig.who("/alpha/").await, "alpha");
    })
    .await;
}

/// The config minus tart-sync's own route.
async fn foreign_part(rig: &Rig) -> Value {
    let mut cfg: Value = rig.caddy.client().config("").get().await.unwrap();
    fn strip(v: &mut Value) {
        match v {
            Value::Array(a) => {
                a.retain(|x| x.get("@id").and_then(Value::as_str) != Some("tart-sync"));
                a.iter_mut().for_each(strip);
            }
            Value::Object(o) => o.values_mut().for_each(strip),
            _ => {}
        }
    }
    strip(&mut cfg);
    cfg
}

#[tokio::test]
async fn foreign_config_is_untouched_and_idle_cycles_write_nothing() {
    for_each_version(|v| async move {
        let rig = Rig::start(v, &["alpha", "beta"]).await.unwrap();
        // A foreign route added by hand inside the site.
        let c = rig.caddy.client();
        let servers: Value = c.config("apps/http/servers").get().await.unwrap();
        let srv = servers.as_object().unwrap().keys().next().unwrap().clone();
        c.config(&format!(
            "apps/http/servers/{srv}/routes/0/handle/0/routes/0"
        ))
        .put(
            &serde_json::json!({"@id": "hand-made", "match": [{"path": ["/hand/*"]}],
                "handle": [{"handler": "static_response", "body": "by hand"}]}),
        )
        .await
        .unwrap();
        let before = foreign_part(&rig).await;

        let mut nodes = rig.nodes();
        rig.hs.set_nodes(&nodes).await;
        let daemon = Daemon::start(rig.settings(&[]));
        assert!(rig.wait_for("/beta/", "beta", WAIT).await, "{v:?}");
        // Churn a little, then settle.
        nodes[1].given_name = "beta-x".into();
        rig.hs.set_nodes(&nodes).await;
        assert!(rig.wait_for("/beta-x/", "beta", WAIT).await, "{v:?}");
        assert_eq!(rig.get("/hand/x").await, (200, "by hand".to_string()));
        assert_eq!(
            foreign_part(&rig).await,
            before,
            "{v:?}: config tart-sync does not own changed"
        );

        // Ten idle cycles (poll interval 200 ms): zero writes.
        let writes = rig.caddy.admin_writes();
        tokio::time::sleep(Duration::from_millis(2200)).await;
        assert!(daemon.ctx.metrics.cycles() >= 10);
        assert_eq!(
            rig.caddy.admin_writes(),
            writes,
            "{v:?}: idle cycles wrote to Caddy"
        );
        daemon.stop().await;
    })
    .await;
}

#[tokio::test]
async fn fifty_changes_in_one_poll_are_one_write() {
    for_each_version(|v| async move {
        let rig = Rig::start(v, &["alpha"]).await.unwrap();
        let mut nodes: Vec<SimNode> = (0..60)
            .map(|i| SimNode::new(i + 1, &format!("tart-{i:03}"), fleet_ip(0)))
            .collect();
        rig.hs.set_nodes(&nodes).await;
        assert!(once(rig.settings(&[])).await);
        let writes = rig.caddy.admin_writes();
        // 50 changes: 25 nodes renamed and 25 new ones (renaming more than
        // half at once would be held back by the mass-removal guard, which
        // counts the names that stop being proxied).
        for n in nodes.iter_mut().skip(25).take(25) {
            n.given_name = format!("{}-new", n.given_name);
        }
        nodes.extend((60..85).map(|i| SimNode::new(i + 1, &format!("tart-{i:03}"), fleet_ip(0))));
        rig.hs.set_nodes(&nodes).await;
        assert!(once(rig.settings(&[])).await);
        assert_eq!(
            rig.caddy.admin_writes() - writes,
            1,
            "{v:?}: 50 changes must be one write"
        );
        assert_eq!(rig.who("/tart-049-new/").await, "alpha");
        assert_eq!(rig.who("/tart-049/").await, "404");
        assert_eq!(rig.who("/tart-055/").await, "alpha");
        assert_eq!(rig.who("/tart-084/").await, "alpha");
        // A pass with nothing to do writes nothing.
        assert!(once(rig.settings(&[])).await);
        assert_eq!(rig.caddy.admin_writes() - writes, 1);
    })
    .await;
}

#[tokio::test]
async fn caddy_restart_and_headscale_failures_lose_nothing() {
    for_each_version(|v| async move {
        let mut rig = Rig::start(v, &["alpha", "beta"]).await.unwrap();
        rig.hs.set_nodes(&rig.nodes()).await;
        let daemon = Daemon::start(rig.settings(&[]));
        assert!(rig.wait_for("/alpha/", "alpha", WAIT).await, "{v:?}");

        // Caddy killed and restarted from Caddyfile.example: routes back within about one interval.
        rig.caddy.restart();
        let t = Instant::now();
        assert!(
            rig.wait_for("/alpha/", "alpha", WAIT).await,
            "{v:?}: routes not restored"
        );
        assert!(
            t.elapsed() < Duration::from_secs(3),
            "{v:?}: restored after {:?}",
            t.elapsed()
        );

        // headscale failing in every way: routes stay.
        let failures = [
            // First, while the backoff is short: an authentication failure.
            ResponseTemplate::new(401).set_body_string("Unauthorized"),
            ResponseTemplate::new(500)
                .set_body_json(serde_json::json!({"code": 2, "message": "boom", "details": []})),
            ResponseTemplate::new(200)
                .set_body_string("{\"nodes\": [{\"id\": \"1\", \"givenName\": \"al"),
            ResponseTemplate::new(200)
                .set_body_json(serde_json::json!({"nodes": []}))
                .set_delay(Duration::from_secs(3)),
        ];
        for f in failures {
            rig.hs.fail_with(f).await;
            tokio::time::sleep(Duration::from_millis(2500)).await;
            assert_eq!(
                rig.who("/alpha/").await,
                "alpha",
                "{v:?}: route lost during a headscale failure"
            );
            assert_eq!(rig.who("/beta/").await, "beta");
            let st = daemon.ctx.snapshot();
            assert!(
                st.headscale.last_error.is_some(),
                "{v:?}: failure not reported"
            );
        }
        let auth_errors = daemon.ctx.metrics.errors("headscale_auth");
        assert!(
            auth_errors >= 1,
            "{v:?}: the 401 was not counted as an authentication failure"
        );

        // Caddy restarted while headscale is down: the last applied routes come back anyway.
        rig.caddy.restart();
        assert!(
            rig.wait_for("/alpha/", "alpha", WAIT).await,
            "{v:?}: not restored during a headscale outage"
        );

        // Recovery.
        let mut nodes = rig.nodes();
        nodes[1].given_name = "beta-back".into();
        rig.hs.set_nodes(&nodes).await;
        assert!(
            rig.wait_for("/beta-back/", "beta", Duration::from_secs(70))
                .await,
            "{v:?}: no recovery"
        );
        assert!(daemon.ctx.snapshot().headscale.last_error.is_none());
        daemon.stop().await;
    })
    .await;
}

#[tokio::test]
async fn websocket_survives_another_tarts_change() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    for_each_version(|v| async move {
        let rig = Rig::start(v, &["alpha", "beta"]).await.unwrap();
        let mut nodes = rig.nodes();
        rig.hs.set_nodes(&nodes).await;
        assert!(
            once(rig.settings(&[])).await,
            "{v:?}: config must load (2.6 has no stream_close_delay)"
        );
        let live: Value = rig.caddy.client().id("tart-sync").get().await.unwrap();
        let has_delay = live.to_string().contains("stream_close_delay");
        assert_eq!(
            has_delay,
            v == e2e::Version::Latest,
            "{v:?}: stream_close_delay only where supported"
        );

        let mut req =
            tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(
                format!("ws://127.0.0.1:{}/alpha/ws", rig.http_port),
            )
            .unwrap();
        req.headers_mut()
            .insert("host", "tart.test".parse().unwrap());
        let (mut ws, _) = tokio_tungstenite::connect_async(req).await.unwrap();
        ws.send(Message::Text("one".into())).await.unwrap();
        let reply = tokio::time::timeout(WAIT, ws.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(reply.into_text().unwrap().as_str(), "alpha:one");

        // Another TART changes: one write, one Caddy reload.
        nodes[1].given_name = "beta-moved".into();
        rig.hs.set_nodes(&nodes).await;
        let writes = rig.caddy.admin_writes();
        assert!(once(rig.settings(&[])).await);
        assert_eq!(rig.caddy.admin_writes(), writes + 1);
        tokio::time::sleep(Duration::from_millis(300)).await;

        let survived = async {
            ws.send(Message::Text("two".into())).await.ok()?;
            let r = tokio::time::timeout(Duration::from_secs(3), ws.next())
                .await
                .ok()??
                .ok()?;
            r.into_text().ok().map(|t| t.to_string())
        }
        .await;
        match v {
            e2e::Version::Latest => assert_eq!(
                survived.as_deref(),
                Some("alpha:two"),
                "WebSocket closed by the reload"
            ),
            // 2.6 cannot keep WebSockets across reloads (no stream_close_delay); its config still loads.
            e2e::Version::V2_6 => assert_ne!(
                survived.as_deref(),
                Some("alpha:two"),
                "2.6 kept the WebSocket?"
            ),
        }
    })
    .await;
}

#[tokio::test]
async fn a_mass_removal_is_held_for_the_grace_then_applied() {
    for_each_version(|v| async move {
        let rig = Rig::start(v, &["a1", "a2", "a3", "a4"]).await.unwrap();
        let mut nodes = rig.nodes();
        rig.hs.set_nodes(&nodes).await;
        let daemon = Daemon::start(rig.settings(&[("TART_SYNC_ROUTES_OFFLINE_GRACE", "2s")]));
        assert!(rig.wait_for("/a4/", "a4", WAIT).await, "{v:?}");
        // headscale restarted: every node reads offline, last seen long ago.
        for n in &mut nodes {
            n.online = false;
            n.last_seen = OffsetDateTime::now_utc() - time::Duration::hours(1);
        }
        rig.hs.set_nodes(&nodes).await;
        tokio::time::sleep(Duration::from_millis(1000)).await;
        assert_eq!(
            rig.who("/a1/").await,
            "a1",
            "{v:?}: mass removal applied at once"
        );
        let st = daemon.ctx.snapshot();
        assert_eq!(st.caddies[0].last_outcome, LastOutcome::Held, "{v:?}");
        // The same picture for offline_grace: applied.
        assert!(
            rig.wait_for("/a1/", "503", WAIT).await,
            "{v:?}: held forever"
        );
        assert_eq!(rig.who("/a4/").await, "503");
        daemon.stop().await;
    })
    .await;
}

#[tokio::test]
async fn two_instances_converge_and_do_not_fight() {
    for_each_version(|v| async move {
        let rig = Rig::start(v, &["alpha", "beta", "gamma"]).await.unwrap();
        let mut nodes = rig.nodes();
        nodes[2].online = false;
        nodes[2].last_seen = OffsetDateTime::now_utc() - time::Duration::seconds(1);
        rig.hs.set_nodes(&nodes).await;
        let settings = rig.settings(&[("TART_SYNC_ROUTES_OFFLINE_GRACE", "3s")]);
        let a = Daemon::start(settings.clone());
        tokio::time::sleep(Duration::from_millis(700)).await; // the second one starts later: it saw less
        let b = Daemon::start(settings);
        assert!(
            rig.wait_for("/gamma/", "gamma", WAIT).await,
            "{v:?}: grace from lastSeen"
        );
        assert!(rig.wait_for("/gamma/", "503", WAIT).await, "{v:?}");
        nodes[0].given_name = "alpha-2".into();
        rig.hs.set_nodes(&nodes).await;
        assert!(rig.wait_for("/alpha-2/", "alpha", WAIT).await, "{v:?}");
        tokio::time::sleep(Duration::from_millis(500)).await;
        let writes = rig.caddy.admin_writes();
        tokio::time::sleep(Duration::from_millis(2000)).await;
        assert_eq!(
            rig.caddy.admin_writes(),
            writes,
            "{v:?}: two instances keep rewriting each other"
        );
        a.stop().await;
        b.stop().await;
    })
    .await;
}

#[tokio::test]
async fn two_instances_with_different_settings_back_off_instead_of_fighting() {
    for_each_version(|v| async move {
        let rig = Rig::start(v, &["alpha", "beta"]).await.unwrap();
        rig.hs.set_nodes(&rig.nodes()).await;
        let a = Daemon::start(rig.settings(&[]));
        let other_port = (rig.upstream_port + 1).to_string();
        let b = Daemon::start(rig.settings(&[("TART_SYNC_ROUTES_UPSTREAM_PORT", &other_port)]));
        let writes = rig.caddy.admin_writes();
        let started = Instant::now();
        let mut contested = false;
        // 8 s at a 200 ms poll interval: 40 cycles each, which used to be
        // about 40 writes (each a full reload) as each undid the other, and
        // 9 to 14 while each instance forgot the count whenever it saw its
        // own route during the other one's quiet time.
        while started.elapsed() < Duration::from_secs(8) {
            contested |= [&a, &b]
                .iter()
                .any(|d| d.ctx.snapshot().caddies[0].last_outcome == LastOutcome::Contested);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let fought = rig.caddy.admin_writes() - writes;
        eprintln!("{v:?}: {fought} writes in 8 s");
        assert!(
            contested,
            "{v:?}: neither instance noticed the other writer"
        );
        assert!(
            fought <= 10,
            "{v:?}: {fought} writes in 8 s; the instances should back off"
        );
        a.stop().await;
        b.stop().await;
    })
    .await;
}

#[tokio::test]
async fn host_mode_routes_names_as_subdomains_and_a_mode_switch_moves_the_route() {
    for_each_version(|v| async move {
        let rig = Rig::start(v, &["alpha", "beta"]).await.unwrap();
        let mut nodes = rig.nodes();
        nodes[1].online = false;
        nodes[1].last_seen = OffsetDateTime::now_utc() - time::Duration::hours(1);
        rig.hs.set_nodes(&nodes).await;
        assert!(
            once(rig.settings(&[("TART_SYNC_ROUTES_MODE", "host")])).await,
            "{v:?}"
        );
        let (status, body) = rig.get_host("alpha.tart.test", "/some/path").await;
        assert_eq!(status, 200, "{v:?}: {body}");
        let j: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(
            (j["tart"].as_str(), j["path"].as_str()),
            (Some("alpha"), Some("/some/path"))
        );
        let (status, body) = rig.get_host("beta.tart.test", "/").await;
        assert_eq!(status, 503, "{v:?}: {body}");
        let (status, body) = rig.get_host("nobody.tart.test", "/").await;
        assert_eq!(
            (status, body.contains("No TART with this name")),
            (404, true),
            "{v:?}: {body}"
        );
        // The path-mode site is untouched.
        assert_eq!(rig.get("/alpha/").await.0, 404);
        // Restarted in path mode while Caddy keeps running: the route that
        // preceded the wildcard site (after the path site) moves before the
        // path site; patched in place, it would never see a request.
        assert!(once(rig.settings(&[])).await, "{v:?}");
        assert_eq!(rig.who("/alpha/").await, "alpha", "{v:?}");
        assert_eq!(
            rig.get_host("alpha.tart.test", "/").await.0,
            404,
            "{v:?}: host mode is gone"
        );
        // And back to host mode: the route precedes the wildcard site again.
        assert!(
            once(rig.settings(&[("TART_SYNC_ROUTES_MODE", "host")])).await,
            "{v:?}"
        );
        assert_eq!(rig.get_host("alpha.tart.test", "/").await.0, 200, "{v:?}");
        assert_eq!(rig.get("/alpha/").await.0, 404, "{v:?}");
    })
    .await;
}

#[tokio::test]
async fn each_caddy_is_reconciled_independently() {
    let Some(rig) = Rig::start(e2e::Version::Latest, &["alpha"]).await else {
        return;
    };
    let port = e2e::free_port();
    let (site, wildcard) = (
        format!("http://tart.test:{port}"),
        format!("http://*.tart.test:{port}"),
    );
    let Some(other) = e2e::Caddy::start_caddyfile(
        e2e::Version::V2_6,
        &e2e::sync::caddyfile_example(),
        &[("TART_SITE", &site), ("TART_WILDCARD_SITE", &wildcard)],
    ) else {
        return;
    };
    rig.hs.set_nodes(&rig.nodes()).await;
    let dead = format!("127.0.0.1:{}", e2e::free_port());
    let admins = format!("{dead},{},{}", rig.caddy.admin, other.admin);
    let daemon = Daemon::start(rig.settings(&[("TART_SYNC_CADDY_ADMIN", &admins)]));
    assert!(
        rig.wait_for("/alpha/", "alpha", WAIT).await,
        "a dead Caddy held the others back"
    );
    let synced = e2e::eventually(WAIT, || async {
        other.client().id("tart-sync").get::<Value>().await.ok()
    })
    .await;
    assert!(synced.is_some(), "the 2.6 Caddy was not synced");
    let st = daemon.ctx.snapshot();
    assert!(
        !st.caddies[0].reachable && st.caddies[0].last_error.is_some(),
        "{:?}",
        st.caddies[0]
    );
    assert!(st.caddies[1].last_error.is_none());
    daemon.stop().await;
}

#[tokio::test]
async fn idle_cycles_read_only_the_stamp_and_a_full_check_undoes_hand_edits() {
    use tart_sync::reconcile::{Instance, Outcome};
    for_each_version(|v| async move {
        let rig = Rig::start(v, &["alpha", "beta"]).await.unwrap();
        let settings = rig.settings(&[]);
        let targets: Targets = [
            (
                "alpha".to_string(),
                Target::Dial(format!("{}:{}", fleet_ip(0), rig.upstream_port)),
            ),
            (
                "beta".to_string(),
                Target::Dial(format!("{}:{}", fleet_ip(1), rig.upstream_port)),
            ),
        ]
        .into();
        let mut inst = Instance::new(&rig.caddy.admin, &settings.caddy).unwrap();
        let out = inst
            .reconcile(&targets, &settings.routes, false)
            .await
            .unwrap();
        assert!(matches!(out, Outcome::Installed { .. }), "{v:?}: {out:?}");
        // The route sits right before the site, in the server's own routes.
        let servers: Value = rig
            .caddy
            .client()
            .config("apps/http/servers")
            .get()
            .await
            .unwrap();
        let srv = servers.as_object().unwrap().values().next().unwrap();
        assert_eq!(srv["routes"][0]["@id"], "tart-sync", "{v:?}");
        assert_eq!(srv["routes"][1]["match"][0]["host"][0], "tart.test");

        // Someone edits a mapping by hand (not the stamp): alpha now points at beta's backend.
        let c = rig.caddy.client();
        let bucket: Value = c.id("tart-sync-bucket-0").get().await.unwrap();
        let i = bucket["mappings"]
            .as_array()
            .unwrap()
            .iter()
            .position(|m| m["input"] == "alpha")
            .unwrap();
        c.id("tart-sync-bucket-0")
            .at(&format!("mappings/{i}/outputs/0"))
            .patch(&format!("{}:{}", fleet_ip(1), rig.upstream_port))
            .await
            .unwrap();
        assert_eq!(rig.who("/alpha/").await, "beta");
        // An idle cycle reads only the stamp (cheap) and does not notice ...
        let writes = rig.caddy.admin_writes();
        let out = inst
            .reconcile(&targets, &settings.routes, false)
            .await
            .unwrap();
        assert_eq!(out, Outcome::Unchanged, "{v:?}");
        assert_eq!(rig.caddy.admin_writes(), writes);
        // ... the periodic full comparison does, and puts it back in one write.
        inst.set_full_check_every(Duration::ZERO);
        let out = inst
            .reconcile(&targets, &settings.routes, false)
            .await
            .unwrap();
        assert!(matches!(out, Outcome::Updated(_)), "{v:?}: {out:?}");
        assert_eq!(rig.caddy.admin_writes(), writes + 1);
        assert_eq!(rig.who("/alpha/").await, "alpha");
    })
    .await;
}
