//! The file sink: JSON Lines, locked appends, fsync policy, torn-tail recovery and
//! size-based rotation.
//!
//! # Files
//!
//! For a log at `dir/audit.jsonl`:
//!
//! * `dir/audit.jsonl` — the active file, one canonical record per line;
//! * `dir/audit.jsonl.1`, `.2`, … — rotated files, oldest first (the chain runs from
//!   `.1` through the highest number into the active file);
//! * `dir/audit.jsonl.lock` — the stable lock file (never renamed, never written);
//! * `dir/audit.jsonl.torn-<unix-nanos>` — torn tails moved aside by recovery.
//!
//! All are created with mode `0600`.
//!
//! # Locking and several writers
//!
//! Every append takes the exclusive `flock` (`std::fs::File::lock`) of the lock file
//! ([`LockMode::PerAppend`], the default) and, under it:
//!
//! 1. `stat`s the log path and compares device, inode and length with what this writer
//!    last saw. If another process appended or rotated since, the writer reopens the
//!    file if needed and re-reads the tail to learn the current head (and recovers a
//!    torn line a crashed writer may have left);
//! 2. seals the records against that head and writes them with one `write` on an
//!    `O_APPEND` descriptor;
//! 3. fsyncs according to the [`FsyncPolicy`] and rotates if the file is over size.
//!
//! So any number of processes (and sinks in one process) can append to one log: the
//! chain never forks and no record is lost. A lock on the log file itself would be
//! useless across rotation (rename swaps the inode), hence the separate lock file.
//! With [`LockMode::Held`] the lock is taken once at open and kept for the writer's
//! lifetime: faster, but a second writer gets [`Error::Locked`].
//!
//! # Crash recovery
//!
//! A record line reaches the file in one `write` ending with its newline, so a crash can
//! only leave a *prefix* of the last line: bytes after the last newline. Opening the
//! sink (and any later tail re-read) moves those bytes to `audit.jsonl.torn-<nanos>`,
//! fsyncs it, truncates the log to the last newline, logs a `tracing` warning and lists
//! it in [`FileSink::recovered`]. The chain continues from the last complete record.
//! A complete final line that is not a valid record is *not* a crash artifact: the sink
//! refuses to append ([`Error::CorruptTail`]).

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::chain::{Chain, ChainHead};
use crate::error::{Error, Result};
use crate::query::{Filter, Stats, StatsBuilder};
use crate::record::{AuditRecord, MAX_RECORD_BYTES, SealedRecord};
use crate::sink::AuditSink;

/// When appended records are made durable with `fdatasync`.
///
/// Under every policy, when `append`/`append_batch` returns `Ok` its records have been
/// written to the file with one `write(2)`: they are in the kernel's page cache and
/// survive a crash of the process (even `SIGKILL`). The policies differ in what survives
/// a power loss or a kernel crash.
///
/// If an fsync fails — inline or in the background — the sink keeps refusing every later
/// append and flush with [`Error::Io`] (op `"fsync"`): after a failed fsync the kernel
/// may have dropped the unsynced pages and marked them clean, so a later fsync could
/// report success without them. Reopen the sink once the disk is fixed, then verify.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum FsyncPolicy {
    /// Sync before every `append`/`append_batch` returns (a batch is one write and one
    /// sync). A record whose append returned `Ok` survives a power loss. When the sync
    /// fails, the append returns the error although its records were written (they may
    /// or may not survive a power loss).
    EveryRecord,
    /// Group commit: a background thread syncs once `records` records are unsynced, or
    /// when the oldest unsynced record is `interval` old, while appends go on. An append
    /// that would leave `2 × records` or more unsynced (the disk is behind) syncs inline
    /// before returning. So when an append returns, its records survive a process crash
    /// but not yet a power loss: they are durable after the next completed sync (or
    /// [`flush`](crate::AuditSink::flush), which syncs and reports errors). A power loss
    /// loses at most the records appended since the last completed sync — fewer than
    /// `2 × records`, and with `interval`, normally none older than `interval` plus one
    /// sync. A failed background sync is reported by the next append or flush.
    Batch {
        /// Sync after this many unsynced records (at least 1).
        records: usize,
        /// Sync at the latest this long after the first unsynced record.
        interval: Option<Duration>,
    },
    /// Leave it to the kernel (records survive a process crash, not a power loss).
    Never,
}

/// How the writer uses the lock file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum LockMode {
    /// Lock around each append; several writers may share the log (default).
    PerAppend,
    /// Lock once at open for the sink's lifetime; other writers get [`Error::Locked`].
    Held,
}

/// Options of [`FileSink::open`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct FileSinkOptions {
    /// Durability policy (default [`FsyncPolicy::EveryRecord`]).
    pub fsync: FsyncPolicy,
    /// Rotate once the active file reaches this many bytes (default: never).
    pub rotate_bytes: Option<u64>,
    /// Locking (default [`LockMode::PerAppend`]).
    pub lock: LockMode,
}

impl Default for FileSinkOptions {
    fn default() -> Self {
        FileSinkOptions {
            fsync: FsyncPolicy::EveryRecord,
            rotate_bytes: None,
            lock: LockMode::PerAppend,
        }
    }
}

impl FileSinkOptions {
    /// Defaults: fsync every record, no rotation, lock per append.
    pub fn new() -> Self {
        FileSinkOptions::default()
    }

    /// Sets the fsync policy.
    pub fn fsync(mut self, policy: FsyncPolicy) -> Self {
        self.fsync = policy;
        self
    }

    /// Rotates at `bytes`.
    pub fn rotate_bytes(mut self, bytes: u64) -> Self {
        self.rotate_bytes = Some(bytes);
        self
    }

    /// Sets the lock mode.
    pub fn lock(mut self, mode: LockMode) -> Self {
        self.lock = mode;
        self
    }
}

/// A torn tail moved aside by crash recovery.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Recovery {
    /// The log file it was cut from.
    pub log: PathBuf,
    /// Byte offset in that file where the torn line started.
    pub offset: u64,
    /// Its length.
    pub bytes: u64,
    /// Where the bytes were saved.
    pub moved_to: PathBuf,
}

/// Identity of an open file (device and inode), to notice rotation by other writers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct FileId(u64, u64);

#[cfg(unix)]
fn file_id(meta: &std::fs::Metadata) -> FileId {
    use std::os::unix::fs::MetadataExt;
    FileId(meta.dev(), meta.ino())
}

#[cfg(not(unix))]
fn file_id(_meta: &std::fs::Metadata) -> FileId {
    // Without inode numbers every append under the lock reopens the file (correct, slower).
    FileId(u64::MAX, u64::MAX)
}

struct Active {
    file: Arc<File>,
    id: FileId,
    len: u64,
}

/// State shared with the group-commit thread.
struct FlushState {
    file: Option<Arc<File>>,
    /// When the oldest unsynced record was written.
    dirty_since: Option<Instant>,
    /// Records written and not yet covered by a completed sync.
    pending: usize,
    /// The record threshold was reached: sync now.
    urgent: bool,
    stop: bool,
    /// A background sync failed (kind, message); handed to the appender.
    failed: Option<(std::io::ErrorKind, String)>,
}

/// The group-commit thread: syncs when `records` are pending or the oldest pending
/// record is `interval` old, while appends go on.
struct Flusher {
    shared: Arc<(Mutex<FlushState>, Condvar)>,
    handle: Option<JoinHandle<()>>,
}

impl Flusher {
    fn start(interval: Option<Duration>, path: PathBuf) -> Flusher {
        let shared = Arc::new((
            Mutex::new(FlushState {
                file: None,
                dirty_since: None,
                pending: 0,
                urgent: false,
                stop: false,
                failed: None,
            }),
            Condvar::new(),
        ));
        let s = Arc::clone(&shared);
        let handle = std::thread::Builder::new()
            .name("audit-log-fsync".into())
            .spawn(move || {
                let (m, cv) = &*s;
                let mut st = m.lock().unwrap_or_else(|e| e.into_inner());
                loop {
                    if st.stop {
                        break;
                    }
                    let due = if st.pending == 0 {
                        None
                    } else if st.urgent {
                        Some(Instant::now())
                    } else {
                        st.dirty_since.zip(interval).map(|(t, iv)| t + iv)
                    };
                    let now = Instant::now();
                    match due {
                        None => st = cv.wait(st).unwrap_or_else(|e| e.into_inner()),
                        Some(d) if now < d => {
                            st = cv.wait_timeout(st, d - now).unwrap_or_else(|e| e.into_inner()).0;
                        }
                        Some(_) => {
                            let snapshot = st.pending;
                            st.urgent = false;
                            let file = st.file.clone();
                            drop(st);
                            let result = file.map_or(Ok(()), |f| f.sync_data());
                            st = m.lock().unwrap_or_else(|e| e.into_inner());
                            match result {
                                Ok(()) => {
                                    st.pending = st.pending.saturating_sub(snapshot);
                                    st.dirty_since = (st.pending > 0).then(Instant::now);
                                }
                                Err(e) => {
                                    // Not durable: keep the records pending, stop retrying
                                    // on the timer, and let the next append report it.
                                    tracing::error!(path = %path.display(), error = %e, "audit log group-commit fsync failed");
                                    st.failed.get_or_insert((e.kind(), e.to_string()));
                                    st.dirty_since = None;
                                }
                            }
                        }
                    }
                }
            })
            .ok();
        Flusher { shared, handle }
    }

    /// Notes `n` records written to `file`; returns `Some(snapshot)` when the appender
    /// must sync inline (more than twice the threshold pending: the disk is behind).
    fn written(&self, file: &Arc<File>, n: usize, records: usize) -> Option<usize> {
        let (m, cv) = &*self.shared;
        let mut st = m.lock().unwrap_or_else(|e| e.into_inner());
        st.file = Some(Arc::clone(file));
        st.pending += n;
        let newly_dirty = st.dirty_since.is_none();
        if newly_dirty {
            st.dirty_since = Some(Instant::now());
        }
        if st.pending >= records && !st.urgent {
            st.urgent = true;
            cv.notify_one();
        } else if newly_dirty {
            cv.notify_one();
        }
        (st.pending >= records.saturating_mul(2)).then_some(st.pending)
    }

    /// A sync covering `snapshot` records completed.
    fn synced(&self, snapshot: usize) {
        let (m, _) = &*self.shared;
        let mut st = m.lock().unwrap_or_else(|e| e.into_inner());
        st.pending = st.pending.saturating_sub(snapshot);
        if st.pending == 0 {
            st.dirty_since = None;
            st.urgent = false;
        }
    }

    fn pending(&self) -> usize {
        let (m, _) = &*self.shared;
        m.lock().unwrap_or_else(|e| e.into_inner()).pending
    }

    /// Takes the failure of a background sync, if one happened.
    fn take_failure(&self) -> Option<(std::io::ErrorKind, String)> {
        let (m, _) = &*self.shared;
        m.lock().unwrap_or_else(|e| e.into_inner()).failed.take()
    }
}

impl Drop for Flusher {
    fn drop(&mut self) {
        let (m, cv) = &*self.shared;
        m.lock().unwrap_or_else(|e| e.into_inner()).stop = true;
        cv.notify_one();
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// The JSON Lines file sink (see the [module docs](self)).
pub struct FileSink {
    path: PathBuf,
    lock_path: PathBuf,
    lock: File,
    opts: FileSinkOptions,
    active: Option<Active>,
    head: ChainHead,
    head_valid: bool,
    scratch: Vec<u8>,
    out: Vec<u8>,
    flusher: Option<Flusher>,
    recovered: Vec<Recovery>,
    /// The first failed fsync (kind, message): from then on the sink refuses to append
    /// or flush (see [`FsyncPolicy`]).
    sync_failed: Option<(std::io::ErrorKind, String)>,
}

impl std::fmt::Debug for FileSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileSink")
            .field("path", &self.path)
            .field("opts", &self.opts)
            .field("head", &self.head)
            .finish_non_exhaustive()
    }
}

/// The log's path with symbolic links resolved: the file itself when it exists,
/// else its directory. Every writer and reader that reaches one log, by whatever
/// path, then takes the same `<log>.lock` and rotates the same files — a lock
/// derived from a symlink's name would let two writers fork the chain.
pub(crate) fn resolve_log_path(path: &Path) -> Result<PathBuf> {
    match std::fs::canonicalize(path) {
        Ok(resolved) => Ok(resolved),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if std::fs::symlink_metadata(path).is_ok() {
                return Err(Error::io("resolve the dangling symbolic link", path, e));
            }
            let name = path.file_name().ok_or_else(|| {
                Error::io(
                    "resolve",
                    path,
                    std::io::Error::new(std::io::ErrorKind::InvalidInput, "no file name"),
                )
            })?;
            let parent = path
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or_else(|| Path::new("."));
            let dir = std::fs::canonicalize(parent).map_err(|e| Error::io("resolve", parent, e))?;
            Ok(dir.join(name))
        }
        Err(e) => Err(Error::io("resolve", path, e)),
    }
}

/// `<log>.lock`.
pub(crate) fn lock_path(path: &Path) -> PathBuf {
    sibling(path, "lock")
}

fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".");
    s.push(suffix);
    PathBuf::from(s)
}

fn open_options_0600(o: &mut OpenOptions) -> &mut OpenOptions {
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o600);
    }
    o
}

fn sync_dir(path: &Path) {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

/// The files of a log set in chain order: rotated `<log>.N` by ascending N, then `<log>`.
pub(crate) fn log_files(path: &Path) -> Result<Vec<PathBuf>> {
    let mut files = rotated_files(path)?
        .into_iter()
        .map(|(_, p)| p)
        .collect::<Vec<_>>();
    if path.exists() {
        files.push(path.to_owned());
    }
    Ok(files)
}

fn rotated_files(path: &Path) -> Result<Vec<(u64, PathBuf)>> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
        return Err(Error::InvalidOption {
            option: "path",
            message: format!("{} has no UTF-8 file name", path.display()),
        });
    };
    let prefix = format!("{name}.");
    let mut out = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(Error::io("list", dir, e)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| Error::io("list", dir, e))?;
        let fname = entry.file_name();
        let Some(fname) = fname.to_str() else {
            continue;
        };
        if let Some(num) = fname.strip_prefix(&prefix)
            && !num.is_empty()
            && num.bytes().all(|b| b.is_ascii_digit())
            && let Ok(n) = num.parse::<u64>()
        {
            out.push((n, dir.join(fname)));
        }
    }
    out.sort();
    Ok(out)
}

/// A shared lock on `<log>.lock` for readers (verify, query), if the lock file exists.
///
/// Per-append writers hold the exclusive lock only for one append, so readers wait
/// for it. A [`LockMode::Held`] writer holds it for its lifetime: after waiting
/// [`READER_LOCK_WAIT`] the reader goes on without the lock (and may then see an
/// append in flight as a torn final line).
pub(crate) struct SharedLock(Option<File>);

/// How long readers wait for the shared lock before reading without it.
pub const READER_LOCK_WAIT: Duration = Duration::from_secs(2);

impl SharedLock {
    pub(crate) fn acquire(path: &Path) -> Result<SharedLock> {
        let lp = match resolve_log_path(path) {
            Ok(resolved) => lock_path(&resolved),
            // Unresolvable (e.g. a missing directory): the read fails on its own.
            Err(_) => lock_path(path),
        };
        match File::open(&lp) {
            Ok(f) => {
                let deadline = Instant::now() + READER_LOCK_WAIT;
                loop {
                    match f.try_lock_shared() {
                        Ok(()) => return Ok(SharedLock(Some(f))),
                        Err(std::fs::TryLockError::WouldBlock) if Instant::now() < deadline => {
                            std::thread::sleep(Duration::from_millis(5));
                        }
                        Err(std::fs::TryLockError::WouldBlock) => {
                            tracing::warn!(lock = %lp.display(), "a writer holds the lock; reading without it");
                            return Ok(SharedLock(None));
                        }
                        Err(std::fs::TryLockError::Error(e)) => {
                            return Err(Error::io("lock", &lp, e));
                        }
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(SharedLock(None)),
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
                tracing::warn!(lock = %lp.display(), "cannot open the lock file; reading without it");
                Ok(SharedLock(None))
            }
            Err(e) => Err(Error::io("open", &lp, e)),
        }
    }
}

impl Drop for SharedLock {
    fn drop(&mut self) {
        if let Some(f) = &self.0 {
            let _ = f.unlock();
        }
    }
}

/// The tail of a file: the last complete line and any torn bytes after it.
struct Tail {
    last_line: Option<(u64, Vec<u8>)>,
    torn: Option<(u64, Vec<u8>)>,
}

/// Reads the tail of a log file. A torn tail and the last line are each at most
/// [`MAX_RECORD_BYTES`] (a writer never writes a longer line), so at most about twice that
/// is read; a longer run without newlines is not this crate's data: [`Error::CorruptTail`].
fn read_tail(file: &File, len: u64, path: &Path) -> Result<Tail> {
    let max = MAX_RECORD_BYTES as u64;
    let limit = 2 * max + 2;
    let too_long = |offset: u64| Error::CorruptTail {
        path: path.to_owned(),
        offset,
        message: format!(
            "no newline for more than {MAX_RECORD_BYTES} bytes: a line longer than the \
             maximum record size, which no writer of this crate produces"
        ),
    };
    let mut window: u64 = 64 * 1024;
    loop {
        let start = len.saturating_sub(window);
        let mut buf = vec![0u8; (len - start) as usize];
        let mut f = file;
        f.seek(SeekFrom::Start(start))
            .map_err(|e| Error::io("seek", path, e))?;
        f.read_exact(&mut buf)
            .map_err(|e| Error::io("read", path, e))?;
        let at_file_start = start == 0;
        let grow = |window: u64| {
            if window >= limit {
                Err(too_long(start))
            } else {
                Ok((window * 4).min(limit))
            }
        };
        // Split off torn bytes after the last newline.
        let (complete_end, torn) = match memchr::memrchr(b'\n', &buf) {
            Some(nl) if nl + 1 == buf.len() => (buf.len(), None),
            Some(nl) => (
                nl + 1,
                Some((start + nl as u64 + 1, buf[nl + 1..].to_vec())),
            ),
            None if at_file_start => (0, (!buf.is_empty()).then(|| (0, buf.clone()))),
            None => {
                window = grow(window)?;
                continue;
            }
        };
        if let Some((offset, t)) = &torn
            && t.len() as u64 > max
        {
            return Err(too_long(*offset));
        }
        if complete_end == 0 {
            return Ok(Tail {
                last_line: None,
                torn,
            });
        }
        let body = &buf[..complete_end - 1];
        let line_start = match memchr::memrchr(b'\n', body) {
            Some(nl) => nl + 1,
            None if at_file_start => 0,
            None => {
                window = grow(window)?;
                continue;
            }
        };
        if (body.len() - line_start) as u64 > max {
            return Err(too_long(start + line_start as u64));
        }
        return Ok(Tail {
            last_line: Some((start + line_start as u64, body[line_start..].to_vec())),
            torn,
        });
    }
}

impl FileSink {
    /// Opens (creating if missing) the log at `path`, recovering a torn tail.
    ///
    /// Symbolic links in `path` are resolved first (the file itself when it
    /// exists, else its directory): the sink, its lock file and its rotated
    /// files all live at the real path, so writers that reach one log through
    /// different paths still exclude each other. A dangling symlink is refused.
    pub fn open(path: impl AsRef<Path>, opts: FileSinkOptions) -> Result<FileSink> {
        let path = resolve_log_path(path.as_ref())?;
        if let FsyncPolicy::Batch { records: 0, .. } = opts.fsync {
            return Err(Error::InvalidOption {
                option: "fsync",
                message: "Batch { records } must be at least 1".into(),
            });
        }
        if opts.rotate_bytes == Some(0) {
            return Err(Error::InvalidOption {
                option: "rotate_bytes",
                message: "must be positive".into(),
            });
        }
        let lock_path = lock_path(&path);
        let lock = open_options_0600(
            OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false),
        )
        .open(&lock_path)
        .map_err(|e| Error::io("open", &lock_path, e))?;
        if opts.lock == LockMode::Held {
            match lock.try_lock() {
                Ok(()) => {}
                Err(std::fs::TryLockError::WouldBlock) => {
                    return Err(Error::Locked { path: lock_path });
                }
                Err(std::fs::TryLockError::Error(e)) => {
                    return Err(Error::io("lock", &lock_path, e));
                }
            }
        }
        let flusher = match opts.fsync {
            FsyncPolicy::Batch { interval, .. } => Some(Flusher::start(interval, path.clone())),
            _ => None,
        };
        let mut sink = FileSink {
            path,
            lock_path,
            lock,
            opts,
            active: None,
            head: ChainHead::default(),
            head_valid: false,
            scratch: Vec::new(),
            out: Vec::new(),
            flusher,
            recovered: Vec::new(),
            sync_failed: None,
        };
        sink.locked(|s| s.refresh())?;
        Ok(sink)
    }

    /// The active log file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The stable lock file.
    pub fn lock_file(&self) -> &Path {
        &self.lock_path
    }

    /// Torn tails this sink moved aside (at open, or when it found one left by a
    /// crashed writer while re-reading the tail).
    pub fn recovered(&self) -> &[Recovery] {
        &self.recovered
    }

    /// Runs `f` under the exclusive lock (unless held for the lifetime).
    fn locked<T>(&mut self, f: impl FnOnce(&mut Self) -> Result<T>) -> Result<T> {
        let per_append = self.opts.lock == LockMode::PerAppend;
        if per_append {
            self.lock
                .lock()
                .map_err(|e| Error::io("lock", &self.lock_path, e))?;
        }
        let res = f(self);
        if per_append && let Err(e) = self.lock.unlock() {
            tracing::error!(lock = %self.lock_path.display(), error = %e, "unlock failed");
        }
        res
    }

    /// Under the lock: make `active` the current file and `head` its current tail.
    fn refresh(&mut self) -> Result<()> {
        let meta = match std::fs::metadata(&self.path) {
            Ok(m) => Some(m),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(Error::io("stat", &self.path, e)),
        };
        let current = match (&self.active, &meta) {
            (Some(a), Some(m)) => a.id == file_id(m) && a.len == m.len(),
            _ => false,
        };
        if current && self.head_valid {
            return Ok(());
        }
        // (Re)open the active file.
        let reopen = match (&self.active, &meta) {
            (Some(a), Some(m)) => a.id != file_id(m) || cfg!(not(unix)),
            _ => true,
        };
        if reopen {
            let existed = meta.is_some();
            let file = open_options_0600(OpenOptions::new().read(true).append(true).create(true))
                .open(&self.path)
                .map_err(|e| Error::io("open", &self.path, e))?;
            let m = file
                .metadata()
                .map_err(|e| Error::io("stat", &self.path, e))?;
            if !existed {
                sync_dir(&self.path);
            }
            self.active = Some(Active {
                file: Arc::new(file),
                id: file_id(&m),
                len: m.len(),
            });
        }
        let Some(active) = self.active.as_mut() else {
            return Ok(());
        };
        let len = active
            .file
            .metadata()
            .map_err(|e| Error::io("stat", &self.path, e))?
            .len();
        active.len = len;
        let file = Arc::clone(&active.file);
        let tail = read_tail(&file, len, &self.path)?;
        if let Some((offset, bytes)) = tail.torn {
            self.recover_torn(&file, offset, &bytes)?;
        }
        self.head = match tail.last_line {
            Some((offset, line)) => {
                crate::verify::read_head(&line).map_err(|message| Error::CorruptTail {
                    path: self.path.clone(),
                    offset,
                    message,
                })?
            }
            None => self.head_from_rotated()?,
        };
        self.head_valid = true;
        Ok(())
    }

    /// Moves a torn tail aside and truncates the log to the last complete line.
    fn recover_torn(&mut self, file: &File, offset: u64, bytes: &[u8]) -> Result<()> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        let mut moved_to = sibling(&self.path, &format!("torn-{nanos}"));
        let mut n = 0;
        let mut out = loop {
            match open_options_0600(OpenOptions::new().write(true).create_new(true)).open(&moved_to)
            {
                Ok(f) => break f,
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && n < 100 => {
                    n += 1;
                    moved_to = sibling(&self.path, &format!("torn-{nanos}-{n}"));
                }
                Err(e) => return Err(Error::io("create", &moved_to, e)),
            }
        };
        out.write_all(bytes)
            .and_then(|_| out.sync_all())
            .map_err(|e| Error::io("write", &moved_to, e))?;
        sync_dir(&moved_to);
        file.set_len(offset)
            .map_err(|e| Error::io("truncate", &self.path, e))?;
        file.sync_data()
            .map_err(|e| Error::io("fsync", &self.path, e))?;
        if let Some(a) = self.active.as_mut() {
            a.len = offset;
        }
        tracing::warn!(
            log = %self.path.display(),
            offset,
            bytes = bytes.len(),
            moved_to = %moved_to.display(),
            "audit log: torn final line (interrupted write) moved aside; chain continues from the last complete record"
        );
        self.recovered.push(Recovery {
            log: self.path.clone(),
            offset,
            bytes: bytes.len() as u64,
            moved_to,
        });
        Ok(())
    }

    fn head_from_rotated(&self) -> Result<ChainHead> {
        for (_, p) in rotated_files(&self.path)?.into_iter().rev() {
            let f = File::open(&p).map_err(|e| Error::io("open", &p, e))?;
            let len = f.metadata().map_err(|e| Error::io("stat", &p, e))?.len();
            let tail = read_tail(&f, len, &p)?;
            if let Some((offset, line)) = tail.last_line {
                return crate::verify::read_head(&line).map_err(|message| Error::CorruptTail {
                    path: p.clone(),
                    offset,
                    message,
                });
            }
        }
        Ok(ChainHead::default())
    }

    /// Fails (for good) once an fsync of this sink has failed: after a failed fsync the
    /// kernel may have dropped the unsynced pages and marked them clean, so a later fsync
    /// could succeed without them — nothing appended since may be called durable.
    fn check_sync(&mut self) -> Result<()> {
        if self.sync_failed.is_none()
            && let Some(f) = self.flusher.as_ref().and_then(Flusher::take_failure)
        {
            self.sync_failed = Some(f);
        }
        match &self.sync_failed {
            None => Ok(()),
            Some((kind, message)) => Err(Error::io(
                "fsync",
                &self.path,
                std::io::Error::new(
                    *kind,
                    format!(
                        "an fsync of this log failed ({message}); records appended since the \
                         last successful fsync may not be durable; reopen the sink after \
                         checking the disk, then verify the log"
                    ),
                ),
            )),
        }
    }

    fn append_locked(
        &mut self,
        chain: &Chain,
        records: &[AuditRecord],
    ) -> Result<Vec<SealedRecord>> {
        self.check_sync()?;
        self.refresh()?;
        let mut head = self.head;
        let mut sealed = Vec::with_capacity(records.len());
        self.out.clear();
        for r in records {
            let s = chain.seal_line(&head, r, &mut self.scratch)?;
            self.out.extend_from_slice(s.line.as_bytes());
            self.out.push(b'\n');
            head = s.head();
            sealed.push(s);
        }
        if sealed.is_empty() {
            return Ok(sealed);
        }
        let Some(active) = self.active.as_mut() else {
            return Err(Error::io(
                "open",
                &self.path,
                std::io::Error::other("active file not open"),
            ));
        };
        let mut f: &File = &active.file;
        if let Err(e) = f.write_all(&self.out) {
            // Remove a partial write so the next writer does not see a torn line.
            let _ = active.file.set_len(active.len);
            self.head_valid = false;
            return Err(Error::io("write", &self.path, e));
        }
        active.len += self.out.len() as u64;
        self.head = head;
        let file = Arc::clone(&active.file);
        let len = active.len;
        match self.opts.fsync {
            FsyncPolicy::EveryRecord => self.sync_file(&file)?,
            FsyncPolicy::Batch { records, .. } => {
                let inline = self
                    .flusher
                    .as_ref()
                    .and_then(|fl| fl.written(&file, sealed.len(), records));
                if let Some(snapshot) = inline {
                    if let Err(e) = file.sync_data() {
                        self.sync_failed = Some((e.kind(), e.to_string()));
                        return Err(Error::io("fsync", &self.path, e));
                    }
                    if let Some(fl) = &self.flusher {
                        fl.synced(snapshot);
                    }
                }
            }
            FsyncPolicy::Never => {}
        }
        if self.opts.rotate_bytes.is_some_and(|max| len >= max) {
            self.rotate()?;
        }
        Ok(sealed)
    }

    fn sync_file(&mut self, file: &File) -> Result<()> {
        self.check_sync()?;
        let snapshot = self.flusher.as_ref().map(Flusher::pending);
        if let Err(e) = file.sync_data() {
            self.sync_failed = Some((e.kind(), e.to_string()));
            return Err(Error::io("fsync", &self.path, e));
        }
        if let (Some(fl), Some(n)) = (&self.flusher, snapshot) {
            fl.synced(n);
        }
        Ok(())
    }

    /// Under the lock: renames the active file to the next `<log>.N`.
    fn rotate(&mut self) -> Result<()> {
        let Some(active) = self.active.take() else {
            return Ok(());
        };
        if self.opts.fsync != FsyncPolicy::Never {
            self.sync_file(&active.file)?;
        }
        let n = rotated_files(&self.path)?
            .last()
            .map(|(n, _)| n + 1)
            .unwrap_or(1);
        let target = sibling(&self.path, &n.to_string());
        std::fs::rename(&self.path, &target).map_err(|e| Error::io("rotate", &target, e))?;
        sync_dir(&self.path);
        tracing::info!(log = %self.path.display(), rotated_to = %target.display(), head_seq = self.head.seq, "audit log rotated");
        // The head stays valid: the next append creates an empty active file and links
        // its first record to the last record of `target`.
        let file = open_options_0600(OpenOptions::new().read(true).append(true).create(true))
            .open(&self.path)
            .map_err(|e| Error::io("open", &self.path, e))?;
        let m = file
            .metadata()
            .map_err(|e| Error::io("stat", &self.path, e))?;
        sync_dir(&self.path);
        self.active = Some(Active {
            file: Arc::new(file),
            id: file_id(&m),
            len: m.len(),
        });
        Ok(())
    }

    /// fsyncs the active file now.
    pub fn sync(&mut self) -> Result<()> {
        if let Some(a) = &self.active {
            let f = Arc::clone(&a.file);
            self.sync_file(&f)?;
        }
        Ok(())
    }
}

impl AuditSink for FileSink {
    fn append_batch(
        &mut self,
        chain: &Chain,
        records: &[AuditRecord],
    ) -> Result<Vec<SealedRecord>> {
        self.locked(|s| s.append_locked(chain, records))
    }

    fn head(&mut self) -> Result<ChainHead> {
        self.locked(|s| {
            s.refresh()?;
            Ok(s.head)
        })
    }

    fn flush(&mut self) -> Result<()> {
        self.sync()
    }
}

impl Drop for FileSink {
    fn drop(&mut self) {
        let pending = self.flusher.take().map(|fl| fl.pending()).unwrap_or(0);
        if pending > 0
            && let Err(e) = self.sync()
        {
            tracing::error!(log = %self.path.display(), error = %e, "final fsync failed");
        }
    }
}

/// Reads the records of a file log set (rotated files then the active file) that match
/// `filter`, in chain order. Does not verify the chain (use [`verify`](crate::verify)).
pub fn query(path: impl AsRef<Path>, filter: &Filter) -> Result<Vec<SealedRecord>> {
    let mut out = Vec::new();
    let limit = filter.limit.unwrap_or(usize::MAX);
    if limit == 0 {
        return Ok(out);
    }
    for_each_record(path.as_ref(), |r| {
        if filter.matches(&r) {
            out.push(r);
        }
        out.len() < limit
    })?;
    Ok(out)
}

/// Counts records by status and action type, and their mean duration.
pub fn stats(path: impl AsRef<Path>) -> Result<Stats> {
    let mut b = StatsBuilder::default();
    for_each_record(path.as_ref(), |r| {
        b.add(&r);
        true
    })?;
    Ok(b.finish())
}

fn for_each_record(path: &Path, mut f: impl FnMut(SealedRecord) -> bool) -> Result<()> {
    let _guard = SharedLock::acquire(path)?;
    let files = log_files(path)?;
    if files.is_empty() {
        return Err(Error::io(
            "open",
            path,
            std::io::Error::new(std::io::ErrorKind::NotFound, "no such audit log"),
        ));
    }
    for p in files {
        let file = File::open(&p).map_err(|e| Error::io("open", &p, e))?;
        let mut reader = std::io::BufReader::with_capacity(1 << 20, file);
        let mut line = Vec::new();
        let mut n = 0u64;
        loop {
            line.clear();
            let got = read_line_bounded(&mut reader, &mut line, MAX_RECORD_BYTES)
                .map_err(|e| Error::io("read", &p, e))?;
            let Some(terminated) = got else {
                break;
            };
            n += 1;
            if line.len() > MAX_RECORD_BYTES {
                return Err(Error::Corrupt {
                    path: p.clone(),
                    line: n,
                    message: format!(
                        "line longer than the maximum record size of {MAX_RECORD_BYTES} bytes"
                    ),
                });
            }
            if !terminated {
                tracing::warn!(file = %p.display(), line = n, "skipping torn final line");
                break;
            }
            let text = std::str::from_utf8(&line).map_err(|e| Error::Corrupt {
                path: p.clone(),
                line: n,
                message: e.to_string(),
            })?;
            let rec = SealedRecord::parse_line(text).map_err(|message| Error::Corrupt {
                path: p.clone(),
                line: n,
                message,
            })?;
            if !f(rec) {
                return Ok(());
            }
        }
    }
    Ok(())
}

/// Reads one line (without its newline) into `line`, reading no more than `max + 1`
/// bytes of it: `Ok(None)` at the end of the input, `Ok(Some(terminated))` otherwise. A
/// line longer than `max` comes back with `max + 1` bytes, the rest unread.
fn read_line_bounded(
    reader: &mut impl std::io::BufRead,
    line: &mut Vec<u8>,
    max: usize,
) -> std::io::Result<Option<bool>> {
    loop {
        let buf = match reader.fill_buf() {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if buf.is_empty() {
            return Ok((!line.is_empty()).then_some(false));
        }
        let room = (max + 1).saturating_sub(line.len());
        let (take, newline) = match memchr::memchr(b'\n', buf) {
            Some(nl) if nl <= room => (nl, true),
            _ => (buf.len().min(room), false),
        };
        line.extend_from_slice(&buf[..take]);
        reader.consume(take + usize::from(newline));
        if newline {
            return Ok(Some(true));
        }
        if line.len() > max {
            return Ok(Some(true));
        }
    }
}
