//! Starting `headroom` under test: in-process through the same `Proxy::start` the binary calls,
//! or as the real binary (for signals and the CLI).

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use headroom_host::abi::vm::VmLimits;
use headroom_host::proxy::{Proxy, ProxyConfig};

use crate::client::{self, ClientRequest};
use crate::scenario::Target;

/// The configuration tests start from: loopback, an ephemeral port, two workers, the embedded
/// filter with its defaults, both providers at `upstream`.
pub fn test_config(upstream: SocketAddr) -> ProxyConfig {
    ProxyConfig {
        listen: "127.0.0.1:0".parse().expect("a literal address"),
        openai_url: format!("http://{upstream}"),
        anthropic_url: format!("http://{upstream}"),
        plugin_wasm: headroom_host::EMBEDDED_PLUGIN.to_vec(),
        plugin_config: b"{}".to_vec(),
        workers: 2,
        vm_limits: VmLimits::default(),
        cache_dir: None,
        guest_log_level: 2,
        shutdown_grace: Duration::from_secs(2),
        shared_data: Default::default(),
        hardening: Default::default(),
        clusters: Vec::new(),
        endpoints: Some(std::sync::Arc::new(
            headroom_host::operator::RecordEndpoints::default(),
        )),
    }
}

/// Our host, in this process.
pub struct InProcess {
    proxy: Option<Proxy>,
    addr: SocketAddr,
}

impl InProcess {
    /// Starts a proxy with `config`.
    pub fn start(config: ProxyConfig) -> Result<Self> {
        let proxy = Proxy::start(config)?;
        let addr = proxy.local_addr();
        Ok(Self {
            proxy: Some(proxy),
            addr,
        })
    }

    /// The proxy.
    pub fn proxy(&self) -> &Proxy {
        self.proxy.as_ref().expect("running until dropped")
    }
}

impl Drop for InProcess {
    fn drop(&mut self) {
        if let Some(proxy) = self.proxy.take() {
            proxy.shutdown();
        }
    }
}

/// GET `path` on `addr`.
pub async fn get(addr: SocketAddr, path: &str) -> Result<client::ClientResponse> {
    let req = ClientRequest {
        method: "GET".into(),
        path: path.into(),
        ..ClientRequest::default()
    };
    client::send(addr, &req, |_| {}).await
}

impl Target for InProcess {
    fn name(&self) -> &str {
        "headroom"
    }

    fn addr(&self) -> SocketAddr {
        self.addr
    }

    async fn scrape(&self) -> Result<String> {
        Ok(self.proxy().metrics().render())
    }
}

/// The `headroom` binary next to the test executables (built by the test command).
pub fn binary() -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let dir = exe
        .parent()
        .and_then(|d| d.parent())
        .context("test executable location")?;
    let bin = dir.join("headroom");
    if !bin.exists() {
        bail!(
            "{} is missing: build it first (`cargo build --release -p headroom-host`, which the test command does)",
            bin.display()
        );
    }
    Ok(bin)
}

/// The real binary, running; killed by PID when dropped.
pub struct Process {
    child: Child,
    addr: SocketAddr,
    log: Arc<Mutex<Vec<String>>>,
    /// The workspace the test gave it when it named none (removed on drop).
    workspace: Option<PathBuf>,
}

impl Process {
    /// Runs `headroom proxy --port 0 ARGS…` and waits for its "listening" line.
    pub fn start(args: &[&str], env: &[(&str, &str)]) -> Result<Self> {
        let mut cmd = Command::new(binary()?);
        cmd.arg("proxy")
            .args(["--host", "127.0.0.1", "--port", "0"])
            .args(args);
        for (k, v) in env {
            cmd.env(k, v);
        }
        // Never the user's ~/.headroom: unless the test chose where the savings file and the
        // request database live, they go to a workspace of this process's own.
        let chosen = |name: &str| env.iter().any(|(k, _)| *k == name);
        let workspace = (!chosen("HEADROOM_SAVINGS_PATH") && !chosen("HEADROOM_WORKSPACE_DIR"))
            .then(|| {
                static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
                std::env::temp_dir().join(format!(
                    "headroom-test-workspace-{}-{}",
                    std::process::id(),
                    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
                ))
            });
        if let Some(dir) = &workspace {
            cmd.env("HEADROOM_WORKSPACE_DIR", dir);
        }
        cmd.env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().context("starting headroom")?;
        let stderr = child.stderr.take().context("stderr")?;
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let plain = strip_ansi(&line);
                if let Some(i) = plain.find("listening on http://") {
                    let addr = plain[i + "listening on http://".len()..]
                        .split_whitespace()
                        .next()
                        .unwrap_or_default()
                        .to_string();
                    let _ = tx.send(addr);
                }
                sink.lock().unwrap_or_else(|p| p.into_inner()).push(plain);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(addr) = rx.recv_timeout(Duration::from_millis(50)) {
                let addr = addr
                    .parse()
                    .with_context(|| format!("listening address {addr:?}"))?;
                return Ok(Self {
                    child,
                    addr,
                    log,
                    workspace,
                });
            }
            if let Some(status) = child.try_wait()? {
                bail!(
                    "headroom exited with {status} before listening:\n{}",
                    log.lock().unwrap_or_else(|p| p.into_inner()).join("\n")
                );
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                bail!("headroom did not listen within 60 s");
            }
        }
    }

    /// A stateless `headroom` with both providers at `upstream` and `env` set.
    pub fn stateless(upstream: SocketAddr, env: &[(&str, &str)]) -> Result<Self> {
        let url = format!("http://{upstream}");
        Self::start(
            &[
                "--openai-api-url",
                &url,
                "--anthropic-api-url",
                &url,
                "--stateless",
            ],
            env,
        )
    }

    /// The listener.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Log lines so far.
    pub fn log(&self) -> Vec<String> {
        self.log.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Sends `signal` and waits (up to `timeout`) for the exit status.
    pub fn signal_and_wait(
        &mut self,
        signal: i32,
        timeout: Duration,
    ) -> Result<std::process::ExitStatus> {
        // SAFETY: kill(2) on our own child's pid.
        if unsafe { libc_kill(self.child.id() as i32, signal) } != 0 {
            bail!("kill failed");
        }
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() > deadline {
                bail!("headroom did not exit within {timeout:?} of signal {signal}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

unsafe extern "C" {
    #[link_name = "kill"]
    fn libc_kill(pid: i32, sig: i32) -> i32;
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(dir) = &self.workspace {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

impl Target for Process {
    fn name(&self) -> &str {
        "headroom (binary)"
    }

    fn addr(&self) -> SocketAddr {
        self.addr
    }

    async fn scrape(&self) -> Result<String> {
        Ok(String::from_utf8(get(self.addr, "/metrics").await?.body)?)
    }
}

fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}
