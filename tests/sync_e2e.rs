//! tart-sync end to end: real Caddy 2.6.2 and 2.11.x running Caddyfile.example,
//! headscale served by wiremock, real backends on 127.0.0.x.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::time::{Duration, Instant};

use e2e::backend::fleet_ip;
use e2e::headscale::{fixture, SimNode};
use e2e::sync::{once, Daemon, Rig};
use e2e::for_each_version;
use serde_json::Value;
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
            ("v0.22-machines.json", &[("/rhodes/", "a"), ("/zm-tart/", "503")]),
            ("v0.23-nodes.json", &[("/rhodes/", "a"), ("/mikes-laptop/", "404")]), // no tag:tart
            ("v0.26-nodes.json", &[("/signal-hill/", "a")]),
            ("v0.28-nodes.json", &[("/rhodes/", "a"), ("/karoo/", "503"), ("/ops-laptop/", "404")]), // expired
        ];
        for (file, expect) in cases {
            rig.hs.set_fixture(fixture(file, &ips)).await;
            let settings = rig.settings(&[("TART_SYNC_HEADSCALE_TAGS", "tag:tart"), ("TART_SYNC_ROUTES_OFFLINE_GRACE", "0s")]);
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
        assert_eq!(rig.get("/rhodes").await, (308, "location=/rhodes/".to_string()), "{v:?}");
        let (status, body) = rig.get("/nobody/").await;
        assert_eq!((status, body.contains("No TART here")), (404, true), "{v:?}: {body}");
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
        assert!(rig.wait_for("/alpha/", "alpha", WAIT).await, "{v:?}: alpha never routed");
        assert_eq!(rig.who("/beta/").await, "beta");

        // Offline now: kept during the grace, then a 503 page.
        nodes[0].online = false;
        nodes[0].last_seen = OffsetDateTime::now_utc();
        rig.hs.set_nodes(&nodes).await;
        tokio::time::sleep(Duration::from_millis(800)).await;
        assert_eq!(rig.who("/alpha/").await, "alpha", "{v:?}: route kept during offline_grace");
        assert!(rig.wait_for("/alpha/", "503", WAIT).await, "{v:?}: no 503 after the grace");

        // Back online.
        nodes[0].online = true;
        rig.hs.set_nodes(&nodes).await;
        assert!(rig.wait_for("/alpha/", "alpha", WAIT).await, "{v:?}: not proxied again");

        // Rename: the route moves to the new name, the old name falls through to the site.
        nodes[1].given_name = "beta-2".into();
        rig.hs.set_nodes(&nodes).await;
        assert!(rig.wait_for("/beta-2/", "beta", WAIT).await, "{v:?}: rename not applied");
        assert_eq!(rig.who("/beta/").await, "404");

        // New IP: same node id, now served by the backend at 127.0.0.4.
        nodes[1].ip = fleet_ip(2).to_string();
        rig.hs.set_nodes(&nodes).await;
        assert!(rig.wait_for("/beta-2/", "gamma", WAIT).await, "{v:?}: IP change not applied");

        // Leaving headscale: falls through to the site.
        nodes.remove(1);
        rig.hs.set_nodes(&nodes).await;
        assert!(rig.wait_for("/beta-2/", "404", WAIT).await, "{v:?}: removed node still routed");
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
        c.config(&format!("apps/http/servers/{srv}/routes/0/handle/0/routes/0"))
            .put(&serde_json::json!({"@id": "hand-made", "match": [{"path": ["/hand/*"]}],
                "handle": [{"handler": "static_response", "body": "by hand"}]}))
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
        assert_eq!(foreign_part(&rig).await, before, "{v:?}: config tart-sync does not own changed");

        // Ten idle cycles (poll interval 200 ms): zero writes.
        let writes = rig.caddy.admin_writes();
        tokio::time::sleep(Duration::from_millis(2200)).await;
        assert!(daemon.ctx.metrics.lock().unwrap().cycles >= 10);
        assert_eq!(rig.caddy.admin_writes(), writes, "{v:?}: idle cycles wrote to Caddy");
        daemon.stop().await;
    })
    .await;
}

#[tokio::test]
async fn fifty_changes_in_one_poll_are_one_write() {
    for_each_version(|v| async move {
        let rig = Rig::start(v, &["alpha"]).await.unwrap();
        let mut nodes: Vec<SimNode> = (0..60).map(|i| SimNode::new(i + 1, &format!("tart-{i:03}"), fleet_ip(0))).collect();
        rig.hs.set_nodes(&nodes).await;
        assert!(once(rig.settings(&[])).await);
        let writes = rig.caddy.admin_writes();
        for n in nodes.iter_mut().take(50) {
            n.given_name = format!("{}-new", n.given_name);
        }
        rig.hs.set_nodes(&nodes).await;
        assert!(once(rig.settings(&[])).await);
        assert_eq!(rig.caddy.admin_writes() - writes, 1, "{v:?}: 50 changes must be one write");
        assert_eq!(rig.who("/tart-049-new/").await, "alpha");
        assert_eq!(rig.who("/tart-049/").await, "404");
        assert_eq!(rig.who("/tart-055/").await, "alpha");
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
        assert!(rig.wait_for("/alpha/", "alpha", WAIT).await, "{v:?}: routes not restored");
        assert!(t.elapsed() < Duration::from_secs(3), "{v:?}: restored after {:?}", t.elapsed());

        // headscale failing in every way: routes stay.
        let failures = [
            ResponseTemplate::new(500).set_body_json(serde_json::json!({"code": 2, "message": "boom", "details": []})),
            ResponseTemplate::new(401).set_body_string("Unauthorized"),
            ResponseTemplate::new(200).set_body_string("{\"nodes\": [{\"id\": \"1\", \"givenName\": \"al"),
            ResponseTemplate::new(200).set_body_json(serde_json::json!({"nodes": []})).set_delay(Duration::from_secs(3)),
        ];
        for f in failures {
            rig.hs.fail_with(f).await;
            tokio::time::sleep(Duration::from_millis(1500)).await;
            assert_eq!(rig.who("/alpha/").await, "alpha", "{v:?}: route lost during a headscale failure");
            assert_eq!(rig.who("/beta/").await, "beta");
            let st = daemon.ctx.snapshot();
            assert!(st.headscale.last_error.is_some(), "{v:?}: failure not reported");
        }
        let auth_errors = daemon.ctx.metrics.lock().unwrap().errors.get("headscale_auth").copied().unwrap_or(0);
        assert!(auth_errors >= 1, "{v:?}: the 401 was not counted as an authentication failure");

        // Caddy restarted while headscale is down: the last applied routes come back anyway.
        rig.caddy.restart();
        assert!(rig.wait_for("/alpha/", "alpha", WAIT).await, "{v:?}: not restored during a headscale outage");

        // Recovery.
        let mut nodes = rig.nodes();
        nodes[1].given_name = "beta-back".into();
        rig.hs.set_nodes(&nodes).await;
        assert!(rig.wait_for("/beta-back/", "beta", Duration::from_secs(70)).await, "{v:?}: no recovery");
        assert!(daemon.ctx.snapshot().headscale.last_error.is_none());
        daemon.stop().await;
    })
    .await;
}
