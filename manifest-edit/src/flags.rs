//! Finding the Pod, its container and the container's flags, and the flag operations
//! (`set`, `remove`, `get`, `list_add`, `list_remove`) as splices.

use granit_parser::ScalarStyle;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::layout::{self, Splice};
use crate::yaml::{self, Ctx, Items, Kind, Node, Tree};

/// Binaries of the control-plane components: the default container is the one whose
/// command (or args) starts one of these.
const COMPONENTS: &[&str] = &[
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "etcd",
    "cloud-controller-manager",
    "kube-proxy",
];

/// Flags a component refuses to start with together (kube-apiserver: "admission-control
/// and enable-admission-plugins/disable-admission-plugins flags are mutually exclusive").
const EXCLUSIVE: &[(&str, &[&str])] = &[
    (
        "admission-control",
        &["enable-admission-plugins", "disable-admission-plugins"],
    ),
    ("enable-admission-plugins", &["admission-control"]),
    ("disable-admission-plugins", &["admission-control"]),
];

/// Comma-list flags whose items kube-apiserver refuses to find in both ("[X] in
/// enable-admission-plugins and disable-admission-plugins overlapped"): (name, flag, other).
const DISJOINT: &[(&str, &str, &str)] = &[
    (
        "enable-admission-plugins",
        "--enable-admission-plugins",
        "--disable-admission-plugins",
    ),
    (
        "disable-admission-plugins",
        "--disable-admission-plugins",
        "--enable-admission-plugins",
    ),
];

/// Shells whose `-c` script is not edited.
const SHELLS: &[&str] = &["sh", "bash", "dash", "ash", "ksh", "zsh", "busybox"];

/// Which list of the container a flag lives in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ArgList {
    /// The container's `command`.
    Command,
    /// The container's `args`.
    Args,
}

impl ArgList {
    fn key(self) -> &'static str {
        match self {
            ArgList::Command => "command",
            ArgList::Args => "args",
        }
    }
}

/// A flag found in a container's command line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FlagValue {
    /// The container it was found in.
    pub container: String,
    /// The flag, with its leading dashes (`--profiling`).
    pub flag: String,
    /// Its value; `None` for a bare flag without a value (`--alsologtostderr`).
    pub value: Option<String>,
    /// The list holding it.
    pub list: ArgList,
    /// 1-based line of the flag item.
    pub line: usize,
}

/// Validates a flag name given as `--name` or `name`; returns the bare name.
pub(crate) fn flag_name(flag: &str) -> Result<&str> {
    let name = flag.strip_prefix("--").unwrap_or(flag);
    let valid = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if valid {
        Ok(name)
    } else {
        Err(Error::InvalidArgument(format!(
            "`{flag}` is not a flag name (expected `--name` with letters, digits, `-`, `_`, `.`)"
        )))
    }
}

/// Whether a mapping has a block scalar value that looks like a Pod manifest.
fn holds_pod_text(node: Node<'_>) -> bool {
    match node.kind() {
        Kind::Map { entries, .. } => entries.iter().any(|(_, v)| {
            matches!(v.style(), Some(ScalarStyle::Literal | ScalarStyle::Folded))
                && v.scalar().is_some_and(|s| s.contains("kind: Pod"))
        }),
        _ => false,
    }
}

/// The single `kind: Pod` document of the stream.
pub(crate) fn find_pod<'t>(ctx: &Ctx<'_>, tree: &'t Tree) -> Result<Node<'t>> {
    let mut pods = tree
        .docs()
        .filter(|r| r.get("kind").and_then(Node::scalar) == Some("Pod"));
    match (pods.next(), pods.count()) {
        (Some(pod), 0) => Ok(pod),
        (None, _) => {
            let found = tree.docs().find(|r| !r.is_empty_null()).map_or_else(
                || "the file holds no YAML document".to_owned(),
                |r| match r.get("kind").and_then(Node::scalar) {
                    Some(kind @ "KubeletConfiguration") => format!(
                        "kind: {kind}; its fields are set by key path (set-path), not as flags"
                    ),
                    Some(kind) => format!("kind: {kind}"),
                    None if holds_pod_text(r) => "a mapping without `kind` whose block \
                            scalar holds a Pod manifest as text (e.g. a kops `contents: |` \
                            task); text inside a string is not edited"
                        .to_owned(),
                    None if r.is_map() => "a mapping without `kind`".to_owned(),
                    None => format!("{} at the top level", r.describe()),
                },
            );
            Err(Error::NotAPod {
                file: ctx.file.to_path_buf(),
                found,
            })
        }
        (Some(_), more) => Err(Error::AmbiguousDocument {
            file: ctx.file.to_path_buf(),
            count: more + 1,
            what: "kind: Pod",
        }),
    }
}

/// The Pod's `spec`, which must be a mapping.
pub(crate) fn pod_spec<'t>(ctx: &Ctx<'_>, pod: Node<'t>) -> Result<Node<'t>> {
    match pod.get("spec") {
        Some(spec) if spec.is_map() => Ok(spec),
        Some(other) => Err(ctx.unsupported(
            other.start,
            format!("`spec` is {}, not a mapping", other.describe()),
        )),
        None => Err(ctx.unsupported(pod.start, "the Pod has no `spec`")),
    }
}

/// A selected container.
pub(crate) struct Container<'t> {
    pub(crate) name: String,
    pub(crate) node: Node<'t>,
}

fn container_name(c: Node<'_>) -> String {
    c.get("name")
        .and_then(Node::scalar)
        .unwrap_or("<unnamed>")
        .to_owned()
}

fn first_argv_word(c: Node<'_>) -> Option<&str> {
    let list = c.get("command").or_else(|| c.get("args"))?;
    list.items()?.first().and_then(Node::scalar)
}

fn basename(word: &str) -> &str {
    word.rsplit('/').next().unwrap_or(word)
}

fn container_list<'t>(ctx: &Ctx<'_>, spec: Node<'t>, key: &str) -> Result<Vec<Node<'t>>> {
    match spec.get(key) {
        None => Ok(Vec::new()),
        Some(n) if n.is_seq() => n
            .items()
            .into_iter()
            .flat_map(|items| items.iter())
            .map(|c| match c.is_map() {
                true => Ok(c),
                false => Err(ctx.unsupported(
                    c.start,
                    format!("an item of `{key}` is {}, not a mapping", c.describe()),
                )),
            })
            .collect(),
        Some(n) if n.is_empty_null() => Ok(Vec::new()),
        Some(n) => {
            Err(ctx.unsupported(n.start, format!("`{key}` is {}, not a list", n.describe())))
        }
    }
}

/// Chooses the container: by name (in `containers`, then `initContainers`), or by
/// default the one running a control-plane binary, or the only one.
pub(crate) fn select_container<'t>(
    ctx: &Ctx<'_>,
    pod: Node<'t>,
    want: Option<&str>,
) -> Result<Container<'t>> {
    let spec = pod_spec(ctx, pod)?;
    let containers = container_list(ctx, spec, "containers")?;
    let list_pos = spec
        .entry("containers")
        .map_or(spec.start, |(k, _)| k.start);
    let names = |cs: &[Node<'_>]| {
        if cs.is_empty() {
            "(none)".to_owned()
        } else {
            cs.iter()
                .map(|c| container_name(*c))
                .collect::<Vec<_>>()
                .join(", ")
        }
    };
    if let Some(want) = want {
        let init = container_list(ctx, spec, "initContainers")?;
        return containers
            .iter()
            .chain(init.iter())
            .find(|c| c.get("name").and_then(Node::scalar) == Some(want))
            .map(|c| Container {
                name: want.to_owned(),
                node: *c,
            })
            .ok_or_else(|| Error::NoSuchContainer {
                location: ctx.loc(list_pos),
                name: want.to_owned(),
                available: names(&containers),
            });
    }
    if containers.is_empty() {
        return Err(ctx.unsupported(list_pos, "the Pod has no containers (`spec.containers`)"));
    }
    let running: Vec<Node<'t>> = containers
        .iter()
        .copied()
        .filter(|c| first_argv_word(*c).is_some_and(|w| COMPONENTS.contains(&basename(w))))
        .collect();
    match (running.as_slice(), containers.as_slice()) {
        ([one], _) | ([], [one]) => Ok(Container {
            name: container_name(*one),
            node: *one,
        }),
        ([], _) => Err(Error::AmbiguousContainer {
            location: ctx.loc(list_pos),
            reason: format!(
                "{} containers and none runs a control-plane binary",
                containers.len()
            ),
            available: names(&containers),
        }),
        (many, _) => Err(Error::AmbiguousContainer {
            location: ctx.loc(list_pos),
            reason: format!("{} containers run a control-plane binary", many.len()),
            available: names(&containers),
        }),
    }
}

/// One of the container's argument lists.
pub(crate) struct List<'t> {
    pub(crate) kind: ArgList,
    pub(crate) seq: Node<'t>,
    pub(crate) items: Items<'t>,
    pub(crate) flow: bool,
}

/// The container's `command` and `args`.
pub(crate) struct Argv<'t> {
    pub(crate) container: Container<'t>,
    pub(crate) lists: Vec<List<'t>>,
}

/// How a found flag carries its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Form {
    /// `--name=value`.
    Joined(String),
    /// `--name` alone.
    Bare,
    /// `--name` then `value` as the next item (index of that item).
    Split(usize, String),
}

/// A flag occurrence.
#[derive(Debug, Clone)]
pub(crate) struct Hit {
    pub(crate) list: usize,
    pub(crate) item: usize,
    pub(crate) form: Form,
}

impl<'t> Argv<'t> {
    /// Reads the argument lists of the container. Refuses a shell `-c` script.
    pub(crate) fn of(ctx: &Ctx<'_>, container: Container<'t>) -> Result<Self> {
        let mut lists = Vec::new();
        for kind in [ArgList::Command, ArgList::Args] {
            let Some(node) = container.node.get(kind.key()) else {
                continue;
            };
            match node.kind() {
                Kind::Seq { flow, items } => lists.push(List {
                    kind,
                    seq: node,
                    items,
                    flow,
                }),
                Kind::Alias(_) => {
                    return Err(Error::AnchorOrAlias {
                        location: ctx.loc(node.start),
                        what: "an alias",
                        context: format!("`{}` of container `{}`", kind.key(), container.name),
                    });
                }
                _ if node.is_empty_null() => {}
                _ => {
                    return Err(ctx.unsupported(
                        node.start,
                        format!("`{}` is {}, not a list", kind.key(), node.describe()),
                    ));
                }
            }
        }
        let argv = Argv { container, lists };
        argv.refuse_shell_script(ctx)?;
        Ok(argv)
    }

    fn words(&self) -> impl Iterator<Item = Node<'t>> + '_ {
        self.lists.iter().flat_map(|l| l.items.iter())
    }

    fn refuse_shell_script(&self, ctx: &Ctx<'_>) -> Result<()> {
        let mut words = self.words();
        let Some(shell) = words.next().and_then(Node::scalar) else {
            return Ok(());
        };
        if !SHELLS.contains(&basename(shell)) {
            return Ok(());
        }
        let mut words = words.peekable();
        while let Some(w) = words.next() {
            let is_c = w.scalar().is_some_and(|s| {
                s.len() > 1
                    && s.starts_with('-')
                    && !s.starts_with("--")
                    && s.chars().skip(1).all(|c| c.is_ascii_alphabetic())
                    && s.contains('c')
            });
            if is_c {
                let script = words.peek().copied().unwrap_or(w);
                return Err(Error::ShellScript {
                    location: ctx.loc(script.start),
                    container: self.container.name.clone(),
                    shell: shell.to_owned(),
                });
            }
        }
        Ok(())
    }

    /// Whether every flag of the container writes its value as a separate item (etcd's
    /// HA example: `- --name` / `- ${NODE_NAME}`), i.e. no item is `--x=y`.
    fn split_style(&self) -> bool {
        !self.words().any(|n| {
            n.scalar()
                .is_some_and(|s| s.starts_with("--") && s.contains('='))
        })
    }

    /// Finds `--name`. Errors on duplicates and on an ambiguous `--name word`.
    pub(crate) fn lookup(&self, ctx: &Ctx<'_>, name: &str) -> Result<Option<Hit>> {
        let bare = format!("--{name}");
        let joined = format!("--{name}=");
        let mut found: Option<Hit> = None;
        'lists: for (li, list) in self.lists.iter().enumerate() {
            for (ii, item) in list.items.iter().enumerate() {
                if list.kind == ArgList::Command && ii == 0 {
                    continue; // the binary
                }
                let Some(word) = item.scalar() else { continue };
                if word == "--" {
                    break 'lists;
                }
                let form = if let Some(v) = word.strip_prefix(&joined) {
                    Form::Joined(v.to_owned())
                } else if word == bare {
                    match list.items.get(ii + 1) {
                        Some(next) if next.scalar().is_some_and(|s| !s.starts_with('-')) => {
                            let next_word = next.scalar().unwrap_or_default();
                            if self.split_style() {
                                Form::Split(ii + 1, next_word.to_owned())
                            } else {
                                return Err(Error::AmbiguousFlagValue {
                                    location: ctx.loc(item.start),
                                    flag: bare,
                                    next: next_word.to_owned(),
                                });
                            }
                        }
                        _ => Form::Bare,
                    }
                } else {
                    continue;
                };
                if let Some(first) = &found {
                    let first_pos = self
                        .lists
                        .get(first.list)
                        .and_then(|l| l.items.get(first.item))
                        .map_or(0, |n| n.start);
                    return Err(Error::DuplicateFlag {
                        location: ctx.loc(item.start),
                        flag: bare,
                        container: self.container.name.clone(),
                        first_line: ctx.line(first_pos),
                    });
                }
                found = Some(Hit {
                    list: li,
                    item: ii,
                    form,
                });
            }
        }
        Ok(found)
    }

    /// Refuses to modify a list that carries an anchor, or whose items do.
    fn check_editable(&self, ctx: &Ctx<'_>, list: &List<'_>) -> Result<()> {
        let context = || {
            format!(
                "`{}` of container `{}`",
                list.kind.key(),
                self.container.name
            )
        };
        if list.seq.anchor != 0 {
            return Err(Error::AnchorOrAlias {
                location: ctx.loc(list.seq.start),
                what: "an anchor",
                context: context(),
            });
        }
        for item in list.items.iter() {
            let what = match item.kind() {
                Kind::Alias(_) => Some("an alias"),
                _ if item.anchor != 0 => Some("an anchor"),
                Kind::Seq { .. } | Kind::Map { .. } => {
                    return Err(ctx.unsupported(
                        item.start,
                        format!(
                            "an item of `{}` is {}, not a string",
                            list.kind.key(),
                            item.describe()
                        ),
                    ));
                }
                _ => None,
            };
            if let Some(what) = what {
                return Err(Error::AnchorOrAlias {
                    location: ctx.loc(item.start),
                    what,
                    context: context(),
                });
            }
        }
        Ok(())
    }

    fn list(&self, i: usize) -> Option<&List<'t>> {
        self.lists.get(i)
    }

    /// The value of `--name`.
    pub(crate) fn get(&self, ctx: &Ctx<'_>, name: &str) -> Result<Option<FlagValue>> {
        let Some(hit) = self.lookup(ctx, name)? else {
            return Ok(None);
        };
        let Some(list) = self.list(hit.list) else {
            return Ok(None);
        };
        let line = list.items.get(hit.item).map_or(0, |n| ctx.line(n.start));
        Ok(Some(FlagValue {
            container: self.container.name.clone(),
            flag: format!("--{name}"),
            value: match hit.form {
                Form::Joined(v) | Form::Split(_, v) => Some(v),
                Form::Bare => None,
            },
            list: list.kind,
            line,
        }))
    }

    /// What `--name` is set to, found exactly as [`Argv::get`] finds it (duplicates and
    /// ambiguous pairs are errors): `None` when absent, `Some(None)` for a bare flag.
    /// Cheaper than `get`: no line number, no copies of the names.
    pub(crate) fn value(&self, ctx: &Ctx<'_>, name: &str) -> Result<Option<Option<String>>> {
        Ok(self.lookup(ctx, name)?.map(|hit| match hit.form {
            Form::Joined(v) | Form::Split(_, v) => Some(v),
            Form::Bare => None,
        }))
    }

    /// Replaces one item's text, keeping its quoting style where it can hold the text.
    fn replace_item(
        &self,
        ctx: &Ctx<'_>,
        list: &List<'_>,
        item: usize,
        new: &str,
    ) -> Result<Vec<Splice>> {
        self.check_editable(ctx, list)?;
        let node = list
            .items
            .get(item)
            .ok_or_else(|| ctx.unsupported(list.seq.start, "internal error: item out of range"))?;
        let hint = match node.style() {
            Some(
                s @ (ScalarStyle::Plain | ScalarStyle::SingleQuoted | ScalarStyle::DoubleQuoted),
            ) => s,
            _ => ScalarStyle::DoubleQuoted,
        };
        let rendered = yaml::render_str(new, hint, list.flow);
        Ok(vec![Splice::replace(node.start..node.end, rendered)])
    }

    fn remove_items(&self, ctx: &Ctx<'_>, list: &List<'_>, idx: &[usize]) -> Result<Vec<Splice>> {
        self.check_editable(ctx, list)?;
        if list.flow {
            // The indices are one flag (and its value): adjacent items, removed as one
            // range together with one separator.
            let (Some(&lo), Some(&hi)) = (idx.iter().min(), idx.iter().max()) else {
                return Ok(Vec::new());
            };
            let (Some(first), Some(last)) = (list.items.get(lo), list.items.get(hi)) else {
                return Ok(Vec::new());
            };
            let at = if let Some(next) = list.items.get(hi + 1) {
                first.prop_start()..next.prop_start()
            } else if let Some(prev) = lo.checked_sub(1).and_then(|i| list.items.get(i)) {
                prev.end..last.end
            } else {
                first.prop_start()..last.end
            };
            return Ok(vec![Splice::delete(at)]);
        }
        let mut out = Vec::new();
        for &i in idx {
            let node = list.items.get(i).ok_or_else(|| {
                ctx.unsupported(list.seq.start, "internal error: item out of range")
            })?;
            if layout::block_item_prefix(ctx.text, &node).is_none() {
                return Err(
                    ctx.unsupported(node.start, "list item does not start its own `- ` line")
                );
            }
            out.push(layout::remove_lines(
                ctx.text,
                node.prop_start(),
                node.last_byte(),
            ));
        }
        // Adjacent line removals touch (end == start): merge into one range.
        out.sort_by_key(|s| s.at.start);
        let mut merged: Vec<Splice> = Vec::new();
        for s in out {
            match merged.last_mut() {
                Some(prev) if prev.at.end >= s.at.start => prev.at.end = prev.at.end.max(s.at.end),
                _ => merged.push(s),
            }
        }
        Ok(merged)
    }

    /// Appends `--name=value` to `args` when the container has them, else to `command`.
    fn append(&self, ctx: &Ctx<'_>, word: &str) -> Result<Vec<Splice>> {
        let list = self
            .lists
            .iter()
            .find(|l| l.kind == ArgList::Args)
            .or_else(|| self.lists.iter().find(|l| l.kind == ArgList::Command))
            .ok_or_else(|| Error::NoArgv {
                location: ctx.loc(self.container.node.start),
                container: self.container.name.clone(),
            })?;
        self.check_editable(ctx, list)?;
        // Quote like the neighbours: the style of the last flag item, else of the last item.
        let hint = list
            .items
            .iter()
            .rev()
            .find(|n| n.scalar().is_some_and(|s| s.starts_with('-')))
            .or_else(|| list.items.last())
            .and_then(Node::style)
            .filter(|s| {
                matches!(
                    s,
                    ScalarStyle::Plain | ScalarStyle::SingleQuoted | ScalarStyle::DoubleQuoted
                )
            })
            .unwrap_or(ScalarStyle::Plain);
        let rendered = yaml::render_str(word, hint, list.flow);
        let splice = if list.flow {
            layout::insert_into_flow(ctx.text, list.seq, &rendered)
        } else {
            layout::append_block_item(ctx.text, list.items, &[rendered])
        };
        splice.map(|s| vec![s]).ok_or_else(|| {
            ctx.unsupported(
                list.seq.start,
                format!(
                    "cannot add to `{}`: its last item does not start its own `- ` line",
                    list.kind.key()
                ),
            )
        })
    }

    /// Refuses to add `--name` when the container has a flag the component will not
    /// start together with.
    fn refuse_exclusive(&self, ctx: &Ctx<'_>, name: &str) -> Result<()> {
        let others = EXCLUSIVE
            .iter()
            .find(|(flag, _)| *flag == name)
            .map_or(&[][..], |(_, others)| *others);
        for other in others {
            if let Some(hit) = self.lookup(ctx, other)? {
                let pos = self
                    .list(hit.list)
                    .and_then(|l| l.items.get(hit.item))
                    .map_or(0, |n| n.start);
                return Err(Error::ConflictingFlag {
                    location: ctx.loc(pos),
                    flag: format!("--{name}"),
                    other: format!("--{other}"),
                    container: self.container.name.clone(),
                });
            }
        }
        Ok(())
    }

    /// Refuses to give `--name` the comma-list `value` when it shares items with a list
    /// the component must keep disjoint from it.
    fn refuse_overlap(&self, ctx: &Ctx<'_>, name: &str, value: &str) -> Result<()> {
        let items = |v: &str| -> Vec<String> {
            v.split(',')
                .map(str::trim)
                .filter(|i| !i.is_empty())
                .map(str::to_owned)
                .collect()
        };
        for (_, flag, other) in DISJOINT.iter().filter(|(n, ..)| *n == name) {
            let other_name = other.trim_start_matches('-');
            let Some(hit) = self.lookup(ctx, other_name)? else {
                continue;
            };
            let theirs = match &hit.form {
                Form::Joined(v) | Form::Split(_, v) => items(v),
                Form::Bare => Vec::new(),
            };
            let shared: Vec<String> = items(value)
                .into_iter()
                .filter(|i| theirs.contains(i))
                .collect();
            if !shared.is_empty() {
                let pos = self
                    .list(hit.list)
                    .and_then(|l| l.items.get(hit.item))
                    .map_or(0, |n| n.start);
                return Err(Error::OverlappingLists {
                    location: ctx.loc(pos),
                    flag,
                    items: shared.join(","),
                    container: self.container.name.clone(),
                });
            }
        }
        Ok(())
    }

    /// `set`: replace the value of `--name`, or append `--name=value`.
    pub(crate) fn set(&self, ctx: &Ctx<'_>, name: &str, value: &str) -> Result<Vec<Splice>> {
        self.refuse_exclusive(ctx, name)?;
        self.refuse_overlap(ctx, name, value)?;
        self.set_unchecked(ctx, name, value)
    }

    fn set_unchecked(&self, ctx: &Ctx<'_>, name: &str, value: &str) -> Result<Vec<Splice>> {
        let joined = format!("--{name}={value}");
        match self.lookup(ctx, name)? {
            None => self.append(ctx, &joined),
            Some(hit) => {
                let list = self
                    .list(hit.list)
                    .ok_or_else(|| ctx.unsupported(0, "internal error"))?;
                match hit.form {
                    Form::Joined(old) if old == value => Ok(Vec::new()),
                    Form::Joined(_) | Form::Bare => self.replace_item(ctx, list, hit.item, &joined),
                    Form::Split(_, old) if old == value => Ok(Vec::new()),
                    Form::Split(vi, _) if value.starts_with('-') => {
                        let pos = list.items.get(vi).map_or(list.seq.start, |n| n.start);
                        Err(ctx.unsupported(
                            pos,
                            format!(
                                "`--{name}` takes its value as the next item, and `{value}` \
                                 would read as a flag there; refusing (write the flag as \
                                 `--{name}=VALUE` by hand first)"
                            ),
                        ))
                    }
                    Form::Split(vi, _) => self.replace_item(ctx, list, vi, value),
                }
            }
        }
    }

    /// `remove`: delete `--name` (and its value item when split).
    pub(crate) fn remove(&self, ctx: &Ctx<'_>, name: &str) -> Result<Vec<Splice>> {
        let Some(hit) = self.lookup(ctx, name)? else {
            return Ok(Vec::new());
        };
        let list = self
            .list(hit.list)
            .ok_or_else(|| ctx.unsupported(0, "internal error"))?;
        match hit.form {
            Form::Split(vi, _) => self.remove_items(ctx, list, &[hit.item, vi]),
            _ => self.remove_items(ctx, list, &[hit.item]),
        }
    }

    /// `list_add` / `list_remove` on a comma-separated flag value. Items compare by their
    /// key (the part before `=`, so `KMSv2=false` replaces `KMSv2=true`).
    pub(crate) fn list_edit(
        &self,
        ctx: &Ctx<'_>,
        name: &str,
        item: &str,
        add: bool,
    ) -> Result<Vec<Splice>> {
        let key_of = |s: &str| s.split('=').next().unwrap_or(s).trim().to_owned();
        let want_key = key_of(item);
        let hit = self.lookup(ctx, name)?;
        let current = match &hit {
            None => None,
            Some(Hit {
                form: Form::Joined(v) | Form::Split(_, v),
                ..
            }) => Some(v.clone()),
            Some(Hit {
                form: Form::Bare, ..
            }) => Some(String::new()),
        };
        let mut items: Vec<String> = current
            .as_deref()
            .filter(|v| !v.is_empty())
            .map(|v| v.split(',').map(str::to_owned).collect())
            .unwrap_or_default();
        let before = items.clone();
        if add {
            match items.iter_mut().find(|i| key_of(i) == want_key) {
                Some(existing) if existing.trim() == item => {}
                Some(existing) => *existing = item.to_owned(),
                None => items.push(item.to_owned()),
            }
        } else {
            items.retain(|i| key_of(i) != want_key);
        }
        if items == before && hit.is_some() {
            return Ok(Vec::new());
        }
        if items.is_empty() {
            return if add {
                Ok(Vec::new())
            } else {
                self.remove(ctx, name)
            };
        }
        if add {
            self.set(ctx, name, &items.join(","))
        } else {
            self.set_unchecked(ctx, name, &items.join(","))
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::yaml::parse;

    fn with_argv<R>(src: &str, f: impl FnOnce(&Ctx<'_>, Argv<'_>) -> R) -> R {
        let file = Path::new("m.yaml");
        let tree = parse(src, file).unwrap();
        let ctx = Ctx { text: src, file };
        let pod = find_pod(&ctx, &tree).unwrap();
        let c = select_container(&ctx, pod, None).unwrap();
        let argv = Argv::of(&ctx, c).unwrap();
        f(&ctx, argv)
    }

    const POD: &str = "kind: Pod\nspec:\n  containers:\n  - command:\n    - kube-apiserver\n    - --a=1\n    - --b\n    - --c=x,y\n";

    #[test]
    fn lookup_forms() {
        with_argv(POD, |ctx, argv| {
            assert_eq!(
                argv.lookup(ctx, "a").unwrap().unwrap().form,
                Form::Joined("1".into())
            );
            assert_eq!(argv.lookup(ctx, "b").unwrap().unwrap().form, Form::Bare);
            assert!(argv.lookup(ctx, "d").unwrap().is_none());
            // the binary is never a flag
            assert!(argv.lookup(ctx, "kube-apiserver").unwrap().is_none());
        });
    }

    #[test]
    fn split_pairs_only_in_split_style_lists() {
        let split =
            "kind: Pod\nspec:\n  containers:\n  - command:\n    - etcd\n    - --name\n    - n1\n";
        with_argv(split, |ctx, argv| {
            assert_eq!(
                argv.lookup(ctx, "name").unwrap().unwrap().form,
                Form::Split(2, "n1".into())
            );
        });
        let mixed = "kind: Pod\nspec:\n  containers:\n  - args:\n    - --v=2\n    - --also-stdout\n    - /ko-app/etcd-manager\n    command: [/go-runner]\n";
        with_argv(mixed, |ctx, argv| {
            let err = argv.lookup(ctx, "also-stdout").unwrap_err();
            assert!(matches!(err, Error::AmbiguousFlagValue { .. }), "{err}");
            assert!(argv.lookup(ctx, "v").is_ok());
        });
    }

    #[test]
    fn duplicates_are_reported_with_both_lines() {
        let dup =
            "kind: Pod\nspec:\n  containers:\n  - command:\n    - x\n    - --a=1\n    - --a=2\n";
        with_argv(dup, |ctx, argv| {
            let err = argv.lookup(ctx, "a").unwrap_err();
            assert_eq!(
                err.to_string(),
                "m.yaml:7:7: flag `--a` appears more than once in container `<unnamed>` (first on line 6); refusing to edit one of them"
            );
        });
    }

    #[test]
    fn flag_names_are_validated() {
        assert_eq!(flag_name("--profiling").unwrap(), "profiling");
        assert_eq!(flag_name("profiling").unwrap(), "profiling");
        assert!(flag_name("--").is_err());
        assert!(flag_name("--a b").is_err());
        assert!(flag_name("-p").is_err());
    }
}
