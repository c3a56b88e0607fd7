//! Helpers of the deploy_* tests: run scripts/oci-image and scripts/deploy-manifests, read an OCI
//! layout, temp directories. Digests come from `sha256sum`, layers are unpacked by `tar`.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A directory under the repository's `target/` (the same file system as the build), removed
/// when dropped unless HEADROOM_KEEP_TEST_DIRS is set.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(name: &str) -> TempDir {
        let dir = repo_root()
            .join("target")
            .join("deploy-tests")
            .join(format!(
                "{name}-{}-{}",
                std::process::id(),
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_nanos())
                    .unwrap_or_default()
            ));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
        TempDir(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::env::var_os("HEADROOM_KEEP_TEST_DIRS").is_none() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// Runs `cmd`, panics with its output unless it succeeds.
pub fn run(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

pub fn sha256_file(path: &Path) -> String {
    let out = run(Command::new("sha256sum").arg(path));
    String::from_utf8_lossy(&out.stdout)[..64].to_string()
}

pub fn read_json(path: &Path) -> Value {
    let text = std::fs::read(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_json::from_slice(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// What `scripts/oci-image` printed: the digest, and the input it named on stderr.
pub struct Image {
    pub digest: String,
    /// The `.wasm` or binary the image was built from, and its sha256 as the script saw it.
    pub input: PathBuf,
    pub input_sha256: String,
}

fn run_oci_image(args: &[&std::ffi::OsStr]) -> Image {
    let out = run(Command::new(repo_root().join("scripts/oci-image"))
        .args(args)
        .current_dir(repo_root()));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let digest = stdout.trim().to_string();
    assert!(
        digest.starts_with("sha256:") && digest.len() == 71 && stdout.lines().count() == 1,
        "scripts/oci-image prints the digest and nothing else on stdout, got {stdout:?}"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    // "oci-image: filter PATH (SHA256) -> DIR"
    let line = stderr
        .lines()
        .find(|l| l.starts_with("oci-image: "))
        .unwrap_or_else(|| panic!("no 'oci-image:' line on stderr:\n{stderr}"));
    let rest = line.splitn(3, ' ').nth(2).expect("path");
    let (path, rest) = rest.split_once(" (").expect("(sha)");
    Image {
        digest,
        input: PathBuf::from(path),
        input_sha256: rest[..64].to_string(),
    }
}

/// `scripts/oci-image [--wasm WASM] LAYOUT`.
pub fn write_filter_image(layout: &Path, wasm: Option<&Path>) -> Image {
    let mut args: Vec<&std::ffi::OsStr> = Vec::new();
    if let Some(wasm) = wasm {
        args.push("--wasm".as_ref());
        args.push(wasm.as_os_str());
    }
    args.push(layout.as_os_str());
    run_oci_image(&args)
}

/// `scripts/oci-image --proxy --binary BINARY LAYOUT`.
pub fn write_proxy_image(layout: &Path, binary: &Path) -> Image {
    run_oci_image(&[
        "--proxy".as_ref(),
        "--binary".as_ref(),
        binary.as_os_str(),
        layout.as_os_str(),
    ])
}

/// The Python with `jsonschema` and `pyyaml`: `.venv/bin/python` (scripts/test installs
/// tests/sdk/requirements.txt there), else `python3`.
pub fn python() -> PathBuf {
    let venv = repo_root().join(".venv/bin/python");
    let python = if venv.is_file() {
        venv
    } else {
        PathBuf::from("python3")
    };
    let ok = Command::new(&python)
        .args(["-c", "import jsonschema, yaml"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "{} cannot import jsonschema and yaml: run scripts/test once (it creates .venv/ from \
         tests/sdk/requirements.txt), or `python3 -m venv .venv && .venv/bin/pip install -r \
         tests/sdk/requirements.txt`",
        python.display()
    );
    python
}

/// The CRD schemas: `$HEADROOM_K8S_SCHEMAS`, else `../shared/k8s-schemas` beside the repository.
pub fn schemas_dir() -> PathBuf {
    let dir = std::env::var_os("HEADROOM_K8S_SCHEMAS")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("../shared/k8s-schemas"));
    assert!(
        dir.join("istio-wasmplugin-v1alpha1.json").is_file()
            && dir
                .join("envoygateway-envoyextensionpolicy-v1alpha1.json")
                .is_file(),
        "the CRD schemas are missing: expected istio-wasmplugin-v1alpha1.json and \
         envoygateway-envoyextensionpolicy-v1alpha1.json in {} (CI keeps ../shared beside the \
         clone; HEADROOM_K8S_SCHEMAS names another directory)",
        dir.display()
    );
    dir
}

/// Renders deploy/ for the image in `layout` into `out` and validates the result
/// (scripts/validate_manifests.py); returns its report.
pub fn render_manifests(layout: &Path, out: &Path) -> Value {
    let python = python();
    run(Command::new(&python)
        .arg(repo_root().join("scripts/deploy-manifests"))
        .arg("registry.example.com/headroom/headroom-filter:0.1.0")
        .arg("--layout")
        .arg(layout)
        .arg("--out")
        .arg(out));
    let report = run(Command::new(&python)
        .arg(repo_root().join("scripts/validate_manifests.py"))
        .arg(out)
        .arg(schemas_dir())
        .arg(repo_root().join("envoy/envoy.yaml")));
    serde_json::from_slice(&report.stdout).expect("validate_manifests.py prints JSON")
}

/// The manifest of the one image in `layout`, with its digest.
pub fn manifest(layout: &Path) -> (String, Value) {
    let index = read_json(&layout.join("index.json"));
    let manifests = index["manifests"].as_array().expect("index.manifests");
    assert_eq!(manifests.len(), 1, "one image per layout: {index}");
    let digest = manifests[0]["digest"].as_str().expect("digest").to_string();
    (digest.clone(), read_json(&blob(layout, &digest)))
}

pub fn blob(layout: &Path, digest: &str) -> PathBuf {
    layout
        .join("blobs/sha256")
        .join(digest.trim_start_matches("sha256:"))
}

/// Every file of `layout`, relative path → bytes, sorted.
pub fn files(layout: &Path) -> Vec<(String, Vec<u8>)> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<(String, Vec<u8>)>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                let rel = path.strip_prefix(root).unwrap().display().to_string();
                out.push((rel, std::fs::read(&path).unwrap()));
            }
        }
    }
    let mut out = Vec::new();
    walk(layout, layout, &mut out);
    out.sort();
    out
}

/// Unpacks the image's one layer into `dest` (as root, tar keeps the owners).
pub fn unpack_layer(layout: &Path, dest: &Path) -> Value {
    let (_, manifest) = manifest(layout);
    let layers = manifest["layers"].as_array().expect("layers");
    assert_eq!(layers.len(), 1, "one layer: {manifest}");
    std::fs::create_dir_all(dest).unwrap();
    run(Command::new("tar")
        .arg("-xzf")
        .arg(blob(layout, layers[0]["digest"].as_str().unwrap()))
        .arg("-C")
        .arg(dest));
    manifest
}

/// A free loopback port (bound and released: the caller binds it again at once).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A blocking `GET path` on 127.0.0.1:port: (status, body).
pub fn http_get(port: u16, path: &str) -> std::io::Result<(u16, String)> {
    use std::io::{Read as _, Write as _};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(std::time::Duration::from_secs(10)))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )?;
    let mut text = String::new();
    stream.read_to_string(&mut text)?;
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((status, body))
}
