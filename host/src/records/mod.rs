//! Stored per-request metrics: the record the filter leaves in its `headroom_record` property
//! when an exchange ends is handed (without blocking the worker) to a writer thread, which
//! appends it to the `--log-file` (one JSON line per request, the filter's bytes verbatim) and
//! inserts it into the request database (SQLite, see [`store`]), applying the retention.
//!
//! - [`record`]: the record's fields and parsing.
//! - [`store`]: the database (schema, inserts, retention, queries, corruption recovery).
//! - [`time`]: RFC 3339, unix seconds and relative durations.
//!
//! The endpoints that read them are [`crate::operator`]'s. This module depends on no other
//! layer of the host: the proxy hands it records through [`submit`].
//!
//! The running proxy's records live in a process-wide slot ([`start`] fills it,
//! [`Records::shutdown`] empties it): the capture point ([`submit`], called when a stream's
//! state is discarded after `proxy_on_log`) and the endpoints reach it from any worker.

pub mod record;
pub mod store;
pub mod time;

use std::fs::File;
use std::io::{BufWriter, Write as _};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TryRecvError, TrySendError};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use rusqlite::Connection;

use record::Record;
use store::{Readers, Retention};

/// The property the filter sets (`wasm.headroom_record` filter state in Envoy).
pub const PROPERTY: &str = "headroom_record";

/// Records waiting for the writer; beyond this many, new ones are dropped and counted.
pub const QUEUE_CAPACITY: usize = 8_192;

/// The most records written in one transaction.
const BATCH: usize = 1_024;

/// How long the writer gathers records after the first of a batch: one transaction (and one
/// log-file write) per this interval under load instead of one per record.
const LINGER: Duration = Duration::from_millis(100);

/// How often the age retention runs (the row limit is checked after every batch).
const RETENTION_EVERY: Duration = Duration::from_secs(60);

/// How often a failing log file or database is reported, at most.
const WARN_EVERY: Duration = Duration::from_secs(60);

/// What `headroom proxy` does with records.
#[derive(Clone, Debug, Default)]
pub struct Config {
    /// `--log-file`: append each record as one line.
    pub log_file: Option<PathBuf>,
    /// The request database (`None`: `--stateless`).
    pub database: Option<PathBuf>,
    /// How many rows the database keeps.
    pub retention: Retention,
}

/// What the capture point and the endpoints share with the writer.
struct Shared {
    /// Where records go (`None`: neither a log file nor a database).
    sender: Option<SyncSender<Vec<u8>>>,
    /// Read connections to the database (`None`: no database).
    readers: Option<Arc<Readers>>,
    /// Why there is no database, for the endpoints' 503.
    no_database: String,
}

static SHARED: RwLock<Option<Arc<Shared>>> = RwLock::new(None);
static DROPPED: AtomicU64 = AtomicU64::new(0);
static INVALID: AtomicU64 = AtomicU64::new(0);

fn shared() -> Option<Arc<Shared>> {
    SHARED.read().unwrap_or_else(|p| p.into_inner()).clone()
}

/// Records dropped because the writer's queue was full, since the process started.
pub fn dropped_total() -> u64 {
    DROPPED.load(Ordering::Relaxed)
}

/// Property values that were not a record (not JSON of the record's shape).
pub fn invalid_total() -> u64 {
    INVALID.load(Ordering::Relaxed)
}

/// A Prometheus collector exporting [`dropped_total`] as `headroom_host_records_dropped_total`,
/// for the host's registry (`registry.register(records::dropped_collector()?)`).
pub fn dropped_collector() -> prometheus::Result<Box<dyn prometheus::core::Collector>> {
    struct Dropped(prometheus::IntCounter);
    impl prometheus::core::Collector for Dropped {
        fn desc(&self) -> Vec<&prometheus::core::Desc> {
            self.0.desc()
        }
        fn collect(&self) -> Vec<prometheus::proto::MetricFamily> {
            let value = dropped_total();
            self.0.inc_by(value.saturating_sub(self.0.get()));
            self.0.collect()
        }
    }
    Ok(Box::new(Dropped(prometheus::IntCounter::new(
        "headroom_host_records_dropped_total",
        "Per-request records dropped because the record writer was behind",
    )?)))
}

/// Hands a finished stream's `headroom_record` value to the writer. Never blocks: when the
/// queue is full the record is dropped and counted. Without a running writer it is discarded.
pub fn submit(value: Vec<u8>) {
    let Some(shared) = shared() else {
        return;
    };
    let Some(sender) = &shared.sender else {
        return;
    };
    match sender.try_send(value) {
        Ok(()) | Err(TrySendError::Disconnected(_)) => {}
        Err(TrySendError::Full(_)) => {
            if DROPPED.fetch_add(1, Ordering::Relaxed) == 0 {
                tracing::warn!(
                    "the record writer is behind: records are being dropped (counted as records_dropped in /v1/headroom/summary)"
                );
            }
        }
    }
}

/// The running writer; [`Records::shutdown`] (or dropping it) drains the queue and stops it.
pub struct Records {
    thread: Option<std::thread::JoinHandle<()>>,
}

/// Starts the writer and makes it the process's record sink. A log file that cannot be opened
/// is an error; a database that cannot be opened is not (a warning, then no database; a
/// corrupt one is moved aside and replaced).
pub fn start(config: Config) -> Result<Records> {
    let log = match &config.log_file {
        Some(path) => Some(LogFile::open(path)?),
        None => None,
    };
    let (db, no_database) = match &config.database {
        None => (
            None,
            "the request database is off (--stateless)".to_string(),
        ),
        Some(path) => match store::open_or_recover(path) {
            Some(conn) => (
                Some(Database::new(conn, path.clone(), config.retention)),
                String::new(),
            ),
            None => (
                None,
                format!(
                    "the request database {} could not be opened (see the proxy's log)",
                    path.display()
                ),
            ),
        },
    };
    let readers = db.as_ref().map(|d| Arc::new(Readers::new(d.path.clone())));
    let (sender, thread) = if log.is_none() && db.is_none() {
        (None, None)
    } else {
        let (tx, rx) = std::sync::mpsc::sync_channel(QUEUE_CAPACITY);
        let thread = std::thread::Builder::new()
            .name("headroom-records".into())
            .spawn(move || Writer { log, db }.run(rx))
            .context("starting the record writer")?;
        (Some(tx), Some(thread))
    };
    if let Some(db) = &readers {
        tracing::info!(path = %db.path().display(), "request records stored in {}", db.path().display());
    }
    *SHARED.write().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(Shared {
        sender,
        readers,
        no_database,
    }));
    Ok(Records { thread })
}

impl Records {
    /// Stops taking records, writes what is queued, applies the retention and closes the files.
    /// Call it after the proxy has stopped, so the last exchanges' records are in.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        // Dropping the slot's sender (and any clone a submitter holds, briefly) ends the writer.
        *SHARED.write().unwrap_or_else(|p| p.into_inner()) = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Records {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The append-only JSON-lines file.
struct LogFile {
    path: PathBuf,
    out: BufWriter<File>,
    last_warning: Option<Instant>,
}

impl LogFile {
    fn open(path: &std::path::Path) -> Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            crate::paths::create_private_dir_all(dir)
                .with_context(|| format!("creating the log file's directory {}", dir.display()))?;
        }
        let file = crate::paths::private_file()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("opening the log file {}", path.display()))?;
        Ok(Self {
            path: path.to_path_buf(),
            out: BufWriter::new(file),
            last_warning: None,
        })
    }

    fn append(&mut self, line: &[u8]) {
        let result = self
            .out
            .write_all(line)
            .and_then(|()| self.out.write_all(b"\n"));
        if let Err(e) = result {
            self.warn(&e);
        }
    }

    fn flush(&mut self) {
        if let Err(e) = self.out.flush() {
            self.warn(&e);
        }
    }

    fn warn(&mut self, e: &std::io::Error) {
        if self.last_warning.is_none_or(|t| t.elapsed() >= WARN_EVERY) {
            tracing::warn!("writing the log file {}: {e}", self.path.display());
            self.last_warning = Some(Instant::now());
        }
    }
}

/// The writer's connection to the request database.
struct Database {
    conn: Connection,
    path: PathBuf,
    retention: Retention,
    /// Rows in the table, as far as the writer knows.
    rows: u64,
    last_retention: Instant,
    last_warning: Option<Instant>,
}

impl Database {
    fn new(conn: Connection, path: PathBuf, retention: Retention) -> Self {
        let mut db = Self {
            rows: store::count(&conn).unwrap_or(0),
            conn,
            path,
            retention,
            last_retention: Instant::now(),
            last_warning: None,
        };
        db.retain();
        db
    }

    fn retain(&mut self) {
        match store::apply_retention(&self.conn, self.retention, time::now_unix()) {
            Ok(deleted) => {
                if deleted > 0 {
                    tracing::debug!(deleted, "request records past the retention deleted");
                }
                self.rows = store::count(&self.conn).unwrap_or(0);
            }
            Err(e) => self.warn("applying the retention", &e),
        }
        self.last_retention = Instant::now();
    }

    fn insert(&mut self, records: &[Record]) {
        match store::insert(&mut self.conn, records) {
            Ok(()) => self.rows += records.len() as u64,
            Err(e) if store::is_corruption(&e) => {
                tracing::warn!(
                    "the request database {} is damaged: {e}",
                    self.path.display()
                );
                if let Some(conn) = self.reopen() {
                    self.conn = conn;
                    self.rows = 0;
                    if store::insert(&mut self.conn, records).is_ok() {
                        self.rows += records.len() as u64;
                    }
                }
            }
            Err(e) => self.warn("storing records", &e),
        }
        if self.last_retention.elapsed() >= RETENTION_EVERY {
            self.retain();
        } else if self.retention.max_rows > 0 && self.rows > self.retention.max_rows {
            // At the cap, each batch deletes as many of the oldest rows as it added.
            match store::delete_oldest(&self.conn, self.rows - self.retention.max_rows) {
                Ok(deleted) => self.rows = self.rows.saturating_sub(deleted),
                Err(e) => self.warn("applying the row limit", &e),
            }
        }
    }

    /// Closes the damaged database, moves it aside and opens a fresh one.
    fn reopen(&mut self) -> Option<Connection> {
        let placeholder = Connection::open_in_memory().ok()?;
        let old = std::mem::replace(&mut self.conn, placeholder);
        drop(old);
        store::open_or_recover(&self.path)
    }

    fn warn(&mut self, what: &str, e: &rusqlite::Error) {
        if self.last_warning.is_none_or(|t| t.elapsed() >= WARN_EVERY) {
            tracing::warn!("{what} in {}: {e}", self.path.display());
            self.last_warning = Some(Instant::now());
        }
    }

    fn close(mut self) {
        self.retain();
        let _ = self
            .conn
            .execute_batch("PRAGMA optimize; PRAGMA wal_checkpoint(TRUNCATE);");
    }
}

/// The writer thread.
struct Writer {
    log: Option<LogFile>,
    db: Option<Database>,
}

impl Writer {
    fn run(mut self, rx: Receiver<Vec<u8>>) {
        let mut batch: Vec<Vec<u8>> = Vec::with_capacity(BATCH);
        let mut open = true;
        while open {
            match rx.recv_timeout(RETENTION_EVERY) {
                Ok(value) => batch.push(value),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => open = false,
            }
            if open && !batch.is_empty() {
                // Sleeping (rather than waiting on the channel) spares the workers a wake-up
                // per record; the queue holds what arrives meanwhile.
                std::thread::sleep(LINGER);
            }
            while batch.len() < BATCH {
                match rx.try_recv() {
                    Ok(value) => batch.push(value),
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => {
                        open = false;
                        break;
                    }
                }
            }
            self.write(&mut batch);
        }
        if let Some(db) = self.db.take() {
            db.close();
        }
        if let Some(log) = &mut self.log {
            log.flush();
        }
    }

    fn write(&mut self, batch: &mut Vec<Vec<u8>>) {
        let now = time::now_unix();
        let mut records = Vec::with_capacity(batch.len());
        for value in batch.drain(..) {
            match record::parse(&value, now) {
                Ok(record) => {
                    if let Some(log) = &mut self.log {
                        log.append(&value);
                    }
                    records.push(record);
                }
                Err(e) => {
                    if INVALID.fetch_add(1, Ordering::Relaxed) == 0 {
                        tracing::warn!("the filter's {PROPERTY} was not taken: {e}");
                    }
                }
            }
        }
        if let Some(log) = &mut self.log {
            log.flush();
        }
        if let Some(db) = &mut self.db {
            if !records.is_empty() {
                db.insert(&records);
            } else if db.last_retention.elapsed() >= RETENTION_EVERY {
                db.retain();
            }
        }
    }
}

/// The database's readers, or why there are none.
/// The database's readers, or why there are none (for the endpoints' 503).
pub fn readers() -> Result<Arc<Readers>, String> {
    match shared() {
        Some(s) => s.readers.clone().ok_or_else(|| s.no_database.clone()),
        None => Err("request records are off in this host".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use store::tests::TempDir;

    fn value(model: &str) -> Vec<u8> {
        format!(
            r#"{{"time":"2026-11-27T07:10:14Z","provider":"openai","api":"openai_chat","model":"{model}","stack":"unknown","path":"/v1/chat/completions","status":200,"stream":false,"tokens_before":null,"tokens_after":null,"tokens_saved":0,"input_tokens":12,"output_tokens":5,"cache_read_tokens":0,"cache_write_tokens":null,"cost_usd":null,"savings_usd":null,"latency_ms":3.5,"ttfb_ms":2.0,"overhead_ms":0.1,"transforms":[],"fail_open":null}}"#
        )
        .into_bytes()
    }

    /// The only test that installs the process-wide sink.
    #[test]
    fn submitted_records_reach_the_log_file_and_the_database() {
        let dir = TempDir::new("records");
        let log = dir.0.join("logs/requests.jsonl");
        let db = dir.0.join("db/headroom.db");
        std::fs::create_dir_all(log.parent().unwrap()).unwrap();
        std::fs::write(&log, b"earlier line\n").unwrap();
        let records = start(Config {
            log_file: Some(log.clone()),
            database: Some(db.clone()),
            retention: Retention {
                days: 0,
                max_rows: 2,
            },
        })
        .unwrap();
        let models = ["unit-a", "unit-b", "unit-c"];
        for model in models {
            submit(value(model));
        }
        submit(b"not json".to_vec());
        records.shutdown();
        submit(value("after-shutdown"));

        let text = std::fs::read_to_string(&log).unwrap();
        let ours: Vec<&str> = text.lines().filter(|l| l.contains("\"unit-")).collect();
        assert!(
            text.starts_with("earlier line\n"),
            "appended, not truncated"
        );
        assert_eq!(ours.len(), 3, "{text}");
        for (line, model) in ours.iter().zip(models) {
            assert_eq!(line.as_bytes(), value(model), "verbatim");
        }
        assert!(!text.contains("not json") && !text.contains("after-shutdown"));
        assert!(invalid_total() >= 1);

        let conn = store::open_for_reading(&db).unwrap();
        let kept = store::list(&conn, &store::Query::default()).unwrap();
        assert_eq!(kept.len(), 2, "the row limit holds");
        assert!(kept.iter().all(|r| r.model.as_deref() != Some("unit-a")));
    }

    #[test]
    fn the_dropped_counter_exports() {
        let registry = prometheus::Registry::new();
        registry.register(dropped_collector().unwrap()).unwrap();
        let families = registry.gather();
        assert_eq!(families.len(), 1);
        assert_eq!(families[0].name(), "headroom_host_records_dropped_total");
        assert_eq!(
            families[0].get_metric()[0].get_counter().get_value(),
            dropped_total() as f64
        );
    }

    #[test]
    fn a_log_file_that_cannot_be_opened_is_an_error() {
        let dir = TempDir::new("records-bad-log");
        let blocker = dir.0.join("file");
        std::fs::write(&blocker, b"x").unwrap();
        assert!(LogFile::open(&blocker.join("x.jsonl")).is_err());
    }
}
