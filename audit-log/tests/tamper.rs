//! Property tests: every single-byte modification, deletion, swap or insertion of records
//! is detected and located; an untouched log always verifies.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr
)]

use kubesafe_audit_log::{
    AuditKey, AuditRecord, Chain, ChainHead, Checkpoint, FailureKind, KeyRing, Location, Report,
    Status, VerifyOptions, verify_bytes,
};
use proptest::prelude::*;
use serde_json::json;

struct Log {
    bytes: Vec<u8>,
    /// Byte offset of each line start, plus the total length at the end.
    offsets: Vec<usize>,
    opts: VerifyOptions,
}

fn key() -> AuditKey {
    AuditKey::new("audit-test", vec![0x5a; 32]).unwrap()
}

fn arb_record() -> impl Strategy<Value = AuditRecord> {
    (
        prop::sample::select(vec![
            "manifest.edit",
            "health.gate",
            "rbac.apply",
            "netpol.apply",
        ]),
        prop::sample::select(Status::ALL.to_vec()),
        "\\PC{0,12}",
        any::<Option<u32>>(),
        any::<f64>().prop_filter("finite", |f| f.is_finite()),
        prop::option::of("[a-z\"\\\\\u{7f}\u{e9}\u{1f600}\n]{0,8}"),
    )
        .prop_map(|(action, status, name, dur, x, err)| {
            let mut r = AuditRecord::new(action, status)
                .namespace("kube-system")
                .resource("Pod", name)
                .parameter("x", x)
                .parameter(
                    "nested",
                    json!({"list": [1, "two", null, true], "k": {"z": -3}}),
                )
                .created_at("2025-03-04T05:06:07.5Z".parse().unwrap());
            if let Some(d) = dur {
                r = r.duration_ms(u64::from(d));
            }
            if let Some(e) = err {
                r = r.error_message(e);
            }
            r
        })
}

fn build(records: &[AuditRecord], keyed: bool) -> Log {
    let chain = if keyed {
        Chain::keyed(key())
    } else {
        Chain::unkeyed()
    };
    let mut head = ChainHead::default();
    let mut bytes = Vec::new();
    let mut offsets = Vec::new();
    for r in records {
        let s = chain.seal(&head, r).unwrap();
        head = s.head();
        offsets.push(bytes.len());
        bytes.extend_from_slice(s.line().as_bytes());
        bytes.push(b'\n');
    }
    offsets.push(bytes.len());
    let cp_key = AuditKey::new("checkpoints", vec![0x11; 32]).unwrap();
    let cp = Checkpoint::sign(head, None, &cp_key)
        .unwrap()
        .verify(&cp_key)
        .unwrap();
    let mut opts = VerifyOptions::new().checkpoint(cp);
    if keyed {
        opts = opts.keys(KeyRing::new().with(key()));
    }
    Log {
        bytes,
        offsets,
        opts,
    }
}

fn lines(log: &Log) -> Vec<Vec<u8>> {
    log.offsets
        .windows(2)
        .map(|w| log.bytes[w[0]..w[1]].to_vec())
        .collect()
}

fn offset_of(report: &Report) -> u64 {
    match &report
        .failure
        .as_ref()
        .expect("tampering not detected")
        .location
    {
        Location::File { offset, .. } => *offset,
        other => panic!("unexpected location {other:?}"),
    }
}

fn arb_log() -> impl Strategy<Value = (Vec<AuditRecord>, bool)> {
    (prop::collection::vec(arb_record(), 2..10), any::<bool>())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 192, ..ProptestConfig::default() })]

    #[test]
    fn untouched_log_verifies((records, keyed) in arb_log()) {
        let log = build(&records, keyed);
        let report = verify_bytes("audit.jsonl", &log.bytes, &log.opts);
        prop_assert!(report.is_intact(), "{:?}", report.failure);
        prop_assert_eq!(report.records, records.len() as u64);
        prop_assert_eq!(report.bytes, log.bytes.len() as u64);
    }

    #[test]
    fn any_single_byte_change_is_detected_and_located(
        (records, keyed) in arb_log(),
        pos in any::<prop::sample::Index>(),
        new in any::<u8>(),
    ) {
        let mut log = build(&records, keyed);
        let i = pos.index(log.bytes.len());
        prop_assume!(log.bytes[i] != new);
        let original = log.bytes.clone();
        log.bytes[i] = new;
        let report = verify_bytes("audit.jsonl", &log.bytes, &log.opts);
        let failure = report.failure.clone().expect("modification not detected");
        // The line that holds byte i (a newline belongs to the line it ends).
        let line = log.offsets.iter().rposition(|&o| o <= i).unwrap();
        let line = line.min(records.len() - 1);
        prop_assert_eq!(offset_of(&report), log.offsets[line] as u64, "{}", failure);
        let line_text = String::from_utf8_lossy(&original[log.offsets[line]..log.offsets[line + 1]]).into_owned();
        let key_member = line_text.find("\"keyId\":").map(|s| {
            let start = log.offsets[line] + s;
            start..start + "\"keyId\":\"audit-test\"".len()
        });
        let in_key_id = key_member.is_some_and(|r| r.contains(&i));
        match failure.kind {
            FailureKind::Modified => {}
            FailureKind::TornTail => prop_assert_eq!(i, log.bytes.len() - 1),
            FailureKind::MissingKey | FailureKind::Unkeyed => prop_assert!(in_key_id, "{}", failure),
            other => prop_assert!(false, "unexpected kind {other}: {failure}"),
        }
        if failure.kind != FailureKind::TornTail {
            prop_assert_eq!(failure.seq, line as u64 + 1);
        }
        prop_assert_eq!(report.records, line as u64);
    }

    #[test]
    fn deleting_a_record_is_detected_and_located(
        (records, keyed) in arb_log(),
        k in any::<prop::sample::Index>(),
    ) {
        let log = build(&records, keyed);
        let n = records.len();
        let k = k.index(n);
        let mut ls = lines(&log);
        ls.remove(k);
        let bytes = ls.concat();
        let report = verify_bytes("audit.jsonl", &bytes, &log.opts);
        let failure = report.failure.clone().expect("deletion not detected");
        prop_assert_eq!(failure.seq, k as u64 + 1, "{}", failure);
        if k + 1 == n {
            prop_assert_eq!(failure.kind, FailureKind::TruncatedTail, "{}", failure);
            prop_assert_eq!(offset_of(&report), bytes.len() as u64);
        } else {
            prop_assert_eq!(failure.kind, FailureKind::Deleted, "{}", failure);
            prop_assert_eq!(offset_of(&report), log.offsets[k] as u64);
            prop_assert_eq!(failure.found_seq, Some(k as u64 + 2));
        }
    }

    #[test]
    fn swapping_records_is_detected_and_located(
        (records, keyed) in arb_log(),
        a in any::<prop::sample::Index>(),
        b in any::<prop::sample::Index>(),
    ) {
        let log = build(&records, keyed);
        let n = records.len();
        let (a, b) = (a.index(n), b.index(n));
        prop_assume!(a != b);
        let (j, k) = (a.min(b), a.max(b));
        let mut ls = lines(&log);
        ls.swap(j, k);
        let bytes = ls.concat();
        let report = verify_bytes("audit.jsonl", &bytes, &log.opts);
        let failure = report.failure.clone().expect("swap not detected");
        prop_assert_eq!(failure.kind, FailureKind::Reordered, "{}", failure);
        prop_assert_eq!(failure.seq, j as u64 + 1);
        prop_assert_eq!(failure.found_seq, Some(k as u64 + 1));
        prop_assert_eq!(offset_of(&report), log.offsets[j] as u64);
    }

    #[test]
    fn inserting_a_copy_of_a_record_is_detected_and_located(
        (records, keyed) in arb_log(),
        k in any::<prop::sample::Index>(),
        p in any::<prop::sample::Index>(),
    ) {
        let log = build(&records, keyed);
        let n = records.len();
        let k = k.index(n);
        let p = p.index(n + 1);
        let mut ls = lines(&log);
        let copy = ls[k].clone();
        ls.insert(p, copy.clone());
        let new_offsets: Vec<usize> = ls.iter().scan(0, |acc, l| { let o = *acc; *acc += l.len(); Some(o) }).collect();
        let bytes = ls.concat();
        let report = verify_bytes("audit.jsonl", &bytes, &log.opts);
        let failure = report.failure.clone().expect("insertion not detected");
        prop_assert_eq!(failure.kind, FailureKind::Inserted, "{}", failure);
        prop_assert_eq!(failure.seq, k as u64 + 1);
        let at = offset_of(&report);
        // The inserted line; when it sits next to its identical original, either copy
        // is a correct answer.
        let mut ok = vec![new_offsets[p] as u64];
        if p + 1 < ls.len() && ls[p + 1] == copy {
            ok.push(new_offsets[p + 1] as u64);
        }
        prop_assert!(ok.contains(&at), "reported {} expected one of {:?}: {}", at, ok, failure);
    }
}

fn sample_log(n: usize, chain: &Chain) -> (Vec<u8>, ChainHead, Vec<String>) {
    let mut head = ChainHead::default();
    let mut bytes = Vec::new();
    let mut lines = Vec::new();
    for i in 0..n {
        let s = chain
            .seal(
                &head,
                &AuditRecord::new("a", Status::Completed).resource("Pod", format!("p{i}")),
            )
            .unwrap();
        head = s.head();
        bytes.extend_from_slice(s.line().as_bytes());
        bytes.push(b'\n');
        lines.push(s.line().to_owned());
    }
    (bytes, head, lines)
}

#[test]
fn wrong_key_is_reported_as_bad_key_even_for_one_record() {
    let other = AuditKey::new("audit-test", vec![0x77; 32]).unwrap();
    for n in [1, 5] {
        let (bytes, _, _) = sample_log(n, &Chain::keyed(key()));
        let opts = VerifyOptions::new().keys(KeyRing::new().with(other.clone()));
        let f = verify_bytes("x", &bytes, &opts).failure.unwrap();
        assert_eq!(f.kind, FailureKind::BadKey, "{f}");
        assert_eq!(f.seq, 1);
        // The right key verifies.
        let opts = VerifyOptions::new().keys(KeyRing::new().with(key()));
        assert!(verify_bytes("x", &bytes, &opts).is_intact());
    }
}

#[test]
fn keyed_log_without_key_and_unkeyed_downgrade() {
    let (bytes, _, _) = sample_log(3, &Chain::keyed(key()));
    let f = verify_bytes("x", &bytes, &VerifyOptions::new())
        .failure
        .unwrap();
    assert_eq!((f.kind, f.seq), (FailureKind::MissingKey, 1), "{f}");

    // Someone rewrites the whole log unkeyed (recomputing SHA-256): refused with keys.
    let (unkeyed, _, _) = sample_log(3, &Chain::unkeyed());
    let opts = VerifyOptions::new().keys(KeyRing::new().with(key()));
    let f = verify_bytes("x", &unkeyed, &opts).failure.unwrap();
    assert_eq!((f.kind, f.seq), (FailureKind::Unkeyed, 1), "{f}");
    assert!(verify_bytes("x", &unkeyed, &opts.clone().allow_unkeyed()).is_intact());
}

#[test]
fn keys_given_through_the_field_still_refuse_an_unkeyed_rewrite() {
    // The public `keys` field, set without the builder, must protect as much as the
    // builder: otherwise a keyed log replaced by a recomputed unkeyed one verifies.
    let (unkeyed, _, _) = sample_log(3, &Chain::unkeyed());
    let mut opts = VerifyOptions::new();
    opts.keys = KeyRing::new().with(key());
    let f = verify_bytes("x", &unkeyed, &opts)
        .failure
        .expect("an unkeyed rewrite of a keyed log verified");
    assert_eq!((f.kind, f.seq), (FailureKind::Unkeyed, 1), "{f}");
    // Accepting unkeyed records is an explicit choice, in whatever order it is made.
    opts.allow_unkeyed = true;
    assert!(verify_bytes("x", &unkeyed, &opts).is_intact());
    let opts = VerifyOptions::new()
        .allow_unkeyed()
        .keys(KeyRing::new().with(key()));
    assert!(verify_bytes("x", &unkeyed, &opts).is_intact());
}

#[test]
fn forged_record_inserted_with_recomputed_hash_is_located() {
    // Unkeyed: an attacker seals a fake seq 3 after the real seq 2; the real seq 3 follows.
    let chain = Chain::unkeyed();
    let (bytes, _, lines) = sample_log(5, &chain);
    let rec2 = kubesafe_audit_log::SealedRecord::parse_line(&lines[1]).unwrap();
    let fake = chain
        .seal(&rec2.head(), &AuditRecord::new("forged", Status::Completed))
        .unwrap();
    let mut forged: Vec<String> = lines.clone();
    forged.insert(2, fake.line().to_owned());
    let text = forged.join("\n") + "\n";
    let f = verify_bytes("x", text.as_bytes(), &VerifyOptions::new())
        .failure
        .unwrap();
    assert_eq!(f.kind, FailureKind::Inserted, "{f}");
    let want = (lines[0].len() + lines[1].len() + 2) as u64;
    assert_eq!(
        f.location,
        Location::File {
            path: "x".into(),
            offset: want,
            line: 3
        }
    );
    let _ = bytes;
}

#[test]
fn rewritten_history_is_caught_by_the_checkpoint() {
    let chain = Chain::unkeyed();
    let (_, head, lines) = sample_log(4, &chain);
    let cp_key = AuditKey::new("cp", vec![1; 32]).unwrap();
    let cp = Checkpoint::sign(head, None, &cp_key)
        .unwrap()
        .verify(&cp_key)
        .unwrap();
    // Rebuild the chain with record 2 changed and every later hash recomputed.
    let mut h = ChainHead::default();
    let mut text = String::new();
    for (i, l) in lines.iter().enumerate() {
        let mut r = kubesafe_audit_log::SealedRecord::parse_line(l)
            .unwrap()
            .record;
        if i == 1 {
            r.resource_name = Some("innocent".into());
        }
        let s = chain.seal(&h, &r).unwrap();
        h = s.head();
        text.push_str(s.line());
        text.push('\n');
    }
    assert!(verify_bytes("x", text.as_bytes(), &VerifyOptions::new()).is_intact());
    let f = verify_bytes("x", text.as_bytes(), &VerifyOptions::new().checkpoint(cp))
        .failure
        .unwrap();
    assert_eq!((f.kind, f.seq), (FailureKind::CheckpointMismatch, 4), "{f}");
}

#[test]
fn empty_and_torn_inputs() {
    let r = verify_bytes("x", b"", &VerifyOptions::new());
    assert!(r.is_intact());
    assert_eq!(r.records, 0);
    let (bytes, _, lines) = sample_log(2, &Chain::unkeyed());
    let cut = &bytes[..bytes.len() - 10];
    let f = verify_bytes("x", cut, &VerifyOptions::new())
        .failure
        .unwrap();
    assert_eq!(f.kind, FailureKind::TornTail);
    assert_eq!(
        f.location,
        Location::File {
            path: "x".into(),
            offset: lines[0].len() as u64 + 1,
            line: 2
        }
    );
}

/// Edits that keep the record's meaning but not its canonical bytes — trailing bytes,
/// CRLF, whitespace, escapes, number spellings, a duplicated member — are modifications,
/// even when the attacker recomputes the (unkeyed) hash over the new bytes.
#[test]
fn equivalent_but_non_canonical_lines_are_modifications_even_with_a_recomputed_hash() {
    use sha2::{Digest, Sha256};
    let chain = Chain::unkeyed();
    let (_, _, lines) = sample_log(3, &chain);
    let victim = &lines[1];
    let rehash = |line: &str| -> String {
        // Recompute "hash" over the edited line without its hash member.
        let start = line.find(",\"hash\":\"").unwrap();
        let member = &line[start..start + 74];
        let without = line.replacen(member, "", 1);
        let h: String = Sha256::digest(without.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        line.replacen(&member[9..73], &h, 1)
    };
    let edits: Vec<(&str, String)> = vec![
        ("trailing garbage", format!("{victim}x")),
        ("trailing space", format!("{victim} ")),
        ("CRLF", format!("{victim}\r")),
        (
            "space after a colon",
            victim.replacen("\"seq\":2", "\"seq\": 2", 1),
        ),
        ("escaped letter", victim.replacen("\"a\"", "\"\\u0061\"", 1)),
        ("escaped slash", victim.replacen("\"Pod\"", "\"P\\/od\"", 1)),
        (
            "number spelling",
            victim.replacen("\"seq\":2", "\"seq\":2.0", 1),
        ),
        (
            "duplicated member",
            victim.replacen(
                "\"status\":\"completed\"",
                "\"status\":\"completed\",\"status\":\"failed\"",
                1,
            ),
        ),
    ];
    for (what, edited) in edits {
        assert_ne!(&edited, victim, "{what}: the edit did nothing");
        for line in [edited.clone(), rehash(&edited)] {
            let text = format!("{}\n{line}\n{}\n", lines[0], lines[2]);
            let f = verify_bytes("x", text.as_bytes(), &VerifyOptions::new())
                .failure
                .unwrap_or_else(|| panic!("{what}: accepted {line}"));
            assert_eq!((f.kind, f.seq), (FailureKind::Modified, 2), "{what}: {f}");
        }
    }
}

/// Nothing normalises Unicode: NFC and NFD spellings of a name are different records
/// with different hashes, each stored byte for byte.
#[test]
fn unicode_is_stored_and_hashed_as_given_never_normalised() {
    let nfc = AuditRecord::new("a", Status::Completed).requested_by("Ren\u{e9}e");
    let nfd = AuditRecord::new("a", Status::Completed)
        .requested_by("Rene\u{301}e")
        .created_at(nfc.created_at);
    let chain = Chain::unkeyed();
    let a = chain.seal(&ChainHead::default(), &nfc).unwrap();
    let b = chain.seal(&ChainHead::default(), &nfd).unwrap();
    assert!(a.line().contains("Ren\u{e9}e") && b.line().contains("Rene\u{301}e"));
    assert_ne!(a.hash, b.hash);
    for s in [a, b] {
        let text = format!("{}\n", s.line());
        assert!(verify_bytes("x", text.as_bytes(), &VerifyOptions::new()).is_intact());
    }
}
