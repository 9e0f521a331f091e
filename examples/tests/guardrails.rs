//! The `kubesafe guardrails`, `pss` and `rbac` subcommands, run as the built
//! binary.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr
)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use kubesafe_guardrails::netpol::{GuardrailsConfig, generate};
use serde_json::Value;

fn kubesafe(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kubesafe"))
        .args(args)
        .output()
        .expect("runs the binary")
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8(o.stderr.clone()).unwrap()
}

/// Exit code 2 and exactly one `kubesafe: error:` line on stderr.
fn assert_bad_input(o: &Output, needle: &str) {
    assert_eq!(o.status.code(), Some(2), "stderr: {}", stderr(o));
    let err = stderr(o);
    assert_eq!(err.lines().count(), 1, "one error line: {err}");
    assert!(err.starts_with("kubesafe: error: "), "{err}");
    assert!(err.contains(needle), "{err:?} should mention {needle:?}");
    assert!(o.stdout.is_empty(), "nothing on stdout: {}", stdout(o));
}

fn scratch(name: &str, content: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("guardrails-cli");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, content).unwrap();
    path
}

fn corpus() -> Option<PathBuf> {
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

const CONFIG: &str = "namespaces: [shop, payments]\npodSecurity: {enforce: restricted, version: v1.33}\napiServer: {endpoints: [10.0.0.10]}\n";

#[test]
fn guardrails_generate_prints_the_bundle() {
    let path = scratch("config.yaml", CONFIG);
    let o = kubesafe(&["guardrails", "generate", path.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let expected = generate(&GuardrailsConfig::from_yaml(CONFIG).unwrap())
        .unwrap()
        .to_yaml()
        .unwrap();
    assert_eq!(stdout(&o), expected);
    // Byte-stable: a second run prints the same bytes.
    assert_eq!(
        kubesafe(&["guardrails", "generate", path.to_str().unwrap()]).stdout,
        o.stdout
    );
    let docs = kubesafe_guardrails::yaml::documents(&stdout(&o)).unwrap();
    let kinds: Vec<&str> = docs.iter().map(|d| d["kind"].as_str().unwrap()).collect();
    assert_eq!(&kinds[..2], ["Namespace", "Namespace"]);
    assert!(kinds[2..].iter().all(|k| *k == "NetworkPolicy"));
}

#[test]
fn guardrails_generate_rejects_bad_configs() {
    let typo = scratch("typo.yaml", "namespaces: [shop]\negresProxy: {}\n");
    assert_bad_input(
        &kubesafe(&["guardrails", "generate", typo.to_str().unwrap()]),
        "egresProxy",
    );
    let bad = scratch(
        "bad-cidr.yaml",
        "namespaces: [shop]\napiServer: {endpoints: [10.0.0.1/8]}\n",
    );
    assert_bad_input(
        &kubesafe(&["guardrails", "generate", bad.to_str().unwrap()]),
        "apiServer.endpoints[0]",
    );
    assert_bad_input(
        &kubesafe(&["guardrails", "generate", "/nonexistent/config.yaml"]),
        "/nonexistent/config.yaml",
    );
}

const WORKLOADS: &str = r#"apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: app, image: nginx}]
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec: {ports: [{port: 80}]}
---
apiVersion: batch/v1
kind: CronJob
metadata: {name: backup}
spec:
  schedule: "0 3 * * *"
  jobTemplate:
    spec:
      template:
        spec:
          restartPolicy: OnFailure
          hostNetwork: true
          containers: [{name: backup, image: restic}]
"#;

#[test]
fn pss_check_json_reports_every_document() {
    let path = scratch("workloads.yaml", WORKLOADS);
    let file = path.to_str().unwrap();
    let o = kubesafe(&[
        "pss",
        "check",
        "--level",
        "baseline",
        "--version",
        "v1.33",
        "--format",
        "json",
        file,
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let report: Value = serde_json::from_str(&stdout(&o)).unwrap();
    let entries = report.as_array().unwrap();
    assert_eq!(entries.len(), 3);
    let summary: Vec<(String, String, bool)> = entries
        .iter()
        .map(|e| {
            assert_eq!(e["file"], Value::String(file.to_string()));
            (
                e["kind"].as_str().unwrap().to_string(),
                e["name"].as_str().unwrap().to_string(),
                e["allowed"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("Deployment".into(), "web".into(), true),
            ("Service".into(), "web".into(), true),
            ("CronJob".into(), "backup".into(), false),
        ]
    );
    assert_eq!(
        entries[2]["violations"],
        serde_json::json!([{"check": "hostNamespaces", "message": "host namespaces (hostNetwork=true)"}])
    );
    // Field order as documented.
    let first = stdout(&o);
    let pos = |k: &str| first.find(&format!("\"{k}\"")).unwrap();
    assert!(
        pos("file") < pos("kind")
            && pos("kind") < pos("name")
            && pos("name") < pos("allowed")
            && pos("allowed") < pos("violations")
    );

    let o = kubesafe(&[
        "pss",
        "check",
        "--level",
        "restricted",
        "--version",
        "v1.33",
        file,
    ]);
    assert_eq!(o.status.code(), Some(1));
    let text = stdout(&o);
    assert!(
        text.contains("Deployment/web: violates PodSecurity \"restricted:v1.33\""),
        "{text}"
    );
    assert!(text.contains("  runAsNonRoot: runAsNonRoot != true (pod or container \"app\" must set securityContext.runAsNonRoot=true)"), "{text}");
    assert!(text.contains("Service/web: not a workload"), "{text}");
}

#[test]
fn pss_check_bad_input_exits_2() {
    let pod = scratch(
        "pod.yaml",
        "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {containers: [{name: a}]}\n",
    );
    let p = pod.to_str().unwrap();
    assert_bad_input(
        &kubesafe(&["pss", "check", "--level", "strict", "--version", "v1.33", p]),
        "--level",
    );
    assert_bad_input(
        &kubesafe(&[
            "pss",
            "check",
            "--level",
            "baseline",
            "--version",
            "1.33.2",
            p,
        ]),
        "--version",
    );
    let broken = scratch(
        "broken.yaml",
        "apiVersion: v1\nkind: Pod\nspec: [unclosed\n",
    );
    assert_bad_input(
        &kubesafe(&[
            "pss",
            "check",
            "--level",
            "baseline",
            "--version",
            "v1.33",
            p,
            broken.to_str().unwrap(),
        ]),
        "broken.yaml",
    );
    let wrong_type = scratch(
        "wrong-type.yaml",
        "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {containers: [{name: a, securityContext: {privileged: \"true\"}}]}\n",
    );
    assert_bad_input(
        &kubesafe(&[
            "pss",
            "check",
            "--level",
            "baseline",
            "--version",
            "v1.33",
            wrong_type.to_str().unwrap(),
        ]),
        "spec.containers[0].securityContext.privileged: expected boolean, found string",
    );
    let duplicate = scratch("duplicate.yaml", "apiVersion: v1\nkind: Pod\nkind: Pod\n");
    assert_bad_input(
        &kubesafe(&[
            "pss",
            "check",
            "--level",
            "baseline",
            "--version",
            "v1.33",
            duplicate.to_str().unwrap(),
        ]),
        "duplicate.yaml",
    );
    assert_bad_input(
        &kubesafe(&[
            "pss",
            "check",
            "--level",
            "baseline",
            "--version",
            "v1.33",
            "/nonexistent.yaml",
        ]),
        "/nonexistent.yaml",
    );
}

/// `kubectl get -o yaml` prints a `kind: List`; its items are checked.
#[test]
fn pss_check_reads_kubectl_lists() {
    let list = r#"apiVersion: v1
kind: List
metadata: {resourceVersion: ""}
items:
- apiVersion: v1
  kind: Pod
  metadata: {name: a, namespace: shop}
  spec: {containers: [{name: c, image: nginx}]}
- apiVersion: v1
  kind: Pod
  metadata: {name: b, namespace: shop}
  spec: {hostPID: true, containers: [{name: c, image: nginx}]}
"#;
    let path = scratch("list.yaml", list);
    let o = kubesafe(&[
        "pss",
        "check",
        "--level",
        "baseline",
        "--version",
        "v1.33",
        "--format",
        "json",
        path.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let report: Value = serde_json::from_str(&stdout(&o)).unwrap();
    let names: Vec<(&str, bool)> = report
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["name"].as_str().unwrap(), e["allowed"].as_bool().unwrap()))
        .collect();
    assert_eq!(names, [("a", true), ("b", false)]);
}

/// The CLI agrees with the upstream fixtures, many files per invocation.
#[test]
fn pss_check_over_corpus_directories() {
    let Some(root) = corpus() else { return };
    for (level, version) in [
        ("baseline", "v1.37"),
        ("restricted", "v1.37"),
        ("restricted", "v1.24"),
    ] {
        for (outcome, code) in [("pass", 0), ("fail", 1)] {
            let dir = root.join(level).join(version).join(outcome);
            let mut files: Vec<String> = std::fs::read_dir(&dir)
                .unwrap()
                .map(|e| e.unwrap().path().display().to_string())
                .collect();
            files.sort();
            let mut args = vec![
                "pss",
                "check",
                "--level",
                level,
                "--version",
                version,
                "--format",
                "json",
            ];
            args.extend(files.iter().map(String::as_str));
            let o = kubesafe(&args);
            assert_eq!(
                o.status.code(),
                Some(code),
                "{level}/{version}/{outcome}: {}",
                stderr(&o)
            );
            let report: Value = serde_json::from_str(&stdout(&o)).unwrap();
            let entries = report.as_array().unwrap();
            assert_eq!(entries.len(), files.len());
            for e in entries {
                assert_eq!(e["allowed"].as_bool(), Some(outcome == "pass"), "{e}");
            }
        }
    }
}

#[test]
fn pss_harden_output_passes_check() {
    let path = scratch("harden-in.yaml", WORKLOADS);
    let o = kubesafe(&[
        "pss",
        "harden",
        "--level",
        "restricted",
        "--version",
        "v1.33",
        "--read-only-root",
        path.to_str().unwrap(),
    ]);
    // The CronJob's hostNetwork cannot be fixed automatically.
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains("unfixable: "), "{err}");
    assert!(
        err.contains("(CronJob/backup): hostNamespaces: host namespaces (hostNetwork=true)"),
        "{err}"
    );
    assert!(err.contains("changed: "), "{err}");
    let hardened = scratch("harden-out.yaml", &stdout(&o));
    let o = kubesafe(&[
        "pss",
        "check",
        "--level",
        "restricted",
        "--version",
        "v1.33",
        "--format",
        "json",
        hardened.to_str().unwrap(),
    ]);
    let report: Value = serde_json::from_str(&stdout(&o)).unwrap();
    let allowed: Vec<bool> = report
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["allowed"].as_bool().unwrap())
        .collect();
    assert_eq!(allowed, [true, true, false]);
    let cronjob_checks: Vec<&str> = report[2]["violations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["check"].as_str().unwrap())
        .collect();
    assert_eq!(cronjob_checks, ["hostNamespaces"]);

    // A fixable workload alone: exit 0, and hardening again changes nothing.
    let web = scratch("web.yaml", WORKLOADS.split("---").next().unwrap());
    let o = kubesafe(&[
        "pss",
        "harden",
        "--level",
        "restricted",
        "--proxy",
        "http://egress-proxy.egress-system:3128",
        web.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stdout(&o).contains("HTTPS_PROXY"));
    let once = scratch("web-once.yaml", &stdout(&o));
    let twice = kubesafe(&[
        "pss",
        "harden",
        "--level",
        "restricted",
        "--proxy",
        "http://egress-proxy.egress-system:3128",
        once.to_str().unwrap(),
    ]);
    assert_eq!(twice.status.code(), Some(0));
    assert_eq!(twice.stdout, o.stdout);
    assert!(twice.stderr.is_empty(), "{}", stderr(&twice));

    assert_bad_input(
        &kubesafe(&[
            "pss",
            "harden",
            "--level",
            "restricted",
            "--run-as-user",
            "0",
            web.to_str().unwrap(),
        ]),
        "run_as_user",
    );
}

#[test]
fn rbac_generates_least_privilege_objects() {
    let o = kubesafe(&[
        "rbac",
        "restart-pod",
        "rollback",
        "drain",
        "--name",
        "remediator",
        "--namespace",
        "ops",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let docs = kubesafe_guardrails::yaml::documents(&stdout(&o)).unwrap();
    let kinds: Vec<&str> = docs.iter().map(|d| d["kind"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        [
            "ServiceAccount",
            "Role",
            "RoleBinding",
            "ClusterRole",
            "ClusterRoleBinding"
        ]
    );
    let text = stdout(&o);
    assert!(
        !text.contains('*') && !text.contains("update") && !text.contains("deployments/rollback"),
        "{text}"
    );
    assert!(text.contains("pods/eviction"));
    assert_bad_input(&kubesafe(&["rbac", "deploy"]), "unknown action \"deploy\"");
    assert_bad_input(
        &kubesafe(&["rbac", "scale", "--namespace", "Ops"]),
        "\"Ops\"",
    );
}
