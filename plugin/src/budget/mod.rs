//! The optional spending limit: its configuration, UTC period arithmetic (hour, day, ISO week,
//! calendar month), the spend-so-far state kept in proxy-wasm shared data (fixed binary
//! encoding, updated with compare-and-swap by the glue), the allow/reject decision, the 429
//! body in each provider's error shape, and the `budget` block of `/stats`.
//!
//! Differences from upstream (specs/metrics.md §13), on purpose: periods are fixed UTC
//! windows (upstream's hourly is a rolling 60 minutes and daily/monthly follow the proxy's
//! local time), there is a `weekly` period, the budget applies to every handled API (upstream:
//! Anthropic only), and the 429 body is the provider's error shape (with upstream's `detail`
//! text kept alongside). As upstream: the spend is input + output cost, a limit of 0 blocks
//! everything, and the request that crosses the limit is allowed (its cost is known only after
//! it ran). Nothing here reads a clock: every function takes the time in unix seconds.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::api::Provider;

/// Seconds in a day.
const DAY: u64 = 86_400;
/// Seconds in an hour.
const HOUR: u64 = 3_600;

/// The HTTP status of a budget rejection (upstream's).
pub const REJECTION_STATUS: u32 = 429;

/// The window a budget limit applies to. Every window is aligned to UTC.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Period {
    /// From each full hour.
    Hourly,
    /// From 00:00 UTC. The default.
    #[default]
    Daily,
    /// From Monday 00:00 UTC.
    Weekly,
    /// From the 1st of the month, 00:00 UTC.
    Monthly,
}

impl Period {
    /// The configuration and `/stats` name: `hourly`, `daily`, `weekly` or `monthly`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Hourly => "hourly",
            Self::Daily => "daily",
            Self::Weekly => "weekly",
            Self::Monthly => "monthly",
        }
    }
}

impl fmt::Display for Period {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The `budget` object of the plugin configuration, e.g. `{"limit_usd": 25, "period":
/// "daily"}`. Unknown fields are rejected; `limit_usd` must be finite and ≥ 0.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "RawBudgetConfig")]
pub struct BudgetConfig {
    /// The most the gateway may spend per period, in USD (input + output cost).
    pub limit_usd: f64,
    /// The window the limit applies to. Default [`Period::Daily`].
    pub period: Period,
}

/// [`BudgetConfig`] before validation.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBudgetConfig {
    limit_usd: f64,
    #[serde(default)]
    period: Period,
}

impl TryFrom<RawBudgetConfig> for BudgetConfig {
    type Error = String;

    fn try_from(raw: RawBudgetConfig) -> Result<Self, Self::Error> {
        if !(raw.limit_usd.is_finite() && raw.limit_usd >= 0.0) {
            return Err(format!(
                "limit_usd must be a finite number of USD >= 0, got {}",
                raw.limit_usd
            ));
        }
        Ok(BudgetConfig {
            limit_usd: raw.limit_usd,
            period: raw.period,
        })
    }
}

/// Days since 1970-01-01 → (year, month 1–12, day 1–31), proleptic Gregorian (H. Hinnant's
/// `civil_from_days`).
pub(crate) fn civil_from_days(days: i64) -> (i64, u32, u32) {
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

/// (year, month 1–12, day 1–31) → days since 1970-01-01 (H. Hinnant's `days_from_civil`).
pub(crate) fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = year - i64::from(month <= 2);
    let era = year.div_euclid(400);
    let yoe = year.rem_euclid(400); // [0, 399]
    let month = i64::from(month);
    let mp = if month > 2 { month - 3 } else { month + 9 }; // [0, 11]
    let doy = (153 * mp + 2) / 5 + i64::from(day) - 1; // [0, 365]
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy; // [0, 146096]
    era * 146_097 + doe - 719_468
}

/// Unix seconds of 00:00 UTC on `days` since the epoch, saturating at both ends of `u64`.
fn day_start(days: i64) -> u64 {
    u64::try_from(days).map_or(0, |days| days.saturating_mul(DAY))
}

/// Days since the epoch of `unix_secs` (fits `i64` for every `u64`).
pub(crate) fn days_of(unix_secs: u64) -> i64 {
    i64::try_from(unix_secs / DAY).unwrap_or(i64::MAX)
}

/// The first and one-past-last day (since the epoch) of the day-aligned period around `days`.
fn period_days(period: Period, days: i64) -> (i64, i64) {
    match period {
        Period::Hourly | Period::Daily => (days, days + 1),
        Period::Weekly => {
            // 1970-01-01 was a Thursday: Monday is 0 in `(days + 3) mod 7`.
            let start = days - (days + 3).rem_euclid(7);
            (start, start + 7)
        }
        Period::Monthly => {
            let (year, month, _) = civil_from_days(days);
            let (next_year, next_month) = if month == 12 {
                (year + 1, 1)
            } else {
                (year, month + 1)
            };
            (
                days_from_civil(year, month, 1),
                days_from_civil(next_year, next_month, 1),
            )
        }
    }
}

/// Unix seconds at which the period containing `unix_secs` starts (UTC). Weeks start on
/// Monday 00:00 UTC, months on the 1st 00:00 UTC. The week around the epoch starts before
/// 1970 and is clamped to 0.
pub fn period_start(period: Period, unix_secs: u64) -> u64 {
    match period {
        Period::Hourly => unix_secs - unix_secs % HOUR,
        Period::Daily => unix_secs - unix_secs % DAY,
        Period::Weekly | Period::Monthly => day_start(period_days(period, days_of(unix_secs)).0),
    }
}

/// Unix seconds at which the period containing `unix_secs` ends: the next period's start
/// (saturating at `u64::MAX`, far beyond any real clock).
pub fn period_end(period: Period, unix_secs: u64) -> u64 {
    match period {
        Period::Hourly => period_start(period, unix_secs).saturating_add(HOUR),
        _ => day_start(period_days(period, days_of(unix_secs)).1),
    }
}

/// `unix_secs` as RFC 3339 UTC with second precision: `2026-03-27T09:10:00Z`.
pub fn format_rfc3339(unix_secs: u64) -> String {
    let (year, month, day) = civil_from_days(days_of(unix_secs));
    let secs = unix_secs % DAY;
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        secs / HOUR,
        secs % HOUR / 60,
        secs % 60
    )
}

/// The spend of the current period. It lives in shared data under one key; the glue reads
/// it, applies [`BudgetState::add`] and writes it back with compare-and-swap.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct BudgetState {
    /// Unix seconds of the start of the period `spent_usd` belongs to.
    pub period_start: u64,
    /// USD spent since `period_start`.
    pub spent_usd: f64,
}

/// Leading bytes of an encoded [`BudgetState`]: a tag and a format version.
const STATE_MAGIC: &[u8; 4] = b"HRB\x01";

impl BudgetState {
    /// Length of [`BudgetState::encode`]'s output.
    pub const ENCODED_LEN: usize = 20;

    /// Fixed binary form: `HRB\x01`, `period_start` (u64 little-endian), `spent_usd`
    /// (f64 bits little-endian).
    pub fn encode(&self) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(Self::ENCODED_LEN);
        bytes.extend_from_slice(STATE_MAGIC);
        bytes.extend_from_slice(&self.period_start.to_le_bytes());
        bytes.extend_from_slice(&self.spent_usd.to_bits().to_le_bytes());
        bytes
    }

    /// The state `encode` wrote; `None` for anything else (wrong length or tag, a spend that
    /// is negative or not finite). Callers treat `None` as no spend yet.
    pub fn decode(bytes: &[u8]) -> Option<BudgetState> {
        let rest = bytes.strip_prefix(STATE_MAGIC.as_slice())?;
        let (start, rest) = rest.split_first_chunk::<8>()?;
        let spent: [u8; 8] = rest.try_into().ok()?;
        let spent_usd = f64::from_bits(u64::from_le_bytes(spent));
        (spent_usd.is_finite() && spent_usd >= 0.0).then_some(BudgetState {
            period_start: u64::from_le_bytes(*start),
            spent_usd,
        })
    }

    /// This state as seen at `now`: unchanged within its period, empty from the start of the
    /// current period once a boundary has passed. A `now` earlier than the state's period
    /// (a request that read the clock just before another rolled the period over) stays in the
    /// state's period: the window never moves backwards.
    pub fn current(&self, period: Period, now: u64) -> BudgetState {
        let start = period_start(period, now);
        if start > self.period_start {
            BudgetState {
                period_start: start,
                spent_usd: 0.0,
            }
        } else {
            *self
        }
    }

    /// Adds a request's cost (negative or non-finite costs count as 0), rolling over to a new
    /// period first when `now` is past the state's period.
    pub fn add(&mut self, period: Period, cost_usd: f64, now: u64) {
        *self = self.current(period, now);
        if cost_usd.is_finite() && cost_usd > 0.0 {
            self.spent_usd += cost_usd;
        }
    }
}

/// Why a request is rejected: the limit of its period has been reached.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BudgetExceeded {
    /// The configured limit, USD.
    pub limit_usd: f64,
    /// USD spent in the current period.
    pub spent_usd: f64,
    /// The configured period.
    pub period: Period,
    /// Unix seconds at which the period ends and spending restarts from 0.
    pub resets_at: u64,
}

/// The budget decision for one request.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum BudgetVerdict {
    /// Forward the request; `remaining_usd` > 0 may still be spent this period.
    Allowed {
        /// USD left in the current period.
        remaining_usd: f64,
    },
    /// Reject it with [`REJECTION_STATUS`] and [`rejection_body`].
    Exceeded(BudgetExceeded),
}

/// The decision at `now`: allowed while the period's spend is below the limit (upstream:
/// `limit - spent > 0`, so a limit of 0 rejects everything).
pub fn check(config: &BudgetConfig, state: &BudgetState, now: u64) -> BudgetVerdict {
    let spent_usd = state.current(config.period, now).spent_usd;
    let remaining_usd = config.limit_usd - spent_usd;
    if remaining_usd > 0.0 {
        BudgetVerdict::Allowed { remaining_usd }
    } else {
        BudgetVerdict::Exceeded(BudgetExceeded {
            limit_usd: config.limit_usd,
            spent_usd,
            period: config.period,
            resets_at: period_end(config.period, now),
        })
    }
}

/// USD for a message: cents, or four decimals below one cent.
fn usd(amount: f64) -> String {
    if amount == 0.0 || amount.abs() >= 0.01 {
        format!("${amount:.2}")
    } else {
        format!("${amount:.4}")
    }
}

/// The human message of a rejection: which limit was hit and when it resets.
pub fn rejection_message(exceeded: &BudgetExceeded) -> String {
    format!(
        "Headroom budget exceeded: {} spent of the {} {} limit. The budget resets at {} (UTC).",
        usd(exceeded.spent_usd),
        usd(exceeded.limit_usd),
        exceeded.period,
        format_rfc3339(exceeded.resets_at)
    )
}

/// The body of the 429 a rejected request gets, in `provider`'s error shape so its SDK
/// raises its usual error with our message.
///
/// Both SDKs pick the exception class from the status (429 → `RateLimitError`), not the body,
/// so the `type` values are for people and for code that inspects the body:
/// - OpenAI: `"type": "insufficient_quota"` is what OpenAI itself returns with a 429 when an
///   account's quota or spending limit is used up, the closest meaning, and the value
///   clients special-case as "retrying will not help"; `"code": "budget_exceeded"` tells it
///   apart from OpenAI's own.
/// - Anthropic: `"type": "rate_limit_error"` is the only type Anthropic pairs with 429
///   (its `billing_error` goes with 402), so the body agrees with the status.
///
/// Upstream's FastAPI body `{"detail": "Budget exceeded for <period> period"}` is kept as an
/// extra top-level `detail`, which neither SDK minds.
pub fn rejection_body(provider: Provider, exceeded: &BudgetExceeded) -> String {
    let message = rejection_message(exceeded);
    let detail = format!("Budget exceeded for {} period", exceeded.period);
    let body = match provider {
        Provider::OpenAi => json!({
            "error": {
                "message": message,
                "type": "insufficient_quota",
                "param": null,
                "code": "budget_exceeded",
            },
            "detail": detail,
        }),
        Provider::Anthropic => json!({
            "type": "error",
            "error": {
                "type": "rate_limit_error",
                "message": message,
            },
            "detail": detail,
        }),
    };
    body.to_string()
}

/// Headers of the 429: JSON content type, `x-should-retry: false` (both SDKs otherwise retry
/// a 429 twice with backoff, which cannot succeed before the reset) and `retry-after` in
/// seconds until the period resets (at least 1).
pub fn rejection_headers(exceeded: &BudgetExceeded, now: u64) -> [(&'static str, String); 3] {
    [
        ("content-type", "application/json".to_owned()),
        ("x-should-retry", "false".to_owned()),
        (
            "retry-after",
            exceeded.resets_at.saturating_sub(now).max(1).to_string(),
        ),
    ]
}

/// Rounds USD to 6 decimals for JSON.
fn round_usd(amount: f64) -> f64 {
    (amount * 1e6).round() / 1e6
}

/// The `budget` block of `/stats` at `now`: `enabled`, `limit_usd`, `period`, `spent_usd`,
/// `remaining_usd` (≥ 0), `period_start` and `resets_at` (RFC 3339 UTC) and `exceeded`.
/// Without a budget every field but `enabled` and `exceeded` (both false) is null.
pub fn budget_json(config: Option<&BudgetConfig>, state: &BudgetState, now: u64) -> Value {
    let Some(config) = config else {
        return json!({
            "enabled": false,
            "limit_usd": null,
            "period": null,
            "spent_usd": null,
            "remaining_usd": null,
            "period_start": null,
            "resets_at": null,
            "exceeded": false,
        });
    };
    let current = state.current(config.period, now);
    let exceeded = matches!(check(config, state, now), BudgetVerdict::Exceeded(_));
    json!({
        "enabled": true,
        "limit_usd": config.limit_usd,
        "period": config.period.as_str(),
        "spent_usd": round_usd(current.spent_usd),
        "remaining_usd": round_usd((config.limit_usd - current.spent_usd).max(0.0)),
        "period_start": format_rfc3339(period_start(config.period, now)),
        "resets_at": format_rfc3339(period_end(config.period, now)),
        "exceeded": exceeded,
    })
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::indexing_slicing,
        clippy::panic
    )]

    use super::*;
    use proptest::prelude::*;

    /// Unix seconds of a UTC civil time (test helper, via the code under test's inverse).
    fn at(year: i64, month: u32, day: u32, hour: u64, min: u64, sec: u64) -> u64 {
        day_start(days_from_civil(year, month, day)) + hour * HOUR + min * 60 + sec
    }

    #[test]
    fn civil_dates_round_trip_and_match_known_values() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(days_from_civil(1969, 12, 31), -1);
        // 2026-03-27T09:10:00Z, checked with `date -u -d @1774602600`.
        assert_eq!(at(2026, 3, 27, 9, 10, 0), 1_774_602_600);
        for days in (-800_000..800_000).step_by(97) {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
    }

    #[test]
    fn formats_rfc3339() {
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
    }

    #[test]
    fn period_boundaries() {
        use Period::*;
        // (period, now, start, end)
        let cases = [
            (
                Hourly,
                at(2026, 3, 27, 9, 10, 5),
                at(2026, 3, 27, 9, 0, 0),
                at(2026, 3, 27, 10, 0, 0),
            ),
            (
                Hourly,
                at(2026, 3, 27, 9, 0, 0),
                at(2026, 3, 27, 9, 0, 0),
                at(2026, 3, 27, 10, 0, 0),
            ),
            (
                Hourly,
                at(2024, 12, 31, 23, 59, 59),
                at(2024, 12, 31, 23, 0, 0),
                at(2025, 1, 1, 0, 0, 0),
            ),
            (
                Daily,
                at(2026, 3, 27, 9, 10, 5),
                at(2026, 3, 27, 0, 0, 0),
                at(2026, 3, 28, 0, 0, 0),
            ),
            (
                Daily,
                at(2026, 3, 27, 23, 59, 59),
                at(2026, 3, 27, 0, 0, 0),
                at(2026, 3, 28, 0, 0, 0),
            ),
            (
                Daily,
                at(2024, 2, 28, 12, 0, 0),
                at(2024, 2, 28, 0, 0, 0),
                at(2024, 2, 29, 0, 0, 0),
            ),
            (
                Daily,
                at(2024, 12, 31, 12, 0, 0),
                at(2024, 12, 31, 0, 0, 0),
                at(2025, 1, 1, 0, 0, 0),
            ),
            // 2026-03-27 is a Friday; its week starts Monday 2026-03-23.
            (
                Weekly,
                at(2026, 3, 27, 9, 10, 5),
                at(2026, 3, 23, 0, 0, 0),
                at(2026, 3, 30, 0, 0, 0),
            ),
            (
                Weekly,
                at(2026, 3, 23, 0, 0, 0),
                at(2026, 3, 23, 0, 0, 0),
                at(2026, 3, 30, 0, 0, 0),
            ),
            (
                Weekly,
                at(2026, 3, 22, 23, 59, 59),
                at(2026, 3, 16, 0, 0, 0),
                at(2026, 3, 23, 0, 0, 0),
            ),
            // A week across a year end: Wednesday 2025-01-01 is in the week of Monday 2024-12-30.
            (
                Weekly,
                at(2025, 1, 1, 8, 0, 0),
                at(2024, 12, 30, 0, 0, 0),
                at(2025, 1, 6, 0, 0, 0),
            ),
            // Before the first Monday of 1970 (the 5th): clamped to 0.
            (Weekly, 0, 0, at(1970, 1, 5, 0, 0, 0)),
            (Weekly, at(1970, 1, 4, 23, 0, 0), 0, at(1970, 1, 5, 0, 0, 0)),
            (
                Weekly,
                at(1970, 1, 5, 0, 0, 0),
                at(1970, 1, 5, 0, 0, 0),
                at(1970, 1, 12, 0, 0, 0),
            ),
            (
                Monthly,
                at(2026, 3, 27, 9, 10, 5),
                at(2026, 3, 1, 0, 0, 0),
                at(2026, 4, 1, 0, 0, 0),
            ),
            (
                Monthly,
                at(2026, 3, 1, 0, 0, 0),
                at(2026, 3, 1, 0, 0, 0),
                at(2026, 4, 1, 0, 0, 0),
            ),
            (
                Monthly,
                at(2026, 2, 28, 23, 59, 59),
                at(2026, 2, 1, 0, 0, 0),
                at(2026, 3, 1, 0, 0, 0),
            ),
            // Leap years: 2024 and 2000 have 29 February, 2100 does not.
            (
                Monthly,
                at(2024, 2, 29, 23, 59, 59),
                at(2024, 2, 1, 0, 0, 0),
                at(2024, 3, 1, 0, 0, 0),
            ),
            (
                Monthly,
                at(2000, 2, 29, 1, 0, 0),
                at(2000, 2, 1, 0, 0, 0),
                at(2000, 3, 1, 0, 0, 0),
            ),
            (
                Monthly,
                at(2100, 2, 28, 23, 0, 0),
                at(2100, 2, 1, 0, 0, 0),
                at(2100, 3, 1, 0, 0, 0),
            ),
            (
                Monthly,
                at(2025, 4, 30, 23, 59, 59),
                at(2025, 4, 1, 0, 0, 0),
                at(2025, 5, 1, 0, 0, 0),
            ),
            (
                Monthly,
                at(2025, 12, 31, 23, 59, 59),
                at(2025, 12, 1, 0, 0, 0),
                at(2026, 1, 1, 0, 0, 0),
            ),
            (
                Monthly,
                at(2026, 1, 1, 0, 0, 0),
                at(2026, 1, 1, 0, 0, 0),
                at(2026, 2, 1, 0, 0, 0),
            ),
            (Monthly, 0, 0, at(1970, 2, 1, 0, 0, 0)),
        ];
        for (period, now, start, end) in cases {
            assert_eq!(
                (period_start(period, now), period_end(period, now)),
                (start, end),
                "{period} at {}",
                format_rfc3339(now)
            );
        }
        assert_eq!(at(2100, 3, 1, 0, 0, 0) - at(2100, 2, 1, 0, 0, 0), 28 * DAY);
        assert_eq!(at(2024, 3, 1, 0, 0, 0) - at(2024, 2, 1, 0, 0, 0), 29 * DAY);
    }

    #[test]
    fn extreme_times_saturate_without_panicking() {
        for period in [
            Period::Hourly,
            Period::Daily,
            Period::Weekly,
            Period::Monthly,
        ] {
            assert!(period_start(period, u64::MAX) > u64::MAX - 40 * DAY);
            assert_eq!(period_end(period, u64::MAX), u64::MAX);
            let _ = format_rfc3339(u64::MAX);
        }
    }

    proptest! {
        #[test]
        fn periods_contain_now_and_tile(t in 0u64..(1u64 << 40), p in 0usize..4) {
            let period = [Period::Hourly, Period::Daily, Period::Weekly, Period::Monthly][p];
            let start = period_start(period, t);
            let end = period_end(period, t);
            prop_assert!(start <= t && t < end, "{period}: {start} <= {t} < {end}");
            prop_assert_eq!(period_start(period, end), end);
            prop_assert_eq!(period_start(period, end - 1), start);
            if start > 0 {
                prop_assert_eq!(period_end(period, start - 1), start);
            }
            let unit = if period == Period::Hourly { HOUR } else { DAY };
            prop_assert_eq!(start % unit, 0);
            let (_, _, day) = civil_from_days(days_of(start));
            match period {
                Period::Weekly if start > 0 => prop_assert_eq!((days_of(start) + 3) % 7, 0),
                Period::Monthly => prop_assert_eq!(day, 1),
                _ => {}
            }
        }
    }

    #[test]
    fn config_parses_with_defaults_and_rejects_bad_values() {
        let config: BudgetConfig = serde_json::from_str(r#"{"limit_usd": 25}"#).unwrap();
        assert_eq!(
            config,
            BudgetConfig {
                limit_usd: 25.0,
                period: Period::Daily
            }
        );
        for (text, period) in [
            ("hourly", Period::Hourly),
            ("daily", Period::Daily),
            ("weekly", Period::Weekly),
            ("monthly", Period::Monthly),
        ] {
            let json = format!(r#"{{"limit_usd": 0.5, "period": "{text}"}}"#);
            let config: BudgetConfig = serde_json::from_str(&json).unwrap();
            assert_eq!(config.period, period);
            assert_eq!(period.as_str(), text);
        }
        for bad in [
            r#"{}"#,
            r#"{"limit_usd": -1}"#,
            r#"{"limit_usd": 1, "period": "Daily"}"#,
            r#"{"limit_usd": 1, "period": "yearly"}"#,
            r#"{"limit_usd": 1, "limit": 2}"#,
            r#"{"limit_usd": "1"}"#,
        ] {
            assert!(serde_json::from_str::<BudgetConfig>(bad).is_err(), "{bad}");
        }
        assert!(
            serde_json::from_str::<BudgetConfig>(r#"{"limit_usd": 0}"#).is_ok(),
            "0 is a valid (blocking) limit"
        );
    }

    #[test]
    fn state_round_trips_and_rejects_corrupt_bytes() {
        let states = [
            BudgetState::default(),
            BudgetState {
                period_start: 1_774_569_600,
                spent_usd: 12.345_678,
            },
            BudgetState {
                period_start: u64::MAX,
                spent_usd: f64::MAX,
            },
        ];
        for state in states {
            let bytes = state.encode();
            assert_eq!(bytes.len(), BudgetState::ENCODED_LEN);
            assert_eq!(BudgetState::decode(&bytes), Some(state));
        }
        let good = states[1].encode();
        let mut wrong_tag = good.clone();
        wrong_tag[3] = 2;
        let mut negative = good.clone();
        negative.truncate(12);
        negative.extend_from_slice(&(-1.0f64).to_bits().to_le_bytes());
        let mut nan = good.clone();
        nan.truncate(12);
        nan.extend_from_slice(&f64::NAN.to_bits().to_le_bytes());
        let mut longer = good.clone();
        longer.push(0);
        let corrupt: [&[u8]; 7] = [
            &[],
            &good[..19],
            &longer,
            &wrong_tag,
            &negative,
            &nan,
            b"{\"spent_usd\": 1.0, \"x\": 1}",
        ];
        for bytes in corrupt {
            assert_eq!(BudgetState::decode(bytes), None, "{bytes:?}");
        }
    }

    #[test]
    fn add_rolls_over_at_the_period_boundary() {
        let day1 = at(2026, 3, 27, 0, 0, 0);
        let day2 = at(2026, 3, 28, 0, 0, 0);
        let mut state = BudgetState::default();
        state.add(Period::Daily, 1.5, day1 + 10);
        assert_eq!(
            state,
            BudgetState {
                period_start: day1,
                spent_usd: 1.5
            }
        );
        state.add(Period::Daily, 2.0, day2 - 1);
        assert_eq!(state.spent_usd, 3.5);
        // Ignored costs.
        for cost in [-1.0, f64::NAN, f64::INFINITY, 0.0] {
            state.add(Period::Daily, cost, day2 - 1);
        }
        assert_eq!(state.spent_usd, 3.5);
        // The first cost of the next day starts it from 0.
        state.add(Period::Daily, 0.25, day2);
        assert_eq!(
            state,
            BudgetState {
                period_start: day2,
                spent_usd: 0.25
            }
        );
        // A late request stamped before the boundary does not move the window back.
        state.add(Period::Daily, 0.5, day2 - 1);
        assert_eq!(
            state,
            BudgetState {
                period_start: day2,
                spent_usd: 0.75
            }
        );
        // Skipping whole periods also starts from 0.
        state.add(Period::Daily, 1.0, day2 + 10 * DAY + 5);
        assert_eq!(
            state,
            BudgetState {
                period_start: day2 + 10 * DAY,
                spent_usd: 1.0
            }
        );
    }

    #[test]
    fn check_allows_below_the_limit_only() {
        let config = BudgetConfig {
            limit_usd: 10.0,
            period: Period::Monthly,
        };
        let now = at(2026, 3, 27, 9, 10, 0);
        let start = at(2026, 3, 1, 0, 0, 0);
        let state = |spent_usd| BudgetState {
            period_start: start,
            spent_usd,
        };
        assert_eq!(
            check(&config, &state(2.5), now),
            BudgetVerdict::Allowed { remaining_usd: 7.5 }
        );
        let exceeded = BudgetVerdict::Exceeded(BudgetExceeded {
            limit_usd: 10.0,
            spent_usd: 10.0,
            period: Period::Monthly,
            resets_at: at(2026, 4, 1, 0, 0, 0),
        });
        assert_eq!(check(&config, &state(10.0), now), exceeded);
        assert!(matches!(
            check(&config, &state(12.0), now),
            BudgetVerdict::Exceeded(BudgetExceeded {
                spent_usd: 12.0,
                ..
            })
        ));
        // Last month's spend does not count in April.
        assert_eq!(
            check(&config, &state(12.0), at(2026, 4, 1, 0, 0, 0)),
            BudgetVerdict::Allowed {
                remaining_usd: 10.0
            }
        );
        // A limit of 0 rejects everything, as upstream.
        let zero = BudgetConfig {
            limit_usd: 0.0,
            period: Period::Daily,
        };
        assert!(matches!(
            check(&zero, &BudgetState::default(), now),
            BudgetVerdict::Exceeded(_)
        ));
    }

    fn sample_exceeded() -> BudgetExceeded {
        BudgetExceeded {
            limit_usd: 25.0,
            spent_usd: 25.4172,
            period: Period::Daily,
            resets_at: at(2026, 3, 28, 0, 0, 0),
        }
    }

    #[test]
    fn openai_rejection_body() {
        let body: Value =
            serde_json::from_str(&rejection_body(Provider::OpenAi, &sample_exceeded())).unwrap();
        let error = &body["error"];
        assert_eq!(error["type"], "insufficient_quota");
        assert_eq!(error["code"], "budget_exceeded");
        assert_eq!(error["param"], Value::Null);
        let message = error["message"].as_str().unwrap();
        assert_eq!(
            message,
            "Headroom budget exceeded: $25.42 spent of the $25.00 daily limit. \
             The budget resets at 2026-03-28T00:00:00Z (UTC)."
        );
        assert_eq!(body["detail"], "Budget exceeded for daily period");
        assert_eq!(body.as_object().unwrap().len(), 2);
    }

    #[test]
    fn anthropic_rejection_body() {
        let exceeded = BudgetExceeded {
            limit_usd: 0.005,
            spent_usd: 0.0061,
            period: Period::Weekly,
            resets_at: at(2026, 3, 30, 0, 0, 0),
        };
        let body: Value =
            serde_json::from_str(&rejection_body(Provider::Anthropic, &exceeded)).unwrap();
        assert_eq!(body["type"], "error");
        assert_eq!(body["error"]["type"], "rate_limit_error");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains("$0.0050 weekly limit"), "{message}");
        assert!(message.contains("$0.0061 spent"), "{message}");
        assert!(message.contains("2026-03-30T00:00:00Z"), "{message}");
        assert_eq!(body["detail"], "Budget exceeded for weekly period");
    }

    #[test]
    fn rejection_headers_tell_clients_not_to_retry() {
        let exceeded = sample_exceeded();
        let now = exceeded.resets_at - 3_600;
        let headers = rejection_headers(&exceeded, now);
        assert_eq!(headers[0], ("content-type", "application/json".to_owned()));
        assert_eq!(headers[1], ("x-should-retry", "false".to_owned()));
        assert_eq!(headers[2], ("retry-after", "3600".to_owned()));
        assert_eq!(
            rejection_headers(&exceeded, exceeded.resets_at + 5)[2].1,
            "1"
        );
    }

    #[test]
    fn stats_block() {
        let now = at(2026, 3, 27, 9, 10, 0);
        let disabled = budget_json(None, &BudgetState::default(), now);
        assert_eq!(disabled["enabled"], false);
        assert_eq!(disabled["exceeded"], false);
        assert_eq!(disabled["limit_usd"], Value::Null);
        assert_eq!(disabled.as_object().unwrap().len(), 8);

        let config = BudgetConfig {
            limit_usd: 25.0,
            period: Period::Daily,
        };
        let state = BudgetState {
            period_start: at(2026, 3, 27, 0, 0, 0),
            spent_usd: 10.123_456_789,
        };
        assert_eq!(
            budget_json(Some(&config), &state, now),
            json!({
                "enabled": true,
                "limit_usd": 25.0,
                "period": "daily",
                "spent_usd": 10.123457,
                "remaining_usd": 14.876543,
                "period_start": "2026-03-27T00:00:00Z",
                "resets_at": "2026-03-28T00:00:00Z",
                "exceeded": false,
            })
        );
        let over = BudgetState {
            spent_usd: 30.0,
            ..state
        };
        let block = budget_json(Some(&config), &over, now);
        assert_eq!(block["exceeded"], true);
        assert_eq!(block["remaining_usd"], 0.0);
        // The next day the stale spend is not shown.
        let tomorrow = budget_json(Some(&config), &over, now + DAY);
        assert_eq!(tomorrow["spent_usd"], 0.0);
        assert_eq!(tomorrow["exceeded"], false);
        assert_eq!(tomorrow["period_start"], "2026-03-28T00:00:00Z");
    }
}
