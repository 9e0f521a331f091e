//! Snapshot tests of generated bundles (committed `.snap` files; with
//! `CI=true` a missing or changed snapshot fails).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use kubesafe_guardrails::netpol::{GuardrailsConfig, generate};

fn bundle_yaml(config: &str) -> String {
    let cfg = GuardrailsConfig::from_yaml(config).expect("config parses");
    generate(&cfg)
        .expect("config is valid")
        .to_yaml()
        .expect("serialises")
}

#[test]
fn minimal_config() {
    insta::assert_snapshot!(bundle_yaml("namespaces: [shop]\n"));
}

#[test]
fn full_config() {
    insta::assert_snapshot!(bundle_yaml(
        r#"
namespaces:
  - shop
  - name: legacy
    podSecurity: {enforce: baseline, warn: restricted, audit: restricted}
  - payments
podSecurity:
  enforce: restricted
  version: v1.33
dns:
  namespace: kube-system
  podSelector: {k8s-app: kube-dns}
egressProxy:
  namespace: egress-system
  podSelector: {app.kubernetes.io/name: egress-proxy}
  port: 3128
  upstreamPorts: [443, 80]
ingressController:
  namespace: ingress-nginx
  podSelector: {app.kubernetes.io/name: ingress-nginx}
monitoring:
  namespace: monitoring
  podSelector: {app.kubernetes.io/name: prometheus}
  ports: [9090, 8080]
apiServer:
  endpoints: [10.0.0.12, 10.0.0.10, "fd00:10::5"]
  port: 6443
"#
    ));
}

#[test]
fn custom_proxy_and_dns_ipv4_all_ports() {
    insta::assert_snapshot!(bundle_yaml(
        r#"
namespaces: [b-team, a-team]
dns:
  namespace: dns-system
  podSelector: {app.kubernetes.io/name: coredns}
egressProxy:
  namespace: proxy
  port: 8080
  upstreamPorts: []
  ipv6: false
"#
    ));
}

#[test]
fn proxy_disabled() {
    insta::assert_snapshot!(bundle_yaml("namespaces: [shop]\negressProxy: null\n"));
}
