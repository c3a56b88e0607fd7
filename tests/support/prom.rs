//! Reading a Prometheus text exposition into `name{label="v",…}` → value, labels sorted, so
//! scrapes of Envoy and of our host compare key for key.

use std::collections::BTreeMap;

/// Samples of one scrape, keyed `name{a="x",b="y"}` (no braces without labels).
pub type Samples = BTreeMap<String, f64>;

/// Parses the text format; comment and malformed lines are skipped.
pub fn parse(text: &str) -> Samples {
    let mut out = Samples::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (series, value) = match line.rfind(' ') {
            Some(i) => (&line[..i], &line[i + 1..]),
            None => continue,
        };
        let Ok(value) = value.parse::<f64>() else {
            continue;
        };
        out.insert(normalize(series), value);
    }
    out
}

/// Sorts labels and drops empty braces: `a{y="2",x="1"}` → `a{x="1",y="2"}`, `a{}` → `a`.
pub fn normalize(series: &str) -> String {
    let Some(open) = series.find('{') else {
        return series.to_string();
    };
    let name = &series[..open];
    let inner = series[open + 1..].trim_end_matches('}');
    let mut labels: Vec<String> = split_labels(inner)
        .into_iter()
        .filter(|l| !l.is_empty())
        .collect();
    if labels.is_empty() {
        return name.to_string();
    }
    labels.sort();
    format!("{name}{{{}}}", labels.join(","))
}

fn split_labels(inner: &str) -> Vec<String> {
    let mut labels = Vec::new();
    let mut current = String::new();
    let mut in_quotes = false;
    let mut escaped = false;
    for c in inner.chars() {
        match c {
            '\\' if in_quotes && !escaped => escaped = true,
            '"' if !escaped => in_quotes = !in_quotes,
            ',' if !in_quotes => {
                labels.push(std::mem::take(&mut current).trim().to_string());
                continue;
            }
            _ => escaped = false,
        }
        current.push(c);
    }
    labels.push(current.trim().to_string());
    labels
}

/// `after - before` for `series` (absent counts as 0).
pub fn delta(before: &Samples, after: &Samples, series: &str) -> f64 {
    let key = normalize(series);
    after.get(&key).copied().unwrap_or(0.0) - before.get(&key).copied().unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_normalizes() {
        let s = parse("# TYPE a counter\na{} 3\nb{y=\"2\",x=\"1,\\\"\"} 4.5\nc 1e3\n");
        assert_eq!(s["a"], 3.0);
        assert_eq!(s["b{x=\"1,\\\"\",y=\"2\"}"], 4.5);
        assert_eq!(s["c"], 1000.0);
        assert_eq!(delta(&Samples::new(), &s, "b{y=\"2\",x=\"1,\\\"\"}"), 4.5);
    }
}
