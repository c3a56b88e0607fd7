//! A real OTLP receiver for the tests (`tests/support/otel/receiver.py`: the official
//! `opentelemetry-proto` messages from PyPI decode what arrives), and readers of what it got.

use std::collections::BTreeMap;
use std::io::{BufRead as _, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use serde_json::Value;

/// The Python with `opentelemetry-proto` and `grpcio`: `$HEADROOM_PYTHON`, else the project's
/// `.venv` (`scripts/test` installs `tests/support/otel/requirements.txt` into it).
pub fn python() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("HEADROOM_PYTHON") {
        return Ok(p.into());
    }
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
    if !venv.exists() {
        bail!(
            "{} is missing: run scripts/test, or `python3 -m venv .venv && .venv/bin/pip install -r tests/support/otel/requirements.txt`",
            venv.display()
        );
    }
    Ok(venv)
}

/// A running receiver; killed by PID when dropped.
pub struct Receiver {
    child: Child,
    port: u16,
    out: PathBuf,
}

impl Receiver {
    /// Starts an OTLP/HTTP receiver (or OTLP/gRPC with `grpc`) on a free loopback port.
    pub fn start(grpc: bool) -> Result<Self> {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let out = std::env::temp_dir().join(format!(
            "headroom-otel-{}-{}.jsonl",
            std::process::id(),
            NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        let _ = std::fs::remove_file(&out);
        let script =
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/support/otel/receiver.py");
        let mut cmd = Command::new(python()?);
        cmd.arg(script).arg("--out").arg(&out);
        if grpc {
            cmd.arg("--grpc");
        }
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting the OTLP receiver")?;
        let stdout = child.stdout.take().context("receiver stdout")?;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(port) = line.strip_prefix("PORT ") {
                    let _ = tx.send(port.trim().parse::<u16>().ok());
                }
            }
        });
        match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(Some(port)) => Ok(Self { child, port, out }),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                bail!("the OTLP receiver did not start (is opentelemetry-proto installed?)")
            }
        }
    }

    /// The port it listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything received so far, one entry per export, in order.
    pub fn received(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.out)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// Waits (up to `timeout`) until `done` holds for what was received; returns it.
    pub async fn wait_for(
        &self,
        timeout: Duration,
        done: impl Fn(&[Value]) -> bool,
    ) -> Result<Vec<Value>> {
        let deadline = Instant::now() + timeout;
        loop {
            let got = self.received();
            if done(&got) {
                return Ok(got);
            }
            if Instant::now() > deadline {
                bail!(
                    "the receiver did not get what was expected within {timeout:?}; got {} exports; last: {}",
                    got.len(),
                    got.last().map(Value::to_string).unwrap_or_default()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.out);
    }
}

/// An OTLP attribute value (protobuf's JSON mapping) as a string.
fn any_value(v: &Value) -> String {
    if let Some(s) = v.get("string_value").and_then(Value::as_str) {
        return s.to_owned();
    }
    if let Some(b) = v.get("bool_value").and_then(Value::as_bool) {
        return b.to_string();
    }
    if let Some(i) = v.get("int_value") {
        return i.as_str().map_or_else(|| i.to_string(), str::to_owned);
    }
    if let Some(d) = v.get("double_value") {
        return d.to_string();
    }
    v.to_string()
}

/// A key-value list as a map (values as strings; booleans `true`/`false`).
pub fn attrs(list: &Value) -> BTreeMap<String, String> {
    list.as_array()
        .map(|kvs| {
            kvs.iter()
                .filter_map(|kv| {
                    Some((
                        kv.get("key")?.as_str()?.to_owned(),
                        any_value(kv.get("value")?),
                    ))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The resource attributes of an export.
pub fn resource(export: &Value) -> BTreeMap<String, String> {
    attrs(&export["body"]["resource_metrics"][0]["resource"]["attributes"])
}

/// Every metric of an export (across resources and scopes), with its scope's name.
pub fn metrics(export: &Value) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    for rm in export["body"]["resource_metrics"]
        .as_array()
        .into_iter()
        .flatten()
    {
        for sm in rm["scope_metrics"].as_array().into_iter().flatten() {
            let scope = sm["scope"]["name"].as_str().unwrap_or_default().to_owned();
            for m in sm["metrics"].as_array().into_iter().flatten() {
                out.push((scope.clone(), m.clone()));
            }
        }
    }
    out
}

/// The metric `name` of an export.
pub fn metric(export: &Value, name: &str) -> Option<Value> {
    metrics(export)
        .into_iter()
        .map(|(_, m)| m)
        .find(|m| m["name"] == name)
}

/// The kind of a metric (`sum`, `gauge`, `histogram`) and its data.
pub fn data(metric: &Value) -> Option<(&'static str, &Value)> {
    ["sum", "gauge", "histogram"]
        .into_iter()
        .find_map(|k| metric.get(k).map(|d| (k, d)))
}

/// The data points of a metric, each with its attributes.
pub fn points(metric: &Value) -> Vec<(BTreeMap<String, String>, Value)> {
    data(metric)
        .and_then(|(_, d)| d["data_points"].as_array())
        .map(|ps| {
            ps.iter()
                .map(|p| (attrs(&p["attributes"]), p.clone()))
                .collect()
        })
        .unwrap_or_default()
}

/// A number data point's value (`as_int` arrives as a string in protobuf's JSON mapping).
pub fn number(point: &Value) -> f64 {
    if let Some(i) = point.get("as_int") {
        return i
            .as_str()
            .and_then(|s| s.parse().ok())
            .or_else(|| i.as_f64())
            .unwrap_or(f64::NAN);
    }
    point
        .get("as_double")
        .and_then(Value::as_f64)
        .unwrap_or(0.0)
}

/// A histogram point's count.
pub fn count(point: &Value) -> u64 {
    let c = &point["count"];
    c.as_str()
        .and_then(|s| s.parse().ok())
        .or_else(|| c.as_u64())
        .unwrap_or(0)
}

/// The value of the point of `metric` whose attributes include every pair of `want`
/// (numbers: the value; histograms: the sum); 0 when no point matches. Several matching
/// points are added up.
pub fn value(export: &Value, metric_name: &str, want: &[(&str, &str)]) -> f64 {
    let Some(m) = metric(export, metric_name) else {
        return 0.0;
    };
    let histogram = data(&m).map(|(k, _)| k) == Some("histogram");
    points(&m)
        .into_iter()
        .filter(|(a, _)| {
            want.iter()
                .all(|(k, v)| a.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|(_, p)| {
            if histogram {
                p["sum"].as_f64().unwrap_or(0.0)
            } else {
                number(&p)
            }
        })
        .sum()
}

/// Like [`value`], the count of matching histogram points.
pub fn hist_count(export: &Value, metric_name: &str, want: &[(&str, &str)]) -> u64 {
    let Some(m) = metric(export, metric_name) else {
        return 0;
    };
    points(&m)
        .into_iter()
        .filter(|(a, _)| {
            want.iter()
                .all(|(k, v)| a.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|(_, p)| count(&p))
        .sum()
}
