//! `kubesafe edit` as a user runs it: the built binary on real files.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr
)]

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_kubesafe");
const WORKSPACE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
const SAMPLE: &str = "examples/samples/kube-apiserver.yaml";

fn run(dir: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8(o.stderr.clone()).unwrap()
}

/// A node layout with a copy of the bundled sample.
fn node() -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("etc/kubernetes/manifests");
    fs::create_dir_all(&dir).unwrap();
    let path = dir.join("kube-apiserver.yaml");
    fs::copy(Path::new(WORKSPACE).join(SAMPLE), &path).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
    (tmp, path)
}

/// Asserts a failure with exactly one `kubesafe: error: ...` line on stderr.
fn assert_one_line_error(o: &Output, contains: &str) {
    assert!(!o.status.success(), "expected failure, got {o:?}");
    let err = stderr(o);
    assert_eq!(err.lines().count(), 1, "one line: {err:?}");
    assert!(err.starts_with("kubesafe: error: "), "{err}");
    assert!(err.contains(contains), "{err}");
}

#[test]
fn readme_command_prints_the_diff_and_touches_nothing() {
    let before = fs::read(Path::new(WORKSPACE).join(SAMPLE)).unwrap();
    let o = run(
        Path::new(WORKSPACE),
        &["edit", SAMPLE, "--dry-run", "set", "--profiling", "false"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(
        out.starts_with(&format!("--- a/{SAMPLE}\n+++ b/{SAMPLE}\n@@ ")),
        "{out}"
    );
    assert!(out.contains("\n+    - --profiling=false\n"), "{out}");
    assert_eq!(
        out.lines()
            .filter(|l| l.starts_with('+') || l.starts_with('-'))
            .count(),
        3
    );
    assert_eq!(fs::read(Path::new(WORKSPACE).join(SAMPLE)).unwrap(), before);
}

#[test]
fn options_go_before_or_after_the_action_and_flag_value_may_be_joined() {
    let (tmp, path) = node();
    let p = path.to_str().unwrap();
    let expected = run(
        tmp.path(),
        &["edit", p, "--dry-run", "set", "--profiling", "false"],
    );
    for args in [
        vec!["edit", "--dry-run", p, "set", "--profiling", "false"],
        vec!["edit", p, "set", "--profiling", "false", "--dry-run"],
        vec!["edit", p, "set", "--profiling=false", "--dry-run"],
        vec!["edit", p, "--dry-run", "set", "profiling", "false"],
        vec!["edit", p, "--dry-run", "set", "--", "--profiling", "false"],
    ] {
        let o = run(tmp.path(), &args);
        assert!(o.status.success(), "{args:?}: {}", stderr(&o));
        assert_eq!(stdout(&o), stdout(&expected), "{args:?}");
    }
    let o = run(tmp.path(), &["edit", p, "set", "--profiling"]);
    assert_one_line_error(&o, "needs a value");
}

#[test]
fn a_real_edit_writes_backs_up_and_is_idempotent() {
    let (tmp, path) = node();
    let p = path.to_str().unwrap();
    let o = run(tmp.path(), &["edit", p, "set", "--profiling", "false"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("+    - --profiling=false"));
    let err = stderr(&o);
    assert!(
        err.contains("written") && err.contains("the kubelet will restart the static pod"),
        "{err}"
    );
    let text = fs::read_to_string(&path).unwrap();
    assert!(text.contains(
        "    - --tls-private-key-file=/etc/kubernetes/pki/apiserver.key\n    - --profiling=false\n"
    ));
    assert_eq!(
        fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let backups = tmp.path().join("etc/kubernetes/kubesafe-backups");
    assert_eq!(fs::read_dir(&backups).unwrap().count(), 1);
    // The manifest directory holds nothing else the kubelet would load.
    let visible: Vec<_> = fs::read_dir(path.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| !n.starts_with('.'))
        .collect();
    assert_eq!(visible, ["kube-apiserver.yaml"]);

    let again = run(tmp.path(), &["edit", p, "set", "--profiling=false"]);
    assert!(again.status.success());
    assert_eq!(stdout(&again), "");
    assert!(stderr(&again).contains("no change"));
    assert_eq!(fs::read_to_string(&path).unwrap(), text);
    assert_eq!(fs::read_dir(&backups).unwrap().count(), 1);
}

#[test]
fn every_action_works() {
    let (tmp, path) = node();
    let p = path.to_str().unwrap();
    let ok = |args: &[&str]| {
        let mut full = vec!["edit", p, "--no-backup"];
        full.extend_from_slice(args);
        let o = run(tmp.path(), &full);
        assert!(o.status.success(), "{args:?}: {}", stderr(&o));
        o
    };
    ok(&["list-add", "--enable-admission-plugins", "AlwaysPullImages"]);
    ok(&["list-add", "--enable-admission-plugins", "EventRateLimit"]);
    ok(&[
        "list-remove",
        "--enable-admission-plugins",
        "EventRateLimit",
    ]);
    ok(&["remove", "--enable-bootstrap-token-auth"]);
    ok(&[
        "set",
        "--audit-log-path",
        "/var/log/kubernetes/audit/audit.log",
    ]);
    ok(&[
        "mount",
        "audit-log",
        "/var/log/kubernetes/audit/",
        "/var/log/kubernetes/audit/",
        "--type",
        "DirectoryOrCreate",
    ]);
    ok(&["--container", "kube-apiserver", "set", "--v", "2"]);
    let get = |flag: &str| stdout(&ok(&["get", flag]));
    assert_eq!(
        get("--enable-admission-plugins"),
        "NodeRestriction,AlwaysPullImages\n"
    );
    assert_eq!(get("--v"), "2\n");
    let o = run(
        tmp.path(),
        &["edit", p, "get", "--enable-bootstrap-token-auth"],
    );
    assert_one_line_error(
        &o,
        "`--enable-bootstrap-token-auth` is not set in container `kube-apiserver`",
    );
    let text = fs::read_to_string(&path).unwrap();
    assert!(text.contains("    - mountPath: /var/log/kubernetes/audit/\n      name: audit-log\n"));

    // --json for get and for edits.
    let j: serde_json::Value =
        serde_json::from_str(&stdout(&ok(&["get", "--v", "--json"]))).unwrap();
    assert_eq!(j["value"], "2");
    assert_eq!(j["container"], "kube-apiserver");
    let j: serde_json::Value = serde_json::from_str(&stdout(&ok(&[
        "--json",
        "--dry-run",
        "set",
        "--profiling",
        "false",
    ])))
    .unwrap();
    assert_eq!(j["changed"], true);
    assert_eq!(j["written"], false);
    assert_eq!(j["data_changed"], true);
    assert_eq!(j["kind"], "Pod");
    assert_eq!(j["ops"][0]["op"], "set --profiling=false");
    assert!(
        j["diff"]
            .as_str()
            .unwrap()
            .contains("+    - --profiling=false")
    );
    assert_eq!(j["before_sha256"].as_str().unwrap().len(), 64);
}

#[test]
fn set_path_on_a_kubelet_config() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("config.yaml");
    fs::write(
        &path,
        "apiVersion: kubelet.config.k8s.io/v1beta1\nauthentication:\n  x509:\n    clientCAFile: /etc/kubernetes/pki/ca.crt\nkind: KubeletConfiguration\n",
    )
    .unwrap();
    let p = path.to_str().unwrap();
    for args in [
        ["set-path", "authentication.anonymous.enabled", "false"],
        ["set-path", "readOnlyPort", "0"],
        ["set-path", "clusterDomain", "cluster.local"],
    ] {
        let mut full = vec!["edit", p, "--no-backup"];
        full.extend_from_slice(&args);
        let o = run(tmp.path(), &full);
        assert!(o.status.success(), "{args:?}: {}", stderr(&o));
        assert!(
            stderr(&o).contains("takes effect when the kubelet restarts"),
            "{}",
            stderr(&o)
        );
    }
    let o = run(
        tmp.path(),
        &[
            "edit",
            p,
            "--no-backup",
            "set-path",
            "tlsMinVersion",
            "--string",
            "0",
        ],
    );
    assert!(o.status.success());
    assert_eq!(
        fs::read_to_string(&path).unwrap(),
        "apiVersion: kubelet.config.k8s.io/v1beta1\nauthentication:\n  anonymous:\n    enabled: false\n  x509:\n    clientCAFile: /etc/kubernetes/pki/ca.crt\nclusterDomain: cluster.local\nkind: KubeletConfiguration\nreadOnlyPort: 0\ntlsMinVersion: \"0\"\n"
    );
    let o = run(tmp.path(), &["edit", p, "set", "--profiling", "false"]);
    assert_one_line_error(
        &o,
        "not a Pod manifest: kind: KubeletConfiguration; its fields are set by key path (set-path)",
    );
}

#[test]
fn refusals_are_one_line_and_touch_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let p = tmp.path().join(name);
        fs::write(&p, text).unwrap();
        p
    };
    let cases = [
        (
            write("bad.yaml", "kind: Pod\nspec:\n  containers: [\n"),
            vec!["set", "--profiling", "false"],
            "bad.yaml:3:15: YAML syntax error: unclosed bracket",
        ),
        (
            write(
                "shell.yaml",
                "kind: Pod\nspec:\n  containers:\n  - name: kube-apiserver\n    command:\n    - /bin/sh\n    - -c\n    - kube-apiserver --profiling=true\n",
            ),
            vec!["set", "--profiling", "false"],
            "shell.yaml:8:7: the flags of container `kube-apiserver` are inside a shell script",
        ),
        (
            write(
                "two.yaml",
                "kind: Pod\nspec:\n  containers:\n  - name: a\n    command: [x]\n  - name: b\n    command: [y]\n",
            ),
            vec!["set", "--v", "2"],
            "two.yaml:3:3: cannot choose a container",
        ),
        (
            write(
                "dup.yaml",
                "kind: Pod\nspec:\n  containers:\n  - command:\n    - etcd\n    - --name=a\n    - --name=b\n",
            ),
            vec!["remove", "--name"],
            "dup.yaml:7:7: flag `--name` appears more than once",
        ),
        (
            write(
                "alias.yaml",
                "kind: Pod\nspec:\n  containers:\n  - command:\n    - etcd\n    - &n --name=a\n  - command:\n    - etcd-sidecar\n    - *n\n    name: side\n",
            ),
            vec!["set", "--name", "b"],
            "alias.yaml:6:10: an anchor in `command` of container",
        ),
    ];
    for (path, args, message) in cases {
        let before = fs::read(&path).unwrap();
        let p = path.to_str().unwrap();
        let mut full = vec!["edit", p];
        full.extend(args.iter().copied());
        let o = run(tmp.path(), &full);
        assert_one_line_error(&o, message);
        assert_eq!(fs::read(&path).unwrap(), before, "{p} untouched");
    }
    let entries: Vec<_> = fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        entries.len(),
        5,
        "no lock, temp or backup file: {entries:?}"
    );

    let o = run(
        tmp.path(),
        &["edit", tmp.path().to_str().unwrap(), "set", "--v", "2"],
    );
    assert_one_line_error(&o, "not a regular file (a directory)");
    std::os::unix::fs::symlink("two.yaml", tmp.path().join("link.yaml")).unwrap();
    let o = run(tmp.path(), &["edit", "link.yaml", "set", "--v", "2"]);
    assert_one_line_error(&o, "is a symbolic link to two.yaml; refusing");
    assert!(stderr(&o).contains("(--allow-symlink)"));
    let o = run(tmp.path(), &["edit", "missing.yaml", "set", "--v", "2"]);
    assert_one_line_error(
        &o,
        "missing.yaml: cannot inspect: No such file or directory",
    );
}

#[test]
fn expect_sha256_guards_against_a_changed_file() {
    let (tmp, path) = node();
    let p = path.to_str().unwrap();
    let o = run(
        tmp.path(),
        &[
            "edit",
            p,
            "--dry-run",
            "--json",
            "set",
            "--profiling",
            "false",
        ],
    );
    let j: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    let seen = j["before_sha256"].as_str().unwrap().to_owned();
    let wrong = "0".repeat(64);
    let o = run(
        tmp.path(),
        &[
            "edit",
            p,
            "--expect-sha256",
            &wrong,
            "set",
            "--profiling",
            "false",
        ],
    );
    assert_one_line_error(&o, "changed since it was read");
    let b = tmp.path().join("b");
    let o = run(
        tmp.path(),
        &[
            "edit",
            p,
            "--expect-sha256",
            &seen,
            "--backup-dir",
            b.to_str().unwrap(),
            "set",
            "--profiling",
            "false",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(fs::read_dir(&b).unwrap().count(), 1);
}

/// Runs the binary as `nobody` (root only, with util-linux `setpriv`).
fn run_as_nobody(dir: &Path, args: &[&str]) -> Option<Output> {
    let root = fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(2) == Some("0"));
    if !root || Command::new("setpriv").arg("--help").output().is_err() {
        eprintln!("NOTICE: not root or no setpriv; unreadable-file test skipped");
        return None;
    }
    let mut cmd = Command::new("setpriv");
    cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups", BIN]);
    Some(cmd.current_dir(dir).args(args).output().unwrap())
}

#[test]
fn unreadable_and_unwritable_files_are_clear_errors() {
    let (tmp, path) = node();
    for d in [
        tmp.path().to_path_buf(),
        path.parent().unwrap().to_path_buf(),
    ] {
        let mut p = d.as_path();
        while p.starts_with(tmp.path()) {
            fs::set_permissions(p, fs::Permissions::from_mode(0o755)).unwrap();
            p = p.parent().unwrap();
        }
    }
    let p = path.to_str().unwrap();
    let before = fs::read(&path).unwrap();
    // 0600 root: nobody cannot read it.
    let Some(o) = run_as_nobody(tmp.path(), &["edit", p, "set", "--profiling", "false"]) else {
        return;
    };
    assert_one_line_error(&o, "cannot open: Permission denied");
    // Readable but in a directory nobody cannot write: refused before anything changes.
    fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
    let o = run_as_nobody(
        tmp.path(),
        &["edit", p, "--no-backup", "set", "--profiling", "false"],
    )
    .unwrap();
    assert_one_line_error(&o, "cannot create lock file: Permission denied");
    assert_eq!(fs::read(&path).unwrap(), before);
    let names: Vec<_> = fs::read_dir(path.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["kube-apiserver.yaml"]);
}

/// Refusals added by the review, as a user meets them: a backup directory inside the
/// manifest directory (nothing is created there), and a plugin enabled while the other
/// list disables it (kube-apiserver would not start).
#[test]
fn backups_inside_the_manifest_directory_and_overlapping_plugin_lists_are_refused() {
    let (tmp, path) = node();
    let p = path.to_str().unwrap();
    let manifests = path.parent().unwrap();
    let before = fs::read(&path).unwrap();
    let inside = manifests.join("backups");
    let o = run(
        tmp.path(),
        &[
            "edit",
            p,
            "--backup-dir",
            inside.to_str().unwrap(),
            "set",
            "--profiling",
            "false",
        ],
    );
    assert_one_line_error(&o, "is inside the manifest directory");
    assert!(!inside.exists());
    assert_eq!(fs::read(&path).unwrap(), before);

    let o = run(
        tmp.path(),
        &[
            "edit",
            p,
            "list-add",
            "--disable-admission-plugins",
            "NodeRestriction",
        ],
    );
    assert_one_line_error(
        &o,
        "`--disable-admission-plugins` would list NodeRestriction, which \
         `--enable-admission-plugins` of container `kube-apiserver` also lists",
    );
    assert_eq!(fs::read(&path).unwrap(), before);
}
