//! [`METRICS`](super::METRICS) against what the filter defines, README.md's metrics table and
//! the `stats_tags` of every Envoy configuration in the repository. Each failure says what to
//! edit.

#![allow(clippy::unwrap_used, clippy::panic)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use super::*;

/// Where a metric is declared, for the failure messages.
const TABLE: &str = "declare_metrics! in plugin/src/metrics.rs";

/// The repository root (this crate is `plugin/`).
fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A metric as README.md writes it: `name` or `name{label,label}`.
fn readme_form(name: &str, labels: &[&str]) -> String {
    if labels.is_empty() {
        name.to_owned()
    } else {
        format!("{name}{{{}}}", labels.join(","))
    }
}

/// A full metric name (`name.label.value…`) as its family name and label names.
fn family(full: &str) -> (&str, Vec<&str>) {
    let mut parts = full.split('.');
    let name = parts.next().unwrap_or_default();
    (name, parts.step_by(2).collect())
}

/// The declaration of the metric called `name`.
fn declared(name: &str) -> Option<&'static MetricDef> {
    METRICS.iter().find(|m| m.name == name)
}

/// Fails with every problem, one per line, if there are any.
fn assert_none(problems: &[String]) {
    assert!(problems.is_empty(), "\n{}\n", problems.join("\n"));
}

#[test]
fn metrics_are_declared_once_with_valid_names_and_labels() {
    let mut problems = Vec::new();
    let mut seen = BTreeSet::new();
    let is_snake = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    };
    for metric in METRICS {
        if !seen.insert(metric.name) {
            problems.push(format!("{} is declared twice in {TABLE}", metric.name));
        }
        if !metric.name.starts_with("headroom_") || !is_snake(metric.name) {
            problems.push(format!(
                "{}: a metric name is `headroom_` and then [a-z0-9_] ({TABLE})",
                metric.name
            ));
        }
        let labels: BTreeSet<&str> = metric.labels.iter().copied().collect();
        if labels.len() != metric.labels.len() || !labels.iter().all(|l| is_snake(l)) {
            problems.push(format!(
                "{}: labels {:?} must be distinct and [a-z0-9_] ({TABLE})",
                metric.name, metric.labels
            ));
        }
        if metric.help.trim().is_empty() {
            problems.push(format!("{}: no help text ({TABLE})", metric.name));
        }
    }
    assert_none(&problems);
}

/// Every name the filter defines, with the kind it defines it as: the fixed counters and
/// histograms defined at start and, with sample label values, the families named at run time
/// (by exchange/).
fn filter_defined() -> Vec<(String, MetricKind)> {
    let mut names: Vec<(String, MetricKind)> = Counter::all()
        .into_iter()
        .map(|counter| (counter.name(), MetricKind::Counter))
        .collect();
    for histogram in Histogram::ALL {
        names.push((histogram.name().to_owned(), MetricKind::Histogram));
        names.extend(
            histogram
                .extreme_names()
                .map(|name| (name, MetricKind::Gauge)),
        );
    }
    for name in [
        requests_by_model("gpt-4o"),
        requests_by_stack("wrap_claude"),
        cost_by_model("gpt-4o"),
        savings_by_model("gpt-4o"),
    ] {
        names.push((name, MetricKind::Counter));
    }
    names.push((transform_timing("json_select"), MetricKind::Histogram));
    for base in [BUDGET_LIMIT, BUDGET_SPENT, BUDGET_REMAINING] {
        names.push((budget_gauge(base, "key", "0123abcd"), MetricKind::Gauge));
    }
    names
}

#[test]
fn the_filter_defines_exactly_the_declared_metrics() {
    let mut problems = Vec::new();
    let mut defined = BTreeSet::new();
    for (full, kind) in filter_defined() {
        let (name, labels) = family(&full);
        defined.insert(name.to_owned());
        let Some(metric) = declared(name) else {
            problems.push(format!(
                "the filter defines {full}, but {TABLE} has no {name}: declare it there"
            ));
            continue;
        };
        if metric.kind != kind {
            problems.push(format!(
                "{name} is declared as {:?} but the filter defines it as {kind:?}: fix its \
                 kind in {TABLE}",
                metric.kind
            ));
        }
        if metric.labels != labels.as_slice() {
            problems.push(format!(
                "the filter names {full} (labels {labels:?}), but {name} is declared with \
                 labels {:?}: fix its labels in {TABLE} (or the name function / \
                 Counter::name)",
                metric.labels
            ));
        }
    }
    for metric in METRICS.iter().filter(|m| !defined.contains(m.name)) {
        problems.push(format!(
            "{} is declared in {TABLE} but the filter never defines it: give it a Counter \
             variant listed in Counter::all() (or a Histogram), or, if its name is made at \
             run time, add its name function to filter_defined() in \
             plugin/src/metrics/declaration_tests.rs",
            metric.name
        ));
    }
    assert_none(&problems);
}

/// One metric in README.md's metrics table: its name, its label names as written, and the
/// text of its row.
struct ReadmeMetric {
    name: String,
    labels: Vec<String>,
    row: String,
}

/// The metrics of README.md's `### Metrics` table: the `headroom_…` names in code spans in
/// each row's first cell (a row may list several).
fn readme_metrics(readme: &str) -> Result<Vec<ReadmeMetric>, String> {
    let table: Vec<&str> = readme
        .split("\n### Metrics\n")
        .nth(1)
        .ok_or("README.md has no `### Metrics` section")?
        .lines()
        .skip_while(|line| !line.starts_with('|'))
        .take_while(|line| line.starts_with('|'))
        .skip(2) // the header and its `|---|` line
        .collect();
    let mut metrics = Vec::new();
    for row in table {
        let first_cell = row.split('|').nth(1).unwrap_or_default();
        for span in first_cell.split('`').skip(1).step_by(2) {
            let (name, labels) = match span.split_once('{') {
                Some((name, rest)) => {
                    let inside = rest.strip_suffix('}').ok_or_else(|| {
                        format!("README.md's metrics table: `{span}` has no closing brace")
                    })?;
                    (
                        name,
                        inside.split(',').map(|l| l.trim().to_owned()).collect(),
                    )
                }
                None => (span, Vec::new()),
            };
            metrics.push(ReadmeMetric {
                name: name.to_owned(),
                labels,
                row: row.to_owned(),
            });
        }
    }
    if metrics.is_empty() {
        return Err("README.md's `### Metrics` section has no table of metrics".to_owned());
    }
    Ok(metrics)
}

/// What README.md's metrics table gets wrong against [`METRICS`].
fn readme_problems(readme: &str) -> Vec<String> {
    let documented = match readme_metrics(readme) {
        Ok(documented) => documented,
        Err(problem) => return vec![problem],
    };
    let mut problems = Vec::new();
    let mut seen = BTreeSet::new();
    for entry in &documented {
        if !seen.insert(entry.name.as_str()) {
            problems.push(format!(
                "README.md's metrics table lists `{}` twice: keep one",
                entry.name
            ));
        }
        let Some(metric) = declared(&entry.name) else {
            problems.push(format!(
                "README.md's metrics table lists `{}`, which {TABLE} does not declare: \
                 remove it from the table, or declare it",
                entry.name
            ));
            continue;
        };
        let want = readme_form(metric.name, metric.labels);
        let labels: Vec<&str> = entry.labels.iter().map(String::as_str).collect();
        if labels != metric.labels {
            problems.push(format!(
                "README.md's metrics table writes `{}`; {TABLE} declares it as `{want}`: \
                 write `{want}`",
                readme_form(&entry.name, &labels)
            ));
        }
        let kind = match metric.kind {
            MetricKind::Counter => None,
            MetricKind::Gauge => Some("gauge"),
            MetricKind::Histogram => Some("histogram"),
        };
        if let Some(kind) = kind
            && !entry.row.to_lowercase().contains(kind)
        {
            problems.push(format!(
                "README.md's metrics row of `{want}` does not say it is a {kind}: say so \
                 in its description"
            ));
        }
    }
    for metric in METRICS.iter().filter(|m| !seen.contains(m.name)) {
        problems.push(format!(
            "README.md's metrics table (### Metrics) has no row for `{0}`: add \
             | `{0}` | {1} |",
            readme_form(metric.name, metric.labels),
            metric.help
        ));
    }
    problems
}

#[test]
fn the_readme_metrics_table_lists_every_declared_metric_with_its_labels() {
    let readme = std::fs::read_to_string(repo_root().join("README.md")).unwrap();
    assert_none(&readme_problems(&readme));
}

#[test]
fn the_readme_check_catches_a_missing_row_an_unknown_metric_and_a_wrong_label() {
    let readme = std::fs::read_to_string(repo_root().join("README.md")).unwrap();
    let row = format!("| `{INBOUND_REQUESTS}` |");
    let without = readme.replacen(&row, "| `x` |", 1);
    assert_ne!(without, readme, "README.md has no row starting {row}");
    let problems = readme_problems(&without);
    assert!(
        problems
            .iter()
            .any(|p| p.contains("has no row for") && p.contains(INBOUND_REQUESTS)),
        "{problems:?}"
    );
    let renamed = readme.replacen(&row, &format!("| `{INBOUND_REQUESTS}_renamed` |"), 1);
    assert!(
        readme_problems(&renamed)
            .iter()
            .any(|p| p.contains(&format!("`{INBOUND_REQUESTS}_renamed`, which"))),
    );
    let relabelled = readme.replacen(
        &format!("| `{FAIL_OPEN}{{{REASON_LABEL}}}` |"),
        &format!("| `{FAIL_OPEN}{{cause}}` |"),
        1,
    );
    assert_ne!(relabelled, readme);
    assert!(
        readme_problems(&relabelled)
            .iter()
            .any(|p| p.contains(&format!("write `{FAIL_OPEN}{{{REASON_LABEL}}}`"))),
    );
}

/// One `stats_tags` list in a file: where it starts and its (tag_name, regex) entries.
struct StatsTags {
    file: String,
    line: usize,
    json: bool,
    tags: Vec<(String, String)>,
}

impl StatsTags {
    /// `file:line` of the list.
    fn at(&self) -> String {
        format!("{}:{}", self.file, self.line)
    }

    /// The entry for `tag` as this file writes entries.
    fn entry(&self, tag: &str) -> String {
        let regex = tag_regex(tag);
        if self.json {
            let quoted = serde_json::to_string(&regex).unwrap_or_default();
            format!(r#"{{"tag_name": "{tag}", "regex": {quoted}}},"#)
        } else {
            format!("- {{tag_name: {tag}, regex: '{regex}'}}")
        }
    }
}

/// The one regex form every tag uses (envoy/envoy.yaml explains it): anchored on our
/// metrics, it steps over whole `.label.value` pairs to the label `tag`.
fn tag_regex(tag: &str) -> String {
    format!(r"^wasmcustom\.headroom_\w+(?:\.\w+\.[\w-]+)*?(\.{tag}\.([\w-]+))")
}

/// A YAML flow entry `- {tag_name: NAME, regex: '…'}` (single- or double-quoted regex).
fn yaml_tag(item: &str) -> Option<(String, String)> {
    let body = item.strip_prefix("- {")?.strip_suffix('}')?;
    let (name, rest) = body.trim().strip_prefix("tag_name:")?.split_once(',')?;
    let quoted = rest.trim().strip_prefix("regex:")?.trim();
    let regex = if let Some(inner) = quoted.strip_prefix('\'').and_then(|q| q.strip_suffix('\'')) {
        inner.replace("''", "'")
    } else {
        serde_json::from_str::<String>(quoted).ok()?
    };
    Some((name.trim().to_owned(), regex))
}

/// A JSON entry `{"tag_name": "NAME", "regex": "…"},`.
fn json_tag(item: &str) -> Option<(String, String)> {
    let value: serde_json::Value = serde_json::from_str(item.trim_end_matches(',')).ok()?;
    let object = value.as_object().filter(|o| o.len() == 2)?;
    let field = |key: &str| Some(object.get(key)?.as_str()?.to_owned());
    Some((field("tag_name")?, field("regex")?))
}

/// Every `stats_tags` list of `text`: a YAML `stats_tags:` key followed by one flow entry a
/// line, or a JSON `"stats_tags": [` followed by one object a line.
fn stats_tags_in(file: &str, text: &str) -> Result<Vec<StatsTags>, String> {
    let lines: Vec<&str> = text.lines().collect();
    let mut lists = Vec::new();
    for (index, line) in lines.iter().enumerate() {
        let key = line.trim_start();
        let json = if key.starts_with("stats_tags:") {
            false
        } else if key.starts_with("\"stats_tags\":") {
            true
        } else {
            continue;
        };
        let at = format!("{file}:{}", index + 1);
        let opened = if json {
            key.ends_with('[')
        } else {
            key.trim_end() == "stats_tags:"
        };
        if !opened {
            return Err(format!(
                "{at}: write stats_tags as a list with one entry a line (this test reads it)"
            ));
        }
        let mut tags = Vec::new();
        for (offset, item) in lines.iter().enumerate().skip(index + 1) {
            let item = item.trim();
            if item.is_empty() || item.starts_with('#') {
                continue;
            }
            if (json && item.starts_with(']')) || (!json && !item.starts_with('-')) {
                break;
            }
            let tag = if json { json_tag(item) } else { yaml_tag(item) };
            tags.push(tag.ok_or_else(|| {
                format!(
                    "{file}:{}: not a stats_tags entry this test can read; write it as {}",
                    offset + 1,
                    if json {
                        r#"{"tag_name": "NAME", "regex": "..."},"#
                    } else {
                        "- {tag_name: NAME, regex: '...'}"
                    }
                )
            })?);
        }
        if tags.is_empty() {
            return Err(format!("{at}: stats_tags has no entries"));
        }
        lists.push(StatsTags {
            file: file.to_owned(),
            line: index + 1,
            json,
            tags,
        });
    }
    Ok(lists)
}

/// The configuration files of the repository (`.yaml`, `.yml`, `.yaml.in`, `.json`), outside
/// hidden and build directories.
fn config_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if path.is_dir() {
            if !name.starts_with('.') && !name.starts_with("target") && name != "node_modules" {
                config_files(&path, out);
            }
        } else if [".yaml", ".yml", ".yaml.in", ".json"]
            .iter()
            .any(|ext| name.ends_with(ext))
        {
            out.push(path);
        }
    }
}

/// Every `stats_tags` list in the repository, envoy/envoy.yaml's first.
fn all_stats_tags() -> Result<Vec<StatsTags>, String> {
    let root = repo_root();
    let mut files = Vec::new();
    config_files(&root, &mut files);
    files.sort();
    let mut lists = Vec::new();
    for path in files {
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        let file = path
            .strip_prefix(&root)
            .unwrap_or(&path)
            .to_string_lossy()
            .replace('\\', "/");
        lists.extend(stats_tags_in(&file, &text)?);
    }
    lists.sort_by_key(|list| list.file != "envoy/envoy.yaml");
    Ok(lists)
}

/// What the `stats_tags` lists get wrong: a declared label without a tag, a tag whose regex
/// is not the common form, or a list that differs from the first (envoy/envoy.yaml's).
fn stats_tags_problems(lists: &[StatsTags]) -> Vec<String> {
    let mut problems = Vec::new();
    let Some(reference) = lists.first() else {
        return vec!["no stats_tags found in the repository".to_owned()];
    };
    let labels: BTreeSet<&str> = METRICS.iter().flat_map(|m| m.labels).copied().collect();
    for list in lists {
        let names: Vec<&str> = list.tags.iter().map(|(name, _)| name.as_str()).collect();
        for label in labels.iter().filter(|label| !names.contains(label)) {
            let users: Vec<&str> = METRICS
                .iter()
                .filter(|m| m.labels.contains(label))
                .map(|m| m.name)
                .collect();
            problems.push(format!(
                "{}: stats_tags has no tag for label `{label}` (of {}): add\n    {}",
                list.at(),
                users.join(", "),
                list.entry(label)
            ));
        }
        for (name, regex) in &list.tags {
            if *regex != tag_regex(name) {
                problems.push(format!(
                    "{}: the `{name}` tag's regex is not the form every tag uses: write\n    {}",
                    list.at(),
                    list.entry(name)
                ));
            }
        }
        if list.tags != reference.tags {
            let theirs: BTreeSet<&str> = names.iter().copied().collect();
            let ours: BTreeSet<&str> = reference.tags.iter().map(|(n, _)| n.as_str()).collect();
            let missing: Vec<&str> = ours.difference(&theirs).copied().collect();
            let extra: Vec<&str> = theirs.difference(&ours).copied().collect();
            let how = if missing.is_empty() && extra.is_empty() {
                "the same tags in another order or with another regex".to_owned()
            } else {
                format!("missing {missing:?}, extra {extra:?}")
            };
            problems.push(format!(
                "{}: stats_tags differ from {} ({how}); every stats_tags list must be \
                 identical, in this order: {:?}",
                list.at(),
                reference.at(),
                reference
                    .tags
                    .iter()
                    .map(|(n, _)| n.as_str())
                    .collect::<Vec<_>>()
            ));
        }
    }
    problems
}

#[test]
fn every_envoy_config_has_the_same_stats_tags_for_every_declared_label() {
    let lists = all_stats_tags().unwrap_or_else(|problem| panic!("{problem}"));
    let files: BTreeSet<&str> = lists.iter().map(|l| l.file.as_str()).collect();
    // The walk must find at least the configurations we know of.
    for known in [
        "envoy/envoy.yaml",
        "envoy/envoy-local.yaml.in",
        "deploy/envoy-gateway/gateway-support.yaml",
        "deploy/istio/gateway-support.yaml",
    ] {
        assert!(
            files.contains(known),
            "no stats_tags found in {known}: {files:?}"
        );
    }
    assert_none(&stats_tags_problems(&lists));
}

#[test]
fn the_stats_tags_check_catches_a_missing_tag() {
    let mut lists = all_stats_tags().unwrap_or_else(|problem| panic!("{problem}"));
    let last = lists.last_mut().unwrap();
    last.tags.retain(|(name, _)| name != DECISION_LABEL);
    let entry = last.entry(DECISION_LABEL);
    let problems = stats_tags_problems(&lists);
    assert!(
        problems
            .iter()
            .any(|p| p.contains("no tag for label `decision`") && p.contains(&entry)),
        "{problems:?}"
    );
    assert!(
        problems.iter().any(|p| p.contains("stats_tags differ")),
        "{problems:?}"
    );
}

#[test]
fn reads_yaml_and_json_stats_tags_entries() {
    let regex = tag_regex(PROVIDER_LABEL);
    assert_eq!(
        yaml_tag(&format!("- {{tag_name: provider, regex: '{regex}'}}")),
        Some((PROVIDER_LABEL.to_owned(), regex.clone()))
    );
    let json = serde_json::to_string(&regex).unwrap();
    assert_eq!(
        json_tag(&format!(r#"{{"tag_name": "provider", "regex": {json}}},"#)),
        Some((PROVIDER_LABEL.to_owned(), regex))
    );
    assert_eq!(yaml_tag("- tag_name: provider"), None);
    assert!(stats_tags_in("f.yaml", "stats_tags:\n- tag_name: provider\n").is_err());
    assert!(
        stats_tags_in("f.yaml", "# stats_tags: in a comment\n")
            .unwrap()
            .is_empty()
    );
}
