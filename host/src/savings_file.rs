//! Persistence of the filter's savings ledger: `proxy_savings.json` is loaded into shared data
//! before the first request and written back, atomically, within a second of every change and
//! at shutdown.
//!
//! The ledger itself (its math, its layout in shared data, the file format and its import) is
//! the filter's code, `headroom_plugin::savings`, linked natively here: the host only moves
//! bytes between shared data and the disk. A file that is not a savings file is moved aside as
//! `<name>.corrupt-<unix seconds>` and the proxy starts with an empty ledger; a write is temp
//! file → write → fsync → rename → directory fsync, so a crash at any moment leaves either the
//! old or the new file, never a torn one.
//!
//! A file that exists but cannot be read (permissions, an I/O error, a directory in its place)
//! is never written over: the ledger is kept in memory and the reason logged and reported. One
//! process at a time writes a file: the writer holds an advisory lock (`flock`) on
//! `<name>.lock`; a second process finds it taken, says so, and keeps its savings in memory.
//! Files are created 0600 and directories 0700.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use headroom_plugin::savings::{self, KeyValue, StorageInfo, file};

use crate::abi::shared::SharedData;
use crate::abi::types::Status;
use crate::paths;

/// How often the writer looks for a change (a change is on disk within this plus a write).
const POLL: Duration = Duration::from_millis(250);

/// The host's shared data as the ledger's key-value store.
pub struct SharedKv<'a>(pub &'a SharedData);

impl KeyValue for SharedKv<'_> {
    fn get(&self, key: &str) -> Option<(Vec<u8>, u32)> {
        self.0.get(key.as_bytes())
    }

    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> bool {
        self.0.set(key.as_bytes(), value, cas.unwrap_or(0)) == Status::Ok
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// What loading found.
#[derive(Debug, Clone, PartialEq)]
pub struct Loaded {
    /// The ledger to start from.
    pub ledger: savings::Ledger,
    /// What `/stats` reports about the storage.
    pub info: StorageInfo,
}

/// Reads the savings file at `path`: missing → empty; not a savings file → moved aside, empty;
/// unreadable → empty, with the error in `info.load_error`.
pub fn load(path: &Path, stateless: bool) -> Loaded {
    load_with(path, stateless, true).0
}

/// [`load`]; `owner`: this process may tidy the file's directory (remove stale temp files, move
/// a corrupt file aside). The flag returned is true when the file exists but cannot be read.
fn load_with(path: &Path, stateless: bool, owner: bool) -> (Loaded, bool) {
    let mut info = StorageInfo {
        storage_path: Some(path.display().to_string()),
        stateless,
        ..StorageInfo::default()
    };
    if owner {
        remove_stale_temp_files(path);
    }
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            tracing::info!(path = %path.display(), "no savings file yet; starting empty");
            let loaded = Loaded {
                ledger: savings::Ledger::default(),
                info,
            };
            return (loaded, false);
        }
        Err(e) => {
            info.load_error = Some(format!("cannot read {}: {e}", path.display()));
            let loaded = Loaded {
                ledger: savings::Ledger::default(),
                info,
            };
            return (loaded, true);
        }
    };
    match file::load(&bytes) {
        Ok(loaded) => {
            if loaded.schema_version != Some(savings::SCHEMA_VERSION) {
                info.imported_schema = loaded.schema_version;
                tracing::info!(
                    path = %path.display(),
                    schema = ?loaded.schema_version,
                    "imported a savings file of another schema; it is written back as schema 3"
                );
            }
            tracing::info!(
                path = %path.display(),
                requests = loaded.ledger.head.lifetime.requests,
                tokens_saved = loaded.ledger.head.lifetime.tokens_saved,
                checkpoints = loaded.ledger.history.len(),
                "savings loaded"
            );
            let loaded = Loaded {
                ledger: loaded.ledger,
                info,
            };
            (loaded, false)
        }
        Err(error) if !owner => {
            // Another process owns the file; it decides what to do with it.
            tracing::warn!(path = %path.display(), "the savings file is unreadable ({error}); starting empty");
            info.load_error = Some(error.to_string());
            let loaded = Loaded {
                ledger: savings::Ledger::default(),
                info,
            };
            (loaded, false)
        }
        Err(error) => {
            let aside = PathBuf::from(format!("{}.corrupt-{}", path.display(), unix_now()));
            info.load_error = Some(error.to_string());
            match std::fs::rename(path, &aside) {
                Ok(()) => {
                    tracing::warn!(
                        path = %path.display(),
                        moved_to = %aside.display(),
                        "the savings file is unreadable ({error}); moved aside, starting empty"
                    );
                    info.corrupt_file_moved_to = Some(aside.display().to_string());
                }
                Err(e) => tracing::warn!(
                    path = %path.display(),
                    "the savings file is unreadable ({error}) and cannot be moved aside ({e}); starting empty"
                ),
            }
            let loaded = Loaded {
                ledger: savings::Ledger::default(),
                info,
            };
            (loaded, false)
        }
    }
}

/// The temp file a write of `path` by process `pid` uses.
fn temp_path(path: &Path, pid: u32) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "proxy_savings.json".into());
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    dir.join(format!(".{name}.{pid}.tmp"))
}

/// Removes temp files a killed process left half-written (they were never renamed over the
/// file, so they hold nothing the file lacks).
fn remove_stale_temp_files(path: &Path) {
    let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) else {
        return;
    };
    let Some(name) = path.file_name().map(|n| n.to_string_lossy().into_owned()) else {
        return;
    };
    let prefix = format!(".{name}.");
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let file = entry.file_name().to_string_lossy().into_owned();
        if file.starts_with(&prefix) && file.ends_with(".tmp") {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// Writes `bytes` to `path` atomically and durably.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    };
    paths::create_private_dir_all(&dir)?;
    let tmp = temp_path(path, std::process::id());
    let result = (|| {
        let mut file = paths::private_file()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)?;
        // A temp file left by an earlier process with this pid keeps its mode: set it.
        file.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)?;
        std::fs::File::open(&dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// The advisory lock file of the savings file at `path`: `<name>.lock` beside it.
pub fn lock_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".lock");
    PathBuf::from(name)
}

/// What taking the savings file's lock found.
enum Lock {
    /// This process holds it for as long as the file stays open.
    Held(std::fs::File),
    /// Another process holds it (its pid, when it wrote one).
    Busy(Option<u32>),
    /// The lock file cannot be opened or locked (the reason).
    Unavailable(std::io::Error),
}

/// Takes the lock on `<path>.lock` without waiting, and writes this process's pid into it.
fn take_lock(path: &Path) -> Lock {
    let lock_path = lock_path(path);
    if let Some(dir) = lock_path.parent().filter(|d| !d.as_os_str().is_empty())
        && let Err(e) = paths::create_private_dir_all(dir)
    {
        return Lock::Unavailable(e);
    }
    let file = match paths::private_file()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&lock_path)
    {
        Ok(file) => file,
        Err(e) => return Lock::Unavailable(e),
    };
    match file.try_lock() {
        Ok(()) => {
            let _ = file.set_len(0);
            let _ = (&file).write_all(
                format!(
                    "{}
",
                    std::process::id()
                )
                .as_bytes(),
            );
            Lock::Held(file)
        }
        Err(std::fs::TryLockError::WouldBlock) => {
            let owner = std::fs::read_to_string(&lock_path)
                .ok()
                .and_then(|s| s.trim().parse().ok());
            Lock::Busy(owner)
        }
        Err(std::fs::TryLockError::Error(e)) => Lock::Unavailable(e),
    }
}

/// The running persistence: a thread that saves the ledger when it changes.
pub struct Persistence {
    stop: mpsc::Sender<()>,
    thread: Option<JoinHandle<()>>,
}

/// Loads the ledger into `shared` and, unless `stateless`, starts the writer. Returns `None`
/// when there is nothing to write: the ledger then lives in memory only. That is also the case
/// when another process holds the file's lock, or when the file exists but cannot be read
/// (each logged, and reported in `/stats` → `persistent_savings.storage`).
pub fn start(path: PathBuf, stateless: bool, shared: Arc<SharedData>) -> Option<Persistence> {
    let lock = if stateless {
        None
    } else {
        match take_lock(&path) {
            Lock::Held(file) => Some(file),
            Lock::Busy(owner) => {
                let owner =
                    owner.map_or_else(|| "another process".to_string(), |p| format!("process {p}"));
                let message = format!(
                    "{} is in use by another headroom ({owner} holds {}); this process keeps its savings in memory only",
                    path.display(),
                    lock_path(&path).display()
                );
                tracing::warn!("{message}");
                let (mut loaded, _) = load_with(&path, true, false);
                loaded.info.load_error = Some(message);
                savings::write_shared(&SharedKv(&shared), &loaded.ledger);
                publish(&shared, &loaded.info);
                return None;
            }
            Lock::Unavailable(e) => {
                tracing::warn!(
                    lock = %lock_path(&path).display(),
                    "cannot lock the savings file ({e}); another process on the same file would not be noticed"
                );
                None
            }
        }
    };
    let (mut loaded, unreadable) = load_with(&path, stateless, true);
    if unreadable && !stateless {
        let reason = loaded.info.load_error.clone().unwrap_or_default();
        tracing::error!(
            path = %path.display(),
            "{reason}; it is not a missing or corrupt file, so it is left alone: savings are kept in memory only and never written to it (fix it and restart)"
        );
        loaded.info.stateless = true;
        loaded.info.load_error = Some(format!(
            "{reason}; savings are kept in memory only until it can be read (fix it and restart)"
        ));
    } else if unreadable {
        tracing::warn!(path = %path.display(), "{}", loaded.info.load_error.clone().unwrap_or_default());
    }
    savings::write_shared(&SharedKv(&shared), &loaded.ledger);
    publish(&shared, &loaded.info);
    if stateless {
        tracing::info!("stateless: savings are kept in memory only");
        return None;
    }
    if unreadable {
        return None;
    }
    let (stop, stopped) = mpsc::channel();
    let thread = std::thread::Builder::new()
        .name("headroom-savings".into())
        .spawn(move || {
            // The lock lives as long as the writer.
            let _lock = lock;
            writer(&path, &shared, loaded.info, &stopped)
        })
        .map_err(|e| tracing::warn!("cannot start the savings writer: {e}; savings kept in memory"))
        .ok()?;
    Some(Persistence {
        stop,
        thread: Some(thread),
    })
}

fn publish(shared: &SharedData, info: &StorageInfo) {
    if let Ok(bytes) = serde_json::to_vec(info) {
        shared.insert(savings::STORAGE_KEY.as_bytes(), &bytes);
    }
}

/// The ledger's change marker: the CAS token of its head (bumped by every update).
fn version(shared: &SharedData) -> Option<u32> {
    shared.get(savings::HEAD_KEY.as_bytes()).map(|(_, cas)| cas)
}

fn writer(path: &Path, shared: &SharedData, mut info: StorageInfo, stopped: &mpsc::Receiver<()>) {
    let mut saved = version(shared);
    loop {
        let stop = match stopped.recv_timeout(POLL) {
            Ok(()) | Err(RecvTimeoutError::Disconnected) => true,
            Err(RecvTimeoutError::Timeout) => false,
        };
        let current = version(shared);
        if current != saved {
            let ledger = savings::read_shared(&SharedKv(shared));
            match write_atomic(path, &file::render(&ledger)) {
                Ok(()) => {
                    saved = current;
                    info.last_saved_at = Some(unix_now());
                    publish(shared, &info);
                }
                Err(e) => {
                    tracing::warn!(path = %path.display(), "cannot save the savings file: {e}")
                }
            }
        }
        if stop {
            return;
        }
    }
}

impl Persistence {
    /// Writes any pending change and stops the writer.
    pub fn shutdown(mut self) {
        let _ = self.stop.send(());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "headroom-savings-{name}-{}-{}",
            std::process::id(),
            unix_now()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)
            .map(|_| dir)
            .unwrap_or_default()
    }

    #[test]
    fn corrupt_files_are_moved_aside() {
        let dir = temp_dir("corrupt");
        let path = dir.join("proxy_savings.json");
        std::fs::write(&path, b"{\"lifetime\": {\"requests\": 3").unwrap_or_default();
        let loaded = load(&path, false);
        assert_eq!(loaded.ledger, savings::Ledger::default());
        let moved = loaded.info.corrupt_file_moved_to.unwrap_or_default();
        assert!(moved.contains(".corrupt-"), "{moved}");
        assert!(!path.exists());
        assert_eq!(std::fs::read(&moved).ok().map(|b| b.len()), Some(27));
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn atomic_write_replaces_and_leaves_no_temp_file() {
        let dir = temp_dir("atomic");
        let path = dir.join("sub").join("proxy_savings.json");
        assert!(write_atomic(&path, b"one").is_ok());
        assert!(write_atomic(&path, b"two").is_ok());
        assert_eq!(std::fs::read(&path).ok().as_deref(), Some(&b"two"[..]));
        let entries = std::fs::read_dir(path.parent().unwrap_or(&dir))
            .map(|d| d.count())
            .unwrap_or(0);
        assert_eq!(entries, 1);
        let _ = std::fs::remove_dir_all(dir);
    }
}
