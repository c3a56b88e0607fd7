//! Every input the fuzzers found (a crash, a failed invariant or a slow input, minimised) and
//! every hand-picked seed, replayed natively through the same checks the fuzz targets run
//! (`fuzz/src/lib.rs`, included below), so `cargo test` guards them without nightly.
//!
//! Inputs live in `fuzz/regressions/<target>/` and `fuzz/seeds/<target>/`, one file each; see
//! `fuzz/README.md`. Slow inputs are not timed here (wall time depends on the machine): each
//! input's time is printed, and a slow one shows in the test's run time.
//!
//! `fuzz/regressions/open/<target>/` holds findings whose fix is not in yet: their test is
//! ignored (`cargo test --test fuzz_regressions -- --ignored` shows them failing); the fix
//! moves the files up to `fuzz/regressions/<target>/`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

#[path = "../../fuzz/src/lib.rs"]
mod checks;

use std::path::{Path, PathBuf};
use std::time::Instant;

use headroom_plugin::api::Api;

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz")
}

/// The files of `fuzz/<kind>/<target>/`, sorted (none when the folder does not exist).
fn inputs(kind: &str, target: &str) -> Vec<PathBuf> {
    let Ok(dir) = std::fs::read_dir(fuzz_dir().join(kind).join(target)) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = dir
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && p.extension().is_none_or(|e| e != "md"))
        .collect();
    files.sort();
    files
}

fn replay(kind: &str) -> usize {
    replay_dir(kind, "")
}

fn replay_dir(kind: &str, sub: &str) -> usize {
    let mut count = 0;
    for target in checks::TARGETS {
        for path in inputs(kind, &format!("{sub}{target}")) {
            let data = std::fs::read(&path).unwrap();
            let start = Instant::now();
            checks::run_target(target, &data);
            let took = start.elapsed();
            if kind != "seeds" || took.as_millis() > 100 {
                eprintln!("{target}: {} in {took:?}", path.display());
            }
            count += 1;
        }
    }
    count
}

#[test]
fn fuzz_regressions_pass_their_targets_checks() {
    let n = replay("regressions");
    eprintln!("{n} regression inputs replayed");
}

#[test]
#[ignore = "open fuzz findings, fixed outside this file: see fuzz/regressions/README.md"]
fn fuzz_open_findings_pass_their_targets_checks() {
    let n = replay_dir("regressions", "open/");
    eprintln!("{n} open findings replayed");
}

#[test]
fn fuzz_seeds_pass_their_targets_checks() {
    let n = replay("seeds");
    assert!(n > 0, "no seeds under fuzz/seeds");
}

/// The compression targets are only worth running if their seeds reach the compressors: each
/// API has seeds whose body is rewritten (and then checked byte by byte).
#[test]
fn compression_seeds_reach_the_compressors() {
    for (target, api) in [
        ("compress_openai_chat", Api::OpenAiChat),
        ("compress_openai_responses", Api::OpenAiResponses),
        ("compress_anthropic", Api::AnthropicMessages),
    ] {
        let rewritten = inputs("seeds", target)
            .iter()
            .filter(|path| checks::compress(api, &std::fs::read(path).unwrap()))
            .count();
        assert!(
            rewritten >= 3,
            "{target}: only {rewritten} seeds are rewritten"
        );
    }
}

/// The split-point invariant is not vacuous: the usage seeds report usage.
#[test]
fn usage_seeds_report_usage() {
    for (target, streaming) in [("usage_json", false), ("usage_sse", true)] {
        let reported = inputs("seeds", target)
            .iter()
            .filter(|path| {
                let data = std::fs::read(path).unwrap();
                let (head, body) = data.split_at(data.len().min(4));
                let api = Api::ALL[usize::from(head.first().copied().unwrap_or(0)) % 3];
                let mut parser = headroom_plugin::usage::UsageParser::new(api, streaming);
                parser.feed(body);
                parser
                    .finish()
                    .is_some_and(|u| u.input_tokens.is_some() || u.output_tokens.is_some())
            })
            .count();
        assert!(
            reported >= 3,
            "{target}: only {reported} seeds report usage"
        );
    }
}
