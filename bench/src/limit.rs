//! The limit: the cheapest proxying Caddy can do, in the same Caddy as a
//! layout under test. One more server on its own loopback port whose only
//! route has no matcher and one `reverse_proxy` handler with a static
//! upstream (the same backend the TARTs dial). Loading it there, with the same
//! load, gives the ceiling a TART route can reach in that process.

use std::net::{Ipv4Addr, SocketAddr};

use e2e::free_port;
use serde_json::{json, Value};

use crate::{err, naive, Res};

/// The name of the limit's server in Caddy's `apps.http.servers`.
pub const SERVER: &str = "tart_bench_limit";

/// How the limit is made, for the reports.
pub const DESCRIPTION: &str = "limit: one more server in the same Caddy, on its own loopback port, whose \
only route is `{\"handle\": [{\"handler\": \"reverse_proxy\", \"upstreams\": [{\"dial\": <the backend>}]}]}` \
(no matcher, no rewrite, no map): the cheapest proxying Caddy can do, through the same process, to the same backend";

/// The limit's server: listens on `listen`, proxies every request to `dial`.
pub fn server(listen: SocketAddr, dial: &str) -> Value {
    json!({
        "listen": [listen.to_string()],
        "routes": [{"handle": [{"handler": "reverse_proxy", "upstreams": [{"dial": dial}]}]}],
        "automatic_https": {"disable": true},
    })
}

/// The name of the dynamic limit's server (dns mode only).
pub const DYNAMIC_SERVER: &str = "tart_bench_limit_dynamic";

/// How the dynamic limit is made, for the reports.
pub const DYNAMIC_DESCRIPTION: &str = "dynamic limit (dns mode only): the limit's route with `dynamic_upstreams` \
(source `a`, one fixed name: the measured TART's `<name>.<zone>`, `refresh` 1s, resolver tart-sync's responder) \
instead of the static upstream: what Caddy's per-request dynamic lookup costs with no layout around it";

/// The limit's server with `dynamic_upstreams` instead of a static upstream:
/// one fixed name `fqdn`, looked up from `resolver` (`udp/IP:port`).
pub fn dynamic_server(listen: SocketAddr, fqdn: &str, port: u16, resolver: &str) -> Value {
    json!({
        "listen": [listen.to_string()],
        "routes": [{"handle": [{
            "handler": "reverse_proxy",
            "dynamic_upstreams": {
                "source": "a",
                "name": fqdn,
                "port": port.to_string(),
                "refresh": "1s",
                "resolver": {"addresses": [resolver]},
            },
        }]}],
        "automatic_https": {"disable": true},
    })
}

/// Adds the limit's server to the Caddy at `admin` (one config write, before
/// any measurement) and returns its address.
pub async fn install(admin: &str, dial: &str) -> Res<SocketAddr> {
    let listen = SocketAddr::new(Ipv4Addr::LOCALHOST.into(), free_port());
    put_server(admin, SERVER, &server(listen, dial)).await?;
    Ok(listen)
}

/// Adds the dynamic limit's server (see [`dynamic_server`]) and returns its address.
pub async fn install_dynamic(
    admin: &str,
    fqdn: &str,
    port: u16,
    resolver: &str,
) -> Res<SocketAddr> {
    let listen = SocketAddr::new(Ipv4Addr::LOCALHOST.into(), free_port());
    put_server(
        admin,
        DYNAMIC_SERVER,
        &dynamic_server(listen, fqdn, port, resolver),
    )
    .await?;
    Ok(listen)
}

/// PUTs one server into Caddy's `apps.http.servers`.
async fn put_server(admin: &str, name: &str, server: &Value) -> Res<()> {
    let client = naive::fresh_client(admin)?;
    client
        .config(&format!("apps/http/servers/{name}"))
        .put(server)
        .await
        .map_err(|e| err(format!("adding the server {name} to Caddy at {admin}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limit_is_one_unmatched_proxy_route() {
        let listen: SocketAddr = "127.0.0.1:4000".parse().unwrap();
        let s = server(listen, "127.0.0.2:8080");
        assert_eq!(s["listen"], json!(["127.0.0.1:4000"]));
        let routes = s["routes"].as_array().cloned().unwrap_or_default();
        assert_eq!(routes.len(), 1);
        assert!(routes[0].get("match").is_none());
        assert_eq!(
            routes[0]["handle"],
            json!([{"handler": "reverse_proxy", "upstreams": [{"dial": "127.0.0.2:8080"}]}])
        );
    }
}
