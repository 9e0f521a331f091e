//! Admission state across one-shot invocations, derived from the audit log.
//!
//! A `kubesafe execute` process lives for one envelope, so in-memory replay caches, rate
//! limiters and idempotency stores would start empty every time. The audit log is the
//! durable record of every envelope the executor has seen (every outcome writes one
//! record), so each invocation rebuilds the state from it, under an exclusive lock
//! (`<log>.execute.lock`) held from the read until its own record is written:
//!
//! * **replay** — every record whose envelope verified (`policyDecision.envelope.verified`)
//!   puts its `(kid, nonce)` into the verifier's replay store until `exp + skew`;
//! * **rate limits** — every admitted envelope (`policyDecision.decision == "admitted"`,
//!   whatever happened next; `--apply` writes an `in_progress` record before sending
//!   anything and the outcome record after, counted once) is replayed, in time order, through the same `governor` GCRA
//!   limiter the library uses, on a fake clock set to each record's `createdAt`; the clock
//!   is then set to now and the new action is checked. The limit therefore holds exactly
//!   as in a long-running process;
//! * **idempotency** — every admitted action with an idempotency key that was sent to the
//!   cluster (`--apply`) and completed, or that started and has no outcome record (the
//!   executor died) or a `failed` record with `result.outcome = "unknown"` (a write was
//!   sent and not answered, or answered 5xx): the outcome is unknown, so it must not run
//!   again by itself), reserves
//!   the key with the fingerprint the library computed (stored in the record) until
//!   `createdAt + ttl`. A failed or refused execution does not reserve it (the client may
//!   retry), nor does a dry run (it executed nothing; the real run carries the same key).
//!
//! Only records written by this executor (`policyDecision.executor`) and created within the
//! horizon ([`horizon`]) are kept in memory, so memory stays proportional to recent
//! activity, not to the size of the log. The log is
//! verified first; a log that fails verification is not used (the executor refuses to run),
//! since removing records from it would lift rate limits and replay protection. This makes
//! the state exactly as trustworthy as the log: an unkeyed chain can be rewritten,
//! truncated or deleted by whoever can write the file; a keyed chain (`--audit-key-file`)
//! cannot be forged but can still lose its tail; `--checkpoint` (a signed head the log must
//! still contain, moved after every record) detects that. The cost is one scan of the log
//! per invocation (linear in its size; rotate it).

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use governor::clock::FakeRelativeClock;
use kubesafe_audit_log::jiff::Timestamp;
use kubesafe_audit_log::{Filter, SealedRecord, Status, VerifyOptions};
use kubesafe_signing::action::ActionType;
use kubesafe_signing::admission::{
    DEFAULT_RATE_LIMIT, IdempotencyError, IdempotencyStore, InMemoryIdempotencyStore, RateLimit,
    RateLimits, Reservation,
};
use kubesafe_signing::{InMemoryReplayStore, ReplayStore as _};
use serde_json::Value;

/// How far back the records matter, at least:
///
/// * `max_ttl + skew + MAX_SKEW` for nonces: an envelope recorded at `c` was verified with
///   `iat <= c + skew_then` (at most [`MAX_SKEW`]), and the current verifier accepts it
///   only while `now < exp + skew <= iat + max_ttl + skew` (a longer lifetime is refused
///   before the nonce is looked at). Using the *current* skew twice would let an envelope
///   verified under a larger earlier `--skew` fall out of the horizon while still valid;
/// * the idempotency TTL for keys;
/// * twice the longest `N × window` of the rate limits. The GCRA state after an admission at
///   `t` lies before `t + N × window`, so older admissions only matter when the limit was
///   used at full rate through the whole horizon; and every admission inside the last
///   window is always replayed, which is what the guarantee "at most N in any window"
///   rests on.
pub(crate) fn horizon(
    max_ttl: Duration,
    skew: Duration,
    idempotency_ttl: Duration,
    limits: &BTreeMap<ActionType, RateLimit>,
) -> Duration {
    let longest_limit = ActionType::ALL
        .iter()
        .map(|ty| limits.get(ty).copied().unwrap_or(DEFAULT_RATE_LIMIT))
        .map(|l| l.window().saturating_mul(l.max()))
        .max()
        .unwrap_or_default();
    (max_ttl + skew + MAX_SKEW)
        .max(idempotency_ttl)
        .max(longest_limit.saturating_mul(2))
}

/// The largest `--skew` accepted. The horizon covers it whatever the current `--skew`: an
/// envelope verified under a larger skew earlier may be dated that far ahead of the record.
pub(crate) const MAX_SKEW: Duration = Duration::from_secs(600);

/// `policyDecision.executor` of the records this executor writes.
pub(crate) const EXECUTOR_TAG: &str = "kubesafe-execute/v1";

/// The exclusive lock serialising executors that share one audit log.
#[derive(Debug)]
pub(crate) struct ExecutorLock {
    _file: File,
    path: PathBuf,
}

impl ExecutorLock {
    /// Blocks until this process holds `<log>.execute.lock`.
    pub(crate) fn acquire(log: &Path) -> Result<Self, String> {
        let mut name = log.as_os_str().to_owned();
        name.push(".execute.lock");
        let path = PathBuf::from(name);
        let mut options = std::fs::OpenOptions::new();
        options.create(true).truncate(false).write(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt as _;
            options.mode(0o600);
        }
        let file = options
            .open(&path)
            .map_err(|e| format!("cannot open lock file {}: {e}", path.display()))?;
        file.lock()
            .map_err(|e| format!("cannot lock {}: {e}", path.display()))?;
        Ok(ExecutorLock { _file: file, path })
    }

    /// The lock file.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

/// One admitted envelope, as recorded.
#[derive(Debug)]
struct Attempt {
    action_type: ActionType,
    created_at: Timestamp,
    key: Option<(String, [u8; 32])>,
    /// The status of its latest record.
    status: Status,
    /// Whether it went to the cluster (`--apply`): only then does it hold its key.
    applied: bool,
    /// Whether its latest record says a write was sent with an unknown outcome.
    unknown: bool,
}

/// What earlier invocations recorded.
#[derive(Debug, Default)]
pub(crate) struct Ledger {
    /// Records in the log (all writers).
    pub(crate) records: u64,
    /// `(kid, nonce, exp)` of verified envelopes.
    nonces: Vec<(String, String, u64)>,
    /// `(type, createdAt)` of admitted actions.
    admissions: Vec<(ActionType, Timestamp)>,
    /// `(key, fingerprint, createdAt seconds)` of applied actions with a key.
    idempotency: Vec<(String, [u8; 32], i64)>,
}

impl Ledger {
    /// Verifies the log and reads the executor's records created at or after `since`.
    pub(crate) fn load(
        log: &Path,
        verify: &VerifyOptions,
        since: Timestamp,
    ) -> Result<Self, String> {
        let report = kubesafe_audit_log::verify(log, verify)
            .map_err(|e| format!("audit log {}: {e}", log.display()))?;
        if let Some(failure) = &report.failure {
            return Err(format!(
                "audit log {} fails verification ({failure}); refusing to derive rate limits \
                 and replay protection from it — inspect it with `kubesafe audit verify`",
                log.display()
            ));
        }
        let records = kubesafe_audit_log::query(log, &Filter::new().since(since))
            .map_err(|e| format!("audit log {}: {e}", log.display()))?;
        let mut ledger = Ledger {
            records: report.records,
            ..Ledger::default()
        };
        let mut attempts = HashMap::new();
        for r in &records {
            ledger.add(r, &mut attempts);
        }
        ledger.finish(attempts);
        Ok(ledger)
    }

    /// Reads one record; admitted attempts are collected in `attempts`, keyed by their
    /// envelope, so the `in_progress` record `--apply` writes ahead and the outcome record
    /// after it count as one admission.
    fn add(&mut self, r: &SealedRecord, attempts: &mut HashMap<(String, String), Attempt>) {
        let Some(d) = r.record.policy_decision.as_ref().and_then(Value::as_object) else {
            return;
        };
        if d.get("executor").and_then(Value::as_str) != Some(EXECUTOR_TAG) {
            return;
        }
        let Some(env) = d.get("envelope") else {
            return;
        };
        let (Some(kid), Some(nonce), Some(exp)) = (
            env.get("kid").and_then(Value::as_str),
            env.get("nonce").and_then(Value::as_str),
            env.get("exp").and_then(Value::as_u64),
        ) else {
            return;
        };
        if env.get("verified").and_then(Value::as_bool) != Some(true) {
            return;
        }
        self.nonces.push((kid.to_owned(), nonce.to_owned(), exp));
        if d.get("decision").and_then(Value::as_str) != Some("admitted") {
            return;
        }
        let Ok(action_type) =
            serde_json::from_value::<ActionType>(Value::String(r.record.action_type.clone()))
        else {
            return;
        };
        let key = match (
            d.get("idempotencyKey").and_then(Value::as_str),
            d.get("idempotencyFingerprint")
                .and_then(Value::as_str)
                .and_then(decode_hex32),
        ) {
            (Some(key), Some(fp)) => Some((key.to_owned(), fp)),
            _ => None,
        };
        // `--apply` writes `in_progress` with `result.executor == "kube"` before sending
        // anything; a dry run's only record says `"dry-run"`.
        let applied = r
            .record
            .result
            .as_ref()
            .and_then(|v| v.get("executor"))
            .and_then(Value::as_str)
            == Some("kube");
        let unknown = r.record.status == Status::Failed
            && r.record
                .result
                .as_ref()
                .and_then(|v| v.get("outcome"))
                .and_then(Value::as_str)
                == Some("unknown");
        attempts
            .entry((kid.to_owned(), nonce.to_owned()))
            .and_modify(|a| {
                a.status = r.record.status;
                a.applied |= applied;
                a.unknown = unknown;
            })
            .or_insert(Attempt {
                action_type,
                created_at: r.record.created_at,
                key,
                status: r.record.status,
                applied,
                unknown,
            });
    }

    /// Turns the admitted attempts into admissions and idempotency reservations.
    fn finish(&mut self, attempts: HashMap<(String, String), Attempt>) {
        for a in attempts.into_values() {
            self.admissions.push((a.action_type, a.created_at));
            // Sent to the cluster and completed, or started and never finished (a crash),
            // or failed after a write went out: the outcome is unknown, so a retry must not
            // run it again automatically. Failed (nothing applied) and refused ones free the
            // key for a retry, and so do dry runs: they executed nothing, and the real run
            // comes with the same key.
            if a.applied
                && (a.unknown || matches!(a.status, Status::Completed | Status::InProgress))
                && let Some((key, fp)) = a.key
            {
                self.idempotency.push((key, fp, a.created_at.as_second()));
            }
        }
    }

    /// A replay store holding every nonce still inside its envelope's window at `now`.
    pub(crate) fn replay_store(&self, skew: Duration, now: u64) -> InMemoryReplayStore {
        let live: Vec<_> = self
            .nonces
            .iter()
            .filter_map(|(kid, nonce, exp)| {
                let until = exp.saturating_add(skew.as_secs());
                (until > now).then_some((kid, nonce, until))
            })
            .collect();
        let store = InMemoryReplayStore::new(
            kubesafe_signing::replay::DEFAULT_REPLAY_CAPACITY.max(live.len() + 1),
        );
        for (kid, nonce, until) in live {
            // A duplicate (the same nonce recorded twice) is already in: nothing to do.
            let _ = store.check_and_record(kid, nonce, until, now);
        }
        store
    }

    /// Rate limiters on a fake clock, fed with every earlier admission in time order and
    /// left at `now`: the next `check` decides as a process running since the first
    /// admission would.
    pub(crate) fn rate_limits(
        &self,
        limits: &BTreeMap<ActionType, RateLimit>,
        now: Timestamp,
    ) -> RateLimits<FakeRelativeClock> {
        let clock = FakeRelativeClock::default();
        let mut rate_limits = RateLimits::with_clock(clock.clone());
        for (ty, limit) in limits {
            rate_limits.set(*ty, *limit);
        }
        let mut events = self.admissions.clone();
        events.sort_by_key(|(_, t)| *t);
        let base = events.first().map_or(now, |(_, t)| *t);
        let mut at = 0u64;
        let mut advance_to = |t: Timestamp| {
            let offset = u64::try_from(t.as_nanosecond() - base.as_nanosecond()).unwrap_or(0);
            if offset > at {
                clock.advance(Duration::from_nanos(offset - at));
                at = offset;
            }
        };
        for (ty, t) in &events {
            advance_to(*t);
            // Admitted then; a limit tightened since may refuse it now, which is fine: the
            // state is then that of the new limit.
            let _ = rate_limits.check(*ty);
        }
        advance_to(now);
        rate_limits
    }

    /// An idempotency store holding every key of a completed action younger than `ttl`.
    pub(crate) fn idempotency_store(&self, ttl: Duration, now: u64) -> RecordingIdempotencyStore {
        let store = RecordingIdempotencyStore::default();
        let ttl = ttl.as_secs().max(1);
        for (key, fp, created) in &self.idempotency {
            let expires = u64::try_from(*created).unwrap_or(0).saturating_add(ttl);
            if expires > now {
                // A later record with the same key (same fingerprint) is a no-op here.
                let _ = store.inner.reserve(key, fp, expires, now);
            }
        }
        store
    }
}

fn decode_hex32(s: &str) -> Option<[u8; 32]> {
    if s.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// Lower-case hex.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// An in-memory idempotency store that also remembers the last key it reserved, with the
/// fingerprint the admission computed, so the record can carry it for the next invocation.
#[derive(Debug, Clone, Default)]
pub(crate) struct RecordingIdempotencyStore {
    inner: Arc<InMemoryIdempotencyStore>,
    reserved: Arc<Mutex<HashMap<String, [u8; 32]>>>,
}

impl RecordingIdempotencyStore {
    /// The fingerprint `key` was reserved with in this process, if it was.
    pub(crate) fn fingerprint(&self, key: &str) -> Option<[u8; 32]> {
        self.reserved
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(key)
            .copied()
    }
}

impl IdempotencyStore for RecordingIdempotencyStore {
    fn reserve(
        &self,
        key: &str,
        fingerprint: &[u8; 32],
        expires_at: u64,
        now: u64,
    ) -> Result<Reservation, IdempotencyError> {
        let r = self.inner.reserve(key, fingerprint, expires_at, now)?;
        if r == Reservation::New {
            self.reserved
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .insert(key.to_owned(), *fingerprint);
        }
        Ok(r)
    }

    fn release(&self, key: &str, fingerprint: &[u8; 32]) {
        self.inner.release(key, fingerprint);
        self.reserved
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ts(secs: i64) -> Timestamp {
        Timestamp::from_second(secs).unwrap()
    }

    #[test]
    fn replayed_admissions_enforce_the_strict_window() {
        // 5 per 300 s, admitted at 0, 10, 20, 30, 40.
        let mut ledger = Ledger::default();
        for i in 0..5 {
            ledger
                .admissions
                .push((ActionType::RestartPod, ts(1_000_000 + 10 * i)));
        }
        let mut limits = BTreeMap::new();
        limits.insert(
            ActionType::RestartPod,
            RateLimit::per_window(5, Duration::from_secs(300)).unwrap(),
        );
        // At 50 s: used up; the next permit comes 300 s after the first, at 300 s.
        let rl = ledger.rate_limits(&limits, ts(1_000_050));
        assert_eq!(rl.check(ActionType::RestartPod), Err(250));
        // Other types are independent.
        assert_eq!(rl.check(ActionType::ScaleDeployment), Ok(()));
        // At 300 s exactly one permit is back.
        let rl = ledger.rate_limits(&limits, ts(1_000_300));
        assert_eq!(rl.check(ActionType::RestartPod), Ok(()));
        assert!(rl.check(ActionType::RestartPod).is_err());
        // Events out of order in the log are sorted; a clock behind the last event is
        // clamped (no negative time).
        ledger.admissions.reverse();
        let rl = ledger.rate_limits(&limits, ts(999_000));
        assert!(rl.check(ActionType::RestartPod).is_err());
    }

    fn line(
        seq: u64,
        status: &str,
        nonce: &str,
        decision: &str,
        key: Option<&str>,
    ) -> SealedRecord {
        let mut d = serde_json::json!({
            "executor": EXECUTOR_TAG, "decision": decision,
            "envelope": {"kid": "k", "nonce": nonce, "iat": 1, "exp": 2, "verified": true}
        });
        if let Some(key) = key {
            d["idempotencyKey"] = key.into();
            d["idempotencyFingerprint"] = hex(&[seq as u8; 32]).into();
        }
        let mut v = serde_json::json!({
            "seq": seq, "prevHash": "0".repeat(64), "hash": "1".repeat(64), "v": 1,
            "actionType": "scale_deployment", "status": status,
            "createdAt": format!("2025-01-01T00:00:{seq:02}Z"), "policyDecision": d
        });
        // What `--apply` writes: `in_progress` and `completed` carry the kube executor's
        // result; `failed` and `rejected` have none.
        match status {
            "in_progress" => v["result"] = json!({"executor": "kube", "outcome": "started"}),
            "completed" => v["result"] = json!({"executor": "kube", "outcome": "applied"}),
            "failed" if nonce == "f" => {
                v["result"] = json!({"executor": "kube", "outcome": "unknown"});
            }
            _ => {}
        }
        SealedRecord::parse_line(&v.to_string()).unwrap()
    }

    fn dry_run_line(seq: u64, nonce: &str, key: &str) -> SealedRecord {
        let mut v: Value =
            serde_json::from_str(line(seq, "completed", nonce, "admitted", Some(key)).line())
                .unwrap();
        v["result"] = json!({"executor": "dry-run", "outcome": "planned"});
        SealedRecord::parse_line(&v.to_string()).unwrap()
    }

    fn ledger_of(records: &[SealedRecord]) -> Ledger {
        let mut ledger = Ledger::default();
        let mut attempts = HashMap::new();
        for r in records {
            ledger.add(r, &mut attempts);
        }
        ledger.finish(attempts);
        ledger
    }

    #[test]
    fn a_started_and_finished_attempt_counts_once() {
        let ledger = ledger_of(&[
            // Applied: in_progress then completed, one admission, key reserved.
            line(1, "in_progress", "a", "admitted", Some("ka")),
            line(2, "completed", "a", "admitted", Some("ka")),
            // Killed mid-apply: only in_progress; counts, and keeps its key.
            line(3, "in_progress", "b", "admitted", Some("kb")),
            // Failed: counts, frees its key.
            line(4, "in_progress", "c", "admitted", Some("kc")),
            line(5, "failed", "c", "admitted", Some("kc")),
            // Rejected at admission: nonce spent, no admission.
            line(6, "rejected", "d", "rejected", None),
            // A dry run: counts against the rate limit, but does not hold its key.
            dry_run_line(8, "e", "ke"),
            // A write sent, outcome unknown (5xx, timeout): counts, keeps its key.
            line(9, "in_progress", "f", "admitted", Some("kf")),
            line(10, "failed", "f", "admitted", Some("kf")),
            // Another tool's record (no executor tag): ignored.
            SealedRecord::parse_line(
                &serde_json::json!({
                    "seq": 7, "prevHash": "0".repeat(64), "hash": "1".repeat(64), "v": 1,
                    "actionType": "scale_deployment", "status": "completed",
                    "createdAt": "2025-01-01T00:00:07Z",
                    "policyDecision": {"decision": "admitted",
                                       "envelope": {"kid": "k", "nonce": "x", "exp": 2,
                                                    "verified": true}}
                })
                .to_string(),
            )
            .unwrap(),
        ]);
        assert_eq!(ledger.admissions.len(), 5);
        let mut keys: Vec<_> = ledger
            .idempotency
            .iter()
            .map(|(k, _, _)| k.as_str())
            .collect();
        keys.sort_unstable();
        assert_eq!(keys, ["ka", "kb", "kf"]);
        let mut nonces: Vec<_> = ledger.nonces.iter().map(|(_, n, _)| n.as_str()).collect();
        nonces.dedup();
        assert_eq!(nonces, ["a", "b", "c", "d", "e", "f"]);
    }

    #[test]
    fn nonces_live_until_exp_plus_skew() {
        let ledger = Ledger {
            nonces: vec![
                ("k".into(), "old".into(), 100),
                ("k".into(), "live".into(), 200),
            ],
            ..Ledger::default()
        };
        let store = ledger.replay_store(Duration::from_secs(30), 150);
        assert_eq!(store.len(), 1);
        assert!(store.check_and_record("k", "live", 230, 150).is_err());
        assert!(store.check_and_record("k", "old", 230, 150).is_ok());
    }

    #[test]
    fn idempotency_keys_expire_after_the_ttl() {
        let fp = [7u8; 32];
        let ledger = Ledger {
            idempotency: vec![("a".into(), fp, 1000), ("b".into(), fp, 100)],
            ..Ledger::default()
        };
        let store = ledger.idempotency_store(Duration::from_secs(500), 1200);
        assert_eq!(
            store.reserve("a", &fp, 2000, 1200),
            Ok(Reservation::Duplicate)
        );
        assert_eq!(
            store.reserve("a", &[8; 32], 2000, 1200),
            Ok(Reservation::Conflict)
        );
        assert_eq!(store.reserve("b", &fp, 2000, 1200), Ok(Reservation::New));
        assert_eq!(store.fingerprint("b"), Some(fp));
        assert_eq!(store.fingerprint("a"), None);
    }

    #[test]
    fn the_horizon_covers_nonces_keys_and_limits() {
        let mut limits = BTreeMap::new();
        let h = horizon(
            Duration::from_secs(3600),
            Duration::from_secs(30),
            Duration::from_secs(60),
            &limits,
        );
        assert_eq!(h, Duration::from_secs(4230));
        limits.insert(
            ActionType::ScaleDeployment,
            RateLimit::per_window(10, Duration::from_secs(3600)).unwrap(),
        );
        let h = horizon(
            Duration::from_secs(3600),
            Duration::from_secs(30),
            Duration::from_secs(60),
            &limits,
        );
        assert_eq!(h, Duration::from_secs(72_000));
        // The default limit (5 per 300 s) counts for types not configured.
        let h = horizon(
            Duration::ZERO,
            Duration::ZERO,
            Duration::ZERO,
            &BTreeMap::new(),
        );
        assert_eq!(h, Duration::from_secs(3000));
        let h = horizon(
            Duration::ZERO,
            Duration::ZERO,
            Duration::ZERO,
            &tiny_limits(),
        );
        assert_eq!(h, MAX_SKEW);
    }

    fn tiny_limits() -> BTreeMap<ActionType, RateLimit> {
        ActionType::ALL
            .iter()
            .map(|ty| {
                (
                    *ty,
                    RateLimit::per_window(1, Duration::from_secs(1)).unwrap(),
                )
            })
            .collect()
    }

    #[test]
    fn a_nonce_verified_under_a_larger_earlier_skew_stays_within_the_horizon() {
        // An earlier run with --skew 10m accepted an envelope issued 10 min ahead of its
        // clock (iat = c + 600, exp = iat + 3600) and recorded it at c. A run now with
        // --skew 0 accepts that envelope until exp, i.e. up to c + 4199: the record must
        // still be read then, or the envelope could be replayed.
        let h = horizon(
            Duration::from_secs(3600),
            Duration::ZERO,
            Duration::ZERO,
            &tiny_limits(),
        );
        assert!(h >= Duration::from_secs(4199), "{h:?}");
        assert_eq!(MAX_SKEW, Duration::from_secs(600));
    }

    #[test]
    fn hex_round_trip() {
        let bytes: [u8; 32] = std::array::from_fn(|i| (i * 37) as u8);
        assert_eq!(decode_hex32(&hex(&bytes)), Some(bytes));
        assert_eq!(decode_hex32("zz"), None);
        assert_eq!(decode_hex32(&"g".repeat(64)), None);
    }
}
