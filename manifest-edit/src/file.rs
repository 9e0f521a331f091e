//! Safe writes of a manifest file: lock, optimistic check, backup outside the manifest
//! directory, hidden temp file, fsync, rename, directory fsync, re-read and verify.
//!
//! The kubelet loads every non-hidden regular file of its manifest directory
//! (`filepath.Glob(dir + "/[^.]*")` in `pkg/kubelet/config/file.go`), whatever its
//! extension. So everything this module creates in that directory is hidden: the lock file
//! `.NAME.lock` and the temp files `.NAME.XXXXXXXX.kubesafe-tmp`. Backups go to a sibling
//! directory outside it.

use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::edit::{Applied, Edit, Manifest, Reparse};
use crate::error::{Error, Result};
use crate::report::{self, Report};

/// Where backups go.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Backup {
    /// `kubesafe-backups/` beside the manifest directory: for
    /// `/etc/kubernetes/manifests/kube-apiserver.yaml`, `/etc/kubernetes/kubesafe-backups/`.
    /// Outside the directory the kubelet reads, on the same filesystem in the usual layout,
    /// and visible (not hidden) so an operator finds it with `ls /etc/kubernetes`.
    #[default]
    Sibling,
    /// This directory (created with mode 0700 when missing). It must not be the manifest
    /// directory nor inside it (checked through symbolic links before anything is created).
    Dir(PathBuf),
    /// No backup.
    Disabled,
}

/// Options of a [`ManifestFile`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct FileOptions {
    /// Backup policy (default: [`Backup::Sibling`]).
    pub backup: Backup,
    /// Edit the target of a symbolic link instead of refusing (default: `false`). The link
    /// itself is kept; the target is replaced atomically in its own directory.
    pub allow_symlink: bool,
    /// How long to wait for another writer's lock (default: 30 s).
    pub lock_timeout: Duration,
    /// Verify every changed operation by parsing the whole edited text (default: `true`).
    ///
    /// By default what is written to a node has been verified by a full parse of the
    /// result, as [`Manifest::apply_full_reparse`] does: the edit costs about 50 µs more
    /// (a 3.6 KB kube-apiserver manifest), nothing next to the fsyncs, and the check does
    /// not depend on the window proof. With `false`, an edit is verified like
    /// [`Manifest::apply`] does it: an operation that only replaces, adds or removes whole
    /// one-line items of a block list is verified by parsing the changed lines and proving
    /// the rest of the text unchanged (see the crate docs, "Verification"), anything else
    /// by a full parse. Both establish that the text written parses to the tree each
    /// operation is checked against; debug builds hold every window proof to a full
    /// parse.
    pub full_reparse: bool,
}

impl Default for FileOptions {
    fn default() -> Self {
        FileOptions {
            backup: Backup::Sibling,
            allow_symlink: false,
            lock_timeout: Duration::from_secs(30),
            full_reparse: true,
        }
    }
}

impl FileOptions {
    /// Default options.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the backup policy.
    #[must_use]
    pub fn backup(mut self, backup: Backup) -> Self {
        self.backup = backup;
        self
    }

    /// Allows editing through a symbolic link.
    #[must_use]
    pub fn allow_symlink(mut self, allow: bool) -> Self {
        self.allow_symlink = allow;
        self
    }

    /// Sets the lock timeout.
    #[must_use]
    pub fn lock_timeout(mut self, timeout: Duration) -> Self {
        self.lock_timeout = timeout;
        self
    }

    /// Verifies every edit by a full parse of the result (see
    /// [`FileOptions::full_reparse`]).
    #[must_use]
    pub fn full_reparse(mut self, full: bool) -> Self {
        self.full_reparse = full;
        self
    }
}

/// The report of [`ManifestFile::restore`].
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct RestoreReport {
    /// The file.
    pub path: PathBuf,
    /// Whether the bytes were written (false when the file already held them).
    pub written: bool,
    /// SHA-256 (hex) of the content that was replaced.
    pub before_sha256: String,
    /// SHA-256 (hex) of the content now in place.
    pub after_sha256: String,
    /// Where the replaced content was kept, when asked.
    pub kept: Option<PathBuf>,
    /// Whether the decoded data changed (`true` when either side does not parse): when
    /// `false`, the kubelet will not restart the static pod.
    pub data_changed: bool,
}

/// A step of the write, for fault-injection tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    Backup,
    CreateTemp,
    WriteTemp,
    PreserveOwner,
    PreserveMode,
    SyncTemp,
    Rename,
    SyncDir,
    Reread,
}

#[cfg(test)]
pub(crate) type Hook = std::sync::Arc<dyn Fn(Step) -> io::Result<()> + Send + Sync>;

/// A manifest on disk, edited safely.
///
/// ```no_run
/// use kubesafe_manifest_edit::{Edit, FileOptions, ManifestFile};
/// let file = ManifestFile::open(
///     "/etc/kubernetes/manifests/kube-apiserver.yaml",
///     FileOptions::default(),
/// )?;
/// let report = file.apply(&Edit::new().set_flag("--profiling", "false"))?;
/// println!("{}", report.diff);
/// # Ok::<(), kubesafe_manifest_edit::Error>(())
/// ```
#[derive(Clone)]
pub struct ManifestFile {
    /// The path as given.
    path: PathBuf,
    /// The regular file edited (the symlink's target when allowed).
    target: PathBuf,
    /// Its directory (canonical).
    dir: PathBuf,
    /// Its file name.
    file_name: OsString,
    options: FileOptions,
    #[cfg(test)]
    pub(crate) hook: Option<Hook>,
}

impl std::fmt::Debug for ManifestFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ManifestFile")
            .field("path", &self.path)
            .field("target", &self.target)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

fn io_err(path: &Path, action: &'static str) -> impl FnOnce(io::Error) -> Error + use<> {
    let path = path.to_path_buf();
    move |source| Error::Io {
        path,
        action,
        source,
    }
}

fn kind_of(meta: &fs::Metadata) -> &'static str {
    let ft = meta.file_type();
    if ft.is_dir() {
        "a directory"
    } else if ft.is_symlink() {
        "a symbolic link"
    } else if ft.is_file() {
        "a regular file"
    } else {
        "a device, socket or fifo"
    }
}

/// Opens `path` read-only without following a final symlink, and without blocking: a FIFO
/// put in place of a file would otherwise block the `open` until a writer appears (the
/// caller checks the type on the descriptor; reads of a regular file ignore `O_NONBLOCK`).
fn open_nofollow(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK)
        .open(path)
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// 8 hex digits that differ between processes, calls and moments.
fn random_suffix() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let seed = format!(
        "{}-{}-{nanos}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    );
    report::sha256_hex(seed.as_bytes())
        .get(..8)
        .unwrap_or("00000000")
        .to_owned()
}

const TEMP_SUFFIX: &str = ".kubesafe-tmp";

/// How old a backup temp file must be before a writer removes it as a killed writer's:
/// a live writer's exists for the few seconds of a write and fsync.
const STALE_BACKUP_TEMP_AGE: Duration = Duration::from_secs(15 * 60);

/// `YYYYMMDDTHHMMSS.nnnnnnnnnZ` (UTC) for `t`.
fn timestamp(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rem = secs % 86_400;
    // Howard Hinnant's days-to-civil algorithm.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}{month:02}{day:02}T{:02}{:02}{:02}.{:09}Z",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60,
        d.subsec_nanos()
    )
}

/// A temp file that removes itself unless committed.
struct TempFile {
    path: PathBuf,
    committed: bool,
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.committed
            && let Err(e) = fs::remove_file(&self.path)
            && e.kind() != io::ErrorKind::NotFound
        {
            tracing::warn!(path = %self.path.display(), error = %e, "cannot remove temp file");
        }
    }
}

/// The exclusive lock; released when dropped (closing the descriptor releases `flock`).
#[derive(Debug)]
struct Lock {
    _file: File,
    path: PathBuf,
}

/// The locks this process holds, with the thread that took each: a thread asking again
/// for a lock it holds is told so at once (a second `flock` descriptor would wait for the
/// first like any other writer, until the timeout).
static HELD: std::sync::Mutex<Vec<(PathBuf, std::thread::ThreadId)>> =
    std::sync::Mutex::new(Vec::new());

fn held() -> std::sync::MutexGuard<'static, Vec<(PathBuf, std::thread::ThreadId)>> {
    HELD.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Drop for Lock {
    fn drop(&mut self) {
        held().retain(|(p, _)| *p != self.path);
    }
}

/// A [`ManifestFile`] whose lock is held until this value is dropped: see
/// [`ManifestFile::lock_exclusive`].
///
/// Its [`apply`](Self::apply), [`apply_if_unchanged`](Self::apply_if_unchanged) and
/// [`restore`](Self::restore) behave like the [`ManifestFile`] methods of the same name but
/// do not take the lock again: they run under this hold. (Taking it again would deadlock:
/// `flock` locks belong to an open file description, so a second descriptor of the same
/// lock file in the same process waits for the first like any other writer.)
#[derive(Debug)]
#[must_use = "the lock is released when this value is dropped"]
pub struct LockedManifestFile {
    file: ManifestFile,
    _lock: Lock,
    /// Serialises this hold's writes: threads sharing it are all "under the lock", and
    /// each write first removes every temp file of the manifest left in its directory.
    writing: std::sync::Mutex<()>,
}

impl LockedManifestFile {
    /// The file.
    pub fn file(&self) -> &ManifestFile {
        &self.file
    }

    fn writing(&self) -> std::sync::MutexGuard<'_, ()> {
        self.writing
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Like [`ManifestFile::apply`], under the held lock.
    pub fn apply(&self, edit: &Edit) -> Result<Report> {
        let _writing = self.writing();
        self.file.apply_inner(edit, None, true)
    }

    /// Like [`ManifestFile::apply_if_unchanged`], under the held lock.
    pub fn apply_if_unchanged(&self, edit: &Edit, expected_sha256: &str) -> Result<Report> {
        let _writing = self.writing();
        self.file.apply_inner(edit, Some(expected_sha256), true)
    }

    /// Like [`ManifestFile::restore`], under the held lock.
    pub fn restore(
        &self,
        bytes: &[u8],
        expected_current_sha256: &str,
        keep_replaced: bool,
    ) -> Result<RestoreReport> {
        let _writing = self.writing();
        self.file
            .restore_inner(bytes, expected_current_sha256, keep_replaced, true)
    }

    /// Releases the lock.
    pub fn unlock(self) -> ManifestFile {
        self.file
    }
}

impl ManifestFile {
    /// The largest file this type reads or writes: 10 MiB, what the kubelet reads of a
    /// static-pod file (`maxConfigLength` in `pkg/kubelet/config/common.go`; it drops the
    /// pod of a larger one). Larger files and edits or restores that would produce one are
    /// refused with [`Error::TooLarge`], and a larger file is never read into memory whole.
    pub const MAX_BYTES: u64 = 10 * 1024 * 1024;

    /// Refuses content of `len` bytes beyond [`Self::MAX_BYTES`].
    fn check_size(&self, len: usize) -> Result<()> {
        let size = u64::try_from(len).unwrap_or(u64::MAX);
        if size > Self::MAX_BYTES {
            return Err(Error::TooLarge {
                path: self.path.clone(),
                size,
                limit: Self::MAX_BYTES,
            });
        }
        Ok(())
    }

    /// Opens `path` for editing. Refuses a directory or other non-regular file, and a
    /// symbolic link unless [`FileOptions::allow_symlink`] is set. Nothing is read yet.
    pub fn open(path: impl AsRef<Path>, options: FileOptions) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let meta = fs::symlink_metadata(&path).map_err(io_err(&path, "inspect"))?;
        let target = if meta.file_type().is_symlink() {
            if !options.allow_symlink {
                return Err(Error::Symlink {
                    target: fs::read_link(&path).unwrap_or_default(),
                    path,
                });
            }
            fs::canonicalize(&path).map_err(io_err(&path, "resolve symbolic link"))?
        } else {
            path.clone()
        };
        let tmeta = fs::symlink_metadata(&target).map_err(io_err(&target, "inspect"))?;
        if !tmeta.file_type().is_file() {
            return Err(Error::NotAFile {
                path: target,
                kind: kind_of(&tmeta),
            });
        }
        let file_name = target
            .file_name()
            .map(OsString::from)
            .ok_or_else(|| Error::NotAFile {
                path: target.clone(),
                kind: "a path without a file name",
            })?;
        let parent = match target.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let dir = fs::canonicalize(&parent).map_err(io_err(&parent, "resolve directory"))?;
        Ok(ManifestFile {
            target: dir.join(&file_name),
            path,
            dir,
            file_name,
            options,
            #[cfg(test)]
            hook: None,
        })
    }

    /// The path as given to [`ManifestFile::open`].
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The lock file: `.NAME.lock` in the manifest directory. Hidden, so the kubelet skips
    /// it; in the same directory, so every tool that edits the file finds the same lock
    /// without configuration; never deleted (deleting it would let two writers lock two
    /// different inodes).
    pub fn lock_path(&self) -> PathBuf {
        let mut name = OsString::from(".");
        name.push(&self.file_name);
        name.push(".lock");
        self.dir.join(name)
    }

    /// The backup directory in effect, if backups are enabled.
    pub fn backup_dir(&self) -> Result<Option<PathBuf>> {
        match &self.options.backup {
            Backup::Disabled => Ok(None),
            Backup::Dir(d) => Ok(Some(d.clone())),
            Backup::Sibling => match self.dir.parent() {
                Some(p) => Ok(Some(p.join("kubesafe-backups"))),
                None => Err(Error::NoBackupDir {
                    path: self.path.clone(),
                }),
            },
        }
    }

    #[allow(clippy::unused_self)]
    fn hook(&self, _step: Step) -> io::Result<()> {
        #[cfg(test)]
        if let Some(h) = &self.hook {
            return h(_step);
        }
        Ok(())
    }

    /// Reads the current bytes and metadata (from the open descriptor).
    fn read_current(&self) -> Result<(Vec<u8>, fs::Metadata)> {
        let f = open_nofollow(&self.target).map_err(|e| {
            if e.raw_os_error() == Some(libc::ELOOP) {
                Error::Symlink {
                    target: fs::read_link(&self.target).unwrap_or_default(),
                    path: self.target.clone(),
                }
            } else {
                io_err(&self.target, "open")(e)
            }
        })?;
        let meta = f.metadata().map_err(io_err(&self.target, "inspect"))?;
        if !meta.file_type().is_file() {
            return Err(Error::NotAFile {
                path: self.target.clone(),
                kind: kind_of(&meta),
            });
        }
        if meta.len() > Self::MAX_BYTES {
            return Err(Error::TooLarge {
                path: self.path.clone(),
                size: meta.len(),
                limit: Self::MAX_BYTES,
            });
        }
        let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
        // At most one byte beyond the limit, should the file have grown since `fstat`.
        f.take(Self::MAX_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(io_err(&self.target, "read"))?;
        self.check_size(bytes.len())?;
        Ok((bytes, meta))
    }

    /// Reads and parses the file as it is now.
    pub fn read(&self) -> Result<Manifest> {
        let (bytes, _) = self.read_current()?;
        Manifest::from_bytes(self.path.clone(), bytes)
    }

    /// The SHA-256 (hex) of the file's current content.
    pub fn sha256(&self) -> Result<String> {
        Ok(report::sha256_hex(&self.read_current()?.0))
    }

    /// Takes the exclusive lock ([`lock_path`](Self::lock_path), waiting up to
    /// [`FileOptions::lock_timeout`]) and holds it until the returned value is dropped.
    ///
    /// For a caller whose change spans several writes — apply, watch the component
    /// restart, maybe restore — and that must not let another kubesafe writer slip in
    /// between them (its rollback would then refuse to overwrite the other writer's
    /// content, or worse, the gate would judge someone else's change). Writers that do not
    /// use this lock (an editor, `kubeadm`) are not excluded; the SHA-256 checks of
    /// [`LockedManifestFile::apply_if_unchanged`] and [`LockedManifestFile::restore`]
    /// catch them.
    ///
    /// ```
    /// use kubesafe_manifest_edit::{Edit, FileOptions, ManifestFile, sha256_hex};
    /// # let dir = tempfile::tempdir()?;
    /// # let manifests = dir.path().join("manifests");
    /// # std::fs::create_dir(&manifests)?;
    /// # let path = manifests.join("kube-apiserver.yaml");
    /// # std::fs::write(&path, "apiVersion: v1\nkind: Pod\nspec:\n  containers:\n  - name: kube-apiserver\n    command:\n    - kube-apiserver\n")?;
    /// let file = ManifestFile::open(&path, FileOptions::default())?;
    /// let original = std::fs::read(&path)?;
    /// let locked = file.lock_exclusive()?;
    /// let report = locked.apply_if_unchanged(
    ///     &Edit::new().set_flag("--profiling", "false"),
    ///     &sha256_hex(&original),
    /// )?;
    /// // ... the component restarts and turns out broken: put the original back,
    /// // still under the same lock, only if the file is what we wrote.
    /// locked.restore(&original, &report.after_sha256, true)?;
    /// drop(locked); // releases the lock
    /// assert_eq!(std::fs::read(&path)?, original);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn lock_exclusive(&self) -> Result<LockedManifestFile> {
        Ok(LockedManifestFile {
            _lock: self.lock()?,
            file: self.clone(),
            writing: std::sync::Mutex::new(()),
        })
    }

    fn lock(&self) -> Result<Lock> {
        let path = self.lock_path();
        let me = std::thread::current().id();
        if held().iter().any(|(p, t)| *p == path && *t == me) {
            return Err(Error::LockTimeout {
                lock: path,
                waited_ms: 0,
                held_by_this_thread: true,
            });
        }
        // `flock` needs no write access: open an existing lock file read-only, create it
        // (0600) only when missing.
        let open_existing = open_nofollow(&path);
        let file = match open_existing {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .mode(0o600)
                .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
                .open(&path)
                .map_err(io_err(&path, "create lock file"))?,
            Err(e) => return Err(io_err(&path, "open lock file")(e)),
        };
        let meta = file
            .metadata()
            .map_err(io_err(&path, "inspect lock file"))?;
        if !meta.file_type().is_file() {
            return Err(Error::NotAFile {
                path: path.clone(),
                kind: kind_of(&meta),
            });
        }
        let start = Instant::now();
        let mut wait = Duration::from_millis(1);
        loop {
            match file.try_lock() {
                Ok(()) => {
                    held().push((path.clone(), me));
                    return Ok(Lock { _file: file, path });
                }
                Err(fs::TryLockError::WouldBlock) => {
                    if start.elapsed() >= self.options.lock_timeout {
                        return Err(Error::LockTimeout {
                            lock: path,
                            waited_ms: start.elapsed().as_millis(),
                            held_by_this_thread: false,
                        });
                    }
                    std::thread::sleep(wait);
                    wait = (wait * 2).min(Duration::from_millis(50));
                }
                Err(fs::TryLockError::Error(e)) => return Err(io_err(&path, "lock")(e)),
            }
        }
    }

    fn compute(&self, bytes: &[u8], edit: &Edit) -> Result<Applied> {
        let how = if self.options.full_reparse {
            Reparse::Full
        } else {
            Reparse::Window
        };
        Manifest::from_bytes(self.path.clone(), bytes.to_vec())?.apply_with(edit, how)
    }

    /// The report of `applied`, an edit of `before` (whose SHA-256 is `before_sha256`).
    fn report(
        &self,
        before: &[u8],
        before_sha256: String,
        applied: &Applied,
        written: bool,
        backup: Option<PathBuf>,
    ) -> Report {
        let new = applied.manifest.text();
        let old = String::from_utf8_lossy(before);
        let name = self.path.display().to_string();
        let (changes, diff) = report::changes_and_diff(name.trim_start_matches('/'), &old, new);
        Report {
            path: self.path.clone(),
            ops: applied.ops.clone(),
            changed: applied.changed,
            data_changed: applied.data_changed,
            kind: applied.manifest.kind().map(str::to_owned),
            written,
            after_sha256: if applied.changed {
                report::sha256_hex(new.as_bytes())
            } else {
                before_sha256.clone()
            },
            before_sha256,
            backup,
            changes,
            diff,
            new_content: new.as_bytes().to_vec(),
        }
    }

    /// Computes the edit and returns its report without writing anything (no lock, no
    /// backup).
    pub fn dry_run(&self, edit: &Edit) -> Result<Report> {
        let (bytes, _) = self.read_current()?;
        let applied = self.compute(&bytes, edit)?;
        Ok(self.report(&bytes, report::sha256_hex(&bytes), &applied, false, None))
    }

    /// Applies `edit` and writes the result safely. Under the lock the file is re-read;
    /// if another writer changed it since the first read, the edit is recomputed on the
    /// fresh content (no lost update). Nothing is written when nothing changes.
    pub fn apply(&self, edit: &Edit) -> Result<Report> {
        self.apply_inner(edit, None, false)
    }

    /// Like [`ManifestFile::apply`], but refuses with [`Error::Changed`] unless the file's
    /// content (read under the lock) still has the SHA-256 `expected_sha256` — the hash a
    /// caller saw when it planned or showed the change.
    pub fn apply_if_unchanged(&self, edit: &Edit, expected_sha256: &str) -> Result<Report> {
        self.apply_inner(edit, Some(expected_sha256), false)
    }

    /// `held`: the caller holds the lock (through a [`LockedManifestFile`]).
    fn apply_inner(&self, edit: &Edit, expected: Option<&str>, held: bool) -> Result<Report> {
        let (bytes, _) = self.read_current()?;
        let sha = report::sha256_hex(&bytes);
        if let Some(exp) = expected
            && !exp.eq_ignore_ascii_case(&sha)
        {
            return Err(Error::Changed {
                path: self.path.clone(),
                expected: exp.to_owned(),
                found: sha,
            });
        }
        // Compute before taking the lock: bad input fails without touching anything.
        let mut applied = self.compute(&bytes, edit)?;
        if !applied.changed {
            return Ok(self.report(&bytes, sha, &applied, false, None));
        }

        let _lock = if held { None } else { Some(self.lock()?) };
        let (current, meta) = self.read_current()?;
        let unchanged = current == bytes;
        let current_sha = if unchanged {
            sha
        } else {
            report::sha256_hex(&current)
        };
        if !unchanged {
            if let Some(exp) = expected {
                return Err(Error::Changed {
                    path: self.path.clone(),
                    expected: exp.to_owned(),
                    found: current_sha,
                });
            }
            tracing::info!(path = %self.path.display(), "changed by another writer; recomputing under the lock");
            applied = self.compute(&current, edit)?;
            if !applied.changed {
                return Ok(self.report(&current, current_sha, &applied, false, None));
            }
        }
        let new = applied.manifest.text().as_bytes();
        self.check_size(new.len())?;
        let backup = self.write_backup(&current, &meta, "")?;
        if let Err(e) = self.replace_contents(&meta, new) {
            if let (Some(b), false) = (&backup, matches!(e, Error::NotDurable { .. })) {
                let _ = fs::remove_file(b);
            }
            return Err(e);
        }
        // Re-read and verify: the exact bytes that were parsed and checked (every operation's
        // intended state) before writing.
        self.verify_written(new)?;
        tracing::info!(path = %self.path.display(), backup = ?backup, "manifest written");
        Ok(self.report(&current, current_sha, &applied, true, backup))
    }

    /// Atomically replaces the file's content with `bytes` — for rollback: "put back these
    /// original bytes, but only if the file is still what we wrote". Under the lock, refuses
    /// with [`Error::Changed`] unless the current content has the SHA-256
    /// `expected_current_sha256`. With `keep_replaced`, the replaced content is first saved
    /// in the backup directory (`NAME.TIMESTAMP.HASH.replaced`, outside the manifest
    /// directory). Mode, owner and group are kept. `bytes` need not parse.
    pub fn restore(
        &self,
        bytes: &[u8],
        expected_current_sha256: &str,
        keep_replaced: bool,
    ) -> Result<RestoreReport> {
        self.restore_inner(bytes, expected_current_sha256, keep_replaced, false)
    }

    fn restore_inner(
        &self,
        bytes: &[u8],
        expected_current_sha256: &str,
        keep_replaced: bool,
        held: bool,
    ) -> Result<RestoreReport> {
        self.check_size(bytes.len())?;
        let _lock = if held { None } else { Some(self.lock()?) };
        let (current, meta) = self.read_current()?;
        let before = report::sha256_hex(&current);
        if !expected_current_sha256.eq_ignore_ascii_case(&before) {
            return Err(Error::Changed {
                path: self.path.clone(),
                expected: expected_current_sha256.to_owned(),
                found: before,
            });
        }
        let data_changed = match (
            Manifest::from_bytes(self.path.clone(), current.clone()),
            Manifest::from_bytes(self.path.clone(), bytes.to_vec()),
        ) {
            (Ok(a), Ok(b)) => !a.data_eq(&b),
            _ => current != bytes,
        };
        if current == bytes {
            return Ok(RestoreReport {
                path: self.path.clone(),
                written: false,
                after_sha256: before.clone(),
                before_sha256: before,
                kept: None,
                data_changed: false,
            });
        }
        let kept = if keep_replaced {
            if self.backup_dir()?.is_none() {
                return Err(Error::InvalidArgument(
                    "keeping the replaced content needs a backup directory, but backups are disabled"
                        .to_owned(),
                ));
            }
            self.write_backup(&current, &meta, ".replaced")?
        } else {
            None
        };
        self.replace_contents(&meta, bytes)?;
        self.verify_written(bytes)?;
        Ok(RestoreReport {
            path: self.path.clone(),
            written: true,
            before_sha256: before,
            after_sha256: report::sha256_hex(bytes),
            kept,
            data_changed,
        })
    }

    /// Re-reads the file after the rename: it must hold exactly `expected`. Its errors say
    /// that the file was written (unlike every error raised before the rename).
    fn verify_written(&self, expected: &[u8]) -> Result<()> {
        let fail = |reason: String| Error::WrittenButUnverified {
            path: self.path.clone(),
            reason,
        };
        let reread = self
            .hook(Step::Reread)
            .and_then(|()| self.read_back(expected.len()))
            .map_err(io_err(&self.target, "re-read"));
        match reread {
            Ok(written) if written == expected => Ok(()),
            Ok(written) => Err(fail(format!(
                "re-reading it gives other bytes (sha256 {}, expected {})",
                report::sha256_hex(&written),
                report::sha256_hex(expected)
            ))),
            Err(e) => Err(fail(format!("re-reading it failed: {e}"))),
        }
    }

    /// Reads the file through its path for [`Self::verify_written`]: at most `len + 1`
    /// bytes (enough to tell a longer file), without following a final symbolic link.
    /// No `fstat`: whatever is not a regular file with the expected bytes fails the
    /// comparison or the read (`EISDIR`; a FIFO opened without blocking reads as empty).
    fn read_back(&self, len: usize) -> io::Result<Vec<u8>> {
        let f = open_nofollow(&self.target)?;
        let mut out = Vec::with_capacity(len.saturating_add(1));
        f.take(u64::try_from(len).unwrap_or(u64::MAX).saturating_add(1))
            .read_to_end(&mut out)?;
        Ok(out)
    }

    /// Removes the temp files a killed writer left in `dir` (only ours:
    /// `.NAME.XXXXXXXX.kubesafe-tmp`), under the lock, before a write.
    ///
    /// In the manifest directory every writer of these names holds the lock (lock file
    /// and temp files are named after the same file in the same directory), so all of
    /// them go (`min_age` `None`). Should the lock be bypassed (the lock file deleted
    /// while held), a live writer's temp file removed here makes that writer's rename
    /// fail: a clean error, never another writer's half-written file renamed over the
    /// manifest. The lock does not cover a backup directory: writers of a manifest of
    /// the same name in another directory (another lock), or on another node sharing the
    /// directory, may be writing a backup there right now, so only temp files last
    /// written at least `min_age` ago go ([`STALE_BACKUP_TEMP_AGE`]).
    fn remove_stale_temps(&self, dir: &Path, min_age: Option<Duration>) {
        let mut prefix = OsString::from(".");
        prefix.push(&self.file_name);
        prefix.push(".");
        let Some(prefix) = prefix.to_str().map(str::to_owned) else {
            return;
        };
        let Ok(entries) = fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            let is_ours = name
                .strip_prefix(&prefix)
                .and_then(|rest| rest.strip_suffix(TEMP_SUFFIX))
                .is_some_and(|hex| hex.len() == 8 && hex.bytes().all(|b| b.is_ascii_hexdigit()));
            // `DirEntry::metadata` does not follow a symbolic link.
            let stale = || {
                entry
                    .metadata()
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| SystemTime::now().duration_since(t).ok())
                    .is_some_and(|age| min_age.is_none_or(|min| age >= min))
            };
            if is_ours && stale() {
                tracing::info!(
                    file = name,
                    "removing stale temp file of an interrupted write"
                );
                let _ = fs::remove_file(entry.path());
            }
        }
    }

    /// Creates `path` exclusively (never following or reusing anything already there).
    fn create_temp(&self, path: &Path) -> io::Result<File> {
        self.hook(Step::CreateTemp).and_then(|()| {
            OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
                .open(path)
        })
    }

    /// Writes `bytes` to a new hidden temp file in `dir` with the manifest's owner and
    /// mode, fsynced. The returned guard removes it unless committed. Must be called
    /// under the lock.
    fn write_temp(&self, dir: &Path, meta: &fs::Metadata, bytes: &[u8]) -> Result<TempFile> {
        let mut file = None;
        let mut guard = None;
        for _ in 0..16 {
            let mut name = OsString::from(".");
            name.push(&self.file_name);
            name.push(".");
            name.push(random_suffix());
            name.push(TEMP_SUFFIX);
            let path = dir.join(name);
            match self.create_temp(&path) {
                Ok(f) => {
                    file = Some(f);
                    guard = Some(TempFile {
                        path,
                        committed: false,
                    });
                    break;
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(io_err(&path, "create temporary file")(e)),
            }
        }
        let (Some(mut file), Some(guard)) = (file, guard) else {
            return Err(Error::Io {
                path: dir.to_path_buf(),
                action: "create temporary file",
                source: io::Error::from(io::ErrorKind::AlreadyExists),
            });
        };
        let p = guard.path.clone();
        self.hook(Step::WriteTemp)
            .and_then(|()| file.write_all(bytes))
            .map_err(io_err(&p, "write temporary file"))?;
        let (uid, gid) = (meta.uid(), meta.gid());
        let tmeta = file
            .metadata()
            .map_err(io_err(&p, "inspect temporary file"))?;
        let chowned = (tmeta.uid(), tmeta.gid()) != (uid, gid);
        if chowned {
            self.hook(Step::PreserveOwner)
                .and_then(|()| std::os::unix::fs::fchown(&file, Some(uid), Some(gid)))
                .map_err(io_err(
                    &p,
                    "give the temporary file the manifest's owner and group",
                ))?;
        }
        // After chown, which may clear set-id bits. Skipped when the temp file already has
        // the mode (a 0600 manifest, as kubeadm writes them, and no chown).
        let mode = meta.mode() & 0o7777;
        self.hook(Step::PreserveMode)
            .and_then(|()| {
                if chowned || tmeta.mode() & 0o7777 != mode {
                    file.set_permissions(fs::Permissions::from_mode(mode))
                } else {
                    Ok(())
                }
            })
            .map_err(io_err(&p, "give the temporary file the manifest's mode"))?;
        self.hook(Step::SyncTemp)
            .and_then(|()| file.sync_all())
            .map_err(io_err(&p, "fsync temporary file"))?;
        Ok(guard)
    }

    /// Replaces the manifest's bytes: temp file in the same directory, rename, directory
    /// fsync. On any error before the rename the original is untouched and the temp file
    /// is gone.
    fn replace_contents(&self, meta: &fs::Metadata, bytes: &[u8]) -> Result<()> {
        if meta.nlink() > 1 {
            tracing::warn!(path = %self.target.display(), links = meta.nlink(),
                "the manifest has other hard links; they keep the old content");
        }
        self.remove_stale_temps(&self.dir, None);
        let mut temp = self.write_temp(&self.dir, meta, bytes)?;
        self.hook(Step::Rename)
            .and_then(|()| fs::rename(&temp.path, &self.target))
            .map_err(io_err(&self.target, "rename the temporary file over"))?;
        temp.committed = true;
        sync_dir(&self.dir, || self.hook(Step::SyncDir)).map_err(|source| Error::NotDurable {
            path: self.path.clone(),
            source,
        })
    }

    /// Writes a backup of `bytes` (same owner and mode as the manifest) into the backup
    /// directory: `NAME.TIMESTAMP.SHA256PREFIX{suffix}`, atomically, fsynced.
    fn write_backup(
        &self,
        bytes: &[u8],
        meta: &fs::Metadata,
        suffix: &str,
    ) -> Result<Option<PathBuf>> {
        let Some(dir) = self.backup_dir()? else {
            return Ok(None);
        };
        self.hook(Step::Backup)
            .map_err(io_err(&dir, "write backup"))?;
        // Refuse a directory in (or under) the manifest directory before creating it: the
        // kubelet would load backups there, or log an error about a subdirectory on every
        // pass.
        let resolved = resolve_beyond(&dir).map_err(io_err(&dir, "resolve backup directory"))?;
        if resolved.starts_with(&self.dir) {
            let place = if resolved == self.dir { "" } else { "inside " };
            return Err(Error::InvalidArgument(format!(
                "backup directory {} is {place}the manifest directory {}; the kubelet would \
                 load the backups",
                dir.display(),
                self.dir.display()
            )));
        }
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(io_err(&dir, "create backup directory"))?;
        let canonical = fs::canonicalize(&dir).map_err(io_err(&dir, "resolve backup directory"))?;
        // Again on what now exists (a link may have changed in between).
        if canonical.starts_with(&self.dir) {
            return Err(Error::InvalidArgument(format!(
                "backup directory {} is inside the manifest directory {}; the kubelet would \
                 load the backups",
                dir.display(),
                self.dir.display()
            )));
        }
        let hash = report::sha256_hex(bytes);
        let mut name = self.file_name.clone();
        name.push(format!(
            ".{}.{}{suffix}",
            timestamp(SystemTime::now()),
            hash.get(..16).unwrap_or(&hash)
        ));
        let mut path = canonical.join(&name);
        let mut n = 1;
        while path.exists() {
            let mut alt = name.clone();
            alt.push(format!("-{n}"));
            path = canonical.join(alt);
            n += 1;
        }
        self.remove_stale_temps(&canonical, Some(STALE_BACKUP_TEMP_AGE));
        let mut temp = self.write_temp(&canonical, meta, bytes)?;
        fs::rename(&temp.path, &path).map_err(io_err(&path, "rename backup into place"))?;
        temp.committed = true;
        sync_dir(&canonical, || Ok(())).map_err(io_err(&canonical, "fsync backup directory"))?;
        Ok(Some(path))
    }
}

/// `path` made absolute and resolved as far as it exists: its longest existing ancestor
/// canonicalized (symbolic links followed), then the components that do not exist yet
/// (`.` and `..` among them applied to the path: they cannot be links).
fn resolve_beyond(path: &Path) -> io::Result<PathBuf> {
    let path = std::path::absolute(path)?;
    let mut existing = path.as_path();
    let mut missing = Vec::new();
    while fs::symlink_metadata(existing).is_err() {
        let (Some(parent), Some(name)) = (existing.parent(), existing.components().next_back())
        else {
            break;
        };
        missing.push(name);
        existing = parent;
    }
    let mut out = fs::canonicalize(existing)?;
    for c in missing.into_iter().rev() {
        match c {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::CurDir => {}
            other => out.push(other),
        }
    }
    Ok(out)
}

fn sync_dir(dir: &Path, hook: impl FnOnce() -> io::Result<()>) -> io::Result<()> {
    hook()?;
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    const POD: &str = "apiVersion: v1\nkind: Pod\nspec:\n  containers:\n  - command:\n    - kube-apiserver\n    - --a=1\n    name: kube-apiserver\n";

    fn setup() -> (tempfile::TempDir, PathBuf) {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("manifests");
        fs::create_dir(&dir).unwrap();
        let path = dir.join("kube-apiserver.yaml");
        fs::write(&path, POD).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        (root, path)
    }

    fn listing(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn timestamps_are_utc_civil_dates() {
        let t = UNIX_EPOCH + Duration::new(951_782_400 + 3_723, 5); // 2000-02-29 01:02:03
        assert_eq!(timestamp(t), "20000229T010203.000000005Z");
        assert_eq!(timestamp(UNIX_EPOCH), "19700101T000000.000000000Z");
    }

    #[test]
    fn every_failing_step_leaves_the_original_and_no_temp_file() {
        let steps = [
            Step::Backup,
            Step::CreateTemp,
            Step::WriteTemp,
            Step::PreserveMode,
            Step::SyncTemp,
            Step::Rename,
        ];
        for (step, backup) in steps
            .iter()
            .flat_map(|s| [(*s, Backup::Sibling), (*s, Backup::Disabled)])
            .filter(|(s, b)| !(*s == Step::Backup && *b == Backup::Disabled))
        {
            for errno in [libc::ENOSPC, libc::EROFS, libc::EIO] {
                let (root, path) = setup();
                let mut file =
                    ManifestFile::open(&path, FileOptions::new().backup(backup.clone())).unwrap();
                file.hook = Some(Arc::new(move |s| {
                    if s == step {
                        Err(io::Error::from_raw_os_error(errno))
                    } else {
                        Ok(())
                    }
                }));
                let err = file.apply(&Edit::new().set_flag("--a", "2")).unwrap_err();
                assert!(matches!(err, Error::Io { .. }), "{step:?}: {err}");
                assert!(
                    err.to_string()
                        .contains(&io::Error::from_raw_os_error(errno).to_string()),
                    "{err}"
                );
                assert_eq!(fs::read_to_string(&path).unwrap(), POD, "{step:?}");
                let meta = fs::metadata(&path).unwrap();
                assert_eq!(meta.mode() & 0o7777, 0o600);
                // Only the manifest and the (hidden, permanent) lock file remain.
                let dir = path.parent().unwrap();
                let names = listing(dir);
                assert!(
                    names == ["kube-apiserver.yaml"]
                        || names == [".kube-apiserver.yaml.lock", "kube-apiserver.yaml"],
                    "{step:?}: {names:?}"
                );
                // And no backup of a change that did not happen (nor a backup temp).
                let backups = root.path().join("kubesafe-backups");
                if backups.exists() {
                    assert!(
                        listing(&backups).is_empty(),
                        "{step:?}: {:?}",
                        listing(&backups)
                    );
                }
            }
        }
    }

    #[test]
    fn directory_fsync_failure_is_reported_as_not_durable() {
        let (_root, path) = setup();
        let mut file = ManifestFile::open(&path, FileOptions::default()).unwrap();
        file.hook = Some(Arc::new(|s| {
            if s == Step::SyncDir {
                Err(io::Error::from_raw_os_error(libc::EIO))
            } else {
                Ok(())
            }
        }));
        let err = file.apply(&Edit::new().set_flag("--a", "2")).unwrap_err();
        assert!(matches!(err, Error::NotDurable { .. }), "{err}");
        // The rename happened: the new content is visible, and the error says so.
        assert!(fs::read_to_string(&path).unwrap().contains("--a=2"));
    }

    /// A failure after the rename says the file was written (the only errors that do,
    /// with `NotDurable`), and keeps the backup.
    #[test]
    fn a_failed_reread_says_the_file_was_written() {
        let (root, path) = setup();
        let mut file = ManifestFile::open(&path, FileOptions::default()).unwrap();
        file.hook = Some(Arc::new(|s| {
            if s == Step::Reread {
                Err(io::Error::from_raw_os_error(libc::EIO))
            } else {
                Ok(())
            }
        }));
        let err = file.apply(&Edit::new().set_flag("--a", "2")).unwrap_err();
        assert!(matches!(err, Error::WrittenButUnverified { .. }), "{err}");
        assert!(
            err.to_string()
                .contains("the new content was renamed into place, but re-reading it failed"),
            "{err}"
        );
        assert!(fs::read_to_string(&path).unwrap().contains("--a=2"));
        assert_eq!(listing(&root.path().join("kubesafe-backups")).len(), 1);
        let err = file
            .restore(
                POD.as_bytes(),
                &report::sha256_hex(&fs::read(&path).unwrap()),
                false,
            )
            .unwrap_err();
        assert!(matches!(err, Error::WrittenButUnverified { .. }), "{err}");
        assert_eq!(fs::read_to_string(&path).unwrap(), POD);
    }

    #[test]
    fn a_held_lock_spans_apply_and_restore_and_excludes_other_writers() {
        let (_root, path) = setup();
        let file = ManifestFile::open(&path, FileOptions::default()).unwrap();
        let other = ManifestFile::open(
            &path,
            FileOptions::default().lock_timeout(Duration::from_millis(50)),
        )
        .unwrap();
        let original = fs::read(&path).unwrap();
        let locked = file.lock_exclusive().unwrap();
        let report = locked
            .apply_if_unchanged(
                &Edit::new().set_flag("--a", "2"),
                &report::sha256_hex(&original),
            )
            .unwrap();
        assert!(report.written);
        // Another writer (here: another thread with its own descriptor, as another
        // process would have) waits for the hold and gives up, between our apply and
        // our restore.
        let after = report.after_sha256.clone();
        let (err1, err2) = std::thread::scope(|s| {
            s.spawn(|| {
                (
                    other.apply(&Edit::new().set_flag("--a", "3")).unwrap_err(),
                    other.restore(b"x", &after, false).unwrap_err(),
                )
            })
            .join()
            .unwrap()
        });
        assert!(matches!(err1, Error::LockTimeout { .. }), "{err1}");
        assert!(matches!(err2, Error::LockTimeout { .. }), "{err2}");
        // Our own writes under the hold do not wait for it.
        let restored = locked
            .restore(&original, &report.after_sha256, true)
            .unwrap();
        assert!(restored.written);
        assert!(restored.kept.unwrap().exists());
        assert_eq!(fs::read(&path).unwrap(), original);
        // A restore under the hold still refuses to overwrite unexpected content.
        let err = locked
            .restore(b"x", &report.after_sha256, false)
            .unwrap_err();
        assert!(matches!(err, Error::Changed { .. }), "{err}");
        drop(locked.unlock());
        other.apply(&Edit::new().set_flag("--a", "3")).unwrap();
        assert!(fs::read_to_string(&path).unwrap().contains("--a=3"));
    }

    /// Taking the lock again on the thread that holds it through a `LockedManifestFile`
    /// can never succeed (`flock` excludes a second descriptor of the same process like any
    /// other writer): it fails at once, saying so, instead of waiting out the timeout and
    /// blaming "another writer".
    #[test]
    fn taking_the_lock_again_on_the_holding_thread_fails_at_once() {
        let (_root, path) = setup();
        let file = ManifestFile::open(&path, FileOptions::default()).unwrap();
        let same_path = ManifestFile::open(&path, FileOptions::default()).unwrap();
        let locked = file.lock_exclusive().unwrap();
        let started = Instant::now();
        for err in [
            file.apply(&Edit::new().set_flag("--a", "2")).unwrap_err(),
            same_path
                .apply(&Edit::new().set_flag("--a", "2"))
                .unwrap_err(),
            same_path
                .restore(b"x", &report::sha256_hex(POD.as_bytes()), false)
                .unwrap_err(),
            file.lock_exclusive().unwrap_err(),
        ] {
            assert!(
                matches!(
                    err,
                    Error::LockTimeout {
                        held_by_this_thread: true,
                        waited_ms: 0,
                        ..
                    }
                ),
                "{err}"
            );
            assert!(
                err.to_string().contains("already held by this thread"),
                "{err}"
            );
        }
        assert!(started.elapsed() < Duration::from_secs(5));
        assert_eq!(fs::read_to_string(&path).unwrap(), POD);
        // Writing through the hold works; once it is released, so does a new lock.
        assert!(
            locked
                .apply(&Edit::new().set_flag("--a", "2"))
                .unwrap()
                .written
        );
        drop(locked);
        assert!(
            file.apply(&Edit::new().set_flag("--a", "3"))
                .unwrap()
                .written
        );
        let again = file.lock_exclusive().unwrap();
        drop(again.unlock());
        assert!(file.lock_exclusive().is_ok());
    }

    #[test]
    fn stale_temp_files_are_removed_under_the_lock() {
        let (root, path) = setup();
        let dir = path.parent().unwrap();
        // What a writer killed between creating its temp file and renaming it leaves.
        let stale = dir.join(".kube-apiserver.yaml.0123abcd.kubesafe-tmp");
        let foreign = dir.join(".kube-apiserver.yaml.swp");
        fs::write(&stale, "partial").unwrap();
        fs::write(&foreign, "vim").unwrap();
        let backups = root.path().join("kubesafe-backups");
        fs::create_dir(&backups).unwrap();
        let stale_backup = backups.join(".kube-apiserver.yaml.89abcdef.kubesafe-tmp");
        fs::write(&stale_backup, "partial backup").unwrap();
        File::options()
            .write(true)
            .open(&stale_backup)
            .unwrap()
            .set_modified(SystemTime::now() - STALE_BACKUP_TEMP_AGE)
            .unwrap();
        // A recent one may be a live writer's under another lock: kept.
        let recent_backup = backups.join(".kube-apiserver.yaml.01234567.kubesafe-tmp");
        fs::write(&recent_backup, "live backup").unwrap();
        let file = ManifestFile::open(&path, FileOptions::default()).unwrap();
        file.apply(&Edit::new().set_flag("--a", "2")).unwrap();
        assert!(!stale.exists());
        assert!(!stale_backup.exists());
        assert!(recent_backup.exists());
        assert!(foreign.exists(), "only our own temp files are removed");
    }

    /// Two manifests of the same name in two directories (two locks) sharing one backup
    /// directory — `Backup::Sibling` of `/etc/kubernetes/manifests` and
    /// `/etc/kubernetes/manifests-b`, or one backup share for several nodes: a writer's
    /// scan for stale backup temp files must not remove the other's live one (its backup
    /// rename would then fail and its apply with it).
    #[test]
    fn a_writer_under_another_lock_keeps_a_live_backup_temp_file() {
        let (root, path_a) = setup();
        let dir_b = root.path().join("manifests-b");
        fs::create_dir(&dir_b).unwrap();
        let path_b = dir_b.join("kube-apiserver.yaml");
        fs::write(&path_b, POD).unwrap();
        let backups = root.path().join("kubesafe-backups");
        let b = ManifestFile::open(&path_b, FileOptions::default()).unwrap();
        let mut a = ManifestFile::open(&path_a, FileOptions::default()).unwrap();
        let b_done = Arc::new(std::sync::Mutex::new(None));
        let b_result = Arc::clone(&b_done);
        let backup_dir = backups.clone();
        a.hook = Some(Arc::new(move |s| {
            // A's backup temp file is written and about to be renamed: B writes now.
            let mut done = b_result.lock().unwrap();
            if s == Step::SyncTemp && done.is_none() {
                let live = listing(&backup_dir)
                    .into_iter()
                    .filter(|n| n.ends_with(TEMP_SUFFIX))
                    .count();
                assert_eq!(live, 1, "A's backup temp file exists");
                *done = Some(
                    b.apply(&Edit::new().set_flag("--a", "b"))
                        .map(|r| r.written),
                );
            }
            Ok(())
        }));
        let report = a.apply(&Edit::new().set_flag("--a", "a"));
        assert!(matches!(*b_done.lock().unwrap(), Some(Ok(true))));
        let report = report.unwrap();
        assert!(report.written);
        assert!(report.backup.is_some_and(|p| p.exists()));
        assert!(fs::read_to_string(&path_a).unwrap().contains("--a=a"));
        assert!(fs::read_to_string(&path_b).unwrap().contains("--a=b"));
    }

    /// Whatever a killed writer left under one of our temp names in the manifest
    /// directory (partial content, a symbolic link, a 0000-mode file) is removed by the
    /// next writer, never followed or reused.
    #[test]
    fn a_leftover_temp_file_is_removed_never_followed() {
        let (root, path) = setup();
        let dir = path.parent().unwrap();
        let file = ManifestFile::open(&path, FileOptions::new().backup(Backup::Disabled)).unwrap();
        let temp = dir.join(".kube-apiserver.yaml.4d2c9e01.kubesafe-tmp");
        let outside = root.path().join("outside");
        fs::write(&outside, "not ours").unwrap();
        for (i, leftover) in ["partial", "symlink", "unreadable"].into_iter().enumerate() {
            match leftover {
                "partial" => fs::write(&temp, "apiVersion: v1\nki").unwrap(),
                "symlink" => std::os::unix::fs::symlink(&outside, &temp).unwrap(),
                _ => {
                    fs::write(&temp, "x").unwrap();
                    fs::set_permissions(&temp, fs::Permissions::from_mode(0o000)).unwrap();
                }
            }
            let value = format!("{}", i + 2);
            let report = file.apply(&Edit::new().set_flag("--a", &value)).unwrap();
            assert!(report.written, "{leftover}");
            let text = fs::read_to_string(&path).unwrap();
            assert_eq!(
                text,
                POD.replace("--a=1", &format!("--a={value}")),
                "{leftover}"
            );
            assert_eq!(
                fs::metadata(&path).unwrap().mode() & 0o7777,
                0o600,
                "{leftover}"
            );
            assert_eq!(
                listing(dir),
                [".kube-apiserver.yaml.lock", "kube-apiserver.yaml"]
            );
            assert_eq!(
                fs::read_to_string(&outside).unwrap(),
                "not ours",
                "{leftover}"
            );
        }
    }

    /// If the lock is bypassed (its file deleted while held) and another writer's sweep
    /// removes this writer's temp file before the rename, the write fails cleanly: the
    /// manifest keeps its bytes, and no one else's file is renamed over it.
    #[test]
    fn a_temp_file_removed_before_the_rename_fails_the_write_cleanly() {
        let (_root, path) = setup();
        let dir = path.parent().unwrap().to_path_buf();
        let mut file =
            ManifestFile::open(&path, FileOptions::new().backup(Backup::Disabled)).unwrap();
        file.hook = Some(Arc::new(move |s| {
            if s == Step::Rename {
                for e in fs::read_dir(&dir)? {
                    let e = e?;
                    if e.file_name().to_string_lossy().ends_with(TEMP_SUFFIX) {
                        fs::remove_file(e.path())?;
                    }
                }
            }
            Ok(())
        }));
        let err = file.apply(&Edit::new().set_flag("--a", "2")).unwrap_err();
        assert!(
            matches!(&err, Error::Io { source, .. } if source.kind() == io::ErrorKind::NotFound),
            "{err}"
        );
        assert_eq!(fs::read_to_string(&path).unwrap(), POD);
        assert_eq!(
            listing(path.parent().unwrap()),
            [".kube-apiserver.yaml.lock", "kube-apiserver.yaml"]
        );
    }

    /// Threads sharing one lock hold write one after the other (each write sweeps the
    /// directory of the manifest's temp files): every write succeeds and verifies, and
    /// the file is always whole.
    #[test]
    fn threads_sharing_a_held_lock_write_in_turn() {
        let (_root, path) = setup();
        let file = ManifestFile::open(&path, FileOptions::new().backup(Backup::Disabled)).unwrap();
        let locked = file.lock_exclusive().unwrap();
        std::thread::scope(|s| {
            for t in 0..4 {
                let locked = &locked;
                s.spawn(move || {
                    for i in 0..15 {
                        let value = format!("t{t}i{i}");
                        let r = locked.apply(&Edit::new().set_flag("--a", &value)).unwrap();
                        assert!(r.written);
                    }
                });
            }
        });
        let text = fs::read_to_string(&path).unwrap();
        assert!(Manifest::parse(text.as_str()).is_ok(), "{text}");
        assert!(text.contains("--a=t"), "{text}");
        assert_eq!(
            listing(path.parent().unwrap()),
            [".kube-apiserver.yaml.lock", "kube-apiserver.yaml"]
        );
    }

    /// Full re-parses (the default) and window verification write the same bytes and
    /// report the same thing, for edits of both kinds.
    #[test]
    fn full_reparse_option_writes_the_same_bytes() {
        let edits = [
            Edit::new().set_flag("--a", "2"),
            Edit::new().set_flag("--b", "x y").remove_flag("--a"),
            Edit::new().set_flag("--a", "1"),
        ];
        let (_root, path) = setup();
        for edit in &edits {
            let mut results = Vec::new();
            for full in [false, true] {
                fs::write(&path, POD).unwrap();
                let file = ManifestFile::open(
                    &path,
                    FileOptions::new()
                        .backup(Backup::Disabled)
                        .full_reparse(full),
                )
                .unwrap();
                assert_eq!(file.options.full_reparse, full);
                let r = file.apply(edit).unwrap();
                assert_eq!(fs::read(&path).unwrap(), r.new_content);
                results.push((
                    r.new_content,
                    r.changed,
                    r.data_changed,
                    r.diff,
                    r.after_sha256,
                ));
            }
            assert_eq!(results[0], results[1], "{edit:?}");
        }
        assert!(FileOptions::default().full_reparse);
    }
}
