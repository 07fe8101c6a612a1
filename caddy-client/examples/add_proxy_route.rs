//! Adds a path-prefix reverse-proxy route to a running Caddy, idempotently.
//!
//! The route is what the Caddyfile `handle_path PREFIX/* { reverse_proxy
//! UPSTREAM }` adapts to (the prefix is stripped before proxying), with an
//! `@id` derived from the prefix (`/app` → `proxy-app`). Running it again
//! replaces that route in place (`PATCH /id/...`) instead of adding another;
//! if nothing changed, nothing is sent and Caddy does not reload.
//!
//! ```sh
//! cargo run -p caddy-client --example add_proxy_route -- [ADMIN] [PREFIX] [UPSTREAM] [SERVER]
//! ```
//!
//! - `ADMIN`: Caddy's admin address (default: `$CADDY_ADMIN`, else `localhost:2019`);
//! - `PREFIX`: the path prefix (default `/app`);
//! - `UPSTREAM`: the upstream's dial address (default `127.0.0.1:8080`);
//! - `SERVER`: the HTTP server to add the route to (default: the first by name).
//!
//! A new route is inserted first in the server's routes, so it applies before
//! any catch-all site route, for every host the server serves.

use std::collections::BTreeMap;
use std::error::Error;
use std::process::ExitCode;

use caddy_client::model::{validate_dial, Route, Server};
use caddy_client::{Client, ErrorKind};

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), Box<dyn Error>> {
    let mut args = std::env::args().skip(1);
    let admin = args
        .next()
        .or_else(|| std::env::var("CADDY_ADMIN").ok())
        .filter(|a| !a.trim().is_empty())
        .unwrap_or_else(|| "localhost:2019".to_string());
    let prefix = args.next().unwrap_or_else(|| "/app".to_string());
    let upstream = args.next().unwrap_or_else(|| "127.0.0.1:8080".to_string());
    let server_arg = args.next();

    let prefix = normalize_prefix(&prefix)?;
    // Caddy does not check dial addresses when loading: a bad one only fails per request.
    validate_dial(&upstream).map_err(|e| format!("bad upstream: {e}"))?;
    let id = route_id(&prefix);
    let route = Route::reverse_proxy_path(&prefix, &upstream).with_id(id.as_str());

    let caddy = Client::new(&admin).map_err(|e| format!("bad admin address: {e}"))?;

    // Already there? Replace it in place, guarded by its ETag.
    match caddy.id(&id).get_with_etag::<Route>().await {
        Ok((existing, _)) if existing == route => {
            println!("route @id={id} already proxies {prefix}/* to {upstream}; nothing to do");
            return Ok(());
        }
        Ok((_, etag)) => {
            caddy
                .id(&id)
                .if_match(&etag)
                .patch(&route)
                .await
                .map_err(|e| explain(&e))?;
            println!("updated route @id={id}: {prefix}/* -> {upstream}");
            return Ok(());
        }
        Err(e) if e.is_not_found() => {}
        Err(e) => return Err(explain(&e).into()),
    }

    // Not there yet: insert it first in a server's routes. The ETag of the
    // servers object guards the insertion against concurrent changes.
    let (servers, etag) = match caddy
        .config("apps/http/servers")
        .get_with_etag::<Option<BTreeMap<String, Server>>>()
        .await
    {
        Ok(found) => found,
        // A missing `apps` or `apps.http` on the way is a 400 "invalid traversal path".
        Err(e) if e.kind() == ErrorKind::BadRequest => {
            return Err(
                "Caddy has no HTTP app to add the route to; load a config with one first".into(),
            )
        }
        Err(e) => return Err(explain(&e).into()),
    };
    let servers = servers.unwrap_or_default();
    let (name, server) = match &server_arg {
        Some(name) => servers.get_key_value(name).ok_or_else(|| {
            format!(
                "no HTTP server named {name:?}; servers: {:?}",
                servers.keys().collect::<Vec<_>>()
            )
        })?,
        None => servers
            .iter()
            .next()
            .ok_or("Caddy has no HTTP server to add the route to; load a config with one first")?,
    };
    let routes = format!("apps/http/servers/{name}/routes");
    let insert = caddy.config(&routes).if_match(&etag);
    let result = if !server.routes.is_empty() {
        // PUT on an array index inserts before it.
        caddy
            .config(&format!("{routes}/0"))
            .if_match(&etag)
            .put(&route)
            .await
    } else if server.extra.contains_key("routes") {
        // `"routes": []`: POST on an array appends (Caddy 2.6 refuses PUT at index 0).
        insert.post(&route).await
    } else {
        // No `routes` key yet: POST on a missing key creates it.
        insert.post(&[&route]).await
    };
    result.map_err(|e| explain(&e))?;
    println!("added route @id={id} to server {name}: {prefix}/* -> {upstream}");
    Ok(())
}

/// `/app`, `/app/`, `/app/*` and `app` all become `/app`; `/` alone is refused.
fn normalize_prefix(prefix: &str) -> Result<String, String> {
    let trimmed = prefix.trim().trim_end_matches('*').trim_matches('/');
    if trimmed.is_empty() {
        return Err(format!("bad prefix {prefix:?}: give a path such as /app"));
    }
    if trimmed.contains(['*', '?', '#', ' ']) {
        return Err(format!(
            "bad prefix {prefix:?}: no wildcards, query, fragment or spaces"
        ));
    }
    Ok(format!("/{trimmed}"))
}

/// `/app/v1` → `proxy-app-v1`: an `@id` without characters that need escaping.
fn route_id(prefix: &str) -> String {
    let tail: String = prefix
        .trim_matches('/')
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    format!("proxy-{tail}")
}

/// A message for the user, with a hint for the errors one can act on.
fn explain(e: &caddy_client::Error) -> String {
    if e.is_precondition_failed() {
        format!("the config changed while this ran; run it again ({e})")
    } else {
        e.to_string()
    }
}
