//! Polls a running Caddy's reverse-proxy upstreams once a second and prints
//! them as a table: requests in flight and recent failures per dial address.
//!
//! ```sh
//! cargo run -p caddy-client --example watch_upstreams -- [ADMIN] [ROUNDS]
//! ```
//!
//! - `ADMIN`: Caddy's admin address (default: `$CADDY_ADMIN`, else `localhost:2019`);
//! - `ROUNDS`: how many times to poll, 1 to 3600 (default 10).
//!
//! A round that fails (Caddy reloading, stopped) is reported and the next
//! one is tried; the program fails if no round succeeded.

use std::error::Error;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use caddy_client::{Client, UpstreamStatus};

const MAX_ROUNDS: u32 = 3600;

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
    let rounds = match args.next() {
        None => 10,
        Some(r) => match r.parse::<u32>() {
            Ok(n) if (1..=MAX_ROUNDS).contains(&n) => n,
            _ => {
                return Err(
                    format!("bad ROUNDS {r:?}: expected a number from 1 to {MAX_ROUNDS}").into(),
                )
            }
        },
    };

    let caddy = Client::builder()
        .address(&admin)
        .timeout(Duration::from_secs(2))
        .build()
        .map_err(|e| format!("bad admin address: {e}"))?;

    let start = Instant::now();
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    let mut succeeded = 0;
    let mut last_error = None;
    for round in 1..=rounds {
        ticker.tick().await;
        println!(
            "round {round}/{rounds} at +{:.1}s",
            start.elapsed().as_secs_f64()
        );
        match caddy.upstreams().await {
            Ok(upstreams) => {
                succeeded += 1;
                print_table(&upstreams);
            }
            Err(e) => {
                println!("  cannot read upstreams: {e}");
                last_error = Some(e);
            }
        }
        println!();
    }
    match last_error {
        Some(e) if succeeded == 0 => Err(format!("no round succeeded; last error: {e}").into()),
        _ => Ok(()),
    }
}

fn print_table(upstreams: &[UpstreamStatus]) {
    if upstreams.is_empty() {
        println!("  (no upstreams: no reverse_proxy handler is configured)");
        return;
    }
    let width = upstreams
        .iter()
        .map(|u| u.address.len())
        .max()
        .unwrap_or(0)
        .max("ADDRESS".len());
    println!(
        "  {:<width$}  {:>9}  {:>5}  OTHER",
        "ADDRESS", "IN-FLIGHT", "FAILS"
    );
    for u in upstreams {
        // Fields added by newer Caddy versions, e.g. health, as compact JSON.
        let other = if u.extra.is_empty() {
            String::new()
        } else {
            serde_json::to_string(&u.extra).unwrap_or_default()
        };
        println!(
            "  {:<width$}  {:>9}  {:>5}  {other}",
            u.address, u.num_requests, u.fails
        );
    }
}
