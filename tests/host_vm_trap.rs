//! A guest trap in our host: the request that trapped still reaches its upstream with its
//! original bytes (fail open), the VM is replaced, the trap is counted, and the next request is
//! served by the new VM. The traps are real ones: the VM's memory limit is below the body the
//! filter is allowed to buffer, so the guest's allocator fails and aborts; and a call limit
//! below what compressing a 4 MB request takes interrupts the guest mid-call.

use std::time::Duration;

use headroom_host::proxy::ProxyConfig;
use headroom_tests::client::{self, ClientRequest};
use headroom_tests::corpus;
use headroom_tests::headroom::{InProcess, test_config};
use headroom_tests::prom;
use headroom_tests::upstream::{Reply, Scripted, Upstream};

fn tool_request(payload_bytes: usize) -> Vec<u8> {
    let pretty = format!("{{\n  \"log\": \"{}\"\n}}", "x".repeat(payload_bytes));
    serde_json::to_vec(&serde_json::json!({
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": "go"}, {"role": "tool", "tool_call_id": "c1", "content": pretty}]
    }))
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trapped_vm_fails_open_and_is_replaced() -> anyhow::Result<()> {
    let (upstream, host) = one_worker_host(|config| {
        config.plugin_config = br#"{"max_body_bytes": 134217728}"#.to_vec();
        config.vm_limits.memory_bytes = 24 << 20;
    })
    .await?;
    let before = prom::parse(&host.proxy().metrics().render());

    // 40 MB: more than the VM may hold, less than the filter may buffer.
    let big = tool_request(40 << 20);
    let response = client::send(host.proxy().local_addr(), &chat_post(&big), |_| {}).await?;
    assert_eq!(
        response.status,
        200,
        "{}",
        String::from_utf8_lossy(&response.body)
    );
    let received = upstream.take_received();
    assert_eq!(received.len(), 1);
    assert!(
        received[0].body == big,
        "the upstream must get the original bytes after the trap"
    );

    let after = prom::parse(&host.proxy().metrics().render());
    assert_eq!(
        prom::delta(&before, &after, "headroom_host_vm_traps_total"),
        1.0
    );
    assert_eq!(
        prom::delta(&before, &after, "headroom_host_vm_reloads_total"),
        1.0
    );

    // The replacement VM compresses the next request (above the pipeline's 512-byte floor).
    let small = tool_request(600);
    let response = client::send(host.proxy().local_addr(), &chat_post(&small), |_| {}).await?;
    assert_eq!(response.status, 200);
    let received = upstream.take_received();
    let sent: serde_json::Value = serde_json::from_slice(&received[0].body)?;
    assert_eq!(
        sent["messages"][1]["content"],
        format!("{{\"log\":\"{}\"}}", "x".repeat(600))
    );
    let last = prom::parse(&host.proxy().metrics().render());
    assert_eq!(
        prom::delta(
            &after,
            &last,
            r#"headroom_tool_outputs_total{decision="compressed"}"#
        ),
        1.0
    );
    assert_eq!(
        prom::delta(&after, &last, "headroom_host_vm_traps_total"),
        0.0
    );
    Ok(())
}

/// An upstream that answers every request `200 {"ok":true}`, and a one-worker `headroom` in
/// front of it with the test configuration as `adjust` leaves it.
async fn one_worker_host(
    adjust: impl FnOnce(&mut ProxyConfig),
) -> anyhow::Result<(Upstream, InProcess)> {
    let ok = Scripted {
        status: 200,
        headers: vec![("content-type".into(), "application/json".into())],
        chunks: vec![b"{\"ok\":true}".to_vec()],
        ..Scripted::default()
    };
    let upstream = Upstream::start(Reply::Scripted(ok)).await?;
    let mut config = test_config(upstream.addr());
    config.workers = 1;
    adjust(&mut config);
    let host = InProcess::start(config)?;
    Ok((upstream, host))
}

/// A Chat Completions POST of `body`, sent in 1 MB chunks.
fn chat_post(body: &[u8]) -> ClientRequest {
    ClientRequest {
        method: "POST".into(),
        path: "/v1/chat/completions".into(),
        headers: vec![("content-type".into(), b"application/json".to_vec())],
        chunks: body.chunks(1 << 20).map(<[u8]>::to_vec).collect(),
        ..ClientRequest::default()
    }
}

/// Sends `body` through a one-worker `headroom` whose guest calls may take `call_timeout`;
/// returns what the upstream received and the host's metrics before and after.
async fn through_limited_host(
    body: &[u8],
    call_timeout: Option<Duration>,
) -> anyhow::Result<(Vec<u8>, prom::Samples, prom::Samples)> {
    let (upstream, host) =
        one_worker_host(|config| config.vm_limits.call_timeout = call_timeout).await?;
    let before = prom::parse(&host.proxy().metrics().render());
    let response = client::send(host.proxy().local_addr(), &chat_post(body), |_| {}).await?;
    assert_eq!(response.status, 200);
    let received = upstream.take_received();
    assert_eq!(received.len(), 1);
    let after = prom::parse(&host.proxy().metrics().render());
    Ok((received[0].body.clone(), before, after))
}

/// A guest call longer than the limit is interrupted: the request fails open with its original
/// bytes, the VM is replaced. 50 ms is five epoch ticks, far above any call but the
/// compression of this 4 MB request (hundreds of ms in wasm), so only that call is interrupted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_over_its_time_limit_is_interrupted_and_fails_open() -> anyhow::Result<()> {
    let body = corpus::sized_request(4 << 20);
    let (sent, before, after) =
        through_limited_host(&body, Some(Duration::from_millis(50))).await?;
    assert!(sent == body, "the upstream must get the original bytes");
    assert_eq!(
        prom::delta(&before, &after, "headroom_host_vm_traps_total"),
        1.0
    );
    assert_eq!(
        prom::delta(&before, &after, "headroom_host_vm_reloads_total"),
        1.0
    );
    Ok(())
}

/// Without a limit (`--vm-call-timeout-ms 0`, as in Envoy) the same request is compressed:
/// the module is compiled without the interruption checks and no call is cut short.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_limit_the_same_call_completes() -> anyhow::Result<()> {
    let body = corpus::sized_request(4 << 20);
    let (sent, before, after) = through_limited_host(&body, None).await?;
    assert!(
        sent.len() < body.len() / 2,
        "{} of {} bytes",
        sent.len(),
        body.len()
    );
    assert_eq!(
        prom::delta(&before, &after, "headroom_host_vm_traps_total"),
        0.0
    );
    assert!(
        prom::delta(
            &before,
            &after,
            r#"headroom_tool_outputs_total{decision="compressed"}"#
        ) >= 1.0
    );
    Ok(())
}
