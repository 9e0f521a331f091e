//! `set-path`: set a scalar at a dotted key path of a mapping document (a
//! KubeletConfiguration, or any mapping such as a Pod's `spec.securityContext`), creating
//! missing parent mappings.

use std::fmt;
use std::str::FromStr;

use granit_parser::ScalarStyle;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::layout::{self, NewValue, Splice};
use crate::yaml::{self, Ctx, Kind, Node, Scalar, Tree};

/// A dotted key path such as `authentication.anonymous.enabled`.
///
/// `\.` escapes a dot inside a key and a segment in double quotes is taken literally, so
/// `evictionHard."memory.available"` and `evictionHard.memory\.available` both name the key
/// `memory.available` under `evictionHard`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "Vec<String>", into = "Vec<String>")]
pub struct KeyPath(Vec<String>);

impl KeyPath {
    /// A path from its segments. Errors when there is no segment or one is empty.
    pub fn new<I, S>(segments: I) -> Result<Self>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let segs: Vec<String> = segments.into_iter().map(Into::into).collect();
        if segs.is_empty() || segs.iter().any(String::is_empty) {
            return Err(Error::InvalidArgument(format!(
                "key path {segs:?} has an empty segment"
            )));
        }
        Ok(KeyPath(segs))
    }

    /// The keys, outermost first.
    pub fn segments(&self) -> &[String] {
        &self.0
    }
}

impl TryFrom<Vec<String>> for KeyPath {
    type Error = Error;
    fn try_from(v: Vec<String>) -> Result<Self> {
        KeyPath::new(v)
    }
}

impl From<KeyPath> for Vec<String> {
    fn from(p: KeyPath) -> Self {
        p.0
    }
}

impl FromStr for KeyPath {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let mut segs = Vec::new();
        let mut cur = String::new();
        let mut chars = s.chars();
        let mut quoted = false;
        while let Some(c) = chars.next() {
            match c {
                '\\' if !quoted => match chars.next() {
                    Some(n) => cur.push(n),
                    None => {
                        return Err(Error::InvalidArgument(format!(
                            "key path `{s}` ends with a lone `\\`"
                        )));
                    }
                },
                '"' => quoted = !quoted,
                '.' if !quoted => segs.push(std::mem::take(&mut cur)),
                c => cur.push(c),
            }
        }
        if quoted {
            return Err(Error::InvalidArgument(format!(
                "key path `{s}` has an unclosed quote"
            )));
        }
        segs.push(cur);
        KeyPath::new(segs)
            .map_err(|_| Error::InvalidArgument(format!("key path `{s}` has an empty segment")))
    }
}

impl fmt::Display for KeyPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, s) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(".")?;
            }
            if s.contains('.') {
                write!(f, "\"{s}\"")?;
            } else {
                f.write_str(s)?;
            }
        }
        Ok(())
    }
}

/// A scalar to write with `set-path`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
#[non_exhaustive]
pub enum ScalarValue {
    /// `true` / `false`, written plain.
    Bool(bool),
    /// An integer, written plain.
    Int(i64),
    /// A string, written plain when that reads back as the same string, else quoted.
    Str(String),
}

impl ScalarValue {
    /// Reads a command-line value: `true`/`false` are booleans, a decimal integer is an
    /// integer, anything else a string.
    pub fn infer(text: &str) -> Self {
        match text {
            "true" => ScalarValue::Bool(true),
            "false" => ScalarValue::Bool(false),
            _ => match text.parse::<i64>() {
                Ok(i) if text == i.to_string() => ScalarValue::Int(i),
                _ => ScalarValue::Str(text.to_owned()),
            },
        }
    }

    pub(crate) fn data(&self) -> Scalar<'_> {
        match self {
            ScalarValue::Bool(b) => Scalar::Bool(*b),
            ScalarValue::Int(i) => Scalar::Int(i128::from(*i)),
            ScalarValue::Str(s) => Scalar::Str(s),
        }
    }

    fn render(&self, hint: ScalarStyle, flow: bool) -> String {
        match self {
            ScalarValue::Bool(b) => b.to_string(),
            ScalarValue::Int(i) => i.to_string(),
            ScalarValue::Str(s) => yaml::render_str(s, hint, flow),
        }
    }
}

impl fmt::Display for ScalarValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ScalarValue::Bool(b) => write!(f, "{b}"),
            ScalarValue::Int(i) => write!(f, "{i}"),
            ScalarValue::Str(s) => f.write_str(s),
        }
    }
}

/// The single document whose root is a mapping.
fn mapping_doc<'t>(ctx: &Ctx<'_>, tree: &'t Tree) -> Result<Node<'t>> {
    let mut maps = tree.docs().filter(|r| r.is_map());
    match (maps.next(), maps.count()) {
        (Some(one), 0) => Ok(one),
        (None, _) => Err(ctx.unsupported(0, "no document is a mapping; set-path needs one")),
        (Some(_), more) => Err(Error::AmbiguousDocument {
            file: ctx.file.to_path_buf(),
            count: more + 1,
            what: "mapping documents for set-path",
        }),
    }
}

fn dotted(segs: &[String]) -> String {
    KeyPath(segs.to_vec()).to_string()
}

fn refuse_aliasing(ctx: &Ctx<'_>, node: Node<'_>, path: &str) -> Result<()> {
    let what = match node.kind() {
        Kind::Alias(_) => Some("an alias"),
        _ if node.anchor != 0 => Some("an anchor"),
        _ if node.has_merge_key() => Some("a merge key"),
        _ => None,
    };
    match what {
        Some(what) => Err(Error::AnchorOrAlias {
            location: ctx.loc(node.start),
            what,
            context: format!("`{path}`"),
        }),
        None => Ok(()),
    }
}

/// The scalar at `path`, if present.
pub(crate) fn lookup<'t>(
    ctx: &Ctx<'_>,
    tree: &'t Tree,
    path: &KeyPath,
) -> Result<Option<Node<'t>>> {
    let mut node = mapping_doc(ctx, tree)?;
    for seg in path.segments() {
        match node.get(seg) {
            Some(v) => node = v,
            None => return Ok(None),
        }
    }
    Ok(Some(node))
}

/// The quoting style most string values of `map` use (for a new string value).
fn string_style(map: Node<'_>) -> ScalarStyle {
    let Kind::Map { entries, .. } = map.kind() else {
        return ScalarStyle::Plain;
    };
    let (mut plain, mut single, mut double) = (0, 0, 0);
    for (_, v) in entries.iter() {
        match (v.style(), yaml::decode_scalar(v)) {
            (Some(ScalarStyle::DoubleQuoted), _) => double += 1,
            (Some(ScalarStyle::SingleQuoted), _) => single += 1,
            (Some(ScalarStyle::Plain), Scalar::Str(_)) => plain += 1,
            _ => {}
        }
    }
    if double > plain && double >= single {
        ScalarStyle::DoubleQuoted
    } else if single > plain {
        ScalarStyle::SingleQuoted
    } else {
        ScalarStyle::Plain
    }
}

/// The value of a new entry for the path `segs` (first segment is the entry's key): the
/// scalar inline, or the nested mappings as lines.
fn new_value(segs: &[String], value: &ScalarValue, hint: ScalarStyle, step: usize) -> NewValue {
    let rendered = value.render(hint, false);
    match segs {
        [] | [_] => NewValue::Inline(rendered),
        [_, rest @ ..] => {
            let lines = rest
                .iter()
                .enumerate()
                .map(|(i, seg)| {
                    let key = yaml::render_key(seg);
                    let text = if i + 1 == rest.len() {
                        format!("{key}: {rendered}")
                    } else {
                        format!("{key}:")
                    };
                    (step * (i + 1), text)
                })
                .collect();
            NewValue::Block(lines)
        }
    }
}

/// `key: {k2: {k3: value}}` for a flow mapping.
fn flow_entry(segs: &[String], value: &ScalarValue) -> String {
    let key = |s: &str| yaml::render_str(s, ScalarStyle::Plain, true);
    let mut out = value.render(ScalarStyle::Plain, true);
    for seg in segs.iter().skip(1).rev() {
        out = format!("{{{}: {out}}}", key(seg));
    }
    match segs.first() {
        Some(first) => format!("{}: {out}", key(first)),
        None => out,
    }
}

/// The splices that set `path` to `value`.
pub(crate) fn set(
    ctx: &Ctx<'_>,
    tree: &Tree,
    path: &KeyPath,
    value: &ScalarValue,
) -> Result<Vec<Splice>> {
    let root = mapping_doc(ctx, tree)?;
    let step = layout::indent_step(ctx.text, root);
    let segs = path.segments();
    let mut node = root;
    for (i, seg) in segs.iter().enumerate() {
        let here = if i == 0 {
            "(document root)".to_owned()
        } else {
            dotted(segs.get(..i).unwrap_or_default())
        };
        refuse_aliasing(ctx, node, &here)?;
        let Kind::Map { flow, .. } = node.kind() else {
            return Err(ctx.unsupported(
                node.start,
                format!("`{here}` is {}, not a mapping", node.describe()),
            ));
        };
        let last = i + 1 == segs.len();
        let Some((key, val)) = node.entry(seg) else {
            // Create `seg` (and the rest of the path) in this mapping.
            let rest = segs.get(i..).unwrap_or_default();
            let splice = if flow {
                layout::insert_into_flow(ctx.text, node, &flow_entry(rest, value))
            } else {
                let nv = new_value(rest, value, string_style(node), step);
                layout::insert_into_block_map(ctx.text, node, seg, &nv)
            };
            return splice.map(|s| vec![s]).ok_or_else(|| {
                ctx.unsupported(
                    node.start,
                    format!(
                        "cannot insert `{}` here",
                        dotted(segs.get(..=i).unwrap_or_default())
                    ),
                )
            });
        };
        let full = dotted(segs.get(..=i).unwrap_or_default());
        if val.is_alias() || val.anchor != 0 {
            refuse_aliasing(ctx, val, &full)?;
        }
        if last {
            return replace_scalar(ctx, key, val, value, &full, flow);
        }
        if val.is_empty_null() {
            // `key:` with nothing: the rest of the path goes on the lines below it.
            let rest = segs.get(i + 1..).unwrap_or_default();
            let indent = layout::column(ctx.text, key.prop_start()) + step;
            let Some(first) = rest.first() else { break };
            let nv = new_value(rest, value, ScalarStyle::Plain, step);
            let lines = layout::entry_lines(indent, first, &nv);
            let pos = layout::after_node_line(ctx.text, &key);
            return Ok(vec![layout::insert_lines(ctx.text, pos, &lines)]);
        }
        node = val;
    }
    Ok(Vec::new())
}

fn replace_scalar(
    ctx: &Ctx<'_>,
    key: Node<'_>,
    val: Node<'_>,
    value: &ScalarValue,
    path: &str,
    flow: bool,
) -> Result<Vec<Splice>> {
    let style = match val.kind() {
        Kind::Scalar { style, .. } => style,
        _ => {
            return Err(ctx.unsupported(
                val.start,
                format!("`{path}` is {}; set-path only sets scalars", val.describe()),
            ));
        }
    };
    if matches!(style, ScalarStyle::Literal | ScalarStyle::Folded) {
        return Err(ctx.unsupported(
            key.start,
            format!("`{path}` is a block scalar (`|` or `>`); set-path does not rewrite those"),
        ));
    }
    if yaml::decode_scalar(val) == value.data() {
        return Ok(Vec::new());
    }
    let rendered = value.render(style, flow);
    if val.is_empty_null() {
        // `key:` -> `key: value`: insert after the colon.
        let after_key = ctx.text.get(key.end..).unwrap_or("");
        let colon = after_key
            .find(':')
            .filter(|i| after_key.get(..*i).is_some_and(|s| s.trim().is_empty()))
            .ok_or_else(|| {
                ctx.unsupported(key.start, format!("cannot find the `:` of `{path}`"))
            })?;
        return Ok(vec![Splice::insert(
            key.end + colon + 1,
            format!(" {rendered}"),
        )]);
    }
    Ok(vec![Splice::replace(val.start..val.end, rendered)])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_paths_parse_with_escapes_and_quotes() {
        let p: KeyPath = "a.b.c".parse().unwrap();
        assert_eq!(p.segments(), ["a", "b", "c"]);
        let p: KeyPath = r"evictionHard.memory\.available".parse().unwrap();
        assert_eq!(p.segments(), ["evictionHard", "memory.available"]);
        let p: KeyPath = "evictionHard.\"memory.available\"".parse().unwrap();
        assert_eq!(p.segments(), ["evictionHard", "memory.available"]);
        assert_eq!(p.to_string(), "evictionHard.\"memory.available\"");
        assert!("a..b".parse::<KeyPath>().is_err());
        assert!("".parse::<KeyPath>().is_err());
        assert!("a.\"b".parse::<KeyPath>().is_err());
    }

    #[test]
    fn values_are_inferred() {
        assert_eq!(ScalarValue::infer("false"), ScalarValue::Bool(false));
        assert_eq!(ScalarValue::infer("0"), ScalarValue::Int(0));
        assert_eq!(ScalarValue::infer("007"), ScalarValue::Str("007".into()));
        assert_eq!(
            ScalarValue::infer("cluster.local"),
            ScalarValue::Str("cluster.local".into())
        );
    }

    #[test]
    fn flow_entries_nest() {
        let segs: Vec<String> = vec!["a".into(), "b".into(), "c".into()];
        assert_eq!(flow_entry(&segs, &ScalarValue::Int(1)), "a: {b: {c: 1}}");
        assert_eq!(flow_entry(&segs[..1], &ScalarValue::Int(1)), "a: 1");
    }
}
