//! Unit tests of the checks. The message tables follow upstream's
//! `policy/check_*_test.go` expectations (reason and detail strings).

use serde_json::{Value, json};

use super::*;

fn pod(spec: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": spec})
}

fn pod_with_meta(meta: Value, spec: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec})
}

fn run(object: &Value, level: Level, minor: u32) -> Vec<Violation> {
    check(object, level, PolicyVersion::V1(minor)).expect("checkable")
}

/// The single violation of `id` for `spec` at restricted `minor`.
fn only(spec: Value, minor: u32, id: &str) -> (String, String) {
    let vs = run(&pod(spec), Level::Restricted, minor);
    let v = vs
        .iter()
        .find(|v| v.check == id)
        .unwrap_or_else(|| panic!("expected a {id} violation, got {vs:?}"));
    (v.reason.clone(), v.detail.clone())
}

fn ids(vs: &[Violation]) -> Vec<&'static str> {
    vs.iter().map(|v| v.check).collect()
}

fn named(name: &str, sc: Value) -> Value {
    json!({"name": name, "securityContext": sc})
}

#[test]
fn host_namespaces_detail() {
    let vs = run(
        &pod(json!({"hostNetwork": true, "hostIPC": true, "hostPID": true})),
        Level::Baseline,
        37,
    );
    assert_eq!(vs.len(), 1);
    assert_eq!(vs[0].reason, "host namespaces");
    assert_eq!(vs[0].detail, "hostNetwork=true, hostPID=true, hostIPC=true");
    assert_eq!(
        vs[0].to_string(),
        "host namespaces (hostNetwork=true, hostPID=true, hostIPC=true)"
    );
}

#[test]
fn se_linux_options_details() {
    let spec = json!({
    "securityContext": {"seLinuxOptions": {"type": "foo", "user": "bar", "role": "baz"}},
    "containers": [
        named("a", json!({"seLinuxOptions": {"type": "container_t"}})),
        named("b", json!({"seLinuxOptions": {"type": "container_init_t"}})),
        named("c", json!({"seLinuxOptions": {"type": "container_kvm_t"}})),
        named("d", json!({"seLinuxOptions": {"type": "container_engine_t"}})),
        named("e", json!({"seLinuxOptions": {"type": "bar"}})),
        named("f", json!({"seLinuxOptions": {"user": "bar"}})),
        named("g", json!({"seLinuxOptions": {"role": "baz"}})),
    ]});
    let (reason, detail) = only(spec.clone(), 31, "seLinuxOptions");
    assert_eq!(reason, "seLinuxOptions");
    assert_eq!(
        detail,
        r#"pod and containers "e", "f", "g" set forbidden securityContext.seLinuxOptions: types "bar", "foo"; user may not be set; role may not be set"#
    );
    // Before v1.31 container_engine_t is not allowed.
    let (_, detail) = only(spec, 30, "seLinuxOptions");
    assert_eq!(
        detail,
        r#"pod and containers "d", "e", "f", "g" set forbidden securityContext.seLinuxOptions: types "bar", "container_engine_t", "foo"; user may not be set; role may not be set"#
    );
    let (_, detail) = only(
        json!({"securityContext": {"seLinuxOptions": {"user": "bad"}}}),
        37,
        "seLinuxOptions",
    );
    assert_eq!(
        detail,
        "pod set forbidden securityContext.seLinuxOptions: user may not be set"
    );
    let (_, detail) = only(
        json!({"securityContext": {"seLinuxOptions": {"type": "bad"}}}),
        37,
        "seLinuxOptions",
    );
    assert_eq!(
        detail,
        r#"pod set forbidden securityContext.seLinuxOptions: type "bad""#
    );
}

#[test]
fn restricted_volumes_detail() {
    let mut volumes = vec![
        json!({"name": "a1", "emptyDir": {}}),
        json!({"name": "a2", "secret": {}}),
        json!({"name": "a3", "persistentVolumeClaim": {}}),
        json!({"name": "a4", "downwardAPI": {}}),
        json!({"name": "a5", "configMap": {}}),
        json!({"name": "a6", "projected": {}}),
        json!({"name": "a7", "csi": {}}),
        json!({"name": "a8", "ephemeral": {}}),
        json!({"name": "a9", "image": {}}),
        // no source: the API server defaults it to emptyDir
        json!({"name": "a10"}),
    ];
    let restricted = [
        "hostPath",
        "gcePersistentDisk",
        "awsElasticBlockStore",
        "gitRepo",
        "nfs",
        "iscsi",
        "glusterfs",
        "rbd",
        "flexVolume",
        "cinder",
        "cephfs",
        "flocker",
        "fc",
        "azureFile",
        "vsphereVolume",
        "quobyte",
        "azureDisk",
        "photonPersistentDisk",
        "portworxVolume",
        "scaleIO",
        "storageos",
    ];
    for (i, t) in restricted.iter().enumerate() {
        volumes.push(json!({"name": format!("b{}", i + 1), *t: {}}));
    }
    // a source this crate does not know: upstream names it "unknown"
    volumes.push(json!({"name": "c1", "fancyNewVolume": {}}));
    let (reason, detail) = only(json!({"volumes": volumes}), 37, "restrictedVolumes");
    assert_eq!(reason, "restricted volume types");
    assert_eq!(
        detail,
        concat!(
            r#"volumes "b1", "b2", "b3", "b4", "b5", "b6", "b7", "b8", "b9", "b10", "b11", "b12", "b13", "b14", "b15", "b16", "b17", "b18", "b19", "b20", "b21", "c1""#,
            r#" use restricted volume types "#,
            r#""awsElasticBlockStore", "azureDisk", "azureFile", "cephfs", "cinder", "fc", "flexVolume", "flocker", "gcePersistentDisk", "gitRepo", "glusterfs", "#,
            r#""hostPath", "iscsi", "nfs", "photonPersistentDisk", "portworxVolume", "quobyte", "rbd", "scaleIO", "storageos", "unknown", "vsphereVolume""#
        )
    );
    let (_, detail) = only(
        json!({"volumes": [{"name": "h", "hostPath": {"path": "/"}}]}),
        37,
        "restrictedVolumes",
    );
    assert_eq!(
        detail,
        r#"volume "h" uses restricted volume type "hostPath""#
    );
}

#[test]
fn restricted_volumes_overrides_host_path_volumes() {
    let spec = json!({"volumes": [{"name": "h", "hostPath": {"path": "/"}}]});
    let baseline = run(&pod(spec.clone()), Level::Baseline, 37);
    assert_eq!(ids(&baseline), ["hostPathVolumes"]);
    assert_eq!(baseline[0].detail, r#"volume "h""#);
    let restricted = run(&pod(spec), Level::Restricted, 37);
    assert!(ids(&restricted).contains(&"restrictedVolumes"));
    assert!(!ids(&restricted).contains(&"hostPathVolumes"));
}

#[test]
fn app_armor_fields_and_annotations() {
    let (reason, detail) = only(
        json!({"securityContext": {"appArmorProfile": {"type": "Unconfined"}}}),
        37,
        "appArmorProfile",
    );
    assert_eq!(reason, "forbidden AppArmor profile");
    assert_eq!(
        detail,
        r#"pod must not set AppArmor profile type to "Unconfined""#
    );
    let (_, detail) = only(
        json!({"securityContext": {"appArmorProfile": {"type": "RuntimeDefault"}},
               "initContainers": [named("bar", json!({"appArmorProfile": {"type": "Unconfined"}}))],
               "containers": [{"name": "foo"}]}),
        37,
        "appArmorProfile",
    );
    assert_eq!(
        detail,
        r#"container "bar" must not set AppArmor profile type to "Unconfined""#
    );
    let p = pod_with_meta(
        json!({"annotations": {
            "container.apparmor.security.beta.kubernetes.io/": "bogus",
            "container.apparmor.security.beta.kubernetes.io/a": "",
            "container.apparmor.security.beta.kubernetes.io/b": "runtime/default",
            "container.apparmor.security.beta.kubernetes.io/c": "localhost/",
            "container.apparmor.security.beta.kubernetes.io/d": "localhost/foo",
            "container.apparmor.security.beta.kubernetes.io/e": "unconfined",
            "container.apparmor.security.beta.kubernetes.io/f": "unknown",
            "env": "prod"}}),
        json!({"containers": [{"name": "a"}]}),
    );
    let vs = run(&p, Level::Baseline, 37);
    assert_eq!(ids(&vs), ["appArmorProfile"]);
    assert_eq!(vs[0].reason, "forbidden AppArmor profiles");
    assert_eq!(
        vs[0].detail,
        concat!(
            "annotations must not set AppArmor profile type to ",
            r#""container.apparmor.security.beta.kubernetes.io/="bogus"", "#,
            r#""container.apparmor.security.beta.kubernetes.io/e="unconfined"", "#,
            r#""container.apparmor.security.beta.kubernetes.io/f="unknown"""#
        )
    );
    // Upstream sorts the formatted `key="value"` strings, not the keys: `=`
    // sorts after `-`, so `a-b` comes before `a`.
    let p = pod_with_meta(
        json!({"annotations": {
            "container.apparmor.security.beta.kubernetes.io/a": "unconfined",
            "container.apparmor.security.beta.kubernetes.io/a-b": "unconfined"}}),
        json!({"containers": [{"name": "a"}, {"name": "a-b"}]}),
    );
    assert_eq!(
        run(&p, Level::Baseline, 37)[0].detail,
        concat!(
            "annotations must not set AppArmor profile type to ",
            r#""container.apparmor.security.beta.kubernetes.io/a-b="unconfined"", "#,
            r#""container.apparmor.security.beta.kubernetes.io/a="unconfined"""#
        )
    );
    // The field check applies at every policy version (patched into 1.0 upstream).
    let vs = run(
        &pod(
            json!({"containers": [named("x", json!({"appArmorProfile": {"type": "Unconfined"}}))]}),
        ),
        Level::Baseline,
        0,
    );
    assert_eq!(ids(&vs), ["appArmorProfile"]);
}

#[test]
fn allow_privilege_escalation_and_windows_exemption() {
    let spec = json!({"containers": [
        {"name": "a"},
        named("b", json!({})),
        named("c", json!({"allowPrivilegeEscalation": true})),
        named("d", json!({"allowPrivilegeEscalation": false})),
    ]});
    let (reason, detail) = only(spec, 37, "allowPrivilegeEscalation");
    assert_eq!(reason, "allowPrivilegeEscalation != false");
    assert_eq!(
        detail,
        r#"containers "a", "b", "c" must set securityContext.allowPrivilegeEscalation=false"#
    );

    let windows = pod(
        json!({"os": {"name": "windows"}, "securityContext": {"runAsNonRoot": true},
        "containers": [{"name": "a"}]}),
    );
    assert!(run(&windows, Level::Restricted, 25).is_empty());
    // Before v1.25 the restricted checks apply to Windows pods too.
    assert_eq!(
        ids(&run(&windows, Level::Restricted, 24)),
        [
            "allowPrivilegeEscalation",
            "capabilities_restricted",
            "seccompProfile_restricted"
        ]
    );
    // Before v1.8 the check does not exist.
    assert!(
        !checks_for(Level::Restricted, PolicyVersion::V1(7)).contains(&"allowPrivilegeEscalation")
    );
}

#[test]
fn capabilities_details() {
    let spec = json!({"containers": [
        {"name": "a"},
        named("b", json!({"capabilities": {"drop": ["NET_RAW"]}})),
        named("c", json!({"capabilities": {"drop": ["ALL"], "add": ["NET_BIND_SERVICE", "SYS_ADMIN", "NET_RAW"]}})),
        named("d", json!({"capabilities": {"drop": ["ALL"], "add": ["CHOWN"]}})),
    ]});
    let (reason, detail) = only(spec.clone(), 37, "capabilities_restricted");
    assert_eq!(reason, "unrestricted capabilities");
    assert_eq!(
        detail,
        r#"containers "a", "b" must set securityContext.capabilities.drop=["ALL"]; containers "c", "d" must not include "CHOWN", "NET_RAW", "SYS_ADMIN" in securityContext.capabilities.add"#
    );
    let vs = run(&pod(spec.clone()), Level::Baseline, 37);
    assert_eq!(ids(&vs), ["capabilities_baseline"]);
    assert_eq!(vs[0].reason, "non-default capabilities");
    assert_eq!(
        vs[0].detail,
        r#"container "c" must not include "NET_RAW", "SYS_ADMIN" in securityContext.capabilities.add"#
    );
    // Restricted before v1.22: the baseline check applies, no drop ALL needed.
    let vs = run(&pod(spec), Level::Restricted, 21);
    assert!(ids(&vs).contains(&"capabilities_baseline"));
    assert!(!ids(&vs).contains(&"capabilities_restricted"));
}

#[test]
fn run_as_non_root_and_user() {
    let (reason, detail) = only(
        json!({"securityContext": {"runAsNonRoot": false}, "containers": [
            named("c", json!({"runAsNonRoot": false})), named("e", json!({"runAsNonRoot": true}))]}),
        37,
        "runAsNonRoot",
    );
    assert_eq!(reason, "runAsNonRoot != true");
    assert_eq!(
        detail,
        r#"pod and container "c" must not set securityContext.runAsNonRoot=false"#
    );
    let (_, detail) = only(
        json!({"containers": [{"name": "a"}, named("b", json!({})), named("d", json!({"runAsNonRoot": true}))]}),
        37,
        "runAsNonRoot",
    );
    assert_eq!(
        detail,
        r#"pod or containers "a", "b" must set securityContext.runAsNonRoot=true"#
    );

    let (reason, detail) = only(
        json!({"securityContext": {"runAsUser": 0}, "containers": [
            named("a", json!({"runAsUser": 0})), named("b", json!({"runAsUser": 1000}))]}),
        37,
        "runAsUser",
    );
    assert_eq!(reason, "runAsUser=0");
    assert_eq!(detail, r#"pod and container "a" must not set runAsUser=0"#);
    assert!(!checks_for(Level::Restricted, PolicyVersion::V1(22)).contains(&"runAsUser"));
}

#[test]
fn user_namespace_relaxations_start_at_1_35() {
    let spec = json!({"hostUsers": false,
        "securityContext": {"runAsUser": 0, "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [named("a", json!({"allowPrivilegeEscalation": false,
            "capabilities": {"drop": ["ALL"]}, "procMount": "Unmasked"}))]});
    assert_eq!(
        ids(&run(&pod(spec.clone()), Level::Restricted, 34)),
        ["procMount", "runAsNonRoot", "runAsUser"]
    );
    // v1.35: runAsNonRoot/runAsUser skip user-namespace pods; procMount stays
    // strict at restricted through procMount_restricted.
    assert_eq!(
        ids(&run(&pod(spec.clone()), Level::Restricted, 35)),
        ["procMount_restricted"]
    );
    assert_eq!(
        ids(&run(&pod(spec.clone()), Level::Baseline, 34)),
        ["procMount"]
    );
    assert!(run(&pod(spec), Level::Baseline, 35).is_empty());
}

#[test]
fn seccomp_details() {
    let (reason, detail) = only(
        json!({"securityContext": {"seccompProfile": {"type": "Unconfined"}},
               "containers": [named("a", json!({"seccompProfile": {"type": "Unconfined"}})),
                              named("b", json!({"seccompProfile": {}}))]}),
        37,
        "seccompProfile_restricted",
    );
    assert_eq!(reason, "seccompProfile");
    assert_eq!(
        detail,
        r#"pod and containers "a", "b" must not set securityContext.seccompProfile.type to "", "Unconfined""#
    );
    let (_, detail) = only(
        json!({"containers": [{"name": "a"}]}),
        37,
        "seccompProfile_restricted",
    );
    assert_eq!(
        detail,
        r#"pod or container "a" must set securityContext.seccompProfile.type to "RuntimeDefault" or "Localhost""#
    );
    // v1.0-v1.18: the alpha annotations.
    let p = pod_with_meta(
        json!({"annotations": {
            "seccomp.security.alpha.kubernetes.io/pod": "unconfined",
            "container.seccomp.security.alpha.kubernetes.io/a": "docker/default",
            "container.seccomp.security.alpha.kubernetes.io/b": "unconfined",
            "container.seccomp.security.alpha.kubernetes.io/gone": "unconfined"}}),
        json!({"containers": [{"name": "a"}, {"name": "b"}]}),
    );
    let vs = run(&p, Level::Baseline, 18);
    assert_eq!(ids(&vs), ["seccompProfile_baseline"]);
    assert_eq!(
        vs[0].detail,
        r#"forbidden annotations container.seccomp.security.alpha.kubernetes.io/b="unconfined", seccomp.security.alpha.kubernetes.io/pod="unconfined""#
    );
    assert!(run(&p, Level::Baseline, 19).is_empty());
}

#[test]
fn host_ports_and_probe_hosts() {
    let spec = json!({"containers": [
        {"name": "a", "ports": [{"containerPort": 80}, {"containerPort": 81, "hostPort": 8080}]},
        {"name": "b", "ports": [{"containerPort": 80, "hostPort": 9090}, {"containerPort": 8080, "hostPort": 80}]},
    ]});
    let (reason, detail) = only(spec, 37, "hostPorts");
    assert_eq!(reason, "hostPort");
    assert_eq!(
        detail,
        r#"containers "a", "b" use hostPorts 80, 8080, 9090"#
    );

    let spec = json!({"containers": [
        {"name": "b", "livenessProbe": {"httpGet": {"host": "bad.host", "port": 8080}}},
        {"name": "a", "lifecycle": {"preStop": {"tcpSocket": {"host": "8.8.8.8", "port": 1}}}},
        {"name": "c", "readinessProbe": {"httpGet": {"host": "", "port": 1}}},
    ]});
    let (reason, detail) = only(spec.clone(), 37, "hostProbesAndHostLifecycle");
    assert_eq!(reason, "probe or lifecycle host");
    assert_eq!(
        detail,
        r#"containers "a", "b" use probe or lifecycle hosts "8.8.8.8", "bad.host""#
    );
    assert!(run(&pod(spec), Level::Baseline, 33).is_empty());
}

#[test]
fn host_network_pods_get_defaulted_host_ports() {
    let spec = json!({"hostNetwork": true, "containers": [{"name": "a", "ports": [{"containerPort": 8080}]}]});
    let vs = run(&pod(spec.clone()), Level::Baseline, 37);
    assert_eq!(ids(&vs), ["hostNamespaces", "hostPorts"]);
    assert_eq!(vs[1].detail, r#"container "a" uses hostPort 8080"#);
    // Pod templates are not defaulted (Kubernetes 1.28+).
    let deploy = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
        "spec": {"template": {"spec": spec}}});
    assert_eq!(ids(&run(&deploy, Level::Baseline, 37)), ["hostNamespaces"]);
}

#[test]
fn privileged_proc_mount_sysctls_host_process() {
    let (reason, detail) = only(
        json!({"containers": [named("a", json!({"privileged": true})), named("b", json!({"privileged": false}))]}),
        37,
        "privileged",
    );
    assert_eq!(reason, "privileged");
    assert_eq!(
        detail,
        r#"container "a" must not set securityContext.privileged=true"#
    );

    let vs = run(
        &pod(
            json!({"containers": [named("a", json!({"procMount": "Unmasked"})),
            named("b", json!({"procMount": "Default"})), named("c", json!({"procMount": "Other"}))]}),
        ),
        Level::Baseline,
        37,
    );
    assert_eq!(vs[0].reason, "procMount");
    assert_eq!(
        vs[0].detail,
        r#"containers "a", "c" must not set securityContext.procMount to "Other", "Unmasked""#
    );

    let sysctl_pod = |names: &[&str]| {
        pod(
            json!({"securityContext": {"sysctls": names.iter().map(|n| json!({"name": n, "value": "1"})).collect::<Vec<_>>()}}),
        )
    };
    let reserved = sysctl_pod(&["net.ipv4.ip_local_reserved_ports"]);
    assert_eq!(
        run(&reserved, Level::Baseline, 26)[0].detail,
        "net.ipv4.ip_local_reserved_ports"
    );
    assert!(run(&reserved, Level::Baseline, 27).is_empty());
    let keepalive = sysctl_pod(&["net.ipv4.tcp_keepalive_time", "net.ipv4.tcp_fin_timeout"]);
    assert_eq!(
        run(&keepalive, Level::Baseline, 28)[0].to_string(),
        "forbidden sysctls (net.ipv4.tcp_keepalive_time, net.ipv4.tcp_fin_timeout)"
    );
    assert!(run(&keepalive, Level::Baseline, 29).is_empty());
    let rmem = sysctl_pod(&["net.ipv4.tcp_rmem", "net.ipv4.tcp_wmem"]);
    assert!(!run(&rmem, Level::Baseline, 31).is_empty());
    assert!(run(&rmem, Level::Baseline, 32).is_empty());
    let lowat = sysctl_pod(&[
        "net.ipv4.tcp_notsent_lowat",
        "net.ipv4.tcp_slow_start_after_idle",
    ]);
    assert!(!run(&lowat, Level::Baseline, 36).is_empty());
    assert!(run(&lowat, Level::Baseline, 37).is_empty());

    let (reason, detail) = only(
        json!({"securityContext": {"windowsOptions": {"hostProcess": true}},
               "containers": [named("a", json!({"windowsOptions": {"hostProcess": true}})),
                              named("b", json!({"windowsOptions": {"hostProcess": false}}))]}),
        37,
        "windowsHostProcess",
    );
    assert_eq!(reason, "hostProcess");
    assert_eq!(
        detail,
        r#"pod and container "a" must not set securityContext.windowsOptions.hostProcess=true"#
    );
}

#[test]
fn versions_parse_clamp_and_print() {
    assert_eq!("v1.33".parse::<PolicyVersion>(), Ok(PolicyVersion::V1(33)));
    assert_eq!("1.0".parse::<PolicyVersion>(), Ok(PolicyVersion::V1(0)));
    assert_eq!("latest".parse::<PolicyVersion>(), Ok(PolicyVersion::Latest));
    for bad in [
        "v2.1",
        "v1.",
        "v1.x",
        "v1.-1",
        "",
        "1",
        "v1.33.0",
        "v1.999999",
    ] {
        assert!(
            bad.parse::<PolicyVersion>().is_err(),
            "{bad:?} must be rejected"
        );
    }
    assert_eq!(PolicyVersion::V1(99).effective_minor(), 37);
    assert_eq!(PolicyVersion::Latest.effective_minor(), 37);
    assert_eq!(PolicyVersion::V1(33).to_string(), "v1.33");
    assert_eq!(
        checks_for(Level::Restricted, PolicyVersion::Latest),
        checks_for(Level::Restricted, PolicyVersion::V1(40))
    );
    assert!(checks_for(Level::Privileged, PolicyVersion::Latest).is_empty());
    assert_eq!("restricted".parse::<Level>(), Ok(Level::Restricted));
    assert!("Restricted".parse::<Level>().is_err());
}

#[test]
fn restricted_check_sets_by_version() {
    assert_eq!(
        checks_for(Level::Restricted, PolicyVersion::V1(37)),
        [
            "appArmorProfile",
            "hostNamespaces",
            "hostPorts",
            "hostProbesAndHostLifecycle",
            "privileged",
            "seLinuxOptions",
            "sysctls",
            "windowsHostProcess",
            "allowPrivilegeEscalation",
            "capabilities_restricted",
            "procMount_restricted",
            "restrictedVolumes",
            "runAsNonRoot",
            "runAsUser",
            "seccompProfile_restricted",
        ]
    );
    assert_eq!(
        checks_for(Level::Restricted, PolicyVersion::V1(0)),
        [
            "appArmorProfile",
            "capabilities_baseline",
            "hostNamespaces",
            "hostPorts",
            "privileged",
            "procMount",
            "seLinuxOptions",
            "seccompProfile_baseline",
            "sysctls",
            "windowsHostProcess",
            "restrictedVolumes",
            "runAsNonRoot",
        ]
    );
    assert_eq!(checks_for(Level::Baseline, PolicyVersion::V1(37)).len(), 12);
}

/// Every kind with a pod template is checked on its template.
#[test]
fn workload_kinds() {
    let bad_template = json!({"metadata": {"annotations": {
        "container.apparmor.security.beta.kubernetes.io/app": "unconfined"}},
        "spec": {"containers": [{"name": "app", "securityContext": {"privileged": true}}]}});
    let kinds = [
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "spec": {"template": bad_template}}),
        json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "spec": {"template": bad_template}}),
        json!({"apiVersion": "apps/v1", "kind": "DaemonSet", "spec": {"template": bad_template}}),
        json!({"apiVersion": "apps/v1", "kind": "ReplicaSet", "spec": {"template": bad_template}}),
        json!({"apiVersion": "extensions/v1beta1", "kind": "Deployment", "spec": {"template": bad_template}}),
        json!({"apiVersion": "v1", "kind": "ReplicationController", "spec": {"template": bad_template}}),
        json!({"apiVersion": "batch/v1", "kind": "Job", "spec": {"template": bad_template}}),
        json!({"apiVersion": "batch/v1", "kind": "CronJob", "spec": {"jobTemplate": {"spec": {"template": bad_template}}}}),
        json!({"apiVersion": "v1", "kind": "PodTemplate", "template": bad_template}),
    ];
    for obj in &kinds {
        let vs = run(obj, Level::Baseline, 37);
        assert_eq!(ids(&vs), ["appArmorProfile", "privileged"], "{obj}");
    }
    // Not workloads.
    for obj in [
        json!({"apiVersion": "v1", "kind": "Service", "spec": {}}),
        json!({"apiVersion": "example.com/v1", "kind": "Deployment", "spec": {"template": bad_template}}),
        json!({"apiVersion": "extensions/v1beta1", "kind": "StatefulSet", "spec": {"template": bad_template}}),
    ] {
        assert!(matches!(
            check(&obj, Level::Baseline, PolicyVersion::Latest),
            Err(CheckError::NotAWorkload { .. })
        ));
    }
    // A ReplicationController may omit its template; upstream admits it.
    let rc = json!({"apiVersion": "v1", "kind": "ReplicationController", "spec": {}});
    assert!(run(&rc, Level::Restricted, 37).is_empty());
    // Missing template is an error naming the path.
    let e = check(
        &json!({"apiVersion": "batch/v1", "kind": "CronJob", "spec": {"jobTemplate": {"spec": {}}}}),
        Level::Baseline,
        PolicyVersion::Latest,
    )
    .expect_err("missing template");
    assert_eq!(
        e.to_string(),
        "spec.jobTemplate.spec.template: required field is missing"
    );
    // Errors inside a template carry the template path.
    let e = check(
        &json!({"apiVersion": "apps/v1", "kind": "Deployment", "spec": {"template": {"spec": {"hostPID": "yes"}}}}),
        Level::Baseline,
        PolicyVersion::Latest,
    )
    .expect_err("bad type");
    assert_eq!(
        e.to_string(),
        "spec.template.spec.hostPID: expected boolean, found string"
    );
}

#[test]
fn typed_objects_are_checked() {
    use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
    use k8s_openapi::api::core::v1::{Container, PodSpec, PodTemplateSpec, SecurityContext};
    let d = Deployment {
        spec: DeploymentSpec {
            template: PodTemplateSpec {
                spec: Some(PodSpec {
                    host_pid: Some(true),
                    containers: vec![Container {
                        name: "a".into(),
                        security_context: Some(SecurityContext {
                            allow_privilege_escalation: Some(true),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }],
                    ..Default::default()
                }),
                ..Default::default()
            },
            ..Default::default()
        },
        ..Default::default()
    };
    let vs = check_typed(&d, Level::Baseline, PolicyVersion::Latest).expect("checkable");
    assert_eq!(ids(&vs), ["hostNamespaces"]);
}

#[test]
fn check_pod_spec_reads_bare_specs() {
    let vs = check_pod_spec(
        Some(&json!({"annotations": {"seccomp.security.alpha.kubernetes.io/pod": "unconfined"}})),
        &json!({"containers": [{"name": "a"}]}),
        Level::Baseline,
        PolicyVersion::V1(10),
    )
    .expect("checkable");
    assert_eq!(ids(&vs), ["seccompProfile_baseline"]);
    assert!(check_pod_spec(None, &json!([]), Level::Baseline, PolicyVersion::Latest).is_err());
}
