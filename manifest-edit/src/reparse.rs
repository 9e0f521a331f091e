//! Verifying an edit without re-parsing the whole file.
//!
//! After each operation, [`crate::Manifest::apply`] must know that the edited text parses,
//! and what it parses to: the operation's intended state is checked on that tree, and the
//! next operation splices by its spans. The plain way is a full parse of the new text — on a
//! kubeadm manifest, a second granit parse that costs as much as everything else of the edit
//! together. Nearly every flag operation, though, changes whole items of one block sequence
//! (`command` or `args`): it replaces the line of one item, appends an item line, or removes
//! item lines. For that shape [`reparse`] establishes the same fact from far less work, and
//! for every other shape it declines (`None`) and the caller parses the whole text as before.
//!
//! # What is checked
//!
//! 1. The changed window comes from the two texts alone — their common prefix and suffix,
//!    widened to whole lines — never from the splices, so a wrong splice cannot hide from it:
//!    `new = old[..a] + W' + old[b..]` with `W = old[a..b]`.
//! 2. In the old tree (a full granit parse), `W` is exactly the lines of consecutive items
//!    `i..=j` of one block sequence `S` (no line at all for an insertion between items or
//!    after the last one): each item a single-line scalar without anchor or tag, on a line
//!    written `N spaces, "-", spaces, scalar, optional comment`, `N` being the column of the
//!    dashes of `S`.
//! 3. Granit (same options as the full parse) parses `W'` on its own to exactly one implicit
//!    document holding one block sequence whose items are single-line scalars without anchor
//!    or tag, one per line, every line of `W'` written as in 2 with its dash at the same
//!    column `N`. Nothing else is allowed in `W'` or `W`: no blank or comment-only line, no
//!    tab, no control character, no line break but `\n` and `\r\n`, no BOM, no U+2028/9.
//! 4. The first line of `old[b..]` that is neither blank nor a comment is indented by at
//!    most `N` spaces and does not continue its indentation with a tab (or there is none).
//! 5. `S` keeps at least one item, no node of the old tree is empty and placed inside
//!    `[a, b]` (an implicit null's position is not tied to a line), and the old tree's nodes
//!    other than `S`'s items in the window lie wholly before `a`, wholly from `b` on, or
//!    contain `S`.
//!
//! # Why that is a full verification
//!
//! Under 1–5 the new text parses, and its tree is the old one with items `i..=j` of `S`
//! replaced by the items of `W'` and every position from `b` on moved by the length
//! difference. In the YAML 1.2 grammar a block sequence is a repetition of entries,
//! `l+block-sequence(n) ::= ( s-indent(N) c-l-block-seq-entry(N) )+`, each starting at a
//! line of exactly `N` spaces and a dash; `c-l-block-seq-entry(N)` derives its node in the
//! block-in context wherever the sequence sits (top level, value of a key, indentless or
//! not), so an entry line parsed on its own (3) is exactly that entry in the file. Replacing
//! whole entries of the repetition by other whole entries keeps a derivation of the text:
//!
//! - Before the window nothing changed, and whatever precedes line `a` ends before it in the
//!   new text too: that line starts with `N` spaces and a dash, and every node inside an
//!   entry of `S` is indented more than `N` (block collections, plain and block scalars
//!   continue only on lines indented more; quoted scalars and flow collections of the old
//!   text are closed before `a`, since `a` is an entry boundary of the old tree).
//! - The last new entry cannot reach into `old[b..]`: a plain scalar continues only on a line
//!   indented more than `N`, and the next content line is not (4); a quoted one is closed on
//!   its line (3); comment lines end a plain scalar.
//! - From `b` on, the scanner is where the old parse was after the old entry `j` (or after
//!   the entry the insertion follows): at the start of a line, inside `S`, with no open flow
//!   collection, quoted or block scalar and no pending simple key (a block simple key cannot
//!   span lines); deeper indentation levels the old entry may have left open are closed by
//!   the next content line in both texts, since it is indented at most `N` (4). So the rest
//!   derives as before.
//!
//! YAML's grammar is unambiguous, so this derivation is the parse. Anchor ids are unchanged
//! because neither the removed nor the new items define anchors, and no key was added, so
//! there is no new duplicate key.
//!
//! This module can only accept a text, never reject one: every refusal, with its message,
//! comes from the full parse the caller falls back to. Debug builds, and so every test,
//! check each accepted tree against a full parse and fail the edit if they differ in any
//! span, value or style. [`crate::ManifestFile`] does not use this module: what it writes to
//! a node is always verified by a full parse.

use std::ops::Range;

use granit_parser::{Event, Parser, ScalarStyle, StructureStyle};

use crate::layout;
use crate::text;
use crate::yaml::{self, Raw, RawKind, Slot, Tree};

/// The tree of `new_text`, derived from `old` (the tree of `old_text`) by the rules of the
/// module documentation, or `None` when the change does not have the shape they cover.
pub(crate) fn reparse(old_text: &str, old: &Tree, new_text: &str) -> Option<Tree> {
    let w = Window::of(old_text, new_text)?;
    let new_items = parse_window(w.new)?;
    let col = match (&new_items.first(), w.old.is_empty()) {
        (Some(first), _) => first.col,
        (None, false) => entry_line(w.old, 0)?.col,
        (None, true) => return None,
    };
    let old_lines = old_entry_lines(w.old, col)?;
    if !next_content_line_ok(old_text, w.b, col) {
        return None;
    }
    let target = Target::find(old_text, old, &w, col, &old_lines)?;
    build(old_text, old, &w, col, &target, &new_items)
}

/// The changed lines: `new = old[..a] + new_window + old[b..]`.
struct Window<'x> {
    a: usize,
    b: usize,
    old: &'x str,
    new: &'x str,
    /// `new.len() - old.len()`.
    delta: isize,
}

impl<'x> Window<'x> {
    fn of(old: &'x str, new: &'x str) -> Option<Self> {
        let (ob, nb) = (old.as_bytes(), new.as_bytes());
        let prefix = common_prefix(ob, nb);
        if prefix == ob.len() && prefix == nb.len() {
            return None; // unchanged
        }
        let a = text::line_start(old, prefix);
        let limit = ob.len().min(nb.len()).checked_sub(a)?;
        let suffix = common_suffix(ob.get(a..)?, nb.get(a..)?).min(limit);
        let old_end = ob.len().checked_sub(suffix)?;
        let b = if old_end == a || old_end == ob.len() || ob.get(old_end - 1) == Some(&b'\n') {
            old_end
        } else {
            text::next_line_start(old, old_end)
        };
        let b_new = nb.len().checked_sub(ob.len().checked_sub(b)?)?;
        let w_old = old.get(a..b)?;
        let w_new = new.get(a..b_new)?;
        // Both windows are whole lines: each ends with a line break or at the end of its text.
        let whole =
            |w: &str, end: usize, len: usize| w.is_empty() || w.ends_with('\n') || end == len;
        if !whole(w_old, b, ob.len()) || !whole(w_new, b_new, nb.len()) {
            return None;
        }
        if !plain_lines(w_old) || !plain_lines(w_new) {
            return None;
        }
        let delta = isize::try_from(nb.len()).ok()? - isize::try_from(ob.len()).ok()?;
        Some(Window {
            a,
            b,
            old: w_old,
            new: w_new,
            delta,
        })
    }
}

/// Length of the common prefix of `x` and `y` (compared 64 bytes at a time first).
fn common_prefix(x: &[u8], y: &[u8]) -> usize {
    let n = x.len().min(y.len());
    let mut i = 0;
    while i + 64 <= n && x.get(i..i + 64) == y.get(i..i + 64) {
        i += 64;
    }
    while i < n && x.get(i) == y.get(i) {
        i += 1;
    }
    i
}

/// Length of the common suffix of `x` and `y`.
fn common_suffix(x: &[u8], y: &[u8]) -> usize {
    let n = x.len().min(y.len());
    let (xl, yl) = (x.len(), y.len());
    let mut i = 0;
    while i + 64 <= n && x.get(xl - i - 64..xl - i) == y.get(yl - i - 64..yl - i) {
        i += 64;
    }
    while i < n && x.get(xl - i - 1) == y.get(yl - i - 1) {
        i += 1;
    }
    i
}

/// Whether `w` holds only printable characters, `\n` and `\r\n` line breaks: no tab, no
/// other control character, no BOM, no line or paragraph separator, no NEL.
fn plain_lines(w: &str) -> bool {
    let bytes = w.as_bytes();
    let ascii_ok = bytes.iter().enumerate().all(|(i, &c)| match c {
        b'\n' => true,
        b'\r' => bytes.get(i + 1) == Some(&b'\n'),
        0..=0x1f | 0x7f => false,
        _ => true,
    });
    ascii_ok
        && !w.chars().any(|c| {
            ('\u{80}'..='\u{9f}').contains(&c)
                || matches!(
                    c,
                    '\u{2028}' | '\u{2029}' | '\u{feff}' | '\u{fffe}' | '\u{ffff}'
                )
        })
}

/// A line written `N spaces, "-", spaces, node, rest`.
#[derive(Debug, Clone, Copy)]
struct EntryLine {
    /// The dash column `N`.
    col: usize,
    /// Offset where the node starts.
    node: usize,
    /// Offset where the line's content ends (before `\r\n` or `\n`, or the end).
    end: usize,
}

/// Reads the entry line starting at `start` of `w`.
fn entry_line(w: &str, start: usize) -> Option<EntryLine> {
    let bytes = w.as_bytes();
    let end = text::content_end(w, start);
    let mut i = start;
    while bytes.get(i) == Some(&b' ') {
        i += 1;
    }
    let col = i - start;
    if bytes.get(i) != Some(&b'-') {
        return None;
    }
    i += 1;
    let after_dash = i;
    while bytes.get(i) == Some(&b' ') {
        i += 1;
    }
    if i == after_dash || i >= end {
        return None;
    }
    Some(EntryLine { col, node: i, end })
}

/// Whether `rest` (what follows a node on its line) is nothing, or spaces and a comment.
fn rest_is_comment(rest: &str) -> bool {
    rest.is_empty()
        || (rest.starts_with(' ') && matches!(rest.trim_start().chars().next(), None | Some('#')))
}

/// The start offsets of the lines of `w`.
fn line_starts(w: &str) -> impl Iterator<Item = usize> + '_ {
    std::iter::once(0)
        .chain(w.match_indices('\n').map(|(i, _)| i + 1))
        .filter(move |&s| s < w.len())
}

/// Every line of the old window as an entry line with its dash at `col`.
fn old_entry_lines(w: &str, col: usize) -> Option<Vec<EntryLine>> {
    line_starts(w)
        .map(|s| entry_line(w, s).filter(|l| l.col == col))
        .collect()
}

/// One item of the new window, as granit parsed it on its own.
struct NewItem<'x> {
    /// Span in the window.
    start: usize,
    end: usize,
    value: std::borrow::Cow<'x, str>,
    style: ScalarStyle,
    col: usize,
}

/// Parses the new window on its own: one block sequence of single-line scalar items, one per
/// line, nothing else (rule 3). An empty window has no items.
fn parse_window(w: &str) -> Option<Vec<NewItem<'_>>> {
    if w.is_empty() {
        return Some(Vec::new());
    }
    let mut events = Parser::new_from_str_with_options(w, yaml::parser_options());
    let mut next = || -> Option<(Event<'_>, Range<usize>)> {
        let (event, span) = events.next()?.ok()?;
        // Tags of scalars are refused below; a tag span on anything is unexpected.
        if span.tag_start().is_some() {
            return None;
        }
        Some((event, span.byte_range()?))
    };
    if !matches!(next()?.0, Event::StreamStart)
        || !matches!(next()?.0, Event::DocumentStart(false, None))
        || !matches!(
            next()?.0,
            Event::SequenceStart(StructureStyle::Block, 0, None)
        )
    {
        return None;
    }
    let mut items = Vec::new();
    let mut lines = line_starts(w);
    loop {
        match next()? {
            (Event::Scalar(value, style, 0, None), span) => {
                let line = entry_line(w, lines.next()?)?;
                let rest = w.get(span.end..line.end)?;
                if span.start != line.node || span.end <= span.start || !rest_is_comment(rest) {
                    return None;
                }
                if items
                    .first()
                    .is_some_and(|f: &NewItem<'_>| f.col != line.col)
                {
                    return None;
                }
                items.push(NewItem {
                    start: span.start,
                    end: span.end,
                    value,
                    style,
                    col: line.col,
                });
            }
            (Event::SequenceEnd, _) => break,
            _ => return None,
        }
    }
    let tail_ok = matches!(next()?.0, Event::DocumentEnd)
        && matches!(next()?.0, Event::StreamEnd)
        && next().is_none()
        && lines.next().is_none();
    tail_ok.then_some(items)
}

/// Rule 4: the first content line of `text[b..]` is indented by at most `col` spaces.
fn next_content_line_ok(text: &str, b: usize, col: usize) -> bool {
    let mut pos = b;
    while pos < text.len() {
        let end = text::content_end(text, pos);
        let line = text.get(pos..end).unwrap_or("");
        let body = line.trim_start_matches(' ');
        if !(body.is_empty() || body.starts_with('#')) {
            let indent = line.len() - body.len();
            return indent <= col && !body.starts_with('\t');
        }
        pos = text::next_line_start(text, pos);
    }
    true
}

/// Where the window sits in the old tree.
struct Target {
    /// Arena index of the sequence `S`.
    seq: usize,
    /// Arena indices of the collections containing `S`, outermost first.
    ancestors: Vec<usize>,
    /// Index of the first item replaced (or before which items are inserted).
    first: usize,
    /// How many items the window removes.
    removed: usize,
}

impl Target {
    /// Finds the block sequence whose items the window replaces or extends (rule 2);
    /// `None` unless exactly one sequence fits.
    fn find(
        text: &str,
        tree: &Tree,
        w: &Window<'_>,
        col: usize,
        old_lines: &[EntryLine],
    ) -> Option<Target> {
        let mut search = Search {
            text,
            tree,
            w,
            col,
            old_lines,
            // A node can hold the window's sequence only if it ends on or after the line
            // before `a` and starts on or before the line of `b`.
            from: w.a.checked_sub(1).map_or(0, |p| text::line_start(text, p)),
            to: text::content_end(text, w.b),
            path: Vec::new(),
            found: None,
            count: 0,
        };
        for &root in &tree.roots {
            search.visit(root);
        }
        if search.count == 1 {
            search.found
        } else {
            None
        }
    }
}

/// The dash column of a block sequence item, when it starts its own `- ` line.
fn dash_col(text: &str, item: &Raw) -> Option<usize> {
    let prefix = layout::block_item_prefix(text, item)?;
    Some(prefix.len() - prefix.trim_start_matches(' ').len())
}

/// The walk of [`Target::find`].
struct Search<'s, 'x> {
    text: &'s str,
    tree: &'s Tree,
    w: &'s Window<'x>,
    col: usize,
    old_lines: &'s [EntryLine],
    from: usize,
    to: usize,
    path: Vec<usize>,
    found: Option<Target>,
    count: usize,
}

impl Search<'_, '_> {
    fn visit(&mut self, idx: usize) {
        let Some(node) = self.tree.nodes.get(idx) else {
            return;
        };
        let children = match node.kind {
            RawKind::Seq { children, .. } | RawKind::Map { children, .. } => children,
            _ => return,
        };
        if node.prop_start() > self.to || node.last_byte() < self.from {
            return;
        }
        if let RawKind::Seq { flow: false, .. } = node.kind
            && let Some(first) = self.matches(self.tree.children(children))
        {
            self.count += 1;
            self.found = Some(Target {
                seq: idx,
                ancestors: self.path.clone(),
                first,
                removed: self.old_lines.len(),
            });
        }
        self.path.push(idx);
        for child in children.at..children.at.saturating_add(children.len) {
            self.visit(child);
        }
        self.path.pop();
    }

    /// If the window is items `i..` of the block sequence with these `items` (rule 2), `i`.
    fn matches(&self, items: &[Raw]) -> Option<usize> {
        let (text, a) = (self.text, self.w.a);
        if let Some(first_line) = self.old_lines.first() {
            let i = items
                .iter()
                .position(|n| n.prop_start() == a + first_line.node)?;
            for (t, line) in self.old_lines.iter().enumerate() {
                let item = items.get(i + t)?;
                let simple = matches!(item.kind, RawKind::Scalar { .. })
                    && item.anchor == 0
                    && item.tag.is_none()
                    && item.tag_start.is_none()
                    && item.start == a + line.node
                    && item.end > item.start
                    && item.end <= a + line.end
                    && text
                        .get(item.end..a + line.end)
                        .is_some_and(rest_is_comment);
                if !simple {
                    return None;
                }
            }
            return Some(i);
        }
        // An insertion: right after an item's last line (its last byte is on the line
        // before `a`, or is that line's break), or at the line of an item's dash.
        let dash_ok = |n: &Raw| dash_col(text, n) == Some(self.col);
        let after = items
            .iter()
            .position(|n| (self.from..a).contains(&n.last_byte()) && dash_ok(n))
            .map(|k| k + 1);
        after.or_else(|| {
            let line_end = text::content_end(text, a);
            items
                .iter()
                .position(|n| (a..=line_end).contains(&n.prop_start()) && dash_ok(n))
        })
    }
}

/// Builds the new tree (rules 1–5 hold for the parts already checked; rule 5 is checked here).
fn build(
    old_text: &str,
    old: &Tree,
    w: &Window<'_>,
    col: usize,
    target: &Target,
    new_items: &[NewItem<'_>],
) -> Option<Tree> {
    let seq = *old.nodes.get(target.seq)?;
    let RawKind::Seq {
        flow: false,
        children,
    } = seq.kind
    else {
        return None;
    };
    let items = old.children(children);
    let keep_after = target.first.checked_add(target.removed)?;
    if keep_after > items.len() || items.len() - target.removed + new_items.len() == 0 {
        return None;
    }

    let mut tree = old.clone();
    let block_at = tree.nodes.len();
    tree.nodes.extend_from_slice(items.get(..target.first)?);
    for item in new_items {
        let value = yaml::store(&mut tree.strings, &item.value);
        tree.nodes.push(Raw {
            start: w.a + item.start,
            end: w.a + item.end,
            tag_start: None,
            anchor: 0,
            tag: None,
            kind: RawKind::Scalar {
                value,
                style: item.style,
            },
        });
    }
    tree.nodes.extend_from_slice(items.get(keep_after..)?);
    let new_children = Slot {
        at: block_at,
        len: tree.nodes.len() - block_at,
    };

    // The sequence's own start: granit puts it at the first item of an indentless sequence
    // and at the first dash of an indented one; only the first item can move it.
    let new_start = if target.first == 0 {
        let first_old = items.first()?;
        let first_new = new_items.first()?;
        if seq.start == first_old.start {
            w.a + first_new.start
        } else if seq.start == text::line_start(old_text, first_old.prop_start()) + col {
            w.a + col
        } else {
            return None;
        }
    } else if seq.start < w.a {
        seq.start
    } else {
        return None;
    };

    {
        let s = tree.nodes.get_mut(target.seq)?;
        s.start = new_start;
        s.kind = RawKind::Seq {
            flow: false,
            children: new_children,
        };
    }
    tree.dead.push(children);
    let new_block =
        new_children.at + target.first..new_children.at + target.first + new_items.len();
    place_all(&mut tree, w, &new_block, target)?;

    // The sequence's end, then its ancestors', innermost first: the end of a block
    // collection is its last child's (`yaml::block_end`), which may have moved.
    for &idx in std::iter::once(&target.seq).chain(target.ancestors.iter().rev()) {
        let node = tree.nodes.get(idx)?;
        let (RawKind::Seq {
            flow: false,
            children,
        }
        | RawKind::Map {
            flow: false,
            children,
        }) = node.kind
        else {
            return None;
        };
        if idx != target.seq && node.prop_start() >= w.a {
            return None;
        }
        let end = yaml::block_end(node, tree.children(children));
        tree.nodes.get_mut(idx)?.end = end;
    }
    Some(tree)
}

/// Rule 5 and the move: every live node but the new items, the sequence and its ancestors
/// lies wholly before `a` (kept) or wholly from `b` on (moved by the length difference);
/// no empty node lies in `[a, b]`. The nodes are independent, so one pass over the storage
/// does it, skipping the blocks no collection points to.
fn place_all(
    tree: &mut Tree,
    w: &Window<'_>,
    new_block: &Range<usize>,
    target: &Target,
) -> Option<()> {
    let (a, b, delta) = (w.a, w.b, w.delta);
    let mut dead = tree.dead.clone();
    dead.sort_by_key(|d| d.at);
    let mut next_dead = dead.iter().peekable();
    let mut idx = 0;
    while idx < tree.nodes.len() {
        if let Some(d) = next_dead.peek()
            && d.at <= idx
        {
            idx = idx.max(d.at.saturating_add(d.len));
            next_dead.next();
            continue;
        }
        if new_block.contains(&idx) || idx == target.seq || target.ancestors.contains(&idx) {
            idx += 1;
            continue;
        }
        let n = tree.nodes.get_mut(idx)?;
        if n.start == n.end && (a..=b).contains(&n.start) {
            return None;
        }
        if n.prop_start() >= b {
            n.start = n.start.checked_add_signed(delta)?;
            n.end = n.end.checked_add_signed(delta)?;
            if let Some(t) = n.tag_start {
                n.tag_start = Some(t.checked_add_signed(delta)?);
            }
        } else if n.end > a {
            // Straddling the window: only the sequence and its ancestors may.
            return None;
        }
        idx += 1;
    }
    Some(())
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn check(old: &str, new: &str) -> bool {
        let file = Path::new("t.yaml");
        let old_tree = yaml::parse(old, file).unwrap();
        let full = yaml::parse(new, file).unwrap();
        match reparse(old, &old_tree, new) {
            Some(t) => {
                assert!(t.identical(&full), "{old:?} -> {new:?}\n{t:#?}\n{full:#?}");
                true
            }
            None => false,
        }
    }

    const POD: &str = "kind: Pod\nspec:\n  containers:\n  - command:\n    - kube-apiserver\n    - --a=1 # one\n    - --b\n    image: x\n";

    #[test]
    fn replaces_appends_and_removes_items() {
        // Replace an item (its comment stays).
        assert!(check(POD, &POD.replace("--a=1 #", "--a=22 #")));
        // Append after the last item, before the next key.
        assert!(check(
            POD,
            &POD.replace("- --b\n", "- --b\n    - --c=\"x y\"\n")
        ));
        // Remove an item.
        assert!(check(POD, &POD.replace("    - --b\n", "")));
        // Quoted item replaced by a quoted one.
        let q = POD.replace("--a=1", "'--a=1'");
        assert!(check(&q, &q.replace("'--a=1'", "'--a=it''s'")));
        // CRLF, no final newline, append at the very end.
        let crlf = "a:\r\n- x\r\n- y";
        assert!(check(crlf, "a:\r\n- x\r\n- y\r\n- z"));
        // Indented (non-indentless) sequence, first item replaced.
        let ind = "k:\n  - a\n  - b\nz: 1\n";
        assert!(check(ind, "k:\n  - c\n  - b\nz: 1\n"));
        assert!(check(ind, "k:\n  - a\n  - b\n  - c\nz: 1\n"));
        // Indentless sequence, first item replaced.
        let less = "k:\n- a\n- b\nz: 1\n";
        assert!(check(less, "k:\n- c\n- b\nz: 1\n"));
        // Multi-document: positions in the later document move.
        let multi = "a:\n- x\n---\nb: &n [1, *n]\n";
        assert!(check(multi, "a:\n- x\n- y\n---\nb: &n [1, *n]\n"));
    }

    #[test]
    fn declines_what_it_cannot_prove() {
        // A change outside any list.
        assert!(!check(POD, &POD.replace("image: x", "image: y")));
        // A new item that is a mapping, or two items on one line.
        assert!(!check(POD, &POD.replace("- --b\n", "- --b\n    - a: b\n")));
        // The next line after the window is indented deeper (would continue a plain scalar).
        let deep = "k:\n- a\n- b\n  # c\n   x\n";
        assert!(
            yaml::parse(deep, Path::new("t")).is_err()
                || !check(deep, "k:\n- a\n- c\n  # c\n   x\n")
        );
        // Flow lists are not covered.
        let flow = "k: [a, b]\n";
        assert!(!check(flow, "k: [a, c]\n"));
        // A comment line inside the window.
        assert!(!check(
            POD,
            &POD.replace("- --b\n", "- --b\n    # new\n    - --c\n")
        ));
        // Removing every item.
        assert!(!check("k:\n- a\nz: 1\n", "k:\nz: 1\n"));
        // A tab in the new line.
        assert!(!check(POD, &POD.replace("--a=1 #", "--a=1\t#")));
        // A new item with an anchor or a tag.
        assert!(!check(POD, &POD.replace("- --b\n", "- --b\n    - &x c\n")));
        assert!(!check(
            POD,
            &POD.replace("- --b\n", "- --b\n    - !!str c\n")
        ));
    }

    /// Lists at columns 0, 2 and 4, indentless and indented, next to comments, implicit
    /// nulls, block and multi-line scalars, anchors and aliases, other documents.
    const TEMPLATES: &[&str] = &[
        "kind: Pod\nspec:\n  containers:\n  - command:\n    - kube-apiserver\n    - --a=1 # one\n    - \"--b=2\"\n    image: x\n  - args:\n    - --c\n    name: y\n",
        "k:\n  - a\n  - 'b'\n# after\nz: &z 1\nw: *z\n",
        "top:\n- a\n- b\n  # deeper comment\nnext:\n",
        "- a\n- b\n- c",
        "a:\n- x\n- |\n  text\n- y\n---\nb: [1, 2]\n",
        "m:\n  l:\n  - p\n  - q\n  n:\n",
        "l:\n- \"multi\n  line\"\n- plain\n  more\n- z\n",
        "l:\r\n  - a\r\n  - b # c\r\nz: 1\r\n",
        "s:\n- - in\n  - in2\n- out\n",
    ];

    /// Lines a window may hold: entries at several columns, and hostile lines.
    const LINES: &[&str] = &[
        "- x",
        "  - x",
        "    - x",
        "    - --a=9",
        "  - \"q\" # c",
        "  - 'it''s'",
        "- x  # c",
        "- x#c",
        "- \"unclosed",
        "- a: b",
        "- [a, b]",
        "- {a: b}",
        "- &n x",
        "- *z",
        "- !!str x",
        "- |",
        "  literal",
        "-",
        "- ",
        "-x",
        "   - x",
        "\t- x",
        "- x\t",
        "# comment",
        "    # comment",
        "",
        "   ",
        "key: v",
        "  key: v",
        "---",
        "...",
        "%YAML 1.2",
        "- ? x",
        "- - x",
        "- 'a",
        "- x ]",
        "- x, y",
        "- @x",
        "- %x",
        "- ---",
        "- -x",
        "  cont",
        "   cont",
        "- \"a\\\"b\"",
        "- x\u{2028}y",
        "\u{feff}- x",
        "- x\ry",
    ];

    #[test]
    fn accepted_windows_always_equal_a_full_parse() {
        let file = Path::new("t.yaml");
        let (mut cases, mut accepted) = (0usize, 0usize);
        for template in TEMPLATES {
            let old_tree = yaml::parse(template, file).unwrap();
            let eol = if template.contains('\r') {
                "\r\n"
            } else {
                "\n"
            };
            let lines: Vec<&str> = template.split_inclusive('\n').collect();
            let mut replacements: Vec<Vec<&str>> = vec![vec![]];
            replacements.extend(LINES.iter().map(|l| vec![*l]));
            for x in ["- x", "  - x", "    - x", "# comment", "key: v", "  cont"] {
                for y in ["- y", "  - y", "    - y", "  more", ""] {
                    replacements.push(vec![x, y]);
                }
            }
            for start in 0..=lines.len() {
                for len in 0..=2.min(lines.len() - start) {
                    for new in &replacements {
                        let mut text = lines[..start].concat();
                        for l in new {
                            text.push_str(l);
                            text.push_str(eol);
                        }
                        text.push_str(&lines[start + len..].concat());
                        cases += 1;
                        let Some(fast) = reparse(template, &old_tree, &text) else {
                            continue;
                        };
                        accepted += 1;
                        match yaml::parse(&text, file) {
                            Ok(full) => assert!(
                                fast.identical(&full),
                                "{template:?} -> {text:?}\n{fast:#?}\n{full:#?}"
                            ),
                            Err(e) => panic!("accepted {text:?} (from {template:?}): {e}"),
                        }
                    }
                }
            }
        }
        // The sweep must exercise acceptance, not only refusals.
        eprintln!("{cases} cases, {accepted} accepted");
        assert!(
            cases > 10_000 && accepted > 300,
            "{cases} cases, {accepted} accepted"
        );
    }

    /// Item contents that are tricky after a correct `- ` prefix.
    const CONTENTS: &[&str] = &[
        "x",
        "--v=2",
        "x: y",
        "x:",
        "x #c",
        "x#c",
        "x  # c: d",
        "'a'",
        "'a",
        "a'",
        "\"a\"",
        "\"a",
        "\"a\\\"\"",
        "[a]",
        "[a",
        "a]",
        "{a: b}",
        "{",
        "&a b",
        "*z",
        "!t x",
        "!!str x",
        "|",
        ">-",
        "? x",
        "- y",
        "-",
        "--- x",
        "#x",
        "@x",
        "`x",
        "%x",
        ",",
        "a, b",
        "x\ty",
        "x ",
        "\"x\" y",
        "'x' # c",
        "\"x\"#c",
        "é—ж",
        "~",
        "null",
        "*",
        "&",
        "!",
        "x\u{85}y",
    ];

    #[test]
    fn accepted_items_always_equal_a_full_parse() {
        let file = Path::new("t.yaml");
        let (mut cases, mut accepted) = (0usize, 0usize);
        for template in TEMPLATES {
            let old_tree = yaml::parse(template, file).unwrap();
            let eol = if template.contains('\r') {
                "\r\n"
            } else {
                "\n"
            };
            let lines: Vec<&str> = template.split_inclusive('\n').collect();
            for (i, line) in lines.iter().enumerate() {
                let body = line.trim_start_matches(' ');
                if !body.starts_with("- ") {
                    continue;
                }
                let prefix = &line[..line.len() - body.len() + 2];
                for content in CONTENTS {
                    let item = format!("{prefix}{content}{eol}");
                    // Replace the item line, insert before it, insert after it.
                    for (from, to) in [(i, i + 1), (i, i), (i + 1, i + 1)] {
                        let text =
                            format!("{}{item}{}", lines[..from].concat(), lines[to..].concat());
                        cases += 1;
                        let Some(fast) = reparse(template, &old_tree, &text) else {
                            continue;
                        };
                        accepted += 1;
                        match yaml::parse(&text, file) {
                            Ok(full) => assert!(
                                fast.identical(&full),
                                "{template:?} -> {text:?}\n{fast:#?}\n{full:#?}"
                            ),
                            Err(e) => panic!("accepted {text:?} (from {template:?}): {e}"),
                        }
                    }
                }
            }
        }
        eprintln!("{cases} cases, {accepted} accepted");
        assert!(
            cases > 2_000 && accepted > 1_000,
            "{cases} cases, {accepted} accepted"
        );
    }

    /// Layouts the review of the module's argument tried to break it with: keep-chomped
    /// block scalars with trailing blank lines, folded scalars, tags and anchors on the
    /// list, complex keys, multi-line flow collections and quoted scalars before or inside
    /// the list, multi-line plain items (continuation lines more indented than the dash),
    /// `- ` items followed by a more-indented line, implicit nulls, document markers and
    /// directives, a BOM, CRLF, a last line without a line break, literal blocks whose
    /// lines look like list items.
    const ADVERSARIAL: &[&str] = &[
        "l:\n- |+\n  text\n\n- y\n",
        "l:\n- |\n  text\n\n- y\n",
        "l:\n- >\n  folded\n  more\n- y\n",
        "k: !!seq\n- a\n- b\n",
        "k: &x\n- a\n- b\nj: *x\n",
        "- a\n...\n--- \n- b\n",
        "l:\n- a:\n- b\n",
        "? - a\n  - b\n: v\n",
        "l: [a,\n  b]\nm:\n- x\n",
        "l:\n- 'a\n\n  b'\n- c\n",
        "l:\n  - a\n  -   b   \n  - c # x\n",
        "%YAML 1.2\n---\n- a\n- b\n",
        "--- !!seq\n- a\n- b\n",
        "- a\n- b\n# end\n  # indented comment\n",
        "l:\n- a\n  # c\n- b\n",
        "- - a\n  - b\n- - c\n",
        "- k: v\n  l:\n  - a\n  - b\n- k: w\n",
        "a:\n  - x\n  -\n  - y\n",
        "a:\n- x\n-\n",
        "l:\n- x\nm: |\n  - y\n  - z\n",
        "\u{feff}- a\n- b\n",
        "l:\n- a\n- b\n---\n- c\n",
        "l:\n- a\n- \"b\n  c\"\n- d\n",
        "l:\n- a\n- [b,\n  c]\n- d\n",
        "l:\n- a\n- plain\n  continued\n- d\n",
        "l:\n- a\n- ? b\n  : c\n- d\n",
        "l:\n- a\n- &anc b\n- *anc\n",
        "l:\n- a\n- b\n  \n  # x\nz: 1\n",
        "l:\r\n- a\r\n- b",
        "k:\n- - - a\n    - b\n  - c\n- d\n",
    ];

    /// Lines for those layouts: entries at the columns they use, continuation and
    /// comment lines, items that are not one-line scalars, `#` and `: ` inside items.
    const ADVERSARIAL_LINES: &[&str] = &[
        "- n",
        "  - n",
        "    - n",
        "- n # c",
        "- n#c",
        "- --foo: bar",
        "- --foo:bar",
        "  - 'q'' q'",
        "  - \"e\\\"s\"",
        "- |+",
        "- >-",
        "  text",
        "   more",
        "",
        "  # c",
        "- \"open",
        "- [a,",
        "- a, b]",
        "- ---",
        "- ...",
        "...",
        "---",
        "- x\t",
        "- ? k",
        "-",
        "- ~",
        "- &a n",
        "- !t n",
        "- n   ",
    ];

    #[test]
    fn adversarial_layouts_are_declined_or_equal_a_full_parse() {
        let file = Path::new("t.yaml");
        let (mut cases, mut accepted) = (0usize, 0usize);
        for template in ADVERSARIAL {
            let old_tree = yaml::parse(template, file).unwrap();
            let lines: Vec<&str> = template.split_inclusive('\n').collect();
            for start in 0..=lines.len() {
                for len in 0..=2.min(lines.len() - start) {
                    let at_end = start + len == lines.len();
                    let singles = ADVERSARIAL_LINES.iter().chain(LINES).map(|l| vec![*l]);
                    let pairs = ADVERSARIAL_LINES
                        .iter()
                        .take(12)
                        .flat_map(|x| ADVERSARIAL_LINES.iter().take(12).map(move |y| vec![*x, *y]));
                    for new in std::iter::once(vec![]).chain(singles).chain(pairs) {
                        // Both line breaks (mixed in one file too), and no final one.
                        for eol in ["\n", "\r\n", ""] {
                            if (eol.is_empty() && !at_end) || (new.is_empty() && eol != "\n") {
                                continue;
                            }
                            let mut text = lines[..start].concat();
                            for (i, l) in new.iter().enumerate() {
                                text.push_str(l);
                                if i + 1 < new.len() || !eol.is_empty() {
                                    text.push_str(if eol.is_empty() { "\n" } else { eol });
                                }
                            }
                            text.push_str(&lines[start + len..].concat());
                            cases += 1;
                            let Some(fast) = reparse(template, &old_tree, &text) else {
                                continue;
                            };
                            accepted += 1;
                            match yaml::parse(&text, file) {
                                Ok(full) => assert!(
                                    fast.identical(&full),
                                    "{template:?} -> {text:?}\n{fast:#?}\n{full:#?}"
                                ),
                                Err(e) => panic!("accepted {text:?} (from {template:?}): {e}"),
                            }
                        }
                    }
                }
            }
        }
        eprintln!("{cases} cases, {accepted} accepted");
        assert!(
            cases > 150_000 && accepted > 10_000,
            "{cases} cases, {accepted} accepted"
        );
    }

    /// Cases of the review where re-parsing only the changed lines would not be a full
    /// parse; each must be declined (a full parse of the new text then decides).
    #[test]
    fn declines_windows_whose_meaning_depends_on_their_surroundings() {
        for (old, new) in [
            // Inserting before the trailing blank line of a keep-chomped literal takes
            // that line out of the literal's value.
            (
                "l:\n- |+\n  text\n\n- y\n",
                "l:\n- |+\n  text\n- new\n\n- y\n",
            ),
            // Replacing the first line of a multi-line plain item: the new line would
            // be continued by the old continuation line.
            ("l:\n- plain\n  more\n- z\n", "l:\n- other\n  more\n- z\n"),
            // Inserting between a plain item and its continuation line.
            (
                "l:\n- plain\n  more\n- z\n",
                "l:\n- plain\n- new\n  more\n- z\n",
            ),
            // Inserting inside a literal block whose lines look like items.
            (
                "l:\n- x\nm: |\n  - y\n  - z\n",
                "l:\n- x\nm: |\n  - y\n  - n\n  - z\n",
            ),
            // Inserting inside a multi-line quoted item.
            ("l:\n- \"a\n- b\"\n- c\n", "l:\n- \"a\n- n\n- b\"\n- c\n"),
            // A `key: value` looking item is a mapping, not a string.
            ("l:\n- a\n", "l:\n- a\n- --foo: bar\n"),
            // A `- ` item followed by a more-indented line.
            ("l:\n- a\n- b\n", "l:\n- a\n- n\n   cont\n- b\n"),
        ] {
            assert!(!check(old, new), "{old:?} -> {new:?}");
        }
    }

    #[test]
    fn a_broken_window_is_never_accepted() {
        // Whatever the window holds, an accepted tree is the full parse's (checked by
        // `check`); texts that do not parse at all are never accepted.
        let bad = [
            "    - \"unclosed\n",
            "    - a: b: c\n",
            "    - [a\n",
            "    - a\n   - b\n",
            "  - a\n",
            "    -a\n",
            "    - a # c\n      b\n",
            "    - 'x'y\n",
            "    - *alias\n",
        ];
        for line in bad {
            let new = POD.replace("    - --b\n", line);
            let old_tree = yaml::parse(POD, Path::new("t")).unwrap();
            match (
                yaml::parse(&new, Path::new("t")),
                reparse(POD, &old_tree, &new),
            ) {
                (Ok(full), Some(t)) => assert!(t.identical(&full), "{line:?}"),
                (Err(_), Some(_)) => panic!("accepted a text that does not parse: {line:?}"),
                (_, None) => {}
            }
        }
    }
}
