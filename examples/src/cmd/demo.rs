//! `kubesafe demo`: the whole flow of the kubesafe crates against a SIMULATED
//! control-plane node — a CIS remediation applied under the health gate, a broken change
//! rolled back to the identical bytes, and the audit log of both verified, then tampered
//! with and caught.

use std::fmt::Write as _;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clap::Args;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use kubesafe_audit_log::{AuditLog, FailureKind, FileSink, FileSinkOptions, VerifyOptions};
use kubesafe_health_gate::simulator::SimNode;
use kubesafe_health_gate::{GatePolicy, Outcome, OutcomeKind};
use kubesafe_manifest_edit::{Edit, FileOptions, HostPathMount, ManifestFile, sha256_hex};

use super::remediate::{self, Request, RunResult};

/// The sandbox directory, written `$S` in the demo's output (its paths are long).
static SANDBOX: std::sync::OnceLock<String> = std::sync::OnceLock::new();

fn shown(text: &str) -> String {
    match SANDBOX.get() {
        Some(root) if !root.is_empty() => text
            .replace(&format!("--- a{root}"), "--- a/$S")
            .replace(&format!("+++ b{root}"), "+++ b/$S")
            .replace(root.as_str(), "$S"),
        _ => text.to_owned(),
    }
}

/// `println!` with the sandbox directory written `$S`.
macro_rules! say {
    ($($arg:tt)*) => {
        println!("{}", shown(&format!($($arg)*)))
    };
}

/// Run the whole kubesafe flow against a SIMULATED control-plane node (no cluster needed).
///
/// Creates a sandbox with a kubeadm-style /etc/kubernetes (manifests/, pki/, an audit
/// policy), starts the node simulator (a real HTTPS server standing in for
/// kube-apiserver, restarted by a kubelet-like watcher of the manifest), then: (1) a CIS
/// remediation that is applied, (2) a change that crash-loops the server and is rolled
/// back to the identical bytes, (3) the audit log of both verified, and a copy with one
/// byte flipped shown to fail verification at the record that was touched.
#[derive(Debug, Args)]
#[command(
    after_help = "Exit status: 0 when all three steps end as described, 1 otherwise, 130 when \
                  interrupted (Ctrl-C, SIGTERM, SIGHUP: the simulated node is stopped and the \
                  sandbox removed unless --keep)."
)]
pub(crate) struct DemoArgs {
    /// Keep the sandbox directory (default: removed at the end).
    #[arg(long)]
    keep: bool,

    /// Create the sandbox here; it must not exist or be empty (default: a new directory
    /// under the system's temporary directory).
    #[arg(long, value_name = "D")]
    dir: Option<PathBuf>,

    /// Only start the simulated node and keep it running until Ctrl-C, so you can run
    /// `kubesafe remediate` against it yourself (paths and URL in D/sim.env).
    #[arg(long)]
    serve: bool,
}

/// Shortened timings: the simulator restarts in ~0.4 s. Real nodes need the defaults of
/// `kubesafe remediate` (120 s deadline, 10 s settle) or more.
const DEADLINE: Duration = Duration::from_secs(20);
const SETTLE: Duration = Duration::from_secs(1);
/// How long each simulated server takes to start (it reads its audit policy after this):
/// long enough for the restart witness to see every process of a crash loop.
const STARTUP_DELAY: &str = "300ms";

const AUDIT_POLICY: &str = "\
# Audit policy written by `kubesafe demo` (a SIMULATION). CIS 1.2.x / 3.2.x: log at
# least metadata for every request; keep secrets and configmaps out of the bodies.
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages:
- RequestReceived
rules:
- level: Metadata
  resources:
  - group: \"\"
    resources: [\"secrets\", \"configmaps\", \"tokenreviews\"]
- level: Metadata
";

/// The sandbox's paths.
struct Layout {
    root: PathBuf,
    etc: PathBuf,
    audit_policy: PathBuf,
    apiserver_audit_dir: PathBuf,
    kubesafe_log: PathBuf,
    tampered_log: PathBuf,
}

impl Layout {
    fn new(root: PathBuf) -> Self {
        let etc = root.join("etc/kubernetes");
        let logs = root.join("var/log");
        Self {
            audit_policy: etc.join("audit-policy.yaml"),
            apiserver_audit_dir: logs.join("kubernetes/audit"),
            kubesafe_log: logs.join("kubesafe/remediate.jsonl"),
            tampered_log: logs.join("kubesafe/remediate.tampered-copy.jsonl"),
            etc,
            root,
        }
    }
}

struct Step {
    title: &'static str,
    outcome: String,
    time: String,
    detail: String,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> String + '_ {
    move |e| format!("{}: {e}", path.display())
}

/// Creates the sandbox directory: a fresh one under the temporary directory, or `dir`
/// if it does not exist or is empty (never a directory with content: it is removed at
/// the end).
fn make_sandbox(dir: Option<PathBuf>) -> Result<PathBuf, String> {
    let dir = match dir {
        Some(d) => d,
        None => {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.subsec_nanos());
            std::env::temp_dir().join(format!("kubesafe-demo-{}-{nanos:08x}", std::process::id()))
        }
    };
    match std::fs::read_dir(&dir) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                return Err(format!(
                    "--dir {}: not empty; give a new or empty directory (the demo removes it at \
                     the end unless --keep)",
                    dir.display()
                ));
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        }
        Err(e) => return Err(format!("--dir {}: {e}", dir.display())),
    }
    std::path::absolute(&dir).map_err(io(&dir))
}

fn spinner() -> ProgressBar {
    let target = if std::io::stderr().is_terminal() {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    };
    let pb = ProgressBar::with_draw_target(None, target);
    if let Ok(style) = ProgressStyle::with_template("  {spinner} {elapsed:>3} {wide_msg}") {
        pb.set_style(style);
    }
    pb.enable_steady_tick(Duration::from_millis(100));
    pb
}

fn short(sha: Option<&String>) -> String {
    sha.map(|s| s.get(..12).unwrap_or(s).to_owned())
        .unwrap_or_else(|| "?".to_owned())
}

fn secs(d: Duration) -> String {
    format!("{:.1}s", d.as_secs_f64())
}

/// The `kubesafe remediate` command line equivalent to a step.
fn command_line(manifest: &Path, edit_args: &[String], probe: &str, node: &NodeInfo) -> String {
    let mut s = format!("kubesafe remediate --manifest {}", manifest.display());
    for a in edit_args {
        s.push_str(" \\\n      ");
        s.push_str(a);
    }
    let _ = write!(
        s,
        " \\\n      --probe {probe} --cacert {} --cert {} --key {} \\\n      --deadline {}s --settle {}s --audit-log {}",
        node.ca.display(),
        node.cert.display(),
        node.key.display(),
        DEADLINE.as_secs(),
        SETTLE.as_secs(),
        node.audit_log.display()
    );
    s
}

struct NodeInfo {
    manifest: PathBuf,
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
    readyz: String,
    audit_log: PathBuf,
    pid: Option<u32>,
}

/// Lays out the sandbox and starts the simulated node in it (it goes into `shared`, so
/// whoever ends the program can stop it); waits until it is healthy.
fn start_node(layout: &Layout, shared: &Arc<Mutex<Option<SimNode>>>) -> Result<NodeInfo, String> {
    for d in [
        &layout.etc,
        &layout.apiserver_audit_dir,
        &layout.root.join("var/log/kubesafe"),
    ] {
        std::fs::create_dir_all(d).map_err(io(d))?;
    }
    std::fs::write(&layout.audit_policy, AUDIT_POLICY).map_err(io(&layout.audit_policy))?;

    let exe = std::env::current_exe().map_err(|e| format!("locating this executable: {e}"))?;
    let pb = spinner();
    pb.set_message("starting the simulated node (certificates, manifest, kubelet simulator)");
    let node = SimNode::builder(&layout.etc, exe)
        .args([
            "--allow-privileged=true".to_owned(),
            "--enable-admission-plugins=NodeRestriction".to_owned(),
            "--service-cluster-ip-range=10.96.0.0/12".to_owned(),
            format!("--sim-startup-delay={STARTUP_DELAY}"),
        ])
        .restart_delay(Duration::from_millis(100))
        .crash_backoff(Duration::from_millis(100), Duration::from_millis(400))
        .start()
        .map_err(|e| format!("starting the simulator: {e}"))?;
    let mut info = NodeInfo {
        manifest: node.manifest_path().to_owned(),
        ca: node.pki().ca_cert.clone(),
        cert: node.pki().client_cert.clone(),
        key: node.pki().client_key.clone(),
        readyz: node.url("/readyz"),
        audit_log: layout.kubesafe_log.clone(),
        pid: None,
    };
    let healthy = node.wait_until_healthy(Duration::from_secs(20));
    info.pid = node.kubelet().status().pid;
    if let Ok(mut slot) = shared.lock() {
        *slot = Some(node);
    }
    pb.finish_and_clear();
    healthy.map_err(|e| e.to_string())?;
    Ok(info)
}

/// One gated remediation, shown with a spinner, recorded in the audit log.
fn remediation(
    node: &NodeInfo,
    edit: Edit,
    log: &mut AuditLog<FileSink>,
) -> Result<RunResult, String> {
    let file =
        ManifestFile::open(&node.manifest, FileOptions::default()).map_err(|e| e.to_string())?;
    let probe = kubesafe_health_gate::probe::HttpProbe::builder(&node.readyz)
        .ca_file(&node.ca)
        .client_cert_files(&node.cert, &node.key)
        .verbose(true)
        .timeout(Duration::from_secs(2))
        .build()
        .map_err(|e| e.to_string())?;
    let witness = remediate::process_witness(&file, &edit, None, false)?;
    let policy = GatePolicy::default()
        .deadline(DEADLINE)
        .rollback_deadline(DEADLINE)
        .settle(SETTLE, 3);
    let pb = spinner();
    let result = remediate::run_gated(
        Request {
            file,
            edit: edit.clone(),
            probe,
            witness: Some(witness),
            policy,
            verify_cmd: None,
        },
        |e| pb.set_message(remediate::event_line(e)),
    );
    pb.finish_and_clear();
    let o = &result.outcome;
    let took = secs(o.timings().total);
    match o {
        Outcome::Applied { restart, .. } => {
            say!("    => APPLIED in {took}");
            match restart {
                kubesafe_health_gate::outcome::RestartEvidence::Witnessed { evidence } => {
                    say!("    restart witnessed: {evidence}");
                }
                kubesafe_health_gate::outcome::RestartEvidence::Skipped { reason } => {
                    say!("    no restart waited for: {reason}");
                }
                _ => {}
            }
        }
        Outcome::RolledBack { reason, .. } => {
            say!("    => ROLLED BACK after {took}: {reason}");
        }
        other => say!("    => {other}"),
    }
    let record = remediate::audit_record(&node.manifest, &edit, &node.readyz, &result);
    let sealed = log
        .append(&record)
        .map_err(|e| format!("audit log {}: {e}", node.audit_log.display()))?;
    say!(
        "    audit record seq {} (remediate, {}) appended to {}",
        sealed.seq,
        record.status,
        node.audit_log.display()
    );
    Ok(result)
}

/// Flips one byte of record 2's `"status":"failed"` (f → g) in a copy of the log;
/// returns the byte's offset.
fn tamper(src: &Path, dst: &Path) -> Result<u64, String> {
    let mut bytes = std::fs::read(src).map_err(io(src))?;
    let line2 = bytes
        .iter()
        .position(|&b| b == b'\n')
        .map(|p| p + 1)
        .ok_or("the audit log has fewer than two records")?;
    let needle = b"\"status\":\"failed\"";
    let at = bytes
        .get(line2..)
        .and_then(|rest| rest.windows(needle.len()).position(|w| w == needle))
        .map(|p| line2 + p + needle.len() - "failed\"".len())
        .ok_or("record 2 has no \"status\":\"failed\"")?;
    if let Some(b) = bytes.get_mut(at) {
        *b ^= 0x01;
    }
    std::fs::write(dst, &bytes).map_err(io(dst))?;
    u64::try_from(at).map_err(|e| e.to_string())
}

fn demo(
    layout: &Layout,
    shared: &Arc<Mutex<Option<SimNode>>>,
    steps: &mut Vec<Step>,
) -> Result<bool, String> {
    say!("kubesafe demo: THIS IS A SIMULATION. No cluster is touched.");
    say!(
        "  A real HTTPS server stands in for kube-apiserver (this binary, started as \
         `kube-apiserver`),\n  restarted by a kubelet-like watcher of the manifest. Delays \
         are shortened (deadline {}s,\n  settle {}s); on a real node keep `kubesafe \
         remediate`'s defaults (--deadline 120s --settle 10s) or more.",
        DEADLINE.as_secs(),
        SETTLE.as_secs()
    );
    println!("\nsandbox: {} (written $S below)", layout.root.display());

    let info = start_node(layout, shared)?;
    say!(
        "simulated node: kube-apiserver (pid {}) serving {}",
        info.pid.map_or_else(|| "?".to_owned(), |p| p.to_string()),
        info.readyz
    );

    let sink = FileSink::open(&layout.kubesafe_log, FileSinkOptions::new())
        .map_err(|e| format!("{}: {e}", layout.kubesafe_log.display()))?;
    let mut log = AuditLog::new(sink);
    let mut ok = true;

    // (1) CIS remediation.
    let policy = layout.audit_policy.display().to_string();
    let audit_dir = format!("{}/", layout.apiserver_audit_dir.display());
    let audit_path = layout.apiserver_audit_dir.join("audit.log");
    let edit = Edit::new()
        .set_flag("--profiling", "false")
        .set_flag("--audit-policy-file", &policy)
        .set_flag("--audit-log-path", audit_path.display().to_string())
        .set_flag("--audit-log-maxage", "30")
        .ensure_host_path_mount(
            HostPathMount::new("audit-policy", &policy, &policy)
                .path_type("File")
                .read_only(true),
        )
        .ensure_host_path_mount(
            HostPathMount::new("audit-log", &audit_dir, &audit_dir).path_type("DirectoryOrCreate"),
        );
    let args = vec![
        "--set --profiling false".to_owned(),
        format!("--set --audit-policy-file {policy}"),
        format!("--set --audit-log-path {}", audit_path.display()),
        "--set --audit-log-maxage 30".to_owned(),
        format!("--mount audit-policy:{policy}:{policy}:ro:File"),
        format!("--mount audit-log:{audit_dir}:{audit_dir}:DirectoryOrCreate"),
    ];
    say!(
        "\n[1/3] CIS remediation: --profiling=false (CIS 1.2.18) and API server auditing \
         (1.2.16-1.2.17),\n      with the hostPath volumes and mounts the policy and the \
         log need"
    );
    say!(
        "    $ {}",
        command_line(&info.manifest, &args, &info.readyz, &info)
    );
    let diff = ManifestFile::open(&info.manifest, FileOptions::default())
        .and_then(|f| f.dry_run(&edit))
        .map(|r| r.diff)
        .unwrap_or_default();
    for line in diff.lines() {
        say!("    {line}");
    }
    let first = remediation(&info, edit, &mut log)?;
    if let Outcome::Applied {
        backup: Some(b), ..
    } = &first.outcome
    {
        say!("    backup of the previous manifest: {}", b.display());
    }
    let applied = first.outcome.kind() == OutcomeKind::Applied;
    ok &= applied;
    steps.push(Step {
        title: "1 CIS remediation",
        outcome: first.outcome.kind().to_string(),
        time: secs(first.outcome.timings().total),
        detail: format!(
            "manifest {} -> {}",
            short(first.before_sha256.as_ref()),
            short(first.after_sha256.as_ref())
        ),
    });

    // (2) A change that crash-loops the server.
    let missing = layout.etc.join("audit-policy-v2.yaml");
    say!(
        "\n[2/3] A broken change: --audit-policy-file pointing at {} — a file never\n      \
         copied to the node. The real kube-apiserver exits at startup on it; so does the \
         simulated one.",
        missing.display()
    );
    let args = vec![format!("--set --audit-policy-file {}", missing.display())];
    say!(
        "    $ {}",
        command_line(&info.manifest, &args, &info.readyz, &info)
    );
    let before = std::fs::read(&info.manifest).map_err(io(&info.manifest))?;
    let edit = Edit::new().set_flag("--audit-policy-file", missing.display().to_string());
    let second = remediation(&info, edit, &mut log)?;
    let after = std::fs::read(&info.manifest).map_err(io(&info.manifest))?;
    let (sha_before, sha_after) = (sha256_hex(&before), sha256_hex(&after));
    let identical = before == after;
    say!("    manifest sha256 before: {sha_before}");
    say!(
        "    manifest sha256 after:  {sha_after} ({})",
        if identical {
            "byte-identical"
        } else {
            "DIFFERENT"
        }
    );
    if let Outcome::RolledBack {
        broken_copy: Some(b),
        ..
    } = &second.outcome
    {
        say!("    rejected manifest kept for inspection: {}", b.display());
    }
    let rolled_back = second.outcome.kind() == OutcomeKind::RolledBack && identical;
    ok &= rolled_back;
    steps.push(Step {
        title: "2 crash-looping change",
        outcome: second.outcome.kind().to_string(),
        time: secs(second.outcome.timings().total),
        detail: format!(
            "manifest {} -> {}{}",
            short(Some(&sha_before)),
            short(Some(&sha_after)),
            if identical { " (identical)" } else { "" }
        ),
    });
    drop(log);

    // (3) The audit log.
    say!(
        "\n[3/3] The audit log of both runs: {}",
        layout.kubesafe_log.display()
    );
    let report = kubesafe_audit_log::verify(&layout.kubesafe_log, &VerifyOptions::new())
        .map_err(|e| e.to_string())?;
    let intact = report.is_intact() && report.records == 2;
    match &report.failure {
        None => say!(
            "    $ kubesafe audit verify {}\n    => intact: {} records, head seq {} hash {}",
            layout.kubesafe_log.display(),
            report.records,
            report.head.seq,
            report.head.hash
        ),
        Some(f) => say!("    => NOT INTACT: {f}"),
    }
    let offset = tamper(&layout.kubesafe_log, &layout.tampered_log)?;
    say!(
        "    flipped one byte (offset {offset}: \"failed\" -> \"gailed\" in record 2) of a copy: {}",
        layout.tampered_log.display()
    );
    let tampered = kubesafe_audit_log::verify(&layout.tampered_log, &VerifyOptions::new())
        .map_err(|e| e.to_string())?;
    let caught = match &tampered.failure {
        Some(f) => {
            say!(
                "    $ kubesafe audit verify {}",
                layout.tampered_log.display()
            );
            say!("    => NOT INTACT: {f}");
            let (line_offset, line) = match &f.location {
                kubesafe_audit_log::Location::File { offset, line, .. } => (*offset, *line),
                _ => (0, 0),
            };
            say!(
                "    the verifier names the record: seq {}, line {line}, byte offset {line_offset}, kind {}",
                f.seq,
                f.kind
            );
            f.seq == 2 && f.kind == FailureKind::Modified
        }
        None => {
            say!("    => the tampered copy verified as intact (unexpected)");
            false
        }
    };
    ok &= intact && caught;
    steps.push(Step {
        title: "3 audit log verification",
        outcome: if intact { "intact" } else { "NOT INTACT" }.to_owned(),
        time: "-".to_owned(),
        detail: match &tampered.failure {
            Some(f) => format!(
                "{} records; tampered copy: {} at seq {}",
                report.records, f.kind, f.seq
            ),
            None => format!("{} records; tampered copy not caught", report.records),
        },
    });
    Ok(ok)
}

fn print_summary(steps: &[Step], layout: &Layout, keep: bool) {
    say!("\nSummary (SIMULATION)");
    say!("  {:<26} {:<12} {:>6}  detail", "step", "outcome", "time");
    for s in steps {
        say!(
            "  {:<26} {:<12} {:>6}  {}",
            s.title,
            s.outcome,
            s.time,
            s.detail
        );
    }
    say!(
        "\nPaths{}",
        if keep {
            ""
        } else {
            " (removed now; run with --keep to look at them)"
        }
    );
    let etc = &layout.etc;
    let rows = [
        (
            etc.join("manifests/kube-apiserver.yaml"),
            "the static-pod manifest",
        ),
        (
            etc.join("pki"),
            "the simulated node's certificates (ca.crt, client.crt, ...)",
        ),
        (layout.audit_policy.clone(), "the audit policy"),
        (
            etc.join("kubesafe-backups"),
            "backups of each previous manifest and the rejected one (*.replaced)",
        ),
        (
            layout.kubesafe_log.clone(),
            "kubesafe's hash-chained audit log",
        ),
        (
            layout.tampered_log.clone(),
            "the copy with one byte flipped",
        ),
        (
            etc.join("kubelet"),
            "the kubelet simulator's work dir and logs",
        ),
    ];
    for (p, what) in rows {
        say!("  {}  {what}", p.display());
    }
}

/// `kubesafe demo --serve`: the simulated node alone, until a signal.
fn serve(layout: &Layout, keep: bool) -> ExitCode {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let mut signals = match signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP]) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("kubesafe: error: installing signal handlers: {e}");
            return ExitCode::FAILURE;
        }
    };
    let shared: Arc<Mutex<Option<SimNode>>> = Arc::new(Mutex::new(None));
    let started = start_node(layout, &shared).and_then(|info| {
        let env = layout.root.join("sim.env");
        let text = format!(
            "# kubesafe demo --serve: a SIMULATED node. `. {}` then run kubesafe remediate.\n\
             MANIFEST={}\nPROBE={}\nCACERT={}\nCERT={}\nKEY={}\n",
            env.display(),
            info.manifest.display(),
            info.readyz,
            info.ca.display(),
            info.cert.display(),
            info.key.display()
        );
        std::fs::write(&env, text).map_err(io(&env))?;
        Ok((info, env))
    });
    let code = match started {
        Ok((info, env)) => {
            println!(
                "kubesafe demo --serve: a SIMULATED control-plane node (no cluster is touched)\n\
                 sandbox: {}\nsimulated kube-apiserver (pid {}) serving {}\n\n\
                 In another shell:\n  . {}\n  kubesafe remediate --manifest \"$MANIFEST\" \
                 --set --profiling false \\\n    --probe \"$PROBE\" --cacert \"$CACERT\" \
                 --cert \"$CERT\" --key \"$KEY\" --settle 2s\n\nCtrl-C stops it{}.",
                layout.root.display(),
                info.pid.map_or_else(|| "?".to_owned(), |p| p.to_string()),
                info.readyz,
                env.display(),
                if keep { "" } else { " and removes the sandbox" }
            );
            let _ = signals.forever().next();
            eprintln!("kubesafe: stopping the simulated node");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("kubesafe: error: {}", e.replace(['\n', '\r'], " "));
            ExitCode::FAILURE
        }
    };
    if let Some(node) = shared.lock().ok().and_then(|mut s| s.take()) {
        node.stop();
    }
    if keep {
        println!("sandbox kept: {}", layout.root.display());
    } else {
        let _ = std::fs::remove_dir_all(&layout.root);
    }
    code
}

/// Runs `kubesafe demo`.
pub(crate) fn run(args: DemoArgs) -> ExitCode {
    let created = match make_sandbox(args.dir) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("kubesafe: error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let _ = SANDBOX.set(created.display().to_string());
    let layout = Layout::new(created);
    let keep = args.keep;
    if args.serve {
        return serve(&layout, keep);
    }
    let shared: Arc<Mutex<Option<SimNode>>> = Arc::new(Mutex::new(None));

    // Ctrl-C (or SIGTERM/SIGHUP): stop the simulator's processes, remove the sandbox
    // unless --keep, and exit. The simulated servers also die with this process
    // (PR_SET_PDEATHSIG) whatever happens.
    let interrupted = Arc::new(AtomicBool::new(false));
    let handle = {
        use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
        let shared = Arc::clone(&shared);
        let root = layout.root.clone();
        let interrupted = Arc::clone(&interrupted);
        match signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP]) {
            Ok(mut signals) => {
                let handle = signals.handle();
                std::thread::spawn(move || {
                    if signals.forever().next().is_some() {
                        interrupted.store(true, Ordering::SeqCst);
                        eprintln!("\nkubesafe: interrupted: stopping the simulated node");
                        if let Some(node) = shared.lock().ok().and_then(|mut s| s.take()) {
                            node.stop();
                        }
                        if !keep {
                            let _ = std::fs::remove_dir_all(&root);
                        }
                        std::process::exit(130);
                    }
                });
                Some(handle)
            }
            Err(_) => None,
        }
    };

    let mut steps = Vec::new();
    // The demo reports every step itself; the libraries' own warnings (a gate failing,
    // a rollback) would repeat them. Shown with -v or RUST_LOG.
    let result = if tracing::level_filters::LevelFilter::current()
        > tracing::level_filters::LevelFilter::WARN
    {
        demo(&layout, &shared, &mut steps)
    } else {
        tracing::subscriber::with_default(tracing::subscriber::NoSubscriber::default(), || {
            demo(&layout, &shared, &mut steps)
        })
    };
    if interrupted.load(Ordering::SeqCst) {
        // The signal handler is cleaning up and exits with status 130; whatever the
        // demo saw once its node was stopped is moot.
        loop {
            std::thread::park();
        }
    }
    let node = shared.lock().ok().and_then(|mut s| s.take());
    if let Some(node) = node {
        node.stop();
    }
    if let Some(h) = handle {
        h.close();
    }
    print_summary(&steps, &layout, keep);
    if keep {
        println!("\nsandbox kept: {}", layout.root.display());
    } else if let Err(e) = std::fs::remove_dir_all(&layout.root) {
        eprintln!(
            "kubesafe: warning: could not remove the sandbox {}: {e}",
            layout.root.display()
        );
    }
    match result {
        Ok(true) => {
            println!("\nAll three steps ended as they should: applied, rolled back, audited.");
            ExitCode::SUCCESS
        }
        Ok(false) => {
            eprintln!("kubesafe: error: the demo did not end as expected (see above)");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("kubesafe: error: {}", e.replace(['\n', '\r'], " "));
            ExitCode::FAILURE
        }
    }
}
