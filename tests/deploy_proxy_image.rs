//! `headroom` as a container image (`scripts/oci-image --proxy`), built without a container
//! daemon:
//!
//! - reproducible: two runs write byte-identical layouts;
//! - its config runs `headroom proxy` as uid/gid 65532 (non-root), listens on 0.0.0.0, keeps its
//!   state in /var/lib/headroom, and carries Docker's Healthcheck running `headroom-livez`;
//! - its one layer is a complete root file system: as root, the test runs the binary from it
//!   with `chroot --userspec=65532:65532` (so only the image's own libraries, as the image's
//!   user, with the image's environment), checks that it serves /livez and writes its state, and
//!   that the health check passes while it runs and fails once it is stopped. Not root: the
//!   binary runs through the image's own dynamic loader and libraries instead.

mod deploy_support;

use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use deploy_support::*;

const USER: &str = "65532:65532";

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// A command that runs `program` (a path inside the image) from `rootfs` with the image's
/// environment `env` (plus `extra`).
fn in_image(rootfs: &Path, program: &str, env: &[String], extra: &[(&str, String)]) -> Command {
    let mut cmd = if is_root() {
        // By path: the image's PATH (set below) is what the child would search.
        let chroot = ["/usr/sbin/chroot", "/usr/bin/chroot", "/sbin/chroot"]
            .into_iter()
            .find(|p| Path::new(p).is_file())
            .expect("chroot (coreutils)");
        let mut cmd = Command::new(chroot);
        cmd.arg(format!("--userspec={USER}"))
            .arg(rootfs)
            .arg(program);
        cmd
    } else {
        let mut cmd = Command::new(rootfs.join("lib64/ld-linux-x86-64.so.2"));
        cmd.arg("--library-path")
            .arg(rootfs.join("lib/x86_64-linux-gnu"))
            .arg(rootfs.join(program.trim_start_matches('/')));
        cmd
    };
    cmd.env_clear();
    for kv in env {
        let (k, v) = kv.split_once('=').expect("K=V");
        cmd.env(k, v);
    }
    if !is_root() {
        // Outside a chroot the image's paths do not exist: state in the unpacked tree.
        let state = rootfs.join("var/lib/headroom");
        cmd.env("HOME", &state)
            .env("HEADROOM_WORKSPACE_DIR", &state)
            .env("HEADROOM_CACHE_DIR", state.join("cache"));
    }
    for (k, v) in extra {
        cmd.env(k, v);
    }
    cmd
}

#[test]
fn proxy_image_is_reproducible_runs_as_non_root_and_answers_its_health_check() {
    let binary = headroom_tests::headroom::binary().expect("the headroom binary");
    let work = TempDir::new("proxy-image");
    let (a, b) = (work.path().join("a"), work.path().join("b"));
    let first = write_proxy_image(&a, &binary);
    let second = write_proxy_image(&b, &binary);
    assert_eq!(first.digest, second.digest);
    assert!(files(&a) == files(&b), "two builds wrote different bytes");
    eprintln!("proxy image {} (byte-identical twice)", first.digest);

    let (_, manifest) = manifest(&a);
    assert_eq!(
        manifest["layers"][0]["mediaType"],
        "application/vnd.oci.image.layer.v1.tar+gzip"
    );
    let config = read_json(&blob(&a, manifest["config"]["digest"].as_str().unwrap()));
    let c = &config["config"];
    assert_eq!(c["User"], USER, "non-root");
    assert_eq!(
        c["Entrypoint"],
        serde_json::json!(["/usr/local/bin/headroom"])
    );
    assert_eq!(c["Cmd"], serde_json::json!(["proxy"]));
    assert_eq!(
        c["Healthcheck"]["Test"],
        serde_json::json!(["CMD", "/usr/local/bin/headroom-livez"])
    );
    assert!(c["ExposedPorts"]["8787/tcp"].is_object());
    let env: Vec<String> = c["Env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    assert!(
        env.contains(&"HEADROOM_HOST=0.0.0.0".to_string()),
        "{env:?}"
    );
    assert!(
        config.get("created").is_none(),
        "no build time in the config"
    );

    let rootfs = work.path().join("rootfs");
    unpack_layer(&a, &rootfs);
    assert_eq!(
        sha256_file(&rootfs.join("usr/local/bin/headroom")),
        sha256_file(&binary),
        "the image carries the binary"
    );
    let passwd = std::fs::read_to_string(rootfs.join("etc/passwd")).unwrap();
    assert!(passwd.contains("nonroot:x:65532:65532:"), "{passwd}");

    // Run it from the image. Loopback and an ephemeral port for the test, whatever the image says.
    let mut child = in_image(
        &rootfs,
        "/usr/local/bin/headroom",
        &env,
        &[
            ("HEADROOM_HOST", "127.0.0.1".into()),
            ("HEADROOM_PORT", "0".into()),
        ],
    )
    .arg("proxy")
    .stdin(Stdio::null())
    .stdout(Stdio::null())
    .stderr(Stdio::piped())
    .spawn()
    .expect("starting headroom from the image");
    let stderr = child.stderr.take().unwrap();
    let mut proxy = Killed(child);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut log = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    let port: u16 = loop {
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(line) => {
                if let Some(i) = line.find("listening on http://") {
                    let addr = line[i + "listening on http://".len()..]
                        .split_whitespace()
                        .next()
                        .unwrap()
                        .to_string();
                    let addr: std::net::SocketAddr = addr.parse().expect("address");
                    break addr.port();
                }
                log.push(line);
            }
            Err(_) => {
                if let Ok(Some(status)) = proxy.0.try_wait() {
                    panic!(
                        "headroom from the image exited with {status}:\n{}",
                        log.join("\n")
                    );
                }
                assert!(
                    Instant::now() < deadline,
                    "no 'listening' line:\n{}",
                    log.join("\n")
                );
            }
        }
    };
    assert!(
        log.iter().all(|l| !l.contains('\x1b')),
        "no colour codes when stderr is not a terminal: {log:?}"
    );
    let (status, body) = http_get(port, "/livez").expect("GET /livez");
    assert_eq!(status, 200, "{body}");

    let livez = |extra: &[(&str, String)]| {
        in_image(&rootfs, "/usr/local/bin/headroom-livez", &env, extra)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()
            .expect("running headroom-livez")
    };
    let ok = livez(&[("HEADROOM_PORT", port.to_string())]);
    assert!(
        ok.status.success(),
        "the health check fails against a running proxy: {}",
        String::from_utf8_lossy(&ok.stderr)
    );

    // The image's user could write its state: the compiled-module cache at least.
    let cache = rootfs.join("var/lib/headroom/cache");
    assert!(
        std::fs::read_dir(&cache).is_ok_and(|mut d| d.next().is_some()),
        "{} is empty: the non-root user could not write its state",
        cache.display()
    );

    drop(proxy);
    let down = livez(&[("HEADROOM_PORT", port.to_string())]);
    assert!(
        !down.status.success(),
        "the health check passes with the proxy stopped"
    );
    eprintln!(
        "ran from the image ({}) on port {port}; health check ok, then failing once stopped",
        if is_root() {
            "chroot as 65532:65532"
        } else {
            "the image's loader and libraries"
        }
    );
}
