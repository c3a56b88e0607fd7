//! What the filter costs per request body, natively and inside the `.wasm` run by our host,
//! on the same inputs so the wasm/native ratio is visible.
//!
//! - `pipeline_native/<size>`: the filter's request rewrite as a native function.
//! - `pipeline_wasm/<size>`: the same body through the proxy-wasm ABI in our host (headers
//!   callback, buffered body callbacks, the rewrite in wasm, the body handed back): no network.
//! - `abi_passthrough/100KB`: a 100 KB body on a path the filter does not buffer: the ABI's
//!   fixed cost (context creation, headers and body callbacks, done/log/delete).
//!
//! Run: `cargo bench --bench filter` (add `-- --quick` for a fast pass).

use std::sync::Arc;
use std::time::SystemTime;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use headroom_host::abi::shared::{Metrics, SharedData};
use headroom_host::abi::state::{PluginShared, StreamInfo};
use headroom_host::abi::vm::{Runtime, Vm, VmLimits};
use headroom_plugin::api::Api;
use headroom_plugin::config::Config;
use headroom_tests::corpus;

const SIZES: &[(&str, usize)] = &[
    ("10KB", 10_000),
    ("100KB", 100_000),
    ("1MB", 1_000_000),
    ("10MB", 10_000_000),
];

fn runtime() -> Arc<Runtime> {
    let plugin = PluginShared {
        name: "headroom".into(),
        root_id: "headroom".into(),
        vm_id: "headroom".into(),
        configuration: b"{}".to_vec(),
        vm_configuration: Vec::new(),
        clusters: Default::default(),
        log_level: 3,
        shared_data: SharedData::default(),
        metrics: Arc::new(Metrics::default()),
    };
    Runtime::new(
        headroom_host::EMBEDDED_PLUGIN,
        plugin,
        VmLimits::default(),
        None,
    )
    .expect("the embedded filter loads")
}

/// One request through the VM, as the proxy drives it; returns the body the upstream would get.
fn through_vm(vm: &mut Vm, path: &str, body: &[u8]) -> Vec<u8> {
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
    vm.on_request_headers(id, false).expect("no trap");
    vm.stream(id).expect("stream exists").request_body = body.to_vec();
    vm.on_request_body(id, false).expect("no trap");
    vm.on_request_body(id, true).expect("no trap");
    let out = std::mem::take(&mut vm.stream(id).expect("stream exists").request_body);
    vm.finish_stream(id).expect("no trap");
    out
}

fn pipeline(c: &mut Criterion) {
    let runtime = runtime();
    let mut vm = runtime.instantiate().expect("a VM");
    let config = Config::default();
    let mut native = c.benchmark_group("pipeline_native");
    for (label, size) in SIZES {
        let body = corpus::sized_request(*size);
        native.throughput(Throughput::Bytes(body.len() as u64));
        native.bench_with_input(BenchmarkId::from_parameter(label), &body, |b, body| {
            b.iter(|| headroom_plugin::rewrite::rewrite_request(Api::OpenAiChat, body, &config))
        });
    }
    native.finish();
    let mut wasm = c.benchmark_group("pipeline_wasm");
    for (label, size) in SIZES {
        let body = corpus::sized_request(*size);
        // The same result in both: the benchmark measures equal work.
        let native_out = headroom_plugin::rewrite::rewrite_request(Api::OpenAiChat, &body, &config)
            .expect("valid")
            .body;
        assert_eq!(
            Some(through_vm(&mut vm, "/v1/chat/completions", &body)),
            native_out
        );
        wasm.throughput(Throughput::Bytes(body.len() as u64));
        wasm.bench_with_input(BenchmarkId::from_parameter(label), &body, |b, body| {
            b.iter(|| through_vm(&mut vm, "/v1/chat/completions", body))
        });
    }
    wasm.finish();
    let body = corpus::sized_request(100_000);
    c.bench_function("abi_passthrough/100KB", |b| {
        b.iter(|| through_vm(&mut vm, "/v1/embeddings", &body))
    });
}

criterion_group!(benches, pipeline);
criterion_main!(benches);
