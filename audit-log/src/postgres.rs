//! PostgreSQL sink (feature `postgres`): an append-only table holding the chain.
//!
//! # Table
//!
//! [`PostgresSink::open`] creates the table if it is missing (see [`schema_sql`] for
//! the exact DDL). Each row stores the sealed record's canonical line in `record` —
//! the bytes the hash covers — plus columns extracted from it for queries (`seq`,
//! `prev_hash`, `hash`, `key_id`, `action_type`, `status`, `namespace`,
//! `resource_type`, `resource_name`, `requested_by`, `duration_ms`, `created_at`,
//! `completed_at`; timestamps in microseconds, PostgreSQL's precision).
//!
//! # Append-only in the database
//!
//! A trigger refuses every `UPDATE` and `DELETE` (row level) and `TRUNCATE`
//! (statement level) with SQLSTATE `42501`. A trigger only stops roles that cannot
//! disable it: the owner or a superuser can `ALTER TABLE … DISABLE TRIGGER`. So also
//! run the sink as a role that does **not** own the table, with only the rights it
//! needs:
//!
//! ```sql
//! -- as the table owner (for the default table name `kubesafe_audit`):
//! REVOKE ALL ON TABLE kubesafe_audit FROM PUBLIC;
//! REVOKE UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER ON TABLE kubesafe_audit FROM audit_writer;
//! GRANT SELECT, INSERT ON TABLE kubesafe_audit TO audit_writer;
//! GRANT SELECT ON TABLE kubesafe_audit TO audit_reader;
//! ```
//!
//! What neither can stop — a superuser editing rows with the trigger disabled — the
//! chain catches: [`PostgresSink::verify`] reads the table back in `seq` order, checks
//! every record's hash and link, and checks each extracted column against the sealed
//! record (so a changed `status` column is reported even though `record` is intact).
//!
//! # Concurrency
//!
//! Appends run in one transaction that first takes a transaction-scoped advisory lock
//! derived from the table name, reads the head (`ORDER BY seq DESC LIMIT 1`), seals
//! and inserts. Writers on any number of connections and hosts therefore extend one
//! chain; `seq` is also the primary key, so a fork is impossible even without the lock.

use std::fmt::Write as _;

use jiff::Timestamp;
use postgres::fallible_iterator::FallibleIterator;
use postgres::{Client, NoTls};
use sha2::{Digest, Sha256};

use crate::chain::{Chain, ChainHash, ChainHead};
use crate::error::{Error, Result};
use crate::query::{Filter, Stats};
use crate::record::{AuditRecord, SealedRecord};
use crate::sink::AuditSink;
use crate::verify::{Report, VerifyOptions};

/// The default table name.
pub const DEFAULT_TABLE: &str = "kubesafe_audit";

fn pg(table: &str, op: &'static str) -> impl FnOnce(postgres::Error) -> Error {
    let table = table.to_owned();
    move |source| Error::Postgres { op, table, source }
}

/// Checks a table name: `name` or `schema.name`, each part `[a-z_][a-z0-9_]*`, at most
/// 63 bytes (no quoting is ever needed).
fn check_table(table: &str) -> Result<()> {
    let ok_part = |p: &str| {
        !p.is_empty()
            && p.len() <= 63
            && p.bytes()
                .next()
                .is_some_and(|b| b.is_ascii_lowercase() || b == b'_')
            && p.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    };
    let parts: Vec<&str> = table.split('.').collect();
    if parts.len() <= 2 && parts.iter().all(|p| ok_part(p)) {
        Ok(())
    } else {
        Err(Error::InvalidOption {
            option: "table",
            message: format!("{table:?} must be name or schema.name with [a-z_][a-z0-9_]* parts"),
        })
    }
}

/// The DDL [`PostgresSink::open`] runs for `table` (idempotent).
pub fn schema_sql(table: &str) -> Result<String> {
    check_table(table)?;
    let base = table.rsplit('.').next().unwrap_or(table);
    let func = format!("{table}_append_only");
    Ok(format!(
        r#"
CREATE TABLE IF NOT EXISTS {table} (
    seq           bigint PRIMARY KEY CHECK (seq >= 1),
    prev_hash     text NOT NULL,
    hash          text NOT NULL UNIQUE,
    key_id        text,
    action_type   text NOT NULL,
    status        text NOT NULL,
    namespace     text,
    resource_type text,
    resource_name text,
    requested_by  text,
    duration_ms   bigint,
    created_at    timestamptz NOT NULL,
    completed_at  timestamptz,
    record        text NOT NULL
);
CREATE INDEX IF NOT EXISTS {base}_created_at_idx ON {table} (created_at);
CREATE INDEX IF NOT EXISTS {base}_action_status_idx ON {table} (action_type, status);
CREATE OR REPLACE FUNCTION {func}() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    RAISE EXCEPTION 'kubesafe audit table %.% is append-only: % refused', TG_TABLE_SCHEMA, TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$fn$;
DO $do$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_trigger WHERE tgrelid = '{table}'::regclass AND tgname = '{base}_no_update_delete') THEN
        CREATE TRIGGER {base}_no_update_delete BEFORE UPDATE OR DELETE ON {table}
            FOR EACH ROW EXECUTE FUNCTION {func}();
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_trigger WHERE tgrelid = '{table}'::regclass AND tgname = '{base}_no_truncate') THEN
        CREATE TRIGGER {base}_no_truncate BEFORE TRUNCATE ON {table}
            FOR EACH STATEMENT EXECUTE FUNCTION {func}();
    END IF;
END
$do$;
"#
    ))
}

/// The advisory-lock key of a table: first 8 bytes of SHA-256("kubesafe-audit-log:" + table).
fn lock_key(table: &str) -> i64 {
    let d = Sha256::digest(format!("kubesafe-audit-log:{table}").as_bytes());
    let mut b = [0u8; 8];
    b.copy_from_slice(&d[..8]);
    i64::from_be_bytes(b)
}

fn micros(t: Timestamp) -> i64 {
    t.as_microsecond()
}

/// The PostgreSQL sink (see the [module docs](self)).
pub struct PostgresSink {
    client: Client,
    table: String,
    lock_key: i64,
    insert: postgres::Statement,
}

impl std::fmt::Debug for PostgresSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresSink")
            .field("table", &self.table)
            .finish_non_exhaustive()
    }
}

impl PostgresSink {
    /// Connects (no TLS: use a unix socket or a local connection) and opens `table`.
    pub fn connect(params: &str, table: &str) -> Result<Self> {
        let client = Client::connect(params, NoTls).map_err(pg(table, "connect"))?;
        PostgresSink::open(client, table)
    }

    /// Uses an existing client (for TLS, build it with your `MakeTlsConnect`); creates
    /// the table and its triggers if missing.
    pub fn open(mut client: Client, table: &str) -> Result<Self> {
        let ddl = schema_sql(table)?;
        let key = lock_key(table);
        let mut tx = client.transaction().map_err(pg(table, "begin"))?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&key])
            .map_err(pg(table, "lock"))?;
        tx.batch_execute(&ddl).map_err(pg(table, "create table"))?;
        tx.commit().map_err(pg(table, "commit"))?;
        let insert = client
            .prepare(&format!(
                "INSERT INTO {table} (seq, prev_hash, hash, key_id, action_type, status, namespace,
                                      resource_type, resource_name, requested_by, duration_ms,
                                      created_at, completed_at, record)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11,
                         timestamptz 'epoch' + $12::bigint * interval '1 microsecond',
                         timestamptz 'epoch' + $13::bigint * interval '1 microsecond',
                         $14)"
            ))
            .map_err(pg(table, "prepare"))?;
        Ok(PostgresSink {
            client,
            table: table.to_owned(),
            lock_key: key,
            insert,
        })
    }

    /// The table name.
    pub fn table(&self) -> &str {
        &self.table
    }

    /// The underlying client.
    pub fn client(&mut self) -> &mut Client {
        &mut self.client
    }

    /// Records matching `filter`, in `seq` order (parsed from the stored lines; not
    /// verified — use [`verify`](PostgresSink::verify)).
    pub fn query(&mut self, filter: &Filter) -> Result<Vec<SealedRecord>> {
        let status = filter.status.map(|s| s.as_str().to_owned());
        let since = filter.since.map(micros);
        let until = filter.until.map(micros);
        let limit = filter.limit.map(|l| i64::try_from(l).unwrap_or(i64::MAX));
        let sql = format!(
            "SELECT seq, record FROM {t}
             WHERE ($1::text IS NULL OR status = $1)
               AND ($2::text IS NULL OR action_type = $2)
               AND ($3::text IS NULL OR namespace = $3)
               AND ($4::bigint IS NULL OR created_at >= timestamptz 'epoch' + $4 * interval '1 microsecond')
               AND ($5::bigint IS NULL OR created_at <  timestamptz 'epoch' + $5 * interval '1 microsecond')
             ORDER BY seq
             LIMIT $6",
            t = self.table
        );
        let rows = self
            .client
            .query(
                &sql,
                &[
                    &status,
                    &filter.action_type,
                    &filter.namespace,
                    &since,
                    &until,
                    &limit,
                ],
            )
            .map_err(pg(&self.table, "query"))?;
        rows.iter()
            .map(|row| {
                let corrupt = |line: u64, message: String| Error::Corrupt {
                    path: self.table.clone().into(),
                    line,
                    message,
                };
                let seq: i64 = row
                    .try_get(0)
                    .map_err(|e| corrupt(0, format!("column seq: {e}")))?;
                let line: String = row
                    .try_get(1)
                    .map_err(|e| corrupt(seq as u64, format!("column record: {e}")))?;
                SealedRecord::parse_line(&line).map_err(|message| corrupt(seq as u64, message))
            })
            .collect()
    }

    /// Counts by status and action type, mean duration, time range.
    pub fn stats(&mut self) -> Result<Stats> {
        let t = &self.table;
        let mut stats = Stats::default();
        for (column, counts) in [
            ("status", &mut stats.by_status),
            ("action_type", &mut stats.by_action_type),
        ] {
            for row in self
                .client
                .query(
                    &format!("SELECT {column}, count(*) FROM {t} GROUP BY {column}"),
                    &[],
                )
                .map_err(pg(&self.table, "stats"))?
            {
                // NULL is impossible unless someone dropped the NOT NULL constraint.
                let value: Option<String> = row.try_get(0).map_err(pg(&self.table, "stats"))?;
                let n: i64 = row.try_get(1).map_err(pg(&self.table, "stats"))?;
                let value = value.ok_or_else(|| Error::Corrupt {
                    path: t.into(),
                    line: 0,
                    message: format!(
                        "column {column} is NULL in {n} row(s): the table was edited (run verify)"
                    ),
                })?;
                counts.insert(value, n as u64);
            }
        }
        let row = self
            .client
            .query_one(
                &format!(
                    "SELECT count(*), avg(duration_ms)::float8,
                            (extract(epoch FROM min(created_at)) * 1000000)::bigint,
                            (extract(epoch FROM max(created_at)) * 1000000)::bigint,
                            coalesce(max(seq), 0)
                     FROM {t}"
                ),
                &[],
            )
            .map_err(pg(&self.table, "stats"))?;
        let total: i64 = row.try_get(0).map_err(pg(&self.table, "stats"))?;
        stats.total = total as u64;
        stats.avg_duration_ms = row.try_get(1).map_err(pg(&self.table, "stats"))?;
        let ts = |v: Option<i64>| v.and_then(|us| Timestamp::from_microsecond(us).ok());
        stats.first_created_at = ts(row.try_get(2).map_err(pg(&self.table, "stats"))?);
        stats.last_created_at = ts(row.try_get(3).map_err(pg(&self.table, "stats"))?);
        let last: i64 = row.try_get(4).map_err(pg(&self.table, "stats"))?;
        stats.last_seq = last as u64;
        Ok(stats)
    }

    /// Reads the whole table in `seq` order and verifies the chain, plus the agreement
    /// of every extracted column with its sealed record. Locations are
    /// [`Location::Row`](crate::Location::Row).
    pub fn verify(&mut self, opts: &VerifyOptions) -> Result<Report> {
        let sql = format!(
            "SELECT seq, record, prev_hash, hash, key_id, action_type, status, namespace,
                    resource_type, resource_name, requested_by, duration_ms,
                    (extract(epoch FROM created_at) * 1000000)::bigint,
                    (extract(epoch FROM completed_at) * 1000000)::bigint
             FROM {} ORDER BY seq",
            self.table
        );
        let table = self.table.clone();
        let mut it = self
            .client
            .query_raw(&sql, std::iter::empty::<i64>())
            .map_err(pg(&table, "verify"))?;
        let rows = std::iter::from_fn(|| match it.next() {
            Ok(Some(row)) => Some(row_check(&table, &row)),
            Ok(None) => None,
            Err(e) => Some(Err(pg(&table, "verify")(e))),
        });
        crate::verify::verify_rows(&table, rows, opts)
    }
}

/// `(seq, line, column mismatch)` for one row. Never panics on what a superuser can do
/// to the table (NULLs after dropping a constraint, changed column types): an unreadable
/// column is a mismatch, reported as a modified record.
fn row_check(table: &str, row: &postgres::Row) -> Result<(u64, String, Option<String>)> {
    let seq: i64 = row.try_get(0).map_err(pg(table, "verify: column seq"))?;
    let seq = seq as u64;
    let line: String = match row.try_get::<_, Option<String>>(1) {
        Ok(Some(line)) => line,
        Ok(None) => return Ok((seq, String::new(), Some("column record is NULL".into()))),
        Err(e) => return Ok((seq, String::new(), Some(format!("column record: {e}")))),
    };
    let Ok(r) = SealedRecord::parse_line(&line) else {
        // The verifier reports the unreadable record itself.
        return Ok((seq, line, None));
    };
    let mut diffs = String::new();
    let mut note = |what: std::fmt::Arguments<'_>| {
        let _ = write!(diffs, "{}{what}", if diffs.is_empty() { "" } else { "; " });
    };
    let mut cmp = |idx: usize, col: &str, sealed: Option<String>| {
        let column = match row.try_get::<_, Option<String>>(idx) {
            Ok(c) => c,
            Err(e) => return note(format_args!("column {col}: {e}")),
        };
        if column != sealed {
            note(format_args!(
                "column {col} is {column:?} but the sealed record says {sealed:?}"
            ));
        }
    };
    let s = |v: &str| Some(v.to_owned());
    cmp(2, "prev_hash", Some(r.prev_hash.to_hex()));
    cmp(3, "hash", Some(r.hash.to_hex()));
    cmp(4, "key_id", r.key_id.clone());
    cmp(5, "action_type", s(&r.record.action_type));
    cmp(6, "status", s(r.record.status.as_str()));
    cmp(7, "namespace", r.record.namespace.clone());
    cmp(8, "resource_type", r.record.resource_type.clone());
    cmp(9, "resource_name", r.record.resource_name.clone());
    cmp(10, "requested_by", r.record.requested_by.clone());
    if r.seq != seq {
        note(format_args!(
            "column seq is {seq} but the sealed record says {}",
            r.seq
        ));
    }
    let mut cmp_i64 =
        |idx: usize, col: &str, sealed: Option<i64>| match row.try_get::<_, Option<i64>>(idx) {
            Ok(column) if column == sealed => {}
            Ok(column) => note(format_args!(
                "column {col} is {column:?} but the sealed record says {sealed:?}"
            )),
            Err(e) => note(format_args!("column {col}: {e}")),
        };
    cmp_i64(
        11,
        "duration_ms",
        r.record
            .duration_ms
            .map(|d| i64::try_from(d).unwrap_or(i64::MAX)),
    );
    cmp_i64(12, "created_at", Some(micros(r.record.created_at)));
    cmp_i64(13, "completed_at", r.record.completed_at.map(micros));
    let mismatch = (!diffs.is_empty()).then_some(diffs);
    Ok((seq, line, mismatch))
}

impl AuditSink for PostgresSink {
    fn append_batch(
        &mut self,
        chain: &Chain,
        records: &[AuditRecord],
    ) -> Result<Vec<SealedRecord>> {
        let t = &self.table;
        let mut tx = self
            .client
            .transaction()
            .map_err(pg(&self.table, "begin"))?;
        // Lock, then read the head in a second statement (its own snapshot, taken after
        // the lock), both in one round trip.
        let msgs = tx
            .simple_query(&format!(
                "SELECT pg_advisory_xact_lock({}); SELECT seq, hash FROM {t} ORDER BY seq DESC LIMIT 1",
                self.lock_key
            ))
            .map_err(pg(&self.table, "lock and read head"))?;
        let mut head = ChainHead::default();
        for m in msgs {
            if let postgres::SimpleQueryMessage::Row(row) = m
                && row.columns().first().map(|c| c.name()) == Some("seq")
                && let (Ok(Some(seq)), Ok(Some(hash))) = (row.try_get(0), row.try_get(1))
            {
                let seq: u64 = seq.parse().map_err(|_| Error::CorruptTail {
                    path: t.into(),
                    offset: 0,
                    message: format!("seq column {seq:?} is not a number"),
                })?;
                let hash = ChainHash::from_hex(hash).ok_or_else(|| Error::CorruptTail {
                    path: t.into(),
                    offset: seq,
                    message: format!("hash column {hash:?} is not 64 lowercase hex digits"),
                })?;
                head = ChainHead { seq, hash };
            }
        }
        let insert = self.insert.clone();
        let mut out = Vec::with_capacity(records.len());
        let mut scratch = Vec::new();
        for r in records {
            let s = chain.seal_line(&head, r, &mut scratch)?;
            let seq = i64::try_from(s.seq).map_err(|_| Error::SeqOverflow(head.seq))?;
            let dur = s
                .record
                .duration_ms
                .map(|d| i64::try_from(d).unwrap_or(i64::MAX));
            tx.execute(
                &insert,
                &[
                    &seq,
                    &s.prev_hash.to_hex(),
                    &s.hash.to_hex(),
                    &s.key_id,
                    &s.record.action_type,
                    &s.record.status.as_str(),
                    &s.record.namespace,
                    &s.record.resource_type,
                    &s.record.resource_name,
                    &s.record.requested_by,
                    &dur,
                    &micros(s.record.created_at),
                    &s.record.completed_at.map(micros),
                    &s.line,
                ],
            )
            .map_err(pg(&self.table, "insert"))?;
            head = s.head();
            out.push(s);
        }
        tx.commit().map_err(pg(&self.table, "commit"))?;
        Ok(out)
    }

    fn head(&mut self) -> Result<ChainHead> {
        let t = self.table.clone();
        let mut tx = self
            .client
            .transaction()
            .map_err(pg(&self.table, "begin"))?;
        let h = head_of(&mut tx, &t)?;
        tx.commit().map_err(pg(&self.table, "commit"))?;
        Ok(h)
    }

    fn flush(&mut self) -> Result<()> {
        // Every append commits its transaction; durability follows the server's settings.
        Ok(())
    }
}

fn head_of(tx: &mut postgres::Transaction<'_>, table: &str) -> Result<ChainHead> {
    let row = tx
        .query_opt(
            &format!("SELECT seq, hash FROM {table} ORDER BY seq DESC LIMIT 1"),
            &[],
        )
        .map_err(pg(table, "read head"))?;
    match row {
        None => Ok(ChainHead::default()),
        Some(row) => {
            let seq: i64 = row.try_get(0).map_err(pg(table, "read head"))?;
            let hash: String = row.try_get(1).map_err(pg(table, "read head"))?;
            let hash = ChainHash::from_hex(&hash).ok_or_else(|| Error::CorruptTail {
                path: table.into(),
                offset: seq as u64,
                message: format!("hash column {hash:?} is not 64 lowercase hex digits"),
            })?;
            Ok(ChainHead {
                seq: seq as u64,
                hash,
            })
        }
    }
}
