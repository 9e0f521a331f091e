//! A lossless `kubesafe-manifest-edit` edit of a static-pod manifest (or a
//! kubelet config) as a gated [`Change`] (feature `manifest-edit`).

use std::path::{Path, PathBuf};

use kubesafe_manifest_edit::{
    Edit, Error as EditError, FileOptions, LockedManifestFile, ManifestFile, sha256_hex,
    unified_diff,
};

use super::file_replace::{container_argv, decode, flag_diff};
use super::journal::Journal;
use super::{AppliedChange, Change, ChangePlan, RestartExpectation, RolledBackChange};
use crate::error::ChangeError;
use crate::witness::FlagExpectation;

/// A [`kubesafe_manifest_edit::Edit`] of a [`ManifestFile`], as a [`Change`]
/// a [`Transaction`](crate::Transaction) can gate and roll back.
///
/// * [`plan`](Change::plan) reads the file and makes the edit in memory
///   (nothing written). A restart is expected only when the **decoded**
///   document changes **and** it is a `Pod`: the kubelet restarts a static
///   pod only when the decoded pod changes, so a comment-, whitespace- or
///   quoting-only edit (or an edit that changes nothing) is
///   [`RestartExpectation::NotExpected`] and the gate does not wait for a
///   restart that cannot come. A `KubeletConfiguration` edit takes effect
///   only when the *kubelet itself* restarts, which kubesafe does not do: the
///   plan says so, and the gate only checks that the probe stays healthy.
///   For a pod, the flags whose effective value the edit changes in the
///   edited container become the plan's flag expectations: the new values
///   after the change, the old values (or absent) after a rollback, so a
///   [`ProcessWitness`](crate::witness::ProcessWitness) proves the restarted
///   process really carries them.
/// * [`apply`](Change::apply) takes the manifest's lock (`.NAME.lock` beside
///   it, the one lock file of every kubesafe writer, waiting up to
///   [`FileOptions::lock_timeout`]) and writes with
///   [`LockedManifestFile::apply_if_unchanged`] against the SHA-256 read at
///   plan time: if anyone changed the file since, nothing is written and the
///   transaction ends [`Failed`](crate::Outcome::Failed). The old content is
///   backed up outside the manifest directory (default
///   `/etc/kubernetes/kubesafe-backups/NAME.TIMESTAMP.SHA256PREFIX`), and
///   [`AppliedChange::backup`] names it: the manual recovery path when even
///   the rollback fails.
/// * [`rollback`](Change::rollback) puts the original bytes back with
///   [`LockedManifestFile::restore`], only if the file still holds exactly
///   what the change wrote (someone else's later edit is never overwritten:
///   [`ChangeError::ConcurrentModification`]), keeping the rejected bytes as
///   `NAME.TIMESTAMP.SHA256PREFIX.replaced` in the backup directory, outside
///   the manifest directory where the kubelet would load them. When that copy
///   cannot be written (full or missing backup directory), the original is
///   restored anyway and no rejected copy is reported.
///
/// # Locking
///
/// The lock is taken at [`apply`](Change::apply) and held until this value
/// is dropped — through the gate, the rollback and the rollback's gate, that
/// is for the whole [`Transaction::run`](crate::Transaction::run). While a
/// change is being judged, no other kubesafe writer (a second `kubesafe
/// remediate`, `kubesafe edit`, a [`FileReplace`](crate::FileReplace)) can
/// write the manifest: otherwise the gate could pass or fail someone else's
/// change, and the rollback would refuse to overwrite the other writer's
/// content and end in `RollbackFailed`. Those writers wait up to their lock
/// timeout and fail cleanly with nothing changed. Writers that do not use the
/// lock (an editor, `kubeadm`) are not excluded; the SHA-256 checks at apply
/// and rollback catch them. A process that dies releases the lock with its
/// file descriptors: no stale lock is left behind.
///
/// Backups must be enabled ([`Backup::Disabled`](kubesafe_manifest_edit::Backup)
/// is refused at plan time): the backup is the recovery path of a failed
/// rollback, and the rejected content is kept in the backup directory.
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use kubesafe_health_gate::probe::FnProbe;
/// use kubesafe_health_gate::{GatePolicy, ManifestChange, Transaction};
/// use kubesafe_manifest_edit::Edit;
///
/// let dir = tempfile::tempdir()?;
/// std::fs::create_dir(dir.path().join("manifests"))?;
/// let path = dir.path().join("manifests/kube-apiserver.yaml");
/// std::fs::write(&path, "apiVersion: v1\nkind: Pod\nspec:\n  containers:\n  - name: kube-apiserver\n    command:\n    - kube-apiserver\n    - --profiling=true # CIS 1.2.18\n")?;
///
/// let mut change = ManifestChange::open(&path, Edit::new().set_flag("--profiling", "false"))?;
/// let outcome = Transaction::new(change, FnProbe::from_result("healthy", || Ok(())))
///     // No kubelet watches this directory: do not wait for a restart.
///     .policy(GatePolicy::default().require_restart_witness(false).settle(Duration::ZERO, 1))
///     .run();
/// assert!(outcome.is_applied(), "{outcome}");
/// assert!(std::fs::read_to_string(&path)?.contains("--profiling=false # CIS 1.2.18"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[must_use]
pub struct ManifestChange {
    file: ManifestFile,
    edit: Edit,
    description: Option<String>,
    planned: Option<Planned>,
    held: Option<LockedManifestFile>,
    journal: Option<Journal>,
    written: Option<Written>,
    rolled_back: bool,
}

impl Drop for ManifestChange {
    fn drop(&mut self) {
        // The transaction's verdict is in: the marker goes, then the lock.
        if let Some(j) = self.journal.take() {
            j.finish();
        }
    }
}

/// `.NAME.kubesafe-transaction` beside the lock file `.NAME.lock`.
fn marker_beside(lock: &Path) -> PathBuf {
    let name = lock
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let stem = name.strip_suffix(".lock").unwrap_or(&name);
    lock.with_file_name(format!("{stem}.kubesafe-transaction"))
}

#[derive(Clone)]
struct Planned {
    original: Vec<u8>,
    original_sha256: String,
    new_sha256: String,
    diff: String,
}

#[derive(Debug, Clone)]
struct Written {
    /// SHA-256 of the content now in place (ours).
    sha256: String,
    /// Whether anything was written (false when the edit changed nothing).
    wrote: bool,
    backup: Option<PathBuf>,
}

impl std::fmt::Debug for ManifestChange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ManifestChange")
            .field("path", &self.file.path())
            .field("edit", &self.edit)
            .field(
                "original_sha256",
                &self.planned.as_ref().map(|p| &p.original_sha256),
            )
            .field("new_sha256", &self.planned.as_ref().map(|p| &p.new_sha256))
            .field("locked", &self.held.is_some())
            .field("written", &self.written)
            .field("rolled_back", &self.rolled_back)
            .finish_non_exhaustive()
    }
}

impl ManifestChange {
    /// The change `edit` of `file`.
    pub fn new(file: ManifestFile, edit: Edit) -> Self {
        Self {
            file,
            edit,
            description: None,
            planned: None,
            held: None,
            journal: None,
            written: None,
            rolled_back: false,
        }
    }

    /// The change `edit` of the manifest at `path`, with the default
    /// [`FileOptions`] (backups in `kubesafe-backups/` beside the manifest
    /// directory, no symbolic links, 30 s lock timeout).
    ///
    /// # Errors
    /// [`ChangeError::Edit`] when `path` is missing, not a regular file or a
    /// symbolic link.
    pub fn open(path: impl AsRef<Path>, edit: Edit) -> Result<Self, ChangeError> {
        let path = path.as_ref();
        let file =
            ManifestFile::open(path, FileOptions::default()).map_err(|e| edit_error(path, e))?;
        Ok(Self::new(file, edit))
    }

    /// Sets the one-line description used in events (default: the
    /// operations and the file, e.g. `set --profiling=false in
    /// /etc/kubernetes/manifests/kube-apiserver.yaml`).
    pub fn describe(mut self, description: impl Into<String>) -> Self {
        self.description = Some(description.into());
        self
    }

    /// The file.
    #[must_use]
    pub fn file(&self) -> &ManifestFile {
        &self.file
    }

    /// The edit.
    #[must_use]
    pub fn edit(&self) -> &Edit {
        &self.edit
    }

    /// The unified diff of the planned edit (empty when it changes
    /// nothing), once planned.
    #[must_use]
    pub fn diff(&self) -> Option<&str> {
        self.planned.as_ref().map(|p| p.diff.as_str())
    }

    /// SHA-256 (hex) of the content read at plan time.
    #[must_use]
    pub fn original_sha256(&self) -> Option<&str> {
        self.planned.as_ref().map(|p| p.original_sha256.as_str())
    }

    /// SHA-256 (hex) of the content the change writes.
    #[must_use]
    pub fn new_sha256(&self) -> Option<&str> {
        self.planned.as_ref().map(|p| p.new_sha256.as_str())
    }

    /// The in-progress marker of transactions on `file`
    /// (`.NAME.kubesafe-transaction` beside its lock file): present while a
    /// change is judged, and left behind by a process killed before the
    /// verdict (see [`ChangeError::Unfinished`]).
    #[must_use]
    pub fn transaction_marker(file: &ManifestFile) -> PathBuf {
        marker_beside(&file.lock_path())
    }

    /// Where the content from before the change was backed up, once applied.
    #[must_use]
    pub fn backup_path(&self) -> Option<&Path> {
        self.written.as_ref().and_then(|w| w.backup.as_deref())
    }

    fn path(&self) -> PathBuf {
        self.file.path().to_owned()
    }

    fn flag_expectations(
        &self,
        original: &[u8],
        new: &[u8],
        container: Option<&str>,
    ) -> (Vec<FlagExpectation>, Vec<FlagExpectation>) {
        let (Ok(old), Ok(new)) = (decode(original), decode(new)) else {
            return (Vec::new(), Vec::new());
        };
        match (
            container_argv(&old, container),
            container_argv(&new, container),
        ) {
            (Some(o), Some(n)) => flag_diff(&o, &n),
            _ => (Vec::new(), Vec::new()),
        }
    }
}

/// Whether the kubelet will restart anything because of the edit.
fn restart_expectation(
    changed: bool,
    data_changed: bool,
    kind: Option<&str>,
) -> RestartExpectation {
    let not = |reason: String| RestartExpectation::NotExpected { reason };
    if !changed {
        return not(
            "the manifest already is as requested: nothing is written and nothing \
                    restarts"
                .to_owned(),
        );
    }
    if !data_changed {
        return not(
            "only comments, whitespace or quoting change: the decoded pod is the same, so the \
             kubelet will not restart the static pod"
                .to_owned(),
        );
    }
    match kind {
        Some("Pod") => RestartExpectation::Expected {
            reason: "the decoded pod changes: the kubelet restarts the static pod".to_owned(),
        },
        Some("KubeletConfiguration") => not(
            "a KubeletConfiguration takes effect only when the kubelet itself restarts \
             (`systemctl restart kubelet`), which kubesafe does not do: the gate checks that the \
             probe stays healthy, not that the new setting is in effect"
                .to_owned(),
        ),
        Some(other) => not(format!(
            "a `{other}` document is not a static pod: nothing restarts because of this edit \
             (kubesafe restarts nothing itself)"
        )),
        None => not(
            "a document without `kind` is not a static pod: nothing restarts because of this \
             edit (kubesafe restarts nothing itself)"
                .to_owned(),
        ),
    }
}

/// Maps an editor error: a content-hash mismatch is a concurrent
/// modification, a lock timeout a held lock, the rest keeps the editor's
/// error (which names the file, line and column).
fn edit_error(path: &Path, e: EditError) -> ChangeError {
    match e {
        EditError::Changed { path, .. } => ChangeError::ConcurrentModification { path },
        EditError::LockTimeout { lock, .. } => ChangeError::Locked { path: lock },
        other => ChangeError::Edit {
            path: path.to_owned(),
            source: Box::new(other),
        },
    }
}

impl Change for ManifestChange {
    fn plan(&mut self) -> Result<ChangePlan, ChangeError> {
        let path = self.path();
        if self.written.is_some() {
            return Err(ChangeError::Invalid {
                path,
                reason: "already applied".to_owned(),
            });
        }
        if self
            .file
            .backup_dir()
            .map_err(|e| edit_error(&path, e))?
            .is_none()
        {
            return Err(ChangeError::Invalid {
                path,
                reason: "backups are disabled, but a gated change needs one: the backup is the \
                         way back if the rollback fails, and the rejected content is kept beside it"
                    .to_owned(),
            });
        }
        let current = self.file.read().map_err(|e| edit_error(&path, e))?;
        let applied = current
            .apply(&self.edit)
            .map_err(|e| edit_error(&path, e))?;
        let original = current.text().as_bytes();
        let new = applied.manifest.text().as_bytes();
        let kind = applied.manifest.kind().or_else(|| current.kind());
        let restart = restart_expectation(applied.changed, applied.data_changed, kind);
        let (apply_flags, rollback_flags) = if restart.is_expected() {
            let container = match &self.edit.container {
                Some(c) => Some(c.clone()),
                None => applied.manifest.default_container().ok(),
            };
            self.flag_expectations(original, new, container.as_deref())
        } else {
            (Vec::new(), Vec::new())
        };
        let description = self.description.clone().unwrap_or_else(|| {
            let ops: Vec<String> = self.edit.ops.iter().map(ToString::to_string).collect();
            let ops = if ops.is_empty() {
                "no operation".to_owned()
            } else {
                ops.join(", ")
            };
            let container = self
                .edit
                .container
                .as_ref()
                .map(|c| format!(" (container {c})"))
                .unwrap_or_default();
            format!("{ops} in {}{container}", path.display())
        });
        let name = path.display().to_string();
        let diff = unified_diff(
            name.trim_start_matches('/'),
            current.text(),
            applied.manifest.text(),
        );
        self.planned = Some(Planned {
            original: original.to_vec(),
            original_sha256: sha256_hex(original),
            new_sha256: sha256_hex(new),
            diff,
        });
        self.rolled_back = false;
        tracing::debug!(path = %path.display(), restart = ?restart, "manifest change planned");
        Ok(ChangePlan::new(description, restart)
            .with_target(path)
            .with_flags(apply_flags, rollback_flags))
    }

    fn apply(&mut self) -> Result<AppliedChange, ChangeError> {
        let path = self.path();
        let Some(planned) = self.planned.clone() else {
            return Err(ChangeError::NotPlanned);
        };
        if self.written.is_some() {
            return Err(ChangeError::Invalid {
                path,
                reason: "already applied".to_owned(),
            });
        }
        // A hold (and marker) left from an earlier apply/rollback round of
        // this change.
        if let Some(j) = self.journal.take() {
            j.finish();
        }
        self.held = None;
        let locked = self
            .file
            .lock_exclusive()
            .map_err(|e| edit_error(&path, e))?;
        let journal = Journal::begin(Self::transaction_marker(&self.file), &path)?;
        let report = match locked.apply_if_unchanged(&self.edit, &planned.original_sha256) {
            Ok(report) => report,
            Err(e @ (EditError::NotDurable { .. } | EditError::WrittenButUnverified { .. })) => {
                // The rename happened: the new content is (or may be) visible,
                // but the directory fsync failed or the re-read did not give
                // the bytes written. `apply` failing must mean "nothing
                // changed": put the original back under the same hold. The
                // restore only replaces what this change wrote (by hash), so
                // a foreign writer's content is never overwritten.
                let (problem, kind) = match &e {
                    EditError::NotDurable { source, .. } => (
                        format!("the directory could not be fsynced after the rename ({source})"),
                        source.kind(),
                    ),
                    other => (other.to_string(), std::io::ErrorKind::Other),
                };
                let undo = locked.restore(&planned.original, &planned.new_sha256, false);
                if undo.is_ok() {
                    journal.finish();
                }
                // Else the file may hold the new content: the marker stays.
                return Err(match undo {
                    Ok(_) => ChangeError::Write {
                        path,
                        source: std::io::Error::new(
                            kind,
                            format!("{problem}; the original content was put back"),
                        ),
                    },
                    Err(undo_err) => ChangeError::Other(format!(
                        "{}: written, but {problem}, and putting the original back failed too \
                         ({undo_err}); the file may hold the new content",
                        path.display()
                    )),
                });
            }
            Err(e) => {
                journal.finish();
                return Err(edit_error(&path, e));
            }
        };
        if report.written {
            if let Err(e) = journal.record_backup(report.backup.as_deref()) {
                tracing::warn!(path = %path.display(), error = %e,
                    "cannot record the backup in the transaction marker");
            }
            self.journal = Some(journal);
        } else {
            journal.finish();
        }
        if report.written && report.after_sha256 != planned.new_sha256 {
            // Cannot happen: the edit is deterministic and the content is the
            // one planned. Keep going with what is really there.
            tracing::warn!(path = %path.display(), planned = %planned.new_sha256,
                written = %report.after_sha256, "written content differs from the plan");
        }
        tracing::info!(path = %path.display(), backup = ?report.backup, written = report.written,
            "manifest change applied");
        self.written = Some(Written {
            sha256: report.after_sha256.clone(),
            wrote: report.written,
            backup: report.backup.clone(),
        });
        self.held = Some(locked);
        Ok(AppliedChange::new(report.backup))
    }

    fn rollback(&mut self) -> Result<RolledBackChange, ChangeError> {
        let path = self.path();
        let (Some(planned), Some(written)) = (self.planned.as_ref(), self.written.as_ref()) else {
            return Err(match self.planned {
                None => ChangeError::NotPlanned,
                Some(_) => ChangeError::Invalid {
                    path,
                    reason: "not applied, nothing to roll back".to_owned(),
                },
            });
        };
        if self.rolled_back {
            return Err(ChangeError::Invalid {
                path,
                reason: "already rolled back".to_owned(),
            });
        }
        if !written.wrote {
            self.rolled_back = true;
            return Ok(RolledBackChange::new(None));
        }
        if self.held.is_none() {
            self.held = Some(
                self.file
                    .lock_exclusive()
                    .map_err(|e| edit_error(&path, e))?,
            );
        }
        let Some(locked) = self.held.as_ref() else {
            return Err(ChangeError::Other("internal: lock not held".to_owned()));
        };
        // The original is in place but only the directory fsync failed: after
        // a power loss the rejected content could come back, so the transaction
        // marker stays (the next change of this file stops and names it).
        let mut not_durable = |source: &std::io::Error| {
            tracing::warn!(path = %path.display(), error = %source,
                "original restored, but the directory could not be fsynced; \
                 the transaction marker is kept");
            drop(self.journal.take());
        };
        let kept = match locked.restore(&planned.original, &written.sha256, true) {
            Ok(report) => report.kept,
            Err(EditError::NotDurable { source, .. }) => {
                not_durable(&source);
                None
            }
            // Someone else's content, a restore that did not read back, or one
            // renamed into place whose re-read failed (a retry would only fail
            // its hash check): nothing more to try.
            Err(
                e @ (EditError::Changed { .. }
                | EditError::VerifyFailed { .. }
                | EditError::WrittenButUnverified { .. }),
            ) => {
                return Err(edit_error(&path, e));
            }
            // Most likely the rejected copy could not be kept (full or
            // missing backup directory). Keeping it is for inspection; putting
            // back the configuration that worked must not depend on it.
            Err(first) => {
                tracing::warn!(path = %path.display(), error = %first,
                    "restore failed; retrying without keeping the rejected content");
                match locked.restore(&planned.original, &written.sha256, false) {
                    Ok(_) => None,
                    Err(EditError::NotDurable { source, .. }) => {
                        not_durable(&source);
                        None
                    }
                    Err(second) => {
                        return Err(ChangeError::Other(format!(
                            "{}: cannot restore the original content: {first}; retried without \
                             keeping the rejected content: {second}",
                            path.display()
                        )));
                    }
                }
            }
        };
        tracing::info!(path = %path.display(), kept = ?kept, "manifest restored");
        self.rolled_back = true;
        // The lock stays held until this change is dropped: the transaction
        // still gates the rollback.
        Ok(RolledBackChange::new(kept))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kubesafe_manifest_edit::Backup;
    use std::time::Duration;

    const POD: &str = "# kubeadm manifest\napiVersion: v1\nkind: Pod\nmetadata:\n  name: kube-apiserver\nspec:\n  containers:\n  - name: kube-apiserver\n    command:\n    - kube-apiserver\n    - --secure-port=6443\n    - --profiling=true   # CIS 1.2.18\n";

    const KUBELET: &str = "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\nauthentication:\n  anonymous:\n    enabled: true\n";

    fn node(text: &str, name: &str) -> (tempfile::TempDir, PathBuf) {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("manifests");
        std::fs::create_dir(&dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        (root, path)
    }

    #[test]
    fn plan_of_a_flag_edit_expects_a_restart_with_the_new_and_old_flags() {
        let (_root, path) = node(POD, "kube-apiserver.yaml");
        let mut c = ManifestChange::open(
            &path,
            Edit::new()
                .set_flag("--profiling", "false")
                .set_flag("--anonymous-auth", "false"),
        )
        .unwrap();
        let plan = c.plan().unwrap();
        assert!(plan.restart.is_expected(), "{plan:?}");
        assert_eq!(
            plan.apply_flags,
            vec![
                FlagExpectation::set("--anonymous-auth", "false"),
                FlagExpectation::set("--profiling", "false"),
            ]
        );
        assert_eq!(
            plan.rollback_flags,
            vec![
                FlagExpectation::absent("--anonymous-auth"),
                FlagExpectation::set("--profiling", "true"),
            ]
        );
        assert_eq!(
            plan.description,
            format!(
                "set --profiling=false, set --anonymous-auth=false in {}",
                path.display()
            )
        );
        let diff = c.diff().unwrap();
        assert!(
            diff.contains("+    - --profiling=false   # CIS 1.2.18\n"),
            "{diff}"
        );
        assert_eq!(c.original_sha256().unwrap(), sha256_hex(POD.as_bytes()));
        // Planning wrote nothing.
        assert_eq!(std::fs::read_to_string(&path).unwrap(), POD);
    }

    #[test]
    fn comment_only_and_no_op_edits_expect_no_restart() {
        let (_root, path) = node(POD, "kube-apiserver.yaml");
        // Already as requested: nothing to write.
        let mut c =
            ManifestChange::open(&path, Edit::new().set_flag("--profiling", "true")).unwrap();
        let plan = c.plan().unwrap();
        assert!(!plan.restart.is_expected());
        assert!(plan.restart.reason().contains("already"), "{plan:?}");
        assert_eq!(c.diff(), Some(""));
        // The editor leaves equal values untouched, so a comment-only change
        // takes rewriting the (last) flag: its comment goes, the pod stays.
        let mut c = ManifestChange::open(
            &path,
            Edit::new()
                .remove_flag("--profiling")
                .set_flag("--profiling", "true"),
        )
        .unwrap();
        let plan = c.plan().unwrap();
        assert!(!plan.restart.is_expected(), "{plan:?}");
        assert!(plan.restart.reason().contains("only comments"), "{plan:?}");
        assert!(plan.apply_flags.is_empty());
        assert!(
            c.diff()
                .unwrap()
                .contains("-    - --profiling=true   # CIS 1.2.18\n")
        );
    }

    #[test]
    fn kubelet_configuration_edit_says_the_kubelet_itself_must_restart() {
        let (_root, path) = node(KUBELET, "config.yaml");
        let mut c = ManifestChange::open(
            &path,
            Edit::new().set_path(
                "authentication.anonymous.enabled".parse().unwrap(),
                kubesafe_manifest_edit::ScalarValue::infer("false"),
            ),
        )
        .unwrap();
        let plan = c.plan().unwrap();
        assert!(!plan.restart.is_expected());
        assert!(
            plan.restart.reason().contains("systemctl restart kubelet"),
            "{}",
            plan.restart.reason()
        );
        assert!(plan.apply_flags.is_empty());
    }

    #[test]
    fn apply_and_rollback_keep_backup_and_rejected_copy_outside_the_manifest_dir() {
        let (root, path) = node(POD, "kube-apiserver.yaml");
        let mut c =
            ManifestChange::open(&path, Edit::new().set_flag("--profiling", "false")).unwrap();
        c.plan().unwrap();
        let applied = c.apply().unwrap();
        let backup = applied.backup.unwrap();
        assert!(backup.starts_with(root.path().join("kubesafe-backups")));
        assert_eq!(std::fs::read_to_string(&backup).unwrap(), POD);
        assert_eq!(c.backup_path(), Some(backup.as_path()));
        let new = std::fs::read(&path).unwrap();
        assert_eq!(sha256_hex(&new), c.new_sha256().unwrap());

        let rolled = c.rollback().unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), POD);
        let broken = rolled.broken_copy.unwrap();
        assert!(!broken.starts_with(path.parent().unwrap()), "{broken:?}");
        assert_eq!(std::fs::read(&broken).unwrap(), new);
        // The kubelet sees only the manifest (and the hidden lock file).
        let visible: Vec<String> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| !n.starts_with('.'))
            .collect();
        assert_eq!(visible, ["kube-apiserver.yaml"]);
        assert!(matches!(c.rollback(), Err(ChangeError::Invalid { .. })));
    }

    #[test]
    fn rollback_restores_the_original_even_when_the_rejected_copy_cannot_be_kept() {
        let (root, path) = node(POD, "kube-apiserver.yaml");
        let backups = root.path().join("backups");
        let file = ManifestFile::open(
            &path,
            FileOptions::default().backup(Backup::Dir(backups.clone())),
        )
        .unwrap();
        let mut c = ManifestChange::new(file, Edit::new().set_flag("--profiling", "false"));
        c.plan().unwrap();
        let backup = c.apply().unwrap().backup.unwrap();
        let kept = std::fs::read(&backup).unwrap();
        // The backup directory becomes unusable (a full disk behaves alike):
        // the rejected copy cannot be written there any more.
        std::fs::rename(&backups, root.path().join("moved-away")).unwrap();
        std::fs::write(&backups, "not a directory").unwrap();
        let rolled = c.rollback().unwrap();
        assert_eq!(rolled.broken_copy, None);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), POD);
        assert_eq!(kept, POD.as_bytes());
    }

    #[test]
    fn the_in_progress_marker_lives_from_apply_to_drop_and_blocks_after_a_kill() {
        let (_root, path) = node(POD, "kube-apiserver.yaml");
        let marker = path
            .parent()
            .unwrap()
            .join(".kube-apiserver.yaml.kubesafe-transaction");
        let mut c =
            ManifestChange::open(&path, Edit::new().set_flag("--profiling", "false")).unwrap();
        c.plan().unwrap();
        assert!(!marker.exists());
        let backup = c.apply().unwrap().backup.unwrap();
        let left = std::fs::read_to_string(&marker).unwrap();
        assert!(left.contains(&backup.display().to_string()), "{left}");
        c.rollback().unwrap();
        assert!(marker.exists(), "the rollback is still being judged");
        drop(c);
        assert!(!marker.exists());

        // What a killed transaction leaves: the next change writes nothing.
        std::fs::write(&marker, &left).unwrap();
        let mut c =
            ManifestChange::open(&path, Edit::new().set_flag("--profiling", "false")).unwrap();
        c.plan().unwrap();
        let err = c.apply().unwrap_err();
        assert!(matches!(err, ChangeError::Unfinished { .. }), "{err}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), POD);
        drop(c);
        assert!(marker.exists());
    }

    #[test]
    fn concurrent_modification_between_plan_and_apply_changes_nothing() {
        let (root, path) = node(POD, "kube-apiserver.yaml");
        let mut c =
            ManifestChange::open(&path, Edit::new().set_flag("--profiling", "false")).unwrap();
        c.plan().unwrap();
        let theirs = POD.replace("6443", "6444");
        std::fs::write(&path, &theirs).unwrap();
        let err = c.apply().unwrap_err();
        assert!(
            matches!(err, ChangeError::ConcurrentModification { .. }),
            "{err}"
        );
        assert_eq!(std::fs::read_to_string(&path).unwrap(), theirs);
        assert!(!root.path().join("kubesafe-backups").exists());
    }

    #[test]
    fn rollback_never_overwrites_a_later_edit() {
        let (_root, path) = node(POD, "kube-apiserver.yaml");
        let mut c =
            ManifestChange::open(&path, Edit::new().set_flag("--profiling", "false")).unwrap();
        c.plan().unwrap();
        c.apply().unwrap();
        std::fs::write(&path, "someone else\n").unwrap();
        let err = c.rollback().unwrap_err();
        assert!(
            matches!(err, ChangeError::ConcurrentModification { .. }),
            "{err}"
        );
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "someone else\n");
    }

    #[test]
    fn one_lock_for_every_kubesafe_writer_held_from_apply_until_drop() {
        let (_root, path) = node(POD, "kube-apiserver.yaml");
        let mut c =
            ManifestChange::open(&path, Edit::new().set_flag("--profiling", "false")).unwrap();
        c.plan().unwrap();
        c.apply().unwrap();
        // A plain `ManifestFile` writer (`kubesafe edit`) waits, then gives up.
        let editor = ManifestFile::open(
            &path,
            FileOptions::default().lock_timeout(Duration::from_millis(50)),
        )
        .unwrap();
        let err = editor
            .apply(&Edit::new().set_flag("--secure-port", "1"))
            .unwrap_err();
        assert!(matches!(err, EditError::LockTimeout { .. }), "{err}");
        // A `FileReplace` on the same file is locked out too.
        let mut replace = crate::FileReplace::new(&path, "kind: Pod\n");
        replace.plan().unwrap();
        assert!(matches!(replace.apply(), Err(ChangeError::Locked { .. })));
        // Still held after the rollback (the transaction gates it)...
        c.rollback().unwrap();
        assert!(matches!(
            editor.apply(&Edit::new().set_flag("--secure-port", "1")),
            Err(EditError::LockTimeout { .. })
        ));
        // ... and released when the change is dropped.
        drop(c);
        editor
            .apply(&Edit::new().set_flag("--secure-port", "1"))
            .unwrap();

        // And the other way round: a FileReplace's hold keeps a ManifestChange out.
        let mut replace = crate::FileReplace::new(&path, POD);
        replace.plan().unwrap();
        replace.apply().unwrap();
        let file = ManifestFile::open(
            &path,
            FileOptions::default().lock_timeout(Duration::from_millis(50)),
        )
        .unwrap();
        let mut c = ManifestChange::new(file, Edit::new().set_flag("--profiling", "false"));
        c.plan().unwrap();
        assert!(matches!(c.apply(), Err(ChangeError::Locked { .. })));
        assert_eq!(std::fs::read_to_string(&path).unwrap(), POD);
    }

    #[test]
    fn disabled_backups_and_bad_edits_fail_at_plan_naming_the_file() {
        let (_root, path) = node(POD, "kube-apiserver.yaml");
        let file =
            ManifestFile::open(&path, FileOptions::default().backup(Backup::Disabled)).unwrap();
        let mut c = ManifestChange::new(file, Edit::new().set_flag("--profiling", "false"));
        let err = c.plan().unwrap_err();
        assert!(err.to_string().contains("backups are disabled"), "{err}");

        let mut c = ManifestChange::open(
            &path,
            Edit::new()
                .container("etcd")
                .set_flag("--profiling", "false"),
        )
        .unwrap();
        let err = c.plan().unwrap_err();
        assert!(matches!(err, ChangeError::Edit { .. }), "{err}");
        assert!(err.to_string().contains("kube-apiserver.yaml"), "{err}");
        assert!(err.to_string().contains("etcd"), "{err}");
        assert!(matches!(c.apply(), Err(ChangeError::NotPlanned)));
    }
}
