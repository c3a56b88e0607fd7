//! Setup checks, for `headroom validate` and `GET /v1/headroom/validate`: the filter compiles,
//! instantiates and accepts its configuration (the host's own VM code); each upstream resolves
//! and answers HTTP; the savings file's directory is writable; the request database opens and
//! passes `PRAGMA quick_check`. Each failed check says what to do about it.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::abi::state::PluginShared;
use crate::abi::vm::{Runtime, VmLimits};
use crate::proxy::body::UpstreamBody;
use crate::proxy::upstream::{Upstream, Upstreams};
use crate::records::store;

/// What to check.
#[derive(Clone, Debug)]
pub struct ValidateConfig {
    /// The filter module.
    pub plugin_wasm: Arc<[u8]>,
    /// Where the filter came from (`--plugin FILE`, or the built-in one), for messages.
    pub plugin_source: String,
    /// The filter's configuration (JSON; empty = defaults).
    pub plugin_config: Vec<u8>,
    /// The OpenAI-compatible upstream.
    pub openai_url: String,
    /// The Anthropic upstream.
    pub anthropic_url: String,
    /// The savings file (its directory must be writable).
    pub savings_path: PathBuf,
    /// The request database (`None`: `--stateless`).
    pub database_path: Option<PathBuf>,
    /// Limits of the VM the filter is tried in.
    pub vm_limits: VmLimits,
    /// The compiled-module cache.
    pub cache_dir: Option<PathBuf>,
    /// How long an upstream may take to answer.
    pub timeout: Duration,
}

/// One check's outcome.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Check {
    /// What was checked: `plugin`, `upstream openai`, `upstream anthropic`, `savings`,
    /// `database`.
    pub name: String,
    /// Whether it passed.
    pub ok: bool,
    /// What was found.
    pub detail: String,
    /// What to do about a failure (`None` when it passed).
    pub fix: Option<String>,
}

impl Check {
    fn pass(name: &str, detail: String) -> Self {
        Self {
            name: name.into(),
            ok: true,
            detail,
            fix: None,
        }
    }

    fn fail(name: &str, detail: String, fix: String) -> Self {
        Self {
            name: name.into(),
            ok: false,
            detail,
            fix: Some(fix),
        }
    }

    /// One line: `ok   name: detail` or `FAIL name: detail — fix: …`.
    pub fn line(&self) -> String {
        match (&self.fix, self.ok) {
            (_, true) => format!("ok   {}: {}", self.name, self.detail),
            (Some(fix), false) => format!("FAIL {}: {} — fix: {fix}", self.name, self.detail),
            (None, false) => format!("FAIL {}: {}", self.name, self.detail),
        }
    }
}

/// Every check's outcome.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// Every check passed.
    pub valid: bool,
    /// The checks, in order.
    pub checks: Vec<Check>,
    /// One `name: detail` string per failed check.
    pub issues: Vec<String>,
}

/// Runs every check (upstreams concurrently, the rest on the blocking pool).
pub async fn run(config: Arc<ValidateConfig>) -> Report {
    let plugin = {
        let config = config.clone();
        tokio::task::spawn_blocking(move || check_plugin(&config))
    };
    let openai = check_upstream(
        "openai",
        &config.openai_url,
        "--openai-api-url / HEADROOM_OPENAI_API_URL",
        config.timeout,
    );
    let anthropic = check_upstream(
        "anthropic",
        &config.anthropic_url,
        "--anthropic-api-url / HEADROOM_ANTHROPIC_API_URL",
        config.timeout,
    );
    let files = {
        let config = config.clone();
        tokio::task::spawn_blocking(move || {
            (
                check_savings(&config.savings_path),
                check_database(config.database_path.as_deref()),
            )
        })
    };
    let (plugin, openai, anthropic, files) = tokio::join!(plugin, openai, anthropic, files);
    let plugin = plugin.unwrap_or_else(|e| {
        Check::fail(
            "plugin",
            format!("the check did not finish: {e}"),
            "run it again; report a bug if it persists".into(),
        )
    });
    let (savings, database) = files.unwrap_or_else(|e| {
        let failed = |name: &str| {
            Check::fail(
                name,
                format!("the check did not finish: {e}"),
                "run it again".into(),
            )
        };
        (failed("savings"), failed("database"))
    });
    let checks = vec![plugin, openai, anthropic, savings, database];
    let issues = checks
        .iter()
        .filter(|c| !c.ok)
        .map(|c| format!("{}: {}", c.name, c.detail))
        .collect::<Vec<_>>();
    Report {
        valid: issues.is_empty(),
        checks,
        issues,
    }
}

fn check_plugin(config: &ValidateConfig) -> Check {
    let plugin = PluginShared::headroom(
        config.plugin_config.clone(),
        &config.openai_url,
        &config.anthropic_url,
        4,
        Default::default(),
    );
    let started = Instant::now();
    let result = Runtime::new(
        &config.plugin_wasm,
        plugin,
        config.vm_limits.clone(),
        config.cache_dir.as_deref(),
    )
    .and_then(|runtime| runtime.instantiate());
    match result {
        Ok(_vm) => Check::pass(
            "plugin",
            format!(
                "{} compiles, instantiates and accepts its configuration ({} ms)",
                config.plugin_source,
                started.elapsed().as_millis()
            ),
        ),
        Err(e) => Check::fail(
            "plugin",
            format!("{}: {e:#}", config.plugin_source),
            "fix the configuration field named above in --plugin-config / HEADROOM_PLUGIN_CONFIG \
             (or --budget/--budget-period), or point --plugin / HEADROOM_PLUGIN at a proxy-wasm 0.2.1 filter"
                .into(),
        ),
    }
}

async fn check_upstream(name: &'static str, url: &str, flag: &str, timeout: Duration) -> Check {
    let check_name = format!("upstream {name}");
    let upstream = match Upstream::parse(name, url) {
        Ok(u) => u,
        Err(e) => {
            return Check::fail(
                &check_name,
                format!("{e:#}"),
                format!("set {flag} to http(s)://host[:port][/base]"),
            );
        }
    };
    let authority = upstream.authority().to_string();
    let target = if authority.contains(':') && !authority.ends_with(']') {
        authority.clone()
    } else {
        let port = if url.starts_with("https") { 443 } else { 80 };
        format!("{authority}:{port}")
    };
    let resolved = tokio::time::timeout(timeout, tokio::net::lookup_host(target.clone()))
        .await
        .map(|r| r.map(|addrs| addrs.count()));
    match resolved {
        Ok(Ok(n)) if n > 0 => {}
        Ok(Ok(_)) => {
            return Check::fail(
                &check_name,
                format!("{url}: {authority} resolves to no address"),
                format!("check the host name in {flag} and this machine's DNS"),
            );
        }
        Ok(Err(e)) => {
            return Check::fail(
                &check_name,
                format!("{url}: {authority} does not resolve: {e}"),
                format!("check the host name in {flag} and this machine's DNS"),
            );
        }
        Err(_) => {
            return Check::fail(
                &check_name,
                format!(
                    "{url}: resolving {authority} took over {} s",
                    timeout.as_secs()
                ),
                format!("check this machine's DNS, or the host name in {flag}"),
            );
        }
    }
    let client = match Upstreams::new(url, url) {
        Ok(u) => u.client,
        Err(e) => {
            return Check::fail(
                &check_name,
                format!("{e:#}"),
                format!("set {flag} to http(s)://host[:port][/base]"),
            );
        }
    };
    let request = upstream.uri("/v1/models").and_then(|uri| {
        Ok(http::Request::get(uri)
            .header(http::header::USER_AGENT, "headroom-validate")
            .body(UpstreamBody::Empty)?)
    });
    let request = match request {
        Ok(r) => r,
        Err(e) => {
            return Check::fail(
                &check_name,
                format!("{e:#}"),
                format!("set {flag} to http(s)://host[:port][/base]"),
            );
        }
    };
    let started = Instant::now();
    match tokio::time::timeout(timeout, client.request(request)).await {
        Ok(Ok(response)) => Check::pass(
            &check_name,
            format!(
                "{url} answered HTTP {} in {} ms",
                response.status().as_u16(),
                started.elapsed().as_millis()
            ),
        ),
        Ok(Err(e)) => Check::fail(
            &check_name,
            format!("{url} did not answer: {}", error_chain(&e)),
            format!(
                "start the upstream or fix {flag}; check firewalls and proxies between here and {authority}"
            ),
        ),
        Err(_) => Check::fail(
            &check_name,
            format!("{url} did not answer within {} s", timeout.as_secs()),
            format!("check that {authority} is reachable from here, or fix {flag}"),
        ),
    }
}

/// An error and its causes, joined (`client error (Connect): tcp connect error: Connection
/// refused`).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Creates and removes a file in `dir` (made if missing).
fn probe_writable(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    let probe = dir.join(format!(
        ".headroom-validate-{}-{nanos}.tmp",
        std::process::id()
    ));
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)
        .and_then(|mut f| std::io::Write::write_all(&mut f, b"headroom"));
    let removed = std::fs::remove_file(&probe);
    written.and(removed)
}

fn directory_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

fn check_savings(savings: &Path) -> Check {
    let dir = directory_of(savings);
    match probe_writable(&dir) {
        Ok(()) => Check::pass(
            "savings",
            format!(
                "{} is writable (savings file {})",
                dir.display(),
                savings.display()
            ),
        ),
        Err(e) => Check::fail(
            "savings",
            format!("{} is not writable: {e}", dir.display()),
            format!(
                "make {} writable for this user, or set HEADROOM_SAVINGS_PATH or HEADROOM_WORKSPACE_DIR to a writable place",
                dir.display()
            ),
        ),
    }
}

fn check_database(path: Option<&Path>) -> Check {
    let Some(path) = path else {
        return Check::pass("database", "off (--stateless)".into());
    };
    let fix_damaged = format!(
        "move {} aside (the proxy does this itself at start and begins a fresh one), or set HEADROOM_DB_PATH to another file",
        path.display()
    );
    if !path.exists() {
        let dir = directory_of(path);
        return match probe_writable(&dir) {
            Ok(()) => Check::pass(
                "database",
                format!(
                    "{} does not exist yet; the proxy will create it",
                    path.display()
                ),
            ),
            Err(e) => Check::fail(
                "database",
                format!(
                    "{} cannot be created: {} is not writable: {e}",
                    path.display(),
                    dir.display()
                ),
                format!(
                    "make {} writable, set HEADROOM_DB_PATH to a writable place, or run with --stateless",
                    dir.display()
                ),
            ),
        };
    }
    let result = store::open_for_reading(path).and_then(|conn| {
        let check = store::quick_check(&conn)?;
        let rows = if check == "ok" {
            store::count(&conn).ok()
        } else {
            None
        };
        Ok((check, rows))
    });
    match result {
        Ok((check, Some(rows))) if check == "ok" => Check::pass(
            "database",
            format!("{}: quick_check ok, {rows} records", path.display()),
        ),
        Ok((check, None)) if check == "ok" => Check::fail(
            "database",
            format!("{}: it has no Headroom `requests` table", path.display()),
            "set HEADROOM_DB_PATH to a file of Headroom's own (another tool's database is left alone)"
                .into(),
        ),
        Ok((check, _)) => Check::fail(
            "database",
            format!("{}: quick_check: {check}", path.display()),
            fix_damaged,
        ),
        Err(e) => Check::fail(
            "database",
            format!("{} does not open: {e}", path.display()),
            fix_damaged,
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::store::tests::TempDir;

    #[test]
    fn lines_say_what_to_do() {
        let ok = Check::pass("plugin", "fine".into());
        assert_eq!(ok.line(), "ok   plugin: fine");
        let bad = Check::fail("upstream openai", "refused".into(), "start it".into());
        assert_eq!(bad.line(), "FAIL upstream openai: refused — fix: start it");
    }

    #[test]
    fn files() {
        let dir = TempDir::new("validate");
        assert!(check_savings(&dir.0.join("sub/proxy_savings.json")).ok);
        assert!(check_database(None).ok);
        let db = dir.0.join("h.db");
        let fresh = check_database(Some(&db));
        assert!(
            fresh.ok && fresh.detail.contains("does not exist yet"),
            "{fresh:?}"
        );
        drop(store::open_for_writing(&db).unwrap());
        let good = check_database(Some(&db));
        assert!(
            good.ok && good.detail.contains("quick_check ok, 0 records"),
            "{good:?}"
        );
        std::fs::write(&db, vec![7u8; 4096]).unwrap();
        let bad = check_database(Some(&db));
        assert!(
            !bad.ok && bad.fix.as_deref().unwrap_or_default().contains("aside"),
            "{bad:?}"
        );
        let blocked = dir.0.join("file");
        std::fs::write(&blocked, b"x").unwrap();
        let savings = check_savings(&blocked.join("proxy_savings.json"));
        assert!(!savings.ok && savings.fix.is_some(), "{savings:?}");
    }

    #[tokio::test]
    async fn upstreams() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf).await;
                let _ = s
                    .write_all(b"HTTP/1.1 401 Unauthorized\r\ncontent-length: 0\r\n\r\n")
                    .await;
            }
        });
        let ok = check_upstream(
            "openai",
            &format!("http://{addr}"),
            "--x",
            Duration::from_secs(5),
        )
        .await;
        assert!(ok.ok && ok.detail.contains("HTTP 401"), "{ok:?}");
        let closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        let bad = check_upstream(
            "anthropic",
            &format!("http://{closed}"),
            "--anthropic-api-url",
            Duration::from_secs(5),
        )
        .await;
        assert!(!bad.ok && bad.name == "upstream anthropic", "{bad:?}");
        assert!(
            bad.fix
                .as_deref()
                .unwrap_or_default()
                .contains("--anthropic-api-url")
        );
        let invalid = check_upstream("openai", "ftp://x", "--x", Duration::from_secs(1)).await;
        assert!(!invalid.ok, "{invalid:?}");
    }
}
