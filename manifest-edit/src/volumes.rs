//! Ensuring a `hostPath` volume and the container's matching `volumeMount` exist (the
//! audit policy, the audit log directory and the encryption config must be mounted, or the
//! API server crash-loops on a file it cannot see).

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::flags;
use crate::layout::{self, NewValue, Splice};
use crate::yaml::{self, Ctx, Kind, Node, Tree};

/// A `hostPath` volume and its mount in the container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct HostPathMount {
    /// Volume name (used when the volume has to be created).
    pub name: String,
    /// Path on the node (`hostPath.path`).
    pub host_path: String,
    /// Path in the container (`mountPath`).
    pub mount_path: String,
    /// `hostPath.type` (`File`, `DirectoryOrCreate`, ...), written when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_type: Option<String>,
    /// Whether the mount is `readOnly: true`.
    #[serde(default)]
    pub read_only: bool,
}

impl HostPathMount {
    /// A read-write mount of `host_path` at `mount_path`, volume name `name`, no type.
    pub fn new(
        name: impl Into<String>,
        host_path: impl Into<String>,
        mount_path: impl Into<String>,
    ) -> Self {
        HostPathMount {
            name: name.into(),
            host_path: host_path.into(),
            mount_path: mount_path.into(),
            path_type: None,
            read_only: false,
        }
    }

    /// Sets `hostPath.type`.
    #[must_use]
    pub fn path_type(mut self, path_type: impl Into<String>) -> Self {
        self.path_type = Some(path_type.into());
        self
    }

    /// Sets `readOnly`.
    #[must_use]
    pub fn read_only(mut self, read_only: bool) -> Self {
        self.read_only = read_only;
        self
    }
}

/// `/var/log/x/` and `/var/log/x` are the same directory.
fn norm(p: &str) -> &str {
    let t = p.trim_end_matches('/');
    if t.is_empty() { p } else { t }
}

fn items<'t>(ctx: &Ctx<'_>, list: Option<Node<'t>>, what: &str) -> Result<Vec<Node<'t>>> {
    match list {
        None => Ok(Vec::new()),
        Some(n) if n.is_seq() => Ok(n.items().map(|i| i.iter().collect()).unwrap_or_default()),
        Some(n) if n.is_empty_null() => Ok(Vec::new()),
        Some(n) => {
            Err(ctx.unsupported(n.start, format!("`{what}` is {}, not a list", n.describe())))
        }
    }
}

fn host_path_of(vol: Node<'_>) -> Option<&str> {
    vol.get("hostPath")?.get("path")?.scalar()
}

/// Lines of a new list item, relative to the item's content column (the first line goes
/// after `- `).
fn volume_lines(m: &HostPathMount, name: &str, name_first: bool, step: usize) -> Vec<String> {
    let pad = " ".repeat(step);
    let mut host = vec!["hostPath:".to_owned()];
    host.push(format!("{pad}path: {}", yaml::render_key(&m.host_path)));
    if let Some(t) = &m.path_type {
        host.push(format!("{pad}type: {}", yaml::render_key(t)));
    }
    let name_line = format!("name: {}", yaml::render_key(name));
    if name_first {
        let mut v = vec![name_line];
        v.extend(host);
        v
    } else {
        host.push(name_line);
        host
    }
}

fn mount_lines(m: &HostPathMount, name: &str, name_first: bool) -> Vec<String> {
    let mount = format!("mountPath: {}", yaml::render_key(&m.mount_path));
    let name_line = format!("name: {}", yaml::render_key(name));
    let mut v = if name_first {
        vec![name_line, mount]
    } else {
        vec![mount, name_line]
    };
    if m.read_only {
        v.push("readOnly: true".to_owned());
    }
    v
}

fn first_key_is_name(items: &[Node<'_>]) -> Option<bool> {
    match items.first()?.kind() {
        Kind::Map { entries, .. } => Some(entries.first()?.0.scalar() == Some("name")),
        _ => None,
    }
}

/// Adds an item (lines relative to its content column) to the block list `key` of the
/// block mapping `parent`, creating the key when it is missing.
fn add_item(
    ctx: &Ctx<'_>,
    root: Node<'_>,
    parent: Node<'_>,
    key: &str,
    lines: &[String],
) -> Result<Splice> {
    let list = parent.entry(key);
    let dash = layout::seq_dash_offset(ctx.text, root);
    let as_block = |base: usize| -> Vec<(usize, String)> {
        lines
            .iter()
            .enumerate()
            .map(|(i, l)| {
                if i == 0 {
                    (base, format!("- {l}"))
                } else {
                    (base + 2, l.clone())
                }
            })
            .collect()
    };
    let block_items = list.and_then(|(_, v)| match v.kind() {
        Kind::Seq { flow: false, items } => Some((v, items)),
        _ => None,
    });
    if let Some((seq, items)) = block_items {
        {
            if seq.anchor != 0 {
                return Err(Error::AnchorOrAlias {
                    location: ctx.loc(seq.start),
                    what: "an anchor",
                    context: format!("`{key}`"),
                });
            }
            return layout::append_block_item(ctx.text, items, lines).ok_or_else(|| {
                ctx.unsupported(
                    seq.start,
                    format!("cannot add to `{key}`: unusual item layout"),
                )
            });
        }
    }
    match list {
        Some((k, v)) if v.is_empty_null() => {
            let indent = layout::column(ctx.text, k.prop_start());
            let block: Vec<String> = as_block(indent + dash)
                .into_iter()
                .map(|(i, l)| format!("{}{l}", " ".repeat(i)))
                .collect();
            Ok(layout::insert_lines(
                ctx.text,
                layout::after_node_line(ctx.text, &k),
                &block,
            ))
        }
        Some((_, v)) => Err(ctx.unsupported(
            v.start,
            format!(
                "`{key}` is {} (only block lists are edited)",
                if v.is_seq() {
                    "a flow-style list"
                } else {
                    v.describe()
                }
            ),
        )),
        None => {
            if parent.has_merge_key() {
                return Err(Error::AnchorOrAlias {
                    location: ctx.loc(parent.start),
                    what: "a merge key",
                    context: format!("the mapping that should hold `{key}`"),
                });
            }
            layout::insert_into_block_map(ctx.text, parent, key, &NewValue::Block(as_block(dash)))
                .ok_or_else(|| ctx.unsupported(parent.start, format!("cannot add `{key}` here")))
        }
    }
}

/// The splices that make sure `m` is mounted in the selected container.
pub(crate) fn ensure(
    ctx: &Ctx<'_>,
    tree: &Tree,
    container: Option<&str>,
    m: &HostPathMount,
) -> Result<Vec<Splice>> {
    if m.name.is_empty() || m.host_path.is_empty() || m.mount_path.is_empty() {
        return Err(Error::InvalidArgument(
            "a hostPath mount needs a name, a host path and a mount path".to_owned(),
        ));
    }
    let pod = flags::find_pod(ctx, tree)?;
    let spec = flags::pod_spec(ctx, pod)?;
    let c = flags::select_container(ctx, pod, container)?;
    let volumes = items(ctx, spec.get("volumes"), "volumes")?;
    let mounts = items(ctx, c.node.get("volumeMounts"), "volumeMounts")?;
    let volume_named = |name: &str| {
        volumes
            .iter()
            .find(|v| v.get("name").and_then(Node::scalar) == Some(name))
            .copied()
    };

    if let Some(existing) = mounts.iter().find(|mt| {
        mt.get("mountPath")
            .and_then(Node::scalar)
            .is_some_and(|p| norm(p) == norm(&m.mount_path))
    }) {
        let vol_name = existing.get("name").and_then(Node::scalar).unwrap_or("");
        let from = volume_named(vol_name).and_then(host_path_of);
        if from.is_some_and(|p| norm(p) == norm(&m.host_path)) {
            return Ok(Vec::new());
        }
        return Err(Error::VolumeConflict {
            location: ctx.loc(existing.start),
            message: format!(
                "`{}` is already mounted in container `{}` from volume `{vol_name}` ({}), not from hostPath `{}`",
                m.mount_path,
                c.name,
                from.map_or_else(
                    || "not a hostPath volume".to_owned(),
                    |p| format!("hostPath `{p}`")
                ),
                m.host_path
            ),
        });
    }

    let by_path = volumes
        .iter()
        .find(|v| host_path_of(**v).is_some_and(|p| norm(p) == norm(&m.host_path)));
    let (vol_name, create) = match (volume_named(&m.name), by_path) {
        (Some(v), _) if host_path_of(v).is_some_and(|p| norm(p) == norm(&m.host_path)) => {
            (m.name.clone(), false)
        }
        (Some(v), _) => {
            return Err(Error::VolumeConflict {
                location: ctx.loc(v.start),
                message: format!(
                    "a volume named `{}` already exists with {}, not hostPath `{}`; choose another name",
                    m.name,
                    host_path_of(v).map_or_else(
                        || "another source".to_owned(),
                        |p| format!("hostPath `{p}`")
                    ),
                    m.host_path
                ),
            });
        }
        (None, Some(v)) => (
            v.get("name")
                .and_then(Node::scalar)
                .unwrap_or(&m.name)
                .to_owned(),
            false,
        ),
        (None, None) => (m.name.clone(), true),
    };

    let root = pod;
    let step = volumes
        .first()
        .and_then(|v| {
            let (hk, hv) = v.entry("hostPath")?;
            let Kind::Map { entries, .. } = hv.kind() else {
                return None;
            };
            let (ck, _) = entries.first()?;
            layout::column(ctx.text, ck.prop_start())
                .checked_sub(layout::column(ctx.text, hk.prop_start()))
        })
        .filter(|s| *s > 0)
        .unwrap_or_else(|| layout::indent_step(ctx.text, root));

    let mount_name_first = first_key_is_name(&mounts)
        .or_else(|| first_key_is_name(&volumes))
        .unwrap_or(false);
    let volume_name_first = first_key_is_name(&volumes)
        .or_else(|| first_key_is_name(&mounts))
        .unwrap_or(false);

    // The mount first: when both lists are created they may land at the same offset,
    // and the container's key must come before the next `spec` key.
    let mut out = vec![add_item(
        ctx,
        root,
        c.node,
        "volumeMounts",
        &mount_lines(m, &vol_name, mount_name_first),
    )?];
    if create {
        out.push(add_item(
            ctx,
            root,
            spec,
            "volumes",
            &volume_lines(m, &vol_name, volume_name_first, step),
        )?);
    }
    Ok(out)
}
