//! The real corpus (`tests/corpus/real`, sources and licences in its PROVENANCE.md): public
//! logs, API responses, diffs, search and build output, each sent as one tool output under a
//! user question. Per content type, the tokens removed are asserted against the targets of
//! issue 15, and the needles are asserted kept, every one:
//!
//! - logs: one verbatim line of every loghub ground-truth event (`*.events.tsv`) that is an
//!   error, warning or exception (by its level column, or a severity word in its template);
//! - build and test output: one verbatim line of every distinct severity-line template (digits
//!   and quoted spans masked, independently of the compressor's own templates), and per
//!   distinct Python exception one traceback with its three innermost frames;
//! - JSON: every anomalous record (HTTP status of 400 or more, or a non-empty error member);
//! - everywhere: every line (or record) holding the question's term;
//! - and the original of every lossy block retrievable under its hash.
//!
//! With `HEADROOM_QUALITY_PEER_DIR` set (scripts/quality), the Python peer's outputs of the
//! same inputs (`<file>.out` there) are measured the same way and printed next to ours; with
//! `HEADROOM_QUALITY_OURS_DIR` set, our outputs are written there.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use super::{Decision, MemoryHost, OmittedStore, PipelineConfig, compress_request};
use crate::api::Api;
use crate::tokens::Encoding;

/// A content type of the corpus, with its target (fraction of tokens removed, on average).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Type {
    Log,
    Json,
    Search,
    Diff,
    Build,
}

impl Type {
    fn name(self) -> &'static str {
        match self {
            Type::Log => "logs",
            Type::Json => "JSON arrays",
            Type::Search => "search",
            Type::Diff => "diffs",
            Type::Build => "build/test",
        }
    }

    fn target(self) -> f64 {
        match self {
            Type::Log | Type::Json => 0.90,
            Type::Search => 0.50,
            Type::Diff => 0.30,
            Type::Build => 0.80,
        }
    }
}

/// One corpus file, the user's question sent with it, and the question's term: every line
/// (or record) holding it is a needle.
struct Case {
    file: &'static str,
    ty: Type,
    query: &'static str,
    term: &'static str,
}

const CASES: &[Case] = &[
    Case {
        file: "logs/Linux.log",
        ty: Type::Log,
        query: "When did syslogd restart?",
        term: "syslogd",
    },
    Case {
        file: "logs/Apache.log",
        ty: Type::Log,
        query: "What happened to child 8765?",
        term: "child 8765",
    },
    Case {
        file: "logs/HDFS.log",
        ty: Type::Log,
        query: "What happened to blk_-8775602795571523802?",
        term: "blk_-8775602795571523802",
    },
    Case {
        file: "logs/OpenSSH.log",
        ty: Type::Log,
        query: "What did pgadmin try?",
        term: "pgadmin",
    },
    Case {
        file: "logs/Android.log",
        ty: Type::Log,
        query: "Why are touches blocked (mBlockTouches)?",
        term: "mBlockTouches",
    },
    Case {
        file: "logs/HealthApp.log",
        ty: Type::Log,
        query: "When did uploadStaticsToDB run?",
        term: "uploadStaticsToDB",
    },
    Case {
        file: "logs/Mac.log",
        ty: Type::Log,
        query: "What is wrong with the weather widget?",
        term: "weather",
    },
    Case {
        file: "logs/Thunderbird.log",
        ty: Type::Log,
        query: "Did any node get a DHCPOFFER?",
        term: "DHCPOFFER",
    },
    Case {
        file: "logs/Windows.log",
        ty: Type::Log,
        query: "What did TrustedInstaller do?",
        term: "TrustedInstaller",
    },
    Case {
        file: "logs/BGL.log",
        ty: Type::Log,
        query: "Why was prefetch disabled?",
        term: "prefetch",
    },
    Case {
        file: "logs/Zookeeper.log",
        ty: Type::Log,
        query: "Why are sessions Expiring?",
        term: "Expiring",
    },
    Case {
        file: "json/github_api_calls.json",
        ty: Type::Json,
        query: "Which calls of the lock-issue scenario were made?",
        term: "lock-issue",
    },
    Case {
        file: "json/cargo_metadata_packages.json",
        ty: Type::Json,
        query: "Which licence does wasmtime-internal-cranelift have?",
        term: "wasmtime-internal-cranelift",
    },
    Case {
        file: "json/pip_inspect_installed.json",
        ty: Type::Json,
        query: "Which version of tiktoken is installed?",
        term: "tiktoken",
    },
    Case {
        file: "search/rg_self_requests.txt",
        ty: Type::Search,
        query: "Where is self.proxies used?",
        term: "self.proxies",
    },
    Case {
        file: "search/rg_timeout_requests.txt",
        ty: Type::Search,
        query: "Where is ConnectTimeout raised?",
        term: "ConnectTimeout",
    },
    Case {
        file: "search/rg_def_test_requests.txt",
        ty: Type::Search,
        query: "Which tests cover digest auth?",
        term: "digest",
    },
    Case {
        file: "search/rg_raise_context_requests.txt",
        ty: Type::Search,
        query: "Where is InvalidURL raised?",
        term: "InvalidURL",
    },
    Case {
        file: "diff/requests_log_p.diff",
        ty: Type::Diff,
        query: "What changed around _get_connection?",
        term: "_get_connection",
    },
    Case {
        file: "diff/requests_v2.31.0_v2.32.0.diff",
        ty: Type::Diff,
        query: "What changed in ssl_context handling?",
        term: "ssl_context",
    },
    Case {
        file: "build/pytest_requests_v2.32.3.txt",
        ty: Type::Build,
        query: "Why did test_connect_timeout fail?",
        term: "test_connect_timeout",
    },
    Case {
        file: "build/pytest_native_requests_v2.32.3.txt",
        ty: Type::Build,
        query: "Why did test_use_proxy_from_environment fail?",
        term: "test_use_proxy_from_environment",
    },
    Case {
        file: "build/cargo_clippy_pedantic_plugin.txt",
        ty: Type::Build,
        query: "Which warnings are in marker.rs?",
        term: "marker.rs",
    },
    Case {
        file: "build/cargo_test_plugin.txt",
        ty: Type::Build,
        query: "Did the tokens:: tests pass?",
        term: "tokens::",
    },
];

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/corpus/real")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A needle: kept when any of `any_of` is found in the output (how depends on the type).
struct Needle {
    what: String,
    any_of: Vec<NeedleForm>,
}

enum NeedleForm {
    /// A whole line of the original.
    Line(String),
    /// Whole lines of the original, every one.
    Lines(Vec<String>),
    /// A search match: its file and `line:text`.
    Match(String, String),
    /// A record: JSON pointers and their values in one kept item.
    Record(Vec<(String, Value)>),
}

/// Severity roots, matched inside lowercased words (`failure`, `JSchException`, `warnings`).
const SEVERITY_ROOTS: [&str; 13] = [
    "error",
    "exception",
    "fail",
    "fatal",
    "panic",
    "critical",
    "severe",
    "warn",
    "denied",
    "refused",
    "timeout",
    "abort",
    "crash",
];

fn has_severity_word(text: &str) -> bool {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| w.len() >= 4)
        .any(|w| {
            let lower = w.to_lowercase();
            SEVERITY_ROOTS.iter().any(|root| lower.contains(root))
        })
}

fn severe_level(level: &str) -> bool {
    matches!(
        level.to_ascii_lowercase().as_str(),
        "e" | "w"
            | "f"
            | "error"
            | "err"
            | "warn"
            | "warning"
            | "fatal"
            | "severe"
            | "crit"
            | "critical"
            | "alert"
            | "emerg"
    )
}

/// The test's own line template: digit runs and quoted spans (`"…"`, `` `…` ``, and `'…'`
/// opened at a word's start, not `you've`) masked.
fn needle_template(line: &str) -> String {
    let mut out = String::new();
    let mut quote: Option<char> = None;
    let mut in_digits = false;
    let mut previous = ' ';
    for c in line.chars() {
        let after = std::mem::replace(&mut previous, c);
        if let Some(q) = quote {
            if c == q {
                quote = None;
                out.push(c);
            }
            continue;
        }
        if c == '`' || c == '"' || (c == '\'' && !after.is_alphanumeric()) {
            quote = Some(c);
            out.push(c);
            continue;
        }
        if c.is_ascii_digit() {
            if !in_digits {
                out.push('0');
            }
            in_digits = true;
            continue;
        }
        in_digits = false;
        out.push(c);
    }
    out
}

fn term_lines(text: &str, term: &str) -> Vec<Needle> {
    text.lines()
        .filter(|l| l.contains(term))
        .map(|l| Needle {
            what: format!("question line {l:?}"),
            any_of: vec![NeedleForm::Line(l.to_owned())],
        })
        .collect()
}

fn log_needles(case: &Case, text: &str) -> Vec<Needle> {
    let dir = corpus_dir();
    let stem = case.file.trim_end_matches(".log");
    let templates: BTreeMap<String, String> = read(&dir.join(format!("{stem}.templates.tsv")))
        .lines()
        .skip(1)
        .filter_map(|l| l.split_once('\t'))
        .map(|(e, t)| (e.to_owned(), t.to_owned()))
        .collect();
    let lines: Vec<&str> = text.lines().collect();
    let mut by_event: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for row in read(&dir.join(format!("{stem}.events.tsv")))
        .lines()
        .skip(1)
    {
        let cols: Vec<&str> = row.split('\t').collect();
        let (line, level, event) = (cols[0], cols[1], cols[2]);
        let template = templates.get(event).map_or("", String::as_str);
        if severe_level(level) || has_severity_word(template) {
            let at: usize = line.parse().unwrap();
            by_event
                .entry(event.to_owned())
                .or_default()
                .push(lines[at - 1].to_owned());
        }
    }
    let mut needles: Vec<Needle> = by_event
        .into_iter()
        .map(|(event, lines)| Needle {
            what: format!("event {event} ({})", templates[&event]),
            any_of: lines.into_iter().map(NeedleForm::Line).collect(),
        })
        .collect();
    needles.extend(term_lines(text, case.term));
    needles
}

fn build_needles(case: &Case, text: &str) -> Vec<Needle> {
    let mut by_template: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in text.lines().filter(|l| has_severity_word(l)) {
        by_template
            .entry(needle_template(line))
            .or_default()
            .push(line.to_owned());
    }
    let mut needles: Vec<Needle> = by_template
        .into_iter()
        .map(|(template, lines)| Needle {
            what: format!("severity template {template:?}"),
            any_of: lines.into_iter().map(NeedleForm::Line).collect(),
        })
        .collect();
    needles.extend(traceback_needles(text));
    needles.extend(term_lines(text, case.term));
    needles
}

/// Python tracebacks: per distinct exception line (its template), one occurrence with its
/// stack trace, the exception line and its three innermost `File` frames.
fn traceback_needles(text: &str) -> Vec<Needle> {
    let lines: Vec<&str> = text.lines().collect();
    let mut by_exception: BTreeMap<String, Vec<NeedleForm>> = BTreeMap::new();
    for (at, line) in lines.iter().enumerate() {
        if !line.starts_with("Traceback (most recent call last)") {
            continue;
        }
        let Some(end) = (at + 1..lines.len()).find(|&j| !lines[j].starts_with(' ')) else {
            continue;
        };
        let mut trace: Vec<String> = lines[at..end]
            .iter()
            .rev()
            .filter(|l| l.trim_start().starts_with("File \""))
            .take(3)
            .map(|l| (*l).to_owned())
            .collect();
        trace.push(lines[end].to_owned());
        by_exception
            .entry(needle_template(lines[end]))
            .or_default()
            .push(NeedleForm::Lines(trace));
    }
    by_exception
        .into_iter()
        .map(|(exception, any_of)| Needle {
            what: format!("traceback of {exception:?}"),
            any_of,
        })
        .collect()
}

fn search_needles(case: &Case, text: &str) -> Vec<Needle> {
    text.lines()
        .filter_map(super::detect::parse_search_line)
        .filter(|(_, _, body, is_match)| *is_match && body.contains(case.term))
        .map(|(path, line, body, _)| Needle {
            what: format!("match {path}:{line}"),
            any_of: vec![NeedleForm::Match(path.to_owned(), format!("{line}:{body}"))],
        })
        .collect()
}

fn diff_needles(case: &Case, text: &str) -> Vec<Needle> {
    text.lines()
        .filter(|l| {
            l.starts_with("diff --git ")
                || ((l.starts_with('+') || l.starts_with('-'))
                    && !l.starts_with("+++")
                    && !l.starts_with("---")
                    && l.contains(case.term))
        })
        .map(|l| Needle {
            what: format!("diff line {l:?}"),
            any_of: vec![NeedleForm::Line(l.to_owned())],
        })
        .collect()
}

/// Anomalous records (status >= 400, a non-empty error member) and the records holding the
/// question's term in a string member (at any depth), of the top-level array.
fn json_needles(case: &Case, text: &str) -> Vec<Needle> {
    let items: Vec<Value> = serde_json::from_str(text).unwrap();
    let mut needles = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let Some(object) = item.as_object() else {
            continue;
        };
        let status = ["status", "status_code", "code"]
            .iter()
            .filter_map(|k| object.get(*k).and_then(Value::as_u64))
            .any(|s| (400..600).contains(&s));
        let error = ["error", "errors"].iter().any(|k| {
            object.get(*k).is_some_and(|v| match v {
                Value::Null | Value::Bool(false) => false,
                Value::String(s) => !s.is_empty(),
                Value::Array(a) => !a.is_empty(),
                Value::Object(o) => !o.is_empty(),
                _ => true,
            })
        });
        let names_term = object
            .values()
            .any(|v| holds_string(v, &|s| s == case.term));
        if !(status || error || names_term) {
            continue;
        }
        // Identified by its top-level scalars (nested arrays may be reduced in their turn).
        let identity: Vec<(String, Value)> = object
            .iter()
            .filter(|(_, v)| !v.is_array() && !v.is_object())
            .map(|(k, v)| (format!("/{k}"), v.clone()))
            .chain(names_term.then(|| term_pointer(item, case.term)).flatten())
            .collect();
        needles.push(Needle {
            what: format!(
                "record {i}{}",
                if names_term {
                    " (question)"
                } else {
                    " (anomaly)"
                }
            ),
            any_of: vec![NeedleForm::Record(identity)],
        });
    }
    needles
}

fn holds_string(value: &Value, pred: &dyn Fn(&str) -> bool) -> bool {
    match value {
        Value::String(s) => pred(s),
        Value::Object(o) => o.values().any(|v| holds_string(v, pred)),
        _ => false,
    }
}

/// The pointer of the string member equal to `term`, with its value.
fn term_pointer(value: &Value, term: &str) -> Option<(String, Value)> {
    match value {
        Value::String(s) if s == term => Some((String::new(), value.clone())),
        Value::Object(o) => o
            .iter()
            .find_map(|(k, v)| term_pointer(v, term).map(|(p, v)| (format!("/{k}{p}"), v))),
        _ => None,
    }
}

/// The items an output keeps of a top-level array: an array (markers skipped) or a table.
fn kept_items(output: &str) -> Vec<Value> {
    let Ok(value) = serde_json::from_str::<Value>(output) else {
        return Vec::new();
    };
    match value {
        Value::Array(items) => items.into_iter().filter(|v| !v.is_string()).collect(),
        Value::Object(table) => {
            let columns: Vec<String> = table
                .get(super::json_crush::TABLE_KEY)
                .and_then(Value::as_array)
                .map(|c| {
                    c.iter()
                        .filter_map(|k| k.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default();
            table
                .get("rows")
                .and_then(Value::as_array)
                .map(|rows| {
                    rows.iter()
                        .filter_map(Value::as_array)
                        .map(|row| {
                            Value::Object(
                                columns.iter().cloned().zip(row.iter().cloned()).collect(),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default()
        }
        _ => Vec::new(),
    }
}

/// Which needles `output` keeps.
fn kept(needles: &[Needle], output: &str) -> Vec<bool> {
    let mut lines: HashSet<&str> = HashSet::new();
    for line in output.lines() {
        lines.insert(line);
        // A representative line carries its repeat count.
        if let Some((head, tail)) = line.rsplit_once(" [+")
            && tail.ends_with(" similar]")
        {
            lines.insert(head);
        }
    }
    // Search matches, as grep writes them (`path:line:text`) or regrouped by file (the path,
    // then `line:text` lines).
    let mut matches: HashSet<(String, String)> = HashSet::new();
    let mut current = "";
    for line in output.lines() {
        if let Some((path, number, body, true)) = super::detect::parse_search_line(line) {
            matches.insert((path.to_owned(), format!("{number}:{body}")));
        }
        let digits = line.bytes().take_while(u8::is_ascii_digit).count();
        if digits > 0 && matches!(line.as_bytes().get(digits), Some(b':' | b'-')) {
            matches.insert((current.to_owned(), line.to_owned()));
        } else {
            current = line;
        }
    }
    let items = if needles
        .iter()
        .any(|n| n.any_of.iter().any(|f| matches!(f, NeedleForm::Record(_))))
    {
        kept_items(output)
    } else {
        Vec::new()
    };
    needles
        .iter()
        .map(|needle| {
            needle.any_of.iter().any(|form| match form {
                NeedleForm::Line(line) => lines.contains(line.as_str()),
                NeedleForm::Lines(all) => all.iter().all(|l| lines.contains(l.as_str())),
                NeedleForm::Match(path, body) => matches.contains(&(path.clone(), body.clone())),
                NeedleForm::Record(identity) => items.iter().any(|item| {
                    identity
                        .iter()
                        .all(|(pointer, value)| item.pointer(pointer) == Some(value))
                }),
            })
        })
        .collect()
}

fn needles(case: &Case, text: &str) -> Vec<Needle> {
    match case.ty {
        Type::Log => log_needles(case, text),
        Type::Build => build_needles(case, text),
        Type::Search => search_needles(case, text),
        Type::Diff => diff_needles(case, text),
        Type::Json => json_needles(case, text),
    }
}

/// Our run of one case: the tool output sent and the block's report.
struct Run {
    output: String,
    strategy: &'static str,
    reason: String,
    retrievable: bool,
}

fn run_ours(case: &Case, text: &str) -> Run {
    let body = serde_json::to_vec(&json!({
        "model": "gpt-4o",
        "messages": [
            {"role": "user", "content": case.query},
            {"role": "assistant", "content": null, "tool_calls": [{"id": "call_1",
                "type": "function", "function": {"name": "bash", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": text},
        ],
    }))
    .unwrap();
    let mut host = MemoryHost::default();
    let outcome = compress_request(
        Api::OpenAiChat,
        &body,
        &PipelineConfig::default(),
        &mut host,
    )
    .unwrap();
    let sent: Value = serde_json::from_slice(outcome.body.as_deref().unwrap_or(&body)).unwrap();
    let output = sent["messages"][2]["content"].as_str().unwrap().to_owned();
    let block = &outcome.blocks[0];
    let lossy = output.contains("<<headroom:");
    let retrievable = !lossy
        || (block.decision == Decision::Compressed
            && host.omitted.get(block.hash).as_deref() == Some(text.as_bytes())
            && output.contains(&block.hash.to_string()));
    Run {
        output,
        strategy: block.strategy,
        reason: block.reason.clone(),
        retrievable,
    }
}

fn tokens(text: &str) -> usize {
    Encoding::O200kBase.count(text)
}

/// Per file: (tokens before, after, needles kept, needles).
struct Measure {
    before: usize,
    after: usize,
    kept: usize,
    needles: usize,
    lost: Vec<String>,
}

fn measure(text: &str, output: &str, needles: &[Needle]) -> Measure {
    let kept = kept(needles, output);
    Measure {
        before: tokens(text),
        after: tokens(output),
        kept: kept.iter().filter(|k| **k).count(),
        needles: needles.len(),
        lost: needles
            .iter()
            .zip(&kept)
            .filter(|(_, k)| !**k)
            .map(|(n, _)| n.what.clone())
            .collect(),
    }
}

/// Our measure of one file and the peer's, when measured.
type Pair = (Measure, Option<Measure>);

fn saved(m: &Measure) -> f64 {
    1.0 - m.after as f64 / m.before.max(1) as f64
}

#[test]
fn real_corpus_meets_targets_and_keeps_every_needle() {
    let dir = corpus_dir();
    let peer_dir = std::env::var_os("HEADROOM_QUALITY_PEER_DIR").map(PathBuf::from);
    let mut per_type: BTreeMap<Type, Vec<Pair>> = BTreeMap::new();
    let mut failures = Vec::new();
    println!(
        "| file | type | tokens | ours after | ours removed | needles kept | peer after | peer removed | peer needles kept | our strategy: reason |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|---:|---:|---|");
    for case in CASES {
        let text = read(&dir.join(case.file));
        let needles = needles(case, &text);
        let run = run_ours(case, &text);
        let ours = measure(&text, &run.output, &needles);
        if let Some(dir) = std::env::var_os("HEADROOM_QUALITY_OURS_DIR").map(PathBuf::from) {
            std::fs::create_dir_all(&dir).unwrap();
            let name = case.file.replace('/', "__");
            std::fs::write(dir.join(format!("{name}.out")), &run.output).unwrap();
        }
        let peer = peer_dir.as_ref().map(|peer_dir| {
            let name = case.file.replace('/', "__");
            let out = read(&peer_dir.join(format!("{name}.out")));
            measure(&text, &out, &needles)
        });
        println!(
            "| {} | {} | {} | {} | {:.1} % | {}/{} | {} | {} | {} | {}: {} |",
            case.file,
            case.ty.name(),
            ours.before,
            ours.after,
            saved(&ours) * 100.0,
            ours.kept,
            ours.needles,
            peer.as_ref().map_or("-".into(), |p| p.after.to_string()),
            peer.as_ref()
                .map_or("-".into(), |p| format!("{:.1} %", saved(p) * 100.0)),
            peer.as_ref()
                .map_or("-".into(), |p| format!("{}/{}", p.kept, p.needles)),
            run.strategy,
            run.reason,
        );
        if !ours.lost.is_empty() {
            failures.push(format!("{}: lost {:?}", case.file, ours.lost));
        }
        if !run.retrievable {
            failures.push(format!("{}: the original is not retrievable", case.file));
        }
        // The manifest says why what was kept was kept.
        if run.output.contains("<<headroom:")
            && !(run.reason.contains("; kept ") || run.reason.contains(", kept "))
        {
            failures.push(format!(
                "{}: the reason says nothing kept: {}",
                case.file, run.reason
            ));
        }
        per_type.entry(case.ty).or_default().push((ours, peer));
    }
    println!();
    println!(
        "| content type | files | target | ours removed (mean) | ours needles | peer removed (mean) | peer needles |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for (ty, runs) in &per_type {
        let mean = |f: &dyn Fn(&Pair) -> Option<f64>| {
            let values: Vec<f64> = runs.iter().filter_map(f).collect();
            (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64)
        };
        let ours = mean(&|(o, _)| Some(saved(o))).unwrap_or(0.0);
        let peer = mean(&|(_, p)| p.as_ref().map(saved));
        let count = |f: &dyn Fn(&Pair) -> Option<(usize, usize)>| {
            runs.iter()
                .filter_map(f)
                .fold((0, 0), |(a, b), (c, d)| (a + c, b + d))
        };
        let (ok, total) = count(&|(o, _)| Some((o.kept, o.needles)));
        let (peer_ok, peer_total) = count(&|(_, p)| p.as_ref().map(|p| (p.kept, p.needles)));
        println!(
            "| {} | {} | {:.0} % | {:.1} % | {ok}/{total} | {} | {} |",
            ty.name(),
            runs.len(),
            ty.target() * 100.0,
            ours * 100.0,
            peer.map_or("-".into(), |p| format!("{:.1} %", p * 100.0)),
            if peer.is_some() {
                format!("{peer_ok}/{peer_total}")
            } else {
                "-".into()
            },
        );
        if ours < ty.target() {
            failures.push(format!(
                "{}: {:.1} % removed < target {:.0} %",
                ty.name(),
                ours * 100.0,
                ty.target() * 100.0
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The needles are not vacuous: each file has some, and the original text keeps them all.
#[test]
fn real_corpus_needles_are_found_in_the_originals() {
    let dir = corpus_dir();
    let mut seen = BTreeSet::new();
    for case in CASES {
        let text = read(&dir.join(case.file));
        let needles = needles(case, &text);
        assert!(!needles.is_empty(), "{}", case.file);
        let kept = kept(&needles, &text);
        for (needle, kept) in needles.iter().zip(kept) {
            assert!(kept, "{}: {} not in the original", case.file, needle.what);
        }
        seen.insert(case.ty);
    }
    assert_eq!(seen.len(), 5);
}
