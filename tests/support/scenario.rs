//! The scenario suite: each scenario is a JSON file in `tests/scenarios/` that says what a client
//! sends, how the test upstream answers, what the upstream must receive, what the client must
//! receive and how the metrics must move. The same files run against the filter in our host and
//! in a real Envoy, with the same assertions.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, Result, bail, ensure};
use serde::Deserialize;
use serde_json::Value;

use crate::client::{self, ClientRequest};
use crate::prom;
use crate::upstream::{Reply, Scripted, Upstream};

/// A header as written in a scenario: `["name", "value"]`, or `["name", {"latin1": "…"}]` for a
/// value made of the bytes U+0000–U+00FF (to send non-UTF-8 values).
#[derive(Deserialize, Clone, Debug)]
pub struct Header(pub String, pub HeaderValue);

/// A header value.
#[derive(Deserialize, Clone, Debug)]
#[serde(untagged)]
pub enum HeaderValue {
    /// UTF-8 text.
    Text(String),
    /// Bytes given as Latin-1 characters.
    Latin1 {
        /// The characters, each one byte.
        latin1: String,
    },
}

impl HeaderValue {
    /// The raw bytes.
    pub fn bytes(&self) -> Result<Vec<u8>> {
        match self {
            Self::Text(s) => Ok(s.as_bytes().to_vec()),
            Self::Latin1 { latin1 } => latin1
                .chars()
                .map(|c| {
                    u8::try_from(u32::from(c)).map_err(|_| anyhow::anyhow!("{c:?} is not Latin-1"))
                })
                .collect(),
        }
    }
}

/// A piece of body: text, a file in `tests/scenarios/`, or JSON (serialised compactly).
#[derive(Deserialize, Clone, Debug)]
#[serde(untagged)]
pub enum Part {
    /// Text.
    Text(String),
    /// A file's bytes.
    File {
        /// Path relative to `tests/scenarios/`.
        file: String,
    },
    /// JSON, serialised.
    Json {
        /// The value.
        json: Value,
    },
}

impl Part {
    fn bytes(&self, dir: &Path) -> Result<Vec<u8>> {
        match self {
            Self::Text(s) => Ok(s.as_bytes().to_vec()),
            Self::File { file } => {
                std::fs::read(dir.join(file)).with_context(|| format!("reading {file}"))
            }
            Self::Json { json } => Ok(serde_json::to_vec(json)?),
        }
    }
}

/// What the client sends.
#[derive(Deserialize, Clone, Debug)]
#[serde(deny_unknown_fields)]
pub struct RequestSpec {
    /// Method.
    pub method: String,
    /// Path and query.
    pub path: String,
    /// Headers.
    #[serde(default)]
    pub headers: Vec<Header>,
    /// Body chunks (one chunk: content-length; several: chunked, sent separately).
    #[serde(default)]
    pub body: Vec<Part>,
    /// Milliseconds between body chunks.
    #[serde(default)]
    pub chunk_delay_ms: u64,
    /// Re-split the whole body into this many chunks of (nearly) equal size.
    #[serde(default)]
    pub split_into: Option<usize>,
}

/// How the test upstream answers.
#[derive(Deserialize, Clone, Debug)]
#[serde(deny_unknown_fields)]
pub struct UpstreamSpec {
    /// Status.
    pub status: u16,
    /// Headers.
    #[serde(default)]
    pub headers: Vec<(String, String)>,
    /// Body chunks, each flushed separately.
    #[serde(default)]
    pub body: Vec<Part>,
    /// Milliseconds between chunks.
    #[serde(default)]
    pub chunk_delay_ms: u64,
    /// Send each chunk only after the client received the previous one: fails if the proxy
    /// buffers the response.
    #[serde(default)]
    pub lockstep: bool,
}

/// An expected body.
#[derive(Deserialize, Clone, Debug)]
#[serde(untagged)]
pub enum BodyExpectation {
    /// Exactly these bytes.
    Exact(Part),
    /// Byte-identical to what the client sent.
    SameAsRequest {
        /// Must be true.
        same_as_request: bool,
    },
    /// Byte-identical to what the upstream answered.
    SameAsUpstream {
        /// Must be true.
        same_as_upstream: bool,
    },
    /// JSON containing this value (objects compared key by key, recursively).
    JsonSubset {
        /// The expected subset.
        json_subset: Value,
    },
}

/// What the upstream must receive.
#[derive(Deserialize, Clone, Debug)]
#[serde(deny_unknown_fields)]
pub struct ExpectUpstream {
    /// Method.
    pub method: String,
    /// Path and query.
    pub path: String,
    /// The body.
    pub body: BodyExpectation,
    /// Headers that must arrive with exactly these values.
    #[serde(default)]
    pub headers: Vec<Header>,
    /// Headers that must not arrive.
    #[serde(default)]
    pub headers_absent: Vec<String>,
}

/// What the client must receive.
#[derive(Deserialize, Clone, Debug)]
#[serde(deny_unknown_fields)]
pub struct ExpectClient {
    /// Status.
    pub status: u16,
    /// The body.
    pub body: Option<BodyExpectation>,
    /// Headers that must arrive with exactly these values.
    #[serde(default)]
    pub headers: Vec<Header>,
}

/// One scenario file.
#[derive(Deserialize, Clone, Debug)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// What it shows.
    pub description: String,
    /// The client's request.
    pub request: RequestSpec,
    /// The upstream's answer; absent when the request must not reach an upstream.
    pub upstream: Option<UpstreamSpec>,
    /// What the upstream must receive; absent = it must receive nothing.
    pub expect_upstream: Option<ExpectUpstream>,
    /// What the client must receive.
    pub expect_client: ExpectClient,
    /// How counters must move: series (`name{label="v"}`) → delta.
    #[serde(default)]
    pub expect_metrics: BTreeMap<String, f64>,
    /// Hosts this scenario does not apply to, with the reason (`{"envoy": "why"}`).
    #[serde(default)]
    pub skip: BTreeMap<String, String>,
}

/// The scenario directory.
pub fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/scenarios")
}

/// Every scenario, by file stem, sorted.
pub fn load_all() -> Result<Vec<(String, Scenario)>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir())? {
        let path = entry?.path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_string();
        if !name.ends_with(".scenario.json") {
            continue;
        }
        let text = std::fs::read_to_string(&path)?;
        let scenario: Scenario =
            serde_json::from_str(&text).with_context(|| format!("parsing {name}"))?;
        out.push((
            name.trim_end_matches(".scenario.json").to_string(),
            scenario,
        ));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    ensure!(!out.is_empty(), "no scenarios in {}", dir().display());
    Ok(out)
}

/// A proxy under test: where to send requests and how to scrape its metrics.
pub trait Target {
    /// Host name for messages (`headroom`, `envoy`).
    fn name(&self) -> &str;
    /// The proxy's listener.
    fn addr(&self) -> SocketAddr;
    /// A Prometheus scrape.
    fn scrape(&self) -> impl std::future::Future<Output = Result<String>>;
}

/// Runs one scenario against `target`, whose provider upstreams both point at `upstream`.
pub async fn run(
    name: &str,
    scenario: &Scenario,
    target: &impl Target,
    upstream: &Upstream,
) -> Result<()> {
    let dir = dir();
    let request = ClientRequest {
        method: scenario.request.method.clone(),
        path: scenario.request.path.clone(),
        headers: scenario
            .request
            .headers
            .iter()
            .map(|Header(k, v)| Ok((k.clone(), v.bytes()?)))
            .collect::<Result<_>>()?,
        chunks: split(
            scenario
                .request
                .body
                .iter()
                .map(|p| p.bytes(&dir))
                .collect::<Result<_>>()?,
            scenario.request.split_into,
        ),
        chunk_delay: Duration::from_millis(scenario.request.chunk_delay_ms),
    };
    let request_bytes: Vec<u8> = request.chunks.concat();
    let (reply, lockstep_ends) = match &scenario.upstream {
        Some(spec) => {
            let chunks: Vec<Vec<u8>> = spec
                .body
                .iter()
                .map(|p| p.bytes(&dir))
                .collect::<Result<_>>()?;
            let ends: Vec<usize> = chunks
                .iter()
                .scan(0, |acc, c| {
                    *acc += c.len();
                    Some(*acc)
                })
                .collect();
            let scripted = Scripted {
                status: spec.status,
                headers: spec.headers.clone(),
                chunks,
                chunk_delay: Duration::from_millis(spec.chunk_delay_ms),
                lockstep: spec.lockstep,
            };
            (scripted, if spec.lockstep { ends } else { Vec::new() })
        }
        None => (
            Scripted {
                status: 599,
                ..Scripted::default()
            },
            Vec::new(),
        ),
    };
    let upstream_bytes = reply.chunks.concat();
    upstream.set_reply(Reply::Scripted(reply));
    upstream.take_received();
    upstream.reset_release();

    let before = prom::parse(&target.scrape().await?);
    let mut released = 0;
    let response = client::send(target.addr(), &request, |received| {
        // Lock-step: each time the client holds a whole chunk, the upstream may send the next.
        while released < lockstep_ends.len().saturating_sub(1)
            && received >= lockstep_ends[released]
        {
            upstream.release();
            released += 1;
        }
    })
    .await
    .with_context(|| format!("{name} on {}: sending the request", target.name()))?;
    let ctx = || format!("scenario {name} on {}", target.name());

    // What the upstream received.
    let received = upstream.take_received();
    match &scenario.expect_upstream {
        None => ensure!(
            received.is_empty(),
            "{}: the upstream must not be reached, got {:?}",
            ctx(),
            received.iter().map(|r| &r.path).collect::<Vec<_>>()
        ),
        Some(expect) => {
            ensure!(
                received.len() == 1,
                "{}: expected one upstream request, got {}",
                ctx(),
                received.len()
            );
            let got = &received[0];
            ensure!(
                got.method == expect.method,
                "{}: upstream method {} != {}",
                ctx(),
                got.method,
                expect.method
            );
            ensure!(
                got.path == expect.path,
                "{}: upstream path {} != {}",
                ctx(),
                got.path,
                expect.path
            );
            check_body(
                &expect.body,
                &got.body,
                &request_bytes,
                &upstream_bytes,
                &dir,
            )
            .with_context(|| format!("{}: upstream body", ctx()))?;
            for Header(k, v) in &expect.headers {
                let want = v.bytes()?;
                ensure!(
                    got.header(k) == Some(&want[..]),
                    "{}: upstream header {k}: {:?} != {:?}",
                    ctx(),
                    got.header(k).map(String::from_utf8_lossy),
                    String::from_utf8_lossy(&want)
                );
            }
            for k in &expect.headers_absent {
                ensure!(
                    got.header(k).is_none(),
                    "{}: upstream header {k} must be absent",
                    ctx()
                );
            }
        }
    }

    // What the client received.
    let expect = &scenario.expect_client;
    ensure!(
        response.status == expect.status,
        "{}: client status {} != {} (body {})",
        ctx(),
        response.status,
        expect.status,
        String::from_utf8_lossy(&response.body)
    );
    if let Some(body) = &expect.body {
        check_body(body, &response.body, &request_bytes, &upstream_bytes, &dir)
            .with_context(|| format!("{}: client body", ctx()))?;
    }
    for Header(k, v) in &expect.headers {
        let want = String::from_utf8_lossy(&v.bytes()?).into_owned();
        ensure!(
            response.header(k).as_deref() == Some(want.as_str()),
            "{}: client header {k}: {:?} != {want:?}",
            ctx(),
            response.header(k)
        );
    }
    if !lockstep_ends.is_empty() {
        ensure!(
            released == lockstep_ends.len() - 1,
            "{}: lock-step released {released} of {} chunks",
            ctx(),
            lockstep_ends.len() - 1
        );
    }

    // How the metrics moved. The filter updates counters as the exchange ends, which may be a
    // moment after the client has the last byte: poll briefly.
    if !scenario.expect_metrics.is_empty() {
        let mut last_err = String::new();
        for _ in 0..50 {
            let after = prom::parse(&target.scrape().await?);
            let wrong: Vec<String> = scenario
                .expect_metrics
                .iter()
                .filter_map(|(series, want)| {
                    let got = prom::delta(&before, &after, series);
                    ((got - want).abs() > 1e-9)
                        .then(|| format!("{series}: moved {got}, expected {want}"))
                })
                .collect();
            if wrong.is_empty() {
                return Ok(());
            }
            last_err = wrong.join("; ");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        bail!("{}: metrics: {last_err}", ctx());
    }
    Ok(())
}

fn split(chunks: Vec<Vec<u8>>, into: Option<usize>) -> Vec<Vec<u8>> {
    match into {
        Some(n) if n > 0 => {
            let whole = chunks.concat();
            let size = whole.len().div_ceil(n).max(1);
            whole.chunks(size).map(<[u8]>::to_vec).collect()
        }
        _ => chunks,
    }
}

fn check_body(
    expect: &BodyExpectation,
    got: &[u8],
    request: &[u8],
    upstream: &[u8],
    dir: &Path,
) -> Result<()> {
    let want = match expect {
        BodyExpectation::Exact(part) => part.bytes(dir)?,
        BodyExpectation::SameAsRequest { .. } => request.to_vec(),
        BodyExpectation::SameAsUpstream { .. } => upstream.to_vec(),
        BodyExpectation::JsonSubset { json_subset } => {
            let value: Value = serde_json::from_slice(got).context("body is not JSON")?;
            ensure!(
                contains(&value, json_subset),
                "JSON {value} does not contain {json_subset}"
            );
            return Ok(());
        }
    };
    if got != want {
        let at = got
            .iter()
            .zip(&want)
            .position(|(a, b)| a != b)
            .unwrap_or(got.len().min(want.len()));
        let window = |b: &[u8]| {
            String::from_utf8_lossy(&b[at.saturating_sub(40)..(at + 40).min(b.len())]).into_owned()
        };
        bail!(
            "bodies differ at byte {at} (got {} bytes, want {}):\n got: …{}…\nwant: …{}…",
            got.len(),
            want.len(),
            window(got),
            window(&want)
        );
    }
    Ok(())
}

/// `value` contains `subset`: objects key by key, everything else equal.
pub fn contains(value: &Value, subset: &Value) -> bool {
    match (value, subset) {
        (Value::Object(v), Value::Object(s)) => s
            .iter()
            .all(|(k, sv)| v.get(k).is_some_and(|vv| contains(vv, sv))),
        _ => value == subset,
    }
}

/// Runs every scenario that applies to `target` and fails with all failures listed.
pub async fn run_all(target: &impl Target, upstream: &Upstream) -> Result<()> {
    let scenarios = load_all()?;
    let mut failures = Vec::new();
    for (name, s) in &scenarios {
        if let Some(why) = s.skip.get(target.name()) {
            println!("skip {name}: {why}");
            continue;
        }
        match run(name, s, target, upstream).await {
            Ok(()) => println!("ok   {name}"),
            Err(e) => failures.push(format!("{e:#}")),
        }
    }
    ensure!(
        failures.is_empty(),
        "{} of {} scenarios failed on {}:\n{}",
        failures.len(),
        scenarios.len(),
        target.name(),
        failures.join("\n\n")
    );
    Ok(())
}
