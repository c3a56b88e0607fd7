//! Compiling a guest once: compiled code is cached on disk, keyed by the wasm's SHA-256 and by
//! what makes compiled code compatible (wasmtime version, target, engine settings). Core
//! modules (the filter) and components (the pipeline component) share the cache.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use anyhow::{Result, anyhow};
use sha2::{Digest, Sha256};
use wasmtime::component::Component;
use wasmtime::{Engine, Module};

/// Loads the filter module `wasm` compiled for `engine`, from `cache_dir` when a matching
/// artifact is there; otherwise compiles it and stores the artifact (best effort: a cache that
/// cannot be written only costs the next start a compile).
pub fn load(engine: &Engine, wasm: &[u8], cache_dir: Option<&Path>) -> Result<Module> {
    load_cached(engine, wasm, cache_dir)
}

/// [`load`] for a component.
pub fn load_component(engine: &Engine, wasm: &[u8], cache_dir: Option<&Path>) -> Result<Component> {
    load_cached(engine, wasm, cache_dir)
}

/// Compiled code that wasmtime can serialize: a [`Module`] or a [`Component`].
trait Compiled: Sized {
    /// What it is, for logs.
    const WHAT: &'static str;
    fn compile(engine: &Engine, wasm: &[u8]) -> wasmtime::Result<Self>;
    /// # Safety
    /// `bytes` must come from `serialize` of this wasmtime build (see [`load_cached`]).
    unsafe fn deserialize(engine: &Engine, bytes: &[u8]) -> wasmtime::Result<Self>;
    fn serialize(&self) -> wasmtime::Result<Vec<u8>>;
}

impl Compiled for Module {
    const WHAT: &'static str = "filter";
    fn compile(engine: &Engine, wasm: &[u8]) -> wasmtime::Result<Self> {
        Module::from_binary(engine, wasm)
    }
    unsafe fn deserialize(engine: &Engine, bytes: &[u8]) -> wasmtime::Result<Self> {
        // SAFETY: as required by the trait.
        unsafe { Module::deserialize(engine, bytes) }
    }
    fn serialize(&self) -> wasmtime::Result<Vec<u8>> {
        Module::serialize(self)
    }
}

impl Compiled for Component {
    const WHAT: &'static str = "component";
    fn compile(engine: &Engine, wasm: &[u8]) -> wasmtime::Result<Self> {
        Component::from_binary(engine, wasm)
    }
    unsafe fn deserialize(engine: &Engine, bytes: &[u8]) -> wasmtime::Result<Self> {
        // SAFETY: as required by the trait.
        unsafe { Component::deserialize(engine, bytes) }
    }
    fn serialize(&self) -> wasmtime::Result<Vec<u8>> {
        Component::serialize(self)
    }
}

fn load_cached<T: Compiled>(engine: &Engine, wasm: &[u8], cache_dir: Option<&Path>) -> Result<T> {
    let what = T::WHAT;
    let Some(dir) = cache_dir else {
        return compile(engine, wasm);
    };
    let path = artifact_path(engine, wasm, dir);
    // Read into memory rather than mmap: a file truncated by someone else while mapped would
    // be a SIGBUS, not an error.
    if let Ok(bytes) = std::fs::read(&path) {
        // SAFETY: the artifact was written by `serialize` of this same wasmtime build (the
        // compatibility hash is part of its name) into the user's own cache directory;
        // wasmtime checks its header, version and kind (module or component) before use.
        match unsafe { T::deserialize(engine, &bytes) } {
            Ok(compiled) => {
                tracing::debug!(path = %path.display(), "loaded precompiled {what}");
                return Ok(compiled);
            }
            Err(e) => {
                tracing::warn!(path = %path.display(), "ignoring unusable precompiled {what}: {e:#}")
            }
        }
    }
    let compiled = compile::<T>(engine, wasm)?;
    if let Err(e) = store(&compiled, &path) {
        tracing::warn!(path = %path.display(), "could not cache the compiled {what}: {e:#}");
    }
    Ok(compiled)
}

fn compile<T: Compiled>(engine: &Engine, wasm: &[u8]) -> Result<T> {
    let started = std::time::Instant::now();
    let what = T::WHAT;
    let compiled = T::compile(engine, wasm).map_err(|e| anyhow!("compiling the {what}: {e:#}"))?;
    return_freed_heap();
    tracing::info!(
        ms = started.elapsed().as_millis() as u64,
        bytes = wasm.len(),
        "compiled the {what}"
    );
    Ok(compiled)
}

/// Gives the heap that compilation used and freed back to the system. Cranelift's working
/// memory (~40 MB for the filter) is freed when it returns, but glibc keeps freed pages in its
/// arenas: without this, a process that compiled the module idled at 69 MB RSS, with it at
/// 42 MB (the rest is the compiler's pages of the binary and a fragmented heap), against the
/// 28 MB of every later start, which loads the cached artifact.
fn return_freed_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free memory of the allocator's arenas; it touches no
    // live allocation and is thread-safe.
    unsafe {
        libc::malloc_trim(0);
    }
}

fn artifact_path(engine: &Engine, wasm: &[u8], dir: &Path) -> PathBuf {
    let mut compat = std::collections::hash_map::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut compat);
    let digest = Sha256::digest(wasm);
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    dir.join(format!("{hex}-{:016x}.cwasm", compat.finish()))
}

fn store<T: Compiled>(compiled: &T, path: &Path) -> Result<()> {
    let dir = path
        .parent()
        .ok_or_else(|| anyhow!("no parent directory"))?;
    std::fs::create_dir_all(dir)?;
    let bytes = compiled.serialize().map_err(|e| anyhow!("{e:#}"))?;
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

/// The default cache directory: `$HEADROOM_CACHE_DIR`, `$XDG_CACHE_HOME/headroom` or
/// `~/.cache/headroom`.
pub fn default_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("HEADROOM_CACHE_DIR") {
        return Some(PathBuf::from(dir));
    }
    if let Some(dir) = std::env::var_os("XDG_CACHE_HOME") {
        return Some(PathBuf::from(dir).join("headroom"));
    }
    std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache").join("headroom"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compiles_once_then_loads_the_artifact_and_survives_a_corrupt_one() {
        let dir = std::env::temp_dir().join(format!("headroom-cache-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let engine = Engine::default();
        let wasm = crate::EMBEDDED_PLUGIN;
        load(&engine, wasm, Some(&dir)).unwrap();
        let artifact = artifact_path(&engine, wasm, &dir);
        let written = std::fs::metadata(&artifact).unwrap().modified().unwrap();
        // Second load: from the artifact, which is left as it was.
        let module = load(&engine, wasm, Some(&dir)).unwrap();
        assert!(
            module
                .exports()
                .any(|e| e.name() == "proxy_abi_version_0_2_1")
        );
        assert_eq!(
            std::fs::metadata(&artifact).unwrap().modified().unwrap(),
            written
        );
        // A corrupt artifact is ignored and replaced by a fresh compile.
        std::fs::write(&artifact, b"not a module").unwrap();
        load(&engine, wasm, Some(&dir)).unwrap();
        assert!(std::fs::metadata(&artifact).unwrap().len() > 1000);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn components_are_cached_beside_modules() {
        let dir = std::env::temp_dir().join(format!(
            "headroom-cache-test-component-{}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        let engine = Engine::default();
        let wasm = crate::EMBEDDED_COMPONENT;
        load_component(&engine, wasm, Some(&dir)).unwrap();
        let artifact = artifact_path(&engine, wasm, &dir);
        let written = std::fs::metadata(&artifact).unwrap().modified().unwrap();
        let component = load_component(&engine, wasm, Some(&dir)).unwrap();
        assert!(
            component
                .component_type()
                .exports(&engine)
                .any(|(name, _)| name.starts_with("headroom:pipeline/compressor"))
        );
        assert_eq!(
            std::fs::metadata(&artifact).unwrap().modified().unwrap(),
            written
        );
        // A module artifact is no component: ignored and replaced.
        load(&engine, crate::EMBEDDED_PLUGIN, Some(&dir)).unwrap();
        let module_artifact = artifact_path(&engine, crate::EMBEDDED_PLUGIN, &dir);
        std::fs::copy(&module_artifact, &artifact).unwrap();
        load_component(&engine, wasm, Some(&dir)).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
    }
}
