//! The naive layout: one `handle_path /<name>/*` route per TART inside the
//! site's subroute, in the JSON shape a Caddyfile adapts to.

use caddy_client::Client;
use serde_json::{json, Value};
use tart_sync::reconcile::find_site;

use crate::{err, Res};

/// `handle_path /<name>/* { reverse_proxy <dial> }`, adapted.
pub fn route(name: &str, dial: &str) -> Value {
    json!({
        "match": [{"path": [format!("/{name}/*")]}],
        "handle": [{
            "handler": "subroute",
            "routes": [
                {"handle": [{"handler": "rewrite", "strip_path_prefix": format!("/{name}")}]},
                {"handle": [{"handler": "reverse_proxy", "upstreams": [{"dial": dial}]}]},
            ],
        }],
    })
}

/// An admin client that opens a fresh connection per request: every reload
/// closes Caddy's admin connections, and a naive writer's PATCH (no If-Match)
/// is not retried by the client on a connection Caddy closed.
pub fn fresh_client(admin: &str) -> Res<Client> {
    let http = reqwest::Client::builder()
        .no_proxy()
        .http1_only()
        .pool_max_idle_per_host(0)
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    Ok(Client::builder().address(admin).http_client(http).build()?)
}

/// Replaces one route (`PATCH`; idempotent, so retried once on a transport error).
pub async fn patch_route(client: &Client, path: &str, route: &Value) -> Res<()> {
    match client.config(path).patch(route).await {
        Err(e) if e.is_unreachable() => {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            Ok(client.config(path).patch(route).await?)
        }
        other => Ok(other?),
    }
}

/// Where the naive routes live in one Caddy's config.
#[derive(Debug, Clone)]
pub struct Placement {
    /// Config path of the site's subroute route list.
    pub base: String,
    /// Index of the first naive route in that list.
    pub offset: usize,
}

impl Placement {
    /// Config path of the `i`-th naive route.
    pub fn route_path(&self, i: usize) -> String {
        format!("{}/{}", self.base, self.offset + i)
    }
}

/// Inserts the routes (in this order) into the site for `host`, where a
/// Caddyfile puts `handle_path` blocks: after the site's `header` route and
/// before its `respond`. One write.
pub async fn install(client: &Client, host: &str, names: &[String], dial: &str) -> Res<Placement> {
    let servers: Value = client.config("apps/http/servers").get().await?;
    let base = match find_site(&servers, host) {
        Some(p) => format!("{p}/handle/0/routes"),
        None => return Err(err(format!("no site for {host} in Caddy's config"))),
    };
    let existing: Vec<Value> = client
        .config(&base)
        .get::<Option<Vec<Value>>>()
        .await?
        .unwrap_or_default();
    let is_respond = |r: &Value| {
        r["handle"]
            .as_array()
            .is_some_and(|hs| hs.iter().any(|h| h["handler"] == "static_response"))
    };
    let offset = existing
        .iter()
        .position(is_respond)
        .unwrap_or(existing.len());
    let mut all = Vec::with_capacity(existing.len() + names.len());
    all.extend_from_slice(&existing[..offset]);
    all.extend(names.iter().map(|n| route(n, dial)));
    all.extend_from_slice(&existing[offset..]);
    client.config(&base).patch(&all).await?;
    Ok(Placement { base, offset })
}
