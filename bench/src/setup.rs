//! What the parts set up: Caddy from `Caddyfile.example`, tart-sync's
//! environment, the fleets of parts 1–2 ([`Fleet`]) and the live daemon of
//! parts 3–4 ([`Live`]); and the small HTTP helpers they share.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use e2e::backend::{fleet_ip, Backend};
use e2e::headscale::API_KEY;
use e2e::sync::{caddyfile_example, DOMAIN};
use e2e::{free_port, temp_dir, Caddy, TempDir, Version};
use serde_json::Value;
use tart_sync::config::{RouteSettings, Settings};
use tart_sync::desired::{Target, Targets};
use tart_sync::reconcile::{Instance, Outcome};

use crate::daemon::{self, Daemon};
use crate::naive::{self, Placement};
use crate::standin::StandIn;
use crate::{err, names, Options, Res};

/// A reqwest client without pooling (every Caddy reload closes kept-alive connections).
pub fn http_client() -> Res<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(5))
        .build()?)
}

/// GET `http://addr/path` with this Host: status and body, or `None` on a transport error.
pub async fn get(
    http: &reqwest::Client,
    addr: SocketAddr,
    host: &str,
    path: &str,
) -> Option<(u16, String)> {
    let r = http
        .get(format!("http://{addr}{path}"))
        .header("host", host)
        .send()
        .await
        .ok()?;
    let status = r.status().as_u16();
    Some((status, r.text().await.unwrap_or_default()))
}

/// Waits until `path` on the site answers `want`, counting from `since`:
/// the time it took (ms), or `None` once `limit` has passed. Probes every 5 ms.
pub async fn wait_status(
    http: &reqwest::Client,
    addr: SocketAddr,
    path: &str,
    want: u16,
    since: Instant,
    limit: Duration,
) -> Option<f64> {
    wait_status_at(http, addr, DOMAIN, path, want, since, limit).await
}

/// [`wait_status`] with `Host: <host>`.
pub async fn wait_status_at(
    http: &reqwest::Client,
    addr: SocketAddr,
    host: &str,
    path: &str,
    want: u16,
    since: Instant,
    limit: Duration,
) -> Option<f64> {
    loop {
        if get(http, addr, host, path).await.map(|r| r.0) == Some(want) {
            return Some(since.elapsed().as_secs_f64() * 1000.0);
        }
        if since.elapsed() > limit {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Caddy 2.11 running `Caddyfile.example` with the site on a free port.
pub fn site_caddy() -> Res<(Caddy, SocketAddr)> {
    let port = free_port();
    let site = format!("http://{DOMAIN}:{port}");
    let wildcard = format!("http://*.{DOMAIN}:{port}");
    let caddy = Caddy::start_caddyfile(
        Version::Latest,
        &caddyfile_example(),
        &[("TART_SITE", &site), ("TART_WILDCARD_SITE", &wildcard)],
    )
    .ok_or_else(|| err("CADDY_BIN_LATEST is not set"))?;
    Ok((caddy, SocketAddr::new(Ipv4Addr::LOCALHOST.into(), port)))
}

/// The config path of the site's subroute routes and of the server's routes
/// (where tart-sync's route sits, just before the site).
pub fn site_paths(config: &Value) -> Res<(String, String)> {
    let site = tart_sync::reconcile::find_site(&config["apps"]["http"]["servers"], DOMAIN)
        .ok_or_else(|| err("no site in Caddy's config"))?;
    let server_routes = site.rsplit_once('/').map_or("", |(p, _)| p).to_string();
    Ok((format!("{site}/handle/0/routes"), server_routes))
}

/// The routes array at a config path (`apps/http/…`) of a whole config.
pub fn routes_at<'a>(config: &'a mut Value, path: &str) -> Res<&'a mut Vec<Value>> {
    config
        .pointer_mut(&format!("/{path}"))
        .and_then(Value::as_array_mut)
        .ok_or_else(|| err(format!("no routes at {path}")))
}

/// tart-sync's environment for this Caddy and headscale.
pub fn tart_env(
    hs_url: &str,
    admin: &str,
    upstream_port: u16,
    extra: &[(&str, String)],
) -> BTreeMap<String, String> {
    let status = format!("127.0.0.1:{}", free_port());
    let base = [
        ("TART_SYNC_HEADSCALE_URL", hs_url.to_string()),
        ("TART_SYNC_HEADSCALE_API_KEY", API_KEY.to_string()),
        ("TART_SYNC_CADDY_ADMIN", admin.to_string()),
        ("TART_SYNC_ROUTES_DOMAIN", DOMAIN.to_string()),
        ("TART_SYNC_ROUTES_UPSTREAM_PORT", upstream_port.to_string()),
        ("TART_SYNC_STATUS_LISTEN", status),
        // Probes are measured on their own (probe_cost.rs); off elsewhere,
        // so the other parts measure what they measured before probes.
        ("TART_SYNC_PROBE_ENABLED", "false".to_string()),
    ];
    base.iter()
        .chain(extra)
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect()
}

/// tart-sync's settings from such an environment.
pub fn settings_from(env: &BTreeMap<String, String>) -> Res<Settings> {
    Settings::from_sources(None, &|k: &str| env.get(k).cloned(), None)
        .map_err(|e| err(format!("settings: {e}")))
}

/// Settings with a placeholder headscale and Caddy (for steps that need only `routes`).
pub fn offline_settings() -> Res<Settings> {
    settings_from(&tart_env("http://127.0.0.1:9", "127.0.0.1:2019", 8080, &[]))
}

/// `n` names, all dialling `dial`.
pub fn fleet_targets(names: &[String], dial: &str) -> Targets {
    names
        .iter()
        .map(|name| (name.clone(), Target::Dial(dial.to_string())))
        .collect()
}

/// One fleet size for parts 1 and 2: Caddy A carries tart-sync's route
/// (installed by the real reconcile), Caddy B the naive routes.
pub struct Fleet {
    /// TARTs.
    pub n: usize,
    /// The names in the naive layout's order.
    pub order: Vec<String>,
    /// The table tart-sync installed.
    pub targets: Targets,
    /// Caddy A (tart-sync's route) and its site.
    pub a: Caddy,
    /// Caddy A's site address.
    pub a_addr: SocketAddr,
    /// The limit's server in Caddy A ([`crate::limit`]).
    pub a_limit: SocketAddr,
    /// tart-sync's instance for Caddy A.
    pub inst: Instance,
    /// The route settings it was installed with.
    pub routes: RouteSettings,
    /// Caddy B (the naive routes).
    pub b: Caddy,
    /// Caddy B's site address.
    pub b_addr: SocketAddr,
    /// Where the naive routes are in Caddy B's config.
    pub place: Placement,
}

impl Fleet {
    /// Starts both Caddies for `n` TARTs dialling `dial` and installs both layouts.
    pub async fn start(n: usize, dial: &str, upstream_port: u16) -> Res<Fleet> {
        let all = names::names(n);
        let order = names::naive_order(&all);
        let targets = fleet_targets(&all, dial);
        let (a, a_addr) = site_caddy()?;
        let env = tart_env("http://127.0.0.1:9", &a.admin, upstream_port, &[]);
        let settings = settings_from(&env)?;
        let routes = settings.routes;
        let mut inst = Instance::new(&a.admin, &settings.caddy)?;
        match inst.reconcile(&targets, &routes, true).await? {
            Outcome::Installed { .. } => {}
            other => return Err(err(format!("installing tart-sync's route: {other:?}"))),
        }
        let a_limit = crate::limit::install(&a.admin, dial).await?;
        let (b, b_addr) = site_caddy()?;
        let place = naive::install(&naive::fresh_client(&b.admin)?, DOMAIN, &order, dial).await?;
        Ok(Fleet {
            n,
            order,
            targets,
            a,
            a_addr,
            a_limit,
            inst,
            routes,
            b,
            b_addr,
            place,
        })
    }

    /// The naive layout's first route's name.
    pub fn first(&self) -> &str {
        &self.order[0]
    }

    /// The naive layout's last route's name.
    pub fn last(&self) -> &str {
        &self.order[self.order.len() - 1]
    }

    /// Both layouts route the first and last TART to the backend (prefix
    /// stripped) and answer 404 for an unknown name.
    pub async fn check(&self, http: &reqwest::Client, backend: &Backend) -> Res<()> {
        for (label, addr) in [("tart-sync", self.a_addr), ("naive", self.b_addr)] {
            let what = format!("{label} layout, {} TARTs", self.n);
            for name in [self.first(), self.last()] {
                let (status, body) = get(http, addr, DOMAIN, &format!("/{name}/x"))
                    .await
                    .ok_or_else(|| err(format!("{what}: no answer for /{name}/x")))?;
                let v: Value = serde_json::from_str(&body).unwrap_or_default();
                if status != 200 || v["tart"] != backend.name.as_str() || v["path"] != "/x" {
                    return Err(err(format!(
                        "{what}: /{name}/x answered {status} {body:.300}"
                    )));
                }
            }
            let unknown = get(http, addr, DOMAIN, "/no-such-tart/").await.map(|r| r.0);
            if unknown != Some(404) {
                return Err(err(format!("{what}: an unknown name answered {unknown:?}")));
            }
        }
        Ok(())
    }
}

/// Caddy, backend, headscale stand-in and the real tart-sync binary (parts 3 and 4).
pub struct Live {
    /// Caddy.
    pub caddy: Caddy,
    /// Its site address.
    pub addr: SocketAddr,
    /// The headscale stand-in.
    pub standin: StandIn,
    /// The running `tart-sync run`.
    pub daemon: Daemon,
    /// The nodes' names.
    pub names: Vec<String>,
    /// tart-sync's environment.
    pub env: BTreeMap<String, String>,
    _backend: Backend,
    _dir: TempDir,
}

impl Live {
    /// Starts everything for `n` nodes, polled every `interval`, and waits
    /// until tart-sync has installed its route and the first node answers.
    pub async fn start(
        opts: &Options,
        n: usize,
        interval: Duration,
        extra: &[(&str, String)],
    ) -> Res<Live> {
        let backend = Backend::start("tart", fleet_ip(0), 0).await?;
        let (caddy, addr) = site_caddy()?;
        let names = names::names(n);
        let standin = StandIn::start(&names, fleet_ip(0)).await?;
        let mut all = vec![(
            "TART_SYNC_HEADSCALE_POLL_INTERVAL",
            format!("{}ms", interval.as_millis()),
        )];
        all.extend_from_slice(extra);
        let env = tart_env(standin.url(), &caddy.admin, backend.addr.port(), &all);
        let dir = temp_dir("bench");
        let mut daemon = Daemon::spawn(&opts.tart_sync, &env, dir.path().join("tart-sync.log"))?;
        // Installed, and a few cycles done.
        daemon
            .wait_counters(Duration::from_secs(120), |c| c.writes >= 1 && c.cycles >= 3)
            .await?;
        let path = format!("/{}/", names[0]);
        let limit = Duration::from_secs(30);
        if wait_status(&http_client()?, addr, &path, 200, Instant::now(), limit)
            .await
            .is_none()
        {
            return Err(err(format!(
                "{n} nodes: {path} does not answer 200 through Caddy; tart-sync log:\n{}",
                daemon::tail(&daemon.log_text(), 40)
            )));
        }
        Ok(Live {
            caddy,
            addr,
            standin,
            daemon,
            names,
            env,
            _backend: backend,
            _dir: dir,
        })
    }
}
