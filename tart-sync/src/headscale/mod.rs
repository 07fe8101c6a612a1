//! headscale's API: the client and the node model.
//!
//! [`HeadscaleClient::list_nodes_shared`] polls `GET /api/v1/node`
//! (headscale 0.23+) and falls back to `GET /api/v1/machine` (0.22) when the
//! former answers 404; the generation that answered is remembered
//! ([`ApiGeneration`]), and re-probed when it later answers 404 (an upgrade
//! or downgrade).
//!
//! The answer is compared with the previous one while it arrives: an
//! unchanged answer is not parsed again and its list is shared
//! ([`Shared`]). A changed one is read by [`parse_node_list`] into a
//! [`NodeList`]: a node that cannot be parsed (e.g. no `id`) is skipped and
//! reported, the others are returned. Errors ([`HeadscaleError`]) never
//! contain the API key.
//!
//! Files: `client.rs` (HTTP, authentication, API generations, error
//! answers), `model.rs` ([`Node`] and the parser), `cache.rs` (the kept
//! answer), `error.rs`, `preauth.rs` (pre-auth keys and users, for
//! `tart-sync enrol`).

mod cache;
mod client;
mod error;
mod model;
mod preauth;

pub use cache::Shared;
pub use client::{ApiGeneration, HeadscaleClient, MAX_BODY_BYTES};
pub use error::HeadscaleError;
pub use model::{
    is_valid_dns_label, parse_node_list, parse_timestamp, Node, NodeList, SkippedNode,
};
pub use preauth::{AuthKey, CreatedKey, KeyRequest, User, UserParam};
