//! tart-sync's settings: a TOML file plus `TART_SYNC_<SECTION>_<KEY>`
//! environment variables.
//!
//! Every key of the file can also be set through the environment, e.g.
//! `TART_SYNC_HEADSCALE_URL`, `TART_SYNC_HEADSCALE_API_KEY_FILE` or
//! `TART_SYNC_ROUTES_DOMAIN`. The environment overrides the file, key by key.
//! List settings (`headscale.tags`, `caddy.admin`) are comma-separated in the
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
//! Every [`ConfigError`] names the setting it is about ([`ConfigError::setting`]);
//! the API key never appears in errors or in `Debug` output ([`ApiKey`]).
//!
//! See `tart-sync.example.toml` at the root of the repository for a
//! commented example of every key.

use std::fmt;
use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use serde::Deserialize;
use url::Url;

use crate::headscale::is_valid_dns_label;

/// Prefix of every environment variable tart-sync reads for its settings.
pub const ENV_PREFIX: &str = "TART_SYNC_";
/// Default of `headscale.poll_interval`.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(5);
/// Smallest accepted `headscale.poll_interval`.
pub const MIN_POLL_INTERVAL: Duration = Duration::from_millis(100);
/// Default of `headscale.timeout`.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// Default of `caddy.admin` (one address).
pub const DEFAULT_CADDY_ADMIN: &str = "localhost:2019";
/// Default of `routes.upstream_port`.
pub const DEFAULT_UPSTREAM_PORT: u16 = 80;
/// Default of `routes.offline_grace`.
pub const DEFAULT_OFFLINE_GRACE: Duration = Duration::from_secs(60);
/// Default of `routes.id_prefix`.
pub const DEFAULT_ID_PREFIX: &str = "tart-sync";
/// Longest accepted `routes.id_prefix`.
pub const MAX_ID_PREFIX_LEN: usize = 64;
/// Default of `routes.stream_close_delay`.
pub const DEFAULT_STREAM_CLOSE_DELAY: Duration = Duration::from_secs(600);
/// Default of `status.listen`.
pub const DEFAULT_STATUS_LISTEN: SocketAddr = SocketAddr::V4(std::net::SocketAddrV4::new(
    std::net::Ipv4Addr::LOCALHOST,
    9180,
));

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
    /// `caddy.admin`: one or more admin API addresses, in Caddy's forms
    /// `host:port`, `http://…`, `https://…` or `unix//path/to.sock`
    /// (`:port` is normalised to `localhost:port`). Never empty.
    pub admin: Vec<String>,
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
}

/// `[status]` settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusSettings {
    /// `status.listen`: socket address of the status endpoint.
    pub listen: SocketAddr,
}

/// How routes address a node (`routes.mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
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

impl fmt::Display for RouteMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for RouteMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "path" => Ok(RouteMode::Path),
            "host" => Ok(RouteMode::Host),
            _ => Err(format!(
                "{s:?} is not a route mode (use \"path\" or \"host\")"
            )),
        }
    }
}

/// How Caddy dials a node (`routes.upstream`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UpstreamKind {
    /// `"ip"`: the node's tailnet IP address (IPv4 first).
    Ip,
    /// `"magicdns"`: `<givenName>.<magicdns_suffix>`.
    MagicDns,
}

impl UpstreamKind {
    /// The configuration spelling (`"ip"` or `"magicdns"`).
    pub fn as_str(self) -> &'static str {
        match self {
            UpstreamKind::Ip => "ip",
            UpstreamKind::MagicDns => "magicdns",
        }
    }
}

impl fmt::Display for UpstreamKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for UpstreamKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "ip" => Ok(UpstreamKind::Ip),
            "magicdns" => Ok(UpstreamKind::MagicDns),
            _ => Err(format!(
                "{s:?} is not an upstream kind (use \"ip\" or \"magicdns\")"
            )),
        }
    }
}

/// headscale API key. Its `Debug` prints `ApiKey(***)` and its `Display`
/// prints `***`; only [`ApiKey::expose`] reveals it.
#[derive(Clone)]
pub struct ApiKey(String);

impl ApiKey {
    /// Wraps a key (surrounding whitespace is removed).
    pub fn new(key: impl Into<String>) -> Self {
        let key = key.into();
        let trimmed = key.trim();
        if trimmed.len() == key.len() {
            ApiKey(key)
        } else {
            ApiKey(trimmed.to_owned())
        }
    }

    /// The key itself, for the `Authorization` header. Never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Reads a key from a file (content trimmed) and checks it, as
    /// `headscale.api_key_file` does; useful to re-read a renewed key.
    pub fn from_file(path: &Path) -> Result<ApiKey, ConfigError> {
        const SETTING: &str = "headscale.api_key_file";
        let text = fs::read_to_string(path).map_err(|e| {
            invalid(
                SETTING,
                format!("cannot read {}: {}", path.display(), io_reason(&e)),
            )
        })?;
        let key = ApiKey::new(text);
        key.check()
            .map_err(|problem| invalid(SETTING, format!("{}: {problem}", path.display())))?;
        Ok(key)
    }

    /// Checks the key could be sent in an HTTP header; the message never
    /// contains the key.
    fn check(&self) -> Result<(), &'static str> {
        if self.0.is_empty() {
            return Err("the API key is empty");
        }
        if !self.0.chars().all(|c| c.is_ascii_graphic()) {
            return Err("the API key contains whitespace or non-printable characters");
        }
        Ok(())
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(***)")
    }
}

impl fmt::Display for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// A setting is missing or invalid, or the file cannot be read or parsed.
///
/// The message always starts with the setting's name (e.g. `routes.domain:`)
/// and never contains the API key.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The configuration file cannot be read.
    #[error("config file {}: {reason}", path.display())]
    ReadFile {
        /// The file.
        path: PathBuf,
        /// Why (the OS error).
        reason: String,
    },
    /// The configuration file is not valid TOML, has an unknown key, or a
    /// section that is not a table.
    #[error("{setting}: {message} ({location})")]
    Syntax {
        /// The setting (e.g. `routes.domian`) as far as it can be told, else
        /// `config file`.
        setting: String,
        /// Where in the file (`config file line 3, column 1`).
        location: String,
        /// What is wrong.
        message: String,
    },
    /// A setting is missing or has an invalid value.
    #[error("{setting}: {message}")]
    Invalid {
        /// The setting, e.g. `routes.domain`, or a section such as `headscale`.
        setting: String,
        /// What is wrong, and the environment variable when it set the value.
        message: String,
    },
}

impl ConfigError {
    /// The setting the error is about, e.g. `routes.domain`,
    /// `headscale.api_key_file` or `headscale`; `config file` when the file
    /// as a whole cannot be read or parsed.
    pub fn setting(&self) -> &str {
        match self {
            ConfigError::ReadFile { .. } => "config file",
            ConfigError::Syntax { setting, .. } | ConfigError::Invalid { setting, .. } => setting,
        }
    }
}

fn invalid(setting: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        setting: setting.to_owned(),
        message: message.into(),
    }
}

/// An OS error without the ` (os error N)` suffix.
fn io_reason(e: &std::io::Error) -> String {
    let text = e.to_string();
    match text.find(" (os error ") {
        Some(pos) if text.ends_with(')') => text[..pos].to_owned(),
        _ => text,
    }
}

// ---------------------------------------------------------------------------
// The file as written: every value kept as a TOML value so that type errors
// can name the setting; unknown keys are rejected.

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawFile {
    headscale: RawHeadscale,
    caddy: RawCaddy,
    routes: RawRoutes,
    status: RawStatus,
}

// No Debug on purpose: it would hold the inline `api_key`.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawHeadscale {
    url: Option<toml::Value>,
    api_key_file: Option<toml::Value>,
    api_key: Option<toml::Value>,
    poll_interval: Option<toml::Value>,
    timeout: Option<toml::Value>,
    user: Option<toml::Value>,
    tags: Option<toml::Value>,
}

impl fmt::Debug for RawHeadscale {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RawHeadscale { .. }")
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawCaddy {
    admin: Option<toml::Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawRoutes {
    domain: Option<toml::Value>,
    mode: Option<toml::Value>,
    upstream: Option<toml::Value>,
    upstream_port: Option<toml::Value>,
    magicdns_suffix: Option<toml::Value>,
    offline_grace: Option<toml::Value>,
    id_prefix: Option<toml::Value>,
    stream_close_delay: Option<toml::Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawStatus {
    listen: Option<toml::Value>,
}

/// A value and where it came from.
struct Sourced<T> {
    value: T,
    /// The environment variable that set it, or `None` for the file.
    env: Option<String>,
}

impl<T> Sourced<T> {
    /// `" (from TART_SYNC_…)"` when the value came from the environment.
    fn origin(&self) -> String {
        match &self.env {
            Some(var) => format!(" (from {var})"),
            None => String::new(),
        }
    }
}

/// The environment variable of a setting: `TART_SYNC_ROUTES_DOMAIN`.
pub fn env_var_name(section: &str, key: &str) -> String {
    format!(
        "{ENV_PREFIX}{}_{}",
        section.to_ascii_uppercase(),
        key.to_ascii_uppercase()
    )
}

/// Reads settings from the file and the environment.
struct Resolver<'a, E: Fn(&str) -> Option<String>> {
    env: &'a E,
}

impl<E: Fn(&str) -> Option<String>> Resolver<'_, E> {
    fn env(&self, section: &str, key: &str) -> Option<Sourced<String>> {
        let var = env_var_name(section, key);
        let value = (self.env)(&var)?;
        if value.trim().is_empty() {
            return None;
        }
        Some(Sourced {
            value,
            env: Some(var),
        })
    }

    /// A string setting.
    fn string(
        &self,
        section: &str,
        key: &str,
        file: Option<&toml::Value>,
    ) -> Result<Option<Sourced<String>>, ConfigError> {
        if let Some(v) = self.env(section, key) {
            return Ok(Some(v));
        }
        match file {
            None => Ok(None),
            Some(toml::Value::String(s)) => Ok(Some(Sourced {
                value: s.clone(),
                env: None,
            })),
            Some(other) => Err(invalid(
                &format!("{section}.{key}"),
                format!("expected a string, found {}", type_name(other)),
            )),
        }
    }

    /// A list of strings: a TOML array (or one string) in the file, a
    /// comma-separated list in the environment. Empty entries are dropped.
    fn list(
        &self,
        section: &str,
        key: &str,
        file: Option<&toml::Value>,
    ) -> Result<Option<Sourced<Vec<String>>>, ConfigError> {
        if let Some(v) = self.env(section, key) {
            let items = v
                .value
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect();
            return Ok(Some(Sourced {
                value: items,
                env: v.env,
            }));
        }
        let setting = format!("{section}.{key}");
        match file {
            None => Ok(None),
            Some(toml::Value::String(s)) => Ok(Some(Sourced {
                value: vec![s.trim().to_owned()],
                env: None,
            })),
            Some(toml::Value::Array(items)) => {
                let mut out = Vec::with_capacity(items.len());
                for (i, item) in items.iter().enumerate() {
                    match item {
                        toml::Value::String(s) => out.push(s.trim().to_owned()),
                        other => {
                            return Err(invalid(
                                &setting,
                                format!(
                                    "item {}: expected a string, found {}",
                                    i + 1,
                                    type_name(other)
                                ),
                            ))
                        }
                    }
                }
                Ok(Some(Sourced {
                    value: out,
                    env: None,
                }))
            }
            Some(other) => Err(invalid(
                &setting,
                format!("expected a list of strings, found {}", type_name(other)),
            )),
        }
    }

    /// An integer setting (a TOML integer, or a string of digits).
    fn integer(
        &self,
        section: &str,
        key: &str,
        file: Option<&toml::Value>,
    ) -> Result<Option<Sourced<i64>>, ConfigError> {
        let setting = format!("{section}.{key}");
        let text = match self.env(section, key) {
            Some(v) => v,
            None => match file {
                None => return Ok(None),
                Some(toml::Value::Integer(i)) => {
                    return Ok(Some(Sourced {
                        value: *i,
                        env: None,
                    }))
                }
                Some(toml::Value::String(s)) => Sourced {
                    value: s.clone(),
                    env: None,
                },
                Some(other) => {
                    return Err(invalid(
                        &setting,
                        format!("expected an integer, found {}", type_name(other)),
                    ))
                }
            },
        };
        match text.value.trim().parse::<i64>() {
            Ok(i) => Ok(Some(Sourced {
                value: i,
                env: text.env,
            })),
            Err(_) => Err(invalid(
                &setting,
                format!("{:?} is not an integer{}", text.value, text.origin()),
            )),
        }
    }

    /// A humantime duration such as `"5s"` or `"1m30s"`.
    fn duration(
        &self,
        section: &str,
        key: &str,
        file: Option<&toml::Value>,
        default: Duration,
    ) -> Result<Duration, ConfigError> {
        let setting = format!("{section}.{key}");
        if let (None, Some(toml::Value::Integer(_) | toml::Value::Float(_))) =
            (self.env(section, key), file)
        {
            return Err(invalid(
                &setting,
                "expected a duration string with a unit, like \"5s\", \"1m30s\" or \"100ms\"",
            ));
        }
        match self.string(section, key, file)? {
            None => Ok(default),
            Some(v) => humantime::parse_duration(v.value.trim()).map_err(|e| {
                invalid(
                    &setting,
                    format!(
                        "{:?} is not a duration like \"5s\" or \"1m30s\" ({e}){}",
                        v.value,
                        v.origin()
                    ),
                )
            }),
        }
    }
}

fn type_name(v: &toml::Value) -> &'static str {
    match v {
        toml::Value::String(_) => "a string",
        toml::Value::Integer(_) => "an integer",
        toml::Value::Float(_) => "a float",
        toml::Value::Boolean(_) => "a boolean",
        toml::Value::Datetime(_) => "a date-time",
        toml::Value::Array(_) => "an array",
        toml::Value::Table(_) => "a table",
    }
}

impl Settings {
    /// Loads the settings from `path` (if given) and the process
    /// environment (`TART_SYNC_<SECTION>_<KEY>`, which overrides the file).
    pub fn load(path: Option<&Path>) -> Result<Settings, ConfigError> {
        let text = match path {
            Some(path) => Some(fs::read_to_string(path).map_err(|e| ConfigError::ReadFile {
                path: path.to_owned(),
                reason: io_reason(&e),
            })?),
            None => None,
        };
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
        let raw = match file_text {
            Some(text) => parse_file(text, file_path)?,
            None => RawFile::default(),
        };
        let r = Resolver { env };
        let base_dir = file_path.and_then(Path::parent);

        let headscale = resolve_headscale(&r, &raw.headscale, base_dir)?;
        let caddy = resolve_caddy(&r, &raw.caddy)?;
        let routes = resolve_routes(&r, &raw.routes)?;
        let status = resolve_status(&r, &raw.status)?;
        Ok(Settings {
            headscale,
            caddy,
            routes,
            status,
        })
    }
}

fn parse_file(text: &str, file_path: Option<&Path>) -> Result<RawFile, ConfigError> {
    toml::from_str::<RawFile>(text).map_err(|e| {
        let (line, column, setting) = match e.span() {
            Some(span) => locate(text, span.start),
            None => (0, 0, None),
        };
        let file = match file_path {
            Some(p) => format!("config file {}", p.display()),
            None => "config file".to_owned(),
        };
        let location = if line > 0 {
            format!("{file} line {line}, column {column}")
        } else {
            file
        };
        ConfigError::Syntax {
            setting: setting.unwrap_or_else(|| "config file".to_owned()),
            location,
            // Only the message: toml's Display would quote the offending line,
            // which may hold the API key.
            message: tidy_toml_message(e.message()),
        }
    })
}

/// toml's message on one line, without the names of the internal structs
/// and without quoted values.
fn tidy_toml_message(message: &str) -> String {
    let mut message = message.trim().replace('\n', "; ");
    if let Some(pos) = message.find("struct Raw") {
        let end = message[pos + "struct ".len()..]
            .find(|c: char| !c.is_ascii_alphanumeric())
            .map_or(message.len(), |i| pos + "struct ".len() + i);
        message.replace_range(pos..end, "a table");
    }
    // `invalid type: string "…", expected …` would quote a value (maybe a
    // secret): keep only its type.
    if let Some(rest) = message.strip_prefix("invalid type: ") {
        let found = rest.split([' ', ',']).next().unwrap_or("value").to_owned();
        let expected = rest
            .find("expected ")
            .map_or("expected another type", |i| &rest[i..])
            .to_owned();
        message = format!("{expected}, found {found}");
    }
    message
}

/// Line and column (1-based) of a byte offset, and the `section.key` the
/// line defines, if it looks like one.
fn locate(text: &str, offset: usize) -> (usize, usize, Option<String>) {
    let offset = offset.min(text.len());
    let before = text.get(..offset).unwrap_or(text);
    let line_no = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    let line = text[line_start..].lines().next().unwrap_or("").trim();

    let mut section: Option<String> = None;
    for l in before[..line_start].lines() {
        let l = l.trim();
        if let Some(rest) = l.strip_prefix('[') {
            if !rest.starts_with('[') {
                if let Some(name) = rest.split(']').next() {
                    section = Some(name.trim().to_owned());
                }
            }
        }
    }
    let is_bare_key = |k: &str| {
        !k.is_empty()
            && k.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.')
    };
    let setting = if let Some(rest) = line.strip_prefix('[') {
        // A section header: `[routse]`.
        rest.split(']')
            .next()
            .map(str::trim)
            .filter(|k| is_bare_key(k))
            .map(str::to_owned)
    } else if let Some((key, _)) = line.split_once('=') {
        let key = key.trim();
        if is_bare_key(key) {
            Some(match &section {
                Some(s) => format!("{s}.{key}"),
                None => key.to_owned(),
            })
        } else {
            section.clone()
        }
    } else {
        section.clone()
    };
    (line_no, column, setting)
}

fn resolve_headscale<E: Fn(&str) -> Option<String>>(
    r: &Resolver<'_, E>,
    raw: &RawHeadscale,
    base_dir: Option<&Path>,
) -> Result<HeadscaleSettings, ConfigError> {
    const S: &str = "headscale";

    let url = match r.string(S, "url", raw.url.as_ref())? {
        Some(v) => parse_headscale_url(&v)?,
        None => {
            return Err(invalid(
                "headscale.url",
                format!(
                    "required (the URL of headscale, e.g. \"https://headscale.example.org\"; \
                     env {})",
                    env_var_name(S, "url")
                ),
            ))
        }
    };

    let (api_key, api_key_file) = resolve_api_key(r, raw, base_dir)?;

    let poll_interval = r.duration(
        S,
        "poll_interval",
        raw.poll_interval.as_ref(),
        DEFAULT_POLL_INTERVAL,
    )?;
    if poll_interval < MIN_POLL_INTERVAL {
        return Err(invalid(
            "headscale.poll_interval",
            format!(
                "{} is too short (at least 100ms)",
                humantime::format_duration(poll_interval)
            ),
        ));
    }
    let timeout = r.duration(S, "timeout", raw.timeout.as_ref(), DEFAULT_TIMEOUT)?;
    if timeout.is_zero() {
        return Err(invalid("headscale.timeout", "must be longer than 0s"));
    }

    let user = r
        .string(S, "user", raw.user.as_ref())?
        .map(|v| v.value.trim().to_owned())
        .filter(|u| !u.is_empty());
    if let Some(user) = &user {
        if user.chars().any(char::is_control) {
            return Err(invalid(
                "headscale.user",
                format!("{user:?} contains control characters"),
            ));
        }
    }

    let mut tags = Vec::new();
    if let Some(v) = r.list(S, "tags", raw.tags.as_ref())? {
        for tag in &v.value {
            let ok = tag
                .strip_prefix("tag:")
                .is_some_and(|name| !name.is_empty() && !name.chars().any(char::is_whitespace));
            if !ok {
                return Err(invalid(
                    "headscale.tags",
                    format!(
                        "{tag:?} is not a tag (tags look like \"tag:tart\"){}",
                        v.origin()
                    ),
                ));
            }
            if !tags.contains(tag) {
                tags.push(tag.clone());
            }
        }
    }

    Ok(HeadscaleSettings {
        url,
        api_key,
        api_key_file,
        poll_interval,
        timeout,
        user,
        tags,
    })
}

fn parse_headscale_url(v: &Sourced<String>) -> Result<Url, ConfigError> {
    const SETTING: &str = "headscale.url";
    let text = v.value.trim();
    let url = Url::parse(text).map_err(|e| {
        invalid(
            SETTING,
            format!("{text:?} is not a valid URL: {e}{}", v.origin()),
        )
    })?;
    if !url.username().is_empty() || url.password().is_some() {
        // Do not echo the URL: it holds credentials.
        return Err(invalid(
            SETTING,
            format!(
                "must not contain a user name or password (the API key authenticates){}",
                v.origin()
            ),
        ));
    }
    if url.scheme() != "http" && url.scheme() != "https" {
        return Err(invalid(
            SETTING,
            format!("{text:?} must be an http:// or https:// URL{}", v.origin()),
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(invalid(
            SETTING,
            format!("{text:?} has no host{}", v.origin()),
        ));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(invalid(
            SETTING,
            format!("{text:?} must not have a query or fragment{}", v.origin()),
        ));
    }
    Ok(url)
}

fn resolve_api_key<E: Fn(&str) -> Option<String>>(
    r: &Resolver<'_, E>,
    raw: &RawHeadscale,
    base_dir: Option<&Path>,
) -> Result<(ApiKey, Option<PathBuf>), ConfigError> {
    const S: &str = "headscale";
    let exactly_one = || {
        invalid(
            S,
            format!(
                "set exactly one of api_key_file or api_key (env {} / {})",
                env_var_name(S, "api_key_file"),
                env_var_name(S, "api_key")
            ),
        )
    };

    let env_file = r.env(S, "api_key_file");
    let env_key = r.env(S, "api_key");
    let (file, inline) = if env_file.is_some() || env_key.is_some() {
        (env_file, env_key)
    } else {
        // No environment override: both come from the file. Use a resolver
        // without environment so that only the file's values are seen.
        let no_env = |_: &str| None;
        let file_only = Resolver { env: &no_env };
        (
            file_only.string(S, "api_key_file", raw.api_key_file.as_ref())?,
            file_only.string(S, "api_key", raw.api_key.as_ref())?,
        )
    };

    match (file, inline) {
        (Some(file), None) => {
            let path = PathBuf::from(file.value.trim());
            if path.as_os_str().is_empty() {
                return Err(exactly_one());
            }
            let path = match (&file.env, base_dir) {
                (None, Some(dir)) if path.is_relative() => dir.join(path),
                _ => path,
            };
            let key = ApiKey::from_file(&path).map_err(|e| match e {
                ConfigError::Invalid { setting, message } => ConfigError::Invalid {
                    setting,
                    message: format!("{message}{}", file.origin()),
                },
                other => other,
            })?;
            Ok((key, Some(path)))
        }
        (None, Some(inline)) => {
            let key = ApiKey::new(inline.value);
            if key.expose().starts_with('/') {
                return Err(invalid(
                    "headscale.api_key",
                    format!(
                        "looks like a file path; use api_key_file for a file{}",
                        inline.env.as_deref().map_or(String::new(), |v| format!(
                            " (from {v}; use {})",
                            env_var_name(S, "api_key_file")
                        ))
                    ),
                ));
            }
            key.check().map_err(|problem| {
                invalid(
                    "headscale.api_key",
                    format!(
                        "{problem}{}",
                        inline
                            .env
                            .as_deref()
                            .map_or(String::new(), |v| format!(" (from {v})"))
                    ),
                )
            })?;
            Ok((key, None))
        }
        _ => Err(exactly_one()),
    }
}

fn resolve_caddy<E: Fn(&str) -> Option<String>>(
    r: &Resolver<'_, E>,
    raw: &RawCaddy,
) -> Result<CaddySettings, ConfigError> {
    const SETTING: &str = "caddy.admin";
    let admin = match r.list("caddy", "admin", raw.admin.as_ref())? {
        None => vec![DEFAULT_CADDY_ADMIN.to_owned()],
        Some(v) => {
            if v.value.is_empty() {
                return Err(invalid(
                    SETTING,
                    format!("needs at least one admin address{}", v.origin()),
                ));
            }
            let mut out: Vec<String> = Vec::with_capacity(v.value.len());
            for addr in &v.value {
                let addr = normalize_admin_address(addr).map_err(|problem| {
                    invalid(SETTING, format!("{addr:?} {problem}{}", v.origin()))
                })?;
                if !out.contains(&addr) {
                    out.push(addr);
                }
            }
            out
        }
    };
    Ok(CaddySettings { admin })
}

/// Checks one of Caddy's admin address forms; returns the normalised form.
fn normalize_admin_address(addr: &str) -> Result<String, String> {
    const FORMS: &str =
        "(use host:port, http://host:port, https://host:port or unix//path/to.sock)";
    if let Some(path) = addr.strip_prefix("unix/") {
        if path.is_empty() {
            return Err(format!("has no socket path {FORMS}"));
        }
        return Ok(addr.to_owned());
    }
    if addr.starts_with("http://") || addr.starts_with("https://") {
        let url = Url::parse(addr).map_err(|e| format!("is not a valid URL: {e} {FORMS}"))?;
        if url.host_str().is_none_or(str::is_empty) {
            return Err(format!("has no host {FORMS}"));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err("must not contain a user name or password".to_owned());
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err("must not have a query or fragment".to_owned());
        }
        return Ok(addr.trim_end_matches('/').to_owned());
    }
    if addr.contains("://") {
        return Err(format!("has an unsupported scheme {FORMS}"));
    }
    // host:port, [v6]:port or :port
    let (host, port) = addr
        .rsplit_once(':')
        .ok_or_else(|| format!("has no port {FORMS}"))?;
    match port.parse::<u16>() {
        Ok(p) if p > 0 => {}
        _ => return Err(format!("has an invalid port {FORMS}")),
    }
    if host.is_empty() {
        return Ok(format!("localhost:{port}"));
    }
    let host_ok = if let Some(v6) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        v6.parse::<std::net::Ipv6Addr>().is_ok()
    } else {
        host.parse::<std::net::Ipv4Addr>().is_ok() || is_valid_dns_name(&host.to_ascii_lowercase())
    };
    if !host_ok {
        return Err(format!("has an invalid host {FORMS}"));
    }
    Ok(addr.to_owned())
}

/// A DNS name: dot-separated [`is_valid_dns_label`]s, at most 253
/// characters, not all-numeric in its last label. Expects lower case.
fn is_valid_dns_name(name: &str) -> bool {
    if name.is_empty() || name.len() > 253 {
        return false;
    }
    if !name.split('.').all(is_valid_dns_label) {
        return false;
    }
    name.rsplit('.')
        .next()
        .is_some_and(|tld| !tld.chars().all(|c| c.is_ascii_digit()))
}

/// Lower-cases and strips a final dot (and a leading one when
/// `allow_leading_dot`), then checks [`is_valid_dns_name`].
fn dns_name_setting(
    setting: &str,
    v: &Sourced<String>,
    allow_leading_dot: bool,
) -> Result<String, ConfigError> {
    let mut name = v.value.trim().to_ascii_lowercase();
    if name.ends_with('.') {
        name.pop();
    }
    if allow_leading_dot {
        if let Some(rest) = name.strip_prefix('.') {
            name = rest.to_owned();
        }
    }
    if is_valid_dns_name(&name) {
        Ok(name)
    } else {
        Err(invalid(
            setting,
            format!("{:?} is not a valid DNS name{}", v.value, v.origin()),
        ))
    }
}

fn resolve_routes<E: Fn(&str) -> Option<String>>(
    r: &Resolver<'_, E>,
    raw: &RawRoutes,
) -> Result<RouteSettings, ConfigError> {
    const S: &str = "routes";

    let domain = match r.string(S, "domain", raw.domain.as_ref())? {
        Some(v) => dns_name_setting("routes.domain", &v, false)?,
        None => {
            return Err(invalid(
                "routes.domain",
                format!(
                    "required (the site's DNS name, e.g. \"tart.example.org\"; env {})",
                    env_var_name(S, "domain")
                ),
            ))
        }
    };

    let mode = match r.string(S, "mode", raw.mode.as_ref())? {
        None => RouteMode::Path,
        Some(v) => v
            .value
            .parse::<RouteMode>()
            .map_err(|e| invalid("routes.mode", format!("{e}{}", v.origin())))?,
    };

    let upstream = match r.string(S, "upstream", raw.upstream.as_ref())? {
        None => UpstreamKind::Ip,
        Some(v) => v
            .value
            .parse::<UpstreamKind>()
            .map_err(|e| invalid("routes.upstream", format!("{e}{}", v.origin())))?,
    };

    let upstream_port = match r.integer(S, "upstream_port", raw.upstream_port.as_ref())? {
        None => DEFAULT_UPSTREAM_PORT,
        Some(v) => match u16::try_from(v.value) {
            Ok(p) if p > 0 => p,
            _ => {
                return Err(invalid(
                    "routes.upstream_port",
                    format!("{} is not a port (1..=65535){}", v.value, v.origin()),
                ))
            }
        },
    };

    let magicdns_suffix = match r.string(S, "magicdns_suffix", raw.magicdns_suffix.as_ref())? {
        Some(v) if !v.value.trim().is_empty() => {
            Some(dns_name_setting("routes.magicdns_suffix", &v, true)?)
        }
        _ => None,
    };
    if upstream == UpstreamKind::MagicDns && magicdns_suffix.is_none() {
        return Err(invalid(
            "routes.magicdns_suffix",
            format!(
                "required when routes.upstream = \"magicdns\" (headscale's dns.base_domain, \
                 e.g. \"tailnet.example.org\"; env {})",
                env_var_name(S, "magicdns_suffix")
            ),
        ));
    }

    let offline_grace = r.duration(
        S,
        "offline_grace",
        raw.offline_grace.as_ref(),
        DEFAULT_OFFLINE_GRACE,
    )?;

    let id_prefix = match r.string(S, "id_prefix", raw.id_prefix.as_ref())? {
        None => DEFAULT_ID_PREFIX.to_owned(),
        Some(v) => {
            let p = v.value.trim();
            let ok = !p.is_empty()
                && p.len() <= MAX_ID_PREFIX_LEN
                && p.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
            if !ok {
                return Err(invalid(
                    "routes.id_prefix",
                    format!(
                        "{:?} must be 1 to {MAX_ID_PREFIX_LEN} characters of a-z, 0-9 and -{}",
                        v.value,
                        v.origin()
                    ),
                ));
            }
            p.to_owned()
        }
    };

    let stream_close_delay = r.duration(
        S,
        "stream_close_delay",
        raw.stream_close_delay.as_ref(),
        DEFAULT_STREAM_CLOSE_DELAY,
    )?;

    Ok(RouteSettings {
        domain,
        mode,
        upstream,
        upstream_port,
        magicdns_suffix,
        offline_grace,
        id_prefix,
        stream_close_delay,
    })
}

fn resolve_status<E: Fn(&str) -> Option<String>>(
    r: &Resolver<'_, E>,
    raw: &RawStatus,
) -> Result<StatusSettings, ConfigError> {
    let listen = match r.string("status", "listen", raw.listen.as_ref())? {
        None => DEFAULT_STATUS_LISTEN,
        Some(v) => v.value.trim().parse::<SocketAddr>().map_err(|_| {
            invalid(
                "status.listen",
                format!(
                    "{:?} is not a socket address (like 127.0.0.1:9180 or [::1]:9180){}",
                    v.value,
                    v.origin()
                ),
            )
        })?,
    };
    Ok(StatusSettings { listen })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locate_finds_section_and_key() {
        let text = "[headscale]\nurl = \"x\"\n\n[routes]\ndomian = \"a\"\n";
        let offset = text.find("domian").unwrap_or(0);
        let (line, col, setting) = locate(text, offset);
        assert_eq!((line, col), (5, 1));
        assert_eq!(setting.as_deref(), Some("routes.domian"));
    }

    #[test]
    fn admin_address_forms() {
        assert_eq!(
            normalize_admin_address("localhost:2019").as_deref(),
            Ok("localhost:2019")
        );
        assert_eq!(
            normalize_admin_address(":2019").as_deref(),
            Ok("localhost:2019")
        );
        assert!(normalize_admin_address("[::1]:2019").is_ok());
        assert!(normalize_admin_address("unix//run/caddy/admin.sock").is_ok());
        assert!(normalize_admin_address("http://127.0.0.1:2019").is_ok());
        assert!(normalize_admin_address("https://caddy.internal:2019/").is_ok());
        assert!(normalize_admin_address("unix/").is_err());
        assert!(normalize_admin_address("localhost").is_err());
        assert!(normalize_admin_address("localhost:0").is_err());
        assert!(normalize_admin_address("ftp://x:1").is_err());
        assert!(normalize_admin_address("bad host:2019").is_err());
    }

    #[test]
    fn dns_names() {
        assert!(is_valid_dns_name("tart.example.org"));
        assert!(is_valid_dns_name("localhost"));
        assert!(!is_valid_dns_name("-bad-"));
        assert!(!is_valid_dns_name("a..b"));
        assert!(!is_valid_dns_name("10.0.0.1"));
        assert!(!is_valid_dns_name(""));
    }

    #[test]
    fn io_reason_strips_os_error() {
        let e = std::io::Error::from_raw_os_error(2);
        assert!(!io_reason(&e).contains("os error"));
    }
}
