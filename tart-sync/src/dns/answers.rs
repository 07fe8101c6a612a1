//! The pure part of the responder: the table of answers (name → address or
//! offline) and the reply to one query. No I/O; tested alone.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use hickory_proto::op::{Edns, Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};

use crate::desired::{Target, Targets};

/// The address an offline TART's name resolves to: the IPv4 limited
/// broadcast address. A TCP connect to it fails at once on Linux
/// (`ENETUNREACH`, no packet sent), so Caddy's dial fails without a timeout,
/// and the owned route's error handler recognises this address and answers
/// the offline page. No real TART can have it.
pub const OFFLINE_ADDRESS: Ipv4Addr = Ipv4Addr::BROADCAST;

/// Largest reply the responder ever sends (one question, at most one
/// record): far below the 512 bytes of plain DNS over UDP, so a reply is
/// never truncated and never larger than a few times its query.
pub const MAX_REPLY: usize = 512;

/// What a name in the zone resolves to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// Online (or in its grace): the TART's tailnet address.
    Online(IpAddr),
    /// Offline: [`OFFLINE_ADDRESS`].
    Offline,
}

impl Answer {
    /// The address answered: the TART's, or [`OFFLINE_ADDRESS`].
    pub fn address(self) -> IpAddr {
        match self {
            Answer::Online(ip) => ip,
            Answer::Offline => IpAddr::V4(OFFLINE_ADDRESS),
        }
    }
}

/// The responder's answers: first label (lower case) → [`Answer`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Table {
    names: BTreeMap<String, Answer>,
}

impl Table {
    /// The answers for a desired table: a proxied target answers its dial
    /// address's IP, an offline one [`Answer::Offline`]. A dial address
    /// without an IP (MagicDNS names, refused by the settings in dns mode)
    /// gets no answer.
    pub fn from_targets(targets: &Targets) -> Table {
        let names = targets
            .iter()
            .filter_map(|(name, target)| {
                let answer = match target {
                    Target::Dial(dial) => Answer::Online(dial.parse::<SocketAddr>().ok()?.ip()),
                    Target::Offline => Answer::Offline,
                };
                Some((name.clone(), answer))
            })
            .collect();
        Table { names }
    }

    /// The answer for a name (its first label, lower case).
    pub fn get(&self, name: &str) -> Option<Answer> {
        self.names.get(name).copied()
    }

    /// Names with an answer.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// True when no name has an answer.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// Every name and its answer, sorted by name.
    pub fn iter(&self) -> impl Iterator<Item = (&str, Answer)> {
        self.names.iter().map(|(n, a)| (n.as_str(), *a))
    }
}

/// How the responder treated one query (the `outcome` label of
/// `tart_sync_dns_queries_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// An address was answered.
    Answered,
    /// A routed name, but no record of the type asked (e.g. AAAA of an IPv4 TART).
    NoData,
    /// A name in the zone that is not routed.
    NxDomain,
    /// A name outside the zone, or not class IN: never resolved for anyone.
    Refused,
    /// Not a standard query, or not exactly one question.
    Invalid,
    /// Not a DNS query at all (unreadable, or a response): dropped unanswered.
    Dropped,
    /// Over the source's rate limit: dropped unanswered.
    Limited,
    /// Before the first desired state: SERVFAIL, so Caddy falls back at once.
    NotReady,
}

impl Outcome {
    /// Every outcome, in a fixed order.
    pub const ALL: [Outcome; 8] = [
        Outcome::Answered,
        Outcome::NoData,
        Outcome::NxDomain,
        Outcome::Refused,
        Outcome::Invalid,
        Outcome::Dropped,
        Outcome::Limited,
        Outcome::NotReady,
    ];

    /// The metric label: `answered`, `nodata`, `nxdomain`, `refused`,
    /// `invalid`, `dropped`, `limited` or `not_ready`.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Answered => "answered",
            Outcome::NoData => "nodata",
            Outcome::NxDomain => "nxdomain",
            Outcome::Refused => "refused",
            Outcome::Invalid => "invalid",
            Outcome::Dropped => "dropped",
            Outcome::Limited => "limited",
            Outcome::NotReady => "not_ready",
        }
    }

    /// Position in [`Outcome::ALL`].
    pub fn index(self) -> usize {
        Outcome::ALL.iter().position(|o| *o == self).unwrap_or(0)
    }
}

/// The zone and TTL the replies are for.
#[derive(Debug, Clone)]
pub struct Zone {
    name: Name,
    ttl: u32,
}

impl Zone {
    /// The zone `zone` (a validated FQDN like `tart-sync.internal.`), answers
    /// valid for `ttl` seconds. `None` when hickory cannot read the name.
    pub fn new(zone: &str, ttl: u32) -> Option<Zone> {
        let name = Name::from_ascii(zone).ok()?.to_lowercase();
        Some(Zone { name, ttl })
    }
}

/// The reply to one query (`None`: send nothing) and how it was treated.
/// `table` is `None` before the first desired state.
pub fn reply(query: &[u8], zone: &Zone, table: Option<&Table>) -> (Outcome, Option<Vec<u8>>) {
    let Ok(request) = Message::from_vec(query) else {
        return (Outcome::Dropped, None);
    };
    if request.metadata.message_type != MessageType::Query {
        return (Outcome::Dropped, None);
    }
    let mut response = Message::response(request.metadata.id, request.metadata.op_code);
    response.metadata.recursion_desired = request.metadata.recursion_desired;
    response.metadata.recursion_available = false;
    if request.edns.is_some() {
        let mut edns = Edns::new();
        edns.set_max_payload(MAX_REPLY as u16);
        response.edns = Some(edns);
    }
    let (outcome, code) = match (request.metadata.op_code, request.queries.as_slice()) {
        (OpCode::Query, [question]) => {
            response.add_query(question.clone());
            answer(question, zone, table, &mut response)
        }
        (OpCode::Query, _) => (Outcome::Invalid, ResponseCode::FormErr),
        _ => (Outcome::Invalid, ResponseCode::NotImp),
    };
    response.metadata.response_code = code;
    match response.to_vec() {
        Ok(bytes) if bytes.len() <= MAX_REPLY => (outcome, Some(bytes)),
        _ => (Outcome::Dropped, None),
    }
}

/// Answers one question into `response`.
fn answer(
    question: &hickory_proto::op::Query,
    zone: &Zone,
    table: Option<&Table>,
    response: &mut Message,
) -> (Outcome, ResponseCode) {
    let name = question.name().to_lowercase();
    if question.query_class() != DNSClass::IN || !zone.name.zone_of(&name) {
        return (Outcome::Refused, ResponseCode::Refused);
    }
    let Some(table) = table else {
        return (Outcome::NotReady, ResponseCode::ServFail);
    };
    // Authoritative: Go's resolver takes an empty answer without it for a lame referral.
    response.metadata.authoritative = true;
    if name.num_labels() == zone.name.num_labels() {
        // The zone's apex: no address records.
        return (Outcome::NoData, ResponseCode::NoError);
    }
    let label = match name.iter().next() {
        Some(label) if name.num_labels() == zone.name.num_labels().saturating_add(1) => {
            String::from_utf8_lossy(label).into_owned()
        }
        _ => return (Outcome::NxDomain, ResponseCode::NXDomain),
    };
    let Some(found) = table.get(&label) else {
        return (Outcome::NxDomain, ResponseCode::NXDomain);
    };
    let rdata = match (question.query_type(), found.address()) {
        (RecordType::A, IpAddr::V4(ip)) => RData::A(A(ip)),
        (RecordType::AAAA, IpAddr::V6(ip)) => RData::AAAA(AAAA(ip)),
        _ => return (Outcome::NoData, ResponseCode::NoError),
    };
    response.add_answer(Record::from_rdata(question.name().clone(), zone.ttl, rdata));
    (Outcome::Answered, ResponseCode::NoError)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::Query;

    fn zone() -> Zone {
        Zone::new("tart-sync.internal.", 1).unwrap()
    }

    fn table() -> Table {
        let targets: Targets = [
            ("tart-a", Target::Dial("100.64.0.1:80".into())),
            ("tart-b", Target::Offline),
            ("tart-6", Target::Dial("[fd7a:115c::1]:80".into())),
        ]
        .into_iter()
        .map(|(n, t)| (n.to_string(), t))
        .collect();
        Table::from_targets(&targets)
    }

    fn ask(name: &str, kind: RecordType) -> (Outcome, Option<Message>) {
        let mut q = Message::query();
        q.metadata.recursion_desired = true;
        q.add_query(Query::query(Name::from_ascii(name).unwrap(), kind));
        let (outcome, bytes) = reply(&q.to_vec().unwrap(), &zone(), Some(&table()));
        (outcome, bytes.map(|b| Message::from_vec(&b).unwrap()))
    }

    fn addresses(m: &Message) -> Vec<IpAddr> {
        m.answers
            .iter()
            .filter_map(|r| match &r.data {
                RData::A(a) => Some(IpAddr::V4(a.0)),
                RData::AAAA(a) => Some(IpAddr::V6(a.0)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_routed_name_answers_its_address_and_an_offline_one_the_sentinel() {
        let (outcome, m) = ask("tart-a.tart-sync.internal.", RecordType::A);
        let m = m.unwrap();
        assert_eq!(outcome, Outcome::Answered);
        assert!(m.metadata.authoritative && !m.metadata.recursion_available);
        assert_eq!(addresses(&m), vec!["100.64.0.1".parse::<IpAddr>().unwrap()]);
        // Any case.
        let (_, m) = ask("TART-A.Tart-Sync.Internal.", RecordType::A);
        assert_eq!(addresses(&m.unwrap()).len(), 1);
        let (outcome, m) = ask("tart-b.tart-sync.internal.", RecordType::A);
        assert_eq!(outcome, Outcome::Answered);
        assert_eq!(addresses(&m.unwrap()), vec![IpAddr::V4(OFFLINE_ADDRESS)]);
        let (outcome, m) = ask("tart-6.tart-sync.internal.", RecordType::AAAA);
        assert_eq!(outcome, Outcome::Answered);
        assert_eq!(addresses(&m.unwrap()).len(), 1);
    }

    #[test]
    fn other_types_are_nodata_and_unrouted_names_nxdomain() {
        for (name, kind) in [
            ("tart-a.tart-sync.internal.", RecordType::AAAA),
            ("tart-b.tart-sync.internal.", RecordType::AAAA),
            ("tart-6.tart-sync.internal.", RecordType::A),
            ("tart-a.tart-sync.internal.", RecordType::TXT),
            ("tart-sync.internal.", RecordType::A),
        ] {
            let (outcome, m) = ask(name, kind);
            let m = m.unwrap();
            assert_eq!(outcome, Outcome::NoData, "{name} {kind}");
            assert_eq!(m.metadata.response_code, ResponseCode::NoError);
            assert!(m.answers.is_empty() && m.metadata.authoritative);
        }
        for name in ["tart-z.tart-sync.internal.", "x.tart-a.tart-sync.internal."] {
            let (outcome, m) = ask(name, RecordType::A);
            assert_eq!(outcome, Outcome::NxDomain, "{name}");
            let m = m.unwrap();
            assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
            assert!(m.answers.is_empty());
        }
    }

    #[test]
    fn names_outside_the_zone_are_refused_never_resolved() {
        for name in [
            "example.com.",
            "tart-a.",
            "internal.",
            "tart-a.tart-sync.internal.example.com.",
            "tart-sync-internal.",
            ".",
        ] {
            let (outcome, m) = ask(name, RecordType::A);
            let m = m.unwrap();
            assert_eq!(outcome, Outcome::Refused, "{name}");
            assert_eq!(m.metadata.response_code, ResponseCode::Refused);
            assert!(m.answers.is_empty() && m.authorities.is_empty() && m.additionals.is_empty());
        }
    }

    #[test]
    fn garbage_and_responses_get_nothing_and_replies_stay_small() {
        assert_eq!(
            reply(b"", &zone(), Some(&table())),
            (Outcome::Dropped, None)
        );
        assert_eq!(
            reply(&[0xff; 40], &zone(), Some(&table())).1,
            None,
            "unreadable"
        );
        let mut response = Message::response(7, OpCode::Query);
        response.add_query(Query::query(
            Name::from_ascii("tart-a.tart-sync.internal.").unwrap(),
            RecordType::A,
        ));
        let bytes = response.to_vec().unwrap();
        assert_eq!(
            reply(&bytes, &zone(), Some(&table())),
            (Outcome::Dropped, None)
        );
        // Two questions: FORMERR.
        let mut two = Message::query();
        for n in ["tart-a.tart-sync.internal.", "tart-b.tart-sync.internal."] {
            two.add_query(Query::query(Name::from_ascii(n).unwrap(), RecordType::A));
        }
        let (outcome, m) = reply(&two.to_vec().unwrap(), &zone(), Some(&table()));
        assert_eq!(outcome, Outcome::Invalid);
        let m = Message::from_vec(&m.unwrap()).unwrap();
        assert_eq!(m.metadata.response_code, ResponseCode::FormErr);
        // The longest name there can be still answers within MAX_REPLY.
        let long = format!("{}.tart-sync.internal.", vec!["a".repeat(60); 3].join("."));
        let mut q = Message::query();
        q.add_query(Query::query(
            Name::from_ascii(&long).unwrap(),
            RecordType::A,
        ));
        let (_, bytes) = reply(&q.to_vec().unwrap(), &zone(), Some(&table()));
        assert!(bytes.unwrap().len() <= MAX_REPLY);
    }

    proptest::proptest! {
        /// Any datagram: no panic; a reply only to a query, never larger
        /// than MAX_REPLY, never with more than one record.
        #[test]
        fn any_datagram_gets_at_most_one_small_reply(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..600)) {
            let (_, reply) = reply(&bytes, &zone(), Some(&table()));
            if let Some(r) = reply {
                proptest::prop_assert!(r.len() <= MAX_REPLY);
                let m = Message::from_vec(&r).unwrap();
                proptest::prop_assert!(m.answers.len() <= 1);
                proptest::prop_assert!(m.authorities.is_empty());
                proptest::prop_assert_eq!(m.metadata.message_type, MessageType::Response);
            }
        }

        /// Any name outside the zone is REFUSED with nothing in it.
        #[test]
        fn any_name_outside_the_zone_is_refused(labels in proptest::collection::vec("[a-z0-9]([a-z0-9-]{0,18}[a-z0-9])?", 1..5)) {
            let name = format!("{}.", labels.join("."));
            proptest::prop_assume!(!name.ends_with("tart-sync.internal."));
            let (outcome, m) = ask(&name, RecordType::A);
            proptest::prop_assert_eq!(outcome, Outcome::Refused);
            proptest::prop_assert!(m.unwrap().answers.is_empty());
        }
    }

    #[test]
    fn before_the_first_desired_state_zone_names_are_servfail() {
        let mut q = Message::query();
        q.add_query(Query::query(
            Name::from_ascii("tart-a.tart-sync.internal.").unwrap(),
            RecordType::A,
        ));
        let (outcome, bytes) = reply(&q.to_vec().unwrap(), &zone(), None);
        assert_eq!(outcome, Outcome::NotReady);
        let m = Message::from_vec(&bytes.unwrap()).unwrap();
        assert_eq!(m.metadata.response_code, ResponseCode::ServFail);
        let mut q = Message::query();
        q.add_query(Query::query(
            Name::from_ascii("example.com.").unwrap(),
            RecordType::A,
        ));
        assert_eq!(
            reply(&q.to_vec().unwrap(), &zone(), None).0,
            Outcome::Refused
        );
    }
}
