//! A strict, read-only view of the parts of a pod that Pod Security inspects.
//!
//! Upstream Pod Security admission runs on a decoded Go `corev1.Pod`. We walk a
//! generic [`serde_json::Value`] instead (see the crate docs for why) and
//! convert exactly the fields the checks read into this view. Every field we
//! read is type-checked: a value of the wrong JSON type is an error naming its
//! path, never silently treated as "unset" (the API server would reject such an
//! object at decoding, so admitting it offline would be wrong). `null` is read
//! as "unset", like Go's JSON decoder does for pointers, slices and maps.
//! Fields the checks do not read are ignored whatever their content.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::CheckError;

/// Pod metadata and spec as the checks see them.
#[derive(Debug, Default)]
pub(crate) struct PodView<'a> {
    /// `metadata.annotations`.
    pub(crate) annotations: BTreeMap<&'a str, &'a str>,
    pub(crate) host_network: bool,
    pub(crate) host_pid: bool,
    pub(crate) host_ipc: bool,
    pub(crate) host_users: Option<bool>,
    /// `spec.os.name`.
    pub(crate) os_name: Option<&'a str>,
    pub(crate) security_context: Option<PodSecurityContext<'a>>,
    /// Init containers, then containers, then ephemeral containers: the order
    /// of upstream's `visitContainers`.
    pub(crate) containers: Vec<ContainerView<'a>>,
    pub(crate) volumes: Vec<VolumeView<'a>>,
}

impl PodView<'_> {
    /// `spec.os.name == "windows"`, the test upstream's v1.25+ restricted
    /// checks use to exempt Windows pods.
    pub(crate) fn is_windows(&self) -> bool {
        self.os_name == Some("windows")
    }

    /// `spec.hostUsers == false`: the pod runs in its own user namespace.
    pub(crate) fn in_user_namespace(&self) -> bool {
        self.host_users == Some(false)
    }
}

/// `spec.securityContext`.
#[derive(Debug, Default)]
pub(crate) struct PodSecurityContext<'a> {
    pub(crate) run_as_non_root: Option<bool>,
    pub(crate) run_as_user: Option<i64>,
    /// `seccompProfile.type`; `Some("")` when the profile is set without a type.
    pub(crate) seccomp_type: Option<&'a str>,
    /// `appArmorProfile.type`; `Some("")` when the profile is set without a type.
    pub(crate) apparmor_type: Option<&'a str>,
    pub(crate) selinux: Option<SeLinuxOptions<'a>>,
    /// `sysctls[*].name`.
    pub(crate) sysctls: Vec<&'a str>,
    /// `windowsOptions.hostProcess`.
    pub(crate) host_process: Option<bool>,
}

/// `seLinuxOptions` (unset strings read as empty, like Go).
#[derive(Debug, Default)]
pub(crate) struct SeLinuxOptions<'a> {
    pub(crate) type_: &'a str,
    pub(crate) user: &'a str,
    pub(crate) role: &'a str,
}

/// One container (init, regular or ephemeral).
#[derive(Debug, Default)]
pub(crate) struct ContainerView<'a> {
    pub(crate) name: &'a str,
    pub(crate) security_context: Option<ContainerSecurityContext<'a>>,
    /// `ports[*].hostPort`, including zeros (after the API server's
    /// host-network defaulting, see [`pod_view`]).
    pub(crate) host_ports: Vec<i64>,
    /// Non-empty `host` of the probes' and lifecycle handlers' `httpGet` and
    /// `tcpSocket`, in upstream's visiting order.
    pub(crate) probe_hosts: Vec<&'a str>,
}

/// A container's `securityContext`.
#[derive(Debug, Default)]
pub(crate) struct ContainerSecurityContext<'a> {
    pub(crate) privileged: Option<bool>,
    pub(crate) allow_privilege_escalation: Option<bool>,
    pub(crate) run_as_non_root: Option<bool>,
    pub(crate) run_as_user: Option<i64>,
    pub(crate) capabilities: Option<Capabilities<'a>>,
    pub(crate) proc_mount: Option<&'a str>,
    pub(crate) seccomp_type: Option<&'a str>,
    pub(crate) apparmor_type: Option<&'a str>,
    pub(crate) selinux: Option<SeLinuxOptions<'a>>,
    pub(crate) host_process: Option<bool>,
}

/// `securityContext.capabilities`.
#[derive(Debug, Default)]
pub(crate) struct Capabilities<'a> {
    pub(crate) add: Vec<&'a str>,
    pub(crate) drop: Vec<&'a str>,
}

/// One entry of `spec.volumes`.
#[derive(Debug, Default)]
pub(crate) struct VolumeView<'a> {
    pub(crate) name: &'a str,
    /// Every non-null key other than `name`: the volume source(s). A volume
    /// without any reads as `emptyDir`, as the API server defaults it.
    pub(crate) sources: Vec<&'a str>,
}

pub(crate) fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// A field path built on the stack and rendered only for an error message
/// (building strings for every field visited would dominate the checker's
/// cost).
#[derive(Clone, Copy)]
pub(crate) struct FieldPath<'p> {
    parent: Option<&'p FieldPath<'p>>,
    seg: Seg<'p>,
}

#[derive(Clone, Copy)]
enum Seg<'p> {
    /// A dotted prefix such as `spec.template.spec`, or `""` for the document.
    Root(&'p str),
    Key(&'p str),
    Index(usize),
}

impl<'p> FieldPath<'p> {
    pub(crate) fn root(prefix: &'p str) -> Self {
        FieldPath {
            parent: None,
            seg: Seg::Root(prefix),
        }
    }

    fn key<'q>(&'q self, key: &'q str) -> FieldPath<'q> {
        FieldPath {
            parent: Some(self),
            seg: Seg::Key(key),
        }
    }

    fn index(&self, i: usize) -> FieldPath<'_> {
        FieldPath {
            parent: Some(self),
            seg: Seg::Index(i),
        }
    }

    pub(crate) fn render(&self) -> String {
        let mut segs = Vec::new();
        let mut cur = Some(self);
        while let Some(p) = cur {
            segs.push(p.seg);
            cur = p.parent;
        }
        let mut out = String::new();
        for seg in segs.into_iter().rev() {
            match seg {
                Seg::Root(r) => out.push_str(r),
                Seg::Key(k) => {
                    if !out.is_empty() {
                        out.push('.');
                    }
                    out.push_str(k);
                }
                Seg::Index(i) => {
                    out.push('[');
                    out.push_str(&i.to_string());
                    out.push(']');
                }
            }
        }
        out
    }
}

fn invalid(path: &FieldPath<'_>, expected: &'static str, found: &Value) -> CheckError {
    CheckError::InvalidField {
        path: path.render(),
        expected,
        found: json_type(found),
    }
}

/// The non-null value under `key`, if any.
fn field<'a>(map: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    match map.get(key) {
        None | Some(Value::Null) => None,
        Some(v) => Some(v),
    }
}

pub(crate) fn object<'a>(
    map: &'a Map<String, Value>,
    key: &str,
    path: &FieldPath<'_>,
) -> Result<Option<&'a Map<String, Value>>, CheckError> {
    match field(map, key) {
        None => Ok(None),
        Some(Value::Object(m)) => Ok(Some(m)),
        Some(other) => Err(invalid(&path.key(key), "object", other)),
    }
}

fn array<'a>(
    map: &'a Map<String, Value>,
    key: &str,
    path: &FieldPath<'_>,
) -> Result<&'a [Value], CheckError> {
    match field(map, key) {
        None => Ok(&[]),
        Some(Value::Array(a)) => Ok(a.as_slice()),
        Some(other) => Err(invalid(&path.key(key), "array", other)),
    }
}

fn boolean(
    map: &Map<String, Value>,
    key: &str,
    path: &FieldPath<'_>,
) -> Result<Option<bool>, CheckError> {
    match field(map, key) {
        None => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(other) => Err(invalid(&path.key(key), "boolean", other)),
    }
}

fn integer(
    map: &Map<String, Value>,
    key: &str,
    path: &FieldPath<'_>,
) -> Result<Option<i64>, CheckError> {
    match field(map, key) {
        None => Ok(None),
        Some(v @ Value::Number(n)) => n
            .as_i64()
            .map(Some)
            .ok_or_else(|| invalid(&path.key(key), "integer", v)),
        Some(other) => Err(invalid(&path.key(key), "integer", other)),
    }
}

fn string<'a>(
    map: &'a Map<String, Value>,
    key: &str,
    path: &FieldPath<'_>,
) -> Result<Option<&'a str>, CheckError> {
    match field(map, key) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.as_str())),
        Some(other) => Err(invalid(&path.key(key), "string", other)),
    }
}

fn element<'a>(v: &'a Value, path: &FieldPath<'_>) -> Result<&'a Map<String, Value>, CheckError> {
    match v {
        Value::Object(m) => Ok(m),
        other => Err(invalid(path, "object", other)),
    }
}

fn string_list<'a>(
    map: &'a Map<String, Value>,
    key: &str,
    path: &FieldPath<'_>,
) -> Result<Vec<&'a str>, CheckError> {
    let list_path = path.key(key);
    array(map, key, path)?
        .iter()
        .enumerate()
        .map(|(i, v)| match v {
            Value::String(s) => Ok(s.as_str()),
            other => Err(invalid(&list_path.index(i), "string", other)),
        })
        .collect()
}

/// A `*Profile` object's `type` (`Some("")` when the object has no type).
fn profile_type<'a>(
    map: &'a Map<String, Value>,
    key: &str,
    path: &FieldPath<'_>,
) -> Result<Option<&'a str>, CheckError> {
    let Some(profile) = object(map, key, path)? else {
        return Ok(None);
    };
    Ok(Some(string(profile, "type", &path.key(key))?.unwrap_or("")))
}

fn selinux<'a>(
    map: &'a Map<String, Value>,
    path: &FieldPath<'_>,
) -> Result<Option<SeLinuxOptions<'a>>, CheckError> {
    let Some(opts) = object(map, "seLinuxOptions", path)? else {
        return Ok(None);
    };
    let p = path.key("seLinuxOptions");
    Ok(Some(SeLinuxOptions {
        type_: string(opts, "type", &p)?.unwrap_or(""),
        user: string(opts, "user", &p)?.unwrap_or(""),
        role: string(opts, "role", &p)?.unwrap_or(""),
    }))
}

fn host_process(
    map: &Map<String, Value>,
    path: &FieldPath<'_>,
) -> Result<Option<bool>, CheckError> {
    match object(map, "windowsOptions", path)? {
        None => Ok(None),
        Some(w) => boolean(w, "hostProcess", &path.key("windowsOptions")),
    }
}

fn pod_security_context<'a>(
    map: &'a Map<String, Value>,
    path: &FieldPath<'_>,
) -> Result<PodSecurityContext<'a>, CheckError> {
    let sysctl_path = path.key("sysctls");
    let sysctls = array(map, "sysctls", path)?
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let p = sysctl_path.index(i);
            let entry = element(v, &p)?;
            Ok(string(entry, "name", &p)?.unwrap_or(""))
        })
        .collect::<Result<Vec<_>, CheckError>>()?;
    Ok(PodSecurityContext {
        run_as_non_root: boolean(map, "runAsNonRoot", path)?,
        run_as_user: integer(map, "runAsUser", path)?,
        seccomp_type: profile_type(map, "seccompProfile", path)?,
        apparmor_type: profile_type(map, "appArmorProfile", path)?,
        selinux: selinux(map, path)?,
        sysctls,
        host_process: host_process(map, path)?,
    })
}

fn container_security_context<'a>(
    map: &'a Map<String, Value>,
    path: &FieldPath<'_>,
) -> Result<ContainerSecurityContext<'a>, CheckError> {
    let capabilities = match object(map, "capabilities", path)? {
        None => None,
        Some(caps) => {
            let p = path.key("capabilities");
            Some(Capabilities {
                add: string_list(caps, "add", &p)?,
                drop: string_list(caps, "drop", &p)?,
            })
        }
    };
    Ok(ContainerSecurityContext {
        privileged: boolean(map, "privileged", path)?,
        allow_privilege_escalation: boolean(map, "allowPrivilegeEscalation", path)?,
        run_as_non_root: boolean(map, "runAsNonRoot", path)?,
        run_as_user: integer(map, "runAsUser", path)?,
        capabilities,
        proc_mount: string(map, "procMount", path)?,
        seccomp_type: profile_type(map, "seccompProfile", path)?,
        apparmor_type: profile_type(map, "appArmorProfile", path)?,
        selinux: selinux(map, path)?,
        host_process: host_process(map, path)?,
    })
}

/// Non-empty `host` of `httpGet` / `tcpSocket` in a probe or lifecycle handler.
fn handler_hosts<'a>(
    handler: &'a Map<String, Value>,
    path: &FieldPath<'_>,
    out: &mut Vec<&'a str>,
) -> Result<(), CheckError> {
    for action in ["httpGet", "tcpSocket"] {
        if let Some(a) = object(handler, action, path)?
            && let Some(host) = string(a, "host", &path.key(action))?
            && !host.is_empty()
        {
            out.push(host);
        }
    }
    Ok(())
}

fn container<'a>(
    map: &'a Map<String, Value>,
    path: &FieldPath<'_>,
    host_network_ports: bool,
) -> Result<ContainerView<'a>, CheckError> {
    let security_context = match object(map, "securityContext", path)? {
        None => None,
        Some(sc) => Some(container_security_context(
            sc,
            &path.key("securityContext"),
        )?),
    };
    let ports_path = path.key("ports");
    let host_ports = array(map, "ports", path)?
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let p = ports_path.index(i);
            let port = element(v, &p)?;
            let host_port = integer(port, "hostPort", &p)?.unwrap_or(0);
            if host_port == 0 && host_network_ports {
                return Ok(integer(port, "containerPort", &p)?.unwrap_or(0));
            }
            Ok(host_port)
        })
        .collect::<Result<Vec<_>, CheckError>>()?;
    let mut probe_hosts = Vec::new();
    for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
        if let Some(p) = object(map, probe, path)? {
            handler_hosts(p, &path.key(probe), &mut probe_hosts)?;
        }
    }
    if let Some(lifecycle) = object(map, "lifecycle", path)? {
        let lp = path.key("lifecycle");
        for hook in ["postStart", "preStop"] {
            if let Some(h) = object(lifecycle, hook, &lp)? {
                handler_hosts(h, &lp.key(hook), &mut probe_hosts)?;
            }
        }
    }
    Ok(ContainerView {
        name: string(map, "name", path)?.unwrap_or(""),
        security_context,
        host_ports,
        probe_hosts,
    })
}

/// Builds the view of a pod from its `metadata` and `spec` objects.
///
/// `meta_path` and `spec_path` are the paths used in error messages (for a
/// Deployment, `spec.template.metadata` and `spec.template.spec`).
///
/// Pod Security admission runs after the API server has defaulted the object,
/// so the view applies the two defaults that change what the checks see:
/// a volume without a source becomes an `emptyDir` (`SetDefaults_Volume`), and
/// for a Pod (`is_pod`) with `hostNetwork: true` each init and regular
/// container port without a `hostPort` gets `hostPort = containerPort`
/// (`defaultHostNetworkPorts`; since Kubernetes 1.28 no longer applied to pod
/// templates in workloads).
pub(crate) fn pod_view<'a>(
    metadata: Option<&'a Map<String, Value>>,
    spec: &'a Map<String, Value>,
    meta_path: &str,
    spec_path: &str,
    is_pod: bool,
) -> Result<PodView<'a>, CheckError> {
    let meta_root = FieldPath::root(meta_path);
    let spec_root = FieldPath::root(spec_path);
    let host_network = boolean(spec, "hostNetwork", &spec_root)?.unwrap_or(false);
    let mut annotations = BTreeMap::new();
    if let Some(meta) = metadata
        && let Some(ann) = object(meta, "annotations", &meta_root)?
    {
        let ann_path = meta_root.key("annotations");
        for (k, v) in ann {
            match v {
                Value::String(s) => {
                    annotations.insert(k.as_str(), s.as_str());
                }
                other => return Err(invalid(&ann_path.key(k), "string", other)),
            }
        }
    }
    let security_context = match object(spec, "securityContext", &spec_root)? {
        None => None,
        Some(sc) => Some(pod_security_context(sc, &spec_root.key("securityContext"))?),
    };
    let os_name = match object(spec, "os", &spec_root)? {
        None => None,
        Some(os) => string(os, "name", &spec_root.key("os"))?,
    };
    let mut containers = Vec::new();
    for key in ["initContainers", "containers", "ephemeralContainers"] {
        let list_path = spec_root.key(key);
        for (i, c) in array(spec, key, &spec_root)?.iter().enumerate() {
            let p = list_path.index(i);
            let default_ports = is_pod && host_network && key != "ephemeralContainers";
            containers.push(container(element(c, &p)?, &p, default_ports)?);
        }
    }
    let vol_path = spec_root.key("volumes");
    let volumes = array(spec, "volumes", &spec_root)?
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let p = vol_path.index(i);
            let m = element(v, &p)?;
            let mut sources: Vec<&str> = m
                .iter()
                .filter(|(k, v)| k.as_str() != "name" && !v.is_null())
                .map(|(k, _)| k.as_str())
                .collect();
            if sources.is_empty() {
                sources.push("emptyDir");
            }
            Ok(VolumeView {
                name: string(m, "name", &p)?.unwrap_or(""),
                sources,
            })
        })
        .collect::<Result<Vec<_>, CheckError>>()?;
    Ok(PodView {
        annotations,
        host_network,
        host_pid: boolean(spec, "hostPID", &spec_root)?.unwrap_or(false),
        host_ipc: boolean(spec, "hostIPC", &spec_root)?.unwrap_or(false),
        host_users: boolean(spec, "hostUsers", &spec_root)?,
        os_name,
        security_context,
        containers,
        volumes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn view_err(spec: Value) -> CheckError {
        let Value::Object(m) = spec else {
            panic!("test spec must be an object")
        };
        pod_view(None, &m, "metadata", "spec", true).expect_err("must be rejected")
    }

    #[test]
    fn wrong_types_are_errors_naming_the_path() {
        let e = view_err(
            json!({"containers": [{"name": "a", "securityContext": {"privileged": "true"}}]}),
        );
        assert_eq!(
            e.to_string(),
            "spec.containers[0].securityContext.privileged: expected boolean, found string"
        );
        let e = view_err(json!({"hostNetwork": 1}));
        assert_eq!(
            e.to_string(),
            "spec.hostNetwork: expected boolean, found number"
        );
        let e = view_err(json!({"containers": [{"ports": [{"hostPort": 80.5}]}]}));
        assert_eq!(
            e.to_string(),
            "spec.containers[0].ports[0].hostPort: expected integer, found number"
        );
        let e = view_err(json!({"volumes": "x"}));
        assert_eq!(e.to_string(), "spec.volumes: expected array, found string");
        let e = view_err(json!({"securityContext": {"sysctls": [{"name": 3}]}}));
        assert_eq!(
            e.to_string(),
            "spec.securityContext.sysctls[0].name: expected string, found number"
        );
    }

    #[test]
    fn null_reads_as_unset() {
        let spec = json!({"hostNetwork": null, "securityContext": null,
            "containers": [{"name": "a", "securityContext": {"capabilities": null}}],
            "volumes": [{"name": "v", "hostPath": null, "emptyDir": {}}]});
        let Value::Object(m) = spec else {
            unreachable!()
        };
        let v = pod_view(None, &m, "metadata", "spec", true).expect("valid");
        assert!(!v.host_network);
        assert!(v.security_context.is_none());
        assert_eq!(v.volumes[0].sources, vec!["emptyDir"]);
    }

    #[test]
    fn containers_are_visited_init_regular_ephemeral() {
        let spec = json!({"containers": [{"name": "c"}], "initContainers": [{"name": "i"}],
            "ephemeralContainers": [{"name": "e"}]});
        let Value::Object(m) = spec else {
            unreachable!()
        };
        let v = pod_view(None, &m, "metadata", "spec", true).expect("valid");
        let names: Vec<_> = v.containers.iter().map(|c| c.name).collect();
        assert_eq!(names, ["i", "c", "e"]);
    }
}
