//! Operator endpoints (DESIGN decision 11) in both hosts, from a real non-loopback client: each
//! test makes its own network namespace joined to this one by a veth pair (private 10.200.x.y/30
//! addresses), runs `curl` inside it with `ip netns exec`, and has the gateway listen on the
//! veth's host-side address. Loopback cases go to a second listener on 127.0.0.1.
//!
//! Cases: loopback without a token → 200; non-loopback without one → 401; a wrong token → 403;
//! the right one → 200; a foreign `Host` from loopback → 403; `/health` from non-loopback → 200.
//! In our host also `/metrics` and `/v1/headroom/summary`, which the host answers itself.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use anyhow::{Context as _, Result, bail, ensure};
use headroom_tests::envoy::{Envoy, EnvoyTemplate, LocalConfig, plugin_wasm};
use headroom_tests::headroom::{InProcess, Process, test_config};

const TOKEN: &str = "op-test-token-6f1d";

/// A network namespace with a veth pair to this one; removed (with the link) on drop.
struct Netns {
    name: String,
    host_link: String,
    /// The veth's address on this side (the gateway listens here).
    host_ip: Ipv4Addr,
}

fn ip(args: &[&str]) -> Result<()> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .context("running ip")?;
    ensure!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

impl Netns {
    fn new() -> Result<Self> {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        // Names of at most 15 bytes, unique per process and per namespace in it.
        let tag = format!("{:x}{n}", pid % 0x10_0000);
        let name = format!("hrop{tag}");
        let ns = Netns {
            host_link: format!("hroh{tag}"),
            host_ip: Ipv4Addr::new(10, 200, (pid % 251) as u8, (n % 60 * 4 + 1) as u8),
            name,
        };
        let peer = format!("hron{tag}");
        let client_ip = Ipv4Addr::from(u32::from(ns.host_ip) + 1);
        // From here on, drop removes whatever was made.
        ip(&["netns", "add", &ns.name])?;
        ip(&[
            "link",
            "add",
            &ns.host_link,
            "type",
            "veth",
            "peer",
            "name",
            &peer,
        ])?;
        ip(&["link", "set", &peer, "netns", &ns.name])?;
        ip(&[
            "addr",
            "add",
            &format!("{}/30", ns.host_ip),
            "dev",
            &ns.host_link,
        ])?;
        ip(&["link", "set", &ns.host_link, "up"])?;
        let inside = |args: &[&str]| {
            let mut all = vec!["netns", "exec", &ns.name, "ip"];
            all.extend_from_slice(args);
            ip(&all)
        };
        inside(&["addr", "add", &format!("{client_ip}/30"), "dev", &peer])?;
        inside(&["link", "set", &peer, "up"])?;
        inside(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// `curl` from inside the namespace: (status, body).
    fn curl(&self, url: &str, headers: &[&str]) -> Result<(u16, String)> {
        curl(Some(&self.name), url, headers)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = ip(&["link", "del", &self.host_link]);
        let _ = ip(&["netns", "del", &self.name]);
    }
}

/// `curl` (inside namespace `netns`, if any): the status and the body.
fn curl(netns: Option<&str>, url: &str, headers: &[&str]) -> Result<(u16, String)> {
    let mut cmd = match netns {
        Some(ns) => {
            let mut cmd = Command::new("ip");
            cmd.args(["netns", "exec", ns, "curl"]);
            cmd
        }
        None => Command::new("curl"),
    };
    cmd.args([
        "-sS",
        "--noproxy",
        "*",
        "--max-time",
        "20",
        "-w",
        "\n%{http_code}",
    ]);
    for header in headers {
        cmd.args(["-H", header]);
    }
    let out = cmd.arg(url).output().context("running curl")?;
    ensure!(
        out.status.success(),
        "curl {url}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, status) = text.rsplit_once('\n').context("curl output")?;
    Ok((status.trim().parse()?, body.to_owned()))
}

fn bearer(token: &str) -> String {
    format!("Authorization: Bearer {token}")
}

/// The operator-endpoint cases against a gateway at `remote` (on the veth, reached from inside
/// `ns`) and `local` (on loopback), both configured with [`TOKEN`].
/// `paths`: each with the status it gets once allowed.
fn check_cases(
    ns: &Netns,
    remote: SocketAddr,
    local: SocketAddr,
    paths: &[(&str, u16)],
) -> Result<()> {
    let right = bearer(TOKEN);
    let wrong = bearer("not-the-token");
    for &(path, ok) in paths {
        let at_remote = format!("http://{remote}{path}");
        let at_local = format!("http://{local}{path}");

        let (status, body) = curl(None, &at_local, &[])?;
        ensure!(status == ok, "{path} from loopback: {status} {body}");

        let (status, body) = ns.curl(&at_remote, &[])?;
        ensure!(status == 401, "{path} from the netns: {status} {body}");
        let error: serde_json::Value = serde_json::from_str(&body)
            .with_context(|| format!("{path}: the 401 is JSON: {body}"))?;
        ensure!(error["error"]["type"] == "unauthorized", "{path}: {body}");
        ensure!(!body.contains(TOKEN), "{path}: the token leaked: {body}");

        let (status, body) = ns.curl(&at_remote, &[&wrong])?;
        ensure!(status == 403, "{path} with a wrong token: {status} {body}");
        ensure!(
            serde_json::from_str::<serde_json::Value>(&body).is_ok(),
            "{body}"
        );

        let (status, body) = ns.curl(&at_remote, &[&right])?;
        ensure!(status == ok, "{path} with the token: {status} {body}");

        let (status, body) = curl(None, &at_local, &["Host: evil.example"])?;
        ensure!(status == 403, "{path} with a foreign Host: {status} {body}");
        ensure!(body.contains("Host"), "{path}: {body}");
        let (status, body) = ns.curl(&at_remote, &[&right, "Host: evil.example"])?;
        ensure!(
            status == 403,
            "{path} with the token and a foreign Host: {status} {body}"
        );
    }
    for path in ["/health", "/livez", "/readyz"] {
        let (status, body) = ns.curl(&format!("http://{remote}{path}"), &[])?;
        ensure!(status == 200, "{path} from the netns: {status} {body}");
    }
    Ok(())
}

/// Every filter endpoint the rule covers (retrieval of an unknown hash is a 404 once allowed, so
/// it is checked on its own).
const FILTER_PATHS: &[(&str, u16)] = &[
    ("/stats", 200),
    ("/stats-history", 200),
    ("/dashboard", 200),
];

fn check_retrieval(ns: &Netns, remote: SocketAddr) -> Result<()> {
    let url = format!("http://{remote}/v1/headroom/retrieve/{}", "0".repeat(64));
    let (status, body) = ns.curl(&url, &[])?;
    ensure!(status == 401, "retrieval without a token: {status} {body}");
    let (status, body) = ns.curl(&url, &[&bearer(TOKEN)])?;
    ensure!(
        status != 401 && status != 403,
        "retrieval with the token: {status} {body}"
    );
    // A client with a provider credential reads its own originals from anywhere: the scope,
    // not the operator rule, keeps other clients' out (tests/retrieval_scope.rs).
    let url = format!("http://{remote}/v1/headroom/retrieve/0123456789abcdef");
    let (status, body) = ns.curl(&url, &["x-api-key: sk-ant-remote"])?;
    ensure!(
        status == 404,
        "retrieval with a provider key: {status} {body}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headroom_operator_endpoints_from_loopback_and_from_a_netns() -> Result<()> {
    let ns = Netns::new()?;
    let plugin_config = serde_json::json!({ "admin_token": TOKEN }).to_string();
    let dummy_upstream: SocketAddr = "127.0.0.1:9".parse()?;
    let mut config = test_config(dummy_upstream);
    config.plugin_config = plugin_config.into_bytes();
    let local = InProcess::start(config.clone())?;
    config.listen = SocketAddr::new(IpAddr::V4(ns.host_ip), 0);
    let remote = InProcess::start(config)?;
    let (local, remote) = (local.proxy().local_addr(), remote.proxy().local_addr());

    let mut paths = FILTER_PATHS.to_vec();
    // The host's own endpoints ask the same rule (records are off in this process: 503).
    paths.extend([("/metrics", 200), ("/v1/headroom/summary", 503)]);
    tokio::task::spawn_blocking(move || {
        check_cases(&ns, remote, local, &paths)?;
        check_retrieval(&ns, remote)
    })
    .await?
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envoy_operator_endpoints_from_loopback_and_from_a_netns() -> Result<()> {
    let ns = Netns::new()?;
    let opts = LocalConfig {
        wasm_path: Some(plugin_wasm()?),
        plugin_config_json: serde_json::json!({ "admin_token": TOKEN }).to_string(),
        ..LocalConfig::default()
    };
    let local = Envoy::start(opts.clone(), 1).await?;
    let template = EnvoyTemplate::local();
    let listener = "socket_address: {address: 127.0.0.1, port_value: @LISTENER_PORT@}";
    if !template.text().contains(listener) {
        bail!("the local Envoy template's listener line changed: update this test");
    }
    let text = template.text().replace(
        listener,
        &format!(
            "socket_address: {{address: {}, port_value: @LISTENER_PORT@}}",
            ns.host_ip
        ),
    );
    let remote = Envoy::start_config(&EnvoyTemplate::from_text(text).render(&opts), 1, &[]).await?;
    ensure!(
        remote.listener_addr.ip() == IpAddr::V4(ns.host_ip),
        "Envoy listens on {}",
        remote.listener_addr
    );
    let (local_addr, remote_addr) = (local.listener_addr, remote.listener_addr);
    let result = tokio::task::spawn_blocking(move || {
        check_cases(&ns, remote_addr, local_addr, FILTER_PATHS)?;
        check_retrieval(&ns, remote_addr)
    })
    .await?;
    match result {
        Ok(()) => Ok(()),
        Err(e) => bail!("{e:#}\nEnvoy log:\n{}", remote.log_tail()),
    }
}

/// `--admin-token` and `HEADROOM_ADMIN_TOKEN` reach the filter (its configuration accepts them)
/// and the token is never in the log, `/stats` or `--help`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headroom_admin_token_flag_is_never_logged_or_shown() -> Result<()> {
    let by_flag = Process::start(&["--admin-token", TOKEN, "--log-level", "debug"], &[])?;
    let by_env = Process::start(
        &["--log-level", "debug"],
        &[("HEADROOM_ADMIN_TOKEN", TOKEN)],
    )?;
    for proxy in [&by_flag, &by_env] {
        let addr = proxy.addr();
        let (status, stats) =
            tokio::task::spawn_blocking(move || curl(None, &format!("http://{addr}/stats"), &[]))
                .await??;
        ensure!(status == 200, "{status} {stats}");
        ensure!(!stats.contains(TOKEN), "/stats shows the token");
        let (status, body) = tokio::task::spawn_blocking(move || {
            curl(
                None,
                &format!("http://{addr}/metrics"),
                &[&bearer(TOKEN), "Host: evil.example"],
            )
        })
        .await??;
        ensure!(status == 403, "{status} {body}");
        let log = proxy.log().join("\n");
        ensure!(!log.contains(TOKEN), "the log shows the token:\n{log}");
    }
    let help = Command::new(headroom_tests::headroom::binary()?)
        .args(["proxy", "--help"])
        .env("HEADROOM_ADMIN_TOKEN", TOKEN)
        .output()?;
    let help = String::from_utf8_lossy(&help.stdout);
    ensure!(help.contains("--admin-token"), "{help}");
    ensure!(!help.contains(TOKEN), "--help shows the token:\n{help}");
    Ok(())
}

/// `--allowed-host` and `HEADROOM_ALLOWED_HOSTS` (comma-separated) reach the filter: a loopback
/// client naming an allowed host is answered, any other foreign name still gets 403. The
/// `--marker-secret` given beside them is never in the log, `/stats` or `--help`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headroom_allowed_host_flag_and_env_reach_the_filter() -> Result<()> {
    const SECRET: &str = "marker-s3cret-never-shown";
    let by_flag = Process::start(
        &[
            "--allowed-host",
            "gw.example",
            "--marker-secret",
            SECRET,
            "--log-level",
            "debug",
        ],
        &[],
    )?;
    let by_env = Process::start(
        &["--log-level", "debug"],
        &[
            ("HEADROOM_ALLOWED_HOSTS", "other.example,gw.example"),
            ("HEADROOM_MARKER_SECRET", SECRET),
        ],
    )?;
    let plain = Process::start(&["--log-level", "debug"], &[])?;
    for (proxy, allowed) in [(&by_flag, true), (&by_env, true), (&plain, false)] {
        let addr = proxy.addr();
        let (status, body) = tokio::task::spawn_blocking(move || {
            curl(None, &format!("http://{addr}/stats"), &["Host: gw.example"])
        })
        .await??;
        let want = if allowed { 200 } else { 403 };
        ensure!(
            status == want,
            "Host gw.example: {status}, want {want}: {body}"
        );
        ensure!(!body.contains(SECRET), "/stats shows the marker secret");
        let (status, body) = tokio::task::spawn_blocking(move || {
            curl(
                None,
                &format!("http://{addr}/stats"),
                &["Host: evil.example"],
            )
        })
        .await??;
        ensure!(status == 403, "Host evil.example: {status} {body}");
        let log = proxy.log().join("\n");
        ensure!(
            !log.contains(SECRET),
            "the log shows the marker secret:\n{log}"
        );
    }
    let help = Command::new(headroom_tests::headroom::binary()?)
        .args(["proxy", "--help"])
        .env("HEADROOM_MARKER_SECRET", SECRET)
        .output()?;
    let help = String::from_utf8_lossy(&help.stdout);
    ensure!(help.contains("--allowed-host"), "{help}");
    ensure!(
        !help.contains(SECRET),
        "--help shows the marker secret:\n{help}"
    );
    Ok(())
}
