//! One fleet per `routes.resolve` mode for parts 5 and 6: Caddy from
//! `Caddyfile.example`, the headscale stand-in with N online nodes, and the
//! real `tart-sync run` binary in `config` or `dns` mode keeping the owned
//! route; plus the limit's server ([`crate::limit`]) in the same Caddy.
//! Caddy's writes and reloads are counted from its log, its CPU time read
//! from `/proc/<pid>/stat`.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use e2e::backend::fleet_ip;
use e2e::{free_port, temp_dir, Caddy, TempDir};

use crate::daemon::{self, Daemon};
use e2e::sync::DOMAIN;
use tart_sync::config::RouteMode;

use crate::setup::{http_client, site_caddy, tart_env, wait_status_at};
use crate::standin::StandIn;
use crate::{err, limit, names, Options, Res};

/// `routes.resolve`: how the owned route finds a TART's address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Dial addresses written into Caddy's config (every change is a write).
    Config,
    /// Names written into Caddy's config, addresses answered by tart-sync's DNS responder.
    Dns,
}

impl Mode {
    /// Both, in the order they are run and shown.
    pub const BOTH: [Mode; 2] = [Mode::Config, Mode::Dns];

    /// `config` or `dns`.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Config => "config",
            Mode::Dns => "dns",
        }
    }

    /// The settings that select this mode (environment variables).
    pub fn env(self) -> Vec<(&'static str, String)> {
        match self {
            Mode::Config => vec![("TART_SYNC_ROUTES_RESOLVE", "config".into())],
            Mode::Dns => vec![
                ("TART_SYNC_ROUTES_RESOLVE", "dns".into()),
                ("TART_SYNC_DNS_LISTEN", format!("127.0.0.1:{}", free_port())),
                ("TART_SYNC_DNS_ZONE", DNS_ZONE.into()),
            ],
        }
    }
}

/// The zone tart-sync serves in dns mode.
pub const DNS_ZONE: &str = "tart-sync.internal.";

/// How the mode fleets are made, for the reports.
pub const DESCRIPTION: &str = "per mode: one Caddy 2.11 from `Caddyfile.example`, the headscale stand-in listing \
the N nodes (all online, all at the backend's address, last seen an hour ago so that going offline is past the \
grace at once) and the real `tart-sync run` binary (`TART_SYNC_ROUTES_RESOLVE=config` or `=dns` with \
`TART_SYNC_DNS_LISTEN=127.0.0.1:<port>`, `TART_SYNC_DNS_ZONE=tart-sync.internal.`, `dns.refresh` at its default) \
keeping the owned route";

/// Counts config loads in a Caddy log: each real load (not "config is
/// unchanged") restarts the admin endpoint, which Caddy logs as
/// `admin endpoint started` (the first one is the start-up).
pub fn reloads_in_log(log: &str) -> usize {
    log.lines()
        .filter(|l| l.contains("admin endpoint started"))
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["logger"] == "admin" && v["msg"] == "admin endpoint started")
        .count()
        .saturating_sub(1)
}

/// What Caddy has done so far: config writes, reloads, CPU time.
#[derive(Debug, Clone, Copy, Default)]
pub struct CaddyCost {
    /// Non-GET admin requests on `/config/`, `/id/`, `/load` (its log).
    pub writes: usize,
    /// Config loads (its log, [`reloads_in_log`]).
    pub reloads: usize,
    /// utime + stime (ms).
    pub cpu_ms: f64,
}

impl CaddyCost {
    /// Reads the costs of `caddy` so far.
    pub fn read(caddy: &Caddy) -> Res<CaddyCost> {
        let pid = caddy.pid().ok_or_else(|| err("Caddy is not running"))?;
        let ticks = daemon::cpu_ticks(pid)?;
        Ok(CaddyCost {
            writes: caddy.admin_writes(),
            reloads: reloads_in_log(&caddy.log()),
            cpu_ms: ticks as f64 * 1000.0 / daemon::clock_ticks() as f64,
        })
    }

    /// What happened between `before` and `self`.
    pub fn since(&self, before: &CaddyCost) -> CaddyCost {
        CaddyCost {
            writes: self.writes.saturating_sub(before.writes),
            reloads: self.reloads.saturating_sub(before.reloads),
            cpu_ms: self.cpu_ms - before.cpu_ms,
        }
    }
}

/// One mode's fleet.
pub struct ModeFleet {
    /// Its mode.
    pub mode: Mode,
    /// `routes.mode`: TARTs at `/<name>/` (path) or at `<name>.<domain>` (host).
    pub routes: RouteMode,
    /// TARTs.
    pub n: usize,
    /// The nodes' names, in the stand-in's order.
    pub names: Vec<String>,
    /// The name last in the naive layout's order (the "last TART" of part 1).
    pub last: String,
    /// Caddy.
    pub caddy: Caddy,
    /// Caddy's site.
    pub addr: SocketAddr,
    /// The limit's server in the same Caddy.
    pub limit: SocketAddr,
    /// In dns mode: the dynamic limit's server in the same Caddy
    /// ([`limit::dynamic_server`], looking up [`ModeFleet::last`]).
    pub dynamic_limit: Option<SocketAddr>,
    /// The headscale stand-in.
    pub standin: StandIn,
    /// The running `tart-sync run`.
    pub daemon: Daemon,
    _dir: TempDir,
}

impl ModeFleet {
    /// Starts a fleet of `n` TARTs at `ip`:`port` in `mode` with
    /// `routes.mode` = `routes`, polled every `interval`, and waits until
    /// the first and last TART answer 200 through Caddy.
    pub async fn start(
        opts: &Options,
        mode: Mode,
        routes: RouteMode,
        n: usize,
        port: u16,
        interval: Duration,
    ) -> Res<ModeFleet> {
        let ip = fleet_ip(0);
        let (caddy, addr) = site_caddy()?;
        let limit = limit::install(&caddy.admin, &format!("{ip}:{port}")).await?;
        let names = names::names(n);
        let last = names::naive_order(&names)
            .pop()
            .ok_or_else(|| err("an empty fleet"))?;
        let standin = StandIn::start(&names, ip).await?;
        let mut extra = vec![
            (
                "TART_SYNC_HEADSCALE_POLL_INTERVAL",
                format!("{}ms", interval.as_millis()),
            ),
            ("TART_SYNC_ROUTES_MODE", routes.as_str().to_string()),
        ];
        extra.extend(mode.env());
        let env = tart_env(standin.url(), &caddy.admin, port, &extra);
        let dir = temp_dir("bench-mode");
        let log = dir.path().join(format!("tart-sync-{}.log", mode.as_str()));
        let dynamic_limit = match env.get("TART_SYNC_DNS_LISTEN") {
            Some(listen) => {
                let fqdn = format!("{last}.{DNS_ZONE}");
                let resolver = format!("udp/{listen}");
                Some(limit::install_dynamic(&caddy.admin, &fqdn, port, &resolver).await?)
            }
            None => None,
        };
        let mut daemon = Daemon::spawn(&opts.tart_sync, &env, log)?;
        daemon
            .wait_counters(Duration::from_secs(120), |c| c.writes >= 1 && c.cycles >= 2)
            .await?;
        let http = http_client()?;
        for name in [&names[0], &last] {
            let (host, path) = request_to(routes, name);
            let limit = Duration::from_secs(30);
            if wait_status_at(&http, addr, &host, &path, 200, Instant::now(), limit)
                .await
                .is_none()
            {
                return Err(err(format!(
                    "{} mode ({} routes), {n} TARTs: {host}{path} does not answer 200 through Caddy; tart-sync log:\n{}",
                    mode.as_str(),
                    routes.as_str(),
                    daemon::tail(&daemon.log_text(), 40)
                )));
            }
        }
        Ok(ModeFleet {
            mode,
            routes,
            n,
            names,
            last,
            caddy,
            addr,
            limit,
            dynamic_limit,
            standin,
            daemon,
            _dir: dir,
        })
    }

    /// `Host` and path of a request to the last TART.
    pub fn last_request(&self) -> (String, String) {
        request_to(self.routes, &self.last)
    }

    /// Caddy's costs so far.
    pub fn cost(&self) -> Res<CaddyCost> {
        CaddyCost::read(&self.caddy)
    }

    /// `count` names spread evenly over the fleet (all of them when it has no more).
    pub fn spread(&self, count: usize) -> Vec<String> {
        let k = count.min(self.n).max(1);
        (0..k).map(|j| self.names[j * self.n / k].clone()).collect()
    }

    /// tart-sync's CPU time so far (ms).
    pub fn daemon_cpu_ms(&self) -> Res<f64> {
        Ok(daemon::cpu_ticks(self.daemon.pid)? as f64 * 1000.0 / daemon::clock_ticks() as f64)
    }
}

/// `Host` and path of a request to TART `name`'s root: `tart.test` and
/// `/<name>/` in path mode, `<name>.tart.test` and `/` in host mode.
pub fn request_to(routes: RouteMode, name: &str) -> (String, String) {
    match routes {
        RouteMode::Path => (DOMAIN.to_string(), format!("/{name}/")),
        RouteMode::Host => (format!("{name}.{DOMAIN}"), "/".to_string()),
    }
}

/// The second backend address (for moves).
pub fn moved_ip() -> Ipv4Addr {
    fleet_ip(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_to_a_tart_follows_the_routes_mode() {
        assert_eq!(
            request_to(RouteMode::Path, "hue"),
            ("tart.test".into(), "/hue/".into())
        );
        assert_eq!(
            request_to(RouteMode::Host, "hue"),
            ("hue.tart.test".into(), "/".into())
        );
    }

    #[test]
    fn reloads_are_counted_from_admin_restarts() {
        let log = r#"{"level":"info","logger":"admin","msg":"admin endpoint started","address":"127.0.0.1:1"}
{"level":"info","logger":"admin.api","msg":"received request","method":"PATCH","uri":"/id/x"}
{"level":"info","logger":"admin","msg":"admin endpoint started","address":"127.0.0.1:1"}
{"level":"info","logger":"admin.api","msg":"received request","method":"PATCH","uri":"/id/x"}
{"level":"info","msg":"config is unchanged"}
not json admin endpoint started
"#;
        assert_eq!(reloads_in_log(log), 1);
        assert_eq!(reloads_in_log(""), 0);
    }
}
