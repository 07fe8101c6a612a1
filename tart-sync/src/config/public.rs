//! `[public]`: the public fleet page (opt-in).
//!
//! ```toml
//! [public]
//! enabled = true              # default false
//! path = "/"                  # where the site shows it; the JSON is <path>api/tarts.json
//! listen = "127.0.0.1:9181"   # tart-sync's own listener for the page (not the status server)
//! dial = "127.0.0.1:9181"     # how Caddy reaches that listener (default: listen)
//! title = "TART radio telescopes"
//! ```

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};

use serde::Deserialize;

use super::source::Sources;
use super::ConfigError;

/// Default of `public.listen`.
pub const DEFAULT_PUBLIC_LISTEN: SocketAddr =
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 9181));
/// Default of `public.title`.
pub const DEFAULT_PUBLIC_TITLE: &str = "TART radio telescopes";
/// Longest accepted `public.title`.
const MAX_TITLE_LEN: usize = 100;

/// `[public]` as written.
#[derive(Default, Deserialize)]
#[serde(default, deny_unknown_fields, expecting = "a table")]
pub(super) struct PublicInput {
    enabled: Option<BoolText>,
    path: Option<String>,
    listen: Option<String>,
    dial: Option<String>,
    title: Option<String>,
}

/// A boolean from the file, or `true`/`false` text from the environment.
#[derive(Deserialize)]
#[serde(untagged)]
enum BoolText {
    Bool(bool),
    Text(String),
}

/// `[public]` settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicSettings {
    /// `public.enabled`: serve the page and route the site's `path` to it.
    pub enabled: bool,
    /// `public.path`: where the page is on the site (starts and ends with `/`).
    pub path: String,
    /// `public.listen`: the address tart-sync serves the page on.
    pub listen: SocketAddr,
    /// `public.dial`: the address Caddy's `reverse_proxy` dials (default: `listen`).
    pub dial: String,
    /// `public.title`: the page's heading.
    pub title: String,
}

impl PublicSettings {
    /// The route to the page when it is enabled.
    pub fn route(&self) -> Option<PublicRoute> {
        self.enabled.then(|| PublicRoute {
            path: self.path.clone(),
            dial: self.dial.clone(),
        })
    }
}

/// What the owned route needs to send the page's paths to tart-sync.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PublicRoute {
    /// `public.path` (starts and ends with `/`).
    pub path: String,
    /// `public.dial`.
    pub dial: String,
}

impl PublicRoute {
    /// The JSON document's path: `<path>api/tarts.json`.
    pub fn json_path(&self) -> String {
        format!("{}api/tarts.json", self.path)
    }

    /// The first path segment the page takes from the TARTs' names:
    /// `api` for `/`, `fleet` for `/fleet/`.
    pub fn reserved_name(&self) -> String {
        let first = self.path.trim_start_matches('/').split('/').next();
        match first {
            Some(s) if !s.is_empty() => s.to_owned(),
            _ => "api".to_owned(),
        }
    }
}

/// Checks `[public]` and fills in the defaults.
pub(super) fn public(p: PublicInput, src: &Sources<'_>) -> Result<PublicSettings, ConfigError> {
    let enabled = match p.enabled {
        None => false,
        Some(BoolText::Bool(b)) => b,
        Some(BoolText::Text(t)) => match t.to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => true,
            "false" | "0" | "no" | "off" => false,
            _ => return Err(src.invalid("public.enabled", format!("{t:?} is not true or false"))),
        },
    };
    let path = p.path.unwrap_or_else(|| "/".to_owned());
    let segments_ok = path
        .trim_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .all(crate::headscale::is_valid_dns_label);
    if !path.starts_with('/') || !path.ends_with('/') || path.contains("//") || !segments_ok {
        return Err(src.invalid(
            "public.path",
            format!(
                "{path:?} must start and end with '/' and hold lower-case segments of a-z, 0-9 \
                 and '-' (like \"/\" or \"/fleet/\")"
            ),
        ));
    }
    let listen = match p.listen {
        None => DEFAULT_PUBLIC_LISTEN,
        Some(text) => text.parse().map_err(|_| {
            src.invalid(
                "public.listen",
                format!("{text:?} is not a socket address (like 127.0.0.1:9181)"),
            )
        })?,
    };
    let dial = match p.dial {
        Some(d) => {
            let ok = d
                .rsplit_once(':')
                .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
            if !ok || d.contains('/') || d.contains(char::is_whitespace) {
                return Err(src.invalid(
                    "public.dial",
                    format!("{d:?} is not host:port (like 127.0.0.1:9181)"),
                ));
            }
            d
        }
        None if listen.ip().is_unspecified() && enabled => {
            return Err(src.invalid(
                "public.dial",
                format!(
                    "required when public.listen is {listen} (the address Caddy dials to reach \
                     the page, like 127.0.0.1:{})",
                    listen.port()
                ),
            ))
        }
        None => listen.to_string(),
    };
    let title = p
        .title
        .unwrap_or_else(|| DEFAULT_PUBLIC_TITLE.to_owned())
        .trim()
        .to_owned();
    if title.is_empty() || title.chars().count() > MAX_TITLE_LEN || title.contains(char::is_control)
    {
        return Err(src.invalid(
            "public.title",
            format!("must be 1 to {MAX_TITLE_LEN} characters on one line"),
        ));
    }
    Ok(PublicSettings {
        enabled,
        path,
        listen,
        dial,
        title,
    })
}

/// The page needs its own listener, and path mode: in host mode the site `<domain>` is a route
/// of its own, which Caddy puts before the wildcard site the owned route
/// goes with, so the page's paths would never reach the owned route.
pub(super) fn check_mode(
    public: &PublicSettings,
    routes: &super::RouteSettings,
    status: &super::StatusSettings,
    src: &Sources<'_>,
) -> Result<(), ConfigError> {
    if public.enabled && public.listen == status.listen {
        return Err(src.invalid(
            "public.listen",
            format!(
                "{} is also status.listen: the public page needs its own listener (the status \
                 server stays private)",
                public.listen
            ),
        ));
    }
    if public.enabled && routes.mode != super::RouteMode::Path {
        return Err(src.invalid(
            "public.enabled",
            format!(
                "the public page needs routes.mode = \"path\" (with mode {:?}, the site {}'s \
                 own route comes before tart-sync's in Caddy); link a page of the site to \
                 the page's listener instead, or leave public.enabled false",
                routes.mode.as_str(),
                routes.domain
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(extra: &str, env: &[(&str, &str)]) -> Result<crate::config::Settings, ConfigError> {
        let toml = format!(
            "[headscale]\nurl = \"http://127.0.0.1:1\"\napi_key = \"k\"\n\
             [routes]\ndomain = \"tart.example.org\"\n{extra}"
        );
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let lookup = move |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        crate::config::Settings::from_sources(Some(&toml), &lookup, None)
    }

    #[test]
    fn settings() {
        let s = load("", &[]).unwrap();
        assert!(!s.public.enabled);
        assert_eq!(s.routes.public, None);
        let s = load("", &[("TART_SYNC_PUBLIC_ENABLED", "true")]).unwrap();
        assert_eq!(
            s.routes.public,
            Some(PublicRoute {
                path: "/".into(),
                dial: "127.0.0.1:9181".into()
            })
        );
        let s = load("[public]\nenabled = true\npath = \"/fleet/\"\n", &[]).unwrap();
        assert_eq!(s.public.path, "/fleet/");
        for (extra, setting) in [
            ("[public]\nenabled = \"maybe\"\n", "public.enabled"),
            ("[public]\npath = \"fleet\"\n", "public.path"),
            ("[public]\npath = \"/Fleet/\"\n", "public.path"),
            (
                "[public]\nenabled = true\nlisten = \"0.0.0.0:9181\"\n",
                "public.dial",
            ),
            ("[public]\ndial = \"http://x\"\n", "public.dial"),
            ("[public]\ntitle = \"\"\n", "public.title"),
            (
                "mode = \"host\"\n[public]\nenabled = true\n",
                "public.enabled",
            ),
            (
                "[public]\nenabled = true\nlisten = \"127.0.0.1:9180\"\n",
                "public.listen",
            ),
        ] {
            let err = load(extra, &[]).unwrap_err();
            assert_eq!(err.setting(), setting, "{extra}: {err}");
        }
    }

    #[test]
    fn reserved_names() {
        let r = |p: &str| PublicRoute {
            path: p.into(),
            dial: "x:1".into(),
        };
        assert_eq!(r("/").reserved_name(), "api");
        assert_eq!(r("/fleet/").reserved_name(), "fleet");
        assert_eq!(r("/").json_path(), "/api/tarts.json");
        assert_eq!(r("/fleet/").json_path(), "/fleet/api/tarts.json");
    }
}
