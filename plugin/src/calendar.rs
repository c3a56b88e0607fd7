//! The one calendar of the filter and the host: UTC civil dates (proleptic Gregorian), RFC 3339
//! text with second precision, and a tolerant ISO-8601 reader. Budgets, the savings ledger and
//! history, the per-request record and `headroom`'s record store all use it.
//!
//! Written here rather than taken from a crate: the filter needs only these conversions, and
//! the calendar crates bring time zones, formatting languages and (in wasm) a clock the filter
//! must not read behind the host's back. The algorithms are Howard Hinnant's `days_from_civil`
//! and `civil_from_days`; the tests check them against known dates over ±2000 years.

/// Seconds in a day.
pub const DAY: u64 = 86_400;

/// Seconds in an hour.
pub const HOUR: u64 = 3_600;

/// Days since 1970-01-01 → (year, month 1–12, day 1–31).
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // [0, 146096]
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365]
    let mp = (5 * doy + 2) / 153; // [0, 11], March-based
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month as u32, day as u32)
}

/// (year, month 1–12, day 1–31) → days since 1970-01-01.
pub fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = year - i64::from(month <= 2);
    let era = year.div_euclid(400);
    let yoe = year.rem_euclid(400); // [0, 399]
    let month = i64::from(month);
    let mp = if month > 2 { month - 3 } else { month + 9 }; // [0, 11]
    let doy = (153 * mp + 2) / 5 + i64::from(day) - 1; // [0, 365]
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy; // [0, 146096]
    era * 146_097 + doe - 719_468
}

/// Days in `month` (1–12) of `year`.
pub fn days_in_month(year: i64, month: u32) -> u32 {
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    match month {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Unix seconds (before 1970 too) as `YYYY-MM-DDTHH:MM:SSZ`; years outside 0000–9999 are
/// clamped to them, so the text always sorts in time order.
pub fn format_unix(secs: i64) -> String {
    const MIN: i64 = -62_167_219_200; // 0000-01-01T00:00:00Z
    const MAX: i64 = 253_402_300_799; // 9999-12-31T23:59:59Z
    let secs = secs.clamp(MIN, MAX);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3_600,
        rem % 3_600 / 60,
        rem % 60
    )
}

/// Unix seconds as RFC 3339 UTC with second precision: `2026-03-27T09:10:00Z`.
pub fn format_rfc3339(unix_secs: u64) -> String {
    format_unix(i64::try_from(unix_secs).unwrap_or(i64::MAX))
}

/// Reads an ISO-8601 date-time into unix seconds (fractions dropped):
/// `YYYY-MM-DD[Tt ]HH:MM[:SS[.fff]][Z|±HH[:]MM]`, a naive time taken as UTC (as upstream
/// Headroom writes them). `None` for anything else, or an impossible date.
pub fn parse_rfc3339(text: &str) -> Option<i64> {
    let t = text.trim().as_bytes();
    let num = |from: usize, len: usize| -> Option<i64> {
        let digits = t.get(from..from + len)?;
        digits.iter().try_fold(0i64, |n, d| {
            d.is_ascii_digit().then(|| n * 10 + i64::from(d - b'0'))
        })
    };
    let (year, month, day) = (num(0, 4)?, num(5, 2)?, num(8, 2)?);
    if t.get(4) != Some(&b'-')
        || t.get(7) != Some(&b'-')
        || !matches!(t.get(10), Some(b'T' | b't' | b' '))
        || t.get(13) != Some(&b':')
    {
        return None;
    }
    let (hour, minute) = (num(11, 2)?, num(14, 2)?);
    let mut at = 16;
    let mut second = 0;
    if t.get(at) == Some(&b':') {
        second = num(at + 1, 2)?;
        at += 3;
        if matches!(t.get(at), Some(b'.' | b',')) {
            at += 1;
            let digits = at;
            while t.get(at).is_some_and(u8::is_ascii_digit) {
                at += 1;
            }
            if at == digits {
                return None;
            }
        }
    }
    let offset = match t.get(at..)? {
        [] => 0,
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), rest @ ..] => {
            let (h, m) = match rest {
                [_, _, b':', _, _] => (num(at + 1, 2)?, num(at + 4, 2)?),
                [_, _, _, _] => (num(at + 1, 2)?, num(at + 3, 2)?),
                _ => return None,
            };
            if h > 23 || m > 59 {
                return None;
            }
            let secs = h * 3_600 + m * 60;
            if *sign == b'+' { secs } else { -secs }
        }
        _ => return None,
    };
    let month = u32::try_from(month).ok().filter(|m| (1..=12).contains(m))?;
    let day = u32::try_from(day)
        .ok()
        .filter(|d| (1..=days_in_month(year, month)).contains(d))?;
    if hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let days = days_from_civil(year, month, day);
    // A leap second reads as the last second of its minute.
    Some(days * 86_400 + hour * 3_600 + minute * 60 + second.min(59) - offset)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates_round_trip_and_match_known_values() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(days_from_civil(1969, 12, 31), -1);
        for days in (-800_000..800_000).step_by(97) {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
            assert!(d <= days_in_month(y, m));
        }
    }

    #[test]
    fn formats_rfc3339() {
        // Checked with `date -u -d @SECS`.
        let cases = [
            (0, "1970-01-01T00:00:00Z"),
            (1_774_602_600, "2026-03-27T09:10:00Z"),
            (951_782_400, "2000-02-29T00:00:00Z"),
            (253_402_300_799, "9999-12-31T23:59:59Z"),
            (1_735_689_599, "2024-12-31T23:59:59Z"),
        ];
        for (secs, want) in cases {
            assert_eq!(format_rfc3339(secs), want);
        }
        assert_eq!(format_unix(-1), "1969-12-31T23:59:59Z");
        assert_eq!(format_rfc3339(u64::MAX), "9999-12-31T23:59:59Z");
        assert_eq!(format_unix(i64::MIN), "0000-01-01T00:00:00Z");
    }

    #[test]
    fn reads_rfc3339_and_the_forms_upstream_writes() {
        let z = parse_rfc3339("2026-11-27T00:00:15Z");
        assert_eq!(z, Some(1_795_737_615));
        for same in [
            "2026-11-27T00:00:15.123456",
            "2026-11-27T01:00:15+01:00",
            "2026-11-26T19:00:15-0500",
            "2026-11-27 00:00:15",
            "2026-11-27t00:00:15z",
            " 2026-11-27T00:00:15,5Z ",
        ] {
            assert_eq!(parse_rfc3339(same), z, "{same}");
        }
        assert_eq!(parse_rfc3339("2026-11-27T00:00Z"), Some(1_795_737_600));
        assert_eq!(parse_rfc3339("2024-02-29T00:00:00Z"), Some(1_709_164_800));
        assert_eq!(parse_rfc3339("1969-12-31T23:59:59Z"), Some(-1));
        for bad in [
            "",
            "2026-13-01T00:00:00Z",
            "2025-02-29T00:00:00Z",
            "2026-04-31T00:00:00Z",
            "yesterday",
            "2026-11-27",
            "2026-11-27T00:00:15Zx",
            "2026-11-27T00:00:15.Z",
            "2026-11-27T24:00:00Z",
            "2026-11-27T00:00:00+2400",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
        for secs in [0, 1_795_763_414, 951_782_400, -1, 4_102_444_799] {
            assert_eq!(parse_rfc3339(&format_unix(secs)), Some(secs), "{secs}");
        }
    }
}
