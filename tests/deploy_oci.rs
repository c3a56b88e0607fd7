//! The filter's OCI image (`scripts/oci-image`):
//!
//! - reproducible: two runs write byte-identical layouts;
//! - the "compat" variant Istio and Envoy Gateway load: one tar+gzip layer holding exactly
//!   `plugin.wasm`, whose sha256 is the `.wasm` the build produced; the manifest annotated
//!   `module.wasm.image/variant: compat`; every blob named by its digest and size; the config's
//!   diff_id is the uncompressed layer's digest;
//! - Envoy 1.40 loads the `.wasm` extracted from the image with the configuration of each mesh
//!   manifest (deploy/) and the filter answers through it;
//! - a round trip through a real registry on loopback (Debian's docker-registry, skopeo):
//!   pushed, inspected (same digest) and pulled back into a layout with the same blobs.
//!
//! Needs Envoy (`envoy/install.sh`), and skopeo and docker-registry (`scripts/test` installs
//! them as root; HEADROOM_SKIP_REGISTRY_TEST=1 skips the round trip where they cannot be had).

mod deploy_support;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use deploy_support::*;
use headroom_tests::envoy::{Envoy, LocalConfig};

#[test]
fn filter_image_is_reproducible_and_holds_exactly_the_built_wasm() {
    let work = TempDir::new("filter-image");
    let (a, b) = (work.path().join("a"), work.path().join("b"));
    let first = write_filter_image(&a, None);
    let second = write_filter_image(&b, None);
    assert_eq!(first.digest, second.digest);
    let (files_a, files_b) = (files(&a), files(&b));
    assert_eq!(
        files_a.iter().map(|f| &f.0).collect::<Vec<_>>(),
        files_b.iter().map(|f| &f.0).collect::<Vec<_>>()
    );
    assert!(files_a == files_b, "two builds wrote different bytes");
    eprintln!(
        "filter image {} ({} files, byte-identical twice)",
        first.digest,
        files_a.len()
    );

    // The layout: oci-layout, index.json, and blobs named by their digests.
    assert_eq!(
        read_json(&a.join("oci-layout")),
        serde_json::json!({"imageLayoutVersion": "1.0.0"})
    );
    for (name, bytes) in &files_a {
        if let Some(hex) = name.strip_prefix("blobs/sha256/") {
            assert_eq!(
                sha256_file(&a.join(name)),
                hex,
                "{name}: {} bytes",
                bytes.len()
            );
        }
    }
    let (digest, manifest) = manifest(&a);
    assert_eq!(digest, first.digest, "the digest printed is the manifest's");
    assert_eq!(
        manifest["mediaType"],
        "application/vnd.oci.image.manifest.v1+json"
    );
    assert_eq!(
        manifest["annotations"]["module.wasm.image/variant"],
        "compat"
    );
    let index = read_json(&a.join("index.json"));
    assert_eq!(
        index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"],
        "0.1.0"
    );
    for desc in std::iter::once(&manifest["config"]).chain(manifest["layers"].as_array().unwrap()) {
        let path = blob(&a, desc["digest"].as_str().unwrap());
        assert_eq!(
            std::fs::metadata(&path).unwrap().len(),
            desc["size"].as_u64().unwrap(),
            "{desc}"
        );
    }
    let layer = &manifest["layers"][0];
    assert_eq!(
        layer["mediaType"],
        "application/vnd.oci.image.layer.v1.tar+gzip"
    );
    let config = read_json(&blob(&a, manifest["config"]["digest"].as_str().unwrap()));
    let tar = work.path().join("layer.tar");
    run(Command::new("sh").arg("-c").arg(format!(
        "gzip -dc '{}' > '{}'",
        blob(&a, layer["digest"].as_str().unwrap()).display(),
        tar.display()
    )));
    assert_eq!(
        config["rootfs"]["diff_ids"][0].as_str().unwrap(),
        format!("sha256:{}", sha256_file(&tar)),
        "diff_id = the uncompressed layer's digest"
    );

    // Exactly one file, plugin.wasm: the .wasm the build produced.
    let unpacked = work.path().join("unpacked");
    unpack_layer(&a, &unpacked);
    let entries: Vec<_> = std::fs::read_dir(&unpacked)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(entries, ["plugin.wasm"]);
    let wasm_sha = sha256_file(&unpacked.join("plugin.wasm"));
    assert_eq!(
        wasm_sha, first.input_sha256,
        "the layer holds the built .wasm"
    );
    assert_eq!(
        sha256_file(&first.input),
        wasm_sha,
        "{}",
        first.input.display()
    );
    assert!(
        first
            .input
            .ends_with("plugin-build/wasm32-wasip1/wasm-release/headroom_plugin.wasm"),
        "the build host/build.rs embeds: {}",
        first.input.display()
    );
    eprintln!("plugin.wasm sha256 {wasm_sha}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envoy_loads_the_wasm_extracted_from_the_image_with_each_mesh_configuration() {
    let work = TempDir::new("filter-envoy");
    let layout = work.path().join("layout");
    write_filter_image(&layout, None);
    let unpacked = work.path().join("unpacked");
    unpack_layer(&layout, &unpacked);
    let report = render_manifests(&layout, &work.path().join("rendered"));

    for mesh in ["istio", "envoy-gateway"] {
        let config = serde_json::to_string(&report["plugin_configs"][mesh]).unwrap();
        let opts = LocalConfig {
            wasm_path: Some(unpacked.join("plugin.wasm")),
            plugin_config_json: config,
            ..LocalConfig::default()
        };
        let envoy = Envoy::start(opts, 1)
            .await
            .unwrap_or_else(|e| panic!("{mesh}: {e:#}"));
        let port = envoy.listener_addr.port();
        let (status, body) =
            tokio::task::spawn_blocking(move || http_get(port, "/health").expect("GET /health"))
                .await
                .unwrap();
        assert_eq!(status, 200, "{mesh}: /health through Envoy: {body}");
        assert!(
            body.contains("\"service\":\"headroom\""),
            "{mesh}: answered by the filter: {body}"
        );
        // The operators' endpoints answer loopback clients (this one) without a token.
        let (status, body) =
            tokio::task::spawn_blocking(move || http_get(port, "/stats").expect("GET /stats"))
                .await
                .unwrap();
        assert_eq!(status, 200, "{mesh}: /stats from loopback: {body}");
        assert!(body.contains("\"requests\""), "{mesh}: {body}");
        eprintln!(
            "{mesh}: Envoy (pid {}) runs the filter from the image",
            envoy.pid()
        );
    }
}

/// A registry (Debian's docker-registry) on 127.0.0.1, killed by PID when dropped.
struct Registry {
    child: Child,
    port: u16,
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_registry(dir: &std::path::Path) -> Registry {
    let port = free_port();
    let config = dir.join("config.yml");
    std::fs::write(
        &config,
        format!(
            "version: 0.1\nlog: {{level: warn}}\nstorage:\n  filesystem: {{rootdirectory: {}}}\n\
             http: {{addr: '127.0.0.1:{port}'}}\n",
            dir.join("data").display()
        ),
    )
    .unwrap();
    let child = Command::new("docker-registry")
        .arg("serve")
        .arg(&config)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("registry.log")).unwrap())
        .spawn()
        .expect("starting docker-registry");
    let mut registry = Registry { child, port };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok((200, _)) = http_get(port, "/v2/") {
            return registry;
        }
        if let Ok(Some(status)) = registry.child.try_wait() {
            panic!(
                "docker-registry exited with {status}: {}",
                std::fs::read_to_string(dir.join("registry.log")).unwrap_or_default()
            );
        }
        assert!(
            Instant::now() < deadline,
            "docker-registry did not answer /v2/"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn has(tool: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn skopeo(args: &[&str]) -> std::process::Output {
    let mut cmd = Command::new("skopeo");
    cmd.args(args);
    // Loopback only: no proxy in between.
    for var in [
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "http_proxy",
        "https_proxy",
        "ALL_PROXY",
    ] {
        cmd.env_remove(var);
    }
    run(&mut cmd)
}

#[test]
fn filter_image_round_trips_through_a_registry_on_loopback() {
    if !(has("skopeo") && has("docker-registry")) {
        if std::env::var_os("HEADROOM_SKIP_REGISTRY_TEST").is_some() {
            eprintln!(
                "SKIPPED (HEADROOM_SKIP_REGISTRY_TEST): skopeo or docker-registry is missing"
            );
            return;
        }
        panic!(
            "skopeo and docker-registry are needed (Debian packages skopeo, docker-registry; \
             scripts/test installs them as root). Set HEADROOM_SKIP_REGISTRY_TEST=1 only where \
             they cannot be had."
        );
    }
    let work = TempDir::new("registry");
    let layout = work.path().join("layout");
    let image = write_filter_image(&layout, None);
    let registry = start_registry(work.path());
    let reference = format!(
        "docker://127.0.0.1:{}/headroom/headroom-filter:0.1.0",
        registry.port
    );

    skopeo(&[
        "copy",
        "--dest-tls-verify=false",
        &format!("oci:{}:0.1.0", layout.display()),
        &reference,
    ]);
    let raw = skopeo(&["inspect", "--tls-verify=false", "--raw", &reference]);
    let pushed = work.path().join("pushed-manifest.json");
    std::fs::write(&pushed, &raw.stdout).unwrap();
    assert_eq!(
        format!("sha256:{}", sha256_file(&pushed)),
        image.digest,
        "the registry serves the manifest unchanged"
    );
    let inspect: serde_json::Value =
        serde_json::from_slice(&skopeo(&["inspect", "--tls-verify=false", &reference]).stdout)
            .unwrap();
    assert_eq!(inspect["Digest"], image.digest.as_str());

    let pulled = work.path().join("pulled");
    skopeo(&[
        "copy",
        "--src-tls-verify=false",
        &reference,
        &format!("oci:{}:0.1.0", pulled.display()),
    ]);
    let (digest, _) = manifest(&pulled);
    assert_eq!(digest, image.digest);
    let blobs = |dir: &std::path::Path| -> Vec<(String, Vec<u8>)> {
        files(dir)
            .into_iter()
            .filter(|(name, _)| name.starts_with("blobs/"))
            .collect()
    };
    assert!(
        blobs(&pulled) == blobs(&layout),
        "the pulled layout has the same blobs"
    );
    eprintln!(
        "pushed to and pulled from 127.0.0.1:{} (pid {}): {}",
        registry.port,
        registry.child.id(),
        image.digest
    );
}
