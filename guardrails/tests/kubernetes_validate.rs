//! Every generated object validates with `kubernetes-validate --strict` for
//! Kubernetes 1.30 through the newest version the installed validator ships.
//!
//! One validator process checks every document against every version
//! (`-k` repeats), so the Python start-up is paid once. The test requires one
//! `INFO ... passed` line per (document, version) and no `ERROR`, `WARN`
//! (a kind without a schema is only a warning there, and must fail here) or
//! `FATAL` line. Without the validator the test fails under `CI=true` and is
//! skipped with a notice otherwise.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr
)]

use std::path::PathBuf;
use std::process::Command;

use kubesafe_guardrails::netpol::{GuardrailsConfig, generate};
use kubesafe_guardrails::pss::{HardenOptions, Level, harden};
use kubesafe_guardrails::rbac::{Action, generate_rbac};
use kubesafe_guardrails::yaml;

const OLDEST_MINOR: u32 = 30;

fn validator_newest_minor() -> Option<u32> {
    let out = match Command::new("kubernetes-validate").arg("--help").output() {
        Ok(out) if out.status.success() => out,
        Ok(out) => panic!(
            "kubernetes-validate --help failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(e) => {
            if std::env::var("CI").as_deref() == Ok("true") {
                panic!(
                    "kubernetes-validate is not installed (pip install kubernetes-validate): {e}"
                );
            }
            eprintln!(
                "SKIPPED: kubernetes-validate is not installed ({e}); pip install kubernetes-validate"
            );
            return None;
        }
    };
    // argparse wraps the help text: join it before looking for the default.
    let help = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    let default = help
        .split("Defaults to ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| {
            panic!("cannot find the newest version in kubernetes-validate --help: {help}")
        });
    let minor = default
        .strip_prefix("1.")
        .and_then(|r| r.split('.').next())
        .and_then(|m| m.parse().ok())
        .unwrap_or_else(|| panic!("unexpected default version {default:?}"));
    Some(minor)
}

fn generated_documents() -> Vec<String> {
    let mut docs = Vec::new();
    let configs = [
        "namespaces: [shop]\n",
        r#"
namespaces:
  - shop
  - name: legacy
    podSecurity: {enforce: baseline, warn: restricted, audit: restricted}
podSecurity: {enforce: restricted, version: v1.33}
egressProxy: {upstreamPorts: [443]}
ingressController: {namespace: ingress-nginx, podSelector: {app.kubernetes.io/name: ingress-nginx}}
monitoring: {namespace: monitoring, ports: [9090]}
apiServer: {endpoints: [10.0.0.10, "fd00::10"], port: 6443}
"#,
        "namespaces: [a]\negressProxy: {upstreamPorts: [], ipv6: false}\ndns: {namespace: dns, podSelector: {app: coredns}}\n",
    ];
    for c in configs {
        let bundle = generate(&GuardrailsConfig::from_yaml(c).unwrap()).unwrap();
        docs.extend(
            yaml::documents(&bundle.to_yaml().unwrap())
                .unwrap()
                .iter()
                .map(|d| yaml::to_string(d).unwrap()),
        );
    }
    let rbac = generate_rbac("remediator", "kubesafe", Action::ALL).unwrap();
    docs.extend(
        yaml::documents(&rbac.to_yaml().unwrap())
            .unwrap()
            .iter()
            .map(|d| yaml::to_string(d).unwrap()),
    );
    // Hardened workloads are generated objects too.
    let deployment = serde_json::json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "shop"},
        "spec": {"selector": {"matchLabels": {"app": "web"}}, "template": {
            "metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [{"name": "app", "image": "nginx"}]}}}});
    let mut opts = HardenOptions::default();
    opts.read_only_root_filesystem = true;
    opts.proxy_url = Some("http://egress-proxy.egress-system.svc:3128".to_string());
    let hardened = harden(&deployment, Level::Restricted, &opts).unwrap();
    assert!(hardened.unfixable.is_empty());
    docs.push(yaml::to_string(&hardened.object).unwrap());
    docs
}

#[test]
fn generated_objects_validate_strictly() {
    let Some(newest) = validator_newest_minor() else {
        return;
    };
    assert!(
        newest >= OLDEST_MINOR,
        "kubernetes-validate ships schemas only up to 1.{newest}; need 1.{OLDEST_MINOR}+"
    );
    let docs = generated_documents();
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("kubernetes-validate");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("generated.yaml");
    std::fs::write(&file, yaml::join_documents(&docs)).unwrap();

    let versions: Vec<String> = (OLDEST_MINOR..=newest).map(|m| format!("1.{m}")).collect();
    let mut cmd = Command::new("kubernetes-validate");
    cmd.arg("--strict");
    for v in &versions {
        cmd.args(["-k", v]);
    }
    let out = cmd.arg(&file).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let problems: Vec<&str> = stdout.lines().filter(|l| !l.starts_with("INFO ")).collect();
    let passed = stdout
        .lines()
        .filter(|l| l.starts_with("INFO ") && l.contains(" passed "))
        .count();
    assert!(
        out.status.success() && problems.is_empty(),
        "kubernetes-validate rejected generated objects (exit {:?}):\n{}\n{}",
        out.status.code(),
        problems.join("\n"),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        passed,
        docs.len() * versions.len(),
        "expected one pass per document and version:\n{stdout}"
    );
    eprintln!(
        "{} documents x {} versions (1.{OLDEST_MINOR}..=1.{newest}) validated",
        docs.len(),
        versions.len()
    );
}
