//! Tried as a new user would: the official `openai` and `anthropic` Python SDKs, their base URL
//! pointed at `headroom`, complete a normal and a streaming call against the test upstream.

use std::path::PathBuf;
use std::process::Command;

use headroom_tests::headroom::{InProcess, test_config};
use headroom_tests::upstream::{Reply, Upstream};

/// The Python with the SDKs: `$HEADROOM_PYTHON`, else the project's `.venv` (the test command
/// creates it).
fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("HEADROOM_PYTHON") {
        return PathBuf::from(p);
    }
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
    assert!(
        venv.exists(),
        "{} is missing: run the test command (scripts/test), which installs the SDKs",
        venv.display()
    );
    venv
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_sdks_work_through_headroom() -> anyhow::Result<()> {
    let upstream = Upstream::start(Reply::Provider {
        chunk_delay: std::time::Duration::from_millis(5),
    })
    .await?;
    let host = InProcess::start(test_config(upstream.addr()))?;
    let base = format!("http://{}", host.proxy().local_addr());
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/sdk/clients.py");
    let output = tokio::task::spawn_blocking(move || {
        let mut cmd = Command::new(python());
        // A user's own provider settings (tokens, base URLs) must not leak into the test.
        for (key, _) in std::env::vars_os() {
            let key = key.to_string_lossy().to_string();
            if key.starts_with("ANTHROPIC_") || key.starts_with("OPENAI_") {
                cmd.env_remove(key);
            }
        }
        cmd.arg(script).env("HEADROOM_BASE_URL", base).output()
    })
    .await??;
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "SDK calls failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        stdout.lines().filter(|l| l.starts_with("ok ")).count(),
        4,
        "{stdout}"
    );

    let received = upstream.take_received();
    let paths: Vec<&str> = received.iter().map(|r| r.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "/v1/chat/completions",
            "/v1/chat/completions",
            "/v1/messages",
            "/v1/messages"
        ]
    );
    assert_eq!(
        received[0].header("authorization"),
        Some(&b"Bearer sk-test-openai"[..])
    );
    // The Anthropic SDK sends its key as `x-api-key` or (2.x) as a bearer token: either way, untouched.
    let key = (
        received[2].header("x-api-key"),
        received[2].header("authorization"),
    );
    assert!(
        matches!(
            key,
            (Some(b"sk-ant-test"), _) | (_, Some(b"Bearer sk-ant-test"))
        ),
        "{key:?}"
    );
    Ok(())
}
