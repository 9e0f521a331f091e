//! Lossless, atomic, locked edits of Kubernetes static-pod manifests and kubelet configs.
//!
//! Part of [kubesafe](https://github.com/kubesafe/kubesafe). The first thing a
//! CIS-hardening or upgrade tool does on a control-plane node is change a flag in
//! `/etc/kubernetes/manifests/kube-apiserver.yaml`. This crate does it without damaging the
//! file and without ever letting the kubelet see a half-written one.
//!
//! # Span-preserving edits
//!
//! A [`Manifest`] is parsed with a YAML parser that reports byte spans; an edit splices
//! only the bytes that must change. Everything else stays byte-identical: BOM, comments
//! (full-line, inline, inside lists), blank and whitespace-only lines, CRLF line breaks, a
//! missing final newline, the quoting of untouched items, the indentation style, other
//! documents of a multi-document file, and literal blocks that merely contain text looking
//! like flags.
//!
//! ```
//! use kubesafe_manifest_edit::{Edit, Manifest};
//!
//! let text = "\
//! apiVersion: v1
//! kind: Pod
//! metadata:
//!   name: kube-apiserver
//! spec:
//!   containers:
//!   - command:
//!     - kube-apiserver
//!     - --profiling=true   # TODO: CIS 1.2.18
//!     - --enable-admission-plugins=NodeRestriction
//!     name: kube-apiserver
//! ";
//! let manifest = Manifest::parse(text)?;
//! let applied = manifest.apply(
//!     &Edit::new()
//!         .set_flag("--profiling", "false")
//!         .list_add("--enable-admission-plugins", "AlwaysPullImages")
//!         .set_flag("--anonymous-auth", "false"),
//! )?;
//! assert_eq!(
//!     applied.manifest.text(),
//!     "\
//! apiVersion: v1
//! kind: Pod
//! metadata:
//!   name: kube-apiserver
//! spec:
//!   containers:
//!   - command:
//!     - kube-apiserver
//!     - --profiling=false   # TODO: CIS 1.2.18
//!     - --enable-admission-plugins=NodeRestriction,AlwaysPullImages
//!     - --anonymous-auth=false
//!     name: kube-apiserver
//! "
//! );
//! // The decoded pod changed, so the kubelet will restart the static pod.
//! assert!(applied.data_changed);
//! // Applying the same edit again changes nothing.
//! let again = applied.manifest.apply(&Edit::new().set_flag("--profiling", "false"))?;
//! assert!(!again.changed);
//! # Ok::<(), kubesafe_manifest_edit::Error>(())
//! ```
//!
//! Operations ([`Op`]): set, remove and read a flag of a container's `command`/`args`
//! (block or flow lists, `--flag=value` or `--flag value` as two items), add to or remove
//! from comma-separated flag values (`--enable-admission-plugins`, `--feature-gates`), set
//! a scalar at a key path of a mapping document such as a KubeletConfiguration
//! (`authentication.anonymous.enabled`, creating missing parents), and make sure a
//! `hostPath` volume and its mount exist. The container defaults to the one running the
//! component's binary (`kube-apiserver`, `etcd`, ...) or the only one.
//!
//! The editor refuses instead of guessing: malformed YAML, duplicate mapping keys (strict,
//! like kubeadm), a non-Pod document for flag operations, an unknown or ambiguous
//! container, flags inside a `sh -c` script string, a flag present twice, anchors or
//! aliases where the edit would happen. Every error is an [`Error`] naming the file and,
//! where it applies, the line and column.
//!
//! # Verification
//!
//! Every operation is verified before the next one runs: the edited text must parse
//! (strictly, as above) and hold the operation's intended state — the flag reads back
//! with the value set, the removed flag is gone, the path holds the scalar, the mount is
//! complete. A splice bug therefore surfaces as [`Error::VerifyFailed`], never as a
//! damaged file.
//!
//! How the edited text is parsed depends on the change. Most flag operations replace,
//! add or remove whole one-line items of a block list (`- --profiling=false`). For those,
//! [`Manifest::apply`] parses only the changed lines and proves the rest of the text
//! unchanged byte for byte; a property of YAML's block sequences (each item is a whole
//! line group starting with a dash at the list's column, read the same wherever the list
//! sits) then gives the tree of the whole new text without parsing it again. The
//! conditions are strict (one block list, single-line scalar items, no tab, no comment
//! line inside the change, the next line not indented deeper, ...) and are checked on the
//! two texts themselves, not taken from the edit; whatever does not meet them — flow
//! lists, `set-path`, mounts — is verified by parsing the whole new text. Debug builds
//! (and so the test suite) also parse the whole text and fail the edit if the two trees
//! differ in any position, value or style. [`ManifestFile`] parses the whole result of
//! what it writes to a node by default; [`FileOptions::full_reparse`]`(false)` makes it
//! verify the way [`Manifest::apply`] does (about 50 µs less per edit).
//!
//! # Safe writes
//!
//! [`ManifestFile`] writes the result: it takes an exclusive lock on a separate, stable,
//! hidden lock file (`.NAME.lock`, never deleted — the manifest's own inode is replaced by
//! the rename), re-reads under the lock (refusing, with
//! [`ManifestFile::apply_if_unchanged`], when the content is not the one the caller saw),
//! backs the old content up outside the manifest directory (default
//! `../kubesafe-backups/NAME.TIMESTAMP.SHA256PREFIX`, same mode and owner), writes a hidden
//! temp file (`.NAME.XXXXXXXX.kubesafe-tmp`) in the same directory with the manifest's
//! mode, owner and group, fsyncs it, renames it over the manifest, fsyncs the directory,
//! and re-reads and verifies the bytes. The kubelet loads every non-hidden file of its
//! manifest directory, so nothing it could load ever appears there. The [`Report`] gives
//! the line changes, a unified diff, both content hashes, the backup path, and
//! [`Report::data_changed`]: the kubelet restarts a static pod only when the decoded pod
//! changes, so a comment-only edit is followed by no restart.
//!
//! [`ManifestFile::restore`] is the rollback half: put given bytes back, atomically and
//! under the same lock, only if the file still has the expected hash.
//!
//! The crate is Unix-only (it preserves Unix owners and modes and uses `flock`). SELinux
//! labels, ACLs and extended attributes of the manifest are not copied to the new file.
//!
//! # Why granit-parser
//!
//! Both parsers allowed by the workspace (`saphyr-parser`, `granit-parser`) were measured on
//! the corpus. `granit-parser` reports UTF-8 byte offsets directly, so the Cyrillic
//! comment of a real kube-scheduler manifest or a BOM needs no character-to-byte
//! conversion; `saphyr-parser` 0.3.4 reports character indices, and the span it gives a
//! double-quoted list item followed by a comment (`- "ab" # x`) runs to the end of the
//! comment — a splice there would eat the comment. `granit-parser` also tells block from
//! flow collections and gives tags their own span.

#![cfg(unix)]

mod edit;
mod error;
mod file;
mod flags;
mod layout;
mod path;
mod reparse;
mod report;
mod text;
mod volumes;
mod yaml;

pub use edit::{Applied, Edit, Manifest, Op, OpOutcome};
pub use error::{Error, Location, Result};
pub use file::{Backup, FileOptions, LockedManifestFile, ManifestFile, RestoreReport};
pub use flags::{ArgList, FlagValue};
pub use path::{KeyPath, ScalarValue};
pub use report::{LineChange, Report, line_changes, sha256_hex, unified_diff};
pub use volumes::HostPathMount;
