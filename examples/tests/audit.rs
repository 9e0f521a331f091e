//! `kubesafe audit …` end to end, running the built binary.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr
)]

use std::path::Path;
use std::process::{Command, Output};

fn kubesafe(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kubesafe"))
        .args(args)
        .output()
        .unwrap()
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

fn append(log: &Path, json: &str, extra: &[&str]) -> serde_json::Value {
    let mut args = vec!["audit", "append", "--log", s(log), "--json", json];
    args.extend_from_slice(extra);
    let o = kubesafe(&args);
    assert!(o.status.success(), "append failed: {}", stderr(&o));
    serde_json::from_str(stdout(&o).trim()).unwrap()
}

fn record(i: usize) -> String {
    let status = ["completed", "failed", "rejected"][i % 3];
    let action = if i.is_multiple_of(2) {
        "manifest.edit"
    } else {
        "health.gate"
    };
    format!(
        r#"{{"actionType":"{action}","status":"{status}","namespace":"kube-system","resourceType":"Pod","resourceName":"kube-apiserver-{i}","parameters":{{"flag":"--profiling","value":false}},"requestedBy":"alice","durationMs":{},"createdAt":"2025-01-0{}T00:00:00Z"}}"#,
        100 * i,
        i + 1
    )
}

#[test]
fn append_verify_query_stats() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.jsonl");
    for i in 0..5 {
        let sealed = append(&log, &record(i), &[]);
        assert_eq!(sealed["seq"], i as u64 + 1);
        assert_eq!(sealed["hash"].as_str().unwrap().len(), 64);
    }
    // @file input.
    let rec_file = dir.path().join("rec.json");
    std::fs::write(&rec_file, record(5)).unwrap();
    let sealed = append(&log, &format!("@{}", s(&rec_file)), &["--fsync", "never"]);
    assert_eq!(sealed["seq"], 6);

    let o = kubesafe(&["audit", "verify", s(&log)]);
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    assert!(
        stdout(&o).starts_with("intact: 6 records verified"),
        "{}",
        stdout(&o)
    );

    let o = kubesafe(&["audit", "query", s(&log), "--status", "failed"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let seqs: Vec<u64> = stdout(&o)
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["seq"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(seqs, [2, 5]);
    let o = kubesafe(&[
        "audit",
        "query",
        s(&log),
        "--action",
        "manifest.edit",
        "--namespace",
        "kube-system",
        "--since",
        "2025-01-02T00:00:00Z",
        "--until",
        "2025-01-06T00:00:00Z",
        "--limit",
        "1",
    ]);
    assert_eq!(stdout(&o).lines().count(), 1);
    assert!(stdout(&o).contains("\"seq\":3"), "{}", stdout(&o));

    let o = kubesafe(&["audit", "stats", s(&log)]);
    assert!(o.status.success());
    let st: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(st["total"], 6);
    assert_eq!(st["byStatus"]["failed"], 2);
    assert_eq!(st["byActionType"]["manifest.edit"], 3);
    assert_eq!(st["avgDurationMs"], 250.0);
}

#[test]
fn verify_names_the_first_bad_record_and_exits_nonzero() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.jsonl");
    for i in 0..4 {
        append(&log, &record(i), &["--fsync", "never"]);
    }
    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let tampered = text.replacen("kube-apiserver-2", "kube-apiserver-9", 1);
    std::fs::write(&log, &tampered).unwrap();
    let o = kubesafe(&["audit", "verify", s(&log)]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    let out = stdout(&o);
    assert!(out.contains("NOT INTACT"), "{out}");
    assert!(out.contains("first bad seq: 3"), "{out}");
    assert!(out.contains("kind: modified"), "{out}");
    let offset = lines[0].len() + lines[1].len() + 2;
    assert!(out.contains(&format!("offset: {offset}")), "{out}");

    // JSON report.
    let o = kubesafe(&["audit", "verify", s(&log), "--json"]);
    assert_eq!(o.status.code(), Some(1));
    let r: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(r["failure"]["kind"], "modified");
    assert_eq!(r["failure"]["seq"], 3);
    assert_eq!(r["failure"]["location"]["offset"], offset as u64);

    // A deleted record.
    let deleted: String = lines
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != 1)
        .map(|(_, l)| format!("{l}\n"))
        .collect();
    std::fs::write(&log, deleted).unwrap();
    let o = kubesafe(&["audit", "verify", s(&log)]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stdout(&o).contains("kind: deleted"), "{}", stdout(&o));
    assert!(stdout(&o).contains("first bad seq: 2"), "{}", stdout(&o));

    // A missing file is an error (exit 2), not a verdict.
    let o = kubesafe(&["audit", "verify", s(&dir.path().join("nope.jsonl"))]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).starts_with("kubesafe: error: "),
        "{}",
        stderr(&o)
    );
    assert_eq!(stderr(&o).lines().count(), 1);
}

#[test]
fn keyed_log_checkpoint_truncation_and_wrong_key() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.jsonl");
    let key = dir.path().join("key.json");
    let other = dir.path().join("other.json");
    let cp = dir.path().join("cp.json");
    for (id, f) in [("audit-2025", &key), ("audit-2025", &other)] {
        let o = kubesafe(&["audit", "keygen", "--id", id, "--out", s(f)]);
        assert!(o.status.success(), "{}", stderr(&o));
    }
    // keygen refuses to overwrite.
    assert_eq!(
        kubesafe(&["audit", "keygen", "--id", "x", "--out", s(&key)])
            .status
            .code(),
        Some(2)
    );
    for i in 0..5 {
        let sealed = append(
            &log,
            &record(i),
            &["--key-file", s(&key), "--fsync", "never"],
        );
        assert_eq!(sealed["keyId"], "audit-2025");
    }
    let o = kubesafe(&[
        "audit",
        "checkpoint",
        s(&log),
        "--key-file",
        s(&key),
        "--out",
        s(&cp),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = kubesafe(&[
        "audit",
        "verify",
        s(&log),
        "--key-file",
        s(&key),
        "--checkpoint",
        s(&cp),
    ]);
    assert!(o.status.success(), "{}", stdout(&o));
    assert!(
        stdout(&o).contains("checkpoint seq 5 holds"),
        "{}",
        stdout(&o)
    );

    // Without the key: the keyed records cannot be checked.
    let o = kubesafe(&["audit", "verify", s(&log)]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stdout(&o).contains("kind: missing_key"), "{}", stdout(&o));

    // The wrong key (same id, different secret).
    let o = kubesafe(&["audit", "verify", s(&log), "--key-file", s(&other)]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stdout(&o).contains("kind: bad_key"), "{}", stdout(&o));
    assert!(stdout(&o).contains("first bad seq: 1"), "{}", stdout(&o));

    // Cut off the last two records: only the checkpoint shows it.
    let text = std::fs::read_to_string(&log).unwrap();
    let kept: String = text.lines().take(3).map(|l| format!("{l}\n")).collect();
    std::fs::write(&log, &kept).unwrap();
    assert!(
        kubesafe(&["audit", "verify", s(&log), "--key-file", s(&key)])
            .status
            .success()
    );
    let o = kubesafe(&[
        "audit",
        "verify",
        s(&log),
        "--key-file",
        s(&key),
        "--checkpoint",
        s(&cp),
    ]);
    assert_eq!(o.status.code(), Some(1));
    let out = stdout(&o);
    assert!(out.contains("kind: truncated_tail"), "{out}");
    assert!(out.contains("first bad seq: 4"), "{out}");
    assert!(out.contains(&format!("offset: {}", kept.len())), "{out}");

    // An edited checkpoint is refused outright.
    let edited = std::fs::read_to_string(&cp)
        .unwrap()
        .replace("\"seq\": 5", "\"seq\": 3");
    std::fs::write(&cp, edited).unwrap();
    let o = kubesafe(&[
        "audit",
        "verify",
        s(&log),
        "--key-file",
        s(&key),
        "--checkpoint",
        s(&cp),
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("checkpoint"), "{}", stderr(&o));
}

#[test]
fn bad_input_is_a_one_line_error() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.jsonl");
    for (json, needle) in [
        (r#"{"actionType":"a"}"#, "status"),
        (r#"{"actionType":"a","status":"done"}"#, "done"),
        (r#"{"actionType":"a","status":"failed","bogus":1}"#, "bogus"),
        ("not json", "--json"),
        ("@/nonexistent/rec.json", "/nonexistent/rec.json"),
    ] {
        let o = kubesafe(&["audit", "append", "--log", s(&log), "--json", json]);
        assert_eq!(o.status.code(), Some(2), "{json}");
        let err = stderr(&o);
        assert!(
            err.starts_with("kubesafe: error: ") && err.contains(needle),
            "{json}: {err}"
        );
        assert_eq!(err.lines().count(), 1, "{err}");
    }
    let o = kubesafe(&["audit", "query", s(&log), "--since", "yesterday"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("--since"), "{}", stderr(&o));
}
