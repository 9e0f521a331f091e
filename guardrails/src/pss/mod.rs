//! Pod Security: the offline checker, [`harden`], and namespace labels.
//!
//! [`check`] evaluates a Pod, or any workload that carries a pod template, the
//! way the API server's Pod Security admission does for a namespace enforcing a
//! given level at a given policy version: each upstream check, by its upstream
//! ID, in the revision that applies at that version, with restricted checks
//! replacing the baseline checks they override.
//!
//! # Checks and versions
//!
//! | check ID | level | revisions (policy version) |
//! |---|---|---|
//! | `appArmorProfile` | baseline | 1.0 (annotations and, as upstream patched into 1.0, the `appArmorProfile` fields) |
//! | `capabilities_baseline` | baseline | 1.0 |
//! | `hostNamespaces` | baseline | 1.0 |
//! | `hostPathVolumes` | baseline | 1.0 |
//! | `hostPorts` | baseline | 1.0 |
//! | `hostProbesAndHostLifecycle` | baseline | 1.34 (new) |
//! | `privileged` | baseline | 1.0 |
//! | `procMount` | baseline | 1.0; 1.35 (user-namespace pods exempt) |
//! | `seLinuxOptions` | baseline | 1.0; 1.31 (`container_engine_t` allowed) |
//! | `seccompProfile_baseline` | baseline | 1.0 (alpha annotations); 1.19 (fields) |
//! | `sysctls` | baseline | 1.0; 1.27; 1.29; 1.32; 1.37 (safe list grows) |
//! | `windowsHostProcess` | baseline | 1.0 |
//! | `allowPrivilegeEscalation` | restricted | 1.8; 1.25 (Windows pods exempt) |
//! | `capabilities_restricted` | restricted | 1.22; 1.25 (Windows exempt); overrides `capabilities_baseline` |
//! | `procMount_restricted` | restricted | 1.35 (new); overrides `procMount` |
//! | `restrictedVolumes` | restricted | 1.0; overrides `hostPathVolumes` |
//! | `runAsNonRoot` | restricted | 1.0; 1.35 (user-namespace pods exempt) |
//! | `runAsUser` | restricted | 1.23 (new); 1.35 (user-namespace pods exempt) |
//! | `seccompProfile_restricted` | restricted | 1.19 (new); 1.25 (Windows exempt); overrides `seccompProfile_baseline` |
//!
//! Policy versions above the newest revision (v1.37), and `latest`, evaluate as
//! v1.37, as upstream's registry clamps them. "Windows pod" means
//! `spec.os.name: windows`; "user-namespace pod" means `spec.hostUsers: false`.
//!
//! # Deliberate differences from upstream
//!
//! Upstream runs on a decoded, defaulted Go `corev1.Pod` inside the API
//! server; offline there is only the document. Where the two cannot agree
//! exactly, the checker errs on the side of denying, and says so:
//!
//! - A field a check reads with the wrong JSON type is a
//!   [`CheckError::InvalidField`], not "unset" (the API server fails to
//!   decode such an object).
//! - An unknown key in a volume counts as a volume source, so restricted
//!   denies it as type `unknown`. The API server rejects unknown fields under
//!   strict field validation (kubectl's default) or drops them otherwise.
//! - A volume naming several sources (invalid API-wise) passes
//!   `restrictedVolumes` only if all of them are allowed; upstream allows it
//!   as soon as one is.
//! - The API server's own version is not modelled: one with a feature gate
//!   off (e.g. `ProcMountType`, off by default before 1.33) drops the gated
//!   field before admission, and one older than a field (e.g.
//!   `appArmorProfile` before 1.30) never sees it, so it may admit what is
//!   denied here.
//! - Messages, not verdicts, can differ for Pods with AppArmor settings: since
//!   1.30 the API server copies the beta annotation into the field (and back)
//!   before admission, so its message names both. (API servers 1.19–1.26
//!   also copied seccomp annotations into fields, which denied
//!   annotation-only `unconfined` pods at policy v1.19+; they are long out
//!   of support and not modelled.)
//! - [`PolicyVersion`] also accepts `1.N` without the `v`.
//!
//! # Why a generic value, not typed structs
//!
//! The checker walks a [`serde_json::Value`]. A typed `k8s_openapi` pod would
//! silently drop any field its Kubernetes version does not know (serde ignores
//! unknown fields), and which version that is depends on a feature the final
//! binary picks, not on this crate. A `fail` fixture could then pass because
//! the field that makes it fail vanished. On the value every field is seen;
//! every field a check reads is type-checked (a wrong type is a
//! [`CheckError::InvalidField`] naming its path, not "unset"), and an unknown
//! volume source is still a volume source (denied at restricted, as upstream
//! denies sources it does not know). [`check_typed`] accepts typed objects by
//! serialising them first.

mod checks;
mod harden;
mod labels;
mod view;

use std::fmt;
use std::str::FromStr;

use serde::Serialize;
use serde_json::{Map, Value};

pub use harden::{Change, HardenOptions, Hardened, Unfixable, harden, harden_pod_spec};
pub use labels::{PodSecurity, pod_security_labels, pod_security_namespace};

use checks::{CHECKS, CheckLevel, MAX_MINOR};
use view::json_type;

/// A Pod Security Standards level.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// No restrictions.
    Privileged,
    /// Prevents known privilege escalations.
    Baseline,
    /// Current pod hardening best practice.
    Restricted,
}

impl Level {
    /// The label value: `privileged`, `baseline` or `restricted`.
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Privileged => "privileged",
            Level::Baseline => "baseline",
            Level::Restricted => "restricted",
        }
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Level {
    type Err = ParsePolicyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "privileged" => Ok(Level::Privileged),
            "baseline" => Ok(Level::Baseline),
            "restricted" => Ok(Level::Restricted),
            other => Err(ParsePolicyError::Level(other.to_string())),
        }
    }
}

/// A Pod Security policy version: `v1.<minor>` or `latest`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PolicyVersion {
    /// `latest`: the newest policy the evaluating API server knows. Offline,
    /// that is the newest this crate knows ([`PolicyVersion::NEWEST_KNOWN`]);
    /// to model an older API server, check at its own `v1.<minor>` (an API
    /// server evaluates `latest`, and versions newer than it knows, as the
    /// newest policy it knows).
    Latest,
    /// `v1.<minor>`.
    V1(u32),
}

impl PolicyVersion {
    /// The newest policy version this crate implements (v1.37), the pinned
    /// default for generated namespace labels.
    pub const NEWEST_KNOWN: PolicyVersion = PolicyVersion::V1(MAX_MINOR);

    /// The minor version the checks evaluate at: `latest` and versions above
    /// the newest known revision resolve to it.
    pub fn effective_minor(self) -> u32 {
        match self {
            PolicyVersion::Latest => MAX_MINOR,
            PolicyVersion::V1(minor) => minor.min(MAX_MINOR),
        }
    }
}

impl fmt::Display for PolicyVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PolicyVersion::Latest => f.write_str("latest"),
            PolicyVersion::V1(minor) => write!(f, "v1.{minor}"),
        }
    }
}

impl FromStr for PolicyVersion {
    type Err = ParsePolicyError;

    /// Accepts `latest`, `v1.N` and `1.N` (upstream requires the `v`; the
    /// namespace label writer always emits it).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == "latest" {
            return Ok(PolicyVersion::Latest);
        }
        let err = || ParsePolicyError::Version(s.to_string());
        let rest = s.strip_prefix('v').unwrap_or(s);
        let minor = rest.strip_prefix("1.").ok_or_else(err)?;
        if minor.is_empty() || !minor.bytes().all(|b| b.is_ascii_digit()) || minor.len() > 4 {
            return Err(err());
        }
        minor.parse().map(PolicyVersion::V1).map_err(|_| err())
    }
}

impl Serialize for PolicyVersion {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for PolicyVersion {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A level or version string that could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParsePolicyError {
    /// Not `privileged`, `baseline` or `restricted`.
    #[error("invalid Pod Security level {0:?}: expected privileged, baseline or restricted")]
    Level(String),
    /// Not `latest` or `v1.<minor>`.
    #[error("invalid Pod Security version {0:?}: expected latest or v1.<minor>, e.g. v1.33")]
    Version(String),
}

/// An object the checker cannot evaluate.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CheckError {
    /// A field a check reads has the wrong JSON type; the API server would
    /// reject the object when decoding it.
    #[error("{path}: expected {expected}, found {found}")]
    InvalidField {
        /// Dotted path of the field, e.g. `spec.containers[0].securityContext.privileged`.
        path: String,
        /// The JSON type the field must have.
        expected: &'static str,
        /// The JSON type it has.
        found: &'static str,
    },
    /// A required field (the pod spec or template) is missing.
    #[error("{path}: required field is missing")]
    MissingField {
        /// Dotted path of the missing field.
        path: String,
    },
    /// The object is not a Pod and carries no pod template, so Pod Security
    /// does not apply to it.
    #[error("{api_version} {kind} carries no pod template; Pod Security does not apply to it")]
    NotAWorkload {
        /// The object's `apiVersion`.
        api_version: String,
        /// The object's `kind`.
        kind: String,
    },
    /// A [`harden`] option is out of range.
    #[error("invalid harden option {option}: {reason}")]
    InvalidOption {
        /// The option's field name in [`HardenOptions`].
        option: &'static str,
        /// Why it is rejected.
        reason: String,
    },
    /// A typed object could not be converted to a JSON value.
    #[error("cannot serialise the object for checking: {0}")]
    Serialize(String),
}

/// One failed check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Violation {
    /// The upstream check ID, e.g. `runAsNonRoot`.
    pub check: &'static str,
    /// Upstream's short reason, e.g. `runAsNonRoot != true`.
    pub reason: String,
    /// Upstream's detail, e.g. `pod or container "app" must set securityContext.runAsNonRoot=true`.
    pub detail: String,
}

impl Violation {
    /// `reason (detail)`, the way the API server prints it.
    pub fn message(&self) -> String {
        self.to_string()
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.detail.is_empty() {
            f.write_str(&self.reason)
        } else {
            write!(f, "{} ({})", self.reason, self.detail)
        }
    }
}

/// The IDs of the checks evaluated for `level` at `version`, in evaluation
/// order (empty for [`Level::Privileged`]).
pub fn checks_for(level: Level, version: PolicyVersion) -> Vec<&'static str> {
    active_checks(level, version.effective_minor())
        .into_iter()
        .map(|(id, _)| id)
        .collect()
}

fn active_checks(level: Level, minor: u32) -> Vec<(&'static str, checks::CheckFn)> {
    let mut out = Vec::new();
    for_each_active_check(level, minor, |id, f| out.push((id, f)));
    out
}

/// Calls `f` with each check in force for `level` at `minor`, in evaluation
/// order (no allocation: this runs once per checked pod).
fn for_each_active_check(
    level: Level,
    minor: u32,
    mut f: impl FnMut(&'static str, checks::CheckFn),
) {
    if level == Level::Privileged {
        return;
    }
    let overridden = |id: &str| {
        level == Level::Restricted
            && CHECKS
                .iter()
                .filter(|d| d.level == CheckLevel::Restricted)
                .filter_map(|d| d.at(minor))
                .any(|v| v.overrides.contains(&id))
    };
    for def in CHECKS {
        if level == Level::Baseline && def.level != CheckLevel::Baseline {
            continue;
        }
        if def.level == CheckLevel::Baseline && overridden(def.id) {
            continue;
        }
        if let Some(v) = def.at(minor) {
            f(def.id, v.check);
        }
    }
}

/// Where a pod lives inside an object.
struct PodLocation<'a> {
    metadata: Option<&'a Map<String, Value>>,
    spec: &'a Map<String, Value>,
    meta_path: &'static str,
    spec_path: &'static str,
}

fn api_group(api_version: &str) -> &str {
    match api_version.split_once('/') {
        Some((group, _)) => group,
        None => "",
    }
}

fn obj_field<'a>(
    map: &'a Map<String, Value>,
    key: &str,
    path: &str,
) -> Result<Option<&'a Map<String, Value>>, CheckError> {
    view::object(map, key, &view::FieldPath::root(path))
}

fn str_field<'a>(map: &'a Map<String, Value>, key: &'static str) -> Result<&'a str, CheckError> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(""),
        Some(Value::String(s)) => Ok(s),
        Some(other) => Err(CheckError::InvalidField {
            path: key.to_string(),
            expected: "string",
            found: json_type(other),
        }),
    }
}

/// The `kind`, `apiVersion` and `metadata.name` of an object (empty strings
/// when absent or not strings).
pub fn object_identity(object: &Value) -> (String, String, String) {
    let get = |v: Option<&Value>| v.and_then(Value::as_str).unwrap_or("").to_string();
    (
        get(object.get("kind")),
        get(object.get("apiVersion")),
        get(object.get("metadata").and_then(|m| m.get("name"))),
    )
}

/// Finds the pod (Pod) or pod template (workloads) of an object.
///
/// Returns `Ok(None)` for a ReplicationController without a template (valid
/// API-wise; upstream admits it without evaluation).
fn locate_pod(object: &Value) -> Result<Option<PodLocation<'_>>, CheckError> {
    let Value::Object(root) = object else {
        return Err(CheckError::InvalidField {
            path: "(document)".to_string(),
            expected: "object",
            found: json_type(object),
        });
    };
    let kind = str_field(root, "kind")?;
    let api_version = str_field(root, "apiVersion")?;
    let group = api_group(api_version);
    let not_a_workload = || CheckError::NotAWorkload {
        api_version: api_version.to_string(),
        kind: kind.to_string(),
    };
    let missing = |path: &str| CheckError::MissingField {
        path: path.to_string(),
    };
    match (group, kind) {
        ("", "Pod") => {
            let spec = obj_field(root, "spec", "")?.ok_or_else(|| missing("spec"))?;
            Ok(Some(PodLocation {
                metadata: obj_field(root, "metadata", "")?,
                spec,
                meta_path: "metadata",
                spec_path: "spec",
            }))
        }
        ("", "PodTemplate") => {
            let tmpl = obj_field(root, "template", "")?.ok_or_else(|| missing("template"))?;
            let spec =
                obj_field(tmpl, "spec", "template")?.ok_or_else(|| missing("template.spec"))?;
            Ok(Some(PodLocation {
                metadata: obj_field(tmpl, "metadata", "template")?,
                spec,
                meta_path: "template.metadata",
                spec_path: "template.spec",
            }))
        }
        ("", "ReplicationController") => {
            let spec = obj_field(root, "spec", "")?.ok_or_else(|| missing("spec"))?;
            let Some(tmpl) = obj_field(spec, "template", "spec")? else {
                return Ok(None);
            };
            let pod_spec = obj_field(tmpl, "spec", "spec.template")?
                .ok_or_else(|| missing("spec.template.spec"))?;
            Ok(Some(PodLocation {
                metadata: obj_field(tmpl, "metadata", "spec.template")?,
                spec: pod_spec,
                meta_path: "spec.template.metadata",
                spec_path: "spec.template.spec",
            }))
        }
        ("apps" | "extensions", "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet")
        | ("batch", "Job") => {
            if group == "extensions" && kind == "StatefulSet" {
                return Err(not_a_workload());
            }
            let spec = obj_field(root, "spec", "")?.ok_or_else(|| missing("spec"))?;
            let tmpl =
                obj_field(spec, "template", "spec")?.ok_or_else(|| missing("spec.template"))?;
            let pod_spec = obj_field(tmpl, "spec", "spec.template")?
                .ok_or_else(|| missing("spec.template.spec"))?;
            Ok(Some(PodLocation {
                metadata: obj_field(tmpl, "metadata", "spec.template")?,
                spec: pod_spec,
                meta_path: "spec.template.metadata",
                spec_path: "spec.template.spec",
            }))
        }
        ("batch", "CronJob") => {
            let spec = obj_field(root, "spec", "")?.ok_or_else(|| missing("spec"))?;
            let job = obj_field(spec, "jobTemplate", "spec")?
                .ok_or_else(|| missing("spec.jobTemplate"))?;
            let job_spec = obj_field(job, "spec", "spec.jobTemplate")?
                .ok_or_else(|| missing("spec.jobTemplate.spec"))?;
            let tmpl = obj_field(job_spec, "template", "spec.jobTemplate.spec")?
                .ok_or_else(|| missing("spec.jobTemplate.spec.template"))?;
            let pod_spec = obj_field(tmpl, "spec", "spec.jobTemplate.spec.template")?
                .ok_or_else(|| missing("spec.jobTemplate.spec.template.spec"))?;
            Ok(Some(PodLocation {
                metadata: obj_field(tmpl, "metadata", "spec.jobTemplate.spec.template")?,
                spec: pod_spec,
                meta_path: "spec.jobTemplate.spec.template.metadata",
                spec_path: "spec.jobTemplate.spec.template.spec",
            }))
        }
        _ => Err(not_a_workload()),
    }
}

/// Checks a Pod or workload (`Deployment`, `StatefulSet`, `DaemonSet`,
/// `ReplicaSet`, `ReplicationController`, `Job`, `CronJob`, `PodTemplate`)
/// against `level` at `version`; an empty result means the API server's Pod
/// Security admission would allow it.
///
/// Workloads are checked on their pod template (template metadata and spec),
/// as upstream does. Note what the API server does with the result: the
/// `enforce` mode rejects **Pods** only. A workload whose template violates
/// the enforced level is still created, with a warning (`warn` mode) and an
/// audit annotation (`audit` mode); it is the Pods its controller then
/// creates that are rejected. A non-empty result for a workload therefore
/// means "its pods will not start", not "the apply fails".
///
/// The object is evaluated as the API server sees it after defaulting
/// (Pod Security is a validating admission plugin): a volume without a
/// source is an `emptyDir`, and a Pod (not a template) with
/// `hostNetwork: true` gets `hostPort = containerPort` on its container
/// ports. Feature gates a cluster has turned off (which make the API server
/// drop fields such as `procMount` before admission) are not modelled.
///
/// # Errors
///
/// [`CheckError::NotAWorkload`] for kinds without a pod; [`CheckError::InvalidField`]
/// / [`CheckError::MissingField`] for malformed objects.
///
/// # Example
///
/// ```
/// use kubesafe_guardrails::pss::{Level, PolicyVersion, check};
///
/// let pod = serde_json::json!({
///     "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web"},
///     "spec": {"containers": [{"name": "app", "image": "nginx"}]}
/// });
/// assert!(check(&pod, Level::Baseline, PolicyVersion::V1(33))?.is_empty());
/// let v = check(&pod, Level::Restricted, PolicyVersion::V1(33))?;
/// let ids: Vec<_> = v.iter().map(|v| v.check).collect();
/// assert_eq!(ids, ["allowPrivilegeEscalation", "capabilities_restricted", "runAsNonRoot", "seccompProfile_restricted"]);
/// # Ok::<(), kubesafe_guardrails::pss::CheckError>(())
/// ```
pub fn check(
    object: &Value,
    level: Level,
    version: PolicyVersion,
) -> Result<Vec<Violation>, CheckError> {
    let Some(loc) = locate_pod(object)? else {
        return Ok(Vec::new());
    };
    let pod = view::pod_view(
        loc.metadata,
        loc.spec,
        loc.meta_path,
        loc.spec_path,
        loc.spec_path == "spec",
    )?;
    Ok(evaluate(&pod, level, version))
}

/// Checks a bare pod spec (and optional pod metadata, for the annotation-based
/// checks) as JSON values.
///
/// The spec is evaluated as a Pod's, with the Pod defaulting described in
/// [`check`] (a template's spec is not defaulted that way by the API server;
/// the difference only shows for `hostNetwork: true`, which baseline denies
/// anyway).
///
/// # Errors
///
/// [`CheckError::InvalidField`] when `spec` (or `metadata`) is not an object
/// or a field a check reads has the wrong type.
pub fn check_pod_spec<'a>(
    metadata: Option<&'a Value>,
    spec: &'a Value,
    level: Level,
    version: PolicyVersion,
) -> Result<Vec<Violation>, CheckError> {
    let as_map = |v: &'a Value, path: &str| -> Result<&'a Map<String, Value>, CheckError> {
        v.as_object().ok_or_else(|| CheckError::InvalidField {
            path: path.to_string(),
            expected: "object",
            found: json_type(v),
        })
    };
    let spec = as_map(spec, "spec")?;
    let meta = metadata.map(|m| as_map(m, "metadata")).transpose()?;
    let pod = view::pod_view(meta, spec, "metadata", "spec", true)?;
    Ok(evaluate(&pod, level, version))
}

/// [`check`] for typed objects (e.g. `k8s_openapi` `Pod` or `Deployment`),
/// serialised to JSON first.
///
/// # Errors
///
/// As [`check`], plus [`CheckError::Serialize`].
pub fn check_typed<T: Serialize>(
    object: &T,
    level: Level,
    version: PolicyVersion,
) -> Result<Vec<Violation>, CheckError> {
    let value = serde_json::to_value(object).map_err(|e| CheckError::Serialize(e.to_string()))?;
    check(&value, level, version)
}

fn evaluate(pod: &view::PodView<'_>, level: Level, version: PolicyVersion) -> Vec<Violation> {
    let mut out = Vec::new();
    for_each_active_check(level, version.effective_minor(), |id, f| {
        if let Some(fb) = f(pod) {
            out.push(Violation {
                check: id,
                reason: fb.reason,
                detail: fb.detail,
            });
        }
    });
    out
}

#[cfg(test)]
mod tests;
