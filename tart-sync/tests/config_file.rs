//! Settings from a TOML file and an environment map (never the process
//! environment, which other tests share).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use tart_sync::config::{ConfigError, RouteMode, Settings, UpstreamKind};

const EXAMPLE: &str = include_str!("../../tart-sync.example.toml");
const SECRET: &str = "hskey-api-Ab12Cd34Ef56-t0ps3cr3tt0ps3cr3t";

fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let map: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    move |name: &str| map.get(name).cloned()
}

fn no_env() -> impl Fn(&str) -> Option<String> {
    env_of(&[])
}

fn load(text: &str, env: &[(&str, &str)]) -> Result<Settings, ConfigError> {
    Settings::from_sources(Some(text), &env_of(env), None)
}

const MINIMAL: &str = r#"
[headscale]
url = "https://headscale.example.org"
api_key = "hskey-api-Ab12Cd34Ef56-t0ps3cr3tt0ps3cr3t"
[routes]
domain = "tart.example.org"
"#;

fn err_of(text: &str, env: &[(&str, &str)]) -> ConfigError {
    match load(text, env) {
        Ok(s) => panic!("expected an error, got {s:?}"),
        Err(e) => {
            let msg = e.to_string();
            assert!(!msg.contains(SECRET), "key leaked into {msg}");
            assert!(!format!("{e:?}").contains(SECRET), "key leaked into {e:?}");
            e
        }
    }
}

#[test]
fn example_file_is_valid_with_env_api_key() {
    let s = load(EXAMPLE, &[("TART_SYNC_HEADSCALE_API_KEY", SECRET)]).unwrap();
    assert_eq!(s.headscale.url.as_str(), "https://headscale.example.org/");
    assert_eq!(s.headscale.api_key.expose(), SECRET);
    assert_eq!(s.headscale.api_key_file, None);
    assert_eq!(s.headscale.poll_interval, Duration::from_secs(5));
    assert_eq!(s.headscale.timeout, Duration::from_secs(10));
    assert_eq!(s.headscale.user.as_deref(), Some("tarts"));
    assert_eq!(s.headscale.tags, ["tag:tart"]);
    assert_eq!(s.caddy.admin, ["localhost:2019"]);
    assert_eq!(s.caddy.timeout, Duration::from_secs(10));
    assert_eq!(s.caddy.write_timeout, Duration::from_secs(60));
    assert_eq!(s.routes.domain, "tart.example.org");
    assert_eq!(s.routes.mode, RouteMode::Path);
    assert_eq!(s.routes.upstream, UpstreamKind::Ip);
    assert_eq!(s.routes.upstream_port, 80);
    assert_eq!(s.routes.magicdns_suffix, None);
    assert_eq!(s.routes.offline_grace, Duration::from_secs(60));
    assert_eq!(s.routes.id_prefix, "tart-sync");
    assert_eq!(s.routes.stream_close_delay, Duration::from_secs(600));
    assert_eq!(
        s.status.listen,
        "127.0.0.1:9180".parse::<SocketAddr>().unwrap()
    );
    assert_eq!(s.routes.resolve, tart_sync::config::Resolve::Config);
    assert_eq!(s.dns.zone, "tart-sync.internal.");
    assert_eq!(
        s.dns.listen,
        "127.0.0.1:5380".parse::<SocketAddr>().unwrap()
    );
    assert_eq!(s.dns.refresh, Duration::from_secs(1));
    assert_eq!(s.dns.resolver_for(0), "udp/127.0.0.1:5380");
    assert_eq!(s.dns.rate_limit, 200);
}

#[test]
fn example_file_is_valid_with_its_api_key_file() {
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("headscale-api-key");
    std::fs::write(&key_file, format!("  {SECRET}\n\n")).unwrap();
    let text = EXAMPLE.replace("/run/secrets/headscale-api-key", key_file.to_str().unwrap());
    assert_ne!(text, EXAMPLE);
    let s = load(&text, &[]).unwrap();
    assert_eq!(s.headscale.api_key.expose(), SECRET, "content is trimmed");
    assert_eq!(
        s.headscale.api_key_file.as_deref(),
        Some(key_file.as_path())
    );
}

#[test]
fn load_reads_a_file_from_disk() {
    // The process environment is only read, never changed; skip if it
    // holds settings that would interfere.
    if std::env::vars().any(|(k, _)| k.starts_with("TART_SYNC_")) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tart-sync.toml");
    std::fs::write(&path, MINIMAL).unwrap();
    let s = Settings::load(Some(&path)).unwrap();
    assert_eq!(s.routes.domain, "tart.example.org");

    // Errors name the file and the line of the value.
    std::fs::write(&path, MINIMAL.replace("tart.example.org", "-bad-")).unwrap();
    let err = Settings::load(Some(&path)).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            r#"routes.domain: "-bad-" is not a valid DNS name (config file {} line 6)"#,
            path.display()
        )
    );

    let err = Settings::load(Some(Path::new("/nonexistent/tart-sync.toml"))).unwrap_err();
    assert!(matches!(err, ConfigError::ReadFile { .. }), "{err:?}");
    assert_eq!(err.setting(), "config file");
    assert!(
        err.to_string().contains("/nonexistent/tart-sync.toml"),
        "{err}"
    );
}

#[test]
fn defaults_of_a_minimal_file() {
    let s = load(MINIMAL, &[]).unwrap();
    assert_eq!(s.headscale.poll_interval, Duration::from_secs(5));
    assert_eq!(s.headscale.timeout, Duration::from_secs(10));
    assert_eq!(s.headscale.user, None);
    assert!(s.headscale.tags.is_empty());
    assert_eq!(s.caddy.admin, ["localhost:2019"]);
    assert_eq!(s.caddy.timeout, Duration::from_secs(10));
    assert_eq!(s.caddy.write_timeout, Duration::from_secs(60));
    assert_eq!(s.routes.mode, RouteMode::Path);
    assert_eq!(s.routes.upstream, UpstreamKind::Ip);
    assert_eq!(s.routes.upstream_port, 80);
    assert_eq!(s.routes.offline_grace, Duration::from_secs(60));
    assert_eq!(s.routes.id_prefix, "tart-sync");
    assert_eq!(s.routes.stream_close_delay, Duration::from_secs(600));
    assert_eq!(s.status.listen.to_string(), "127.0.0.1:9180");
}

#[test]
fn environment_alone_is_enough() {
    let env = env_of(&[
        ("TART_SYNC_HEADSCALE_URL", "http://10.0.0.5:8080"),
        ("TART_SYNC_HEADSCALE_API_KEY", SECRET),
        ("TART_SYNC_HEADSCALE_TAGS", "tag:tart, tag:telescope,,"),
        ("TART_SYNC_HEADSCALE_POLL_INTERVAL", "1m30s"),
        ("TART_SYNC_HEADSCALE_USER", "tarts"),
        (
            "TART_SYNC_CADDY_ADMIN",
            "localhost:2019, unix//run/caddy/admin.sock,https://caddy.internal:2019",
        ),
        ("TART_SYNC_ROUTES_DOMAIN", "Tart.Example.org."),
        ("TART_SYNC_ROUTES_MODE", "host"),
        ("TART_SYNC_ROUTES_UPSTREAM", "magicdns"),
        ("TART_SYNC_ROUTES_MAGICDNS_SUFFIX", ".tailnet.example.org"),
        ("TART_SYNC_ROUTES_UPSTREAM_PORT", "8080"),
        ("TART_SYNC_ROUTES_OFFLINE_GRACE", "0s"),
        ("TART_SYNC_ROUTES_ID_PREFIX", "tart-sync-2"),
        ("TART_SYNC_ROUTES_STREAM_CLOSE_DELAY", "5m"),
        ("TART_SYNC_STATUS_LISTEN", "[::1]:9999"),
    ]);
    let s = Settings::from_sources(None, &env, None).unwrap();
    assert_eq!(s.headscale.url.as_str(), "http://10.0.0.5:8080/");
    assert_eq!(s.headscale.tags, ["tag:tart", "tag:telescope"]);
    assert_eq!(s.headscale.poll_interval, Duration::from_secs(90));
    assert_eq!(s.headscale.user.as_deref(), Some("tarts"));
    assert_eq!(
        s.caddy.admin,
        [
            "localhost:2019",
            "unix//run/caddy/admin.sock",
            "https://caddy.internal:2019"
        ]
    );
    assert_eq!(s.routes.domain, "tart.example.org");
    assert_eq!(s.routes.mode, RouteMode::Host);
    assert_eq!(s.routes.upstream, UpstreamKind::MagicDns);
    assert_eq!(
        s.routes.magicdns_suffix.as_deref(),
        Some("tailnet.example.org")
    );
    assert_eq!(s.routes.upstream_port, 8080);
    assert_eq!(s.routes.offline_grace, Duration::ZERO);
    assert_eq!(s.routes.id_prefix, "tart-sync-2");
    assert_eq!(s.routes.stream_close_delay, Duration::from_secs(300));
    assert_eq!(s.status.listen.to_string(), "[::1]:9999");
}

#[test]
fn environment_overrides_the_file() {
    let s = load(
        MINIMAL,
        &[
            ("TART_SYNC_ROUTES_DOMAIN", "other.example.org"),
            ("TART_SYNC_HEADSCALE_URL", "https://hs2.example.org"),
            ("TART_SYNC_HEADSCALE_TIMEOUT", "2s"),
            // Empty = unset: the file's (default) value stays.
            ("TART_SYNC_ROUTES_MODE", ""),
        ],
    )
    .unwrap();
    assert_eq!(s.routes.domain, "other.example.org");
    assert_eq!(s.headscale.url.host_str(), Some("hs2.example.org"));
    assert_eq!(s.headscale.timeout, Duration::from_secs(2));
    assert_eq!(s.routes.mode, RouteMode::Path);
}

#[test]
fn env_api_key_file_replaces_the_files_inline_key() {
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("key");
    std::fs::write(&key_file, "from-file-key\n").unwrap();
    let s = load(
        MINIMAL,
        &[(
            "TART_SYNC_HEADSCALE_API_KEY_FILE",
            key_file.to_str().unwrap(),
        )],
    )
    .unwrap();
    assert_eq!(s.headscale.api_key.expose(), "from-file-key");
}

#[test]
fn relative_api_key_file_is_relative_to_the_config_file() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    std::fs::write(dir.join("key"), SECRET).unwrap();
    let text = r#"
[headscale]
url = "https://headscale.example.org"
api_key_file = "key"
[routes]
domain = "tart.example.org"
"#;
    let config_path = dir.join("tart-sync.toml");
    let s = Settings::from_sources(Some(text), &no_env(), Some(&config_path)).unwrap();
    assert_eq!(s.headscale.api_key.expose(), SECRET);
    assert_eq!(s.headscale.api_key_file, Some(dir.join("key")));
}

#[test]
fn secrets_never_appear_in_debug_output() {
    let s = load(MINIMAL, &[]).unwrap();
    let debug = format!("{s:?}");
    assert!(!debug.contains(SECRET), "{debug}");
    assert!(!debug.contains("t0ps3cr3t"), "{debug}");
    assert!(debug.contains("ApiKey(***)"), "{debug}");
    assert_eq!(s.headscale.api_key.to_string(), "***");
    assert_eq!(format!("{:?}", s.headscale.api_key), "ApiKey(***)");
    assert_eq!(s.headscale.api_key.expose(), SECRET);
}

#[test]
fn syntax_error_on_the_key_line_does_not_quote_the_key() {
    let text = MINIMAL.replace(
        &format!("api_key = \"{SECRET}\""),
        &format!("api_key = \"{SECRET}\" trailing"),
    );
    let err = err_of(&text, &[]);
    assert!(matches!(err, ConfigError::Syntax { .. }), "{err:?}");
    assert!(err.to_string().contains("line 4"), "{err}");
}

#[test]
fn unknown_keys_are_errors() {
    let text = MINIMAL.replace("domain =", "domian =");
    let err = err_of(&text, &[]);
    assert_eq!(err.setting(), "routes.domian");
    assert!(err.to_string().contains("unknown field"), "{err}");

    let err = err_of(&format!("{MINIMAL}\n[routse]\nmode = \"path\"\n"), &[]);
    assert_eq!(err.setting(), "routse");

    let err = err_of(
        &format!("{MINIMAL}\n[status]\nlisten = \"127.0.0.1:1\"\nport = 1\n"),
        &[],
    );
    assert_eq!(err.setting(), "status.port");
}

#[test]
fn required_settings() {
    let err = Settings::from_sources(None, &no_env(), None).unwrap_err();
    assert_eq!(err.setting(), "headscale.url");
    assert!(err.to_string().contains("TART_SYNC_HEADSCALE_URL"), "{err}");

    let err = err_of(&MINIMAL.replace("domain = \"tart.example.org\"", ""), &[]);
    assert_eq!(err.setting(), "routes.domain");
    assert!(err.to_string().contains("required"), "{err}");
}

#[test]
fn exactly_one_api_key_source() {
    let none = MINIMAL.replace(&format!("api_key = \"{SECRET}\""), "");
    let err = err_of(&none, &[]);
    assert_eq!(err.setting(), "headscale");
    assert_eq!(
        err.to_string(),
        "headscale: set exactly one of api_key_file or api_key \
         (env TART_SYNC_HEADSCALE_API_KEY_FILE / TART_SYNC_HEADSCALE_API_KEY) \
         (config file line 2)"
    );

    let both = MINIMAL.replace("[routes]", "api_key_file = \"/run/secrets/key\"\n[routes]");
    let err = err_of(&both, &[]);
    assert_eq!(err.setting(), "headscale");

    let err = err_of(
        &none,
        &[
            ("TART_SYNC_HEADSCALE_API_KEY", SECRET),
            ("TART_SYNC_HEADSCALE_API_KEY_FILE", "/run/secrets/key"),
        ],
    );
    assert_eq!(err.setting(), "headscale");
}

#[test]
fn unreadable_api_key_file() {
    let text = MINIMAL.replace(&format!("api_key = \"{SECRET}\""), "api_key_file = \"/x\"");
    let err = err_of(&text, &[]);
    assert_eq!(err.setting(), "headscale.api_key_file");
    assert_eq!(
        err.to_string(),
        "headscale.api_key_file: cannot read /x: No such file or directory (config file line 4)"
    );
}

#[test]
fn empty_or_odd_api_keys() {
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("key");
    std::fs::write(&key_file, "\n  \n").unwrap();
    let text = MINIMAL.replace(
        &format!("api_key = \"{SECRET}\""),
        &format!("api_key_file = {:?}", key_file.to_str().unwrap()),
    );
    let err = err_of(&text, &[]);
    assert_eq!(err.setting(), "headscale.api_key_file");
    assert!(err.to_string().contains("empty"), "{err}");

    std::fs::write(&key_file, format!("{SECRET} {SECRET}")).unwrap();
    let err = err_of(&text, &[]);
    assert!(err.to_string().contains("whitespace"), "{err}");

    let err = err_of(&MINIMAL.replace(SECRET, "/run/secrets/key"), &[]);
    assert_eq!(err.setting(), "headscale.api_key");
    assert!(err.to_string().contains("api_key_file"), "{err}");

    let err = err_of(&MINIMAL.replace(&format!("\"{SECRET}\""), "12345"), &[]);
    assert_eq!(err.setting(), "headscale.api_key");
    assert!(!err.to_string().contains("12345"), "{err}");
}

#[test]
fn invalid_domain() {
    let err = err_of(&MINIMAL.replace("tart.example.org", "-bad-"), &[]);
    assert_eq!(err.setting(), "routes.domain");
    assert_eq!(
        err.to_string(),
        r#"routes.domain: "-bad-" is not a valid DNS name (config file line 6)"#
    );

    let err = err_of(MINIMAL, &[("TART_SYNC_ROUTES_DOMAIN", "a..b")]);
    assert_eq!(err.setting(), "routes.domain");
    assert!(err.to_string().contains("TART_SYNC_ROUTES_DOMAIN"), "{err}");

    for bad in [
        "under_score.example.org",
        "10.0.0.1",
        "exa mple.org",
        "*.example.org",
    ] {
        let err = err_of(MINIMAL, &[("TART_SYNC_ROUTES_DOMAIN", bad)]);
        assert_eq!(err.setting(), "routes.domain", "{bad}");
    }
}

#[test]
fn invalid_url() {
    for (bad, needle) in [
        ("ftp://headscale.example.org", "http"),
        ("headscale.example.org", "not a valid URL"),
        ("https://headscale.example.org/?x=1", "query"),
    ] {
        let err = err_of(MINIMAL, &[("TART_SYNC_HEADSCALE_URL", bad)]);
        assert_eq!(err.setting(), "headscale.url", "{bad}");
        assert!(err.to_string().contains(needle), "{err}");
    }
    let err = err_of(
        MINIMAL,
        &[(
            "TART_SYNC_HEADSCALE_URL",
            "https://admin:hunter2@hs.example.org",
        )],
    );
    assert!(!err.to_string().contains("hunter2"), "{err}");
}

#[test]
fn durations() {
    let err = err_of(MINIMAL, &[("TART_SYNC_HEADSCALE_POLL_INTERVAL", "50ms")]);
    assert_eq!(err.setting(), "headscale.poll_interval");
    assert!(err.to_string().contains("100ms"), "{err}");

    let s = load(MINIMAL, &[("TART_SYNC_HEADSCALE_POLL_INTERVAL", "100ms")]).unwrap();
    assert_eq!(s.headscale.poll_interval, Duration::from_millis(100));

    let err = err_of(MINIMAL, &[("TART_SYNC_ROUTES_OFFLINE_GRACE", "soon")]);
    assert_eq!(err.setting(), "routes.offline_grace");
    assert!(err.to_string().contains("\"soon\""), "{err}");

    let err = err_of(
        &MINIMAL.replace("[routes]", "poll_interval = 5\n[routes]"),
        &[],
    );
    assert_eq!(err.setting(), "headscale.poll_interval");
    assert!(err.to_string().contains("\"5s\""), "{err}");

    let err = err_of(MINIMAL, &[("TART_SYNC_HEADSCALE_TIMEOUT", "0s")]);
    assert_eq!(err.setting(), "headscale.timeout");
}

#[test]
fn caddy_timeouts_from_file_and_environment_within_bounds() {
    let file = format!("{MINIMAL}[caddy]\ntimeout = \"3s\"\nwrite_timeout = \"2m\"\n");
    let s = load(&file, &[]).unwrap();
    assert_eq!(s.caddy.timeout, Duration::from_secs(3));
    assert_eq!(s.caddy.write_timeout, Duration::from_secs(120));

    // The environment overrides the file, key by key.
    let s = load(&file, &[("TART_SYNC_CADDY_WRITE_TIMEOUT", "500ms")]).unwrap();
    assert_eq!(s.caddy.timeout, Duration::from_secs(3));
    assert_eq!(s.caddy.write_timeout, Duration::from_millis(500));

    // The largest accepted value loads; zero, longer or garbage is refused,
    // naming the setting and where it was set.
    let s = load(MINIMAL, &[("TART_SYNC_CADDY_WRITE_TIMEOUT", "10m")]).unwrap();
    assert_eq!(s.caddy.write_timeout, Duration::from_secs(600));
    for (key, value, problem) in [
        ("TART_SYNC_CADDY_TIMEOUT", "0s", "longer than 0s"),
        ("TART_SYNC_CADDY_WRITE_TIMEOUT", "0ms", "longer than 0s"),
        ("TART_SYNC_CADDY_TIMEOUT", "11m", "too long"),
        ("TART_SYNC_CADDY_WRITE_TIMEOUT", "1h", "too long"),
        ("TART_SYNC_CADDY_WRITE_TIMEOUT", "later", "\"later\""),
    ] {
        let err = err_of(MINIMAL, &[(key, value)]);
        let setting = key
            .trim_start_matches("TART_SYNC_")
            .to_ascii_lowercase()
            .replacen('_', ".", 1);
        assert_eq!(err.setting(), setting, "{key}={value}: {err}");
        assert!(err.to_string().contains(problem), "{err}");
        assert!(err.to_string().contains(key), "{err}");
    }
    let err = err_of(&format!("{MINIMAL}[caddy]\ntimeout = \"0s\"\n"), &[]);
    assert_eq!(err.setting(), "caddy.timeout");
    assert!(err.to_string().contains("line 8"), "{err}");
}

#[test]
fn ports_modes_and_prefixes() {
    for bad in ["0", "65536", "-1", "eighty"] {
        let err = err_of(MINIMAL, &[("TART_SYNC_ROUTES_UPSTREAM_PORT", bad)]);
        assert_eq!(err.setting(), "routes.upstream_port", "{bad}");
    }
    let err = err_of(&format!("{MINIMAL}upstream_port = 70000\n"), &[]);
    assert_eq!(err.setting(), "routes.upstream_port");
    let s = load(&format!("{MINIMAL}upstream_port = 65535\n"), &[]).unwrap();
    assert_eq!(s.routes.upstream_port, 65535);

    let err = err_of(MINIMAL, &[("TART_SYNC_ROUTES_MODE", "subdomain")]);
    assert_eq!(err.setting(), "routes.mode");
    assert!(err.to_string().contains("\"path\" or \"host\""), "{err}");

    let err = err_of(MINIMAL, &[("TART_SYNC_ROUTES_UPSTREAM", "dns")]);
    assert_eq!(err.setting(), "routes.upstream");

    for bad in ["Tart", "tart_sync", "tart sync"] {
        let err = err_of(MINIMAL, &[("TART_SYNC_ROUTES_ID_PREFIX", bad)]);
        assert_eq!(err.setting(), "routes.id_prefix", "{bad}");
    }

    let err = err_of(MINIMAL, &[("TART_SYNC_STATUS_LISTEN", "localhost")]);
    assert_eq!(err.setting(), "status.listen");
}

#[test]
fn magicdns_needs_a_suffix() {
    let err = err_of(MINIMAL, &[("TART_SYNC_ROUTES_UPSTREAM", "magicdns")]);
    assert_eq!(err.setting(), "routes.magicdns_suffix");
    assert!(err.to_string().contains("required"), "{err}");

    let err = err_of(
        MINIMAL,
        &[
            ("TART_SYNC_ROUTES_UPSTREAM", "magicdns"),
            ("TART_SYNC_ROUTES_MAGICDNS_SUFFIX", "-nope-"),
        ],
    );
    assert_eq!(err.setting(), "routes.magicdns_suffix");

    let s = load(
        &format!("{MINIMAL}upstream = \"magicdns\"\nmagicdns_suffix = \"ts.example.org\"\n"),
        &[],
    )
    .unwrap();
    assert_eq!(s.routes.magicdns_suffix.as_deref(), Some("ts.example.org"));
}

#[test]
fn tags_and_admin_addresses() {
    let err = err_of(MINIMAL, &[("TART_SYNC_HEADSCALE_TAGS", "tart")]);
    assert_eq!(err.setting(), "headscale.tags");
    assert!(err.to_string().contains("tag:"), "{err}");

    let err = err_of(
        &MINIMAL.replace("[routes]", "tags = [\"tag:tart\", 3]\n[routes]"),
        &[],
    );
    assert_eq!(err.setting(), "headscale.tags");

    let err = err_of(&format!("{MINIMAL}[caddy]\nadmin = []\n"), &[]);
    assert_eq!(err.setting(), "caddy.admin");

    let err = err_of(MINIMAL, &[("TART_SYNC_CADDY_ADMIN", "localhost")]);
    assert_eq!(err.setting(), "caddy.admin");

    let s = load(&format!("{MINIMAL}[caddy]\nadmin = \":2019\"\n"), &[]).unwrap();
    assert_eq!(s.caddy.admin, ["localhost:2019"]);

    let s = load(MINIMAL, &[("TART_SYNC_HEADSCALE_USER", "  ")]).unwrap();
    assert_eq!(s.headscale.user, None);
}

#[test]
fn wrong_types_name_the_setting() {
    let err = err_of(&MINIMAL.replace("[routes]", "user = true\n[routes]"), &[]);
    assert_eq!(err.setting(), "headscale.user");
    assert!(err.to_string().contains("expected a string"), "{err}");

    let err = err_of("headscale = 5\n", &[]);
    assert_eq!(err.setting(), "headscale");
    assert!(err.to_string().contains("expected a table"), "{err}");

    // toml's own message would quote the value.
    let err = err_of(&format!("headscale = \"{SECRET}\"\n"), &[]);
    assert_eq!(err.setting(), "headscale");

    // Not the fields in order either.
    let err = err_of("headscale = [\"https://headscale.example.org\"]\n", &[]);
    assert_eq!(err.setting(), "headscale");
    assert!(err.to_string().contains("expected a table"), "{err}");
}

#[test]
fn errors_name_where_the_value_was_set() {
    // From the file: its line.
    for (text, setting, line) in [
        (
            format!("{MINIMAL}upstream_port = 70000\n"),
            "routes.upstream_port",
            7,
        ),
        (format!("{MINIMAL}mode = \"subdomain\"\n"), "routes.mode", 7),
        (
            format!("{MINIMAL}offline_grace = 5\n"),
            "routes.offline_grace",
            7,
        ),
        (MINIMAL.replace("domain =", "domian ="), "routes.domian", 6),
        (
            format!("{MINIMAL}[caddy]\nadmin = [\"localhost\"]\n"),
            "caddy.admin",
            8,
        ),
        (MINIMAL.replace("https://", "ftp://"), "headscale.url", 3),
    ] {
        let err = err_of(&text, &[]);
        assert_eq!(err.setting(), setting, "{err}");
        assert!(
            err.to_string()
                .ends_with(&format!("(config file line {line})")),
            "{err}"
        );
    }
    // From the environment: the variable.
    for (var, value) in [
        ("TART_SYNC_ROUTES_UPSTREAM_PORT", "eighty"),
        ("TART_SYNC_ROUTES_MODE", "subdomain"),
        ("TART_SYNC_HEADSCALE_TIMEOUT", "0s"),
        ("TART_SYNC_CADDY_ADMIN", "localhost"),
        ("TART_SYNC_STATUS_LISTEN", "localhost"),
    ] {
        let err = err_of(MINIMAL, &[(var, value)]);
        assert!(err.to_string().ends_with(&format!("(from {var})")), "{err}");
    }
}

#[test]
fn admin_addresses_use_caddy_clients_parser() {
    let s = load(
        &format!(
            "{MINIMAL}[caddy]\nadmin = [\"tcp/localhost:2019\", \"http://localhost:2019/\"]\n"
        ),
        &[],
    )
    .unwrap();
    assert_eq!(s.caddy.admin, ["localhost:2019", "http://localhost:2019"]);

    let err = err_of(
        MINIMAL,
        &[("TART_SYNC_CADDY_ADMIN", "localhost:2019, ftp://x:1")],
    );
    assert_eq!(err.setting(), "caddy.admin");
    let text = err.to_string();
    assert!(
        text.contains("\"ftp://x:1\"") && text.contains("unsupported scheme"),
        "{text}"
    );
}

#[test]
fn enormous_durations_are_refused_naming_the_setting() {
    for (key, value) in [
        ("TART_SYNC_ROUTES_OFFLINE_GRACE", "8000y"),
        ("TART_SYNC_HEADSCALE_POLL_INTERVAL", "400000000000y"),
        ("TART_SYNC_HEADSCALE_POLL_INTERVAL", "2days"),
        ("TART_SYNC_HEADSCALE_TIMEOUT", "1h"),
        ("TART_SYNC_ROUTES_STREAM_CLOSE_DELAY", "30days"),
    ] {
        let err = err_of(MINIMAL, &[(key, value)]);
        let setting = key
            .trim_start_matches("TART_SYNC_")
            .to_ascii_lowercase()
            .replacen('_', ".", 1);
        assert_eq!(err.setting(), setting, "{key}={value}: {err}");
        assert!(err.to_string().contains(key), "{err}");
    }
    // The largest accepted values still load.
    let s = load(
        MINIMAL,
        &[
            ("TART_SYNC_ROUTES_OFFLINE_GRACE", "365days"),
            ("TART_SYNC_HEADSCALE_POLL_INTERVAL", "1day"),
        ],
    )
    .unwrap();
    assert_eq!(s.routes.offline_grace, Duration::from_secs(365 * 86_400));
}

#[test]
fn reserved_names_are_dns_labels_in_lower_case() {
    let s = load(
        MINIMAL,
        &[("TART_SYNC_ROUTES_RESERVED", "api, Docs,api,status")],
    )
    .unwrap();
    assert_eq!(s.routes.reserved, ["api", "docs", "status"]);
    assert!(load(MINIMAL, &[]).unwrap().routes.reserved.is_empty());
    let err = err_of(MINIMAL, &[("TART_SYNC_ROUTES_RESERVED", "ok,not/a/name")]);
    assert_eq!(err.setting(), "routes.reserved", "{err}");
}

#[cfg(unix)]
#[test]
fn secret_files_readable_by_others_are_reported() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("key");
    std::fs::write(&key, SECRET).unwrap();
    let mode = |path: &Path, m: u32| {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(m)).unwrap()
    };
    let with_file = |path: &Path| {
        let var = path.to_str().unwrap().to_owned();
        load(MINIMAL, &[("TART_SYNC_HEADSCALE_API_KEY_FILE", &var)]).unwrap()
    };
    mode(&key, 0o644);
    let problems = with_file(&key).exposed_secrets();
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(
        problems[0].contains("headscale.api_key_file"),
        "{problems:?}"
    );
    assert!(problems[0].contains("mode 0644"), "{problems:?}");
    assert!(problems[0].contains("chmod 600"), "{problems:?}");
    assert!(!problems[0].contains(SECRET));
    mode(&key, 0o600);
    assert!(with_file(&key).exposed_secrets().is_empty());

    // An inline key makes the config file itself secret.
    let config = dir.path().join("tart-sync.toml");
    std::fs::write(&config, MINIMAL).unwrap();
    mode(&config, 0o640);
    let s = Settings::from_sources(Some(MINIMAL), &no_env(), Some(&config)).unwrap();
    let problems = s.exposed_secrets();
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(problems[0].contains("headscale.api_key"), "{problems:?}");
    mode(&config, 0o600);
    let s = Settings::from_sources(Some(MINIMAL), &no_env(), Some(&config)).unwrap();
    assert!(s.exposed_secrets().is_empty());
    // A key from the environment is no file's business.
    assert!(load(MINIMAL, &[("TART_SYNC_HEADSCALE_API_KEY", SECRET)])
        .unwrap()
        .exposed_secrets()
        .is_empty());
}

/// A self-signed client certificate and its key, both PEM.
fn client_cert(name: &str) -> (String, String) {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec![name.to_owned()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    (cert.pem(), key.serialize_pem())
}

/// `ca.pem`, `cert.pem` and `key.pem` (mode 0600) in a new directory.
fn tls_files() -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let (ca, _) = client_cert("ca.test");
    let (cert, key) = client_cert("tart-sync");
    std::fs::write(dir.path().join("ca.pem"), ca).unwrap();
    std::fs::write(dir.path().join("cert.pem"), cert).unwrap();
    std::fs::write(dir.path().join("key.pem"), &key).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let private = std::fs::Permissions::from_mode(0o600);
        std::fs::set_permissions(dir.path().join("key.pem"), private).unwrap();
    }
    (dir, key)
}

/// `[caddy]` with an https admin address and these TLS lines.
fn with_caddy_tls(lines: &str) -> String {
    format!("{MINIMAL}[caddy]\nadmin = \"https://caddy.internal:2021\"\n{lines}")
}

#[test]
fn caddy_tls_files_are_read_relative_to_the_config_file() {
    let (dir, key) = tls_files();
    let text = with_caddy_tls(
        "tls_ca_file = \"ca.pem\"\ntls_cert_file = \"cert.pem\"\ntls_key_file = \"key.pem\"\n",
    );
    let config = dir.path().join("tart-sync.toml");
    let s = Settings::from_sources(Some(&text), &no_env(), Some(&config)).unwrap();
    let ca = s.caddy.tls_ca.as_ref().unwrap();
    assert_eq!(ca.path, dir.path().join("ca.pem"));
    let id = s.caddy.tls_identity.as_ref().unwrap();
    assert_eq!(id.cert_file, dir.path().join("cert.pem"));
    assert_eq!(id.key_file, dir.path().join("key.pem"));
    let client = s.caddy.client("https://caddy.internal:2021").unwrap();
    assert_eq!(client.address().to_string(), "https://caddy.internal:2021");
    // The key never shows, whichever way the settings are printed.
    let body = key.lines().nth(1).unwrap();
    for shown in [
        format!("{s:?}"),
        format!("{:?}", s.caddy),
        format!("{id:?}"),
    ] {
        assert!(!shown.contains(body), "{shown}");
        assert!(!shown.contains("PRIVATE KEY"), "{shown}");
    }
    assert!(s.exposed_secrets().is_empty(), "{:?}", s.exposed_secrets());
}

#[test]
fn caddy_tls_files_from_the_environment() {
    let (dir, _) = tls_files();
    let path = |f: &str| dir.path().join(f).to_str().unwrap().to_owned();
    let (ca, cert, key) = (path("ca.pem"), path("cert.pem"), path("key.pem"));
    let s = load(
        MINIMAL,
        &[
            ("TART_SYNC_CADDY_ADMIN", "https://127.0.0.1:2021"),
            ("TART_SYNC_CADDY_TLS_CA_FILE", &ca),
            ("TART_SYNC_CADDY_TLS_CERT_FILE", &cert),
            ("TART_SYNC_CADDY_TLS_KEY_FILE", &key),
        ],
    )
    .unwrap();
    assert_eq!(s.caddy.tls_ca.unwrap().path, Path::new(&ca));
    assert_eq!(s.caddy.tls_identity.unwrap().key_file, Path::new(&key));
    // Without TLS settings there is neither.
    let s = load(MINIMAL, &[]).unwrap();
    assert!(s.caddy.tls_ca.is_none() && s.caddy.tls_identity.is_none());
}

#[test]
fn caddy_tls_problems_name_the_setting_and_the_file() {
    let (dir, key) = tls_files();
    let p = |f: &str| dir.path().join(f).display().to_string();
    std::fs::write(dir.path().join("junk.pem"), "not pem at all\n").unwrap();
    let (_, other_key) = client_cert("someone-else");
    std::fs::write(dir.path().join("other-key.pem"), other_key).unwrap();
    let key_body = key.lines().nth(1).unwrap().to_owned();
    let cases = [
        // (TLS lines, setting, words of the message)
        (
            format!("tls_ca_file = {:?}\n", p("missing.pem")),
            "caddy.tls_ca_file",
            vec!["cannot read", "missing.pem"],
        ),
        (
            format!("tls_ca_file = {:?}\n", p("junk.pem")),
            "caddy.tls_ca_file",
            vec!["junk.pem", "no PEM certificate"],
        ),
        (
            format!("tls_ca_file = {:?}\n", p("key.pem")),
            "caddy.tls_ca_file",
            vec!["key.pem", "no PEM certificate"],
        ),
        (
            format!("tls_cert_file = {:?}\n", p("cert.pem")),
            "caddy.tls_key_file",
            vec!["required when caddy.tls_cert_file is set"],
        ),
        (
            format!("tls_key_file = {:?}\n", p("key.pem")),
            "caddy.tls_cert_file",
            vec!["required when caddy.tls_key_file is set"],
        ),
        (
            format!(
                "tls_cert_file = {:?}\ntls_key_file = {:?}\n",
                p("key.pem"),
                p("key.pem")
            ),
            "caddy.tls_cert_file",
            vec!["key.pem", "no PEM certificate"],
        ),
        (
            format!(
                "tls_cert_file = {:?}\ntls_key_file = {:?}\n",
                p("cert.pem"),
                p("cert.pem")
            ),
            "caddy.tls_key_file",
            vec!["cert.pem", "no PEM private key"],
        ),
        (
            format!(
                "tls_cert_file = {:?}\ntls_key_file = {:?}\n",
                p("cert.pem"),
                p("other-key.pem")
            ),
            "caddy.tls_key_file",
            vec![
                "other-key.pem",
                "is not the private key of the certificate in",
            ],
        ),
    ];
    for (lines, setting, words) in cases {
        let err = err_of(&with_caddy_tls(&lines), &[]);
        let msg = err.to_string();
        assert_eq!(err.setting(), setting, "{lines}: {msg}");
        for word in words {
            assert!(msg.contains(word), "{lines}: {word:?} not in {msg}");
        }
        if !msg.contains("required") {
            assert!(msg.contains("line "), "where it was set: {msg}");
        }
        assert!(!msg.contains(&key_body), "the key leaked: {msg}");
        assert!(!format!("{err:?}").contains(&key_body), "the key leaked");
    }
}

#[test]
fn caddy_tls_needs_an_https_admin_address() {
    let (dir, _) = tls_files();
    let ca = dir.path().join("ca.pem").display().to_string();
    for admin in [
        "localhost:2019",
        "http://10.0.0.2:2021",
        "unix//run/caddy.sock",
    ] {
        let text = format!("{MINIMAL}[caddy]\nadmin = {admin:?}\ntls_ca_file = {ca:?}\n");
        let err = err_of(&text, &[]);
        assert_eq!(err.setting(), "caddy.tls_ca_file", "{err}");
        assert!(err.to_string().contains("https://host:port"), "{err}");
    }
    // One https address among others is enough: TLS applies to it.
    let text = format!(
        "{MINIMAL}[caddy]\nadmin = [\"localhost:2019\", \"https://10.0.0.2:2021\"]\ntls_ca_file = {ca:?}\n"
    );
    assert!(load(&text, &[]).is_ok());
}

#[cfg(unix)]
#[test]
fn a_tls_key_file_readable_by_others_is_reported() {
    use std::os::unix::fs::PermissionsExt;
    let (dir, key) = tls_files();
    let key_file = dir.path().join("key.pem");
    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o640)).unwrap();
    let text = with_caddy_tls(&format!(
        "tls_cert_file = {:?}\ntls_key_file = {:?}\n",
        dir.path().join("cert.pem").display().to_string(),
        key_file.display().to_string()
    ));
    let problems = load(&text, &[]).unwrap().exposed_secrets();
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(problems[0].contains("caddy.tls_key_file"), "{problems:?}");
    assert!(problems[0].contains("mode 0640"), "{problems:?}");
    assert!(!problems[0].contains(key.lines().nth(1).unwrap()));
}
