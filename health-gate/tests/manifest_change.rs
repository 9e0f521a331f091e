//! `ManifestChange` (feature `manifest-edit`) gated against the node
//! simulator: a real HTTPS server run as a separate process by a
//! kubelet-like watcher of the manifest.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr
)]

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Bed, Events, policy};
use kubesafe_health_gate::outcome::{EventKind, FailureReason, Phase, RestartEvidence};
use kubesafe_health_gate::probe::{FnProbe, HealthProbe};
use kubesafe_health_gate::{ManifestChange, Outcome, Transaction};
use kubesafe_manifest_edit::{Edit, Error as EditError, FileOptions, ManifestFile};

fn backups(bed: &Bed) -> Vec<std::path::PathBuf> {
    let dir = bed.node.dir().join("kubesafe-backups");
    let mut v: Vec<_> = match std::fs::read_dir(dir) {
        Ok(entries) => entries.map(|e| e.unwrap().path()).collect(),
        Err(_) => Vec::new(),
    };
    v.sort();
    v
}

#[test]
fn healthy_manifest_edit_is_applied_and_holds_the_lock_through_the_gate() {
    let bed = Bed::start(|b| b);
    let old_pid = bed.node.kubelet().status().pid.unwrap();
    let original = bed.manifest();
    let change = ManifestChange::open(
        bed.node.manifest_path(),
        Edit::new()
            .set_flag("--profiling", "false")
            .list_add("--enable-admission-plugins", "NodeRestriction"),
    )
    .unwrap();
    // While the gate runs, another kubesafe writer (`kubesafe edit`) is
    // locked out.
    let editor = ManifestFile::open(
        bed.node.manifest_path(),
        FileOptions::default().lock_timeout(Duration::from_millis(50)),
    )
    .unwrap();
    let locked_out = Arc::new(Mutex::new(None));
    let seen = Arc::clone(&locked_out);
    let events = Events::default();
    let mut sink = events.sink();
    let outcome = Transaction::new(change, bed.probe())
        .witness(bed.witness())
        .policy(policy())
        .on_event(move |e| {
            sink(e);
            if e.phase == Phase::Apply && matches!(e.kind, EventKind::SettleStarted) {
                let r = editor.apply(&Edit::new().set_flag("--profiling", "true"));
                *seen.lock().unwrap() = Some(matches!(r, Err(EditError::LockTimeout { .. })));
            }
        })
        .run();
    let Outcome::Applied {
        restart,
        change,
        backup,
        ..
    } = &outcome
    else {
        panic!("{outcome}\n{}", events.dump());
    };
    let RestartEvidence::Witnessed { evidence } = restart else {
        panic!("{restart:?}");
    };
    assert!(evidence.contains("--profiling=false"), "{evidence}");
    assert!(
        evidence.contains("--enable-admission-plugins=NodeRestriction"),
        "{evidence}"
    );
    assert_eq!(change.apply_flags.len(), 2, "{change:?}");
    assert_eq!(*locked_out.lock().unwrap(), Some(true), "{}", events.dump());
    // The new process carries the flags; the old one is gone.
    assert_ne!(bed.node.kubelet().status().pid, Some(old_pid));
    let argv = bed.running_argv();
    assert!(argv.contains(&"--profiling=false".to_owned()), "{argv:?}");
    // The backup (outside the manifest directory) holds the original bytes.
    let backup = backup.as_ref().unwrap();
    assert!(backup.starts_with(bed.node.dir().join("kubesafe-backups")));
    assert_eq!(std::fs::read_to_string(backup).unwrap(), original);
    assert!(bed.manifest().contains("    - --profiling=false\n"));
    // The lock was released with the transaction.
    drop(
        ManifestFile::open(bed.node.manifest_path(), FileOptions::default())
            .unwrap()
            .lock_exclusive()
            .unwrap(),
    );
}

#[test]
fn crash_looping_edit_is_rolled_back_to_the_identical_bytes() {
    // Each server lives 300 ms before it reads the audit policy (so the
    // witness sees the crash loop), as a real one takes a while to start.
    let bed = Bed::start(|b| b.args(["--sim-startup-delay=300ms"]));
    let original = std::fs::read(bed.node.manifest_path()).unwrap();
    let missing = bed.node.dir().join("audit/policy.yaml");
    let change = ManifestChange::open(
        bed.node.manifest_path(),
        Edit::new().set_flag("--audit-policy-file", missing.to_str().unwrap()),
    )
    .unwrap();
    let events = Events::default();
    let outcome = Transaction::new(change, bed.probe())
        .witness(bed.witness())
        .policy(policy().deadline(Duration::from_secs(15)))
        .on_event(events.sink())
        .run();
    let Outcome::RolledBack {
        reason,
        broken_copy,
        ..
    } = &outcome
    else {
        panic!("{outcome}\n{}", events.dump());
    };
    eprintln!("rolled back: {reason}");
    // A crash loop, unless the machine is so loaded that the witness missed
    // the short-lived processes (then the deadline catches it).
    assert!(
        matches!(
            reason,
            FailureReason::CrashLoop { .. }
                | FailureReason::NotRestarted { .. }
                | FailureReason::Unhealthy { .. }
        ),
        "{reason}"
    );
    assert_eq!(
        std::fs::read(bed.node.manifest_path()).unwrap(),
        original,
        "the manifest is byte-identical to before"
    );
    let broken = broken_copy.as_ref().unwrap();
    assert!(broken.starts_with(bed.node.dir().join("kubesafe-backups")));
    assert!(
        std::fs::read_to_string(broken)
            .unwrap()
            .contains("--audit-policy-file="),
        "{broken:?}"
    );
    // The old configuration is back, running and healthy.
    bed.node
        .wait_until_healthy(Duration::from_secs(10))
        .unwrap();
    assert!(
        !bed.running_argv()
            .iter()
            .any(|a| a.starts_with("--audit-policy-file"))
    );
}

#[test]
fn comment_only_edit_is_applied_without_waiting_for_a_restart() {
    let bed = Bed::start(|b| b.args(["--profiling=true"]));
    // A reviewer's note on the last flag; the kubelet does not restart for it.
    let text = bed.manifest().replace(
        "- --profiling=true\n",
        "- --profiling=true   # TODO: CIS 1.2.18\n",
    );
    let tmp = bed
        .node
        .dir()
        .join("manifests/.kube-apiserver.yaml.editor-tmp");
    std::fs::write(&tmp, &text).unwrap();
    std::fs::rename(&tmp, bed.node.manifest_path()).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    bed.node
        .wait_until_healthy(Duration::from_secs(10))
        .unwrap();
    let before = bed.node.kubelet().status();
    // Rewriting the flag drops its comment: a change of bytes, not of the pod.
    let change = ManifestChange::open(
        bed.node.manifest_path(),
        Edit::new()
            .remove_flag("--profiling")
            .set_flag("--profiling", "true"),
    )
    .unwrap();
    let events = Events::default();
    let outcome = Transaction::new(change, bed.probe())
        .witness(bed.witness())
        .policy(policy().settle(Duration::from_millis(200), 2))
        .on_event(events.sink())
        .run();
    let Outcome::Applied {
        restart: RestartEvidence::Skipped { reason },
        ..
    } = &outcome
    else {
        panic!("{outcome}\n{}", events.dump());
    };
    assert!(reason.contains("only comments"), "{reason}");
    assert!(events.names().iter().any(|n| n == "apply:witness_skipped"));
    assert!(
        outcome.timings().total < Duration::from_secs(5),
        "did not wait for a restart: {:?}",
        outcome.timings().total
    );
    assert_eq!(bed.manifest(), text.replace("   # TODO: CIS 1.2.18", ""));
    std::thread::sleep(Duration::from_millis(200));
    let after = bed.node.kubelet().status();
    assert_eq!(after.pid, before.pid);
    assert_eq!(after.starts, before.starts);
}

#[test]
fn concurrent_modification_between_plan_and_apply_fails_with_nothing_changed() {
    let bed = Bed::start(|b| b);
    let before = bed.node.kubelet().status();
    let theirs = format!("# edited by someone else meanwhile\n{}", bed.manifest());
    let change = ManifestChange::open(
        bed.node.manifest_path(),
        Edit::new().set_flag("--profiling", "false"),
    )
    .unwrap();
    // The preflight runs between plan and apply: another writer (not using
    // the lock, like an editor) changes the file then.
    let mut http = bed.probe();
    let path = bed.node.manifest_path().to_owned();
    let write = theirs.clone();
    let mut first = true;
    let probe = FnProbe::new("readyz, after another writer's edit", move |timeout| {
        if std::mem::take(&mut first) {
            // Atomically (hidden temp file, rename), as a careful editor does: a
            // plain truncate-and-write could show the kubelet a partial pod.
            let tmp = path.with_file_name(".kube-apiserver.yaml.editor-tmp");
            std::fs::write(&tmp, &write).unwrap();
            std::fs::rename(&tmp, &path).unwrap();
        }
        http.check(timeout)
    });
    let outcome = Transaction::new(change, probe)
        .witness(bed.witness())
        .policy(policy())
        .run();
    let Outcome::Failed {
        reason: FailureReason::ChangeFailed { error },
        ..
    } = &outcome
    else {
        panic!("{outcome}");
    };
    assert!(error.contains("modified by someone else"), "{error}");
    assert_eq!(bed.manifest(), theirs, "their edit is intact");
    assert!(backups(&bed).is_empty(), "{:?}", backups(&bed));
    let after = bed.node.kubelet().status();
    assert_eq!(after.pid, before.pid);
}
