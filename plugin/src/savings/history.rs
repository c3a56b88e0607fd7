//! `GET /stats-history` (docs/upstream.md §3): its query parameters, the compact sampling of the
//! checkpoints, the hourly / daily / weekly (Monday) / monthly rollups in UTC, the JSON document
//! and the CSV exports (Python `csv` conventions: CRLF, minimal quoting, Python float text).

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{Value, json};

use super::{Checkpoint, Ledger, Lifetime, MAX_HISTORY_AGE_DAYS, MAX_HISTORY_POINTS};
use super::{MAX_RESPONSE_HISTORY_POINTS, SCHEMA_VERSION, SESSION_ROLLOVER_MINUTES};
use super::{Session, StorageInfo, savings_percent, usd6};
use crate::budget::{Period, period_start};
use crate::calendar::format_rfc3339;

/// `format=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    /// The JSON document (default).
    #[default]
    Json,
    /// A CSV export of one series.
    Csv,
}

/// `series=` (CSV only).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Series {
    /// The (compact) checkpoints (default).
    #[default]
    History,
    /// Hourly rollup.
    Hourly,
    /// Daily rollup (UTC days).
    Daily,
    /// Weekly rollup (from Monday 00:00 UTC).
    Weekly,
    /// Monthly rollup.
    Monthly,
}

/// `history_mode=` (JSON only).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HistoryMode {
    /// At most [`MAX_RESPONSE_HISTORY_POINTS`], first and last kept (default).
    #[default]
    Compact,
    /// Every stored checkpoint.
    Full,
    /// No checkpoints.
    None,
}

const FORMATS: [(&str, Format); 2] = [("json", Format::Json), ("csv", Format::Csv)];
const SERIES: [(&str, Series); 5] = [
    ("history", Series::History),
    ("hourly", Series::Hourly),
    ("daily", Series::Daily),
    ("weekly", Series::Weekly),
    ("monthly", Series::Monthly),
];
const MODES: [(&str, HistoryMode); 3] = [
    ("compact", HistoryMode::Compact),
    ("full", HistoryMode::Full),
    ("none", HistoryMode::None),
];

/// A parsed query.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Query {
    /// Output format.
    pub format: Format,
    /// Series of a CSV export.
    pub series: Series,
    /// Checkpoints in the JSON document.
    pub history_mode: HistoryMode,
}

/// A parameter value outside its allowed set: the 400 body names them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadParameter {
    /// The parameter.
    pub param: &'static str,
    /// What was sent.
    pub input: String,
    /// What is allowed.
    pub allowed: Vec<&'static str>,
}

impl BadParameter {
    /// The JSON error body.
    pub fn body(&self) -> String {
        json!({"error": {
            "type": "invalid_parameter",
            "param": self.param,
            "input": self.input,
            "allowed": self.allowed,
            "message": format!("{} must be one of: {}", self.param, self.allowed.join(", ")),
        }})
        .to_string()
    }
}

fn pick<T: Copy>(
    param: &'static str,
    value: &str,
    table: &[(&'static str, T)],
) -> Result<T, BadParameter> {
    table
        .iter()
        .find(|(name, _)| *name == value)
        .map(|(_, v)| *v)
        .ok_or_else(|| BadParameter {
            param,
            input: value.to_owned(),
            allowed: table.iter().map(|(name, _)| *name).collect(),
        })
}

/// Parses the query string of the path (everything after `?`); unknown parameters are
/// ignored, values are case-sensitive, the last occurrence wins.
pub fn parse_query(path: &[u8]) -> Result<Query, BadParameter> {
    let mut query = Query::default();
    let Some(at) = path.iter().position(|b| *b == b'?') else {
        return Ok(query);
    };
    let text = String::from_utf8_lossy(path.get(at + 1..).unwrap_or_default()).into_owned();
    for pair in text.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let value = super::percent_decode(&value.replace('+', " "));
        match key {
            "format" => query.format = pick("format", &value, &FORMATS)?,
            "series" => query.series = pick("series", &value, &SERIES)?,
            "history_mode" => query.history_mode = pick("history_mode", &value, &MODES)?,
            _ => {}
        }
    }
    Ok(query)
}

/// The `compact` selection: the newest third (≥ 50) as they are, the older ones sampled
/// evenly (first and last included), timestamps never repeated.
pub fn compact(history: &[Checkpoint], limit: usize) -> Vec<Checkpoint> {
    if history.len() <= limit || limit == 0 {
        return history.to_vec();
    }
    let recent_n = (limit / 3).max(50).min(limit - 1);
    let (older, recent) = history.split_at(history.len() - recent_n);
    let slots = limit - recent.len();
    let sampled: Vec<&Checkpoint> = if slots == 1 {
        older.first().into_iter().collect()
    } else {
        (0..slots)
            .filter_map(|i| older.get((older.len() - 1) * i / (slots - 1)))
            .collect()
    };
    let mut seen = std::collections::HashSet::new();
    sampled
        .into_iter()
        .chain(recent.iter())
        .filter(|c| seen.insert(c.timestamp))
        .cloned()
        .collect()
}

/// Deltas of one bucket for one provider or model.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Deltas {
    /// Tokens saved in the bucket.
    pub tokens_saved: u64,
    /// USD saved in the bucket.
    pub compression_savings_usd_delta: f64,
    /// Input tokens in the bucket.
    pub total_input_tokens_delta: u64,
    /// Input USD in the bucket.
    pub total_input_cost_usd_delta: f64,
}

impl Deltas {
    fn add(&mut self, d: &Deltas) {
        self.tokens_saved += d.tokens_saved;
        self.compression_savings_usd_delta =
            usd6(self.compression_savings_usd_delta + d.compression_savings_usd_delta);
        self.total_input_tokens_delta += d.total_input_tokens_delta;
        self.total_input_cost_usd_delta =
            usd6(self.total_input_cost_usd_delta + d.total_input_cost_usd_delta);
    }

    fn is_zero(&self) -> bool {
        self.tokens_saved == 0
            && self.compression_savings_usd_delta == 0.0
            && self.total_input_tokens_delta == 0
            && self.total_input_cost_usd_delta == 0.0
    }
}

/// One rollup bucket (key order as the spec's).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Bucket {
    /// Start of the bucket, RFC 3339 UTC.
    pub timestamp: String,
    /// Tokens saved in the bucket.
    pub tokens_saved: u64,
    /// USD saved in the bucket.
    pub compression_savings_usd_delta: f64,
    /// Cumulative tokens saved at the bucket's last point.
    pub total_tokens_saved: u64,
    /// Cumulative USD saved.
    pub compression_savings_usd: f64,
    /// Input tokens in the bucket.
    pub total_input_tokens_delta: u64,
    /// Cumulative input tokens.
    pub total_input_tokens: u64,
    /// Input USD in the bucket.
    pub total_input_cost_usd_delta: f64,
    /// Cumulative input USD.
    pub total_input_cost_usd: f64,
    /// Deltas per provider.
    pub by_provider: BTreeMap<String, Deltas>,
    /// Deltas per model.
    pub by_model: BTreeMap<String, Deltas>,
}

/// The rollup of time-sorted checkpoints into `period` buckets: per point the increase over the
/// previous point (from 0), summed per bucket; empty buckets are not emitted.
pub fn rollup(history: &[Checkpoint], period: Period) -> Vec<Bucket> {
    // Each bucket with the sum of its points' deltas, copied into it at the end.
    let mut buckets: Vec<(Bucket, Deltas)> = Vec::new();
    let zero = Checkpoint::default();
    let mut prev = &zero;
    let mut current_start = None;
    for point in history {
        let d = Deltas {
            tokens_saved: point
                .total_tokens_saved
                .saturating_sub(prev.total_tokens_saved),
            compression_savings_usd_delta: usd6(
                (point.compression_savings_usd - prev.compression_savings_usd).max(0.0),
            ),
            total_input_tokens_delta: point
                .total_input_tokens
                .saturating_sub(prev.total_input_tokens),
            total_input_cost_usd_delta: usd6(
                (point.total_input_cost_usd - prev.total_input_cost_usd).max(0.0),
            ),
        };
        let start = period_start(period, point.timestamp);
        if current_start != Some(start) {
            current_start = Some(start);
            let bucket = Bucket {
                timestamp: format_rfc3339(start),
                ..Bucket::default()
            };
            buckets.push((bucket, Deltas::default()));
        }
        if let Some((b, sum)) = buckets.last_mut() {
            sum.add(&d);
            b.total_tokens_saved = point.total_tokens_saved;
            b.compression_savings_usd = point.compression_savings_usd;
            b.total_input_tokens = point.total_input_tokens;
            b.total_input_cost_usd = point.total_input_cost_usd;
            if !d.is_zero() {
                b.by_provider
                    .entry(point.provider.clone())
                    .or_default()
                    .add(&d);
                b.by_model.entry(point.model.clone()).or_default().add(&d);
            }
        }
        prev = point;
    }
    buckets
        .into_iter()
        .map(|(bucket, sum)| Bucket {
            tokens_saved: sum.tokens_saved,
            compression_savings_usd_delta: sum.compression_savings_usd_delta,
            total_input_tokens_delta: sum.total_input_tokens_delta,
            total_input_cost_usd_delta: sum.total_input_cost_usd_delta,
            ..bucket
        })
        .collect()
}

/// Python's `str(float)`: shortest round-trip digits, exponent form below 1e-4 and from 1e16.
pub fn python_float(x: f64) -> String {
    if !x.is_finite() {
        return if x.is_nan() {
            "nan".into()
        } else if x > 0.0 {
            "inf".into()
        } else {
            "-inf".into()
        };
    }
    if x == 0.0 {
        return if x.is_sign_negative() {
            "-0.0".into()
        } else {
            "0.0".into()
        };
    }
    let sci = format!("{x:e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if (-4..16).contains(&exp) {
        let plain = format!("{x}");
        if plain.contains('.') {
            plain
        } else {
            format!("{plain}.0")
        }
    } else {
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{mantissa}e{sign}{:02}", exp.abs())
    }
}

/// A CSV export: header and rows, CRLF line ends.
pub fn csv(series: Series, history: &[Checkpoint]) -> String {
    let mut out = String::new();
    let mut line = |cells: Vec<String>| {
        out.push_str(&cells.join(","));
        out.push_str("\r\n");
    };
    match series {
        Series::History => {
            line(
                [
                    "timestamp",
                    "total_tokens_saved",
                    "compression_savings_usd",
                    "total_input_tokens",
                    "total_input_cost_usd",
                ]
                .map(str::to_owned)
                .to_vec(),
            );
            for c in compact(history, MAX_RESPONSE_HISTORY_POINTS) {
                line(vec![
                    format_rfc3339(c.timestamp),
                    c.total_tokens_saved.to_string(),
                    python_float(c.compression_savings_usd),
                    c.total_input_tokens.to_string(),
                    python_float(c.total_input_cost_usd),
                ]);
            }
        }
        rolled => {
            line(
                [
                    "timestamp",
                    "tokens_saved",
                    "compression_savings_usd_delta",
                    "total_tokens_saved",
                    "compression_savings_usd",
                    "total_input_tokens_delta",
                    "total_input_tokens",
                    "total_input_cost_usd_delta",
                    "total_input_cost_usd",
                ]
                .map(str::to_owned)
                .to_vec(),
            );
            for b in rollup(history, period_of(rolled)) {
                line(vec![
                    b.timestamp,
                    b.tokens_saved.to_string(),
                    python_float(b.compression_savings_usd_delta),
                    b.total_tokens_saved.to_string(),
                    python_float(b.compression_savings_usd),
                    b.total_input_tokens_delta.to_string(),
                    b.total_input_tokens.to_string(),
                    python_float(b.total_input_cost_usd_delta),
                    python_float(b.total_input_cost_usd),
                ]);
            }
        }
    }
    out
}

/// The name a series has in parameters and file names.
pub fn series_name(series: Series) -> &'static str {
    SERIES
        .iter()
        .find(|(_, s)| *s == series)
        .map_or("history", |(name, _)| name)
}

/// The `content-disposition` of a CSV export.
pub fn csv_disposition(series: Series) -> String {
    format!(
        "attachment; filename=\"headroom-stats-history-{}.csv\"",
        series_name(series)
    )
}

fn period_of(series: Series) -> Period {
    match series {
        Series::Hourly => Period::Hourly,
        Series::Weekly => Period::Weekly,
        Series::Monthly => Period::Monthly,
        Series::Daily | Series::History => Period::Daily,
    }
}

/// The display session as a snapshot shows it: empty once expired, percent recomputed.
pub fn session_view(session: &Session, now: u64) -> Session {
    match session.current(now) {
        Some(s) => Session {
            savings_percent: savings_percent(s.tokens_saved, s.total_input_tokens),
            ..s.clone()
        },
        None => Session::default(),
    }
}

/// The `retention` block.
fn retention() -> Value {
    json!({
        "max_history_points": MAX_HISTORY_POINTS,
        "max_history_age_days": MAX_HISTORY_AGE_DAYS,
        "max_response_history_points": MAX_RESPONSE_HISTORY_POINTS,
    })
}

/// Projects sorted by tokens saved, each with its `savings_percent`.
fn projects(ledger: &Ledger) -> Value {
    let mut list: Vec<_> = ledger.head.projects.iter().collect();
    list.sort_by(|a, b| b.1.tokens_saved.cmp(&a.1.tokens_saved).then(a.0.cmp(b.0)));
    let map: serde_json::Map<String, Value> = list
        .into_iter()
        .map(|(name, p)| {
            let mut v = serde_json::to_value(p).unwrap_or(Value::Null);
            if let Value::Object(o) = &mut v {
                o.insert(
                    "savings_percent".into(),
                    json!(savings_percent(p.tokens_saved, p.total_input_tokens)),
                );
            }
            (name.clone(), v)
        })
        .collect();
    Value::Object(map)
}

fn lifetime_json(l: &Lifetime) -> Value {
    serde_json::to_value(l).unwrap_or(Value::Null)
}

/// The four rollups, in the document's order.
#[derive(Serialize)]
struct AllSeries {
    hourly: Vec<Bucket>,
    daily: Vec<Bucket>,
    weekly: Vec<Bucket>,
    monthly: Vec<Bucket>,
}

/// `history_summary`.
#[derive(Serialize)]
struct Summary {
    mode: &'static str,
    stored_points: usize,
    returned_points: usize,
    compacted: bool,
}

/// The document, serialised straight to text (a `Value` tree of thousands of buckets costs
/// more than the rollups themselves).
#[derive(Serialize)]
struct Document<'a> {
    schema_version: u64,
    generated_at: String,
    storage_path: &'a Option<String>,
    lifetime: &'a Lifetime,
    display_session: Session,
    display_session_policy: Value,
    history: Vec<Checkpoint>,
    series: AllSeries,
    exports: Value,
    retention: Value,
    projects: Value,
    history_summary: Summary,
    storage: &'a StorageInfo,
}

/// The `/stats-history` JSON document.
pub fn document(ledger: &Ledger, storage: &StorageInfo, mode: HistoryMode, now: u64) -> String {
    let history = Ledger::retained(&ledger.history);
    let returned = match mode {
        HistoryMode::Full => history.clone(),
        HistoryMode::None => Vec::new(),
        HistoryMode::Compact => compact(&history, MAX_RESPONSE_HISTORY_POINTS),
    };
    let mode_name = MODES
        .iter()
        .find(|(_, m)| *m == mode)
        .map_or("compact", |(n, _)| n);
    let doc = Document {
        schema_version: SCHEMA_VERSION,
        generated_at: format_rfc3339(now),
        storage_path: &storage.storage_path,
        lifetime: &ledger.head.lifetime,
        display_session: session_view(&ledger.head.display_session, now),
        display_session_policy: json!({"rollover_inactivity_minutes": SESSION_ROLLOVER_MINUTES}),
        history_summary: Summary {
            mode: mode_name,
            stored_points: history.len(),
            returned_points: returned.len(),
            compacted: returned.len() < history.len(),
        },
        history: returned,
        series: AllSeries {
            hourly: rollup(&history, Period::Hourly),
            daily: rollup(&history, Period::Daily),
            weekly: rollup(&history, Period::Weekly),
            monthly: rollup(&history, Period::Monthly),
        },
        exports: json!({
            "default_format": "json",
            "available_formats": FORMATS.map(|(n, _)| n),
            "available_series": SERIES.map(|(n, _)| n),
        }),
        retention: retention(),
        projects: projects(ledger),
        storage,
    };
    serde_json::to_string(&doc).unwrap_or_default()
}

/// Checkpoints `/stats` shows at most ([`savings_history`]); the rest of its ledger need not
/// be read.
pub const STATS_HISTORY_POINTS: u64 = 100;

/// `/stats.persistent_savings`: the ledger's preview (last 20 checkpoints; `history_points`
/// is the stored count, so `ledger` may hold only its newest checkpoints).
pub fn persistent_savings(ledger: &Ledger, storage: &StorageInfo, now: u64) -> Value {
    let history = Ledger::retained(&ledger.history);
    let recent = history
        .get(history.len().saturating_sub(20)..)
        .unwrap_or_default();
    json!({
        "schema_version": SCHEMA_VERSION,
        "storage_path": storage.storage_path,
        "lifetime": lifetime_json(&ledger.head.lifetime),
        "display_session": session_view(&ledger.head.display_session, now),
        "display_session_policy": {"rollover_inactivity_minutes": SESSION_ROLLOVER_MINUTES},
        "history_points": ledger.head.history_points(),
        "recent_history": recent,
        "retention": retention(),
        "projects": projects(ledger),
        "projects_limit": super::MAX_PROJECTS,
        "storage": storage,
    })
}

/// `/stats.savings_history`: the last [`STATS_HISTORY_POINTS`] checkpoints as
/// `[timestamp, total_tokens_saved]`.
pub fn savings_history(ledger: &Ledger) -> Value {
    let history = Ledger::retained(&ledger.history);
    let recent = history
        .get(history.len().saturating_sub(STATS_HISTORY_POINTS as usize)..)
        .unwrap_or_default();
    Value::Array(
        recent
            .iter()
            .map(|c| json!([format_rfc3339(c.timestamp), c.total_tokens_saved]))
            .collect(),
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]
mod tests {
    use super::*;
    use crate::savings::time::parse_iso8601;

    fn at(text: &str) -> u64 {
        parse_iso8601(text).unwrap_or_default()
    }

    fn point(time: &str, saved: u64, model: &str) -> Checkpoint {
        Checkpoint {
            timestamp: at(time),
            provider: "openai".into(),
            model: model.into(),
            total_tokens_saved: saved,
            compression_savings_usd: usd6(saved as f64 * 1e-6),
            total_input_tokens: saved * 2,
            total_input_cost_usd: 0.0,
        }
    }

    #[test]
    fn buckets_start_at_utc_hour_day_monday_and_month() {
        // 2026-11-29 is a Sunday, 2026-11-30 a Monday, 2026-12-01 a Tuesday.
        let h = vec![
            point("2026-11-29T23:59:59Z", 10, "a"),
            point("2026-11-30T00:00:00Z", 30, "b"),
            point("2026-11-30T00:59:59Z", 31, "b"),
            point("2026-12-01T00:00:00Z", 40, "a"),
        ];
        let starts = |p| -> Vec<(String, u64)> {
            rollup(&h, p)
                .into_iter()
                .map(|b| (b.timestamp, b.tokens_saved))
                .collect()
        };
        let s = |t: &str, n| (t.to_owned(), n);
        assert_eq!(
            starts(Period::Hourly),
            vec![
                s("2026-11-29T23:00:00Z", 10),
                s("2026-11-30T00:00:00Z", 21),
                s("2026-12-01T00:00:00Z", 9)
            ]
        );
        assert_eq!(
            starts(Period::Daily),
            vec![
                s("2026-11-29T00:00:00Z", 10),
                s("2026-11-30T00:00:00Z", 21),
                s("2026-12-01T00:00:00Z", 9)
            ]
        );
        assert_eq!(
            starts(Period::Weekly),
            vec![s("2026-11-23T00:00:00Z", 10), s("2026-11-30T00:00:00Z", 30)]
        );
        assert_eq!(
            starts(Period::Monthly),
            vec![s("2026-11-01T00:00:00Z", 31), s("2026-12-01T00:00:00Z", 9)]
        );
        let weekly = rollup(&h, Period::Weekly);
        assert_eq!(weekly[1].total_tokens_saved, 40);
        assert_eq!(weekly[1].by_model["b"].tokens_saved, 21);
        assert_eq!(weekly[1].by_model["a"].tokens_saved, 9);
    }

    #[test]
    fn compact_keeps_first_and_last_without_repeats() {
        let h: Vec<Checkpoint> = (0..8)
            .map(|i| point(&format!("2026-11-27T09:0{i}:00Z"), i, "m"))
            .collect();
        let got: Vec<u64> = compact(&h, 5)
            .iter()
            .map(|c| c.total_tokens_saved)
            .collect();
        assert_eq!(got, vec![0, 4, 5, 6, 7], "the spec's worked example");
        let big: Vec<Checkpoint> = (0..2048u64)
            .map(|i| Checkpoint {
                timestamp: 1_000 + i,
                total_tokens_saved: i,
                ..Checkpoint::default()
            })
            .collect();
        let c = compact(&big, 500);
        assert_eq!(c.len(), 500);
        assert_eq!(c.first().map(|c| c.total_tokens_saved), Some(0));
        assert_eq!(c.last().map(|c| c.total_tokens_saved), Some(2047));
    }

    #[test]
    fn csv_bytes_follow_pythons_csv_module() {
        let h = vec![
            point("2026-11-27T10:15:00Z", 10, "a"),
            point("2026-11-27T11:00:00Z", 40, "a"),
        ];
        assert_eq!(
            csv(Series::History, &h),
            "timestamp,total_tokens_saved,compression_savings_usd,total_input_tokens,total_input_cost_usd\r\n\
             2026-11-27T10:15:00Z,10,1e-05,20,0.0\r\n\
             2026-11-27T11:00:00Z,40,4e-05,80,0.0\r\n"
        );
        assert_eq!(
            csv(Series::Daily, &h),
            "timestamp,tokens_saved,compression_savings_usd_delta,total_tokens_saved,compression_savings_usd,total_input_tokens_delta,total_input_tokens,total_input_cost_usd_delta,total_input_cost_usd\r\n\
             2026-11-27T00:00:00Z,40,4e-05,40,4e-05,80,80,0.0,0.0\r\n"
        );
        assert_eq!(
            csv(Series::Monthly, &[]).matches("\r\n").count(),
            1,
            "header only"
        );
    }

    #[test]
    fn python_float_text() {
        let cases = [
            (0.04, "0.04"),
            (1e-5, "1e-05"),
            (0.0, "0.0"),
            (0.542041, "0.542041"),
            (3.0, "3.0"),
            (1e16, "1e+16"),
            (123456.5, "123456.5"),
            (0.0001, "0.0001"),
        ];
        for (x, want) in cases {
            assert_eq!(python_float(x), want);
        }
    }

    #[test]
    fn query_values_are_checked() {
        assert_eq!(parse_query(b"/stats-history"), Ok(Query::default()));
        let q = parse_query(b"/stats-history?format=csv&series=weekly&x=1");
        assert_eq!(
            q.map(|q| (q.format, q.series)),
            Ok((Format::Csv, Series::Weekly))
        );
        let err = parse_query(b"/stats-history?history_mode=Full").err();
        assert_eq!(err.as_ref().map(|e| e.param), Some("history_mode"));
        let body = err.map(|e| e.body()).unwrap_or_default();
        assert!(body.contains("compact, full, none"), "{body}");
    }
}
