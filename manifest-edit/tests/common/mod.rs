//! Helpers shared by the integration tests.
#![allow(dead_code, unreachable_pub, missing_docs)]

use std::path::PathBuf;

/// The corpus directory: `$KUBESAFE_CORPUS`, else `<workspace>/../shared/corpus`.
/// `None` (after printing a notice) when it is missing outside CI; a panic under `CI=true`.
pub fn corpus_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("KUBESAFE_CORPUS").map_or_else(
        || PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/corpus")),
        PathBuf::from,
    );
    if dir.join("manifests").is_dir() {
        return Some(dir);
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!(
            "corpus not found at {} (set KUBESAFE_CORPUS); CI=true forbids skipping",
            dir.display()
        );
    }
    eprintln!(
        "NOTICE: corpus not found at {}; skipping (set KUBESAFE_CORPUS)",
        dir.display()
    );
    None
}

/// The corpus manifests, sorted by file name.
pub fn corpus_files() -> Option<Vec<PathBuf>> {
    let dir = corpus_dir()?.join("manifests");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("read corpus dir")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    Some(files)
}
