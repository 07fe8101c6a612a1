//! tart-sync: keeps Caddy's reverse_proxy routes equal to headscale's online
//! nodes, live, through Caddy's admin API.
//!
//! Where each concern lives:
//! - [`config`]: settings from the TOML file and `TART_SYNC_*` environment.
//! - [`headscale`]: headscale's API (every generation) and its node model.
//! - [`desired`]: the pure function nodes + settings + time → routes.
//! - [`dns`]: the DNS responder of `routes.resolve = "dns"` (answers, rate
//!   limit, health).
//! - [`reserved`]: names never published (the site's own paths, `routes.reserved`).
//! - [`layout`]: how those routes look in Caddy's JSON (one owned route).
//! - [`reconcile`]: compare with one live Caddy and apply in one guarded write.
//! - [`site`]: where the site's route and tart-sync's route sit in Caddy's servers.
//! - [`guard`]: hold back a mass removal (headscale restarted?).
//! - [`contest`]: back off when another writer keeps changing the route.
//! - [`controller`]: the loop, error policy with backoff, shutdown.
//! - [`context`]: the [`context::Context`] shared by the loop and the status
//!   server; readiness.
//! - [`health`]: each TART's probe results and state-change history.
//! - [`history`]: the state-change history in memory and in its store.
//! - [`probe`]: reachability probes of each routed TART's web service.
//! - [`notify`]: webhooks on TART state changes.
//! - [`sidecar`]: the history, probe and webhook tasks beside the loop.
//! - [`metrics`]: the Prometheus metrics (prometheus-client), held by the context.
//! - [`enrol`]: `tart-sync enrol`: a new TART's name check and pre-auth key.
//! - [`nodes`]: `tart-sync nodes`: each node's routing decision.
//! - [`public`]: the public fleet page (opt-in), served behind Caddy.
//! - [`status`]: the status server: page, JSON, metrics and health endpoints.

pub mod config;
pub mod contest;
pub mod context;
pub mod controller;
pub mod desired;
pub mod dns;
pub mod enrol;
pub mod guard;
pub mod headscale;
pub mod health;
pub mod history;
pub mod layout;
pub mod metrics;
pub mod nodes;
pub mod notify;
pub mod probe;
pub mod public;
pub mod reconcile;
pub mod reserved;
pub mod sidecar;
pub mod site;
pub mod status;
