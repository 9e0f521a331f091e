//! `kubesafe execute`, run as the built binary: one process per envelope, as in production,
//! so everything that must hold across invocations (rate limits, replay protection,
//! idempotency) is tested across separate processes sharing one audit log.
//!
//! The `--apply` test runs the real kube executor against a loopback HTTP server that
//! answers the few API paths involved with fixture objects and records every request. It
//! is NOT a Kubernetes API server (none can be installed here); it checks that the kube
//! executor sends byte-for-byte the requests the dry run prints.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr
)]

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kubesafe_signing::{KeyRing, Nonce, Secret};
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_kubesafe");
const SECRET: &[u8] = b"executor-test-secret-0123456789abcdef";
const KID: &str = "engine-2024";

struct Dir(PathBuf);

impl Dir {
    fn new(name: &str) -> Self {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("execute-cli-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let d = Dir(dir);
        d.file("key", SECRET);
        d
    }

    fn file(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let p = self.0.join(name);
        std::fs::write(&p, bytes).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        p
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    fn log(&self) -> PathBuf {
        self.path("audit.jsonl")
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

fn signer(secret: &[u8]) -> KeyRing {
    let mut ring = KeyRing::new();
    ring.insert_active(KID, Secret::new(secret.to_vec()).unwrap())
        .unwrap();
    ring
}

/// A fresh envelope (JSON wire form) for `action`.
fn sign(action: &Value) -> String {
    signer(SECRET)
        .sign(action, Duration::from_secs(300))
        .unwrap()
        .to_json()
}

fn run(args: &[&str], stdin: Option<&[u8]>) -> Output {
    spawn(args, stdin).wait_with_output().unwrap()
}

/// Starts `kubesafe ARGS` (stdout and stderr piped) and writes `stdin` to it, if any.
fn spawn(args: &[&str], stdin: Option<&[u8]>) -> std::process::Child {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .env_remove("RUST_LOG")
        .env_remove("KUBECONFIG")
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    if let Some(input) = stdin {
        // A usage error exits before reading its input: the pipe may be closed already.
        match child.stdin.take().unwrap().write_all(input) {
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
            other => other.unwrap(),
        }
    }
    child
}

/// `kubesafe execute --json` with the test key, the log of `dir`, namespace `shop`, the
/// envelope on stdin, plus `extra` options.
fn execute(dir: &Dir, envelope: &str, extra: &[&str]) -> (Output, Value) {
    let key = dir.path("key");
    let log = dir.log();
    let mut args = vec![
        "execute",
        "--json",
        "--key-file",
        p(&key),
        "--kid",
        KID,
        "--allow-namespace",
        "shop",
        "--audit-log",
        p(&log),
    ];
    args.extend_from_slice(extra);
    args.push("-");
    let out = run(&args, Some(envelope.as_bytes()));
    let json = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    (out, json)
}

fn stderr(o: &Output) -> String {
    String::from_utf8(o.stderr.clone()).unwrap()
}

fn records(dir: &Dir) -> Vec<Value> {
    std::fs::read_to_string(dir.log())
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn last_record(dir: &Dir) -> Value {
    records(dir).pop().unwrap()
}

/// `kubesafe audit verify` passes and the log holds exactly `n` records.
fn assert_log_intact(dir: &Dir, n: u64) {
    let out = run(&["audit", "verify", "--json", p(&dir.log())], None);
    assert!(out.status.success(), "{}", stderr(&out));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["records"], n, "{report}");
    assert_eq!(report["failure"], Value::Null);
}

/// Asserts a rejection: exit 1, one stderr line with the code, JSON with the code, and a
/// `rejected` record with that code.
fn assert_rejected(dir: &Dir, out: &Output, json: &Value, code: &str) -> Value {
    assert_eq!(out.status.code(), Some(1), "{}", stderr(out));
    let err = stderr(out);
    assert!(
        err.starts_with(&format!("kubesafe: error: {code}: ")),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
    assert_eq!(json["outcome"], "rejected");
    assert_eq!(json["code"], code);
    let rec = last_record(dir);
    assert_eq!(rec["status"], "rejected");
    assert_eq!(rec["policyDecision"]["code"], code);
    assert_eq!(rec["policyDecision"]["decision"], "rejected");
    assert_eq!(rec["errorMessage"], json["message"]);
    assert_eq!(json["audit"]["seq"], rec["seq"]);
    rec
}

fn scale(replicas: u32) -> Value {
    json!({"type": "scale_deployment", "namespace": "shop", "name": "web",
           "params": {"replicas": replicas}, "requested_by": "remediation-engine"})
}

fn restart(pod: &str) -> Value {
    json!({"type": "restart_pod", "namespace": "shop", "name": pod,
           "params": {"grace_period_seconds": 5}})
}

// --- cluster fixtures (used as --cluster-state and served by the fake API server) -------

const DEPLOY_UID: &str = "0b9e2f4c-5d1a-4c3e-9f00-aa11bb22cc33";

fn pod_template(image: &str, hash: Option<&str>) -> Value {
    let mut labels = json!({"app": "web"});
    if let Some(h) = hash {
        labels["pod-template-hash"] = h.into();
    }
    json!({
        "metadata": {"creationTimestamp": null, "labels": labels},
        "spec": {"containers": [{"name": "web", "image": image, "resources": {}}],
                 "dnsPolicy": "ClusterFirst", "restartPolicy": "Always"}
    })
}

fn replica_set(hash: &str, revision: &str, image: &str, created: &str) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "ReplicaSet",
        "metadata": {
            "name": format!("web-{hash}"), "namespace": "shop", "creationTimestamp": created,
            "labels": {"app": "web", "pod-template-hash": hash},
            "annotations": {"deployment.kubernetes.io/revision": revision,
                            "deployment.kubernetes.io/desired-replicas": "3",
                            "kubernetes.io/change-cause": format!("deploy {image}")},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "web",
                                 "uid": DEPLOY_UID, "controller": true,
                                 "blockOwnerDeletion": true}]
        },
        "spec": {"replicas": 0,
                 "selector": {"matchLabels": {"app": "web", "pod-template-hash": hash}},
                 "template": pod_template(image, Some(hash))}
    })
}

fn cluster() -> Value {
    json!({
        "apiVersion": "v1", "kind": "List",
        "items": [
            {"apiVersion": "apps/v1", "kind": "Deployment",
             "metadata": {"name": "web", "namespace": "shop", "uid": DEPLOY_UID,
                          "resourceVersion": "90210",
                          "annotations": {"deployment.kubernetes.io/revision": "2"}},
             "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}},
                      "template": pod_template("web:2.0", None)}},
            replica_set("6f7d8c", "1", "web:1.0", "2024-06-01T08:00:00Z"),
            replica_set("59b4d2", "2", "web:2.0", "2024-06-02T08:00:00Z"),
            {"apiVersion": "v1", "kind": "Pod",
             "metadata": {"name": "web-59b4d2-qx7zp", "namespace": "shop", "uid": "pod-uid-77",
                          "labels": {"app": "web", "pod-template-hash": "59b4d2"},
                          "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                                               "name": "web-59b4d2", "uid": "rs-uid-2",
                                               "controller": true}]}},
            {"apiVersion": "v1", "kind": "Pod",
             "metadata": {"name": "debug-shell", "namespace": "shop", "uid": "pod-uid-78"}}
        ]
    })
}

// --- the tests ----------------------------------------------------------------------------

#[test]
fn admitted_dry_run_prints_the_request_and_audits_completed() {
    let dir = Dir::new("admitted");
    let envelope = sign(&scale(4));
    let (out, json) = execute(&dir, &envelope, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).is_empty(), "{}", stderr(&out));
    assert_eq!(json["outcome"], "planned");
    assert_eq!(json["execution"]["executor"], "dry-run");
    assert_eq!(
        json["execution"]["writes"],
        json!([{"method": "PATCH",
                "path": "/apis/apps/v1/namespaces/shop/deployments/web/scale",
                "contentType": "application/merge-patch+json",
                "body": {"spec": {"replicas": 4}}}])
    );

    let rec = last_record(&dir);
    assert_eq!(rec["seq"], 1);
    assert_eq!(rec["status"], "completed");
    assert_eq!(rec["actionType"], "scale_deployment");
    assert_eq!(rec["namespace"], "shop");
    assert_eq!(rec["resourceType"], "Deployment");
    assert_eq!(rec["resourceName"], "web");
    assert_eq!(rec["parameters"], json!({"replicas": 4}));
    assert_eq!(rec["requestedBy"], "remediation-engine");
    let env: Value = serde_json::from_str(&envelope).unwrap();
    assert_eq!(rec["signature"], env["mac"]);
    let decision = &rec["policyDecision"];
    assert_eq!(decision["decision"], "admitted");
    assert_eq!(decision["envelope"]["kid"], KID);
    assert_eq!(decision["envelope"]["nonce"], env["nonce"]);
    assert_eq!(decision["envelope"]["verified"], true);
    assert_eq!(decision["rateLimit"], "at most 5 per 300s");
    assert!(rec["durationMs"].is_u64());
    assert!(rec["completedAt"].is_string());
    assert_eq!(rec["result"]["outcome"], "planned");
    assert_eq!(rec["result"]["writes"], json["execution"]["writes"]);

    // The human form shows the same request; the token wire form works too.
    let token = signer(SECRET)
        .sign(&scale(2), Duration::from_secs(60))
        .unwrap()
        .to_token();
    let key = dir.path("key");
    let log = dir.log();
    let out = run(
        &[
            "execute",
            "--key-file",
            p(&key),
            "--kid",
            KID,
            "--allow-namespace",
            "shop",
            "--audit-log",
            p(&log),
            "-",
        ],
        Some(token.as_bytes()),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.starts_with("scale_deployment shop/web: dry run, nothing sent\n"),
        "{text}"
    );
    assert!(
        text.contains("PATCH /apis/apps/v1/namespaces/shop/deployments/web/scale"),
        "{text}"
    );
    assert!(text.contains(r#"{"spec":{"replicas":2}}"#), "{text}");
    assert!(text.ends_with("audit: seq 2 completed\n"), "{text}");
    assert_log_intact(&dir, 2);
}

#[test]
fn bad_signatures_are_unauthorized_and_audited() {
    let dir = Dir::new("unauthorized");
    // Signed with another secret under the same key id.
    let forged = signer(b"not-the-executor-secret-0123456789abcd")
        .sign(&scale(9), Duration::from_secs(300))
        .unwrap()
        .to_json();
    let (out, json) = execute(&dir, &forged, &[]);
    let rec = assert_rejected(&dir, &out, &json, "UNAUTHORIZED");
    assert!(
        stderr(&out).contains("MAC does not match"),
        "{}",
        stderr(&out)
    );
    assert_eq!(rec["policyDecision"]["stage"], "verify");
    assert_eq!(rec["policyDecision"]["envelope"]["verified"], false);
    // The claimed (unverified) action is recorded for forensics.
    assert_eq!(rec["actionType"], "scale_deployment");
    assert_eq!(rec["parameters"], json!({"replicas": 9}));

    // A genuine envelope with one changed byte.
    let tampered = sign(&scale(3)).replace("\"replicas\":3", "\"replicas\":30");
    let (out, json) = execute(&dir, &tampered, &[]);
    assert_rejected(&dir, &out, &json, "UNAUTHORIZED");

    // An unknown key id, and an expired envelope.
    let mut other = KeyRing::new();
    other
        .insert_active("rotated-out", Secret::new(SECRET.to_vec()).unwrap())
        .unwrap();
    let env = other
        .sign(&scale(3), Duration::from_secs(60))
        .unwrap()
        .to_json();
    let (out, json) = execute(&dir, &env, &[]);
    assert_rejected(&dir, &out, &json, "UNAUTHORIZED");
    assert!(stderr(&out).contains("unknown key id"), "{}", stderr(&out));
    let old = signer(SECRET)
        .sign_at(
            &scale(3),
            1_000_000,
            Duration::from_secs(60),
            Nonce::random().unwrap(),
        )
        .unwrap()
        .to_json();
    let (out, json) = execute(&dir, &old, &[]);
    assert_rejected(&dir, &out, &json, "UNAUTHORIZED");
    assert!(stderr(&out).contains("expired"), "{}", stderr(&out));
    assert_log_intact(&dir, 4);
}

#[test]
fn namespaces_outside_the_allow_list_are_forbidden() {
    let dir = Dir::new("forbidden");
    let action = json!({"type": "scale_deployment", "namespace": "kube-system",
                        "name": "coredns", "params": {"replicas": 0}});
    let (out, json) = execute(&dir, &sign(&action), &[]);
    let rec = assert_rejected(&dir, &out, &json, "FORBIDDEN");
    assert_eq!(json["field"], "namespace");
    assert_eq!(rec["namespace"], "kube-system");
    assert_eq!(rec["policyDecision"]["stage"], "admission");
    // Authentic: the nonce is spent even though the action was refused.
    assert_eq!(rec["policyDecision"]["envelope"]["verified"], true);
    // With the namespace allowed, the same kind of action passes.
    let (out, _) = execute(&dir, &sign(&action), &["--allow-namespace", "kube-system"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_log_intact(&dir, 2);
}

#[test]
fn rate_limit_holds_across_separate_invocations() {
    let dir = Dir::new("ratelimit");
    let state = dir.file("cluster.json", cluster().to_string().as_bytes());
    let state_args = ["--cluster-state", p(&state)];
    // The default limit: 5 restarts per 300 s. Five separate processes are admitted ...
    for i in 0..5 {
        let (out, json) = execute(&dir, &sign(&restart("web-59b4d2-qx7zp")), &state_args);
        assert!(out.status.success(), "call {i}: {}", stderr(&out));
        assert_eq!(json["outcome"], "planned");
        assert_eq!(
            json["execution"]["writes"][0]["body"]["preconditions"]["uid"],
            "pod-uid-77"
        );
    }
    // ... the sixth is refused with a Retry-After up to the window.
    let (out, json) = execute(&dir, &sign(&restart("web-59b4d2-qx7zp")), &state_args);
    let rec = assert_rejected(&dir, &out, &json, "RATE_LIMIT_EXCEEDED");
    let retry = json["retry_after_seconds"].as_u64().unwrap();
    assert!((290..=300).contains(&retry), "{retry}");
    assert!(
        stderr(&out).contains(&format!("; Retry-After: {retry} ")),
        "{}",
        stderr(&out)
    );
    assert_eq!(rec["policyDecision"]["retryAfterSeconds"], retry);
    assert_eq!(rec["policyDecision"]["rateLimit"], "at most 5 per 300s");
    // The limit is per action type, not per signing key: another key id is refused too.
    let second = dir.file("second-key", b"a-second-engine-secret-0123456789abc");
    let mut ring = KeyRing::new();
    ring.insert_active(
        "engine-b",
        Secret::new(b"a-second-engine-secret-0123456789abc".to_vec()).unwrap(),
    )
    .unwrap();
    let env = ring
        .sign(&restart("web-59b4d2-qx7zp"), Duration::from_secs(60))
        .unwrap()
        .to_json();
    let second_key = format!("engine-b={}", p(&second));
    let (out, json) = execute(
        &dir,
        &env,
        &["--cluster-state", p(&state), "--key", &second_key],
    );
    assert_rejected(&dir, &out, &json, "RATE_LIMIT_EXCEEDED");
    // Other action types have their own limits.
    let (out, _) = execute(&dir, &sign(&scale(1)), &state_args);
    assert!(out.status.success(), "{}", stderr(&out));
    // The refused calls did not count: with a limit of 6, one more is admitted.
    let (out, _) = execute(
        &dir,
        &sign(&restart("web-59b4d2-qx7zp")),
        &["--cluster-state", p(&state), "--rate", "restart_pod=6/300s"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_log_intact(&dir, 9);
}

#[test]
fn a_short_window_frees_its_permit_again_across_invocations() {
    // 2 per 4 s: the first three calls must fall within 4 s. On a machine so loaded that
    // they do not, the attempt says nothing and is repeated with a fresh log.
    let rate = ["--rate", "scale_deployment=2/4s"];
    for attempt in 0..3 {
        let dir = Dir::new(&format!("window-{attempt}"));
        let started = std::time::Instant::now();
        for _ in 0..2 {
            let (out, _) = execute(&dir, &sign(&scale(1)), &rate);
            assert!(out.status.success(), "{}", stderr(&out));
        }
        let (out, json) = execute(&dir, &sign(&scale(1)), &rate);
        if started.elapsed() >= Duration::from_secs(4) {
            eprintln!("attempt {attempt}: three calls took over 4 s; trying again");
            continue;
        }
        assert_rejected(&dir, &out, &json, "RATE_LIMIT_EXCEEDED");
        let retry = json["retry_after_seconds"].as_u64().unwrap();
        assert!((1..=4).contains(&retry), "{retry}");
        // After Retry-After seconds, a new process is admitted again.
        std::thread::sleep(Duration::from_secs(retry) + Duration::from_millis(100));
        let (out, _) = execute(&dir, &sign(&scale(1)), &rate);
        assert!(out.status.success(), "{}", stderr(&out));
        assert_log_intact(&dir, 4);
        return;
    }
    panic!("three calls took over 4 s in each of 3 attempts: machine too slow");
}

#[test]
fn concurrent_executors_share_one_limit() {
    let dir = Dir::new("concurrent");
    let key = dir.path("key");
    let log = dir.log();
    let children: Vec<_> = (0..6)
        .map(|_| {
            // A fresh envelope (nonce) each: the limit, not replay protection, is tested.
            let envelope = sign(&scale(2));
            spawn(
                &[
                    "execute",
                    "--json",
                    "--key-file",
                    p(&key),
                    "--kid",
                    KID,
                    "--allow-namespace",
                    "shop",
                    "--audit-log",
                    p(&log),
                    "--rate",
                    "scale_deployment=3/300s",
                    "-",
                ],
                Some(envelope.as_bytes()),
            )
        })
        .collect();
    let codes: Vec<i32> = children
        .into_iter()
        .map(|c| c.wait_with_output().unwrap().status.code().unwrap())
        .collect();
    assert_eq!(codes.iter().filter(|c| **c == 0).count(), 3, "{codes:?}");
    assert_eq!(codes.iter().filter(|c| **c == 1).count(), 3, "{codes:?}");
    let recs = records(&dir);
    assert_eq!(
        recs.iter()
            .filter(|r| r["policyDecision"]["code"] == "RATE_LIMIT_EXCEEDED")
            .count(),
        3
    );
    assert_log_intact(&dir, 6);
}

#[test]
#[cfg(unix)]
fn executors_reaching_one_log_by_different_paths_share_the_lock() {
    // One log, two names (a symlink, as /var/log/kubesafe -> /data/... setups have): the
    // executors must still queue on one lock, or both read the same state and both admit.
    let dir = Dir::new("symlink");
    let log = dir.log();
    let link = dir.path("link.jsonl");
    std::fs::write(&log, b"").unwrap();
    std::os::unix::fs::symlink(&log, &link).unwrap();
    // Hold the lock of the real path, as a running executor does.
    let lock_path = dir.path("audit.jsonl.execute.lock");
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .unwrap();
    lock.lock().unwrap();
    let key = dir.path("key");
    let mut child = spawn(
        &[
            "execute",
            "--key-file",
            p(&key),
            "--kid",
            KID,
            "--allow-namespace",
            "shop",
            "--audit-log",
            p(&link),
            "-",
        ],
        Some(sign(&scale(1)).as_bytes()),
    );
    // However slow the machine, it cannot finish while the lock is held.
    std::thread::sleep(Duration::from_millis(1500));
    let early = child.try_wait().unwrap();
    lock.unlock().unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(early, None, "finished under a held lock: {}", stderr(&out));
    assert!(out.status.success(), "{}", stderr(&out));
    assert_log_intact(&dir, 1);
}

#[test]
fn a_replayed_envelope_is_a_conflict() {
    let dir = Dir::new("replay");
    let envelope = sign(&scale(5));
    let (out, _) = execute(&dir, &envelope, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let (out, json) = execute(&dir, &envelope, &[]);
    let rec = assert_rejected(&dir, &out, &json, "CONFLICT");
    assert!(stderr(&out).contains("already used"), "{}", stderr(&out));
    assert_eq!(rec["policyDecision"]["stage"], "verify");
    // A forged envelope reusing a live nonce does not burn it: its MAC fails first.
    let dir2 = Dir::new("replay-forged");
    let genuine = sign(&scale(5));
    let nonce = serde_json::from_str::<Value>(&genuine).unwrap()["nonce"]
        .as_str()
        .unwrap()
        .to_owned();
    let forged = signer(b"attacker-secret-0123456789abcdef-xyz")
        .sign_at(
            &scale(50),
            serde_json::from_str::<Value>(&genuine).unwrap()["iat"]
                .as_u64()
                .unwrap(),
            Duration::from_secs(300),
            Nonce::new(nonce).unwrap(),
        )
        .unwrap()
        .to_json();
    let (out, json) = execute(&dir2, &forged, &[]);
    assert_rejected(&dir2, &out, &json, "UNAUTHORIZED");
    let (out, _) = execute(&dir2, &genuine, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_log_intact(&dir, 2);
    assert_log_intact(&dir2, 2);
}

#[test]
fn malformed_envelopes_are_schema_validation_failed() {
    let dir = Dir::new("malformed");
    let genuine = sign(&scale(1));
    let cases: Vec<(String, &str)> = vec![
        ("{not json".to_owned(), "parse"),
        (genuine[..genuine.len() / 2].to_owned(), "parse"),
        ("ks1.!!!".to_owned(), "parse"),
        (genuine.replace("\"v\":1", "\"v\":2"), "parse"),
        (String::new(), "parse"),
        // Authentic, but the action is not a valid remediation action: the nonce is spent.
        (
            sign(&json!({"type": "delete_cluster", "namespace": "shop", "name": "web"})),
            "verify",
        ),
        // Action types are exact: another spelling is not a way around a type's limit.
        (
            sign(&json!({"type": "Restart_Pod", "namespace": "shop", "name": "web"})),
            "verify",
        ),
        (
            sign(&json!({"type": " restart_pod", "namespace": "shop", "name": "web"})),
            "verify",
        ),
        (
            sign(
                &json!({"type": "scale_deployment", "namespace": "shop", "name": "web",
                         "params": {"replicas": -1}}),
            ),
            "verify",
        ),
    ];
    for (i, (input, stage)) in cases.iter().enumerate() {
        let (out, json) = execute(&dir, input, &[]);
        let rec = assert_rejected(&dir, &out, &json, "SCHEMA_VALIDATION_FAILED");
        assert_eq!(rec["policyDecision"]["stage"], *stage, "case {i}");
        if *stage == "verify" {
            assert_eq!(rec["policyDecision"]["envelope"]["verified"], true);
        } else if i == 0 {
            assert_eq!(rec["actionType"], "unknown");
        }
    }
    assert_log_intact(&dir, cases.len() as u64);
}

#[test]
fn idempotency_keys_are_honoured_across_invocations() {
    let dir = Dir::new("idempotency");
    let server = FakeApiServer::start(cluster());
    let kubeconfig = server.kubeconfig(&dir);
    let rate = ["--rate", "scale_deployment=3/300s"];
    let apply = [rate[0], rate[1], "--apply", "--kubeconfig", p(&kubeconfig)];
    let mut action = scale(6);
    action["idempotency_key"] = "incident-4711".into();
    // A dry run plans the action but executes nothing, so it does not use up the key:
    // the real run with the same key (a fresh envelope) is executed.
    let (out, json) = execute(&dir, &sign(&action), &rate);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(json["outcome"], "planned");
    let (out, json) = execute(&dir, &sign(&action), &apply);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(json["outcome"], "applied");
    assert_eq!(server.take().len(), 1);
    // The client retries with a fresh envelope: answered as a duplicate, not executed —
    // and a dry run of the retry says so too.
    for extra in [&apply[..], &rate[..]] {
        let (out, json) = execute(&dir, &sign(&action), extra);
        assert!(out.status.success(), "{}", stderr(&out));
        assert_eq!(json["outcome"], "duplicate");
        let rec = last_record(&dir);
        assert_eq!(rec["status"], "completed");
        assert_eq!(rec["policyDecision"]["decision"], "duplicate");
        assert_eq!(rec["result"]["executed"], false);
    }
    assert!(server.take().is_empty());
    // The same key for a different action is a conflict.
    let mut other = scale(7);
    other["idempotency_key"] = "incident-4711".into();
    let (out, json) = execute(&dir, &sign(&other), &apply);
    assert_rejected(&dir, &out, &json, "CONFLICT");
    // Duplicates do not use up the rate limit (3 per 300 s; the dry run and the applied
    // run used two): one more is admitted, then the limit is reached.
    let (out, _) = execute(&dir, &sign(&scale(8)), &rate);
    assert!(out.status.success(), "{}", stderr(&out));
    let (out, json) = execute(&dir, &sign(&scale(8)), &rate);
    assert_rejected(&dir, &out, &json, "RATE_LIMIT_EXCEEDED");
    assert_log_intact(&dir, 8);
}

#[test]
fn the_audit_log_does_not_copy_pod_templates() {
    // Pod templates carry literal env values and, in last-applied-configuration, the whole
    // object: a rollback patch must not be copied into the audit log (which is shipped and
    // kept), only identified.
    let dir = Dir::new("secrets");
    let mut objects = cluster();
    objects["items"][1]["spec"]["template"]["spec"]["containers"][0]["env"] =
        json!([{"name": "DB_PASSWORD", "value": "hunter2-in-the-template"}]);
    objects["items"][1]["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"] =
        "{\"env\":\"hunter2-in-the-annotation\"}".into();
    let state = dir.file("cluster.json", objects.to_string().as_bytes());
    let rollback = json!({"type": "rollback_deployment", "namespace": "shop", "name": "web"});
    let (out, json) = execute(&dir, &sign(&rollback), &["--cluster-state", p(&state)]);
    assert!(out.status.success(), "{}", stderr(&out));
    // The operator sees the exact request ...
    let body = json["execution"]["writes"][0]["body"].to_string();
    assert!(body.contains("hunter2-in-the-template"), "{body}");
    // ... the log identifies it without its content.
    let log = std::fs::read_to_string(dir.log()).unwrap();
    assert!(!log.contains("hunter2"), "{log}");
    let rec = last_record(&dir);
    let write = &rec["result"]["writes"][0];
    assert_eq!(write["method"], "PATCH");
    assert_eq!(
        write["path"],
        "/apis/apps/v1/namespaces/shop/deployments/web"
    );
    assert!(write.get("body").is_none(), "{write}");
    let digest = write["bodySha256"].as_str().unwrap();
    assert_eq!(digest.len(), 64);
    assert!(digest.bytes().all(|b| b.is_ascii_hexdigit()));
    assert_eq!(
        rec["result"]["target"],
        json!({"revision": 1, "replicaSet": "web-6f7d8c"})
    );
    assert_eq!(json["execution"]["target"], rec["result"]["target"]);
    // Scale and delete bodies hold no template and are kept.
    let (out, _) = execute(&dir, &sign(&scale(3)), &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        last_record(&dir)["result"]["writes"][0]["body"],
        json!({"spec": {"replicas": 3}})
    );
}

#[test]
fn rollback_and_restart_plans_from_cluster_state() {
    let dir = Dir::new("plans");
    let state = dir.file("cluster.json", cluster().to_string().as_bytes());
    let rollback = json!({"type": "rollback_deployment", "namespace": "shop", "name": "web"});
    let (out, json) = execute(&dir, &sign(&rollback), &["--cluster-state", p(&state)]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        json["execution"]["reads"],
        json!([
            {"method": "GET", "path": "/apis/apps/v1/namespaces/shop/deployments/web"},
            {"method": "GET",
             "path": "/apis/apps/v1/namespaces/shop/replicasets?labelSelector=app%3Dweb"}
        ])
    );
    let write = &json["execution"]["writes"][0];
    assert_eq!(write["method"], "PATCH");
    assert_eq!(
        write["path"],
        "/apis/apps/v1/namespaces/shop/deployments/web"
    );
    assert_eq!(write["contentType"], "application/json-patch+json");
    assert_eq!(
        write["body"],
        json!([
            {"op": "test", "path": "/metadata/resourceVersion", "value": "90210"},
            {"op": "replace", "path": "/spec/template", "value": pod_template("web:1.0", None)},
            {"op": "replace", "path": "/metadata/annotations",
             "value": {"deployment.kubernetes.io/revision": "2",
                       "kubernetes.io/change-cause": "deploy web:1.0"}}
        ])
    );

    // Rolling back to the revision already running is skipped, as kubectl does.
    let to_current = json!({"type": "rollback_deployment", "namespace": "shop", "name": "web",
                            "params": {"to_revision": 2}});
    let (out, json) = execute(&dir, &sign(&to_current), &["--cluster-state", p(&state)]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(json["outcome"], "skipped");
    assert_eq!(
        json["execution"]["message"],
        "skipped rollback (current template already matches revision 2)"
    );
    assert_eq!(json["execution"]["writes"], json!([]));

    // A revision that does not exist fails (exit 3), audited as failed.
    let missing = json!({"type": "rollback_deployment", "namespace": "shop", "name": "web",
                         "params": {"to_revision": 7}});
    let (out, json) = execute(&dir, &sign(&missing), &["--cluster-state", p(&state)]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert_eq!(json["outcome"], "failed");
    let rec = last_record(&dir);
    assert_eq!(rec["status"], "failed");
    assert_eq!(
        rec["errorMessage"],
        "unable to find specified revision 7 in history"
    );
    // Admitted, so it counts against the rate limit.
    assert_eq!(rec["policyDecision"]["decision"], "admitted");

    // A pod without a controller is not deleted (it would not come back).
    let (out, json) = execute(
        &dir,
        &sign(&restart("debug-shell")),
        &["--cluster-state", p(&state)],
    );
    let rec = assert_rejected_after_admission(&dir, &out, &json);
    assert!(
        rec["errorMessage"]
            .as_str()
            .unwrap()
            .contains("--allow-bare-pod")
    );
    let (out, json) = execute(
        &dir,
        &sign(&restart("debug-shell")),
        &["--cluster-state", p(&state), "--allow-bare-pod"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(json["execution"]["writes"][0]["method"], "DELETE");

    // Without cluster state the dry run says what it could not compute.
    let (out, json) = execute(&dir, &sign(&rollback), &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(json["execution"]["writes"], json!([]));
    assert!(
        json["execution"]["notes"][0]
            .as_str()
            .unwrap()
            .contains("no cluster state given"),
        "{json}"
    );
    assert_log_intact(&dir, 6);
}

/// An executor refusal: INVARIANT_VIOLATION, audited rejected, but admitted (counted).
fn assert_rejected_after_admission(dir: &Dir, out: &Output, json: &Value) -> Value {
    assert_eq!(out.status.code(), Some(1), "{}", stderr(out));
    assert!(
        stderr(out).starts_with("kubesafe: error: INVARIANT_VIOLATION: "),
        "{}",
        stderr(out)
    );
    assert_eq!(json["code"], "INVARIANT_VIOLATION");
    let rec = last_record(dir);
    assert_eq!(rec["status"], "rejected");
    assert_eq!(rec["policyDecision"]["decision"], "admitted");
    assert_eq!(rec["policyDecision"]["stage"], "executor");
    assert_eq!(rec["policyDecision"]["code"], "INVARIANT_VIOLATION");
    rec
}

#[test]
fn a_tampered_audit_log_stops_the_executor() {
    let dir = Dir::new("tampered");
    for _ in 0..2 {
        let (out, _) = execute(&dir, &sign(&scale(1)), &[]);
        assert!(out.status.success(), "{}", stderr(&out));
    }
    // Removing the first record would lift rate limits and replay protection.
    let text = std::fs::read_to_string(dir.log()).unwrap();
    let second = text.lines().nth(1).unwrap();
    std::fs::write(dir.log(), format!("{second}\n")).unwrap();
    let (out, json) = execute(&dir, &sign(&scale(1)), &[]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert_eq!(json, Value::Null);
    assert!(
        stderr(&out).contains("fails verification"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        std::fs::read_to_string(dir.log()).unwrap().lines().count(),
        1
    );
}

#[test]
fn keyed_audit_logs_and_key_rotation() {
    let dir = Dir::new("keyed");
    let akey = dir.path("audit-key.json");
    let out = run(
        &["audit", "keygen", "--id", "audit-1", "--out", p(&akey)],
        None,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let old_key = dir.file("old-key", b"the-previous-engine-secret-0123456789");
    let (out, _) = execute(
        &dir,
        &sign(&scale(1)),
        &[
            "--audit-key-file",
            p(&akey),
            "--key",
            &format!("previous={}", p(&old_key)),
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    // An envelope of the previous key id verifies through --key.
    let mut ring = KeyRing::new();
    ring.insert_active(
        "previous",
        Secret::new(b"the-previous-engine-secret-0123456789".to_vec()).unwrap(),
    )
    .unwrap();
    let env = ring
        .sign(&scale(2), Duration::from_secs(60))
        .unwrap()
        .to_json();
    let (out, _) = execute(
        &dir,
        &env,
        &[
            "--audit-key-file",
            p(&akey),
            "--key",
            &format!("previous={}", p(&old_key)),
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let rec = last_record(&dir);
    assert_eq!(rec["keyId"], "audit-1");
    let out = run(
        &["audit", "verify", p(&dir.log()), "--key-file", p(&akey)],
        None,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    // An executor without the audit key cannot verify the keyed log, so it refuses to
    // run rather than derive its state from records it cannot check.
    let (out, _) = execute(&dir, &sign(&scale(3)), &[]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("missing_key"), "{}", stderr(&out));
    assert_eq!(records(&dir).len(), 2);
}

#[test]
fn a_checkpoint_stops_the_executor_on_a_cut_tail() {
    // Cutting records off the end of a hash chain leaves a valid chain: only a signed
    // checkpoint of the head, kept by the executor, shows that records are missing.
    let dir = Dir::new("checkpoint");
    let akey = dir.path("audit-key.json");
    let out = run(
        &["audit", "keygen", "--id", "audit-1", "--out", p(&akey)],
        None,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let cp = dir.path("head.checkpoint");
    let keyed = ["--audit-key-file", p(&akey), "--checkpoint", p(&cp)];
    let rate = ["--rate", "scale_deployment=1/300s"];
    let both = [keyed.as_slice(), rate.as_slice()].concat();
    let (out, _) = execute(&dir, &sign(&scale(1)), &both);
    assert!(out.status.success(), "{}", stderr(&out));
    let checkpoint: Value = serde_json::from_str(&std::fs::read_to_string(&cp).unwrap()).unwrap();
    assert_eq!(checkpoint["seq"], 1);
    // The limit (1 per 300 s) is used up: the next one is refused, and the checkpoint
    // follows the head.
    let (out, json) = execute(&dir, &sign(&scale(1)), &both);
    assert_rejected(&dir, &out, &json, "RATE_LIMIT_EXCEEDED");
    let checkpoint: Value = serde_json::from_str(&std::fs::read_to_string(&cp).unwrap()).unwrap();
    assert_eq!(checkpoint["seq"], 2);
    assert_eq!(checkpoint["hash"], last_record(&dir)["hash"]);
    let out = run(
        &[
            "audit",
            "verify",
            p(&dir.log()),
            "--key-file",
            p(&akey),
            "--checkpoint",
            p(&cp),
        ],
        None,
    );
    assert!(out.status.success(), "{}", stderr(&out));

    // Cut the log back to nothing: with the chain alone, the limit would be lifted.
    std::fs::write(dir.log(), b"").unwrap();
    let (out, json) = execute(&dir, &sign(&scale(1)), &both);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert_eq!(json, Value::Null);
    assert!(stderr(&out).contains("checkpoint"), "{}", stderr(&out));
    assert!(std::fs::read_to_string(dir.log()).unwrap().is_empty());
    // A checkpoint needs the audit key (it is signed with it).
    let (out, _) = execute(&dir, &sign(&scale(1)), &["--checkpoint", p(&cp)]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}

#[test]
#[cfg(unix)]
fn an_unwritable_audit_log_exits_4_and_nothing_is_sent() {
    let dir = Dir::new("unaudited");
    let server = FakeApiServer::start(cluster());
    let kubeconfig = server.kubeconfig(&dir);
    let key = dir.path("key");
    let log = dir.log();
    // The executor under a file-size limit of 0: opening and verifying the (empty) log
    // work, every write to it fails (EFBIG; SIGXFSZ ignored). Pipes are not affected.
    let limited = |extra: &[&str]| {
        let mut args = vec![
            "-c",
            "trap '' XFSZ; ulimit -f 0; exec \"$0\" \"$@\"",
            BIN,
            "execute",
            "--key-file",
            p(&key),
            "--kid",
            KID,
            "--allow-namespace",
            "shop",
            "--audit-log",
            p(&log),
        ];
        args.extend_from_slice(extra);
        args.push("-");
        let mut child = Command::new("sh")
            .args(&args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(sign(&scale(4)).as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    };
    // --apply: the in_progress record cannot be written, so nothing is sent.
    let out = limited(&["--apply", "--kubeconfig", p(&kubeconfig)]);
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.starts_with("kubesafe: error: scale_deployment shop/web: not executed: cannot write to the audit log"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(server.take().is_empty());
    // A dry run: the outcome record cannot be written; the message says what happened.
    let out = limited(&[]);
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("the action was planned, but the audit record could not be written"),
        "{err}"
    );
    assert!(out.stdout.is_empty());
    assert!(std::fs::read_to_string(&log).unwrap().is_empty());
}

#[test]
fn setup_errors_exit_2_without_a_record() {
    let dir = Dir::new("setup");
    let env = sign(&scale(1));
    let short = dir.file("short-key", b"too short");
    let log = dir.log();
    for (args, needle) in [
        (
            vec![
                "execute",
                "--key-file",
                p(&short),
                "--kid",
                KID,
                "--allow-namespace",
                "shop",
                "--audit-log",
                p(&log),
                "-",
            ],
            "minimum is 32",
        ),
        (
            vec![
                "execute",
                "--allow-namespace",
                "shop",
                "--audit-log",
                p(&log),
                "-",
            ],
            "no verification key",
        ),
        (
            vec![
                "execute",
                "--key",
                "k",
                "--allow-namespace",
                "shop",
                "--audit-log",
                p(&log),
                "-",
            ],
            "KID=FILE",
        ),
    ] {
        let out = run(&args, Some(env.as_bytes()));
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(needle), "{}", stderr(&out));
    }
    let key = dir.path("key");
    let out = run(
        &[
            "execute",
            "--key-file",
            p(&key),
            "--kid",
            KID,
            "--allow-namespace",
            "shop",
            "--audit-log",
            p(&log),
            "--rate",
            "restart_pod=0/5m",
            "-",
        ],
        Some(env.as_bytes()),
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(!log.exists() || std::fs::read_to_string(&log).unwrap().is_empty());
}

// --- --apply against a loopback server that imitates the API server's replies ----------

/// One request as the fake API server received it.
#[derive(Debug, Clone, PartialEq)]
struct Seen {
    method: String,
    path: String,
    content_type: Option<String>,
    authorization: Option<String>,
    body: Option<Value>,
}

struct FakeApiServer {
    port: u16,
    seen: Arc<Mutex<Vec<Seen>>>,
}

trait Stream: std::io::Read + std::io::Write + Send {}
impl<T: std::io::Read + std::io::Write + Send> Stream for T {}

impl FakeApiServer {
    fn start(objects: Value) -> Self {
        Self::start_with(objects, None)
    }

    /// With `tls`, serves HTTPS (rustls on ring) instead of plain HTTP.
    fn start_with(objects: Value, tls: Option<Arc<rustls::ServerConfig>>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let seen2 = Arc::clone(&seen);
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                let seen = Arc::clone(&seen2);
                let objects = objects.clone();
                let tls = tls.clone();
                std::thread::spawn(move || {
                    let stream: Box<dyn Stream> = match tls {
                        Some(cfg) => Box::new(rustls::StreamOwned::new(
                            rustls::ServerConnection::new(cfg).unwrap(),
                            stream,
                        )),
                        None => Box::new(stream),
                    };
                    serve(stream, &objects, &seen);
                });
            }
        });
        FakeApiServer { port, seen }
    }

    fn kubeconfig(&self, dir: &Dir) -> PathBuf {
        dir.file(
            "kubeconfig",
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    \
                 server: http://127.0.0.1:{}\ncontexts:\n- name: fake\n  context:\n    \
                 cluster: fake\n    user: tester\ncurrent-context: fake\nusers:\n- name: \
                 tester\n  user:\n    token: sesame\n",
                self.port
            )
            .as_bytes(),
        )
    }

    fn take(&self) -> Vec<Seen> {
        std::mem::take(&mut *self.seen.lock().unwrap())
    }
}

fn serve(stream: Box<dyn Stream>, objects: &Value, seen: &Mutex<Vec<Seen>>) {
    let mut reader = BufReader::new(stream);
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let mut parts = line.split_whitespace();
        let (method, path) = (
            parts.next().unwrap_or_default().to_owned(),
            parts.next().unwrap_or_default().to_owned(),
        );
        let (mut length, mut content_type, mut authorization) = (0usize, None, None);
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).is_err() {
                return;
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            let (name, value) = h.split_once(':').unwrap();
            match name.to_ascii_lowercase().as_str() {
                "content-length" => length = value.trim().parse().unwrap(),
                "content-type" => content_type = Some(value.trim().to_owned()),
                "authorization" => authorization = Some(value.trim().to_owned()),
                "transfer-encoding" => panic!("chunked request bodies are not expected"),
                _ => {}
            }
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body).unwrap();
        let body: Option<Value> =
            (!body.is_empty()).then(|| serde_json::from_slice(&body).unwrap());
        seen.lock().unwrap().push(Seen {
            method: method.clone(),
            path: path.clone(),
            content_type,
            authorization,
            body,
        });
        let (status, reply) = respond(&method, &path, objects);
        let reply = reply.to_string();
        let head = format!(
            "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            reply.len()
        );
        let out = reader.get_mut();
        if out.write_all(head.as_bytes()).is_err()
            || out.write_all(reply.as_bytes()).is_err()
            || out.flush().is_err()
        {
            return;
        }
    }
}

/// The API server's answers for the paths the executor uses, from `objects`.
fn respond(method: &str, path: &str, objects: &Value) -> (&'static str, Value) {
    let items = objects["items"].as_array().unwrap();
    let find = |kind: &str, name: &str| {
        items
            .iter()
            .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
            .cloned()
    };
    let not_found = |what: &str| {
        (
            "404 Not Found",
            json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                   "message": format!("{what} not found"), "reason": "NotFound", "code": 404}),
        )
    };
    let found = |o: Option<Value>, what: &str| o.map_or_else(|| not_found(what), |o| ("200 OK", o));
    let route = path.split('?').next().unwrap();
    // API priority and fairness turning the first read of this pod away.
    static THROTTLED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if method == "GET"
        && route == "/api/v1/namespaces/shop/pods/web-59b4d2-busy1"
        && !THROTTLED.swap(true, std::sync::atomic::Ordering::SeqCst)
    {
        return (
            "429 Too Many Requests",
            json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                   "message": "Too many requests, please try again later.",
                   "reason": "TooManyRequests", "code": 429}),
        );
    }
    if let Some(name) = route.strip_prefix("/api/v1/namespaces/shop/pods/") {
        return match method {
            "GET" | "DELETE" => found(find("Pod", name), name),
            _ => not_found(path),
        };
    }
    if route == "/apis/apps/v1/namespaces/shop/replicasets" && method == "GET" {
        assert!(path.ends_with("?labelSelector=app%3Dweb"), "{path}");
        let rss: Vec<Value> = items
            .iter()
            .filter(|o| o["kind"] == "ReplicaSet")
            .cloned()
            .collect();
        return (
            "200 OK",
            json!({"apiVersion": "apps/v1", "kind": "ReplicaSetList",
                   "metadata": {"resourceVersion": "90300"}, "items": rss}),
        );
    }
    let Some(rest) = route.strip_prefix("/apis/apps/v1/namespaces/shop/deployments/") else {
        return not_found(path);
    };
    match (method, rest) {
        ("GET", name) => found(find("Deployment", name), name),
        ("PATCH", "web/scale") => (
            "200 OK",
            json!({"kind": "Scale", "apiVersion": "autoscaling/v1",
                   "metadata": {"name": "web", "namespace": "shop"},
                   "spec": {"replicas": 4}, "status": {"replicas": 3}}),
        ),
        ("PATCH", "slow/scale") => {
            // Never answers in time: the test kills the executor meanwhile.
            std::thread::sleep(Duration::from_secs(60));
            not_found(path)
        }
        ("PATCH", "flaky/scale") => (
            // What the API server answers when a write outlives its request timeout: the
            // write may still be committed.
            "504 Gateway Timeout",
            json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                   "message": "Timeout: request did not complete within the allotted timeout",
                   "reason": "Timeout", "code": 504}),
        ),
        ("PATCH", "web") => found(find("Deployment", "web"), "web"),
        ("PATCH", "stale") => (
            "422 Unprocessable Entity",
            json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                   "message": "the server rejected our request due to an error in our request",
                   "reason": "Invalid", "code": 422}),
        ),
        _ => not_found(path),
    }
}

impl From<&Value> for Seen {
    /// A planned request as the server should see it.
    fn from(v: &Value) -> Self {
        Seen {
            method: v["method"].as_str().unwrap().to_owned(),
            path: v["path"].as_str().unwrap().to_owned(),
            content_type: v["contentType"].as_str().map(str::to_owned),
            authorization: Some("Bearer sesame".to_owned()),
            body: v.get("body").cloned(),
        }
    }
}

#[test]
fn apply_sends_exactly_the_dry_run_requests() {
    let dir = Dir::new("apply");
    let mut objects = cluster();
    // A deployment whose patch the server refuses (as when the resourceVersion test fails).
    let mut stale = objects["items"][0].clone();
    stale["metadata"]["name"] = "stale".into();
    objects["items"].as_array_mut().unwrap().push(stale);
    let server = FakeApiServer::start(objects.clone());
    let kubeconfig = server.kubeconfig(&dir);
    let state = dir.file("cluster.json", objects.to_string().as_bytes());

    let actions = [
        scale(4),
        restart("web-59b4d2-qx7zp"),
        json!({"type": "rollback_deployment", "namespace": "shop", "name": "web"}),
    ];
    let mut n = 0;
    for action in &actions {
        let (out, planned) = execute(&dir, &sign(action), &["--cluster-state", p(&state)]);
        assert!(out.status.success(), "{}", stderr(&out));
        let (out, applied) = execute(
            &dir,
            &sign(action),
            &["--apply", "--kubeconfig", p(&kubeconfig)],
        );
        // One dry-run record; the applied action writes `in_progress` first, then its outcome.
        n += 3;
        assert!(out.status.success(), "{action}: {}", stderr(&out));
        assert_eq!(applied["outcome"], "applied");
        assert_eq!(applied["execution"]["executor"], "kube");
        // The same requests, as planned and as printed ...
        assert_eq!(applied["execution"]["reads"], planned["execution"]["reads"]);
        assert_eq!(
            applied["execution"]["writes"],
            planned["execution"]["writes"]
        );
        // ... and as received by the server, in order, with the kubeconfig's token.
        let expected: Vec<Seen> = planned["execution"]["reads"]
            .as_array()
            .unwrap()
            .iter()
            .chain(planned["execution"]["writes"].as_array().unwrap())
            .map(Seen::from)
            .collect();
        assert_eq!(server.take(), expected, "{action}");
        let recs = records(&dir);
        let (started, rec) = (&recs[recs.len() - 2], &recs[recs.len() - 1]);
        assert_eq!(started["status"], "in_progress");
        assert_eq!(
            started["result"],
            json!({"executor": "kube", "outcome": "started"})
        );
        assert_eq!(
            started["policyDecision"]["envelope"],
            rec["policyDecision"]["envelope"]
        );
        assert_eq!(rec["policyDecision"]["startedSeq"], started["seq"]);
        assert_eq!(rec["status"], "completed");
        assert_eq!(rec["result"]["executor"], "kube");
        assert_eq!(rec["result"]["outcome"], "applied");
    }

    // A pod that is gone: GET 404 → failed, audited, exit 3, nothing deleted.
    let (out, json) = execute(
        &dir,
        &sign(&restart("web-59b4d2-gone1")),
        &["--apply", "--kubeconfig", p(&kubeconfig)],
    );
    n += 2;
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert_eq!(json["outcome"], "failed");
    assert!(
        json["message"].as_str().unwrap().contains("not found"),
        "{json}"
    );
    assert!(server.take().iter().all(|s| s.method == "GET"));
    assert_eq!(last_record(&dir)["status"], "failed");

    // The server refuses the patch: the API error is reported and audited.
    let (out, json) = execute(
        &dir,
        &sign(&json!({"type": "rollback_deployment", "namespace": "shop", "name": "stale"})),
        &["--apply", "--kubeconfig", p(&kubeconfig)],
    );
    n += 2;
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let message = json["message"].as_str().unwrap();
    assert!(
        message.starts_with("PATCH /apis/apps/v1/namespaces/shop/deployments/stale: 422 Invalid"),
        "{message}"
    );
    let rec = last_record(&dir);
    assert_eq!(rec["status"], "failed");
    assert_eq!(rec["errorMessage"], message);
    let seen = server.take();
    assert_eq!(seen.len(), 3, "{seen:?}");
    assert_eq!(seen[2].method, "PATCH");

    // A bare pod is refused before anything is sent.
    let (out, json) = execute(
        &dir,
        &sign(&restart("debug-shell")),
        &["--apply", "--kubeconfig", p(&kubeconfig)],
    );
    n += 2;
    assert_rejected_after_admission(&dir, &out, &json);
    assert!(server.take().iter().all(|s| s.method == "GET"));

    // An unreachable API server: failed, not hung (connection refused).
    let dead = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let dead_config = dir.file(
        "dead-kubeconfig",
        std::fs::read_to_string(&kubeconfig)
            .unwrap()
            .replace(&server.port.to_string(), &dead.to_string())
            .as_bytes(),
    );
    let (out, _) = execute(
        &dir,
        &sign(&scale(1)),
        &[
            "--apply",
            "--kubeconfig",
            p(&dead_config),
            "--timeout",
            "20s",
        ],
    );
    n += 2;
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert_log_intact(&dir, n);
}

#[test]
fn an_executor_killed_mid_apply_leaves_its_admission_on_record() {
    let dir = Dir::new("killed");
    let mut objects = cluster();
    let mut slow = objects["items"][0].clone();
    slow["metadata"]["name"] = "slow".into();
    objects["items"].as_array_mut().unwrap().push(slow);
    let server = FakeApiServer::start(objects);
    let kubeconfig = server.kubeconfig(&dir);
    let key = dir.path("key");
    let log = dir.log();
    let rate = ["--rate", "scale_deployment=1/300s"];
    let mut action = json!({"type": "scale_deployment", "namespace": "shop", "name": "slow",
                            "params": {"replicas": 9}, "idempotency_key": "incident-99"});
    let envelope = sign(&action);
    let mut args = vec![
        "execute",
        "--key-file",
        p(&key),
        "--kid",
        KID,
        "--allow-namespace",
        "shop",
        "--audit-log",
        p(&log),
        "--apply",
        "--kubeconfig",
        p(&kubeconfig),
        "-",
    ];
    args.extend_from_slice(&rate);
    let mut child = spawn(&args, Some(envelope.as_bytes()));
    // The server holds the PATCH; kill -9 the executor while it waits for the answer.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !server
        .seen
        .lock()
        .unwrap()
        .iter()
        .any(|s| s.method == "PATCH")
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the PATCH never arrived"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();

    // The write-ahead record is there; the outcome is unknown.
    let recs = records(&dir);
    assert_eq!(recs.len(), 1);
    assert_eq!(recs[0]["status"], "in_progress");
    assert_log_intact(&dir, 1);
    // The envelope cannot be replayed ...
    let (out, json) = execute(&dir, &envelope, &rate);
    assert_rejected(&dir, &out, &json, "CONFLICT");
    // ... a retry under the same idempotency key is not run again by itself ...
    let (out, json) = execute(&dir, &sign(&action), &rate);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(json["outcome"], "duplicate");
    // ... and the attempt used up the rate limit.
    action["idempotency_key"] = "incident-100".into();
    let (out, json) = execute(&dir, &sign(&action), &rate);
    assert_rejected(&dir, &out, &json, "RATE_LIMIT_EXCEEDED");
    assert_log_intact(&dir, 4);
}

#[test]
fn writes_with_an_unknown_outcome_keep_their_idempotency_key() {
    let dir = Dir::new("unknown");
    let mut objects = cluster();
    for name in ["flaky", "slow"] {
        let mut d = objects["items"][0].clone();
        d["metadata"]["name"] = name.into();
        objects["items"].as_array_mut().unwrap().push(d);
    }
    let mut stale = objects["items"][0].clone();
    stale["metadata"]["name"] = "stale".into();
    objects["items"].as_array_mut().unwrap().push(stale);
    let server = FakeApiServer::start(objects);
    let kubeconfig = server.kubeconfig(&dir);
    let apply = [
        "--apply",
        "--kubeconfig",
        p(&kubeconfig),
        "--timeout",
        "10s",
    ];
    let keyed = |name: &str, key: &str| {
        json!({"type": "scale_deployment", "namespace": "shop", "name": name,
               "params": {"replicas": 2}, "idempotency_key": key})
    };

    // A 504 on a write: the API server may have committed it. It is sent once (kube's
    // client would retry it by default), and the outcome is unknown, not "failed".
    let (out, json) = execute(&dir, &sign(&keyed("flaky", "k-504")), &apply);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert_eq!(json["outcome"], "unknown", "{json}");
    assert!(
        stderr(&out).contains("may have been applied"),
        "{}",
        stderr(&out)
    );
    let seen = server.take();
    assert_eq!(
        seen.iter().filter(|s| s.method == "PATCH").count(),
        1,
        "{seen:?}"
    );
    let rec = last_record(&dir);
    assert_eq!(rec["status"], "failed");
    assert_eq!(rec["result"]["outcome"], "unknown");
    // So a retry under the same key is not run again by itself.
    let (out, json) = execute(&dir, &sign(&keyed("flaky", "k-504")), &apply);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(json["outcome"], "duplicate");
    assert!(server.take().is_empty());

    // The PATCH was sent and never answered within --timeout: unknown as well.
    let short = ["--apply", "--kubeconfig", p(&kubeconfig), "--timeout", "2s"];
    let (out, json) = execute(&dir, &sign(&keyed("slow", "k-slow")), &short);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert_eq!(json["outcome"], "unknown", "{json}");
    let (out, json) = execute(&dir, &sign(&keyed("slow", "k-slow")), &short);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(json["outcome"], "duplicate");
    server.take();

    // A write the API server refused (4xx) was not applied: failed, and the key is free
    // for a retry, which is executed (and refused again).
    let rollback = json!({"type": "rollback_deployment", "namespace": "shop", "name": "stale",
                          "idempotency_key": "k-422"});
    for _ in 0..2 {
        let (out, json) = execute(&dir, &sign(&rollback), &apply);
        assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
        assert_eq!(json["outcome"], "failed", "{json}");
        assert_eq!(last_record(&dir)["status"], "failed");
        assert!(last_record(&dir)["result"].is_null());
    }
    assert_eq!(
        server.take().iter().filter(|s| s.method == "PATCH").count(),
        2
    );
    // in_progress + outcome for each of the four executed attempts, one record for each
    // of the two duplicates.
    assert_log_intact(&dir, 10);
}

#[test]
fn a_throttled_read_is_retried() {
    // Writes are sent once (above); reads are safe to repeat and keep kube's retry of
    // 429/503/504 answers, so a busy API server does not fail the action.
    let dir = Dir::new("throttled");
    let mut objects = cluster();
    let mut pod = objects["items"][3].clone();
    pod["metadata"]["name"] = "web-59b4d2-busy1".into();
    objects["items"].as_array_mut().unwrap().push(pod);
    let server = FakeApiServer::start(objects);
    let kubeconfig = server.kubeconfig(&dir);
    let (out, json) = execute(
        &dir,
        &sign(&restart("web-59b4d2-busy1")),
        &[
            "--apply",
            "--kubeconfig",
            p(&kubeconfig),
            "--timeout",
            "20s",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(json["outcome"], "applied");
    let methods: Vec<String> = server.take().into_iter().map(|s| s.method).collect();
    assert_eq!(methods, ["GET", "GET", "DELETE"]);
}

/// A private CA and a `localhost` server certificate signed by it.
fn private_ca() -> (String, Arc<rustls::ServerConfig>) {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca_params, ca_key).unwrap();
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .signed_by(&leaf_key, &ca)
        .unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(
        vec![leaf.der().clone()],
        rustls::pki_types::PrivateKeyDer::try_from(leaf_key.serialize_der()).unwrap(),
    )
    .unwrap();
    (ca.pem(), Arc::new(config))
}

#[test]
fn apply_over_tls_checks_the_api_servers_certificate() {
    use base64::Engine as _;
    let dir = Dir::new("tls");
    let (ca_pem, server_config) = private_ca();
    let server = FakeApiServer::start_with(cluster(), Some(server_config));
    let kubeconfig_for = |name: &str, ca: &str| {
        let ca = base64::engine::general_purpose::STANDARD.encode(ca);
        dir.file(
            name,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: tls\n  cluster:\n    \
                 server: https://localhost:{}\n    certificate-authority-data: {ca}\n\
                 contexts:\n- name: tls\n  context:\n    cluster: tls\n    user: tester\n\
                 current-context: tls\nusers:\n- name: tester\n  user:\n    token: sesame\n",
                server.port
            )
            .as_bytes(),
        )
    };
    // The right CA: applied over TLS (rustls with ring, the workspace's one provider).
    let good = kubeconfig_for("kubeconfig", &ca_pem);
    let (out, json) = execute(
        &dir,
        &sign(&scale(4)),
        &["--apply", "--kubeconfig", p(&good)],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(json["outcome"], "applied");
    let seen = server.take();
    assert_eq!(seen.len(), 1);
    assert_eq!(
        seen[0].path,
        "/apis/apps/v1/namespaces/shop/deployments/web/scale"
    );
    // Another CA: the certificate is refused, nothing is sent, the action failed.
    let (other_ca, _) = private_ca();
    let bad = kubeconfig_for("bad-kubeconfig", &other_ca);
    let (out, json) = execute(
        &dir,
        &sign(&scale(4)),
        &["--apply", "--kubeconfig", p(&bad)],
    );
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert_eq!(json["outcome"], "failed");
    assert!(
        json["message"]
            .as_str()
            .unwrap()
            .contains("invalid peer certificate"),
        "{json}"
    );
    assert!(server.take().is_empty());
    assert_eq!(last_record(&dir)["status"], "failed");
    assert_log_intact(&dir, 4);
}
