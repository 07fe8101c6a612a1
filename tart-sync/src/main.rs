//! The `tart-sync` command: run the daemon, or one pass, a plan, or a check.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use tart_sync::config::Settings;
use tart_sync::context::Context;
use tart_sync::controller;
use tart_sync::desired::Desired;
use tart_sync::headscale::HeadscaleClient;
use tart_sync::layout::{Diff, Ids};
use tart_sync::reconcile::{self, Instance};
use tokio::sync::watch;

/// Keeps Caddy's reverse_proxy routes equal to headscale's online nodes, live,
/// through Caddy's admin API: every TART becomes https://<domain>/<name>/ (or
/// https://<name>.<domain>/). Caddy is never restarted and routes tart-sync
/// does not own are never touched.
///
/// Settings come from the TOML file given with --config and from environment
/// variables TART_SYNC_<SECTION>_<KEY> (e.g. TART_SYNC_HEADSCALE_API_KEY_FILE),
/// which override the file. See tart-sync.example.toml.
#[derive(Debug, Parser)]
#[command(name = "tart-sync", version, about, long_about)]
struct Cli {
    /// The TOML config file (optional when every required setting comes from the environment).
    #[arg(short, long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Log format; filter with RUST_LOG (default: info).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the daemon (the default): poll headscale, keep every Caddy in sync, serve the status page.
    /// SIGTERM or SIGINT finishes the write in flight, leaves the routes in place and exits 0.
    Run,
    /// One reconcile pass. Exits 0 when every Caddy matches the desired state, 1 otherwise.
    Once {
        /// Apply a change even if it would stop more than half of the routes at once.
        #[arg(long)]
        allow_mass_removal: bool,
    },
    /// Print the desired routes and the difference from each live Caddy; change nothing.
    Plan,
    /// Reach headscale and each Caddy and report versions and problems (bad key, wrong
    /// address, the domain's site not found). Exits 1 on any problem.
    Check,
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

/// Raises the soft limit of open files (RLIMIT_NOFILE) to the hard limit:
/// systemd's default soft limit of 1,024 is low for a daemon that holds
/// connections to headscale, every Caddy and the status server's clients.
fn raise_open_files_limit() {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => tracing::debug!(
            limit,
            "open files limit (RLIMIT_NOFILE) raised to the hard limit"
        ),
        Err(e) => tracing::warn!(
            error = %e,
            "cannot raise the open files limit (RLIMIT_NOFILE); the status server still keeps at most {} connections",
            tart_sync::status::MAX_CONNECTIONS
        ),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    raise_open_files_limit();
    let settings = match Settings::load(cli.config.as_deref()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("tart-sync: configuration error: {e}");
            return ExitCode::from(2);
        }
    };
    // One thread: the loop, the reconcile tasks and the status server do
    // little work each and never block; on one thread they hand data over
    // without cross-thread wake-ups, and all memory comes from one malloc
    // arena (measured at 10,000 nodes: -25% CPU and -4 MB RSS against two
    // worker threads; BENCHMARKS.md).
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("tart-sync: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let hs = match HeadscaleClient::from_settings(&settings.headscale) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("tart-sync: configuration error: headscale: {e}");
                return ExitCode::from(2);
            }
        };
        if let Err(e) = controller::instances(&settings) {
            eprintln!("tart-sync: configuration error: caddy.admin: {e}");
            return ExitCode::from(2);
        }
        let ctx = Context::new(settings);
        match cli.command.unwrap_or(Command::Run) {
            Command::Run => run(ctx, hs).await,
            Command::Once { allow_mass_removal } => once(&ctx, &hs, allow_mass_removal).await,
            Command::Plan => plan(&ctx, &hs).await,
            Command::Check => check(&ctx, &hs).await,
        }
    })
}

async fn run(ctx: Arc<Context>, hs: HeadscaleClient) -> ExitCode {
    let (tx, rx) = watch::channel(false);
    let listen = ctx.settings.status.listen;
    let listener = match tokio::net::TcpListener::bind(listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("tart-sync: status.listen: cannot listen on {listen}: {e}");
            return ExitCode::from(2);
        }
    };
    tracing::info!(
        status = %listen,
        domain = %ctx.settings.routes.domain,
        mode = ctx.settings.routes.mode.as_str(),
        caddy = ?ctx.settings.caddy.admin,
        headscale = %ctx.settings.headscale.url,
        "tart-sync starting"
    );
    for exposed in ctx.settings.exposed_secrets() {
        tracing::warn!("{exposed}");
    }
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutdown requested; finishing the write in flight");
        let _ = tx.send(true);
    });
    let status = tokio::spawn(tart_sync::status::serve(ctx.clone(), listener, rx.clone()));
    let sidecar = tart_sync::sidecar::start(&ctx, &rx).await;
    let result = controller::run(ctx, hs, rx).await;
    let _ = tokio::time::timeout(Duration::from_secs(5), status).await;
    sidecar.finish(Duration::from_secs(5)).await;
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tart-sync: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

async fn once(ctx: &Context, hs: &HeadscaleClient, allow_mass_removal: bool) -> ExitCode {
    match controller::once(ctx, hs, allow_mass_removal).await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => {
            for c in ctx.snapshot().caddies {
                if let Some(e) = c.last_error {
                    eprintln!("tart-sync: {}: {e}", c.address);
                }
            }
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("tart-sync: headscale: {e}");
            ExitCode::FAILURE
        }
    }
}

fn print_desired(ctx: &Context, desired: &Desired) {
    let routes = &ctx.settings.routes;
    println!(
        "Desired routes ({} TARTs) for {} ({} mode):",
        desired.entries.len(),
        routes.domain,
        routes.mode.as_str()
    );
    for e in &desired.entries {
        let url = tart_sync::layout::node_url(routes, &e.name);
        println!(
            "  {:<24} {:<8} {:<28} {}",
            e.name,
            e.state.as_str(),
            e.upstream,
            url
        );
    }
    for s in &desired.skipped {
        println!("  skipped node {} ({}): {}", s.node_id, s.name, s.reason);
    }
}

async fn plan(ctx: &Context, hs: &HeadscaleClient) -> ExitCode {
    if let Ok(insts) = controller::instances(&ctx.settings) {
        controller::learn_site_rules(ctx, &insts).await;
    }
    let reserved = ctx.reserved();
    if !reserved.rules().is_empty() {
        println!("Names never published:");
        for (rule, why) in reserved.rules() {
            println!("  {:<28} {why}", rule.to_string());
        }
    }
    let desired = match controller::poll(ctx, hs).await {
        Ok(d) => d,
        Err(e) => {
            eprintln!("tart-sync: headscale: {e}");
            return ExitCode::FAILURE;
        }
    };
    print_desired(ctx, &desired);
    let ids = Ids::new(&ctx.settings.routes.id_prefix);
    let targets = desired.targets();
    let mut code = ExitCode::SUCCESS;
    for address in &ctx.settings.caddy.admin {
        let inst = match Instance::new(address, &ctx.settings.caddy) {
            Ok(i) => i,
            Err(e) => {
                eprintln!("tart-sync: {address}: {e}");
                code = ExitCode::FAILURE;
                continue;
            }
        };
        match inst.live(&ids).await {
            Ok(Some((live, _))) => {
                let d = Diff::between(&reconcile::live_targets(&live), &targets);
                if d.is_empty() {
                    println!("Caddy {address}: up to date (/id/{})", ids.route);
                } else {
                    println!(
                        "Caddy {address}: would add {:?}, remove {:?}, change {:?}",
                        d.added, d.removed, d.changed
                    );
                }
            }
            Ok(None) => println!(
                "Caddy {address}: route /id/{} missing; would install {} routes",
                ids.route,
                targets.len()
            ),
            Err(e) => {
                println!("Caddy {address}: unreachable: {e}");
                code = ExitCode::FAILURE;
            }
        }
    }
    code
}

async fn check(ctx: &Context, hs: &HeadscaleClient) -> ExitCode {
    let mut problems = 0;
    for exposed in ctx.settings.exposed_secrets() {
        problems += 1;
        println!("secret: PROBLEM: {exposed}");
    }
    match hs.version().await {
        Ok(Some(v)) => println!("headscale {}: version {v}", ctx.settings.headscale.url),
        Ok(None) => println!(
            "headscale {}: version not reported (before 0.27)",
            ctx.settings.headscale.url
        ),
        Err(e) => println!("headscale {}: no version: {e}", ctx.settings.headscale.url),
    }
    match controller::poll(ctx, hs).await {
        Ok(d) => println!(
            "headscale: OK, {} nodes listed, {} TARTs routable, {} skipped",
            ctx.snapshot().headscale.nodes_seen,
            d.entries.len(),
            d.skipped.len()
        ),
        Err(e) => {
            problems += 1;
            println!("headscale: PROBLEM: {e}");
        }
    }
    let site = tart_sync::layout::site_host(&ctx.settings.routes);
    for address in &ctx.settings.caddy.admin {
        let client = match ctx.settings.caddy.client(address) {
            Ok(c) => c,
            Err(e) => {
                problems += 1;
                println!("Caddy {address}: PROBLEM: {e}");
                continue;
            }
        };
        match client.capabilities().await {
            Ok(caps) => println!(
                "Caddy {address}: reachable, version {}+, WebSockets across reloads: {}",
                caps.min_version(),
                if caps.stream_close_delay {
                    "yes"
                } else {
                    "no (Caddy older than 2.7)"
                }
            ),
            Err(e) => {
                problems += 1;
                println!("Caddy {address}: PROBLEM: {e}");
                continue;
            }
        }
        match client
            .config("apps/http/servers")
            .get::<Option<serde_json::Value>>()
            .await
        {
            Ok(servers) => match servers
                .as_ref()
                .and_then(|s| reconcile::find_site(s, &site))
            {
                Some(_) => println!("Caddy {address}: site {site} found"),
                None => {
                    problems += 1;
                    println!("Caddy {address}: PROBLEM: no site for {site} in its config; add one (see Caddyfile.example)");
                }
            },
            Err(e) => {
                problems += 1;
                println!("Caddy {address}: PROBLEM: {e}");
            }
        }
    }
    if problems == 0 {
        println!("check: OK");
        ExitCode::SUCCESS
    } else {
        println!("check: {problems} problem(s)");
        ExitCode::FAILURE
    }
}
