//! `kubesafe-guardrails` — cluster guardrails generated correctly and checked
//! offline. Part of [kubesafe](https://github.com/kubesafe/kubesafe).
//!
//! Hand-written `networkpolicies.yaml`, `podsecurity.yaml` and RBAC files get
//! copied between clusters with the classic mistakes in them: DNS allowed on
//! UDP 53 only, DNS peers selected by a `name: kube-system` label nobody set,
//! API-server egress written against the Service IP, Pod Security labels with
//! no pinned version, RBAC granting `deployments/rollback` or `update` where a
//! `patch` would do. And nobody knows whether their workloads will be rejected
//! until they apply them. This crate:
//!
//! - [`netpol`]: generates NetworkPolicy sets (default deny, DNS on UDP and
//!   TCP 53, egress only through an egress proxy, ingress from the ingress
//!   controller, namespace-internal traffic, metrics scraping, API-server
//!   egress by endpoint) and Pod Security namespace labels from a small
//!   declarative config; byte-stable output.
//! - [`pss`]: an offline Pod Security checker ([`pss::check`]) that evaluates
//!   Pods and every workload with a pod template exactly as the API server's
//!   Pod Security admission does — every upstream check by its ID and
//!   per-version behaviour, conformant with all 4,537 upstream fixtures — plus
//!   [`pss::harden`], the smallest change making a workload compliant and a
//!   list of what it cannot fix, and the namespace labels.
//! - [`rbac`]: least-privilege `ServiceAccount` + `Role`/`ClusterRole` +
//!   bindings from the actions a tool performs, with the rule table in its docs.
//! - [`yaml`]: YAML in and out (`serde-saphyr`).
//!
//! Objects are typed `k8s-openapi` values. This library does not pick a
//! `k8s-openapi` Kubernetes version feature; the final binary must (e.g.
//! `k8s-openapi = { version = "0.29", features = ["latest"] }`). Everything
//! generated validates with `kubernetes-validate --strict` for Kubernetes 1.30
//! through 1.37.
//!
//! # Example
//!
//! ```
//! use kubesafe_guardrails::netpol::{GuardrailsConfig, generate};
//! use kubesafe_guardrails::pss::{HardenOptions, Level, PolicyVersion, check, harden};
//! use kubesafe_guardrails::rbac::{Action, generate_rbac};
//! use kubesafe_guardrails::yaml;
//!
//! // NetworkPolicies and namespace labels from a config.
//! let config = GuardrailsConfig::from_yaml(
//!     "namespaces: [shop]\npodSecurity: {enforce: restricted, version: v1.33}\n",
//! )?;
//! let bundle = generate(&config)?;
//! assert!(bundle.to_yaml()?.contains("kubernetes.io/metadata.name: kube-system"));
//!
//! // Would the pods of this Deployment be admitted in a restricted namespace?
//! // (The API server admits the Deployment itself with warnings; enforcement
//! // rejects the pods its ReplicaSet creates.)
//! let deployment = yaml::from_str::<serde_json::Value>(r#"
//! apiVersion: apps/v1
//! kind: Deployment
//! metadata: {name: web}
//! spec:
//!   selector: {matchLabels: {app: web}}
//!   template:
//!     metadata: {labels: {app: web}}
//!     spec:
//!       containers: [{name: app, image: nginx}]
//! "#)?;
//! let version = PolicyVersion::V1(33);
//! let violations = check(&deployment, Level::Restricted, version)?;
//! assert_eq!(violations[0].to_string(),
//!     r#"allowPrivilegeEscalation != false (container "app" must set securityContext.allowPrivilegeEscalation=false)"#);
//!
//! // Make it compliant with the fewest changes.
//! let hardened = harden(&deployment, Level::Restricted, &HardenOptions::for_version(version))?;
//! assert!(hardened.unfixable.is_empty());
//! assert!(check(&hardened.object, Level::Restricted, version)?.is_empty());
//!
//! // RBAC for a remediation tool that restarts pods and drains nodes.
//! let rbac = generate_rbac("remediator", "kubesafe", &[Action::RestartPod, Action::Drain])?;
//! assert!(rbac.to_yaml()?.contains("pods/eviction"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![warn(missing_docs)]

pub mod netpol;
pub mod pss;
pub mod rbac;
pub mod yaml;
