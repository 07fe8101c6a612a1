//! Prints every route of every HTTP server in a running Caddy: its `@id`,
//! matchers and handler names, nested routes indented under their parent.
//!
//! ```sh
//! cargo run -p caddy-client --example list_routes -- [ADMIN]
//! ```
//!
//! `ADMIN` is Caddy's admin address (default: `$CADDY_ADMIN`, else
//! `localhost:2019`), in any form Caddy accepts: `localhost:2019`,
//! `http://host:port`, `unix//run/caddy/admin.sock`.

use std::error::Error;
use std::process::ExitCode;

use caddy_client::model::{Config, MatcherSet, Route};
use caddy_client::Client;

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
    let admin = admin_address();
    let caddy = Client::new(&admin).map_err(|e| format!("bad admin address: {e}"))?;
    let config: Config = caddy
        .config("")
        .get()
        .await
        .map_err(|e| format!("cannot read the config from {admin}: {e}"))?;

    let Some(http) = config.http() else {
        println!("Caddy at {admin} has no HTTP app configured.");
        return Ok(());
    };
    if http.servers.is_empty() {
        println!("Caddy at {admin} has no HTTP servers.");
    }
    for (name, server) in &http.servers {
        let listen = server.listen.as_deref().unwrap_or_default().join(", ");
        let id = server
            .id()
            .map(|id| format!(" @id={id}"))
            .unwrap_or_default();
        println!("server {name}{id} (listen: {listen})");
        if server.routes.is_empty() {
            println!("  (no routes)");
        }
        for (i, route) in server.routes.iter().enumerate() {
            print_route(&i.to_string(), route, 1);
        }
        if let Some(errors) = &server.errors {
            for (i, route) in errors.routes.iter().enumerate() {
                print_route(&format!("errors/{i}"), route, 1);
            }
        }
    }
    Ok(())
}

/// The admin address: first argument, else `$CADDY_ADMIN`, else `localhost:2019`.
fn admin_address() -> String {
    std::env::args()
        .nth(1)
        .or_else(|| std::env::var("CADDY_ADMIN").ok())
        .filter(|a| !a.trim().is_empty())
        .unwrap_or_else(|| "localhost:2019".to_string())
}

/// Prints one route and, indented below it, the routes nested in its handlers.
fn print_route(position: &str, route: &Route, depth: usize) {
    let indent = "  ".repeat(depth);
    let id = route
        .id()
        .map(|id| format!(" @id={id}"))
        .unwrap_or_default();
    let terminal = if route.terminal == Some(true) {
        " (terminal)"
    } else {
        ""
    };
    let handlers: Vec<String> = route
        .handle
        .iter()
        .map(|h| match h.id() {
            Some(id) => format!("{}@{id}", h.name()),
            None => h.name().to_string(),
        })
        .collect();
    println!(
        "{indent}route {position}{id}{terminal}: match {} -> {}",
        describe_matchers(&route.matchers),
        if handlers.is_empty() {
            "(no handlers)".to_string()
        } else {
            handlers.join(", ")
        }
    );
    // Routes of `subroute` handlers and of `reverse_proxy` `handle_response` blocks.
    for (i, child) in route.child_routes().into_iter().enumerate() {
        print_route(&format!("{position}.{i}"), child, depth + 1);
    }
}

/// `any request`, or the matcher sets as compact JSON joined by `OR`.
fn describe_matchers(sets: &[MatcherSet]) -> String {
    if sets.is_empty() {
        return "any request".to_string();
    }
    sets.iter()
        .map(|set| match serde_json::to_string(set) {
            Ok(json) => json,
            Err(e) => format!("<unprintable matcher: {e}>"),
        })
        .collect::<Vec<_>>()
        .join(" OR ")
}
