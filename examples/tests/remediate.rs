//! `kubesafe remediate` as a user runs it: the built binary against the node simulator
//! (a real HTTPS server, run as a separate process — the `kubesafe` binary itself,
//! started as `kube-apiserver` — by a kubelet-like watcher of the manifest).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr
)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use kubesafe_health_gate::simulator::{SimNode, SimNodeBuilder};

const BIN: &str = env!("CARGO_BIN_EXE_kubesafe");

struct Bed {
    node: SimNode,
    _dir: tempfile::TempDir,
}

impl Bed {
    fn start(configure: impl FnOnce(SimNodeBuilder) -> SimNodeBuilder) -> Bed {
        let dir = tempfile::tempdir().unwrap();
        let builder = SimNode::builder(dir.path(), BIN)
            .restart_delay(Duration::from_millis(100))
            .crash_backoff(Duration::from_millis(100), Duration::from_millis(400));
        let node = configure(builder).start().unwrap();
        node.wait_until_healthy(Duration::from_secs(20)).unwrap();
        Bed { node, _dir: dir }
    }

    fn manifest(&self) -> Vec<u8> {
        std::fs::read(self.node.manifest_path()).unwrap()
    }

    /// `remediate --manifest M <extra> --probe … --cacert … --cert … --key …` with
    /// short timings (success is expected well within the deadline).
    fn args(&self, extra: &[&str]) -> Vec<String> {
        let pki = self.node.pki();
        let mut v: Vec<String> = vec![
            "remediate".into(),
            "--manifest".into(),
            s(self.node.manifest_path()).into(),
        ];
        v.extend(extra.iter().map(|a| (*a).to_owned()));
        v.extend([
            "--probe".into(),
            self.node.url("/readyz"),
            "--cacert".into(),
            s(&pki.ca_cert).into(),
            "--cert".into(),
            s(&pki.client_cert).into(),
            "--key".into(),
            s(&pki.client_key).into(),
            "--deadline".into(),
            "20s".into(),
            "--settle".into(),
            "300ms".into(),
        ]);
        v
    }

    fn run(&self, extra: &[&str]) -> Output {
        let out = Command::new(BIN).args(self.args(extra)).output().unwrap();
        if std::env::var_os("KUBESAFE_TEST_SHOW").is_some() {
            eprintln!("{}{}", stdout(&out), stderr(&out));
        }
        out
    }
}

impl Drop for Bed {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("---- simulator logs ----\n{}", self.node.kubelet().logs());
        }
    }
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn code(o: &Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

fn audit_records(log: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(log)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Starts `kubesafe ARGS` with its stderr read by a thread: each line containing one of
/// `marks` sends on the returned channel; the thread returns the whole of stderr.
fn spawn_watching(
    args: &[String],
    stdout: Stdio,
    marks: &'static [&'static str],
) -> (
    std::process::Child,
    mpsc::Receiver<()>,
    std::thread::JoinHandle<String>,
) {
    let mut child = Command::new(BIN)
        .args(args)
        .stdout(stdout)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pipe = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut all = String::new();
        for line in BufReader::new(pipe).lines() {
            let line = line.unwrap();
            if marks.iter().any(|m| line.contains(m)) {
                let _ = tx.send(());
            }
            all.push_str(&line);
            all.push('\n');
        }
        all
    });
    (child, rx, reader)
}

/// Sends SIGINT to `child`.
fn interrupt(child: &std::process::Child) {
    let kill = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
}

#[test]
fn healthy_change_is_applied_exit_0_with_progress_and_an_audit_record() {
    let bed = Bed::start(|b| b);
    let log = bed._dir.path().join("audit/remediate.jsonl");
    std::fs::create_dir_all(log.parent().unwrap()).unwrap();
    let o = bed.run(&[
        "--set",
        "--profiling",
        "false",
        "--list-add",
        "--enable-admission-plugins",
        "NodeRestriction",
        "--audit-log",
        s(&log),
    ]);
    assert_eq!(code(&o), 0, "{}\n{}", stdout(&o), stderr(&o));
    let out = stdout(&o);
    // The diff first, then the outcome.
    assert!(out.contains("\n+    - --profiling=false\n"), "{out}");
    assert!(out.contains("\napplied\napplied in "), "{out}");
    assert!(out.contains("started"), "witnessed restart: {out}");
    assert!(out.contains("backup of the previous manifest: "), "{out}");
    // One progress line per event on stderr.
    let err = stderr(&o);
    for expected in [
        "preflight planned: ",
        "apply     written (kept ",
        "apply     witness witnessed: pid ",
        "apply     settled: ",
        "apply     finished: applied",
    ] {
        assert!(err.contains(expected), "{expected:?} missing from\n{err}");
    }
    assert!(!err.contains("WARN"), "no duplicate library logs: {err}");
    let manifest = String::from_utf8(bed.manifest()).unwrap();
    assert!(manifest.contains("    - --profiling=false\n"), "{manifest}");
    // The audit record: action remediate, completed, the edit and the outcome.
    let records = audit_records(&log);
    assert_eq!(records.len(), 1);
    let r = &records[0];
    assert_eq!(r["actionType"], "remediate");
    assert_eq!(r["status"], "completed");
    assert_eq!(r["seq"], 1);
    assert_eq!(r["parameters"]["edit"]["ops"][0]["op"], "set-flag");
    assert_eq!(r["parameters"]["edit"]["ops"][0]["flag"], "--profiling");
    assert_eq!(r["parameters"]["manifest"], s(bed.node.manifest_path()));
    assert_eq!(r["result"]["outcome"], "applied");
    assert!(r["durationMs"].as_u64().unwrap() > 0);
    // The chain verifies.
    let v = Command::new(BIN)
        .args(["audit", "verify", s(&log)])
        .output()
        .unwrap();
    assert!(v.status.success(), "{}", stdout(&v));
}

#[test]
fn crash_looping_change_is_rolled_back_exit_3_json_and_byte_identical() {
    // Each server takes 300 ms to start, so the witness sees every crash.
    let bed = Bed::start(|b| b.args(["--sim-startup-delay=300ms"]));
    let before = bed.manifest();
    let missing = bed._dir.path().join("audit-policy-v2.yaml");
    let log = bed._dir.path().join("remediate.jsonl");
    let o = bed.run(&[
        "--set",
        "--audit-policy-file",
        s(&missing),
        "--json",
        "--audit-log",
        s(&log),
    ]);
    assert_eq!(code(&o), 3, "{}\n{}", stdout(&o), stderr(&o));
    assert_eq!(bed.manifest(), before, "byte-identical to before");
    // --json: the outcome on stdout, nothing on stderr.
    assert_eq!(stderr(&o), "");
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["outcome"], "rolled_back", "{v:#}");
    let broken = v["broken_copy"].as_str().unwrap();
    assert!(
        !Path::new(broken).starts_with(bed.node.manifest_path().parent().unwrap()),
        "kept outside the manifest directory: {broken}"
    );
    assert!(
        std::fs::read_to_string(broken)
            .unwrap()
            .contains("--audit-policy-file="),
        "{broken}"
    );
    let records = audit_records(&log);
    assert_eq!(records[0]["status"], "failed");
    assert_eq!(records[0]["result"]["outcome"], "rolled_back");
    assert!(
        records[0]["errorMessage"]
            .as_str()
            .unwrap()
            .starts_with("rolled back: "),
        "{:#}",
        records[0]
    );
    // The old configuration runs again.
    bed.node
        .wait_until_healthy(Duration::from_secs(10))
        .unwrap();
}

#[test]
fn rollback_that_cannot_come_back_exits_4_and_says_how_to_restore_by_hand() {
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("audit-policy.yaml");
    std::fs::write(
        &policy,
        "apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: Metadata\n",
    )
    .unwrap();
    let bed = Bed::start(|b| {
        b.args([
            format!("--audit-policy-file={}", policy.display()),
            "--sim-startup-delay=300ms".to_owned(),
        ])
    });
    let before = bed.manifest();
    // The running server read the policy at startup; without it, neither the new nor
    // the old configuration can start again.
    std::fs::remove_file(&policy).unwrap();
    let mut args = bed.args(&["--set", "--profiling", "false"]);
    let deadline = args.iter().position(|a| a == "20s").unwrap();
    args[deadline] = "6s".to_owned();
    let o = Command::new(BIN).args(&args).output().unwrap();
    assert_eq!(code(&o), 4, "{}\n{}", stdout(&o), stderr(&o));
    let out = stdout(&o);
    assert!(
        out.starts_with("ROLLBACK FAILED\n") || out.contains("\nROLLBACK FAILED\n"),
        "{out}"
    );
    let err = stderr(&o);
    assert!(err.contains("kubesafe: error: ROLLBACK FAILED: "), "{err}");
    let install = err
        .lines()
        .find_map(|l| l.strip_prefix("kubesafe: recovery:   "))
        .unwrap_or_else(|| panic!("no restore command in\n{err}"));
    // With the manifest's mode and owner (kubesafe keeps them on the backup).
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(bed.node.manifest_path())
            .unwrap()
            .permissions(),
    ) & 0o7777;
    assert!(
        install.starts_with(&format!("install -m {mode:o} -o ")),
        "{install}"
    );
    // The rollback itself was written; the backup holds the same bytes.
    assert_eq!(bed.manifest(), before);
    let backup = install.split(' ').nth(7).unwrap();
    assert_eq!(std::fs::read(backup).unwrap(), before);
    // The printed command works: it puts the backup back, leaving no temp file.
    std::fs::write(bed.node.manifest_path(), "broken by hand\n").unwrap();
    let r = Command::new("sh").args(["-c", install]).output().unwrap();
    assert!(r.status.success(), "{}", stderr(&r));
    assert_eq!(bed.manifest(), before);
    let hidden: Vec<_> = std::fs::read_dir(bed.node.manifest_path().parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".restore"))
        .collect();
    assert!(hidden.is_empty(), "{hidden:?}");
}

#[test]
fn invalid_edit_fails_before_anything_changes_exit_1() {
    let bed = Bed::start(|b| b);
    let before = bed.manifest();
    let o = bed.run(&["--container", "etcd", "--set", "--profiling", "false"]);
    assert_eq!(code(&o), 1, "{}\n{}", stdout(&o), stderr(&o));
    let err = stderr(&o);
    assert!(
        err.lines().last().unwrap().starts_with("kubesafe: error: ")
            && err.contains("no container named `etcd`"),
        "{err}"
    );
    assert_eq!(bed.manifest(), before);
    assert!(!bed._dir.path().join("kubesafe-backups").exists());
}

#[test]
fn interrupt_during_the_gate_finishes_the_transaction() {
    let bed = Bed::start(|b| b);
    let mut args = bed.args(&["--set", "--profiling", "false"]);
    // A longer settle window, so the interrupt lands inside the gate.
    let settle = args.iter().position(|a| a == "300ms").unwrap();
    args[settle] = "2s".to_owned();
    let (mut child, rx, reader) = spawn_watching(&args, Stdio::piped(), &["settle window started"]);
    rx.recv_timeout(Duration::from_secs(20))
        .expect("the gate reached the settle window");
    interrupt(&child);
    let status = child.wait().unwrap();
    let err = reader.join().unwrap();
    assert_eq!(status.code(), Some(0), "{err}");
    assert!(
        err.contains("SIGINT received: finishing the gated change first"),
        "{err}"
    );
    assert!(err.contains("finished: applied"), "{err}");
    assert!(
        String::from_utf8(bed.manifest())
            .unwrap()
            .contains("--profiling=false")
    );
}

#[test]
fn dry_run_shows_the_plan_and_writes_nothing() {
    let bed = Bed::start(|b| b);
    let before = bed.manifest();
    let o = bed.run(&[
        "--set",
        "--anonymous-auth",
        "false",
        "--mount",
        "audit:/etc/kubernetes/audit.yaml:/etc/kubernetes/audit.yaml:ro:File",
        "--dry-run",
    ]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("+    - --anonymous-auth=false\n"), "{out}");
    assert!(
        out.contains("+      path: /etc/kubernetes/audit.yaml\n"),
        "{out}"
    );
    let err = stderr(&o);
    assert!(err.contains("dry run, nothing written"), "{err}");
    assert!(err.contains("restart expected"), "{err}");
    assert!(err.contains("--anonymous-auth=false"), "{err}");
    assert_eq!(bed.manifest(), before);
}

#[test]
fn usage_errors_exit_2_and_help_documents_the_exit_codes() {
    let help = Command::new(BIN)
        .args(["remediate", "--help"])
        .output()
        .unwrap();
    assert!(help.status.success());
    let h = stdout(&help);
    for line in [
        "  0  applied",
        "  1  failed before anything changed",
        "  2  usage error",
        "  3  rolled back",
        "  4  ROLLBACK FAILED",
        "  5  applied, but the audit record could not be written",
    ] {
        assert!(h.contains(line), "{line:?} missing from --help:\n{h}");
    }
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("kube-apiserver.yaml");
    std::fs::write(&manifest, "kind: Pod\n").unwrap();
    let m = s(&manifest);
    for (args, needle) in [
        (
            vec![
                "remediate",
                "--manifest",
                m,
                "--probe",
                "https://127.0.0.1:1/livez",
            ],
            "nothing to do",
        ),
        (
            vec![
                "remediate",
                "--manifest",
                m,
                "--probe",
                "https://127.0.0.1:1/livez",
                "--mount",
                "x:/a",
            ],
            "--mount",
        ),
        (
            vec![
                "remediate",
                "--manifest",
                m,
                "--set",
                "--profiling",
                "false",
            ],
            "--probe",
        ),
        (
            vec![
                "remediate",
                "--manifest",
                m,
                "--set",
                "--profiling",
                "false",
                "--probe",
                "https://127.0.0.1:1/livez",
                "--cert",
                "c.crt",
            ],
            "--key",
        ),
        (
            // A deadline the settle window does not fit in: the gate could
            // never pass, so nothing may be written.
            vec![
                "remediate",
                "--manifest",
                m,
                "--set",
                "--profiling",
                "false",
                "--probe",
                "https://127.0.0.1:1/livez",
                "--deadline",
                "5s",
            ],
            "settle window",
        ),
    ] {
        let o = Command::new(BIN).args(&args).output().unwrap();
        assert_eq!(code(&o), 2, "{args:?}: {}", stderr(&o));
        assert!(stderr(&o).contains(needle), "{args:?}: {}", stderr(&o));
    }
    assert_eq!(std::fs::read_to_string(&manifest).unwrap(), "kind: Pod\n");
}

#[test]
fn no_witness_verify_cmd_and_a_keyed_audit_log() {
    // The endpoint-transition witness needs the endpoint down for two polls:
    // a server that takes 300 ms to start is down long enough even on a
    // loaded machine.
    let bed = Bed::start(|b| b.args(["--sim-startup-delay=300ms"]));
    let dir = bed._dir.path();
    let key = dir.join("audit.key");
    let log = dir.join("remediate.jsonl");
    let keygen = Command::new(BIN)
        .args(["audit", "keygen", "--id", "node-1", "--out", s(&key)])
        .output()
        .unwrap();
    assert!(keygen.status.success(), "{}", stderr(&keygen));
    let o = bed.run(&[
        "--set",
        "--profiling",
        "false",
        "--no-witness",
        "--verify-cmd",
        "echo CIS 1.2.18 PASS",
        "--audit-log",
        s(&log),
        "--audit-key-file",
        s(&key),
        "--json",
    ]);
    assert_eq!(code(&o), 0, "{}\n{}", stdout(&o), stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["outcome"], "applied", "{v:#}");
    // Without /proc, the restart is seen as the endpoint going down and back up.
    assert_eq!(
        v["restart"]["evidence"], "the health endpoint went down and came back healthy",
        "{v:#}"
    );
    assert!(v["timings"]["verify_ms"].is_number(), "{v:#}");
    let record: serde_json::Value =
        serde_json::from_str(std::fs::read_to_string(&log).unwrap().trim()).unwrap();
    assert_eq!(record["keyId"], "node-1");
    let verified = Command::new(BIN)
        .args(["audit", "verify", s(&log), "--key-file", s(&key)])
        .output()
        .unwrap();
    assert!(verified.status.success(), "{}", stdout(&verified));
}

#[test]
fn unusable_probe_credentials_fail_before_the_change_and_are_audited() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("kube-apiserver.yaml");
    let text = "apiVersion: v1\nkind: Pod\nspec:\n  containers:\n  - name: kube-apiserver\n    command:\n    - kube-apiserver\n";
    std::fs::write(&manifest, text).unwrap();
    let log = dir.path().join("remediate.jsonl");
    let missing = dir.path().join("no-such-ca.crt");
    let o = Command::new(BIN)
        .args([
            "remediate",
            "--manifest",
            s(&manifest),
            "--set",
            "--profiling",
            "false",
            "--probe",
            "https://127.0.0.1:1/livez",
            "--cacert",
            s(&missing),
            "--audit-log",
            s(&log),
        ])
        .output()
        .unwrap();
    assert_eq!(code(&o), 1, "{}", stderr(&o));
    let err = stderr(&o);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("kubesafe: error: --probe: "), "{err}");
    assert!(err.contains("no-such-ca.crt"), "{err}");
    assert_eq!(std::fs::read_to_string(&manifest).unwrap(), text);
    let records = audit_records(&log);
    assert_eq!(records.len(), 1);
    assert_eq!(records[0]["status"], "failed");
    assert!(
        records[0]["errorMessage"]
            .as_str()
            .unwrap()
            .contains("no-such-ca.crt"),
        "{:#}",
        records[0]
    );
    assert_eq!(records[0]["parameters"]["edit"]["ops"][0]["value"], "false");
}

#[test]
fn insecure_is_announced_on_stderr_even_with_json() {
    let bed = Bed::start(|b| b);
    let mut args = bed.args(&["--set", "--profiling", "false", "--insecure", "--json"]);
    // --insecure replaces the CA bundle.
    let ca = args.iter().position(|a| a == "--cacert").unwrap();
    args.drain(ca..ca + 2);
    let o = Command::new(BIN).args(&args).output().unwrap();
    assert_eq!(code(&o), 0, "{}\n{}", stdout(&o), stderr(&o));
    let err = stderr(&o);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("kubesafe: warning: --insecure: ") && err.contains("NOT verified"),
        "{err}"
    );
}

#[test]
fn a_run_killed_mid_transaction_is_noticed_by_the_next_one() {
    // kill -9 during the gate: the lock dies with the process, the manifest
    // holds the new, never-judged content. The next run must not build on it
    // as if it were a known-good configuration.
    let bed = Bed::start(|b| b);
    let before = bed.manifest();
    let mut args = bed.args(&["--set", "--profiling", "false"]);
    let settle = args.iter().position(|a| a == "300ms").unwrap();
    args[settle] = "15s".to_owned();
    let (mut child, rx, reader) = spawn_watching(&args, Stdio::null(), &["apply     written"]);
    rx.recv_timeout(Duration::from_secs(20))
        .expect("the change was written");
    child.kill().unwrap();
    child.wait().unwrap();
    reader.join().unwrap();
    let unjudged = bed.manifest();
    assert_ne!(unjudged, before);

    let o = bed.run(&["--set", "--anonymous-auth", "false"]);
    assert_eq!(code(&o), 1, "{}\n{}", stdout(&o), stderr(&o));
    let err = stderr(&o);
    assert!(err.contains("did not finish"), "{err}");
    assert!(
        err.contains(".kube-apiserver.yaml.kubesafe-transaction"),
        "{err}"
    );
    assert!(err.contains("kubesafe-backups"), "names the backup: {err}");
    assert_eq!(bed.manifest(), unjudged, "nothing changed");
}

#[test]
fn a_second_interrupt_aborts_with_130_and_leaves_the_change_marked_unfinished() {
    let help = stdout(
        &Command::new(BIN)
            .args(["remediate", "--help"])
            .output()
            .unwrap(),
    );
    assert!(help.contains("  130  aborted by a second"), "{help}");
    let demo_help = stdout(&Command::new(BIN).args(["demo", "--help"]).output().unwrap());
    assert!(demo_help.contains("130"), "{demo_help}");

    let bed = Bed::start(|b| b);
    let mut args = bed.args(&["--set", "--profiling", "false"]);
    let settle = args.iter().position(|a| a == "300ms").unwrap();
    args[settle] = "15s".to_owned();
    let (mut child, rx, reader) = spawn_watching(
        &args,
        Stdio::null(),
        &["settle window started", "SIGINT received"],
    );
    rx.recv_timeout(Duration::from_secs(20))
        .expect("the gate reached the settle window");
    interrupt(&child);
    rx.recv_timeout(Duration::from_secs(20))
        .expect("the first interrupt was noted");
    interrupt(&child);
    let status = child.wait().unwrap();
    let err = reader.join().unwrap();
    assert_eq!(status.code(), Some(130), "{err}");
    assert!(err.contains("aborted by a second SIGINT"), "{err}");
    // The unjudged change stays marked: the next run will not build on it.
    let marker = bed
        .node
        .manifest_path()
        .with_file_name(".kube-apiserver.yaml.kubesafe-transaction");
    assert!(marker.exists(), "{err}");
    assert!(err.contains(&marker.display().to_string()), "{err}");
}

/// The change is applied but its audit record cannot be written (here: the log may not
/// grow, `RLIMIT_FSIZE` with `SIGXFSZ` ignored, so the append fails with `EFBIG`): exit
/// status 5, the manifest keeps the change, and the log keeps every earlier record intact.
#[test]
fn applied_but_not_audited_exits_5_and_keeps_the_log_intact() {
    let bed = Bed::start(|b| b);
    let log = bed._dir.path().join("audit.jsonl");
    // An earlier record large enough that the log is already past the size limit below.
    let filler = "x".repeat(40 * 1024);
    let record = format!(
        r#"{{"actionType":"note","status":"completed","parameters":{{"filler":"{filler}"}}}}"#
    );
    let o = Command::new(BIN)
        .args(["audit", "append", "--log", s(&log), "--json", &record])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let before_log = std::fs::read(&log).unwrap();
    assert!(before_log.len() > 40 * 1024);

    // Files up to 16 KiB (or 8 KiB where `ulimit -f` counts 512-byte blocks) may be
    // written: the manifest, its temp file and backup fit; the audit log cannot grow.
    let mut args = bed.args(&["--set", "--profiling", "false", "--audit-log", s(&log)]);
    args.insert(0, BIN.to_owned());
    let out = Command::new("sh")
        .arg("-c")
        .arg(r#"trap '' XFSZ; ulimit -f 16 && exec "$@""#)
        .arg("sh")
        .args(&args)
        .output()
        .unwrap();
    assert_eq!(code(&out), 5, "{}\n{}", stdout(&out), stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("kubesafe: error: audit log: the record of this run was not written"),
        "{err}"
    );
    assert!(
        err.contains("File too large"),
        "the append hit the limit: {err}"
    );
    assert!(stdout(&out).contains("applied"), "{}", stdout(&out));
    let manifest = String::from_utf8(bed.manifest()).unwrap();
    assert!(manifest.contains("    - --profiling=false\n"), "{manifest}");
    // Nothing half-written: the log is exactly what it was, and it verifies.
    assert_eq!(std::fs::read(&log).unwrap(), before_log);
    let v = Command::new(BIN)
        .args(["audit", "verify", s(&log)])
        .output()
        .unwrap();
    assert!(v.status.success(), "{}", stdout(&v));
}
