//! Hand-picked edge cases: every refusal with its message and location, and layouts the
//! corpus does not contain (CRLF + BOM, tags, split values, flow lists, quoting).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use kubesafe_manifest_edit::{Edit, Error, HostPathMount, Manifest, ScalarValue};

fn pod(command: &str) -> String {
    format!("apiVersion: v1\nkind: Pod\nspec:\n  containers:\n  - name: kube-apiserver\n{command}")
}

fn edit(text: &str, edit: &Edit) -> Result<String, Error> {
    Ok(Manifest::parse_named("m.yaml", text)?
        .apply(edit)?
        .manifest
        .into_text())
}

fn err(text: &str, e: &Edit) -> String {
    edit(text, e).unwrap_err().to_string()
}

#[test]
fn crlf_bom_and_missing_final_newline_are_kept() {
    let text = "\u{feff}kind: Pod\r\nspec:\r\n  containers:\r\n  - command:\r\n    - kube-apiserver\r\n    - --a=1\r\n    name: x";
    let out = edit(text, &Edit::new().set_flag("--b", "2").set_flag("--a", "3")).unwrap();
    assert_eq!(
        out,
        "\u{feff}kind: Pod\r\nspec:\r\n  containers:\r\n  - command:\r\n    - kube-apiserver\r\n    - --a=3\r\n    - --b=2\r\n    name: x"
    );
    // Appending after a last line without a line break keeps the file without one.
    let text = "kind: Pod\r\nspec:\r\n  containers:\r\n  - name: x\r\n    command:\r\n    - kube-apiserver\r\n    - --a=1";
    let out = edit(text, &Edit::new().set_flag("--b", "2")).unwrap();
    assert_eq!(out, format!("{text}\r\n    - --b=2"));
    let back = edit(&out, &Edit::new().remove_flag("--b")).unwrap();
    assert_eq!(back, text);
}

#[test]
fn quoting_follows_the_neighbours_and_the_value() {
    let text = pod("    command:\n    - 'kube-apiserver'\n    - '--a=1'\n");
    let out = edit(
        &text,
        &Edit::new().set_flag("--b", "x: y").set_flag("--a", "it's"),
    )
    .unwrap();
    assert!(
        out.ends_with("    - '--a=it''s'\n    - '--b=x: y'\n"),
        "{out}"
    );
    let text = pod("    command:\n    - kube-apiserver\n    - \"--a=1\"   # why\n");
    let out = edit(&text, &Edit::new().set_flag("--a", "2")).unwrap();
    assert!(out.ends_with("    - \"--a=2\"   # why\n"), "{out}");
    // A plain item whose new value needs quotes is quoted.
    let text = pod("    command:\n    - kube-apiserver\n    - --a=1\n");
    let out = edit(&text, &Edit::new().set_flag("--a", "x #y")).unwrap();
    assert!(out.ends_with("    - \"--a=x #y\"\n"), "{out}");
    // Tagged items keep their tag.
    let text = pod("    command:\n    - kube-apiserver\n    - !!str --a=1\n");
    let out = edit(&text, &Edit::new().set_flag("--a", "2")).unwrap();
    assert!(out.ends_with("    - !!str --a=2\n"), "{out}");
}

#[test]
fn split_values_are_edited_in_place_and_booleans_are_never_split() {
    let text = pod(
        "    command:\n    - etcd\n    - --name\n    - n1\n    - --data-dir\n    - /var/etcd\n",
    );
    let out = edit(
        &text,
        &Edit::new()
            .set_flag("--name", "true")
            .remove_flag("--data-dir")
            .set_flag("--client-cert-auth", "true"),
    )
    .unwrap();
    // `true` as a separate item would be a YAML boolean (and a positional for a Go bool
    // flag): the value is quoted in place, a new flag is written `--flag=value`.
    assert!(
        out.ends_with("    - etcd\n    - --name\n    - \"true\"\n    - --client-cert-auth=true\n"),
        "{out}"
    );
    // A value starting with `-` cannot be a separate item: it would read as a flag (here
    // and for the editor's next run). Refused up front, not as a failed verification.
    assert_eq!(
        err(&text, &Edit::new().set_flag("--name", "-n1")),
        "m.yaml:9:7: `--name` takes its value as the next item, and `-n1` would read as a \
         flag there; refusing (write the flag as `--name=VALUE` by hand first)"
    );
}

#[test]
fn flow_lists_are_edited_inside_their_brackets() {
    let text = pod("    command: [kube-apiserver]\n    args: [\"--a=1\", \"--b=2\", \"--c=3\"]\n");
    let out = edit(&text, &Edit::new().remove_flag("--b")).unwrap();
    assert!(out.contains("    args: [\"--a=1\", \"--c=3\"]\n"), "{out}");
    let out = edit(&out, &Edit::new().remove_flag("--c")).unwrap();
    assert!(out.contains("    args: [\"--a=1\"]\n"), "{out}");
    let out = edit(&out, &Edit::new().remove_flag("--a")).unwrap();
    assert!(out.contains("    args: []\n"), "{out}");
    let out = edit(
        &out,
        &Edit::new().set_flag("--enable-admission-plugins", "A,B"),
    )
    .unwrap();
    assert!(
        out.contains("    args: [\"--enable-admission-plugins=A,B\"]\n"),
        "{out}"
    );
    // A multi-line flow list keeps its separator.
    let text =
        pod("    command: [kube-apiserver]\n    args: [\n      --a=1,\n      --b=2\n    ]\n");
    let out = edit(&text, &Edit::new().set_flag("--c", "3")).unwrap();
    assert!(out.contains("      --b=2,\n      --c=3\n    ]\n"), "{out}");
    // The kubelet's yaml.v2 ends a plain scalar at `?` inside brackets (YAML 1.2 does not):
    // a URL with a query is quoted there, not in a block list.
    let out = edit(
        &text,
        &Edit::new().set_flag("--oidc-issuer-url", "https://issuer.example/?tenant=a"),
    )
    .unwrap();
    assert!(
        out.contains(
            "      --b=2,\n      \"--oidc-issuer-url=https://issuer.example/?tenant=a\"\n"
        ),
        "{out}"
    );
}

#[test]
fn set_path_creates_parents_in_block_flow_and_empty_mappings() {
    let text = "kind: KubeletConfiguration\nauthentication:\nlogging: {}\n";
    let out = edit(
        text,
        &Edit::new()
            .set_path(
                "authentication.anonymous.enabled".parse().unwrap(),
                ScalarValue::Bool(false),
            )
            .set_path(
                "logging.format".parse().unwrap(),
                ScalarValue::Str("json".into()),
            )
            .set_path(
                "logging.options.json.infoBufferSize".parse().unwrap(),
                ScalarValue::Str("0".into()),
            ),
    )
    .unwrap();
    assert_eq!(
        out,
        "kind: KubeletConfiguration\nauthentication:\n  anonymous:\n    enabled: false\nlogging: {format: json, options: {json: {infoBufferSize: \"0\"}}}\n"
    );
    // Existing values keep their quoting; an equal value is no change.
    let text = "kind: KubeletConfiguration\nreadOnlyPort: \"10255\"\nport: 0x2800\n";
    let out = edit(
        text,
        &Edit::new()
            .set_path("readOnlyPort".parse().unwrap(), ScalarValue::Int(0))
            .set_path("port".parse().unwrap(), ScalarValue::Int(10240)),
    )
    .unwrap();
    assert_eq!(
        out,
        "kind: KubeletConfiguration\nreadOnlyPort: 0\nport: 0x2800\n"
    );
}

#[test]
fn comment_and_quoting_changes_are_not_data_changes() {
    let a = Manifest::parse("kind: Pod # a\nspec: {x: 'y'}\n").unwrap();
    let b = Manifest::parse("# header\nkind: Pod\nspec:\n  x: \"y\"\n").unwrap();
    let c = Manifest::parse("kind: Pod\nspec:\n  x: z\n").unwrap();
    assert!(a.data_eq(&b));
    assert!(!a.data_eq(&c));
    let applied = b.apply(&Edit::new()).unwrap();
    assert!(!applied.changed && !applied.data_changed);
}

#[test]
fn refusals_name_the_file_line_and_column() {
    let cases: Vec<(String, Edit, &str)> = vec![
        (
            pod("    command:\n    - kube-apiserver\n    - &a --a=1\n"),
            Edit::new().set_flag("--a", "2"),
            "m.yaml:8:10: an anchor in `command` of container `kube-apiserver`; refusing to edit through YAML anchors/aliases",
        ),
        (
            "kind: Pod\nx: &cmd [kube-apiserver, --a=1]\nspec:\n  containers:\n  - name: kube-apiserver\n    command: *cmd\n".to_owned(),
            Edit::new().set_flag("--a", "2"),
            "m.yaml:6:14: an alias in `command` of container `kube-apiserver`; refusing to edit through YAML anchors/aliases",
        ),
        (
            "base: &b {enabled: true}\nauthentication:\n  anonymous:\n    <<: *b\n".to_owned(),
            Edit::new().set_path("authentication.anonymous.enabled".parse().unwrap(), ScalarValue::Bool(false)),
            "m.yaml:4:5: a merge key in `authentication.anonymous`; refusing to edit through YAML anchors/aliases",
        ),
        (
            "clusterDNS:\n- 10.96.0.10\n".to_owned(),
            Edit::new().set_path("clusterDNS.x".parse().unwrap(), ScalarValue::Int(1)),
            "m.yaml:2:3: `clusterDNS` is a list, not a mapping",
        ),
        (
            "a: |\n  text\n".to_owned(),
            Edit::new().set_path("a".parse().unwrap(), ScalarValue::Int(1)),
            "m.yaml:1:1: `a` is a block scalar (`|` or `>`); set-path does not rewrite those",
        ),
        (
            format!("{}---\n{}", pod("    command: [a]\n"), pod("    command: [b]\n")),
            Edit::new().set_flag("--a", "2"),
            "m.yaml: 2 candidate documents (kind: Pod); refusing to guess",
        ),
        (
            "kind: ConfigMap\ndata: {}\n".to_owned(),
            Edit::new().set_flag("--a", "2"),
            "m.yaml: not a Pod manifest: kind: ConfigMap",
        ),
        (
            pod("    image: x\n"),
            Edit::new().set_flag("--a", "2"),
            "m.yaml:5:5: container `kube-apiserver` has neither `command` nor `args`",
        ),
        (
            pod("    command: [x]\n    volumeMounts:\n    - {name: data, mountPath: /var/lib/etcd}\n  volumes:\n  - {name: data, emptyDir: {}}\n"),
            Edit::new().ensure_host_path_mount(HostPathMount::new("etcd", "/var/lib/etcd", "/var/lib/etcd")),
            "m.yaml:8:7: `/var/lib/etcd` is already mounted in container `kube-apiserver` from volume `data` (not a hostPath volume), not from hostPath `/var/lib/etcd`",
        ),
        (
            pod("    command: [x]\n"),
            Edit::new().set_flag("--bad name", "2"),
            "invalid argument: `--bad name` is not a flag name (expected `--name` with letters, digits, `-`, `_`, `.`)",
        ),
        (
            pod("    command: [x]\n"),
            Edit::new().list_add("--enable-admission-plugins", "A,B"),
            "invalid argument: list item `A,B` must be non-empty and without commas",
        ),
        (
            "kind: KubeletConfiguration\nauthentication:\n  anonymous:\n    enabled: false\n    enabled: true\n".to_owned(),
            Edit::new().set_path("readOnlyPort".parse().unwrap(), ScalarValue::Int(0)),
            "m.yaml:5:5: duplicate key `enabled` (first defined on line 4)",
        ),
        (
            pod("    command:\n    - kube-apiserver\n    - --admission-control=NamespaceLifecycle\n"),
            Edit::new().list_add("--disable-admission-plugins", "PodSecurity"),
            "m.yaml:8:7: `--disable-admission-plugins` cannot be used together with `--admission-control`, which container `kube-apiserver` already has (the component refuses to start with both)",
        ),
        (
            pod("    command: [x, --a=1, --b, word]\n"),
            Edit::new().remove_flag("--b"),
            "m.yaml:6:25: `--b` is followed by `word`, which may be its value or a positional argument; refusing to guess",
        ),
    ];
    for (text, e, expected) in cases {
        assert_eq!(err(&text, &e), expected, "\n{text}");
    }
    assert!("a..b".parse::<kubesafe_manifest_edit::KeyPath>().is_err());
}

/// kube-apiserver refuses to start when a plugin is both enabled and disabled
/// ("[X] in enable-admission-plugins and disable-admission-plugins overlapped"): an edit that
/// would make the two lists overlap is refused, naming the plugin and the other list.
#[test]
fn enabling_a_disabled_admission_plugin_is_refused() {
    let text = pod(
        "    command:\n    - kube-apiserver\n    - --enable-admission-plugins=NodeRestriction\n    - --disable-admission-plugins=AlwaysPullImages,PodSecurity\n",
    );
    let expected = "m.yaml:9:7: `--enable-admission-plugins` would list AlwaysPullImages, which \
                    `--disable-admission-plugins` of container `kube-apiserver` also lists \
                    (kube-apiserver refuses to start when the two overlap); remove it there first";
    assert_eq!(
        err(
            &text,
            &Edit::new().list_add("--enable-admission-plugins", "AlwaysPullImages")
        ),
        expected
    );
    assert_eq!(
        err(
            &text,
            &Edit::new().set_flag(
                "--enable-admission-plugins",
                "NodeRestriction,AlwaysPullImages"
            )
        ),
        expected
    );
    assert_eq!(
        err(
            &text,
            &Edit::new().list_add("--disable-admission-plugins", "NodeRestriction")
        ),
        "m.yaml:8:7: `--disable-admission-plugins` would list NodeRestriction, which \
         `--enable-admission-plugins` of container `kube-apiserver` also lists \
         (kube-apiserver refuses to start when the two overlap); remove it there first"
    );
    // Removing it from the other list first, in the same edit, is the way.
    let out = edit(
        &text,
        &Edit::new()
            .list_remove("--disable-admission-plugins", "AlwaysPullImages")
            .list_add("--enable-admission-plugins", "AlwaysPullImages"),
    )
    .unwrap();
    assert!(
        out.ends_with("    - --enable-admission-plugins=NodeRestriction,AlwaysPullImages\n    - --disable-admission-plugins=PodSecurity\n"),
        "{out}"
    );
}

#[test]
fn literal_blocks_and_other_documents_that_look_like_flags_are_untouched() {
    let text = "# kops-like task\ncontents: |\n  kind: Pod\n  spec:\n    containers:\n    - command: [kube-apiserver, --profiling=true]\n---\n".to_owned()
        + &pod("    command:\n    - kube-apiserver\n    - --profiling=true\n    env:\n    - name: NOTE\n      value: |\n        --profiling=true\n");
    let out = edit(&text, &Edit::new().set_flag("--profiling", "false")).unwrap();
    assert_eq!(out.matches("--profiling=true").count(), 2, "{out}");
    assert_eq!(out.matches("--profiling=false").count(), 1, "{out}");
    assert!(out.contains("    - kube-apiserver\n    - --profiling=false\n    env:"));
}

/// `--feature-gates=A=true,B=false`: items compare by key, so adding `A=false` replaces
/// `A=true` in place (the component would take the last of two, and a reader the first);
/// spaces around items are tolerated; removal is by key.
#[test]
fn comma_lists_compare_key_value_items_by_key() {
    let text = pod("    command:\n    - kube-apiserver\n    - --feature-gates=A=true, B=false\n");
    let out = edit(&text, &Edit::new().list_add("--feature-gates", "A=false")).unwrap();
    assert!(
        out.ends_with("    - --feature-gates=A=false, B=false\n"),
        "{out}"
    );
    // Already present (spaces aside): no change.
    let same = Manifest::parse(out.clone())
        .unwrap()
        .apply(&Edit::new().list_add("--feature-gates", "B=false"))
        .unwrap();
    assert!(!same.changed);
    let out = edit(
        &out,
        &Edit::new()
            .list_add("--feature-gates", "C=true")
            .list_remove("--feature-gates", "B"),
    )
    .unwrap();
    assert!(
        out.ends_with("    - --feature-gates=A=false,C=true\n"),
        "{out}"
    );
    let out = edit(
        &out,
        &Edit::new()
            .list_remove("--feature-gates", "A=true")
            .list_remove("--feature-gates", "C"),
    )
    .unwrap();
    assert!(
        out.ends_with("    - kube-apiserver\n"),
        "the empty list goes: {out}"
    );
}

/// Flags are looked up in `command` and `args` together: a flag in both is a duplicate,
/// and with `command` holding only the binary, flags are read and added in `args`.
#[test]
fn command_and_args_are_one_command_line() {
    let text = pod("    command:\n    - kube-apiserver\n    - --a=1\n    args:\n    - --a=2\n");
    assert_eq!(
        err(&text, &Edit::new().set_flag("--a", "3")),
        "m.yaml:10:7: flag `--a` appears more than once in container `kube-apiserver` \
         (first on line 8); refusing to edit one of them"
    );
    let text = pod("    command: [kube-apiserver]\n    args:\n    - --a=1\n");
    let m = Manifest::parse_named("m.yaml", text.clone()).unwrap();
    let a = m.get_flag(None, "--a").unwrap().unwrap();
    assert_eq!((a.value.as_deref(), a.line), (Some("1"), 8));
    let out = edit(
        &text,
        &Edit::new().set_flag("--a", "2").set_flag("--b", "x"),
    )
    .unwrap();
    assert!(
        out.ends_with("    command: [kube-apiserver]\n    args:\n    - --a=2\n    - --b=x\n"),
        "{out}"
    );
}
