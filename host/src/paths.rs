//! Where the host keeps its files: the savings file `proxy_savings.json` (resolved exactly as
//! docs/upstream.md §2 "Location" says) and the request database `headroom.db` beside it.
//!
//! Every function takes the environment as a parameter ([`Env`]), so the rules are tested
//! without touching the process environment; [`process_env`] is the real one.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// The savings file's name in a workspace directory.
pub const SAVINGS_FILE_NAME: &str = "proxy_savings.json";

/// The request database's name, beside the savings file.
pub const DATABASE_FILE_NAME: &str = "headroom.db";

/// An explicit savings file path, used raw (trimmed, no `~` expansion).
pub const ENV_SAVINGS_PATH: &str = "HEADROOM_SAVINGS_PATH";

/// The workspace directory (trimmed, `~` expanded); the savings file is `proxy_savings.json` in it.
pub const ENV_WORKSPACE_DIR: &str = "HEADROOM_WORKSPACE_DIR";

/// An explicit request database path, used raw (trimmed, no `~` expansion).
pub const ENV_DB_PATH: &str = "HEADROOM_DB_PATH";

/// Stateless mode (docs/upstream.md §2): no savings file is written and no request database is kept.
pub const ENV_STATELESS: &str = "HEADROOM_STATELESS";

/// Whether a switch's value is on: `1`, `true`, `yes` or `on`, case-insensitively (surrounding
/// whitespace ignored). Anything else is off.
pub fn is_truthy(value: &str) -> bool {
    matches!(
        value.trim().to_ascii_lowercase().as_str(),
        "1" | "true" | "yes" | "on"
    )
}

/// Whether `HEADROOM_STATELESS` turns stateless mode on.
pub fn stateless(env: &impl Env) -> bool {
    env.var(ENV_STATELESS)
        .and_then(|v| v.to_str().map(is_truthy))
        .unwrap_or(false)
}

/// A view of the environment: the value of a variable, if set.
pub trait Env {
    /// The value of `name`, or `None` when it is not set.
    fn var(&self, name: &str) -> Option<OsString>;
}

impl<F: Fn(&str) -> Option<OsString>> Env for F {
    fn var(&self, name: &str) -> Option<OsString> {
        self(name)
    }
}

/// The process environment.
pub fn process_env(name: &str) -> Option<OsString> {
    std::env::var_os(name)
}

/// `name`'s value trimmed of surrounding whitespace, or `None` when unset or blank. A value that
/// is not UTF-8 is taken as it is (it cannot be blank).
fn non_blank(env: &impl Env, name: &str) -> Option<OsString> {
    let value = env.var(name)?;
    match value.to_str() {
        Some(text) => {
            let trimmed = text.trim();
            (!trimmed.is_empty()).then(|| OsString::from(trimmed))
        }
        None => Some(value),
    }
}

/// The user's home directory: `$HOME` when set and not blank, else the password database's
/// entry for the current user (as Python's `expanduser` does), else `None`.
pub fn home_dir(env: &impl Env) -> Option<PathBuf> {
    non_blank(env, "HOME")
        .map(PathBuf::from)
        .or_else(home_from_passwd)
}

fn home_from_passwd() -> Option<PathBuf> {
    use std::os::unix::ffi::OsStrExt as _;
    let mut buf = vec![0 as libc::c_char; 4096];
    // SAFETY: `passwd` is plain data; getpwuid_r writes into it and into `buf` (whose length we
    // pass) and sets `result` to null or to `&mut passwd`.
    unsafe {
        let mut passwd: libc::passwd = std::mem::zeroed();
        let mut result: *mut libc::passwd = std::ptr::null_mut();
        let rc = libc::getpwuid_r(
            libc::getuid(),
            &mut passwd,
            buf.as_mut_ptr(),
            buf.len(),
            &mut result,
        );
        if rc != 0 || result.is_null() || passwd.pw_dir.is_null() {
            return None;
        }
        let dir = std::ffi::CStr::from_ptr(passwd.pw_dir);
        let dir = std::ffi::OsStr::from_bytes(dir.to_bytes());
        (!dir.is_empty()).then(|| PathBuf::from(dir))
    }
}

/// `path` with a leading `~` (alone or followed by `/`) replaced by the home directory. Other
/// paths, and `~` when no home directory is known, are returned unchanged.
pub fn expand_tilde(path: &Path, env: &impl Env) -> PathBuf {
    let Ok(rest) = path.strip_prefix("~") else {
        return path.to_path_buf();
    };
    match home_dir(env) {
        Some(home) if rest.as_os_str().is_empty() => home,
        Some(home) => home.join(rest),
        None => path.to_path_buf(),
    }
}

/// The savings file, first match wins (docs/upstream.md §2):
/// 1. `HEADROOM_SAVINGS_PATH`, trimmed; if not blank, used raw (no `~` expansion);
/// 2. `$HEADROOM_WORKSPACE_DIR/proxy_savings.json` (trimmed, `~` expanded);
/// 3. `~/.headroom/proxy_savings.json`.
pub fn savings_path(env: &impl Env) -> PathBuf {
    if let Some(path) = non_blank(env, ENV_SAVINGS_PATH) {
        return PathBuf::from(path);
    }
    if let Some(dir) = non_blank(env, ENV_WORKSPACE_DIR) {
        return expand_tilde(Path::new(&dir), env).join(SAVINGS_FILE_NAME);
    }
    expand_tilde(Path::new("~"), env)
        .join(".headroom")
        .join(SAVINGS_FILE_NAME)
}

/// The request database: `HEADROOM_DB_PATH` (trimmed; if not blank, used raw), else
/// `headroom.db` in the savings file's directory.
pub fn database_path(env: &impl Env) -> PathBuf {
    if let Some(path) = non_blank(env, ENV_DB_PATH) {
        return PathBuf::from(path);
    }
    let savings = savings_path(env);
    match savings.parent() {
        Some(dir) => dir.join(DATABASE_FILE_NAME),
        None => PathBuf::from(DATABASE_FILE_NAME),
    }
}

/// Creates `dir` and any missing parent with mode 0700 (only this user may list or enter
/// them); directories that exist are left as they are.
pub fn create_private_dir_all(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt as _;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

/// Open options that create a file with mode 0600 (only this user may read or write it); set
/// the access mode and `create` on them.
pub fn private_file() -> std::fs::OpenOptions {
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut options = std::fs::OpenOptions::new();
    options.mode(0o600);
    options
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &'static [(&'static str, &'static str)]) -> impl Env {
        move |name: &str| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| OsString::from(*v))
        }
    }

    #[test]
    fn explicit_savings_path_is_trimmed_and_raw() {
        let e = env(&[
            ("HEADROOM_SAVINGS_PATH", "  ~/x/../s.json \n"),
            ("HEADROOM_WORKSPACE_DIR", "/ws"),
            ("HOME", "/home/u"),
        ]);
        assert_eq!(savings_path(&e), PathBuf::from("~/x/../s.json"));
        assert_eq!(database_path(&e), PathBuf::from("~/x/../headroom.db"));
    }

    #[test]
    fn blank_savings_path_falls_through_to_the_workspace() {
        let e = env(&[
            ("HEADROOM_SAVINGS_PATH", "   "),
            ("HEADROOM_WORKSPACE_DIR", " ~/ws "),
            ("HOME", "/home/u"),
        ]);
        assert_eq!(
            savings_path(&e),
            PathBuf::from("/home/u/ws/proxy_savings.json")
        );
        assert_eq!(database_path(&e), PathBuf::from("/home/u/ws/headroom.db"));
        let e = env(&[("HEADROOM_WORKSPACE_DIR", "~"), ("HOME", "/home/u")]);
        assert_eq!(
            savings_path(&e),
            PathBuf::from("/home/u/proxy_savings.json")
        );
        let e = env(&[("HEADROOM_WORKSPACE_DIR", "/srv/headroom")]);
        assert_eq!(
            savings_path(&e),
            PathBuf::from("/srv/headroom/proxy_savings.json")
        );
    }

    #[test]
    fn default_is_in_the_home_directory() {
        let e = env(&[("HEADROOM_WORKSPACE_DIR", ""), ("HOME", "/home/u")]);
        assert_eq!(
            savings_path(&e),
            PathBuf::from("/home/u/.headroom/proxy_savings.json")
        );
        assert_eq!(
            database_path(&e),
            PathBuf::from("/home/u/.headroom/headroom.db")
        );
    }

    #[test]
    fn database_path_overrides() {
        let e = env(&[
            ("HEADROOM_DB_PATH", " /data/h.db "),
            ("HEADROOM_SAVINGS_PATH", "/x/s.json"),
        ]);
        assert_eq!(database_path(&e), PathBuf::from("/data/h.db"));
        let e = env(&[
            ("HEADROOM_DB_PATH", " "),
            ("HEADROOM_SAVINGS_PATH", "s.json"),
        ]);
        assert_eq!(database_path(&e), PathBuf::from("headroom.db"));
    }

    #[test]
    fn stateless_switch() {
        for on in ["1", "true", "YES", " On "] {
            assert!(is_truthy(on), "{on}");
        }
        for off in ["0", "false", "no", "off", "", "maybe"] {
            assert!(!is_truthy(off), "{off}");
        }
        assert!(stateless(&env(&[("HEADROOM_STATELESS", "yes")])));
        assert!(!stateless(&env(&[("HEADROOM_STATELESS", "0")])));
        assert!(!stateless(&env(&[])));
    }

    #[test]
    fn tilde_only_at_the_start() {
        let e = env(&[("HOME", "/h")]);
        assert_eq!(expand_tilde(Path::new("~"), &e), PathBuf::from("/h"));
        assert_eq!(expand_tilde(Path::new("~/a"), &e), PathBuf::from("/h/a"));
        assert_eq!(expand_tilde(Path::new("a/~"), &e), PathBuf::from("a/~"));
        assert_eq!(
            expand_tilde(Path::new("~bob/a"), &e),
            PathBuf::from("~bob/a")
        );
    }
}
