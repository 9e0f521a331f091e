//! Atomic replacement of a file's bytes, with backup and rollback.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use super::journal::{self, Journal};
use super::{AppliedChange, Change, ChangePlan, RestartExpectation, RolledBackChange};
use crate::error::ChangeError;
use crate::witness::{FlagExpectation, effective_value};

/// Replaces a file's bytes atomically, and can put the original back.
///
/// * The new bytes go to a hidden temporary file in the same directory
///   (`.NAME.kubesafe-tmp-...`: the kubelet loads every non-hidden file of
///   the manifest directory, whatever its extension), which gets the
///   original's mode and owner, is fsynced, renamed over the file, and the
///   directory is fsynced.
/// * Before that, the original bytes are kept in a hidden backup
///   (`.NAME.kubesafe-<UTC time>.orig`, same mode and owner) in the backup
///   directory (default: the file's directory; choose one outside the
///   manifest directory with [`backup_dir`](Self::backup_dir)).
/// * [`Change::rollback`] first checks that the file still holds the bytes
///   this change wrote (it never overwrites someone else's later edit),
///   keeps the rejected bytes as `.NAME.kubesafe-<UTC time>.rejected`, and
///   restores the original bytes the same atomic way. When the rejected copy
///   cannot be written (full or missing backup directory), the original is
///   restored anyway and no rejected copy is reported.
/// * From apply until this value is dropped (through the gate, the rollback
///   and the rollback's gate), an exclusive `flock` is held on `.NAME.lock`
///   beside the file — the lock file of
///   `kubesafe-manifest-edit`'s `ManifestFile` (and so of
///   `ManifestChange`), one convention for every kubesafe writer: two
///   transactions, or a transaction and a `kubesafe edit`, on the same file
///   cannot interleave. The file itself cannot be locked (the rename swaps
///   its inode); the lock file is hidden (the kubelet skips it) and never
///   deleted. A held lock makes [`Change::apply`] fail at once with
///   [`ChangeError::Locked`], nothing changed.
///
/// Whether the kubelet will restart the pod is decided by decoding old and
/// new bytes as YAML and comparing them as data: a comment- or
/// formatting-only change is [`RestartExpectation::NotExpected`]. If either
/// side cannot be decoded, a restart is assumed. The decoded comparison is
/// YAML 1.2 data equality; the kubelet compares the *typed* pod, so a change
/// the typed decoding drops (an unknown field) is taken for a restart and
/// the gate, waiting for one that never comes, rolls it back — the safe
/// direction. Override with [`restart_expected`](Self::restart_expected).
///
/// When both sides decode to a pod, the flags of its container (the first,
/// or the one named with [`container`](Self::container)) whose effective
/// values differ become the plan's flag expectations, so a
/// [`ProcessWitness`](crate::witness::ProcessWitness) checks the restarted
/// process really carries them.
#[derive(Debug)]
#[must_use]
pub struct FileReplace {
    path: PathBuf,
    new_bytes: Vec<u8>,
    backup_dir: Option<PathBuf>,
    restart_override: Option<bool>,
    container: Option<String>,
    description: Option<String>,
    original: Option<Original>,
    backup: Option<PathBuf>,
    applied: bool,
    lock: Option<File>,
    journal: Option<Journal>,
}

impl Drop for FileReplace {
    fn drop(&mut self) {
        // The transaction's verdict is in: the marker goes, then the lock.
        if let Some(j) = self.journal.take() {
            j.finish();
        }
    }
}

#[derive(Debug, Clone)]
struct Original {
    /// The real file (symlinks resolved: renaming over a symlink would
    /// replace the link, not the file).
    real_path: PathBuf,
    bytes: Vec<u8>,
    mode: u32,
    uid: u32,
    gid: u32,
}

impl FileReplace {
    /// Replaces the contents of `path` with `new_bytes`.
    pub fn new(path: impl Into<PathBuf>, new_bytes: impl Into<Vec<u8>>) -> Self {
        Self {
            path: path.into(),
            new_bytes: new_bytes.into(),
            backup_dir: None,
            restart_override: None,
            container: None,
            description: None,
            original: None,
            backup: None,
            applied: false,
            lock: None,
            journal: None,
        }
    }

    /// Keeps the backup and the rejected copy in this directory instead of
    /// next to the file (names stay hidden either way). The lock file stays
    /// beside the file, where every kubesafe writer looks for it.
    pub fn backup_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.backup_dir = Some(dir.into());
        self
    }

    /// Says whether the component will restart, instead of deciding it by
    /// comparing the decoded YAML.
    pub fn restart_expected(mut self, expected: bool) -> Self {
        self.restart_override = Some(expected);
        self
    }

    /// Derives flag expectations from this container of the pod (default:
    /// the first container).
    pub fn container(mut self, name: impl Into<String>) -> Self {
        self.container = Some(name.into());
        self
    }

    /// Sets the one-line description used in events.
    pub fn describe(mut self, description: impl Into<String>) -> Self {
        self.description = Some(description.into());
        self
    }

    /// The file changed.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Where the original bytes were kept, once applied.
    #[must_use]
    pub fn backup_path(&self) -> Option<&Path> {
        self.backup.as_deref()
    }

    fn real_path(&self) -> Result<PathBuf, ChangeError> {
        std::fs::canonicalize(&self.path).map_err(|source| ChangeError::Read {
            path: self.path.clone(),
            source,
        })
    }

    fn side_dir(&self, real: &Path) -> PathBuf {
        match &self.backup_dir {
            Some(d) => d.clone(),
            None => parent_dir(real),
        }
    }

    fn file_name(real: &Path) -> String {
        real.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "file".to_owned())
    }

    fn restart_and_flags(
        &self,
        original: &[u8],
    ) -> (
        RestartExpectation,
        Vec<FlagExpectation>,
        Vec<FlagExpectation>,
    ) {
        let old = decode(original);
        let new = decode(&self.new_bytes);
        let (old_argv, new_argv) = match (&old, &new) {
            (Ok(o), Ok(n)) => (
                container_argv(o, self.container.as_deref()),
                container_argv(n, self.container.as_deref()),
            ),
            _ => (None, None),
        };
        let (apply_flags, rollback_flags) = match (old_argv, new_argv) {
            (Some(o), Some(n)) => flag_diff(&o, &n),
            _ => (Vec::new(), Vec::new()),
        };
        let restart = match self.restart_override {
            Some(true) => RestartExpectation::Expected {
                reason: "the caller says the component restarts".to_owned(),
            },
            Some(false) => RestartExpectation::NotExpected {
                reason: "the caller says the component does not restart".to_owned(),
            },
            None => match (old, new) {
                (Ok(o), Ok(n)) if o == n => RestartExpectation::NotExpected {
                    reason: "old and new contents decode to the same data (only comments or \
                             formatting differ): the kubelet will not restart the pod"
                        .to_owned(),
                },
                (Ok(_), Ok(_)) => RestartExpectation::Expected {
                    reason: "the decoded contents change".to_owned(),
                },
                (Err(e), _) => RestartExpectation::Expected {
                    reason: format!("the current contents do not decode ({e}); assuming a restart"),
                },
                (_, Err(e)) => RestartExpectation::Expected {
                    reason: format!("the new contents do not decode ({e}); assuming a restart"),
                },
            },
        };
        (restart, apply_flags, rollback_flags)
    }
}

impl Change for FileReplace {
    fn plan(&mut self) -> Result<ChangePlan, ChangeError> {
        let real_path = self.real_path()?;
        let meta = std::fs::metadata(&real_path).map_err(|source| ChangeError::Read {
            path: real_path.clone(),
            source,
        })?;
        if !meta.is_file() {
            return Err(ChangeError::Invalid {
                path: real_path,
                reason: "not a regular file".to_owned(),
            });
        }
        let bytes = std::fs::read(&real_path).map_err(|source| ChangeError::Read {
            path: real_path.clone(),
            source,
        })?;
        let (restart, apply_flags, rollback_flags) = self.restart_and_flags(&bytes);
        let description = self.description.clone().unwrap_or_else(|| {
            format!(
                "replace {} ({} → {} bytes)",
                self.path.display(),
                bytes.len(),
                self.new_bytes.len()
            )
        });
        self.original = Some(Original {
            real_path,
            bytes,
            mode: meta.mode() & 0o7777,
            uid: meta.uid(),
            gid: meta.gid(),
        });
        Ok(ChangePlan::new(description, restart)
            .with_target(self.path.clone())
            .with_flags(apply_flags, rollback_flags))
    }

    fn apply(&mut self) -> Result<AppliedChange, ChangeError> {
        if self.original.is_none() {
            self.plan()?;
        }
        let Some(orig) = self.original.clone() else {
            return Err(ChangeError::NotPlanned);
        };
        if self.applied {
            return Err(ChangeError::Invalid {
                path: orig.real_path,
                reason: "already applied".to_owned(),
            });
        }
        let side = self.side_dir(&orig.real_path);
        let name = Self::file_name(&orig.real_path);
        // A hold (and marker) left from an earlier apply/rollback round of
        // this change.
        if let Some(j) = self.journal.take() {
            j.finish();
        }
        self.lock = None;
        let dir = parent_dir(&orig.real_path);
        let lock = take_lock(&dir.join(format!(".{name}.lock")))?;
        let current = std::fs::read(&orig.real_path).map_err(|source| ChangeError::Read {
            path: orig.real_path.clone(),
            source,
        })?;
        if current != orig.bytes {
            return Err(ChangeError::ConcurrentModification {
                path: orig.real_path,
            });
        }
        let journal = Journal::begin(journal::marker_path(&dir, &name), &orig.real_path)?;
        let written =
            write_side_copy(&side, &name, "orig", &orig.bytes, &orig).and_then(|backup| {
                journal.record_backup(Some(&backup))?;
                atomic_write(&orig.real_path, &self.new_bytes, &orig)?;
                Ok(backup)
            });
        let backup = match written {
            Ok(b) => b,
            Err(e) => {
                // Nothing changed: nothing to judge.
                journal.finish();
                return Err(e);
            }
        };
        tracing::info!(path = %orig.real_path.display(), backup = %backup.display(), "file replaced");
        self.journal = Some(journal);
        self.lock = Some(lock);
        self.backup = Some(backup.clone());
        self.applied = true;
        Ok(AppliedChange::new(Some(backup)))
    }

    fn rollback(&mut self) -> Result<RolledBackChange, ChangeError> {
        let Some(orig) = self.original.clone() else {
            return Err(ChangeError::NotPlanned);
        };
        if !self.applied {
            return Err(ChangeError::Invalid {
                path: orig.real_path,
                reason: "not applied, nothing to roll back".to_owned(),
            });
        }
        let current = std::fs::read(&orig.real_path).map_err(|source| ChangeError::Read {
            path: orig.real_path.clone(),
            source,
        })?;
        if current != self.new_bytes {
            return Err(ChangeError::ConcurrentModification {
                path: orig.real_path,
            });
        }
        let side = self.side_dir(&orig.real_path);
        let name = Self::file_name(&orig.real_path);
        // Keeping the rejected bytes is for inspection; putting back the
        // configuration that worked must not depend on it (a full or missing
        // backup directory).
        let broken = match write_side_copy(&side, &name, "rejected", &current, &orig) {
            Ok(p) => Some(p),
            Err(e) => {
                tracing::warn!(path = %orig.real_path.display(), error = %e,
                    "the rejected content cannot be kept; restoring the original anyway");
                None
            }
        };
        atomic_write(&orig.real_path, &orig.bytes, &orig)?;
        tracing::info!(path = %orig.real_path.display(), rejected = ?broken, "file restored");
        self.applied = false;
        // The lock stays held until this change is dropped: the transaction
        // still gates the rollback, and no other kubesafe writer may change
        // the file before the old configuration is known to be healthy.
        Ok(RolledBackChange::new(broken))
    }
}

fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    }
}

/// Takes the exclusive `flock` on the lock file `path`, opened as
/// `kubesafe-manifest-edit` opens it: an existing lock file read-only (`flock`
/// needs no write access), a missing one created `0600`; never through a
/// symbolic link.
fn take_lock(path: &Path) -> Result<File, ChangeError> {
    use rustix::fs::{Mode, OFlags};
    let flags = OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let opened = match rustix::fs::open(path, OFlags::RDONLY | flags, Mode::empty()) {
        Err(rustix::io::Errno::NOENT) => rustix::fs::open(
            path,
            OFlags::RDWR | OFlags::CREATE | flags,
            Mode::from_raw_mode(0o600),
        ),
        other => other,
    };
    let file = File::from(opened.map_err(|e| ChangeError::Write {
        path: path.to_owned(),
        source: e.into(),
    })?);
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(ChangeError::Locked {
            path: path.to_owned(),
        }),
        Err(std::fs::TryLockError::Error(source)) => Err(ChangeError::Write {
            path: path.to_owned(),
            source,
        }),
    }
}

/// Writes a hidden copy `.<name>.kubesafe-<stamp>.<ext>` (a numeric suffix
/// if that exists), with the original's mode and owner, fsynced.
fn write_side_copy(
    dir: &Path,
    name: &str,
    ext: &str,
    bytes: &[u8],
    orig: &Original,
) -> Result<PathBuf, ChangeError> {
    let stamp = utc_stamp(SystemTime::now());
    for n in 0..1000 {
        let suffix = if n == 0 {
            String::new()
        } else {
            format!("-{n}")
        };
        let path = dir.join(format!(".{name}.kubesafe-{stamp}{suffix}.{ext}"));
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path);
        let mut file = match file {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(source) => return Err(ChangeError::Write { path, source }),
        };
        let result = write_and_own(&mut file, bytes, orig).and_then(|()| sync_dir(dir));
        if let Err(source) = result {
            let _ = std::fs::remove_file(&path);
            return Err(ChangeError::Write { path, source });
        }
        return Ok(path);
    }
    Err(ChangeError::Invalid {
        path: dir.to_owned(),
        reason: "too many backups with the same timestamp".to_owned(),
    })
}

fn write_and_own(file: &mut File, bytes: &[u8], orig: &Original) -> std::io::Result<()> {
    file.write_all(bytes)?;
    let meta = file.metadata()?;
    if meta.uid() != orig.uid || meta.gid() != orig.gid {
        std::os::unix::fs::fchown(&*file, Some(orig.uid), Some(orig.gid))?;
    }
    // After chown: chown may clear set-id bits.
    file.set_permissions(std::fs::Permissions::from_mode(orig.mode))?;
    file.sync_all()
}

/// Replaces `path` with `bytes`: hidden temp file in the same directory,
/// mode and owner of the original, fsync, rename, directory fsync.
fn atomic_write(path: &Path, bytes: &[u8], orig: &Original) -> Result<(), ChangeError> {
    let dir = parent_dir(path);
    let name = FileReplace::file_name(path);
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .subsec_nanos();
    let tmp = dir.join(format!(
        ".{name}.kubesafe-tmp-{}-{nanos}",
        std::process::id()
    ));
    let werr = |source| ChangeError::Write {
        path: tmp.clone(),
        source,
    };
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(werr)?;
    if let Err(source) = write_and_own(&mut file, bytes, orig) {
        drop(file);
        let _ = std::fs::remove_file(&tmp);
        return Err(ChangeError::Write { path: tmp, source });
    }
    drop(file);
    if let Err(source) = std::fs::rename(&tmp, path) {
        let _ = std::fs::remove_file(&tmp);
        return Err(ChangeError::Write {
            path: path.to_owned(),
            source,
        });
    }
    // The rename is visible; a failed directory fsync only weakens
    // durability across a power loss, it does not undo the change.
    if let Err(e) = sync_dir(&dir) {
        tracing::warn!(dir = %dir.display(), error = %e, "directory fsync failed after rename");
    }
    Ok(())
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

/// `20240131T235959Z`.
pub(crate) fn utc_stamp(t: SystemTime) -> String {
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Howard Hinnant's days-to-civil algorithm.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = u32::try_from(doy - (153 * mp + 2) / 5 + 1).unwrap_or(1);
    let m = u32::try_from(if mp < 10 { mp + 3 } else { mp - 9 }).unwrap_or(1);
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Decodes YAML into a generic value (maps with sorted keys, so two
/// documents equal as data compare equal).
pub(crate) fn decode(bytes: &[u8]) -> Result<serde_json::Value, String> {
    let text = std::str::from_utf8(bytes).map_err(|e| format!("not UTF-8: {e}"))?;
    serde_saphyr::from_str::<serde_json::Value>(text).map_err(|e| {
        let msg = e.to_string();
        msg.lines().next().unwrap_or("invalid YAML").to_owned()
    })
}

/// `command` + `args` of the named (or first) container of a decoded pod.
pub(crate) fn container_argv(pod: &serde_json::Value, name: Option<&str>) -> Option<Vec<String>> {
    let containers = pod.get("spec")?.get("containers")?.as_array()?;
    let c = match name {
        Some(n) => containers
            .iter()
            .find(|c| c.get("name").and_then(|v| v.as_str()) == Some(n))?,
        None => containers.first()?,
    };
    let strings = |key: &str| -> Vec<String> {
        c.get(key)
            .and_then(|v| v.as_array())
            .map(|a| {
                a.iter()
                    .map(|v| match v {
                        serde_json::Value::String(s) => s.clone(),
                        other => other.to_string(),
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut argv = strings("command");
    argv.extend(strings("args"));
    Some(argv)
}

/// Flags whose effective value differs between two command lines: (new
/// values, old values).
pub(crate) fn flag_diff(
    old: &[String],
    new: &[String],
) -> (Vec<FlagExpectation>, Vec<FlagExpectation>) {
    let mut names: Vec<String> = old
        .iter()
        .chain(new.iter())
        .filter(|t| t.starts_with("--") && t.len() > 2)
        .map(|t| t.split('=').next().unwrap_or(t).to_owned())
        .collect();
    names.sort();
    names.dedup();
    let mut apply = Vec::new();
    let mut rollback = Vec::new();
    for name in names {
        let o = effective_value(old, &name);
        let n = effective_value(new, &name);
        if o != n {
            apply.push(FlagExpectation {
                flag: name.clone(),
                value: n,
            });
            rollback.push(FlagExpectation {
                flag: name,
                value: o,
            });
        }
    }
    (apply, rollback)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    const POD: &str = "# kubeadm manifest\napiVersion: v1\nkind: Pod\nmetadata:\n  name: kube-apiserver\nspec:\n  containers:\n  - name: kube-apiserver\n    command:\n    - kube-apiserver\n    - --secure-port=6443\n    - --anonymous-auth=true\n";

    fn write(dir: &Path, text: &str) -> PathBuf {
        let p = dir.join("kube-apiserver.yaml");
        std::fs::write(&p, text).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o640)).unwrap();
        p
    }

    fn visible(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| !n.starts_with('.'))
            .collect();
        v.sort();
        v
    }

    #[test]
    fn apply_and_rollback_round_trip_with_hidden_side_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), POD);
        let new = POD.replace("--anonymous-auth=true", "--anonymous-auth=false");
        let mut c = FileReplace::new(&path, new.clone());
        let plan = c.plan().unwrap();
        assert!(plan.restart.is_expected(), "{plan:?}");
        assert_eq!(
            plan.apply_flags,
            vec![FlagExpectation::set("--anonymous-auth", "false")]
        );
        assert_eq!(
            plan.rollback_flags,
            vec![FlagExpectation::set("--anonymous-auth", "true")]
        );

        let applied = c.apply().unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), new);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o640);
        let backup = applied.backup.unwrap();
        assert_eq!(std::fs::read_to_string(&backup).unwrap(), POD);
        assert!(
            backup
                .file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with('.')
        );
        // Only the manifest is visible to the kubelet.
        assert_eq!(visible(dir.path()), vec!["kube-apiserver.yaml"]);

        let rolled = c.rollback().unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), POD);
        let broken = rolled.broken_copy.unwrap();
        assert_eq!(std::fs::read_to_string(&broken).unwrap(), new);
        assert!(
            broken
                .file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with('.')
        );
        assert_eq!(visible(dir.path()), vec!["kube-apiserver.yaml"]);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o640);
    }

    #[test]
    fn comment_only_change_expects_no_restart() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), POD);
        let new = POD
            .replace("# kubeadm manifest", "# reviewed by kubesafe")
            .replace("kind: Pod", "kind:   Pod   # the kind");
        let mut c = FileReplace::new(&path, new);
        let plan = c.plan().unwrap();
        assert!(!plan.restart.is_expected(), "{plan:?}");
        assert!(plan.apply_flags.is_empty());
    }

    #[test]
    fn caller_can_override_the_restart_decision() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), POD);
        let mut c = FileReplace::new(&path, format!("{POD}# trailing\n")).restart_expected(true);
        assert!(c.plan().unwrap().restart.is_expected());
    }

    #[test]
    fn undecodable_new_contents_assume_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), POD);
        let mut c = FileReplace::new(&path, "spec: [unclosed\n");
        let plan = c.plan().unwrap();
        assert!(plan.restart.is_expected());
        assert!(
            plan.restart.reason().contains("do not decode"),
            "{}",
            plan.restart.reason()
        );
    }

    #[test]
    fn rollback_restores_the_original_even_when_the_rejected_copy_cannot_be_kept() {
        // Restoring the configuration that worked comes first; keeping the
        // rejected bytes for inspection is a nicety that must not block it
        // (full backup disk, backup directory gone).
        let manifests = tempfile::tempdir().unwrap();
        let side = tempfile::tempdir().unwrap();
        let backups = side.path().join("backups");
        std::fs::create_dir(&backups).unwrap();
        let path = write(manifests.path(), POD);
        let mut c = FileReplace::new(&path, "kind: Pod\n").backup_dir(&backups);
        let applied = c.apply().unwrap();
        let backup_bytes = std::fs::read(applied.backup.unwrap()).unwrap();
        std::fs::remove_dir_all(&backups).unwrap();
        std::fs::write(&backups, "not a directory any more").unwrap();
        let rolled = c.rollback().unwrap();
        assert_eq!(rolled.broken_copy, None);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), POD);
        assert_eq!(backup_bytes, POD.as_bytes());
    }

    #[test]
    fn rollback_refuses_to_clobber_a_later_edit() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), POD);
        let mut c = FileReplace::new(&path, "kind: Pod\n");
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
    fn apply_refuses_when_the_file_changed_since_plan() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), POD);
        let mut c = FileReplace::new(&path, "kind: Pod\n");
        c.plan().unwrap();
        std::fs::write(&path, "edited meanwhile\n").unwrap();
        assert!(matches!(
            c.apply(),
            Err(ChangeError::ConcurrentModification { .. })
        ));
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "edited meanwhile\n"
        );
    }

    #[test]
    fn second_transaction_on_the_same_file_is_locked_out() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), POD);
        let mut a = FileReplace::new(&path, "a: 1\n");
        a.apply().unwrap();
        let mut b = FileReplace::new(&path, "b: 2\n");
        let err = b.apply().unwrap_err();
        assert!(matches!(err, ChangeError::Locked { .. }), "{err}");
        a.rollback().unwrap();
        drop(a);
        b.plan().unwrap();
        b.apply().unwrap();
    }

    #[test]
    fn the_lock_is_the_hidden_lock_file_beside_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), POD);
        let mut a = FileReplace::new(&path, "a: 1\n");
        a.apply().unwrap();
        let lock = dir.path().join(".kube-apiserver.yaml.lock");
        // Another open file description of the same lock file cannot take it:
        // another process (or `kubesafe-manifest-edit`) is locked out.
        let other = File::open(&lock).unwrap();
        assert!(matches!(
            other.try_lock(),
            Err(std::fs::TryLockError::WouldBlock)
        ));
        a.rollback().unwrap();
        drop(a);
        other.try_lock().unwrap();
        // While someone else holds it, apply fails with nothing changed.
        let mut b = FileReplace::new(&path, "b: 2\n");
        b.plan().unwrap();
        let err = b.apply().unwrap_err();
        assert!(
            matches!(err, ChangeError::Locked { ref path } if *path == lock),
            "{err}"
        );
        assert_eq!(std::fs::read_to_string(&path).unwrap(), POD);
    }

    #[test]
    fn backup_dir_outside_the_manifest_dir() {
        let manifests = tempfile::tempdir().unwrap();
        let backups = tempfile::tempdir().unwrap();
        let path = write(manifests.path(), POD);
        let mut c = FileReplace::new(&path, "kind: Pod\n").backup_dir(backups.path());
        let applied = c.apply().unwrap();
        assert!(applied.backup.unwrap().starts_with(backups.path()));
        let names = || {
            let mut v: Vec<String> = std::fs::read_dir(manifests.path())
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            v.sort();
            v
        };
        // While the change is being judged: the hidden in-progress marker.
        assert_eq!(
            names(),
            [
                ".kube-apiserver.yaml.kubesafe-transaction",
                ".kube-apiserver.yaml.lock",
                "kube-apiserver.yaml"
            ]
        );
        drop(c);
        assert_eq!(
            names(),
            [".kube-apiserver.yaml.lock", "kube-apiserver.yaml"],
            "only the manifest and the shared lock file stay in the manifest dir"
        );
    }

    #[test]
    fn a_marker_left_by_a_killed_transaction_blocks_the_next_change() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), POD);
        let marker = dir.path().join(".kube-apiserver.yaml.kubesafe-transaction");
        // While a change is judged, the marker says who and where the way
        // back is; a process killed now leaves it behind (a real kill -9 is
        // tested with the CLI in kubesafe-examples).
        let mut c = FileReplace::new(&path, "kind: Pod\n");
        c.apply().unwrap();
        let left = std::fs::read_to_string(&marker).unwrap();
        assert!(
            left.contains(&format!("pid: {}", std::process::id())),
            "{left}"
        );
        assert!(left.contains("backup of the content before it: "), "{left}");
        drop(c);
        assert!(!marker.exists(), "removed once the change is dropped");

        std::fs::write(&marker, &left).unwrap();
        let mut next = FileReplace::new(&path, POD);
        let err = next.apply().unwrap_err();
        let ChangeError::Unfinished { marker: m, detail } = &err else {
            panic!("{err}");
        };
        assert_eq!(m, &marker);
        assert!(
            detail.contains("backup of the content before it"),
            "{detail}"
        );
        assert!(err.to_string().contains("delete"), "{err}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "kind: Pod\n");
        assert!(marker.exists(), "never removed by the change it blocked");
        drop(next);
        assert!(marker.exists());
        // Once a human has looked and removed it, changes go ahead.
        std::fs::remove_file(&marker).unwrap();
        let mut next = FileReplace::new(&path, POD);
        next.apply().unwrap();
        drop(next);
        assert!(!marker.exists());
    }

    #[test]
    fn a_failed_apply_leaves_no_marker() {
        let manifests = tempfile::tempdir().unwrap();
        let path = write(manifests.path(), POD);
        let side = tempfile::tempdir().unwrap();
        let not_a_dir = side.path().join("file");
        std::fs::write(&not_a_dir, "x").unwrap();
        let mut c = FileReplace::new(&path, "kind: Pod\n").backup_dir(&not_a_dir);
        assert!(c.apply().is_err());
        assert!(
            !manifests
                .path()
                .join(".kube-apiserver.yaml.kubesafe-transaction")
                .exists()
        );
        assert_eq!(std::fs::read_to_string(&path).unwrap(), POD);
    }

    #[test]
    fn symlinked_file_is_replaced_behind_the_link() {
        let dir = tempfile::tempdir().unwrap();
        let real = write(dir.path(), POD);
        let link = dir.path().join("link.yaml");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let mut c = FileReplace::new(&link, "kind: Pod\n");
        c.apply().unwrap();
        assert!(
            std::fs::symlink_metadata(&link)
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert_eq!(std::fs::read_to_string(&real).unwrap(), "kind: Pod\n");
    }

    #[test]
    fn missing_file_is_a_read_error_naming_it() {
        let mut c = FileReplace::new("/nonexistent/dir/kube-apiserver.yaml", "x");
        let err = c.plan().unwrap_err();
        assert!(
            err.to_string()
                .contains("/nonexistent/dir/kube-apiserver.yaml"),
            "{err}"
        );
    }

    #[test]
    fn utc_stamps() {
        let t = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_706_745_599);
        assert_eq!(utc_stamp(t), "20240131T235959Z");
        assert_eq!(utc_stamp(SystemTime::UNIX_EPOCH), "19700101T000000Z");
    }

    #[test]
    fn flag_diff_reports_added_removed_and_changed() {
        let old: Vec<String> = ["x", "--a=1", "--b", "2", "--c=3"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let new: Vec<String> = ["x", "--a=1", "--b=5", "--d=4"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let (apply, rollback) = flag_diff(&old, &new);
        assert_eq!(
            apply,
            vec![
                FlagExpectation::set("--b", "5"),
                FlagExpectation::absent("--c"),
                FlagExpectation::set("--d", "4"),
            ]
        );
        assert_eq!(
            rollback,
            vec![
                FlagExpectation::set("--b", "2"),
                FlagExpectation::set("--c", "3"),
                FlagExpectation::absent("--d"),
            ]
        );
    }
}
