//! Error types. Each names the file, URL or setting it concerns.

use std::path::PathBuf;

/// An [`HttpProbe`](crate::probe::HttpProbe) could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProbeError {
    /// The URL does not parse or is not `http(s)`.
    #[error("invalid probe URL {url:?}: {reason}")]
    InvalidUrl {
        /// The URL given.
        url: String,
        /// Why.
        reason: String,
    },
    /// A CA bundle, certificate, key or token file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    ReadFile {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A PEM or token file has no usable content.
    #[error("{}: {reason}", path.display())]
    Pem {
        /// The file.
        path: PathBuf,
        /// Why it is unusable.
        reason: String,
    },
    /// Options that contradict each other.
    #[error("conflicting probe options: {0}")]
    Conflict(String),
    /// rustls rejected the TLS configuration.
    #[error("TLS configuration: {0}")]
    Tls(String),
    /// The HTTP client could not be built.
    #[error("HTTP client: {0}")]
    Client(String),
}

/// A restart witness cannot work.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WitnessError {
    /// The process table could not be read.
    #[error("cannot read processes from {}: {source}", path.display())]
    Proc {
        /// The procfs root.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Any other reason (for witnesses implemented outside this crate).
    #[error("{0}")]
    Other(String),
}

/// A [`Change`](crate::change::Change) could not be planned, applied or
/// rolled back.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ChangeError {
    /// A file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A file could not be written (temp file, backup, rename, fsync).
    #[error("cannot write {}: {source}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The target is not something this change can handle.
    #[error("{}: {reason}", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// Another transaction holds the lock on this file.
    #[error("{} is locked by another kubesafe transaction", path.display())]
    Locked {
        /// The lock file.
        path: PathBuf,
    },
    /// The file changed under us (between plan and apply, or after apply);
    /// nothing was overwritten.
    #[error("{} was modified by someone else; not overwriting it", path.display())]
    ConcurrentModification {
        /// The file.
        path: PathBuf,
    },
    /// An earlier transaction on this file never reached its verdict (its
    /// process was killed): the file may hold content no gate judged.
    /// Nothing was written. Check the component, restore the backup the
    /// marker names if needed, then delete the marker.
    #[error(
        "a previous kubesafe transaction did not finish ({detail}): the file may hold content \
         that was never judged healthy; check the component, restore the backup if needed, \
         then delete {}",
        marker.display()
    )]
    Unfinished {
        /// The marker file (`.NAME.kubesafe-transaction` beside the file).
        marker: PathBuf,
        /// What the marker says (file, pid, start, backup).
        detail: String,
    },
    /// `apply` or `rollback` before a successful `plan`.
    #[error("the change was not planned")]
    NotPlanned,
    /// The editor behind the change refused or failed (invalid manifest,
    /// unknown container or flag, I/O error); its message names the file and,
    /// where it applies, the line and column.
    #[error("{source}")]
    Edit {
        /// The file.
        path: PathBuf,
        /// The editor's error.
        source: Box<dyn std::error::Error + Send + Sync + 'static>,
    },
    /// Any other reason (for changes implemented outside this crate).
    #[error("{0}")]
    Other(String),
}

/// An invalid gate policy.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// Back-off parameters that break its invariants.
    #[error("invalid back-off: {0}")]
    Backoff(String),
    /// A deadline the gate can never meet: success needs the settle window,
    /// which does not fit in it.
    #[error(
        "the {setting} ({deadline:?}) must be longer than the settle window ({settle:?}): \
         the gate could never succeed"
    )]
    DeadlineShorterThanSettle {
        /// `deadline` or `rollback deadline`.
        setting: &'static str,
        /// Its value.
        deadline: std::time::Duration,
        /// The settle duration.
        settle: std::time::Duration,
    },
    /// A duration out of the usable range.
    #[error("the {setting} ({value:?}) must be {bounds}")]
    OutOfRange {
        /// The setting, e.g. `probe timeout`.
        setting: &'static str,
        /// Its value.
        value: std::time::Duration,
        /// The allowed range, in words.
        bounds: &'static str,
    },
}
