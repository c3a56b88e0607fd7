//! Envoy test harness: the provisioned binary, the local bootstrap template and a running Envoy.
//!
//! - [`envoy_binary`]: `$HEADROOM_ENVOY`, else `<repo>/.envoy/bin/envoy` (installed by `envoy/install.sh`).
//! - [`render_local_config`] / [`EnvoyTemplate`]: renders `envoy/envoy-local.yaml.in`, with or
//!   without the wasm filter.
//! - [`Envoy::start`]: runs Envoy on ephemeral ports, waits until it is LIVE, discovers the ports, and
//!   kills it (by PID) when dropped.
//! - [`validate_config`]: `envoy --mode validate`, which also instantiates the wasm VM and runs the
//!   plugin's `on_vm_start`/`on_configure`.
//! - [`plugin_wasm`]: the filter (the bytes our host embeds) as a file Envoy can load.

use std::fs;
use std::io::{Read, Seek, SeekFrom};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow, bail};
use bytes::Bytes;
use http_body_util::{BodyExt as _, Empty};
use hyper_util::rt::TokioIo;

/// The template text, embedded at compile time (a change to the file rebuilds the tests).
const LOCAL_TEMPLATE: &str = include_str!("../../envoy/envoy-local.yaml.in");

/// Marker lines around the wasm filter block in the template.
pub const IF_WASM_MARKER: &str = "#@IF_WASM";
pub const END_WASM_MARKER: &str = "#@END_WASM";

/// How long [`Envoy::start`] waits for `/ready` to say LIVE. Envoy with the V8 filter is ready in
/// well under a second on an idle machine; a loaded 2-core CI machine can be far slower.
pub const START_TIMEOUT: Duration = Duration::from_secs(60);

/// The repository root (the tests crate is the root package of the workspace).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The Envoy binary: `$HEADROOM_ENVOY` if set, else `$HEADROOM_ENVOY_DIR/bin/envoy`, else
/// `<repo>/.envoy/bin/envoy`.
pub fn envoy_binary() -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os("HEADROOM_ENVOY").filter(|p| !p.is_empty()) {
        let path = PathBuf::from(path);
        if path.is_file() {
            return Ok(path);
        }
        bail!(
            "HEADROOM_ENVOY={} does not name a file; unset it to use .envoy/bin/envoy (envoy/install.sh)",
            path.display()
        );
    }
    let dir = std::env::var_os("HEADROOM_ENVOY_DIR")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join(".envoy"));
    let path = dir.join("bin").join("envoy");
    if path.is_file() {
        Ok(path)
    } else {
        bail!(
            "Envoy is not installed at {}: run `envoy/install.sh` from the repository root \
             (or set HEADROOM_ENVOY to an Envoy 1.40 binary)",
            path.display()
        )
    }
}

/// Parameters of `envoy/envoy-local.yaml.in`. Ports may be 0 (listener, admin): Envoy then binds an
/// ephemeral port and [`Envoy::start`] discovers it.
#[derive(Clone, Debug)]
pub struct LocalConfig {
    pub listener_port: u16,
    pub admin_port: u16,
    /// Plain-HTTP upstream on 127.0.0.1 standing in for api.openai.com.
    pub openai_upstream_port: u16,
    /// Plain-HTTP upstream on 127.0.0.1 standing in for api.anthropic.com.
    pub anthropic_upstream_port: u16,
    /// The filter; `None` renders Envoy without the wasm filter (baseline for benchmarks). Prefer an
    /// absolute path (Envoy resolves a relative one against its working directory, the repo root).
    pub wasm_path: Option<PathBuf>,
    /// The plugin configuration, raw JSON (`{}` = every default).
    pub plugin_config_json: String,
}

impl Default for LocalConfig {
    fn default() -> Self {
        LocalConfig {
            listener_port: 0,
            admin_port: 0,
            openai_upstream_port: 0,
            anthropic_upstream_port: 0,
            wasm_path: None,
            plugin_config_json: "{}".to_owned(),
        }
    }
}

/// A bootstrap template with the `@NAME@` placeholders and `#@IF_WASM`/`#@END_WASM` markers of
/// `envoy/envoy-local.yaml.in`.
#[derive(Clone, Debug)]
pub struct EnvoyTemplate {
    text: String,
}

impl EnvoyTemplate {
    /// `envoy/envoy-local.yaml.in` as compiled into the tests.
    pub fn local() -> Self {
        EnvoyTemplate {
            text: LOCAL_TEMPLATE.to_owned(),
        }
    }

    /// Any template text with the same placeholders and markers.
    pub fn from_text(text: impl Into<String>) -> Self {
        EnvoyTemplate { text: text.into() }
    }

    pub fn text(&self) -> &str {
        &self.text
    }

    /// Renders the template. Without a wasm path every line from `#@IF_WASM` to `#@END_WASM`
    /// (inclusive) is dropped; with one only the two marker lines are. The wasm path and the plugin
    /// JSON go inside YAML single-quoted strings: single quotes are doubled and CR/LF become spaces.
    pub fn render(&self, opts: &LocalConfig) -> String {
        let with_wasm = opts.wasm_path.is_some();
        let mut out = String::with_capacity(self.text.len() + opts.plugin_config_json.len());
        let mut in_wasm_block = false;
        for line in self.text.split_inclusive('\n') {
            match line.trim() {
                IF_WASM_MARKER => in_wasm_block = true,
                END_WASM_MARKER => in_wasm_block = false,
                _ if in_wasm_block && !with_wasm => {}
                _ => out.push_str(line),
            }
        }
        let wasm = opts
            .wasm_path
            .as_deref()
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default();
        out.replace("@LISTENER_PORT@", &opts.listener_port.to_string())
            .replace("@ADMIN_PORT@", &opts.admin_port.to_string())
            .replace(
                "@OPENAI_UPSTREAM_PORT@",
                &opts.openai_upstream_port.to_string(),
            )
            .replace(
                "@ANTHROPIC_UPSTREAM_PORT@",
                &opts.anthropic_upstream_port.to_string(),
            )
            .replace("@WASM_PATH@", &yaml_single_quoted_content(&wasm))
            .replace(
                "@PLUGIN_CONFIG_JSON@",
                &yaml_single_quoted_content(&opts.plugin_config_json),
            )
    }
}

/// Renders `envoy/envoy-local.yaml.in` with `opts`.
pub fn render_local_config(opts: &LocalConfig) -> String {
    EnvoyTemplate::local().render(opts)
}

/// The content of a YAML single-quoted scalar: `'` is written `''`. A line break inside such a
/// scalar would be folded to a space by YAML anyway; write it as a space so what Envoy passes to
/// the plugin is exactly what was rendered (JSON cannot hold a raw line break inside a string).
fn yaml_single_quoted_content(raw: &str) -> String {
    raw.replace('\'', "''").replace(['\r', '\n'], " ")
}

/// `envoy --mode validate -c path`, run from the repository root. Validation builds the whole
/// configuration, including the wasm VM (the plugin's `on_vm_start` and `on_configure` run).
pub fn validate_config(path: &Path) -> anyhow::Result<()> {
    validate_config_in(path, &repo_root())
}

/// Like [`validate_config`], with relative paths in the config (e.g. the `.wasm`) resolved
/// against `cwd`.
pub fn validate_config_in(path: &Path, cwd: &Path) -> anyhow::Result<()> {
    let envoy = envoy_binary()?;
    let output = Command::new(&envoy)
        .arg("--mode")
        .arg("validate")
        .arg("-c")
        .arg(path)
        .arg("--log-level")
        .arg("warn")
        .current_dir(cwd)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {}", envoy.display()))?;
    if output.status.success() {
        return Ok(());
    }
    bail!(
        "envoy --mode validate -c {} failed ({}):\n--- stdout\n{}\n--- stderr\n{}",
        path.display(),
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// The filter as a `.wasm` file for Envoy: the bytes the `headroom` host embeds
/// ([`headroom_host::EMBEDDED_PLUGIN`], built from `plugin/` by the host's build script, or
/// `$HEADROOM_PLUGIN_WASM_PREBUILT` at build time), so Envoy and our host always run the same
/// filter. Written once to `$TMPDIR/headroom-plugin-<content hash>.wasm` (atomically, so parallel
/// test processes share it).
pub fn plugin_wasm() -> anyhow::Result<PathBuf> {
    static WRITTEN: Mutex<Option<PathBuf>> = Mutex::new(None);

    let mut written = WRITTEN
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(path) = written.as_ref()
        && path.is_file()
    {
        return Ok(path.clone());
    }
    let bytes = headroom_host::EMBEDDED_PLUGIN;
    // FNV-1a: only to name the file by its content.
    let hash = bytes.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    let dir = std::env::temp_dir();
    let path = dir.join(format!("headroom-plugin-{hash:016x}.wasm"));
    if fs::read(&path).ok().as_deref() != Some(bytes) {
        let partial = dir.join(format!(
            "headroom-plugin-{hash:016x}.{}.partial",
            std::process::id()
        ));
        fs::write(&partial, bytes).with_context(|| format!("writing {}", partial.display()))?;
        fs::rename(&partial, &path).with_context(|| format!("writing {}", path.display()))?;
    }
    *written = Some(path.clone());
    Ok(path)
}

/// A running Envoy. Dropping it kills the process (by PID), reaps it and removes its temp dir.
pub struct Envoy {
    child: Child,
    /// Where the HTTP listener accepts (127.0.0.1 and the discovered port).
    pub listener_addr: SocketAddr,
    /// Where the admin interface accepts.
    pub admin_addr: SocketAddr,
    dir: PathBuf,
    config_path: PathBuf,
    log_path: PathBuf,
    started_in: Duration,
}

static INSTANCE: AtomicU64 = AtomicU64::new(0);

impl Envoy {
    /// Renders the local template with `opts`, starts Envoy with `--concurrency concurrency` and
    /// waits until admin `/ready` answers LIVE.
    pub async fn start(opts: LocalConfig, concurrency: u32) -> anyhow::Result<Envoy> {
        Self::start_with_args(opts, concurrency, &[]).await
    }

    /// Like [`Envoy::start`], with extra command-line arguments (e.g. `["-l", "debug"]`).
    pub async fn start_with_args(
        opts: LocalConfig,
        concurrency: u32,
        extra_args: &[&str],
    ) -> anyhow::Result<Envoy> {
        Self::start_config(&render_local_config(&opts), concurrency, extra_args).await
    }

    /// Starts Envoy with an already rendered bootstrap (YAML). The admin and the listener named
    /// `headroom` (or else the first one) are discovered, so any ports may be 0.
    pub async fn start_config(
        config_yaml: &str,
        concurrency: u32,
        extra_args: &[&str],
    ) -> anyhow::Result<Envoy> {
        let binary = envoy_binary()?;
        let dir = std::env::temp_dir().join(format!(
            "headroom-envoy-{}-{}",
            std::process::id(),
            INSTANCE.fetch_add(1, Ordering::Relaxed)
        ));
        if dir.exists() {
            let _ = fs::remove_dir_all(&dir);
        }
        fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let config_path = dir.join("envoy.yaml");
        let log_path = dir.join("envoy.log");
        let admin_path = dir.join("admin-address");
        fs::write(&config_path, config_yaml)
            .with_context(|| format!("writing {}", config_path.display()))?;
        let log = fs::File::create(&log_path)?;

        let started = Instant::now();
        // --disable-hot-restart: no shared memory region and no hot-restart domain sockets, so any
        // number of test Envoys can run side by side without choosing distinct --base-id values.
        let child = Command::new(&binary)
            .arg("-c")
            .arg(&config_path)
            .arg("--concurrency")
            .arg(concurrency.to_string())
            .arg("--disable-hot-restart")
            .arg("--admin-address-path")
            .arg(&admin_path)
            .args(extra_args)
            .current_dir(repo_root())
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;

        // From here on Drop cleans up (kills the child, removes the dir) on every error path.
        let mut envoy = Envoy {
            child,
            listener_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            admin_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            dir,
            config_path,
            log_path,
            started_in: Duration::ZERO,
        };
        match envoy.wait_live(&admin_path, started).await {
            Ok(()) => Ok(envoy),
            Err(err) => Err(err.context(format!(
                "Envoy (pid {}) did not become ready (log {}, kept if HEADROOM_KEEP_ENVOY_DIR is set):\n{}",
                envoy.pid(),
                envoy.log_path.display(),
                envoy.failure_summary()
            ))),
        }
    }

    async fn wait_live(&mut self, admin_path: &Path, started: Instant) -> anyhow::Result<()> {
        let deadline = started + START_TIMEOUT;
        let mut last_error = String::from("no admin address yet");
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!("Envoy exited during start-up with {status}");
            }
            if Instant::now() > deadline {
                bail!("not LIVE after {:?} (last: {last_error})", START_TIMEOUT);
            }
            if self.admin_addr.port() == 0
                && let Ok(text) = fs::read_to_string(admin_path)
                && let Ok(addr) = text.trim().parse::<SocketAddr>()
            {
                self.admin_addr = addr;
            }
            if self.admin_addr.port() != 0 {
                match http_get(self.admin_addr, "/ready").await {
                    Ok((200, body)) if body.trim() == "LIVE" => break,
                    Ok((status, body)) => last_error = format!("/ready: {status} {}", body.trim()),
                    Err(err) => last_error = format!("/ready: {err:#}"),
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.started_in = started.elapsed();
        self.listener_addr = self.discover_listener().await?;
        Ok(())
    }

    async fn discover_listener(&self) -> anyhow::Result<SocketAddr> {
        let text = self.admin_get("/listeners?format=json").await?;
        let json: serde_json::Value =
            serde_json::from_str(&text).context("parsing /listeners?format=json")?;
        let listeners = json
            .get("listener_statuses")
            .and_then(|l| l.as_array())
            .ok_or_else(|| anyhow!("no listener_statuses in /listeners: {text}"))?;
        let chosen = listeners
            .iter()
            .find(|l| l.get("name").and_then(|n| n.as_str()) == Some("headroom"))
            .or_else(|| listeners.first())
            .ok_or_else(|| anyhow!("Envoy has no listener: {text}"))?;
        let socket = chosen
            .pointer("/local_address/socket_address")
            .ok_or_else(|| anyhow!("listener without a socket address: {chosen}"))?;
        let address = socket
            .get("address")
            .and_then(|a| a.as_str())
            .ok_or_else(|| anyhow!("listener without an address: {chosen}"))?;
        let port = socket
            .get("port_value")
            .and_then(|p| p.as_u64())
            .and_then(|p| u16::try_from(p).ok())
            .filter(|p| *p != 0)
            .ok_or_else(|| anyhow!("listener without a bound port: {chosen}"))?;
        let ip = address
            .parse()
            .with_context(|| format!("listener address {address:?}"))?;
        Ok(SocketAddr::new(ip, port))
    }

    /// The Envoy process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Time from spawning the process to admin `/ready` answering LIVE.
    pub fn started_in(&self) -> Duration {
        self.started_in
    }

    /// `http://127.0.0.1:<listener port>`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.listener_addr)
    }

    /// The rendered bootstrap Envoy runs with.
    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    /// Envoy's stdout and stderr (its log and access log).
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// The last 80 lines of Envoy's log (at most 64 KiB read).
    pub fn log_tail(&self) -> String {
        tail_lines(&self.log_path, 80, 64 * 1024)
    }

    /// Warning/error/critical lines of the log (at most 20) and its last 10 lines.
    fn failure_summary(&self) -> String {
        let tail = tail_lines(&self.log_path, 400, 256 * 1024);
        let problems: Vec<&str> = tail
            .lines()
            .filter(|l| {
                l.contains("][warning][") || l.contains("][error][") || l.contains("][critical][")
            })
            .collect();
        let last: Vec<&str> = tail.lines().collect();
        format!(
            "--- warnings and errors\n{}\n--- last lines\n{}",
            problems[problems.len().saturating_sub(20)..].join("\n"),
            last[last.len().saturating_sub(10)..].join("\n")
        )
    }

    /// Resident memory of the Envoy process (from `/proc/<pid>/status`, Linux only).
    pub fn rss_bytes(&self) -> Option<u64> {
        let status = fs::read_to_string(format!("/proc/{}/status", self.pid())).ok()?;
        let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
        let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kib * 1024)
    }

    /// GET `path` on the admin interface; an error unless the status is 200.
    pub async fn admin_get(&self, path: &str) -> anyhow::Result<String> {
        match http_get(self.admin_addr, path).await? {
            (200, body) => Ok(body),
            (status, body) => bail!("admin {path}: {status}: {body}"),
        }
    }

    /// Admin `/stats/prometheus`. Filter metrics appear without the `wasmcustom` namespace and
    /// with the labels that `stats_tags` extract.
    pub async fn prometheus(&self) -> anyhow::Result<String> {
        self.admin_get("/stats/prometheus").await
    }

    /// Admin `/stats` (plain text, `name: value` per line; filter metrics as `wasmcustom.<name>`).
    pub async fn stats_text(&self) -> anyhow::Result<String> {
        self.admin_get("/stats").await
    }

    /// The value of one counter or gauge from admin `/stats` (`None` if absent), e.g.
    /// `wasmcustom.headroom_requests_by_provider.provider.openai`.
    pub async fn stat_value(&self, name: &str) -> anyhow::Result<Option<u64>> {
        let text = self.stats_text().await?;
        Ok(text.lines().find_map(|line| {
            let (n, v) = line.split_once(": ")?;
            if n == name {
                v.trim().parse().ok()
            } else {
                None
            }
        }))
    }

    /// Kills Envoy now (SIGKILL by PID) and reaps it; also done on drop.
    pub fn stop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

impl Drop for Envoy {
    fn drop(&mut self) {
        self.stop();
        if std::env::var_os("HEADROOM_KEEP_ENVOY_DIR").is_none() {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

fn tail_lines(path: &Path, lines: usize, max_bytes: u64) -> String {
    let Ok(mut file) = fs::File::open(path) else {
        return format!("(no log at {})", path.display());
    };
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let start = len.saturating_sub(max_bytes);
    if file.seek(SeekFrom::Start(start)).is_err() {
        return String::new();
    }
    let mut buf = Vec::new();
    let _ = file.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf);
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// A one-shot HTTP/1.1 GET (new connection, 10 s timeout); returns status and body.
async fn http_get(addr: SocketAddr, path_and_query: &str) -> anyhow::Result<(u16, String)> {
    let exchange = async {
        let stream = tokio::net::TcpStream::connect(addr).await?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        let conn = tokio::spawn(conn);
        let request = http::Request::get(path_and_query)
            .header(http::header::HOST, addr.to_string())
            .body(Empty::<Bytes>::new())?;
        let response = sender.send_request(request).await?;
        let status = response.status().as_u16();
        let body = response.into_body().collect().await?.to_bytes();
        drop(sender);
        conn.abort();
        anyhow::Ok((status, String::from_utf8_lossy(&body).into_owned()))
    };
    tokio::time::timeout(Duration::from_secs(10), exchange)
        .await
        .map_err(|_| anyhow!("GET http://{addr}{path_and_query} timed out"))?
}

/// Envoy with the filter, as a [`Target`] of the scenario runner and the cross-host tests.
pub struct EnvoyTarget(pub Envoy);

impl EnvoyTarget {
    /// Envoy 1.40 with `workers` workers and the filter configured with `plugin_config_json`,
    /// both providers routed to the loopback upstream on `upstream_port`.
    pub async fn start(
        upstream_port: u16,
        plugin_config_json: &str,
        workers: u32,
    ) -> anyhow::Result<EnvoyTarget> {
        let envoy = Envoy::start(
            LocalConfig {
                listener_port: 0,
                admin_port: 0,
                openai_upstream_port: upstream_port,
                anthropic_upstream_port: upstream_port,
                wasm_path: Some(plugin_wasm()?),
                plugin_config_json: plugin_config_json.into(),
            },
            workers,
        )
        .await?;
        Ok(EnvoyTarget(envoy))
    }

    /// Prints the tail of Envoy's log when `result` is an error, and passes it on.
    pub fn explain<T>(&self, result: anyhow::Result<T>) -> anyhow::Result<T> {
        if result.is_err() {
            eprintln!("Envoy log tail:\n{}", self.0.log_tail());
        }
        result
    }
}

impl crate::scenario::Target for EnvoyTarget {
    fn name(&self) -> &str {
        "envoy"
    }

    fn addr(&self) -> SocketAddr {
        self.0.listener_addr
    }

    async fn scrape(&self) -> anyhow::Result<String> {
        self.0.prometheus().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_without_filter() {
        let text = render_local_config(&LocalConfig {
            openai_upstream_port: 1111,
            anthropic_upstream_port: 2222,
            ..LocalConfig::default()
        });
        assert!(!text.contains("envoy.filters.http.wasm"));
        assert!(
            text.lines()
                .all(|l| l.trim() != IF_WASM_MARKER && l.trim() != END_WASM_MARKER)
        );
        assert!(text.contains("port_value: 1111}") && text.contains("port_value: 2222}"));
        assert!(leftover_placeholders(&text).is_empty(), "{text}");
    }

    #[test]
    fn renders_with_filter_and_escapes_quotes() {
        let text = render_local_config(&LocalConfig {
            wasm_path: Some(PathBuf::from("/tmp/it's.wasm")),
            plugin_config_json: "{\"a\": \"it's\",\n \"b\": 1}".to_owned(),
            ..LocalConfig::default()
        });
        assert!(text.contains("envoy.filters.http.wasm"));
        assert!(text.contains("filename: '/tmp/it''s.wasm'"), "{text}");
        assert!(
            text.contains("value: '{\"a\": \"it''s\",  \"b\": 1}'"),
            "{text}"
        );
        assert!(leftover_placeholders(&text).is_empty(), "{text}");
    }

    #[test]
    fn markers_are_balanced() {
        let lines: Vec<&str> = LOCAL_TEMPLATE.lines().map(str::trim).collect();
        let opens = lines.iter().filter(|l| **l == IF_WASM_MARKER).count();
        let closes = lines.iter().filter(|l| **l == END_WASM_MARKER).count();
        assert_eq!((opens, closes), (1, 1));
    }

    /// `@NAME@` placeholders left in rendered text (`"@type"` keys are not placeholders).
    fn leftover_placeholders(text: &str) -> Vec<String> {
        let mut found = Vec::new();
        for (i, _) in text.match_indices('@') {
            let rest = &text[i + 1..];
            let name_len = rest
                .find(|c: char| !(c.is_ascii_uppercase() || c == '_'))
                .unwrap_or(rest.len());
            if name_len > 0 && rest[name_len..].starts_with('@') {
                found.push(rest[..name_len].to_owned());
            }
        }
        found
    }
}
