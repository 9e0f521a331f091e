//! `harden`: see [`harden`](super::harden).

use serde::Serialize;
use serde_json::{Map, Value, json};

use super::checks::go_quote;
use super::{CheckError, Level, PolicyVersion, Violation, check, locate_pod};

/// Options for [`harden`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct HardenOptions {
    /// Policy version to satisfy (default [`PolicyVersion::NEWEST_KNOWN`]).
    pub version: PolicyVersion,
    /// Pod-level `runAsUser` set together with `runAsNonRoot: true` when the
    /// pod sets no user (default `Some(65532)`, the conventional "nonroot"
    /// UID of distroless images). `None` keeps the image's user: then an image
    /// whose `USER` is root or a name fails to start under `runAsNonRoot`.
    pub run_as_user: Option<i64>,
    /// Set `readOnlyRootFilesystem: true` on containers that leave it unset,
    /// mounting an `emptyDir` at each of [`writable_paths`](Self::writable_paths).
    pub read_only_root_filesystem: bool,
    /// Absolute paths that stay writable (default `["/tmp"]`).
    pub writable_paths: Vec<String>,
    /// Egress proxy URL to export as `HTTP_PROXY`/`HTTPS_PROXY` (and
    /// lowercase); `None` (default) adds no proxy environment.
    pub proxy_url: Option<String>,
    /// `NO_PROXY` entries exported with the proxy.
    pub no_proxy: Vec<String>,
}

impl Default for HardenOptions {
    fn default() -> Self {
        HardenOptions {
            version: PolicyVersion::NEWEST_KNOWN,
            run_as_user: Some(65532),
            read_only_root_filesystem: false,
            writable_paths: vec!["/tmp".to_string()],
            proxy_url: None,
            no_proxy: vec![
                "localhost".to_string(),
                "127.0.0.1".to_string(),
                ".svc".to_string(),
                ".cluster.local".to_string(),
            ],
        }
    }
}

impl HardenOptions {
    /// Defaults, satisfying `version`.
    pub fn for_version(version: PolicyVersion) -> Self {
        HardenOptions {
            version,
            ..HardenOptions::default()
        }
    }

    fn validate(&self) -> Result<(), CheckError> {
        if let Some(uid) = self.run_as_user
            && !(1..=i64::from(i32::MAX)).contains(&uid)
        {
            return Err(CheckError::InvalidOption {
                option: "run_as_user",
                reason: format!("{uid} is not a non-root UID (1..=2147483647)"),
            });
        }
        for p in &self.writable_paths {
            if !p.starts_with('/') || p.contains(':') {
                return Err(CheckError::InvalidOption {
                    option: "writable_paths",
                    reason: format!("{p:?} is not an absolute path without ':'"),
                });
            }
        }
        if let Some(url) = &self.proxy_url
            && (url.is_empty() || url.chars().any(char::is_whitespace))
        {
            return Err(CheckError::InvalidOption {
                option: "proxy_url",
                reason: format!("{url:?} is not a URL"),
            });
        }
        Ok(())
    }
}

/// One field harden set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Change {
    /// Dotted path of the field, e.g. `spec.template.spec.securityContext.runAsNonRoot`.
    pub path: String,
    /// The value it was set to, e.g. `true` or `["ALL"]` appended.
    pub description: String,
}

/// Something harden cannot fix without overriding an explicit choice.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Unfixable {
    /// The check that will keep failing (an upstream check ID), or
    /// `readOnlyRootFilesystem` for the opt-in extra.
    pub check: &'static str,
    /// What is wrong and what a human must decide.
    pub message: String,
}

/// The result of [`harden`].
#[derive(Debug, Clone, PartialEq)]
pub struct Hardened {
    /// The hardened object.
    pub object: Value,
    /// The fields set, in the order they were set.
    pub changes: Vec<Change>,
    /// What still violates the level (empty: the object now passes).
    pub unfixable: Vec<Unfixable>,
}

const CONTAINER_LISTS: [&str; 3] = ["initContainers", "containers", "ephemeralContainers"];

/// Makes a Pod or workload comply with `level` with the fewest changes and
/// lists what it cannot fix.
///
/// The rule: harden fills in what is **unset**; it never overrides an explicit
/// choice. `allowPrivilegeEscalation: true`, `runAsUser: 0`, a hostPath volume,
/// an added capability, `seccompProfile: Unconfined` are decisions someone made
/// for a reason (or a bug someone must look at), so they are reported as
/// [`Unfixable`] instead of being silently rewritten. Every baseline violation
/// is of that kind, so at the baseline level harden only reports.
///
/// What it sets (only where the enforced check fails):
///
/// | check | change |
/// |---|---|
/// | `allowPrivilegeEscalation` | `securityContext.allowPrivilegeEscalation: false` on each container that leaves it unset (not on privileged containers or ones adding `SYS_ADMIN`, where the API rejects it) |
/// | `capabilities_restricted` | `"ALL"` appended to each container's `securityContext.capabilities.drop` |
/// | `runAsNonRoot` | pod-level `runAsNonRoot: true`, and a `runAsUser` (default 65532, [`HardenOptions::run_as_user`]) when the pod sets none, so images whose `USER` is root or a name still start: on the pod when every container without its own `runAsUser` needs it, otherwise only on those containers (a pod-level UID would change the user of containers that already comply) |
/// | `seccompProfile_restricted` | pod-level `seccompProfile: {type: RuntimeDefault}` |
///
/// Opt-in extras ([`HardenOptions`]): `readOnlyRootFilesystem: true` with an
/// `emptyDir` mounted at each writable path, and proxy environment variables
/// (`HTTP_PROXY`, `HTTPS_PROXY`, `NO_PROXY` and their lowercase forms) for
/// workloads whose egress goes through the egress proxy.
///
/// Linux-only fields are never set on a Windows pod (`spec.os.name: windows`):
/// the API rejects them there.
///
/// The output is the input object with those fields added; nothing else
/// changes (keys are emitted in sorted order when serialised).
///
/// Idempotent: hardening the output again changes nothing.
///
/// # Errors
///
/// As [`check`] (malformed object, kind without a pod), and
/// [`CheckError::InvalidOption`] for bad options.
///
/// # Example
///
/// ```
/// use kubesafe_guardrails::pss::{HardenOptions, Level, check, harden};
///
/// let pod = serde_json::json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web"},
///     "spec": {"containers": [{"name": "app", "image": "nginx"}]}});
/// let opts = HardenOptions::default();
/// let out = harden(&pod, Level::Restricted, &opts)?;
/// assert!(out.unfixable.is_empty());
/// assert!(check(&out.object, Level::Restricted, opts.version)?.is_empty());
/// # Ok::<(), kubesafe_guardrails::pss::CheckError>(())
/// ```
pub fn harden(
    object: &Value,
    level: Level,
    options: &HardenOptions,
) -> Result<Hardened, CheckError> {
    options.validate()?;
    let violations = check(object, level, options.version)?;
    let Some(loc) = locate_pod(object)? else {
        return Ok(Hardened {
            object: object.clone(),
            changes: Vec::new(),
            unfixable: Vec::new(),
        });
    };
    let spec_path = loc.spec_path;
    let mut out = object.clone();
    let spec = spec_mut(&mut out, spec_path).ok_or_else(|| CheckError::MissingField {
        path: spec_path.to_string(),
    })?;
    let mut h = Hardener {
        spec_path,
        windows: spec
            .get("os")
            .and_then(|os| os.get("name"))
            .and_then(Value::as_str)
            == Some("windows"),
        minor: options.version.effective_minor(),
        changes: Vec::new(),
        unfixable: Vec::new(),
    };
    for v in &violations {
        h.fix(spec, v, options);
    }
    if h.windows {
        // Linux-only extras do not apply.
    } else if options.read_only_root_filesystem {
        h.read_only_root(spec, &options.writable_paths);
    }
    if let Some(url) = &options.proxy_url {
        h.proxy_env(spec, url, &options.no_proxy);
    }
    Ok(Hardened {
        object: out,
        changes: h.changes,
        unfixable: h.unfixable,
    })
}

/// [`harden`] for a typed `k8s_openapi` pod spec (no metadata: the
/// annotation-based AppArmor/seccomp checks see none).
///
/// Returns the hardened spec, the changes and the unfixable items.
///
/// # Errors
///
/// As [`harden`], plus [`CheckError::Serialize`] if the spec does not
/// round-trip through JSON.
pub fn harden_pod_spec(
    spec: &k8s_openapi::api::core::v1::PodSpec,
    level: Level,
    options: &HardenOptions,
) -> Result<
    (
        k8s_openapi::api::core::v1::PodSpec,
        Vec<Change>,
        Vec<Unfixable>,
    ),
    CheckError,
> {
    let spec_value =
        serde_json::to_value(spec).map_err(|e| CheckError::Serialize(e.to_string()))?;
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {}, "spec": spec_value});
    let h = harden(&pod, level, options)?;
    let spec_out = h.object.get("spec").cloned().unwrap_or(Value::Null);
    let typed =
        serde_json::from_value(spec_out).map_err(|e| CheckError::Serialize(e.to_string()))?;
    Ok((typed, h.changes, h.unfixable))
}

fn spec_mut<'a>(object: &'a mut Value, spec_path: &str) -> Option<&'a mut Map<String, Value>> {
    let mut cur = object;
    for key in spec_path.split('.') {
        cur = cur.get_mut(key)?;
    }
    cur.as_object_mut()
}

/// A mutable child object, created when absent or null. `None` only when the
/// field holds a non-object, which [`check`] has already rejected.
fn child_obj<'a>(map: &'a mut Map<String, Value>, key: &str) -> Option<&'a mut Map<String, Value>> {
    let slot = map
        .entry(key.to_string())
        .or_insert_with(|| Value::Object(Map::new()));
    if slot.is_null() {
        *slot = Value::Object(Map::new());
    }
    slot.as_object_mut()
}

/// `container "a"` / `containers "a", "b"`.
fn containers_phrase(names: &[String]) -> String {
    let quoted: Vec<String> = names.iter().map(|n| go_quote(n)).collect();
    format!(
        "{} {}",
        if names.len() == 1 {
            "container"
        } else {
            "containers"
        },
        quoted.join(", ")
    )
}

fn is_unset(map: &Map<String, Value>, key: &str) -> bool {
    matches!(map.get(key), None | Some(Value::Null))
}

fn container_name(c: &Map<String, Value>) -> &str {
    c.get("name").and_then(Value::as_str).unwrap_or("")
}

struct Hardener {
    spec_path: &'static str,
    windows: bool,
    minor: u32,
    changes: Vec<Change>,
    unfixable: Vec<Unfixable>,
}

impl Hardener {
    fn change(&mut self, path: String, description: impl Into<String>) {
        self.changes.push(Change {
            path,
            description: description.into(),
        });
    }

    fn unfixable(&mut self, check: &'static str, message: impl Into<String>) {
        self.unfixable.push(Unfixable {
            check,
            message: message.into(),
        });
    }

    fn fix(&mut self, spec: &mut Map<String, Value>, v: &Violation, options: &HardenOptions) {
        match v.check {
            "allowPrivilegeEscalation" => self.fix_privilege_escalation(spec, v),
            "capabilities_restricted" => self.fix_drop_all(spec, v),
            "runAsNonRoot" => self.fix_run_as_non_root(spec, v, options.run_as_user),
            "seccompProfile_restricted" => self.fix_seccomp(spec, v),
            // Every other check only fails on an explicit setting.
            _ => self.unfixable(v.check, v.to_string()),
        }
    }

    /// The Windows exemptions of the restricted checks start at v1.25; before
    /// that a Windows pod must set fields the API rejects on Windows.
    fn windows_before_exemption(&mut self, v: &Violation) -> bool {
        if self.windows && self.minor < 25 {
            self.unfixable(
                v.check,
                format!(
                    "{v}: a Windows pod cannot set these Linux-only fields; policy v1.25+ exempts Windows pods"
                ),
            );
            return true;
        }
        false
    }

    fn for_each_container(
        &mut self,
        spec: &mut Map<String, Value>,
        mut f: impl FnMut(&mut Self, &mut Map<String, Value>, String),
    ) {
        let spec_path = self.spec_path;
        for list in CONTAINER_LISTS {
            let Some(Value::Array(items)) = spec.get_mut(list) else {
                continue;
            };
            for (i, c) in items.iter_mut().enumerate() {
                if let Value::Object(c) = c {
                    f(self, c, format!("{spec_path}.{list}[{i}]"));
                }
            }
        }
    }

    fn fix_privilege_escalation(&mut self, spec: &mut Map<String, Value>, v: &Violation) {
        if self.windows_before_exemption(v) {
            return;
        }
        self.for_each_container(spec, |h, c, path| {
            let name = container_name(c).to_string();
            let sc = c.get("securityContext").and_then(Value::as_object);
            let ape = sc
                .and_then(|sc| sc.get("allowPrivilegeEscalation"))
                .and_then(Value::as_bool);
            match ape {
                Some(false) => {}
                Some(true) => h.unfixable(
                    "allowPrivilegeEscalation",
                    format!(
                        "{} sets securityContext.allowPrivilegeEscalation=true",
                        containers_phrase(&[name])
                    ),
                ),
                None => {
                    let privileged = sc
                        .and_then(|sc| sc.get("privileged"))
                        .and_then(Value::as_bool)
                        == Some(true);
                    let sys_admin = sc
                        .and_then(|sc| sc.get("capabilities"))
                        .and_then(|caps| caps.get("add"))
                        .and_then(Value::as_array)
                        .is_some_and(|add| {
                            add.iter()
                                .any(|c| matches!(c.as_str(), Some("SYS_ADMIN" | "CAP_SYS_ADMIN")))
                        });
                    if privileged || sys_admin {
                        h.unfixable(
                            "allowPrivilegeEscalation",
                            format!(
                                "{} is {}; the API rejects allowPrivilegeEscalation=false there",
                                containers_phrase(&[name]),
                                if privileged {
                                    "privileged"
                                } else {
                                    "adding SYS_ADMIN"
                                }
                            ),
                        );
                    } else if let Some(sc) = child_obj(c, "securityContext") {
                        sc.insert("allowPrivilegeEscalation".to_string(), Value::Bool(false));
                        h.change(
                            format!("{path}.securityContext.allowPrivilegeEscalation"),
                            "false",
                        );
                    }
                }
            }
        });
    }

    fn fix_drop_all(&mut self, spec: &mut Map<String, Value>, v: &Violation) {
        if self.windows_before_exemption(v) {
            return;
        }
        self.for_each_container(spec, |h, c, path| {
            let name = container_name(c).to_string();
            let Some(caps) =
                child_obj(c, "securityContext").and_then(|sc| child_obj(sc, "capabilities"))
            else {
                return;
            };
            let drops_all = caps
                .get("drop")
                .and_then(Value::as_array)
                .is_some_and(|d| d.iter().any(|x| x.as_str() == Some("ALL")));
            let added: Vec<String> = caps
                .get("add")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .filter(|c| *c != "NET_BIND_SERVICE")
                .map(str::to_string)
                .collect();
            if !drops_all {
                let drop = caps.entry("drop".to_string()).or_insert(Value::Null);
                match drop {
                    Value::Array(d) => d.push(Value::String("ALL".to_string())),
                    other => *other = json!(["ALL"]),
                }
                h.change(
                    format!("{path}.securityContext.capabilities.drop"),
                    "\"ALL\" appended",
                );
            }
            if !added.is_empty() {
                h.unfixable(
                    "capabilities_restricted",
                    format!(
                        "{} adds {}; the restricted level allows only NET_BIND_SERVICE",
                        containers_phrase(&[name]),
                        added.join(", ")
                    ),
                );
            }
        });
    }

    fn fix_run_as_non_root(
        &mut self,
        spec: &mut Map<String, Value>,
        v: &Violation,
        run_as_user: Option<i64>,
    ) {
        let spec_path = self.spec_path;
        let pod_sc = spec.get("securityContext").and_then(Value::as_object);
        let pod_setting = pod_sc
            .and_then(|sc| sc.get("runAsNonRoot"))
            .and_then(Value::as_bool);
        let pod_has_user = pod_sc.is_some_and(|sc| !is_unset(sc, "runAsUser"));
        let mut explicit_false = Vec::new();
        let mut inheriting = 0usize;
        // A pod-level runAsUser reaches every container without its own; it
        // may only go there if all of those are ones that need it.
        let mut user_only_where_needed = true;
        self.for_each_container(spec, |_, c, _| {
            let sc = c.get("securityContext");
            let own_user = sc
                .and_then(|sc| sc.get("runAsUser"))
                .is_some_and(|u| !u.is_null());
            let setting = sc
                .and_then(|sc| sc.get("runAsNonRoot"))
                .and_then(Value::as_bool);
            if setting.is_some() && !own_user {
                user_only_where_needed = false;
            }
            match setting {
                Some(false) => explicit_false.push(container_name(c).to_string()),
                Some(true) => {}
                None => inheriting += 1,
            }
        });
        if !explicit_false.is_empty() {
            self.unfixable(
                "runAsNonRoot",
                format!(
                    "{} set securityContext.runAsNonRoot=false",
                    containers_phrase(&explicit_false)
                ),
            );
        }
        match pod_setting {
            Some(false) => {
                self.unfixable(
                    "runAsNonRoot",
                    format!("{v}: the pod sets runAsNonRoot=false"),
                );
            }
            // Only containers that inherit the pod-level value need it.
            None if inheriting > 0 => {
                let windows = self.windows;
                let Some(sc) = child_obj(spec, "securityContext") else {
                    return;
                };
                sc.insert("runAsNonRoot".to_string(), Value::Bool(true));
                let uid = match run_as_user {
                    Some(uid) if !pod_has_user && !windows => Some(uid),
                    _ => None,
                };
                let pod_level_user = uid.filter(|_| user_only_where_needed);
                if let Some(uid) = pod_level_user {
                    sc.insert("runAsUser".to_string(), json!(uid));
                }
                self.change(format!("{spec_path}.securityContext.runAsNonRoot"), "true");
                if let Some(uid) = pod_level_user {
                    self.change(
                        format!("{spec_path}.securityContext.runAsUser"),
                        uid.to_string(),
                    );
                } else if let Some(uid) = uid {
                    // Only the containers that inherit runAsNonRoot and set
                    // no user of their own get the UID.
                    self.for_each_container(spec, |h, c, path| {
                        let sc = c.get("securityContext");
                        let inherits = sc
                            .and_then(|sc| sc.get("runAsNonRoot"))
                            .is_none_or(Value::is_null);
                        let own_user = sc
                            .and_then(|sc| sc.get("runAsUser"))
                            .is_some_and(|u| !u.is_null());
                        if inherits
                            && !own_user
                            && let Some(sc) = child_obj(c, "securityContext")
                        {
                            sc.insert("runAsUser".to_string(), json!(uid));
                            h.change(format!("{path}.securityContext.runAsUser"), uid.to_string());
                        }
                    });
                }
            }
            _ => {}
        }
    }

    fn fix_seccomp(&mut self, spec: &mut Map<String, Value>, v: &Violation) {
        if self.windows_before_exemption(v) {
            return;
        }
        let spec_path = self.spec_path;
        let valid = |p: &Value| {
            matches!(
                p.get("type").and_then(Value::as_str),
                Some("RuntimeDefault" | "Localhost")
            )
        };
        let pod_profile = spec
            .get("securityContext")
            .and_then(|sc| sc.get("seccompProfile"))
            .filter(|p| !p.is_null())
            .map(valid);
        let mut explicit_bad = Vec::new();
        let mut inheriting = 0usize;
        self.for_each_container(spec, |_, c, _| {
            match c
                .get("securityContext")
                .and_then(|sc| sc.get("seccompProfile"))
                .filter(|p| !p.is_null())
            {
                Some(p) if !valid(p) => explicit_bad.push(container_name(c).to_string()),
                Some(_) => {}
                None => inheriting += 1,
            }
        });
        if !explicit_bad.is_empty() {
            self.unfixable(
                "seccompProfile_restricted",
                format!(
                    "{} set a seccompProfile type other than RuntimeDefault or Localhost",
                    containers_phrase(&explicit_bad)
                ),
            );
        }
        match pod_profile {
            Some(false) => self.unfixable(
                "seccompProfile_restricted",
                format!(
                    "{v}: the pod sets a seccompProfile type other than RuntimeDefault or Localhost"
                ),
            ),
            None if inheriting > 0 => {
                if let Some(sc) = child_obj(spec, "securityContext") {
                    sc.insert(
                        "seccompProfile".to_string(),
                        json!({"type": "RuntimeDefault"}),
                    );
                    self.change(
                        format!("{spec_path}.securityContext.seccompProfile"),
                        "{type: RuntimeDefault}",
                    );
                }
            }
            _ => {}
        }
    }

    fn read_only_root(&mut self, spec: &mut Map<String, Value>, writable_paths: &[String]) {
        let spec_path = self.spec_path;
        let volume_names: Vec<(String, String)> = writable_paths
            .iter()
            .map(|p| (p.clone(), volume_name_for(p)))
            .collect();
        let mut needed: Vec<(String, String)> = Vec::new();
        // Containers only: ephemeral (debug) containers are left alone.
        for list in ["initContainers", "containers"] {
            let Some(Value::Array(items)) = spec.get_mut(list) else {
                continue;
            };
            for (i, c) in items.iter_mut().enumerate() {
                let Value::Object(c) = c else { continue };
                let Some(sc) = child_obj(c, "securityContext") else {
                    continue;
                };
                if !is_unset(sc, "readOnlyRootFilesystem") {
                    continue;
                }
                sc.insert("readOnlyRootFilesystem".to_string(), Value::Bool(true));
                let path = format!("{spec_path}.{list}[{i}]");
                self.changes.push(Change {
                    path: format!("{path}.securityContext.readOnlyRootFilesystem"),
                    description: "true".to_string(),
                });
                let mounts = c.entry("volumeMounts".to_string()).or_insert(Value::Null);
                if !mounts.is_array() {
                    *mounts = Value::Array(Vec::new());
                }
                if let Value::Array(mounts) = mounts {
                    for (mount_path, vol) in &volume_names {
                        let mounted = mounts.iter().any(|m| {
                            m.get("mountPath").and_then(Value::as_str) == Some(mount_path.as_str())
                        });
                        if !mounted {
                            mounts.push(json!({"name": vol, "mountPath": mount_path}));
                            self.changes.push(Change {
                                path: format!("{path}.volumeMounts"),
                                description: format!("emptyDir {vol:?} mounted at {mount_path}"),
                            });
                            if !needed.iter().any(|(_, v)| v == vol) {
                                needed.push((mount_path.clone(), vol.clone()));
                            }
                        }
                    }
                }
            }
        }
        if needed.is_empty() {
            return;
        }
        let volumes = spec.entry("volumes".to_string()).or_insert(Value::Null);
        if !volumes.is_array() {
            *volumes = Value::Array(Vec::new());
        }
        let Value::Array(volumes) = volumes else {
            return;
        };
        // In writable-path order, whatever container needed them first.
        let needed: Vec<(String, String)> = volume_names
            .into_iter()
            .filter(|(_, v)| needed.iter().any(|(_, n)| n == v))
            .collect();
        for (mount_path, vol) in needed {
            match volumes
                .iter()
                .find(|v| v.get("name").and_then(Value::as_str) == Some(vol.as_str()))
            {
                Some(existing) if existing.get("emptyDir").is_some_and(|e| !e.is_null()) => {}
                Some(_) => self.unfixable.push(Unfixable {
                    check: "readOnlyRootFilesystem",
                    message: format!(
                        "volume {vol:?} (for writable path {mount_path}) exists and is not an emptyDir"
                    ),
                }),
                None => {
                    volumes.push(json!({"name": vol, "emptyDir": {}}));
                    self.changes.push(Change {
                        path: format!("{spec_path}.volumes"),
                        description: format!("emptyDir volume {vol:?} added"),
                    });
                }
            }
        }
    }

    fn proxy_env(&mut self, spec: &mut Map<String, Value>, url: &str, no_proxy: &[String]) {
        let no_proxy = no_proxy.join(",");
        let vars = [
            ("HTTP_PROXY", url),
            ("HTTPS_PROXY", url),
            ("NO_PROXY", no_proxy.as_str()),
            ("http_proxy", url),
            ("https_proxy", url),
            ("no_proxy", no_proxy.as_str()),
        ];
        let spec_path = self.spec_path;
        for list in ["initContainers", "containers"] {
            let Some(Value::Array(items)) = spec.get_mut(list) else {
                continue;
            };
            for (i, c) in items.iter_mut().enumerate() {
                let Value::Object(c) = c else { continue };
                let env = c.entry("env".to_string()).or_insert(Value::Null);
                if !env.is_array() {
                    *env = Value::Array(Vec::new());
                }
                let Value::Array(env) = env else { continue };
                for (name, value) in vars {
                    let defined = env
                        .iter()
                        .any(|e| e.get("name").and_then(Value::as_str) == Some(name));
                    if !defined {
                        env.push(json!({"name": name, "value": value}));
                        self.changes.push(Change {
                            path: format!("{spec_path}.{list}[{i}].env"),
                            description: format!("{name}={value}"),
                        });
                    }
                }
            }
        }
    }
}

/// `kubesafe-tmp` for `/tmp`, `kubesafe-var-cache-nginx` for `/var/cache/nginx`.
fn volume_name_for(path: &str) -> String {
    let mut name = String::from("kubesafe");
    for c in path.chars() {
        let c = c.to_ascii_lowercase();
        if c.is_ascii_alphanumeric() {
            name.push(c);
        } else if !name.ends_with('-') {
            name.push('-');
        }
    }
    let mut name = name.trim_end_matches('-').to_string();
    if name == "kubesafe" {
        name.push_str("-root");
    }
    if name.len() > 63 {
        // Keep it unique-ish and valid: prefix + length-limited tail.
        let tail: String = name
            .chars()
            .rev()
            .take(50)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        name = format!("kubesafe-{}", tail.trim_start_matches('-'));
        name.truncate(63);
        name = name.trim_end_matches('-').to_string();
    }
    name
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volume_names_are_dns_labels() {
        assert_eq!(volume_name_for("/tmp"), "kubesafe-tmp");
        assert_eq!(
            volume_name_for("/var/cache/nginx"),
            "kubesafe-var-cache-nginx"
        );
        assert_eq!(volume_name_for("/"), "kubesafe-root");
        let long = format!("/{}", "a".repeat(100));
        let n = volume_name_for(&long);
        assert!(n.len() <= 63 && n.starts_with("kubesafe-"), "{n}");
    }
}
