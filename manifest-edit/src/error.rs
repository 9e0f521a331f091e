//! The crate's error type.

use std::fmt;
use std::io;
use std::path::PathBuf;

/// A position in a manifest: file, 1-based line and 1-based column (in characters).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Location {
    /// The file (or the name given to in-memory input, `<input>` by default).
    pub file: PathBuf,
    /// 1-based line number.
    pub line: usize,
    /// 1-based column, counted in characters.
    pub column: usize,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file.display(), self.line, self.column)
    }
}

/// Everything that can go wrong while reading, editing or writing a manifest.
///
/// Every variant names the file it concerns, and where it applies the line and column
/// (through [`Location`]) and the flag, key or container. Whenever one of these errors is
/// returned, the file on disk has not been modified, except for [`Error::NotDurable`] and
/// [`Error::WrittenButUnverified`], which say so explicitly.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The file is not valid UTF-8 text.
    #[error("{file}: not UTF-8 text (invalid byte at offset {offset})", file = file.display())]
    NotUtf8 {
        /// The file.
        file: PathBuf,
        /// Byte offset of the first invalid byte.
        offset: usize,
    },

    /// The YAML does not parse.
    #[error("{location}: YAML syntax error: {message}")]
    Syntax {
        /// Where the parser stopped.
        location: Location,
        /// The parser's message.
        message: String,
    },

    /// A mapping has the same key twice. Like kubeadm's strict decoding, this is refused:
    /// the document is ambiguous (lenient parsers silently keep one of the values).
    #[error("{location}: duplicate key `{key}` (first defined on line {first_line})")]
    DuplicateKey {
        /// The second occurrence.
        location: Location,
        /// The key.
        key: String,
        /// Line of the first occurrence.
        first_line: usize,
    },

    /// A flag operation needs a `kind: Pod` document and there is none.
    #[error("{file}: not a Pod manifest: {found}", file = file.display())]
    NotAPod {
        /// The file.
        file: PathBuf,
        /// What was found instead (e.g. "kind: KubeletConfiguration").
        found: String,
    },

    /// More than one document could be the target of the operation.
    #[error("{file}: {count} candidate documents ({what}); refusing to guess", file = file.display())]
    AmbiguousDocument {
        /// The file.
        file: PathBuf,
        /// How many documents qualified.
        count: usize,
        /// Which kind of document was looked for.
        what: &'static str,
    },

    /// The Pod has no container with the requested name.
    #[error("{location}: no container named `{name}` (containers: {available})")]
    NoSuchContainer {
        /// The Pod's `containers` list (or the Pod itself when there is none).
        location: Location,
        /// The requested name.
        name: String,
        /// The container names present, comma-separated.
        available: String,
    },

    /// No container was named and the default (the container that runs the component's
    /// binary, or the only container) cannot be chosen.
    #[error(
        "{location}: cannot choose a container ({reason}); containers: {available}; \
         select one by name (CLI: --container)"
    )]
    AmbiguousContainer {
        /// The Pod's `containers` list.
        location: Location,
        /// Why the default is ambiguous.
        reason: String,
        /// The container names present, comma-separated.
        available: String,
    },

    /// The container's flags live inside a shell script string (`sh -c "... --flag ..."`).
    /// Editing inside a shell string is refused: its quoting and word splitting are not YAML.
    #[error(
        "{location}: the flags of container `{container}` are inside a shell script \
         (`{shell} -c ...`); refusing to edit inside a shell string"
    )]
    ShellScript {
        /// The script item.
        location: Location,
        /// The container.
        container: String,
        /// The shell binary.
        shell: String,
    },

    /// The flag cannot be combined with another flag the container already has (the
    /// component would refuse to start, e.g. kube-apiserver's `--admission-control` with
    /// `--enable-admission-plugins`).
    #[error(
        "{location}: `{flag}` cannot be used together with `{other}`, which container \
         `{container}` already has (the component refuses to start with both)"
    )]
    ConflictingFlag {
        /// The conflicting flag already present.
        location: Location,
        /// The flag being set.
        flag: String,
        /// The flag already present.
        other: String,
        /// The container.
        container: String,
    },

    /// The new value of a comma-list flag would share items with another list the
    /// component refuses to overlap with it (kube-apiserver: a plugin both in
    /// `--enable-admission-plugins` and `--disable-admission-plugins`).
    #[error(
        "{location}: `{flag}` would list {items}, which `{other}` of container `{container}` \
         also lists (kube-apiserver refuses to start when the two overlap); remove it there first",
        other = if *flag == "--enable-admission-plugins" {
            "--disable-admission-plugins"
        } else {
            "--enable-admission-plugins"
        }
    )]
    OverlappingLists {
        /// The item of the other list (`--disable-admission-plugins` when `flag` is
        /// `--enable-admission-plugins`, and the reverse).
        location: Location,
        /// The flag being set.
        flag: &'static str,
        /// The shared items, comma-separated.
        items: String,
        /// The container.
        container: String,
    },

    /// The flag appears more than once in the container's command and args.
    #[error(
        "{location}: flag `{flag}` appears more than once in container `{container}` \
         (first on line {first_line}); refusing to edit one of them"
    )]
    DuplicateFlag {
        /// The second occurrence.
        location: Location,
        /// The flag, with its dashes.
        flag: String,
        /// The container.
        container: String,
        /// Line of the first occurrence.
        first_line: usize,
    },

    /// A bare `--flag` is followed by a word that may be its value or a positional
    /// argument, in a list that otherwise writes values as `--flag=value`.
    #[error(
        "{location}: `{flag}` is followed by `{next}`, which may be its value or a positional \
         argument; refusing to guess"
    )]
    AmbiguousFlagValue {
        /// The flag item.
        location: Location,
        /// The flag.
        flag: String,
        /// The following item.
        next: String,
    },

    /// An anchor, alias or merge key sits where the edit would happen; editing it would
    /// change every place that refers to it.
    #[error("{location}: {what} in {context}; refusing to edit through YAML anchors/aliases")]
    AnchorOrAlias {
        /// The anchor or alias.
        location: Location,
        /// "an alias", "an anchor" or "a merge key".
        what: &'static str,
        /// The list or mapping being edited.
        context: String,
    },

    /// The container has neither `command` nor `args`, so there is no list to add a flag to.
    #[error("{location}: container `{container}` has neither `command` nor `args`")]
    NoArgv {
        /// The container.
        location: Location,
        /// The container name.
        container: String,
    },

    /// The document has a shape the operation cannot work with (e.g. `containers` is not a
    /// list, a key path crosses a list, a list item is not a plain string).
    #[error("{location}: {message}")]
    Unsupported {
        /// Where.
        location: Location,
        /// What was found and why it cannot be edited.
        message: String,
    },

    /// A `hostPath` volume or mount with the requested name or path exists with different
    /// settings.
    #[error("{location}: {message}")]
    VolumeConflict {
        /// The conflicting volume or mount.
        location: Location,
        /// What conflicts.
        message: String,
    },

    /// An argument of an operation is not valid (flag spelling, empty key path, ...).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),

    /// The file, or the content an edit or a restore would write, is larger than the
    /// kubelet reads from a static-pod file ([`crate::ManifestFile::MAX_BYTES`]).
    #[error(
        "{path}: {size} bytes, more than the kubelet reads from a manifest ({limit} bytes); refusing",
        path = path.display()
    )]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// Its size, or the size of the content that would be written (at least
        /// `limit + 1` when the file was not read to its end).
        size: u64,
        /// The limit.
        limit: u64,
    },

    /// The path is not a regular file (directory, device, socket, ...).
    #[error("{path}: not a regular file ({kind})", path = path.display())]
    NotAFile {
        /// The path.
        path: PathBuf,
        /// What it is.
        kind: &'static str,
    },

    /// The path is a symbolic link and following links was not allowed.
    #[error(
        "{path}: is a symbolic link to {target}; refusing (rename would replace the link, \
         not its target); allow symlinks explicitly to edit the target",
        path = path.display(),
        target = target.display()
    )]
    Symlink {
        /// The link.
        path: PathBuf,
        /// Where it points.
        target: PathBuf,
    },

    /// An I/O operation failed.
    #[error("{path}: cannot {action}: {source}", path = path.display())]
    Io {
        /// The path concerned.
        path: PathBuf,
        /// What was being done ("read", "create temporary file", "rename", ...).
        action: &'static str,
        /// The OS error.
        source: io::Error,
    },

    /// The file changed since it was read (optimistic concurrency check).
    #[error(
        "{path}: changed since it was read (expected sha256 {expected}, found {found}); \
         nothing written",
        path = path.display()
    )]
    Changed {
        /// The file.
        path: PathBuf,
        /// The hash the caller expected.
        expected: String,
        /// The hash found under the lock.
        found: String,
    },

    /// The lock could not be acquired in time. When the calling thread itself holds it
    /// (through a [`crate::LockedManifestFile`] still alive), waiting could only wait for
    /// itself: this is returned at once, with `held_by_this_thread` set.
    #[error("{lock}: {}", if *held_by_this_thread {
        "lock already held by this thread (a LockedManifestFile still alive); write through \
         it instead of taking the lock again".to_owned()
    } else {
        format!("lock still held by another writer after {waited_ms} ms")
    }, lock = lock.display())]
    LockTimeout {
        /// The lock file.
        lock: PathBuf,
        /// How long we waited.
        waited_ms: u128,
        /// Whether the calling thread holds the lock.
        held_by_this_thread: bool,
    },

    /// No backup location can be derived (the manifest directory has no parent).
    #[error(
        "{path}: cannot derive a backup directory outside the manifest directory; \
         configure one or disable backups",
        path = path.display()
    )]
    NoBackupDir {
        /// The manifest.
        path: PathBuf,
    },

    /// The result did not pass verification (it does not parse or does not hold the
    /// intended values). Nothing was written.
    #[error("{path}: verification failed: {reason}", path = path.display())]
    VerifyFailed {
        /// The file.
        path: PathBuf,
        /// What did not match.
        reason: String,
    },

    /// The new content was renamed into place, but re-reading the file failed or gave
    /// other bytes (another writer, or a storage fault). The file is modified; the backup
    /// (if any) is kept. A caller that must leave the file as it was puts the original
    /// back (e.g. [`crate::ManifestFile::restore`]).
    #[error(
        "{path}: the new content was renamed into place, but {reason}",
        path = path.display()
    )]
    WrittenButUnverified {
        /// The file.
        path: PathBuf,
        /// What went wrong on the re-read.
        reason: String,
    },

    /// The new content was renamed into place but the directory could not be synced: it is
    /// visible now but may not survive a power loss. The backup (if any) is kept.
    #[error(
        "{path}: new content is in place but the directory fsync failed ({source}); \
         it may not survive a power loss",
        path = path.display()
    )]
    NotDurable {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
}

/// Shorthand for `Result<T, kubesafe_manifest_edit::Error>`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// The line this error points at, if it points at one.
    pub fn line(&self) -> Option<usize> {
        self.location().map(|l| l.line)
    }

    /// The location this error points at, if any.
    pub fn location(&self) -> Option<&Location> {
        match self {
            Error::Syntax { location, .. }
            | Error::DuplicateKey { location, .. }
            | Error::NoSuchContainer { location, .. }
            | Error::AmbiguousContainer { location, .. }
            | Error::ShellScript { location, .. }
            | Error::DuplicateFlag { location, .. }
            | Error::ConflictingFlag { location, .. }
            | Error::OverlappingLists { location, .. }
            | Error::AmbiguousFlagValue { location, .. }
            | Error::AnchorOrAlias { location, .. }
            | Error::NoArgv { location, .. }
            | Error::Unsupported { location, .. }
            | Error::VolumeConflict { location, .. } => Some(location),
            _ => None,
        }
    }
}
