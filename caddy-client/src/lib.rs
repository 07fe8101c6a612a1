//! A typed, version-aware client for [Caddy](https://caddyserver.com)'s JSON admin API.
//!
//! - [`Client`]: one type for one admin endpoint, over TCP, TLS (with client
//!   certificates for `admin.remote`) or a unix socket, built with
//!   [`Client::new`] or [`Client::builder`].
//! - Endpoint groups in [`api`]: config by path or `@id` ([`Client::config`],
//!   [`Client::id`]) with optimistic concurrency ([`api::config::Etag`],
//!   `if_match`), [`Client::load`], [`Client::adapt`], [`Client::stop`],
//!   [`Client::upstreams`], [`Client::pki_ca`], and [`Client::capabilities`]
//!   to learn what the running Caddy accepts without changing anything.
//! - [`model`]: the config as Rust types that keep everything they do not
//!   model, so GET → typed value → write back is lossless.
//! - [`Error`]: one `#[non_exhaustive]` enum that keeps the HTTP status and
//!   Caddy's message, classified the same way on Caddy 2.6 through 2.11.
//!
//! Tested against real Caddy 2.6.2 and 2.11.x.
//!
//! # Example
//!
//! Building a route needs no Caddy; it serializes to the JSON a Caddyfile
//! `handle_path /rhodes/* { reverse_proxy 100.64.0.1:80 }` adapts to:
//!
//! ```
//! use caddy_client::model::Route;
//!
//! let route = Route::reverse_proxy_path("/rhodes", "100.64.0.1:80").with_id("rhodes");
//! let json = serde_json::to_value(&route).unwrap();
//! assert_eq!(json["@id"], "rhodes");
//! assert_eq!(json["match"][0]["path"][0], "/rhodes/*");
//!
//! // Every admin address form Caddy accepts:
//! for admin in ["localhost:2019", "http://127.0.0.1:2019", "unix//run/caddy/admin.sock"] {
//!     caddy_client::Client::new(admin).unwrap();
//! }
//! ```
//!
//! Talking to a running Caddy: read a route by `@id` with its ETag, and
//! change it only if nobody else did in between.
//!
//! ```no_run
//! use caddy_client::{model::Route, Client, Error};
//!
//! # async fn run() -> Result<(), Error> {
//! let caddy = Client::new("localhost:2019")?;
//! let (mut route, etag) = caddy.id("rhodes").get_with_etag::<Route>().await?;
//! route.terminal = Some(true);
//! match caddy.id("rhodes").if_match(&etag).patch(&route).await {
//!     Err(e) if e.is_precondition_failed() => println!("changed meanwhile; read again"),
//!     other => other?,
//! }
//! # Ok(()) }
//! ```

pub mod api;
mod client;
mod error;
pub mod model;

pub use api::capabilities::Capabilities;
pub use api::config::{ConfigRequest, Etag};
pub use api::load::{AdaptWarning, Adapted};
pub use api::pki::PkiCa;
pub use api::upstreams::UpstreamStatus;
pub use client::{
    AdminAddress, Client, ClientBuilder, DEFAULT_CONNECT_TIMEOUT, DEFAULT_MAX_BODY_SIZE,
    DEFAULT_TIMEOUT, DEFAULT_WRITE_TIMEOUT,
};
pub use error::{chain as error_chain, BoxError, Error, ErrorKind};
