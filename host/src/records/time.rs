//! Time for the records: unix seconds, the calendar's RFC 3339 text (the filter's
//! [`headroom_plugin::calendar`], the one calendar of both), and the relative durations the CLI
//! takes (`30m`, `1h`, `2d`). Records keep their time as `YYYY-MM-DDTHH:MM:SSZ`, so text order
//! is time order and range queries compare strings.

use std::time::{SystemTime, UNIX_EPOCH};

pub use headroom_plugin::calendar::{format_unix, parse_rfc3339};

/// Seconds since the epoch, now.
pub fn now_unix() -> i64 {
    match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_secs()).unwrap_or(i64::MAX),
    }
}

/// Parses unix seconds (a non-negative integer) or an RFC 3339 date-time.
pub fn parse_instant(text: &str) -> Option<i64> {
    let t = text.trim();
    if !t.is_empty() && t.bytes().all(|c| c.is_ascii_digit()) {
        return t.parse().ok();
    }
    parse_rfc3339(t)
}

/// Parses a relative duration `N` + `s`, `m`, `h`, `d` or `w` (`30m`, `1h`, `2d`) into seconds.
pub fn parse_duration(text: &str) -> Option<i64> {
    let t = text.trim();
    let unit = t.chars().last()?;
    let n: i64 = t[..t.len() - unit.len_utf8()].parse().ok()?;
    if n < 0 {
        return None;
    }
    let scale = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3_600,
        'd' => 86_400,
        'w' => 604_800,
        _ => return None,
    };
    n.checked_mul(scale)
}

/// `--since`/`--until` on the CLI: a duration back from `now` (`1h`), unix seconds or RFC 3339.
pub fn parse_since(text: &str, now: i64) -> Option<i64> {
    match parse_duration(text) {
        Some(secs) => Some(now.saturating_sub(secs)),
        None => parse_instant(text),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        for secs in [0, 1_795_763_414, 951_782_400, -1, 4_102_444_799] {
            assert_eq!(parse_rfc3339(&format_unix(secs)), Some(secs), "{secs}");
        }
        assert_eq!(format_unix(1_795_763_414), "2026-11-27T07:10:14Z");
        assert_eq!(format_unix(951_782_400), "2000-02-29T00:00:00Z");
    }

    #[test]
    fn offsets_and_fractions() {
        let base = parse_rfc3339("2026-11-27T07:10:14Z");
        assert_eq!(parse_rfc3339("2026-11-27T09:10:14.999+02:00"), base);
        assert_eq!(parse_rfc3339("2026-11-27 02:10:14-05:00"), base);
        assert_eq!(parse_rfc3339("2026-11-27t07:10:14z"), base);
        // The one calendar reads a naive time as UTC (as upstream writes them).
        assert_eq!(parse_rfc3339("2026-11-27T07:10:14"), base);
        for bad in [
            "2026-11-27",
            "2026-13-01T00:00:00Z",
            "2026-02-29T00:00:00Z",
            "2026-11-27T07:10:14.Z",
            "2026-11-27T07:10:14+2:00",
            "yesterday",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
    }

    #[test]
    fn instants_and_durations() {
        assert_eq!(parse_instant("1795763414"), Some(1_795_763_414));
        assert_eq!(parse_instant("2026-11-27T07:10:14Z"), Some(1_795_763_414));
        assert_eq!(parse_instant("-5"), None);
        assert_eq!(parse_duration("30m"), Some(1_800));
        assert_eq!(parse_duration("1h"), Some(3_600));
        assert_eq!(parse_duration("2d"), Some(172_800));
        assert_eq!(parse_duration("h"), None);
        assert_eq!(parse_duration("1y"), None);
        assert_eq!(parse_since("1h", 10_000), Some(6_400));
        assert_eq!(parse_since("1795763414", 0), Some(1_795_763_414));
        assert_eq!(parse_since("soon", 0), None);
    }
}
