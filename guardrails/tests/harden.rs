//! `harden`: worked cases and the property test over random pod specs.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;

use kubesafe_guardrails::pss::{HardenOptions, Level, PolicyVersion, check, harden};
use proptest::prelude::*;
use serde_json::{Value, json};

fn pod(spec: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": spec})
}

fn violated(object: &Value, level: Level, version: PolicyVersion) -> BTreeSet<&'static str> {
    check(object, level, version)
        .expect("checkable")
        .iter()
        .map(|v| v.check)
        .collect()
}

/// `small` is contained in `big`: every field of `small` is in `big` with the
/// same value, arrays may only have grown at the end. This is "harden never
/// overrides or drops anything".
fn is_subvalue(small: &Value, big: &Value) -> bool {
    match (small, big) {
        (Value::Object(a), Value::Object(b)) => a.iter().all(|(k, v)| {
            b.get(k).is_some_and(|bv| is_subvalue(v, bv)) || (v.is_null() && b.get(k).is_some())
        }),
        (Value::Array(a), Value::Array(b)) => {
            a.len() <= b.len() && a.iter().zip(b).all(|(x, y)| is_subvalue(x, y))
        }
        (a, b) => a == b,
    }
}

#[test]
fn plain_deployment_becomes_restricted() {
    let deploy = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
        "spec": {"selector": {"matchLabels": {"app": "web"}}, "template": {
            "metadata": {"labels": {"app": "web"}},
            "spec": {"initContainers": [{"name": "init", "image": "busybox"}],
                     "containers": [{"name": "app", "image": "nginx",
                        "securityContext": {"capabilities": {"drop": ["NET_RAW"]}}}]}}}});
    let opts = HardenOptions::for_version(PolicyVersion::V1(33));
    let out = harden(&deploy, Level::Restricted, &opts).expect("hardens");
    assert!(out.unfixable.is_empty(), "{:?}", out.unfixable);
    assert!(
        check(&out.object, Level::Restricted, opts.version)
            .unwrap()
            .is_empty()
    );
    let changes: Vec<String> = out
        .changes
        .iter()
        .map(|c| format!("{} = {}", c.path, c.description))
        .collect();
    assert_eq!(
        changes,
        [
            "spec.template.spec.initContainers[0].securityContext.allowPrivilegeEscalation = false",
            "spec.template.spec.containers[0].securityContext.allowPrivilegeEscalation = false",
            "spec.template.spec.initContainers[0].securityContext.capabilities.drop = \"ALL\" appended",
            "spec.template.spec.containers[0].securityContext.capabilities.drop = \"ALL\" appended",
            "spec.template.spec.securityContext.runAsNonRoot = true",
            "spec.template.spec.securityContext.runAsUser = 65532",
            "spec.template.spec.securityContext.seccompProfile = {type: RuntimeDefault}",
        ]
    );
    let drop = &out.object["spec"]["template"]["spec"]["containers"][0]["securityContext"]["capabilities"]
        ["drop"];
    assert_eq!(drop, &json!(["NET_RAW", "ALL"]));
    // Idempotent.
    let again = harden(&out.object, Level::Restricted, &opts).expect("hardens");
    assert!(again.changes.is_empty());
    assert_eq!(again.object, out.object);
}

#[test]
fn explicit_choices_are_reported_not_overridden() {
    let p = pod(json!({
        "hostNetwork": true,
        "securityContext": {"runAsNonRoot": false, "seccompProfile": {"type": "Unconfined"}},
        "containers": [
            {"name": "a", "securityContext": {"privileged": true}},
            {"name": "b", "securityContext": {"allowPrivilegeEscalation": true, "runAsUser": 0,
                "capabilities": {"add": ["NET_ADMIN"]}}},
        ],
        "volumes": [{"name": "host", "hostPath": {"path": "/var/run"}}]}));
    let out = harden(&p, Level::Restricted, &HardenOptions::default()).expect("hardens");
    let unfixable: BTreeSet<&str> = out.unfixable.iter().map(|u| u.check).collect();
    assert_eq!(
        unfixable,
        BTreeSet::from([
            "allowPrivilegeEscalation",
            "capabilities_restricted",
            "hostNamespaces",
            "privileged",
            "restrictedVolumes",
            "runAsNonRoot",
            "runAsUser",
            "seccompProfile_restricted",
        ])
    );
    let messages: Vec<&str> = out.unfixable.iter().map(|u| u.message.as_str()).collect();
    assert!(messages.contains(
        &"container \"a\" is privileged; the API rejects allowPrivilegeEscalation=false there"
    ));
    assert!(
        messages.contains(&"container \"b\" sets securityContext.allowPrivilegeEscalation=true")
    );
    assert!(messages.contains(
        &"container \"b\" adds NET_ADMIN; the restricted level allows only NET_BIND_SERVICE"
    ));
    // Only drop ALL was added; nothing explicit changed.
    assert!(is_subvalue(&p, &out.object));
    assert!(
        out.changes
            .iter()
            .all(|c| c.path.ends_with("capabilities.drop")),
        "{:?}",
        out.changes
    );
    assert!(
        harden(&p, Level::Baseline, &HardenOptions::default())
            .unwrap()
            .changes
            .is_empty()
    );
}

/// The UID each container runs as when its own `runAsUser` is unset: the
/// pod's (or `None`, the image's `USER`). Ephemeral containers included.
fn effective_users(spec: &Value) -> Vec<(String, Option<Value>)> {
    let pod_user = spec.pointer("/securityContext/runAsUser").cloned();
    ["initContainers", "containers", "ephemeralContainers"]
        .iter()
        .flat_map(|list| spec[*list].as_array().cloned().unwrap_or_default())
        .map(|c| {
            let own = c.pointer("/securityContext/runAsUser").cloned();
            (
                c["name"].as_str().unwrap_or("").to_string(),
                own.or_else(|| pod_user.clone()),
            )
        })
        .collect()
}

/// A pod-level `runAsUser` would also change the UID of containers that
/// already comply (or explicitly chose `runAsNonRoot: false`): harden puts the
/// UID on the containers that need it unless every container without its own
/// `runAsUser` does.
#[test]
fn run_as_user_only_changes_containers_that_need_it() {
    let p = pod(json!({"containers": [
        {"name": "ok", "image": "app", "securityContext": {"runAsNonRoot": true}},
        {"name": "fix", "image": "nginx"},
    ]}));
    let out = harden(&p, Level::Restricted, &HardenOptions::default()).unwrap();
    assert!(out.unfixable.is_empty(), "{:?}", out.unfixable);
    assert!(
        check(&out.object, Level::Restricted, PolicyVersion::NEWEST_KNOWN)
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        effective_users(&out.object["spec"]),
        [
            ("ok".to_string(), None),
            ("fix".to_string(), Some(json!(65532)))
        ]
    );
    // All containers need it: one pod-level field, as before.
    let p = pod(
        json!({"containers": [{"name": "a"}, {"name": "b", "securityContext": {"runAsUser": 1000}}]}),
    );
    let out = harden(&p, Level::Restricted, &HardenOptions::default()).unwrap();
    assert_eq!(
        out.object["spec"]["securityContext"]["runAsUser"],
        json!(65532)
    );
    assert_eq!(
        effective_users(&out.object["spec"]),
        [
            ("a".to_string(), Some(json!(65532))),
            ("b".to_string(), Some(json!(1000)))
        ]
    );
}

#[test]
fn windows_pods_get_no_linux_fields() {
    let p = pod(json!({"os": {"name": "windows"}, "containers": [{"name": "a"}]}));
    let mut opts = HardenOptions::default();
    opts.read_only_root_filesystem = true;
    let out = harden(&p, Level::Restricted, &opts).unwrap();
    assert!(out.unfixable.is_empty());
    let changes: Vec<&str> = out.changes.iter().map(|c| c.path.as_str()).collect();
    assert_eq!(changes, ["spec.securityContext.runAsNonRoot"]);
    // Before v1.25 the Linux-only checks apply and cannot be satisfied.
    let out = harden(
        &p,
        Level::Restricted,
        &HardenOptions::for_version(PolicyVersion::V1(24)),
    )
    .unwrap();
    let unfixable: Vec<&str> = out.unfixable.iter().map(|u| u.check).collect();
    assert_eq!(
        unfixable,
        [
            "allowPrivilegeEscalation",
            "capabilities_restricted",
            "seccompProfile_restricted"
        ]
    );
}

#[test]
fn extras_read_only_root_and_proxy() {
    let p = pod(json!({"containers": [
        {"name": "a", "volumeMounts": [{"name": "cache", "mountPath": "/tmp"}]},
        {"name": "b", "env": [{"name": "NO_PROXY", "value": "mine"}]},
        {"name": "c", "securityContext": {"readOnlyRootFilesystem": false}},
    ], "volumes": [{"name": "cache", "emptyDir": {}}]}));
    let mut opts = HardenOptions::default();
    opts.read_only_root_filesystem = true;
    opts.writable_paths = vec!["/tmp".into(), "/var/cache/nginx".into()];
    opts.proxy_url = Some("http://egress-proxy.egress-system.svc:3128".into());
    let out = harden(&p, Level::Baseline, &opts).unwrap();
    let spec = &out.object["spec"];
    assert_eq!(
        spec["containers"][0]["securityContext"]["readOnlyRootFilesystem"],
        json!(true)
    );
    assert_eq!(
        spec["containers"][0]["volumeMounts"],
        json!([{"name": "cache", "mountPath": "/tmp"}, {"name": "kubesafe-var-cache-nginx", "mountPath": "/var/cache/nginx"}])
    );
    // An explicit readOnlyRootFilesystem: false is left alone.
    assert_eq!(
        spec["containers"][2]["securityContext"],
        json!({"readOnlyRootFilesystem": false})
    );
    assert_eq!(
        spec["volumes"],
        json!([{"name": "cache", "emptyDir": {}}, {"name": "kubesafe-tmp", "emptyDir": {}}, {"name": "kubesafe-var-cache-nginx", "emptyDir": {}}])
    );
    let env_b: Vec<&str> = spec["containers"][1]["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        env_b,
        [
            "NO_PROXY",
            "HTTP_PROXY",
            "HTTPS_PROXY",
            "http_proxy",
            "https_proxy",
            "no_proxy"
        ]
    );
    assert_eq!(spec["containers"][1]["env"][0]["value"], json!("mine"));
    let again = harden(&out.object, Level::Baseline, &opts).unwrap();
    assert!(again.changes.is_empty(), "{:?}", again.changes);
    // Bad options are errors.
    let mut bad = HardenOptions::default();
    bad.run_as_user = Some(0);
    assert!(harden(&p, Level::Restricted, &bad).is_err());
    let mut bad = HardenOptions::default();
    bad.writable_paths = vec!["tmp".into()];
    assert!(harden(&p, Level::Restricted, &bad).is_err());
}

// ---------------------------------------------------------------------------
// property test

fn opt<T: Clone + std::fmt::Debug + 'static>(
    s: impl Strategy<Value = T> + 'static,
) -> BoxedStrategy<Option<T>> {
    prop_oneof![2 => Just(None), 3 => s.prop_map(Some)].boxed()
}

fn pick(values: &'static [&'static str]) -> BoxedStrategy<String> {
    proptest::sample::select(values)
        .prop_map(str::to_string)
        .boxed()
}

fn subset(values: &'static [&'static str]) -> BoxedStrategy<Vec<String>> {
    proptest::sample::subsequence(values, 0..=values.len())
        .prop_map(|v| v.into_iter().map(str::to_string).collect())
        .boxed()
}

fn profile() -> BoxedStrategy<Value> {
    prop_oneof![
        pick(&["RuntimeDefault", "Localhost", "Unconfined"]).prop_map(|t| json!({"type": t})),
        Just(json!({})),
    ]
    .boxed()
}

fn any_container_sc() -> BoxedStrategy<Value> {
    (
        (
            opt(any::<bool>()),
            opt(any::<bool>()),
            opt(any::<bool>()),
            opt(prop_oneof![Just(0i64), Just(1000i64)]),
        ),
        (
            opt((
                subset(&["NET_BIND_SERVICE", "CHOWN", "SYS_ADMIN", "NET_RAW"]),
                subset(&["ALL", "NET_RAW"]),
            )),
            opt(pick(&["Default", "Unmasked"])),
            opt(profile()),
            opt(pick(&["RuntimeDefault", "Unconfined"])),
        ),
        (
            opt(pick(&["container_t", "spc_t"])),
            opt(any::<bool>()),
            opt(any::<bool>()),
        ),
    )
        .prop_map(
            |(
                (privileged, ape, non_root, user),
                (caps, proc_mount, seccomp, apparmor),
                (selinux, host_process, rorfs),
            )| {
                sc_value(
                    privileged,
                    ape,
                    non_root,
                    user,
                    caps,
                    proc_mount,
                    seccomp,
                    apparmor,
                    selinux,
                    host_process,
                    rorfs,
                )
            },
        )
        .boxed()
}

/// Only values some level accepts as they are (harden may still have to add
/// fields for restricted).
fn benign_container_sc() -> BoxedStrategy<Value> {
    (
        (
            opt(Just(false)),
            opt(Just(false)),
            opt(Just(true)),
            opt(Just(1000i64)),
        ),
        (
            opt((subset(&["NET_BIND_SERVICE"]), subset(&["ALL", "NET_RAW"]))),
            opt(Just("Default".to_string())),
            opt(pick(&["RuntimeDefault", "Localhost"]).prop_map(|t| json!({"type": t}))),
            opt(Just("RuntimeDefault".to_string())),
        ),
        (
            opt(Just("container_t".to_string())),
            opt(Just(false)),
            opt(any::<bool>()),
        ),
    )
        .prop_map(
            |(
                (privileged, ape, non_root, user),
                (caps, proc_mount, seccomp, apparmor),
                (selinux, host_process, rorfs),
            )| {
                sc_value(
                    privileged,
                    ape,
                    non_root,
                    user,
                    caps,
                    proc_mount,
                    seccomp,
                    apparmor,
                    selinux,
                    host_process,
                    rorfs,
                )
            },
        )
        .boxed()
}

/// Mostly benign, sometimes anything.
fn container_sc() -> BoxedStrategy<Value> {
    prop_oneof![6 => benign_container_sc(), 1 => any_container_sc()].boxed()
}

#[allow(clippy::too_many_arguments)]
fn sc_value(
    privileged: Option<bool>,
    ape: Option<bool>,
    non_root: Option<bool>,
    user: Option<i64>,
    caps: Option<(Vec<String>, Vec<String>)>,
    proc_mount: Option<String>,
    seccomp: Option<Value>,
    apparmor: Option<String>,
    selinux: Option<String>,
    host_process: Option<bool>,
    rorfs: Option<bool>,
) -> Value {
    let mut sc = serde_json::Map::new();
    let mut put = |k: &str, v: Option<Value>| {
        if let Some(v) = v {
            sc.insert(k.to_string(), v);
        }
    };
    put("privileged", privileged.map(Value::Bool));
    put("allowPrivilegeEscalation", ape.map(Value::Bool));
    put("runAsNonRoot", non_root.map(Value::Bool));
    put("runAsUser", user.map(|u| json!(u)));
    put(
        "capabilities",
        caps.map(|(add, drop)| json!({"add": add, "drop": drop})),
    );
    put("procMount", proc_mount.map(Value::String));
    put("seccompProfile", seccomp);
    put("appArmorProfile", apparmor.map(|t| json!({"type": t})));
    put("seLinuxOptions", selinux.map(|t| json!({"type": t})));
    put(
        "windowsOptions",
        host_process.map(|h| json!({"hostProcess": h})),
    );
    put("readOnlyRootFilesystem", rorfs.map(Value::Bool));
    Value::Object(sc)
}

fn container(name: String) -> BoxedStrategy<Value> {
    (
        opt(container_sc()),
        opt(prop_oneof![6 => Just(0i64), 1 => Just(8080i64)]),
        opt(prop_oneof![6 => Just(String::new()), 1 => Just("bad.host".to_string())]),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(move |(sc, host_port, probe_host, tmp_mount, env)| {
            let mut c = json!({"name": name, "image": "registry.k8s.io/pause"});
            if let Some(sc) = sc {
                c["securityContext"] = sc;
            }
            if let Some(hp) = host_port {
                c["ports"] = json!([{"containerPort": 80, "hostPort": hp}]);
            }
            if let Some(h) = probe_host {
                c["livenessProbe"] = json!({"httpGet": {"host": h, "port": 80}});
            }
            if tmp_mount {
                c["volumeMounts"] = json!([{"name": "scratch", "mountPath": "/tmp"}]);
            }
            if env {
                c["env"] = json!([{"name": "HTTPS_PROXY", "value": "http://other:1"}]);
            }
            c
        })
        .boxed()
}

fn containers(
    prefix: &'static str,
    range: std::ops::RangeInclusive<usize>,
) -> BoxedStrategy<Vec<Value>> {
    proptest::collection::vec(Just(()), range)
        .prop_flat_map(move |v| {
            v.iter()
                .enumerate()
                .map(|(i, _)| container(format!("{prefix}{i}")))
                .collect::<Vec<_>>()
        })
        .boxed()
}

fn pod_spec() -> BoxedStrategy<Value> {
    (
        (containers("c", 1..=3), containers("i", 0..=2), containers("e", 0..=1)),
        (
            opt(prop_oneof![8 => Just(false), 1 => Just(true)]),
            opt(prop_oneof![8 => Just(false), 1 => Just(true)]),
            opt(any::<bool>()),
            opt(prop_oneof![4 => Just("linux".to_string()), 1 => Just("windows".to_string())]),
        ),
        (
            opt(prop_oneof![6 => Just(true), 1 => Just(false)]),
            opt(prop_oneof![6 => Just(1000i64), 1 => Just(0i64)]),
            opt(prop_oneof![6 => pick(&["RuntimeDefault", "Localhost"]).prop_map(|t| json!({"type": t})), 1 => profile()]),
            opt(prop_oneof![
                6 => subset(&["kernel.shm_rmid_forced", "net.ipv4.tcp_rmem"]),
                1 => subset(&["kernel.shm_rmid_forced", "net.ipv4.tcp_rmem", "kernel.msgmax"]),
            ]),
            opt(prop_oneof![6 => Just("RuntimeDefault".to_string()), 1 => Just("Unconfined".to_string())]),
        ),
        prop_oneof![
            6 => subset(&["emptyDir", "configMap", "none"]),
            1 => subset(&["emptyDir", "hostPath", "configMap", "nfs", "none"]),
        ],
    )
        .prop_map(|((cs, inits, eph), (host_net, host_pid, host_users, os), (non_root, user, seccomp, sysctls, apparmor), vols)| {
            let mut spec = json!({"containers": cs});
            if !inits.is_empty() {
                spec["initContainers"] = Value::Array(inits);
            }
            if !eph.is_empty() {
                spec["ephemeralContainers"] = Value::Array(eph);
            }
            if let Some(b) = host_net {
                spec["hostNetwork"] = json!(b);
            }
            if let Some(b) = host_pid {
                spec["hostPID"] = json!(b);
            }
            if let Some(b) = host_users {
                spec["hostUsers"] = json!(b);
            }
            if let Some(os) = os {
                spec["os"] = json!({"name": os});
            }
            let mut sc = serde_json::Map::new();
            if let Some(b) = non_root {
                sc.insert("runAsNonRoot".into(), json!(b));
            }
            if let Some(u) = user {
                sc.insert("runAsUser".into(), json!(u));
            }
            if let Some(p) = seccomp {
                sc.insert("seccompProfile".into(), p);
            }
            if let Some(names) = sysctls {
                sc.insert(
                    "sysctls".into(),
                    names.iter().map(|n| json!({"name": n, "value": "1"})).collect(),
                );
            }
            if let Some(t) = apparmor {
                sc.insert("appArmorProfile".into(), json!({"type": t}));
            }
            if !sc.is_empty() {
                spec["securityContext"] = Value::Object(sc);
            }
            let mut volumes: Vec<Value> = vols
                .iter()
                .map(|v| match v.as_str() {
                    "emptyDir" => json!({"name": "scratch", "emptyDir": {}}),
                    "hostPath" => json!({"name": "host", "hostPath": {"path": "/var/log"}}),
                    "configMap" => json!({"name": "cfg", "configMap": {"name": "cfg"}}),
                    "nfs" => json!({"name": "share", "nfs": {"server": "nfs", "path": "/"}}),
                    _ => json!({"name": "implicit"}),
                })
                .collect();
            if !volumes.iter().any(|v| v["name"] == "scratch") {
                volumes.push(json!({"name": "scratch", "emptyDir": {}}));
            }
            spec["volumes"] = Value::Array(volumes);
            spec
        })
        .boxed()
}

fn version() -> BoxedStrategy<PolicyVersion> {
    prop_oneof![
        Just(PolicyVersion::Latest),
        (0u32..=40).prop_map(PolicyVersion::V1),
    ]
    .boxed()
}

fn wrap(spec: Value, kind: u8) -> Value {
    match kind % 3 {
        0 => pod(spec),
        1 => json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
            "spec": {"template": {"metadata": {"annotations": {
                "container.apparmor.security.beta.kubernetes.io/c0": "runtime/default"}}, "spec": spec}}}),
        _ => json!({"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "cj"},
            "spec": {"schedule": "* * * * *", "jobTemplate": {"spec": {"template": {"spec": spec}}}}}),
    }
}

const LINUX_ONLY: &[&str] = &[
    "allowPrivilegeEscalation",
    "capabilities",
    "seccompProfile",
    "runAsUser",
    "readOnlyRootFilesystem",
];

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// For random pod specs: the hardened object passes `check` at the level
    /// unless harden reported an unfixable item, every check still failing is
    /// one harden reported, harden only adds (never overrides or drops), sets
    /// no Linux-only field on a Windows pod, and is idempotent.
    #[test]
    fn harden_output_passes_unless_unfixable(
        spec in pod_spec(),
        kind in 0u8..3,
        restricted in any::<bool>(),
        version in version(),
        read_only_root in any::<bool>(),
        proxy in any::<bool>(),
    ) {
        let level = if restricted { Level::Restricted } else { Level::Baseline };
        let object = wrap(spec, kind);
        let mut opts = HardenOptions::for_version(version);
        opts.read_only_root_filesystem = read_only_root;
        if proxy {
            opts.proxy_url = Some("http://egress-proxy.egress-system:3128".to_string());
        }
        let out = harden(&object, level, &opts).expect("harden accepts well-formed objects");

        let still_failing = violated(&out.object, level, version);
        let unfixable: BTreeSet<&str> = out.unfixable.iter().map(|u| u.check).collect();
        if out.unfixable.is_empty() {
            prop_assert!(still_failing.is_empty(), "no unfixable item reported but {still_failing:?} fail");
        }
        prop_assert!(
            still_failing.is_subset(&unfixable),
            "{still_failing:?} still fail, but only {unfixable:?} were reported unfixable"
        );
        // Whatever harden reported as unfixable was failing in the input.
        let failing_before = violated(&object, level, version);
        for id in &unfixable {
            prop_assert!(*id == "readOnlyRootFilesystem" || failing_before.contains(id), "{id} reported but never failed");
        }
        prop_assert!(is_subvalue(&object, &out.object), "harden changed or dropped an existing field");
        // Containers that made their own runAsNonRoot choice run as the same
        // UID as before (a pod-level runAsUser would silently change it).
        let spec_of = |o: &Value| {
            o.pointer("/spec/template/spec")
                .or_else(|| o.pointer("/spec/jobTemplate/spec/template/spec"))
                .or_else(|| o.pointer("/spec"))
                .cloned()
                .unwrap_or(Value::Null)
        };
        let (before, after) = (spec_of(&object), spec_of(&out.object));
        let chose: Vec<String> = ["initContainers", "containers", "ephemeralContainers"]
            .iter()
            .flat_map(|l| before[*l].as_array().cloned().unwrap_or_default())
            .filter(|c| c.pointer("/securityContext/runAsNonRoot").is_some_and(|v| !v.is_null()))
            .map(|c| c["name"].as_str().unwrap_or("").to_string())
            .collect();
        for ((name, uid_before), (_, uid_after)) in effective_users(&before).into_iter().zip(effective_users(&after)) {
            if chose.contains(&name) {
                prop_assert_eq!(uid_before, uid_after, "UID of {} changed", name);
            }
        }
        let windows = out.object.pointer("/spec/os/name").or_else(|| out.object.pointer("/spec/template/spec/os/name"))
            .or_else(|| out.object.pointer("/spec/jobTemplate/spec/template/spec/os/name"))
            == Some(&json!("windows"));
        if windows {
            for c in &out.changes {
                prop_assert!(!LINUX_ONLY.iter().any(|f| c.path.contains(f)), "Linux-only change on a Windows pod: {}", c.path);
            }
        }

        let again = harden(&out.object, level, &opts).expect("hardens again");
        prop_assert!(again.changes.is_empty(), "second run changed {:?}", again.changes);
        prop_assert_eq!(&again.object, &out.object);
        let again_unfixable: BTreeSet<&str> = again.unfixable.iter().map(|u| u.check).collect();
        prop_assert_eq!(again_unfixable, unfixable);
    }
}
