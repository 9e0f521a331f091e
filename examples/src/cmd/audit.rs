//! `kubesafe audit …` — append to, verify, query and checkpoint a tamper-evident audit log.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Subcommand, ValueEnum};
use kubesafe_audit_log::jiff::Timestamp;
use kubesafe_audit_log::{
    AuditKey, AuditLog, AuditRecord, Chain, Checkpoint, FileSink, FileSinkOptions, Filter,
    FsyncPolicy, KeyRing, Report, Status, VerifyOptions,
};

/// Tamper-evident audit logs (hash-chained JSON Lines).
#[derive(Debug, Args)]
pub(crate) struct AuditArgs {
    #[command(subcommand)]
    command: AuditCommand,
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// Seal one record and append it; prints the stored record.
    Append(AppendArgs),
    /// Verify the chain (and rotated files); exit 0 only when intact, 1 when not.
    Verify(VerifyArgs),
    /// Print matching records as JSON Lines.
    Query(QueryArgs),
    /// Print counts by status and action type, and the mean duration, as JSON.
    Stats(StatsArgs),
    /// Verify the log, then write a signed checkpoint of its head.
    Checkpoint(CheckpointArgs),
    /// Write a new random HMAC key file.
    Keygen(KeygenArgs),
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Fsync {
    /// fsync before returning (default).
    Always,
    /// Leave it to the kernel.
    Never,
}

#[derive(Debug, Args)]
struct AppendArgs {
    /// The log file (created if missing; `FILE.lock` is its lock file).
    #[arg(long)]
    log: PathBuf,
    /// The record: a JSON object, `@path` to read it from a file, or `@-` for stdin.
    #[arg(long = "json", value_name = "RECORD")]
    json: String,
    /// Seal with this HMAC key (JSON key file `{"keyId": …, "secret": "<hex>"}`).
    #[arg(long, value_name = "F")]
    key_file: Option<PathBuf>,
    /// Durability of the append.
    #[arg(long, value_enum, default_value = "always")]
    fsync: Fsync,
    /// Rotate the log once it reaches this many bytes.
    #[arg(long, value_name = "BYTES")]
    rotate_bytes: Option<u64>,
}

#[derive(Debug, Args)]
struct KeyArgs {
    /// HMAC key file(s) for keyed records (repeatable); also verify checkpoint
    /// signatures. With keys, unkeyed records are refused unless --allow-unkeyed.
    #[arg(long, value_name = "F")]
    key_file: Vec<PathBuf>,
    /// Accept unkeyed records even though keys are given.
    #[arg(long)]
    allow_unkeyed: bool,
}

#[derive(Debug, Args)]
struct VerifyArgs {
    /// The log file.
    file: PathBuf,
    /// A signed checkpoint the log must still contain (detects a cut-off tail).
    #[arg(long, value_name = "F")]
    checkpoint: Option<PathBuf>,
    #[command(flatten)]
    keys: KeyArgs,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct QueryArgs {
    /// The log file.
    file: PathBuf,
    /// Only this status (pending, in_progress, completed, failed, rejected).
    #[arg(long)]
    status: Option<String>,
    /// Only this action type.
    #[arg(long)]
    action: Option<String>,
    /// Only this namespace.
    #[arg(long)]
    namespace: Option<String>,
    /// Created at or after this RFC 3339 time.
    #[arg(long, value_name = "TIME")]
    since: Option<String>,
    /// Created before this RFC 3339 time.
    #[arg(long, value_name = "TIME")]
    until: Option<String>,
    /// At most this many records.
    #[arg(long)]
    limit: Option<usize>,
}

#[derive(Debug, Args)]
struct StatsArgs {
    /// The log file.
    file: PathBuf,
}

#[derive(Debug, Args)]
struct CheckpointArgs {
    /// The log file.
    file: PathBuf,
    #[command(flatten)]
    keys: KeyArgs,
    /// Sign with the key of this id (default: the first --key-file).
    #[arg(long)]
    key_id: Option<String>,
    /// Where to write the checkpoint (keep it away from the log).
    #[arg(long, value_name = "F")]
    out: PathBuf,
}

#[derive(Debug, Args)]
struct KeygenArgs {
    /// The key id.
    #[arg(long)]
    id: String,
    /// The key file to create (mode 0600; refuses to overwrite).
    #[arg(long, value_name = "F")]
    out: PathBuf,
}

fn fail(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("kubesafe: error: {msg}");
    ExitCode::from(2)
}

/// Runs `kubesafe audit …`.
pub(crate) fn run(args: AuditArgs) -> ExitCode {
    let res = match args.command {
        AuditCommand::Append(a) => append(a),
        AuditCommand::Verify(a) => verify(a),
        AuditCommand::Query(a) => query(a),
        AuditCommand::Stats(a) => stats(a),
        AuditCommand::Checkpoint(a) => checkpoint(a),
        AuditCommand::Keygen(a) => keygen(a),
    };
    res.unwrap_or_else(fail)
}

fn read_record(spec: &str) -> Result<AuditRecord, String> {
    let text = if spec == "@-" {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .map_err(|e| format!("--json @-: reading stdin: {e}"))?;
        s
    } else if let Some(path) = spec.strip_prefix('@') {
        std::fs::read_to_string(path).map_err(|e| format!("--json @{path}: {e}"))?
    } else {
        spec.to_owned()
    };
    AuditRecord::from_json(&text).map_err(|e| format!("--json: {e}"))
}

fn append(a: AppendArgs) -> Result<ExitCode, String> {
    let record = read_record(&a.json)?;
    let chain = match &a.key_file {
        Some(f) => Chain::keyed(AuditKey::from_file(f).map_err(|e| format!("--key-file: {e}"))?),
        None => Chain::unkeyed(),
    };
    let mut opts = FileSinkOptions::new().fsync(match a.fsync {
        Fsync::Always => FsyncPolicy::EveryRecord,
        Fsync::Never => FsyncPolicy::Never,
    });
    if let Some(b) = a.rotate_bytes {
        opts = opts.rotate_bytes(b);
    }
    let sink = FileSink::open(&a.log, opts).map_err(|e| e.to_string())?;
    for r in sink.recovered() {
        eprintln!(
            "kubesafe: warning: torn final line ({} bytes at offset {}) from an interrupted write moved to {}",
            r.bytes,
            r.offset,
            r.moved_to.display()
        );
    }
    let mut log = AuditLog::with_chain(sink, chain);
    let sealed = log.append(&record).map_err(|e| e.to_string())?;
    println!("{}", sealed.line());
    Ok(ExitCode::SUCCESS)
}

fn key_ring(files: &[PathBuf]) -> Result<KeyRing, String> {
    let mut ring = KeyRing::new();
    for f in files {
        ring.insert(AuditKey::from_file(f).map_err(|e| format!("--key-file: {e}"))?);
    }
    Ok(ring)
}

fn verify_opts(keys: &KeyArgs, checkpoint: Option<&Path>) -> Result<VerifyOptions, String> {
    let ring = key_ring(&keys.key_file)?;
    let mut opts = VerifyOptions::new().keys(ring.clone());
    if keys.allow_unkeyed {
        opts = opts.allow_unkeyed();
    }
    if let Some(cp) = checkpoint {
        let c = Checkpoint::read_from(cp).map_err(|e| format!("--checkpoint: {e}"))?;
        if ring.is_empty() {
            return Err(format!(
                "--checkpoint {}: a --key-file with key id {:?} is needed to check its signature",
                cp.display(),
                c.key_id
            ));
        }
        let verified = c
            .verify(&ring)
            .map_err(|e| format!("--checkpoint {}: {e}", cp.display()))?;
        opts = opts.checkpoint(verified);
    }
    Ok(opts)
}

fn print_report(report: &Report) {
    match &report.failure {
        None => {
            print!(
                "intact: {} records verified (last seq {}, hash {}) in {} file(s)",
                report.records,
                report.head.seq,
                report.head.hash,
                report.files.len()
            );
            if let Some(cp) = report.checkpoint_seq {
                print!("; checkpoint seq {cp} holds");
            }
            println!();
        }
        Some(f) => {
            println!("NOT INTACT: {f}");
            println!("first bad seq: {}", f.seq);
            println!("kind: {}", f.kind);
            if let kubesafe_audit_log::Location::File { path, offset, line } = &f.location {
                println!("file: {}", path.display());
                println!("line: {line}");
                println!("offset: {offset}");
            }
            println!("verified before it: {} records", report.records);
        }
    }
}

fn verify(a: VerifyArgs) -> Result<ExitCode, String> {
    let opts = verify_opts(&a.keys, a.checkpoint.as_deref())?;
    let report = kubesafe_audit_log::verify(&a.file, &opts).map_err(|e| e.to_string())?;
    if a.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?
        );
    } else {
        print_report(&report);
    }
    Ok(if report.is_intact() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn parse_time(flag: &str, v: &Option<String>) -> Result<Option<Timestamp>, String> {
    v.as_deref()
        .map(|s| {
            s.parse::<Timestamp>().map_err(|e| {
                format!("{flag} {s:?}: not an RFC 3339 time (e.g. 2025-01-31T12:00:00Z): {e}")
            })
        })
        .transpose()
}

fn query(a: QueryArgs) -> Result<ExitCode, String> {
    let mut filter = Filter::new();
    if let Some(s) = &a.status {
        filter = filter.status(s.parse::<Status>().map_err(|e| format!("--status: {e}"))?);
    }
    if let Some(x) = a.action {
        filter = filter.action_type(x);
    }
    if let Some(n) = a.namespace {
        filter = filter.namespace(n);
    }
    if let Some(t) = parse_time("--since", &a.since)? {
        filter = filter.since(t);
    }
    if let Some(t) = parse_time("--until", &a.until)? {
        filter = filter.until(t);
    }
    if let Some(l) = a.limit {
        filter = filter.limit(l);
    }
    let records = kubesafe_audit_log::query(&a.file, &filter).map_err(|e| e.to_string())?;
    let mut out = String::new();
    for r in &records {
        out.push_str(r.line());
        out.push('\n');
    }
    print!("{out}");
    Ok(ExitCode::SUCCESS)
}

fn stats(a: StatsArgs) -> Result<ExitCode, String> {
    let s = kubesafe_audit_log::stats(&a.file).map_err(|e| e.to_string())?;
    println!(
        "{}",
        serde_json::to_string_pretty(&s).map_err(|e| e.to_string())?
    );
    Ok(ExitCode::SUCCESS)
}

fn checkpoint(a: CheckpointArgs) -> Result<ExitCode, String> {
    if a.keys.key_file.is_empty() {
        return Err("--key-file is required to sign a checkpoint".into());
    }
    let ring = key_ring(&a.keys.key_file)?;
    let signer = match &a.key_id {
        Some(id) => ring
            .get(id)
            .ok_or_else(|| format!("--key-id {id:?}: no such key among the --key-file keys"))?,
        None => ring
            .keys()
            .next()
            .ok_or_else(|| "--key-file is required".to_owned())?,
    };
    let opts = verify_opts(&a.keys, None)?;
    let report = kubesafe_audit_log::verify(&a.file, &opts).map_err(|e| e.to_string())?;
    if let Some(f) = &report.failure {
        print_report(&report);
        return Err(format!(
            "refusing to checkpoint a log that does not verify: {f}"
        ));
    }
    let cp = Checkpoint::sign(report.head, Some(a.file.display().to_string()), signer)
        .map_err(|e| e.to_string())?;
    cp.write_to(&a.out).map_err(|e| e.to_string())?;
    println!("{}", cp.to_json());
    Ok(ExitCode::SUCCESS)
}

fn keygen(a: KeygenArgs) -> Result<ExitCode, String> {
    let mut secret = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut secret))
        .map_err(|e| format!("reading /dev/urandom: {e}"))?;
    let key = AuditKey::new(a.id, secret.to_vec()).map_err(|e| format!("--id: {e}"))?;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts
        .open(&a.out)
        .map_err(|e| format!("--out {}: {e}", a.out.display()))?;
    std::io::Write::write_all(&mut f, format!("{}\n", key.to_json()).as_bytes())
        .map_err(|e| format!("--out {}: {e}", a.out.display()))?;
    println!("wrote key {:?} to {}", key.id(), a.out.display());
    Ok(ExitCode::SUCCESS)
}
