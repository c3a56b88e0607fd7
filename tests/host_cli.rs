//! The `headroom` binary as a user runs it: it starts with no configuration, serves `/health`
//! and `/metrics`, refuses a bad filter configuration naming the field, shuts down
//! gracefully on SIGTERM, letting a streaming response finish, and names the guest's compiled
//! functions for `perf` when asked to.

use std::process::Command;
use std::time::Duration;

use headroom_tests::client::{self, ClientRequest};
use headroom_tests::headroom::{Process, binary, get};
use headroom_tests::upstream::{Reply, Upstream};

const SIGTERM: i32 = 15;

#[test]
fn defaults_are_the_documented_ones() -> anyhow::Result<()> {
    let help = Command::new(binary()?).args(["proxy", "--help"]).output()?;
    let text = String::from_utf8_lossy(&help.stdout);
    for default in [
        "[default: 127.0.0.1]",
        "[default: 8787]",
        "[default: https://api.openai.com]",
        "[default: https://api.anthropic.com]",
        "[env: HEADROOM_PORT=",
    ] {
        assert!(
            text.contains(default),
            "`headroom proxy --help` lacks {default}:\n{text}"
        );
    }
    Ok(())
}

#[test]
fn an_invalid_filter_configuration_stops_the_start_and_names_the_field() -> anyhow::Result<()> {
    let out = Command::new(binary()?)
        .args([
            "proxy",
            "--port",
            "0",
            "--plugin-config",
            r#"{"max_body_bytes": "lots"}"#,
        ])
        .env("NO_COLOR", "1")
        // Nothing of this failed start may land in ~/.headroom.
        .env("HEADROOM_STATELESS", "1")
        .output()?;
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("max_body_bytes"), "{stderr}");
    assert!(stderr.contains("rejected its configuration"), "{stderr}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_a_streaming_response_finish() -> anyhow::Result<()> {
    // Ten SSE events 100 ms apart: about a second of streaming.
    let upstream = Upstream::start(Reply::Provider {
        chunk_delay: Duration::from_millis(100),
    })
    .await?;
    let url = format!("http://{}", upstream.addr());
    let mut proxy = Process::start(
        &["--openai-api-url", &url, "--anthropic-api-url", &url],
        &[],
    )?;

    let health = get(proxy.addr(), "/health").await?;
    assert_eq!(health.status, 200);
    let metrics = String::from_utf8(get(proxy.addr(), "/metrics").await?.body)?;
    assert!(
        metrics.contains("process_resident_memory_bytes"),
        "{metrics}"
    );
    assert!(
        metrics.contains("headroom_inbound_requests_total 1"),
        "{metrics}"
    );

    let request = ClientRequest {
        method: "POST".into(),
        path: "/v1/messages".into(),
        headers: vec![("content-type".into(), b"application/json".to_vec())],
        chunks: vec![br#"{"model":"claude-sonnet-4-5","max_tokens":64,"stream":true,"messages":[{"role":"user","content":"hi"}]}"#.to_vec()],
        ..ClientRequest::default()
    };
    let addr = proxy.addr();
    let (first_tx, first_rx) = tokio::sync::oneshot::channel();
    let streaming = tokio::spawn(async move {
        let mut first = Some(first_tx);
        client::send(addr, &request, move |_| {
            if let Some(tx) = first.take() {
                let _ = tx.send(());
            }
        })
        .await
    });
    first_rx.await?;
    let status = tokio::task::spawn_blocking(move || {
        let status = proxy.signal_and_wait(SIGTERM, Duration::from_secs(20));
        (status, proxy.log())
    })
    .await?;
    let response = streaming.await??;
    let (status, log) = status;
    assert!(status?.success(), "exit status; log:\n{}", log.join("\n"));
    assert_eq!(response.status, 200);
    let body = String::from_utf8(response.body)?;
    assert!(
        body.ends_with("event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n"),
        "stream cut short: {body}"
    );
    assert!(
        log.iter().any(|l| l.contains("SIGTERM")),
        "{}",
        log.join("\n")
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn budget_flag_merges_into_the_filter_configuration() -> anyhow::Result<()> {
    let upstream = Upstream::start(Reply::Provider {
        chunk_delay: Duration::ZERO,
    })
    .await?;
    let url = format!("http://{}", upstream.addr());
    // A limit of 0 is spent before the first request.
    let proxy = Process::start(
        &[
            "--openai-api-url",
            &url,
            "--plugin-config",
            r#"{"compress":true}"#,
            "--budget",
            "0",
            "--budget-period",
            "monthly",
        ],
        &[],
    )?;
    let request = ClientRequest {
        method: "POST".into(),
        path: "/v1/chat/completions".into(),
        headers: vec![("content-type".into(), b"application/json".to_vec())],
        chunks: vec![br#"{"model":"gpt-4o","messages":[]}"#.to_vec()],
        ..ClientRequest::default()
    };
    let response = client::send(proxy.addr(), &request, |_| {}).await?;
    assert_eq!(response.status, 429);
    let body = response.json()?;
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("monthly"),
        "{body}"
    );
    assert!(upstream.take_received().is_empty());
    let out = Command::new(binary()?)
        .args([
            "proxy",
            "--port",
            "0",
            "--budget",
            "1",
            "--budget-period",
            "yearly",
        ])
        .env("NO_COLOR", "1")
        .env("HEADROOM_STATELESS", "1")
        .output()?;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("budget"));
    Ok(())
}

/// `--guest-perf-map` has wasmtime name the filter's compiled functions in `/tmp/perf-PID.map`,
/// the file `perf report` reads for JIT code; without it no map is written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guest_perf_map_names_the_filters_functions_for_perf() -> anyhow::Result<()> {
    let upstream = Upstream::start(Reply::Provider {
        chunk_delay: Duration::ZERO,
    })
    .await?;
    let url = format!("http://{}", upstream.addr());
    let request = ClientRequest {
        method: "POST".into(),
        path: "/v1/chat/completions".into(),
        headers: vec![("content-type".into(), b"application/json".to_vec())],
        chunks: vec![br#"{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}"#.to_vec()],
        ..ClientRequest::default()
    };
    for asked in [true, false] {
        let mut args = vec!["--openai-api-url", url.as_str()];
        if asked {
            args.push("--guest-perf-map");
        }
        let proxy = Process::start(&args, &[])?;
        let map = std::path::PathBuf::from(format!("/tmp/perf-{}.map", proxy.pid()));
        // The request runs the guest; the map was written when its code was loaded.
        let response = client::send(proxy.addr(), &request, |_| {}).await?;
        assert_eq!(response.status, 200);
        let text = std::fs::read_to_string(&map).unwrap_or_default();
        let _ = std::fs::remove_file(&map);
        drop(proxy);
        let named = text
            .lines()
            .filter(|line| line.contains("wasm[0]::function["))
            .count();
        if asked {
            // Each line: start address, size, name; the filter has hundreds of functions.
            assert!(named > 100, "{named} guest functions named in {map:?}");
            let first = text.lines().next().unwrap_or_default();
            assert!(
                first.starts_with("0x") && first.split(' ').count() >= 3,
                "{first}"
            );
        } else {
            assert_eq!(text, "", "a map was written without --guest-perf-map");
        }
    }
    Ok(())
}
