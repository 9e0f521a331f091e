//! `kubesafe edit FILE <action>`: lossless, atomic, locked edits of a static-pod manifest
//! or kubelet config (crate `kubesafe-manifest-edit`).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use kubesafe_manifest_edit::{
    Backup, Edit, FileOptions, HostPathMount, KeyPath, ManifestFile, Op, Report, ScalarValue,
};

/// Edit a static-pod manifest or kubelet config without damaging it.
///
/// Only the bytes that must change are touched (comments, blank lines, quoting, CRLF and
/// a missing final newline are kept). The write is locked, atomic (hidden temp file,
/// fsync, rename) and backed up outside the manifest directory. Options may come before
/// or after the action: `kubesafe edit FILE --dry-run set --profiling false`.
#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  \
    kubesafe edit /etc/kubernetes/manifests/kube-apiserver.yaml --dry-run set --profiling false\n  \
    kubesafe edit kube-apiserver.yaml list-add --enable-admission-plugins AlwaysPullImages\n  \
    kubesafe edit /var/lib/kubelet/config.yaml set-path authentication.anonymous.enabled false")]
pub(crate) struct EditArgs {
    /// The manifest (e.g. /etc/kubernetes/manifests/kube-apiserver.yaml) or kubelet config.
    file: PathBuf,

    #[command(flatten)]
    options: EditOptions,

    #[command(subcommand)]
    action: Action,
}

#[derive(Debug, Args)]
struct EditOptions {
    /// Container whose flags or mounts to edit (default: the one running the component's
    /// binary, e.g. kube-apiserver, or the only container).
    #[arg(long, global = true, value_name = "NAME")]
    container: Option<String>,

    /// Directory for backups (default: kubesafe-backups/ beside the manifest directory,
    /// e.g. /etc/kubernetes/kubesafe-backups/). Must not be the manifest directory.
    #[arg(long, global = true, value_name = "DIR", conflicts_with = "no_backup")]
    backup_dir: Option<PathBuf>,

    /// Do not write a backup.
    #[arg(long, global = true)]
    no_backup: bool,

    /// Print the unified diff; do not write anything.
    #[arg(long, global = true)]
    dry_run: bool,

    /// Print the report (or the flag for `get`) as JSON on stdout.
    #[arg(long, global = true)]
    json: bool,

    /// Edit the target of FILE when FILE is a symbolic link (refused by default).
    #[arg(long, global = true)]
    allow_symlink: bool,

    /// Refuse unless the file's current SHA-256 is this (as printed by a dry run with
    /// --json): the file must still be what you reviewed.
    #[arg(long, global = true, value_name = "SHA256")]
    expect_sha256: Option<String>,
}

#[derive(Debug, Subcommand)]
enum Action {
    /// Set a flag: `set --profiling false` or `set --profiling=false`. Replaces the
    /// value or appends `--flag=value`.
    Set {
        /// The flag, e.g. `--profiling` (or `--profiling=false` without VALUE).
        #[arg(allow_hyphen_values = true)]
        flag: String,
        /// The value.
        #[arg(allow_hyphen_values = true)]
        value: Option<String>,
    },
    /// Remove a flag (and its value when written as a separate item).
    Remove {
        /// The flag, e.g. `--insecure-port`.
        #[arg(allow_hyphen_values = true)]
        flag: String,
    },
    /// Print a flag's value (exit status 1 when the flag is not set).
    Get {
        /// The flag.
        #[arg(allow_hyphen_values = true)]
        flag: String,
    },
    /// Add an item to a comma-separated flag value (no duplicates, order kept).
    ListAdd {
        /// The flag, e.g. `--enable-admission-plugins`.
        #[arg(allow_hyphen_values = true)]
        flag: String,
        /// The item, e.g. `AlwaysPullImages` or `RotateKubeletServerCertificate=true`.
        #[arg(allow_hyphen_values = true)]
        item: String,
    },
    /// Remove an item (compared by the part before `=`) from a comma-separated flag value.
    ListRemove {
        /// The flag.
        #[arg(allow_hyphen_values = true)]
        flag: String,
        /// The item.
        #[arg(allow_hyphen_values = true)]
        item: String,
    },
    /// Set a scalar at a dotted key path of a mapping document (KubeletConfiguration),
    /// creating missing parents: `set-path authentication.anonymous.enabled false`.
    /// `true`/`false` are written as booleans and integers as integers unless --string.
    SetPath {
        /// The key path; `\.` or a "quoted" segment for keys with dots.
        path: String,
        /// The value.
        #[arg(allow_hyphen_values = true)]
        value: String,
        /// Write VALUE as a string even if it looks like a boolean or a number.
        #[arg(long)]
        string: bool,
    },
    /// Make sure a hostPath volume and the container's mount of it exist (e.g. for
    /// --audit-policy-file or --audit-log-path).
    Mount {
        /// Volume name (used when the volume has to be created).
        name: String,
        /// Path on the node.
        host_path: String,
        /// Path in the container.
        mount_path: String,
        /// hostPath type, e.g. File or DirectoryOrCreate.
        #[arg(long = "type", value_name = "TYPE")]
        path_type: Option<String>,
        /// Mount read-only.
        #[arg(long)]
        read_only: bool,
    },
}

fn fail(message: impl std::fmt::Display) -> ExitCode {
    let mut one_line = message.to_string().replace(['\n', '\r'], " ");
    if one_line.contains("is a symbolic link to") {
        one_line.push_str(" (--allow-symlink)");
    }
    eprintln!("kubesafe: error: {one_line}");
    ExitCode::FAILURE
}

fn to_op(action: Action) -> Result<Op, String> {
    Ok(match action {
        Action::Set { flag, value } => {
            let (flag, value) = match value {
                Some(v) => (flag, v),
                None => match flag.split_once('=') {
                    Some((f, v)) => (f.to_owned(), v.to_owned()),
                    None => {
                        return Err(format!(
                            "`set {flag}` needs a value: `set {flag} VALUE` or `set {flag}=VALUE`"
                        ));
                    }
                },
            };
            Op::SetFlag { flag, value }
        }
        Action::Remove { flag } => Op::RemoveFlag { flag },
        Action::ListAdd { flag, item } => Op::ListAdd { flag, item },
        Action::ListRemove { flag, item } => Op::ListRemove { flag, item },
        Action::SetPath {
            path,
            value,
            string,
        } => Op::SetPath {
            path: path.parse::<KeyPath>().map_err(|e| e.to_string())?,
            value: if string {
                ScalarValue::Str(value)
            } else {
                ScalarValue::infer(&value)
            },
        },
        Action::Mount {
            name,
            host_path,
            mount_path,
            path_type,
            read_only,
        } => {
            let mut m = HostPathMount::new(name, host_path, mount_path).read_only(read_only);
            if let Some(t) = path_type {
                m = m.path_type(t);
            }
            Op::EnsureHostPathMount(m)
        }
        Action::Get { .. } => return Err("internal: get is not an edit".to_owned()),
    })
}

fn summary(report: &Report) -> String {
    if !report.changed {
        return format!(
            "{}: no change (already as requested)",
            report.path.display()
        );
    }
    let restart = match (report.data_changed, report.kind.as_deref()) {
        (true, Some("Pod")) => "the kubelet will restart the static pod",
        (true, Some("KubeletConfiguration")) => {
            "takes effect when the kubelet restarts (systemctl restart kubelet)"
        }
        (true, _) => "the decoded content changed",
        (false, _) => "comments/whitespace only: nothing will restart",
    };
    let head = if report.written {
        format!("{}: written", report.path.display())
    } else {
        format!("{}: dry run, nothing written", report.path.display())
    };
    let backup = report
        .backup
        .as_ref()
        .map(|b| format!("; backup {}", b.display()))
        .unwrap_or_default();
    format!(
        "{head} ({} line(s) changed, sha256 {} -> {}{backup}); {restart}",
        report.changes.len(),
        report.before_sha256.get(..12).unwrap_or_default(),
        report.after_sha256.get(..12).unwrap_or_default(),
    )
}

/// Runs `kubesafe edit`.
pub(crate) fn run(args: EditArgs) -> ExitCode {
    let EditArgs {
        file,
        options,
        action,
    } = args;
    let backup = match (&options.backup_dir, options.no_backup) {
        (_, true) => Backup::Disabled,
        (Some(dir), false) => Backup::Dir(dir.clone()),
        (None, false) => Backup::Sibling,
    };
    let file_options = FileOptions::new()
        .backup(backup)
        .allow_symlink(options.allow_symlink);
    let manifest_file = match ManifestFile::open(&file, file_options) {
        Ok(f) => f,
        Err(e) => return fail(e),
    };

    if let Action::Get { flag } = &action {
        let manifest = match manifest_file.read() {
            Ok(m) => m,
            Err(e) => return fail(e),
        };
        return match manifest.get_flag(options.container.as_deref(), flag) {
            Ok(Some(v)) => {
                if options.json {
                    println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
                } else {
                    println!("{}", v.value.unwrap_or_default());
                }
                ExitCode::SUCCESS
            }
            Ok(None) => {
                let container = manifest
                    .default_container()
                    .ok()
                    .filter(|_| options.container.is_none())
                    .or(options.container.clone())
                    .unwrap_or_default();
                fail(format!(
                    "{}: `{flag}` is not set in container `{container}`",
                    file.display()
                ))
            }
            Err(e) => fail(e),
        };
    }

    let op = match to_op(action) {
        Ok(op) => op,
        Err(e) => return fail(e),
    };
    let mut edit = Edit::new().op(op);
    if let Some(c) = options.container {
        edit = edit.container(c);
    }
    let result = match (&options.expect_sha256, options.dry_run) {
        (Some(expected), true) => manifest_file.sha256().and_then(|sha| {
            if sha.eq_ignore_ascii_case(expected) {
                manifest_file.dry_run(&edit)
            } else {
                Err(kubesafe_manifest_edit::Error::Changed {
                    path: file.clone(),
                    expected: expected.clone(),
                    found: sha,
                })
            }
        }),
        (None, true) => manifest_file.dry_run(&edit),
        (Some(expected), false) => manifest_file.apply_if_unchanged(&edit, expected),
        (None, false) => manifest_file.apply(&edit),
    };
    let report = match result {
        Ok(r) => r,
        Err(e) => return fail(e),
    };
    if options.json {
        match serde_json::to_string_pretty(&report) {
            Ok(j) => println!("{j}"),
            Err(e) => return fail(e),
        }
    } else {
        print!("{}", report.diff);
        eprintln!("kubesafe: {}", summary(&report));
    }
    ExitCode::SUCCESS
}
