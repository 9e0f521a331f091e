//! The in-progress marker of a transaction: `.NAME.kubesafe-transaction`
//! beside the file (and its lock file), hidden from the kubelet.
//!
//! Written under the lock right before a change writes the file, removed
//! when the change is dropped after the transaction's verdict. A process
//! killed in between (`kill -9`, OOM, power loss) releases the lock but
//! leaves the marker: the file may then hold content no gate ever judged,
//! and the next change of the file refuses to build on it
//! ([`ChangeError::Unfinished`]) until a human has looked and removed the
//! marker.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::error::ChangeError;

/// The marker of `file` in `dir` (the directory of the lock file).
pub(crate) fn marker_path(dir: &Path, file_name: &str) -> PathBuf {
    dir.join(format!(".{file_name}.kubesafe-transaction"))
}

/// A marker written by this process, removed on [`Journal::finish`].
#[derive(Debug)]
pub(crate) struct Journal {
    path: PathBuf,
    file: PathBuf,
    started: String,
}

impl Journal {
    /// Refuses when a marker is there (a transaction that never finished),
    /// else writes one. Call with the file's lock held.
    pub(crate) fn begin(path: PathBuf, file: &Path) -> Result<Self, ChangeError> {
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                return Err(ChangeError::Unfinished {
                    detail: text
                        .lines()
                        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
                        .collect::<Vec<_>>()
                        .join("; "),
                    marker: path,
                });
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => return Err(ChangeError::Read { path, source }),
        }
        let journal = Self {
            path,
            file: file.to_owned(),
            started: super::file_replace::utc_stamp(SystemTime::now()),
        };
        journal.write(None)?;
        Ok(journal)
    }

    /// Adds the backup's path (the way back) to the marker.
    pub(crate) fn record_backup(&self, backup: Option<&Path>) -> Result<(), ChangeError> {
        self.write(backup)
    }

    fn write(&self, backup: Option<&Path>) -> Result<(), ChangeError> {
        let mut text = format!(
            "# A kubesafe transaction on this file is in progress, or was killed before its \
             verdict.\nfile: {}\npid: {}\nstarted: {}\n",
            self.file.display(),
            std::process::id(),
            self.started
        );
        if let Some(b) = backup {
            text.push_str(&format!(
                "backup of the content before it: {}\n",
                b.display()
            ));
        }
        let werr = |source| ChangeError::Write {
            path: self.path.clone(),
            source,
        };
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&self.path)
            .map_err(werr)?;
        f.write_all(text.as_bytes()).map_err(werr)?;
        f.sync_all().map_err(werr)?;
        if let Some(dir) = self.path.parent() {
            let _ = std::fs::File::open(dir).and_then(|d| d.sync_all());
        }
        Ok(())
    }

    /// Removes the marker: the transaction reached its verdict. Kept when
    /// the thread is panicking (no verdict was reached).
    pub(crate) fn finish(self) {
        if std::thread::panicking() {
            return;
        }
        if let Err(e) = std::fs::remove_file(&self.path)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(marker = %self.path.display(), error = %e,
                "cannot remove the transaction marker");
        }
    }
}
