//! Endpoint groups of the admin API, one module each.

pub mod capabilities;
pub mod config;
pub mod load;
pub mod pki;
pub mod upstreams;
