//! Timestamps of the savings ledger: unix seconds in memory, RFC 3339 UTC with second precision
//! (`2026-11-27T07:10:14Z`) on the wire, and a tolerant ISO-8601 reader for imported files
//! (`Z` or an offset, fractional seconds, naive times taken as UTC, as upstream reads them).

use crate::calendar::{format_rfc3339, parse_rfc3339};

/// Reads an ISO-8601 date-time ([`crate::calendar::parse_rfc3339`]'s forms: `Z` or an offset,
/// fractional seconds, naive times as UTC). `None` for anything else, or a time before 1970.
pub fn parse_iso8601(text: &str) -> Option<u64> {
    u64::try_from(parse_rfc3339(text)?).ok()
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
