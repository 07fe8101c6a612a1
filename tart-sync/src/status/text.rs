//! Time and text formatting shared by the page and the readiness reason.

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// RFC 3339 in whole seconds: `2026-07-10T08:15:02Z`.
pub(crate) fn iso(t: OffsetDateTime) -> String {
    t.replace_nanosecond(0)
        .unwrap_or(t)
        .format(&Rfc3339)
        .unwrap_or_default()
}

/// `42s`, `5m`, `3h 12m`, `2d 4h`.
pub(crate) fn short_duration(secs: u64) -> String {
    match secs {
        0..60 => format!("{secs}s"),
        60..3600 => format!("{}m", secs / 60),
        3600..86400 => match (secs / 3600, secs % 3600 / 60) {
            (h, 0) => format!("{h}h"),
            (h, m) => format!("{h}h {m}m"),
        },
        _ => match (secs / 86400, secs % 86400 / 3600) {
            (d, 0) => format!("{d}d"),
            (d, h) => format!("{d}d {h}h"),
        },
    }
}

/// `3m ago`, `in 40s` or `just now`, relative to `now`.
pub(crate) fn relative(t: OffsetDateTime, now: OffsetDateTime) -> String {
    let secs = (now - t).whole_seconds();
    let abs = short_duration(secs.unsigned_abs());
    match secs {
        0 => "just now".into(),
        1.. => format!("{abs} ago"),
        _ => format!("in {abs}"),
    }
}

/// `s` on one line (control characters become spaces), cut to about `max`
/// characters.
pub(crate) fn one_line(s: &str, max: usize) -> String {
    let mut out: String = s
        .chars()
        .take(max)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if s.chars().nth(max).is_some() {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;

    #[test]
    fn relative_times() {
        let now = datetime!(2026-07-10 08:15:00 UTC);
        assert_eq!(relative(now - time::Duration::minutes(3), now), "3m ago");
        assert_eq!(relative(now + time::Duration::seconds(40), now), "in 40s");
        assert_eq!(relative(now, now), "just now");
        assert_eq!(
            relative(now - time::Duration::minutes(192), now),
            "3h 12m ago"
        );
        assert_eq!(relative(now - time::Duration::days(2), now), "2d ago");
        assert_eq!(
            iso(datetime!(2026-07-10 08:15:02.123 UTC)),
            "2026-07-10T08:15:02Z"
        );
    }

    #[test]
    fn one_line_flattens_and_cuts() {
        assert_eq!(one_line("a\nb\tc", 10), "a b c");
        assert_eq!(one_line("abcdef", 3), "abc…");
        assert_eq!(one_line("abc", 3), "abc");
    }
}
