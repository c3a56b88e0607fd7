//! Builds the two guests the `headroom` binary carries, so it needs no `.wasm` on disk:
//!
//! - the filter (`plugin/`, wasm32-wasip1, profile `wasm-release`) for `headroom proxy`;
//!   `HEADROOM_PLUGIN_WASM_PREBUILT` points at an already built one instead;
//! - the pipeline component (`component/`, wasm32-wasip2, profile `wasm-release`) for
//!   `headroom compress`; `HEADROOM_COMPONENT_WASM_PREBUILT` points at an already built one.
//!
//! Each is a nested `cargo build` with its own target directory under the outer one.
//!
//! First run: rustup installs the toolchain rust-toolchain.toml pins with the targets it lists, but
//! it does not add those targets to a toolchain that is already installed without them, and the
//! guest build would fail with "can't find crate for `std`". So before building a guest, a missing
//! target's standard library is installed with `rustup target add` (said as a cargo warning); with
//! no rustup the build stops and says what to install.

use std::path::{Path, PathBuf};
use std::process::Command;

/// One guest to build and embed.
struct Guest {
    /// Its package.
    package: &'static str,
    /// Its wasm target.
    target: &'static str,
    /// The nested build's target directory, under the outer one.
    target_dir: &'static str,
    /// The file the build produces.
    artifact: &'static str,
    /// The variable naming a prebuilt file to embed instead.
    prebuilt_env: &'static str,
    /// The file name in OUT_DIR, published to the crate as `rustc-env` variable `embed_env`.
    embedded: &'static str,
    /// The `rustc-env` variable carrying the embedded file's path.
    embed_env: &'static str,
    /// What the build reads, relative to the workspace root.
    inputs: &'static [&'static str],
}

const GUESTS: [Guest; 2] = [
    Guest {
        package: "headroom-plugin",
        target: "wasm32-wasip1",
        target_dir: "plugin-build",
        artifact: "headroom_plugin.wasm",
        prebuilt_env: "HEADROOM_PLUGIN_WASM_PREBUILT",
        embedded: "headroom.wasm",
        embed_env: "HEADROOM_PLUGIN_WASM",
        inputs: &[
            "plugin/src",
            "plugin/assets",
            "plugin/Cargo.toml",
            ".cargo/config.toml",
        ],
    },
    Guest {
        package: "headroom-component",
        target: "wasm32-wasip2",
        target_dir: "component-build",
        artifact: "headroom_component.wasm",
        prebuilt_env: "HEADROOM_COMPONENT_WASM_PREBUILT",
        embedded: "headroom_component.wasm",
        embed_env: "HEADROOM_COMPONENT_WASM",
        inputs: &[
            "component/src",
            "component/Cargo.toml",
            "wit",
            "plugin/src",
            "plugin/Cargo.toml",
            ".cargo/config.toml",
        ],
    },
];

fn main() {
    let manifest_dir =
        PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let root = manifest_dir
        .parent()
        .expect("host/ is inside the workspace")
        .to_path_buf();
    let out_dir = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    for path in ["Cargo.lock", "Cargo.toml"] {
        println!("cargo:rerun-if-changed={}", root.join(path).display());
    }
    for guest in &GUESTS {
        let embedded = out_dir.join(guest.embedded);
        let wasm = build(guest, &root, &out_dir);
        std::fs::copy(&wasm, &embedded)
            .unwrap_or_else(|e| panic!("copying {}: {e}", wasm.display()));
        println!("cargo:rustc-env={}={}", guest.embed_env, embedded.display());
    }
}

/// Builds `guest` (or takes its prebuilt file) and returns the path of its `.wasm`.
fn build(guest: &Guest, root: &Path, out_dir: &Path) -> PathBuf {
    println!("cargo:rerun-if-env-changed={}", guest.prebuilt_env);
    for path in guest.inputs {
        println!("cargo:rerun-if-changed={}", root.join(path).display());
    }
    if let Some(path) = std::env::var_os(guest.prebuilt_env) {
        return PathBuf::from(path);
    }
    // <target>/<profile>/build/<pkg>/out → <target>/<guest dir>: shared by every profile.
    let target_dir = out_dir
        .ancestors()
        .nth(4)
        .map(|t| t.join(guest.target_dir))
        .unwrap_or_else(|| out_dir.join(guest.target_dir));
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    ensure_target(guest.target, root);
    let status = Command::new(cargo)
        .current_dir(root)
        .args([
            "build",
            "--locked",
            "-p",
            guest.package,
            "--target",
            guest.target,
        ])
        .args(["--profile", "wasm-release", "--target-dir"])
        .arg(&target_dir)
        // What cargo sets for this build script must not leak into the guest's build.
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("RUSTFLAGS")
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .env_remove("RUSTC_WRAPPER")
        .env_remove("CARGO_BUILD_TARGET")
        .env_remove("CARGO_TARGET_DIR")
        .status()
        .unwrap_or_else(|e| panic!("running cargo to build {}: {e}", guest.package));
    assert!(
        status.success(),
        "building {} for {} failed; is the {} target installed? (rust-toolchain.toml lists it)",
        guest.package,
        guest.target,
        guest.target
    );
    target_dir
        .join(guest.target)
        .join("wasm-release")
        .join(guest.artifact)
}

/// Installs `target`'s standard library into the toolchain that builds this crate when it is
/// missing, with `rustup target add`; panics with the command to run when that is not possible.
fn ensure_target(target: &str, root: &Path) {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let has_std = |rustc: &str| -> bool {
        let Ok(out) = Command::new(rustc)
            .args(["--print", "target-libdir", "--target", target])
            .output()
        else {
            return false;
        };
        let libdir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        out.status.success()
            && std::fs::read_dir(&libdir).is_ok_and(|entries| {
                entries.flatten().any(|e| {
                    let name = e.file_name();
                    let name = name.to_string_lossy();
                    name.starts_with("libstd-") && name.ends_with(".rlib")
                })
            })
    };
    if has_std(&rustc) {
        return;
    }
    // rustup's proxies tell the tools they run which toolchain they are; else the one
    // rust-toolchain.toml pins (rustup reads it from the working directory).
    let toolchain = std::env::var("RUSTUP_TOOLCHAIN").ok();
    let mut add = Command::new("rustup");
    add.current_dir(root).args(["target", "add"]);
    if let Some(toolchain) = &toolchain {
        add.args(["--toolchain", toolchain]);
    }
    add.arg(target);
    let command = format!(
        "rustup target add{} {target}",
        toolchain
            .as_deref()
            .map(|t| format!(" --toolchain {t}"))
            .unwrap_or_default()
    );
    println!(
        "cargo:warning=the {target} standard library is missing (rustup does not add the targets \
         rust-toolchain.toml lists to an already installed toolchain): running `{command}`"
    );
    eprintln!("installing the {target} target: {command}");
    match add.status() {
        Ok(status) if status.success() && has_std(&rustc) => {}
        Ok(status) => panic!(
            "`{command}` failed ({status}): the filter cannot be built for {target} without it; \
             run it yourself (needs network access to static.rust-lang.org) and build again"
        ),
        Err(e) => panic!(
            "the {target} standard library is missing and rustup could not be run ({e}): \
             install the target for rustc {} (with rustup: `rustup target add {target}`; \
             otherwise your distribution's rust-std package for {target}) and build again",
            std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into())
        ),
    }
}
