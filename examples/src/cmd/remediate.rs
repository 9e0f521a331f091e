//! `kubesafe remediate`: a lossless edit of a static-pod manifest, applied under a
//! restart-aware health gate and rolled back when the component does not come back
//! healthy (crates `kubesafe-health-gate` with `kubesafe-manifest-edit`), recorded in a
//! tamper-evident audit log (`kubesafe-audit-log`).

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{ArgAction, Args};
use kubesafe_audit_log::{
    AuditKey, AuditLog, AuditRecord, Chain, FileSink, FileSinkOptions, Status,
};
use kubesafe_health_gate::outcome::Event;
use kubesafe_health_gate::probe::HttpProbe;
use kubesafe_health_gate::verify::CommandVerifier;
use kubesafe_health_gate::witness::ProcessWitness;
use kubesafe_health_gate::{
    Change, ChangeError, ChangePlan, GatePolicy, ManifestChange, Outcome, OutcomeKind, Transaction,
};
use kubesafe_manifest_edit::{Backup, Edit, FileOptions, HostPathMount, ManifestFile, Op};

/// Exit status: the change is in place, restarted with and healthy.
pub(crate) const EXIT_APPLIED: u8 = 0;
/// Exit status: nothing was changed (bad input, unhealthy before, lock held, ...).
pub(crate) const EXIT_FAILED: u8 = 1;
/// Exit status: usage error (as clap's).
pub(crate) const EXIT_USAGE: u8 = 2;
/// Exit status: the change was rolled back; the old configuration is back and healthy.
pub(crate) const EXIT_ROLLED_BACK: u8 = 3;
/// Exit status: the rollback did not bring the old configuration back healthy.
pub(crate) const EXIT_ROLLBACK_FAILED: u8 = 4;
/// Exit status: applied, but the audit record could not be written.
pub(crate) const EXIT_AUDIT_FAILED: u8 = 5;

const AFTER_HELP: &str = "\
Operations are applied in this order: --set, --list-add, --remove, --mount.

What happens: the edit is made in memory and shown; the component must be healthy
(preflight); the manifest is written atomically under its lock (.NAME.lock), backed up
outside the manifest directory (default: kubesafe-backups/ beside it, e.g.
/etc/kubernetes/kubesafe-backups/); the gate waits for a NEW process of the component
(under /proc, started after the write, carrying the new flag values), then for health
to hold for the settle window (and 3 probes in a row); a crash loop fails at once.
On failure the original bytes are put back (only if the file is still what kubesafe
wrote), the rejected manifest is kept in the backup directory, and the rollback is
gated the same way. A comment-only edit restarts nothing, so nothing is waited for.

Exit status:
  0  applied: the change is in place, the component restarted with it and is healthy
  1  failed before anything changed (bad manifest or edit, not healthy before, lock
     held by another kubesafe writer, unusable probe credentials, audit log unusable,
     an earlier run killed before its verdict: see .NAME.kubesafe-transaction)
  2  usage error
  3  rolled back: the change was rejected; the original manifest is back and healthy
  4  ROLLBACK FAILED: needs a human; the output names the backup to restore by hand
  5  applied, but the audit record could not be written
  130  aborted by a second Ctrl-C (SIGINT, SIGTERM or SIGHUP; the first one only asks
     kubesafe to finish the gated change): the manifest may hold the new, unjudged
     content; the next run refuses to start until .NAME.kubesafe-transaction is removed

Example (kubeadm control-plane node; kubeadm's serving certificate names the advertise
address, not 127.0.0.1):
  ADDR=$(sudo kubesafe edit /etc/kubernetes/manifests/kube-apiserver.yaml get --advertise-address)
  sudo kubesafe remediate --manifest /etc/kubernetes/manifests/kube-apiserver.yaml \\
    --set --profiling false \\
    --probe https://$ADDR:6443/livez \\
    --cacert /etc/kubernetes/pki/ca.crt \\
    --cert /etc/kubernetes/pki/apiserver-kubelet-client.crt \\
    --key /etc/kubernetes/pki/apiserver-kubelet-client.key";

/// Edit a static-pod manifest under a health gate; roll it back if the component does
/// not come back healthy.
#[derive(Debug, Args)]
#[command(after_help = AFTER_HELP)]
pub(crate) struct RemediateArgs {
    /// The static-pod manifest, e.g. /etc/kubernetes/manifests/kube-apiserver.yaml.
    #[arg(long, value_name = "FILE")]
    manifest: PathBuf,

    /// Set a flag: `--set --profiling false` (repeatable).
    #[arg(long, num_args = 2, value_names = ["FLAG", "VALUE"], allow_hyphen_values = true,
          action = ArgAction::Append)]
    set: Vec<String>,

    /// Remove a flag: `--remove --insecure-port` (repeatable).
    #[arg(long, value_name = "FLAG", allow_hyphen_values = true, action = ArgAction::Append)]
    remove: Vec<String>,

    /// Add an item to a comma-separated flag value:
    /// `--list-add --enable-admission-plugins AlwaysPullImages` (repeatable).
    #[arg(long = "list-add", num_args = 2, value_names = ["FLAG", "ITEM"],
          allow_hyphen_values = true, action = ArgAction::Append)]
    list_add: Vec<String>,

    /// Make sure a hostPath volume and its mount exist:
    /// `NAME:HOSTPATH:MOUNTPATH[:ro][:TYPE]`, TYPE a hostPath type such as File or
    /// DirectoryOrCreate (repeatable).
    #[arg(long, value_name = "NAME:HOSTPATH:MOUNTPATH[:ro]", action = ArgAction::Append)]
    mount: Vec<String>,

    /// Container whose flags or mounts to edit (default: the one running the component's
    /// binary, or the only container).
    #[arg(long, value_name = "NAME")]
    container: Option<String>,

    /// Health endpoint, e.g. `https://ADVERTISE-ADDRESS:6443/livez`.
    #[arg(long, value_name = "URL")]
    probe: String,

    /// CA bundle to verify the endpoint's certificate (the cluster CA).
    #[arg(long, value_name = "F")]
    cacert: Option<PathBuf>,

    /// Client certificate for the probe (needed under --anonymous-auth=false).
    #[arg(long, value_name = "F", requires = "key")]
    cert: Option<PathBuf>,

    /// The client certificate's private key.
    #[arg(long, value_name = "F", requires = "cert")]
    key: Option<PathBuf>,

    /// Bearer token file for the probe (read at every probe).
    #[arg(long, value_name = "F", conflicts_with_all = ["cert", "key"])]
    token_file: Option<PathBuf>,

    /// Do not verify the endpoint's certificate (test clusters only; says so on
    /// stderr).
    #[arg(long, conflicts_with = "cacert")]
    insecure: bool,

    /// Name of the component's process under /proc (default: the container's name;
    /// kubeadm names containers after their binaries, e.g. kube-apiserver).
    #[arg(long, value_name = "NAME", conflicts_with = "no_witness")]
    process: Option<String>,

    /// Count processes of every network namespace as the component. By default only
    /// those in kubesafe's own network namespace count (another cluster's
    /// kube-apiserver, e.g. a kind node's, is visible under /proc but is not the one
    /// probed); use this when kubesafe runs in a pod without hostNetwork.
    #[arg(long, conflicts_with = "no_witness")]
    process_any_netns: bool,

    /// Do not look for the restarted process under /proc (e.g. when kubesafe runs where
    /// the node's /proc is not visible); the restart is then witnessed by the health
    /// endpoint going down and coming back, which cannot check the flags.
    #[arg(long)]
    no_witness: bool,

    /// Longest wait for the restart and settled health after the write, and again after
    /// a rollback.
    #[arg(long, value_name = "DURATION", default_value = "120s", value_parser = duration)]
    deadline: Duration,

    /// How long the component must stay healthy (and answer 3 probes in a row) before
    /// the change is accepted.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = duration)]
    settle: Duration,

    /// A shell command run once the component is healthy (e.g. a CIS check); a non-zero
    /// exit rolls the change back.
    #[arg(long, value_name = "CMD")]
    verify_cmd: Option<String>,

    /// Directory for the backup and the rejected manifest (default: kubesafe-backups/
    /// beside the manifest directory). Must not be the manifest directory.
    #[arg(long, value_name = "DIR")]
    backup_dir: Option<PathBuf>,

    /// Append one hash-chained record of this run (the edit, the outcome) to this
    /// audit log (created if missing).
    #[arg(long, value_name = "FILE")]
    audit_log: Option<PathBuf>,

    /// Seal the audit record with this HMAC key file (see `kubesafe audit keygen`).
    #[arg(long, value_name = "F", requires = "audit_log")]
    audit_key_file: Option<PathBuf>,

    /// Show the diff and the plan; write nothing.
    #[arg(long)]
    dry_run: bool,

    /// Print the outcome as JSON on stdout; no progress on stderr.
    #[arg(long)]
    json: bool,
}

fn duration(s: &str) -> Result<Duration, String> {
    kubesafe_health_gate::clock::parse_duration(s)
}

/// A failure before the transaction, with its exit status.
struct Fail {
    code: u8,
    message: String,
}

impl Fail {
    fn usage(message: impl Into<String>) -> Self {
        Self {
            code: EXIT_USAGE,
            message: message.into(),
        }
    }
    fn before(message: impl std::fmt::Display) -> Self {
        Self {
            code: EXIT_FAILED,
            message: message.to_string(),
        }
    }
}

/// Parses `NAME:HOSTPATH:MOUNTPATH[:ro|:rw][:TYPE]`.
pub(crate) fn parse_mount(spec: &str) -> Result<HostPathMount, String> {
    let parts: Vec<&str> = spec.split(':').collect();
    let bad = |why: &str| format!("--mount {spec:?}: {why} (NAME:HOSTPATH:MOUNTPATH[:ro][:TYPE])");
    let [name, host, mount, rest @ ..] = parts.as_slice() else {
        return Err(bad("needs at least three fields"));
    };
    if name.is_empty() || !host.starts_with('/') || !mount.starts_with('/') {
        return Err(bad("needs a volume name and two absolute paths"));
    }
    let mut m = HostPathMount::new(*name, *host, *mount);
    let mut typed = false;
    for field in rest {
        match *field {
            "ro" => m = m.read_only(true),
            "rw" => m = m.read_only(false),
            t if !typed
                && [
                    "File",
                    "FileOrCreate",
                    "Directory",
                    "DirectoryOrCreate",
                    "Socket",
                    "CharDevice",
                    "BlockDevice",
                ]
                .contains(&t) =>
            {
                m = m.path_type(t);
                typed = true;
            }
            other => return Err(bad(&format!("unknown field {other:?}"))),
        }
    }
    Ok(m)
}

fn edit_from_args(args: &RemediateArgs) -> Result<Edit, Fail> {
    let mut edit = Edit::new();
    if let Some(c) = &args.container {
        edit = edit.container(c.clone());
    }
    for pair in args.set.chunks(2) {
        if let [flag, value] = pair {
            edit = edit.set_flag(flag.clone(), value.clone());
        }
    }
    for pair in args.list_add.chunks(2) {
        if let [flag, item] = pair {
            edit = edit.list_add(flag.clone(), item.clone());
        }
    }
    for flag in &args.remove {
        edit = edit.remove_flag(flag.clone());
    }
    for spec in &args.mount {
        edit = edit.op(Op::EnsureHostPathMount(
            parse_mount(spec).map_err(Fail::usage)?,
        ));
    }
    if edit.ops.is_empty() {
        return Err(Fail::usage(
            "nothing to do: give at least one --set, --list-add, --remove or --mount",
        ));
    }
    Ok(edit)
}

/// The process witness for the component edited by `edit`: the process named after
/// the container (or `process`), told apart from other instances by the values of
/// `--secure-port`, `--bind-address` and `--advertise-address` in the manifest when the
/// edit leaves them alone, and (unless `any_netns`) by running in this program's network
/// namespace.
pub(crate) fn process_witness(
    file: &ManifestFile,
    edit: &Edit,
    process: Option<&str>,
    any_netns: bool,
) -> Result<ProcessWitness, String> {
    let manifest = file.read().map_err(|e| e.to_string())?;
    let container = match &edit.container {
        Some(c) => c.clone(),
        None => manifest.default_container().map_err(|e| e.to_string())?,
    };
    let mut witness = ProcessWitness::new(process.unwrap_or(&container));
    if any_netns {
        witness = witness.any_network_namespace();
    }
    for flag in ["--secure-port", "--bind-address", "--advertise-address"] {
        let touched = edit.ops.iter().any(|op| match op {
            Op::SetFlag { flag: f, .. }
            | Op::RemoveFlag { flag: f }
            | Op::ListAdd { flag: f, .. }
            | Op::ListRemove { flag: f, .. } => {
                f.trim_start_matches('-') == flag.trim_start_matches('-')
            }
            _ => false,
        });
        if touched {
            continue;
        }
        if let Ok(Some(v)) = manifest.get_flag(Some(&container), flag)
            && let Some(value) = v.value
        {
            witness = witness.select_flag(flag, value);
        }
    }
    Ok(witness)
}

/// Lends a change to a transaction, so the caller can still read it (hashes, backup)
/// afterwards. The lock it holds is released when the change itself is dropped.
struct Lent<'c>(&'c mut ManifestChange);

impl Change for Lent<'_> {
    fn plan(&mut self) -> Result<ChangePlan, ChangeError> {
        self.0.plan()
    }
    fn apply(&mut self) -> Result<kubesafe_health_gate::change::AppliedChange, ChangeError> {
        self.0.apply()
    }
    fn rollback(&mut self) -> Result<kubesafe_health_gate::change::RolledBackChange, ChangeError> {
        self.0.rollback()
    }
}

/// What one gated run produced.
pub(crate) struct RunResult {
    pub(crate) outcome: Outcome,
    /// SHA-256 of the manifest as planned from (before the change).
    pub(crate) before_sha256: Option<String>,
    /// SHA-256 of the manifest after the run.
    pub(crate) after_sha256: Option<String>,
}

/// Everything a gated manifest edit needs.
pub(crate) struct Request {
    pub(crate) file: ManifestFile,
    pub(crate) edit: Edit,
    pub(crate) probe: HttpProbe,
    pub(crate) witness: Option<ProcessWitness>,
    pub(crate) policy: GatePolicy,
    pub(crate) verify_cmd: Option<String>,
}

/// Runs the gated edit. The manifest's lock is held from the write to the verdict and
/// released before this returns.
pub(crate) fn run_gated(req: Request, on_event: impl FnMut(&Event)) -> RunResult {
    let Request {
        file,
        edit,
        probe,
        witness,
        policy,
        verify_cmd,
    } = req;
    let mut change = ManifestChange::new(file.clone(), edit);
    let mut tx = Transaction::new(Lent(&mut change), probe)
        .policy(policy)
        .on_event(on_event);
    if let Some(w) = witness {
        tx = tx.witness(w);
    }
    if let Some(cmd) = verify_cmd {
        tx = tx.verifier(CommandVerifier::shell(cmd));
    }
    let outcome = tx.run();
    let before_sha256 = change.original_sha256().map(str::to_owned);
    drop(change);
    RunResult {
        outcome,
        before_sha256,
        after_sha256: file.sha256().ok(),
    }
}

/// The audit record of one run: action `remediate`, the edit as parameters, the
/// outcome as result.
pub(crate) fn audit_record(
    manifest: &Path,
    edit: &Edit,
    probe_url: &str,
    result: &RunResult,
) -> AuditRecord {
    let outcome = &result.outcome;
    let status = if outcome.is_applied() {
        Status::Completed
    } else {
        Status::Failed
    };
    let name = manifest
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut record = AuditRecord::new("remediate", status)
        .resource("static-pod-manifest", name)
        .parameter("manifest", manifest.display().to_string())
        .parameter(
            "edit",
            serde_json::to_value(edit).unwrap_or(serde_json::Value::Null),
        )
        .parameter("probe", probe_url)
        .duration_ms(u64::try_from(outcome.timings().total.as_millis()).unwrap_or(u64::MAX))
        .result(serde_json::to_value(outcome).unwrap_or(serde_json::Value::Null))
        .completed_at(kubesafe_audit_log::jiff::Timestamp::now());
    if let Some(sha) = &result.before_sha256 {
        record = record.parameter("before_sha256", sha.clone());
    }
    if let Some(sha) = &result.after_sha256 {
        record = record.parameter("after_sha256", sha.clone());
    }
    if let Some(reason) = outcome.reason() {
        record = record.error_message(format!("{}: {reason}", outcome.kind()));
    }
    if let Some(who) = requested_by() {
        record = record.requested_by(who);
    }
    record
}

/// One progress line for an event.
pub(crate) fn event_line(e: &Event) -> String {
    format!(
        "{:>6.2}s {:<9} {}",
        e.at.as_secs_f64(),
        e.phase.to_string(),
        e.kind
    )
}

/// The exit status of an outcome.
pub(crate) fn exit_status(kind: OutcomeKind) -> u8 {
    match kind {
        OutcomeKind::Applied => EXIT_APPLIED,
        OutcomeKind::RolledBack => EXIT_ROLLED_BACK,
        OutcomeKind::RollbackFailed => EXIT_ROLLBACK_FAILED,
        _ => EXIT_FAILED,
    }
}

/// `install` + `mv` lines that put `backup` back over `manifest` atomically, with the
/// backup's mode and owner (the manifest's, as kubesafe keeps them).
pub(crate) fn manual_restore_commands(backup: &Path, manifest: &Path) -> String {
    let (mode, owner, group) = match std::fs::metadata(backup) {
        Ok(m) => (
            format!("{:o}", m.mode() & 0o7777),
            if m.uid() == 0 {
                "root".to_owned()
            } else {
                m.uid().to_string()
            },
            if m.gid() == 0 {
                "root".to_owned()
            } else {
                m.gid().to_string()
            },
        ),
        Err(_) => ("600".to_owned(), "root".to_owned(), "root".to_owned()),
    };
    let dir = manifest.parent().unwrap_or(Path::new("."));
    let name = manifest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    // A hidden temp name in the same directory, then rename: the kubelet never loads a
    // half-copied manifest (it skips hidden files).
    let tmp = dir.join(format!(".{name}.restore"));
    format!(
        "install -m {mode} -o {owner} -g {group} {} {} && mv {} {}",
        backup.display(),
        tmp.display(),
        tmp.display(),
        manifest.display()
    )
}

/// Installs SIGINT/SIGTERM/SIGHUP handling for the duration of a transaction: the first
/// signal is noted (the transaction finishes, rolling back on failure); the second
/// aborts at once. Returns a handle that uninstalls it.
fn guard_signals(
    backup_dir: Option<PathBuf>,
    marker: PathBuf,
) -> Option<signal_hook::iterator::Handle> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP]).ok()?;
    let handle = signals.handle();
    std::thread::spawn(move || {
        let mut seen = 0;
        for sig in signals.forever() {
            seen += 1;
            let name = match sig {
                SIGINT => "SIGINT",
                SIGTERM => "SIGTERM",
                _ => "SIGHUP",
            };
            if seen == 1 {
                eprintln!(
                    "kubesafe: {name} received: finishing the gated change first (it is rolled \
                     back if the gate fails, so the manifest is not left unjudged); send it \
                     again to abort at once"
                );
            } else {
                let where_ = backup_dir
                    .as_ref()
                    .map(|d| format!(" (backups in {})", d.display()))
                    .unwrap_or_default();
                eprintln!(
                    "kubesafe: error: aborted by a second {name}: the manifest may hold the new, \
                     unverified content{where_}; check the component, then remove {} (the next \
                     run refuses to start while it is there)",
                    marker.display()
                );
                std::process::exit(130);
            }
        }
    });
    Some(handle)
}

fn build_probe(args: &RemediateArgs, show_library_logs: bool) -> Result<HttpProbe, Fail> {
    let mut b = HttpProbe::builder(&args.probe).verbose(true);
    if let Some(ca) = &args.cacert {
        b = b.ca_file(ca);
    }
    if let (Some(cert), Some(key)) = (&args.cert, &args.key) {
        b = b.client_cert_files(cert, key);
    }
    if let Some(t) = &args.token_file {
        b = b.bearer_token_file(t);
    }
    if args.insecure {
        b = b.insecure_skip_tls_verify();
        eprintln!(
            "kubesafe: warning: --insecure: the TLS certificate of {} is NOT verified; anyone \
             able to answer on that address can pass the gate (test clusters only)",
            args.probe
        );
    }
    // The library logs the same warning; shown with -v or RUST_LOG.
    library_logs(show_library_logs, || b.build()).map_err(|e| Fail::before(format!("--probe: {e}")))
}

/// Whether the libraries' own log lines are shown: with -v or RUST_LOG above `warn`.
/// Otherwise the command's progress lines say what their warnings (a gate failing, a
/// rollback) would repeat. Decide it once, before any [`library_logs`] call: a scoped
/// subscriber changes what `LevelFilter::current()` reports afterwards.
fn show_library_logs() -> bool {
    tracing::level_filters::LevelFilter::current() > tracing::level_filters::LevelFilter::WARN
}

/// Runs `f` with the libraries' log lines shown or muted.
fn library_logs<T>(show: bool, f: impl FnOnce() -> T) -> T {
    if show {
        f()
    } else {
        tracing::subscriber::with_default(tracing::subscriber::NoSubscriber::default(), f)
    }
}

fn open_audit(args: &RemediateArgs) -> Result<Option<AuditLog<FileSink>>, Fail> {
    let Some(path) = &args.audit_log else {
        return Ok(None);
    };
    let chain = match &args.audit_key_file {
        Some(f) => Chain::keyed(
            AuditKey::from_file(f).map_err(|e| Fail::before(format!("--audit-key-file: {e}")))?,
        ),
        None => Chain::unkeyed(),
    };
    let sink = FileSink::open(path, FileSinkOptions::new())
        .map_err(|e| Fail::before(format!("--audit-log: {e}")))?;
    for r in sink.recovered() {
        eprintln!(
            "kubesafe: warning: audit log: torn final line ({} bytes at offset {}) moved to {}",
            r.bytes,
            r.offset,
            r.moved_to.display()
        );
    }
    Ok(Some(AuditLog::with_chain(sink, chain)))
}

fn dry_run(file: ManifestFile, edit: Edit, json: bool) -> Result<u8, Fail> {
    let mut change = ManifestChange::new(file, edit);
    let plan = change.plan().map_err(Fail::before)?;
    let diff = change.diff().unwrap_or_default().to_owned();
    if json {
        let v = serde_json::json!({
            "plan": plan,
            "diff": diff,
            "before_sha256": change.original_sha256(),
            "after_sha256": change.new_sha256(),
        });
        println!(
            "{}",
            serde_json::to_string_pretty(&v).map_err(Fail::before)?
        );
    } else {
        print!("{diff}");
        eprintln!(
            "kubesafe: dry run, nothing written: {} (restart {}: {})",
            plan.description,
            if plan.restart.is_expected() {
                "expected"
            } else {
                "not expected"
            },
            plan.restart.reason()
        );
        for f in &plan.apply_flags {
            eprintln!("kubesafe: the restarted process must carry {f}");
        }
    }
    Ok(EXIT_APPLIED)
}

fn open_manifest(args: &RemediateArgs) -> Result<ManifestFile, Fail> {
    let backup = match &args.backup_dir {
        Some(d) => Backup::Dir(d.clone()),
        None => Backup::Sibling,
    };
    ManifestFile::open(&args.manifest, FileOptions::new().backup(backup)).map_err(Fail::before)
}

/// The audit record of a run that failed before the transaction started (the
/// manifest could not be opened, the probe's credentials could not be loaded, ...).
fn failed_record(args: &RemediateArgs, edit: &Edit, message: &str) -> AuditRecord {
    let mut record = AuditRecord::new("remediate", Status::Failed)
        .resource(
            "static-pod-manifest",
            args.manifest
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default(),
        )
        .parameter("manifest", args.manifest.display().to_string())
        .parameter(
            "edit",
            serde_json::to_value(edit).unwrap_or(serde_json::Value::Null),
        )
        .parameter("probe", args.probe.as_str())
        .error_message(format!("failed (nothing changed): {message}"))
        .completed_at(kubesafe_audit_log::jiff::Timestamp::now());
    if let Some(who) = requested_by() {
        record = record.requested_by(who);
    }
    record
}

fn requested_by() -> Option<String> {
    ["SUDO_USER", "USER", "LOGNAME"]
        .iter()
        .find_map(|v| std::env::var(v).ok().filter(|s| !s.is_empty()))
}

/// The gate policy of the command line; a policy the gate cannot work with (a
/// deadline the settle window does not fit in) is a usage error.
fn policy_from_args(args: &RemediateArgs) -> Result<GatePolicy, Fail> {
    let policy = GatePolicy::default()
        .deadline(args.deadline)
        .rollback_deadline(args.deadline)
        .settle(args.settle, 3);
    policy
        .validate()
        .map_err(|e| Fail::usage(format!("--deadline/--settle: {e}")))?;
    Ok(policy)
}

fn execute(args: RemediateArgs) -> Result<u8, Fail> {
    let show_logs = show_library_logs();
    let edit = edit_from_args(&args)?;
    let policy = policy_from_args(&args)?;
    if args.dry_run {
        return dry_run(open_manifest(&args)?, edit, args.json);
    }
    // Opened first: every run past the command line leaves a record, including one
    // that fails before the change.
    let mut audit = open_audit(&args)?;
    let prepared = open_manifest(&args).and_then(|file| {
        let probe = build_probe(&args, show_logs)?;
        let witness = if args.no_witness {
            None
        } else {
            Some(
                process_witness(
                    &file,
                    &edit,
                    args.process.as_deref(),
                    args.process_any_netns,
                )
                .map_err(Fail::before)?,
            )
        };
        Ok((file, probe, witness))
    });
    let (file, probe, witness) = match prepared {
        Ok(p) => p,
        Err(fail) => {
            if let Some(log) = audit.as_mut()
                && let Err(e) = log.append(&failed_record(&args, &edit, &fail.message))
            {
                eprintln!(
                    "kubesafe: error: audit log: the record of this run was not written: {e}"
                );
            }
            return Err(fail);
        }
    };
    let quiet = args.json;
    if !quiet && let Ok(report) = file.dry_run(&edit) {
        print!("{}", report.diff);
    }
    let backup_dir = file.backup_dir().ok().flatten();
    let signals = guard_signals(backup_dir, ManifestChange::transaction_marker(&file));
    let request = Request {
        file,
        edit: edit.clone(),
        probe,
        witness,
        policy,
        verify_cmd: args.verify_cmd.clone(),
    };
    let progress = |e: &Event| {
        if !quiet {
            eprintln!("kubesafe: {}", event_line(e));
        }
    };
    let result = library_logs(show_logs, || run_gated(request, progress));
    if let Some(h) = signals {
        h.close();
    }
    let outcome = &result.outcome;
    let mut code = exit_status(outcome.kind());

    if let Some(log) = audit.as_mut() {
        let record = audit_record(&args.manifest, &edit, &args.probe, &result);
        match log.append(&record) {
            Ok(sealed) => {
                if !quiet {
                    eprintln!(
                        "kubesafe: audit record seq {} appended to {}",
                        sealed.seq,
                        args.audit_log
                            .as_deref()
                            .map(Path::display)
                            .map(|d| d.to_string())
                            .unwrap_or_default()
                    );
                }
            }
            Err(e) => {
                eprintln!(
                    "kubesafe: error: audit log: the record of this run was not written: {e}"
                );
                if code == EXIT_APPLIED {
                    code = EXIT_AUDIT_FAILED;
                }
            }
        }
    }

    if quiet {
        println!(
            "{}",
            serde_json::to_string_pretty(outcome).map_err(Fail::before)?
        );
    } else {
        println!("{}", outcome.kind());
        println!("{outcome}");
        match outcome {
            Outcome::Applied {
                backup: Some(b), ..
            } => println!("backup of the previous manifest: {}", b.display()),
            Outcome::RolledBack { .. } => {
                if let (Some(before), Some(after)) = (&result.before_sha256, &result.after_sha256) {
                    let same = if before == after {
                        "byte-identical to before"
                    } else {
                        "NOT identical to before (another writer changed it?)"
                    };
                    println!("manifest sha256 before {before}, after {after}: {same}");
                }
            }
            _ => {}
        }
    }
    if let Outcome::Failed { reason, .. } = outcome {
        eprintln!(
            "kubesafe: error: nothing changed: {}",
            reason.to_string().replace(['\n', '\r'], " ")
        );
    }
    if let Outcome::RollbackFailed {
        reason,
        rollback_reason,
        backup,
        ..
    } = outcome
    {
        eprintln!(
            "kubesafe: error: ROLLBACK FAILED: {reason}; then: {rollback_reason}; the component \
             may be down"
        );
        match backup {
            Some(b) => {
                eprintln!(
                    "kubesafe: recovery: the manifest from before the change is {}; put it back \
                     as root with:",
                    b.display()
                );
                eprintln!(
                    "kubesafe: recovery:   {}",
                    manual_restore_commands(b, &args.manifest)
                );
            }
            None => eprintln!("kubesafe: recovery: no backup was written"),
        }
        eprintln!(
            "kubesafe: recovery: then watch it come back: `crictl ps -a --name <component>`, \
             `crictl logs <container id>`, `journalctl -u kubelet -f`"
        );
    }
    Ok(code)
}

/// Runs `kubesafe remediate`.
pub(crate) fn run(args: RemediateArgs) -> ExitCode {
    match execute(args) {
        Ok(code) => ExitCode::from(code),
        Err(Fail { code, message }) => {
            eprintln!("kubesafe: error: {}", message.replace(['\n', '\r'], " "));
            ExitCode::from(code)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_specs() {
        let m = parse_mount("audit:/etc/kubernetes/audit.yaml:/etc/kubernetes/audit.yaml:ro:File")
            .unwrap();
        assert!(m.read_only);
        assert_eq!(m.path_type.as_deref(), Some("File"));
        let m = parse_mount("log:/var/log/k:/var/log/k").unwrap();
        assert!(!m.read_only);
        assert_eq!(m.path_type, None);
        assert!(parse_mount("log:/var/log/k").is_err());
        assert!(parse_mount("log:relative:/x").is_err());
        assert!(parse_mount("log:/a:/b:rx").is_err());
    }

    #[test]
    fn the_witness_selects_this_node_s_apiserver_by_its_addresses_and_port() {
        // `--secure-port=6443` is the same in every kubeadm cluster (a kind
        // node's apiserver too); the advertise address is this node's.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kube-apiserver.yaml");
        std::fs::write(
            &path,
            "apiVersion: v1\nkind: Pod\nspec:\n  containers:\n  - name: kube-apiserver\n    command:\n    - kube-apiserver\n    - --advertise-address=10.0.0.5\n    - --secure-port=6443\n",
        )
        .unwrap();
        let file = ManifestFile::open(&path, FileOptions::default()).unwrap();
        let edit = Edit::new().set_flag("--profiling", "false");
        let w = process_witness(&file, &edit, None, false).unwrap();
        let d = kubesafe_health_gate::witness::RestartWitness::describe(&w);
        assert_eq!(
            d,
            "process `kube-apiserver` with --secure-port=6443 with --advertise-address=10.0.0.5"
        );
        // An edit of a selector flag cannot select by its old value.
        let edit = Edit::new().set_flag("--advertise-address", "10.0.0.6");
        let w = process_witness(&file, &edit, Some("apiserver"), true).unwrap();
        let d = kubesafe_health_gate::witness::RestartWitness::describe(&w);
        assert_eq!(
            d,
            "process `apiserver` with --secure-port=6443, in any network namespace"
        );
    }

    #[test]
    fn restore_command_is_an_atomic_rename_in_the_manifest_dir() {
        let cmd = manual_restore_commands(
            Path::new("/nonexistent/kubesafe-backups/kube-apiserver.yaml.X"),
            Path::new("/etc/kubernetes/manifests/kube-apiserver.yaml"),
        );
        assert_eq!(
            cmd,
            "install -m 600 -o root -g root /nonexistent/kubesafe-backups/kube-apiserver.yaml.X \
             /etc/kubernetes/manifests/.kube-apiserver.yaml.restore && mv \
             /etc/kubernetes/manifests/.kube-apiserver.yaml.restore \
             /etc/kubernetes/manifests/kube-apiserver.yaml"
        );
    }
}
