//! tart-sync's settings: a TOML file plus `TART_SYNC_<SECTION>_<KEY>`
//! environment variables.
//!
//! Every key of the file can also be set through the environment, e.g.
//! `TART_SYNC_HEADSCALE_URL`, `TART_SYNC_HEADSCALE_API_KEY_FILE` or
//! `TART_SYNC_ROUTES_DOMAIN`. The environment overrides the file, key by key.
//! File paths written in the file (`headscale.api_key_file`,
//! `caddy.tls_*_file`) are relative to the file's directory; from the
//! environment, to the working directory.
//! List settings (`headscale.tags`, `caddy.admin`, `routes.reserved`,
//! `status.allowed_hosts`) are comma-separated in the
//! environment. An environment variable that is set but empty (or only
//! whitespace) counts as unset. The file itself is optional when every
//! required setting comes from the environment.
//!
//! The API key's source is a single setting: if either
//! `TART_SYNC_HEADSCALE_API_KEY_FILE` or `TART_SYNC_HEADSCALE_API_KEY` is set,
//! it replaces both `api_key_file` and `api_key` of the file.
//!
//! Durations use humantime's syntax (`"100ms"`, `"5s"`, `"1m30s"`, `"10m"`).
//! Unknown keys in the file are an error, so typos do not go unnoticed.
//!
//! Every [`ConfigError`] names the setting it is about ([`ConfigError::setting`])
//! and where its value was set (file line or environment variable); the API
//! key never appears in errors or in `Debug` output ([`ApiKey`]).
//!
//! See `tart-sync.example.toml` at the root of the repository for a
//! commented example of every key.
//!
//! The parts: the typed settings and [`Settings::load`] here; `source`
//! layers the file and the environment and deserializes them with serde;
//! `validate` makes the checks serde cannot express; `error` and `secret`
//! hold [`ConfigError`] and [`ApiKey`].

mod error;
mod history;
mod notify;
mod probe;
mod secret;
mod source;
mod tls;
mod validate;

use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use url::Url;

pub use error::ConfigError;
pub use history::HistorySettings;
pub use notify::{NotifySettings, WebhookUrl};
pub use probe::ProbeSettings;
pub use secret::{ApiKey, SecretFile};
pub use tls::{CaFile, ClientIdentity};

/// Prefix of every environment variable tart-sync reads for its settings.
pub const ENV_PREFIX: &str = "TART_SYNC_";
/// Default of `headscale.poll_interval`.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(5);
/// Smallest accepted `headscale.poll_interval`.
pub const MIN_POLL_INTERVAL: Duration = Duration::from_millis(100);
/// Longest accepted `headscale.poll_interval` (one day).
pub const MAX_POLL_INTERVAL: Duration = Duration::from_secs(86_400);
/// Default of `headscale.timeout`.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest accepted `headscale.timeout`.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(600);
/// Default of `caddy.admin` (one address).
pub const DEFAULT_CADDY_ADMIN: &str = "localhost:2019";
/// Default of `caddy.timeout` (reads of the admin API).
pub const DEFAULT_CADDY_TIMEOUT: Duration = caddy_client::DEFAULT_TIMEOUT;
/// Default of `caddy.write_timeout` (config writes, each a Caddy reload).
pub const DEFAULT_CADDY_WRITE_TIMEOUT: Duration = caddy_client::DEFAULT_WRITE_TIMEOUT;
/// Longest accepted `caddy.timeout` and `caddy.write_timeout`: a Caddy that
/// has not answered a request in ten minutes is not going to, and the
/// reconcile task of that Caddy waits this long.
pub const MAX_CADDY_TIMEOUT: Duration = Duration::from_secs(600);
/// Longest connect timeout of an admin API client ([`CaddySettings::client_builder`]).
pub const MAX_CADDY_CONNECT_TIMEOUT: Duration = caddy_client::DEFAULT_CONNECT_TIMEOUT;
/// Default of `routes.upstream_port`.
pub const DEFAULT_UPSTREAM_PORT: u16 = 80;
/// Default of `routes.offline_grace`.
pub const DEFAULT_OFFLINE_GRACE: Duration = Duration::from_secs(60);
/// Longest accepted `routes.offline_grace` (one year).
pub const MAX_OFFLINE_GRACE: Duration = Duration::from_secs(365 * 86_400);
/// Default of `routes.id_prefix`.
pub const DEFAULT_ID_PREFIX: &str = "tart-sync";
/// Longest accepted `routes.id_prefix`.
pub const MAX_ID_PREFIX_LEN: usize = 64;
/// Default of `routes.stream_close_delay`.
pub const DEFAULT_STREAM_CLOSE_DELAY: Duration = Duration::from_secs(600);
/// Longest accepted `routes.stream_close_delay` (one day).
pub const MAX_STREAM_CLOSE_DELAY: Duration = Duration::from_secs(86_400);
/// Default of `status.listen`.
pub const DEFAULT_STATUS_LISTEN: SocketAddr = SocketAddr::V4(std::net::SocketAddrV4::new(
    std::net::Ipv4Addr::LOCALHOST,
    9180,
));

/// Keys that the environment replaces together (see the module docs).
const ENV_REPLACES_TOGETHER: &[(&str, &[&str])] = &[("headscale", &["api_key_file", "api_key"])];

/// All of tart-sync's settings, validated.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `[headscale]`: where and how to poll nodes.
    pub headscale: HeadscaleSettings,
    /// `[caddy]`: Caddy's admin API.
    pub caddy: CaddySettings,
    /// `[routes]`: which routes tart-sync keeps in Caddy.
    pub routes: RouteSettings,
    /// `[status]`: tart-sync's own status endpoint.
    pub status: StatusSettings,
    /// `[probe]`: reachability probes of each TART's web service.
    pub probe: ProbeSettings,
    /// `[history]`: the state-change history and its store.
    pub history: HistorySettings,
    /// `[notify]`: webhooks on TART state changes.
    pub notify: NotifySettings,
}

impl Settings {
    /// Problems with files that hold a secret: readable by group or others.
    /// `check` reports them, `run` warns about them.
    pub fn exposed_secrets(&self) -> Vec<String> {
        let key_file = self.caddy.tls_identity.as_ref().map(|id| SecretFile {
            path: id.key_file.clone(),
            setting: "caddy.tls_key_file",
        });
        self.headscale
            .secret_file
            .iter()
            .chain(key_file.iter())
            .filter_map(SecretFile::exposure)
            .collect()
    }
}

/// `[headscale]` settings.
#[derive(Debug, Clone)]
pub struct HeadscaleSettings {
    /// `headscale.url`: base URL of headscale (http or https, no credentials,
    /// query or fragment). A path is kept as a prefix of the API paths.
    pub url: Url,
    /// The API key, from `api_key_file` (trimmed) or `api_key`.
    pub api_key: ApiKey,
    /// `headscale.api_key_file` (resolved against the config file's
    /// directory when relative and set in the file), if the key came from a
    /// file. It can be re-read with [`ApiKey::from_file`] after the key was
    /// renewed.
    pub api_key_file: Option<PathBuf>,
    /// The file the key was read from: `api_key_file`, or the config file
    /// when it holds `api_key` inline (`None` for a key from the environment).
    pub secret_file: Option<SecretFile>,
    /// `headscale.poll_interval`: time between two polls (at least 100ms).
    pub poll_interval: Duration,
    /// `headscale.timeout`: limit for one whole API request.
    pub timeout: Duration,
    /// `headscale.user`: if set, only this user's nodes are considered.
    pub user: Option<String>,
    /// `headscale.tags`: if not empty, only nodes carrying any of these tags
    /// are considered.
    pub tags: Vec<String>,
}

/// `[caddy]` settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaddySettings {
    /// `caddy.admin`: one or more admin API addresses in Caddy's forms, as
    /// [`caddy_client::AdminAddress::parse`] reads them: `host:port`
    /// (`:port` is normalised to `localhost:port`, `tcp/` dropped),
    /// `http://…`, `https://…` or `unix//path/to.sock`. Never empty.
    pub admin: Vec<String>,
    /// `caddy.timeout`: limit of one read (GET) of the admin API, connecting
    /// and the whole answer included.
    pub timeout: Duration,
    /// `caddy.write_timeout`: limit of one config write (`PATCH`, `PUT`,
    /// ...), which reloads Caddy; an admin API that hangs on a write holds
    /// that Caddy's reconcile for this long at most.
    pub write_timeout: Duration,
    /// `caddy.tls_ca_file`: root CA certificates to trust for `https://`
    /// admin addresses, besides the system's (e.g. Caddy's internal CA that
    /// signed `admin.identity`'s certificate). Read and checked at load time.
    pub tls_ca: Option<CaFile>,
    /// `caddy.tls_cert_file` and `caddy.tls_key_file`: the client certificate
    /// presented to `https://` admin addresses (Caddy's `admin.remote`
    /// requires one listed in its `access_control`). Read and checked at
    /// load time.
    pub tls_identity: Option<ClientIdentity>,
}

/// `[routes]` settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteSettings {
    /// `routes.domain`: the site's DNS name (lower case, without a final dot).
    pub domain: String,
    /// `routes.mode`: one path per node under `domain`, or one host name per node.
    pub mode: RouteMode,
    /// `routes.upstream`: dial nodes by IP address or by MagicDNS name.
    pub upstream: UpstreamKind,
    /// `routes.upstream_port`: the nodes' HTTP port.
    pub upstream_port: u16,
    /// `routes.magicdns_suffix`: the tailnet's `dns.base_domain` (lower case,
    /// without leading or final dot). Always `Some` when `upstream` is
    /// [`UpstreamKind::MagicDns`].
    pub magicdns_suffix: Option<String>,
    /// `routes.offline_grace`: how long an offline node keeps its route.
    pub offline_grace: Duration,
    /// `routes.id_prefix`: prefix of the `@id`s tart-sync owns in Caddy's
    /// config (`[a-z0-9-]+`, at most 64 characters).
    pub id_prefix: String,
    /// `routes.stream_close_delay`: how long WebSockets stay open across a
    /// Caddy config reload (used only where Caddy supports it; zero disables).
    pub stream_close_delay: Duration,
    /// `routes.reserved`: names never published (lower case, DNS labels),
    /// e.g. paths the site serves itself.
    pub reserved: Vec<String>,
}

/// `[status]` settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusSettings {
    /// `status.listen`: socket address of the status endpoint.
    pub listen: SocketAddr,
    /// `status.allowed_hosts`: the `Host` names (with an optional port) the
    /// status server answers to, besides the loopback names and the listen
    /// address itself, which are always allowed. Without a port, any port
    /// matches.
    pub allowed_hosts: Vec<HostPattern>,
}

/// A host name or IP address with an optional port, as in a `Host` header
/// or an entry of `status.allowed_hosts`: `name`, `name:port`, `192.0.2.1`,
/// `192.0.2.1:9180`, `[2001:db8::1]` or `[2001:db8::1]:9180`.
///
/// Names are kept in lower case without a final dot; IPv6 addresses in
/// brackets, in their canonical spelling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPattern {
    /// The name, the IPv4 address, or the IPv6 address in brackets.
    pub host: String,
    /// The port, if one was given.
    pub port: Option<u16>,
}

impl HostPattern {
    /// Reads `name`, `name:port`, an IPv4 address, an IPv6 address (bare or
    /// in brackets), each with an optional port. The error says what is wrong.
    pub fn parse(text: &str) -> Result<HostPattern, String> {
        let bad = || {
            format!(
                "{text:?} is not a host name or IP address with an optional port (like status.example.org, 192.0.2.1:9180 or [2001:db8::1])"
            )
        };
        // A bare IPv6 address (config only: a Host header brackets it).
        if let Ok(ip) = text.parse::<std::net::Ipv6Addr>() {
            return Ok(HostPattern {
                host: format!("[{ip}]"),
                port: None,
            });
        }
        let (host, port) = if let Some(rest) = text.strip_prefix('[') {
            let (inside, after) = rest.split_once(']').ok_or_else(bad)?;
            let ip: std::net::Ipv6Addr = inside.parse().map_err(|_| bad())?;
            let port = match after {
                "" => None,
                _ => Some(after.strip_prefix(':').ok_or_else(bad)?),
            };
            (format!("[{ip}]"), port)
        } else {
            let (host, port) = match text.split_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (text, None),
            };
            let host = if let Ok(ip) = host.parse::<std::net::Ipv4Addr>() {
                ip.to_string()
            } else {
                let lower = host.to_ascii_lowercase();
                let name = lower.strip_suffix('.').unwrap_or(&lower);
                if !validate::is_valid_dns_name(name) {
                    return Err(bad());
                }
                name.to_owned()
            };
            (host, port)
        };
        let port = match port {
            None => None,
            Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => {
                Some(p.parse::<u16>().map_err(|_| bad())?)
            }
            Some(_) => return Err(bad()),
        };
        Ok(HostPattern { host, port })
    }

    /// Whether a request's `Host` (already parsed) is this pattern: the
    /// same host, and the same port when the pattern has one (a `Host`
    /// without a port means port 80).
    pub fn matches(&self, host: &HostPattern) -> bool {
        self.host == host.host && self.port.is_none_or(|port| host.port.unwrap_or(80) == port)
    }
}

impl std::fmt::Display for HostPattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.port {
            Some(port) => write!(f, "{}:{port}", self.host),
            None => f.write_str(&self.host),
        }
    }
}

/// How routes address a node (`routes.mode`; any case in the settings).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase", expecting = r#""path" or "host""#)]
pub enum RouteMode {
    /// `"path"`: `https://<domain>/<node>/…`.
    Path,
    /// `"host"`: `https://<node>.<domain>/…`.
    Host,
}

impl RouteMode {
    /// The configuration spelling (`"path"` or `"host"`).
    pub fn as_str(self) -> &'static str {
        match self {
            RouteMode::Path => "path",
            RouteMode::Host => "host",
        }
    }
}

/// How Caddy dials a node (`routes.upstream`; any case in the settings).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase", expecting = r#""ip" or "magicdns""#)]
pub enum UpstreamKind {
    /// `"ip"`: the node's tailnet IP address (IPv4 first).
    Ip,
    /// `"magicdns"`: `<givenName>.<magicdns_suffix>`.
    MagicDns,
}

/// The environment variable of a setting: `TART_SYNC_ROUTES_DOMAIN`.
pub fn env_var_name(section: &str, key: &str) -> String {
    format!(
        "{ENV_PREFIX}{}_{}",
        section.to_ascii_uppercase(),
        key.to_ascii_uppercase()
    )
}

/// The settings as written (file and environment), typed by serde; a
/// missing value is `None` here and gets its default or "required" error in
/// `validate`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Input {
    headscale: HeadscaleInput,
    caddy: CaddyInput,
    routes: RoutesInput,
    status: StatusInput,
    probe: probe::ProbeInput,
    history: history::HistoryInput,
    notify: notify::NotifyInput,
}

#[derive(Default, Deserialize)]
#[serde(default, deny_unknown_fields, expecting = "a table")]
struct HeadscaleInput {
    url: Option<String>,
    api_key_file: Option<PathBuf>,
    api_key: Option<ApiKey>,
    #[serde(with = "humantime_serde")]
    poll_interval: Option<Duration>,
    #[serde(with = "humantime_serde")]
    timeout: Option<Duration>,
    user: Option<String>,
    tags: Vec<String>,
}

#[derive(Default, Deserialize)]
#[serde(default, deny_unknown_fields, expecting = "a table")]
struct CaddyInput {
    admin: Option<Vec<String>>,
    #[serde(with = "humantime_serde")]
    timeout: Option<Duration>,
    #[serde(with = "humantime_serde")]
    write_timeout: Option<Duration>,
    tls_ca_file: Option<PathBuf>,
    tls_cert_file: Option<PathBuf>,
    tls_key_file: Option<PathBuf>,
}

#[derive(Default, Deserialize)]
#[serde(default, deny_unknown_fields, expecting = "a table")]
struct RoutesInput {
    domain: Option<String>,
    mode: Option<RouteMode>,
    upstream: Option<UpstreamKind>,
    upstream_port: Option<u16>,
    magicdns_suffix: Option<String>,
    #[serde(with = "humantime_serde")]
    offline_grace: Option<Duration>,
    id_prefix: Option<String>,
    #[serde(with = "humantime_serde")]
    stream_close_delay: Option<Duration>,
    reserved: Vec<String>,
}

#[derive(Default, Deserialize)]
#[serde(default, deny_unknown_fields, expecting = "a table")]
struct StatusInput {
    listen: Option<String>,
    allowed_hosts: Vec<String>,
}

impl Settings {
    /// Loads the settings from `path` (if given) and the process
    /// environment (`TART_SYNC_<SECTION>_<KEY>`, which overrides the file).
    pub fn load(path: Option<&Path>) -> Result<Settings, ConfigError> {
        let read = |path: &Path| {
            fs::read_to_string(path).map_err(|e| ConfigError::ReadFile {
                path: path.to_owned(),
                reason: error::io_reason(&e),
            })
        };
        let text = path.map(read).transpose()?;
        let env = |name: &str| std::env::var_os(name).map(|v| v.to_string_lossy().into_owned());
        Settings::from_sources(text.as_deref(), &env, path)
    }

    /// Builds the settings from the text of a configuration file (if any)
    /// and an environment lookup function (e.g. a map in tests).
    ///
    /// `file_path` is where `file_text` came from: it is used to resolve a
    /// relative `api_key_file` written in the file (relative to the file's
    /// directory) and in error locations. A relative
    /// `TART_SYNC_HEADSCALE_API_KEY_FILE` is relative to the working
    /// directory.
    pub fn from_sources(
        file_text: Option<&str>,
        env: &impl Fn(&str) -> Option<String>,
        file_path: Option<&Path>,
    ) -> Result<Settings, ConfigError> {
        let sources = source::Sources::new(file_text, file_path, env, ENV_REPLACES_TOGETHER)?;
        validate::settings(sources.deserialize()?, &sources)
    }
}
