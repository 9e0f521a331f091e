//! `kubesafe guardrails`, `kubesafe pss` and `kubesafe rbac`: the
//! `kubesafe-guardrails` crate on the command line.
//!
//! Exit codes: 0 success (all documents allowed / nothing left unfixed),
//! 1 a document is denied (`pss check`) or has unfixable violations
//! (`pss harden`), 2 bad input (unreadable file, malformed YAML, invalid
//! config, level, version or action).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Subcommand, ValueEnum};
use kubesafe_guardrails::netpol::{GuardrailsConfig, generate};
use kubesafe_guardrails::pss::{
    CheckError, HardenOptions, Level, PolicyVersion, Violation, check, harden, object_identity,
};
use kubesafe_guardrails::rbac::{Action, generate_rbac};
use kubesafe_guardrails::yaml;
use serde::Serialize;
use serde_json::Value;

/// NetworkPolicy and Pod Security namespace-label bundles.
#[derive(Debug, Args)]
pub(crate) struct GuardrailsArgs {
    #[command(subcommand)]
    command: GuardrailsCommand,
}

#[derive(Debug, Subcommand)]
enum GuardrailsCommand {
    /// Print the Namespaces and NetworkPolicies of CONFIG as one multi-document YAML stream.
    Generate {
        /// The guardrails config (YAML); `-` reads stdin.
        config: PathBuf,
    },
}

/// Offline Pod Security admission: check and harden Pods and workloads.
#[derive(Debug, Args)]
pub(crate) struct PssArgs {
    #[command(subcommand)]
    command: PssCommand,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Format {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
enum PssCommand {
    /// Check every document of FILEs as the API server's Pod Security admission would.
    ///
    /// Exit 0 when all are allowed, 1 when any is denied, 2 on bad input.
    /// Documents that carry no pod (Services, ConfigMaps...) are reported as
    /// allowed: Pod Security does not apply to them.
    Check {
        /// Level: privileged, baseline or restricted.
        #[arg(long)]
        level: String,
        /// Policy version: v1.N or latest.
        #[arg(long)]
        version: String,
        /// Output format; json prints an array with one object per document:
        /// {file, kind, name, allowed, violations: [{check, message}]}.
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
        /// YAML files (multi-document allowed); `-` reads stdin.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Print FILE with the smallest changes that satisfy the level.
    ///
    /// Changes and what cannot be fixed automatically go to stderr. Exit 0
    /// when every document now passes, 1 when something is left unfixable,
    /// 2 on bad input.
    Harden {
        /// Level: baseline or restricted.
        #[arg(long)]
        level: String,
        /// Policy version to satisfy: v1.N or latest (default: the newest known, v1.37).
        #[arg(long)]
        version: Option<String>,
        /// UID set with runAsNonRoot when the pod sets none (default 65532).
        #[arg(long, conflicts_with = "keep_image_user")]
        run_as_user: Option<i64>,
        /// Do not set runAsUser; the image's USER must then be numeric and non-root.
        #[arg(long)]
        keep_image_user: bool,
        /// Also set readOnlyRootFilesystem, with emptyDir mounts at the writable paths.
        #[arg(long)]
        read_only_root: bool,
        /// A path that stays writable under --read-only-root (repeatable; default /tmp).
        #[arg(long = "writable-path", requires = "read_only_root")]
        writable_paths: Vec<String>,
        /// Egress proxy URL to export as HTTP(S)_PROXY in every container.
        #[arg(long)]
        proxy: Option<String>,
        /// Comma-separated NO_PROXY list used with --proxy.
        #[arg(long, requires = "proxy")]
        no_proxy: Option<String>,
        /// The YAML file (multi-document allowed); `-` reads stdin.
        file: PathBuf,
    },
}

/// Least-privilege RBAC from the actions a tool performs.
#[derive(Debug, Args)]
pub(crate) struct RbacArgs {
    /// Actions: restart-pod, scale, scale-statefulset, rollback, rollout-restart,
    /// rollout-status, read-logs, read-events, cordon, drain.
    #[arg(required = true)]
    actions: Vec<String>,
    /// ServiceAccount (and Role) name.
    #[arg(long, default_value = "kubesafe")]
    name: String,
    /// Namespace of the ServiceAccount and Role.
    #[arg(long, default_value = "kubesafe-system")]
    namespace: String,
}

fn fail(message: impl std::fmt::Display) -> ExitCode {
    eprintln!("kubesafe: error: {message}");
    ExitCode::from(2)
}

fn read_input(path: &Path) -> Result<String, String> {
    if path == Path::new("-") {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .map_err(|e| format!("stdin: {e}"))?;
        return Ok(s);
    }
    std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))
}

/// The documents of a YAML stream; `kind: List` (and `*List`) documents, as
/// `kubectl get -o yaml` prints them, are replaced by their items.
fn read_documents(path: &Path) -> Result<Vec<Value>, String> {
    let text = read_input(path)?;
    let docs = yaml::documents(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut out = Vec::with_capacity(docs.len());
    for doc in docs {
        let is_list = doc
            .get("kind")
            .and_then(Value::as_str)
            .is_some_and(|k| k.ends_with("List"));
        match doc.get("items") {
            Some(Value::Array(items)) if is_list => out.extend(items.iter().cloned()),
            _ => out.push(doc),
        }
    }
    Ok(out)
}

fn parse_level(s: &str) -> Result<Level, String> {
    s.parse().map_err(|e| format!("--level: {e}"))
}

fn parse_version(s: &str) -> Result<PolicyVersion, String> {
    s.parse().map_err(|e| format!("--version: {e}"))
}

fn describe(doc: &Value) -> String {
    let (kind, _, name) = object_identity(doc);
    match (kind.is_empty(), name.is_empty()) {
        (true, _) => "(no kind)".to_string(),
        (false, true) => kind,
        (false, false) => format!("{kind}/{name}"),
    }
}

/// `kubesafe guardrails ...`
pub(crate) fn run_guardrails(args: GuardrailsArgs) -> ExitCode {
    match args.command {
        GuardrailsCommand::Generate { config } => {
            let text = match read_input(&config) {
                Ok(t) => t,
                Err(e) => return fail(e),
            };
            let out = GuardrailsConfig::from_yaml(&text)
                .and_then(|c| generate(&c))
                .map_err(|e| format!("{}: {e}", config.display()))
                .and_then(|b| b.to_yaml().map_err(|e| e.to_string()));
            match out {
                Ok(yaml) => {
                    print!("{yaml}");
                    ExitCode::SUCCESS
                }
                Err(e) => fail(e),
            }
        }
    }
}

/// `kubesafe pss ...`
pub(crate) fn run_pss(args: PssArgs) -> ExitCode {
    match args.command {
        PssCommand::Check {
            level,
            version,
            format,
            files,
        } => run_check(&level, &version, format, &files),
        PssCommand::Harden {
            level,
            version,
            run_as_user,
            keep_image_user,
            read_only_root,
            writable_paths,
            proxy,
            no_proxy,
            file,
        } => {
            let mut opts = HardenOptions::default();
            if let Some(v) = version {
                match parse_version(&v) {
                    Ok(v) => opts.version = v,
                    Err(e) => return fail(e),
                }
            }
            if keep_image_user {
                opts.run_as_user = None;
            } else if let Some(uid) = run_as_user {
                opts.run_as_user = Some(uid);
            }
            opts.read_only_root_filesystem = read_only_root;
            if !writable_paths.is_empty() {
                opts.writable_paths = writable_paths;
            }
            opts.proxy_url = proxy;
            if let Some(np) = no_proxy {
                opts.no_proxy = np
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect();
            }
            run_harden(&level, &opts, &file)
        }
    }
}

/// One `--format json` entry (field order as documented).
#[derive(Serialize)]
struct JsonReport<'a> {
    file: &'a str,
    kind: &'a str,
    name: &'a str,
    allowed: bool,
    violations: Vec<JsonViolation>,
}

#[derive(Serialize)]
struct JsonViolation {
    check: &'static str,
    message: String,
}

struct Checked {
    file: String,
    kind: String,
    name: String,
    /// `None`: not a workload.
    violations: Option<Vec<Violation>>,
}

fn run_check(level: &str, version: &str, format: Format, files: &[PathBuf]) -> ExitCode {
    let level = match parse_level(level) {
        Ok(l) => l,
        Err(e) => return fail(e),
    };
    let version = match parse_version(version) {
        Ok(v) => v,
        Err(e) => return fail(e),
    };
    // Check everything first: bad input anywhere prints nothing but the error.
    let mut results = Vec::new();
    for file in files {
        let docs = match read_documents(file) {
            Ok(d) => d,
            Err(e) => return fail(e),
        };
        for (i, doc) in docs.iter().enumerate() {
            let (kind, _, name) = object_identity(doc);
            let violations = match check(doc, level, version) {
                Ok(v) => Some(v),
                Err(CheckError::NotAWorkload { .. }) => None,
                Err(e) => {
                    return fail(format!(
                        "{} document {} ({}): {e}",
                        file.display(),
                        i + 1,
                        describe(doc)
                    ));
                }
            };
            results.push(Checked {
                file: file.display().to_string(),
                kind,
                name,
                violations,
            });
        }
    }
    let denied = results
        .iter()
        .any(|r| r.violations.as_ref().is_some_and(|v| !v.is_empty()));
    match format {
        Format::Json => {
            let out: Vec<JsonReport<'_>> = results
                .iter()
                .map(|r| {
                    let violations = r.violations.as_deref().unwrap_or_default();
                    JsonReport {
                        file: &r.file,
                        kind: &r.kind,
                        name: &r.name,
                        allowed: violations.is_empty(),
                        violations: violations
                            .iter()
                            .map(|v| JsonViolation {
                                check: v.check,
                                message: v.message(),
                            })
                            .collect(),
                    }
                })
                .collect();
            match serde_json::to_string_pretty(&out) {
                Ok(s) => println!("{s}"),
                Err(e) => return fail(e),
            }
        }
        Format::Text => {
            let policy = format!("{level}:{version}");
            for r in &results {
                let what = if r.name.is_empty() {
                    r.kind.clone()
                } else {
                    format!("{}/{}", r.kind, r.name)
                };
                match &r.violations {
                    None => println!(
                        "{}: {what}: not a workload, Pod Security does not apply",
                        r.file
                    ),
                    Some(v) if v.is_empty() => println!("{}: {what}: allowed by {policy}", r.file),
                    Some(v) => {
                        println!("{}: {what}: violates PodSecurity \"{policy}\"", r.file);
                        for violation in v {
                            println!("  {}: {}", violation.check, violation.message());
                        }
                    }
                }
            }
        }
    }
    if denied {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

fn run_harden(level: &str, opts: &HardenOptions, file: &Path) -> ExitCode {
    let level = match parse_level(level) {
        Ok(l) => l,
        Err(e) => return fail(e),
    };
    let docs = match read_documents(file) {
        Ok(d) => d,
        Err(e) => return fail(e),
    };
    let mut out = Vec::new();
    let mut notes = Vec::new();
    let mut unfixable = false;
    for (i, doc) in docs.iter().enumerate() {
        let what = format!("{} document {} ({})", file.display(), i + 1, describe(doc));
        match harden(doc, level, opts) {
            Ok(h) => {
                for c in &h.changes {
                    notes.push(format!("changed: {what}: {} = {}", c.path, c.description));
                }
                for u in &h.unfixable {
                    unfixable = true;
                    notes.push(format!("unfixable: {what}: {}: {}", u.check, u.message));
                }
                match yaml::to_string(&h.object) {
                    Ok(y) => out.push(y),
                    Err(e) => return fail(format!("{what}: {e}")),
                }
            }
            Err(CheckError::NotAWorkload { .. }) => match yaml::to_string(doc) {
                Ok(y) => out.push(y),
                Err(e) => return fail(format!("{what}: {e}")),
            },
            Err(e) => return fail(format!("{what}: {e}")),
        }
    }
    print!("{}", yaml::join_documents(&out));
    for n in notes {
        eprintln!("{n}");
    }
    if unfixable {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

/// `kubesafe rbac ...`
pub(crate) fn run_rbac(args: RbacArgs) -> ExitCode {
    let mut actions = Vec::new();
    for a in &args.actions {
        match a.parse::<Action>() {
            Ok(a) => actions.push(a),
            Err(e) => return fail(e),
        }
    }
    match generate_rbac(&args.name, &args.namespace, &actions).map_err(|e| e.to_string()) {
        Ok(bundle) => match bundle.to_yaml() {
            Ok(y) => {
                print!("{y}");
                ExitCode::SUCCESS
            }
            Err(e) => fail(e),
        },
        Err(e) => fail(e),
    }
}
