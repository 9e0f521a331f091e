//! Real-process tests of the file sink: SIGKILL crashes and concurrent writers.
//!
//! The test binary re-executes itself with `KUBESAFE_AUDIT_CHILD=<role>` and a test
//! filter selecting the same test; that copy runs the child role instead of the test.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr
)]

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use kubesafe_audit_log::{
    AuditLog, AuditRecord, ChainHash, FileSink, FileSinkOptions, Filter, FsyncPolicy, SealedRecord,
    Status, VerifyOptions, query, verify,
};

const ROLE: &str = "KUBESAFE_AUDIT_CHILD";

/// A small xorshift generator (seed printed for reproducibility).
struct Rng(u64);

impl Rng {
    fn seeded() -> Rng {
        let seed = std::env::var("KUBESAFE_AUDIT_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_nanos() as u64
                    ^ u64::from(std::process::id()) << 32
            });
        Rng(seed | 1)
    }
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn spawn_child(test: &str, role: &str, env: &[(&str, String)]) -> std::process::Child {
    let exe = std::env::current_exe().unwrap();
    let mut cmd = Command::new(exe);
    cmd.args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env(ROLE, role)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.spawn().unwrap()
}

fn env_path(name: &str) -> PathBuf {
    PathBuf::from(std::env::var(name).unwrap())
}

/// Child of the crash test: appends records of random size forever, reporting each
/// returned `seq hash` to a report file (a plain write: the page cache survives SIGKILL).
fn crash_child() -> ! {
    let log_path = env_path("AUDIT_LOG");
    let mut report = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(env_path("AUDIT_REPORT"))
        .unwrap();
    // Every policy promises that a record whose append returned survives a crash of the
    // process (the write(2) is done); they differ only on power loss.
    // Without an fsync per record the child appends ~50x faster: smaller records keep
    // the log (re-verified after every trial) small.
    let (policy, max_size) = match std::env::var("AUDIT_POLICY").unwrap().as_str() {
        "every" => (FsyncPolicy::EveryRecord, 12 * 1024),
        "batch" => (
            FsyncPolicy::Batch {
                records: 64,
                interval: Some(Duration::from_millis(20)),
            },
            512,
        ),
        _ => (FsyncPolicy::Never, 512),
    };
    let opts = FileSinkOptions::new()
        .fsync(policy)
        .rotate_bytes(512 * 1024);
    let mut log = AuditLog::new(FileSink::open(&log_path, opts).unwrap());
    let mut rng = Rng::seeded();
    for i in 0u64.. {
        let size = rng.below(max_size) as usize;
        let r = AuditRecord::new("crash.test", Status::Completed)
            .resource("Pod", format!("child-{}-{i}", std::process::id()))
            .parameter("blob", "x".repeat(size));
        let sealed = log.append(&r).unwrap();
        report
            .write_all(format!("{} {}\n", sealed.seq, sealed.hash).as_bytes())
            .unwrap();
    }
    std::process::exit(0)
}

fn all_records(path: &Path) -> HashMap<u64, ChainHash> {
    query(path, &Filter::new())
        .unwrap()
        .into_iter()
        .map(|r| (r.seq, r.hash))
        .collect()
}

#[test]
fn sigkill_at_random_moments_loses_no_returned_record() {
    if std::env::var(ROLE).as_deref() == Ok("crash") {
        crash_child();
    }
    let trials: usize = std::env::var("KUBESAFE_AUDIT_CRASH_TRIALS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(40);
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.jsonl");
    let report_path = dir.path().join("returned.txt");
    let mut rng = Rng::seeded();
    eprintln!("crash test seed {} ({trials} trials)", rng.0);
    let mut torn_trials = 0;
    // Appends that returned, per fsync policy (every record, group commit, never).
    let mut returned_per_policy = [0usize; 3];
    let mut returned_so_far = 0;
    let mut total_recovered = 0;
    for trial in 0..trials {
        let mut child = spawn_child(
            "sigkill_at_random_moments_loses_no_returned_record",
            "crash",
            &[
                ("AUDIT_LOG", log.display().to_string()),
                ("AUDIT_REPORT", report_path.display().to_string()),
                ("KUBESAFE_AUDIT_SEED", rng.next().to_string()),
                (
                    "AUDIT_POLICY",
                    ["every", "batch", "never"][trial % 3].to_string(),
                ),
            ],
        );
        // Fast (non-fsync) children get a shorter life so that the log stays small.
        let life = if trial % 3 == 0 { 120_000 } else { 10_000 };
        std::thread::sleep(Duration::from_micros(2_000 + rng.below(life)));
        child.kill().unwrap(); // SIGKILL on Unix
        let status = child.wait().unwrap();
        assert!(!status.success(), "trial {trial}: child was not killed");

        // Reopen: recovery runs, and reports what it moved aside.
        let sink = FileSink::open(&log, FileSinkOptions::new()).unwrap();
        let recovered = sink.recovered().to_vec();
        drop(sink);
        for r in &recovered {
            let torn = std::fs::read(&r.moved_to).unwrap();
            assert_eq!(torn.len() as u64, r.bytes);
            assert!(
                !torn.contains(&b'\n'),
                "a torn tail is a prefix of one line"
            );
            assert!(SealedRecord::parse_line(&String::from_utf8_lossy(&torn)).is_err());
        }
        if !recovered.is_empty() {
            torn_trials += 1;
            total_recovered += recovered.len();
        }

        let report = verify(&log, &VerifyOptions::new()).unwrap();
        assert!(report.is_intact(), "trial {trial}: {:?}", report.failure);
        let stored = all_records(&log);
        assert_eq!(stored.len() as u64, report.records);
        let returned = std::fs::read_to_string(&report_path).unwrap_or_default();
        let now_returned = returned.lines().count();
        returned_per_policy[trial % 3] += now_returned - returned_so_far;
        returned_so_far = now_returned;
        for line in returned.lines() {
            let (seq, hash) = line.split_once(' ').unwrap();
            let seq: u64 = seq.parse().unwrap();
            assert_eq!(
                stored.get(&seq).map(|h| h.to_hex()).as_deref(),
                Some(hash),
                "trial {trial}: record seq {seq} was returned by append but is not in the log"
            );
        }
    }
    let total = verify(&log, &VerifyOptions::new()).unwrap();
    eprintln!(
        "crash test: {trials} SIGKILLs, {} records in {} files, torn tails recovered in {torn_trials} trials ({total_recovered} files)",
        total.records,
        total.files.len()
    );
    eprintln!("returned appends per policy (every, batch, never): {returned_per_policy:?}");
    assert!(
        returned_per_policy.iter().all(|n| *n > 0),
        "a policy's children never returned from append: {returned_per_policy:?}"
    );
}

/// Child of the large-write test: one huge record, then exit.
fn large_write_child() -> ! {
    let mut log =
        AuditLog::new(FileSink::open(env_path("AUDIT_LOG"), FileSinkOptions::new()).unwrap());
    let size: usize = std::env::var("AUDIT_SIZE").unwrap().parse().unwrap();
    log.append(
        &AuditRecord::new("crash.test", Status::Completed).parameter("blob", "y".repeat(size)),
    )
    .unwrap();
    std::process::exit(0)
}

#[test]
fn sigkill_during_a_large_write_leaves_a_torn_tail_that_is_recovered() {
    if std::env::var(ROLE).as_deref() == Ok("large") {
        large_write_child();
    }
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.jsonl");
    let mut sealed = AuditLog::new(FileSink::open(&log, FileSinkOptions::new()).unwrap());
    let first = sealed
        .append(&AuditRecord::new("before.crash", Status::Completed))
        .unwrap();
    drop(sealed);
    let size = 24 << 20;
    let mut torn_seen = 0;
    for attempt in 0..6 {
        let before = std::fs::metadata(&log).unwrap().len();
        let mut child = spawn_child(
            "sigkill_during_a_large_write_leaves_a_torn_tail_that_is_recovered",
            "large",
            &[
                ("AUDIT_LOG", log.display().to_string()),
                ("AUDIT_SIZE", size.to_string()),
            ],
        );
        // Kill as soon as the write has started (the file grows) — the kernel stops a
        // multi-page write at the next page once SIGKILL is pending.
        let deadline = Instant::now() + Duration::from_secs(60);
        while std::fs::metadata(&log).unwrap().len() == before && Instant::now() < deadline {
            if child.try_wait().unwrap().is_some() {
                break;
            }
            std::thread::sleep(Duration::from_micros(50));
        }
        let _ = child.kill();
        child.wait().unwrap();
        let after = std::fs::metadata(&log).unwrap().len();
        let sink = FileSink::open(&log, FileSinkOptions::new()).unwrap();
        let recovered = sink.recovered().to_vec();
        drop(sink);
        eprintln!(
            "attempt {attempt}: file grew by {} of ~{size} bytes; recovered {:?}",
            after - before,
            recovered.iter().map(|r| r.bytes).collect::<Vec<_>>()
        );
        let report = verify(&log, &VerifyOptions::new()).unwrap();
        assert!(report.is_intact(), "{:?}", report.failure);
        if let Some(r) = recovered.first() {
            assert_eq!(r.offset, before);
            assert_eq!(r.bytes, after - before);
            let torn = std::fs::read(&r.moved_to).unwrap();
            assert!(torn.starts_with(b"{\"actionType\":\"crash.test\""));
            assert!(!torn.contains(&b'\n'));
            assert_eq!(
                std::fs::metadata(&log).unwrap().len(),
                before,
                "log cut back to the last complete record"
            );
            torn_seen += 1;
            break;
        }
    }
    assert!(
        torn_seen > 0,
        "no SIGKILL landed inside the large write in 6 attempts"
    );
    let all = query(&log, &Filter::new()).unwrap();
    assert_eq!(all[0].hash, first.hash);
}

/// Child of the concurrency test: appends `AUDIT_COUNT` records tagged with its id.
fn writer_child() -> ! {
    let log_path = env_path("AUDIT_LOG");
    let id: usize = std::env::var("AUDIT_WRITER").unwrap().parse().unwrap();
    let count: usize = std::env::var("AUDIT_COUNT").unwrap().parse().unwrap();
    let opts = FileSinkOptions::new()
        .fsync(FsyncPolicy::Batch {
            records: 16,
            interval: Some(Duration::from_millis(5)),
        })
        .rotate_bytes(32 * 1024);
    let mut log = AuditLog::new(FileSink::open(&log_path, opts).unwrap());
    for j in 0..count {
        if j % 10 == 0 {
            log.append_batch(&[AuditRecord::new("concurrency.test", Status::Completed)
                .resource("Pod", format!("w{id}-{j}"))])
                .unwrap();
        } else {
            log.append(
                &AuditRecord::new("concurrency.test", Status::Completed)
                    .resource("Pod", format!("w{id}-{j}")),
            )
            .unwrap();
        }
    }
    log.flush().unwrap();
    std::process::exit(0)
}

#[test]
fn concurrent_processes_append_to_one_chain() {
    if std::env::var(ROLE).as_deref() == Ok("writer") {
        writer_child();
    }
    const WRITERS: usize = 4;
    const COUNT: usize = 150;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.jsonl");
    let start = Instant::now();
    let children: Vec<_> = (0..WRITERS)
        .map(|id| {
            spawn_child(
                "concurrent_processes_append_to_one_chain",
                "writer",
                &[
                    ("AUDIT_LOG", log.display().to_string()),
                    ("AUDIT_WRITER", id.to_string()),
                    ("AUDIT_COUNT", COUNT.to_string()),
                ],
            )
        })
        .collect();
    for mut c in children {
        assert!(c.wait().unwrap().success());
    }
    eprintln!(
        "{WRITERS} processes x {COUNT} appends in {:?}",
        start.elapsed()
    );
    let report = verify(&log, &VerifyOptions::new()).unwrap();
    assert!(report.is_intact(), "{:?}", report.failure);
    assert_eq!(report.records, (WRITERS * COUNT) as u64);
    assert!(
        report.files.len() > 2,
        "rotation by several processes was exercised"
    );
    let records = query(&log, &Filter::new()).unwrap();
    let mut next = [0usize; WRITERS];
    let mut interleavings = 0;
    let mut last_writer = usize::MAX;
    for r in &records {
        let name = r.record.resource_name.as_deref().unwrap();
        let (w, j) = name.trim_start_matches('w').split_once('-').unwrap();
        let (w, j): (usize, usize) = (w.parse().unwrap(), j.parse().unwrap());
        assert_eq!(j, next[w], "writer {w}'s records out of order or lost");
        next[w] += 1;
        if w != last_writer {
            interleavings += 1;
            last_writer = w;
        }
    }
    assert_eq!(next, [COUNT; WRITERS]);
    eprintln!("writers switched {interleavings} times in the chain");
}
