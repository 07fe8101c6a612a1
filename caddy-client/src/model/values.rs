//! Small value types shared by the model: durations and status codes.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::lossless::leaf_from_json;

/// A Caddy duration as it appears in JSON: integer nanoseconds (what
/// `caddy adapt` writes) or a Go-style duration string such as `"10s"`,
/// `"1m30s"` or `"2d"` (also accepted by Caddy). Kept in the form it was read
/// so it writes back exactly.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash)]
#[serde(untagged)]
pub enum CaddyDuration {
    /// Integer nanoseconds, e.g. `10000000000` for ten seconds. May be
    /// negative (`flush_interval: -1` means "flush immediately").
    Nanos(i64),
    /// A duration string, e.g. `"10s"`.
    Text(String),
}

impl Default for CaddyDuration {
    fn default() -> Self {
        CaddyDuration::Nanos(0)
    }
}

impl CaddyDuration {
    /// A duration of `secs` seconds, as integer nanoseconds.
    pub fn from_secs(secs: u64) -> Self {
        Self::from_std(Duration::from_secs(secs))
    }

    /// A duration from a [`Duration`], as integer nanoseconds (saturating at
    /// `i64::MAX`).
    pub fn from_std(d: Duration) -> Self {
        CaddyDuration::Nanos(i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
    }

    /// The duration in nanoseconds (negative values allowed), or `None` if
    /// the string form does not parse or overflows.
    pub fn as_nanos(&self) -> Option<i64> {
        match self {
            CaddyDuration::Nanos(n) => Some(*n),
            CaddyDuration::Text(s) => parse_go_duration(s).and_then(|n| i64::try_from(n).ok()),
        }
    }

    /// The duration as a [`Duration`], or `None` if it is negative or does
    /// not parse.
    pub fn to_std(&self) -> Option<Duration> {
        let n = self.as_nanos()?;
        u64::try_from(n).ok().map(Duration::from_nanos)
    }
}

impl From<Duration> for CaddyDuration {
    fn from(d: Duration) -> Self {
        Self::from_std(d)
    }
}

/// Parses a Go `time.ParseDuration` string, plus Caddy's `d` (day) unit, into
/// nanoseconds.
fn parse_go_duration(input: &str) -> Option<i128> {
    let (neg, mut s) = match input.as_bytes().first() {
        Some(b'-') => (true, &input[1..]),
        Some(b'+') => (false, &input[1..]),
        _ => (false, input),
    };
    if s == "0" {
        return Some(0);
    }
    if s.is_empty() {
        return None;
    }
    const UNITS: [(&str, i128); 9] = [
        ("ns", 1),
        ("us", 1_000),
        ("\u{b5}s", 1_000),
        ("\u{3bc}s", 1_000),
        ("ms", 1_000_000),
        ("s", 1_000_000_000),
        ("m", 60_000_000_000),
        ("h", 3_600_000_000_000),
        ("d", 86_400_000_000_000),
    ];
    let mut total: i128 = 0;
    while !s.is_empty() {
        let int_len = s.bytes().take_while(u8::is_ascii_digit).count();
        let int_part: i128 = if int_len == 0 {
            0
        } else {
            s[..int_len].parse().ok()?
        };
        s = &s[int_len..];
        let mut frac = "";
        if let Some(rest) = s.strip_prefix('.') {
            let frac_len = rest.bytes().take_while(u8::is_ascii_digit).count();
            frac = &rest[..frac_len];
            s = &rest[frac_len..];
        }
        if int_len == 0 && frac.is_empty() {
            return None;
        }
        // "ms" must be tried before "m", so pick the longest matching unit.
        let (unit, scale) = UNITS
            .iter()
            .filter(|(u, _)| s.starts_with(u))
            .max_by_key(|(u, _)| u.len())?;
        s = &s[unit.len()..];
        let mut value = int_part.checked_mul(*scale)?;
        if !frac.is_empty() {
            let digits = &frac[..frac.len().min(30)];
            let numerator: i128 = digits.parse().ok()?;
            let denominator = 10i128.checked_pow(u32::try_from(digits.len()).ok()?)?;
            value = value.checked_add(numerator.checked_mul(*scale)? / denominator)?;
        }
        total = total.checked_add(value)?;
    }
    Some(if neg { -total } else { total })
}

/// An HTTP status code as Caddy accepts it in JSON: a number, or a string that
/// may hold a placeholder (e.g. `"{http.error.status_code}"`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash)]
#[serde(untagged)]
pub enum StatusCode {
    /// A numeric status code, e.g. `200`.
    Code(u16),
    /// A string status code or placeholder.
    Text(String),
}

impl Default for StatusCode {
    fn default() -> Self {
        StatusCode::Code(200)
    }
}

impl StatusCode {
    /// The numeric code, if it is a number or a string holding a number.
    pub fn as_u16(&self) -> Option<u16> {
        match self {
            StatusCode::Code(c) => Some(*c),
            StatusCode::Text(s) => s.parse().ok(),
        }
    }
}

impl From<u16> for StatusCode {
    fn from(code: u16) -> Self {
        StatusCode::Code(code)
    }
}

leaf_from_json!(CaddyDuration, StatusCode);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        let d = |s: &str| CaddyDuration::Text(s.into()).as_nanos();
        assert_eq!(d("10s"), Some(10_000_000_000));
        assert_eq!(d("250ms"), Some(250_000_000));
        assert_eq!(d("1m30s"), Some(90_000_000_000));
        assert_eq!(d("1.5h"), Some(5_400_000_000_000));
        assert_eq!(d("2d"), Some(172_800_000_000_000));
        assert_eq!(d("-1s"), Some(-1_000_000_000));
        assert_eq!(d("0"), Some(0));
        assert_eq!(d("3\u{b5}s"), Some(3_000));
        assert_eq!(d(""), None);
        assert_eq!(d("10"), None);
        assert_eq!(d("s"), None);
        assert_eq!(d("10x"), None);
        assert_eq!(CaddyDuration::Nanos(-1).to_std(), None);
        assert_eq!(
            CaddyDuration::from_secs(5).to_std(),
            Some(Duration::from_secs(5))
        );
    }
}
