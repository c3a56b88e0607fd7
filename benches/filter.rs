//! What the filter costs per request body, natively and inside the `.wasm` run by our host,
//! on the same inputs so the wasm/native ratio is visible.
//!
//! - `pipeline_native/<kind>/<size>`: the filter's pipeline (`compress_request`) as a native
//!   function on a chat request whose tool outputs are JSON records, a log, search results or
//!   a diff, with stores of zero budget so every iteration compresses afresh.
//! - `pipeline_wasm/<kind>/<size>`: the same body through the proxy-wasm ABI in our host (headers
//!   callback, buffered body callbacks, the pipeline in wasm, the body handed back), the
//!   filter configured with zero-budget stores too: no network.
//! - `pipeline_wasm_no_call_limit/<kind>/<size>` (up to 1 MB): the same in a runtime with no
//!   call time limit (`--vm-call-timeout-ms 0`), whose module has no epoch checks: what the
//!   limit costs.
//! - `replay_native/<size>`, `replay_wasm/<size>`: the same body again with the default stores:
//!   what a later turn that resends an already-compressed tool output costs (parse, hash,
//!   store lookup, splice).
//! - `request_path_wasm/<agent request>`: the cold agent requests of the e2e benchmark (110 KB
//!   with a 300-record JSON output, 165 KB with a log, and that log after a question naming
//!   nothing in it), timed only until the request body is
//!   handed back (what the client waits for); the stream's end, where the filter settles the
//!   rest of its accounting, is left out.
//! - `abi_passthrough/100KB`: a 100 KB body on a path the filter does not buffer: the ABI's
//!   fixed cost (context creation, headers and body callbacks, done/log/delete).
//!
//! - `pipeline_wasm_alt/<kind>/<size>`, `request_path_wasm_alt/<agent request>`,
//!   `replay_wasm_alt/<size>`: with `HEADROOM_BENCH_ALT_WASM`
//!   naming another build of the filter (other code-generation flags, say), the same
//!   measurements on it, in the same run, so the two builds are compared side by side.
//!
//! Run: `cargo bench --bench filter` (add `-- --quick` for a fast pass).

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use headroom_host::abi::shared::Metrics;
use headroom_host::abi::state::{PluginShared, StreamInfo};
use headroom_host::abi::vm::{Runtime, Vm, VmLimits};
use headroom_plugin::api::Api;
use headroom_plugin::config::Config;
use headroom_plugin::pipeline::{MemoryHost, compress_request};
use headroom_tests::corpus;

const SIZES: &[(&str, usize)] = &[
    ("10KB", 10_000),
    ("100KB", 100_000),
    ("1MB", 1_000_000),
    ("10MB", 10_000_000),
];

fn runtime(configuration: &[u8]) -> Arc<Runtime> {
    runtime_of(headroom_host::EMBEDDED_PLUGIN, configuration)
}

/// The other build of the filter named by `HEADROOM_BENCH_ALT_WASM`, if any.
fn alt_wasm() -> Option<Vec<u8>> {
    let path = std::env::var_os("HEADROOM_BENCH_ALT_WASM")?;
    Some(std::fs::read(&path).expect("HEADROOM_BENCH_ALT_WASM names a readable file"))
}

fn runtime_of(wasm: &[u8], configuration: &[u8]) -> Arc<Runtime> {
    runtime_with(wasm, configuration, VmLimits::default())
}

/// The embedded filter with no call time limit (`--vm-call-timeout-ms 0`): compiled without
/// wasmtime's epoch checks, the way Envoy runs it.
fn unlimited_runtime(configuration: &[u8]) -> Arc<Runtime> {
    let limits = VmLimits {
        call_timeout: None,
        ..VmLimits::default()
    };
    runtime_with(headroom_host::EMBEDDED_PLUGIN, configuration, limits)
}

fn runtime_with(wasm: &[u8], configuration: &[u8], limits: VmLimits) -> Arc<Runtime> {
    let plugin = PluginShared {
        name: "headroom".into(),
        root_id: "headroom".into(),
        vm_id: "headroom".into(),
        configuration: configuration.to_vec(),
        vm_configuration: Vec::new(),
        clusters: Default::default(),
        log_level: 3,
        shared_data: Default::default(),
        metrics: Arc::new(Metrics::default()),
    };
    Runtime::new(wasm, plugin, limits, None).expect("the embedded filter loads")
}

/// A stream of `vm` with a JSON POST's request headers for `path` and `body`: what the proxy
/// has before the filter's first callback.
fn open_stream(vm: &mut Vm, path: &str, body: &[u8]) -> u32 {
    let info = StreamInfo {
        source: None,
        destination: None,
        protocol: "HTTP/1.1",
        request_id: "bench".into(),
        start: SystemTime::now(),
    };
    let id = vm.create_stream(info).expect("no trap");
    let stream = vm.stream(id).expect("stream exists");
    stream.request_headers = Some(vec![
        (b":method".to_vec(), b"POST".to_vec()),
        (b":path".to_vec(), path.as_bytes().to_vec()),
        (b":authority".to_vec(), b"api.openai.com".to_vec()),
        (b"content-type".to_vec(), b"application/json".to_vec()),
        (
            b"content-length".to_vec(),
            body.len().to_string().into_bytes(),
        ),
    ]);
    id
}

/// One request through the VM, as the proxy drives it; returns the body the upstream would get.
fn through_vm(vm: &mut Vm, path: &str, body: &[u8]) -> Vec<u8> {
    let id = open_stream(vm, path, body);
    vm.on_request_headers(id, false).expect("no trap");
    vm.stream(id).expect("stream exists").request_body = body.to_vec();
    vm.on_request_body(id, false).expect("no trap");
    vm.on_request_body(id, true).expect("no trap");
    let out = std::mem::take(&mut vm.stream(id).expect("stream exists").request_body);
    vm.finish_stream(id).expect("no trap");
    out
}

/// The part of [`through_vm`] a client waits for, timed: the request's callbacks until its
/// body is handed back. The stream's end, where the filter settles what it still owes (the
/// original's exact count, the waste signals), runs after the clock stops.
fn request_path_time(vm: &mut Vm, path: &str, body: &[u8]) -> Duration {
    let id = open_stream(vm, path, body);
    vm.stream(id).expect("stream exists").request_body = body.to_vec();
    let start = Instant::now();
    vm.on_request_headers(id, false).expect("no trap");
    vm.on_request_body(id, false).expect("no trap");
    vm.on_request_body(id, true).expect("no trap");
    let elapsed = start.elapsed();
    vm.finish_stream(id).expect("no trap");
    elapsed
}

/// `request_path_wasm[_alt]/<agent request>`: [`request_path_time`] of the e2e benchmark's
/// cold agent requests in `vm`.
fn request_path_group(c: &mut Criterion, name: &str, vm: &mut Vm) {
    let mut group = c.benchmark_group(name);
    for (label, body) in [
        ("agent_json_300", corpus::agent_json_request(300, false)),
        ("agent_log_155k", corpus::agent_log_request(155_000)),
        (
            "agent_log_155k_naming_nothing",
            corpus::agent_log_request_naming_nothing(155_000),
        ),
    ] {
        group.throughput(Throughput::Bytes(body.len() as u64));
        group.bench_with_input(BenchmarkId::from_parameter(label), &body, |b, body| {
            b.iter_custom(|iters| {
                (0..iters)
                    .map(|_| request_path_time(vm, "/v1/chat/completions", body))
                    .sum()
            })
        });
    }
    group.finish();
}

/// Chat requests whose tool outputs are of each kind the pipeline compresses, at each size:
/// (kind, size label, body).
fn bodies() -> Vec<(&'static str, &'static str, Vec<u8>)> {
    let mut out = Vec::new();
    for (label, size) in SIZES {
        out.push(("json", *label, corpus::sized_request(*size)));
        let request = |text: String| corpus::tool_output_request(text);
        out.push(("log", *label, request(corpus::log_text(*size, 7))));
        out.push(("search", *label, request(corpus::grep_text(*size, 7))));
        out.push(("diff", *label, request(corpus::diff_text(*size, 7))));
    }
    out
}

/// Stores of zero budget: nothing is kept, so nothing is replayed.
const NO_STORES: &[u8] = br#"{"omitted_store_bytes":0,"replay_store_bytes":0}"#;

/// What one VM's linear memory grows to: fresh, after an OpenAI request (o200k_base tables)
/// and after an Anthropic one too (cl100k_base). Printed, not asserted: it is a measurement.
fn vm_memory() {
    let mut vm = runtime(NO_STORES).instantiate().expect("a VM");
    let fresh = vm.memory_bytes();
    through_vm(
        &mut vm,
        "/v1/chat/completions",
        &corpus::sized_request(100_000),
    );
    let openai = vm.memory_bytes();
    let claude = corpus::sized_request(100_000);
    let claude = String::from_utf8_lossy(&claude).replace("gpt-4o-mini", "claude-sonnet-4-5");
    through_vm(&mut vm, "/v1/chat/completions", claude.as_bytes());
    let both = vm.memory_bytes();
    println!(
        "vm_memory: fresh {:.1} MiB, after an o200k request {:.1} MiB, after a cl100k request too {:.1} MiB",
        fresh as f64 / 1048576.0,
        openai as f64 / 1048576.0,
        both as f64 / 1048576.0
    );
}

fn pipeline(c: &mut Criterion) {
    vm_memory();
    let mut vm = runtime(NO_STORES).instantiate().expect("a VM");
    let mut replay_vm = runtime(b"{}").instantiate().expect("a VM");
    let config = Config::default().pipeline;
    let native_run =
        |body: &[u8]| compress_request(Api::OpenAiChat, body, &config, &mut MemoryHost::new(0, 0));
    let mut native = c.benchmark_group("pipeline_native");
    for (kind, size_label, body) in bodies() {
        native.throughput(Throughput::Bytes(body.len() as u64));
        native.bench_with_input(BenchmarkId::new(kind, size_label), &body, |b, body| {
            b.iter(|| native_run(body))
        });
    }
    native.finish();
    let mut wasm = c.benchmark_group("pipeline_wasm");
    for (kind, size_label, body) in bodies() {
        // The same result in both: the benchmark measures equal work.
        let native_out = native_run(&body).expect("valid").body;
        assert!(native_out.is_some(), "the {kind} request compresses");
        assert_eq!(
            Some(through_vm(&mut vm, "/v1/chat/completions", &body)),
            native_out
        );
        wasm.throughput(Throughput::Bytes(body.len() as u64));
        wasm.bench_with_input(BenchmarkId::new(kind, size_label), &body, |b, body| {
            b.iter(|| through_vm(&mut vm, "/v1/chat/completions", body))
        });
    }
    wasm.finish();
    let mut unlimited = unlimited_runtime(NO_STORES).instantiate().expect("a VM");
    let mut group = c.benchmark_group("pipeline_wasm_no_call_limit");
    for (kind, size_label, body) in bodies().into_iter().filter(|(_, size, _)| *size != "10MB") {
        group.throughput(Throughput::Bytes(body.len() as u64));
        group.bench_with_input(BenchmarkId::new(kind, size_label), &body, |b, body| {
            b.iter(|| through_vm(&mut unlimited, "/v1/chat/completions", body))
        });
    }
    group.finish();
    let alt = alt_wasm();
    if let Some(alt) = &alt {
        let mut vm = runtime_of(alt, NO_STORES).instantiate().expect("a VM");
        let mut group = c.benchmark_group("pipeline_wasm_alt");
        for (kind, size_label, body) in bodies() {
            group.throughput(Throughput::Bytes(body.len() as u64));
            group.bench_with_input(BenchmarkId::new(kind, size_label), &body, |b, body| {
                b.iter(|| through_vm(&mut vm, "/v1/chat/completions", body))
            });
        }
        group.finish();
    }
    request_path_group(c, "request_path_wasm", &mut vm);
    if let Some(alt) = &alt {
        let mut vm = runtime_of(alt, NO_STORES).instantiate().expect("a VM");
        request_path_group(c, "request_path_wasm_alt", &mut vm);
    }
    let mut replay = c.benchmark_group("replay_native");
    for (label, size) in SIZES {
        let body = corpus::sized_request(*size);
        let mut stores = MemoryHost::default();
        let first = compress_request(Api::OpenAiChat, &body, &config, &mut stores).expect("valid");
        replay.throughput(Throughput::Bytes(body.len() as u64));
        replay.bench_with_input(BenchmarkId::from_parameter(label), &body, |b, body| {
            b.iter(|| {
                let again = compress_request(Api::OpenAiChat, body, &config, &mut stores);
                assert_eq!(again.as_ref().map(|o| &o.body), Ok(&first.body));
            })
        });
    }
    replay.finish();
    let mut replay = c.benchmark_group("replay_wasm");
    for (label, size) in SIZES {
        let body = corpus::sized_request(*size);
        let first = through_vm(&mut replay_vm, "/v1/chat/completions", &body);
        assert_eq!(
            through_vm(&mut replay_vm, "/v1/chat/completions", &body),
            first
        );
        replay.throughput(Throughput::Bytes(body.len() as u64));
        replay.bench_with_input(BenchmarkId::from_parameter(label), &body, |b, body| {
            b.iter(|| through_vm(&mut replay_vm, "/v1/chat/completions", body))
        });
    }
    replay.finish();
    if let Some(alt) = &alt {
        let mut vm = runtime_of(alt, b"{}").instantiate().expect("a VM");
        let mut group = c.benchmark_group("replay_wasm_alt");
        for (label, size) in SIZES {
            let body = corpus::sized_request(*size);
            through_vm(&mut vm, "/v1/chat/completions", &body);
            group.throughput(Throughput::Bytes(body.len() as u64));
            group.bench_with_input(BenchmarkId::from_parameter(label), &body, |b, body| {
                b.iter(|| through_vm(&mut vm, "/v1/chat/completions", body))
            });
        }
        group.finish();
    }
    let body = corpus::sized_request(100_000);
    c.bench_function("abi_passthrough/100KB", |b| {
        b.iter(|| through_vm(&mut vm, "/v1/embeddings", &body))
    });
}

criterion_group!(benches, pipeline);
criterion_main!(benches);
