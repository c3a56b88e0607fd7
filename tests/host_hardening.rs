//! `headroom proxy` hardening, through the real binary and real loopback servers: the
//! connection limit, client timeouts (slow headers, slow body, idle keep-alive), upstream
//! timeouts (connect, first byte), hop-by-hop headers in both directions, private file modes,
//! an unreadable savings file left alone, and the savings file's lock between two processes.
//!
//! Timeouts are configured small and asserted as behaviour (a status, a closed connection, a
//! counter), with generous waits; nothing here measures speed.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail, ensure};
use headroom_tests::client::{self, ClientRequest};
use headroom_tests::corpus;
use headroom_tests::headroom::{Process, get};
use headroom_tests::upstream::{Reply, Scripted, Upstream};
use serde_json::Value;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

const SIGTERM: i32 = 15;

/// A fresh directory under the system temp dir.
fn temp_dir(name: &str) -> Result<PathBuf> {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let dir = std::env::temp_dir().join(format!(
        "headroom-hardening-{name}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// Starts the binary with both providers at `upstream` and `args`; savings file and request
/// database in `dir`.
fn start_in(upstream: &str, dir: &Path, args: &[&str]) -> Result<Process> {
    let savings = dir.join("proxy_savings.json");
    let db = dir.join("headroom.db");
    let url = format!("http://{upstream}");
    let mut all = vec![
        "--openai-api-url",
        &url,
        "--anthropic-api-url",
        &url,
        "--workers",
        "2",
    ];
    all.extend_from_slice(args);
    Process::start(
        &all,
        &[
            ("HEADROOM_SAVINGS_PATH", savings.to_str().context("path")?),
            ("HEADROOM_DB_PATH", db.to_str().context("path")?),
        ],
    )
}

/// A provider request the filter accounts for.
fn chat() -> ClientRequest {
    ClientRequest::post_json("/v1/chat/completions", corpus::tiny_chat(false))
}

/// One HTTP/1.1 response read from a raw connection: the head (as text) and the body (by its
/// content length).
async fn read_response(stream: &mut TcpStream) -> Result<(String, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut byte)).await??;
        ensure!(n == 1, "closed before the response head ended: {buf:?}");
        buf.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&buf).into_owned();
    let length = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse::<usize>().ok())?
        })
        .context("no content-length")?;
    let mut body = vec![0u8; length];
    tokio::time::timeout(Duration::from_secs(10), stream.read_exact(&mut body)).await??;
    Ok((head, body))
}

/// A raw GET of `path` on an open connection, keeping it alive.
async fn raw_get(stream: &mut TcpStream, addr: std::net::SocketAddr, path: &str) -> Result<String> {
    stream
        .write_all(format!("GET {path} HTTP/1.1\r\nhost: {addr}\r\n\r\n").as_bytes())
        .await?;
    Ok(read_response(stream).await?.0)
}

/// Reads until the peer closes (EOF or reset) within `within`: what was read. An error when the
/// connection is still open then.
async fn wait_closed(stream: &mut TcpStream, within: Duration) -> Result<Vec<u8>> {
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + within;
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => bail!(
                "still open after {within:?}; read {:?}",
                String::from_utf8_lossy(&seen)
            ),
            Ok(Ok(0)) | Ok(Err(_)) => return Ok(seen),
            Ok(Ok(n)) => seen.extend_from_slice(&buf[..n]),
        }
    }
}

/// The value of the Prometheus sample `series` (name with labels, as exposed) in `/metrics`.
async fn metric(proxy: &Process, series: &str) -> Result<f64> {
    let response = get(proxy.addr(), "/metrics").await?;
    ensure!(response.status == 200, "/metrics: {}", response.status);
    let text = String::from_utf8_lossy(&response.body).into_owned();
    text.lines()
        .find_map(|l| {
            l.strip_prefix(series)?
                .strip_prefix(' ')?
                .trim()
                .parse()
                .ok()
        })
        .with_context(|| format!("{series} not in /metrics:\n{text}"))
}

/// Waits (up to 10 s) for `series` to reach `value`.
async fn wait_metric(proxy: &Process, series: &str, value: f64) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let now = metric(proxy, series).await?;
        if now == value {
            return Ok(());
        }
        ensure!(
            Instant::now() < deadline,
            "{series} is {now}, expected {value}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_limit_get_503_and_the_limit_frees_up() -> Result<()> {
    let upstream = Upstream::start(Reply::Provider {
        chunk_delay: Duration::ZERO,
    })
    .await?;
    let dir = temp_dir("limit")?;
    let proxy = start_in(
        &upstream.addr().to_string(),
        &dir,
        &["--max-connections", "2"],
    )?;
    let addr = proxy.addr();
    // Two connections, each proven accepted by a served request, held open.
    let mut first = TcpStream::connect(addr).await?;
    ensure!(
        raw_get(&mut first, addr, "/health")
            .await?
            .starts_with("HTTP/1.1 200")
    );
    let mut second = TcpStream::connect(addr).await?;
    ensure!(
        raw_get(&mut second, addr, "/health")
            .await?
            .starts_with("HTTP/1.1 200")
    );

    let mut third = TcpStream::connect(addr).await?;
    third
        .write_all(format!("GET /health HTTP/1.1\r\nhost: {addr}\r\n\r\n").as_bytes())
        .await?;
    let answer = wait_closed(&mut third, Duration::from_secs(10)).await?;
    let answer = String::from_utf8_lossy(&answer);
    ensure!(
        answer.starts_with("HTTP/1.1 503") && answer.contains("\"overloaded\""),
        "over the limit: {answer:?}"
    );
    // The held connections still work.
    ensure!(
        raw_get(&mut first, addr, "/health")
            .await?
            .starts_with("HTTP/1.1 200")
    );

    // One closes: a new connection is served again (once the proxy has seen the close).
    drop(second);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut next = TcpStream::connect(addr).await?;
        next.write_all(
            format!("GET /health HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n\r\n").as_bytes(),
        )
        .await?;
        let answer = wait_closed(&mut next, Duration::from_secs(10)).await?;
        if answer.starts_with(b"HTTP/1.1 200") {
            break;
        }
        ensure!(
            Instant::now() < deadline,
            "the limit never freed up: {:?}",
            String::from_utf8_lossy(&answer)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(first);
    // /metrics needs a connection of its own: wait for the ones above to be released.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match metric(&proxy, "headroom_host_connections_rejected_total").await {
            Ok(n) => {
                ensure!(n >= 1.0, "rejections counted: {n}");
                break;
            }
            Err(e) if Instant::now() > deadline => return Err(e),
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    let _ = std::fs::remove_dir_all(dir);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_sending_headers_slowly_is_cut_off() -> Result<()> {
    let upstream = Upstream::start(Reply::Provider {
        chunk_delay: Duration::ZERO,
    })
    .await?;
    let dir = temp_dir("slow-headers")?;
    let proxy = start_in(
        &upstream.addr().to_string(),
        &dir,
        &["--header-timeout-ms", "200"],
    )?;
    let mut stream = TcpStream::connect(proxy.addr()).await?;
    stream
        .write_all(b"GET /health HTTP/1.1\r\nx-slow: ")
        .await?;
    // A byte every 50 ms: never idle, never done. The header deadline is total.
    let (mut reader, mut writer) = stream.into_split();
    let trickle = tokio::spawn(async move {
        for _ in 0..400 {
            if writer.write_all(b"a").await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    let mut buf = [0u8; 1024];
    let closed = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match reader.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    trickle.abort();
    ensure!(
        closed.is_ok(),
        "a client trickling its headers was not cut off"
    );
    wait_metric(
        &proxy,
        "headroom_host_client_timeouts_total{kind=\"header\"}",
        1.0,
    )
    .await?;
    ensure!(upstream.take_received().is_empty());
    let _ = std::fs::remove_dir_all(dir);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_sending_its_body_slowly_is_cut_off() -> Result<()> {
    // A raw upstream that records the bytes of the first connection until it closes.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let upstream_addr = listener.local_addr()?;
    let recorded = tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await?;
        let mut bytes = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(20), stream.read_to_end(&mut bytes)).await;
        anyhow::Ok(bytes)
    });
    let dir = temp_dir("slow-body")?;
    let proxy = start_in(
        &upstream_addr.to_string(),
        &dir,
        &["--body-timeout-ms", "300"],
    )?;
    let addr = proxy.addr();
    let stream = TcpStream::connect(addr).await?;
    let (mut reader, mut writer) = stream.into_split();
    writer
        .write_all(
            format!(
                "POST /v1/chat/completions HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n{{"
            )
            .as_bytes(),
        )
        .await?;
    // One byte every 50 ms: 1000 bytes would take 50 s.
    let trickle = tokio::spawn(async move {
        for _ in 0..999 {
            if writer.write_all(b" ").await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    let closed = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match reader.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => seen.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    trickle.abort();
    ensure!(
        closed.is_ok(),
        "a client trickling its body was not cut off"
    );
    let answer = String::from_utf8_lossy(&seen);
    // The 408 is sent; a reset may swallow it on the client's side, the close is what counts.
    ensure!(
        answer.is_empty()
            || (answer.starts_with("HTTP/1.1 408") && answer.contains("request_timeout")),
        "{answer:?}"
    );
    wait_metric(
        &proxy,
        "headroom_host_client_timeouts_total{kind=\"body\"}",
        1.0,
    )
    .await?;
    // The upstream request was started (headers) but never completed: no last chunk, and the
    // connection closed.
    let upstream_bytes = tokio::time::timeout(Duration::from_secs(20), recorded).await???;
    let upstream_text = String::from_utf8_lossy(&upstream_bytes);
    ensure!(
        upstream_text.starts_with("POST /v1/chat/completions"),
        "{upstream_text:?}"
    );
    ensure!(
        !upstream_text.contains("\r\n0\r\n\r\n"),
        "the truncated body was completed upstream: {upstream_text:?}"
    );
    let _ = std::fs::remove_dir_all(dir);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_are_closed_but_slow_responses_are_not() -> Result<()> {
    // The upstream pauses 700 ms between chunks: longer than the idle timeout.
    let upstream = Upstream::start(Reply::Scripted(Scripted {
        status: 200,
        headers: vec![("content-type".into(), "text/plain".into())],
        chunks: vec![b"one ".to_vec(), b"two ".to_vec(), b"three".to_vec()],
        chunk_delay: Duration::from_millis(700),
        lockstep: false,
    }))
    .await?;
    let dir = temp_dir("idle")?;
    let proxy = start_in(
        &upstream.addr().to_string(),
        &dir,
        &["--idle-timeout-ms", "300"],
    )?;
    let addr = proxy.addr();

    // A keep-alive connection after its response: closed.
    let mut kept = TcpStream::connect(addr).await?;
    ensure!(
        raw_get(&mut kept, addr, "/health")
            .await?
            .starts_with("HTTP/1.1 200")
    );
    wait_closed(&mut kept, Duration::from_secs(10)).await?;

    // A connection that never sends anything: closed.
    let mut silent = TcpStream::connect(addr).await?;
    wait_closed(&mut silent, Duration::from_secs(10)).await?;

    // A response with long pauses is in flight, not idle: it arrives whole.
    let response = client::send(addr, &ClientRequest::get("/v1/models"), |_| {}).await?;
    ensure!(response.status == 200, "status {}", response.status);
    ensure!(
        response.body == b"one two three",
        "{:?}",
        String::from_utf8_lossy(&response.body)
    );
    ensure!(metric(&proxy, "headroom_host_client_timeouts_total{kind=\"idle\"}").await? >= 2.0);
    let _ = std::fs::remove_dir_all(dir);
    Ok(())
}

/// A loopback listener whose accept queue is full, so a new connection attempt hangs (Linux
/// drops SYNs to a full queue); `None` when the kernel would not let it fill.
async fn unconnectable() -> Result<Option<(tokio::net::TcpListener, Vec<TcpStream>)>> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.bind("127.0.0.1:0".parse()?)?;
    let listener = socket.listen(0)?;
    let addr = listener.local_addr()?;
    let mut held = Vec::new();
    for _ in 0..64 {
        match tokio::time::timeout(Duration::from_millis(300), TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => held.push(stream),
            Ok(Err(e)) => bail!("connect: {e}"),
            Err(_) => return Ok(Some((listener, held))),
        }
    }
    Ok(None)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_that_cannot_be_connected_to_gives_504() -> Result<()> {
    let Some((listener, _held)) = unconnectable().await? else {
        eprintln!(
            "SKIPPED: this kernel accepts every loopback connection; no connect timeout to provoke"
        );
        return Ok(());
    };
    let dir = temp_dir("connect")?;
    let proxy = start_in(
        &listener.local_addr()?.to_string(),
        &dir,
        &[
            "--upstream-connect-timeout-ms",
            "200",
            "--upstream-first-byte-timeout-ms",
            "60000",
        ],
    )?;
    let response = client::send(proxy.addr(), &chat(), |_| {}).await?;
    ensure!(
        response.status == 504,
        "status {}: {:?}",
        response.status,
        String::from_utf8_lossy(&response.body)
    );
    let body = response.json()?;
    ensure!(body["error"]["type"] == "upstream_timeout", "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    ensure!(
        message.contains("could not be connected to within 200 ms"),
        "{message}"
    );
    ensure!(
        metric(
            &proxy,
            "headroom_host_upstream_timeouts_total{phase=\"connect\"}"
        )
        .await?
            == 1.0
    );
    ensure!(metric(&proxy, "headroom_host_upstream_errors_total").await? >= 1.0);
    let _ = std::fs::remove_dir_all(dir);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_that_never_answers_gives_504() -> Result<()> {
    // Accepts, reads, never answers.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let silent = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((mut stream, _)) = listener.accept().await {
            let mut buf = vec![0u8; 65536];
            let _ = tokio::time::timeout(Duration::from_millis(100), stream.read(&mut buf)).await;
            held.push(stream);
        }
    });
    let dir = temp_dir("first-byte")?;
    let proxy = start_in(
        &addr.to_string(),
        &dir,
        &["--upstream-first-byte-timeout-ms", "300"],
    )?;
    let response = client::send(proxy.addr(), &chat(), |_| {}).await?;
    silent.abort();
    ensure!(
        response.status == 504,
        "status {}: {:?}",
        response.status,
        String::from_utf8_lossy(&response.body)
    );
    let body = response.json()?;
    ensure!(body["error"]["type"] == "upstream_timeout", "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    ensure!(
        message.contains("sent no response within 300 ms"),
        "{message}"
    );
    ensure!(
        metric(
            &proxy,
            "headroom_host_upstream_timeouts_total{phase=\"first_byte\"}"
        )
        .await?
            == 1.0
    );
    let _ = std::fs::remove_dir_all(dir);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hop_by_hop_headers_stop_at_the_proxy_both_ways() -> Result<()> {
    let upstream = Upstream::start(Reply::Scripted(Scripted {
        status: 200,
        headers: vec![
            ("content-type".into(), "application/json".into()),
            ("connection".into(), "x-upstream-private".into()),
            ("x-upstream-private".into(), "hop".into()),
            ("keep-alive".into(), "timeout=5".into()),
            (
                "proxy-authenticate".into(),
                "Basic realm=\"upstream\"".into(),
            ),
            ("upgrade".into(), "h2c".into()),
            ("x-upstream-public".into(), "end-to-end".into()),
            ("content-length".into(), "11".into()),
        ],
        chunks: vec![b"{\"data\":[]}".to_vec()],
        ..Scripted::default()
    }))
    .await?;
    let dir = temp_dir("hop")?;
    let proxy = start_in(&upstream.addr().to_string(), &dir, &[])?;
    let addr = proxy.addr();
    let mut stream = TcpStream::connect(addr).await?;
    stream
        .write_all(
            format!(
                "GET /v1/models HTTP/1.1\r\nhost: {addr}\r\n\
                 connection: keep-alive, X-Client-Private\r\n\
                 x-client-private: secret\r\n\
                 keep-alive: timeout=5\r\n\
                 proxy-connection: keep-alive\r\n\
                 proxy-authorization: Basic cHJveHk6cHc=\r\n\
                 te: trailers, deflate;q=0.5\r\n\
                 x-client-public: end-to-end\r\n\r\n"
            )
            .as_bytes(),
        )
        .await?;
    let (head, body) = read_response(&mut stream).await?;
    ensure!(head.starts_with("HTTP/1.1 200"), "{head}");
    ensure!(body == b"{\"data\":[]}", "{body:?}");
    let head = head.to_ascii_lowercase();
    for gone in [
        "x-upstream-private",
        "keep-alive:",
        "proxy-authenticate",
        "upgrade",
    ] {
        ensure!(!head.contains(gone), "{gone} reached the client:\n{head}");
    }
    ensure!(head.contains("x-upstream-public: end-to-end"), "{head}");

    let received = upstream.take_received();
    ensure!(received.len() == 1, "{received:?}");
    let request = &received[0];
    for gone in [
        "x-client-private",
        "keep-alive",
        "proxy-connection",
        "proxy-authorization",
    ] {
        ensure!(
            request.header(gone).is_none(),
            "{gone} reached the upstream: {:?}",
            request.headers
        );
    }
    if let Some(connection) = request.header("connection") {
        let connection = String::from_utf8_lossy(connection).to_ascii_lowercase();
        ensure!(!connection.contains("x-client-private"), "{connection}");
    }
    ensure!(
        request.header("te") == Some(&b"trailers"[..]),
        "te: {:?}",
        request.header("te").map(String::from_utf8_lossy)
    );
    ensure!(request.header("x-client-public") == Some(&b"end-to-end"[..]));
    let _ = std::fs::remove_dir_all(dir);
    Ok(())
}

fn mode(path: &Path) -> Result<u32> {
    Ok(std::fs::metadata(path)
        .with_context(|| path.display().to_string())?
        .permissions()
        .mode()
        & 0o777)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_and_directories_are_private() -> Result<()> {
    let upstream = Upstream::start(Reply::Provider {
        chunk_delay: Duration::ZERO,
    })
    .await?;
    let dir = temp_dir("modes")?;
    let savings = dir.join("state").join("proxy_savings.json");
    let db = dir.join("db").join("headroom.db");
    let log = dir.join("logs").join("requests.jsonl");
    let url = format!("http://{}", upstream.addr());
    let proxy = Process::start(
        &[
            "--openai-api-url",
            &url,
            "--anthropic-api-url",
            &url,
            "--log-file",
            log.to_str().context("path")?,
        ],
        &[
            ("HEADROOM_SAVINGS_PATH", savings.to_str().context("path")?),
            ("HEADROOM_DB_PATH", db.to_str().context("path")?),
        ],
    )?;
    let response = client::send(proxy.addr(), &chat(), |_| {}).await?;
    ensure!(response.status == 200, "status {}", response.status);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !savings.exists() || !log.exists() {
        ensure!(
            Instant::now() < deadline,
            "the savings file and the log were not written"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for file in [
        savings.clone(),
        headroom_host::savings_file::lock_path(&savings),
        db.clone(),
        log.clone(),
    ] {
        ensure!(
            mode(&file)? == 0o600,
            "{}: {:o}",
            file.display(),
            mode(&file)?
        );
    }
    for directory in [dir.join("state"), dir.join("db"), dir.join("logs")] {
        ensure!(
            mode(&directory)? == 0o700,
            "{}: {:o}",
            directory.display(),
            mode(&directory)?
        );
    }
    let _ = std::fs::remove_dir_all(dir);
    Ok(())
}

/// `/stats` → `persistent_savings.storage`.
async fn storage(proxy: &Process) -> Result<Value> {
    let response = get(proxy.addr(), "/stats").await?;
    ensure!(response.status == 200, "/stats: {}", response.status);
    Ok(response.json()?["persistent_savings"]["storage"].clone())
}

/// Sends `n` provider requests and waits until the ledger counts them.
async fn requests(proxy: &Process, n: u64) -> Result<()> {
    for _ in 0..n {
        let response = client::send(proxy.addr(), &chat(), |_| {}).await?;
        ensure!(response.status == 200, "status {}", response.status);
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let doc = get(proxy.addr(), "/stats-history?history_mode=none")
            .await?
            .json()?;
        if doc["lifetime"]["requests"].as_u64() == Some(n) {
            return Ok(());
        }
        ensure!(
            Instant::now() < deadline,
            "lifetime requests: {}",
            doc["lifetime"]
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn stop(mut proxy: Process) -> Result<Vec<String>> {
    let status = proxy.signal_and_wait(SIGTERM, Duration::from_secs(20))?;
    ensure!(
        status.success(),
        "exit {status}: {}",
        proxy.log().join("\n")
    );
    Ok(proxy.log())
}

/// Runs the proxy on an existing but unreadable savings file, serves requests, stops it, and
/// checks the file was neither replaced nor moved.
async fn unreadable_file_is_left_alone(
    upstream: &Upstream,
    dir: &Path,
    unchanged: impl Fn() -> Result<()>,
) -> Result<()> {
    let proxy = start_in(&upstream.addr().to_string(), dir, &[])?;
    let storage = storage(&proxy).await?;
    let error = storage["load_error"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    ensure!(error.contains("cannot read"), "{storage}");
    ensure!(storage["stateless"] == true, "{storage}");
    requests(&proxy, 2).await?;
    // Longer than the writer's poll; then the shutdown write.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let log = stop(proxy)?;
    ensure!(
        log.iter().any(|l| l.contains("never written to it")),
        "no clear error logged:\n{}",
        log.join("\n")
    );
    unchanged()?;
    let aside = std::fs::read_dir(dir)?
        .flatten()
        .any(|e| e.file_name().to_string_lossy().contains(".corrupt-"));
    ensure!(!aside, "an unreadable (not corrupt) file was moved aside");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_savings_file_stops_the_write_path() -> Result<()> {
    let upstream = Upstream::start(Reply::Provider {
        chunk_delay: Duration::ZERO,
    })
    .await?;

    // A symlink loop: reading fails (ELOOP) for every user, root included; the old write path
    // would have renamed a fresh file over the link.
    let dir = temp_dir("unreadable-loop")?;
    let path = dir.join("proxy_savings.json");
    std::os::unix::fs::symlink("proxy_savings.json", &path)?;
    unreadable_file_is_left_alone(&upstream, &dir, || {
        let meta = std::fs::symlink_metadata(&path)?;
        ensure!(
            meta.file_type().is_symlink(),
            "the savings path was replaced"
        );
        ensure!(std::fs::read_link(&path)? == Path::new("proxy_savings.json"));
        Ok(())
    })
    .await?;
    let _ = std::fs::remove_dir_all(&dir);

    // Permission denied (chmod 000), where that stops a read: not as root.
    let dir = temp_dir("unreadable-mode")?;
    let path = dir.join("proxy_savings.json");
    let original = b"{\"schema_version\": 3, \"lifetime\": {\"requests\": 41}}".to_vec();
    std::fs::write(&path, &original)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o000))?;
    if std::fs::read(&path).is_ok() {
        eprintln!(
            "chmod 000 does not stop reads for this user (root); the symlink-loop case above covers an unreadable file"
        );
    } else {
        unreadable_file_is_left_alone(&upstream, &dir, || {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
            ensure!(
                std::fs::read(&path)? == original,
                "the unreadable file was replaced"
            );
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o000))?;
            Ok(())
        })
        .await?;
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_process_on_the_same_savings_file_runs_stateless() -> Result<()> {
    let upstream = Upstream::start(Reply::Provider {
        chunk_delay: Duration::ZERO,
    })
    .await?;
    let dir = temp_dir("locked")?;
    let owner = start_in(&upstream.addr().to_string(), &dir, &[])?;
    let second = start_in(&upstream.addr().to_string(), &dir, &[])?;
    ensure!(
        second
            .log()
            .iter()
            .any(|l| l.contains("is in use by another headroom")
                && l.contains(&format!("process {}", owner.pid()))),
        "the second process did not say so:\n{}",
        second.log().join("\n")
    );
    let info = storage(&second).await?;
    ensure!(info["stateless"] == true, "{info}");
    ensure!(
        info["load_error"]
            .as_str()
            .unwrap_or_default()
            .contains("in use by another headroom"),
        "{info}"
    );
    ensure!(storage(&owner).await?["stateless"] == false);

    requests(&owner, 1).await?;
    requests(&second, 3).await?;
    // The owner stops first and writes its ledger; the second must not overwrite it after.
    stop(owner)?;
    stop(second)?;
    let bytes = std::fs::read(dir.join("proxy_savings.json"))?;
    let saved = headroom_plugin::savings::file::load(&bytes)
        .map_err(|e| anyhow::anyhow!("unreadable savings file: {e}"))?;
    ensure!(
        saved.ledger.head.lifetime.requests == 1,
        "the file holds {} requests, the owner's 1 expected",
        saved.ledger.head.lifetime.requests
    );
    let _ = std::fs::remove_dir_all(dir);
    Ok(())
}
