//! Where routes sit in Caddy's `apps/http/servers`: the site's route that
//! tart-sync's route must precede, and tart-sync's own route. Read from the
//! servers' JSON only; [`crate::reconcile`] writes.

use serde_json::Value;

/// True for a route written by tart-sync (any `id_prefix`): its `@id` is `P`
/// and one of its handlers has the `@id` `P-rev`.
pub fn is_owned_route(route: &Value) -> bool {
    let Some(id) = route.get("@id").and_then(Value::as_str) else {
        return false;
    };
    let rev = format!("{id}-rev");
    route
        .get("handle")
        .and_then(Value::as_array)
        .is_some_and(|hs| {
            hs.iter()
                .any(|h| h.get("@id").and_then(Value::as_str) == Some(rev.as_str()))
        })
}

/// Finds where to insert the owned route for the site `host` in `servers`
/// (the value of `apps/http/servers`): the config path of the site's route in
/// its server's `routes`, so that a `PUT` there inserts the owned route just
/// before it. The owned route matches the site's host itself, so placed there
/// it sees exactly the site's requests, and a top-level route is compiled once
/// by Caddy instead of on every request as routes inside a site's subroute
/// are. Servers are tried in name order.
pub fn find_site(servers: &Value, host: &str) -> Option<String> {
    site_route(servers, host).map(|(path, _)| path)
}

/// [`find_site`], with the site's route itself.
pub fn site_route<'a>(servers: &'a Value, host: &str) -> Option<(String, &'a Value)> {
    site_entry(servers, host)
        .map(|(name, i, route)| (format!("apps/http/servers/{name}/routes/{i}"), route))
}

/// Where the site's route is: its server and index ([`site_route`]).
pub(crate) fn site_position<'a>(servers: &'a Value, host: &str) -> Option<(&'a str, usize)> {
    site_entry(servers, host).map(|(name, i, _)| (name, i))
}

/// The first route not owned by tart-sync that matches `host`.
fn site_entry<'a>(servers: &'a Value, host: &str) -> Option<(&'a str, usize, &'a Value)> {
    server_routes(servers).find(|(_, _, route)| !is_owned_route(route) && matches_host(route, host))
}

/// Where the route tart-sync owns with the `@id` `id` is: its server and index.
pub(crate) fn owned_position<'a>(servers: &'a Value, id: &str) -> Option<(&'a str, usize)> {
    server_routes(servers)
        .find(|(_, _, route)| {
            is_owned_route(route) && route.get("@id").and_then(Value::as_str) == Some(id)
        })
        .map(|(name, i, _)| (name, i))
}

/// Every top-level route of every server: server name, index, route;
/// servers in name order.
fn server_routes(servers: &Value) -> impl Iterator<Item = (&str, usize, &Value)> {
    let mut names: Vec<&String> = servers
        .as_object()
        .map(|o| o.keys().collect())
        .unwrap_or_default();
    names.sort();
    names.into_iter().flat_map(move |name| {
        servers[name.as_str()]
            .get("routes")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
            .map(move |(i, route)| (name.as_str(), i, route))
    })
}

/// True when one of `route`'s matcher sets lists `host`.
fn matches_host(route: &Value, host: &str) -> bool {
    route
        .get("match")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|m| m.get("host").and_then(Value::as_array))
        .flatten()
        .filter_map(Value::as_str)
        .any(|h| h.eq_ignore_ascii_case(host))
}
