//! The README's metric table documents exactly the metrics the filter declares: every family
//! the filter defines (counters with their label names, histograms, their `_min`/`_max` gauges,
//! the open-ended families) has a row, and every `headroom_*` name in the table is one the
//! filter or the host defines. Label names the filter puts into metric names are the ones
//! Envoy's `stats_tags` extract (`tests/envoy_configs.rs` checks the two Envoy files agree).

use std::collections::BTreeSet;

use headroom_plugin::metrics::{self, Counter, Histogram};

/// The README's `### Metrics` table, one string per row.
fn readme_metric_rows() -> Vec<String> {
    let readme = include_str!("../README.md");
    readme
        .split("### Metrics")
        .nth(1)
        .unwrap_or_default()
        .lines()
        .skip_while(|line| !line.starts_with('|'))
        .take_while(|line| line.starts_with('|'))
        .map(str::to_owned)
        .collect()
}

/// Every `headroom_…` identifier in `text`.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("headroom_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'))
            .unwrap_or(tail.len());
        names.insert(tail[..end].to_owned());
        rest = &tail[end..];
    }
    names
}

/// The family name of a declared metric (`name.label.value…` → `name`) and its label names.
fn family(name: &str) -> (String, Vec<String>) {
    let mut parts = name.split('.');
    let base = parts.next().unwrap_or_default().to_owned();
    let labels = parts.step_by(2).map(str::to_owned).collect();
    (base, labels)
}

/// What the filter declares: family name → label names.
fn declared() -> Vec<(String, Vec<String>)> {
    let mut names: Vec<String> = Counter::all().into_iter().map(Counter::name).collect();
    for histogram in Histogram::ALL {
        names.push(histogram.name().to_owned());
        names.extend(histogram.extreme_names());
    }
    // Families whose label values are open-ended (defined on first use).
    names.extend([
        metrics::requests_by_model("m"),
        metrics::requests_by_stack("s"),
        metrics::cost_by_model("m"),
        metrics::savings_by_model("m"),
        metrics::transform_timing("t"),
    ]);
    for base in [
        metrics::BUDGET_LIMIT,
        metrics::BUDGET_SPENT,
        metrics::BUDGET_REMAINING,
    ] {
        names.push(metrics::budget_gauge(base, "key", "k"));
    }
    names.iter().map(|name| family(name)).collect()
}

#[test]
fn the_readme_table_documents_every_declared_metric_and_nothing_else() {
    let rows = readme_metric_rows();
    assert!(rows.len() > 10, "no metric table found in README.md");
    let documented: BTreeSet<String> = rows.iter().flat_map(|row| metric_names(row)).collect();
    let declared = declared();
    let families: BTreeSet<String> = declared.iter().map(|(f, _)| f.clone()).collect();
    let undocumented: Vec<&String> = families.difference(&documented).collect();
    assert!(
        undocumented.is_empty(),
        "declared by the filter, missing from README's metric table: {undocumented:?}"
    );
    let host_defined = |name: &str| name.starts_with("headroom_host_");
    let unknown: Vec<&String> = documented
        .iter()
        .filter(|name| !families.contains(*name) && !host_defined(name))
        .collect();
    assert!(
        unknown.is_empty(),
        "in README's metric table, declared by nobody: {unknown:?}"
    );
}

#[test]
fn every_label_the_filter_uses_is_extracted_by_envoy() {
    let envoy = include_str!("../envoy/envoy.yaml");
    let tags: BTreeSet<String> = envoy
        .lines()
        .filter_map(|line| {
            let rest = line.trim().strip_prefix("- {tag_name: ")?;
            Some(rest.split(',').next()?.trim().to_owned())
        })
        .collect();
    for (family, labels) in declared() {
        for label in labels {
            assert!(
                tags.contains(&label),
                "{family} carries label {label}, which envoy/envoy.yaml's stats_tags do not extract"
            );
        }
    }
}
