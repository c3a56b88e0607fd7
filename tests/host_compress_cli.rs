//! `headroom compress` as a user runs it: the compressed body on stdout, byte-identical to the
//! native pipeline's, and the manifest on stderr; `--json`; stdin; explicit and inferred APIs;
//! exit code 2 and a clear message for input that is not JSON or a bad configuration.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use anyhow::{Context as _, Result, ensure};
use headroom_plugin::api::Api;
use headroom_plugin::pipeline::{MemoryHost, PipelineConfig, compress_request};
use headroom_tests::corpus;
use headroom_tests::headroom::binary;

/// A temporary directory for this test process, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Result<Self> {
        let dir = std::env::temp_dir().join(format!(
            "headroom-compress-cli-{name}-{}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        Ok(Self(dir))
    }

    fn write(&self, name: &str, bytes: &[u8]) -> Result<PathBuf> {
        let path = self.0.join(name);
        std::fs::write(&path, bytes)?;
        Ok(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs `headroom compress ARGS…` with its compile cache in `dir`.
fn compress(dir: &TempDir, args: &[&str], stdin: Option<&[u8]>) -> Result<Output> {
    let mut child = Command::new(binary()?)
        .arg("compress")
        .args(args)
        .env("HEADROOM_CACHE_DIR", dir.0.join("cache"))
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    if let (Some(bytes), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(bytes)?;
    }
    Ok(child.wait_with_output()?)
}

fn native(api: Api, body: &[u8]) -> Result<Vec<u8>> {
    let outcome = compress_request(
        api,
        body,
        &PipelineConfig::default(),
        &mut MemoryHost::default(),
    )
    .map_err(|e| anyhow::anyhow!("native pipeline: {e}"))?;
    Ok(outcome.body.unwrap_or_else(|| body.to_vec()))
}

fn path_str(path: &Path) -> Result<&str> {
    path.to_str().context("a UTF-8 temp path")
}

#[test]
fn stdout_is_the_native_pipelines_body_and_stderr_the_manifest() -> Result<()> {
    let dir = TempDir::new("body")?;
    let body = corpus::agent_multi_request();
    let file = dir.write("request.json", &body)?;
    let out = compress(&dir, &[path_str(&file)?], None)?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(out.status.success(), "exit {:?}: {stderr}", out.status);
    let expected = native(Api::OpenAiChat, &body)?;
    ensure!(
        out.stdout == expected,
        "stdout differs from the native pipeline's body ({} vs {} bytes)",
        out.stdout.len(),
        expected.len()
    );
    ensure!(out.stdout.len() < body.len(), "nothing was compressed");
    for want in [
        "location",
        "decision",
        "messages[",
        "query_events",
        "compressed",
        "too_small",
        "total: 4 of",
        "tokens saved (exact, o200k_base)",
    ] {
        ensure!(stderr.contains(want), "stderr lacks {want:?}:\n{stderr}");
    }

    // The same from stdin, with the API named.
    let out = compress(&dir, &["-", "--api", "openai-chat"], Some(&body))?;
    ensure!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    ensure!(out.stdout == expected, "stdin: stdout differs");
    Ok(())
}

#[test]
fn json_output_carries_the_body_and_the_blocks() -> Result<()> {
    let dir = TempDir::new("json")?;
    let output = corpus::log_text(40_000, 5);
    let body = serde_json::to_vec(&serde_json::json!({
        "model": "claude-sonnet-4-5",
        "max_tokens": 512,
        "messages": [
            {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "build", "input": {}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": output}]}
        ]
    }))?;
    let file = dir.write("anthropic.json", &body)?;
    // The API is inferred (Anthropic), and a configuration is read from a file.
    let config = dir.write("config.json", br#"{"log_context_lines": 1}"#)?;
    let config_arg = format!("@{}", path_str(&config)?);
    let out = compress(
        &dir,
        &[path_str(&file)?, "--json", "--config", &config_arg],
        None,
    )?;
    ensure!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let config: PipelineConfig = serde_json::from_str(r#"{"log_context_lines": 1}"#)?;
    let expected = compress_request(
        Api::AnthropicMessages,
        &body,
        &config,
        &mut MemoryHost::default(),
    )
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    let expected_body: serde_json::Value =
        serde_json::from_slice(expected.body.as_deref().context("compressed natively")?)?;
    ensure!(doc["body"] == expected_body, "body differs");
    ensure!(doc["changed"] == true);
    ensure!(doc["model"] == "claude-sonnet-4-5");
    ensure!(doc["tokenizer"] == "estimate" && doc["exact"] == false);
    ensure!(doc["tokens_saved"] == expected.tokens_saved());
    ensure!(doc["bytes_before"] == body.len() as u64);
    let blocks = doc["blocks"].as_array().context("blocks is an array")?;
    ensure!(blocks.len() == 1, "{blocks:?}");
    let block = &blocks[0];
    ensure!(block["location"] == "messages[1].content[0].content");
    ensure!(block["tool"] == "build");
    ensure!(block["kind"] == "log");
    ensure!(block["decision"] == "compressed", "{block}");
    ensure!(block["hash"].as_str().is_some_and(|h| h.len() == 16));
    ensure!(block["tokens_after"].as_u64() < block["tokens_before"].as_u64());
    Ok(())
}

#[test]
fn input_that_is_not_json_exits_2_with_a_clear_message() -> Result<()> {
    let dir = TempDir::new("bad")?;
    let file = dir.write("notes.txt", b"this is not a request\n")?;
    let out = compress(&dir, &[path_str(&file)?], None)?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(
        out.status.code() == Some(2),
        "exit {:?}: {stderr}",
        out.status
    );
    ensure!(out.stdout.is_empty(), "stdout: {:?}", out.stdout);
    ensure!(stderr.contains("notes.txt"), "{stderr}");
    ensure!(stderr.contains("not valid JSON"), "{stderr}");

    // A bad configuration names its field; a missing file says so.
    let request = dir.write("request.json", &corpus::tiny_chat(false))?;
    let out = compress(
        &dir,
        &[path_str(&request)?, "--config", r#"{"max_items": "x"}"#],
        None,
    )?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(
        out.status.code() == Some(2),
        "exit {:?}: {stderr}",
        out.status
    );
    ensure!(stderr.contains("'max_items'"), "{stderr}");
    let missing = dir.0.join("missing.json");
    let out = compress(&dir, &[path_str(&missing)?], None)?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(
        out.status.code() == Some(2),
        "exit {:?}: {stderr}",
        out.status
    );
    ensure!(stderr.contains("missing.json"), "{stderr}");
    Ok(())
}
