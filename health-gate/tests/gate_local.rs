//! The gated transaction with command and closure probes on plain files (no
//! simulator): the crate used on its own.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr
)]

mod common;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use common::Events;
use kubesafe_health_gate::outcome::{FailureReason, RestartEvidence};
use kubesafe_health_gate::probe::{CommandProbe, FnProbe, ProbeOutcome, ProbeStatus};
use kubesafe_health_gate::verify::FnVerifier;
use kubesafe_health_gate::{FileReplace, GatePolicy, Outcome, Transaction};

/// Generous deadlines (tests that expect success must pass on a loaded CI
/// machine); tests that expect a failure shorten the change's deadline and
/// keep the rollback's generous.
fn policy() -> GatePolicy {
    GatePolicy::default()
        .deadline(Duration::from_secs(10))
        .settle(Duration::from_millis(50), 2)
        .preflight(Some(Duration::from_secs(5)))
}

/// For a change expected to fail: a short deadline for it, a generous one
/// for its rollback.
fn failing(deadline_ms: u64) -> GatePolicy {
    policy()
        .deadline(Duration::from_millis(deadline_ms))
        .rollback_deadline(Duration::from_secs(10))
}

fn config(dir: &Path, text: &str) -> std::path::PathBuf {
    let p = dir.join("component.yaml");
    std::fs::write(&p, text).unwrap();
    p
}

fn grep_probe(path: &Path, needle: &str) -> CommandProbe {
    CommandProbe::new("grep").arg("-q").arg(needle).arg(path)
}

#[test]
fn command_probe_accepts_a_good_change() {
    let dir = tempfile::tempdir().unwrap();
    let path = config(dir.path(), "mode: safe\nlevel: 1\n");
    let outcome = Transaction::new(
        FileReplace::new(&path, "mode: safe\nlevel: 2\n").restart_expected(false),
        grep_probe(&path, "mode: safe"),
    )
    .policy(policy())
    .run();
    let Outcome::Applied {
        restart: RestartEvidence::Skipped { reason },
        ..
    } = &outcome
    else {
        panic!("{outcome}");
    };
    assert!(reason.contains("caller says"), "{reason}");
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        "mode: safe\nlevel: 2\n"
    );
}

#[test]
fn command_probe_rejects_a_bad_change() {
    let dir = tempfile::tempdir().unwrap();
    let path = config(dir.path(), "mode: safe\n");
    let outcome = Transaction::new(
        FileReplace::new(&path, "mode: reckless\n").restart_expected(false),
        grep_probe(&path, "mode: safe"),
    )
    .policy(failing(600))
    .run();
    let Outcome::RolledBack {
        reason: FailureReason::Unhealthy { last_probe, .. },
        broken_copy,
        ..
    } = &outcome
    else {
        panic!("{outcome}");
    };
    assert_eq!(last_probe.as_ref().unwrap().status, ProbeStatus::Unhealthy);
    assert_eq!(last_probe.as_ref().unwrap().detail, "exit code 1");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "mode: safe\n");
    assert_eq!(
        std::fs::read_to_string(broken_copy.as_ref().unwrap()).unwrap(),
        "mode: reckless\n"
    );
}

#[test]
fn closure_probe_with_the_default_down_then_up_witness() {
    // A change that restarts the component: the closure plays a component
    // that goes down for three polls after the new file appears, then comes
    // back. No witness is given, so the gate uses the down-then-up one.
    let dir = tempfile::tempdir().unwrap();
    let path = config(dir.path(), "replicas: 1\n");
    let probe_path = path.clone();
    let downs = Arc::new(AtomicU32::new(0));
    let d = Arc::clone(&downs);
    let probe = FnProbe::new("restarting component", move |_timeout| {
        let text = std::fs::read_to_string(&probe_path).unwrap();
        if text.contains("replicas: 2") && d.fetch_add(1, Ordering::SeqCst) < 3 {
            return ProbeOutcome::new(
                ProbeStatus::Unreachable,
                "connection refused",
                Duration::ZERO,
            );
        }
        ProbeOutcome::healthy("ok")
    });
    let events = Events::default();
    let outcome = Transaction::new(FileReplace::new(&path, "replicas: 2\n"), probe)
        .policy(policy())
        .on_event(events.sink())
        .run();
    let Outcome::Applied {
        restart: RestartEvidence::Witnessed { evidence },
        ..
    } = &outcome
    else {
        panic!("{outcome}\n{}", events.dump());
    };
    assert!(evidence.contains("went down and came back"), "{evidence}");
    assert!(downs.load(Ordering::SeqCst) >= 3);
}

#[test]
fn restart_that_never_shows_is_rolled_back() {
    // The change should restart the component, but the closure's component
    // never goes down: the health it reports is the old process's.
    let dir = tempfile::tempdir().unwrap();
    let path = config(dir.path(), "replicas: 1\n");
    let outcome = Transaction::new(
        FileReplace::new(&path, "replicas: 2\n"),
        FnProbe::from_result("old process", || Ok(())),
    )
    .policy(failing(400))
    .run();
    // Nothing restarted, so the rollback restores the configuration the
    // original process still runs; its health confirms the rollback.
    let Outcome::RolledBack {
        reason: FailureReason::NotRestarted { .. },
        ..
    } = &outcome
    else {
        panic!("{outcome}");
    };
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "replicas: 1\n");
}

#[test]
fn rollback_that_stays_unhealthy_is_rollback_failed_with_the_backup() {
    let dir = tempfile::tempdir().unwrap();
    let path = config(dir.path(), "mode: safe\n");
    let outcome = Transaction::new(
        FileReplace::new(&path, "mode: reckless\n").restart_expected(false),
        // Healthy for the preflight only, then never again.
        {
            let mut calls = 0;
            FnProbe::new("breaks after preflight", move |_t| {
                calls += 1;
                if calls == 1 {
                    ProbeOutcome::healthy("ok")
                } else {
                    ProbeOutcome::unhealthy("[-]etcd failed: reason withheld")
                }
            })
        },
    )
    // Both fail: short deadlines for both.
    .policy(policy().deadline(Duration::from_millis(600)))
    .run();
    let Outcome::RollbackFailed {
        reason,
        rollback_reason,
        backup,
        broken_copy,
        ..
    } = &outcome
    else {
        panic!("{outcome}");
    };
    assert!(matches!(reason, FailureReason::Unhealthy { .. }));
    assert!(matches!(rollback_reason, FailureReason::Unhealthy { .. }));
    let backup = backup.as_ref().unwrap();
    assert_eq!(std::fs::read_to_string(backup).unwrap(), "mode: safe\n");
    assert!(broken_copy.is_some());
    let text = outcome.to_string();
    assert!(text.starts_with("ROLLBACK FAILED"), "{text}");
    assert!(text.contains(&backup.display().to_string()), "{text}");
}

#[test]
fn closure_verifier_failure_rolls_back() {
    let dir = tempfile::tempdir().unwrap();
    let path = config(dir.path(), "a: 1\n");
    let outcome = Transaction::new(
        FileReplace::new(&path, "a: 2\n").restart_expected(false),
        FnProbe::from_result("fine", || Ok(())),
    )
    .verifier(FnVerifier::new("audit", |_t| {
        Err("setting not effective".to_owned())
    }))
    .policy(policy())
    .run();
    let Outcome::RolledBack {
        reason: FailureReason::VerificationFailed { detail },
        ..
    } = &outcome
    else {
        panic!("{outcome}");
    };
    assert_eq!(detail, "setting not effective");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "a: 1\n");
}

#[test]
fn missing_file_fails_before_anything_changed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("absent.yaml");
    let outcome = Transaction::new(
        FileReplace::new(&path, "x: 1\n"),
        FnProbe::from_result("fine", || Ok(())),
    )
    .policy(policy())
    .run();
    let Outcome::Failed {
        reason: FailureReason::ChangeFailed { error },
        change: None,
        ..
    } = &outcome
    else {
        panic!("{outcome}");
    };
    assert!(error.contains("absent.yaml"), "{error}");
    assert!(!path.exists());
}

#[test]
fn outcome_and_events_serialize_to_stable_json() {
    let dir = tempfile::tempdir().unwrap();
    let path = config(dir.path(), "mode: safe\n");
    let events = Events::default();
    let probe_path = path.clone();
    let outcome = Transaction::new(
        FileReplace::new(&path, "mode: reckless\n").restart_expected(false),
        FnProbe::from_result("mode is safe", move || {
            let t = std::fs::read_to_string(&probe_path).unwrap();
            if t.contains("safe") {
                Ok(())
            } else {
                Err("mode is reckless".to_owned())
            }
        }),
    )
    .policy(failing(200))
    .on_event(events.sink())
    .run();
    insta::assert_json_snapshot!("rolled_back_outcome", outcome, {
        ".timings" => "[timings]",
        ".change.description" => "[description]",
        ".change.target" => "[path]",
        ".broken_copy" => "[path]",
        ".reason.waited_ms" => "[ms]",
        ".reason.longest_healthy_ms" => "[ms]",
        ".reason.last_probe.latency_ms" => "[ms]",
    });
    insta::assert_snapshot!(
        "rolled_back_event_sequence",
        dedup(events.names()).join("\n")
    );
    // Round trip.
    let json = serde_json::to_string(&outcome).unwrap();
    let back: Outcome = serde_json::from_str(&json).unwrap();
    assert_eq!(back.kind(), outcome.kind());
}

/// Consecutive duplicates collapsed (probe events may repeat with timing).
fn dedup(mut v: Vec<String>) -> Vec<String> {
    v.dedup();
    v
}

#[test]
fn a_probe_cut_short_by_the_deadline_does_not_hide_the_last_answer() {
    // The component answers 401 to every full-length probe; the last probe
    // before the deadline gets less time than it needs and times out. The
    // failure must still say "credentials rejected", not "timed out".
    let dir = tempfile::tempdir().unwrap();
    let path = config(dir.path(), "auth: open\n");
    let probe_path = path.clone();
    let full = Duration::from_millis(120);
    let probe = FnProbe::new("auth", move |timeout| {
        let text = std::fs::read_to_string(&probe_path).unwrap();
        if text.contains("open") {
            return ProbeOutcome::healthy("ok");
        }
        if timeout < full {
            std::thread::sleep(timeout);
            return ProbeOutcome::new(ProbeStatus::TimedOut, "no answer", timeout);
        }
        ProbeOutcome::new(ProbeStatus::Unauthorized, "401", Duration::ZERO).with_http_status(401)
    });
    let outcome = Transaction::new(
        FileReplace::new(&path, "auth: strict\n").restart_expected(false),
        probe,
    )
    .policy(failing(500).probe_timeout(full))
    .run();
    let Outcome::RolledBack { reason, .. } = &outcome else {
        panic!("{outcome}");
    };
    assert!(
        matches!(reason, FailureReason::Unauthorized { .. }),
        "{reason}"
    );
}

#[test]
fn a_deadline_shorter_than_the_settle_window_is_a_configuration_error() {
    // The gate could never succeed: it must say so before writing anything,
    // not apply the change, wait, and roll it back.
    let dir = tempfile::tempdir().unwrap();
    let path = config(dir.path(), "a: 1\n");
    let events = Events::default();
    let outcome = Transaction::new(
        FileReplace::new(&path, "a: 2\n").restart_expected(false),
        FnProbe::from_result("fine", || Ok(())),
    )
    .policy(
        policy()
            .deadline(Duration::from_millis(200))
            .settle(Duration::from_secs(1), 1),
    )
    .on_event(events.sink())
    .run();
    let Outcome::Failed {
        reason: FailureReason::InvalidPolicy { error },
        ..
    } = &outcome
    else {
        panic!("{outcome}\n{}", events.dump());
    };
    assert!(error.contains("settle"), "{error}");
    assert!(!events.names().iter().any(|n| n == "apply:written"));
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "a: 1\n");
}

#[test]
fn durations_too_large_for_the_clock_are_rejected_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let path = config(dir.path(), "a: 1\n");
    for p in [
        policy().deadline(Duration::MAX),
        policy().preflight(Some(Duration::MAX)),
        policy().verify_timeout(Duration::MAX),
    ] {
        let outcome = Transaction::new(
            FileReplace::new(&path, "a: 2\n").restart_expected(false),
            FnProbe::from_result("fine", || Ok(())),
        )
        .policy(p)
        .run();
        let Outcome::Failed {
            reason: FailureReason::InvalidPolicy { error },
            ..
        } = &outcome
        else {
            panic!("{outcome}");
        };
        assert!(error.contains("at most"), "{error}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "a: 1\n");
    }
}

#[test]
fn a_component_that_dies_while_the_verifier_runs_is_not_applied() {
    // The verifier can take a minute; health from before it says nothing
    // about the component the change is left running with.
    let dir = tempfile::tempdir().unwrap();
    let path = config(dir.path(), "a: 1\n");
    let died = Arc::new(AtomicU32::new(0));
    let probe_died = Arc::clone(&died);
    let events = Events::default();
    let outcome = Transaction::new(
        FileReplace::new(&path, "a: 2\n").restart_expected(false),
        FnProbe::new("dies during verification", move |_t| {
            if probe_died.load(Ordering::SeqCst) == 0 {
                ProbeOutcome::healthy("ok")
            } else {
                ProbeOutcome::new(
                    ProbeStatus::Unreachable,
                    "connection refused",
                    Duration::ZERO,
                )
            }
        }),
    )
    .verifier(FnVerifier::new("slow audit", move |_t| {
        died.store(1, Ordering::SeqCst);
        Ok("1.2.18 PASS".to_owned())
    }))
    .policy(
        policy()
            .deadline(Duration::from_secs(5))
            .rollback_deadline(Duration::from_millis(300)),
    )
    .on_event(events.sink())
    .run();
    let Outcome::RollbackFailed {
        reason: FailureReason::UnhealthyAfterVerification { last_probe },
        ..
    } = &outcome
    else {
        panic!("{outcome}\n{}", events.dump());
    };
    assert_eq!(
        last_probe.as_ref().unwrap().status,
        ProbeStatus::Unreachable
    );
}

/// A witness that sees a different restarted process at every poll (each
/// lives shorter than a poll interval and is replaced at once).
struct ReplacedEveryPoll(u32);

impl kubesafe_health_gate::witness::RestartWitness for ReplacedEveryPoll {
    fn describe(&self) -> String {
        "replaced every poll".to_owned()
    }
    fn prepare(
        &mut self,
        _ctx: &kubesafe_health_gate::witness::WitnessContext<'_>,
    ) -> Result<(), kubesafe_health_gate::WitnessError> {
        Ok(())
    }
    fn observe(&mut self, _probe: &ProbeOutcome) -> kubesafe_health_gate::witness::WitnessState {
        self.0 += 1;
        kubesafe_health_gate::witness::WitnessState::Witnessed {
            evidence: format!("pid {} started after the write", 1000 + self.0),
        }
    }
}

#[test]
fn the_settle_window_is_health_of_one_restarted_process() {
    // Healthy at every poll, but never the same process twice: no process
    // stayed up for the settle window, so the change must not pass.
    let dir = tempfile::tempdir().unwrap();
    let path = config(dir.path(), "a: 1\n");
    let outcome = Transaction::new(
        FileReplace::new(&path, "a: 2\n").restart_expected(true),
        FnProbe::from_result("fine", || Ok(())),
    )
    .witness(ReplacedEveryPoll(0))
    .policy(
        policy()
            .deadline(Duration::from_millis(600))
            .rollback_deadline(Duration::from_millis(300))
            .settle(Duration::from_millis(200), 2),
    )
    .run();
    // (The rollback meets the same witness and cannot settle either.)
    assert!(!outcome.is_applied(), "{outcome}");
    assert!(
        matches!(outcome.reason(), Some(FailureReason::Unhealthy { .. })),
        "{outcome}"
    );
}
