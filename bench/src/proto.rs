//! Prototypes of the idle-cycle changes the report recommends, timed on the
//! same data as tart-sync's current steps (nothing here is used by tart-sync).

use std::borrow::Cow;
use std::hash::Hasher;

use serde::Deserialize;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::{err, Res};

/// `{"nodes": [...]}` with only the fields tart-sync reads, strings borrowed.
#[derive(Deserialize)]
struct ListLite<'a> {
    #[serde(borrow)]
    nodes: Vec<NodeLite<'a>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct NodeLite<'a> {
    #[serde(borrow)]
    id: Cow<'a, str>,
    #[serde(borrow, default)]
    name: Cow<'a, str>,
    #[serde(borrow, default)]
    given_name: Cow<'a, str>,
    #[serde(borrow, default)]
    ip_addresses: Vec<Cow<'a, str>>,
    #[serde(default)]
    online: bool,
    #[serde(borrow, default)]
    last_seen: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    expiry: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    tags: Vec<Cow<'a, str>>,
    #[serde(borrow)]
    user: UserLite<'a>,
}

#[derive(Deserialize)]
struct UserLite<'a> {
    #[serde(borrow, default)]
    name: Cow<'a, str>,
}

/// An owned node with parsed timestamps, as tart-sync would keep it.
#[derive(Debug)]
#[allow(dead_code)]
pub struct NodeOwned {
    id: u64,
    name: String,
    given_name: String,
    ip: Option<std::net::IpAddr>,
    online: bool,
    last_seen: Option<OffsetDateTime>,
    expiry: Option<OffsetDateTime>,
    tags: Vec<String>,
    user: String,
}

fn ts(s: Option<&Cow<'_, str>>) -> Option<OffsetDateTime> {
    s.filter(|s| !s.is_empty())
        .and_then(|s| OffsetDateTime::parse(s, &Rfc3339).ok())
}

/// Typed parse (serde derive, unknown fields skipped, no `Value` tree), then
/// owned nodes with parsed timestamps and addresses.
pub fn parse_typed(body: &[u8]) -> Res<Vec<NodeOwned>> {
    let list: ListLite<'_> = serde_json::from_slice(body)?;
    list.nodes
        .iter()
        .map(|n| {
            Ok(NodeOwned {
                id: n.id.parse().map_err(|_| err("bad id"))?,
                name: n.name.to_string(),
                given_name: n.given_name.to_string(),
                ip: n.ip_addresses.iter().find_map(|a| a.parse().ok()),
                online: n.online,
                last_seen: ts(n.last_seen.as_ref()),
                expiry: ts(n.expiry.as_ref()),
                tags: n.tags.iter().map(|t| t.to_string()).collect(),
                user: n.user.name.to_string(),
            })
        })
        .collect()
}

/// A 64-bit fingerprint of the answer (std's SipHash), to skip parsing an
/// answer identical to the last one.
pub fn fingerprint(body: &[u8]) -> u64 {
    let mut h = std::hash::DefaultHasher::new();
    h.write(body);
    h.finish()
}
