//! Pod Security namespace labels (`pod-security.kubernetes.io/*`).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::{Deserialize, Serialize};

use super::{Level, PolicyVersion};

fn default_version() -> PolicyVersion {
    PolicyVersion::NEWEST_KNOWN
}

/// The Pod Security admission settings of a namespace.
///
/// `audit` and `warn` default to the `enforce` level; `version` defaults to a
/// pinned [`PolicyVersion::NEWEST_KNOWN`] (never `latest`: a pinned version
/// keeps a cluster upgrade from tightening the policy under running
/// workloads; raise it deliberately after checking your workloads with
/// [`check`](super::check) at the new version).
///
/// In YAML: `{enforce: restricted, warn: restricted, audit: restricted, version: v1.33}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[non_exhaustive]
pub struct PodSecurity {
    /// Level the API server enforces (rejects violating pods).
    pub enforce: Level,
    /// Level recorded in the audit log; defaults to `enforce`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audit: Option<Level>,
    /// Level returned as a warning to the client; defaults to `enforce`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warn: Option<Level>,
    /// Policy version for all three modes.
    #[serde(default = "default_version")]
    pub version: PolicyVersion,
}

impl PodSecurity {
    /// Enforce, audit and warn `level` at the pinned default version.
    pub fn new(level: Level) -> Self {
        PodSecurity {
            enforce: level,
            audit: None,
            warn: None,
            version: default_version(),
        }
    }

    /// Sets the policy version.
    #[must_use]
    pub fn with_version(mut self, version: PolicyVersion) -> Self {
        self.version = version;
        self
    }

    /// Sets the audit and warn levels (e.g. enforce baseline, warn restricted).
    #[must_use]
    pub fn with_audit_warn(mut self, audit: Level, warn: Level) -> Self {
        self.audit = Some(audit);
        self.warn = Some(warn);
        self
    }
}

/// The six `pod-security.kubernetes.io/{enforce,audit,warn}[-version]` labels.
///
/// ```
/// use kubesafe_guardrails::pss::{Level, PodSecurity, PolicyVersion, pod_security_labels};
///
/// let labels = pod_security_labels(&PodSecurity::new(Level::Restricted).with_version(PolicyVersion::V1(33)));
/// assert_eq!(labels["pod-security.kubernetes.io/enforce"], "restricted");
/// assert_eq!(labels["pod-security.kubernetes.io/enforce-version"], "v1.33");
/// assert_eq!(labels.len(), 6);
/// ```
pub fn pod_security_labels(ps: &PodSecurity) -> BTreeMap<String, String> {
    if ps.version == PolicyVersion::Latest {
        tracing::warn!(
            "Pod Security version `latest` is not pinned: a cluster upgrade can tighten the policy under running workloads"
        );
    }
    let version = ps.version.to_string();
    let mut labels = BTreeMap::new();
    for (mode, level) in [
        ("enforce", ps.enforce),
        ("audit", ps.audit.unwrap_or(ps.enforce)),
        ("warn", ps.warn.unwrap_or(ps.enforce)),
    ] {
        labels.insert(
            format!("pod-security.kubernetes.io/{mode}"),
            level.as_str().to_string(),
        );
        labels.insert(
            format!("pod-security.kubernetes.io/{mode}-version"),
            version.clone(),
        );
    }
    labels
}

/// A `Namespace` carrying the Pod Security labels (plus
/// `app.kubernetes.io/managed-by: kubesafe`). Applying it with `kubectl apply`
/// merges these labels into an existing namespace.
pub fn pod_security_namespace(name: &str, ps: &PodSecurity) -> Namespace {
    let mut labels = pod_security_labels(ps);
    labels.insert(
        "app.kubernetes.io/managed-by".to_string(),
        "kubesafe".to_string(),
    );
    Namespace {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            labels: Some(labels),
            ..ObjectMeta::default()
        },
        ..Namespace::default()
    }
}
