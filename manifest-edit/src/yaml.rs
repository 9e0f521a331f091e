//! A span tree built from `granit-parser` events, the decoded data of that tree (to tell a
//! data change from a comment/whitespace change), and scalar rendering.
//!
//! The tree keeps, for every node, its byte range in the source; the editor splices only
//! inside or between those ranges. Comments and blank lines are not nodes: they live in the
//! bytes between nodes and are found by scanning the source ([`crate::text`]).
//!
//! Storage is flat: all nodes live in one `Vec` (the children of a collection are
//! contiguous, a mapping's as key, value, key, value, ...) and all scalar texts and tags in
//! one `String`. Parsing a manifest thus allocates a handful of buffers instead of one per
//! scalar and per collection, and a copy of a tree is two `memcpy`s. [`Node`] is a cheap,
//! copyable view of one node.

use std::collections::HashMap;
use std::fmt;
use std::ops::Range;
use std::path::Path;

use granit_parser::{Event, Parser, ScalarStyle, StructureStyle};

use crate::error::{Error, Location, Result};
use crate::text;

/// The parser options. Comments are found by scanning the source between spans, not as
/// events.
pub(crate) fn parser_options() -> granit_parser::Options {
    granit_parser::options! { emit_comments: false }
}

/// A range of [`Tree::strings`] or of [`Tree::nodes`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Slot {
    pub(crate) at: usize,
    pub(crate) len: usize,
}

impl Slot {
    pub(crate) fn range(self) -> Range<usize> {
        self.at..self.at.saturating_add(self.len)
    }
}

/// The stored form of one node (see [`Node`] for the view the editor uses).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Raw {
    /// Byte offset where the node's content starts (after any tag/anchor).
    pub(crate) start: usize,
    /// Byte offset just after the node's content. For block collections: the end of the
    /// last child; for flow collections: just after the closing bracket.
    pub(crate) end: usize,
    /// Byte offset of the explicit tag, when the node has one (it precedes `start`).
    pub(crate) tag_start: Option<usize>,
    /// The anchor id defined on this node (0: none).
    pub(crate) anchor: usize,
    /// The node's tag, as written after resolution (`tag:yaml.org,2002:str`), if any.
    pub(crate) tag: Option<Slot>,
    /// What the node is.
    pub(crate) kind: RawKind,
}

/// The stored kinds of node.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum RawKind {
    /// A scalar: its decoded (escape-processed) text in [`Tree::strings`], and its style.
    Scalar { value: Slot, style: ScalarStyle },
    /// A sequence: its items in [`Tree::nodes`].
    Seq { flow: bool, children: Slot },
    /// A mapping: key, value, key, value, ... in [`Tree::nodes`], in source order.
    Map { flow: bool, children: Slot },
    /// An alias (`*name`) to the node with this anchor id.
    Alias(usize),
}

impl Raw {
    /// True for the implicit null of `key:` with nothing after it.
    pub(crate) fn is_empty_null(&self) -> bool {
        matches!(
            self.kind,
            RawKind::Scalar {
                style: ScalarStyle::Plain,
                ..
            }
        ) && self.start == self.end
    }

    /// Where the node's source starts, including its tag.
    pub(crate) fn prop_start(&self) -> usize {
        self.tag_start.map_or(self.start, |t| t.min(self.start))
    }

    /// Byte offset of the last byte of the node's content (for line computations).
    pub(crate) fn last_byte(&self) -> usize {
        if self.end > self.start {
            self.end - 1
        } else {
            self.start
        }
    }
}

/// The parsed stream: every node of every document, flat.
#[derive(Debug, Clone, Default)]
pub(crate) struct Tree {
    pub(crate) nodes: Vec<Raw>,
    pub(crate) strings: String,
    /// The root node of each document, in order.
    pub(crate) roots: Vec<usize>,
    /// Whether any document holds an alias (decoding then resolves anchors).
    pub(crate) has_alias: bool,
    /// Blocks of `nodes` no collection points to any more (children a patch replaced),
    /// in the order they were abandoned. Every other node is reachable from a root.
    pub(crate) dead: Vec<Slot>,
}

/// A view of one node of a [`Tree`]. Derefs to its [`Raw`] fields (`start`, `end`, ...).
#[derive(Clone, Copy)]
pub(crate) struct Node<'t> {
    tree: &'t Tree,
    raw: &'t Raw,
}

impl std::ops::Deref for Node<'_> {
    type Target = Raw;
    fn deref(&self) -> &Raw {
        self.raw
    }
}

impl fmt::Debug for Node<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Node");
        d.field("start", &self.start).field("end", &self.end);
        if let Some(t) = self.tag() {
            d.field("tag", &t);
        }
        match self.kind() {
            Kind::Scalar { value, style } => d.field("scalar", &value).field("style", &style),
            Kind::Seq { flow, items } => d.field("flow", &flow).field("items", &items),
            Kind::Map { flow, entries } => d.field("flow", &flow).field("entries", &entries),
            Kind::Alias(id) => d.field("alias", &id),
        };
        d.finish()
    }
}

/// What a node is, with its content borrowed from the tree.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Kind<'t> {
    /// A scalar with its decoded (escape-processed) text.
    Scalar { value: &'t str, style: ScalarStyle },
    /// A sequence.
    Seq { flow: bool, items: Items<'t> },
    /// A mapping, entries in source order.
    Map { flow: bool, entries: Entries<'t> },
    /// An alias (`*name`) to the node with this anchor id.
    Alias(usize),
}

/// The items of a sequence.
#[derive(Clone, Copy)]
pub(crate) struct Items<'t> {
    tree: &'t Tree,
    raw: &'t [Raw],
}

impl<'t> Items<'t> {
    pub(crate) fn len(self) -> usize {
        self.raw.len()
    }

    pub(crate) fn get(self, i: usize) -> Option<Node<'t>> {
        let tree = self.tree;
        self.raw.get(i).map(|raw| Node { tree, raw })
    }

    pub(crate) fn first(self) -> Option<Node<'t>> {
        self.get(0)
    }

    pub(crate) fn last(self) -> Option<Node<'t>> {
        self.len().checked_sub(1).and_then(|i| self.get(i))
    }

    pub(crate) fn iter(self) -> impl DoubleEndedIterator<Item = Node<'t>> + ExactSizeIterator {
        let tree = self.tree;
        self.raw.iter().map(move |raw| Node { tree, raw })
    }
}

impl fmt::Debug for Items<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

/// The entries of a mapping, in source order.
#[derive(Clone, Copy)]
pub(crate) struct Entries<'t> {
    tree: &'t Tree,
    /// Key, value, key, value, ...
    raw: &'t [Raw],
}

impl<'t> Entries<'t> {
    pub(crate) fn len(self) -> usize {
        self.raw.len() / 2
    }

    pub(crate) fn get(self, i: usize) -> Option<(Node<'t>, Node<'t>)> {
        let tree = self.tree;
        let k = self.raw.get(i.checked_mul(2)?)?;
        let v = self.raw.get(i.checked_mul(2)?.checked_add(1)?)?;
        Some((Node { tree, raw: k }, Node { tree, raw: v }))
    }

    pub(crate) fn first(self) -> Option<(Node<'t>, Node<'t>)> {
        self.get(0)
    }

    pub(crate) fn last(self) -> Option<(Node<'t>, Node<'t>)> {
        self.len().checked_sub(1).and_then(|i| self.get(i))
    }

    pub(crate) fn iter(self) -> impl DoubleEndedIterator<Item = (Node<'t>, Node<'t>)> {
        let tree = self.tree;
        self.raw.chunks_exact(2).filter_map(move |kv| match kv {
            [k, v] => Some((Node { tree, raw: k }, Node { tree, raw: v })),
            _ => None,
        })
    }
}

impl fmt::Debug for Entries<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl Tree {
    /// The text stored in `slot` ("" for an out-of-range slot, which the tree never holds).
    pub(crate) fn str(&self, slot: Slot) -> &str {
        self.strings.get(slot.range()).unwrap_or("")
    }

    /// The children stored in `slot`.
    pub(crate) fn children(&self, slot: Slot) -> &[Raw] {
        self.nodes.get(slot.range()).unwrap_or(&[])
    }

    /// The view of the node stored at `index`.
    pub(crate) fn node(&self, index: usize) -> Option<Node<'_>> {
        self.nodes.get(index).map(|raw| Node { tree: self, raw })
    }

    /// The root node of each document.
    pub(crate) fn docs(&self) -> impl Iterator<Item = Node<'_>> {
        self.roots.iter().filter_map(|&i| self.node(i))
    }
}

impl<'t> Node<'t> {
    /// What the node is.
    pub(crate) fn kind(self) -> Kind<'t> {
        let tree = self.tree;
        match self.raw.kind {
            RawKind::Scalar { value, style } => Kind::Scalar {
                value: tree.str(value),
                style,
            },
            RawKind::Seq { flow, children } => Kind::Seq {
                flow,
                items: Items {
                    tree,
                    raw: tree.children(children),
                },
            },
            RawKind::Map { flow, children } => Kind::Map {
                flow,
                entries: Entries {
                    tree,
                    raw: tree.children(children),
                },
            },
            RawKind::Alias(id) => Kind::Alias(id),
        }
    }

    /// The node's tag, if any.
    pub(crate) fn tag(self) -> Option<&'t str> {
        self.raw.tag.map(|t| self.tree.str(t))
    }

    /// The scalar's decoded text, if the node is a scalar.
    pub(crate) fn scalar(self) -> Option<&'t str> {
        match self.raw.kind {
            RawKind::Scalar { value, .. } => Some(self.tree.str(value)),
            _ => None,
        }
    }

    /// The scalar's style, if the node is a scalar.
    pub(crate) fn style(self) -> Option<ScalarStyle> {
        match self.raw.kind {
            RawKind::Scalar { style, .. } => Some(style),
            _ => None,
        }
    }

    /// The items, if the node is a sequence.
    pub(crate) fn items(self) -> Option<Items<'t>> {
        match self.kind() {
            Kind::Seq { items, .. } => Some(items),
            _ => None,
        }
    }

    /// Whether the node is a mapping.
    pub(crate) fn is_map(self) -> bool {
        matches!(self.raw.kind, RawKind::Map { .. })
    }

    /// Whether the node is a sequence.
    pub(crate) fn is_seq(self) -> bool {
        matches!(self.raw.kind, RawKind::Seq { .. })
    }

    /// Whether the node is an alias.
    pub(crate) fn is_alias(self) -> bool {
        matches!(self.raw.kind, RawKind::Alias(_))
    }

    /// The mapping value for `key` (compared with the decoded key text).
    pub(crate) fn get(self, key: &str) -> Option<Node<'t>> {
        self.entry(key).map(|(_, v)| v)
    }

    /// The mapping entry for `key`.
    pub(crate) fn entry(self, key: &str) -> Option<(Node<'t>, Node<'t>)> {
        match self.kind() {
            Kind::Map { entries, .. } => entries.iter().find(|(k, _)| k.scalar() == Some(key)),
            _ => None,
        }
    }

    /// Whether a mapping node has a YAML merge key (`<<`).
    pub(crate) fn has_merge_key(self) -> bool {
        match self.kind() {
            Kind::Map { entries, .. } => entries
                .iter()
                .any(|(k, _)| k.scalar() == Some("<<") && k.style() == Some(ScalarStyle::Plain)),
            _ => false,
        }
    }

    /// A short description of the node kind for messages.
    pub(crate) fn describe(self) -> &'static str {
        match self.raw.kind {
            RawKind::Scalar { .. } if self.is_empty_null() => "empty (null)",
            RawKind::Scalar { .. } => "a scalar",
            RawKind::Seq { .. } => "a list",
            RawKind::Map { .. } => "a mapping",
            RawKind::Alias(_) => "an alias",
        }
    }
}

/// Converts a parser error into [`Error::Syntax`].
fn syntax_error(text: &str, file: &Path, err: &granit_parser::ScanError) -> Error {
    let marker = err.marker();
    let (line, column) = match marker.byte_offset() {
        Some(b) => text::line_col(text, b),
        None => (marker.line(), marker.col() + 1),
    };
    Error::Syntax {
        location: Location {
            file: file.to_path_buf(),
            line,
            column,
        },
        message: err.info(),
    }
}

/// The source being edited and its name, for building locations and errors.
pub(crate) struct Ctx<'t> {
    pub(crate) text: &'t str,
    pub(crate) file: &'t Path,
}

impl Ctx<'_> {
    pub(crate) fn loc(&self, pos: usize) -> Location {
        location(self.text, self.file, pos)
    }

    pub(crate) fn line(&self, pos: usize) -> usize {
        text::line_col(self.text, pos).0
    }

    pub(crate) fn unsupported(&self, pos: usize, message: impl Into<String>) -> Error {
        Error::Unsupported {
            location: self.loc(pos),
            message: message.into(),
        }
    }
}

/// Builds a location for a byte offset.
pub(crate) fn location(text: &str, file: &Path, pos: usize) -> Location {
    let (line, column) = text::line_col(text, pos);
    Location {
        file: file.to_path_buf(),
        line,
        column,
    }
}

/// Appends `s` to `strings` and returns its slot.
pub(crate) fn store(strings: &mut String, s: &str) -> Slot {
    let at = strings.len();
    strings.push_str(s);
    Slot { at, len: s.len() }
}

/// Appends the text of `t` to `strings` (no temporary `String`) and returns its slot.
fn store_display(strings: &mut String, t: &impl fmt::Display) -> Slot {
    use std::fmt::Write as _;
    let at = strings.len();
    // Writing to a `String` cannot fail.
    let _ = write!(strings, "{t}");
    Slot {
        at,
        len: strings.len() - at,
    }
}

/// An open collection while its children are parsed.
struct Frame {
    node: Raw,
    /// Where its children start in the pending stack.
    first: usize,
}

/// Parses `text` into a span tree. Refuses duplicate mapping keys.
pub(crate) fn parse(text: &str, file: &Path) -> Result<Tree> {
    let mut tree = Tree {
        // About one node per 14 bytes of a kubeadm manifest; a guess only saves regrowth.
        nodes: Vec::with_capacity(text.len() / 12 + 8),
        strings: String::with_capacity(text.len()),
        roots: Vec::new(),
        has_alias: false,
        dead: Vec::new(),
    };
    // Completed nodes whose parent collection is still open, in order; a collection's
    // children are moved to `tree.nodes` in one piece when it ends.
    let mut pending: Vec<Raw> = Vec::with_capacity(64);
    let mut frames: Vec<Frame> = Vec::new();
    let mut root: Option<Raw> = None;
    let mut doc_open = false;

    for next in Parser::new_from_str_with_options(text, parser_options()) {
        let (event, span) = next.map_err(|e| syntax_error(text, file, &e))?;
        let range = span.byte_range().ok_or_else(|| Error::Syntax {
            location: location(text, file, 0),
            message: "parser reported no byte offsets".to_owned(),
        })?;
        let tag_start = span.tag_start().and_then(|m| m.byte_offset());
        let is_seq_start = matches!(event, Event::SequenceStart(..));
        let complete = match event {
            Event::DocumentStart(..) => {
                doc_open = true;
                root = None;
                None
            }
            Event::DocumentEnd => {
                if doc_open {
                    let node = root.take().unwrap_or(Raw {
                        start: range.start,
                        end: range.start,
                        tag_start: None,
                        anchor: 0,
                        tag: None,
                        kind: RawKind::Scalar {
                            value: Slot::default(),
                            style: ScalarStyle::Plain,
                        },
                    });
                    tree.roots.push(tree.nodes.len());
                    tree.nodes.push(node);
                }
                doc_open = false;
                None
            }
            Event::Scalar(value, style, anchor, tag) => Some(Raw {
                start: range.start,
                end: range.end,
                tag_start,
                anchor,
                tag: tag.map(|t| store_display(&mut tree.strings, &t)),
                kind: RawKind::Scalar {
                    value: store(&mut tree.strings, &value),
                    style,
                },
            }),
            Event::Alias(id) => {
                tree.has_alias = true;
                Some(Raw {
                    start: range.start,
                    end: range.end,
                    tag_start: None,
                    anchor: 0,
                    tag: None,
                    kind: RawKind::Alias(id),
                })
            }
            Event::SequenceStart(style, anchor, tag) | Event::MappingStart(style, anchor, tag) => {
                let flow = style == StructureStyle::Flow;
                let children = Slot::default();
                let kind = if is_seq_start {
                    RawKind::Seq { flow, children }
                } else {
                    RawKind::Map { flow, children }
                };
                frames.push(Frame {
                    node: Raw {
                        start: range.start,
                        end: range.end,
                        tag_start,
                        anchor,
                        tag: tag.map(|t| store_display(&mut tree.strings, &t)),
                        kind,
                    },
                    first: pending.len(),
                });
                None
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let seq_end = matches!(event, Event::SequenceEnd);
                let Some(Frame { mut node, first }) = frames.pop() else {
                    return Err(internal(
                        text,
                        file,
                        range.start,
                        "unbalanced collection end",
                    ));
                };
                let kids = pending.get(first..).unwrap_or(&[]);
                let children = Slot {
                    at: tree.nodes.len(),
                    len: kids.len(),
                };
                node.kind = match node.kind {
                    RawKind::Seq { flow, .. } if seq_end => RawKind::Seq { flow, children },
                    RawKind::Map { flow, .. } if !seq_end => RawKind::Map { flow, children },
                    _ => return Err(internal(text, file, range.start, "mismatched end event")),
                };
                node.end = match node.kind {
                    RawKind::Seq { flow: true, .. } | RawKind::Map { flow: true, .. } => range.end,
                    _ => block_end(&node, kids),
                };
                tree.nodes.extend_from_slice(kids);
                pending.truncate(first);
                Some(node)
            }
            _ => None,
        };

        let Some(node) = complete else { continue };
        match frames.last() {
            Some(frame) => {
                let siblings = pending.get(frame.first..).unwrap_or(&[]);
                let is_value =
                    matches!(frame.node.kind, RawKind::Map { .. }) && siblings.len() % 2 == 1;
                if is_value {
                    check_duplicate(text, file, &tree.strings, siblings)?;
                }
                pending.push(node);
            }
            None => root = Some(node),
        }
    }
    Ok(tree)
}

/// The end of a block collection `node` whose children are `kids`: the end of its last
/// child (for a mapping whose last value is an implicit null, the end of that key).
pub(crate) fn block_end(node: &Raw, kids: &[Raw]) -> usize {
    match node.kind {
        RawKind::Map { .. } => match kids {
            [.., k, v] => {
                if v.is_empty_null() {
                    k.end
                } else {
                    v.end
                }
            }
            _ => node.start,
        },
        _ => kids.last().map_or(node.start, |n| n.end),
    }
}

fn internal(text: &str, file: &Path, pos: usize, what: &str) -> Error {
    Error::Syntax {
        location: location(text, file, pos),
        message: format!("internal parser event error: {what}"),
    }
}

/// `entries` is key, value, ..., key: refuses the last key when an earlier key decodes to
/// the same data.
fn check_duplicate(text: &str, file: &Path, strings: &str, entries: &[Raw]) -> Result<()> {
    let Some((key, earlier)) = entries.split_last() else {
        return Ok(());
    };
    let RawKind::Scalar { value, .. } = key.kind else {
        return Ok(());
    };
    let decoded = decode_raw(key, strings);
    for k in earlier.iter().step_by(2) {
        if matches!(k.kind, RawKind::Scalar { .. }) && decode_raw(k, strings) == decoded {
            return Err(Error::DuplicateKey {
                location: location(text, file, key.start),
                key: strings.get(value.range()).unwrap_or("").to_owned(),
                first_line: text::line_col(text, k.start).0,
            });
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Decoded data: what the kubelet sees after parsing.
// ---------------------------------------------------------------------------------------

/// The decoded value of a scalar, with YAML 1.1 resolution as done by Go's yaml.v2 (what
/// `sigs.k8s.io/yaml`, and so the kubelet, uses). Borrows the text: comparing two
/// documents allocates nothing.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Scalar<'a> {
    Null,
    Bool(bool),
    Int(i128),
    /// `f64::to_bits` of the value (NaN normalised).
    Float(u64),
    Str(&'a str),
    /// A scalar with a non-core tag: (tag, text).
    Tagged(&'a str, &'a str),
}

const MAX_ALIAS_DEPTH: usize = 64;

type Anchors<'t> = HashMap<usize, Node<'t>>;

fn collect_anchors<'t>(node: Node<'t>, anchors: &mut Anchors<'t>) {
    if node.anchor != 0 {
        anchors.insert(node.anchor, node);
    }
    match node.kind() {
        Kind::Seq { items, .. } => items.iter().for_each(|n| collect_anchors(n, anchors)),
        Kind::Map { entries, .. } => entries.iter().for_each(|(k, v)| {
            collect_anchors(k, anchors);
            collect_anchors(v, anchors);
        }),
        _ => {}
    }
}

/// The anchored nodes of a document (none are looked up when the stream has no alias).
fn anchors_of<'t>(tree: &'t Tree, root: Node<'t>) -> Anchors<'t> {
    let mut anchors = HashMap::new();
    if tree.has_alias {
        collect_anchors(root, &mut anchors);
    }
    anchors
}

/// Follows aliases to the node they stand for.
fn resolve<'t>(mut node: Node<'t>, anchors: &Anchors<'t>) -> Option<Node<'t>> {
    for _ in 0..MAX_ALIAS_DEPTH {
        match node.kind {
            RawKind::Alias(id) => node = *anchors.get(&id)?,
            _ => return Some(node),
        }
    }
    None
}

fn collection_tag<'t>(node: Node<'t>) -> Option<&'t str> {
    node.tag().filter(|t| !t.starts_with("tag:yaml.org,2002:"))
}

/// Whether two nodes decode to the same data. Mapping order does not matter.
fn same(a: Node<'_>, aa: &Anchors<'_>, b: Node<'_>, ba: &Anchors<'_>, depth: usize) -> bool {
    let (Some(a), Some(b)) = (resolve(a, aa), resolve(b, ba)) else {
        return false;
    };
    if depth > MAX_ALIAS_DEPTH {
        return false;
    }
    match (a.kind(), b.kind()) {
        (Kind::Scalar { value: x, style: s }, Kind::Scalar { value: y, style: t }) => {
            // Decoding is a function of text, style, tag and emptiness: equal inputs need
            // no decoding (the common case when comparing a file with its edit).
            (x == y && s == t && a.tag() == b.tag() && a.is_empty_null() == b.is_empty_null())
                || decode_scalar(a) == decode_scalar(b)
        }
        (Kind::Seq { items: x, .. }, Kind::Seq { items: y, .. }) => {
            collection_tag(a) == collection_tag(b)
                && x.len() == y.len()
                && x.iter()
                    .zip(y.iter())
                    .all(|(p, q)| same(p, aa, q, ba, depth + 1))
        }
        (Kind::Map { entries: x, .. }, Kind::Map { entries: y, .. }) => {
            if collection_tag(a) != collection_tag(b) || x.len() != y.len() {
                return false;
            }
            // Keys are unique (duplicates are refused), so each key of `x` must match
            // exactly one of `y`; try the same position first.
            x.iter().enumerate().all(|(i, (xk, xv))| {
                let found = y
                    .get(i)
                    .filter(|(yk, _)| same(xk, aa, *yk, ba, depth + 1))
                    .or_else(|| y.iter().find(|(yk, _)| same(xk, aa, *yk, ba, depth + 1)));
                found.is_some_and(|(_, yv)| same(xv, aa, yv, ba, depth + 1))
            })
        }
        _ => false,
    }
}

impl Tree {
    /// Whether both streams hold the same decoded documents.
    pub(crate) fn same_data(&self, other: &Tree) -> bool {
        self.roots.len() == other.roots.len()
            && self
                .docs()
                .zip(other.docs())
                .all(|(a, b)| same(a, &anchors_of(self, a), b, &anchors_of(other, b), 0))
    }

    /// Whether both trees hold exactly the same nodes: kinds, spans, styles, tags,
    /// anchors and texts (the storage layout aside). The incremental re-parse is checked
    /// against a full parse with this.
    pub(crate) fn identical(&self, other: &Tree) -> bool {
        fn eq(a: Node<'_>, b: Node<'_>) -> bool {
            if (a.start, a.end, a.tag_start, a.anchor) != (b.start, b.end, b.tag_start, b.anchor)
                || a.tag() != b.tag()
            {
                return false;
            }
            match (a.kind(), b.kind()) {
                (Kind::Scalar { value: x, style: s }, Kind::Scalar { value: y, style: t }) => {
                    x == y && s == t
                }
                (Kind::Seq { flow: f, items: x }, Kind::Seq { flow: g, items: y }) => {
                    f == g && x.len() == y.len() && x.iter().zip(y.iter()).all(|(p, q)| eq(p, q))
                }
                (
                    Kind::Map {
                        flow: f,
                        entries: x,
                    },
                    Kind::Map {
                        flow: g,
                        entries: y,
                    },
                ) => {
                    f == g
                        && x.len() == y.len()
                        && x.iter()
                            .zip(y.iter())
                            .all(|((xk, xv), (yk, yv))| eq(xk, yk) && eq(xv, yv))
                }
                (Kind::Alias(x), Kind::Alias(y)) => x == y,
                _ => false,
            }
        }
        self.roots.len() == other.roots.len()
            && self.has_alias == other.has_alias
            && self.docs().zip(other.docs()).all(|(a, b)| eq(a, b))
    }
}

/// Decodes one scalar node.
pub(crate) fn decode_scalar(node: Node<'_>) -> Scalar<'_> {
    decode_raw(node.raw, &node.tree.strings)
}

/// Decodes one stored scalar whose texts are in `strings`.
fn decode_raw<'s>(raw: &Raw, strings: &'s str) -> Scalar<'s> {
    let RawKind::Scalar { value, style } = raw.kind else {
        return Scalar::Null;
    };
    let value = strings.get(value.range()).unwrap_or("");
    if let Some(tag) = raw.tag {
        let tag = strings.get(tag.range()).unwrap_or("");
        return match tag.strip_prefix("tag:yaml.org,2002:") {
            Some("str") => Scalar::Str(value),
            Some(_) => resolve_plain(value),
            None => Scalar::Tagged(tag, value),
        };
    }
    if raw.is_empty_null() {
        return Scalar::Null;
    }
    match style {
        ScalarStyle::Plain => resolve_plain(value),
        _ => Scalar::Str(value),
    }
}

/// Resolves a plain scalar the way yaml.v2 does (YAML 1.1 booleans included).
pub(crate) fn resolve_plain(s: &str) -> Scalar<'_> {
    match s {
        "" | "~" | "null" | "Null" | "NULL" => return Scalar::Null,
        "y" | "Y" | "yes" | "Yes" | "YES" | "on" | "On" | "ON" | "true" | "True" | "TRUE" => {
            return Scalar::Bool(true);
        }
        "n" | "N" | "no" | "No" | "NO" | "off" | "Off" | "OFF" | "false" | "False" | "FALSE" => {
            return Scalar::Bool(false);
        }
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => {
            return Scalar::Float(f64::INFINITY.to_bits());
        }
        "-.inf" | "-.Inf" | "-.INF" => return Scalar::Float(f64::NEG_INFINITY.to_bits()),
        ".nan" | ".NaN" | ".NAN" => return Scalar::Float(f64::NAN.to_bits()),
        _ => {}
    }
    // Only text starting like a number can be one (most scalars stop here).
    let numeric_start = s
        .bytes()
        .next()
        .is_some_and(|c| c.is_ascii_digit() || matches!(c, b'-' | b'+' | b'.'));
    if numeric_start {
        if let Some(i) = parse_int(s) {
            return Scalar::Int(i);
        }
        if let Some(f) = parse_float(s) {
            return Scalar::Float(if f.is_nan() {
                f64::NAN.to_bits()
            } else {
                f.to_bits()
            });
        }
    }
    Scalar::Str(s)
}

/// `s` without `_` digit separators (borrowed when it has none).
fn without_underscores(s: &str) -> std::borrow::Cow<'_, str> {
    if s.contains('_') {
        std::borrow::Cow::Owned(s.replace('_', ""))
    } else {
        std::borrow::Cow::Borrowed(s)
    }
}

fn parse_int(s: &str) -> Option<i128> {
    let (neg, body) = match s.as_bytes().first()? {
        b'-' => (true, s.get(1..)?),
        b'+' => (false, s.get(1..)?),
        _ => (false, s),
    };
    if body.is_empty() || body.starts_with('_') {
        return None;
    }
    let clean = without_underscores(body);
    // Go's `strconv.ParseInt(s, 0, 64)` (yaml.v2) takes `0x`, `0b`, `0o` in either case.
    let radix = match clean.as_bytes() {
        [b'0', b'x' | b'X', ..] => Some(16),
        [b'0', b'b' | b'B', ..] => Some(2),
        [b'0', b'o' | b'O', ..] => Some(8),
        _ => None,
    };
    let value = if let Some(radix) = radix {
        let digits = clean.get(2..)?;
        if digits.starts_with(['+', '-']) {
            return None; // `from_str_radix` would take a sign here; Go does not.
        }
        i128::from_str_radix(digits, radix).ok()?
    } else if clean.len() > 1 && clean.starts_with('0') {
        i128::from_str_radix(clean.get(1..)?, 8).ok()?
    } else if clean.bytes().all(|c| c.is_ascii_digit()) {
        clean.parse::<i128>().ok()?
    } else {
        return None;
    };
    Some(if neg { -value } else { value })
}

fn parse_float(s: &str) -> Option<f64> {
    // [-+]?(\.[0-9]+|[0-9][0-9_]*(\.[0-9_]*)?)([eE][-+]?[0-9]+)?
    let b = s.as_bytes();
    let mut i = 0;
    if matches!(b.first(), Some(b'-' | b'+')) {
        i += 1;
    }
    let digits_start = i;
    while matches!(b.get(i), Some(c) if c.is_ascii_digit() || *c == b'_') {
        i += 1;
    }
    let int_digits = i > digits_start;
    let mut frac_digits = false;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let f = i;
        while matches!(b.get(i), Some(c) if c.is_ascii_digit() || *c == b'_') {
            i += 1;
        }
        frac_digits = i > f;
    }
    if !int_digits && !frac_digits {
        return None;
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(b.get(i), Some(b'-' | b'+')) {
            i += 1;
        }
        let e = i;
        while matches!(b.get(i), Some(c) if c.is_ascii_digit()) {
            i += 1;
        }
        if i == e {
            return None;
        }
    }
    if i != b.len() {
        return None;
    }
    without_underscores(s).parse::<f64>().ok()
}

/// True when a plain scalar with this text would decode as a string in every YAML
/// flavour a Kubernetes tool may use (YAML 1.1 and 1.2 core schemas, timestamps).
pub(crate) fn plain_is_string(s: &str) -> bool {
    matches!(resolve_plain(s), Scalar::Str(_)) && !looks_like_timestamp(s) && s != "<<" && s != "="
}

fn looks_like_timestamp(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() >= 8
        && b.iter().take(4).all(u8::is_ascii_digit)
        && b.get(4) == Some(&b'-')
        && b.get(5).is_some_and(u8::is_ascii_digit)
}

// ---------------------------------------------------------------------------------------
// Rendering scalars.
// ---------------------------------------------------------------------------------------

/// Whether `s` can be written as a plain scalar (in block context, or inside a flow
/// collection when `flow`) and read back as the same text.
pub(crate) fn plain_safe(s: &str, flow: bool) -> bool {
    let mut chars = s.chars();
    let Some(first) = chars.next() else {
        return false;
    };
    let second = chars.next();
    if s.starts_with([' ', '\t']) || s.ends_with([' ', '\t']) {
        return false;
    }
    if s.chars().any(must_escape) {
        return false;
    }
    if "[]{},#&*!|>'\"%@`".contains(first) {
        return false;
    }
    if "-?:".contains(first) {
        match second {
            None | Some(' ') => return false,
            Some(c) if flow && ",[]{}".contains(c) => return false,
            _ => {}
        }
    }
    if s.contains(": ") || s.ends_with(':') || s.contains(" #") {
        return false;
    }
    // Inside a flow collection Go's yaml.v2 (the kubelet's decoder, a libyaml port) also
    // ends a plain scalar at `?`, and reads a leading `?` or `:` as an indicator, where
    // YAML 1.2 reads on (`[--x=https://h/?q=1]` is one scalar here, a parse error there).
    if flow && (s.contains([',', '[', ']', '{', '}', '?']) || s.starts_with(':')) {
        return false;
    }
    if s.starts_with("---") || s.starts_with("...") {
        return false;
    }
    true
}

/// Whether `c` can only be written as a double-quoted escape: control characters (tab
/// included: quoting it is clearer), DEL and the C1 controls, U+FFFE/U+FFFF (not printable
/// in YAML, and refused anywhere in the input by the kubelet's yaml.v2 reader), and the YAML
/// 1.1 line breaks (NEL, U+2028, U+2029) and the BOM.
fn must_escape(c: char) -> bool {
    c < ' '
        || ('\u{7f}'..='\u{9f}').contains(&c)
        || matches!(
            c,
            '\u{2028}' | '\u{2029}' | '\u{feff}' | '\u{fffe}' | '\u{ffff}'
        )
}

/// Writes `s` as a double-quoted YAML scalar.
pub(crate) fn double_quoted(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\0' => out.push_str("\\0"),
            '\u{85}' => out.push_str("\\N"),
            '\u{2028}' => out.push_str("\\L"),
            '\u{2029}' => out.push_str("\\P"),
            c if must_escape(c) && u32::from(c) <= 0xff => {
                out.push_str(&format!("\\x{:02X}", u32::from(c)));
            }
            c if must_escape(c) => out.push_str(&format!("\\u{:04X}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn single_quotable(s: &str) -> bool {
    !s.chars().any(must_escape)
}

/// Writes `s` as a single-quoted YAML scalar (caller checks [`single_quotable`]).
fn single_quoted(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// Renders a string scalar in the style `hint` (the style of the value it replaces or of
/// its neighbours), falling back to quoting when the style cannot hold the text or when a
/// plain scalar would not decode as a string.
pub(crate) fn render_str(s: &str, hint: ScalarStyle, flow: bool) -> String {
    if hint == ScalarStyle::Plain && plain_safe(s, flow) && plain_is_string(s) {
        return s.to_owned();
    }
    if hint == ScalarStyle::SingleQuoted && single_quotable(s) {
        return single_quoted(s);
    }
    double_quoted(s)
}

/// Renders a mapping key (plain when possible, else double-quoted).
pub(crate) fn render_key(s: &str) -> String {
    render_str(s, ScalarStyle::Plain, false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(s: &str) -> Tree {
        parse(s, Path::new("t.yaml")).unwrap()
    }

    #[test]
    fn spans_are_byte_offsets_after_multibyte_text() {
        let src = "# д — ж\na:\n- \"да\" # ё\n- x\n";
        let t = tree(src);
        let root = t.docs().next().unwrap();
        let items = root.get("a").unwrap().items().unwrap();
        let (x, y) = (items.get(0).unwrap(), items.get(1).unwrap());
        assert_eq!(&src[x.start..x.end], "\"да\"");
        assert_eq!(&src[y.start..y.end], "x");
    }

    #[test]
    fn duplicate_keys_are_refused_with_location() {
        let err = parse("a: 1\nb: 2\na: 3\n", Path::new("f.yaml")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "f.yaml:3:1: duplicate key `a` (first defined on line 1)"
        );
        // `1` and `"1"` are different keys (int vs string).
        assert!(parse("1: a\n\"1\": b\n", Path::new("f")).is_ok());
    }

    #[test]
    fn syntax_errors_carry_line_and_column() {
        let err = parse("a: [1, 2\nb: 3\n", Path::new("f.yaml")).unwrap_err();
        assert!(matches!(err, Error::Syntax { .. }), "{err}");
        assert!(err.to_string().starts_with("f.yaml:"), "{err}");
    }

    #[test]
    fn data_ignores_comments_quotes_and_order() {
        let a = tree("a: 'x' # c\nb: [1, 2]\n");
        let b = tree("b:\n- 1\n- 2\n\n# other\na: x\n");
        assert!(a.same_data(&b));
        let c = tree("a: x\nb: [1, \"2\"]\n");
        assert!(!a.same_data(&c));
    }

    #[test]
    fn yaml11_resolution() {
        assert_eq!(resolve_plain("yes"), Scalar::Bool(true));
        assert_eq!(resolve_plain("Off"), Scalar::Bool(false));
        assert_eq!(resolve_plain("0x1F"), Scalar::Int(31));
        assert_eq!(resolve_plain("017"), Scalar::Int(15));
        assert_eq!(resolve_plain("1_000"), Scalar::Int(1000));
        // yaml.v2 parses integers with Go's `strconv.ParseInt(s, 0, 64)`, whose base
        // prefixes are case-insensitive: `0X1F` is 31 on the node, not a string.
        assert_eq!(resolve_plain("0X1F"), Scalar::Int(31));
        assert_eq!(resolve_plain("0B101"), Scalar::Int(5));
        assert_eq!(resolve_plain("0O17"), Scalar::Int(15));
        assert_eq!(resolve_plain("-0X10"), Scalar::Int(-16));
        assert_eq!(render_str("0X10", ScalarStyle::Plain, false), "\"0X10\"");
        assert_eq!(resolve_plain("1.5"), Scalar::Float(1.5f64.to_bits()));
        assert_eq!(resolve_plain("~"), Scalar::Null);
        assert_eq!(resolve_plain("--v=2"), Scalar::Str("--v=2"));
        assert_eq!(resolve_plain("."), Scalar::Str("."));
        assert!(!plain_is_string("2001-12-14"));
        assert!(plain_is_string("/var/log"));
    }

    #[test]
    fn aliases_decode_to_their_anchor() {
        let a = tree("x: &a [1, 2]\ny: *a\n");
        let b = tree("x: [1, 2]\ny: [1, 2]\n");
        assert!(a.same_data(&b));
        let c = tree("x: [1, 2]\ny: [1, 3]\n");
        assert!(!a.same_data(&c));
    }

    /// Go's yaml.v2 (through `sigs.k8s.io/yaml`, what the kubelet decodes static pods with)
    /// ends a plain scalar at `?` inside a flow collection and reads `?`/`:` starting one as
    /// indicators, where YAML 1.2 (and granit) read on: `[kube-apiserver, --x=https://h/?q=1]`
    /// verifies here but does not decode on the node. Such values must be quoted.
    #[test]
    fn flow_plain_scalars_avoid_what_yaml_v2_reads_as_indicators() {
        for s in [
            "--oidc-issuer-url=https://issuer.example/?tenant=a",
            "a?b",
            "x?",
            "?x",
            ":x",
            "--x=?",
        ] {
            let r = render_str(s, ScalarStyle::Plain, true);
            assert!(r.starts_with('"'), "{s:?} rendered {r:?} in a flow list");
            // Block context has no such rule: a plain scalar stays plain there.
            if !s.starts_with([':', '?']) {
                assert_eq!(render_str(s, ScalarStyle::Plain, false), s);
            }
        }
    }

    #[test]
    fn rendering_round_trips() {
        for s in [
            "--profiling=false",
            "--a=b: c",
            "true",
            "6443",
            "it's",
            "a\"b\\c",
            "line\nbreak",
            "#x",
            "- x",
            "",
            " lead",
            "x,y",
            "é ж",
            // Not printable in YAML (and refused by yaml.v2's reader): escaped.
            "a\u{80}b",
            "a\u{9f}b",
            "a\u{fffe}b",
            "a\u{ffff}b",
            "a\u{7f}b\u{1}",
            // YAML 1.1 line breaks, the BOM, a tab: escaped too.
            "a\u{85}b\u{2028}c\u{2029}",
            "\u{feff}x",
            "a\tb",
            // Printable beyond the BMP: kept as is.
            "😀",
        ] {
            for hint in [
                ScalarStyle::Plain,
                ScalarStyle::SingleQuoted,
                ScalarStyle::DoubleQuoted,
            ] {
                for flow in [false, true] {
                    let r = render_str(s, hint, flow);
                    // Every character of the rendering passes yaml.v2's reader, and none
                    // is a line break.
                    assert!(
                        r.chars().all(|c| matches!(c,
                            ' '..='~' | '\u{a0}'..='\u{d7ff}' | '\u{e000}'..='\u{fffd}' | '\u{10000}'..)
                            && !matches!(c, '\u{2028}' | '\u{2029}' | '\u{feff}')),
                        "{s:?} {hint:?} {flow} -> {r:?}"
                    );
                    let doc = if flow {
                        format!("k: [{r}]\n")
                    } else {
                        format!("k:\n- {r}\n")
                    };
                    let t = tree(&doc);
                    let items = t.docs().next().unwrap().get("k").unwrap().items().unwrap();
                    assert_eq!(
                        items.iter().map(decode_scalar).collect::<Vec<_>>(),
                        vec![Scalar::Str(s)],
                        "{s:?} {hint:?} {flow} -> {r}"
                    );
                }
            }
        }
    }
}

/// The kubelet decodes static pods with Go's yaml.v2 (through `sigs.k8s.io/yaml`), a
/// YAML 1.1 libyaml port, while this crate verifies with a YAML 1.2 parser. These tests
/// hold every plain rendering to a transcription of yaml.v2's rules: its plain-scalar
/// scanner (`yaml_parser_fetch_next_token`, `yaml_parser_scan_plain_scalar`) and its
/// resolver (`resolve` in `resolve.go`, Go's `strconv` semantics).
#[cfg(test)]
mod yaml_v2 {
    use super::*;
    use proptest::prelude::*;

    /// Whether yaml.v2 reads `s`, written plain as a one-line sequence item (inside `[...]`
    /// when `flow`), as one plain scalar with exactly this text.
    fn scans_as_one_plain_scalar(s: &str, flow: bool) -> bool {
        let c: Vec<char> = s.chars().collect();
        let blank = |i: usize| matches!(c.get(i), Some(' ' | '\t'));
        // What follows the item: a line break (block) or `]` (flow).
        let blankz = |i: usize| blank(i) || (i >= c.len() && !flow);
        let Some(&first) = c.first() else {
            return false;
        };
        if first == ' ' || first == '\t' || c.last().is_some_and(|l| *l == ' ' || *l == '\t') {
            return false;
        }
        let starts_plain = !"-?:,[]{}#&*!|>'\"%@`".contains(first)
            || (first == '-' && !blankz(1) && !blank(1))
            || (!flow && (first == '?' || first == ':') && !blankz(1));
        if !starts_plain {
            return false;
        }
        for (i, &ch) in c.iter().enumerate() {
            let ends = (ch == ':' && (blankz(i + 1) || (flow && i + 1 == c.len())))
                || (flow && ",?[]{}".contains(ch))
                || (ch == '#' && i > 0 && blank(i - 1));
            if ends {
                return false;
            }
        }
        true
    }

    /// Go's `strconv.ParseInt(s, 0, 64)` / `ParseUint` acceptance (range aside: yaml.v2
    /// falls back to a float or a big integer, a number either way).
    fn go_int(s: &str, signed: bool) -> bool {
        let body = match s.as_bytes().first() {
            Some(b'+' | b'-') if signed => &s[1..],
            _ => s,
        };
        let b = body.as_bytes();
        let digits = |d: &[u8], radix: u32| {
            !d.is_empty() && d.iter().all(|&x| char::from(x).is_digit(radix))
        };
        match b {
            [b'0', b'x' | b'X', rest @ ..] => digits(rest, 16),
            [b'0', b'b' | b'B', rest @ ..] => digits(rest, 2),
            [b'0', b'o' | b'O', rest @ ..] => digits(rest, 8),
            [b'0', rest @ ..] => rest.is_empty() || digits(rest, 8),
            _ => digits(b, 10),
        }
    }

    /// yaml.v2's `^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$`.
    fn yaml_style_float(s: &str) -> bool {
        let s = s.strip_prefix(['-', '+']).unwrap_or(s);
        let (mantissa, exp) = match s.find(['e', 'E']) {
            Some(i) => (&s[..i], Some(&s[i + 1..])),
            None => (s, None),
        };
        let all_digits = |t: &str| !t.is_empty() && t.bytes().all(|x| x.is_ascii_digit());
        let mantissa_ok = match mantissa.split_once('.') {
            Some(("", frac)) => all_digits(frac),
            Some((int, frac)) => all_digits(int) && frac.bytes().all(|x| x.is_ascii_digit()),
            None => all_digits(mantissa),
        };
        mantissa_ok && exp.is_none_or(|e| all_digits(e.strip_prefix(['-', '+']).unwrap_or(e)))
    }

    /// Whether yaml.v2 resolves the plain scalar `s` to a string.
    fn resolves_to_string(s: &str) -> bool {
        const MAP: &[&str] = &[
            "y", "Y", "yes", "Yes", "YES", "true", "True", "TRUE", "on", "On", "ON", "n", "N",
            "no", "No", "NO", "false", "False", "FALSE", "off", "Off", "OFF", "", "~", "null",
            "Null", "NULL", ".nan", ".NaN", ".NAN", ".inf", ".Inf", ".INF", "+.inf", "+.Inf",
            "+.INF", "-.inf", "-.Inf", "-.INF", "<<",
        ];
        let Some(first) = s.chars().next() else {
            return false;
        };
        let hint = match first {
            '+' | '-' => 'S',
            '0'..='9' => 'D',
            'y' | 'Y' | 'n' | 'N' | 't' | 'T' | 'f' | 'F' | 'o' | 'O' | '~' => 'M',
            '.' => '.',
            _ => return true,
        };
        if MAP.contains(&s) {
            return false;
        }
        match hint {
            'M' => true,
            // strconv.ParseFloat on the text as is (underscores refused without a prefix).
            '.' => !yaml_style_float(s),
            _ => {
                // parseTimestamp: four digits and a dash start every accepted layout.
                let b = s.as_bytes();
                if b.len() > 4 && b[..4].iter().all(u8::is_ascii_digit) && b[4] == b'-' {
                    return false;
                }
                let plain = s.replace('_', "");
                !(go_int(&plain, true) || go_int(&plain, false) || yaml_style_float(&plain))
            }
        }
    }

    const VALUES: &[&str] = &[
        "--oidc-issuer-url=https://issuer.example/?tenant=a",
        "https://h/p?q=1&r=2",
        "a?b",
        "?x",
        ":x",
        "x:",
        "a: b",
        "a #b",
        "a#b",
        "0X10",
        "0B1",
        "0O7",
        "-0x1F",
        "010",
        "1e3",
        "1E3",
        ".5",
        ".inf",
        "+.inf",
        "1_000",
        "+1",
        "2001-12-14",
        "yes",
        "No",
        "~",
        "<<",
        "-",
        "-x",
        "--",
        "a,b",
        "[x]",
        "x]",
        "@x",
        "`x",
        "%x",
        "!x",
        "&x",
        "*x",
        "|",
        ">",
    ];

    fn check(s: &str) {
        for flow in [false, true] {
            let r = render_str(s, ScalarStyle::Plain, flow);
            if r == s {
                assert!(
                    scans_as_one_plain_scalar(s, flow),
                    "{s:?} written plain (flow: {flow}), yaml.v2 reads something else"
                );
                assert!(
                    resolves_to_string(s),
                    "{s:?} written plain, yaml.v2 resolves it to a non-string"
                );
            }
        }
    }

    #[test]
    fn known_values_written_plain_are_plain_strings_in_yaml_v2() {
        for s in VALUES {
            check(s);
        }
        // The oracle itself: what it must refuse.
        assert!(!scans_as_one_plain_scalar("a?b", true));
        assert!(scans_as_one_plain_scalar("a?b", false));
        assert!(!scans_as_one_plain_scalar(":x", true));
        assert!(!resolves_to_string("0X10"));
        assert!(!resolves_to_string("-1_0"));
        assert!(!resolves_to_string("1."));
        assert!(resolves_to_string("1.2.3"));
        assert!(resolves_to_string("--v=2"));
    }

    proptest! {
        #[test]
        fn random_values_written_plain_are_plain_strings_in_yaml_v2(
            s in "[-?:,\\[\\]{}#&*!|>'\"%@` a-fxXoObB0-9=./_~+eEyn]{0,7}"
        ) {
            check(&s);
        }
    }
}
