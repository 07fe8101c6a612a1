//! The DNS responder's block (dns mode only): where it listens, names
//! answered, query rate, last query, and queries by outcome.

use maud::{html, Markup};
use time::OffsetDateTime;

use super::{badge, error_text, maybe_when};
use crate::status::report::DnsReport;

/// The block, for `routes.resolve = "dns"`.
pub(super) fn responder(d: &DnsReport, now: OffsetDateTime) -> Markup {
    let st = &d.status;
    let listening = match (&st.listen, &st.error) {
        (_, Some(e)) => html! { (badge("bad", "not listening")) " " (error_text(Some(e))) },
        (Some(addr), None) => html! { (badge("ok", "listening")) " " code { "udp/" (addr) } },
        (None, None) => badge("warn", "starting"),
    };
    let count = |label: &str| {
        st.stats
            .queries
            .iter()
            .find(|(l, _)| l == label)
            .map_or(0, |(_, n)| *n)
    };
    html! {
        section id="dns" data-resolve=(d.resolve) {
            h2 { "DNS responder" }
            p.muted { "routes.resolve = dns: Caddy looks each TART up here; online/offline changes and moves are DNS answers, not config writes." }
            table.kv { tbody {
                tr { th { "Zone" } td { code { (st.zone) } } }
                tr { th { "Listening" } td { (listening) } }
                tr { th { "Names answered" } td { @match st.names { Some(n) => (n), None => span.muted { "none yet (before the first poll)" } } } }
                tr { th { "Query rate" } td { (format!("{:.1}", st.stats.rate)) " /s" } }
                tr { th { "Last query" } td { (maybe_when(st.stats.last_query, now, "never")) } }
                tr { th { "Queries" } td {
                    (count("answered")) " answered · " (count("nodata")) " no data · "
                    (count("nxdomain")) " unknown name · " (count("refused")) " refused (outside the zone) · "
                    (count("limited")) " rate-limited · " (count("invalid") + count("dropped")) " invalid · "
                    (count("not_ready")) " before the first poll"
                } }
            } }
        }
    }
}
