//! The gated transaction against the node simulator: a real HTTPS server run
//! as a separate process by a kubelet-like watcher of the manifest.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr
)]

mod common;

use std::time::{Duration, Instant};

use common::{Bed, Events, policy};
use kubesafe_health_gate::outcome::{FailureReason, RestartEvidence};
use kubesafe_health_gate::probe::HttpProbe;
use kubesafe_health_gate::simulator::StopSignal;
use kubesafe_health_gate::verify::CommandVerifier;
use kubesafe_health_gate::witness::HealthTransitionWitness;
use kubesafe_health_gate::{FileReplace, Outcome, Transaction};

#[test]
fn healthy_change_is_applied_after_the_witnessed_restart() {
    let bed = Bed::start(|b| b);
    let old_pid = bed.node.kubelet().status().pid.unwrap();
    let new = bed
        .node
        .manifest_with(&["--anonymous-auth=false", "--profiling=false"]);
    let events = Events::default();
    let outcome = Transaction::new(
        FileReplace::new(bed.node.manifest_path(), new.clone()),
        bed.probe(),
    )
    .witness(bed.witness())
    .policy(policy())
    .on_event(events.sink())
    .run();
    let Outcome::Applied {
        restart,
        change,
        backup,
        timings,
    } = &outcome
    else {
        panic!("{outcome}\n{}", events.dump());
    };
    let RestartEvidence::Witnessed { evidence } = restart else {
        panic!("{restart:?}");
    };
    assert!(evidence.contains("--anonymous-auth=false"), "{evidence}");
    assert_eq!(change.apply_flags.len(), 2, "{change:?}");
    // The running process is a new one and carries the flags.
    let status = bed.node.kubelet().status();
    assert_ne!(status.pid, Some(old_pid));
    let argv = bed.running_argv();
    assert!(
        argv.contains(&"--anonymous-auth=false".to_owned()),
        "{argv:?}"
    );
    assert_eq!(bed.manifest(), new);
    assert!(backup.as_ref().unwrap().exists());
    let apply = timings.apply.as_ref().unwrap();
    assert!(apply.witnessed.unwrap() <= apply.settled.unwrap());
    assert!(
        apply.settled.unwrap() >= Duration::from_millis(300),
        "settle window honoured"
    );
    let names = events.names();
    for expected in [
        "preflight:planned",
        "preflight:preflight_passed",
        "apply:written",
        "apply:settled",
        "apply:finished",
    ] {
        assert!(
            names.iter().any(|n| n == expected),
            "{expected} missing from {names:?}"
        );
    }
    // Events and outcome are JSON.
    let json = serde_json::to_value(&outcome).unwrap();
    assert_eq!(json["outcome"], "applied");
}

#[test]
fn change_that_never_comes_up_is_rolled_back_to_the_original_bytes() {
    let bed = Bed::start(|b| b);
    let original = bed.manifest();
    let new = bed.node.manifest_with(&["--sim-fault=crash"]);
    let outcome = Transaction::new(
        FileReplace::new(bed.node.manifest_path(), new.clone()),
        bed.probe(),
    )
    .witness(bed.witness())
    .policy(
        policy()
            .deadline(Duration::from_secs(3))
            .rollback_deadline(Duration::from_secs(15)),
    )
    .run();
    let Outcome::RolledBack {
        reason,
        broken_copy,
        ..
    } = &outcome
    else {
        panic!("{outcome}");
    };
    // Depending on whether a poll caught one of the short-lived processes:
    // never restarted, restarted but never healthy, or a crash loop.
    assert!(
        matches!(
            reason,
            FailureReason::NotRestarted { .. }
                | FailureReason::Unhealthy { .. }
                | FailureReason::CrashLoop { .. }
        ),
        "{reason}"
    );
    assert_eq!(
        bed.manifest(),
        original,
        "the manifest is the original bytes"
    );
    let broken = broken_copy.as_ref().unwrap();
    assert_eq!(std::fs::read_to_string(broken).unwrap(), new);
    assert!(
        broken
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with('.')
    );
    // The old configuration is back and healthy.
    bed.node.wait_until_healthy(Duration::from_secs(5)).unwrap();
    assert!(
        !bed.running_argv()
            .iter()
            .any(|a| a.starts_with("--sim-fault"))
    );
}

#[test]
fn crash_loop_fails_early_instead_of_waiting_for_the_deadline() {
    let bed = Bed::start(|b| b);
    // Each process lives 300 ms before exiting, long enough to be seen.
    let new = bed
        .node
        .manifest_with(&["--sim-startup-delay=300ms", "--sim-fault=crash"]);
    let started = Instant::now();
    let outcome = Transaction::new(FileReplace::new(bed.node.manifest_path(), new), bed.probe())
        .witness(bed.witness())
        .policy(policy().deadline(Duration::from_secs(30)))
        .run();
    let Outcome::RolledBack {
        reason: FailureReason::CrashLoop { restarts, .. },
        ..
    } = &outcome
    else {
        panic!("{outcome}");
    };
    assert!(*restarts >= 3);
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn up_then_crash_is_rolled_back_thanks_to_the_settle_window() {
    // Control: with the smallest settle window the gate accepts the change
    // during the two seconds the server is up — the danger the window removes.
    let control = Bed::start(|b| b);
    let new = control.node.manifest_with(&["--sim-fault=die-after=2s"]);
    let outcome = Transaction::new(
        FileReplace::new(control.node.manifest_path(), new),
        control.probe(),
    )
    .witness(control.witness())
    .policy(policy().settle(Duration::ZERO, 1))
    .run();
    assert!(outcome.is_applied(), "control: {outcome}");

    let bed = Bed::start(|b| b);
    let original = bed.manifest();
    let new = bed.node.manifest_with(&["--sim-fault=die-after=2s"]);
    let outcome = Transaction::new(FileReplace::new(bed.node.manifest_path(), new), bed.probe())
        .witness(bed.witness())
        .policy(policy().settle(Duration::from_secs(3), 3))
        .run();
    let Outcome::RolledBack { reason, .. } = &outcome else {
        panic!("{outcome}");
    };
    assert!(
        matches!(
            reason,
            FailureReason::CrashLoop { .. } | FailureReason::Unhealthy { .. }
        ),
        "{reason}"
    );
    assert_eq!(bed.manifest(), original);
}

#[test]
fn old_process_answering_ok_does_not_pass_the_gate() {
    // The kubelet takes 2.5 s to act on the change: the old process keeps
    // answering `ok` meanwhile.
    let sync = Duration::from_millis(2500);
    let slow = |b: kubesafe_health_gate::simulator::SimNodeBuilder| b.sync_delay(sync);

    // Control: without the witness requirement, a broken change passes on
    // the old process.
    let control = Bed::start(slow);
    let new = control.node.manifest_with(&["--sim-fault=crash"]);
    let outcome = Transaction::new(
        FileReplace::new(control.node.manifest_path(), new),
        control.probe(),
    )
    .policy(
        policy()
            .require_restart_witness(false)
            .settle(Duration::ZERO, 1),
    )
    .run();
    assert!(outcome.is_applied(), "control: {outcome}");
    assert!(
        outcome.timings().total < sync,
        "{:?}",
        outcome.timings().total
    );

    // With the witness, the same broken change is rolled back.
    let bed = Bed::start(slow);
    let original = bed.manifest();
    let new = bed.node.manifest_with(&["--sim-fault=crash"]);
    let outcome = Transaction::new(FileReplace::new(bed.node.manifest_path(), new), bed.probe())
        .witness(bed.witness())
        .policy(
            policy()
                .deadline(Duration::from_secs(5))
                .rollback_deadline(Duration::from_secs(15))
                .settle(Duration::ZERO, 1),
        )
        .run();
    assert!(matches!(outcome, Outcome::RolledBack { .. }), "{outcome}");
    assert_eq!(bed.manifest(), original);

    // And a good change is only accepted after the kubelet acted.
    let good = Bed::start(slow);
    let new = good.node.manifest_with(&["--profiling=false"]);
    let outcome = Transaction::new(
        FileReplace::new(good.node.manifest_path(), new),
        good.probe(),
    )
    .witness(good.witness())
    .policy(policy().settle(Duration::ZERO, 1))
    .run();
    assert!(outcome.is_applied(), "{outcome}");
    let witnessed = outcome.timings().apply.as_ref().unwrap().witnessed.unwrap();
    assert!(witnessed >= sync, "{witnessed:?}");
}

#[test]
fn down_then_up_witness_also_rejects_the_old_process() {
    // The server is down for at least the 300 ms restart delay: longer than
    // the 100 ms polling cap, so the down phase cannot be missed.
    let bed = Bed::start(|b| {
        b.sync_delay(Duration::from_millis(800))
            .restart_delay(Duration::from_millis(300))
    });
    let new = bed.node.manifest_with(&["--profiling=false"]);
    let outcome = Transaction::new(FileReplace::new(bed.node.manifest_path(), new), bed.probe())
        .witness(HealthTransitionWitness::new())
        .policy(policy())
        .run();
    assert!(outcome.is_applied(), "{outcome}");
    let witnessed = outcome.timings().apply.as_ref().unwrap().witnessed.unwrap();
    assert!(witnessed >= Duration::from_millis(800), "{witnessed:?}");
}

#[test]
fn hanging_server_does_not_stall_the_gate_past_its_deadline() {
    let bed = Bed::start(|b| b);
    let original = bed.manifest();
    let new = bed.node.manifest_with(&["--sim-fault=hang"]);
    let deadline = Duration::from_secs(2);
    let outcome = Transaction::new(FileReplace::new(bed.node.manifest_path(), new), bed.probe())
        .witness(bed.witness())
        // Per-probe timeout larger than the deadline: the gate must cut it.
        .policy(
            policy()
                .deadline(deadline)
                .probe_timeout(Duration::from_secs(30)),
        )
        .run();
    let Outcome::RolledBack {
        reason, timings, ..
    } = &outcome
    else {
        panic!("{outcome}");
    };
    let gave_up = timings.apply.as_ref().unwrap().gave_up.unwrap();
    // Far below the 30 s probe timeout: the deadline cut the probe short.
    assert!(
        gave_up >= deadline && gave_up < deadline + Duration::from_secs(3),
        "{gave_up:?}"
    );
    let FailureReason::Unhealthy { last_probe, .. } = reason else {
        panic!("{reason}");
    };
    assert_eq!(
        last_probe.as_ref().unwrap().status,
        kubesafe_health_gate::probe::ProbeStatus::TimedOut
    );
    assert_eq!(bed.manifest(), original);
}

#[test]
fn rollback_that_cannot_come_back_is_reported_with_the_backup() {
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit-policy.yaml");
    std::fs::write(
        &audit,
        "apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: Metadata\n",
    )
    .unwrap();
    let arg = format!("--audit-policy-file={}", audit.display());
    let bed = Bed::start(|b| b.args([arg]));
    let original = bed.manifest();
    // The running server loaded the policy at startup; the file is gone now,
    // so the old configuration cannot start again either.
    std::fs::remove_file(&audit).unwrap();
    let new = bed.node.manifest_with(&["--sim-fault=crash"]);
    let outcome = Transaction::new(
        FileReplace::new(bed.node.manifest_path(), new.clone()),
        bed.probe(),
    )
    .witness(bed.witness())
    .policy(policy().deadline(Duration::from_secs(2)))
    .run();
    let Outcome::RollbackFailed {
        backup,
        broken_copy,
        rollback_reason,
        ..
    } = &outcome
    else {
        panic!("{outcome}");
    };
    let backup = backup.as_ref().expect("backup path");
    assert_eq!(std::fs::read_to_string(backup).unwrap(), original);
    assert_eq!(
        std::fs::read_to_string(broken_copy.as_ref().unwrap()).unwrap(),
        new
    );
    assert!(
        matches!(
            rollback_reason,
            FailureReason::NotRestarted { .. }
                | FailureReason::Unhealthy { .. }
                | FailureReason::CrashLoop { .. }
        ),
        "{rollback_reason}"
    );
    assert_eq!(bed.manifest(), original, "the rollback was written");
    assert!(outcome.to_string().contains(&backup.display().to_string()));
    let log = bed.logs();
    assert!(log.contains("loading audit policy file"), "{log}");
}

#[test]
fn anonymous_auth_false_with_client_credentials_is_applied() {
    // This kubelet stops servers with SIGTERM and a grace period.
    let bed = Bed::start(|b| {
        b.stop_signal(StopSignal::Term {
            grace: Duration::from_secs(1),
        })
    });
    let new = bed.node.manifest_with(&["--anonymous-auth=false"]);
    let outcome = Transaction::new(FileReplace::new(bed.node.manifest_path(), new), bed.probe())
        .witness(bed.witness())
        .policy(policy())
        .run();
    assert!(outcome.is_applied(), "{outcome}");

    // The same change probed anonymously: rolled back, and the reason says
    // the credentials were rejected, not that the server is unhealthy.
    let bed = Bed::start(|b| b);
    let new = bed.node.manifest_with(&["--anonymous-auth=false"]);
    let anonymous = HttpProbe::builder(bed.node.url("/readyz"))
        .ca_file(&bed.node.pki().ca_cert)
        .build()
        .unwrap();
    let outcome = Transaction::new(FileReplace::new(bed.node.manifest_path(), new), anonymous)
        .witness(bed.witness())
        .policy(policy().deadline(Duration::from_secs(5)))
        .run();
    let Outcome::RolledBack { reason, .. } = &outcome else {
        panic!("{outcome}");
    };
    assert!(
        matches!(reason, FailureReason::Unauthorized { .. }),
        "{reason}"
    );
    assert!(
        reason.to_string().contains("credentials were rejected"),
        "{reason}"
    );
}

#[test]
fn comment_only_change_is_applied_without_waiting_for_a_restart() {
    let bed = Bed::start(|b| b);
    let before = bed.node.kubelet().status();
    let new = format!("# reviewed: CIS 1.2.x\n{}", bed.manifest());
    let events = Events::default();
    let outcome = Transaction::new(
        FileReplace::new(bed.node.manifest_path(), new.clone()),
        bed.probe(),
    )
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
    assert!(reason.contains("only comments or formatting"), "{reason}");
    assert!(events.names().iter().any(|n| n == "apply:witness_skipped"));
    // (Waiting for a restart would have ended NotRestarted at the deadline.)
    assert!(
        outcome.timings().total < Duration::from_secs(6),
        "{:?}",
        outcome.timings().total
    );
    assert_eq!(bed.manifest(), new);
    // The kubelet did not restart the server.
    std::thread::sleep(Duration::from_millis(200));
    let after = bed.node.kubelet().status();
    assert_eq!(after.pid, before.pid);
    assert_eq!(after.starts, before.starts);
}

#[test]
fn failing_verification_rolls_back() {
    let bed = Bed::start(|b| b);
    let original = bed.manifest();
    let new = bed.node.manifest_with(&["--profiling=false"]);
    let outcome = Transaction::new(FileReplace::new(bed.node.manifest_path(), new), bed.probe())
        .witness(bed.witness())
        .verifier(CommandVerifier::shell(
            "echo '[FAIL] 1.2.18 profiling still on' >&2; exit 1",
        ))
        .policy(policy())
        .run();
    let Outcome::RolledBack {
        reason: FailureReason::VerificationFailed { detail },
        ..
    } = &outcome
    else {
        panic!("{outcome}");
    };
    assert!(detail.contains("[FAIL] 1.2.18"), "{detail}");
    assert_eq!(bed.manifest(), original);
    bed.node.wait_until_healthy(Duration::from_secs(5)).unwrap();
}

#[test]
fn unhealthy_component_fails_the_preflight_with_nothing_changed() {
    let bed = Bed::start_unready(|b| b.args(["--sim-fault=etcd-down"]));
    let original = bed.manifest();
    let new = bed.node.manifest_with(&["--profiling=false"]);
    let outcome = Transaction::new(FileReplace::new(bed.node.manifest_path(), new), bed.probe())
        .witness(bed.witness())
        .policy(policy().preflight(Some(Duration::from_millis(500))))
        .run();
    let Outcome::Failed {
        reason: FailureReason::PreflightUnhealthy { .. },
        ..
    } = &outcome
    else {
        panic!("{outcome}");
    };
    assert_eq!(bed.manifest(), original);
}

#[test]
fn kubelet_slower_than_the_deadline_rolls_back_to_the_untouched_process() {
    // The kubelet would act after 3 s; the gate gives up after 1.5 s and
    // restores the file. The pod the kubelet runs never changed, so no
    // restart comes for the rollback either: the witness accepts the original
    // process, still running with the old flags.
    let bed = Bed::start(|b| b.sync_delay(Duration::from_secs(3)));
    let before = bed.node.kubelet().status();
    let new = bed.node.manifest_with(&["--profiling=false"]);
    let outcome = Transaction::new(FileReplace::new(bed.node.manifest_path(), new), bed.probe())
        .witness(bed.witness())
        .policy(
            policy()
                .deadline(Duration::from_millis(1500))
                .rollback_deadline(Duration::from_secs(15)),
        )
        .run();
    let Outcome::RolledBack {
        reason: FailureReason::NotRestarted { .. },
        ..
    } = &outcome
    else {
        panic!("{outcome}");
    };
    std::thread::sleep(Duration::from_secs(2));
    let after = bed.node.kubelet().status();
    assert_eq!(
        after.pid, before.pid,
        "the original process was never restarted"
    );
    assert_eq!(after.starts, 1);
}

#[test]
fn a_simulated_server_whose_kubelet_is_already_gone_exits_at_once() {
    // The parent-death signal is armed only once the server runs: a kubelet
    // simulator that died before that (an interrupted demo) would leave an
    // orphan serving fake health forever. The server checks who its parent
    // is right after arming it.
    let out = std::process::Command::new(common::SERVER)
        .env("KUBESAFE_SIM_PARENT", "999999999")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("kubelet simulator (pid 999999999) is gone"),
        "{err}"
    );
}
