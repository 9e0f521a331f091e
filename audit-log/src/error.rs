//! The crate's error type.

use std::path::PathBuf;

/// Everything that can go wrong while writing, reading or verifying an audit log.
///
/// A verification that *finds tampering* is not an error: it returns a
/// [`Report`](crate::Report) whose [`failure`](crate::Report::failure) names the
/// first bad record. Errors are for I/O, bad input and misuse.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An I/O operation on a file failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done (`"open"`, `"write"`, `"fsync"`, ...).
        op: &'static str,
        /// The file concerned.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// A record given by the caller cannot be sealed (bad field value, unknown field, ...).
    #[error("invalid audit record: {field}: {message}")]
    InvalidRecord {
        /// The field concerned (camelCase JSON name), or `"record"` for the whole record.
        field: String,
        /// What is wrong with it.
        message: String,
    },

    /// A stored line could not be parsed as a record (for queries and statistics).
    #[error("{path}:{line}: not an audit record: {message}")]
    Corrupt {
        /// The file (or table) holding the line.
        path: PathBuf,
        /// 1-based line number (row number for a table).
        line: u64,
        /// What is wrong with it.
        message: String,
    },

    /// The last complete line of the active log file is not a valid record, so the
    /// chain cannot be continued safely. A crash never produces this (a torn write
    /// lacks its final newline and is recovered automatically); it means the file was
    /// edited. Run `verify` and repair by hand.
    #[error(
        "{path}: last record (byte offset {offset}) is not a valid sealed record: {message}; refusing to append (run verify)"
    )]
    CorruptTail {
        /// The log file.
        path: PathBuf,
        /// Byte offset of the bad line.
        offset: u64,
        /// What is wrong with it.
        message: String,
    },

    /// A key (file, id or secret) is unusable.
    #[error("invalid key {what}: {message}")]
    InvalidKey {
        /// The key file or key id concerned.
        what: String,
        /// What is wrong with it.
        message: String,
    },

    /// A checkpoint file is malformed or its signature does not verify.
    #[error("checkpoint {what}: {message}")]
    Checkpoint {
        /// The checkpoint file (or `"checkpoint"` when it was not read from a file).
        what: String,
        /// What is wrong with it.
        message: String,
    },

    /// An option value is out of range.
    #[error("invalid option {option}: {message}")]
    InvalidOption {
        /// The option concerned.
        option: &'static str,
        /// What is wrong with it.
        message: String,
    },

    /// The sequence number space is exhausted (2^64 - 1 records).
    #[error("sequence number overflow after seq {0}")]
    SeqOverflow(u64),

    /// Another writer holds the exclusive lock (with [`LockMode::Held`](crate::LockMode::Held)).
    #[error("{path}: locked by another writer")]
    Locked {
        /// The lock file.
        path: PathBuf,
    },

    /// A PostgreSQL operation failed.
    #[cfg(feature = "postgres")]
    #[error("postgres {op} (table {table}): {source}")]
    Postgres {
        /// What was being done.
        op: &'static str,
        /// The audit table concerned.
        table: String,
        /// The underlying error.
        #[source]
        source: postgres::Error,
    },

    /// Pushing to Loki failed (after the retries allowed); the records stay in the spool.
    #[cfg(feature = "loki")]
    #[error("loki push to {url}: {message}")]
    Loki {
        /// The push URL.
        url: String,
        /// What went wrong.
        message: String,
    },
}

impl Error {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            op,
            path: path.into(),
            source,
        }
    }

    pub(crate) fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Error::InvalidRecord {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
