//! `Manifest::apply` verifies most flag edits by re-parsing only the changed lines (the
//! crate docs, "Verification"); `ManifestFile` verifies every edit by parsing the whole
//! text. On every flag of every real manifest of the corpus, single and chained
//! operations must give the same result both ways, and the edited manifest must read back
//! exactly as a fresh parse of its text does (values and line numbers, which come from
//! the tree's spans). Unlike the debug-build cross-check inside the crate, this holds in
//! release builds too.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr
)]

mod common;

use std::collections::BTreeSet;

use kubesafe_manifest_edit::{Backup, Edit, FileOptions, Manifest, ManifestFile};

/// Every `--name` written in the text (a superset of the container's flags).
fn flag_names(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (i, _) in text.match_indices("--") {
        let name: String = text[i + 2..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            .collect();
        if name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric())
        {
            out.insert(name);
        }
    }
    out
}

/// What the default container's flags read as (value and line, or the error).
fn read_all(m: &Manifest, names: &BTreeSet<String>) -> Vec<String> {
    names
        .iter()
        .map(|n| match m.get_flag(None, n) {
            Ok(v) => format!("{n}: {v:?}"),
            Err(e) => format!("{n}: error {e}"),
        })
        .collect()
}

#[test]
fn window_and_full_verification_agree_on_the_corpus() {
    let Some(files) = common::corpus_files() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let (mut edits, mut compared) = (0usize, 0usize);
    for path in &files {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let bytes = std::fs::read(path).unwrap();
        // Both sides name the same file in their errors.
        let dir = tmp.path().join(name.trim_end_matches(".yaml"));
        std::fs::create_dir_all(&dir).unwrap();
        let copy = dir.join(&name);
        std::fs::write(&copy, &bytes).unwrap();
        let Ok(m) = Manifest::from_bytes(&copy, bytes) else {
            continue; // INVALID-* and non-UTF-8 files: covered by the corpus snapshots
        };
        if m.default_container().is_err() {
            continue; // not a Pod, or no single component container
        }
        let file = ManifestFile::open(&copy, FileOptions::new().backup(Backup::Disabled)).unwrap();

        let mut names = flag_names(m.text());
        let present: Vec<String> = names
            .iter()
            .filter(|n| matches!(m.get_flag(None, n), Ok(Some(_))))
            .cloned()
            .collect();
        names.insert("kubesafe-new".to_owned());

        let mut batch: Vec<Edit> = vec![Edit::new().set_flag("--kubesafe-new", "1")];
        for f in &present {
            batch.push(Edit::new().set_flag(f, "kubesafe-x"));
            batch.push(Edit::new().remove_flag(f));
            // List operations on the flags holding comma lists (on others they are a set).
            let value = m.get_flag(None, f).ok().flatten().and_then(|v| v.value);
            if value.is_some_and(|v| v.contains(',') || f.ends_with("-plugins")) {
                batch.push(Edit::new().list_add(f, "KubesafeX"));
                batch.push(Edit::new().list_remove(f, "NodeRestriction"));
            }
        }
        // Chained operations: each one splices by the spans the previous one produced.
        let mut chain = Edit::new().set_flag("--kubesafe-new", "1");
        for (i, f) in present.iter().enumerate() {
            chain = match i % 3 {
                0 => chain.set_flag(f, "it's # not a comment"),
                1 => chain.remove_flag(f),
                _ => chain.list_add(f, "KubesafeY"),
            };
        }
        batch.push(
            chain
                .remove_flag("--kubesafe-new")
                .set_flag("--kubesafe-last", "x: y"),
        );
        names.insert("kubesafe-last".to_owned());

        for edit in &batch {
            edits += 1;
            let window = m.apply(edit);
            let full = file.dry_run(edit);
            let full_in_memory = m.apply_full_reparse(edit);
            assert_eq!(
                window
                    .as_ref()
                    .map(|w| w.manifest.text())
                    .map_err(ToString::to_string),
                full_in_memory
                    .as_ref()
                    .map(|w| w.manifest.text())
                    .map_err(ToString::to_string),
                "{name}: {edit:?}"
            );
            match (&window, &full) {
                (Ok(w), Ok(f)) => {
                    assert_eq!(
                        w.manifest.text().as_bytes(),
                        f.new_content,
                        "{name}: {edit:?}"
                    );
                    assert_eq!(w.data_changed, f.data_changed, "{name}: {edit:?}");
                    let fresh = Manifest::parse_named(&copy, w.manifest.text()).unwrap();
                    assert_eq!(
                        read_all(&w.manifest, &names),
                        read_all(&fresh, &names),
                        "{name}: {edit:?}"
                    );
                    assert!(w.manifest.data_eq(&fresh), "{name}: {edit:?}");
                    compared += 1;
                }
                (Err(w), Err(f)) => assert_eq!(w.to_string(), f.to_string(), "{name}: {edit:?}"),
                _ => panic!(
                    "{name}: {edit:?}: window {window:?} vs full {:?}",
                    full.map(|_| ())
                ),
            }
        }
    }
    eprintln!("{edits} edits, {compared} compared");
    assert!(compared > 500, "{edits} edits, {compared} compared");
}
