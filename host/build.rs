//! Builds the filter (`plugin/`, wasm32-wasip1, profile `wasm-release`) so the `headroom` binary
//! carries it: `headroom proxy` needs no `.wasm` on disk. `HEADROOM_PLUGIN_WASM_PREBUILT` points
//! at an already built filter instead.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    let manifest_dir =
        PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let root = manifest_dir
        .parent()
        .expect("host/ is inside the workspace")
        .to_path_buf();
    let out_dir = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    println!("cargo:rerun-if-env-changed=HEADROOM_PLUGIN_WASM_PREBUILT");
    for path in [
        "plugin/src",
        "plugin/Cargo.toml",
        "Cargo.lock",
        "Cargo.toml",
    ] {
        println!("cargo:rerun-if-changed={}", root.join(path).display());
    }
    let wasm = match std::env::var_os("HEADROOM_PLUGIN_WASM_PREBUILT") {
        Some(path) => PathBuf::from(path),
        None => {
            // <target>/<profile>/build/<pkg>/out → <target>/plugin-build: shared by every profile.
            let target_dir = out_dir
                .ancestors()
                .nth(4)
                .map(|t| t.join("plugin-build"))
                .unwrap_or_else(|| out_dir.join("plugin-build"));
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            let status = Command::new(cargo)
                .current_dir(&root)
                .args([
                    "build",
                    "--locked",
                    "-p",
                    "headroom-plugin",
                    "--target",
                    "wasm32-wasip1",
                    "--profile",
                    "wasm-release",
                    "--target-dir",
                ])
                .arg(&target_dir)
                // What cargo sets for this build script must not leak into the filter's build.
                .env_remove("CARGO_ENCODED_RUSTFLAGS")
                .env_remove("RUSTFLAGS")
                .env_remove("RUSTC_WORKSPACE_WRAPPER")
                .env_remove("RUSTC_WRAPPER")
                .env_remove("CARGO_BUILD_TARGET")
                .env_remove("CARGO_TARGET_DIR")
                .status()
                .expect("running cargo to build the filter");
            assert!(
                status.success(),
                "building the filter (plugin/) for wasm32-wasip1 failed; is the wasm32-wasip1 target installed? (rust-toolchain.toml lists it)"
            );
            target_dir.join("wasm32-wasip1/wasm-release/headroom_plugin.wasm")
        }
    };
    let embedded = out_dir.join("headroom.wasm");
    std::fs::copy(&wasm, &embedded).unwrap_or_else(|e| panic!("copying {}: {e}", wasm.display()));
    println!(
        "cargo:rustc-env=HEADROOM_PLUGIN_WASM={}",
        embedded.display()
    );
}
