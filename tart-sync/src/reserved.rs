//! Names that are never published.
//!
//! The owned route sits in front of the site, so a TART named like a path
//! the site serves itself (`/api/`, `/docs/`) would take that path away
//! from the site. Device owners choose their names, so tart-sync reads the
//! first path segments the site's own routes match (path mode), or the host
//! names they match (host mode), and never publishes those names; the
//! operator adds more with `routes.reserved`. A node with such a name is
//! skipped with the reason, which `plan` and the status page show.

use serde_json::Value;

use crate::config::{RouteMode, RouteSettings};

/// Which names a rule covers.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Rule {
    /// Exactly this name (`/api/*`, `/api`, `api.<domain>`).
    Exact(String),
    /// Every name that starts with this (`/api*` matches `/apix` too).
    Prefix(String),
}

impl Rule {
    fn covers(&self, name: &str) -> bool {
        match self {
            Rule::Exact(n) => n == name,
            Rule::Prefix(p) => name.starts_with(p.as_str()),
        }
    }
}

impl std::fmt::Display for Rule {
    /// `api`, or `api*` for a prefix.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Rule::Exact(n) => f.write_str(n),
            Rule::Prefix(p) => write!(f, "{p}*"),
        }
    }
}

/// Why names are reserved.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Why {
    /// Listed in `routes.reserved`.
    Setting,
    /// The site's own route matches this path or host pattern.
    Site(String),
}

impl std::fmt::Display for Why {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Why::Setting => f.write_str("routes.reserved"),
            Why::Site(pattern) => write!(f, "the site serves {pattern}"),
        }
    }
}

/// The reserved names: rules with their reasons.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reserved {
    rules: Vec<(Rule, Why)>,
}

impl Reserved {
    /// `routes.reserved` and what the site's routes match (`site`, from
    /// [`site_rules`] of every Caddy).
    pub fn new(routes: &RouteSettings, site: &[(Rule, Why)]) -> Reserved {
        let mut rules: Vec<(Rule, Why)> = routes
            .reserved
            .iter()
            .map(|n| (Rule::Exact(n.clone()), Why::Setting))
            .chain(site.iter().cloned())
            .chain(public_rule(routes))
            .collect();
        rules.sort();
        rules.dedup();
        Reserved { rules }
    }

    /// Why `name` must not be published, in words; `None` when it may be.
    pub fn why(&self, name: &str) -> Option<String> {
        let (_, why) = self.rules.iter().find(|(rule, _)| rule.covers(name))?;
        Some(match why {
            Why::Setting => "reserved by routes.reserved".to_string(),
            Why::Site(pattern) => {
                format!("reserved: the site serves {pattern} itself, which this name would shadow")
            }
        })
    }

    /// Every rule with its reason.
    pub fn rules(&self) -> &[(Rule, Why)] {
        &self.rules
    }
}

/// In path mode, the public fleet page's first path segment (`api` for the
/// page at `/`, whose JSON is `/api/tarts.json`), which the owned route
/// sends to the page.
fn public_rule(routes: &RouteSettings) -> Option<(Rule, Why)> {
    let public = routes.public.as_ref()?;
    (routes.mode == RouteMode::Path).then(|| {
        (
            Rule::Exact(public.reserved_name()),
            Why::Site(format!("{} (the public fleet page)", public.json_path())),
        )
    })
}

/// The rules a site's route implies: in path mode the first segment of
/// every `path` matcher inside it, in host mode the first label of every
/// `host` matcher under `*.<domain>` inside it (its subroutes included).
pub fn site_rules(site_route: &Value, routes: &RouteSettings) -> Vec<(Rule, Why)> {
    let mut out = Vec::new();
    // The site route's own matcher is the site itself: only look inside it.
    if let Some(handlers) = site_route.get("handle").and_then(Value::as_array) {
        for h in handlers {
            walk_handler(h, routes, &mut out);
        }
    }
    out.sort();
    out.dedup();
    out
}

fn walk_handler(handler: &Value, routes: &RouteSettings, out: &mut Vec<(Rule, Why)>) {
    let Some(inner) = handler.get("routes").and_then(Value::as_array) else {
        return;
    };
    for route in inner {
        for set in route
            .get("match")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            match routes.mode {
                RouteMode::Path => {
                    let paths = set.get("path").and_then(Value::as_array);
                    for p in paths.into_iter().flatten().filter_map(Value::as_str) {
                        out.extend(path_rule(p).map(|r| (r, Why::Site(p.to_string()))));
                    }
                }
                RouteMode::Host => {
                    let hosts = set.get("host").and_then(Value::as_array);
                    for h in hosts.into_iter().flatten().filter_map(Value::as_str) {
                        out.extend(
                            host_rule(h, &routes.domain).map(|r| (r, Why::Site(h.to_string()))),
                        );
                    }
                }
            }
        }
        for h in route
            .get("handle")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            walk_handler(h, routes, out);
        }
    }
}

/// The first segment of a path pattern: `/api/*` and `/api` → exactly
/// `api`; `/ap*` → every name starting with `ap`; `/*`, `*` → nothing
/// (the site's catch-all does not compete with names).
fn path_rule(pattern: &str) -> Option<Rule> {
    let rest = pattern.strip_prefix('/')?.to_ascii_lowercase();
    let end = rest.find(['/', '*']).unwrap_or(rest.len());
    let segment = &rest[..end];
    if segment.is_empty() {
        return None;
    }
    if rest[end..].starts_with('*') {
        Some(Rule::Prefix(segment.to_string()))
    } else {
        Some(Rule::Exact(segment.to_string()))
    }
}

/// `www.<domain>` → exactly `www`.
fn host_rule(host: &str, domain: &str) -> Option<Rule> {
    let host = host.to_ascii_lowercase();
    let label = host.strip_suffix(domain)?.strip_suffix('.')?;
    (!label.is_empty() && !label.contains(['.', '*'])).then(|| Rule::Exact(label.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Settings;
    use serde_json::json;

    fn routes(extra: &str) -> RouteSettings {
        let toml = format!(
            "[headscale]\nurl = \"http://127.0.0.1:1\"\napi_key = \"hskey-api-test\"\n\
             [routes]\ndomain = \"tart.example.org\"\n{extra}"
        );
        Settings::from_sources(Some(&toml), &|_: &str| None, None)
            .unwrap()
            .routes
    }

    /// What `caddy adapt` makes of a site with `handle /api/*`,
    /// `handle_path /docs/*`, `redir /old* /new` and a fallback `respond`.
    fn site() -> Value {
        json!({
            "match": [{"host": ["tart.example.org"]}],
            "handle": [{"handler": "subroute", "routes": [
                {"group": "group2", "match": [{"path": ["/api/*"]}],
                 "handle": [{"handler": "subroute", "routes": [{"handle": [{"handler": "static_response"}]}]}]},
                {"group": "group2", "match": [{"path": ["/docs/*"]}],
                 "handle": [{"handler": "subroute", "routes": [
                    {"handle": [{"handler": "rewrite", "strip_path_prefix": "/docs"}]},
                    {"match": [{"path": ["/Status"]}], "handle": [{"handler": "static_response"}]}
                 ]}]},
                {"match": [{"path": ["/old*"]}], "handle": [{"handler": "static_response"}]},
                {"match": [{"path": ["/*", "*"]}], "handle": [{"handler": "static_response"}]},
                {"handle": [{"handler": "static_response", "status_code": 404}]}
            ]}],
            "terminal": true
        })
    }

    #[test]
    fn the_sites_own_paths_are_reserved_with_the_pattern_as_reason() {
        let routes = routes("reserved = [\"admin\"]\n");
        let reserved = Reserved::new(&routes, &site_rules(&site(), &routes));
        for name in ["api", "docs", "status", "old", "older", "admin"] {
            assert!(reserved.why(name).is_some(), "{name} is not reserved");
        }
        for name in ["rhodes", "ap", "apis", "doc"] {
            assert_eq!(reserved.why(name), None, "{name}");
        }
        assert!(reserved.why("api").unwrap().contains("/api/*"));
        assert!(reserved.why("older").unwrap().contains("/old*"));
        assert_eq!(
            reserved.why("admin").unwrap(),
            "reserved by routes.reserved"
        );
    }

    #[test]
    fn host_mode_reserves_the_hosts_the_wildcard_site_serves_itself() {
        let routes = routes("mode = \"host\"\n");
        let site = json!({
            "match": [{"host": ["*.tart.example.org"]}],
            "handle": [{"handler": "subroute", "routes": [
                {"match": [{"host": ["www.tart.example.org", "other.example"]}], "handle": []},
                {"match": [{"path": ["/api/*"]}], "handle": []}
            ]}]
        });
        let reserved = Reserved::new(&routes, &site_rules(&site, &routes));
        assert!(reserved.why("www").is_some());
        assert_eq!(
            reserved.why("api"),
            None,
            "paths do not matter in host mode"
        );
        assert_eq!(reserved.why("other"), None);
    }
}
