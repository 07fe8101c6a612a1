//! `routes.resolve` and the `[dns]` section: how Caddy learns where each
//! TART is. `config` writes every address into Caddy's config (one write per
//! change); `dns` has tart-sync answer DNS for its own zone and Caddy look
//! the names up (`dynamic_upstreams`), so only the set of names is written.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use serde::Deserialize;

use super::source::Sources;
use super::validate::is_valid_dns_name;
use super::{ConfigError, RouteSettings, UpstreamKind};

/// Default of `dns.listen`.
pub const DEFAULT_DNS_LISTEN: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 5380);
/// Default of `dns.zone`.
pub const DEFAULT_DNS_ZONE: &str = "tart-sync.internal.";
/// Default of `dns.refresh`: how long Caddy caches one answer.
pub const DEFAULT_DNS_REFRESH: Duration = Duration::from_secs(1);
/// Smallest accepted `dns.refresh` (Caddy would ask on nearly every request).
pub const MIN_DNS_REFRESH: Duration = Duration::from_millis(100);
/// Longest accepted `dns.refresh`: a state change takes this long to reach Caddy.
pub const MAX_DNS_REFRESH: Duration = Duration::from_secs(3600);
/// Default of `dns.rate_limit`: queries per second from one source address
/// that is not in `dns.unlimited`.
pub const DEFAULT_DNS_RATE_LIMIT: u32 = 200;
/// Default of `dns.unlimited`: the loopback addresses (where a local Caddy asks from).
pub const DEFAULT_DNS_UNLIMITED: [IpAddr; 2] = [
    IpAddr::V4(Ipv4Addr::LOCALHOST),
    IpAddr::V6(Ipv6Addr::LOCALHOST),
];

/// `routes.resolve`: how Caddy finds a TART's address (any case in the settings).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Deserialize)]
#[serde(rename_all = "lowercase", expecting = r#""config" or "dns""#)]
pub enum Resolve {
    /// `"config"`: every address is written into Caddy's config; a state
    /// change or a move is one config write (a Caddy reload).
    #[default]
    Config,
    /// `"dns"`: tart-sync answers DNS for `dns.zone` and Caddy resolves each
    /// name per request (cached for `dns.refresh`); only added or removed
    /// names are config writes.
    Dns,
}

impl Resolve {
    /// The configuration spelling (`"config"` or `"dns"`).
    pub fn as_str(self) -> &'static str {
        match self {
            Resolve::Config => "config",
            Resolve::Dns => "dns",
        }
    }
}

/// `[dns]` settings (used when `routes.resolve = "dns"`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsSettings {
    /// `dns.listen`: the UDP socket address the responder listens on.
    pub listen: SocketAddr,
    /// `dns.zone`: the zone tart-sync answers for, lower case, with its final
    /// dot (`tart-sync.internal.`). A TART `name` is `name.<zone>`.
    pub zone: String,
    /// `dns.refresh`: how long Caddy caches one answer (a state change
    /// reaches Caddy within this).
    pub refresh: Duration,
    /// `dns.caddy_resolver`: the resolver address each Caddy is told to ask,
    /// in Caddy's form (`udp/IP:port`): one per `caddy.admin` entry, in the
    /// same order (a single configured address applies to every Caddy).
    /// Default: `udp/<dns.listen>` (loopback when `listen` is unspecified).
    pub caddy_resolver: Vec<String>,
    /// `dns.rate_limit`: queries per second accepted from one source address
    /// (bursts of twice that), except sources in `unlimited`.
    pub rate_limit: u32,
    /// `dns.unlimited`: source addresses never rate-limited (the Caddies:
    /// a starved Caddy would fall back to stale addresses).
    pub unlimited: Vec<IpAddr>,
}

impl DnsSettings {
    /// The resolver address Caddy number `idx` (of `caddy.admin`) is told to use.
    pub fn resolver_for(&self, idx: usize) -> &str {
        self.caddy_resolver
            .get(idx)
            .or_else(|| self.caddy_resolver.first())
            .map_or("", String::as_str)
    }
}

/// `[dns]` as written.
#[derive(Default, Deserialize)]
#[serde(default, deny_unknown_fields, expecting = "a table")]
pub(super) struct DnsInput {
    listen: Option<String>,
    zone: Option<String>,
    #[serde(with = "humantime_serde")]
    refresh: Option<Duration>,
    caddy_resolver: Vec<String>,
    rate_limit: Option<u32>,
    unlimited: Option<Vec<String>>,
}

/// Checks `[dns]` and fills in its defaults; `admins` is the number of
/// `caddy.admin` addresses, `routes` the checked `[routes]`.
pub(super) fn dns(
    d: DnsInput,
    src: &Sources<'_>,
    admins: usize,
    routes: &RouteSettings,
) -> Result<DnsSettings, ConfigError> {
    let listen = match d.listen {
        None => DEFAULT_DNS_LISTEN,
        Some(text) => text.parse().map_err(|_| {
            src.invalid(
                "dns.listen",
                format!("{text:?} is not an IP address with a port (like 127.0.0.1:5380)"),
            )
        })?,
    };
    let zone = match d.zone {
        None => DEFAULT_DNS_ZONE.to_owned(),
        Some(text) => zone(&text).map_err(|m| src.invalid("dns.zone", m))?,
    };
    let refresh = d.refresh.unwrap_or(DEFAULT_DNS_REFRESH);
    if !(MIN_DNS_REFRESH..=MAX_DNS_REFRESH).contains(&refresh) {
        let shown = humantime::format_duration(refresh);
        return Err(src.invalid(
            "dns.refresh",
            format!("{shown} is out of range (100ms to 1h)"),
        ));
    }
    let caddy_resolver = if d.caddy_resolver.is_empty() {
        vec![default_resolver(listen)]
    } else {
        let mut out = Vec::with_capacity(d.caddy_resolver.len());
        for text in &d.caddy_resolver {
            out.push(resolver_address(text).map_err(|m| src.invalid("dns.caddy_resolver", m))?);
        }
        if out.len() != 1 && out.len() != admins {
            return Err(src.invalid(
                "dns.caddy_resolver",
                format!(
                    "has {} addresses but caddy.admin has {admins}: give one address for every Caddy, or one for all",
                    out.len()
                ),
            ));
        }
        out
    };
    let rate_limit = d.rate_limit.unwrap_or(DEFAULT_DNS_RATE_LIMIT);
    if rate_limit == 0 {
        return Err(src.invalid(
            "dns.rate_limit",
            "must be at least 1 (queries per second from one source)",
        ));
    }
    let unlimited = match d.unlimited {
        None => DEFAULT_DNS_UNLIMITED.to_vec(),
        Some(list) => {
            let mut out = Vec::with_capacity(list.len());
            for text in list {
                let ip: IpAddr = text.parse().map_err(|_| {
                    src.invalid(
                        "dns.unlimited",
                        format!("{text:?} is not an IP address (like 127.0.0.1 or 100.64.0.5)"),
                    )
                })?;
                if !out.contains(&ip) {
                    out.push(ip);
                }
            }
            out
        }
    };
    if routes.resolve == Resolve::Dns && routes.upstream == UpstreamKind::MagicDns {
        return Err(src.invalid(
            "routes.resolve",
            "\"dns\" needs routes.upstream = \"ip\": tart-sync's DNS answers carry the TARTs' IP addresses",
        ));
    }
    Ok(DnsSettings {
        listen,
        zone,
        refresh,
        caddy_resolver,
        rate_limit,
        unlimited,
    })
}

/// `udp/<listen>`, with a loopback address for an unspecified one.
fn default_resolver(listen: SocketAddr) -> String {
    let ip = match listen.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    format!("udp/{}", SocketAddr::new(ip, listen.port()))
}

/// A zone: a DNS name, any case, with or without its final dot; kept lower
/// case with the dot.
fn zone(text: &str) -> Result<String, String> {
    let lower = text.to_ascii_lowercase();
    let name = lower.strip_suffix('.').unwrap_or(&lower);
    if name.is_empty() || !is_valid_dns_name(name) {
        return Err(format!(
            "{text:?} is not a DNS zone (like \"tart-sync.internal.\")"
        ));
    }
    Ok(format!("{name}."))
}

/// A resolver address for Caddy: `IP:port`, `udp/IP:port` (kept as
/// `udp/IP:port`). A host name would need a resolver of its own.
fn resolver_address(text: &str) -> Result<String, String> {
    let rest = text.strip_prefix("udp/").unwrap_or(text);
    match rest.parse::<SocketAddr>() {
        Ok(addr) if addr.port() != 0 && !addr.ip().is_unspecified() => Ok(format!("udp/{addr}")),
        _ => Err(format!(
            "{text:?} is not a resolver address: write udp/IP:port (like udp/100.64.0.5:5380), the address where that Caddy reaches tart-sync's dns.listen"
        )),
    }
}

#[cfg(test)]
mod tests {
    use crate::config::{Resolve, Settings};

    fn load(extra: &str, env: &[(&str, &str)]) -> Result<Settings, String> {
        let toml = format!(
            "[headscale]\nurl = \"http://127.0.0.1:1\"\napi_key = \"hskey-api-test\"\n\
             [caddy]\nadmin = [\"127.0.0.1:2019\", \"127.0.0.2:2019\"]\n\
             [routes]\ndomain = \"tart.example.org\"\n{extra}"
        );
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let lookup = move |name: &str| env.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
        Settings::from_sources(Some(&toml), &lookup, None).map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_are_config_mode_and_a_loopback_responder() {
        let s = load("", &[]).unwrap();
        assert_eq!(s.routes.resolve, Resolve::Config);
        assert_eq!(s.dns.zone, "tart-sync.internal.");
        assert_eq!(s.dns.resolver_for(0), "udp/127.0.0.1:5380");
        assert_eq!(s.dns.resolver_for(1), "udp/127.0.0.1:5380");
        assert_eq!(s.dns.rate_limit, 200);
    }

    #[test]
    fn every_key_can_be_set_in_the_file_or_the_environment() {
        let file = load(
            "resolve = \"DNS\"\n[dns]\nlisten = \"0.0.0.0:53\"\nzone = \"Tarts.Lan\"\nrefresh = \"2s\"\n\
             caddy_resolver = [\"100.64.0.1:53\", \"udp/100.64.0.2:53\"]\nrate_limit = 5\nunlimited = [\"100.64.0.9\"]\n",
            &[],
        )
        .unwrap();
        assert_eq!(file.routes.resolve, Resolve::Dns);
        assert_eq!(file.dns.zone, "tarts.lan.");
        assert_eq!(file.dns.refresh, std::time::Duration::from_secs(2));
        assert_eq!(file.dns.resolver_for(1), "udp/100.64.0.2:53");
        assert_eq!(file.dns.rate_limit, 5);
        let env = load(
            "",
            &[
                ("TART_SYNC_ROUTES_RESOLVE", "dns"),
                ("TART_SYNC_DNS_LISTEN", "[::]:5353"),
                ("TART_SYNC_DNS_ZONE", "x.internal."),
                ("TART_SYNC_DNS_CADDY_RESOLVER", "100.64.0.1:5353"),
                ("TART_SYNC_DNS_UNLIMITED", "127.0.0.1,100.64.0.3"),
            ],
        )
        .unwrap();
        assert_eq!(env.routes.resolve, Resolve::Dns);
        assert_eq!(env.dns.listen.port(), 5353);
        assert_eq!(env.dns.resolver_for(1), "udp/100.64.0.1:5353");
        assert_eq!(env.dns.unlimited.len(), 2);
        let unspecified = load("[dns]\nlisten = \"[::]:5353\"\n", &[]).unwrap();
        assert_eq!(unspecified.dns.resolver_for(0), "udp/[::1]:5353");
    }

    #[test]
    fn bad_values_name_the_setting_and_what_to_do() {
        for (extra, setting, hint) in [
            (
                "resolve = \"both\"\n",
                "routes.resolve",
                "\"config\" or \"dns\"",
            ),
            ("[dns]\nzone = \"a..b\"\n", "dns.zone", "not a DNS zone"),
            ("[dns]\nzone = \".\"\n", "dns.zone", "not a DNS zone"),
            (
                "[dns]\nlisten = \"localhost\"\n",
                "dns.listen",
                "IP address with a port",
            ),
            ("[dns]\nrefresh = \"1ms\"\n", "dns.refresh", "out of range"),
            ("[dns]\nrate_limit = 0\n", "dns.rate_limit", "at least 1"),
            (
                "[dns]\nunlimited = [\"caddy\"]\n",
                "dns.unlimited",
                "not an IP address",
            ),
            (
                "[dns]\ncaddy_resolver = [\"dns.example:53\"]\n",
                "dns.caddy_resolver",
                "udp/IP:port",
            ),
            (
                "[dns]\ncaddy_resolver = [\"1.2.3.4:53\", \"1.2.3.5:53\", \"1.2.3.6:53\"]\n",
                "dns.caddy_resolver",
                "one address for every Caddy",
            ),
            (
                "resolve = \"dns\"\nupstream = \"magicdns\"\nmagicdns_suffix = \"t.example\"\n",
                "routes.resolve",
                "needs routes.upstream = \"ip\"",
            ),
        ] {
            let err = load(extra, &[]).unwrap_err();
            assert!(err.starts_with(setting), "{extra}: {err}");
            assert!(err.contains(hint), "{extra}: {err}");
        }
    }
}
