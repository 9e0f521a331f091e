//! NetworkPolicy sets (and Pod Security namespace labels) from a small
//! declarative config.
//!
//! # The config
//!
//! ```yaml
//! namespaces:                 # the namespaces to guard
//!   - shop
//!   - name: legacy            # per-namespace Pod Security override
//!     podSecurity: {enforce: baseline, warn: restricted}   # version: the config-wide one
//! podSecurity:                # optional: emit Namespace objects with these labels
//!   enforce: restricted       # audit/warn default to enforce
//!   version: v1.33            # default: v1.37, pinned (never `latest` by default)
//! dns:                        # defaults shown
//!   namespace: kube-system
//!   podSelector: {k8s-app: kube-dns}
//! egressProxy:                # defaults shown; `egressProxy: null` disables it
//!   namespace: egress-system
//!   podSelector: {app.kubernetes.io/name: egress-proxy}
//!   port: 3128
//!   upstreamPorts: [80, 443]  # the proxy's own egress; [] = every port
//!   ipv6: true                # also allow ::/0 minus non-global ranges
//! ingressController:          # optional
//!   namespace: ingress-nginx
//!   podSelector: {app.kubernetes.io/name: ingress-nginx}   # optional
//! monitoring:                 # optional
//!   namespace: monitoring
//!   podSelector: {app.kubernetes.io/name: prometheus}      # optional
//!   ports: [9090]             # optional: scrape ports on the targets
//! apiServer:                  # optional
//!   endpoints: [10.0.0.10, 10.0.0.11/32]   # `kubectl get endpointslices -n default -l kubernetes.io/service-name=kubernetes`
//!   port: 6443
//! ```
//!
//! Unknown keys are errors (a typo must not silently drop a rule). Guarding
//! the DNS, ingress-controller or monitoring namespace is an error too:
//! default-deny there would cut that service off for every namespace (those
//! need policies written for the deployment at hand). The egress proxy
//! namespace may be listed; it gets its own policies either way, including
//! default-deny, so it may not be the DNS, ingress-controller or monitoring
//! namespace.
//!
//! # What is generated
//!
//! In every guarded namespace (object names are fixed, so output is
//! byte-stable and re-applying updates in place):
//!
//! | NetworkPolicy | selects pods | allows |
//! |---|---|---|
//! | `kubesafe-default-deny` | all | nothing: ingress and egress denied by default |
//! | `kubesafe-allow-dns` | all | egress to the DNS pods (namespace selected by `kubernetes.io/metadata.name`, the label the API server sets on every namespace; pods by `k8s-app: kube-dns`) on UDP **and TCP** 53 (answers over 512 bytes or with DNSSEC fall back to TCP) |
//! | `kubesafe-allow-egress-proxy` | `networking/allow-egress: "true"` | egress to the egress proxy pods on TCP `port` |
//! | `kubesafe-allow-ingress-controller` | `networking/allow-ingress: "true"` | ingress from the ingress controller |
//! | `kubesafe-allow-internal` | `networking/internal: "true"` | ingress from and egress to pods of the same namespace carrying the same label |
//! | `kubesafe-allow-prometheus-scrape` | `monitoring/prometheus-scrape: "true"` | ingress from the monitoring namespace (on `ports` if given) |
//! | `kubesafe-allow-apiserver` | `networking/allow-apiserver: "true"` | egress to the API server **endpoints** (`ipBlock` per endpoint, TCP `port`) |
//!
//! The API server rule uses the endpoint addresses and port (usually 6443),
//! not the `kubernetes` Service IP and 443: NetworkPolicy is evaluated after
//! kube-proxy's DNAT, so a rule written against the Service IP never matches.
//!
//! The egress proxy namespace gets `kubesafe-default-deny`,
//! `kubesafe-allow-dns`, `kubesafe-egress-proxy-ingress` (ingress to the proxy
//! pods on `port` from the `networking/allow-egress: "true"` pods of the
//! guarded namespaces) and `kubesafe-egress-proxy-internet` (the proxy's
//! egress to `0.0.0.0/0` on `upstreamPorts`, except the ranges that are not
//! the internet; see [`PRIVATE_IPV4`] and [`PRIVATE_IPV6`]).
//!
//! Objects come out namespaces first, then policies, both sorted by
//! namespace, each namespace's policies in the table's order.
//!
//! # What these policies cannot see
//!
//! NetworkPolicy peers are pods selected by labels, or IP blocks. Check your
//! cluster against these before applying:
//!
//! - **Host-network peers.** An ingress controller or Prometheus running with
//!   `hostNetwork: true` connects from its node's IP, which no
//!   namespace/pod selector matches; the ingress and scrape rules then admit
//!   nothing.
//! - **NodeLocal DNSCache.** Pods that resolve through a node-local cache
//!   (`169.254.20.10` by default) send DNS to the node, not to the DNS pods;
//!   `kubesafe-allow-dns` does not cover that hop.
//! - **DNS pods on another port.** The DNS rule allows port 53 on the DNS
//!   *pods* (policies see traffic after the Service's DNAT); DNS pods
//!   listening on another container port (e.g. 5353) are not reached.
//! - **API server on the host network.** With static-pod or external API
//!   servers the endpoints are node or load-balancer IPs. Cilium excludes
//!   node IPs from `ipBlock` unless `policy-cidr-match-mode: nodes` is set
//!   (Cilium 1.15+); otherwise allow it with a CiliumNetworkPolicy
//!   `toEntities: [kube-apiserver]`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::IpAddr;

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::networking::v1::{
    IPBlock, NetworkPolicy, NetworkPolicyEgressRule, NetworkPolicyIngressRule, NetworkPolicyPeer,
    NetworkPolicyPort, NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    LabelSelector, LabelSelectorRequirement, ObjectMeta,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};

use crate::pss::{Level, PodSecurity, PolicyVersion, pod_security_namespace};
use crate::yaml::{self, YamlError};

/// Label opting a pod into egress through the egress proxy.
pub const ALLOW_EGRESS_LABEL: &str = "networking/allow-egress";
/// Label opting a pod into ingress from the ingress controller.
pub const ALLOW_INGRESS_LABEL: &str = "networking/allow-ingress";
/// Label opting pods into traffic with each other inside their namespace.
pub const INTERNAL_LABEL: &str = "networking/internal";
/// Label opting a pod into scraping by the monitoring namespace.
pub const PROMETHEUS_SCRAPE_LABEL: &str = "monitoring/prometheus-scrape";
/// Label opting a pod into egress to the API server.
pub const ALLOW_APISERVER_LABEL: &str = "networking/allow-apiserver";
/// The namespace label the API server sets to the namespace's own name.
pub const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

/// IPv4 ranges the egress proxy may not reach: "this network" (0/8),
/// RFC 1918 private (10/8, 172.16/12, 192.168/16), RFC 6598 shared address
/// space (100.64/10, used by carrier NAT and by several clouds' pod and node
/// networks), loopback (127/8), link-local (169.254/16, including the cloud
/// metadata endpoint 169.254.169.254), IETF protocol assignments (192.0.0/24),
/// benchmarking (198.18/15), multicast (224/4) and reserved (240/4).
pub const PRIVATE_IPV4: &[&str] = &[
    "0.0.0.0/8",
    "10.0.0.0/8",
    "100.64.0.0/10",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "172.16.0.0/12",
    "192.0.0.0/24",
    "192.168.0.0/16",
    "198.18.0.0/15",
    "224.0.0.0/4",
    "240.0.0.0/4",
];

/// IPv6 ranges the egress proxy may not reach: unspecified and loopback
/// (`::/127`), IPv4-mapped (`::ffff:0:0/96`, which would bypass the IPv4
/// exceptions), local-use NAT64 (`64:ff9b:1::/48`), unique local (`fc00::/7`),
/// link-local (`fe80::/10`) and multicast (`ff00::/8`).
pub const PRIVATE_IPV6: &[&str] = &[
    "::/127",
    "::ffff:0:0/96",
    "64:ff9b:1::/48",
    "fc00::/7",
    "fe80::/10",
    "ff00::/8",
];

/// A namespace to guard: a bare name, or `{name, podSecurity}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct NamespaceConfig {
    /// The namespace name.
    pub name: String,
    /// Overrides the config-wide [`GuardrailsConfig::pod_security`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pod_security: Option<PodSecurity>,
}

impl NamespaceConfig {
    /// A namespace using the config-wide settings.
    pub fn new(name: impl Into<String>) -> Self {
        NamespaceConfig {
            name: name.into(),
            pod_security: None,
        }
    }
}

/// `podSecurity` of one namespace as written: `version` may be absent, and
/// then means "the config-wide version" (see [`GuardrailsConfig`]).
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawPodSecurity {
    enforce: Level,
    #[serde(default)]
    audit: Option<Level>,
    #[serde(default)]
    warn: Option<Level>,
    #[serde(default)]
    version: Option<PolicyVersion>,
}

impl RawPodSecurity {
    fn resolve(self, default_version: PolicyVersion) -> PodSecurity {
        PodSecurity {
            enforce: self.enforce,
            audit: self.audit,
            warn: self.warn,
            version: self.version.unwrap_or(default_version),
        }
    }
}

/// A namespace entry as written: a bare name or `{name, podSecurity}`.
struct RawNamespace {
    name: String,
    pod_security: Option<RawPodSecurity>,
}

impl RawNamespace {
    fn resolve(self, default_version: PolicyVersion) -> NamespaceConfig {
        NamespaceConfig {
            name: self.name,
            pod_security: self.pod_security.map(|p| p.resolve(default_version)),
        }
    }
}

impl<'de> Deserialize<'de> for RawNamespace {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields, rename_all = "camelCase")]
        struct Full {
            name: String,
            #[serde(default)]
            pod_security: Option<RawPodSecurity>,
        }
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawNamespace;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a namespace name or {name, podSecurity}")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Self::Value, E> {
                Ok(RawNamespace {
                    name: s.to_string(),
                    pod_security: None,
                })
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                let full = Full::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(RawNamespace {
                    name: full.name,
                    pod_security: full.pod_security,
                })
            }
        }
        d.deserialize_any(V)
    }
}

/// On its own, a `podSecurity` without `version` gets
/// [`PolicyVersion::NEWEST_KNOWN`]; inside a [`GuardrailsConfig`] it gets the
/// config-wide version.
impl<'de> Deserialize<'de> for NamespaceConfig {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        RawNamespace::deserialize(d).map(|r| r.resolve(PolicyVersion::NEWEST_KNOWN))
    }
}

fn default_dns_namespace() -> String {
    "kube-system".to_string()
}

fn default_dns_selector() -> BTreeMap<String, String> {
    BTreeMap::from([("k8s-app".to_string(), "kube-dns".to_string())])
}

/// Where the cluster DNS pods run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[non_exhaustive]
pub struct Dns {
    /// Namespace of the DNS pods (default `kube-system`).
    #[serde(default = "default_dns_namespace")]
    pub namespace: String,
    /// Labels of the DNS pods (default `k8s-app: kube-dns`, which CoreDNS
    /// deployments keep for compatibility).
    #[serde(default = "default_dns_selector")]
    pub pod_selector: BTreeMap<String, String>,
}

impl Default for Dns {
    fn default() -> Self {
        Dns {
            namespace: default_dns_namespace(),
            pod_selector: default_dns_selector(),
        }
    }
}

fn default_proxy_namespace() -> String {
    "egress-system".to_string()
}

fn default_proxy_selector() -> BTreeMap<String, String> {
    BTreeMap::from([(
        "app.kubernetes.io/name".to_string(),
        "egress-proxy".to_string(),
    )])
}

fn default_proxy_port() -> u16 {
    3128
}

fn default_upstream_ports() -> Vec<u16> {
    vec![80, 443]
}

fn default_true() -> bool {
    true
}

/// The egress proxy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[non_exhaustive]
pub struct EgressProxy {
    /// Namespace of the proxy pods (default `egress-system`).
    #[serde(default = "default_proxy_namespace")]
    pub namespace: String,
    /// Labels of the proxy pods (default `app.kubernetes.io/name: egress-proxy`).
    #[serde(default = "default_proxy_selector")]
    pub pod_selector: BTreeMap<String, String>,
    /// The proxy's listening port (default 3128).
    #[serde(default = "default_proxy_port")]
    pub port: u16,
    /// TCP ports the proxy may reach on the internet (default 80 and 443;
    /// empty: every port).
    #[serde(default = "default_upstream_ports")]
    pub upstream_ports: Vec<u16>,
    /// Also allow IPv6 internet egress (default true).
    #[serde(default = "default_true")]
    pub ipv6: bool,
}

impl Default for EgressProxy {
    fn default() -> Self {
        EgressProxy {
            namespace: default_proxy_namespace(),
            pod_selector: default_proxy_selector(),
            port: default_proxy_port(),
            upstream_ports: default_upstream_ports(),
            ipv6: true,
        }
    }
}

/// A peer namespace (ingress controller).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[non_exhaustive]
pub struct Peer {
    /// The peer's namespace.
    pub namespace: String,
    /// The peer pods' labels (default: every pod of the namespace).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub pod_selector: BTreeMap<String, String>,
}

/// The monitoring system that scrapes metrics.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[non_exhaustive]
pub struct Monitoring {
    /// The monitoring namespace.
    pub namespace: String,
    /// The scraper pods' labels (default: every pod of the namespace).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub pod_selector: BTreeMap<String, String>,
    /// TCP ports scraped on the targets (default: every port).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<u16>,
}

fn default_apiserver_port() -> u16 {
    6443
}

/// The API server's endpoints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[non_exhaustive]
pub struct ApiServer {
    /// Endpoint addresses or CIDRs (a bare address means /32 or /128).
    pub endpoints: Vec<String>,
    /// Endpoint port (default 6443).
    #[serde(default = "default_apiserver_port")]
    pub port: u16,
}

fn default_egress_proxy() -> Option<EgressProxy> {
    Some(EgressProxy::default())
}

/// The config as written; [`GuardrailsConfig`] resolves the per-namespace
/// Pod Security versions from it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawConfig {
    namespaces: Vec<RawNamespace>,
    #[serde(default)]
    pod_security: Option<PodSecurity>,
    #[serde(default)]
    dns: Dns,
    #[serde(default = "default_egress_proxy")]
    egress_proxy: Option<EgressProxy>,
    #[serde(default)]
    ingress_controller: Option<Peer>,
    #[serde(default)]
    monitoring: Option<Monitoring>,
    #[serde(default)]
    api_server: Option<ApiServer>,
}

impl From<RawConfig> for GuardrailsConfig {
    fn from(raw: RawConfig) -> Self {
        let default_version = raw
            .pod_security
            .as_ref()
            .map_or(PolicyVersion::NEWEST_KNOWN, |ps| ps.version);
        GuardrailsConfig {
            namespaces: raw
                .namespaces
                .into_iter()
                .map(|n| n.resolve(default_version))
                .collect(),
            pod_security: raw.pod_security,
            dns: raw.dns,
            egress_proxy: raw.egress_proxy,
            ingress_controller: raw.ingress_controller,
            monitoring: raw.monitoring,
            api_server: raw.api_server,
        }
    }
}

/// The guardrails config (see the [module docs](self)).
///
/// A namespace's own `podSecurity` without a `version` takes the config-wide
/// `podSecurity.version` (so one config pins one policy version unless a
/// namespace says otherwise), or [`PolicyVersion::NEWEST_KNOWN`] when there
/// is no config-wide setting.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "RawConfig", rename_all = "camelCase")]
#[non_exhaustive]
pub struct GuardrailsConfig {
    /// The namespaces to guard.
    pub namespaces: Vec<NamespaceConfig>,
    /// Pod Security labels for every guarded namespace; `None` emits no
    /// Namespace objects (unless a namespace sets its own).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pod_security: Option<PodSecurity>,
    /// The cluster DNS.
    pub dns: Dns,
    /// The egress proxy (`None`: no proxy policies).
    pub egress_proxy: Option<EgressProxy>,
    /// The ingress controller (`None`: no ingress policy).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ingress_controller: Option<Peer>,
    /// The monitoring system (`None`: no scrape policy).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub monitoring: Option<Monitoring>,
    /// The API server endpoints (`None`: no API server policy).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_server: Option<ApiServer>,
}

impl GuardrailsConfig {
    /// A config guarding `namespaces` with every default.
    pub fn new<S: Into<String>>(namespaces: impl IntoIterator<Item = S>) -> Self {
        GuardrailsConfig {
            namespaces: namespaces.into_iter().map(NamespaceConfig::new).collect(),
            pod_security: None,
            dns: Dns::default(),
            egress_proxy: default_egress_proxy(),
            ingress_controller: None,
            monitoring: None,
            api_server: None,
        }
    }

    /// Parses a YAML (or JSON) config.
    ///
    /// # Errors
    ///
    /// [`ConfigError::Yaml`] with the parser's location for malformed YAML,
    /// unknown keys or wrong types.
    pub fn from_yaml(text: &str) -> Result<Self, ConfigError> {
        yaml::from_str(text).map_err(ConfigError::Yaml)
    }
}

/// A config that cannot produce valid objects.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The config is not valid YAML for [`GuardrailsConfig`].
    #[error("{0}")]
    Yaml(YamlError),
    /// `namespaces` is empty.
    #[error("namespaces: at least one namespace to guard is required")]
    NoNamespaces,
    /// A namespace name is not a DNS-1123 label.
    #[error(
        "{field}: {value:?} is not a valid namespace name (lowercase letters, digits and '-', at most 63, starting and ending alphanumeric)"
    )]
    InvalidNamespace {
        /// The config field, e.g. `namespaces[2]` or `dns.namespace`.
        field: String,
        /// The rejected value.
        value: String,
    },
    /// A namespace is listed twice.
    #[error("namespaces: {0:?} is listed more than once")]
    DuplicateNamespace(String),
    /// A label key or value is invalid.
    #[error("{field}: invalid label {key:?}: {value:?} ({reason})")]
    InvalidLabel {
        /// The config field, e.g. `egressProxy.podSelector`.
        field: String,
        /// The key.
        key: String,
        /// The value.
        value: String,
        /// Why it is rejected.
        reason: &'static str,
    },
    /// A port is 0.
    #[error("{field}: port 0 is not a valid port")]
    InvalidPort {
        /// The config field.
        field: String,
    },
    /// An endpoint is not an address or CIDR.
    #[error("{field}: {value:?} is not an IP address or CIDR ({reason})")]
    InvalidCidr {
        /// The config field, e.g. `apiServer.endpoints[0]`.
        field: String,
        /// The rejected value.
        value: String,
        /// Why it is rejected.
        reason: String,
    },
    /// A guarded namespace hosts a service the generated policies rely on;
    /// default-deny there would cut it off for the whole cluster.
    #[error(
        "namespaces: {namespace:?} is the {role} namespace; default-deny there would cut {role} off for every namespace. Write policies for it by hand"
    )]
    GuardsInfrastructure {
        /// The namespace.
        namespace: String,
        /// `DNS`, `ingress controller` or `monitoring`.
        role: &'static str,
    },
    /// The egress proxy namespace is the DNS, ingress-controller or
    /// monitoring namespace. The proxy namespace gets `kubesafe-default-deny`,
    /// which would cut that service off for every namespace.
    #[error(
        "egressProxy.namespace: {namespace:?} is the {role} namespace; the proxy namespace gets default-deny, which would cut {role} off for every namespace. Run the proxy in a namespace of its own"
    )]
    ProxyInInfrastructure {
        /// The namespace.
        namespace: String,
        /// `DNS`, `ingress controller` or `monitoring`.
        role: &'static str,
    },
    /// A required selector is empty.
    #[error("{field}: must select at least one label (an empty selector would match every pod)")]
    EmptySelector {
        /// The config field.
        field: String,
    },
}

/// The generated objects.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Bundle {
    /// Namespaces carrying Pod Security labels, sorted by name.
    pub namespaces: Vec<Namespace>,
    /// NetworkPolicies, sorted by namespace, in a fixed order per namespace.
    pub network_policies: Vec<NetworkPolicy>,
}

impl Bundle {
    /// One multi-document YAML stream (namespaces, then policies).
    ///
    /// # Errors
    ///
    /// [`YamlError`] if serialisation fails (it does not for these types).
    pub fn to_yaml(&self) -> Result<String, YamlError> {
        let mut docs = Vec::new();
        for ns in &self.namespaces {
            docs.push(yaml::to_string(ns)?);
        }
        for np in &self.network_policies {
            docs.push(yaml::to_string(np)?);
        }
        Ok(yaml::join_documents(&docs))
    }
}

/// DNS-1123 label: the rule for namespace names.
pub(crate) fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// DNS-1123 subdomain: label prefixes, object names.
pub(crate) fn is_dns_subdomain(s: &str) -> bool {
    !s.is_empty() && s.len() <= 253 && s.split('.').all(is_dns_label)
}

fn is_label_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && s.as_bytes().first().is_some_and(u8::is_ascii_alphanumeric)
        && s.as_bytes().last().is_some_and(u8::is_ascii_alphanumeric)
}

fn validate_label(field: &str, key: &str, value: &str) -> Result<(), ConfigError> {
    let bad = |reason| ConfigError::InvalidLabel {
        field: field.to_string(),
        key: key.to_string(),
        value: value.to_string(),
        reason,
    };
    let name = match key.split_once('/') {
        Some((prefix, name)) => {
            if !is_dns_subdomain(prefix) {
                return Err(bad("the key prefix must be a DNS subdomain"));
            }
            name
        }
        None => key,
    };
    if !is_label_name(name) {
        return Err(bad(
            "the key name must be 1-63 alphanumerics, '-', '_' or '.', starting and ending alphanumeric",
        ));
    }
    if !value.is_empty() && !is_label_name(value) {
        return Err(bad(
            "the value must be empty or 1-63 alphanumerics, '-', '_' or '.', starting and ending alphanumeric",
        ));
    }
    Ok(())
}

fn validate_selector(
    field: &str,
    selector: &BTreeMap<String, String>,
    required: bool,
) -> Result<(), ConfigError> {
    if required && selector.is_empty() {
        return Err(ConfigError::EmptySelector {
            field: field.to_string(),
        });
    }
    for (k, v) in selector {
        validate_label(field, k, v)?;
    }
    Ok(())
}

fn validate_namespace(field: &str, name: &str) -> Result<(), ConfigError> {
    if is_dns_label(name) {
        Ok(())
    } else {
        Err(ConfigError::InvalidNamespace {
            field: field.to_string(),
            value: name.to_string(),
        })
    }
}

fn validate_ports(field: &str, ports: &[u16]) -> Result<(), ConfigError> {
    if ports.contains(&0) {
        return Err(ConfigError::InvalidPort {
            field: field.to_string(),
        });
    }
    Ok(())
}

/// Normalises an address or CIDR to `addr/prefix`, rejecting host bits and /0.
pub(crate) fn parse_cidr(field: &str, text: &str) -> Result<String, ConfigError> {
    let bad = |reason: String| ConfigError::InvalidCidr {
        field: field.to_string(),
        value: text.to_string(),
        reason,
    };
    let (addr_text, prefix_text) = match text.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (text, None),
    };
    let addr: IpAddr = addr_text
        .parse()
        .map_err(|_| bad("not an IP address".to_string()))?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let prefix: u32 = match prefix_text {
        None => max,
        Some(p) => {
            if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) || p.len() > 3 {
                return Err(bad("the prefix length is not a number".to_string()));
            }
            p.parse()
                .map_err(|_| bad("the prefix length is not a number".to_string()))?
        }
    };
    if prefix > max {
        return Err(bad(format!("prefix length {prefix} exceeds {max}")));
    }
    if prefix == 0 {
        return Err(bad("a /0 would allow every destination".to_string()));
    }
    let host_bits_set = match addr {
        IpAddr::V4(a) => {
            let bits = u32::from(a);
            let mask = u32::MAX.checked_shl(32 - prefix).unwrap_or(0);
            bits & !mask != 0
        }
        IpAddr::V6(a) => {
            let bits = u128::from(a);
            let mask = u128::MAX.checked_shl(128 - prefix).unwrap_or(0);
            bits & !mask != 0
        }
    };
    if host_bits_set {
        return Err(bad(format!("host bits are set below the /{prefix} prefix")));
    }
    Ok(format!("{addr}/{prefix}"))
}

fn selector(labels: &BTreeMap<String, String>) -> LabelSelector {
    LabelSelector {
        match_labels: if labels.is_empty() {
            None
        } else {
            Some(labels.clone())
        },
        ..LabelSelector::default()
    }
}

fn label_selector(key: &str, value: &str) -> LabelSelector {
    selector(&BTreeMap::from([(key.to_string(), value.to_string())]))
}

fn namespace_peer(namespace: &str, pods: &BTreeMap<String, String>) -> NetworkPolicyPeer {
    NetworkPolicyPeer {
        namespace_selector: Some(label_selector(NAMESPACE_NAME_LABEL, namespace)),
        pod_selector: if pods.is_empty() {
            None
        } else {
            Some(selector(pods))
        },
        ..NetworkPolicyPeer::default()
    }
}

fn port(protocol: &str, number: u16) -> NetworkPolicyPort {
    NetworkPolicyPort {
        protocol: Some(protocol.to_string()),
        port: Some(IntOrString::Int(i32::from(number))),
        ..NetworkPolicyPort::default()
    }
}

fn tcp_ports(ports: &[u16]) -> Option<Vec<NetworkPolicyPort>> {
    if ports.is_empty() {
        None
    } else {
        let set: BTreeSet<u16> = ports.iter().copied().collect();
        Some(set.into_iter().map(|p| port("TCP", p)).collect())
    }
}

fn policy(
    namespace: &str,
    name: &str,
    pod_selector: LabelSelector,
    ingress: Option<Vec<NetworkPolicyIngressRule>>,
    egress: Option<Vec<NetworkPolicyEgressRule>>,
) -> NetworkPolicy {
    let mut types = Vec::new();
    if ingress.is_some() {
        types.push("Ingress".to_string());
    }
    if egress.is_some() {
        types.push("Egress".to_string());
    }
    NetworkPolicy {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            namespace: Some(namespace.to_string()),
            labels: Some(BTreeMap::from([(
                "app.kubernetes.io/managed-by".to_string(),
                "kubesafe".to_string(),
            )])),
            ..ObjectMeta::default()
        },
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(pod_selector),
            policy_types: Some(types),
            // An empty list (deny all) is written out as `[]` only for
            // default-deny, where `policyTypes` already says it.
            ingress: ingress.filter(|r| !r.is_empty()),
            egress: egress.filter(|r| !r.is_empty()),
        }),
    }
}

fn default_deny(namespace: &str) -> NetworkPolicy {
    policy(
        namespace,
        "kubesafe-default-deny",
        LabelSelector::default(),
        Some(Vec::new()),
        Some(Vec::new()),
    )
}

fn allow_dns(namespace: &str, dns: &Dns) -> NetworkPolicy {
    policy(
        namespace,
        "kubesafe-allow-dns",
        LabelSelector::default(),
        None,
        Some(vec![NetworkPolicyEgressRule {
            to: Some(vec![namespace_peer(&dns.namespace, &dns.pod_selector)]),
            ports: Some(vec![port("UDP", 53), port("TCP", 53)]),
        }]),
    )
}

/// Checks a config and generates its objects.
///
/// # Errors
///
/// A [`ConfigError`] naming the offending field.
///
/// # Example
///
/// ```
/// use kubesafe_guardrails::netpol::{GuardrailsConfig, generate};
///
/// let config = GuardrailsConfig::from_yaml("namespaces: [shop]\n")?;
/// let bundle = generate(&config)?;
/// let names: Vec<_> = bundle.network_policies.iter()
///     .map(|p| format!("{}/{}", p.metadata.namespace.as_deref().unwrap_or(""), p.metadata.name.as_deref().unwrap_or("")))
///     .collect();
/// assert_eq!(names, [
///     "egress-system/kubesafe-default-deny",
///     "egress-system/kubesafe-allow-dns",
///     "egress-system/kubesafe-egress-proxy-ingress",
///     "egress-system/kubesafe-egress-proxy-internet",
///     "shop/kubesafe-default-deny",
///     "shop/kubesafe-allow-dns",
///     "shop/kubesafe-allow-egress-proxy",
///     "shop/kubesafe-allow-internal",
/// ]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn generate(config: &GuardrailsConfig) -> Result<Bundle, ConfigError> {
    if config.namespaces.is_empty() {
        return Err(ConfigError::NoNamespaces);
    }
    let mut guarded: BTreeMap<&str, &NamespaceConfig> = BTreeMap::new();
    for (i, ns) in config.namespaces.iter().enumerate() {
        validate_namespace(&format!("namespaces[{i}]"), &ns.name)?;
        if guarded.insert(ns.name.as_str(), ns).is_some() {
            return Err(ConfigError::DuplicateNamespace(ns.name.clone()));
        }
    }
    validate_namespace("dns.namespace", &config.dns.namespace)?;
    validate_selector("dns.podSelector", &config.dns.pod_selector, true)?;
    if let Some(proxy) = &config.egress_proxy {
        validate_namespace("egressProxy.namespace", &proxy.namespace)?;
        validate_selector("egressProxy.podSelector", &proxy.pod_selector, true)?;
        validate_ports("egressProxy.port", &[proxy.port])?;
        validate_ports("egressProxy.upstreamPorts", &proxy.upstream_ports)?;
    }
    if let Some(ic) = &config.ingress_controller {
        validate_namespace("ingressController.namespace", &ic.namespace)?;
        validate_selector("ingressController.podSelector", &ic.pod_selector, false)?;
    }
    if let Some(m) = &config.monitoring {
        validate_namespace("monitoring.namespace", &m.namespace)?;
        validate_selector("monitoring.podSelector", &m.pod_selector, false)?;
        validate_ports("monitoring.ports", &m.ports)?;
    }
    let mut apiserver_cidrs = BTreeSet::new();
    if let Some(api) = &config.api_server {
        validate_ports("apiServer.port", &[api.port])?;
        if api.endpoints.is_empty() {
            return Err(ConfigError::InvalidCidr {
                field: "apiServer.endpoints".to_string(),
                value: String::new(),
                reason: "at least one endpoint is required".to_string(),
            });
        }
        for (i, e) in api.endpoints.iter().enumerate() {
            apiserver_cidrs.insert(parse_cidr(&format!("apiServer.endpoints[{i}]"), e)?);
        }
    }

    let mut infrastructure = vec![(config.dns.namespace.as_str(), "DNS")];
    if let Some(ic) = &config.ingress_controller {
        infrastructure.push((ic.namespace.as_str(), "ingress controller"));
    }
    if let Some(m) = &config.monitoring {
        infrastructure.push((m.namespace.as_str(), "monitoring"));
    }
    for (ns, role) in infrastructure {
        if guarded.contains_key(ns) {
            return Err(ConfigError::GuardsInfrastructure {
                namespace: ns.to_string(),
                role,
            });
        }
        if config
            .egress_proxy
            .as_ref()
            .is_some_and(|p| p.namespace == ns)
        {
            return Err(ConfigError::ProxyInInfrastructure {
                namespace: ns.to_string(),
                role,
            });
        }
    }

    let mut namespaces = Vec::new();
    for ns in guarded.values() {
        if let Some(ps) = ns.pod_security.as_ref().or(config.pod_security.as_ref()) {
            namespaces.push(pod_security_namespace(&ns.name, ps));
        }
    }

    // Every namespace that gets policies, sorted; the proxy namespace gets the
    // baseline pair (deny + DNS) even when not listed.
    let mut all: BTreeSet<&str> = guarded.keys().copied().collect();
    if let Some(proxy) = &config.egress_proxy {
        all.insert(proxy.namespace.as_str());
    }

    let mut policies = Vec::new();
    for ns in all {
        policies.push(default_deny(ns));
        policies.push(allow_dns(ns, &config.dns));
        if let Some(proxy) = &config.egress_proxy
            && ns == proxy.namespace
        {
            policies.extend(proxy_policies(proxy, &guarded));
        }
        if !guarded.contains_key(ns) {
            continue;
        }
        if let Some(proxy) = &config.egress_proxy {
            policies.push(policy(
                ns,
                "kubesafe-allow-egress-proxy",
                label_selector(ALLOW_EGRESS_LABEL, "true"),
                None,
                Some(vec![NetworkPolicyEgressRule {
                    to: Some(vec![namespace_peer(&proxy.namespace, &proxy.pod_selector)]),
                    ports: Some(vec![port("TCP", proxy.port)]),
                }]),
            ));
        }
        if let Some(ic) = &config.ingress_controller {
            policies.push(policy(
                ns,
                "kubesafe-allow-ingress-controller",
                label_selector(ALLOW_INGRESS_LABEL, "true"),
                Some(vec![NetworkPolicyIngressRule {
                    from: Some(vec![namespace_peer(&ic.namespace, &ic.pod_selector)]),
                    ports: None,
                }]),
                None,
            ));
        }
        let internal_peer = NetworkPolicyPeer {
            pod_selector: Some(label_selector(INTERNAL_LABEL, "true")),
            ..NetworkPolicyPeer::default()
        };
        policies.push(policy(
            ns,
            "kubesafe-allow-internal",
            label_selector(INTERNAL_LABEL, "true"),
            Some(vec![NetworkPolicyIngressRule {
                from: Some(vec![internal_peer.clone()]),
                ports: None,
            }]),
            Some(vec![NetworkPolicyEgressRule {
                to: Some(vec![internal_peer]),
                ports: None,
            }]),
        ));
        if let Some(m) = &config.monitoring {
            policies.push(policy(
                ns,
                "kubesafe-allow-prometheus-scrape",
                label_selector(PROMETHEUS_SCRAPE_LABEL, "true"),
                Some(vec![NetworkPolicyIngressRule {
                    from: Some(vec![namespace_peer(&m.namespace, &m.pod_selector)]),
                    ports: tcp_ports(&m.ports),
                }]),
                None,
            ));
        }
        if let Some(api) = &config.api_server {
            policies.push(policy(
                ns,
                "kubesafe-allow-apiserver",
                label_selector(ALLOW_APISERVER_LABEL, "true"),
                None,
                Some(vec![NetworkPolicyEgressRule {
                    to: Some(
                        apiserver_cidrs
                            .iter()
                            .map(|cidr| NetworkPolicyPeer {
                                ip_block: Some(IPBlock {
                                    cidr: cidr.clone(),
                                    except: None,
                                }),
                                ..NetworkPolicyPeer::default()
                            })
                            .collect(),
                    ),
                    ports: Some(vec![port("TCP", api.port)]),
                }]),
            ));
        }
    }
    Ok(Bundle {
        namespaces,
        network_policies: policies,
    })
}

fn proxy_policies(
    proxy: &EgressProxy,
    guarded: &BTreeMap<&str, &NamespaceConfig>,
) -> Vec<NetworkPolicy> {
    let ns = proxy.namespace.as_str();
    let clients = NetworkPolicyPeer {
        namespace_selector: Some(LabelSelector {
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: NAMESPACE_NAME_LABEL.to_string(),
                operator: "In".to_string(),
                values: Some(guarded.keys().map(|s| (*s).to_string()).collect()),
            }]),
            ..LabelSelector::default()
        }),
        pod_selector: Some(label_selector(ALLOW_EGRESS_LABEL, "true")),
        ..NetworkPolicyPeer::default()
    };
    let mut internet = vec![NetworkPolicyPeer {
        ip_block: Some(IPBlock {
            cidr: "0.0.0.0/0".to_string(),
            except: Some(PRIVATE_IPV4.iter().map(|s| (*s).to_string()).collect()),
        }),
        ..NetworkPolicyPeer::default()
    }];
    if proxy.ipv6 {
        internet.push(NetworkPolicyPeer {
            ip_block: Some(IPBlock {
                cidr: "::/0".to_string(),
                except: Some(PRIVATE_IPV6.iter().map(|s| (*s).to_string()).collect()),
            }),
            ..NetworkPolicyPeer::default()
        });
    }
    vec![
        policy(
            ns,
            "kubesafe-egress-proxy-ingress",
            selector(&proxy.pod_selector),
            Some(vec![NetworkPolicyIngressRule {
                from: Some(vec![clients]),
                ports: Some(vec![port("TCP", proxy.port)]),
            }]),
            None,
        ),
        policy(
            ns,
            "kubesafe-egress-proxy-internet",
            selector(&proxy.pod_selector),
            None,
            Some(vec![NetworkPolicyEgressRule {
                to: Some(internet),
                ports: tcp_ports(&proxy.upstream_ports),
            }]),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidrs_are_normalised_and_checked() {
        assert_eq!(
            parse_cidr("f", "10.0.0.10").ok(),
            Some("10.0.0.10/32".to_string())
        );
        assert_eq!(
            parse_cidr("f", "10.0.0.0/24").ok(),
            Some("10.0.0.0/24".to_string())
        );
        assert_eq!(
            parse_cidr("f", "fd00::1").ok(),
            Some("fd00::1/128".to_string())
        );
        assert_eq!(
            parse_cidr("f", "2001:db8::/32").ok(),
            Some("2001:db8::/32".to_string())
        );
        for bad in [
            "10.0.0.1/24",
            "10.0.0.0/33",
            "0.0.0.0/0",
            "::/0",
            "x",
            "10.0.0.0/",
            "10.0.0.0/a",
            "10.0.0/8",
        ] {
            assert!(parse_cidr("f", bad).is_err(), "{bad} must be rejected");
        }
        let e = parse_cidr("apiServer.endpoints[1]", "10.0.0.1/24").expect_err("host bits");
        assert_eq!(
            e.to_string(),
            "apiServer.endpoints[1]: \"10.0.0.1/24\" is not an IP address or CIDR (host bits are set below the /24 prefix)"
        );
    }

    #[test]
    fn private_ranges_are_valid_excepts() {
        for r in PRIVATE_IPV4.iter().chain(PRIVATE_IPV6) {
            let normal = parse_cidr("x", r).expect("valid range");
            assert_eq!(parse_cidr("x", &normal).ok(), Some(normal.clone()), "{r}");
        }
        assert!(PRIVATE_IPV4.iter().all(|r| !r.contains(':')));
        assert!(PRIVATE_IPV6.iter().all(|r| r.contains(':')));
    }

    #[test]
    fn names_and_labels_are_validated() {
        assert!(is_dns_label("shop-1"));
        for bad in ["", "-a", "a-", "Shop", "a_b", &"a".repeat(64)] {
            assert!(!is_dns_label(bad), "{bad}");
        }
        assert!(validate_label("f", "app.kubernetes.io/name", "egress-proxy").is_ok());
        assert!(validate_label("f", "k8s-app", "").is_ok());
        assert!(validate_label("f", "/name", "x").is_err());
        assert!(validate_label("f", "a/b/c", "x").is_err());
        assert!(validate_label("f", "name", "-x").is_err());
        assert!(validate_label("f", "name", &"x".repeat(64)).is_err());
    }

    #[test]
    fn config_errors_name_the_field() {
        let cases = [
            (
                "namespaces: []\n",
                "namespaces: at least one namespace to guard is required",
            ),
            (
                "namespaces: [Shop]\n",
                "namespaces[0]: \"Shop\" is not a valid namespace name",
            ),
            (
                "namespaces: [a, a]\n",
                "namespaces: \"a\" is listed more than once",
            ),
            (
                "namespaces: [a]\negressProxy: {port: 0}\n",
                "egressProxy.port: port 0 is not a valid port",
            ),
            (
                "namespaces: [a]\negressProxy: {podSelector: {}}\n",
                "egressProxy.podSelector: must select at least one label",
            ),
            (
                "namespaces: [a]\napiServer: {endpoints: [10.0.0.1/8]}\n",
                "apiServer.endpoints[0]:",
            ),
            (
                "namespaces: [a]\nmonitoring: {namespace: mon, podSelector: {'bad key!': x}}\n",
                "monitoring.podSelector: invalid label",
            ),
            // The proxy namespace gets default-deny: never in an
            // infrastructure namespace the other policies rely on.
            (
                "namespaces: [a]\negressProxy: {namespace: kube-system}\n",
                "egressProxy.namespace: \"kube-system\" is the DNS namespace",
            ),
            (
                "namespaces: [a]\negressProxy: {namespace: infra}\ningressController: {namespace: infra}\n",
                "egressProxy.namespace: \"infra\" is the ingress controller namespace",
            ),
            (
                "namespaces: [a]\negressProxy: {namespace: mon}\nmonitoring: {namespace: mon}\n",
                "egressProxy.namespace: \"mon\" is the monitoring namespace",
            ),
        ];
        for (yaml, want) in cases {
            let cfg = GuardrailsConfig::from_yaml(yaml).expect("parses");
            let e = generate(&cfg).expect_err(yaml);
            assert!(e.to_string().starts_with(want), "{yaml}: {e}");
        }
        // Typos are parse errors, not silently ignored keys.
        let e =
            GuardrailsConfig::from_yaml("namespaces: [a]\negressProxi: {}\n").expect_err("typo");
        assert!(e.to_string().contains("egressProxi"), "{e}");
        let e = GuardrailsConfig::from_yaml(
            "namespaces: [{name: a, podSecurity: {enforce: strict}}]\n",
        )
        .expect_err("bad level");
        assert!(e.to_string().contains("strict"), "{e}");
    }

    /// `version: 1.30` is a YAML float; it must still mean v1.30, not v1.3.
    #[test]
    fn unquoted_versions_keep_their_text() {
        let cfg = GuardrailsConfig::from_yaml(
            "namespaces: [a]\npodSecurity: {enforce: restricted, version: 1.30}\n",
        )
        .expect("parses");
        let b = generate(&cfg).expect("valid");
        let labels = b.namespaces[0].metadata.labels.as_ref().expect("labels");
        assert_eq!(
            labels["pod-security.kubernetes.io/enforce-version"],
            "v1.30"
        );
    }

    /// A per-namespace override without its own `version` keeps the
    /// config-wide pinned version: one bundle pins one policy version unless
    /// a namespace says otherwise.
    #[test]
    fn namespace_overrides_inherit_the_pinned_version() {
        let cfg = GuardrailsConfig::from_yaml(
            "namespaces: [a, {name: b, podSecurity: {enforce: baseline}}, \
             {name: c, podSecurity: {enforce: baseline, version: v1.30}}]\n\
             podSecurity: {enforce: restricted, version: v1.33}\n",
        )
        .expect("parses");
        let b = generate(&cfg).expect("valid");
        let versions: Vec<(&str, &str, &str)> = b
            .namespaces
            .iter()
            .map(|n| {
                let labels = n.metadata.labels.as_ref().expect("labels");
                (
                    n.metadata.name.as_deref().unwrap_or(""),
                    labels["pod-security.kubernetes.io/enforce"].as_str(),
                    labels["pod-security.kubernetes.io/enforce-version"].as_str(),
                )
            })
            .collect();
        assert_eq!(
            versions,
            [
                ("a", "restricted", "v1.33"),
                ("b", "baseline", "v1.33"),
                ("c", "baseline", "v1.30"),
            ]
        );
        // Without a config-wide setting the override's default applies.
        let cfg = GuardrailsConfig::from_yaml(
            "namespaces: [{name: b, podSecurity: {enforce: baseline}}]\n",
        )
        .expect("parses");
        let b = generate(&cfg).expect("valid");
        let labels = b.namespaces[0].metadata.labels.as_ref().expect("labels");
        assert_eq!(
            labels["pod-security.kubernetes.io/enforce-version"],
            PolicyVersion::NEWEST_KNOWN.to_string()
        );
        // Serialising keeps "inherit": the config reads back the same.
        let cfg = GuardrailsConfig::from_yaml(
            "namespaces: [{name: b, podSecurity: {enforce: baseline}}]\n\
             podSecurity: {enforce: restricted, version: v1.33}\n",
        )
        .expect("parses");
        let text = yaml::to_string(&cfg).expect("serialises");
        assert_eq!(
            GuardrailsConfig::from_yaml(&text).expect("re-parses"),
            cfg,
            "{text}"
        );
    }

    /// NetworkPolicies are additive, so one over-broad allow policy opens a
    /// hole nothing else closes. Invariants over a config using every
    /// feature: only default-deny and DNS select every pod; every rule names
    /// its peers (a rule without `from`/`to` allows everyone); a namespace
    /// peer carries its pod selector in the same entry (AND), never as a
    /// second entry (OR); only the proxy's internet rule uses a catch-all CIDR.
    #[test]
    fn allow_policies_stay_narrow() {
        let cfg = GuardrailsConfig::from_yaml(
            "namespaces: [shop, pay]\n\
             ingressController: {namespace: ingress, podSelector: {app: nginx}}\n\
             monitoring: {namespace: mon, podSelector: {app: prometheus}, ports: [9090]}\n\
             apiServer: {endpoints: [10.0.0.10]}\n",
        )
        .expect("parses");
        let b = generate(&cfg).expect("valid");
        assert_eq!(b.network_policies.len(), 4 + 2 * 7);
        for p in &b.network_policies {
            let name = p.metadata.name.as_deref().unwrap_or("");
            let spec = p.spec.as_ref().expect("spec");
            let selects_all = spec.pod_selector.as_ref().is_none_or(|s| {
                s.match_labels.as_ref().is_none_or(BTreeMap::is_empty)
                    && s.match_expressions.as_ref().is_none_or(Vec::is_empty)
            });
            assert_eq!(
                selects_all,
                matches!(name, "kubesafe-default-deny" | "kubesafe-allow-dns"),
                "{name}"
            );
            let peers: Vec<&NetworkPolicyPeer> = spec
                .ingress
                .iter()
                .flatten()
                .map(|r| r.from.as_deref().unwrap_or_default())
                .chain(
                    spec.egress
                        .iter()
                        .flatten()
                        .map(|r| r.to.as_deref().unwrap_or_default()),
                )
                .inspect(|peers| assert!(!peers.is_empty(), "{name}: a rule without peers"))
                .flatten()
                .collect();
            for peer in peers {
                let ns = peer.namespace_selector.is_some();
                let pods = peer.pod_selector.is_some();
                let ip = peer.ip_block.as_ref();
                assert!(ns || pods || ip.is_some(), "{name}: empty peer");
                if let Some(ip) = ip {
                    assert!(!ns && !pods, "{name}: ipBlock mixed with selectors");
                    let catch_all = ip.cidr == "0.0.0.0/0" || ip.cidr == "::/0";
                    assert_eq!(
                        catch_all,
                        name == "kubesafe-egress-proxy-internet",
                        "{name}"
                    );
                    assert!(!catch_all || ip.except.as_ref().is_some_and(|e| !e.is_empty()));
                }
                // Every namespace peer in this config has pod labels too, and
                // they sit in the same entry.
                if ns {
                    assert!(pods, "{name}: namespace peer without its pod selector");
                }
            }
            // Exactly one peer per rule for selector-based rules: a second
            // entry would be an OR.
            for r in spec.ingress.iter().flatten() {
                assert_eq!(r.from.as_ref().map(Vec::len), Some(1), "{name}");
            }
        }
    }

    #[test]
    fn proxy_can_be_disabled() {
        let cfg =
            GuardrailsConfig::from_yaml("namespaces: [a]\negressProxy: null\n").expect("parses");
        assert!(cfg.egress_proxy.is_none());
        let b = generate(&cfg).expect("valid");
        assert!(b.network_policies.iter().all(|p| {
            p.metadata.namespace.as_deref() == Some("a")
                && !p.metadata.name.as_deref().unwrap_or("").contains("proxy")
        }));
    }
}
