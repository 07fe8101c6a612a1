//! The public fleet page's part of the owned route (`[public] enabled`).
//!
//! The page is a body tart-sync serves on its own listener
//! (`public.listen`, see [`crate::public`]); Caddy reaches it through the
//! owned route, which gains
//!
//! - one more matcher set: the site's host with the page's two paths
//!   (`<path>` and `<path>api/tarts.json`), which the TARTs' matcher does
//!   not match (`/` has no name);
//! - a first subroute: those paths, on the site's own host, go to
//!   `reverse_proxy` → `public.dial`.
//!
//! Both are constant: a TART going on- or offline changes the page's body,
//! never Caddy's config, so the page adds no Caddy write of its own. The
//! page's first path segment (`api` for `/`) is reserved for it
//! ([`crate::reserved`]).

use serde_json::{json, Value};

use crate::config::{PublicRoute, RouteSettings};

/// The page's paths: `<path>` and `<path>api/tarts.json`.
fn paths(public: &PublicRoute) -> Value {
    json!([public.path, public.json_path()])
}

/// The owned route's extra matcher set: the page's paths on the site's host.
pub(super) fn matcher(public: &PublicRoute, routes: &RouteSettings) -> Value {
    json!({"host": [routes.domain], "path": paths(public)})
}

/// The first subroute: the page's paths go to tart-sync's page listener.
pub(super) fn subroute(public: &PublicRoute, routes: &RouteSettings) -> Value {
    json!({
        "match": [{"host": [routes.domain], "path": paths(public)}],
        "handle": [{
            "handler": "reverse_proxy",
            "upstreams": [{"dial": public.dial}],
        }],
        "terminal": true,
    })
}

#[cfg(test)]
mod tests {
    use super::super::{revision, subtree, Features};
    use crate::config::PublicRoute;
    use crate::desired::{Target, Targets};
    use crate::reserved::Reserved;

    #[test]
    fn the_page_adds_a_constant_subroute_and_reserves_its_segment() {
        let mut routes = crate::status::fixtures::settings("127.0.0.1:1", "path").routes;
        let targets: Targets = [("rhodes".to_string(), Target::Offline)].into();
        let without = subtree(&targets, &routes, Features::default());
        let rev_without = revision(&targets, &routes, Features::default());
        routes.public = Some(PublicRoute {
            path: "/".into(),
            dial: "127.0.0.1:9181".into(),
        });
        let with = subtree(&targets, &routes, Features::default());
        assert_eq!(without["match"].as_array().unwrap().len(), 1);
        assert_eq!(
            with["match"][1],
            serde_json::json!({"host": ["tart.example.org"], "path": ["/", "/api/tarts.json"]})
        );
        let sub = with["handle"].as_array().unwrap().last().unwrap();
        assert_eq!(
            sub["routes"][0]["handle"][0]["upstreams"][0]["dial"],
            "127.0.0.1:9181"
        );
        assert_ne!(
            revision(&targets, &routes, Features::default()),
            rev_without
        );
        // The subroute does not depend on the fleet: no write per state change.
        let other: Targets = [("karoo".to_string(), Target::Dial("x:80".into()))].into();
        let with_other = subtree(&other, &routes, Features::default());
        let last = |v: &serde_json::Value| {
            v["handle"].as_array().unwrap().last().unwrap()["routes"][0].clone()
        };
        assert_eq!(last(&with), last(&with_other));
        assert!(Reserved::new(&routes, &[]).why("api").is_some());
        assert!(Reserved::new(&routes, &[]).why("rhodes").is_none());
    }
}
