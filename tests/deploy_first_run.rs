//! The README's first command on a machine where the pinned toolchain is installed without its
//! wasm targets (rustup does not add the targets rust-toolchain.toml lists to an installed
//! toolchain): host/build.rs must install them and build the filter.
//!
//! Without touching this machine's toolchain: a private RUSTUP_HOME holds a copy of the pinned
//! toolchain (hard links where the file system allows) without wasm32-wasip1 and wasm32-wasip2.
//! The test shows the failure the issue reports (`can't find crate for std`), then runs
//! host/build.rs itself (compiled with plain rustc and run as cargo runs it, so the host, i.e.
//! wasmtime, is not rebuilt), and checks that it said what it did, installed both targets with
//! `rustup target add`, and produced the filter; the same compile then succeeds. Needs rustup
//! and network access to static.rust-lang.org; where the download is impossible the test says so
//! and stops (HEADROOM_SKIP_FIRST_RUN_TEST=1 skips it entirely). scripts/ensure-wasm-targets
//! (used by scripts/oci-image) is checked the same way.

mod deploy_support;

use std::path::{Path, PathBuf};
use std::process::Command;

use deploy_support::*;

const TARGETS: [&str; 2] = ["wasm32-wasip1", "wasm32-wasip2"];

fn toolchain_name() -> String {
    let text = std::fs::read_to_string(repo_root().join("rust-toolchain.toml")).unwrap();
    let channel = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("channel = "))
        .expect("channel in rust-toolchain.toml")
        .trim_matches('"')
        .to_string();
    format!("{channel}-x86_64-unknown-linux-gnu")
}

fn real_rustup_home() -> PathBuf {
    std::env::var_os("RUSTUP_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".rustup")))
        .expect("RUSTUP_HOME or HOME")
}

/// A RUSTUP_HOME whose pinned toolchain lacks the wasm targets.
fn rustup_home_without_wasm_targets(dir: &Path) -> PathBuf {
    let real = real_rustup_home();
    let name = toolchain_name();
    let source = std::fs::canonicalize(real.join("toolchains").join(&name))
        .unwrap_or_else(|e| panic!("the pinned toolchain {name} is not installed: {e}"));
    let home = dir.join("rustup");
    let toolchain = home.join("toolchains").join(&name);
    std::fs::create_dir_all(home.join("toolchains")).unwrap();
    if let Ok(settings) = std::fs::read(real.join("settings.toml")) {
        std::fs::write(home.join("settings.toml"), settings).unwrap();
    }
    // Hard links (cheap, and rustc finds its sysroot from its own path); a copy elsewhere.
    let linked = Command::new("cp")
        .arg("-al")
        .arg(&source)
        .arg(&toolchain)
        .status()
        .is_ok_and(|s| s.success());
    if !linked {
        let _ = std::fs::remove_dir_all(&toolchain);
        run(Command::new("cp").arg("-a").arg(&source).arg(&toolchain));
    }
    let rustlib = toolchain.join("lib/rustlib");
    for entry in std::fs::read_dir(&rustlib).unwrap() {
        let path = entry.unwrap().path();
        let file = path.file_name().unwrap().to_string_lossy().into_owned();
        if TARGETS.iter().any(|t| file.ends_with(t)) {
            if path.is_dir() {
                std::fs::remove_dir_all(&path).unwrap();
            } else {
                std::fs::remove_file(&path).unwrap();
            }
        } else if path.is_file() {
            // rustup rewrites these in place: never through a link to the real toolchain.
            let bytes = std::fs::read(&path).unwrap();
            std::fs::remove_file(&path).unwrap();
            // What rustup lists as installed: `components` (one line each) and
            // multirust-config.toml (one [[components]] block each).
            let bytes = match file.as_str() {
                "components" => String::from_utf8(bytes)
                    .unwrap()
                    .lines()
                    .filter(|l| !TARGETS.iter().any(|t| l.ends_with(t)))
                    .map(|l| format!("{l}\n"))
                    .collect::<String>()
                    .into_bytes(),
                "multirust-config.toml" => String::from_utf8(bytes)
                    .unwrap()
                    .split("\n\n")
                    .filter(|block| !TARGETS.iter().any(|t| block.contains(t)))
                    .collect::<Vec<_>>()
                    .join("\n\n")
                    .into_bytes(),
                _ => bytes,
            };
            std::fs::write(&path, bytes).unwrap();
        }
    }
    home
}

/// `cmd` with the private RUSTUP_HOME (CARGO_HOME stays: rustup's proxies and the crates).
fn with_home(mut cmd: Command, home: &Path) -> Command {
    cmd.env("RUSTUP_HOME", home)
        .env_remove("RUSTUP_TOOLCHAIN")
        .env_remove("RUSTC")
        .env_remove("CARGO")
        .env_remove("RUSTC_WRAPPER")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_TARGET_DIR")
        // cargo test points LD_LIBRARY_PATH at the real toolchain's libraries: the copied rustc
        // would load librustc_driver from there and take the real toolchain as its sysroot.
        .env_remove("LD_LIBRARY_PATH")
        .current_dir(repo_root());
    cmd
}

fn installed_targets(home: &Path) -> String {
    let mut cmd = with_home(Command::new("rustup"), home);
    cmd.args(["target", "list", "--installed"]);
    String::from_utf8_lossy(&run(&mut cmd).stdout).into_owned()
}

/// Compiles a library that needs std for wasm32-wasip1 with the private toolchain.
fn compile_for_wasm(home: &Path, dir: &Path) -> std::process::Output {
    let src = dir.join("needs_std.rs");
    std::fs::write(&src, "pub fn f() -> String { String::from(\"x\") }\n").unwrap();
    let mut cmd = with_home(Command::new("rustc"), home);
    cmd.args([
        "--target",
        "wasm32-wasip1",
        "--crate-type",
        "lib",
        "--out-dir",
    ])
    .arg(dir)
    .arg(&src);
    cmd.output().expect("running rustc")
}

fn network_unavailable(text: &str) -> bool {
    [
        "could not download",
        "error sending request",
        "failed to resolve",
        "timed out",
        "Connection refused",
    ]
    .iter()
    .any(|s| text.contains(s))
}

#[test]
fn host_build_script_installs_missing_wasm_targets() {
    if std::env::var_os("HEADROOM_SKIP_FIRST_RUN_TEST").is_some() {
        eprintln!("SKIPPED (HEADROOM_SKIP_FIRST_RUN_TEST)");
        return;
    }
    let work = TempDir::new("first-run");
    let home = rustup_home_without_wasm_targets(work.path());
    let name = toolchain_name();
    let before = installed_targets(&home);
    assert!(
        !before.contains("wasm32"),
        "the private toolchain still has wasm targets: {before}"
    );

    // The failure the issue reports.
    let failed = compile_for_wasm(&home, work.path());
    let stderr = String::from_utf8_lossy(&failed.stderr);
    assert!(!failed.status.success());
    assert!(stderr.contains("can't find crate for `std`"), "{stderr}");

    // host/build.rs, as cargo runs it: CARGO_MANIFEST_DIR, OUT_DIR (under target/, so the nested
    // builds use target/plugin-build and target/component-build like the real one), CARGO, RUSTC
    // and RUSTUP_TOOLCHAIN the way rustup's proxies set them.
    let toolchain_bin = home.join("toolchains").join(&name).join("bin");
    let script = work.path().join("build-script");
    let mut compile = with_home(Command::new(toolchain_bin.join("rustc")), &home);
    compile
        .args(["--edition", "2024", "-O", "-o"])
        .arg(&script)
        .arg(repo_root().join("host/build.rs"));
    run(&mut compile);
    let out_dir = repo_root()
        .join("target/release/build")
        .join(format!("headroom-host-first-run-{}", std::process::id()))
        .join("out");
    std::fs::create_dir_all(&out_dir).unwrap();
    let mut build = with_home(Command::new(&script), &home);
    build
        .env("CARGO_MANIFEST_DIR", repo_root().join("host"))
        .env("OUT_DIR", &out_dir)
        .env("CARGO", toolchain_bin.join("cargo"))
        .env("RUSTC", toolchain_bin.join("rustc"))
        .env("RUSTUP_TOOLCHAIN", &name)
        .env_remove("HEADROOM_PLUGIN_WASM_PREBUILT")
        .env_remove("HEADROOM_COMPONENT_WASM_PREBUILT");
    let output = build.output().expect("running host/build.rs");
    let embedded = std::fs::read(out_dir.join("headroom.wasm")).ok();
    let _ = std::fs::remove_dir_all(out_dir.parent().unwrap());
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() && network_unavailable(&stderr) {
        eprintln!(
            "STOPPED: this machine cannot download the targets from static.rust-lang.org; the \
             build script tried (`rustup target add`) and failed as it should:\n{stderr}"
        );
        return;
    }
    assert!(
        output.status.success(),
        "host/build.rs failed:\n--- stdout\n{stdout}\n--- stderr\n{stderr}"
    );
    for target in TARGETS {
        assert!(
            stdout.contains(&format!(
                "cargo:warning=the {target} standard library is missing"
            )) && stdout.contains(&format!("rustup target add --toolchain {name} {target}")),
            "the build says what it installs ({target}):\n{stdout}"
        );
    }
    let after = installed_targets(&home);
    for target in TARGETS {
        assert!(after.contains(target), "{target} not installed: {after}");
    }
    // The filter it embeds (copied into OUT_DIR from the nested build).
    assert!(
        stdout.contains(&format!(
            "cargo:rustc-env=HEADROOM_PLUGIN_WASM={}",
            out_dir.join("headroom.wasm").display()
        )),
        "{stdout}"
    );
    assert_eq!(
        embedded.as_deref().map(|w| &w[..4]),
        Some(&b"\0asm"[..]),
        "OUT_DIR/headroom.wasm is a wasm module"
    );
    let ok = compile_for_wasm(&home, work.path());
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    eprintln!(
        "installed by host/build.rs: {}",
        after.trim().replace('\n', ", ")
    );
}

#[test]
fn ensure_wasm_targets_script_installs_missing_targets() {
    if std::env::var_os("HEADROOM_SKIP_FIRST_RUN_TEST").is_some() {
        eprintln!("SKIPPED (HEADROOM_SKIP_FIRST_RUN_TEST)");
        return;
    }
    let work = TempDir::new("ensure-targets");
    let home = rustup_home_without_wasm_targets(work.path());
    let mut cmd = with_home(
        Command::new(repo_root().join("scripts/ensure-wasm-targets")),
        &home,
    );
    let output = cmd
        .arg("wasm32-wasip1")
        .output()
        .expect("running the script");
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() && network_unavailable(&stderr) {
        eprintln!("STOPPED: no download possible here; the script tried and failed:\n{stderr}");
        return;
    }
    assert!(output.status.success(), "{stderr}");
    assert!(
        stderr.contains("rustup target add --toolchain") && stderr.contains("wasm32-wasip1"),
        "says what it does: {stderr}"
    );
    assert!(installed_targets(&home).contains("wasm32-wasip1"));
    // A second run has nothing to do and says nothing.
    let mut again = with_home(
        Command::new(repo_root().join("scripts/ensure-wasm-targets")),
        &home,
    );
    let output = again.arg("wasm32-wasip1").output().unwrap();
    assert!(output.status.success());
    assert!(
        output.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}
