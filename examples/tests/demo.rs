//! `kubesafe demo` end to end: the built binary, its simulated node, the three outcomes
//! and the files it leaves (or removes), and no server process left behind.
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
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_kubesafe");

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Processes whose command line mentions `dir` (the simulated servers run with
/// certificate paths inside the sandbox).
fn processes_under(dir: &Path) -> Vec<String> {
    let needle = dir.to_str().unwrap();
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if cmdline.contains(needle) && !cmdline.contains("demo --") {
            found.push(format!("{name}: {cmdline}"));
        }
    }
    found
}

/// Waits (briefly) until no process mentions `dir`: the kernel delivers the simulator's
/// parent-death signal asynchronously.
fn assert_no_orphans(dir: &Path) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let left = processes_under(dir);
        if left.is_empty() {
            return;
        }
        assert!(Instant::now() < deadline, "orphan processes: {left:#?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn demo_keeps_its_sandbox_and_shows_applied_rolled_back_and_audited() {
    let tmp = tempfile::tempdir().unwrap();
    let sandbox = tmp.path().join("sandbox");
    let started = Instant::now();
    let o = Command::new(BIN)
        .args(["demo", "--keep", "--dir", sandbox.to_str().unwrap()])
        .output()
        .unwrap();
    let took = started.elapsed();
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(0), "{out}\n{}", stderr(&o));
    eprintln!("kubesafe demo took {took:?}");

    // It says plainly that it is a simulation, and that real nodes need longer.
    assert!(
        out.starts_with("kubesafe demo: THIS IS A SIMULATION."),
        "{out}"
    );
    assert!(out.contains("--deadline 120s --settle 10s"), "{out}");
    // (a) applied, (b) rolled back byte-identical, (c) audited and tampering caught.
    assert!(out.contains("    => APPLIED in "), "{out}");
    assert!(out.contains("    => ROLLED BACK after "), "{out}");
    let shas: Vec<&str> = out
        .lines()
        .filter_map(|l| {
            l.strip_prefix("    manifest sha256 before: ")
                .or_else(|| l.strip_prefix("    manifest sha256 after:  "))
        })
        .map(|l| l.split(' ').next().unwrap())
        .collect();
    assert_eq!(shas.len(), 2, "{out}");
    assert_eq!(shas[0], shas[1], "{out}");
    assert!(out.contains("(byte-identical)"), "{out}");
    assert!(out.contains("=> intact: 2 records"), "{out}");
    assert!(out.contains("=> NOT INTACT: modified at seq 2"), "{out}");
    assert!(
        out.contains("the verifier names the record: seq 2, line 2, byte offset "),
        "{out}"
    );
    // The summary table.
    for row in [
        "  1 CIS remediation          applied",
        "  2 crash-looping change     rolled back",
        "  3 audit log verification   intact",
    ] {
        assert!(out.contains(row), "{row:?} missing from\n{out}");
    }

    // The files it leaves.
    let etc = sandbox.join("etc/kubernetes");
    let manifest = std::fs::read_to_string(etc.join("manifests/kube-apiserver.yaml")).unwrap();
    assert!(manifest.contains("    - --profiling=false\n"), "{manifest}");
    assert!(manifest.contains("audit-policy.yaml\n"), "{manifest}");
    assert!(!manifest.contains("audit-policy-v2.yaml"), "{manifest}");
    assert!(manifest.contains("    name: audit-policy\n"), "{manifest}");
    assert!(
        shas[0] == kubesafe_manifest_edit::sha256_hex(manifest.as_bytes()),
        "the manifest on disk is the one the demo reported"
    );
    for f in ["pki/ca.crt", "pki/client.crt", "audit-policy.yaml"] {
        assert!(etc.join(f).is_file(), "{f}");
    }
    // Only the manifest (and the hidden lock file) in the manifest directory.
    let visible: Vec<String> = std::fs::read_dir(etc.join("manifests"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with('.'))
        .collect();
    assert_eq!(visible, ["kube-apiserver.yaml"]);
    // Two backups (one per write) and the rejected manifest.
    let mut backups: Vec<String> = std::fs::read_dir(etc.join("kubesafe-backups"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    backups.sort();
    assert_eq!(backups.len(), 3, "{backups:?}");
    assert_eq!(
        backups.iter().filter(|b| b.ends_with(".replaced")).count(),
        1,
        "{backups:?}"
    );
    let rejected = backups.iter().find(|b| b.ends_with(".replaced")).unwrap();
    assert!(
        std::fs::read_to_string(etc.join("kubesafe-backups").join(rejected))
            .unwrap()
            .contains("audit-policy-v2.yaml")
    );

    // The audit log: two records, verified by the CLI; the tampered copy is not.
    let log = sandbox.join("var/log/kubesafe/remediate.jsonl");
    let tampered = sandbox.join("var/log/kubesafe/remediate.tampered-copy.jsonl");
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["status"], "completed");
    assert_eq!(lines[0]["result"]["outcome"], "applied");
    assert_eq!(lines[1]["status"], "failed");
    assert_eq!(lines[1]["result"]["outcome"], "rolled_back");
    let a = std::fs::read(&log).unwrap();
    let b = std::fs::read(&tampered).unwrap();
    assert_eq!(a.len(), b.len());
    assert_eq!(a.iter().zip(&b).filter(|(x, y)| x != y).count(), 1);
    let ok = Command::new(BIN)
        .args(["audit", "verify", log.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(ok.status.success(), "{}", stdout(&ok));
    let bad = Command::new(BIN)
        .args(["audit", "verify", tampered.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(1));
    assert!(
        stdout(&bad).contains("first bad seq: 2"),
        "{}",
        stdout(&bad)
    );

    // The simulator's logs show what it ran; no server outlived the demo.
    let kubelet_log = std::fs::read_to_string(etc.join("kubelet/kube-apiserver.log")).unwrap();
    assert!(kubelet_log.contains("SIMULATION of kube-apiserver"));
    assert!(kubelet_log.contains("loading audit policy file"));
    assert_no_orphans(&sandbox);
}

#[test]
fn demo_without_keep_removes_its_sandbox_and_refuses_a_non_empty_dir() {
    let tmp = tempfile::tempdir().unwrap();
    let sandbox = tmp.path().join("sandbox");
    let o = Command::new(BIN)
        .args(["demo", "--dir", sandbox.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}\n{}", stdout(&o), stderr(&o));
    assert!(stdout(&o).contains("(removed now; run with --keep"));
    assert!(!sandbox.exists(), "the sandbox is removed");
    assert_no_orphans(&sandbox);

    // A directory with content is never used (it would be removed at the end).
    std::fs::create_dir(&sandbox).unwrap();
    std::fs::write(sandbox.join("precious.txt"), "keep me").unwrap();
    let o = Command::new(BIN)
        .args(["demo", "--dir", sandbox.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(
        err.starts_with("kubesafe: error: --dir ") && err.contains("not empty"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(sandbox.join("precious.txt")).unwrap(),
        "keep me"
    );
}

#[test]
fn interrupted_demo_stops_the_simulator_and_removes_its_sandbox() {
    let tmp = tempfile::tempdir().unwrap();
    let sandbox = tmp.path().join("sandbox");
    let mut child = Command::new(BIN)
        .args(["demo", "--dir", sandbox.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pipe = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut all = String::new();
        for line in BufReader::new(pipe).lines() {
            let line = line.unwrap();
            if line.starts_with("[1/3]") {
                let _ = tx.send(());
            }
            all.push_str(&line);
            all.push('\n');
        }
        all
    });
    rx.recv_timeout(Duration::from_secs(30))
        .expect("the demo reached its first step");
    // The simulated server is running now.
    assert!(!processes_under(&sandbox).is_empty());
    let kill = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let status = child.wait().unwrap();
    let out = reader.join().unwrap();
    assert_eq!(status.code(), Some(130), "{out}");
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert!(
        err.contains("interrupted: stopping the simulated node"),
        "{err}"
    );
    assert_no_orphans(&sandbox);
    assert!(!sandbox.exists(), "the sandbox is removed");
}

#[test]
fn serve_keeps_a_simulated_node_up_for_kubesafe_remediate_by_hand() {
    let tmp = tempfile::tempdir().unwrap();
    let sandbox = tmp.path().join("sim");
    let mut child = Command::new(BIN)
        .args(["demo", "--serve", "--dir", sandbox.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pipe = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut all = String::new();
        for line in BufReader::new(pipe).lines() {
            let line = line.unwrap();
            if line.starts_with("Ctrl-C stops it") {
                let _ = tx.send(());
            }
            all.push_str(&line);
            all.push('\n');
        }
        all
    });
    rx.recv_timeout(Duration::from_secs(30))
        .expect("the simulated node is up");
    // The README's commands: source sim.env, run remediate with it.
    let env = std::fs::read_to_string(sandbox.join("sim.env")).unwrap();
    let var = |name: &str| {
        env.lines()
            .find_map(|l| l.strip_prefix(&format!("{name}=")))
            .unwrap()
            .to_owned()
    };
    let o = Command::new(BIN)
        .args([
            "remediate",
            "--manifest",
            &var("MANIFEST"),
            "--set",
            "--profiling",
            "false",
            "--probe",
            &var("PROBE"),
            "--cacert",
            &var("CACERT"),
            "--cert",
            &var("CERT"),
            "--key",
            &var("KEY"),
            "--settle",
            "300ms",
        ])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}\n{}", stdout(&o), stderr(&o));
    assert!(
        std::fs::read_to_string(var("MANIFEST"))
            .unwrap()
            .contains("--profiling=false")
    );
    let kill = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let status = child.wait().unwrap();
    let out = reader.join().unwrap();
    assert_eq!(status.code(), Some(0), "{out}");
    assert!(out.contains("a SIMULATED control-plane node"), "{out}");
    assert_no_orphans(&sandbox);
    assert!(!sandbox.exists(), "the sandbox is removed");
}
