//! PostgreSQL sink against a real server started by the test harness.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr
)]

mod support;

use kubesafe_audit_log::postgres::PostgresSink;
use kubesafe_audit_log::{
    AuditKey, AuditLog, AuditRecord, Chain, FailureKind, Filter, KeyRing, Location, Status,
    VerifyOptions,
};
use support::pg::TempPostgres;

fn rec(i: usize) -> AuditRecord {
    AuditRecord::new(
        if i.is_multiple_of(3) {
            "manifest.edit"
        } else {
            "health.gate"
        },
        Status::ALL[i % 5],
    )
    .namespace(if i.is_multiple_of(2) {
        "kube-system"
    } else {
        "default"
    })
    .resource("Pod", format!("pod-{i}"))
    .parameter("i", i as u64)
    .duration_ms(10 * i as u64)
    .requested_by("tester")
    .created_at(jiff::Timestamp::from_second(1_700_000_000 + i as i64).unwrap())
}

#[test]
fn append_query_stats_round_trip_and_concurrent_writers() {
    let Some(pg) = TempPostgres::start(false) else {
        return;
    };
    let mut log = AuditLog::new(PostgresSink::connect(&pg.params(), "kubesafe_audit").unwrap());
    let first = log.append(&rec(0)).unwrap();
    assert_eq!(first.seq, 1);
    let batch: Vec<_> = (1..20).map(rec).collect();
    let sealed = log.append_batch(&batch).unwrap();
    assert_eq!(sealed.last().unwrap().seq, 20);
    assert_eq!(log.head().unwrap(), sealed.last().unwrap().head());

    // Re-opening an existing table is idempotent.
    let mut sink = PostgresSink::connect(&pg.params(), "kubesafe_audit").unwrap();
    let failed = sink.query(&Filter::new().status(Status::Failed)).unwrap();
    assert_eq!(
        failed.iter().map(|r| r.seq).collect::<Vec<_>>(),
        vec![4, 9, 14, 19]
    );
    let edits = sink
        .query(
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
    let window = sink
        .query(&Filter::new().since(t(5)).until(t(8)).limit(2))
        .unwrap();
    assert_eq!(window.iter().map(|r| r.seq).collect::<Vec<_>>(), vec![6, 7]);
    // What comes back is the sealed record, byte for byte.
    assert_eq!(window[0].line(), sealed[4].line());

    let s = sink.stats().unwrap();
    assert_eq!(s.total, 20);
    assert_eq!(s.by_status["completed"], 4);
    assert_eq!(s.by_action_type["manifest.edit"], 7);
    assert_eq!(s.avg_duration_ms, Some(95.0));
    assert_eq!(s.first_created_at, Some(t(0)));
    assert_eq!(s.last_created_at, Some(t(19)));
    assert_eq!(s.last_seq, 20);

    // Four connections append concurrently: one chain, nothing lost.
    let params = pg.params();
    let threads: Vec<_> = (0..4)
        .map(|w| {
            let params = params.clone();
            std::thread::spawn(move || {
                let mut log =
                    AuditLog::new(PostgresSink::connect(&params, "kubesafe_audit").unwrap());
                for j in 0..25 {
                    log.append(&rec(100 + w * 25 + j)).unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let report = sink.verify(&VerifyOptions::new()).unwrap();
    assert!(report.is_intact(), "{:?}", report.failure);
    assert_eq!(report.records, 120);
}

fn sql_state(e: &postgres::Error) -> Option<String> {
    e.code().map(|c| c.code().to_owned())
}

#[test]
fn update_delete_and_truncate_are_refused_by_the_database() {
    let Some(pg) = TempPostgres::start(false) else {
        return;
    };
    let mut log = AuditLog::new(PostgresSink::connect(&pg.params(), "audit_rows").unwrap());
    log.append_batch(&(0..5).map(rec).collect::<Vec<_>>())
        .unwrap();
    let mut client = pg.connect();
    for sql in [
        "UPDATE audit_rows SET status = 'completed' WHERE seq = 2",
        "UPDATE audit_rows SET record = '{}'",
        "DELETE FROM audit_rows WHERE seq = 5",
        "DELETE FROM audit_rows",
        "TRUNCATE audit_rows",
    ] {
        let err = client.batch_execute(sql).expect_err(sql);
        assert_eq!(sql_state(&err).as_deref(), Some("42501"), "{sql}: {err}");
        let msg = err
            .as_db_error()
            .map(|d| d.message().to_owned())
            .unwrap_or_default();
        assert!(msg.contains("append-only"), "{sql}: {msg}");
    }
    let n: i64 = client
        .query_one("SELECT count(*) FROM audit_rows", &[])
        .unwrap()
        .get(0);
    assert_eq!(n, 5);
    let report = log.sink_mut().verify(&VerifyOptions::new()).unwrap();
    assert!(report.is_intact());
}

#[test]
fn chain_catches_what_a_superuser_does_with_the_trigger_disabled() {
    let Some(pg) = TempPostgres::start(false) else {
        return;
    };
    let key = AuditKey::new("pg-key", vec![0x42; 32]).unwrap();
    let mut log = AuditLog::with_chain(
        PostgresSink::connect(&pg.params(), "audit_keyed").unwrap(),
        Chain::keyed(key.clone()),
    );
    log.append_batch(&(0..6).map(rec).collect::<Vec<_>>())
        .unwrap();
    let opts = VerifyOptions::new().keys(KeyRing::new().with(key.clone()));
    assert!(log.sink_mut().verify(&opts).unwrap().is_intact());

    let mut su = pg.connect(); // the harness connects as the superuser `postgres`
    let orig: String = su
        .query_one("SELECT record FROM audit_keyed WHERE seq = 3", &[])
        .unwrap()
        .get(0);
    let orig5: String = su
        .query_one("SELECT record FROM audit_keyed WHERE seq = 5", &[])
        .unwrap()
        .get(0);
    su.batch_execute("ALTER TABLE audit_keyed DISABLE TRIGGER USER")
        .unwrap();

    // 1. The sealed record itself is edited.
    su.execute(
        "UPDATE audit_keyed SET record = replace(record, 'pod-2', 'pod-X'), resource_name = 'pod-X' WHERE seq = 3",
        &[],
    )
    .unwrap();
    let f = log.sink_mut().verify(&opts).unwrap().failure.unwrap();
    assert_eq!((f.kind, f.seq), (FailureKind::Modified, 3), "{f}");
    assert_eq!(
        f.location,
        Location::Row {
            table: "audit_keyed".into(),
            index: 2
        }
    );
    su.execute(
        "UPDATE audit_keyed SET record = $1, resource_name = 'pod-2' WHERE seq = 3",
        &[&orig],
    )
    .unwrap();
    assert!(log.sink_mut().verify(&opts).unwrap().is_intact());

    // 2. Only a queryable column is edited (what a dashboard would show).
    su.execute(
        "UPDATE audit_keyed SET status = 'completed' WHERE seq = 4",
        &[],
    )
    .unwrap();
    let f = log.sink_mut().verify(&opts).unwrap().failure.unwrap();
    assert_eq!((f.kind, f.seq), (FailureKind::Modified, 4), "{f}");
    assert!(f.detail.contains("status"), "{f}");
    su.execute(
        "UPDATE audit_keyed SET status = 'failed' WHERE seq = 4",
        &[],
    )
    .unwrap();
    assert!(log.sink_mut().verify(&opts).unwrap().is_intact());

    // 3. The sealed record is nulled (after dropping its NOT NULL constraint), and a
    //    status too: verification reports it, nothing panics.
    su.batch_execute(
        "ALTER TABLE audit_keyed ALTER COLUMN record DROP NOT NULL;
         ALTER TABLE audit_keyed ALTER COLUMN status DROP NOT NULL;
         UPDATE audit_keyed SET record = NULL WHERE seq = 5;",
    )
    .unwrap();
    let f = log.sink_mut().verify(&opts).unwrap().failure.unwrap();
    assert_eq!((f.kind, f.seq), (FailureKind::Modified, 5), "{f}");
    assert!(f.detail.contains("record"), "{f}");
    let err = log.sink_mut().query(&Filter::new()).unwrap_err();
    assert!(err.to_string().contains("record"), "{err}");
    su.batch_execute("UPDATE audit_keyed SET status = NULL WHERE seq = 4")
        .unwrap();
    let err = log.sink_mut().stats().unwrap_err();
    assert!(err.to_string().contains("status"), "{err}");
    su.execute(
        "UPDATE audit_keyed SET record = $1 WHERE seq = 5",
        &[&orig5],
    )
    .unwrap();
    su.batch_execute("UPDATE audit_keyed SET status = 'failed' WHERE seq = 4")
        .unwrap();
    assert!(log.sink_mut().verify(&opts).unwrap().is_intact());

    // 4. A row is deleted.
    su.execute("DELETE FROM audit_keyed WHERE seq = 2", &[])
        .unwrap();
    let f = log.sink_mut().verify(&opts).unwrap().failure.unwrap();
    assert_eq!(
        (f.kind, f.seq, f.found_seq),
        (FailureKind::Deleted, 2, Some(3)),
        "{f}"
    );
    su.batch_execute("ALTER TABLE audit_keyed ENABLE TRIGGER USER")
        .unwrap();

    // Verifying with the wrong key is reported as such.
    let wrong = VerifyOptions::new()
        .keys(KeyRing::new().with(AuditKey::new("pg-key", vec![1; 32]).unwrap()));
    let f = log.sink_mut().verify(&wrong).unwrap().failure.unwrap();
    assert_eq!((f.kind, f.seq), (FailureKind::BadKey, 1), "{f}");
}

#[test]
fn table_names_are_validated() {
    let err = kubesafe_audit_log::postgres::schema_sql("audit; DROP TABLE x").unwrap_err();
    assert!(err.to_string().contains("table"), "{err}");
    assert!(kubesafe_audit_log::postgres::schema_sql("ops.kubesafe_audit").is_ok());
}

/// A database error names the operation and the table it concerns.
#[test]
fn database_errors_name_the_table() {
    // Nothing listens on this socket directory: the connection itself fails.
    let dir = tempfile::tempdir().unwrap();
    let params = format!(
        "host={} port=5 user=nobody dbname=nowhere connect_timeout=2",
        dir.path().display()
    );
    let err = PostgresSink::connect(&params, "ops_audit").unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.starts_with("postgres connect (table ops_audit): "),
        "{msg}"
    );
}
