//! The request database: an embedded SQLite file (WAL) with one `requests` row per record,
//! batched inserts, retention by age and row count, the queries behind `headroom metrics`,
//! `headroom summary` and the `/v1/headroom/*` endpoints, and recovery from a corrupt file
//! (moved aside as `<name>.corrupt-<unix time>`, a fresh one started).

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use rusqlite::{Connection, ErrorCode, OpenFlags, params_from_iter};

use super::record::Record;
use super::time;

/// The table. `time` is `YYYY-MM-DDTHH:MM:SSZ`, so text order is time order.
const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS requests (
    id INTEGER PRIMARY KEY,
    time TEXT NOT NULL,
    provider TEXT NOT NULL,
    api TEXT NOT NULL,
    model TEXT,
    stack TEXT NOT NULL,
    path TEXT NOT NULL,
    status INTEGER,
    stream INTEGER NOT NULL,
    tokens_before INTEGER,
    tokens_after INTEGER,
    tokens_saved INTEGER NOT NULL,
    input_tokens INTEGER,
    output_tokens INTEGER,
    cache_read_tokens INTEGER,
    cache_write_tokens INTEGER,
    cost_usd REAL,
    savings_usd REAL,
    latency_ms REAL,
    ttfb_ms REAL,
    overhead_ms REAL,
    transforms TEXT NOT NULL,
    fail_open TEXT
);
";

/// The indexes, made once the table is known to be ours.
const INDEXES: &str = "
CREATE INDEX IF NOT EXISTS requests_time ON requests(time);
CREATE INDEX IF NOT EXISTS requests_model_time ON requests(model, time);
";

/// The columns after `id`, in the record's field order.
const COLUMNS: [&str; 22] = [
    "time",
    "provider",
    "api",
    "model",
    "stack",
    "path",
    "status",
    "stream",
    "tokens_before",
    "tokens_after",
    "tokens_saved",
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "cost_usd",
    "savings_usd",
    "latency_ms",
    "ttfb_ms",
    "overhead_ms",
    "transforms",
    "fail_open",
];

/// How long a connection waits for another's lock before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// How many rows to keep.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Retention {
    /// Rows older than this many days are deleted (0: no age limit).
    pub days: u32,
    /// At most this many rows are kept, the newest (0: no count limit).
    pub max_rows: u64,
}

impl Default for Retention {
    fn default() -> Self {
        Self {
            days: 30,
            max_rows: 1_000_000,
        }
    }
}

/// A query's selection.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Query {
    /// Records at or after this time (unix seconds).
    pub start: Option<i64>,
    /// Records at or before this time (unix seconds).
    pub end: Option<i64>,
    /// Records of this model only.
    pub model: Option<String>,
    /// At most this many records (newest first).
    pub limit: Option<u64>,
}

/// Totals over a selection of records.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct Summary {
    /// Records selected.
    pub total_requests: u64,
    /// Σ `tokens_before` (unknown counted as 0).
    pub total_tokens_before: i64,
    /// Σ `tokens_after` (unknown counted as 0).
    pub total_tokens_after: i64,
    /// Σ `tokens_saved`.
    pub total_tokens_saved: i64,
    /// `total_tokens_saved / total_requests` (0 without requests).
    pub avg_tokens_saved: f64,
    /// Σ`tokens_after` / Σ`tokens_before` over records with both (`None` without any).
    pub avg_compression_ratio: Option<f64>,
    /// Σ `input_tokens` (unknown counted as 0).
    pub total_input_tokens: i64,
    /// Σ `output_tokens` (unknown counted as 0).
    pub total_output_tokens: i64,
    /// Σ `cost_usd` over records with a known cost (6 decimals).
    pub total_cost_usd: f64,
    /// Σ `savings_usd` over records with known savings (6 decimals).
    pub total_cost_saved_usd: f64,
    /// Records whose cost is unknown (a model without a price, or no usage reported).
    pub requests_unknown_cost: u64,
}

fn round6(x: f64) -> f64 {
    (x * 1e6).round() / 1e6
}

/// Whether an error means the file is not a usable database (as opposed to, say, a permission
/// problem): then the file is moved aside.
pub fn is_corruption(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase)
    )
}

/// Why the database could not be opened.
#[derive(Debug)]
pub enum OpenError {
    /// The file is not a database or is damaged.
    Corrupt(String),
    /// It holds a `requests` table of another shape (another tool's database).
    Foreign(String),
    /// Anything else (permissions, a missing directory, a full disk).
    Other(String),
}

impl std::fmt::Display for OpenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Corrupt(why) | Self::Foreign(why) | Self::Other(why) => f.write_str(why),
        }
    }
}

impl From<rusqlite::Error> for OpenError {
    fn from(e: rusqlite::Error) -> Self {
        if is_corruption(&e) {
            Self::Corrupt(e.to_string())
        } else {
            Self::Other(e.to_string())
        }
    }
}

/// Opens (creating it if needed) the database at `path` for writing: WAL, schema, and a
/// `PRAGMA quick_check`.
pub fn open_for_writing(path: &Path) -> Result<Connection, OpenError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        crate::paths::create_private_dir_all(dir)
            .map_err(|e| OpenError::Other(format!("creating {}: {e}", dir.display())))?;
    }
    // Created 0600 before SQLite opens it (its -wal and -shm files take the database's mode).
    crate::paths::private_file()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(|e| OpenError::Other(format!("creating {}: {e}", path.display())))?;
    let conn = Connection::open(path)?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    let check: String = conn.query_row("PRAGMA quick_check", [], |r| r.get(0))?;
    if check != "ok" {
        return Err(OpenError::Corrupt(format!("quick_check: {check}")));
    }
    let _mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
    conn.execute_batch("PRAGMA synchronous=NORMAL;")?;
    conn.execute_batch(SCHEMA)?;
    check_columns(&conn)?;
    conn.execute_batch(INDEXES)?;
    Ok(conn)
}

/// Refuses a `requests` table that lacks our columns (another tool's database at this path).
fn check_columns(conn: &Connection) -> Result<(), OpenError> {
    let mut stmt = conn.prepare("SELECT name FROM pragma_table_info('requests')")?;
    let names = stmt
        .query_map([], |r| r.get::<_, String>(0))?
        .collect::<Result<Vec<_>, _>>()?;
    let missing: Vec<&str> = COLUMNS
        .iter()
        .copied()
        .filter(|c| !names.iter().any(|n| n == c))
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(OpenError::Foreign(format!(
            "its `requests` table is not Headroom's (no column {})",
            missing.join(", ")
        )))
    }
}

/// Opens an existing database for reading (the CLI, the endpoints, `validate`).
pub fn open_for_reading(path: &Path) -> Result<Connection, rusqlite::Error> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
            | OpenFlags::SQLITE_OPEN_URI,
    )?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    Ok(conn)
}

/// Moves a damaged database (and its WAL) aside as `<name>.corrupt-<unix time>` and returns
/// the new name.
pub fn move_aside(path: &Path) -> std::io::Result<PathBuf> {
    let mut aside = path.as_os_str().to_owned();
    aside.push(format!(".corrupt-{}", time::now_unix()));
    let aside = PathBuf::from(aside);
    std::fs::rename(path, &aside)?;
    for suffix in ["-wal", "-shm"] {
        let mut side = path.as_os_str().to_owned();
        side.push(suffix);
        let side = PathBuf::from(side);
        if side.exists() {
            let mut to = aside.as_os_str().to_owned();
            to.push(suffix);
            let _ = std::fs::rename(&side, PathBuf::from(to));
        }
    }
    Ok(aside)
}

/// Opens the database for the writer, moving a corrupt file aside and starting a fresh one.
/// `None` (after a warning) when there is no way to keep records in it.
pub fn open_or_recover(path: &Path) -> Option<Connection> {
    match open_for_writing(path) {
        Ok(conn) => Some(conn),
        Err(OpenError::Corrupt(why)) => {
            let aside = match move_aside(path) {
                Ok(aside) => aside,
                Err(e) => {
                    tracing::warn!(
                        "the request database {} is damaged ({why}) and could not be moved aside ({e}); running without stored records",
                        path.display()
                    );
                    return None;
                }
            };
            tracing::warn!(
                "the request database {} was damaged ({why}); moved it to {} and started a fresh one",
                path.display(),
                aside.display()
            );
            match open_for_writing(path) {
                Ok(conn) => Some(conn),
                Err(e) => {
                    tracing::warn!(
                        "a fresh request database at {} could not be opened ({e}); running without stored records",
                        path.display()
                    );
                    None
                }
            }
        }
        Err(e) => {
            tracing::warn!(
                "the request database {} could not be opened ({e}); running without stored records (set HEADROOM_DB_PATH elsewhere, or --stateless)",
                path.display()
            );
            None
        }
    }
}

/// Inserts `records` in one transaction.
pub fn insert(conn: &mut Connection, records: &[Record]) -> Result<(), rusqlite::Error> {
    let tx = conn.transaction()?;
    {
        let placeholders = vec!["?"; COLUMNS.len()].join(",");
        let sql = format!(
            "INSERT INTO requests ({}) VALUES ({placeholders})",
            COLUMNS.join(",")
        );
        let mut stmt = tx.prepare_cached(&sql)?;
        for r in records {
            let transforms = serde_json::to_string(&r.transforms).unwrap_or_else(|_| "[]".into());
            stmt.execute(rusqlite::params![
                r.time,
                r.provider,
                r.api,
                r.model,
                r.stack,
                r.path,
                r.status,
                r.stream,
                r.tokens_before,
                r.tokens_after,
                r.tokens_saved,
                r.input_tokens,
                r.output_tokens,
                r.cache_read_tokens,
                r.cache_write_tokens,
                r.cost_usd,
                r.savings_usd,
                r.latency_ms,
                r.ttfb_ms,
                r.overhead_ms,
                transforms,
                r.fail_open,
            ])?;
        }
    }
    tx.commit()
}

/// Rows in the table.
pub fn count(conn: &Connection) -> Result<u64, rusqlite::Error> {
    conn.query_row("SELECT COUNT(*) FROM requests", [], |r| r.get::<_, i64>(0))
        .map(|n| u64::try_from(n).unwrap_or(0))
}

/// Deletes rows older than the retention's age, then the oldest beyond its row count, and
/// returns how many rows were deleted.
pub fn apply_retention(
    conn: &Connection,
    retention: Retention,
    now: i64,
) -> Result<u64, rusqlite::Error> {
    let mut deleted = 0;
    if retention.days > 0 {
        let cutoff = time::format_unix(now.saturating_sub(i64::from(retention.days) * 86_400));
        deleted += conn.execute("DELETE FROM requests WHERE time < ?1", [cutoff])? as u64;
    }
    if retention.max_rows > 0 {
        let rows = count(conn)?;
        if rows > retention.max_rows {
            deleted += delete_oldest(conn, rows - retention.max_rows)?;
        }
    }
    Ok(deleted)
}

/// Deletes the `n` oldest rows and returns how many went.
pub fn delete_oldest(conn: &Connection, n: u64) -> Result<u64, rusqlite::Error> {
    let n = i64::try_from(n).unwrap_or(i64::MAX);
    let deleted = conn.execute(
        "DELETE FROM requests WHERE id IN \
         (SELECT id FROM requests ORDER BY time ASC, id ASC LIMIT ?1)",
        [n],
    )?;
    Ok(deleted as u64)
}

/// The `WHERE` clause and its parameters for `query` (without the limit).
fn selection(query: &Query) -> (String, Vec<rusqlite::types::Value>) {
    use rusqlite::types::Value;
    let mut conditions = Vec::new();
    let mut values = Vec::new();
    if let Some(start) = query.start {
        conditions.push("time >= ?");
        values.push(Value::Text(time::format_unix(start)));
    }
    if let Some(end) = query.end {
        conditions.push("time <= ?");
        values.push(Value::Text(time::format_unix(end)));
    }
    if let Some(model) = &query.model {
        conditions.push("model = ?");
        values.push(Value::Text(model.clone()));
    }
    let clause = if conditions.is_empty() {
        String::new()
    } else {
        format!(" WHERE {}", conditions.join(" AND "))
    };
    (clause, values)
}

/// The selected records, newest first.
pub fn list(conn: &Connection, query: &Query) -> Result<Vec<Record>, rusqlite::Error> {
    let (clause, mut values) = selection(query);
    let mut sql = format!(
        "SELECT {} FROM requests{clause} ORDER BY time DESC, id DESC",
        COLUMNS.join(",")
    );
    if let Some(limit) = query.limit {
        sql.push_str(" LIMIT ?");
        values.push(rusqlite::types::Value::Integer(
            i64::try_from(limit).unwrap_or(i64::MAX),
        ));
    }
    let mut stmt = conn.prepare(&sql)?;
    let rows = stmt.query_map(params_from_iter(values), |row| {
        let transforms: String = row.get(20)?;
        Ok(Record {
            time: row.get(0)?,
            provider: row.get(1)?,
            api: row.get(2)?,
            model: row.get(3)?,
            stack: row.get(4)?,
            path: row.get(5)?,
            status: row.get(6)?,
            stream: row.get(7)?,
            tokens_before: row.get(8)?,
            tokens_after: row.get(9)?,
            tokens_saved: row.get(10)?,
            input_tokens: row.get(11)?,
            output_tokens: row.get(12)?,
            cache_read_tokens: row.get(13)?,
            cache_write_tokens: row.get(14)?,
            cost_usd: row.get(15)?,
            savings_usd: row.get(16)?,
            latency_ms: row.get(17)?,
            ttfb_ms: row.get(18)?,
            overhead_ms: row.get(19)?,
            transforms: serde_json::from_str(&transforms).unwrap_or_default(),
            fail_open: row.get(21)?,
        })
    })?;
    rows.collect()
}

/// Totals over the selected records (the limit is ignored).
pub fn summary(conn: &Connection, query: &Query) -> Result<Summary, rusqlite::Error> {
    let (clause, values) = selection(query);
    let both = "tokens_before IS NOT NULL AND tokens_after IS NOT NULL";
    let sql = format!(
        "SELECT COUNT(*), COALESCE(SUM(tokens_before),0), COALESCE(SUM(tokens_after),0), \
         COALESCE(SUM(tokens_saved),0), \
         SUM(CASE WHEN {both} THEN tokens_before END), SUM(CASE WHEN {both} THEN tokens_after END), \
         COALESCE(SUM(input_tokens),0), COALESCE(SUM(output_tokens),0), \
         COALESCE(SUM(cost_usd),0.0), COALESCE(SUM(savings_usd),0.0), \
         COALESCE(SUM(cost_usd IS NULL),0) \
         FROM requests{clause}"
    );
    conn.query_row(&sql, params_from_iter(values), |row| {
        let total_requests = u64::try_from(row.get::<_, i64>(0)?).unwrap_or(0);
        let total_tokens_saved: i64 = row.get(3)?;
        let before_both: Option<i64> = row.get(4)?;
        let after_both: Option<i64> = row.get(5)?;
        Ok(Summary {
            total_requests,
            total_tokens_before: row.get(1)?,
            total_tokens_after: row.get(2)?,
            total_tokens_saved,
            avg_tokens_saved: if total_requests == 0 {
                0.0
            } else {
                total_tokens_saved as f64 / total_requests as f64
            },
            avg_compression_ratio: match (before_both, after_both) {
                (Some(b), Some(a)) if b > 0 => Some(a as f64 / b as f64),
                _ => None,
            },
            total_input_tokens: row.get(6)?,
            total_output_tokens: row.get(7)?,
            total_cost_usd: round6(row.get(8)?),
            total_cost_saved_usd: round6(row.get(9)?),
            requests_unknown_cost: u64::try_from(row.get::<_, i64>(10)?).unwrap_or(0),
        })
    })
}

/// `PRAGMA quick_check`: `Ok("ok")` for a sound database, else what it found.
pub fn quick_check(conn: &Connection) -> Result<String, rusqlite::Error> {
    let mut stmt = conn.prepare("PRAGMA quick_check")?;
    let lines = stmt
        .query_map([], |r| r.get::<_, String>(0))?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(lines.join("; "))
}

/// Read connections to one database file, kept for reuse by queries off the worker threads.
pub struct Readers {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
}

impl Readers {
    /// At most this many idle connections are kept.
    const KEEP: usize = 4;

    /// Readers of the database at `path`.
    pub fn new(path: PathBuf) -> Self {
        Self {
            path,
            idle: Mutex::new(Vec::new()),
        }
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` on a connection (an idle one, or a new one).
    pub fn with<R>(
        &self,
        f: impl FnOnce(&Connection) -> Result<R, rusqlite::Error>,
    ) -> Result<R, rusqlite::Error> {
        let idle = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let conn = match idle {
            Some(conn) => conn,
            None => open_for_reading(&self.path)?,
        };
        let result = f(&conn);
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < Self::KEEP {
            idle.push(conn);
        }
        result
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A unique temporary directory, removed on drop.
    pub struct TempDir(pub PathBuf);

    impl TempDir {
        pub fn new(tag: &str) -> Self {
            use std::sync::atomic::{AtomicU64, Ordering};
            static N: AtomicU64 = AtomicU64::new(0);
            let dir = std::env::temp_dir().join(format!(
                "headroom-{tag}-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ));
            std::fs::create_dir_all(&dir).unwrap();
            Self(dir)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    pub fn record(
        time: &str,
        model: Option<&str>,
        before: Option<i64>,
        after: Option<i64>,
    ) -> Record {
        Record {
            time: time.into(),
            provider: "openai".into(),
            api: "openai_chat".into(),
            model: model.map(str::to_owned),
            stack: "unknown".into(),
            path: "/v1/chat/completions".into(),
            status: Some(200),
            stream: false,
            tokens_before: before,
            tokens_after: after,
            tokens_saved: before.zip(after).map_or(0, |(b, a)| b - a),
            input_tokens: Some(100),
            output_tokens: Some(5),
            cache_read_tokens: Some(0),
            cache_write_tokens: None,
            cost_usd: model.map(|_| 0.001_25),
            savings_usd: Some(0.000_5),
            latency_ms: Some(12.5),
            ttfb_ms: Some(3.0),
            overhead_ms: Some(0.25),
            transforms: vec!["json:smart_crusher".into()],
            fail_open: None,
        }
    }

    #[test]
    fn insert_list_and_summarise() {
        let dir = TempDir::new("store");
        let path = dir.0.join("h.db");
        let mut conn = open_for_writing(&path).unwrap();
        let records = vec![
            record(
                "2026-11-27T07:00:00Z",
                Some("gpt-4o"),
                Some(1000),
                Some(200),
            ),
            record("2026-11-27T08:00:00Z", None, None, None),
            record(
                "2026-11-27T09:00:00Z",
                Some("gpt-4o-mini"),
                Some(500),
                Some(500),
            ),
        ];
        insert(&mut conn, &records).unwrap();
        let all = list(&conn, &Query::default()).unwrap();
        assert_eq!(all.len(), 3);
        assert_eq!(all[0], records[2], "newest first, every field back");
        assert_eq!(all[2], records[0]);
        let some = list(
            &conn,
            &Query {
                start: time::parse_rfc3339("2026-11-27T07:30:00Z"),
                model: Some("gpt-4o-mini".into()),
                ..Query::default()
            },
        )
        .unwrap();
        assert_eq!(some, vec![records[2].clone()]);
        let limited = list(
            &conn,
            &Query {
                limit: Some(1),
                end: time::parse_rfc3339("2026-11-27T08:00:00Z"),
                ..Query::default()
            },
        )
        .unwrap();
        assert_eq!(limited, vec![records[1].clone()]);

        let s = summary(&conn, &Query::default()).unwrap();
        assert_eq!(s.total_requests, 3);
        assert_eq!(s.total_tokens_before, 1500);
        assert_eq!(s.total_tokens_after, 700);
        assert_eq!(s.total_tokens_saved, 800);
        assert!((s.avg_tokens_saved - 800.0 / 3.0).abs() < 1e-9);
        assert_eq!(s.avg_compression_ratio, Some(700.0 / 1500.0));
        assert_eq!(s.total_cost_usd, 0.0025);
        assert_eq!(s.total_cost_saved_usd, 0.0015);
        assert_eq!(s.requests_unknown_cost, 1);
        assert_eq!(s.total_input_tokens, 300);
        let empty = summary(
            &conn,
            &Query {
                model: Some("none".into()),
                ..Query::default()
            },
        )
        .unwrap();
        assert_eq!(empty.total_requests, 0);
        assert_eq!(empty.avg_compression_ratio, None);
        assert_eq!(empty.avg_tokens_saved, 0.0);
        assert_eq!(quick_check(&conn).unwrap(), "ok");
    }

    #[test]
    fn retention_by_age_and_count() {
        let dir = TempDir::new("retention");
        let mut conn = open_for_writing(&dir.0.join("h.db")).unwrap();
        let now = time::parse_rfc3339("2026-11-27T00:00:00Z").unwrap();
        let records: Vec<Record> = [
            "2026-10-01T00:00:00Z",
            "2026-11-20T00:00:00Z",
            "2026-11-25T00:00:00Z",
            "2026-11-26T00:00:00Z",
            "2026-11-26T12:00:00Z",
        ]
        .iter()
        .map(|t| record(t, Some("m"), Some(10), Some(5)))
        .collect();
        insert(&mut conn, &records).unwrap();
        let retention = Retention {
            days: 30,
            max_rows: 3,
        };
        assert_eq!(apply_retention(&conn, retention, now).unwrap(), 2);
        let left: Vec<String> = list(&conn, &Query::default())
            .unwrap()
            .into_iter()
            .map(|r| r.time)
            .collect();
        assert_eq!(
            left,
            [
                "2026-11-26T12:00:00Z",
                "2026-11-26T00:00:00Z",
                "2026-11-25T00:00:00Z"
            ]
        );
        let off = Retention {
            days: 0,
            max_rows: 0,
        };
        assert_eq!(apply_retention(&conn, off, now).unwrap(), 0);
    }

    #[test]
    fn a_corrupt_file_is_moved_aside() {
        let dir = TempDir::new("corrupt");
        let path = dir.0.join("h.db");
        let junk: Vec<u8> = (0..8192u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        std::fs::write(&path, &junk).unwrap();
        assert!(matches!(
            open_for_writing(&path),
            Err(OpenError::Corrupt(_))
        ));
        let mut conn = open_or_recover(&path).expect("a fresh database");
        insert(
            &mut conn,
            &[record("2026-11-27T00:00:00Z", None, None, None)],
        )
        .unwrap();
        let aside: Vec<_> = std::fs::read_dir(&dir.0)
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().starts_with("h.db.corrupt-"))
            .collect();
        assert_eq!(aside.len(), 1);
        assert_eq!(std::fs::read(aside[0].path()).unwrap(), junk);
    }

    #[test]
    fn a_foreign_table_is_left_alone() {
        let dir = TempDir::new("foreign");
        let path = dir.0.join("h.db");
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch("CREATE TABLE requests (id TEXT PRIMARY KEY, timestamp TEXT)")
                .unwrap();
        }
        assert!(matches!(
            open_for_writing(&path),
            Err(OpenError::Foreign(_))
        ));
        assert!(open_or_recover(&path).is_none());
        assert!(path.exists());
    }

    #[test]
    fn readers_reuse_connections() {
        let dir = TempDir::new("readers");
        let path = dir.0.join("h.db");
        let mut conn = open_for_writing(&path).unwrap();
        insert(
            &mut conn,
            &[record("2026-11-27T00:00:00Z", None, None, None)],
        )
        .unwrap();
        let readers = Readers::new(path);
        for _ in 0..3 {
            assert_eq!(readers.with(count).unwrap(), 1);
        }
        assert_eq!(readers.idle.lock().unwrap().len(), 1);
        assert!(
            Readers::new(dir.0.join("missing/x.db"))
                .with(count)
                .is_err()
        );
    }
}

#[cfg(test)]
mod measure {
    use super::tests::{TempDir, record};
    use super::*;

    /// Insert throughput and file size (run with `--ignored --nocapture`).
    #[test]
    #[ignore]
    fn insert_throughput_and_size() {
        let dir = TempDir::new("measure");
        let path = dir.0.join("h.db");
        let mut conn = open_for_writing(&path).unwrap();
        let n = 100_000usize;
        let records: Vec<Record> = (0..n)
            .map(|i| {
                let t = time::format_unix(1_795_763_414 + i as i64);
                let model = ["gpt-4o", "gpt-4o-mini", "claude-sonnet-4-5"][i % 3];
                record(&t, Some(model), Some(1000 + i as i64 % 500), Some(300))
            })
            .collect();
        for batch_size in [1usize, 1024] {
            let sample = if batch_size == 1 { 10_000 } else { n };
            conn.execute_batch("DELETE FROM requests").unwrap();
            let started = std::time::Instant::now();
            for chunk in records[..sample].chunks(batch_size) {
                insert(&mut conn, chunk).unwrap();
            }
            let secs = started.elapsed().as_secs_f64();
            println!(
                "batch {batch_size}: {sample} records in {secs:.2} s = {:.0} records/s",
                sample as f64 / secs
            );
        }
        conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE); VACUUM;")
            .unwrap();
        let size = std::fs::metadata(&path).unwrap().len();
        println!(
            "{n} records: {size} bytes = {:.0} KiB per 10k records",
            size as f64 / n as f64 * 10_000.0 / 1024.0
        );
        let started = std::time::Instant::now();
        let s = summary(&conn, &Query::default()).unwrap();
        println!(
            "summary over {} rows: {:?}",
            s.total_requests,
            started.elapsed()
        );
        let started = std::time::Instant::now();
        let page = list(
            &conn,
            &Query {
                limit: Some(100),
                model: Some("gpt-4o".into()),
                ..Query::default()
            },
        )
        .unwrap();
        println!(
            "newest 100 of a model: {} in {:?}",
            page.len(),
            started.elapsed()
        );
        let started = std::time::Instant::now();
        println!(
            "quick_check: {} in {:?}",
            quick_check(&conn).unwrap(),
            started.elapsed()
        );
        let started = std::time::Instant::now();
        let deleted = apply_retention(
            &conn,
            Retention {
                days: 0,
                max_rows: 50_000,
            },
            0,
        )
        .unwrap();
        println!("retention deleted {deleted} in {:?}", started.elapsed());
    }
}
