//! File sink behaviour on real files: reopen, torn-tail recovery, rotation, locking,
//! fsync policies, queries.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr
)]

use std::io::Write;
use std::time::Duration;

use kubesafe_audit_log::{
    AuditKey, AuditLog, AuditRecord, AuditSink, Chain, Error, FailureKind, FileSink,
    FileSinkOptions, Filter, FsyncPolicy, KeyRing, Location, LockMode, SealedRecord, Status,
    VerifyOptions, query, stats, verify,
};

fn rec(i: usize) -> AuditRecord {
    let status = Status::ALL[i % Status::ALL.len()];
    AuditRecord::new(
        if i.is_multiple_of(3) {
            "manifest.edit"
        } else {
            "health.gate"
        },
        status,
    )
    .namespace(if i.is_multiple_of(2) {
        "kube-system"
    } else {
        "default"
    })
    .resource("Pod", format!("pod-{i}"))
    .parameter("i", i as u64)
    .duration_ms(10 * i as u64)
    .created_at(jiff::Timestamp::from_second(1_700_000_000 + i as i64).unwrap())
}

fn lines_of(path: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn reopen_continues_the_chain() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let mut log = AuditLog::new(FileSink::open(&path, FileSinkOptions::new()).unwrap());
    let a = log.append(&rec(0)).unwrap();
    let b = log.append_batch(&[rec(1), rec(2)]).unwrap();
    assert_eq!((a.seq, b[0].seq, b[1].seq), (1, 2, 3));
    assert_eq!(b[0].prev_hash, a.hash);
    drop(log);
    let mut log = AuditLog::new(FileSink::open(&path, FileSinkOptions::new()).unwrap());
    assert_eq!(log.head().unwrap(), b[1].head());
    let c = log.append(&rec(3)).unwrap();
    assert_eq!((c.seq, c.prev_hash), (4, b[1].hash));
    let report = verify(&path, &VerifyOptions::new()).unwrap();
    assert!(report.is_intact(), "{:?}", report.failure);
    assert_eq!(report.records, 4);
    assert_eq!(report.head, c.head());
    // The stored line is exactly what append returned.
    assert_eq!(lines_of(&path)[3], c.line());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
}

#[test]
fn torn_tail_is_moved_aside_reported_and_the_chain_continues() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let mut log = AuditLog::new(FileSink::open(&path, FileSinkOptions::new()).unwrap());
    log.append_batch(&[rec(0), rec(1)]).unwrap();
    let third = log.append(&rec(2)).unwrap();
    drop(log);
    // Simulate a crash mid-write: cut the last line short.
    let full = std::fs::read(&path).unwrap();
    let cut = full.len() - 40;
    std::fs::write(&path, &full[..cut]).unwrap();
    let f = verify(&path, &VerifyOptions::new())
        .unwrap()
        .failure
        .unwrap();
    assert_eq!((f.kind, f.seq), (FailureKind::TornTail, 3));

    let sink = FileSink::open(&path, FileSinkOptions::new()).unwrap();
    let rec_info = sink.recovered().to_vec();
    assert_eq!(rec_info.len(), 1);
    let r = &rec_info[0];
    let line3_start = full.len() - third.line().len() - 1;
    assert_eq!(r.offset, line3_start as u64);
    assert_eq!(r.bytes, (cut - line3_start) as u64);
    assert_eq!(std::fs::read(&r.moved_to).unwrap(), &full[line3_start..cut]);
    assert!(
        r.moved_to
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with("audit.jsonl.torn-")
    );
    let mut log = AuditLog::new(sink);
    let next = log.append(&rec(3)).unwrap();
    assert_eq!(
        next.seq, 3,
        "the torn record never completed, so seq 3 is reused"
    );
    let report = verify(&path, &VerifyOptions::new()).unwrap();
    assert!(report.is_intact(), "{:?}", report.failure);
    assert_eq!(report.records, 3);
}

#[test]
fn torn_tail_left_by_another_writer_is_recovered_under_the_lock() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let mut a = AuditLog::new(FileSink::open(&path, FileSinkOptions::new()).unwrap());
    a.append(&rec(0)).unwrap();
    // "Another process" crashed after writing half a line.
    std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap()
        .write_all(b"{\"actionType\":\"half")
        .unwrap();
    let s = a.append(&rec(1)).unwrap();
    assert_eq!(s.seq, 2);
    assert_eq!(a.sink().recovered().len(), 1);
    assert!(verify(&path, &VerifyOptions::new()).unwrap().is_intact());
}

#[test]
fn corrupt_complete_last_line_refuses_to_append() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let mut log = AuditLog::new(FileSink::open(&path, FileSinkOptions::new()).unwrap());
    log.append(&rec(0)).unwrap();
    drop(log);
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap();
    f.write_all(b"not a record\n").unwrap();
    let err = FileSink::open(&path, FileSinkOptions::new()).unwrap_err();
    assert!(matches!(err, Error::CorruptTail { .. }), "{err}");
    assert!(err.to_string().contains("audit.jsonl"), "{err}");
}

#[test]
fn rotation_carries_the_chain_across_files() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let opts = FileSinkOptions::new()
        .fsync(FsyncPolicy::Never)
        .rotate_bytes(2048);
    let mut log = AuditLog::new(FileSink::open(&path, opts.clone()).unwrap());
    let mut all = Vec::new();
    for i in 0..40 {
        all.push(log.append(&rec(i)).unwrap());
    }
    drop(log);
    let rotated: Vec<_> = (1..)
        .map(|n| dir.path().join(format!("audit.jsonl.{n}")))
        .take_while(|p| p.exists())
        .collect();
    assert!(
        rotated.len() >= 3,
        "expected several rotations, got {}",
        rotated.len()
    );
    for p in &rotated {
        assert!(std::fs::metadata(p).unwrap().len() >= 2048);
    }
    // The first record of each file links to the last record of the previous one.
    let first_of_2 = SealedRecord::parse_line(&lines_of(&rotated[1])[0]).unwrap();
    let last_of_1 = SealedRecord::parse_line(lines_of(&rotated[0]).last().unwrap()).unwrap();
    assert_eq!(first_of_2.prev_hash, last_of_1.hash);
    assert_eq!(first_of_2.seq, last_of_1.seq + 1);

    let report = verify(&path, &VerifyOptions::new()).unwrap();
    assert!(report.is_intact(), "{:?}", report.failure);
    assert_eq!(report.records, 40);
    assert_eq!(
        report.files.len(),
        rotated.len() + usize::from(path.exists())
    );
    assert_eq!(report.files[0], rotated[0]);

    // Reopening after rotation continues from the last rotated record.
    let mut log = AuditLog::new(FileSink::open(&path, opts).unwrap());
    let next = log.append(&rec(40)).unwrap();
    assert_eq!((next.seq, next.prev_hash), (41, all[39].hash));
    drop(log);

    // Editing a record in a rotated file: the report names that file.
    let target = &rotated[1];
    let text = std::fs::read_to_string(target).unwrap();
    let victim = SealedRecord::parse_line(text.lines().nth(1).unwrap()).unwrap();
    let name = victim.record.resource_name.clone().unwrap();
    std::fs::write(target, text.replacen(&name, "pod-XX", 1)).unwrap();
    let f = verify(&path, &VerifyOptions::new())
        .unwrap()
        .failure
        .unwrap();
    assert_eq!((f.kind, f.seq), (FailureKind::Modified, victim.seq));
    let first_len = text.lines().next().unwrap().len() as u64 + 1;
    assert_eq!(
        f.location,
        Location::File {
            path: target.clone(),
            offset: first_len,
            line: 2
        }
    );
    std::fs::write(target, &text).unwrap();

    // Removing a whole rotated file: records deleted, located at the next file's start.
    std::fs::remove_file(&rotated[1]).unwrap();
    let f = verify(&path, &VerifyOptions::new())
        .unwrap()
        .failure
        .unwrap();
    assert_eq!(f.kind, FailureKind::Deleted, "{f}");
    assert_eq!(f.seq, first_of_2.seq);
    assert_eq!(
        f.location,
        Location::File {
            path: rotated[2].clone(),
            offset: 0,
            line: 1
        }
    );
}

#[test]
fn held_lock_excludes_a_second_writer() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let held = FileSink::open(&path, FileSinkOptions::new().lock(LockMode::Held)).unwrap();
    let err = FileSink::open(&path, FileSinkOptions::new().lock(LockMode::Held)).unwrap_err();
    assert!(matches!(err, Error::Locked { .. }), "{err}");
    drop(held);
    FileSink::open(&path, FileSinkOptions::new().lock(LockMode::Held)).unwrap();
}

#[test]
fn two_writers_in_one_process_interleave_without_forking() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let opts = FileSinkOptions::new()
        .fsync(FsyncPolicy::Never)
        .rotate_bytes(4096);
    let mut a = AuditLog::new(FileSink::open(&path, opts.clone()).unwrap());
    let mut b = AuditLog::new(FileSink::open(&path, opts).unwrap());
    for i in 0..30 {
        let s = if i % 3 == 0 {
            b.append(&rec(i))
        } else {
            a.append(&rec(i))
        }
        .unwrap();
        assert_eq!(s.seq, i as u64 + 1);
    }
    let report = verify(&path, &VerifyOptions::new()).unwrap();
    assert!(report.is_intact(), "{:?}", report.failure);
    assert_eq!(report.records, 30);
}

#[test]
fn group_commit_and_never_policies_store_everything() {
    for policy in [
        FsyncPolicy::Batch {
            records: 4,
            interval: Some(Duration::from_millis(5)),
        },
        FsyncPolicy::Batch {
            records: 1000,
            interval: None,
        },
        FsyncPolicy::Never,
    ] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let mut log =
            AuditLog::new(FileSink::open(&path, FileSinkOptions::new().fsync(policy)).unwrap());
        for i in 0..25 {
            log.append(&rec(i)).unwrap();
            if i == 10 {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        log.flush().unwrap();
        drop(log);
        let report = verify(&path, &VerifyOptions::new()).unwrap();
        assert!(report.is_intact(), "{policy:?}: {:?}", report.failure);
        assert_eq!(report.records, 25, "{policy:?}");
    }
    let err = FileSink::open(
        std::env::temp_dir().join("never-created.jsonl"),
        FileSinkOptions::new().fsync(FsyncPolicy::Batch {
            records: 0,
            interval: None,
        }),
    )
    .unwrap_err();
    assert!(err.to_string().contains("fsync"), "{err}");
}

/// The background fsync of group commit fails (fdatasync of /dev/null is EINVAL, like a
/// failing disk): the failure must reach the caller — the next append and flush fail,
/// and keep failing, since after a failed fsync the kernel may have dropped the dirty
/// pages and a later fsync can succeed without them.
#[cfg(unix)]
#[test]
fn a_failed_background_fsync_is_reported_by_the_next_append_and_flush() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    std::os::unix::fs::symlink("/dev/null", &path).unwrap();
    let policy = FsyncPolicy::Batch {
        records: 1000,
        interval: Some(Duration::from_millis(1)),
    };
    let mut log =
        AuditLog::new(FileSink::open(&path, FileSinkOptions::new().fsync(policy)).unwrap());
    log.append(&rec(0)).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let err = loop {
        std::thread::sleep(Duration::from_millis(20));
        match log.append(&rec(1)) {
            Err(e) => break e,
            Ok(_) => assert!(
                std::time::Instant::now() < deadline,
                "appends still succeed after the background fsync failed"
            ),
        }
    };
    // The sink works on the resolved path (symlinks followed, so every writer
    // shares one lock): the error names the file really written.
    let resolved = std::path::Path::new("/dev/null");
    assert!(
        matches!(&err, Error::Io { op: "fsync", path: p, .. } if p == resolved),
        "{err}"
    );
    assert!(err.to_string().contains("/dev/null"), "{err}");
    // Sticky: nothing later pretends to be durable.
    assert!(log.append(&rec(2)).is_err());
    assert!(log.flush().is_err());
}

#[test]
fn keyed_log_checkpoint_detects_truncation() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let key = AuditKey::new("k2025", vec![9; 32]).unwrap();
    let mut log = AuditLog::with_chain(
        FileSink::open(&path, FileSinkOptions::new()).unwrap(),
        Chain::keyed(key.clone()),
    );
    for i in 0..6 {
        log.append(&rec(i)).unwrap();
    }
    let cp = log.checkpoint(Some("audit.jsonl".into()), &key).unwrap();
    assert_eq!(cp.seq, 6);
    let cp_path = dir.path().join("elsewhere.checkpoint.json");
    cp.write_to(&cp_path).unwrap();
    drop(log);

    let ring = KeyRing::new().with(key.clone());
    let cp = kubesafe_audit_log::Checkpoint::read_from(&cp_path)
        .unwrap()
        .verify(&ring)
        .unwrap();
    let opts = VerifyOptions::new().keys(ring.clone()).checkpoint(cp);
    assert!(verify(&path, &opts).unwrap().is_intact());

    // Cut off the last two records (a clean cut at a line boundary).
    let lines = lines_of(&path);
    let kept: String = lines[..4].iter().map(|l| format!("{l}\n")).collect();
    std::fs::write(&path, &kept).unwrap();
    assert!(
        verify(&path, &VerifyOptions::new().keys(ring))
            .unwrap()
            .is_intact(),
        "undetectable without checkpoint"
    );
    let report = verify(&path, &opts).unwrap();
    let f = report.failure.unwrap();
    assert_eq!((f.kind, f.seq), (FailureKind::TruncatedTail, 5), "{f}");
    assert_eq!(
        f.location,
        Location::File {
            path: path.clone(),
            offset: kept.len() as u64,
            line: 0
        }
    );
}

#[test]
fn query_and_stats_over_a_rotated_set() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let mut sink = FileSink::open(
        &path,
        FileSinkOptions::new()
            .fsync(FsyncPolicy::Never)
            .rotate_bytes(1500),
    )
    .unwrap();
    let chain = Chain::unkeyed();
    for i in 0..20 {
        sink.append(&chain, &rec(i)).unwrap();
    }
    drop(sink);
    let failed = query(&path, &Filter::new().status(Status::Failed)).unwrap();
    assert_eq!(
        failed.iter().map(|r| r.seq).collect::<Vec<_>>(),
        vec![4, 9, 14, 19]
    );
    let edits = query(
        &path,
        &Filter::new()
            .action_type("manifest.edit")
            .namespace("kube-system"),
    )
    .unwrap();
    assert_eq!(
        edits.iter().map(|r| r.seq).collect::<Vec<_>>(),
        vec![1, 7, 13, 19]
    );
    let t = |s: i64| jiff::Timestamp::from_second(1_700_000_000 + s).unwrap();
    let window = query(&path, &Filter::new().since(t(5)).until(t(8))).unwrap();
    assert_eq!(
        window.iter().map(|r| r.seq).collect::<Vec<_>>(),
        vec![6, 7, 8]
    );
    assert_eq!(query(&path, &Filter::new().limit(2)).unwrap().len(), 2);

    let s = stats(&path).unwrap();
    assert_eq!(s.total, 20);
    assert_eq!(s.by_status["completed"], 4);
    assert_eq!(s.by_action_type["manifest.edit"], 7);
    assert_eq!(s.avg_duration_ms, Some(95.0));
    assert_eq!(s.last_seq, 20);
    assert_eq!(s.first_created_at, Some(t(0)));
}

/// The largest record is bounded, for the writer and for every reader: a writer refuses
/// a record whose line would exceed `MAX_RECORD_BYTES`, so no reader ever has to hold a
/// longer line in memory — and none does when a file holds one anyway.
#[test]
fn records_and_lines_longer_than_the_maximum_are_refused_without_buffering_them() {
    use kubesafe_audit_log::{ChainHead, MAX_RECORD_BYTES};
    let too_big =
        AuditRecord::new("big", Status::Completed).parameter("blob", "x".repeat(MAX_RECORD_BYTES));
    let err = Chain::unkeyed()
        .seal(&ChainHead::default(), &too_big)
        .unwrap_err();
    assert!(matches!(err, Error::InvalidRecord { .. }), "{err}");
    assert!(err.to_string().contains("bytes"), "{err}");
    drop(too_big);

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let mut log = AuditLog::new(FileSink::open(&path, FileSinkOptions::new()).unwrap());
    let first = log.append(&rec(0)).unwrap();
    drop(log);
    // A junk line of 9 MiB (more than the verifier's 4 MiB read buffer), then a record
    // that links to the first one: the junk is an insertion, reported with its size.
    let junk_len = 9 << 20;
    let second = Chain::unkeyed().seal(&first.head(), &rec(1)).unwrap();
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap();
    f.write_all(&vec![b'x'; junk_len]).unwrap();
    f.write_all(format!("\n{}\n", second.line()).as_bytes())
        .unwrap();
    drop(f);
    let opts = VerifyOptions::new().max_line_bytes(1 << 20);
    let report = verify(&path, &opts).unwrap();
    let failure = report.failure.unwrap();
    assert_eq!(failure.kind, FailureKind::Inserted, "{failure}");
    assert!(
        failure.detail.contains(&format!("{junk_len} bytes"))
            && failure.detail.contains("longer than"),
        "{failure}"
    );
    assert_eq!(
        failure.location,
        Location::File {
            path: path.clone(),
            offset: first.line().len() as u64 + 1,
            line: 2
        }
    );
    assert_eq!(report.bytes, std::fs::metadata(&path).unwrap().len());
    // With the default limit, a line that long but under 64 MiB is analysed as usual.
    let failure = verify(&path, &VerifyOptions::new())
        .unwrap()
        .failure
        .unwrap();
    assert_eq!(failure.kind, FailureKind::Inserted, "{failure}");
    assert!(failure.detail.contains("not canonical"), "{failure}");

    // Queries and the writer's tail read refuse a line over the maximum instead of
    // loading it (a sparse file: no disk space needed).
    let big = dir.path().join("big.jsonl");
    std::fs::write(&big, format!("{}\n", first.line())).unwrap();
    let f = std::fs::OpenOptions::new().write(true).open(&big).unwrap();
    let len = f.metadata().unwrap().len();
    f.set_len(len + 3 * MAX_RECORD_BYTES as u64).unwrap();
    drop(f);
    let err = FileSink::open(&big, FileSinkOptions::new()).unwrap_err();
    assert!(matches!(err, Error::CorruptTail { .. }), "{err}");
    assert!(err.to_string().contains("longer than"), "{err}");
    std::fs::OpenOptions::new()
        .append(true)
        .open(&big)
        .unwrap()
        .write_all(b"\n")
        .unwrap();
    let err = query(&big, &Filter::new()).unwrap_err();
    assert!(
        matches!(&err, Error::Corrupt { line: 2, .. }) && err.to_string().contains("longer than"),
        "{err}"
    );
    assert!(
        !dir.path().read_dir().unwrap().any(|e| e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .contains("torn")),
        "nothing was moved aside"
    );
}

/// A file of a rotated set that ends without a newline although later files follow is
/// not a torn tail a writer recovers (recovery only touches the active file): it is a bad
/// line inside the chain, located in its file and classified like any other.
#[test]
fn a_line_without_newline_in_the_middle_of_a_rotated_set_is_located_and_classified() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let opts = FileSinkOptions::new()
        .fsync(FsyncPolicy::Never)
        .rotate_bytes(1500);
    let mut log = AuditLog::new(FileSink::open(&path, opts).unwrap());
    let sealed: Vec<SealedRecord> = (0..20).map(|i| log.append(&rec(i)).unwrap()).collect();
    drop(log);
    let first = dir.path().join("audit.jsonl.1");
    let original = std::fs::read(&first).unwrap();
    let last_of_first = SealedRecord::parse_line(lines_of(&first).last().unwrap()).unwrap();
    assert!(dir.path().join("audit.jsonl.2").exists());

    // 1. Junk without newline appended to the first file: the chain links around it.
    let mut junk = original.clone();
    junk.extend_from_slice(b"{\"actionType\":\"half a rec");
    std::fs::write(&first, &junk).unwrap();
    let report = verify(&path, &VerifyOptions::new()).unwrap();
    let f = report.failure.unwrap();
    assert_eq!(f.kind, FailureKind::Inserted, "{f}");
    assert_eq!(f.seq, last_of_first.seq + 1, "{f}");
    assert!(f.detail.contains("newline"), "{f}");
    assert_eq!(
        f.location,
        Location::File {
            path: first.clone(),
            offset: original.len() as u64,
            line: lines_of(&first).len() as u64,
        }
    );
    assert_eq!(report.records, last_of_first.seq);

    // 2. The first file's last record cut short: the next file links to the lost record.
    let cut = &original[..original.len() - 30];
    std::fs::write(&first, cut).unwrap();
    let f = verify(&path, &VerifyOptions::new())
        .unwrap()
        .failure
        .unwrap();
    assert_eq!(
        (f.kind, f.seq),
        (FailureKind::Modified, last_of_first.seq),
        "{f}"
    );
    assert!(f.detail.contains("newline"), "{f}");
    if let Location::File { path: p, .. } = &f.location {
        assert_eq!(p, &first);
    }

    // Restored, the set verifies again (and the writer never touched the rotated file).
    std::fs::write(&first, &original).unwrap();
    let report = verify(&path, &VerifyOptions::new()).unwrap();
    assert!(report.is_intact(), "{:?}", report.failure);
    assert_eq!(report.records, sealed.len() as u64);
}

/// The order of a rotated set comes from the file names; renaming files to reorder
/// them, or adding a copy under a name that sorts into the set, is detected.
#[test]
fn reordering_or_duplicating_rotated_files_is_detected() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let opts = FileSinkOptions::new()
        .fsync(FsyncPolicy::Never)
        .rotate_bytes(1500);
    let mut log = AuditLog::new(FileSink::open(&path, opts).unwrap());
    for i in 0..20 {
        log.append(&rec(i)).unwrap();
    }
    drop(log);
    let f1 = dir.path().join("audit.jsonl.1");
    let f2 = dir.path().join("audit.jsonl.2");
    let tmp = dir.path().join("swap");
    std::fs::rename(&f1, &tmp).unwrap();
    std::fs::rename(&f2, &f1).unwrap();
    std::fs::rename(&tmp, &f2).unwrap();
    let f = verify(&path, &VerifyOptions::new())
        .unwrap()
        .failure
        .unwrap();
    assert_eq!((f.kind, f.seq), (FailureKind::Reordered, 1), "{f}");
    assert_eq!(
        f.location,
        Location::File {
            path: f1.clone(),
            offset: 0,
            line: 1
        }
    );
    std::fs::rename(&f1, &tmp).unwrap();
    std::fs::rename(&f2, &f1).unwrap();
    std::fs::rename(&tmp, &f2).unwrap();
    assert!(verify(&path, &VerifyOptions::new()).unwrap().is_intact());

    // "audit.jsonl.01" parses as rotation number 1 too: the copy is read, and refused.
    std::fs::copy(&f1, dir.path().join("audit.jsonl.01")).unwrap();
    let f = verify(&path, &VerifyOptions::new())
        .unwrap()
        .failure
        .unwrap();
    assert_eq!((f.kind, f.seq), (FailureKind::Inserted, 1), "{f}");
}

#[cfg(unix)]
#[test]
fn writers_reaching_one_log_through_a_symlink_share_its_lock() {
    // A lock named after the path as given would let a writer through the
    // link and a writer through the real path append at once and fork the
    // chain. Both must take the real file's lock.
    let dir = tempfile::tempdir().unwrap();
    let real = dir.path().join("audit.jsonl");
    let other = dir.path().join("elsewhere");
    std::fs::create_dir(&other).unwrap();
    let link = other.join("link.jsonl");
    let mut first = AuditLog::new(FileSink::open(&real, FileSinkOptions::new()).unwrap());
    first.append(&rec(0)).unwrap();
    drop(first);
    std::os::unix::fs::symlink(&real, &link).unwrap();

    let held = FileSink::open(&link, FileSinkOptions::new().lock(LockMode::Held)).unwrap();
    let second = FileSink::open(&real, FileSinkOptions::new().lock(LockMode::Held));
    assert!(
        matches!(second, Err(Error::Locked { .. })),
        "a second writer through the real path got its own lock"
    );
    drop(held);

    // Appends through the link land in the real file and continue its chain.
    let mut log = AuditLog::new(FileSink::open(&link, FileSinkOptions::new()).unwrap());
    assert_eq!(log.append(&rec(1)).unwrap().seq, 2);
    assert!(!other.join("link.jsonl.lock").exists());
    let report = verify(&real, &VerifyOptions::new()).unwrap();
    assert!(report.is_intact(), "{:?}", report.failure);
    assert_eq!(report.records, 2);
}
