//! What an edit did: line changes, a unified diff, content hashes.

use std::fmt::Write as _;
use std::path::PathBuf;

use serde::Serialize;
use sha2::{Digest, Sha256};
use similar::{DiffOp, TextDiff};

use crate::edit::OpOutcome;

/// The SHA-256 of `bytes`, lowercase hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    let mut out = String::with_capacity(64);
    for b in digest.iter() {
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// One changed line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LineChange {
    /// 1-based line number: in the new text for added or replaced lines, in the old text
    /// for removed lines.
    pub line: usize,
    /// The line before (without its line break); `None` for an added line.
    pub old: Option<String>,
    /// The line after; `None` for a removed line.
    pub new: Option<String>,
}

fn strip_break(s: &str) -> String {
    s.trim_end_matches('\n').trim_end_matches('\r').to_owned()
}

/// The changed lines between `old` and `new`.
pub fn line_changes(old: &str, new: &str) -> Vec<LineChange> {
    changes_of(&TextDiff::from_lines(old, new))
}

fn changes_of(diff: &TextDiff<'_, '_, '_, str>) -> Vec<LineChange> {
    let old_lines = diff.old_slices();
    let new_lines = diff.new_slices();
    let line = |lines: &[&str], i: usize| lines.get(i).map(|s| strip_break(s));
    let mut out = Vec::new();
    for op in diff.ops() {
        match *op {
            DiffOp::Equal { .. } => {}
            DiffOp::Delete {
                old_index, old_len, ..
            } => {
                for i in old_index..old_index + old_len {
                    out.push(LineChange {
                        line: i + 1,
                        old: line(old_lines, i),
                        new: None,
                    });
                }
            }
            DiffOp::Insert {
                new_index, new_len, ..
            } => {
                for i in new_index..new_index + new_len {
                    out.push(LineChange {
                        line: i + 1,
                        old: None,
                        new: line(new_lines, i),
                    });
                }
            }
            DiffOp::Replace {
                old_index,
                old_len,
                new_index,
                new_len,
            } => {
                for k in 0..old_len.max(new_len) {
                    let (o, n) = (old_index + k, new_index + k);
                    out.push(LineChange {
                        line: if k < new_len { n + 1 } else { o + 1 },
                        old: if k < old_len {
                            line(old_lines, o)
                        } else {
                            None
                        },
                        new: if k < new_len {
                            line(new_lines, n)
                        } else {
                            None
                        },
                    });
                }
            }
        }
    }
    out
}

fn unified_of<'a>(diff: &'a TextDiff<'a, 'a, 'a, str>, name: &str) -> String {
    diff.unified_diff()
        .context_radius(3)
        .header(&format!("a/{name}"), &format!("b/{name}"))
        .to_string()
}

/// A unified diff (`--- a/NAME`, `+++ b/NAME`, 3 lines of context); empty when equal.
pub fn unified_diff(name: &str, old: &str, new: &str) -> String {
    if old == new {
        return String::new();
    }
    unified_of(&TextDiff::from_lines(old, new), name)
}

/// Line changes and unified diff from one diff computation.
pub(crate) fn changes_and_diff(name: &str, old: &str, new: &str) -> (Vec<LineChange>, String) {
    if old == new {
        return (Vec::new(), String::new());
    }
    let diff = TextDiff::from_lines(old, new);
    (changes_of(&diff), unified_of(&diff, name))
}

/// The report of an edit of a file (or of a dry run).
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct Report {
    /// The file.
    pub path: PathBuf,
    /// One outcome per operation.
    pub ops: Vec<OpOutcome>,
    /// Whether the content changed (false: everything already as requested).
    pub changed: bool,
    /// Whether the decoded data changed; `false` for comment/whitespace/quoting-only
    /// changes, after which the kubelet will not restart the static pod.
    pub data_changed: bool,
    /// The `kind` of the (first) document: `Pod` for a static pod, whose decoded change
    /// makes the kubelet restart it; `KubeletConfiguration` takes effect when the kubelet
    /// itself restarts.
    pub kind: Option<String>,
    /// Whether the new content was written (false for a dry run or no change).
    pub written: bool,
    /// SHA-256 (hex) of the content before.
    pub before_sha256: String,
    /// SHA-256 (hex) of the content after (equal to `before_sha256` when unchanged).
    pub after_sha256: String,
    /// Where the previous content was backed up, if a backup was written.
    pub backup: Option<PathBuf>,
    /// Changed lines.
    pub changes: Vec<LineChange>,
    /// Unified diff of the change.
    pub diff: String,
    /// The new content (not serialised).
    #[serde(skip)]
    pub new_content: Vec<u8>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_known_value() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn changes_pair_replaced_lines() {
        let c = line_changes("a\nb\nc\n", "a\nB\nc\nd\n");
        assert_eq!(
            c,
            vec![
                LineChange {
                    line: 2,
                    old: Some("b".into()),
                    new: Some("B".into())
                },
                LineChange {
                    line: 4,
                    old: None,
                    new: Some("d".into())
                },
            ]
        );
    }

    #[test]
    fn diff_marks_missing_final_newline() {
        let d = unified_diff("f", "a\nb", "a\nb\nc");
        assert!(d.contains("\\ No newline at end of file"), "{d}");
        assert!(d.starts_with("--- a/f\n+++ b/f\n"), "{d}");
        assert_eq!(unified_diff("f", "x", "x"), "");
    }
}
