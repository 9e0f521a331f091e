//! Conformance of the offline Pod Security checker with the upstream fixture
//! corpus (`kubernetes/pod-security-admission` `test/testdata`, copied to
//! `../shared/corpus/pss/testdata/<level>/v1.<minor>/<pass|fail>/*.yaml`).
//!
//! Target: every `pass/` pod is allowed, and every `fail/` pod is denied by
//! the check its file name names, and by no other check except the documented
//! side effects below.
//!
//! File-name prefix (the file stem without its trailing index) → check ID:
//!
//! | prefix | check ID |
//! |---|---|
//! | `allowprivilegeescalation` | `allowPrivilegeEscalation` |
//! | `apparmorprofile` | `appArmorProfile` |
//! | `capabilities_baseline` | `capabilities_baseline` |
//! | `capabilities_restricted` | `capabilities_restricted` |
//! | `hostnamespaces` | `hostNamespaces` |
//! | `hostpathvolumes` | `hostPathVolumes` |
//! | `hostports` | `hostPorts` |
//! | `hostprobesandhostlifecycle` | `hostProbesAndHostLifecycle` |
//! | `privileged` | `privileged` |
//! | `procmount` | `procMount` |
//! | `procmount_restricted` | `procMount_restricted` |
//! | `restrictedvolumes` | `restrictedVolumes` |
//! | `runasnonroot` | `runAsNonRoot` |
//! | `runasuser` | `runAsUser` |
//! | `seccompprofile_baseline` | `seccompProfile_baseline` |
//! | `seccompprofile_restricted` | `seccompProfile_restricted` |
//! | `selinuxoptions` | `seLinuxOptions` |
//! | `sysctls` | `sysctls` |
//! | `windowshostprocess` | `windowsHostProcess` |
//!
//! In `restricted/` directories the baseline fixtures are generated too
//! (upstream `registerFixtureGenerator` registers baseline generators for
//! restricted). There a baseline check that a restricted check overrides is
//! replaced by it, so the expected check is the overriding one:
//! `hostPathVolumes` → `restrictedVolumes` (all versions),
//! `seccompProfile_baseline` → `seccompProfile_restricted` (v1.19+),
//! `capabilities_baseline` → `capabilities_restricted` (v1.22+),
//! `procMount` → `procMount_restricted` (v1.35+).
//!
//! Documented extra violations, inherent to upstream's fixture generators
//! (upstream only asserts the named check's reason appears in the error):
//! - `windowshostprocess`: the pods set `hostNetwork: true` (HostProcess pods
//!   must use the host network), so they also fail `hostNamespaces`;
//! - `privileged` (restricted): API validation forbids
//!   `allowPrivilegeEscalation: false` on a privileged container, so the
//!   generator leaves it unset and `allowPrivilegeEscalation` fails too;
//! - `allowprivilegeescalation` (restricted, v1.22+): one case removes the
//!   container's whole `securityContext`, so `capabilities_restricted` fails too.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout,
    clippy::print_stderr
)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use kubesafe_guardrails::pss::{Level, PolicyVersion, check};

fn corpus_dir() -> Option<PathBuf> {
    let dir = match std::env::var_os("KUBESAFE_CORPUS") {
        Some(d) => PathBuf::from(d),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/corpus"),
    };
    let pss = dir.join("pss/testdata");
    if pss.is_dir() {
        return Some(pss);
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!(
            "fixture corpus missing at {} (set KUBESAFE_CORPUS)",
            pss.display()
        );
    }
    eprintln!("SKIPPED: fixture corpus missing at {}", pss.display());
    None
}

const PREFIXES: &[(&str, &str)] = &[
    ("allowprivilegeescalation", "allowPrivilegeEscalation"),
    ("apparmorprofile", "appArmorProfile"),
    ("capabilities_baseline", "capabilities_baseline"),
    ("capabilities_restricted", "capabilities_restricted"),
    ("hostnamespaces", "hostNamespaces"),
    ("hostpathvolumes", "hostPathVolumes"),
    ("hostports", "hostPorts"),
    ("hostprobesandhostlifecycle", "hostProbesAndHostLifecycle"),
    ("privileged", "privileged"),
    ("procmount", "procMount"),
    ("procmount_restricted", "procMount_restricted"),
    ("restrictedvolumes", "restrictedVolumes"),
    ("runasnonroot", "runAsNonRoot"),
    ("runasuser", "runAsUser"),
    ("seccompprofile_baseline", "seccompProfile_baseline"),
    ("seccompprofile_restricted", "seccompProfile_restricted"),
    ("selinuxoptions", "seLinuxOptions"),
    ("sysctls", "sysctls"),
    ("windowshostprocess", "windowsHostProcess"),
];

fn expected_check(prefix: &str, level: Level, minor: u32) -> &'static str {
    let id = PREFIXES
        .iter()
        .find(|(p, _)| *p == prefix)
        .map(|(_, id)| *id)
        .unwrap_or_else(|| panic!("unmapped fixture prefix {prefix:?}"));
    if level != Level::Restricted {
        return id;
    }
    match (id, minor) {
        ("hostPathVolumes", _) => "restrictedVolumes",
        ("seccompProfile_baseline", m) if m >= 19 => "seccompProfile_restricted",
        ("capabilities_baseline", m) if m >= 22 => "capabilities_restricted",
        ("procMount", m) if m >= 35 => "procMount_restricted",
        (id, _) => id,
    }
}

fn allowed_extras(prefix: &str, level: Level) -> &'static [&'static str] {
    match (prefix, level) {
        ("windowshostprocess", _) => &["hostNamespaces"],
        ("privileged", Level::Restricted) => &["allowPrivilegeEscalation"],
        ("allowprivilegeescalation", Level::Restricted) => &["capabilities_restricted"],
        _ => &[],
    }
}

#[test]
fn every_fixture_matches_upstream() {
    let Some(root) = corpus_dir() else { return };
    let mut failures = Vec::new();
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    let mut total = 0usize;
    for (level_name, level) in [
        ("baseline", Level::Baseline),
        ("restricted", Level::Restricted),
    ] {
        let mut versions: Vec<_> = std::fs::read_dir(root.join(level_name))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        versions.sort();
        for v in versions {
            let version: PolicyVersion = v.parse().unwrap();
            let minor = version.effective_minor();
            for outcome in ["pass", "fail"] {
                let dir = root.join(level_name).join(&v).join(outcome);
                let mut files: Vec<_> = std::fs::read_dir(&dir)
                    .unwrap()
                    .map(|e| e.unwrap().path())
                    .collect();
                files.sort();
                for file in files {
                    total += 1;
                    *counts
                        .entry(if outcome == "pass" { "pass" } else { "fail" })
                        .or_default() += 1;
                    let rel = file.strip_prefix(&root).unwrap().display().to_string();
                    let text = std::fs::read_to_string(&file).unwrap();
                    let doc: serde_json::Value = match serde_saphyr::from_str(&text) {
                        Ok(d) => d,
                        Err(e) => {
                            failures.push(format!("{rel}: YAML parse error: {e}"));
                            continue;
                        }
                    };
                    let violations = match check(&doc, level, version) {
                        Ok(v) => v,
                        Err(e) => {
                            failures.push(format!("{rel}: check error: {e}"));
                            continue;
                        }
                    };
                    let ids: Vec<&str> = violations.iter().map(|v| v.check).collect();
                    if outcome == "pass" {
                        if !violations.is_empty() {
                            failures.push(format!(
                                "{rel}: expected allowed, denied by {}",
                                violations
                                    .iter()
                                    .map(|v| format!("{}: {v}", v.check))
                                    .collect::<Vec<_>>()
                                    .join("; ")
                            ));
                        }
                        continue;
                    }
                    let stem = file.file_stem().unwrap().to_str().unwrap();
                    let prefix = stem.trim_end_matches(|c: char| c.is_ascii_digit());
                    let want = expected_check(prefix, level, minor);
                    if !ids.contains(&want) {
                        failures.push(format!(
                            "{rel}: expected denial by {want}, got [{}]",
                            ids.join(", ")
                        ));
                        continue;
                    }
                    let extra: Vec<&str> = ids
                        .iter()
                        .copied()
                        .filter(|id| *id != want && !allowed_extras(prefix, level).contains(id))
                        .collect();
                    if !extra.is_empty() {
                        failures.push(format!(
                            "{rel}: denied by {want} as expected, but also by unexpected [{}]",
                            extra.join(", ")
                        ));
                    }
                }
            }
        }
    }
    println!("checked {total} fixtures ({counts:?})");
    assert_eq!(total, 4537, "the corpus should hold 4537 fixtures");
    assert!(
        failures.is_empty(),
        "{} of {total} fixtures disagree with upstream:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
