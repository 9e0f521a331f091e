//! Least-privilege RBAC from the actions a tool performs.
//!
//! [`generate_rbac`] turns a list of [`Action`]s into a `ServiceAccount`, a
//! `Role` + `RoleBinding` for what happens inside the tool's namespace, and a
//! `ClusterRole` + `ClusterRoleBinding` only for what cannot be namespaced
//! (nodes, and draining, which evicts pods of every namespace). Rules are
//! merged per resource, verbs in a fixed order, so output is byte-stable.
//!
//! Invariants (tested): no wildcard, no `update` (every change is a `patch`,
//! which cannot clobber fields the tool does not know about and needs no
//! read-modify-write race handling), no `deployments/rollback` (that
//! subresource went away with `extensions/v1beta1` in Kubernetes 1.16; a
//! rollback is a patch of the Deployment's pod template from a ReplicaSet).
//!
//! | action | rules | why |
//! |---|---|---|
//! | `restart-pod` | `pods`: get, delete | a bare pod restart is a delete; its controller recreates it. `get` reads it first (owner, phase) |
//! | `scale` | `apps` `deployments/scale`: get, patch; `apps` `deployments`: get | the `scale` subresource changes replicas without write access to the whole spec; `get` on the Deployment to read its status while waiting |
//! | `scale-statefulset` | `apps` `statefulsets/scale`: get, patch; `apps` `statefulsets`: get | as `scale`, for StatefulSets |
//! | `rollback` | `apps` `deployments`: get, patch; `apps` `replicasets`: list | `kubectl rollout undo`: list the Deployment's ReplicaSets to find the previous revision, patch its template back into the Deployment |
//! | `rollout-restart` | `apps` `deployments`: get, patch | `kubectl rollout restart` patches the `kubectl.kubernetes.io/restartedAt` template annotation |
//! | `rollout-status` | `apps` `deployments`: get, list, watch | `kubectl rollout status` watches the Deployment (a watch by name needs list and watch) |
//! | `read-logs` | `pods`: get; `pods/log`: get | logs are the `log` subresource of a pod |
//! | `read-events` | `events`: list, watch | events are read by listing (and watching) in the namespace |
//! | `cordon` *(cluster)* | `nodes`: get, patch | cordon sets `spec.unschedulable` by patch |
//! | `drain` *(cluster)* | `nodes`: get, patch; `pods`: get, list; `pods/eviction`: create; `apps` `daemonsets`: get | cordon, list the node's pods in every namespace, evict each through the Eviction API (which honours PodDisruptionBudgets, unlike delete), get pods to wait for them to go, get DaemonSets to recognise (and skip) their pods |
//!
//! Cluster-scoped rules are granted only by the actions marked *(cluster)*.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;

use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::api::rbac::v1::{
    ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding, RoleRef, Subject,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::netpol::{is_dns_label, is_dns_subdomain};
use crate::yaml::{self, YamlError};

/// Something a tool does to the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum Action {
    /// Delete a pod so its controller recreates it.
    RestartPod,
    /// Change a Deployment's replicas.
    Scale,
    /// Change a StatefulSet's replicas.
    ScaleStatefulSet,
    /// Roll a Deployment back to a previous revision.
    Rollback,
    /// Restart a Deployment's pods with a rolling update.
    RolloutRestart,
    /// Wait for a Deployment rollout.
    RolloutStatus,
    /// Read container logs.
    ReadLogs,
    /// Read events.
    ReadEvents,
    /// Mark a node unschedulable.
    Cordon,
    /// Cordon a node and evict its pods.
    Drain,
}

/// Where a rule applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Scope {
    /// In the tool's namespace (Role + RoleBinding).
    Namespace,
    /// Cluster-wide (ClusterRole + ClusterRoleBinding).
    Cluster,
}

/// One permission an action needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grant {
    /// Namespace or cluster.
    pub scope: Scope,
    /// API group (`""` for core).
    pub api_group: &'static str,
    /// Resource or `resource/subresource`.
    pub resource: &'static str,
    /// Verbs.
    pub verbs: &'static [&'static str],
}

const fn ns(
    api_group: &'static str,
    resource: &'static str,
    verbs: &'static [&'static str],
) -> Grant {
    Grant {
        scope: Scope::Namespace,
        api_group,
        resource,
        verbs,
    }
}

const fn cluster(
    api_group: &'static str,
    resource: &'static str,
    verbs: &'static [&'static str],
) -> Grant {
    Grant {
        scope: Scope::Cluster,
        api_group,
        resource,
        verbs,
    }
}

impl Action {
    /// Every action, in table order.
    pub const ALL: &'static [Action] = &[
        Action::RestartPod,
        Action::Scale,
        Action::ScaleStatefulSet,
        Action::Rollback,
        Action::RolloutRestart,
        Action::RolloutStatus,
        Action::ReadLogs,
        Action::ReadEvents,
        Action::Cordon,
        Action::Drain,
    ];

    /// The CLI name, e.g. `restart-pod`.
    pub fn name(self) -> &'static str {
        match self {
            Action::RestartPod => "restart-pod",
            Action::Scale => "scale",
            Action::ScaleStatefulSet => "scale-statefulset",
            Action::Rollback => "rollback",
            Action::RolloutRestart => "rollout-restart",
            Action::RolloutStatus => "rollout-status",
            Action::ReadLogs => "read-logs",
            Action::ReadEvents => "read-events",
            Action::Cordon => "cordon",
            Action::Drain => "drain",
        }
    }

    /// The permissions the action needs (see the module table for why).
    pub fn grants(self) -> &'static [Grant] {
        match self {
            Action::RestartPod => RESTART_POD,
            Action::Scale => SCALE,
            Action::ScaleStatefulSet => SCALE_STATEFULSET,
            Action::Rollback => ROLLBACK,
            Action::RolloutRestart => ROLLOUT_RESTART,
            Action::RolloutStatus => ROLLOUT_STATUS,
            Action::ReadLogs => READ_LOGS,
            Action::ReadEvents => READ_EVENTS,
            Action::Cordon => CORDON,
            Action::Drain => DRAIN,
        }
    }
}

const RESTART_POD: &[Grant] = &[ns("", "pods", &["get", "delete"])];
const SCALE: &[Grant] = &[
    ns("apps", "deployments/scale", &["get", "patch"]),
    ns("apps", "deployments", &["get"]),
];
const SCALE_STATEFULSET: &[Grant] = &[
    ns("apps", "statefulsets/scale", &["get", "patch"]),
    ns("apps", "statefulsets", &["get"]),
];
const ROLLBACK: &[Grant] = &[
    ns("apps", "deployments", &["get", "patch"]),
    ns("apps", "replicasets", &["list"]),
];
const ROLLOUT_RESTART: &[Grant] = &[ns("apps", "deployments", &["get", "patch"])];
const ROLLOUT_STATUS: &[Grant] = &[ns("apps", "deployments", &["get", "list", "watch"])];
const READ_LOGS: &[Grant] = &[ns("", "pods", &["get"]), ns("", "pods/log", &["get"])];
const READ_EVENTS: &[Grant] = &[ns("", "events", &["list", "watch"])];
const CORDON: &[Grant] = &[cluster("", "nodes", &["get", "patch"])];
const DRAIN: &[Grant] = &[
    cluster("", "nodes", &["get", "patch"]),
    cluster("", "pods", &["get", "list"]),
    cluster("", "pods/eviction", &["create"]),
    cluster("apps", "daemonsets", &["get"]),
];

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Action {
    type Err = RbacError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Action::ALL
            .iter()
            .copied()
            .find(|a| a.name() == s)
            .ok_or_else(|| RbacError::UnknownAction(s.to_string()))
    }
}

/// Bad input for [`generate_rbac`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RbacError {
    /// Not one of [`Action::ALL`].
    #[error(
        "unknown action {0:?}; known actions: restart-pod, scale, scale-statefulset, rollback, rollout-restart, rollout-status, read-logs, read-events, cordon, drain"
    )]
    UnknownAction(String),
    /// No action given.
    #[error("at least one action is required")]
    NoActions,
    /// The service account name is not a DNS subdomain.
    #[error(
        "{0:?} is not a valid service account name (lowercase DNS subdomain, at most 253 characters)"
    )]
    InvalidName(String),
    /// The namespace is not a DNS label.
    #[error("{0:?} is not a valid namespace name")]
    InvalidNamespace(String),
}

/// The generated RBAC objects.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct RbacBundle {
    /// The tool's identity.
    pub service_account: ServiceAccount,
    /// Namespaced rules, if any action needs them.
    pub role: Option<Role>,
    /// Binds [`role`](Self::role) to the service account.
    pub role_binding: Option<RoleBinding>,
    /// Cluster rules, if any action needs them (named `<namespace>:<name>`).
    pub cluster_role: Option<ClusterRole>,
    /// Binds [`cluster_role`](Self::cluster_role) to the service account.
    pub cluster_role_binding: Option<ClusterRoleBinding>,
}

impl RbacBundle {
    /// Every rule of the Role and ClusterRole.
    pub fn rules(&self) -> Vec<&PolicyRule> {
        let role = self.role.iter().flat_map(|r| r.rules.iter().flatten());
        let cluster = self
            .cluster_role
            .iter()
            .flat_map(|r| r.rules.iter().flatten());
        role.chain(cluster).collect()
    }

    /// One multi-document YAML stream: ServiceAccount, Role, RoleBinding,
    /// ClusterRole, ClusterRoleBinding (those that exist).
    ///
    /// # Errors
    ///
    /// [`YamlError`] if serialisation fails (it does not for these types).
    pub fn to_yaml(&self) -> Result<String, YamlError> {
        let mut docs = vec![yaml::to_string(&self.service_account)?];
        if let Some(r) = &self.role {
            docs.push(yaml::to_string(r)?);
        }
        if let Some(r) = &self.role_binding {
            docs.push(yaml::to_string(r)?);
        }
        if let Some(r) = &self.cluster_role {
            docs.push(yaml::to_string(r)?);
        }
        if let Some(r) = &self.cluster_role_binding {
            docs.push(yaml::to_string(r)?);
        }
        Ok(yaml::join_documents(&docs))
    }
}

const VERB_ORDER: &[&str] = &["get", "list", "watch", "create", "patch", "delete"];

fn verb_rank(v: &str) -> usize {
    VERB_ORDER
        .iter()
        .position(|x| *x == v)
        .unwrap_or(VERB_ORDER.len())
}

fn meta(name: &str, namespace: Option<&str>) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_string()),
        namespace: namespace.map(str::to_string),
        labels: Some(BTreeMap::from([(
            "app.kubernetes.io/managed-by".to_string(),
            "kubesafe".to_string(),
        )])),
        ..ObjectMeta::default()
    }
}

fn rules(actions: &BTreeSet<Action>, scope: Scope) -> Vec<PolicyRule> {
    let mut merged: BTreeMap<(&str, &str), BTreeSet<&str>> = BTreeMap::new();
    for grant in actions
        .iter()
        .flat_map(|a| a.grants())
        .filter(|g| g.scope == scope)
    {
        merged
            .entry((grant.api_group, grant.resource))
            .or_default()
            .extend(grant.verbs.iter().copied());
    }
    merged
        .into_iter()
        .map(|((group, resource), verbs)| {
            let mut verbs: Vec<&str> = verbs.into_iter().collect();
            verbs.sort_by_key(|v| verb_rank(v));
            PolicyRule {
                api_groups: Some(vec![group.to_string()]),
                resources: Some(vec![resource.to_string()]),
                verbs: verbs.into_iter().map(str::to_string).collect(),
                ..PolicyRule::default()
            }
        })
        .collect()
}

/// Generates the ServiceAccount `name` in `namespace` and the roles and
/// bindings `actions` need.
///
/// # Errors
///
/// [`RbacError`] for no actions or an invalid name or namespace.
///
/// # Example
///
/// ```
/// use kubesafe_guardrails::rbac::{Action, generate_rbac};
///
/// let b = generate_rbac("remediator", "kubesafe", &[Action::RestartPod, Action::Drain])?;
/// assert!(b.role.is_some() && b.cluster_role.is_some());
/// assert!(b.rules().iter().all(|r| !r.verbs.iter().any(|v| v == "*" || v == "update")));
/// # Ok::<(), kubesafe_guardrails::rbac::RbacError>(())
/// ```
pub fn generate_rbac(
    name: &str,
    namespace: &str,
    actions: &[Action],
) -> Result<RbacBundle, RbacError> {
    if actions.is_empty() {
        return Err(RbacError::NoActions);
    }
    if !is_dns_subdomain(name) {
        return Err(RbacError::InvalidName(name.to_string()));
    }
    if !is_dns_label(namespace) {
        return Err(RbacError::InvalidNamespace(namespace.to_string()));
    }
    let actions: BTreeSet<Action> = actions.iter().copied().collect();
    let subject = Subject {
        kind: "ServiceAccount".to_string(),
        name: name.to_string(),
        namespace: Some(namespace.to_string()),
        ..Subject::default()
    };
    let ns_rules = rules(&actions, Scope::Namespace);
    let cluster_rules = rules(&actions, Scope::Cluster);
    let (role, role_binding) = if ns_rules.is_empty() {
        (None, None)
    } else {
        (
            Some(Role {
                metadata: meta(name, Some(namespace)),
                rules: Some(ns_rules),
            }),
            Some(RoleBinding {
                metadata: meta(name, Some(namespace)),
                role_ref: RoleRef {
                    // `String` up to k8s-openapi's v1_36, `Option<String>` in
                    // v1_37: `into()` builds either.
                    api_group: "rbac.authorization.k8s.io".to_string().into(),
                    kind: "Role".to_string(),
                    name: name.to_string(),
                },
                subjects: Some(vec![subject.clone()]),
            }),
        )
    };
    let cluster_name = format!("{namespace}:{name}");
    let (cluster_role, cluster_role_binding) = if cluster_rules.is_empty() {
        (None, None)
    } else {
        (
            Some(ClusterRole {
                metadata: meta(&cluster_name, None),
                rules: Some(cluster_rules),
                ..ClusterRole::default()
            }),
            Some(ClusterRoleBinding {
                metadata: meta(&cluster_name, None),
                role_ref: RoleRef {
                    // `String` up to k8s-openapi's v1_36, `Option<String>` in
                    // v1_37: `into()` builds either.
                    api_group: "rbac.authorization.k8s.io".to_string().into(),
                    kind: "ClusterRole".to_string(),
                    name: cluster_name.clone(),
                },
                subjects: Some(vec![subject]),
            }),
        )
    };
    Ok(RbacBundle {
        service_account: ServiceAccount {
            metadata: meta(name, Some(namespace)),
            ..ServiceAccount::default()
        },
        role,
        role_binding,
        cluster_role,
        cluster_role_binding,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule_strings(b: &RbacBundle) -> Vec<String> {
        b.rules()
            .iter()
            .map(|r| {
                format!(
                    "{}/{}: {}",
                    r.api_groups.as_deref().unwrap_or_default().join(","),
                    r.resources.as_deref().unwrap_or_default().join(","),
                    r.verbs.join(",")
                )
            })
            .collect()
    }

    #[test]
    fn every_action_is_least_privilege() {
        for a in Action::ALL {
            assert_eq!(a.name().parse::<Action>().ok(), Some(*a));
            let b = generate_rbac("tool", "ops", &[*a]).expect("valid");
            for r in b.rules() {
                let groups = r.api_groups.as_deref().unwrap_or_default();
                let resources = r.resources.as_deref().unwrap_or_default();
                assert!(r.non_resource_urls.is_none() && r.resource_names.is_none());
                for s in groups.iter().chain(resources).chain(&r.verbs) {
                    assert!(!s.contains('*'), "{a}: wildcard in {r:?}");
                }
                assert!(
                    !r.verbs.iter().any(|v| v == "update"),
                    "{a}: update in {r:?}"
                );
                assert!(
                    !r.verbs
                        .iter()
                        .any(|v| v == "escalate" || v == "bind" || v == "impersonate")
                );
                assert!(
                    !resources.iter().any(|res| res == "deployments/rollback"),
                    "{a}"
                );
                assert!(!resources.iter().any(|res| res == "secrets"), "{a}");
            }
        }
    }

    #[test]
    fn rules_merge_and_scope() {
        let b = generate_rbac(
            "tool",
            "ops",
            &[
                Action::Rollback,
                Action::Scale,
                Action::RestartPod,
                Action::ReadLogs,
                Action::Scale,
            ],
        )
        .expect("valid");
        assert!(b.cluster_role.is_none() && b.cluster_role_binding.is_none());
        assert_eq!(
            rule_strings(&b),
            [
                "/pods: get,delete",
                "/pods/log: get",
                "apps/deployments: get,patch",
                "apps/deployments/scale: get,patch",
                "apps/replicasets: list",
            ]
        );
        let b = generate_rbac("tool", "ops", &[Action::Drain, Action::Cordon]).expect("valid");
        assert!(b.role.is_none());
        assert_eq!(
            b.cluster_role
                .as_ref()
                .and_then(|r| r.metadata.name.as_deref()),
            Some("ops:tool")
        );
        assert_eq!(
            rule_strings(&b),
            [
                "/nodes: get,patch",
                "/pods: get,list",
                "/pods/eviction: create",
                "apps/daemonsets: get",
            ]
        );
        let binding = b.cluster_role_binding.expect("binding");
        assert_eq!(binding.role_ref.name, "ops:tool");
        let subject = &binding.subjects.expect("subjects")[0];
        assert_eq!(
            (subject.kind.as_str(), subject.name.as_str()),
            ("ServiceAccount", "tool")
        );
        assert_eq!(subject.namespace.as_deref(), Some("ops"));
    }

    #[test]
    fn bad_input_is_rejected() {
        assert_eq!(
            generate_rbac("t", "ops", &[]).err(),
            Some(RbacError::NoActions)
        );
        assert!(matches!(
            generate_rbac("T", "ops", &[Action::Scale]),
            Err(RbacError::InvalidName(_))
        ));
        assert!(matches!(
            generate_rbac("t", "o.ps", &[Action::Scale]),
            Err(RbacError::InvalidNamespace(_))
        ));
        assert!(matches!(
            "deploy".parse::<Action>(),
            Err(RbacError::UnknownAction(_))
        ));
    }
}
