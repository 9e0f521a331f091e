//! `kubesafe execute`: verify a signed action envelope, admit it, carry it out (dry run by
//! default) and audit every outcome.
//!
//! ```text
//! kubesafe execute --key-file F --kid K --allow-namespace shop --audit-log audit.jsonl \
//!     [--rate restart_pod=5/300s] [--apply] [--json] ENVELOPE|-
//! ```
//!
//! Flow, under an exclusive lock on `<audit-log>.execute.lock`:
//!
//! 1. verify the audit log (and, with `--checkpoint`, that it still holds the signed head
//!    the last run left) and rebuild the admission state from it ([`ledger`]);
//! 2. parse and verify the envelope (`kubesafe-signing` `Verifier`: MAC, key id, time
//!    window, replay of the nonce) as an `ActionRequest`;
//! 3. admit it (`Admission`: namespace allow-list, idempotency key, `governor` rate limit
//!    of its type);
//! 4. execute it through an [`executor::Executor`]: [`executor::DryRunExecutor`] (default)
//!    or, with `--apply`, [`executor::KubeExecutor`];
//! 5. append one hash-chained audit record, whatever happened (also for rejections). With
//!    `--apply`, an `in_progress` record is appended before the first request is sent (and
//!    nothing is sent if it cannot be), so a crash mid-action leaves the admission on record.
//!
//! Exit codes: 0 executed, planned (dry run), skipped (rollback already at that template) or
//! duplicate (idempotency key already done or its outcome unknown); 1 rejected (the canonical code is printed:
//! `UNAUTHORIZED`, `FORBIDDEN`, `RATE_LIMIT_EXCEEDED` with `Retry-After`, `CONFLICT`,
//! `SCHEMA_VALIDATION_FAILED`, `INVARIANT_VIOLATION`, `RETRY_LATER`); 2 usage or setup error
//! (nothing read from the envelope, nothing recorded); 3 execution failed, or a write's
//! outcome is unknown (sent, then no answer or a 5xx: audited `failed` with
//! `result.outcome = "unknown"`, and its idempotency key stays reserved); 4 the audit log
//! could not be written (before `--apply` sent anything, or after the outcome).

mod executor;
mod ledger;
mod plan;

use std::collections::BTreeMap;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use base64::Engine as _;
use clap::Args;
use kubesafe_audit_log::jiff::Timestamp;
use kubesafe_audit_log::{
    AuditKey, AuditLog, AuditRecord, Chain, Checkpoint, FileSink, FileSinkOptions, FsyncPolicy,
    KeyRing, SealedRecord, Status, VerifyOptions,
};
use kubesafe_signing::action::{ActionRequest, ActionType};
use kubesafe_signing::admission::{
    Admission, AdmissionError, Decision, NamespaceAllowList, RateLimit,
};
use kubesafe_signing::{Envelope, ErrorCode, Limits, MalformedError, Rejection, Secret, Verifier};
use serde_json::{Map, Value, json};

use self::executor::{
    AnyExecutor, DryRunExecutor, Execution, Executor as _, KubeExecutor, KubeTarget, Snapshot,
};
use self::ledger::{EXECUTOR_TAG, ExecutorLock, Ledger};
use self::plan::{ExecError, PlanOptions};

const EXIT_REJECTED: u8 = 1;
const EXIT_SETUP: u8 = 2;
const EXIT_FAILED: u8 = 3;
const EXIT_UNAUDITED: u8 = 4;

/// Verify, admit and carry out a signed remediation action; audit every outcome.
///
/// Dry run by default: prints the exact Kubernetes API requests `--apply` would send.
/// Rate limits, replay protection and idempotency hold across invocations: they are
/// rebuilt from the audit log (which must verify) under an exclusive lock.
#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  \
    kubesafe sign --key-file k --kid ops-1 action.json \\\n    \
      | kubesafe execute --key-file k --kid ops-1 --allow-namespace shop --audit-log audit.jsonl -\n  \
    kubesafe execute --key ops-1=k1 --key ops-2=k2 --allow-namespace shop \\\n    \
      --rate restart_pod=3/10m --audit-log audit.jsonl --apply envelope.json\n\n\
Exit status: 0 done/planned/skipped/duplicate, 1 rejected (canonical code printed), \
2 usage or setup error, 3 execution failed or outcome unknown, 4 audit log not writable.")]
pub(crate) struct ExecuteArgs {
    /// The signed envelope (JSON or `ks1.` token); `-` for standard input.
    envelope: PathBuf,

    #[command(flatten)]
    keys: KeyArgs,

    /// Namespace actions may target (repeatable; every other namespace is FORBIDDEN).
    #[arg(long = "allow-namespace", value_name = "NS", required = true)]
    allow_namespaces: Vec<String>,

    /// Rate limit of an action type, `TYPE=N/WINDOW` (repeatable; e.g.
    /// `restart_pod=5/300s`, `scale_deployment=10/1h`): at most N in any WINDOW. Types not
    /// given keep the default of 5 per 300 s.
    #[arg(long = "rate", value_name = "TYPE=N/WINDOW", value_parser = parse_rate)]
    rates: Vec<(ActionType, RateLimit)>,

    /// The hash-chained audit log (created if missing). Every outcome is recorded here, and
    /// earlier records provide the rate-limit, replay and idempotency state.
    #[arg(long, value_name = "FILE")]
    audit_log: PathBuf,

    /// Seal records with this HMAC key (JSON from `kubesafe audit keygen`) and verify the log
    /// with it (unkeyed records are then refused).
    #[arg(long, value_name = "F")]
    audit_key_file: Option<PathBuf>,

    /// A checkpoint of the log's head, signed with the audit key: the log must still
    /// contain it (a cut-off tail stops the executor), and it is moved to the new head after
    /// each record. Created by the first run; keep it where the log's writers cannot
    /// delete it.
    #[arg(long, value_name = "FILE", requires = "audit_key_file")]
    checkpoint: Option<PathBuf>,

    /// Only print the requests (the default).
    #[arg(long, conflicts_with = "apply")]
    dry_run: bool,

    /// Send the requests to the cluster (kubeconfig as kubectl finds it, or --kubeconfig).
    #[arg(long)]
    apply: bool,

    /// Dry run: answer reads from this JSON (`kubectl get … -o json`: an object, a List or
    /// an array), so the pod owner check and the rollback patch are computed exactly.
    #[arg(long, value_name = "FILE", conflicts_with = "apply")]
    cluster_state: Option<PathBuf>,

    /// With --apply: the kubeconfig file.
    #[arg(long, value_name = "FILE", requires = "apply")]
    kubeconfig: Option<PathBuf>,

    /// With --apply: the kubeconfig context.
    #[arg(long, value_name = "NAME", requires = "apply")]
    context: Option<String>,

    /// restart_pod: also delete a pod that has no controller (it will not come back).
    #[arg(long)]
    allow_bare_pod: bool,

    /// Longest time for the cluster requests of one action.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    timeout: Duration,

    /// Clock-skew allowance for the envelope's iat/exp (at most 10m).
    #[arg(long, default_value = "30s", value_parser = parse_skew)]
    skew: Duration,

    /// Longest accepted envelope lifetime (exp - iat).
    #[arg(long, default_value = "1h", value_parser = parse_duration)]
    max_ttl: Duration,

    /// How long a completed action's idempotency key is remembered.
    #[arg(long, default_value = "24h", value_parser = parse_duration)]
    idempotency_ttl: Duration,

    /// Print the outcome as JSON on stdout.
    #[arg(long)]
    json: bool,
}

/// The verification keys: `--key-file F --kid K` (or `--key-env VAR --kid K`), and/or
/// `--key KID=FILE` (repeatable, for rotation).
#[derive(Debug, Args)]
struct KeyArgs {
    /// File holding a secret as raw bytes (at least 32; one trailing newline ignored).
    #[arg(
        long,
        value_name = "FILE",
        requires = "kid",
        conflicts_with = "key_env"
    )]
    key_file: Option<PathBuf>,
    /// Environment variable holding a secret (`base64:…`, `hex:…` or raw).
    #[arg(long, value_name = "VAR", requires = "kid")]
    key_env: Option<String>,
    /// Key id of --key-file / --key-env.
    #[arg(long)]
    kid: Option<String>,
    /// Another verification key, `KID=FILE` (repeatable).
    #[arg(long = "key", value_name = "KID=FILE")]
    keys: Vec<String>,
}

fn setup_error(message: impl std::fmt::Display) -> ExitCode {
    eprintln!("kubesafe: error: {message}");
    ExitCode::from(EXIT_SETUP)
}

/// Parses `300`, `300s`, `5m`, `1h`, `2d`.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => text.split_at(i),
        None => (text, "s"),
    };
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration like 300s, 5m, 1h"))?;
    let scale = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => {
            return Err(format!(
                "{text:?}: unknown unit {unit:?} (use s, m, h or d)"
            ));
        }
    };
    n.checked_mul(scale)
        .map(Duration::from_secs)
        .ok_or_else(|| format!("{text:?} is too long"))
}

/// Parses `--skew`: a duration up to [`ledger::MAX_SKEW`] (the replay horizon covers
/// envelopes verified under any skew up to it).
fn parse_skew(text: &str) -> Result<Duration, String> {
    let skew = parse_duration(text)?;
    if skew > ledger::MAX_SKEW {
        return Err(format!(
            "{text:?} is more than the largest accepted skew of {}m",
            ledger::MAX_SKEW.as_secs() / 60
        ));
    }
    Ok(skew)
}

/// Parses `restart_pod=5/300s`.
fn parse_rate(text: &str) -> Result<(ActionType, RateLimit), String> {
    let (ty, limit) = text
        .split_once('=')
        .ok_or_else(|| format!("{text:?} is not TYPE=N/WINDOW (e.g. restart_pod=5/300s)"))?;
    let ty: ActionType =
        serde_json::from_value(Value::String(ty.trim().to_owned())).map_err(|_| {
            format!(
                "{ty:?} is not an action type ({})",
                ActionType::ALL.map(|t| t.as_str()).join(", ")
            )
        })?;
    let (max, window) = limit
        .split_once('/')
        .ok_or_else(|| format!("{limit:?} is not N/WINDOW (e.g. 5/300s)"))?;
    let max: u32 = max
        .trim()
        .parse()
        .map_err(|_| format!("{max:?} is not a count"))?;
    let window = parse_duration(window)?;
    let limit = RateLimit::per_window(max, window).map_err(|e| e.to_string())?;
    Ok((ty, limit))
}

fn load_keys(args: &KeyArgs) -> Result<kubesafe_signing::KeyRing, String> {
    let mut ring = kubesafe_signing::KeyRing::new();
    let mut add = |kid: &str, secret: Secret| {
        ring.insert_verify_only(kid, secret)
            .map_err(|e| format!("key id {kid:?}: {e}"))
    };
    match (&args.key_file, &args.key_env, &args.kid) {
        (Some(path), _, Some(kid)) => {
            add(kid, Secret::from_file(path).map_err(|e| e.to_string())?)?
        }
        (None, Some(var), Some(kid)) => {
            add(kid, Secret::from_env(var).map_err(|e| e.to_string())?)?
        }
        (None, None, Some(_)) => return Err("--kid needs --key-file or --key-env".to_owned()),
        _ => {}
    }
    for spec in &args.keys {
        let (kid, path) = spec
            .split_once('=')
            .ok_or_else(|| format!("--key {spec:?}: expected KID=FILE"))?;
        add(
            kid,
            Secret::from_file(path).map_err(|e| format!("--key {kid}: {e}"))?,
        )?;
    }
    if ring.is_empty() {
        return Err("no verification key: give --key-file F --kid K, or --key KID=FILE".to_owned());
    }
    Ok(ring)
}

/// `path` with symlinks and `..` resolved; for a log not created yet, its directory's
/// canonical path joined with its file name.
fn canonical_log_path(path: &Path) -> Result<PathBuf, String> {
    match std::fs::canonicalize(path) {
        Ok(p) => Ok(p),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let name = path
                .file_name()
                .ok_or_else(|| format!("{} names no file", path.display()))?;
            let dir = path
                .parent()
                .filter(|d| !d.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            let dir = std::fs::canonicalize(dir)
                .map_err(|e| format!("directory {}: {e}", dir.display()))?;
            Ok(dir.join(name))
        }
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

fn read_input(path: &Path, limit: usize) -> Result<Vec<u8>, String> {
    let mut bytes = Vec::new();
    let cap = limit as u64 + 1;
    let result = if path == Path::new("-") {
        std::io::stdin().take(cap).read_to_end(&mut bytes)
    } else {
        std::fs::File::open(path).and_then(|f| f.take(cap).read_to_end(&mut bytes))
    };
    result.map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    Ok(bytes)
}

/// Everything set up before the envelope is looked at.
struct Setup {
    /// `--audit-log` with symlinks and `..` resolved: the lock files derive from it, so two
    /// executors reaching one log by different names still exclude each other.
    log_path: PathBuf,
    keys: kubesafe_signing::KeyRing,
    limits: BTreeMap<ActionType, RateLimit>,
    executor: AnyExecutor,
    log: AuditLog<FileSink>,
    verify: VerifyOptions,
    /// `--checkpoint` and the key that signs it.
    checkpoint: Option<(PathBuf, AuditKey)>,
}

pub(crate) fn run(args: ExecuteArgs) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return setup_error(format!("cannot start the async runtime: {e}")),
    };
    runtime.block_on(run_async(args))
}

async fn run_async(args: ExecuteArgs) -> ExitCode {
    let setup = match setup(&args).await {
        Ok(s) => s,
        Err(e) => return setup_error(e),
    };
    // Read the envelope before taking the lock: a slow stdin must not block other executors.
    let input = match read_input(&args.envelope, Limits::default().max_bytes()) {
        Ok(b) => b,
        Err(e) => return setup_error(e),
    };
    let lock = match ExecutorLock::acquire(&setup.log_path) {
        Ok(l) => l,
        Err(e) => return setup_error(e),
    };
    tracing::debug!(lock = %lock.path().display(), "holding the executor lock");
    let horizon = ledger::horizon(args.max_ttl, args.skew, args.idempotency_ttl, &setup.limits);
    let since = Timestamp::now()
        .saturating_sub(horizon)
        .unwrap_or(Timestamp::MIN);
    let ledger = match Ledger::load(&setup.log_path, &setup.verify, since) {
        Ok(l) => l,
        Err(e) => return setup_error(e),
    };
    tracing::debug!(
        records = ledger.records,
        "admission state rebuilt from the audit log"
    );
    let exit = process(&args, setup, &ledger, &input).await;
    drop(lock);
    exit
}

async fn setup(args: &ExecuteArgs) -> Result<Setup, String> {
    let keys = load_keys(&args.keys)?;
    let mut limits = BTreeMap::new();
    for (ty, limit) in &args.rates {
        limits.insert(*ty, *limit);
    }
    let plan_options = PlanOptions {
        allow_bare_pod: args.allow_bare_pod,
    };
    let executor = if args.apply {
        let target = KubeTarget {
            kubeconfig: args.kubeconfig.clone(),
            context: args.context.clone(),
        };
        AnyExecutor::Kube(
            KubeExecutor::connect(&target, plan_options)
                .await
                .map_err(|e| format!("--apply: cannot configure the Kubernetes client: {e}"))?,
        )
    } else {
        let snapshot = match &args.cluster_state {
            Some(p) => Some(Snapshot::load(p).map_err(|e| format!("--cluster-state: {e}"))?),
            None => None,
        };
        AnyExecutor::DryRun(DryRunExecutor::new(snapshot, plan_options))
    };
    let (chain, mut verify, audit_key) = match &args.audit_key_file {
        Some(p) => {
            let key = AuditKey::from_file(p).map_err(|e| format!("--audit-key-file: {e}"))?;
            let verify = VerifyOptions::new().keys(KeyRing::new().with(key.clone()));
            (Chain::keyed(key.clone()), verify, Some(key))
        }
        None => (Chain::unkeyed(), VerifyOptions::new(), None),
    };
    let checkpoint = match (&args.checkpoint, audit_key) {
        (Some(path), Some(key)) => {
            match std::fs::metadata(path) {
                // The first run: written after the first record.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                _ => {
                    let verified = Checkpoint::read_from(path)
                        .and_then(|cp| cp.verify(&key))
                        .map_err(|e| format!("--checkpoint {}: {e}", path.display()))?;
                    verify = verify.checkpoint(verified);
                }
            }
            Some((path.clone(), key))
        }
        (Some(_), None) => return Err("--checkpoint needs --audit-key-file".to_owned()),
        (None, _) => None,
    };
    let log_path = canonical_log_path(&args.audit_log).map_err(|e| format!("--audit-log: {e}"))?;
    let sink = FileSink::open(
        &log_path,
        FileSinkOptions::new().fsync(FsyncPolicy::EveryRecord),
    )
    .map_err(|e| format!("--audit-log: {e}"))?;
    Ok(Setup {
        log_path,
        keys,
        limits,
        executor,
        log: AuditLog::with_chain(sink, chain),
        verify,
        checkpoint,
    })
}

/// What the envelope said about itself, for the record (trusted only when `verified`).
#[derive(Debug, Default)]
struct Claims {
    kid: Option<String>,
    nonce: Option<String>,
    iat: u64,
    exp: u64,
    mac: Option<String>,
    request: Option<ActionRequest>,
    verified: bool,
}

/// How processing ended.
#[derive(Debug)]
enum Outcome {
    Rejected {
        stage: &'static str,
        error: AdmissionError,
    },
    Duplicate {
        key: String,
    },
    Done(Execution),
    Refused(String),
    Failed(String),
    /// A write was sent and its outcome is not known.
    Unknown(String),
}

async fn process(args: &ExecuteArgs, setup: Setup, ledger: &Ledger, input: &[u8]) -> ExitCode {
    let Setup {
        keys,
        limits,
        executor,
        mut log,
        checkpoint,
        ..
    } = setup;
    let started = Instant::now();
    let created_at = Timestamp::now();
    let now = u64::try_from(created_at.as_second()).unwrap_or(0);
    let mut claims = Claims::default();
    let mut decision = Map::new();
    decision.insert("executor".into(), EXECUTOR_TAG.into());

    let verifier = Verifier::new(keys, ledger.replay_store(args.skew, now))
        .with_skew(args.skew)
        .with_max_ttl(args.max_ttl);
    let idempotency = ledger.idempotency_store(args.idempotency_ttl, now);
    let rate_limits = ledger.rate_limits(&limits, created_at);
    let admission = Admission::new(
        NamespaceAllowList::new(args.allow_namespaces.clone()),
        rate_limits,
    )
    .with_idempotency_store(idempotency.clone(), args.idempotency_ttl);

    let outcome = 'outcome: {
        let envelope = match Envelope::parse(input, verifier.limits()) {
            Ok(e) => e,
            Err(e) => {
                break 'outcome Outcome::Rejected {
                    stage: "parse",
                    error: Rejection::Malformed(e).into(),
                };
            }
        };
        claims.kid = Some(envelope.kid().to_owned());
        claims.nonce = Some(envelope.nonce().to_owned());
        claims.iat = envelope.iat();
        claims.exp = envelope.exp();
        claims.mac = Some(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(envelope.mac()));
        claims.request = serde_json::from_value(envelope.action().clone()).ok();
        let verified = match verifier.verify_as_at::<ActionRequest>(envelope, now) {
            Ok(v) => v,
            Err(rejection) => {
                // A typed-action failure comes after the MAC and the nonce were accepted:
                // the nonce is spent.
                claims.verified = matches!(
                    rejection,
                    Rejection::Malformed(MalformedError::ActionSchema { .. })
                );
                break 'outcome Outcome::Rejected {
                    stage: "verify",
                    error: rejection.into(),
                };
            }
        };
        claims.verified = true;
        claims.request = Some(verified.action().clone());
        let key = verified.action().idempotency_key().map(str::to_owned);
        let ty = verified.action().action_type();
        if let Some(limit) = admission.rate_limits().limit(ty) {
            decision.insert("rateLimit".into(), limit.to_string().into());
        }
        let admitted = match admission.admit_at(verified, now) {
            Ok(Decision::Admitted(a)) => a,
            Ok(Decision::Duplicate { idempotency_key }) => {
                break 'outcome Outcome::Duplicate {
                    key: idempotency_key,
                };
            }
            Ok(other) => {
                break 'outcome Outcome::Failed(format!("unexpected admission decision {other:?}"));
            }
            Err(error) => {
                break 'outcome Outcome::Rejected {
                    stage: "admission",
                    error,
                };
            }
        };
        decision.insert("decision".into(), "admitted".into());
        if let Some(key) = key {
            if let Some(fp) = idempotency.fingerprint(&key) {
                decision.insert("idempotencyFingerprint".into(), ledger::hex(&fp).into());
            }
            decision.insert("idempotencyKey".into(), key.into());
        }
        if matches!(executor, AnyExecutor::Kube(_)) {
            match log.append(&started_record(&claims, &decision, created_at, started)) {
                Ok(sealed) => {
                    update_checkpoint(checkpoint.as_ref(), &args.audit_log, &sealed);
                    decision.insert("startedSeq".into(), sealed.seq.into());
                }
                Err(e) => {
                    eprintln!(
                        "kubesafe: error: {}: not executed: cannot write to the audit log {}: {e}",
                        describe(claims.request.as_ref()),
                        args.audit_log.display()
                    );
                    return ExitCode::from(EXIT_UNAUDITED);
                }
            }
        }
        match tokio::time::timeout(args.timeout, executor.execute(&admitted)).await {
            Ok(Ok(execution)) => Outcome::Done(execution),
            Ok(Err(ExecError::Refused { message })) => Outcome::Refused(message),
            Ok(Err(ExecError::Failed { message })) => Outcome::Failed(message),
            Ok(Err(ExecError::Unknown { message })) => Outcome::Unknown(message),
            Err(_) if executor.writes_started() > 0 => Outcome::Unknown(format!(
                "timed out after {:?} waiting for the API server to answer a write",
                args.timeout
            )),
            Err(_) => Outcome::Failed(format!(
                "timed out after {:?} before any write was sent",
                args.timeout
            )),
        }
    };

    let record = build_record(&claims, &mut decision, &outcome, created_at, started);
    let sealed = log.append(&record);
    if let Ok(s) = &sealed {
        update_checkpoint(checkpoint.as_ref(), &args.audit_log, s);
    }
    report(args, &claims, &outcome, sealed)
}

/// Moves `--checkpoint` to `sealed`. A failure leaves the previous checkpoint, which the
/// (only growing) log still contains: it is reported, not fatal.
fn update_checkpoint(checkpoint: Option<&(PathBuf, AuditKey)>, log: &Path, sealed: &SealedRecord) {
    let Some((path, key)) = checkpoint else {
        return;
    };
    if let Err(e) = Checkpoint::sign(sealed.head(), Some(log.display().to_string()), key)
        .and_then(|cp| cp.write_to(path))
    {
        eprintln!(
            "kubesafe: warning: --checkpoint {} still holds an earlier head (seq < {}): {e}",
            path.display(),
            sealed.seq
        );
    }
}

fn resource_type(ty: ActionType) -> &'static str {
    match ty {
        ActionType::RestartPod => "Pod",
        _ => "Deployment",
    }
}

/// The record of an admitted action about to be sent to the cluster (`--apply`): written
/// before any request, so a crash in between leaves the nonce, the rate-limit use and the
/// idempotency key on record (outcome unknown) instead of nothing.
fn started_record(
    claims: &Claims,
    decision: &Map<String, Value>,
    created_at: Timestamp,
    started: Instant,
) -> AuditRecord {
    record_with(
        claims,
        decision,
        Status::InProgress,
        Some(json!({"executor": "kube", "outcome": "started"})),
        None,
        created_at,
        started,
    )
}

fn build_record(
    claims: &Claims,
    decision: &mut Map<String, Value>,
    outcome: &Outcome,
    created_at: Timestamp,
    started: Instant,
) -> AuditRecord {
    let (status, result, error) = match outcome {
        Outcome::Rejected { stage, error } => {
            decision.insert("decision".into(), "rejected".into());
            decision.insert("stage".into(), (*stage).into());
            decision.insert("code".into(), error.code.as_str().into());
            if let Some(s) = error.retry_after_secs {
                decision.insert("retryAfterSeconds".into(), s.into());
            }
            if let Some(f) = &error.field {
                decision.insert("field".into(), f.clone().into());
            }
            (Status::Rejected, None, Some(error.message.clone()))
        }
        Outcome::Duplicate { key } => {
            decision.insert("decision".into(), "duplicate".into());
            decision.insert("idempotencyKey".into(), key.clone().into());
            (
                Status::Completed,
                Some(json!({"outcome": "duplicate", "executed": false})),
                None,
            )
        }
        Outcome::Done(execution) => (Status::Completed, Some(execution.for_audit()), None),
        Outcome::Refused(message) => {
            decision.insert("stage".into(), "executor".into());
            decision.insert("code".into(), ErrorCode::InvariantViolation.as_str().into());
            (Status::Rejected, None, Some(message.clone()))
        }
        Outcome::Failed(message) => (Status::Failed, None, Some(message.clone())),
        // The ledger keeps the idempotency key of this attempt reserved.
        Outcome::Unknown(message) => (
            Status::Failed,
            Some(json!({"executor": "kube", "outcome": "unknown"})),
            Some(message.clone()),
        ),
    };
    record_with(claims, decision, status, result, error, created_at, started)
}

fn record_with(
    claims: &Claims,
    decision: &Map<String, Value>,
    status: Status,
    result: Option<Value>,
    error: Option<String>,
    created_at: Timestamp,
    started: Instant,
) -> AuditRecord {
    let mut decision = decision.clone();
    if let (Some(kid), Some(nonce)) = (&claims.kid, &claims.nonce) {
        decision.insert(
            "envelope".into(),
            json!({"kid": kid, "nonce": nonce, "iat": claims.iat, "exp": claims.exp,
                   "verified": claims.verified}),
        );
    }
    let action_type = claims
        .request
        .as_ref()
        .map_or("unknown", |r| r.action_type().as_str());
    let mut record = AuditRecord::new(action_type, status);
    record.created_at = created_at;
    if let Some(req) = &claims.request {
        record = record
            .namespace(req.namespace())
            .resource(resource_type(req.action_type()), req.name());
        if let Ok(Value::Object(wire)) = serde_json::to_value(req)
            && let Some(Value::Object(params)) = wire.get("params")
        {
            record.parameters = params.clone();
        }
        if let Some(who) = req.requested_by() {
            record = record.requested_by(who);
        }
    }
    record = record.policy_decision(Value::Object(decision));
    if let Some(mac) = &claims.mac {
        record = record.signature(mac.clone());
    }
    if let Some(r) = result {
        record = record.result(r);
    }
    if let Some(e) = error {
        record = record.error_message(e);
    }
    if status == Status::InProgress {
        return record;
    }
    record.completed_at = Some(Timestamp::now());
    record.duration_ms(u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX))
}

fn audit_json(log: &Path, sealed: &SealedRecord) -> Value {
    json!({
        "log": log.display().to_string(),
        "seq": sealed.seq,
        "hash": sealed.hash.to_hex(),
        "status": sealed.record.status.as_str(),
    })
}

fn describe(request: Option<&ActionRequest>) -> String {
    request.map_or_else(
        || "(no valid action)".to_owned(),
        |r| format!("{} {}/{}", r.action_type(), r.namespace(), r.name()),
    )
}

fn report(
    args: &ExecuteArgs,
    claims: &Claims,
    outcome: &Outcome,
    sealed: kubesafe_audit_log::Result<SealedRecord>,
) -> ExitCode {
    let what = describe(claims.request.as_ref());
    let sealed = match sealed {
        Ok(s) => s,
        Err(e) => {
            let happened = match outcome {
                Outcome::Done(ex) if ex.outcome == "applied" => {
                    "the action WAS APPLIED to the cluster".to_owned()
                }
                Outcome::Done(ex) => format!("the action was {}", ex.outcome),
                Outcome::Rejected { error, .. } => {
                    format!("the action was rejected ({})", error.code)
                }
                Outcome::Duplicate { .. } => "the action was a duplicate".to_owned(),
                Outcome::Refused(_) => "the action was refused".to_owned(),
                Outcome::Failed(m) => format!("the action failed ({m})"),
                Outcome::Unknown(m) => {
                    format!("the outcome is unknown, the action may have been applied ({m})")
                }
            };
            eprintln!(
                "kubesafe: error: {what}: {happened}, but the audit record could not be written to {}: {e}",
                args.audit_log.display()
            );
            return ExitCode::from(EXIT_UNAUDITED);
        }
    };
    let audit = audit_json(&args.audit_log, &sealed);
    let action = claims
        .request
        .as_ref()
        .and_then(|r| serde_json::to_value(r).ok())
        .unwrap_or(Value::Null);
    match outcome {
        Outcome::Done(execution) => {
            if args.json {
                print_json(&json!({
                    "outcome": execution.outcome,
                    "action": action,
                    "execution": execution,
                    "audit": audit,
                }));
            } else {
                print_execution(&what, execution, &sealed);
            }
            ExitCode::SUCCESS
        }
        Outcome::Duplicate { key } => {
            if args.json {
                print_json(&json!({
                    "outcome": "duplicate", "idempotencyKey": key, "action": action,
                    "audit": audit,
                }));
            } else {
                println!(
                    "duplicate: {what} with idempotency key {key:?} was already applied or attempted (see the audit log); not executed again"
                );
                println!("audit: seq {} {}", sealed.seq, sealed.record.status);
            }
            ExitCode::SUCCESS
        }
        Outcome::Rejected { error, .. } => reject(args, error, &what, &audit, &sealed, &action),
        Outcome::Refused(message) => {
            let error = AdmissionError::new(ErrorCode::InvariantViolation, message.clone());
            reject(args, &error, &what, &audit, &sealed, &action)
        }
        Outcome::Failed(message) => {
            if args.json {
                print_json(&json!({
                    "outcome": "failed", "message": message, "action": action, "audit": audit,
                }));
            }
            eprintln!(
                "kubesafe: error: {what} failed: {message} (audit seq {})",
                sealed.seq
            );
            ExitCode::from(EXIT_FAILED)
        }
        Outcome::Unknown(message) => {
            if args.json {
                print_json(&json!({
                    "outcome": "unknown", "message": message, "action": action, "audit": audit,
                }));
            }
            let key = claims
                .request
                .as_ref()
                .and_then(ActionRequest::idempotency_key)
                .map(|k| format!("; idempotency key {k:?} stays reserved"))
                .unwrap_or_default();
            eprintln!(
                "kubesafe: error: {what}: outcome unknown: {message} — the request may have \
                 been applied: check the cluster before retrying{key} (audit seq {})",
                sealed.seq
            );
            ExitCode::from(EXIT_FAILED)
        }
    }
}

fn reject(
    args: &ExecuteArgs,
    error: &AdmissionError,
    what: &str,
    audit: &Value,
    sealed: &SealedRecord,
    action: &Value,
) -> ExitCode {
    if args.json {
        let mut v = serde_json::to_value(error).unwrap_or_else(|_| json!({}));
        if let Value::Object(o) = &mut v {
            o.insert("outcome".into(), "rejected".into());
            o.insert("action".into(), action.clone());
            o.insert("audit".into(), audit.clone());
        }
        print_json(&v);
    }
    let retry = error
        .retry_after_header()
        .map(|(name, value)| format!("; {name}: {value}"))
        .unwrap_or_default();
    eprintln!(
        "kubesafe: error: {}: {}{retry} [{what}; audit seq {}]",
        error.code, error.message, sealed.seq
    );
    ExitCode::from(EXIT_REJECTED)
}

fn print_json(v: &Value) {
    match serde_json::to_string(v) {
        Ok(text) => println!("{text}"),
        Err(e) => eprintln!("kubesafe: error: cannot print JSON: {e}"),
    }
}

fn print_execution(what: &str, execution: &Execution, sealed: &SealedRecord) {
    let heading = match execution.outcome {
        "planned" => "dry run, nothing sent",
        "applied" => "applied",
        _ => "skipped, nothing to send",
    };
    println!("{what}: {heading}");
    for read in &execution.reads {
        println!("  read:  {}", read.summary());
    }
    for write in &execution.writes {
        println!(
            "  {}: {}{}",
            if execution.outcome == "applied" {
                "sent "
            } else {
                "write"
            },
            write.summary(),
            write
                .content_type
                .map(|ct| format!("  ({ct})"))
                .unwrap_or_default()
        );
        if let Some(body) = &write.body {
            println!("         {body}");
        }
    }
    if let Some(t) = &execution.target {
        println!(
            "  restores revision {} (ReplicaSet {})",
            t.revision, t.replica_set
        );
    }
    if let Some(m) = &execution.message {
        println!("  {m}");
    }
    for note in &execution.notes {
        println!("  note: {note}");
    }
    println!("audit: seq {} {}", sealed.seq, sealed.record.status);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skew_is_at_most_ten_minutes() {
        assert_eq!(parse_skew("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_skew("0"), Ok(Duration::ZERO));
        assert!(parse_skew("601s").is_err());
        assert!(parse_skew("1h").is_err());
    }

    #[test]
    fn rates_parse() {
        let (ty, limit) = parse_rate("restart_pod=5/300s").unwrap();
        assert_eq!(ty, ActionType::RestartPod);
        assert_eq!(limit.max(), 5);
        assert_eq!(limit.window(), Duration::from_secs(300));
        let (ty, limit) = parse_rate("scale_deployment=10/1h").unwrap();
        assert_eq!(ty, ActionType::ScaleDeployment);
        assert_eq!(limit.window(), Duration::from_secs(3600));
        for bad in [
            "restart_pod",
            "delete_all=1/1s",
            "restart_pod=0/1s",
            "restart_pod=x/1s",
            "restart_pod=5",
            "restart_pod=5/1y",
        ] {
            assert!(parse_rate(bad).is_err(), "{bad}");
        }
    }
}
