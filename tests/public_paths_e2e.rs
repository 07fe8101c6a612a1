//! The owned route sits on a public site: every request path is hostile.
//! These tests send raw request lines (no client that normalises paths) to
//! real Caddy carrying tart-sync's route, in path and host mode, and check
//! that a redirect never leads anywhere but `/<name>/` on the same site.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use e2e::for_each_version;
use e2e::raw::{raw_get, RawAnswer};
use e2e::sync::{once, Rig, DOMAIN};

/// Request targets that tried to turn the `/<name>` → `/<name>/` redirect
/// into an open redirect, or to reach a TART by a path that is not its own.
fn tricks(name: &str) -> Vec<String> {
    let long = "a/".repeat(3000);
    let mut t = vec![
        format!("/{name}"),
        format!("/%2F%2Fevil.example%2F..%2F{name}"),
        format!("//evil.example/../{name}"),
        format!("///evil.example/../{name}"),
        format!("/\\evil.example/../{name}"),
        format!("/%5Cevil.example/../{name}"),
        format!("/%5C%5Cevil.example%2F..%2F{name}"),
        format!("/%252F%252Fevil.example%252F..%252F{name}"),
        format!("/./{name}"),
        format!("/x/../{name}"),
        format!("/%2e%2e/{name}"),
        format!("/%2E/{name}"),
        format!("//{name}"),
        format!("/{name}%2F"),
        format!("/{name}/.."),
        format!("/{}", name.to_uppercase()),
        format!("/%{}", name),
        format!("/évil/../{name}"),
        format!("/%C3%A9vil/..%2F{name}"),
        format!("/{long}{}{name}", "../".repeat(3000)),
        format!("/{name}?next=//evil.example"),
        format!("/{name}#//evil.example"),
        format!("http://evil.example/{name}"),
        format!("/{name}\t"),
        "//evil.example".to_string(),
        "/%2F%2Fevil.example".to_string(),
    ];
    t.sort();
    t.dedup();
    t
}

/// A redirect may only send the browser to `/<name>/` of a routed name.
fn assert_safe(answer: &RawAnswer, target: &str, names: &[&str], what: &str) {
    if let Some(location) = &answer.location {
        let ok = names.iter().any(|n| location == &format!("/{n}/"));
        assert!(
            ok,
            "{what}: GET {target:?} answered {} with Location {location:?}",
            answer.status
        );
    }
}

#[tokio::test]
async fn redirects_never_leave_the_site_in_path_mode() {
    for_each_version(|v| async move {
        let names = ["rhodes", "karoo"];
        let rig = Rig::start(v, &names).await.unwrap();
        rig.hs.set_nodes(&rig.nodes()).await;
        assert!(once(rig.settings(&[])).await, "{v:?}: first sync");
        for name in names {
            // The plain redirect still works, and leads to the TART.
            let plain = raw_get(rig.http_port, DOMAIN, &format!("/{name}")).await;
            assert_eq!(plain.status, 308, "{v:?}: /{name}");
            assert_eq!(plain.location.as_deref(), Some(&*format!("/{name}/")));
            for target in tricks(name) {
                let answer = raw_get(rig.http_port, DOMAIN, &target).await;
                assert_safe(&answer, &target, &names, &format!("{v:?}"));
            }
        }
    })
    .await;
}

#[tokio::test]
async fn redirects_never_leave_the_site_in_host_mode() {
    for_each_version(|v| async move {
        let names = ["rhodes"];
        let rig = Rig::start(v, &names).await.unwrap();
        rig.hs.set_nodes(&rig.nodes()).await;
        assert!(
            once(rig.settings(&[("TART_SYNC_ROUTES_MODE", "host")])).await,
            "{v:?}: first sync"
        );
        let host = format!("rhodes.{DOMAIN}");
        let ok = raw_get(rig.http_port, &host, "/").await;
        assert_eq!(ok.status, 200, "{v:?}: host mode serves the TART");
        for target in tricks("rhodes") {
            for host in [host.as_str(), DOMAIN] {
                let answer = raw_get(rig.http_port, host, &target).await;
                // Host mode writes no redirect of its own: none may appear.
                assert_eq!(
                    answer.location, None,
                    "{v:?}: Host {host}, GET {target:?} answered {}",
                    answer.status
                );
            }
        }
    })
    .await;
}
