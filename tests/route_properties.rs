//! Properties of the route tart-sync writes, checked against real Caddy
//! 2.6.2 and 2.11.x with real requests:
//!
//! 1. For random fleets (names of 1–63 characters, near-duplicates, IPv4 and
//!    IPv6 nodes, online, in grace and offline, up to 2,000 nodes) the route
//!    sends every desired name to its own backend, answers 503 with the
//!    offline page for offline names, and lets every other first segment
//!    fall through to the site.
//! 2. For any raw request path, a redirect's `Location` is `/<name>/` of a
//!    routed name, or there is no redirect.
//!
//! Both run in config mode and in dns mode (`routes.resolve = "dns"`, with
//! tart-sync's responder answering Caddy's lookups; `refresh` 100 ms).
//!
//! Case counts are bounded for `scripts/test` (`PROPTEST_CASES` raises them).

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::Arc;
use std::time::Duration;

use e2e::backend::{fleet_ip, Backend};
use e2e::dns::{dns_env, env_refs, Responder};
use e2e::free_port;
use e2e::headscale::SimNode;
use e2e::raw::raw_get;
use e2e::sync::{Rig, DOMAIN};
use e2e::Version;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use tart_sync::context::Context;
use tart_sync::controller;
use tart_sync::headscale::HeadscaleClient;
use time::OffsetDateTime;

/// IPv4 backends on 127.0.0.2.. plus one on [::1], all on the rig's port.
const V4_BACKENDS: [&str; 6] = ["b0", "b1", "b2", "b3", "b4", "b5"];
const V6_BACKEND: &str = "b6";

fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Liveness {
    Online,
    Grace,
    Offline,
}

#[derive(Debug, Clone)]
struct Tart {
    name: String,
    /// Index into the backends; `V4_BACKENDS.len()` is the IPv6 one.
    backend: usize,
    liveness: Liveness,
}

/// A DNS label of 1–63 characters.
fn label() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z0-9]",
        "[a-z0-9][a-z0-9-]{0,61}[a-z0-9]",
        "[a-z]{1,3}[0-9]{0,2}",
    ]
}

/// Names and near-duplicates of them (a character more or less, `-2`).
fn names() -> impl Strategy<Value = Vec<String>> {
    prop::collection::vec((label(), 0usize..4), 1..700).prop_map(|bases| {
        let mut out = Vec::new();
        for (base, variant) in bases {
            out.push(base.clone());
            let near = match variant {
                1 if base.len() < 61 => Some(format!("{base}-2")),
                2 if base.len() < 63 => Some(format!("{base}x")),
                3 if base.len() > 1 => Some(base[..base.len() - 1].to_string()),
                _ => None,
            };
            out.extend(near.filter(|n| !n.ends_with('-')));
        }
        out.sort();
        out.dedup();
        out.truncate(2000);
        out
    })
}

fn fleet() -> impl Strategy<Value = Vec<Tart>> {
    names().prop_flat_map(|names| {
        let n = names.len();
        (
            Just(names),
            prop::collection::vec((0..=V4_BACKENDS.len(), 0u8..10), n),
        )
            .prop_map(|(names, picks)| {
                names
                    .into_iter()
                    .zip(picks)
                    .map(|(name, (backend, roll))| Tart {
                        name,
                        backend,
                        liveness: match roll {
                            0..=5 => Liveness::Online,
                            6 | 7 => Liveness::Grace,
                            _ => Liveness::Offline,
                        },
                    })
                    .collect()
            })
    })
}

fn backend_ip(i: usize) -> IpAddr {
    if i < V4_BACKENDS.len() {
        IpAddr::V4(fleet_ip(i))
    } else {
        IpAddr::V6(Ipv6Addr::LOCALHOST)
    }
}

fn backend_name(i: usize) -> &'static str {
    V4_BACKENDS.get(i).copied().unwrap_or(V6_BACKEND)
}

fn sim_nodes(fleet: &[Tart]) -> Vec<SimNode> {
    let now = OffsetDateTime::now_utc();
    fleet
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let mut node = SimNode::new(i as u64 + 1, &t.name, backend_ip(t.backend));
            match t.liveness {
                Liveness::Online => {}
                Liveness::Grace => {
                    node.online = false;
                    node.last_seen = now - time::Duration::seconds(5);
                }
                Liveness::Offline => {
                    node.online = false;
                    node.last_seen = now - time::Duration::hours(2);
                }
            }
            node
        })
        .collect()
}

/// A rig with the property fleet's backends, and one sync pass that may
/// replace the whole fleet (the mass-removal guard is for real fleets).
struct Prop {
    rig: Rig,
    _v6: Backend,
    /// dns mode: the context every sync shares, and its responder.
    dns: Option<Responder>,
}

impl Prop {
    async fn start(v: Version, dns: bool) -> Prop {
        let rig = Rig::start(v, &V4_BACKENDS).await.unwrap();
        let v6 = Backend::start(V6_BACKEND, Ipv6Addr::LOCALHOST, rig.upstream_port)
            .await
            .expect("a backend on [::1] at the fleet's port");
        let responder = dns.then(|| {
            let mut extra = dns_env(free_port());
            extra.push(("TART_SYNC_DNS_REFRESH", "100ms".into()));
            Responder::start(rig.settings(&env_refs(&extra)))
        });
        Prop {
            rig,
            _v6: v6,
            dns: responder,
        }
    }

    async fn sync(&self, fleet: &[Tart]) {
        self.rig.hs.set_nodes(&sim_nodes(fleet)).await;
        let ctx: Arc<Context> = match &self.dns {
            Some(r) => r.ctx.clone(),
            None => Context::new(self.rig.settings(&[])),
        };
        let hs = HeadscaleClient::from_settings(&ctx.settings.headscale).unwrap();
        assert!(controller::once(&ctx, &hs, true).await.unwrap(), "sync");
        if self.dns.is_some() {
            // Caddy keeps an answer for `refresh` (100 ms).
            tokio::time::sleep(Duration::from_millis(400)).await;
        }
    }
}

async fn check_fleet(p: &Prop, fleet: &[Tart]) -> Result<(), TestCaseError> {
    p.sync(fleet).await;
    let by_name: BTreeMap<&str, &Tart> = fleet.iter().map(|t| (t.name.as_str(), t)).collect();
    // Every name when the fleet is small, else a spread of 40.
    let step = (fleet.len() / 40).max(1);
    for t in fleet.iter().step_by(step) {
        let answer = raw_get(p.rig.http_port, DOMAIN, &format!("/{}/probe?q=1", t.name)).await;
        match t.liveness {
            Liveness::Online | Liveness::Grace => {
                prop_assert_eq!(answer.status, 200, "{} ({:?})", t.name, t.liveness);
                let v: serde_json::Value = serde_json::from_str(&answer.body).map_err(|e| {
                    TestCaseError::fail(format!("{}: {e}: {}", t.name, answer.body))
                })?;
                prop_assert_eq!(
                    &v["tart"],
                    backend_name(t.backend),
                    "{} went elsewhere",
                    t.name
                );
                prop_assert_eq!(&v["path"], "/probe?q=1");
                // The request's own Host (dns mode rewrites it to ask Caddy's
                // host matcher, and must put it back).
                prop_assert_eq!(&v["host"], DOMAIN);
                prop_assert_eq!(&v["forwarded_prefix"], &*format!("/{}", t.name));
            }
            Liveness::Offline => {
                prop_assert_eq!(answer.status, 503, "{} is offline", t.name);
                let page = format!("TART {} is offline", t.name);
                prop_assert!(answer.body.contains(&page), "{}", answer.body);
            }
        }
        let bare = raw_get(p.rig.http_port, DOMAIN, &format!("/{}", t.name)).await;
        prop_assert_eq!(bare.status, 308);
        prop_assert_eq!(bare.location, Some(format!("/{}/", t.name)));
    }
    // First segments that are not routed fall through to the site.
    let others = fleet
        .iter()
        .step_by(step)
        .flat_map(|t| {
            [
                format!("{}z", t.name),
                format!("z{}", t.name),
                t.name[..t.name.len() - 1].to_string(),
                t.name.to_uppercase(),
            ]
        })
        .filter(|n| !n.is_empty() && !by_name.contains_key(n.as_str()));
    for other in others.take(60) {
        let answer = raw_get(p.rig.http_port, DOMAIN, &format!("/{other}/")).await;
        prop_assert_eq!(answer.status, 404, "/{}/ was not left to the site", other);
        prop_assert!(answer.body.contains("No TART here"), "{}", answer.body);
    }
    Ok(())
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn random_fleets_route_exactly_the_desired_names() {
    let rt = runtime();
    for (v, dns) in Version::ALL
        .into_iter()
        .flat_map(|v| [(v, false), (v, true)])
    {
        if v.binary().is_none() {
            continue;
        }
        let prop = rt.block_on(Prop::start(v, dns));
        let mut runner = TestRunner::new(Config {
            cases: cases(if dns { 6 } else { 10 }),
            failure_persistence: None,
            ..Config::default()
        });
        let result = runner.run(&fleet(), |fleet| rt.block_on(check_fleet(&prop, &fleet)));
        if let Err(e) = result {
            panic!("{v:?} (dns mode: {dns}): {e}");
        }
    }
}

/// Pieces an attacker puts into a path.
fn raw_target() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("/".to_string()),
        Just("//".to_string()),
        Just("%2F".to_string()),
        Just("%2f".to_string()),
        Just("\\".to_string()),
        Just("%5C".to_string()),
        Just("..".to_string()),
        Just(".".to_string()),
        Just("%2E".to_string()),
        Just("%2e%2e".to_string()),
        Just("%252F".to_string()),
        Just("%00".to_string()),
        Just("evil.example".to_string()),
        Just("rhodes".to_string()),
        Just("karoo".to_string()),
        Just("é".to_string()),
        Just("%C3%A9".to_string()),
        Just("?next=//evil.example".to_string()),
        Just("#".to_string()),
        "[A-Za-z0-9-]{1,8}",
    ];
    (any::<bool>(), prop::collection::vec(piece, 1..14)).prop_map(|(slash, pieces)| {
        let path = pieces.concat();
        if slash || !path.starts_with('/') {
            format!("/{path}")
        } else {
            path
        }
    })
}

#[test]
fn any_raw_path_redirects_only_to_a_routed_name() {
    let rt = runtime();
    let names = ["rhodes", "karoo"];
    for (v, dns) in Version::ALL
        .into_iter()
        .flat_map(|v| [(v, false), (v, true)])
    {
        if v.binary().is_none() {
            continue;
        }
        let prop = rt.block_on(Prop::start(v, dns));
        let fleet: Vec<Tart> = names
            .iter()
            .enumerate()
            .map(|(i, n)| Tart {
                name: n.to_string(),
                backend: i,
                liveness: Liveness::Online,
            })
            .collect();
        rt.block_on(prop.sync(&fleet));
        let mut runner = TestRunner::new(Config {
            cases: cases(if dns { 200 } else { 300 }),
            failure_persistence: None,
            ..Config::default()
        });
        let result = runner.run(&raw_target(), |target| {
            let answer = rt.block_on(raw_get(prop.rig.http_port, DOMAIN, &target));
            if let Some(location) = &answer.location {
                prop_assert!(
                    names.iter().any(|n| location == &format!("/{n}/")),
                    "GET {:?} answered {} with Location {:?}",
                    target,
                    answer.status,
                    location
                );
            }
            Ok(())
        });
        if let Err(e) = result {
            panic!("{v:?} (dns mode: {dns}): {e}");
        }
    }
}
