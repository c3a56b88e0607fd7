//! Test support: upstream Headroom's parity fixtures, read from the directory named by
//! `HEADROOM_UPSTREAM_FIXTURES`, else from `../shared/headroom-fixtures` beside the checkout
//! (where CI and the team keep it: a developer run must not skip what CI runs). Without
//! either the fixture tests say they are skipped and pass.

use std::path::PathBuf;

/// The parity fixture directory of `transform`, or `None` (after saying so) when not
/// configured.
pub fn dir(transform: &str) -> Option<PathBuf> {
    under(&format!("tests/parity/fixtures/{transform}"))
}

/// The directory `relative` inside the fixtures, or `None` (after saying so) when not
/// configured.
pub fn under(relative: &str) -> Option<PathBuf> {
    let beside = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/headroom-fixtures");
    let Some(root) = std::env::var_os("HEADROOM_UPSTREAM_FIXTURES")
        .map(PathBuf::from)
        .or_else(|| beside.is_dir().then_some(beside))
    else {
        println!("skipped: HEADROOM_UPSTREAM_FIXTURES is not set ({relative})");
        return None;
    };
    let dir = root.join(relative);
    if !dir.is_dir() {
        println!("skipped: {} does not exist", dir.display());
        return None;
    }
    Some(dir)
}

/// Every `*.json` case in `dir`, sorted by file name.
pub fn load(dir: &std::path::Path) -> Vec<(String, serde_json::Value)> {
    let mut names: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|entries| entries.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    names.retain(|p| p.extension().is_some_and(|e| e == "json"));
    names.sort();
    names
        .into_iter()
        .filter_map(|path| {
            let text = std::fs::read_to_string(&path).ok()?;
            let value = serde_json::from_str(&text).ok()?;
            Some((path.file_name()?.to_string_lossy().into_owned(), value))
        })
        .collect()
}
