//! Splices and the layout rules for inserting and removing whole lines: where a new list
//! item or mapping entry goes, with which indentation, dash prefix and line break.

use std::ops::Range;
use std::path::Path;

use crate::error::{Error, Result};
use crate::text;
use crate::yaml::{self, Items, Kind, Node, Raw};

/// Replace `at` with `text`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Splice {
    pub(crate) at: Range<usize>,
    pub(crate) text: String,
}

impl Splice {
    pub(crate) fn replace(at: Range<usize>, text: impl Into<String>) -> Self {
        Splice {
            at,
            text: text.into(),
        }
    }

    pub(crate) fn insert(pos: usize, text: impl Into<String>) -> Self {
        Splice {
            at: pos..pos,
            text: text.into(),
        }
    }

    pub(crate) fn delete(at: Range<usize>) -> Self {
        Splice {
            at,
            text: String::new(),
        }
    }
}

/// Applies non-overlapping splices to `text`.
pub(crate) fn apply(text: &str, mut splices: Vec<Splice>, file: &Path) -> Result<String> {
    splices.sort_by_key(|s| (s.at.start, s.at.end));
    let mut out = String::with_capacity(text.len() + 64);
    let mut pos = 0;
    for s in &splices {
        let chunk = text.get(pos..s.at.start).filter(|_| s.at.start <= s.at.end);
        let Some(chunk) = chunk else {
            return Err(Error::VerifyFailed {
                path: file.to_path_buf(),
                reason: format!("internal error: overlapping edits at byte {}", s.at.start),
            });
        };
        out.push_str(chunk);
        out.push_str(&s.text);
        pos = s.at.end;
    }
    out.push_str(text.get(pos..).unwrap_or(""));
    Ok(out)
}

/// The offset just after the line holding the node's last byte: where a line inserted
/// "after this node" goes. A trailing comment on that line stays with the node.
pub(crate) fn after_node_line(text: &str, node: &Raw) -> usize {
    text::next_line_start(text, node.last_byte())
}

/// Inserts whole `lines` (without line breaks) at `pos`, a line start. Uses the line break
/// of the preceding line; at the end of a file without a final line break, keeps it that
/// way (the break goes before the new lines, none after).
pub(crate) fn insert_lines(text: &str, pos: usize, lines: &[String]) -> Splice {
    let prev_break = if pos > 0 {
        text::line_break_at(text, pos - 1)
    } else {
        ""
    };
    let at_eof_without_break = pos >= text.len() && !text.is_empty() && !text.ends_with('\n');
    if at_eof_without_break {
        let eol = text::default_line_break(text);
        let mut s = String::new();
        for l in lines {
            s.push_str(eol);
            s.push_str(l);
        }
        return Splice::insert(text.len(), s);
    }
    let eol = if prev_break.is_empty() {
        text::default_line_break(text)
    } else {
        prev_break
    };
    let mut s = String::new();
    for l in lines {
        s.push_str(l);
        s.push_str(eol);
    }
    Splice::insert(pos, s)
}

/// Removes the whole lines from the one holding `first` to the one holding `last`
/// (inclusive). When the last of them is the file's last line and has no line break, the
/// preceding line break goes instead, so the file still ends without one.
pub(crate) fn remove_lines(text: &str, first: usize, last: usize) -> Splice {
    let start = text::line_start(text, first);
    let end = text::next_line_start(text, last);
    let ends_without_break = end >= text.len() && !text.ends_with('\n');
    if ends_without_break && start > 0 {
        let prev_break = text::line_break_at(text, start - 1);
        return Splice::delete(start - prev_break.len()..end);
    }
    Splice::delete(start..end)
}

/// The prefix of a block sequence item's line up to its content: spaces, `-`, spaces
/// (e.g. `"    - "`). `None` when the item does not start on its own dash line.
pub(crate) fn block_item_prefix<'t>(text: &'t str, item: &Raw) -> Option<&'t str> {
    let start = text::line_start(text, item.prop_start());
    let bytes = text.as_bytes();
    let mut i = start;
    while bytes.get(i) == Some(&b' ') {
        i += 1;
    }
    if bytes.get(i) != Some(&b'-') {
        return None;
    }
    i += 1;
    let after_dash = i;
    while matches!(bytes.get(i), Some(b' ' | b'\t')) {
        i += 1;
    }
    if i == after_dash || i != item.prop_start() {
        return None;
    }
    text.get(start..i)
}

/// Column (in bytes = spaces, since indentation is spaces) of a node on its line.
pub(crate) fn column(text: &str, pos: usize) -> usize {
    pos.saturating_sub(text::line_start(text, pos))
}

/// The indentation step of the document: how much deeper a nested block mapping's keys sit
/// than their parent's (2 when the document has no nested block mapping).
pub(crate) fn indent_step(text: &str, root: Node<'_>) -> usize {
    fn walk(text: &str, node: Node<'_>) -> Option<usize> {
        match node.kind() {
            Kind::Map {
                flow: false,
                entries,
            } => {
                for (k, v) in entries.iter() {
                    if let Kind::Map {
                        flow: false,
                        entries: child,
                    } = v.kind()
                        && let Some((ck, _)) = child.first()
                    {
                        let step = column(text, ck.prop_start())
                            .checked_sub(column(text, k.prop_start()))
                            .filter(|s| *s > 0);
                        if step.is_some() {
                            return step;
                        }
                    }
                    if let Some(s) = walk(text, v) {
                        return Some(s);
                    }
                }
                None
            }
            Kind::Seq { items, .. } => items.iter().find_map(|n| walk(text, n)),
            _ => None,
        }
    }
    walk(text, root).unwrap_or(2)
}

/// How far the dash of a block sequence sits right of the key that holds it, as the
/// document does it (0 for kubeadm's `key:\n- item`, 2 for `key:\n  - item`).
pub(crate) fn seq_dash_offset(text: &str, root: Node<'_>) -> usize {
    fn walk(text: &str, node: Node<'_>) -> Option<usize> {
        match node.kind() {
            Kind::Map {
                flow: false,
                entries,
            } => {
                for (k, v) in entries.iter() {
                    if let Kind::Seq { flow: false, items } = v.kind()
                        && let Some(first) = items.first()
                        && let Some(prefix) = block_item_prefix(text, &first)
                    {
                        let dash = prefix.len() - prefix.trim_start().len();
                        if let Some(off) = dash.checked_sub(column(text, k.prop_start())) {
                            return Some(off);
                        }
                    }
                    if let Some(s) = walk(text, v) {
                        return Some(s);
                    }
                }
                None
            }
            Kind::Seq { items, .. } => items.iter().find_map(|n| walk(text, n)),
            _ => None,
        }
    }
    walk(text, root).unwrap_or(0)
}

/// The value of a new mapping entry.
#[derive(Debug, Clone)]
pub(crate) enum NewValue {
    /// `key: <text>` on one line.
    Inline(String),
    /// `key:` followed by lines indented relative to the key (relative indent, text).
    Block(Vec<(usize, String)>),
}

/// Builds the lines of `key: value` at indentation `indent`.
pub(crate) fn entry_lines(indent: usize, key: &str, value: &NewValue) -> Vec<String> {
    let pad = " ".repeat(indent);
    match value {
        NewValue::Inline(v) => vec![format!("{pad}{}: {v}", yaml::render_key(key))],
        NewValue::Block(lines) => {
            let mut out = vec![format!("{pad}{}:", yaml::render_key(key))];
            out.extend(
                lines
                    .iter()
                    .map(|(rel, l)| format!("{}{l}", " ".repeat(indent + rel))),
            );
            out
        }
    }
}

/// Inserts a new entry `key: value` into a block mapping: in sorted position when the
/// existing keys are sorted (as kubeadm writes them), else after the last entry.
pub(crate) fn insert_into_block_map(
    text: &str,
    map: Node<'_>,
    key: &str,
    value: &NewValue,
) -> Option<Splice> {
    let Kind::Map {
        flow: false,
        entries,
    } = map.kind()
    else {
        return None;
    };
    let (first_key, _) = entries.first()?;
    let indent = column(text, first_key.prop_start());
    let lines = entry_lines(indent, key, value);

    let keys: Vec<Option<&str>> = entries.iter().map(|(k, _)| k.scalar()).collect();
    let sorted =
        keys.iter().all(Option::is_some) && keys.windows(2).all(|w| matches!(w, [a, b] if a <= b));
    if sorted
        && let Some((next_key, _)) = entries.iter().find(|(k, _)| k.scalar() > Some(key))
        && text::only_spaces_before(text, next_key.prop_start())
    {
        let pos = text::line_start(text, next_key.prop_start());
        return Some(insert_lines(text, pos, &lines));
    }
    let (last_key, last_value) = entries.last()?;
    let last = if last_value.is_empty_null() {
        last_key
    } else {
        last_value
    };
    Some(insert_lines(text, after_node_line(text, &last), &lines))
}

/// Inserts `item` (already rendered for flow context) at the end of a flow sequence or
/// `key: value` text into a flow mapping, keeping the separator style of the collection.
pub(crate) fn insert_into_flow(text: &str, node: Node<'_>, item: &str) -> Option<Splice> {
    let (first, last): (Option<(usize, usize)>, Option<usize>) = match node.kind() {
        Kind::Seq { flow: true, items } => (
            match (items.first(), items.get(1)) {
                (Some(a), Some(b)) => Some((a.end, b.prop_start())),
                _ => None,
            },
            items.last().map(|n| n.end),
        ),
        Kind::Map {
            flow: true,
            entries,
        } => (
            match (entries.first(), entries.get(1)) {
                (Some((_, a)), Some((b, _))) => Some((a.end, b.prop_start())),
                _ => None,
            },
            entries.last().map(|(_, v)| v.end),
        ),
        _ => return None,
    };
    match last {
        None => {
            // Empty `[]` / `{}`: the opening bracket is the node's first byte.
            Some(Splice::insert(node.start + 1, item.to_owned()))
        }
        Some(end) => {
            let sep = first
                .and_then(|(a, b)| text.get(a..b))
                .filter(|s| s.trim_start().starts_with(',') && !s.contains('#'))
                .unwrap_or(", ");
            Some(Splice::insert(end, format!("{sep}{item}")))
        }
    }
}

/// Inserts a new item (already rendered) after the last item of a block sequence, with
/// the last item's dash prefix.
pub(crate) fn append_block_item(
    text: &str,
    items: Items<'_>,
    rendered: &[String],
) -> Option<Splice> {
    let last = items.last()?;
    let prefix = block_item_prefix(text, &last)?;
    let cont = " ".repeat(prefix.len());
    let lines: Vec<String> = rendered
        .iter()
        .enumerate()
        .map(|(i, l)| {
            if i == 0 {
                format!("{prefix}{l}")
            } else {
                format!("{cont}{l}")
            }
        })
        .collect();
    Some(insert_lines(text, after_node_line(text, &last), &lines))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::yaml::{Tree, parse};

    fn tree(t: &str) -> Tree {
        parse(t, Path::new("t")).unwrap()
    }

    fn root(t: &Tree) -> Node<'_> {
        t.docs().next().unwrap()
    }

    #[test]
    fn insert_keeps_missing_final_newline_and_crlf() {
        let t = "a:\r\n- x\r\n- y";
        let tr = tree(t);
        let items = root(&tr).get("a").unwrap().items().unwrap();
        let s = append_block_item(t, items, &["z".into()]).unwrap();
        assert_eq!(
            apply(t, vec![s], Path::new("t")).unwrap(),
            "a:\r\n- x\r\n- y\r\n- z"
        );
    }

    #[test]
    fn remove_last_line_without_newline() {
        let t = "a:\n- x\n- y";
        let s = remove_lines(t, 9, 9);
        assert_eq!(apply(t, vec![s], Path::new("t")).unwrap(), "a:\n- x");
    }

    #[test]
    fn sorted_insert_and_append() {
        let t = "a: 1\nc: 3\n";
        let tr = tree(t);
        let s = insert_into_block_map(t, root(&tr), "b", &NewValue::Inline("2".into())).unwrap();
        assert_eq!(
            apply(t, vec![s], Path::new("t")).unwrap(),
            "a: 1\nb: 2\nc: 3\n"
        );
        let t = "c: 3\na: 1\n";
        let tr = tree(t);
        let s = insert_into_block_map(t, root(&tr), "b", &NewValue::Inline("2".into())).unwrap();
        assert_eq!(
            apply(t, vec![s], Path::new("t")).unwrap(),
            "c: 3\na: 1\nb: 2\n"
        );
    }

    #[test]
    fn flow_insert_keeps_separator() {
        let t = "a: [x,  y]\nb: []\n";
        let tr = tree(t);
        let r = root(&tr);
        let s1 = insert_into_flow(t, r.get("a").unwrap(), "z").unwrap();
        let s2 = insert_into_flow(t, r.get("b").unwrap(), "w").unwrap();
        assert_eq!(
            apply(t, vec![s1, s2], Path::new("t")).unwrap(),
            "a: [x,  y,  z]\nb: [w]\n"
        );
    }

    #[test]
    fn detects_indent_step_and_dash_offset() {
        let t = "a:\n    b: 1\nl:\n  - x\n";
        let tr = tree(t);
        assert_eq!(indent_step(t, root(&tr)), 4);
        assert_eq!(seq_dash_offset(t, root(&tr)), 2);
    }
}
