//! kubesafe-audit-log benchmarks, each beside the physical limit it is bounded by,
//! measured in the same run on the same disk and core:
//!
//! * appends/s with fsync per record  vs  bare `write` + `fdatasync` of a same-size line;
//! * appends/s with group commit and with no fsync  vs  bare `write` of a same-size line;
//! * chain verification MB/s  vs  raw SHA-256 MB/s of one core over the same bytes;
//! * PostgreSQL sink appends/s  vs  a plain autocommit `INSERT` of the same row
//!   (server started by the test harness, `fsync=on`).
//!
//! Run: `cargo bench -p kubesafe-benches --bench audit_log`
#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout,
    clippy::print_stderr
)]

use std::fs::OpenOptions;
use std::hint::black_box;
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use kubesafe_audit_log::{
    AuditLog, AuditRecord, Chain, ChainHead, FileSink, FileSinkOptions, FsyncPolicy, Status,
    VerifyOptions, verify, verify_bytes,
};
use sha2::{Digest, Sha256};

#[path = "../../audit-log/tests/support/pg.rs"]
mod pg;

fn record(i: u64) -> AuditRecord {
    AuditRecord::new("manifest.edit", Status::Completed)
        .namespace("kube-system")
        .resource("static-pod-manifest", "kube-apiserver")
        .parameter("flag", "--profiling")
        .parameter("value", false)
        .parameter("attempt", i)
        .requested_by("system:serviceaccount:kube-system:kubesafe-operator")
        .policy_decision(serde_json::json!({"allowed": true, "rule": "cis-1.2.18"}))
        .duration_ms(840)
}

fn scratch_dir(name: &str) -> PathBuf {
    let d = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("audit-bench-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn sample_line() -> Vec<u8> {
    let s = Chain::unkeyed()
        .seal(&ChainHead::default(), &record(1))
        .unwrap();
    let mut l = s.line().as_bytes().to_vec();
    l.push(b'\n');
    l
}

fn appends(c: &mut Criterion) {
    let line = sample_line();
    println!("record line: {} bytes", line.len());
    let mut g = c.benchmark_group("audit_append");
    g.throughput(Throughput::Elements(1));

    // Physical limits.
    let dir = scratch_dir("bare");
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("bare.jsonl"))
        .unwrap();
    g.bench_function("bare_write_fdatasync", |b| {
        b.iter(|| {
            f.write_all(&line).unwrap();
            f.sync_data().unwrap();
        })
    });
    let mut f2 = OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("bare2.jsonl"))
        .unwrap();
    g.bench_function("bare_write", |b| b.iter(|| f2.write_all(&line).unwrap()));

    for (name, policy) in [
        ("fsync_every_record", FsyncPolicy::EveryRecord),
        (
            "group_commit_256_or_10ms",
            FsyncPolicy::Batch {
                records: 256,
                interval: Some(Duration::from_millis(10)),
            },
        ),
        ("no_fsync", FsyncPolicy::Never),
    ] {
        let dir = scratch_dir(name);
        let sink = FileSink::open(
            dir.join("audit.jsonl"),
            FileSinkOptions::new().fsync(policy),
        )
        .unwrap();
        let mut log = AuditLog::new(sink);
        // The caller's record is built once: this measures sealing, locking and I/O.
        let rec = record(1);
        g.bench_function(name, |b| b.iter(|| black_box(log.append(&rec).unwrap())));
        drop(log);
        let _ = std::fs::remove_dir_all(&dir);
    }
    g.finish();
    let _ = std::fs::remove_dir_all(&dir);
}

fn verification(c: &mut Criterion) {
    const N: u64 = 20_000;
    let chain = Chain::unkeyed();
    let mut head = ChainHead::default();
    let mut bytes = Vec::new();
    for i in 0..N {
        let s = chain.seal(&head, &record(i)).unwrap();
        head = s.head();
        bytes.extend_from_slice(s.line().as_bytes());
        bytes.push(b'\n');
    }
    let dir = scratch_dir("verify");
    let path = dir.join("audit.jsonl");
    std::fs::write(&path, &bytes).unwrap();
    let opts = VerifyOptions::new();
    assert!(verify_bytes("x", &bytes, &opts).is_intact());

    let mut g = c.benchmark_group("audit_verify");
    g.throughput(Throughput::Bytes(bytes.len() as u64));
    g.bench_function("sha256_raw_one_core", |b| {
        b.iter(|| black_box(Sha256::digest(&bytes)))
    });
    let one = VerifyOptions::new().threads(1);
    g.bench_function("verify_bytes_1_thread", |b| {
        b.iter(|| black_box(verify_bytes("x", &bytes, &one)))
    });
    g.bench_function("verify_bytes", |b| {
        b.iter(|| black_box(verify_bytes("x", &bytes, &opts)))
    });
    g.bench_function("verify_file", |b| {
        b.iter(|| black_box(verify(&path, &opts).unwrap()))
    });
    g.finish();
    let _ = std::fs::remove_dir_all(&dir);
}

fn postgres_append(c: &mut Criterion) {
    let Some(server) = pg::TempPostgres::start(true) else {
        eprintln!("PostgreSQL not installed: skipping audit_postgres");
        return;
    };
    let mut raw = server.connect();
    raw.batch_execute(
        "CREATE TABLE raw_insert (seq bigint PRIMARY KEY, prev_hash text, hash text, key_id text,
            action_type text, status text, namespace text, resource_type text, resource_name text,
            requested_by text, duration_ms bigint, created_at timestamptz, completed_at timestamptz,
            record text)",
    )
    .unwrap();
    let line = String::from_utf8(sample_line()).unwrap();
    let mut g = c.benchmark_group("audit_postgres");
    g.throughput(Throughput::Elements(1));
    let mut seq = 0i64;
    g.bench_function("plain_insert_autocommit", |b| {
        b.iter(|| {
            seq += 1;
            raw.execute(
                "INSERT INTO raw_insert VALUES ($1, $2, $3, NULL, 'manifest.edit', 'completed',
                 'kube-system', 'static-pod-manifest', 'kube-apiserver', 'op', 840, now(), NULL, $4)",
                &[&seq, &"0".repeat(64), &format!("{seq:064}"), &line],
            )
            .unwrap();
        })
    });
    let mut log = AuditLog::new(
        kubesafe_audit_log::postgres::PostgresSink::connect(&server.params(), "kubesafe_audit")
            .unwrap(),
    );
    let rec = record(1);
    g.bench_function("sink_append", |b| {
        b.iter(|| black_box(log.append(&rec).unwrap()))
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    targets = appends, verification, postgres_append
}
criterion_main!(benches);
