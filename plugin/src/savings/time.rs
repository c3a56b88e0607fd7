//! Timestamps of the savings ledger: unix seconds in memory, RFC 3339 UTC with second precision
//! (`2026-11-27T07:10:14Z`) on the wire, and a tolerant ISO-8601 reader for imported files
//! (`Z` or an offset, fractional seconds, naive times taken as UTC, as upstream reads them).

use crate::budget::{days_from_civil, format_rfc3339};

/// Reads an ISO-8601 date-time: `YYYY-MM-DD[T ]HH:MM[:SS[.fff]][Z|±HH[:]MM]`. Naive → UTC.
/// `None` for anything else, or a time before 1970.
pub fn parse_iso8601(text: &str) -> Option<u64> {
    let t = text.trim().as_bytes();
    let num = |from: usize, len: usize| -> Option<i64> {
        let digits = t.get(from..from + len)?;
        digits.iter().try_fold(0i64, |n, d| {
            d.is_ascii_digit().then(|| n * 10 + i64::from(d - b'0'))
        })
    };
    let year = num(0, 4)?;
    let month = num(5, 2)?;
    let day = num(8, 2)?;
    if t.get(4) != Some(&b'-')
        || t.get(7) != Some(&b'-')
        || !matches!(t.get(10), Some(b'T' | b't' | b' '))
    {
        return None;
    }
    let hour = num(11, 2)?;
    let minute = num(14, 2)?;
    if t.get(13) != Some(&b':') {
        return None;
    }
    let mut at = 16;
    let mut second = 0;
    if t.get(at) == Some(&b':') {
        second = num(at + 1, 2)?;
        at += 3;
        if t.get(at) == Some(&b'.') || t.get(at) == Some(&b',') {
            at += 1;
            while t.get(at).is_some_and(u8::is_ascii_digit) {
                at += 1;
            }
        }
    }
    let offset = match t.get(at) {
        None => 0,
        Some(b'Z' | b'z') if at + 1 == t.len() => 0,
        Some(sign @ (b'+' | b'-')) => {
            let h = num(at + 1, 2)?;
            let m = match t.get(at + 3) {
                Some(b':') => num(at + 4, 2)?,
                _ => num(at + 3, 2)?,
            };
            let secs = h * 3600 + m * 60;
            if *sign == b'+' { secs } else { -secs }
        }
        _ => return None,
    };
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let days = days_from_civil(year, month as u32, day as u32);
    let secs = days * 86_400 + hour * 3600 + minute * 60 + second - offset;
    u64::try_from(secs).ok()
}

/// Serde for a required timestamp.
pub mod rfc3339 {
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    /// Writes RFC 3339 UTC.
    pub fn serialize<S: Serializer>(secs: &u64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::format_rfc3339(*secs))
    }

    /// Reads any ISO-8601 form [`super::parse_iso8601`] accepts.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        let text = String::deserialize(d)?;
        super::parse_iso8601(&text).ok_or_else(|| D::Error::custom("not an ISO-8601 time"))
    }
}

/// Serde for an optional timestamp (`null` when absent; unreadable → `None`).
pub mod opt_rfc3339 {
    use serde::{Deserialize, Deserializer, Serializer};

    /// Writes RFC 3339 UTC or `null`.
    pub fn serialize<S: Serializer>(secs: &Option<u64>, s: S) -> Result<S::Ok, S::Error> {
        match secs {
            Some(secs) => s.serialize_str(&super::format_rfc3339(*secs)),
            None => s.serialize_none(),
        }
    }

    /// Reads an ISO-8601 string; anything else is `None`.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
        let value = serde_json::Value::deserialize(d)?;
        Ok(value.as_str().and_then(super::parse_iso8601))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_forms_upstream_writes() {
        let z = parse_iso8601("2026-11-27T00:00:15Z");
        assert_eq!(z, Some(1_795_737_615));
        assert_eq!(
            z.map(format_rfc3339).as_deref(),
            Some("2026-11-27T00:00:15Z")
        );
        assert_eq!(parse_iso8601("2026-11-27T00:00:15.123456"), z);
        assert_eq!(parse_iso8601("2026-11-27T01:00:15+01:00"), z);
        assert_eq!(parse_iso8601("2026-11-26T19:00:15-0500"), z);
        assert_eq!(parse_iso8601("2026-11-27 00:00:15"), z);
        assert_eq!(parse_iso8601("2024-02-29T00:00:00Z"), Some(1_709_164_800));
        for bad in [
            "",
            "2026-13-01T00:00:00Z",
            "yesterday",
            "2026-11-27",
            "2026-11-27T00:00:15Zx",
        ] {
            assert_eq!(parse_iso8601(bad), None, "{bad}");
        }
    }
}
