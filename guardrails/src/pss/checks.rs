//! The Pod Security checks, ported from upstream
//! `kubernetes/kubernetes` `staging/src/k8s.io/pod-security-admission/policy/check_*.go`
//! (published as `k8s.io/pod-security-admission`).
//!
//! Each check keeps its upstream check ID, level, the policy versions at which
//! its behaviour changed (upstream `VersionedCheck.MinimumVersion`) and, for
//! restricted checks, the baseline checks it overrides (upstream
//! `OverrideCheckIDs`). Reasons and details use upstream's wording
//! (`ForbiddenReason` / `ForbiddenDetail`).
//!
//! Evaluation order is upstream's registration order: baseline checks, then
//! restricted checks, each in the order of their `check_*.go` file names.
//!
//! Evidence: every revision boundary the upstream fixture corpus exercises
//! (seccomp 1.19, capabilities 1.22, runAsUser 1.23, Windows 1.25, sysctls
//! 1.27/1.29/1.32/1.37, probe hosts 1.34, procMount 1.35) is checked by the
//! conformance test. Four behaviours are not in the corpus and follow the
//! upstream sources instead (unit tests pin them): the `appArmorProfile`
//! fields (PR #123435, Kubernetes 1.30, patched into revision 1.0), the
//! `image` volume allowed at restricted (PR #130394, 1.33, patched into
//! revision 1.0), `container_engine_t` (seLinuxOptions revision 1.31) and the
//! user-namespace exemption of `runAsNonRoot`/`runAsUser` at 1.35 (PR #132157,
//! which removed the `UserNamespacesPodSecurityStandards` gate and made the
//! relaxation unconditional from policy v1.35).

use std::collections::BTreeSet;

use super::view::{ContainerView, PodView, SeLinuxOptions};

/// A check's verdict when it forbids the pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Forbidden {
    pub(crate) reason: String,
    pub(crate) detail: String,
}

pub(crate) type CheckFn = fn(&PodView<'_>) -> Option<Forbidden>;

/// One revision of a check, in force from `min_minor` (policy `v1.<min_minor>`)
/// until the next revision.
pub(crate) struct VersionedCheck {
    pub(crate) min_minor: u32,
    pub(crate) check: CheckFn,
    /// Baseline check IDs this (restricted) revision replaces at the
    /// restricted level (upstream `OverrideCheckIDs`).
    pub(crate) overrides: &'static [&'static str],
}

/// Which level a check belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CheckLevel {
    Baseline,
    Restricted,
}

/// A registered check.
pub(crate) struct CheckDef {
    pub(crate) id: &'static str,
    pub(crate) level: CheckLevel,
    /// Strictly increasing `min_minor`.
    pub(crate) versions: &'static [VersionedCheck],
}

impl CheckDef {
    /// The revision in force at policy `v1.<minor>`, if the check exists there.
    pub(crate) fn at(&self, minor: u32) -> Option<&VersionedCheck> {
        self.versions.iter().rev().find(|v| v.min_minor <= minor)
    }
}

const fn rev(min_minor: u32, check: CheckFn) -> VersionedCheck {
    VersionedCheck {
        min_minor,
        check,
        overrides: &[],
    }
}

const fn rev_overriding(
    min_minor: u32,
    check: CheckFn,
    overrides: &'static [&'static str],
) -> VersionedCheck {
    VersionedCheck {
        min_minor,
        check,
        overrides,
    }
}

/// Every check, in upstream registration order (baseline files, then
/// restricted files, alphabetically by `check_*.go` file name).
pub(crate) static CHECKS: &[CheckDef] = &[
    // check_appArmorProfile.go: one revision at 1.0. The field-based part
    // (spec/containers `appArmorProfile.type`, added upstream in Kubernetes
    // 1.30) was patched into the 1.0 revision, so it applies at every version.
    CheckDef {
        id: "appArmorProfile",
        level: CheckLevel::Baseline,
        versions: &[rev(0, app_armor_profile_1_0)],
    },
    // check_capabilities_baseline.go
    CheckDef {
        id: "capabilities_baseline",
        level: CheckLevel::Baseline,
        versions: &[rev(0, capabilities_baseline_1_0)],
    },
    // check_hostNamespaces.go
    CheckDef {
        id: "hostNamespaces",
        level: CheckLevel::Baseline,
        versions: &[rev(0, host_namespaces_1_0)],
    },
    // check_hostPathVolumes.go
    CheckDef {
        id: "hostPathVolumes",
        level: CheckLevel::Baseline,
        versions: &[rev(0, host_path_volumes_1_0)],
    },
    // check_hostPorts.go
    CheckDef {
        id: "hostPorts",
        level: CheckLevel::Baseline,
        versions: &[rev(0, host_ports_1_0)],
    },
    // check_hostProbesAndhostLifecycle.go: new in policy v1.34.
    CheckDef {
        id: "hostProbesAndHostLifecycle",
        level: CheckLevel::Baseline,
        versions: &[rev(34, host_probes_and_host_lifecycle_1_34)],
    },
    // check_privileged.go
    CheckDef {
        id: "privileged",
        level: CheckLevel::Baseline,
        versions: &[rev(0, privileged_1_0)],
    },
    // check_procMount_baseline.go (check ID `procMount`): v1.35 relaxes it for
    // pods in a user namespace (`hostUsers: false`).
    CheckDef {
        id: "procMount",
        level: CheckLevel::Baseline,
        versions: &[rev(0, proc_mount_1_0), rev(35, proc_mount_1_35_baseline)],
    },
    // check_seLinuxOptions.go: v1.31 allows `container_engine_t`.
    CheckDef {
        id: "seLinuxOptions",
        level: CheckLevel::Baseline,
        versions: &[rev(0, se_linux_options_1_0), rev(31, se_linux_options_1_31)],
    },
    // check_seccompProfile_baseline.go: annotations before v1.19, fields from v1.19.
    CheckDef {
        id: "seccompProfile_baseline",
        level: CheckLevel::Baseline,
        versions: &[
            rev(0, seccomp_profile_baseline_1_0),
            rev(19, seccomp_profile_baseline_1_19),
        ],
    },
    // check_sysctls.go: the safe list grows at 1.27, 1.29, 1.32 and 1.37.
    CheckDef {
        id: "sysctls",
        level: CheckLevel::Baseline,
        versions: &[
            rev(0, sysctls_1_0),
            rev(27, sysctls_1_27),
            rev(29, sysctls_1_29),
            rev(32, sysctls_1_32),
            rev(37, sysctls_1_37),
        ],
    },
    // check_windowsHostProcess.go
    CheckDef {
        id: "windowsHostProcess",
        level: CheckLevel::Baseline,
        versions: &[rev(0, windows_host_process_1_0)],
    },
    // check_allowPrivilegeEscalation.go: field exists from 1.8; Windows pods
    // exempt from 1.25.
    CheckDef {
        id: "allowPrivilegeEscalation",
        level: CheckLevel::Restricted,
        versions: &[
            rev(8, allow_privilege_escalation_1_8),
            rev(25, allow_privilege_escalation_1_25),
        ],
    },
    // check_capabilities_restricted.go: new in 1.22, Windows pods exempt from
    // 1.25; replaces capabilities_baseline at the restricted level.
    CheckDef {
        id: "capabilities_restricted",
        level: CheckLevel::Restricted,
        versions: &[
            rev_overriding(22, capabilities_restricted_1_22, &["capabilities_baseline"]),
            rev_overriding(25, capabilities_restricted_1_25, &["capabilities_baseline"]),
        ],
    },
    // check_procMount_restricted.go: new in 1.35; keeps procMount strict at the
    // restricted level even for user-namespace pods.
    CheckDef {
        id: "procMount_restricted",
        level: CheckLevel::Restricted,
        versions: &[rev_overriding(35, proc_mount_1_0, &["procMount"])],
    },
    // check_restrictedVolumes.go: replaces hostPathVolumes at the restricted level.
    CheckDef {
        id: "restrictedVolumes",
        level: CheckLevel::Restricted,
        versions: &[rev_overriding(
            0,
            restricted_volumes_1_0,
            &["hostPathVolumes"],
        )],
    },
    // check_runAsNonRoot.go: v1.35 skips pods in a user namespace.
    CheckDef {
        id: "runAsNonRoot",
        level: CheckLevel::Restricted,
        versions: &[rev(0, run_as_non_root_1_0), rev(35, run_as_non_root_1_35)],
    },
    // check_runAsUser.go: new in 1.23; v1.35 skips pods in a user namespace.
    CheckDef {
        id: "runAsUser",
        level: CheckLevel::Restricted,
        versions: &[rev(23, run_as_user_1_23), rev(35, run_as_user_1_35)],
    },
    // check_seccompProfile_restricted.go: new in 1.19, Windows pods exempt from
    // 1.25; replaces seccompProfile_baseline at the restricted level.
    CheckDef {
        id: "seccompProfile_restricted",
        level: CheckLevel::Restricted,
        versions: &[
            rev_overriding(
                19,
                seccomp_profile_restricted_1_19,
                &["seccompProfile_baseline"],
            ),
            rev_overriding(
                25,
                seccomp_profile_restricted_1_25,
                &["seccompProfile_baseline"],
            ),
        ],
    },
];

/// The highest `MinimumVersion` of any check: policy versions above it
/// (and `latest`) evaluate as this version, like upstream's registry.
pub(crate) const MAX_MINOR: u32 = 37;

// ---------------------------------------------------------------------------
// helpers (upstream policy/helpers.go)

fn pluralize<'a>(singular: &'a str, plural: &'a str, count: usize) -> &'a str {
    if count == 1 { singular } else { plural }
}

/// Go's `%q` for the strings we meet (names, label-ish values).
pub(crate) fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Upstream `joinQuote`: `"a", "b"`.
fn join_quote<S: AsRef<str>>(items: &[S]) -> String {
    items
        .iter()
        .map(|s| format!("\"{}\"", s.as_ref()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `container "a"` / `containers "a", "b"`.
fn containers_phrase(names: &[&str]) -> String {
    format!(
        "{} {}",
        pluralize("container", "containers", names.len()),
        join_quote(names)
    )
}

fn forbidden(reason: impl Into<String>, detail: impl Into<String>) -> Option<Forbidden> {
    Some(Forbidden {
        reason: reason.into(),
        detail: detail.into(),
    })
}

fn sorted(set: BTreeSet<&str>) -> Vec<&str> {
    set.into_iter().collect()
}

// ---------------------------------------------------------------------------
// baseline

const APPARMOR_ANNOTATION_PREFIX: &str = "container.apparmor.security.beta.kubernetes.io/";

fn allowed_apparmor_annotation(value: &str) -> bool {
    value.is_empty() || value == "runtime/default" || value.starts_with("localhost/")
}

fn allowed_apparmor_type(t: &str) -> bool {
    t == "RuntimeDefault" || t == "Localhost"
}

/// appArmorProfile 1.0: neither the AppArmor fields nor the beta annotations
/// may select a profile other than the runtime default or a localhost profile.
fn app_armor_profile_1_0(pod: &PodView<'_>) -> Option<Forbidden> {
    let mut setters = Vec::new();
    let mut bad_types = BTreeSet::new();
    if let Some(t) = pod
        .security_context
        .as_ref()
        .and_then(|sc| sc.apparmor_type)
        && !allowed_apparmor_type(t)
    {
        setters.push("pod".to_string());
        bad_types.insert(t);
    }
    let mut bad_containers = Vec::new();
    for c in &pod.containers {
        if let Some(t) = c.security_context.as_ref().and_then(|sc| sc.apparmor_type)
            && !allowed_apparmor_type(t)
        {
            bad_containers.push(c.name);
            bad_types.insert(t);
        }
    }
    if !bad_containers.is_empty() {
        setters.push(containers_phrase(&bad_containers));
    }
    let mut values: Vec<String> = bad_types.into_iter().map(str::to_string).collect();
    let mut bad_annotations: Vec<String> = pod
        .annotations
        .iter()
        .filter(|(k, v)| {
            k.starts_with(APPARMOR_ANNOTATION_PREFIX) && !allowed_apparmor_annotation(v)
        })
        .map(|(k, v)| format!("{k}={}", go_quote(v)))
        .collect();
    // Upstream sorts the formatted strings; key order differs when one key
    // is a prefix of another (`=` sorts after `-` and `.`).
    bad_annotations.sort();
    if !bad_annotations.is_empty() {
        setters.push(pluralize("annotation", "annotations", bad_annotations.len()).to_string());
        values.extend(bad_annotations);
    }
    if setters.is_empty() {
        return None;
    }
    forbidden(
        pluralize(
            "forbidden AppArmor profile",
            "forbidden AppArmor profiles",
            values.len(),
        ),
        format!(
            "{} must not set AppArmor profile type to {}",
            setters.join(" and "),
            join_quote(&values)
        ),
    )
}

/// The capabilities a container may add at the baseline level.
pub(crate) const BASELINE_ALLOWED_CAPABILITIES: &[&str] = &[
    "AUDIT_WRITE",
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "FSETID",
    "KILL",
    "MKNOD",
    "NET_BIND_SERVICE",
    "SETFCAP",
    "SETGID",
    "SETPCAP",
    "SETUID",
    "SYS_CHROOT",
];

fn capabilities_baseline_1_0(pod: &PodView<'_>) -> Option<Forbidden> {
    let mut bad_containers = Vec::new();
    let mut caps = BTreeSet::new();
    for c in &pod.containers {
        let Some(capabilities) = c
            .security_context
            .as_ref()
            .and_then(|sc| sc.capabilities.as_ref())
        else {
            continue;
        };
        let mut valid = true;
        for cap in &capabilities.add {
            if !BASELINE_ALLOWED_CAPABILITIES.contains(cap) {
                valid = false;
                caps.insert(*cap);
            }
        }
        if !valid {
            bad_containers.push(c.name);
        }
    }
    if bad_containers.is_empty() {
        return None;
    }
    forbidden(
        "non-default capabilities",
        format!(
            "{} must not include {} in securityContext.capabilities.add",
            containers_phrase(&bad_containers),
            join_quote(&sorted(caps))
        ),
    )
}

fn host_namespaces_1_0(pod: &PodView<'_>) -> Option<Forbidden> {
    let mut set = Vec::new();
    if pod.host_network {
        set.push("hostNetwork=true");
    }
    if pod.host_pid {
        set.push("hostPID=true");
    }
    if pod.host_ipc {
        set.push("hostIPC=true");
    }
    if set.is_empty() {
        return None;
    }
    forbidden("host namespaces", set.join(", "))
}

fn host_path_volumes_1_0(pod: &PodView<'_>) -> Option<Forbidden> {
    let names: Vec<&str> = pod
        .volumes
        .iter()
        .filter(|v| v.sources.contains(&"hostPath"))
        .map(|v| v.name)
        .collect();
    if names.is_empty() {
        return None;
    }
    forbidden(
        "hostPath volumes",
        format!(
            "{} {}",
            pluralize("volume", "volumes", names.len()),
            join_quote(&names)
        ),
    )
}

fn host_ports_1_0(pod: &PodView<'_>) -> Option<Forbidden> {
    let mut bad_containers = Vec::new();
    let mut ports = BTreeSet::new();
    for c in &pod.containers {
        let mut valid = true;
        for p in &c.host_ports {
            if *p != 0 {
                valid = false;
                ports.insert(p.to_string());
            }
        }
        if !valid {
            bad_containers.push(c.name);
        }
    }
    if bad_containers.is_empty() {
        return None;
    }
    forbidden(
        "hostPort",
        format!(
            "{} {} {} {}",
            containers_phrase(&bad_containers),
            pluralize("uses", "use", bad_containers.len()),
            pluralize("hostPort", "hostPorts", ports.len()),
            ports.into_iter().collect::<Vec<_>>().join(", ")
        ),
    )
}

fn host_probes_and_host_lifecycle_1_34(pod: &PodView<'_>) -> Option<Forbidden> {
    let mut bad_containers = BTreeSet::new();
    let mut hosts = BTreeSet::new();
    for c in &pod.containers {
        if !c.probe_hosts.is_empty() {
            bad_containers.insert(c.name);
            hosts.extend(c.probe_hosts.iter().copied());
        }
    }
    if bad_containers.is_empty() {
        return None;
    }
    let names = sorted(bad_containers);
    let hosts = sorted(hosts);
    forbidden(
        "probe or lifecycle host",
        format!(
            "{} {} {} {}",
            containers_phrase(&names),
            pluralize("uses", "use", names.len()),
            pluralize(
                "probe or lifecycle host",
                "probe or lifecycle hosts",
                hosts.len()
            ),
            join_quote(&hosts)
        ),
    )
}

fn privileged_1_0(pod: &PodView<'_>) -> Option<Forbidden> {
    let bad: Vec<&str> = pod
        .containers
        .iter()
        .filter(|c| c.security_context.as_ref().and_then(|sc| sc.privileged) == Some(true))
        .map(|c| c.name)
        .collect();
    if bad.is_empty() {
        return None;
    }
    forbidden(
        "privileged",
        format!(
            "{} must not set securityContext.privileged=true",
            containers_phrase(&bad)
        ),
    )
}

/// procMount 1.0 (also procMount_restricted 1.35): only `Default` or unset.
fn proc_mount_1_0(pod: &PodView<'_>) -> Option<Forbidden> {
    let mut bad = Vec::new();
    let mut types = BTreeSet::new();
    for c in &pod.containers {
        if let Some(pm) = c.security_context.as_ref().and_then(|sc| sc.proc_mount)
            && pm != "Default"
        {
            bad.push(c.name);
            types.insert(pm);
        }
    }
    if bad.is_empty() {
        return None;
    }
    forbidden(
        "procMount",
        format!(
            "{} must not set securityContext.procMount to {}",
            containers_phrase(&bad),
            join_quote(&sorted(types))
        ),
    )
}

/// procMount 1.35 (baseline): anything goes for a user-namespace pod.
fn proc_mount_1_35_baseline(pod: &PodView<'_>) -> Option<Forbidden> {
    if pod.in_user_namespace() {
        return None;
    }
    proc_mount_1_0(pod)
}

const SELINUX_TYPES_1_0: &[&str] = &["", "container_t", "container_init_t", "container_kvm_t"];
const SELINUX_TYPES_1_31: &[&str] = &[
    "",
    "container_t",
    "container_init_t",
    "container_kvm_t",
    "container_engine_t",
];

fn se_linux_options(pod: &PodView<'_>, allowed_types: &[&str]) -> Option<Forbidden> {
    let mut setters = Vec::new();
    let mut bad_types = BTreeSet::new();
    let mut set_user = false;
    let mut set_role = false;
    let mut valid = |opts: &SeLinuxOptions<'_>| {
        let mut ok = true;
        if !allowed_types.contains(&opts.type_) {
            ok = false;
            bad_types.insert(opts.type_.to_string());
        }
        if !opts.user.is_empty() {
            ok = false;
            set_user = true;
        }
        if !opts.role.is_empty() {
            ok = false;
            set_role = true;
        }
        ok
    };
    if let Some(opts) = pod
        .security_context
        .as_ref()
        .and_then(|sc| sc.selinux.as_ref())
        && !valid(opts)
    {
        setters.push("pod".to_string());
    }
    let mut bad_containers = Vec::new();
    for c in &pod.containers {
        if let Some(opts) = c
            .security_context
            .as_ref()
            .and_then(|sc| sc.selinux.as_ref())
            && !valid(opts)
        {
            bad_containers.push(c.name);
        }
    }
    if !bad_containers.is_empty() {
        setters.push(containers_phrase(&bad_containers));
    }
    if setters.is_empty() {
        return None;
    }
    let mut data = Vec::new();
    if !bad_types.is_empty() {
        let types: Vec<String> = bad_types.into_iter().collect();
        data.push(format!(
            "{} {}",
            pluralize("type", "types", types.len()),
            join_quote(&types)
        ));
    }
    if set_user {
        data.push("user may not be set".to_string());
    }
    if set_role {
        data.push("role may not be set".to_string());
    }
    forbidden(
        "seLinuxOptions",
        format!(
            "{} set forbidden securityContext.seLinuxOptions: {}",
            setters.join(" and "),
            data.join("; ")
        ),
    )
}

fn se_linux_options_1_0(pod: &PodView<'_>) -> Option<Forbidden> {
    se_linux_options(pod, SELINUX_TYPES_1_0)
}

fn se_linux_options_1_31(pod: &PodView<'_>) -> Option<Forbidden> {
    se_linux_options(pod, SELINUX_TYPES_1_31)
}

const SECCOMP_POD_ANNOTATION: &str = "seccomp.security.alpha.kubernetes.io/pod";
const SECCOMP_CONTAINER_ANNOTATION_PREFIX: &str = "container.seccomp.security.alpha.kubernetes.io/";

fn valid_seccomp_annotation(v: &str) -> bool {
    v == "runtime/default" || v == "docker/default" || v.starts_with("localhost/")
}

pub(crate) fn valid_seccomp_type(t: &str) -> bool {
    t == "RuntimeDefault" || t == "Localhost"
}

/// seccompProfile_baseline 1.0: the alpha seccomp annotations.
fn seccomp_profile_baseline_1_0(pod: &PodView<'_>) -> Option<Forbidden> {
    let mut bad = BTreeSet::new();
    if let Some(v) = pod.annotations.get(SECCOMP_POD_ANNOTATION)
        && !valid_seccomp_annotation(v)
    {
        bad.insert(format!("{SECCOMP_POD_ANNOTATION}={}", go_quote(v)));
    }
    for c in &pod.containers {
        let key = format!("{SECCOMP_CONTAINER_ANNOTATION_PREFIX}{}", c.name);
        if let Some(v) = pod.annotations.get(key.as_str())
            && !valid_seccomp_annotation(v)
        {
            bad.insert(format!("{key}={}", go_quote(v)));
        }
    }
    if bad.is_empty() {
        return None;
    }
    forbidden(
        "seccompProfile",
        format!(
            "forbidden {} {}",
            pluralize("annotation", "annotations", bad.len()),
            bad.into_iter().collect::<Vec<_>>().join(", ")
        ),
    )
}

/// Explicitly bad seccomp settings: (setters, bad values, pod set a valid type).
fn explicit_bad_seccomp<'a>(pod: &PodView<'a>) -> (Vec<String>, BTreeSet<&'a str>, bool) {
    let mut setters = Vec::new();
    let mut values = BTreeSet::new();
    let mut pod_valid = false;
    if let Some(t) = pod.security_context.as_ref().and_then(|sc| sc.seccomp_type) {
        if valid_seccomp_type(t) {
            pod_valid = true;
        } else {
            setters.push("pod".to_string());
            values.insert(t);
        }
    }
    let mut bad_containers = Vec::new();
    for c in &pod.containers {
        if let Some(t) = c.security_context.as_ref().and_then(|sc| sc.seccomp_type)
            && !valid_seccomp_type(t)
        {
            bad_containers.push(c.name);
            values.insert(t);
        }
    }
    if !bad_containers.is_empty() {
        setters.push(containers_phrase(&bad_containers));
    }
    (setters, values, pod_valid)
}

/// seccompProfile_baseline 1.19: the seccompProfile fields may only be
/// `RuntimeDefault` or `Localhost` when set.
fn seccomp_profile_baseline_1_19(pod: &PodView<'_>) -> Option<Forbidden> {
    let (setters, values, _) = explicit_bad_seccomp(pod);
    if setters.is_empty() {
        return None;
    }
    forbidden(
        "seccompProfile",
        format!(
            "{} must not set securityContext.seccompProfile.type to {}",
            setters.join(" and "),
            join_quote(&sorted(values))
        ),
    )
}

const SYSCTLS_1_0: &[&str] = &[
    "kernel.shm_rmid_forced",
    "net.ipv4.ip_local_port_range",
    "net.ipv4.tcp_syncookies",
    "net.ipv4.ping_group_range",
    "net.ipv4.ip_unprivileged_port_start",
];
const SYSCTLS_ADDED_1_27: &[&str] = &["net.ipv4.ip_local_reserved_ports"];
const SYSCTLS_ADDED_1_29: &[&str] = &[
    "net.ipv4.tcp_keepalive_time",
    "net.ipv4.tcp_fin_timeout",
    "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
];
const SYSCTLS_ADDED_1_32: &[&str] = &["net.ipv4.tcp_rmem", "net.ipv4.tcp_wmem"];
const SYSCTLS_ADDED_1_37: &[&str] = &[
    "net.ipv4.tcp_slow_start_after_idle",
    "net.ipv4.tcp_notsent_lowat",
];

fn sysctls(pod: &PodView<'_>, allowed: &[&[&str]]) -> Option<Forbidden> {
    let bad: Vec<&str> = pod
        .security_context
        .iter()
        .flat_map(|sc| sc.sysctls.iter().copied())
        .filter(|name| !allowed.iter().any(|set| set.contains(name)))
        .collect();
    if bad.is_empty() {
        return None;
    }
    forbidden("forbidden sysctls", bad.join(", "))
}

fn sysctls_1_0(pod: &PodView<'_>) -> Option<Forbidden> {
    sysctls(pod, &[SYSCTLS_1_0])
}

fn sysctls_1_27(pod: &PodView<'_>) -> Option<Forbidden> {
    sysctls(pod, &[SYSCTLS_1_0, SYSCTLS_ADDED_1_27])
}

fn sysctls_1_29(pod: &PodView<'_>) -> Option<Forbidden> {
    sysctls(pod, &[SYSCTLS_1_0, SYSCTLS_ADDED_1_27, SYSCTLS_ADDED_1_29])
}

fn sysctls_1_32(pod: &PodView<'_>) -> Option<Forbidden> {
    sysctls(
        pod,
        &[
            SYSCTLS_1_0,
            SYSCTLS_ADDED_1_27,
            SYSCTLS_ADDED_1_29,
            SYSCTLS_ADDED_1_32,
        ],
    )
}

fn sysctls_1_37(pod: &PodView<'_>) -> Option<Forbidden> {
    sysctls(
        pod,
        &[
            SYSCTLS_1_0,
            SYSCTLS_ADDED_1_27,
            SYSCTLS_ADDED_1_29,
            SYSCTLS_ADDED_1_32,
            SYSCTLS_ADDED_1_37,
        ],
    )
}

fn windows_host_process_1_0(pod: &PodView<'_>) -> Option<Forbidden> {
    let mut setters = Vec::new();
    if pod.security_context.as_ref().and_then(|sc| sc.host_process) == Some(true) {
        setters.push("pod".to_string());
    }
    let bad: Vec<&str> = pod
        .containers
        .iter()
        .filter(|c| c.security_context.as_ref().and_then(|sc| sc.host_process) == Some(true))
        .map(|c| c.name)
        .collect();
    if !bad.is_empty() {
        setters.push(containers_phrase(&bad));
    }
    if setters.is_empty() {
        return None;
    }
    forbidden(
        "hostProcess",
        format!(
            "{} must not set securityContext.windowsOptions.hostProcess=true",
            setters.join(" and ")
        ),
    )
}

// ---------------------------------------------------------------------------
// restricted

fn allow_privilege_escalation_1_8(pod: &PodView<'_>) -> Option<Forbidden> {
    let bad: Vec<&str> = pod
        .containers
        .iter()
        .filter(|c| {
            c.security_context
                .as_ref()
                .and_then(|sc| sc.allow_privilege_escalation)
                != Some(false)
        })
        .map(|c| c.name)
        .collect();
    if bad.is_empty() {
        return None;
    }
    forbidden(
        "allowPrivilegeEscalation != false",
        format!(
            "{} must set securityContext.allowPrivilegeEscalation=false",
            containers_phrase(&bad)
        ),
    )
}

/// Upstream: API validation rejects the field on a Windows pod, so an unset
/// value is admitted there.
fn allow_privilege_escalation_1_25(pod: &PodView<'_>) -> Option<Forbidden> {
    if pod.is_windows() {
        return None;
    }
    allow_privilege_escalation_1_8(pod)
}

fn drops_all(c: &ContainerView<'_>) -> bool {
    c.security_context
        .as_ref()
        .and_then(|sc| sc.capabilities.as_ref())
        .is_some_and(|caps| caps.drop.contains(&"ALL"))
}

fn capabilities_restricted_1_22(pod: &PodView<'_>) -> Option<Forbidden> {
    let mut missing_drop_all = Vec::new();
    let mut adding_forbidden = Vec::new();
    let mut caps = BTreeSet::new();
    for c in &pod.containers {
        if !drops_all(c) {
            missing_drop_all.push(c.name);
        }
        let Some(capabilities) = c
            .security_context
            .as_ref()
            .and_then(|sc| sc.capabilities.as_ref())
        else {
            continue;
        };
        let mut added_forbidden = false;
        for cap in &capabilities.add {
            if *cap != "NET_BIND_SERVICE" {
                added_forbidden = true;
                caps.insert(*cap);
            }
        }
        if added_forbidden {
            adding_forbidden.push(c.name);
        }
    }
    let mut details = Vec::new();
    if !missing_drop_all.is_empty() {
        details.push(format!(
            "{} must set securityContext.capabilities.drop=[\"ALL\"]",
            containers_phrase(&missing_drop_all)
        ));
    }
    if !adding_forbidden.is_empty() {
        details.push(format!(
            "{} must not include {} in securityContext.capabilities.add",
            containers_phrase(&adding_forbidden),
            join_quote(&sorted(caps))
        ));
    }
    if details.is_empty() {
        return None;
    }
    forbidden("unrestricted capabilities", details.join("; "))
}

fn capabilities_restricted_1_25(pod: &PodView<'_>) -> Option<Forbidden> {
    if pod.is_windows() {
        return None;
    }
    capabilities_restricted_1_22(pod)
}

/// Volume sources allowed at the restricted level. `image` was added upstream
/// (Kubernetes 1.33) into the 1.0 revision, so it applies at every version.
pub(crate) const RESTRICTED_ALLOWED_VOLUMES: &[&str] = &[
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "image",
    "persistentVolumeClaim",
    "projected",
    "secret",
];

/// Volume sources upstream names in its message; any other source is "unknown".
const KNOWN_RESTRICTED_VOLUMES: &[&str] = &[
    "awsElasticBlockStore",
    "azureDisk",
    "azureFile",
    "cephfs",
    "cinder",
    "fc",
    "flexVolume",
    "flocker",
    "gcePersistentDisk",
    "gitRepo",
    "glusterfs",
    "hostPath",
    "iscsi",
    "nfs",
    "photonPersistentDisk",
    "portworxVolume",
    "quobyte",
    "rbd",
    "scaleIO",
    "storageos",
    "vsphereVolume",
];

/// restrictedVolumes 1.0. Stricter than upstream on one point that only
/// matters for objects the API server rejects anyway: a volume naming several
/// sources is allowed only when all of them are allowed (upstream admits it as
/// soon as one is).
fn restricted_volumes_1_0(pod: &PodView<'_>) -> Option<Forbidden> {
    let mut names = Vec::new();
    let mut types = BTreeSet::new();
    for v in &pod.volumes {
        let bad: Vec<&str> = v
            .sources
            .iter()
            .copied()
            .filter(|s| !RESTRICTED_ALLOWED_VOLUMES.contains(s))
            .collect();
        if v.sources.is_empty() {
            names.push(v.name);
            types.insert("unknown");
        } else if !bad.is_empty() {
            names.push(v.name);
            for s in bad {
                types.insert(if KNOWN_RESTRICTED_VOLUMES.contains(&s) {
                    s
                } else {
                    "unknown"
                });
            }
        }
    }
    if names.is_empty() {
        return None;
    }
    forbidden(
        "restricted volume types",
        format!(
            "{} {} {} restricted volume {} {}",
            pluralize("volume", "volumes", names.len()),
            join_quote(&names),
            pluralize("uses", "use", names.len()),
            pluralize("type", "types", types.len()),
            join_quote(&sorted(types))
        ),
    )
}

fn run_as_non_root_1_0(pod: &PodView<'_>) -> Option<Forbidden> {
    let mut setters = Vec::new();
    let mut pod_run_as_non_root = false;
    match pod
        .security_context
        .as_ref()
        .and_then(|sc| sc.run_as_non_root)
    {
        Some(false) => setters.push("pod".to_string()),
        Some(true) => pod_run_as_non_root = true,
        None => {}
    }
    let mut explicitly_bad = Vec::new();
    let mut implicitly_bad = Vec::new();
    for c in &pod.containers {
        match c
            .security_context
            .as_ref()
            .and_then(|sc| sc.run_as_non_root)
        {
            Some(false) => explicitly_bad.push(c.name),
            Some(true) => {}
            None if !pod_run_as_non_root => implicitly_bad.push(c.name),
            None => {}
        }
    }
    if !explicitly_bad.is_empty() {
        setters.push(containers_phrase(&explicitly_bad));
    }
    if !setters.is_empty() {
        return forbidden(
            "runAsNonRoot != true",
            format!(
                "{} must not set securityContext.runAsNonRoot=false",
                setters.join(" and ")
            ),
        );
    }
    if !implicitly_bad.is_empty() {
        return forbidden(
            "runAsNonRoot != true",
            format!(
                "pod or {} must set securityContext.runAsNonRoot=true",
                containers_phrase(&implicitly_bad)
            ),
        );
    }
    None
}

/// runAsNonRoot 1.35: a pod in its own user namespace (`hostUsers: false`) is
/// not checked (KEP-127; before 1.35 this relaxation sat behind a perma-alpha
/// feature gate that was off by default).
fn run_as_non_root_1_35(pod: &PodView<'_>) -> Option<Forbidden> {
    if pod.in_user_namespace() {
        return None;
    }
    run_as_non_root_1_0(pod)
}

fn run_as_user_1_23(pod: &PodView<'_>) -> Option<Forbidden> {
    let mut setters = Vec::new();
    if pod.security_context.as_ref().and_then(|sc| sc.run_as_user) == Some(0) {
        setters.push("pod".to_string());
    }
    let bad: Vec<&str> = pod
        .containers
        .iter()
        .filter(|c| c.security_context.as_ref().and_then(|sc| sc.run_as_user) == Some(0))
        .map(|c| c.name)
        .collect();
    if !bad.is_empty() {
        setters.push(containers_phrase(&bad));
    }
    if setters.is_empty() {
        return None;
    }
    forbidden(
        "runAsUser=0",
        format!("{} must not set runAsUser=0", setters.join(" and ")),
    )
}

/// runAsUser 1.35: skipped for pods in their own user namespace (KEP-127).
fn run_as_user_1_35(pod: &PodView<'_>) -> Option<Forbidden> {
    if pod.in_user_namespace() {
        return None;
    }
    run_as_user_1_23(pod)
}

fn seccomp_profile_restricted_1_19(pod: &PodView<'_>) -> Option<Forbidden> {
    let (setters, values, pod_valid) = explicit_bad_seccomp(pod);
    if !setters.is_empty() {
        return forbidden(
            "seccompProfile",
            format!(
                "{} must not set securityContext.seccompProfile.type to {}",
                setters.join(" and "),
                join_quote(&sorted(values))
            ),
        );
    }
    let implicitly_bad: Vec<&str> = pod
        .containers
        .iter()
        .filter(|c| {
            c.security_context
                .as_ref()
                .and_then(|sc| sc.seccomp_type)
                .is_none()
                && !pod_valid
        })
        .map(|c| c.name)
        .collect();
    if implicitly_bad.is_empty() {
        return None;
    }
    forbidden(
        "seccompProfile",
        format!(
            "pod or {} must set securityContext.seccompProfile.type to \"RuntimeDefault\" or \"Localhost\"",
            containers_phrase(&implicitly_bad)
        ),
    )
}

fn seccomp_profile_restricted_1_25(pod: &PodView<'_>) -> Option<Forbidden> {
    if pod.is_windows() {
        return None;
    }
    seccomp_profile_restricted_1_19(pod)
}
