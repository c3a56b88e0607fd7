//! `headroom metrics`, `summary` and `validate`: the stored records and the setup checks,
//! as tables or JSON.

use std::io::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use super::BadInput;
use super::args::*;
use super::proxy::load_filter;
use anyhow::{Context as _, Result};
use headroom_host::abi::vm::VmLimits;
use headroom_host::operator;
use headroom_host::operator::validate::{self, ValidateConfig};
use headroom_host::paths;
use headroom_host::records::store::{self, Query};
use headroom_host::records::{record::Record, time};

/// `--since`/`--until` and `--db` as a query and a database path.
fn selection(args: &SelectionArgs) -> Result<(Query, PathBuf)> {
    let now = time::now_unix();
    let instant = |flag: &str, value: &Option<String>| -> Result<Option<i64>> {
        match value {
            None => Ok(None),
            Some(v) => time::parse_since(v, now).map(Some).ok_or_else(|| {
                BadInput(format!(
                    "{flag} {v:?}: expected a duration (30m, 1h, 2d, 1w), unix seconds or an RFC 3339 time (2026-11-27T07:10:14Z)"
                ))
                .into()
            }),
        }
    };
    let query = Query {
        start: instant("--since", &args.since)?,
        end: instant("--until", &args.until)?,
        ..Query::default()
    };
    let path = args
        .db
        .clone()
        .unwrap_or_else(|| paths::database_path(&paths::process_env));
    Ok((query, path))
}

/// Opens the request database for reading, saying where it was looked for when it is missing.
fn open_database(path: &std::path::Path) -> Result<rusqlite::Connection> {
    if !path.exists() {
        anyhow::bail!(
            "no request database at {} (the proxy creates it unless --stateless; set HEADROOM_DB_PATH or --db if it lives elsewhere)",
            path.display()
        );
    }
    store::open_for_reading(path)
        .with_context(|| format!("opening the request database {}", path.display()))
}

pub(crate) fn run_metrics(args: MetricsArgs) -> Result<()> {
    let (mut query, path) = selection(&args.selection)?;
    query.model = args.model;
    query.limit = Some(args.limit);
    let conn = open_database(&path)?;
    let records =
        store::list(&conn, &query).with_context(|| format!("reading {}", path.display()))?;
    let mut stdout = std::io::stdout().lock();
    if args.json {
        for record in &records {
            writeln!(stdout, "{}", record.to_json())?;
        }
    } else {
        stdout.write_all(records_table(&records).as_bytes())?;
    }
    stdout.flush()?;
    Ok(())
}

/// Lines of cells, columns padded to their widest cell.
fn render_table(rows: &[Vec<String>]) -> String {
    let columns = rows.first().map_or(0, Vec::len);
    let mut widths = vec![0usize; columns];
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut text = String::new();
    for row in rows {
        let mut line = String::new();
        for (i, (cell, width)) in row.iter().zip(&widths).enumerate() {
            line.push_str(cell);
            if i + 1 < row.len() {
                line.push_str(&" ".repeat(width - cell.chars().count() + 2));
            }
        }
        text.push_str(line.trim_end());
        text.push('\n');
    }
    text
}

/// `headroom metrics`' table.
fn records_table(records: &[Record]) -> String {
    if records.is_empty() {
        return "no records\n".into();
    }
    let dash = || "-".to_string();
    let int = |v: Option<i64>| v.map_or_else(dash, |v| v.to_string());
    let mut rows = vec![
        [
            "time",
            "provider",
            "model",
            "status",
            "stream",
            "tokens",
            "saved",
            "in",
            "out",
            "cost_usd",
            "latency_ms",
            "transforms",
        ]
        .map(str::to_owned)
        .to_vec(),
    ];
    for r in records {
        rows.push(vec![
            r.time.clone(),
            r.provider.clone(),
            r.model.clone().unwrap_or_else(dash),
            r.status.map_or_else(dash, |s| s.to_string()),
            if r.stream { "yes" } else { "no" }.to_string(),
            match (r.tokens_before, r.tokens_after) {
                (Some(b), Some(a)) => format!("{b}→{a}"),
                _ => dash(),
            },
            r.tokens_saved.to_string(),
            int(r.input_tokens),
            int(r.output_tokens),
            r.cost_usd.map_or_else(dash, |c| format!("{c:.6}")),
            r.latency_ms.map_or_else(dash, |l| format!("{l:.1}")),
            if r.transforms.is_empty() {
                dash()
            } else {
                r.transforms.join(",")
            },
        ]);
    }
    render_table(&rows)
}

pub(crate) fn run_summary(args: SummaryArgs) -> Result<()> {
    let (query, path) = selection(&args.selection)?;
    let conn = open_database(&path)?;
    let summary =
        store::summary(&conn, &query).with_context(|| format!("reading {}", path.display()))?;
    let mut stdout = std::io::stdout().lock();
    if args.json {
        let value = operator::endpoints::summary_json(&summary, &query, None);
        writeln!(stdout, "{value}")?;
    } else {
        let range =
            |t: Option<i64>, open: &str| t.map_or_else(|| open.to_string(), time::format_unix);
        let unknown = match summary.requests_unknown_cost {
            0 => "every request priced".to_string(),
            1 => "1 request of unknown cost not included".to_string(),
            n => format!("{n} requests of unknown cost not included"),
        };
        let ratio = summary.avg_compression_ratio.map_or_else(
            || "-".to_string(),
            |r| format!("{r:.3} (tokens after / before)"),
        );
        let rows = vec![
            vec![
                "records".to_string(),
                format!(
                    "{} to {}",
                    range(query.start, "the first"),
                    range(query.end, "the last")
                ),
            ],
            vec!["requests".into(), summary.total_requests.to_string()],
            vec![
                "tokens before".into(),
                summary.total_tokens_before.to_string(),
            ],
            vec![
                "tokens after".into(),
                summary.total_tokens_after.to_string(),
            ],
            vec![
                "tokens saved".into(),
                format!(
                    "{} ({:.1} per request)",
                    summary.total_tokens_saved, summary.avg_tokens_saved
                ),
            ],
            vec!["compression ratio".into(), ratio],
            vec![
                "input tokens".into(),
                summary.total_input_tokens.to_string(),
            ],
            vec![
                "output tokens".into(),
                summary.total_output_tokens.to_string(),
            ],
            vec![
                "cost".into(),
                format!("${:.6} ({unknown})", summary.total_cost_usd),
            ],
            vec![
                "savings".into(),
                format!("${:.6}", summary.total_cost_saved_usd),
            ],
        ];
        stdout.write_all(render_table(&rows).as_bytes())?;
    }
    stdout.flush()?;
    Ok(())
}

pub(crate) fn run_validate(args: ValidateArgs) -> Result<()> {
    let (plugin_wasm, plugin_source, plugin_config) = load_filter(&args.filter)?;
    let config = ValidateConfig {
        plugin_wasm: plugin_wasm.into(),
        plugin_source,
        plugin_config,
        openai_url: args.upstreams.openai_api_url,
        anthropic_url: args.upstreams.anthropic_api_url,
        savings_path: paths::savings_path(&paths::process_env),
        database_path: (!args.stateless).then(|| paths::database_path(&paths::process_env)),
        vm_limits: VmLimits::default(),
        cache_dir: headroom_host::abi::module_cache::default_dir(),
        timeout: Duration::from_secs(args.timeout_secs.max(1)),
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let report = rt.block_on(validate::run(std::sync::Arc::new(config)));
    let mut stdout = std::io::stdout().lock();
    if args.json {
        writeln!(stdout, "{}", serde_json::to_string(&report)?)?;
    } else {
        for check in &report.checks {
            writeln!(stdout, "{}", check.line())?;
        }
    }
    stdout.flush()?;
    if !report.valid {
        drop(stdout);
        std::process::exit(1);
    }
    Ok(())
}
