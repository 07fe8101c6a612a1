//! The node model, and [`parse_node_list`] for headscale's answer.
//!
//! The answer is read into derived structs that borrow their strings from
//! the body; only the fields tart-sync reads are kept, the others are
//! skipped unread. The list is first split into its items (each a
//! [`RawValue`]: a slice of the body), then each item is read on its own, so
//! a node that does not parse is skipped with the reason instead of failing
//! the whole answer.

use std::borrow::Cow;
use std::collections::HashSet;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr};

use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;
use time::format_description::well_known::Rfc3339;
use time::{OffsetDateTime, UtcOffset};

use super::error::{excerpt, HeadscaleError};

/// One node, as far as tart-sync needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// headscale's node id (stable; key state on it, not on names).
    pub id: u64,
    /// The OS host name (`name`).
    pub name: String,
    /// The DNS label (`givenName`); may be empty when missing.
    pub given_name: String,
    /// The owning user's name (`user.name`); empty when missing. Tagged
    /// nodes on 0.28+ belong to `tagged-devices`.
    pub user: String,
    /// The node's tailnet addresses (unparsable entries skipped).
    pub ip_addresses: Vec<IpAddr>,
    /// headscale's `online` flag (missing = false).
    pub online: bool,
    /// `lastSeen`, if set (not a liveness signal since 0.23).
    pub last_seen: Option<OffsetDateTime>,
    /// `expiry`; `None` means the node never expires (`null` or
    /// `0001-01-01T00:00:00Z`).
    pub expiry: Option<OffsetDateTime>,
    /// Tags: `tags` (0.28+), else the union of `validTags` and `forcedTags`;
    /// each once, in the order first seen.
    pub tags: Vec<String>,
}

impl Node {
    /// True if the node has an expiry at or before `now`.
    pub fn is_expired(&self, now: OffsetDateTime) -> bool {
        self.expiry.is_some_and(|expiry| expiry <= now)
    }

    /// The first IPv4 address.
    pub fn first_ipv4(&self) -> Option<Ipv4Addr> {
        self.ip_addresses.iter().find_map(|ip| match ip {
            IpAddr::V4(v4) => Some(*v4),
            IpAddr::V6(_) => None,
        })
    }

    /// The first IPv4 address, else the first IPv6 address.
    pub fn first_ip(&self) -> Option<IpAddr> {
        self.first_ipv4()
            .map(IpAddr::V4)
            .or_else(|| self.ip_addresses.iter().find(|ip| ip.is_ipv6()).copied())
    }

    /// True if the node carries any of `tags` (false when `tags` is empty).
    pub fn has_any_tag(&self, tags: &[String]) -> bool {
        self.tags.iter().any(|t| tags.contains(t))
    }

    /// `given_name` if it is a valid DNS label ([`is_valid_dns_label`]).
    pub fn dns_label(&self) -> Option<&str> {
        is_valid_dns_label(&self.given_name).then_some(self.given_name.as_str())
    }
}

/// True for a DNS label as headscale's `givenName`: 1–63 characters of
/// `[a-z0-9-]`, not starting or ending with `-`.
pub fn is_valid_dns_label(label: &str) -> bool {
    !label.is_empty()
        && label.len() <= 63
        && !label.starts_with('-')
        && !label.ends_with('-')
        && label
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// Parses a protojson timestamp (RFC 3339, 0–9 fractional digits) into UTC.
/// Go's zero time `0001-01-01T00:00:00Z` gives `Ok(None)` (“never”).
pub fn parse_timestamp(text: &str) -> Result<Option<OffsetDateTime>, time::error::Parse> {
    let t = OffsetDateTime::parse(text.trim(), &Rfc3339)?.to_offset(UtcOffset::UTC);
    if t == time::macros::datetime!(0001-01-01 00:00 UTC) {
        Ok(None)
    } else {
        Ok(Some(t))
    }
}

/// A node that could not be parsed and was left out of a [`NodeList`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedNode {
    /// Position in headscale's list (0-based).
    pub index: usize,
    /// The `id` as written, if any.
    pub id: Option<String>,
    /// The `givenName` or `name`, if any.
    pub name: Option<String>,
    /// Why it was skipped.
    pub reason: String,
}

impl fmt::Display for SkippedNode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "node #{}", self.index)?;
        if let Some(id) = &self.id {
            write!(f, " (id {id})")?;
        }
        if let Some(name) = &self.name {
            write!(f, " {name:?}")?;
        }
        write!(f, ": {}", self.reason)
    }
}

/// A parsed node list: the nodes, and those that had to be skipped.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeList {
    /// The nodes that parsed, in headscale's order.
    pub nodes: Vec<Node>,
    /// The nodes that did not parse.
    pub skipped: Vec<SkippedNode>,
}

/// Parses a list body, `{"nodes":[...]}` (0.23+) or `{"machines":[...]}`
/// (0.22). The list key is required (headscale always emits it, as `[]`
/// when empty), so an unrelated `{}` answer is not taken for “no nodes”;
/// `null` is an empty list.
///
/// A node that cannot be parsed is left out and reported in
/// [`NodeList::skipped`]: an item that is not an object, a field of the
/// wrong type (e.g. `"online":"yes"`), a missing or invalid `id`, an
/// `expiry` that is not a timestamp. An unparsable IP address or `lastSeen`
/// is only left out of the node. Invalid JSON, or a body without the list,
/// fails as a whole.
pub fn parse_node_list(body: &[u8]) -> Result<NodeList, HeadscaleError> {
    // Checked once here, so that serde_json does not check each string again.
    let text = std::str::from_utf8(body)
        .map_err(|e| HeadscaleError::decode(format_args!("not UTF-8: {e}"), body))?;
    // A derived struct would also accept an array (its fields by position).
    if let Some(kind) = Kind::of(text.trim_start()).filter(|k| *k != Kind::Object) {
        return Err(HeadscaleError::decode(
            format_args!("expected a JSON object, found {kind}"),
            body,
        ));
    }
    let parsed: ListBody<'_> =
        serde_json::from_str(text).map_err(|e| HeadscaleError::decode(e, body))?;
    let items = match parsed.nodes {
        Some(Some(items)) => items,
        Some(None) => return Ok(NodeList::default()),
        None => {
            return Err(HeadscaleError::decode(
                "no \"nodes\" or \"machines\" list",
                body,
            ))
        }
    };
    let mut list = NodeList {
        nodes: Vec::with_capacity(items.len()),
        skipped: Vec::new(),
    };
    for (index, item) in items.into_iter().enumerate() {
        match parse_node(item) {
            Ok(node) => list.nodes.push(node),
            Err(reason) => {
                let (id, name) = identity(item);
                list.skipped.push(SkippedNode {
                    index,
                    id,
                    name,
                    reason,
                });
            }
        }
    }
    // Kept until the answer changes: without room for the skipped ones.
    list.nodes.shrink_to_fit();
    Ok(list)
}

/// A list body: `nodes` (0.23+) or `machines` (0.22), the items not yet
/// read. `None`: no list key; `Some(None)`: `null`.
#[derive(Deserialize)]
struct ListBody<'a> {
    #[serde(borrow, alias = "machines", default, deserialize_with = "present")]
    nodes: Option<Option<Vec<&'a RawValue>>>,
}

/// A field that is there (`null` included): `Some`; serde's `default` gives
/// `None` when it is missing.
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

/// A string borrowed from the body (owned only when it holds escapes).
/// A newtype, because serde borrows a `Cow` only as a struct's field, not
/// inside an `Option` or a `Vec`.
#[derive(Deserialize)]
struct Text<'a>(#[serde(borrow)] Cow<'a, str>);

impl Text<'_> {
    fn as_str(&self) -> &str {
        &self.0
    }
}

/// The fields of a node (0.22: machine) that tart-sync reads; any field may
/// be missing or `null`. The same names in every generation but the tags:
/// `tags` since 0.28, `validTags` and `forcedTags` before.
#[derive(Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct WireNode<'a> {
    /// A string (protojson's 64-bit integers) or a number.
    #[serde(borrow)]
    id: Option<&'a RawValue>,
    #[serde(borrow)]
    name: Option<Text<'a>>,
    #[serde(borrow)]
    given_name: Option<Text<'a>>,
    #[serde(borrow)]
    user: Option<WireUser<'a>>,
    #[serde(borrow)]
    ip_addresses: Option<Vec<Text<'a>>>,
    online: Option<bool>,
    #[serde(borrow)]
    last_seen: Option<Text<'a>>,
    #[serde(borrow)]
    expiry: Option<Text<'a>>,
    #[serde(borrow)]
    tags: Option<Vec<Text<'a>>>,
    #[serde(borrow)]
    valid_tags: Option<Vec<Text<'a>>>,
    #[serde(borrow)]
    forced_tags: Option<Vec<Text<'a>>>,
}

/// The node's `user`: only its name is read.
#[derive(Default, Deserialize)]
#[serde(default)]
struct WireUser<'a> {
    #[serde(borrow)]
    name: Option<Text<'a>>,
}

/// What a skipped node is shown with: its id and names, whatever their
/// type, so that they are found even in a node that did not parse.
#[derive(Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct WireIdentity<'a> {
    #[serde(borrow)]
    id: Option<&'a RawValue>,
    #[serde(borrow)]
    given_name: Option<&'a RawValue>,
    #[serde(borrow)]
    name: Option<&'a RawValue>,
}

/// The JSON type of a value, for messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Object,
    Array,
    String,
    Boolean,
    Null,
    Number,
}

impl Kind {
    /// The type of the JSON value `json` (no whitespace before it), from
    /// its first character; `None` when that starts no JSON value.
    fn of(json: &str) -> Option<Kind> {
        Some(match json.as_bytes().first()? {
            b'{' => Kind::Object,
            b'[' => Kind::Array,
            b'"' => Kind::String,
            b't' | b'f' => Kind::Boolean,
            b'n' => Kind::Null,
            b'-' | b'0'..=b'9' => Kind::Number,
            _ => return None,
        })
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Kind::Object => "an object",
            Kind::Array => "an array",
            Kind::String => "a string",
            Kind::Boolean => "a boolean",
            Kind::Null => "null",
            Kind::Number => "a number",
        })
    }
}

/// One item of the list as a node, or why it cannot be one.
fn parse_node(item: &RawValue) -> Result<Node, String> {
    let json = item.get();
    match Kind::of(json) {
        Some(Kind::Object) => {}
        Some(kind) => return Err(format!("expected an object, found {kind}")),
        None => return Err("expected an object".to_owned()),
    }
    match serde_json::from_str::<WireNode<'_>>(json) {
        Ok(wire) => wire.to_node(),
        Err(e) => Err(type_error(json, e)),
    }
}

/// Why `json`, an object, does not fit [`WireNode`] (`e`), with the name of
/// the field. Only a node that failed is read again to find that name, so
/// the parse of every other node does not pay for tracking it.
fn type_error(json: &str, e: serde_json::Error) -> String {
    let mut deserializer = serde_json::Deserializer::from_str(json);
    let (path, e) = match serde_path_to_error::deserialize::<_, WireNode<'_>>(&mut deserializer) {
        Err(tracked) => (tracked.path().to_string(), tracked.into_inner()),
        Ok(_) => (String::new(), e),
    };
    // The position is within the node: not worth showing.
    let message = e.to_string();
    let position = format!(" at line {} column {}", e.line(), e.column());
    let message = message.strip_suffix(&position).unwrap_or(&message);
    match path.as_str() {
        "" | "." => message.to_owned(),
        path => format!("{path}: {message}"),
    }
}

impl WireNode<'_> {
    /// The node, or why it cannot be one.
    fn to_node(&self) -> Result<Node, String> {
        let id = node_id(self.id)?;
        let expiry = timestamp(self.expiry.as_ref()).map_err(|e| format!("expiry: {e}"))?;
        let last_seen = timestamp(self.last_seen.as_ref()).unwrap_or_else(|e| {
            tracing::debug!(node = id, error = %e, "ignoring unparsable lastSeen");
            None
        });
        let text = |field: &Option<Text<'_>>| field.as_ref().map_or("", Text::as_str).to_owned();
        let ip_addresses = self
            .ip_addresses
            .iter()
            .flatten()
            .filter_map(|address| ip_address(id, address.as_str()))
            .collect();
        let tags = match &self.tags {
            Some(tags) => unique(&[tags]),
            None => unique(&[
                self.valid_tags.as_deref().unwrap_or_default(),
                self.forced_tags.as_deref().unwrap_or_default(),
            ]),
        };
        Ok(Node {
            id,
            name: text(&self.name),
            given_name: text(&self.given_name),
            user: self
                .user
                .as_ref()
                .map_or_else(String::new, |user| text(&user.name)),
            ip_addresses,
            online: self.online.unwrap_or(false),
            last_seen,
            expiry,
            tags,
        })
    }
}

/// The node id: a string (protojson) or a number, of a `u64`.
fn node_id(id: Option<&RawValue>) -> Result<u64, String> {
    let Some(id) = id else {
        return Err("missing id".to_owned());
    };
    let json = id.get();
    match Kind::of(json) {
        Some(Kind::String) => {
            let digits = json.get(1..json.len().saturating_sub(1)).unwrap_or("");
            digits
                .trim()
                .parse()
                .map_err(|_| format!("invalid id {:?}", excerpt(digits)))
        }
        Some(Kind::Number) => json.parse().map_err(|_| format!("invalid id {json}")),
        Some(kind) => Err(format!("invalid id ({kind})")),
        None => Err("invalid id".to_owned()),
    }
}

/// A timestamp field: missing, `null` or `""` → `None`.
fn timestamp(field: Option<&Text<'_>>) -> Result<Option<OffsetDateTime>, String> {
    match field.map(Text::as_str) {
        None | Some("") => Ok(None),
        Some(text) => parse_timestamp(text)
            .map_err(|e| format!("{:?} is not a timestamp: {e}", excerpt(text))),
    }
}

/// An entry of `ipAddresses` (a prefix length is ignored); `None`, logged,
/// when it is not an address.
fn ip_address(node: u64, text: &str) -> Option<IpAddr> {
    let address = text.split_once('/').map_or(text, |(address, _)| address);
    let parsed = address.trim().parse().ok();
    if parsed.is_none() {
        tracing::debug!(node, address = %excerpt(text), "skipping unparsable IP address");
    }
    parsed
}

/// The strings of `lists`, each once, in the order first seen. Linear: a
/// node with 100,000 tags is read as fast as any other.
fn unique(lists: &[&[Text<'_>]]) -> Vec<String> {
    /// Up to this many strings, each is compared with those kept (at most 28
    /// comparisons): cheaper than building a set for a node's usual 1 or 2.
    const FEW: usize = 8;
    let count = lists
        .iter()
        .fold(0, |n: usize, list| n.saturating_add(list.len()));
    let mut kept: Vec<String> = Vec::with_capacity(count.min(FEW));
    let all = lists.iter().flat_map(|list| list.iter()).map(Text::as_str);
    if count <= FEW {
        for text in all {
            if !kept.iter().any(|k| k == text) {
                kept.push(text.to_owned());
            }
        }
    } else {
        let mut seen = HashSet::new();
        kept.extend(all.filter(|text| seen.insert(*text)).map(str::to_owned));
    }
    kept
}

/// The `id` and the `givenName` (else `name`) of an item, as written, for
/// [`SkippedNode`].
fn identity(item: &RawValue) -> (Option<String>, Option<String>) {
    // An array would be read as a struct too, its items taken as fields.
    let json = item.get();
    let wire = match Kind::of(json) {
        Some(Kind::Object) => serde_json::from_str::<WireIdentity<'_>>(json).ok(),
        _ => None,
    };
    let Some(wire) = wire else {
        return (None, None);
    };
    let shown = |field: Option<&RawValue>| {
        let json = field?.get();
        match Kind::of(json)? {
            Kind::Number => Some(json.to_owned()),
            Kind::String => serde_json::from_str::<Text<'_>>(json)
                .ok()
                .map(|text| excerpt(text.as_str()))
                .filter(|text| !text.is_empty()),
            _ => None,
        }
    };
    (
        shown(wire.id),
        shown(wire.given_name).or_else(|| shown(wire.name)),
    )
}

#[cfg(test)]
mod tests;
