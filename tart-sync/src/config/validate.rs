//! The checks serde cannot express: required settings, defaults, values
//! that depend on each other, and the syntax of names, URLs and addresses.
//! Every error ends with where the value was set ([`Sources::invalid`]).

use std::path::{Path, PathBuf};
use std::time::Duration;

use caddy_client::AdminAddress;
use url::Url;

use super::source::{Origin, Sources};
use super::tls::{self, IdentityProblem};
use super::{
    env_var_name, ApiKey, CaddyInput, CaddySettings, ConfigError, HeadscaleInput,
    HeadscaleSettings, HostPattern, Input, RouteMode, RouteSettings, RoutesInput, SecretFile,
    Settings, StatusInput, StatusSettings, UpstreamKind, DEFAULT_CADDY_ADMIN,
    DEFAULT_CADDY_TIMEOUT, DEFAULT_CADDY_WRITE_TIMEOUT, DEFAULT_ID_PREFIX, DEFAULT_OFFLINE_GRACE,
    DEFAULT_POLL_INTERVAL, DEFAULT_STATUS_LISTEN, DEFAULT_STREAM_CLOSE_DELAY, DEFAULT_TIMEOUT,
    DEFAULT_UPSTREAM_PORT, MAX_CADDY_TIMEOUT, MAX_ID_PREFIX_LEN, MAX_OFFLINE_GRACE,
    MAX_POLL_INTERVAL, MAX_STREAM_CLOSE_DELAY, MAX_TIMEOUT, MIN_POLL_INTERVAL,
};
use crate::headscale::is_valid_dns_label;

/// Returns `Err(src.invalid(setting, format!(…)))`.
macro_rules! bail {
    ($src:expr, $setting:expr, $($message:tt)+) => {
        return Err($src.invalid($setting, format!($($message)+)))
    };
}

/// Checks the deserialized settings and fills in the defaults.
pub(super) fn settings(input: Input, src: &Sources<'_>) -> Result<Settings, ConfigError> {
    Ok(Settings {
        headscale: headscale(input.headscale, src)?,
        caddy: caddy(input.caddy, src)?,
        routes: routes(input.routes, src)?,
        status: status(input.status, src)?,
        probe: super::probe::validate(input.probe, src)?,
        history: super::history::validate(input.history, src)?,
        notify: super::notify::validate(input.notify, src)?,
    })
}

/// A duration within its bound: larger values are certainly typos, and
/// would overflow the clock arithmetic they feed.
fn at_most(
    src: &Sources<'_>,
    setting: &str,
    value: Duration,
    max: Duration,
) -> Result<(), ConfigError> {
    if value > max {
        let (shown, max) = (humantime::format_duration(value), in_days(max));
        bail!(src, setting, "{shown} is too long (at most {max})");
    }
    Ok(())
}

/// `365days` rather than humantime's `11months 30days 3h 50m 24s`.
fn in_days(d: Duration) -> String {
    const DAY: u64 = 86_400;
    match d.as_secs() {
        s if s >= DAY && s % DAY == 0 && d.subsec_nanos() == 0 => format!("{}days", s / DAY),
        _ => humantime::format_duration(d).to_string(),
    }
}

/// `required<when> (<what>; env TART_SYNC_…)`.
fn required(src: &Sources<'_>, section: &str, key: &str, when: &str, what: &str) -> ConfigError {
    let var = env_var_name(section, key);
    let message = format!("required{when} ({what}; env {var})");
    src.invalid(&format!("{section}.{key}"), message)
}

fn headscale(h: HeadscaleInput, src: &Sources<'_>) -> Result<HeadscaleSettings, ConfigError> {
    let what = "the URL of headscale, e.g. \"https://headscale.example.org\"";
    let url = h
        .url
        .ok_or_else(|| required(src, "headscale", "url", "", what))?;
    let url = headscale_url(&url, src)?;
    let (api_key, api_key_file) = api_key(h.api_key_file, h.api_key, src)?;
    let secret_file = match (&api_key_file, src.origin("headscale.api_key"), src.path) {
        (Some(path), _, _) => Some(SecretFile {
            path: path.clone(),
            setting: "headscale.api_key_file",
        }),
        (None, Some(Origin::File(_)), Some(config)) => Some(SecretFile {
            path: config.to_owned(),
            setting: "headscale.api_key",
        }),
        _ => None,
    };

    let poll_interval = h.poll_interval.unwrap_or(DEFAULT_POLL_INTERVAL);
    if poll_interval < MIN_POLL_INTERVAL {
        let shown = humantime::format_duration(poll_interval);
        bail!(
            src,
            "headscale.poll_interval",
            "{shown} is too short (at least 100ms)"
        );
    }
    at_most(
        src,
        "headscale.poll_interval",
        poll_interval,
        MAX_POLL_INTERVAL,
    )?;
    let timeout = h.timeout.unwrap_or(DEFAULT_TIMEOUT);
    if timeout.is_zero() {
        bail!(src, "headscale.timeout", "must be longer than 0s");
    }
    at_most(src, "headscale.timeout", timeout, MAX_TIMEOUT)?;

    let user = h.user.filter(|u| !u.is_empty());
    if let Some(user) = user.as_ref().filter(|u| u.chars().any(char::is_control)) {
        bail!(
            src,
            "headscale.user",
            "{user:?} contains control characters"
        );
    }

    let mut tags: Vec<String> = Vec::with_capacity(h.tags.len());
    for tag in h.tags {
        let name = tag.strip_prefix("tag:").unwrap_or_default();
        if name.is_empty() || name.chars().any(char::is_whitespace) {
            bail!(
                src,
                "headscale.tags",
                "{tag:?} is not a tag (tags look like \"tag:tart\")"
            );
        }
        if !tags.contains(&tag) {
            tags.push(tag);
        }
    }

    Ok(HeadscaleSettings {
        url,
        api_key,
        api_key_file,
        secret_file,
        poll_interval,
        timeout,
        user,
        tags,
    })
}

fn headscale_url(text: &str, src: &Sources<'_>) -> Result<Url, ConfigError> {
    const S: &str = "headscale.url";
    let url = match Url::parse(text) {
        Ok(url) => url,
        Err(e) => bail!(src, S, "{text:?} is not a valid URL: {e}"),
    };
    if !url.username().is_empty() || url.password().is_some() {
        // Do not echo the URL: it holds credentials.
        bail!(
            src,
            S,
            "must not contain a user name or password (the API key authenticates)"
        );
    }
    if url.scheme() != "http" && url.scheme() != "https" {
        bail!(src, S, "{text:?} must be an http:// or https:// URL");
    }
    if url.host_str().is_none_or(str::is_empty) {
        bail!(src, S, "{text:?} has no host");
    }
    if url.query().is_some() || url.fragment().is_some() {
        bail!(src, S, "{text:?} must not have a query or fragment");
    }
    Ok(url)
}

/// The key from exactly one of `api_key_file` (read now) and `api_key`.
fn api_key(
    file: Option<PathBuf>,
    inline: Option<ApiKey>,
    src: &Sources<'_>,
) -> Result<(ApiKey, Option<PathBuf>), ConfigError> {
    const FILE: &str = "headscale.api_key_file";
    const INLINE: &str = "headscale.api_key";
    let file_var = env_var_name("headscale", "api_key_file");
    match (file, inline) {
        (Some(path), None) if !path.as_os_str().is_empty() => {
            let path = resolve(src, FILE, path);
            let key = ApiKey::read(&path).map_err(|problem| src.invalid(FILE, problem))?;
            Ok((key, Some(path)))
        }
        (None, Some(key)) => {
            if key.expose().starts_with('/') {
                bail!(
                    src,
                    INLINE,
                    "looks like a file path; use api_key_file (env {file_var}) for a file"
                );
            }
            key.check()
                .map_err(|problem| src.invalid(INLINE, problem))?;
            Ok((key, None))
        }
        _ => {
            let key_var = env_var_name("headscale", "api_key");
            bail!(
                src,
                "headscale",
                "set exactly one of api_key_file or api_key (env {file_var} / {key_var})"
            );
        }
    }
}

/// A path as written for `setting`: relative to the config file's
/// directory when written in the file, else as given.
pub(super) fn resolve(src: &Sources<'_>, setting: &str, path: PathBuf) -> PathBuf {
    match (src.origin(setting), src.path.and_then(Path::parent)) {
        (Some(Origin::File(_)), Some(dir)) if path.is_relative() => dir.join(path),
        _ => path,
    }
}

fn caddy(c: CaddyInput, src: &Sources<'_>) -> Result<CaddySettings, ConfigError> {
    const SETTING: &str = "caddy.admin";
    let timeout = caddy_timeout(src, "caddy.timeout", c.timeout, DEFAULT_CADDY_TIMEOUT)?;
    let write_timeout = caddy_timeout(
        src,
        "caddy.write_timeout",
        c.write_timeout,
        DEFAULT_CADDY_WRITE_TIMEOUT,
    )?;
    let admin = match &c.admin {
        None => vec![DEFAULT_CADDY_ADMIN.to_owned()],
        Some(given) if given.is_empty() => {
            bail!(src, SETTING, "needs at least one admin address")
        }
        Some(given) => {
            let mut admin: Vec<String> = Vec::with_capacity(given.len());
            for text in given {
                let address =
                    admin_address(text).map_err(|problem| src.invalid(SETTING, problem))?;
                if !admin.contains(&address) {
                    admin.push(address);
                }
            }
            admin
        }
    };
    let (tls_ca, tls_identity) = caddy_tls(&c, &admin, src)?;
    Ok(CaddySettings {
        admin,
        timeout,
        write_timeout,
        tls_ca,
        tls_identity,
    })
}

/// `caddy.timeout` or `caddy.write_timeout`: longer than zero, at most
/// [`MAX_CADDY_TIMEOUT`].
fn caddy_timeout(
    src: &Sources<'_>,
    setting: &str,
    given: Option<Duration>,
    default: Duration,
) -> Result<Duration, ConfigError> {
    let timeout = given.unwrap_or(default);
    if timeout.is_zero() {
        bail!(src, setting, "must be longer than 0s");
    }
    at_most(src, setting, timeout, MAX_CADDY_TIMEOUT)?;
    Ok(timeout)
}

/// `caddy.tls_ca_file`, `caddy.tls_cert_file` and `caddy.tls_key_file`:
/// files read and checked now; cert and key go together; set only with an
/// `https://` admin address, the only kind they apply to.
fn caddy_tls(
    c: &CaddyInput,
    admin: &[String],
    src: &Sources<'_>,
) -> Result<(Option<tls::CaFile>, Option<tls::ClientIdentity>), ConfigError> {
    const CA: &str = "caddy.tls_ca_file";
    const CERT: &str = "caddy.tls_cert_file";
    const KEY: &str = "caddy.tls_key_file";
    let given = |path: &Option<PathBuf>| path.clone().filter(|p| !p.as_os_str().is_empty());
    let (ca, cert, key) = (
        given(&c.tls_ca_file),
        given(&c.tls_cert_file),
        given(&c.tls_key_file),
    );
    let first_set = [(CA, &ca), (CERT, &cert), (KEY, &key)]
        .into_iter()
        .find_map(|(setting, path)| path.as_ref().map(|_| setting));
    if let Some(setting) = first_set {
        if !admin.iter().any(|a| a.starts_with("https://")) {
            bail!(
                src,
                setting,
                "applies only to https:// admin addresses and caddy.admin has none \
                 (write the remote admin endpoint as https://host:port)"
            );
        }
    }
    let tls_ca = ca
        .map(|path| tls::ca_file(resolve(src, CA, path)).map_err(|p| src.invalid(CA, p)))
        .transpose()?;
    let tls_identity = match (cert, key) {
        (Some(cert), Some(key)) => {
            let (cert, key) = (resolve(src, CERT, cert), resolve(src, KEY, key));
            Some(
                tls::client_identity(cert, key).map_err(|problem| match problem {
                    IdentityProblem::Cert(p) => src.invalid(CERT, p),
                    IdentityProblem::Key(p) => src.invalid(KEY, p),
                })?,
            )
        }
        (None, None) => None,
        (Some(_), None) => {
            let var = env_var_name("caddy", "tls_key_file");
            bail!(
                src,
                KEY,
                "required when caddy.tls_cert_file is set (the client certificate's private key; env {var})"
            );
        }
        (None, Some(_)) => {
            let var = env_var_name("caddy", "tls_cert_file");
            bail!(
                src,
                CERT,
                "required when caddy.tls_key_file is set (the client certificate, PEM; env {var})"
            );
        }
    };
    Ok((tls_ca, tls_identity))
}

/// One admin address, read by caddy-client's parser (the one its client
/// uses), in one spelling per address: `host:port` when no scheme was
/// written, else `http(s)://host:port` or `unix//path`.
fn admin_address(text: &str) -> Result<String, String> {
    let address = AdminAddress::parse(text).map_err(|e| e.to_string())?;
    let AdminAddress::Tcp { scheme, host, port } = &address else {
        return Ok(address.to_string());
    };
    if scheme == "http" && !text.starts_with("http://") {
        Ok(format!("{host}:{port}"))
    } else {
        Ok(address.to_string())
    }
}

/// A DNS name: dot-separated [`is_valid_dns_label`]s, at most 253
/// characters, the last one not all digits. Expects lower case.
pub(super) fn is_valid_dns_name(name: &str) -> bool {
    name.len() <= 253
        && name.split('.').all(is_valid_dns_label)
        && name
            .rsplit('.')
            .next()
            .is_some_and(|tld| !tld.bytes().all(|b| b.is_ascii_digit()))
}

/// Lower-cases and strips a final dot (and a leading one when
/// `allow_leading_dot`), then checks [`is_valid_dns_name`].
fn dns_name(
    src: &Sources<'_>,
    setting: &str,
    value: &str,
    allow_leading_dot: bool,
) -> Result<String, ConfigError> {
    let lower = value.to_ascii_lowercase();
    let name = lower.strip_suffix('.').unwrap_or(&lower);
    let name = match name.strip_prefix('.') {
        Some(rest) if allow_leading_dot => rest,
        _ => name,
    };
    if !is_valid_dns_name(name) {
        bail!(src, setting, "{value:?} is not a valid DNS name");
    }
    Ok(name.to_owned())
}

fn routes(r: RoutesInput, src: &Sources<'_>) -> Result<RouteSettings, ConfigError> {
    let what = "the site's DNS name, e.g. \"tart.example.org\"";
    let domain = r
        .domain
        .ok_or_else(|| required(src, "routes", "domain", "", what))?;
    let domain = dns_name(src, "routes.domain", &domain, false)?;

    let upstream_port = r.upstream_port.unwrap_or(DEFAULT_UPSTREAM_PORT);
    if upstream_port == 0 {
        bail!(src, "routes.upstream_port", "0 is not a port (1..=65535)");
    }

    let magicdns_suffix = r
        .magicdns_suffix
        .filter(|s| !s.is_empty())
        .map(|suffix| dns_name(src, "routes.magicdns_suffix", &suffix, true))
        .transpose()?;
    let upstream = r.upstream.unwrap_or(UpstreamKind::Ip);
    if upstream == UpstreamKind::MagicDns && magicdns_suffix.is_none() {
        let when = " when routes.upstream = \"magicdns\"";
        let what = "headscale's dns.base_domain, e.g. \"tailnet.example.org\"";
        return Err(required(src, "routes", "magicdns_suffix", when, what));
    }

    let id_prefix = r.id_prefix.unwrap_or_else(|| DEFAULT_ID_PREFIX.to_owned());
    let ok = (1..=MAX_ID_PREFIX_LEN).contains(&id_prefix.len())
        && id_prefix
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if !ok {
        bail!(
            src,
            "routes.id_prefix",
            "{id_prefix:?} must be 1 to {MAX_ID_PREFIX_LEN} characters of a-z, 0-9 and -"
        );
    }

    let offline_grace = r.offline_grace.unwrap_or(DEFAULT_OFFLINE_GRACE);
    at_most(
        src,
        "routes.offline_grace",
        offline_grace,
        MAX_OFFLINE_GRACE,
    )?;
    let stream_close_delay = r.stream_close_delay.unwrap_or(DEFAULT_STREAM_CLOSE_DELAY);
    at_most(
        src,
        "routes.stream_close_delay",
        stream_close_delay,
        MAX_STREAM_CLOSE_DELAY,
    )?;

    let mut reserved: Vec<String> = Vec::with_capacity(r.reserved.len());
    for name in r.reserved {
        let lower = name.to_ascii_lowercase();
        if !is_valid_dns_label(&lower) {
            bail!(
                src,
                "routes.reserved",
                "{name:?} is not a name a TART could have (1 to 63 characters of a-z, 0-9 and -)"
            );
        }
        if !reserved.contains(&lower) {
            reserved.push(lower);
        }
    }

    Ok(RouteSettings {
        domain,
        mode: r.mode.unwrap_or(RouteMode::Path),
        upstream,
        upstream_port,
        magicdns_suffix,
        offline_grace,
        id_prefix,
        stream_close_delay,
        reserved,
    })
}

fn status(s: StatusInput, src: &Sources<'_>) -> Result<StatusSettings, ConfigError> {
    let listen = match s.listen {
        None => DEFAULT_STATUS_LISTEN,
        Some(text) => match text.parse() {
            Ok(listen) => listen,
            Err(_) => bail!(
                src,
                "status.listen",
                "{text:?} is not a socket address (like 127.0.0.1:9180 or [::1]:9180)"
            ),
        },
    };
    let mut allowed_hosts: Vec<HostPattern> = Vec::with_capacity(s.allowed_hosts.len());
    for text in &s.allowed_hosts {
        let host = HostPattern::parse(text.trim())
            .map_err(|problem| src.invalid("status.allowed_hosts", problem))?;
        if !allowed_hosts.contains(&host) {
            allowed_hosts.push(host);
        }
    }
    Ok(StatusSettings {
        listen,
        allowed_hosts,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admin_addresses_are_read_by_caddy_clients_parser() {
        for (given, kept) in [
            ("localhost:2019", "localhost:2019"),
            (":2019", "localhost:2019"),
            ("tcp/localhost:2019", "localhost:2019"),
            ("[::1]:2019", "[::1]:2019"),
            ("unix//run/caddy/admin.sock", "unix//run/caddy/admin.sock"),
            ("http://127.0.0.1:2019", "http://127.0.0.1:2019"),
            (
                "https://caddy.internal:2019/",
                "https://caddy.internal:2019",
            ),
        ] {
            assert_eq!(admin_address(given).as_deref(), Ok(kept), "{given}");
        }
        for bad in [
            "unix/",
            "localhost",
            "localhost:0",
            "ftp://x:1",
            "bad host:2019",
            "http://user@caddy:2019",
            "http://caddy:2019/?x=1",
        ] {
            let err = admin_address(bad).unwrap_err();
            assert!(err.contains(&format!("{bad:?}")), "{bad}: {err}");
        }
    }

    #[test]
    fn host_patterns() {
        let p = |t: &str| HostPattern::parse(t).map(|h| h.to_string());
        for (given, kept) in [
            ("status.example.org", "status.example.org"),
            ("Status.Example.ORG.", "status.example.org"),
            ("status.example.org:9180", "status.example.org:9180"),
            ("localhost", "localhost"),
            ("192.0.2.1", "192.0.2.1"),
            ("192.0.2.1:80", "192.0.2.1:80"),
            ("2001:DB8::1", "[2001:db8::1]"),
            ("[2001:db8:0::1]:9180", "[2001:db8::1]:9180"),
            ("[::1]", "[::1]"),
        ] {
            assert_eq!(p(given).as_deref(), Ok(kept), "{given}");
        }
        for bad in [
            "",
            ":9180",
            "a b",
            "-x.example",
            "x.example:",
            "x.example:65536",
            "x.example:+1",
            "x:1:2",
            "user@x.example",
            "http://x.example",
            "x.example/path",
            "[::1",
            "[::1]9180",
            "[x]",
            "10.0.0",
            "*.example.org",
        ] {
            let err = HostPattern::parse(bad).unwrap_err();
            assert!(err.contains(&format!("{bad:?}")), "{bad}: {err}");
        }
        let pat = HostPattern::parse("a.example").unwrap();
        let host = |t| HostPattern::parse(t).unwrap();
        assert!(pat.matches(&host("a.example:1234")) && pat.matches(&host("a.example")));
        assert!(!pat.matches(&host("b.example")));
        let pat = HostPattern::parse("a.example:9180").unwrap();
        assert!(pat.matches(&host("a.example:9180")));
        assert!(!pat.matches(&host("a.example:9181")) && !pat.matches(&host("a.example")));
        assert!(HostPattern::parse("a.example:80")
            .unwrap()
            .matches(&host("a.example")));
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
}
