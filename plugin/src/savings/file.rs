//! `proxy_savings.json`: reading it tolerantly (this project's schema 3, the Python proxy's
//! schema 6, upstream's older object and array checkpoints) and writing it in the documented
//! schema 3 layout (pretty-printed, indent 2, the spec's key order).
//!
//! Reading repairs what it can, as upstream does (bad checkpoints dropped, lifetime raised to
//! the newest checkpoint, an inconsistent display session discarded), but a file that is not a
//! savings file at all (not UTF-8, not JSON, not an object, `lifetime` or `history` of the wrong
//! type) is an error: the host moves such a file aside instead of overwriting it.

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;
use serde_json::Value;

use super::{Checkpoint, Head, Ledger, Lifetime, Project, SCHEMA_VERSION, Session};
use super::{clean_project_name, savings_percent, usd6};

/// Why a savings file cannot be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoadError {
    /// Zero bytes or only whitespace.
    Empty,
    /// Not UTF-8.
    NotUtf8,
    /// Not JSON (truncated files land here).
    NotJson(String),
    /// JSON, but not a savings file.
    WrongSchema(&'static str),
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoadError::Empty => f.write_str("the file is empty"),
            LoadError::NotUtf8 => f.write_str("the file is not UTF-8"),
            LoadError::NotJson(e) => write!(f, "the file is not JSON: {e}"),
            LoadError::WrongSchema(what) => write!(f, "not a savings file: {what}"),
        }
    }
}

/// A file read: the ledger and the schema version the file declared.
#[derive(Debug, Clone, PartialEq)]
pub struct Loaded {
    /// The ledger, normalised.
    pub ledger: Ledger,
    /// `schema_version` as written in the file (`None` when absent).
    pub schema_version: Option<u64>,
}

/// Reads a savings file. `now` decides whether the display session is still current.
pub fn load(bytes: &[u8]) -> Result<Loaded, LoadError> {
    let text = std::str::from_utf8(bytes).map_err(|_| LoadError::NotUtf8)?;
    if text.trim().is_empty() {
        return Err(LoadError::Empty);
    }
    let value: Value = serde_json::from_str(text).map_err(|e| LoadError::NotJson(e.to_string()))?;
    let Value::Object(root) = value else {
        return Err(LoadError::WrongSchema("the top level is not an object"));
    };
    let lifetime = match root.get("lifetime") {
        None | Some(Value::Null) => Lifetime::default(),
        Some(v @ Value::Object(_)) => lifetime_of(v),
        Some(_) => return Err(LoadError::WrongSchema("`lifetime` is not an object")),
    };
    let history: Vec<Checkpoint> = match root.get("history") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items.iter().filter_map(checkpoint_of).collect(),
        Some(_) => return Err(LoadError::WrongSchema("`history` is not an array")),
    };
    let session = root
        .get("display_session")
        .and_then(|v| serde_json::from_value::<Session>(v.clone()).ok())
        .filter(|s| matches!((s.started_at, s.last_activity_at), (Some(a), Some(b)) if b >= a))
        .map(|mut s| {
            s.savings_percent = savings_percent(s.tokens_saved, s.total_input_tokens);
            s
        })
        .unwrap_or_default();
    let projects = root
        .get("projects")
        .and_then(Value::as_object)
        .map(|map| {
            map.iter()
                .filter(|(_, v)| v.is_object())
                .filter_map(|(name, v)| {
                    let project = serde_json::from_value::<Project>(v.clone()).ok()?;
                    Some((clean_project_name(name)?, project))
                })
                .collect::<BTreeMap<_, _>>()
        })
        .unwrap_or_default();
    let mut ledger = Ledger {
        head: Head {
            lifetime,
            display_session: session,
            projects,
            first_seq: 0,
            next_seq: 0,
            metrics_seeded: false,
        },
        history,
    };
    ledger.normalize();
    if let Some(newest) = ledger.history.last() {
        let l = &mut ledger.head.lifetime;
        l.tokens_saved = l.tokens_saved.max(newest.total_tokens_saved);
        l.compression_savings_usd = l
            .compression_savings_usd
            .max(newest.compression_savings_usd);
        l.total_input_tokens = l.total_input_tokens.max(newest.total_input_tokens);
        l.total_input_cost_usd = l.total_input_cost_usd.max(newest.total_input_cost_usd);
    }
    Ok(Loaded {
        ledger,
        schema_version: root.get("schema_version").and_then(Value::as_u64),
    })
}

/// A non-negative integer field (floats truncated, garbage → 0), as upstream coerces.
fn count(v: Option<&Value>) -> u64 {
    match v {
        Some(Value::Number(n)) => n
            .as_u64()
            .or_else(|| n.as_f64().filter(|f| *f > 0.0).map(|f| f as u64))
            .unwrap_or(0),
        _ => 0,
    }
}

/// A non-negative USD field, 6 decimals.
fn dollars(v: Option<&Value>) -> f64 {
    usd6(v.and_then(Value::as_f64).unwrap_or(0.0).max(0.0))
}

fn lifetime_of(v: &Value) -> Lifetime {
    Lifetime {
        requests: count(v.get("requests")),
        tokens_saved: count(v.get("tokens_saved")),
        compression_savings_usd: dollars(v.get("compression_savings_usd")),
        total_input_tokens: count(v.get("total_input_tokens")),
        total_input_cost_usd: dollars(v.get("total_input_cost_usd")),
        cache_read_tokens: count(v.get("cache_read_tokens")),
        total_output_cost_usd: dollars(v.get("total_output_cost_usd")),
    }
}

/// A checkpoint in the object form (any schema) or the legacy array form
/// `[timestamp, total_tokens_saved, usd?, input_tokens?, input_cost?]`.
fn checkpoint_of(v: &Value) -> Option<Checkpoint> {
    let label = |v: Option<&Value>| match v.and_then(Value::as_str).map(str::trim) {
        Some(s) if !s.is_empty() => s.to_owned(),
        _ => "unknown".to_owned(),
    };
    match v {
        Value::Object(o) => Some(Checkpoint {
            timestamp: super::time::parse_iso8601(o.get("timestamp")?.as_str()?)?,
            provider: label(o.get("provider")),
            model: label(o.get("model")),
            total_tokens_saved: count(o.get("total_tokens_saved")),
            compression_savings_usd: dollars(o.get("compression_savings_usd")),
            total_input_tokens: count(o.get("total_input_tokens")),
            total_input_cost_usd: dollars(o.get("total_input_cost_usd")),
        }),
        Value::Array(a) => Some(Checkpoint {
            timestamp: super::time::parse_iso8601(a.first()?.as_str()?)?,
            provider: "unknown".to_owned(),
            model: "unknown".to_owned(),
            total_tokens_saved: count(a.get(1)),
            compression_savings_usd: dollars(a.get(2)),
            total_input_tokens: count(a.get(3)),
            total_input_cost_usd: dollars(a.get(4)),
        }),
        _ => None,
    }
}

/// The file as written.
#[derive(Serialize)]
struct FileOut<'a> {
    schema_version: u64,
    lifetime: &'a Lifetime,
    display_session: &'a Session,
    history: &'a [Checkpoint],
    projects: &'a BTreeMap<String, Project>,
}

/// The file's bytes: schema 3, pretty-printed, ending in a newline.
pub fn render(ledger: &Ledger) -> Vec<u8> {
    let out = FileOut {
        schema_version: SCHEMA_VERSION,
        lifetime: &ledger.head.lifetime,
        display_session: &ledger.head.display_session,
        history: &ledger.history,
        projects: &ledger.head.projects,
    };
    let mut bytes = serde_json::to_vec_pretty(&out).unwrap_or_default();
    bytes.push(b'\n');
    bytes
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]
mod tests {
    use super::*;

    const PEER: &str = include_str!("../../tests/data/peer_proxy_savings.json");

    #[test]
    fn imports_the_python_proxys_schema_6_file() {
        let loaded = load(PEER.as_bytes()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(loaded.schema_version, Some(6));
        let l = &loaded.ledger.head.lifetime;
        assert_eq!(l.requests, 11);
        assert_eq!(l.tokens_saved, 166_893);
        assert_eq!(l.compression_savings_usd, 0.542_041);
        assert_eq!(l.total_input_tokens, 122_672);
        assert_eq!(l.cache_read_tokens, 2688);
        assert_eq!(loaded.ledger.history.len(), 6);
        let first = &loaded.ledger.history[0];
        assert_eq!(
            (first.provider.as_str(), first.model.as_str()),
            ("openai", "gpt-4o")
        );
        assert_eq!(first.total_tokens_saved, 32_631);
        assert_eq!(loaded.ledger.head.display_session.requests, 11);
    }

    #[test]
    fn round_trips_its_own_format() {
        let loaded = load(PEER.as_bytes()).unwrap_or_else(|e| panic!("{e}"));
        let bytes = render(&loaded.ledger);
        let text = String::from_utf8_lossy(&bytes);
        assert!(
            text.starts_with(
                "{\n  \"schema_version\": 3,\n  \"lifetime\": {\n    \"requests\": 11,"
            )
        );
        let again = load(&bytes).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(again.ledger, loaded.ledger);
        assert_eq!(again.schema_version, Some(3));
    }

    #[test]
    fn legacy_checkpoints_and_repairs() {
        let file = br#"{"lifetime":{"requests":2,"tokens_saved":5},
            "history":[["2026-01-02T00:00:00", 50, 0.5], {"timestamp":"bad"}, 7,
                       {"timestamp":"2026-01-01T00:00:00Z","total_tokens_saved":20}],
            "display_session":{"requests":1,"started_at":"2026-01-02T00:00:00Z","last_activity_at":"2026-01-01T00:00:00Z"},
            "projects":{"\u0007 ":{"requests":1},"ok":{"requests":2},"x":3}}"#;
        let ledger = load(file).unwrap_or_else(|e| panic!("{e}")).ledger;
        let saved: Vec<u64> = ledger
            .history
            .iter()
            .map(|c| c.total_tokens_saved)
            .collect();
        assert_eq!(saved, vec![20, 50], "sorted by time, bad entries dropped");
        assert_eq!(
            ledger.head.lifetime.tokens_saved, 50,
            "raised to the newest checkpoint"
        );
        assert_eq!(ledger.head.lifetime.compression_savings_usd, 0.5);
        assert_eq!(ledger.head.lifetime.requests, 2);
        assert_eq!(ledger.head.display_session, Session::default());
        assert_eq!(ledger.head.projects.keys().collect::<Vec<_>>(), vec!["ok"]);
    }

    #[test]
    fn corrupt_files_are_errors() {
        assert_eq!(load(b""), Err(LoadError::Empty));
        assert_eq!(load(b" \n"), Err(LoadError::Empty));
        assert_eq!(load(b"\xff\xfe{}"), Err(LoadError::NotUtf8));
        assert!(matches!(
            load(&PEER.as_bytes()[..PEER.len() / 2]),
            Err(LoadError::NotJson(_))
        ));
        assert!(matches!(load(b"[1,2]"), Err(LoadError::WrongSchema(_))));
        assert!(matches!(
            load(br#"{"history":{}}"#),
            Err(LoadError::WrongSchema(_))
        ));
        assert!(matches!(
            load(br#"{"lifetime":"x"}"#),
            Err(LoadError::WrongSchema(_))
        ));
        assert!(load(b"{}").is_ok_and(|l| l.ledger == Ledger::default()));
    }
}
