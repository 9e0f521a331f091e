//! Property tests of the span-preserving editor: generated manifests with random comments,
//! blank lines, quoting, indentation styles, CRLF/LF, BOM, final newline and flow/block
//! lists, edited by random operation sequences.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use kubesafe_manifest_edit::{Edit, KeyPath, Manifest, ScalarValue, line_changes};
use proptest::prelude::*;

const NAMES: &[&str] = &[
    "a",
    "bind-address",
    "profiling",
    "feature-gates",
    "v",
    "enable-admission-plugins",
];
const LIST: &str = "enable-admission-plugins";
const VALUES: &[&str] = &[
    "false",
    "1",
    "/etc/kubernetes/pki/ca.crt",
    "https://127.0.0.1:2379",
    "A,B",
    "x: y",
    "it's # not a comment",
    "",
    "é—ж",
];
const PLUGINS: &[&str] = &["NodeRestriction", "AlwaysPullImages", "EventRateLimit"];

#[derive(Debug, Clone, Copy, PartialEq)]
enum Quote {
    Plain,
    Single,
    Double,
}

#[derive(Debug, Clone)]
struct Item {
    name: String,
    value: String,
    quote: Quote,
    /// Trailing comment on the item's line.
    comment: Option<String>,
    /// Lines before the item: blank, whitespace-only or full-line comments.
    gap: Vec<String>,
}

#[derive(Debug, Clone)]
struct Doc {
    crlf: bool,
    bom: bool,
    final_newline: bool,
    /// `  - item` (indented) instead of `- item` at the key's column.
    indented_dash: bool,
    /// Flags in a one-line flow list `args: [...]` instead of a block `command` list.
    flow: bool,
    items: Vec<Item>,
}

fn quote(s: &str, q: Quote, flow: bool) -> String {
    let needs_quotes = s.is_empty()
        || s.contains(": ")
        || s.contains(" #")
        || s.ends_with(':')
        || (flow && s.contains(','))
        || s.starts_with([
            '\'', '"', '#', '[', '{', '&', '*', '!', '|', '>', '%', '@', '`',
        ]);
    let plain_ok = !needs_quotes;
    match q {
        Quote::Plain if plain_ok => s.to_owned(),
        Quote::Single | Quote::Plain => format!("'{}'", s.replace('\'', "''")),
        Quote::Double => format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\"")),
    }
}

impl Doc {
    fn render(&self) -> String {
        let mut lines: Vec<String> = vec![
            "# generated manifest".into(),
            "apiVersion: v1".into(),
            "kind: Pod".into(),
            "metadata:".into(),
            "  name: kube-apiserver".into(),
            "  annotations:".into(),
            "    note: |".into(),
            "      run with --profiling=true --a=1".into(),
            "      - --v=9".into(),
            "spec:".into(),
            "  containers:".into(),
        ];
        let d = if self.indented_dash { "  " } else { "" };
        lines.push(format!("  {d}- name: kube-apiserver"));
        let k = format!("  {d}  "); // container key indent
        lines.push(format!("{k}image: registry.k8s.io/kube-apiserver:v1.30.0"));
        if self.flow {
            lines.push(format!("{k}command: [kube-apiserver]"));
            let items: Vec<String> = self
                .items
                .iter()
                .map(|i| quote(&format!("--{}={}", i.name, i.value), i.quote, true))
                .collect();
            lines.push(format!("{k}args: [{}]  # flags", items.join(", ")));
        } else {
            lines.push(format!("{k}command:"));
            lines.push(format!("{k}{d}- kube-apiserver"));
            for i in &self.items {
                lines.extend(i.gap.iter().cloned());
                let mut l = format!(
                    "{k}{d}- {}",
                    quote(&format!("--{}={}", i.name, i.value), i.quote, false)
                );
                if let Some(c) = &i.comment {
                    l.push_str("   # ");
                    l.push_str(c);
                }
                lines.push(l);
            }
        }
        lines.push(format!("{k}imagePullPolicy: IfNotPresent"));
        lines.push("  hostNetwork: true".into());
        lines.push("# end".into());
        // A second document whose text looks like flags must not be touched.
        lines.push("---".into());
        lines.push("kind: ConfigMap".into());
        lines.push("data:".into());
        lines.push("  args: \"--profiling=true --v=3\"".into());
        let eol = if self.crlf { "\r\n" } else { "\n" };
        let mut text = lines.join(eol);
        if self.final_newline {
            text.push_str(eol);
        }
        if self.bom {
            text.insert(0, '\u{feff}');
        }
        text
    }

    /// The same data in the plainest layout: what the edited text must decode to.
    fn canonical(&self) -> String {
        let mut plain = self.clone();
        plain.crlf = false;
        plain.bom = false;
        for i in &mut plain.items {
            i.quote = Quote::Double;
            i.comment = None;
            i.gap.clear();
        }
        plain.render()
    }

    fn value(&self, name: &str) -> Option<&str> {
        self.items
            .iter()
            .find(|i| i.name == name)
            .map(|i| i.value.as_str())
    }
}

#[derive(Debug, Clone)]
enum TestOp {
    Set(String, String),
    Remove(String),
    ListAdd(String),
    ListRemove(String),
}

impl TestOp {
    fn flag(&self) -> String {
        match self {
            TestOp::Set(n, _) | TestOp::Remove(n) => format!("--{n}"),
            TestOp::ListAdd(_) | TestOp::ListRemove(_) => format!("--{LIST}"),
        }
    }

    fn edit(&self) -> Edit {
        match self {
            TestOp::Set(n, v) => Edit::new().set_flag(format!("--{n}"), v),
            TestOp::Remove(n) => Edit::new().remove_flag(n),
            TestOp::ListAdd(i) => Edit::new().list_add(format!("--{LIST}"), i),
            TestOp::ListRemove(i) => Edit::new().list_remove(LIST, i),
        }
    }

    /// Applies the operation to the model, as the editor must.
    fn apply(&self, doc: &mut Doc) {
        let new_item = |name: &str, value: &str| Item {
            name: name.to_owned(),
            value: value.to_owned(),
            quote: Quote::Plain,
            comment: None,
            gap: Vec::new(),
        };
        match self {
            TestOp::Set(n, v) => match doc.items.iter_mut().find(|i| &i.name == n) {
                Some(i) => i.value.clone_from(v),
                None => doc.items.push(new_item(n, v)),
            },
            TestOp::Remove(n) => doc.items.retain(|i| &i.name != n),
            TestOp::ListAdd(p) => match doc.items.iter_mut().find(|i| i.name == LIST) {
                Some(i) => {
                    let mut list: Vec<&str> =
                        i.value.split(',').filter(|s| !s.is_empty()).collect();
                    if !list.contains(&p.as_str()) {
                        list.push(p);
                    }
                    i.value = list.join(",");
                }
                None => doc.items.push(new_item(LIST, p)),
            },
            TestOp::ListRemove(p) => {
                if let Some(i) = doc.items.iter_mut().find(|i| i.name == LIST) {
                    let list: Vec<String> = i
                        .value
                        .split(',')
                        .filter(|s| !s.is_empty() && s != p)
                        .map(str::to_owned)
                        .collect();
                    i.value = list.join(",");
                    if list.is_empty() {
                        doc.items.retain(|i| i.name != LIST);
                    }
                }
            }
        }
    }
}

fn gap_line() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        Just("    ".to_owned()),
        Just("    # a full-line comment".to_owned()),
        Just("# column-0 comment about --profiling? no: about nothing".to_owned()),
    ]
}

fn item(name: &'static str) -> impl Strategy<Value = Item> {
    let value = if name == LIST {
        prop::sample::subsequence(PLUGINS.to_vec(), 1..=3)
            .prop_map(|v| v.join(","))
            .boxed()
    } else {
        prop::sample::select(VALUES.to_vec())
            .prop_map(str::to_owned)
            .boxed()
    };
    (
        value,
        prop_oneof![Just(Quote::Plain), Just(Quote::Single), Just(Quote::Double)],
        prop::option::weighted(
            0.3,
            prop_oneof![Just("note".to_owned()), Just("ж — ok".to_owned())],
        ),
        prop::collection::vec(gap_line(), 0..2),
    )
        .prop_map(move |(value, quote, comment, gap)| Item {
            name: name.to_owned(),
            value,
            quote,
            comment,
            gap,
        })
}

fn doc() -> impl Strategy<Value = Doc> {
    let items = prop::sample::subsequence(NAMES.to_vec(), 0..=NAMES.len())
        .prop_shuffle()
        .prop_flat_map(|names| names.into_iter().map(item).collect::<Vec<_>>());
    (any::<[bool; 5]>(), items).prop_map(|(b, items)| Doc {
        crlf: b[0],
        bom: b[1],
        final_newline: b[2],
        indented_dash: b[3],
        flow: b[4],
        items,
    })
}

fn test_op() -> impl Strategy<Value = TestOp> {
    let name =
        prop::sample::select(NAMES.to_vec()).prop_filter("list flag via list ops", |n| *n != LIST);
    prop_oneof![
        (name.clone(), prop::sample::select(VALUES.to_vec()))
            .prop_map(|(n, v)| TestOp::Set(n.to_owned(), v.to_owned())),
        name.prop_map(|n| TestOp::Remove(n.to_owned())),
        prop::sample::select(PLUGINS.to_vec()).prop_map(|p| TestOp::ListAdd(p.to_owned())),
        prop::sample::select(PLUGINS.to_vec()).prop_map(|p| TestOp::ListRemove(p.to_owned())),
    ]
}

/// Layout invariants that must survive any edit.
fn assert_layout_kept(before: &str, after: &str) {
    assert_eq!(
        before.starts_with('\u{feff}'),
        after.starts_with('\u{feff}'),
        "BOM"
    );
    assert_eq!(
        before.ends_with('\n'),
        after.ends_with('\n'),
        "final newline"
    );
    if before.contains("\r\n") {
        let bare_lf = after
            .match_indices('\n')
            .any(|(i, _)| i == 0 || !after[..i].ends_with('\r'));
        assert!(!bare_lf, "CRLF file got a bare LF:\n{after:?}");
    } else {
        assert!(!after.contains('\r'), "LF file got a CR");
    }
}

fn cases() -> u32 {
    // `KUBESAFE_PROPTEST_CASES` for long local runs; otherwise fewer cases in debug builds
    // keeps the suite quick, release runs 256.
    std::env::var("KUBESAFE_PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if cfg!(debug_assertions) { 96 } else { 256 })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    /// Random edit sequences: the result decodes to the model, each diff touches only
    /// lines of the edited flag, layout is kept, and every edit is idempotent.
    #[test]
    fn edits_match_the_model(mut model in doc(), ops in prop::collection::vec(test_op(), 1..6)) {
        let mut text = model.render();
        Manifest::parse(text.clone()).expect("generated manifest parses");
        for op in &ops {
            let before = Manifest::parse(text.clone()).unwrap();
            let applied = before.apply(&op.edit()).unwrap();
            op.apply(&mut model);
            let after = applied.manifest.text().to_owned();

            // The re-parsed document equals the expected one.
            let expected = Manifest::parse(model.canonical()).unwrap();
            prop_assert!(applied.manifest.data_eq(&expected), "{op:?}\n{after}\nexpected\n{}", model.canonical());
            for name in NAMES {
                let got = applied.manifest.get_flag(None, name).unwrap().and_then(|f| f.value);
                prop_assert_eq!(got.as_deref(), model.value(name), "{} after {:?}", name, op);
            }
            prop_assert_eq!(applied.changed, after != text);
            prop_assert_eq!(applied.data_changed, !before.data_eq(&applied.manifest));

            // The diff touches only the edited lines.
            let flag = op.flag();
            for c in line_changes(&text, &after) {
                if c.old.is_some() && c.old == c.new {
                    continue; // a last line that gained/lost its line break
                }
                let touches = [&c.old, &c.new].into_iter().flatten().any(|l| l.contains(&flag));
                prop_assert!(touches, "{:?} changed unrelated line {:?}", op, c);
            }
            assert_layout_kept(&text, &after);

            // Idempotence.
            let again = applied.manifest.apply(&op.edit()).unwrap();
            prop_assert!(!again.changed, "{:?} not idempotent", op);
            prop_assert_eq!(again.manifest.text(), after.as_str());
            text = after;
        }
    }

    /// Setting then removing an absent flag gives back the original bytes.
    #[test]
    fn set_then_remove_restores_bytes(model in doc(), value in prop::sample::select(VALUES.to_vec())) {
        let text = model.render();
        let m = Manifest::parse(text.clone()).unwrap();
        let absent = "kubesafe-probe";
        let set = m.apply(&Edit::new().set_flag(format!("--{absent}"), value)).unwrap();
        prop_assert!(set.changed);
        let removed = set.manifest.apply(&Edit::new().remove_flag(absent)).unwrap();
        prop_assert_eq!(removed.manifest.text(), text.as_str());
    }

    /// A comment-only difference is never reported as a data change.
    #[test]
    fn comments_are_not_data(model in doc()) {
        let a = Manifest::parse(model.render()).unwrap();
        let b = Manifest::parse(model.canonical()).unwrap();
        prop_assert!(a.data_eq(&b));
    }
}

// ---------------------------------------------------------------------------------------
// set-path on KubeletConfiguration-like mappings.
// ---------------------------------------------------------------------------------------

const PATHS: &[&str] = &[
    "authentication.anonymous.enabled",
    "authentication.webhook.enabled",
    "readOnlyPort",
    "protectKernelDefaults",
    "evictionHard.\"memory.available\"",
];

fn config_text(step: usize, crlf: bool, comments: bool, present: &[bool; 3]) -> String {
    let s = " ".repeat(step);
    let mut lines = vec!["apiVersion: kubelet.config.k8s.io/v1beta1".to_owned()];
    if present[0] {
        lines.push("authentication:".into());
        if comments {
            lines.push(format!("{s}# who may call the kubelet"));
        }
        lines.push(format!("{s}webhook:"));
        lines.push(format!("{s}{s}enabled: true   # keep"));
    }
    if comments {
        lines.push("#readOnlyPort: 10255".into());
        lines.push(String::new());
    }
    lines.push("kind: KubeletConfiguration".into());
    if present[1] {
        lines.push("readOnlyPort: 10255".into());
    }
    if present[2] {
        lines.push("evictionHard:".into());
        lines.push(format!("{s}memory.available: \"100Mi\""));
    }
    let eol = if crlf { "\r\n" } else { "\n" };
    lines.join(eol) + eol
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn set_path_sets_exactly_the_path(
        step in prop_oneof![Just(2usize), Just(4usize)],
        crlf in any::<bool>(),
        comments in any::<bool>(),
        present in any::<[bool; 3]>(),
        sets in prop::collection::vec((prop::sample::select(PATHS.to_vec()), prop_oneof![
            any::<bool>().prop_map(ScalarValue::Bool),
            (0i64..70000).prop_map(ScalarValue::Int),
            prop::sample::select(vec!["500Mi", "true", "a b", "x: y"]).prop_map(|s| ScalarValue::Str(s.to_owned())),
        ]), 1..5),
    ) {
        let mut text = config_text(step, crlf, comments, &present);
        let mut expected: Vec<(KeyPath, ScalarValue)> = Vec::new();
        for (p, v) in sets {
            let path: KeyPath = p.parse().unwrap();
            let m = Manifest::parse(text.clone()).unwrap();
            let applied = m.apply(&Edit::new().set_path(path.clone(), v.clone())).unwrap();
            let after = applied.manifest.text().to_owned();
            assert_layout_kept(&text, &after);
            // Only lines naming a segment of the path change.
            for c in line_changes(&text, &after) {
                let touches = [&c.old, &c.new].into_iter().flatten()
                    .any(|l| path.segments().iter().any(|s| l.contains(s.as_str())));
                prop_assert!(touches, "set-path {path} changed unrelated line {c:?}");
            }
            expected.retain(|(q, _)| *q != path);
            expected.push((path.clone(), v.clone()));
            for (q, w) in &expected {
                prop_assert_eq!(applied.manifest.get_path(q).unwrap(), Some(w.to_string()), "{}", q);
            }
            let again = applied.manifest.apply(&Edit::new().set_path(path, v)).unwrap();
            prop_assert!(!again.changed);
            text = after;
        }
    }
}
