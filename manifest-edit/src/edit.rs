//! The in-memory editor: [`Manifest`], the operations ([`Op`], grouped in an [`Edit`])
//! and their application with per-operation verification.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::flags::{self, Argv, FlagValue};
use crate::layout::{self, Splice};
use crate::path::{self, KeyPath, ScalarValue};
use crate::reparse;
use crate::volumes::{self, HostPathMount};
use crate::yaml::{self, Ctx, Tree};

/// One change to a manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Op {
    /// Set `--flag` to `value` (replace its value, or append `--flag=value`).
    SetFlag {
        /// The flag (`--profiling` or `profiling`).
        flag: String,
        /// Its value.
        value: String,
    },
    /// Remove `--flag` (and its value item when written as two items).
    RemoveFlag {
        /// The flag.
        flag: String,
    },
    /// Add `item` to the comma-separated value of `--flag` (no duplicates, order kept;
    /// `Key=value` items replace an item with the same key).
    ListAdd {
        /// The flag (`--enable-admission-plugins`, `--feature-gates`, ...).
        flag: String,
        /// The item (`NodeRestriction`, `KMSv2=true`, ...).
        item: String,
    },
    /// Remove `item` (compared by key) from the comma-separated value of `--flag`; the flag
    /// goes when its list becomes empty.
    ListRemove {
        /// The flag.
        flag: String,
        /// The item, or its key.
        item: String,
    },
    /// Set the scalar at `path` of the (single) mapping document, creating missing parents.
    SetPath {
        /// The key path.
        path: KeyPath,
        /// The value.
        value: ScalarValue,
    },
    /// Make sure a `hostPath` volume and the container's mount of it exist.
    EnsureHostPathMount(HostPathMount),
}

impl std::fmt::Display for Op {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let dashed = |flag: &str| {
            if flag.starts_with("--") {
                flag.to_owned()
            } else {
                format!("--{flag}")
            }
        };
        match self {
            Op::SetFlag { flag, value } => write!(f, "set {}={value}", dashed(flag)),
            Op::RemoveFlag { flag } => write!(f, "remove {}", dashed(flag)),
            Op::ListAdd { flag, item } => write!(f, "list-add {} {item}", dashed(flag)),
            Op::ListRemove { flag, item } => write!(f, "list-remove {} {item}", dashed(flag)),
            Op::SetPath { path, value } => write!(f, "set-path {path}={value}"),
            Op::EnsureHostPathMount(m) => write!(
                f,
                "mount hostPath {} at {} (volume {}{})",
                m.host_path,
                m.mount_path,
                m.name,
                if m.read_only { ", read-only" } else { "" }
            ),
        }
    }
}

/// A list of operations applied in order to one container (flag and mount operations) or
/// to the mapping document (`SetPath`).
///
/// ```
/// use kubesafe_manifest_edit::Edit;
/// let edit = Edit::new()
///     .container("kube-apiserver")
///     .set_flag("--profiling", "false")
///     .list_add("--enable-admission-plugins", "AlwaysPullImages");
/// assert_eq!(edit.ops.len(), 2);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Edit {
    /// The container for flag and mount operations; `None` selects the component's
    /// container (the one whose command starts a control-plane binary, or the only one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    /// The operations, applied in order.
    pub ops: Vec<Op>,
}

impl Edit {
    /// An empty edit on the default container.
    pub fn new() -> Self {
        Self::default()
    }

    /// Selects the container by name.
    #[must_use]
    pub fn container(mut self, name: impl Into<String>) -> Self {
        self.container = Some(name.into());
        self
    }

    /// Appends an operation.
    #[must_use]
    pub fn op(mut self, op: Op) -> Self {
        self.ops.push(op);
        self
    }

    /// Appends [`Op::SetFlag`].
    #[must_use]
    pub fn set_flag(self, flag: impl Into<String>, value: impl Into<String>) -> Self {
        self.op(Op::SetFlag {
            flag: flag.into(),
            value: value.into(),
        })
    }

    /// Appends [`Op::RemoveFlag`].
    #[must_use]
    pub fn remove_flag(self, flag: impl Into<String>) -> Self {
        self.op(Op::RemoveFlag { flag: flag.into() })
    }

    /// Appends [`Op::ListAdd`].
    #[must_use]
    pub fn list_add(self, flag: impl Into<String>, item: impl Into<String>) -> Self {
        self.op(Op::ListAdd {
            flag: flag.into(),
            item: item.into(),
        })
    }

    /// Appends [`Op::ListRemove`].
    #[must_use]
    pub fn list_remove(self, flag: impl Into<String>, item: impl Into<String>) -> Self {
        self.op(Op::ListRemove {
            flag: flag.into(),
            item: item.into(),
        })
    }

    /// Appends [`Op::SetPath`].
    #[must_use]
    pub fn set_path(self, path: KeyPath, value: ScalarValue) -> Self {
        self.op(Op::SetPath { path, value })
    }

    /// Appends [`Op::EnsureHostPathMount`].
    #[must_use]
    pub fn ensure_host_path_mount(self, mount: HostPathMount) -> Self {
        self.op(Op::EnsureHostPathMount(mount))
    }
}

/// What one operation did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct OpOutcome {
    /// The operation, as text (`set --profiling=false`).
    pub op: String,
    /// Whether it changed the text (false: already in the requested state).
    pub changed: bool,
}

/// How an edited text is re-parsed to verify it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reparse {
    /// Only the changed lines when [`reparse::reparse`] proves the rest; else in full.
    Window,
    /// Always the whole text.
    Full,
}

/// A parsed manifest: its exact text and the span tree of its YAML documents.
///
/// Parsing is strict: malformed YAML and duplicate mapping keys are errors.
#[derive(Debug, Clone)]
pub struct Manifest {
    name: PathBuf,
    text: String,
    tree: Tree,
}

/// The result of [`Manifest::apply`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Applied {
    /// The manifest after the edit.
    pub manifest: Manifest,
    /// One outcome per operation, in order.
    pub ops: Vec<OpOutcome>,
    /// Whether the text changed.
    pub changed: bool,
    /// Whether the decoded data changed. `false` when only comments, whitespace or
    /// quoting changed (or nothing did): the kubelet restarts a static pod only when the
    /// decoded pod changes, so no restart will follow such an edit.
    pub data_changed: bool,
}

impl Manifest {
    /// Parses `text`; errors name the input `<input>`.
    pub fn parse(text: impl Into<String>) -> Result<Self> {
        Self::parse_named("<input>", text)
    }

    /// Parses `text`; errors name the input `name` (usually its path).
    pub fn parse_named(name: impl Into<PathBuf>, text: impl Into<String>) -> Result<Self> {
        let name = name.into();
        let text = text.into();
        let tree = yaml::parse(&text, &name)?;
        Ok(Manifest { name, text, tree })
    }

    /// Parses raw bytes, which must be UTF-8.
    pub fn from_bytes(name: impl Into<PathBuf>, bytes: Vec<u8>) -> Result<Self> {
        let name = name.into();
        match String::from_utf8(bytes) {
            Ok(text) => Self::parse_named(name, text),
            Err(e) => Err(Error::NotUtf8 {
                file: name,
                offset: e.utf8_error().valid_up_to(),
            }),
        }
    }

    /// The exact text.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The name errors use for this manifest.
    pub fn name(&self) -> &Path {
        &self.name
    }

    /// Consumes the manifest, returning its text.
    pub fn into_text(self) -> String {
        self.text
    }

    fn ctx(&self) -> Ctx<'_> {
        Ctx {
            text: &self.text,
            file: &self.name,
        }
    }

    fn argv(&self, container: Option<&str>) -> Result<Argv<'_>> {
        let ctx = self.ctx();
        let pod = flags::find_pod(&ctx, &self.tree)?;
        let c = flags::select_container(&ctx, pod, container)?;
        Argv::of(&ctx, c)
    }

    /// The current value of `flag` in the container (`None` selects the component's
    /// container). `Ok(None)` when the flag is not set.
    pub fn get_flag(&self, container: Option<&str>, flag: &str) -> Result<Option<FlagValue>> {
        let name = flags::flag_name(flag)?;
        self.argv(container)?.get(&self.ctx(), name)
    }

    /// The `kind` of the first document that has one (`Pod`, `KubeletConfiguration`, ...).
    pub fn kind(&self) -> Option<&str> {
        self.tree
            .docs()
            .find_map(|d| d.get("kind").and_then(yaml::Node::scalar))
    }

    /// The name of the container flag operations act on by default.
    pub fn default_container(&self) -> Result<String> {
        let ctx = self.ctx();
        let pod = flags::find_pod(&ctx, &self.tree)?;
        Ok(flags::select_container(&ctx, pod, None)?.name)
    }

    /// The text of the scalar at `path` of the mapping document, if present.
    pub fn get_path(&self, path: &KeyPath) -> Result<Option<String>> {
        let ctx = self.ctx();
        Ok(path::lookup(&ctx, &self.tree, path)?.and_then(|n| n.scalar().map(str::to_owned)))
    }

    /// Whether two manifests hold the same decoded data (comments, whitespace, quoting
    /// style and mapping order aside).
    pub fn data_eq(&self, other: &Manifest) -> bool {
        self.tree.same_data(&other.tree)
    }

    fn splices(&self, container: Option<&str>, op: &Op) -> Result<Vec<Splice>> {
        let ctx = self.ctx();
        match op {
            Op::SetFlag { flag, value } => {
                let name = flags::flag_name(flag)?;
                self.argv(container)?.set(&ctx, name, value)
            }
            Op::RemoveFlag { flag } => {
                let name = flags::flag_name(flag)?;
                self.argv(container)?.remove(&ctx, name)
            }
            Op::ListAdd { flag, item } | Op::ListRemove { flag, item } => {
                let name = flags::flag_name(flag)?;
                if item.is_empty() || item.contains(',') {
                    return Err(Error::InvalidArgument(format!(
                        "list item `{item}` must be non-empty and without commas"
                    )));
                }
                let add = matches!(op, Op::ListAdd { .. });
                self.argv(container)?.list_edit(&ctx, name, item, add)
            }
            Op::SetPath { path, value } => path::set(&ctx, &self.tree, path, value),
            Op::EnsureHostPathMount(m) => volumes::ensure(&ctx, &self.tree, container, m),
        }
    }

    /// Checks that `op`'s intended state holds in this manifest.
    fn verify(&self, container: Option<&str>, op: &Op) -> Result<()> {
        let fail = |reason: String| Error::VerifyFailed {
            path: self.name.clone(),
            reason: format!("after `{op}`: {reason}"),
        };
        // The value as `get_flag` reads it, without building its report.
        let read = |flag: &str| -> Result<Option<Option<String>>> {
            let name = flags::flag_name(flag)?;
            self.argv(container)?.value(&self.ctx(), name)
        };
        match op {
            Op::SetFlag { flag, value } => match read(flag)? {
                Some(Some(v)) if v == *value => Ok(()),
                other => Err(fail(format!("flag reads back as {other:?}"))),
            },
            Op::RemoveFlag { flag } => match read(flag)? {
                None => Ok(()),
                Some(v) => Err(fail(format!("flag still present: {v:?}"))),
            },
            Op::ListAdd { flag, item } | Op::ListRemove { flag, item } => {
                let current = read(flag)?.flatten().unwrap_or_default();
                let present = current.split(',').any(|i| i.trim() == item);
                let add = matches!(op, Op::ListAdd { .. });
                let key = item.split('=').next().unwrap_or(item);
                let key_present = current
                    .split(',')
                    .any(|i| i.split('=').next().unwrap_or(i).trim() == key);
                if (add && present) || (!add && !key_present) {
                    Ok(())
                } else {
                    Err(fail(format!("list reads back as `{current}`")))
                }
            }
            Op::SetPath { path, value } => {
                let ctx = self.ctx();
                match path::lookup(&ctx, &self.tree, path)? {
                    Some(node) if yaml::decode_scalar(node) == value.data() => Ok(()),
                    other => Err(fail(format!(
                        "value reads back as {:?}",
                        other.map(yaml::decode_scalar)
                    ))),
                }
            }
            Op::EnsureHostPathMount(_) => {
                // Applying it again must find everything in place.
                if self.splices(container, op)?.is_empty() {
                    Ok(())
                } else {
                    Err(fail("the mount is still incomplete".to_owned()))
                }
            }
        }
    }

    /// The manifest of `text`, an edit of this one by `op`: parsed in full, or derived
    /// from this tree when [`reparse::reparse`] can prove the result (`how` allowing).
    fn reparsed(&self, text: String, op: &Op, how: Reparse) -> Result<Manifest> {
        if how == Reparse::Window
            && let Some(tree) = reparse::reparse(&self.text, &self.tree, &text)
        {
            // Debug builds, and so every test, hold the proof to a full parse.
            if cfg!(debug_assertions) {
                let full = yaml::parse(&text, &self.name);
                if !full.as_ref().is_ok_and(|f| f.identical(&tree)) {
                    return Err(Error::VerifyFailed {
                        path: self.name.clone(),
                        reason: format!(
                            "internal error: after `{op}` the window re-parse disagrees with a \
                             full parse ({})",
                            full.err()
                                .map_or_else(|| "different trees".to_owned(), |e| e.to_string())
                        ),
                    });
                }
            }
            return Ok(Manifest {
                name: self.name.clone(),
                text,
                tree,
            });
        }
        Manifest::parse_named(self.name.clone(), text).map_err(|e| Error::VerifyFailed {
            path: self.name.clone(),
            reason: format!("after `{op}` the result does not parse: {e}"),
        })
    }

    /// Applies `edit`: each operation splices the current text, the result is re-parsed
    /// and checked to hold the operation's intended state before the next one runs.
    /// Errors leave `self` untouched (it is not modified in any case).
    ///
    /// When an operation only replaces, adds or removes whole one-line items of a block
    /// list (most flag operations), the re-parse reads only the changed lines and proves
    /// the rest unchanged, byte for byte, instead of parsing the whole text again; any
    /// other change is verified by a full parse. Both establish the same thing: the new
    /// text parses, and to the tree the operation is checked against (see the crate docs,
    /// "Verification"). [`crate::ManifestFile`] parses the whole text by default
    /// ([`crate::FileOptions::full_reparse`]).
    pub fn apply(&self, edit: &Edit) -> Result<Applied> {
        self.apply_with(edit, Reparse::Window)
    }

    /// Like [`Manifest::apply`], but verifies every changed operation by parsing the whole
    /// edited text (as [`crate::ManifestFile`] does by default, see
    /// [`crate::FileOptions::full_reparse`]), never by re-parsing only the changed
    /// lines. It gives the same result (the two are checked against each other in the
    /// tests) at the cost of one full parse per changed operation; for callers who write
    /// the text to a node themselves and want every result parsed in full.
    pub fn apply_full_reparse(&self, edit: &Edit) -> Result<Applied> {
        self.apply_with(edit, Reparse::Full)
    }

    /// [`Manifest::apply`], re-parsing each result as `how` says.
    pub(crate) fn apply_with(&self, edit: &Edit, how: Reparse) -> Result<Applied> {
        let container = edit.container.as_deref();
        let mut edited: Option<Manifest> = None;
        let mut outcomes = Vec::with_capacity(edit.ops.len());
        for op in &edit.ops {
            let current = edited.as_ref().unwrap_or(self);
            let splices = current.splices(container, op)?;
            let changed = !splices.is_empty();
            if changed {
                let text = layout::apply(&current.text, splices, &current.name)?;
                let next = current.reparsed(text, op, how)?;
                next.verify(container, op)?;
                edited = Some(next);
            }
            tracing::debug!(op = %op, changed, "applied");
            outcomes.push(OpOutcome {
                op: op.to_string(),
                changed,
            });
        }
        let manifest = edited.unwrap_or_else(|| self.clone());
        let changed = manifest.text != self.text;
        let data_changed = changed && !self.data_eq(&manifest);
        Ok(Applied {
            manifest,
            ops: outcomes,
            changed,
            data_changed,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edits_round_trip_through_json() {
        let edit = Edit::new()
            .container("kube-apiserver")
            .set_flag("--profiling", "false")
            .remove_flag("--insecure-port")
            .list_add("--enable-admission-plugins", "AlwaysPullImages")
            .list_remove("--disable-admission-plugins", "PodSecurity")
            .set_path(
                "authentication.anonymous.enabled".parse().unwrap(),
                ScalarValue::Bool(false),
            )
            .ensure_host_path_mount(
                HostPathMount::new(
                    "audit",
                    "/etc/kubernetes/audit.yaml",
                    "/etc/kubernetes/audit.yaml",
                )
                .path_type("File")
                .read_only(true),
            );
        let json = serde_json::to_string(&edit).unwrap();
        assert!(
            json.contains(r#"{"op":"set-flag","flag":"--profiling","value":"false"}"#),
            "{json}"
        );
        assert!(
            json.contains(r#""path":["authentication","anonymous","enabled"],"value":false"#),
            "{json}"
        );
        let back: Edit = serde_json::from_str(&json).unwrap();
        assert_eq!(back, edit);
        // An empty key path is rejected on the way in too.
        let bad = r#"{"ops":[{"op":"set-path","path":[],"value":1}]}"#;
        assert!(serde_json::from_str::<Edit>(bad).is_err());
    }

    #[test]
    fn op_descriptions() {
        let ops: Vec<String> = Edit::new()
            .set_flag("profiling", "false")
            .list_add("--feature-gates", "KMSv2=true")
            .ops
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            ops,
            [
                "set --profiling=false",
                "list-add --feature-gates KMSv2=true"
            ]
        );
    }
}
