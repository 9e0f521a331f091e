//! A remediation executor in a long-running process, built from the kubesafe libraries:
//! verify each signed envelope (`kubesafe-signing`), admit it (namespace allow-list, rate
//! limit, idempotency), carry it out, and seal one audit record per outcome
//! (`kubesafe-audit-log`) — rejections included.
//!
//! ```sh
//! cargo run -p kubesafe-examples --example executor
//! ```
//!
//! A long-running process keeps its replay cache and rate limiters in memory, as here. The
//! one-shot `kubesafe execute` command cannot, and rebuilds them from the audit log on every
//! run instead (see `examples/README.md`). "Executing" here prints the Kubernetes request of
//! a scale action; `kubesafe execute --apply` sends such requests with `kube`.

#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use kubesafe_audit_log::{AuditLog, AuditRecord, FileSink, FileSinkOptions, Status, VerifyOptions};
use kubesafe_signing::action::{ActionParams, ActionType};
use kubesafe_signing::admission::{
    Admission, AdmissionError, Decision, NamespaceAllowList, RateLimit, RateLimits,
};
use kubesafe_signing::{
    Envelope, InMemoryReplayStore, KeyRing, Limits, Provenance, Rejection, Secret, Verifier,
};
use serde_json::json;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir =
        std::env::temp_dir().join(format!("kubesafe-executor-example-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let log_path = dir.join("audit.jsonl");

    // The remediation engine and the executor share a secret under a key id.
    let secret = Secret::new(b"example-secret-example-secret-0123".to_vec())?;
    let mut engine = KeyRing::new();
    engine.insert_active("engine-1", secret.clone())?;
    let mut keys = KeyRing::new();
    keys.insert_verify_only("engine-1", secret)?;

    // The executor: verifier with a replay cache, admission, audit log.
    let verifier = Verifier::new(keys, InMemoryReplayStore::default());
    let mut limits = RateLimits::new();
    limits.set(
        ActionType::ScaleDeployment,
        RateLimit::per_window(2, Duration::from_secs(300))?,
    );
    let admission = Admission::new(NamespaceAllowList::new(["shop"]), limits);
    let mut log = AuditLog::new(FileSink::open(&log_path, FileSinkOptions::new())?);

    let scale = |ns: &str, replicas: u32| {
        json!({"type": "scale_deployment", "namespace": ns, "name": "web",
               "params": {"replicas": replicas}, "requested_by": "engine"})
    };
    let sign = |ns: &str, replicas: u32| {
        engine
            .sign(&scale(ns, replicas), Duration::from_secs(300))
            .map(|e| e.to_json())
    };
    let first = sign("shop", 3)?;
    let inputs = [
        first.clone(),                          // admitted
        first,                                  // replayed: CONFLICT
        sign("kube-system", 0)?,                // FORBIDDEN
        sign("shop", 4)?,                       // admitted
        sign("shop", 5)?,                       // RATE_LIMIT_EXCEEDED (2 per 300 s)
        r#"{"not": "an envelope"}"#.to_owned(), // SCHEMA_VALIDATION_FAILED
    ];

    for input in &inputs {
        let started = Instant::now();
        let decision = Envelope::parse(input.as_bytes(), &Limits::default())
            .map_err(|e| AdmissionError::from(Rejection::from(e)))
            .and_then(|envelope| admission.admit_envelope(&verifier, envelope));
        let record = match decision {
            Ok(Decision::Admitted(admitted)) => {
                let request = admitted.request();
                let kid = match admitted.provenance() {
                    Provenance::Envelope { kid, .. } => kid.clone(),
                    other => format!("{other:?}"),
                };
                // "Execute": the request `kubesafe execute --apply` would send.
                if let ActionParams::ScaleDeployment(p) = request.params() {
                    println!(
                        "PATCH /apis/apps/v1/namespaces/{}/deployments/{}/scale {}",
                        request.namespace(),
                        request.name(),
                        json!({"spec": {"replicas": p.replicas}})
                    );
                }
                AuditRecord::new(request.action_type().as_str(), Status::Completed)
                    .namespace(request.namespace())
                    .resource("Deployment", request.name())
                    .policy_decision(json!({"decision": "admitted", "kid": kid}))
            }
            Ok(other) => AuditRecord::new("scale_deployment", Status::Completed)
                .policy_decision(json!({"decision": format!("{other:?}")})),
            Err(error) => {
                println!("rejected: {error}");
                AuditRecord::new("scale_deployment", Status::Rejected)
                    .policy_decision(json!({"decision": "rejected", "code": error.code}))
                    .error_message(error.message)
            }
        };
        let elapsed = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let sealed = log.append(&record.duration_ms(elapsed))?;
        println!("  audit seq {} {}", sealed.seq, sealed.record.status);
    }
    drop(log);

    let report = kubesafe_audit_log::verify(&log_path, &VerifyOptions::new())?;
    println!(
        "audit log intact: {} ({} records)",
        report.is_intact(),
        report.records
    );
    assert!(report.is_intact());
    assert_eq!(report.records, inputs.len() as u64);
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
