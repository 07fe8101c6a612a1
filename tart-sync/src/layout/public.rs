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
