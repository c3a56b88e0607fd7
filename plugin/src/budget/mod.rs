//! Spending limits: their configuration, UTC period arithmetic (hour, day, ISO week, calendar
//! month), the spend-and-reservation state kept in proxy-wasm shared data (fixed binary
//! encoding, updated with compare-and-swap by the glue), the admission decision, the 429 body
//! in each provider's error shape, and the `budget` block of `/stats`.
//!
//! A deployment may have three kinds of budget, each with its own limit and period: the
//! global one (`limit_usd`), one per API key (`per_key`, the key identified by a keyed hash,
//! [`scope`]) and one per `X-Headroom-Project` (`projects`, `default_project`). A request is
//! checked against every budget that applies to it and refused when any would be crossed.
//!
//! # Reservations and the overshoot bound
//!
//! A request whose body is known reserves an estimate of its cost ([`estimate`]: input bytes
//! / 3 tokens × input price + `max_tokens` (or `default_max_output_tokens`) × output price) in
//! every applicable budget, by compare-and-swap, and is admitted only when, in each of them,
//! `spent + reserved < limit` and `spent + reserved + estimate ≤ limit`. When the exchange
//! ends the reservation is replaced by the cost the provider reported (or released when the
//! response reports no usage, fails or the stream dies). So the reservations and spend of
//! admitted requests never pass the limit at admission, and the spend can exceed a limit only
//! by what admitted requests cost beyond their estimates:
//!
//! `spent ≤ limit + Σ over requests in flight together max(0, real cost − estimate)`.
//!
//! The term is 0 for a priced request whose output is capped by `max_tokens` and whose input
//! is at most a token per 3 bytes (JSON text in practice). It is the whole cost of a request
//! that reserves nothing: batches, images, audio and fine-tuning jobs (not priceable from the
//! request), bodies that are not JSON or larger than `max_body_bytes`, unpriced models under
//! `"unknown_model": "allow"`. Those are admitted only while `spent + reserved < limit`.
//!
//! Differences from upstream (docs/upstream.md §13), on purpose: periods are fixed UTC
//! windows (upstream's hourly is a rolling 60 minutes and daily/monthly follow the proxy's
//! local time), there is a `weekly` period, the budget applies to every billed API (upstream:
//! Anthropic only), requests reserve their estimate, and the 429 body is the provider's error
//! shape (with upstream's `detail` text kept alongside). As upstream: the spend is input +
//! output cost and a limit of 0 blocks everything. Nothing here reads a clock: every function
//! takes the time in unix seconds.

pub mod estimate;
pub mod scope;

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::api::Provider;
use crate::calendar::{DAY, HOUR, civil_from_days, days_from_civil, format_rfc3339};

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

/// One limit: at most `limit_usd` per `period`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "RawLimit")]
pub struct Limit {
    /// The most that may be spent per period, in USD (input + output cost).
    pub limit_usd: f64,
    /// The window the limit applies to. Default [`Period::Daily`].
    pub period: Period,
}

/// [`Limit`] before validation.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLimit {
    limit_usd: f64,
    #[serde(default)]
    period: Period,
}

/// `limit_usd` must be a finite number ≥ 0.
fn valid_usd(name: &str, value: f64) -> Result<f64, String> {
    if value.is_finite() && value >= 0.0 {
        Ok(value)
    } else {
        Err(format!(
            "{name} must be a finite number of USD >= 0, got {value}"
        ))
    }
}

impl TryFrom<RawLimit> for Limit {
    type Error = String;

    fn try_from(raw: RawLimit) -> Result<Self, Self::Error> {
        Ok(Limit {
            limit_usd: valid_usd("limit_usd", raw.limit_usd)?,
            period: raw.period,
        })
    }
}

/// What a budgeted request for a model without a price gets.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UnknownModel {
    /// Forwarded without a reservation; its cost stays unknown and is not charged. Admitted
    /// only while the budgets are not spent.
    Allow,
    /// Refused with the 429 (the default: a budget that lets an unpriced model through does
    /// not hold, and a price is one line of configuration).
    #[default]
    Reject,
}

/// Prices for models the price table does not know, USD per million tokens.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FallbackPrice {
    /// Input tokens (cached ones included).
    pub input_per_mtok: f64,
    /// Output tokens.
    pub output_per_mtok: f64,
}

/// Default of [`BudgetConfig::default_max_output_tokens`].
pub const DEFAULT_MAX_OUTPUT_TOKENS: u64 = 4_096;
/// Default of [`BudgetConfig::max_keys`] and [`BudgetConfig::max_projects`].
pub const DEFAULT_MAX_TRACKED: usize = 1_000;

/// The `budget` object of the plugin configuration, e.g. `{"limit_usd": 25, "period":
/// "daily"}` with optional `unknown_model` (`"reject"`, the default, or `"allow"`),
/// `fallback_price` (`{"input_per_mtok": 3, "output_per_mtok": 15}`: prices unknown models
/// instead), `default_max_output_tokens` (the output a request without `max_tokens` is
/// reserved for, default 4096), `per_key` (a [`Limit`] for every API key), `max_keys`
/// (keys tracked separately, default 1000; the keys beyond share one `overflow` budget),
/// `projects` (`{"name": Limit}` by `X-Headroom-Project`), `default_project` (the [`Limit`] of
/// any other named project), `max_projects` (default 1000; beyond, `overflow`) and
/// `key_secret` (keys the API-key hash; default a random secret per process). Unknown fields
/// are rejected; every `limit_usd` must be finite and ≥ 0.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "RawBudgetConfig")]
pub struct BudgetConfig {
    /// The most the gateway may spend per period, in USD (input + output cost).
    pub limit_usd: f64,
    /// The window the limit applies to. Default [`Period::Daily`].
    pub period: Period,
    /// What a request for an unpriced model gets when no `fallback_price` is set.
    pub unknown_model: UnknownModel,
    /// Prices of models the price table does not know.
    pub fallback_price: Option<FallbackPrice>,
    /// Output tokens reserved for a request that sets no `max_tokens`.
    pub default_max_output_tokens: u64,
    /// The limit of each API key.
    pub per_key: Option<Limit>,
    /// API keys tracked separately; later ones share the `overflow` key budget.
    pub max_keys: usize,
    /// Limits by `X-Headroom-Project`.
    pub projects: std::collections::BTreeMap<String, Limit>,
    /// The limit of a named project not in `projects`.
    pub default_project: Option<Limit>,
    /// Projects under `default_project` tracked separately; later ones share `overflow`.
    pub max_projects: usize,
    /// The secret keying API-key hashes (same value on every replica for stable ids).
    #[serde(skip_serializing)]
    pub key_secret: Option<String>,
}

/// [`BudgetConfig`] before validation.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBudgetConfig {
    limit_usd: f64,
    #[serde(default)]
    period: Period,
    #[serde(default)]
    unknown_model: UnknownModel,
    #[serde(default)]
    fallback_price: Option<FallbackPrice>,
    #[serde(default)]
    default_max_output_tokens: Option<u64>,
    #[serde(default)]
    per_key: Option<Limit>,
    #[serde(default)]
    max_keys: Option<usize>,
    #[serde(default)]
    projects: std::collections::BTreeMap<String, Limit>,
    #[serde(default)]
    default_project: Option<Limit>,
    #[serde(default)]
    max_projects: Option<usize>,
    #[serde(default)]
    key_secret: Option<String>,
}

impl TryFrom<RawBudgetConfig> for BudgetConfig {
    type Error = String;

    fn try_from(raw: RawBudgetConfig) -> Result<Self, Self::Error> {
        if let Some(price) = raw.fallback_price {
            valid_usd("fallback_price.input_per_mtok", price.input_per_mtok)?;
            valid_usd("fallback_price.output_per_mtok", price.output_per_mtok)?;
        }
        if raw.projects.keys().any(|name| name.is_empty()) {
            return Err("project names must not be empty".to_owned());
        }
        Ok(BudgetConfig {
            limit_usd: valid_usd("limit_usd", raw.limit_usd)?,
            period: raw.period,
            unknown_model: raw.unknown_model,
            fallback_price: raw.fallback_price,
            default_max_output_tokens: raw
                .default_max_output_tokens
                .unwrap_or(DEFAULT_MAX_OUTPUT_TOKENS),
            per_key: raw.per_key,
            max_keys: raw.max_keys.unwrap_or(DEFAULT_MAX_TRACKED),
            projects: raw.projects,
            default_project: raw.default_project,
            max_projects: raw.max_projects.unwrap_or(DEFAULT_MAX_TRACKED),
            key_secret: raw.key_secret,
        })
    }
}

impl BudgetConfig {
    /// A global-only budget of `limit_usd` per `period`, every option at its default.
    pub fn global_only(limit_usd: f64, period: Period) -> BudgetConfig {
        BudgetConfig {
            limit_usd,
            period,
            unknown_model: UnknownModel::default(),
            fallback_price: None,
            default_max_output_tokens: DEFAULT_MAX_OUTPUT_TOKENS,
            per_key: None,
            max_keys: DEFAULT_MAX_TRACKED,
            projects: std::collections::BTreeMap::new(),
            default_project: None,
            max_projects: DEFAULT_MAX_TRACKED,
            key_secret: None,
        }
    }

    /// The global limit.
    pub fn global(&self) -> Limit {
        Limit {
            limit_usd: self.limit_usd,
            period: self.period,
        }
    }
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

/// The spend and reservations of one budget's current period. It lives in shared data under
/// one key per budget; the glue reads it, applies [`BudgetState::reserve`] or
/// [`BudgetState::settle`] and writes it back with compare-and-swap.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct BudgetState {
    /// Unix seconds of the start of the period `spent_usd` belongs to.
    pub period_start: u64,
    /// USD spent since `period_start`.
    pub spent_usd: f64,
    /// USD reserved by admitted requests that have not ended yet.
    pub reserved_usd: f64,
}

/// Leading bytes of the first encoding (no reservations), still read.
const STATE_MAGIC_V1: &[u8; 4] = b"HRB\x01";
/// Leading bytes of an encoded [`BudgetState`]: a tag and a format version.
const STATE_MAGIC: &[u8; 4] = b"HRB\x02";

/// An amount of USD as stored: finite and ≥ 0.
fn stored_usd(bytes: [u8; 8]) -> Option<f64> {
    let usd = f64::from_bits(u64::from_le_bytes(bytes));
    (usd.is_finite() && usd >= 0.0).then_some(usd)
}

impl BudgetState {
    /// Length of [`BudgetState::encode`]'s output.
    pub const ENCODED_LEN: usize = 28;

    /// Fixed binary form: `HRB\x02`, `period_start` (u64 little-endian), `spent_usd` and
    /// `reserved_usd` (f64 bits little-endian).
    pub fn encode(&self) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(Self::ENCODED_LEN);
        bytes.extend_from_slice(STATE_MAGIC);
        bytes.extend_from_slice(&self.period_start.to_le_bytes());
        bytes.extend_from_slice(&self.spent_usd.to_bits().to_le_bytes());
        bytes.extend_from_slice(&self.reserved_usd.to_bits().to_le_bytes());
        bytes
    }

    /// The state `encode` wrote, or the first version's (20 bytes, `HRB\x01`, no
    /// reservations); `None` for anything else (wrong length or tag, an amount that is
    /// negative or not finite). Callers treat `None` as no spend yet.
    pub fn decode(bytes: &[u8]) -> Option<BudgetState> {
        if let Some(rest) = bytes.strip_prefix(STATE_MAGIC_V1.as_slice()) {
            let (start, rest) = rest.split_first_chunk::<8>()?;
            let spent: [u8; 8] = rest.try_into().ok()?;
            return Some(BudgetState {
                period_start: u64::from_le_bytes(*start),
                spent_usd: stored_usd(spent)?,
                reserved_usd: 0.0,
            });
        }
        let rest = bytes.strip_prefix(STATE_MAGIC.as_slice())?;
        let (start, rest) = rest.split_first_chunk::<8>()?;
        let (spent, rest) = rest.split_first_chunk::<8>()?;
        let reserved: [u8; 8] = rest.try_into().ok()?;
        Some(BudgetState {
            period_start: u64::from_le_bytes(*start),
            spent_usd: stored_usd(*spent)?,
            reserved_usd: stored_usd(reserved)?,
        })
    }

    /// This state as seen at `now`: unchanged within its period, empty from the start of the
    /// current period once a boundary has passed (reservations of the old period go too: the
    /// requests that made them settle against the new period). A `now` earlier than the
    /// state's period (a request that read the clock just before another rolled the period
    /// over) stays in the state's period: the window never moves backwards.
    pub fn current(&self, period: Period, now: u64) -> BudgetState {
        let start = period_start(period, now);
        if start > self.period_start {
            BudgetState {
                period_start: start,
                spent_usd: 0.0,
                reserved_usd: 0.0,
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

    /// Admits a request estimated at `estimate_usd` (non-finite or negative: 0) against
    /// `limit` at `now`: when `spent + reserved < limit` and `spent + reserved + estimate ≤
    /// limit`, reserves the estimate and returns the period it was reserved in; otherwise
    /// leaves the state as it was (rolled over) and returns what was exceeded.
    pub fn reserve(
        &mut self,
        limit: &Limit,
        estimate_usd: f64,
        now: u64,
    ) -> Result<u64, BudgetExceeded> {
        *self = self.current(limit.period, now);
        let estimate = if estimate_usd.is_finite() && estimate_usd > 0.0 {
            estimate_usd
        } else {
            0.0
        };
        let committed = self.spent_usd + self.reserved_usd;
        if committed < limit.limit_usd && committed + estimate <= limit.limit_usd {
            self.reserved_usd += estimate;
            Ok(self.period_start)
        } else {
            Err(BudgetExceeded {
                limit_usd: limit.limit_usd,
                spent_usd: self.spent_usd,
                reserved_usd: self.reserved_usd,
                estimate_usd: estimate,
                period: limit.period,
                resets_at: period_end(limit.period, now),
            })
        }
    }

    /// Ends a request that reserved `reserved_usd` in the period starting at `reserved_in`:
    /// its reservation goes (only from that period: a period that has rolled over starts
    /// without it) and its real cost, if known, is spent in the current period.
    pub fn settle(
        &mut self,
        period: Period,
        reserved_in: u64,
        reserved_usd: f64,
        cost_usd: Option<f64>,
        now: u64,
    ) {
        *self = self.current(period, now);
        if self.period_start == reserved_in && reserved_usd.is_finite() && reserved_usd > 0.0 {
            self.reserved_usd = (self.reserved_usd - reserved_usd).max(0.0);
            // Float residue of many additions and removals is not a reservation.
            if self.reserved_usd < 1e-12 {
                self.reserved_usd = 0.0;
            }
        }
        if let Some(cost) = cost_usd {
            self.add(period, cost, now);
        }
    }
}

/// Why a request is rejected: a budget would be crossed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BudgetExceeded {
    /// The configured limit, USD.
    pub limit_usd: f64,
    /// USD spent in the current period.
    pub spent_usd: f64,
    /// USD reserved by requests in flight.
    pub reserved_usd: f64,
    /// The refused request's estimated cost (0 when it had none).
    pub estimate_usd: f64,
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
        /// USD left in the current period (limit − spent − reserved).
        remaining_usd: f64,
    },
    /// Reject it with [`REJECTION_STATUS`] and [`rejection_body`].
    Exceeded(BudgetExceeded),
}

/// The decision at `now` for a request with no estimate: allowed while the period's spend and
/// reservations are below the limit (upstream: `limit - spent > 0`, so a limit of 0 rejects
/// everything).
pub fn check(limit: &Limit, state: &BudgetState, now: u64) -> BudgetVerdict {
    let mut current = *state;
    match current.reserve(limit, 0.0, now) {
        Ok(_) => BudgetVerdict::Allowed {
            remaining_usd: limit.limit_usd - current.spent_usd - current.reserved_usd,
        },
        Err(exceeded) => BudgetVerdict::Exceeded(exceeded),
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

/// Why a request is refused.
#[derive(Debug, Clone, PartialEq)]
pub enum Refusal {
    /// A budget would be crossed.
    Exceeded {
        /// Which budget, for people: `global`, `API key 0123456789abcdef`, `project x`.
        budget: String,
        /// Its figures.
        exceeded: BudgetExceeded,
    },
    /// The request names a model without a price, no `fallback_price` is set and the policy
    /// is [`UnknownModel::Reject`].
    UnpricedModel {
        /// The model as the request named it.
        model: String,
    },
}

impl Refusal {
    /// A refusal by the global budget.
    pub fn global(exceeded: BudgetExceeded) -> Refusal {
        Refusal::Exceeded {
            budget: "global".to_owned(),
            exceeded,
        }
    }
}

/// The human message of a refusal: which limit was hit and when it resets, or which model has
/// no price and how to give it one.
pub fn rejection_message(refusal: &Refusal) -> String {
    let (budget, exceeded) = match refusal {
        Refusal::UnpricedModel { model } => {
            let model: String = model.chars().take(100).collect();
            return format!(
                "Headroom budget: the model `{model}` has no price, so its cost cannot be \
                 counted against the budget. Add it to the `prices` configuration, set \
                 `budget.fallback_price`, or set `budget.unknown_model` to `allow`."
            );
        }
        Refusal::Exceeded { budget, exceeded } => (budget, exceeded),
    };
    let whose = if budget == "global" {
        String::new()
    } else {
        format!(" ({budget})")
    };
    let committed = if exceeded.reserved_usd > 0.0 {
        format!(
            "{} spent and {} reserved by requests in flight",
            usd(exceeded.spent_usd),
            usd(exceeded.reserved_usd)
        )
    } else {
        format!("{} spent", usd(exceeded.spent_usd))
    };
    let estimate = if exceeded.estimate_usd > 0.0 {
        format!(
            "; this request's estimated {} does not fit",
            usd(exceeded.estimate_usd)
        )
    } else {
        String::new()
    };
    format!(
        "Headroom budget exceeded{whose}: {committed} of the {} {} limit{estimate}. The budget \
         resets at {} (UTC).",
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
///   clients special-case as "retrying will not help"; `"code": "budget_exceeded"` (or
///   `"model_not_priced"`) tells it apart from OpenAI's own.
/// - Anthropic: `"type": "rate_limit_error"` is the only type Anthropic pairs with 429
///   (its `billing_error` goes with 402), so the body agrees with the status.
///
/// Upstream's FastAPI body `{"detail": "Budget exceeded for <period> period"}` is kept as an
/// extra top-level `detail`, which neither SDK minds.
pub fn rejection_body(provider: Provider, refusal: &Refusal) -> String {
    let message = rejection_message(refusal);
    let (code, detail) = match refusal {
        Refusal::Exceeded { exceeded, .. } => (
            "budget_exceeded",
            format!("Budget exceeded for {} period", exceeded.period),
        ),
        Refusal::UnpricedModel { .. } => ("model_not_priced", "Model has no price".to_owned()),
    };
    let body = match provider {
        Provider::OpenAi => json!({
            "error": {
                "message": message,
                "type": "insufficient_quota",
                "param": null,
                "code": code,
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
/// a 429 twice with backoff, which cannot succeed before the reset) and, for an exceeded
/// budget, `retry-after` in seconds until the period resets (at least 1).
pub fn rejection_headers(refusal: &Refusal, now: u64) -> Vec<(&'static str, String)> {
    let mut headers = vec![
        ("content-type", "application/json".to_owned()),
        ("x-should-retry", "false".to_owned()),
    ];
    if let Refusal::Exceeded { exceeded, .. } = refusal {
        headers.push((
            "retry-after",
            exceeded.resets_at.saturating_sub(now).max(1).to_string(),
        ));
    }
    headers
}

/// Rounds USD to 9 decimals (nano-USD, the metrics' unit) for JSON.
fn round_usd(amount: f64) -> f64 {
    (amount * 1e9).round() / 1e9
}

/// One budget's figures at `now`: `limit_usd`, `period`, `spent_usd`, `reserved_usd`,
/// `remaining_usd` (limit − spent − reserved, ≥ 0), `period_start` and `resets_at` (RFC 3339
/// UTC) and `exceeded` (no request without an estimate would be admitted).
pub fn limit_json(limit: &Limit, state: &BudgetState, now: u64) -> serde_json::Map<String, Value> {
    let current = state.current(limit.period, now);
    let exceeded = matches!(check(limit, state, now), BudgetVerdict::Exceeded(_));
    let remaining = (limit.limit_usd - current.spent_usd - current.reserved_usd).max(0.0);
    let value = json!({
        "limit_usd": limit.limit_usd,
        "period": limit.period.as_str(),
        "spent_usd": round_usd(current.spent_usd),
        "reserved_usd": round_usd(current.reserved_usd),
        "remaining_usd": round_usd(remaining),
        "period_start": format_rfc3339(period_start(limit.period, now)),
        "resets_at": format_rfc3339(period_end(limit.period, now)),
        "exceeded": exceeded,
    });
    match value {
        Value::Object(map) => map,
        _ => serde_json::Map::new(),
    }
}

/// The state of every budget a [`BudgetConfig`] has, as the glue read it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct States {
    /// The global budget's.
    pub global: BudgetState,
    /// Each tracked API key's (its id, [`scope::Scope::id`]) with the per-key limit.
    pub keys: Vec<(String, Limit, BudgetState)>,
    /// Each project's (its id) with its limit.
    pub projects: Vec<(String, Limit, BudgetState)>,
}

/// The `budget` block of `/stats` at `now`: the global budget's [`limit_json`] fields with
/// `enabled`, and the arrays `keys` (`{"key": id, …}`) and `projects` (`{"project": name,
/// …}`) with the same fields. Without a budget every field but `enabled` and `exceeded`
/// (both false) is null and the arrays are empty.
pub fn budget_json(config: Option<&BudgetConfig>, states: &States, now: u64) -> Value {
    let Some(config) = config else {
        return json!({
            "enabled": false,
            "limit_usd": null,
            "period": null,
            "spent_usd": null,
            "reserved_usd": null,
            "remaining_usd": null,
            "period_start": null,
            "resets_at": null,
            "exceeded": false,
            "keys": [],
            "projects": [],
        });
    };
    let mut block = limit_json(&config.global(), &states.global, now);
    block.insert("enabled".to_owned(), true.into());
    let list = |field: &str, entries: &[(String, Limit, BudgetState)]| -> Value {
        entries
            .iter()
            .map(|(id, limit, state)| {
                let mut entry = serde_json::Map::new();
                entry.insert(field.to_owned(), id.clone().into());
                entry.extend(limit_json(limit, state, now));
                Value::Object(entry)
            })
            .collect()
    };
    block.insert("keys".to_owned(), list("key", &states.keys));
    block.insert("projects".to_owned(), list("project", &states.projects));
    Value::Object(block)
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
        assert_eq!(config, BudgetConfig::global_only(25.0, Period::Daily));
        assert_eq!(config.unknown_model, UnknownModel::Reject);
        assert_eq!(config.default_max_output_tokens, 4_096);
        assert_eq!(config.max_keys, 1_000);
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
        let full: BudgetConfig = serde_json::from_str(
            r#"{"limit_usd": 100, "period": "monthly", "unknown_model": "allow",
                "fallback_price": {"input_per_mtok": 3, "output_per_mtok": 15},
                "default_max_output_tokens": 1000,
                "per_key": {"limit_usd": 5, "period": "daily"}, "max_keys": 10,
                "projects": {"alpha": {"limit_usd": 1, "period": "hourly"}},
                "default_project": {"limit_usd": 2}, "max_projects": 3,
                "key_secret": "s3cret"}"#,
        )
        .unwrap();
        assert_eq!(full.unknown_model, UnknownModel::Allow);
        assert_eq!(
            full.fallback_price,
            Some(FallbackPrice {
                input_per_mtok: 3.0,
                output_per_mtok: 15.0
            })
        );
        assert_eq!(full.default_max_output_tokens, 1_000);
        assert_eq!(
            full.per_key,
            Some(Limit {
                limit_usd: 5.0,
                period: Period::Daily
            })
        );
        assert_eq!(full.max_keys, 10);
        assert_eq!(full.projects["alpha"].period, Period::Hourly);
        assert_eq!(full.default_project.unwrap().period, Period::Daily);
        assert_eq!(full.max_projects, 3);
        assert_eq!(full.key_secret.as_deref(), Some("s3cret"));
        // The secret never leaves through serialisation (`/stats` shows configurations).
        assert!(!serde_json::to_string(&full).unwrap().contains("s3cret"));
        for bad in [
            r#"{}"#,
            r#"{"limit_usd": -1}"#,
            r#"{"limit_usd": 1, "period": "Daily"}"#,
            r#"{"limit_usd": 1, "period": "yearly"}"#,
            r#"{"limit_usd": 1, "limit": 2}"#,
            r#"{"limit_usd": "1"}"#,
            r#"{"limit_usd": 1, "unknown_model": "maybe"}"#,
            r#"{"limit_usd": 1, "fallback_price": {"input_per_mtok": -1, "output_per_mtok": 1}}"#,
            r#"{"limit_usd": 1, "fallback_price": {"input_per_mtok": 1}}"#,
            r#"{"limit_usd": 1, "per_key": {"limit_usd": -5}}"#,
            r#"{"limit_usd": 1, "projects": {"a": {"limit": 1}}}"#,
            r#"{"limit_usd": 1, "projects": {"": {"limit_usd": 1}}}"#,
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
                reserved_usd: 0.25,
            },
            BudgetState {
                period_start: u64::MAX,
                spent_usd: f64::MAX,
                reserved_usd: f64::MAX,
            },
        ];
        for state in states {
            let bytes = state.encode();
            assert_eq!(bytes.len(), BudgetState::ENCODED_LEN);
            assert_eq!(&bytes[..4], b"HRB\x02");
            assert_eq!(BudgetState::decode(&bytes), Some(state));
        }
        // The first version's states (no reservations) still read.
        let mut v1 = b"HRB\x01".to_vec();
        v1.extend_from_slice(&1_774_569_600u64.to_le_bytes());
        v1.extend_from_slice(&3.5f64.to_bits().to_le_bytes());
        assert_eq!(
            BudgetState::decode(&v1),
            Some(BudgetState {
                period_start: 1_774_569_600,
                spent_usd: 3.5,
                reserved_usd: 0.0
            })
        );
        let good = states[1].encode();
        let amount = |at: usize, value: f64| {
            let mut bytes = good.clone();
            bytes[at..at + 8].copy_from_slice(&value.to_bits().to_le_bytes());
            bytes
        };
        let mut wrong_tag = good.clone();
        wrong_tag[3] = 3;
        let mut longer = good.clone();
        longer.push(0);
        let mut v1_longer = v1.clone();
        v1_longer.push(0);
        let mut v1_negative = v1.clone();
        v1_negative.truncate(12);
        v1_negative.extend_from_slice(&(-1.0f64).to_bits().to_le_bytes());
        let corrupt: [&[u8]; 11] = [
            &[],
            &good[..27],
            &good[..20],
            &longer,
            &wrong_tag,
            &amount(12, -1.0),
            &amount(20, -1.0),
            &amount(20, f64::NAN),
            &v1_longer,
            &v1_negative,
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
        let state_at = |period_start, spent_usd| BudgetState {
            period_start,
            spent_usd,
            reserved_usd: 0.0,
        };
        let mut state = BudgetState::default();
        state.add(Period::Daily, 1.5, day1 + 10);
        assert_eq!(state, state_at(day1, 1.5));
        state.add(Period::Daily, 2.0, day2 - 1);
        assert_eq!(state.spent_usd, 3.5);
        // Ignored costs.
        for cost in [-1.0, f64::NAN, f64::INFINITY, 0.0] {
            state.add(Period::Daily, cost, day2 - 1);
        }
        assert_eq!(state.spent_usd, 3.5);
        // The first cost of the next day starts it from 0.
        state.add(Period::Daily, 0.25, day2);
        assert_eq!(state, state_at(day2, 0.25));
        // A late request stamped before the boundary does not move the window back.
        state.add(Period::Daily, 0.5, day2 - 1);
        assert_eq!(state, state_at(day2, 0.75));
        // Skipping whole periods also starts from 0.
        state.add(Period::Daily, 1.0, day2 + 10 * DAY + 5);
        assert_eq!(state, state_at(day2 + 10 * DAY, 1.0));
    }

    fn limit(limit_usd: f64, period: Period) -> Limit {
        Limit { limit_usd, period }
    }

    #[test]
    fn check_allows_below_the_limit_only() {
        let config = limit(10.0, Period::Monthly);
        let now = at(2026, 3, 27, 9, 10, 0);
        let start = at(2026, 3, 1, 0, 0, 0);
        let state = |spent_usd, reserved_usd| BudgetState {
            period_start: start,
            spent_usd,
            reserved_usd,
        };
        assert_eq!(
            check(&config, &state(2.5, 0.0), now),
            BudgetVerdict::Allowed { remaining_usd: 7.5 }
        );
        assert_eq!(
            check(&config, &state(2.5, 1.5), now),
            BudgetVerdict::Allowed { remaining_usd: 6.0 }
        );
        let exceeded = BudgetVerdict::Exceeded(BudgetExceeded {
            limit_usd: 10.0,
            spent_usd: 10.0,
            reserved_usd: 0.0,
            estimate_usd: 0.0,
            period: Period::Monthly,
            resets_at: at(2026, 4, 1, 0, 0, 0),
        });
        assert_eq!(check(&config, &state(10.0, 0.0), now), exceeded);
        // Reservations count: spent + reserved at the limit admits nothing more.
        assert!(matches!(
            check(&config, &state(6.0, 4.0), now),
            BudgetVerdict::Exceeded(BudgetExceeded {
                reserved_usd: 4.0,
                ..
            })
        ));
        assert!(matches!(
            check(&config, &state(12.0, 0.0), now),
            BudgetVerdict::Exceeded(BudgetExceeded {
                spent_usd: 12.0,
                ..
            })
        ));
        // Last month's spend and reservations do not count in April.
        assert_eq!(
            check(&config, &state(12.0, 3.0), at(2026, 4, 1, 0, 0, 0)),
            BudgetVerdict::Allowed {
                remaining_usd: 10.0
            }
        );
        // A limit of 0 rejects everything, as upstream.
        assert!(matches!(
            check(&limit(0.0, Period::Daily), &BudgetState::default(), now),
            BudgetVerdict::Exceeded(_)
        ));
    }

    #[test]
    fn reservations_admit_what_fits_and_settle_to_the_real_cost() {
        let day = limit(1.0, Period::Daily);
        let now = at(2026, 3, 27, 9, 0, 0);
        let start = at(2026, 3, 27, 0, 0, 0);
        let mut state = BudgetState::default();
        // Three requests of 0.4 each: two fit, the third would cross the limit.
        assert_eq!(state.reserve(&day, 0.4, now), Ok(start));
        assert_eq!(state.reserve(&day, 0.4, now), Ok(start));
        let refused = state.reserve(&day, 0.4, now).unwrap_err();
        assert_eq!(
            (refused.reserved_usd, refused.estimate_usd),
            (0.8, 0.4),
            "{refused:?}"
        );
        assert!((state.reserved_usd - 0.8).abs() < 1e-12);
        // One that fits exactly is admitted; then nothing, not even an unestimated one.
        assert_eq!(state.reserve(&day, 0.2, now), Ok(start));
        assert!(state.reserve(&day, 0.0, now).is_err());
        // Settling replaces a reservation by the real cost; a missing usage releases it.
        state.settle(Period::Daily, start, 0.4, Some(0.1), now);
        state.settle(Period::Daily, start, 0.4, None, now);
        assert!((state.spent_usd - 0.1).abs() < 1e-12);
        assert!((state.reserved_usd - 0.2).abs() < 1e-12);
        state.settle(Period::Daily, start, 0.2, Some(0.05), now);
        assert_eq!(state.reserved_usd, 0.0);
        assert!((state.spent_usd - 0.15).abs() < 1e-12);
        // Non-finite or negative estimates reserve nothing; releasing more than is reserved
        // leaves 0, never a negative reservation.
        assert_eq!(state.reserve(&day, f64::NAN, now), Ok(start));
        assert_eq!(state.reserve(&day, -3.0, now), Ok(start));
        assert_eq!(state.reserved_usd, 0.0);
        state.settle(Period::Daily, start, 5.0, None, now);
        assert_eq!(state.reserved_usd, 0.0);
        // A reservation of yesterday is not taken from today's, but the cost lands today.
        let tomorrow = now + DAY;
        assert_eq!(state.reserve(&day, 0.3, tomorrow), Ok(start + DAY));
        state.settle(Period::Daily, start, 0.4, Some(0.01), tomorrow);
        assert!((state.reserved_usd - 0.3).abs() < 1e-12);
        assert!((state.spent_usd - 0.01).abs() < 1e-12);
    }

    proptest! {
        /// Whatever the interleaving of reservations and settlements, every admission keeps
        /// spent + reserved within the limit when real costs stay within their estimates,
        /// and the final spend never passes the limit by more than the stated bound.
        #[test]
        fn overshoot_stays_within_the_bound(
            ops in proptest::collection::vec((0.0f64..0.5, 0.0f64..1.5, any::<bool>()), 1..60)
        ) {
            let day = limit(1.0, Period::Daily);
            let now = at(2026, 3, 27, 9, 0, 0);
            let mut state = BudgetState::default();
            let mut in_flight: Vec<(f64, f64)> = Vec::new();
            let mut excess = 0.0;
            for (estimate, ratio, settle_first) in ops {
                if settle_first && let Some((reserved, cost)) = in_flight.pop() {
                    state.settle(Period::Daily, state.period_start, reserved, Some(cost), now);
                }
                let before = state;
                if state.reserve(&day, estimate, now).is_ok() {
                    prop_assert!(state.spent_usd + state.reserved_usd <= 1.0 + 1e-9);
                    let cost = estimate * ratio;
                    excess += (cost - estimate).max(0.0);
                    in_flight.push((estimate, cost));
                } else {
                    prop_assert_eq!(state, before);
                }
            }
            for (reserved, cost) in in_flight.drain(..) {
                state.settle(Period::Daily, state.period_start, reserved, Some(cost), now);
            }
            prop_assert!(state.reserved_usd < 1e-9);
            prop_assert!(state.spent_usd <= 1.0 + excess + 1e-9, "{} > 1 + {}", state.spent_usd, excess);
        }
    }

    fn sample_exceeded() -> BudgetExceeded {
        BudgetExceeded {
            limit_usd: 25.0,
            spent_usd: 25.4172,
            reserved_usd: 0.0,
            estimate_usd: 0.0,
            period: Period::Daily,
            resets_at: at(2026, 3, 28, 0, 0, 0),
        }
    }

    #[test]
    fn openai_rejection_body() {
        let body: Value = serde_json::from_str(&rejection_body(
            Provider::OpenAi,
            &Refusal::global(sample_exceeded()),
        ))
        .unwrap();
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
            spent_usd: 0.0011,
            reserved_usd: 0.003,
            estimate_usd: 0.002,
            period: Period::Weekly,
            resets_at: at(2026, 3, 30, 0, 0, 0),
        };
        let refusal = Refusal::Exceeded {
            budget: "project alpha".to_owned(),
            exceeded,
        };
        let body: Value =
            serde_json::from_str(&rejection_body(Provider::Anthropic, &refusal)).unwrap();
        assert_eq!(body["type"], "error");
        assert_eq!(body["error"]["type"], "rate_limit_error");
        let message = body["error"]["message"].as_str().unwrap();
        assert_eq!(
            message,
            "Headroom budget exceeded (project alpha): $0.0011 spent and $0.0030 reserved by \
             requests in flight of the $0.0050 weekly limit; this request's estimated $0.0020 \
             does not fit. The budget resets at 2026-03-30T00:00:00Z (UTC)."
        );
        assert_eq!(body["detail"], "Budget exceeded for weekly period");
    }

    #[test]
    fn unpriced_model_rejection() {
        let refusal = Refusal::UnpricedModel {
            model: "acme-9".to_owned(),
        };
        let body: Value =
            serde_json::from_str(&rejection_body(Provider::OpenAi, &refusal)).unwrap();
        assert_eq!(body["error"]["code"], "model_not_priced");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains("`acme-9` has no price"), "{message}");
        assert!(message.contains("fallback_price"), "{message}");
        let headers = rejection_headers(&refusal, 0);
        assert_eq!(headers.len(), 2);
        assert_eq!(headers[1], ("x-should-retry", "false".to_owned()));
        let anthropic: Value =
            serde_json::from_str(&rejection_body(Provider::Anthropic, &refusal)).unwrap();
        assert_eq!(anthropic["error"]["type"], "rate_limit_error");
    }

    #[test]
    fn rejection_headers_tell_clients_not_to_retry() {
        let refusal = Refusal::global(sample_exceeded());
        let resets_at = sample_exceeded().resets_at;
        let headers = rejection_headers(&refusal, resets_at - 3_600);
        assert_eq!(headers[0], ("content-type", "application/json".to_owned()));
        assert_eq!(headers[1], ("x-should-retry", "false".to_owned()));
        assert_eq!(headers[2], ("retry-after", "3600".to_owned()));
        assert_eq!(rejection_headers(&refusal, resets_at + 5)[2].1, "1");
    }

    #[test]
    fn stats_block() {
        let now = at(2026, 3, 27, 9, 10, 0);
        let disabled = budget_json(None, &States::default(), now);
        assert_eq!(disabled["enabled"], false);
        assert_eq!(disabled["exceeded"], false);
        assert_eq!(disabled["limit_usd"], Value::Null);
        assert_eq!(disabled["keys"], json!([]));
        assert_eq!(disabled.as_object().unwrap().len(), 11);

        let config = BudgetConfig::global_only(25.0, Period::Daily);
        let state = BudgetState {
            period_start: at(2026, 3, 27, 0, 0, 0),
            spent_usd: 10.123_456_789,
            reserved_usd: 1.0,
        };
        let key_limit = limit(1.0, Period::Hourly);
        let states = States {
            global: state,
            keys: vec![("00ff00ff00ff00ff".to_owned(), key_limit, state)],
            projects: vec![(
                "alpha".to_owned(),
                limit(50.0, Period::Monthly),
                BudgetState::default(),
            )],
        };
        let block = budget_json(Some(&config), &states, now);
        let global = json!({
            "enabled": true,
            "limit_usd": 25.0,
            "period": "daily",
            "spent_usd": 10.123456789,
            "reserved_usd": 1.0,
            "remaining_usd": 13.876543211,
            "period_start": "2026-03-27T00:00:00Z",
            "resets_at": "2026-03-28T00:00:00Z",
            "exceeded": false,
        });
        for (field, value) in global.as_object().unwrap() {
            assert_eq!(&block[field], value, "{field}");
        }
        // The key's state is of an earlier hour: this hour starts from 0.
        assert_eq!(block["keys"][0]["key"], "00ff00ff00ff00ff");
        assert_eq!(block["keys"][0]["period"], "hourly");
        assert_eq!(block["keys"][0]["spent_usd"], 0.0);
        assert_eq!(block["keys"][0]["remaining_usd"], 1.0);
        assert_eq!(block["projects"][0]["project"], "alpha");
        assert_eq!(block["projects"][0]["limit_usd"], 50.0);
        assert_eq!(block["projects"][0]["resets_at"], "2026-04-01T00:00:00Z");

        let over = States {
            global: BudgetState {
                spent_usd: 30.0,
                ..state
            },
            ..States::default()
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
