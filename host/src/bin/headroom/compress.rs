//! `headroom compress`: one request through the pipeline component, offline.

use std::io::{Read as _, Write as _};

use super::BadInput;
use super::args::*;
use anyhow::Result;
use headroom_host::compress::{Api, Compressed, Compressor, Decision};

pub(crate) fn run_compress(args: CompressArgs) -> Result<()> {
    let name = args.file.display().to_string();
    let body = if args.file.as_os_str() == "-" {
        let mut body = Vec::new();
        std::io::stdin()
            .read_to_end(&mut body)
            .map_err(|e| BadInput(format!("reading stdin: {e}")))?;
        body
    } else {
        std::fs::read(&args.file).map_err(|e| BadInput(format!("reading {name}: {e}")))?
    };
    let config = match args.config.as_deref() {
        Some(s) if s.starts_with('@') => Some(
            std::fs::read_to_string(&s[1..])
                .map_err(|e| BadInput(format!("reading the configuration {}: {e}", &s[1..])))?,
        ),
        other => other.map(str::to_owned),
    };
    let api = args
        .api
        .map(Api::from)
        .unwrap_or_else(|| headroom_host::compress::infer_api(&body));
    let mut compressor = Compressor::new()?;
    let out = match compressor.compress(&body, api, config.as_deref())? {
        Ok(out) => out,
        Err(e) if e.is_bad_input() => {
            return Err(BadInput(format!(
                "{name} as {}: {}: {}",
                api.as_str(),
                e.kind(),
                e.message()
            ))
            .into());
        }
        Err(e) => anyhow::bail!("{name}: {}: {}", e.kind(), e.message()),
    };
    let mut stdout = std::io::stdout().lock();
    if args.json {
        let mut line = manifest_json(&out)?;
        line.push(b'\n');
        stdout.write_all(&line)?;
    } else {
        stdout.write_all(&out.body)?;
        eprint!("{}", manifest_table(api, &out));
    }
    stdout.flush()?;
    Ok(())
}

/// The body in `--json` output.
#[derive(serde::Serialize)]
#[serde(untagged)]
pub(crate) enum JsonBody {
    /// The body as it is, byte for byte.
    Raw(Box<serde_json::value::RawValue>),
    /// A body serde_json does not take as JSON (the pipeline's parser accepted it, e.g. a lone
    /// surrogate escape), as a string.
    Text(String),
}

/// `--json`: the body (as JSON, byte for byte) and the manifest in one object.
#[derive(serde::Serialize)]
pub(crate) struct JsonOutput<'a> {
    pub(crate) body: JsonBody,
    pub(crate) changed: bool,
    pub(crate) model: Option<&'a str>,
    pub(crate) tokenizer: &'a str,
    pub(crate) exact: bool,
    pub(crate) tokens_saved: u64,
    pub(crate) bytes_before: u64,
    pub(crate) bytes_after: u64,
    pub(crate) blocks: Vec<JsonBlock<'a>>,
}

/// One tool output in `--json` output.
#[derive(serde::Serialize)]
pub(crate) struct JsonBlock<'a> {
    pub(crate) location: &'a str,
    pub(crate) tool: Option<&'a str>,
    pub(crate) kind: Option<&'a str>,
    pub(crate) strategy: &'a str,
    pub(crate) decision: &'static str,
    pub(crate) reason: &'a str,
    pub(crate) hash: &'a str,
    pub(crate) bytes_before: u64,
    pub(crate) bytes_after: u64,
    pub(crate) tokens_before: Option<u64>,
    pub(crate) tokens_after: Option<u64>,
}

/// `--json`: one line of JSON.
fn manifest_json(out: &Compressed) -> Result<Vec<u8>> {
    let body = match std::str::from_utf8(&out.body)
        .ok()
        .and_then(|text| serde_json::value::RawValue::from_string(text.to_owned()).ok())
    {
        Some(raw) => JsonBody::Raw(raw),
        None => JsonBody::Text(String::from_utf8_lossy(&out.body).into_owned()),
    };
    let blocks = out
        .blocks
        .iter()
        .map(|b| JsonBlock {
            location: &b.location,
            tool: b.tool.as_deref(),
            kind: b.kind.as_deref(),
            strategy: &b.strategy,
            decision: b.decision.as_str(),
            reason: &b.reason,
            hash: &b.hash,
            bytes_before: b.bytes_before,
            bytes_after: b.bytes_after,
            tokens_before: b.tokens_before,
            tokens_after: b.tokens_after,
        })
        .collect();
    let output = JsonOutput {
        body,
        changed: out.changed,
        model: out.model.as_deref(),
        tokenizer: &out.tokenizer,
        exact: out.exact,
        tokens_saved: out.tokens_saved,
        bytes_before: out.bytes_before,
        bytes_after: out.bytes_after,
        blocks,
    };
    Ok(serde_json::to_vec(&output)?)
}

/// The human-readable manifest: one line per tool output and a totals line.
fn manifest_table(api: Api, out: &Compressed) -> String {
    let dash = || "-".to_owned();
    let tokens = |before: Option<u64>, after: Option<u64>| match (before, after) {
        (Some(b), Some(a)) => format!("{b}→{a}"),
        _ => dash(),
    };
    let mut rows = vec![
        [
            "location", "tool", "kind", "strategy", "decision", "bytes", "tokens", "reason",
        ]
        .map(str::to_owned),
    ];
    for b in &out.blocks {
        rows.push([
            b.location.clone(),
            b.tool.clone().unwrap_or_else(dash),
            b.kind.clone().unwrap_or_else(dash),
            b.strategy.clone(),
            b.decision.as_str().to_owned(),
            format!("{}→{}", b.bytes_before, b.bytes_after),
            tokens(b.tokens_before, b.tokens_after),
            b.reason.clone(),
        ]);
    }
    let mut widths = [0usize; 8];
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut text = String::new();
    if out.blocks.is_empty() {
        text.push_str("no tool outputs found\n");
    } else {
        for row in &rows {
            let mut line = String::new();
            for (i, (cell, width)) in row.iter().zip(widths).enumerate() {
                if i + 1 == row.len() {
                    line.push_str(cell);
                } else {
                    let pad = width - cell.chars().count();
                    line.push_str(cell);
                    line.push_str(&" ".repeat(pad + 2));
                }
            }
            text.push_str(line.trim_end());
            text.push('\n');
        }
    }
    let replaced = out
        .blocks
        .iter()
        .filter(|b| matches!(b.decision, Decision::Compressed | Decision::Replayed))
        .count();
    let percent = if out.bytes_before == 0 {
        0.0
    } else {
        100.0 * (out.bytes_before as f64 - out.bytes_after as f64) / out.bytes_before as f64
    };
    let exactness = if out.exact {
        format!("exact, {}", out.tokenizer)
    } else {
        format!("estimated, {}", out.tokenizer)
    };
    text.push_str(&format!(
        "total: {} of {} tool outputs replaced ({}, model {}); body {}→{} bytes ({percent:.1}% smaller); {} tokens saved ({exactness})\n",
        replaced,
        out.blocks.len(),
        api.as_str(),
        out.model.as_deref().unwrap_or("-"),
        out.bytes_before,
        out.bytes_after,
        out.tokens_saved,
    ));
    text
}
