//! Tamper-evident audit records for control-plane changes — part of
//! [kubesafe](https://github.com/kubesafe/kubesafe).
//!
//! Every record is sealed into a hash chain: it carries its position (`seq`), the hash
//! of its predecessor (`prevHash`) and its own `hash` over its canonical bytes. A
//! verifier walks the chain and names the **first** bad record — its `seq`, its byte
//! offset (and file, for rotated sets) and what happened to it: modified, deleted,
//! reordered, inserted, tail truncated (against a signed checkpoint), or wrong key.
//! Optionally the chain is keyed with HMAC-SHA256, so whoever can write the log cannot
//! recompute it.
//!
//! Sinks:
//! * [`FileSink`] — the embedded default: JSON Lines, a stable lock file so several
//!   processes can append to one chain, selectable fsync policy (per record, group
//!   commit, never), crash recovery of a torn final line, size-based rotation that
//!   carries the chain across files;
//! * `PostgresSink` (feature `postgres`) — an append-only table (a trigger refuses
//!   `UPDATE`, `DELETE` and `TRUNCATE`), query helpers and statistics, verification by
//!   reading the table back;
//! * `LokiSink` (feature `loki`) — Grafana Loki push API with low-cardinality labels,
//!   batching, retry with back-off, and a local spool so nothing is lost while Loki is
//!   down.
//!
//! # Example
//!
//! ```
//! use kubesafe_audit_log::{
//!     verify, AuditLog, AuditRecord, FileSink, FileSinkOptions, FsyncPolicy, Status, VerifyOptions,
//! };
//!
//! # fn main() -> Result<(), kubesafe_audit_log::Error> {
//! let dir = std::env::temp_dir().join(format!("kubesafe-audit-doc-{}", std::process::id()));
//! std::fs::create_dir_all(&dir).unwrap();
//! let path = dir.join("audit.jsonl");
//!
//! let sink = FileSink::open(&path, FileSinkOptions::new().fsync(FsyncPolicy::EveryRecord))?;
//! let mut log = AuditLog::new(sink);
//! let sealed = log.append(
//!     &AuditRecord::new("manifest.edit", Status::Completed)
//!         .namespace("kube-system")
//!         .resource("static-pod-manifest", "kube-apiserver")
//!         .parameter("flag", "--profiling")
//!         .parameter("value", false)
//!         .requested_by("alice")
//!         .duration_ms(840),
//! )?;
//! assert_eq!(sealed.seq, 1);
//! drop(log);
//!
//! let report = verify(&path, &VerifyOptions::new())?;
//! assert!(report.is_intact());
//! assert_eq!(report.records, 1);
//!
//! // Change one byte of the stored record: the verifier names it.
//! let text = std::fs::read_to_string(&path).unwrap();
//! std::fs::write(&path, text.replace("alice", "mallory")).unwrap();
//! let report = verify(&path, &VerifyOptions::new())?;
//! let failure = report.failure.unwrap();
//! assert_eq!(failure.kind, kubesafe_audit_log::FailureKind::Modified);
//! assert_eq!(failure.seq, 1);
//! # std::fs::remove_dir_all(&dir).unwrap();
//! # Ok(())
//! # }
//! ```
//!
//! # What is hashed
//!
//! This section is the specification an independent verifier needs.
//!
//! A stored record is one line: the **canonical JSON** ([RFC 8785], "JCS") of a JSON
//! object, followed by `\n`. Canonical means: no whitespace, object members sorted by
//! the UTF-16 code units of their names, strings with only the mandatory escapes (`\"`,
//! `\\`, `\b`, `\f`, `\n`, `\r`, `\t`, other control characters as `\u00xx` in
//! lowercase hex, everything else as UTF-8), and numbers in ECMAScript shortest form
//! (`1e+30`, `0.002`, `4.5`). One deliberate difference from RFC 8785: integers that
//! fit a signed or unsigned 64-bit integer are written with all their digits (RFC 8785
//! would round them to a double; this crate only writes integers below 2^53 itself,
//! where both rules agree).
//!
//! The object has these members (camelCase, stable): `actionType`, `status`
//! (`pending | in_progress | completed | failed | rejected`), `createdAt` (RFC 3339,
//! UTC, `Z`), and when set `namespace`, `resourceType`, `resourceName`, `parameters`
//! (object), `requestedBy`, `policyDecision`, `signature` (opaque; for example a
//! `kubesafe-signing` envelope MAC), `durationMs`, `errorMessage`, `result`,
//! `completedAt`; plus the chain members `seq` (1, 2, …), `prevHash` (64 lowercase hex
//! digits; 64 zeros for seq 1), `hash`, `v` (format version, `1`) and, for keyed
//! records, `keyId` and `keyCheck`.
//!
//! Let **C** be the canonical JSON of the object **without its `hash` member** (that is,
//! the stored line with `,"hash":"…"` removed). Then
//!
//! * unkeyed: `hash = hex(SHA-256(C))`;
//! * keyed: `hash = hex(HMAC-SHA256(secret, C))`, where the secret is the key named by
//!   `keyId`.
//!
//! C contains `seq` and `prevHash`, so each hash covers the record, its position and
//! (through `prevHash`) the entire history before it. A verifier checks, for each line
//! in order: the line is exactly the canonical form of what it decodes to (so no byte
//! can change without changing the decoded value), `v` is 1, the hash matches,
//! `seq` is one more than the previous record's (1 for the first), and `prevHash`
//! equals the previous record's `hash`. Unknown extra members are allowed and covered
//! by the hash.
//!
//! # Keyed chains
//!
//! An unkeyed chain shows accidental or naive edits, but anyone who can write the file
//! can edit a record and recompute every hash after it: the verifier then reports the
//! log as **intact** (a test, `rewritten_history_is_caught_by_the_checkpoint`, does
//! exactly that). Two defences: [checkpoints](Checkpoint) stored elsewhere, and keyed
//! chains ([`Chain::keyed`] with an [`AuditKey`]).
//!
//! | attacker who can write the log | unkeyed | keyed | + checkpoint at seq *c* |
//! |---|---|---|---|
//! | edits a record, recomputes the chain | undetected | detected | detected if the record's seq ≤ *c* |
//! | appends forged records | undetected | detected (unless `allow_unkeyed`) | undetected if unkeyed |
//! | cuts off the newest records | undetected | undetected | detected if the log ends before *c* |
//!
//! So with an unkeyed chain, whatever follows the newest checkpoint can be rewritten
//! or cut off undetected until the next checkpoint; a keyed chain stops every rewrite
//! by anyone without the key, but not the deletion of the newest records. Keep the key
//! and the checkpoints out of reach of whoever can write the log. A keyed
//! record carries `keyId` and `keyCheck` = the first 8 bytes (16 hex digits) of
//! `HMAC-SHA256(secret, "kubesafe-audit-log key check v1")`. The verifier reports
//! [`FailureKind::BadKey`] (not "modified") when no record sealed under that key id
//! verifies with the supplied key and the key check differs; with keys supplied it
//! refuses unkeyed records ([`FailureKind::Unkeyed`]) so a keyed chain cannot be
//! swapped for a recomputed unkeyed one.
//!
//! # Verification report
//!
//! [`verify`] (file sets), [`verify_bytes`] and `PostgresSink::verify` return a
//! [`Report`]: how many records verified, the last good head, and the first
//! [`Failure`] with its [`FailureKind`] and [`Location`]. How kinds are told apart at
//! the first record that does not continue the chain:
//!
//! * the line is unreadable, not canonical, or its hash does not match →
//!   **modified** — unless the *next* record links straight to the previous good one
//!   (then the line is **inserted**), or, for keyed records, the key is wrong
//!   (**bad key**, see above);
//! * a validly sealed record with a `seq` higher than expected → **inserted** if the
//!   same seq appears again later (a copy moved ahead), **reordered** if the expected
//!   seq appears later, else **deleted** (the report gives the first missing seq);
//! * a `seq` lower than expected → **inserted** (a duplicate or replay; when it
//!   competes with the previous record for the same place, the one the chain does not
//!   continue from is named);
//! * the right `seq` but a `prevHash` that does not link → **modified** (the chain was
//!   recomputed from here) or **inserted** if the chain links around it;
//! * the log's final line without newline → **torn tail** (a rotated file that ends
//!   without newline although later files follow is a bad line inside the chain:
//!   **inserted** if the chain links around it, else **modified**);
//! * a line longer than [`VerifyOptions::max_line_bytes`] → a bad line (as above),
//!   skipped without being held in memory;
//! * with a checkpoint: the log ends before the checkpoint's seq → **truncated tail**;
//!   the record at that seq has another hash → **checkpoint mismatch**.
//!
//! Deleting the *last* records of an unkeyed or keyed log is only detectable against a
//! checkpoint (or a copy of the head kept elsewhere): take checkpoints regularly.
//!
//! # File sink
//!
//! See [`file`](mod@file) for the file layout, the locking protocol that lets several processes
//! append to one chain, the fsync policies and crash recovery.
//!
//! # PostgreSQL sink
//!
//! Behind the `postgres` feature; see `postgres::PostgresSink` (module `postgres`). The table is made
//! append-only by a trigger; also revoke the privileges (SQL in the module docs). The
//! tests run against a real PostgreSQL server that the test harness starts itself.
//!
//! # Loki sink
//!
//! Behind the `loki` feature; see `loki::LokiSink`. The sink is tested against a
//! loopback HTTP server that checks the documented push payload (including Loki being
//! down and coming back), **not against a real Loki** (Loki is not installable in the
//! project's CI).
//!
//! [RFC 8785]: https://www.rfc-editor.org/rfc/rfc8785
#![warn(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod canon;
mod chain;
mod checkpoint;
mod error;
pub mod file;
mod query;
mod record;
mod sink;
mod verify;

#[cfg(feature = "loki")]
#[cfg_attr(docsrs, doc(cfg(feature = "loki")))]
pub mod loki;
#[cfg(feature = "postgres")]
#[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
pub mod postgres;

/// Re-export of the `jiff` crate, whose `Timestamp` the records use.
pub use jiff;

pub use chain::{AuditKey, Chain, ChainHash, ChainHead, KeyRing, MIN_KEY_LEN};
pub use checkpoint::{
    Checkpoint, CheckpointSigner, CheckpointVerifier, HMAC_SHA256, VerifiedCheckpoint,
};
pub use error::{Error, Result};
pub use file::{FileSink, FileSinkOptions, FsyncPolicy, LockMode, Recovery, query, stats};
pub use query::{Filter, Stats};
pub use record::{
    AuditRecord, FORMAT_VERSION, MAX_RECORD_BYTES, MAX_VALUE_DEPTH, SealedRecord, Status,
};
pub use sink::{AuditLog, AuditSink};
pub use verify::{Failure, FailureKind, Location, Report, VerifyOptions, verify, verify_bytes};
