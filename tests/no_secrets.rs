//! Credentials and message content never leave a trace: a request carrying `Authorization`,
//! `x-api-key` and a secret inside a tool output that gets compressed goes through the real
//! `headroom` binary at debug log level; neither the log, nor `/metrics`, nor `/stats` holds
//! any of them.

use std::time::Duration;

use headroom_tests::client::{self, ClientRequest};
use headroom_tests::corpus;
use headroom_tests::headroom::{Process, get};
use headroom_tests::upstream::{Reply, Upstream};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_stay_out_of_logs_metrics_and_stats() -> anyhow::Result<()> {
    let upstream = Upstream::start(Reply::Provider {
        chunk_delay: Duration::ZERO,
    })
    .await?;
    let url = format!("http://{}", upstream.addr());
    let proxy = Process::start(
        &[
            "--openai-api-url",
            &url,
            "--anthropic-api-url",
            &url,
            "--log-level",
            "debug",
        ],
        &[],
    )?;
    // A large JSON tool output (compressed, lossy) with the secret in an error row.
    let mut rows = corpus::records_json(200, 5);
    rows = rows.replacen(
        "\"status\": \"ok\"",
        "\"status\": \"error\", \"detail\": \"token SECRET-IN-BODY-3 rejected\"",
        1,
    );
    let body = corpus::tool_output_request(rows);
    for (path, auth) in [
        (
            "/v1/chat/completions",
            ("authorization", "Bearer sk-SECRET-BEARER-1"),
        ),
        ("/v1/messages", ("x-api-key", "sk-ant-SECRET-KEY-2")),
    ] {
        let request = ClientRequest {
            method: "POST".into(),
            path: path.into(),
            headers: vec![
                ("content-type".into(), b"application/json".to_vec()),
                (auth.0.into(), auth.1.as_bytes().to_vec()),
            ],
            chunks: vec![body.clone()],
            ..ClientRequest::default()
        };
        let response = client::send(proxy.addr(), &request, |_| {}).await?;
        assert_eq!(response.status, 200);
    }
    let received = upstream.take_received();
    assert_eq!(received.len(), 2);
    // The credentials do reach the provider, and the body was compressed.
    assert!(received[0].header("authorization").is_some());
    assert!(received[0].body.len() < body.len());

    tokio::time::sleep(Duration::from_millis(200)).await;
    let metrics = String::from_utf8(get(proxy.addr(), "/metrics").await?.body)?;
    let stats = String::from_utf8(get(proxy.addr(), "/stats").await?.body)?;
    let log = proxy.log().join("\n");
    assert!(
        log.contains("Pipeline complete"),
        "the debug log has the pipeline's lines: {log}"
    );
    for (what, text) in [("log", &log), ("/metrics", &metrics), ("/stats", &stats)] {
        for secret in ["SECRET-BEARER-1", "SECRET-KEY-2", "SECRET-IN-BODY-3", "sk-"] {
            assert!(!text.contains(secret), "{what} holds {secret}:\n{text}");
        }
    }
    Ok(())
}
