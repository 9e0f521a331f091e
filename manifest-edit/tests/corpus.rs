//! Snapshot tests: the CIS edits that apply to each of the 46 real-world files of
//! `../shared/corpus/manifests/`, as unified diffs (or the error when the edit must be
//! refused). Beside the snapshot, every successful edit is checked to be idempotent and to
//! touch only lines that mention what it edits.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr
)]

mod common;

use std::fmt::Write as _;

use kubesafe_manifest_edit::{
    Edit, Error, HostPathMount, KeyPath, Manifest, Op, ScalarValue, line_changes, unified_diff,
};

#[derive(Debug, Clone, Copy, PartialEq)]
enum Profile {
    ApiServer,
    ControllerManager,
    Scheduler,
    Etcd,
    KubeletConfig,
    /// A static pod that is not a control-plane component.
    Other,
}

/// Which component each corpus file is (decided by reading each file).
fn profile(file: &str) -> Profile {
    use Profile::*;
    match file {
        "MULTIDOC-handwritten-v1.30-kube-apiserver-plus-rbac.yaml"
        | "gce-v1.9-kube-apiserver-license-header.yaml"
        | "handwritten-v1.29-kube-apiserver-minimal-no-eol.yaml"
        | "k8s-docs-ha-kube-apiserver-sh-c.yaml"
        | "kics-flow-args-apiserver-alwaysallow.yaml"
        | "kind-v1.27-kube-apiserver-INVALID-bad-indent.yaml"
        | "kind-v1.27-kube-apiserver-kmsv2.yaml"
        | "kind-v1.32-kube-apiserver-audit-cis.yaml"
        | "kind-v1.32-kube-apiserver-blankline.yaml"
        | "kops-nodeup-golden-v1.18-tasks-kube-apiserver.yaml"
        | "kubeadm-v1.10-kube-apiserver.yaml"
        | "kubeadm-v1.11-kube-apiserver.yaml"
        | "kubeadm-v1.16-kube-apiserver.yaml"
        | "kubeadm-v1.17-kube-apiserver-kms.yaml"
        | "kubeadm-v1.25-kube-apiserver-tracing.yaml"
        | "kubeadm-v1.26-kube-apiserver-audit.yaml"
        | "kubeadm-v1.28-kube-apiserver-inline-comments.yaml"
        | "kubeadm-v1.29-kube-apiserver-inline-comments.yaml"
        | "kubeadm-v1.7-kube-apiserver.yaml"
        | "minikube-v1.32-kube-apiserver.yaml" => ApiServer,
        "INVALID-docker-desktop-v1.29-kcm-terminal-paste.yaml"
        | "kind-v1.32-kube-controller-manager-cis.yaml"
        | "kubeadm-v1.10-kube-controller-manager.yaml"
        | "kubeadm-v1.16-kube-controller-manager.yaml"
        | "kubeadm-v1.20-kube-controller-manager.yaml" => ControllerManager,
        "handwritten-v1.30-kube-scheduler-utf8-comment.yaml"
        | "kind-v1.32-kube-scheduler-cis.yaml"
        | "kubeadm-v1.16-kube-scheduler.yaml"
        | "kubeadm-v1.30-kube-scheduler.yaml" => Scheduler,
        "INVALID-etcd-elided-with-document-end-marker.yaml"
        | "k8s-docs-ha-etcd-split-flag-values.yaml"
        | "kind-v1.32-etcd.yaml"
        | "kubeadm-v1.10-etcd.yaml"
        | "kubeadm-v1.11-etcd.yaml"
        | "kubeadm-v1.16-etcd.yaml"
        | "kubeadm-v1.25-etcd-tracing.yaml"
        | "kubeadm-v1.29-etcd-inline-comments.yaml"
        | "kubeadm-testdata-etcd-pod-null-metadata.yaml" => Etcd,
        "kubelet-config-commented-out-keys.yaml"
        | "kubelet-config-hardway-quoted.yaml"
        | "kubelet-config-kubeadm-generated.yaml"
        | "kubelet-config-v1beta1-tracing.yaml"
        | "kubeadm-testdata-kubeletcfg-duplicate-field.yaml" => KubeletConfig,
        "k8s-docs-ha-podmaster-two-containers.yaml"
        | "kops-etcd-manager-main.yaml"
        | "static-pod-kms-plugin-no-final-newline.yaml" => Other,
        other => panic!("corpus file {other} has no profile: read it and add it to `profile`"),
    }
}

/// The audit remediation of CIS 1.2.16-1.2.19: the flags and the hostPath mounts without
/// which the API server crash-loops on files it cannot see.
fn audit_edit() -> Edit {
    Edit::new()
        .set_flag("--audit-policy-file", "/etc/kubernetes/audit-policy.yaml")
        .set_flag("--audit-log-path", "/var/log/kubernetes/audit/audit.log")
        .ensure_host_path_mount(
            HostPathMount::new(
                "audit",
                "/etc/kubernetes/audit-policy.yaml",
                "/etc/kubernetes/audit-policy.yaml",
            )
            .path_type("File")
            .read_only(true),
        )
        .ensure_host_path_mount(
            HostPathMount::new(
                "audit-log",
                "/var/log/kubernetes/audit/",
                "/var/log/kubernetes/audit/",
            )
            .path_type("DirectoryOrCreate"),
        )
}

fn path(p: &str) -> KeyPath {
    p.parse().unwrap()
}

/// The edits for a file: (title, edit).
fn edits(file: &str, text: &str) -> Vec<(String, Edit)> {
    let one = |e: Edit| {
        let ops = e
            .ops
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ");
        match &e.container {
            Some(c) => (format!("[container {c}] {ops}"), e),
            None => (ops, e),
        }
    };
    match profile(file) {
        Profile::ApiServer => {
            // Pre-1.10 manifests use --admission-control; kube-apiserver refuses to start
            // with both it and --enable-admission-plugins, so the plugin goes where the
            // manifest already lists its plugins.
            let admission_flag = if text.contains("--admission-control=") {
                "--admission-control"
            } else {
                "--enable-admission-plugins"
            };
            vec![
                one(Edit::new().set_flag("--profiling", "false")),
                one(Edit::new().set_flag("--anonymous-auth", "false")),
                one(Edit::new().list_add(admission_flag, "AlwaysPullImages")),
                // The refusal a user gets when adding to the wrong list on such a manifest.
                one(Edit::new().list_add("--enable-admission-plugins", "NodeRestriction")),
                one(audit_edit()),
            ]
        }
        Profile::ControllerManager | Profile::Scheduler => {
            vec![
                one(Edit::new().set_flag("--profiling", "false")),
                one(Edit::new().set_flag("--bind-address", "127.0.0.1")),
            ]
        }
        Profile::Etcd => vec![
            one(Edit::new().set_flag("--client-cert-auth", "true")),
            one(Edit::new().set_flag("--peer-client-cert-auth", "true")),
            one(Edit::new().remove_flag("--auto-tls")),
        ],
        Profile::KubeletConfig => vec![
            one(Edit::new().set_path(
                path("authentication.anonymous.enabled"),
                ScalarValue::Bool(false),
            )),
            one(Edit::new().set_path(path("readOnlyPort"), ScalarValue::Int(0))),
            one(Edit::new().set_path(path("protectKernelDefaults"), ScalarValue::Bool(true))),
        ],
        Profile::Other => match file {
            "k8s-docs-ha-podmaster-two-containers.yaml" => vec![
                one(Edit::new().set_flag("--etcd-servers", "https://127.0.0.1:2379")),
                one(Edit::new()
                    .container("controller-manager-elector")
                    .set_flag("--etcd-servers", "https://127.0.0.1:2379")),
                one(Edit::new().container("kube-apiserver").set_flag("--v", "2")),
            ],
            "kops-etcd-manager-main.yaml" => vec![
                one(Edit::new().set_flag("--v", "2")),
                one(Edit::new().set_flag("--also-stdout", "false")),
                one(Edit::new().list_add("--volume-tag", "x")),
            ],
            "static-pod-kms-plugin-no-final-newline.yaml" => vec![
                one(Edit::new().set_flag("--v", "2")),
                one(Edit::new().ensure_host_path_mount(
                    HostPathMount::new("kms", "/var/run/kmsplugin", "/var/run/kmsplugin")
                        .path_type("DirectoryOrCreate"),
                )),
            ],
            other => panic!("no edits for {other}"),
        },
    }
}

/// Words every changed line of an operation's diff must contain one of.
fn allowed_tokens(op: &Op) -> Vec<String> {
    match op {
        Op::SetFlag { flag, value } => vec![flag.clone(), value.clone()],
        Op::RemoveFlag { flag } | Op::ListAdd { flag, .. } | Op::ListRemove { flag, .. } => {
            vec![flag.clone()]
        }
        Op::SetPath { path, .. } => path.segments().to_vec(),
        Op::EnsureHostPathMount(m) => vec![
            format!("type: {}", m.path_type.clone().unwrap_or_default()),
            m.name.clone(),
            m.host_path.clone(),
            m.mount_path.clone(),
            "hostPath:".into(),
            "volumes:".into(),
            "volumeMounts:".into(),
            "readOnly: true".into(),
        ],
        _ => panic!("unexpected op {op:?}"),
    }
}

/// Every changed line names what the edit is about (a line that only gained or lost its
/// final line break is fine: appending after a last line without one).
fn assert_local(file: &str, edit: &Edit, before: &str, after: &str) {
    let tokens: Vec<String> = edit.ops.iter().flat_map(allowed_tokens).collect();
    for c in line_changes(before, after) {
        if c.old.is_some() && c.old == c.new {
            continue;
        }
        // A replaced line must mention the subject on one side (a flow list gains an
        // item on its one line); an added or removed line must mention it.
        let sides: Vec<&String> = [&c.old, &c.new].into_iter().flatten().collect();
        assert!(
            sides
                .iter()
                .any(|side| tokens.iter().any(|t| side.contains(t.as_str()))),
            "{file}: `{edit:?}` changed line {} {sides:?}, which is not about {tokens:?}",
            c.line
        );
    }
}

fn render_error(e: &Error) -> String {
    format!("error: {e}\n")
}

#[test]
fn corpus_snapshots() {
    let Some(files) = common::corpus_files() else {
        return;
    };
    assert_eq!(files.len(), 46, "the corpus has 46 manifests");
    let mut applied_ok = 0;
    let mut refused = 0;
    for f in &files {
        let name = f.file_name().unwrap().to_str().unwrap().to_owned();
        let text = std::fs::read_to_string(f).unwrap();
        let mut out = String::new();
        let parsed = Manifest::parse_named(&name, text.clone());
        for (title, edit) in edits(&name, &text) {
            writeln!(out, "## {title}").unwrap();
            let result = match &parsed {
                Ok(m) => m.apply(&edit),
                Err(e) => {
                    refused += 1;
                    out.push_str(&render_error(e));
                    out.push('\n');
                    continue;
                }
            };
            match result {
                Err(e) => {
                    refused += 1;
                    out.push_str(&render_error(&e));
                }
                Ok(applied) => {
                    applied_ok += 1;
                    let after = applied.manifest.text();
                    if applied.changed {
                        assert_local(&name, &edit, &text, after);
                        out.push_str(&unified_diff(&name, &text, after));
                        writeln!(out, "data_changed: {}", applied.data_changed).unwrap();
                    } else {
                        assert_eq!(after, text, "{name}: unchanged means byte-identical");
                        out.push_str("(no change: already as requested)\n");
                    }
                    // Idempotence: the second application changes nothing.
                    let again = applied.manifest.apply(&edit).unwrap();
                    assert!(!again.changed, "{name}: `{title}` is not idempotent");
                    assert_eq!(again.manifest.text(), after);
                }
            }
            out.push('\n');
        }
        insta::assert_snapshot!(name.trim_end_matches(".yaml"), out);
    }
    eprintln!("corpus: {applied_ok} edits applied or already in place, {refused} refused");
}
